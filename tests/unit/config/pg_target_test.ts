// Unit tests of src/db/connection.ts: where Postgres is, by libpq's rules
// (string over service over PG* variables over defaults), what each parameter
// resolves to, which are named as ignored, the providers' strings as their
// consoles print them, and what never leaks (the password).
import assert from "node:assert/strict";
import { describePgTarget } from "../../../src/db/connection.ts";
import {
  DEFAULT_DATABASE_URL,
  PG_ENV_NAMES,
  type PgTarget,
  resolvePgTarget,
} from "../../../src/config/pg_target.ts";
import { LIBPQ_KEYWORDS } from "../../../src/config/conninfo.ts";
import { ConfigError } from "../../../src/errors.ts";

const url = (value: string) => ({ value, origin: "DATABASE_URL" });
const host = (h: string | null, port = 5432, hostaddr: string | null = null) => ({
  host: h,
  hostaddr,
  port,
});

type Expected = Partial<Record<keyof PgTarget, unknown>>;

function check(target: PgTarget, expected: Expected): void {
  for (const [key, value] of Object.entries(expected)) {
    assert.deepEqual(target[key as keyof PgTarget], value, key);
  }
}

Deno.test("resolvePgTarget() applies libpq's precedence", async (t) => {
  const cases: {
    name: string;
    url: string | null;
    env: Record<string, string>;
    expected: Expected;
  }[] = [
    {
      name: "nothing set: the exercise's default URL",
      url: null,
      env: { USER: "someone" },
      expected: {
        hosts: [host("localhost")],
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
        hosts: [host("db.internal")],
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
      expected: { hosts: [host(null)], user: "maria", database: "analytics", password: null },
    },
    {
      name: "a URL wins over PG* and PG* fills what it leaves out",
      url: "postgres://app@db.example:6543/logins",
      env: { PGHOST: "other", PGUSER: "other", PGPASSWORD: "from-env", PGSSLMODE: "verify-full" },
      expected: {
        hosts: [host("db.example", 6543)],
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
      name: "a keyword=value string, quoted, over PG*",
      url: "host=db port=5433 dbname='my db' user=app password='a b'",
      env: { PGHOST: "other", PGDATABASE: "other" },
      expected: { hosts: [host("db", 5433)], database: "my db", user: "app", password: "a b" },
    },
    {
      name: "an empty value in a string blocks the variable (libpq), then means the default",
      url: "host=db sslmode=''",
      env: { PGSSLMODE: "verify-full" },
      expected: { sslmode: "prefer" },
    },
    {
      name: "several hosts with their ports, and one port for all",
      url: "postgres://h1:5432,h2:5433/d",
      env: {},
      expected: { hosts: [host("h1"), host("h2", 5433)] },
    },
    {
      name: "one port applies to every host",
      url: "host=h1,h2 port=6000",
      env: {},
      expected: { hosts: [host("h1", 6000), host("h2", 6000)] },
    },
    {
      name: "hostaddr: dial the address, keep the name",
      url: "host=db.example hostaddr=10.0.0.5",
      env: {},
      expected: { hosts: [host("db.example", 5432, "10.0.0.5")] },
    },
    {
      name: "hostaddr alone names the host",
      url: null,
      env: { PGHOSTADDR: "127.0.0.1", PGUSER: "u" },
      expected: { hosts: [host("127.0.0.1", 5432, "127.0.0.1")] },
    },
    {
      name: "sslrootcert from the URL or PGSSLROOTCERT",
      url: null,
      env: { PGHOST: "h", PGSSLMODE: "verify-ca", PGSSLROOTCERT: "/etc/ssl/rds.pem" },
      expected: { sslmode: "verify-ca", sslrootcert: "/etc/ssl/rds.pem" },
    },
    {
      name: "sslrootcert=system makes the default verify-full (libpq 16)",
      url: "postgres://db/x?sslrootcert=system",
      env: {},
      expected: { sslmode: "verify-full", sslrootcert: "system" },
    },
    {
      name: "PGREQUIRESSL=1 means require when sslmode is not set",
      url: null,
      env: { PGHOST: "h", PGREQUIRESSL: "1" },
      expected: { sslmode: "require" },
    },
    {
      name: "PGPASSFILE, else ~/.pgpass; passfile in the string wins",
      url: null,
      env: { PGHOST: "h", HOME: "/home/etl" },
      expected: { passfile: "/home/etl/.pgpass", userDir: "/home/etl/.postgresql" },
    },
    {
      name: "passfile in the string",
      url: "host=h passfile=/run/secrets/pgpass",
      env: { PGPASSFILE: "/other" },
      expected: { passfile: "/run/secrets/pgpass" },
    },
    {
      name: "options and PGOPTIONS",
      url: null,
      env: { PGHOST: "h", PGOPTIONS: "-c statement_timeout=1234" },
      expected: { options: "-c statement_timeout=1234" },
    },
    {
      name: "application_name, else fallback_application_name, else login-etl",
      url: "host=h fallback_application_name=nightly",
      env: {},
      expected: { applicationName: "nightly" },
    },
    {
      name: "application_name beats the fallback",
      url: "host=h fallback_application_name=nightly application_name=etl-1",
      env: {},
      expected: { applicationName: "etl-1" },
    },
    {
      name: "connect_timeout: 0 and below wait (a day), 1 is rounded up to 2 (libpq)",
      url: "host=h connect_timeout=1",
      env: {},
      expected: { connectTimeoutSeconds: 2 },
    },
    {
      name: "connect_timeout=0 waits",
      url: null,
      env: { PGHOST: "h", PGCONNECT_TIMEOUT: "0" },
      expected: { connectTimeoutSeconds: 86400 },
    },
    {
      name: "keepalives_idle sets the idle time; keepalives=0 turns them off",
      url: "host=h keepalives_idle=30",
      env: {},
      expected: { keepaliveSeconds: 30 },
    },
    {
      name: "keepalives=0",
      url: "host=h keepalives=0 keepalives_idle=30",
      env: {},
      expected: { keepaliveSeconds: null },
    },
    {
      name: "channel_binding, require_auth, target_session_attrs, load_balance_hosts",
      url:
        "postgres://h1,h2/d?channel_binding=require&require_auth=scram-sha-256&target_session_attrs=read-write&load_balance_hosts=random",
      env: {},
      expected: {
        channelBinding: "require",
        requireAuth: "scram-sha-256",
        targetSessionAttrs: "read-write",
        loadBalanceHosts: true,
      },
    },
    {
      name: "the defaults of those",
      url: "host=h",
      env: {},
      expected: {
        channelBinding: "prefer",
        requireAuth: null,
        targetSessionAttrs: "any",
        loadBalanceHosts: false,
        sslnegotiation: "postgres",
        sslsni: true,
        sslcertmode: "allow",
        sslMinProtocolVersion: "TLSv1.2",
        sslMaxProtocolVersion: null,
      },
    },
    {
      name:
        "PGCHANNELBINDING, PGTARGETSESSIONATTRS, PGSSLNEGOTIATION, PGSSLSNI from the environment",
      url: null,
      env: {
        PGHOST: "h",
        PGSSLMODE: "require",
        PGCHANNELBINDING: "disable",
        PGTARGETSESSIONATTRS: "primary",
        PGSSLNEGOTIATION: "direct",
        PGSSLSNI: "0",
      },
      expected: {
        channelBinding: "disable",
        targetSessionAttrs: "primary",
        sslnegotiation: "direct",
        sslsni: false,
      },
    },
    {
      name: "client certificate settings",
      url:
        "host=h sslcert=/c/client.crt sslkey=/c/client.key sslpassword='p w' sslcrl=/c/root.crl sslcrldir=/c/crl",
      env: {},
      expected: {
        sslcert: "/c/client.crt",
        sslkey: "/c/client.key",
        sslpassword: "p w",
        sslcrl: "/c/root.crl",
        sslcrldir: "/c/crl",
      },
    },
    {
      name: "PGTZ and PGGEQO are sent as session settings; PGDATESTYLE when ISO",
      url: null,
      env: { PGHOST: "h", PGTZ: "Europe/Berlin", PGGEQO: "off", PGDATESTYLE: "ISO, DMY" },
      expected: {
        sessionSettings: { timezone: "Europe/Berlin", geqo: "off", datestyle: "ISO, DMY" },
      },
    },
    {
      name: "a service name is kept for loading, with libpq's files",
      url: "service=etl",
      env: { HOME: "/home/u", PGSYSCONFDIR: "/etc/pg" },
      expected: {
        service: {
          name: "etl",
          userFile: "/home/u/.pg_service.conf",
          userFileNamed: false,
          systemFile: "/etc/pg/pg_service.conf",
        },
      },
    },
    {
      name: "PGSERVICE alone means the PG* variables decide, with PGSERVICEFILE",
      url: null,
      env: { PGSERVICE: "etl", PGSERVICEFILE: "/srv/services.conf" },
      expected: {
        source: "PG* variables",
        service: {
          name: "etl",
          userFile: "/srv/services.conf",
          userFileNamed: true,
          systemFile: "/etc/postgresql-common/pg_service.conf",
        },
      },
    },
  ];
  for (const c of cases) {
    await t.step(
      c.name,
      () => check(resolvePgTarget(c.url === null ? null : url(c.url), c.env), c.expected),
    );
  }
});

Deno.test("resolvePgTarget() names what cannot apply, one entry each, without values", async (t) => {
  const cases: [string, string, Record<string, string>, RegExp[]][] = [
    ["gssencmode=prefer", "host=h gssencmode=prefer", {}, [
      /^gssencmode=prefer \(no GSSAPI encryption/,
    ]],
    ["PGGSSENCMODE=prefer", "host=h", { PGGSSENCMODE: "prefer" }, [/^gssencmode=prefer/]],
    ["Kerberos", "host=h krbsrvname=postgres gsslib=gssapi", {}, [/^krbsrvname/, /^gsslib/]],
    [
      "keepalive details the runtime cannot set",
      "host=h keepalives_interval=5 keepalives_count=3 tcp_user_timeout=1000",
      {},
      [/^keepalives_interval/, /^keepalives_count/, /^tcp_user_timeout/],
    ],
    ["OAuth, secret value not shown", "host=h oauth_client_secret=s3cr3t-x", {}, [
      /^oauth_client_secret \(no OAuth/,
    ]],
    ["replication", "host=h replication=database", {}, [/^replication/]],
    ["a non-UTF8 client_encoding", "host=h client_encoding=LATIN1", {}, [/^client_encoding/]],
    ["sslcertmode=require", "host=h sslcertmode=require", {}, [/^sslcertmode=require/]],
    ["PGDATESTYLE not ISO", "host=h", { PGDATESTYLE: "SQL, DMY" }, [/^PGDATESTYLE/]],
  ];
  for (const [name, input, env, expected] of cases) {
    await t.step(name, () => {
      const { ignored } = resolvePgTarget(url(input), env);
      assert.equal(ignored.length, expected.length, JSON.stringify(ignored));
      expected.forEach((pattern, i) => assert.match(ignored[i] ?? "", pattern));
      assert.ok(!ignored.join().includes("s3cr3t"));
    });
  }
  await t.step("what is applied or left at its default is not named", () => {
    const target = resolvePgTarget(
      url(
        "host=h gssencmode=disable gssdelegation=0 sslcompression=0 client_encoding=UTF8 replication=false keepalives=1",
      ),
      {},
    );
    assert.deepEqual(target.ignored, []);
  });
  await t.step("requirepeer (and PGREQUIREPEER) is applied, not named", () => {
    const target = resolvePgTarget(url("host=/tmp requirepeer=postgres"), {});
    assert.deepEqual([target.ignored, target.requirePeer], [[], "postgres"]);
    assert.equal(resolvePgTarget(null, { PGREQUIREPEER: "pg" }).requirePeer, "pg");
  });
});

Deno.test("resolvePgTarget() reads the connection strings the providers' consoles print", async (t) => {
  const cases: { name: string; input: string; expected: Expected }[] = [
    {
      name: "Neon, pooled, with channel binding",
      input:
        "postgresql://neondb_owner:npg_AbC123dEf@ep-cool-darkness-a1b2c3d4-pooler.us-east-2.aws.neon.tech/neondb?sslmode=require&channel_binding=require",
      expected: {
        hosts: [host("ep-cool-darkness-a1b2c3d4-pooler.us-east-2.aws.neon.tech")],
        user: "neondb_owner",
        password: "npg_AbC123dEf",
        database: "neondb",
        sslmode: "require",
        channelBinding: "require",
        ignored: [],
      },
    },
    {
      name: "Neon, direct, port written out",
      input:
        "postgresql://alex:AbC123dEf@ep-cool-darkness-123456.us-east-2.aws.neon.tech:5432/dbname?sslmode=require",
      expected: {
        hosts: [host("ep-cool-darkness-123456.us-east-2.aws.neon.tech")],
        database: "dbname",
      },
    },
    {
      name: "Supabase transaction pooler (user carries the project ref)",
      input:
        "postgresql://postgres.apbkobhfnmcqqzqeeqss:s3cr%40t@aws-0-eu-west-1.pooler.supabase.com:6543/postgres",
      expected: {
        hosts: [host("aws-0-eu-west-1.pooler.supabase.com", 6543)],
        user: "postgres.apbkobhfnmcqqzqeeqss",
        password: "s3cr@t",
        database: "postgres",
        sslmode: "prefer",
      },
    },
    {
      name: "Supabase session pooler",
      input:
        "postgres://postgres.apbkobhfnmcqqzqeeqss:pw@aws-0-us-east-1.pooler.supabase.com:5432/postgres",
      expected: {
        hosts: [host("aws-0-us-east-1.pooler.supabase.com")],
        user: "postgres.apbkobhfnmcqqzqeeqss",
      },
    },
    {
      name: "Supabase direct",
      input: "postgresql://postgres:pw@db.apbkobhfnmcqqzqeeqss.supabase.co:5432/postgres",
      expected: { hosts: [host("db.apbkobhfnmcqqzqeeqss.supabase.co")] },
    },
    {
      name: "RDS with the CA bundle and verify-full",
      input:
        "postgres://etl:pw@mydb.123456789012.us-east-1.rds.amazonaws.com:5432/logins?sslmode=verify-full&sslrootcert=/certs/global-bundle.pem",
      expected: {
        hosts: [host("mydb.123456789012.us-east-1.rds.amazonaws.com")],
        sslmode: "verify-full",
        sslrootcert: "/certs/global-bundle.pem",
      },
    },
    {
      name: "RDS as psql's keyword=value form",
      input:
        "host=mydb.123456789012.us-east-1.rds.amazonaws.com port=5432 dbname=logins user=etl sslrootcert=global-bundle.pem sslmode=verify-full",
      expected: {
        hosts: [host("mydb.123456789012.us-east-1.rds.amazonaws.com")],
        sslmode: "verify-full",
        sslrootcert: "global-bundle.pem",
      },
    },
    {
      name: "Aurora cluster endpoints for failover",
      input:
        "postgres://etl:pw@db.cluster-abc.eu-west-1.rds.amazonaws.com,db.cluster-ro-abc.eu-west-1.rds.amazonaws.com/logins?target_session_attrs=read-write&sslmode=require",
      expected: {
        hosts: [
          host("db.cluster-abc.eu-west-1.rds.amazonaws.com"),
          host("db.cluster-ro-abc.eu-west-1.rds.amazonaws.com"),
        ],
        targetSessionAttrs: "read-write",
      },
    },
    {
      name: "Cloud SQL over the Auth Proxy's Unix socket (keyword=value)",
      input:
        "host=/cloudsql/my-project:us-central1:my-instance user=etl password=pw dbname=logins sslmode=disable",
      expected: {
        hosts: [host("/cloudsql/my-project:us-central1:my-instance")],
        sslmode: "disable",
      },
    },
    {
      name: "Cloud SQL's socket as a URL query parameter",
      input: "postgresql://etl:pw@/logins?host=/cloudsql/my-project:us-central1:my-instance",
      expected: {
        hosts: [host("/cloudsql/my-project:us-central1:my-instance")],
        database: "logins",
      },
    },
    {
      name: "Cloud SQL over a public IP with client certificates",
      input:
        "sslmode=verify-ca sslrootcert=server-ca.pem sslcert=client-cert.pem sslkey=client-key.pem hostaddr=34.1.2.3 port=5432 user=etl dbname=logins",
      expected: {
        hosts: [host("34.1.2.3", 5432, "34.1.2.3")],
        sslmode: "verify-ca",
        sslcert: "client-cert.pem",
        sslkey: "client-key.pem",
      },
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => check(resolvePgTarget(url(c.input), {}), c.expected));
  }
});

Deno.test("resolvePgTarget() refuses bad settings with one line that never echoes the password", async (t) => {
  const password = "Hunter2-secret";
  const cases: [string, string | null, Record<string, string>, RegExp][] = [
    ["not a URL", `db.example/${password}`, {}, /Invalid DATABASE_URL: a word without "="/],
    [
      "another scheme",
      `mysql://app:${password}@db/x`,
      {},
      /must be a URL starting with postgres:\/\//,
    ],
    [
      "unknown parameter",
      `postgres://app:${password}@db/x?schema=a`,
      {},
      /unknown connection parameter "schema"/,
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
      "ports that do not match the hosts",
      `postgres://h1:1,h2:2,h3:3/x?port=1,2`,
      {},
      /2 port numbers for 3 hosts/,
    ],
    [
      "hostaddr count",
      `host=a,b hostaddr=10.0.0.1 password=${password}`,
      {},
      /2 host names but 1 hostaddr/,
    ],
    ["hostaddr not an address", `host=a hostaddr=db.example`, {}, /Invalid hostaddr/],
    [
      "bad channel_binding",
      `host=h channel_binding=always`,
      {},
      /Invalid channel_binding "always"/,
    ],
    [
      "bad target_session_attrs",
      `host=h target_session_attrs=rw`,
      {},
      /Invalid target_session_attrs/,
    ],
    [
      "bad require_auth method",
      `host=h require_auth=kerberos`,
      {},
      /Invalid require_auth method "kerberos"/,
    ],
    ["mixed require_auth", `host=h require_auth=!md5,password`, {}, /cannot be mixed/],
    ["require_auth twice", `host=h require_auth=md5,md5`, {}, /listed twice/],
    ["gssencmode=require", `host=h gssencmode=require`, {}, /gssencmode=require .* cannot be met/],
    [
      "sslrootcert=system with a weak sslmode",
      `host=h sslrootcert=system sslmode=require`,
      {},
      /too weak with sslrootcert=system/,
    ],
    [
      "sslnegotiation=direct with prefer",
      `host=h sslnegotiation=direct`,
      {},
      /too weak with sslnegotiation=direct/,
    ],
    [
      "TLS range upside down",
      `host=h ssl_min_protocol_version=TLSv1.3 ssl_max_protocol_version=TLSv1.2`,
      {},
      /TLS version range/,
    ],
    ["connect_timeout not a number", `host=h connect_timeout=soon`, {}, /Invalid connect_timeout/],
    [
      "min_protocol_version=3.2",
      `host=h min_protocol_version=3.2`,
      {},
      /cannot be met: postgres.js speaks protocol 3.0/,
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

Deno.test("a PgTarget keeps its passwords out of JSON, inspection and its description", () => {
  const target = resolvePgTarget(
    url("postgres://app:Sup3r-secret@db:5432/x?sslmode=require&sslpassword=K3y-secret"),
    {},
  );
  assert.equal(target.password, "Sup3r-secret");
  assert.equal(target.sslpassword, "K3y-secret");
  for (const text of [JSON.stringify(target), Deno.inspect(target), describePgTarget(target)]) {
    assert.ok(!text.includes("Sup3r-secret") && !text.includes("K3y-secret"), text);
  }
  assert.equal(
    describePgTarget(target),
    "postgres://app@db:5432/x (sslmode=require, from DATABASE_URL)",
  );
  assert.equal(
    describePgTarget(resolvePgTarget(url("postgres://u@h1,[::1]:5433/x"), {})),
    "postgres://u@h1:5432,[::1]:5433/x (sslmode=prefer, from DATABASE_URL)",
  );
  // A socket directory as libpq's URLs spell it, so the line can be pasted back.
  assert.equal(
    describePgTarget(resolvePgTarget(url("postgres://u@%2Fvar%2Frun%2Fpostgresql/x"), {})),
    "postgres://u@%2Fvar%2Frun%2Fpostgresql:5432/x (sslmode=prefer, from DATABASE_URL)",
  );
  assert.ok(DEFAULT_DATABASE_URL.startsWith("postgres://"));
});

Deno.test("PG_ENV_NAMES lists every variable libpq reads", () => {
  for (const name of Object.values(LIBPQ_KEYWORDS)) {
    if (name !== null) assert.ok(PG_ENV_NAMES.includes(name), name);
  }
  for (
    const name of ["PGSERVICEFILE", "PGSYSCONFDIR", "PGREQUIRESSL", "PGTZ", "PGGEQO", "PGDATESTYLE"]
  ) {
    assert.ok(PG_ENV_NAMES.includes(name), name);
  }
});
