/**
 * The metrics file of `drain --metrics-file`: the run's metrics written once,
 * at exit, for node_exporter's textfile collector.
 *
 * @module
 */

import { ConfigError, formatError } from "../errors.ts";
import type { Metrics } from "./metrics.ts";
import type { Telemetry } from "./telemetry.ts";

/**
 * Writes `metrics` to `path`: to a temporary file beside it, then renamed,
 * so the collector never reads half a file.
 *
 * @throws {ConfigError} naming the file when it cannot be written
 */
export async function writeMetricsFile(
  path: string,
  metrics: Metrics,
  succeeded: boolean,
): Promise<void> {
  metrics.finished(succeeded);
  const temporary = `${path}.${Deno.pid}.tmp`;
  try {
    await Deno.writeTextFile(temporary, await metrics.expose());
    await Deno.rename(temporary, path);
  } catch (error) {
    await Deno.remove(temporary).catch(() => {});
    throw new ConfigError(`Cannot write --metrics-file "${path}": ${formatError(error)}`, {
      cause: error,
    });
  }
}

/**
 * Writes the metrics file when `stack` is disposed: whatever the outcome,
 * and last, since a failed run's counters matter most.
 */
export function writeMetricsFileAtExit(
  path: string,
  deps: {
    readonly metrics: Metrics;
    readonly stack: AsyncDisposableStack;
    /** Read at exit: whether the run succeeded. */
    readonly succeeded: () => boolean;
  },
  telemetry: Telemetry,
): void {
  deps.stack.defer(async () => {
    try {
      await writeMetricsFile(path, deps.metrics, deps.succeeded());
      telemetry.emit({ type: "MetricsFileWritten", path });
    } catch (error) {
      // Fails a run that had succeeded; a failing run keeps its own error.
      if (deps.succeeded()) throw error;
      telemetry.emit({ type: "ConfigWarned", message: formatError(error) });
    }
  });
}
