// libpq's connection parameters against real servers, each through the path
// login-etl takes (resolvePgTarget → loadPgConnection → connect): the shared
// local server (TLS on, SCRAM passwords) for options, application_name,
// channel_binding, require_auth, hostaddr, host lists, connect_timeout, the
// service file and the parameters we can only warn about; a throwaway
// cluster of our own for client certificates, a read-only first host
// (target_session_attrs) and a Unix socket.

import assert from "node:assert/strict";
import net from "node:net";
import { checkConnection, connect, type Sql } from "../../src/db/pool.ts";
import { loadPgConnection, type PgConnection } from "../../src/db/connection.ts";
import { resolvePgTarget } from "../../src/config/pg_target.ts";
import { ConfigError, DatabaseError } from "../../src/errors.ts";
import { DATABASE_URL, TEST_CA, TLS_UNKNOWN, uniqueName } from "../helpers/services.ts";
import { TcpProxy } from "../helpers/tcp_proxy.ts";
import { type Cluster, startCluster, TEST_OS_USER } from "../helpers/cluster.ts";
import { makePki, type TestPki } from "../helpers/pki.ts";
import { lacks, OPENSSL, tellSkip } from "../helpers/tools.ts";

const noTls = TLS_UNKNOWN !== null;
if (TLS_UNKNOWN !== null) tellSkip("TLS", TLS_UNKNOWN);
const local = new URL(DATABASE_URL);
const LOCAL_PORT = Number(local.port || 5432);
const LOCAL_PASSWORD = decodeURIComponent(local.password);

/** A query string as libpq reads it: %20 for a space (libpq leaves a + as it is). */
function query(params: Record<string, string>): string {
  const pairs = Object.entries(params).map(([k, v]) => `${k}=${encodeURIComponent(v)}`);
  return pairs.length === 0 ? "" : `?${pairs.join("&")}`;
}

/** DATABASE_URL with another host and extra libpq parameters. */
function localUrl(params: Record<string, string>, host = local.hostname): string {
  const url = new URL(DATABASE_URL);
  url.hostname = host;
  url.search = "";
  return `${url.toString()}${query(params)}`;
}

type Outcome<T> = { ok: T; warnings: string[] } | { error: string; warnings: string[] };

/** Connects as login-etl would and runs `fn`, or gives the one-line refusal. */
async function attempt<T>(
  conninfo: string | null,
  env: Record<string, string>,
  fn: (sql: Sql, connection: PgConnection) => Promise<T>,
): Promise<Outcome<T>> {
  const warnings: string[] = [];
  let connection: PgConnection;
  try {
    connection = await loadPgConnection(
      resolvePgTarget(conninfo === null ? null : { value: conninfo, origin: "DATABASE_URL" }, env),
      (w) => warnings.push(w),
    );
  } catch (error) {
    if (error instanceof ConfigError) return { error: error.message, warnings };
    throw error;
  }
  const sql = connect({ connection, schema: "public", stateSchema: "login_etl", max: 1 });
  try {
    await checkConnection(sql, connection);
    return { ok: await fn(sql, connection), warnings };
  } catch (error) {
    if (error instanceof DatabaseError) return { error: error.message, warnings };
    throw error;
  } finally {
    await sql.end({ timeout: 1 });
  }
}

function assertOk<T>(outcome: Outcome<T>): T {
  assert.ok(
    "ok" in outcome,
    `expected a connection, got: ${"error" in outcome ? outcome.error : ""}`,
  );
  return outcome.ok;
}

function assertRefused(outcome: Outcome<unknown>, pattern: RegExp, secrets: string[] = []): void {
  assert.ok("error" in outcome, `expected a refusal, got ${JSON.stringify(outcome)}`);
  assert.match(outcome.error, pattern);
  assert.ok(!outcome.error.includes("\n"), "one line");
  // The suite server's password (new each run) never shows in a refusal.
  assert.ok(!outcome.error.includes(`:${LOCAL_PASSWORD}@`), "no password");
  for (const secret of secrets) assert.ok(!outcome.error.includes(secret), "no secret");
}

const setting = (name: string) => async (sql: Sql) =>
  (await sql.unsafe<{ v: string }[]>(`SELECT current_setting('${name}') AS v`))[0]?.v;

