// Versioned migrations against the real Postgres: a fresh schema getting
// the two-schema layout; a populated 0.1 database brought to the latest
// version without losing a row, a ledger id or an erasure; the version found
// wherever the migrations table is; sql/schema.sql through psql giving the
// same catalog as migrate; consumers starting together (on nothing, or on
// version 5's layout) migrating once; a role that may not migrate told what
// to run; the partitioned ledger's upkeep, day by day. What the server's SQL
// decides (the catalog, psql's path, the old layouts, privileges, the
// ledger's partitions) runs on PostgreSQL 13, 15 and 18.

import assert from "node:assert/strict";
import { LATEST_VERSION, MIGRATIONS } from "../../src/db/migrations.ts";
import { prune } from "../../src/db/ledger.ts";
import { ensureSchema, migrate, schemaState } from "../../src/db/schema.ts";
import { postgresStore } from "../../src/db/write.ts";
import { Database } from "../../src/db/pool.ts";
import type { LoginRow, Masked, WriteItem } from "../../src/types.ts";
import { failureLine, runCli } from "../helpers/cli.ts";
import { runInProcess } from "../helpers/in_process.ts";
import { eachMajorWithPsql, psqlFiles } from "../helpers/psql.ts";
import { migrateToV5, V5 } from "../helpers/layout_v5.ts";
import { eachMajor } from "../helpers/majors.ts";
import {
  DATABASE_URL,
  freshSchema,
  onOneUtcDay,
  reportFigures,
  startSqs,
  testConnection,
  type TestDb,
  uniqueName,
} from "../helpers/services.ts";

/** Applies only versions up to `version`, as an older login-etl left the database. */
async function migrateTo(db: TestDb, version: number): Promise<void> {
  for (const m of MIGRATIONS.filter((m) => m.version <= version)) {
    for (const statement of m.statements) await db.sql.unsafe(statement);
  }
}

/**
 * The shape of both schemas as the catalog tells it: columns, constraints,
 * indexes, functions (with their settings), views, grants, each with the
 * schema it is in. Function bodies and views name the state schema (from
 * version 7 on, every table they use): hashed with the names replaced.
 */
async function catalog(db: TestDb): Promise<string[]> {
  const both = [db.schema, db.stateSchema];
  const rows = await db.sql<{ line: string }[]>`
    WITH ns AS (SELECT oid, nspname FROM pg_namespace WHERE nspname = ANY(${both}::text[]))
    SELECT format('column %s.%s.%s %s %s %s', ns.nspname, c.relname, a.attname,
                  format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid)) AS line
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN ns ON ns.oid = c.relnamespace
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attnum > 0 AND NOT a.attisdropped
      AND c.relkind IN ('r', 'p', 'v') AND c.relname !~ '_p[0-9]{8}$'
    UNION ALL
    SELECT format('constraint %s.%s %s', ns.nspname, conname, pg_get_constraintdef(k.oid))
    FROM pg_constraint k JOIN ns ON ns.oid = k.connamespace
    UNION ALL
    SELECT format('index %s %s', schemaname, regexp_replace(indexdef, ' ON \\S+\\.', ' ON '))
    FROM pg_indexes WHERE schemaname = ANY(${both}::text[]) AND indexname !~ '_p[0-9]{8}'
    UNION ALL
    SELECT format('function %s %s %s %s', p.oid::regprocedure, p.prosecdef, p.proconfig,
                  md5(replace(replace(p.prosrc, ${db.stateSchema}, '<state>'), ${db.schema}, '<schema>')))
    FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
    UNION ALL
    SELECT format('view %s.%s %s', schemaname, viewname,
                  md5(replace(replace(definition, ${db.stateSchema}, '<state>'), ${db.schema}, '<schema>')))
    FROM pg_views WHERE schemaname = ANY(${both}::text[])
    UNION ALL
    SELECT format('partition %s.%s %s', ns.nspname, c.relname, pg_get_expr(c.relpartbound, c.oid))
    FROM pg_class c JOIN ns ON ns.oid = c.relnamespace WHERE c.relispartition
      AND c.relname !~ '_p[0-9]{8}$'
    UNION ALL
    SELECT format('grant %s.%s %s', ns.nspname, c.relname, c.relacl)
    FROM pg_class c JOIN ns ON ns.oid = c.relnamespace WHERE c.relacl IS NOT NULL
    UNION ALL
    SELECT format('layout %s', data_schema) FROM ${db.sql(db.stateSchema)}.login_etl_layout
    UNION ALL
    SELECT format('migration %s %s', version, name) FROM ${
    db.sql(db.stateSchema)
  }.login_etl_migrations
    ORDER BY 1`;
  // The state schema's name holds the data schema's: replace it first.
  return rows.map((r) =>
    r.line.replaceAll(db.stateSchema, "<state>").replaceAll(db.schema, "<schema>")
  );
}

