/**
 * `check`: a preflight for another command (`--for`, default drain), like
 * `vector validate`. One line per check: the keys, the queue (read with
 * GetQueueAttributes, which touches no message), Postgres and its TLS, the
 * schema version, who else may create in the schemas login-etl's SQL
 * searches, the privileges the command needs, and the key ids against their
 * recorded fingerprints. Nothing is written. Services are given a
 * few seconds each and checked side by side, so an unreachable one answers
 * within 10 s.
 *
 * @module
 */

import type { CheckConfig } from "../config/resolve.ts";
import { loadPgConnection, type PgConnection } from "../db/connection.ts";
import { listHmacKeys, requireHmacKeys } from "../db/keys.ts";
import { LATEST_VERSION } from "../db/migrations.ts";
import {
  checkConnection,
  Database,
  type Deployment,
  describeDbError,
  type Sql,
} from "../db/pool.ts";
import { type SchemaState, schemaState } from "../db/schema.ts";
import { ident, type Schemas } from "../db/schemas.ts";
import { describeUntrusted, findUntrusted } from "../db/search_path.ts";
import { ChecksFailedError, formatError, KeyMissingError } from "../errors.ts";
import { escapeControl, quoteText } from "../log.ts";
import { Masker } from "../mask.ts";
import type { Telemetry } from "../ops/telemetry.ts";
import {
  assertSeparateKeys,
  type KeySet,
  loadKeySet,
  loadVaultKeySet,
  readableKeyIds,
  type VaultKeySet,
} from "../pii/keyring.ts";
import { FOREIGN_CAP_PER_KEY, FOREIGN_MAX_AGE_HOURS } from "../pii/merge.ts";
import { READING_KEYS, VaultCipher } from "../pii/vault.ts";
import {
  isQueueMissing,
  queueNameOf,
  readQueueAttributes,
  readQueueProtection,
} from "../sqs/admin.ts";
import { createSqsClient, isAwsHost } from "../sqs/client.ts";
import { type CommandIo, printResult } from "./_io.ts";

/** How long one service may take to answer a check. */
const SERVICE_TIMEOUT_MS = 5000;

/** One line of the preflight. */
export interface CheckResult {
  readonly check: string;
  readonly status: "ok" | "fail" | "skip";
  readonly detail: string;
}

type Target = CheckConfig["for"];

/** What each command needs: which services, which keys. */
const NEEDS: Readonly<
  Record<Target, {
    readonly queue: boolean;
    readonly database: boolean;
    readonly hmac: "required" | "optional" | "unused";
    readonly vault: "required" | "optional" | "unused";
  }>
> = {
  drain: { queue: true, database: true, hmac: "required", vault: "optional" },
  run: { queue: true, database: true, hmac: "required", vault: "optional" },
  seed: { queue: true, database: false, hmac: "unused", vault: "unused" },
  recover: { queue: false, database: true, hmac: "required", vault: "required" },
  forget: { queue: false, database: true, hmac: "optional", vault: "unused" },
  rekey: { queue: false, database: true, hmac: "required", vault: "required" },
  "rekey-vault": { queue: false, database: true, hmac: "unused", vault: "required" },
  "vault-merge": { queue: false, database: true, hmac: "required", vault: "required" },
  migrate: { queue: false, database: true, hmac: "unused", vault: "unused" },
  report: { queue: false, database: true, hmac: "unused", vault: "unused" },
};

/** Which of a deployment's two schemas an object is in. */
type Home = "data" | "state";

/** A privilege as Postgres' has_*_privilege functions take it. */
type Privilege =
  | { readonly on: "table"; readonly in: Home; readonly name: string; readonly privilege: string }
  | {
    readonly on: "column";
    readonly in: Home;
    readonly name: string;
    readonly column: string;
    readonly privilege: string;
  }
  | { readonly on: "function"; readonly in: Home; readonly name: string };

const table = (home: Home, name: string, ...privileges: string[]): Privilege[] =>
  privileges.map((privilege) => ({ on: "table", in: home, name, privilege }));
