/**
 * Where Postgres is, as settings say it: libpq's rules for a connection
 * string (`--database-url`, `DATABASE_URL`), a service name and the `PG*`
 * variables, resolved into a `PgTarget` without reading a file or opening a
 * socket. Pure, so resolution (`resolve.ts`) needs nothing of `db/`;
 * `db/connection.ts` reads what the target points at (the service file,
 * `.pgpass`, certificates) and resolves again with the service's parameters
 * (`resolveWithService`).
 *
 * @module
 */

import { isIP } from "node:net";
import { ConfigError } from "../errors.ts";
import type { EnvRecord } from "./configs.ts";
import { type Conninfo, LIBPQ_KEYWORDS, LIBPQ_OTHER_ENV, parseConninfo } from "./conninfo.ts";
import { integer, nonEmpty, oneOf, parsePort, parseRequireAuth } from "./libpq_values.ts";

/** libpq's sslmode values, weakest first. */
export const SSL_MODES = [
  "disable",
  "allow",
  "prefer",
  "require",
  "verify-ca",
  "verify-full",
] as const;
/** One libpq sslmode. */
export type SslMode = typeof SSL_MODES[number];

/** TLS protocol versions libpq names in ssl_min/max_protocol_version. */
export type TlsVersion = "TLSv1" | "TLSv1.1" | "TLSv1.2" | "TLSv1.3";

/** The exercise's database, used only when nothing else says where Postgres is. */
export const DEFAULT_DATABASE_URL = "postgres://postgres:postgres@localhost:5432/postgres";

/** Variables that name a database; any one of them means "the PG* variables decide". */
const CONNECTION_VARS = [
  "PGHOST",
  "PGHOSTADDR",
  "PGPORT",
  "PGUSER",
  "PGPASSWORD",
  "PGDATABASE",
  "PGSERVICE",
] as const;

/** Every PG* variable libpq reads, so `main.ts` passes them all (the binary may read PG*). */
export const PG_ENV_NAMES: readonly string[] = Object.freeze([
  ...new Set([
    ...Object.values(LIBPQ_KEYWORDS).filter((name): name is string => name !== null),
    ...LIBPQ_OTHER_ENV,
  ]),
]);

/** libpq's directory of client certificates and CAs under HOME. */
const PG_USER_DIR = ".postgresql";
/** Where libpq looks for the system service file without PGSYSCONFDIR (Debian's libpq). */
const DEFAULT_SYSCONFDIR = "/etc/postgresql-common";

/** Where the target came from, for the start log line: a flag, a variable, "PG* variables" or "default URL". */
export type PgSource = string;

/** One host of a target, before the default host is chosen. */
export interface PgHostSpec {
  /** A name, an address or a socket directory; `null`: libpq's default (a local socket if one exists, else localhost). */
  readonly host: string | null;
  readonly hostaddr: string | null;
  readonly port: number;
}

/** libpq's target_session_attrs values. */
export type SessionAttrs =
  | "any"
  | "read-write"
  | "read-only"
  | "primary"
  | "standby"
  | "prefer-standby";

