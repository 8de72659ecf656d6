// The binary's permission flags (the `etl` task of deno.json, which `make
// build` compiles with and the CLI tests run with): narrow lists, and wide
// enough for every variable configuration and the libraries read. The CLI,
// reliability and hostile-input tests prove the rest by running every command
// under exactly these flags.

import assert from "node:assert/strict";
import { envNames } from "../../src/config/env.ts";
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

/**
 * Every system-information descriptor Deno 2.9 has: those its --allow-sys
 * takes by name, and "ca" (the CA certificates node:tls reads when
 * NODE_EXTRA_CA_CERTS is set), which it checks but does not take by name.
 */
const SYS_DESCRIPTORS = [
  "hostname",
  "osRelease",
  "osUptime",
  "loadavg",
  "networkInterfaces",
  "systemMemoryInfo",
  "uid",
  "gid",
  "cpus",
  "homedir",
  "getegid",
  "username",
  "statfs",
  "getPriority",
  "setPriority",
  "userInfo",
  "ca",
];

/** What the binary needs: the AWS SDK, the key file check, the demo's emulator, node:tls. */
const SYS_NEEDED = ["ca", "gid", "homedir", "networkInterfaces", "osRelease", "uid"];

/** Runs a small program under exactly the etl task's permission flags; its stdout. */
async function underEtlFlags(program: string): Promise<string> {
  const path = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(path, program);
    const flags = permissionFlags().filter((f) => !f.startsWith("--v8-flags"));
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", ...flags, path],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    return new TextDecoder().decode(out.stdout);
  } finally {
    await Deno.remove(path);
  }
}

Deno.test("the etl task lists its variables and system calls, and never prompts", () => {
  const env = listOf("--allow-env");
  assert.ok(env !== null && env.length > 0, "--allow-env has a list");
  // --allow-sys whole, less every descriptor but the needed ones: the only
  // way to grant "ca" while Deno refuses it in an --allow-sys list.
  assert.equal(listOf("--allow-sys"), null);
  const denied = listOf("--deny-sys") ?? [];
  assert.deepEqual(SYS_DESCRIPTORS.filter((d) => !denied.includes(d)).sort(), SYS_NEEDED);
  assert.ok(permissionFlags().includes("--no-prompt"), "--no-prompt: like the binary, never ask");
  assert.ok(!permissionFlags().some((f) => f.startsWith("--ignore-env")), "a denied read fails");
});

Deno.test("under the etl task's flags Deno grants exactly the system calls the binary needs", async () => {
  const states = JSON.parse(
    await underEtlFlags(`
      const kinds = ${JSON.stringify(SYS_DESCRIPTORS)};
      console.log(JSON.stringify(Object.fromEntries(kinds.map((kind) => [
        kind,
        Deno.permissions.querySync({ name: "sys", kind } as Deno.SysPermissionDescriptor).state,
      ]))));
    `),
  ) as Record<string, string>;
  const granted = Object.keys(states).filter((k) => states[k] === "granted").sort();
  assert.deepEqual(granted, SYS_NEEDED);
});

Deno.test('Deno still refuses sys "ca" in an --allow-sys list (else list --allow-sys again)', async () => {
  // When this fails, Deno takes "ca" by name: replace --allow-sys and
  // --deny-sys in the etl task with --allow-sys=${SYS_NEEDED.join(",")}.
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-sys=ca", "data:application/javascript,0"],
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.match(new TextDecoder().decode(out.stderr), /unknown sys descriptor: 'ca'/);
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
    { library: "Deno's node:tls, NODE_EXTRA_CA_CERTS set", names: ["NODE_USE_SYSTEM_CA"] },
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
    "src/ops/metrics_file.ts remove",
    "src/ops/metrics_file.ts rename",
    "src/ops/metrics_file.ts writeTextFile",
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
