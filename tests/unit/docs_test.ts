// Documents that are written from code stay equal to it: the README's flag
// table and sql/schema.sql.

import assert from "node:assert/strict";
import { SCHEMA_STATEMENTS } from "../../src/db.ts";
import { withFlagsTable } from "../../scripts/flags_table.ts";

const root = new URL("../../", import.meta.url);

Deno.test("README's flag table equals the settings table (run `make docs` after changing a flag)", () => {
  // deno fmt pads table cells; compare with runs of spaces and dashes collapsed.
  const normalise = (text: string) => text.replace(/-{3,}/g, "---").replace(/[ \n]+/g, " ");
  const readme = Deno.readTextFileSync(new URL("README.md", root));
  assert.equal(normalise(readme), normalise(withFlagsTable(readme)));
});

Deno.test("sql/schema.sql holds exactly the statements login-etl runs", () => {
  const normalise = (s: string) =>
    s.replace(/\s+/g, " ").replace(/\( /g, "(").replace(/ \)/g, ")").trim();
  const file = Deno.readTextFileSync(new URL("sql/schema.sql", root))
    .split("\n").filter((line) => !line.trimStart().startsWith("--")).join("\n");
  const statements = file.split(";").map(normalise).filter((s) => s !== "");
  assert.deepEqual(statements, SCHEMA_STATEMENTS.map(normalise));
});
