/**
 * The audit trail of PII access: who, when, which mask, why, and what came
 * of it. Rows are appended before any raw value is printed; grants make the
 * table append-only for everyone but its owner (sql/roles.sql).
 *
 * @module
 */

import type { Sql } from "../db.ts";
import { DatabaseError } from "../errors.ts";
import { describeDbError, pgArray } from "../db.ts";

/** What was attempted. */
export type AuditAction = "recover" | "forget" | "rekey" | "rekey-vault";

/** What came of it. */
export type AuditOutcome = "success" | "denied" | "not_found" | "failed";

/** One audit entry to append. */
export interface AuditEntry {
  readonly actor: string;
  readonly action: AuditAction;
  readonly maskedValue: string | null;
  readonly reason: string | null;
  readonly outcome: AuditOutcome;
  readonly detail: string | null;
}

/** An audit row as listed by `recover --audit`. */
export interface AuditRow {
  readonly id: string;
  readonly at: string;
  readonly actor: string;
  readonly "db_user": string;
  readonly action: string;
  readonly "masked_value": string | null;
  readonly reason: string | null;
  readonly outcome: string;
  readonly detail: string | null;
}

/** The person acting: `--actor`, else the OS user from the environment. */
export function actorOf(configured: string | null): string {
  if (configured !== null) return configured;
  for (const name of ["USER", "USERNAME", "LOGNAME"]) {
    try {
      const value = Deno.env.get(name);
      if (value !== undefined && value !== "") return value;
    } catch { /* not permitted to read it: try the next */ }
  }
  return "unknown";
}

/**
 * Appends entries in one statement, or within `sql` when it is a transaction.
 *
 * @throws {DatabaseError} code `db_write` when the trail cannot be written; callers then reveal nothing
 */
export async function appendAudit(sql: Sql, entries: readonly AuditEntry[]): Promise<void> {
  if (entries.length === 0) return;
  try {
    await sql`
      INSERT INTO login_etl_audit (actor, action, masked_value, reason, outcome, detail)
      SELECT * FROM unnest(
        ${pgArray(entries.map((e) => e.actor))}::text[], ${
      pgArray(entries.map((e) => e.action))
    }::text[],
        ${pgArray(entries.map((e) => e.maskedValue))}::text[], ${
      pgArray(entries.map((e) => e.reason))
    }::text[],
        ${pgArray(entries.map((e) => e.outcome))}::text[], ${
      pgArray(entries.map((e) => e.detail))
    }::text[])`;
  } catch (error) {
    throw new DatabaseError(
      "db_write",
      `Cannot write the audit trail (login_etl_audit): ${
        describeDbError(error)
      }; nothing was revealed or changed`,
      { cause: error },
    );
  }
}

/** The most recent audit rows, newest first. */
export async function listAudit(sql: Sql, limit: number): Promise<AuditRow[]> {
  try {
    return await sql<AuditRow[]>`
      SELECT id::text, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS at, actor, db_user,
             action, masked_value, reason, outcome, detail
      FROM login_etl_audit ORDER BY id DESC LIMIT ${limit}`;
  } catch (error) {
    throw new DatabaseError("db_write", `Cannot read the audit trail: ${describeDbError(error)}`, {
      cause: error,
    });
  }
}
