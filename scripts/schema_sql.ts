// Writes sql/schema.sql from src/db/migrations.ts, so the DBA's psql path runs
// exactly the statements `login-etl migrate` runs, and records the same
// versions. `make docs` writes it; a test checks the file is current and that
// applying it gives the schema `migrate` gives.

import { MIGRATIONS } from "../src/db/migrations.ts";
import { migrationSql, migrationsTableSql } from "../src/db/migration_sql.ts";

const HEADER = `-- login-etl's schema for a new database, for a DBA who creates it ahead of time
-- (login-etl applies what is missing on start when its role may, and
-- \`login-etl migrate\` upgrades an existing database). Run with search_path set
-- to the analysts' data schema (--schema) and login_etl.state_schema to
-- login-etl's own (--state-schema; login_etl when not set), without -1
-- (version 4 builds its indexes CONCURRENTLY, outside a transaction), then
-- sql/roles.sql:
--   psql "$ADMIN_URL" -v ON_ERROR_STOP=1 -c 'SET search_path = public' \\
--     -c 'SET login_etl.state_schema = login_etl' -f sql/schema.sql -f sql/roles.sql
-- Written from src/db/migrations.ts by \`make docs\`; do not edit by hand.
`;

/** The text of sql/schema.sql. */
export function schemaSql(): string {
  return [HEADER, migrationsTableSql(), ...MIGRATIONS.map((m) => migrationSql(m, "schema.sql"))]
    .join("\n");
}

if (import.meta.main) {
  Deno.writeTextFileSync(new URL("../sql/schema.sql", import.meta.url), schemaSql());
}
