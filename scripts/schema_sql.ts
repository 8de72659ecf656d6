// Writes sql/schema.sql from src/db/migrations.ts, so the DBA's psql path runs
// exactly the statements `login-etl migrate` runs, and records the same
// versions. `make docs` writes it; a test checks the file is current and that
// applying it gives the schema `migrate` gives.

import {
  MIGRATIONS,
  MIGRATIONS_TABLE_DDL,
  MIGRATIONS_TABLE_GRANT,
  STATE_SCHEMA_SETTING,
  STATE_SCHEMA_VERSION,
} from "../src/db/migrations.ts";

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

/**
 * The statement recording a version. From version 6 on the migrations table
 * is in the state schema, whose name only the session knows.
 */
function record(version: number, name: string): string {
  if (version < STATE_SCHEMA_VERSION) {
    return `INSERT INTO login_etl_migrations (version, name, source)\n    VALUES (${version}, ${
      quote(name)
    }, 'schema.sql');\n`;
  }
  return `DO $$
BEGIN
  EXECUTE format('INSERT INTO %I.login_etl_migrations (version, name, source) VALUES (%s, %L, %L)',
                 ${STATE_SCHEMA_SETTING}, ${version}, ${quote(name)}, 'schema.sql');
END $$;\n`;
}

/** A statement with its continuation lines indented by four spaces, whatever the source's indent. */
function tidy(statement: string): string {
  const [first, ...rest] = statement.split("\n");
  // DO blocks and function bodies are kept as written.
  if (/^(DO |CREATE OR REPLACE FUNCTION)/.test(statement)) return statement;
  const indent = Math.min(
    ...rest.filter((l) => l.trim() !== "").map((l) => /^ */.exec(l)![0].length),
  );
  return [first, ...rest.map((l) => (l.trim() === "" ? "" : `    ${l.slice(indent)}`))].join("\n")
    .replace(/\n {4}\)$/, "\n)");
}

const quote = (text: string) => `'${text.replaceAll("'", "''")}'`;

/** The text of sql/schema.sql. */
export function schemaSql(): string {
  const parts = [HEADER, `${tidy(MIGRATIONS_TABLE_DDL)};\n${MIGRATIONS_TABLE_GRANT};\n`];
  for (const m of MIGRATIONS) {
    const statements = m.statements.map((s) => `${tidy(s)};\n`);
    const body = m.transaction === false
      ? [...statements, record(m.version, m.name)]
      : ["BEGIN;\n", ...statements, record(m.version, m.name), "COMMIT;\n"];
    parts.push(`-- Version ${m.version}: ${m.name}\n${body.join("\n")}`);
  }
  return parts.join("\n");
}

if (import.meta.main) {
  Deno.writeTextFileSync(new URL("../sql/schema.sql", import.meta.url), schemaSql());
}
