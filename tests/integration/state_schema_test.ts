// login-etl's own tables in a state schema apart from the analysts' data, as
// an operator meets it: a database left by version 5 (its tables beside
// user_logins, the roles of that release's sql/roles.sql, rows, ledger ids,
// rejects, keys, vault entries and an audit trail) migrated by the owner
// role, then used by each role; a superuser's migration carrying every
// role's way in; and a second data schema pointed at a state schema that
// already serves another, refused before anything is written. Each on
// PostgreSQL 13, 15 and 18. Where the owner role's login migrates:
// state_schema_owner_test.ts.

import assert from "node:assert/strict";
import { LATEST_VERSION, MIGRATIONS } from "../../src/db/migrations.ts";
import { ensureSchema, migrate, schemaState } from "../../src/db/schema.ts";
import { ConfigError } from "../../src/errors.ts";
import type { Masked } from "../../src/types.ts";
import { failureLine } from "../helpers/cli.ts";
import { runInProcess } from "../helpers/in_process.ts";
import { testMasker } from "../helpers/drain.ts";
import { migrateToV5, ROLES_V5 } from "../helpers/layout_v5.ts";
import { eachMajor } from "../helpers/majors.ts";
import {
  cipherOf,
  Cli,
  cliEnv,
  maskerOf,
  PEOPLE,
  rawValuesOf,
  VAULT_SECRET,
} from "../helpers/pii.ts";
import { psqlFiles, rolesFiles } from "../helpers/psql.ts";
import { lacks, PSQL } from "../helpers/tools.ts";
import {
  enqueue,
  freshSchema,
  startSqs,
  TEST_SECRET,
  testConnection,
  type TestDb,
} from "../helpers/services.ts";
import { testRoles } from "../helpers/state_roles.ts";

/** Each of login-etl's own objects in `schema` with its grants, as the catalog tells them. */
async function grantsIn(db: TestDb, schema: string): Promise<Record<string, string>> {
  const rows = await db.sql<{ name: string; acl: string | null }[]>`
    SELECT c.relname AS name, c.relacl::text AS acl FROM pg_class c
    WHERE c.relnamespace = to_regnamespace(${`"${schema}"`}) AND c.relname LIKE 'login\\_etl\\_%'
      AND c.relkind IN ('r', 'p', 'S') AND c.relname <> 'login_etl_layout'
    UNION ALL
    SELECT p.oid::regprocedure::text, p.proacl::text FROM pg_proc p
    WHERE p.pronamespace = to_regnamespace(${`"${schema}"`}) AND p.proname LIKE 'login\\_etl\\_%'
    ORDER BY 1`;
  // A function's signature names its schema when it is not on search_path.
  return Object.fromEntries(rows.map((r) => [r.name.replace(/^"?\w+"?\./, ""), r.acl ?? ""]));
}

/**
 * What version 7 makes of version 5's grants: whoever could execute
 * login_etl_recover may execute the two functions that replace it, and the
 * release tickets are the owner's alone, as the vault is.
 */
function withVersion7(grants: Record<string, string>): Record<string, string> {
  const { "login_etl_recover(text[],text,text)": recover = "", ...kept } = grants;
  return {
    ...kept,
    "login_etl_release(bigint)": recover,
    "login_etl_release_request(text[],text,text)": recover,
    login_etl_release_tickets: kept.login_etl_vault ?? "",
    login_etl_release_tickets_id_seq: "",
  };
}

/** Row counts of login-etl's own tables and of user_logins. */
async function counts(db: TestDb, state: string): Promise<Record<string, number>> {
  const [row] = await db.sql<Record<string, number>[]>`
    SELECT (SELECT count(*)::int FROM ${db.sql(db.schema)}.user_logins) AS rows,
           (SELECT count(*)::int FROM ${db.sql(state)}.login_etl_ledger) AS ledger,
           (SELECT count(*)::int FROM ${db.sql(state)}.login_etl_rejects) AS rejects,
           (SELECT count(*)::int FROM ${db.sql(state)}.login_etl_keys) AS keys,
           (SELECT count(*)::int FROM ${db.sql(state)}.login_etl_vault) AS vault,
           (SELECT count(*)::int FROM ${db.sql(state)}.login_etl_audit) AS audit`;
  return { ...row };
}