Deno.test("options: -c settings are sent at start-up (URL, keyword=value, PGOPTIONS)", async () => {
  assert.equal(
    assertOk(
      await attempt(
        localUrl({ options: "-c statement_timeout=1234" }),
        {},
        setting("statement_timeout"),
      ),
    ),
    "1234ms",
  );
  const kv =
    `host=${local.hostname} port=${LOCAL_PORT} user=postgres password='${LOCAL_PASSWORD}' ` +
    `dbname=postgres options='-c work_mem=5MB --lock_timeout=4321'`;
  assert.equal(assertOk(await attempt(kv, {}, setting("work_mem"))), "5MB");
  assert.equal(assertOk(await attempt(kv, {}, setting("lock_timeout"))), "4321ms");
  assert.equal(
    assertOk(
      await attempt(
        localUrl({}),
        { PGOPTIONS: "-c statement_timeout=777" },
        setting("statement_timeout"),
      ),
    ),
    "777ms",
  );
  // Our search_path (pg_catalog alone) still wins over one in options.
  assert.equal(
    assertOk(
      await attempt(localUrl({ options: "-c search_path=elsewhere" }), {}, setting("search_path")),
    ),
    "pg_catalog, pg_temp",
  );
  // A setting the server refuses is its one-line refusal.
  assertRefused(
    await attempt(
      localUrl({ options: "-c statement_timeout=soon" }),
      {},
      setting("statement_timeout"),
    ),
    /invalid value for parameter "statement_timeout"/,
  );
});

Deno.test("application_name, fallback_application_name and PGAPPNAME show in pg_stat_activity", async () => {
  const seen = async (sql: Sql) =>
    (await sql<{ name: string }[]>`
      SELECT application_name AS name FROM pg_stat_activity WHERE pid = pg_backend_pid()`)[0]?.name;
  const app = uniqueName("app");
  assert.equal(assertOk(await attempt(localUrl({ application_name: app }), {}, seen)), app);
  assert.equal(
    assertOk(await attempt(localUrl({ fallback_application_name: `${app}_fb` }), {}, seen)),
    `${app}_fb`,
  );
  assert.equal(
    assertOk(await attempt(localUrl({}), { PGAPPNAME: `${app}_env` }, seen)),
    `${app}_env`,
  );
  assert.equal(assertOk(await attempt(localUrl({}), {}, seen)), "login-etl");
});

Deno.test({
  name:
    "channel_binding=require: SCRAM-SHA-256-PLUS over TLS works; a plain connection is refused in one line",
  ignore: noTls,
}, async () => {
  assert.equal(
    await attempt(DATABASE_URL, {}, setting("password_encryption")).then(assertOk),
    "scram-sha-256",
    "the local server stores SCRAM passwords",
  );
  const tls = await attempt(
    localUrl(
      { sslmode: "verify-full", sslrootcert: TEST_CA ?? "", channel_binding: "require" },
      "localhost",
    ),
    {},
    async (sql) => (await sql`SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`)[0]?.ssl,
  );
  assert.equal(assertOk(tls), true);
  assert.equal(
    assertOk(
      await attempt(
        localUrl({ sslmode: "require", channel_binding: "require" }),
        {},
        setting("port"),
      ),
    ),
    String(LOCAL_PORT),
  );
  assertRefused(
    await attempt(
      localUrl({ sslmode: "disable", channel_binding: "require" }),
      {},
      setting("port"),
    ),
    /channel_binding=require needs TLS, and sslmode=disable turns it off: use sslmode=require \(or verify-full\), or channel_binding=prefer$/,
  );
  // The Neon form, pointed at the local server.
  assertOk(
    await attempt(
      localUrl({ sslmode: "require", channel_binding: "require" }, "127.0.0.1"),
      {},
      setting("port"),
    ),
  );
});

Deno.test("require_auth: SCRAM allowed passes, a method list without it is refused in one line", async () => {
  assertOk(await attempt(localUrl({ require_auth: "scram-sha-256" }), {}, setting("port")));
  assertOk(await attempt(localUrl({ require_auth: "!password,!md5" }), {}, setting("port")));
  assertRefused(
    await attempt(localUrl({ require_auth: "md5" }), {}, setting("port")),
    /authentication method requirement "md5" failed: server requested SASL authentication/,
  );
});

