// deno-lint-ignore-file no-console -- a measuring tool that prints its figures
// Where a drain's CPU goes, by thread: loads a queue on a fauxqs process of
// its own, runs `login-etl drain` (the binary's flags, extra flags and env
// from the command line), samples /proc/PID/task/*/stat every 20 ms and
// prints CPU-ms by thread name, with the stock SDK ceiling's CPU and peak
// memory beside it for the same messages, run with the same V8 flags and, with
// THREADS_CPUS, on the same one CPU: the floor no SQS consumer on this runtime
// goes below.
// Usage: deno run -A bench/threads.ts [N] [KEY=VALUE ...] [--v8-flags=...] [drain flags ...]
// (--v8-flags replaces the binary's own).

import postgres from "postgres";
import { generateBodies } from "../src/seed/generate.ts";
import { permissionFlags } from "../tests/helpers/cli.ts";
import { call, load } from "./sqs_json.ts";
import {
  ceilingCommand,
  DATABASE_URL,
  dropSchemas,
  loginEtl,
  processCpuMs,
  startFauxqs,
  statCpuMs,
  statusMib,
} from "./_harness.ts";

const root = new URL("../", import.meta.url).pathname;
const N = Number(Deno.args[0] ?? 50_000);
const extra = Deno.args.slice(1);
const env = Object.fromEntries(
  extra.filter((a) => /^[A-Z_]+=/.test(a)).map((a) => a.split(/=(.*)/s).slice(0, 2)),
);
const v8 = extra.find((a) => a.startsWith("--v8-flags="));
const flags = extra.filter((a) => !/^[A-Z_]+=/.test(a) && a !== v8);
const fauxqs = await startFauxqs();
const endpoint = fauxqs.endpoint;

function threads(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      const stat = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/stat`);
      const name = /\((.*)\)/.exec(stat)?.[1] ?? "?";
      out.set(`${t.name}:${name}`, statCpuMs(stat));
    } catch { /* gone */ }
  }
  return out;
}

async function queue(label: string): Promise<string> {
  const name = `threads-${label}-${Date.now()}`;
  await call(endpoint, "CreateQueue", { QueueName: name });
  const url = `${endpoint}/000000000000/${name}`;
  await load(endpoint, url, [...generateBodies(N, { badRatio: 0, seed: 1 })]);
  return url;
}

const fauxqsCpu = () => processCpuMs(fauxqs.pid) ?? 0;
/** CPU-ms of every live postgres process, by pid. */
const pgProcesses = () => {
  const out = new Map<string, number>();
  for (const p of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(p.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${p.name}/stat`);
      if (stat.includes("(postgres)")) out.set(p.name, statCpuMs(stat));
    } catch { /* gone */ }
  }
  return out;
};

/** The V8 flags both programs run with: the binary's, or the ones given. */
const v8Flags = v8 ?? permissionFlags().find((f) => f.startsWith("--v8-flags="));
/** THREADS_CPUS=0 pins both programs to CPU 0 (taskset), as a pod limited to one core. */
const oneCpu = Deno.env.get("THREADS_CPUS") !== undefined;

/** What sampling a process every 20 ms saw: CPU-ms by thread, peak RSS, the map near it. */
interface Watched {
  readonly threads: Map<string, number>;
  readonly peakMib: number;
  /** `/proc/PID/smaps_rollup` when RSS was last within 1 MiB of its peak. */
  readonly atPeak: string;
}

