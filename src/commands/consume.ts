/**
 * `drain` and `run`: wires the SQS queue, the Postgres store (or the dry-run
 * printer), the masker and telemetry into the pipeline, then reports.
 *
 * @module
 */

import type { SQSClient } from "@aws-sdk/client-sqs";
import type { ConsumeConfig } from "../config/resolve.ts";
import { Database, describeDbError } from "../db/pool.ts";
import { registerKey } from "../db/keys.ts";
import { prune, type PruneTarget } from "../db/ledger.ts";
import { ensureSchema } from "../db/schema.ts";
import { loadPgConnection, type PgConnection } from "../db/connection.ts";
import { ConfigError, DatabaseError } from "../errors.ts";
import { stderrStatus } from "../log.ts";
import { Masker } from "../mask.ts";
import type { Metrics } from "../ops/metrics.ts";
import { assertSeparateKeys, currentSecret, loadKeySet } from "../pii/keyring.ts";
import { VaultCipher } from "../pii/vault.ts";
import { runPipeline } from "../pipeline/pipeline.ts";
import { type Progress, startProgress } from "../ops/progress.ts";
import {
  cachedProbe,
  createHandler,
  type ListenAddress,
  parseListenAddress,
  readinessProbe,
} from "../ops/server.ts";
import { createSqsClient } from "../sqs/client.ts";
import { readQueueAttributes, sqsQueue } from "../sqs/queue.ts";
import type { Summary, Telemetry } from "../ops/telemetry.ts";
import { localSink, type Sink, workerSinks } from "../sink/sink.ts";
import { dryRunStore, postgresStore } from "../db/write.ts";

/** How often `run` prunes the ledger and the rejects. */
const PRUNE_INTERVAL_MS = 60 * 60 * 1000;
/** How often `run --listen` refreshes the queue depth gauge: a GetQueueAttributes call each. */
const DEPTH_REFRESH_MS = 15_000;
/** How long /readyz waits for the database and the queue; under the probe's 5 s timeout in deploy/. */
const READY_TIMEOUT_MS = 2000;
/** How long a /readyz answer is reused, so frequent probes and scrapes do not hammer the services. */
const READY_CACHE_MS = 2000;

/** Whether drain draws its progress line: `auto` only when stderr is a terminal. */
function wantsProgress(config: ConsumeConfig): boolean {
  if (config.command !== "drain" || config.progress === "never") return false;
  return config.progress === "always" || Deno.stderr.isTerminal();
}

function terminalColumns(): number {
  try {
    return Deno.consoleSize().columns;
  } catch {
    return 80; // not a terminal (progress forced with --progress always)
  }
}

/**
 * Serves /healthz, /readyz and /metrics on `address` until the returned
 * function is called. The only `Deno.serve` of the program.
 *
 * @throws {ConfigError} when the address cannot be bound
 */
