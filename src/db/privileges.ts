/**
 * What the current role may do, asked of Postgres: which of the privileges a
 * command needs (`grants.ts`) it lacks, and whether it may migrate the
 * schemas. Read-only probes for `check`.
 *
 * @module
 */

import type { Home, Privilege } from "./grants.ts";
import type { Sql } from "./pool.ts";
import { ident, type Schemas } from "./schemas.ts";

/**
 * The privileges of `wanted` the current role lacks, as `INSERT on
 * public.user_logins`. A schema the role has no USAGE on is one missing
 * privilege: nothing in it can be reached, and looking its objects up by
 * name would fail.
 */
export async function missingPrivileges(
  sql: Sql,
  schemas: Schemas,
  wanted: readonly Privilege[],
): Promise<string[]> {
  const missing: string[] = [];
  const usable = new Map<Home, boolean>();
  for (const home of new Set(wanted.map((p) => p.in))) {
    const name = home === "data" ? schemas.schema : schemas.stateSchema;
    const [row] = await sql<{ has: boolean }[]>`
      SELECT coalesce(has_schema_privilege(to_regnamespace(${
      ident(name)
    }), 'USAGE'), false) AS has`;
    usable.set(home, row?.has === true);
    if (row?.has !== true) missing.push(`USAGE on schema ${name}`);
  }
  for (const p of wanted) {
    if (usable.get(p.in) !== true) continue;
    const schema = p.in === "data" ? schemas.schema : schemas.stateSchema;
    const qualified = `${ident(schema)}.${p.name}`;
    const [row] = p.on === "table"
      ? await sql<{ has: boolean }[]>`
          SELECT has_table_privilege(to_regclass(${qualified}), ${p.privilege}) AS has`
      : p.on === "column"
      ? await sql<{ has: boolean }[]>`
          SELECT has_column_privilege(to_regclass(${qualified}), ${p.column}, ${p.privilege}) AS has`
      : await sql<{ has: boolean }[]>`
          SELECT has_function_privilege(to_regprocedure(${qualified}), 'EXECUTE') AS has`;
    if (row?.has !== true) {
      const shown = `${schema}.${p.name}`;
      missing.push(
        p.on === "table"
          ? `${p.privilege} on ${shown}`
          : p.on === "column"
          ? `${p.privilege} (${p.column}) on ${shown}`
          : `EXECUTE on ${shown}`,
      );
    }
  }
  return missing;
}

/**
 * May the role change the schema: CREATE in both schemas (or on the
 * database, for one not made yet: migrate creates it), and membership in
 * the owner of each object it would change?
 */
export async function mayMigrate(sql: Sql, schemas: Schemas): Promise<string | null> {
  const [row] = await sql<
    { absent: boolean; creatable: boolean; lacking: string[]; foreign: string[] }[]
  >`
    WITH wanted AS (
      SELECT s.name, n.oid FROM unnest(${[schemas.schema, schemas.stateSchema]}::text[]) AS s(name)
      LEFT JOIN pg_namespace n ON n.nspname = s.name
    )
    SELECT EXISTS (SELECT FROM wanted WHERE oid IS NULL) AS absent,
           has_database_privilege(current_database(), 'CREATE') AS creatable,
           coalesce((SELECT array_agg(name ORDER BY name) FROM wanted
                     WHERE oid IS NOT NULL AND NOT has_schema_privilege(oid, 'CREATE')), '{}') AS lacking,
           coalesce((SELECT array_agg(w.name || '.' || c.relname ORDER BY w.name, c.relname)
                     FROM pg_class c JOIN wanted w ON w.oid = c.relnamespace
                     WHERE c.relkind IN ('r', 'p', 'v')
                       AND (c.relname = 'user_logins' OR c.relname LIKE 'login\\_etl\\_%')
                       AND NOT pg_has_role(c.relowner, 'MEMBER')), '{}') AS foreign`;
  if (row?.absent === true && !row.creatable) return "no CREATE on the database";
  if ((row?.lacking ?? []).length > 0) return `no CREATE on schema ${row?.lacking.join(", ")}`;
  if ((row?.foreign ?? []).length > 0) return `not the owner of ${row?.foreign.join(", ")}`;
  return null;
}
