// Rows the database refuses, against the real Postgres through drain and run
// (`main`, in this process; the SIGKILL case as a child): a message the table refuses (a CHECK, a unique index, a
// narrowed varchar, a trigger) becomes a `db_refused` reject naming what
// refused it while every other message commits and the queue empties; a
// table that refuses every row (a NOT NULL column without a default) rejects
// nothing, deletes nothing and says why; a SIGKILL in the middle of the
// isolation loses and doubles nothing. --reject-queue-url is in
// reject_queue_test.ts and reject_queue_endpoints_test.ts.

import assert from "node:assert/strict";
import { migrate } from "../../src/db/schema.ts";
import { generateBodies } from "../../src/seed/generate.ts";
import { failureLine, spawnCli } from "../helpers/cli.ts";
import { runInProcess } from "../helpers/in_process.ts";
import { drain, login, thirtyAndOne } from "../helpers/refused.ts";
import {
  DATABASE_URL,
  enqueue,
  expireInFlight,
  freshSchema,
  reportFigures,
  startSqs,
  TEST_SECRET,
  type TestDb,
} from "../helpers/services.ts";

/** Asserts that a drain exited 1 with one line, its last, matching `line`. */
function assertFailedWith(result: { code: number; stderr: string }, line: RegExp): void {
  assert.equal(result.code, 1, result.stderr.slice(-2000));
  assert.match(failureLine(result), line);
}

/**
 * After a failed drain: asserts all 31 messages are still queued, applies
 * `fix`, makes what the failed run left in flight visible again (as its
 * visibility timeout would, without the wait), and drains again, which must
 * succeed.
 */
async function drainOnceFixed(
  sqs: Awaited<ReturnType<typeof startSqs>>,
  db: TestDb,
  queueUrl: string,
  fix: string,
) {
  const { ready, inFlight } = sqs.counts(queueUrl);
  assert.equal(ready + inFlight, 31, "every message still queued");
  await db.sql.unsafe(fix);
  await expireInFlight(sqs, queueUrl);
  assert.deepEqual(sqs.counts(queueUrl), { ready: 31, inFlight: 0 });
  const fixed = await drain(db, queueUrl);
  assert.equal(fixed.code, 0, fixed.stderr.slice(-2000));
  return fixed;
}

async function counts(db: TestDb) {
  const [c] = await db.sql<{ rows: number; refused: number; rejects: number; ledger: number }[]>`
    SELECT (SELECT count(*)::int FROM user_logins) AS rows,
           (SELECT count(*)::int FROM login_etl_rejects WHERE reason = 'db_refused') AS refused,
           (SELECT count(*)::int FROM login_etl_rejects) AS rejects,
           (SELECT count(*)::int FROM login_etl_ledger) AS ledger`;
  return c;
}

Deno.test("one message the table refuses becomes a db_refused reject naming what refused it; the thirty others commit and the queue empties", async (t) => {
  await using sqs = await startSqs();
  const cases: {
    name: string;
    setup: string;
    bad: string;
    detail: RegExp;
    /** Rows the setup itself inserts. */
    rowsBefore?: number;
  }[] = [
    {
      name: "a CHECK constraint",
      setup: "ALTER TABLE user_logins ADD CONSTRAINT dt CHECK (device_type IN ('ios', 'android'))",
      bad: login("user-web", "web"),
      detail: /^Postgres refused the row: SQLSTATE 23514, constraint dt, table user_logins$/,
    },
    {
      name: "a unique index and one duplicate",
      setup: `CREATE UNIQUE INDEX one_login_per_user ON user_logins (user_id);
        INSERT INTO user_logins (user_id) VALUES ('user-dup')`,
      bad: login("user-dup"),
      rowsBefore: 1,
      detail:
        /^Postgres refused the row: SQLSTATE 23505, constraint one_login_per_user, table user_logins$/,
    },
    {
      name: "a varchar narrowed below a valid value",
      // The duplicate views read user_id, so they go while the column is narrowed.
      setup: `DROP VIEW user_logins_duplicate_ips, user_logins_duplicate_devices;
        ALTER TABLE user_logins ALTER COLUMN user_id TYPE varchar(12)`,
      bad: login("a-user-id-of-twenty-chars"),
      detail: /^Postgres refused the row: SQLSTATE 22001$/,
    },
    {
      name: "a trigger that raises for one row",
      setup: `CREATE FUNCTION no_mallory() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.user_id = 'mallory' THEN RAISE EXCEPTION 'no logins for mallory'; END IF; RETURN NEW; END $$;
        CREATE TRIGGER no_mallory BEFORE INSERT ON user_logins FOR EACH ROW EXECUTE FUNCTION no_mallory()`,
      bad: login("mallory"),
      detail: /^Postgres refused the row: SQLSTATE P0001, raised by a trigger or function$/,
    },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      await using db = await freshSchema();
      await migrate(db.sql, db);
      await db.sql.unsafe(c.setup);
      const queueUrl = sqs.createQueue();
      const [badId] = enqueue(sqs, queueUrl, [c.bad]);
      enqueue(sqs, queueUrl, thirtyAndOne(c.bad).filter((b) => b !== c.bad));
      const result = await drain(db, queueUrl);
      assert.equal(result.code, 0, result.stderr.slice(-2000));
      const summary = JSON.parse(result.stdout);
      assert.equal(summary.inserted, 30);
      assert.deepEqual(summary.rejected_by_reason, { db_refused: 1 });
      assert.deepEqual(sqs.counts(queueUrl), { ready: 0, inFlight: 0 });
      const [reject] = await db.sql<{ message_id: string; detail: string; masked_body: string }[]>`
        SELECT message_id, detail, masked_body FROM login_etl_rejects`;
      assert.equal(reject?.message_id, badId);
      assert.match(reject?.detail ?? "", c.detail);
      assert.ok(!reject?.masked_body.includes("203.0.113.9"), "the body is redacted as any reject");
      assert.ok(!reject?.masked_body.includes("593-47-5928"));
      assert.match(result.stderr, /"event":"MessagesRefused".*"by_sqlstate":\{"[0-9A-Z]{5}":1\}/);
      assert.deepEqual(await counts(db), {
        rows: 30 + (c.rowsBefore ?? 0),
        refused: 1,
        rejects: 1,
        ledger: 31,
      });
    });
  }
});

