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
-- functions, and the analyst role has no USAGE on it, so nothing in it is even
-- visible by name to analysts. Neither the consumer nor the recoverer has any
-- privilege on the vault or the audit trail. They reach them only through
-- SECURITY DEFINER functions owned by login_etl_owner, which audit in the same
-- transaction under session_user (the login role, whatever SET ROLE says): the
-- consumer appends vault entries to an inbox and learns nothing back (the same
-- insert whatever the vault holds); the recoverer recovers and erases, always
-- audited; the owner merges the inbox into the vault (login-etl vault-merge).

DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'login_etl_owner') THEN
    CREATE ROLE login_etl_owner NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'login_etl_consumer') THEN
    CREATE ROLE login_etl_consumer NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pii_recoverer') THEN
    CREATE ROLE pii_recoverer NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'login_etl_analyst') THEN
    CREATE ROLE login_etl_analyst NOLOGIN;
  END IF;
END
$$;

-- The two schemas. The state schema must be the one serving this data schema
-- (its login_etl_layout says so); it then goes first in search_path, so the
-- names below mean login-etl's tables there and user_logins in the data schema.
DO $$
DECLARE
  data constant text := current_schema();
  state constant text := coalesce(nullif(current_setting('login_etl.state_schema', true), ''), 'login_etl');
  served text;
BEGIN
  IF to_regclass(format('%I.login_etl_layout', state)) IS NOT NULL THEN
    EXECUTE format('SELECT data_schema FROM %I.login_etl_layout', state) INTO served;
  END IF;
  IF served IS DISTINCT FROM data THEN
    RAISE EXCEPTION 'Schema % does not hold login-etl''s tables for schema %: set search_path to the data schema and login_etl.state_schema to its state schema, after sql/schema.sql or login-etl migrate',
      state, coalesce(data, '(none)');
  END IF;
  -- The consumer writes user_logins; the analyst reads it and its views; the
  -- recoverer has nothing there. The owner may create (migrations, rekey).
  EXECUTE format('GRANT USAGE ON SCHEMA %I TO login_etl_consumer, login_etl_analyst', data);
  EXECUTE format('REVOKE ALL ON SCHEMA %I FROM pii_recoverer', data);
  EXECUTE format('GRANT USAGE, CREATE ON SCHEMA %I TO login_etl_owner', data);
  -- The consumer and the recoverer reach the state schema; nobody else does.
  -- The owner creates there too: login_etl_ledger_maintain makes day partitions.
  EXECUTE format('REVOKE ALL ON SCHEMA %I FROM PUBLIC, login_etl_analyst', state);
  EXECUTE format('GRANT USAGE ON SCHEMA %I TO login_etl_consumer, pii_recoverer', state);
  EXECUTE format('GRANT USAGE, CREATE ON SCHEMA %I TO login_etl_owner', state);
  PERFORM set_config('search_path', format('%I, %I', state, data), false);
END
$$;

-- The owner owns the tables and the functions: migrations, `rekey` and
-- `rekey-vault` run as it, and the functions run with its rights.
ALTER TABLE user_logins OWNER TO login_etl_owner;
ALTER TABLE login_etl_migrations OWNER TO login_etl_owner;
ALTER TABLE login_etl_layout OWNER TO login_etl_owner;
ALTER TABLE login_etl_ledger OWNER TO login_etl_owner;
-- The ledger's day partitions, including those its maintenance created so far.
DO $$
DECLARE part regclass;
BEGIN
  FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'login_etl_ledger'::regclass LOOP
    EXECUTE format('ALTER TABLE %s OWNER TO login_etl_owner', part);
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
ALTER FUNCTION login_etl_vault_put(text[], text[], bytea[], bytea[], text[]) OWNER TO login_etl_owner;
ALTER FUNCTION login_etl_recover(text[], text, text) OWNER TO login_etl_owner;
ALTER FUNCTION login_etl_forget(text[], text, text) OWNER TO login_etl_owner;
ALTER FUNCTION login_etl_audit_note(text, text[], text, text, text, text) OWNER TO login_etl_owner;
ALTER FUNCTION login_etl_audit_list(bigint, integer) OWNER TO login_etl_owner;
-- Version 8: the vault inbox, the claims on it, the links between masks of one
-- value, and the functions around them.
ALTER TABLE login_etl_vault_inbox OWNER TO login_etl_owner;
ALTER TABLE login_etl_inbox_claims OWNER TO login_etl_owner;
ALTER TABLE login_etl_vault_links OWNER TO login_etl_owner;
ALTER FUNCTION login_etl_lock_masks(text[]) OWNER TO login_etl_owner;
ALTER FUNCTION login_etl_linked(text[]) OWNER TO login_etl_owner;
ALTER FUNCTION login_etl_inbox_claim(text[], bigint, integer, text, text) OWNER TO login_etl_owner;
ALTER FUNCTION login_etl_inbox_claimed(bigint) OWNER TO login_etl_owner;
ALTER FUNCTION login_etl_inbox_settle(bigint, bigint[], bigint[], bigint[], text[]) OWNER TO login_etl_owner;

