// deno-lint-ignore-file no-console -- a measuring tool that prints its figures
// Where a drain's CPU goes, by thread: loads a queue on a fauxqs process of
// its own, runs `login-etl drain` (the binary's flags, extra flags and env
// from the command line), samples /proc/PID/task/*/stat every 20 ms and
// prints CPU-ms by thread name, with the stock SDK ceiling's CPU beside it
// for the same messages.
// Usage: deno run -A bench/threads.ts [N] [KEY=VALUE ...] [--v8-flags=...] [drain flags ...]
// (--v8-flags replaces the binary's own).

import postgres from "postgres";
import { generateBodies } from "../src/seed/generate.ts";
import { call, load } from "./sqs_json.ts";
import {
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

try {
  // The stock SDK ceiling, for its CPU per message.
  const stockUrl = await queue("stock");
  const f0 = fauxqsCpu();
  const stock = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${root}bench/ceiling.ts`, "stock", stockUrl, String(N), "8"],
    stdout: "piped",
  }).output();
  const s = JSON.parse(new TextDecoder().decode(stock.stdout).trim());
  console.log(
    `stock: ${s.msgs_per_s} msg/s, ${(s.cpu_ms / N * 1000).toFixed(1)} µs CPU/msg; fauxqs ${
      ((fauxqsCpu() - f0) / N * 1000).toFixed(1)
    } µs/msg`,
  );

  const url = await queue("drain");
  const schema = `threads_${Date.now()}`;
  const f1 = fauxqsCpu();
  // Backends come and go with drain's connections: sampled with the threads,
  // each pid's last reading less what it had before.
  const pgBefore = pgProcesses();
  const pgLast = new Map(pgBefore);
  // THREADS_CPUS=0 pins drain to CPU 0 (taskset), as a pod limited to one core.
  const child = loginEtl(["drain", "--queue-url", url, "--summary-json", ...flags], {
    schema,
    env,
    oneCpu: Deno.env.get("THREADS_CPUS") !== undefined,
    ...(v8 === undefined ? {} : { v8Flags: v8 }),
  }).spawn();
  let last = new Map<string, number>();
  let peak = 0;
  let atPeak = "";
  const watch = setInterval(() => {
    try {
      last = new Map([...last, ...threads(child.pid)]);
      for (const [pid, ms] of pgProcesses()) pgLast.set(pid, ms);
      const hwm = statusMib(child.pid, "VmHWM") ?? 0;
      peak = Math.max(peak, hwm);
      if ((statusMib(child.pid, "VmRSS") ?? 0) >= hwm - 1) {
        atPeak = Deno.readTextFileSync(`/proc/${child.pid}/smaps_rollup`);
        // THREADS_SMAPS=FILE keeps the whole map near the peak, to see which mappings hold it.
        const dump = Deno.env.get("THREADS_SMAPS");
        if (dump !== undefined) Deno.copyFileSync(`/proc/${child.pid}/smaps`, dump);
      }
    } catch { /* exiting */ }
  }, 20);
  const [status, stdout, stderr] = await Promise.all([
    child.status,
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
  ]);
  clearInterval(watch);
  if (!status.success) throw new Error(stderr.slice(-1500));
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
  const byName = new Map<string, number>();
  for (const [k, v] of last) {
    const name = k.split(":").slice(1).join(":").replace(/\d+$/, "#");
    byName.set(name, (byName.get(name) ?? 0) + v);
  }
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
  // With --log-level debug among the drain flags: the loops `auto` went through.
  const loops = stderr.split("\n").filter((l) => l.includes('"ConcurrencyChanged"'))
    .map((l) => JSON.parse(l) as { to: number; reason: string })
    .map((e) => `${e.to}${e.reason === "full" || e.reason === "start" ? "" : ` (${e.reason})`}`);
  if (loops.length > 0) console.log(`  receive loops: ${loops.join(", ")}`);
  const field = (name: string) =>
    Math.round(Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(atPeak)?.[1]) / 1024);
  console.log(
    `  near the peak: Rss ${field("Rss")} MiB = Shared_Clean ${
      field("Shared_Clean")
    } + Private_Clean ${field("Private_Clean")} + Private_Dirty ${
      field("Private_Dirty")
    } (Anonymous ${field("Anonymous")})`,
  );
  for (const [name, ms] of [...byName].sort((a, b) => b[1] - a[1])) {
    if (ms > 0) console.log(`  ${name.padEnd(20)} ${(ms / N * 1000).toFixed(1)} µs/msg`);
  }
  const sql = postgres(DATABASE_URL, { max: 1, onnotice: () => {} });
  await dropSchemas(sql, schema);
  await sql.end();
} finally {
  await fauxqs.stop();
}
