/**
 * HMAC key rotation of existing data: `rekeyRows` recomputes the masks of
 * existing rows under another HMAC key, using the vault to get back the raw
 * values, so that repeated values stay visible across the rotation. It works
 * in batches, one transaction each, and picks up where an interrupted run
 * stopped. The vault's own rotation is `rekey_vault.ts`; retiring an old
 * HMAC key once nothing is under it, `retire.ts`.
 *
 * @module
 */

import { byteaHex, type Deployment, describeDbError, pgArray, type Sql } from "../db/pool.ts";
import { DatabaseError } from "../errors.ts";
import type { Telemetry } from "../ops/telemetry.ts";
import type { Masker } from "../mask.ts";
import type { Masked, PiiField, VaultEntry } from "../types.ts";
import { appendAudit } from "./audit.ts";
import { fromStored, type StoredVaultRow, type VaultCipher } from "./vault.ts";

const COLUMN: Readonly<Record<PiiField, "masked_ip" | "masked_device_id">> = {
  ip: "masked_ip",
  "device_id": "masked_device_id",
};

/** Counts of a rekey run. */
export interface RekeyReport {
  /** Distinct masks moved to the new key with their value, by field. */
  readonly moved: Record<PiiField, number>;
  /**
   * Distinct masks moved as tombstones: the old or the new mask was erased
   * (a forget that ran before or during this batch), so both are now.
   */
  readonly erased: Record<PiiField, number>;
  /** New masks whose existing entry did not prove out (or was under a vault key not held): replaced. */
  readonly replaced: Record<PiiField, number>;
  /** Distinct masks with no vault entry and no recorded move (erased before, or written without the vault): left. */
  readonly unlinkable: Record<PiiField, number>;
  /** Distinct masks whose vault entry does not decrypt or mask back to them: left, and logged. */
  readonly mismatched: Record<PiiField, number>;
  /** Distinct masks under an HMAC key id the set does not hold, so not checkable: left, and logged. */
  readonly refused: Record<PiiField, number>;
  batches: number;
}

/** What both rotations (masks, vault entries) take. */
export interface RotationOptions {
  readonly cipher: VaultCipher;
  /** Distinct masks (or vault entries) per transaction. */
  readonly batch: number;
  readonly actor: string;
  readonly reason: string | null;
  readonly telemetry: Telemetry;
  readonly stop?: AbortSignal;
}

/** Options of a rekey run. */
export interface RekeyOptions extends RotationOptions {
  /** Masker of the target key. */
  readonly target: Masker;
  /**
   * Maskers of the other keys of the set: an entry is moved only if its value
   * masks back to the old mask under the old key, so a wrong vault entry can
   * never regroup rows. Masks under keys not in the set are left as they are.
   */
  readonly verify: ReadonlyMap<string, Masker>;
}

function wrap(what: string, error: unknown): DatabaseError {
  return new DatabaseError("db_write", `Cannot ${what}: ${describeDbError(error)}`, {
    cause: error,
  });
}

/** A vault row as a rekey locks it: an entry, or a tombstone (`erased`). */
interface Locked {
  readonly "masked_value": string;
  readonly field: PiiField | null;
  readonly ciphertext: Uint8Array | null;
  readonly iv: Uint8Array | null;
  readonly "key_id": string | null;
  readonly erased: boolean;
}

/** One old mask's move, planned before the batch's transaction and re-checked in it. */
interface Move {
  readonly old: string;
  readonly fresh: Masked;
  /** The new entry, when the old one was live and proved out; null when rows follow a recorded move. */
  readonly entry: VaultEntry | null;
}

/** Postgres breaks a deadlock with a concurrent forget by aborting one side: a batch is retried. */
const BATCH_ATTEMPTS = 3;

/** Zero per field. */
const perField = (): Record<PiiField, number> => ({ ip: 0, "device_id": 0 });

/**
 * True when a stored entry decrypts and masks back to `masked` under
 * `masker`. An entry under a vault key the set cannot open (not held, or a
 * pair's public half only) does not prove out either: the move replaces it
 * with its own entry, whose value the old mask proved, so nothing is lost.
 */
async function provesOut(
  row: Locked,
  masked: string,
  field: PiiField,
  cipher: VaultCipher,
  masker: Masker,
): Promise<boolean> {
  if (row.erased || row.field !== field || row.key_id === null || !cipher.canRead(row.key_id)) {
    return false;
  }
  try {
    const raw = await cipher.decrypt(fromStored(row as StoredVaultRow));
    return await masker.mask(field, raw) === masked;
  } catch {
    return false;
  }
}

