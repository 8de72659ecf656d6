// Versioned migrations against the real Postgres: a populated 0.1 database
// brought to the latest version without losing a row, a ledger id or an
// erasure; sql/schema.sql through psql giving the same catalog as migrate;
// consumers starting together migrating once; a role that may not migrate
// told what to run; the partitioned ledger's upkeep, day by day.

import assert from "node:assert/strict";
import { LATEST_VERSION, MIGRATIONS } from "../../src/db/migrations.ts";
import { prune } from "../../src/db/ledger.ts";
import { ensureSchema, migrate, schemaState } from "../../src/db/schema.ts";
import { postgresStore } from "../../src/db/write.ts";
import { Database } from "../../src/db/pool.ts";
import type { LoginRow, Masked, WriteItem } from "../../src/types.ts";
import { failureLine, runCli } from "../helpers/cli.ts";
import { psqlFiles } from "../helpers/psql.ts";
import {
  DATABASE_URL,
  freshSchema,
  reportFigures,
  startSqs,
  testConnection,
  type TestDb,
} from "../helpers/services.ts";

/** Applies only versions up to `version`, as an older login-etl left the database. */
async function migrateTo(db: TestDb, version: number): Promise<void> {
  for (const m of MIGRATIONS.filter((m) => m.version <= version)) {
    for (const statement of m.statements) await db.sql.unsafe(statement);
  }
}

/** The schema's shape as the catalog tells it: columns, constraints, indexes, functions, views. */
async function catalog(db: TestDb): Promise<string[]> {
  const rows = await db.sql<{ line: string }[]>`
    SELECT format('column %s.%s %s %s %s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                  a.attnotnull, pg_get_expr(d.adbin, d.adrelid)) AS line
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE c.relnamespace = ${db.schema}::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
      AND c.relkind IN ('r', 'p', 'v') AND c.relname !~ '_p[0-9]{8}$'
    UNION ALL
    SELECT format('constraint %s %s', conname, pg_get_constraintdef(oid))
    FROM pg_constraint WHERE connamespace = ${db.schema}::regnamespace
    UNION ALL
    SELECT format('index %s', regexp_replace(indexdef, ' ON \\S+\\.', ' ON '))
    FROM pg_indexes WHERE schemaname = ${db.schema} AND indexname !~ '_p[0-9]{8}'
    UNION ALL
    SELECT format('function %s %s %s', p.oid::regprocedure, p.prosecdef, md5(p.prosrc))
    FROM pg_proc p WHERE p.pronamespace = ${db.schema}::regnamespace
    UNION ALL
    SELECT format('view %s %s', viewname, md5(definition))
    FROM pg_views WHERE schemaname = ${db.schema}
    UNION ALL
    SELECT format('partition %s %s', c.relname, pg_get_expr(c.relpartbound, c.oid))
    FROM pg_class c WHERE c.relnamespace = ${db.schema}::regnamespace AND c.relispartition
      AND c.relname !~ '_p[0-9]{8}$'
    UNION ALL
    SELECT format('migration %s %s', version, name) FROM login_etl_migrations
    ORDER BY 1`;
  return rows.map((r) => r.line.replaceAll(db.schema, "<schema>"));
}

const row = (user: string, ip: string, device: string, date = "2026-01-02"): LoginRow => ({
  user_id: user,
  device_type: "ios",
  masked_ip: ip as Masked,
  masked_device_id: device as Masked,
  locale: "DE",
  app_version: 2003000,
  create_date: date,
});

Deno.test("a fresh schema migrates to the latest version, recorded version by version", async () => {
  await using db = await freshSchema();
  assert.deepEqual((await schemaState(db.sql)).version, 0);
  const applied = await migrate(db.sql, { schema: db.schema });
  assert.deepEqual(applied.map((m) => m.version), MIGRATIONS.map((m) => m.version));
  const recorded = await db.sql<{ version: number; source: string; applied_by: string }[]>`
    SELECT version, source, applied_by FROM login_etl_migrations ORDER BY version`;
  assert.deepEqual(
    recorded.map((r) => [r.version, r.source]),
    MIGRATIONS.map((m) => [m.version, "migrate"]),
  );
  assert.equal(recorded[0]?.applied_by, new URL(DATABASE_URL).username);
  assert.deepEqual(
    await migrate(db.sql, { schema: db.schema }),
    [],
    "a second run has nothing to do",
  );
});

