/**
 * Where a run's metrics go: served with /healthz and /readyz (`run
 * --listen`), or written to a file at exit (`drain --metrics-file`). The only
 * `Deno.serve` of the program. What /readyz checks comes in as functions, so
 * this module imports no stage.
 *
 * @module
 */

import { ConfigError } from "../errors.ts";
import type { Metrics } from "./metrics.ts";
import { writeMetricsFileAtExit } from "./metrics_file.ts";
import {
  cachedProbe,
  createHandler,
  type ListenAddress,
  parseListenAddress,
  type ReadinessCheck,
  readinessProbe,
} from "./server.ts";
import type { Telemetry } from "./telemetry.ts";

/** How long /readyz waits for the database and the queue; under the probe's 5 s timeout in deploy/. */
const READY_TIMEOUT_MS = 2000;
/** How long a /readyz answer is reused, so frequent probes and scrapes do not hammer the services. */
const READY_CACHE_MS = 2000;

/**
 * Serves /healthz, /readyz and /metrics on `address` until the returned
 * function is called.
 *
 * @throws {ConfigError} when the address cannot be bound
 */
export function serveOperations(
  address: ListenAddress,
  deps: {
    readonly metrics: Metrics;
    readonly checks: readonly ReadinessCheck[];
    readonly stopping: () => boolean;
  },
  telemetry: Telemetry,
): () => Promise<void> {
  const ready = cachedProbe(
    readinessProbe(deps.checks, { timeoutMs: READY_TIMEOUT_MS, stopping: deps.stopping }),
    { ttlMs: READY_CACHE_MS },
  );
  const handler = createHandler({
    metrics: deps.metrics,
    ready,
    onUnready: (reason) => telemetry.emit({ type: "NotReady", reason }),
  });
  let server: Deno.HttpServer;
  try {
    server = Deno.serve({
      hostname: address.hostname,
      port: address.port,
      // Without onListen, Deno prints "Listening on" to stdout, where --summary-json goes.
      onListen: (addr) =>
        telemetry.emit({ type: "ListenStarted", address: `${addr.hostname}:${addr.port}` }),
    }, handler);
  } catch (error) {
    const why = error instanceof Deno.errors.AddrInUse
      ? "the address is in use"
      : error instanceof Error
      ? error.message
      : String(error);
    throw new ConfigError(
      `Cannot listen on --listen "${address.hostname}:${address.port}": ${why}; pick another port`,
      { cause: error },
    );
  }
  return () => server.shutdown();
}

/** Where the run's metrics go; both null: no metrics at all. */
export interface OperationsTargets {
  /** `run --listen`: the address to serve on, as given. */
  readonly listen: string | null;
  /** `drain --metrics-file`: the file to write at exit. */
  readonly metricsFile: string | null;
}

/**
 * The run's metrics, served or written at exit as `targets` say; null when
 * neither is asked for, and prom-client is then never loaded: it is a
 * noticeable share of start-up time. Everything opened is closed by `stack`.
 */
export async function openMetrics(
  targets: OperationsTargets,
  deps: {
    readonly stack: AsyncDisposableStack;
    readonly stopping: () => boolean;
    /** Read when the run ends: whether it succeeded, for the metrics file. */
    readonly succeeded: () => boolean;
    /** The queue's depth: /readyz's queue check, which also refreshes the gauge. */
    readonly queueDepth: () => Promise<number>;
    /** Resolves when the database answers, rejects with why not; null without a database. */
    readonly pingDatabase: (() => Promise<void>) | null;
  },
  telemetry: Telemetry,
): Promise<Metrics | null> {
  const listen = targets.listen === null ? null : parseListenAddress(targets.listen);
  const file = targets.metricsFile;
  if (listen === null && file === null) return null;
  const metrics = new (await import("./metrics.ts")).Metrics(telemetry.counters);
  const { stack, pingDatabase } = deps;
  stack.defer(telemetry.addObserver(metrics));
  if (file !== null) {
    writeMetricsFileAtExit(file, { metrics, stack, succeeded: deps.succeeded }, telemetry);
  }
  if (listen !== null) {
    const checks: ReadinessCheck[] = [{
      name: "queue",
      check: async () => metrics.setQueueDepth(await deps.queueDepth()),
    }];
    if (pingDatabase !== null) checks.push({ name: "database", check: pingDatabase });
    stack.defer(serveOperations(listen, { metrics, checks, stopping: deps.stopping }, telemetry));
  }
  return metrics;
}
