// Prints the slowest tests of a `deno test --junit-path` report, so that
// `make test` ends by naming what bounds its wall time:
//   deno run --allow-read=REPORT,LOG scripts/slowest_tests.ts REPORT LOG [N]
// LOG is deno test's own output: the report files a test under the module
// that called Deno.test (tests/helpers/majors.ts for every eachMajor test),
// the output under the test file that ran it. Steps are left out (their time
// is inside their test's). The report is read with regular expressions: deno
// writes one element per line with a fixed attribute order, and an XML parser
// would be a dependency for that.

/** One test of the report: its file, name and seconds. */
export interface TestTime {
  readonly file: string;
  readonly name: string;
  readonly seconds: number;
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

/** The tests of a JUnit report deno wrote, steps left out, slowest first, each under the file that ran it. */
export function slowestTests(report: string, log = ""): TestTime[] {
  // deno-lint-ignore no-control-regex -- deno colours its output with ESC sequences
  const plain = log.replace(/\x1b\[[0-9;]*m/g, "");
  const cases: TestTime[] = [];
  for (const suite of report.split("<testsuite ").slice(1)) {
    const module = unescape(suite.match(/^name="([^"]*)"/)?.[1] ?? "");
    for (
      const m of suite.matchAll(/<testcase name="([^"]*)" classname="[^"]*" time="([0-9.]+)"/g)
    ) {
      const name = unescape(m[1] ?? "");
      const file = module.endsWith("_test.ts") ? module : fileInLog(plain, name) ?? module;
      cases.push({ name, file, seconds: Number(m[2]) });
    }
  }
  // A step is reported as "<test> > <step>" beside its test, in the same file.
  const names = new Set(cases.map((c) => `${c.file}\u0000${c.name}`));
  const isStep = (c: TestTime) => {
    let at = c.name.indexOf(" > ");
    while (at !== -1) {
      if (names.has(`${c.file}\u0000${c.name.slice(0, at)}`)) return true;
      at = c.name.indexOf(" > ", at + 3);
    }
    return false;
  };
  return cases.filter((c) => !isStep(c)).sort((a, b) => b.seconds - a.seconds);
}

if (import.meta.main) {
  const [path, logPath, count = "10"] = Deno.args;
  if (path === undefined || logPath === undefined) {
    // deno-lint-ignore no-console
    console.error("Usage: slowest_tests.ts JUNIT_REPORT TEST_OUTPUT [N]");
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
}
