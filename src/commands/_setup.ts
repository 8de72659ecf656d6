/**
 * The set-up steps of `drain` and `run`, one function each, so that
 * `consume.ts` reads as the order of a start: keys, queue, database,
 * sink, operations endpoints.
 *
 * @module
 */

import type { SQSClient } from "@aws-sdk/client-sqs";
import { postgresStore } from "../db/write.ts";
import { dryRunStore } from "../sink/dry_run.ts";
import { localSink, type SinkOptions } from "../sink/sink.ts";
import { workerSinks } from "../sink/threads.ts";
import type { ConsumeConfig } from "../config/resolve.ts";
import type { Secret } from "../config/secret.ts";
import type { PgConnection } from "../db/connection.ts";
import { registerKey } from "../db/keys.ts";
import { prune, type PruneTarget } from "../db/ledger.ts";
import { type Database, type Deployment, describeDbError } from "../db/pool.ts";
import { ensureSchema } from "../db/schema.ts";
import { ConfigError, DatabaseError, EtlError, formatError } from "../errors.ts";
import { retrying } from "../pipeline/retry.ts";
import { Masker } from "../mask.ts";
import type { Metrics } from "../ops/metrics.ts";
import {
  cachedProbe,
  createHandler,
  type ListenAddress,
  parseListenAddress,
  type ReadinessCheck,
  readinessProbe,
} from "../ops/server.ts";
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
import { createSqsClient, type SqsConnection } from "../sqs/client.ts";
import { type QueueAttributes, readQueueAttributes } from "../sqs/admin.ts";
import type { Fields } from "../log.ts";
import type { Sink } from "../types.ts";

/** How long /readyz waits for the database and the queue; under the probe's 5 s timeout in deploy/. */
const READY_TIMEOUT_MS = 2000;
/** How long a /readyz answer is reused, so frequent probes and scrapes do not hammer the services. */
const READY_CACHE_MS = 2000;

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

/**
 * The SQS client of a run; a region override and the protocol switch, if
 * any, are logged as they happen.
 */
export function openQueue(
  config: ConsumeConfig,
  waitSeconds: number,
  telemetry: Telemetry,
): Promise<SqsConnection> {
  return createSqsClient({
    queueUrl: config.queueUrl,
    region: config.region,
    protocol: config.sqsProtocol,
    awsEnv: config.awsEnv,
    waitSeconds,
    onProtocolSwitch: (reason) =>
      telemetry.emit({ type: "SqsProtocolSwitched", protocol: "query", reason }),
    onRegionOverridden: (override) => telemetry.emit({ type: "RegionOverridden", ...override }),
  });
}

/** The queue's depth, for the progress line and the metrics. */
export function queueDepth(client: SQSClient, queueUrl: string): Promise<number> {
  return readQueueAttributes(client, queueUrl).then((a) => a.approximateMessages);
}

/** How long each of login-etl's own tables keeps its rows. */
export function retentionOf(config: ConsumeConfig): readonly [PruneTarget, number][] {
  return [["ledger", config.ledgerRetentionDays], ["rejects", config.rejectRetentionDays]];
}

/**
 * Prunes each table to its retention.
 *
 * @throws {DatabaseError} naming the grant to add when the role may not delete
 */
export async function pruneAll(
  db: Deployment,
  retention: readonly [PruneTarget, number][],
  telemetry: Telemetry,
): Promise<void> {
  for (const [target, days] of retention) {
    const result = await prune(db, { target, days }).catch((error: unknown) => {
      const state = db.schemas.stateSchema;
      throw new DatabaseError(
        "db_schema",
        `Cannot prune ${state}.${target === "ledger" ? "login_etl_ledger" : "login_etl_rejects"}: ${
          describeDbError(error)
        }; grant the consumer role ${
          target === "ledger"
            ? `EXECUTE on ${state}.login_etl_ledger_maintain(integer, integer)`
            : `DELETE on ${state}.login_etl_rejects`
        } and USAGE on schema ${state} (see sql/roles.sql)`,
        { cause: error },
      );
    });
    if (result.deleted + result.partitionsCreated + result.partitionsDropped > 0) {
      telemetry.emit({ type: "RowsPruned", target, ...result });
    }
  }
}

/**
 * Readies the database for a run: creates what is missing, registers every
 * key id with its fingerprint (refusing one that comes back with another
 * secret), and prunes old bookkeeping.
 *
 * @throws {DatabaseError} or {KeyMismatchError}
 */
