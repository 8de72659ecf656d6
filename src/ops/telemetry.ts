/**
 * Emitting events: each one updates the run's counters, feeds the attached
 * observers (the Prometheus histograms) and writes its log line, all from
 * its entry in `EVENTS` (`events.ts`). Emitted per batch, never per message.
 *
 * @module
 */

import type { Logger } from "../log.ts";
import { REJECT_REASONS, type RejectReason } from "../types.ts";
import {
  type Counters,
  EVENTS,
  type EventSpec,
  type Observer,
  type Summary,
  type TelemetryEvent,
  zeroCounters,
} from "./events.ts";

export type { Counters, Stage, Summary, TelemetryEvent } from "./events.ts";

/** Holds a run's counters and turns events into log lines. */
export class Telemetry {
  readonly counters: Counters = zeroCounters();
  readonly #logger: Logger;
  #observers: readonly Observer[] = [];
  #startedAt = performance.now();

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  /** Messages received but not yet committed or known redelivered. */
  get inFlight(): number {
    return this.counters.inFlight;
  }

  /**
   * Feeds every later event's `observe` entry to `observer` too.
   *
   * @returns a function that detaches it
   */
  addObserver(observer: Observer): () => void {
    this.#observers = [...this.#observers, observer];
    return () => {
      this.#observers = this.#observers.filter((o) => o !== observer);
    };
  }

  /** Restarts the clock the summary's rate is measured from (at the first receive). */
  markStart(): void {
    this.#startedAt = performance.now();
    this.counters.firstReceivedAt = null;
    this.counters.lastFinishedAt = null;
  }

  /** Records an event: counters, then observers, then its log line. */
  emit(event: TelemetryEvent): void {
    const spec = EVENTS[event.type] as EventSpec<TelemetryEvent>;
    spec.count?.(this.counters, event, performance.now());
    if (spec.observe !== undefined) {
      for (const observer of this.#observers) spec.observe(observer, event);
    }
    const level = typeof spec.level === "function" ? spec.level(event) : spec.level;
    if (level === null) return;
    const message = typeof spec.message === "function" ? spec.message(event) : spec.message;
    this.#logger.log(level, event.type, message, spec.fields?.(event), spec.text?.(event));
  }

  /** The counters as the run's summary. */
  summary(): Summary {
    const c = this.counters;
    let rejected = 0;
    const byReason: Partial<Record<RejectReason, number>> = {};
    for (const reason of REJECT_REASONS) {
      rejected += c.rejected[reason];
      if (c.rejected[reason] > 0) byReason[reason] = c.rejected[reason];
    }
    const durationMs = Math.round(performance.now() - this.#startedAt);
    const activeMs = c.firstReceivedAt === null || c.lastFinishedAt === null
      ? 0
      : Math.max(1, Math.round(c.lastFinishedAt - c.firstReceivedAt));
    const done = c.inserted + c.redelivered + rejected;
    return {
      received: c.received,
      inserted: c.inserted,
      redelivered: c.redelivered,
      rejected,
      rejected_by_reason: byReason,
      deleted: c.deleted,
      delete_failed: c.deleteFailed,
      in_flight: c.inFlight,
      duration_ms: durationMs,
      active_ms: activeMs,
      msgs_per_s: activeMs > 0 ? Math.round((done * 1000) / activeMs) : 0,
      balanced: c.received === done + c.inFlight,
      returned: c.returned,
      return_failed: c.returnFailed,
      stopped_at_bound: c.stoppedAtBound,
    };
  }
}
