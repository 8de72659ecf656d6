/**
 * A database readied for a consumer's run: the schema created or brought up
 * to date, every key id registered with its fingerprint, old bookkeeping
 * pruned. What a run does once, before its first write.
 *
 * @module
 */

import type { Telemetry } from "../ops/telemetry.ts";
import type { PgConnection } from "./connection.ts";
import { registerKey } from "./keys.ts";
import { pruneAll, type PruneTarget } from "./ledger.ts";
import type { Database } from "./pool.ts";
import { ensureSchema, type MigrateOptions } from "./schema.ts";

/** What `setUpDatabase` needs besides the pool. */
export interface SetUpOptions extends Omit<MigrateOptions, "onApplied"> {
  readonly connection: PgConnection;
  /**
   * Registry ids with their fingerprints, in the registry's spelling (a
   * vault key's id prefixed): every key the run masks or vaults with.
   */
  readonly fingerprints: readonly (readonly [keyId: string, fingerprint: string])[];
  /** Each table's retention in days (`retentionOf`). */
  readonly retention: readonly [PruneTarget, number][];
}

/**
 * Readies the database for a run: creates what is missing, registers every
 * key id with its fingerprint (refusing one that comes back with another
 * secret), and prunes old bookkeeping.
 *
 * @throws {DatabaseError} or {KeyMismatchError}
 */
export async function setUpDatabase(
  database: Database,
  options: SetUpOptions,
  telemetry: Telemetry,
): Promise<void> {
  const { fingerprints, retention, ...migrate } = options;
  const applied = await ensureSchema(database.sql, {
    ...migrate,
    onApplied: (m, ms) =>
      telemetry.emit({
        type: "SchemaMigrated",
        version: m.version,
        name: m.name,
        schema: migrate.schema,
        ms,
      }),
  });
  telemetry.emit({ type: "SchemaReady", schema: migrate.schema, applied: applied.length });
  for (const [keyId, fingerprint] of fingerprints) {
    if (await registerKey(database, { keyId, fingerprint }) === "new") {
      telemetry.emit({ type: "KeyRegistered", keyId });
    }
  }
  await pruneAll(database, retention, telemetry);
}
