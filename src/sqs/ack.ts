/**
 * Acknowledgement: DeleteMessageBatch in chunks of 10, issued concurrently,
 * with partial failure reported by MessageId rather than thrown.
 *
 * @module
 */

import { DeleteMessageBatchCommand, type SQSClient } from "@aws-sdk/client-sqs";
import type { AckResult, ReceivedMessage } from "../types.ts";
import { callInChunks } from "./_batch.ts";

/**
 * Deletes messages by receipt handle. Never throws: a failed delete only
 * means SQS redelivers a message whose row is already committed, and the
 * ledger counts that redelivery instead of writing it again.
 */
export function deleteMessages(
  client: SQSClient,
  queueUrl: string,
  messages: readonly ReceivedMessage[],
): Promise<AckResult> {
  return callInChunks(
    messages,
    (entries) =>
      client.send(new DeleteMessageBatchCommand({ QueueUrl: queueUrl, Entries: entries })),
  );
}