/** What each schema holds: relations by kind, and functions. */
async function holdings(db: TestDb, schema: string): Promise<string[]> {
  const rows = await db.sql<{ what: string }[]>`
    SELECT c.relkind::text || ' ' || c.relname AS what FROM pg_class c
    WHERE c.relnamespace = to_regnamespace(${`"${schema}"`}) AND c.relkind IN ('r', 'p', 'v', 'S')
      AND c.relname !~ '_p[0-9]{8}$'
    UNION ALL
    SELECT 'f ' || p.proname FROM pg_proc p WHERE p.pronamespace = to_regnamespace(${`"${schema}"`})
    ORDER BY 1`;
  return rows.map((r) => r.what);
}

/**
 * What the data schema holds after version 6: the analysts' things, and the
 * view of schema versions that makes a login-etl built before version 6
 * refuse to start there.
 */
const ANALYSTS_ONLY = [
  "f app_version_text",
  "r user_logins",
  "v login_etl_migrations",
  "v user_logins_duplicate_devices",
  "v user_logins_duplicate_ips",
];

/** What the state schema holds at the latest version (version 8 added the inbox, claims and links). */
const STATE_HOLDS = [
  "S login_etl_audit_id_seq",
  "S login_etl_inbox_claims_id_seq",
  "S login_etl_release_tickets_id_seq",
  "S login_etl_vault_inbox_id_seq",
  "f login_etl_audit_list",
  "f login_etl_audit_note",
  "f login_etl_forget",
  "f login_etl_hmac_keys_needed",
  "f login_etl_inbox_claim",
  "f login_etl_inbox_claimed",
  "f login_etl_inbox_settle",
  "f login_etl_ledger_maintain",
  "f login_etl_linked",
  "f login_etl_lock_masks",
  "f login_etl_register_key",
  "f login_etl_release",
  "f login_etl_release_request",
  "f login_etl_vault_drop_erased",
  "f login_etl_vault_put",
  "p login_etl_ledger",
  "r login_etl_audit",
  "r login_etl_inbox_claims",
  "r login_etl_key_retirements",
  "r login_etl_keys",
  "r login_etl_layout",
  "r login_etl_ledger_other",
  "r login_etl_ledger_undated",
  "r login_etl_locks",
  "r login_etl_migrations",
  "r login_etl_rejects",
  "r login_etl_release_tickets",
  "r login_etl_vault",
  "r login_etl_vault_inbox",
  "r login_etl_vault_links",
];

/** The versions after `version`, as `migrate` applies them. */
const versionsAfter = (version: number) =>
  MIGRATIONS.filter((m) => m.version > version).map((m) => m.version);

const row = (user: string, ip: string, device: string, date = "2026-01-02"): LoginRow => ({
  user_id: user,
  device_type: "ios",
  masked_ip: ip as Masked,
  masked_device_id: device as Masked,
  locale: "DE",
  app_version: 2003000,
  create_date: date,
});

