// A database of its own for a test that plants code in schema public (which
// would reach every other test sharing a database) or works as the roles of
// sql/roles.sql in their default schemas, the roles of sql/roles.sql
// under this test's names with a login in each, and the attacker's kit: shadow
// functions, aggregates and an operator that record every call (in a sequence,
// which a rollback does not undo) and try to make their planter a superuser
// and give it the vault, with whatever rights the caller has.

import assert from "node:assert/strict";
import postgres from "postgres";
import { type Cli, VAULT_SECRET } from "./pii.ts";
import { psqlFiles } from "./psql.ts";
import { roleNames } from "./role_names.ts";
import { TEST_SECRET, uniqueName } from "./services.ts";

/** The state schema of the databases here: login-etl's default. */
export const STATE = "login_etl";

/** A throwaway database with sql/roles.sql's roles, a login in each, and an attacker login. */
export interface HostileDb extends AsyncDisposable {
  readonly name: string;
  /** The superuser, its search_path pg_catalog alone, so the test's own queries call nothing planted. */
  readonly admin: postgres.Sql;
  readonly groups: {
    readonly owner: string;
    readonly consumer: string;
    readonly recoverer: string;
    readonly analyst: string;
  };
  /** Logins: the owner's (migrate, rekey), the consumer's, two recoverers, and the attacker (an analyst). */
  readonly users: {
    readonly owner: string;
    readonly consumer: string;
    readonly recoverer: string;
    readonly recoverer2: string;
    readonly mallory: string;
  };
  /** The database's URL as `user` (the superuser when not given). */
  urlOf(user?: string): string;
  /** sql/roles.sql (or any text) with this test's role names. */
  rewrite(text: string): string;
  /** Runs SQL files with psql as the superuser, with search_path public and this state schema. */
  psql(files: readonly URL[]): Promise<void>;
  /** A connection as `user`, its search_path pg_catalog alone; closed on dispose. */
  connectAs(user: string): postgres.Sql;
  /** The environment of a CLI run against this database (keys, schemas, the owner group), as the superuser. */
  cliEnv(extra?: Record<string, string>): Record<string, string>;
}

/**
 * Creates a database (from template1, so schema public as the server's major
 * makes it), the roles with this test's suffix and their logins. The groups
 * are made by sql/roles.sql when it runs; the logins join them then
 * (`joinGroups`). Use with `await using`.
 */
export async function hostileDb(
  serverUrl: string,
): Promise<HostileDb & { joinGroups(): Promise<void> }> {
  const { suffix, groups, rewrite } = roleNames();
  const { owner, consumer, recoverer, analyst } = groups;
  const name = uniqueName("hostile");
  const password = crypto.randomUUID();
  const users = {
    owner: `etl_migrate${suffix}`,
    consumer: `etl_service${suffix}`,
    recoverer: `alice${suffix}`,
    recoverer2: `bob${suffix}`,
    mallory: `mallory${suffix}`,
  };
  const server = postgres(serverUrl, { max: 1, onnotice: () => {} });
  try {
    await server.unsafe(`CREATE DATABASE "${name}"`);
    for (const user of Object.values(users)) {
      await server.unsafe(`CREATE ROLE "${user}" LOGIN PASSWORD '${password}'`);
    }
  } finally {
    await server.end();
  }
  const urlOf = (user?: string) => {
    const url = new URL(serverUrl);
    url.hostname = "127.0.0.1";
    url.pathname = `/${name}`;
    if (user !== undefined) {
      url.username = user;
      url.password = password;
    }
    return url.toString();
  };
  const clients: postgres.Sql[] = [];
  const connectAs = (user?: string) => {
    const sql = postgres(urlOf(user), {
      max: 1,
      onnotice: () => {},
      connection: { search_path: "pg_catalog" },
    });
    clients.push(sql);
    return sql;
  };
  const admin = connectAs();
  return {
    name,
    admin,
    groups,
    users,
    urlOf,
    rewrite,
    psql: (files) => psqlFiles("public", files, { url: urlOf(), stateSchema: STATE, rewrite }),
    connectAs,
    cliEnv: (extra = {}) => ({
      DATABASE_URL: urlOf(),
      LOGIN_ETL_SCHEMA: "public",
      LOGIN_ETL_STATE_SCHEMA: STATE,
      LOGIN_ETL_OWNER_ROLE: owner,
      PII_HMAC_KEY: TEST_SECRET,
      PII_VAULT_KEY: VAULT_SECRET,
      LOGIN_ETL_LOG_FORMAT: "json",
      ...extra,
    }),
    async joinGroups() {
      await admin.unsafe(`
        GRANT "${owner}" TO "${users.owner}";
        GRANT "${consumer}" TO "${users.consumer}";
        GRANT "${recoverer}" TO "${users.recoverer}";
        GRANT "${recoverer}" TO "${users.recoverer2}";
        GRANT "${analyst}" TO "${users.mallory}";`).simple();
    },
    async [Symbol.asyncDispose]() {
      for (const sql of clients) await sql.end();
      const root = postgres(serverUrl, { max: 1, onnotice: () => {} });
      try {
        await root.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
        const names = [...Object.values(users), owner, consumer, recoverer, analyst];
        const existing = (await root<{ rolname: string }[]>`
          SELECT rolname FROM pg_roles WHERE rolname = ANY(${names})`)
          .map((r) => `"${r.rolname}"`).join(", ");
        if (existing !== "") {
          await root.unsafe(`DROP OWNED BY ${existing}`);
          await root.unsafe(`DROP ROLE ${existing}`);
        }
      } finally {
        await root.end();
      }
    },
  };
}

