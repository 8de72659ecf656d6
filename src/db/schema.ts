/**
 * Brings a database's schema to the version this build needs, applying the
 * migrations of `migrations.ts` it lacks in order and recording each in
 * `login_etl_migrations` (in the data schema up to version 5, in the state
 * schema from version 6, which moved it). A database that predates that
 * table is recognised by its tables (0.1 had `login_etl_forgotten`) and its
 * versions recorded as found. A state schema that serves another data schema
 * is refused. Hand-written rather than a library: postgres-shift reads migration
 * files from disk at run time (a compiled binary has none), records them in
 * a fixed `migrations` table that an application's own may already own, and
 * takes no lock against consumers starting together; node-pg-migrate runs on
 * the `pg` driver, a second Postgres client beside postgres.js.
 *
 * @module
 */

import { checkConnection, describeDbError, type Sql } from "./pool.ts";
import { ConfigError, DatabaseError } from "../errors.ts";
import type { PgConnection } from "./connection.ts";
import {
  LATEST_VERSION,
  type Migration,
  MIGRATIONS,
  MIGRATIONS_TABLE_DDL,
  MIGRATIONS_TABLE_GRANT,
  STATE_SCHEMA_VERSION,
} from "./migrations.ts";
import { ident, type Schemas } from "./schemas.ts";
import { describeUntrusted, findUntrusted, OWNER_ROLE } from "./search_path.ts";

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

/**
 * The refusal of a state schema that serves another data schema: two
 * deployments sharing one ledger would each take the other's message ids
 * for redeliveries, and share one key registry and one vault.
 */
function stateSchemaTaken(schemas: Schemas, served: string): ConfigError {
  return new ConfigError(
    `State schema ${schemas.stateSchema} already holds login-etl's tables for schema ${served}, not ${schemas.schema}: give this deployment a state schema of its own with --state-schema (e.g. --state-schema ${schemas.schema}_login_etl)`,
  );
}

/**
 * Reads the schema version: from `login_etl_migrations` in the state schema
 * (version 6 on), else in the data schema (versions up to 5), else from the
 * tables of the data schema (before the migrations table). Only the catalog
 * is read until the version table is found, so a role without USAGE on a
 * schema learns where things are before it is refused. A table with row
 * security is none of login-etl's (its policies would run their author's
 * code as the reader): it is left unread, as if absent.
 *
 * @throws {ConfigError} when the state schema serves another data schema
 */
export async function schemaState(sql: Sql, schemas: Schemas): Promise<SchemaState> {
  for (let attempt = 1;; attempt++) {
    try {
      return await readSchemaState(sql, schemas);
    } catch (error) {
      // A migration to version 6 committed between reading the catalog and
      // reading the table it named (a consumer starting beside another):
      // the catalog now says where the table went.
      const moved = (error as { code?: unknown }).code === "42P01";
      if (!moved || attempt === 3) throw error;
    }
  }
}

