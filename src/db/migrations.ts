/**
 * login-etl's schema as a list of versioned changes, oldest first. Each
 * database records the versions it has in `login_etl_migrations`;
 * `schema.ts` applies the rest. A released migration is never edited: a
 * change is a new one. `sql/schema.sql` is these statements in order, for
 * DBAs who apply them with psql (`make docs` writes it).
 *
 * Every statement runs with `search_path` set to the data schema (`--schema`)
 * and the session setting `login_etl.state_schema` naming the state schema
 * (`--state-schema`), so one text serves `migrate` and psql whatever the two
 * names. Versions 1 to 5 created everything in the data schema; version 6
 * moved login-etl's own tables and functions to the state schema, and the
 * migrations table with them.
 *
 * Over 500 lines because it is one history: the migrations are read in
 * order, each builds on the ones before, and a released one never changes,
 * so splitting it would only scatter one sequence across files.
 *
 * @module
 */

import {
  AUDIT_ACTOR_MAX_CHARS,
  AUDIT_TEXT_MAX_CHARS,
  KEY_ID_PATTERN,
  LEDGER_RETENTION_MAX_DAYS,
  MAX_ROWS_MAX,
} from "../config/options.ts";
import { OWNER_ROLE_SETTING, trustedRolesSql } from "./search_path.ts";

/**
 * The sizes of a vault entry the inbox accepts: the largest ciphertext (the
 * largest sealed bucket, 4,096 bytes, plus its 16-byte tag), and an iv that
 * is a sealed header (format byte, X25519 public key, entry salt) or a
 * symmetric nonce. Written here as numbers, not read from `pii/seal.ts` and
 * `pii/vault.ts`: a migration is history and must not change when the format
 * code does. `tests/unit/db/vault_sizes_test.ts` fails when the format makes
 * an entry these refuse.
 */
export const VAULT_ENTRY_SIZES = {
  maxCiphertextBytes: 4112,
  sealedIvBytes: 49,
  symmetricIvBytes: 12,
} as const;
const MAX_CIPHERTEXT_BYTES = VAULT_ENTRY_SIZES.maxCiphertextBytes;
const HEADER_BYTES = VAULT_ENTRY_SIZES.sealedIvBytes;
const SYMMETRIC_IV_BYTES = VAULT_ENTRY_SIZES.symmetricIvBytes;

/** One versioned change to the schema. */
export interface Migration {
  /** 1, 2, 3…: applied in order, each once. */
  readonly version: number;
  /** What it changes, for `migrate` and the migrations table. */
  readonly name: string;
  /**
   * Run in one transaction (all or nothing) unless `transaction` is false:
   * statements such as `CREATE INDEX CONCURRENTLY` cannot run inside one,
   * and are then written so that running them again after a failure is safe.
   */
  readonly statements: readonly string[];
  readonly transaction?: false;
}

/** The table that records which versions a database has. */
export const MIGRATIONS_TABLE_DDL = `CREATE TABLE IF NOT EXISTS login_etl_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    applied_by text NOT NULL DEFAULT session_user,
    source     text NOT NULL CHECK (source IN ('migrate', 'schema.sql', 'found'))
)`;

/**
 * Anyone may read which versions are applied (every command checks it at
 * start, whatever its role); only the owner changes the table.
 */
export const MIGRATIONS_TABLE_GRANT = "GRANT SELECT ON login_etl_migrations TO PUBLIC";

/** The roles of sql/roles.sql that may call each SECURITY DEFINER function. */
type Caller = "login_etl_consumer" | "pii_recoverer";

/**
 * A function whose body runs with its owner's rights, created for the
 * schema it lives in, as versions 2 and 5 made them (released, so kept as
 * they were; version 7 makes them again with `stateDefiner`): `search_path`
 * is pinned to that schema and then pg_temp, so a caller's temporary
 * objects can never stand in for ours.
 * Nobody but its owner and `callers` (where those roles exist) may execute
 * it, from the moment it exists: Postgres would otherwise let PUBLIC. The DO
 * block lets one text serve both `migrate` and `psql -f` (the body's `%`
 * are doubled for its `format`).
 */
function definer(
  signature: string,
  options: {
    readonly returns: string;
    readonly language: "sql" | "plpgsql";
    readonly callers: readonly Caller[];
    readonly body: string;
  },
): string {
  const name = signature.slice(0, signature.indexOf("("));
  const types = signature.slice(signature.indexOf("(") + 1, -1).split(",")
    .map((p) => p.trim().split(/\s+/).slice(1).join(" ")).join(", ");
  const callers = options.callers.map((c) => `'${c}'`).join(", ");
  return `DO $do$
DECLARE caller text;
BEGIN
  EXECUTE format($f$
CREATE OR REPLACE FUNCTION ${signature} RETURNS ${options.returns}
LANGUAGE ${options.language} SECURITY DEFINER SET search_path = %I, pg_temp AS $body$
${options.body.trim().replaceAll("%", "%%")}
$body$$f$, current_schema());
  REVOKE ALL ON FUNCTION ${name}(${types}) FROM PUBLIC;
  FOR caller IN SELECT rolname FROM pg_roles WHERE rolname IN (${callers}) LOOP
    EXECUTE format('GRANT EXECUTE ON FUNCTION ${name}(${types}) TO %I', caller);
  END LOOP;
END $do$`;
}

/**
 * The state schema's name in SQL that runs with the data schema in
 * `search_path` (migrations from version 7 on, sql/roles.sql): as
 * `STATE_SCHEMA_SETTING`, with the call qualified.
 */
export const QUALIFIED_STATE_SCHEMA_SETTING =
  "COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl')";

/**
 * A mask as `mask.ts` makes it, for the functions that take masks: a key id
 * (KEY_ID_PATTERN of config/options.ts), a colon and the 43 characters of
 * an unpadded base64url HMAC-SHA256.
 */
export const MASK_SQL_PATTERN = "^[A-Za-z0-9_-]{1,16}:[A-Za-z0-9_-]{43}$";

/**
 * A key id as `login_etl_keys` records it: an HMAC key id, or `vault:` and
 * a vault key id, each KEY_ID_PATTERN of config/options.ts (made from it,
 * so the CLI and the database hold one rule).
 */
export const REGISTERED_KEY_ID_SQL_PATTERN = `^(vault:)?${KEY_ID_PATTERN.source.slice(1, -1)}$`;

/**
 * Most new key ids one login may register in 24 hours
 * (`login_etl_register_key`; the owner role's members are not capped). A
 * consumer records an HMAC and a vault key id, and two more in a rotation:
 * 8 leaves room for a rotation of both and a retry under new ids, and
 * bounds the bogus ids a consumer can plant (each one `rekey --retire`
 * clears) to 8 a day.
 */
export const KEY_REGISTRATIONS_PER_DAY = 8;

/**
 * Most masks `login_etl_audit_note` records in one call: any caller may
 * note a refusal under any actor, so one call must not write an unbounded
 * number of rows (`noteRefusal` sends larger lists in slices).
 */
export const AUDIT_NOTE_MAX_MASKS = 1000;

// The caps on what `login_etl_audit_note` records live beside --actor and
// --reason, which are refused beyond them before anything is sent.
export { AUDIT_ACTOR_MAX_CHARS, AUDIT_TEXT_MAX_CHARS };

/**
 * A SECURITY DEFINER function in the state schema, from version 7 on, or
 * (`definer: false`) a helper only those functions and the owner call. Its
 * `search_path` is pg_catalog, the state schema, then pg_temp, and its body
 * qualifies every function it calls (`pg_catalog.unnest`, not `unnest`) and
 * every table (`{state}.login_etl_vault`): pg_catalog first does not stop a
 * better-matching overload in a later schema (`unnest(text[])` beats
 * `pg_catalog.unnest(anyarray)`), so only qualification keeps the body from
 * calling what someone able to create in the state schema planted there.
 * Operators are left bare where both operands are of exactly the built-in
 * types they take, since pg_catalog's then wins the tie by coming first
 * (arrays are joined with `pg_catalog.array_cat`, not the polymorphic `||`).
 *
 * In `body` and `returns`, `{state}` is the state schema as an identifier
 * and `{state_literal}` as a string literal (for dynamic SQL). Nobody but
 * the owner and `callers` (where those roles exist; none for a helper) may
 * execute it. `CREATE OR REPLACE` keeps the owner and grants of a function
 * that exists.
 */
function stateDefiner(
  signature: string,
  options: {
    readonly returns: string;
    readonly language: "sql" | "plpgsql";
    readonly callers: readonly Caller[];
    readonly body: string;
    /** False for a helper: it runs with its caller's rights (SECURITY INVOKER). */
    readonly definer?: false;
    readonly volatility?: "STABLE";
  },
): string {
  const name = signature.slice(0, signature.indexOf("("));
  const types = signature.slice(signature.indexOf("(") + 1, -1).split(",")
    .map((p) => p.trim().split(/\s+/).slice(1).join(" ")).join(", ");
  const callers = options.callers.map((c) => `'${c}'`).join(", ");
  const placeholders = (text: string) =>
    text.replaceAll("%", "%%").replaceAll("{state_literal}", "%1$L").replaceAll("{state}", "%1$I");
  const traits = `${options.volatility === undefined ? "" : ` ${options.volatility}`}${
    options.definer === false ? "" : " SECURITY DEFINER"
  }`;
  return `DO $do$
DECLARE
  state constant text := ${QUALIFIED_STATE_SCHEMA_SETTING};
  caller text;
BEGIN
  EXECUTE pg_catalog.format($f$
CREATE OR REPLACE FUNCTION %1$I.${signature} RETURNS ${placeholders(options.returns)}
LANGUAGE ${options.language}${traits} SET search_path = pg_catalog, %1$I, pg_temp AS $body$
${placeholders(options.body.trim())}
$body$$f$, state);
  EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %I.${name}(${types}) FROM PUBLIC', state);
  FOR caller IN SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.rolname::text IN (${
    callers || "NULL"
  }) LOOP
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %I.${name}(${types}) TO %I', state, caller);
  END LOOP;
END $do$`;
}

/** Version 1: the tables of login-etl 0.1, as it created them. */
const V1_TABLES: readonly string[] = [
  // The exact DDL of the target table; the exercise's image already has it.
  `CREATE TABLE IF NOT EXISTS user_logins(
    user_id             varchar(128),
    device_type         varchar(32),
    masked_ip           varchar(256),
    masked_device_id    varchar(256),
    locale              varchar(32),
    app_version         integer,
    create_date         date
)`,
  // One row per MessageId ever committed: the same transaction writes it and
  // the message's row, so a redelivery finds it and writes nothing.
  `CREATE TABLE IF NOT EXISTS login_etl_ledger (
    message_id   text PRIMARY KEY,
    committed_at timestamptz NOT NULL DEFAULT now()
)`,
  `CREATE INDEX IF NOT EXISTS login_etl_ledger_committed_at
    ON login_etl_ledger USING brin (committed_at)`,
  // Refused messages with their reason and a redacted body (redact.ts).
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
  // HMAC key ids and fingerprints (never the secrets): a key id used with a
  // different secret is refused.
  `CREATE TABLE IF NOT EXISTS login_etl_keys (
    key_id       text PRIMARY KEY,
    fingerprint  text NOT NULL,
    first_used   timestamptz NOT NULL DEFAULT now()
)`,
  // Raw ip/device_id values, encrypted (AES-256-GCM, field and mask bound in),
  // keyed by mask, insert-once.
  `CREATE TABLE IF NOT EXISTS login_etl_vault (
    masked_value text PRIMARY KEY,
    field        text NOT NULL CHECK (field IN ('ip', 'device_id')),
    ciphertext   bytea NOT NULL,
    iv           bytea NOT NULL,
    key_id       text NOT NULL,
    first_seen   timestamptz NOT NULL DEFAULT now()
)`,
  `CREATE TABLE IF NOT EXISTS login_etl_forgotten (
    masked_value text PRIMARY KEY,
    forgotten_at timestamptz NOT NULL DEFAULT now()
)`,
  // Every recovery, erasure and re-keying, allowed or not.
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
];

/**
 * Version 2: tombstones in the vault itself (a row whose erased_at is set:
 * `forget` cleared its ciphertext, and its primary key keeps the value from
 * ever being vaulted again, without anyone reading it), db_user as the login
 * role, and the SECURITY DEFINER functions that are the least-privileged
 * roles' only way into the vault and the audit trail.
 */
