// login-etl's locks are rows only its owner may lock (issue 19, attacker
// review M1), on PostgreSQL 13, 15 and 18. They were advisory locks, which
// any login of the cluster may take and see: a hostile login holding the
// schema lock or a mask's lock hung migrate, every consumer start and
// forget for as long as it liked, and pg_locks showed the hashes of the
// masks being forgotten or merged. Here a login created by the test, with
// no grants at all:
// - cannot lock, read or see the rows of login_etl_locks, and sees no lock
//   naming a mask while a forget holds its locks;
// - holds every advisory lock login-etl used to take, and forget, drain
//   and migrate of an up-to-date schema go on as if it did not;
// - holding the one lock it can still get (the advisory lock migrate takes
//   while a database has no lock table, below version 6) makes migrate
//   fail within its --migrate-lock-wait-seconds, naming its session.
// And a migrate holding the schema row makes another one fail within the
// bound naming it, then succeed once it is released.

import assert from "node:assert/strict";
import postgres from "postgres";
import { MIGRATIONS } from "../../../src/db/migrations.ts";
import { migrationSql, migrationsTableSql } from "../../../src/db/migration_sql.ts";
import { migrate, schemaState } from "../../../src/db/schema.ts";
import { Cli, drain, eventsOf, maskerOf, PEOPLE } from "../../helpers/pii.ts";
import { type HostileDb, hostileDb, STATE } from "../../helpers/hostile.ts";
import { eachMajorWithPsql } from "../../helpers/psql.ts";
import { startSqs, TEST_SECRET, uniqueName } from "../../helpers/services.ts";

const SQL = new URL("../../../sql/", import.meta.url);

/** The key of the session advisory lock login-etl's migrate took (and takes below version 6). */
const SCHEMA_KEY = "hashtext('login-etl schema')";

/** The advisory lock class of the per-mask locks before this change ("LETV"). */
const OLD_MASK_CLASS = 0x4c455456;

/** A login of the test with no grants (CONNECT, as every login has by default), and its client. */
async function outsider(db: HostileDb): Promise<
  { name: string; sql: postgres.Sql } & AsyncDisposable
> {
  const name = uniqueName("outsider");
  const password = crypto.randomUUID();
  await db.admin.unsafe(`CREATE ROLE "${name}" LOGIN PASSWORD '${password}'`);
  const url = new URL(db.urlOf());
  url.username = name;
  url.password = password;
  const sql = postgres(url.toString(), {
    max: 1,
    onnotice: () => {},
    connection: { application_name: "hostile-locker", search_path: "pg_catalog" },
  });
  return {
    name,
    sql,
    async [Symbol.asyncDispose]() {
      await sql.end();
      await db.admin.unsafe(`DROP ROLE IF EXISTS "${name}"`);
    },
  };
}