const columns = (name: string, privilege: string, ...cols: string[]): Privilege[] =>
  cols.map((column) => ({ on: "column", in: "state", name, column, privilege }));
const fn = (name: string): Privilege => ({ on: "function", in: "state", name });

const CONSUMER: readonly Privilege[] = [
  ...table("data", "user_logins", "INSERT"),
  ...table("state", "login_etl_ledger", "SELECT", "INSERT"),
  ...table("state", "login_etl_rejects", "INSERT", "DELETE"),
  ...columns("login_etl_rejects", "SELECT", "message_id", "reason", "detail", "rejected_at"),
  ...table("state", "login_etl_keys", "SELECT"),
  fn("login_etl_register_key(text,text)"),
  fn("login_etl_ledger_maintain(integer,integer)"),
];

/** A merge of the vault inbox: recover's for its masks, vault-merge's (the owner) for all. */
const INBOX: readonly Privilege[] = [
  fn("login_etl_inbox_claim(text[],bigint,integer,text,text)"),
  fn("login_etl_inbox_claimed(bigint)"),
  fn("login_etl_inbox_settle(bigint,bigint[],bigint[],bigint[],text[])"),
  fn("login_etl_hmac_keys_needed()"),
];

/** What each command does in the database, as sql/roles.sql grants it. */
function privilegesFor(target: Target, vault: boolean): readonly Privilege[] {
  switch (target) {
    case "drain":
    case "run":
      return vault
        ? [...CONSUMER, fn("login_etl_vault_put(text[],text[],bytea[],bytea[],text[])")]
        : CONSUMER;
    case "recover":
      return [
        fn("login_etl_release_request(text[],text,text)"),
        fn("login_etl_release(bigint)"),
        fn("login_etl_audit_note(text,text[],text,text,text,text)"),
        fn("login_etl_audit_list(bigint,integer)"),
        fn("login_etl_vault_drop_erased(text[],text[],text,text)"),
        ...INBOX,
      ];
    case "vault-merge":
      return INBOX;
    case "forget":
      return [
        fn("login_etl_forget(text[],text,text)"),
        fn("login_etl_audit_note(text,text[],text,text,text,text)"),
        fn("login_etl_hmac_keys_needed()"),
      ];
    case "rekey":
      return [
        ...table("data", "user_logins", "SELECT", "UPDATE"),
        ...table("state", "login_etl_vault", "SELECT", "INSERT", "UPDATE", "DELETE"),
        ...table("state", "login_etl_vault_links", "SELECT", "INSERT", "DELETE"),
        ...table("state", "login_etl_vault_inbox", "SELECT"),
        ...INBOX,
        ...table("state", "login_etl_audit", "INSERT"),
        ...table("state", "login_etl_keys", "SELECT"),
        fn("login_etl_register_key(text,text)"),
        ...table("state", "login_etl_key_retirements", "SELECT", "INSERT"),
      ];
    case "rekey-vault":
      return [
        ...table("state", "login_etl_vault", "SELECT", "UPDATE"),
        ...table("state", "login_etl_audit", "INSERT"),
        ...table("state", "login_etl_keys", "SELECT"),
        fn("login_etl_register_key(text,text)"),
      ];
    case "report":
      return [
        ...table("data", "user_logins", "SELECT"),
        ...table("data", "user_logins_duplicate_ips", "SELECT"),
        ...table("data", "user_logins_duplicate_devices", "SELECT"),
        ...columns("login_etl_rejects", "SELECT", "reason"),
      ];
    case "migrate":
    case "seed":
      return [];
  }
}

/**
 * The privileges of `wanted` the current role lacks, as `INSERT on
 * public.user_logins`. A schema the role has no USAGE on is one missing
 * privilege: nothing in it can be reached, and looking its objects up by
 * name would fail.
 */
