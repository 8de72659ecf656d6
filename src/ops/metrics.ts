/**
 * The Prometheus metrics of a run, fed by the same telemetry events that write
 * the log lines (`Telemetry.addSink`), so the log, the summary and `/metrics`
 * never disagree. Each `Metrics` has its own prom-client `Registry` (never the
 * global one), so tests can make several. The names are those the Grafana
 * dashboard and the alert rules under `deploy/` read.
 *
 * @module
 */

import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { TelemetryEvent, TelemetrySink } from "./telemetry.ts";
import { REJECT_REASONS } from "../types.ts";

/**
 * Transaction sizes: `--max-rows` ranges over 1-20000, and a drain's tail
 * batches are small, so the buckets cover every power of ten on the way.
 */
const BATCH_BUCKETS = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000, 10000, 20000];
/**
 * Commit latency from a few milliseconds (a small local batch) to the 30 s
 * default `--write-timeout-seconds` and retries past it.
 */
const COMMIT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** A run's Prometheus metrics; register it with `telemetry.addSink(metrics)`. */
export class Metrics implements TelemetrySink {
  /** The registry holding only this run's metrics. */
  readonly registry: Registry = new Registry();
  readonly #now: () => number;
  readonly #received: Counter;
  readonly #inserted: Counter;
  readonly #duplicates: Counter;
  readonly #rejected: Counter<"reason">;
  readonly #deleted: Counter;
  readonly #deleteFailures: Counter;
  readonly #stageFailures: Counter<"stage" | "code">;
  readonly #batchMessages: Histogram;
  readonly #commitSeconds: Histogram;
  readonly #inFlight: Gauge;
  readonly #queueDepth: Gauge;
  readonly #lastCommit: Gauge;

  /**
   * Creates the metrics, the last-commit time set to now: a consumer that
   * never commits then trips the "no commit for N minutes" alert.
   *
   * @param options.now wall clock in epoch milliseconds (tests pass a fake one)
   */
  constructor(options: { readonly now?: () => number } = {}) {
    this.#now = options.now ?? Date.now;
    const registers = [this.registry];
    this.#received = new Counter({
      name: "login_etl_messages_received_total",
      help: "Deliveries received from SQS (a redelivery counts again)",
      registers,
    });
    this.#inserted = new Counter({
      name: "login_etl_rows_inserted_total",
      help: "Rows written to user_logins",
      registers,
    });
    this.#duplicates = new Counter({
      name: "login_etl_messages_duplicate_total",
      help: "Deliveries whose MessageId the ledger had already seen",
      registers,
    });
    this.#rejected = new Counter({
      name: "login_etl_messages_rejected_total",
      help: "Messages kept aside in login_etl_rejects, by reason",
      labelNames: ["reason"] as const,
      registers,
    });
    this.#deleted = new Counter({
      name: "login_etl_messages_deleted_total",
      help: "Messages deleted from the queue after their commit",
      registers,
    });
    this.#deleteFailures = new Counter({
      name: "login_etl_delete_failures_total",
      help: "Deletes that failed (the message returns and counts as a duplicate)",
      registers,
    });
    this.#stageFailures = new Counter({
      name: "login_etl_stage_failures_total",
      help: "Failed attempts by pipeline stage and error code, retried ones included",
      labelNames: ["stage", "code"] as const,
      registers,
    });
    this.#batchMessages = new Histogram({
      name: "login_etl_batch_messages",
      help: "Messages per transaction",
      buckets: BATCH_BUCKETS,
      registers,
    });
    this.#commitSeconds = new Histogram({
      name: "login_etl_commit_duration_seconds",
      help: "Duration of each batch transaction, retries included",
      buckets: COMMIT_BUCKETS,
      registers,
    });
    this.#inFlight = new Gauge({
      name: "login_etl_messages_in_flight",
      help: "Messages received but not yet committed",
      registers,
    });
    this.#queueDepth = new Gauge({
      name: "login_etl_queue_depth_messages",
      help: "The queue's ApproximateNumberOfMessages at the last look",
      registers,
    });
    this.#lastCommit = new Gauge({
      name: "login_etl_last_commit_timestamp_seconds",
      help: "Unix time of the last commit (the start time until the first one)",
      registers,
    });
    // Every reason from zero, so rate() sees a series before the first reject.
    for (const reason of REJECT_REASONS) this.#rejected.inc({ reason }, 0);
    this.#lastCommit.set(this.#now() / 1000);
  }

  /** Updates the metrics an event concerns; called by `Telemetry.emit`, once per batch. */
  record(event: TelemetryEvent): void {
    switch (event.type) {
      case "BatchReceived":
        this.#received.inc(event.messages);
        this.#inFlight.inc(event.messages);
        return;
      case "BatchCommitted":
        this.#inserted.inc(event.inserted);
        this.#duplicates.inc(event.duplicates);
        this.#batchMessages.observe(event.messages);
        this.#commitSeconds.observe(event.durationMs / 1000);
        this.#inFlight.dec(event.messages);
        this.#lastCommit.set(this.#now() / 1000);
        return;
      case "MessagesRejected":
        for (const [reason, n] of Object.entries(event.byReason)) {
          if (n !== undefined && n > 0) this.#rejected.inc({ reason }, n);
        }
        return;
      case "MessagesDeleted":
        this.#deleted.inc(event.count);
        return;
      case "DeleteFailed":
        this.#deleteFailures.inc(event.count);
        return;
      case "StageFailed":
        this.#stageFailures.inc({ stage: event.stage, code: event.code });
        return;
      default:
        return;
    }
  }

  /** Sets the queue depth gauge from `ApproximateNumberOfMessages`. */
  setQueueDepth(messages: number): void {
    this.#queueDepth.set(messages);
  }

  /** The `Content-Type` of `expose()`'s text. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** Every metric in the Prometheus text exposition format. */
  expose(): Promise<string> {
    return this.registry.metrics();
  }
}
