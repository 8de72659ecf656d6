-- Least-privilege roles for login-etl. Run as a superuser or the database
-- owner after sql/schema.sql (or `login-etl migrate`), as schema.sql is run:
-- search_path set to the analysts' data schema (--schema) and
-- login_etl.state_schema to login-etl's own (--state-schema; login_etl when
-- not set):
--   psql "$ADMIN_URL" -v ON_ERROR_STOP=1 -c 'SET search_path = public' \
--     -c 'SET login_etl.state_schema = login_etl' -f sql/schema.sql -f sql/roles.sql
-- Run it again after `login-etl migrate`: it is idempotent and covers new objects.
-- The four roles are groups (NOLOGIN): grant them to login users, e.g.
--   CREATE ROLE etl_service LOGIN PASSWORD '…' IN ROLE login_etl_consumer;
--   CREATE ROLE alice LOGIN PASSWORD '…' IN ROLE pii_recoverer;
--   CREATE ROLE bob LOGIN PASSWORD '…' IN ROLE login_etl_analyst;
--
-- The data schema holds what analysts read (user_logins, its views,
-- app_version_text); the state schema holds login-etl's own tables and
-- functions, and the analyst role has no USAGE on it, so an analyst can read,
-- write or call nothing in it. Postgres still shows every role the system
-- catalogs and statistics views: an analyst can list the state schema's
-- table, view and function names (pg_class, pg_proc), read their row counts
-- (pg_class.reltuples, pg_stat_user_tables: how many rejects, vault entries
-- and audit rows there are) and the functions' source (pg_proc.prosrc), but
-- no row of any table. Neither the consumer nor the recoverer has any
-- privilege on the vault or the audit trail. They reach them only through
-- SECURITY DEFINER functions owned by login_etl_owner, which audit in the same
-- transaction under session_user (the login role, whatever SET ROLE says): the
-- consumer appends vault entries to an inbox and learns nothing back (the same
-- insert whatever the vault holds); the recoverer recovers and erases, always
-- audited; the owner merges the inbox into the vault (login-etl vault-merge).
--
-- Nobody but the owner may create objects in either schema: this script
-- revokes CREATE on both from PUBLIC (PostgreSQL 14 and older, and clusters
-- upgraded from them, let every role create in schema public), and refuses,
-- with the statement that fixes it, a schema where another role may create,
-- that another role owns, or that holds anything of another role (tables,
-- views, triggers' functions, functions, operators, types), "another" being
-- any role but superusers, the data schema's owner, login_etl_owner and you
-- (src/db/search_path.ts). Its own
-- statements name pg_catalog's functions in full, since they run with the data
-- schema in search_path, as a superuser.

DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'login_etl_owner') THEN
    CREATE ROLE login_etl_owner NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'login_etl_consumer') THEN
    CREATE ROLE login_etl_consumer NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'pii_recoverer') THEN
    CREATE ROLE pii_recoverer NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'login_etl_analyst') THEN
    CREATE ROLE login_etl_analyst NOLOGIN;
  END IF;
END
$$;

-- Nobody but the owner creates in either schema: CREATE is revoked from
-- PUBLIC before the refusal below, which would otherwise stop at it.
DO $$
DECLARE
  state constant text := COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl');
BEGIN
  EXECUTE pg_catalog.format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', pg_catalog.current_schema());
  IF pg_catalog.to_regnamespace(pg_catalog.quote_ident(state)) IS NOT NULL THEN
    EXECUTE pg_catalog.format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', state);
  END IF;
END
$$;

-- Refused, before anything below runs or reads a table, where another role
-- may still create in either schema, owns one, or owns anything there
-- (a table, view, trigger function, function, operator or type).
-- generated:guard (written from src/db/search_path.ts by `make docs`; do not edit by hand)
DO $guard$
DECLARE
  found record;
