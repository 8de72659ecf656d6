// deno-lint-ignore-file no-console -- a measuring tool that prints its figures
// Peak RSS of `login-etl run` as the Deployment runs it (`run --listen`),
// on one CPU as `limits.cpu: 1` gives it: loads a queue on a fauxqs process
// of its own, starts run, scrapes /metrics every second as Prometheus would,
// waits until the queue is empty, then stops it with SIGTERM.
// Usage: deno run -A bench/run_memory.ts [N]

import postgres from "postgres";
import { generateBodies } from "../src/seed/generate.ts";
import { call, load } from "./sqs_json.ts";
import { permissionFlags } from "../tests/helpers/cli.ts";

const root = new URL("../", import.meta.url).pathname;
const N = Number(Deno.args[0] ?? 50_000);
const DATABASE_URL = Deno.env.get("DATABASE_URL") ??
  "postgres://postgres:postgres@localhost:5432/postgres";
const PORT = 19464;

const fauxqs = new Deno.Command(Deno.execPath(), {
  args: ["run", "-A", `${root}bench/fauxqs_server.ts`],
  stdout: "piped",
}).spawn();
const reader = fauxqs.stdout.pipeThrough(new TextDecoderStream()).getReader();
const endpoint = `http://127.0.0.1:${(await reader.read()).value?.trim()}`;
reader.releaseLock();
const name = `runmem-${Date.now()}`;
await call(endpoint, "CreateQueue", { QueueName: name });
const url = `${endpoint}/000000000000/${name}`;
await load(endpoint, url, [...generateBodies(N, { badRatio: 0.02, seed: 7 })]);
const schema = `runmem_${Date.now()}`;
const started = performance.now();
const child = new Deno.Command("taskset", {
  args: [
    "-c",
    "0",
    Deno.execPath(),
    "run",
    ...permissionFlags(),
    `${root}src/main.ts`,
    "run",
    "--queue-url",
    url,
    "--listen",
    `127.0.0.1:${PORT}`,
  ],
  env: {
    PII_HMAC_KEY: "benchmark secret, not for production use!",
    DATABASE_URL,
    LOGIN_ETL_SCHEMA: schema,
    LOGIN_ETL_LOG_FORMAT: "json",
  },
  stdout: "null",
  stderr: "null",
}).spawn();
let peak = 0;
let scrapes = 0;
const hwm = () => {
  try {
    return Number(/VmHWM:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${child.pid}/status`))?.[1]) /
      1024;
  } catch {
    return 0;
  }
};
try {
  while (true) {
    await new Promise((r) => setTimeout(r, 1000));
    peak = Math.max(peak, hwm());
    const metrics = await fetch(`http://127.0.0.1:${PORT}/metrics`).then((r) => r.text()).catch(
      () => "",
    );
    if (metrics !== "") scrapes++;
    const attrs = await call(endpoint, "GetQueueAttributes", {
      QueueUrl: url,
      AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    }) as { Attributes?: Record<string, string> };
    const left = Number(attrs.Attributes?.ApproximateNumberOfMessages ?? 1) +
      Number(attrs.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 1);
    if (left === 0) break;
  }
  const seconds = (performance.now() - started) / 1000;
  child.kill("SIGTERM");
  await child.status;
  const sql = postgres(DATABASE_URL, {
    max: 1,
    onnotice: () => {},
    connection: { search_path: schema },
  });
  const [row] =
    await sql`SELECT (SELECT count(*)::int FROM user_logins) + (SELECT count(*)::int FROM login_etl_rejects) AS n`;
  await sql.unsafe(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await sql.end();
  console.log(JSON.stringify({
    messages: N,
    written: row?.n,
    peak_rss_mib: Math.round(peak),
    about_msgs_per_s: Math.round(N / seconds),
    scrapes,
  }));
} finally {
  fauxqs.kill("SIGTERM");
  await fauxqs.status;
  await fauxqs.stdout.cancel().catch(() => {});
}
