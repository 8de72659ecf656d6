// Unit tests of src/pipeline/concurrency.ts: what `--concurrency auto`
// decides from one interval's observations (a table), and what holds over
// any sequence of them (properties): the bounds, growth only with full
// receives, room and CPU, no move back and forth on a steady signal.
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  AUTO_CEILING,
  AUTO_FLOOR,
  AUTO_START,
  autoOptions,
  type ControllerState,
  decide,
  DECIDE_MS,
  initialState,
  mostLoops,
} from "../../../src/pipeline/concurrency.ts";
import type { ConcurrencyObservation as Observation } from "../../../src/types.ts";

const OPTIONS = autoOptions(2);

/** An interval of 10 full receives on an idle process, with `changes`. */
function seen(changes: Partial<Observation> = {}): Observation {
  return {
    receives: 10,
    full: 10,
    empty: 0,
    blocked: 0,
    cpuPerSecond: 0.2,
    lagMs: 1,
    intervalMs: DECIDE_MS,
    ...changes,
  };
}

function state(loops: number, changes: Partial<ControllerState> = {}): ControllerState {
  return { loops, slowStart: true, cooldown: 0, stepFrom: null, retryAfter: 10, ...changes };
}

Deno.test("auto starts at 8 loops, between 2 and 128", () => {
  assert.deepEqual(initialState(OPTIONS), state(AUTO_START));
  assert.equal(AUTO_START, 8);
  assert.equal(AUTO_FLOOR, 2);
  assert.equal(AUTO_CEILING, 128);
  assert.equal(mostLoops("auto"), AUTO_CEILING);
  assert.equal(mostLoops(8), 8);
});

Deno.test("decide(): one interval's observation, one decision", async (t) => {
  const cases: {
    name: string;
    from: ControllerState;
    seen: Observation;
    loops: number;
    reason: string | null;
  }[] = [
    {
      name: "full receives, idle CPU: four times the loops in slow start",
      from: state(8),
      seen: seen(),
      loops: 32,
      reason: "full",
    },
    {
      name: "full receives, a third of the CPU used: three times, what the spare CPU could carry",
      from: state(8),
      seen: seen({ cpuPerSecond: 0.5 }),
      loops: 24,
      reason: "full",
    },
    {
      name: "full receives, CPU to spare but less than for twice as many: still doubles",
      from: state(8),
      seen: seen({ cpuPerSecond: 1.2 }),
      loops: 16,
      reason: "full",
    },
    {
      name: "full receives after a shrink: an eighth more",
      from: state(32, { slowStart: false }),
      seen: seen(),
      loops: 36,
      reason: "full",
    },
    {
      name: "at the ceiling: holds",
      from: state(128),
      seen: seen(),
      loops: 128,
      reason: null,
    },
    {
      name: "growth stops short of the ceiling",
      from: state(100),
      seen: seen(),
      loops: 128,
      reason: "full",
    },
    {
      name: "no receive came back: proves nothing, holds",
      from: state(16),
      seen: seen({ receives: 0, full: 0 }),
      loops: 16,
      reason: null,
    },
    {
      name: "a tenth of the receives not full: holds",
      from: state(16),
      seen: seen({ full: 8 }),
      loops: 16,
      reason: null,
    },
    {
      name: "a loop waited for buffer space (Postgres sets the pace): holds",
      from: state(16),
      seen: seen({ blocked: 1 }),
      loops: 16,
      reason: null,
    },
    {
      name: "CPU between the thresholds: holds",
      from: state(16),
      seen: seen({ cpuPerSecond: 1.7 }),
      loops: 16,
      reason: null,
    },
    {
      name: "event loop late between the thresholds: holds",
      from: state(16),
      seen: seen({ lagMs: 25 }),
      loops: 16,
      reason: null,
    },
    {
      name: "half the receives empty: halves",
      from: state(64),
      seen: seen({ full: 0, empty: 5 }),
      loops: 32,
      reason: "empty",
    },
    {
      name: "empty receives: down to the floor, not below",
      from: state(3),
      seen: seen({ full: 0, empty: 10 }),
      loops: 2,
      reason: "empty",
    },
    {
      name: "empty receives at the floor: holds",
      from: state(2),
      seen: seen({ full: 0, empty: 10 }),
      loops: 2,
      reason: null,
    },
    {
      name: "CPU saturated: a quarter fewer",
      from: state(64),
      seen: seen({ cpuPerSecond: 1.95 }),
      loops: 48,
      reason: "cpu",
    },
    {
      name: "event loop late: a quarter fewer",
      from: state(64),
      seen: seen({ lagMs: 60 }),
      loops: 48,
      reason: "cpu",
    },
    {
      name: "CPU saturated near the start: back to the start, not below",
      from: state(10),
      seen: seen({ cpuPerSecond: 2 }),
      loops: 8,
      reason: "cpu",
    },
    {
      name: "CPU saturated at the start: holds",
      from: state(8),
      seen: seen({ cpuPerSecond: 2 }),
      loops: 8,
      reason: null,
    },
    {
      name: "CPU saturated below the start (after empty receives): holds",
      from: state(4),
      seen: seen({ cpuPerSecond: 2 }),
      loops: 4,
      reason: null,
    },
    {
      name: "slow start: a step that brought no more receives stays, and loops grow on",
      from: state(16, { stepFrom: { loops: 8, receives: 100, firstAfter: null } }),
      seen: seen({ receives: 100, full: 100, cpuPerSecond: 1 }),
      loops: 32,
      reason: "full",
    },
    {
      name: "slow start: a fifth fewer receives after a step waits for a second interval",
      from: state(16, { stepFrom: { loops: 8, receives: 100, firstAfter: null } }),
      seen: seen({ receives: 79, full: 79 }),
      loops: 16,
      reason: null,
    },
    {
      name: "slow start: a fifth fewer in both intervals after a step: undone",
      from: state(16, { stepFrom: { loops: 8, receives: 100, firstAfter: 60 } }),
      seen: seen({ receives: 79, full: 79 }),
      loops: 8,
      reason: "no_gain",
    },
    {
      name: "slow start: the second interval makes up for the first: grows on",
      from: state(16, { stepFrom: { loops: 8, receives: 100, firstAfter: 60 } }),
      seen: seen({ receives: 80, full: 80, cpuPerSecond: 1 }),
      loops: 32,
      reason: "full",
    },
    {
      name: "receives are compared per interval: half as many in half the time is no fewer",
      from: state(16, { stepFrom: { loops: 8, receives: 100, firstAfter: null } }),
      seen: seen({ receives: 50, full: 50, intervalMs: DECIDE_MS / 2, cpuPerSecond: 1 }),
      loops: 32,
      reason: "full",
    },
    {
      name: "a gentle step judged by its own size: a tenth of what it promised pays",
      from: state(36, {
        slowStart: false,
        stepFrom: { loops: 32, receives: 320, firstAfter: null },
      }),
      seen: seen({ receives: 324, full: 324 }),
      loops: 41,
      reason: "full",
    },
    {
      name: "a gentle step short of it: waits for a second interval",
      from: state(36, {
        slowStart: false,
        stepFrom: { loops: 32, receives: 320, firstAfter: null },
      }),
      seen: seen({ receives: 323, full: 323 }),
      loops: 36,
      reason: null,
    },
    {
      name: "a gentle step short of it twice: undone",
      from: state(36, {
        slowStart: false,
        stepFrom: { loops: 32, receives: 320, firstAfter: 320 },
      }),
      seen: seen({ receives: 323, full: 323 }),
      loops: 32,
      reason: "no_gain",
    },
    {
      name: "in the cooldown after a shrink: holds",
      from: state(32, { slowStart: false, cooldown: 2 }),
      seen: seen(),
      loops: 32,
      reason: null,
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      const d = decide(c.from, c.seen, OPTIONS);
      assert.equal(d.state.loops, c.loops);
      assert.equal(d.reason, c.reason);
    });
  }
});

