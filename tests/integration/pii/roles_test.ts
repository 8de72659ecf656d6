// Least privilege, from the roles' side: sql/schema.sql then sql/roles.sql as
// a DBA would run them, real login users in each role, the catalog asked
// what each may do, and the tool run end to end as each of them (drain,
// recover, forget, rekey), on PostgreSQL 13, 15 and 18. Role names get a
// suffix: roles are cluster-wide and tests may run side by side.

import assert from "node:assert/strict";
import postgres from "postgres";
import {
  assertRefused,
  auditAfter,
  Cli,
  cliEnv,
  drain,
  hmacKeySet,
  lastAuditId,
  maskerOf,
  PEOPLE,
  rawValuesOf,
} from "../../helpers/pii.ts";
import {
  freshSchema,
  reportFigures,
  startSqs,
  TEST_SECRET,
  type TestDb,
  uniqueName,
} from "../../helpers/services.ts";
import { eachMajorWithPsql, psqlFiles, rolesFiles } from "../../helpers/psql.ts";
import { dropRoles, roleNames } from "../../helpers/role_names.ts";
import { migrate } from "../../../src/db/schema.ts";

const TABLE_PRIVILEGES = [
  "SELECT",
  "INSERT",
  "UPDATE",
  "DELETE",
  "TRUNCATE",
  "REFERENCES",
  "TRIGGER",
];
const FUNCTIONS = {
  put: "login_etl_vault_put(text[],text[],bytea[],bytea[],text[])",
  request: "login_etl_release_request(text[],text,text)",
  release: "login_etl_release(bigint)",
  forget: "login_etl_forget(text[],text,text)",
  note: "login_etl_audit_note(text,text[],text,text,text,text)",
  list: "login_etl_audit_list(bigint,integer)",
  maintain: "login_etl_ledger_maintain(integer,integer)",
  claim: "login_etl_inbox_claim(text[],bigint,integer,text,text)",
  claimed: "login_etl_inbox_claimed(bigint)",
  settle: "login_etl_inbox_settle(bigint,bigint[],bigint[],bigint[],text[])",
  lock: "login_etl_lock_masks(text[])",
  linked: "login_etl_linked(text[])",
  needed: "login_etl_hmac_keys_needed()",
  dropErased: "login_etl_vault_drop_erased(text[],text[],text,text)",
  register: "login_etl_register_key(text,text)",
} as const;
const NO_FUNCTION = Object.fromEntries(Object.keys(FUNCTIONS).map((k) => [k, false])) as Record<
  keyof typeof FUNCTIONS,
  boolean
>;