Deno.test("a table that refuses every row rejects nothing and deletes nothing, says why, and loads everything once fixed", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  await migrate(db.sql, db);
  await db.sql`ALTER TABLE user_logins ADD COLUMN region text NOT NULL`;
  const queueUrl = sqs.createQueue();
  enqueue(sqs, queueUrl, thirtyAndOne(login("user-x")));
  const started = performance.now();
  const failed = await drain(db, queueUrl);
  reportFigures("table refusing every row", {
    seconds: Math.round((performance.now() - started) / 100) / 10,
  });
  assertFailedWith(
    failed,
    /^error: Postgres refuses every row: SQLSTATE 23502, column region, table user_logins; not the messages' fault, so none is rejected and all stay queued: fix the table \(or the role's privileges\) and run again$/,
  );
  assert.deepEqual(await counts(db), { rows: 0, refused: 0, rejects: 0, ledger: 0 });
  await drainOnceFixed(sqs, db, queueUrl, "ALTER TABLE user_logins DROP COLUMN region");
  assert.deepEqual(await counts(db), { rows: 31, refused: 0, rejects: 0, ledger: 31 });
});

Deno.test("a table refusing every row still rejects nothing when the batch also holds an invalid message", async () => {
  // An attacker's review found it: the invalid message's reject committed on
  // its own while splitting, which passed for "the table takes rows".
  await using sqs = await startSqs();
  await using db = await freshSchema();
  await migrate(db.sql, db);
  await db.sql`ALTER TABLE user_logins ADD COLUMN region text NOT NULL`;
  const queueUrl = sqs.createQueue();
  enqueue(sqs, queueUrl, thirtyAndOne("not json at all"));
  const failed = await drain(db, queueUrl);
  assertFailedWith(
    failed,
    /^error: Postgres refuses every row: SQLSTATE 23502, column region, table user_logins; not the messages' fault/,
  );
  const after = await counts(db);
  assert.equal(after?.rows, 0);
  assert.equal(after?.refused, 0, "no valid login became a db_refused reject");
  await drainOnceFixed(sqs, db, queueUrl, "ALTER TABLE user_logins DROP COLUMN region");
  assert.deepEqual(await counts(db), { rows: 30, refused: 0, rejects: 1, ledger: 31 });
  assert.deepEqual(sqs.counts(queueUrl), { ready: 0, inFlight: 0 });
});

Deno.test("a rejects table that refuses a message's reject deletes nothing: drain exits 1 naming it, and all load once it is fixed", async (t) => {
  await using sqs = await startSqs();
  const cases = [
    {
      name: "a validation reject refused",
      setup:
        "ALTER TABLE login_etl_rejects ADD CONSTRAINT no_not_json CHECK (reason <> 'not_json')",
      bad: "not json at all",
      drop: "ALTER TABLE login_etl_rejects DROP CONSTRAINT no_not_json",
      constraint: "no_not_json",
      fixed: { rows: 30, refused: 0, rejects: 1, ledger: 31 },
    },
    {
      name: "a db_refused reject refused",
      setup: `ALTER TABLE user_logins ADD CONSTRAINT dt CHECK (device_type IN ('ios', 'android'));
        ALTER TABLE login_etl_rejects ADD CONSTRAINT no_refused CHECK (reason <> 'db_refused')`,
      bad: login("user-web", "web"),
      drop: "ALTER TABLE login_etl_rejects DROP CONSTRAINT no_refused",
      constraint: "no_refused",
      fixed: { rows: 30, refused: 1, rejects: 1, ledger: 31 },
    },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      await using db = await freshSchema();
      await migrate(db.sql, db);
      await db.sql.unsafe(c.setup);
      const queueUrl = sqs.createQueue();
      enqueue(sqs, queueUrl, thirtyAndOne(c.bad));
      const failed = await drain(db, queueUrl);
      assertFailedWith(
        failed,
        new RegExp(
          `^error: Postgres refuses the reject of a message: SQLSTATE 23514, constraint ${c.constraint}, table login_etl_rejects; not the messages' fault`,
        ),
      );
      assert.equal((await counts(db))?.rejects, 0, "no reject recorded");
      await drainOnceFixed(sqs, db, queueUrl, c.drop);
      assert.deepEqual(await counts(db), c.fixed);
      assert.deepEqual(sqs.counts(queueUrl), { ready: 0, inFlight: 0 });
    });
  }
});