Deno.test({
  name:
    "host lists: a refused first host fails over to the next; hostaddr dials the address and checks the name",
  ignore: noTls,
}, async () => {
  const dead = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const deadPort = (dead.addr as Deno.NetAddr).port;
  dead.close();
  const url = `postgres://postgres:${
    encodeURIComponent(LOCAL_PASSWORD)
  }@127.0.0.1:${deadPort},${local.hostname}:${LOCAL_PORT}/postgres`;
  assert.equal(assertOk(await attempt(url, {}, setting("port"))), String(LOCAL_PORT));
  // verify-full to "localhost" while dialling 127.0.0.1: the name checked is the host's.
  const kv =
    `host=localhost hostaddr=127.0.0.1 port=${LOCAL_PORT} user=postgres password=${LOCAL_PASSWORD} ` +
    `dbname=postgres sslmode=verify-full sslrootcert=${TEST_CA ?? ""}`;
  assertOk(await attempt(kv, {}, setting("port")));
  // The same certificate does not name 127.0.0.1, as a host.
  assertRefused(
    await attempt(
      kv.replace("host=localhost hostaddr=127.0.0.1", "host=127.0.0.1"),
      {},
      setting("port"),
    ),
    /does not name host 127\.0\.0\.1/,
  );
});

Deno.test("connect_timeout bounds a server that accepts and never answers, and a closing one fails at once", async () => {
  await using proxy = TcpProxy.start({ hostname: "127.0.0.1", port: LOCAL_PORT });
  const via = (params: Record<string, string>) => {
    const url = new URL(localUrl(params, "127.0.0.1"));
    url.port = String(proxy.port);
    return url.toString();
  };
  proxy.setMode("stall");
  let started = performance.now();
  assertRefused(
    await attempt(via({ connect_timeout: "2" }), {}, setting("port")),
    /CONNECT_TIMEOUT/,
  );
  const seconds = (performance.now() - started) / 1000;
  assert.ok(seconds >= 1.5 && seconds < 6, `${seconds} s`);
  // Without TLS the socket is handed over at once and postgres.js's own
  // timer fires while it waits for the start-up's answer: said in words.
  assertRefused(
    await attempt(via({ connect_timeout: "2", sslmode: "disable" }), {}, setting("port")),
    /the server took the connection but did not answer within connect_timeout \(2 s\) \(CONNECT_TIMEOUT\)/,
  );
  proxy.setMode("reset");
  started = performance.now();
  assertRefused(
    await attempt(via({}), {}, setting("port")),
    /closed the connection before answering.*SERVER_CLOSED/,
  );
  assert.ok(performance.now() - started < 5000, "at once, not retried until connect_timeout");
  proxy.setMode("pass");
});

