// Unit tests of src/pipeline/admission.ts: claims keep --max-messages exact
// however receives interleave; a deadline cuts long polls and sends late
// batches back; a dry run takes each MessageId once and knows when the queue
// has come round.
import assert from "node:assert/strict";
import fc from "fast-check";
import { Admission } from "../../../src/pipeline/admission.ts";
import type { ReceivedMessage } from "../../../src/types.ts";

const message = (id: string): ReceivedMessage => ({
  id,
  receiptHandle: `r-${id}`,
  body: "{}",
  sentAtMs: 0,
  dated: true,
  receiveCount: 1,
});
const batch = (...ids: string[]) => ids.map(message);
const ids = (messages: readonly ReceivedMessage[]) => messages.map((m) => m.id);

const unbounded = { maxMessages: null, maxDurationMs: null, dryRun: false, startedAt: 0 };

Deno.test("Admission without bounds takes everything and never closes", () => {
  const a = new Admission(unbounded);
  assert.equal(a.claim(10), 10);
  const sorted = a.sort(batch("a", "b", "a"), 10, 1e9);
  assert.deepEqual(ids(sorted.taken), ["a", "b", "a"], "a repeat is the commit's to fold");
  assert.deepEqual(sorted.giveBack, []);
  assert.equal(a.closed(1e12), false);
  assert.equal(a.waitSeconds(20, 1e9), 20);
  assert.equal(a.untilDeadline(0), null);
});

Deno.test("Admission.claim() never lets receives in flight ask for more than --max-messages leaves", async (t) => {
  await t.step("claims shrink to what is left, then wait", () => {
    const a = new Admission({ ...unbounded, maxMessages: 25 });
    assert.deepEqual([a.claim(10), a.claim(10), a.claim(10), a.claim(10)], [10, 10, 5, 0]);
    // The first receive brings 3 of its 10: 7 are free again.
    assert.deepEqual(ids(a.sort(batch("a", "b", "c"), 10, 0).taken), ["a", "b", "c"]);
    assert.equal(a.claim(10), 7);
    assert.equal(a.closed(0), false);
  });
  await t.step("the bound closes at exactly N", () => {
    const a = new Admission({ ...unbounded, maxMessages: 3 });
    assert.equal(a.claim(10), 3);
    a.sort(batch("a", "b", "c"), 3, 0);
    assert.equal(a.reached, "max-messages");
    assert.equal(a.closed(0), true);
    assert.equal(a.taken, 3);
    assert.equal(a.claim(10), 0);
  });
  await t.step("an endpoint that answers with more than asked has the excess given back", () => {
    const a = new Admission({ ...unbounded, maxMessages: 2 });
    assert.equal(a.claim(10), 2);
    const sorted = a.sort(batch("a", "b", "c", "d"), 2, 0);
    assert.deepEqual(ids(sorted.taken), ["a", "b"]);
    assert.deepEqual(ids(sorted.giveBack), ["c", "d"]);
  });
  await t.step("any interleaving of claims and answers takes exactly N when N are there", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 300 }),
        fc.integer({ min: 1, max: 10 }),
        fc.array(fc.tuple(fc.nat(), fc.nat(10)), { minLength: 1, maxLength: 400 }),
        (max, batchSize, steps) => {
          const a = new Admission({ ...unbounded, maxMessages: max });
          const inFlight: number[] = [];
          let next = 0;
          let taken = 0;
          const answer = (index: number, short: number) => {
            const [claimed] = inFlight.splice(index % inFlight.length, 1);
            const n = Math.max(0, (claimed ?? 0) - (short % 2 === 0 ? 0 : short));
            const sorted = a.sort(
              Array.from({ length: n }, () => message(String(next++))),
              claimed ?? 0,
              0,
            );
            assert.deepEqual(sorted.giveBack, [], "claims leave nothing to give back");
            taken += sorted.taken.length;
          };
          for (const [pick, short] of steps) {
            if (pick % 3 !== 0 || inFlight.length === 0) {
              const n = a.claim(batchSize);
              if (n > 0) inFlight.push(n);
            } else answer(pick, short);
            assert.ok(taken <= max);
          }
          // The queue still has plenty: the remaining receives come back full.
          while (!a.closed(0)) {
            while (inFlight.length > 0) answer(0, 0);
            const n = a.claim(batchSize);
            if (n > 0) inFlight.push(n);
          }
          while (inFlight.length > 0) answer(0, 0);
          assert.equal(taken, max);
          assert.equal(a.reached, "max-messages");
        },
      ),
    );
  });
});

