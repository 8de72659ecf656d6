// No hijackable code (issue 19, H3), continued from hijack_test.ts (split so
// that the two run in parallel): owning a table named as login-etl's own (a
// decoy login_etl_migrations or login_etl_vault) makes nobody trusted; the
// decoys, a decoy view, leftovers of a role that could once create in the
// state schema and a state schema made first by an untrusted role are
// refused by migrate, check, sql/schema.sql and sql/roles.sql with the
// statement that fixes each, and nothing they carry runs.

import assert from "node:assert/strict";
import { Cli } from "../../helpers/pii.ts";
import { failureLine } from "../../helpers/cli.ts";
import {
  assertNothingGained,
  type HostileDb,
  hostileDb,
  makeKit,
  plantShadows,
  STATE,
  succeeds,
} from "../../helpers/hostile.ts";
import { eachMajorWithPsql } from "../../helpers/psql.ts";
import { pgServer, unavailable } from "../../helpers/majors.ts";
import { findUntrusted } from "../../../src/db/search_path.ts";
import { uniqueName } from "../../helpers/common.ts";

const SQL = new URL("../../../sql/", import.meta.url);
const SCHEMA_SQL = new URL("schema.sql", SQL);
const ROLES_SQL = new URL("roles.sql", SQL);

/**
 * Runs the statements `findUntrusted` names, first to last, as the DBA
 * would, until none is left; returns them.
 */
async function applyFixes(db: HostileDb): Promise<string[]> {
  const done: string[] = [];
  for (let found = await untrustedIn(db); found.length > 0; found = await untrustedIn(db)) {
    const fix = found[0]!.fix;
    assert.ok(!done.includes(fix), `${fix} did not fix it`);
    await db.admin.unsafe(fix);
    done.push(fix);
  }
  return done;
}

function untrustedIn(db: HostileDb) {
  return findUntrusted(db.admin, { schema: "public", stateSchema: STATE }, [db.groups.owner]);
}

eachMajorWithPsql.test("a decoy login_etl_migrations of a role that could create in public makes it trusted nowhere: migrate, check, sql/schema.sql and sql/roles.sql refuse it with the fix, and nothing it carries runs", async ({ t, pg }) => {
  await using db = await hostileDb(pg.url);
  if (pg.major !== 13) await db.admin.unsafe("GRANT CREATE ON SCHEMA public TO PUBLIC");
  await makeKit(db);
  const mallory = db.connectAs(db.users.mallory);
  // A table named as login-etl's own, of the shape migrate writes its
  // versions into, with a trigger that runs the attacker's code on every
  // write (before, owning it made its owner trusted: migrate then applied
  // every version through the shadows below as the superuser).
  await mallory.unsafe(`
    CREATE TABLE public.login_etl_migrations (version integer PRIMARY KEY, name text, source text,
      applied_at timestamptz DEFAULT now(), applied_by text DEFAULT session_user);
    CREATE FUNCTION kit.on_write() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM kit.caught('trigger on ' || TG_TABLE_NAME); RETURN NEW; END $$;
    CREATE TRIGGER caught BEFORE INSERT OR UPDATE OR DELETE ON public.login_etl_migrations
      FOR EACH ROW EXECUTE FUNCTION kit.on_write();
    GRANT ALL ON public.login_etl_migrations TO PUBLIC;`).simple();
  const cli = new Cli(db.cliEnv());
  const decoy = new RegExp(
    `schema public holds table public\\.login_etl_migrations of role ${db.users.mallory} \\(and \\d+ more\\); .*; run DROP TABLE public\\.login_etl_migrations`,
  );
  const nothingMade = async () => {
    const [made] = await db.admin<{ n: number }[]>`
      SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname IN ('public', ${STATE}) AND c.relname IN ('user_logins', 'login_etl_ledger')`;
    assert.equal(made?.n, 0, "nothing created");
  };
  const refusedEverywhere = async (when: string) => {
    const migrated = await cli.run(["migrate"]);
    assert.equal(migrated.code, 1, migrated.stderr);
    assert.match(failureLine(migrated), /^error: Refused to migrate schema public: /);
    const check = await cli.run(["check", "--for", "migrate"]);
    assert.equal(check.code, 1, check.stdout);
    assert.match(check.stdout, /^fail\s+schema rights\s+schema public holds /m);
    await assert.rejects(
      db.psql([SCHEMA_SQL]),
      /Refused to apply sql\/schema.sql: schema public holds/,
    );
    await assert.rejects(
      db.psql([ROLES_SQL]),
      /Refused to apply sql\/roles.sql: schema public holds/,
    );
    await nothingMade();
    await assertNothingGained(db, when);
  };

  await t.step("CREATE still open to PUBLIC: refused with the REVOKE, nothing runs", async () => {
    try {
      const migrated = await cli.run(["migrate"]);
      assert.match(
        failureLine(migrated),
        /^error: Refused to migrate schema public: every role \(PUBLIC\) may create objects in schema public( \(and \d+ more\))?; .* run REVOKE CREATE ON SCHEMA public FROM PUBLIC$/,
      );
      await assert.rejects(db.psql([SCHEMA_SQL]), /Refused to apply sql\/schema.sql: every role/);
      await nothingMade();
      await assertNothingGained(db, "with CREATE open to PUBLIC");
    } finally {
      // As the refusal says; the attacker's table stays.
      await db.admin.unsafe("REVOKE CREATE ON SCHEMA public FROM PUBLIC");
    }
  });

  await t.step("the decoy alone: refused by all four, DROP TABLE named", async () => {
    const migrated = await cli.run(["migrate"]);
    assert.match(
      failureLine(migrated),
      new RegExp(`^error: Refused to migrate schema public: ${decoy.source}$`),
    );
    await refusedEverywhere("with the decoy planted");
  });

  await t.step("with shadows planted beside it: still refused, none runs", async () => {
    await db.admin.unsafe(`GRANT CREATE ON SCHEMA public TO "${db.users.mallory}"`);
    await plantShadows(db, "public");
    await db.admin.unsafe(`REVOKE CREATE ON SCHEMA public FROM "${db.users.mallory}"`);
    await refusedEverywhere("with the decoy and shadows planted");
  });

  await t.step(
    "a decoy view of the version, calling the attacker's code: read by no command",
    async () => {
      await db.admin.unsafe(`DROP TABLE public.login_etl_migrations`);
      await db.admin.unsafe(`GRANT CREATE ON SCHEMA public TO "${db.users.mallory}"`);
      await mallory.unsafe(`
      CREATE FUNCTION kit.state() RETURNS text LANGUAGE plpgsql AS $$
      BEGIN PERFORM kit.caught('view'); RETURN '${STATE}'; END $$;
      CREATE VIEW public.login_etl_migrations AS SELECT 8 AS version, kit.state() AS state_schema;
      GRANT SELECT ON public.login_etl_migrations TO PUBLIC;`).simple();
      await db.admin.unsafe(`REVOKE CREATE ON SCHEMA public FROM "${db.users.mallory}"`);
      await refusedEverywhere("with a decoy view");
      const drained = await cli.run(["check"], { DATABASE_URL: db.urlOf(db.users.consumer) });
      assert.notEqual(drained.code, 0, drained.stdout);
      await assertNothingGained(db, "by check as a consumer login");
    },
  );

  await t.step("the fixes the refusals name, run in turn: migrate works", async () => {
    const fixes = await applyFixes(db);
    assert.ok(fixes.includes("DROP VIEW public.login_etl_migrations"), fixes.join("; "));
    await succeeds(cli, ["migrate"], {});
    await db.psql([ROLES_SQL]);
    await assertNothingGained(db, "by migrate and sql/roles.sql once fixed");
  });
});

