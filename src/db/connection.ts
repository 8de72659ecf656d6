/**
 * Where Postgres is and how to reach it, with libpq's rules: a URL
 * (`--database-url`, `DATABASE_URL`) overrides the `PG*` variables, which fill
 * in what the URL leaves out; `~/.pgpass` (or `PGPASSFILE`) supplies a missing
 * password; `sslmode` and `sslrootcert` keep libpq's meanings. Only when
 * neither a URL nor any connection variable is set does the exercise's default
 * URL apply.
 *
 * Why not hand the URL to postgres.js: it reads `sslmode` but treats `require`,
 * `verify-ca` and `verify-full` alike, cannot read `sslrootcert` or `.pgpass`,
 * and reads `PG*` from the process environment behind our back. And why not
 * pg-connection-string: it maps `sslmode` for node-postgres, which has no
 * `prefer` fallback. So the rules live here, and postgres.js gets explicit
 * options only.
 *
 * @module
 */

import { createReadStream } from "node:fs";
import { checkServerIdentity, type PeerCertificate } from "node:tls";
import { getPassword } from "pgpass/lib/helper.js";
import { ConfigError, whyUnreadable } from "../errors.ts";

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

/** The exercise's database, used only when nothing else says where Postgres is. */
export const DEFAULT_DATABASE_URL = "postgres://postgres:postgres@localhost:5432/postgres";

/** Variables that name a database; any one of them means "the PG* variables decide". */
const CONNECTION_VARS = ["PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE"] as const;

/** Every PG* variable this module reads, for `main.ts`'s environment list. */
export const PG_ENV_NAMES: readonly string[] = [
  ...CONNECTION_VARS,
  "PGPASSFILE",
  "PGSSLMODE",
  "PGSSLROOTCERT",
  "PGSSLCERT",
  "PGSSLKEY",
  "PGAPPNAME",
  "PGCONNECT_TIMEOUT",
];

/** URL query parameters we understand (libpq refuses unknown ones, and so do we). */
const URL_PARAMS = new Set([
  "sslmode",
  "sslrootcert",
  "sslcert",
  "sslkey",
  "application_name",
  "connect_timeout",
  "host",
  "port",
  "user",
  "password",
  "dbname",
]);

/** Where the target came from, for the start log line: a flag, a variable, "PG* variables" or "default URL". */
export type PgSource = string;

/** A resolved connection target. Holds the password: never log it whole. */
export interface PgTarget {
  /** A host name or address; `null` means libpq's default (a local socket if one exists, else localhost). */
  readonly host: string | null;
  readonly port: number;
  readonly database: string;
  readonly user: string;
  /** `null`: look it up in the password file when connecting. Non-enumerable. */
  readonly password: string | null;
  readonly passfile: string | null;
  readonly sslmode: SslMode;
  readonly sslrootcert: string | null;
  readonly sslcert: string | null;
  readonly sslkey: string | null;
  /** libpq's default CA file, `~/.postgresql/root.crt`, used for verify-* when it exists. */
  readonly defaultRootCert: string | null;
  readonly applicationName: string;
  readonly connectTimeoutSeconds: number;
  readonly source: PgSource;
}

type EnvRecord = Readonly<Record<string, string | undefined>>;

function nonEmpty(value: string | null | undefined): string | null {
  return value === undefined || value === null || value === "" ? null : value;
}

function parseSslMode(value: string, origin: string): SslMode {
  if ((SSL_MODES as readonly string[]).includes(value)) return value as SslMode;
  throw new ConfigError(
    `Invalid sslmode "${value.slice(0, 20)}" in ${origin}: must be one of ${SSL_MODES.join(", ")}`,
  );
}

function parsePort(value: string, origin: string): number {
  const port = /^\d{1,5}$/.test(value) ? Number(value) : Number.NaN;
  if (!(port >= 1 && port <= 65535)) {
    throw new ConfigError(`Invalid port in ${origin}: must be a number from 1 to 65535`);
  }
  return port;
}

/** The OS user, libpq's default user name. */
function osUser(env: EnvRecord): string {
  return nonEmpty(env["USER"]) ?? nonEmpty(env["LOGNAME"]) ?? nonEmpty(env["USERNAME"]) ??
    "postgres";
}

