/**
 * What tests share that needs no service: the test key, the exercise's
 * sample, unique names, a logger that keeps its lines and printed figures.
 * Unit tests import this rather than services.ts, which waits for the suite's
 * Postgres.
 *
 * @module
 */

import { createLogger, type Logger } from "../../src/log.ts";
import { Telemetry } from "../../src/ops/telemetry.ts";

/** HMAC secret of the tests (not a real one). */
export const TEST_SECRET = "login-etl integration test secret, 32+ bytes";

/** Where the exercise's 100 real messages are, when this checkout sits beside them. */
export const SAMPLE_PATH =
  new URL("../../../shared/data/sample_data.json.gz", import.meta.url).pathname;

/** True when the sample file is present. */
export function hasSample(): boolean {
  try {
    Deno.statSync(SAMPLE_PATH);
    return true;
  } catch {
    return false;
  }
}

let counter = 0;
/**
 * This copy of the module's own tag. `deno test --parallel` runs test files
 * as workers of one process: they share `Deno.pid`, and each has its own
 * counter, so time, pid and counter alone collided when two files asked in
 * the same millisecond ("schema … already exists", seen with copies of one
 * file run side by side).
 */
const TAG = crypto.getRandomValues(new Uint32Array(1))[0]!.toString(36);
/**
 * A name unique to this call in the whole test run, for queues, schemas,
 * roles and databases (cluster-wide, shared by test files running side by
 * side): `prefix`, then the time, the module's tag and a counter.
 */
export function uniqueName(prefix: string): string {
  counter++;
  return `${prefix}_${Date.now().toString(36)}_${TAG}_${counter}`;
}

/**
 * The UTC days (YYYY-MM-DD) from `sinceMs` to now: what a date the code takes
 * from the clock may be, for a test that started at `sinceMs`. Reading
 * "today" once after the work fails every run that crosses midnight UTC.
 */
export function utcDaysSince(sinceMs: number): string[] {
  const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);
  const days = [day(sinceMs)];
  for (let ms = sinceMs + 86_400_000; day(ms) <= day(Date.now()); ms += 86_400_000) {
    days.push(day(ms));
  }
  return days;
}

/**
 * Runs `body`, and once more if it failed on a run that crossed midnight UTC:
 * for a test whose steps each read the day (the ledger's partitions), where
 * accepting either day at every step would prove less. A failure within one
 * day is thrown as it is.
 */
export async function onOneUtcDay<T>(body: () => Promise<T>): Promise<T> {
  for (;;) {
    const since = Date.now();
    try {
      return await body();
    } catch (error) {
      if (utcDaysSince(since).length === 1) throw error;
    }
  }
}

/** A logger that keeps its lines, for asserting on what was logged. */
export function capturingTelemetry(): { telemetry: Telemetry; lines: string[]; logger: Logger } {
  const lines: string[] = [];
  const logger = createLogger({
    format: "json",
    level: "debug",
    write: (l) => lines.push(l),
    isTerminal: false,
  });
  return { telemetry: new Telemetry(logger), lines, logger };
}

/** Prints a test's figures so a reader sees the result, not only a pass. */
export function reportFigures(label: string, figures: object): void {
  // deno-lint-ignore no-console
  console.log(`${label}: ${JSON.stringify(figures)}`);
}

/**
 * Runs test files of this checkout (paths from its root) in a child `deno
 * test` with `filter` and `env` over this process's environment, colour off:
 * for a test of how the suite itself behaves (what it skips, what it touches).
 */
export async function childDenoTest(
  files: readonly string[],
  filter: string,
  env: Readonly<Record<string, string>>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const root = new URL("../../", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "test",
      "--allow-all",
      "--no-check",
      "--filter",
      filter,
      ...files.map((f) => `${root}${f}`),
    ],
    env: { ...Deno.env.toObject(), NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}
