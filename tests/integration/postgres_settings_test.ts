// Where Postgres is and how it is reached, against the real server: sslmode
// with libpq's meanings against the suite's cluster with TLS on (its CA is
// made for the run), a server that refuses TLS (PGlite), and passwords from a
// password file read by the pgpass package.

import assert from "node:assert/strict";
import { checkConnection, connect } from "../../src/db/pool.ts";
import { loadPgConnection } from "../../src/db/connection.ts";
import { resolvePgTarget } from "../../src/config/pg_target.ts";
import { startEmbeddedPostgres } from "../../src/demo/embedded.ts";
import { ConfigError, DatabaseError } from "../../src/errors.ts";
import { makePki } from "../helpers/pki.ts";
import { DATABASE_URL, TEST_CA, TLS_UNKNOWN } from "../helpers/services.ts";
import { tellSkip } from "../helpers/tools.ts";

/** The suite server's port, as the refusals name it. */
const PORT = new URL(DATABASE_URL).port || "5432";

/** A CA certificate that signed nothing the server holds. */
async function otherCa(dir: string): Promise<string> {
  return (await makePki(dir)).caPath;
}

/** DATABASE_URL with another host and extra libpq parameters. */
function urlWith(host: string, params: Record<string, string>): string {
  const url = new URL(DATABASE_URL);
  url.hostname = host;
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  return url.toString();
}

/** Connects as the CLI would and reports whether the session uses TLS, or the one-line failure. */
async function attempt(url: string): Promise<{ ssl: boolean } | { error: string }> {
  let connection;
  try {
    connection = await loadPgConnection(
      resolvePgTarget({ value: url, origin: "DATABASE_URL" }, {}),
    );
  } catch (error) {
    if (error instanceof ConfigError) return { error: error.message };
    throw error;
  }
  const sql = connect({ connection, schema: "public", stateSchema: "login_etl", max: 1 });
  try {
    await checkConnection(sql, connection);
    const [row] = await sql<{ ssl: boolean }[]>`
      SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`;
    return { ssl: row?.ssl === true };
  } catch (error) {
    if (error instanceof DatabaseError) return { error: error.message };
    throw error;
  } finally {
    await sql.end({ timeout: 1 });
  }
}

if (TLS_UNKNOWN !== null) tellSkip("sslmode", TLS_UNKNOWN);

