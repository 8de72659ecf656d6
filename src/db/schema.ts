/**
 * login-etl's database objects: the tables, and the SECURITY DEFINER
 * functions through which the least-privileged roles touch the vault and the
 * audit trail (sql/roles.sql grants them). `ensureSchema` creates whichever
 * are missing; `sql/schema.sql` holds the same statements for DBAs.
 *
 * @module
 */

import { checkConnection, describeDbError, type Sql } from "./pool.ts";
import { DatabaseError } from "../errors.ts";
import type { PgConnection } from "./connection.ts";

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

/**
 * A function whose body runs with its owner's rights, created for the
 * schema it lives in: `search_path` is pinned to that schema and then
 * pg_temp, so a caller's temporary objects can never stand in for ours. The
 * DO block lets one text serve both `ensureSchema` and `psql -f`.
 */
function definer(signature: string, returns: string, language: string, body: string): string {
  return `DO $do$ BEGIN EXECUTE format($f$
CREATE OR REPLACE FUNCTION ${signature} RETURNS ${returns}
LANGUAGE ${language} SECURITY DEFINER SET search_path = %I, pg_temp AS $body$
${body.trim()}
$body$$f$, current_schema()); END $do$`;
}

/** One object `ensureSchema` manages: its kind, how to find it, and its DDL. */
interface SchemaObject {
  readonly kind: "table" | "function";
  /** Table name, or function signature as `to_regprocedure` takes it. */
  readonly name: string;
  readonly ddl: readonly string[];
}

