// `--concurrency auto` against fauxqs behind a delay (~25 ms round trips,
// tests/helpers/tcp_proxy.ts) and the real Postgres: with thousands of
// messages queued the receive loops grow past the old fixed 8, on an empty
// queue they fall back to the floor, and every message is written exactly
// once. Only that coarse behaviour decides a pass, never a rate or a time.

import assert from "node:assert/strict";
import { generateBodies } from "../../src/seed/generate.ts";
import { AUTO_FLOOR, AUTO_START } from "../../src/pipeline/concurrency.ts";
import { startConsumer } from "../helpers/consumers.ts";
import { events, eventsSoFar, ledgerCount, listenedPort, waitFor } from "../helpers/faults.ts";
import {
  DATABASE_URL,
  enqueue,
  freshSchema,
  reportFigures,
  startSqs,
  TEST_SECRET,
} from "../helpers/services.ts";
import { targetOf, TcpProxy } from "../helpers/tcp_proxy.ts";

const MESSAGES = 5000;

Deno.test("run --concurrency auto grows the loops past 8 on a full queue behind 25 ms, falls back on an empty one, and writes each message once", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  await using proxy = TcpProxy.start(targetOf(sqs.endpoint));
  proxy.delayMs = 12; // each way, per chunk: about 25 ms a call
  const direct = sqs.createQueue();
  const queueUrl = `http://127.0.0.1:${proxy.port}${new URL(direct).pathname}`;
  const ids = enqueue(sqs, direct, [...generateBodies(MESSAGES, { badRatio: 0, seed: 21 })]);

  // A process of its own, as users run it: auto judges the CPU its process
  // spends, and in the test process that is every parallel test file's.
  // The default is auto; wait-seconds 1 so an empty queue's receives come
  // back soon; debug shows each change.
  const consumer = startConsumer([
    "run",
    "--queue-url",
    queueUrl,
    "--wait-seconds",
    "1",
    "--listen",
    "127.0.0.1:0",
    "--log-level",
    "debug",
    "--summary-json",
  ], { PII_HMAC_KEY: TEST_SECRET, DATABASE_URL, ...db.env });
  const changes = () => eventsSoFar(consumer).filter((e) => e.event === "ConcurrencyChanged");
  /** The login_etl_receive_loops gauge, as /metrics shows it. */
  const gauge = async (port: number) => {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    return Number(/^login_etl_receive_loops (\d+)$/m.exec(text)?.[1] ?? NaN);
  };
  let shownAtCommit = 0;
  try {
    const port = await listenedPort(consumer);
    await waitFor(
      async () => (await ledgerCount(db.sql)) >= MESSAGES,
      120_000,
      "every message is committed",
    );
    shownAtCommit = await gauge(port);
    await waitFor(
      () => Number(changes().at(-1)?.to) <= AUTO_FLOOR,
      60_000,
      `the loops back at ${AUTO_FLOOR}`,
    );
    assert.equal(await gauge(port), AUTO_FLOOR, "the gauge shows the floor");
  } finally {
    consumer.child.kill("SIGTERM");
  }
  const result = await consumer.done;
  assert.equal(result.code, 0, result.stderr.slice(-3000));
  const summary = JSON.parse(result.stdout);
  const all = events(result.stderr).filter((e) => e.event === "ConcurrencyChanged");
  const path = all.map((c) => `${c.to}${String(c.reason)[0]}`).join(" ");
  const peak = Math.max(...all.map((c) => Number(c.to)));
  reportFigures("auto concurrency", { peak, shownAtCommit, path, inserted: summary.inserted });
  assert.deepEqual(all[0], { ...all[0], from: 0, to: AUTO_START, reason: "start" });
  assert.ok(peak > 8, `the loops grew past 8: ${path}`);
  assert.ok(all.some((c) => c.reason === "full" && Number(c.to) > 8), path);
  assert.ok(all.some((c) => c.reason === "empty"), `an empty queue shrank them: ${path}`);
  assert.deepEqual(all.at(-1), { ...all.at(-1), to: 0, reason: "done" });

  // Exactly once: a row and a ledger entry per message, no redelivery, the queue empty.
  assert.equal(summary.inserted, MESSAGES);
  assert.equal(summary.redelivered, 0);
  assert.equal(summary.deleted, MESSAGES);
  assert.ok(summary.balanced);
  const [rows] = await db.sql`SELECT count(*)::int AS n FROM user_logins`;
  assert.equal(rows?.n, MESSAGES);
  const ledger = await db.sql<{ id: string }[]>`SELECT message_id AS id FROM login_etl_ledger`;
  assert.deepEqual(ledger.map((r) => r.id).sort(), [...ids].sort());
  assert.deepEqual(sqs.counts(direct), { ready: 0, inFlight: 0 });
});
