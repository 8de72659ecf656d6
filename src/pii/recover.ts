/**
 * Recovery of raw values behind masks, in two transactions: the database
 * function `login_etl_release_request` audits every mask and issues a
 * ticket, and commits; `login_etl_release` then hands out the ciphertext of
 * that ticket, which it refuses to do before the request has committed. So
 * no ciphertext leaves without a committed audit row. Before the request,
 * the masks' entries still in the vault inbox are merged into the vault
 * (merge.ts: claimed and audited per mask, committed, then handed out to be
 * verified), so the release reads what consumers wrote since the last
 * merge too. Each value is then proven: it must decrypt under the vault key
 * and mask back to the requested mask under its HMAC key, so an injected or
 * swapped entry is refused (and audited), and an erased one never comes back.
 *
 * @module
 */

import { requireHmacKeys } from "../db/keys.ts";
import { type Deployment, describeDbError, isPermissionDenied, pgArray } from "../db/pool.ts";
import { ConfigError, DatabaseError, type EtlError, UsageError } from "../errors.ts";
import type { Masker } from "../mask.ts";
import type { PiiField } from "../types.ts";
import { fieldValueProblem } from "../validate.ts";
import { noteRefusal } from "./audit.ts";
import { mergeInbox } from "./merge.ts";
import { fromStored, READING_KEYS, type VaultCipher, VaultIntegrityError } from "./vault.ts";

/** Inbox entries claimed per call of a recover's merge. */
const MERGE_BATCH = 1000;

/** Who asks, and why. */
export interface PiiRequest {
  readonly actor: string;
  readonly reason: string | null;
}

/** The outcome for one mask. */
export type Recovery =
  | {
    readonly masked: string;
    readonly outcome: "success";
    readonly field: PiiField;
    readonly raw: string;
  }
  | {
    readonly masked: string;
    readonly outcome: "not_found" | "dropped" | "erased" | "failed";
    readonly detail: string;
  };

/** What recovery proves a value with: the vault key set and every HMAC key by id. */
export interface RecoveryKeys {
  readonly cipher: VaultCipher | null;
  readonly maskers: ReadonlyMap<string, Masker>;
}

/** A refusal decided here: audited as denied for each mask, then thrown. */
export async function refuse(
  db: Deployment,
  action: "recover" | "forget",
  masks: readonly string[],
  request: PiiRequest,
  error: EtlError,
): Promise<never> {
  await noteRefusal(db, {
    action,
    masks,
    actor: request.actor,
    reason: request.reason,
    outcome: "denied",
    detail: error.message,
  });
  throw error;
}

/** A row of `login_etl_release_request`: the ticket (null when no mask is live) and what it found. */
interface Requested {
  readonly ticket: string | null;
  readonly "masked_value": string;
  readonly state: "released" | "erased" | "not_found" | "dropped" | "denied";
}

/** A row of `login_etl_release`. */
interface Released {
  readonly "masked_value": string;
  readonly field: PiiField | null;
  readonly ciphertext: Uint8Array | null;
  readonly iv: Uint8Array | null;
  readonly "key_id": string | null;
  readonly state: "released" | "erased" | "not_found";
}

/**
 * Why a released entry cannot be shown, or null when it proves out: it masks
 * back to its mask and passes its field's rule.
 */
async function disprove(
  row: Released,
  raw: string,
  maskers: ReadonlyMap<string, Masker>,
): Promise<string | null> {
  const masked = row.masked_value;
  const keyId = masked.slice(0, Math.max(0, masked.indexOf(":")));
  const masker = maskers.get(keyId);
  if (masker === undefined) {
    return `cannot check the value: HMAC key id "${keyId}" is not in the key set`;
  }
  if (await masker.mask(row.field as PiiField, raw) !== masked) {
    return "vault entry does not mask back to its mask: injected or swapped, refused";
  }
  // A consumer can vault any string under a mask that checks out (it holds
  // the HMAC key and the vault's public key): only what a valid login event
  // could carry is shown.
  const problem = fieldValueProblem(row.field as PiiField, raw);
  if (problem !== null) {
    return `vault entry holds a value no valid login event carries (${problem}): injected, refused`;
  }
  return null;
}

