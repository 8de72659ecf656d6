// --reject-queue-url on each SQS implementation (fauxqs, local-aws-sqs,
// LocalStack<3 over Query): large rejects reach the reject queue whole.

import assert from "node:assert/strict";
import { drain } from "../helpers/refused.ts";
import { ENDPOINT_KINDS, startEndpoint } from "../helpers/sqs_endpoints.ts";
import { freshSchema, type TestDb } from "../helpers/services.ts";

Deno.test("--reject-queue-url: large rejects reach the reject queue whole on each SQS implementation (fauxqs, local-aws-sqs, LocalStack<3 over Query)", async (t) => {
  // Both third-party implementations cap a SendMessageBatch at 1 MiB; six
  // 200 KB copies in one request would pass it.
  const bodies = Array.from(
    { length: 6 },
    (_, i) => JSON.stringify({ user_id: `big-${i}`, padding: "y".repeat(200_000) }),
  );
  for (const kind of ENDPOINT_KINDS) {
    await t.step(kind, async () => {
      await using sqs = await startEndpoint(kind);
      await using db = await freshSchema();
      await using replay = await freshSchema();
      const queueUrl = await sqs.createQueue();
      const rejectQueue = await sqs.createQueue();
      for (const body of bodies) await sqs.send(queueUrl, [body]);
      const result = await drain(db, queueUrl, { LOGIN_ETL_REJECT_QUEUE_URL: rejectQueue });
      assert.equal(result.code, 0, result.stderr.slice(-2000));
      assert.equal(JSON.parse(result.stdout).rejected, 6);
      const left = await sqs.counts(queueUrl);
      assert.equal(left.ready + left.inFlight, 0, "the source queue is empty");
      // The copies, drained by login-etl itself: each body's keyed hash
      // matches an original's, so every copy arrived whole and once.
      const replayed = await drain(replay, rejectQueue);
      assert.equal(replayed.code, 0, replayed.stderr.slice(-2000));
      const hashes = async (d: TestDb) =>
        (await d.sql<{ h: string }[]>`SELECT body_hmac AS h FROM login_etl_rejects ORDER BY 1`)
          .map((r) => r.h);
      const originals = await hashes(db);
      assert.equal(originals.length, 6);
      assert.deepEqual(await hashes(replay), originals);
    });
  }
});
