/**
 * The run of `drain` and `run` (and of `demo`'s drain): wires keys, the SQS
 * queue, the Postgres store (or the dry-run printer) and telemetry into the
 * pipeline, and returns the summary. Each set-up step lives in `_setup.ts`;
 * everything opened here is closed by one disposal stack, in reverse order,
 * whatever fails.
 *
 * @module
 */

import type { ConsumeConfig } from "../config/resolve.ts";
import { loadPgConnection } from "../db/connection.ts";
import { Database } from "../db/pool.ts";
import { TooManyRejectsError } from "../errors.ts";
import type { Summary } from "../ops/telemetry.ts";
import { runPipeline } from "../pipeline/pipeline.ts";
import { atStart } from "../pipeline/retry.ts";
import { workerThreadsFor } from "../sink/threads.ts";
import { readQueueAttributes } from "../sqs/admin.ts";
import { openQueue } from "../sqs/client.ts";
import { sqsQueue } from "../sqs/queue.ts";
import { startPeriodic } from "./_periodic.ts";
import { loadRunKeys, openOperations, openSink, prepareDatabase, queueOptions } from "./_setup.ts";
import { runStartedFields } from "./_start_line.ts";
import type { CommandIo } from "./_io.ts";

/**
 * Runs `drain` or `run` and returns the summary; throws `EtlError` on
 * failure. Reads as the order of a start: keys, queue, database, metrics,
 * the queue's attributes (retried while unreachable), the sink (the
 * database readied, also retried), the timers, then the pipeline.
 */
export async function consume(config: ConsumeConfig, io: CommandIo): Promise<Summary> {
  const { telemetry } = io;
  await using stack = new AsyncDisposableStack();
  let succeeded = false;
  const keys = await loadRunKeys(config, telemetry);
  const mode = config.command;
  const waitSeconds = mode === "run" ? config.waitSeconds : config.idleSeconds;
  const sqs = await openQueue(queueOptions(config, waitSeconds), telemetry);
  const { client } = sqs;
  stack.defer(() => client.destroy());
  // Read before any connection: certificates, the password file, the socket default.
  const connection = config.dryRun ? null : await loadPgConnection(
    config.database,
    (message) => telemetry.emit({ type: "ConfigWarned", message }),
  );
  const threads = config.dryRun
    ? 0
    : workerThreadsFor(config.workerThreads, navigator.hardwareConcurrency);
  // In-thread writes share this pool; with worker threads it only does housekeeping.
  const database = connection === null ? null : stack.use(
    new Database({
      connection,
      schema: config.schema,
      stateSchema: config.stateSchema,
      max: threads === 0 ? config.writers + 1 : 1,
    }),
  );
  const metrics = await openOperations(config, {
    client,
    database,
    stack,
    stopping: () => io.stop.aborted,
    succeeded: () => succeeded,
  }, telemetry);

  const retry = { maxRetrySeconds: config.maxRetrySeconds, stop: io.stop };
  const attributes = await atStart(
    "queue",
    () => readQueueAttributes(client, config.queueUrl),
    retry,
    telemetry,
  );
  metrics?.setQueueDepth(attributes.approximateMessages);
  const rejectQueueUrl = config.rejectQueueUrl;
  if (rejectQueueUrl !== null) {
    // Its copies are sent before deletes: a missing reject queue must stop the run now.
    await atStart("queue", () => readQueueAttributes(client, rejectQueueUrl), retry, telemetry);
  }
  const sink = await openSink(config, {
    keys,
    connection,
    database,
    threads,
    stack,
    writeStdout: io.writeStdout,
    prepare: {
      maxBodyBytes: config.maxBodyBytes,
      // With a redrive policy SQS dead-letters repeat failures itself; without
      // one, poison messages would loop until retention ends.
      maxReceives: attributes.redrive === null ? config.maxReceives : null,
    },
    readyDatabase: () =>
      database === null || connection === null ? Promise.resolve() : atStart(
        "database",
        () => prepareDatabase(database, { connection, config, keys }, telemetry),
        retry,
        telemetry,
      ),
  });

  telemetry.emit({
    type: "RunStarted",
    fields: runStartedFields(config, { sqs, connection, keys, threads, attributes }),
  });

  const overLimit = startPeriodic(config, { client, database, metrics, telemetry, stack });
  const queue = sqsQueue(client, config.queueUrl, {
    onUndated: (now) => telemetry.emit({ type: "SentTimestampMissing", receivedAtMs: now }),
    rejectQueueUrl,
  });
  await runPipeline({ queue, sink, telemetry }, {
    mode,
    batchSize: config.batchSize,
    concurrency: config.concurrency,
    cpus: navigator.hardwareConcurrency,
    waitSeconds,
    maxRows: config.maxRows,
    maxWaitMs: config.maxWaitMs,
    writers: config.writers,
    maxRetryMs: config.maxRetrySeconds * 1000,
    visibilityTimeoutSeconds: attributes.visibilityTimeoutSeconds,
    stop: AbortSignal.any([io.stop, overLimit]),
    dryRun: config.dryRun,
    maxMessages: config.maxMessages,
    maxDurationMs: config.maxDurationSeconds === null ? null : config.maxDurationSeconds * 1000,
  });
  // drain finished the queue before failing on its rejects; run stopped as on SIGTERM.
  const summary = telemetry.summary();
  const limit = config.maxRejects;
  if (limit !== null && summary.rejected > limit) {
    if (!overLimit.aborted) {
      telemetry.emit({ type: "RejectLimitExceeded", rejected: summary.rejected, limit });
    }
    throw new TooManyRejectsError(
      summary.rejected,
      limit,
      `${config.stateSchema}.login_etl_rejects`,
    );
  }
  succeeded = true;
  return summary;
}