/** The objects, in creation order. */
const OBJECTS: readonly SchemaObject[] = [
  { kind: "table", name: "user_logins", ddl: [USER_LOGINS_DDL] },
  {
    // One row per MessageId ever committed: the same transaction writes it and
    // the message's row, so a redelivery finds it and writes nothing.
    kind: "table",
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
    // Refused messages with their reason and a body redacted by allowlist
    // (redact.ts); pruned after --reject-retention-days.
    kind: "table",
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
      `CREATE INDEX IF NOT EXISTS login_etl_rejects_rejected_at
        ON login_etl_rejects USING brin (rejected_at)`,
    ],
  },
  {
    // HMAC key ids and fingerprints (never the secrets): a key id used with
    // a different secret is refused.
    kind: "table",
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
    // Raw ip/device_id values, encrypted (AES-256-GCM, field and mask bound
    // in), keyed by mask, insert-once. A row whose erased_at is set is a
    // tombstone: `forget` cleared its ciphertext, and its primary key keeps
    // the value from ever being vaulted again, without anyone reading it.
    kind: "table",
    name: "login_etl_vault",
    ddl: [
      `CREATE TABLE IF NOT EXISTS login_etl_vault (
        masked_value text PRIMARY KEY,
        field        text CHECK (field IN ('ip', 'device_id')),
        ciphertext   bytea,
        iv           bytea,
        key_id       text,
        first_seen   timestamptz NOT NULL DEFAULT now(),
        erased_at    timestamptz,
        CONSTRAINT login_etl_vault_entry_or_tombstone CHECK (CASE WHEN erased_at IS NULL
          THEN field IS NOT NULL AND ciphertext IS NOT NULL AND iv IS NOT NULL AND key_id IS NOT NULL
          ELSE ciphertext IS NULL AND iv IS NULL AND key_id IS NULL END)
      )`,
    ],
  },
  {
    // Every recovery, erasure and re-keying, allowed or not. Written only by
    // the functions below (and the owner's rekey); db_user is the login role.
    kind: "table",
    name: "login_etl_audit",
    ddl: [
      `CREATE TABLE IF NOT EXISTS login_etl_audit (
        id           bigserial PRIMARY KEY,
        at           timestamptz NOT NULL DEFAULT now(),
        actor        text NOT NULL,
        db_user      text NOT NULL DEFAULT session_user,
        action       text NOT NULL,
        masked_value text,
        reason       text,
        outcome      text NOT NULL,
        detail       text
      )`,
    ],
  },
  {
    // The consumer's only way into the vault. It returns nothing and raises
    // nothing for a value already vaulted or erased, and does a write either
    // way (a new row, or a no-op update of the existing one), so neither its
    // answer nor its cost tells the caller whether a value was there.
    kind: "function",
    name: "login_etl_vault_put(text[],text[],bytea[],bytea[],text[])",
    ddl: [definer(
      "login_etl_vault_put(p_masked text[], p_field text[], p_ciphertext bytea[], p_iv bytea[], p_key_id text[])",
      "void",
      "sql",
      `
INSERT INTO login_etl_vault AS v (masked_value, field, ciphertext, iv, key_id)
SELECT DISTINCT ON (u.m) u.m, u.f, u.c, u.i, u.k
FROM unnest(p_masked, p_field, p_ciphertext, p_iv, p_key_id) AS u(m, f, c, i, k)
ORDER BY u.m
ON CONFLICT (masked_value) DO UPDATE SET first_seen = v.first_seen`,
    )],
  },
  {
    // The recoverer's read: audits each mask (released, erased, not_found)
    // in the same transaction as it hands out the ciphertext, under
    // session_user. No reason, no release.
    kind: "function",
    name: "login_etl_recover(text[],text,text)",
    ddl: [definer(
      "login_etl_recover(p_masked text[], p_actor text, p_reason text)",
      "TABLE (masked_value text, field text, ciphertext bytea, iv bytea, key_id text, state text)",
      "plpgsql",
      `
#variable_conflict use_column
BEGIN
  IF coalesce(btrim(p_reason), '') = '' THEN
    INSERT INTO login_etl_audit (actor, action, masked_value, reason, outcome, detail)
    SELECT p_actor, 'recover', m, p_reason, 'denied', 'no reason given' FROM unnest(p_masked) AS m;
    RETURN;
  END IF;
  RETURN QUERY
  WITH asked AS (SELECT DISTINCT unnest(p_masked) AS m),
  found AS (
    SELECT a.m, v.field, v.ciphertext, v.iv, v.key_id,
           CASE WHEN v.masked_value IS NULL THEN 'not_found'
                WHEN v.erased_at IS NOT NULL THEN 'erased'
                ELSE 'released' END AS s
    FROM asked a LEFT JOIN login_etl_vault v ON v.masked_value = a.m
  ),
  audited AS (
    INSERT INTO login_etl_audit (actor, action, masked_value, reason, outcome, detail)
    SELECT p_actor, 'recover', f.m, p_reason, f.s,
           CASE f.s WHEN 'released' THEN 'ciphertext released, field ' || f.field
                    WHEN 'erased' THEN 'erased by forget' ELSE 'no vault entry' END
    FROM found f
  )
  SELECT f.m, f.field, f.ciphertext, f.iv, f.key_id, f.s FROM found f;
END`,
    )],
  },
  {
    // The recoverer's erasure: a tombstone for each mask (an upsert, so it
    // serialises with a consumer vaulting the same mask on the primary key),
    // audited in the same transaction under session_user.
    kind: "function",
    name: "login_etl_forget(text[],text,text)",
    ddl: [definer(
      "login_etl_forget(p_masked text[], p_actor text, p_reason text)",
      "TABLE (masked_value text, outcome text)",
      "plpgsql",
      `
#variable_conflict use_column
BEGIN
  IF coalesce(btrim(p_reason), '') = '' THEN
    INSERT INTO login_etl_audit (actor, action, masked_value, reason, outcome, detail)
    SELECT p_actor, 'forget', m, p_reason, 'denied', 'no reason given' FROM unnest(p_masked) AS m;
    RETURN QUERY SELECT m, 'denied'::text FROM unnest(p_masked) AS m;
    RETURN;
  END IF;
  RETURN QUERY
  WITH asked AS (SELECT DISTINCT unnest(p_masked) AS m),
  erased AS (
    INSERT INTO login_etl_vault AS v (masked_value, erased_at)
    SELECT m, now() FROM asked ORDER BY m
    ON CONFLICT (masked_value) DO UPDATE
      SET ciphertext = NULL, iv = NULL, key_id = NULL, erased_at = now()
      WHERE v.erased_at IS NULL
    RETURNING v.masked_value, (v.xmax = 0) AS created
  ),
  outcomes AS (
    SELECT a.m, CASE WHEN e.masked_value IS NOT NULL AND NOT e.created
                     THEN 'success' ELSE 'not_found' END AS o
    FROM asked a LEFT JOIN erased e ON e.masked_value = a.m
  ),
  audited AS (
    INSERT INTO login_etl_audit (actor, action, masked_value, reason, outcome, detail)
    SELECT p_actor, 'forget', o.m, p_reason, o.o,
           CASE o.o WHEN 'success' THEN 'vault entry erased' ELSE 'no live vault entry; tombstone kept' END
    FROM outcomes o
  )
  SELECT o.m, o.o FROM outcomes o;
END`,
    )],
  },
  {
    // A refusal the client decided (no vault key, a value that does not mask
    // back to its mask): only denied or failed, so nobody can forge a release.
    kind: "function",
    name: "login_etl_audit_note(text,text[],text,text,text,text)",
    ddl: [definer(
      "login_etl_audit_note(p_action text, p_masked text[], p_actor text, p_reason text, p_outcome text, p_detail text)",
      "void",
      "plpgsql",
      `
BEGIN
  IF p_action NOT IN ('recover', 'forget') OR p_outcome NOT IN ('denied', 'failed') THEN
    RAISE EXCEPTION 'login_etl_audit_note records only denied or failed recover and forget attempts'
      USING ERRCODE = '22023';
  END IF;
  INSERT INTO login_etl_audit (actor, action, masked_value, reason, outcome, detail)
  SELECT p_actor, p_action, m, p_reason, p_outcome, p_detail
  FROM unnest(coalesce(p_masked, ARRAY[NULL::text])) AS m;
END`,
    )],
  },
  {
    // The recoverer's view of the trail, oldest first from an id on.
    kind: "function",
    name: "login_etl_audit_list(bigint,integer)",
    ddl: [definer(
      "login_etl_audit_list(p_after bigint, p_limit integer)",
      "SETOF login_etl_audit",
      "sql",
      `
SELECT * FROM login_etl_audit WHERE id > p_after ORDER BY id LIMIT least(p_limit, 10000)`,
    )],
  },
];

