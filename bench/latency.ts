// deno-lint-ignore-file camelcase -- the result's field names are its JSON format
/**
 * @module `make bench`: throughput where users run it, with the network in
 * between. SQS (fauxqs, a process of its own) sits behind a delay proxy
 * (bench/delay_proxy.ts) of each round trip in BENCH_RTTS (ms; 0 goes
 * direct), Postgres behind one of BENCH_PG_RTT (1 ms). At each, on a freshly
 * loaded queue of BENCH_N messages, each contender runs as a process of its
 * own:
 *   - the stock SDK loop (bench/ceiling.ts stock): receive(10) then delete,
 *     no processing, at 8 and at 32 loops;
 *   - login-etl drain with default settings, and at each fixed
 *     `--concurrency` of BENCH_CONCURRENCIES (8,16,32,64), rows checked after;
 *   - the sqs-consumer + pg peer (bench/peer.ts).
 * BENCH_ROUNDS interleaved rounds (each starts with another contender and
 * gives it other neighbours: roundOrder in order.ts;
 * ratios are taken within a round), msg/s medians, and CPU seconds per
 * 10,000 messages of each contender's process tree (from its "ready" line or
 * drain's RunStarted to its exit, so start-up is not counted; the emulator,
 * Postgres and the proxies are not in the tree). Prints the tables and one
 * JSON line, writes bench/results/latency-<date>.json, and, for a full run
 * (BENCH_N ≥ 20,000, 3 rounds or more, RTTs 0, 2, 10 and 25, every
 * contender) latency-latest.json; for a full run or BENCH_DOCS=1, the tables
 * into docs/performance.md, and for a full run docs/scaling.md's capacity
 * table (BENCH_DOCS=0 neither).
 * BENCH_CONTENDERS (ids: stock8, stock32, drain, drain8 ..., peer) runs only
 * those.
 */

import { generateBodies } from "../src/seed/generate.ts";
import { call, load } from "./sqs_json.ts";
import { capacityTable } from "./capacity.ts";
import { DelayProxy, type DelayStats, halfEachWay, targetOf, throughProxy } from "./delay_proxy.ts";
import {
  ceilingCommand,
  countRows,
  DATABASE_URL,
  freshQueue,
  loginEtl,
  machine,
  reapedChildrenCpuMs,
  rewriteDocBlock,
  say,
  startFauxqs,
  statCpuMs,
  treeCpuMs,
  withSchema,
} from "./_harness.ts";
import { roundOrder } from "./order.ts";

const root = new URL("../", import.meta.url).pathname;
/** The last full run's results, in bench/results/: docs/scaling.md's table follows from it. */
const LATEST = "latency-latest.json";
const numbers = (name: string, fallback: string) =>
  (Deno.env.get(name) ?? fallback).split(",").map((s) => Number(s.trim()));
const N = Number(Deno.env.get("BENCH_N") ?? 20_000);
const ROUNDS = Number(Deno.env.get("BENCH_ROUNDS") ?? 3);
const RTTS = numbers("BENCH_RTTS", "0,2,10,25");
const PG_RTT = Number(Deno.env.get("BENCH_PG_RTT") ?? 1);
const CONCURRENCIES = numbers("BENCH_CONCURRENCIES", "8,16,32,64");

/** A contender: what runs, and how it is named in the tables. */
interface Contender {
  readonly id: string;
  readonly label: string;
  readonly kind: "stock" | "drain" | "peer";
  /** Loops (stock) or `--concurrency` (drain); null for drain's default. */
  readonly loops: number | null;
}

const ALL_CONTENDERS: readonly Contender[] = [
  { id: "stock8", label: "stock SDK loop, 8 loops", kind: "stock", loops: 8 },
  { id: "stock32", label: "stock SDK loop, 32 loops", kind: "stock", loops: 32 },
  { id: "drain", label: "drain, default settings", kind: "drain", loops: null },
  ...CONCURRENCIES.map((c): Contender => ({
    id: `drain${c}`,
    label: `drain --concurrency ${c}`,
    kind: "drain",
    loops: c,
  })),
  { id: "peer", label: "sqs-consumer + pg peer", kind: "peer", loops: null },
];
/**
 * BENCH_CONTENDERS (ids, e.g. `stock8,drain,drain64`) narrows a run to
 * those; a full run has them all.
 */
