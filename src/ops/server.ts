/**
 * The operations endpoints of `run --listen` as a plain `(Request) => Response`
 * handler: `/healthz` (the process is up), `/readyz` (the database and the
 * queue answer) and `/metrics` (Prometheus text). No socket here: `serve.ts`
 * hands the handler to `Deno.serve`, and tests call it directly.
 *
 * @module
 */

import { ConfigError, redactSecrets } from "../errors.ts";

/** The state of one check in a `/readyz` answer. */
export type CheckState = "ok" | "failed" | "timeout";

/**
 * The answer of a readiness probe. `checks` is all the HTTP answer shows;
 * `reason` (error text, which can name hosts and users) goes to the log only.
 */
export type Readiness =
  | { readonly ready: true; readonly checks?: Readonly<Record<string, CheckState>> }
  | {
    readonly ready: false;
    readonly reason: string;
    readonly checks?: Readonly<Record<string, CheckState>>;
  };

/** Asks whether the consumer can do its work now. */
export type Probe = () => Promise<Readiness>;

/** One dependency `/readyz` checks. */
export interface ReadinessCheck {
  /** Short name shown in the reason, e.g. `database`. */
  readonly name: string;
  /** Resolves when the dependency answers; rejects with why it did not. */
  readonly check: () => Promise<void>;
}

/** What the handler serves. */
export interface ServerDeps {
  /** The metrics text and its content type. */
  readonly metrics: { expose(): Promise<string>; readonly contentType: string };
  /** The readiness probe, usually `cachedProbe(readinessProbe(...))`. */
  readonly ready: Probe;
  /** Told why, each time `/readyz` answers 503: for the log, never the HTTP body. */
  readonly onUnready?: (reason: string) => void;
}

const JSON_TYPE = "application/json; charset=utf-8";
const TEXT_TYPE = "text/plain; charset=utf-8";

function jsonLine(status: number, body: Record<string, unknown>): Response {
  return new Response(JSON.stringify(body) + "\n", {
    status,
    headers: { "content-type": JSON_TYPE, "cache-control": "no-store" },
  });
}

/**
 * Creates the handler. Only GET and HEAD are served; anything else is 405,
 * an unknown path 404.
 */
export function createHandler(deps: ServerDeps): (request: Request) => Promise<Response> {
  return async (request) => {
    const path = new URL(request.url).pathname;
    if (path !== "/healthz" && path !== "/readyz" && path !== "/metrics") {
      return new Response("Not found: try /healthz, /readyz or /metrics\n", {
        status: 404,
        headers: { "content-type": TEXT_TYPE },
      });
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("Method not allowed\n", {
        status: 405,
        headers: { allow: "GET, HEAD", "content-type": TEXT_TYPE },
      });
    }
    const response = await route(path, deps);
    return request.method === "HEAD"
      ? new Response(null, { status: response.status, headers: response.headers })
      : response;
  };
}

async function route(path: string, deps: ServerDeps): Promise<Response> {
  switch (path) {
    case "/healthz":
      // Liveness only: a database outage must not get the process restarted.
      return jsonLine(200, { status: "ok" });
    case "/readyz": {
      const readiness = await deps.ready().catch((error: unknown): Readiness => ({
        ready: false,
        reason: `probe failed: ${error instanceof Error ? error.message : String(error)}`,
      }));
      if (readiness.ready) {
        return jsonLine(200, { status: "ready", checks: readiness.checks ?? {} });
      }
      deps.onUnready?.(oneLine(readiness.reason));
      // Names and states only: error text can name hosts, users and paths.
      return jsonLine(503, { status: "unavailable", checks: readiness.checks ?? {} });
    }
    default:
      return new Response(await deps.metrics.expose(), {
        status: 200,
        headers: { "content-type": deps.metrics.contentType, "cache-control": "no-store" },
      });
  }
}

/** Reasons go in one log line: no newlines, at most 300 characters. */
function oneLine(text: string): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > 300 ? `${flat.slice(0, 299)}…` : flat;
}

/**
 * A probe that runs every check at once, each within `timeoutMs`, and is
 * ready only when all answer. `checks` gives each one's state; the reason
 * (for the log) names the first failing check and why.
 * A check still running from an earlier probe is awaited, not started again,
 * so a hung dependency does not pile up calls.
 */
export function readinessProbe(
  checks: readonly ReadinessCheck[],
  options: { readonly timeoutMs: number; readonly stopping?: () => boolean },
): Probe {
  const running = new Map<string, Promise<void>>();
  const attempt = (c: ReadinessCheck): Promise<void> => {
    let pending = running.get(c.name);
    if (pending === undefined) {
      pending = c.check().finally(() => running.delete(c.name));
      running.set(c.name, pending);
    }
    return pending;
  };
  return async () => {
    if (options.stopping?.() === true) return { ready: false, reason: "shutting down", checks: {} };
    const results = await Promise.all(
      checks.map(async (c): Promise<[CheckState, string | null]> => {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const timeout = new Promise<[CheckState, string]>((resolve) => {
          timer = setTimeout(
            () => resolve(["timeout", `${c.name}: no answer within ${options.timeoutMs} ms`]),
            options.timeoutMs,
          );
        });
        try {
          return await Promise.race([
            attempt(c).then(
              (): [CheckState, null] => ["ok", null],
              (error: unknown): [CheckState, string] => [
                "failed",
                `${c.name}: ${error instanceof Error ? error.message : String(error)}`,
              ],
            ),
            timeout,
          ]);
        } finally {
          clearTimeout(timer);
        }
      }),
    );
    const states = Object.fromEntries(checks.map((c, i) => [c.name, results[i]?.[0] ?? "failed"]));
    const failed = results.find(([, why]) => why !== null)?.[1];
    return failed === undefined || failed === null
      ? { ready: true, checks: states }
      : { ready: false, reason: failed, checks: states };
  };
}

/**
 * Caches a probe's answer for `ttlMs`, and shares one probe among callers
 * that arrive while it runs, so frequent scrapes do not hammer the services.
 *
 * @param options.now monotonic clock in ms (tests pass a fake one)
 */
export function cachedProbe(
  probe: Probe,
  options: { readonly ttlMs: number; readonly now?: () => number },
): Probe {
  const now = options.now ?? (() => performance.now());
  let cached: { at: number; value: Readiness } | null = null;
  let running: Promise<Readiness> | null = null;
  return () => {
    if (cached !== null && now() - cached.at < options.ttlMs) return Promise.resolve(cached.value);
    running ??= probe().then((value) => {
      cached = { at: now(), value };
      return value;
    }).finally(() => (running = null));
    return running;
  };
}

/** Where `--listen` serves. */
export interface ListenAddress {
  readonly hostname: string;
  readonly port: number;
}

/**
 * Parses `--listen`: `:PORT` (every interface), `HOST:PORT`, or
 * `[IPV6]:PORT`. Port 0 picks a free port.
 *
 * @throws {ConfigError} naming the accepted forms
 */
export function parseListenAddress(text: string, origin = "--listen"): ListenAddress {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\s[\]]*)):(\d{1,5})$/.exec(text.trim());
  const port = Number(match?.[3]);
  if (match === null || !Number.isInteger(port) || port > 65535) {
    throw new ConfigError(
      `Invalid ${origin} "${
        redactSecrets(text)
      }": must be :PORT, HOST:PORT or [IPV6]:PORT with a port from 0 to 65535, e.g. :9464`,
    );
  }
  const host = match[1] ?? match[2] ?? "";
  return { hostname: host === "" ? "0.0.0.0" : host, port };
}