eachMajor.test("a fresh schema migrates to the latest version, recorded version by version", async ({ pg }) => {
  await using db = await freshSchema(pg);
  assert.deepEqual((await schemaState(db.sql, db.schemas)).version, 0);
  const applied = await migrate(db.sql, db.schemas);
  assert.deepEqual(applied.map((m) => m.version), MIGRATIONS.map((m) => m.version));
  const recorded = await db.sql<{ version: number; source: string; applied_by: string }[]>`
    SELECT version, source, applied_by FROM ${db.sql(db.stateSchema)}.login_etl_migrations
    ORDER BY version`;
  assert.deepEqual(
    recorded.map((r) => [r.version, r.source]),
    MIGRATIONS.map((m) => [m.version, "migrate"]),
  );
  assert.equal(recorded[0]?.applied_by, new URL(pg.url).username);
  assert.deepEqual(
    await migrate(db.sql, db.schemas),
    [],
    "a second run has nothing to do",
  );
});

eachMajor.test("a fresh schema gets the two-schema layout: the data schema holds the analysts' things only", async ({ pg }) => {
  await using db = await freshSchema(pg);
  await migrate(db.sql, db.schemas);
  assert.deepEqual(await holdings(db, db.schema), ANALYSTS_ONLY);
  assert.deepEqual(await holdings(db, db.stateSchema), STATE_HOLDS);
  const [layout] = await db.sql<{ served: string }[]>`
    SELECT data_schema AS served FROM ${db.sql(db.stateSchema)}.login_etl_layout`;
  assert.equal(layout?.served, db.schema, "the state schema records whom it serves");
  const pinned = await db.sql<{ config: string[] }[]>`
    SELECT p.proconfig AS config FROM pg_proc p
    WHERE p.pronamespace = to_regnamespace(${`"${db.stateSchema}"`}) AND p.prosecdef`;
  assert.equal(pinned.length, 13);
  for (const p of pinned) {
    assert.deepEqual(p.config, [`search_path=pg_catalog, ${db.stateSchema}, pg_temp`]);
  }
});

eachMajor.test("schemaState() finds the version in the data schema before version 6 and in the state schema after", async ({ pg }) => {
  await using db = await freshSchema(pg);
  await migrateToV5(db);
  assert.deepEqual(await schemaState(db.sql, db.schemas).then((s) => [s.version, s.recorded]), [
    V5,
    true,
  ]);
  const applied = await migrate(db.sql, db.schemas);
  assert.deepEqual(applied.map((m) => m.version), versionsAfter(V5));
  assert.deepEqual(await schemaState(db.sql, db.schemas).then((s) => [s.version, s.recorded]), [
    LATEST_VERSION,
    true,
  ]);
  const recorded = await db.sql<{ version: number; source: string }[]>`
    SELECT version, source FROM ${db.sql(db.stateSchema)}.login_etl_migrations ORDER BY version`;
  assert.deepEqual(
    recorded.map((r) => [r.version, r.source]),
    MIGRATIONS.map((m) => [m.version, "migrate"]),
    "version 5's records moved along, and 6 is recorded beside them",
  );
  assert.deepEqual(await holdings(db, db.schema), ANALYSTS_ONLY);
});

