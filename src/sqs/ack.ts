/**
 * Acknowledgement: DeleteMessageBatch in chunks of 10, issued concurrently,
 * with partial failure reported by MessageId rather than thrown.
 *
 * @module
 */

import { DeleteMessageBatchCommand, type SQSClient } from "@aws-sdk/client-sqs";
import { chunk, SQS_MAX_BATCH } from "../batch.ts";
import type { AckResult, ReceivedMessage } from "../types.ts";
import { describeAwsError } from "./receive.ts";

async function deleteChunk(
  client: SQSClient,
  queueUrl: string,
  messages: readonly ReceivedMessage[],
): Promise<AckResult> {
  try {
    const output = await client.send(
      new DeleteMessageBatchCommand({
        QueueUrl: queueUrl,
        // Entry ids are positions: one MessageId may appear twice (a repeat delivery).
        Entries: messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.receiptHandle })),
      }),
    );
    const failed = (output.Failed ?? []).map((f) => ({
      id: messages[Number(f.Id)]?.id ?? "unknown",
      code: f.Code ?? "Unknown",
    }));
    const failedPositions = new Set((output.Failed ?? []).map((f) => Number(f.Id)));
    return { deleted: messages.filter((_, i) => !failedPositions.has(i)).map((m) => m.id), failed };
  } catch (error) {
    const code = describeAwsError(error).split(":")[0] ?? "Unknown";
    return { deleted: [], failed: messages.map((m) => ({ id: m.id, code })) };
  }
}

/**
 * Deletes messages by receipt handle. Never throws: a failed delete only
 * means SQS redelivers a message whose row is already committed, and the
 * ledger turns that redelivery into a counted duplicate.
 */
export async function deleteMessages(
  client: SQSClient,
  queueUrl: string,
  messages: readonly ReceivedMessage[],
): Promise<AckResult> {
  const results = await Promise.all(
    chunk(messages, SQS_MAX_BATCH).map((part) => deleteChunk(client, queueUrl, part)),
  );
  return {
    deleted: results.flatMap((r) => r.deleted),
    failed: results.flatMap((r) => r.failed),
  };
}
