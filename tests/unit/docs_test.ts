// Documents that are written from code stay equal to it: the README's flag
// table and sql/schema.sql.

import assert from "node:assert/strict";
import { SCHEMA_STATEMENTS } from "../../src/db/schema.ts";
import { schemaSql } from "../../scripts/schema_sql.ts";
import { withFlagsTable } from "../../scripts/flags_table.ts";

const root = new URL("../../", import.meta.url);

Deno.test("README's flag table equals the settings table (run `make docs` after changing a flag)", () => {
  // deno fmt pads table cells; compare with runs of spaces and dashes collapsed.
  const normalise = (text: string) => text.replace(/-{3,}/g, "---").replace(/[ \n]+/g, " ");
  const readme = Deno.readTextFileSync(new URL("README.md", root));
  assert.equal(normalise(readme), normalise(withFlagsTable(readme)));
});

Deno.test("sql/schema.sql holds exactly the statements login-etl runs (run `make docs` after a change)", () => {
  const file = Deno.readTextFileSync(new URL("sql/schema.sql", root));
  assert.equal(file, schemaSql());
  assert.equal(file.match(/^(CREATE (TABLE|INDEX)|DO) /gm)?.length, SCHEMA_STATEMENTS.length);
});
