/**
 * The calls commands make at start: read the queue's attributes (which also
 * proves the queue is there), find or create it (`seed`); and the queue's
 * depth, read again for the progress line and the metrics.
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
import { CredentialsError, SqsError } from "../errors.ts";
import { describeAwsError, isTransientAwsError } from "./_errors.ts";

/** The queue name: the last path segment of its URL. */
export function queueNameOf(queueUrl: string): string {
  const segments = new URL(queueUrl).pathname.split("/").filter((s) => s !== "");
  return segments[segments.length - 1] ?? "";
}

/** True when SQS answered that the queue does not exist (either protocol's name for it). */
export function isQueueMissing(error: unknown): boolean {
  return error instanceof QueueDoesNotExist ||
    (error instanceof Error && /NonExistentQueue|QueueDoesNotExist/.test(error.name));
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

/** The queue's depth (approximate, as SQS counts), for the progress line and the metrics. */
export function queueDepth(client: SQSClient, queueUrl: string): Promise<number> {
  return readQueueAttributes(client, queueUrl).then((a) => a.approximateMessages);
}

/**
 * Reads the queue's attributes; also the first call of a run, so a wrong URL
 * or unreachable endpoint fails here with one clear line.
 *
 * @throws {SqsError} code `sqs_queue`, or {CredentialsError} when the credentials are
 *   missing or refused
 */
export async function readQueueAttributes(
  client: SQSClient,
  queueUrl: string,
  options: { readonly signal?: AbortSignal } = {},
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
      options.signal === undefined ? {} : { abortSignal: options.signal },
    );
  } catch (error) {
    throw queueError(error, queueUrl);
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

/** A failed call on a queue as one line: missing, unreachable or refused. */
function queueError(error: unknown, queueUrl: string): Error {
  if (error instanceof CredentialsError) return error;
  const missing = isQueueMissing(error);
  return new SqsError(
    "sqs_queue",
    missing
      ? `Queue ${queueUrl} does not exist: create it, or run login-etl seed, or fix --queue-url`
      : `Cannot reach queue ${queueUrl}: ${describeAwsError(error)}; ${
        isTransientAwsError(error)
          ? "check --queue-url and AWS_ENDPOINT_URL, and that the endpoint runs"
          : "check --queue-url, AWS_ENDPOINT_URL and the queue's access policy"
      }`,
    // Unreachable may pass (a restart, a failover); missing or refused will not.
    { cause: error, transient: !missing && isTransientAwsError(error) },
  );
}

/** How a queue protects what it holds at rest. */
export interface QueueProtection {
  /** Server-side encryption: SQS-managed keys, a KMS key, none, or unknown when the endpoint does not say. */
  readonly encryption: "sqs-managed" | "kms" | "none" | "unknown";
  /** The KMS key, when `encryption` is `kms`. */
  readonly kmsKeyId: string | null;
  /** How long the queue keeps a message (MessageRetentionPeriod); null when the endpoint does not say. */
  readonly retentionSeconds: number | null;
}

/**
 * Reads a queue's encryption and retention (for `check` of the reject queue,
 * which holds raw messages). Asks for all attributes: emulators that know no
 * SSE attributes then simply leave them out.
 *
 * @throws {SqsError} code `sqs_queue`, or {CredentialsError}
 */
export async function readQueueProtection(
  client: SQSClient,
  queueUrl: string,
  options: { readonly signal?: AbortSignal } = {},
): Promise<QueueProtection> {
  let attributes: Record<string, string>;
  try {
    const output = await client.send(
      new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ["All"] }),
      options.signal === undefined ? {} : { abortSignal: options.signal },
    );
    attributes = output.Attributes ?? {};
  } catch (error) {
    throw queueError(error, queueUrl);
  }
  const kms = attributes["KmsMasterKeyId"];
  const managed = attributes["SqsManagedSseEnabled"];
  const retention = attributes["MessageRetentionPeriod"];
  return {
    encryption: kms !== undefined && kms !== ""
      ? "kms"
      : managed === "true"
      ? "sqs-managed"
      : managed === "false"
      ? "none"
      : "unknown",
    kmsKeyId: kms !== undefined && kms !== "" ? kms : null,
    retentionSeconds: retention === undefined ? null : Number(retention),
  };
}

/**
 * Returns the URL of the queue named by `queueUrl`, creating it when missing.
 *
 * @throws {SqsError} code `sqs_queue`, or {CredentialsError} when the credentials are
 *   missing or refused
 */
export async function ensureQueue(client: SQSClient, queueUrl: string): Promise<string> {
  const name = queueNameOf(queueUrl);
  try {
    const found = await client.send(new GetQueueUrlCommand({ QueueName: name }));
    if (found.QueueUrl !== undefined) return queueUrl;
  } catch (error) {
    if (error instanceof CredentialsError) throw error;
    if (!isQueueMissing(error)) {
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
    if (error instanceof CredentialsError) throw error;
    throw new SqsError("sqs_queue", `Cannot create queue ${name}: ${describeAwsError(error)}`, {
      cause: error,
    });
  }
}
