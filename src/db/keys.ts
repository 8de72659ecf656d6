/**
 * The key registry: each HMAC and vault key id with a fingerprint of its
 * secret, so a key id that comes back with another secret is refused.
 *
 * @module
 */

import { DatabaseError, KeyMismatchError, KeyMissingError } from "../errors.ts";
import { quoteText } from "../log.ts";
import { type Deployment, describeDbError } from "./pool.ts";
import { ident } from "./schemas.ts";

/** The kind of a key: an HMAC key makes masks, a vault key encrypts or seals vault entries. */
export type KeyKind = "hmac" | "vault";

/** What sets a vault key's registry id apart from an HMAC key's, which never holds a colon. */
const VAULT_PREFIX = "vault:";

/**
 * The id `login_etl_keys` records a key under: an HMAC key's own id, a vault
 * key's after `vault:`, so that the two kinds never share an entry.
 */
export function registryId(kind: KeyKind, keyId: string): string {
  return kind === "vault" ? `${VAULT_PREFIX}${keyId}` : keyId;
}

/** The kind and the key id of a registry id (`registryId` undone). */
function fromRegistryId(id: string): { readonly kind: KeyKind; readonly keyId: string } {
  return id.startsWith(VAULT_PREFIX)
    ? { kind: "vault", keyId: id.slice(VAULT_PREFIX.length) }
    : { kind: "hmac", keyId: id };
}

/** Who recorded a key id, and when (`registered_by` is NULL for rows older than the column). */
interface Registration {
  readonly "registered_by": string | null;
  readonly "registered_at": Date;
}

/**
 * "registered by login "x" on 2026-12-07 05:40 UTC": the login quoted, since
 * a role name is anyone's text.
 */
function describeRegistration(r: Registration): string {
  const when = `${r.registered_at.toISOString().slice(0, 16).replace("T", " ")} UTC`;
  return r.registered_by === null
    ? `recorded ${when}, before registrations named their login`
    : `registered by login ${quoteText(r.registered_by)} ${when}`;
}

/**
 * Records the key id (a `registryId`) with its fingerprint on first use, and refuses a key id
 * recorded with another fingerprint: masks under a different secret would
 * silently stop matching earlier ones. Through `login_etl_register_key`,
 * the only way a consumer may record one: it checks the id's shape, names
 * the login and caps new ids per login a day.
 *
 * @throws {KeyMismatchError}; {DatabaseError} when the database refuses
 *   (its cause is Postgres' error: 54000 past the daily cap)
 */
export async function registerKey(
  db: Deployment,
  key: { readonly keyId: string; readonly fingerprint: string },
): Promise<"new" | "known"> {
  const { keyId, fingerprint } = key;
  const sql = db.sql;
  let row: (Registration & { outcome: "new" | "known" | "mismatch" }) | undefined;
  try {
    [row] = await sql<(Registration & { outcome: "new" | "known" | "mismatch" })[]>`
      SELECT * FROM ${
      sql(db.schemas.stateSchema)
    }.login_etl_register_key(${keyId}, ${fingerprint})`;
  } catch (error) {
    throw new DatabaseError(
      "db_write",
      `Cannot record key id ${quoteText(keyId)}: ${describeDbError(error)}`,
      { cause: error },
    );
  }
  if (row?.outcome === "new" || row?.outcome === "known") return row.outcome;
  const { kind, keyId: id } = fromRegistryId(keyId);
  const vault = kind === "vault";
  const registered = row === undefined ? "recorded" : describeRegistration(row);
  throw new KeyMismatchError(
    `${vault ? "Vault" : "HMAC"} key id ${
      quoteText(id)
    } is recorded with a different secret (${registered}): use the secret that made earlier ${
      vault ? "vault entries" : "masks"
    }, or a new --${
      vault ? "vault" : "hmac"
    }-key-id for a new secret; if that login never ran with ${
      quoteText(id)
    }, the id was squatted: use another key id${
      vault
        ? ""
        : `, and as the owner role run login-etl rekey --retire=${id} --reason TEXT so merges, recover and forget stop asking for it`
    }`,
  );
}

/**
 * Refuses a key set that lacks an HMAC key id the database records in use
 * and not retired (`rekey --retire`). An erasure leaves a tombstone under
 * each mask it knows; a value that comes back under another key is caught
 * only by computing its mask under the erasing key too. So whoever merges
 * the inbox, recovers or erases by value holds every such key, old ones
 * included (a key set keeps them beside the current one).
 *
 * @throws {KeyMissingError} naming the missing ids; {DatabaseError} when the
 *   database cannot say (its cause is Postgres' error, 42501 for a role that
 *   may not ask)
 */