const V2_PII: readonly string[] = [
  `ALTER TABLE login_etl_vault ALTER COLUMN field DROP NOT NULL,
    ALTER COLUMN ciphertext DROP NOT NULL, ALTER COLUMN iv DROP NOT NULL,
    ALTER COLUMN key_id DROP NOT NULL, ADD COLUMN erased_at timestamptz`,
  `ALTER TABLE login_etl_vault ADD CONSTRAINT login_etl_vault_entry_or_tombstone CHECK (CASE WHEN erased_at IS NULL
    THEN field IS NOT NULL AND ciphertext IS NOT NULL AND iv IS NOT NULL AND key_id IS NOT NULL
    ELSE ciphertext IS NULL AND iv IS NULL AND key_id IS NULL END)`,
  `INSERT INTO login_etl_vault AS v (masked_value, erased_at)
    SELECT masked_value, forgotten_at FROM login_etl_forgotten
    ON CONFLICT (masked_value) DO UPDATE
      SET ciphertext = NULL, iv = NULL, key_id = NULL, erased_at = EXCLUDED.erased_at`,
  `DROP TABLE login_etl_forgotten`,
  `ALTER TABLE login_etl_audit ALTER COLUMN db_user SET DEFAULT session_user`,
  // rejected_at grows with insertion order, so a BRIN index serves the prune
  // at a fraction of a btree's cost per insert.
  `CREATE INDEX IF NOT EXISTS login_etl_rejects_rejected_at
    ON login_etl_rejects USING brin (rejected_at)`,
  // The consumer's only way into the vault. It returns nothing and raises
  // nothing for a value already vaulted or erased, and does a write either
  // way (a new row, or a no-op update of the existing one), so neither its
  // answer nor its cost tells the caller whether a value was there.
  definer(
    "login_etl_vault_put(p_masked text[], p_field text[], p_ciphertext bytea[], p_iv bytea[], p_key_id text[])",
    {
      returns: "void",
      language: "sql",
      callers: ["login_etl_consumer"],
      body: `
INSERT INTO login_etl_vault AS v (masked_value, field, ciphertext, iv, key_id)
SELECT DISTINCT ON (u.m) u.m, u.f, u.c, u.i, u.k
FROM unnest(p_masked, p_field, p_ciphertext, p_iv, p_key_id) AS u(m, f, c, i, k)
ORDER BY u.m
ON CONFLICT (masked_value) DO UPDATE SET first_seen = v.first_seen`,
    },
  ),
  // The recoverer's read: audits each mask (released, erased, not_found)
  // in the same transaction as it hands out the ciphertext, under
  // session_user. No reason, no release.
  definer("login_etl_recover(p_masked text[], p_actor text, p_reason text)", {
    returns:
      "TABLE (masked_value text, field text, ciphertext bytea, iv bytea, key_id text, state text)",
    language: "plpgsql",
    callers: ["pii_recoverer"],
    body: `
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
  }),
  // The recoverer's erasure: a tombstone for each mask (an upsert, so it
  // serialises with a consumer vaulting the same mask on the primary key),
  // audited in the same transaction under session_user.
  definer("login_etl_forget(p_masked text[], p_actor text, p_reason text)", {
    returns: "TABLE (masked_value text, outcome text)",
    language: "plpgsql",
    callers: ["pii_recoverer"],
    body: `
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
  }),
  // A refusal the client decided (no vault key, a value that does not mask
  // back to its mask): only denied or failed, so nobody can forge a release.
  definer(
    "login_etl_audit_note(p_action text, p_masked text[], p_actor text, p_reason text, p_outcome text, p_detail text)",
    {
      returns: "void",
      language: "plpgsql",
      callers: ["login_etl_consumer", "pii_recoverer"],
      body: `
BEGIN
  IF p_action NOT IN ('recover', 'forget') OR p_outcome NOT IN ('denied', 'failed') THEN
    RAISE EXCEPTION 'login_etl_audit_note records only denied or failed recover and forget attempts'
      USING ERRCODE = '22023';
  END IF;
  INSERT INTO login_etl_audit (actor, action, masked_value, reason, outcome, detail)
  SELECT p_actor, p_action, m, p_reason, p_outcome, p_detail
  FROM unnest(coalesce(p_masked, ARRAY[NULL::text])) AS m;
END`,
    },
  ),
  // The recoverer's view of the trail, oldest first from an id on.
  definer("login_etl_audit_list(p_after bigint, p_limit integer)", {
    returns: "SETOF login_etl_audit",
    language: "sql",
    callers: ["pii_recoverer"],
    body: `
SELECT * FROM login_etl_audit WHERE id > p_after ORDER BY id LIMIT least(p_limit, 10000)`,
  }),
];

/**
 * Version 3, for analysts: the app_version integer back as text, and one
 * row per masked value seen in more than one login. Repeated values are what
 * masking keeps findable: an address in two spellings (`::ffff:1.2.3.4`,
 * `1.2.3.4`) is canonicalised before masking, so it is one value here.
 */
const V3_ANALYSTS: readonly string[] = [
  // IMMUTABLE and STRICT: usable in indexes and WHERE clauses, NULL for NULL.
  `CREATE OR REPLACE FUNCTION app_version_text(encoded integer) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
      SELECT CASE WHEN encoded BETWEEN 0 AND 999999999
        THEN (encoded / 1000000) || '.' || (encoded / 1000 % 1000) || '.' || (encoded % 1000) END
    $$`,
  `CREATE OR REPLACE VIEW user_logins_duplicate_ips AS
    SELECT masked_ip, count(*) AS logins, count(DISTINCT user_id) AS users,
           min(create_date) AS first_date, max(create_date) AS last_date
    FROM user_logins WHERE masked_ip IS NOT NULL
    GROUP BY masked_ip HAVING count(*) > 1`,
  `CREATE OR REPLACE VIEW user_logins_duplicate_devices AS
    SELECT masked_device_id, count(*) AS logins, count(DISTINCT user_id) AS users,
           min(create_date) AS first_date, max(create_date) AS last_date
    FROM user_logins WHERE masked_device_id IS NOT NULL
    GROUP BY masked_device_id HAVING count(*) > 1`,
];

/**
 * An index built without blocking inserts (docs/performance.md has what it
 * costs and saves). A build that failed leaves an invalid index of that name
 * behind, which `IF NOT EXISTS` would then keep forever: it is dropped first.
 */
function concurrentIndex(name: string, definition: string): string[] {
  return [
    `DO $$ BEGIN
  IF EXISTS (SELECT FROM pg_index WHERE indexrelid = to_regclass('${name}') AND NOT indisvalid) THEN
    DROP INDEX ${name};
  END IF;
END $$`,
    `CREATE INDEX CONCURRENTLY IF NOT EXISTS ${name} ON ${definition}`,
  ];
}

/**
 * Version 4: the indexes that serve the duplicate views and look-ups of one
 * masked value. The covering columns let the views read the index alone.
 */
const V4_INDEXES: readonly string[] = [
  ...concurrentIndex(
    "user_logins_masked_ip",
    "user_logins (masked_ip) INCLUDE (user_id, create_date)",
  ),
  ...concurrentIndex(
    "user_logins_masked_device_id",
    "user_logins (masked_device_id) INCLUDE (user_id, create_date)",
  ),
];

/**
 * Version 5: the ledger partitioned by the UTC day of each message's
 * SentTimestamp, so that pruning drops a day's partition instead of deleting
 * rows. The day is the same on every delivery of a message, so the primary
 * key (message_id, sent_date) still finds a redelivery; a message that came
 * without a SentTimestamp is keyed by the day '-infinity' for the same
 * reason. The ids recorded before this version move there too, and the write
 * looks ids up there by message_id alone until they age out (db/write.ts).
 * Days without a partition (far past or future) land in the DEFAULT one.
 * Owner and grants carry over from the old table, so running consumers keep
 * their rights.
 */
const V5_LEDGER: readonly string[] = [
  `ALTER TABLE login_etl_ledger RENAME TO login_etl_ledger_unpartitioned`,
  `ALTER INDEX login_etl_ledger_pkey RENAME TO login_etl_ledger_unpartitioned_pkey`,
  `DROP INDEX login_etl_ledger_committed_at`,
  `CREATE TABLE login_etl_ledger (
    message_id   text NOT NULL,
    sent_date    date NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, sent_date)
) PARTITION BY RANGE (sent_date)`,
  `CREATE TABLE login_etl_ledger_undated PARTITION OF login_etl_ledger
    FOR VALUES FROM (MINVALUE) TO ('2000-01-01')`,
  `CREATE TABLE login_etl_ledger_other PARTITION OF login_etl_ledger DEFAULT`,
  `CREATE INDEX login_etl_ledger_undated_committed_at
    ON login_etl_ledger_undated USING brin (committed_at)`,
  `CREATE INDEX login_etl_ledger_other_committed_at
    ON login_etl_ledger_other USING brin (committed_at)`,
  `INSERT INTO login_etl_ledger (message_id, sent_date, committed_at)
    SELECT message_id, '-infinity', committed_at FROM login_etl_ledger_unpartitioned`,
  `DO $$
DECLARE
  old_table constant regclass := 'login_etl_ledger_unpartitioned';
  owner name;
  part text;
  grant_row record;
BEGIN
  SELECT pg_get_userbyid(relowner) INTO owner FROM pg_class WHERE oid = old_table;
  FOREACH part IN ARRAY ARRAY['login_etl_ledger', 'login_etl_ledger_undated', 'login_etl_ledger_other'] LOOP
    EXECUTE format('ALTER TABLE %I OWNER TO %I', part, owner);
  END LOOP;
  FOR grant_row IN
    SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END AS who
    FROM pg_class c, aclexplode(c.relacl) a
    WHERE c.oid = old_table AND a.grantee <> c.relowner AND a.privilege_type IN ('SELECT', 'INSERT')
  LOOP
    EXECUTE format('GRANT %s ON login_etl_ledger TO %s', grant_row.privilege_type, grant_row.who);
  END LOOP;
END $$`,
  `DROP TABLE login_etl_ledger_unpartitioned`,
  // Creates the day partitions a consumer will write into (from the oldest
  // day still within retention to three days ahead), drops those past it,
  // and deletes aged rows from the undated and DEFAULT partitions, at most
  // p_limit of them per call (callers repeat while it returns p_limit). A
  // day that already has rows in DEFAULT gets no partition: they would
  // conflict with it, and they age out there. Consumers call it through
  // this function so that they need no DDL rights; a lock it cannot get
  // within 2 s is left for the next call rather than queueing writes.
  definer("login_etl_ledger_maintain(p_retention_days integer, p_limit integer)", {
    returns: "TABLE (created integer, dropped integer, deleted integer)",
    language: "plpgsql",
    callers: ["login_etl_consumer"],
    body: `
DECLARE
  today constant date := (now() AT TIME ZONE 'UTC')::date;
  oldest constant date := today - greatest(p_retention_days, 1) - 1;
  day date;
  part record;
  n_created integer := 0;
  n_dropped integer := 0;
  n_deleted integer := 0;
BEGIN
  PERFORM set_config('lock_timeout', '2s', true);
  FOR day IN SELECT d::date FROM generate_series(oldest, today + 3, interval '1 day') AS d LOOP
    CONTINUE WHEN to_regclass(format('login_etl_ledger_p%s', to_char(day, 'YYYYMMDD'))) IS NOT NULL
      OR EXISTS (SELECT FROM login_etl_ledger_other WHERE sent_date = day);
    BEGIN
      EXECUTE format('CREATE TABLE login_etl_ledger_p%s PARTITION OF login_etl_ledger FOR VALUES FROM (%L) TO (%L)',
                     to_char(day, 'YYYYMMDD'), day, day + 1);
      n_created := n_created + 1;
    EXCEPTION WHEN lock_not_available THEN NULL;
    END;
  END LOOP;
  FOR part IN
    SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'login_etl_ledger'::regclass AND c.relname ~ '^login_etl_ledger_p[0-9]{8}$'
      AND to_date(substr(c.relname, 19), 'YYYYMMDD') < oldest
  LOOP
    BEGIN
      EXECUTE format('DROP TABLE %I', part.relname);
      n_dropped := n_dropped + 1;
    EXCEPTION WHEN lock_not_available THEN NULL;
    END;
  END LOOP;
  WITH aged AS (
    SELECT message_id, sent_date FROM login_etl_ledger_undated
    WHERE committed_at < now() - make_interval(days => greatest(p_retention_days, 1))
    UNION ALL
    SELECT message_id, sent_date FROM login_etl_ledger_other
    WHERE committed_at < now() - make_interval(days => greatest(p_retention_days, 1))
    LIMIT p_limit
  )
  DELETE FROM login_etl_ledger l USING aged
  WHERE l.message_id = aged.message_id AND l.sent_date = aged.sent_date;
  GET DIAGNOSTICS n_deleted = ROW_COUNT;
  RETURN QUERY SELECT n_created, n_dropped, n_deleted;
END`,
  }),
];

/**
 * The state schema as the statements read it: the session setting
 * `login_etl.state_schema`, else login-etl's default. `migrate` always sets
 * it; a DBA running sql/schema.sql with psql sets it for another name.
 */
export const STATE_SCHEMA_SETTING =
  "coalesce(nullif(current_setting('login_etl.state_schema', true), ''), 'login_etl')";

/** The version that moved the migrations table (and the rest) to the state schema. */
export const STATE_SCHEMA_VERSION = 6;

/**
 * Buckets of the per-mask locks: a mask locks the row `mask N`, N its
 * `hashtext` modulo this. More buckets wait less on one another; each row
 * is one tuple, and a lock on it one of its header bits (not a lock table entry).
 */
export const MASK_LOCK_BUCKETS = 1024;

