// Unit tests of src/config/conninfo.ts: libpq's connection-string grammar (URL and
// keyword=value), what it refuses, and the service-file format.
import assert from "node:assert/strict";
import {
  isConnectionUrl,
  LIBPQ_KEYWORDS,
  parseConninfo,
  parseServiceFile,
} from "../../../src/config/conninfo.ts";
import { ConfigError } from "../../../src/errors.ts";

const parse = (text: string) => Object.fromEntries(parseConninfo(text, "DATABASE_URL"));

Deno.test("parseConninfo() reads URLs as libpq does", async (t) => {
  const cases: { name: string; input: string; expected: Record<string, string> }[] = [
    {
      name: "user, password, host, port, database",
      input: "postgres://app:pw@db.example:6543/logins",
      expected: { user: "app", password: "pw", host: "db.example", port: "6543", dbname: "logins" },
    },
    {
      name: "postgresql:// and no user info",
      input: "postgresql://db/x",
      expected: { host: "db", dbname: "x" },
    },
    {
      name: "several hosts, each with its port",
      input: "postgres://u@host1:5432,host2:5433/d?target_session_attrs=read-write",
      expected: {
        user: "u",
        host: "host1,host2",
        port: "5432,5433",
        dbname: "d",
        target_session_attrs: "read-write",
      },
    },
    {
      name: "several hosts, one port given: the other stays empty (the default)",
      input: "postgres://h1,h2:5433/d",
      expected: { host: "h1,h2", port: ",5433", dbname: "d" },
    },
    {
      name: "an IPv6 address in brackets, with a port",
      input: "postgres://[::1]:5433/d",
      expected: { host: "::1", port: "5433", dbname: "d" },
    },
    {
      name: "percent-encoding in every part; a + stays a plus",
      input: "postgres://us%40er:p%3Aw%2Fd+x@db/my%20db?application_name=a%26b",
      expected: {
        user: "us@er",
        password: "p:w/d+x",
        host: "db",
        dbname: "my db",
        application_name: "a&b",
      },
    },
    {
      name: "host names of letters (any script), digits, dots, - and _; an IPv6 zone",
      input: "postgres://db_1.bücher.example,[fe80::1%25eth0]:5433/d",
      expected: { host: "db_1.bücher.example,fe80::1%eth0", port: ",5433", dbname: "d" },
    },
    {
      name: "a socket directory as an encoded host",
      input: "postgresql://%2Fcloudsql%2Fproj%3Aregion%3Ainst/db",
      expected: { host: "/cloudsql/proj:region:inst", dbname: "db" },
    },
    {
      name: "host only in the query string",
      input: "postgresql:///db?host=/var/run/postgresql",
      expected: { host: "/var/run/postgresql", dbname: "db" },
    },
    {
      name:
        "an encoded @ in the password (a raw one: the first @ ends the user info, refused below)",
      input: "postgres://u:p%40ss@db/x",
      expected: { user: "u", password: "p@ss", host: "db", dbname: "x" },
    },
    {
      name: "an empty dbname is left unset",
      input: "postgres://db/?sslmode=require",
      expected: { host: "db", sslmode: "require" },
    },
    {
      name: "ssl=true is JDBC's sslmode=require",
      input: "postgres://db/x?ssl=true",
      expected: { host: "db", dbname: "x", sslmode: "require" },
    },
    {
      name: "requiressl=1 is the old spelling of sslmode=require",
      input: "postgres://db/x?requiressl=1",
      expected: { host: "db", dbname: "x", sslmode: "require" },
    },
    {
      name: "options with spaces encoded, a trailing &",
      input: "postgres://db/x?options=-c%20statement_timeout%3D1234&",
      expected: { host: "db", dbname: "x", options: "-c statement_timeout=1234" },
    },
    {
      name: "nothing after the scheme",
      input: "postgresql://",
      expected: {},
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => assert.deepEqual(parse(c.input), c.expected));
  }
});

Deno.test("parseConninfo() reads keyword=value strings as libpq does", async (t) => {
  const cases: { name: string; input: string; expected: Record<string, string> }[] = [
    {
      name: "plain pairs, any spacing around =",
      input: "host=db port = 5432\tdbname=logins  user=app",
      expected: { host: "db", port: "5432", dbname: "logins", user: "app" },
    },
    {
      name: "quoted values with spaces, escaped quote and backslash",
      input: String.raw`dbname='my db' password='it\'s \\ok' application_name=a\ b`,
      expected: { dbname: "my db", password: String.raw`it's \ok`, application_name: "a b" },
    },
    {
      name: "an empty quoted value",
      input: "host=db options=''",
      expected: { host: "db", options: "" },
    },
    {
      name: "Cloud SQL's socket form",
      input: "host=/cloudsql/my-project:us-central1:my-instance user=etl dbname=logins",
      expected: {
        host: "/cloudsql/my-project:us-central1:my-instance",
        user: "etl",
        dbname: "logins",
      },
    },
    {
      name: "a later keyword wins",
      input: "host=a host=b",
      expected: { host: "b" },
    },
    {
      name: "an empty string sets nothing",
      input: "   ",
      expected: {},
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => assert.deepEqual(parse(c.input), c.expected));
  }
});