-- Nothing for anyone by default: functions are executable by PUBLIC unless revoked.
REVOKE ALL ON user_logins, login_etl_ledger, login_etl_rejects, login_etl_keys, login_etl_vault,
  login_etl_audit, user_logins_duplicate_ips, user_logins_duplicate_devices
  FROM PUBLIC, login_etl_consumer, pii_recoverer, login_etl_analyst;
REVOKE ALL ON SEQUENCE login_etl_audit_id_seq FROM PUBLIC, login_etl_consumer, pii_recoverer;
REVOKE ALL ON login_etl_vault_inbox, login_etl_inbox_claims, login_etl_vault_links
  FROM PUBLIC, login_etl_consumer, pii_recoverer, login_etl_analyst;
REVOKE ALL ON SEQUENCE login_etl_vault_inbox_id_seq, login_etl_inbox_claims_id_seq
  FROM PUBLIC, login_etl_consumer, pii_recoverer, login_etl_analyst;
REVOKE ALL ON FUNCTION login_etl_lock_masks(text[]), login_etl_linked(text[]),
  login_etl_inbox_claim(text[], bigint, integer, text, text), login_etl_inbox_claimed(bigint),
  login_etl_inbox_settle(bigint, bigint[], bigint[], bigint[], text[])
  FROM PUBLIC, login_etl_consumer, pii_recoverer, login_etl_analyst;
REVOKE ALL ON FUNCTION login_etl_vault_put(text[], text[], bytea[], bytea[], text[]),
  login_etl_recover(text[], text, text), login_etl_forget(text[], text, text),
  login_etl_audit_note(text, text[], text, text, text, text), login_etl_audit_list(bigint, integer),
  login_etl_ledger_maintain(integer, integer)
  FROM PUBLIC, login_etl_consumer, pii_recoverer, login_etl_analyst;
-- Which schema versions are applied, and which data schema the state schema
-- serves: every command reads them at start (only roles with USAGE on the
-- state schema can reach them).
REVOKE ALL ON login_etl_migrations, login_etl_layout FROM PUBLIC;
GRANT SELECT ON login_etl_migrations, login_etl_layout TO PUBLIC;

-- The consumer writes what its runs produce and reads only what its writes
-- need: the ledger (redeliveries), the reasons it inserted (RETURNING),
-- reject ages (retention), key fingerprints. The ledger's day partitions are
-- created and dropped by login_etl_ledger_maintain, with the owner's rights.
GRANT INSERT ON user_logins TO login_etl_consumer;
GRANT SELECT, INSERT ON login_etl_ledger TO login_etl_consumer;
GRANT EXECUTE ON FUNCTION login_etl_ledger_maintain(integer, integer) TO login_etl_consumer;
GRANT INSERT, DELETE ON login_etl_rejects TO login_etl_consumer;
GRANT SELECT (message_id, reason, detail, rejected_at) ON login_etl_rejects TO login_etl_consumer;
GRANT SELECT, INSERT ON login_etl_keys TO login_etl_consumer;
GRANT EXECUTE ON FUNCTION login_etl_vault_put(text[], text[], bytea[], bytea[], text[])
  TO login_etl_consumer;

-- The recoverer recovers, erases and reads the trail, each through a function.
GRANT EXECUTE ON FUNCTION login_etl_recover(text[], text, text), login_etl_forget(text[], text, text),
  login_etl_audit_list(bigint, integer) TO pii_recoverer;
-- Before recovering, it merges the vault inbox entries of the masks it asks
-- for (each audited before its ciphertext is handed out); the whole inbox
-- only the owner merges (login_etl_inbox_claim checks).
GRANT EXECUTE ON FUNCTION login_etl_inbox_claim(text[], bigint, integer, text, text),
  login_etl_inbox_claimed(bigint), login_etl_inbox_settle(bigint, bigint[], bigint[], bigint[], text[])
  TO pii_recoverer;

-- A refused attempt is audited under the refused login, by either role; this
-- function records only denied or failed attempts, so it cannot forge a release.
GRANT EXECUTE ON FUNCTION login_etl_audit_note(text, text[], text, text, text, text)
  TO login_etl_consumer, pii_recoverer;

-- Analysts read the logins (masked values only) and the duplicate views;
-- nothing of the state schema (rejects, vault, audit trail, ledger) is theirs.
GRANT SELECT ON user_logins, user_logins_duplicate_ips, user_logins_duplicate_devices
  TO login_etl_analyst;
GRANT EXECUTE ON FUNCTION app_version_text(integer) TO PUBLIC;
