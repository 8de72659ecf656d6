// drain/run against a real SQS endpoint (fauxqs in process) and the real
// Postgres: rows land once, masks are stable, rejects are kept, nothing is
// deleted before commit. The exercise's sample loaded as rows
// (endpoints_test.ts) and a redelivery after a crash between commit and delete
// (endpoints_visibility_test.ts) are tested on each SQS implementation.

import assert from "node:assert/strict";
import { drainInProcess, startConsume, testMasker } from "../helpers/drain.ts";
import { enqueue, freshSchema, reportFigures, startSqs } from "../helpers/services.ts";
import { holdInserts } from "../helpers/insert_lock.ts";

/**
 * A drain's closing receive without its 1 s wait: each queue here is filled
 * before its drain starts, and fauxqs answers a short poll with what is
 * visible, so waiting for more proves nothing.
 */
const NO_IDLE = { "idle-seconds": "0" } as const;

Deno.test("drain gives equal masks for equal values across runs, spellings and processes, distinct per field", async () => {
  await using sqs = await startSqs();
  await using db1 = await freshSchema();
  await using db2 = await freshSchema();
  const event = (user: string, ip: string, device: string) =>
    JSON.stringify({
      "user_id": user,
      "app_version": "1.2.3",
      "device_type": "ios",
      ip,
      locale: null,
      "device_id": device,
    });
  const bodies = [
    event("a", "2001:db8::1", "1.2.3.4"),
    event("b", "2001:DB8:0:0:0:0:0:1", "111-22-3333"),
    event("c", "1.2.3.4", "111-22-3333"),
    event("d", "::ffff:1.2.3.4", "999-99-9999"),
  ];
  for (const db of [db1, db2]) {
    const queueUrl = sqs.createQueue();
    enqueue(sqs, queueUrl, bodies);
    await drainInProcess(queueUrl, db.schema, { flags: NO_IDLE });
  }
  const read = (db: typeof db1) =>
    db.sql<{ user_id: string; masked_ip: string; masked_device_id: string }[]>`
      SELECT user_id, masked_ip, masked_device_id FROM user_logins ORDER BY user_id`;
  const first = await read(db1);
  const second = await read(db2);
  assert.deepEqual(first, second, "same key, same values: same masks in two runs");
  const by = Object.fromEntries(first.map((r) => [r.user_id, r]));
  assert.equal(by.a?.masked_ip, by.b?.masked_ip, "two spellings of one IPv6 address");
  assert.equal(by.c?.masked_ip, by.d?.masked_ip, "IPv4 and its IPv4-mapped IPv6 form");
  assert.equal(by.b?.masked_device_id, by.c?.masked_device_id, "repeated device id");
  assert.notEqual(by.c?.masked_ip, by.a?.masked_device_id, "1.2.3.4 as ip and as device id differ");
  for (const r of first) {
    assert.match(r.masked_ip, /^k1:[A-Za-z0-9_-]{43}$/);
    assert.ok(!r.masked_ip.includes("1.2.3.4"));
  }
});

