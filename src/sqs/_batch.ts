/**
 * The shared shape of SQS's batch calls on receipt handles (DeleteMessageBatch,
 * ChangeMessageVisibilityBatch): chunks of 10 issued concurrently, entry ids
 * by position, partial failure reported by MessageId rather than thrown.
 *
 * @module
 */

import type { AckResult, ReceivedMessage } from "../types.ts";
import { CredentialsError } from "../errors.ts";
import { describeAwsError } from "./_errors.ts";

/** SQS accepts at most 10 entries per SendMessageBatch / DeleteMessageBatch / ReceiveMessage. */
export const SQS_MAX_BATCH = 10;

/** Splits a list into consecutive chunks of at most `size` items. */
export function chunk<T>(items: readonly T[], size: number): T[][] {
  return chunkBySize(items, size, Infinity, () => 0);
}

/**
 * Splits a list into consecutive chunks of at most `size` items whose
 * `sizeOf` adds up to at most `maxBytes`; an item larger than that on its own
 * goes alone.
 */
export function chunkBySize<T>(
  items: readonly T[],
  size: number,
  maxBytes: number,
  sizeOf: (item: T) => number,
): T[][] {
  if (!Number.isInteger(size) || size < 1) {
    throw new RangeError(`Chunk size must be a positive integer, got ${size}`);
  }
  const chunks: T[][] = [];
  let current: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const n = sizeOf(item);
    if (current.length > 0 && (current.length >= size || bytes + n > maxBytes)) {
      chunks.push(current);
      current = [];
      bytes = 0;
    }
    current.push(item);
    bytes += n;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

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
    const code = error instanceof CredentialsError
      ? error.awsCode
      : describeAwsError(error).split(":")[0] ?? "Unknown";
    return { succeeded: [], failed: messages.map((m) => ({ id: m.id, code })) };
  }
}

/**
 * Runs `call` over the messages in chunks of 10, concurrently; with `bytes`,
 * also at most `bytes.max` a chunk by `bytes.of` (SendMessageBatch caps the
 * whole request's payload). Never throws.
 */
export async function callInChunks(
  messages: readonly ReceivedMessage[],
  call: (entries: Entry[]) => Promise<BatchOutput>,
  bytes: { readonly max: number; readonly of: (message: ReceivedMessage) => number } = {
    max: Infinity,
    of: () => 0,
  },
): Promise<AckResult> {
  const parts = chunkBySize(messages, SQS_MAX_BATCH, bytes.max, bytes.of);
  const results = await Promise.all(parts.map((part) => callChunk(part, call)));
  return {
    succeeded: results.flatMap((r) => r.succeeded),
    failed: results.flatMap((r) => r.failed),
  };
}