/**
 * The attacker's bookkeeping, in a schema of its own that nobody searches:
 * `kit.caught(what)` counts a call in a sequence (kept even when the caller's
 * transaction rolls back), logs who ran it, and tries, with the caller's
 * rights, to make the planter a superuser, to give it every table of the
 * state schema and the recoverer's group. Made as the superuser for the
 * schema, then as the attacker.
 */
export async function makeKit(db: HostileDb): Promise<void> {
  const m = db.users.mallory;
  await db.admin.unsafe(`CREATE SCHEMA kit AUTHORIZATION "${m}"`);
  const mallory = db.connectAs(m);
  await mallory.unsafe(`
    CREATE SEQUENCE kit.calls;
    CREATE TABLE kit.log (what text, who text, login text);
    GRANT USAGE ON SCHEMA kit TO PUBLIC;
    GRANT USAGE, UPDATE ON SEQUENCE kit.calls TO PUBLIC;
    GRANT INSERT ON kit.log TO PUBLIC;
    CREATE FUNCTION kit.caught(what text) RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM pg_catalog.nextval('kit.calls');
      INSERT INTO kit.log VALUES (what, CURRENT_USER, SESSION_USER);
      BEGIN EXECUTE 'ALTER ROLE "${m}" SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END;
      BEGIN EXECUTE 'GRANT ALL ON ALL TABLES IN SCHEMA ${STATE} TO "${m}"'; EXCEPTION WHEN OTHERS THEN NULL; END;
      BEGIN EXECUTE 'GRANT "${db.groups.recoverer}" TO "${m}"'; EXCEPTION WHEN OTHERS THEN NULL; END;
    END $$;
    CREATE FUNCTION kit.json_step(s text[], v text) RETURNS text[] LANGUAGE plpgsql AS $$
    BEGIN PERFORM kit.caught('json_agg(text)'); RETURN pg_catalog.array_append(s, v); END $$;
    CREATE FUNCTION kit.json_final(s text[]) RETURNS json LANGUAGE sql AS
      $$ SELECT pg_catalog.array_to_json(s) $$;
    CREATE FUNCTION kit.array_step(s text[], v text) RETURNS text[] LANGUAGE plpgsql AS $$
    BEGIN PERFORM kit.caught('array_agg(text)'); RETURN pg_catalog.array_append(s, v); END $$;
    CREATE FUNCTION kit.varchar_eq_text(a varchar, b text) RETURNS boolean LANGUAGE plpgsql AS $$
    BEGIN PERFORM kit.caught('=(varchar, text)'); RETURN a::text OPERATOR(pg_catalog.=) b; END $$;`)
    .simple();
}

/**
 * Shadows of built-ins in `schema`, as the attacker: each records the call
 * (`kit.caught`) and then does what the built-in would, so a caller that
 * picks one works on and the attacker stays unseen. Each is a better match
 * than pg_catalog's for the calls login-etl's SQL makes (or made before
 * version 7): an exact type where pg_catalog's is polymorphic ("anyarray",
 * "any") or needs a cast (date to timestamp, name to text, varchar to text).
 */
