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

/** Whether a case is a step: deno reports "<test> > <step>" beside its test, in the same file. */
function stepFilter(cases: readonly TestTime[]): (c: TestTime) => boolean {
  const names = new Set(cases.map((c) => `${c.file}\u0000${c.name}`));
  return (c) => {
    let at = c.name.indexOf(" > ");
    while (at !== -1) {
      if (names.has(`${c.file}\u0000${c.name.slice(0, at)}`)) return true;
      at = c.name.indexOf(" > ", at + 3);
    }
    return false;
  };
}

/** The tests of a JUnit report deno wrote, steps left out, slowest first, each under the file that ran it. */
export function slowestTests(report: string, log = ""): TestTime[] {
  const cases = reportedCases(report, log);
  const isStep = stepFilter(cases);
  return cases.filter((c) => !isStep(c)).sort((a, b) => b.seconds - a.seconds);
}

/**
 * The failed tests of a report, in report order. A test whose steps failed is
 * left out for the steps that did: its own failure says only "N test steps
 * failed", the step's says what.
 */
export function failedTests(report: string, log = ""): TestTime[] {
  const cases = reportedCases(report, log);
  const isStep = stepFilter(cases);
  const failedSteps = new Set(
    cases.filter((c) => c.failure !== undefined && isStep(c)).map((c) =>
      `${c.file}\u0000${c.name}`
    ),
  );
  const hasFailedStep = (c: TestTime) =>
    [...failedSteps].some((step) => step.startsWith(`${c.file}\u0000${c.name} > `));
  return cases.filter((c) => c.failure !== undefined && !hasFailedStep(c));
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
  const slowest = slowestTests(report, log).slice(0, Number(count));
  if (slowest.length > 0) {
    const lines = slowest.map((t) =>
      `${t.seconds.toFixed(1).padStart(7)} s  ${t.file} => ${t.name}`
    );
    // deno-lint-ignore no-console
    console.log(`\nSlowest ${slowest.length} tests:\n${lines.join("\n")}\n`);
  }
  const failed = failedTests(report, log);
  if (failed.length > 0) {
    const lines = failed.flatMap((t) => [
      `  ${t.file} => ${t.name}`,
      ...failureHead(t.failure ?? "").map((line) => `      ${line}`),
    ]);
    // deno-lint-ignore no-console
    console.log(`Failed ${failed.length} tests:\n${lines.join("\n")}\n`);
  }
}
