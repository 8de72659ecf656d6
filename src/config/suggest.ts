/**
 * Did-you-mean for names a user typed: commands, flags and config-file keys.
 * The distance is `fastest-levenshtein`'s; this decides only what counts as
 * the same name spelt another way and what is close enough to suggest.
 *
 * @module
 */

import { distance } from "fastest-levenshtein";

/**
 * A name in the flags' spelling: no leading dashes, lower case, words joined
 * by `-`. `max_rows`, `maxRows`, `MAX_ROWS` and `--max-rows` all become
 * `max-rows`, so another convention's spelling of a flag is recognised as
 * that flag rather than as a typo.
 */
export function flagSpelling(name: string): string {
  return name
    .replace(/^-+/, "")
    .replace(/([a-z0-9])([A-Z])/g, "$1-$2")
    .toLowerCase()
    .replaceAll("_", "-");
}

/** The candidate that is `typed` in another spelling (`max_rows` for `max-rows`), or `null`. */
export function sameName(typed: string, candidates: readonly string[]): string | null {
  const spelt = flagSpelling(typed);
  return candidates.find((c) => flagSpelling(c) === spelt) ?? null;
}

/**
 * The most edits a typo may need to be worth suggesting. Levenshtein counts
 * a swap of two letters (`drian`, `rnu`), the commonest typo, as two edits,
 * so two are allowed from three characters on, and about two in five for
 * longer names; a one- or two-letter name gets one. `frobnicate` or
 * `bogus` is then close to nothing.
 */
function closeEnough(typed: string): number {
  return typed.length < 3 ? 1 : Math.max(2, Math.floor(typed.length * 0.4));
}

/**
 * The candidate `typed` most likely meant, or `null` when none is close:
 * first the same name in another spelling (`max_rows` for `max-rows`), then
 * the nearest by edit distance within `closeEnough`, the earlier candidate
 * on a tie.
 */
export function nearestName(typed: string, candidates: readonly string[]): string | null {
  const spelt = flagSpelling(typed);
  if (spelt === "") return null;
  const same = sameName(typed, candidates);
  if (same !== null) return same;
  let best: string | null = null;
  let bestDistance = closeEnough(spelt) + 1;
  for (const candidate of candidates) {
    const d = distance(spelt, flagSpelling(candidate));
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

/** Names in a sentence: `a`, `a and b`, `a, b and c`. */
export function listOf(names: readonly string[]): string {
  return names.length < 2
    ? names.join("")
    : `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;
}