BEGIN
  FOR found IN EXECUTE $query$WITH ns AS (
  SELECT n.oid, n.nspname::text AS name, n.nspowner, n.nspacl FROM pg_catalog.pg_namespace n
  WHERE n.nspname::text IN ($1::text, $2::text)
), trusted AS (
  SELECT r.oid AS role FROM pg_catalog.pg_roles r
  WHERE r.rolsuper OR r.rolname::text = ANY ($3::text[])
  UNION SELECT n.nspowner FROM pg_catalog.pg_namespace n WHERE n.nspname::text = $1::text
), creators AS (
  SELECT ns.name, a.grantee, a.grantee = ns.nspowner AS owns
  FROM ns, pg_catalog.aclexplode(COALESCE(ns.nspacl, pg_catalog.acldefault('n', ns.nspowner))) AS a
  WHERE a.privilege_type = 'CREATE' AND a.grantee NOT IN (SELECT trusted.role FROM trusted)
    AND (a.grantee <> 0::oid OR EXISTS (SELECT FROM pg_catalog.pg_roles r
                                       WHERE r.rolcanlogin AND r.oid NOT IN (SELECT trusted.role FROM trusted)))
  UNION
  SELECT ns.name, ns.nspowner, true FROM ns WHERE ns.nspowner NOT IN (SELECT trusted.role FROM trusted)
), planted AS (
  SELECT ns.name, c.relowner AS owner,
         CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                        WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END AS kind,
         pg_catalog.format('%I.%I', ns.name, c.relname) AS object
  FROM pg_catalog.pg_class c JOIN ns ON ns.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND c.relowner NOT IN (SELECT trusted.role FROM trusted)
    AND NOT (c.relkind = 'S' AND EXISTS (
      SELECT FROM pg_catalog.pg_depend d
      WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid
        AND d.objid = c.oid AND d.deptype IN ('a', 'i')
        AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid))
  UNION ALL
  SELECT ns.name, p.proowner, 'TRIGGER',
         pg_catalog.format('%I ON %I.%I', t.tgname, ns.name, c.relname)
  FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
    JOIN ns ON ns.oid = c.relnamespace JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
  WHERE NOT t.tgisinternal AND p.proowner NOT IN (SELECT trusted.role FROM trusted)
  UNION ALL
  SELECT ns.name, p.proowner,
         CASE p.prokind WHEN 'a' THEN 'AGGREGATE' WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END,
         pg_catalog.format('%I.%I(%s)', ns.name, p.proname,
                           pg_catalog.pg_get_function_identity_arguments(p.oid))
  FROM pg_catalog.pg_proc p JOIN ns ON ns.oid = p.pronamespace
  WHERE p.proowner NOT IN (SELECT trusted.role FROM trusted)
  UNION ALL
  SELECT ns.name, o.oprowner, 'OPERATOR',
         pg_catalog.format('%I.%s (%s, %s)', ns.name, o.oprname,
           CASE WHEN o.oprleft = 0::oid THEN 'NONE' ELSE pg_catalog.format_type(o.oprleft, NULL) END,
           CASE WHEN o.oprright = 0::oid THEN 'NONE' ELSE pg_catalog.format_type(o.oprright, NULL) END)
  FROM pg_catalog.pg_operator o JOIN ns ON ns.oid = o.oprnamespace
  WHERE o.oprowner NOT IN (SELECT trusted.role FROM trusted)
  UNION ALL
  SELECT ns.name, t.typowner, 'TYPE', pg_catalog.format('%I.%I', ns.name, t.typname)
  FROM pg_catalog.pg_type t JOIN ns ON ns.oid = t.typnamespace
  WHERE t.typowner NOT IN (SELECT trusted.role FROM trusted)
    AND (t.typrelid = 0::oid
         OR EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid AND c.relkind = 'c'))
    AND NOT (t.typcategory = 'A' AND t.typelem <> 0::oid) AND t.typtype <> 'm'
  UNION ALL
  SELECT ns.name, c.conowner, 'CONVERSION', pg_catalog.format('%I.%I', ns.name, c.conname)
  FROM pg_catalog.pg_conversion c JOIN ns ON ns.oid = c.connamespace
  WHERE c.conowner NOT IN (SELECT trusted.role FROM trusted)
)
SELECT x.problem, x.fix FROM (
  SELECT 1 AS rank, c.name AS schema_name,
         CASE WHEN c.owns
           THEN pg_catalog.format('schema %s belongs to role %s', c.name, pg_catalog.pg_get_userbyid(c.grantee))
           WHEN c.grantee = 0::oid
           THEN pg_catalog.format('every role (PUBLIC) may create objects in schema %s', c.name)
           ELSE pg_catalog.format('role %s may create objects in schema %s',
                                  pg_catalog.pg_get_userbyid(c.grantee), c.name) END AS problem,
         CASE WHEN c.owns THEN pg_catalog.format('ALTER SCHEMA %I OWNER TO CURRENT_USER', c.name)
           ELSE pg_catalog.format('REVOKE CREATE ON SCHEMA %I FROM %s', c.name,
             CASE WHEN c.grantee = 0::oid THEN 'PUBLIC'
                  ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(c.grantee)::text) END) END AS fix
  FROM creators c
  UNION ALL
  SELECT 2, p.name,
         pg_catalog.format('schema %s holds %s %s of role %s', p.name, pg_catalog.lower(p.kind),
                           p.object, pg_catalog.pg_get_userbyid(p.owner)),
         pg_catalog.format('DROP %s %s', p.kind, p.object)
  FROM planted p
) AS x ORDER BY x.rank, x.schema_name, x.problem$query$
    USING pg_catalog.current_schema()::text,
          COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl'),
          ARRAY[CURRENT_USER::text, 'login_etl_owner']
  LOOP
    RAISE EXCEPTION '%: %; %; run %', 'Refused to apply sql/roles.sql', found.problem, 'login-etl''s migrations and SECURITY DEFINER functions look up what they call there, so planted code would run with their rights', found.fix
      USING ERRCODE = '55000';
  END LOOP;
