// Prints what `make test` should end with, from a `deno test --junit-path`
// report: the slowest tests (what bounds the wall time), then every failed
// test with the first lines of its failure. Failures come last because a CI
// log is often read from its tail, and deno prints its own list of failures
// far above it, before its summary:
//   deno run --allow-read=REPORT,LOG scripts/test_summary.ts REPORT LOG [N]
// LOG is deno test's own output: the report files a test under the module
// that called Deno.test (tests/helpers/majors.ts for every eachMajor test),
// the output under the test file that ran it. Steps are left out (their time
// is inside their test's). The report is read with regular expressions: deno
// writes one element per line with a fixed attribute order, and an XML parser
// would be a dependency for that.

/** One test of the report: its file, name and seconds, and its failure's text if it failed. */
export interface TestTime {
  readonly file: string;
  readonly name: string;
  readonly seconds: number;
  readonly failure?: string;
}

const ENTITIES: Record<string, string> = {
  "&lt;": "<",
  "&gt;": ">",
  "&quot;": '"',
  "&apos;": "'",
  "&amp;": "&",
};

function unescape(text: string): string {
  return text.replace(/&(lt|gt|quot|apos|amp);/g, (entity) => ENTITIES[entity] ?? entity);
}

/** The test file that ran `name`, from deno test's output with --parallel ("FILE => NAME ... ok"). */
function fileInLog(plain: string, name: string): string | undefined {
  for (const outcome of [" ... ok (", " ... FAILED (", " ... ignored ("]) {
    const at = plain.indexOf(` => ${name}${outcome}`);
    if (at === -1) continue;
    const start = plain.lastIndexOf("\n", at) + 1;
    return plain.slice(start, at);
  }
  return undefined;
}

/** Every test and step of a JUnit report deno wrote, each under the file that ran it, in report order. */
function reportedCases(report: string, log: string): TestTime[] {
  // deno-lint-ignore no-control-regex -- deno colours its output with ESC sequences
  const plain = log.replace(/\x1b\[[0-9;]*m/g, "");
  const cases: TestTime[] = [];
  for (const suite of report.split("<testsuite ").slice(1)) {
    const module = unescape(suite.match(/^name="([^"]*)"/)?.[1] ?? "");
    for (const element of suite.split("<testcase ").slice(1)) {
      const m = element.match(/^name="([^"]*)" classname="[^"]*" time="([0-9.]+)"/);
      if (m === null) continue;
      const name = unescape(m[1] ?? "");
      const file = module.endsWith("_test.ts") ? module : fileInLog(plain, name) ?? module;
      const failed = element.match(/<failure message="[^"]*">([\s\S]*?)<\/failure>/);
      cases.push({
        name,
        file,
        seconds: Number(m[2]),
        ...(failed === null ? {} : { failure: unescape(failed[1] ?? "") }),
      });
    }
  }
  return cases;
}

/** Where " > " ends a test's name inside a step's ("<test> > <step>", steps nest). */
function parentNames(name: string): string[] {
  const parents: string[] = [];
  for (let at = name.indexOf(" > "); at !== -1; at = name.indexOf(" > ", at + 3)) {
    parents.push(name.slice(0, at));
  }
  return parents;
}

/**
 * What `make test` ends with, from one reading of a JUnit report deno wrote:
 * the tests slowest first, steps left out (their time is inside their
 * test's), and the failed tests and steps in report order, a test whose
 * steps failed left out for them (its own failure says only "N test steps
 * failed", the step's says what). Each case is under the file that ran it.
 */
export function summarize(
  report: string,
  log = "",
): { readonly slowest: TestTime[]; readonly failed: TestTime[] } {
  const cases = reportedCases(report, log);
  const key = (file: string, name: string) => `${file}\u0000${name}`;
  const names = new Set(cases.map((c) => key(c.file, c.name)));
  // A step is reported as "<test> > <step>" beside its test, in the same file.
  const isStep = (c: TestTime) => parentNames(c.name).some((p) => names.has(key(c.file, p)));
  const failedParents = new Set(
    cases.filter((c) => c.failure !== undefined && isStep(c))
      .flatMap((c) => parentNames(c.name).map((p) => key(c.file, p))),
  );
  return {
    slowest: cases.filter((c) => !isStep(c)).sort((a, b) => b.seconds - a.seconds),
    failed: cases.filter((c) => c.failure !== undefined && !failedParents.has(key(c.file, c.name))),
  };
}

/** A failure's first lines, each cut to a terminal's width: enough to know what broke. */
export function failureHead(failure: string, lines = 6, width = 160): string[] {
  return failure.split("\n").filter((line) => line.trim() !== "").slice(0, lines).map((line) =>
    line.length > width ? `${line.slice(0, width - 1)}\u2026` : line
  );
}

if (import.meta.main) {
  const [path, logPath, count = "10"] = Deno.args;
  if (path === undefined || logPath === undefined) {
    // deno-lint-ignore no-console
    console.error("Usage: test_summary.ts JUNIT_REPORT TEST_OUTPUT [N]");
    Deno.exit(2);
  }
  let report: string;
  try {
    report = Deno.readTextFileSync(path);
  } catch {
    // deno test writes no report when it fails before running a test.
    Deno.exit(0);
  }
  let log = "";
  try {
    log = Deno.readTextFileSync(logPath);
  } catch {
    // Without the output, tests registered by helpers are named by the helper.
  }
  const summary = summarize(report, log);
  const slowest = summary.slowest.slice(0, Number(count));
  if (slowest.length > 0) {
    const lines = slowest.map((t) =>
      `${t.seconds.toFixed(1).padStart(7)} s  ${t.file} => ${t.name}`
    );
    // deno-lint-ignore no-console
    console.log(`\nSlowest ${slowest.length} tests:\n${lines.join("\n")}\n`);
  }
  const failed = summary.failed;
  if (failed.length > 0) {
    const lines = failed.flatMap((t) => [
      `  ${t.file} => ${t.name}`,
      ...failureHead(t.failure ?? "").map((line) => `      ${line}`),
    ]);
    // deno-lint-ignore no-console
    console.log(`Failed ${failed.length} tests:\n${lines.join("\n")}\n`);
  }
}
