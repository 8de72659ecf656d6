// Visibility timeouts on the three SQS implementations of endpoints_test.ts
// (fauxqs, local-aws-sqs, local-aws-sqs behind the LocalStack < 3.0 proxy): a
// redelivery after a crash between commit and delete writes no second row,
// and a commit held past the timeout deletes nothing early, extends the
// visibility and has nothing redelivered. The held commit's queue times out
// after 2 s, the shortest the run's once-a-second heartbeat keeps extended with
// time to spare; the crashed run's messages are given back by their receipts.

import assert from "node:assert/strict";
import { consume } from "../../src/commands/_consume.ts";
import { Secret } from "../../src/secret.ts";
import { Database } from "../../src/db/pool.ts";
import { registerKey } from "../../src/db/keys.ts";
import { ensureSchema } from "../../src/db/schema.ts";
import { Masker } from "../../src/mask.ts";
import { runPipeline } from "../../src/pipeline/pipeline.ts";
import { localSink } from "../../src/sink/sink.ts";
import { createSqsClient } from "../../src/sqs/client.ts";
import { sqsQueue } from "../../src/sqs/queue.ts";
import type { Queue, ReceivedMessage } from "../../src/types.ts";
import { postgresStore } from "../../src/db/write.ts";
import {
  capturingTelemetry,
  DATABASE_URL,
  freshSchema,
  reportFigures,
  TEST_SECRET,
  testConfig,
  testConnection,
} from "../helpers/services.ts";
import { ENDPOINT_KINDS, startEndpoint } from "../helpers/sqs_endpoints.ts";
import { holdInserts } from "../helpers/insert_lock.ts";

const neverStop = new AbortController().signal;
const noStdout = () => {};

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

for (const kind of ENDPOINT_KINDS) {
  Deno.test(`${kind}: a redelivery after a crash between commit and delete writes no second row`, async () => {
    await using sqs = await startEndpoint(kind);
    await using db = await freshSchema();
    // The default timeout, 30 s: only the test's give-back below brings a message back.
    const queueUrl = await sqs.createQueue();
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
      const queue = sqsQueue(client, queueUrl);
      const held: ReceivedMessage[] = [];
      const crashed = {
        ...queue,
        receive: async (options: Parameters<Queue["receive"]>[0]) => {
          const received = await queue.receive(options);
          held.push(...received);
          return received;
        },
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
        visibilityTimeoutSeconds: 30,
      });
      assert.equal(first.telemetry.counters.inserted, 30);
      // Their visibility timeout lapses: at once, by the crashed run's own
      // receipts, rather than by waiting it out (waiting proves nothing here).
      assert.equal(held.length, 30);
      assert.deepEqual((await queue.extend(held, 0)).failed, []);
    } finally {
      await database.end();
      client.destroy();
    }
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
    const lock = await holdInserts(db);
    const { telemetry } = capturingTelemetry();
    const running = consume(config(queueUrl, db.schema, { writers: "1" }), {
      telemetry,
      stop: neverStop,
      writeStdout: noStdout,
    });
    try {
      // Blocked by our lock, not another file's: files run in parallel.
      // Every message received and the write blocked: a minute at most (a
      // loaded machine has taken over 10 s to start a consumer).
      let blocked = false;
      for (let i = 0; i < 1200 && !blocked; i++) {
        await new Promise((r) => setTimeout(r, 50));
        blocked = (await lock.blocked()).length > 0 && telemetry.counters.received >= n;
      }
      assert.ok(blocked, "every message received, the write waiting on the lock");
      // From here, without extension SQS would hand them out again within the
      // 2 s timeout. Held a second past it, and until the run has extended
      // them twice (its heartbeat, once a second, extends a message while two
      // beats of its visibility remain: every beat on a 2 s queue); a minute
      // at most, against a hang.
      const since = performance.now();
      for (
        let i = 0;
        i < 1200 &&
        (performance.now() - since < 3000 || telemetry.counters.visibilityExtended < 2 * n);
        i++
      ) {
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(
        telemetry.counters.visibilityExtended >= 2 * n,
        `extended ${telemetry.counters.visibilityExtended} times`,
      );
      assert.deepEqual(await sqs.counts(queueUrl), { ready: 0, inFlight: n }, "held, none deleted");
    } finally {
      await lock[Symbol.asyncDispose]();
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
