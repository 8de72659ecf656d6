// deno-lint-ignore-file camelcase -- the result's field names are its JSON format
// `make bench`: in one run, on one machine, measures
//   1. the client ceiling: ReceiveMessage(10) + DeleteMessageBatch through the
//      same SQS client and concurrency as drain, with no processing;
//   2. the protocol ceiling: the same calls over plain fetch;
//   3. login-etl drain end to end, as its own process, rows checked after;
//   4. the Postgres ingest ceiling of the write path for the same rows;
//   5. drain's peak RSS and its time from start to first receive;
//   6. (BENCH_MEMORY=1) peak RSS draining 200,000 against 20,000 messages;
//   7. drain with --sqs-protocol auto against json in interleaved rounds: what
//      protocol detection costs a JSON endpoint.
// The SQS endpoint (fauxqs) runs as a separate process. Prints a table and
// one JSON line, and writes bench/results/latest.json.

import postgres from "postgres";
import { Secret } from "../src/config/secret.ts";
import { resolveConfig } from "../src/config/resolve.ts";
import { Database } from "../src/db/pool.ts";
import { ensureSchema } from "../src/db/schema.ts";
import { prune } from "../src/db/ledger.ts";
import { loadPgConnection, resolvePgTarget } from "../src/db/connection.ts";
import { Masker } from "../src/mask.ts";
import { prepareItems } from "../src/transform.ts";
import { generateBodies } from "../src/seed/generate.ts";
import { deleteMessages } from "../src/sqs/ack.ts";
import { createSqsClient } from "../src/sqs/client.ts";
import { receiveMessages } from "../src/sqs/receive.ts";
import type { ReceivedMessage } from "../src/types.ts";
import { postgresStore } from "../src/db/write.ts";
import { call, load, protocolLoop } from "./sqs_json.ts";
import { permissionFlags } from "../tests/helpers/cli.ts";

const root = new URL("../", import.meta.url).pathname;
const N = Number(Deno.env.get("BENCH_N") ?? 50_000);
const DATABASE_URL = Deno.env.get("DATABASE_URL") ??
  "postgres://postgres:postgres@localhost:5432/postgres";
const SECRET = "benchmark secret, not for production use!";
const config = resolveConfig("drain", {}, { PII_HMAC_KEY: SECRET, ...pickEnv() });
const encoder = new TextEncoder();

/** LOGIN_ETL_* tunables from the environment, so a bench can try other settings. */
function pickEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(Deno.env.toObject())) {
    if (k.startsWith("LOGIN_ETL_")) env[k] = v;
  }
  return env;
}

function say(line: string): void {
  Deno.stderr.writeSync(encoder.encode(line + "\n"));
}

async function startEndpoint(): Promise<{ endpoint: string; stop: () => Promise<void> }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${root}bench/fauxqs_server.ts`],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("fauxqs did not start");
    text += value;
  }
  reader.releaseLock();
  return {
    endpoint: `http://127.0.0.1:${text.trim()}`,
    stop: async () => {
      child.kill("SIGTERM");
      await child.status;
      await child.stdout.cancel().catch(() => {});
    },
  };
}

async function freshQueue(endpoint: string, label: string): Promise<string> {
  const name = `bench-${label}-${Date.now()}`;
  await call(endpoint, "CreateQueue", { QueueName: name });
  return `${endpoint}/000000000000/${name}`;
}

/** Client ceiling: our SQS client and calls, no processing. */
async function clientCeiling(queueUrl: string, total: number): Promise<number> {
  const { client } = await createSqsClient({
    queueUrl,
    region: "us-east-1",
    protocol: "json",
    awsEnv: {},
    waitSeconds: 1,
  });
  let done = 0;
  const started = performance.now();
  async function worker(): Promise<void> {
    while (done < total) {
      const { messages: batch } = await receiveMessages(client, queueUrl, {
        max: config.batchSize,
        waitSeconds: 1,
      });
      if (batch.length === 0) continue;
      await deleteMessages(client, queueUrl, batch);
      done += batch.length;
    }
  }
  await Promise.all(Array.from({ length: config.concurrency }, worker));
  const rate = (done * 1000) / (performance.now() - started);
  client.destroy();
  return rate;
}

/** Peak RSS (VmHWM) of a live process, in MB; null once it is gone. */
function peakRssMb(pid: number): number | null {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1]);
    return Number.isFinite(kb) ? kb / 1024 : null;
  } catch {
    return null;
  }
}

interface DrainResult {
  readonly summary: Record<string, number>;
  readonly peakRssMb: number;
  readonly startupMs: number;
}

