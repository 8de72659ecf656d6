// Faults around a running consumer: a Postgres outage longer than the
// visibility timeout, SQS throttling/500s/resets, four consumers racing on one
// queue with slow commits, and a consumer frozen with SIGSTOP.

import assert from "node:assert/strict";
import { migrate } from "../../src/db/schema.ts";
import { generateBodies } from "../../src/seed/generate.ts";
import { Random } from "../../src/seed/random.ts";
import { checkLanded, delay, drainUntilEmpty, startConsumer } from "../helpers/consumers.ts";
import { startSqsFaultProxy } from "../helpers/sqs_fault_proxy.ts";
import { targetOf, TcpProxy, viaProxy } from "../helpers/tcp_proxy.ts";
import {
  DATABASE_URL,
  enqueue,
  freshSchema,
  reportFigures,
  startSqs,
  TEST_SECRET,
  type TestSqs,
} from "../helpers/services.ts";

function load(sqs: TestSqs, queueUrl: string, count: number, seed: number) {
  const bodies = [...generateBodies(count, { badRatio: 0.02, seed })];
  return enqueue(sqs, queueUrl, bodies).map((id, i) => ({ id, body: bodies[i] as string }));
}

async function ledgerCount(sql: { unsafe: (q: string) => Promise<unknown[]> }): Promise<number> {
  try {
    const [row] = (await sql.unsafe("SELECT count(*)::int AS n FROM login_etl_ledger")) as {
      n: number;
    }[];
    return row?.n ?? 0;
  } catch {
    return 0;
  }
}

async function waitFor(
  check: () => Promise<boolean> | boolean,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(25);
  }
}

function events(stderr: string): Record<string, unknown>[] {
  return stderr.trimEnd().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
}

for (const outage of ["stall", "reset"] as const) {
  Deno.test(`a Postgres outage (${outage}) longer than the visibility timeout pauses receiving, then the run completes on its own`, async () => {
    await using sqs = await startSqs();
    await using db = await freshSchema();
    await using pg = TcpProxy.start(targetOf(DATABASE_URL));
    const queueUrl = sqs.createQueue({ VisibilityTimeout: "2" });
    const sent = load(sqs, queueUrl, 4_000, 7);
    const env = {
      PII_HMAC_KEY: TEST_SECRET,
      DATABASE_URL: viaProxy(DATABASE_URL, pg),
      ...db.env,
    };
    const consumer = startConsumer(
      [
        "drain",
        "--queue-url",
        queueUrl,
        "--summary-json",
        "--writers",
        "1",
        "--max-rows",
        "200",
        "--write-timeout-seconds",
        "2",
      ],
      env,
    );
    await waitFor(async () => (await ledgerCount(db.sql)) >= 1000, 30_000, "the first commits");
    pg.setMode(outage);
    const outageStarted = Date.now();
    await delay(1500); // the consumer notices and stops receiving
    const readyEarly = sqs.counts(queueUrl).ready;
    await delay(3500); // 5 s in all: more than twice the 2 s visibility timeout
    const readyLate = sqs.counts(queueUrl).ready;
    const committedDuringOutage = await ledgerCount(db.sql);
    pg.setMode("pass");
    const outageSeconds = (Date.now() - outageStarted) / 1000;
    const result = await consumer.done;
    assert.equal(result.code, 0, result.stderr.slice(-3000));
    const summary = JSON.parse(result.stdout);
    const log = events(result.stderr);
    const writeFailures = log.filter((e) =>
      e.event === "StageFailed" && e.stage === "write"
    ).length;
    assert.ok(writeFailures >= 1, "the outage was seen");
    assert.ok(log.some((e) => e.event === "StoreRecovered"), "and the recovery");
    assert.equal(readyLate, readyEarly, "no message received while the database was down");
    assert.ok(summary.balanced);
    const rest = await drainUntilEmpty(sqs, queueUrl, { ...env, DATABASE_URL });
    const landed = await checkLanded(db.sql, sent);
    reportFigures(`db outage (${outage})`, {
      messages: sent.length,
      outage_s: outageSeconds,
      committed_before_outage_ended: committedDuringOutage,
      write_failures_logged: writeFailures,
      first_run: summary,
      later_runs: rest.runs,
      lost: landed.lost,
      duplicated: landed.duplicated,
      rejected: landed.rejects,
    });
  });
}

Deno.test("SQS throttling, 500s and connection resets on a quarter of calls lose and double nothing", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const queueUrl = sqs.createQueue({ VisibilityTimeout: "2" });
  const sent = load(sqs, queueUrl, 5_000, 11);
  const random = new Random(11);
  const faults = ["throttle", "error500", "reset-before", "reset-after"] as const;
  await using proxy = await startSqsFaultProxy(
    sqs.endpoint,
    () => (random.chance(0.25) ? random.pick(faults) : "pass"),
  );
  const proxiedUrl = `${proxy.endpoint}${new URL(queueUrl).pathname}`;
  const env = { PII_HMAC_KEY: TEST_SECRET, DATABASE_URL, ...db.env };
  // Runs drain until the queue is empty: a reset after ReceiveMessage took
  // effect hides its messages for one visibility timeout, so one run may end
  // before they are back, as a scheduled drain would.
  const runs = await drainUntilEmpty(sqs, queueUrl, env, { consumerQueueUrl: proxiedUrl });
  const landed = await checkLanded(db.sql, sent);
  const injected: Record<string, number> = {};
  for (const [key, n] of proxy.stats) if (!key.endsWith(":pass")) injected[key] = n;
  const totals = { received: 0, redelivered: 0 };
  for (const summary of runs.summaries) {
    totals.received += summary.received ?? 0;
    totals.redelivered += summary.redelivered ?? 0;
  }
  for (const fault of faults) {
    assert.ok((injected[`ReceiveMessage:${fault}`] ?? 0) > 0, `ReceiveMessage met ${fault}`);
  }
  reportFigures("sqs faults", {
    messages: sent.length,
    drain_runs: runs.runs,
    ...totals,
    faults_injected: injected,
    lost: landed.lost,
    duplicated: landed.duplicated,
    rejected: landed.rejects,
  });
});

