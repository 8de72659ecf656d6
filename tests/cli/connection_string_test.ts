// The whole libpq connection string through the CLI with the binary's
// permission flags: a service file named by PGSERVICEFILE (the binary may
// read PG* and the file), a keyword=value string, the one warning line for a
// parameter that cannot apply, and the one-line refusals.

import assert from "node:assert/strict";
import { failureLine, runCli } from "../helpers/cli.ts";
import { DATABASE_URL, freshSchema } from "../helpers/services.ts";

const local = new URL(DATABASE_URL);
const password = decodeURIComponent(local.password);
const secretPattern = `:${password}@`;

Deno.test("migrate reaches Postgres through PGSERVICE and a service file, warning once about gssencmode", async () => {
  await using db = await freshSchema();
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/services.conf`;
    await Deno.writeTextFile(
      file,
      `[etl]\nhost=${local.hostname}\nport=${
        local.port || 5432
      }\nuser=postgres\npassword=${password}\ndbname=postgres\ngssencmode=prefer\n`,
    );
    const result = await runCli(["migrate"], {
      env: {
        PGSERVICE: "etl",
        PGSERVICEFILE: file,
        PGOPTIONS: "-c statement_timeout=60000",
        LOGIN_ETL_SCHEMA: db.schema,
        LOGIN_ETL_LOG_FORMAT: "json",
      },
    });
    assert.equal(result.code, 0, result.stderr);
    const warnings = result.stderr.split("\n").filter((l) => l.includes('"event":"ConfigWarned"'));
    assert.equal(warnings.length, 1, result.stderr);
    assert.match(warnings[0] ?? "", /ignored: gssencmode=prefer \(no GSSAPI encryption/);
    assert.match(result.stdout + result.stderr, /service etl, from PG\* variables/);
    assert.ok(!result.stderr.includes(secretPattern) && !result.stdout.includes(secretPattern));
    const [row] = await db.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = ${db.schema}`;
    assert.ok((row?.n ?? 0) > 0, "migrated");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a connection string libpq refuses exits 2, one it cannot meet exits 1, each in one line", async (t) => {
  const cases: [string, Record<string, string>, number, RegExp][] = [
    [
      "an unknown parameter",
      { DATABASE_URL: `${DATABASE_URL}?pgbouncer=true` },
      2,
      /^error: Invalid DATABASE_URL: unknown connection parameter "pgbouncer"/,
    ],
    [
      "gssencmode=require",
      {
        DATABASE_URL:
          `host=${local.hostname} user=postgres password=${password} gssencmode=require`,
      },
      2,
      /^error: gssencmode=require in DATABASE_URL cannot be met/,
    ],
    [
      "channel_binding=require without TLS",
      { DATABASE_URL: `${DATABASE_URL}?sslmode=disable&channel_binding=require` },
      1,
      /^error: Cannot connect to Postgres at .*: channel_binding=require needs TLS, and sslmode=disable turns it off/,
    ],
    [
      "an @ in the password, not percent-encoded (its tail would be the host)",
      { DATABASE_URL: "postgres://app:Tr0ub4dor@Horse-Battery@127.0.0.1:5432/prod" },
      2,
      /^error: Invalid DATABASE_URL: a host holds "@"; percent-encode @ in the user or password as %40$/,
    ],
  ];
  for (const [name, env, code, pattern] of cases) {
    await t.step(name, async () => {
      const result = await runCli(["migrate"], { env });
      assert.ok(!result.stderr.includes("Horse-Battery"), "no part of a password");
      assert.equal(result.code, code, result.stderr);
      assert.match(failureLine(result), pattern);
      assert.doesNotMatch(result.stderr, /\n\s+at /, "no stack trace");
      assert.ok(!result.stderr.includes(secretPattern), "no password");
      assert.ok(!result.stderr.includes(`password=${password} `), "no password");
    });
  }
});