const ONLY = Deno.env.get("BENCH_CONTENDERS")?.split(",").map((id) => id.trim());
const CONTENDERS = ONLY === undefined
  ? ALL_CONTENDERS
  : ALL_CONTENDERS.filter((c) => ONLY.includes(c.id));
if (CONTENDERS.length === 0) {
  throw new Error(`BENCH_CONTENDERS names none of ${ALL_CONTENDERS.map((c) => c.id).join(", ")}`);
}

/** One contender's run. */
interface Run {
  readonly msgs_per_s: number;
  /** CPU of its process tree from the start of its work to its exit, and in all. */
  readonly cpu_ms: number;
  readonly cpu_ms_with_startup: number;
  readonly sqs_proxy: DelayStats | null;
  readonly pg_proxy: DelayStats | null;
  /** CPU of this process while the contender ran: the proxies, mostly. */
  readonly bench_cpu_ms: number;
}

/** CPU-ms of this process, every thread (the proxies and their alarm threads among them). */
const ownCpuMs = () => statCpuMs(Deno.readTextFileSync("/proc/self/stat"));

/**
 * Runs `command` as a child and measures its tree's CPU: all of it from this
 * process's reaped-children counters once it has exited, less what the tree
 * had used when its stderr first showed a line `isReady` accepts.
 */
async function measured(
  command: Deno.Command,
  isReady: (line: string) => boolean,
): Promise<
  { stdout: string; stderr: string; cpuMs: number; cpuMsWithStartup: number; benchCpuMs: number }
> {
  const ownBefore = ownCpuMs();
  const reapedBefore = reapedChildrenCpuMs();
  const child = command.spawn();
  let atReady: number | null = null;
  let stderr = "";
  const readErr = (async () => {
    let pending = "";
    for await (const text of child.stderr.pipeThrough(new TextDecoderStream())) {
      stderr += text;
      pending += text;
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      if (atReady === null && lines.some(isReady)) atReady = treeCpuMs(child.pid);
    }
  })();
  const [status, stdout] = await Promise.all([child.status, new Response(child.stdout).text()]);
  await readErr;
  if (!status.success) throw new Error(`exit ${status.code}: ${stderr.slice(-2000)}`);
  const total = reapedChildrenCpuMs() - reapedBefore;
  const benchCpuMs = ownCpuMs() - ownBefore;
  if (atReady === null) throw new Error(`no start line on stderr: ${stderr.slice(-2000)}`);
  return { stdout, stderr, cpuMs: total - atReady, cpuMsWithStartup: total, benchCpuMs };
}

const lastJson = (stdout: string): Record<string, number> =>
  JSON.parse(stdout.trim().split("\n").filter((l) => l.startsWith("{")).at(-1) ?? "{}");

/** Runs one contender on a queue loaded directly, reached through `sqsEndpoint`. */
async function contend(
  who: Contender,
  direct: string,
  sqsEndpoint: string,
  databaseUrl: string,
  bodies: readonly string[],
): Promise<{ rate: number; cpuMs: number; cpuMsWithStartup: number; benchCpuMs: number }> {
  const loaded = await freshQueue(direct, "latency", who.id);
  try {
    await load(direct, loaded, bodies);
    return await run(who, `${sqsEndpoint}${new URL(loaded).pathname}`, databaseUrl, bodies.length);
  } finally {
    // 96 queues of 20,000 in a full run: the emulator need not keep the empty ones.
    await call(direct, "DeleteQueue", { QueueUrl: loaded });
  }
}

