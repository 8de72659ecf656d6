// Unit tests of src/pipeline/deliveries.ts: foldDeliveries() as a fast-check property plus edge cases.
import assert from "node:assert/strict";
import fc from "fast-check";
import { foldDeliveries } from "../../../src/pipeline/deliveries.ts";
import type { ReceivedMessage } from "../../../src/types.ts";

// Ids from a small pool so that repeated deliveries are common; each delivery has
// its own receipt handle, which identifies it.
const deliveriesArb = fc.array(fc.constantFrom("a", "b", "c", "d", "e", "f"), { maxLength: 60 })
  .map(
    (ids) =>
      ids.map((id, i): ReceivedMessage => ({
        id,
        receiptHandle: `rh-${i}`,
        body: `{"n":${i}}`,
        sentAtMs: 1_700_000_000_000 + i,
        dated: true,
        receiveCount: 1,
      })),
  );

Deno.test("foldDeliveries() keeps distinct ids, loses no delivery, and keeps each id's first", () => {
  fc.assert(
    fc.property(deliveriesArb, (messages) => {
      const { unique, repeats } = foldDeliveries(messages);
      const uniqueIds = unique.map((m) => m.id);
      assert.equal(new Set(uniqueIds).size, uniqueIds.length, "unique ids are not distinct");
      assert.deepEqual(new Set(uniqueIds), new Set(messages.map((m) => m.id)));
      // unique + repeats is a permutation of the input
      const handles = (ms: readonly ReceivedMessage[]) => ms.map((m) => m.receiptHandle).sort();
      assert.deepEqual(handles([...unique, ...repeats]), handles(messages));
      // the first delivery of each id is the one kept, and input order is kept
      const firsts = messages.filter((m, i) => messages.findIndex((n) => n.id === m.id) === i);
      assert.equal(unique.length, firsts.length);
      unique.forEach((m, i) => assert.equal(m, firsts[i]));
      const rest = messages.filter((m) => !firsts.includes(m));
      assert.equal(repeats.length, rest.length);
      repeats.forEach((m, i) => assert.equal(m, rest[i]));
    }),
    { numRuns: 2000 },
  );
});

Deno.test("foldDeliveries() of an empty batch is empty", () => {
  assert.deepEqual(foldDeliveries([]), { unique: [], repeats: [] });
});
