-- Least-privilege roles for login-etl. Run as a superuser or the database
-- owner, with search_path set to login-etl's schema, after sql/schema.sql:
--   psql "$ADMIN_URL" -v ON_ERROR_STOP=1 -c 'SET search_path = public' -f sql/schema.sql -f sql/roles.sql
-- The three roles are groups (NOLOGIN): grant them to login users, e.g.
--   CREATE ROLE etl_service LOGIN PASSWORD '…' IN ROLE login_etl_consumer;
--   CREATE ROLE alice LOGIN PASSWORD '…' IN ROLE pii_recoverer;

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
  -- Schema access for all three; the owner may also create (migrations, rekey).
  EXECUTE format('GRANT USAGE ON SCHEMA %I TO login_etl_consumer, pii_recoverer', current_schema());
  EXECUTE format('GRANT USAGE, CREATE ON SCHEMA %I TO login_etl_owner', current_schema());
END
$$;

-- The owner owns the tables: migrations, `rekey` and `rekey-vault` run as it.
ALTER TABLE user_logins OWNER TO login_etl_owner;
ALTER TABLE login_etl_ledger OWNER TO login_etl_owner;
ALTER TABLE login_etl_rejects OWNER TO login_etl_owner;
ALTER TABLE login_etl_keys OWNER TO login_etl_owner;
ALTER TABLE login_etl_vault OWNER TO login_etl_owner;
ALTER TABLE login_etl_audit OWNER TO login_etl_owner;
ALTER TABLE login_etl_forgotten OWNER TO login_etl_owner;

-- The consumer writes what its runs produce, and reads only what its writes
-- need: ids it inserted (RETURNING), key fingerprints, and the ledger for
-- pruning. It may add vault entries but never read them.
REVOKE ALL ON user_logins, login_etl_ledger, login_etl_rejects, login_etl_keys, login_etl_vault, login_etl_audit,
  login_etl_forgotten FROM login_etl_consumer, pii_recoverer;
GRANT INSERT ON user_logins TO login_etl_consumer;
GRANT SELECT, INSERT, DELETE ON login_etl_ledger TO login_etl_consumer;
GRANT INSERT ON login_etl_rejects TO login_etl_consumer;
GRANT SELECT (reason) ON login_etl_rejects TO login_etl_consumer;
GRANT SELECT, INSERT ON login_etl_keys TO login_etl_consumer;
GRANT INSERT ON login_etl_vault TO login_etl_consumer;

-- Erased values are never vaulted again: the consumer checks the tombstones.
GRANT SELECT ON login_etl_forgotten TO login_etl_consumer;

-- Only the recoverer reads the vault; it may also erase entries (forget).
GRANT SELECT, DELETE ON login_etl_vault TO pii_recoverer;
GRANT SELECT, INSERT ON login_etl_forgotten TO pii_recoverer;

-- The audit trail is append-only: anyone who may attempt a recovery may add a
-- row (a refused attempt is audited under the refused role), only the
-- recoverer may read it, and nobody but the owner may change it. Only the
-- caller's columns are insertable: id, at and db_user are the database's.
GRANT SELECT ON login_etl_audit TO pii_recoverer;
GRANT INSERT (actor, action, masked_value, reason, outcome, detail) ON login_etl_audit
  TO login_etl_consumer, pii_recoverer;
GRANT USAGE ON SEQUENCE login_etl_audit_id_seq TO login_etl_consumer, pii_recoverer;
