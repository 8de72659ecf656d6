// scripts/slowest_tests.ts against a report deno test really wrote: parallel
// files, a test with a step, names XML must escape.

import assert from "node:assert/strict";

const SCRIPT = new URL("../../scripts/slowest_tests.ts", import.meta.url).pathname;

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

Deno.test("no report (deno test failed before running a test): slowest_tests.ts prints nothing and exits 0", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", SCRIPT, "/nonexistent/report.xml", "/nonexistent/output.txt"],
  }).output();
  assert.equal(out.code, 0);
  assert.equal(new TextDecoder().decode(out.stdout), "");
});