/**
 * Recovers the raw values behind `masks`. Refuses without a reason, the
 * vault key or the HMAC keys (audited as denied); the database function
 * audits every lookup before the ciphertext leaves; a value that does not
 * prove out is audited as failed and not returned.
 *
 * @throws {UsageError} without a reason; {ConfigError} without keys;
 *   {DatabaseError} when the role may not recover or the trail cannot be written
 */
export async function recover(
  db: Deployment,
  keys: RecoveryKeys,
  masks: readonly string[],
  request: PiiRequest,
): Promise<Recovery[]> {
  if (request.reason === null) {
    await refuse(
      db,
      "recover",
      masks,
      request,
      new UsageError(
        "Refused: recover needs --reason TEXT saying why (it is kept in the audit trail)",
      ),
    );
  }
  const cipher = keys.cipher;
  if (cipher === null) {
    return await refuse(
      db,
      "recover",
      masks,
      request,
      new ConfigError("Refused: recover needs the vault key (PII_VAULT_KEY or --vault-key-file)"),
    );
  }
  if (!cipher.readable) {
    return await refuse(
      db,
      "recover",
      masks,
      request,
      new ConfigError(`Refused: recover needs ${READING_KEYS}`),
    );
  }
  if (keys.maskers.size === 0) {
    await refuse(
      db,
      "recover",
      masks,
      request,
      new ConfigError(
        "Refused: recover needs the HMAC key (PII_HMAC_KEY or --hmac-key-file) to check that each value masks back to its mask",
      ),
    );
  }
  try {
    await requireHmacKeys(db, keys.maskers.keys(), "recover");
  } catch (error) {
    const refusal = error instanceof DatabaseError && isPermissionDenied(error.cause)
      ? new DatabaseError(
        "db_write",
        "Refused: this database role may not recover; recovery needs a role granted pii_recoverer (sql/roles.sql, run again after migrate)",
        { cause: error },
      )
      : error as EtlError;
    return await refuse(db, "recover", masks, request, refusal);
  }
  // Entries consumers wrote since the last merge wait in the inbox. The
  // requested masks' are merged into the vault first (each claim audited
  // and committed before its entries are handed out to be verified), so
  // the release below, which reads only the vault, covers them too. A
  // reason of blanks skips it: the request refuses and audits that.
  if (request.reason?.trim()) {
    try {
      await mergeInbox(db, { cipher, maskers: keys.maskers }, {
        masks: masks.filter((m) => keys.maskers.has(m.slice(0, Math.max(0, m.indexOf(":"))))),
        actor: request.actor,
        reason: request.reason,
        batch: MERGE_BATCH,
      });
    } catch (error) {
      // A role that may not merge (a consumer, or grants from before the
      // inbox) still gets the vault's answer, or its refusal, below.
      if (!isPermissionDenied((error as { cause?: unknown }).cause)) {
        return await refuse(db, "recover", masks, request, error as DatabaseError);
      }
    }
  }
  const sql = db.sql;
  const state = sql(db.schemas.stateSchema);
  let requested: Requested[];
  try {
    // A statement of its own, so a transaction of its own: committed, with
    // its audit rows, when it returns.
    requested = await sql<Requested[]>`
      SELECT ticket::text, masked_value, state
      FROM ${state}.login_etl_release_request(${
      pgArray(masks)
    }::text[], ${request.actor}, ${request.reason})`;
  } catch (error) {
    return await refuse(
      db,
      "recover",
      masks,
      request,
      new DatabaseError(
        "db_write",
        isPermissionDenied(error)
          ? "Refused: this database role may not recover; recovery needs a role granted pii_recoverer (sql/roles.sql)"
          : `Cannot recover: ${describeDbError(error)}`,
        { cause: error },
      ),
    );
  }
  if (requested.some((r) => r.state === "denied")) {
    // A reason of blanks: the function refused and audited it.
    throw new UsageError(
      "Refused: recover needs --reason TEXT saying why (it is kept in the audit trail)",
    );
  }
  // Erased and unknown masks as the request found them; the live ones as
  // the release hands them out (erased or moved since, if so).
  const byMask = new Map<string, Released | Requested>(requested.map((r) => [r.masked_value, r]));
  const ticket = requested.find((r) => r.ticket !== null)?.ticket ?? null;
  if (ticket !== null) {
    let released: Released[];
    try {
      released = await sql<Released[]>`
        SELECT masked_value, field, ciphertext, iv, key_id, state
        FROM ${state}.login_etl_release(${ticket}::bigint)`;
    } catch (error) {
      const failed = new DatabaseError(
        "db_write",
        `Cannot recover: the release of ticket ${ticket} failed: ${describeDbError(error)}`,
        { cause: error },
      );
      await noteRefusal(db, {
        action: "recover",
        masks,
        actor: request.actor,
        reason: request.reason,
        outcome: "failed",
        detail: failed.message,
      });
      throw failed;
    }
    for (const r of released) byMask.set(r.masked_value, r);
  }
  const results: Recovery[] = [];
  for (const masked of masks) {
    const row = byMask.get(masked);
    if (row === undefined || row.state === "not_found") {
      results.push({ masked, outcome: "not_found", detail: "no vault entry" });
      continue;
    }
    if (row.state === "dropped") {
      results.push({
        masked,
        outcome: "dropped",
        detail: "no vault entry: its inbox entries were dropped by a merge",
      });
      continue;
    }
    if (row.state === "erased") {
      results.push({ masked, outcome: "erased", detail: "erased by forget" });
      continue;
    }
    if (!("ciphertext" in row)) {
      // Live at the request, absent from the release: the function returns
      // every mask of its ticket, so this is a database that says otherwise.
      results.push({ masked, outcome: "failed", detail: "missing from its release" });
      continue;
    }
    let raw: string;
    let why: string | null;
    try {
      raw = await cipher.decrypt(fromStored({
        masked_value: row.masked_value,
        field: row.field as PiiField,
        ciphertext: row.ciphertext as Uint8Array,
        iv: row.iv as Uint8Array,
        key_id: row.key_id as string,
      }));
      why = await disprove(row, raw, keys.maskers);
    } catch (error) {
      raw = "";
      why = error instanceof VaultIntegrityError ? error.message : String(error);
    }
    if (why !== null) {
      results.push({ masked, outcome: "failed", detail: why });
      await noteRefusal(db, {
        action: "recover",
        masks: [masked],
        actor: request.actor,
        reason: request.reason,
        outcome: "failed",
        detail: why,
      });
      continue;
    }
    results.push({ masked, outcome: "success", field: row.field as PiiField, raw });
  }
  return await withoutErased(db, results, keys.maskers, request);
}

