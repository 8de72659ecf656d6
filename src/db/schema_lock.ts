/**
 * The lock `migrate` applies each migration under: the row `schema` of the
 * state schema's `login_etl_locks`, or, before that table exists, a session
 * advisory lock; both polled, never waited on, and a wait past its bound
 * fails naming the session that holds it.
 *
 * @module
 */

import { DatabaseError } from "../errors.ts";
import type { Sql } from "./pool.ts";
import { ident, type Schemas } from "./schemas.ts";

/** True once the state schema holds the lock table (version 6 on). */
export async function hasLockTable(sql: Sql, state: string): Promise<boolean> {
  const [row] = await sql<{ found: boolean }[]>`
    SELECT pg_catalog.to_regclass(${`${ident(state)}.login_etl_locks`}) IS NOT NULL AS found`;
  return row?.found === true;
}

/**
 * The key of the session advisory lock `migrate` takes while a database has
 * no lock table yet (as every login-etl before it took for all of migrate).
 */
const ADVISORY_KEY = "pg_catalog.hashtext('login-etl schema')";

/**
 * Takes the session advisory lock, polled (see stepUnderRowLock) until
 * `deadline`, then failing with the session that holds it.
 */
export async function takeAdvisoryLock(
  sql: Sql,
  deadline: number,
  schemas: Schemas,
): Promise<void> {
  for (;;) {
    const [row] = await sql.unsafe<{ locked: boolean }[]>(
      `SELECT pg_catalog.pg_try_advisory_lock(${ADVISORY_KEY}) AS locked`,
    );
    if (row?.locked) return;
    if (performance.now() >= deadline) {
      const [holder] = await sql.unsafe<Holder[]>(`
        SELECT a.pid, a.usename::text AS user, a.application_name AS application
        FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid,
             (SELECT ${ADVISORY_KEY}::bigint AS k) AS key
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
          AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                            WHERE d.datname = pg_catalog.current_database())
          AND l.classid::text::bigint = (key.k >> 32) & 4294967295
          AND l.objid::text::bigint = key.k & 4294967295
        LIMIT 1`);
      throw new SchemaLockError(schemas, holder ?? null, "advisory");
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Releases the session advisory lock `takeAdvisoryLock` took. */
export async function releaseAdvisoryLock(sql: Sql): Promise<void> {
  await sql.unsafe(`SELECT pg_catalog.pg_advisory_unlock(${ADVISORY_KEY})`);
}

/**
 * The error for a schema row lock held past the wait, naming its holder: the
 * transaction whose id is the row's xmax, and the session running it.
 */
export async function rowLockHeld(sql: Sql, schemas: Schemas): Promise<SchemaLockError> {
  const [holder] = await sql<Holder[]>`
    SELECT a.pid, a.usename::text AS user, a.application_name AS application
    FROM ${sql(schemas.stateSchema)}.login_etl_locks t
    JOIN pg_catalog.pg_locks l ON l.locktype = 'transactionid' AND l.granted
      AND l.transactionid = t.xmax
    JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
    WHERE t.name = 'schema' LIMIT 1`.catch(() => []);
  return new SchemaLockError(schemas, holder ?? null, "row");
}

/** The session holding the schema lock, as pg_stat_activity shows it to anyone. */
export interface Holder {
  readonly pid: number;
  readonly user: string | null;
  readonly application: string | null;
}

/**
 * `migrate` waited its `--migrate-lock-wait-seconds` for the schema lock:
 * one line naming the session that holds it, so an operator can end it.
 */
export class SchemaLockError extends DatabaseError {
  /** The holding session, or null when it ended before it could be named. */
  readonly holder: Holder | null;
  constructor(schemas: Schemas, holder: Holder | null, kind: "row" | "advisory") {
    const who = holder === null
      ? "a session that has since ended (run migrate again)"
      : `session pid ${holder.pid} (user ${holder.user ?? "unknown"}, application "${
        holder.application ?? ""
      }")`;
    super(
      "db_schema",
      `Cannot migrate schema ${schemas.schema}: login-etl's schema lock (${
        kind === "row" ? `row schema of ${schemas.stateSchema}.login_etl_locks` : "advisory lock"
      }) is held by ${who}; wait for it or end it (SELECT pg_terminate_backend(${
        holder?.pid ?? "PID"
      })), or raise --migrate-lock-wait-seconds`,
    );
    this.holder = holder;
  }
}
