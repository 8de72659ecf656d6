/**
 * What a consume run does on a clock while the pipeline works: the hourly
 * prune of `run`, the queue-depth gauge, progress (a live line on a terminal,
 * else a log event), and the `--max-rejects` watch that stops a `run`. Each
 * timer is cleared by the run's disposal stack.
 *
 * @module
 */

import type { SQSClient } from "@aws-sdk/client-sqs";
import type { ConsumeConfig } from "../config/resolve.ts";
import { prune, retentionOf } from "../db/ledger.ts";
import type { Database } from "../db/pool.ts";
import { stderrStatus } from "../log.ts";
import type { Metrics } from "../ops/metrics.ts";
import { startProgress } from "../ops/progress.ts";
import type { Telemetry } from "../ops/telemetry.ts";
import { every } from "../pipeline/retry.ts";
import { queueDepth } from "../sqs/admin.ts";

/** How often `run` prunes the ledger and the rejects. */
const PRUNE_INTERVAL_MS = 60 * 60 * 1000;
/** How often `run --listen` refreshes the queue depth gauge: a GetQueueAttributes call each. */
const DEPTH_REFRESH_MS = 15_000;
/** How often `run` logs its progress. */
const RUN_PROGRESS_MS = 30_000;
/** How often `run` compares its rejects with `--max-rejects`. */
const REJECT_WATCH_MS = 1000;

/** Whether drain draws its progress line: `auto` only when stderr is a terminal. */
function wantsProgressLine(config: ConsumeConfig): boolean {
  if (config.command !== "drain" || config.progress === "never") return false;
  if (config.progress === "always") return true;
  // --dry-run prints its rows on stdout: on the same terminal they would be
  // glued to the line, which no row write erases first.
  return Deno.stderr.isTerminal() && !(config.dryRun && Deno.stdout.isTerminal());
}

function terminalColumns(): number {
  try {
    return Deno.consoleSize().columns;
  } catch {
    return 80; // not a terminal (progress forced with --progress always)
  }
}

/** What the timers read and where they report. */
export interface PeriodicDeps {
  readonly client: SQSClient;
  readonly database: Database | null;
  readonly metrics: Metrics | null;
  readonly telemetry: Telemetry;
  readonly stack: AsyncDisposableStack;
}

/**
 * Starts the run's timers. Returns a signal aborted when `run` passes
 * `--max-rejects` (drain checks once at the end instead, having finished
 * the queue).
 */
export function startPeriodic(config: ConsumeConfig, deps: PeriodicDeps): AbortSignal {
  const { client, database, metrics, telemetry, stack } = deps;
  const depth = () => queueDepth(client, config.queueUrl);
  // A long-running consumer prunes hourly too; a failed prune only delays the next one.
  if (config.command === "run" && database !== null) {
    every(PRUNE_INTERVAL_MS, async () => {
      for (const [target, days] of retentionOf(config)) {
        await prune(database, { target, days }).then(
          (r) =>
            r.deleted + r.partitionsCreated + r.partitionsDropped > 0 &&
            telemetry.emit({ type: "RowsPruned", target, ...r }),
          (error) =>
            telemetry.emit({ type: "PruneFailed", target, code: String(error?.code ?? "unknown") }),
        );
      }
    }, stack);
  }
  if (metrics !== null) {
    // /readyz reports an unreachable queue; the gauge keeps its last value.
    every(DEPTH_REFRESH_MS, async () => metrics.setQueueDepth(await depth()), stack);
  }
  if (wantsProgressLine(config)) {
    const line = startProgress({
      done: () => {
        const s = telemetry.summary();
        return { done: s.inserted + s.redelivered + s.rejected, rejected: s.rejected };
      },
      queueDepth: depth,
      status: stderrStatus,
      columns: terminalColumns,
    });
    // Erased before the summary line main writes next.
    stack.defer(() => line.stop());
  } else if (config.command === "run" || config.progressSeconds > 0) {
    // Off a terminal (a scheduled job, a container) progress is a log event.
    const ms = config.command === "run" ? RUN_PROGRESS_MS : config.progressSeconds * 1000;
    every(ms, async () => {
      const queue = await depth().catch(() => undefined);
      telemetry.emit({
        type: "ProgressReported",
        summary: telemetry.summary(),
        ...(queue === undefined ? {} : { queueDepth: queue }),
      });
    }, stack);
  }
  const overLimit = new AbortController();
  const limit = config.maxRejects;
  if (limit !== null && config.command === "run") {
    every(REJECT_WATCH_MS, () => {
      const { rejected } = telemetry.summary();
      if (rejected > limit && !overLimit.signal.aborted) {
        telemetry.emit({ type: "RejectLimitExceeded", rejected, limit });
        overLimit.abort();
      }
      return Promise.resolve();
    }, stack);
  }
  return overLimit.signal;
}
