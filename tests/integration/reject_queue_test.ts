// --reject-queue-url, against the real Postgres through the CLI's drain:
// raw copies of every reject are sent before its delete, large copies go in
// requests under the batch cap, and a copy that fails keeps its message.
// The same on each SQS implementation: reject_queue_endpoints_test.ts.

import assert from "node:assert/strict";
import { migrate } from "../../src/db/schema.ts";
import { drain, login, receiveAll, thirtyAndOne } from "../helpers/refused.ts";
import { startSqsFaultProxy } from "../helpers/sqs_fault_proxy.ts";
import { enqueue, expireInFlight, freshSchema, startSqs } from "../helpers/services.ts";

Deno.test("--reject-queue-url: raw copies of every reject arrive with their reasons, and draining that queue once the table is fixed writes them exactly once", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  await migrate(db.sql, db);
  await db.sql`ALTER TABLE user_logins ADD CONSTRAINT dt CHECK (device_type IN ('ios', 'android'))`;
  const queueUrl = sqs.createQueue();
  const rejectQueue = sqs.createQueue();
  const web = login("user-web", "web");
  const [webId, brokenId] = enqueue(sqs, queueUrl, [web, '{"user_id": "u", "ip": ']);
  enqueue(sqs, queueUrl, thirtyAndOne(login("user-x")));
  const result = await drain(db, queueUrl, { LOGIN_ETL_REJECT_QUEUE_URL: rejectQueue });
  assert.equal(result.code, 0, result.stderr.slice(-2000));
  assert.deepEqual(JSON.parse(result.stdout).rejected_by_reason, { db_refused: 1, not_json: 1 });
  assert.deepEqual(sqs.counts(queueUrl), { ready: 0, inFlight: 0 });

  const copies = await receiveAll(sqs, rejectQueue);
  const byId = new Map(copies.map((c) => [c.attributes.login_etl_message_id, c]));
  assert.equal(copies.length, 2);
  assert.equal(byId.get(webId)?.body, web, "the original body, raw");
  assert.equal(byId.get(webId)?.attributes.login_etl_reason, "db_refused");
  assert.match(byId.get(webId)?.attributes.login_etl_detail ?? "", /SQLSTATE 23514, constraint dt/);
  assert.equal(byId.get(brokenId)?.attributes.login_etl_reason, "not_json");
  assert.match(byId.get(webId)?.attributes.login_etl_sent_timestamp ?? "", /^\d{13}$/);

  // The replay: the copies go back onto a queue, the constraint is dropped, a drain loads them.
  await db.sql`ALTER TABLE user_logins DROP CONSTRAINT dt`;
  const replay = sqs.createQueue();
  const { SendMessageCommand } = await import("@aws-sdk/client-sqs");
  for (const copy of copies) {
    await sqs.client.send(
      new SendMessageCommand({
        QueueUrl: replay,
        MessageBody: copy.body,
        MessageAttributes: Object.fromEntries(
          Object.entries(copy.attributes).map(([k, v]) => [
            k,
            { DataType: k === "login_etl_sent_timestamp" ? "Number" : "String", StringValue: v },
          ]),
        ),
      }),
    );
  }
  const replayed = await drain(db, replay);
  assert.equal(replayed.code, 0, replayed.stderr.slice(-2000));
  const again = await drain(db, replay);
  assert.equal(JSON.parse(again.stdout).received, 0);
  const rows = await db.sql<{ user_id: string; create_date: string }[]>`
    SELECT user_id, create_date::text FROM user_logins WHERE user_id = 'user-web'`;
  assert.equal(rows.length, 1, "the refused login is written once");
  assert.equal(
    rows[0]?.create_date,
    new Date(Number(byId.get(webId)?.attributes.login_etl_sent_timestamp)).toISOString().slice(
      0,
      10,
    ),
    "dated as the original message",
  );
});

Deno.test("--reject-queue-url: ten large rejects are copied in requests under the batch payload cap, and every copy arrives whole", async () => {
  // Rejects are where large bodies go (too_long, poison): ten 200 KB bodies in one
  // SendMessageBatch pass the request's cap (fauxqs enforces AWS's 1 MiB)
  // and failed the whole call, every time the messages came back.
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const queueUrl = sqs.createQueue();
  const rejectQueue = sqs.createQueue();
  const bodies = Array.from(
    { length: 10 },
    (_, i) => JSON.stringify({ user_id: `big-${i}`, padding: "x".repeat(200_000) }),
  );
  enqueue(sqs, queueUrl, bodies);
  const result = await drain(db, queueUrl, { LOGIN_ETL_REJECT_QUEUE_URL: rejectQueue });
  assert.equal(result.code, 0, result.stderr.slice(-2000));
  assert.equal(JSON.parse(result.stdout).rejected, 10);
  assert.deepEqual(sqs.counts(queueUrl), { ready: 0, inFlight: 0 });
  const copies = await receiveAll(sqs, rejectQueue);
  assert.deepEqual(copies.map((c) => c.body).sort(), [...bodies].sort(), "each body whole, once");
  const reasons = JSON.parse(result.stdout).rejected_by_reason as Record<string, number>;
  for (const copy of copies) {
    assert.ok((reasons[copy.attributes.login_etl_reason ?? ""] ?? 0) > 0, "its reason attached");
  }
});

Deno.test("--reject-queue-url: a copy that cannot be sent keeps its message queued, and it is copied when redelivered", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  await migrate(db.sql, db);
  await using proxy = await startSqsFaultProxy(sqs.endpoint);
  let failSends = true;
  proxy.policy = (action) => (action === "SendMessageBatch" && failSends ? "error500" : "pass");
  const direct = sqs.createQueue();
  const rejectDirect = sqs.createQueue();
  const viaProxy = (url: string) => url.replace(sqs.endpoint, proxy.endpoint);
  const [brokenId] = enqueue(sqs, direct, ["not json at all"]);
  enqueue(sqs, direct, Array.from({ length: 10 }, (_, i) => login(`ok-${i}`)));
  const env = { LOGIN_ETL_REJECT_QUEUE_URL: viaProxy(rejectDirect) };
  const first = await drain(db, viaProxy(direct), env);
  assert.equal(first.code, 0, first.stderr.slice(-2000));
  assert.match(first.stderr, /"event":"RejectCopyFailed"/);
  const [rows] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM user_logins`;
  assert.equal(rows?.n, 10, "the valid rows committed and were deleted");
  const left = sqs.counts(direct);
  assert.equal(left.ready + left.inFlight, 1, "the reject whose copy failed is still queued");

  failSends = false;
  // Visible again, as its visibility timeout would make it, without the wait.
  await expireInFlight(sqs, direct);
  const second = await drain(db, viaProxy(direct), env);
  assert.equal(second.code, 0, second.stderr.slice(-2000));
  assert.equal(JSON.parse(second.stdout).redelivered, 1, "recorded once, by the first run");
  assert.deepEqual(sqs.counts(direct), { ready: 0, inFlight: 0 });
  const copies = await receiveAll(sqs, rejectDirect);
  assert.deepEqual(copies.map((c) => c.attributes.login_etl_message_id), [brokenId]);
  const [rejects] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM login_etl_rejects`;
  assert.equal(rejects?.n, 1);
});