/**
 * The rows login-etl serialises on, in the state schema, created with it
 * (version 6): `schema`, which `migrate` locks in each migration's
 * transaction (schema.ts), and `mask 0` … `mask 1023`, which `forget` and
 * the inbox merge lock per mask (`login_etl_lock_masks`, version 8). They
 * replaced advisory locks, which any login of the cluster may take (holding
 * migrate or an erasure up for ever) and see in pg_locks (the hashes of the
 * masks being erased): a row lock needs UPDATE on the table, which only its
 * owner, and so only the definer functions, has; and pg_locks shows no row
 * locks, only the table's (that one of them runs) and, while one waits for
 * another, the tuple waited for. The rows are stored in random order, so
 * that tuple's position tells nothing of its bucket (docs/pii.md).
 */
const LOCKS_TABLE_SQL = `DO $$
DECLARE
  state constant text := ${QUALIFIED_STATE_SCHEMA_SETTING};
BEGIN
  EXECUTE pg_catalog.format('CREATE TABLE %I.login_etl_locks (name text PRIMARY KEY)', state);
  -- In random order (gen_random_uuid: strong randomness, built in since 13):
  -- the tuple a waiting session's lock names in pg_locks, seen by every
  -- login, is then no function of the bucket, and so of the mask.
  EXECUTE pg_catalog.format($i$INSERT INTO %I.login_etl_locks (name) SELECT n.name FROM (SELECT 'schema'
    UNION ALL SELECT pg_catalog.textcat('mask ', b::text) FROM pg_catalog.generate_series(0, %s) AS b) AS n(name)
    ORDER BY pg_catalog.gen_random_uuid()$i$,
    state, ${MASK_LOCK_BUCKETS} - 1);
  EXECUTE pg_catalog.format('REVOKE ALL ON %I.login_etl_locks FROM PUBLIC', state);
END $$`;

/**
 * Version 6: login-etl's own tables and functions leave the analysts' schema
 * for the state schema, so that a role granted the data schema sees
 * user_logins, its views and app_version_text() and nothing else.
 *
 * ALTER … SET SCHEMA keeps each object's owner, grants, indexes,
 * constraints, owned sequences (the audit id) and row type, and the views
 * and functions that use them refer to them by OID. Partitions are tables of
 * their own and move one by one. The SECURITY DEFINER functions move too and
 * get `search_path` pinned to the state schema (then pg_temp) instead of the
 * data schema, so their unqualified names still mean login-etl's tables.
 *
 * Roles that held a privilege on anything that moves get USAGE on the state
 * schema, and owners CREATE as well (login_etl_ledger_maintain creates day
 * partitions with its owner's rights), so running consumers and recoverers
 * keep their way in; PUBLIC gets nothing, and neither does an owner that
 * search_path.ts does not trust (the owner role, `login_etl.owner_role`, is
 * the one that should own them; the migrating role is not trusted here, so
 * no login keeps CREATE after it migrated). `login_etl_layout` records which
 * data schema the state schema serves: a second deployment with another
 * `--schema` and the same state schema would share one ledger (each skipping
 * the other's message ids as redeliveries), one key registry and one vault,
 * so it is refused, here and by every command at start (schema.ts). One
 * view stays in the data schema, `login_etl_migrations` (versions, names and
 * the state schema's name), so that a binary older than this migration
 * refuses to start there instead of creating a second, empty ledger.
 */
const V6_STATE_SCHEMA: readonly string[] = [
  `DO $$
DECLARE
  data constant text := current_schema();
  state constant text := ${STATE_SCHEMA_SETTING};
  data_oid oid;
  served text;
  taken text;
  grantee record;
  moved text;
BEGIN
  SELECT oid INTO data_oid FROM pg_namespace WHERE nspname = data;
  IF data_oid IS NULL OR state = data THEN
    RAISE EXCEPTION 'login-etl''s state schema must be apart from the data schema (search_path %, login_etl.state_schema %)',
      coalesce(data, 'empty'), state USING ERRCODE = '22023';
  END IF;
  SELECT string_agg(c.relname, ', ' ORDER BY c.relname) INTO taken
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = state AND c.relkind IN ('r', 'p') AND c.relname LIKE 'login\\_etl\\_%';
  IF taken IS NOT NULL THEN
    IF to_regclass(format('%I.login_etl_layout', state)) IS NOT NULL THEN
      EXECUTE format('SELECT data_schema FROM %I.login_etl_layout', state) INTO served;
    END IF;
    RAISE EXCEPTION 'State schema % already holds login-etl''s tables for schema %: give schema % its own state schema (--state-schema, or login_etl.state_schema with psql)',
      state, coalesce(served, 'unknown'), data USING ERRCODE = '42P06';
  END IF;
  -- Only when missing: even with IF NOT EXISTS, CREATE SCHEMA needs CREATE on
  -- the database, which an owner role migrating into a schema the DBA made
  -- for it lacks.
  IF NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = state) THEN
    EXECUTE format('CREATE SCHEMA %I', state);
  END IF;
  FOR grantee IN
    SELECT g.role, bool_or(g.owner) AS owner FROM (
      SELECT c.relowner AS role, true AS owner, c.relacl AS acl FROM pg_class c
      WHERE c.relnamespace = data_oid AND c.relkind IN ('r', 'p') AND (c.relname IN
        ('login_etl_migrations', 'login_etl_ledger', 'login_etl_rejects', 'login_etl_keys',
         'login_etl_vault', 'login_etl_audit') OR c.relispartition AND c.relname LIKE 'login\\_etl\\_ledger\\_%')
      UNION ALL
      SELECT p.proowner, true, p.proacl FROM pg_proc p
      WHERE p.pronamespace = data_oid AND p.proname IN ('login_etl_vault_put', 'login_etl_recover',
        'login_etl_forget', 'login_etl_audit_note', 'login_etl_audit_list', 'login_etl_ledger_maintain')
    ) o, LATERAL (SELECT o.role, o.owner UNION ALL SELECT a.grantee, false FROM aclexplode(o.acl) a) g
    WHERE g.role <> 0 AND g.role <> (SELECT nspowner FROM pg_namespace WHERE nspname = state)
    GROUP BY g.role
    -- An owner that search_path.ts's rule does not trust gets nothing.
    HAVING NOT bool_or(g.owner) OR g.role IN (${
    trustedRolesSql("data", `ARRAY[${OWNER_ROLE_SETTING}]`)
  })
  LOOP
    EXECUTE format('GRANT %s ON SCHEMA %I TO %I', CASE WHEN grantee.owner THEN 'USAGE, CREATE' ELSE 'USAGE' END,
                   state, pg_get_userbyid(grantee.role));
  END LOOP;
  FOREACH moved IN ARRAY ARRAY['login_etl_migrations', 'login_etl_ledger', 'login_etl_rejects',
                               'login_etl_keys', 'login_etl_vault', 'login_etl_audit'] LOOP
    EXECUTE format('ALTER TABLE %I.%I SET SCHEMA %I', data, moved, state);
  END LOOP;
  FOR moved IN
    SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = format('%I.login_etl_ledger', state)::regclass AND c.relnamespace = data_oid
  LOOP
    EXECUTE format('ALTER TABLE %I.%I SET SCHEMA %I', data, moved, state);
  END LOOP;
  FOREACH moved IN ARRAY ARRAY['login_etl_vault_put(text[], text[], bytea[], bytea[], text[])',
                               'login_etl_recover(text[], text, text)',
                               'login_etl_forget(text[], text, text)',
                               'login_etl_audit_note(text, text[], text, text, text, text)',
                               'login_etl_audit_list(bigint, integer)',
                               'login_etl_ledger_maintain(integer, integer)'] LOOP
    EXECUTE format('ALTER FUNCTION %I.%s SET SCHEMA %I', data, moved, state);
    EXECUTE format('ALTER FUNCTION %I.%s SET search_path = %I, pg_temp', state, moved, state);
  END LOOP;
  EXECUTE format('CREATE TABLE %I.login_etl_layout (
    data_schema text NOT NULL,
    one_row     boolean PRIMARY KEY DEFAULT true CHECK (one_row)
  )', state);
  EXECUTE format('INSERT INTO %I.login_etl_layout (data_schema) VALUES (%L)', state, data);
  EXECUTE format('GRANT SELECT ON %I.login_etl_layout TO PUBLIC', state);
  -- What a login-etl older than version 6 reads at start, in the data
  -- schema: with no migrations table there it would take the database for
  -- a new one and create an empty ledger (a role that may create tables),
  -- writing redelivered messages twice. This view shows it version 6, newer
  -- than it knows, so it refuses to start, as a rolling upgrade's old pods
  -- must; and a newer one given another --state-schema is told where the
  -- tables went. Versions, names and the state schema's name only.
  EXECUTE format('CREATE VIEW %I.login_etl_migrations AS SELECT version, name, %L::text AS state_schema FROM %I.login_etl_migrations',
                 data, state, state);
  EXECUTE format('COMMENT ON VIEW %I.login_etl_migrations IS %L', data,
                 format('login-etl''s schema version, kept here so that a login-etl built before version 6 refuses to start; its tables are in schema %s', state));
  EXECUTE format('GRANT SELECT ON %I.login_etl_migrations TO PUBLIC', data);
END $$`,
  LOCKS_TABLE_SQL,
];

/**
 * Most day partitions `login_etl_ledger_maintain` creates, and most it drops,
 * in one call: each takes locks until the call's transaction ends, and a
 * consumer may call it, so one call must not fill the server's lock table
 * (64 locks a connection by default). `prune` calls again while it hits this.
 */
export const LEDGER_PARTITIONS_PER_CALL = 32;

/** Most aged ledger rows `login_etl_ledger_maintain` deletes in one call (`prune` asks 10,000). */
const LEDGER_MAINTAIN_MAX_ROWS = 10_000;

const LEDGER_MAINTAIN_SIGNATURE =
  "login_etl_ledger_maintain(p_retention_days integer, p_limit integer)";

/** `login_etl_ledger_maintain` as version 7 made it (version 9 adds a lock). */
const V7_LEDGER_MAINTAIN = {
  returns: "TABLE (created integer, dropped integer, deleted integer)",
  language: "plpgsql",
  callers: ["login_etl_consumer"],
  body: `
DECLARE
  today constant date := (pg_catalog.now() AT TIME ZONE 'UTC')::date;
  oldest constant date := today - p_retention_days - 1;
  ledger constant oid := pg_catalog.to_regclass(pg_catalog.format('%I.login_etl_ledger', {state_literal}))::oid;
  day date;
  part record;
  n_created integer := 0;
  n_dropped integer := 0;
  n_deleted integer := 0;
BEGIN
  IF p_retention_days IS NULL OR p_retention_days NOT BETWEEN 1 AND ${LEDGER_RETENTION_MAX_DAYS} THEN
    RAISE EXCEPTION 'login_etl_ledger_maintain keeps the ledger 1 to ${LEDGER_RETENTION_MAX_DAYS} days, not %', p_retention_days
      USING ERRCODE = '22023';
  END IF;
  IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND ${LEDGER_MAINTAIN_MAX_ROWS} THEN
    RAISE EXCEPTION 'login_etl_ledger_maintain deletes 1 to ${LEDGER_MAINTAIN_MAX_ROWS} rows a call, not %', p_limit
      USING ERRCODE = '22023';
  END IF;
  PERFORM pg_catalog.set_config('lock_timeout', '2s', true);
  FOR day IN
    SELECT d::date FROM pg_catalog.generate_series(oldest::timestamp, (today + 3)::timestamp, interval '1 day') AS d
  LOOP
    EXIT WHEN n_created = ${LEDGER_PARTITIONS_PER_CALL};
    CONTINUE WHEN pg_catalog.to_regclass(pg_catalog.format('%I.%I', {state_literal},
                    'login_etl_ledger_p' || pg_catalog.to_char(day::timestamp, 'YYYYMMDD'))) IS NOT NULL
      OR EXISTS (SELECT FROM {state}.login_etl_ledger_other WHERE sent_date = day);
    BEGIN
      EXECUTE pg_catalog.format('CREATE TABLE %I.%I PARTITION OF %I.login_etl_ledger FOR VALUES FROM (%L) TO (%L)',
                                {state_literal}, 'login_etl_ledger_p' || pg_catalog.to_char(day::timestamp, 'YYYYMMDD'),
                                {state_literal}, day, day + 1);
      n_created := n_created + 1;
    EXCEPTION WHEN lock_not_available THEN NULL;
    END;
  END LOOP;
  FOR part IN
    SELECT c.relname FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = ledger AND c.relname::text ~ '^login_etl_ledger_p[0-9]{8}$'
      AND pg_catalog.to_date(pg_catalog.substr(c.relname::text, 19), 'YYYYMMDD') < oldest
    ORDER BY c.relname LIMIT ${LEDGER_PARTITIONS_PER_CALL}
  LOOP
    BEGIN
      EXECUTE pg_catalog.format('DROP TABLE %I.%I', {state_literal}, part.relname);
      n_dropped := n_dropped + 1;
    EXCEPTION WHEN lock_not_available THEN NULL;
    END;
  END LOOP;
  WITH aged AS (
    SELECT message_id, sent_date FROM {state}.login_etl_ledger_undated
    WHERE committed_at < pg_catalog.now() - pg_catalog.make_interval(days => p_retention_days)
    UNION ALL
    SELECT message_id, sent_date FROM {state}.login_etl_ledger_other
    WHERE committed_at < pg_catalog.now() - pg_catalog.make_interval(days => p_retention_days)
    LIMIT p_limit
  )
  DELETE FROM {state}.login_etl_ledger l USING aged
  WHERE l.message_id = aged.message_id AND l.sent_date = aged.sent_date;
  GET DIAGNOSTICS n_deleted = ROW_COUNT;
  RETURN QUERY SELECT n_created, n_dropped, n_deleted;
END`,
} as const;

