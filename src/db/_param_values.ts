/**
 * libpq's parameter values checked as libpq checks them: integers, ports,
 * one of a list, require_auth's method list; and the OS user, libpq's default
 * user name. Private to the target resolution (`target.ts`).
 *
 * @module
 */

import { ConfigError } from "../errors.ts";

/** Environment variables as a plain record. */
export type EnvRecord = Readonly<Record<string, string | undefined>>;

/** The value, or `null` when it is missing or empty (libpq treats both alike). */
export function nonEmpty(value: string | null | undefined): string | null {
  return value === undefined || value === null || value === "" ? null : value;
}

/** The value when it is one of `allowed`, else a ConfigError naming the keyword. */
export function oneOf<T extends string>(
  value: string,
  allowed: readonly T[],
  keyword: string,
  origin: string,
): T {
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new ConfigError(
    `Invalid ${keyword} "${value.slice(0, 20)}" in ${origin}: must be one of ${allowed.join(", ")}`,
  );
}

/** libpq's `parse_int_param`: an integer, surrounding spaces allowed. */
export function integer(value: string, keyword: string, origin: string): number {
  if (!/^\s*[-+]?\d+\s*$/.test(value)) {
    throw new ConfigError(`Invalid ${keyword} in ${origin}: must be a whole number`);
  }
  return Number(value.trim());
}

/** A port number from 1 to 65535. */
export function parsePort(value: string, origin: string): number {
  const port = /^\s*\d{1,5}\s*$/.test(value) ? Number(value.trim()) : Number.NaN;
  if (!(port >= 1 && port <= 65535)) {
    throw new ConfigError(`Invalid port in ${origin}: must be a number from 1 to 65535`);
  }
  return port;
}

/** The OS user, libpq's default user name. */
export function osUser(env: EnvRecord): string {
  return nonEmpty(env["USER"]) ?? nonEmpty(env["LOGNAME"]) ?? nonEmpty(env["USERNAME"]) ??
    "postgres";
}

const REQUIRE_AUTH_METHODS = ["password", "md5", "gss", "sspi", "scram-sha-256", "oauth", "none"];

/** Checks require_auth as libpq does: one polarity, known methods, none twice. */
export function parseRequireAuth(value: string, origin: string): string {
  const methods = value.split(",");
  const negated = methods[0]?.startsWith("!") ?? false;
  const seen = new Set<string>();
  for (const method of methods) {
    if (method.startsWith("!") !== negated) {
      throw new ConfigError(
        `Invalid require_auth in ${origin}: negated methods (!name) cannot be mixed with others`,
      );
    }
    const name = negated ? method.slice(1) : method;
    if (!REQUIRE_AUTH_METHODS.includes(name)) {
      throw new ConfigError(
        `Invalid require_auth method "${name.slice(0, 20)}" in ${origin}: must be among ${
          REQUIRE_AUTH_METHODS.join(", ")
        }`,
      );
    }
    if (seen.has(name)) {
      throw new ConfigError(`Invalid require_auth in ${origin}: "${name}" is listed twice`);
    }
    seen.add(name);
  }
  return value;
}