/** Which of USAGE and CREATE `role` holds on each schema. */
async function schemaRights(db: TestDb, role: string): Promise<Record<string, string>> {
  const rights = async (schema: string) => {
    const [r] = await db.sql<{ usage: boolean; create: boolean }[]>`
      SELECT has_schema_privilege(${role}, ${schema}, 'USAGE') AS usage,
             has_schema_privilege(${role}, ${schema}, 'CREATE') AS create`;
    return [r?.usage ? "USAGE" : "", r?.create ? "CREATE" : ""].filter((x) => x).join(" ");
  };
  return { data: await rights(db.schema), state: await rights(db.stateSchema) };
}

const denied = (e: { code?: string }) => e.code === "42501";

eachMajor.test("a database at version 5 with its sql/roles.sql moves to the state schema whole: rows, ledger, rejects, keys, vault, audit and grants; each role still does its work and the analyst sees only the data", async ({ t, pg }) => {
  await using sqs = await startSqs();
  await using db = await freshSchema(pg);
  const roles = testRoles(db);
  try {
    // Version 5's layout, that release's roles, and data of every kind.
    await migrateToV5(db);
    await rolesFiles(db.schema, [ROLES_V5], { url: db.url, rewrite: roles.rewrite });
    await roles.createUsers();
    const data = db.sql(db.schema);
    const k1 = await maskerOf(TEST_SECRET, "k1");
    const cipher = await cipherOf(VAULT_SECRET);
    const oldIp = "192.0.2.55";
    const oldMask = k1.mask("ip", oldIp);
    const entry = await cipher.encrypt("ip", oldMask as Masked, oldIp);
    await db.sql`INSERT INTO ${data}.user_logins VALUES
      ('u0', 'ios', ${oldMask}, ${k1.mask("device_id", "dev-0")}, 'DE', 2003000, CURRENT_DATE)`;
    await db.sql`INSERT INTO ${data}.login_etl_vault (masked_value, field, ciphertext, iv, key_id)
      VALUES (${oldMask}, 'ip', ${entry.ciphertext}, ${entry.iv}, ${entry.keyId})`;
    await db.sql`INSERT INTO ${data}.login_etl_vault (masked_value, erased_at)
      VALUES (${k1.mask("ip", "192.0.2.56")}, now())`;
    await db.sql`INSERT INTO ${data}.login_etl_rejects
      (message_id, reason, detail, body_bytes, body_hmac, sent_at)
      VALUES ('bad-1', 'not_json', 'not JSON', 3, 'k1:h', now())`;
    await db.sql`INSERT INTO ${data}.login_etl_keys (key_id, fingerprint) VALUES
      ('k1', ${(await testMasker()).fingerprint}),
      ('vault:v1', ${cipher.fingerprints.get("v1") ?? ""})`;
    await db.sql`INSERT INTO ${data}.login_etl_audit (actor, action, masked_value, reason, outcome)
      VALUES ('dpo', 'forget', ${k1.mask("ip", "192.0.2.56")}, 'DSAR 1', 'success')`;
    // The day partitions a running consumer of version 5 had made, and an id
    // it committed today: the message comes back after the move.
    await db.sql.unsafe(`SELECT * FROM "${db.schema}".login_etl_ledger_maintain(14, 1000)`);
    const queueUrl = sqs.createQueue();
    const [committed] = enqueue(sqs, queueUrl, [PEOPLE[0]!]);
    await db.sql`INSERT INTO ${data}.login_etl_ledger (message_id, sent_date)
      VALUES (${committed!}, CURRENT_DATE)`;
    const before = await counts(db, db.schema);
    const grantsBefore = await grantsIn(db, db.schema);
    assert.ok(Object.keys(grantsBefore).length > 25, "tables, day partitions, functions");
    const cli = new Cli(cliEnv(db, { LOGIN_ETL_OWNER_ROLE: roles.groups.owner }));

    await t.step(
      "migrate as the owner role, without a state schema: refused with the fix, nothing moved",
      async () => {
        const result = await cli.run(["migrate"], { DATABASE_URL: roles.urlOf(roles.users.owner) });
        assert.equal(result.code, 1, result.stderr);
        assert.match(
          failureLine(result),
          new RegExp(
            `^error: Migration 6 \\(.*\\) failed in schema ${db.schema}; none of it was applied: permission denied for database .*; version 6 moves login-etl's own tables to schema ${db.stateSchema}, which this role may not create: have the DBA create it for the owner role first \\(CREATE SCHEMA ${db.stateSchema} AUTHORIZATION login_etl_owner\\)`,
            "m",
          ),
        );
        assert.deepEqual(await counts(db, db.schema), before);
      },
    );

    await t.step("the consumer cannot move it either, and is told who can", async () => {
      const result = await cli.run(["drain", "--queue-url", queueUrl], {
        DATABASE_URL: roles.urlOf(roles.users.consumer),
      });
      assert.equal(result.code, 1);
      assert.match(
        result.stderr,
        new RegExp(
          `The schema in \\w+ is at version 5 and this login-etl needs ${LATEST_VERSION}, but role etl_service_\\w+ may not change it; run \`login-etl migrate\` as the owner role`,
        ),
      );
    });

    await t.step("with the schema made for it, the owner role moves everything", async () => {
      await db.sql.unsafe(
        `CREATE SCHEMA "${db.stateSchema}" AUTHORIZATION "${roles.groups.owner}"`,
      );
      const result = await cli.run(["migrate"], { DATABASE_URL: roles.urlOf(roles.users.owner) });
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /^Applied 6: login-etl's own tables and functions moved/m);
      assert.equal((await schemaState(db.sql, db.schemas)).version, LATEST_VERSION);
      assert.deepEqual(await counts(db, db.stateSchema), before, "every row moved");
      // What version 8 added has no grants yet (sql/roles.sql, run again
      // after migrate, grants them), and belongs to the vault's owner.
      const isNew = (name: string) =>
        /^login_etl_(vault_inbox|inbox_|vault_links|linked|lock_masks|locks|key_retirements)/.test(
          name,
        );
      // ...except these two, which recover cannot do without: migrate
      // grants them to whoever may erase.
      const toEraser = (name: string) =>
        /^login_etl_(hmac_keys_needed|vault_drop_erased)/.test(name);
      const after = Object.entries(await grantsIn(db, db.stateSchema));
      // Whoever could write login_etl_keys (the consumer) now only reads it
      // and registers through login_etl_register_key (issue 19 review, F1).
      const consumerGroup = roles.groups.consumer;
      const expected = withVersion7(grantsBefore);
      assert.ok(expected["login_etl_keys"]?.includes(`${consumerGroup}=ar/`));
      expected["login_etl_keys"] = expected["login_etl_keys"]!.replace(
        `${consumerGroup}=ar/`,
        `${consumerGroup}=r/`,
      );
      expected["login_etl_register_key(text,text)"] =
        `{${roles.groups.owner}=X/${roles.groups.owner},${consumerGroup}=X/${roles.groups.owner}}`;
      assert.deepEqual(
        Object.fromEntries(after.filter(([name]) => !isNew(name) && !toEraser(name))),
        expected,
        "with its grants",
      );
      const owner = roles.groups.owner;
      for (const [name, acl] of after.filter(([name]) => isNew(name))) {
        // The lock rows (version 6): their owner's alone (all its table
        // rights, MAINTAIN too from PostgreSQL 17), PUBLIC's revoked.
        const ownerOnly = name === "login_etl_locks"
          ? new RegExp(`^\\{${owner}=arwdDxtm?/${owner}\\}$`).test(acl)
          : acl === `{${owner}=X/${owner}}`;
        assert.ok(acl === "" || ownerOnly, `${name}: ${acl}`);
      }
      const eraser = Object.fromEntries(after)["login_etl_forget(text[],text,text)"];
      for (const [name, acl] of after.filter(([name]) => toEraser(name))) {
        assert.equal(acl, eraser, name);
      }
      assert.deepEqual(
        await grantsIn(db, db.schema),
        {},
        "no table of ours left in the data schema (only version 6's guard view)",
      );
      const recorded = await db.sql<{ version: number }[]>`
        SELECT version FROM ${db.sql(db.stateSchema)}.login_etl_migrations ORDER BY 1`;
      assert.deepEqual(recorded.map((r) => r.version), MIGRATIONS.map((m) => m.version));
    });

    await t.step(
      "a login-etl built before version 6 refuses the data schema; one given another state schema is told where the tables went",
      async () => {
        // What a build before version 6 reads at start (its schemaState, as
        // the consumer role, search_path the data schema): a migrations
        // table, and a version newer than it knows, so it refuses to start
        // instead of creating a second, empty ledger there.
        const asConsumer = roles.connectAs(roles.users.consumer);
        const [seen] = await asConsumer<{ recorded: boolean; version: number }[]>`
          SELECT to_regclass('login_etl_migrations') IS NOT NULL AS recorded,
                 (SELECT max(version) FROM login_etl_migrations) AS version`;
        assert.deepEqual(seen, { recorded: true, version: LATEST_VERSION });
        assert.ok(LATEST_VERSION > 5);
        const elsewhere = `${db.stateSchema}_elsewhere`;
        const result = await cli.run(["drain", "--queue-url", queueUrl], {
          DATABASE_URL: roles.urlOf(roles.users.consumer),
          LOGIN_ETL_STATE_SCHEMA: elsewhere,
        });
        assert.equal(result.code, 2, result.stderr);
        assert.equal(
          failureLine(result),
          `error: The login-etl tables of schema ${db.schema} are in state schema ${db.stateSchema}, not ${elsewhere}: give --state-schema ${db.stateSchema}`,
        );
        const [made] = await db.sql<{ n: number }[]>`
          SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = ${elsewhere}`;
        assert.equal(made?.n, 0, "nothing created for the wrong state schema");
      },
    );

    await t.step(
      "the analyst reads user_logins and the views, and nothing of the state schema",
      async () => {
        const asAnalyst = roles.connectAs(roles.users.analyst);
        const [n] = await asAnalyst<{ n: number }[]>`SELECT count(*)::int AS n FROM user_logins`;
        assert.equal(n?.n, 1);
        await asAnalyst`SELECT * FROM user_logins_duplicate_ips`;
        await asAnalyst`SELECT app_version_text(app_version) FROM user_logins`;
        for (
          const name of [
            "login_etl_ledger",
            "login_etl_rejects",
            "login_etl_keys",
            "login_etl_vault",
            "login_etl_audit",
            "login_etl_migrations",
            "login_etl_layout",
          ]
        ) {
          await assert.rejects(
            asAnalyst.unsafe(`SELECT * FROM "${db.stateSchema}".${name}`),
            denied,
            name,
          );
        }
        assert.deepEqual(await schemaRights(db, roles.groups.analyst), {
          data: "USAGE",
          state: "",
        });
      },
    );

    await t.step(
      "the consumer role drains: the ledger still knows the id committed before the move",
      async () => {
        enqueue(sqs, queueUrl, PEOPLE.slice(1));
        const result = await cli.run(
          ["drain", "--queue-url", queueUrl, "--summary-json", "--idle-seconds", "0"],
          { DATABASE_URL: roles.urlOf(roles.users.consumer) },
        );
        assert.equal(result.code, 0, result.stderr);
        const summary = JSON.parse(result.stdout) as { inserted: number; redelivered: number };
        assert.deepEqual([summary.inserted, summary.redelivered], [PEOPLE.length - 1, 1]);
        assert.deepEqual(sqs.counts(queueUrl), { ready: 0, inFlight: 0 });
      },
    );

    await t.step("a pii_recoverer recovers a value vaulted before the move", async () => {
      const result = await cli.run(
        ["recover", "--masked", oldMask, "--reason", "INC-7", "--actor", "alice"],
        { DATABASE_URL: roles.urlOf(roles.users.recoverer) },
        { revealing: true },
      );
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, `${oldMask}\tip\t${oldIp}\n`);
    });

    await t.step(
      "this release's sql/roles.sql then applies on top, leaving each role its schemas",
      async () => {
        await rolesFiles(db.schema, [new URL("../../sql/roles.sql", import.meta.url)], {
          url: db.url,
          rewrite: roles.rewrite,
        });
        assert.deepEqual(await schemaRights(db, roles.groups.owner), {
          data: "USAGE CREATE",
          state: "USAGE CREATE",
        });
        assert.deepEqual(await schemaRights(db, roles.groups.consumer), {
          data: "USAGE",
          state: "USAGE",
        });
        assert.deepEqual(await schemaRights(db, roles.groups.recoverer), {
          data: "",
          state: "USAGE",
        });
        assert.deepEqual(await schemaRights(db, roles.groups.analyst), {
          data: "USAGE",
          state: "",
        });
        const again = await cli.run(
          ["recover", "--masked", oldMask, "--reason", "INC-8", "--actor", "alice"],
          { DATABASE_URL: roles.urlOf(roles.users.recoverer) },
          { revealing: true },
        );
        assert.equal(again.code, 0, again.stderr);
      },
    );
    cli.assertNoRaw(rawValuesOf(PEOPLE));
  } finally {
    await roles.drop();
  }
});

