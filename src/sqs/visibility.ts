/**
 * Visibility extension: ChangeMessageVisibilityBatch in chunks of 10, so
 * messages held across a slow commit or a database outage are not handed to
 * another consumer meanwhile.
 *
 * @module
 */

import { ChangeMessageVisibilityBatchCommand, type SQSClient } from "@aws-sdk/client-sqs";
import { chunk, SQS_MAX_BATCH } from "../batch.ts";
import type { AckResult, ReceivedMessage } from "../types.ts";
import { describeAwsError } from "./receive.ts";

async function extendChunk(
  client: SQSClient,
  queueUrl: string,
  messages: readonly ReceivedMessage[],
  seconds: number,
): Promise<AckResult> {
  try {
    const output = await client.send(
      new ChangeMessageVisibilityBatchCommand({
        QueueUrl: queueUrl,
        Entries: messages.map((m, i) => ({
          Id: String(i),
          ReceiptHandle: m.receiptHandle,
          VisibilityTimeout: seconds,
        })),
      }),
    );
    const failedPositions = new Set((output.Failed ?? []).map((f) => Number(f.Id)));
    return {
      deleted: messages.filter((_, i) => !failedPositions.has(i)).map((m) => m.id),
      failed: (output.Failed ?? []).map((f) => ({
        id: messages[Number(f.Id)]?.id ?? "unknown",
        code: f.Code ?? "Unknown",
      })),
    };
  } catch (error) {
    const code = describeAwsError(error).split(":")[0] ?? "Unknown";
    return { deleted: [], failed: messages.map((m) => ({ id: m.id, code })) };
  }
}

/**
 * Sets the visibility timeout of each message to `seconds` from now. Never
 * throws: a failed extension only risks a redelivery, which the ledger absorbs.
 * In the result, `deleted` lists the ids whose visibility was changed.
 */
export async function extendVisibility(
  client: SQSClient,
  queueUrl: string,
  messages: readonly ReceivedMessage[],
  seconds: number,
): Promise<AckResult> {
  const results = await Promise.all(
    chunk(messages, SQS_MAX_BATCH).map((part) => extendChunk(client, queueUrl, part, seconds)),
  );
  return {
    deleted: results.flatMap((r) => r.deleted),
    failed: results.flatMap((r) => r.failed),
  };
}
