/**
 * libpq's connection-string grammar, pure: a `postgres://` or `postgresql://`
 * URL or `keyword=value` pairs (values quoted with `'`, `\` escaping), the
 * keywords libpq knows and their environment variables, and the service-file
 * format. What each keyword means is decided in `connection.ts`.
 *
 * Why not a library: pg-connection-string (node-postgres') parses with the
 * WHATWG URL rules (the last `@` ends the user info, `+` is a space) and
 * knows node-postgres' options, not libpq's keywords; postgres.js parses a
 * URL only. libpq's own rules are short enough to follow exactly, and
 * "accepts what libpq accepts, refuses what it refuses" needs exactly them.
 *
 * Messages never echo a value or the string: either may hold a password.
 *
 * @module
 */

import { ConfigError } from "../errors.ts";

/**
 * Every keyword libpq 18 accepts, with its environment variable. The order is
 * libpq's (`PQconninfoOptions`).
 */
export const LIBPQ_KEYWORDS: Readonly<Record<string, string | null>> = Object.freeze({
  service: "PGSERVICE",
  user: "PGUSER",
  password: "PGPASSWORD",
  passfile: "PGPASSFILE",
  channel_binding: "PGCHANNELBINDING",
  connect_timeout: "PGCONNECT_TIMEOUT",
  dbname: "PGDATABASE",
  host: "PGHOST",
  hostaddr: "PGHOSTADDR",
  port: "PGPORT",
  client_encoding: "PGCLIENTENCODING",
  options: "PGOPTIONS",
  application_name: "PGAPPNAME",
  fallback_application_name: null,
  keepalives: null,
  keepalives_idle: null,
  keepalives_interval: null,
  keepalives_count: null,
  tcp_user_timeout: null,
  sslmode: "PGSSLMODE",
  sslnegotiation: "PGSSLNEGOTIATION",
  sslcompression: "PGSSLCOMPRESSION",
  sslcert: "PGSSLCERT",
  sslkey: "PGSSLKEY",
  sslcertmode: "PGSSLCERTMODE",
  sslpassword: null,
  sslrootcert: "PGSSLROOTCERT",
  sslcrl: "PGSSLCRL",
  sslcrldir: "PGSSLCRLDIR",
  sslsni: "PGSSLSNI",
  sslkeylogfile: null,
  requirepeer: "PGREQUIREPEER",
  require_auth: "PGREQUIREAUTH",
  ssl_min_protocol_version: "PGSSLMINPROTOCOLVERSION",
  ssl_max_protocol_version: "PGSSLMAXPROTOCOLVERSION",
  min_protocol_version: "PGMINPROTOCOLVERSION",
  max_protocol_version: "PGMAXPROTOCOLVERSION",
  gssencmode: "PGGSSENCMODE",
  krbsrvname: "PGKRBSRVNAME",
  gsslib: "PGGSSLIB",
  gssdelegation: "PGGSSDELEGATION",
  replication: null,
  target_session_attrs: "PGTARGETSESSIONATTRS",
  load_balance_hosts: "PGLOADBALANCEHOSTS",
  scram_client_key: null,
  scram_server_key: null,
  servicefile: null,
  oauth_issuer: null,
  oauth_client_id: null,
  oauth_client_secret: null,
  oauth_scope: null,
});

/**
 * Variables libpq reads besides the keywords' own: `PGREQUIRESSL` (old
 * spelling of sslmode=require), the service files' places, and the session
 * settings it sends at start-up.
 */
export const LIBPQ_OTHER_ENV = [
  "PGREQUIRESSL",
  "PGSERVICEFILE",
  "PGSYSCONFDIR",
  "PGDATESTYLE",
  "PGTZ",
  "PGGEQO",
] as const;

/** Keyword → value, as given (a value may be empty, which libpq treats as "not set" for most). */
export type Conninfo = Map<string, string>;

function invalid(origin: string, why: string): ConfigError {
  return new ConfigError(`Invalid ${origin}: ${why}`);
}

/** A keyword for a message, only when it looks like one: other text may be a misplaced password. */
function quoted(keyword: string): string {
  return /^[A-Za-z][A-Za-z0-9_]{0,39}$/.test(keyword) ? `"${keyword}"` : "(not shown)";
}

/**
 * Stores `keyword=value` as libpq's `conninfo_storeval` does: `requiressl`
 * is the old spelling of sslmode, any other unknown keyword is refused.
 */
function store(info: Conninfo, keyword: string, value: string, origin: string): void {
  if (keyword === "requiressl") {
    info.set("sslmode", value.startsWith("1") ? "require" : "prefer");
    return;
  }
  if (!Object.hasOwn(LIBPQ_KEYWORDS, keyword)) {
    throw invalid(
      origin,
      `unknown connection parameter ${
        quoted(keyword)
      }; libpq's parameters are listed in docs/operations.md`,
    );
  }
  info.set(keyword, value);
}

/** True when libpq would read `text` as a URL rather than as keyword=value pairs. */
export function isConnectionUrl(text: string): boolean {
  return text.startsWith("postgresql://") || text.startsWith("postgres://");
}

