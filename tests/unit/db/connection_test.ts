// Unit tests of src/db/connection.ts: where Postgres is, by libpq's rules
// (URL over PG* variables over defaults), and what never leaks (the password).
import assert from "node:assert/strict";
import {
  DEFAULT_DATABASE_URL,
  describePgTarget,
  type PgTarget,
  resolvePgTarget,
} from "../../../src/db/connection.ts";
import { ConfigError } from "../../../src/errors.ts";

const url = (value: string) => ({ value, origin: "DATABASE_URL" });

Deno.test("resolvePgTarget() applies libpq's precedence", async (t) => {
  const cases: {
    name: string;
    url: string | null;
    env: Record<string, string>;
    expected: Partial<PgTarget> & { password?: string | null };
  }[] = [
    {
      name: "nothing set: the exercise's default URL",
      url: null,
      env: { USER: "someone" },
      expected: {
        host: "localhost",
        port: 5432,
        user: "postgres",
        database: "postgres",
        password: "postgres",
        sslmode: "prefer",
        source: "default URL",
      },
    },
    {
      name: "PG* variables alone decide, with libpq's defaults for the rest",
      url: null,
      env: { PGHOST: "db.internal", PGUSER: "etl", PGPASSWORD: "pw", USER: "someone" },
      expected: {
        host: "db.internal",
        port: 5432,
        user: "etl",
        database: "etl",
        password: "pw",
        sslmode: "prefer",
        source: "PG* variables",
      },
    },
    {
      name: "PGDATABASE alone: the OS user, the default socket or localhost, no password",
      url: null,
      env: { PGDATABASE: "analytics", USER: "maria" },
      expected: { host: null, user: "maria", database: "analytics", password: null },
    },
    {
      name: "a URL wins over PG* and PG* fills what it leaves out",
      url: "postgres://app@db.example:6543/logins",
      env: { PGHOST: "other", PGUSER: "other", PGPASSWORD: "from-env", PGSSLMODE: "verify-full" },
      expected: {
        host: "db.example",
        port: 6543,
        user: "app",
        database: "logins",
        password: "from-env",
        sslmode: "verify-full",
        source: "DATABASE_URL",
      },
    },
    {
      name: "URL parameters win over PG* ones",
      url: "postgresql://app:pw@db/x?sslmode=require&application_name=nightly&connect_timeout=3",
      env: { PGSSLMODE: "disable", PGAPPNAME: "other" },
      expected: { sslmode: "require", applicationName: "nightly", connectTimeoutSeconds: 3 },
    },
    {
      name: "percent-encoded user, password and database are decoded",
      url: "postgres://us%40er:p%3Aw%2Fd@db/my%20db",
      env: {},
      expected: { user: "us@er", password: "p:w/d", database: "my db" },
    },
    {
      name: "an IPv6 host loses its brackets",
      url: "postgres://u:p@[::1]:5432/d",
      env: {},
      expected: { host: "::1" },
    },
    {
      name: "sslrootcert from the URL or PGSSLROOTCERT",
      url: null,
      env: { PGHOST: "h", PGSSLMODE: "verify-ca", PGSSLROOTCERT: "/etc/ssl/rds.pem" },
      expected: { sslmode: "verify-ca", sslrootcert: "/etc/ssl/rds.pem" },
    },
    {
      name: "PGPASSFILE, else ~/.pgpass",
      url: null,
      env: { PGHOST: "h", HOME: "/home/etl" },
      expected: { passfile: "/home/etl/.pgpass" },
    },
  ];
  for (const c of cases) {
    await t.step(`resolvePgTarget(): ${c.name}`, () => {
      const target = resolvePgTarget(c.url === null ? null : url(c.url), c.env);
      for (const [key, value] of Object.entries(c.expected)) {
        assert.deepEqual(target[key as keyof PgTarget], value, key);
      }
    });
  }
});

Deno.test("resolvePgTarget() refuses bad settings with one line that never echoes the password", async (t) => {
  const password = "Hunter2-secret";
  const cases: [string, string | null, Record<string, string>, RegExp][] = [
    ["not a URL", `db.example/${password}`, {}, /Invalid DATABASE_URL: must be a URL/],
    ["no scheme", `app:${password}@db/x`, {}, /Invalid DATABASE_URL: must start with postgres/],
    ["another scheme", `mysql://app:${password}@db/x`, {}, /must start with postgres:\/\//],
    [
      "unknown parameter",
      `postgres://app:${password}@db/x?schema=a`,
      {},
      /unknown parameter "schema"/,
    ],
    [
      "bad sslmode in the URL",
      `postgres://app:${password}@db/x?sslmode=on`,
      {},
      /Invalid sslmode "on"/,
    ],
    [
      "bad PGSSLMODE",
      null,
      { PGHOST: "h", PGSSLMODE: "strict" },
      /Invalid sslmode "strict" in the PG\* variables/,
    ],
    ["bad port", null, { PGHOST: "h", PGPORT: "99999" }, /Invalid port/],
    [
      "verify-ca without a CA",
      `postgres://app:${password}@db/x?sslmode=verify-ca`,
      {},
      /verify-ca needs sslrootcert/,
    ],
  ];
  for (const [name, value, env, message] of cases) {
    await t.step(name, () => {
      const error = (() => {
        try {
          resolvePgTarget(value === null ? null : url(value), env);
        } catch (e) {
          return e;
        }
        return null;
      })();
      assert.ok(error instanceof ConfigError, String(error));
      assert.match(error.message, message);
      assert.ok(!error.message.includes(password));
      assert.ok(!error.message.includes("\n"));
    });
  }
});

Deno.test("a PgTarget keeps its password out of JSON, inspection and its description", () => {
  const target = resolvePgTarget(url("postgres://app:Sup3r-secret@db:5432/x?sslmode=require"), {});
  assert.equal(target.password, "Sup3r-secret");
  assert.ok(!JSON.stringify(target).includes("Sup3r-secret"));
  assert.ok(!Deno.inspect(target).includes("Sup3r-secret"));
  assert.equal(
    describePgTarget(target),
    "postgres://app@db:5432/x (sslmode=require, from DATABASE_URL)",
  );
  assert.ok(DEFAULT_DATABASE_URL.startsWith("postgres://"));
});