/** Every DDL statement, in order; `sql/schema.sql` holds the same for DBAs. */
export const SCHEMA_STATEMENTS: readonly string[] = OBJECTS.flatMap((o) => o.ddl);

/** Names of the tables `ensureSchema` manages. */
export const TABLE_NAMES: readonly string[] = OBJECTS.filter((o) => o.kind === "table")
  .map((o) => o.name);

/**
 * Statements that bring a version 0.1 schema (tombstones in a table of their
 * own, NOT NULL ciphertext, db_user = current_user) to this one; run once,
 * under the schema lock, when `login_etl_forgotten` is found.
 */
const UPGRADE_FROM_0_1: readonly string[] = [
  `ALTER TABLE login_etl_vault ALTER COLUMN field DROP NOT NULL,
    ALTER COLUMN ciphertext DROP NOT NULL, ALTER COLUMN iv DROP NOT NULL,
    ALTER COLUMN key_id DROP NOT NULL, ADD COLUMN IF NOT EXISTS erased_at timestamptz`,
  `ALTER TABLE login_etl_vault ADD CONSTRAINT login_etl_vault_entry_or_tombstone CHECK (CASE WHEN erased_at IS NULL
    THEN field IS NOT NULL AND ciphertext IS NOT NULL AND iv IS NOT NULL AND key_id IS NOT NULL
    ELSE ciphertext IS NULL AND iv IS NULL AND key_id IS NULL END)`,
  `INSERT INTO login_etl_vault AS v (masked_value, erased_at)
    SELECT masked_value, forgotten_at FROM login_etl_forgotten
    ON CONFLICT (masked_value) DO UPDATE
      SET ciphertext = NULL, iv = NULL, key_id = NULL, erased_at = EXCLUDED.erased_at`,
  `DROP TABLE login_etl_forgotten`,
  `ALTER TABLE login_etl_audit ALTER COLUMN db_user SET DEFAULT session_user`,
];

/** The objects of `OBJECTS` that `schema` lacks. */
async function missingObjects(sql: Sql, schema: string): Promise<SchemaObject[]> {
  const rows = await sql<{ name: string }[]>`
    SELECT o.name FROM unnest(${OBJECTS.map((o) => o.name)}::text[], ${
    OBJECTS.map((o) => o.kind)
  }::text[]) AS o(name, kind)
    WHERE CASE o.kind
      WHEN 'table' THEN to_regclass(quote_ident(${schema}) || '.' || quote_ident(o.name)) IS NULL
      ELSE to_regprocedure(quote_ident(${schema}) || '.' || o.name) IS NULL END`;
  const names = new Set(rows.map((r) => r.name));
  return OBJECTS.filter((o) => names.has(o.name));
}

/**
 * Creates whichever of our objects are missing (and upgrades a 0.1 schema),
 * under an advisory lock so that consumers starting together do not race.
 * Existing objects are left as they are, and a role without CREATE works
 * once an owner has created them.
 *
 * @returns the names of the objects created
 * @throws {DatabaseError} code `db_connect` or `db_schema`
 */
export async function ensureSchema(
  sql: Sql,
  options: { readonly connection: PgConnection; readonly schema: string },
): Promise<string[]> {
  await checkConnection(sql, options.connection);
  const { schema } = options;
  const upgradeNeeded = async (q: Sql) =>
    (await q`SELECT to_regclass(quote_ident(${schema}) || '.login_etl_forgotten') IS NOT NULL AS old`)[
      0
    ]
      ?.old === true;
  try {
    if ((await missingObjects(sql, schema)).length === 0 && !(await upgradeNeeded(sql))) return [];
    const created: string[] = [];
    await sql.begin(async (tx) => {
      const q = tx as unknown as Sql;
      // Same lock key in every consumer: "login-etl schema".
      await tx`SELECT pg_advisory_xact_lock(hashtext('login-etl schema'))`;
      if (schema !== "public") await tx.unsafe(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
      if (await upgradeNeeded(q)) {
        for (const statement of UPGRADE_FROM_0_1) await tx.unsafe(statement);
        created.push("upgrade from 0.1");
      }
      // Another consumer may have created some while we waited for the lock.
      for (const object of await missingObjects(q, schema)) {
        for (const statement of object.ddl) await tx.unsafe(statement);
        created.push(object.name);
      }
    });
    return created;
  } catch (error) {
    throw new DatabaseError(
      "db_schema",
      `Cannot create login-etl's tables and functions in schema ${schema}: ${
        describeDbError(error)
      }; run once as a role that may create them, or apply sql/schema.sql and sql/roles.sql`,
      { cause: error },
    );
  }
}
