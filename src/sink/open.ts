/**
 * The sink of a consumer's run, opened: the dry-run printer, or writes to
 * Postgres in this thread or in worker threads, with worker threads loading
 * their modules while the database is readied.
 *
 * @module
 */

import type { PgConnection } from "../db/connection.ts";
import type { Database } from "../db/pool.ts";
import { postgresStore } from "../db/write.ts";
import type { Masker } from "../mask.ts";
import type { Sink } from "../types.ts";
import { dryRunStore } from "./dry_run.ts";
import { localSink, type SinkOptions } from "./sink.ts";
import { type WorkerInit, workerSinks } from "./threads.ts";

/** The keys a sink masks and vaults with. */
export interface SinkKeys {
  readonly masker: Masker;
  /** The vault cipher of an in-thread sink, when the vault is on. */
  readonly vault: SinkOptions["vault"];
  /** The same keys as plain data for worker threads; called only when they start. */
  readonly forWorkers: () => Pick<WorkerInit, "secret" | "keyId" | "vault">;
}

/** How the sink writes. */
export interface StartSinkOptions {
  /** Where the rows go; null in a dry run, which prints them instead. */
  readonly database: { readonly pool: Database; readonly connection: PgConnection } | null;
  readonly keys: SinkKeys;
  readonly prepare: Omit<SinkOptions, "vault">;
  /** Worker threads; 0 writes in this thread, through `database.pool`. */
  readonly threads: number;
  /** Transactions in flight at once, shared among the threads. */
  readonly writers: number;
  readonly writeTimeoutMs: number;
  /** Retry a table that refuses every row (run waits for a fix), rather than fail (drain). */
  readonly systemicIsTransient: boolean;
  /** Report rejects an earlier delivery recorded, so their copies are sent again (--reject-queue-url). */
  readonly reportEarlierRejects: boolean;
}

/**
 * Opens the sink. Worker threads load their modules while this thread
 * readies the database (`readyDatabase`, awaited before the sink is handed
 * out); the sink, or a worker still starting when that fails, is closed by
 * `stack`.
 */
export async function startSink(
  options: StartSinkOptions,
  deps: {
    readonly stack: AsyncDisposableStack;
    /** Writes one line to stdout: a dry run's rows. */
    readonly writeStdout: (line: string) => void;
    readonly readyDatabase: () => Promise<void>;
  },
): Promise<Sink> {
  const { database, keys, prepare, threads } = options;
  const { stack } = deps;
  let sink: Sink | null = null;
  let starting: Promise<Sink> | null = null;
  stack.defer(async () => await (sink ?? await starting?.catch(() => null))?.close());
  if (database === null) {
    sink = localSink(keys.masker, dryRunStore(deps.writeStdout), prepare);
    return sink;
  }
  const { writeTimeoutMs, systemicIsTransient, reportEarlierRejects } = options;
  starting = threads === 0 ? null : workerSinks(threads, {
    connection: database.connection,
    schema: database.pool.schemas.schema,
    stateSchema: database.pool.schemas.stateSchema,
    poolMax: Math.ceil(options.writers / threads),
    writeTimeoutMs,
    systemicIsTransient,
    reportEarlierRejects,
    prepare,
    ...keys.forWorkers(),
  });
  // Awaited below; until then a start-up failure must not surface as an unhandled rejection.
  starting?.catch(() => {});
  await deps.readyDatabase();
  sink = starting === null
    ? localSink(
      keys.masker,
      postgresStore(database.pool, { writeTimeoutMs, systemicIsTransient, reportEarlierRejects }),
      { ...prepare, ...(keys.vault === undefined ? {} : { vault: keys.vault }) },
    )
    : await starting;
  return sink;
}
