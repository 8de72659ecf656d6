// Prints the README's flag table from the settings table in src/config.ts,
// so --help and the README cannot drift apart. `make docs` writes it into
// README.md between the flags markers; a unit test checks they match.

import { COMMANDS, OPTIONS } from "../src/config/options.ts";

/** The markdown table of every flag. */
export function flagsTable(): string {
  const rows = [
    "| Flag | Env var | Default | Range | Commands | Meaning |",
    "| --- | --- | --- | --- | --- | --- |",
  ];
  for (const o of OPTIONS) {
    const flag = o.kind === "boolean" ? `\`--${o.flag}\`` : `\`--${o.flag} ${o.value ?? "VALUE"}\``;
    const range = o.min !== undefined && o.max !== undefined
      ? `${o.min}–${o.max}`
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

/** README text with the flag table between the markers replaced. */
export function withFlagsTable(readme: string): string {
  const start = readme.indexOf(START);
  const end = readme.indexOf(END);
  if (start < 0 || end < start) throw new Error(`README.md lacks the ${START} … ${END} markers`);
  return `${readme.slice(0, start + START.length)}\n${flagsTable()}\n${readme.slice(end)}`;
}

if (import.meta.main) {
  const path = new URL("../README.md", import.meta.url);
  Deno.writeTextFileSync(path, withFlagsTable(Deno.readTextFileSync(path)));
}