export async function prepareDatabase(
  database: Database,
  options: {
    readonly connection: PgConnection;
    readonly config: ConsumeConfig;
    readonly keys: RunKeys;
  },
  telemetry: Telemetry,
): Promise<void> {
  const { config, keys } = options;
  const sql = database.sql;
  await ensureSchema(sql, {
    connection: options.connection,
    schema: config.schema,
    stateSchema: config.stateSchema,
    lockWaitSeconds: config.migrateLockWaitSeconds,
    ownerRole: config.ownerRole,
    onApplied: (m, ms) =>
      telemetry.emit({
        type: "SchemaMigrated",
        version: m.version,
        name: m.name,
        schema: config.schema,
        ms,
      }),
  });
  const fingerprints: [string, string][] = [
    ...keys.maskers.map((m) => [m.keyId, m.fingerprint] as [string, string]),
    ...[...keys.vaultFingerprints].map(([id, fp]) => [`vault:${id}`, fp] as [string, string]),
  ];
  for (const [keyId, fingerprint] of fingerprints) {
    if (await registerKey(database, { keyId, fingerprint }) === "new") {
      telemetry.emit({ type: "KeyRegistered", keyId });
    }
  }
  await pruneAll(database, retentionOf(config), telemetry);
}

/**
 * Serves /healthz, /readyz and /metrics on `address` until the returned
 * function is called. The only `Deno.serve` of the program.
 *
 * @throws {ConfigError} when the address cannot be bound
 */
export function serveOperations(
  address: ListenAddress,
  deps: {
    readonly metrics: Metrics;
    readonly checks: readonly ReadinessCheck[];
    readonly stopping: () => boolean;
  },
  telemetry: Telemetry,
): () => Promise<void> {
  const ready = cachedProbe(
    readinessProbe(deps.checks, { timeoutMs: READY_TIMEOUT_MS, stopping: deps.stopping }),
    { ttlMs: READY_CACHE_MS },
  );
  const handler = createHandler({
    metrics: deps.metrics,
    ready,
    onUnready: (reason) => telemetry.emit({ type: "NotReady", reason }),
  });
  let server: Deno.HttpServer;
  try {
    server = Deno.serve({
      hostname: address.hostname,
      port: address.port,
      // Without onListen, Deno prints "Listening on" to stdout, where --summary-json goes.
      onListen: (addr) =>
        telemetry.emit({ type: "ListenStarted", address: `${addr.hostname}:${addr.port}` }),
    }, handler);
  } catch (error) {
    const why = error instanceof Deno.errors.AddrInUse
      ? "the address is in use"
      : error instanceof Error
      ? error.message
      : String(error);
    throw new ConfigError(
      `Cannot listen on --listen "${address.hostname}:${address.port}": ${why}; pick another port`,
      { cause: error },
    );
  }
  return () => server.shutdown();
}

/**
 * Calls `fn` every `ms` until `stack` is disposed, never two at once: a
 * call still running when the next is due is waited for, not doubled.
 */
export function every(ms: number, fn: () => Promise<void>, stack: AsyncDisposableStack): void {
  let running: Promise<void> | null = null;
  const timer = setInterval(() => {
    running ??= fn().catch(() => {}).finally(() => (running = null));
  }, ms);
  stack.defer(async () => {
    clearInterval(timer);
    await running;
  });
}

/**
 * Runs a start-up step, retrying while it fails transiently (the service
 * unreachable or restarting, as in a failover) with the pipeline's backoff,
 * for up to `--max-retry-seconds`, each attempt logged. Bad credentials, a
 * missing privilege or a missing queue fail at once: waiting would not fix
 * them.
 *
 * @throws the step's last error, its message saying how long it was retried
 */
export async function atStart<T>(
  what: "queue" | "database",
  step: () => Promise<T>,
  options: { readonly maxRetrySeconds: number; readonly stop: AbortSignal },
  telemetry: Telemetry,
): Promise<T> {
  let attempts = 0;
  const result = await retrying(() => {
    attempts++;
    return step();
  }, {
    deadline: (first) => first + options.maxRetrySeconds * 1000,
    transient: (error) => error instanceof EtlError && error.transient,
    onFailure: (error, attempt, retryInMs) => {
      if (retryInMs === null) return; // the final error is the exit line
      telemetry.emit({
        type: "StageFailed",
        stage: "startup",
        code: error instanceof EtlError ? error.code : "internal",
        message: `${what} not reachable at start (${formatError(error)})`,
        attempt,
        retryInMs,
        messages: 0,
      });
    },
    cancelled: () => options.stop.aborted,
    now: () => performance.now(),
    signal: options.stop,
  });
  if (result.ok) return result.value;
  const error = result.error;
  if (error === null) throw new EtlError("internal", `Stopped before the ${what} was reachable`);
  if (attempts > 1 && error instanceof EtlError) {
    // The same error, only its message longer: a copy through its class's
    // constructor would assume every class takes (code, message, options).
    error.message =
      `${error.message} (gave up after ${attempts} attempts in ${options.maxRetrySeconds} s, --max-retry-seconds)`;
  }
  throw error;
}

/**
 * Writes `metrics` to `path` for node_exporter's textfile collector: to a
 * temporary file beside it, then renamed, so the collector never reads half
 * a file.
 */
export async function writeMetricsFile(
  path: string,
  metrics: Metrics,
  succeeded: boolean,
): Promise<void> {
  metrics.finished(succeeded);
  const temporary = `${path}.${Deno.pid}.tmp`;
  try {
    await Deno.writeTextFile(temporary, await metrics.expose());
    await Deno.rename(temporary, path);
  } catch (error) {
    await Deno.remove(temporary).catch(() => {});
    throw new ConfigError(`Cannot write --metrics-file "${path}": ${formatError(error)}`, {
      cause: error,
    });
  }
}