/** Samples `pid` every 20 ms until `done` settles; `onSample` runs after each sample. */
async function watch(pid: number, done: Promise<unknown>, onSample = () => {}): Promise<Watched> {
  const last = new Map<string, number>();
  let peak = 0;
  let atPeak = "";
  const timer = setInterval(() => {
    try {
      for (const [thread, ms] of threads(pid)) last.set(thread, ms);
      onSample();
      const hwm = statusMib(pid, "VmHWM") ?? 0;
      peak = Math.max(peak, hwm);
      if ((statusMib(pid, "VmRSS") ?? 0) >= hwm - 1) {
        atPeak = Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`);
        // THREADS_SMAPS=FILE keeps the whole map near the peak, to see which mappings hold it.
        const dump = Deno.env.get("THREADS_SMAPS");
        if (dump !== undefined) Deno.copyFileSync(`/proc/${pid}/smaps`, dump);
      }
    } catch { /* exiting */ }
  }, 20);
  await done.catch(() => {});
  clearInterval(timer);
  return { threads: last, peakMib: peak, atPeak };
}

/** CPU-ms by thread name, threads of one kind (numbered names) added up. */
function byThreadName(threads: Map<string, number>): Map<string, number> {
  const byName = new Map<string, number>();
  for (const [k, v] of threads) {
    const name = k.split(":").slice(1).join(":").replace(/\d+$/, "#");
    byName.set(name, (byName.get(name) ?? 0) + v);
  }
  return byName;
}

/** Prints µs a message by thread name, busiest first. */
function printByThread(threads: Map<string, number>): void {
  for (const [name, ms] of [...byThreadName(threads)].sort((a, b) => b[1] - a[1])) {
    if (ms > 0) console.log(`  ${name.padEnd(20)} ${(ms / N * 1000).toFixed(1)} µs/msg`);
  }
}

/** The RSS near the peak, by kind of page, as one line. */
function peakSplit(atPeak: string): string {
  const field = (name: string) =>
    Math.round(Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(atPeak)?.[1]) / 1024);
  return `Rss ${field("Rss")} MiB = Shared_Clean ${field("Shared_Clean")} + Private_Clean ${
    field("Private_Clean")
  } + Private_Dirty ${field("Private_Dirty")} (Anonymous ${field("Anonymous")})`;
}

try {
  // The stock SDK ceiling, for its CPU per message.
  const stockUrl = await queue("stock");
  const f0 = fauxqsCpu();
  const stockChild = ceilingCommand("stock", stockUrl, N, 8, {
    ...(v8Flags === undefined ? {} : { v8Flags }),
    oneCpu,
    env: { AWS_EC2_METADATA_DISABLED: "true", ...env },
  }).spawn();
  const stockOut = stockChild.output();
  const stockSeen = await watch(stockChild.pid, stockOut);
  const stockRun = await stockOut;
  if (!stockRun.success) throw new Error(new TextDecoder().decode(stockRun.stderr).slice(-1500));
  // The last JSON line: V8's --trace-gc, when given, writes to stdout too.
  const stockText = new TextDecoder().decode(stockRun.stdout);
  const s = JSON.parse(stockText.split("\n").filter((l) => l.startsWith("{")).at(-1) ?? "{}");
  console.log(
    `stock: ${s.msgs_per_s} msg/s, ${(s.cpu_ms / N * 1000).toFixed(1)} µs CPU/msg, peak ${
      Math.round(stockSeen.peakMib)
    } MiB; fauxqs ${((fauxqsCpu() - f0) / N * 1000).toFixed(1)} µs/msg`,
  );
  console.log(`  near the peak: ${peakSplit(stockSeen.atPeak)}`);
  printByThread(stockSeen.threads);

  const url = await queue("drain");
  const schema = `threads_${Date.now()}`;
  const f1 = fauxqsCpu();
  // Backends come and go with drain's connections: sampled with the threads,
  // each pid's last reading less what it had before.
  const pgBefore = pgProcesses();
  const pgLast = new Map(pgBefore);
  // THREADS_HEAP=FILE runs drain under V8's sampling heap profiler
  // (bench/heap_sampling.ts): its main thread's heap only, so with a worker
  // thread the prepare and the write are not in it; and the profiler's own
  // work inflates the CPU and memory printed for that run.
  const heap = Deno.env.get("THREADS_HEAP");
  const child = loginEtl(["drain", "--queue-url", url, "--summary-json", ...flags], {
    schema,
    env,
    oneCpu,
    ...(v8 === undefined ? {} : { v8Flags: v8 }),
    ...(heap === undefined ? {} : { entry: [`${root}bench/heap_sampling.ts`, heap, String(N)] }),
  }).spawn();
  const output = Promise.all([
    child.status,
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
  ]);
  const { threads: last, peakMib: peak, atPeak } = await watch(child.pid, output, () => {
    for (const [pid, ms] of pgProcesses()) pgLast.set(pid, ms);
  });
  const [status, stdout, stderr] = await output;
  if (!status.success) throw new Error(stderr.slice(-1500));
  // THREADS_STDOUT=FILE keeps drain's stdout: with --trace-gc, every collection V8 made.
  const keep = Deno.env.get("THREADS_STDOUT");
  if (keep !== undefined) Deno.writeTextFileSync(keep, stdout);
  const summary = JSON.parse(stdout.split("\n").filter((l) => l.startsWith("{")).at(-1) ?? "{}");
  // With --v8-flags=--trace-gc: the largest heap V8 reported (used, then committed), MB.
  const heaps = [...stdout.matchAll(/-> ([\d.]+) \(([\d.]+)\) MB/g)].map((
    m,
  ) => [Number(m[1]), Number(m[2])]);
  if (heaps.length > 0) {
    console.log(
      `  V8 heap, largest after a GC: used ${Math.max(...heaps.map((h) => h[0]!))} MB, committed ${
        Math.max(...heaps.map((h) => h[1]!))
      } MB, over ${heaps.length} GCs`,
    );
  }
  const byName = byThreadName(last);
  const total = [...byName.values()].reduce((a, b) => a + b, 0);
  console.log(
    `drain: ${summary.msgs_per_s} msg/s, ${(total / N * 1000).toFixed(1)} µs CPU/msg, peak ${
      Math.round(peak)
    } MiB, ${last.size} threads; fauxqs ${
      ((fauxqsCpu() - f1) / N * 1000).toFixed(1)
    } µs/msg; postgres ${
      ([...pgLast].reduce((sum, [pid, ms]) => sum + ms - (pgBefore.get(pid) ?? 0), 0) / N * 1000)
        .toFixed(1)
    } µs/msg`,
  );
  const promoted = stderr.split("\n").findIndex((l) => l.startsWith("promoted or alive"));
  if (promoted >= 0) {
    console.log(stderr.split("\n").slice(promoted).filter((l) => !l.startsWith("{")).join("\n"));
  }
  // With --log-level debug among the drain flags: the loops `auto` went through.
  const loops = stderr.split("\n").filter((l) => l.includes('"ConcurrencyChanged"'))
    .map((l) => JSON.parse(l) as { to: number; reason: string })
    .map((e) => `${e.to}${e.reason === "full" || e.reason === "start" ? "" : ` (${e.reason})`}`);
  if (loops.length > 0) console.log(`  receive loops: ${loops.join(", ")}`);
  console.log(`  near the peak: ${peakSplit(atPeak)}`);
  printByThread(last);
  const sql = postgres(DATABASE_URL, { max: 1, onnotice: () => {} });
  await dropSchemas(sql, schema);
  await sql.end();
} finally {
  await fauxqs.stop();
}