/** A resolved connection target. Holds the password: never log it whole. */
export interface PgTarget {
  readonly hosts: readonly PgHostSpec[];
  readonly database: string;
  readonly user: string;
  /** `null`: look it up in the password file when connecting. Non-enumerable. */
  readonly password: string | null;
  readonly passfile: string | null;
  readonly sslmode: SslMode;
  readonly sslnegotiation: "postgres" | "direct";
  readonly sslrootcert: string | null;
  readonly sslcert: string | null;
  readonly sslkey: string | null;
  /** Non-enumerable. */
  readonly sslpassword: string | null;
  readonly sslcrl: string | null;
  readonly sslcrldir: string | null;
  readonly sslsni: boolean;
  readonly sslcertmode: "disable" | "allow" | "require";
  readonly sslMinProtocolVersion: TlsVersion;
  readonly sslMaxProtocolVersion: TlsVersion | null;
  /** `~/.postgresql`, where libpq's default root.crt, root.crl and postgresql.crt/.key live. */
  readonly userDir: string | null;
  readonly channelBinding: "disable" | "prefer" | "require";
  /** libpq's require_auth list, e.g. `scram-sha-256` or `!password,!md5`; `null`: any. */
  readonly requireAuth: string | null;
  /** The OS user a Unix-socket server must run as (libpq's requirepeer); `null`: any. */
  readonly requirePeer: string | null;
  readonly targetSessionAttrs: SessionAttrs;
  readonly loadBalanceHosts: boolean;
  /** Command-line options for the server (`-c name=value`), sent at start-up. */
  readonly options: string | null;
  readonly applicationName: string;
  readonly connectTimeoutSeconds: number;
  /** TCP keepalive idle time in seconds; `null`: keepalives off. */
  readonly keepaliveSeconds: number | null;
  /** Session settings libpq sends from PGTZ, PGGEQO, PGDATESTYLE. */
  readonly sessionSettings: Readonly<Record<string, string>>;
  /** Parameters set but not applied, each `name (why)`, for one warning line at start. */
  readonly ignored: readonly string[];
  /** A service to read from the service files when connecting, and where to look. */
  readonly service: PgService | null;
  readonly source: PgSource;
}

/** A named service and the files libpq would read it from, in order. */
export interface PgService {
  readonly name: string;
  /** The user's file: `servicefile`, PGSERVICEFILE, or ~/.pg_service.conf. */
  readonly userFile: string | null;
  /** True when the user's file was named (must exist), false for the default ~/.pg_service.conf. */
  readonly userFileNamed: boolean;
  /** `PGSYSCONFDIR/pg_service.conf`. */
  readonly systemFile: string;
}

/** What a target was resolved from, kept off the object so that nothing prints it. */
const inputs = new WeakMap<PgTarget, { explicit: Conninfo; env: EnvRecord }>();

/** The OS user, libpq's default user name. */
function osUser(env: EnvRecord): string {
  return nonEmpty(env["USER"]) ?? nonEmpty(env["LOGNAME"]) ?? nonEmpty(env["USERNAME"]) ??
    "postgres";
}

const TLS_VERSIONS: readonly TlsVersion[] = ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"];

/**
 * Resolves a target from the string's parameters, the service's and the
 * environment, in libpq's order. Pure. Longer than a screen because it is
 * libpq's parameter table walked once, each parameter validated, applied or
 * named as ignored where it is read; split, the order would be lost.
 */
