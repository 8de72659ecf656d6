// psql is the one program the suite needs beyond make and npm (no npm build
// of PostgreSQL carries it). On a machine without it the cases whose subject
// is the DBA's psql path are skipped with one line saying why, and the rest
// of the same file still runs: checked by running migrate_test.ts, which has
// both, in a child `deno test` whose PATH holds every program of ours except
// psql.

import assert from "node:assert/strict";

const root = new URL("../../", import.meta.url).pathname;

/** A directory of links to every program on PATH but psql; removed by the caller. */
async function pathWithout(program: string): Promise<string> {
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
      if (name === program) continue;
      // The first directory on PATH wins, as a shell's lookup does.
      await Deno.symlink(`${entry}/${name}`, `${dir}/${name}`).catch((error) => {
        if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
      });
    }
  }
  return dir;
}

Deno.test("without psql on PATH the psql cases are skipped with one line saying why, and the file's other cases run", async () => {
  const bin = await pathWithout("psql");
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "test",
        "--allow-all",
        "--no-check",
        "--filter",
        "/psql|migrates to the latest version/",
        `${root}tests/integration/migrate_test.ts`,
      ],
      env: { ...Deno.env.toObject(), PATH: bin, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, stdout + new TextDecoder().decode(out.stderr));
    const lines = stdout.split("\n").filter((l) => l.startsWith("Skipping the psql cases: "));
    assert.deepEqual(lines, [
      "Skipping the psql cases: psql is not on PATH (the PostgreSQL client: install it to run the cases that apply sql/ files as a DBA does)",
    ]);
    // Two psql tests on three majors, none run; the other test ran on each
    // major this machine has (a missing major's case is ignored too).
    const summary = stdout.match(/ok \| (\d+) passed .*\| 0 failed \| (\d+) ignored/);
    assert.ok(summary, stdout);
    const [passed, ignored] = [Number(summary[1]), Number(summary[2])];
    assert.ok(passed >= 1, stdout);
    assert.equal(ignored, 2 * 3 + (3 - passed), stdout);
    assert.match(stdout, /sql\/schema.sql applied with psql .* \.\.\. ignored/);
  } finally {
    await Deno.remove(bin, { recursive: true });
  }
});
