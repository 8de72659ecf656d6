/**
 * `drain` and `run`: wires keys, the SQS queue, the Postgres store (or the
 * dry-run printer) and telemetry into the pipeline, then reports. Each set-up
 * step lives in `_setup.ts`; everything opened here is closed by one
 * disposal stack, in reverse order, whatever fails.
 *
 * @module
 */

import type { ConsumeConfig } from "../config/resolve.ts";
import { loadPgConnection } from "../db/connection.ts";
import { prune } from "../db/ledger.ts";
import { Database, describeDbError } from "../db/pool.ts";
import { dryRunStore, postgresStore } from "../db/write.ts";
import { stderrStatus } from "../log.ts";
import { startProgress } from "../ops/progress.ts";
import { parseListenAddress, type ReadinessCheck } from "../ops/server.ts";
import type { Summary, Telemetry } from "../ops/telemetry.ts";
import { runPipeline } from "../pipeline/pipeline.ts";
import { localSink, type Sink, workerSinks } from "../sink/sink.ts";
import { readQueueAttributes } from "../sqs/admin.ts";
import { sqsQueue } from "../sqs/queue.ts";
import { formatError, TooManyRejectsError } from "../errors.ts";
import {
  atStart,
  every,
  loadRunKeys,
  openQueue,
  prepareDatabase,
  queueDepth,
  retentionOf,
  serveOperations,
  writeMetricsFile,
} from "./_setup.ts";

/** How often `run` prunes the ledger and the rejects. */
const PRUNE_INTERVAL_MS = 60 * 60 * 1000;
/** How often `run --listen` refreshes the queue depth gauge: a GetQueueAttributes call each. */
const DEPTH_REFRESH_MS = 15_000;
/** How often `run` logs its progress. */
const RUN_PROGRESS_MS = 30_000;

/** What a consume run needs besides its config. */
export interface ConsumeIo {
  readonly telemetry: Telemetry;
  /** Aborted on SIGINT/SIGTERM (run) or by the caller. */
  readonly stop: AbortSignal;
  /** Writes one line to stdout (dry-run rows). */
  readonly writeStdout: (line: string) => void;
}

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