eachMajor.test("migrated by a superuser, each role that had a grant on what moved gets USAGE on the state schema, owners CREATE too, PUBLIC and the analyst nothing", async ({ pg }) => {
  await using sqs = await startSqs();
  await using db = await freshSchema(pg);
  const roles = testRoles(db);
  try {
    await migrateToV5(db);
    await rolesFiles(db.schema, [ROLES_V5], { url: db.url, rewrite: roles.rewrite });
    await roles.createUsers();
    await migrate(db.sql, { ...db.schemas, ownerRole: roles.groups.owner });
    assert.deepEqual(await schemaRights(db, roles.groups.owner), {
      data: "USAGE CREATE",
      state: "USAGE CREATE",
    });
    assert.deepEqual(await schemaRights(db, roles.groups.consumer), {
      data: "USAGE",
      state: "USAGE",
    });
    assert.deepEqual(await schemaRights(db, roles.groups.recoverer), {
      data: "USAGE",
      state: "USAGE",
    });
    assert.deepEqual(await schemaRights(db, roles.groups.analyst), { data: "USAGE", state: "" });
    assert.deepEqual(await schemaRights(db, "public"), { data: "", state: "" });
    // The consumer's start makes today's partition through the owner's function.
    const cli = new Cli(cliEnv(db));
    const queueUrl = sqs.createQueue();
    enqueue(sqs, queueUrl, PEOPLE);
    const result = await cli.run(["drain", "--queue-url", queueUrl, "--summary-json"], {
      DATABASE_URL: roles.urlOf(roles.users.consumer),
    });
    assert.equal(result.code, 0, result.stderr);
    assert.equal((JSON.parse(result.stdout) as { inserted: number }).inserted, PEOPLE.length);
    const [part] = await db.sql<{ owner: string }[]>`
      SELECT pg_get_userbyid(c.relowner) AS owner FROM pg_class c
      WHERE c.relnamespace = to_regnamespace(${`"${db.stateSchema}"`})
        AND c.relname = ${`login_etl_ledger_p${
      new Date().toISOString().slice(0, 10).replaceAll("-", "")
    }`}`;
    assert.equal(part?.owner, roles.groups.owner);
  } finally {
    await roles.drop();
  }
});

