/**
 * Merging the vault inbox. Consumers append vault entries to
 * `login_etl_vault_inbox` without reading anything (so a write tells them
 * nothing about what the vault holds); a holder of the vault and HMAC keys
 * moves them into the vault here. Each entry must decrypt and mask back to
 * its mask before it is accepted, so an entry a consumer planted for a mask
 * it predicted (squatting) is dropped rather than kept first; an entry whose
 * value is erased under any key is dropped and its masks tombstoned (the
 * database decides that, under per-mask locks).
 *
 * Three calls, each its own transaction: `login_etl_inbox_claim` claims a
 * batch and audits it, `login_etl_inbox_claimed` hands the entries out
 * (never in the claim's own transaction, so a rolled-back audit releases
 * nothing), `login_etl_inbox_settle` records the verdicts.
 *
 * @module
 */

import { requireHmacKeys } from "../db/keys.ts";
import {
  type Deployment,
  describeDbError,
  isPermissionDenied,
  pgArray,
  type Sql,
} from "../db/pool.ts";
import { DatabaseError } from "../errors.ts";
import type { Masker } from "../mask.ts";
import type { Telemetry } from "../ops/telemetry.ts";
import type { PiiField } from "../types.ts";
import { fieldValueProblem } from "../validate.ts";
import { appendAudit } from "./audit.ts";
import { fromStored, type VaultCipher } from "./vault.ts";

/**
 * How long a whole-inbox merge keeps an entry under a key it does not hold
 * (an HMAC key id or vault key id not in its sets) before dropping it. Such
 * an entry is under a retired key, a key registered after the merger loaded
 * its set, or none at all (a consumer may write any key id): a week covers
 * a rollout of new keys to every merger, and bounds what a flood leaves.
 */
export const FOREIGN_MAX_AGE_HOURS = 7 * 24;

/**
 * Most entries a whole-inbox merge keeps per unheld HMAC key id (the newest
 * ones): a consumer writing a flood under unknown ids within the age limit
 * grows the inbox by at most this per id it makes up. A day of a busy
 * consumer fleet's new values under a key a merger lacks fits in it.
 */
export const FOREIGN_CAP_PER_KEY = 100_000;

/** What a merge proves entries with: the vault key set and every HMAC key by id. */
export interface MergeKeys {
  readonly cipher: VaultCipher;
  readonly maskers: ReadonlyMap<string, Masker>;
}

/** What `login_etl_inbox_claim` returns. */
interface ClaimRow {
  readonly claim: string | null;
  readonly entries: number;
  readonly "last_id": string | null;
  readonly dropped: number;
}

/** Counts of a merge. */
export interface MergeReport {
  /** Entries handed out to be verified. */
  claimed: number;
  /** Masks that entered the vault. */
  accepted: number;
  /** Masks the vault already held. */
  known: number;
  /** Masks whose value is erased: dropped, their masks tombstoned. */
  erased: number;
  /**
   * Entries refused (they did not decrypt or mask back: squatted, altered) and
   * deleted, and entries the claim deleted unread (over the size bound, or
   * past the oldest `INBOX_ENTRIES_PER_MASK` of their mask).
   */
  dropped: number;
  /** Entries under a key the merger cannot use (not held, or a public half only): left in the inbox. */
  kept: number;
  /**
   * Entries under keys not held, past `FOREIGN_MAX_AGE_HOURS` or beyond
   * `FOREIGN_CAP_PER_KEY` per HMAC key id: deleted unjudged (whole-inbox merges only).
   */
  expired: number;
  batches: number;
}

/** Options of a merge. */
export interface MergeOptions {
  /**
   * Only these masks' entries: a recoverer's merge, audited per mask. The
   * whole inbox when absent, which only the owner role may merge.
   */
  readonly masks?: readonly string[];
  readonly actor: string;
  readonly reason: string | null;
  /** Entries per claim (at most 10,000). */
  readonly batch: number;
  /**
   * Delete entries under HMAC or vault key ids the sets do not hold instead
   * of keeping them (never those of a pair held as its public half only).
   */
  readonly dropUnverifiable?: boolean;
  /** Hours an entry under a key not held is kept (whole-inbox merges); `FOREIGN_MAX_AGE_HOURS` by default. */
  readonly foreignMaxAgeHours?: number;
  /** Entries under keys not held kept per HMAC key id (whole-inbox merges); `FOREIGN_CAP_PER_KEY` by default. */
  readonly foreignCapPerKey?: number;
  readonly telemetry?: Telemetry;
  readonly stop?: AbortSignal;
}

/** An inbox entry as `login_etl_inbox_claimed` returns it. */
interface InboxEntry {
  readonly id: string;
  readonly "masked_value": string;
  readonly field: PiiField;
  readonly ciphertext: Uint8Array;
  readonly iv: Uint8Array;
  readonly "key_id": string;
}

