/**
 * `check`'s database: the connection and its TLS, the schema version and
 * whether this role may migrate it, who else may create in the schemas, the
 * privileges the checked command needs (`db/grants.ts`), the key registry,
 * the HMAC key ids recorded and held, and the vault inbox.
 *
 * @module
 */

import { NEEDS } from "../config/commands.ts";
import type { CheckConfig } from "../config/configs.ts";
import type { PgConnection } from "../db/connection.ts";
import { privilegesFor } from "../db/grants.ts";
import { listHmacKeys, requireHmacKeys } from "../db/keys.ts";
import { LATEST_VERSION } from "../db/migrations.ts";
import {
  checkConnection,
  Database,
  type Deployment,
  describeDbError,
  isPermissionDenied,
  type Sql,
} from "../db/pool.ts";
import { mayMigrate, missingPrivileges } from "../db/privileges.ts";
import { type SchemaState, schemaState } from "../db/schema.ts";
import { ident, type Schemas } from "../db/schemas.ts";
import { describeUntrusted, findUntrusted } from "../db/search_path.ts";
import { formatError, KeyMissingError } from "../errors.ts";
import { quoteText } from "../log.ts";
import { FOREIGN_CAP_PER_KEY, FOREIGN_MAX_AGE_HOURS } from "../pii/merge.ts";
import { type CheckResult, fail, ok, SERVICE_TIMEOUT_MS, skip } from "./_check.ts";
import type { LoadedKeys } from "./_check_keys.ts";

export async function checkDatabase(
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
      const denied = isPermissionDenied(error);
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
    const verifies = NEEDS[config.for].everyHmacKey;
    if (state.version >= LATEST_VERSION && verifies && keys.hmacIds !== null) {
      results.push(await checkKeysHeld(database, keys.hmacIds));
    }
    if (state.version >= LATEST_VERSION && verifies) {
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