/** Runs one contender on `queueUrl`, holding `total` messages. */
async function run(
  who: Contender,
  queueUrl: string,
  databaseUrl: string,
  total: number,
): Promise<{ rate: number; cpuMs: number; cpuMsWithStartup: number; benchCpuMs: number }> {
  const isReadyLine = (line: string) => line === "ready";
  if (who.kind === "stock") {
    const run = await measured(
      ceilingCommand("stock", queueUrl, total, who.loops ?? 8),
      isReadyLine,
    );
    return { rate: lastJson(run.stdout).msgs_per_s ?? 0, ...run };
  }
  return await withSchema("bench_latency", async (schema) => {
    if (who.kind === "peer") {
      const run = await measured(
        new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "-A",
            `${root}bench/peer.ts`,
            queueUrl,
            String(total),
            databaseUrl,
            schema,
          ],
          stdout: "piped",
          stderr: "piped",
        }),
        isReadyLine,
      );
      return { rate: lastJson(run.stdout).msgs_per_s ?? 0, ...run };
    }
    const flags = who.loops === null ? [] : ["--concurrency", String(who.loops)];
    const run = await measured(
      loginEtl(["drain", "--queue-url", queueUrl, "--summary-json", ...flags], {
        schema,
        env: { DATABASE_URL: databaseUrl },
      }),
      (line) => line.includes('"event":"RunStarted"'),
    );
    const rows = await countRows(schema);
    if (rows !== total) throw new Error(`${who.id} wrote ${rows} rows of ${total}`);
    return { rate: lastJson(run.stdout).msgs_per_s ?? 0, ...run };
  });
}

const median = (xs: readonly number[]) =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const round2 = (x: number) => Math.round(x * 100) / 100;
const fmt = (n: number) => Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "–";
const per10k = (cpuMs: number) => round2(cpuMs / N * 10); // CPU-s per 10,000 messages
const ms = (x: number) => x.toFixed(2);

/** Every run at one RTT, by contender, one entry a round. */
type Runs = Record<string, Run[]>;

const fauxqs = await startFauxqs();
const proxies: DelayProxy[] = [];
try {
  say(
    `login-etl latency bench: ${fmt(N)} messages, ${ROUNDS} interleaved rounds, SQS round trips ${
      RTTS.join(", ")
    } ms, Postgres ${PG_RTT} ms, contenders ${CONTENDERS.map((c) => c.id).join(", ")}`,
  );
  const bodies = [...generateBodies(N, { badRatio: 0, seed: 1 })];
  const pgProxy = PG_RTT > 0
    ? await DelayProxy.start(targetOf(DATABASE_URL, 5432), halfEachWay(PG_RTT))
    : null;
  if (pgProxy !== null) proxies.push(pgProxy);
  const databaseUrl = pgProxy === null ? DATABASE_URL : throughProxy(DATABASE_URL, pgProxy);
  const sqsProxies = new Map<number, DelayProxy | null>();
  for (const rtt of RTTS) {
    const proxy = rtt > 0
      ? await DelayProxy.start(targetOf(fauxqs.endpoint, 80), halfEachWay(rtt))
      : null;
    if (proxy !== null) proxies.push(proxy);
    sqsProxies.set(rtt, proxy);
  }

  const runs = new Map<number, Runs>(
    RTTS.map((rtt) => [rtt, Object.fromEntries(CONTENDERS.map((c) => [c.id, []]))]),
  );
  for (let round = 0; round < ROUNDS; round++) {
    for (const rtt of RTTS) {
      const sqsProxy = sqsProxies.get(rtt) ?? null;
      const endpoint = sqsProxy === null
        ? fauxqs.endpoint
        : new URL(throughProxy(fauxqs.endpoint, sqsProxy)).origin;
      // Each round starts with another contender and gives it other neighbours.
      const order = roundOrder(CONTENDERS, round);
      const line: string[] = [];
      for (const who of order) {
        sqsProxy?.resetStats();
        pgProxy?.resetStats();
        const got = await contend(who, fauxqs.endpoint, endpoint, databaseUrl, bodies);
        runs.get(rtt)![who.id]!.push({
          msgs_per_s: got.rate,
          cpu_ms: got.cpuMs,
          cpu_ms_with_startup: got.cpuMsWithStartup,
          sqs_proxy: sqsProxy?.stats() ?? null,
          pg_proxy: pgProxy?.stats() ?? null,
          bench_cpu_ms: got.benchCpuMs,
        });
        line.push(`${who.id} ${fmt(got.rate)} (${per10k(got.cpuMs)} CPU-s/10k)`);
      }
      say(`  round ${round + 1}, SQS ${rtt} ms: ${line.join(", ")}`);
    }
  }

  const result = {
    date: new Date().toISOString(),
    machine: await machine(),
    messages: N,
    rounds: ROUNDS,
    sqs_rtts_ms: RTTS,
    pg_rtt_ms: PG_RTT,
    runs: Object.fromEntries([...runs].map(([rtt, r]) => [String(rtt), r])),
    summary: RTTS.map((rtt) => summarize(rtt, runs.get(rtt)!)),
  };
  const tables = markdown(result.summary);
  say("");
  for (const line of tables) say(line);
  const json = JSON.stringify(result);
  // deno-lint-ignore no-console
  console.log(json);
  await Deno.mkdir(`${root}bench/results`, { recursive: true });
  const full = N >= 20_000 && ROUNDS >= 3 && [0, 2, 10, 25].every((r) => RTTS.includes(r)) &&
    ONLY === undefined;
  const dated = `latency-${result.date.replaceAll(":", "-")}.json`;
  if (full) await Deno.writeTextFile(`${root}bench/results/${LATEST}`, json + "\n");
  await Deno.writeTextFile(`${root}bench/results/${dated}`, json + "\n");
  const docs = Deno.env.get("BENCH_DOCS");
  if (docs === "1" || (docs !== "0" && full)) {
    await writeDocs(result, tables, full ? LATEST : dated);
  } else {
    say("\n(docs/performance.md left alone: not a full run; BENCH_DOCS=1 writes it anyway)");
  }
  // docs/scaling.md's capacity table is the last full run's, as
  // tests/repo/scaling_test.ts checks against latency-latest.json: never a
  // partial run's, whatever BENCH_DOCS says.
  if (full && docs !== "0") {
    await rewriteDocBlock("docs/scaling.md", "capacity", capacityTable(result.summary));
  }
} finally {
  for (const proxy of proxies) await proxy[Symbol.asyncDispose]();
  await fauxqs.stop();
}