function resolveFrom(
  explicit: Conninfo,
  fromService: Conninfo | null,
  env: EnvRecord,
  origin: string,
  source: PgSource,
): PgTarget {
  // libpq's order: the string, then the service file, then the variable.
  const given = (keyword: string): string | null => {
    const variable = LIBPQ_KEYWORDS[keyword];
    return explicit.get(keyword) ?? fromService?.get(keyword) ??
      (variable === null || variable === undefined ? undefined : env[variable]) ?? null;
  };
  // Most parameters treat an empty value as "not set".
  const pick = (keyword: string): string | null => nonEmpty(given(keyword));
  const ignored: string[] = [];
  const ignore = (keyword: string, why: string) => ignored.push(`${keyword} (${why})`);

  const user = pick("user") ?? osUser(env);
  const hosts = resolveHosts(pick("host"), pick("hostaddr"), pick("port"), origin);

  const requiressl = nonEmpty(env["PGREQUIRESSL"])?.startsWith("1") === true;
  const sslrootcert = pick("sslrootcert");
  const sslmodeText = pick("sslmode");
  const sslmode: SslMode = sslmodeText !== null
    ? oneOf(sslmodeText, SSL_MODES, "sslmode", origin)
    : requiressl
    ? "require"
    // libpq 16: sslrootcert=system makes the default verify-full.
    : sslrootcert === "system"
    ? "verify-full"
    : "prefer";
  if (sslrootcert === "system" && sslmode !== "verify-full") {
    throw new ConfigError(
      `sslmode=${sslmode} is too weak with sslrootcert=system in ${origin}: use sslmode=verify-full (as libpq requires)`,
    );
  }
  const sslnegotiation = oneOf(
    pick("sslnegotiation") ?? "postgres",
    ["postgres", "direct"] as const,
    "sslnegotiation",
    origin,
  );
  if (sslnegotiation === "direct" && !["require", "verify-ca", "verify-full"].includes(sslmode)) {
    throw new ConfigError(
      `sslmode=${sslmode} is too weak with sslnegotiation=direct in ${origin}: use require, verify-ca or verify-full (as libpq requires)`,
    );
  }
  const minVersion = oneOf(
    pick("ssl_min_protocol_version") ?? "TLSv1.2",
    TLS_VERSIONS,
    "ssl_min_protocol_version",
    origin,
  );
  const maxText = pick("ssl_max_protocol_version");
  const maxVersion = maxText === null
    ? null
    : oneOf(maxText, TLS_VERSIONS, "ssl_max_protocol_version", origin);
  if (maxVersion !== null && TLS_VERSIONS.indexOf(maxVersion) < TLS_VERSIONS.indexOf(minVersion)) {
    throw new ConfigError(
      `Invalid TLS version range in ${origin}: ssl_max_protocol_version is below ssl_min_protocol_version`,
    );
  }
  const sslcertmode = oneOf(
    pick("sslcertmode") ?? "allow",
    ["disable", "allow", "require"] as const,
    "sslcertmode",
    origin,
  );
  if (sslcertmode === "require") {
    ignore("sslcertmode=require", "the TLS layer cannot tell whether the server asked for it");
  }

  const timeoutText = pick("connect_timeout");
  let timeout = timeoutText === null ? 10 : integer(timeoutText, "connect_timeout", origin);
  // libpq: zero or less waits forever (a day will do); 1 is rounded up to 2.
  if (timeout <= 0) timeout = 86400;
  if (timeout === 1) timeout = 2;

  const keepalives = pick("keepalives");
  const idleText = pick("keepalives_idle");
  const idle = idleText === null ? 60 : integer(idleText, "keepalives_idle", origin);
  for (const keyword of ["keepalives_interval", "keepalives_count", "tcp_user_timeout"]) {
    const value = pick(keyword);
    if (value !== null) {
      integer(value, keyword, origin);
      ignore(keyword, "the runtime sets only the keepalive idle time");
    }
  }

  const gssencmode = pick("gssencmode");
  if (gssencmode !== null) {
    oneOf(gssencmode, ["disable", "prefer", "require"] as const, "gssencmode", origin);
    if (gssencmode === "require") {
      throw new ConfigError(
        `gssencmode=require in ${origin} cannot be met: login-etl has no GSSAPI encryption (as a libpq built without GSSAPI); use sslmode for encryption`,
      );
    }
    if (gssencmode === "prefer") ignore("gssencmode=prefer", "no GSSAPI encryption, TLS applies");
  }
  if (pick("gssdelegation") === "1") ignore("gssdelegation", "no GSSAPI");
  for (const keyword of ["krbsrvname", "gsslib"]) {
    if (pick(keyword) !== null) ignore(keyword, "no GSSAPI authentication");
  }
  if (pick("sslcompression") === "1") ignore("sslcompression", "TLS compression is obsolete");
  if (pick("sslkeylogfile") !== null) {
    ignore("sslkeylogfile", "the TLS layer does not export session keys");
  }
  for (const keyword of ["scram_client_key", "scram_server_key"]) {
    if (pick(keyword) !== null) ignore(keyword, "passed-through SCRAM keys are not supported");
  }
  for (const keyword of ["oauth_issuer", "oauth_client_id", "oauth_client_secret", "oauth_scope"]) {
    if (pick(keyword) !== null) ignore(keyword, "no OAuth authentication");
  }
  const replication = pick("replication");
  if (replication !== null && !/^(false|off|no|0)$/i.test(replication)) {
    ignore("replication", "login-etl needs a normal session");
  }
  const encoding = pick("client_encoding");
  if (encoding !== null && !/^(utf-?8|unicode|auto)$/i.test(encoding)) {
    ignore("client_encoding", "login-etl always talks UTF8");
  }
  for (const keyword of ["min_protocol_version", "max_protocol_version"]) {
    const value = pick(keyword);
    if (value === null) continue;
    oneOf(value, ["3.0", "3.2", "latest"] as const, keyword, origin);
    if (keyword === "min_protocol_version" && value !== "3.0") {
      throw new ConfigError(
        `min_protocol_version=${value} in ${origin} cannot be met: postgres.js speaks protocol 3.0`,
      );
    }
  }

  const requireAuth = pick("require_auth");
  const sessionSettings: Record<string, string> = {};
  // libpq sends these as start-up settings unless the value is "default".
  for (const [variable, setting] of [["PGTZ", "timezone"], ["PGGEQO", "geqo"]] as const) {
    const value = nonEmpty(env[variable]);
    if (value !== null && value.toLowerCase() !== "default") sessionSettings[setting] = value;
  }
  const dateStyle = nonEmpty(env["PGDATESTYLE"]);
  if (dateStyle !== null && dateStyle.toLowerCase() !== "default") {
    // postgres.js reads dates in ISO style only.
    if (/^\s*iso\b/i.test(dateStyle)) sessionSettings["datestyle"] = dateStyle;
    else ignore("PGDATESTYLE", "postgres.js reads dates in ISO style only");
  }

  const home = nonEmpty(env["HOME"]);
  const target = {
    hosts,
    database: pick("dbname") ?? user,
    user,
    passfile: pick("passfile") ?? (home === null ? null : `${home}/.pgpass`),
    sslmode,
    sslnegotiation,
    sslrootcert,
    sslcert: pick("sslcert"),
    sslkey: pick("sslkey"),
    sslcrl: pick("sslcrl"),
    sslcrldir: pick("sslcrldir"),
    // libpq: SNI unless sslsni starts with something other than "1".
    sslsni: (pick("sslsni") ?? "1").startsWith("1"),
    sslcertmode,
    sslMinProtocolVersion: minVersion,
    sslMaxProtocolVersion: maxVersion,
    userDir: home === null ? null : `${home}/${PG_USER_DIR}`,
    channelBinding: oneOf(
      pick("channel_binding") ?? "prefer",
      ["disable", "prefer", "require"] as const,
      "channel_binding",
      origin,
    ),
    requireAuth: requireAuth === null ? null : parseRequireAuth(requireAuth, origin),
    requirePeer: pick("requirepeer"),
    targetSessionAttrs: oneOf(
      pick("target_session_attrs") ?? "any",
      ["any", "read-write", "read-only", "primary", "standby", "prefer-standby"] as const,
      "target_session_attrs",
      origin,
    ),
    loadBalanceHosts: oneOf(
      pick("load_balance_hosts") ?? "disable",
      ["disable", "random"] as const,
      "load_balance_hosts",
      origin,
    ) === "random",
    options: pick("options"),
    // libpq: application_name, else the fallback; login-etl is ours.
    applicationName: pick("application_name") ?? pick("fallback_application_name") ??
      "login-etl",
    connectTimeoutSeconds: timeout,
    keepaliveSeconds: keepalives === "0" ? null : Math.max(1, idle),
    sessionSettings: Object.freeze(sessionSettings),
    ignored: Object.freeze(ignored),
    service: serviceOf(explicit, env),
    source,
  };
  // Non-enumerable, so that logging or serialising the target leaves them out.
  const frozen = Object.freeze(
    Object.defineProperties(target, {
      password: { value: pick("password"), enumerable: false },
      sslpassword: { value: given("sslpassword"), enumerable: false },
    }),
  ) as unknown as PgTarget;
  inputs.set(frozen, { explicit, env });
  return frozen;
}

