/**
 * Vault key rotation: `rekeyVault` re-encrypts vault entries under another
 * vault key (re-seals them, when it is a key pair), each new entry opened
 * again before it replaces the old one. In batches, one transaction each,
 * picking up where an interrupted run stopped.
 *
 * @module
 */

import { byteaHex, type Deployment, describeDbError, pgArray, type Sql } from "../db/pool.ts";
import { DatabaseError } from "../errors.ts";
import type { Masked, VaultInput } from "../types.ts";
import { appendAudit } from "./audit.ts";
import type { RotationOptions } from "./rekey.ts";
import { fromStored, type StoredVaultRow } from "./vault.ts";

function wrap(what: string, error: unknown): DatabaseError {
  return new DatabaseError("db_write", `Cannot ${what}: ${describeDbError(error)}`, {
    cause: error,
  });
}

/**
 * Re-encrypts every vault entry not under `cipher.currentKeyId`, in batches,
 * one transaction each; resumable.
 */
export async function rekeyVault(
  db: Deployment,
  options: RotationOptions,
): Promise<{ readonly moved: number; readonly batches: number; readonly failed: number }> {
  const { cipher } = options;
  const sql = db.sql;
  const state = sql(db.schemas.stateSchema);
  let moved = 0;
  let batches = 0;
  let failed = 0;
  /** Entries that do not decrypt: skipped, so one bad entry cannot block the rotation. */
  const skipped: string[] = [];
  for (;;) {
    if (options.stop?.aborted === true) break;
    let rows: StoredVaultRow[];
    try {
      rows = await sql<StoredVaultRow[]>`
        SELECT masked_value, field, ciphertext, iv, key_id FROM ${state}.login_etl_vault
        WHERE erased_at IS NULL AND key_id <> ${cipher.currentKeyId} AND NOT (masked_value = ANY(${
        pgArray(skipped)
      }::text[]))
        ORDER BY masked_value LIMIT ${options.batch}`;
    } catch (error) {
      throw wrap("read the vault", error);
    }
    if (rows.length === 0) break;
    const skip = (masked: string) => {
      skipped.push(masked);
      failed++;
      options.telemetry.emit({ type: "RekeySkipped", what: "vault", masked, why: "undecryptable" });
    };
    const inputs: VaultInput[] = [];
    for (const row of rows) {
      try {
        const raw = await cipher.decrypt(fromStored(row));
        inputs.push({ field: row.field, masked: row.masked_value as Masked, raw });
      } catch {
        skip(row.masked_value);
      }
    }
    const updated: { masked: string; ciphertext: string; iv: string }[] = [];
    for (const [i, entry] of (await cipher.encryptAll(inputs)).entries()) {
      // Each new entry is opened again before the old one is overwritten: a
      // rotation must never leave a value only a key nobody holds can open.
      const reopened = await cipher.decrypt(entry).catch(() => null);
      if (reopened !== inputs[i]?.raw) {
        skip(entry.masked);
        continue;
      }
      updated.push({
        masked: entry.masked,
        ciphertext: byteaHex(entry.ciphertext),
        iv: byteaHex(entry.iv),
      });
    }
    if (updated.length === 0) continue;
    try {
      await sql.begin(async (tx) => {
        await tx`
          UPDATE ${state}.login_etl_vault AS v SET ciphertext = u.c, iv = u.i, key_id = ${cipher.currentKeyId}
          FROM ROWS FROM (pg_catalog.unnest(${pgArray(updated.map((u) => u.masked))}::text[]),
                          pg_catalog.unnest(${pgArray(updated.map((u) => u.ciphertext))}::bytea[]),
                          pg_catalog.unnest(${
          pgArray(updated.map((u) => u.iv))
        }::bytea[])) AS u(m, c, i)
          WHERE v.masked_value = u.m AND v.erased_at IS NULL`;
        await appendAudit({ sql: tx as unknown as Sql, schemas: db.schemas }, [{
          actor: options.actor,
          action: "rekey-vault",
          maskedValue: null,
          reason: options.reason,
          outcome: "success",
          detail: `${updated.length} vault entries re-encrypted under key ${cipher.currentKeyId}`,
        }]);
      });
    } catch (error) {
      throw error instanceof DatabaseError ? error : wrap("re-encrypt a batch", error);
    }
    moved += updated.length;
    batches++;
    options.telemetry.emit({
      type: "RekeyBatchCommitted",
      what: "vault",
      count: updated.length,
      keyId: cipher.currentKeyId,
    });
  }
  return { moved, batches, failed };
}