/**
 * The last check before values are shown: each value's masks under every
 * held HMAC key go to `login_etl_vault_drop_erased`, which drops (tombstones
 * and audits, without the value) every entry whose value is erased under any
 * of them or anything linked to them. Those become `erased` here; a failed
 * check shows nothing.
 *
 * @throws {DatabaseError} when the check cannot run (audited as failed)
 */
async function withoutErased(
  db: Deployment,
  results: Recovery[],
  maskers: ReadonlyMap<string, Masker>,
  request: PiiRequest,
): Promise<Recovery[]> {
  const pairs: { masked: string; other: string | null }[] = [];
  for (const r of results) {
    if (r.outcome !== "success") continue;
    pairs.push({ masked: r.masked, other: null });
    for (const masker of maskers.values()) {
      const other = await masker.mask(r.field, r.raw);
      if (other !== r.masked) pairs.push({ masked: r.masked, other });
    }
  }
  if (pairs.length === 0) return results;
  let dropped: Set<string>;
  try {
    dropped = new Set(
      (await db.sql<{ masked_value: string }[]>`
        SELECT masked_value FROM ${db.sql(db.schemas.stateSchema)}.login_etl_vault_drop_erased(
          ${pgArray(pairs.map((p) => p.masked))}::text[], ${
        pgArray(pairs.map((p) => p.other))
      }::text[],
          ${request.actor}, ${request.reason})`).map((r) => r.masked_value),
    );
  } catch (error) {
    const failed = new DatabaseError(
      "db_write",
      `Cannot recover: checking the values' masks under every HMAC key for erasures failed, so none is shown: ${
        describeDbError(error)
      }`,
      { cause: error },
    );
    const shown = results.filter((r) => r.outcome === "success").map((r) => r.masked);
    await noteRefusal(db, {
      action: "recover",
      masks: shown,
      actor: request.actor,
      reason: request.reason,
      outcome: "failed",
      detail: failed.message,
    });
    throw failed;
  }
  return results.map((r) =>
    r.outcome === "success" && dropped.has(r.masked)
      ? {
        masked: r.masked,
        outcome: "erased",
        detail: "erased under another of its masks (another HMAC key's): entry dropped",
      }
      : r
  );
}