Deno.test("run pauses while the table refuses every row, and loads everything once it is fixed", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  await migrate(db.sql, db);
  await db.sql`ALTER TABLE user_logins ADD COLUMN region text NOT NULL`;
  const queueUrl = sqs.createQueue({ VisibilityTimeout: "5" });
  enqueue(sqs, queueUrl, thirtyAndOne(login("user-x")));
  const child = spawnCli(
    ["run", "--queue-url", queueUrl, "--wait-seconds", "1", "--summary-json"],
    {
      DATABASE_URL,
      ...db.env,
      PII_HMAC_KEY: TEST_SECRET,
      LOGIN_ETL_LOG_FORMAT: "json",
      LOGIN_ETL_MAX_RETRY_SECONDS: "120",
    },
  );
  let stderr = "";
  const reading = (async () => {
    for await (const text of child.stderr.pipeThrough(new TextDecoderStream())) stderr += text;
  })();
  const stdout = new Response(child.stdout).text();
  // Until its first write has failed and it waits to retry: a fixed sleep
  // was too short on a loaded machine, where start-up alone can take longer.
  const retrying = /"stage":"write".*"retry_in_ms":\d+/;
  for (const deadline = Date.now() + 30_000; !retrying.test(stderr);) {
    assert.ok(Date.now() < deadline, `no write retry logged in 30 s: ${stderr.slice(-2000)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.deepEqual(await counts(db), { rows: 0, refused: 0, rejects: 0, ledger: 0 });
  await db.sql`ALTER TABLE user_logins DROP COLUMN region`;
  const deadline = Date.now() + 30_000;
  while ((await counts(db))?.rows !== 31 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  child.kill("SIGTERM");
  const status = await child.status;
  await reading;
  await stdout;
  assert.equal(status.code, 0, stderr.slice(-2000));
  assert.deepEqual(await counts(db), { rows: 31, refused: 0, rejects: 0, ledger: 31 });
});

Deno.test("a SIGKILL in the middle of the isolation loses and doubles nothing", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  await migrate(db.sql, db);
  // Every tenth login is refused; each statement is slowed so the kill lands mid-isolation.
  await db.sql.unsafe(
    `ALTER TABLE user_logins ADD CONSTRAINT no_tenth CHECK (user_id NOT LIKE '%0');
    CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_sleep(0.05); RETURN NULL; END $$;
    CREATE TRIGGER slow AFTER INSERT ON user_logins FOR EACH STATEMENT EXECUTE FUNCTION slow()`,
  );
  const queueUrl = sqs.createQueue();
  const bodies = [...generateBodies(400, { badRatio: 0, seed: 4 })].map((b, i) =>
    JSON.stringify({ ...JSON.parse(b), user_id: `u${i}` })
  );
  enqueue(sqs, queueUrl, bodies);
  const env = {
    DATABASE_URL,
    ...db.env,
    PII_HMAC_KEY: TEST_SECRET,
    LOGIN_ETL_LOG_FORMAT: "json",
  };
  const child = spawnCli(["drain", "--queue-url", queueUrl, "--max-rows", "200"], env);
  // Killed once the isolation has committed some parts and not all.
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const c = await counts(db);
    if ((c?.rows ?? 0) > 0) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  child.kill("SIGKILL");
  await child.output();
  const atKill = await counts(db);
  // The rest, once what the killed run held is visible again (as its
  // visibility timeout would make it, without the wait), by a fresh drain
  // (repeated until the queue is empty).
  for (let i = 0; i < 5; i++) {
    await expireInFlight(sqs, queueUrl);
    const again = await runInProcess(["drain", "--queue-url", queueUrl], env);
    assert.equal(again.code, 0, again.stderr.slice(-2000));
    const { ready, inFlight } = sqs.counts(queueUrl);
    if (ready + inFlight === 0) break;
  }
  const final = await counts(db);
  reportFigures("sigkill during isolation", { at_kill: atKill, final });
  assert.deepEqual(final, { rows: 360, refused: 40, rejects: 40, ledger: 400 });
  const [dupes] = await db.sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM (SELECT user_id FROM user_logins GROUP BY user_id HAVING count(*) > 1) d`;
  assert.equal(dupes?.n, 0, "no row written twice");
});
