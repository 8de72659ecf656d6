// deno-lint-ignore-file camelcase -- the result's field names are its JSON format
// `make bench-loopback`: in one run, on one machine, with the SQS endpoint (fauxqs) as
// a process of its own, measures in interleaved rounds (machine noise falls
// on all alike; ratios are taken within a round):
//   - the stock SDK ceiling: `new SQSClient()` with nothing tuned, 8 loops of
//     ReceiveMessage(10) + DeleteMessageBatch, no processing (bench/ceiling.ts),
//     the program users would otherwise write, and the project's own client
//     doing the same;
//   - login-etl drain end to end, as its own process, rows checked after: its
//     rate, its CPU-seconds per 10,000 messages and its peak RSS;
//   - the peer: sqs-consumer + pg, the script a data engineer would write
//     (bench/peer.ts);
// and once: the protocol ceiling (the same calls as plain fetch), the Postgres
// ingest of the write path, start to first receive, and peak RSS draining
// 20,000 and 200,000 messages. Prints a table and one JSON line, writes
// bench/results/latest.json and the figures into docs/performance.md.

import { AUTO_START } from "../src/pipeline/concurrency.ts";
import { Secret } from "../src/secret.ts";
import { resolveConfig } from "../src/config/resolve.ts";
import { Database } from "../src/db/pool.ts";
import { ensureSchema } from "../src/db/schema.ts";
import { prune } from "../src/db/ledger.ts";
import { loadPgConnection } from "../src/db/connection.ts";
import { resolvePgTarget } from "../src/config/pg_target.ts";
import { Masker } from "../src/mask.ts";
import { prepare } from "../src/transform.ts";
import { generateBodies } from "../src/seed/generate.ts";
import type { ReceivedMessage } from "../src/types.ts";
import { postgresStore } from "../src/db/write.ts";
import { workerThreadsFor } from "../src/sink/threads.ts";
import { load, protocolLoop } from "./sqs_json.ts";
import {
  BENCH_SECRET,
  ceilingCommand,
  countRows,
  DATABASE_URL,
  freshQueue,
  loginEtl,
  machine,
  processCpuMs,
  rewriteDocBlock,
  say,
  startFauxqs,
  stateSchemaOf,
  statusMib,
  withSchema,
} from "./_harness.ts";
import { roundOrder } from "./order.ts";

const root = new URL("../", import.meta.url).pathname;
const N = Number(Deno.env.get("BENCH_N") ?? 50_000);
const config = resolveConfig("drain", {}, { PII_HMAC_KEY: BENCH_SECRET, ...pickEnv() });
/** The sink worker threads drain starts here, as it chooses them. */
const workerThreads = workerThreadsFor(config.workerThreads, navigator.hardwareConcurrency);
/** The loops of the bare loops (the SDK ceilings, the protocol): under auto, the ones drain starts with. */
const LOOPS = config.concurrency === "auto" ? AUTO_START : config.concurrency;
const encoder = new TextEncoder();

/** LOGIN_ETL_* tunables from the environment, so a bench can try other settings. */
function pickEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(Deno.env.toObject())) {
    if (k.startsWith("LOGIN_ETL_")) env[k] = v;
  }
  return env;
}

/** Runs a bench program as its own process and returns its JSON line. */
async function program(args: readonly string[]): Promise<Record<string, number>> {
  return await resultOf(
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", ...args],
      stdout: "piped",
      stderr: "piped",
    }),
    args[0] ?? "",
  );
}

/** The JSON a measuring program prints last; its stderr's tail if it fails. */
async function resultOf(command: Deno.Command, what: string): Promise<Record<string, number>> {
  const output = await command.output();
  const text = new TextDecoder().decode(output.stdout).trim().split("\n").at(-1) ?? "";
  if (!output.success) {
    throw new Error(`${what} failed: ${new TextDecoder().decode(output.stderr).slice(-2000)}`);
  }
  return JSON.parse(text);
}

/** The stock SDK's (or the project client's) ceiling on a loaded queue. */
function ceiling(kind: "stock" | "project", queueUrl: string, total: number) {
  return resultOf(ceilingCommand(kind, queueUrl, total, LOOPS), `${root}bench/ceiling.ts`);
}

/** The sqs-consumer + pg peer on a loaded queue, into `schema`. */
function peer(queueUrl: string, total: number, schema: string) {
  return program([`${root}bench/peer.ts`, queueUrl, String(total), DATABASE_URL, schema]);
}

