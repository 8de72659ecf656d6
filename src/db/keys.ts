/**
 * The key registry: each HMAC and vault key id with a fingerprint of its
 * secret, so a key id that comes back with another secret is refused.
 *
 * @module
 */

import { DatabaseError, KeyMismatchError, KeyMissingError } from "../errors.ts";
import { type Deployment, describeDbError } from "./pool.ts";

/**
 * Records the key id with its fingerprint on first use, and refuses a key id
 * recorded with another fingerprint: masks under a different secret would
 * silently stop matching earlier ones.
 *
 * @throws {KeyMismatchError}
 */
export async function registerKey(
  db: Deployment,
  key: { readonly keyId: string; readonly fingerprint: string },
): Promise<"new" | "known"> {
  const { keyId, fingerprint } = key;
  const sql = db.sql;
  const state = sql(db.schemas.stateSchema);
  const inserted = await sql`
    INSERT INTO ${state}.login_etl_keys (key_id, fingerprint) VALUES (${keyId}, ${fingerprint})
    ON CONFLICT (key_id) DO NOTHING RETURNING key_id`;
  if (inserted.length === 1) return "new";
  const [row] = await sql<{ fingerprint: string }[]>`
    SELECT fingerprint FROM ${state}.login_etl_keys WHERE key_id = ${keyId}`;
  if (row?.fingerprint !== fingerprint) {
    const vault = keyId.startsWith("vault:");
    const id = vault ? keyId.slice("vault:".length) : keyId;
    throw new KeyMismatchError(
      `${
        vault ? "Vault" : "HMAC"
      } key id "${id}" is recorded with a different secret: use the secret that made earlier ${
        vault ? "vault entries" : "masks"
      }, or a new --${vault ? "vault" : "hmac"}-key-id for a new secret`,
    );
  }
  return "known";
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
  let needed: string[];
  try {
    const [row] = await db.sql<{ ids: string[] }[]>`
      SELECT ${db.sql(db.schemas.stateSchema)}.login_etl_hmac_keys_needed() AS ids`;
    needed = row?.ids ?? [];
  } catch (error) {
    throw new DatabaseError(
      "db_write",
      `Cannot ${what}: cannot read which HMAC keys are in use: ${describeDbError(error)}`,
      { cause: error },
    );
  }
  const have = new Set(held);
  const missing = needed.filter((id) => !have.has(id));
  if (missing.length === 0) return;
  const ids = missing.join(", ");
  throw new KeyMissingError(
    `Refused to ${what}: the HMAC key set lacks ${
      missing.length === 1 ? "key" : "keys"
    } ${ids}, recorded in use and not retired; an erasure made under ${ids} can only be checked with ${
      missing.length === 1 ? "it" : "them"
    }, so add ${ids} to the key set beside the current key (--hmac-key-file as {"current": ..., "keys": {...}})`,
    missing,
  );
}