/** The merger's verdict on one entry. */
type Verdict =
  | { readonly verdict: "accept"; readonly others: readonly string[] }
  | { readonly verdict: "refuse"; readonly why: "undecryptable" | "mismatch" | "invalid" }
  /**
   * Not judged. `foreign` when a key id is not in the sets at all (what
   * `dropUnverifiable` deletes); a pair held as its public half only is
   * never foreign: its entries wait for a merger holding the private half.
   */
  | { readonly verdict: "keep"; readonly foreign: boolean };

/**
 * Judges one entry: kept when the merger cannot open it or check its mask
 * (its HMAC key not held; its vault key not held, or held as a pair's
 * public half only), since nothing is proven either way; refused when a key
 * that can open it does not, the value does not mask back to its mask, or
 * it fails its field's rule (`fieldValueProblem`);
 * else accepted with its value's masks under the other HMAC keys (so an
 * erasure under any of them reaches it).
 */
async function judge(entry: InboxEntry, keys: MergeKeys): Promise<Verdict> {
  const masked = entry.masked_value;
  const masker = keys.maskers.get(masked.slice(0, Math.max(0, masked.indexOf(":"))));
  if (masker === undefined || !keys.cipher.has(entry.key_id)) {
    return { verdict: "keep", foreign: true };
  }
  if (!keys.cipher.canRead(entry.key_id)) return { verdict: "keep", foreign: false };
  let raw: string;
  try {
    raw = await keys.cipher.decrypt(fromStored(entry));
  } catch {
    return { verdict: "refuse", why: "undecryptable" };
  }
  if (await masker.mask(entry.field, raw) !== masked) return { verdict: "refuse", why: "mismatch" };
  // A consumer holds the HMAC key and the vault's public key, so it can
  // vault any string under a mask that checks out: only a value a valid
  // login event could carry is merged.
  if (fieldValueProblem(entry.field, raw) !== null) return { verdict: "refuse", why: "invalid" };
  const others: string[] = [];
  for (const [id, other] of keys.maskers) {
    if (id !== masker.keyId) others.push(await other.mask(entry.field, raw));
  }
  return { verdict: "accept", others };
}

/** Deadlocks between a settle and a concurrent forget are resolved by Postgres aborting one: retried. */
const SETTLE_ATTEMPTS = 3;

function wrap(what: string, error: unknown): DatabaseError {
  return new DatabaseError(
    "db_write",
    isPermissionDenied(error)
      ? `Cannot ${what}: ${
        describeDbError(error)
      }; merging the vault inbox needs a role granted pii_recoverer (named masks) or login_etl_owner (sql/roles.sql, run again after migrate)`
      : `Cannot ${what}: ${describeDbError(error)}`,
    { cause: error },
  );
}

/**
 * Deletes the unclaimed inbox entries under keys the merger does not hold
 * that are older than the age limit or beyond the newest `cap` of their
 * HMAC key id, and audits the count (never a mask or value). The owner's
 * direct delete: only a whole-inbox merge, which only the owner may run,
 * does this.
 */
async function expireForeign(
  db: Deployment,
  keys: MergeKeys,
  options: MergeOptions,
): Promise<number> {
  const hours = options.foreignMaxAgeHours ?? FOREIGN_MAX_AGE_HOURS;
  const cap = options.foreignCapPerKey ?? FOREIGN_CAP_PER_KEY;
  const hmacIds = [...keys.maskers.keys()];
  const vaultIds = keys.cipher.keyIds;
  try {
    return await db.sql.begin(async (tx) => {
      const state = tx(db.schemas.stateSchema);
      const expired = (await tx`
        WITH foreign_entries AS (
          SELECT i.id, i.received_at,
                 pg_catalog.row_number() OVER (PARTITION BY pg_catalog.split_part(i.masked_value, ':', 1)
                                               ORDER BY i.id DESC) AS newest
          FROM ${state}.login_etl_vault_inbox i
          WHERE i.claim_id IS NULL
            AND (NOT pg_catalog.split_part(i.masked_value, ':', 1) = ANY(${
        pgArray(hmacIds)
      }::text[])
                 OR NOT i.key_id = ANY(${pgArray(vaultIds)}::text[]))
        )
        DELETE FROM ${state}.login_etl_vault_inbox i USING foreign_entries f
        WHERE i.id = f.id
          AND (f.received_at < pg_catalog.now() - pg_catalog.make_interval(hours => ${hours}::int)
               OR f.newest > ${cap}::bigint)`).count;
      if (expired > 0) {
        await appendAudit({ sql: tx as unknown as Sql, schemas: db.schemas }, [{
          actor: options.actor,
          action: "merge",
          maskedValue: null,
          reason: options.reason,
          outcome: "success",
          detail:
            `${expired} inbox entries under keys this merger does not hold dropped unjudged: older than ${hours} hours, or beyond the newest ${cap} of their HMAC key id`,
        }]);
      }
      return expired;
    });
  } catch (error) {
    throw error instanceof DatabaseError ? error : wrap("expire vault inbox entries", error);
  }
}