interface DrainResult {
  readonly summary: Record<string, number>;
  readonly peakRssMb: number;
  readonly startupMs: number;
  /** CPU of the whole process, start-up included (sampled every 20 ms until it exits). */
  readonly cpuMs: number;
}

/** Runs `login-etl drain` as its own process and watches it. */
async function drain(
  queueUrl: string,
  schema: string,
  env: Record<string, string> = {},
  oneCpu = false,
): Promise<DrainResult> {
  const spawnedAt = Date.now();
  const child = loginEtl(["drain", "--queue-url", queueUrl, "--summary-json"], {
    schema,
    env,
    oneCpu,
  }).spawn();
  let peak = 0;
  let cpu = 0;
  const watch = setInterval(() => {
    peak = Math.max(peak, statusMib(child.pid, "VmHWM") ?? 0);
    cpu = processCpuMs(child.pid) ?? cpu;
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
  return { summary: JSON.parse(stdout), peakRssMb: Math.round(peak), startupMs, cpuMs: cpu };
}

/** The write path alone: the same rows, prepared beforehand, written in maxRows transactions. */
async function ingestCeiling(bodies: readonly string[], schema: string): Promise<number> {
  const connection = await loadPgConnection(
    resolvePgTarget({ value: DATABASE_URL, origin: "DATABASE_URL" }, {}),
  );
  const stateSchema = stateSchemaOf(schema);
  const database = new Database({ connection, schema, stateSchema, max: config.writers + 1 });
  try {
    await ensureSchema(database.sql, { connection, schema, stateSchema });
    // Today's ledger partition, as a consumer makes at start.
    await prune(database, { target: "ledger", days: 14 });
    const masker = await Masker.create(new Secret(encoder.encode(BENCH_SECRET), "bench"), "k1");
    const now = Date.now();
    const messages: ReceivedMessage[] = bodies.map((body, i) => ({
      id: `ingest-${i}`,
      receiptHandle: "",
      body,
      sentAtMs: now,
      dated: true,
      receiveCount: 1,
    }));
    const chunks: Awaited<ReturnType<typeof prepare>>[] = [];
    for (let i = 0; i < messages.length; i += config.maxRows) {
      chunks.push(
        await prepare(messages.slice(i, i + config.maxRows), masker, {
          maxBodyBytes: config.maxBodyBytes,
          maxReceives: null,
        }),
      );
    }
    const store = postgresStore(database, { writeTimeoutMs: 60_000 });
    let next = 0;
    const started = performance.now();
    await Promise.all(Array.from({ length: config.writers }, async () => {
      while (next < chunks.length) {
        const chunk = chunks[next++]!;
        await store.write(chunk.items, chunk.vault);
      }
    }));
    return (bodies.length * 1000) / (performance.now() - started);
  } finally {
    await database.end();
  }
}

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

const median = (xs: readonly number[]) =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
const ratio = (a: number, b: number) => Math.round((a / b) * 100) / 100;
const ROUNDS = Number(Deno.env.get("BENCH_ROUNDS") ?? 3);

type Contender = "stock" | "project" | "drain" | "peer";
const CONTENDERS: readonly Contender[] = ["stock", "drain", "project", "peer"];

/** One contender on a freshly loaded queue: its rate, and for drain its CPU and memory. */
async function contend(
  who: Contender,
  endpoint: string,
  bodies: readonly string[],
): Promise<{ rate: number; drain?: DrainResult }> {
  const url = await freshQueue(endpoint, "bench", who);
  await load(endpoint, url, bodies);
  if (who === "stock" || who === "project") {
    return { rate: (await ceiling(who, url, bodies.length)).msgs_per_s ?? 0 };
  }
  return await withSchema("bench", async (schema) => {
    if (who === "peer") return { rate: (await peer(url, bodies.length, schema)).msgs_per_s ?? 0 };
    const result = await drain(url, schema);
    const rows = await countRows(schema);
    if (rows !== bodies.length) {
      throw new Error(`drain wrote ${rows} rows, expected ${bodies.length}`);
    }
    return { rate: result.summary.msgs_per_s ?? 0, drain: result };
  });
}

const { endpoint, stop } = await startFauxqs();
try {
  say(
    `login-etl bench: ${
      fmt(N)
    } messages, ${ROUNDS} interleaved rounds, concurrency ${config.concurrency}, max rows ${config.maxRows}, writers ${config.writers}, worker threads ${workerThreads} (of ${navigator.hardwareConcurrency} CPUs)`,
  );
  const bodies = [...generateBodies(N, { badRatio: 0, seed: 1 })];

  const rates: Record<Contender, number[]> = { stock: [], project: [], drain: [], peer: [] };
  const toStock: number[] = [];
  const toPeer: number[] = [];
  const drains: DrainResult[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    // Each round starts with another contender and gives it other neighbours.
    const order = roundOrder(CONTENDERS, round);
    const got: Partial<Record<Contender, number>> = {};
    for (const who of order) {
      const { rate, drain: d } = await contend(who, endpoint, bodies);
      got[who] = rate;
      rates[who].push(rate);
      if (d !== undefined) drains.push(d);
    }
    toStock.push(ratio(got.drain!, got.stock!));
    toPeer.push(ratio(got.drain!, got.peer!));
    say(
      `  round ${round + 1}: stock ${fmt(got.stock!)}, project client ${fmt(got.project!)}, drain ${
        fmt(got.drain!)
      }, peer ${fmt(got.peer!)} msg/s; drain/stock ${toStock.at(-1)}, drain/peer ${toPeer.at(-1)}`,
    );
  }
  const cpuPer10k = drains.map((d) => Math.round((d.cpuMs / N) * 10_000) / 1000);
  const drainRss = median(drains.map((d) => d.peakRssMb));

  let queueUrl = await freshQueue(endpoint, "bench", "protocol");
  await load(endpoint, queueUrl, bodies);
  const protocol = await protocolLoop(endpoint, queueUrl, N, LOOPS);
  say(`  protocol ceiling    ${fmt(protocol)} msg/s`);

  const ingest = await withSchema("bench", (schema) => ingestCeiling(bodies, schema));
  say(`  postgres ingest     ${fmt(ingest)} rows/s`);

  const startups: number[] = [];
  for (let i = 0; i < 3; i++) {
    queueUrl = await freshQueue(endpoint, "bench", "startup");
    startups.push(
      await withSchema("bench", async (schema) => (await drain(queueUrl, schema)).startupMs),
    );
  }
  const startupMs = median(startups);
  say(`  start to receive    ${startupMs} ms (median of 3)`);

  const peaks: Record<string, number> = {};
  const memoryRun = (n: number, oneCpu: boolean) =>
    withSchema("bench", async (schema) => {
      const url = await freshQueue(endpoint, "bench", `mem${n}`);
      await load(endpoint, url, [...generateBodies(n, { badRatio: 0.02, seed: n })]);
      const result = await drain(url, schema, {}, oneCpu);
      return { rss: result.peakRssMb, rate: result.summary.msgs_per_s ?? 0 };
    });
  for (const n of [20_000, 200_000]) {
    peaks[n] = (await memoryRun(n, false)).rss;
    say(`  peak RSS at ${fmt(n).padStart(7)}  ${peaks[n]} MiB`);
  }
  const pinned = await memoryRun(200_000, true);
  say(`  peak RSS at 200,000 on one CPU  ${pinned.rss} MiB (${fmt(pinned.rate)} msg/s)`);

  const result = {
    date: new Date().toISOString(),
    machine: await machine(),
    messages: N,
    rounds: ROUNDS,
    settings: {
      concurrency: config.concurrency,
      batch_size: config.batchSize,
      max_rows: config.maxRows,
      max_wait_ms: config.maxWaitMs,
      writers: config.writers,
      worker_threads: workerThreads,
    },
    drain_msgs_per_s: rates.drain,
    stock_ceiling_msgs_per_s: rates.stock,
    project_client_ceiling_msgs_per_s: rates.project,
    peer_msgs_per_s: rates.peer,
    ratio_drain_to_stock: toStock,
    ratio_drain_to_peer: toPeer,
    median_ratio_drain_to_stock: median(toStock),
    median_ratio_drain_to_peer: median(toPeer),
    drain_cpu_s_per_10k: cpuPer10k,
    protocol_ceiling_msgs_per_s: Math.round(protocol),
    postgres_ingest_rows_per_s: Math.round(ingest),
    peak_rss_mb: drainRss,
    peak_rss_mb_20000: peaks[20_000],
    peak_rss_mb_200000: peaks[200_000],
    rss_ratio_200k_to_20k: ratio(peaks[200_000]!, peaks[20_000]!),
    peak_rss_mb_200000_one_cpu: pinned.rss,
    one_cpu_msgs_per_s: pinned.rate,
    startup_ms: startupMs,
  };
  const table = performanceTable(result);
  say("");
  for (const line of table) say(line);
  const line = JSON.stringify(result);
  // deno-lint-ignore no-console
  console.log(line);
  await Deno.mkdir(`${root}bench/results`, { recursive: true });
  await Deno.writeTextFile(`${root}bench/results/latest.json`, line + "\n");
  await Deno.writeTextFile(
    `${root}bench/results/${result.date.replaceAll(":", "-")}.json`,
    line + "\n",
  );
  if (Deno.env.get("BENCH_DOCS") !== "0") await writeDocs(result, table);
} finally {
  await stop();
}

/** The figures as the Markdown table docs/performance.md shows. */
function performanceTable(r: {
  drain_msgs_per_s: number[];
  stock_ceiling_msgs_per_s: number[];
  project_client_ceiling_msgs_per_s: number[];
  peer_msgs_per_s: number[];
  ratio_drain_to_stock: number[];
  ratio_drain_to_peer: number[];
  median_ratio_drain_to_stock: number;
  median_ratio_drain_to_peer: number;
  drain_cpu_s_per_10k: number[];
  protocol_ceiling_msgs_per_s: number;
  postgres_ingest_rows_per_s: number;
  peak_rss_mb: number;
  peak_rss_mb_20000: number | undefined;
  peak_rss_mb_200000: number | undefined;
  rss_ratio_200k_to_20k: number;
  peak_rss_mb_200000_one_cpu?: number;
  one_cpu_msgs_per_s?: number;
  startup_ms: number;
}): string[] {
  const each = (xs: number[]) => xs.map(fmt).join(" / ");
  const rounds = (xs: number[]) => xs.join(" / ");
  return [
    "| Measure | Each round | Median |",
    "| --- | --- | --- |",
    `| login-etl drain, end to end (msg/s) | ${each(r.drain_msgs_per_s)} | **${
      fmt(median(r.drain_msgs_per_s))
    }** |`,
    `| stock SDK ceiling: \`new SQSClient()\`, 8 loops, receive(10) + delete batch, no processing (msg/s) | ${
      each(r.stock_ceiling_msgs_per_s)
    } | ${fmt(median(r.stock_ceiling_msgs_per_s))} |`,
    `| login-etl's own SQS client, same loops (msg/s) | ${
      each(r.project_client_ceiling_msgs_per_s)
    } | ${fmt(median(r.project_client_ceiling_msgs_per_s))} |`,
    `| peer: sqs-consumer + pg (msg/s) | ${each(r.peer_msgs_per_s)} | ${
      fmt(median(r.peer_msgs_per_s))
    } |`,
    `| drain / stock SDK ceiling, same round | ${
      rounds(r.ratio_drain_to_stock)
    } | **${r.median_ratio_drain_to_stock}** |`,
    `| drain / peer, same round | ${
      rounds(r.ratio_drain_to_peer)
    } | **${r.median_ratio_drain_to_peer}×** |`,
    `| drain CPU-seconds per 10,000 messages (all threads, start-up included) | ${
      rounds(r.drain_cpu_s_per_10k)
    } | ${median(r.drain_cpu_s_per_10k)} |`,
    `| protocol ceiling: the same calls as plain \`fetch\` (msg/s) | | ${
      fmt(r.protocol_ceiling_msgs_per_s)
    } |`,
    `| Postgres ingest of the write path (rows/s) | | ${fmt(r.postgres_ingest_rows_per_s)} |`,
    `| drain peak RSS, ${fmt(N)} messages (MiB) | | ${r.peak_rss_mb} |`,
    `| drain peak RSS, 20,000 / 200,000 messages (MiB) | | ${r.peak_rss_mb_20000} / ${r.peak_rss_mb_200000} (ratio ${r.rss_ratio_200k_to_20k}) |`,
    `| drain peak RSS, 200,000 messages on one CPU (no worker thread), and its rate (MiB, msg/s) | | ${r.peak_rss_mb_200000_one_cpu} (${
      fmt(r.one_cpu_msgs_per_s ?? 0)
    } msg/s) |`,
    `| start to first receive, from source (ms) | | ${r.startup_ms} |`,
  ];
}

/** Writes the run's figures between the bench markers of docs/performance.md. */
async function writeDocs(
  result: {
    date: string;
    machine: Record<string, string | number>;
    messages: number;
    rounds: number;
  },
  table: readonly string[],
): Promise<void> {
  const m = result.machine;
  await rewriteDocBlock("docs/performance.md", "bench", [
    `Last full run of \`make bench-loopback\`, ${
      result.date.slice(0, 10)
    }, on ${m.cpu} (${m.cores} cores), Deno ${m.deno}, Postgres ${m.postgres} on the same machine; ${
      fmt(result.messages)
    } messages a contender, ${result.rounds} interleaved rounds, default settings (\`bench/results/latest.json\`):`,
    "",
    ...table,
  ]);
}
