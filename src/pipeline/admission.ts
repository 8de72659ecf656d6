/**
 * Which received deliveries a run takes, and when it stops receiving: the
 * bounds (`--max-messages`, `--max-duration`) and, in a dry run, each
 * MessageId once. What is not taken goes back to the queue at once
 * (visibility 0, by the caller). Pure bookkeeping; the clock is passed in.
 *
 * @module
 */

import type { ReceivedMessage } from "../types.ts";

/** The bound a run stopped at, by its flag name. */
export type Bound = "max-messages" | "max-duration";

/** The bounds and the mode of one run. */
export interface AdmissionOptions {
  /** Most deliveries to take; null: no bound. */
  readonly maxMessages: number | null;
  /** How long after `startedAt` to stop receiving, ms; null: no bound. */
  readonly maxDurationMs: number | null;
  /** Take each MessageId once: a dry run deletes nothing, so its messages come round again. */
  readonly dryRun: boolean;
  /** When the run started receiving, on the caller's clock. */
  readonly startedAt: number;
}

/** One receive's deliveries, sorted. */
export interface Sorted {
  /** Deliveries the run takes: they are written (or printed) and then deleted (or given back). */
  readonly taken: readonly ReceivedMessage[];
  /** Deliveries to make visible again at once: past a bound, or (dry run) already printed. */
  readonly giveBack: readonly ReceivedMessage[];
}

/**
 * The bookkeeping of what a run takes. `--max-messages` is kept exact
 * without giving anything back: before each receive a loop claims the
 * messages it asks for, and claims never exceed what is left, so concurrent
 * loops cannot overshoot. `--max-duration` bounds each long poll's wait so
 * that none outlasts the deadline (an aborted poll could leave messages the
 * endpoint already handed out in flight); a batch that still arrives after
 * the deadline goes back.
 */
export class Admission {
  readonly #options: AdmissionOptions;
  readonly #deadline: number | null;
  #taken = 0;
  #claimed = 0;
  #reached: Bound | null = null;
  /** Dry run: the MessageIds taken (printed or about to be). */
  readonly #seen = new Set<string>();
  /** Dry run: deliveries of MessageIds already taken. */
  #repeats = 0;
  #roundDone = false;

  constructor(options: AdmissionOptions) {
    this.#options = options;
    this.#deadline = options.maxDurationMs === null
      ? null
      : options.startedAt + options.maxDurationMs;
  }

  /** Deliveries taken so far. */
  get taken(): number {
    return this.#taken;
  }

  /** The bound the run stopped at, or null while none is reached. */
  get reached(): Bound | null {
    return this.#reached;
  }

  /**
   * Dry run: true once a receive brought only messages already taken, or
   * repeats outnumber the messages taken. The queue then counts as seen: on
   * a queue that hands given-back messages out again first, more receives
   * would only raise their receive counts.
   */
  get roundDone(): boolean {
    return this.#roundDone;
  }

  /** True once the run must stop receiving: a bound is reached (the deadline checked at `now`). */
  closed(now: number): boolean {
    if (this.#reached === null && this.#deadline !== null && now >= this.#deadline) {
      this.#reached = "max-duration";
    }
    return this.#reached !== null;
  }

  /** Milliseconds until the deadline (0 once past it); null without `--max-duration`. */
  untilDeadline(now: number): number | null {
    return this.#deadline === null ? null : Math.max(0, this.#deadline - now);
  }

  /** The long-poll wait for a receive starting at `now`: `waitSeconds`, cut to end by the deadline. */
  waitSeconds(waitSeconds: number, now: number): number {
    const left = this.untilDeadline(now);
    return left === null ? waitSeconds : Math.min(waitSeconds, Math.floor(left / 1000));
  }

  /**
   * Claims room for one receive of up to `batchSize` messages.
   *
   * @returns how many to ask for; 0 when receives in flight already claim
   *   all that `--max-messages` leaves (wait for one to come back)
   */
  claim(batchSize: number): number {
    if (this.#options.maxMessages === null) return batchSize;
    const n = Math.max(
      0,
      Math.min(batchSize, this.#options.maxMessages - this.#taken - this.#claimed),
    );
    this.#claimed += n;
    return n;
  }

  /**
   * Sorts what a receive that claimed `claimed` brought back at `now`, and
   * frees its claim.
   */
  sort(batch: readonly ReceivedMessage[], claimed: number, now: number): Sorted {
    if (this.#options.maxMessages !== null) this.#claimed -= claimed;
    if (batch.length === 0) return { taken: [], giveBack: [] };
    // The deadline passed while this poll was under way: stopped means stopped.
    this.closed(now);
    if (this.#reached === "max-duration") {
      return { taken: [], giveBack: batch };
    }
    const giveBack: ReceivedMessage[] = [];
    let fresh: readonly ReceivedMessage[] = batch;
    if (this.#options.dryRun) {
      fresh = batch.filter((m) => !this.#seen.has(m.id));
      giveBack.push(...batch.filter((m) => this.#seen.has(m.id)));
      this.#repeats += giveBack.length;
    }
    const max = this.#options.maxMessages;
    // Claims keep a receive within the bound; the cut is for an endpoint that answers with more.
    const room = max === null ? fresh.length : Math.max(0, max - this.#taken);
    const taken = fresh.slice(0, room);
    giveBack.push(...fresh.slice(room));
    this.#taken += taken.length;
    if (max !== null && this.#taken >= max) this.#reached ??= "max-messages";
    if (this.#options.dryRun) {
      for (const m of taken) this.#seen.add(m.id);
      if (fresh.length === 0 || this.#repeats > this.#seen.size) this.#roundDone = true;
    }
    return { taken, giveBack };
  }
}
