/**
 * Erasure of the raw values behind masks through `login_etl_forget`: each
 * vault entry becomes a tombstone, with every mask linked to it (the same
 * value under another HMAC key, from a rekey or a merge) and their unmerged
 * inbox entries, audited in the same transaction. A request may also name
 * values: they are erased under every HMAC key of the set, and never sent,
 * logged or audited.
 *
 * @module
 */

import { type Deployment, describeDbError, isPermissionDenied, pgArray } from "../db/pool.ts";
import { DatabaseError, UsageError } from "../errors.ts";
import { canonicalIp } from "../ip.ts";
import type { Masker } from "../mask.ts";
import { type PiiRequest, refuse } from "./recover.ts";
import type { PiiField } from "../types.ts";

/** The outcome of erasing one mask. */
export interface Erasure {
  readonly masked: string;
  readonly outcome: "success" | "not_found";
}

/** What one forget erased: the masks asked for, and those erased with them through links. */
export interface ForgetResult {
  /** One per mask asked for, in the order asked. */
  readonly asked: readonly Erasure[];
  /** Masks linked to those (other HMAC keys' masks of the same values), erased with them. */
  readonly linked: readonly Erasure[];
}

/** A value a data subject's request names, in one of the two vaulted fields. */
export interface NamedValue {
  readonly field: PiiField;
  readonly value: string;
}

/**
 * The masks of `values` under every key in `maskers`: an address in its
 * canonical form (every spelling of it has that one mask), a device id as
 * given. Nothing in an error quotes a value.
 *
 * @throws {UsageError} for an ip that is not an address, or no HMAC key
 */
export async function masksOfValues(
  values: readonly NamedValue[],
  maskers: ReadonlyMap<string, Masker>,
): Promise<string[]> {
  if (maskers.size === 0) {
    throw new UsageError(
      "Erasing by value needs the HMAC key set, every key of it (PII_HMAC_KEY or --hmac-key-file), to compute the value's masks",
    );
  }
  const masks = new Set<string>();
  for (const [i, { field, value }] of values.entries()) {
    let text = value;
    if (field === "ip") {
      const ip = canonicalIp(value);
      if (!ip.ok) {
        throw new UsageError(
          `Value ${i + 1} (an ip of ${value.length} characters) is not an IP address: ${ip.detail}`,
        );
      }
      text = ip.canonical;
    } else if (value === "") {
      throw new UsageError(`Value ${i + 1} (a device_id) is empty`);
    }
    for (const masker of maskers.values()) masks.add(await masker.mask(field, text));
  }
  return [...masks];
}

/** Postgres breaks a deadlock between a forget and a concurrent merge by aborting one: retried. */
const FORGET_ATTEMPTS = 3;

/**
 * Erases the vault entries behind `masks` through `login_etl_forget`: each
 * becomes a tombstone (kept even for a mask never vaulted, so it never will
 * be), and so does every mask linked to it, audited in the same transaction.
 * The masks in `user_logins` stay as opaque tokens.
 *
 * @throws {UsageError} without a reason; {DatabaseError} when the role may not erase
 */
export async function forget(
  db: Deployment,
  masks: readonly string[],
  request: PiiRequest,
): Promise<ForgetResult> {
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
  const sql = db.sql;
  for (let attempt = 1;; attempt++) {
    try {
      const rows = await sql<{ masked_value: string; outcome: Erasure["outcome"] }[]>`
        SELECT masked_value, outcome
        FROM ${sql(db.schemas.stateSchema)}.login_etl_forget(${
        pgArray(masks)
      }::text[], ${request.actor}, ${request.reason})`;
      const byMask = new Map(rows.map((r) => [r.masked_value, r.outcome]));
      const asked = new Set(masks);
      return {
        asked: masks.map((masked) => ({ masked, outcome: byMask.get(masked) ?? "not_found" })),
        linked: rows.filter((r) => !asked.has(r.masked_value)).map((r) => ({
          masked: r.masked_value,
          outcome: r.outcome,
        })),
      };
    } catch (error) {
      if ((error as { code?: unknown } | null)?.code === "40P01" && attempt < FORGET_ATTEMPTS) {
        continue;
      }
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
}
