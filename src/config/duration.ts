/**
 * Durations as a person writes them on a command line: `90s`, `40m`,
 * `1h30m`, or whole seconds. Pure.
 *
 * Hand-written rather than `ms` or `parse-duration`: those accept far more
 * (fractions, words, spaces, signs) and read a plain number as milliseconds;
 * `parse-duration` even reads `1h30mx` as one hour. A bound that silently
 * differs from what was typed is worse than an error, and the grammar here is
 * one regular expression.
 *
 * @module
 */

/** Hours, minutes and seconds in that order, each at most once, or whole seconds. */
const DURATION = /^(?:(\d{1,7})h)?(?:(\d{1,9})m)?(?:(\d{1,10})s)?$/;

/** What a duration may look like, for messages: the forms `parseDuration` accepts. */
export const DURATION_FORMS = "a duration like 90s, 40m or 1h30m (or whole seconds)";

/**
 * Reads a duration in whole seconds.
 *
 * @returns the seconds, or `null` when `text` is not a duration (empty,
 *   signed, fractional, an unknown unit, units out of order or trailing text)
 */
export function parseDuration(text: string): number | null {
  const trimmed = text.trim();
  if (/^\d{1,12}$/.test(trimmed)) return Number(trimmed);
  const match = DURATION.exec(trimmed);
  if (match === null || trimmed === "") return null;
  const [, h = "0", m = "0", s = "0"] = match;
  return Number(h) * 3600 + Number(m) * 60 + Number(s);
}

/** Writes whole seconds the way `parseDuration` reads them back, e.g. `1h30m`, `90s` → `1m30s`. */
export function formatDuration(seconds: number): string {
  if (seconds === 0) return "0s";
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return `${h > 0 ? `${h}h` : ""}${m > 0 ? `${m}m` : ""}${s > 0 ? `${s}s` : ""}`;
}