/** A URL's parts, decoded; never echoes the URL itself, which may hold a password. */
function parseUrl(url: string, origin: string): Map<string, string> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError(
      `Invalid ${origin}: must be a URL like postgres://user:password@host:5432/database`,
    );
  }
  if (!/^postgres(ql)?:$/.test(parsed.protocol)) {
    throw new ConfigError(
      `Invalid ${origin}: must start with postgres:// (like postgres://user:password@host:5432/database)`,
    );
  }
  const parts = new Map<string, string>();
  const decode = (text: string): string => {
    try {
      return decodeURIComponent(text);
    } catch {
      throw new ConfigError(`Invalid ${origin}: bad percent-encoding`);
    }
  };
  if (parsed.hostname !== "") parts.set("host", decode(parsed.hostname.replace(/^\[|\]$/g, "")));
  if (parsed.port !== "") parts.set("port", parsed.port);
  if (parsed.username !== "") parts.set("user", decode(parsed.username));
  if (parsed.password !== "") parts.set("password", decode(parsed.password));
  const path = decode(parsed.pathname.replace(/^\//, ""));
  if (path !== "") parts.set("dbname", path);
  for (const [key, value] of parsed.searchParams) {
    if (!URL_PARAMS.has(key)) {
      throw new ConfigError(
        `Invalid ${origin}: unknown parameter "${key.slice(0, 30)}"; known: ${
          [...URL_PARAMS].join(", ")
        }`,
      );
    }
    parts.set(key, value);
  }
  return parts;
}

/**
 * Resolves where Postgres is, as libpq would, from a URL (when one is given)
 * and the `PG*` variables. Pure: files (`.pgpass`, certificates) are read
 * later, by `loadPgConnection`.
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
  const fromUrl = url !== null
    ? parseUrl(url.value, url.origin)
    : pgVarsSet
    ? new Map<string, string>()
    : parseUrl(DEFAULT_DATABASE_URL, "the default URL");
  const origin = url?.origin ?? "the PG* variables";
  // The URL wins; a PG* variable fills in what it leaves out (libpq's order).
  const pick = (key: string, variable: string): string | null =>
    nonEmpty(fromUrl.get(key)) ?? nonEmpty(env[variable]);
  const host = pick("host", "PGHOST");
  const portText = pick("port", "PGPORT");
  const user = pick("user", "PGUSER") ?? osUser(env);
  const sslmodeText = fromUrl.get("sslmode") ?? nonEmpty(env["PGSSLMODE"]);
  const timeoutText = pick("connect_timeout", "PGCONNECT_TIMEOUT");
  const timeout = timeoutText === null ? 10 : Number(timeoutText);
  if (!Number.isInteger(timeout) || timeout < 0 || timeout > 3600) {
    throw new ConfigError(`Invalid connect_timeout in ${origin}: must be 0 to 3600 seconds`);
  }
  const target = {
    host,
    port: portText === null ? 5432 : parsePort(portText, origin),
    database: pick("dbname", "PGDATABASE") ?? user,
    user,
    passfile: nonEmpty(env["PGPASSFILE"]) ??
      (nonEmpty(env["HOME"]) === null ? null : `${env["HOME"]}/.pgpass`),
    // libpq's default: TLS when the server offers it, plain otherwise.
    sslmode: sslmodeText === null ? "prefer" as const : parseSslMode(sslmodeText, origin),
    sslrootcert: pick("sslrootcert", "PGSSLROOTCERT"),
    sslcert: pick("sslcert", "PGSSLCERT"),
    sslkey: pick("sslkey", "PGSSLKEY"),
    defaultRootCert: nonEmpty(env["HOME"]) === null ? null : `${env["HOME"]}/.postgresql/root.crt`,
    applicationName: pick("application_name", "PGAPPNAME") ?? "login-etl",
    // libpq treats 0 as "wait forever"; postgres.js needs a number, so a day.
    connectTimeoutSeconds: timeout === 0 ? 86400 : timeout,
    source,
  };
  if (target.sslmode === "verify-ca" && target.sslrootcert === null) {
    throw new ConfigError(
      `sslmode=verify-ca needs sslrootcert (or PGSSLROOTCERT): the CA that signed the server's certificate; or use sslmode=verify-full`,
    );
  }
  // Non-enumerable, so that logging or serialising the target leaves it out.
  return Object.freeze(
    Object.defineProperty(target, "password", {
      value: pick("password", "PGPASSWORD"),
      enumerable: false,
    }),
  ) as PgTarget;
}

/** The target for a log line: `postgres://user@host:5432/db (sslmode=prefer, from PG* variables)`. */
export function describePgTarget(target: PgTarget): string {
  const host = target.host === null
    ? "local socket or localhost"
    : target.host.includes(":")
    ? `[${target.host}]`
    : target.host;
  return `postgres://${encodeURIComponent(target.user)}@${host}:${target.port}/${
    encodeURIComponent(target.database)
  } (sslmode=${target.sslmode}, from ${target.source})`;
}

/** TLS settings postgres.js can use; plain data, so a worker thread can receive it. */
export type PgTls =
  | false
  | "prefer"
  | {
    /** PEM CA bundle; absent: the runtime's trusted roots. */
    readonly ca?: string;
    readonly cert?: string;
    readonly key?: string;
    readonly rejectUnauthorized: boolean;
    /** False for verify-ca: the chain is checked, the host name is not. */
    readonly verifyHostname: boolean;
  };

/**
 * Everything needed to open connections, files already read. Plain data for
 * `postMessage`; holds the password, so never log it.
 */
export interface PgConnection {
  /** Host name or address, or a socket directory starting with `/`. */
  readonly host: string;
  readonly port: number;
  readonly database: string;
  readonly user: string;
  readonly password: string;
  readonly sslmode: SslMode;
  readonly tls: PgTls;
  readonly applicationName: string;
  readonly connectTimeoutSeconds: number;
  /** For log lines and messages: no password. */
  readonly display: string;
}

/** Socket directories libpq builds use (Debian's first), tried when no host is set. */
const SOCKET_DIRS = ["/var/run/postgresql", "/tmp"];

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

async function readSetting(path: string, what: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    throw new ConfigError(`Cannot read ${what} "${path}": ${whyUnreadable(error)}`, {
      cause: error,
    });
  }
}