/** Most minutes between a release ticket's request and its release. */
const RELEASE_TICKET_MINUTES = 10;

/**
 * Version 7: no hijackable definer code, and release only after its audit
 * commits.
 *
 * Every SECURITY DEFINER function is created again (`stateDefiner`):
 * `search_path` pg_catalog, the state schema, pg_temp, and every call and
 * table qualified, so nothing someone else planted in a searched schema runs
 * with the owner's rights. Their behaviour is as before, except
 * `login_etl_audit_note`, which now takes only well-formed masks and at most
 * `AUDIT_NOTE_MAX_MASKS` of them a call.
 *
 * `login_etl_recover` returned the ciphertext in the transaction that wrote
 * its audit rows, so a recoverer who rolled back read the vault with no
 * audit row left. It is dropped. Recovery takes two transactions now:
 * `login_etl_release_request` writes the audit rows and a ticket naming the
 * masks it found live, and the caller commits; `login_etl_release` hands out
 * the ciphertext of a ticket once, to the login that asked, only when the
 * request's transaction has committed (so not in the transaction, or a
 * savepoint of the transaction, that made it) and within
 * `RELEASE_TICKET_MINUTES`. Who could execute `login_etl_recover` may
 * execute both; the new table and functions belong to the owner of the vault.
 */
const V7_DEFINERS: readonly string[] = [
  `DO $$
DECLARE
  state constant text := ${QUALIFIED_STATE_SCHEMA_SETTING};
BEGIN
  EXECUTE pg_catalog.format('CREATE TABLE %I.login_etl_release_tickets (
    id            bigserial PRIMARY KEY,
    requested_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    requested_by  text NOT NULL DEFAULT SESSION_USER,
    requested_xid bigint NOT NULL DEFAULT pg_catalog.txid_current(),
    actor         text NOT NULL,
    masks         text[] NOT NULL,
    released_at   timestamptz
  )', state);
  EXECUTE pg_catalog.format('REVOKE ALL ON %I.login_etl_release_tickets FROM PUBLIC', state);
END $$`,
  stateDefiner(
    "login_etl_vault_put(p_masked text[], p_field text[], p_ciphertext bytea[], p_iv bytea[], p_key_id text[])",
    {
      returns: "void",
      language: "sql",
      callers: ["login_etl_consumer"],
      body: `
INSERT INTO {state}.login_etl_vault AS v (masked_value, field, ciphertext, iv, key_id)
SELECT DISTINCT ON (u.m) u.m, u.f, u.c, u.i, u.k
FROM ROWS FROM (pg_catalog.unnest(p_masked), pg_catalog.unnest(p_field), pg_catalog.unnest(p_ciphertext),
                pg_catalog.unnest(p_iv), pg_catalog.unnest(p_key_id)) AS u(m, f, c, i, k)
ORDER BY u.m
ON CONFLICT (masked_value) DO UPDATE SET first_seen = v.first_seen`,
    },
  ),
  stateDefiner("login_etl_forget(p_masked text[], p_actor text, p_reason text)", {
    returns: "TABLE (masked_value text, outcome text)",
    language: "plpgsql",
    callers: ["pii_recoverer"],
    body: `
#variable_conflict use_column
BEGIN
  IF COALESCE(pg_catalog.btrim(p_reason), '') = '' THEN
    INSERT INTO {state}.login_etl_audit (actor, action, masked_value, reason, outcome, detail)
    SELECT p_actor, 'forget', m, p_reason, 'denied', 'no reason given' FROM pg_catalog.unnest(p_masked) AS m;
    RETURN QUERY SELECT m, 'denied'::text FROM pg_catalog.unnest(p_masked) AS m;
    RETURN;
  END IF;
  RETURN QUERY
  WITH asked AS (SELECT DISTINCT pg_catalog.unnest(p_masked) AS m),
  erased AS (
    INSERT INTO {state}.login_etl_vault AS v (masked_value, erased_at)
    SELECT m, pg_catalog.now() FROM asked ORDER BY m
    ON CONFLICT (masked_value) DO UPDATE
      SET ciphertext = NULL, iv = NULL, key_id = NULL, erased_at = pg_catalog.now()
      WHERE v.erased_at IS NULL
    RETURNING v.masked_value, (v.xmax = 0) AS created
  ),
  outcomes AS (
    SELECT a.m, CASE WHEN e.masked_value IS NOT NULL AND NOT e.created
                     THEN 'success' ELSE 'not_found' END AS o
    FROM asked a LEFT JOIN erased e ON e.masked_value = a.m
  ),
  audited AS (
    INSERT INTO {state}.login_etl_audit (actor, action, masked_value, reason, outcome, detail)
    SELECT p_actor, 'forget', o.m, p_reason, o.o,
           CASE o.o WHEN 'success' THEN 'vault entry erased' ELSE 'no live vault entry; tombstone kept' END
    FROM outcomes o
  )
  SELECT o.m, o.o FROM outcomes o;
END`,
  }),
  stateDefiner(
    "login_etl_audit_note(p_action text, p_masked text[], p_actor text, p_reason text, p_outcome text, p_detail text)",
    {
      returns: "void",
      language: "plpgsql",
      callers: ["login_etl_consumer", "pii_recoverer"],
      body: `
BEGIN
  IF p_action IS NULL OR p_outcome IS NULL OR p_action NOT IN ('recover', 'forget')
     OR p_outcome NOT IN ('denied', 'failed') THEN
    RAISE EXCEPTION 'login_etl_audit_note records only denied or failed recover and forget attempts'
      USING ERRCODE = '22023';
  END IF;
  IF COALESCE(pg_catalog.btrim(p_actor), '') = '' OR pg_catalog.char_length(p_actor) > ${AUDIT_ACTOR_MAX_CHARS} THEN
    RAISE EXCEPTION 'login_etl_audit_note needs an actor of 1 to ${AUDIT_ACTOR_MAX_CHARS} characters'
      USING ERRCODE = '22023';
  END IF;
  IF pg_catalog.char_length(p_reason) > ${AUDIT_TEXT_MAX_CHARS} OR pg_catalog.char_length(p_detail) > ${AUDIT_TEXT_MAX_CHARS} THEN
    RAISE EXCEPTION 'login_etl_audit_note takes a reason and a detail of at most ${AUDIT_TEXT_MAX_CHARS} characters each'
      USING ERRCODE = '22023';
  END IF;
  IF COALESCE(pg_catalog.cardinality(p_masked), 0) = 0 THEN
    RAISE EXCEPTION 'login_etl_audit_note needs at least one mask' USING ERRCODE = '22023';
  END IF;
  IF pg_catalog.cardinality(p_masked) > ${AUDIT_NOTE_MAX_MASKS} THEN
    RAISE EXCEPTION 'login_etl_audit_note takes at most ${AUDIT_NOTE_MAX_MASKS} masks a call, not %',
      pg_catalog.cardinality(p_masked) USING ERRCODE = '22023';
  END IF;
  IF EXISTS (SELECT FROM pg_catalog.unnest(p_masked) AS m
             WHERE m IS NULL OR m !~ '${MASK_SQL_PATTERN}') THEN
    RAISE EXCEPTION 'login_etl_audit_note takes only masks: a key id, a colon and 43 base64url characters'
      USING ERRCODE = '22023';
  END IF;
  INSERT INTO {state}.login_etl_audit (actor, action, masked_value, reason, outcome, detail)
  SELECT p_actor, p_action, m, p_reason, p_outcome, p_detail FROM pg_catalog.unnest(p_masked) AS m;
END`,
    },
  ),
  stateDefiner("login_etl_audit_list(p_after bigint, p_limit integer)", {
    returns: "SETOF {state}.login_etl_audit",
    language: "sql",
    callers: ["pii_recoverer"],
    body: `
SELECT * FROM {state}.login_etl_audit WHERE id > p_after ORDER BY id LIMIT LEAST(p_limit, 10000)`,
  }),
  stateDefiner(LEDGER_MAINTAIN_SIGNATURE, V7_LEDGER_MAINTAIN),
  // The first half of a recovery: audits each mask (released, erased,
  // not_found; denied without a reason) and records a ticket for the masks
  // found live. Nothing leaves until the caller's transaction commits both.
  // Tickets older than a day are deleted here: the audit trail is the record.
  stateDefiner("login_etl_release_request(p_masked text[], p_actor text, p_reason text)", {
    returns: "TABLE (ticket bigint, masked_value text, state text)",
    language: "plpgsql",
    callers: ["pii_recoverer"],
    body: `
#variable_conflict use_column
BEGIN
  IF COALESCE(pg_catalog.cardinality(p_masked), 0) = 0 THEN
    RAISE EXCEPTION 'login_etl_release_request needs at least one mask' USING ERRCODE = '22023';
  END IF;
  IF EXISTS (SELECT FROM pg_catalog.unnest(p_masked) AS m
             WHERE m IS NULL OR m !~ '${MASK_SQL_PATTERN}') THEN
    RAISE EXCEPTION 'login_etl_release_request takes only masks: a key id, a colon and 43 base64url characters'
      USING ERRCODE = '22023';
  END IF;
  IF COALESCE(pg_catalog.btrim(p_reason), '') = '' THEN
    INSERT INTO {state}.login_etl_audit (actor, action, masked_value, reason, outcome, detail)
    SELECT p_actor, 'recover', m, p_reason, 'denied', 'no reason given' FROM pg_catalog.unnest(p_masked) AS m;
    RETURN QUERY SELECT NULL::bigint, m, 'denied'::text FROM pg_catalog.unnest(p_masked) AS m;
    RETURN;
  END IF;
  DELETE FROM {state}.login_etl_release_tickets WHERE requested_at < pg_catalog.now() - interval '1 day';
  RETURN QUERY
  WITH asked AS (SELECT DISTINCT pg_catalog.unnest(p_masked) AS m),
  found AS (
    SELECT a.m, v.field,
           CASE WHEN v.masked_value IS NOT NULL AND v.erased_at IS NOT NULL THEN 'erased'
                WHEN v.masked_value IS NOT NULL THEN 'released'
                -- A merge's claim dropped its inbox entries (the cap per
                -- mask and login, audited): not "never vaulted".
                WHEN EXISTS (SELECT FROM {state}.login_etl_audit d
                             WHERE d.masked_value = a.m AND d.action = 'merge' AND d.outcome = 'dropped')
                  THEN 'dropped'
                ELSE 'not_found' END AS s
    FROM asked a LEFT JOIN {state}.login_etl_vault v ON v.masked_value = a.m
  ),
  issued AS (
    INSERT INTO {state}.login_etl_release_tickets (actor, masks)
    SELECT p_actor, pg_catalog.array_agg(f.m ORDER BY f.m) FROM found f WHERE f.s = 'released'
    HAVING pg_catalog.count(*) > 0
    RETURNING id
  ),
  audited AS (
    INSERT INTO {state}.login_etl_audit (actor, action, masked_value, reason, outcome, detail)
    SELECT p_actor, 'recover', f.m, p_reason, CASE f.s WHEN 'dropped' THEN 'not_found' ELSE f.s END,
           CASE f.s WHEN 'released' THEN 'ciphertext released on ticket ' || i.id::text || ', field ' || f.field
                    WHEN 'erased' THEN 'erased by forget'
                    WHEN 'dropped' THEN 'no vault entry: its inbox entries were dropped by a merge (see its merge audit rows)'
                    ELSE 'no vault entry' END
    FROM found f LEFT JOIN issued i ON true
  )
  SELECT i.id, f.m, f.s FROM found f LEFT JOIN issued i ON true;
END`,
  }),
  // The second half: the ciphertext of a committed ticket, once. The ticket
  // must be this login's (session_user, whatever SET ROLE says), unused,
  // younger than RELEASE_TICKET_MINUTES, and made by a transaction that has
  // committed. txid_status of the request's top-level transaction id (saved
  // in the ticket) says 'in progress' in that transaction and in every
  // savepoint of it, where comparing the row's xmin with the current
  // transaction would miss a subtransaction's. A mask erased or moved since
  // the request comes back as such, without ciphertext. A release rolled
  // back leaves its ticket unused; its audit rows are committed either way.
  stateDefiner("login_etl_release(p_ticket bigint)", {
    returns:
      "TABLE (masked_value text, field text, ciphertext bytea, iv bytea, key_id text, state text)",
    language: "plpgsql",
    callers: ["pii_recoverer"],
    body: `
#variable_conflict use_column
DECLARE
  t record;
BEGIN
  SELECT k.id, k.masks, k.requested_at, k.requested_xid, k.released_at INTO t
  FROM {state}.login_etl_release_tickets k
  WHERE k.id = p_ticket AND k.requested_by = SESSION_USER::text
  FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'No release ticket % for login %', p_ticket, SESSION_USER USING ERRCODE = 'P0002';
  END IF;
  IF t.released_at IS NOT NULL THEN
    RAISE EXCEPTION 'Release ticket % was used already: request another', p_ticket USING ERRCODE = '55000';
  END IF;
  IF pg_catalog.txid_status(t.requested_xid) IS DISTINCT FROM 'committed' THEN
    RAISE EXCEPTION 'Release ticket % is not committed: commit the request, and its audit rows, before the release',
      p_ticket USING ERRCODE = '55000';
  END IF;
  IF t.requested_at < pg_catalog.now() - interval '${RELEASE_TICKET_MINUTES} minutes' THEN
    RAISE EXCEPTION 'Release ticket % expired (${RELEASE_TICKET_MINUTES} minutes): request another', p_ticket
      USING ERRCODE = '55000';
  END IF;
  UPDATE {state}.login_etl_release_tickets SET released_at = pg_catalog.now() WHERE id = t.id;
  RETURN QUERY
  SELECT a.m, v.field, v.ciphertext, v.iv, v.key_id,
         CASE WHEN v.masked_value IS NULL THEN 'not_found'
              WHEN v.erased_at IS NOT NULL THEN 'erased' ELSE 'released' END
  FROM pg_catalog.unnest(t.masks) AS a(m) LEFT JOIN {state}.login_etl_vault v ON v.masked_value = a.m;
END`,
  }),
  // The ticket table and the two new functions belong to the vault's owner
  // (migrate may run as a superuser); whoever could execute
  // login_etl_recover may execute both; then it goes.
  `DO $$
DECLARE
  state constant text := ${QUALIFIED_STATE_SCHEMA_SETTING};
  recover constant regprocedure :=
    pg_catalog.to_regprocedure(pg_catalog.format('%I.login_etl_recover(text[], text, text)', state));
  keeper name;
  grantee record;
  made text;
BEGIN
  SELECT pg_catalog.pg_get_userbyid(c.relowner) INTO keeper FROM pg_catalog.pg_class c
  WHERE c.oid = pg_catalog.to_regclass(pg_catalog.format('%I.login_etl_vault', state))::oid;
  EXECUTE pg_catalog.format('ALTER TABLE %I.login_etl_release_tickets OWNER TO %I', state, keeper);
  FOREACH made IN ARRAY ARRAY['login_etl_release_request(text[], text, text)', 'login_etl_release(bigint)'] LOOP
    EXECUTE pg_catalog.format('ALTER FUNCTION %I.%s OWNER TO %I', state, made, keeper);
    FOR grantee IN
      SELECT pg_catalog.pg_get_userbyid(a.grantee) AS role
      FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) AS a
      WHERE p.oid = recover::oid AND a.grantee <> p.proowner AND a.grantee <> 0::oid
        AND a.privilege_type = 'EXECUTE'
    LOOP
      EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %I.%s TO %I', state, made, grantee.role);
    END LOOP;
  END LOOP;
  EXECUTE pg_catalog.format('DROP FUNCTION IF EXISTS %I.login_etl_recover(text[], text, text)', state);
END $$`,
];