/** `body` bounded by `ms`: a hang (the old advisory locks) fails the test instead of stalling it. */
async function within<T>(ms: number, what: string, body: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      body,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: still waiting after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A database from sql/schema.sql and sql/roles.sql, its logins in their groups. */
async function deployed(url: string) {
  const db = await hostileDb(url);
  await db.admin.unsafe("REVOKE CREATE ON SCHEMA public FROM PUBLIC");
  await db.psql([new URL("schema.sql", SQL), new URL("roles.sql", SQL)]);
  await db.joinGroups();
  return db;
}

eachMajorWithPsql.test("an outsider can neither take nor see login-etl's locks, and forget, drain and migrate go on while it holds every advisory lock", async ({ t, pg }) => {
  await using sqs = await startSqs();
  await using db = await deployed(pg.url);
  await using hostile = await outsider(db);
  const cli = new Cli(db.cliEnv({ DATABASE_URL: db.urlOf(db.users.consumer) }));
  await drain(sqs, cli, PEOPLE);
  const k1 = await maskerOf(TEST_SECRET, "k1");
  const [first, second] = [k1.mask("ip", "203.0.113.7"), k1.mask("ip", "192.0.2.250")];
  const alice = db.connectAs(db.users.recoverer);

  await t.step("the lock rows cannot be locked, read or listed by the outsider", async () => {
    for (
      const statement of [
        `SELECT FROM ${STATE}.login_etl_locks WHERE name = 'schema' FOR UPDATE`,
        `SELECT FROM ${STATE}.login_etl_locks FOR UPDATE SKIP LOCKED`,
        `SELECT count(*) FROM ${STATE}.login_etl_locks`,
        `LOCK TABLE ${STATE}.login_etl_locks IN ACCESS EXCLUSIVE MODE`,
      ]
    ) {
      await assert.rejects(
        hostile.sql.begin((tx) => tx.unsafe(statement)),
        (error: { code?: string }) => error.code === "42501",
        statement,
      );
    }
    // Nor by the consumer or a recoverer: only the definer functions lock them.
    for (const user of [db.users.consumer, db.users.recoverer]) {
      await assert.rejects(
        db.connectAs(user).begin((tx) =>
          tx.unsafe(`SELECT FROM ${STATE}.login_etl_locks WHERE name = 'mask 1' FOR UPDATE`)
        ),
        (error: { code?: string }) => error.code === "42501",
        user,
      );
    }
  });

  await t.step(
    "while a forget holds its masks' locks, pg_locks shows no lock naming a mask",
    async () => {
      const reserved = await alice.reserve();
      try {
        await reserved`BEGIN`;
        const [pid] = await reserved<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
        await reserved`SELECT * FROM ${reserved(STATE)}.login_etl_forget(${[
          first,
        ]}::text[], 'alice', 'INC-7')`;
        const seen = await hostile.sql<{ locktype: string; classid: string; objid: string }[]>`
        SELECT locktype, classid::text, objid::text FROM pg_locks WHERE pid = ${pid!.pid}`;
        assert.ok(seen.length > 0, "the outsider sees the forget's session in pg_locks");
        const hash = (await hostile.sql<{ h: string }[]>`
        SELECT (hashtext(${first}) & 4294967295::bigint)::text AS h`)[0]!.h;
        assert.deepEqual(seen.filter((l) => l.locktype === "advisory"), [], "no advisory lock");
        assert.deepEqual(
          seen.filter((l) => l.objid === hash || l.classid === String(OLD_MASK_CLASS)),
          [],
          "nothing carrying the mask's hash",
        );
        // Row locks are not in pg_locks: the forget's tuple locks leave no trace there.
        assert.deepEqual(seen.filter((l) => l.locktype === "tuple"), [], "no tuple lock");
      } finally {
        await reserved`ROLLBACK`.catch(() => {});
        reserved.release();
      }
    },
  );

  await t.step(
    "while a merge's settle holds its masks' locks, pg_locks shows no lock naming a mask",
    async () => {
      const [claim] = await alice<{ claim: string }[]>`
      SELECT claim::text FROM ${alice(STATE)}.login_etl_inbox_claim(${[
        first,
      ]}::text[], 0, 100, 'alice', 'INC-7')`;
      assert.ok(claim?.claim, "the drain's inbox entry of the mask, claimed");
      const ids = (await alice<{ id: string }[]>`
      SELECT id::text FROM ${alice(STATE)}.login_etl_inbox_claimed(${claim.claim}::bigint)`).map((
        r,
      ) => r.id);
      assert.ok(ids.length > 0);
      const reserved = await alice.reserve();
      try {
        await reserved`BEGIN`;
        const [pid] = await reserved<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
        await reserved`SELECT * FROM ${reserved(STATE)}.login_etl_inbox_settle(
        ${claim.claim}::bigint, ${ids}::bigint[], '{}'::bigint[], '{}'::bigint[], '{}'::text[])`;
        const seen = await hostile.sql<{ locktype: string; classid: string; objid: string }[]>`
        SELECT locktype, classid::text, objid::text FROM pg_locks WHERE pid = ${pid!.pid}`;
        const hash = (await hostile.sql<{ h: string }[]>`
        SELECT (hashtext(${first}) & 4294967295::bigint)::text AS h`)[0]!.h;
        assert.deepEqual(
          seen.filter((l) => l.locktype === "advisory" || l.objid === hash),
          [],
          "no advisory lock, nothing carrying the mask's hash",
        );
      } finally {
        await reserved`ROLLBACK`.catch(() => {});
        reserved.release();
      }
    },
  );

  await t.step(
    "holding every advisory lock login-etl took, the outsider blocks nothing",
    async () => {
      await hostile.sql.unsafe(`SELECT pg_advisory_lock(${SCHEMA_KEY})`);
      // The masks of every value drained, as a consumer host could compute them.
      const drained = eventsOf(PEOPLE).flatMap((
        e,
      ) => [k1.mask("ip", e.ip), k1.mask("device_id", e.deviceId)]);
      for (const mask of new Set([first, second, ...drained])) {
        await hostile.sql`SELECT pg_advisory_lock(${OLD_MASK_CLASS}, hashtext(${mask}))`;
      }
      try {
        const forgotten = await within(
          10_000,
          "forget",
          alice<{ outcome: string }[]>`
          SELECT outcome FROM ${alice(STATE)}.login_etl_forget(${[
            second,
          ]}::text[], 'alice', 'INC-8')`,
        );
        assert.deepEqual(forgotten.map((r) => r.outcome), ["not_found"]);
        const owner = db.connectAs(db.users.owner);
        assert.deepEqual(
          await within(
            10_000,
            "migrate",
            migrate(owner, {
              schema: "public",
              stateSchema: STATE,
              ownerRole: db.groups.owner,
            }),
          ),
          [],
        );
        await within(60_000, "drain", drain(sqs, cli, PEOPLE.slice(0, 2)));
        // The owner's merge settles every drained mask under its locks.
        const merged = await within(
          60_000,
          "vault-merge",
          cli.run(["vault-merge"], { DATABASE_URL: db.urlOf(db.users.owner) }),
        );
        assert.equal(merged.code, 0, merged.stderr);
        const vaulted = (await db.admin<{ n: number }[]>`
          SELECT count(*)::int AS n FROM ${
          db.admin(STATE)
        }.login_etl_vault WHERE erased_at IS NULL`)[0]!.n;
        assert.ok(vaulted > 0, "the merge vaulted the drained values");
      } finally {
        await hostile.sql`SELECT pg_advisory_unlock_all()`;
      }
    },
  );
});

eachMajorWithPsql.test("migrate waits a bounded time for the schema lock, then fails naming its holder: an outsider's advisory lock below version 6, another migrate's row from version 6 on", async ({ t, pg }) => {
  await using db = await hostileDb(pg.url);
  await db.admin.unsafe("REVOKE CREATE ON SCHEMA public FROM PUBLIC");
  await using hostile = await outsider(db);
  const cli = new Cli(db.cliEnv());
  const [me] = await hostile.sql<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;

  await t.step(
    "below version 6, an outsider's advisory lock: a one-line failure within the bound",
    async () => {
      await hostile.sql.unsafe(`SELECT pg_advisory_lock(${SCHEMA_KEY})`);
      try {
        const started = performance.now();
        const run = cli.start(["migrate", "--migrate-lock-wait-seconds", "2"]);
        const result = await within(20_000, "migrate", cli.collect(run)).catch((error) => {
          run.child.kill("SIGKILL");
          throw error;
        });
        const seconds = (performance.now() - started) / 1000;
        assert.equal(result.code, 1, result.stderr);
        const line = JSON.parse(result.stderr.trim().split("\n").at(-1)!) as {
          msg: string;
          code: string;
        };
        assert.equal(line.code, "db_schema");
        assert.match(
          line.msg,
          new RegExp(
            `^Cannot migrate schema public: login-etl's schema lock \\(advisory lock\\) is held by session pid ${
              me!.pid
            } \\(user ${hostile.name}, application "hostile-locker"\\); wait for it or end it \\(SELECT pg_terminate_backend\\(${
              me!.pid
            }\\)\\), or raise --migrate-lock-wait-seconds$`,
          ),
        );
        assert.ok(seconds >= 2 && seconds < 15, `failed after ${seconds.toFixed(1)} s`);
        assert.equal(
          (await schemaState(db.admin, { schema: "public", stateSchema: STATE })).version,
          0,
        );
      } finally {
        await hostile.sql.unsafe(`SELECT pg_advisory_unlock(${SCHEMA_KEY})`);
      }
    },
  );

  await t.step(
    "at version 6, another migrate holding the schema row: named, then waited for",
    async () => {
      // Versions 1 to 6 as psql applies sql/schema.sql, so that 7 and 8 are pending.
      const file = await Deno.makeTempFile({ suffix: ".sql" });
      try {
        await Deno.writeTextFile(
          file,
          [
            migrationsTableSql(),
            ...MIGRATIONS.filter((m) => m.version <= 6).map((m) => migrationSql(m, "schema.sql")),
          ]
            .join("\n"),
        );
        await db.psql([new URL(`file://${file}`)]);
      } finally {
        await Deno.remove(file);
      }
      const schemas = { schema: "public", stateSchema: STATE };
      assert.equal((await schemaState(db.admin, schemas)).version, 6);
      // The outsider still holds the old key: no longer in the way.
      await hostile.sql.unsafe(`SELECT pg_advisory_lock(${SCHEMA_KEY})`);
      const holder = postgres(db.urlOf(), {
        max: 1,
        onnotice: () => {},
        connection: { application_name: "other-migrate" },
      });
      const reserved = await holder.reserve();
      try {
        await reserved`BEGIN`;
        await reserved`SELECT FROM ${
          reserved(STATE)
        }.login_etl_locks WHERE name = 'schema' FOR UPDATE`;
        const [row] = await reserved<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
        const pid = row!.pid;
        const started = performance.now();
        const result = await within(
          20_000,
          "migrate",
          cli.run(["migrate", "--migrate-lock-wait-seconds", "1"]),
        );
        const seconds = (performance.now() - started) / 1000;
        assert.equal(result.code, 1, result.stderr);
        assert.match(
          result.stderr,
          new RegExp(
            `login-etl's schema lock \\(row schema of ${STATE}\\.login_etl_locks\\) is held by session pid ${pid} \\(user postgres, application \\\\?"other-migrate\\\\?"\\)`,
          ),
        );
        assert.ok(seconds >= 1 && seconds < 15, `failed after ${seconds.toFixed(1)} s`);
        assert.equal((await schemaState(db.admin, schemas)).version, 6, "nothing applied");
        // A migrate that starts waiting gets the row once the holder is done.
        const waiting = cli.run(["migrate", "--migrate-lock-wait-seconds", "30"]);
        await new Promise((resolve) => setTimeout(resolve, 1000));
        await reserved`ROLLBACK`;
        const done = await within(40_000, "migrate", waiting);
        assert.equal(done.code, 0, done.stderr);
        assert.match(done.stdout, /^Applied 7: .*\nApplied 8: /m);
        assert.equal((await schemaState(db.admin, schemas)).version, MIGRATIONS.at(-1)!.version);
      } finally {
        await reserved`ROLLBACK`.catch(() => {});
        reserved.release();
        await holder.end();
        await hostile.sql.unsafe(`SELECT pg_advisory_unlock_all()`);
      }
    },
  );
});

eachMajorWithPsql.test("while a forget waits for a mask's lock row, the tuple an outsider sees in pg_locks is no function of the mask: the rows are in random order", async ({ pg }) => {
  await using db = await deployed(pg.url);
  await using hostile = await outsider(db);
  const k1 = await maskerOf(TEST_SECRET, "k1");
  const masks = ["198.51.100.31", "198.51.100.32", "198.51.100.33"].map((ip) => k1.mask("ip", ip));
  const owner = db.connectAs(db.users.owner);
  const alice = db.connectAs(db.users.recoverer);
  const alicePid = (await alice<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`)[0]!.pid;
  // Where each bucket's row would be had the rows gone in in bucket order
  // (before this change), which anyone can compute: the same rows, inserted
  // so into a table of the same shape.
  const predicted = await db.admin.begin(async (tx) => {
    await tx`CREATE TEMP TABLE fixed_order (name text PRIMARY KEY) ON COMMIT DROP`;
    await tx`INSERT INTO fixed_order (name) SELECT 'schema'
      UNION ALL SELECT 'mask ' || b FROM generate_series(0, 1023) AS b`;
    const same = (await tx<{ same: number }[]>`
      SELECT count(*)::int AS same FROM fixed_order f
      JOIN ${tx(STATE)}.login_etl_locks l ON l.name = f.name AND l.ctid = f.ctid`)[0]!.same;
    const rows = await tx<{ name: string; ctid: string }[]>`
      SELECT name, ctid::text FROM fixed_order`;
    return { same, at: new Map(rows.map((r) => [r.name, r.ctid])) };
  });
  // Random order leaves about one row in place of 1,025; bucket order, all.
  assert.ok(predicted.same < 64, `${predicted.same} of 1,025 rows where bucket order puts them`);

  const seen: { mask: string; ctid: string; bucketCtid: string; fixedCtid: string }[] = [];
  for (const mask of masks) {
    const bucket = (await db.admin<{ name: string; ctid: string }[]>`
      SELECT name, ctid::text FROM ${db.admin(STATE)}.login_etl_locks
      WHERE name = 'mask ' || (hashtext(${mask}) & 1023)`)[0]!;
    const holder = await owner.reserve();
    let forgetting: Promise<unknown> | undefined;
    try {
      await holder`BEGIN`;
      await holder`SELECT ${holder(STATE)}.login_etl_lock_masks(${[mask]}::text[])`;
      // Sent now, awaited later: postgres.js sends a query once it is then'd.
      forgetting = alice`SELECT * FROM ${alice(STATE)}.login_etl_forget(${[
        mask,
      ]}::text[], 'alice', 'INC-11')`.then((rows) => rows);
      // What every login sees of the wait: the tuple of login_etl_locks (a
      // minute's cap, as every wait of the suite: the forget may be slow to start).
      let waited: { ctid: string } | undefined;
      for (let i = 0; i < 1200 && waited === undefined; i++) {
        [waited] = await hostile.sql<{ ctid: string }[]>`
          SELECT '(' || l.page || ',' || l.tuple || ')' AS ctid FROM pg_locks l
          WHERE l.locktype = 'tuple' AND l.pid = ${alicePid}
            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND l.relation = (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                              WHERE n.nspname = ${STATE} AND c.relname = 'login_etl_locks')`;
        if (waited === undefined) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.ok(waited, "the outsider sees the waiting forget's tuple lock");
      seen.push({
        mask,
        ctid: waited.ctid,
        bucketCtid: bucket.ctid,
        fixedCtid: predicted.at.get(bucket.name)!,
      });
    } finally {
      await holder`ROLLBACK`.catch(() => {});
      holder.release();
      await within(35_000, "forget", forgetting ?? Promise.resolve());
    }
  }
  // The wait is on the mask's bucket row, and that row is not where bucket
  // order would put it (each could be by chance, 1 in 1,025; all three not).
  for (const s of seen) assert.equal(s.ctid, s.bucketCtid, "the mask's bucket row");
  assert.ok(
    seen.some((s) => s.ctid !== s.fixedCtid),
    `every waited tuple is where bucket order puts it: ${JSON.stringify(seen)}`,
  );
});