async function missingPrivileges(
  sql: Sql,
  schemas: Schemas,
  wanted: readonly Privilege[],
): Promise<string[]> {
  const missing: string[] = [];
  const usable = new Map<Home, boolean>();
  for (const home of new Set(wanted.map((p) => p.in))) {
    const name = home === "data" ? schemas.schema : schemas.stateSchema;
    const [row] = await sql<{ has: boolean }[]>`
      SELECT coalesce(has_schema_privilege(to_regnamespace(${
      ident(name)
    }), 'USAGE'), false) AS has`;
    usable.set(home, row?.has === true);
    if (row?.has !== true) missing.push(`USAGE on schema ${name}`);
  }
  for (const p of wanted) {
    if (usable.get(p.in) !== true) continue;
    const schema = p.in === "data" ? schemas.schema : schemas.stateSchema;
    const qualified = `${ident(schema)}.${p.name}`;
    const [row] = p.on === "table"
      ? await sql<{ has: boolean }[]>`
          SELECT has_table_privilege(to_regclass(${qualified}), ${p.privilege}) AS has`
      : p.on === "column"
      ? await sql<{ has: boolean }[]>`
          SELECT has_column_privilege(to_regclass(${qualified}), ${p.column}, ${p.privilege}) AS has`
      : await sql<{ has: boolean }[]>`
          SELECT has_function_privilege(to_regprocedure(${qualified}), 'EXECUTE') AS has`;
    if (row?.has !== true) {
      const shown = `${schema}.${p.name}`;
      missing.push(
        p.on === "table"
          ? `${p.privilege} on ${shown}`
          : p.on === "column"
          ? `${p.privilege} (${p.column}) on ${shown}`
          : `EXECUTE on ${shown}`,
      );
    }
  }
  return missing;
}

/**
 * May the role change the schema: CREATE in both schemas (or on the
 * database, for one not made yet: migrate creates it), and membership in
 * the owner of each object it would change?
 */
async function mayMigrate(sql: Sql, schemas: Schemas): Promise<string | null> {
  const [row] = await sql<
    { absent: boolean; creatable: boolean; lacking: string[]; foreign: string[] }[]
  >`
    WITH wanted AS (
      SELECT s.name, n.oid FROM unnest(${[schemas.schema, schemas.stateSchema]}::text[]) AS s(name)
      LEFT JOIN pg_namespace n ON n.nspname = s.name
    )
    SELECT EXISTS (SELECT FROM wanted WHERE oid IS NULL) AS absent,
           has_database_privilege(current_database(), 'CREATE') AS creatable,
           coalesce((SELECT array_agg(name ORDER BY name) FROM wanted
                     WHERE oid IS NOT NULL AND NOT has_schema_privilege(oid, 'CREATE')), '{}') AS lacking,
           coalesce((SELECT array_agg(w.name || '.' || c.relname ORDER BY w.name, c.relname)
                     FROM pg_class c JOIN wanted w ON w.oid = c.relnamespace
                     WHERE c.relkind IN ('r', 'p', 'v')
                       AND (c.relname = 'user_logins' OR c.relname LIKE 'login\\_etl\\_%')
                       AND NOT pg_has_role(c.relowner, 'MEMBER')), '{}') AS foreign`;
  if (row?.absent === true && !row.creatable) return "no CREATE on the database";
  if ((row?.lacking ?? []).length > 0) return `no CREATE on schema ${row?.lacking.join(", ")}`;
  if ((row?.foreign ?? []).length > 0) return `not the owner of ${row?.foreign.join(", ")}`;
  return null;
}

const ok = (check: string, detail: string): CheckResult => ({ check, status: "ok", detail });
const fail = (check: string, detail: string): CheckResult => ({ check, status: "fail", detail });
const skip = (check: string, detail: string): CheckResult => ({ check, status: "skip", detail });

/** The keys of the checked command, loaded; their problems as results. */
interface LoadedKeys {
  readonly results: CheckResult[];
  /** Key ids (vault ones as `vault:ID`) with their fingerprints, to compare with the registry. */
  readonly fingerprints: [string, string][];
  /** The HMAC key set's ids, or null when none was loaded. */
  readonly hmacIds: readonly string[] | null;
  readonly vault: boolean;
}