eachMajorWithPsql.test("with sql/roles.sql the consumer and recoverer have no privilege on the vault or the audit trail, and work through the functions", async ({ t, pg }) => {
  await using sqs = await startSqs();
  await using db = await freshSchema(pg);
  const suffix = uniqueName("");
  const [owner, consumer, recoverer, analyst] = [
    "login_etl_owner",
    "login_etl_consumer",
    "pii_recoverer",
    "login_etl_analyst",
  ].map((g) => g + suffix) as [string, string, string, string];
  const consumerUser = `etl_service${suffix}`;
  const recovererUser = `alice${suffix}`;
  const ownerUser = `etl_migrate${suffix}`;
  const nobodyUser = `nobody${suffix}`;
  const analystUser = `bob${suffix}`;
  const password = crypto.randomUUID();
  const urlOf = (user: string) => {
    const url = new URL(pg.url);
    url.hostname = "127.0.0.1";
    url.username = user;
    url.password = password;
    return url.toString();
  };
  const clients: postgres.Sql[] = [];
  const connectAs = (user: string) => {
    const sql = postgres(urlOf(user), {
      max: 1,
      onnotice: () => {},
      connection: { search_path: `${db.schema}, ${db.stateSchema}` },
    });
    clients.push(sql);
    return sql;
  };
  const denied = (e: { code?: string }) => e.code === "42501";
  try {
    // The DBA's path: sql/schema.sql, then sql/roles.sql, through psql with search_path set.
    const root = new URL("../../../sql/", import.meta.url);
    await psqlFiles(db.schema, [new URL("schema.sql", root), new URL("roles.sql", root)], {
      url: db.url,
      rewrite: (text) =>
        text.replace(
          /\b(login_etl_owner|login_etl_consumer|pii_recoverer|login_etl_analyst)\b/g,
          `$1${suffix}`,
        ),
    });
    await db.sql.unsafe(`
      CREATE ROLE "${consumerUser}" LOGIN PASSWORD '${password}' IN ROLE "${consumer}";
      CREATE ROLE "${recovererUser}" LOGIN PASSWORD '${password}' IN ROLE "${recoverer}";
      CREATE ROLE "${ownerUser}" LOGIN PASSWORD '${password}' IN ROLE "${owner}";
      CREATE ROLE "${analystUser}" LOGIN PASSWORD '${password}' IN ROLE "${analyst}";
      CREATE ROLE "${nobodyUser}" LOGIN PASSWORD '${password}';
      GRANT USAGE ON SCHEMA "${db.schema}" TO "${nobodyUser}";`).simple();
    const cli = new Cli(cliEnv(db));
    const k1 = await maskerOf(TEST_SECRET, "k1");
    const ipMask = k1.mask("ip", "203.0.113.7");

    await t.step(
      "the catalog: no table or sequence privilege on the vault or the audit trail",
      async () => {
        const claims: string[] = [];
        for (const role of [consumer, recoverer, consumerUser, recovererUser, nobodyUser]) {
          for (
            const table of [
              "login_etl_vault",
              "login_etl_audit",
              "login_etl_release_tickets",
              "login_etl_vault_inbox",
              "login_etl_inbox_claims",
              "login_etl_vault_links",
              "login_etl_key_retirements",
            ]
          ) {
            for (const privilege of TABLE_PRIVILEGES) {
              const [row] = await db.sql<{ has: boolean }[]>`
              SELECT has_table_privilege(${role}, ${`"${db.stateSchema}".${table}`}, ${privilege}) AS has`;
              if (row?.has) claims.push(`${role} ${privilege} ${table}`);
            }
          }
          const [seq] = await db.sql<{ has: boolean }[]>`
          SELECT has_sequence_privilege(${role}, ${`"${db.stateSchema}".login_etl_audit_id_seq`}, 'USAGE') AS has`;
          if (seq?.has) claims.push(`${role} USAGE login_etl_audit_id_seq`);
        }
        assert.deepEqual(claims, []);
      },
    );

    await t.step("the catalog: who may execute which function", async () => {
      const may = async (role: string, fn: string) =>
        (await db.sql<{ has: boolean }[]>`
          SELECT has_function_privilege(${role}, ${`"${db.stateSchema}".${fn}`}, 'EXECUTE') AS has`)[
          0
        ]
          ?.has;
      const table: [string, Record<keyof typeof FUNCTIONS, boolean>][] = [
        [consumerUser, { ...NO_FUNCTION, put: true, note: true, maintain: true, register: true }],
        [recovererUser, {
          ...NO_FUNCTION,
          request: true,
          release: true,
          forget: true,
          note: true,
          list: true,
          claim: true,
          claimed: true,
          settle: true,
          needed: true,
          dropErased: true,
        }],
        [analystUser, NO_FUNCTION],
        [nobodyUser, NO_FUNCTION],
      ];
      for (const [role, expected] of table) {
        for (const [name, fn] of Object.entries(FUNCTIONS)) {
          assert.equal(
            await may(role, fn),
            expected[name as keyof typeof FUNCTIONS],
            `${role} ${name}`,
          );
        }
      }
      const [definers] = await db.sql<{ n: number }[]>`
        SELECT count(*)::int AS n FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = ${db.stateSchema} AND p.proname LIKE 'login_etl_%' AND p.prosecdef
          AND pg_get_userbyid(p.proowner) = ${owner}
          AND array_to_string(p.proconfig, ',') = ${`search_path=pg_catalog, ${db.stateSchema}, pg_temp`}`;
      assert.equal(
        definers?.n,
        13,
        "thirteen SECURITY DEFINER functions, owned by the owner, search_path pinned",
      );
    });

    await t.step("the consumer user drains with the vault on", async () => {
      const drained = await drain(sqs, cli, PEOPLE, { DATABASE_URL: urlOf(consumerUser) });
      assert.equal(drained.inserted, 4);
      // Its entries wait in the inbox until a key holder merges them.
      const [n] = await db.sql<{ inbox: number; vault: number }[]>`
        SELECT (SELECT count(*) FROM login_etl_vault_inbox)::int AS inbox,
               (SELECT count(*) FROM login_etl_vault)::int AS vault`;
      assert.deepEqual(n, { inbox: 6, vault: 0 });
      // Its start made the ledger's day partitions through the function: owned
      // by the owner, with the ids of this run in their sent day's (not "today's",
      // read here: a run that crosses midnight UTC sent them yesterday).
      const parts = await db.sql<{ name: string; owner: string; n: number }[]>`
        SELECT c.relname AS name, pg_get_userbyid(c.relowner) AS owner,
               (SELECT count(*)::int FROM login_etl_ledger l WHERE l.tableoid = c.oid) AS n
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = ${`"${db.stateSchema}".login_etl_ledger`}::regclass`;
      const days = parts.filter((p) => /^login_etl_ledger_p\d{8}$/.test(p.name));
      assert.ok(days.length >= 15, `day partitions: ${days.map((p) => p.name)}`);
      assert.deepEqual(new Set(parts.map((p) => p.owner)), new Set([owner]));
      const homes = await db.sql<{ part: string; day: string }[]>`
        SELECT tableoid::regclass::text AS part, to_char(sent_date, 'YYYYMMDD') AS day
        FROM login_etl_ledger`;
      assert.equal(homes.length, 4);
      for (const { part, day } of homes) assert.equal(part, `login_etl_ledger_p${day}`);
    });

    await t.step(
      "the owner user merges the whole inbox into the vault; a recoverer user may not",
      async () => {
        assertRefused(
          await cli.run(["vault-merge"], { DATABASE_URL: urlOf(recovererUser) }),
          1,
          /Only the owner role may merge the whole vault inbox/,
        );
        const merged = await cli.run(["vault-merge"], { DATABASE_URL: urlOf(ownerUser) });
        assert.equal(merged.code, 0, merged.stderr);
        assert.equal(JSON.parse(merged.stdout).accepted, 6);
        const [n] = await db.sql<{ inbox: number; vault: number }[]>`
          SELECT (SELECT count(*) FROM login_etl_vault_inbox)::int AS inbox,
                 (SELECT count(*) FROM login_etl_vault WHERE erased_at IS NULL)::int AS vault`;
        assert.deepEqual(n, { inbox: 0, vault: 6 });
      },
    );

    await t.step(
      "the consumer user may not change the ledger's tables, nor delete from it",
      async () => {
        const asConsumer = connectAs(consumerUser);
        const today = new Date().toISOString().slice(0, 10).replaceAll("-", "");
        for (
          const statement of [
            "DELETE FROM login_etl_ledger",
            `DROP TABLE login_etl_ledger_p${today}`,
            "CREATE TABLE login_etl_ledger_p20990101 PARTITION OF login_etl_ledger FOR VALUES FROM ('2099-01-01') TO ('2099-01-02')",
            "DELETE FROM login_etl_migrations",
          ]
        ) {
          await assert.rejects(asConsumer.unsafe(statement), denied, statement);
        }
      },
    );

    await t.step(
      "an analyst user reads the logins and the duplicate views, and nothing else of ours",
      async () => {
        const asAnalyst = connectAs(analystUser);
        const [rows] = await asAnalyst<{ n: number }[]>`SELECT count(*)::int AS n FROM user_logins`;
        assert.equal(rows?.n, 4);
        await asAnalyst`SELECT * FROM user_logins_duplicate_ips`;
        await asAnalyst`SELECT * FROM user_logins_duplicate_devices`;
        const [v] = await asAnalyst<{ v: string }[]>`SELECT app_version_text(2003000) AS v`;
        assert.equal(v?.v, "2.3.0");
        // Everything of login-etl's own is in the state schema, which the
        // analyst may not use: each statement naming one of its objects is refused.
        const state = `"${db.stateSchema}"`;
        for (
          const statement of [
            `SELECT * FROM ${state}.login_etl_rejects`,
            `SELECT * FROM ${state}.login_etl_vault`,
            `SELECT * FROM ${state}.login_etl_audit`,
            `SELECT * FROM ${state}.login_etl_ledger`,
            `SELECT * FROM ${state}.login_etl_keys`,
            `SELECT * FROM ${state}.login_etl_migrations`,
            `SELECT * FROM ${state}.login_etl_audit_list(0, 10)`,
          ]
        ) {
          await assert.rejects(asAnalyst.unsafe(statement), denied, statement);
        }
        const [schemas] = await asAnalyst<{ data: boolean; state: boolean }[]>`
          SELECT has_schema_privilege(${db.schema}, 'USAGE') AS data,
                 has_schema_privilege(${db.stateSchema}, 'USAGE') AS state`;
        assert.deepEqual(schemas, { data: true, state: false });
        // What the analyst's schema holds is the analysts' things, and the
        // view of schema versions that stops a login-etl built before version
        // 6 from starting there (versions, names and where the tables went).
        const visible = await asAnalyst<{ name: string }[]>`
          SELECT c.relname AS name FROM pg_class c
          WHERE c.relnamespace = to_regnamespace(${`"${db.schema}"`}) AND c.relkind IN ('r', 'p', 'v')
          ORDER BY 1`;
        assert.deepEqual(visible.map((r) => r.name), [
          "login_etl_migrations",
          "user_logins",
          "user_logins_duplicate_devices",
          "user_logins_duplicate_ips",
        ]);
        const guard = await asAnalyst<Record<string, unknown>[]>`
          SELECT * FROM login_etl_migrations ORDER BY version DESC LIMIT 1`;
        assert.deepEqual(Object.keys(guard[0] ?? {}), ["version", "name", "state_schema"]);
        await assert.rejects(asAnalyst.unsafe("DELETE FROM user_logins"), denied);
      },
    );

    await t.step(
      "an analyst user still sees the state schema's catalog: names, row counts and function bodies, never contents",
      async () => {
        // Postgres shows every role the system catalogs and statistics views;
        // no USAGE hides only what the schema's objects hold (docs/pii.md).
        const asAnalyst = connectAs(analystUser);
        const tables = await asAnalyst<{ name: string }[]>`
          SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = ${db.stateSchema} AND c.relkind IN ('r', 'p') ORDER BY 1`;
        const names = tables.map((r) => r.name);
        for (const name of ["login_etl_audit", "login_etl_rejects", "login_etl_vault"]) {
          assert.ok(names.includes(name), `${name} in ${names.join(", ")}`);
        }
        const stats = await asAnalyst<{ name: string; live: number | string }[]>`
          SELECT relname AS name, n_live_tup AS live FROM pg_stat_user_tables
          WHERE schemaname = ${db.stateSchema} AND relname = 'login_etl_audit'`;
        assert.equal(stats.length, 1, "the audit trail's row count (an estimate) is readable");
        assert.ok(Number.isInteger(Number(stats[0]?.live)));
        const [body] = await asAnalyst<{ src: string }[]>`
          SELECT p.prosrc AS src FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE n.nspname = ${db.stateSchema} AND p.proname = 'login_etl_release'`;
        assert.match(body?.src ?? "", /login_etl_vault/, "a function's body is readable");
        // The contents stay out of reach, through the catalog too.
        await assert.rejects(
          asAnalyst.unsafe(`SELECT * FROM "${db.stateSchema}".login_etl_vault`),
          denied,
        );
      },
    );

    await t.step(
      "the consumer user cannot read the vault, the rows or the audit trail, nor write the audit",
      async () => {
        const asConsumer = connectAs(consumerUser);
        for (
          const table of [
            "login_etl_vault",
            "login_etl_vault_inbox",
            "user_logins",
            "login_etl_audit",
          ]
        ) {
          await assert.rejects(
            asConsumer.unsafe(`SELECT * FROM ${table}`),
            denied,
            `SELECT ${table}`,
          );
        }
        await assert.rejects(
          asConsumer`INSERT INTO login_etl_audit (actor, action, outcome) VALUES ('x', 'recover', 'success')`,
          denied,
        );
        await assert.rejects(
          asConsumer`SELECT login_etl_audit_note('recover', ARRAY['k1:x'], 'svc', 'r', 'released', 'forged')`,
          (e: { code?: string }) => e.code === "22023",
          "the note function refuses anything but denied or failed",
        );
      },
    );

    await t.step(
      "the consumer's function answers alike for new, vaulted and erased values (no oracle)",
      async () => {
        const asConsumer = connectAs(consumerUser);
        class Rollback {
          constructor(readonly rows: unknown) {}
        }
        const attempt = async (mask: string) => {
          const started = performance.now();
          // In a transaction rolled back, as an attacker probing would do it.
          const rows = await asConsumer.begin(async (tx) => {
            const result = await tx`SELECT login_etl_vault_put(${[mask]}::text[], ${["ip"]}::text[],
            ${["\\x00112233445566778899aabbccddeeff00"]}::bytea[], ${[
              "\\x000000000000000000000000",
            ]}::bytea[],
            ${["v1"]}::text[]) AS r`;
            throw new Rollback(result.map((r) => ({ ...r })));
          }).catch((error: unknown) => {
            if (error instanceof Rollback) return error.rows;
            throw error;
          });
          return { rows, ms: performance.now() - started };
        };
        const fresh = await attempt(k1.mask("ip", "198.51.100.250"));
        const vaulted = await attempt(ipMask);
        // void, which PL/pgSQL returns as the empty text (since the size checks)
        assert.deepEqual(fresh.rows, [{ r: "" }]);
        assert.deepEqual(vaulted.rows, fresh.rows, "the same answer");
        // Timing, measured and reported (machine noise makes it no pass/fail rule).
        const times = { fresh: [] as number[], vaulted: [] as number[] };
        for (let i = 0; i < 60; i++) {
          times.fresh.push((await attempt(k1.mask("ip", `198.51.100.${i}`))).ms);
          times.vaulted.push((await attempt(ipMask)).ms);
        }
        const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1] ?? 0;
        reportFigures("vault_put timing", {
          fresh_median_ms: Math.round(median(times.fresh) * 1000) / 1000,
          vaulted_median_ms: Math.round(median(times.vaulted) * 1000) / 1000,
        });
      },
    );

    await t.step(
      "a pii_recoverer user recovers, audited under its login even after SET ROLE",
      async () => {
        const before = await lastAuditId(db.sql);
        const result = await cli.run(
          ["recover", "--masked", ipMask, "--reason", "INC-42", "--actor", "alice"],
          { DATABASE_URL: urlOf(recovererUser) },
          { revealing: true },
        );
        assert.equal(result.code, 0, result.stderr);
        assert.equal(result.stdout, `${ipMask}\tip\t203.0.113.7\n`);
        const asRecoverer = connectAs(recovererUser);
        await asRecoverer.unsafe(`SET ROLE "${recoverer}"`);
        const [request] = await asRecoverer<{ ticket: string }[]>`
          SELECT ticket::text FROM login_etl_release_request(${[
          ipMask,
        ]}::text[], 'alice', 'INC-43')`;
        const released = await asRecoverer`SELECT * FROM login_etl_release(${
          request?.ticket ?? ""
        }::bigint)`;
        assert.equal(released.length, 1, "the ticket's ciphertext, after SET ROLE too");
        const audit = await auditAfter(db.sql, before);
        assert.deepEqual(audit.map((a) => [a.db_user, a.actor, a.outcome]), [
          [recovererUser, "alice", "released"],
          [recovererUser, "alice", "released"],
        ]);
        const listing = await cli.run(["recover", "--audit"], {
          DATABASE_URL: urlOf(recovererUser),
        });
        assert.equal(listing.code, 0, listing.stderr);
        assert.match(listing.stdout, new RegExp(`"db_user":"${recovererUser}"`));
      },
    );

    await t.step(
      "the pii_recoverer user cannot touch the vault or the audit trail directly",
      async () => {
        const asRecoverer = connectAs(recovererUser);
        for (
          const statement of [
            "SELECT * FROM login_etl_vault",
            "DELETE FROM login_etl_vault",
            "UPDATE login_etl_vault SET ciphertext = NULL",
            "SELECT * FROM login_etl_audit",
            "INSERT INTO login_etl_audit (actor, action, outcome) VALUES ('a', 'recover', 'success')",
            "UPDATE login_etl_audit SET reason = 'nothing to see'",
            "DELETE FROM login_etl_audit",
            "TRUNCATE login_etl_audit",
          ]
        ) {
          await assert.rejects(asRecoverer.unsafe(statement), denied, statement);
        }
        const [n] = await db.sql<{ n: number }[]>`
        SELECT count(*)::int AS n FROM login_etl_audit WHERE reason = 'nothing to see'`;
        assert.equal(n?.n, 0);
      },
    );

    await t.step(
      "the recoverer user forgets through the CLI; the erasure is audited under its login",
      async () => {
        const before = await lastAuditId(db.sql);
        const result = await cli.run(
          ["forget", "--masked", ipMask, "--reason", "DSAR 5", "--actor", "alice"],
          { DATABASE_URL: urlOf(recovererUser) },
        );
        assert.equal(result.code, 0, result.stderr);
        assert.deepEqual(
          (await auditAfter(db.sql, before)).map((a) => [a.db_user, a.action, a.outcome]),
          [
            [recovererUser, "forget", "success"],
          ],
        );
      },
    );

    await t.step(
      "the consumer user's recover and forget are refused with exit 1 and audited as denied under its login",
      async () => {
        const before = await lastAuditId(db.sql);
        const mask = k1.mask("device_id", "444-55-6666");
        const recover = await cli.run(
          ["recover", "--masked", mask, "--reason", "just looking", "--actor", "svc"],
          { DATABASE_URL: urlOf(consumerUser) },
          { revealing: true },
        );
        assertRefused(recover, 1, /Refused: this database role may not recover/);
        const forget = await cli.run(
          ["forget", "--masked", mask, "--reason", "cover tracks", "--actor", "svc"],
          { DATABASE_URL: urlOf(consumerUser) },
        );
        assertRefused(forget, 1, /Refused: this database role may not erase/);
        assert.deepEqual(
          (await auditAfter(db.sql, before)).map((a) => [a.db_user, a.actor, a.action, a.outcome]),
          [[consumerUser, "svc", "recover", "denied"], [consumerUser, "svc", "forget", "denied"]],
        );
      },
    );

    await t.step("an owner user re-keys; the consumer user cannot", async () => {
      const env = { PII_HMAC_KEY: hmacKeySet("k2") };
      const args = ["rekey", "--to", "k2", "--reason", "rotation"];
      assertRefused(
        await cli.run(args, { ...env, DATABASE_URL: urlOf(consumerUser) }),
        1,
        /permission denied/,
      );
      const done = await cli.run(args, { ...env, DATABASE_URL: urlOf(ownerUser) });
      assert.equal(done.code, 0, done.stderr);
      const [left] = await db.sql<{ n: number }[]>`
        SELECT count(*)::int AS n FROM user_logins
        WHERE masked_ip NOT LIKE 'k2:%' OR masked_device_id NOT LIKE 'k2:%'`;
      // The erased ip keeps its k1 mask: its value is gone, nothing to re-key from.
      assert.equal(left?.n, 1);
    });

    cli.assertNoRaw(rawValuesOf(PEOPLE));
  } finally {
    for (const sql of clients) await sql.end();
    const admin = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      await dropRoles(admin, [
        consumerUser,
        recovererUser,
        ownerUser,
        nobodyUser,
        analystUser,
        owner,
        consumer,
        recoverer,
        analyst,
      ]);
    } finally {
      await admin.end();
    }
  }
});

