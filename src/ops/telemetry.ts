/**
 * Named events of a run. Emitting one writes its log line and updates its
 * counters and every attached sink (the Prometheus metrics) together, so the
 * log, the summary and `/metrics` never disagree. Emitted per batch, never
 * per message.
 *
 * @module
 */

import type { Fields, Level, Logger } from "../log.ts";
import { REJECT_REASONS, type RejectReason } from "../types.ts";

/** Pipeline stage an error happened in: a bounded label. */
export type Stage = "receive" | "validate" | "mask" | "write" | "ack" | "startup";

/** Everything notable that happens in a run. */
export type TelemetryEvent =
  | { readonly type: "RunStarted"; readonly fields: Fields }
  | { readonly type: "BatchReceived"; readonly messages: number }
  | {
    readonly type: "BatchCommitted";
    readonly messages: number;
    readonly inserted: number;
    readonly duplicates: number;
    readonly durationMs: number;
  }
  | {
    readonly type: "MessagesRejected";
    readonly byReason: Readonly<Partial<Record<RejectReason, number>>>;
    readonly ids: readonly string[];
  }
  | { readonly type: "MessagesDeleted"; readonly count: number }
  | { readonly type: "VisibilityExtended"; readonly count: number }
  | {
    readonly type: "DeleteFailed";
    /** How many deletes failed; `ids` may hold only the first few. */
    readonly count: number;
    readonly ids: readonly string[];
    readonly code: string;
  }
  | {
    readonly type: "StageFailed";
    readonly stage: Stage;
    readonly code: string;
    readonly message: string;
    readonly attempt: number;
    readonly retryInMs: number | null;
    readonly messages: number;
  }
  | { readonly type: "ShutdownRequested"; readonly signal: string }
  /** `--sqs-protocol auto` met an endpoint that speaks Query only. */
  | { readonly type: "SqsProtocolSwitched"; readonly protocol: "query"; readonly reason: string }
  /** The endpoint sent a message without SentTimestamp; once per run. */
  | { readonly type: "SentTimestampMissing"; readonly receivedAtMs: number }
  | { readonly type: "ProgressReported" }
  | {
    readonly type: "Noted";
    readonly level: Level;
    readonly event: string;
    readonly message: string;
    readonly fields?: Fields;
  };

/** Counters of one run. `received` counts deliveries, so a redelivery counts again. */
export interface Counters {
  received: number;
  inserted: number;
  duplicates: number;
  rejected: Record<RejectReason, number>;
  deleted: number;
  deleteFailed: number;
  visibilityExtended: number;
  batchesCommitted: number;
  stageFailures: Record<Stage, number>;
}

/** The run's outcome as printed by `--summary-json`. */
export interface Summary {
  readonly received: number;
  readonly inserted: number;
  readonly duplicates: number;
  readonly rejected: number;
  readonly "rejected_by_reason": Readonly<Partial<Record<RejectReason, number>>>;
  readonly deleted: number;
  readonly "delete_failed": number;
  /** Received but neither committed nor known duplicate (only after a hard stop or a dry run). */
  readonly "in_flight": number;
  /** Wall time from the pipeline's start to now (includes the closing idle receive). */
  readonly "duration_ms": number;
  /** From the first message received to the last one committed and deleted. */
  readonly "active_ms": number;
  /** Messages finished per second of `active_ms`. */
  readonly "msgs_per_s": number;
  /** True when received = inserted + duplicates + rejected + in_flight. */
  readonly balanced: boolean;
}

function zeroReasons(): Record<RejectReason, number> {
  return Object.fromEntries(REJECT_REASONS.map((r) => [r, 0])) as Record<RejectReason, number>;
}

function sumValues(record: Readonly<Partial<Record<string, number>>>): number {
  let total = 0;
  for (const value of Object.values(record)) total += value ?? 0;
  return total;
}

/** Receives each event as it is emitted, beside the counters: the Prometheus metrics. */
export interface TelemetrySink {
  /** Takes one event; must be cheap (it runs per batch) and must not throw. */
  record(event: TelemetryEvent): void;
}

/** Holds a run's counters and turns events into log lines. */
export class Telemetry {
  readonly counters: Counters = {
    received: 0,
    inserted: 0,
    duplicates: 0,
    rejected: zeroReasons(),
    deleted: 0,
    deleteFailed: 0,
    visibilityExtended: 0,
    batchesCommitted: 0,
    stageFailures: { receive: 0, validate: 0, mask: 0, write: 0, ack: 0, startup: 0 },
  };
  readonly #logger: Logger;
  #sinks: readonly TelemetrySink[] = [];
  #startedAt = performance.now();
  #firstReceivedAt: number | null = null;
  #lastFinishedAt: number | null = null;
  /** Messages received but not yet committed or found duplicate. */
  inFlight = 0;

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  /** The logger, for components that log outside of pipeline events. */
  get logger(): Logger {
    return this.#logger;
  }

