// The peer login-etl is compared with: what a data engineer would write with
// the well-kept libraries, sqs-consumer and pg. sqs-consumer polls with
// batches of 10 and deletes a batch after its handler resolves; the handler
// parses each body, masks ip and device_id with node:crypto HMAC-SHA256 and
// inserts the batch's rows with one multi-row INSERT. No validation beyond
// JSON.parse, no ledger: it is the quick script, not a tool.
// Usage: deno run -A bench/peer.ts QUEUE_URL TOTAL DATABASE_URL SCHEMA
// Prints one JSON line: {"msgs_per_s", "cpu_ms"}, and "ready" on stderr as
// it starts consuming (bench/latency.ts counts CPU from there).

import { createHmac } from "node:crypto";
import process from "node:process";
import { SQSClient } from "@aws-sdk/client-sqs";
import pg from "pg";
import { Consumer } from "sqs-consumer";

const [queueUrl = "", totalText = "0", databaseUrl = "", schema = "public"] = Deno.args;
const total = Number(totalText);
const key = "benchmark secret, not for production use!";
const mask = (value: string) => createHmac("sha256", key).update(value).digest("base64url");

const pool = new pg.Pool({
  connectionString: databaseUrl,
  max: 2,
  options: `-c search_path=${schema}`,
});
await pool.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
await pool.query(`CREATE TABLE IF NOT EXISTS user_logins(
  user_id varchar(128), device_type varchar(32), masked_ip varchar(256),
  masked_device_id varchar(256), locale varchar(32), app_version integer, create_date date)`);

const version = (text: string) => {
  const [a = 0, b = 0, c = 0] = String(text).split(".").map(Number);
  return a * 1_000_000 + b * 1000 + c;
};

let done = 0;
Deno.stderr.writeSync(new TextEncoder().encode("ready\n"));
const cpuBefore = process.cpuUsage();
const started = performance.now();
const finished = Promise.withResolvers<void>();
const consumer = Consumer.create({
  queueUrl,
  batchSize: 10,
  waitTimeSeconds: 1,
  sqs: new SQSClient({
    region: "us-east-1",
    endpoint: new URL(queueUrl).origin,
    credentials: { accessKeyId: "test", secretAccessKey: "test" },
  }),
  handleMessageBatch: async (messages) => {
    const values: unknown[] = [];
    const rows: string[] = [];
    for (const m of messages) {
      const e = JSON.parse(m.Body ?? "{}");
      const n = values.length;
      rows.push(`($${n + 1}, $${n + 2}, $${n + 3}, $${n + 4}, $${n + 5}, $${n + 6}, $${n + 7})`);
      values.push(
        e.user_id,
        e.device_type,
        mask(String(e.ip)),
        mask(String(e.device_id)),
        e.locale,
        version(e.app_version),
        new Date(Number(m.Attributes?.SentTimestamp ?? Date.now())).toISOString().slice(0, 10),
      );
    }
    await pool.query(
      `INSERT INTO user_logins (user_id, device_type, masked_ip, masked_device_id, locale, app_version, create_date)
       VALUES ${rows.join(", ")}`,
      values,
    );
    done += messages.length;
    if (done >= total) finished.resolve();
    return messages;
  },
});
consumer.on("error", (error) => {
  throw error;
});
consumer.start();
await finished.promise;
const seconds = (performance.now() - started) / 1000;
const cpu = process.cpuUsage(cpuBefore);
consumer.stop({ abort: true });
await pool.end();
// deno-lint-ignore no-console
console.log(JSON.stringify({
  msgs_per_s: Math.round(done / seconds),
  cpu_ms: Math.round((cpu.user + cpu.system) / 1000),
}));
Deno.exit(0);