/**
 * Merges inbox entries into the vault: those of `options.masks`, or the
 * whole inbox. Claims a batch at a time, past the last one, so entries kept
 * (unverifiable) are not claimed again in this run. Refuses a key set that
 * lacks an HMAC key the database records in use and not retired
 * (`requireHmacKeys`): without it, a value erased under that key would
 * pass as new. A whole-inbox merge then drops entries under keys not held
 * past the age limit or the cap per key id (`expired`).
 *
 * @throws {KeyMissingError} for a key set lacking a recorded key;
 *   {DatabaseError} when a call fails; what was settled stays settled
 */
export async function mergeInbox(
  db: Deployment,
  keys: MergeKeys,
  options: MergeOptions,
): Promise<MergeReport> {
  const sql = db.sql;
  const state = sql(db.schemas.stateSchema);
  const report: MergeReport = {
    claimed: 0,
    accepted: 0,
    known: 0,
    erased: 0,
    dropped: 0,
    kept: 0,
    expired: 0,
    batches: 0,
  };
  const masks = options.masks === undefined ? null : pgArray(options.masks);
  if (options.masks !== undefined && options.masks.length === 0) return report;
  await requireHmacKeys(db, keys.maskers.keys(), "merge the vault inbox");
  let after = "0";
  for (;;) {
    if (options.stop?.aborted === true) break;
    let claim: ClaimRow | undefined;
    try {
      [claim] = await sql<ClaimRow[]>`
        SELECT claim::text, entries, last_id::text, dropped
        FROM ${state}.login_etl_inbox_claim(${masks}::text[], ${after}::bigint, ${options.batch},
                                             ${options.actor}, ${options.reason})`;
    } catch (error) {
      throw wrap("claim vault inbox entries", error);
    }
    if (claim === undefined) break;
    // Junk (over the size bound, past the cap per mask) the claim deleted unread.
    report.dropped += claim.dropped;
    if (claim.claim === null) {
      if (claim.dropped === 0 || claim.last_id === null) break;
      after = claim.last_id;
      continue;
    }
    let entries: InboxEntry[];
    try {
      entries = await sql<InboxEntry[]>`
        SELECT id::text, masked_value, field, ciphertext, iv, key_id
        FROM ${state}.login_etl_inbox_claimed(${claim.claim}::bigint)`;
    } catch (error) {
      throw wrap("read claimed vault inbox entries", error);
    }
    const accept: string[] = [];
    const keep: string[] = [];
    const linkIds: string[] = [];
    const linkMasks: string[] = [];
    for (const entry of entries) {
      const verdict = await judge(entry, keys);
      if (verdict.verdict === "accept") {
        accept.push(entry.id);
        for (const other of verdict.others) {
          linkIds.push(entry.id);
          linkMasks.push(other);
        }
      } else if (verdict.verdict === "keep") {
        if (options.dropUnverifiable !== true || !verdict.foreign) keep.push(entry.id);
      } else {
        options.telemetry?.emit({
          type: "InboxEntryRefused",
          masked: entry.masked_value,
          why: verdict.why,
        });
      }
    }
    let counts: Omit<MergeReport, "claimed" | "batches" | "expired"> | undefined;
    for (let attempt = 1;; attempt++) {
      try {
        [counts] = await sql<Omit<MergeReport, "claimed" | "batches" | "expired">[]>`
          SELECT accepted, known, erased, dropped, kept
          FROM ${state}.login_etl_inbox_settle(${claim.claim}::bigint, ${pgArray(accept)}::bigint[],
                 ${pgArray(keep)}::bigint[], ${pgArray(linkIds)}::bigint[], ${
          pgArray(linkMasks)
        }::text[])`;
        break;
      } catch (error) {
        const code = (error as { code?: unknown } | null)?.code;
        if (code !== "40P01" || attempt === SETTLE_ATTEMPTS) {
          throw wrap("settle vault inbox entries", error);
        }
      }
    }
    report.claimed += claim.entries;
    report.batches++;
    for (const k of ["accepted", "known", "erased", "dropped", "kept"] as const) {
      report[k] += counts?.[k] ?? 0;
    }
    after = claim.last_id ?? after;
  }
  // After the claims: the first claim refuses a whole-inbox merge by a role
  // other than the owner, with its own message, before this delete would.
  if (options.masks === undefined && options.stop?.aborted !== true) {
    report.expired = await expireForeign(db, keys, options);
  }
  if (report.batches > 0 || report.expired > 0) {
    options.telemetry?.emit({
      type: "InboxMerged",
      accepted: report.accepted,
      known: report.known,
      erased: report.erased,
      dropped: report.dropped,
      kept: report.kept,
      expired: report.expired,
    });
  }
  return report;
}
