// scripts/binary_smoke.sh is what CI runs against the compiled binary (its
// drain with a worker thread, check, report, the metrics file, against
// Postgres and local-aws-sqs). The binary cannot be compiled here, so the same
// script runs the CLI from source with exactly the binary's permissions:
// the script itself is proven before CI depends on it.

import assert from "node:assert/strict";
import { baseEnv, permissionFlags } from "../helpers/cli.ts";
import { DATABASE_URL } from "../helpers/services.ts";

const root = new URL("../../", import.meta.url).pathname;

Deno.test("scripts/binary_smoke.sh passes for login-etl run with the binary's permissions", async () => {
  const output = await new Deno.Command(`${root}scripts/binary_smoke.sh`, {
    args: [Deno.execPath(), "run", ...permissionFlags(), `${root}src/main.ts`],
    cwd: root,
    clearEnv: true,
    env: { ...baseEnv(), DATABASE_URL, DENO: Deno.execPath() },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(output.stdout);
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 0, stdout + stderr);
  assert.match(
    stdout,
    /^binary smoke: seeded 500, drained with a worker thread: \d+ rows, \d+ rejects; check, report and the metrics file agree$/m,
  );
});

Deno.test("scripts/binary_smoke.sh fails when the binary's drain fails", async () => {
  // A "binary" whose drain exits 1: the script must not report success.
  const dir = await Deno.makeTempDir();
  try {
    const fake = `${dir}/login-etl`;
    await Deno.writeTextFile(
      fake,
      `#!/usr/bin/env bash\nif [ "$1" = drain ]; then exit 1; fi\nexec ${Deno.execPath()} run ${
        permissionFlags().join(" ")
      } ${root}src/main.ts "$@"\n`,
    );
    await Deno.chmod(fake, 0o755);
    const output = await new Deno.Command(`${root}scripts/binary_smoke.sh`, {
      args: [fake],
      cwd: root,
      clearEnv: true,
      env: { ...baseEnv(), DATABASE_URL, DENO: Deno.execPath() },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(output.code, 1);
    assert.match(new TextDecoder().decode(output.stderr), /binary smoke: drain failed/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