/** The service to read, if any, and libpq's files for it. */
function serviceOf(explicit: Conninfo, env: EnvRecord): PgService | null {
  const name = nonEmpty(explicit.get("service")) ?? nonEmpty(env["PGSERVICE"]);
  if (name === null) return null;
  const named = nonEmpty(explicit.get("servicefile")) ?? nonEmpty(env["PGSERVICEFILE"]);
  const home = nonEmpty(env["HOME"]);
  return Object.freeze({
    name,
    userFile: named ?? (home === null ? null : `${home}/.pg_service.conf`),
    userFileNamed: named !== null,
    systemFile: `${nonEmpty(env["PGSYSCONFDIR"]) ?? DEFAULT_SYSCONFDIR}/pg_service.conf`,
  });
}

/** libpq's host, hostaddr and port lists, matched up. */
function resolveHosts(
  host: string | null,
  hostaddr: string | null,
  port: string | null,
  origin: string,
): PgHostSpec[] {
  const names = host === null ? null : host.split(",");
  const addresses = hostaddr === null ? null : hostaddr.split(",");
  if (names !== null && addresses !== null && names.length !== addresses.length) {
    throw new ConfigError(
      `Invalid ${origin}: ${names.length} host names but ${addresses.length} hostaddr values; give one per host`,
    );
  }
  const count = names?.length ?? addresses?.length ?? 1;
  const ports = port === null ? [""] : port.split(",");
  if (ports.length !== 1 && ports.length !== count) {
    throw new ConfigError(
      `Invalid ${origin}: ${ports.length} port numbers for ${count} hosts; give one port, or one per host`,
    );
  }
  return Array.from({ length: count }, (_, i) => {
    const address = nonEmpty(addresses?.[i]);
    if (address !== null && isIP(address) === 0) {
      throw new ConfigError(`Invalid hostaddr in ${origin}: must be an IPv4 or IPv6 address`);
    }
    const portText = ports.length === 1 ? ports[0] : ports[i];
    return Object.freeze({
      host: nonEmpty(names?.[i]) ?? address,
      hostaddr: address,
      port: nonEmpty(portText) === null ? 5432 : parsePort(portText as string, origin),
    });
  });
}