/**
 * Version 8: no membership oracle, and erasure that survives rotation.
 *
 * - **The inbox.** `login_etl_vault_put`, the consumer's only way in, now
 *   appends its entries to `login_etl_vault_inbox` and reads nothing: the
 *   same insert whatever the vault holds, so neither its answer, its
 *   statistics (`pg_stat_xact_user_tables`) nor its locks tell a consumer
 *   whether a value is known or erased. A holder of the vault and HMAC keys
 *   merges the inbox (`claim`, then `claimed` in a later transaction, then
 *   `settle`): only entries that decrypt and mask back to their mask are
 *   accepted, and an entry whose value is erased under any key is dropped,
 *   its masks tombstoned. A recoverer merges only the masks it recovers,
 *   each audited before the ciphertext can leave; the whole inbox only the
 *   owner.
 * - **Links.** `login_etl_vault_links` records masks of one value under two
 *   HMAC keys: a rekey's old → new, a merge's entry and its value's masks
 *   under the merger's other keys. `forget` erases every mask linked to one
 *   it erases, reading the links after it holds the masks' locks, so a
 *   rekey or merge in flight cannot slip a live copy past it.
 * - **Per-mask locks.** `forget` and `settle` lock the `login_etl_locks`
 *   row of every mask they read or write (`login_etl_lock_masks`), which
 *   serialises them even on masks with no row yet.
 */
/**
 * Most entries one `login_etl_vault_put` call takes: a consumer's largest
 * transaction (`--max-rows`' ceiling) vaults at most an ip and a device id
 * per message.
 */
export const VAULT_PUT_MAX_ENTRIES = MAX_ROWS_MAX * 2;

/**
 * Inbox entries of one mask a claim hands out: the oldest this many of a
 * mask's well-formed entries; a claim deletes the rest (and entries over the
 * size bound), counted and audited as dropped. A consumer writes one entry
 * per value and batch, so between merges a mask gathers about one per
 * consumer process that saw it; junk piled on one mask (12 of 8 MB took
 * `recover --masked` to 379 MB) reaches no merger's or recoverer's memory.
 */
export const INBOX_ENTRIES_PER_MASK = 8;

/** SQL: a key id as `login_etl_vault_put` takes it (KEY_ID_PATTERN of config/options.ts). */
const VAULT_KEY_ID_SQL_PATTERN = `^${KEY_ID_PATTERN.source.slice(1, -1)}$`;

/** Longest mask: a key id of 16 characters, a colon and 43 (MASK_SQL_PATTERN). */
const MASK_MAX_CHARS = 16 + 1 + 43;

/** Longest login name Postgres keeps (NAMEDATALEN - 1 bytes). */
const LOGIN_MAX_BYTES = 63;

/**
 * SQL: inbox entry `e` has the shape of what `login_etl_vault_put` takes:
 * a mask, a field, a key id, a ciphertext and iv of sizes one of our
 * formats makes, and a login's name. Each length is read before any pattern
 * (octet_length reads a stored value's size, not the value; CASE keeps the
 * order), so a 60 MB column is dropped without being read.
 */
function wellSized(e: string): string {
  return `(CASE WHEN pg_catalog.octet_length(${e}.ciphertext) <= ${MAX_CIPHERTEXT_BYTES}
                 AND pg_catalog.octet_length(${e}.iv) IN (${SYMMETRIC_IV_BYTES}, ${HEADER_BYTES})
                 AND pg_catalog.octet_length(${e}.masked_value) <= ${MASK_MAX_CHARS}
                 AND pg_catalog.octet_length(${e}.key_id) <= 16
                 AND pg_catalog.octet_length(${e}.written_by) <= ${LOGIN_MAX_BYTES}
            THEN ${e}.masked_value ~ '${MASK_SQL_PATTERN}' AND ${e}.key_id ~ '${VAULT_KEY_ID_SQL_PATTERN}'
                 AND ${e}.field IN ('ip', 'device_id')
            ELSE false END)`;
}

/**
 * SQL: inbox entry `e` is well sized and among the oldest
 * INBOX_ENTRIES_PER_MASK well-sized entries its login wrote for its mask:
 * one index range read of at most that many rows, however many a flood
 * piled on the mask. Per login, so one consumer login's junk on a mask it
 * predicts cannot crowd out another login's genuine entry.
 */
function keptInInbox(e: string): string {
  return `(${wellSized(e)} AND ${e}.id <= coalesce((
             SELECT j.id FROM {state}.login_etl_vault_inbox j
             WHERE j.masked_value = ${e}.masked_value AND j.written_by = ${e}.written_by AND ${
    wellSized("j")
  }
             ORDER BY j.id OFFSET ${INBOX_ENTRIES_PER_MASK - 1} LIMIT 1), ${e}.id))`;
}

/** Longest wait for the per-mask locks before `forget` or a merge fails (Postgres' lock_timeout). */
const MASK_LOCK_TIMEOUT = "30s";

