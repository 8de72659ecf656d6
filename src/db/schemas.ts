/**
 * Where a deployment's objects live: `user_logins`, the analysts' views and
 * `app_version_text()` in its data schema (`--schema`), login-etl's own
 * tables and functions in its state schema (`--state-schema`). Every
 * statement names its objects with their schema, so no session's
 * `search_path` decides which table a write lands in.
 *
 * @module
 */

/** The two schemas of one deployment. */
export interface Schemas {
  /** The analysts' schema: user_logins, the duplicate views, app_version_text(). */
  readonly schema: string;
  /** login-etl's own: ledger, rejects, keys, vault, audit, migrations and their functions. */
  readonly stateSchema: string;
}

/**
 * An identifier quoted for SQL text, as `quote_ident` would always quote it.
 * postgres.js quotes identifiers only inside its tagged templates; migration
 * text is plain SQL that psql also runs, so it is quoted here.
 */
export function ident(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** A string literal for SQL text (standard_conforming_strings, on since Postgres 9.1). */
export function literal(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}