Deno.test("a populated 0.1 database migrates without losing a row, a ledger id or an erasure", async () => {
  await using db = await freshSchema();
  await migrateTo(db, 1); // exactly 0.1's tables, no migrations table
  // 0.1's data: rows, ledger ids, rejects, a vault entry, a tombstone, an audit row.
  await db
    .sql`INSERT INTO user_logins SELECT 'u' || i, 'ios', 'k1:ip' || (i % 7), 'k1:dev' || (i % 5),
                 'DE', 1000000 + i, DATE '2026-01-01' + (i % 3) FROM generate_series(1, 500) AS i`;
  await db
    .sql`INSERT INTO login_etl_ledger (message_id) SELECT 'm' || i FROM generate_series(1, 500) AS i`;
  await db
    .sql`INSERT INTO login_etl_rejects (message_id, reason, detail, body_bytes, body_hmac, sent_at)
               VALUES ('bad-1', 'not_json', 'not JSON', 3, 'k1:h', now())`;
  await db.sql`INSERT INTO login_etl_vault (masked_value, field, ciphertext, iv, key_id)
               VALUES ('k1:ip1', 'ip', '\\x01'::bytea, '\\x02'::bytea, 'v1'),
                      ('k1:ip2', 'ip', '\\x03'::bytea, '\\x04'::bytea, 'v1')`;
  await db.sql`INSERT INTO login_etl_forgotten (masked_value) VALUES ('k1:ip2'), ('k1:ip3')`;
  await db
    .sql`INSERT INTO login_etl_audit (actor, action, outcome) VALUES ('alice', 'forget', 'success')`;

  assert.equal((await schemaState(db.sql)).version, 1, "0.1 is recognised by its tables");
  const started = performance.now();
  const applied = await ensureSchema(db.sql, {
    connection: await testConnection(),
    schema: db.schema,
  });
  reportFigures("migrate 0.1 (500 rows)", { ms: Math.round(performance.now() - started) });
  assert.deepEqual(applied.map((m) => m.version), [2, 3, 4, 5]);
  const recorded = await db.sql<{ version: number; source: string }[]>`
    SELECT version, source FROM login_etl_migrations ORDER BY version`;
  assert.deepEqual(recorded[0], { version: 1, source: "found" });

  const [counts] = await db.sql<{ rows: number; ledger: number; rejects: number }[]>`
    SELECT (SELECT count(*)::int FROM user_logins) AS rows,
           (SELECT count(*)::int FROM login_etl_ledger) AS ledger,
           (SELECT count(*)::int FROM login_etl_rejects) AS rejects`;
  assert.deepEqual(counts, { rows: 500, ledger: 500, rejects: 1 });
  const vault = await db.sql<{ masked_value: string; live: boolean }[]>`
    SELECT masked_value, erased_at IS NULL AS live FROM login_etl_vault ORDER BY 1`;
  assert.deepEqual(vault.map((v) => [v.masked_value, v.live]), [
    ["k1:ip1", true],
    ["k1:ip2", false],
    ["k1:ip3", false],
  ], "0.1's tombstones became vault tombstones, the erased ciphertext is gone");
  assert.equal(
    (await db.sql`SELECT to_regclass('login_etl_forgotten') AS t`)[0]?.t,
    null,
  );

  // An id 0.1 committed, redelivered after the migration with its real day,
  // is still found: nothing is written twice.
  await prune(db.sql, "ledger", 14);
  const database = new Database({ connection: await testConnection(), schema: db.schema, max: 2 });
  try {
    const store = postgresStore(database, { writeTimeoutMs: 10_000 });
    const today = new Date().toISOString().slice(0, 10);
    const items: WriteItem[] = [
      { kind: "row", id: "m7", sentDate: today, row: row("again", "k1:x", "k1:y", today) },
      { kind: "row", id: "new-1", sentDate: today, row: row("new", "k1:x", "k1:y", today) },
      { kind: "row", id: "undated-1", sentDate: null, row: row("undated", "k1:x", "k1:y", today) },
    ];
    const first = await store.write(items);
    assert.deepEqual([first.inserted, first.redelivered], [2, 1]);
    const second = await store.write(items);
    assert.deepEqual(
      [second.inserted, second.redelivered],
      [0, 3],
      "redeliveries after the migration",
    );
  } finally {
    await database.end();
  }
  const [after] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM user_logins`;
  assert.equal(after?.n, 502);
});

Deno.test("sql/schema.sql applied with psql gives the catalog migrate gives, and records the same versions", async () => {
  await using viaMigrate = await freshSchema();
  await using viaPsql = await freshSchema();
  await migrate(viaMigrate.sql, { schema: viaMigrate.schema });
  await psqlFiles(viaPsql.schema, [new URL("../../sql/schema.sql", import.meta.url)]);
  const [a, b] = [await catalog(viaMigrate), await catalog(viaPsql)];
  assert.ok(a.length > 40, `catalog read: ${a.length} lines`);
  assert.deepEqual(b, a);
  const sources = await viaPsql.sql<
    { source: string }[]
  >`SELECT DISTINCT source FROM login_etl_migrations`;
  assert.deepEqual(sources.map((s) => s.source), ["schema.sql"]);
  assert.equal((await schemaState(viaPsql.sql)).version, LATEST_VERSION);
});

Deno.test("consumers starting together on an empty schema migrate it once", async () => {
  await using db = await freshSchema();
  const connection = await testConnection();
  const pools = Array.from(
    { length: 4 },
    () => new Database({ connection, schema: db.schema, max: 2 }),
  );
  try {
    const applied = await Promise.all(
      pools.map((p) => ensureSchema(p.sql, { connection, schema: db.schema })),
    );
    assert.deepEqual(applied.map((a) => a.length).sort(), [0, 0, 0, MIGRATIONS.length]);
    const [n] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM login_etl_migrations`;
    assert.equal(n?.n, MIGRATIONS.length);
  } finally {
    await Promise.all(pools.map((p) => p.end()));
  }
});