Deno.test("decide(): after a shrink, no growth for four intervals, then gentle steps", () => {
  let s = decide(state(64), seen({ cpuPerSecond: 2 }), OPTIONS).state;
  assert.equal(s.loops, 48);
  assert.equal(s.slowStart, false);
  const counts: number[] = [];
  for (let i = 0; i < 6; i++) {
    // Receives in step with the loops: a network-bound run, where steps pay.
    s = decide(s, seen({ receives: s.loops * 10, full: s.loops * 10 }), OPTIONS).state;
    counts.push(s.loops);
  }
  assert.deepEqual(counts, [48, 48, 48, 48, 54, 61]);
});

Deno.test("decide(): after slow start, a step that does not pay is undone, and tried again ever less often", () => {
  // The same receives however many loops: the limit is not the network.
  let s = state(32, { slowStart: false });
  const changes: string[] = [];
  for (let i = 0; i < 200; i++) {
    const d = decide(s, seen({ receives: 100, full: 100 }), OPTIONS);
    if (d.reason !== null) changes.push(`${i}:${d.state.loops}`);
    s = d.state;
  }
  // Each try is judged on the two intervals after it; the waits between
  // tries double (10, 20, 40, 80 intervals).
  assert.deepEqual(changes, [
    "0:36",
    "2:32",
    "13:36",
    "15:32",
    "36:36",
    "38:32",
    "79:36",
    "81:32",
    "162:36",
    "164:32",
  ]);
});