async function checkKeys(config: CheckConfig, warn: (m: string) => void): Promise<LoadedKeys> {
  const needs = NEEDS[config.for];
  const results: CheckResult[] = [];
  const fingerprints: [string, string][] = [];
  let hmac: KeySet | null = null;
  let vault: VaultKeySet | null = null;
  if (needs.hmac !== "unused") {
    try {
      hmac = await loadKeySet(config.hmacKey, config.hmacKeyId, warn);
      if (hmac === null) {
        results.push(fail("hmac key", "none: set PII_HMAC_KEY or --hmac-key-file"));
      } else {
        for (const [id, key] of hmac.keys) {
          fingerprints.push([id, (await Masker.create(key, id)).fingerprint]);
        }
        results.push(
          ok("hmac key", `key ids ${[...hmac.keys.keys()].join(", ")}; current ${hmac.current}`),
        );
      }
    } catch (error) {
      results.push(fail("hmac key", formatError(error, false)));
    }
  }
  if (needs.vault !== "unused") {
    try {
      vault = await loadVaultKeySet(config.vaultKey, config.vaultKeyId, warn);
      if (vault === null) {
        results.push(
          needs.vault === "required"
            ? fail("vault key", "none: set PII_VAULT_KEY or --vault-key-file")
            : ok("vault key", "none: the vault is off"),
        );
      } else {
        const cipher = await VaultCipher.create(vault);
        for (const [id, fp] of cipher.fingerprints) fingerprints.push([`vault:${id}`, fp]);
        const held = `key ids ${[...vault.keys.keys()].join(", ")}; current ${vault.current} (${
          cipher.seals ? "sealed" : "symmetric"
        })`;
        // Recovery and rotations read the vault; consumers only write it.
        const readable = readableKeyIds(vault);
        results.push(
          needs.vault === "required" && !cipher.readable
            ? fail("vault key", `${held}: ${config.for} needs ${READING_KEYS}`)
            : needs.vault !== "required" && readable.length > 0
            ? ok(
              "vault key",
              `${held}; ${
                readable.join(", ")
              } can read the vault, which ${config.for} does not need: give it only the public key set`,
            )
            : ok("vault key", held),
        );
      }
    } catch (error) {
      results.push(fail("vault key", formatError(error, false)));
    }
  }
  try {
    assertSeparateKeys(hmac, vault);
  } catch (error) {
    results.push(fail("keys apart", formatError(error, false)));
  }
  return {
    results,
    fingerprints,
    vault: vault !== null,
    hmacIds: hmac === null ? null : [...hmac.keys.keys()],
  };
}

async function checkQueue(config: CheckConfig, telemetry: Telemetry): Promise<CheckResult[]> {
  const name = `queue ${queueNameOf(config.queueUrl)}`;
  const signal = AbortSignal.timeout(SERVICE_TIMEOUT_MS);
  let switched: string | null = null;
  let sqs;
  try {
    sqs = await createSqsClient({
      queueUrl: config.queueUrl,
      region: config.region,
      protocol: config.sqsProtocol,
      awsEnv: config.awsEnv,
      waitSeconds: 0,
      onProtocolSwitch: (reason) => (switched = reason),
      onRegionOverridden: (override) => telemetry.emit({ type: "RegionOverridden", ...override }),
    });
  } catch (error) {
    return [fail(name, formatError(error, false))];
  }
  try {
    const a = await readQueueAttributes(sqs.client, config.queueUrl, { signal });
    const protocol = config.sqsProtocol === "auto"
      ? `${sqs.protocol()} (auto${
        switched === null ? "" : ", switched: the endpoint speaks Query only"
      })`
      : sqs.protocol();
    return [
      ok(
        name,
        `reachable at ${
          sqs.endpoint.endpoint ?? "AWS"
        }, region ${sqs.region.region}, protocol ${protocol}; ` +
          `${a.approximateMessages} waiting, ${a.approximateInFlight} in flight, visibility ${a.visibilityTimeoutSeconds} s`,
      ),
    ];
  } catch (error) {
    const cause = (error as { cause?: unknown }).cause;
    if (config.for === "seed" && isQueueMissing(cause)) {
      return [ok(name, "absent; seed creates it")];
    }
    return [
      fail(
        name,
        signal.aborted
          ? `no answer from ${sqs.endpoint.endpoint ?? "AWS"} within ${
            SERVICE_TIMEOUT_MS / 1000
          } s; check --queue-url and AWS_ENDPOINT_URL`
          : formatError(error, false),
      ),
    ];
  } finally {
    sqs.client.destroy();
  }
}

