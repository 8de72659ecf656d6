/**
 * How to reach Postgres, with libpq's rules. A connection
 * string (`--database-url`, `DATABASE_URL`: a URL or keyword=value pairs, any
 * parameter libpq knows) wins; a service (`service=`, `PGSERVICE`) fills in
 * what it leaves out, then the `PG*` variables, then libpq's defaults;
 * `~/.pgpass` (or `passfile`) supplies a missing password; `sslmode`,
 * `sslrootcert` and the client-certificate files keep libpq's meanings. Only
 * when neither a string nor any connection variable is set does the
 * exercise's default URL apply.
 *
 * Why not hand the string to postgres.js: it reads a URL only, treats some
 * parameters its own way and others not at all, and reads `PG*` from the
 * process environment behind our back. So the rules live here (the grammar
 * in `config/conninfo.ts`, the target's resolution in `config/pg_target.ts`,
 * TLS in `socket.ts`), postgres.js gets explicit options,
 * and what neither it nor the protocol can honour is named in one warning
 * line at start instead of being dropped in silence.
 *
 * @module
 */

import { createPrivateKey } from "node:crypto";
import { isValidEntry, match, parseLine } from "pgpass/lib/helper.js";
import { type Conninfo, parseServiceFile } from "../config/conninfo.ts";
import { type PgService, type PgTarget, resolveWithService } from "../config/pg_target.ts";
import { ConfigError, whyUnreadable } from "../errors.ts";
import { parseCrls } from "./crl.ts";
import { probedSocketFailure } from "./peer.ts";
import { endpointName, isSocketDir, type PgEndpoint, type PgTls } from "./socket.ts";
/** The target for a log line: `postgres://user@host:5432/db (sslmode=prefer, from PG* variables)`. */
export function describePgTarget(target: PgTarget): string {
  const hosts = target.hosts.map((h) =>
    h.host === null ? `local socket or localhost:${h.port}` : isSocketDir(h.host)
      // libpq's URL spelling of a socket directory, so the line can be pasted back.
      ? `${encodeURIComponent(h.host)}:${h.port}`
      : endpointName({ host: h.host, hostaddr: null, port: h.port })
  );
  const via = target.service === null ? "" : `, service ${target.service.name}`;
  return `postgres://${encodeURIComponent(target.user)}@${hosts.join(",")}/${
    encodeURIComponent(target.database)
  } (sslmode=${target.sslmode}${via}, from ${target.source})`;
}

/**
 * Everything needed to open connections, files already read. Plain data for
 * `postMessage`; holds the password and key, so never log it.
 */
