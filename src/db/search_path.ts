/**
 * Where login-etl's SQL looks up the functions, operators and types it
 * calls, and who could plant something there. Postgres resolves an
 * unqualified call to the best match in any schema of `search_path`, and an
 * exact type match in a later schema beats a polymorphic one in pg_catalog
 * (`public.unnest(text[])` beats `pg_catalog.unnest(anyarray)`): whoever may
 * CREATE in a searched schema can make someone else's statement run their
 * code, with that someone's rights. So:
 *
 * - runtime sessions search only pg_catalog (`RUNTIME_SEARCH_PATH`), and
 *   name every table with its schema (pool.ts);
 * - the SECURITY DEFINER functions search pg_catalog, then the state schema,
 *   and qualify what they call (migrations.ts);
 * - the migrations of versions 1 to 6 create unqualified objects, so they run
 *   with the data schema in `search_path`; before they run, `migrate`,
 *   sql/schema.sql and sql/roles.sql refuse a data or state schema where a
 *   role they do not trust may create, owns the schema, or owns anything
 *   there: a table, view or sequence (whose reads and triggers run code), a
 *   trigger's function, a function, operator, type or conversion
 *   (`UNTRUSTED_QUERY`). `check` reports the same.
 *
 * The one rule of trust (`trustedRolesSql`), used by every refusal and by
 * version 6's grants: superusers, the data schema's owner (who may drop
 * anything in it anyway), and the roles a caller names, which are the owner
 * role (`login_etl_owner`, `--owner-role`) and, while it migrates, the
 * migrating role. Nothing else: not the state schema's owner (whoever
 * created that schema first owns it, so it is trusted only when the rule
 * trusts it anyway, and reported otherwise), not the members of the owner
 * role (being granted a role says nothing of the grantee), and nothing read
 * from a table's name or owner (anyone who may create in `public` can make a
 * table called login_etl_migrations). CREATE granted to PUBLIC counts once a
 * role we do not trust can log in: until then nobody could have planted
 * anything (a fresh cluster of PostgreSQL 14 or older with only its
 * superuser, as the exercise's container), and every later migration checks
 * again.
 *
 * @module
 */

import { pgArray, type Sql } from "./pool.ts";
import { literal, type Schemas } from "./schemas.ts";

/** The role sql/roles.sql makes to own login-etl's tables and functions (`--owner-role`'s default). */
export const OWNER_ROLE = "login_etl_owner";

/**
 * The owner role's name in SQL that psql also runs (version 6): the session
 * setting `login_etl.owner_role`, which `migrate` sets from `--owner-role`,
 * else `OWNER_ROLE`.
 */
export const OWNER_ROLE_SETTING =
  `COALESCE(NULLIF(pg_catalog.current_setting('login_etl.owner_role', true), ''), ${
    literal(OWNER_ROLE)
  })`;

/**
 * The roles login-etl trusts in a deployment's schemas, as an SQL query of
 * one column `role` (oid): superusers, the owner of the data schema named by
 * the text expression `data`, and the roles named by the text[] expression
 * `names`. Every call qualified and every operator on its exact types, since
 * it runs with the data schema in `search_path`.
 */
export function trustedRolesSql(data: string, names: string): string {
  return `SELECT r.oid AS role FROM pg_catalog.pg_roles r
  WHERE r.rolsuper OR r.rolname::text = ANY (${names})
  UNION SELECT n.nspowner FROM pg_catalog.pg_namespace n WHERE n.nspname::text = ${data}`;
}

/**
 * What makes a schema unsafe to search, one row per problem with the
 * statement that fixes it: `problem`, `fix`. Parameters: $1 the data schema,
 * $2 the state schema, $3 the names of the roles trusted besides superusers
 * and the data schema's owner (text[]: the owner role, and the migrating
 * role while it migrates). Every function is qualified and every operator
 * has operands of exactly its types, because psql runs this with the data
 * schema in `search_path`: it must not itself call what it looks for.
 * Composite types of tables, the array and multirange types Postgres makes
 * beside a type, and sequences that belong to a table's column are left out
 * (they come with a table or type already reported, or are harmless).
 */