eachMajor.test("a populated 0.1 database migrates without losing a row, a ledger id or an erasure", async ({ pg }) => {
  await using db = await freshSchema(pg);
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

  assert.equal(
    (await schemaState(db.sql, db.schemas)).version,
    1,
    "0.1 is recognised by its tables",
  );
  const started = performance.now();
  const applied = await ensureSchema(db.sql, {
    connection: await testConnection(pg.url),
    ...db.schemas,
  });
  reportFigures("migrate 0.1 (500 rows)", { ms: Math.round(performance.now() - started) });
  assert.deepEqual(applied.map((m) => m.version), versionsAfter(1));
  assert.deepEqual(await holdings(db, db.schema), ANALYSTS_ONLY);
  const recorded = await db.sql<{ version: number; source: string }[]>`
    SELECT version, source FROM ${db.sql(db.stateSchema)}.login_etl_migrations ORDER BY version`;
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
  await prune(db, { target: "ledger", days: 14 });
  const database = new Database({
    connection: await testConnection(pg.url),
    schema: db.schema,
    stateSchema: db.stateSchema,
    max: 2,
  });
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

eachMajorWithPsql.test("sql/schema.sql applied with psql gives the catalog migrate gives, and records the same versions", async ({ pg }) => {
  await using viaMigrate = await freshSchema(pg);
  await using viaPsql = await freshSchema(pg);
  await migrate(viaMigrate.sql, viaMigrate.schemas);
  await psqlFiles(viaPsql.schema, [new URL("../../sql/schema.sql", import.meta.url)], {
    url: viaPsql.url,
  });
  const [a, b] = [await catalog(viaMigrate), await catalog(viaPsql)];
  assert.ok(a.length > 40, `catalog read: ${a.length} lines`);
  assert.deepEqual(b, a);
  const sources = await viaPsql.sql<
    { source: string }[]
  >`SELECT DISTINCT source FROM ${viaPsql.sql(viaPsql.stateSchema)}.login_etl_migrations`;
  assert.deepEqual(sources.map((s) => s.source), ["schema.sql"]);
  assert.equal((await schemaState(viaPsql.sql, viaPsql.schemas)).version, LATEST_VERSION);
  assert.deepEqual(await holdings(viaPsql, viaPsql.schema), ANALYSTS_ONLY);
});

/** Applies what `migrate --dry-run` prints for `db` with psql, as a DBA would; returns the output. */
async function applyDryRun(db: TestDb): Promise<string> {
  const dry = await runInProcess(["migrate", "--dry-run"], { DATABASE_URL: db.url, ...db.env });
  assert.equal(dry.code, 0, dry.stderr);
  const file = await Deno.makeTempFile({ suffix: ".sql" });
  try {
    await Deno.writeTextFile(file, dry.stdout);
    await psqlFiles(db.schema, [file], { url: db.url, stateSchema: db.stateSchema });
  } finally {
    await Deno.remove(file);
  }
  return dry.stdout;
}

eachMajorWithPsql.test("migrate --dry-run prints SQL that psql applies to what migrate makes", async ({ t, pg }) => {
  await t.step("from nothing, the data schema not there yet", async () => {
    await using viaMigrate = await freshSchema(pg);
    await using viaDry = await freshSchema(pg);
    await viaDry.sql.unsafe(`DROP SCHEMA "${viaDry.schema}"`);
    await migrate(viaMigrate.sql, viaMigrate.schemas);
    const printed = await applyDryRun(viaDry);
    assert.match(printed, /^CREATE SCHEMA IF NOT EXISTS "/m);
    assert.deepEqual(await catalog(viaDry), await catalog(viaMigrate));
    const sources = await viaDry.sql<{ source: string }[]>`
      SELECT DISTINCT source FROM ${viaDry.sql(viaDry.stateSchema)}.login_etl_migrations`;
    assert.deepEqual(sources.map((s) => s.source), ["migrate"]);
    const again = await runInProcess(["migrate", "--dry-run"], {
      DATABASE_URL: viaDry.url,
      ...viaDry.env,
    });
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /^-- schema .* is at version \d+; this login-etl needs \d+\n$/);
  });

  await t.step(
    "from 0.1, before the migrations table: its versions recorded as found",
    async () => {
      await using viaMigrate = await freshSchema(pg);
      await using viaDry = await freshSchema(pg);
      for (const db of [viaMigrate, viaDry]) {
        for (const statement of MIGRATIONS[0]!.statements) await db.sql.unsafe(statement);
      }
      await migrate(viaMigrate.sql, viaMigrate.schemas);
      const printed = await applyDryRun(viaDry);
      assert.doesNotMatch(printed, /^CREATE SCHEMA/m);
      assert.deepEqual(await catalog(viaDry), await catalog(viaMigrate));
      const found = await viaDry.sql<{ version: number; source: string }[]>`
      SELECT version, source FROM ${viaDry.sql(viaDry.stateSchema)}.login_etl_migrations
      WHERE source = 'found'`;
      assert.deepEqual([...found], [{ version: 1, source: "found" }]);
    },
  );

  await t.step("from version 5's layout: the move to the state schema", async () => {
    await using viaMigrate = await freshSchema(pg);
    await using viaDry = await freshSchema(pg);
    await migrateToV5(viaMigrate);
    await migrateToV5(viaDry);
    await migrate(viaMigrate.sql, viaMigrate.schemas);
    const printed = await applyDryRun(viaDry);
    assert.match(printed, /-- Version 6: /);
    assert.doesNotMatch(printed, /-- Version 5: /);
    assert.deepEqual(await catalog(viaDry), await catalog(viaMigrate));
  });
});

Deno.test("consumers starting together on an empty schema migrate it once", async () => {
  await using db = await freshSchema();
  const connection = await testConnection();
  const pools = Array.from(
    { length: 4 },
    () => new Database({ connection, schema: db.schema, stateSchema: db.stateSchema, max: 2 }),
  );
  try {
    const applied = await Promise.all(
      pools.map((p) => ensureSchema(p.sql, { connection, ...db.schemas })),
    );
    // Each migration once, by whichever start took the schema lock for it.
    assert.deepEqual(
      applied.flat().map((m) => m.version).sort((a, b) => a - b),
      MIGRATIONS.map((m) => m.version),
    );
    const [n] = await db.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM ${db.sql(db.stateSchema)}.login_etl_migrations`;
    assert.equal(n?.n, MIGRATIONS.length);
  } finally {
    await Promise.all(pools.map((p) => p.end()));
  }
});

Deno.test("consumers starting together on version 5's layout move it once", async () => {
  await using db = await freshSchema();
  await migrateToV5(db);
  await db.sql`INSERT INTO ${db.sql(db.schema)}.login_etl_rejects
                 (message_id, reason, detail, body_bytes, body_hmac, sent_at)
               VALUES ('bad-1', 'not_json', 'not JSON', 3, 'k1:h', now())`;
  const connection = await testConnection();
  const pools = Array.from(
    { length: 4 },
    () => new Database({ connection, ...db.schemas, max: 2 }),
  );
  try {
    const applied = await Promise.all(
      pools.map((p) => ensureSchema(p.sql, { connection, ...db.schemas })),
    );
    assert.deepEqual(
      applied.flat().map((m) => m.version).sort((a, b) => a - b),
      versionsAfter(V5),
    );
    const [n] = await db.sql<{ n: number; rejects: number }[]>`
      SELECT (SELECT count(*)::int FROM ${db.sql(db.stateSchema)}.login_etl_migrations) AS n,
             (SELECT count(*)::int FROM ${db.sql(db.stateSchema)}.login_etl_rejects) AS rejects`;
    assert.deepEqual(n, { n: MIGRATIONS.length, rejects: 1 });
    assert.deepEqual(await holdings(db, db.schema), ANALYSTS_ONLY);
  } finally {
    await Promise.all(pools.map((p) => p.end()));
  }
});

eachMajor.test("a role that may not migrate is told to run migrate as the owner; a newer schema is refused", async ({ pg }) => {
  await using db = await freshSchema(pg);
  await migrateTo(db, 2);
  await db.sql`CREATE TABLE login_etl_migrations (version integer PRIMARY KEY, name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now(), applied_by text NOT NULL DEFAULT session_user,
                 source text NOT NULL)`;
  await db
    .sql`INSERT INTO login_etl_migrations (version, name, source) VALUES (1, 'a', 'found'), (2, 'b', 'found')`;
  const user = uniqueName("lowly");
  const password = crypto.randomUUID();
  await db.sql.unsafe(`CREATE ROLE "${user}" LOGIN PASSWORD '${password}';
    GRANT USAGE ON SCHEMA "${db.schema}" TO "${user}";
    GRANT SELECT ON ALL TABLES IN SCHEMA "${db.schema}" TO "${user}"`);
  try {
    const url = new URL(pg.url);
    url.username = user;
    url.password = password;
    await using sqs = await startSqs();
    const result = await runInProcess(["drain", "--queue-url", sqs.createQueue()], {
      DATABASE_URL: url.toString(),
      ...db.env,
      PII_HMAC_KEY: "a test key of at least thirty-two bytes!",
    });
    assert.equal(result.code, 1, result.stderr);
    assert.match(
      failureLine(result),
      /^error: The schema in \w+ is at version 2 and this login-etl needs \d+, but role lowly_\w+ may not change it; run `login-etl migrate` as the owner role \(or apply sql\/schema.sql\)$/,
    );
    const dry = await runInProcess(["migrate", "--dry-run"], {
      DATABASE_URL: url.toString(),
      ...db.env,
    });
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, new RegExp(`is at version 2; this login-etl needs ${LATEST_VERSION}`));
    assert.match(dry.stdout, /-- Version 5: ledger partitioned by day/);
    assert.match(dry.stdout, /-- Version 6: login-etl's own tables and functions moved/);
    // The printed SQL says which schemas its statements mean, as psql would need.
    assert.match(
      dry.stdout,
      new RegExp(
        `^SET search_path = "${db.schema}";\nSET login_etl.state_schema = '${db.stateSchema}';$`,
        "m",
      ),
    );
    const base = await testConnection(pg.url);
    const connection = { ...base, user, passwords: base.passwords.map(() => password) };
    const pool = new Database({
      connection,
      schema: db.schema,
      stateSchema: db.stateSchema,
      max: 1,
    });
    try {
      await assert.rejects(
        ensureSchema(pool.sql, { connection, ...db.schemas }),
        new RegExp(
          `at version 2 and this login-etl needs ${LATEST_VERSION}, but role lowly_\\w+ may not change it; run \`login-etl migrate\` as the owner role`,
        ),
      );
    } finally {
      await pool.end();
    }
    assert.equal((await schemaState(db.sql, db.schemas)).version, 2, "nothing half-applied");
    await db
      .sql`INSERT INTO login_etl_migrations (version, name, source) VALUES (99, 'future', 'migrate')`;
    await assert.rejects(
      ensureSchema(db.sql, { connection: await testConnection(pg.url), ...db.schemas }),
      new RegExp(`at version 99, newer than this login-etl knows \\(${LATEST_VERSION}\\)`),
    );
  } finally {
    await db.sql.unsafe(`DROP OWNED BY "${user}"; DROP ROLE "${user}"`);
  }
});

