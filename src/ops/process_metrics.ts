/**
 * The process's own metrics under Prometheus' standard names and meanings
 * (those of client_golang's process collector, which dashboards and alerts
 * expect): resident memory, CPU seconds and start time, read from Deno's
 * APIs at each scrape.
 *
 * `process_open_fds` is left out on purpose: Linux lists descriptors only in
 * `/proc/self/fd` (or `/proc/<pid>/fd`, `/dev/fd`), and Deno refuses those
 * paths to anything short of `--allow-all`, which the binary never gets.
 * The container runtime's own metrics count a pod's descriptors instead.
 *
 * @module
 */

import process from "node:process";
import { Counter, Gauge, type Registry } from "prom-client";

/**
 * Adds the `process_*` metrics to `registry`: resident memory
 * (`Deno.memoryUsage().rss`), user plus system CPU seconds
 * (`process.cpuUsage()`, getrusage underneath) and the start time
 * (`performance.timeOrigin`, when the runtime started).
 */
export function registerProcessMetrics(registry: Registry): void {
  const registers = [registry];
  new Gauge({
    name: "process_resident_memory_bytes",
    help: "Resident memory size in bytes",
    registers,
    collect() {
      this.set(Deno.memoryUsage().rss);
    },
  });
  new Counter({
    name: "process_cpu_seconds_total",
    help: "Total user and system CPU time spent in seconds",
    registers,
    collect() {
      const { user, system } = process.cpuUsage();
      this.reset();
      this.inc((user + system) / 1e6); // microseconds
    },
  });
  new Gauge({
    name: "process_start_time_seconds",
    help: "Start time of the process since unix epoch in seconds",
    registers,
  }).set(performance.timeOrigin / 1000);
}
