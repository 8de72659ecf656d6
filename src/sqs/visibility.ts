/**
 * Visibility extension: ChangeMessageVisibilityBatch in chunks of 10, so
 * messages held across a slow commit or a database outage are not handed to
 * another consumer meanwhile.
 *
 * @module
 */

import { ChangeMessageVisibilityBatchCommand, type SQSClient } from "@aws-sdk/client-sqs";
import type { AckResult, ReceivedMessage } from "../types.ts";
import { callInChunks } from "./_batch.ts";

/**
 * Sets the visibility timeout of each message to `seconds` from now. Never
 * throws: a failed extension only risks a redelivery, which the ledger absorbs.
 */
export function extendVisibility(
  client: SQSClient,
  queueUrl: string,
  messages: readonly ReceivedMessage[],
  seconds: number,
): Promise<AckResult> {
  return callInChunks(messages, (entries) =>
    client.send(
      new ChangeMessageVisibilityBatchCommand({
        QueueUrl: queueUrl,
        Entries: entries.map((e) => ({ ...e, VisibilityTimeout: seconds })),
      }),
    ));
}