async function readSchemaState(sql: Sql, schemas: Schemas): Promise<SchemaState> {
  const [found] = await sql<
    {
      state_tables: boolean;
      layout: boolean;
      moved_to: string | null;
      data_recorded: boolean;
      forgotten: boolean;
      tombstones: boolean;
    }[]
  >`
    WITH rel AS (
      SELECT n.nspname AS schema, c.relname AS name, c.oid
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname IN (${schemas.schema}, ${schemas.stateSchema}) AND c.relkind IN ('r', 'p')
        AND c.relname LIKE 'login\\_etl\\_%' AND NOT c.relrowsecurity
    )
    SELECT EXISTS (SELECT FROM rel WHERE schema = ${schemas.stateSchema}) AS state_tables,
           EXISTS (SELECT FROM rel WHERE schema = ${schemas.stateSchema}
                   AND name = 'login_etl_layout') AS layout,
           EXISTS (SELECT FROM rel WHERE schema = ${schemas.schema}
                   AND name = 'login_etl_migrations') AS data_recorded,
           EXISTS (SELECT FROM rel WHERE schema = ${schemas.schema}
                   AND name = 'login_etl_forgotten') AS forgotten,
           (SELECT max(n.nspname::text)
            FROM pg_rewrite w
              JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid
              JOIN pg_class t ON t.oid = d.refobjid AND d.refclassid = 'pg_class'::regclass
              JOIN pg_namespace n ON n.oid = t.relnamespace
            WHERE w.ev_class = (SELECT c.oid FROM pg_class c JOIN pg_namespace v ON v.oid = c.relnamespace
                                WHERE v.nspname = ${schemas.schema} AND c.relname = 'login_etl_migrations'
                                  AND c.relkind = 'v')
              AND t.relname = 'login_etl_migrations' AND t.relkind IN ('r', 'p')
              AND t.oid <> w.ev_class) AS moved_to,
           EXISTS (SELECT FROM rel r JOIN pg_attribute a ON a.attrelid = r.oid
                   WHERE r.schema = ${schemas.schema} AND r.name = 'login_etl_vault'
                     AND a.attname = 'erased_at' AND NOT a.attisdropped) AS tombstones`;
  let version: number;
  let recorded = true;
  if (found?.state_tables) {
    const [layout] = found.layout
      ? await sql<{ served: string }[]>`
          SELECT data_schema AS served FROM ${sql(schemas.stateSchema)}.login_etl_layout`
      : [];
    if (layout?.served !== schemas.schema) {
      throw stateSchemaTaken(schemas, layout?.served ?? "unknown");
    }
    const [row] = await sql<{ version: number | null }[]>`
      SELECT max(version) AS version FROM ${sql(schemas.stateSchema)}.login_etl_migrations`;
    version = row?.version ?? 0;
  } else if (found?.moved_to) {
    // Version 6's view in the data schema: the tables are in the state
    // schema whose migrations table it reads, which the catalog tells
    // (moved_to), since reading a view runs the functions it calls as the
    // reader, and anyone who may create in the data schema can make a view
    // of that name.
    throw new ConfigError(
      `The login-etl tables of schema ${schemas.schema} are in state schema ${found.moved_to}, not ${schemas.stateSchema}: give --state-schema ${found.moved_to}`,
    );
  } else if (found?.data_recorded) {
    const [row] = await sql<{ version: number | null }[]>`
      SELECT max(version) AS version FROM ${sql(schemas.schema)}.login_etl_migrations`;
    version = row?.version ?? 0;
  } else {
    // Builds between 0.1 and the migrations table created version 2's
    // tombstones and functions directly; 0.1 kept tombstones in a table.
    recorded = false;
    version = found?.forgotten ? 1 : found?.tombstones ? 2 : 0;
  }
  return {
    version,
    recorded,
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
  options: Schemas & MigrateTrust & { readonly onApplied?: OnApplied },
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
      // The migrations of versions 1 to 6 call functions unqualified with
      // the data schema in search_path, and the version is read from a
      // table there: refused first where anyone we do not trust could have
      // planted code or a table of the same name there, or in the state
      // schema, even with nothing pending.
      await refuseUntrusted(session as unknown as Sql, options);
      // Then a state schema serving another data schema is refused before
      // anything is made.
      const state = await schemaState(session as unknown as Sql, options);
      if (state.pending.length === 0 && state.recorded) return applied;
      await becomeOwner(session as unknown as Sql, options, ownerRoleOf(options));
      // Only when missing: CREATE SCHEMA needs CREATE on the database even
      // with IF NOT EXISTS, which an owner role given its schema may lack.
      const [exists] = await session`SELECT FROM pg_namespace WHERE nspname = ${options.schema}`;
      if (exists === undefined) {
        await session`CREATE SCHEMA IF NOT EXISTS ${session(options.schema)}`;
      }
      // The migrations read the state schema's name from the session, and
      // create what they name unqualified in the data schema (migrations.ts).
      await session`SELECT pg_catalog.set_config('login_etl.state_schema', ${options.stateSchema}, false),
                           pg_catalog.set_config('login_etl.owner_role', ${
        ownerRoleOf(options)
      }, false),
                           pg_catalog.set_config('search_path', ${ident(options.schema)}, false)`;
      if (!state.recorded) {
        await recordFound(session as unknown as Sql, state.version, options);
      }
      for (const migration of state.pending) {
        current = migration;
        const started = performance.now();
        await applyOne(session as unknown as Sql, migration, options);
        applied.push(migration);
        options.onApplied?.(migration, performance.now() - started);
      }
    } finally {
      // The connection goes back to the pool: search_path back to the
      // session's start-up value (RUNTIME_SEARCH_PATH for login-etl's pools).
      await session`SELECT pg_catalog.pg_advisory_unlock(pg_catalog.hashtext('login-etl schema')),
                           pg_catalog.set_config('login_etl.state_schema', '', false),
                           pg_catalog.set_config('login_etl.owner_role', '', false)`.catch(
        () => {},
      );
      await session`RESET search_path`.catch(() => {});
      await session`RESET ROLE`.catch(() => {});
    }
    return applied;
  } catch (error) {
    // Refusals decided here are one line already.
    if (error instanceof ConfigError || error instanceof DatabaseError) throw error;
    const what = current === undefined
      ? `Cannot migrate login-etl's schema in ${options.schema}`
      : `Migration ${current.version} (${current.name}) failed in schema ${options.schema}${
        current.transaction === false ? "" : "; none of it was applied"
      }`;
    const hint = current?.version === STATE_SCHEMA_VERSION
      ? await stateSchemaHint(session as unknown as Sql, error, options.stateSchema)
      : "";
    throw new DatabaseError("db_schema", `${what}: ${describeDbError(error)}${hint}`, {
      cause: error,
    });
  } finally {
    session.release();
  }
}

