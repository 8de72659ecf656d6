/**
 * The command line: argv → a typed `Invocation`, and the help text of each
 * command, both written from the settings table in `config/options.ts`. Never exits.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { COMMAND_SUMMARIES, type CommandName, COMMANDS } from "./config/commands.ts";
import type { FlagValues } from "./config/configs.ts";
import { OPTIONS, optionsFor, type OptionSpec, rangeOf } from "./config/options.ts";
import { listOf, nearestName, sameName } from "./config/suggest.ts";
import { UsageError } from "./errors.ts";

/**
 * What the user asked for. `missing` is no command at all: the overview
 * help, but as a usage error (stderr, exit 2), since a script or container
 * that runs `login-etl` alone has lost its arguments.
 */
export type Invocation =
  | { readonly kind: "missing" }
  | { readonly kind: "help"; readonly command: CommandName | null }
  | { readonly kind: "version"; readonly verbose: boolean }
  | { readonly kind: "command"; readonly command: CommandName; readonly flags: FlagValues };

function isCommand(word: string): word is CommandName {
  return (COMMANDS as readonly string[]).includes(word);
}

/**
 * Parses argv (without the program name).
 *
 * @throws {UsageError} for an unknown command or flag, or a flag without its value
 */
export function parseInvocation(argv: readonly string[]): Invocation {
  const [first, ...rest] = argv;
  if (first === undefined) return { kind: "missing" };
  if (first === "--help" || first === "-h" || first === "help") {
    const topic = rest[0];
    return { kind: "help", command: topic !== undefined && isCommand(topic) ? topic : null };
  }
  if (first === "--version" || first === "-V") {
    // --verbose adds the runtime's versions and the build's commit (version.ts).
    return { kind: "version", verbose: rest.includes("--verbose") };
  }
  if (!isCommand(first)) {
    if (mayHoldSecret(first)) {
      throw new UsageError(
        `Unknown command (argument 1, not shown: it may hold a secret): put the command first, settings after it; commands: ${
          COMMANDS.join(", ")
        }; see login-etl --help`,
      );
    }
    const nearest = first.startsWith("-") ? null : nearestName(first, COMMANDS);
    // Before a command only --help and --version mean anything.
    const nearFlag = first.startsWith("--")
      ? nearestName(first.slice(2), ["help", "version"])
      : null;
    const hint = nearFlag !== null
      ? `did you mean --${nearFlag}? See login-etl --help`
      : first.startsWith("-")
      ? "put the command first; see login-etl --help"
      : nearest !== null
      ? `did you mean ${nearest}? See login-etl --help`
      : `commands: ${COMMANDS.join(", ")}; see login-etl --help`;
    throw new UsageError(`Unknown command "${first}": ${hint}`);
  }
  const specs = optionsFor(first);
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {
    help: { type: "boolean", short: "h" },
  };
  for (const spec of specs) {
    options[spec.flag] = { type: spec.kind === "boolean" ? "boolean" : "string" };
  }

  let parsed: {
    values: Record<string, string | boolean | undefined>;
    positionals: string[];
    tokens: readonly Token[];
  };
  try {
    parsed = parseArgs({
      args: [...rest],
      options,
      strict: true,
      allowPositionals: true,
      tokens: true,
    });
  } catch (error) {
    throw new UsageError(`${usageMessage(error, first)} login-etl ${first} --help`, {
      cause: error,
    });
  }
  if (parsed.values["help"] === true) return { kind: "help", command: first };
  if (parsed.positionals.length > 0) throw unexpectedArgument(first, parsed.tokens);
  const flags: Record<string, string | boolean> = {};
  for (const [name, value] of Object.entries(parsed.values)) {
    if (name !== "help" && value !== undefined) flags[name] = value;
  }
  return { kind: "command", command: first, flags };
}

/** A word of the command line as node:util's `parseArgs` reports it with `tokens: true`. */
type Token =
  | { kind: "option"; index: number; rawName: string; value?: string | undefined }
  | { kind: "positional"; index: number; value: string }
  | { kind: "option-terminator"; index: number };

/**
 * True for a word that may be (part of) a secret: one with `=`, `:` or `@`
 * (a keyword/value pair, URL user info) or a long one (a key, a password).
 * Such a word is named by its position, never echoed.
 */
function mayHoldSecret(word: string): boolean {
  return /[=:@]/.test(word) || word.length > 12;
}

/**
 * The error for a word that is neither a flag nor a flag's value: mostly a
 * value with spaces that the shell split (`--database-url host=h password=pw`
 * unquoted). The fix names the flag whose value the word follows.
 */
function unexpectedArgument(command: CommandName, tokens: readonly Token[]): UsageError {
  const at = tokens.findIndex((t) => t.kind === "positional");
  const word = tokens[at] as Token & { kind: "positional" };
  const before = tokens[at - 1];
  // argv position, counting the command as 1 (token indexes start after it).
  const secret = mayHoldSecret(word.value);
  const what = secret
    ? `argument ${word.index + 2} for ${command} (not shown: it may hold a secret)`
    : `argument "${word.value}" for ${command}`;
  const fix = before?.kind === "option" && before.value !== undefined
    ? `; quote the value of ${before.rawName} if this word belongs to it`
    : secret
    ? "; quote a value that has spaces"
    : "";
  return new UsageError(
    `Unexpected ${what}: it takes only flags${fix}; see login-etl ${command} --help`,
  );
}

