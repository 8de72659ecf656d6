/**
 * The queue as the pipeline sees it: receive, delete, extend, over one SQS
 * queue (the `Queue` interface of `types.ts`).
 *
 * @module
 */

import type { SQSClient } from "@aws-sdk/client-sqs";
import type { Queue } from "../types.ts";
import { deleteMessages } from "./ack.ts";
import { receiveMessages } from "./receive.ts";
import { sendRejectCopies } from "./send.ts";
import { extendVisibility } from "./visibility.ts";

/**
 * The `Queue` of the pipeline over one SQS queue.
 *
 * @param options.onUndated called once, the first time the endpoint sends a
 *   message without SentTimestamp (such messages are dated by their receipt)
 */
export function sqsQueue(
  client: SQSClient,
  queueUrl: string,
  options: {
    readonly onUndated?: (receivedAtMs: number) => void;
    /** --reject-queue-url: where raw copies of rejected messages go before their delete. */
    readonly rejectQueueUrl?: string | null;
  } = {},
): Queue {
  let warned = false;
  const rejectQueueUrl = options.rejectQueueUrl ?? null;
  return {
    ...(rejectQueueUrl === null
      ? {}
      : { copyRejects: (copies) => sendRejectCopies(client, rejectQueueUrl, copies) }),
    receive: async (receive) => {
      const { messages, undated } = await receiveMessages(client, queueUrl, receive);
      if (undated > 0 && !warned) {
        warned = true;
        options.onUndated?.(Date.now());
      }
      return messages;
    },
    delete: (messages) => deleteMessages(client, queueUrl, messages),
    extend: (messages, seconds) => extendVisibility(client, queueUrl, messages, seconds),
  };
}
