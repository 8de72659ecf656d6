/**
 * `--concurrency auto`: how many receive loops a run keeps, decided from
 * what the last interval showed. Pure: the pipeline gathers the
 * observations (receives, backpressure, the process's load) and applies the
 * decisions; nothing here reads a clock or does I/O.
 *
 * Why these signals. A receive loop spends most of its time waiting for SQS,
 * so at a network round trip of D ms each loop moves about
 * `10 / (D + processing)` messages a millisecond, and the loops a run needs
 * grow with D (docs/performance.md#receive-loops---concurrency-auto). More
 * loops help only while there is more to receive (receives come back full),
 * somewhere to put it (the buffer is not full: Postgres sets the pace), and
 * CPU to handle it (the process's CPU time per wall second, and how late the
 * event loop runs a timer). While those hold, loops first multiply (slow
 * start): by as much as the spare CPU could carry, 2 to 4 times, since CPU
 * per receive holds as loops grow. A multiplying step stays unless the
 * receives fell after it; once slow start is over, a gentle step must pay:
 * bring at least a tenth of the receives it promised, or it is undone. That
 * is what catches a CPU shared with other processes (the emulator and
 * Postgres on a developer's machine), where the process's own CPU time looks
 * spare. Every step is judged on the better of the two intervals after it:
 * the first alone may be the new loops' warm-up, or a pause of the whole
 * machine, common in a run's first second (figures in docs/performance.md).
 * An empty receive says the queue is drained: loops fall to the floor. A
 * saturated CPU says more loops cannot help, so growth is undone, but never
 * below the start: loops cost CPU per receive, not per loop, and the start
 * value was the fixed default a busy CPU kept busy at 0 ms.
 *
 * Hysteresis: growth and shrinking have thresholds apart (a band between
 * holds), growth multiplies only until the first shrink (or undone step) and
 * then steps gently, and no growth follows a shrink for a few intervals.
 *
 * @module
 */

import type { ConcurrencyObservation } from "../types.ts";

/** Fewest loops `auto` keeps: enough long polls to notice new messages at once. */
export const AUTO_FLOOR = 2;
/** Loops `auto` starts with: the fixed default it replaces. */
export const AUTO_START = 8;
/**
 * Most loops `auto` runs: at 25 ms round trips 64 loops were still gaining
 * (issue 21's figures in docs/performance.md); twice that leaves room for
 * slower networks, and the buffer's bound, not the loop count, caps what is
 * held.
 */
export const AUTO_CEILING = 128;
/**
 * How often `auto` decides, ms: short, since a drain of a few seconds would
 * otherwise spend most of them climbing; each interval still holds dozens
 * of receives at 25 ms round trips.
 */
export const DECIDE_MS = 250;
/**
 * When `auto` first decides, ms: half an interval, since a drain of a few
 * seconds climbs in its first second, and by then even at 25 ms round trips
 * the starting loops have had some thirty receives. Receives are compared
 * per `DECIDE_MS` (`perInterval`), so a short interval weighs the same.
 */
export const FIRST_DECIDE_MS = DECIDE_MS / 2;

/** Share of receives that must come back full for growth. */
const FULL_SHARE = 0.9;
/** Share of receives that come back empty at which loops halve. */
const EMPTY_SHARE = 0.5;
/** CPU time per wall second as a share of the CPUs the process may use: grow below, shrink at or above. */
const CPU_GROW = 0.75;
const CPU_SHRINK = 0.95;
/** Mean lateness of the event loop's probe timer, ms: grow below, shrink at or above. */
const LAG_GROW_MS = 15;
const LAG_SHRINK_MS = 50;
/**
 * Share of the receives a gentle step up promised that an interval after it
 * must bring. Small: past a few dozen loops at 25 ms, doubling them brought a
 * fifth more (issue 21's figures in docs/performance.md), still worth having.
 */
const GAIN_SHARE = 0.1;
/** Share of its receives a step of slow start may lose before it is undone. */
const HARM_SHARE = 0.2;
/** Intervals after a shrink in which the loops do not grow. */
const COOLDOWN = 4;
/**
 * Intervals after an undone step before the next try: doubled by each step
 * undone in a row, up to half a minute, so a steady limit is probed ever
 * less often.
 */
const RETRY_AFTER = 10;
const RETRY_AFTER_MAX = 120;

/** The bounds and environment of one run's controller. */
export interface ControllerOptions {
  readonly floor: number;
  readonly start: number;
  readonly ceiling: number;
  /** CPUs the process may use (its affinity and quota). */
  readonly cpus: number;
}

/** Why the loop count changed. */
export type ChangeReason = "full" | "empty" | "cpu" | "no_gain";

/** The controller's state between decisions. */
export interface ControllerState {
  readonly loops: number;
  /** True until the first shrink: growth multiplies. */
  readonly slowStart: boolean;
  /** Intervals left in which growth waits after a shrink. */
  readonly cooldown: number;
  /**
   * After a step up: the loops and receives before it, to check the step
   * paid, and the receives of the first interval after it (null until that
   * interval is over), each per `DECIDE_MS`: a step is judged on the better
   * of the two intervals after it.
   */
  readonly stepFrom: {
    readonly loops: number;
    readonly receives: number;
    readonly firstAfter: number | null;
  } | null;
  /** The cooldown the next undone step gets. */
  readonly retryAfter: number;
}

/** A decision: the new state, and why the count changed (null: it did not). */
export interface Decision {
  readonly state: ControllerState;
  readonly reason: ChangeReason | null;
}