/** Every grant in `db`'s two schemas (relations, functions, the schemas, default privileges), names made alike. */
async function grants(db: TestDb): Promise<string[]> {
  const both = [db.schema, db.stateSchema];
  const rows = await db.sql<{ line: string }[]>`
    SELECT format('relation %s.%s %s', n.nspname, c.relname, c.relacl) AS line
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = ANY(${both}::text[]) AND c.relacl IS NOT NULL AND c.relname !~ '_p[0-9]{8}$'
    UNION ALL
    SELECT format('function %s %s', p.oid::regprocedure, p.proacl)
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = ANY(${both}::text[])
    UNION ALL
    SELECT format('schema %s %s', nspname, nspacl) FROM pg_namespace WHERE nspname = ANY(${both}::text[])
    UNION ALL
    SELECT format('default %s %s %s', n.nspname, d.defaclobjtype, d.defaclacl)
    FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace
    WHERE n.nspname = ANY(${both}::text[])`;
  // The state schema's name holds the data schema's: replace it first.
  return rows.map((r) =>
    r.line.replaceAll(db.stateSchema, "<state>").replaceAll(db.schema, "<schema>")
  )
    .sort();
}

// The PII suites apply sql/roles.sql through postgres.js as one query
// (rolesFiles), so they run where psql is missing; psql.ts says that gives
// what psql gives. Held against psql itself here.
eachMajorWithPsql.test("sql/roles.sql as one postgres.js query grants exactly what psql's run of it grants", async ({ pg }) => {
  await using viaPsql = await freshSchema(pg);
  await using viaQuery = await freshSchema(pg);
  const { groups, rewrite } = roleNames();
  const roles = new URL("../../../sql/roles.sql", import.meta.url);
  try {
    for (const db of [viaPsql, viaQuery]) await migrate(db.sql, db.schemas);
    const options = (db: TestDb) => ({ url: db.url, stateSchema: db.stateSchema, rewrite });
    await psqlFiles(viaPsql.schema, [roles], options(viaPsql));
    await rolesFiles(viaQuery.schema, [roles], options(viaQuery));
    const [a, b] = [await grants(viaPsql), await grants(viaQuery)];
    assert.ok(a.filter((line) => line.includes(groups.consumer)).length > 5, a.join("\n"));
    assert.deepEqual(b, a);
  } finally {
    await dropRoles(viaPsql.sql, Object.values(groups));
  }
});
