/**
 * The Prometheus metrics of a run. Counters and gauges are read from the
 * run's telemetry counters when scraped, and the histograms are fed by the
 * events' `observe` entries (`events.ts`): one table drives the log, the
 * summary and `/metrics`, so they never disagree. Each `Metrics` has its own
 * prom-client `Registry` (never the global one), so tests can make several.
 * The names are those the Grafana dashboard and the alert rules under
 * `deploy/` read; the process's own (`process_*`) come from `process_metrics.ts`.
 *
 * @module
 */

import meta from "../../deno.json" with { type: "json" };
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Counters, Observer } from "./events.ts";
import { registerProcessMetrics } from "./process_metrics.ts";
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

/** A counter whose value is read from the run's counters at each scrape. */
function counterOf(
  registers: Registry[],
  name: string,
  help: string,
  read: () => number,
): Counter {
  return new Counter({
    name,
    help,
    registers,
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

/**
 * A run's Prometheus metrics; attach with `telemetry.addObserver(metrics)`.
 * Counters read `counters` when scraped.
 */
export class Metrics implements Observer {
  /** The registry holding only this run's metrics. */
  readonly registry: Registry = new Registry();
  readonly #now: () => number;
  readonly #batchMessages: Histogram;
  readonly #commitSeconds: Histogram;
  readonly #queueDepth: Gauge;
  readonly #lastCommit: Gauge;

  /**
   * Creates the metrics over a run's counters, the last-commit time set to
   * now: a consumer that never commits then trips the "no commit for N
   * minutes" alert.
   *
   * @param options.now wall clock in epoch milliseconds (tests pass a fake one)
   */
  constructor(counters: Readonly<Counters>, options: { readonly now?: () => number } = {}) {
    this.#now = options.now ?? Date.now;
    const registers = [this.registry];
    counterOf(
      registers,
      "login_etl_messages_received_total",
      "Deliveries received from SQS (a redelivery counts again)",
      () => counters.received,
    );
    counterOf(
      registers,
      "login_etl_rows_inserted_total",
      "Rows written to user_logins",
      () => counters.inserted,
    );
    counterOf(
      registers,
      "login_etl_messages_redelivered_total",
      "Deliveries whose MessageId the ledger had already committed",
      () => counters.redelivered,
    );
    counterOf(
      registers,
      "login_etl_messages_deleted_total",
      "Messages deleted from the queue after their commit",
      () => counters.deleted,
    );
    counterOf(
      registers,
      "login_etl_delete_failures_total",
      "Deletes that failed (the message returns and counts as redelivered)",
      () => counters.deleteFailed,
    );
    new Counter({
      name: "login_etl_messages_rejected_total",
      help: "Messages kept aside in login_etl_rejects, by reason",
      labelNames: ["reason"] as const,
      registers,
      collect() {
        this.reset();
        // Every reason from zero, so rate() sees a series before the first reject.
        for (const reason of REJECT_REASONS) this.inc({ reason }, counters.rejected[reason]);
      },
    });
    new Counter({
      name: "login_etl_stage_failures_total",
      help: "Failed attempts by pipeline stage and error code, retried ones included",
      labelNames: ["stage", "code"] as const,
      registers,
      collect() {
        this.reset();
        for (const [key, n] of counters.failuresByCode) {
          const [stage = "", code = ""] = key.split(":");
          this.inc({ stage, code }, n);
        }
      },
    });
    new Counter({
      name: "login_etl_messages_refused_total",
      help: "Messages Postgres refused (recorded as db_refused rejects), by SQLSTATE",
      labelNames: ["sqlstate"] as const,
      registers,
      collect() {
        this.reset();
        for (const [sqlstate, n] of counters.refusedBySqlstate) this.inc({ sqlstate }, n);
      },
    });
    new Gauge({
      name: "login_etl_messages_in_flight",
      help: "Messages received but not yet committed",
      registers,
      collect() {
        this.set(counters.inFlight);
      },
    });
    new Gauge({
      name: "login_etl_receive_loops",
      help:
        "Receive loops the run keeps: fixed by --concurrency N, or chosen by --concurrency auto",
      registers,
      collect() {
        this.set(counters.receiveLoops);
      },
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
    this.#lastCommit.set(this.#now() / 1000);
    // The usual build-info gauge: constant 1, the facts in its labels, so
    // dashboards can show and join on the version that produced a series.
    new Gauge({
      name: "login_etl_build_info",
      help: "Always 1; labels name the login-etl, Deno, V8 and TypeScript versions",
      labelNames: ["version", "deno", "v8", "typescript"],
      registers,
    }).set({
      version: meta.version,
      deno: Deno.version.deno,
      v8: Deno.version.v8,
      typescript: Deno.version.typescript,
    }, 1);
    registerProcessMetrics(this.registry);
  }

  batchSize(messages: number): void {
    this.#batchMessages.observe(messages);
  }

  commitSeconds(seconds: number): void {
    this.#commitSeconds.observe(seconds);
  }

  committed(): void {
    this.#lastCommit.set(this.#now() / 1000);
  }

  /**
   * Marks the end of a batch run (drain's --metrics-file): its outcome and
   * time, the series a "has the job succeeded lately" alert reads.
   */
  finished(succeeded: boolean): void {
    const registers = [this.registry];
    new Gauge({
      name: "login_etl_run_succeeded",
      help: "1 when the run ended without error, 0 when it failed",
      registers,
    }).set(succeeded ? 1 : 0);
    new Gauge({
      name: "login_etl_run_finished_timestamp_seconds",
      help: "Unix time the run ended",
      registers,
    }).set(this.#now() / 1000);
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
