// Tests of src/db/ledger.ts against real PostgreSQL 13, 15 and 18: consumers
// that start together (a KEDA scale-up, a scheduled job beside a service)
// prune the same fresh schema at once, and every one of them gets through.
// Two calls of login_etl_ledger_maintain creating the same day partitions
// each held a lock the other's CREATE TABLE ... PARTITION OF waited for, and
// the server ended one with "deadlock detected": its consumer exited 1 at
// start. (Found by faults_race_test, whose four consumers start together.)
// Their deletes of aged rejects overlap too, and each row goes once. A call
// that finds another holding the ledger returns with nothing done while
// inserts go on; and a fresh ledger's first call creates today and the days
// ahead, which version 7's oldest-first order left for a later call. A prune
// that fails at start names a grant only when a privilege was refused, and
// marks an unreachable server transient, so that start-up retries.

import assert from "node:assert/strict";
import postgres from "postgres";
import { LEDGER_PARTITIONS_PER_CALL } from "../../../src/db/migrations.ts";
import { prune, pruneAll, type PruneTarget, retentionOf } from "../../../src/db/ledger.ts";
import { DatabaseError } from "../../../src/errors.ts";
import { migrate } from "../../../src/db/schema.ts";
import { eachMajor } from "../../helpers/majors.ts";
import { freePort } from "../../helpers/cluster.ts";
import {
  capturingTelemetry,
  freshSchema,
  uniqueName,
  utcDaysSince,
} from "../../helpers/services.ts";

/** How many consumers prune at once: more than the two a deadlock needs. */
const CALLERS = 8;

eachMajor.test("eight consumers pruning a fresh schema at once all succeed, and each day partition is created once", async ({ pg }) => {
  await using db = await freshSchema(pg);
  await migrate(db.sql, db.schemas);
  // Each caller on its own connection, as separate consumers are.
  const callers = Array.from({ length: CALLERS }, () =>
    postgres(pg.url, {
      max: 1,
      onnotice: () => {},
      connection: { "login_etl.state_schema": db.stateSchema },
    }));
  try {
    // Enough days that the creating calls overlap (a partition a day, then 3 ahead).
    const days = 60;
    const run = (target: PruneTarget) =>
      Promise.allSettled(
        callers.map((sql) => prune({ sql, schemas: db.schemas }, { target, days })),
      );
    // Aged rejects over several of prune's slices, so that the deletes overlap too.
    const aged = 25_000;
    await db.sql`
      INSERT INTO ${db.sql(db.stateSchema)}.login_etl_rejects
        (message_id, reason, detail, body_bytes, body_hmac, sent_at, rejected_at)
      SELECT 'm' || i, 'invalid_json', 'd', 1, 'h', now(), now() - make_interval(days => ${
      days + 1
    })
      FROM generate_series(1, ${aged}) AS i`;
    // Each connection opened first, so that the calls start together.
    await Promise.all(callers.map((sql) => sql`SELECT 1`));
    for (const target of ["ledger", "rejects"] as const) {
      const since = Date.now();
      const outcomes = await run(target);
      // A call after midnight UTC creates one more day ahead (and may drop the oldest).
      const crossed = utcDaysSince(since).length - 1;
      const failed = outcomes.flatMap((o) =>
        o.status === "rejected" ? [`${o.reason?.code ?? ""} ${o.reason?.message ?? o.reason}`] : []
      );
      assert.deepEqual(failed, [], `${target}: every caller gets through`);
      if (target === "ledger") {
        const created = outcomes.reduce(
          (n, o) => n + (o.status === "fulfilled" ? o.value.partitionsCreated : 0),
          0,
        );
        const [row] = await db.sql<{ n: number }[]>`
          SELECT count(*)::int AS n FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent = ${`"${db.stateSchema}".login_etl_ledger`}::regclass
            AND c.relname ~ '^login_etl_ledger_p[0-9]{8}$'`;
        // From the day before the retention's oldest to three days ahead.
        const window = (n: number | undefined) =>
          n !== undefined && n >= days + 5 && n <= days + 5 + crossed;
        assert.ok(window(row?.n), `the day partitions of the whole window exist: ${row?.n}`);
        assert.ok(window(created), `and each was created by exactly one caller: ${created}`);
        assert.ok(days + 5 > LEDGER_PARTITIONS_PER_CALL, "the window needs more than one call");
      } else {
        const deleted = outcomes.reduce(
          (n, o) => n + (o.status === "fulfilled" ? o.value.deleted : 0),
          0,
        );
        assert.equal(deleted, aged, "each aged reject deleted by exactly one caller");
        const [left] = await db.sql<{ n: number }[]>`
          SELECT count(*)::int AS n FROM ${db.sql(db.stateSchema)}.login_etl_rejects`;
        assert.equal(left?.n, 0);
      }
    }
  } finally {
    await Promise.all(callers.map((sql) => sql.end()));
  }
});