Deno.test("Admission with --max-duration cuts each poll's wait to the deadline and gives back what arrives after it", () => {
  const a = new Admission({ ...unbounded, maxDurationMs: 60_000, startedAt: 1_000 });
  assert.equal(a.waitSeconds(20, 1_000), 20);
  assert.equal(a.waitSeconds(20, 51_500), 9, "9.5 s left: a 9 s poll");
  assert.equal(a.waitSeconds(20, 60_200), 0, "under a second left: a short poll");
  assert.equal(a.untilDeadline(60_200), 800);
  assert.deepEqual(ids(a.sort(batch("a"), 10, 60_999).taken), ["a"]);
  assert.equal(a.closed(60_999), false);
  const late = a.sort(batch("b", "c"), 10, 61_000);
  assert.deepEqual(late.taken, []);
  assert.deepEqual(ids(late.giveBack), ["b", "c"]);
  assert.equal(a.reached, "max-duration");
  assert.equal(a.untilDeadline(70_000), 0);
});

Deno.test("Admission in a dry run takes each MessageId once and ends the round when nothing new comes", async (t) => {
  const dry = { ...unbounded, dryRun: true };
  await t.step("repeats go back; a batch of repeats only ends the round", () => {
    const a = new Admission(dry);
    assert.deepEqual(ids(a.sort(batch("a", "b", "c"), 10, 0).taken), ["a", "b", "c"]);
    const mixed = a.sort(batch("a", "d"), 10, 0);
    assert.deepEqual(ids(mixed.taken), ["d"]);
    assert.deepEqual(ids(mixed.giveBack), ["a"]);
    assert.equal(a.roundDone, false, "something new came");
    const empty = a.sort([], 10, 0);
    assert.deepEqual(empty, { taken: [], giveBack: [] });
    assert.equal(a.roundDone, false, "an empty receive is the mode's to judge");
    const repeats = a.sort(batch("b", "c"), 10, 0);
    assert.deepEqual(repeats.taken, []);
    assert.deepEqual(ids(repeats.giveBack), ["b", "c"]);
    assert.equal(a.roundDone, true);
    assert.equal(a.closed(0), false, "not a bound");
  });
  await t.step("repeats outnumbering the messages printed end the round too", () => {
    const a = new Admission(dry);
    a.sort(batch("a", "b"), 10, 0);
    a.sort(batch("a", "b", "c"), 10, 0); // 2 repeats, 3 taken
    assert.equal(a.roundDone, false);
    a.sort(batch("a", "b", "d"), 10, 0); // 4 repeats, 4 taken
    assert.equal(a.roundDone, false);
    a.sort(batch("c", "e"), 10, 0); // 5 repeats, 5 taken
    assert.equal(a.roundDone, false);
    a.sort(batch("d", "f"), 10, 0); // 6 repeats, 6 taken
    assert.equal(a.roundDone, false);
    a.sort(batch("e", "f", "a", "g"), 10, 0); // 9 repeats, 7 taken
    assert.equal(a.roundDone, true);
  });
  await t.step("with --max-messages it counts new messages only", () => {
    const a = new Admission({ ...dry, maxMessages: 3 });
    assert.equal(a.claim(10), 3);
    assert.deepEqual(ids(a.sort(batch("a", "b"), 3, 0).taken), ["a", "b"]);
    assert.equal(a.claim(10), 1);
    const sorted = a.sort(batch("a", "c"), 1, 0);
    assert.deepEqual(ids(sorted.taken), ["c"]);
    assert.deepEqual(ids(sorted.giveBack), ["a"]);
    assert.equal(a.reached, "max-messages");
  });
});
