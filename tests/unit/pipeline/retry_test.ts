// Unit tests of src/pipeline/retry.ts: backoffMs() bounds with a pinned random source, sleep() aborting, and the retrying() loop.
import assert from "node:assert/strict";
import fc from "fast-check";
import { backoffMs, DEFAULT_BACKOFF, retrying, sleep } from "../../../src/pipeline/retry.ts";

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

/** A clock the tests move by hand, and a backoff with no waiting so they run at once. */
function fakeClock() {
  let t = 0;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}
const NO_WAIT = { baseMs: 0, capMs: 0 };
const transient = (e: unknown) => e instanceof Error && e.message === "transient";

Deno.test("retrying() returns the first success and reports each failure with its retry delay", async () => {
  const clock = fakeClock();
  const reports: (number | null)[] = [];
  let calls = 0;
  let recovered = 0;
  const result = await retrying(() => {
    calls++;
    clock.advance(100);
    return calls < 3 ? Promise.reject(new Error("transient")) : Promise.resolve("done");
  }, {
    now: clock.now,
    deadline: (first) => first + 10_000,
    transient,
    backoff: NO_WAIT,
    onFailure: (_e, _attempt, retryIn) => reports.push(retryIn),
    onRecovered: (n) => (recovered = n),
  });
  assert.deepEqual(result, { ok: true, value: "done" });
  assert.equal(calls, 3);
  assert.deepEqual(reports, [0, 0]);
  assert.equal(recovered, 3);
});

Deno.test("retrying() gives up at once on a permanent error, and at the deadline on a transient one", async (t) => {
  await t.step("permanent", async () => {
    const reports: (number | null)[] = [];
    const result = await retrying(() => Promise.reject(new Error("permanent")), {
      now: () => 0,
      deadline: () => Infinity,
      transient,
      onFailure: (_e, _a, retryIn) => reports.push(retryIn),
    });
    assert.equal(result.ok, false);
    assert.deepEqual(reports, [null]);
  });
  await t.step("transient past the deadline", async () => {
    const clock = fakeClock();
    let calls = 0;
    const result = await retrying(() => {
      calls++;
      clock.advance(400);
      return Promise.reject(new Error("transient"));
    }, {
      now: clock.now,
      deadline: (first) => first + 1000,
      transient,
      backoff: NO_WAIT,
      onFailure: () => {},
    });
    assert.equal(result.ok, false);
    // Failures at 400, 800, 1200: the deadline is 1400 (first failure + 1000) → 1200 < 1400, 1600 ≥ 1400.
    assert.equal(calls, 4);
  });
  await t.step("cancelled between attempts", async () => {
    let calls = 0;
    const result = await retrying(() => {
      calls++;
      return Promise.reject(new Error("transient"));
    }, {
      now: () => 0,
      deadline: () => Infinity,
      transient,
      backoff: NO_WAIT,
      cancelled: () => calls >= 2,
      onFailure: () => {},
    });
    assert.deepEqual(result, { ok: false, error: null });
    assert.equal(calls, 2);
  });
});
