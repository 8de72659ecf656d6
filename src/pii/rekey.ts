/**
 * Key rotation of existing data. `rekey` recomputes masks of existing rows
 * under another HMAC key, using the vault to get back the raw values, so
 * that repeated values stay visible across the rotation. `rekeyVault`
 * re-encrypts vault entries under another vault key (re-seals them, when it
 * is a key pair). Both work in batches,
 * one transaction each, and pick up where an interrupted run stopped.
 *
 * @module
 */

import { byteaHex, type Deployment, describeDbError, pgArray, type Sql } from "../db/pool.ts";
import { DatabaseError } from "../errors.ts";
import type { Telemetry } from "../ops/telemetry.ts";
import type { Masker } from "../mask.ts";
import type { Masked } from "../types.ts";
import { appendAudit } from "./audit.ts";
import {
  fromStored,
  type StoredVaultRow,
  type VaultCipher,
  type VaultField,
  type VaultInput,
} from "./vault.ts";

const COLUMN: Readonly<Record<VaultField, "masked_ip" | "masked_device_id">> = {
  ip: "masked_ip",
  "device_id": "masked_device_id",
};

/** Counts of a rekey run. */
export interface RekeyReport {
  /** Distinct masks moved to the new key, by field. */
  readonly moved: Record<VaultField, number>;
  /** Distinct masks with no vault entry (erased, or written without the vault): left as they are. */
  readonly unlinkable: Record<VaultField, number>;
  /** Distinct masks whose vault entry does not mask back to them under its key: left, and logged. */
  readonly mismatched: Record<VaultField, number>;
  batches: number;
}

/** Options of a rekey run. */
export interface RekeyOptions {
  /** Masker of the target key. */
  readonly target: Masker;
  /**
   * Maskers of the other keys of the set: an entry is moved only if its value
   * masks back to the old mask under the old key, so a wrong vault entry can
   * never regroup rows. Masks under keys not in the set are moved unchecked.
   */
  readonly verify: ReadonlyMap<string, Masker>;
  readonly cipher: VaultCipher;
  /** Distinct masks per transaction. */
  readonly batch: number;
  readonly actor: string;
  readonly reason: string | null;
  readonly telemetry: Telemetry;
  readonly stop?: AbortSignal;
}

function wrap(what: string, error: unknown): DatabaseError {
  return new DatabaseError("db_write", `Cannot ${what}: ${describeDbError(error)}`, {
    cause: error,
  });
}

/**
 * Moves every mask of `user_logins` (and its vault entry) to the target key.
 * Each batch: read distinct old masks, decrypt their vault entries, compute
 * the new masks, then in one transaction insert the new vault entries,
 * update the rows and delete the old entries. Idempotent and resumable: rows
 * already under the target key are never selected again. One function
 * because one batch's steps share its transaction and its audit rows.
 */