/** Runs `login-etl drain` as its own process and watches it. */
async function drain(
  queueUrl: string,
  schema: string,
  env: Record<string, string> = {},
): Promise<DrainResult> {
  const spawnedAt = Date.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...permissionFlags(),
      `${root}src/main.ts`,
      "drain",
      "--queue-url",
      queueUrl,
      "--summary-json",
    ],
    env: {
      PII_HMAC_KEY: SECRET,
      DATABASE_URL,
      LOGIN_ETL_SCHEMA: schema,
      LOGIN_ETL_LOG_FORMAT: "json",
      ...env,
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let peak = 0;
  const watch = setInterval(() => {
    const rss = peakRssMb(child.pid);
    if (rss !== null) peak = Math.max(peak, rss);
  }, 20);
  const [status, stdout, stderr] = await Promise.all([
    child.status,
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
  ]);
  clearInterval(watch);
  if (!status.success) throw new Error(`drain failed: ${stderr.slice(-2000)}`);
  const started = stderr.split("\n").find((l) => l.includes('"event":"RunStarted"'));
  const startupMs = started === undefined ? NaN : Date.parse(JSON.parse(started).ts) - spawnedAt;
  return { summary: JSON.parse(stdout), peakRssMb: Math.round(peak), startupMs };
}

/** The write path alone: the same rows, prepared beforehand, written in maxRows transactions. */
async function ingestCeiling(bodies: readonly string[], schema: string): Promise<number> {
  const connection = await loadPgConnection(
    resolvePgTarget({ value: DATABASE_URL, origin: "DATABASE_URL" }, {}),
  );
  const database = new Database({ connection, schema, max: config.writers + 1 });
  try {
    await ensureSchema(database.sql, { connection, schema });
    await prune(database.sql, "ledger", 14); // today's ledger partition, as a consumer makes at start
    const masker = await Masker.create(new Secret(encoder.encode(SECRET), "bench"), "k1");
    const now = Date.now();
    const messages: ReceivedMessage[] = bodies.map((body, i) => ({
      id: `ingest-${i}`,
      receiptHandle: "",
      body,
      sentAtMs: now,
      dated: true,
      receiveCount: 1,
    }));
    const chunks: Awaited<ReturnType<typeof prepareItems>>[] = [];
    for (let i = 0; i < messages.length; i += config.maxRows) {
      chunks.push(
        await prepareItems(messages.slice(i, i + config.maxRows), masker, {
          maxBodyBytes: config.maxBodyBytes,
          maxReceives: null,
        }),
      );
    }
    const store = postgresStore(database, { writeTimeoutMs: 60_000 });
    let next = 0;
    const started = performance.now();
    await Promise.all(Array.from({ length: config.writers }, async () => {
      while (next < chunks.length) await store.write(chunks[next++]!);
    }));
    return (bodies.length * 1000) / (performance.now() - started);
  } finally {
    await database.end();
  }
}

async function machine(): Promise<Record<string, string | number>> {
  const cpu =
    /model name\s*:\s*(.*)/.exec(await Deno.readTextFile("/proc/cpuinfo").catch(() => ""))?.[1] ??
      "unknown";
  const sql = postgres(DATABASE_URL, { max: 1, onnotice: () => {} });
  const [pg] = await sql`SELECT current_setting('server_version') AS v`;
  await sql.end();
  return {
    cpu,
    cores: navigator.hardwareConcurrency,
    deno: Deno.version.deno,
    postgres: String(pg?.v ?? "?"),
  };
}

