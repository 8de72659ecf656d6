/**
 * The DBA's path, run as a DBA would: psql applies SQL files statement by
 * statement (so `CREATE INDEX CONCURRENTLY` runs outside a transaction, as
 * it must), stopping at the first error, with `search_path` set to a schema.
 */

import { DATABASE_URL, stateSchemaOf } from "./services.ts";

/**
 * Applies `files` with psql in `schema`, with `login_etl.state_schema` naming
 * its state schema (`stateSchemaOf`) as the files expect; rejects with
 * psql's stderr on failure.
 */
export async function psqlFiles(
  schema: string,
  files: readonly (string | URL)[],
  options: {
    readonly url?: string;
    readonly rewrite?: (text: string) => string;
    /** The state schema the files are told of; `stateSchemaOf(schema)` by default. */
    readonly stateSchema?: string;
  } = {},
): Promise<void> {
  const state = options.stateSchema ?? stateSchemaOf(schema);
  const inputs = await Promise.all(files.map((f) => Deno.readTextFile(f)));
  const text = inputs.map((t) => options.rewrite?.(t) ?? t).join("\n");
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