eachMajorWithPsql.test("leftover functions and an operator of a role that could once create in the state schema, beside a login_etl_vault of its own in public, are refused by check, sql/roles.sql and migrate with the fix, and never run", async ({ t, pg }) => {
  await using db = await hostileDb(pg.url);
  await db.admin.unsafe("REVOKE CREATE ON SCHEMA public FROM PUBLIC");
  await db.psql([SCHEMA_SQL, ROLES_SQL]);
  await db.joinGroups();
  // Once allowed to create in both schemas (public open to PUBLIC again, as
  // on a cluster upgraded from 13), the attacker left shadows (an operator
  // among them) in the state schema and a table named as the vault in
  // public; then the DBA took CREATE back.
  await db.admin.unsafe(`
    GRANT CREATE ON SCHEMA public TO PUBLIC;
    GRANT USAGE, CREATE ON SCHEMA ${STATE} TO "${db.users.mallory}";`).simple();
  await makeKit(db);
  await plantShadows(db, STATE);
  await db.connectAs(db.users.mallory).unsafe(
    "CREATE TABLE public.login_etl_vault (masked_value text) PARTITION BY LIST (masked_value)",
  );
  await db.admin.unsafe(`
    REVOKE CREATE ON SCHEMA public FROM PUBLIC;
    REVOKE CREATE ON SCHEMA ${STATE} FROM "${db.users.mallory}";`).simple();
  const cli = new Cli(db.cliEnv());
  const leftover = new RegExp(
    `schema ${STATE} holds aggregate ${STATE}\\.array_agg\\(text\\) of role ${db.users.mallory}( \\(and \\d+ more\\))?; .*; run DROP AGGREGATE ${STATE}\\.array_agg\\(text\\)`,
  );

  await t.step("check, as the DBA and as the recoverer: fails with the DROP", async () => {
    for (const env of [{}, { DATABASE_URL: db.urlOf(db.users.recoverer) }]) {
      const result = await cli.run(["check", "--for", "forget"], env);
      assert.equal(result.code, 1, result.stdout + result.stderr);
      assert.match(result.stdout, new RegExp(`^fail\\s+schema rights\\s+${leftover.source}$`, "m"));
    }
    await assertNothingGained(db, "by check");
  });

  await t.step("sql/roles.sql again and migrate: refused, nothing runs", async () => {
    await assert.rejects(
      db.psql([ROLES_SQL]),
      new RegExp(`Refused to apply sql/roles.sql: ${leftover.source}`),
    );
    const migrated = await cli.run(["migrate"]);
    assert.equal(migrated.code, 1, migrated.stderr);
    assert.match(
      failureLine(migrated),
      new RegExp(`^error: Refused to migrate schema public: ${leftover.source}$`),
    );
    await assertNothingGained(db, "by sql/roles.sql or migrate");
  });

  await t.step(
    "the operator and the table are named too; once all are dropped, all is green",
    async () => {
      const fixes = await applyFixes(db);
      assert.ok(
        fixes.includes(`DROP OPERATOR ${STATE}.= (character varying, text)`),
        fixes.join("; "),
      );
      assert.ok(fixes.includes(`DROP FUNCTION ${STATE}.unnest(a text[])`), fixes.join("; "));
      assert.ok(fixes.includes("DROP TABLE public.login_etl_vault"), fixes.join("; "));
      await db.psql([ROLES_SQL]);
      await succeeds(cli, ["migrate"], {});
      const check = await cli.run(["check", "--for", "migrate"]);
      assert.match(check.stdout, /^ok\s+schema rights\s+only trusted roles may create/m);
      await assertNothingGained(db, "once fixed");
    },
  );
});