async function checkDatabase(
  config: CheckConfig,
  connection: PgConnection,
  keys: LoadedKeys,
): Promise<CheckResult[]> {
  const bounded = {
    ...connection,
    connectTimeoutSeconds: Math.min(connection.connectTimeoutSeconds, SERVICE_TIMEOUT_MS / 1000),
  };
  await using database = new Database({
    connection: bounded,
    schema: config.schema,
    stateSchema: config.stateSchema,
    max: 1,
  });
  const schemas = database.schemas;
  const where = `${config.schema} (state schema ${config.stateSchema})`;
  const sql = database.sql;
  try {
    await checkConnection(sql, bounded);
  } catch (error) {
    return [fail("postgres", formatError(error, false))];
  }
  const results: CheckResult[] = [];
  try {
    const [server] = await sql<{ version: string; user: string; tls: string | null }[]>`
      SELECT current_setting('server_version') AS version, session_user AS user,
             (SELECT CASE WHEN ssl THEN version END FROM pg_stat_ssl WHERE pid = pg_backend_pid()) AS tls`;
    results.push(
      ok(
        "postgres",
        `${connection.display}: server ${server?.version}, user ${server?.user}, TLS ${
          server?.tls
            ? `on (${server.tls}, sslmode=${connection.sslmode})`
            : `off (sslmode=${connection.sslmode})`
        }`,
      ),
    );
    let state: SchemaState;
    try {
      state = await schemaState(sql, schemas);
    } catch (error) {
      const denied = (error as { code?: unknown }).code === "42501";
      results.push(
        fail(
          "schema",
          `${where}: ${formatError(error, false)}${
            denied
              ? `; the role needs USAGE on schema ${config.stateSchema} (see sql/roles.sql)`
              : ""
          }`,
        ),
      );
      results.push(
        await checkCreators(sql, schemas, {
          ownerRole: config.ownerRole,
          migrating: config.for === "migrate",
        }),
      );
      return results;
    }
    const blocker = state.pending.length === 0 ? null : await mayMigrate(sql, schemas);
    const pending = state.pending.map((m) => m.version).join(", ");
    if (state.pending.length === 0) {
      results.push(ok("schema", `${where} at version ${state.version} (latest)`));
    } else if (blocker === null) {
      results.push(
        ok(
          "schema",
          `${where} at version ${state.version}; ${
            config.for === "migrate" ? "migrate applies" : `${config.for} applies at start`
          } ${pending}`,
        ),
      );
    } else {
      results.push(
        fail(
          "schema",
          `${where} at version ${state.version}, needs ${LATEST_VERSION}, and this role may not migrate it (${blocker}); run \`login-etl migrate\` as the owner role`,
        ),
      );
    }
    results.push(
      await checkCreators(sql, schemas, {
        ownerRole: config.ownerRole,
        migrating: config.for === "migrate" || state.pending.length > 0,
      }),
    );
    if (config.for === "migrate") return results;
    const wanted = privilegesFor(config.for, keys.vault);
    if (wanted.length > 0) {
      if (state.version < LATEST_VERSION) {
        results.push(skip("privileges", "the schema is not current; check again after migrate"));
      } else {
        const missing = await missingPrivileges(sql, schemas, wanted);
        results.push(
          missing.length === 0
            ? ok("privileges", `${config.for} may do all it needs (${wanted.length} privileges)`)
            : fail(
              "privileges",
              `${config.for} lacks ${missing.join(", ")}; grant them (see sql/roles.sql)`,
            ),
        );
      }
    }
    if (keys.fingerprints.length > 0) {
      results.push(await checkRegistry(database, keys.fingerprints));
    }
    if (state.version >= LATEST_VERSION) {
      const listed = await checkKeyIds(database);
      if (listed !== null) results.push(listed);
    }
    if (state.version >= LATEST_VERSION && VERIFIERS.has(config.for) && keys.hmacIds !== null) {
      results.push(await checkKeysHeld(database, keys.hmacIds));
    }
    if (state.version >= LATEST_VERSION && VERIFIERS.has(config.for)) {
      results.push(await checkInbox(database));
    }
  } catch (error) {
    results.push(fail("postgres", `a check query failed: ${describeDbError(error)}`));
  }
  return results;
}

