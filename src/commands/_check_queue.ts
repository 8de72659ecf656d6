/**
 * `check`'s queues: the queue (GetQueueAttributes, which touches no message)
 * with its endpoint, region and protocol, and the reject queue, which gets
 * raw messages and so must be encrypted at rest on AWS.
 *
 * @module
 */

import type { CheckConfig } from "../config/configs.ts";
import { formatError } from "../errors.ts";
import type { Telemetry } from "../ops/telemetry.ts";
import {
  isQueueMissing,
  queueNameOf,
  readQueueAttributes,
  readQueueProtection,
} from "../sqs/admin.ts";
import { createSqsClient, isAwsHost } from "../sqs/client.ts";
import { type CheckResult, fail, ok, SERVICE_TIMEOUT_MS } from "./_check.ts";

export async function checkQueue(
  config: CheckConfig,
  telemetry: Telemetry,
): Promise<CheckResult[]> {
  const name = `queue ${queueNameOf(config.queueUrl)}`;
  const signal = AbortSignal.timeout(SERVICE_TIMEOUT_MS);
  let switched: string | null = null;
  let sqs;
  try {
    sqs = await createSqsClient({
      queueUrl: config.queueUrl,
      region: config.region,
      protocol: config.sqsProtocol,
      awsEnv: config.awsEnv,
      waitSeconds: 0,
      onProtocolSwitch: (reason) => (switched = reason),
      onRegionOverridden: (override) => telemetry.emit({ type: "RegionOverridden", ...override }),
    });
  } catch (error) {
    return [fail(name, formatError(error, false))];
  }
  try {
    const a = await readQueueAttributes(sqs.client, config.queueUrl, { signal });
    const protocol = config.sqsProtocol === "auto"
      ? `${sqs.protocol()} (auto${
        switched === null ? "" : ", switched: the endpoint speaks Query only"
      })`
      : sqs.protocol();
    return [
      ok(
        name,
        `reachable at ${
          sqs.endpoint.endpoint ?? "AWS"
        }, region ${sqs.region.region}, protocol ${protocol}; ` +
          `${a.approximateMessages} waiting, ${a.approximateInFlight} in flight, visibility ${a.visibilityTimeoutSeconds} s`,
      ),
    ];
  } catch (error) {
    const cause = (error as { cause?: unknown }).cause;
    if (config.for === "seed" && isQueueMissing(cause)) {
      return [ok(name, "absent; seed creates it")];
    }
    return [
      fail(
        name,
        signal.aborted
          ? `no answer from ${sqs.endpoint.endpoint ?? "AWS"} within ${
            SERVICE_TIMEOUT_MS / 1000
          } s; check --queue-url and AWS_ENDPOINT_URL`
          : formatError(error, false),
      ),
    ];
  } finally {
    sqs.client.destroy();
  }
}

/**
 * The reject queue gets raw messages, PII and all: it must be reachable,
 * and on AWS encrypted at rest; its retention is reported, since every day
 * it keeps a copy is a day that PII lives outside the database's controls.
 */
export async function checkRejectQueue(
  config: CheckConfig,
  url: string,
  telemetry: Telemetry,
): Promise<CheckResult[]> {
  const name = `reject queue ${queueNameOf(url)}`;
  const signal = AbortSignal.timeout(SERVICE_TIMEOUT_MS);
  let sqs;
  try {
    sqs = await createSqsClient({
      queueUrl: url,
      region: config.region,
      protocol: config.sqsProtocol,
      awsEnv: config.awsEnv,
      waitSeconds: 0,
      onRegionOverridden: (override) => telemetry.emit({ type: "RegionOverridden", ...override }),
    });
  } catch (error) {
    return [fail(name, formatError(error, false))];
  }
  try {
    const p = await readQueueProtection(sqs.client, url, { signal });
    const retention = p.retentionSeconds === null
      ? "retention not reported by this endpoint"
      : `keeps copies ${formatRetention(p.retentionSeconds)}`;
    if (p.encryption === "none" && isAwsHost(new URL(url).hostname)) {
      return [
        fail(
          name,
          `not encrypted at rest, and it holds raw messages with their PII; ${retention}: turn on SSE (aws sqs set-queue-attributes --queue-url ${url} --attributes SqsManagedSseEnabled=true, or a KMS key)`,
        ),
      ];
    }
    const encryption = p.encryption === "kms"
      ? `encrypted at rest with KMS key ${p.kmsKeyId}`
      : p.encryption === "sqs-managed"
      ? "encrypted at rest (SQS-managed keys)"
      : p.encryption === "none"
      ? "not encrypted at rest (not AWS: protect the endpoint's storage)"
      : "encryption not reported by this endpoint";
    return [ok(name, `${encryption}; ${retention}; it holds raw messages with their PII`)];
  } catch (error) {
    return [fail(name, formatError(error, false))];
  } finally {
    sqs.client.destroy();
  }
}

/** A retention period in the largest whole unit: "14 days", "2 hours", "90 s". */
function formatRetention(seconds: number): string {
  if (seconds % 86400 === 0) return `${seconds / 86400} day${seconds === 86400 ? "" : "s"}`;
  if (seconds % 3600 === 0) return `${seconds / 3600} hour${seconds === 3600 ? "" : "s"}`;
  return `${seconds} s`;
}
