/**
 * Brings a database's schema to the version this build needs, applying the
 * migrations of `migrations.ts` it lacks in order and recording each in
 * `login_etl_migrations`. A database that predates that table is recognised
 * by its tables (0.1 had `login_etl_forgotten`) and its versions recorded as
 * found. Hand-written rather than a library: postgres-shift reads migration
 * files from disk at run time (a compiled binary has none), records them in
 * a fixed `migrations` table that an application's own may already own, and
 * takes no lock against consumers starting together; node-pg-migrate runs on
 * the `pg` driver, a second Postgres client beside postgres.js.
 *
 * @module
 */

import { checkConnection, describeDbError, type Sql } from "./pool.ts";
import { DatabaseError } from "../errors.ts";
import type { PgConnection } from "./connection.ts";
import {
  LATEST_VERSION,
  type Migration,
  MIGRATIONS,
  MIGRATIONS_TABLE_DDL,
  MIGRATIONS_TABLE_GRANT,
} from "./migrations.ts";

/** Oldest Postgres whose partitioned tables take a primary key and ON CONFLICT. */
const MIN_SERVER_VERSION = 110000;

/** Where a database's schema stands. */
export interface SchemaState {
  /** Highest version applied (0: none of login-etl's tables). */
  readonly version: number;
  /** False when the database predates `login_etl_migrations`: the version was read off its tables. */
  readonly recorded: boolean;
  /** Migrations this build would apply, in order. */
  readonly pending: readonly Migration[];
}

/** Reads the schema version, from the migrations table or else from the tables present. */
export async function schemaState(sql: Sql): Promise<SchemaState> {
  const [found] = await sql<
    {
      recorded: boolean;
      version: number | null;
      ledger: boolean;
      forgotten: boolean;
      tombstones: boolean;
    }[]
  >`
    SELECT to_regclass('login_etl_migrations') IS NOT NULL AS recorded,
           NULL::int AS version,
           to_regclass('login_etl_ledger') IS NOT NULL AS ledger,
           to_regclass('login_etl_forgotten') IS NOT NULL AS forgotten,
           EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass('login_etl_vault')
                   AND attname = 'erased_at' AND NOT attisdropped) AS tombstones`;
  let version: number;
  if (found?.recorded) {
    const [row] = await sql<{ version: number | null }[]>`
      SELECT max(version) AS version FROM login_etl_migrations`;
    version = row?.version ?? 0;
  } else {
    // Builds between 0.1 and the migrations table created version 2's
    // tombstones and functions directly; 0.1 kept tombstones in a table.
    version = found?.forgotten ? 1 : found?.tombstones ? 2 : 0;
  }
  return {
    version,
    recorded: found?.recorded === true,
    pending: MIGRATIONS.filter((m) => m.version > version),
  };
}

/** Progress of `migrate`, one call per migration applied. */
export type OnApplied = (migration: Migration, ms: number) => void;

/**
 * Applies every pending migration, each in its own transaction (or
 * statement by statement where a migration says so), under a session
 * advisory lock: consumers starting together wait for one another, and the
 * one that gets the lock second finds nothing left to do.
 *
 * @returns the migrations applied
 * @throws {DatabaseError} code `db_schema`, naming the migration that failed
 */
export async function migrate(
  sql: Sql,
  options: { readonly schema: string; readonly onApplied?: OnApplied },
): Promise<Migration[]> {
  const session = await sql.reserve();
  const applied: Migration[] = [];
  let current: Migration | undefined;
  try {
    const [server] = await session<
      { v: string }[]
    >`SELECT current_setting('server_version_num') AS v`;
    if (Number(server?.v) < MIN_SERVER_VERSION) {
      throw new Error(
        `Postgres ${server?.v} is older than 11, whose partitioned tables login-etl's ledger needs`,
      );
    }
    await lockSchema(session as unknown as Sql);
    try {
      if (options.schema !== "public") {
        await session.unsafe(`CREATE SCHEMA IF NOT EXISTS "${options.schema}"`);
      }
      const state = await schemaState(session as unknown as Sql);
      if (!state.recorded) {
        await recordFound(session as unknown as Sql, state.version);
      }
      for (const migration of state.pending) {
        current = migration;
        const started = performance.now();
        await applyOne(session as unknown as Sql, migration);
        applied.push(migration);
        options.onApplied?.(migration, performance.now() - started);
      }
    } finally {
      await session`SELECT pg_advisory_unlock(hashtext('login-etl schema'))`.catch(() => {});
    }
    return applied;
  } catch (error) {
    const what = current === undefined
      ? `Cannot migrate login-etl's schema in ${options.schema}`
      : `Migration ${current.version} (${current.name}) failed in schema ${options.schema}${
        current.transaction === false ? "" : "; none of it was applied"
      }`;
    throw new DatabaseError("db_schema", `${what}: ${describeDbError(error)}`, { cause: error });
  } finally {
    session.release();
  }
}

