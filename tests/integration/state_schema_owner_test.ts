// login-etl's state schema where the owner role's login migrates, as
// operations.md documents it: on a new database and on one left by version 5
// whose ledger that login made as itself, migrate, sql/roles.sql and check
// end green twice, and the login is left no right or object of its own. Each
// on PostgreSQL 13, 15 and 18. The rest of the state schema's cases are in
// state_schema_test.ts.

import assert from "node:assert/strict";
import { migrateToV5, ROLES_V5 } from "../helpers/layout_v5.ts";
import { eachMajor } from "../helpers/majors.ts";
import { Cli, cliEnv } from "../helpers/pii.ts";
import { rolesFiles } from "../helpers/psql.ts";
import { freshSchema, startSqs, type TestDb } from "../helpers/services.ts";
import { type TestRoles, testRoles } from "../helpers/state_roles.ts";
/**
 * The documented sequence after the DBA's part, twice: `migrate` as the
 * owner role's login, sql/roles.sql as the DBA, `check --for migrate` as the
 * login and `check` (drain) as the consumer, each ending green; then no
 * login holds a grant on either schema or owns anything in them.
 */
async function documentedRounds(
  t: Deno.TestContext,
  db: TestDb,
  roles: TestRoles,
  queueUrl: string,
): Promise<void> {
  const cli = new Cli(cliEnv(db, { LOGIN_ETL_OWNER_ROLE: roles.groups.owner }));
  const asOwner = { DATABASE_URL: roles.urlOf(roles.users.owner) };
  for (const round of [1, 2]) {
    await t.step(`round ${round}: migrate, sql/roles.sql, check`, async () => {
      const migrated = await cli.run(["migrate"], asOwner);
      assert.equal(migrated.code, 0, migrated.stderr);
      await rolesFiles(db.schema, [new URL("../../sql/roles.sql", import.meta.url)], {
        url: db.url,
        rewrite: roles.rewrite,
      });
      const forMigrate = await cli.run(["check", "--for", "migrate"], asOwner);
      assert.equal(forMigrate.code, 0, forMigrate.stdout + forMigrate.stderr);
      assert.match(forMigrate.stdout, /^ok\s+schema rights\s+only trusted roles/m);
      const forDrain = await cli.run(["check", "--queue-url", queueUrl], {
        DATABASE_URL: roles.urlOf(roles.users.consumer),
      });
      assert.equal(forDrain.code, 0, forDrain.stdout + forDrain.stderr);
      assert.match(forDrain.stdout, /^ok\s+schema rights\s+only trusted roles/m);
    });
  }
  const [left] = await db.sql<{ grants: string[]; owned: string[] }[]>`
    WITH ns AS (SELECT oid, nspacl FROM pg_namespace WHERE nspname IN (${db.schema}, ${db.stateSchema})),
         login AS (SELECT oid FROM pg_roles WHERE rolname = ${roles.users.owner})
    SELECT coalesce((SELECT array_agg(DISTINCT ns.oid::regnamespace::text) FROM ns, aclexplode(ns.nspacl) a
                     WHERE a.grantee = (SELECT oid FROM login)), '{}') AS grants,
           coalesce((SELECT array_agg(c.relname::text) FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
                     WHERE c.relowner = (SELECT oid FROM login)), '{}') AS owned`;
  assert.deepEqual(left, { grants: [], owned: [] }, "the login keeps no grant and owns nothing");
}

eachMajor.test("a new database the owner role's login migrates: migrate, sql/roles.sql and check end green, and again; no login keeps a right or an object of its own", async ({ t, pg }) => {
  await using sqs = await startSqs();
  await using db = await freshSchema(pg);
  const roles = testRoles(db);
  try {
    // The DBA: sql/roles.sql's groups, the logins, and both schemas open to
    // the owner role (operations.md, "A new database migrated by the owner role").
    await db.sql.unsafe(roles.rewrite(`
      CREATE ROLE login_etl_owner NOLOGIN;
      CREATE ROLE login_etl_consumer NOLOGIN;
      CREATE ROLE pii_recoverer NOLOGIN;
      CREATE ROLE login_etl_analyst NOLOGIN;`)).simple();
    await roles.createUsers();
    await db.sql.unsafe(`
      GRANT USAGE, CREATE ON SCHEMA "${db.schema}" TO "${roles.groups.owner}";
      CREATE SCHEMA "${db.stateSchema}" AUTHORIZATION "${roles.groups.owner}";`).simple();
    await documentedRounds(t, db, roles, sqs.createQueue());
  } finally {
    await roles.drop();
  }
});

eachMajor.test("a database at version 5 whose ledger the owner role's login made as itself: migrate, sql/roles.sql and check end green, and again; the login is given nothing", async ({ t, pg }) => {
  await using sqs = await startSqs();
  await using db = await freshSchema(pg);
  const roles = testRoles(db);
  try {
    await migrateToV5(db);
    await rolesFiles(db.schema, [ROLES_V5], { url: db.url, rewrite: roles.rewrite });
    await roles.createUsers();
    // A migration that login ran as itself after sql/roles.sql: the ledger is
    // its own (version 6 then gave it USAGE and CREATE on the state schema).
    await db.sql.unsafe(`
      ALTER TABLE "${db.schema}".login_etl_ledger OWNER TO "${roles.users.owner}";
      CREATE SCHEMA "${db.stateSchema}" AUTHORIZATION "${roles.groups.owner}";`).simple();
    await documentedRounds(t, db, roles, sqs.createQueue());
  } finally {
    await roles.drop();
  }
});
