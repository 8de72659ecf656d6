/**
 * Retiring an old HMAC key after a rotation: the rules for when nothing
 * under it can still be moved and no erasure still depends on it, and the
 * forgetting of its recorded moves once so.
 *
 * @module
 */

import { type Deployment, describeDbError, type Sql } from "../db/pool.ts";
import { DatabaseError, UsageError } from "../errors.ts";
import { appendAudit } from "./audit.ts";

/**
 * Retires HMAC key `keyId`: records it retired (merges, recoveries and
 * erasures by value stop requiring it) and forgets the recorded moves from
 * and to its masks, once nothing under it can still be moved (no live
 * vault entry, no inbox entry, no row whose mask has a recorded move) and
 * no erasure depends on it: every tombstone under it must be linked to a
 * tombstone under a key not retired. A value erased only by its mask under
 * `keyId` (before a rekey could move it) is recognised only by computing
 * that mask, so the key stays in the key sets that verify (see docs/pii.md).
 * After it, old masks in rejects and exports no longer lead to the new
 * ones (destroy the key then too).
 *
 * @throws {UsageError} while something is still under the key, or an erasure needs it
 */
export async function retireKey(
  db: Deployment,
  keyId: string,
  options: { readonly actor: string; readonly reason: string | null },
): Promise<{ readonly links: number }> {
  const prefix = `${keyId}:`;
  const data = db.sql(db.schemas.schema);
  const state = db.sql(db.schemas.stateSchema);
  let left: { live: number; inbox: number; rows: number; erased: number } | undefined;
  let links = 0;
  try {
    await db.sql.begin(async (tx) => {
      [left] = await tx<{ live: number; inbox: number; rows: number; erased: number }[]>`
        SELECT (SELECT pg_catalog.count(*) FROM ${state}.login_etl_vault
                WHERE pg_catalog.left(masked_value, ${prefix.length}) = ${prefix} AND erased_at IS NULL)::int AS live,
               (SELECT pg_catalog.count(*) FROM ${state}.login_etl_vault_inbox
                WHERE pg_catalog.left(masked_value, ${prefix.length}) = ${prefix})::int AS inbox,
               (SELECT pg_catalog.count(*) FROM ${data}.user_logins u
                WHERE EXISTS (SELECT FROM ${state}.login_etl_vault_links l
                              WHERE l.mask IN (u.masked_ip, u.masked_device_id)
                                 OR l.other IN (u.masked_ip, u.masked_device_id))
                  AND (pg_catalog.left(u.masked_ip, ${prefix.length}) = ${prefix}
                       OR pg_catalog.left(u.masked_device_id, ${prefix.length}) = ${prefix}))::int AS rows,
               (SELECT pg_catalog.count(*) FROM ${state}.login_etl_vault v
                WHERE pg_catalog.left(v.masked_value, ${prefix.length}) = ${prefix} AND v.erased_at IS NOT NULL
                  AND NOT EXISTS (
                    SELECT FROM ${state}.login_etl_vault_links l
                    JOIN ${state}.login_etl_vault s
                      ON s.masked_value = CASE WHEN l.mask = v.masked_value THEN l.other ELSE l.mask END
                    WHERE (l.mask = v.masked_value OR l.other = v.masked_value)
                      AND s.erased_at IS NOT NULL
                      AND pg_catalog.left(s.masked_value, ${prefix.length}) <> ${prefix}
                      AND NOT EXISTS (SELECT FROM ${state}.login_etl_key_retirements r
                                      WHERE r.key_id = pg_catalog.split_part(s.masked_value, ':', 1))))::int AS erased`;
      if (left === undefined || left.live + left.inbox + left.rows + left.erased > 0) return;
      await tx`
        INSERT INTO ${state}.login_etl_key_retirements (key_id) VALUES (${keyId})
        ON CONFLICT (key_id) DO NOTHING`;
      links = (await tx`
        DELETE FROM ${state}.login_etl_vault_links
        WHERE pg_catalog.left(mask, ${prefix.length}) = ${prefix} OR pg_catalog.left(other, ${prefix.length}) = ${prefix}`)
        .count;
      await appendAudit({ sql: tx as unknown as Sql, schemas: db.schemas }, [{
        actor: options.actor,
        action: "rekey",
        maskedValue: null,
        reason: options.reason,
        outcome: "success",
        detail: `HMAC key ${keyId} retired: ${links} links to its masks forgotten`,
      }]);
    });
  } catch (error) {
    if (error instanceof DatabaseError) throw error;
    throw new DatabaseError(
      "db_write",
      `Cannot retire HMAC key ${keyId}: ${describeDbError(error)}`,
      { cause: error },
    );
  }
  if (left !== undefined && left.live + left.inbox + left.rows > 0) {
    throw new UsageError(
      `Cannot retire HMAC key ${keyId}: ${left.live} live vault entries, ${left.inbox} inbox entries and ${left.rows} rows are still under it; run vault-merge, then rekey --to the current key, then retire`,
    );
  }
  if (left !== undefined && left.erased > 0) {
    throw new UsageError(
      `Cannot retire HMAC key ${keyId}: ${left.erased} erased values are known only by their ${keyId} masks (erased before a rekey could move them), and only ${keyId} recognises them if they come back; keep ${keyId} in the HMAC key set of vault-merge, recover and forget, beside the current key (it then only verifies), and do not destroy it`,
    );
  }
  return { links };
}