  /**
   * Sends every later event to `sink` too, after the counters.
   *
   * @returns a function that detaches the sink
   */
  addSink(sink: TelemetrySink): () => void {
    this.#sinks = [...this.#sinks, sink];
    return () => {
      this.#sinks = this.#sinks.filter((s) => s !== sink);
    };
  }

  /** Restarts the clock the summary's rate is measured from (at the first receive). */
  markStart(): void {
    this.#startedAt = performance.now();
    this.#firstReceivedAt = null;
    this.#lastFinishedAt = null;
  }

  /** Records an event: counters and sinks first, then its log line. */
  emit(event: TelemetryEvent): void {
    for (const sink of this.#sinks) sink.record(event);
    const c = this.counters;
    const log = this.#logger;
    switch (event.type) {
      case "RunStarted":
        log.log("info", event.type, "run started", event.fields);
        return;
      case "BatchReceived":
        this.#firstReceivedAt ??= performance.now();
        c.received += event.messages;
        this.inFlight += event.messages;
        return;
      case "BatchCommitted":
        this.#lastFinishedAt = performance.now();
        c.inserted += event.inserted;
        c.duplicates += event.duplicates;
        c.batchesCommitted += 1;
        this.inFlight -= event.messages;
        log.log("debug", event.type, "batch committed", {
          messages: event.messages,
          inserted: event.inserted,
          duplicates: event.duplicates,
          duration_ms: Math.round(event.durationMs),
        });
        return;
      case "MessagesRejected":
        for (const [reason, n] of Object.entries(event.byReason)) {
          c.rejected[reason as RejectReason] += n ?? 0;
        }
        log.log("warn", event.type, "messages rejected", {
          count: sumValues(event.byReason),
          reasons: event.byReason as Readonly<Record<string, number>>,
          message_ids: event.ids,
        });
        return;
      case "MessagesDeleted":
        this.#lastFinishedAt = performance.now();
        c.deleted += event.count;
        return;
      case "VisibilityExtended":
        c.visibilityExtended += event.count;
        log.log("debug", event.type, "visibility extended", { count: event.count });
        return;
      case "DeleteFailed":
        c.deleteFailed += event.count;
        log.log("warn", event.type, "delete failed; the ledger makes redelivery harmless", {
          stage: "ack",
          code: event.code,
          count: event.count,
          message_ids: event.ids,
        });
        return;
      case "StageFailed":
        c.stageFailures[event.stage] += 1;
        log.log(event.retryInMs === null ? "error" : "warn", event.type, event.message, {
          stage: event.stage,
          code: event.code,
          attempt: event.attempt,
          retry_in_ms: event.retryInMs,
          messages: event.messages,
        });
        return;
      case "ShutdownRequested":
        log.log("info", event.type, "shutdown requested; finishing in-flight messages", {
          signal: event.signal,
        });
        return;
      case "SqsProtocolSwitched":
        log.log(
          "info",
          event.type,
          `SQS endpoint speaks the ${event.protocol} protocol only: using it`,
          {
            protocol: event.protocol,
            reason: event.reason,
          },
        );
        return;
      case "SentTimestampMissing":
        log.log(
          "warn",
          event.type,
          "the queue sends no SentTimestamp: create_date is the date each message was received instead",
          { date_used: new Date(event.receivedAtMs).toISOString().slice(0, 10) },
        );
        return;
      case "ProgressReported": {
        const s = this.summary();
        log.log("info", event.type, "progress", {
          received: s.received,
          inserted: s.inserted,
          duplicates: s.duplicates,
          rejected: s.rejected,
          deleted: s.deleted,
          msgs_per_s: s.msgs_per_s,
        });
        return;
      }
      case "Noted":
        log.log(event.level, event.event, event.message, event.fields);
        return;
    }
  }

  /** The counters as the run's summary. */
  summary(): Summary {
    const c = this.counters;
    const rejected = sumValues(c.rejected);
    const durationMs = Math.round(performance.now() - this.#startedAt);
    const activeMs = this.#firstReceivedAt === null || this.#lastFinishedAt === null
      ? 0
      : Math.max(1, Math.round(this.#lastFinishedAt - this.#firstReceivedAt));
    const byReason: Partial<Record<RejectReason, number>> = {};
    for (const reason of REJECT_REASONS) {
      if (c.rejected[reason] > 0) byReason[reason] = c.rejected[reason];
    }
    const done = c.inserted + c.duplicates + rejected;
    return {
      received: c.received,
      inserted: c.inserted,
      duplicates: c.duplicates,
      rejected,
      rejected_by_reason: byReason,
      deleted: c.deleted,
      delete_failed: c.deleteFailed,
      in_flight: this.inFlight,
      duration_ms: durationMs,
      active_ms: activeMs,
      msgs_per_s: activeMs > 0 ? Math.round((done * 1000) / activeMs) : 0,
      balanced: c.received === done + this.inFlight,
    };
  }
}
