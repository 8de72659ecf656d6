// Writes sql/schema.sql from src/db/migrations.ts, so the DBA's psql path runs
// exactly the statements `login-etl migrate` runs, and records the same
// versions; and in sql/roles.sql, the refusal of schemas others may create in
// that runs before its grants (src/db/search_path.ts), and the grants
// themselves (src/db/grants.ts). `make docs` writes both; a
// test checks they are current and that applying schema.sql gives the schema
// `migrate` gives.

import { MIGRATIONS } from "../src/db/migrations.ts";
import { guardSql, migrationSql, migrationsTableSql } from "../src/db/migration_sql.ts";
import { grantsSql } from "../src/db/grants.ts";
import { untrustedGuardSql } from "../src/db/search_path.ts";

const HEADER = `-- login-etl's schema for a new database, for a DBA who creates it ahead of time
-- (login-etl applies what is missing on start when its role may, and
-- \`login-etl migrate\` upgrades an existing database). Run with search_path set
-- to the analysts' data schema (--schema) and login_etl.state_schema to
-- login-etl's own (--state-schema; login_etl when not set), without -1
-- (version 4 builds its indexes CONCURRENTLY, outside a transaction), then
-- sql/roles.sql:
--   psql "$ADMIN_URL" -v ON_ERROR_STOP=1 -c 'SET search_path = public' \\
--     -c 'SET login_etl.state_schema = login_etl' -f sql/schema.sql -f sql/roles.sql
-- It first refuses, with the statement that fixes it, a data or state schema
-- that a role other than superusers, the data schema's owner, the owner role
-- (login_etl.owner_role, else login_etl_owner) and you may create objects in,
-- owns, or holds anything of: the migrations call functions with the data
-- schema in search_path (docs/pii.md, threat model).
-- Written from src/db/migrations.ts by \`make docs\`; do not edit by hand.
`;

/** The text of sql/schema.sql. */
export function schemaSql(): string {
  return [
    HEADER,
    guardSql("Refused to apply sql/schema.sql"),
    migrationsTableSql(),
    ...MIGRATIONS.map((m) => migrationSql(m, "schema.sql")),
  ].join("\n");
}

const GUARD_START = /^-- generated:guard .*$/m;
const GRANTS_START = /^-- generated:grants .*$/m;
const BLOCK_END = "-- generated:end";

/** `text` with the generated block that `start` opens replaced by `body`. */
function withBlock(text: string, start: RegExp, body: string): string {
  const found = start.exec(text);
  const end = found === null ? -1 : text.indexOf(BLOCK_END, found.index);
  if (found === null || end < 0) {
    throw new Error(`sql/roles.sql has no ${start.source.slice(1, -5)} … ${BLOCK_END} block`);
  }
  return `${text.slice(0, found.index + found[0].length)}\n${body}\n${text.slice(end)}`;
}

/**
 * sql/roles.sql (`current`) with its generated blocks written: the refusal
 * of a data or state schema that a role other than superusers, the data
 * schema's owner, the DBA running it and login_etl_owner may create in, owns,
 * or holds anything of (src/db/search_path.ts); and the grants of each group
 * role (src/db/grants.ts, which `check` reads too).
 */
export function rolesSql(current: string): string {
  const guard = untrustedGuardSql(
    "ARRAY[CURRENT_USER::text, 'login_etl_owner']",
    "Refused to apply sql/roles.sql",
  );
  return withBlock(withBlock(current, GUARD_START, `${guard};`), GRANTS_START, grantsSql());
}

if (import.meta.main) {
  Deno.writeTextFileSync(new URL("../sql/schema.sql", import.meta.url), schemaSql());
  const roles = new URL("../sql/roles.sql", import.meta.url);
  Deno.writeTextFileSync(roles, rolesSql(Deno.readTextFileSync(roles)));
}