eachMajorWithPsql.test("a state schema made first by a role login-etl does not trust is refused with ALTER SCHEMA … OWNER TO CURRENT_USER, not used", async ({ t, pg }) => {
  await using db = await hostileDb(pg.url);
  await db.admin.unsafe("REVOKE CREATE ON SCHEMA public FROM PUBLIC");
  // A database its analysts could once create schemas in: the attacker
  // took login-etl's state schema name first.
  await db.admin.unsafe(`GRANT CREATE ON DATABASE "${db.name}" TO "${db.users.mallory}"`);
  await db.connectAs(db.users.mallory).unsafe(`CREATE SCHEMA ${STATE}`);
  await db.admin.unsafe(`REVOKE CREATE ON DATABASE "${db.name}" FROM "${db.users.mallory}"`);
  const cli = new Cli(db.cliEnv());
  const owned = new RegExp(
    `schema ${STATE} belongs to role ${db.users.mallory}( \\(and \\d+ more\\))?; .*; run ALTER SCHEMA ${STATE} OWNER TO CURRENT_USER`,
  );

  await t.step("migrate and sql/schema.sql: refused, nothing made in it", async () => {
    const migrated = await cli.run(["migrate"]);
    assert.equal(migrated.code, 1, migrated.stderr);
    assert.match(
      failureLine(migrated),
      new RegExp(`^error: Refused to migrate schema public: ${owned.source}$`),
    );
    await assert.rejects(
      db.psql([SCHEMA_SQL]),
      new RegExp(`Refused to apply sql/schema.sql: ${owned.source}`),
    );
    const [made] = await db.admin<{ n: number }[]>`
      SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname IN ('public', ${STATE}) AND c.relkind IN ('r', 'p', 'v')`;
    assert.equal(made?.n, 0, "nothing created");
  });

  await t.step(
    "the fix run as the DBA: migrate works, the attacker holds nothing there",
    async () => {
      assert.deepEqual(await applyFixes(db), [`ALTER SCHEMA ${STATE} OWNER TO CURRENT_USER`]);
      await succeeds(cli, ["migrate"], {});
      const [rights] = await db.admin<{ create: boolean; usage: boolean }[]>`
      SELECT has_schema_privilege(${db.users.mallory}, ${STATE}, 'CREATE') AS create,
             has_schema_privilege(${db.users.mallory}, ${STATE}, 'USAGE') AS usage`;
      assert.deepEqual(rights, { create: false, usage: false });
    },
  );
});

// On the throwaway cluster of PostgreSQL 13 only: the test counts every role
// that can log in, which tests of other processes on the shared server change.
Deno.test({
  name:
    "CREATE for PUBLIC is refused once a role login-etl does not trust can log in, not before (PostgreSQL 13)",
  ignore: unavailable(13) !== null,
  fn: async () => {
    const pg = await pgServer(13);
    await using db = await hostileDb(pg.url);
    const schemas = { schema: "public", stateSchema: STATE };
    const logins = async () =>
      (await db.admin<
        { name: string }[]
      >`SELECT rolname::text AS name FROM pg_roles WHERE rolcanlogin`)
        .map((r) => r.name);
    // Only roles it trusts can log in: nobody could have planted anything yet.
    assert.deepEqual(await findUntrusted(db.admin, schemas, await logins()), []);
    const trusted = await logins();
    const newcomer = uniqueName("newcomer");
    await db.admin.unsafe(`CREATE ROLE "${newcomer}" LOGIN`);
    try {
      assert.deepEqual(await findUntrusted(db.admin, schemas, trusted), [{
        problem: "every role (PUBLIC) may create objects in schema public",
        fix: "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
      }]);
    } finally {
      await db.admin.unsafe(`DROP ROLE "${newcomer}"`);
    }
  },
});