/**
 * Moves every mask of `user_logins` (and its vault entry) to the target key.
 *
 * Each batch plans outside its transaction (distinct old masks, their vault
 * entries decrypted and proven, the new masks and entries), then, in one
 * transaction, locks the old and new vault rows (`FOR UPDATE`) and decides
 * again on what it finds there: a `forget` may have erased either since.
 * An erased old or new mask makes both tombstones (the rows still move, to
 * the new mask); an existing new entry is kept only if it proves out under
 * the target key, else replaced; only a live old entry is deleted. Each move
 * is recorded in `login_etl_vault_links`, so that a later `forget` of either
 * mask erases both, and rows written later with the old mask follow it.
 * Idempotent and resumable: rows already under the target key are never
 * selected again. One function because one batch's steps share its
 * transaction and its audit row.
 */
export async function rekeyRows(db: Deployment, options: RekeyOptions): Promise<RekeyReport> {
  const { target, cipher } = options;
  const sql = db.sql;
  const data = sql(db.schemas.schema);
  const state = sql(db.schemas.stateSchema);
  const prefix = `${target.keyId}:`;
  const report: RekeyReport = {
    moved: perField(),
    erased: perField(),
    replaced: perField(),
    unlinkable: perField(),
    mismatched: perField(),
    refused: perField(),
    batches: 0,
  };
  for (const field of ["ip", "device_id"] as const) {
    const column = COLUMN[field];
    /** Old masks this run leaves as they are; never selected again. */
    const skipped = new Set<string>();
    const skip = (old: string, why: "unlinkable" | "mismatched" | "refused") => {
      skipped.add(old);
      report[why][field]++;
    };
    for (;;) {
      if (options.stop?.aborted === true) return report;
      let olds: string[];
      let vaulted: Map<string, Locked>;
      let linked: Map<string, string>;
      try {
        const rows = await sql<{ mask: string }[]>`
          SELECT DISTINCT ${sql(column)} AS mask FROM ${data}.user_logins
          WHERE ${sql(column)} IS NOT NULL AND pg_catalog.left(${
          sql(column)
        }, ${prefix.length}) <> ${prefix}
            AND NOT (${sql(column)} = ANY(${pgArray([...skipped])}::text[]))
          LIMIT ${options.batch}`;
        olds = rows.map((r) => r.mask);
        if (olds.length === 0) break;
        vaulted = new Map(
          (await sql<Locked[]>`
            SELECT masked_value, field, ciphertext, iv, key_id, erased_at IS NOT NULL AS erased
            FROM ${state}.login_etl_vault WHERE masked_value = ANY(${pgArray(olds)}::text[])`)
            .map((v) => [v.masked_value, v]),
        );
        linked = new Map(
          (await sql<{ old: string; fresh: string }[]>`
            SELECT mask AS old, other AS fresh FROM ${state}.login_etl_vault_links
            WHERE mask = ANY(${
            pgArray(olds)
          }::text[]) AND pg_catalog.left(other, ${prefix.length}) = ${prefix}
            UNION
            SELECT other, mask FROM ${state}.login_etl_vault_links
            WHERE other = ANY(${
            pgArray(olds)
          }::text[]) AND pg_catalog.left(mask, ${prefix.length}) = ${prefix}`)
            .map((l) => [l.old, l.fresh]),
        );
      } catch (error) {
        throw wrap("read the masks and the vault (rekey needs a role that may read them)", error);
      }
      const moves: Move[] = [];
      /** Moves whose new entry is still to be encrypted, with their raw values. */
      const planned: { old: string; fresh: Masked; raw: string }[] = [];
      for (const old of olds) {
        const keyId = old.slice(0, Math.max(0, old.indexOf(":")));
        const oldKey = options.verify.get(keyId);
        if (oldKey === undefined) {
          // Refused: nothing proves what value such a mask stands for.
          skip(old, "refused");
          options.telemetry.emit({
            type: "RekeySkipped",
            what: "rows",
            masked: old,
            why: "unknown_key",
          });
          continue;
        }
        const row = vaulted.get(old);
        const link = linked.get(old);
        if (row === undefined || row.erased) {
          if (link === undefined) skip(old, "unlinkable");
          else moves.push({ old, fresh: link as Masked, entry: null });
          continue;
        }
        let raw: string;
        try {
          if (row.field !== field) throw new Error("field");
          raw = await cipher.decrypt(fromStored(row as StoredVaultRow));
        } catch {
          // Altered, moved, or under a vault key the set cannot read: leave it, go on.
          skip(old, "mismatched");
          options.telemetry.emit({
            type: "RekeySkipped",
            what: "rows",
            masked: old,
            why: "undecryptable",
          });
          continue;
        }
        if (await oldKey.mask(field, raw) !== old) {
          skip(old, "mismatched");
          options.telemetry.emit({
            type: "RekeySkipped",
            what: "rows",
            masked: old,
            why: "mismatch",
          });
          continue;
        }
        const fresh = await target.mask(field, raw);
        planned.push({ old, fresh, raw });
      }
      // One call for the batch: a sealing key's one key agreement.
      const entries = await cipher.encryptAll(
        planned.map((p) => ({ field, masked: p.fresh, raw: p.raw })),
      );
      for (const [i, p] of planned.entries()) {
        moves.push({ old: p.old, fresh: p.fresh, entry: entries[i] as VaultEntry });
      }
      if (moves.length === 0) continue;
      let done: { moved: number; erased: number; replaced: number; vanished: string[] } | undefined;
      for (let attempt = 1; done === undefined; attempt++) {
        try {
          done = await sql.begin((tx) =>
            moveBatch(tx as unknown as Sql, db, field, moves, options)
          );
        } catch (error) {
          const code = (error as { code?: unknown } | null)?.code;
          if (code === "40P01" && attempt < BATCH_ATTEMPTS) continue;
          throw error instanceof DatabaseError ? error : wrap("re-key a batch", error);
        }
      }
      // Old masks whose entry another rekey moved meanwhile: its rows moved with it.
      for (const old of done.vanished) skipped.add(old);
      report.moved[field] += done.moved;
      report.erased[field] += done.erased;
      report.replaced[field] += done.replaced;
      report.batches++;
      options.telemetry.emit({
        type: "RekeyBatchCommitted",
        what: "rows",
        count: done.moved + done.erased,
        keyId: target.keyId,
      });
    }
  }
  return report;
}