Deno.test("a role that may not migrate is told to run migrate as the owner; a newer schema is refused", async () => {
  await using db = await freshSchema();
  await migrateTo(db, 2);
  await db.sql`CREATE TABLE login_etl_migrations (version integer PRIMARY KEY, name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now(), applied_by text NOT NULL DEFAULT session_user,
                 source text NOT NULL)`;
  await db
    .sql`INSERT INTO login_etl_migrations (version, name, source) VALUES (1, 'a', 'found'), (2, 'b', 'found')`;
  const user = `lowly_${Date.now().toString(36)}_${Deno.pid}`;
  const password = crypto.randomUUID();
  await db.sql.unsafe(`CREATE ROLE "${user}" LOGIN PASSWORD '${password}';
    GRANT USAGE ON SCHEMA "${db.schema}" TO "${user}";
    GRANT SELECT ON ALL TABLES IN SCHEMA "${db.schema}" TO "${user}"`);
  try {
    const url = new URL(DATABASE_URL);
    url.username = user;
    url.password = password;
    await using sqs = await startSqs();
    const result = await runCli(["drain", "--queue-url", sqs.createQueue()], {
      env: {
        DATABASE_URL: url.toString(),
        LOGIN_ETL_SCHEMA: db.schema,
        PII_HMAC_KEY: "a test key of at least thirty-two bytes!",
      },
    });
    assert.equal(result.code, 1, result.stderr);
    assert.match(
      failureLine(result),
      /^error: The schema in \w+ is at version 2 and this login-etl needs 5, but role lowly_\w+ may not change it; run `login-etl migrate` as the owner role \(or apply sql\/schema.sql\)$/,
    );
    const dry = await runCli(["migrate", "--dry-run"], {
      env: { DATABASE_URL: url.toString(), LOGIN_ETL_SCHEMA: db.schema },
    });
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /is at version 2; this login-etl needs 5/);
    assert.match(dry.stdout, /-- Version 5: ledger partitioned by day/);
    const connection = { ...(await testConnection()), user, password };
    const pool = new Database({ connection, schema: db.schema, max: 1 });
    try {
      await assert.rejects(
        ensureSchema(pool.sql, { connection, schema: db.schema }),
        /at version 2 and this login-etl needs 5, but role lowly_\w+ may not change it; run `login-etl migrate` as the owner role/,
      );
    } finally {
      await pool.end();
    }
    assert.equal((await schemaState(db.sql)).version, 2, "nothing half-applied");
    await db
      .sql`INSERT INTO login_etl_migrations (version, name, source) VALUES (99, 'future', 'migrate')`;
    await assert.rejects(
      ensureSchema(db.sql, { connection: await testConnection(), schema: db.schema }),
      /at version 99, newer than this login-etl knows \(5\)/,
    );
  } finally {
    await db.sql.unsafe(`DROP OWNED BY "${user}"; DROP ROLE "${user}"`);
  }
});

