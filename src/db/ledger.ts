/**
 * Age-based upkeep of login-etl's bookkeeping: the ledger of committed
 * MessageIds (day partitions created ahead and dropped once past retention)
 * and the rejects, each kept its retention period; pruned at a run's start
 * (`pruneAll`) and, by `run`, every hour.
 *
 * @module
 */

import { DatabaseError } from "../errors.ts";
import type { Telemetry } from "../ops/telemetry.ts";
import {
  type Deployment,
  describeDbError,
  isPermissionDenied,
  isTransientDbError,
} from "./pool.ts";
import { LEDGER_PARTITIONS_PER_CALL } from "./migrations.ts";

/** What `prune` ages out: ledger entries (redelivery protection) or rejects. */
export type PruneTarget = "ledger" | "rejects";

/** Rows deleted per statement, so that no lock is held long. */
const SLICE = 10_000;

/** What one `prune` did: rows deleted, and for the ledger, day partitions created and dropped. */
export interface PruneResult {
  readonly deleted: number;
  readonly partitionsCreated: number;
  readonly partitionsDropped: number;
}

/**
 * Ages out rows of `target` older than `days`. For the ledger this also
 * creates the day partitions the next writes need: its SECURITY DEFINER
 * function does the DDL, so the consumer needs no rights beyond EXECUTE.
 */
export async function prune(
  db: Deployment,
  options: { readonly target: PruneTarget; readonly days: number },
): Promise<PruneResult> {
  const { target, days } = options;
  const sql = db.sql;
  const state = sql(db.schemas.stateSchema);
  let deleted = 0;
  let partitionsCreated = 0;
  let partitionsDropped = 0;
  for (;;) {
    let count: number;
    let more = false;
    if (target === "ledger") {
      // Each call creates and drops at most LEDGER_PARTITIONS_PER_CALL day
      // partitions (its locks last until it returns): called again while it
      // did as many.
      const [r] = await sql<{ created: number; dropped: number; deleted: number }[]>`
        SELECT * FROM ${state}.login_etl_ledger_maintain(${days}, ${SLICE})`;
      partitionsCreated += r?.created ?? 0;
      partitionsDropped += r?.dropped ?? 0;
      count = r?.deleted ?? 0;
      more = r?.created === LEDGER_PARTITIONS_PER_CALL || r?.dropped === LEDGER_PARTITIONS_PER_CALL;
    } else {
      // By primary key, not ctid: the consumer may read only some columns of
      // the rejects (sql/roles.sql), and system columns need the whole table.
      count = (await sql`
        DELETE FROM ${state}.login_etl_rejects WHERE message_id IN (
          SELECT message_id FROM ${state}.login_etl_rejects
          WHERE rejected_at < pg_catalog.now() - pg_catalog.make_interval(days => ${days})
          LIMIT ${SLICE})`).count;
    }
    deleted += count;
    if (count < SLICE && !more) return { deleted, partitionsCreated, partitionsDropped };
  }
}

/** How long each of login-etl's own tables keeps its rows, in days, as configured. */
export function retentionOf(
  config: { readonly ledgerRetentionDays: number; readonly rejectRetentionDays: number },
): readonly [PruneTarget, number][] {
  return [["ledger", config.ledgerRetentionDays], ["rejects", config.rejectRetentionDays]];
}

/**
 * Prunes each table to its retention, logging what went.
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
      const cannot = `Cannot prune ${state}.${
        target === "ledger" ? "login_etl_ledger" : "login_etl_rejects"
      }: ${describeDbError(error)}`;
      // Only a refused privilege is fixed by a grant; anything else (an
      // outage, a deadlock) would be misnamed by the hint. A transient one
      // makes start-up retry, as other database failures at start do.
      const refused = isPermissionDenied(error);
      throw new DatabaseError(
        "db_schema",
        refused
          ? `${cannot}; grant the consumer role ${
            target === "ledger"
              ? `EXECUTE on ${state}.login_etl_ledger_maintain(integer, integer)`
              : `DELETE on ${state}.login_etl_rejects`
          } and USAGE on schema ${state} (see sql/roles.sql)`
          : cannot,
        { cause: error, transient: isTransientDbError(error) },
      );
    });
    if (result.deleted + result.partitionsCreated + result.partitionsDropped > 0) {
      telemetry.emit({ type: "RowsPruned", target, ...result });
    }
  }
}
