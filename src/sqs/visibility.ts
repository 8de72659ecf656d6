/**
 * Visibility: ChangeMessageVisibilityBatch in chunks of 10, so messages
 * held across a slow commit or a database outage are not handed to another
 * consumer meanwhile, and (with 0) so messages a run will not process are
 * visible again at once.
 *
 * @module
 */

import { ChangeMessageVisibilityBatchCommand, type SQSClient } from "@aws-sdk/client-sqs";
import type { AckResult, ReceivedMessage } from "../types.ts";
import { callInChunks } from "./_batch.ts";

/**
 * Sets the visibility timeout of each message to `seconds` from now (0:
 * visible again at once). Never throws: a failed change only risks a
 * redelivery (which the ledger absorbs) or a later reappearance.
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
