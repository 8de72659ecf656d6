/**
 * The flow of a run: receive loops fill a buffer, a flusher cuts it into
 * transactions of up to `maxRows`, each goes prepare → write → delete. The
 * queue and store come in as narrow interfaces.
 *
 * Ordering rule: a message is deleted only after the transaction holding its
 * row (or reject) and its ledger entry committed. A crash in between means
 * redelivery, and the ledger turns the redelivery into a counted duplicate.
 *
 * @module
 */

import { foldDeliveries } from "./batch.ts";
import { EtlError } from "./errors.ts";
import type { Masker } from "./mask.ts";
import { prepareItems } from "./prepare.ts";
import { backoffMs, sleep } from "./retry.ts";
import type { Stage, Telemetry } from "./telemetry.ts";
import type { Queue, ReceivedMessage, RejectReason, Store, WriteOutcome } from "./types.ts";

/** Tunables of the flow; see `config.ts` for their ranges and defaults. */
export interface PipelineOptions {
  /** `drain` ends when receives come back empty; `run` ends when `stop` aborts. */
  readonly mode: "drain" | "run";
  /** Messages per ReceiveMessage call (1-10). */
  readonly batchSize: number;
  /** Parallel receive loops. */
  readonly concurrency: number;
  /** Long-poll wait per receive, seconds. */
  readonly waitSeconds: number;
  /** Most messages per transaction. */
  readonly maxRows: number;
  /** Longest a buffered message waits for its transaction to fill, ms. */
  readonly maxWaitMs: number;
  readonly maxBodyBytes: number;
  /** Transactions in flight at once. */
  readonly writers: number;
  /** How long to keep retrying a failing service before giving up, ms. */
  readonly maxRetryMs: number;
  /** Aborting it stops receiving; what is in flight is finished. */
  readonly stop?: AbortSignal;
}

/** The components the flow moves messages through. */
export interface PipelineDeps {
  readonly queue: Queue;
  readonly store: Store;
  readonly masker: Masker;
  readonly telemetry: Telemetry;
}

/** A promise-based wake-up: `wait` resolves on `notify` or after a timeout. */
class Wakeup {
  #waiters: (() => void)[] = [];

  wait(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== done);
        resolve();
      }, Math.max(0, timeoutMs));
      this.#waiters.push(done);
    });
  }

  notify(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }
}

/** Log lines carry at most this many message ids; the tables hold all of them. */
const IDS_IN_LOG = 20;

/**
 * Runs the flow until the queue is drained (`drain`) or `stop` aborts
 * (`run`), then finishes every transaction and delete in flight.
 *
 * @throws {EtlError} when a service keeps failing past `maxRetryMs`, or fails
 *   in a way a retry cannot mend; messages not yet committed stay in the queue
 */
