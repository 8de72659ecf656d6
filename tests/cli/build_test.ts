// `make build` in its two steps, type check then compile, each failure named
// by its step: on a fresh clone with an empty Deno cache it gets past the type
// check and stops only at the runtime download (denort), which this machine
// cannot make; a type error anywhere in the binary's code (the worker too)
// stops it at the type check; any other compile error says it is not the
// download. The compiler's own output stays in dist/*.log.

import assert from "node:assert/strict";

const root = new URL("../../", import.meta.url).pathname;
const decoder = new TextDecoder();

interface MakeResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

async function make(
  cwd: string,
  args: readonly string[],
  env: Record<string, string>,
  clearEnv = false,
): Promise<MakeResult> {
  const output = await new Deno.Command("make", {
    args: ["-s", ...args, `DENO=${Deno.execPath()}`],
    cwd,
    env,
    clearEnv,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** The lines the Makefile itself writes for a failed target. */
function ours(stderr: string, target: string): string[] {
  return stderr.split("\n").filter((l) => l.startsWith(`make ${target}:`));
}

function assertNoCrashOutput(stderr: string): void {
  assert.doesNotMatch(stderr, /\n\s+at |0x[0-9a-f]{8,}/, "no stack trace or crash dump on stderr");
}

/** A clone of this repository's committed state, as a new user gets it. */
async function cloneRepo(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "login-etl-clone-" });
  const output = await new Deno.Command("git", {
    args: ["clone", "--quiet", root, dir],
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.equal(output.code, 0, decoder.decode(output.stderr));
  return dir;
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

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
