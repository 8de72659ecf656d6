/**
 * Reading one setting: where its value comes from (flag > env > config file
 * > the table's default) and parsing it as its kind, with a message that
 * names that source (the flag, the variable or the config-file key). Pure:
 * the environment is a plain record and no file is read here.
 *
 * @module
 */

import { ConfigError, redactSecrets } from "../errors.ts";
import type { CommandName } from "./commands.ts";
import type { EnvRecord, FlagValues, Layers } from "./configs.ts";
import { DURATION_FORMS, formatDuration, parseDuration } from "./duration.ts";
import { KEY_ID_PATTERN, MIN_SECRET_BYTES, OPTIONS, type OptionSpec } from "./options.ts";
import { connectionStringHasSecret } from "./pg_target.ts";
import { type KeySource, looksLikeKey, Secret } from "../secret.ts";

/** Where a setting's value came from, for messages that tell the user what to fix. */
export interface Source {
  readonly kind: "flag" | "env" | "file" | "default";
  readonly name: string;
}

/** A setting's row of the settings table; asking for one it lacks is a bug. */
export function specOf(flag: string): OptionSpec {
  const spec = OPTIONS.find((o) => o.flag === flag);
  if (spec === undefined) throw new TypeError(`No option --${flag} in the settings table`);
  return spec;
}

/** The error for a bad value: names its source, shows the value redacted and cut. */
export function invalid(source: Source, raw: string, must: string): ConfigError {
  // Redacted before it is cut: a cut can leave a password without the `@` that marks it.
  const redacted = redactSecrets(raw);
  const shown = redacted.length > 60 ? `${redacted.slice(0, 57)}...` : redacted;
  // A file's key and name are both quoted: the value goes first, or it reads as part of the path.
  return new ConfigError(
    source.kind === "file"
      ? `Invalid value "${shown}" for ${source.name}: ${must}`
      : `Invalid ${source.name} "${shown}": ${must}`,
  );
}

function rangeText(spec: OptionSpec, what: string): string {
  const words = (spec.words ?? []).map((w) => `, or ${w}`).join("");
  return spec.min !== undefined && spec.max !== undefined
    ? `must be ${what} from ${spec.min} to ${spec.max}${words}`
    : `must be ${what}${words}`;
}

/**
 * True for a URL with a password in it, e.g. `postgres://user:pw@host/db`,
 * and for a libpq connection string holding one (`password=…`, `sslpassword=…`):
 * text a message must not echo.
 */
export function holdsPassword(value: string): boolean {
  return (URL.canParse(value) && new URL(value).password !== "") ||
    connectionStringHasSecret(value) ||
    // Malformed, as libpq splits it (a "/" or "@" in the password): user:…@ still says enough.
    /^[a-z][a-z0-9+.-]*:\/\/[^@]*:[^@]*@/i.test(value);
}

/**
 * Reads the settings of one command from the layers. Asking for a setting
 * the table does not give the command is a bug, not a user error.
 */
export class Reader {
  readonly #command: CommandName;
  readonly #layers: Layers;

  constructor(command: CommandName, layers: Layers) {
    this.#command = command;
    this.#layers = layers;
  }