export async function runPipeline(deps: PipelineDeps, options: PipelineOptions): Promise<void> {
  const { queue, store, masker, telemetry } = deps;
  const pollAbort = new AbortController();
  const onStop = () => pollAbort.abort();
  options.stop?.addEventListener("abort", onStop, { once: true });

  let pending: ReceivedMessage[] = [];
  let pendingSince = 0;
  /** Messages taken from the buffer whose write or delete is not finished. */
  let busy = 0;
  let activeWrites = 0;
  let receiversDone = false;
  let failure: EtlError | null = null;
  const tasks = new Set<Promise<void>>();
  const flushWake = new Wakeup();
  const spaceWake = new Wakeup();
  // Bound memory and redelivery exposure: at most one buffer-full beyond what the writers hold.
  const maxInFlight = options.maxRows * (options.writers + 1);

  const stopped = () => options.stop?.aborted === true || failure !== null;
  const fail = (error: EtlError) => {
    failure ??= error;
    pollAbort.abort();
    flushWake.notify();
    spaceWake.notify();
  };
  const reportFailure = (
    stage: Stage,
    error: unknown,
    attempt: number,
    retryInMs: number | null,
    messages: number,
  ) => {
    const etl = error instanceof EtlError ? error : null;
    telemetry.emit({
      type: "StageFailed",
      stage,
      code: etl?.code ?? "internal",
      message: etl?.message ?? (error instanceof Error ? error.message : String(error)),
      attempt,
      retryInMs,
      messages,
    });
  };

  async function receiver(): Promise<void> {
    let attempt = 0;
    let failingSince = 0;
    while (!stopped()) {
      while (!stopped() && pending.length + busy >= maxInFlight) await spaceWake.wait(1000);
      if (stopped()) return;
      let batch: readonly ReceivedMessage[];
      try {
        batch = await queue.receive({
          max: options.batchSize,
          waitSeconds: options.waitSeconds,
          signal: pollAbort.signal,
        });
        attempt = 0;
      } catch (error) {
        attempt++;
        if (attempt === 1) failingSince = performance.now();
        const transient = error instanceof EtlError && error.transient;
        if (!transient || performance.now() - failingSince >= options.maxRetryMs) {
          reportFailure("receive", error, attempt, null, 0);
          fail(
            error instanceof EtlError
              ? error
              : new EtlError("internal", String(error), { cause: error }),
          );
          return;
        }
        const delay = backoffMs(attempt);
        reportFailure("receive", error, attempt, delay, 0);
        await sleep(delay, pollAbort.signal);
        continue;
      }
      if (batch.length === 0) {
        if (options.mode === "drain") return;
        continue;
      }
      telemetry.emit({ type: "BatchReceived", messages: batch.length });
      if (pending.length === 0) pendingSince = performance.now();
      pending.push(...batch);
      flushWake.notify();
    }
  }

  async function writeWithRetry(
    items: Parameters<Store["write"]>[0],
    messages: number,
  ): Promise<WriteOutcome | null> {
    const started = performance.now();
    for (let attempt = 1;; attempt++) {
      try {
        return await store.write(items);
      } catch (error) {
        const transient = error instanceof EtlError && error.transient;
        if (!transient || performance.now() - started >= options.maxRetryMs) {
          reportFailure("write", error, attempt, null, messages);
          fail(
            error instanceof EtlError
              ? error
              : new EtlError("db_write", String(error), { cause: error }),
          );
          return null;
        }
        const delay = backoffMs(attempt);
        reportFailure("write", error, attempt, delay, messages);
        await sleep(delay);
      }
    }
  }

  async function processBatch(deliveries: ReceivedMessage[]): Promise<void> {
    let writing = true;
    const releaseWriter = () => {
      if (writing) {
        writing = false;
        activeWrites--;
        flushWake.notify();
      }
    };
    try {
      const started = performance.now();
      const { unique, repeats } = foldDeliveries(deliveries);
      const items = await prepareItems(unique, masker, { maxBodyBytes: options.maxBodyBytes });
      const outcome = await writeWithRetry(items, deliveries.length);
      if (outcome === null) return;
      releaseWriter();
      telemetry.emit({
        type: "BatchCommitted",
        messages: deliveries.length,
        inserted: outcome.inserted,
        duplicates: outcome.duplicates + repeats.length,
        durationMs: performance.now() - started,
      });
      const rejectedIds = items.filter((i) => i.kind === "reject").map((i) => i.id);
      if (Object.keys(outcome.rejected).length > 0) {
        telemetry.emit({
          type: "MessagesRejected",
          byReason: outcome.rejected as Partial<Record<RejectReason, number>>,
          ids: rejectedIds.slice(0, IDS_IN_LOG),
        });
      }
      if (!outcome.committed) return;
      const ack = await queue.delete(deliveries);
      if (ack.deleted.length > 0) {
        telemetry.emit({ type: "MessagesDeleted", count: ack.deleted.length });
      }
      if (ack.failed.length > 0) {
        telemetry.emit({
          type: "DeleteFailed",
          ids: ack.failed.slice(0, IDS_IN_LOG).map((f) => f.id),
          code: ack.failed[0]?.code ?? "Unknown",
        });
      }
    } catch (error) {
      reportFailure("write", error, 1, null, deliveries.length);
      fail(
        new EtlError(
          "internal",
          `Batch failed unexpectedly: ${error instanceof Error ? error.message : String(error)}`,
          {
            cause: error,
            messageIds: deliveries.map((d) => d.id),
          },
        ),
      );
    } finally {
      releaseWriter();
      busy -= deliveries.length;
      spaceWake.notify();
    }
  }

  async function flusher(): Promise<void> {
    for (;;) {
      const n = pending.length;
      const closing = receiversDone || stopped();
      const due = n >= options.maxRows ||
        (n > 0 && (closing || performance.now() - pendingSince >= options.maxWaitMs));
      if (failure !== null && failure.code.startsWith("db_")) return; // writes cannot succeed
      if (due && activeWrites < options.writers) {
        const batch = pending.slice(0, options.maxRows);
        pending = pending.slice(batch.length);
        pendingSince = performance.now();
        busy += batch.length;
        activeWrites++;
        const task = processBatch(batch);
        tasks.add(task);
        task.finally(() => tasks.delete(task));
        continue;
      }
      if (n === 0 && receiversDone) return;
      const untilDue = n > 0 ? options.maxWaitMs - (performance.now() - pendingSince) : 1000;
      await flushWake.wait(activeWrites >= options.writers ? 1000 : Math.max(1, untilDue));
    }
  }

  telemetry.markStart();
  const progress = options.mode === "run"
    ? setInterval(() => telemetry.emit({ type: "ProgressReported" }), 30_000)
    : undefined;
  try {
    const flushing = flusher();
    await Promise.all(Array.from({ length: options.concurrency }, () => receiver()));
    receiversDone = true;
    flushWake.notify();
    await flushing;
    while (tasks.size > 0) await Promise.all([...tasks]);
  } finally {
    clearInterval(progress);
    options.stop?.removeEventListener("abort", onStop);
  }
  if (failure !== null) throw failure;
}
