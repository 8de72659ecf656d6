/**
 * The Postgres connection and login-etl's own tables: created when missing
 * (never altered), the key registry, and ledger pruning.
 *
 * @module
 */

import postgres from "postgres";
import {
  describeTlsFailure,
  explainRefusedTls,
  type PgConnection,
  postgresTls,
} from "./db/connection.ts";
import { DatabaseError, KeyMismatchError } from "./errors.ts";

/** A postgres.js client. */
export type Sql = postgres.Sql;

/** Options of a connection pool. */
export interface ConnectOptions {
  readonly connection: PgConnection;
  readonly schema: string;
  /** Pool size: concurrent transactions plus one for housekeeping. */
  readonly max: number;
}

/**
 * Opens a pool whose sessions resolve unqualified names in `schema`. Every
 * option is explicit, so postgres.js never falls back to PG* variables of
 * its own (`connection.ts` applied them already, with libpq's rules).
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
 * A pool that can be replaced. After a timeout its sockets may be dead
 * without knowing it (a network that drops packets never says so), so the
 * store drops them all and starts over.
 */
export class Database {
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

/** The exact DDL of the target table; the exercise's image already has it. */
export const USER_LOGINS_DDL = `CREATE TABLE IF NOT EXISTS user_logins(
    user_id             varchar(128),
    device_type         varchar(32),
    masked_ip           varchar(256),
    masked_device_id    varchar(256),
    locale              varchar(32),
    app_version         integer,
    create_date         date
)`;

/** login-etl's own tables, in creation order. */
const OWN_TABLES: readonly { readonly name: string; readonly ddl: readonly string[] }[] = [
  { name: "user_logins", ddl: [USER_LOGINS_DDL] },
  {
    // One row per MessageId ever committed: the same transaction writes it and
    // the message's row, so a redelivery finds it and writes nothing.
    name: "login_etl_ledger",
    ddl: [
      `CREATE TABLE IF NOT EXISTS login_etl_ledger (
        message_id   text PRIMARY KEY,
        committed_at timestamptz NOT NULL DEFAULT now()
      )`,
      // committed_at grows with insertion order, so a BRIN index serves the
      // prune at a fraction of a btree's cost per insert.
      `CREATE INDEX IF NOT EXISTS login_etl_ledger_committed_at
        ON login_etl_ledger USING brin (committed_at)`,
    ],
  },
  {
    name: "login_etl_rejects",
    ddl: [
      `CREATE TABLE IF NOT EXISTS login_etl_rejects (
        message_id  text PRIMARY KEY,
        reason      text NOT NULL,
        detail      text NOT NULL,
        masked_body text,
        body_bytes  integer NOT NULL,
        body_hmac   text NOT NULL,
        sent_at     timestamptz NOT NULL,
        rejected_at timestamptz NOT NULL DEFAULT now()
      )`,
    ],
  },
  {
    name: "login_etl_keys",
    ddl: [
      `CREATE TABLE IF NOT EXISTS login_etl_keys (
        key_id       text PRIMARY KEY,
        fingerprint  text NOT NULL,
        first_used   timestamptz NOT NULL DEFAULT now()
      )`,
    ],
  },
  {
    // Raw ip/device_id values, encrypted, for authorised recovery; written
    // only when a vault key is configured. Keyed by mask, insert-once.
    name: "login_etl_vault",
    ddl: [
      `CREATE TABLE IF NOT EXISTS login_etl_vault (
        masked_value text PRIMARY KEY,
        field        text NOT NULL CHECK (field IN ('ip', 'device_id')),
        ciphertext   bytea NOT NULL,
        iv           bytea NOT NULL,
        key_id       text NOT NULL,
        first_seen   timestamptz NOT NULL DEFAULT now()
      )`,
    ],
  },
  {
    // Masks whose vault entry was erased (forget): never vaulted again, so a
    // later login with the same value cannot make the erased rows recoverable.
    name: "login_etl_forgotten",
    ddl: [
      `CREATE TABLE IF NOT EXISTS login_etl_forgotten (
        masked_value text PRIMARY KEY,
        forgotten_at timestamptz NOT NULL DEFAULT now()
      )`,
    ],
  },
  {
    // Every recovery, erasure and re-keying, allowed or not; append-only by grant.
    name: "login_etl_audit",
    ddl: [
      `CREATE TABLE IF NOT EXISTS login_etl_audit (
        id           bigserial PRIMARY KEY,
        at           timestamptz NOT NULL DEFAULT now(),
        actor        text NOT NULL,
        db_user      text NOT NULL DEFAULT current_user,
        action       text NOT NULL,
        masked_value text,
        reason       text,
        outcome      text NOT NULL,
        detail       text
      )`,
    ],
  },
];

/** Every DDL statement, in order; `sql/schema.sql` holds the same for DBAs. */
export const SCHEMA_STATEMENTS: readonly string[] = OWN_TABLES.flatMap((t) => t.ddl);

/** Names of the tables `ensureSchema` manages. */
export const TABLE_NAMES: readonly string[] = OWN_TABLES.map((t) => t.name);

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

/**
 * Creates whichever of our tables are missing, under an advisory lock so
 * that consumers starting together do not race. Existing tables are left as
 * they are, and a role without CREATE works once an owner has created them.
 *
 * @throws {DatabaseError} code `db_connect` or `db_schema`
 */
export async function ensureSchema(
  sql: Sql,
  options: { readonly connection: PgConnection; readonly schema: string },
): Promise<string[]> {
  const created: string[] = [];
  await checkConnection(sql, options.connection);
  try {
    const missing = await sql<{ name: string }[]>`
      SELECT name FROM unnest(${TABLE_NAMES as string[]}::text[]) AS t(name)
      WHERE to_regclass(quote_ident(${options.schema}) || '.' || quote_ident(name)) IS NULL`;
    if (missing.length === 0) return created;
    await sql.begin(async (tx) => {
      // Same lock key in every consumer: "login-etl schema".
      await tx`SELECT pg_advisory_xact_lock(hashtext('login-etl schema'))`;
      if (options.schema !== "public") {
        await tx.unsafe(`CREATE SCHEMA IF NOT EXISTS "${options.schema}"`);
      }
      // Another consumer may have created them while we waited for the lock.
      const stillMissing = await tx<{ name: string }[]>`
        SELECT name FROM unnest(${missing.map((m) => m.name)}::text[]) AS t(name)
        WHERE to_regclass(quote_ident(${options.schema}) || '.' || quote_ident(name)) IS NULL`;
      for (const table of OWN_TABLES) {
        if (!stillMissing.some((m) => m.name === table.name)) continue;
        for (const statement of table.ddl) await tx.unsafe(statement);
        created.push(table.name);
      }
    });
    return created;
  } catch (error) {
    throw new DatabaseError(
      "db_schema",
      `Cannot create tables in schema ${options.schema}: ${
        describeDbError(error)
      }; run once as a role that may create tables, or create them with sql/schema.sql`,
      { cause: error },
    );
  }
}

/**
 * Records the key id with its fingerprint on first use, and refuses a key id
 * recorded with another fingerprint: masks under a different secret would
 * silently stop matching earlier ones.
 *
 * @throws {KeyMismatchError}
 */
export async function registerKey(
  sql: Sql,
  keyId: string,
  fingerprint: string,
): Promise<"new" | "known"> {
  const inserted = await sql`
    INSERT INTO login_etl_keys (key_id, fingerprint) VALUES (${keyId}, ${fingerprint})
    ON CONFLICT (key_id) DO NOTHING RETURNING key_id`;
  if (inserted.length === 1) return "new";
  const [row] = await sql<{ fingerprint: string }[]>`
    SELECT fingerprint FROM login_etl_keys WHERE key_id = ${keyId}`;
  if (row?.fingerprint !== fingerprint) {
    const vault = keyId.startsWith("vault:");
    const id = vault ? keyId.slice("vault:".length) : keyId;
    throw new KeyMismatchError(
      `${
        vault ? "Vault" : "HMAC"
      } key id "${id}" is recorded with a different secret: use the secret that made earlier ${
        vault ? "vault entries" : "masks"
      }, or a new --${vault ? "vault" : "hmac"}-key-id for a new secret`,
    );
  }
  return "known";
}

/** Deletes ledger entries older than `days`, in slices so no lock is held long. */
export async function pruneLedger(sql: Sql, days: number): Promise<number> {
  let total = 0;
  for (;;) {
    const result = await sql`
      DELETE FROM login_etl_ledger WHERE ctid IN (
        SELECT ctid FROM login_etl_ledger
        WHERE committed_at < now() - make_interval(days => ${days})
        LIMIT 10000)`;
    total += result.count;
    if (result.count < 10000) return total;
  }
}