  /** The raw value of a setting and where it came from. */
  lookup(flag: string): { raw: string | boolean | undefined; source: Source } {
    const spec = specOf(flag);
    if (!spec.commands.includes(this.#command)) {
      throw new TypeError(`--${flag} is not a setting of ${this.#command} in the settings table`);
    }
    const { flags, env, file } = this.#layers;
    const fromFlag = flags[flag];
    if (fromFlag !== undefined) {
      return { raw: fromFlag, source: { kind: "flag", name: `--${flag}` } };
    }
    const fromEnv = spec.env === undefined ? undefined : env[spec.env];
    if (fromEnv !== undefined && fromEnv !== "") {
      return { raw: fromEnv, source: { kind: "env", name: spec.env as string } };
    }
    const fromFile = file?.values[flag];
    if (fromFile !== undefined && file !== undefined) {
      return { raw: fromFile, source: { kind: "file", name: `"${flag}" in ${file.origin}` } };
    }
    return { raw: spec.default, source: { kind: "default", name: `--${flag}` } };
  }

  integer(flag: string): number {
    const value = this.optionalInteger(flag);
    if (value === null) throw new TypeError(`--${flag} has no default in the settings table`);
    return value;
  }

  /** An integer setting that also takes one of its table's `words` (`auto`), given back as the word. */
  integerOrWord<W extends string>(flag: string): number | W {
    const { raw } = this.lookup(flag);
    const text = typeof raw === "string" ? raw.trim().toLowerCase() : "";
    const word = (specOf(flag).words ?? []).find((w) => w === text);
    return word === undefined ? this.integer(flag) : word as W;
  }

  optionalInteger(flag: string): number | null {
    const spec = specOf(flag);
    const { raw, source } = this.lookup(flag);
    if (raw === undefined) return null;
    const text = String(raw).trim();
    const value = /^-?\d{1,16}$/.test(text) ? Number(text) : Number.NaN;
    if (
      !Number.isSafeInteger(value) || (spec.min !== undefined && value < spec.min) ||
      (spec.max !== undefined && value > spec.max)
    ) {
      throw invalid(source, String(raw), rangeText(spec, "an integer"));
    }
    return value;
  }

  /** A `duration` setting in whole seconds; `null` when unset. */
  optionalDuration(flag: string): number | null {
    const spec = specOf(flag);
    const { raw, source } = this.lookup(flag);
    if (raw === undefined) return null;
    const seconds = parseDuration(String(raw));
    const min = spec.min ?? 0;
    const max = spec.max ?? Infinity;
    if (seconds === null || seconds < min || seconds > max) {
      throw invalid(
        source,
        String(raw),
        `must be ${DURATION_FORMS}, from ${formatDuration(min)} to ${formatDuration(max)}`,
      );
    }
    return seconds;
  }

  number(flag: string): number {
    const spec = specOf(flag);
    const { raw, source } = this.lookup(flag);
    const text = String(raw ?? "").trim();
    const value = /^\d+(\.\d+)?$/.test(text) ? Number(text) : Number.NaN;
    if (
      !Number.isFinite(value) || (spec.min !== undefined && value < spec.min) ||
      (spec.max !== undefined && value > spec.max)
    ) {
      throw invalid(source, String(raw), rangeText(spec, "a number"));
    }
    return value;
  }

  /** A string setting; `null` when unset or empty. */
  string(flag: string): string | null {
    const { raw, source } = this.lookup(flag);
    if (raw === undefined) return null;
    if (typeof raw !== "string") throw invalid(source, String(raw), "needs a value");
    return raw === "" ? null : raw;
  }

  /**
   * Audit text (`--actor`, `--reason`): trimmed, `null` when unset or blank,
   * refused beyond `maxChars` (the audit functions would refuse it later,
   * after the work). Not echoed: a reason may name the person it concerns.
   */
  auditText(flag: string, maxChars: number): string | null {
    const value = this.string(flag)?.trim() || null;
    if (value !== null && value.length > maxChars) {
      throw new ConfigError(
        `Invalid ${this.lookup(flag).source.name}: ${value.length} characters, at most ${maxChars}`,
      );
    }
    return value;
  }

  choice<T extends string>(flag: string): T {
    const spec = specOf(flag);
    const { raw, source } = this.lookup(flag);
    const text = String(raw ?? "");
    if (!(spec.choices ?? []).includes(text)) {
      throw invalid(source, text, `must be one of ${(spec.choices ?? []).join(", ")}`);
    }
    return text as T;
  }

  boolean(flag: string): boolean {
    const { raw, source } = this.lookup(flag);
    if (raw === undefined || raw === false) return false;
    if (raw === true) return true;
    const text = raw.trim().toLowerCase();
    if (["1", "true", "yes", "on"].includes(text)) return true;
    if (["0", "false", "no", "off", ""].includes(text)) return false;
    throw invalid(source, raw, "must be true or false");
  }

  /** A key id: never echoed, since a secret pasted in its place must not reach a log. */
  keyId(flag: string): string {
    const value = this.string(flag) ?? "";
    if (!KEY_ID_PATTERN.test(value)) {
      throw new ConfigError(
        `Invalid ${
          this.lookup(flag).source.name
        } (${value.length} characters): must be 1 to 16 letters, digits, _ or -; is a secret in the id's place?`,
      );
    }
    return value;
  }

  /**
   * A comma-separated list of key ids (`rekey --retire`, so an operator
   * clears several bogus ids in one run), each checked as `keyId`: a comma
   * is not in a key id, so the split is unambiguous.
   */
  keyIds(flag: string): readonly string[] {
    const ids = (this.string(flag) ?? "").split(",").map((id) => id.trim());
    const bad = ids.findIndex((id) => !KEY_ID_PATTERN.test(id));
    if (bad >= 0) {
      throw new ConfigError(
        `Invalid ${this.lookup(flag).source.name} (id ${bad + 1} of ${ids.length}, ${
          ids[bad]!.length
        } characters): each id must be 1 to 16 letters, digits, _ or -, ids separated by commas; is a secret in an id's place?`,
      );
    }
    return [...new Set(ids)];
  }

  /** A key's source: a file flag or variable, else an inline variable. */
  keySource(
    what: { readonly fileFlag: string; readonly inlineEnv: string },
  ): KeySource {
    const file = this.string(what.fileFlag);
    if (file !== null) {
      const setting = this.lookup(what.fileFlag).source.name;
      const pathShown = !looksLikeKey(file);
      return {
        kind: "file",
        path: file,
        origin: pathShown ? `${setting} "${file}"` : setting,
        setting,
        pathShown,
        inlineEnv: what.inlineEnv,
      };
    }
    const inline = this.#layers.env[what.inlineEnv];
    if (inline !== undefined && inline !== "") {
      const bytes = new TextEncoder().encode(inline);
      // A key set (JSON) is checked when it is parsed; a single secret here.
      if (!inline.trimStart().startsWith("{") && bytes.length < MIN_SECRET_BYTES) {
        throw new ConfigError(
          `Invalid ${what.inlineEnv}: it is ${bytes.length} bytes, need at least ${MIN_SECRET_BYTES}; make one with: openssl rand -base64 32`,
        );
      }
      return { kind: "env", secret: new Secret(bytes, what.inlineEnv) };
    }
    return { kind: "none" };
  }

  get env(): EnvRecord {
    return this.#layers.env;
  }

  get flags(): FlagValues {
    return this.#layers.flags;
  }
}