END $guard$;
-- generated:end

-- The state schema must be the one serving this data schema (its
-- login_etl_layout says so). Nobody but the owner creates in it either.
DO $$
DECLARE
  data constant text := pg_catalog.current_schema();
  state constant text := COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl');
  served text;
BEGIN
  IF pg_catalog.to_regclass(pg_catalog.format('%I.login_etl_layout', state)) IS NOT NULL THEN
    EXECUTE pg_catalog.format('SELECT data_schema FROM %I.login_etl_layout', state) INTO served;
  END IF;
  IF served IS DISTINCT FROM data THEN
    RAISE EXCEPTION 'Schema % does not hold login-etl''s tables for schema %: set search_path to the data schema and login_etl.state_schema to its state schema, after sql/schema.sql or login-etl migrate',
      state, COALESCE(data, '(none)');
  END IF;
  EXECUTE pg_catalog.format('REVOKE ALL ON SCHEMA %I FROM PUBLIC, login_etl_analyst', state);
END
$$;

-- The consumer writes user_logins; the analyst reads it and its views; the
-- recoverer has nothing there. The owner may create (migrations, rekey) in
-- both. The consumer and the recoverer reach the state schema; nobody else
-- does. The owner creates there too: login_etl_ledger_maintain makes day
-- partitions. The state schema then goes first in search_path, so the names
-- below mean login-etl's tables there and user_logins in the data schema.
DO $$
DECLARE
  data constant text := pg_catalog.current_schema();
  state constant text := COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl');
BEGIN
  EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA %I TO login_etl_consumer, login_etl_analyst', data);
  EXECUTE pg_catalog.format('REVOKE ALL ON SCHEMA %I FROM pii_recoverer', data);
  EXECUTE pg_catalog.format('GRANT USAGE, CREATE ON SCHEMA %I TO login_etl_owner', data);
  EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA %I TO login_etl_consumer, pii_recoverer', state);
  EXECUTE pg_catalog.format('GRANT USAGE, CREATE ON SCHEMA %I TO login_etl_owner', state);
  PERFORM pg_catalog.set_config('search_path', pg_catalog.format('%I, %I', state, data), false);
END
$$;

-- The owner owns the tables and the functions: migrations, `rekey` and
-- `rekey-vault` run as it, and the functions run with its rights.
ALTER TABLE user_logins OWNER TO login_etl_owner;
ALTER TABLE login_etl_migrations OWNER TO login_etl_owner;
-- And version 6's view of it left in the data schema.
DO $$
DECLARE data text;
BEGIN
  SELECT l.data_schema INTO data FROM login_etl_layout l;
  EXECUTE pg_catalog.format('ALTER VIEW %I.login_etl_migrations OWNER TO login_etl_owner', data);
END
$$;
ALTER TABLE login_etl_layout OWNER TO login_etl_owner;
ALTER TABLE login_etl_ledger OWNER TO login_etl_owner;
-- The ledger's day partitions, including those its maintenance created so far.
DO $$
DECLARE part regclass;
BEGIN
  FOR part IN SELECT i.inhrelid::regclass FROM pg_catalog.pg_inherits i
              WHERE i.inhparent = 'login_etl_ledger'::regclass::oid LOOP
    EXECUTE pg_catalog.format('ALTER TABLE %s OWNER TO login_etl_owner', part);
  END LOOP;
