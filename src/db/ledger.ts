/**
 * Age-based pruning of login-etl's bookkeeping: the ledger of committed
 * MessageIds and the rejects, each kept its retention period.
 *
 * @module
 */

import type { Sql } from "./pool.ts";

/** What `prune` deletes: ledger entries (redelivery protection) or rejects, by age. */
export type PruneTarget = "ledger" | "rejects";

const PRUNED: Readonly<Record<PruneTarget, { table: string; column: string }>> = {
  ledger: { table: "login_etl_ledger", column: "committed_at" },
  rejects: { table: "login_etl_rejects", column: "rejected_at" },
};

/** Deletes rows of `target` older than `days`, in slices so no lock is held long. */
export async function prune(sql: Sql, target: PruneTarget, days: number): Promise<number> {
  const { table, column } = PRUNED[target];
  let total = 0;
  for (;;) {
    // By primary key, not ctid: the consumer may read only some columns of
    // the rejects (sql/roles.sql), and system columns need the whole table.
    const result = await sql`
      DELETE FROM ${sql(table)} WHERE message_id IN (
        SELECT message_id FROM ${sql(table)}
        WHERE ${sql(column)} < now() - make_interval(days => ${days})
        LIMIT 10000)`;
    total += result.count;
    if (result.count < 10000) return total;
  }
}
