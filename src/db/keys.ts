/**
 * The key registry: each HMAC and vault key id with a fingerprint of its
 * secret, so a key id that comes back with another secret is refused.
 *
 * @module
 */

import { KeyMismatchError } from "../errors.ts";
import type { Deployment } from "./pool.ts";

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
