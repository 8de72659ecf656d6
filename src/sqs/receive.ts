/**
 * One long poll: ReceiveMessage → `ReceivedMessage[]` with the attributes the
 * pipeline needs (SentTimestamp, ApproximateReceiveCount).
 *
 * @module
 */

import { type Message, ReceiveMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import { SqsError } from "../errors.ts";
import type { ReceivedMessage } from "../types.ts";

/** Options of one receive call. */
export interface ReceiveOptions {
  /** 1-10 messages (SQS's limit). */
  readonly max: number;
  /** Long-poll wait, 0-20 seconds (SQS's limit). */
  readonly waitSeconds: number;
  readonly signal?: AbortSignal;
}

function toReceived(message: Message, receivedAtMs: number): ReceivedMessage | null {
  if (message.MessageId === undefined || message.ReceiptHandle === undefined) return null;
  const sent = Number(message.Attributes?.SentTimestamp);
  const count = Number(message.Attributes?.ApproximateReceiveCount);
  return {
    id: message.MessageId,
    receiptHandle: message.ReceiptHandle,
    body: message.Body ?? "",
    // Every SQS implementation sets SentTimestamp; fall back to now rather than drop.
    sentAtMs: Number.isFinite(sent) && sent > 0 ? sent : receivedAtMs,
    receiveCount: Number.isFinite(count) && count > 0 ? count : 1,
  };
}

function isAbort(error: unknown, signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true ||
    (error instanceof Error &&
      (error.name === "AbortError" || error.name === "RequestAbortedError"));
}

/**
 * Receives up to `max` messages. An aborted poll resolves to `[]`.
 *
 * @throws {SqsError} code `sqs_receive` when the call fails after the SDK's retries
 */
export async function receiveMessages(
  client: SQSClient,
  queueUrl: string,
  options: ReceiveOptions,
): Promise<ReceivedMessage[]> {
  let output;
  try {
    output = await client.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: options.max,
        WaitTimeSeconds: options.waitSeconds,
        MessageSystemAttributeNames: ["SentTimestamp", "ApproximateReceiveCount"],
      }),
      options.signal === undefined ? {} : { abortSignal: options.signal },
    );
  } catch (error) {
    if (isAbort(error, options.signal)) return [];
    throw new SqsError("sqs_receive", `ReceiveMessage failed: ${describeAwsError(error)}`, {
      cause: error,
      transient: isTransientAwsError(error),
    });
  }
  const now = Date.now();
  const received: ReceivedMessage[] = [];
  for (const message of output.Messages ?? []) {
    const item = toReceived(message, now);
    if (item !== null) received.push(item);
  }
  return received;
}

/** Short text of an AWS SDK error: its name or code and message, no request details. */
export function describeAwsError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { Code?: string }).Code ?? error.name;
    const message = error.message.split("\n")[0] ?? "";
    return message !== "" && message !== code ? `${code}: ${message}` : code;
  }
  return String(error);
}

const THROTTLING =
  /Throttl|RequestLimitExceeded|TooManyRequests|SlowDown|ServiceUnavailable|InternalError|RequestTimeout/;

/**
 * True when retrying later may succeed: throttling, a server fault, or no
 * complete answer at all (connection refused or reset, timeout, a truncated
 * response). False for client faults such as a missing queue or denied
 * access, which a retry would only repeat.
 */
export function isTransientAwsError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const meta = error as { $fault?: string; $retryable?: unknown };
  if (meta.$retryable !== undefined || THROTTLING.test(error.name)) return true;
  return meta.$fault !== "client";
}