Deno.test("a service file: PGSERVICEFILE with two services, the string over the service over PG*", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/services.conf`;
    await Deno.writeTextFile(
      file,
      [
        "# two services on the local server",
        "[etl_a]",
        `host=${local.hostname}`,
        `port=${LOCAL_PORT}`,
        "user=postgres",
        `password=${LOCAL_PASSWORD}`,
        "dbname=postgres",
        "application_name=from_service_a",
        "options=-c statement_timeout=1111",
        "",
        "[etl_b]",
        `host=${local.hostname}`,
        `port=${LOCAL_PORT}`,
        "user=postgres",
        `password=${LOCAL_PASSWORD}`,
        "application_name=from_service_b",
        "sslmode=disable",
      ].join("\n"),
    );
    const env = { PGSERVICEFILE: file, PGAPPNAME: "from_env", PGHOST: "nowhere.invalid" };
    const probe = async (sql: Sql) =>
      (await sql<{ app: string; timeout: string; ssl: boolean }[]>`
        SELECT a.application_name AS app, current_setting('statement_timeout') AS timeout, s.ssl
        FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.pid = pg_backend_pid()`)[0];
    assert.deepEqual(
      assertOk(await attempt("service=etl_a", env, probe)),
      { app: "from_service_a", timeout: "1111ms", ssl: true },
    );
    assert.deepEqual(
      assertOk(await attempt(null, { ...env, PGSERVICE: "etl_b" }, probe)),
      { app: "from_service_b", timeout: "0", ssl: false },
    );
    assert.deepEqual(
      assertOk(await attempt("service=etl_a application_name=from_string", env, probe)),
      { app: "from_string", timeout: "1111ms", ssl: true },
    );
    assertRefused(
      await attempt("service=etl_c", env, probe),
      /Service "etl_c" is not defined in .*services\.conf or .*pg_service\.conf/,
    );
    assertRefused(
      await attempt("service=etl_a", { PGSERVICEFILE: `${dir}/missing.conf` }, probe),
      /Cannot read service file ".*missing\.conf": no such file/,
    );
    // The system file (PGSYSCONFDIR) when the user's file lacks the service.
    await Deno.mkdir(`${dir}/etc`);
    await Deno.writeTextFile(
      `${dir}/etc/pg_service.conf`,
      `[etl_sys]\nhost=${local.hostname}\nport=${LOCAL_PORT}\nuser=postgres\npassword=${LOCAL_PASSWORD}\napplication_name=from_system\n`,
    );
    assert.equal(
      assertOk(await attempt("service=etl_sys", { ...env, PGSYSCONFDIR: `${dir}/etc` }, probe))
        ?.app,
      "from_system",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parameters that cannot apply warn once, in one line, and the connection goes ahead", async () => {
  const outcome = await attempt(
    localUrl({
      gssencmode: "prefer",
      krbsrvname: "postgres",
      keepalives_interval: "5",
      keepalives_idle: "9",
    }),
    { PGTZ: "Europe/Berlin" },
    setting("timezone"),
  );
  assert.equal(assertOk(outcome), "Europe/Berlin", "PGTZ applied");
  assert.equal(outcome.warnings.length, 1, JSON.stringify(outcome.warnings));
  const [warning = ""] = outcome.warnings;
  assert.match(warning, /^Connection parameters that cannot apply here are ignored: /);
  for (const name of [/gssencmode=prefer \(no GSSAPI/, /keepalives_interval \(/, /krbsrvname \(/]) {
    assert.match(warning, name);
  }
  assert.equal(warning.split("; ").length, 3, warning);
  assertRefused(
    await attempt(localUrl({ gssencmode: "require" }), {}, setting("port")),
    /gssencmode=require .* cannot be met/,
  );
  assertRefused(
    await attempt(localUrl({ pool_size: "5" }), {}, setting("port")),
    /unknown connection parameter "pool_size"/,
  );
});

Deno.test("keepalives_idle reaches the socket; keepalives=0 turns keepalives off", async () => {
  const timers = async (sql: Sql) => {
    const [row] = await sql<{ port: number }[]>`SELECT inet_client_port() AS port`;
    const port = row?.port;
    const out = await new Deno.Command("ss", {
      args: ["-tnoH", "state", "established", `( sport = :${port} )`],
      stdout: "piped",
    }).output();
    return new TextDecoder().decode(out.stdout);
  };
  assert.match(
    assertOk(await attempt(localUrl({ keepalives_idle: "37" }, "127.0.0.1"), {}, timers)),
    /timer:\(keepalive,3[0-7]sec/,
  );
  assert.doesNotMatch(
    assertOk(await attempt(localUrl({ keepalives: "0" }, "127.0.0.1"), {}, timers)),
    /keepalive/,
  );
});

/** The throwaway cluster for certificates, a read-only host and a socket. */
async function certCluster(pki: TestPki): Promise<Cluster> {
  const server = await pki.issue("localhost", { san: "DNS:localhost,IP:127.0.0.1" });
  const cluster = await startCluster({
    hba: [
      "local all all scram-sha-256",
      "hostssl all certuser 127.0.0.1/32 cert",
      "host all certuser 127.0.0.1/32 reject",
      "host all all 127.0.0.1/32 scram-sha-256",
    ],
    settings: {
      ssl: "on",
      ssl_cert_file: "'server.crt'",
      ssl_key_file: "'server.key'",
      ssl_ca_file: "'ca.crt'",
    },
    files: { "server.crt": server.cert, "server.key": server.key, "ca.crt": pki.caCert },
    // The suite server's password, so that one host list reaches both.
    password: LOCAL_PASSWORD,
  });
  await cluster.admin(
    "CREATE ROLE certuser LOGIN; ALTER ROLE postgres SET default_transaction_read_only = on",
  );
  return cluster;
}

Deno.test("client certificates, a read-only first host and a Unix socket, against a cluster of our own", async (t) => {
  const pkiDir = await Deno.makeTempDir();
  try {
    const pki = await makePki(pkiDir);
    await Deno.writeTextFile(`${pkiDir}/ca.pem`, pki.caCert);
    await using cluster = await certCluster(pki);
    const plain = await pki.issue("certuser");
    const encrypted = await pki.issue("certuser", {
      passphrase: "s3cret pass",
      file: "certuser_encrypted",
    });
    const certUrl = (params: Record<string, string>) =>
      `postgres://certuser@127.0.0.1:${cluster.port}/postgres${query(params)}`;
    const who = async (sql: Sql) =>
      (await sql<{ user: string; ssl: boolean }[]>`
        SELECT current_user AS user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`)[0];

    await t.step("sslcert and sslkey log in with verify-full", async () => {
      assert.deepEqual(
        assertOk(
          await attempt(
            certUrl({
              sslmode: "verify-full",
              sslrootcert: `${pkiDir}/ca.pem`,
              sslcert: plain.certPath,
              sslkey: plain.keyPath,
            }),
            {},
            who,
          ),
        ),
        { user: "certuser", ssl: true },
      );
    });
    await t.step(
      "PGSSLCERT and PGSSLKEY, under the default sslmode (prefer sends them too)",
      async () => {
        assertOk(
          await attempt(certUrl({}), { PGSSLCERT: plain.certPath, PGSSLKEY: plain.keyPath }, who),
        );
      },
    );
    await t.step("an encrypted key with sslpassword", async () => {
      assertOk(
        await attempt(
          certUrl({
            sslmode: "require",
            sslcert: encrypted.certPath,
            sslkey: encrypted.keyPath,
            sslpassword: "s3cret pass",
          }),
          {},
          who,
        ),
      );
    });
    await t.step("a wrong sslpassword, or none, is one line naming the fix", async () => {
      assertRefused(
        await attempt(
          certUrl({
            sslmode: "require",
            sslcert: encrypted.certPath,
            sslkey: encrypted.keyPath,
            sslpassword: "wrong",
          }),
          {},
          who,
        ),
        /sslpassword does not decrypt sslkey/,
        ["wrong"],
      );
      assertRefused(
        await attempt(
          certUrl({ sslmode: "require", sslcert: encrypted.certPath, sslkey: encrypted.keyPath }),
          {},
          who,
        ),
        /sslkey ".*" is encrypted: give its passphrase as sslpassword/,
      );
    });
    await t.step("a key others can read is refused, as libpq does", async () => {
      await Deno.chmod(plain.keyPath, 0o644);
      try {
        assertRefused(
          await attempt(certUrl({ sslcert: plain.certPath, sslkey: plain.keyPath }), {}, who),
          /sslkey ".*" is readable by others.*chmod 0600/,
        );
      } finally {
        await Deno.chmod(plain.keyPath, 0o600);
      }
    });
    await t.step("without a certificate the server refuses (hba cert)", async () => {
      assertRefused(
        await attempt(
          certUrl({
            sslmode: "require",
            sslcertmode: "disable",
            sslcert: plain.certPath,
            sslkey: plain.keyPath,
          }),
          {},
          who,
        ),
        /certificate/,
      );
    });
    await t.step({
      name:
        "sslcrl and sslcrldir: a revoked server certificate is refused, a current list passes, an expired or foreign one fails",
      ignore: lacks(OPENSSL),
      fn: async () => {
        // openssl ca needs a database; a minimal one in the PKI directory.
        const caConfig = async (dir: string) => {
          await Deno.writeTextFile(`${dir}/index.txt`, "");
          await Deno.writeTextFile(
            `${dir}/ca.cnf`,
            `[ca]\ndefault_ca=d\n[d]\ndatabase=${dir}/index.txt\ndefault_md=sha256\ndefault_crl_days=2\n`,
          );
          return [
            "-config",
            `${dir}/ca.cnf`,
            "-keyfile",
            `${dir}/ca.key`,
            "-cert",
            `${dir}/ca.crt`,
          ];
        };
        const ssl = async (args: string[]) => {
          const out = await new Deno.Command("openssl", { args, stdout: "null", stderr: "piped" })
            .output();
          assert.ok(out.success, new TextDecoder().decode(out.stderr));
        };
        const ca = await caConfig(pkiDir);
        const params = {
          sslmode: "verify-full",
          sslrootcert: `${pkiDir}/ca.pem`,
          sslcert: plain.certPath,
          sslkey: plain.keyPath,
        };
        // A current list that revokes something else: the connection passes.
        await ssl(["ca", ...ca, "-revoke", encrypted.certPath]);
        await ssl(["ca", ...ca, "-gencrl", "-out", `${pkiDir}/before.crl`]);
        const before = await attempt(
          certUrl({ ...params, sslcrl: `${pkiDir}/before.crl` }),
          {},
          who,
        );
        assertOk(before);
        assert.deepEqual(before.warnings, []);
        // The server's certificate revoked: refused in one line, from sslcrl and from sslcrldir.
        await ssl(["ca", ...ca, "-revoke", `${pkiDir}/localhost.crt`]);
        await Deno.mkdir(`${pkiDir}/crls`);
        await ssl(["ca", ...ca, "-gencrl", "-out", `${pkiDir}/crls/root.crl`]);
        assertRefused(
          await attempt(certUrl({ ...params, sslcrl: `${pkiDir}/crls/root.crl` }), {}, who),
          /the certificate of 127\.0\.0\.1:\d+ fails the revocation check \(CERT_REVOKED\): the certificate "CN=localhost" is revoked/,
        );
        assertRefused(
          await attempt(certUrl({ ...params, sslcrldir: `${pkiDir}/crls` }), {}, who),
          /CERT_REVOKED/,
        );
        // sslcrldir as libpq names its files (openssl rehash: the issuer's hash, .r0), beside a
        // file that holds no list.
        await Deno.mkdir(`${pkiDir}/hashed`);
        const hash = await new Deno.Command("openssl", {
          args: ["crl", "-hash", "-noout", "-in", `${pkiDir}/crls/root.crl`],
          stdout: "piped",
        }).output();
        const hashed = `${new TextDecoder().decode(hash.stdout).trim()}.r0`;
        assert.match(hashed, /^[0-9a-f]{8}\.r0$/);
        await Deno.copyFile(`${pkiDir}/crls/root.crl`, `${pkiDir}/hashed/${hashed}`);
        await Deno.writeTextFile(`${pkiDir}/hashed/README`, "not a list\n");
        assertRefused(
          await attempt(certUrl({ ...params, sslcrldir: `${pkiDir}/hashed` }), {}, who),
          /fails the revocation check \(CERT_REVOKED\): the certificate "CN=localhost" is revoked/,
        );
        // A list from another CA of the same name (makePki's) says nothing about this server:
        // refused, as OpenSSL's CRL check does. Its signature is what tells them apart.
        const other = await makePki(await Deno.makeTempDir({ dir: pkiDir }));
        await ssl([
          "ca",
          ...await caConfig(other.dir),
          "-gencrl",
          "-out",
          `${other.dir}/other.crl`,
        ]);
        assertRefused(
          await attempt(certUrl({ ...params, sslcrl: `${other.dir}/other.crl` }), {}, who),
          /fails the revocation check \(UNABLE_TO_GET_CRL\): no revocation list from the issuer of "CN=localhost"/,
        );
        // Several lists in one file: the issuer's is found among them.
        const otherList = await Deno.readTextFile(`${other.dir}/other.crl`);
        await Deno.writeTextFile(
          `${pkiDir}/two.crl`,
          otherList + await Deno.readTextFile(`${pkiDir}/before.crl`),
        );
        assertOk(await attempt(certUrl({ ...params, sslcrl: `${pkiDir}/two.crl` }), {}, who));
        await Deno.writeTextFile(
          `${pkiDir}/two.crl`,
          otherList + await Deno.readTextFile(`${pkiDir}/crls/root.crl`),
        );
        assertRefused(
          await attempt(certUrl({ ...params, sslcrl: `${pkiDir}/two.crl` }), {}, who),
          /CERT_REVOKED/,
        );
        // A list past its next update is refused, whatever it lists.
        await ssl([
          "ca",
          ...ca,
          "-gencrl",
          "-crl_lastupdate",
          "20200101000000Z",
          "-crl_nextupdate",
          "20200102000000Z",
          "-out",
          `${pkiDir}/expired.crl`,
        ]);
        assertRefused(
          await attempt(certUrl({ ...params, sslcrl: `${pkiDir}/expired.crl` }), {}, who),
          /the certificate of 127\.0\.0\.1:\d+ fails the revocation check \(CRL_HAS_EXPIRED\): the revocation list is past its next update; see sslcrl \/ sslcrldir/,
        );
        assertRefused(
          await attempt(certUrl({ ...params, sslcrl: plain.certPath }), {}, who),
          /Cannot use sslcrl ".*": not a PEM certificate revocation list/,
        );
      },
    });
    await t.step("target_session_attrs=read-write skips a read-only first host", async () => {
      const hosts = `postgres://postgres:${
        encodeURIComponent(LOCAL_PASSWORD)
      }@127.0.0.1:${cluster.port},${local.hostname}:${LOCAL_PORT}/postgres`;
      const where = async (sql: Sql) =>
        (await sql<{ port: number; ro: string }[]>`
          SELECT current_setting('port')::int AS port, current_setting('transaction_read_only') AS ro`)[
          0
        ];
      assert.deepEqual(assertOk(await attempt(hosts, {}, where)), { port: cluster.port, ro: "on" });
      assert.deepEqual(
        assertOk(await attempt(`${hosts}?target_session_attrs=read-write`, {}, where)),
        { port: LOCAL_PORT, ro: "off" },
      );
      assert.deepEqual(
        assertOk(await attempt(`${hosts}?target_session_attrs=read-only`, {}, where)),
        { port: cluster.port, ro: "on" },
      );
      assert.deepEqual(
        assertOk(
          await attempt(null, {
            PGHOST: `127.0.0.1,${local.hostname}`,
            PGPORT: `${cluster.port},${LOCAL_PORT}`,
            PGUSER: "postgres",
            PGPASSWORD: LOCAL_PASSWORD,
            PGTARGETSESSIONATTRS: "primary",
          }, where),
        )?.port,
        cluster.port,
        "a read-only primary is still a primary",
      );
      // A socket directory and a TCP host in one list (postgres.js alone would use the socket only).
      const mixed =
        `host=${cluster.dir},127.0.0.1 port=${cluster.port},${LOCAL_PORT} user=postgres ` +
        `password=${LOCAL_PASSWORD} dbname=postgres`;
      assert.deepEqual(assertOk(await attempt(mixed, {}, where)), { port: cluster.port, ro: "on" });
      assert.deepEqual(
        assertOk(await attempt(`${mixed} target_session_attrs=read-write`, {}, where)),
        { port: LOCAL_PORT, ro: "off" },
      );
    });
    await t.step(
      "a Unix socket (Cloud SQL's form) is plain, whatever sslmode says, as in libpq",
      async () => {
        const kv =
          `host=${cluster.dir} port=${cluster.port} user=postgres password=${LOCAL_PASSWORD} dbname=postgres sslmode=require`;
        const via = async (sql: Sql) =>
          (await sql<{ addr: string | null; ssl: boolean }[]>`
          SELECT inet_client_addr()::text AS addr, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`)[
            0
          ];
        assert.deepEqual(assertOk(await attempt(kv, {}, via)), { addr: null, ssl: false });
        // requirepeer: the server runs as the cluster helper's OS user when we are root, else as us.
        const server = Deno.uid() === 0 ? TEST_OS_USER : Deno.env.get("USER") ?? "";
        assert.deepEqual(
          assertOk(await attempt(`${kv} requirepeer=${server}`, {}, via)),
          { addr: null, ssl: false },
        );
        assertRefused(
          await attempt(`${kv} requirepeer=someone_else`, {}, via),
          new RegExp(
            `requirepeer is "someone_else", but the socket .*/\\.s\\.PGSQL\\.${cluster.port} belongs to user "${server}": the server behind it does not run as someone_else; nothing was sent$`,
          ),
        );
        assert.deepEqual(
          assertOk(
            await attempt(
              `postgresql://postgres:${encodeURIComponent(LOCAL_PASSWORD)}@${
                encodeURIComponent(cluster.dir)
              }:${cluster.port}/postgres`,
              {},
              via,
            ),
          ),
          { addr: null, ssl: false },
        );
      },
    );
  } finally {
    await Deno.remove(pkiDir, { recursive: true });
  }
});