/**
 * One batch's transaction (see `rekeyRows`). Locks the old and new vault
 * rows in mask order, inserts the new entries that have no row yet (a
 * conflict means a forget or merge wrote one meanwhile: it is locked and
 * judged like the others), then decides each move on what it holds.
 */
async function moveBatch(
  tx: Sql,
  db: Deployment,
  field: PiiField,
  moves: readonly Move[],
  options: RekeyOptions,
): Promise<{ moved: number; erased: number; replaced: number; vanished: string[] }> {
  const state = tx(db.schemas.stateSchema);
  const data = tx(db.schemas.schema);
  const { cipher, target } = options;
  const lock = async (masks: readonly string[]) =>
    await tx<Locked[]>`
      SELECT masked_value, field, ciphertext, iv, key_id, erased_at IS NOT NULL AS erased
      FROM ${state}.login_etl_vault WHERE masked_value = ANY(${pgArray([...masks])}::text[])
      ORDER BY masked_value FOR UPDATE`;
  const found = new Map<string, Locked>();
  for (const row of await lock([...moves.map((m) => m.old), ...moves.map((m) => m.fresh)])) {
    found.set(row.masked_value, row);
  }
  const toInsert = new Map<string, VaultEntry>();
  for (const m of moves) {
    if (m.entry !== null && !found.has(m.fresh) && !toInsert.has(m.fresh)) {
      toInsert.set(m.fresh, m.entry);
    }
  }
  const entries = [...toInsert.values()];
  const ours = new Set(
    (await tx<{ m: string }[]>`
      INSERT INTO ${state}.login_etl_vault (masked_value, field, ciphertext, iv, key_id)
      SELECT m, ${field}, c, i, k FROM ROWS FROM (
        pg_catalog.unnest(${pgArray(entries.map((e) => e.masked))}::text[]),
        pg_catalog.unnest(${pgArray(entries.map((e) => byteaHex(e.ciphertext)))}::bytea[]),
        pg_catalog.unnest(${pgArray(entries.map((e) => byteaHex(e.iv)))}::bytea[]),
        pg_catalog.unnest(${pgArray(entries.map((e) => e.keyId))}::text[])) AS v(m, c, i, k)
      ORDER BY m
      ON CONFLICT (masked_value) DO NOTHING
      RETURNING masked_value AS m`).map((r) => r.m),
  );
  const conflicted = entries.map((e) => e.masked as string).filter((m) => !ours.has(m));
  if (conflicted.length > 0) {
    for (const row of await lock(conflicted)) found.set(row.masked_value, row);
  }

  const tombstones = new Set<string>();
  const replace: VaultEntry[] = [];
  const deleteOld: string[] = [];
  const rows: Move[] = [];
  const vanished: string[] = [];
  let moved = 0;
  let erased = 0;
  const judged = new Map<string, boolean>();
  for (const m of moves) {
    const old = found.get(m.old);
    const fresh = found.get(m.fresh);
    if (m.entry !== null && old === undefined) {
      vanished.push(m.old);
      continue;
    }
    rows.push(m);
    if (old?.erased === true || fresh?.erased === true) {
      // Erased under one key is erased under both.
      tombstones.add(m.old).add(m.fresh);
      erased++;
      continue;
    }
    moved++;
    if (m.entry === null) continue;
    deleteOld.push(m.old);
    if (ours.has(m.fresh) || fresh === undefined) continue;
    let good = judged.get(m.fresh);
    if (good === undefined) {
      good = await provesOut(fresh, m.fresh, field, cipher, target);
      judged.set(m.fresh, good);
      if (!good) replace.push(m.entry);
    }
  }
  if (replace.length > 0) {
    await tx`
      UPDATE ${state}.login_etl_vault AS v SET field = ${field}, ciphertext = r.c, iv = r.i, key_id = r.k
      FROM ROWS FROM (pg_catalog.unnest(${pgArray(replace.map((e) => e.masked))}::text[]),
                      pg_catalog.unnest(${
      pgArray(replace.map((e) => byteaHex(e.ciphertext)))
    }::bytea[]),
                      pg_catalog.unnest(${pgArray(replace.map((e) => byteaHex(e.iv)))}::bytea[]),
                      pg_catalog.unnest(${
      pgArray(replace.map((e) => e.keyId))
    }::text[])) AS r(m, c, i, k)
      WHERE v.masked_value = r.m AND v.erased_at IS NULL`;
  }
  if (tombstones.size > 0) {
    await tx`
      INSERT INTO ${state}.login_etl_vault AS v (masked_value, erased_at)
      SELECT m, pg_catalog.now() FROM pg_catalog.unnest(${pgArray([...tombstones])}::text[]) AS m
      ORDER BY m
      ON CONFLICT (masked_value) DO UPDATE
        SET ciphertext = NULL, iv = NULL, key_id = NULL, erased_at = pg_catalog.now()
        WHERE v.erased_at IS NULL`;
  }
  // Only live entries: a tombstone keeps its place.
  await tx`
    DELETE FROM ${state}.login_etl_vault
    WHERE masked_value = ANY(${pgArray(deleteOld)}::text[]) AND erased_at IS NULL`;
  const column = tx(COLUMN[field]);
  await tx`
    UPDATE ${data}.user_logins AS u SET ${column} = m.fresh
    FROM ROWS FROM (pg_catalog.unnest(${pgArray(rows.map((m) => m.old))}::text[]),
                    pg_catalog.unnest(${
    pgArray(rows.map((m) => m.fresh))
  }::text[])) AS m(old, fresh)
    WHERE u.${column} = m.old`;
  await tx`
    INSERT INTO ${state}.login_etl_vault_links (mask, other, made_by)
    SELECT old, fresh, 'rekey'
    FROM ROWS FROM (pg_catalog.unnest(${pgArray(rows.map((m) => m.old))}::text[]),
                    pg_catalog.unnest(${
    pgArray(rows.map((m) => m.fresh))
  }::text[])) AS m(old, fresh)
    ON CONFLICT DO NOTHING`;
  await appendAudit({ sql: tx, schemas: db.schemas }, [{
    actor: options.actor,
    action: "rekey",
    maskedValue: null,
    reason: options.reason,
    outcome: "success",
    detail:
      `${moved} ${field} masks moved to key ${target.keyId}; ${erased} erased ones moved as tombstones; ${replace.length} target entries replaced (they did not prove out)`,
  }]);
  return { moved, erased, replaced: replace.length, vanished };
}