const V8_INBOX: readonly string[] = [
  `DO $$
DECLARE
  state constant text := ${QUALIFIED_STATE_SCHEMA_SETTING};
BEGIN
  -- Append-only and keyed by nothing of the entry: no unique index on the
  -- mask, so an insert never looks for, waits on or conflicts with another.
  EXECUTE pg_catalog.format($t$CREATE TABLE %1$I.login_etl_vault_inbox (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    masked_value text NOT NULL,
    field        text NOT NULL CHECK (field IN ('ip', 'device_id')),
    ciphertext   bytea NOT NULL,
    iv           bytea NOT NULL,
    key_id       text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    claim_id     bigint,
    -- Who wrote the entry: the claim's cap is per mask and login.
    written_by   text NOT NULL DEFAULT session_user,
    CONSTRAINT login_etl_vault_inbox_shape CHECK (
      pg_catalog.octet_length(masked_value) <= ${MASK_MAX_CHARS} AND pg_catalog.octet_length(key_id) <= 16
      AND pg_catalog.octet_length(written_by) <= ${LOGIN_MAX_BYTES})
  )$t$, state);
  -- With the login and the id: a claim finds the oldest entries of a mask
  -- and login without reading the rest.
  EXECUTE pg_catalog.format('CREATE INDEX login_etl_vault_inbox_masked_value ON %I.login_etl_vault_inbox (masked_value, written_by, id)', state);
  -- Recover says a mask's entries were dropped by the claim's cap, not
  -- that it was never vaulted: a look-up of those audit rows by mask.
  EXECUTE pg_catalog.format($i$CREATE INDEX login_etl_audit_dropped ON %I.login_etl_audit (masked_value)
    WHERE action = 'merge' AND outcome = 'dropped'$i$, state);
  EXECUTE pg_catalog.format('CREATE INDEX login_etl_vault_inbox_claim_id ON %I.login_etl_vault_inbox (claim_id)', state);
  -- Who claimed inbox entries to verify them, in which transaction: the
  -- entries are handed out only to that login, in a later transaction.
  EXECUTE pg_catalog.format($t$CREATE TABLE %1$I.login_etl_inbox_claims (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    db_user    text NOT NULL DEFAULT session_user,
    actor      text NOT NULL,
    xact       xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
    claimed_at timestamptz NOT NULL DEFAULT pg_catalog.now()
  )$t$, state);
  EXECUTE pg_catalog.format($t$CREATE TABLE %1$I.login_etl_vault_links (
    mask    text NOT NULL,
    other   text NOT NULL,
    made_by text NOT NULL CHECK (made_by IN ('rekey', 'merge')),
    made_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (mask, other)
  )$t$, state);
  EXECUTE pg_catalog.format('CREATE INDEX login_etl_vault_links_other ON %I.login_etl_vault_links (other)', state);
  -- HMAC key ids rekey --retire retired: every other recorded HMAC key id
  -- must be in the key set of a merge, a recovery or an erasure by value,
  -- since a tombstone under a key only that key can recompute.
  EXECUTE pg_catalog.format($t$CREATE TABLE %1$I.login_etl_key_retirements (
    key_id     text PRIMARY KEY,
    retired_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    db_user    text NOT NULL DEFAULT session_user
  )$t$, state);
END $$`,
  // Who registered each key id (login_etl_register_key sets it; rows from
  // before it say NULL), so a bogus or squatted id names its login.
  `DO $$
DECLARE
  state constant text := ${QUALIFIED_STATE_SCHEMA_SETTING};
BEGIN
  EXECUTE pg_catalog.format('ALTER TABLE %I.login_etl_keys ADD COLUMN registered_by text', state);
  EXECUTE pg_catalog.format('ALTER TABLE %I.login_etl_keys ALTER COLUMN registered_by SET DEFAULT session_user', state);
END $$`,
  // The HMAC key ids recorded in use (login_etl_keys, without the vault's)
  // and not retired: those a merger, recoverer or eraser must hold.
  // With who registered each and when, so a refusal can name a bogus one's login.
  stateDefiner("login_etl_hmac_keys_needed()", {
    returns: "TABLE (key_id text, registered_by text, registered_at timestamptz)",
    language: "sql",
    volatility: "STABLE",
    callers: ["pii_recoverer"],
    body: `
SELECT k.key_id, k.registered_by, k.first_used
FROM {state}.login_etl_keys k
WHERE pg_catalog.left(k.key_id, 6) <> 'vault:'
  AND NOT EXISTS (SELECT FROM {state}.login_etl_key_retirements r WHERE r.key_id = k.key_id)
ORDER BY k.key_id`,
  }),
  // The only way a consumer records a key id (it may not write the table):
  // the id must have a key id's shape, at most KEY_REGISTRATIONS_PER_DAY new
  // ids a day per login (the owner role's members excepted), and an id
  // recorded with another fingerprint is refused by the caller on
  // 'mismatch'. Concurrent registrations queue on the table's lock; the
  // lock alone does not refresh a REPEATABLE READ or SERIALIZABLE
  // snapshot, so the count would miss ids registered since it was taken.
  // Each capped registration therefore also updates its login's
  // login_etl_locks row first: in those levels a concurrent registration
  // committed after the snapshot makes that update fail (40001), and in
  // READ COMMITTED the count's own snapshot sees it. Times are
  // clock_timestamp(): now() is the transaction's start, which a
  // transaction held open would date back. An id already recorded takes no
  // lock.
  stateDefiner("login_etl_register_key(p_key_id text, p_fingerprint text)", {
    returns: "TABLE (outcome text, registered_by text, registered_at timestamptz)",
    language: "plpgsql",
    callers: ["login_etl_consumer"],
    body: `
#variable_conflict use_column
DECLARE
  v_fingerprint text;
  v_by text;
  v_at timestamptz;
  v_recent integer;
BEGIN
  IF p_key_id IS NULL OR p_key_id !~ '${REGISTERED_KEY_ID_SQL_PATTERN}' THEN
    RAISE EXCEPTION 'login_etl_register_key takes a key id of 1 to 16 letters, digits, _ or -, after vault: for a vault key'
      USING ERRCODE = '22023';
  END IF;
  IF p_fingerprint IS NULL OR p_fingerprint !~ '^[A-Za-z0-9_-]{22}$' THEN
    RAISE EXCEPTION 'login_etl_register_key takes a fingerprint of 22 base64url characters' USING ERRCODE = '22023';
  END IF;
  SELECT k.fingerprint, k.registered_by, k.first_used INTO v_fingerprint, v_by, v_at
  FROM {state}.login_etl_keys k WHERE k.key_id = p_key_id;
  IF NOT FOUND THEN
    LOCK TABLE {state}.login_etl_keys IN SHARE ROW EXCLUSIVE MODE;
    SELECT k.fingerprint, k.registered_by, k.first_used INTO v_fingerprint, v_by, v_at
    FROM {state}.login_etl_keys k WHERE k.key_id = p_key_id;
  END IF;
  IF NOT FOUND THEN
    IF NOT pg_catalog.pg_has_role(session_user, current_user, 'MEMBER') THEN
      INSERT INTO {state}.login_etl_locks AS l (name) VALUES (pg_catalog.textcat('registrar ', session_user::text))
      ON CONFLICT (name) DO UPDATE SET name = l.name;
      SELECT pg_catalog.count(*)::integer INTO v_recent FROM {state}.login_etl_keys k
      WHERE k.registered_by = session_user::text AND k.first_used > pg_catalog.clock_timestamp() - interval '1 day';
      IF v_recent >= ${KEY_REGISTRATIONS_PER_DAY} THEN
        RAISE EXCEPTION 'Login % registered % key ids in the last 24 hours, the most a login may (${KEY_REGISTRATIONS_PER_DAY}): use a key id already recorded, or wait',
          session_user, v_recent USING ERRCODE = '54000';
      END IF;
    END IF;
    v_at := pg_catalog.clock_timestamp();
    INSERT INTO {state}.login_etl_keys (key_id, fingerprint, registered_by, first_used)
    VALUES (p_key_id, p_fingerprint, session_user::text, v_at);
    RETURN QUERY SELECT 'new'::text, session_user::text, v_at;
    RETURN;
  END IF;
  RETURN QUERY SELECT CASE WHEN v_fingerprint = p_fingerprint THEN 'known' ELSE 'mismatch' END, v_by, v_at;
END`,
  }),
  // A recoverer's last check before it shows a value: p_masked[i] is a
  // released mask and p_other[i] the value's mask under another key it
  // holds. A mask any of whose value's masks (or anything linked to them)
  // is a tombstone becomes one too, with all of them, its inbox entries
  // deleted, audited per mask without the value; those masks are returned.
  stateDefiner(
    "login_etl_vault_drop_erased(p_masked text[], p_other text[], p_actor text, p_reason text)",
    {
      returns: "TABLE (masked_value text)",
      language: "plpgsql",
      callers: ["pii_recoverer"],
      body: `
#variable_conflict use_column
DECLARE
  v_mask text;
  v_all text[];
  v_dropped text[] := '{}';
BEGIN
  -- One lock call for all, in its global order: a forget locking some of
  -- the same masks cannot deadlock with it.
  PERFORM {state}.login_etl_lock_masks({state}.login_etl_linked(pg_catalog.array_cat(p_masked, p_other)));
  FOR v_mask IN SELECT DISTINCT u.m FROM pg_catalog.unnest(p_masked) AS u(m) WHERE u.m IS NOT NULL ORDER BY 1 LOOP
    v_all := {state}.login_etl_linked(pg_catalog.array_cat(ARRAY[v_mask], ARRAY(
      SELECT p.o FROM ROWS FROM (pg_catalog.unnest(p_masked), pg_catalog.unnest(p_other)) AS p(m, o)
      WHERE p.m = v_mask AND p.o IS NOT NULL)));
    CONTINUE WHEN NOT EXISTS (SELECT FROM {state}.login_etl_vault v
                              WHERE v.masked_value = ANY(v_all) AND v.erased_at IS NOT NULL);
    DELETE FROM {state}.login_etl_vault_inbox i WHERE i.masked_value = ANY(v_all);
    INSERT INTO {state}.login_etl_vault AS v (masked_value, erased_at)
    SELECT a.m, pg_catalog.now() FROM pg_catalog.unnest(v_all) AS a(m) ORDER BY a.m
    ON CONFLICT (masked_value) DO UPDATE
      SET ciphertext = NULL, iv = NULL, key_id = NULL, erased_at = pg_catalog.now()
      WHERE v.erased_at IS NULL;
    INSERT INTO {state}.login_etl_audit (actor, action, masked_value, reason, outcome, detail)
    VALUES (p_actor, 'recover', v_mask, p_reason, 'erased',
            'value erased under another of its masks: entry dropped, not shown');
    v_dropped := pg_catalog.array_append(v_dropped, v_mask);
  END LOOP;
  RETURN QUERY SELECT d.m FROM pg_catalog.unnest(v_dropped) AS d(m);
END`,
    },
  ),
  // Transaction locks on masks: the login_etl_locks rows of their buckets,
  // in one global order (sorted by name), so two callers locking
  // overlapping sets cannot deadlock on them. A wait longer than
  // MASK_LOCK_TIMEOUT fails the caller's transaction (55P03) rather than
  // queueing it behind a stuck one; the caller's lock_timeout is restored.
  stateDefiner("login_etl_lock_masks(p_masks text[])", {
    returns: "void",
    language: "plpgsql",
    definer: false,
    callers: [],
    body: `
DECLARE
  v_wait constant text := pg_catalog.current_setting('lock_timeout');
BEGIN
  PERFORM pg_catalog.set_config('lock_timeout', '${MASK_LOCK_TIMEOUT}', true);
  PERFORM FROM {state}.login_etl_locks l
  WHERE l.name = ANY(ARRAY(
    SELECT DISTINCT pg_catalog.textcat('mask ', pg_catalog.int4and(pg_catalog.hashtext(u.m), ${
      MASK_LOCK_BUCKETS - 1
    })::text)
    FROM pg_catalog.unnest(p_masks) AS u(m) WHERE u.m IS NOT NULL))
  ORDER BY l.name FOR UPDATE;
  PERFORM pg_catalog.set_config('lock_timeout', v_wait, true);
END`,
  }),
  // The masks given and every mask linked to them, in either direction, as
  // far as the links reach.
  stateDefiner("login_etl_linked(p_masks text[])", {
    returns: "text[]",
    language: "sql",
    definer: false,
    volatility: "STABLE",
    callers: [],
    body: `
WITH RECURSIVE linked(m) AS (
  SELECT u.m FROM pg_catalog.unnest(p_masks) AS u(m) WHERE u.m IS NOT NULL
  UNION
  SELECT l.b FROM linked
  JOIN (SELECT k.mask AS a, k.other AS b FROM {state}.login_etl_vault_links k
        UNION ALL SELECT k.other, k.mask FROM {state}.login_etl_vault_links k) AS l ON l.a = linked.m
)
SELECT coalesce(pg_catalog.array_agg(linked.m ORDER BY linked.m), '{}'::text[]) FROM linked`,
  }),
  // The consumer's only way into the vault: an append to the inbox, one row
  // per distinct mask of the call, reading nothing. Its observable effect
  // (rows inserted, statistics, locks, time) is the same whether the vault
  // holds the value, a tombstone of it, or nothing. A call larger than a
  // consumer's largest batch, or an entry no consumer writes (ciphertext
  // over the largest sealed one, an IV neither format has), is refused
  // whole, from its arguments alone (so still no oracle); so is a mask, key
  // id or field of another shape. The row records session_user, appended
  // like the rest. The cap per mask and login is applied where the inbox is
  // read (INBOX_ENTRIES_PER_MASK), not here: counting a mask's entries
  // would make this call read them.
  stateDefiner(
    "login_etl_vault_put(p_masked text[], p_field text[], p_ciphertext bytea[], p_iv bytea[], p_key_id text[])",
    {
      returns: "void",
      language: "plpgsql",
      callers: ["login_etl_consumer"],
      body: `
BEGIN
  IF greatest(pg_catalog.cardinality(p_masked), pg_catalog.cardinality(p_field), pg_catalog.cardinality(p_ciphertext),
              pg_catalog.cardinality(p_iv), pg_catalog.cardinality(p_key_id)) > ${VAULT_PUT_MAX_ENTRIES} THEN
    RAISE EXCEPTION 'A vault put takes at most ${VAULT_PUT_MAX_ENTRIES} entries (two per message of the largest batch)'
      USING ERRCODE = '54000';
  END IF;
  -- Lengths before patterns, so a 60 MB argument is refused unread; a NULL
  -- (or an array shorter than the others) is no mask, field or key id.
  IF EXISTS (SELECT FROM ROWS FROM (pg_catalog.unnest(p_masked), pg_catalog.unnest(p_field),
                                    pg_catalog.unnest(p_key_id)) AS u(m, f, k)
             WHERE CASE WHEN pg_catalog.octet_length(u.m) <= ${MASK_MAX_CHARS} AND pg_catalog.octet_length(u.k) <= 16
                        THEN NOT (u.m ~ '${MASK_SQL_PATTERN}' AND u.k ~ '${VAULT_KEY_ID_SQL_PATTERN}'
                                  AND u.f IN ('ip', 'device_id'))
                        ELSE true END IS NOT false) THEN
    RAISE EXCEPTION 'A vault entry takes a mask (a key id, a colon and 43 base64url characters), a field (ip or device_id) and a key id of 1 to 16 letters, digits, _ or -'
      USING ERRCODE = '22023';
  END IF;
  IF EXISTS (SELECT FROM pg_catalog.unnest(p_ciphertext) AS u(c) WHERE pg_catalog.octet_length(u.c) > ${MAX_CIPHERTEXT_BYTES}) THEN
    RAISE EXCEPTION 'A vault entry''s ciphertext is at most ${MAX_CIPHERTEXT_BYTES} bytes (the largest sealed value)'
      USING ERRCODE = '54000';
  END IF;
  IF EXISTS (SELECT FROM pg_catalog.unnest(p_iv) AS u(i)
             WHERE pg_catalog.octet_length(u.i) NOT IN (${SYMMETRIC_IV_BYTES}, ${HEADER_BYTES})) THEN
    RAISE EXCEPTION 'A vault entry''s iv is ${HEADER_BYTES} bytes (sealed) or ${SYMMETRIC_IV_BYTES} (symmetric)'
      USING ERRCODE = '22023';
  END IF;
  INSERT INTO {state}.login_etl_vault_inbox (masked_value, field, ciphertext, iv, key_id)
  SELECT DISTINCT ON (u.m) u.m, u.f, u.c, u.i, u.k
  FROM ROWS FROM (pg_catalog.unnest(p_masked), pg_catalog.unnest(p_field), pg_catalog.unnest(p_ciphertext),
                  pg_catalog.unnest(p_iv), pg_catalog.unnest(p_key_id)) AS u(m, f, c, i, k)
  ORDER BY u.m;
END`,
    },
  ),
  // The recoverer's erasure: each mask, and every mask linked to it, becomes
  // a tombstone, and their unmerged inbox entries are deleted, all audited
  // under session_user in the same transaction. The links are read again
  // after each round's locks and writes, until no new mask turns up: a
  // rekey or merge that linked a mask while we waited for it is seen.
  stateDefiner("login_etl_forget(p_masked text[], p_actor text, p_reason text)", {
    returns: "TABLE (masked_value text, outcome text)",
    language: "plpgsql",
    callers: ["pii_recoverer"],
    body: `
#variable_conflict use_column
DECLARE
  v_asked text[];
  v_todo text[];
  v_done text[] := '{}';
  v_erased text[] := '{}';
  v_round text[];
BEGIN
  IF coalesce(pg_catalog.btrim(p_reason), '') = '' THEN
    INSERT INTO {state}.login_etl_audit (actor, action, masked_value, reason, outcome, detail)
    SELECT p_actor, 'forget', u.m, p_reason, 'denied', 'no reason given' FROM pg_catalog.unnest(p_masked) AS u(m);
    RETURN QUERY SELECT u.m, 'denied'::text FROM pg_catalog.unnest(p_masked) AS u(m);
    RETURN;
  END IF;
  v_asked := ARRAY(SELECT DISTINCT u.m FROM pg_catalog.unnest(p_masked) AS u(m) WHERE u.m IS NOT NULL ORDER BY 1);
  v_todo := v_asked;
  LOOP
    v_todo := ARRAY(SELECT l.m FROM pg_catalog.unnest({state}.login_etl_linked(pg_catalog.array_cat(v_done, v_todo))) AS l(m)
                    EXCEPT SELECT d.m FROM pg_catalog.unnest(v_done) AS d(m) ORDER BY 1);
    EXIT WHEN pg_catalog.cardinality(v_todo) = 0;
    PERFORM {state}.login_etl_lock_masks(v_todo);
    WITH gone AS (
      DELETE FROM {state}.login_etl_vault_inbox i WHERE i.masked_value = ANY(v_todo) RETURNING i.masked_value AS m
    ), erased AS (
      INSERT INTO {state}.login_etl_vault AS v (masked_value, erased_at)
      SELECT t.m, pg_catalog.now() FROM pg_catalog.unnest(v_todo) AS t(m) ORDER BY t.m
      ON CONFLICT (masked_value) DO UPDATE
        SET ciphertext = NULL, iv = NULL, key_id = NULL, erased_at = pg_catalog.now()
        WHERE v.erased_at IS NULL
      RETURNING v.masked_value AS m, NOT (v.xmax = 0) AS was_live
    )
    SELECT ARRAY(SELECT g.m FROM gone g UNION SELECT e.m FROM erased e WHERE e.was_live) INTO v_round;
    v_erased := pg_catalog.array_cat(v_erased, v_round);
    v_done := pg_catalog.array_cat(v_done, v_todo);
  END LOOP;
  RETURN QUERY
  WITH outcomes AS (
    SELECT d.m, CASE WHEN d.m = ANY(v_erased) THEN 'success' ELSE 'not_found' END AS o,
           d.m = ANY(v_asked) AS asked
    FROM pg_catalog.unnest(v_done) AS d(m)
  ),
  audited AS (
    INSERT INTO {state}.login_etl_audit (actor, action, masked_value, reason, outcome, detail)
    SELECT p_actor, 'forget', o.m, p_reason, o.o,
           CASE WHEN NOT o.asked THEN 'linked to an erased mask (the same value under another HMAC key); '
                ELSE '' END ||
           CASE o.o WHEN 'success' THEN 'vault entry erased' ELSE 'no live vault entry; tombstone kept' END
    FROM outcomes o ORDER BY NOT o.asked, o.m
  )
  SELECT o.m, o.o FROM outcomes o;
END`,
  }),
  // Step 1 of a merge: claims inbox entries (those after p_after; of the
  // masks given, or the whole inbox for the owner role) and audits the
  // claim, per mask when masks are named. The caller commits; the entries
  // are handed out by login_etl_inbox_claimed in a later transaction, so a
  // rolled-back audit releases nothing. Entries of a mask erased (directly
  // or through a link) are not handed to a recoverer. A claim not settled
  // within 10 minutes is released for the next merger. Entries not of
  // vault_put's shape, or past the oldest INBOX_ENTRIES_PER_MASK of their
  // mask and writing login, are never handed out: the claim deletes those in
  // its scope and counts them (`dropped`, audited per mask).
  stateDefiner(
    "login_etl_inbox_claim(p_masked text[], p_after bigint, p_limit integer, p_actor text, p_reason text)",
    {
      returns: "TABLE (claim bigint, entries integer, last_id bigint, dropped integer)",
      language: "plpgsql",
      callers: ["pii_recoverer"],
      body: `
#variable_conflict use_column
DECLARE
  v_bulk constant boolean := p_masked IS NULL;
  v_claim bigint;
  v_count integer;
  v_last bigint;
  v_masks text[];
  v_erased text[] := '{}';
  v_dropped integer;
  v_malformed integer;
BEGIN
  IF v_bulk AND NOT pg_catalog.pg_has_role(session_user, current_user, 'MEMBER') THEN
    RAISE EXCEPTION 'Only the owner role may merge the whole vault inbox; a recoverer merges the masks it recovers'
      USING ERRCODE = '42501';
  END IF;
  IF NOT v_bulk AND coalesce(pg_catalog.btrim(p_reason), '') = '' THEN
    RAISE EXCEPTION 'Merging named masks needs a reason (it is kept in the audit trail)' USING ERRCODE = '22023';
  END IF;
  UPDATE {state}.login_etl_vault_inbox i SET claim_id = NULL
  FROM {state}.login_etl_inbox_claims c
  WHERE i.claim_id = c.id AND c.claimed_at < pg_catalog.now() - interval '10 minutes';
  DELETE FROM {state}.login_etl_inbox_claims c WHERE c.claimed_at < pg_catalog.now() - interval '10 minutes';
  IF NOT v_bulk THEN
    v_erased := ARRAY(SELECT u.m FROM pg_catalog.unnest(p_masked) AS u(m)
                      WHERE EXISTS (SELECT FROM {state}.login_etl_vault v
                                    WHERE v.masked_value = ANY({state}.login_etl_linked(ARRAY[u.m]))
                                      AND v.erased_at IS NOT NULL));
  END IF;
  INSERT INTO {state}.login_etl_inbox_claims (actor) VALUES (p_actor) RETURNING id INTO v_claim;
  -- The batch's window; of it, junk is deleted unread and the rest claimed.
  WITH window_ AS (
    SELECT i.id, ${keptInInbox("i")} AS kept FROM {state}.login_etl_vault_inbox i
    WHERE i.claim_id IS NULL AND i.id > coalesce(p_after, 0)
      AND (v_bulk OR (i.masked_value = ANY(p_masked) AND NOT i.masked_value = ANY(v_erased)))
    ORDER BY i.id LIMIT greatest(1, least(coalesce(p_limit, 1000), 10000))
    FOR UPDATE SKIP LOCKED
  ), junk AS (
    -- The mask and login only where they have their shape: junk's own
    -- columns may be any size, and are not read.
    DELETE FROM {state}.login_etl_vault_inbox i USING window_ w WHERE i.id = w.id AND NOT w.kept
    RETURNING i.id,
              CASE WHEN pg_catalog.octet_length(i.masked_value) <= ${MASK_MAX_CHARS}
                        AND i.masked_value ~ '${MASK_SQL_PATTERN}' THEN i.masked_value END AS m,
              CASE WHEN pg_catalog.octet_length(i.written_by) <= ${LOGIN_MAX_BYTES} THEN i.written_by END AS w
  ), dropped AS (
    -- Audited per mask, with the logins that wrote them: recover tells a
    -- mask whose entries were dropped from one never vaulted.
    INSERT INTO {state}.login_etl_audit (actor, action, masked_value, reason, outcome, detail)
    SELECT p_actor, 'merge', j.m, p_reason, 'dropped',
           pg_catalog.format('%s inbox entries dropped unread, written by %s: over the size bound or past the oldest ${INBOX_ENTRIES_PER_MASK} of their mask and login (claim %s)',
                             pg_catalog.count(*), pg_catalog.string_agg(DISTINCT coalesce(j.w, '?'), ', '), v_claim)
    FROM junk j WHERE j.m IS NOT NULL GROUP BY j.m ORDER BY j.m
  ), claimed AS (
    UPDATE {state}.login_etl_vault_inbox i SET claim_id = v_claim FROM window_ w
    WHERE i.id = w.id AND w.kept RETURNING i.id, i.masked_value
  )
  SELECT pg_catalog.count(*)::integer, pg_catalog.array_agg(DISTINCT c.masked_value),
         (SELECT pg_catalog.count(*)::integer FROM junk),
         (SELECT pg_catalog.count(*)::integer FROM junk j WHERE j.m IS NULL),
         greatest(pg_catalog.max(c.id), (SELECT pg_catalog.max(j.id) FROM junk j))
  INTO v_count, v_masks, v_dropped, v_malformed, v_last FROM claimed c;
  IF v_malformed > 0 THEN
    INSERT INTO {state}.login_etl_audit (actor, action, masked_value, reason, outcome, detail)
    VALUES (p_actor, 'merge', NULL, p_reason, 'dropped',
            pg_catalog.format('%s inbox entries dropped unread: no mask of its shape, or a column over its size bound (claim %s)',
                              v_malformed, v_claim));
  END IF;
  IF v_count = 0 THEN
    DELETE FROM {state}.login_etl_inbox_claims c WHERE c.id = v_claim;
    -- Past the junk: a batch of junk alone does not end the caller's loop.
    RETURN QUERY SELECT NULL::bigint, 0, v_last, v_dropped;
    RETURN;
  END IF;
  IF v_bulk THEN
    INSERT INTO {state}.login_etl_audit (actor, action, masked_value, reason, outcome, detail)
    VALUES (p_actor, 'merge', NULL, p_reason, 'released',
            pg_catalog.format('%s inbox entries released to be verified and merged (claim %s)', v_count, v_claim));
  ELSE
    INSERT INTO {state}.login_etl_audit (actor, action, masked_value, reason, outcome, detail)
    SELECT p_actor, 'merge', u.m, p_reason, 'released',
           pg_catalog.format('inbox entries released to be verified and merged (claim %s)', v_claim)
    FROM pg_catalog.unnest(v_masks) AS u(m) ORDER BY u.m;
  END IF;
  RETURN QUERY SELECT v_claim, v_count, v_last, v_dropped;
END`,
    },
  ),
  // Step 2: the claimed entries, only to the login that claimed them and
  // only in a later transaction than the claim's (its audit has committed).
  stateDefiner("login_etl_inbox_claimed(p_claim bigint)", {
    returns:
      "TABLE (id bigint, masked_value text, field text, ciphertext bytea, iv bytea, key_id text)",
    language: "plpgsql",
    callers: ["pii_recoverer"],
    body: `
#variable_conflict use_column
DECLARE
  v_claim record;
BEGIN
  SELECT c.db_user, c.xact INTO v_claim FROM {state}.login_etl_inbox_claims c WHERE c.id = p_claim;
  IF NOT FOUND OR v_claim.db_user <> session_user::text THEN
    RAISE EXCEPTION 'No inbox claim % of this login' , p_claim USING ERRCODE = '22023';
  END IF;
  IF pg_catalog.pg_xact_status(v_claim.xact) IS DISTINCT FROM 'committed' THEN
    RAISE EXCEPTION 'An inbox claim is read after the transaction that made it commits (its audit rows first)'
      USING ERRCODE = '25000';
  END IF;
  RETURN QUERY SELECT i.id, i.masked_value, i.field, i.ciphertext, i.iv, i.key_id
  FROM {state}.login_etl_vault_inbox i WHERE i.claim_id = p_claim ORDER BY i.id;
END`,
  }),
  // Step 3: the merger's verdicts. Accepted entries (one per mask) enter
  // the vault unless their value is erased: when any mask of it (its own,
  // its masks under the merger's other keys, everything linked to those) is
  // a tombstone, every one of those masks becomes a tombstone instead. An
  // accepted entry is linked to its masks under the other keys. Entries the
  // merger could not judge (p_keep: a key it does not hold) stay in the
  // inbox; the rest (refused: squatted, altered) are deleted.
  stateDefiner(
    "login_etl_inbox_settle(p_claim bigint, p_accept bigint[], p_keep bigint[], p_link_id bigint[], p_link_mask text[])",
    {
      returns:
        "TABLE (accepted integer, known integer, erased integer, dropped integer, kept integer)",
      language: "plpgsql",
      callers: ["pii_recoverer"],
      body: `
#variable_conflict use_column
DECLARE
  v_user text;
  v_actor text;
  v_ids bigint[];
  v_masks text[];
  v_pair_m text[];
  v_pair_s text[];
  v_gone text[];
  v_accepted integer;
  v_judged integer;
  v_deleted integer;
  v_kept integer;
BEGIN
  SELECT c.db_user, c.actor INTO v_user, v_actor FROM {state}.login_etl_inbox_claims c WHERE c.id = p_claim;
  IF NOT FOUND OR v_user <> session_user::text THEN
    RAISE EXCEPTION 'No inbox claim % of this login', p_claim USING ERRCODE = '22023';
  END IF;
  PERFORM {state}.login_etl_lock_masks({state}.login_etl_linked(ARRAY(
    SELECT i.masked_value FROM {state}.login_etl_vault_inbox i WHERE i.claim_id = p_claim AND i.id = ANY(p_accept)
    UNION SELECT l.mask FROM ROWS FROM (pg_catalog.unnest(p_link_id), pg_catalog.unnest(p_link_mask)) AS l(id, mask)
          WHERE l.id = ANY(p_accept))));
  -- Read after the locks: a forget that held them has deleted its masks' entries.
  SELECT pg_catalog.array_agg(x.id ORDER BY x.m), pg_catalog.array_agg(x.m ORDER BY x.m) INTO v_ids, v_masks
  FROM (SELECT DISTINCT ON (i.masked_value) i.id, i.masked_value AS m FROM {state}.login_etl_vault_inbox i
        WHERE i.claim_id = p_claim AND i.id = ANY(p_accept) ORDER BY i.masked_value, i.id) AS x;
  SELECT pg_catalog.count(*)::integer INTO v_judged FROM {state}.login_etl_vault_inbox i
  WHERE i.claim_id = p_claim AND i.id = ANY(p_accept);
  v_ids := coalesce(v_ids, '{}');
  v_masks := coalesce(v_masks, '{}');
  -- Each candidate with every mask of its value: its own, the merger's
  -- other keys', and everything linked to those. One recursive query for the
  -- batch: per candidate, a look-up of its link masks would be quadratic.
  SELECT pg_catalog.array_agg(r.m), pg_catalog.array_agg(r.s) INTO v_pair_m, v_pair_s
  FROM (
    WITH RECURSIVE cand AS (
      SELECT c.id, c.m FROM ROWS FROM (pg_catalog.unnest(v_ids), pg_catalog.unnest(v_masks)) AS c(id, m)
    ), rel(m, s) AS (
      SELECT cand.m, cand.m FROM cand
      UNION
      SELECT cand.m, l.mask FROM cand
      JOIN ROWS FROM (pg_catalog.unnest(p_link_id), pg_catalog.unnest(p_link_mask)) AS l(id, mask) ON l.id = cand.id
      UNION
      SELECT rel.m, k.b FROM rel
      JOIN (SELECT x.mask AS a, x.other AS b FROM {state}.login_etl_vault_links x
            UNION ALL SELECT x.other, x.mask FROM {state}.login_etl_vault_links x) AS k ON k.a = rel.s
    )
    SELECT rel.m, rel.s FROM rel
  ) AS r;
  v_gone := ARRAY(SELECT DISTINCT p.m FROM ROWS FROM (pg_catalog.unnest(v_pair_m), pg_catalog.unnest(v_pair_s)) AS p(m, s)
                  JOIN {state}.login_etl_vault v ON v.masked_value = p.s WHERE v.erased_at IS NOT NULL);
  INSERT INTO {state}.login_etl_vault AS v (masked_value, erased_at)
  SELECT DISTINCT p.s, pg_catalog.now() FROM ROWS FROM (pg_catalog.unnest(v_pair_m), pg_catalog.unnest(v_pair_s)) AS p(m, s)
  WHERE p.m = ANY(v_gone) ORDER BY 1
  ON CONFLICT (masked_value) DO UPDATE
    SET ciphertext = NULL, iv = NULL, key_id = NULL, erased_at = pg_catalog.now()
    WHERE v.erased_at IS NULL;
  INSERT INTO {state}.login_etl_vault (masked_value, field, ciphertext, iv, key_id)
  SELECT i.masked_value, i.field, i.ciphertext, i.iv, i.key_id FROM {state}.login_etl_vault_inbox i
  WHERE i.id = ANY(v_ids) AND NOT i.masked_value = ANY(v_gone) ORDER BY i.masked_value
  ON CONFLICT (masked_value) DO NOTHING;
  GET DIAGNOSTICS v_accepted = ROW_COUNT;
  INSERT INTO {state}.login_etl_vault_links (mask, other, made_by)
  SELECT DISTINCT i.masked_value, l.mask, 'merge'
  FROM ROWS FROM (pg_catalog.unnest(p_link_id), pg_catalog.unnest(p_link_mask)) AS l(id, mask)
  JOIN {state}.login_etl_vault_inbox i ON i.id = l.id
  WHERE i.id = ANY(v_ids) AND NOT i.masked_value = ANY(v_gone) AND l.mask <> i.masked_value
  ON CONFLICT DO NOTHING;
  DELETE FROM {state}.login_etl_vault_inbox i
  WHERE i.claim_id = p_claim AND NOT i.id = ANY(coalesce(p_keep, '{}'));
  GET DIAGNOSTICS v_deleted = ROW_COUNT;
  UPDATE {state}.login_etl_vault_inbox i SET claim_id = NULL WHERE i.claim_id = p_claim;
  GET DIAGNOSTICS v_kept = ROW_COUNT;
  DELETE FROM {state}.login_etl_inbox_claims c WHERE c.id = p_claim;
  RETURN QUERY
  WITH counts AS (
    SELECT v_accepted AS accepted,
           pg_catalog.cardinality(v_ids) - pg_catalog.cardinality(v_gone) - v_accepted AS known,
           pg_catalog.cardinality(v_gone) AS erased,
           v_deleted - v_judged AS dropped,
           v_kept AS kept
  ), audited AS (
    INSERT INTO {state}.login_etl_audit (actor, action, masked_value, reason, outcome, detail)
    SELECT v_actor, 'merge', NULL, NULL, 'success',
           pg_catalog.format('claim %s: %s entries accepted, %s already vaulted, %s of erased values dropped, %s refused, %s kept',
                             p_claim, n.accepted, n.known, n.erased, n.dropped, n.kept)
    FROM counts n
  )
  SELECT n.accepted, n.known, n.erased, n.dropped, n.kept FROM counts n;
END`,
    },
  ),
  // The new tables and functions belong to whoever owns the vault (the owner
  // role, after sql/roles.sql), not to the login that migrated: the
  // functions that run as the vault's owner must reach the inbox, and a
  // SECURITY DEFINER function must not run as a personal login. Only when
  // the migrating role may give them away (a member of that owner, or a
  // superuser); otherwise sql/roles.sql does it.
  `DO $$
DECLARE
  state constant text := ${QUALIFIED_STATE_SCHEMA_SETTING};
  owner_oid oid;
  owner_name text;
  moved text;
BEGIN
  SELECT c.relowner INTO owner_oid FROM pg_catalog.pg_class c
  WHERE c.oid = pg_catalog.format('%I.login_etl_vault', state)::regclass;
  owner_name := pg_catalog.pg_get_userbyid(owner_oid);
  IF owner_name = current_user OR NOT pg_catalog.pg_has_role(current_user, owner_oid, 'MEMBER') THEN
    RETURN;
  END IF;
  FOREACH moved IN ARRAY ARRAY['login_etl_vault_inbox', 'login_etl_inbox_claims', 'login_etl_vault_links',
                               'login_etl_locks', 'login_etl_key_retirements'] LOOP
    EXECUTE pg_catalog.format('ALTER TABLE %I.%I OWNER TO %I', state, moved, owner_name);
  END LOOP;
  FOREACH moved IN ARRAY ARRAY['login_etl_lock_masks(text[])', 'login_etl_linked(text[])',
                               'login_etl_inbox_claim(text[], bigint, integer, text, text)',
                               'login_etl_inbox_claimed(bigint)',
                               'login_etl_inbox_settle(bigint, bigint[], bigint[], bigint[], text[])',
                               'login_etl_hmac_keys_needed()',
                               'login_etl_vault_drop_erased(text[], text[], text, text)',
                               'login_etl_register_key(text, text)'] LOOP
    EXECUTE pg_catalog.format('ALTER FUNCTION %I.%s OWNER TO %I', state, moved, owner_name);
  END LOOP;
END $$`,
  // Recover calls these two before it shows anything and refuses without
  // them, so whoever may erase (login_etl_forget: the recoverer) may call
  // them as soon as migrate has run, before sql/roles.sql runs again.
  `DO $$
DECLARE
  state constant text := ${QUALIFIED_STATE_SCHEMA_SETTING};
  grantee text;
  made text;
BEGIN
  FOR grantee IN
    SELECT pg_catalog.pg_get_userbyid(a.grantee) FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) AS a
    WHERE p.oid = pg_catalog.to_regprocedure(pg_catalog.format('%I.login_etl_forget(text[], text, text)', state))::oid
      AND a.grantee <> p.proowner AND a.grantee <> 0::oid AND a.privilege_type = 'EXECUTE'
  LOOP
    FOREACH made IN ARRAY ARRAY['login_etl_hmac_keys_needed()', 'login_etl_vault_drop_erased(text[], text[], text, text)'] LOOP
      EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %I.%s TO %I', state, made, grantee);
    END LOOP;
  END LOOP;
END $$`,
  // Whoever could write login_etl_keys (the consumer, as sql/roles.sql
  // granted it) now registers through login_etl_register_key only: a row
  // written directly could name any id, unchecked and unattributed.
  `DO $$
DECLARE
  state constant text := ${QUALIFIED_STATE_SCHEMA_SETTING};
  grantee text;
BEGIN
  FOR grantee IN
    SELECT DISTINCT pg_catalog.pg_get_userbyid(a.grantee) FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) AS a
    WHERE c.oid = pg_catalog.format('%I.login_etl_keys', state)::regclass::oid
      AND a.grantee <> c.relowner AND a.grantee <> 0::oid
      AND a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')
  LOOP
    EXECUTE pg_catalog.format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON %I.login_etl_keys FROM %I', state, grantee);
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %I.login_etl_register_key(text, text) TO %I', state, grantee);
  END LOOP;
  EXECUTE pg_catalog.format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON %I.login_etl_keys FROM PUBLIC', state);
END $$`,
];

