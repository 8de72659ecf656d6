/**
 * The set-up steps of `drain` and `run`, one function each, so that
 * `consume.ts` reads as the order of a start: keys, queue, database,
 * sink, operations endpoints. Each step maps the run's settings onto the
 * module that does it (`sqs/`, `db/setup.ts`, `sink/open.ts`,
 * `ops/serve.ts`): wiring only.
 *
 * @module
 */

import type { ConsumeConfig } from "../config/resolve.ts";
import type { PgConnection } from "../db/connection.ts";
import { registryId } from "../db/keys.ts";
import { retentionOf } from "../db/ledger.ts";
import { type Database, ping } from "../db/pool.ts";
import { setUpDatabase } from "../db/setup.ts";
import type { Metrics } from "../ops/metrics.ts";
import { openMetrics } from "../ops/serve.ts";
import type { Telemetry } from "../ops/telemetry.ts";
import { loadRunKeys as loadKeysOfRun, type RunKeys } from "../pii/keys.ts";
import { mostLoops } from "../pipeline/concurrency.ts";
import { type SinkKeys, startSink, type StartSinkOptions } from "../sink/open.ts";
import type { SqsClientOptions, SqsConnection } from "../sqs/client.ts";
import { queueDepth } from "../sqs/admin.ts";
import type { Sink } from "../types.ts";
import { KEY_RULES } from "./_pii.ts";

/**
 * Loads the keys of a run (`loadRunKeys` of `pii/keys.ts`), read under the
 * settings table's rules.
 *
 * @throws {ConfigError}
 */
export function loadRunKeys(config: ConsumeConfig, telemetry: Telemetry): Promise<RunKeys> {
  return loadKeysOfRun(config, { dryRun: config.dryRun, rules: KEY_RULES, telemetry });
}

/** The SQS client's settings for a run; `waitSeconds` is its longest long poll. */
export function queueOptions(
  config: ConsumeConfig,
  waitSeconds: number,
): Omit<SqsClientOptions, "onProtocolSwitch" | "onRegionOverridden"> {
  const { queueUrl, region, sqsProtocol: protocol, awsEnv } = config;
  return {
    queueUrl,
    region,
    protocol,
    awsEnv,
    waitSeconds,
    receivers: mostLoops(config.concurrency),
  };
}

/** Readies the database for a run (`db/setup.ts`) with every key of `keys`; throws as it does. */
export function prepareDatabase(
  database: Database,
  options: {
    readonly connection: PgConnection;
    readonly config: ConsumeConfig;
    readonly keys: RunKeys;
  },
  telemetry: Telemetry,
): Promise<void> {
  const { config, keys } = options;
  return setUpDatabase(database, {
    connection: options.connection,
    schema: config.schema,
    stateSchema: config.stateSchema,
    lockWaitSeconds: config.migrateLockWaitSeconds,
    ownerRole: config.ownerRole,
    fingerprints: [
      ...keys.maskers.map((m) => [m.keyId, m.fingerprint] as const),
      ...[...keys.vaultFingerprints].map(([id, fp]) => [registryId("vault", id), fp] as const),
    ],
    retention: retentionOf(config),
  }, telemetry);
}

/** The run's metrics (`ops/serve.ts`): served by `run --listen`, a file for `drain --metrics-file`. */
export function openOperations(
  config: ConsumeConfig,
  deps: {
    readonly client: SqsConnection["client"];
    readonly database: Database | null;
    readonly stack: AsyncDisposableStack;
    readonly stopping: () => boolean;
    /** Read when the run ends: whether it succeeded, for the metrics file. */
    readonly succeeded: () => boolean;
  },
  telemetry: Telemetry,
): Promise<Metrics | null> {
  const { client, database } = deps;
  return openMetrics({
    listen: config.command === "run" ? config.listen : null,
    metricsFile: config.command === "drain" ? config.metricsFile : null,
  }, {
    stack: deps.stack,
    stopping: deps.stopping,
    succeeded: deps.succeeded,
    queueDepth: () => queueDepth(client, config.queueUrl),
    pingDatabase: database === null ? null : () => ping(database),
  }, telemetry);
}

/** The sink of a run (`sink/open.ts`): the dry-run printer, or writes to Postgres once readied. */
export function openSink(
  config: ConsumeConfig,
  deps: Pick<StartSinkOptions, "prepare" | "threads"> & {
    readonly keys: RunKeys;
    readonly connection: PgConnection | null;
    readonly database: Database | null;
    readonly stack: AsyncDisposableStack;
    readonly writeStdout: (line: string) => void;
    readonly readyDatabase: () => Promise<void>;
  },
): Promise<Sink> {
  const { connection, database } = deps;
  return startSink({
    database: database === null || connection === null ? null : { pool: database, connection },
    keys: sinkKeys(deps.keys),
    prepare: deps.prepare,
    threads: deps.threads,
    writers: config.writers,
    writeTimeoutMs: config.writeTimeoutSeconds * 1000,
    // A table refusing every row: run waits with backoff for it to be fixed, drain stops.
    systemicIsTransient: config.command === "run",
    // With a reject queue, a redelivered reject's copy is sent again: the store says which.
    reportEarlierRejects: config.rejectQueueUrl !== null,
  }, deps);
}

/** The run's keys as the sink takes them; worker threads get the writer keys as plain data. */
function sinkKeys(keys: RunKeys): SinkKeys {
  const { masker, vault, vaultKeys } = keys;
  return {
    masker,
    vault,
    forWorkers: () => ({
      secret: keys.secret.reveal(),
      keyId: masker.keyId,
      vault: vaultKeys === null ? null : {
        current: vaultKeys.current,
        keys: [...vaultKeys.keys].map(([id, key]) =>
          [
            id,
            key.kind === "secret"
              ? { kind: "secret", secret: key.secret.reveal() }
              : { kind: "pair", publicKey: key.publicKey, privateKey: null },
          ] as const
        ),
      },
    }),
  };
}