Deno.test("a server that asks for a password when none was given is told as such, not as a wrong password", async () => {
  const home = await Deno.makeTempDir();
  try {
    const url = new URL(localUrl({}, "127.0.0.1"));
    url.password = "";
    assertRefused(
      await attempt(url.toString(), { HOME: home }, setting("port")),
      /the server asks user postgres for a password and none was given: put it in DATABASE_URL, PGPASSWORD or the password file/,
    );
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

/**
 * A stand-in server that asks for a cleartext password, keeps what it gets and
 * refuses it (28P01), so that a host list moves on to the next host. The n-th
 * connection waits n × `staggerMs` before asking, so that attempts overlap.
 */
async function passwordCatcher(
  staggerMs = 0,
): Promise<AsyncDisposable & { port: number; got: string[] }> {
  const got: string[] = [];
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const message = (type: string, body: Uint8Array) => {
    const out = new Uint8Array(5 + body.length);
    out[0] = type.charCodeAt(0);
    new DataView(out.buffer).setInt32(1, body.length + 4);
    out.set(body, 5);
    return out;
  };
  const server = net.createServer((socket) => {
    const delay = staggerMs * connections++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let buffer = new Uint8Array(0);
    let phase: "start" | "password" = "start";
    socket.on("data", (chunk: Uint8Array) => {
      buffer = new Uint8Array([...buffer, ...chunk]);
      for (;;) {
        const view = new DataView(buffer.buffer);
        if (phase === "start") {
          if (buffer.length < 8) return;
          const length = view.getInt32(0);
          if (length === 8 && view.getInt32(4) === 80877103) {
            buffer = buffer.slice(8);
            socket.write("N"); // no TLS here
            continue;
          }
          if (buffer.length < length) return;
          buffer = buffer.slice(length);
          phase = "password";
          const ask = message("R", new Uint8Array([0, 0, 0, 3])); // cleartext, please
          setTimeout(() => socket.destroyed || socket.write(ask), delay);
          continue;
        }
        if (buffer.length < 5 || buffer.length < 1 + view.getInt32(1)) return;
        got.push(new TextDecoder().decode(buffer.subarray(5, view.getInt32(1))));
        const fields = ["SFATAL", "C28P01", "Mpassword authentication failed", ""];
        socket.end(message("E", new TextEncoder().encode(fields.join("\0") + "\0")));
        return;
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    got,
    async [Symbol.asyncDispose]() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

Deno.test("the password file is looked up per host and port, as libpq does, for concurrent attempts too", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const passfile = `${dir}/pgpass`;
    const write = (lines: string[]) =>
      Deno.writeTextFile(passfile, lines.join("\n") + "\n", { mode: 0o600 });
    await using catcher = await passwordCatcher(60);
    await using second = await passwordCatcher();
    const dead = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const deadPort = (dead.addr as Deno.NetAddr).port;
    dead.close();

    // The first host refuses the connection: the second gets its own entry.
    await write([
      `127.0.0.1:${deadPort}:*:etl:PasswordForPrimaryOnly`,
      `127.0.0.1:${second.port}:*:etl:PasswordForSecond`,
    ]);
    assertRefused(
      await attempt(
        `postgres://etl@127.0.0.1:${deadPort},127.0.0.1:${second.port}/logins?passfile=${passfile}`,
        {},
        setting("port"),
      ),
      /password authentication failed/,
    );
    assert.deepEqual(second.got, ["PasswordForSecond"]);

    // Eight connections at once, each refused by the stand-in and let in by the
    // real server: each host gets its own password, whichever attempt asks.
    await write([
      `127.0.0.1:${catcher.port}:*:postgres:PasswordForTheStandIn`,
      `${local.hostname}:${LOCAL_PORT}:*:postgres:${LOCAL_PASSWORD}`,
    ]);
    const warnings: string[] = [];
    const connection = await loadPgConnection(
      resolvePgTarget({
        value:
          `postgres://postgres@127.0.0.1:${catcher.port},${local.hostname}:${LOCAL_PORT}/postgres?passfile=${passfile}`,
        origin: "DATABASE_URL",
      }, {}),
      (w) => warnings.push(w),
    );
    assert.deepEqual(connection.passwords, ["PasswordForTheStandIn", LOCAL_PASSWORD]);
    const sql = connect({ connection, schema: "public", stateSchema: "login_etl", max: 8 });
    try {
      const ports = await Promise.all(
        Array.from(
          { length: 8 },
          () => sql<{ port: string }[]>`SELECT current_setting('port') AS port, pg_sleep(0.2)`,
        ),
      );
      assert.deepEqual(new Set(ports.map(([row]) => row?.port)), new Set([String(LOCAL_PORT)]));
    } finally {
      await sql.end({ timeout: 1 });
    }
    assert.ok(catcher.got.length >= 2, `${catcher.got.length} attempts`);
    assert.deepEqual(new Set(catcher.got), new Set(["PasswordForTheStandIn"]));
    assert.deepEqual(warnings, []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
