/**
 * The shared shape of SQS's batch calls on receipt handles (DeleteMessageBatch,
 * ChangeMessageVisibilityBatch): chunks of 10 issued concurrently, entry ids
 * by position, partial failure reported by MessageId rather than thrown.
 *
 * @module
 */

import { chunk, SQS_MAX_BATCH } from "../pipeline/deliveries.ts";
import type { AckResult, ReceivedMessage } from "../types.ts";
import { describeAwsError } from "./_errors.ts";

/** One batch entry: its position in the chunk is its id. */
export interface Entry {
  readonly Id: string;
  readonly ReceiptHandle: string;
}

/** What a batch call answers about its failed entries. */
interface BatchOutput {
  readonly Failed?:
    | readonly { readonly Id?: string | undefined; readonly Code?: string | undefined }[]
    | undefined;
}

async function callChunk(
  messages: readonly ReceivedMessage[],
  call: (entries: Entry[]) => Promise<BatchOutput>,
): Promise<AckResult> {
  try {
    // Entry ids are positions: one MessageId may appear twice (a repeat delivery).
    const output = await call(
      messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.receiptHandle })),
    );
    const failedPositions = new Set((output.Failed ?? []).map((f) => Number(f.Id)));
    return {
      succeeded: messages.filter((_, i) => !failedPositions.has(i)).map((m) => m.id),
      failed: (output.Failed ?? []).map((f) => ({
        id: messages[Number(f.Id)]?.id ?? "unknown",
        code: f.Code ?? "Unknown",
      })),
    };
  } catch (error) {
    const code = describeAwsError(error).split(":")[0] ?? "Unknown";
    return { succeeded: [], failed: messages.map((m) => ({ id: m.id, code })) };
  }
}

/** Runs `call` over the messages in chunks of 10, concurrently. Never throws. */
export async function callInChunks(
  messages: readonly ReceivedMessage[],
  call: (entries: Entry[]) => Promise<BatchOutput>,
): Promise<AckResult> {
  const results = await Promise.all(
    chunk(messages, SQS_MAX_BATCH).map((part) => callChunk(part, call)),
  );
  return {
    succeeded: results.flatMap((r) => r.succeeded),
    failed: results.flatMap((r) => r.failed),
  };
}
