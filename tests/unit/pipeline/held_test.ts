// Unit tests of src/pipeline/held.ts: which held messages are due for an
// extension, and what an extension or a release does to them.
import assert from "node:assert/strict";
import { HeldMessages } from "../../../src/pipeline/held.ts";
import type { ReceivedMessage } from "../../../src/types.ts";

const message = (id: string): ReceivedMessage => ({
  id,
  receiptHandle: `r-${id}`,
  body: "{}",
  sentAtMs: 0,
  dated: true,
  receiveCount: 1,
});

Deno.test("HeldMessages is due half a visibility timeout before it runs out, and again after each extension", () => {
  const held = new HeldMessages(30); // 30 s
  const ids = (ms: number) => held.due(ms).map((m) => m.id).sort();
  const [a, b] = [message("a"), message("b")];
  held.add([a], 0);
  held.add([b], 10_000);
  assert.deepEqual(ids(14_999), [], "a is due at 15 s");
  assert.deepEqual(ids(15_000), ["a"]);
  assert.deepEqual(ids(25_000), ["a", "b"]);
  held.extended([a], 25_000);
  assert.deepEqual(ids(25_000), ["b"], "a has another 30 s");
  assert.deepEqual(ids(40_000), ["a", "b"]);
  held.remove([b]);
  assert.deepEqual(ids(40_000), ["a"]);
  held.extended([b], 40_000); // released meanwhile: not held again
  assert.deepEqual(ids(100_000), ["a"]);
});