/**
 * Version 9: `login_etl_ledger_maintain` one call at a time, today first.
 * Consumers that start together each call it: two creating the same day
 * partitions held locks on the default partition that each other's `CREATE
 * TABLE ... PARTITION OF` waited for, and the server ended all but one with
 * "deadlock detected" (40P01), their consumers exiting 1 at start. Each call
 * now first takes a lock on the ledger itself that only another call (or a
 * DBA's ANALYZE, VACUUM or index build) conflicts with; inserts and reads do
 * not wait for that lock (they wait, as before, while a partition is
 * created). A call that waits past its lock_timeout leaves the work to the
 * one holding it, as it already did a partition it could not lock.
 *
 * Version 7 created the days oldest first, 32 a call: with a retention of 28
 * days or more, a fresh ledger's first call did not reach today, and a
 * consumer writing before the next call put today's entries in the default
 * partition, after which today never got a partition of its own. Today and
 * the three days ahead now come first, then the past, newest first.
 */
const V9_ONE_MAINTAINER: readonly string[] = [
  stateDefiner(LEDGER_MAINTAIN_SIGNATURE, {
    ...V7_LEDGER_MAINTAIN,
    body: insertAfter(
      insertAfter(
        V7_LEDGER_MAINTAIN.body,
        "  PERFORM pg_catalog.set_config('lock_timeout', '2s', true);\n",
        `  -- ONLY: the partitions' own locks would fill the lock table.
  BEGIN
    LOCK TABLE ONLY {state}.login_etl_ledger IN SHARE UPDATE EXCLUSIVE MODE;
  EXCEPTION WHEN lock_not_available THEN
    RETURN QUERY SELECT 0, 0, 0;
    RETURN;
  END;
`,
      ),
      "(today + 3)::timestamp, interval '1 day') AS d\n",
      "    ORDER BY d >= today::timestamp DESC, d DESC\n",
    ),
  }),
];

