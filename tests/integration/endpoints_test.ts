// The drain path against three SQS implementations we did not write: fauxqs
// (JSON), local-aws-sqs (JSON and Query, LocalStack-style URLs), and
// local-aws-sqs behind a proxy that refuses JSON as LocalStack < 3.0 does.
// Each runs the sample with a malformed message, a redelivery after a crash
// between commit and delete, and a commit held past the visibility timeout
// (nothing deleted before commit, visibility extended, nothing redelivered).

import assert from "node:assert/strict";
import { encodeAppVersion } from "../../src/app_version.ts";
import { canonicalIp } from "../../src/ip.ts";
import { consume } from "../../src/commands/_consume.ts";
import { seed } from "../../src/commands/_seed.ts";
import { Secret } from "../../src/secret.ts";
import { connect, Database } from "../../src/db/pool.ts";
import { registerKey } from "../../src/db/keys.ts";
import { ensureSchema } from "../../src/db/schema.ts";
import { Masker } from "../../src/mask.ts";
import { runPipeline } from "../../src/pipeline/pipeline.ts";
import { generateBodies } from "../../src/seed/generate.ts";
import { loadSampleBodies } from "../../src/seed/sample.ts";
import { localSink } from "../../src/sink/sink.ts";
import { createSqsClient } from "../../src/sqs/client.ts";
import { sqsQueue } from "../../src/sqs/queue.ts";
import { utcDate } from "../../src/to_row.ts";
import { postgresStore } from "../../src/db/write.ts";
import {
  capturingTelemetry,
  DATABASE_URL,
  freshSchema,
  hasSample,
  reportFigures,
  SAMPLE_PATH,
  TEST_SECRET,
  testConfig,
  testConnection,
} from "../helpers/services.ts";
import { ENDPOINT_KINDS, startEndpoint } from "../helpers/sqs_endpoints.ts";

const neverStop = new AbortController().signal;
const noStdout = () => {};

/** A message in another shape, like the one the exercise's own queue holds. */
const MALFORMED = JSON.stringify({ foo: "oops_wrong_msg_format", bar: "not a login" });

/** The exercise's 100 messages when the sample file is here, else 100 synthetic ones. */
async function sampleBodies(): Promise<string[]> {
  return hasSample()
    ? await loadSampleBodies(SAMPLE_PATH)
    : [...generateBodies(100, { badRatio: 0, seed: 7 })];
}

function config(queueUrl: string, schema: string, flags: Record<string, string> = {}) {
  return testConfig("drain", {
    "queue-url": queueUrl,
    "database-url": DATABASE_URL,
    schema,
    ...flags,
  });
}

function logins(n: number, tag: string): string[] {
  return Array.from({ length: n }, (_, i) =>
    JSON.stringify({
      "user_id": `${tag}-${i}`,
      "app_version": "2.3.0",
      "device_type": "android",
      ip: `198.51.100.${i}`,
      locale: "RU",
      "device_id": `${tag}-dev-${i}`,
    }));
}

function events(lines: readonly string[], name: string): Record<string, unknown>[] {
  return lines.map((l) => JSON.parse(l)).filter((l) => l.event === name);
}