export const UNTRUSTED_QUERY = `WITH ns AS (
  SELECT n.oid, n.nspname::text AS name, n.nspowner, n.nspacl FROM pg_catalog.pg_namespace n
  WHERE n.nspname::text IN ($1::text, $2::text)
), trusted AS (
  ${trustedRolesSql("$1::text", "$3::text[]")}
), creators AS (
  SELECT ns.name, a.grantee, a.grantee = ns.nspowner AS owns
  FROM ns, pg_catalog.aclexplode(COALESCE(ns.nspacl, pg_catalog.acldefault('n', ns.nspowner))) AS a
  WHERE a.privilege_type = 'CREATE' AND a.grantee NOT IN (SELECT trusted.role FROM trusted)
    AND (a.grantee <> 0::oid OR EXISTS (SELECT FROM pg_catalog.pg_roles r
                                       WHERE r.rolcanlogin AND r.oid NOT IN (SELECT trusted.role FROM trusted)))
  UNION
  SELECT ns.name, ns.nspowner, true FROM ns WHERE ns.nspowner NOT IN (SELECT trusted.role FROM trusted)
), planted AS (
  SELECT ns.name, c.relowner AS owner,
         CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                        WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END AS kind,
         pg_catalog.format('%I.%I', ns.name, c.relname) AS object
  FROM pg_catalog.pg_class c JOIN ns ON ns.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND c.relowner NOT IN (SELECT trusted.role FROM trusted)
    AND NOT (c.relkind = 'S' AND EXISTS (
      SELECT FROM pg_catalog.pg_depend d
      WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid
        AND d.objid = c.oid AND d.deptype IN ('a', 'i')
        AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid))
  UNION ALL
  SELECT ns.name, p.proowner, 'TRIGGER',
         pg_catalog.format('%I ON %I.%I', t.tgname, ns.name, c.relname)
  FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
    JOIN ns ON ns.oid = c.relnamespace JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
  WHERE NOT t.tgisinternal AND p.proowner NOT IN (SELECT trusted.role FROM trusted)
  UNION ALL
  SELECT ns.name, p.proowner,
         CASE p.prokind WHEN 'a' THEN 'AGGREGATE' WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END,
         pg_catalog.format('%I.%I(%s)', ns.name, p.proname,
                           pg_catalog.pg_get_function_identity_arguments(p.oid))
  FROM pg_catalog.pg_proc p JOIN ns ON ns.oid = p.pronamespace
  WHERE p.proowner NOT IN (SELECT trusted.role FROM trusted)
  UNION ALL
  SELECT ns.name, o.oprowner, 'OPERATOR',
         pg_catalog.format('%I.%s (%s, %s)', ns.name, o.oprname,
           CASE WHEN o.oprleft = 0::oid THEN 'NONE' ELSE pg_catalog.format_type(o.oprleft, NULL) END,
           CASE WHEN o.oprright = 0::oid THEN 'NONE' ELSE pg_catalog.format_type(o.oprright, NULL) END)
  FROM pg_catalog.pg_operator o JOIN ns ON ns.oid = o.oprnamespace
  WHERE o.oprowner NOT IN (SELECT trusted.role FROM trusted)
  UNION ALL
  SELECT ns.name, t.typowner, 'TYPE', pg_catalog.format('%I.%I', ns.name, t.typname)
  FROM pg_catalog.pg_type t JOIN ns ON ns.oid = t.typnamespace
  WHERE t.typowner NOT IN (SELECT trusted.role FROM trusted)
    AND (t.typrelid = 0::oid
         OR EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid AND c.relkind = 'c'))
    AND NOT (t.typcategory = 'A' AND t.typelem <> 0::oid) AND t.typtype <> 'm'
  UNION ALL
  SELECT ns.name, c.conowner, 'CONVERSION', pg_catalog.format('%I.%I', ns.name, c.conname)
  FROM pg_catalog.pg_conversion c JOIN ns ON ns.oid = c.connamespace
  WHERE c.conowner NOT IN (SELECT trusted.role FROM trusted)
)
SELECT x.problem, x.fix FROM (
  SELECT 1 AS rank, c.name AS schema_name,
         CASE WHEN c.owns
           THEN pg_catalog.format('schema %s belongs to role %s', c.name, pg_catalog.pg_get_userbyid(c.grantee))
           WHEN c.grantee = 0::oid
           THEN pg_catalog.format('every role (PUBLIC) may create objects in schema %s', c.name)
           ELSE pg_catalog.format('role %s may create objects in schema %s',
                                  pg_catalog.pg_get_userbyid(c.grantee), c.name) END AS problem,
         CASE WHEN c.owns THEN pg_catalog.format('ALTER SCHEMA %I OWNER TO CURRENT_USER', c.name)
           ELSE pg_catalog.format('REVOKE CREATE ON SCHEMA %I FROM %s', c.name,
             CASE WHEN c.grantee = 0::oid THEN 'PUBLIC'
                  ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(c.grantee)::text) END) END AS fix
  FROM creators c
  UNION ALL
  SELECT 2, p.name,
         pg_catalog.format('schema %s holds %s %s of role %s', p.name, pg_catalog.lower(p.kind),
                           p.object, pg_catalog.pg_get_userbyid(p.owner)),
         pg_catalog.format('DROP %s %s', p.kind, p.object)
  FROM planted p
) AS x ORDER BY x.rank, x.schema_name, x.problem`;

