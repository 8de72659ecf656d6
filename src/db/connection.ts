/**
 * How to reach Postgres: a resolved target (`target.ts`) made into what
 * `connect` needs by reading the files it points at (a service file, the
 * password file, the TLS files of `tls_files.ts`) and picking libpq's default
 * host; and the words for a connection our checks or the TLS layer refused.
 *
 * @module
 */

import { isValidEntry, match, parseLine } from "pgpass/lib/helper.js";
import { ConfigError, whyUnreadable } from "../errors.ts";
import { probedSocketFailure } from "./peer.ts";
import { type Conninfo, parseServiceFile } from "./conninfo.ts";
import { endpointName, isSocketDir, type PgEndpoint, type PgTls, type SslMode } from "./socket.ts";
import {
  describePgTarget,
  type PgService,
  type PgTarget,
  type SessionAttrs,
  withService,
} from "./target.ts";
import { loadTls } from "./tls_files.ts";

// Re-exported: a caller resolves a target and loads it through this one module.
export {
  connectionStringHasSecret,
  DEFAULT_DATABASE_URL,
  describePgTarget,
  PG_ENV_NAMES,
  type PgTarget,
  resolvePgTarget,
  SSL_MODES,
  type SslMode,
} from "./target.ts";

/**
 * Everything needed to open connections, files already read. Plain data for
 * `postMessage`; holds the password and key, so never log it.
 */
