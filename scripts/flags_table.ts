// Writes the flag table of docs/configuration.md from the settings table in
// src/config/options.ts, so --help and the documentation cannot drift apart.
// `make docs` writes it into docs/configuration.md between the flags markers;
// a unit test (tests/repo/docs_test.ts) checks they match.

import { COMMANDS, OPTIONS, rangeOf } from "../src/config/options.ts";

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

const START = "<!-- flags:start -->";
const END = "<!-- flags:end -->";

/** The document that holds the flag table, relative to the repository root. */
export const FLAGS_DOC = "docs/configuration.md";

/** `text` with the flag table between the markers replaced. */
export function withFlagsTable(text: string): string {
  const start = text.indexOf(START);
  const end = text.indexOf(END);
  if (start < 0 || end < start) throw new Error(`${FLAGS_DOC} lacks the ${START} … ${END} markers`);
  return `${text.slice(0, start + START.length)}\n${flagsTable()}\n${text.slice(end)}`;
}

if (import.meta.main) {
  const path = new URL(`../${FLAGS_DOC}`, import.meta.url);
  Deno.writeTextFileSync(path, withFlagsTable(Deno.readTextFileSync(path)));
}
