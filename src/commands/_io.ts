/**
 * What every command is given besides its config, and the one way a command
 * prints its result (docs/design.md, "Who prints").
 *
 * @module
 */

import type { Telemetry } from "../ops/telemetry.ts";

/** What a command needs besides its config. */
export interface CommandIo {
  /** Events: the log lines on stderr and the counters. */
  readonly telemetry: Telemetry;
  /** Aborted on SIGINT/SIGTERM. */
  readonly stop: AbortSignal;
  /** Writes one line to stdout: what the command streams, and its result. */
  readonly writeStdout: (line: string) => void;
}

/**
 * Prints a command's result on stdout: with `--summary-json` (`asJson`),
 * one JSON object for a script; else `lines`, for a person (none when the
 * log already said it).
 */
export function printResult(
  io: Pick<CommandIo, "writeStdout">,
  asJson: boolean,
  result: unknown,
  lines: readonly string[] = [],
): void {
  if (asJson) io.writeStdout(JSON.stringify(result));
  else for (const line of lines) io.writeStdout(line);
}