/** Who migrate trusts besides superusers, the data schema's owner and itself (search_path.ts). */
export interface MigrateTrust {
  /** The owner role (`--owner-role`); `login_etl_owner` when not given. */
  readonly ownerRole?: string;
}

function ownerRoleOf(options: MigrateTrust): string {
  return options.ownerRole ?? OWNER_ROLE;
}

/**
 * Refuses to migrate where a role other than superusers, the data schema's
 * owner, the owner role and this role may create in the data or state
 * schema, owns one of them, or owns anything there (search_path.ts), with
 * the statement that fixes the first.
 *
 * @throws {DatabaseError} code `db_schema`
 */
async function refuseUntrusted(sql: Sql, options: Schemas & MigrateTrust): Promise<void> {
  const schemas = { schema: options.schema, stateSchema: options.stateSchema };
  const [me] = await sql<{ name: string }[]>`SELECT CURRENT_USER::text AS name`;
  const found = await findUntrusted(sql, schemas, [ownerRoleOf(options), me?.name ?? ""]);
  if (found.length === 0) return;
  throw new DatabaseError(
    "db_schema",
    `Refused to migrate schema ${schemas.schema}: ${describeUntrusted(found)}`,
  );
}

/**
 * Migrates as the owner role when this login is a member of it (and no
 * superuser), so that what the migrations create belongs to that role and
 * not to the login: search_path.ts trusts the owner role, never its members
 * for being members, so a table left to the login would be refused by
 * sql/roles.sql and `check` later. What the login already owns in the two
 * schemas (a migration it ran as itself before) goes to the owner role
 * first, which the migrations, run as that role, then need anyway.
 */
async function becomeOwner(sql: Sql, schemas: Schemas, ownerRole: string): Promise<void> {
  const [row] = await sql<{ member: boolean }[]>`
    SELECT NOT me.rolsuper AND me.rolname <> r.rolname AND pg_has_role(me.oid, r.oid, 'MEMBER') AS member
    FROM pg_roles r, pg_roles me WHERE r.rolname = ${ownerRole} AND me.rolname = CURRENT_USER`;
  if (!row?.member) return;
  // A sequence of a column moves with its table, and cannot move alone.
  const owned = await sql<{ statement: string }[]>`
    SELECT format('ALTER %s %s OWNER TO %I',
                  CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                 WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
                  c.oid::regclass, ${ownerRole}::text) AS statement
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname IN (${schemas.schema}, ${schemas.stateSchema})
      AND c.relowner = (SELECT oid FROM pg_roles WHERE rolname = CURRENT_USER) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
      AND NOT (c.relkind = 'S' AND EXISTS (
        SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
          AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))
    UNION ALL
    SELECT format('ALTER %s %s OWNER TO %I', CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END,
                  p.oid::regprocedure, ${ownerRole}::text)
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname IN (${schemas.schema}, ${schemas.stateSchema})
      AND p.proowner = (SELECT oid FROM pg_roles WHERE rolname = CURRENT_USER) AND p.prokind IN ('f', 'p')`;
  for (const { statement } of owned) await sql.unsafe(statement);
  await sql.unsafe(`SET ROLE ${ident(ownerRole)}`);
}

/**
 * What to do when version 6 was refused for want of CREATE on the database:
 * the owner role of sql/roles.sql has none, and is who migrates.
 */
