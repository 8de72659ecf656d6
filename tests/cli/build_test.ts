// `make build` on a fresh clone with an empty Deno cache, as a new user runs
// it: it fetches every npm package, gets past the type check and stops only at
// the runtime download (denort), which this machine cannot make. Most of its
// time is the fetch. How each failing step is named is build_errors_test.ts's.

import assert from "node:assert/strict";
import { assertNoCrashOutput, cloneRepo, exists, make, ours } from "../helpers/make.ts";

Deno.test("make build on a fresh clone with an empty DENO_DIR gets past the type check and stops only at the runtime download", async () => {
  const clone = await cloneRepo();
  // Nothing from the shared cache: every npm package is fetched again, as on
  // a new user's machine.
  const denoDir = await Deno.makeTempDir({ prefix: "login-etl-deno-dir-" });
  try {
    // This environment as it is (registry settings, CA bundles), but without
    // DENORT_BIN: the compile tries the real runtime download.
    const env = Object.fromEntries(
      Object.entries(Deno.env.toObject()).filter(([name]) => name !== "DENORT_BIN"),
    );
    const run = await make(clone, ["build"], { ...env, DENO_DIR: denoDir }, true);
    const all = run.stdout + run.stderr;
    assert.match(run.stdout, /^Type-checked src\/main\.ts src\/sink\/worker\.ts$/m, all);
    assert.ok(exists(`${denoDir}/npm`), "the npm packages were fetched into the empty DENO_DIR");
    const log = Deno.readTextFileSync(`${clone}/dist/compile.log`);
    assert.doesNotMatch(log, /out of memory/i);
    if (exists(`${clone}/dist/login-etl`)) {
      // A machine that can download denort builds the binary.
      assert.equal(run.code, 0, all);
      assert.match(run.stdout, /^Built dist\/login-etl$/m);
    } else {
      assert.notEqual(run.code, 0);
      assert.deepEqual(ours(run.stderr, "build").length, 1, run.stderr);
      assert.match(
        ours(run.stderr, "build")[0] ?? "",
        /^make build: runtime download failed: .*denort 2\.\d+\.\d+.*DENORT_BIN.*details in dist\/compile\.log$/,
      );
      assert.match(log, /denort/);
      assertNoCrashOutput(run.stderr);
    }
  } finally {
    await Deno.remove(clone, { recursive: true });
    await Deno.remove(denoDir, { recursive: true });
  }
});