Deno.test("login-etl migrate applies what is pending, one line each, and then has nothing to do", async () => {
  await using db = await freshSchema();
  await migrateTo(db, 1);
  const env = { DATABASE_URL, LOGIN_ETL_SCHEMA: db.schema };
  const first = await runCli(["migrate"], { env });
  assert.equal(first.code, 0, first.stderr);
  assert.deepEqual(
    first.stdout.trim().split("\n").slice(0, 4).map((l) => l.replace(/\(\d+ ms\)/, "(ms)")),
    MIGRATIONS.slice(1).map((m) => `Applied ${m.version}: ${m.name} (ms)`),
  );
  const second = await runCli(["migrate"], { env });
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stdout, /^Nothing to do: schema \w+ at .* is at version 5\.\n$/);
});

Deno.test("the ledger's upkeep: day partitions ahead, old days dropped, undated and stray ids aged out by commit time", async () => {
  await using db = await freshSchema();
  await migrate(db.sql, { schema: db.schema });
  const days = async () =>
    (await db.sql<{ name: string }[]>`
      SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = 'login_etl_ledger'::regclass AND c.relname ~ '_p[0-9]{8}$' ORDER BY 1`)
      .map((r) => r.name.slice(-8));
  const ymd = (offset: number) =>
    new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10).replaceAll("-", "");

  const first = await prune(db.sql, "ledger", 14);
  assert.equal(first.partitionsCreated, 19); // 15 days back (retention + 1), today, 3 ahead
  assert.deepEqual((await days()).at(0), ymd(-15));
  assert.deepEqual((await days()).at(-1), ymd(3));

  // Rows in an old day, undated ones, and a stray far-future day in DEFAULT.
  await db.sql`INSERT INTO login_etl_ledger (message_id, sent_date, committed_at) VALUES
    ('old', (now() AT TIME ZONE 'UTC')::date - 15, now() - interval '15 days'),
    ('undated-old', '-infinity', now() - interval '20 days'),
    ('undated-new', '-infinity', now()),
    ('stray', DATE '2099-01-01', now() - interval '30 days')`;
  const where = await db.sql<{ id: string; part: string }[]>`
    SELECT message_id AS id, tableoid::regclass::text AS part FROM login_etl_ledger ORDER BY 1`;
  assert.deepEqual(where.map((w) => w.part.replace(/.*\./, "")), [
    `login_etl_ledger_p${ymd(-15)}`,
    "login_etl_ledger_other",
    "login_etl_ledger_undated",
    "login_etl_ledger_undated",
  ]);

  // A shorter retention drops whole days and deletes aged undated and stray ids.
  const second = await prune(db.sql, "ledger", 7);
  assert.equal(second.partitionsDropped, 7);
  assert.equal(second.deleted, 2);
  assert.deepEqual((await days()).at(0), ymd(-8));
  const left = await db.sql<
    { id: string }[]
  >`SELECT message_id AS id FROM login_etl_ledger ORDER BY 1`;
  assert.deepEqual(left.map((l) => l.id), ["undated-new"]);

  // A day whose ids already sit in DEFAULT gets no partition (they would conflict).
  await db
    .sql`INSERT INTO login_etl_ledger (message_id, sent_date) VALUES ('early', DATE '2099-01-01')`;
  await db.sql.unsafe(`SELECT * FROM login_etl_ledger_maintain(7, 10000)`);
  assert.ok(!(await days()).includes("20990101"));
});
