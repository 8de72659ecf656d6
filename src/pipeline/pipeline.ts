/**
 * The flow of a run: receive loops fill a buffer, a flusher cuts it into
 * transactions of up to `maxRows`, each goes prepare → write → delete, and a
 * heartbeat keeps held messages invisible. The queue and sink come in as
 * narrow interfaces.
 *
 * Ordering rule: a message is deleted only after the transaction holding its
 * row (or reject) and its ledger entry committed. A crash in between means
 * redelivery, and the ledger turns the redelivery into a counted duplicate.
 *
 * @module
 */

import { foldDeliveries } from "./deliveries.ts";
import { EtlError } from "../errors.ts";
import { HeldMessages } from "./held.ts";
import type { Sink, SinkOutcome } from "../sink/sink.ts";
import { backoffMs, sleep } from "./retry.ts";
import type { Stage, Telemetry } from "../ops/telemetry.ts";
import { startBatchSpan } from "../ops/tracing.ts";
import type { Queue, ReceivedMessage, RejectReason } from "../types.ts";

/** Tunables of the flow; see `config/options.ts` for their ranges and defaults. */
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
  /** Transactions in flight at once. */
  readonly writers: number;
  /** How long to keep retrying a failing service before giving up, ms. */
  readonly maxRetryMs: number;
  /** The queue's visibility timeout; held messages are extended before it ends. */
  readonly visibilityTimeoutSeconds: number;
  /** Aborting it stops receiving; what is in flight is finished. */
  readonly stop?: AbortSignal;
  /** Dry run: nothing is deleted, so `drain` ends once messages come round again. */
  readonly dryRun?: boolean;
}

/** The components the flow moves messages through. */
export interface PipelineDeps {
  readonly queue: Queue;
  /** Prepares and writes distinct deliveries (in this thread or a worker). */
  readonly sink: Sink;
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
 * Most body text held at once, in UTF-16 code units (2 bytes each): with
 * 64 KiB bodies the message-count bound alone would allow ~200 MB, more than
 * the heap limit the binary runs with (see the `etl` task in deno.json).
 */
const MAX_HELD_BODY_UNITS = 16 * 1024 * 1024;
/** After SIGTERM, how long a failing write is still retried, ms (below a 60 s pod grace period). */
const SHUTDOWN_RETRY_MS = 20_000;
/** How often the heartbeat looks for held messages that need more time. */
const HEARTBEAT_MS = 1000;

function asEtlError(error: unknown, code: "internal" | "db_write"): EtlError {
  return error instanceof EtlError
    ? error
    : new EtlError(code, error instanceof Error ? error.message : String(error), { cause: error });
}

/**
 * Runs the flow until the queue is drained (`drain`) or `stop` aborts
 * (`run`), then finishes every transaction and delete in flight.
 *
 * @throws {EtlError} when a service keeps failing past `maxRetryMs`, or fails
 *   in a way a retry cannot mend; messages not yet committed stay in the queue
 */
export async function runPipeline(deps: PipelineDeps, options: PipelineOptions): Promise<void> {
  const { queue, sink, telemetry } = deps;
  const pollAbort = new AbortController();
  let stopAt: number | null = null;
  const onStop = () => {
    stopAt ??= performance.now();
    pollAbort.abort();
  };
  options.stop?.addEventListener("abort", onStop, { once: true });

  let pending: ReceivedMessage[] = [];
  let pendingSince = 0;
  /** Messages taken from the buffer whose write or delete is not finished. */
  let busy = 0;
  let activeWrites = 0;
  /** Body text held (buffered, writing or deleting), in UTF-16 code units. */
  let heldUnits = 0;
  let receiversDone = false;
  /** Set while the store fails transiently: receiving more would only burn receive counts. */
  let storeFailing = false;
  let failure: EtlError | null = null;
  const held = new HeldMessages(options.visibilityTimeoutSeconds);
  const seen: Set<string> | null = options.dryRun === true && options.mode === "drain"
    ? new Set()
    : null;
  let queueRoundDone = false;
  const tasks = new Set<Promise<void>>();
  const flushWake = new Wakeup();
  const spaceWake = new Wakeup();
  // Bound memory and redelivery exposure: one buffer-full beyond what the writers hold.
  const maxInFlight = options.maxRows * (options.writers + 1);

  const stopped = () => options.stop?.aborted === true || failure !== null || queueRoundDone;
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
  const track = (task: Promise<void>) => {
    tasks.add(task);
    task.finally(() => tasks.delete(task));
  };

  async function receiver(): Promise<void> {
    let attempt = 0;
    let failingSince = 0;
    while (!stopped()) {
      while (
        !stopped() &&
        (pending.length + busy >= maxInFlight || heldUnits >= MAX_HELD_BODY_UNITS || storeFailing)
      ) {
        await spaceWake.wait(1000);
      }
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
          fail(asEtlError(error, "internal"));
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
      if (seen !== null) {
        // A dry run deletes nothing, so its messages come back after the
        // visibility timeout: the first one seen again means the queue has
        // gone round once, and a drain must end instead of looping.
        const fresh = batch.filter((m) => !seen.has(m.id));
        if (fresh.length < batch.length) queueRoundDone = true;
        for (const m of fresh) seen.add(m.id);
        batch = fresh;
        if (batch.length === 0) continue;
      }
      telemetry.emit({ type: "BatchReceived", messages: batch.length });
      held.add(batch, performance.now());
      for (const m of batch) heldUnits += m.body.length;
      if (pending.length === 0) pendingSince = performance.now();
      pending.push(...batch);
      flushWake.notify();
    }
  }

  async function writeWithRetry(
    unique: readonly ReceivedMessage[],
    messages: number,
  ): Promise<SinkOutcome | null> {
    const started = performance.now();
    for (let attempt = 1;; attempt++) {
      // Another batch already failed for good: stop rather than retry for minutes.
      if (attempt > 1 && failure !== null) return null;
      try {
        const outcome = await sink.write(unique);
        if (storeFailing) {
          storeFailing = false;
          spaceWake.notify();
          telemetry.emit({ type: "StoreRecovered", afterAttempts: attempt });
        }
        return outcome;
      } catch (error) {
        const transient = error instanceof EtlError && error.transient;
        const now = performance.now();
        // After a stop, retry only for the shutdown grace: an orchestrator
        // kills the process soon after SIGTERM, and uncommitted messages are
        // safe in the queue anyway.
        const deadline = Math.min(
          started + options.maxRetryMs,
          stopAt === null ? Infinity : stopAt + SHUTDOWN_RETRY_MS,
        );
        if (!transient || now >= deadline) {
          reportFailure("write", error, attempt, null, messages);
          fail(asEtlError(error, "internal"));
          return null;
        }
        storeFailing = true;
        const delay = Math.min(backoffMs(attempt), Math.max(0, deadline - now));
        reportFailure("write", error, attempt, delay, messages);
        await sleep(delay);
      }
    }
  }

  async function processBatch(deliveries: ReceivedMessage[]): Promise<void> {
    const span = startBatchSpan(deliveries.length);
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
      const outcome = await writeWithRetry(unique, deliveries.length);
      if (outcome === null) {
        span.fail(failure?.code ?? "db_write", "write failed");
        return;
      }
      releaseWriter();
      const writeMs = performance.now() - started;
      telemetry.emit({
        type: "BatchCommitted",
        messages: deliveries.length,
        inserted: outcome.inserted,
        redelivered: outcome.redelivered + repeats.length,
        durationMs: writeMs,
      });
      if (Object.keys(outcome.rejected).length > 0) {
        telemetry.emit({
          type: "MessagesRejected",
          byReason: outcome.rejected as Partial<Record<RejectReason, number>>,
          ids: outcome.rejectedIds.slice(0, IDS_IN_LOG),
        });
      }
      span.record({
        inserted: outcome.inserted,
        redelivered: outcome.redelivered + repeats.length,
        rejected: outcome.rejectedIds.length,
        writeMs,
      });
      if (!outcome.committed) return;
      const ackStarted = performance.now();
      const ack = await span.within(() => queue.delete(deliveries));
      span.record({ deleted: ack.succeeded.length, ackMs: performance.now() - ackStarted });
      if (ack.succeeded.length > 0) {
        telemetry.emit({ type: "MessagesDeleted", count: ack.succeeded.length });
      }
      if (ack.failed.length > 0) {
        telemetry.emit({
          type: "DeleteFailed",
          count: ack.failed.length,
          ids: ack.failed.slice(0, IDS_IN_LOG).map((f) => f.id),
          code: ack.failed[0]?.code ?? "Unknown",
        });
      }
    } catch (error) {
      span.fail("internal", error instanceof Error ? error.message : String(error));
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
      span.end();
      // Deleted, or left for SQS to redeliver: either way no longer ours to extend.
      held.remove(deliveries);
      for (const m of deliveries) heldUnits -= m.body.length;
      releaseWriter();
      busy -= deliveries.length;
      spaceWake.notify();
    }
  }

