/**
 * Recovery and erasure of raw values behind masks. Every attempt, allowed or
 * refused, is audited before anything is revealed; erasure deletes the vault
 * entry (crypto-shredding) in the same transaction as its audit row.
 *
 * @module
 */

import { describeDbError, pgArray, type Sql } from "../db.ts";
import { ConfigError, DatabaseError, EtlError, UsageError } from "../errors.ts";
import { appendAudit, type AuditAction, type AuditEntry } from "./audit.ts";
import {
  fromStored,
  type StoredVaultRow,
  type VaultCipher,
  type VaultField,
  VaultIntegrityError,
} from "./vault.ts";

/** Who asks, and why. */
export interface Request {
  readonly actor: string;
  readonly reason: string | null;
}

/** The outcome for one mask. */
export type Recovery =
  | {
    readonly masked: string;
    readonly outcome: "success";
    readonly field: VaultField;
    readonly raw: string;
  }
  | { readonly masked: string; readonly outcome: "not_found" | "failed"; readonly detail: string };

/** A refusal, audited for each mask, then thrown. */
async function refuse(
  sql: Sql,
  action: AuditAction,
  masks: readonly string[],
  request: Request,
  error: EtlError,
): Promise<never> {
  await appendAudit(
    sql,
    masks.map((m) => ({
      actor: request.actor,
      action,
      maskedValue: m,
      reason: request.reason,
      outcome: "denied" as const,
      detail: error.message,
    })),
  );
  throw error;
}

function isPermissionDenied(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === "42501";
}

/**
 * Recovers the raw values behind `masks`. Needs a reason and the vault key;
 * refusals are audited. Results are audited before they are returned.
 *
 * @throws {UsageError} without a reason; {ConfigError} without a vault key;
 *   {DatabaseError} when the role may not read the vault or the audit trail cannot be written
 */
export async function recover(
  sql: Sql,
  cipher: VaultCipher | null,
  masks: readonly string[],
  request: Request,
): Promise<Recovery[]> {
  if (request.reason === null) {
    await refuse(
      sql,
      "recover",
      masks,
      request,
      new UsageError(
        "Refused: recover needs --reason TEXT saying why (it is kept in the audit trail)",
      ),
    );
  }
  if (cipher === null) {
    await refuse(
      sql,
      "recover",
      masks,
      request,
      new ConfigError("Refused: recover needs the vault key (PII_VAULT_KEY or --vault-key-file)"),
    );
  }
  let rows: StoredVaultRow[];
  try {
    rows = await sql`
      SELECT masked_value, field, ciphertext, iv, key_id FROM login_etl_vault
      WHERE masked_value = ANY(${pgArray(masks)}::text[])`;
  } catch (error) {
    const denied = isPermissionDenied(error);
    return await refuse(
      sql,
      "recover",
      masks,
      request,
      new DatabaseError(
        "db_write",
        denied
          ? "Refused: this database role may not read login_etl_vault; recovery needs a role granted pii_recoverer (sql/roles.sql)"
          : `Cannot read the vault: ${describeDbError(error)}`,
        { cause: error },
      ),
    );
  }
  const byMask = new Map(rows.map((r) => [r.masked_value, r]));
  const results: Recovery[] = masks.map((masked) => {
    const row = byMask.get(masked);
    if (row === undefined) {
      return { masked, outcome: "not_found", detail: "no vault entry: never vaulted, or erased" };
    }
    const entry = fromStored(row);
    try {
      return {
        masked,
        outcome: "success",
        field: row.field,
        raw: (cipher as VaultCipher).decrypt(entry),
      };
    } catch (error) {
      const detail = error instanceof VaultIntegrityError ? error.message : String(error);
      return { masked, outcome: "failed", detail };
    }
  });
  // Audit first: if the trail cannot be written, nothing is revealed.
  await appendAudit(
    sql,
    results.map((r): AuditEntry => ({
      actor: request.actor,
      action: "recover",
      maskedValue: r.masked,
      reason: request.reason,
      outcome: r.outcome,
      detail: r.outcome === "success" ? `field ${r.field}` : r.detail,
    })),
  );
  return results;
}

/** The outcome of erasing one mask. */
export interface Erasure {
  readonly masked: string;
  readonly outcome: "success" | "not_found";
}

/**
 * Erases the vault entries behind `masks`, with their audit rows, in one
 * transaction. The masks in `user_logins` stay as opaque tokens.
 *
 * @throws {UsageError} without a reason; {DatabaseError} when the role may not delete from the vault
 */
export async function forget(
  sql: Sql,
  masks: readonly string[],
  request: Request,
): Promise<Erasure[]> {
  if (request.reason === null) {
    await refuse(
      sql,
      "forget",
      masks,
      request,
      new UsageError(
        "Refused: forget needs --reason TEXT saying why (it is kept in the audit trail)",
      ),
    );
  }
  try {
    return await sql.begin(async (tx) => {
      const deleted = await tx<{ masked_value: string }[]>`
        DELETE FROM login_etl_vault WHERE masked_value = ANY(${
        pgArray(masks)
      }::text[]) RETURNING masked_value`;
      // A tombstone per mask, erased now or before, so it is never vaulted again.
      await tx`
        INSERT INTO login_etl_forgotten (masked_value)
        SELECT unnest(${pgArray(masks)}::text[]) ON CONFLICT DO NOTHING`;
      const gone = new Set(deleted.map((d) => d.masked_value));
      const results = masks.map((masked): Erasure => ({
        masked,
        outcome: gone.has(masked) ? "success" : "not_found",
      }));
      await appendAudit(
        tx as unknown as Sql,
        results.map((r) => ({
          actor: request.actor,
          action: "forget" as const,
          maskedValue: r.masked,
          reason: request.reason,
          outcome: r.outcome,
          detail: r.outcome === "success" ? "vault entry deleted" : "no vault entry",
        })),
      );
      return results;
    });
  } catch (error) {
    if (error instanceof EtlError) throw error;
    const denied = isPermissionDenied(error);
    return await refuse(
      sql,
      "forget",
      masks,
      request,
      new DatabaseError(
        "db_write",
        denied
          ? "Refused: this database role may not erase vault entries; erasure needs a role granted pii_recoverer (sql/roles.sql)"
          : `Cannot erase: ${describeDbError(error)}`,
        { cause: error },
      ),
    );
  }
}
