/**
 * The postgres.js pool: every option explicit (libpq's rules applied by
 * connection.ts, sockets opened by socket.ts, the server's authentication
 * requests checked by auth_guard.ts), sessions that search pg_catalog alone,
 * and a `Database` that drops and reopens it after a timeout. Also the array
 * and bytea text forms statements send, which errors are transient, and the
 * one line a failed first connection reads as.
 *
 * @module
 */

import { AsyncLocalStorage } from "node:async_hooks";
import postgres from "postgres";
import { describeRefusal, type PgConnection } from "./connection.ts";
import { isSocketDir, openSocket, type PgEndpoint } from "./socket.ts";
import { guardAuthentication } from "./auth_guard.ts";
import { DatabaseError } from "../errors.ts";
import type { Schemas } from "./schemas.ts";

/** A postgres.js client. */
export type Sql = postgres.Sql;

/**
 * The `search_path` of every login-etl session outside the migrations of
 * versions 1 to 6: pg_catalog alone (search_path.ts says why). A temporary
 * schema is never searched for functions or operators, and last for
 * tables, which every statement names with their schema anyway.
 */
export const RUNTIME_SEARCH_PATH = "pg_catalog, pg_temp";

/** Options of a connection pool. */
export interface ConnectOptions extends Schemas {
  readonly connection: PgConnection;
  /** Pool size: concurrent transactions plus one for housekeeping. */
  readonly max: number;
}

/** Every method postgres.js knows: "no requirement" said explicitly (see `connect`). */
const ANY_AUTH = "password,md5,gss,sspi,scram-sha-256,none";

/** require_auth for postgres.js, which does not know libpq 18's oauth (we cannot do it anyway). */
function requireAuthFor(value: string | null): string {
  if (value === null) return ANY_AUTH;
  const methods = value.split(",").filter((m) => m.replace(/^!/, "") !== "oauth");
  if (methods.length > 0) return methods.join(",");
  // Only oauth allowed: nothing postgres.js can do may pass.
  return ANY_AUTH.split(",").map((m) => `!${m}`).join(",");
}

/** postgres.js's default wait before reconnecting, given explicitly (else PGBACKOFF would count). */
function backoff(retries: number): number {
  return (0.5 + Math.random() / 2) * Math.min(3 ** retries / 100, 20);
}

/**
 * Opens a pool for one deployment's schemas. login-etl's statements name
 * every table with its schema, and sessions search pg_catalog alone
 * (`RUNTIME_SEARCH_PATH`); `migrate` sets search_path to the data schema
 * for the migrations of versions 1 to 6, which created objects where it
 * pointed, and back.
 * Every option is explicit, so postgres.js never falls back to PG* variables
 * of its own (it reads PG<OPTION> for any option not given; `connection.ts`
 * applied libpq's variables already); sockets come from `openSocket`, which
 * applies libpq's TLS rules per host.
 */
