// The binary's permission flags (the `etl` task of deno.json, which `make
// build` compiles with and the CLI tests run with): narrow lists, and wide
// enough for every variable configuration and the libraries read. The CLI,
// reliability and hostile-input tests prove the rest by running every command
// under exactly these flags.

import assert from "node:assert/strict";
import { envNames } from "../../src/config/resolve.ts";
import { permissionFlags } from "../helpers/cli.ts";

function listOf(flag: string): string[] | null {
  const found = permissionFlags().find((f) => f === flag || f.startsWith(`${flag}=`));
  assert.ok(found !== undefined, `${flag} is set`);
  return found === flag ? null : found.slice(flag.length + 1).split(",");
}

/** Whether Deno's `--allow-env` list admits `name` (entries may end in a `*` wildcard). */
function allows(list: readonly string[], name: string): boolean {
  return list.some((entry) =>
    entry.endsWith("*") ? name.startsWith(entry.slice(0, -1)) : entry === name
  );
}

Deno.test("the etl task lists its variables and system calls, and never prompts", () => {
  const env = listOf("--allow-env");
  assert.ok(env !== null && env.length > 0, "--allow-env has a list");
  assert.deepEqual(
    [...(listOf("--allow-sys") ?? ["(all)"])].sort(),
    ["gid", "homedir", "networkInterfaces", "osRelease", "uid"],
  );
  assert.ok(permissionFlags().includes("--no-prompt"), "--no-prompt: like the binary, never ask");
  assert.ok(!permissionFlags().some((f) => f.startsWith("--ignore-env")), "a denied read fails");
});

Deno.test("the etl task allows every variable configuration reads (envNames())", () => {
  const env = listOf("--allow-env") ?? [];
  for (const name of envNames()) assert.ok(allows(env, name), `${name} is not in --allow-env`);
});

Deno.test("the etl task allows the variables the libraries were seen to read", async (t) => {
  // Seen with DENO_AUDIT_PERMISSIONS over seed, drain, run, recover and demo.
  const cases = [
    { library: "AWS SDK", names: ["AWS_PROFILE", "AWS_EXECUTION_ENV", "_X_AMZN_TRACE_ID"] },
    { library: "AWS SDK home dir", names: ["HOME", "USERPROFILE", "HOMEDRIVE", "HOMEPATH"] },
    { library: "postgres.js", names: ["PGHOST", "PGUSER", "PGPASSWORD", "PGAPPNAME"] },
    { library: "postgres.js and --actor", names: ["USER", "USERNAME", "LOGNAME"] },
    { library: "fauxqs (demo)", names: ["FAUXQS_INIT", "FAUXQS_LOGGER"] },
    { library: "OpenTelemetry", names: ["OTEL_DENO", "OTEL_EXPORTER_OTLP_ENDPOINT"] },
  ];
  const env = listOf("--allow-env") ?? [];
  for (const c of cases) {
    await t.step(c.library, () => {
      for (const name of c.names) assert.ok(allows(env, name), `${name} is not in --allow-env`);
    });
  }
  await t.step("but not the rest of the environment", () => {
    for (const name of ["PATH", "SSH_AUTH_SOCK", "GITHUB_TOKEN", "DENO_AUTH_TOKENS"]) {
      assert.ok(!allows(env, name), `${name} is allowed`);
    }
  });
});

Deno.test("the binary may write, and src/ writes only drain's --metrics-file and keygen's key sets", async () => {
  assert.ok(
    permissionFlags().includes("--allow-write"),
    "--allow-write, narrowed by make build ALLOW_WRITE=",
  );
  const writers: string[] = [];
  const calls =
    /\bDeno\.(writeTextFile|writeFile|rename|remove|mkdir|open|create|truncate|copyFile|symlink|link|chmod|chown|makeTemp\w*)(Sync)?\(/g;
  for await (const path of walk(new URL("../../src/", import.meta.url))) {
    const text = await Deno.readTextFile(path);
    for (const match of text.matchAll(calls)) {
      writers.push(`${path.replace(/.*\/src\//, "src/")} ${match[1]}`);
    }
  }
  assert.deepEqual(writers.sort(), [
    "src/commands/_setup.ts remove",
    "src/commands/_setup.ts rename",
    "src/commands/_setup.ts writeTextFile",
    "src/pii/keygen.ts chmod",
    "src/pii/keygen.ts mkdir",
    "src/pii/keygen.ts remove",
    "src/pii/keygen.ts writeTextFile",
  ]);
});

async function* walk(dir: URL): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(dir)) {
    const url = new URL(entry.name + (entry.isDirectory ? "/" : ""), dir);
    if (entry.isDirectory) yield* walk(url);
    else if (entry.name.endsWith(".ts")) yield url.pathname;
  }
}