/** One RTT's medians and same-round ratios. */
function summarize(rtt: number, r: Runs) {
  const rates = (id: string) => (r[id] ?? []).map((x) => x.msgs_per_s);
  const cpus = (id: string) => (r[id] ?? []).map((x) => per10k(x.cpu_ms));
  /** Same-round ratios of a to b, each round. */
  const ratios = (a: readonly number[], b: readonly number[]) => a.map((x, i) => round2(x / b[i]!));
  const fixed = CONCURRENCIES.map((c) => `drain${c}`).filter((id) => rates(id).length > 0);
  // In each round, the best fixed concurrency and the default's ratio to it.
  const best = (fixed.length === 0 ? [] : rates("drain")).map((_, i) => {
    const [id, rate] = fixed.map((f) => [f, rates(f)[i]!] as const)
      .reduce((a, b) => (b[1] > a[1] ? b : a));
    return { id, rate };
  });
  const bestIds = best.map((b) => b.id);
  const proxy = (pick: (run: Run) => DelayStats | null) => {
    const all = Object.values(r).flat().map(pick).filter((s): s is DelayStats => s !== null);
    return all.length === 0 ? null : {
      p50_ms: median(all.map((s) => s.p50Ms)),
      p99_ms: median(all.map((s) => s.p99Ms)),
      max_ms: Math.max(...all.map((s) => s.maxMs)),
      spun_ms_per_run: median(all.map((s) => s.spunMs)),
    };
  };
  return {
    sqs_rtt_ms: rtt,
    contenders: CONTENDERS.map((c) => ({
      id: c.id,
      label: c.label,
      msgs_per_s: rates(c.id),
      median_msgs_per_s: median(rates(c.id)),
      cpu_s_per_10k: cpus(c.id),
      median_cpu_s_per_10k: median(cpus(c.id)),
      to_stock8: ratios(rates(c.id), rates("stock8")),
      median_to_stock8: median(ratios(rates(c.id), rates("stock8"))),
    })),
    drain_to_stock8: median(ratios(rates("drain"), rates("stock8"))),
    drain_to_stock32: median(ratios(rates("drain"), rates("stock32"))),
    drain_to_peer: median(ratios(rates("drain"), rates("peer"))),
    best_fixed_each_round: bestIds,
    drain_to_best_fixed: median(ratios(rates("drain"), best.map((b) => b.rate))),
    drain_cpu_to_stock8_cpu: median(ratios(cpus("drain"), cpus("stock8"))),
    sqs_proxy_late: proxy((run) => run.sqs_proxy),
    pg_proxy_late: proxy((run) => run.pg_proxy),
    bench_cpu_s_per_10k: median(Object.values(r).flat().map((run) => per10k(run.bench_cpu_ms))),
  };
}