/** The day partitions of `db`'s ledger, by name. */
async function dayPartitions(db: { sql: postgres.Sql; stateSchema: string }): Promise<string[]> {
  const rows = await db.sql<{ name: string }[]>`
    SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = ${`"${db.stateSchema}".login_etl_ledger`}::regclass
      AND c.relname ~ '^login_etl_ledger_p[0-9]{8}$'
    ORDER BY 1`;
  return rows.map((r) => r.name);
}

eachMajor.test("a fresh ledger's first maintenance call creates today and the three days ahead, whatever the retention", async ({ pg }) => {
  await using db = await freshSchema(pg);
  await migrate(db.sql, db.schemas);
  // 400 days: version 7 created the oldest 32 first, and today waited for a later call.
  // The call's own "today": now() is the statement's transaction's, the function's too.
  const [r] = await db.sql<{ created: number; today: string }[]>`
    SELECT created, (now() AT TIME ZONE 'UTC')::date::text AS today
    FROM ${db.sql(db.stateSchema)}.login_etl_ledger_maintain(400, 10000)`;
  assert.equal(r?.created, LEDGER_PARTITIONS_PER_CALL);
  const [days] = await db.sql<{ ahead: string[] }[]>`
    SELECT array_agg('login_etl_ledger_p' || to_char(${r?.today ?? ""}::date + n, 'YYYYMMDD')
                     ORDER BY n) AS ahead
    FROM generate_series(0, 3) AS n`;
  const made = await dayPartitions(db);
  for (const day of days?.ahead ?? []) assert.ok(made.includes(day), `${day} in ${made}`);
});

eachMajor.test("a maintenance call that finds another holding the ledger returns with nothing done, and inserts go on meanwhile", async ({ pg }) => {
  await using db = await freshSchema(pg);
  await migrate(db.sql, db.schemas);
  const ledger = `"${db.stateSchema}".login_etl_ledger`;
  const holder = postgres(pg.url, { max: 1, onnotice: () => {} });
  const other = postgres(pg.url, { max: 1, onnotice: () => {} });
  try {
    await holder.begin(async (tx) => {
      // What another maintenance call holds while it works.
      await tx.unsafe(`LOCK TABLE ONLY ${ledger} IN SHARE UPDATE EXCLUSIVE MODE`);
      const skipped = await prune({ sql: other, schemas: db.schemas }, {
        target: "ledger",
        days: 30,
      });
      assert.deepEqual(skipped, { deleted: 0, partitionsCreated: 0, partitionsDropped: 0 });
      assert.deepEqual(await dayPartitions(db), [], "it created nothing");
      // A consumer's commit is not held up by the lock (a day outside the window).
      await other.unsafe(
        `INSERT INTO ${ledger} (message_id, sent_date) VALUES ('m1', '2001-01-01')`,
      );
    });
    const done = await prune({ sql: other, schemas: db.schemas }, { target: "ledger", days: 30 });
    assert.equal(
      done.partitionsCreated,
      30 + 5,
      "once the lock is free the next call does the work",
    );
  } finally {
    await holder.end();
    await other.end();
  }
});

Deno.test("a failed prune names a grant only when a privilege was refused, and an unreachable server is transient", async (t) => {
  await using db = await freshSchema();
  await migrate(db.sql, db.schemas);
  const retention = retentionOf({ ledgerRetentionDays: 30, rejectRetentionDays: 30 });
  const { telemetry } = capturingTelemetry();
  const failure = async (run: () => Promise<unknown>) => {
    const error = await run().then(() => null, (e: unknown) => e);
    assert.ok(error instanceof DatabaseError, String(error));
    return error;
  };

  await t.step(
    "a role without EXECUTE on login_etl_ledger_maintain is told the grant",
    async () => {
      const role = uniqueName("noprune");
      await db.sql.unsafe(`CREATE ROLE "${role}" NOLOGIN;
      GRANT USAGE ON SCHEMA "${db.stateSchema}" TO "${role}"`);
      try {
        const error = await failure(() =>
          db.sql.begin(async (tx) => {
            await tx.unsafe(`SET LOCAL ROLE "${role}"`);
            // The transaction's session, as a Deployment's pool is typed.
            const sql = tx as unknown as postgres.Sql;
            await pruneAll({ sql, schemas: db.schemas }, retention, telemetry);
          })
        );
        assert.match(
          error.message,
          new RegExp(
            `grant the consumer role EXECUTE on ${db.stateSchema}\\.login_etl_ledger_maintain`,
          ),
        );
        assert.equal(error.transient, false);
      } finally {
        await db.sql.unsafe(`DROP OWNED BY "${role}"; DROP ROLE "${role}"`);
      }
    },
  );

  await t.step("an unreachable server: no grant named, and start-up may retry", async () => {
    const sql = postgres(`postgres://nobody:none@127.0.0.1:${freePort()}/none`, {
      max: 1,
      connect_timeout: 2,
      onnotice: () => {},
    });
    try {
      const error = await failure(() =>
        pruneAll({ sql, schemas: db.schemas }, retention, telemetry)
      );
      assert.match(error.message, /^Cannot prune /);
      assert.doesNotMatch(error.message, /grant/);
      assert.equal(error.transient, true);
    } finally {
      await sql.end();
    }
  });
});
