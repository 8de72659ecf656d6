/**
 * What the test path (make test's recipe, tests/, scripts/) must never do:
 * install packages, ask for root, or reconfigure a server. Read by
 * tests/repo/test_path_test.ts, which scans make test's recipe and the files.
 *
 * @module
 */

/** What the test path must not do, and why. */
const FORBIDDEN: readonly [RegExp, string][] = [
  [/\bapt-get\b|\bapt install\b/, "installs packages (the test path needs only make and npm)"],
  [/\bsudo\b|\bsu -c\b/, "asks for root"],
  [/\bALTER\s+SYSTEM\b/i, "reconfigures a server (start a cluster with settings instead)"],
];

/** The lines of `text` that break a rule, as `path:line: why`. */
export function violations(path: string, text: string): string[] {
  return text.split("\n").flatMap((line, i) =>
    FORBIDDEN.filter(([pattern]) => pattern.test(line)).map(([, why]) =>
      `${path}:${i + 1}: ${why}: ${line.trim()}`
    )
  );
}
