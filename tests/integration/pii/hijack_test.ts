// No hijackable code (issue 19, H3): a role that may create objects in a
// schema login-etl's SQL searches plants shadows of built-ins there
// (`unnest(text[])`, `format(text, VARIADIC text[])`, aggregates
// `json_agg(text)` and `array_agg(text)`, an operator `=(varchar, text)`…)
// that record every call and try to make it a superuser and give it the
// vault. On PostgreSQL 13 every role may create in schema public by default
// (and clusters upgraded from 14 or older keep that; on 15 and 18 the test
// grants it to reproduce them). migrate, check and sql/schema.sql refuse
// such a schema with the statement that fixes it; once login-etl runs there,
// drain, recover, forget, rekey and sql/roles.sql never run the planted code,
// even with the attacker able to create in the state schema too. Decoys of
// login-etl's own tables and leftovers of a role that could once create
// there: hijack_decoy_test.ts.

import assert from "node:assert/strict";
import { assertRefused, Cli, drain, hmacKeySet, maskerOf, PEOPLE } from "../../helpers/pii.ts";
import { failureLine } from "../../helpers/cli.ts";
import {
  assertNothingGained,
  hijacks,
  hostileDb,
  makeKit,
  plantShadows,
  STATE,
  succeeds,
} from "../../helpers/hostile.ts";
import { eachMajorWithPsql } from "../../helpers/psql.ts";
import { startSqs, TEST_SECRET } from "../../helpers/services.ts";

const SQL = new URL("../../../sql/", import.meta.url);
const SCHEMA_SQL = new URL("schema.sql", SQL);
const ROLES_SQL = new URL("roles.sql", SQL);

eachMajorWithPsql.test("migrate, check and sql/schema.sql refuse a schema where any role may create, or that holds another role's functions, with the fix; the planted code never runs", async ({ t, pg }) => {
  await using db = await hostileDb(pg.url);
  const [acl] = await db.admin<{ public: boolean }[]>`
    SELECT has_schema_privilege('public', 'public', 'CREATE') AS public`;
  if (pg.major === 13) {
    assert.equal(acl?.public, true, "PostgreSQL 13: every role may create in public");
  } else await db.admin.unsafe("GRANT CREATE ON SCHEMA public TO PUBLIC");
  await makeKit(db);
  await plantShadows(db, "public");
  const cli = new Cli(db.cliEnv());
  const nothingMade = async () => {
    const [made] = await db.admin<{ n: number }[]>`
      SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname IN ('public', ${STATE}) AND c.relname IN ('user_logins', 'login_etl_migrations')`;
    assert.equal(made?.n, 0, "nothing created");
  };

  await t.step("migrate as a superuser: refused, REVOKE CREATE named", async () => {
    const result = await cli.run(["migrate"]);
    assertRefused(
      result,
      1,
      /^error: Refused to migrate schema public: every role \(PUBLIC\) may create objects in schema public \(and \d+ more\); login-etl's migrations and SECURITY DEFINER functions look up what they call there, so planted code would run with their rights; run REVOKE CREATE ON SCHEMA public FROM PUBLIC$/,
    );
    await nothingMade();
    await assertNothingGained(db, "by migrate");
  });

  await t.step("check --for migrate fails on it with the same fix", async () => {
    const result = await cli.run(["check", "--for", "migrate"]);
    assert.equal(result.code, 1, result.stdout + result.stderr);
    assert.match(
      result.stdout,
      /^fail\s+schema rights\s+every role \(PUBLIC\) may create objects in schema public \(and \d+ more\); .*; run REVOKE CREATE ON SCHEMA public FROM PUBLIC$/m,
    );
  });

  await t.step("sql/schema.sql through psql: refused before anything runs", async () => {
    await assert.rejects(
      db.psql([SCHEMA_SQL]),
      /ERROR: {2}Refused to apply sql\/schema.sql: every role \(PUBLIC\) may create objects in schema public; .* run REVOKE CREATE ON SCHEMA public FROM PUBLIC/,
    );
    await nothingMade();
    await assertNothingGained(db, "by sql/schema.sql");
  });

  await t.step(
    "CREATE revoked, the planted functions still there: refused, DROP named",
    async () => {
      await db.admin.unsafe("REVOKE CREATE ON SCHEMA public FROM PUBLIC");
      const result = await cli.run(["migrate"]);
      assert.equal(result.code, 1, result.stderr);
      assert.match(
        failureLine(result),
        new RegExp(
          `^error: Refused to migrate schema public: schema public holds aggregate public\\.array_agg\\(text\\) of role ${db.users.mallory} \\(and \\d+ more\\); .* run DROP AGGREGATE public\\.array_agg\\(text\\)$`,
        ),
      );
      await assert.rejects(
        db.psql([SCHEMA_SQL]),
        /Refused to apply sql\/schema.sql: schema public holds/,
      );
      const check = await cli.run(["check", "--for", "migrate"]);
      assert.match(check.stdout, /^fail\s+schema rights\s+schema public holds aggregate/m);
      await nothingMade();
      await assertNothingGained(db, "by migrate or sql/schema.sql with the functions planted");
    },
  );

  await t.step("the functions dropped, as the refusals said: migrate works", async () => {
    await db.admin.unsafe(`DROP OWNED BY "${db.users.mallory}"`);
    const result = await cli.run(["migrate"]);
    assert.equal(result.code, 0, result.stderr);
    const check = await cli.run(["check", "--for", "migrate"]);
    assert.match(check.stdout, /^ok\s+schema rights\s+only trusted roles may create/m);
  });
});

