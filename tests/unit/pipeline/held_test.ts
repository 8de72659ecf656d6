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
  const held = new HeldMessages(30, 1000); // 30 s, a heartbeat a second
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

Deno.test("with a visibility timeout under four heartbeats, a held message is due while two beats remain", () => {
  const held = new HeldMessages(2, 1000); // 2 s: half a timeout is only one beat
  const ids = (ms: number) => held.due(ms).map((m) => m.id);
  const a = message("a");
  held.add([a], 0);
  // A beat just before half the timeout would otherwise leave the next one,
  // a second later and perhaps late, at the very deadline.
  assert.deepEqual(ids(0), ["a"], "due from its receipt");
  held.extended([a], 900);
  assert.deepEqual(ids(900), ["a"], "and at every beat after");
  const slow = new HeldMessages(60, 1000);
  slow.add([a], 0);
  assert.deepEqual(slow.due(29_999).map((m) => m.id), [], "a long timeout: still half of it");
  assert.deepEqual(slow.due(30_000).map((m) => m.id), ["a"]);
});