/**
 * Parses a connection string as libpq does: a URL when it starts with
 * `postgres://` or `postgresql://`, else `keyword=value` pairs.
 *
 * @param origin names the setting in messages (`DATABASE_URL`, `--database-url`)
 * @throws {ConfigError} for what libpq refuses, without echoing the string
 */
export function parseConninfo(text: string, origin: string): Conninfo {
  return isConnectionUrl(text) ? parseUrl(text, origin) : parseKeywordValue(text, origin);
}

const isSpace = (c: string | undefined) => c !== undefined && /^[ \t\n\r\f\v]$/.test(c);

/** `host=db port=5432 dbname='my db'`: libpq's `conninfo_parse`. */
function parseKeywordValue(text: string, origin: string): Conninfo {
  const info: Conninfo = new Map();
  let i = 0;
  while (i < text.length) {
    if (isSpace(text[i])) {
      i++;
      continue;
    }
    let keyword = "";
    while (i < text.length && text[i] !== "=" && !isSpace(text[i])) keyword += text[i++];
    while (isSpace(text[i])) i++;
    if (text[i] !== "=") {
      throw invalid(
        origin,
        keyword.includes("://")
          ? "must be a URL starting with postgres:// or postgresql://, or keyword=value pairs"
          : 'a word without "=": use keyword=value pairs like host=db port=5432, or a postgres:// URL',
      );
    }
    i++;
    while (isSpace(text[i])) i++;
    let value = "";
    if (text[i] === "'") {
      i++;
      for (;;) {
        if (i >= text.length) throw invalid(origin, "unterminated quoted string");
        if (text[i] === "\\") {
          i++;
          if (i < text.length) value += text[i++];
          continue;
        }
        if (text[i] === "'") {
          i++;
          break;
        }
        value += text[i++];
      }
    } else {
      while (i < text.length && !isSpace(text[i])) {
        if (text[i] === "\\") {
          i++;
          if (i < text.length) value += text[i++];
        } else {
          value += text[i++];
        }
      }
    }
    store(info, keyword, value, origin);
  }
  return info;
}

/**
 * libpq's `conninfo_uri_decode`: `%XX` only (a `+` stays a plus), spaces
 * allowed only at either end, `%00` refused.
 */
