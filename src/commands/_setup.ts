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
import type { Secret } from "../config/secret.ts";
import type { PgConnection } from "../db/connection.ts";
import { retentionOf } from "../db/ledger.ts";
import { type Database, ping } from "../db/pool.ts";
import { setUpDatabase } from "../db/setup.ts";
import { ConfigError } from "../errors.ts";
import { Masker } from "../mask.ts";
import type { Metrics } from "../ops/metrics.ts";
import { openMetrics } from "../ops/serve.ts";
import type { Telemetry } from "../ops/telemetry.ts";
import {
  assertSeparateKeys,
  currentSecret,
  loadKeySet,
  loadVaultKeySet,
  readableKeyIds,
  type VaultKeySet,
  writerKeys,
} from "../pii/keyring.ts";
import { VaultCipher, vaultFingerprints } from "../pii/vault.ts";
import { type SinkKeys, startSink, type StartSinkOptions } from "../sink/open.ts";
import type { SqsClientOptions, SqsConnection } from "../sqs/client.ts";
import { queueDepth } from "../sqs/admin.ts";
import type { Sink } from "../types.ts";

/** The keys of a run, loaded and checked. */
export interface RunKeys {
  /** Every HMAC key of the set, so each id is registered; new masks use `masker`. */
  readonly maskers: readonly Masker[];
  readonly masker: Masker;
  readonly secret: Secret;
  /**
   * What the run writes the vault with (`writerKeys`: the current key, a
   * pair's public half only), when a vault key is configured (never in a dry run).
   */
  readonly vaultKeys: VaultKeySet | null;
  readonly vault: VaultCipher | undefined;
  /** Fingerprints of every vault key of the configured set, to register. */
  readonly vaultFingerprints: ReadonlyMap<string, string>;
}

/**
 * Loads the HMAC key set (required) and the vault key set (optional, not in
 * a dry run), refusing one secret for both. A vault key set that could read
 * the vault (a secret, or a private key) is used, with a warning
 * (`VaultKeyReadable`): a consumer needs only the public key.
 *
 * @throws {ConfigError}
 */
export async function loadRunKeys(config: ConsumeConfig, telemetry: Telemetry): Promise<RunKeys> {
  const warn = (message: string) => telemetry.emit({ type: "ConfigWarned", message });
  const hmacKeys = await loadKeySet(config.hmacKey, config.hmacKeyId, warn);
  if (hmacKeys === null) throw new ConfigError("No HMAC key: set PII_HMAC_KEY or --hmac-key-file");
  const maskers = await Promise.all([...hmacKeys.keys].map(([id, key]) => Masker.create(key, id)));
  const vaultSet = config.dryRun
    ? null
    : await loadVaultKeySet(config.vaultKey, config.vaultKeyId, warn);
  assertSeparateKeys(hmacKeys, vaultSet);
  const readable = vaultSet === null ? [] : readableKeyIds(vaultSet);
  if (vaultSet !== null && readable.length > 0) {
    telemetry.emit({
      type: "VaultKeyReadable",
      keyIds: readable,
      sealing: vaultSet.keys.get(vaultSet.current)?.kind === "pair",
    });
  }
  const vaultKeys = vaultSet === null ? null : writerKeys(vaultSet);
  return {
    maskers,
    masker: maskers.find((m) => m.keyId === hmacKeys.current) as Masker,
    secret: currentSecret(hmacKeys),
    vaultKeys,
    vault: vaultKeys === null ? undefined : await VaultCipher.create(vaultKeys),
    vaultFingerprints: vaultSet === null ? new Map() : await vaultFingerprints(vaultSet),
  };
}

/** The SQS client's settings for a run; `waitSeconds` is its longest long poll. */
export function queueOptions(
  config: ConsumeConfig,
  waitSeconds: number,
): Omit<SqsClientOptions, "onProtocolSwitch" | "onRegionOverridden"> {
  const { queueUrl, region, sqsProtocol: protocol, awsEnv } = config;
  return { queueUrl, region, protocol, awsEnv, waitSeconds };
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
      ...[...keys.vaultFingerprints].map(([id, fp]) => [`vault:${id}`, fp] as const),
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