/**
 * Most receive loops a run may have at once: what the SDK's connection pool
 * must hold for them (`sqs/client.ts` adds what deletes and the heartbeat need).
 */
export function mostLoops(concurrency: number | "auto"): number {
  return concurrency === "auto" ? AUTO_CEILING : concurrency;
}

/** The default bounds: `AUTO_FLOOR` to `AUTO_CEILING`, starting at `AUTO_START`. */
export function autoOptions(cpus: number): ControllerOptions {
  return { floor: AUTO_FLOOR, start: AUTO_START, ceiling: AUTO_CEILING, cpus: Math.max(1, cpus) };
}

/** The state a run starts in. */
export function initialState(options: ControllerOptions): ControllerState {
  return {
    loops: clamp(options.start, options),
    slowStart: true,
    cooldown: 0,
    stepFrom: null,
    retryAfter: RETRY_AFTER,
  };
}

function clamp(loops: number, options: ControllerOptions): number {
  return Math.min(options.ceiling, Math.max(options.floor, Math.round(loops)));
}

/** True when the process has no CPU to spare for more receives. */
function saturated(o: ConcurrencyObservation, options: ControllerOptions): boolean {
  return o.cpuPerSecond >= CPU_SHRINK * options.cpus || o.lagMs >= LAG_SHRINK_MS;
}

/** True when the process has CPU to spare. */
function idleEnough(o: ConcurrencyObservation, options: ControllerOptions): boolean {
  return o.cpuPerSecond < CPU_GROW * options.cpus && o.lagMs < LAG_GROW_MS;
}

/** The interval's receives scaled to `DECIDE_MS`: intervals differ in length. */
function perInterval(o: ConcurrencyObservation): number {
  return (o.receives * DECIDE_MS) / Math.max(1, o.intervalMs);
}

/**
 * The receives an interval after a step up must bring for the step to stay
 * (per `DECIDE_MS`).
 * Multiplying (slow start): not a fifth fewer than before it: a step that
 * brings nothing costs no throughput (with the CPU shared, 64 loops moved
 * as much as 8: docs/performance.md), while undoing it for a pause of the
 * whole machine leaves half the speed unused at 10 ms and more. A gentle
 * step after that: a tenth of what it promised, since receives scale with
 * the loops while the network is what limits them.
 */
function needed(
  state: ControllerState,
  from: { readonly loops: number; readonly receives: number },
): number {
  if (state.slowStart) return (1 - HARM_SHARE) * from.receives;
  return from.receives * (1 + GAIN_SHARE * (state.loops / from.loops - 1));
}

/**
 * The loop count after one interval. An interval with no receive back
 * proves nothing and holds (a long poll on an idle queue takes its whole
 * wait).
 */
export function decide(
  state: ControllerState,
  o: ConcurrencyObservation,
  options: ControllerOptions,
): Decision {
  const cooldown = Math.max(0, state.cooldown - 1);
  const hold: Decision = { state: { ...state, cooldown, stepFrom: null }, reason: null };
  const shrinkTo = (loops: number, reason: ChangeReason, wait = COOLDOWN): Decision => {
    const next = clamp(loops, options);
    if (next >= state.loops) return hold;
    const retryAfter = reason === "no_gain"
      ? Math.min(RETRY_AFTER_MAX, state.retryAfter * 2)
      : state.retryAfter;
    return {
      state: { loops: next, slowStart: false, cooldown: wait, stepFrom: null, retryAfter },
      reason,
    };
  };
  if (o.receives === 0) return hold;
  if (o.empty >= EMPTY_SHARE * o.receives) return shrinkTo(state.loops / 2, "empty");
  if (saturated(o, options)) {
    // Undo growth only: below the start, fewer loops would not free CPU.
    const floor = Math.max(options.floor, Math.min(options.start, state.loops));
    return shrinkTo(Math.max(floor, state.loops * 0.75), "cpu");
  }
  const from = state.stepFrom;
  const receives = perInterval(o);
  if (from !== null && Math.max(from.firstAfter ?? 0, receives) < needed(state, from)) {
    // Judged on the better of the two intervals after the step: one alone
    // may be the new loops' warm-up, or a pause of the whole machine.
    if (from.firstAfter !== null) return shrinkTo(from.loops, "no_gain", state.retryAfter);
    return {
      state: { ...state, cooldown, stepFrom: { ...from, firstAfter: receives } },
      reason: null,
    };
  }
  // A step that paid: the next undone one waits the least again.
  const retryAfter = from === null ? state.retryAfter : RETRY_AFTER;
  const keep: Decision = { state: { ...hold.state, retryAfter }, reason: null };
  const grow = state.cooldown === 0 && o.blocked === 0 &&
    o.full >= FULL_SHARE * o.receives && idleEnough(o, options);
  if (!grow) return keep;
  // While multiplying: by as much as the spare CPU could carry, 2 to
  // 4 times (the CPU a receive costs holds as loops grow).
  const spare = (CPU_GROW * options.cpus) / Math.max(o.cpuPerSecond, 0.01);
  const step = state.slowStart
    ? state.loops * (Math.min(4, Math.max(2, spare)) - 1)
    : Math.max(1, Math.ceil(state.loops / 8));
  const next = clamp(state.loops + step, options);
  if (next === state.loops) return keep;
  return {
    state: {
      ...state,
      loops: next,
      cooldown,
      stepFrom: { loops: state.loops, receives, firstAfter: null },
      retryAfter,
    },
    reason: "full",
  };
}
