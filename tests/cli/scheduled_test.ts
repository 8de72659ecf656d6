// drain as a scheduled job runs it (GitHub Actions, a CronJob, systemd), through
// the CLI with the binary's permissions against fauxqs and the real Postgres:
// --max-rejects fails the run only after every valid row is written;
// progress is logged off a terminal; --metrics-file leaves node_exporter a
// whole file whatever the outcome; seed --sample loads the exercise's file.

import assert from "node:assert/strict";
import { connect } from "../../src/db/pool.ts";
import { ensureSchema } from "../../src/db/schema.ts";
import { generateBodies } from "../../src/seed/generate.ts";
import { failureLine, runCli, spawnCli } from "../helpers/cli.ts";
import {
  DATABASE_URL,
  enqueue,
  freshSchema,
  hasSample,
  SAMPLE_PATH,
  startSqs,
  TEST_SECRET,
  testConnection,
} from "../helpers/services.ts";

const VALID = 300;
const INVALID = 20;

/** VALID good and INVALID malformed bodies, shuffled together. */
function mixedBodies(): string[] {
  const good = [...generateBodies(VALID, { badRatio: 0, seed: 21 })];
  const bad = Array.from({ length: INVALID }, (_, i) => `{"user_id": "x${i}", "ip": `);
  const all = [...good];
  bad.forEach((body, i) => all.splice((i * 17) % all.length, 0, body));
  return all;
}

/** Samples of a Prometheus text file, by name and label text. */
function samplesOf(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    const match = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (match) samples.set(`${match[1]}${match[2] ?? ""}`, Number(match[3]));
  }
  return samples;
}

