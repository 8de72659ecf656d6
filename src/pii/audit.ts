/**
 * The audit trail of PII access: who, when, which mask, why, and what came
 * of it. Recover and forget write it inside their database functions, in the
 * transaction that releases or erases; the client adds only refusals it
 * decides itself (`noteRefusal`), and rekey writes as the owner. Nobody else
 * has any privilege on the table (sql/roles.sql).
 *
 * @module
 */

import { type Deployment, describeDbError, isPermissionDenied, pgArray } from "../db/pool.ts";
import { DatabaseError } from "../errors.ts";
import { AUDIT_NOTE_MAX_MASKS, AUDIT_TEXT_MAX_CHARS } from "../db/migrations.ts";

/** What was attempted. */
export type AuditAction = "recover" | "forget" | "rekey" | "rekey-vault" | "merge";

/**
 * What came of it: `released` (the ciphertext left the database), `success`
 * (erased, rotated, merged), `erased` (recovery refused: forgotten), `not_found`,
 * `denied` (refused before any lookup), `failed` (refused after: the entry
 * did not decrypt, or did not mask back to its mask), `dropped` (a merge's
 * claim deleted inbox entries unread: past the cap per mask and login, or
 * not of a vault entry's shape).
 */
export type AuditOutcome =
  | "released"
  | "success"
  | "erased"
  | "denied"
  | "not_found"
  | "failed"
  | "dropped";

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
 * Appends entries by a direct insert, as the table's owner does (rekey and
 * rekey-vault); within `sql` when it is a transaction.
 *
 * @throws {DatabaseError} code `db_write` when the trail cannot be written; callers then change nothing
 */
export async function appendAudit(db: Deployment, entries: readonly AuditEntry[]): Promise<void> {
  if (entries.length === 0) return;
  const sql = db.sql;
  try {
    await sql`
      INSERT INTO ${
      sql(db.schemas.stateSchema)
    }.login_etl_audit (actor, action, masked_value, reason, outcome, detail)
      SELECT * FROM ROWS FROM (
        pg_catalog.unnest(${pgArray(entries.map((e) => e.actor))}::text[]),
        pg_catalog.unnest(${pgArray(entries.map((e) => e.action))}::text[]),
        pg_catalog.unnest(${pgArray(entries.map((e) => e.maskedValue))}::text[]),
        pg_catalog.unnest(${pgArray(entries.map((e) => e.reason))}::text[]),
        pg_catalog.unnest(${pgArray(entries.map((e) => e.outcome))}::text[]),
        pg_catalog.unnest(${pgArray(entries.map((e) => e.detail))}::text[]))`;
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

/**
 * Records a refusal the client decided (no reason, no key, an entry that did
 * not verify) through `login_etl_audit_note`, which takes only `denied` and
 * `failed`, and only well-formed masks (`requestedMasks` checks them first),
 * under the caller's own login.
 *
 * @throws {DatabaseError} code `db_write` when even the refusal cannot be recorded
 */
export async function noteRefusal(
  db: Deployment,
  entry: {
    readonly action: "recover" | "forget";
    readonly masks: readonly string[];
    readonly actor: string;
    readonly reason: string | null;
    readonly outcome: "denied" | "failed";
    readonly detail: string;
  },
): Promise<void> {
  const sql = db.sql;
  try {
    // The function takes at most AUDIT_NOTE_MAX_MASKS a call, at least one,
    // and a detail of at most AUDIT_TEXT_MAX_CHARS (ours: an error's message).
    const detail = entry.detail.length > AUDIT_TEXT_MAX_CHARS
      ? `${entry.detail.slice(0, AUDIT_TEXT_MAX_CHARS - 3)}...`
      : entry.detail;
    for (let i = 0; i < entry.masks.length; i += AUDIT_NOTE_MAX_MASKS) {
      const slice = entry.masks.slice(i, i + AUDIT_NOTE_MAX_MASKS);
      await sql`SELECT ${sql(db.schemas.stateSchema)}.login_etl_audit_note(${entry.action}, ${
        pgArray(slice)
      }::text[],
        ${entry.actor}, ${entry.reason}, ${entry.outcome}, ${detail})`;
    }
  } catch (error) {
    throw new DatabaseError(
      "db_write",
      `Cannot record the refusal in the audit trail: ${
        describeDbError(error)
      }; nothing was revealed or changed`,
      { cause: error },
    );
  }
}

/** Every audit row after `afterId`, oldest first, through `login_etl_audit_list`, a page at a time. */
export async function* listAudit(db: Deployment, afterId = "0"): AsyncGenerator<AuditRow> {
  const sql = db.sql;
  let after = afterId;
  for (;;) {
    let page: AuditRow[];
    try {
      page = await sql<AuditRow[]>`
        SELECT id::text, pg_catalog.to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS at, actor,
               db_user, action, masked_value, reason, outcome, detail
        FROM ${sql(db.schemas.stateSchema)}.login_etl_audit_list(${after}::bigint, 10000)`;
    } catch (error) {
      throw new DatabaseError(
        "db_write",
        `Cannot read the audit trail: ${describeDbError(error)}${
          isPermissionDenied(error)
            ? "; reading it needs a role granted pii_recoverer (sql/roles.sql)"
            : ""
        }`,
        { cause: error },
      );
    }
    yield* page;
    if (page.length < 10000) return;
    after = page[page.length - 1]?.id ?? after;
  }
}
