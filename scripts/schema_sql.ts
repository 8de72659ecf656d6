// Writes sql/schema.sql from src/db/schema.ts, so the DBA's psql path runs
// exactly the statements login-etl runs. `make docs` writes it; a unit test
// checks the file is current.

import { SCHEMA_STATEMENTS } from "../src/db/schema.ts";

const HEADER = `-- login-etl's tables and functions, for a DBA who creates them ahead of time
-- (login-etl creates whichever are missing on start when its role may). Run
-- with search_path set to login-etl's schema, then sql/roles.sql:
--   psql "$ADMIN_URL" -v ON_ERROR_STOP=1 -c 'SET search_path = public' -f sql/schema.sql -f sql/roles.sql
-- Written from src/db/schema.ts by \`make docs\`; do not edit by hand.
`;

/** A statement with its continuation lines indented by four spaces, whatever the source's indent. */
function tidy(statement: string): string {
  const [first, ...rest] = statement.split("\n");
  if (statement.startsWith("DO $do$")) return statement; // a function body: kept as written
  const indent = Math.min(
    ...rest.filter((l) => l.trim() !== "").map((l) => /^ */.exec(l)![0].length),
  );
  return [first, ...rest.map((l) => (l.trim() === "" ? "" : `    ${l.slice(indent)}`))].join("\n")
    .replace(/\n {4}\)$/, "\n)");
}

/** The text of sql/schema.sql. */
export function schemaSql(): string {
  return `${HEADER}\n${SCHEMA_STATEMENTS.map((s) => `${tidy(s)};\n`).join("\n")}`;
}

if (import.meta.main) {
  Deno.writeTextFileSync(new URL("../sql/schema.sql", import.meta.url), schemaSql());
}
