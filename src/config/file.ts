/**
 * The config file (`--config FILE` or `LOGIN_ETL_CONFIG`): a JSON object of
 * settings by flag name, layered under flags and env. This reads it; the
 * keys are checked by `checkConfigFile` and resolved by `resolveConfig`.
 *
 * @module
 */

import { ConfigError, whyUnreadable } from "../errors.ts";
import { type CommandName, OPTIONS } from "./options.ts";
import { checkConfigFile, type EnvRecord, type FileLayer, type FlagValues } from "./resolve.ts";

/**
 * Reads the config file named by `--config` or `LOGIN_ETL_CONFIG`, if any.
 *
 * @throws {ConfigError} when it is unreadable, not a JSON object, or holds a key `command` does not take
 */
export async function readConfigFile(
  command: CommandName,
  flags: FlagValues,
  env: EnvRecord,
): Promise<FileLayer | undefined> {
  const path = typeof flags["config"] === "string" ? flags["config"] : env["LOGIN_ETL_CONFIG"];
  if (path === undefined || path === "") return undefined;
  const origin = typeof flags["config"] === "string"
    ? `--config "${path}"`
    : `LOGIN_ETL_CONFIG "${path}"`;
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new ConfigError(`Cannot read ${origin}: ${whyUnreadable(error)}`, { cause: error });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    // Not the SyntaxError itself: V8 quotes the text around the fault, and a
    // secret there would reach the log with --verbose. Its position is safe.
    throw new ConfigError(`Cannot use ${origin}: not valid JSON${faultAt(error)}`);
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new ConfigError(`Cannot use ${origin}: must be a JSON object of settings by flag name`);
  }
  const settings = parsed as Record<string, unknown>;
  return checkConfigFile(command, settings, origin, {
    checked: checkedBy(command, flags, env, settings),
  });
}

/** Where V8's JSON.parse error says the fault is, e.g. ` (line 1 column 57)`, or nothing. */
function faultAt(error: unknown): string {
  const where = /\(line \d+ column \d+\)/.exec(error instanceof Error ? error.message : "");
  return where === null ? "" : ` ${where[0]}`;
}

/**
 * The command `check` checks (`--for`, as resolution will read it), so that
 * command's config file passes: `check --for run --config run.json`. An
 * invalid value is left for resolution to report.
 */
function checkedBy(
  command: CommandName,
  flags: FlagValues,
  env: EnvRecord,
  settings: Readonly<Record<string, unknown>>,
): CommandName | undefined {
  if (command !== "check") return undefined;
  const spec = OPTIONS.find((o) => o.flag === "for");
  const fromEnv = env["LOGIN_ETL_CHECK_FOR"];
  const value = flags["for"] ?? (fromEnv === "" ? undefined : fromEnv) ?? settings["for"] ??
    spec?.default;
  return typeof value === "string" && (spec?.choices ?? []).includes(value)
    ? value as CommandName
    : undefined;
}