/**
 * The password-file entry for a connection, read with the `pgpass` package
 * (node-postgres's parser: wildcards, escapes). As libpq, a file that group or
 * others may read is ignored, with a warning.
 */
async function lookUpPassfile(
  passfile: string,
  key: { host: string; port: number; database: string; user: string },
  warn: (message: string) => void,
): Promise<string | null> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(passfile);
  } catch {
    return null;
  }
  if (!info.isFile) return null;
  if (Deno.build.os !== "windows" && ((info.mode ?? 0) & 0o077) !== 0) {
    warn(
      `password file ${passfile} is readable by group or others, so it is ignored as libpq does; run: chmod 0600 ${passfile}`,
    );
    return null;
  }
  const found = await new Promise<string | undefined>((resolve) =>
    getPassword(
      { host: key.host, port: String(key.port), database: key.database, user: key.user },
      createReadStream(passfile),
      resolve,
    )
  );
  return found ?? null;
}

/**
 * Reads what the target points at (certificates, the password file) and
 * picks libpq's default host, giving what `connect` needs.
 *
 * @param warn receives one line per problem that does not stop the run
 * @throws {ConfigError} when a named certificate file cannot be read
 */
export async function loadPgConnection(
  target: PgTarget,
  warn: (message: string) => void = () => {},
): Promise<PgConnection> {
  let host = target.host;
  if (host === null) {
    host = "localhost";
    for (const dir of SOCKET_DIRS) {
      if (await exists(`${dir}/.s.PGSQL.${target.port}`)) {
        host = dir;
        break;
      }
    }
  }
  const password = target.password ?? (target.passfile === null ? null : await lookUpPassfile(
    target.passfile,
    // libpq matches a socket connection as "localhost".
    {
      host: host.startsWith("/") ? "localhost" : host,
      port: target.port,
      database: target.database,
      user: target.user,
    },
    warn,
  ));
  let tls: PgTls;
  switch (target.sslmode) {
    case "disable":
      tls = false;
      break;
    case "allow":
    case "prefer":
      tls = "prefer";
      break;
    default: {
      let rootcert = target.sslrootcert;
      if (
        rootcert === null && target.sslmode === "verify-full" && target.defaultRootCert !== null &&
        await exists(target.defaultRootCert)
      ) rootcert = target.defaultRootCert;
      // "system" is libpq's name for the runtime's trusted roots.
      const ca = rootcert === null || rootcert === "system"
        ? undefined
        : await readSetting(rootcert, "sslrootcert");
      const cert = target.sslcert === null
        ? undefined
        : await readSetting(target.sslcert, "sslcert");
      const key = target.sslkey === null ? undefined : await readSetting(target.sslkey, "sslkey");
      // libpq: require with a root certificate checks the chain, as verify-ca.
      const verify = target.sslmode !== "require" || ca !== undefined;
      tls = {
        ...(ca === undefined ? {} : { ca }),
        ...(cert === undefined ? {} : { cert }),
        ...(key === undefined ? {} : { key }),
        rejectUnauthorized: verify,
        verifyHostname: target.sslmode === "verify-full",
      };
    }
  }
  const display = describePgTarget({ ...target, host });
  return Object.freeze({
    host,
    port: target.port,
    database: target.database,
    user: target.user,
    password: password ?? "",
    sslmode: target.sslmode,
    tls,
    applicationName: target.applicationName,
    connectTimeoutSeconds: target.connectTimeoutSeconds,
    display,
  });
}