/** Runs `drain` or `run` and returns the summary; throws `EtlError` on failure. */
export async function consume(config: ConsumeConfig, io: ConsumeIo): Promise<Summary> {
  const { telemetry } = io;
  await using stack = new AsyncDisposableStack();
  let succeeded = false;
  const listen = config.command === "run" && config.listen !== null
    ? parseListenAddress(config.listen)
    : null;
  const keys = await loadRunKeys(config, telemetry);
  const mode = config.command;
  const waitSeconds = mode === "run" ? config.waitSeconds : config.idleSeconds;
  const sqs = await openQueue(config, waitSeconds, telemetry);
  const { client } = sqs;
  stack.defer(() => client.destroy());
  // Read before any connection: certificates, the password file, the socket default.
  const connection = config.dryRun ? null : await loadPgConnection(
    config.database,
    (message) => telemetry.emit({ type: "ConfigWarned", message }),
  );
  const threads = config.dryRun ? 0 : config.workerThreads;
  // In-thread writes share this pool; with worker threads it only does housekeeping.
  const database = connection === null ? null : stack.use(
    new Database({
      connection,
      schema: config.schema,
      max: threads === 0 ? config.writers + 1 : 1,
    }),
  );

  // Metrics exist only where something reads them: /metrics of `run --listen`,
  // or drain's --metrics-file. Loaded only then: prom-client is a noticeable
  // share of start-up time.
  const metricsFile = config.command === "drain" ? config.metricsFile : null;
  const metrics = listen === null && metricsFile === null
    ? null
    : new (await import("../ops/metrics.ts")).Metrics(telemetry.counters);
  if (metrics !== null) stack.defer(telemetry.addObserver(metrics));
  if (metricsFile !== null && metrics !== null) {
    // Written whatever the outcome, last: a failed run's counters matter most.
    stack.defer(async () => {
      try {
        await writeMetricsFile(metricsFile, metrics, succeeded);
        telemetry.emit({ type: "MetricsFileWritten", path: metricsFile });
      } catch (error) {
        // Fails a run that had succeeded; a failing run keeps its own error.
        if (succeeded) throw error;
        telemetry.emit({ type: "ConfigWarned", message: formatError(error) });
      }
    });
  }
  if (listen !== null && metrics !== null) {
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
    stack.defer(
      serveOperations(listen, { metrics, checks, stopping: () => io.stop.aborted }, telemetry),
    );
  }

  const { maxRetrySeconds } = config;
  const attributes = await atStart(
    "queue",
    () => readQueueAttributes(client, config.queueUrl),
    { maxRetrySeconds, stop: io.stop },
    telemetry,
  );
  metrics?.setQueueDepth(attributes.approximateMessages);
  const prepare = {
    maxBodyBytes: config.maxBodyBytes,
    // With a redrive policy SQS dead-letters repeat failures itself; without
    // one, poison messages would loop until retention ends.
    maxReceives: attributes.redrive === null ? config.maxReceives : null,
  };
  let sink: Sink | null = null;
  let starting: Promise<Sink> | null = null;
  // Closes the sink, or a worker still starting when set-up failed: never left running.
  stack.defer(async () => await (sink ?? await starting?.catch(() => null))?.close());
  if (database === null || connection === null) {
    sink = localSink(keys.masker, dryRunStore(io.writeStdout), prepare);
  } else {
    const writeTimeoutMs = config.writeTimeoutSeconds * 1000;
    // Worker threads load their modules while this thread readies the database.
    starting = threads === 0 ? null : workerSinks(threads, {
      connection,
      schema: config.schema,
      poolMax: Math.ceil(config.writers / threads),
      writeTimeoutMs,
      secret: keys.secret.reveal(),
      keyId: keys.masker.keyId,
      prepare,
      vault: keys.vaultKeys === null ? null : {
        current: keys.vaultKeys.current,
        keys: [...keys.vaultKeys.keys].map(([id, key]) => [id, key.reveal()] as const),
      },
    });
    // Awaited below; until then a start-up failure must not surface as an unhandled rejection.
    starting?.catch(() => {});
    await atStart(
      "database",
      () => prepareDatabase(database, { connection, config, keys }, telemetry),
      { maxRetrySeconds, stop: io.stop },
      telemetry,
    );
    sink = starting === null
      ? localSink(keys.masker, postgresStore(database, { writeTimeoutMs }), {
        ...prepare,
        ...(keys.vault === undefined ? {} : { vault: keys.vault }),
      })
      : await starting;
  }

  telemetry.emit({
    type: "RunStarted",
    fields: {
      command: mode,
      queue_url: config.queueUrl,
      endpoint: sqs.endpoint.endpoint ?? "aws",
      endpoint_source: sqs.endpoint.source,
      sqs_protocol: config.sqsProtocol === "auto" ? `${sqs.protocol()} (auto)` : sqs.protocol(),
      region: sqs.region.region,
      region_source: sqs.region.source,
      database: connection === null ? "none (dry run)" : connection.display,
      key_id: keys.masker.keyId,
      vault: keys.vault === undefined ? "off" : `on, key ${keys.vault.currentKeyId}`,
      concurrency: config.concurrency,
      max_rows: config.maxRows,
      worker_threads: threads,
      visibility_timeout_s: attributes.visibilityTimeoutSeconds,
      queue_depth: attributes.approximateMessages,
      redrive: attributes.redrive === null
        ? "none"
        : `dead-letter after ${attributes.redrive.maxReceiveCount} receives`,
      max_receives: attributes.redrive === null ? config.maxReceives : "left to the redrive policy",
    },
  });

  // A long-running consumer prunes hourly too; a failed prune only delays the next one.
  if (mode === "run" && database !== null) {
    every(PRUNE_INTERVAL_MS, async () => {
      for (const [target, days] of retentionOf(config)) {
        await prune(database.sql, target, days).then(
          (r) =>
            r.deleted + r.partitionsCreated + r.partitionsDropped > 0 &&
            telemetry.emit({ type: "RowsPruned", target, ...r }),
          (error) =>
            telemetry.emit({ type: "PruneFailed", target, code: String(error?.code ?? "unknown") }),
        );
      }
    }, stack);
  }
  if (metrics !== null) {
    // /readyz reports an unreachable queue; the gauge keeps its last value.
    every(DEPTH_REFRESH_MS, async () => {
      metrics.setQueueDepth(await queueDepth(client, config.queueUrl));
    }, stack);
  }
  if (mode === "run" || (config.progressSeconds > 0 && !wantsProgress(config))) {
    // Off a terminal (a scheduled job, a container) progress is a log event.
    const ms = mode === "run" ? RUN_PROGRESS_MS : config.progressSeconds * 1000;
    every(ms, async () => {
      const depth = await queueDepth(client, config.queueUrl).catch(() => undefined);
      telemetry.emit({
        type: "ProgressReported",
        summary: telemetry.summary(),
        ...(depth === undefined ? {} : { queueDepth: depth }),
      });
    }, stack);
  }
  // drain finishes the queue and then fails; run stops as on SIGTERM.
  const rejectLimit = config.maxRejects;
  const overLimit = new AbortController();
  if (rejectLimit !== null && mode === "run") {
    every(1000, () => {
      const { rejected } = telemetry.summary();
      if (rejected > rejectLimit && !overLimit.signal.aborted) {
        telemetry.emit({ type: "RejectLimitExceeded", rejected, limit: rejectLimit });
        overLimit.abort();
      }
      return Promise.resolve();
    }, stack);
  }
  if (wantsProgress(config)) {
    const progress = startProgress({
      done: () => {
        const s = telemetry.summary();
        return s.inserted + s.redelivered + s.rejected;
      },
      queueDepth: () => queueDepth(client, config.queueUrl),
      status: stderrStatus,
      columns: terminalColumns,
    });
    // Erased before the summary line main writes next.
    stack.defer(() => progress.stop());
  }

  const queue = sqsQueue(client, config.queueUrl, {
    onUndated: (now) => telemetry.emit({ type: "SentTimestampMissing", receivedAtMs: now }),
  });
  await runPipeline({ queue, sink: sink as Sink, telemetry }, {
    mode,
    batchSize: config.batchSize,
    concurrency: config.concurrency,
    waitSeconds,
    maxRows: config.maxRows,
    maxWaitMs: config.maxWaitMs,
    writers: config.writers,
    maxRetryMs: config.maxRetrySeconds * 1000,
    visibilityTimeoutSeconds: attributes.visibilityTimeoutSeconds,
    stop: AbortSignal.any([io.stop, overLimit.signal]),
    dryRun: config.dryRun,
  });
  const summary = telemetry.summary();
  if (rejectLimit !== null && summary.rejected > rejectLimit) {
    if (!overLimit.signal.aborted) {
      telemetry.emit({
        type: "RejectLimitExceeded",
        rejected: summary.rejected,
        limit: rejectLimit,
      });
    }
    throw new TooManyRejectsError(summary.rejected, rejectLimit);
  }
  succeeded = true;
  return summary;
}
