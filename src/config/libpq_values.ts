/**
 * libpq's checks of single connection-parameter values: empty means unset,
 * one of a fixed list, a whole number, a port, a `require_auth` list. Each
 * message names the parameter and where it was set, never echoing more of
 * the value than a short prefix (a value may be a misplaced password).
 *
 * @module
 */

import { ConfigError } from "../errors.ts";

export function nonEmpty(value: string | null | undefined): string | null {
  return value === undefined || value === null || value === "" ? null : value;
}

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

export function parsePort(value: string, origin: string): number {
  const port = /^\s*\d{1,5}\s*$/.test(value) ? Number(value.trim()) : Number.NaN;
  if (!(port >= 1 && port <= 65535)) {
    throw new ConfigError(`Invalid port in ${origin}: must be a number from 1 to 65535`);
  }
  return port;
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