Deno.test("login-etl migrate applies what is pending, one line each, and then has nothing to do", async () => {
  await using db = await freshSchema();
  await migrateTo(db, 1);
  const env = { DATABASE_URL, ...db.env };
  const first = await runCli(["migrate"], { env });
  assert.equal(first.code, 0, first.stderr);
  assert.deepEqual(
    first.stdout.trim().split("\n").slice(0, MIGRATIONS.length - 1).map((l) =>
      l.replace(/\(\d+ ms\)/, "(ms)")
    ),
    MIGRATIONS.slice(1).map((m) => `Applied ${m.version}: ${m.name} (ms)`),
  );
  const second = await runCli(["migrate"], { env });
  assert.equal(second.code, 0, second.stderr);
  assert.match(
    second.stdout,
    new RegExp(
      `^Nothing to do: schema \\w+ \\(state schema \\w+_state\\) at .* is at version ${LATEST_VERSION}\\.\n$`,
    ),
  );
});

eachMajor.test("the ledger's upkeep: day partitions ahead, old days dropped, undated and stray ids aged out by commit time", ({ pg }) =>
  // Each step reads the day (the database's and ymd's): a run across midnight UTC runs again.
  onOneUtcDay(async () => {
    await using db = await freshSchema(pg);
    await migrate(db.sql, db.schemas);
    const days = async () =>
      (await db.sql<{ name: string }[]>`
      SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = 'login_etl_ledger'::regclass AND c.relname ~ '_p[0-9]{8}$' ORDER BY 1`)
        .map((r) => r.name.slice(-8));
    const ymd = (offset: number) =>
      new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10).replaceAll("-", "");

    const first = await prune(db, { target: "ledger", days: 14 });
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
    const second = await prune(db, { target: "ledger", days: 7 });
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
  }));