for (const kind of ENDPOINT_KINDS) {
  Deno.test(`${kind}: seed then drain the sample and a malformed message: rows once, one reject, queue empty`, async () => {
    await using sqs = await startEndpoint(kind);
    await using db = await freshSchema();
    const queueUrl = await sqs.createQueue();
    const bodies = await sampleBodies();
    const seeding = capturingTelemetry();
    await seed(testConfig("seed", { "queue-url": queueUrl }), seeding.telemetry, [
      ...bodies,
      MALFORMED,
    ]);
    const { telemetry, lines } = capturingTelemetry();
    const summary = await consume(config(queueUrl, db.schema), {
      telemetry,
      stop: neverStop,
      writeStdout: noStdout,
    });
    reportFigures(`${kind} sample`, { ...summary, requests: sqs.requests });

    assert.equal(summary.received, 101);
    assert.equal(summary.inserted, 100);
    assert.deepEqual(summary.rejected_by_reason, { missing_field: 1 });
    assert.equal(summary.deleted, 101);
    assert.deepEqual(await sqs.counts(queueUrl), { ready: 0, inFlight: 0 });

    const masker = await Masker.create(
      new Secret(new TextEncoder().encode(TEST_SECRET), "t"),
      "k1",
    );
    // Each message as one correct row, every column (drain_test.ts checked
    // this on fauxqs alone, a duplicate of this case).
    const rows = await db.sql<Record<string, unknown>[]>`
      SELECT *, create_date::text AS day FROM user_logins`;
    assert.equal(rows.length, 100);
    const today = utcDate(Date.now());
    for (const body of bodies) {
      const event = JSON.parse(body);
      const row = rows.find((r) => r.user_id === event.user_id);
      assert.ok(row, `row for ${event.user_id}`);
      assert.equal(row.device_type, event.device_type);
      assert.equal(row.locale, event.locale);
      const version = encodeAppVersion(event.app_version);
      assert.ok(version.ok);
      assert.equal(row.app_version, version.encoded);
      // The mask is of the address's canonical spelling (synthetic bodies
      // spell some IPv6 addresses in capitals or with runs of zeros).
      const ip = canonicalIp(event.ip);
      assert.ok(ip.ok, event.ip);
      assert.equal(row.masked_ip, await masker.mask("ip", ip.canonical));
      assert.equal(row.masked_device_id, await masker.mask("device_id", event.device_id));
      assert.equal(row.day, today);
    }
    const [ledger] = await db.sql`SELECT count(*)::int AS n FROM login_etl_ledger`;
    assert.equal(ledger?.n, 101, "the 100 rows and the reject");
    assert.ok(summary.balanced);
    // SentTimestamp came back: asked for under both attribute names.
    assert.deepEqual(events(lines, "SentTimestampMissing"), []);
    const started = events(lines, "RunStarted")[0];
    const switched = [
      ...events(lines, "SqsProtocolSwitched"),
      ...events(seeding.lines, "SqsProtocolSwitched"),
    ];
    if (kind === "legacy-localstack") {
      // seed and drain each switched once, then spoke only Query.
      assert.equal(switched.length, 2);
      assert.match(
        String(switched[0]?.reason),
        /Operation detection failed|HTTP 500 with an XML body/,
      );
      assert.equal(started?.sqs_protocol, "query (auto)");
      assert.ok(sqs.requests.json <= 6, `JSON requests: ${sqs.requests.json}`);
    } else {
      assert.equal(switched.length, 0, "a JSON endpoint never switches");
      assert.equal(started?.sqs_protocol, "json (auto)");
    }
  });

  Deno.test(`${kind}: a redelivery after a crash between commit and delete writes no second row`, async () => {
    await using sqs = await startEndpoint(kind);
    await using db = await freshSchema();
    const queueUrl = await sqs.createQueue({ VisibilityTimeout: "2" });
    await sqs.send(queueUrl, logins(30, "r"));
    const masker = await Masker.create(
      new Secret(new TextEncoder().encode(TEST_SECRET), "t"),
      "k1",
    );
    const { client } = await createSqsClient({
      queueUrl,
      region: null,
      protocol: "auto",
      awsEnv: {},
      waitSeconds: 1,
    });
    const connection = await testConnection();
    const database = new Database({
      connection,
      schema: db.schema,
      stateSchema: db.stateSchema,
      max: 2,
    });
    try {
      await ensureSchema(database.sql, {
        connection,
        schema: db.schema,
        stateSchema: db.stateSchema,
      });
      await registerKey(database, masker);
      // Commits every row, then "crashes": no delete reaches the queue.
      const crashed = {
        ...sqsQueue(client, queueUrl),
        delete: () => Promise.resolve({ succeeded: [], failed: [] }),
      };
      const first = capturingTelemetry();
      await runPipeline({
        queue: crashed,
        sink: localSink(masker, postgresStore(database, { writeTimeoutMs: 10_000 }), {
          maxBodyBytes: 65536,
          maxReceives: 5,
        }),
        telemetry: first.telemetry,
      }, {
        mode: "drain",
        batchSize: 10,
        concurrency: 2,
        waitSeconds: 1,
        maxRows: 100,
        maxWaitMs: 50,
        writers: 1,
        maxRetryMs: 10_000,
        visibilityTimeoutSeconds: 2,
      });
      assert.equal(first.telemetry.counters.inserted, 30);
    } finally {
      await database.end();
      client.destroy();
    }
    await new Promise((r) => setTimeout(r, 2500)); // the visibility timeout lapses
    const { telemetry } = capturingTelemetry();
    const summary = await consume(config(queueUrl, db.schema), {
      telemetry,
      stop: neverStop,
      writeStdout: noStdout,
    });
    reportFigures(`${kind} redelivery`, summary);
    assert.equal(summary.received, 30);
    assert.equal(summary.inserted, 0);
    assert.equal(summary.redelivered, 30);
    assert.equal(summary.deleted, 30);
    const [count] = await db.sql`SELECT count(*)::int AS n FROM user_logins`;
    assert.equal(count?.n, 30);
    assert.deepEqual(await sqs.counts(queueUrl), { ready: 0, inFlight: 0 });
  });

  Deno.test(`${kind}: a commit held past the visibility timeout deletes nothing early, extends visibility, redelivers nothing`, async () => {
    await using sqs = await startEndpoint(kind);
    await using db = await freshSchema();
    const queueUrl = await sqs.createQueue({ VisibilityTimeout: "2" });
    const n = 40;
    await sqs.send(queueUrl, logins(n, "v"));
    const connection = await testConnection();
    const setup = connect({ connection, schema: db.schema, stateSchema: db.stateSchema, max: 1 });
    await ensureSchema(setup, { connection, schema: db.schema, stateSchema: db.stateSchema });
    await setup.end();
    const blocker = await db.sql.reserve();
    const [{ pid: blockerPid }] = await blocker<[{ pid: number }]>`SELECT pg_backend_pid() AS pid`;
    await blocker`BEGIN`;
    await blocker`LOCK TABLE user_logins IN SHARE MODE`;
    const { telemetry } = capturingTelemetry();
    const running = consume(config(queueUrl, db.schema, { writers: "1" }), {
      telemetry,
      stop: neverStop,
      writeStdout: noStdout,
    });
    try {
      // Blocked by our lock, not another file's: files run in parallel.
      let blocked = false;
      for (let i = 0; i < 200 && !blocked; i++) {
        await new Promise((r) => setTimeout(r, 50));
        const [row] = await db.sql`
          SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE application_name = 'login-etl' AND wait_event_type = 'Lock'
            AND ${blockerPid} = ANY(pg_blocking_pids(pid))`;
        blocked = (row?.n ?? 0) > 0;
      }
      assert.ok(blocked, "the write waits on the lock");
      // Twice the visibility timeout: without extension SQS would hand them out again.
      await new Promise((r) => setTimeout(r, 4500));
      assert.deepEqual(await sqs.counts(queueUrl), { ready: 0, inFlight: n }, "held, none deleted");
    } finally {
      await blocker`COMMIT`;
      blocker.release();
    }
    const summary = await running;
    reportFigures(`${kind} held commit`, {
      ...summary,
      visibility_extended: telemetry.counters.visibilityExtended,
    });
    assert.equal(summary.received, n, "nothing was redelivered");
    assert.equal(summary.inserted, n);
    assert.ok(telemetry.counters.visibilityExtended >= n);
    assert.deepEqual(await sqs.counts(queueUrl), { ready: 0, inFlight: 0 });
  });
}
