// Consumers racing for the same messages: four on one queue with commits
// slower than the visibility timeout write no row twice. (One frozen with
// SIGSTOP while another works: faults_frozen_test.ts.)

import assert from "node:assert/strict";
import {
  assertRunning,
  checkLanded,
  drainUntilEmpty,
  startConsumer,
} from "../helpers/consumers.ts";
import { ledgerCount, load, slowedDb, waitFor } from "../helpers/faults.ts";
import { DATABASE_URL, reportFigures, startSqs, TEST_SECRET } from "../helpers/services.ts";

Deno.test("four consumers on one queue with a 1 s visibility timeout and slowed commits write no row twice", async () => {
  await using sqs = await startSqs();
  // Every packet to and from Postgres waits: commits outlast the visibility timeout.
  await using slowed = await slowedDb(250);
  const { db } = slowed;
  const queueUrl = sqs.createQueue({ VisibilityTimeout: "1" });
  const env = {
    PII_HMAC_KEY: TEST_SECRET,
    DATABASE_URL: slowed.slowUrl,
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
      assertRunning(consumers);
      const [row] = await db.sql`SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE application_name = 'login-etl' AND query LIKE '%DELETE FROM%login_etl_rejects%'
        AND query LIKE ${`%${db.stateSchema}%`}`;
      return row?.n === 4;
    },
    60_000,
    "four consumers started",
  );
  // 1,000 messages are redelivered thousands of times over under the slowed
  // commits (asserted below): the race needs no more to happen.
  const sent = load(sqs, queueUrl, 1_000, 4);
  await waitFor(
    async () => {
      assertRunning(consumers);
      return (await ledgerCount(db.sql)) >= sent.length;
    },
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
  const redeliveries = summaries.reduce((n, s) => n + s.redelivered, 0) +
    rest.summaries.reduce((n, s) => n + (s.redelivered ?? 0), 0);
  reportFigures("four consumers", {
    messages: sent.length,
    received_per_consumer: summaries.map((s) => s.received),
    redeliveries_absorbed: redeliveries,
    lost: landed.lost,
    duplicated: landed.duplicated,
  });
  // Without redeliveries the consumers never raced for a message.
  assert.ok(redeliveries > 0, "messages were redelivered while their first commit was slow");
});
