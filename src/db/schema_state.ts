/**
 * Where a database's schema stands: the version read from
 * `login_etl_migrations` (in the state schema from version 6, in the data
 * schema before), or off the tables of a database that predates that table
 * (0.1 had `login_etl_forgotten`); a state schema that serves another data
 * schema refused. And the start-up check of the commands that never migrate
 * (`requireSchema`).
 *
 * @module
 */

import { checkConnection, describeDbError, type Sql } from "./pool.ts";
import { ConfigError, DatabaseError } from "../errors.ts";
import type { PgConnection } from "./connection.ts";
import { LATEST_VERSION, type Migration, MIGRATIONS } from "./migrations.ts";
import type { Schemas } from "./schemas.ts";

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

/** One read of `schemaState`, without its retry (the runner reads under its lock). */
export async function readSchemaState(sql: Sql, schemas: Schemas): Promise<SchemaState> {
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

/** The schema state for a command at start; a failure to read it is one line. */
export async function readState(sql: Sql, schemas: Schemas): Promise<SchemaState> {
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
export function refuseNewer(schemas: Schemas, state: SchemaState): void {
  if (state.version > LATEST_VERSION) {
    throw new DatabaseError(
      "db_schema",
      `The schema in ${schemas.schema} is at version ${state.version}, newer than this login-etl knows (${LATEST_VERSION}); run a login-etl at least as new as the one that migrated it`,
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
