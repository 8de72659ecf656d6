/**
 * Waiting and retrying: capped exponential backoff with half jitter, an
 * abortable sleep, a timer that never overlaps itself (`every`), the one
 * retry loop (`retrying`) and its use for a run's start-up steps
 * (`atStart`). The delay function is pure given its random source, so tests
 * can pin it.
 *
 * @module
 */

import { EtlError, formatError } from "../errors.ts";
import type { Telemetry } from "../ops/telemetry.ts";

/** Backoff shape. */
export interface BackoffOptions {
  /** Delay ceiling before jitter for the first retry. */
  readonly baseMs: number;
  /** Largest delay ever returned. */
  readonly capMs: number;
}

/** Default: 200 ms doubling to a 5 s cap, so service returns are noticed within seconds. */
export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 200, capMs: 5000 };

/**
 * Delay before retry number `attempt` (1 = first retry): uniform in
 * [cap/2, cap] where cap = min(capMs, baseMs·2^(attempt-1)). Half-jitter keeps
 * a floor so a retry storm cannot collapse to zero delay.
 */
export function backoffMs(
  attempt: number,
  options: BackoffOptions = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(
    options.capMs,
    options.baseMs * 2 ** Math.min(Math.max(attempt - 1, 0), 30),
  );
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/** Resolves after `ms`, or at once when `signal` aborts. Never rejects. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted === true) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * Calls `fn` every `ms` until `stack` is disposed, never two at once: a
 * call still running when the next is due is waited for, not doubled.
 */
export function every(ms: number, fn: () => Promise<void>, stack: AsyncDisposableStack): void {
  let running: Promise<void> | null = null;
  const timer = setInterval(() => {
    running ??= fn().catch(() => {}).finally(() => (running = null));
  }, ms);
  stack.defer(async () => {
    clearInterval(timer);
    await running;
  });
}

/** How `retrying` decides and reports. */
export interface RetryPolicy {
  /** Give up when `now()` reaches this, given when the first failure happened. */
  readonly deadline: (firstFailureAt: number) => number;
  /** True when a later attempt may succeed. */
  readonly transient: (error: unknown) => boolean;
  /** Told of each failure: the retry delay, or null when this one is final. */
  readonly onFailure: (error: unknown, attempt: number, retryInMs: number | null) => void;
  /** Stop before another attempt (a stop, or another part failed for good). */
  readonly cancelled?: () => boolean;
  /** Called after the first attempt that succeeds following a failure. */
  readonly onRecovered?: (attempts: number) => void;
  readonly now: () => number;
  /** Ends a wait early (a stop). */
  readonly signal?: AbortSignal;
  readonly backoff?: BackoffOptions;
}

/** What `retrying` ends with: the value, or the error it gave up on (`null` when cancelled). */
export type RetryResult<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly error: unknown };

/**
 * Calls `attempt` until it succeeds, retrying transient failures with
 * backoff until the policy's deadline. The one retry loop of the pipeline:
 * receives and writes both go through it.
 */
export async function retrying<T>(
  attempt: () => Promise<T>,
  policy: RetryPolicy,
): Promise<RetryResult<T>> {
  let firstFailureAt: number | null = null;
  for (let n = 1;; n++) {
    if (n > 1 && policy.cancelled?.() === true) return { ok: false, error: null };
    try {
      const value = await attempt();
      if (n > 1) policy.onRecovered?.(n);
      return { ok: true, value };
    } catch (error) {
      const now = policy.now();
      firstFailureAt ??= now;
      const deadline = policy.deadline(firstFailureAt);
      if (!policy.transient(error) || now >= deadline) {
        policy.onFailure(error, n, null);
        return { ok: false, error };
      }
      const delay = Math.min(backoffMs(n, policy.backoff), Math.max(0, deadline - now));
      policy.onFailure(error, n, delay);
      await sleep(delay, policy.signal);
    }
  }
}

/**
 * Runs a start-up step, retrying while it fails transiently (the service
 * unreachable or restarting, as in a failover) with the pipeline's backoff,
 * for up to `--max-retry-seconds`, each attempt logged. Bad credentials, a
 * missing privilege or a missing queue fail at once: waiting would not fix
 * them.
 *
 * @throws the step's last error, its message saying how long it was retried
 */
export async function atStart<T>(
  what: "queue" | "database",
  step: () => Promise<T>,
  options: { readonly maxRetrySeconds: number; readonly stop: AbortSignal },
  telemetry: Telemetry,
): Promise<T> {
  let attempts = 0;
  const result = await retrying(() => {
    attempts++;
    return step();
  }, {
    deadline: (first) => first + options.maxRetrySeconds * 1000,
    transient: (error) => error instanceof EtlError && error.transient,
    onFailure: (error, attempt, retryInMs) => {
      if (retryInMs === null) return; // the final error is the exit line
      telemetry.emit({
        type: "StageFailed",
        stage: "startup",
        code: error instanceof EtlError ? error.code : "internal",
        message: `${what} not ready at start (${formatError(error)})`,
        attempt,
        retryInMs,
        messages: 0,
      });
    },
    cancelled: () => options.stop.aborted,
    now: () => performance.now(),
    signal: options.stop,
  });
  if (result.ok) return result.value;
  const error = result.error;
  if (error === null) throw new EtlError("stopped", `Stopped before the ${what} was ready`);
  if (attempts > 1 && error instanceof EtlError) {
    // The same error, only its message longer: a copy through its class's
    // constructor would assume every class takes (code, message, options).
    error.message =
      `${error.message} (gave up after ${attempts} attempts in ${options.maxRetrySeconds} s, --max-retry-seconds)`;
  }
  throw error;
}
