/**
 * The migrations as SQL text for psql, each version in its own transaction
 * (unless it says otherwise) with the statement that records it, as
 * `schema.ts` applies them: `sql/schema.sql` is written from here, and
 * `migrate --dry-run` prints from here, so what a DBA applies by hand is
 * what `migrate` would have done.
 *
 * @module
 */

import {
  type Migration,
  MIGRATIONS,
  MIGRATIONS_TABLE_DDL,
  MIGRATIONS_TABLE_GRANT,
  QUALIFIED_STATE_SCHEMA_SETTING,
  STATE_SCHEMA_VERSION,
} from "./migrations.ts";
import { OWNER_ROLE_SETTING, untrustedGuardSql } from "./search_path.ts";

/** Who recorded a version, as `login_etl_migrations.source` allows. */
export type RecordSource = "migrate" | "schema.sql" | "found";

/** A text as an SQL string literal. */
function quote(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

/**
 * The statement recording a version. From version 6 on the migrations table
 * is in the state schema, whose name only the session knows
 * (`login_etl.state_schema`); before, in the data schema of `search_path`.
 */
export function recordSql(version: number, name: string, source: RecordSource): string {
  if (version < STATE_SCHEMA_VERSION) {
    return `INSERT INTO login_etl_migrations (version, name, source)\n    VALUES (${version}, ${
      quote(name)
    }, '${source}')${source === "found" ? " ON CONFLICT (version) DO NOTHING" : ""};\n`;
  }
  return `DO $$
BEGIN
  EXECUTE pg_catalog.format('INSERT INTO %I.login_etl_migrations (version, name, source) VALUES (%s, %L, %L)',
                            ${QUALIFIED_STATE_SCHEMA_SETTING}, ${version}, ${
    quote(name)
  }, '${source}');
END $$;\n`;
}

/**
 * The refusal psql meets first (sql/schema.sql, `migrate --dry-run`), as
 * `migrate` refuses before it applies anything: a data or state schema
 * where a role other than superusers, the data schema's owner, the owner
 * role (`login_etl.owner_role`, else login_etl_owner) and the role running
 * it may create, that such a role owns, or that holds anything of such a
 * role (search_path.ts). `refused` starts its message.
 */
export function guardSql(refused: string): string {
  return `${untrustedGuardSql(`ARRAY[CURRENT_USER::text, ${OWNER_ROLE_SETTING}]`, refused)};\n`;
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

/** The migrations table, for a database that has none yet. */
export function migrationsTableSql(): string {
  return `${tidy(MIGRATIONS_TABLE_DDL)};\n${MIGRATIONS_TABLE_GRANT};\n`;
}

/**
 * The versions a database had before it had a migrations table, recorded
 * as found (what `migrate` does first for such a database).
 */
export function foundSql(version: number): string {
  return MIGRATIONS.filter((m) => m.version <= version)
    .map((m) => recordSql(m.version, m.name, "found")).join("");
}

/** One migration: a comment naming it, then its statements and its record, in a transaction unless it may not be. */
export function migrationSql(migration: Migration, source: RecordSource): string {
  const statements = migration.statements.map((s) => `${tidy(s)};\n`);
  const record = recordSql(migration.version, migration.name, source);
  const body = migration.transaction === false
    ? [...statements, record]
    : ["BEGIN;\n", ...statements, record, "COMMIT;\n"];
  return `-- Version ${migration.version}: ${migration.name}${
    migration.transaction === false ? " (outside a transaction)" : ""
  }\n${body.join("\n")}`;
}