eachMajorWithPsql.test("with shadows planted in the data and the state schema, drain, check, recover, forget, rekey and sql/roles.sql never run them, and the planter gains nothing", async ({ t, pg }) => {
  await using sqs = await startSqs();
  await using db = await hostileDb(pg.url);
  // The DBA's path, on a clean database: CREATE on public revoked (13's
  // default would be refused), the schema and the roles through psql.
  await db.admin.unsafe("REVOKE CREATE ON SCHEMA public FROM PUBLIC");
  await db.psql([SCHEMA_SQL, ROLES_SQL]);
  await db.joinGroups();
  // Then a misconfiguration: the attacker (an analyst) may create in both
  // schemas, and plants everywhere login-etl's SQL looks.
  await db.admin.unsafe(`
    GRANT CREATE ON SCHEMA public TO "${db.users.mallory}";
    GRANT USAGE, CREATE ON SCHEMA ${STATE} TO "${db.users.mallory}";`).simple();
  await makeKit(db);
  await plantShadows(db, "public");
  await plantShadows(db, STATE);
  const cli = new Cli(db.cliEnv());
  const as = (user: string) => ({ DATABASE_URL: db.urlOf(user) });
  const k1 = await maskerOf(TEST_SECRET, "k1");
  const ipMask = k1.mask("ip", "203.0.113.7");
  const deviceMask = k1.mask("device_id", "444-55-6666");

  await t.step("check, as the recoverer: fails and names the REVOKE", async () => {
    const result = await cli.run(["check", "--for", "forget"], as(db.users.recoverer));
    assert.equal(result.code, 1, result.stdout + result.stderr);
    assert.match(
      result.stdout,
      new RegExp(
        `^fail\\s+schema rights\\s+role ${db.users.mallory} may create objects in schema ${STATE} \\(and \\d+ more\\); .*; run REVOKE CREATE ON SCHEMA ${STATE} FROM ${db.users.mallory}$`,
        "m",
      ),
    );
    await assertNothingGained(db, "by check");
  });

  await t.step("drain as the consumer, the vault on", async () => {
    const drained = await drain(sqs, cli, PEOPLE, as(db.users.consumer));
    assert.equal(drained.inserted, 4);
    await assertNothingGained(db, "by drain (the write, vault_put, ledger_maintain)");
  });

  await t.step("recover and forget as the recoverer", async () => {
    const stdout = await succeeds(
      cli,
      ["recover", "--masked", ipMask, "--reason", "INC-1", "--actor", "alice"],
      as(db.users.recoverer),
    );
    assert.equal(stdout, `${ipMask}\tip\t203.0.113.7\n`);
    await succeeds(
      cli,
      ["forget", "--masked", deviceMask, "--reason", "DSAR 1", "--actor", "alice"],
      as(db.users.recoverer),
    );
    await succeeds(cli, ["recover", "--audit"], as(db.users.recoverer));
    await assertNothingGained(db, "by recover or forget");
  });

  await t.step("rekey as the owner", async () => {
    await succeeds(
      cli,
      ["rekey", "--to", "k2", "--reason", "rotation"],
      { ...as(db.users.owner), PII_HMAC_KEY: hmacKeySet("k2") },
    );
    await assertNothingGained(db, "by rekey");
  });

  await t.step(
    "sql/roles.sql again, as the DBA (a superuser): refused, nothing planted runs",
    async () => {
      await assert.rejects(
        db.psql([ROLES_SQL]),
        new RegExp(
          `Refused to apply sql/roles.sql: role ${db.users.mallory} may create objects in schema ${STATE}.*; run REVOKE CREATE ON SCHEMA ${STATE} FROM ${db.users.mallory}`,
        ),
      );
      await assertNothingGained(db, "by sql/roles.sql");
    },
  );

  await t.step(
    "migrate as a superuser, nothing pending: refused all the same, nothing runs",
    async () => {
      const result = await cli.run(["migrate"]);
      assert.equal(result.code, 1, result.stderr);
      assert.match(
        failureLine(result),
        new RegExp(`^error: Refused to migrate schema public: role ${db.users.mallory} may create`),
      );
      await assertNothingGained(db, "by migrate");
    },
  );

  // The kit works: the attacker's own call of a shadow is recorded.
  const mallory = db.connectAs(db.users.mallory);
  await mallory.unsafe(`SELECT * FROM public.unnest(ARRAY['x']::text[])`);
  assert.equal((await hijacks(db)).calls, 1, "a direct call of a shadow is counted");
});
