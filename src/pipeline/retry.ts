/**
 * Capped exponential backoff with half jitter, and an abortable sleep. The
 * delay function is pure given its random source, so tests can pin it.
 *
 * @module
 */

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