Deno.test({
  name: "sslmode keeps libpq's meanings against the suite's server with TLS on",
  ignore: TEST_CA === undefined,
}, async (t) => {
  const ca = TEST_CA ?? "";
  const dir = await Deno.makeTempDir();
  try {
    const other = await otherCa(dir);
    const cases: [string, string, Record<string, string>, { ssl: boolean } | RegExp][] = [
      ["disable: a plain session", "localhost", { sslmode: "disable" }, { ssl: false }],
      ["prefer (the default): TLS when offered", "localhost", {}, { ssl: true }],
      ["require: TLS, certificate not checked", "127.0.0.1", { sslmode: "require" }, { ssl: true }],
      [
        "verify-full with the server's CA and the name in its certificate",
        "localhost",
        { sslmode: "verify-full", sslrootcert: ca },
        { ssl: true },
      ],
      [
        "verify-ca checks the chain, not the name",
        "127.0.0.1",
        { sslmode: "verify-ca", sslrootcert: ca },
        { ssl: true },
      ],
      [
        "verify-full refuses a name the certificate does not list",
        "127.0.0.1",
        { sslmode: "verify-full", sslrootcert: ca },
        new RegExp(
          `at postgres://postgres@127\\.0\\.0\\.1:${PORT}/postgres \\(sslmode=verify-full.*: the certificate of 127\\.0\\.0\\.1:${PORT} does not name host 127\\.0\\.0\\.1`,
        ),
      ],
      [
        "verify-full refuses a certificate another CA signed",
        "localhost",
        { sslmode: "verify-full", sslrootcert: other },
        new RegExp(
          `the certificate of localhost:${PORT} is not signed by a trusted CA .*set sslrootcert`,
        ),
      ],
      [
        "verify-full without sslrootcert trusts only the runtime's roots",
        "localhost",
        { sslmode: "verify-full" },
        new RegExp(`the certificate of localhost:${PORT} is not signed by a trusted CA`),
      ],
      [
        "require with sslrootcert checks the chain, as libpq does",
        "localhost",
        { sslmode: "require", sslrootcert: other },
        /not signed by a trusted CA/,
      ],
      [
        "an unreadable sslrootcert is named",
        "localhost",
        { sslmode: "verify-full", sslrootcert: `${dir}/missing.crt` },
        /Cannot read sslrootcert ".*missing\.crt": no such file/,
      ],
    ];
    for (const [name, host, params, expected] of cases) {
      await t.step(name, async () => {
        const result = await attempt(urlWith(host, params));
        if (expected instanceof RegExp) {
          assert.ok("error" in result, `expected a refusal, got ${JSON.stringify(result)}`);
          assert.match(result.error, expected);
          assert.ok(!result.error.includes("\n"));
          const { username, password } = new URL(DATABASE_URL);
          assert.ok(!result.error.includes(`${username}:${password}@`), "no password");
        } else {
          assert.deepEqual(result, expected);
        }
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "sslmode=require against a server without TLS says so in one line",
  async fn() {
    const pg = await startEmbeddedPostgres();
    try {
      const result = await attempt(`${pg.url}?sslmode=require&connect_timeout=2`);
      assert.ok("error" in result);
      assert.match(
        result.error,
        /does not accept TLS \(ssl is off on the server\) and sslmode=require/,
      );
      assert.deepEqual(await attempt(`${pg.url}?sslmode=prefer`), { ssl: false });
    } finally {
      await pg.stop();
    }
  },
});

Deno.test("a password file supplies a missing password, and one others can read is ignored with a warning", async () => {
  const url = new URL(DATABASE_URL);
  const dir = await Deno.makeTempDir();
  const passfile = `${dir}/pgpass`;
  // A wildcard database and an escaped colon in a decoy line: the pgpass package's parser.
  await Deno.writeTextFile(
    passfile,
    `# comment\nother\\:host:*:*:nobody:wrong\n${url.hostname}:${url.port || 5432}:*:${
      decodeURIComponent(url.username)
    }:${decodeURIComponent(url.password)}\n`,
  );
  const env = {
    PGHOST: url.hostname,
    PGPORT: url.port || "5432",
    PGUSER: decodeURIComponent(url.username),
    PGDATABASE: url.pathname.slice(1) || "postgres",
    PGPASSFILE: passfile,
  };
  try {
    await Deno.chmod(passfile, 0o600);
    const warnings: string[] = [];
    const good = await loadPgConnection(resolvePgTarget(null, env), (w) => warnings.push(w));
    assert.deepEqual(good.passwords, [decodeURIComponent(url.password)]);
    assert.equal(warnings.length, 0);
    const sql = connect({ connection: good, schema: "public", stateSchema: "login_etl", max: 1 });
    try {
      await checkConnection(sql, good);
    } finally {
      await sql.end();
    }

    await Deno.chmod(passfile, 0o644);
    const open = await loadPgConnection(resolvePgTarget(null, env), (w) => warnings.push(w));
    assert.deepEqual(open.passwords, [""]);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] ?? "", /readable by group or others, so it is ignored.*chmod 0600/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "drain with verify-full: the main thread and the sink worker both connect over verified TLS",
  ignore: TEST_CA === undefined,
}, async () => {
  const { consume } = await import("../../src/commands/_consume.ts");
  const { capturingTelemetry, freshSchema, testConfig, uniqueName } = await import(
    "../helpers/services.ts"
  );
  const { startEndpoint } = await import("../helpers/sqs_endpoints.ts");
  const { generateBodies } = await import("../../src/seed/generate.ts");
  await using sqs = await startEndpoint("fauxqs");
  await using db = await freshSchema();
  const queueUrl = await sqs.createQueue();
  await sqs.send(queueUrl, [...generateBodies(3000, { badRatio: 0, seed: 3 })]);
  const app = uniqueName("tls");
  const url = urlWith("localhost", {
    sslmode: "verify-full",
    sslrootcert: TEST_CA ?? "",
    application_name: app,
  });
  const seen = new Map<number, boolean>();
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      const rows = await db.sql<{ pid: number; ssl: boolean }[]>`
        SELECT a.pid, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
        WHERE a.application_name = ${app}`;
      for (const row of rows) seen.set(row.pid, row.ssl);
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  const { telemetry } = capturingTelemetry();
  try {
    const summary = await consume(
      testConfig("drain", {
        "queue-url": queueUrl,
        "database-url": url,
        ...db.flags,
        "worker-threads": "1",
      }),
      { telemetry, stop: new AbortController().signal, writeStdout: () => {} },
    );
    assert.equal(summary.inserted, 3000);
  } finally {
    watching = false;
    await watcher;
  }
  // One housekeeping connection in this thread, the writers' in the worker.
  assert.ok(seen.size >= 2, `connections seen: ${seen.size}`);
  assert.ok([...seen.values()].every((ssl) => ssl), "every connection uses TLS");
});