/**
 * The `--log-format` of a command line, read leniently (unknown flags and
 * missing values are skipped), for reporting a failure of `parseInvocation`
 * or of resolution in the format the user asked for.
 */
export function loggingFlags(argv: readonly string[]): FlagValues {
  const { values } = parseArgs({
    args: [...argv],
    options: { "log-format": { type: "string" } },
    strict: false,
    allowPositionals: true,
  });
  const format = values["log-format"];
  return typeof format === "string" ? { "log-format": format } : {};
}

/**
 * Turns node:util's parse errors into our one-line style, up to the words
 * before the command's help (`; see` or `? See`).
 */
function usageMessage(error: unknown, command: CommandName): string {
  const code = (error as { code?: string }).code;
  const text = error instanceof Error ? error.message : String(error);
  const flag = /'(-[^' ]+)/.exec(text)?.[1] ?? "";
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
    return `Unknown flag ${flag} for ${command}${unknownFlagHint(flag, command)}`;
  }
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
    // node:util says "argument missing" or "argument is ambiguous" (the next
    // word is a flag) when a value is missing, "does not take an argument" otherwise.
    return text.includes("does not take an argument")
      ? `Flag ${flag.split(",")[0]} takes no value; see`
      : `Flag ${flag.split(",")[0]} needs a value; see`;
  }
  return `Cannot parse the command line: ${text.split("\n")[0]}; see`;
}

/**
 * What an unknown long flag probably was: the command's own flag in another
 * spelling or with a typo, else a flag only other commands take. Short flags
 * (`-x`) are too short to guess from.
 */
function unknownFlagHint(flag: string, command: CommandName): string {
  if (!flag.startsWith("--")) return "; see";
  const own = ["help", ...optionsFor(command).map((s) => s.flag)];
  const respelt = sameName(flag, own);
  if (respelt !== null) return `: did you mean --${respelt}? See`;
  const elsewhere = sameName(flag, OPTIONS.map((s) => s.flag));
  if (elsewhere !== null) {
    const takers = OPTIONS.find((s) => s.flag === elsewhere)?.commands ?? [];
    return `: only ${listOf(takers)} take --${elsewhere}; see`;
  }
  const nearest = nearestName(flag, own);
  return nearest === null ? "; see" : `: did you mean --${nearest}? See`;
}

function flagColumn(spec: OptionSpec): string {
  return spec.kind === "boolean" ? `--${spec.flag}` : `--${spec.flag} ${spec.value ?? "VALUE"}`;
}

function defaultText(spec: OptionSpec): string {
  const parts: string[] = [];
  if (spec.env !== undefined) parts.push(`env ${spec.env}`);
  if (spec.default !== undefined) parts.push(`default ${spec.default}`);
  if (spec.min !== undefined && spec.max !== undefined) parts.push(rangeOf(spec, "-"));
  // Spaced, so a long list wraps like words.
  if (spec.choices !== undefined) parts.push(spec.choices.join(" | "));
  return parts.length > 0 ? ` [${parts.join("; ")}]` : "";
}

/** Widest help line, in columns: readable in an 100-column terminal and in a code review. */
export const HELP_WIDTH = 100;

/** Words of `text` in lines of at most `width` columns (a longer word gets a line of its own). */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/)) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === "" ? word : `${line} ${word}`;
    }
  }
  if (line !== "") lines.push(line);
  return lines;
}

/** One flag's help: the flag, then its text wrapped to `HELP_WIDTH`, continuations indented. */
function flagLines(flag: string, text: string, width: number): string[] {
  const indent = 2 + width;
  const [first = "", ...rest] = wrap(text, HELP_WIDTH - indent);
  return [`  ${flag.padEnd(width)}${first}`, ...rest.map((l) => `${" ".repeat(indent)}${l}`)];
}

/** Help for one command, or the overview when `command` is null. */
export function helpText(command: CommandName | null, version: string): string {
  if (command === null) {
    const lines = [
      `login-etl ${version}: SQS login events → validated, PII-masked rows in Postgres`,
      "",
      "Usage: login-etl <command> [flags]",
      "",
      "Commands:",
      ...COMMANDS.map((c) => `  ${c.padEnd(12)}${COMMAND_SUMMARIES[c]}`),
      "",
      "Run login-etl <command> --help for its flags. --version prints the version.",
      "Secrets come from the environment: PII_HMAC_KEY (or --hmac-key-file), DATABASE_URL",
      "(or the PG* variables).",
    ];
    return lines.join("\n");
  }
  const specs = optionsFor(command);
  const width = Math.max(...specs.map((s) => flagColumn(s).length), 10) + 2;
  const lines = [
    `login-etl ${command}: ${COMMAND_SUMMARIES[command]}`,
    "",
    `Usage: login-etl ${command} [flags]`,
    "",
    "Flags:",
    ...specs.flatMap((s) => flagLines(flagColumn(s), `${s.help}${defaultText(s)}`, width)),
    ...flagLines("--help", "Show this help", width),
  ];
  if (command === "drain" || command === "run") {
    lines.push(
      "",
      "The HMAC secret comes from PII_HMAC_KEY or --hmac-key-file (32 bytes or more).",
    );
  }
  return lines.join("\n");
}
