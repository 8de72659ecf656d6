/**
 * Sending: SendMessageBatch in chunks of 10 with a bounded number of calls in
 * flight, for `seed` (and so `demo`) and for the raw copies of rejected
 * messages sent to `--reject-queue-url`.
 *
 * @module
 */

import { SendMessageBatchCommand, type SQSClient } from "@aws-sdk/client-sqs";
import { callInChunks, SQS_MAX_BATCH } from "./_batch.ts";
import type { AckResult, ReceivedMessage, RejectNote } from "../types.ts";
import { CredentialsError, SqsError } from "../errors.ts";
import { describeAwsError } from "./_errors.ts";
import { utf8Length } from "../text.ts";

/**
 * Sends every body, `concurrency` batch calls at a time, pulling bodies from
 * an iterable so a large seed never holds all of them in memory.
 *
 * @returns how many messages SQS accepted
 * @throws {SqsError} code `sqs_send` when a call fails or SQS refuses an entry, or
 *   {CredentialsError} when the credentials are missing or refused
 */
export async function sendBodies(
  client: SQSClient,
  queueUrl: string,
  bodies: Iterable<string>,
  options: { readonly concurrency: number },
): Promise<number> {
  const iterator = bodies[Symbol.iterator]();
  let sent = 0;
  const nextChunk = (): string[] => {
    const part: string[] = [];
    while (part.length < SQS_MAX_BATCH) {
      const next = iterator.next();
      if (next.done === true) break;
      part.push(next.value);
    }
    return part;
  };
  async function worker(): Promise<void> {
    for (let part = nextChunk(); part.length > 0; part = nextChunk()) {
      let output;
      try {
        output = await client.send(
          new SendMessageBatchCommand({
            QueueUrl: queueUrl,
            Entries: part.map((body, i) => ({ Id: String(i), MessageBody: body })),
          }),
        );
      } catch (error) {
        if (error instanceof CredentialsError) throw error;
        throw new SqsError("sqs_send", `SendMessageBatch failed: ${describeAwsError(error)}`, {
          cause: error,
        });
      }
      const failed = output.Failed ?? [];
      if (failed.length > 0) {
        const first = failed[0];
        throw new SqsError(
          "sqs_send",
          `SendMessageBatch refused ${failed.length} of ${part.length} messages: ${
            first?.Code ?? "Unknown"
          }: ${first?.Message ?? ""}`,
        );
      }
      sent += part.length;
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, options.concurrency) }, () => worker()));
  return sent;
}

/**
 * Payload of one SendMessageBatch request, at most: 256 KiB, the cap of
 * LocalStack and of SQS until 2025 (SQS now takes 1 MiB). A copy larger
 * than this on its own is sent alone.
 */
export const SEND_BATCH_MAX_BYTES = 256 * 1024;

/** Message attributes of a reject's raw copy, as `drain` of a reject queue reads them back. */
export const COPY_ATTRIBUTES = {
  reason: "login_etl_reason",
  detail: "login_etl_detail",
  messageId: "login_etl_message_id",
  sentTimestamp: "login_etl_sent_timestamp",
} as const;

/**
 * Sends each rejected message's raw body to the reject queue, with its
 * reason, detail, original MessageId and SentTimestamp as message
 * attributes, in batches of 10, concurrently. On a FIFO queue the original
 * MessageId is also the deduplication id. Never throws: failures are results.
 */
export function sendRejectCopies(
  client: SQSClient,
  queueUrl: string,
  copies: readonly { message: ReceivedMessage; note: RejectNote }[],
): Promise<AckResult> {
  const fifo = queueUrl.endsWith(".fifo");
  const notes = new Map(copies.map((c) => [c.message.id, c.note]));
  // The batch helper hands entries by receipt handle, unique per delivery.
  const byReceipt = new Map(copies.map((c) => [c.message.receiptHandle, c.message]));
  // Rejects are where large bodies end up (too_long, poison): ten of them in
  // one SendMessageBatch can pass the request's payload cap, which fails the
  // whole call, so chunks are cut by size too. 1 KiB a copy covers its
  // attributes (the detail is capped at 1,024 characters).
  const copyBytes = (m: ReceivedMessage) => utf8Length(m.body) + 1024 + 256;
  return callInChunks(copies.map((c) => c.message), async (entries) => {
    return await client.send(
      new SendMessageBatchCommand({
        QueueUrl: queueUrl,
        Entries: entries.map((entry) => {
          const message = byReceipt.get(entry.ReceiptHandle) as ReceivedMessage;
          const note = notes.get(message.id) as RejectNote;
          return {
            Id: entry.Id,
            MessageBody: message.body,
            MessageAttributes: {
              [COPY_ATTRIBUTES.reason]: { DataType: "String", StringValue: note.reason },
              // SQS caps an attribute at 256 KiB in all; details are short.
              [COPY_ATTRIBUTES.detail]: {
                DataType: "String",
                StringValue: note.detail.slice(0, 1024) || "-",
              },
              [COPY_ATTRIBUTES.messageId]: { DataType: "String", StringValue: message.id },
              [COPY_ATTRIBUTES.sentTimestamp]: {
                DataType: "Number",
                StringValue: String(message.sentAtMs),
              },
            },
            ...(fifo
              ? { MessageGroupId: "login-etl-rejects", MessageDeduplicationId: message.id }
              : {}),
          };
        }),
      }),
    );
  }, { max: SEND_BATCH_MAX_BYTES, of: copyBytes });
}