/**
 * Takes the session lock every login-etl migrates under (key "login-etl
 * schema"). Polled rather than waited for: a session waiting inside
 * pg_advisory_lock holds a snapshot, and CREATE INDEX CONCURRENTLY in the
 * holder's migration waits for every such snapshot, which would deadlock.
 */
async function lockSchema(sql: Sql): Promise<void> {
  for (;;) {
    const [row] = await sql<{ locked: boolean }[]>`
      SELECT pg_try_advisory_lock(hashtext('login-etl schema')) AS locked`;
    if (row?.locked) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Creates the migrations table and records the versions a database already had. */
async function recordFound(sql: Sql, version: number): Promise<void> {
  await sql.unsafe(MIGRATIONS_TABLE_DDL);
  await sql.unsafe(MIGRATIONS_TABLE_GRANT);
  for (const m of MIGRATIONS.filter((m) => m.version <= version)) {
    await sql`INSERT INTO login_etl_migrations (version, name, source)
              VALUES (${m.version}, ${m.name}, 'found') ON CONFLICT (version) DO NOTHING`;
  }
}

async function applyOne(sql: Sql, migration: Migration): Promise<void> {
  const record = () =>
    sql`INSERT INTO login_etl_migrations (version, name, source)
        VALUES (${migration.version}, ${migration.name}, 'migrate')`;
  if (migration.transaction === false) {
    for (const statement of migration.statements) await sql.unsafe(statement);
    await record();
    return;
  }
  await sql.unsafe("BEGIN");
  try {
    for (const statement of migration.statements) await sql.unsafe(statement);
    await record();
    await sql.unsafe("COMMIT");
  } catch (error) {
    await sql.unsafe("ROLLBACK").catch(() => {});
    throw error;
  }
}

/**
 * What consumers and the PII commands call at start: connects, and brings
 * the schema up to date where the role may. A role that may not (the
 * least-privileged consumer of sql/roles.sql) is told to have the owner run
 * `login-etl migrate`; a schema newer than this build is refused, since this
 * build would not know how to write it.
 *
 * @returns the migrations applied
 * @throws {DatabaseError} code `db_connect` or `db_schema`
 */
export async function ensureSchema(
  sql: Sql,
  options: {
    readonly connection: PgConnection;
    readonly schema: string;
    readonly onApplied?: OnApplied;
  },
): Promise<Migration[]> {
  await checkConnection(sql, options.connection);
  let state: SchemaState;
  try {
    state = await schemaState(sql);
  } catch (error) {
    throw new DatabaseError(
      "db_schema",
      `Cannot read the schema version in ${options.schema}: ${describeDbError(error)}`,
      { cause: error },
    );
  }
  if (state.version > LATEST_VERSION) {
    throw new DatabaseError(
      "db_schema",
      `The schema in ${options.schema} is at version ${state.version}, newer than this login-etl knows (${LATEST_VERSION}); run a login-etl at least as new as the one that migrated it`,
    );
  }
  if (state.pending.length === 0 && state.recorded) return [];
  try {
    return await migrate(sql, options);
  } catch (error) {
    const denied = (error as { cause?: { code?: unknown } }).cause?.code === "42501";
    if (!denied) throw error;
    throw new DatabaseError(
      "db_schema",
      `The schema in ${options.schema} is at version ${state.version} and this login-etl needs ${LATEST_VERSION}, but role ${options.connection.user} may not change it; run \`login-etl migrate\` as the owner role (or apply sql/schema.sql)`,
      { cause: error },
    );
  }
}