  async function flusher(): Promise<void> {
    for (;;) {
      if (failure !== null && failure.code.startsWith("db_")) return; // writes cannot succeed
      const n = pending.length;
      const closing = receiversDone || stopped();
      const due = n >= options.maxRows ||
        (n > 0 && (closing || performance.now() - pendingSince >= options.maxWaitMs));
      if (due && activeWrites < options.writers) {
        const batch = pending.slice(0, options.maxRows);
        pending = pending.slice(batch.length);
        pendingSince = performance.now();
        busy += batch.length;
        activeWrites++;
        track(processBatch(batch));
        continue;
      }
      if (n === 0 && receiversDone) return;
      const untilDue = n > 0 ? options.maxWaitMs - (performance.now() - pendingSince) : 1000;
      await flushWake.wait(activeWrites >= options.writers ? 1000 : Math.max(1, untilDue));
    }
  }

  /** Extends held messages before their visibility runs out (slow commits, outages). */
  let extending = false;
  async function heartbeat(): Promise<void> {
    if (extending || failure !== null) return;
    const due = held.due(performance.now());
    if (due.length === 0) return;
    extending = true;
    try {
      const result = await queue.extend(due, options.visibilityTimeoutSeconds);
      const extendedIds = new Set(result.succeeded);
      held.extended(due.filter((m) => extendedIds.has(m.id)), performance.now());
      telemetry.emit({ type: "VisibilityExtended", count: result.succeeded.length });
      if (result.failed.length > 0) {
        telemetry.emit({
          type: "ExtendFailed",
          code: result.failed[0]?.code ?? "Unknown",
          count: result.failed.length,
        });
      }
    } finally {
      extending = false;
    }
  }

  telemetry.markStart();
  const progress = options.mode === "run"
    ? setInterval(
      () => telemetry.emit({ type: "ProgressReported", summary: telemetry.summary() }),
      30_000,
    )
    : undefined;
  const beat = setInterval(() => track(heartbeat()), HEARTBEAT_MS);
  try {
    const flushing = flusher();
    await Promise.all(Array.from({ length: options.concurrency }, () => receiver()));
    receiversDone = true;
    flushWake.notify();
    await flushing;
    while (tasks.size > 0) await Promise.all([...tasks]);
  } finally {
    clearInterval(progress);
    clearInterval(beat);
    while (tasks.size > 0) await Promise.allSettled([...tasks]);
    options.stop?.removeEventListener("abort", onStop);
  }
  if (failure !== null) throw failure;
}