export interface PgConnection extends
  Pick<
    PgTarget,
    | "database"
    | "user"
    | "sslmode"
    | "channelBinding"
    | "requireAuth"
    | "requirePeer"
    | "targetSessionAttrs"
    | "loadBalanceHosts"
    | "options"
    | "applicationName"
    | "connectTimeoutSeconds"
    | "keepaliveSeconds"
    | "sessionSettings"
  > {
  /** Where to connect, in order (shuffled per pool with load_balance_hosts=random). */
  readonly endpoints: readonly PgEndpoint[];
  /**
   * The password for each endpoint, in the same order ("" for none): the
   * password file is looked up per host and port, as libpq does.
   */
  readonly passwords: readonly string[];
  readonly tls: PgTls;
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
 * The private key, decrypted with sslpassword when it is encrypted. As libpq,
 * a key file others may read is refused.
 */
async function loadKey(path: string, password: string | null): Promise<string> {
  try {
    const info = await Deno.stat(path);
    const mode = info.mode ?? 0;
    // libpq: 0600 or less, or 0640 or less when owned by root.
    const tooOpen = info.uid === 0 ? (mode & 0o037) !== 0 : (mode & 0o077) !== 0;
    if (Deno.build.os !== "windows" && tooOpen) {
      throw new ConfigError(
        `sslkey "${path}" is readable by others, which libpq refuses: run chmod 0600 ${path}`,
      );
    }
  } catch (error) {
    if (error instanceof ConfigError) throw error;
  }
  const pem = await readSetting(path, "sslkey");
  const encrypted = /ENCRYPTED/.test(pem);
  if (encrypted && (password === null || password === "")) {
    throw new ConfigError(
      `sslkey "${path}" is encrypted: give its passphrase as sslpassword in the connection string`,
    );
  }
  try {
    return createPrivateKey({ key: pem, ...(encrypted ? { passphrase: password ?? "" } : {}) })
      .export({ type: "pkcs8", format: "pem" }).toString();
  } catch (error) {
    throw new ConfigError(
      encrypted
        ? `sslpassword does not decrypt sslkey "${path}": check the passphrase`
        : `sslkey "${path}" is not a private key in PEM format`,
      { cause: error },
    );
  }
}

/** A CRL file's text, checked to hold CRLs (libpq refuses a file it cannot load). */
async function readCrl(path: string, what: string): Promise<string> {
  const text = await readSetting(path, what);
  try {
    await parseCrls(text);
  } catch (error) {
    throw new ConfigError(
      `Cannot use ${what} "${path}": not a PEM certificate revocation list (${
        error instanceof Error ? error.message : String(error)
      })`,
      { cause: error },
    );
  }
  return text;
}

/**
 * CRLs from sslcrl and the files in sslcrldir (libpq looks them up there by
 * hash; we read every file that holds one), else ~/.postgresql/root.crl when
 * it exists. Only when the certificate is verified, as libpq.
 */
async function loadCrls(target: PgTarget, verifying: boolean): Promise<string[] | undefined> {
  if (!verifying) return undefined;
  const crls: string[] = [];
  if (target.sslcrl !== null) crls.push(await readCrl(target.sslcrl, "sslcrl"));
  if (target.sslcrldir !== null) {
    let names: string[];
    try {
      names = [];
      for await (const entry of Deno.readDir(target.sslcrldir)) names.push(entry.name);
    } catch (error) {
      throw new ConfigError(
        `Cannot read sslcrldir "${target.sslcrldir}": ${whyUnreadable(error)}`,
        { cause: error },
      );
    }
    for (const name of names.sort()) {
      const text = await Deno.readTextFile(`${target.sslcrldir}/${name}`).catch(() => "");
      if (text.includes("-----BEGIN X509 CRL-----")) {
        crls.push(await readCrl(`${target.sslcrldir}/${name}`, "a CRL in sslcrldir"));
      }
    }
  }
  const defaultCrl = target.userDir === null ? null : `${target.userDir}/root.crl`;
  if (
    target.sslcrl === null && target.sslcrldir === null && defaultCrl !== null &&
    await exists(defaultCrl)
  ) crls.push(await readCrl(defaultCrl, "the default CRL"));
  return crls.length === 0 ? undefined : crls;
}

async function loadTls(target: PgTarget): Promise<PgTls> {
  const inUserDir = (name: string) => target.userDir === null ? null : `${target.userDir}/${name}`;
  let rootcert = target.sslrootcert;
  const defaultRoot = inUserDir("root.crt");
  // libpq uses ~/.postgresql/root.crt when it exists: to verify, and under require to check the chain.
  if (
    rootcert === null && ["require", "verify-ca", "verify-full"].includes(target.sslmode) &&
    defaultRoot !== null && await exists(defaultRoot)
  ) rootcert = defaultRoot;
  if (rootcert === null && target.sslmode === "verify-ca") {
    throw new ConfigError(
      `sslmode=verify-ca needs sslrootcert (or PGSSLROOTCERT, or ${
        defaultRoot ?? "~/.postgresql/root.crt"
      }): the CA that signed the server's certificate; or use sslmode=verify-full`,
    );
  }
  // "system" is libpq's name for the runtime's trusted roots.
  const ca = rootcert === null || rootcert === "system"
    ? undefined
    : await readSetting(rootcert, "sslrootcert");
  let cert: string | undefined;
  let key: string | undefined;
  if (target.sslcertmode !== "disable") {
    const defaultCert = inUserDir("postgresql.crt");
    const certPath = target.sslcert ??
      (defaultCert !== null && await exists(defaultCert) ? defaultCert : null);
    if (certPath !== null) {
      cert = await readSetting(certPath, "sslcert");
      const keyPath = target.sslkey ?? inUserDir("postgresql.key");
      if (keyPath === null || !await exists(keyPath)) {
        throw new ConfigError(
          `sslcert "${certPath}" has no private key: set sslkey (or PGSSLKEY) to its key file`,
        );
      }
      key = await loadKey(keyPath, target.sslpassword);
    }
  }
  const verifying = target.sslmode === "verify-ca" || target.sslmode === "verify-full" ||
    (target.sslmode === "require" && ca !== undefined);
  const crl = await loadCrls(target, verifying);
  return Object.freeze({
    sslmode: target.sslmode,
    negotiation: target.sslnegotiation,
    ...(crl === undefined ? {} : { crl: Object.freeze(crl) }),
    ...(ca === undefined ? {} : { ca }),
    ...(cert === undefined ? {} : { cert }),
    ...(key === undefined ? {} : { key }),
    minVersion: target.sslMinProtocolVersion,
    ...(target.sslMaxProtocolVersion === null ? {} : { maxVersion: target.sslMaxProtocolVersion }),
    sni: target.sslsni,
  });
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
  if (target.service !== null) {
    target = resolveWithService(target, await readService(target.service));
  }
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