/** The tables docs/performance.md shows. */
function markdown(summary: readonly ReturnType<typeof summarize>[]): string[] {
  /** A contender's median rate; NaN (printed as –) when BENCH_CONTENDERS left it out. */
  const rateOf = (s: ReturnType<typeof summarize>, id: string) =>
    s.contenders.find((c) => c.id === id)?.median_msgs_per_s ?? NaN;
  const lines = [
    "| SQS RTT | stock SDK, 8 loops | stock SDK, 32 loops | drain, defaults | best fixed `--concurrency` (each round) | peer | drain / stock 8 | drain / stock 32 | drain / best fixed | drain / peer |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ...summary.map((s) =>
      `| ${s.sqs_rtt_ms} ms | ${fmt(rateOf(s, "stock8"))} | ${fmt(rateOf(s, "stock32"))} | ${
        fmt(rateOf(s, "drain"))
      } | ${s.best_fixed_each_round.map((id) => id.replace("drain", "")).join(" / ")} | ${
        fmt(rateOf(s, "peer"))
      } | ${s.drain_to_stock8} | ${s.drain_to_stock32} | ${s.drain_to_best_fixed} | ${s.drain_to_peer} |`
    ),
    "",
    "CPU seconds per 10,000 messages, each contender's process tree from the start of its work to its exit (medians; the emulator, Postgres and the proxies excluded):",
    "",
    `| SQS RTT | ${CONTENDERS.map((c) => c.label).join(" | ")} | drain / stock 8, same round |`,
    `| --- | ${CONTENDERS.map(() => "---").join(" | ")} | --- |`,
    ...summary.map((s) =>
      `| ${s.sqs_rtt_ms} ms | ${
        s.contenders.map((c) => String(c.median_cpu_s_per_10k)).join(" | ")
      } | ${s.drain_cpu_to_stock8_cpu} |`
    ),
    "",
    "Every contender, msg/s each round (median in bold), and its same-round ratio to the stock SDK loop with 8 loops:",
    "",
    "| SQS RTT | Contender | msg/s each round | / stock 8 (median) |",
    "| --- | --- | --- | --- |",
    ...summary.flatMap((s) =>
      s.contenders.map((c) =>
        `| ${s.sqs_rtt_ms} ms | ${c.label} | ${c.msgs_per_s.map(fmt).join(" / ")} (**${
          fmt(c.median_msgs_per_s)
        }**) | ${c.median_to_stock8} |`
      )
    ),
    "",
    "What the delay proxies added beyond their delays (release lateness; medians over the runs of p50 and p99, and the largest), and the CPU of the bench process that runs them (median over the runs, per 10,000 messages of the contender):",
    "",
    "| SQS RTT | SQS proxy p50 / p99 / max (ms) | Postgres proxy p50 / p99 / max (ms) | bench process CPU-s per 10k |",
    "| --- | --- | --- | --- |",
    ...summary.map((s) => {
      const late = (p: typeof s.sqs_proxy_late) =>
        p === null ? "direct" : `${ms(p.p50_ms)} / ${ms(p.p99_ms)} / ${ms(p.max_ms)}`;
      return `| ${s.sqs_rtt_ms} ms | ${late(s.sqs_proxy_late)} | ${
        late(s.pg_proxy_late)
      } | ${s.bench_cpu_s_per_10k} |`;
    }),
  ];
  return lines;
}

/** Writes the run's tables between the latency markers of docs/performance.md. */
async function writeDocs(
  result: { date: string; machine: Record<string, string | number>; rounds: number },
  tables: readonly string[],
  /** The results file the tables come from: `LATEST` for a full run. */
  file: string,
): Promise<void> {
  const m = result.machine;
  const full = file === LATEST;
  await rewriteDocBlock("docs/performance.md", "bench-latency", [
    `${full ? "Last full run" : "A partial run (BENCH_DOCS=1)"} of \`make bench\`, ${
      result.date.slice(0, 10)
    }, on ${m.cpu} (${m.cores} cores), Deno ${m.deno}, Postgres ${m.postgres} on the same machine; ${
      fmt(N)
    } messages a contender, ${result.rounds} interleaved round(s), Postgres behind ${PG_RTT} ms (\`bench/results/${file}\`):`,
    "",
    ...tables,
  ]);
}
