/**
 * The queue as the pipeline sees it (receive, delete), plus the admin calls
 * commands need at start: find or create the queue, read its attributes.
 *
 * @module
 */

import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  QueueDoesNotExist,
  type SQSClient,
} from "@aws-sdk/client-sqs";
import { SqsError } from "../errors.ts";
import type { Queue } from "../types.ts";
import { deleteMessages } from "./ack.ts";
import { describeAwsError } from "./_errors.ts";
import { receiveMessages } from "./receive.ts";
import { extendVisibility } from "./visibility.ts";

/** The queue name: the last path segment of its URL. */
export function queueNameOf(queueUrl: string): string {
  const segments = new URL(queueUrl).pathname.split("/").filter((s) => s !== "");
  return segments[segments.length - 1] ?? "";
}

/**
 * The `Queue` of the pipeline over one SQS queue.
 *
 * @param options.onUndated called once, the first time the endpoint sends a
 *   message without SentTimestamp (such messages are dated by their receipt)
 */
export function sqsQueue(
  client: SQSClient,
  queueUrl: string,
  options: { readonly onUndated?: (receivedAtMs: number) => void } = {},
): Queue {
  let warned = false;
  return {
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

/** Queue attributes the consumer uses. */
export interface QueueAttributes {
  readonly visibilityTimeoutSeconds: number;
  readonly approximateMessages: number;
  readonly approximateInFlight: number;
  /** Dead-letter target ARN and receive limit when a redrive policy is set. */
  readonly redrive:
    | { readonly deadLetterTargetArn: string; readonly maxReceiveCount: number }
    | null;
}

/**
 * Reads the queue's attributes; also the first call of a run, so a wrong URL
 * or unreachable endpoint fails here with one clear line.
 *
 * @throws {SqsError} code `sqs_queue`
 */
export async function readQueueAttributes(
  client: SQSClient,
  queueUrl: string,
): Promise<QueueAttributes> {
  let output;
  try {
    output = await client.send(
      new GetQueueAttributesCommand({
        QueueUrl: queueUrl,
        AttributeNames: [
          "VisibilityTimeout",
          "ApproximateNumberOfMessages",
          "ApproximateNumberOfMessagesNotVisible",
          "RedrivePolicy",
        ],
      }),
    );
  } catch (error) {
    const missing = error instanceof QueueDoesNotExist ||
      (error instanceof Error && /NonExistentQueue|QueueDoesNotExist/.test(error.name));
    throw new SqsError(
      "sqs_queue",
      missing
        ? `Queue ${queueUrl} does not exist: create it, or run login-etl seed, or fix --queue-url`
        : `Cannot reach queue ${queueUrl}: ${
          describeAwsError(error)
        }; check --queue-url, AWS_ENDPOINT_URL and credentials`,
      { cause: error },
    );
  }
  const attributes = output.Attributes ?? {};
  let redrive: QueueAttributes["redrive"] = null;
  if (attributes.RedrivePolicy !== undefined && attributes.RedrivePolicy !== "") {
    try {
      const policy = JSON.parse(attributes.RedrivePolicy) as {
        deadLetterTargetArn?: string;
        maxReceiveCount?: number | string;
      };
      redrive = {
        deadLetterTargetArn: policy.deadLetterTargetArn ?? "",
        maxReceiveCount: Number(policy.maxReceiveCount ?? 0),
      };
    } catch { /* an unreadable policy is treated as none */ }
  }
  return {
    visibilityTimeoutSeconds: Number(attributes.VisibilityTimeout ?? 30),
    approximateMessages: Number(attributes.ApproximateNumberOfMessages ?? 0),
    approximateInFlight: Number(attributes.ApproximateNumberOfMessagesNotVisible ?? 0),
    redrive,
  };
}

/**
 * Returns the URL of the queue named by `queueUrl`, creating it when missing.
 *
 * @throws {SqsError} code `sqs_queue`
 */
export async function ensureQueue(client: SQSClient, queueUrl: string): Promise<string> {
  const name = queueNameOf(queueUrl);
  try {
    const found = await client.send(new GetQueueUrlCommand({ QueueName: name }));
    if (found.QueueUrl !== undefined) return queueUrl;
  } catch (error) {
    const missing = error instanceof QueueDoesNotExist ||
      (error instanceof Error && /NonExistentQueue|QueueDoesNotExist/.test(error.name));
    if (!missing) {
      throw new SqsError(
        "sqs_queue",
        `Cannot reach queue ${queueUrl}: ${describeAwsError(error)}`,
        {
          cause: error,
        },
      );
    }
  }
  try {
    await client.send(new CreateQueueCommand({ QueueName: name }));
    return queueUrl;
  } catch (error) {
    throw new SqsError("sqs_queue", `Cannot create queue ${name}: ${describeAwsError(error)}`, {
      cause: error,
    });
  }
}