Deno.test("parseConninfo() refuses what libpq refuses, in one line without the password", async (t) => {
  const secret = "Hunter2-secret";
  const cases: [string, string, RegExp][] = [
    [
      "an unknown URL parameter",
      `postgres://u:${secret}@db/x?schema=a`,
      /unknown connection parameter "schema"/,
    ],
    [
      "an unknown keyword",
      `host=db password=${secret} pool=5`,
      /unknown connection parameter "pool"/,
    ],
    [
      "ssl=false (only ssl=true is JDBC's)",
      `postgres://u:${secret}@db/x?ssl=false`,
      /unknown connection parameter "ssl"/,
    ],
    ["another scheme", `mysql://u:${secret}@db/x`, /must be a URL starting with postgres:\/\//],
    ["a bare word", `u:${secret}@db/x`, /a word without "="/],
    ["the password alone", secret, /a word without "="/],
    ["an unterminated quote", `password='${secret}`, /unterminated quoted string/],
    ["a missing ]", `postgres://u:${secret}@[::1/x`, /missing "]"/],
    ["a raw space in a URL", `postgres://u:${secret}@db/my db`, /unexpected space/],
    ["a bad percent sign", `postgres://u:${secret}%zz@db/x`, /bad percent-encoding/],
    ["%00", `postgres://u:${secret}%00@db/x`, /%00 is not allowed/],
    ["a parameter without =", `postgres://u:${secret}@db/x?sslmode`, /lacks its = and value/],
    [
      "a second = in a parameter",
      `postgres://u:${secret}@db/x?options=-c a=b`,
      /second "="|unexpected space/,
    ],
    // Split at the first @, as libpq: the password's tail would be the host,
    // and the resolver's ENOTFOUND would print it.
    [
      "an @ in the password: its tail in the host",
      `postgres://app:Tr0ub4dor@${secret}@127.0.0.1:5432/prod`,
      /a host holds "@"; percent-encode @ in the user or password as %40$/,
    ],
    [
      "an @ in the password of a second host",
      `postgres://app:pw@db1,${secret}@db2/prod`,
      /a host holds "@"/,
    ],
    [
      "an @ and a : in the password: its tail in the port",
      `postgres://app:Tr0ub4dor@Horse:${secret}@127.0.0.1/prod`,
      /a port holds "@"; percent-encode @ in the user or password as %40$/,
    ],
    [
      "a / in the password: its tail in the database name",
      `postgres://app:12/${secret}@db/prod`,
      /the database name holds "@"; percent-encode @ in the user or password as %40, and \/ as %2F/,
    ],
    [
      "a host name with a character no host has",
      `postgres://u@db!${secret}/x`,
      /a host name holds a character no host name has/,
    ],
    ["brackets around no IPv6 address", `postgres://u@[${secret}]/x`, /not an IPv6 address/],
  ];
  for (const [name, input, message] of cases) {
    await t.step(name, () => {
      const error = (() => {
        try {
          parseConninfo(input, "DATABASE_URL");
        } catch (e) {
          return e;
        }
        return null;
      })();
      assert.ok(error instanceof ConfigError, String(error));
      assert.match(error.message, /^Invalid DATABASE_URL: /);
      assert.match(error.message, message);
      assert.ok(!error.message.includes(secret), error.message);
      assert.ok(!error.message.includes("\n"));
    });
  }
});

Deno.test("isConnectionUrl() and LIBPQ_KEYWORDS follow libpq", () => {
  assert.ok(isConnectionUrl("postgres://x"));
  assert.ok(isConnectionUrl("postgresql://x"));
  assert.ok(!isConnectionUrl("Postgres://x"), "libpq's prefix is case-sensitive");
  assert.ok(!isConnectionUrl("host=x"));
  for (
    const keyword of ["channel_binding", "sslnegotiation", "load_balance_hosts", "servicefile"]
  ) {
    assert.ok(Object.hasOwn(LIBPQ_KEYWORDS, keyword), keyword);
  }
  assert.equal(LIBPQ_KEYWORDS["sslpassword"], null, "sslpassword has no variable");
});

Deno.test("parseServiceFile() reads the first section of that name, as libpq does", async (t) => {
  const text = [
    "# services",
    "[other]",
    "host=elsewhere",
    "",
    "  [etl]  ",
    "host=db.internal",
    "port=6543",
    "  options=-c statement_timeout=5s  ",
    "host=ignored-second-value",
    "[etl]",
    "dbname=never-read",
  ].join("\n");
  await t.step("the section's keywords, whitespace at line ends trimmed, first value kept", () => {
    assert.deepEqual(Object.fromEntries(parseServiceFile(text, "etl", "f") ?? []), {
      host: "db.internal",
      port: "6543",
      options: "-c statement_timeout=5s",
    });
  });
  await t.step("a missing section is null", () => {
    assert.equal(parseServiceFile(text, "missing", "f"), null);
  });
  const refusals: [string, string, RegExp][] = [
    ["a line without =", "[s]\nhost db", /Syntax error in service file "f", line 2/],
    ["an unknown keyword", "[s]\nschema=x", /unknown connection parameter "schema"/],
    ["a nested service", "[s]\nservice=t", /Nested service in service file "f", line 2/],
    ["a line of 1023 bytes", `[s]\nhost=${"h".repeat(1020)}`, /Line 2 too long/],
  ];
  for (const [name, input, message] of refusals) {
    await t.step(`refuses ${name}`, () => {
      assert.throws(() => parseServiceFile(input, "s", "f"), (e: unknown) => {
        assert.ok(e instanceof ConfigError);
        assert.match(e.message, message);
        return true;
      });
    });
  }
  await t.step("errors in other sections are not read", () => {
    assert.deepEqual(
      Object.fromEntries(parseServiceFile("[x]\nnonsense\n[s]\nport=1", "s", "f") ?? []),
      {
        port: "1",
      },
    );
  });
});
