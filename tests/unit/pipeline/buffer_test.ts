// Unit tests of src/pipeline/buffer.ts: when a transaction is due, what
// taking and releasing do to the bounds, and the body-size bound.
import assert from "node:assert/strict";
import { MessageBuffer } from "../../../src/pipeline/buffer.ts";
import type { ReceivedMessage } from "../../../src/types.ts";

function messages(n: number, bodyUnits = 10, from = 0): ReceivedMessage[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `m${from + i}`,
    receiptHandle: `r${from + i}`,
    body: "x".repeat(bodyUnits),
    sentAtMs: 0,
    dated: true,
    receiveCount: 1,
  }));
}

function buffer(
  overrides: Partial<{ maxRows: number; maxHeld: number; maxHeldUnits: number }> = {},
) {
  let t = 1000;
  const b = new MessageBuffer({
    maxRows: overrides.maxRows ?? 5,
    maxWaitMs: 200,
    maxHeld: overrides.maxHeld ?? 10,
    maxHeldUnits: overrides.maxHeldUnits ?? 1_000_000,
    now: () => t,
  });
  return { b, advance: (ms: number) => (t += ms) };
}

Deno.test("MessageBuffer is due when a transaction is full, when the oldest waited maxWaitMs, or when closing", () => {
  const { b, advance } = buffer();
  assert.equal(b.due(false), false, "empty");
  assert.equal(b.due(true), false, "empty, even closing");
  b.add(messages(2));
  assert.equal(b.due(false), false);
  assert.equal(b.untilDue(), 200);
  assert.equal(b.due(true), true, "closing flushes what there is");
  advance(150);
  assert.equal(b.untilDue(), 50);
  advance(50);
  assert.equal(b.due(false), true, "waited long enough");
  const { b: full } = buffer();
  full.add(messages(5));
  assert.equal(full.due(false), true, "a full transaction");
});

Deno.test("MessageBuffer takes at most maxRows and counts taken messages until released", () => {
  const { b } = buffer({ maxRows: 4, maxHeld: 6 });
  b.add(messages(6));
  assert.equal(b.full(), true, "six held of six");
  const first = b.take();
  assert.deepEqual(first.map((m) => m.id), ["m0", "m1", "m2", "m3"]);
  assert.equal(b.pending, 2);
  assert.equal(b.full(), true, "taken ones still count");
  b.release(first);
  assert.equal(b.full(), false);
  assert.deepEqual(b.take().map((m) => m.id), ["m4", "m5"]);
});

Deno.test("MessageBuffer is full once the body text held reaches its bound", () => {
  const { b } = buffer({ maxHeld: 1000, maxHeldUnits: 100 });
  b.add(messages(3, 30));
  assert.equal(b.full(), false, "90 units");
  b.add(messages(1, 30, 3));
  assert.equal(b.full(), true, "120 units");
  b.release(b.take());
  assert.equal(b.full(), false);
});

Deno.test("MessageBuffer wakes the flusher on arrival and receivers on release", async () => {
  const { b } = buffer();
  const arrived = b.arrivals.wait(10_000);
  b.add(messages(1));
  await arrived;
  const freed = b.space.wait(10_000);
  b.release(b.take());
  await freed;
});

Deno.test("MessageBuffer counts receives under way as held, so any number of loops stays within one receive of the bound", async () => {
  const { b } = buffer({ maxHeld: 10 });
  b.add(messages(5));
  b.reserve(4);
  assert.equal(b.full(), false, "5 held + 4 asked for");
  b.reserve(10);
  assert.equal(b.full(), true, "a second receive under way fills it");
  // Any number of loops: each asks only while it is not full.
  let woken = false;
  const waiting = b.space.wait(10_000).then(() => (woken = true));
  b.unreserve(10);
  await waiting;
  assert.equal(woken, true, "a receive that brought nothing frees its space and wakes the loops");
  assert.equal(b.full(), false);
  b.unreserve(4);
  b.add(messages(4, 10, 5));
  assert.equal(b.full(), false, "9 held");
  b.reserve(10);
  assert.equal(b.full(), true);
  b.unreserve(10);
  b.add(messages(10, 10, 9));
  assert.equal(b.full(), true, "19 held: the bound plus at most one receive (less one)");
});