export function connect(options: ConnectOptions): Sql {
  const c = options.connection;
  const endpoints = c.loadBalanceHosts ? shuffled(c.endpoints) : c.endpoints;
  // postgres.js treats a host with a slash as a socket path and then tries no
  // other host; several hosts with a socket directory among them go by label.
  const label = (e: PgEndpoint) =>
    endpoints.length > 1 && isSocketDir(e.host) ? encodeURIComponent(e.host) : e.host;
  const byLabel = new Map(endpoints.map((e) => [`${label(e)}\0${e.port}`, e]));
  const timeoutMs = c.connectTimeoutSeconds * 1000;
  const policy = { channelBinding: c.channelBinding, requireAuth: c.requireAuth };
  // postgres.js asks for the password without saying for which host, and a
  // pool's attempts run concurrently; so each attempt's messages reach it in
  // an async context naming its endpoint, which the password is looked up by.
  const passwordOf = new Map(c.endpoints.map((e, i) => [e, c.passwords[i] ?? ""]));
  const attempt = new AsyncLocalStorage<PgEndpoint>();
  const shared = new Set(c.passwords).size === 1 ? c.passwords[0] ?? "" : "";
  return postgres({
    host: endpoints.map(label),
    port: endpoints.map((e) => e.port),
    database: c.database,
    user: c.user,
    // A function, so postgres.js never looks in a password file of its own.
    // Outside an attempt's context, no host's password unless all share one.
    pass: () => {
      const endpoint = attempt.getStore();
      return endpoint === undefined ? shared : passwordOf.get(endpoint) ?? "";
    },
    ssl: false, // TLS is negotiated in openSocket
    sslnegotiation: null,
    socket: async (_options, host, port) => {
      const endpoint = host === null
        ? endpoints[0] // one socket directory: postgres.js passes no host
        : byLabel.get(`${host}\0${port}`);
      if (endpoint === undefined) throw new Error(`No endpoint for ${host}:${port}`);
      const socket = await openSocket(endpoint, c.tls, {
        timeoutMs,
        requirePeer: c.requirePeer,
      });
      // postgres.js's own checks miss a SCRAM challenge the server never
      // started (see auth_guard.ts): the server's requests are checked first.
      const guarded = guardAuthentication(socket, policy, {
        endpoint,
        within: (deliver) => attempt.run(endpoint, deliver),
      });
      // A net.Socket is what SocketLike describes; only its overloaded end() is typed wider.
      return guarded as unknown as postgres.SocketLike;
    },
    channel_binding: c.channelBinding,
    require_auth: requireAuthFor(c.requireAuth),
    // null is "any"; postgres.js then reads PGTARGETSESSIONATTRS, which
    // connection.ts has already folded in, so only an explicit "any" over a
    // variable saying otherwise would differ.
    target_session_attrs: c.targetSessionAttrs === "any" ? null : c.targetSessionAttrs,
    max: options.max,
    min: 0,
    connect_timeout: c.connectTimeoutSeconds,
    idle_timeout: 60,
    queue_timeout: 0,
    query_timeout: 0,
    cancel_timeout: 5,
    // postgres.js's default, per connection (30-60 min), so a pool's connections do not retire together.
    max_lifetime: () => 60 * (30 + Math.random() * 30),
    max_pipeline: 100,
    backoff,
    keep_alive: c.keepaliveSeconds,
    prepare: true,
    fetch_types: true,
    debug: false,
    // Notices such as "relation already exists, skipping" are not ours to print.
    onnotice: () => {},
    connection: {
      ...c.sessionSettings,
      ...(c.options === null ? {} : { options: c.options }),
      application_name: c.applicationName,
      // After options: ours wins over a -c search_path there. pg_catalog
      // alone, so that no function or operator planted in a schema someone
      // else may create in stands in for a built-in (search_path.ts).
      search_path: RUNTIME_SEARCH_PATH,
    },
  });
}

/** A copy in random order (Fisher-Yates), for load_balance_hosts=random. */
function shuffled<T>(items: readonly T[]): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [copy[i], copy[j]] = [copy[j] as T, copy[i] as T];
  }
  return copy;
}

/**
 * A pool (or a transaction of one) with the schemas of the deployment it
 * works on: what every function reading or writing login-etl's tables takes.
 * A `Database` is one.
 */
export interface Deployment {
  readonly sql: Sql;
  readonly schemas: Schemas;
}

/**
 * A pool that can be replaced. After a timeout its sockets may be dead
 * without knowing it (a network that drops packets never says so), so the
 * store drops them all and starts over.
 */
export class Database implements Deployment {
  #sql: Sql;
  readonly #options: ConnectOptions;

  constructor(options: ConnectOptions) {
    this.#options = options;
    this.#sql = connect(options);
  }

  /** The current pool. */
  get sql(): Sql {
    return this.#sql;
  }