export async function plantShadows(db: HostileDb, schema: string): Promise<void> {
  const mallory = db.connectAs(db.users.mallory);
  const s = `"${schema}"`;
  const body = (what: string, rest: string) =>
    `LANGUAGE plpgsql AS $$ BEGIN PERFORM kit.caught('${schema}.${what}'); ${rest} END $$`;
  await mallory.unsafe(`
    CREATE FUNCTION ${s}.unnest(a text[]) RETURNS SETOF text
      ${body("unnest(text[])", "RETURN QUERY SELECT pg_catalog.unnest(a);")};
    CREATE FUNCTION ${s}.unnest(a bytea[]) RETURNS SETOF bytea
      ${body("unnest(bytea[])", "RETURN QUERY SELECT pg_catalog.unnest(a);")};
    CREATE FUNCTION ${s}.format(f text, VARIADIC a text[]) RETURNS text
      ${body("format(text, text[])", "RETURN pg_catalog.format(f, VARIADIC a);")};
    CREATE FUNCTION ${s}.cardinality(a text[]) RETURNS integer
      ${body("cardinality(text[])", "RETURN pg_catalog.cardinality(a);")};
    CREATE FUNCTION ${s}.generate_series(a date, b date, i interval) RETURNS SETOF date
      ${
    body(
      "generate_series(date, date, interval)",
      "RETURN QUERY SELECT d::date FROM pg_catalog.generate_series(a::timestamp, b::timestamp, i) AS d;",
    )
  };
    CREATE FUNCTION ${s}.to_char(d date, f text) RETURNS text
      ${body("to_char(date, text)", "RETURN pg_catalog.to_char(d::timestamp, f);")};
    CREATE FUNCTION ${s}.substr(n name, i integer) RETURNS text
      ${body("substr(name, integer)", "RETURN pg_catalog.substr(n::text, i);")};
    CREATE AGGREGATE ${s}.json_agg(text)
      (SFUNC = kit.json_step, STYPE = text[], INITCOND = '{}', FINALFUNC = kit.json_final);
    CREATE AGGREGATE ${s}.array_agg(text) (SFUNC = kit.array_step, STYPE = text[], INITCOND = '{}');
    CREATE OPERATOR ${s}.= (LEFTARG = varchar, RIGHTARG = text, FUNCTION = kit.varchar_eq_text);`)
    .simple();
}

/** What the planted code did: calls counted (rollbacks included), and who ran it where a log row survived. */
export async function hijacks(db: HostileDb): Promise<{ calls: number; log: string[] }> {
  const [seq] = await db.admin<{ calls: number }[]>`
    SELECT CASE WHEN is_called THEN last_value ELSE 0 END::int AS calls FROM kit.calls`;
  const log = await db.admin<{ line: string }[]>`
    SELECT what || ' as ' || who || ' (login ' || login || ')' AS line FROM kit.log`;
  return { calls: seq?.calls ?? -1, log: log.map((r) => r.line) };
}

/**
 * Asserts that no planted code ran and the attacker holds nothing it did not
 * hold: no superuser, no group besides the analysts', no privilege on a table
 * of the state schema beyond what every role has (the schema version, the
 * layout).
 */
export async function assertNothingGained(db: HostileDb, when: string): Promise<void> {
  assert.deepEqual(await hijacks(db), { calls: 0, log: [] }, `planted code ran ${when}`);
  const m = db.users.mallory;
  const [role] = await db.admin<{ superuser: boolean; groups: string[]; tables: string[] }[]>`
    SELECT r.rolsuper AS superuser,
           coalesce((SELECT array_agg(g.rolname::text ORDER BY g.rolname) FROM pg_auth_members a
                     JOIN pg_roles g ON g.oid = a.roleid
                     WHERE a.member = r.oid AND g.rolname <> ${db.groups.analyst}), '{}') AS groups,
           coalesce((SELECT array_agg(c.relname::text ORDER BY c.relname) FROM pg_class c
                     JOIN pg_namespace n ON n.oid = c.relnamespace,
                     unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) AS p(privilege)
                     WHERE n.nspname = ${STATE} AND c.relkind IN ('r', 'p')
                       AND has_table_privilege(${m}, c.oid, p.privilege)
                       AND NOT has_table_privilege('public', c.oid, p.privilege)), '{}') AS tables
    FROM pg_roles r WHERE r.rolname = ${m}`;
  assert.deepEqual(
    role,
    { superuser: false, groups: [], tables: [] },
    `the attacker gained something ${when}`,
  );
}

/** Runs a CLI command and asserts it worked, for the steps whose point is what else ran. */
export async function succeeds(
  cli: Cli,
  args: readonly string[],
  env: Record<string, string>,
): Promise<string> {
  const result = await cli.run(args, env, { revealing: true });
  assert.equal(result.code, 0, `${args[0]}: ${result.stderr.slice(-2000)}`);
  return result.stdout;
}
