/**
 * What `check`'s probes return: one line each, ok, failed or skipped, and
 * how long a service may take to answer.
 *
 * @module
 */

/** How long one service may take to answer a check. */
export const SERVICE_TIMEOUT_MS = 5000;

/** One line of the preflight. */
export interface CheckResult {
  readonly check: string;
  readonly status: "ok" | "fail" | "skip";
  readonly detail: string;
}

export const ok = (check: string, detail: string): CheckResult => ({ check, status: "ok", detail });
export const fail = (check: string, detail: string): CheckResult => ({
  check,
  status: "fail",
  detail,
});
export const skip = (check: string, detail: string): CheckResult => ({
  check,
  status: "skip",
  detail,
});