  /** The schemas its statements name. */
  get schemas(): Schemas {
    return { schema: this.#options.schema, stateSchema: this.#options.stateSchema };
  }

  /** Abandons every connection at once and opens a fresh pool. */
  reset(): void {
    const old = this.#sql;
    this.#sql = connect(this.#options);
    old.end({ timeout: 0 }).catch(() => {});
  }

  /** Closes the pool, waiting up to five seconds for queries in flight. */
  async end(): Promise<void> {
    await this.#sql.end({ timeout: 5 });
  }

  /** `await using` ends the pool. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.end();
  }
}

/**
 * An array literal in Postgres' text format: `{"a","b\"c",NULL}`. We send
 * arrays as text and cast them in SQL rather than let postgres.js serialise
 * them: it needs each pool to have fetched the server's array types first,
 * and a write racing that lookup on a fresh pool (after a reset, say) sends
 * `a,b,c` and fails with "malformed array literal".
 */
export function pgArray(values: readonly (string | number | null)[]): string {
  const parts = new Array<string>(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    // One regexp pass and one join give flat strings; chained replaceAll on a
    // text full of quotes built rope strings many times its size, enough to
    // exhaust the binary's heap on a batch of hostile bodies
    // (docs/performance.md#costs-kept-out-of-the-code).
    parts[i] = v === null || v === undefined
      ? "NULL"
      : typeof v === "number"
      ? String(v)
      : `"${v.replace(/["\\]/g, "\\$&")}"`;
  }
  return `{${parts.join(",")}}`;
}

/** Bytes in bytea's hex input form (`\\x…`), for an element of `pgArray`. */
export function byteaHex(bytes: Uint8Array): string {
  return `\\x${bytes.toHex()}`;
}

const PG_CONNECTION_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "EHOSTUNREACH",
  "CONNECT_TIMEOUT",
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "WRITE_TIMEOUT",
  // openSocket: a server or proxy closing a new connection without a word.
  "SERVER_CLOSED",
  // A Unix socket not there (yet): the server, or Cloud SQL's Auth Proxy, starting.
  "ENOENT",
]);

/**
 * True for failures that a later attempt may not meet: the server unreachable
 * or restarting, a killed backend, a serialization failure or deadlock, a
 * resource limit. False for errors a retry would repeat (bad SQL, a privilege).
 */
export function isTransientDbError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== "string") {
    return error instanceof Error && /connect|socket|closed/i.test(error.message);
  }
  if (PG_CONNECTION_CODES.has(code)) return true;
  // 08 connection exception, 40 transaction rollback, 53 insufficient resources,
  // 57P01-57P05 admin shutdown / crash / cannot connect now / idle timeout.
  return /^(08|40|53)/.test(code) || /^57P0[1-5]$/.test(code);
}

/** True for Postgres' "permission denied" (42501): a grant fixes it. */
export function isPermissionDenied(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === "42501";
}

/**
 * Short description of a postgres.js error: code and message, never
 * parameters. Postgres quotes offending values in some messages; the message
 * is cut so a bad batch cannot flood a log line.
 */
export function describeDbError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    const message = error.message.length > 200 ? `${error.message.slice(0, 200)}…` : error.message;
    return typeof code === "string" && !message.includes(code) ? `${message} (${code})` : message;
  }
  return String(error);
}

/**
 * Opens one connection (a `SELECT 1`), so that an unreachable server, bad
 * credentials or a certificate that fails verification is one clear line.
 *
 * @throws {DatabaseError} code `db_connect`
 */
export async function checkConnection(sql: Sql, connection: PgConnection): Promise<void> {
  try {
    await sql`SELECT 1`;
  } catch (error) {
    const tls = describeRefusal(error, connection);
    throw new DatabaseError(
      "db_connect",
      `Cannot connect to Postgres at ${connection.display}: ${
        tls ?? describeConnectFailure(error, connection)
      }`,
      { cause: error, transient: tls === null && isTransientDbError(error) },
    );
  }
}

/** Why a first connection failed, for the cases whose own words mislead. */
function describeConnectFailure(error: unknown, connection: PgConnection): string {
  const code = (error as { code?: unknown } | null)?.code;
  // The server asked for a password and we had none to give: postgres.js
  // sends an empty one, which the server calls a failed authentication.
  if (code === "28P01" && connection.passwords.every((p) => p === "")) {
    return `the server asks user ${connection.user} for a password and none was given: put it in DATABASE_URL, PGPASSWORD or the password file (~/.pgpass, or PGPASSFILE)`;
  }
  // postgres.js's own timer: the socket opened, the server never answered the start-up.
  if (code === "CONNECT_TIMEOUT" && !(error instanceof Error && /^no answer/.test(error.message))) {
    return `the server took the connection but did not answer within connect_timeout (${connection.connectTimeoutSeconds} s) (CONNECT_TIMEOUT); is that port a Postgres server, and is it overloaded?`;
  }
  return `${
    describeDbError(error)
  }; check DATABASE_URL (or the PG* variables) and that the server runs`;
}

/**
 * Resolves when the database answers a `SELECT 1`, else rejects with what
 * `describeDbError` says (never parameters): the database check of /readyz.
 */
export async function ping(db: Deployment): Promise<void> {
  try {
    await db.sql`SELECT 1`;
  } catch (error) {
    throw new Error(describeDbError(error));
  }
}
