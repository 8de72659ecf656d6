// scripts/test_summary.ts against reports deno test really wrote: parallel
// files, a test with a step, names XML must escape, failed tests and steps.

import assert from "node:assert/strict";

const SCRIPT = new URL("../../scripts/test_summary.ts", import.meta.url).pathname;

Deno.test("the slowest tests of a real deno test --junit-path report: slowest first, steps left out, names unescaped, N honoured", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/a_test.ts`,
      `Deno.test("slow & <one>", async (t) => {
  await t.step("inner", () => new Promise((r) => setTimeout(r, 1500)));
});
Deno.test("quick", () => {});
`,
    );
    await Deno.writeTextFile(
      `${dir}/b_test.ts`,
      `Deno.test("middle", () => new Promise((r) => setTimeout(r, 200)));\n`,
    );
    // As eachMajor.test does: the test is registered by a helper module.
    await Deno.writeTextFile(
      `${dir}/helper.ts`,
      `export const each = (name: string) => Deno.test(name, () => new Promise((r) => setTimeout(r, 600)));\n`,
    );
    await Deno.writeTextFile(
      `${dir}/c_test.ts`,
      `import { each } from "./helper.ts";\neach("via a helper");\n`,
    );
    const report = `${dir}/report.xml`;
    const log = `${dir}/output.txt`;
    const run = await new Deno.Command(Deno.execPath(), {
      args: ["test", "--parallel", `--junit-path=${report}`, dir],
      cwd: dir,
      env: { DENO_JOBS: "2" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    // As make test keeps it: stdout and stderr in one file, colours and all.
    await Deno.writeFile(log, new Uint8Array([...run.stdout, ...run.stderr]));
    assert.equal(run.code, 0);
    const print = async (n: string) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", `--allow-read=${report},${log}`, SCRIPT, report, log, n],
        env: { NO_COLOR: "1" },
      }).output();
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      return new TextDecoder().decode(out.stdout).trim().split("\n");
    };
    const lines = await print("10");
    assert.equal(lines[0], "Slowest 4 tests:", "four tests; the step is not a fifth");
    const seconds = (line: string | undefined, test: string) => {
      const m = line?.match(/^ +(\d+\.\d) s {2}(\S+ => .*)$/);
      assert.equal(m?.[2], test, line);
      return Number(m?.[1]);
    };
    assert.ok(seconds(lines[1], "./a_test.ts => slow & <one>") >= 1.5);
    assert.ok(seconds(lines[2], "./c_test.ts => via a helper") >= 0.6, "named by its test file");
    assert.ok(seconds(lines[3], "./b_test.ts => middle") >= 0.2);
    assert.ok(seconds(lines[4], "./a_test.ts => quick") < 1);
    assert.deepEqual((await print("1")).slice(0, 2), [
      "Slowest 1 tests:",
      lines[1],
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("no report (deno test failed before running a test): test_summary.ts prints nothing and exits 0", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", SCRIPT, "/nonexistent/report.xml", "/nonexistent/output.txt"],
  }).output();
  assert.equal(out.code, 0);
  assert.equal(new TextDecoder().decode(out.stdout), "");
});

Deno.test("failed tests are listed last, each with its failure's first lines: a failed step stands for its test", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/a_test.ts`,
      `Deno.test("passes", () => {});
Deno.test("throws <x>", () => { throw new Error("first line\\n" + "${"y".repeat(300)}"); });
Deno.test("has steps", async (t) => {
  await t.step("fine", () => {});
  await t.step("broken", () => { throw new Error("the step's reason"); });
});
`,
    );
    const report = `${dir}/report.xml`;
    const log = `${dir}/output.txt`;
    const run = await new Deno.Command(Deno.execPath(), {
      args: ["test", `--junit-path=${report}`, dir],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).output();
    await Deno.writeFile(log, new Uint8Array([...run.stdout, ...run.stderr]));
    assert.equal(run.code, 1, "two tests failed");
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", `--allow-read=${report},${log}`, SCRIPT, report, log, "10"],
      env: { NO_COLOR: "1" },
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const text = new TextDecoder().decode(out.stdout).trim();
    const failed = text.slice(text.indexOf("Failed "));
    const lines = failed.split("\n");
    assert.equal(lines[0], "Failed 2 tests:", text);
    assert.equal(lines[1], "  ./a_test.ts => throws <x>");
    assert.match(lines[2] ?? "", /^ {6}Error: first line$/);
    const long = lines[3] ?? "";
    assert.ok(long.startsWith("      yyy") && long.endsWith("\u2026"), long);
    assert.equal(long.length, 6 + 160, "cut to 160 characters");
    assert.ok(
      failed.includes("  ./a_test.ts => has steps > broken\n      Error: the step's reason"),
      failed,
    );
    assert.ok(!failed.includes("=> has steps\n"), "the test itself stands behind its failed step");
    assert.ok(!failed.includes("passes") && !failed.includes("> fine"), failed);
    assert.ok(text.indexOf("Slowest ") < text.indexOf("Failed "), "failures come last");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
