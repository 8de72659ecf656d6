/**
 * SQL files applied as the suite needs them.
 *
 * - `psqlFiles`: the DBA's path, run as a DBA would. psql applies the files
 *   statement by statement (so `CREATE INDEX CONCURRENTLY` runs outside a
 *   transaction, as it must), stopping at the first error, with
 *   `search_path` set to a schema. psql is the one thing the suite needs
 *   beyond make and npm (no npm build of PostgreSQL carries it): where it is
 *   missing, tools.ts's `PSQL` says why, and the cases whose subject is that
 *   path are skipped with one line (`eachMajorWithPsql.test`).
 * - `rolesFiles`: a roles file (sql/roles.sql, an old release's) applied by a
 *   test that needs the roles, not psql: one simple-protocol query through
 *   postgres.js, so all of it or none. Both are the same statements and give
 *   the same catalog when they succeed; roles files hold nothing that may not
 *   run in a transaction.
 */

import postgres from "postgres";
import { eachMajor } from "./majors.ts";
import { PSQL } from "./tools.ts";
import { DATABASE_URL, stateSchemaOf } from "./services.ts";

/** Where the files go, and what to change in their text first. */
export interface FileOptions {
  readonly url?: string;
  readonly rewrite?: (text: string) => string;
  /** The state schema the files are told of; `stateSchemaOf(schema)` by default. */
  readonly stateSchema?: string;
}

/** `eachMajor` for the cases whose subject is the psql path: skipped, said once, without psql. */
export const eachMajorWithPsql = eachMajor.needing(PSQL);

async function textOf(
  files: readonly (string | URL)[],
  rewrite: FileOptions["rewrite"],
): Promise<string> {
  const inputs = await Promise.all(files.map((f) => Deno.readTextFile(f)));
  return inputs.map((t) => rewrite?.(t) ?? t).join("\n");
}

/**
 * Applies `files` with psql in `schema`, with `login_etl.state_schema` naming
 * its state schema as the files expect; rejects with psql's stderr on failure.
 */
export async function psqlFiles(
  schema: string,
  files: readonly (string | URL)[],
  options: FileOptions = {},
): Promise<void> {
  if (PSQL.missing !== null) throw new Error(`A psql case ran without psql: ${PSQL.missing}`);
  const state = options.stateSchema ?? stateSchemaOf(schema);
  const text = await textOf(files, options.rewrite);
  const child = new Deno.Command("psql", {
    args: ["--no-psqlrc", "--quiet", "-v", "ON_ERROR_STOP=1", options.url ?? DATABASE_URL],
    env: {
      PGOPTIONS: `-c search_path=${schema} -c login_etl.state_schema=${state}`,
      PGCONNECT_TIMEOUT: "10",
    },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // psql stops reading at the first error (ON_ERROR_STOP): a file longer
  // than the pipe's buffer then breaks the pipe, and psql's exit code and
  // stderr below say why.
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text)).then(() => writer.close()).catch(() => {});
  const { code, stderr } = await child.output();
  if (code !== 0) throw new Error(`psql exited ${code}: ${new TextDecoder().decode(stderr)}`);
}

/**
 * Applies roles files in `schema` as one simple-protocol query (all or
 * nothing), with the same search_path and state schema psqlFiles gives.
 */
export async function rolesFiles(
  schema: string,
  files: readonly (string | URL)[],
  options: FileOptions = {},
): Promise<void> {
  const text = await textOf(files, options.rewrite);
  const sql = postgres(options.url ?? DATABASE_URL, {
    max: 1,
    onnotice: () => {},
    connection: {
      search_path: schema,
      "login_etl.state_schema": options.stateSchema ?? stateSchemaOf(schema),
    },
  });
  try {
    await sql.unsafe(text).simple();
  } finally {
    await sql.end();
  }
}
