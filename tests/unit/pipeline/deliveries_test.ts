// Unit tests of src/batch.ts: chunk() and foldDeliveries() as fast-check properties plus edge cases.
import assert from "node:assert/strict";
import fc from "fast-check";
import { foldDeliveries } from "../../../src/pipeline/deliveries.ts";
import { chunk, SQS_MAX_BATCH } from "../../../src/sqs/_batch.ts";
import type { ReceivedMessage } from "../../../src/types.ts";

Deno.test("chunk() neither drops, repeats nor reorders items, and only the last chunk is short", () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer(), { maxLength: 200 }),
      fc.integer({ min: 1, max: 25 }),
      (items, size) => {
        const chunks = chunk(items, size);
        assert.deepEqual(chunks.flat(), items);
        assert.equal(chunks.length, Math.ceil(items.length / size));
        chunks.forEach((c, i) => {
          assert.ok(c.length >= 1 && c.length <= size, `chunk ${i} has ${c.length} items`);
          if (i < chunks.length - 1) assert.equal(c.length, size, `chunk ${i} is short`);
        });
      },
    ),
    { numRuns: 2000 },
  );
});

Deno.test("chunk() splits by SQS's batch limit of 10", () => {
  const ids = Array.from({ length: 25 }, (_, i) => `m${i}`);
  assert.deepEqual(chunk(ids, SQS_MAX_BATCH).map((c) => c.length), [10, 10, 5]);
  assert.deepEqual(chunk([], SQS_MAX_BATCH), []);
});

Deno.test("chunk() does not hand back the input array itself", () => {
  const items = [1, 2, 3];
  const [only] = chunk(items, 10);
  assert.deepEqual(only, items);
  assert.notEqual(only, items);
});

Deno.test("chunk() refuses a size that is not a positive integer", async (t) => {
  for (const size of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    await t.step(`chunk() refuses size ${size}`, () => {
      assert.throws(() => chunk([1, 2, 3], size), RangeError);
    });
  }
});

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