Deno.test("drain --max-rejects 0 writes every valid row and deletes every message, then exits 3", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const queueUrl = sqs.createQueue();
  enqueue(sqs, queueUrl, mixedBodies());
  const dir = await Deno.makeTempDir();
  try {
    const metricsFile = `${dir}/login-etl.prom`;
    const result = await runCli(
      [
        "drain",
        "--queue-url",
        queueUrl,
        "--max-rejects",
        "0",
        "--summary-json",
        "--metrics-file",
        metricsFile,
      ],
      { env: { DATABASE_URL, ...db.env, PII_HMAC_KEY: TEST_SECRET } },
    );
    assert.equal(result.code, 3, result.stderr);
    const [rows] = await db.sql<{ rows: number; rejects: number }[]>`
      SELECT (SELECT count(*)::int FROM user_logins) AS rows,
             (SELECT count(*)::int FROM login_etl_rejects) AS rejects`;
    assert.deepEqual(rows, { rows: VALID, rejects: INVALID });
    assert.deepEqual(sqs.counts(queueUrl), { ready: 0, inFlight: 0 });
    assert.match(
      failureLine(result),
      new RegExp(
        `^error: Rejected 20 messages, more than --max-rejects 0; every valid row was written\\. See ${db.stateSchema}\\.login_etl_rejects for the reasons \\(or login-etl report\\)$`,
      ),
    );
    const summary = JSON.parse(result.stdout) as {
      inserted: number;
      rejected: number;
      error: string;
    };
    assert.deepEqual([summary.inserted, summary.rejected], [VALID, INVALID]);
    assert.match(summary.error, /more than --max-rejects 0/);

    // The metrics file says the same, with the failed outcome and the build.
    const metrics = samplesOf(await Deno.readTextFile(metricsFile));
    assert.equal(metrics.get("login_etl_messages_received_total"), VALID + INVALID);
    assert.equal(metrics.get("login_etl_rows_inserted_total"), VALID);
    assert.equal(metrics.get("login_etl_run_succeeded"), 0);
    assert.ok([...metrics.keys()].some((k) => k.startsWith("login_etl_build_info{version=")));
    assert.deepEqual((await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name), [
      "login-etl.prom",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("drain under its --max-rejects succeeds, and its metrics file says so", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const queueUrl = sqs.createQueue();
  enqueue(sqs, queueUrl, mixedBodies());
  const dir = await Deno.makeTempDir();
  try {
    const metricsFile = `${dir}/login-etl.prom`;
    const result = await runCli(
      [
        "drain",
        "--queue-url",
        queueUrl,
        "--max-rejects",
        String(INVALID),
        "--metrics-file",
        metricsFile,
      ],
      { env: { DATABASE_URL, ...db.env, PII_HMAC_KEY: TEST_SECRET } },
    );
    assert.equal(result.code, 0, result.stderr);
    const metrics = samplesOf(await Deno.readTextFile(metricsFile));
    assert.equal(metrics.get("login_etl_run_succeeded"), 1);
    assert.equal(metrics.get('login_etl_messages_rejected_total{reason="not_json"}'), INVALID);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("run --max-rejects stops by itself once past the limit, committing what it holds, and exits 3", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const queueUrl = sqs.createQueue();
  enqueue(sqs, queueUrl, mixedBodies());
  const child = spawnCli([
    "run",
    "--queue-url",
    queueUrl,
    "--max-rejects",
    "5",
    "--wait-seconds",
    "1",
  ], {
    DATABASE_URL,
    ...db.env,
    PII_HMAC_KEY: TEST_SECRET,
    LOGIN_ETL_LOG_FORMAT: "json",
  });
  const timeout = setTimeout(() => child.kill("SIGKILL"), 30_000);
  const output = await child.output();
  clearTimeout(timeout);
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 3, stderr);
  assert.match(stderr, /"event":"RejectLimitExceeded".*"limit":5/);
  // What it received it finished: nothing left in flight, rows and rejects balance.
  const [done] = await db.sql<{ n: number }[]>`
    SELECT (SELECT count(*) FROM user_logins) + (SELECT count(*) FROM login_etl_rejects) AS n`;
  const { ready, inFlight } = sqs.counts(queueUrl);
  assert.equal(inFlight, 0);
  assert.equal(Number(done?.n) + ready, VALID + INVALID);
});

Deno.test("drain off a terminal logs a Progress event every --progress-seconds; 0 turns them off", async () => {
  await using sqs = await startSqs();
  await using every = await freshSchema();
  await using never = await freshSchema();
  // The tables first, so that a lock can hold both drains at their first write
  // for as long as the test needs them running (as drain_test.ts does).
  const connection = await testConnection();
  for (const db of [every, never]) {
    const setup = connect({ connection, schema: db.schema, stateSchema: db.stateSchema, max: 1 });
    await ensureSchema(setup, { connection, schema: db.schema, stateSchema: db.stateSchema });
    await setup.end();
  }
  const blocker = await every.sql.reserve();
  const [{ pid: blockerPid }] = await blocker<[{ pid: number }]>`SELECT pg_backend_pid() AS pid`;
  await blocker`BEGIN`;
  await blocker.unsafe(
    `LOCK TABLE "${every.schema}".user_logins, "${never.schema}".user_logins IN SHARE MODE`,
  );
  const start = (db: typeof every, seconds: string) => {
    const queueUrl = sqs.createQueue();
    enqueue(sqs, queueUrl, [...generateBodies(300, { badRatio: 0.02, seed: 5 })]);
    const child = spawnCli(
      ["drain", "--queue-url", queueUrl, "--progress-seconds", seconds, "--max-rows", "100"],
      { DATABASE_URL, ...db.env, PII_HMAC_KEY: TEST_SECRET, LOGIN_ETL_LOG_FORMAT: "json" },
    );
    let stderr = "";
    const ended = Promise.all([
      child.status,
      child.stdout.cancel(),
      (async () => {
        for await (const text of child.stderr.pipeThrough(new TextDecoderStream())) {
          stderr += text;
        }
      })(),
    ]).then(([status]) => status.code);
    return { ended, stderr: () => stderr };
  };
  const progressOf = (stderr: string) =>
    stderr.split("\n").filter((l) => l.includes('"event":"ProgressReported"'))
      .map((l) => JSON.parse(l) as Record<string, number>);
  const ticking = start(every, "1");
  const silent = start(never, "0");
  let shared: number | undefined;
  try {
    // Both writes held by our lock (only backends it blocks: files run in
    // parallel), then two more progress events of the ticking drain: the silent
    // one was running all that while, long enough for a timer of any interval
    // up to a second to fire. Bounds only against a hang (a minute each).
    for (let i = 0; i < 1200 && shared === undefined; i++) {
      await new Promise((r) => setTimeout(r, 50));
      const [row] = await every.sql<{ n: number }[]>`
        SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE application_name = 'login-etl' AND wait_event_type = 'Lock'
          AND ${blockerPid} = ANY(pg_blocking_pids(pid))`;
      if ((row?.n ?? 0) >= 2) shared = progressOf(ticking.stderr()).length;
    }
    assert.ok(shared !== undefined, "both drains' writes wait on the lock");
    for (let i = 0; i < 1200 && progressOf(ticking.stderr()).length < shared + 2; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    await blocker`COMMIT`;
    blocker.release();
  }
  assert.equal(await ticking.ended, 0, ticking.stderr());
  assert.equal(await silent.ended, 0, silent.stderr());
  const events = progressOf(ticking.stderr());
  assert.ok(events.length >= shared + 2, `${events.length} progress events`);
  for (const e of events) {
    for (
      const field of ["received", "inserted", "rejected", "deleted", "msgs_per_s", "queue_depth"]
    ) {
      assert.equal(typeof e[field], "number", `${field} in ${JSON.stringify(e)}`);
    }
  }
  const received = events.map((e) => e.received ?? 0);
  assert.deepEqual(received, [...received].sort((a, b) => a - b), "counts only grow");
  assert.deepEqual(progressOf(silent.stderr()), []);
});

Deno.test("seed --sample sends the exercise's messages, and drain loads each as one row", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const queueUrl = sqs.createQueue();
  const dir = await Deno.makeTempDir();
  try {
    // The exercise's own file when it sits beside the checkout, else one of the same shape.
    let path = SAMPLE_PATH;
    let expected = 100;
    if (!hasSample()) {
      path = `${dir}/sample.json`;
      const events = [...generateBodies(50, { badRatio: 0, seed: 8 })].map((b) => JSON.parse(b));
      await Deno.writeTextFile(path, JSON.stringify(events));
      expected = 50;
    }
    const seeded = await runCli(["seed", "--queue-url", queueUrl, "--sample", path]);
    assert.equal(seeded.code, 0, seeded.stderr);
    assert.equal(seeded.stdout, `Sent ${expected} messages from ${path} to ${queueUrl}.\n`);
    const drained = await runCli(["drain", "--queue-url", queueUrl, "--summary-json"], {
      env: { DATABASE_URL, ...db.env, PII_HMAC_KEY: TEST_SECRET },
    });
    assert.equal(drained.code, 0, drained.stderr);
    assert.equal((JSON.parse(drained.stdout) as { inserted: number }).inserted, expected);
    const missing = await runCli([
      "seed",
      "--queue-url",
      queueUrl,
      "--sample",
      `${dir}/nope.json.gz`,
    ]);
    assert.equal(missing.code, 2);
    assert.match(failureLine(missing), /^error: Cannot read --sample ".*nope\.json\.gz": /);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
