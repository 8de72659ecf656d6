/**
 * Erasure of the raw values behind masks through `login_etl_forget`: each
 * vault entry becomes a tombstone, audited in the same transaction.
 *
 * @module
 */

import { type Deployment, describeDbError, pgArray } from "../db/pool.ts";
import { DatabaseError, UsageError } from "../errors.ts";
import { isPermissionDenied, type PiiRequest, refuse } from "./recover.ts";

/** The outcome of erasing one mask. */
export interface Erasure {
  readonly masked: string;
  readonly outcome: "success" | "not_found";
}

/**
 * Erases the vault entries behind `masks` through `login_etl_forget`: each
 * becomes a tombstone (kept even for a mask never vaulted, so it never will
 * be), audited in the same transaction. The masks in `user_logins` stay as
 * opaque tokens.
 *
 * @throws {UsageError} without a reason; {DatabaseError} when the role may not erase
 */
export async function forget(
  db: Deployment,
  masks: readonly string[],
  request: PiiRequest,
): Promise<Erasure[]> {
  if (request.reason === null) {
    await refuse(
      db,
      "forget",
      masks,
      request,
      new UsageError(
        "Refused: forget needs --reason TEXT saying why (it is kept in the audit trail)",
      ),
    );
  }
  try {
    const sql = db.sql;
    const rows = await sql<{ masked_value: string; outcome: Erasure["outcome"] }[]>`
      SELECT masked_value, outcome
      FROM ${sql(db.schemas.stateSchema)}.login_etl_forget(${
      pgArray(masks)
    }::text[], ${request.actor}, ${request.reason})`;
    const byMask = new Map(rows.map((r) => [r.masked_value, r.outcome]));
    return masks.map((masked) => ({ masked, outcome: byMask.get(masked) ?? "not_found" }));
  } catch (error) {
    return await refuse(
      db,
      "forget",
      masks,
      request,
      new DatabaseError(
        "db_write",
        isPermissionDenied(error)
          ? "Refused: this database role may not erase vault entries; erasure needs a role granted pii_recoverer (sql/roles.sql)"
          : `Cannot erase: ${describeDbError(error)}`,
        { cause: error },
      ),
    );
  }
}