async function withSchema<T>(fn: (schema: string) => Promise<T>): Promise<T> {
  const schema = `bench_${Date.now()}`;
  const sql = postgres(DATABASE_URL, { max: 1, onnotice: () => {} });
  try {
    return await fn(schema);
  } finally {
    await sql.unsafe(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await sql.end();
  }
}

async function countRows(schema: string): Promise<number> {
  const sql = postgres(DATABASE_URL, {
    max: 1,
    onnotice: () => {},
    connection: { search_path: schema },
  });
  const [row] = await sql`SELECT count(*)::int AS n FROM user_logins`;
  await sql.end();
  return row?.n ?? 0;
}

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

const { endpoint, stop } = await startEndpoint();
try {
  say(
    `login-etl bench: ${
      fmt(N)
    } messages, concurrency ${config.concurrency}, max rows ${config.maxRows}, writers ${config.writers}`,
  );
  const bodies = [...generateBodies(N, { badRatio: 0, seed: 1 })];

  let queueUrl = await freshQueue(endpoint, "client");
  await load(endpoint, queueUrl, bodies);
  const client = await clientCeiling(queueUrl, N);
  say(`  client ceiling      ${fmt(client)} msg/s`);

  queueUrl = await freshQueue(endpoint, "protocol");
  await load(endpoint, queueUrl, bodies);
  const protocol = await protocolLoop(endpoint, queueUrl, N, config.concurrency);
  say(`  protocol ceiling    ${fmt(protocol)} msg/s`);

  const drained = await withSchema(async (schema) => {
    const url = await freshQueue(endpoint, "drain");
    await load(endpoint, url, bodies);
    const result = await drain(url, schema);
    const rows = await countRows(schema);
    if (rows !== N) throw new Error(`drain wrote ${rows} rows, expected ${N}`);
    return result;
  });
  const e2e = drained.summary.msgs_per_s ?? 0;
  say(
    `  login-etl drain     ${
      fmt(e2e)
    } msg/s  (${drained.summary.active_ms} ms active, peak RSS ${drained.peakRssMb} MB)`,
  );

  const ingest = await withSchema((schema) => ingestCeiling(bodies, schema));
  say(`  postgres ingest     ${fmt(ingest)} rows/s`);

  const startups: number[] = [];
  for (let i = 0; i < 3; i++) {
    startups.push(
      await withSchema(async (schema) =>
        (await drain(await freshQueue(endpoint, "startup"), schema)).startupMs
      ),
    );
  }
  startups.sort((a, b) => a - b);
  const startupMs = startups[1] ?? NaN;
  say(`  start to receive    ${startupMs} ms (median of 3)`);

  // auto against json, interleaved so that machine noise falls on both alike.
  const rates: Record<"auto" | "json", number[]> = { auto: [], json: [] };
  for (let round = 0; round < 5; round++) {
    for (
      const protocol of round % 2 === 0 ? ["json", "auto"] as const : ["auto", "json"] as const
    ) {
      rates[protocol].push(
        await withSchema(async (schema) => {
          const url = await freshQueue(endpoint, `proto-${protocol}`);
          await load(endpoint, url, bodies.slice(0, Math.min(N, 20_000)));
          const result = await drain(url, schema, { LOGIN_ETL_SQS_PROTOCOL: protocol });
          return result.summary.msgs_per_s ?? 0;
        }),
      );
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
  const autoToJson = Math.round((median(rates.auto) / median(rates.json)) * 100) / 100;
  say(
    `  auto vs json        ${fmt(median(rates.auto))} vs ${
      fmt(median(rates.json))
    } msg/s (ratio ${autoToJson}; rounds ${rates.auto.map(fmt).join("/")} vs ${
      rates.json.map(fmt).join("/")
    })`,
  );

  let memory: Record<string, number> | undefined;
  if (Deno.env.get("BENCH_MEMORY") === "1") {
    const peaks: Record<string, number> = {};
    for (const n of [20_000, 200_000]) {
      peaks[`peak_rss_mb_${n}`] = await withSchema(async (schema) => {
        const url = await freshQueue(endpoint, `mem${n}`);
        await load(endpoint, url, [...generateBodies(n, { badRatio: 0.02, seed: n })]);
        return (await drain(url, schema)).peakRssMb;
      });
      say(`  peak RSS at ${fmt(n).padStart(7)}  ${peaks[`peak_rss_mb_${n}`]} MB`);
    }
    memory = {
      ...peaks,
      rss_ratio_200k_to_20k:
        Math.round((peaks.peak_rss_mb_200000! / peaks.peak_rss_mb_20000!) * 100) / 100,
    };
  }

  const result = {
    date: new Date().toISOString(),
    machine: await machine(),
    messages: N,
    settings: {
      concurrency: config.concurrency,
      batch_size: config.batchSize,
      max_rows: config.maxRows,
      max_wait_ms: config.maxWaitMs,
      writers: config.writers,
      worker_threads: config.workerThreads,
    },
    msgs_per_s: Math.round(e2e),
    client_ceiling_msgs_per_s: Math.round(client),
    protocol_ceiling_msgs_per_s: Math.round(protocol),
    ratio_to_client_ceiling: Math.round((e2e / client) * 100) / 100,
    ratio_to_protocol_ceiling: Math.round((e2e / protocol) * 100) / 100,
    postgres_ingest_rows_per_s: Math.round(ingest),
    peak_rss_mb: drained.peakRssMb,
    startup_ms: startupMs,
    protocol_auto_msgs_per_s: rates.auto,
    protocol_json_msgs_per_s: rates.json,
    ratio_auto_to_json: autoToJson,
    ...(memory ?? {}),
  };
  say("");
  say("| measure | value |");
  say("| --- | --- |");
  say(`| login-etl drain, end to end | ${fmt(e2e)} msg/s |`);
  say(
    `| client ceiling (SDK, no processing) | ${
      fmt(client)
    } msg/s (drain at ${result.ratio_to_client_ceiling}) |`,
  );
  say(
    `| protocol ceiling (plain fetch) | ${
      fmt(protocol)
    } msg/s (drain at ${result.ratio_to_protocol_ceiling}) |`,
  );
  say(`| Postgres ingest of the write path | ${fmt(ingest)} rows/s |`);
  say(`| drain peak RSS | ${drained.peakRssMb} MB |`);
  say(`| start to first receive | ${startupMs} ms |`);
  say(`| drain with --sqs-protocol auto / json (same run) | ${autoToJson} |`);
  const line = JSON.stringify(result);
  // deno-lint-ignore no-console
  console.log(line);
  await Deno.mkdir(`${root}bench/results`, { recursive: true });
  await Deno.writeTextFile(`${root}bench/results/latest.json`, line + "\n");
  await Deno.writeTextFile(
    `${root}bench/results/${result.date.replaceAll(":", "-")}.json`,
    line + "\n",
  );
} finally {
  await stop();
}
