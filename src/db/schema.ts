/**
 * Brings a database's schema to the version this build needs, applying the
 * migrations of `migrations.ts` it lacks in order and recording each in
 * `login_etl_migrations` (in the data schema up to version 5, in the state
 * schema from version 6, which moved it), one at a time under the schema
 * lock (`schema_lock.ts`), as the owner role where this login may take it,
 * and never where an untrusted role may create (`search_path.ts`). Where the
 * schema stands is read by `schema_state.ts`; a database that predates the
 * migrations table gets the versions found there recorded. Hand-written rather than a library: postgres-shift reads migration
 * files from disk at run time (a compiled binary has none), records them in
 * a fixed `migrations` table that an application's own may already own, and
 * takes no lock against consumers starting together; node-pg-migrate runs on
 * the `pg` driver, a second Postgres client beside postgres.js.
 *
 * @module
 */

import { checkConnection, describeDbError, isPermissionDenied, type Sql } from "./pool.ts";
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
import { hasLockTable, releaseAdvisoryLock, rowLockHeld, takeAdvisoryLock } from "./schema_lock.ts";
import { readSchemaState, readState, refuseNewer, schemaState } from "./schema_state.ts";

// Re-exported: a command asks this one module about the schema, whether it
// migrates or only reads where the schema stands.
export { nothingThere, requireSchema, type SchemaState, schemaState } from "./schema_state.ts";
export { type Holder, SchemaLockError } from "./schema_lock.ts";

/** Oldest Postgres whose partitioned tables take a primary key and ON CONFLICT. */
const MIN_SERVER_VERSION = 110000;

/** Progress of `migrate`, one call per migration applied. */
export type OnApplied = (migration: Migration, ms: number) => void;

/** How long `migrate` waits for the schema lock unless told (`--migrate-lock-wait-seconds`). */
export const DEFAULT_LOCK_WAIT_SECONDS = 60;

/** What `migrate` takes besides the schemas. */
export interface MigrateOptions extends Schemas, MigrateTrust {
  readonly onApplied?: OnApplied;
  /** Most seconds to wait for the schema lock before failing with its holder named. */
  readonly lockWaitSeconds?: number;
}

/**
 * Applies every pending migration, each in its own transaction (or
 * statement by statement where a migration says so), one at a time under
 * the schema lock: before each, it takes the lock, reads again where the
 * schema stands and applies the next pending migration, so consumers
 * starting together apply each migration once, whoever gets there first.
 *
 * The lock is a row of the state schema's `login_etl_locks` (the row
 * `schema`), locked in the migration's transaction: only the tables' owner
 * may lock it, so no other login can hold migrate up or see it. Until that
 * table exists (a database below version 6, before its state schema), a
 * session advisory lock stands in, which any login could take: the wait for
 * either is bounded by `lockWaitSeconds`, after which migrate fails naming
 * the session that holds it.
 *
 * @returns the migrations applied (by this call)
 * @throws {DatabaseError} code `db_schema`, naming the migration that failed;
 *   {SchemaLockError} when the lock stays taken past the wait
 */
