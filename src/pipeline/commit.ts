/**
 * One transaction's worth of deliveries, from the buffer to the queue's
 * delete: fold repeats, write through the sink (retrying a transient
 * failure), report, and only then delete. Delete only after commit: a crash
 * in between must redeliver, not lose, and the ledger turns the redelivery
 * into a counted `redelivered`.
 *
 * @module
 */

import { EtlError } from "../errors.ts";
import type { Telemetry } from "../ops/telemetry.ts";
import { startBatchSpan } from "../ops/tracing.ts";
import type { Queue, ReceivedMessage, RejectReason, Sink, WriteOutcome } from "../types.ts";
import { foldDeliveries } from "./deliveries.ts";
import { giveBack } from "./held.ts";
import { retrying } from "./retry.ts";

/** Log lines carry at most this many message ids; the tables hold all of them. */
const IDS_IN_LOG = 20;

/** What committing a batch needs from the run. */
export interface CommitDeps {
  readonly queue: Pick<Queue, "delete" | "copyRejects" | "extend">;
  readonly sink: Sink;
  readonly telemetry: Telemetry;
  readonly now: () => number;
  /** When to give up on a failing write, given its first failure's time. */
  readonly deadline: (firstFailureAt: number) => number;
  /** True once the run has failed for good: stop retrying. */
  readonly failed: () => boolean;
  /** Told when writes start failing transiently, and when they succeed again. */
  readonly storeFailing: (failing: boolean) => void;
}

/** How a batch ended. */
export type CommitResult =
  | { readonly ok: true; readonly deleted: number }
  | { readonly ok: false; readonly error: EtlError | null };

/** An error as the pipeline reports it: ours as it is, anything else as internal. */
export function asEtlError(error: unknown): EtlError {
  return error instanceof EtlError
    ? error
    : new EtlError("internal", error instanceof Error ? error.message : String(error), {
      cause: error,
    });
}

/**
 * With a reject queue: sends a raw copy of each rejected message before its
 * delete. A message whose copy was not sent is kept (not deleted): SQS
 * redelivers it, the store reports it as an earlier reject, and the copy is
 * sent again. Copies are at least once, never lost.
 *
 * @returns the ids of messages to keep in the queue
 */
async function copyRejects(
  deliveries: readonly ReceivedMessage[],
  outcome: WriteOutcome,
  deps: CommitDeps,
): Promise<Set<string>> {
  const copy = deps.queue.copyRejects;
  if (copy === undefined || outcome.rejectNotes.length === 0) return new Set();
  const byId = new Map(deliveries.map((d) => [d.id, d]));
  const copies = outcome.rejectNotes.flatMap((note) => {
    const message = byId.get(note.id);
    return message === undefined ? [] : [{ message, note }];
  });
  const sent = await copy.call(deps.queue, copies);
  if (sent.succeeded.length > 0) {
    deps.telemetry.emit({ type: "RejectsCopied", count: sent.succeeded.length });
  }
  if (sent.failed.length > 0) {
    deps.telemetry.emit({
      type: "RejectCopyFailed",
      count: sent.failed.length,
      ids: sent.failed.slice(0, IDS_IN_LOG).map((f) => f.id),
      code: sent.failed[0]?.code ?? "Unknown",
    });
  }
  return new Set(sent.failed.map((f) => f.id));
}

/**
 * Writes `deliveries` in one transaction, reports it, and deletes them once
 * committed. One function, a screen and a half, because the order is the
 * guarantee: fold repeats, write with retries, report, and only then delete;
 * split, the order would be spread across callers.
 */
export async function commitBatch(
  deliveries: readonly ReceivedMessage[],
  deps: CommitDeps,
): Promise<CommitResult> {
  const { telemetry } = deps;
  const span = startBatchSpan(deliveries.length);
  try {
    const started = deps.now();
    const { unique, repeats } = foldDeliveries(deliveries);
    const written = await retrying<WriteOutcome>(() => deps.sink.write(unique), {
      now: deps.now,
      deadline: deps.deadline,
      transient: (error) => error instanceof EtlError && error.transient,
      cancelled: deps.failed,
      onFailure: (error, attempt, retryInMs) => {
        if (retryInMs !== null) deps.storeFailing(true);
        const etl = asEtlError(error);
        telemetry.emit({
          type: "StageFailed",
          stage: "write",
          code: etl.code,
          message: etl.message,
          attempt,
          retryInMs,
          messages: deliveries.length,
        });
      },
      onRecovered: (attempts) => {
        deps.storeFailing(false);
        telemetry.emit({ type: "StoreRecovered", afterAttempts: attempts });
      },
    });
    if (!written.ok) {
      const error = written.error === null ? null : asEtlError(written.error);
      span.fail(error?.code ?? "cancelled", "write failed");
      return { ok: false, error };
    }
    const outcome = written.value;
    const writeMs = deps.now() - started;
    const redelivered = outcome.redelivered + repeats.length;
    telemetry.emit({
      type: "BatchCommitted",
      messages: deliveries.length,
      inserted: outcome.inserted,
      redelivered,
      durationMs: writeMs,
    });
    if (outcome.refused.length > 0) {
      const bySqlstate: Record<string, number> = {};
      for (const r of outcome.refused) bySqlstate[r.sqlstate] = (bySqlstate[r.sqlstate] ?? 0) + 1;
      telemetry.emit({ type: "MessagesRefused", bySqlstate });
    }
    if (Object.keys(outcome.rejected).length > 0) {
      telemetry.emit({
        type: "MessagesRejected",
        byReason: outcome.rejected as Partial<Record<RejectReason, number>>,
        ids: outcome.rejectedIds.slice(0, IDS_IN_LOG),
      });
    }
    span.record({
      inserted: outcome.inserted,
      redelivered,
      rejected: outcome.rejectedIds.length,
      writeMs,
    });
    if (!outcome.committed) {
      // A dry run deletes nothing, and holds nothing once it has printed.
      await giveBack(deliveries, deps);
      return { ok: true, deleted: 0 };
    }
    const kept = await copyRejects(deliveries, outcome, deps);
    const ackStarted = deps.now();
    const ack = await span.within(() =>
      deps.queue.delete(kept.size === 0 ? deliveries : deliveries.filter((d) => !kept.has(d.id)))
    );
    span.record({ deleted: ack.succeeded.length, ackMs: deps.now() - ackStarted });
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
    return { ok: true, deleted: ack.succeeded.length };
  } catch (error) {
    // Not a write failure (those are results above): a bug, stop the run.
    const message = error instanceof Error ? error.message : String(error);
    span.fail("internal", message);
    telemetry.emit({
      type: "StageFailed",
      stage: "write",
      code: "internal",
      message,
      attempt: 1,
      retryInMs: null,
      messages: deliveries.length,
    });
    return {
      ok: false,
      error: new EtlError(
        "internal",
        `Batch failed unexpectedly: ${error instanceof Error ? error.message : String(error)}`,
        { cause: error, messageIds: deliveries.map((d) => d.id) },
      ),
    };
  } finally {
    span.end();
  }
}
