// Poison messages and persistent failures: a large message received more often
// than --max-receives is rejected as poison (unless SQS dead-letters it), and
// an SQS endpoint that keeps failing ends the run with exit 1 and one line
// (through the CLI; the poison runs go through `main` in this process).

import assert from "node:assert/strict";
import { ReceiveMessageCommand } from "@aws-sdk/client-sqs";
import { failureLine, runCli } from "../helpers/cli.ts";
import { runInProcess } from "../helpers/in_process.ts";
import { startSqsFaultProxy } from "../helpers/sqs_fault_proxy.ts";
import {
  DATABASE_URL,
  enqueue,
  freshSchema,
  reportFigures,
  startSqs,
  TEST_SECRET,
} from "../helpers/services.ts";

const event = JSON.stringify({
  "user_id": "u-poison",
  "app_version": "1.0",
  "device_type": "ios",
  ip: "192.0.2.1",
  locale: null,
  "device_id": "000-00-0000",
});

/** A valid event made large by an extra field (extra fields are ignored). */
const bigEvent = JSON.stringify({
  ...JSON.parse(event),
  "user_id": "u-big",
  padding: "x".repeat(10_000),
});

Deno.test("a large message received more than --max-receives times is rejected as poison, unparsed; a small one is still written", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const queueUrl = sqs.createQueue();
  const [id] = enqueue(sqs, queueUrl, [bigEvent, event]);
  // Receive both three times without deleting, as crashed consumers would;
  // VisibilityTimeout 0 hands them straight back.
  for (let i = 0; i < 3; i++) {
    const out = await sqs.client.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 10,
        VisibilityTimeout: 0,
      }),
    );
    assert.equal(out.Messages?.length, 2);
  }
  const result = await runInProcess([
    "drain",
    "--queue-url",
    queueUrl,
    "--summary-json",
    "--max-receives",
    "3",
  ], { PII_HMAC_KEY: TEST_SECRET, DATABASE_URL, ...db.env });
  assert.equal(result.code, 0, result.stderr);
  const summary = JSON.parse(result.stdout);
  assert.deepEqual(summary.rejected_by_reason, { poison: 1 });
  assert.equal(summary.inserted, 1, "the small valid login is not lost to the receive count");
  const rejects = await db.sql<
    { message_id: string; reason: string; detail: string; masked_body: string | null }[]
  >`
    SELECT message_id, reason, detail, masked_body FROM login_etl_rejects ORDER BY message_id`;
  assert.equal(rejects.length, 1);
  const first = rejects.find((r) => r.message_id === id);
  assert.equal(first?.reason, "poison");
  assert.match(
    first?.detail ?? "",
    /^received 4 times, more than --max-receives 3, and larger than 8192 characters: not parsed$/,
  );
  const [row] = await db.sql`SELECT user_id FROM user_logins`;
  assert.equal(row?.user_id, "u-poison");
  assert.equal(first?.masked_body, null, "a poison body is not parsed");
  assert.deepEqual(sqs.counts(queueUrl), { ready: 0, inFlight: 0 });
  reportFigures("poison", summary);
});

Deno.test("with a redrive policy on the queue, repeat deliveries are left to SQS and said so at start", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const dlq = sqs.createQueue();
  const dlqArn = `arn:aws:sqs:us-east-1:000000000000:${dlq.split("/").pop()}`;
  const queueUrl = sqs.createQueue({
    RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: 10 }),
  });
  enqueue(sqs, queueUrl, [bigEvent]);
  for (let i = 0; i < 3; i++) {
    await sqs.client.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, VisibilityTimeout: 0 }));
  }
  const result = await runInProcess([
    "drain",
    "--queue-url",
    queueUrl,
    "--summary-json",
    "--max-receives",
    "2",
  ], { PII_HMAC_KEY: TEST_SECRET, DATABASE_URL, ...db.env });
  assert.equal(result.code, 0, result.stderr);
  const summary = JSON.parse(result.stdout);
  assert.equal(summary.inserted, 1, "not poison: SQS owns repeat failures here");
  assert.match(
    result.stderr,
    /"redrive":"dead-letter after 10 receives","max_receives":"left to the redrive policy"/,
  );
});

Deno.test("an SQS endpoint that keeps failing past --max-retry-seconds exits 1 with one line", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const queueUrl = sqs.createQueue();
  await using proxy = await startSqsFaultProxy(
    sqs.endpoint,
    (action) => (action === "ReceiveMessage" ? "error500" : "pass"),
  );
  const started = performance.now();
  const result = await runCli(
    [
      "drain",
      "--queue-url",
      `${proxy.endpoint}${new URL(queueUrl).pathname}`,
      "--max-retry-seconds",
      "2",
    ],
    { env: { PII_HMAC_KEY: TEST_SECRET, DATABASE_URL, ...db.env } },
  );
  const seconds = (performance.now() - started) / 1000;
  assert.equal(result.code, 1);
  const last = failureLine(result);
  assert.match(last, /^error: ReceiveMessage failed: InternalError: injected$/);
  assert.doesNotMatch(result.stderr, /\n\s+at /);
  const retries =
    result.stderr.split("\n").filter((l) =>
      l.includes('"event":"StageFailed"') && l.includes('"retry_in_ms":')
    )
      .length;
  assert.ok(retries >= 2, "retried with backoff before giving up");
  reportFigures("persistent sqs failure", {
    retries_logged: retries,
    seconds: Math.round(seconds * 10) / 10,
  });
});