Deno.test("decide(): in slow start, loops the receives do not punish climb to the ceiling and stay", () => {
  // The same receives however many loops, CPU to spare: more loops cost
  // nothing a run can see, so the climb is not undone.
  let s = initialState(OPTIONS);
  const path: number[] = [];
  for (let i = 0; i < 20; i++) {
    s = decide(s, seen({ receives: 100, full: 100, cpuPerSecond: 1 }), OPTIONS).state;
    path.push(s.loops);
  }
  assert.deepEqual(path.slice(0, 4), [16, 32, 64, 128]);
  assert.ok(path.slice(3).every((loops) => loops === AUTO_CEILING));
});

Deno.test("decide(): in slow start, a climb that costs receives is undone once both intervals after it show it", () => {
  // Receives peak at 32 loops and fall by a third beyond (a saturated peer).
  const receivesAt = (loops: number) => (loops <= 32 ? loops * 5 : 160 * 0.66);
  let s = initialState(OPTIONS);
  const changes: string[] = [];
  for (let i = 0; i < 8; i++) {
    const r = Math.round(receivesAt(s.loops));
    const d = decide(s, seen({ receives: r, full: r, cpuPerSecond: 1 }), OPTIONS);
    if (d.reason !== null) changes.push(`${d.state.loops} ${d.reason}`);
    s = d.state;
  }
  assert.deepEqual(changes, ["16 full", "32 full", "64 full", "32 no_gain"]);
  assert.equal(s.slowStart, false, "an undone step ends slow start");
});

Deno.test("decide(): the CPU threshold scales with the CPUs the process may use", () => {
  const one = autoOptions(1);
  assert.equal(decide(state(16), seen({ cpuPerSecond: 0.97 }), one).reason, "cpu");
  assert.equal(decide(state(16), seen({ cpuPerSecond: 0.97 }), OPTIONS).reason, "full");
  assert.equal(decide(state(16), seen({ cpuPerSecond: 0.8 }), one).reason, null);
  assert.equal(autoOptions(0).cpus, 1, "an unknown CPU count counts as one");
});

const observation = fc.record({
  receives: fc.integer({ min: 0, max: 200 }),
  fullShare: fc.double({ min: 0, max: 1, noNaN: true }),
  emptyShare: fc.double({ min: 0, max: 1, noNaN: true }),
  blocked: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 50 })),
  cpuPerSecond: fc.double({ min: 0, max: 4, noNaN: true }),
  lagMs: fc.double({ min: 0, max: 200, noNaN: true }),
  intervalMs: fc.double({ min: 1, max: 1000, noNaN: true }),
}).map((o): Observation => {
  const full = Math.floor(o.receives * o.fullShare);
  const empty = Math.floor((o.receives - full) * o.emptyShare);
  return {
    receives: o.receives,
    full,
    empty,
    blocked: o.blocked,
    cpuPerSecond: o.cpuPerSecond,
    lagMs: o.lagMs,
    intervalMs: o.intervalMs,
  };
});

Deno.test("decide(): any sequence stays within the bounds, and a change always has its reason", () => {
  fc.assert(
    fc.property(
      fc.array(observation, { maxLength: 60 }),
      fc.integer({ min: 1, max: 8 }),
      (steps, cpus) => {
        const options = autoOptions(cpus);
        let s = initialState(options);
        for (const o of steps) {
          const d = decide(s, o, options);
          assert.ok(d.state.loops >= AUTO_FLOOR && d.state.loops <= AUTO_CEILING);
          assert.ok(Number.isInteger(d.state.loops));
          assert.equal(d.reason === null, d.state.loops === s.loops);
          if (d.state.loops > s.loops) {
            // Growth only on full receives, with room and CPU to spare.
            assert.equal(d.reason, "full");
            assert.equal(o.blocked, 0);
            assert.ok(o.full >= 0.9 * o.receives && o.receives > 0);
            assert.ok(o.cpuPerSecond < 0.75 * cpus && o.lagMs < 15);
          }
          if (d.reason === "cpu") assert.ok(d.state.loops >= Math.min(AUTO_START, s.loops));
          s = d.state;
        }
      },
    ),
  );
});

Deno.test("decide(): a steady signal settles: every step up it undoes is tried ever less often", () => {
  fc.assert(
    fc.property(observation, fc.integer({ min: 2, max: 128 }), (o, loops) => {
      let s = state(loops, { slowStart: false });
      const ups: number[] = [];
      let downs = 0;
      for (let i = 0; i < 200; i++) {
        const d = decide(s, o, OPTIONS);
        if (d.state.loops > s.loops) ups.push(i);
        if (d.reason === "no_gain") downs++;
        else if (d.state.loops < s.loops) assert.equal(ups.length, 0, "no shrink after growth");
        s = d.state;
      }
      // Growth with the same receives never pays: each try is undone, the gaps double.
      assert.ok(downs <= ups.length);
      const gaps = ups.slice(1).map((at, i) => at - ups[i]!);
      for (let i = 1; i < gaps.length; i++) assert.ok(gaps[i]! >= gaps[i - 1]!, `${gaps}`);
      assert.ok(ups.length <= 6, `${ups.length} steps up in 200 intervals`);
    }),
  );
});
