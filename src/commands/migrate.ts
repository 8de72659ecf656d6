/**
 * `migrate`: brings the schema to this version's, as the owner role, one
 * line per migration applied; `--dry-run` prints the pending SQL instead.
 *
 * @module
 */

import type { MigrateConfig } from "../config/resolve.ts";
import { loadPgConnection } from "../db/connection.ts";
import { LATEST_VERSION } from "../db/migrations.ts";
import { checkConnection, Database } from "../db/pool.ts";
import { migrate, schemaState } from "../db/schema.ts";
import { foundSql, guardSql, migrationSql, migrationsTableSql } from "../db/migration_sql.ts";
import { ident, literal } from "../db/schemas.ts";
import type { Telemetry } from "../ops/telemetry.ts";

/** Runs `migrate`; `io.writeStdout` receives the lines for stdout (the dry run's SQL). */
export async function migrateCommand(
  config: MigrateConfig,
  io: { readonly telemetry: Telemetry; readonly writeStdout: (line: string) => void },
): Promise<void> {
  const warn = (message: string) => io.telemetry.emit({ type: "ConfigWarned", message });
  const connection = await loadPgConnection(config.database, warn);
  await using database = new Database({
    connection,
    schema: config.schema,
    stateSchema: config.stateSchema,
    max: 1,
  });
  await checkConnection(database.sql, connection);
  const where =
    `schema ${config.schema} (state schema ${config.stateSchema}) at ${connection.display}`;
  if (config.dryRun) {
    const state = await schemaState(database.sql, database.schemas);
    io.writeStdout(
      `-- ${where} is at version ${state.version}; this login-etl needs ${LATEST_VERSION}`,
    );
    if (state.pending.length === 0 && state.recorded) return;
    // What migrate would run, in order, as psql can apply it: the data
    // schema when missing, the two schemas the statements read
    // (migrations.ts), the refusal of schemas others may plant code in
    // (search_path.ts), the bookkeeping of a database from before the
    // migrations table, then each version with its record.
    const [exists] = await database.sql`
      SELECT FROM pg_namespace WHERE nspname = ${config.schema}`;
    if (exists === undefined) {
      io.writeStdout(`CREATE SCHEMA IF NOT EXISTS ${ident(config.schema)};`);
    }
    io.writeStdout(`SET search_path = ${ident(config.schema)};`);
    io.writeStdout(`SET login_etl.state_schema = ${literal(config.stateSchema)};`);
    io.writeStdout(`SET login_etl.owner_role = ${literal(config.ownerRole)};`);
    io.writeStdout(guardSql(`Refused to migrate schema ${config.schema}`));
    if (!state.recorded) io.writeStdout(`${migrationsTableSql()}${foundSql(state.version)}`);
    for (const m of state.pending) io.writeStdout(`\n${migrationSql(m, "migrate")}`);
    return;
  }
  const applied = await migrate(database.sql, {
    schema: config.schema,
    stateSchema: config.stateSchema,
    lockWaitSeconds: config.migrateLockWaitSeconds,
    ownerRole: config.ownerRole,
    onApplied: (m, ms) => {
      io.telemetry.emit({
        type: "SchemaMigrated",
        version: m.version,
        name: m.name,
        schema: config.schema,
        ms,
      });
      io.writeStdout(`Applied ${m.version}: ${m.name} (${Math.round(ms)} ms)`);
    },
  });
  io.writeStdout(
    applied.length === 0
      ? `Nothing to do: ${where} is at version ${LATEST_VERSION}.`
      : `${where} is now at version ${LATEST_VERSION}. Run sql/roles.sql again if you use its roles.`,
  );
}
