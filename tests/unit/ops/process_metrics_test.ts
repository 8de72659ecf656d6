// Unit tests of src/ops/process_metrics.ts: each process_* metric, scraped
// from a registry of its own, against what Deno says of this very process
// at the same moment, and CPU seconds growing with work.

import assert from "node:assert/strict";
import process from "node:process";
import { Registry } from "prom-client";
import { registerProcessMetrics } from "../../../src/ops/process_metrics.ts";

async function scrape(registry: Registry): Promise<Map<string, number>> {
  const values = new Map<string, number>();
  for (const line of (await registry.metrics()).split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const [name, value] = line.split(" ");
    values.set(name ?? "", Number(value));
  }
  return values;
}

Deno.test("registerProcessMetrics() exposes this process's memory, CPU and start time", async () => {
  const registry = new Registry();
  registerProcessMetrics(registry);
  const before = Deno.memoryUsage().rss;
  const cpuBefore = process.cpuUsage();
  const values = await scrape(registry);
  const after = Deno.memoryUsage().rss;
  const rss = values.get("process_resident_memory_bytes") ?? 0;
  assert.ok(rss >= Math.min(before, after) * 0.9 && rss <= Math.max(before, after) * 1.1, `${rss}`);
  const cpu = values.get("process_cpu_seconds_total") ?? 0;
  assert.ok(cpu >= (cpuBefore.user + cpuBefore.system) / 1e6, `${cpu}`);
  const start = values.get("process_start_time_seconds") ?? 0;
  assert.ok(start <= Date.now() / 1000 && start > Date.now() / 1000 - 3600, `${start}`);
  assert.equal(values.has("process_open_fds"), false, "Deno keeps /proc/self from the binary");
});

Deno.test("process_cpu_seconds_total grows with work and never goes down", async () => {
  const registry = new Registry();
  registerProcessMetrics(registry);
  const cpuBefore = process.cpuUsage();
  const first = (await scrape(registry)).get("process_cpu_seconds_total") ?? 0;
  // 200 ms of CPU, as the kernel counts it, not of wall time: beside other
  // test files (they run in parallel) 200 ms of wall time may get far less.
  const cpuMs = () => {
    const used = process.cpuUsage(cpuBefore);
    return (used.user + used.system) / 1000;
  };
  const giveUp = performance.now() + 20_000;
  let spin = 0;
  while (cpuMs() < 200 && performance.now() < giveUp) {
    for (let i = 0; i < 10_000; i++) spin += Math.sqrt(spin + 1);
  }
  const second = (await scrape(registry)).get("process_cpu_seconds_total") ?? 0;
  const used = cpuMs() / 1000;
  assert.ok(spin > 0);
  assert.ok(used >= 0.2, `the spin got ${used} s of CPU in 20 s`);
  assert.ok(second - first >= 0.1, `${first} then ${second}: ${used} s of work`);
  assert.ok(second - first <= used + 0.1, `${first} then ${second}: only ${used} s of work`);
});
