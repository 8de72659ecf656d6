/**
 * Sending, for `seed` and `demo`: SendMessageBatch in chunks of 10 with a
 * bounded number of calls in flight.
 *
 * @module
 */

import { SendMessageBatchCommand, type SQSClient } from "@aws-sdk/client-sqs";
import { SQS_MAX_BATCH } from "./_batch.ts";
import { SqsError } from "../errors.ts";
import { describeAwsError } from "./_errors.ts";

/**
 * Sends every body, `concurrency` batch calls at a time, pulling bodies from
 * an iterable so a large seed never holds all of them in memory.
 *
 * @returns how many messages SQS accepted
 * @throws {SqsError} code `sqs_send` when a call fails or SQS refuses an entry
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