END
$$;
ALTER VIEW user_logins_duplicate_ips OWNER TO login_etl_owner;
ALTER VIEW user_logins_duplicate_devices OWNER TO login_etl_owner;
ALTER FUNCTION app_version_text(integer) OWNER TO login_etl_owner;
ALTER FUNCTION login_etl_ledger_maintain(integer, integer) OWNER TO login_etl_owner;
ALTER TABLE login_etl_rejects OWNER TO login_etl_owner;
ALTER TABLE login_etl_keys OWNER TO login_etl_owner;
ALTER TABLE login_etl_vault OWNER TO login_etl_owner;
ALTER TABLE login_etl_audit OWNER TO login_etl_owner;
ALTER TABLE login_etl_release_tickets OWNER TO login_etl_owner;
ALTER FUNCTION login_etl_vault_put(text[], text[], bytea[], bytea[], text[]) OWNER TO login_etl_owner;
ALTER FUNCTION login_etl_release_request(text[], text, text) OWNER TO login_etl_owner;
ALTER FUNCTION login_etl_release(bigint) OWNER TO login_etl_owner;
ALTER FUNCTION login_etl_forget(text[], text, text) OWNER TO login_etl_owner;
ALTER FUNCTION login_etl_audit_note(text, text[], text, text, text, text) OWNER TO login_etl_owner;
ALTER FUNCTION login_etl_audit_list(bigint, integer) OWNER TO login_etl_owner;
-- Version 8: the vault inbox, the claims on it, the links between masks of one
-- value, and the functions around them.
ALTER TABLE login_etl_vault_inbox OWNER TO login_etl_owner;
ALTER TABLE login_etl_inbox_claims OWNER TO login_etl_owner;
ALTER TABLE login_etl_vault_links OWNER TO login_etl_owner;
-- The rows migrate and the per-mask locks of forget and the inbox merge lock
-- (version 6): only their owner may lock them, so nobody else can hold them.
ALTER TABLE login_etl_locks OWNER TO login_etl_owner;
ALTER FUNCTION login_etl_lock_masks(text[]) OWNER TO login_etl_owner;
ALTER FUNCTION login_etl_linked(text[]) OWNER TO login_etl_owner;
ALTER FUNCTION login_etl_inbox_claim(text[], bigint, integer, text, text) OWNER TO login_etl_owner;
ALTER FUNCTION login_etl_inbox_claimed(bigint) OWNER TO login_etl_owner;
ALTER FUNCTION login_etl_inbox_settle(bigint, bigint[], bigint[], bigint[], text[]) OWNER TO login_etl_owner;
ALTER TABLE login_etl_key_retirements OWNER TO login_etl_owner;
ALTER FUNCTION login_etl_hmac_keys_needed() OWNER TO login_etl_owner;
ALTER FUNCTION login_etl_vault_drop_erased(text[], text[], text, text) OWNER TO login_etl_owner;
ALTER FUNCTION login_etl_register_key(text, text) OWNER TO login_etl_owner;

-- Nothing for anyone by default: functions are executable by PUBLIC unless revoked.
REVOKE ALL ON user_logins, login_etl_ledger, login_etl_rejects, login_etl_keys, login_etl_vault,
  login_etl_audit, login_etl_release_tickets, user_logins_duplicate_ips, user_logins_duplicate_devices
  FROM PUBLIC, login_etl_consumer, pii_recoverer, login_etl_analyst;
REVOKE ALL ON SEQUENCE login_etl_audit_id_seq, login_etl_release_tickets_id_seq
  FROM PUBLIC, login_etl_consumer, pii_recoverer;
REVOKE ALL ON login_etl_vault_inbox, login_etl_inbox_claims, login_etl_vault_links, login_etl_locks,
  login_etl_key_retirements FROM PUBLIC, login_etl_consumer, pii_recoverer, login_etl_analyst;
REVOKE ALL ON SEQUENCE login_etl_vault_inbox_id_seq, login_etl_inbox_claims_id_seq
  FROM PUBLIC, login_etl_consumer, pii_recoverer, login_etl_analyst;
REVOKE ALL ON FUNCTION login_etl_lock_masks(text[]), login_etl_linked(text[]),
  login_etl_inbox_claim(text[], bigint, integer, text, text), login_etl_inbox_claimed(bigint),
  login_etl_inbox_settle(bigint, bigint[], bigint[], bigint[], text[]),
  login_etl_hmac_keys_needed(), login_etl_vault_drop_erased(text[], text[], text, text),
  login_etl_register_key(text, text)
  FROM PUBLIC, login_etl_consumer, pii_recoverer, login_etl_analyst;
REVOKE ALL ON FUNCTION login_etl_vault_put(text[], text[], bytea[], bytea[], text[]),
  login_etl_release_request(text[], text, text), login_etl_release(bigint),
  login_etl_forget(text[], text, text),
  login_etl_audit_note(text, text[], text, text, text, text), login_etl_audit_list(bigint, integer),
  login_etl_ledger_maintain(integer, integer)
  FROM PUBLIC, login_etl_consumer, pii_recoverer, login_etl_analyst;
