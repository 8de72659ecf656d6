// `--concurrency auto` against fauxqs behind a delay (~25 ms round trips,
// tests/helpers/tcp_proxy.ts) and the real Postgres: with thousands of
// messages queued the receive loops grow past the old fixed 8, on an empty
// queue they fall back to the floor, and every message is written exactly
// once. Only that coarse behaviour decides a pass, never a rate or a time.

import assert from "node:assert/strict";
import { generateBodies } from "../../src/seed/generate.ts";
import { Metrics } from "../../src/ops/metrics.ts";
import { AUTO_FLOOR, AUTO_START } from "../../src/pipeline/concurrency.ts";
import { startConsume } from "../helpers/drain.ts";
import { enqueue, freshSchema, reportFigures, startSqs } from "../helpers/services.ts";
import { targetOf, TcpProxy } from "../helpers/tcp_proxy.ts";

const MESSAGES = 5000;

/** Polls `ready` every 50 ms until it holds, or fails after `timeoutMs`. */
async function until(what: string, ready: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ready()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

Deno.test("run --concurrency auto grows the loops past 8 on a full queue behind 25 ms, falls back on an empty one, and writes each message once", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  await using proxy = TcpProxy.start(targetOf(sqs.endpoint));
  proxy.delayMs = 12; // each way, per chunk: about 25 ms a call
  const direct = sqs.createQueue();
  const queueUrl = `http://127.0.0.1:${proxy.port}${new URL(direct).pathname}`;
  const ids = enqueue(sqs, direct, [...generateBodies(MESSAGES, { badRatio: 0, seed: 21 })]);

  const stop = new AbortController();
  // The default is auto; wait-seconds 1 so an empty queue's receives come back soon.
  const run = startConsume(queueUrl, db.schema, {
    command: "run",
    flags: { "wait-seconds": "1" },
    stop: stop.signal,
  });
  const counters = run.telemetry.counters;
  const metrics = new Metrics(counters);
  /** The login_etl_receive_loops gauge, as /metrics shows it. */
  const gauge = async () =>
    Number(/^login_etl_receive_loops (\d+)$/m.exec(await metrics.expose())?.[1] ?? NaN);
  let peak = 0;
  let shownAtCommit = 0;
  const watch = setInterval(() => (peak = Math.max(peak, counters.receiveLoops)), 20);
  try {
    await until("every message is committed", () => counters.inserted >= MESSAGES, 120_000);
    shownAtCommit = await gauge();
    await until(
      `the loops are back at ${AUTO_FLOOR}`,
      () => counters.receiveLoops <= AUTO_FLOOR,
      60_000,
    );
    assert.equal(await gauge(), AUTO_FLOOR, "the gauge shows the floor");
  } finally {
    clearInterval(watch);
    stop.abort();
  }
  const { summary, logLines } = await run.done;

  const changes = logLines.map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.event === "ConcurrencyChanged");
  const path = changes.map((c) => `${c.to}${String(c.reason)[0]}`).join(" ");
  reportFigures("auto concurrency", { peak, shownAtCommit, path, inserted: summary.inserted });
  assert.deepEqual(changes[0], { ...changes[0], from: 0, to: AUTO_START, reason: "start" });
  assert.ok(peak > 8, `the loops grew past 8: ${path}`);
  assert.ok(changes.some((c) => c.reason === "full" && Number(c.to) > 8), path);
  assert.ok(changes.some((c) => c.reason === "empty"), `an empty queue shrank them: ${path}`);
  assert.deepEqual(changes.at(-1), { ...changes.at(-1), to: 0, reason: "done" });

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