/** `text` with `addition` after its one `anchor`; throws when `anchor` is not there once. */
function insertAfter(text: string, anchor: string, addition: string): string {
  const at = text.indexOf(anchor);
  if (at < 0 || text.indexOf(anchor, at + 1) >= 0) {
    throw new Error(`migration text: expected one ${JSON.stringify(anchor)}`);
  }
  return text.slice(0, at + anchor.length) + addition + text.slice(at + anchor.length);
}

/** Every migration, oldest first. */
export const MIGRATIONS: readonly Migration[] = [
  { version: 1, name: "login-etl 0.1 tables", statements: V1_TABLES },
  {
    version: 2,
    name: "vault tombstones and SECURITY DEFINER functions for the vault and the audit trail",
    statements: V2_PII,
  },
  {
    version: 3,
    name: "app_version_text() and the duplicate views for analysts",
    statements: V3_ANALYSTS,
  },
  {
    version: 4,
    name: "indexes on masked_ip and masked_device_id",
    statements: V4_INDEXES,
    transaction: false,
  },
  { version: 5, name: "ledger partitioned by day of SentTimestamp", statements: V5_LEDGER },
  {
    version: STATE_SCHEMA_VERSION,
    name: "login-etl's own tables and functions moved to the state schema",
    statements: V6_STATE_SCHEMA,
  },
  {
    version: 7,
    name:
      "SECURITY DEFINER functions that call only pg_catalog and the state schema; recovery released on committed tickets",
    statements: V7_DEFINERS,
  },
  {
    version: 8,
    name:
      "vault inbox (no membership oracle), mask links and per-mask locks (erasure survives rotation)",
    statements: V8_INBOX,
  },
  {
    version: 9,
    name:
      "ledger maintenance one call at a time, today first (consumers starting together no longer deadlock)",
    statements: V9_ONE_MAINTAINER,
  },
];

/** The version a database is at once every migration is applied. */
export const LATEST_VERSION: number = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;