/** TLS error codes of Node's TLS layer that mean "this certificate is not trusted". */
const UNTRUSTED = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_UNTRUSTED",
  "CERT_SIGNATURE_FAILURE",
]);

/**
 * Why a connection could not be opened, in words that say what to fix, for
 * the TLS failures postgres.js reports only as a socket error; `null` for
 * any other error.
 */
export function describeTlsFailure(error: unknown, connection: PgConnection): string | null {
  if (!(error instanceof Error)) return null;
  const code = String((error as { code?: unknown }).code ?? "");
  const at = `${connection.host}:${connection.port}`;
  if (UNTRUSTED.has(code)) {
    return `the certificate of ${at} is not signed by a trusted CA (${code}); set sslrootcert (or PGSSLROOTCERT) to the CA bundle that signed it`;
  }
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") {
    return `the certificate of ${at} does not name host ${connection.host}; connect with a name the certificate lists, or use sslmode=verify-ca`;
  }
  if (code === "CERT_HAS_EXPIRED" || code === "CERT_NOT_YET_VALID") {
    return `the certificate of ${at} is not valid now (${code})`;
  }
  if (/before secure TLS connection was established/.test(error.message)) {
    return refusedTls(connection);
  }
  return null;
}

function refusedTls(connection: PgConnection): string {
  return `${connection.host}:${connection.port} does not accept TLS (ssl is off on the server) and sslmode=${connection.sslmode} requires it; turn ssl on there, or use sslmode=prefer`;
}

/** Postgres' SSLRequest: length 8, then the code 1234.5679 (80877103). */
const SSL_REQUEST = new Uint8Array([0, 0, 0, 8, 4, 210, 22, 47]);

/**
 * After a failed connection that required TLS: asks the server whether it
 * accepts TLS at all, as libpq's first step does, and says so when it does
 * not. postgres.js sends TLS anyway and only times out, so without this the
 * user would see "CONNECT_TIMEOUT". `null` when the answer is yes or unknown.
 */
export async function explainRefusedTls(connection: PgConnection): Promise<string | null> {
  if (typeof connection.tls !== "object" || connection.host.startsWith("/")) return null;
  let conn: Deno.TcpConn | null = null;
  const timer = setTimeout(() => conn?.close(), 3000);
  try {
    conn = await Deno.connect({ hostname: connection.host, port: connection.port });
    await conn.write(SSL_REQUEST);
    const answer = new Uint8Array(1);
    const read = await conn.read(answer);
    return read === 1 && answer[0] === 0x4e /* N */ ? refusedTls(connection) : null;
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
    try {
      conn?.close();
    } catch { /* closed by the timer */ }
  }
}

/**
 * The postgres.js TLS option for a connection. The host name is checked
 * here, against the host we dial: postgres.js sends no server name for an IP
 * address, and the TLS layer then checks the certificate against "localhost",
 * so verify-full to 127.0.0.1 would accept a certificate made for localhost.
 */
export function postgresTls(
  connection: Pick<PgConnection, "tls" | "host">,
): false | "prefer" | Record<string, unknown> {
  const { tls, host } = connection;
  if (tls === false || tls === "prefer") return tls;
  const { verifyHostname, ...options } = tls;
  return {
    ...options,
    checkServerIdentity: verifyHostname
      ? (_name: string, cert: PeerCertificate) => checkServerIdentity(host, cert)
      : () => undefined, // verify-ca: the chain only
  };
}