function serveOperations(
  address: ListenAddress,
  handler: (request: Request) => Promise<Response>,
  telemetry: Telemetry,
): () => Promise<void> {
  let server: Deno.HttpServer;
  try {
    server = Deno.serve({
      hostname: address.hostname,
      port: address.port,
      // Without onListen, Deno prints "Listening on" to stdout, where --summary-json goes.
      onListen: (addr) =>
        telemetry.logger.log("info", "ListenStarted", "serving /healthz, /readyz and /metrics", {
          address: `${addr.hostname}:${addr.port}`,
        }),
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

/** Asks the queue for its depth; the ops endpoints and the progress line use it. */
function queueDepth(client: SQSClient, queueUrl: string): Promise<number> {
  return readQueueAttributes(client, queueUrl).then((a) => a.approximateMessages);
}

/** What a consume run needs besides its config. */
export interface ConsumeIo {
  readonly telemetry: Telemetry;
  /** Aborted on SIGINT/SIGTERM (run) or by the caller. */
  readonly stop: AbortSignal;
  /** Writes one line to stdout (dry-run rows). */
  readonly writeStdout: (line: string) => void;
}

/** Runs `drain` or `run` and returns the summary; throws `EtlError` on failure. */
export async function consume(config: ConsumeConfig, io: ConsumeIo): Promise<Summary> {
  const { telemetry } = io;
  const log = telemetry.logger;
  const listen = config.command === "run" && config.listen !== null
    ? parseListenAddress(config.listen)
    : null;
  const warn = (message: string) => log.log("warn", "ConfigWarned", message);
  // Every HMAC key of the set is registered; new rows use the current one.
  const hmacKeys = await loadKeySet(config.hmacKey, config.hmacKeyId, warn);
  if (hmacKeys === null) throw new ConfigError("No HMAC key: set PII_HMAC_KEY or --hmac-key-file");
  const maskers = await Promise.all(
    [...hmacKeys.keys].map(([id, key]) => Masker.create(key, id)),
  );
  const masker = maskers.find((m) => m.keyId === hmacKeys.current) as Masker;
  const secret = currentSecret(hmacKeys);
  const vaultKeys = config.dryRun
    ? null
    : await loadKeySet(config.vaultKey, config.vaultKeyId, warn);
  assertSeparateKeys(hmacKeys, vaultKeys);
  const vault = vaultKeys === null ? undefined : await VaultCipher.create(vaultKeys);
  const mode = config.command === "run" ? "run" : "drain";
  const waitSeconds = mode === "run" ? config.waitSeconds : config.idleSeconds;
  const sqs = await createSqsClient({
    queueUrl: config.queueUrl,
    region: config.region,
    protocol: config.sqsProtocol,
    awsEnv: config.awsEnv,
    waitSeconds,
    onProtocolSwitch: (reason) =>
      telemetry.emit({ type: "SqsProtocolSwitched", protocol: "query", reason }),
  });
  const { client, endpoint } = sqs;
  // Read before any connection: certificates, the password file, the socket default.
  const connection: PgConnection | null = config.dryRun ? null : await loadPgConnection(
    config.database,
    (message) => log.log("warn", "ConfigWarned", message),
  );
  let database: Database | null = null;
  let sink: Sink | null = null;
  let startingSink: Promise<Sink> | null = null;
  let pruning: ReturnType<typeof setInterval> | undefined;
  const retention: readonly [PruneTarget, number][] = [
    ["ledger", config.ledgerRetentionDays],
    ["rejects", config.rejectRetentionDays],
  ];
  let stopServing: (() => Promise<void>) | null = null;
  let refreshDepth: ReturnType<typeof setInterval> | undefined;
  let refreshing: Promise<void> | null = null;
  let progress: Progress | null = null;
  // Metrics exist only where something reads them: /metrics of `run --listen`.
  // Loaded only then: prom-client is a noticeable share of start-up time.
  const metrics: Metrics | null = listen === null
    ? null
    : new (await import("../ops/metrics.ts")).Metrics();
  const detachMetrics = metrics === null ? () => {} : telemetry.addSink(metrics);
  try {
    if (listen !== null && metrics !== null) {
      const checks = [{
        name: "queue",
        check: async () => metrics.setQueueDepth(await queueDepth(client, config.queueUrl)),
      }];
      if (!config.dryRun) {
        checks.push({
          name: "database",
          check: async () => {
            if (database === null) throw new Error("not connected yet");
            try {
              await database.sql`SELECT 1`;
            } catch (error) {
              throw new Error(describeDbError(error));
            }
          },
        });
      }
      const ready = cachedProbe(
        readinessProbe(checks, { timeoutMs: READY_TIMEOUT_MS, stopping: () => io.stop.aborted }),
        { ttlMs: READY_CACHE_MS },
      );
      const onUnready = (reason: string) =>
        log.log("warn", "NotReady", "/readyz answered 503", { reason });
      stopServing = serveOperations(
        listen,
        createHandler({ metrics, ready, onUnready }),
        telemetry,
      );
    }
    const attributes = await readQueueAttributes(client, config.queueUrl);
    metrics?.setQueueDepth(attributes.approximateMessages);
    const prepare = {
      maxBodyBytes: config.maxBodyBytes,
      // With a redrive policy SQS dead-letters repeat failures itself; without
      // one, poison messages would loop until retention ends.
      maxReceives: attributes.redrive === null ? config.maxReceives : null,
    };
    const threads = config.dryRun ? 0 : config.workerThreads;
    if (config.dryRun) {
      sink = localSink(masker, dryRunStore(io.writeStdout), prepare);
    } else {
      // In-thread writes share this pool; with worker threads it only does housekeeping.
      if (connection === null) throw new TypeError("no Postgres connection outside a dry run");
      database = new Database({
        connection,
        schema: config.schema,
        max: threads === 0 ? config.writers + 1 : 1,
      });
      const sql = database.sql;
      const writeTimeoutMs = config.writeTimeoutSeconds * 1000;
      // Worker threads load their modules while this thread sets up the tables.
      if (threads > 0) {
        startingSink = workerSinks(threads, {
          connection,
          schema: config.schema,
          poolMax: Math.ceil(config.writers / threads),
          writeTimeoutMs,
          secret: secret.reveal(),
          keyId: masker.keyId,
          prepare,
          vault: vaultKeys === null ? null : {
            current: vaultKeys.current,
            keys: [...vaultKeys.keys].map(([id, key]) => [id, key.reveal()] as const),
          },
        });
        // Awaited below; until then a start-up failure must not surface as an unhandled rejection.
        startingSink.catch(() => {});
      }
      const created = await ensureSchema(sql, { connection, schema: config.schema });
      if (created.length > 0) {
        log.log("info", "TablesCreated", "created missing tables", {
          tables: created,
          schema: config.schema,
        });
      }
      const fingerprints: [string, string][] = [
        ...maskers.map((m) => [m.keyId, m.fingerprint] as [string, string]),
        ...[...(vault?.fingerprints ?? [])].map(([id, fp]) =>
          [`vault:${id}`, fp] as [string, string]
        ),
      ];
      for (const [keyId, fingerprint] of fingerprints) {
        if (await registerKey(sql, keyId, fingerprint) === "new") {
          log.log("info", "KeyRegistered", "recorded new key id with its fingerprint", {
            key_id: keyId,
          });
        }
      }
      for (const [target, days] of retention) {
        const pruned = await prune(sql, target, days).catch((error: unknown) => {
          throw new DatabaseError(
            "db_schema",
            `Cannot prune ${target === "ledger" ? "login_etl_ledger" : "login_etl_rejects"}: ${
              describeDbError(error)
            }; grant the consumer role DELETE on it (see sql/roles.sql)`,
            { cause: error },
          );
        });
        if (pruned > 0) {
          log.log("info", "RowsPruned", `pruned old ${target}`, { target, deleted: pruned });
        }
      }
      sink = startingSink === null
        ? localSink(masker, postgresStore(database, { writeTimeoutMs }), {
          ...prepare,
          ...(vault === undefined ? {} : { vault }),
        })
        : await startingSink;
    }
    telemetry.emit({
      type: "RunStarted",
      fields: {
        command: mode,
        queue_url: config.queueUrl,
        endpoint: endpoint.endpoint ?? "aws",
        endpoint_source: endpoint.source,
        sqs_protocol: config.sqsProtocol === "auto" ? `${sqs.protocol()} (auto)` : sqs.protocol(),
        region: sqs.region.region,
        region_source: sqs.region.source,
        database: connection === null ? "none (dry run)" : connection.display,
        key_id: masker.keyId,
        vault: vault === undefined ? "off" : `on, key ${vault.currentKeyId}`,
        concurrency: config.concurrency,
        max_rows: config.maxRows,
        worker_threads: threads,
        visibility_timeout_s: attributes.visibilityTimeoutSeconds,
        queue_depth: attributes.approximateMessages,
        redrive: attributes.redrive === null
          ? "none"
          : `dead-letter after ${attributes.redrive.maxReceiveCount} receives`,
        max_receives: attributes.redrive === null
          ? config.maxReceives
          : "left to the redrive policy",
      },
    });
    // A long-running consumer prunes hourly too; a failed prune only delays the next one.
    const db = database;
    pruning = mode === "run" && db !== null
      ? setInterval(() => {
        for (const [target, days] of retention) {
          prune(db.sql, target, days).then(
            (n) =>
              n > 0 &&
              log.log("info", "RowsPruned", `pruned old ${target}`, { target, deleted: n }),
            (error) =>
              log.log("warn", "PruneFailed", `${target} prune failed`, {
                target,
                code: String(error?.code ?? "unknown"),
              }),
          );
        }
      }, PRUNE_INTERVAL_MS)
      : undefined;
    if (metrics !== null) {
      refreshDepth = setInterval(() => {
        refreshing ??= queueDepth(client, config.queueUrl).then(
          (n) => metrics.setQueueDepth(n),
          () => {}, // /readyz reports an unreachable queue; the gauge keeps its last value
        ).finally(() => (refreshing = null));
      }, DEPTH_REFRESH_MS);
    }
    if (wantsProgress(config)) {
      const counters = telemetry.counters;
      progress = startProgress({
        done: () => {
          let rejected = 0;
          for (const n of Object.values(counters.rejected)) rejected += n;
          return counters.inserted + counters.duplicates + rejected;
        },
        queueDepth: () => queueDepth(client, config.queueUrl),
        status: stderrStatus,
        columns: terminalColumns,
      });
    }
    const queue = sqsQueue(client, config.queueUrl, {
      onUndated: (now) => telemetry.emit({ type: "SentTimestampMissing", receivedAtMs: now }),
    });
    await runPipeline({ queue, sink, telemetry }, {
      mode,
      batchSize: config.batchSize,
      concurrency: config.concurrency,
      waitSeconds,
      maxRows: config.maxRows,
      maxWaitMs: config.maxWaitMs,
      writers: config.writers,
      maxRetryMs: config.maxRetrySeconds * 1000,
      visibilityTimeoutSeconds: attributes.visibilityTimeoutSeconds,
      stop: io.stop,
      dryRun: config.dryRun,
    });
    return telemetry.summary();
  } finally {
    clearInterval(pruning);
    clearInterval(refreshDepth);
    // Erased before the summary line main writes next.
    await progress?.stop();
    await refreshing;
    await stopServing?.();
    detachMetrics();
    // A worker still starting when setup failed is closed too.
    if (sink === null && startingSink !== null) sink = await startingSink.catch(() => null);
    await sink?.close();
    await database?.end();
    client.destroy();
  }
}
