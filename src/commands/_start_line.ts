/**
 * What the start line of `drain` and `run` (`RunStarted`) says: the settings
 * that decide how the run behaves, and what was decided in making its
 * connections.
 *
 * @module
 */

import type { ConsumeConfig } from "../config/resolve.ts";
import type { PgConnection } from "../db/connection.ts";
import type { Fields } from "../log.ts";
import type { QueueAttributes } from "../sqs/admin.ts";
import type { SqsConnection } from "../sqs/client.ts";
import type { RunKeys } from "../pii/keys.ts";

/** What the start line (`RunStarted`) says: the settings that decide how the run behaves. */
export function runStartedFields(
  config: ConsumeConfig,
  run: {
    readonly sqs: SqsConnection;
    readonly connection: PgConnection | null;
    readonly keys: RunKeys;
    readonly threads: number;
    readonly attributes: QueueAttributes;
  },
): Fields {
  const { sqs, connection, keys, attributes } = run;
  return {
    command: config.command,
    queue_url: config.queueUrl,
    endpoint: sqs.endpoint.endpoint ?? "aws",
    endpoint_source: sqs.endpoint.source,
    sqs_protocol: config.sqsProtocol === "auto" ? `${sqs.protocol()} (auto)` : sqs.protocol(),
    region: sqs.region.region,
    region_source: sqs.region.source,
    database: connection === null ? "none (dry run)" : connection.display,
    key_id: keys.masker.keyId,
    vault: keys.vault === undefined
      ? "off"
      : `on, key ${keys.vault.currentKeyId} (${keys.vault.seals ? "sealed" : "symmetric"})`,
    concurrency: config.concurrency,
    max_rows: config.maxRows,
    worker_threads: run.threads,
    visibility_timeout_s: attributes.visibilityTimeoutSeconds,
    queue_depth: attributes.approximateMessages,
    redrive: attributes.redrive === null
      ? "none"
      : `dead-letter after ${attributes.redrive.maxReceiveCount} receives`,
    max_receives: attributes.redrive === null ? config.maxReceives : "left to the redrive policy",
  };
}