/**
 * Who may plant code where login-etl's migrations and SECURITY DEFINER
 * functions look up what they call: the data and state schemas must let
 * nobody but superusers, the data schema's owner and the owner role
 * (`--owner-role`) create in them, own them, or own anything there
 * (search_path.ts). The checking role is trusted too when it is the one
 * about to migrate (`--for migrate`, or a command that migrates at start).
 */
async function checkCreators(
  sql: Sql,
  schemas: Schemas,
  trust: { readonly ownerRole: string; readonly migrating: boolean },
): Promise<CheckResult> {
  const [me] = await sql<{ name: string }[]>`SELECT CURRENT_USER::text AS name`;
  const found = await findUntrusted(
    sql,
    schemas,
    trust.migrating ? [trust.ownerRole, me?.name ?? ""] : [trust.ownerRole],
  );
  return found.length === 0
    ? ok(
      "schema rights",
      `only trusted roles may create in schemas ${schemas.schema} and ${schemas.stateSchema}, and nothing of another role's is there`,
    )
    : fail("schema rights", describeUntrusted(found));
}

/** Commands that merge, recover or erase by value: they must hold every HMAC key in use. */
const VERIFIERS: ReadonlySet<Target> = new Set(["recover", "forget", "rekey", "vault-merge"]);

/** The configured HMAC key ids against those recorded in use and not retired. */
async function checkKeysHeld(db: Deployment, held: readonly string[]): Promise<CheckResult> {
  try {
    await requireHmacKeys(db, held, "verify erasures");
  } catch (error) {
    if (error instanceof KeyMissingError) return fail("hmac keys held", error.message);
    return skip("hmac keys held", formatError(error, false));
  }
  return ok(
    "hmac keys held",
    "every HMAC key id recorded in use and not retired is in the key set",
  );
}

/** Most key ids the `hmac key ids` line names. */
const KEY_IDS_SHOWN = 20;

/**
 * The HMAC key ids recorded, each with the login that registered it, so an
 * id nobody made a key for (a consumer may register any well-formed id)
 * stands out; null when the role may read none of them.
 */
async function checkKeyIds(db: Deployment): Promise<CheckResult | null> {
  const listed = await listHmacKeys(db);
  if (listed === null) return null;
  if (listed.length === 0) {
    return ok("hmac key ids", "none recorded yet (the first run records its key)");
  }
  const shown = listed.slice(0, KEY_IDS_SHOWN).map((k) =>
    `${quoteText(k.keyId)} by ${
      k.registeredBy === null ? "an earlier version" : quoteText(k.registeredBy)
    } ${k.registeredAt.toISOString().slice(0, 10)}${k.retired === true ? " (retired)" : ""}`
  );
  const more = listed.length > KEY_IDS_SHOWN ? `, and ${listed.length - KEY_IDS_SHOWN} more` : "";
  return ok(
    "hmac key ids",
    `${
      shown.join(", ")
    }${more}; an id no key was made for is retired by the owner role: login-etl rekey --retire=ID[,ID…] --reason TEXT`,
  );
}

/**
 * The vault inbox's size, by HMAC key id (the largest five), as far as the
 * role may read it (the owner): entries no merger holds the key of wait
 * there until the age limit or cap of a whole-inbox merge drops them.
 */