export async function migrate(sql: Sql, options: MigrateOptions): Promise<Migration[]> {
  const session = await sql.reserve();
  const s = session as unknown as Sql;
  const applied: Migration[] = [];
  const deadline = performance.now() +
    (options.lockWaitSeconds ?? DEFAULT_LOCK_WAIT_SECONDS) * 1000;
  let current: Migration | undefined;
  let advisory = false;
  try {
    const [server] = await session<
      { v: string }[]
    >`SELECT current_setting('server_version_num') AS v`;
    if (Number(server?.v) < MIN_SERVER_VERSION) {
      throw new Error(
        `Postgres ${server?.v} is older than 11, whose partitioned tables login-etl's ledger needs`,
      );
    }
    try {
      // The migrations of versions 1 to 6 call functions unqualified with
      // the data schema in search_path, and the version is read from a
      // table there: refused first where anyone we do not trust could have
      // planted code or a table of the same name there, or in the state
      // schema, even with nothing pending.
      await refuseUntrusted(s, options);
      // Then read without the lock: an up-to-date schema needs none (so
      // nobody can hold up a start there), and a state schema serving
      // another data schema is refused before anything is made
      // (schemaState reads only the catalog until then).
      const state = await schemaState(s, options);
      if (state.pending.length === 0 && state.recorded) return applied;
      await becomeOwner(s, options, ownerRoleOf(options));
      // The migrations read the state schema's name from the session, and
      // create what they name unqualified in the data schema (migrations.ts).
      await session`SELECT pg_catalog.set_config('login_etl.state_schema', ${options.stateSchema}, false),
                           pg_catalog.set_config('login_etl.owner_role', ${
        ownerRoleOf(options)
      }, false),
                           pg_catalog.set_config('search_path', ${ident(options.schema)}, false)`;
      for (;;) {
        const rowLock = await hasLockTable(s, options.stateSchema);
        if (!rowLock && !advisory) {
          await takeAdvisoryLock(s, deadline, options);
          advisory = true;
          continue; // the table may have come while we waited
        }
        if (rowLock && advisory) {
          await releaseAdvisoryLock(s);
          advisory = false;
        }
        const next = rowLock
          ? await stepUnderRowLock(s, deadline, options)
          : await stepUnderAdvisoryLock(s, options, (m) => current = m);
        if (next === null) break;
        applied.push(next.migration);
        options.onApplied?.(next.migration, next.ms);
        current = undefined;
      }
    } finally {
      // The connection goes back to the pool: search_path back to the
      // session's start-up value (RUNTIME_SEARCH_PATH for login-etl's pools).
      if (advisory) await releaseAdvisoryLock(s).catch(() => {});
      await session`SELECT pg_catalog.set_config('login_etl.state_schema', '', false),
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
    const failed = error instanceof StepFailed ? error.migration : current;
    const what = failed === undefined
      ? `Cannot migrate login-etl's schema in ${options.schema}`
      : `Migration ${failed.version} (${failed.name}) failed in schema ${options.schema}${
        failed.transaction === false ? "" : "; none of it was applied"
      }`;
    const hint = failed?.version === STATE_SCHEMA_VERSION
      ? await stateSchemaHint(
        s,
        error instanceof StepFailed ? error.cause : error,
        options.stateSchema,
      )
      : "";
    const cause = error instanceof StepFailed ? error.cause : error;
    throw new DatabaseError("db_schema", `${what}: ${describeDbError(cause)}${hint}`, { cause });
  } finally {
    session.release();
  }
}

/** One migration `migrate` applied, and how long it took. */
interface Step {
  readonly migration: Migration;
  readonly ms: number;
}

/** A failure of one migration's statements, carrying which migration it was. */
class StepFailed extends Error {
  readonly migration: Migration;
  constructor(migration: Migration, cause: unknown) {
    super(`migration ${migration.version} failed`, { cause });
    this.migration = migration;
  }
}

/** The data schema, when missing (CREATE SCHEMA needs CREATE on the database even with IF NOT EXISTS). */
async function ensureDataSchema(sql: Sql, schema: string): Promise<void> {
  const [exists] = await sql`SELECT FROM pg_catalog.pg_namespace WHERE nspname = ${schema}`;
  if (exists === undefined) await sql`CREATE SCHEMA IF NOT EXISTS ${sql(schema)}`;
}

/**
 * Applies the next pending migration, if any, in one transaction holding
 * the lock table's `schema` row. The row is polled with NOWAIT, never
 * waited on: a session waiting on a lock holds a snapshot, which CREATE
 * INDEX CONCURRENTLY in the holder's migration would wait for in turn.
 */
async function stepUnderRowLock(
  sql: Sql,
  deadline: number,
  schemas: Schemas,
): Promise<Step | null> {
  for (;;) {
    await sql.unsafe("BEGIN");
    let next: Migration | undefined;
    try {
      const locked = await sql`
        SELECT FROM ${sql(schemas.stateSchema)}.login_etl_locks WHERE name = 'schema'
        FOR UPDATE NOWAIT`.then(
        (rows) => rows.length === 1,
        (error: { code?: unknown }) => {
          if (error.code === "55P03") return false;
          throw error;
        },
      );
      if (!locked) {
        await sql.unsafe("ROLLBACK");
        if (performance.now() >= deadline) throw await rowLockHeld(sql, schemas);
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      }
      await ensureDataSchema(sql, schemas.schema);
      const state = await readSchemaState(sql, schemas);
      if (!state.recorded) await recordFound(sql, state.version, schemas);
      next = state.pending[0];
      if (next === undefined) {
        await sql.unsafe("COMMIT");
        return null;
      }
      if (next.transaction === false) {
        // Only versions below the lock table's are applied outside a
        // transaction (version 4); a future one needs another plan.
        throw new Error(
          `version ${next.version} runs outside a transaction, beyond the schema lock`,
        );
      }
      const started = performance.now();
      try {
        for (const statement of next.statements) await sql.unsafe(statement);
        await recordApplied(sql, next, schemas);
      } catch (error) {
        throw new StepFailed(next, error);
      }
      await sql.unsafe("COMMIT");
      return { migration: next, ms: performance.now() - started };
    } catch (error) {
      await sql.unsafe("ROLLBACK").catch(() => {});
      throw error;
    }
  }
}

/** Applies the next pending migration, if any, under the session advisory lock already held. */
async function stepUnderAdvisoryLock(
  sql: Sql,
  schemas: Schemas,
  starting: (migration: Migration) => void,
): Promise<Step | null> {
  await ensureDataSchema(sql, schemas.schema);
  const state = await readSchemaState(sql, schemas);
  if (!state.recorded) await recordFound(sql, state.version, schemas);
  const next = state.pending[0];
  if (next === undefined) return null;
  starting(next);
  const started = performance.now();
  await applyOne(sql, next, schemas);
  return { migration: next, ms: performance.now() - started };
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
  if (!isPermissionDenied(error)) return "";
  const [exists] = await sql`SELECT FROM pg_namespace WHERE nspname = ${state}`.catch(() => [
    null,
  ]);
  return exists === undefined
    ? `; version 6 moves login-etl's own tables to schema ${state}, which this role may not create: have the DBA create it for the owner role first (CREATE SCHEMA ${state} AUTHORIZATION login_etl_owner), or run migrate as a role that may create schemas`
    : "";
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

/** Records `migration` as applied, in the migrations table where it is once its statements ran. */
async function recordApplied(sql: Sql, migration: Migration, schemas: Schemas): Promise<void> {
  const home = migration.version >= STATE_SCHEMA_VERSION ? schemas.stateSchema : schemas.schema;
  await sql`INSERT INTO ${sql(home)}.login_etl_migrations (version, name, source)
            VALUES (${migration.version}, ${migration.name}, 'migrate')`;
}

async function applyOne(sql: Sql, migration: Migration, schemas: Schemas): Promise<void> {
  const record = () => recordApplied(sql, migration, schemas);
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
  options: MigrateOptions & { readonly connection: PgConnection },
): Promise<Migration[]> {
  await checkConnection(sql, options.connection);
  const state = await readState(sql, options);
  refuseNewer(options, state);
  if (state.pending.length === 0 && state.recorded) return [];
  try {
    return await migrate(sql, options);
  } catch (error) {
    const denied = isPermissionDenied((error as { cause?: unknown }).cause);
    if (!denied) throw error;
    throw new DatabaseError(
      "db_schema",
      `The schema in ${options.schema} is at version ${state.version} and this login-etl needs ${LATEST_VERSION}, but role ${options.connection.user} may not change it; run \`login-etl migrate\` as the owner role (or apply sql/schema.sql)`,
      { cause: error },
    );
  }
}