/**
 * The run's metrics and where they go: `/metrics` (with /healthz and
 * /readyz) for `run --listen`, a file at exit for `drain --metrics-file`.
 * None at all otherwise, and prom-client is then never loaded: it is a
 * noticeable share of start-up time.
 */
export async function openOperations(
  config: ConsumeConfig,
  deps: {
    readonly client: SQSClient;
    readonly database: Database | null;
    readonly stack: AsyncDisposableStack;
    readonly stopping: () => boolean;
    /** Read when the run ends: whether it succeeded, for the metrics file. */
    readonly succeeded: () => boolean;
  },
  telemetry: Telemetry,
): Promise<Metrics | null> {
  const listen = config.command === "run" && config.listen !== null
    ? parseListenAddress(config.listen)
    : null;
  const file = config.command === "drain" ? config.metricsFile : null;
  if (listen === null && file === null) return null;
  const metrics = new (await import("../ops/metrics.ts")).Metrics(telemetry.counters);
  const { stack, client, database } = deps;
  stack.defer(telemetry.addObserver(metrics));
  if (file !== null) {
    // Written whatever the outcome, last: a failed run's counters matter most.
    stack.defer(async () => {
      try {
        await writeMetricsFile(file, metrics, deps.succeeded());
        telemetry.emit({ type: "MetricsFileWritten", path: file });
      } catch (error) {
        // Fails a run that had succeeded; a failing run keeps its own error.
        if (deps.succeeded()) throw error;
        telemetry.emit({ type: "ConfigWarned", message: formatError(error) });
      }
    });
  }
  if (listen !== null) {
    const checks: ReadinessCheck[] = [{
      name: "queue",
      check: async () => metrics.setQueueDepth(await queueDepth(client, config.queueUrl)),
    }];
    if (database !== null) {
      checks.push({
        name: "database",
        check: () =>
          database.sql`SELECT 1`.then(() => {}, (error: unknown) => {
            throw new Error(describeDbError(error));
          }),
      });
    }
    stack.defer(serveOperations(listen, { metrics, checks, stopping: deps.stopping }, telemetry));
  }
  return metrics;
}

/**
 * The sink of a run: the dry-run printer, or writes to Postgres in this
 * thread or in worker threads. Worker threads load their modules while this
 * thread readies the database (`prepare`, with its start-up retries); the
 * sink, or a worker still starting when set-up fails, is closed by `stack`.
 */
export async function openSink(
  config: ConsumeConfig,
  deps: {
    readonly keys: RunKeys;
    readonly connection: PgConnection | null;
    readonly database: Database | null;
    readonly prepare: Omit<SinkOptions, "vault">;
    readonly threads: number;
    readonly stack: AsyncDisposableStack;
    readonly writeStdout: (line: string) => void;
    /** Readies the database; awaited before the sink is handed out. */
    readonly readyDatabase: () => Promise<void>;
  },
): Promise<Sink> {
  const { keys, connection, database, prepare, threads, stack } = deps;
  let sink: Sink | null = null;
  let starting: Promise<Sink> | null = null;
  stack.defer(async () => await (sink ?? await starting?.catch(() => null))?.close());
  if (database === null || connection === null) {
    sink = localSink(keys.masker, dryRunStore(deps.writeStdout), prepare);
    return sink;
  }
  const writeTimeoutMs = config.writeTimeoutSeconds * 1000;
  // A table refusing every row: run waits with backoff for it to be fixed, drain stops.
  const systemicIsTransient = config.command === "run";
  // With a reject queue, a redelivered reject's copy is sent again: the store says which.
  const reportEarlierRejects = config.rejectQueueUrl !== null;
  starting = threads === 0 ? null : workerSinks(threads, {
    connection,
    schema: config.schema,
    stateSchema: config.stateSchema,
    poolMax: Math.ceil(config.writers / threads),
    writeTimeoutMs,
    systemicIsTransient,
    reportEarlierRejects,
    secret: keys.secret.reveal(),
    keyId: keys.masker.keyId,
    prepare,
    vault: keys.vaultKeys === null ? null : {
      current: keys.vaultKeys.current,
      keys: [...keys.vaultKeys.keys].map(([id, key]) =>
        [
          id,
          key.kind === "secret"
            ? { kind: "secret", secret: key.secret.reveal() }
            : { kind: "pair", publicKey: key.publicKey, privateKey: null },
        ] as const
      ),
    },
  });
  // Awaited below; until then a start-up failure must not surface as an unhandled rejection.
  starting?.catch(() => {});
  await deps.readyDatabase();
  sink = starting === null
    ? localSink(
      keys.masker,
      postgresStore(database, { writeTimeoutMs, systemicIsTransient, reportEarlierRejects }),
      {
        ...prepare,
        ...(keys.vault === undefined ? {} : { vault: keys.vault }),
      },
    )
    : await starting;
  return sink;
}

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
