/**
 * The process's load as `--concurrency auto` reads it (`concurrency.ts`):
 * CPU time per wall second, all threads (`process.cpuUsage()`), and how late
 * a periodic timer fires, the event loop's own measure of how busy it is.
 * (`monitorEventLoopDelay` of node:perf_hooks reports no delay under load
 * in Deno, so the probe is a timer of its own.) The clock is injected.
 *
 * @module
 */

import process from "node:process";

/** How often the probe timer is due, ms. */
const PROBE_MS = 20;

/** One interval's load. */
export interface LoadSample {
  /** Process CPU seconds per wall second since the last sample. */
  readonly cpuPerSecond: number;
  /** Mean lateness of the probe timer since the last sample, ms. */
  readonly lagMs: number;
  /** Wall time since the last sample, ms. */
  readonly intervalMs: number;
}

/** A running probe; `sample()` reads and restarts the interval, `stop()` ends it. */
export class LoadProbe {
  readonly #now: () => number;
  readonly #timer: ReturnType<typeof setInterval>;
  #due: number;
  #lateSum = 0;
  #lateCount = 0;
  #since: number;
  #cpuSince: number;

  constructor(now: () => number) {
    this.#now = now;
    this.#since = now();
    this.#cpuSince = cpuMs();
    this.#due = this.#since + PROBE_MS;
    this.#timer = setInterval(() => {
      const t = this.#now();
      this.#lateSum += Math.max(0, t - this.#due);
      this.#lateCount++;
      this.#due = t + PROBE_MS;
    }, PROBE_MS);
  }

  /** The load since the last sample (or the start). */
  sample(): LoadSample {
    const t = this.#now();
    const cpu = cpuMs();
    const wall = Math.max(1, t - this.#since);
    const sample = {
      cpuPerSecond: (cpu - this.#cpuSince) / wall,
      lagMs: this.#lateCount === 0 ? 0 : this.#lateSum / this.#lateCount,
      intervalMs: wall,
    };
    this.#since = t;
    this.#cpuSince = cpu;
    this.#lateSum = 0;
    this.#lateCount = 0;
    return sample;
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}
