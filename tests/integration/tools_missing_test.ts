// The suite needs make and npm; psql and openssl only for the cases whose
// subject is theirs (tests/helpers/tools.ts): the DBA's psql path, and
// revocation lists made by a tool other than the library that reads them.
// On a machine without them those cases are skipped with one line each, and
// the rest of the same files still runs: checked by running migrate_test.ts
// (psql cases beside others) and crl_test.ts in a child `deno test` whose
// PATH holds every program of ours but those two.

import assert from "node:assert/strict";
import { childDenoTest } from "../helpers/common.ts";

/** A directory of links to every program on PATH but `programs`; removed by the caller. */
async function pathWithout(...programs: string[]): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "login-etl-path-" });
  for (const entry of (Deno.env.get("PATH") ?? "").split(":")) {
    if (entry === "") continue;
    let names: Deno.DirEntry[];
    try {
      names = await Array.fromAsync(Deno.readDir(entry));
    } catch {
      continue; // a PATH entry that does not exist
    }
    for (const { name } of names) {
      if (programs.includes(name)) continue;
      // The first directory on PATH wins, as a shell's lookup does.
      await Deno.symlink(`${entry}/${name}`, `${dir}/${name}`).catch((error) => {
        if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
      });
    }
  }
  return dir;
}

Deno.test("without psql and openssl on PATH their cases are skipped with one line each saying why, and the files' other cases run", async () => {
  const bin = await pathWithout("psql", "openssl");
  try {
    const out = await childDenoTest(
      ["tests/integration/migrate_test.ts", "tests/unit/db/crl_test.ts"],
      "/psql|migrates to the latest version|checkRevocation|CRL library/",
      { PATH: bin },
    );
    const stdout = out.stdout;
    assert.equal(out.code, 0, stdout + out.stderr);
    const lines = stdout.split("\n").filter((l) => /^Skipping the (psql|openssl) cases: /.test(l));
    assert.deepEqual(lines.sort(), [
      "Skipping the openssl cases: openssl is not on PATH (install it to run the cases that check revocation lists made by a tool other than the one login-etl reads them with)",
      "Skipping the psql cases: psql is not on PATH (the PostgreSQL client: install it to run the cases that apply sql/ files as a DBA does)",
    ]);
    // Two psql tests on three majors and crl_test's four, none run; the other
    // test ran on each major this machine has (a missing major's is ignored too).
    const summary = stdout.match(/ok \| (\d+) passed .*\| 0 failed \| (\d+) ignored/);
    assert.ok(summary, stdout);
    const [passed, ignored] = [Number(summary[1]), Number(summary[2])];
    assert.ok(passed >= 1, stdout);
    assert.equal(ignored, 2 * 3 + 4 + (3 - passed), stdout);
    assert.match(stdout, /sql\/schema.sql applied with psql .* \.\.\. ignored/);
  } finally {
    await Deno.remove(bin, { recursive: true });
  }
});
