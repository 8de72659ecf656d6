/**
 * `drain` and `run`: the consumer's run (`_consume.ts`), then its summary:
 * logged as `RunFinished`, and printed as JSON with `--summary-json`, a
 * failed run's counters included.
 *
 * @module
 */

import type { ConsumeConfig } from "../config/resolve.ts";
import { formatError } from "../errors.ts";
import type { Summary } from "../ops/telemetry.ts";
import { consume } from "./_consume.ts";
import { type CommandIo, printResult } from "./_io.ts";

/** Runs `drain` or `run`. */
export async function drainCommand(config: ConsumeConfig, io: CommandIo): Promise<void> {
  let summary: Summary;
  try {
    summary = await consume(config, io);
  } catch (error) {
    // A script reading the summary learns how far a failed run got, and why it stopped.
    printResult(io, config.summaryJson, { ...io.telemetry.summary(), error: formatError(error) });
    throw error;
  }
  io.telemetry.emit({ type: "RunFinished", summary });
  printResult(io, config.summaryJson, { ...summary, dry_run: config.dryRun });
}
