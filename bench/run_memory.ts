// deno-lint-ignore-file no-console -- a measuring tool that prints its figures
// Peak RSS of `login-etl run` as the Deployment runs it (`run --listen`),
// on one CPU as `limits.cpu: 1` gives it: loads a queue on a fauxqs process
// of its own, starts run, scrapes /metrics every second as Prometheus would,
// waits until the queue is empty, then stops it with SIGTERM.
// Usage: deno run -A bench/run_memory.ts [N]

import postgres from "postgres";
import { generateBodies } from "../src/seed/generate.ts";
import { call, load } from "./sqs_json.ts";
import {
  DATABASE_URL,
  dropSchemas,
  loginEtl,
  startFauxqs,
  stateSchemaOf,
  statusMib,
} from "./_harness.ts";

const N = Number(Deno.args[0] ?? 50_000);
const PORT = 19464;

const fauxqs = await startFauxqs();
const endpoint = fauxqs.endpoint;
const name = `runmem-${Date.now()}`;
await call(endpoint, "CreateQueue", { QueueName: name });
const url = `${endpoint}/000000000000/${name}`;
await load(endpoint, url, [...generateBodies(N, { badRatio: 0.02, seed: 7 })]);
const schema = `runmem_${Date.now()}`;
const started = performance.now();
const child = loginEtl(["run", "--queue-url", url, "--listen", `127.0.0.1:${PORT}`], {
  schema,
  oneCpu: true,
}).spawn();
// Read (and drop) its output, so that a full pipe never stalls it.
const output = Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text()]);
let peak = 0;
let scrapes = 0;
try {
  while (true) {
    await new Promise((r) => setTimeout(r, 1000));
    peak = Math.max(peak, statusMib(child.pid, "VmHWM") ?? 0);
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
  await output;
  const sql = postgres(DATABASE_URL, { max: 1, onnotice: () => {} });
  const [row] = await sql`SELECT (SELECT count(*)::int FROM ${sql(schema)}.user_logins)
    + (SELECT count(*)::int FROM ${sql(stateSchemaOf(schema))}.login_etl_rejects) AS n`;
  await dropSchemas(sql, schema);
  await sql.end();
  console.log(JSON.stringify({
    messages: N,
    written: row?.n,
    peak_rss_mib: Math.round(peak),
    about_msgs_per_s: Math.round(N / seconds),
    scrapes,
  }));
} finally {
  await fauxqs.stop();
}
