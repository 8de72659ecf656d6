/**
 * A commit held on purpose: `holdInserts(db)` migrates a test's schema, then
 * takes `user_logins` in SHARE mode in a transaction of its own, so a
 * consumer's write stops mid-batch until the lock is released (on dispose).
 * `blocked()` finds the consumer backends waiting on this lock, not another
 * file's: files run in parallel. (Not by query text: pg_stat_activity keeps
 * a query's first 1,024 bytes, and the write statement names user_logins past
 * that.)
 *
 * @module
 */

import { connect } from "../../src/db/pool.ts";
import { ensureSchema } from "../../src/db/schema.ts";
import { testConnection, type TestDb } from "./services.ts";

/** The held lock; `await using` releases it. */
export interface InsertLock extends AsyncDisposable {
  /** The pids of login-etl backends waiting on this lock. */
  blocked(): Promise<number[]>;
}

export async function holdInserts(db: TestDb): Promise<InsertLock> {
  const connection = await testConnection();
  const schemas = { schema: db.schema, stateSchema: db.stateSchema };
  const setup = connect({ connection, ...schemas, max: 1 });
  await ensureSchema(setup, { connection, ...schemas });
  await setup.end();
  const holder = await db.sql.reserve();
  const [{ pid }] = await holder<[{ pid: number }]>`SELECT pg_backend_pid() AS pid`;
  await holder`BEGIN`;
  await holder`LOCK TABLE user_logins IN SHARE MODE`;
  return {
    async blocked() {
      const rows = await db.sql<{ pid: number }[]>`
        SELECT pid FROM pg_stat_activity
        WHERE application_name = 'login-etl' AND wait_event_type = 'Lock'
          AND ${pid} = ANY(pg_blocking_pids(pid))`;
      return rows.map((r) => r.pid);
    },
    async [Symbol.asyncDispose]() {
      await holder`COMMIT`;
      holder.release();
    },
  };
}