export async function rekeyRows(db: Deployment, options: RekeyOptions): Promise<RekeyReport> {
  const { target, cipher } = options;
  const sql = db.sql;
  const data = sql(db.schemas.schema);
  const state = sql(db.schemas.stateSchema);
  const prefix = `${target.keyId}:`;
  const report: RekeyReport = {
    moved: { ip: 0, "device_id": 0 },
    unlinkable: { ip: 0, "device_id": 0 },
    mismatched: { ip: 0, "device_id": 0 },
    batches: 0,
  };
  for (const field of ["ip", "device_id"] as const) {
    const column = COLUMN[field];
    const unlinkable = new Set<string>();
    for (;;) {
      if (options.stop?.aborted === true) return report;
      let olds: string[];
      try {
        const rows = await sql<{ mask: string }[]>`
          SELECT DISTINCT ${sql(column)} AS mask FROM ${data}.user_logins
          WHERE ${sql(column)} IS NOT NULL AND left(${sql(column)}, ${prefix.length}) <> ${prefix}
            AND NOT (${sql(column)} = ANY(${pgArray([...unlinkable])}::text[]))
          LIMIT ${options.batch}`;
        olds = rows.map((r) => r.mask);
      } catch (error) {
        throw wrap(`read ${column}`, error);
      }
      if (olds.length === 0) break;
      let vaulted: StoredVaultRow[];
      try {
        vaulted = await sql<StoredVaultRow[]>`
          SELECT masked_value, field, ciphertext, iv, key_id FROM ${state}.login_etl_vault
          WHERE masked_value = ANY(${pgArray(olds)}::text[]) AND erased_at IS NULL`;
      } catch (error) {
        throw wrap("read the vault (rekey needs a role that may read it)", error);
      }
      const found = new Map(vaulted.map((v) => [v.masked_value, v]));
      const oldMasks: string[] = [];
      const newMasks: string[] = [];
      const inputs: VaultInput[] = [];
      for (const old of olds) {
        const row = found.get(old);
        if (row === undefined || row.field !== field) {
          unlinkable.add(old);
          continue;
        }
        let raw: string;
        try {
          raw = await cipher.decrypt(fromStored(row));
        } catch {
          // Altered, or under a vault key the set cannot read: leave it, go on.
          unlinkable.add(old);
          report.mismatched[field]++;
          options.telemetry.emit({
            type: "RekeySkipped",
            what: "rows",
            masked: old,
            why: "undecryptable",
          });
          continue;
        }
        const oldKey = options.verify.get(old.slice(0, old.indexOf(":")));
        if (oldKey !== undefined && await oldKey.mask(field, raw) !== old) {
          unlinkable.add(old);
          report.mismatched[field]++;
          options.telemetry.emit({
            type: "RekeySkipped",
            what: "rows",
            masked: old,
            why: "mismatch",
          });
          continue;
        }
        const fresh = await target.mask(field, raw);
        oldMasks.push(old);
        newMasks.push(fresh);
        inputs.push({ field, masked: fresh, raw });
      }
      if (oldMasks.length === 0) continue;
      // One call: a sealing key's one key agreement for the batch.
      const entries = (await cipher.encryptAll(inputs)).map((entry) => ({
        masked: entry.masked,
        ciphertext: byteaHex(entry.ciphertext),
        iv: byteaHex(entry.iv),
        keyId: entry.keyId,
      }));
      try {
        await sql.begin(async (tx) => {
          await tx`
            INSERT INTO ${state}.login_etl_vault (masked_value, field, ciphertext, iv, key_id)
            SELECT m, ${field}, c, i, k FROM unnest(
              ${pgArray(entries.map((e) => e.masked))}::text[], ${
            pgArray(entries.map((e) => e.ciphertext))
          }::bytea[],
              ${pgArray(entries.map((e) => e.iv))}::bytea[], ${
            pgArray(entries.map((e) => e.keyId))
          }::text[]) AS v(m, c, i, k)
            ON CONFLICT (masked_value) DO NOTHING`;
          await tx`
            UPDATE ${data}.user_logins AS u SET ${tx(column)} = m.fresh
            FROM unnest(${pgArray(oldMasks)}::text[], ${pgArray(newMasks)}::text[]) AS m(old, fresh)
            WHERE u.${tx(column)} = m.old`;
          await tx`DELETE FROM ${state}.login_etl_vault WHERE masked_value = ANY(${
            pgArray(oldMasks)
          }::text[])`;
          await appendAudit({ sql: tx as unknown as Sql, schemas: db.schemas }, [{
            actor: options.actor,
            action: "rekey",
            maskedValue: null,
            reason: options.reason,
            outcome: "success",
            detail: `${oldMasks.length} ${field} masks moved to key ${target.keyId}`,
          }]);
        });
      } catch (error) {
        throw error instanceof DatabaseError ? error : wrap("re-key a batch", error);
      }
      report.moved[field] += oldMasks.length;
      report.batches++;
      options.telemetry.emit({
        type: "RekeyBatchCommitted",
        what: "rows",
        count: oldMasks.length,
        keyId: target.keyId,
      });
    }
    report.unlinkable[field] = unlinkable.size - report.mismatched[field];
  }
  return report;
}

/**
 * Re-encrypts every vault entry not under `cipher.currentKeyId`, in batches,
 * one transaction each; resumable.
 */
export async function rekeyVault(
  db: Deployment,
  options: Omit<RekeyOptions, "target" | "verify">,
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
        WHERE key_id <> ${cipher.currentKeyId} AND NOT (masked_value = ANY(${
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
          FROM unnest(${pgArray(updated.map((u) => u.masked))}::text[], ${
          pgArray(updated.map((u) => u.ciphertext))
        }::bytea[],
                      ${pgArray(updated.map((u) => u.iv))}::bytea[]) AS u(m, c, i)
          WHERE v.masked_value = u.m`;
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
