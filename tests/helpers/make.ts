// Running `make` as a user does, in this checkout or in a fresh clone of its
// committed state, and reading the lines the Makefile writes for a failed
// target (tests/cli/build_test.ts, build_errors_test.ts).

import assert from "node:assert/strict";

/** This checkout. */
export const root = new URL("../../", import.meta.url).pathname;
const decoder = new TextDecoder();

/** A finished `make` run. */
export interface MakeResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `make -s <args>` in `cwd` with this Deno, with `env` (alone when `clearEnv`). */
export async function make(
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
export function ours(stderr: string, target: string): string[] {
  return stderr.split("\n").filter((l) => l.startsWith(`make ${target}:`));
}

/** Asserts stderr holds no stack trace or crash dump. */
export function assertNoCrashOutput(stderr: string): void {
  assert.doesNotMatch(stderr, /\n\s+at |0x[0-9a-f]{8,}/, "no stack trace or crash dump on stderr");
}

/** A clone of this repository's committed state, as a new user gets it. */
export async function cloneRepo(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "login-etl-clone-" });
  const output = await new Deno.Command("git", {
    args: ["clone", "--quiet", root, dir],
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.equal(output.code, 0, decoder.decode(output.stderr));
  return dir;
}

/** True when `path` exists. */
export function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}