/** One thing that makes a searched schema unsafe, and the statement that fixes it. */
export interface Untrusted {
  readonly problem: string;
  readonly fix: string;
}

/**
 * The problems `UNTRUSTED_QUERY` finds in a deployment's two schemas (those
 * that exist), trusting the roles named in `trusted` (the owner role, and
 * the migrating role while it migrates) besides superusers and the data
 * schema's owner.
 */
export async function findUntrusted(
  sql: Sql,
  schemas: Schemas,
  trusted: readonly string[],
): Promise<Untrusted[]> {
  const rows = await sql.unsafe<Untrusted[]>(UNTRUSTED_QUERY, [
    schemas.schema,
    schemas.stateSchema,
    pgArray(trusted),
  ]);
  return rows.map((r) => ({ problem: r.problem, fix: r.fix }));
}

/** Why a problem in `UNTRUSTED_QUERY`'s list stops login-etl, for every refusal. */
const REASON =
  "login-etl's migrations and SECURITY DEFINER functions look up what they call there, so planted code would run with their rights";

/**
 * The first problem with why it matters and its fix, and how many more
 * there are, as one clause: `every role (PUBLIC) may create objects in
 * schema public; login-etl's migrations … run REVOKE CREATE ON SCHEMA public
 * FROM PUBLIC`.
 */
export function describeUntrusted(found: readonly Untrusted[]): string {
  const [first] = found;
  if (first === undefined) return "";
  const more = found.length - 1;
  return `${first.problem}${more > 0 ? ` (and ${more} more)` : ""}; ${REASON}; run ${first.fix}`;
}

/**
 * The same refusal for psql (sql/schema.sql, sql/roles.sql, `migrate
 * --dry-run`): a DO block that raises on the first problem, with its fix,
 * before anything after it runs. `trusted` is an SQL expression of type
 * text[]; `refused` starts the message (`Refused to apply sql/schema.sql`).
 */
export function untrustedGuardSql(trusted: string, refused: string): string {
  return `DO $guard$
DECLARE
  found record;
BEGIN
  FOR found IN EXECUTE $query$${UNTRUSTED_QUERY}$query$
    USING pg_catalog.current_schema()::text,
          COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl'),
          ${trusted}
  LOOP
    RAISE EXCEPTION '%: %; %; run %', ${literal(refused)}, found.problem, ${
    literal(REASON)
  }, found.fix
      USING ERRCODE = '55000';
  END LOOP;
END $guard$`;
}