Deno.test("four consumers on one queue with a 1 s visibility timeout and slowed commits write no row twice", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  // Migrated first, as the SIGSTOP test does: through the 250 ms proxy the
  // migrations alone took most of a minute, and the race is in the writes.
  await migrate(db.sql, db);
  await using pg = TcpProxy.start(targetOf(DATABASE_URL));
  pg.delayMs = 250; // every packet to and from Postgres waits: commits outlast the visibility timeout
  const queueUrl = sqs.createQueue({ VisibilityTimeout: "1" });
  const env = {
    PII_HMAC_KEY: TEST_SECRET,
    DATABASE_URL: viaProxy(DATABASE_URL, pg),
    ...db.env,
  };
  // `run` keeps all four polling until the queue is done, so they really race.
  const consumers = Array.from({ length: 4 }, () =>
    startConsumer(
      [
        "run",
        "--queue-url",
        queueUrl,
        "--summary-json",
        "--max-rows",
        "300",
        "--wait-seconds",
        "1",
      ],
      env,
    ));
  // Load the queue only once all four are polling (their last start-up step
  // is the prune of old rejects), so that none arrives late to an empty queue.
  // Only this test's consumers count (its state schema): files run in parallel.
  await waitFor(
    async () => {
      const [row] = await db.sql`SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE application_name = 'login-etl' AND query LIKE '%DELETE FROM%login_etl_rejects%'
        AND query LIKE ${`%${db.stateSchema}%`}`;
      return row?.n === 4;
    },
    60_000,
    "four consumers started",
  );
  const sent = load(sqs, queueUrl, 4_000, 4);
  await waitFor(
    async () => (await ledgerCount(db.sql)) >= sent.length,
    120_000,
    "every message committed",
  );
  await waitFor(
    () => sqs.counts(queueUrl).inFlight === 0 && sqs.counts(queueUrl).ready === 0,
    30_000,
    "an empty queue",
  );
  for (const c of consumers) c.child.kill("SIGTERM");
  const results = await Promise.all(consumers.map((c) => c.done));
  for (const r of results) assert.equal(r.code, 0, r.stderr.slice(-2000));
  const summaries = results.map((r) => JSON.parse(r.stdout));
  assert.ok(summaries.filter((s) => s.received > 0).length >= 3, "the consumers shared the queue");
  const rest = await drainUntilEmpty(sqs, queueUrl, { ...env, DATABASE_URL });
  const landed = await checkLanded(db.sql, sent);
  reportFigures("four consumers", {
    messages: sent.length,
    received_per_consumer: summaries.map((s) => s.received),
    redeliveries_absorbed: summaries.reduce((n, s) => n + s.redelivered, 0) +
      rest.summaries.reduce((n, s) => n + (s.redelivered ?? 0), 0),
    lost: landed.lost,
    duplicated: landed.duplicated,
  });
});

Deno.test("a consumer frozen with SIGSTOP for twice the visibility timeout while another works writes no row twice", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  // The schema is in place beforehand, as in production: start-up through the
  // slowed proxy below would otherwise spend its time on the migrations.
  await migrate(db.sql, db);
  await using pg = TcpProxy.start(targetOf(DATABASE_URL));
  pg.delayMs = 150; // slow the first consumer's commits so it is caught holding messages
  const queueUrl = sqs.createQueue({ VisibilityTimeout: "2" });
  const sent = load(sqs, queueUrl, 4_000, 5);
  const env = { PII_HMAC_KEY: TEST_SECRET, DATABASE_URL, ...db.env };
  const frozen = startConsumer([
    "drain",
    "--queue-url",
    queueUrl,
    "--summary-json",
    "--max-rows",
    "500",
  ], {
    ...env,
    DATABASE_URL: viaProxy(DATABASE_URL, pg),
  });
  await waitFor(
    () => sqs.counts(queueUrl).inFlight > 0,
    20_000,
    "the first consumer to hold messages",
  );
  await delay(300);
  const heldWhenFrozen = sqs.counts(queueUrl).inFlight;
  frozen.child.kill("SIGSTOP");
  const other = startConsumer(["drain", "--queue-url", queueUrl, "--summary-json"], env);
  await delay(4000); // twice the visibility timeout: the frozen consumer's messages go to the other
  frozen.child.kill("SIGCONT");
  const [a, b] = await Promise.all([frozen.done, other.done]);
  assert.equal(a.code, 0, a.stderr.slice(-2000));
  assert.equal(b.code, 0, b.stderr.slice(-2000));
  const rest = await drainUntilEmpty(sqs, queueUrl, env);
  const landed = await checkLanded(db.sql, sent);
  const frozenSummary = JSON.parse(a.stdout);
  reportFigures("sigstop", {
    messages: sent.length,
    held_when_frozen: heldWhenFrozen,
    frozen_consumer: {
      received: frozenSummary.received,
      inserted: frozenSummary.inserted,
      duplicates: frozenSummary.redelivered,
    },
    other_consumer: JSON.parse(b.stdout).received,
    later_runs: rest.runs,
    lost: landed.lost,
    duplicated: landed.duplicated,
  });
});
