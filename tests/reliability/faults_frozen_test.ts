// A consumer frozen with SIGSTOP for twice the visibility timeout while
// another works on the same queue: no row is written twice. (Split from
// faults_race_test.ts so two jobs run the two long cases.)

import assert from "node:assert/strict";
import {
  assertRunning,
  checkLanded,
  delay,
  drainUntilEmpty,
  startConsumer,
} from "../helpers/consumers.ts";
import { load, slowedDb, waitFor } from "../helpers/faults.ts";
import { DATABASE_URL, reportFigures, startSqs, TEST_SECRET } from "../helpers/services.ts";

Deno.test("a consumer frozen with SIGSTOP for twice the visibility timeout while another works writes no row twice", async () => {
  await using sqs = await startSqs();
  // The first consumer's commits slowed, so it is caught holding messages.
  await using slowed = await slowedDb(150);
  const { db } = slowed;
  const queueUrl = sqs.createQueue({ VisibilityTimeout: "2" });
  const sent = load(sqs, queueUrl, 2_000, 5);
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
    DATABASE_URL: slowed.slowUrl,
  });
  await waitFor(
    () => {
      assertRunning([frozen]);
      return sqs.counts(queueUrl).inFlight > 0;
    },
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
