/**
 * The Postgres pool of a deployment's two schemas, the array and bytea text
 * forms statements send, and how its errors read.
 *
 * @module
 */

import postgres from "postgres";
import {
  describeTlsFailure,
  explainRefusedTls,
  type PgConnection,
  postgresTls,
} from "./connection.ts";
import { DatabaseError } from "../errors.ts";
import type { Schemas } from "./schemas.ts";

/** A postgres.js client. */
export type Sql = postgres.Sql;

/** Options of a connection pool. */
export interface ConnectOptions extends Schemas {
  readonly connection: PgConnection;
  /** Pool size: concurrent transactions plus one for housekeeping. */
  readonly max: number;
}

/**
 * Opens a pool for one deployment's schemas. login-etl's statements name
 * every object with its schema; search_path is the data schema only for the
 * migrations of versions 1 to 5, which created objects where it pointed.
 * Every option is explicit, so postgres.js never falls back to PG* variables
 * of its own (`connection.ts` applied them already, with libpq's rules).
 */
export function connect(options: ConnectOptions): Sql {
  const c = options.connection;
  return postgres({
    host: c.host,
    port: c.port,
    database: c.database,
    user: c.user,
    pass: c.password,
    ssl: postgresTls(c),
    max: options.max,
    connect_timeout: c.connectTimeoutSeconds,
    idle_timeout: 60,
    // Notices such as "relation already exists, skipping" are not ours to print.
    onnotice: () => {},
    connection: { application_name: c.applicationName, search_path: options.schema },
  });
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
    // text full of quotes built rope strings ~25x its size (out of memory at
    // a 128 MB heap for 100 hostile bodies).
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
    const tls = describeTlsFailure(error, connection) ?? await explainRefusedTls(connection);
    throw new DatabaseError(
      "db_connect",
      `Cannot connect to Postgres at ${connection.display}: ${
        tls ??
          `${
            describeDbError(error)
          }; check DATABASE_URL (or the PG* variables) and that the server runs`
      }`,
      { cause: error, transient: tls === null && isTransientDbError(error) },
    );
  }
}
