// Writes the generated tables of docs/configuration.md: the flag table from
// the settings table in src/config/options.ts, so --help and the
// documentation cannot drift apart, and what each command needs from
// src/config/commands.ts, the table resolution and `check` read. `make docs`
// writes them between their markers; a unit test (tests/repo/docs_test.ts)
// checks they match.

import { COMMANDS, needsTable } from "../src/config/commands.ts";
import { OPTIONS, rangeOf } from "../src/config/options.ts";

/** The markdown table of every flag. */
export function flagsTable(): string {
  const rows = [
    "| Flag | Env var | Default | Range | Commands | Meaning |",
    "| --- | --- | --- | --- | --- | --- |",
  ];
  for (const o of OPTIONS) {
    const flag = o.kind === "boolean" ? `\`--${o.flag}\`` : `\`--${o.flag} ${o.value ?? "VALUE"}\``;
    const range = o.min !== undefined && o.max !== undefined
      ? rangeOf(o, "–")
      : o.choices !== undefined
      ? o.choices.join(", ")
      : "";
    const commands = o.commands.length === COMMANDS.length ? "all" : o.commands.join(", ");
    rows.push(
      `| ${flag} | ${o.env === undefined ? "" : `\`${o.env}\``} | ${
        o.default === undefined ? "" : `\`${o.default}\``
      } | ${range} | ${commands} | ${o.help.replaceAll("|", "\\|")} |`,
    );
  }
  return rows.join("\n");
}

/** The document that holds the tables, relative to the repository root. */
export const FLAGS_DOC = "docs/configuration.md";

/** `text` with `table` replaced between the `<!-- name:start -->` and `<!-- name:end -->` markers. */
function withTable(text: string, name: string, table: string): string {
  const start = text.indexOf(`<!-- ${name}:start -->`);
  const end = text.indexOf(`<!-- ${name}:end -->`);
  if (start < 0 || end < start) {
    throw new Error(`${FLAGS_DOC} lacks the <!-- ${name}:start --> … <!-- ${name}:end --> markers`);
  }
  const head = text.slice(0, start + `<!-- ${name}:start -->`.length);
  return `${head}\n${table}\n${text.slice(end)}`;
}

/** `text` with the flag table and the table of what each command needs rewritten. */
export function withGeneratedTables(text: string): string {
  return withTable(withTable(text, "flags", flagsTable()), "needs", needsTable());
}

if (import.meta.main) {
  const path = new URL(`../${FLAGS_DOC}`, import.meta.url);
  Deno.writeTextFileSync(path, withGeneratedTables(Deno.readTextFileSync(path)));
}