function decode(text: string, origin: string): string {
  const trimmed = text.replace(/^ +| +$/g, "");
  if (trimmed.includes(" ")) {
    throw invalid(origin, "unexpected space; write a space as %20");
  }
  const bytes: number[] = [];
  const encoder = new TextEncoder();
  for (let i = 0; i < trimmed.length; i++) {
    const c = trimmed[i] as string;
    if (c !== "%") {
      bytes.push(...encoder.encode(c));
      continue;
    }
    const hex = trimmed.slice(i + 1, i + 3);
    if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw invalid(origin, "bad percent-encoding");
    const byte = parseInt(hex, 16);
    if (byte === 0) throw invalid(origin, "%00 is not allowed in a connection URL");
    bytes.push(byte);
    i += 2;
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

/** The fix for a raw "@" found past the user info. */
const ENCODE_AT = "percent-encode @ in the user or password as %40";

/**
 * Refuses a URL host no server has, without echoing it: split at the first
 * `@` as libpq does, a password holding `@` puts its tail in the host, and the
 * resolver's "ENOTFOUND tail@host" would print it.
 */
function checkHost(raw: string, bracketed: boolean, origin: string): void {
  if (raw.includes("@")) throw invalid(origin, `a host holds "@"; ${ENCODE_AT}`);
  const host = raw.includes("%") ? decode(raw, origin) : raw;
  // A socket directory (%2F-encoded) may hold anything a path may.
  if (host === "" || host.startsWith("/")) return;
  const fits = bracketed
    ? /^[0-9A-Fa-f:.]+(%[\w.-]+)?$/.test(host)
    : /^[\p{L}\p{N}._-]+$/u.test(host);
  if (!fits) {
    throw invalid(
      origin,
      bracketed
        ? "the address in [ ] is not an IPv6 address"
        : "a host name holds a character no host name has; percent-encode special characters in the user or password (@ as %40, / as %2F)",
    );
  }
}

/**
 * `postgres://user:password@host1:5432,host2:5433/db?key=value`: libpq's
 * `conninfo_uri_parse_options`. Unlike a WHATWG URL, the first `@` ends the
 * user info, hosts are a comma-separated list, and each part is decoded on
 * its own.
 */
function parseUrl(text: string, origin: string): Conninfo {
  const info: Conninfo = new Map();
  let rest = text.slice(text.indexOf("://") + 3);
  const at = rest.search(/[@/]/);
  if (at !== -1 && rest[at] === "@") {
    const userinfo = rest.slice(0, at);
    const colon = userinfo.indexOf(":");
    const user = colon === -1 ? userinfo : userinfo.slice(0, colon);
    if (user !== "") store(info, "user", decode(user, origin), origin);
    if (colon !== -1) {
      const password = userinfo.slice(colon + 1);
      if (password !== "") store(info, "password", decode(password, origin), origin);
    }
    rest = rest.slice(at + 1);
  }
  const hosts: string[] = [];
  const ports: string[] = [];
  let terminator = "";
  for (;;) {
    let host: string;
    const bracketed = rest.startsWith("[");
    if (bracketed) {
      const close = rest.indexOf("]");
      if (close === -1) throw invalid(origin, 'missing "]" after an IPv6 address');
      host = rest.slice(1, close);
      if (host === "") throw invalid(origin, "empty IPv6 address");
      rest = rest.slice(close + 1);
      if (rest !== "" && !/^[:/?,]/.test(rest)) {
        throw invalid(origin, 'unexpected character after an IPv6 address (expected ":" or "/")');
      }
    } else {
      const end = rest.search(/[:/?,]/);
      host = end === -1 ? rest : rest.slice(0, end);
      rest = end === -1 ? "" : rest.slice(end);
    }
    checkHost(host, bracketed, origin);
    hosts.push(host);
    terminator = rest[0] ?? "";
    let port = "";
    if (terminator === ":") {
      const end = rest.search(/[/?,]/);
      port = end === -1 ? rest.slice(1) : rest.slice(1, end);
      rest = end === -1 ? "" : rest.slice(end);
      terminator = rest[0] ?? "";
    }
    if (port.includes("@")) throw invalid(origin, `a port holds "@"; ${ENCODE_AT}`);
    ports.push(port);
    if (terminator !== ",") break;
    rest = rest.slice(1);
  }
  // As libpq: the joined lists are decoded whole, and only stored when not empty.
  const hostList = hosts.join(",");
  const portList = ports.join(",");
  if (hostList !== "") store(info, "host", decode(hostList, origin), origin);
  if (portList !== "") store(info, "port", decode(portList, origin), origin);
  if (terminator === "/") {
    const end = rest.indexOf("?");
    const dbname = end === -1 ? rest.slice(1) : rest.slice(1, end);
    rest = end === -1 ? "" : rest.slice(end);
    terminator = rest[0] ?? "";
    // A raw "@" there is a password's "/" that ended the host part early.
    if (dbname.includes("@")) {
      throw invalid(origin, `the database name holds "@"; ${ENCODE_AT}, and / as %2F`);
    }
    // An empty dbname is left unset, so PGDATABASE still applies (libpq).
    if (dbname !== "") store(info, "dbname", decode(dbname, origin), origin);
  }
  if (terminator === "?") {
    const pairs = rest.slice(1).split("&");
    // A trailing "&" (or a bare "?") ends the list; an empty pair elsewhere is refused.
    if (pairs.at(-1) === "") pairs.pop();
    for (const pair of pairs) {
      const equals = pair.indexOf("=");
      if (equals === -1) {
        throw invalid(origin, "a URL query parameter lacks its = and value");
      }
      if (pair.indexOf("=", equals + 1) !== -1) {
        throw invalid(origin, 'a URL query parameter has a second "="; write it as %3D');
      }
      const keyword = decode(pair.slice(0, equals), origin);
      const value = decode(pair.slice(equals + 1), origin);
      // libpq: JDBC's ssl=true means sslmode=require; any other ssl value is unknown.
      if (keyword === "ssl" && value === "true") store(info, "sslmode", "require", origin);
      else store(info, keyword, value, origin);
    }
  }
  return info;
}

/**
 * The `[service]` section of a pg_service.conf file, as libpq reads it:
 * `keyword=value` lines (no quoting; only whole-line whitespace trimmed),
 * `#` comments, and the first section of that name only. `null` when the
 * file has no such section.
 *
 * @throws {ConfigError} for what libpq refuses: a line without `=`, an
 *   unknown keyword, a nested `service`, a line of 1023 bytes or more
 */
export function parseServiceFile(text: string, service: string, path: string): Conninfo | null {
  let found: Conninfo | null = null;
  const lines = text.split("\n");
  for (let n = 0; n < lines.length; n++) {
    const raw = lines[n] as string;
    const where = `service file "${path}", line ${n + 1}`;
    // libpq reads lines into a 1024-byte buffer and refuses longer ones.
    if (new TextEncoder().encode(raw).length >= 1023) {
      throw new ConfigError(`Line ${n + 1} too long in service file "${path}"`);
    }
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    if (line.startsWith("[")) {
      if (found !== null) break;
      if (line.startsWith(`[${service}]`)) found = new Map();
      continue;
    }
    if (found === null) continue;
    const equals = line.indexOf("=");
    if (equals === -1) throw new ConfigError(`Syntax error in ${where}: expected keyword=value`);
    const keyword = line.slice(0, equals);
    if (keyword === "service" || keyword === "servicefile") {
      throw new ConfigError(`Nested ${keyword} in ${where}: not supported (as in libpq)`);
    }
    if (!Object.hasOwn(LIBPQ_KEYWORDS, keyword)) {
      throw new ConfigError(
        `Syntax error in ${where}: unknown connection parameter ${quoted(keyword)}`,
      );
    }
    // The first value wins, as libpq does not override a value already set.
    if (!found.has(keyword)) found.set(keyword, line.slice(equals + 1));
  }
  return found;
}