eachMajor.test("a second data schema pointed at a state schema that serves another is refused before anything is written", async ({ t, pg }) => {
  await using sqs = await startSqs();
  await using first = await freshSchema(pg);
  await using second = await freshSchema(pg);
  await migrate(first.sql, first.schemas);
  const shared = { schema: second.schema, stateSchema: first.stateSchema };
  const expected = new RegExp(
    `^State schema ${first.stateSchema} already holds login-etl's tables for schema ${first.schema}, not ${second.schema}: give this deployment a state schema of its own with --state-schema \\(e\\.g\\. --state-schema ${second.schema}_login_etl\\)$`,
  );
  const untouched = async () => {
    const [n] = await second.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM pg_class WHERE relnamespace = to_regnamespace(${`"${second.schema}"`})`;
    assert.equal(n?.n, 0, "nothing created in the second data schema");
    const [m] = await first.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM ${first.sql(first.stateSchema)}.login_etl_migrations`;
    assert.equal(m?.n, MIGRATIONS.length, "the first deployment's state untouched");
  };

  await t.step("at start of a consumer (ensureSchema)", async () => {
    await assert.rejects(
      ensureSchema(second.sql, { connection: await testConnection(pg.url), ...shared }),
      (e: unknown) => e instanceof ConfigError && expected.test(e.message),
    );
    await untouched();
  });

  await t.step(
    "drain and check through the CLI: exit 2 with one line; check fails its schema line",
    async () => {
      const env = {
        DATABASE_URL: pg.url,
        PII_HMAC_KEY: TEST_SECRET,
        LOGIN_ETL_SCHEMA: second.schema,
        LOGIN_ETL_STATE_SCHEMA: first.stateSchema,
      };
      const drain = await runInProcess(["drain", "--queue-url", sqs.createQueue()], env);
      assert.equal(drain.code, 2, drain.stderr);
      const line = failureLine(drain);
      assert.match(line, /^error: State schema /);
      assert.match(line.slice("error: ".length), expected);
      const check = await runInProcess(["check", "--for", "migrate"], env);
      assert.equal(check.code, 1);
      assert.match(check.stdout, /^fail\s+schema\s+.*already holds login-etl's tables for schema/m);
      const dry = await runInProcess(["migrate", "--dry-run"], env);
      assert.equal(dry.code, 2);
      await untouched();
    },
  );

  await t.step(
    "migrate into a data schema that does not exist yet: refused, none made",
    async () => {
      const missing = `${second.schema}_new`;
      const result = await runInProcess(["migrate"], {
        DATABASE_URL: pg.url,
        LOGIN_ETL_SCHEMA: missing,
        LOGIN_ETL_STATE_SCHEMA: first.stateSchema,
      });
      assert.equal(result.code, 2, result.stderr);
      assert.match(failureLine(result), /^error: State schema .* already holds login-etl's tables/);
      const [made] = await second.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = ${missing}`;
      assert.equal(made?.n, 0, "the refused migrate made no schema");
    },
  );

  await t.step(
    "a second schema at version 5's layout is refused too, its tables left where they are",
    async () => {
      await migrateToV5(second);
      await assert.rejects(
        ensureSchema(second.sql, { connection: await testConnection(pg.url), ...shared }),
        (e: unknown) => e instanceof ConfigError && expected.test(e.message),
      );
      const [kept] = await second.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM ${second.sql(second.schema)}.login_etl_migrations`;
      assert.equal(kept?.n, 5);
      await second.sql.unsafe(`DROP SCHEMA "${second.schema}" CASCADE;
      CREATE SCHEMA "${second.schema}"`).simple();
    },
  );

  await t.step({
    name: "sql/schema.sql through psql stops at version 6 with the same reason",
    ignore: lacks(PSQL),
    fn: async () => {
      await assert.rejects(
        psqlFiles(second.schema, [new URL("../../sql/schema.sql", import.meta.url)], {
          url: second.url,
          stateSchema: first.stateSchema,
        }),
        new RegExp(
          `State schema ${first.stateSchema} already holds login-etl's tables for schema ${first.schema}: give schema ${second.schema} its own state schema`,
        ),
      );
      const [m] = await first.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM ${first.sql(first.stateSchema)}.login_etl_migrations`;
      assert.equal(m?.n, MIGRATIONS.length, "the first deployment's state untouched");
    },
  });

  await t.step("with a state schema of its own, the second deployment migrates", async () => {
    await migrate(second.sql, second.schemas);
    assert.equal((await schemaState(second.sql, second.schemas)).version, LATEST_VERSION);
  });
});