Deno.test("malformed messages end in login_etl_rejects with their reason, PII masked, and are deleted", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const queueUrl = sqs.createQueue();
  const good = {
    "user_id": "u1",
    "app_version": "1.0",
    "device_type": "ios",
    ip: "203.0.113.9",
    locale: "FR",
    "device_id": "123-45-6789",
  };
  const cases: [string, string][] = [
    ["not_json", `{"ip": "203.0.113.9", "device_id": "123-45-6789"`],
    ["not_object", JSON.stringify([good])],
    ["missing_field", JSON.stringify({ ...good, user_id: undefined })],
    ["wrong_type", JSON.stringify({ ...good, app_version: 1 })],
    ["empty", JSON.stringify({ ...good, device_type: "" })],
    ["too_long", JSON.stringify({ ...good, locale: "x".repeat(33) })],
    ["bad_char", JSON.stringify({ ...good, user_id: "a\u0000b" })],
    ["bad_ip", JSON.stringify({ ...good, ip: "203.0.113.999" })],
    ["bad_version", JSON.stringify({ ...good, app_version: "1.2.3.4" })],
    ["too_large", JSON.stringify({ ...good, padding: "p".repeat(70_000) })],
  ];
  const ids = enqueue(sqs, queueUrl, [...cases.map(([, body]) => body), JSON.stringify(good)]);
  const { summary, logLines: lines } = await drainInProcess(queueUrl, db.schema, {
    flags: NO_IDLE,
  });
  assert.equal(summary.inserted, 1);
  assert.equal(summary.rejected, cases.length);
  assert.equal(summary.deleted, cases.length + 1);
  assert.deepEqual(sqs.counts(queueUrl), { ready: 0, inFlight: 0 });

  const rejects = await db.sql<
    {
      message_id: string;
      reason: string;
      detail: string;
      masked_body: string | null;
      body_bytes: number;
      body_hmac: string;
    }[]
  >`
    SELECT message_id, reason, detail, masked_body, body_bytes, body_hmac FROM login_etl_rejects`;
  const everything = JSON.stringify(rejects) + lines.join("\n");
  for (const [i, [reason, body]] of cases.entries()) {
    const row = rejects.find((r) => r.message_id === ids[i]);
    assert.ok(row, `reject row for ${reason}`);
    assert.equal(row.reason, reason);
    assert.ok(row.detail.length > 0);
    assert.equal(row.body_bytes, new TextEncoder().encode(body).length);
    assert.match(row.body_hmac, /^k1:/);
    if (reason === "not_json" || reason === "too_large") assert.equal(row.masked_body, null);
    else assert.ok(row.masked_body !== null && JSON.parse(row.masked_body) !== undefined);
  }
  assert.ok(!everything.includes("203.0.113.9"), "raw ip stored or logged");
  assert.ok(!everything.includes("123-45-6789"), "raw device id stored or logged");
  const masker = await testMasker();
  const notObject = rejects.find((r) => r.reason === "not_object");
  assert.ok(
    notObject?.masked_body?.includes(await masker.mask("ip", "203.0.113.9")),
    "reject body keeps the ip's mask",
  );
});

Deno.test("a key id recorded with another secret is refused before anything is received", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const queueUrl = sqs.createQueue();
  enqueue(sqs, queueUrl, ["{}"]);
  await drainInProcess(queueUrl, db.schema, { flags: NO_IDLE });
  enqueue(sqs, queueUrl, ["{}"]);
  const second = startConsume(queueUrl, db.schema, {
    env: { PII_HMAC_KEY: "another secret that is also 32+ bytes long" },
  });
  await assert.rejects(
    second.done,
    (error: Error & { code?: string; exitCode?: number }) => {
      assert.equal(error.code, "key_mismatch");
      assert.equal(error.exitCode, 2);
      assert.match(error.message, /HMAC key id "k1" is recorded with a different secret/);
      return true;
    },
  );
  assert.equal(second.telemetry.counters.received, 0);
  assert.equal(sqs.counts(queueUrl).ready, 1, "the message waits for the right key");
});

Deno.test("nothing is deleted before commit: a backend killed mid-batch is retried, no row lost or doubled", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const queueUrl = sqs.createQueue();
  const n = 50;
  enqueue(
    sqs,
    queueUrl,
    Array.from({ length: n }, (_, i) =>
      JSON.stringify({
        "user_id": `u${i}`,
        "app_version": "1.1",
        "device_type": "ios",
        ip: `192.0.2.${i}`,
        locale: null,
        "device_id": `x${i}`,
      })),
  );
  // Create the tables first, then hold a lock that blocks inserts into
  // user_logins, so the consumer's transaction stops mid-batch.
  const lock = await holdInserts(db);
  const running = startConsume(queueUrl, db.schema, { flags: { ...NO_IDLE, "writers": "1" } });
  try {
    // Up to a minute: with other test files busy on both cores the consumer's
    // start-up (module load, migrate, first receive) has taken over 10 s; the
    // wait ends as soon as the write blocks.
    let pid: number | undefined;
    for (let i = 0; i < 1200 && pid === undefined; i++) {
      await new Promise((r) => setTimeout(r, 50));
      pid = (await lock.blocked())[0];
    }
    assert.ok(pid !== undefined, "the consumer's write is blocked on the lock");
    assert.deepEqual(
      sqs.counts(queueUrl),
      { ready: 0, inFlight: n },
      "received, none deleted while uncommitted",
    );

    await db.sql`SELECT pg_terminate_backend(${pid})`;
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(sqs.counts(queueUrl).inFlight, n, "a failed transaction deletes nothing");
  } finally {
    await lock[Symbol.asyncDispose]();
  }

  const { summary, telemetry } = await running.done;
  reportFigures("killed backend", {
    ...summary,
    write_failures: telemetry.counters.stageFailures.write,
  });
  assert.ok(
    telemetry.counters.stageFailures.write >= 1,
    "the killed transaction was seen and retried",
  );
  assert.equal(summary.inserted, n);
  assert.equal(summary.redelivered, 0);
  assert.equal(summary.deleted, n);
  const [count] = await db.sql`SELECT count(*)::int AS n FROM user_logins`;
  assert.equal(count?.n, n);
  assert.deepEqual(sqs.counts(queueUrl), { ready: 0, inFlight: 0 });
});