async function checkInbox(db: Deployment): Promise<CheckResult> {
  const { sql, schemas } = db;
  const table = `${ident(schemas.stateSchema)}.login_etl_vault_inbox`;
  const [readable] = await sql<{ ok: boolean }[]>`
    SELECT coalesce(has_table_privilege(to_regclass(${table}), 'SELECT'), false) AS ok`;
  if (readable?.ok !== true) {
    return skip("vault inbox", "its size is readable by the owner role only");
  }
  const rows = await sql<{ key_id: string; n: number; oldest_hours: number }[]>`
    SELECT pg_catalog.split_part(masked_value, ':', 1) AS key_id, pg_catalog.count(*)::int AS n,
           (pg_catalog.date_part('epoch', pg_catalog.now() - pg_catalog.min(received_at)) / 3600)::int
             AS oldest_hours
    FROM ${sql(schemas.stateSchema)}.login_etl_vault_inbox GROUP BY 1 ORDER BY 2 DESC`;
  const total = rows.reduce((sum, r) => sum + r.n, 0);
  const top = rows.slice(0, 5).map((r) => `${r.key_id} ${r.n} (oldest ${r.oldest_hours} h)`);
  const detail = total === 0
    ? "empty"
    : `${total} entries waiting: ${top.join(", ")}${rows.length > 5 ? ", ..." : ""}`;
  return total > FOREIGN_CAP_PER_KEY
    ? fail(
      "vault inbox",
      `${detail}; run vault-merge (as the owner, with every key in use): it merges what it can verify and drops entries under keys it does not hold after ${FOREIGN_MAX_AGE_HOURS} hours or beyond ${FOREIGN_CAP_PER_KEY} per key id`,
    )
    : ok("vault inbox", detail);
}

/** The configured key ids against the fingerprints recorded with them. */
async function checkRegistry(
  db: Deployment,
  fingerprints: [string, string][],
): Promise<CheckResult> {
  const { sql, schemas } = db;
  const table = `${ident(schemas.stateSchema)}.login_etl_keys`;
  // Looked up only with USAGE on the schema: to_regclass raises without it.
  const [exists] = await sql<{ readable: boolean }[]>`
    SELECT CASE WHEN coalesce(has_schema_privilege(to_regnamespace(${
    ident(schemas.stateSchema)
  }), 'USAGE'), false)
           THEN to_regclass(${table}) IS NOT NULL AND has_table_privilege(to_regclass(${table}), 'SELECT')
           ELSE false END AS readable`;
  if (exists?.readable !== true) {
    return skip(
      "key registry",
      `${schemas.stateSchema}.login_etl_keys is absent or not readable`,
    );
  }
  const recorded = new Map(
    (await sql<{ key_id: string; fingerprint: string }[]>`
      SELECT key_id, fingerprint FROM ${
      sql(schemas.stateSchema)
    }.login_etl_keys WHERE key_id = ANY(${fingerprints.map(([id]) => id)})`)
      .map((r) => [r.key_id, r.fingerprint]),
  );
  const wrong = fingerprints.filter(([id, fp]) => recorded.has(id) && recorded.get(id) !== fp)
    .map(([id]) => id);
  const fresh = fingerprints.filter(([id]) => !recorded.has(id)).map(([id]) => id);
  if (wrong.length > 0) {
    return fail(
      "key registry",
      `key ids ${
        wrong.join(", ")
      } are recorded with a different secret: use the secret that made earlier masks, or a new key id`,
    );
  }
  return ok(
    "key registry",
    fresh.length === 0
      ? `every key id matches its recorded fingerprint`
      : `${fingerprints.length - fresh.length} match; ${
        fresh.join(", ")
      } not yet recorded (the first run records them)`,
  );
}

