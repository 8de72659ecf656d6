// `make build` in its two steps, type check then compile, each failure named
// by its step: a type error anywhere in the binary's code (the worker too)
// stops it at the type check; a DENORT_BIN that points at nothing is named;
// any other compile error says it is not the download. The compiler's own
// output stays in dist/*.log. The fresh clone with an empty Deno cache is
// build_test.ts's.

import assert from "node:assert/strict";
import { assertNoCrashOutput, cloneRepo, exists, make, ours, root } from "../helpers/make.ts";

Deno.test("make build stops at the type check for a type error in the worker, and compiles nothing", async () => {
  // The worker is not imported by main.ts (the binary starts it with
  // --include): only a check of both entry points finds this.
  const clone = await cloneRepo();
  try {
    await Deno.writeTextFile(
      `${clone}/src/sink/worker.ts`,
      '\nexport const notANumber: number = "a";\n',
      { append: true },
    );
    const run = await make(clone, ["build"], { DENORT_BIN: "/nonexistent/denort" });
    assert.notEqual(run.code, 0);
    const lines = ours(run.stderr, "build");
    assert.equal(lines.length, 1, run.stderr);
    assert.match(
      lines[0] ?? "",
      /^make build: type check failed: type errors in .*details in dist\/check\.log$/,
    );
    assert.match(Deno.readTextFileSync(`${clone}/dist/check.log`), /TS2322/);
    assert.ok(!exists(`${clone}/dist/compile.log`), "deno compile did not run");
    assertNoCrashOutput(run.stderr);
  } finally {
    await Deno.remove(clone, { recursive: true });
  }
});

Deno.test("make build names DENORT_BIN when it points at nothing, not the download", async () => {
  const run = await make(root, ["build"], { DENORT_BIN: "/nonexistent/denort" });
  assert.notEqual(run.code, 0);
  const lines = ours(run.stderr, "build");
  assert.equal(lines.length, 1, run.stderr);
  assert.match(
    lines[0] ?? "",
    /^make build: runtime base not found: DENORT_BIN=\/nonexistent\/denort is not a file; point it at a denort 2\.\d+\.\d+ binary, or unset it to download one; details in dist\/compile\.log$/,
  );
  assert.deepEqual(
    [...Deno.readDirSync(`${root}dist`)].filter((e) => e.name.includes(".tmp-")),
    [],
  );
  assertNoCrashOutput(run.stderr);
});

Deno.test("make build says a compile error after the type check is not the runtime download", async () => {
  // An empty host in ALLOW_NET: deno compile refuses the flag.
  const run = await make(root, ["build", "ALLOW_NET=,"], { DENORT_BIN: "/nonexistent/denort" });
  assert.notEqual(run.code, 0);
  const lines = ours(run.stderr, "build");
  assert.equal(lines.length, 1, run.stderr);
  assert.match(
    lines[0] ?? "",
    /^make build: deno compile failed after the type check passed \(not the runtime download\); details in dist\/compile\.log$/,
  );
  assert.match(Deno.readTextFileSync(`${root}dist/compile.log`), /invalid empty host/);
});

Deno.test("make build-all type-checks once, then names the target whose runtime base is missing", async () => {
  const run = await make(root, ["build-all"], { DENORT_BIN: "/nonexistent/denort" });
  assert.notEqual(run.code, 0);
  assert.match(run.stdout, /^Type-checked src\/main\.ts src\/sink\/worker\.ts$/m);
  const lines = ours(run.stderr, "build-all");
  assert.equal(lines.length, 1, run.stderr);
  assert.match(
    lines[0] ?? "",
    /^make build-all: runtime base not found for x86_64-unknown-linux-gnu: DENORT_BIN=.*details in dist\/compile-x86_64-unknown-linux-gnu\.log$/,
  );
  assertNoCrashOutput(run.stderr);
});
