// A Postgres outage (a stalled or a reset connection) longer than the
// visibility timeout under a running consumer: receiving pauses, and the run
// completes on its own. The other faults are in faults_sqs_test.ts and
// faults_race_test.ts (one file each, so the three run in parallel).

import assert from "node:assert/strict";
import { checkLanded, delay, drainUntilEmpty, startConsumer } from "../helpers/consumers.ts";
import { events, eventsSoFar, ledgerCount, load, waitFor } from "../helpers/faults.ts";
import { targetOf, TcpProxy, viaProxy } from "../helpers/tcp_proxy.ts";
import {
  DATABASE_URL,
  freshSchema,
  reportFigures,
  startSqs,
  TEST_SECRET,
} from "../helpers/services.ts";

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
    // The consumer notices (at once on a reset, after the 2 s write timeout on
    // a stall) and stops receiving; a receive already answered by then is done
    // within a round trip on loopback.
    const noticed = () =>
      eventsSoFar(consumer).some((e) => e.event === "StageFailed" && e.stage === "write");
    await waitFor(noticed, 30_000, "the write failure");
    await delay(300);
    const readyEarly = sqs.counts(queueUrl).ready;
    // 5 s in all at least: more than twice the 2 s visibility timeout.
    await delay(Math.max(3500, 5000 - (Date.now() - outageStarted)));
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