export async function requireHmacKeys(
  db: Deployment,
  held: Iterable<string>,
  what: string,
): Promise<void> {
  let needed: (Registration & { key_id: string })[];
  try {
    needed = await db.sql<(Registration & { key_id: string })[]>`
      SELECT * FROM ${db.sql(db.schemas.stateSchema)}.login_etl_hmac_keys_needed()`;
  } catch (error) {
    throw new DatabaseError(
      "db_write",
      `Cannot ${what}: cannot read which HMAC keys are in use: ${describeDbError(error)}`,
      { cause: error },
    );
  }
  const have = new Set(held);
  const missing = needed.filter((r) => !have.has(r.key_id));
  if (missing.length === 0) return;
  const ids = missing.map((r) => quoteText(r.key_id)).join(", ");
  const who = missing.map((r) => `${quoteText(r.key_id)} ${describeRegistration(r)}`).join("; ");
  throw new KeyMissingError(
    `Refused to ${what}: the HMAC key set lacks ${
      missing.length === 1 ? "key" : "keys"
    } ${ids}, recorded in use and not retired (${who}); an erasure made under ${ids} can only be checked with ${
      missing.length === 1 ? "it" : "them"
    }, so add ${ids} to the key set beside the current key (--hmac-key-file as {"current": ..., "keys": {...}}); an id nobody made a key for (a consumer may register one) is retired by the owner role, without the key: login-etl rekey --retire=ID[,ID…] --reason TEXT`,
    missing.map((r) => r.key_id),
  );
}

/** A recorded HMAC key id with who registered it, as `check` lists them. */
export interface HmacKeyRegistration {
  readonly keyId: string;
  /** NULL for ids recorded before registrations named their login. */
  readonly registeredBy: string | null;
  readonly registeredAt: Date;
  /** Retired by `rekey --retire`; null when this role may not read retirements. */
  readonly retired: boolean | null;
}

/**
 * The HMAC key ids recorded, with their registering login, as far as the
 * role may read them: every id for a role that reads `login_etl_keys`
 * (consumer, owner), the ids in use for a recoverer; null for a role that
 * may read neither. An id no one made a key for stands out by its login.
 */
export async function listHmacKeys(db: Deployment): Promise<HmacKeyRegistration[] | null> {
  const { sql, schemas } = db;
  const state = sql(schemas.stateSchema);
  const name = (object: string) => `${ident(schemas.stateSchema)}.${object}`;
  const [may] = await sql<{ keys: boolean; retirements: boolean; needed: boolean }[]>`
    SELECT coalesce(pg_catalog.has_table_privilege(pg_catalog.to_regclass(${
    name("login_etl_keys")
  }), 'SELECT'), false) AS keys,
           coalesce(pg_catalog.has_table_privilege(pg_catalog.to_regclass(${
    name("login_etl_key_retirements")
  }), 'SELECT'), false) AS retirements,
           coalesce(pg_catalog.has_function_privilege(pg_catalog.to_regprocedure(${
    name("login_etl_hmac_keys_needed()")
  }), 'EXECUTE'), false) AS needed`;
  type Row = Registration & { key_id: string };
  if (may?.keys === true) {
    const rows = await sql<Row[]>`
      SELECT key_id, registered_by, first_used AS registered_at FROM ${state}.login_etl_keys
      WHERE pg_catalog.left(key_id, ${VAULT_PREFIX.length}) <> ${VAULT_PREFIX}
      ORDER BY first_used, key_id`;
    const retired = may.retirements
      ? new Set(
        (await sql<{ key_id: string }[]>`SELECT key_id FROM ${state}.login_etl_key_retirements`)
          .map((r) => r.key_id),
      )
      : null;
    return rows.map((r) => ({
      keyId: r.key_id,
      registeredBy: r.registered_by,
      registeredAt: r.registered_at,
      retired: retired === null ? null : retired.has(r.key_id),
    }));
  }
  if (may?.needed === true) {
    const rows = await sql<Row[]>`SELECT * FROM ${state}.login_etl_hmac_keys_needed()`;
    return rows.map((r) => ({
      keyId: r.key_id,
      registeredBy: r.registered_by,
      registeredAt: r.registered_at,
      retired: false,
    }));
  }
  return null;
}