export interface PgConnection {
  /** Where to connect, in order (shuffled per pool with load_balance_hosts=random). */
  readonly endpoints: readonly PgEndpoint[];
  readonly database: string;
  readonly user: string;
  /**
   * The password for each endpoint, in the same order ("" for none): the
   * password file is looked up per host and port, as libpq does.
   */
  readonly passwords: readonly string[];
  readonly sslmode: SslMode;
  readonly tls: PgTls;
  readonly channelBinding: "disable" | "prefer" | "require";
  readonly requireAuth: string | null;
  /** The OS user a Unix-socket server must run as (the socket file's owner, see `peer.ts`). */
  readonly requirePeer: string | null;
  readonly targetSessionAttrs: SessionAttrs;
  readonly loadBalanceHosts: boolean;
  readonly options: string | null;
  readonly applicationName: string;
  readonly connectTimeoutSeconds: number;
  readonly keepaliveSeconds: number | null;
  readonly sessionSettings: Readonly<Record<string, string>>;
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

/**
 * The password file's text, or `null` when there is none to read. As libpq,
 * a file that group or others may read is ignored, with a warning.
 */
async function readPassfile(
  passfile: string,
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
  return await Deno.readTextFile(passfile).catch(() => null);
}

/**
 * The first password-file entry that matches, read with the `pgpass`
 * package's line parser and matcher (node-postgres's: wildcards, escapes).
 */
function passwordFor(
  text: string,
  key: { host: string; port: number; database: string; user: string },
): string | null {
  const info = { host: key.host, port: String(key.port), database: key.database, user: key.user };
  for (const line of text.split(/\r?\n/)) {
    const entry = parseLine(line);
    if (entry && isValidEntry(entry) && match(info, entry)) return entry.password ?? null;
  }
  return null;
}

/** Reads the target's service from the user's file, else the system file, as libpq does. */
async function readService(service: PgService): Promise<Conninfo> {
  const files = [
    ...(service.userFile === null
      ? []
      : [{ path: service.userFile, named: service.userFileNamed }]),
    { path: service.systemFile, named: false },
  ];
  for (const { path, named } of files) {
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (error) {
      // A named file must exist; ~/.pg_service.conf and the system file may not.
      if (named || !(error instanceof Deno.errors.NotFound)) {
        throw new ConfigError(`Cannot read service file "${path}": ${whyUnreadable(error)}`, {
          cause: error,
        });
      }
      continue;
    }
    const found = parseServiceFile(text, service.name, path);
    if (found !== null) return found;
  }
  throw new ConfigError(
    `Service "${service.name}" is not defined in ${
      files.map((f) => f.path).join(" or ")
    }: add a [${service.name}] section, or fix service/PGSERVICE (PGSERVICEFILE names another file)`,
  );
}
/**
 * Reads what the target points at (a service file, certificates, the
 * password file), picks libpq's default host, and says in one warning line
 * which parameters cannot apply, giving what `connect` needs.
 *
 * @param warn receives one line per problem that does not stop the run
 * @throws {ConfigError} when a named file cannot be read or a service is missing
 */
export async function loadPgConnection(
  given: PgTarget,
  warn: (message: string) => void = () => {},
): Promise<PgConnection> {
  let target = given;
  if (target.service !== null) target = withService(target, await readService(target.service));
  if (target.ignored.length > 0) {
    warn(
      `Connection parameters that cannot apply here are ignored: ${target.ignored.join("; ")}`,
    );
  }
  const endpoints: PgEndpoint[] = [];
  for (const spec of target.hosts) {
    let host = spec.host;
    if (host === null) {
      host = "localhost";
      for (const dir of SOCKET_DIRS) {
        const path = `${dir}/.s.PGSQL.${spec.port}`;
        if (!await exists(path)) continue;
        // requirepeer, when given, is checked at each connection instead.
        const failure = target.requirePeer === null
          ? await probedSocketFailure(path, SOCKET_DIRS[0] as string)
          : null;
        if (failure !== null) throw new ConfigError(`Cannot use the socket ${path}: ${failure}`);
        host = dir;
        break;
      }
    }
    endpoints.push(Object.freeze({ host, hostaddr: spec.hostaddr, port: spec.port }));
  }
  const explicit = target.password;
  const passfile = explicit === null && target.passfile !== null
    ? await readPassfile(target.passfile, warn)
    : null;
  // libpq looks the password file up per host and port (connectOptions2).
  const passwords = endpoints.map((e) =>
    explicit ?? (passfile === null ? null : passwordFor(passfile, {
      // libpq matches a socket connection as "localhost".
      host: isSocketDir(e.host) ? "localhost" : e.host,
      port: e.port,
      database: target.database,
      user: target.user,
    })) ?? ""
  );
  const tls = await loadTls(target);
  return Object.freeze({
    endpoints: Object.freeze(endpoints),
    database: target.database,
    user: target.user,
    passwords: Object.freeze(passwords),
    sslmode: target.sslmode,
    tls,
    channelBinding: target.channelBinding,
    requireAuth: target.requireAuth,
    requirePeer: target.requirePeer,
    targetSessionAttrs: target.targetSessionAttrs,
    loadBalanceHosts: target.loadBalanceHosts,
    options: target.options,
    applicationName: target.applicationName,
    connectTimeoutSeconds: target.connectTimeoutSeconds,
    keepaliveSeconds: target.keepaliveSeconds,
    sessionSettings: target.sessionSettings,
    display: describePgTarget({
      ...target,
      hosts: endpoints.map((e) => ({ host: e.host, hostaddr: e.hostaddr, port: e.port })),
    }),
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
 * the TLS failures and the refusals of our own checks (channel binding,
 * require_auth, the authentication order, requirepeer); `null` for any other
 * error.
 */
export function describeRefusal(error: unknown, connection: PgConnection): string | null {
  if (!(error instanceof Error)) return null;
  const code = String((error as { code?: unknown }).code ?? "");
  const first = connection.endpoints[0] as PgEndpoint;
  const { address, port } = error as { address?: unknown; port?: unknown };
  const host = typeof address === "string" ? address : first.host;
  const at = endpointName({
    host,
    hostaddr: null,
    port: typeof port === "number" ? port : first.port,
  });
  if (UNTRUSTED.has(code)) {
    return `the certificate of ${at} is not signed by a trusted CA (${code}); set sslrootcert (or PGSSLROOTCERT) to the CA bundle that signed it`;
  }
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") {
    return `the certificate of ${at} does not name host ${host}; connect with a name the certificate lists, or use sslmode=verify-ca`;
  }
  if (code === "CERT_HAS_EXPIRED" || code === "CERT_NOT_YET_VALID") {
    return `the certificate of ${at} is not valid now (${code})`;
  }
  if (code === "CERT_REVOKED" || code === "UNABLE_TO_GET_CRL" || code === "CRL_HAS_EXPIRED") {
    return `the certificate of ${at} fails the revocation check (${code}): ${
      error.message.replace(/^.*?: /, "")
    }; see sslcrl / sslcrldir`;
  }
  if (code === "SSL_NOT_SUPPORTED") {
    return `${at} does not accept TLS (ssl is off on the server) and sslmode=${connection.sslmode} requires it; turn ssl on there, or use sslmode=prefer`;
  }
  if (code === "CHANNEL_BINDING_REQUIRED" && connection.sslmode === "disable") {
    return "channel_binding=require needs TLS, and sslmode=disable turns it off: use sslmode=require (or verify-full), or channel_binding=prefer";
  }
  if (code === "REQUIREPEER_FAILED") {
    return `${error.message}; nothing was sent`;
  }
  if (code === "AUTH_PROTOCOL_VIOLATION") {
    return `${error.message} (${code}): a man-in-the-middle relaying another session to the server sends this; use sslmode=verify-full so that none can stand in between`;
  }
  if (code === "AUTH_METHOD_REFUSED") {
    return `${
      error.message.replace(/^AUTH_METHOD_REFUSED: /, "")
    }: change require_auth, or the server's authentication method (pg_hba.conf)`;
  }
  if (code === "CHANNEL_BINDING_REQUIRED") {
    return `channel_binding=require, but ${
      error.message.replace(/^.*channel_binding is require, but /, "")
    }: it needs TLS and SCRAM-SHA-256-PLUS (password_encryption=scram-sha-256 on the server); or use channel_binding=prefer`;
  }
  return null;
}
