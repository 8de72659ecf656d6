// Prints the slowest tests of a `deno test --junit-path` report, so that
// `make test` ends by naming what bounds its wall time:
//   deno run --allow-read=REPORT scripts/slowest_tests.ts REPORT [N]
// Steps are left out (their time is inside their test's). The report is read
// with a regular expression: deno writes one <testcase> element per line with
// a fixed attribute order, and an XML parser would be a dependency for that.

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

/** The tests of a JUnit report deno wrote, steps left out, slowest first. */
export function slowestTests(report: string): TestTime[] {
  const cases: TestTime[] = [];
  for (
    const m of report.matchAll(/<testcase name="([^"]*)" classname="([^"]*)" time="([0-9.]+)"/g)
  ) {
    cases.push({ name: unescape(m[1] ?? ""), file: unescape(m[2] ?? ""), seconds: Number(m[3]) });
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
  const [path, count = "10"] = Deno.args;
  if (path === undefined) {
    // deno-lint-ignore no-console
    console.error("Usage: slowest_tests.ts JUNIT_REPORT [N]");
    Deno.exit(2);
  }
  let report: string;
  try {
    report = Deno.readTextFileSync(path);
  } catch {
    // deno test writes no report when it fails before running a test.
    Deno.exit(0);
  }
  const slowest = slowestTests(report).slice(0, Number(count));
  if (slowest.length > 0) {
    const lines = slowest.map((t) =>
      `${t.seconds.toFixed(1).padStart(7)} s  ${t.file} => ${t.name}`
    );
    // deno-lint-ignore no-console
    console.log(`\nSlowest ${slowest.length} tests:\n${lines.join("\n")}\n`);
  }
}
