// Unit tests of src/sqs/_batch.ts: chunk() as a fast-check property plus edge cases.
import assert from "node:assert/strict";
import fc from "fast-check";
import { chunk, SQS_MAX_BATCH } from "../../../src/sqs/_batch.ts";

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