Deno.test("--dry-run prints masked rows as JSON Lines and writes and deletes nothing", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const queueUrl = sqs.createQueue();
  enqueue(sqs, queueUrl, [
    JSON.stringify({
      "user_id": "u1",
      "app_version": "0.96",
      "device_type": "ios",
      ip: "198.51.100.7",
      locale: "RU",
      "device_id": "555-55-5555",
    }),
    "not json",
  ]);
  const { summary, stdoutLines: printed } = await drainInProcess(queueUrl, db.schema, {
    flags: { ...NO_IDLE, "dry-run": true },
  });
  assert.equal(printed.length, 2);
  const row = printed.map((l) => JSON.parse(l)).find((r) => r.user_id === "u1");
  assert.equal(row.app_version, 96000);
  assert.match(row.masked_ip, /^k1:/);
  assert.ok(!printed.join("").includes("198.51.100.7"));
  assert.equal(summary.deleted, 0);
  // Given back at once once printed: nothing held, nothing hidden from other consumers.
  assert.equal(summary.returned, 2);
  assert.deepEqual(sqs.counts(queueUrl), { ready: 2, inFlight: 0 });
  const [tables] = await db
    .sql`SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = ${db.schema}`;
  assert.equal(tables?.n, 0, "dry run creates nothing");
});

Deno.test("run consumes until stopped, then commits and deletes what it holds", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const queueUrl = sqs.createQueue();
  const stop = new AbortController();
  const running = startConsume(queueUrl, db.schema, {
    command: "run",
    flags: { "wait-seconds": "1" },
    stop: stop.signal,
  });
  for (let wave = 0; wave < 3; wave++) {
    enqueue(
      sqs,
      queueUrl,
      Array.from({ length: 40 }, (_, i) =>
        JSON.stringify({
          "user_id": `w${wave}-${i}`,
          "app_version": "3.0",
          "device_type": "android",
          ip: "10.1.1.1",
          locale: null,
          "device_id": "d",
        })),
    );
    await new Promise((r) => setTimeout(r, 300));
  }
  for (let i = 0; i < 100 && running.telemetry.counters.deleted < 120; i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
  stop.abort();
  const { summary } = await running.done;
  assert.equal(summary.inserted, 120);
  assert.equal(summary.deleted, 120);
  assert.ok(summary.balanced);
  assert.deepEqual(sqs.counts(queueUrl), { ready: 0, inFlight: 0 });
});

Deno.test("--dry-run drain ends after one round of the queue even when the visibility timeout is shorter than the run", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const queueUrl = sqs.createQueue({ VisibilityTimeout: "1" });
  const bodies = Array.from({ length: 30 }, (_, i) =>
    JSON.stringify({
      "user_id": `d${i}`,
      "app_version": "1.0",
      "device_type": "ios",
      ip: "10.0.0.1",
      locale: null,
      "device_id": "x",
    }));
  enqueue(sqs, queueUrl, bodies);
  // Slow enough that the first messages come back before the drain would see an empty receive.
  const { summary, stdoutLines: printed } = await drainInProcess(queueUrl, db.schema, {
    flags: { "dry-run": true, "idle-seconds": "2", "max-wait-ms": "1500" },
  });
  const users = printed.map((l) => JSON.parse(l).user_id);
  assert.equal(new Set(users).size, 30, "every message printed");
  assert.equal(users.length, 30, "none printed twice");
  assert.equal(summary.deleted, 0);
});
