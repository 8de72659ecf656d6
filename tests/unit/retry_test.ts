// Unit tests of src/retry.ts: backoffMs() bounds with a pinned random source, and sleep() aborting.
import assert from "node:assert/strict";
import fc from "fast-check";
import { backoffMs, DEFAULT_BACKOFF, sleep } from "../../src/pipeline/retry.ts";

const ceilingOf = (attempt: number, baseMs: number, capMs: number) =>
  Math.min(capMs, baseMs * 2 ** (attempt - 1));

Deno.test("backoffMs() stays between half its ceiling and the ceiling for attempts 1 to 40", async (t) => {
  for (let attempt = 1; attempt <= 40; attempt++) {
    await t.step(`backoffMs() bounds attempt ${attempt}`, () => {
      const ceiling = ceilingOf(attempt, DEFAULT_BACKOFF.baseMs, DEFAULT_BACKOFF.capMs);
      const low = backoffMs(attempt, DEFAULT_BACKOFF, () => 0);
      const high = backoffMs(attempt, DEFAULT_BACKOFF, () => 1 - Number.EPSILON);
      const mid = backoffMs(attempt, DEFAULT_BACKOFF, () => 0.5);
      assert.equal(low, ceiling / 2);
      assert.equal(high, ceiling);
      assert.equal(mid, Math.round(ceiling * 0.75));
      assert.ok(high <= DEFAULT_BACKOFF.capMs);
    });
  }
});

Deno.test("backoffMs() doubles from the base until the cap", () => {
  const highs = [1, 2, 3, 4, 5, 6, 7].map((a) =>
    backoffMs(a, DEFAULT_BACKOFF, () => 1 - Number.EPSILON)
  );
  assert.deepEqual(highs, [200, 400, 800, 1600, 3200, 5000, 5000]);
});

Deno.test("backoffMs() is never above the cap nor below half its ceiling", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 60 }),
      fc.integer({ min: 1, max: 10_000 }),
      fc.integer({ min: 1, max: 600_000 }),
      fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
      (attempt, baseMs, capMs, r) => {
        const delay = backoffMs(attempt, { baseMs, capMs }, () => r);
        const ceiling = ceilingOf(Math.min(attempt, 31), baseMs, capMs);
        assert.ok(Number.isInteger(delay), `${delay}`);
        assert.ok(delay <= capMs, `${delay} > cap ${capMs}`);
        assert.ok(delay <= ceiling, `${delay} > ceiling ${ceiling}`);
        assert.ok(delay >= ceiling / 2, `${delay} < half of ${ceiling}`);
      },
    ),
    { numRuns: 5000 },
  );
});

Deno.test("backoffMs() treats attempts below 1 as the first", () => {
  for (const attempt of [0, -1, -100]) {
    assert.equal(backoffMs(attempt, DEFAULT_BACKOFF, () => 0), DEFAULT_BACKOFF.baseMs / 2);
  }
});

/** Whether `promise` settles within a few microtask turns, without any timer. */
async function settlesAtOnce(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  promise.then(() => (settled = true), () => (settled = true));
  for (let i = 0; i < 5; i++) await Promise.resolve();
  return settled;
}

Deno.test("sleep() resolves at once when its signal has already aborted", async () => {
  // An hour-long sleep: a timer left behind would also fail the op sanitizer.
  assert.ok(await settlesAtOnce(sleep(3_600_000, AbortSignal.abort())));
});

Deno.test("sleep() resolves when its signal aborts, clearing its timer", async () => {
  const controller = new AbortController();
  const slept = sleep(3_600_000, controller.signal);
  assert.equal(await settlesAtOnce(slept), false);
  controller.abort();
  assert.ok(await settlesAtOnce(slept));
});

Deno.test("sleep() resolves after its delay without a signal", async () => {
  assert.equal(await sleep(1), undefined);
});