/**
 * Resolves where Postgres is, as libpq would, from a connection string (when
 * one is given: a URL or keyword=value pairs) and the `PG*` variables. Pure:
 * files (a service file, `.pgpass`, certificates) are read later, by
 * `loadPgConnection`, which resolves again with the service's parameters.
 *
 * @param url the `--database-url` or `DATABASE_URL` value and its name, or null
 * @throws {ConfigError} naming the setting to fix, never echoing a password
 */
export function resolvePgTarget(
  url: { readonly value: string; readonly origin: string } | null,
  env: EnvRecord,
): PgTarget {
  const pgVarsSet = CONNECTION_VARS.some((name) => nonEmpty(env[name]) !== null);
  const source: PgSource = url !== null ? url.origin : pgVarsSet ? "PG* variables" : "default URL";
  const explicit = url !== null
    ? parseConninfo(url.value, url.origin)
    : pgVarsSet
    ? new Map<string, string>()
    : parseConninfo(DEFAULT_DATABASE_URL, "the default URL");
  return resolveFrom(explicit, null, pickEnv(env), url?.origin ?? "the PG* variables", source);
}

/** Keywords whose values are secrets. */
const SECRET_KEYWORDS = ["password", "sslpassword", "oauth_client_secret"];

/**
 * True when a connection string (URL or keyword=value) holds a secret: a
 * password, an sslpassword or an OAuth client secret. False for text that
 * does not parse (its error says so elsewhere).
 */
export function connectionStringHasSecret(text: string): boolean {
  try {
    const info = parseConninfo(text, "the connection string");
    return SECRET_KEYWORDS.some((keyword) => nonEmpty(info.get(keyword)) !== null);
  } catch {
    return false;
  }
}

/** The variables resolution reads, copied, so a target does not hold the whole environment. */
function pickEnv(env: EnvRecord): EnvRecord {
  const picked: Record<string, string> = {};
  for (const name of [...PG_ENV_NAMES, "HOME", "USER", "LOGNAME", "USERNAME"]) {
    const value = env[name];
    if (value !== undefined) picked[name] = value;
  }
  return Object.freeze(picked);
}

/**
 * The target resolved again with a service file's parameters (read by
 * `loadPgConnection`), in libpq's order: the string, the service, the
 * variables.
 */
export function resolveWithService(target: PgTarget, fromService: Conninfo): PgTarget {
  const from = inputs.get(target);
  if (from === undefined || target.service === null) {
    throw new Error("PgTarget not made by resolvePgTarget, or without a service");
  }
  return resolveFrom(
    from.explicit,
    fromService,
    from.env,
    `service ${target.service.name}`,
    target.source,
  );
}
