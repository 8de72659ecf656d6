/**
 * The config file (`--config FILE` or `LOGIN_ETL_CONFIG`): a JSON object of
 * settings by flag name, layered under flags and env. This reads it and
 * checks its keys (`checkConfigFile`); `resolveConfig` resolves them.
 *
 * @module
 */

import { ConfigError, whyUnreadable } from "../errors.ts";
import type { CommandName } from "./commands.ts";
import type { EnvRecord, FileLayer, FlagValues } from "./configs.ts";
import { OPTIONS, type OptionSpec } from "./options.ts";
import { holdsPassword } from "./reader.ts";
import { flagSpelling, listOf, nearestName, sameName } from "./suggest.ts";

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

/**
 * Checks a config file's settings (a JSON object keyed by flag name) for
 * `command`: known settings of that command only, scalar values, no secrets.
 * For `check`, the settings of the command it checks (`options.checked`) are
 * accepted too, so the file a command runs with can be checked as it is;
 * those only `checked` has are left out of the layer.
 *
 * @throws {ConfigError} naming the file and the key, and the key it should
 *   be when it is one spelt another way, a near miss or another command's
 */
export function checkConfigFile(
  command: CommandName,
  parsed: Readonly<Record<string, unknown>>,
  origin: string,
  options: { readonly checked?: CommandName | undefined } = {},
): FileLayer {
  const { checked } = options;
  const values: Record<string, string | boolean> = {};
  const accepted = (spec: OptionSpec) =>
    spec.flag !== "config" &&
    (spec.commands.includes(command) || (checked !== undefined && spec.commands.includes(checked)));
  for (const [key, value] of Object.entries(parsed)) {
    const spec = OPTIONS.find((o) => o.flag === key && accepted(o));
    if (spec === undefined) {
      throw new ConfigError(`Invalid ${origin}: ${unknownKey(key, command, accepted)}`);
    }
    if (typeof value === "string" && holdsPassword(value)) {
      throw new ConfigError(
        `Invalid ${origin}: "${key}" holds a password; keep secrets in ${
          spec.env ?? "the environment"
        } or a secret store`,
      );
    }
    if (!spec.commands.includes(command)) continue;
    if (typeof value === "boolean" || typeof value === "string") values[key] = value;
    else if (typeof value === "number") values[key] = String(value);
    else throw new ConfigError(`Invalid ${origin}: "${key}" must be a string, number or boolean`);
  }
  return { values, origin };
}

/**
 * What a setting's name can look like in any spelling we recognise (`max-rows`,
 * `max_rows`, `maxRows`, `LOGIN_ETL_MAX_ROWS`), with room for a typo; the longest
 * variable name is 31 characters. Any other key is not echoed.
 */
const SETTING_NAME_LIKE = /^[A-Za-z0-9_-]{1,40}$/;

/**
 * Why a config-file key is not taken, and what to write instead: the flag it
 * spells another way (`max_rows`, `maxRows`, or its variable
 * `LOGIN_ETL_MAX_ROWS`), the commands it belongs to, or the nearest setting.
 */
function unknownKey(
  key: string,
  command: CommandName,
  accepted: (spec: OptionSpec) => boolean,
): string {
  if (!SETTING_NAME_LIKE.test(key)) {
    // Not echoed: a connection string or key pasted as a key must not reach a log.
    return `a key that is not a setting name (${key.length} characters) is not a setting of ${command}; keys are flag names without the leading -- (see login-etl ${command} --help), and secrets belong in the environment`;
  }
  const own = OPTIONS.filter(accepted).map((o) => o.flag);
  const byEnv = OPTIONS.find((o) => o.env !== undefined && o.env === key.toUpperCase());
  const respelt = byEnv !== undefined && accepted(byEnv) ? byEnv.flag : sameName(key, own);
  if (respelt !== null) {
    return `"${key}" is spelt "${respelt}" here (keys are flag names without the leading --)`;
  }
  if ((byEnv?.flag ?? flagSpelling(key)) === "config") {
    return `"${key}": a config file cannot name another`;
  }
  const elsewhere = byEnv?.flag ?? sameName(key, OPTIONS.map((o) => o.flag));
  if (elsewhere !== null) {
    const takers = OPTIONS.find((o) => o.flag === elsewhere)?.commands ?? [];
    const spelt = key === elsewhere ? "" : ` ("${elsewhere}")`;
    return `"${key}"${spelt} is a setting of ${
      listOf(takers)
    }, not of ${command}; remove it or run one of those`;
  }
  const nearest = nearestName(key, own);
  return nearest !== null
    ? `"${key}" is not a setting of ${command}; did you mean "${nearest}"?`
    : `"${key}" is not a setting of ${command}; keys are flag names without the leading -- (see login-etl ${command} --help)`;
}