/** Runs every check `config.for` needs; services side by side. */
export async function runChecks(config: CheckConfig, telemetry: Telemetry): Promise<CheckResult[]> {
  const warn = (message: string) => telemetry.emit({ type: "ConfigWarned", message });
  const needs = NEEDS[config.for];
  const keys = await checkKeys(config, warn);
  const database = async (): Promise<CheckResult[]> => {
    if (!needs.database) return [];
    let connection: PgConnection;
    try {
      connection = await loadPgConnection(config.database, warn);
    } catch (error) {
      return [fail("postgres", formatError(error, false))];
    }
    return await checkDatabase(config, connection, keys);
  };
  const copiesRejects = config.rejectQueueUrl !== null &&
    (config.for === "drain" || config.for === "run");
  const [queue, rejectQueue, db] = await Promise.all([
    needs.queue ? checkQueue(config, telemetry) : Promise.resolve([]),
    copiesRejects ? checkRejectQueue(config, config.rejectQueueUrl as string, telemetry) : [],
    database(),
  ]);
  return [...keys.results, ...queue, ...rejectQueue, ...db];
}

/**
 * The reject queue gets raw messages, PII and all: it must be reachable,
 * and on AWS encrypted at rest; its retention is reported, since every day
 * it keeps a copy is a day that PII lives outside the database's controls.
 */
async function checkRejectQueue(
  config: CheckConfig,
  url: string,
  telemetry: Telemetry,
): Promise<CheckResult[]> {
  const name = `reject queue ${queueNameOf(url)}`;
  const signal = AbortSignal.timeout(SERVICE_TIMEOUT_MS);
  let sqs;
  try {
    sqs = await createSqsClient({
      queueUrl: url,
      region: config.region,
      protocol: config.sqsProtocol,
      awsEnv: config.awsEnv,
      waitSeconds: 0,
      onRegionOverridden: (override) => telemetry.emit({ type: "RegionOverridden", ...override }),
    });
  } catch (error) {
    return [fail(name, formatError(error, false))];
  }
  try {
    const p = await readQueueProtection(sqs.client, url, { signal });
    const retention = p.retentionSeconds === null
      ? "retention not reported by this endpoint"
      : `keeps copies ${formatRetention(p.retentionSeconds)}`;
    if (p.encryption === "none" && isAwsHost(new URL(url).hostname)) {
      return [
        fail(
          name,
          `not encrypted at rest, and it holds raw messages with their PII; ${retention}: turn on SSE (aws sqs set-queue-attributes --queue-url ${url} --attributes SqsManagedSseEnabled=true, or a KMS key)`,
        ),
      ];
    }
    const encryption = p.encryption === "kms"
      ? `encrypted at rest with KMS key ${p.kmsKeyId}`
      : p.encryption === "sqs-managed"
      ? "encrypted at rest (SQS-managed keys)"
      : p.encryption === "none"
      ? "not encrypted at rest (not AWS: protect the endpoint's storage)"
      : "encryption not reported by this endpoint";
    return [ok(name, `${encryption}; ${retention}; it holds raw messages with their PII`)];
  } catch (error) {
    return [fail(name, formatError(error, false))];
  } finally {
    sqs.client.destroy();
  }
}

/** A retention period in the largest whole unit: "14 days", "2 hours", "90 s". */
function formatRetention(seconds: number): string {
  if (seconds % 86400 === 0) return `${seconds / 86400} day${seconds === 86400 ? "" : "s"}`;
  if (seconds % 3600 === 0) return `${seconds / 3600} hour${seconds === 3600 ? "" : "s"}`;
  return `${seconds} s`;
}

/**
 * Runs `check`, printing one line per check.
 *
 * @throws {ChecksFailedError} when any failed
 */
export async function checkCommand(config: CheckConfig, io: CommandIo): Promise<void> {
  const results = await runChecks(config, io.telemetry);
  const failed = results.filter((r) => r.status === "fail").length;
  const width = Math.max(...results.map((r) => r.check.length));
  printResult(
    io,
    config.summaryJson,
    { for: config.for, passed: failed === 0, checks: results },
    // A detail may carry text read from the database: escaped, so it
    // cannot start a line of its own or drive the terminal.
    results.map((r) =>
      `${r.status.padEnd(4)}  ${escapeControl(r.check).padEnd(width)}  ${escapeControl(r.detail)}`
    ),
  );
  if (failed > 0) throw new ChecksFailedError(failed, results.length);
}
