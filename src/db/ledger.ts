/**
 * Age-based upkeep of login-etl's bookkeeping: the ledger of committed
 * MessageIds (day partitions created ahead and dropped once past retention)
 * and the rejects, each kept its retention period.
 *
 * @module
 */

import type { Deployment } from "./pool.ts";
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
