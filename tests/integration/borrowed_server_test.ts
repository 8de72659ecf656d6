// A person's own server, named with DATABASE_URL: the suite runs its bulk
// there and changes nothing in it. A cluster started here plays that server
// (TLS off, a password of its own); test files that once reconfigured the
// shared server (turning TLS on, the postgres role's password) run
// against it in a child `deno test`, and afterwards its postgresql.auto.conf,
// its ssl setting and every role's password are exactly as before. make test
// with DATABASE_URL set starts no PostgreSQL 15 cluster of its own, and a
// login that is not a superuser is refused once, in one line.

import assert from "node:assert/strict";
import postgres from "postgres";
import { startCluster } from "../helpers/cluster.ts";
import { childDenoTest } from "../helpers/common.ts";

const root = new URL("../../", import.meta.url).pathname;
const decoder = new TextDecoder();

/** Files that touch what a server's owner cares about: TLS, logins, roles. */
const FILES = [
  "tests/integration/postgres_settings_test.ts",
  "tests/integration/permissions_test.ts",
];

/** What a person would not want the suite to change in their server. */
async function fingerprint(url: string, dataDir: string) {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const [ssl] = await sql<{ ssl: string }[]>`SHOW ssl`;
    const roles = await sql<{ rolname: string; rolpassword: string | null }[]>`
      SELECT rolname, rolpassword FROM pg_authid ORDER BY rolname`;
    const changed = await sql<{ name: string; setting: string }[]>`
      SELECT name, setting FROM pg_settings
      WHERE source NOT IN ('default', 'override', 'client', 'session') ORDER BY name`;
    return {
      autoConf: await Deno.readTextFile(`${dataDir}/postgresql.auto.conf`),
      ssl: ssl?.ssl,
      roles: roles.map((r) => `${r.rolname}:${r.rolpassword ?? ""}`),
      settings: changed.map((s) => `${s.name}=${s.setting}`),
    };
  } finally {
    await sql.end();
  }
}

Deno.test("a run against a person's server leaves its settings, TLS and passwords as they were", async () => {
  await using server = await startCluster({ password: "a person's own password" });
  const before = await fingerprint(server.url, `${server.dir}/data`);
  assert.equal(before.ssl, "off", "the person's server has TLS off");

  // Not the PGlite case: it brings a server of its own.
  const out = await childDenoTest(FILES, "/^(sslmode keeps|a password file|drain under)/", {
    DATABASE_URL: server.url,
  });
  const text = out.stdout;
  assert.equal(out.code, 0, `${text.slice(-3000)}\n${out.stderr.slice(-2000)}`);
  // The TLS cases say why they skip, in one line, and the rest ran.
  assert.match(text, /^Skipping the sslmode cases: the server at DATABASE_URL is not ours/m);
  assert.match(text, /^ok \| 2 passed .*\| 0 failed \| 1 ignored/m);

  assert.deepEqual(await fingerprint(server.url, `${server.dir}/data`), before);
});

Deno.test("make test with DATABASE_URL set starts no PostgreSQL 15 cluster", async () => {
  /**
   * The majors make test starts (PG_RUN_MAJORS), asked of make through a
   * target of our own: `make -n test` would run the recipe, since its one
   * line calls $(MAKE).
   */
  const majors = async (databaseUrl: string | undefined) => {
    const env = Deno.env.toObject();
    delete env.DATABASE_URL;
    if (databaseUrl !== undefined) env.DATABASE_URL = databaseUrl;
    const out = await new Deno.Command("make", {
      args: [
        "--no-print-directory",
        "--eval",
        "run-majors: ; @echo $(PG_RUN_MAJORS)",
        "run-majors",
      ],
      cwd: root,
      clearEnv: true,
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(out.success, decoder.decode(out.stderr));
    return decoder.decode(out.stdout).trim();
  };
  assert.equal(await majors("postgres://me@127.0.0.1:1/mine"), "13 18");
  assert.equal(await majors(undefined), "13 15 18");
  const makefile = await Deno.readTextFile(`${root}Makefile`);
  assert.match(makefile, /scripts\/test_clusters\.ts "\$\$state" \$\(PG_RUN_MAJORS\)/);
});

Deno.test("a person's server named with a login that is not a superuser is refused once, in one line", async () => {
  await using server = await startCluster({ password: "a person's own password" });
  await server.admin("CREATE ROLE someone LOGIN PASSWORD 'their password'");
  const url = new URL(server.url);
  url.username = "someone";
  url.password = encodeURIComponent("their password");
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["test", "--allow-all", "--no-check", `${root}tests/integration/permissions_test.ts`],
    env: { ...Deno.env.toObject(), DATABASE_URL: url.toString(), NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = decoder.decode(out.stdout) + decoder.decode(out.stderr);
  assert.equal(out.success, false);
  assert.match(text, /DATABASE_URL must name a superuser login: the tests create schemas/);
  assert.ok(!text.includes("their password"), "no password in the output");
});