async function stateSchemaHint(sql: Sql, error: unknown, state: string): Promise<string> {
  if ((error as { code?: unknown }).code !== "42501") return "";
  const [exists] = await sql`SELECT FROM pg_namespace WHERE nspname = ${state}`.catch(() => [
    null,
  ]);
  return exists === undefined
    ? `; version 6 moves login-etl's own tables to schema ${state}, which this role may not create: have the DBA create it for the owner role first (CREATE SCHEMA ${state} AUTHORIZATION login_etl_owner), or run migrate as a role that may create schemas`
    : "";
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

/**
 * Creates the migrations table and records the versions a database already
 * had. It starts in the data schema, where versions up to 5 keep it; the
 * session's search_path is that schema.
 */
async function recordFound(sql: Sql, version: number, schemas: Schemas): Promise<void> {
  await sql.unsafe(MIGRATIONS_TABLE_DDL);
  await sql.unsafe(MIGRATIONS_TABLE_GRANT);
  for (const m of MIGRATIONS.filter((m) => m.version <= version)) {
    await sql`INSERT INTO ${sql(schemas.schema)}.login_etl_migrations (version, name, source)
              VALUES (${m.version}, ${m.name}, 'found') ON CONFLICT (version) DO NOTHING`;
  }
}

async function applyOne(sql: Sql, migration: Migration, schemas: Schemas): Promise<void> {
  // Where the migrations table is once this migration's statements ran.
  const home = migration.version >= STATE_SCHEMA_VERSION ? schemas.stateSchema : schemas.schema;
  const record = () =>
    sql`INSERT INTO ${sql(home)}.login_etl_migrations (version, name, source)
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

/** The schema state for a command at start; a failure to read it is one line. */
async function readState(sql: Sql, schemas: Schemas): Promise<SchemaState> {
  try {
    return await schemaState(sql, schemas);
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw new DatabaseError(
      "db_schema",
      `Cannot read the schema version of ${schemas.schema} (state schema ${schemas.stateSchema}): ${
        describeDbError(error)
      }`,
      { cause: error },
    );
  }
}

/** A schema newer than this build: refused, since this build would not know how to write it. */
function refuseNewer(schemas: Schemas, state: SchemaState): void {
  if (state.version > LATEST_VERSION) {
    throw new DatabaseError(
      "db_schema",
      `The schema in ${schemas.schema} is at version ${state.version}, newer than this login-etl knows (${LATEST_VERSION}); run a login-etl at least as new as the one that migrated it`,
    );
  }
}

/**
 * What consumers and `rekey` call at start: connects, and brings the schema
 * up to date where the role may. A role that may not (the least-privileged
 * consumer of sql/roles.sql) is told to have the owner run `login-etl
 * migrate`; a schema newer than this build is refused.
 *
 * @returns the migrations applied
 * @throws {DatabaseError} code `db_connect` or `db_schema`; {ConfigError}
 *   when the state schema serves another data schema
 */
export async function ensureSchema(
  sql: Sql,
  options: Schemas & MigrateTrust & {
    readonly connection: PgConnection;
    readonly onApplied?: OnApplied;
  },
): Promise<Migration[]> {
  await checkConnection(sql, options.connection);
  const state = await readState(sql, options);
  refuseNewer(options, state);
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

/**
 * What `recover` and `forget` call at start: connects and checks the schema
 * is this build's, changing nothing (their roles never own the schema).
 *
 * @throws {DatabaseError} code `db_connect` or `db_schema`; {ConfigError}
 *   when the state schema serves another data schema
 */
export async function requireSchema(
  sql: Sql,
  options: Schemas & { readonly connection: PgConnection },
): Promise<void> {
  await checkConnection(sql, options.connection);
  const state = await readState(sql, options);
  refuseNewer(options, state);
  if (state.version === 0) throw nothingThere(options);
  if (state.pending.length > 0) {
    throw new DatabaseError(
      "db_schema",
      `The schema in ${options.schema} is at version ${state.version} and this login-etl needs ${LATEST_VERSION}; run \`login-etl migrate\` as the owner role first`,
    );
  }
}

/**
 * For a command that reads login-etl's tables where there are none: most
 * often a --schema or --state-schema that is not the deployment's.
 */
export function nothingThere(schemas: Schemas): DatabaseError {
  return new DatabaseError(
    "db_schema",
    `Schema ${schemas.schema} with state schema ${schemas.stateSchema} holds none of login-etl's tables: check --schema and --state-schema (LOGIN_ETL_SCHEMA, LOGIN_ETL_STATE_SCHEMA), or run \`login-etl migrate\` as the owner role`,
  );
}