-- Which schema versions are applied, and which data schema the state schema
-- serves: every command reads them at start (only roles with USAGE on the
-- state schema can reach them).
REVOKE ALL ON login_etl_migrations, login_etl_layout FROM PUBLIC;
GRANT SELECT ON login_etl_migrations, login_etl_layout TO PUBLIC;

-- What each group may do, section by section, with why.
-- generated:grants (written from src/db/grants.ts by `make docs`; do not edit by hand)
-- The consumer writes what its runs produce and reads only what its writes need: the ledger
-- (redeliveries), the reasons it inserted (RETURNING), reject ages (retention), key fingerprints.
-- The ledger's day partitions are created and dropped by login_etl_ledger_maintain, with the
-- owner's rights.
GRANT INSERT ON user_logins TO login_etl_consumer;
GRANT SELECT, INSERT ON login_etl_ledger TO login_etl_consumer;
GRANT EXECUTE ON FUNCTION login_etl_ledger_maintain(integer, integer) TO login_etl_consumer;
GRANT INSERT, DELETE ON login_etl_rejects TO login_etl_consumer;
GRANT SELECT (message_id, detail, rejected_at) ON login_etl_rejects TO login_etl_consumer;
GRANT SELECT (reason) ON login_etl_rejects TO login_etl_consumer;

-- It records its key ids only through login_etl_register_key, which checks the id's shape, names
-- the login and caps new ids a day: a consumer that could write the table could plant any id
-- (merges and recover would then ask for a key nobody has) or rows that pass for someone else's.
GRANT SELECT ON login_etl_keys TO login_etl_consumer;
GRANT EXECUTE ON FUNCTION login_etl_register_key(text, text) TO login_etl_consumer;
GRANT EXECUTE ON FUNCTION login_etl_vault_put(text[], text[], bytea[], bytea[], text[]) TO login_etl_consumer;

-- The recoverer recovers, erases and reads the trail, each through a function. Recovery takes two:
-- login_etl_release_request audits and issues a ticket, login_etl_release hands out the ciphertext
-- once that has committed.
GRANT EXECUTE ON FUNCTION login_etl_release_request(text[], text, text) TO pii_recoverer;
GRANT EXECUTE ON FUNCTION login_etl_release(bigint) TO pii_recoverer;
GRANT EXECUTE ON FUNCTION login_etl_forget(text[], text, text) TO pii_recoverer;
GRANT EXECUTE ON FUNCTION login_etl_audit_list(bigint, integer) TO pii_recoverer;

-- Before requesting, it merges the vault inbox entries of the masks it asks for (each claim audited
-- and committed before its entries are handed out); the whole inbox only the owner merges
-- (login_etl_inbox_claim checks).
GRANT EXECUTE ON FUNCTION login_etl_inbox_claim(text[], bigint, integer, text, text) TO pii_recoverer;
GRANT EXECUTE ON FUNCTION login_etl_inbox_claimed(bigint) TO pii_recoverer;
GRANT EXECUTE ON FUNCTION login_etl_inbox_settle(bigint, bigint[], bigint[], bigint[], text[]) TO pii_recoverer;

-- Merges, recoveries and erasures by value refuse a key set that lacks an HMAC key recorded in use
-- and not retired; before a recovered value is shown, its masks under every held key are checked
-- for tombstones.
GRANT EXECUTE ON FUNCTION login_etl_hmac_keys_needed() TO pii_recoverer;
GRANT EXECUTE ON FUNCTION login_etl_vault_drop_erased(text[], text[], text, text) TO pii_recoverer;

-- A refused attempt is audited under the refused login, by either role; this function records only
-- denied or failed attempts, so it cannot forge a release.
GRANT EXECUTE ON FUNCTION login_etl_audit_note(text, text[], text, text, text, text) TO login_etl_consumer, pii_recoverer;

-- Analysts read the logins (masked values only) and the duplicate views; nothing of the state
-- schema (rejects, vault, audit trail, ledger) is theirs.
GRANT SELECT ON user_logins TO login_etl_analyst;
GRANT SELECT ON user_logins_duplicate_ips TO login_etl_analyst;
GRANT SELECT ON user_logins_duplicate_devices TO login_etl_analyst;
GRANT EXECUTE ON FUNCTION app_version_text(integer) TO PUBLIC;
-- generated:end
