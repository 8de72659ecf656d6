/**
 * One long poll: ReceiveMessage → `ReceivedMessage[]` with the attributes the
 * pipeline needs (SentTimestamp, ApproximateReceiveCount).
 *
 * @module
 */

import {
  type Message,
  type QueueAttributeName,
  ReceiveMessageCommand,
  type SQSClient,
} from "@aws-sdk/client-sqs";
import { CredentialsError, SqsError } from "../errors.ts";
import type { ReceivedMessage } from "../types.ts";
import { describeAwsError, isTransientAwsError } from "./_errors.ts";
import { COPY_ATTRIBUTES } from "./send.ts";

/** Options of one receive call. */
export interface ReceiveOptions {
  /** 1-10 messages (SQS's limit). */
  readonly max: number;
  /** Long-poll wait, 0-20 seconds (SQS's limit). */
  readonly waitSeconds: number;
  readonly signal?: AbortSignal;
}

/** One receive's messages, and how many came without a SentTimestamp. */
export interface Received {
  readonly messages: ReceivedMessage[];
  /** Messages dated by their receipt instead (the endpoint sent no SentTimestamp). */
  readonly undated: number;
}

/** The system attributes the pipeline needs: the date of a login, and the poison count. */
const ATTRIBUTES = ["SentTimestamp", "ApproximateReceiveCount"] as const;

function toReceived(
  message: Message,
  receivedAtMs: number,
): { message: ReceivedMessage; dated: boolean } | null {
  if (message.MessageId === undefined || message.ReceiptHandle === undefined) return null;
  // A raw copy replayed from --reject-queue-url keeps its original date.
  const copied = Number(message.MessageAttributes?.[COPY_ATTRIBUTES.sentTimestamp]?.StringValue);
  const sent = Number.isFinite(copied) && copied > 0
    ? copied
    : Number(message.Attributes?.SentTimestamp);
  const count = Number(message.Attributes?.ApproximateReceiveCount);
  const dated = Number.isFinite(sent) && sent > 0;
  return {
    message: {
      id: message.MessageId,
      receiptHandle: message.ReceiptHandle,
      body: message.Body ?? "",
      // Fall back to the receipt time rather than drop the login (the caller says so once).
      sentAtMs: dated ? sent : receivedAtMs,
      dated,
      receiveCount: Number.isFinite(count) && count > 0 ? count : 1,
    },
    dated,
  };
}

function isAbort(error: unknown, signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true ||
    (error instanceof Error &&
      (error.name === "AbortError" || error.name === "RequestAbortedError"));
}

/**
 * Receives up to `max` messages. An aborted poll resolves to none.
 *
 * @throws {SqsError} code `sqs_receive` when the call fails after the SDK's retries, or
 *   {CredentialsError} when the credentials are missing or refused
 */
export async function receiveMessages(
  client: SQSClient,
  queueUrl: string,
  options: ReceiveOptions,
): Promise<Received> {
  let output;
  try {
    output = await client.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: options.max,
        WaitTimeSeconds: options.waitSeconds,
        MessageSystemAttributeNames: [...ATTRIBUTES],
        // The older name too: endpoints before 2024 (LocalStack < 3, ElasticMQ)
        // know only AttributeNames, where SQS took these same system names.
        AttributeNames: [...ATTRIBUTES] as unknown as QueueAttributeName[],
        MessageAttributeNames: [COPY_ATTRIBUTES.sentTimestamp],
      }),
      options.signal === undefined ? {} : { abortSignal: options.signal },
    );
  } catch (error) {
    if (isAbort(error, options.signal)) return { messages: [], undated: 0 };
    if (error instanceof CredentialsError) throw error;
    throw new SqsError("sqs_receive", `ReceiveMessage failed: ${describeAwsError(error)}`, {
      cause: error,
      transient: isTransientAwsError(error),
    });
  }
  const now = Date.now();
  const messages: ReceivedMessage[] = [];
  let undated = 0;
  for (const message of output.Messages ?? []) {
    const item = toReceived(message, now);
    if (item === null) continue;
    messages.push(item.message);
    if (!item.dated) undated++;
  }
  return { messages, undated };
}
