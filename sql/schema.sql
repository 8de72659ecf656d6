-- login-etl's schema for a new database, for a DBA who creates it ahead of time
-- (login-etl applies what is missing on start when its role may, and
-- `login-etl migrate` upgrades an existing database). Run with search_path set
-- to the analysts' data schema (--schema) and login_etl.state_schema to
-- login-etl's own (--state-schema; login_etl when not set), without -1
-- (version 4 builds its indexes CONCURRENTLY, outside a transaction), then
-- sql/roles.sql:
--   psql "$ADMIN_URL" -v ON_ERROR_STOP=1 -c 'SET search_path = public' \
--     -c 'SET login_etl.state_schema = login_etl' -f sql/schema.sql -f sql/roles.sql
-- It first refuses, with the statement that fixes it, a data or state schema
-- that a role other than superusers, the data schema's owner, the owner role
-- (login_etl.owner_role, else login_etl_owner) and you may create objects in,
-- owns, or holds anything of: the migrations call functions with the data
-- schema in search_path (docs/pii.md, threat model).
-- Written from src/db/migrations.ts by `make docs`; do not edit by hand.

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
          ARRAY[CURRENT_USER::text, COALESCE(NULLIF(pg_catalog.current_setting('login_etl.owner_role', true), ''), 'login_etl_owner')]
  LOOP
    RAISE EXCEPTION '%: %; %; run %', 'Refused to apply sql/schema.sql', found.problem, 'login-etl''s migrations and SECURITY DEFINER functions look up what they call there, so planted code would run with their rights', found.fix
      USING ERRCODE = '55000';
  END LOOP;
END $guard$;

CREATE TABLE IF NOT EXISTS login_etl_migrations (
        version    integer PRIMARY KEY,
        name       text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now(),
        applied_by text NOT NULL DEFAULT session_user,
        source     text NOT NULL CHECK (source IN ('migrate', 'schema.sql', 'found'))
);
GRANT SELECT ON login_etl_migrations TO PUBLIC;

-- Version 1: login-etl 0.1 tables
BEGIN;

CREATE TABLE IF NOT EXISTS user_logins(
        user_id             varchar(128),
        device_type         varchar(32),
        masked_ip           varchar(256),
        masked_device_id    varchar(256),
        locale              varchar(32),
        app_version         integer,
        create_date         date
);

CREATE TABLE IF NOT EXISTS login_etl_ledger (
        message_id   text PRIMARY KEY,
        committed_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS login_etl_ledger_committed_at
    ON login_etl_ledger USING brin (committed_at);

CREATE TABLE IF NOT EXISTS login_etl_rejects (
        message_id  text PRIMARY KEY,
        reason      text NOT NULL,
        detail      text NOT NULL,
        masked_body text,
        body_bytes  integer NOT NULL,
        body_hmac   text NOT NULL,
        sent_at     timestamptz NOT NULL,
        rejected_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS login_etl_keys (
        key_id       text PRIMARY KEY,
        fingerprint  text NOT NULL,
        first_used   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS login_etl_vault (
        masked_value text PRIMARY KEY,
        field        text NOT NULL CHECK (field IN ('ip', 'device_id')),
        ciphertext   bytea NOT NULL,
        iv           bytea NOT NULL,
        key_id       text NOT NULL,
        first_seen   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS login_etl_forgotten (
        masked_value text PRIMARY KEY,
        forgotten_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS login_etl_audit (
        id           bigserial PRIMARY KEY,
        at           timestamptz NOT NULL DEFAULT now(),
        actor        text NOT NULL,
        db_user      text NOT NULL DEFAULT current_user,
        action       text NOT NULL,
        masked_value text,
        reason       text,
        outcome      text NOT NULL,
        detail       text
);

INSERT INTO login_etl_migrations (version, name, source)
    VALUES (1, 'login-etl 0.1 tables', 'schema.sql');

COMMIT;

-- Version 2: vault tombstones and SECURITY DEFINER functions for the vault and the audit trail
BEGIN;

ALTER TABLE login_etl_vault ALTER COLUMN field DROP NOT NULL,
    ALTER COLUMN ciphertext DROP NOT NULL, ALTER COLUMN iv DROP NOT NULL,
    ALTER COLUMN key_id DROP NOT NULL, ADD COLUMN erased_at timestamptz;

ALTER TABLE login_etl_vault ADD CONSTRAINT login_etl_vault_entry_or_tombstone CHECK (CASE WHEN erased_at IS NULL
    THEN field IS NOT NULL AND ciphertext IS NOT NULL AND iv IS NOT NULL AND key_id IS NOT NULL
    ELSE ciphertext IS NULL AND iv IS NULL AND key_id IS NULL END);

INSERT INTO login_etl_vault AS v (masked_value, erased_at)
    SELECT masked_value, forgotten_at FROM login_etl_forgotten
    ON CONFLICT (masked_value) DO UPDATE
      SET ciphertext = NULL, iv = NULL, key_id = NULL, erased_at = EXCLUDED.erased_at;

DROP TABLE login_etl_forgotten;

ALTER TABLE login_etl_audit ALTER COLUMN db_user SET DEFAULT session_user;

CREATE INDEX IF NOT EXISTS login_etl_rejects_rejected_at
    ON login_etl_rejects USING brin (rejected_at);

DO $do$
DECLARE caller text;
BEGIN
  EXECUTE format($f$
CREATE OR REPLACE FUNCTION login_etl_vault_put(p_masked text[], p_field text[], p_ciphertext bytea[], p_iv bytea[], p_key_id text[]) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = %I, pg_temp AS $body$
INSERT INTO login_etl_vault AS v (masked_value, field, ciphertext, iv, key_id)
SELECT DISTINCT ON (u.m) u.m, u.f, u.c, u.i, u.k
FROM unnest(p_masked, p_field, p_ciphertext, p_iv, p_key_id) AS u(m, f, c, i, k)
ORDER BY u.m
ON CONFLICT (masked_value) DO UPDATE SET first_seen = v.first_seen
$body$$f$, current_schema());
  REVOKE ALL ON FUNCTION login_etl_vault_put(text[], text[], bytea[], bytea[], text[]) FROM PUBLIC;
  FOR caller IN SELECT rolname FROM pg_roles WHERE rolname IN ('login_etl_consumer') LOOP
    EXECUTE format('GRANT EXECUTE ON FUNCTION login_etl_vault_put(text[], text[], bytea[], bytea[], text[]) TO %I', caller);
  END LOOP;
END $do$;

DO $do$
DECLARE caller text;
BEGIN
  EXECUTE format($f$
CREATE OR REPLACE FUNCTION login_etl_recover(p_masked text[], p_actor text, p_reason text) RETURNS TABLE (masked_value text, field text, ciphertext bytea, iv bytea, key_id text, state text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = %I, pg_temp AS $body$
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
END
$body$$f$, current_schema());
  REVOKE ALL ON FUNCTION login_etl_recover(text[], text, text) FROM PUBLIC;
  FOR caller IN SELECT rolname FROM pg_roles WHERE rolname IN ('pii_recoverer') LOOP
    EXECUTE format('GRANT EXECUTE ON FUNCTION login_etl_recover(text[], text, text) TO %I', caller);
  END LOOP;
END $do$;

DO $do$
DECLARE caller text;
BEGIN
  EXECUTE format($f$
CREATE OR REPLACE FUNCTION login_etl_forget(p_masked text[], p_actor text, p_reason text) RETURNS TABLE (masked_value text, outcome text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = %I, pg_temp AS $body$
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
END
$body$$f$, current_schema());
  REVOKE ALL ON FUNCTION login_etl_forget(text[], text, text) FROM PUBLIC;
  FOR caller IN SELECT rolname FROM pg_roles WHERE rolname IN ('pii_recoverer') LOOP
    EXECUTE format('GRANT EXECUTE ON FUNCTION login_etl_forget(text[], text, text) TO %I', caller);
  END LOOP;
END $do$;

DO $do$
DECLARE caller text;
BEGIN
  EXECUTE format($f$
CREATE OR REPLACE FUNCTION login_etl_audit_note(p_action text, p_masked text[], p_actor text, p_reason text, p_outcome text, p_detail text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = %I, pg_temp AS $body$
BEGIN
  IF p_action NOT IN ('recover', 'forget') OR p_outcome NOT IN ('denied', 'failed') THEN
    RAISE EXCEPTION 'login_etl_audit_note records only denied or failed recover and forget attempts'
      USING ERRCODE = '22023';
  END IF;
  INSERT INTO login_etl_audit (actor, action, masked_value, reason, outcome, detail)
  SELECT p_actor, p_action, m, p_reason, p_outcome, p_detail
  FROM unnest(coalesce(p_masked, ARRAY[NULL::text])) AS m;
END
$body$$f$, current_schema());
  REVOKE ALL ON FUNCTION login_etl_audit_note(text, text[], text, text, text, text) FROM PUBLIC;
  FOR caller IN SELECT rolname FROM pg_roles WHERE rolname IN ('login_etl_consumer', 'pii_recoverer') LOOP
    EXECUTE format('GRANT EXECUTE ON FUNCTION login_etl_audit_note(text, text[], text, text, text, text) TO %I', caller);
  END LOOP;
END $do$;

DO $do$
DECLARE caller text;
BEGIN
  EXECUTE format($f$
CREATE OR REPLACE FUNCTION login_etl_audit_list(p_after bigint, p_limit integer) RETURNS SETOF login_etl_audit
LANGUAGE sql SECURITY DEFINER SET search_path = %I, pg_temp AS $body$
SELECT * FROM login_etl_audit WHERE id > p_after ORDER BY id LIMIT least(p_limit, 10000)
$body$$f$, current_schema());
  REVOKE ALL ON FUNCTION login_etl_audit_list(bigint, integer) FROM PUBLIC;
  FOR caller IN SELECT rolname FROM pg_roles WHERE rolname IN ('pii_recoverer') LOOP
    EXECUTE format('GRANT EXECUTE ON FUNCTION login_etl_audit_list(bigint, integer) TO %I', caller);
  END LOOP;
END $do$;

INSERT INTO login_etl_migrations (version, name, source)
    VALUES (2, 'vault tombstones and SECURITY DEFINER functions for the vault and the audit trail', 'schema.sql');

COMMIT;

-- Version 3: app_version_text() and the duplicate views for analysts
BEGIN;

CREATE OR REPLACE FUNCTION app_version_text(encoded integer) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
      SELECT CASE WHEN encoded BETWEEN 0 AND 999999999
        THEN (encoded / 1000000) || '.' || (encoded / 1000 % 1000) || '.' || (encoded % 1000) END
    $$;

CREATE OR REPLACE VIEW user_logins_duplicate_ips AS
    SELECT masked_ip, count(*) AS logins, count(DISTINCT user_id) AS users,
           min(create_date) AS first_date, max(create_date) AS last_date
    FROM user_logins WHERE masked_ip IS NOT NULL
    GROUP BY masked_ip HAVING count(*) > 1;

CREATE OR REPLACE VIEW user_logins_duplicate_devices AS
    SELECT masked_device_id, count(*) AS logins, count(DISTINCT user_id) AS users,
           min(create_date) AS first_date, max(create_date) AS last_date
    FROM user_logins WHERE masked_device_id IS NOT NULL
    GROUP BY masked_device_id HAVING count(*) > 1;

INSERT INTO login_etl_migrations (version, name, source)
    VALUES (3, 'app_version_text() and the duplicate views for analysts', 'schema.sql');

COMMIT;

-- Version 4: indexes on masked_ip and masked_device_id (outside a transaction)
DO $$ BEGIN
  IF EXISTS (SELECT FROM pg_index WHERE indexrelid = to_regclass('user_logins_masked_ip') AND NOT indisvalid) THEN
    DROP INDEX user_logins_masked_ip;
  END IF;
END $$;

CREATE INDEX CONCURRENTLY IF NOT EXISTS user_logins_masked_ip ON user_logins (masked_ip) INCLUDE (user_id, create_date);

DO $$ BEGIN
  IF EXISTS (SELECT FROM pg_index WHERE indexrelid = to_regclass('user_logins_masked_device_id') AND NOT indisvalid) THEN
    DROP INDEX user_logins_masked_device_id;
  END IF;
END $$;

CREATE INDEX CONCURRENTLY IF NOT EXISTS user_logins_masked_device_id ON user_logins (masked_device_id) INCLUDE (user_id, create_date);

INSERT INTO login_etl_migrations (version, name, source)
    VALUES (4, 'indexes on masked_ip and masked_device_id', 'schema.sql');

-- Version 5: ledger partitioned by day of SentTimestamp
BEGIN;

ALTER TABLE login_etl_ledger RENAME TO login_etl_ledger_unpartitioned;

ALTER INDEX login_etl_ledger_pkey RENAME TO login_etl_ledger_unpartitioned_pkey;

DROP INDEX login_etl_ledger_committed_at;

CREATE TABLE login_etl_ledger (
        message_id   text NOT NULL,
        sent_date    date NOT NULL,
        committed_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (message_id, sent_date)
    ) PARTITION BY RANGE (sent_date);

CREATE TABLE login_etl_ledger_undated PARTITION OF login_etl_ledger
    FOR VALUES FROM (MINVALUE) TO ('2000-01-01');

CREATE TABLE login_etl_ledger_other PARTITION OF login_etl_ledger DEFAULT;

CREATE INDEX login_etl_ledger_undated_committed_at
    ON login_etl_ledger_undated USING brin (committed_at);

CREATE INDEX login_etl_ledger_other_committed_at
    ON login_etl_ledger_other USING brin (committed_at);

INSERT INTO login_etl_ledger (message_id, sent_date, committed_at)
    SELECT message_id, '-infinity', committed_at FROM login_etl_ledger_unpartitioned;

DO $$
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
END $$;

DROP TABLE login_etl_ledger_unpartitioned;

DO $do$
DECLARE caller text;
BEGIN
  EXECUTE format($f$
CREATE OR REPLACE FUNCTION login_etl_ledger_maintain(p_retention_days integer, p_limit integer) RETURNS TABLE (created integer, dropped integer, deleted integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = %I, pg_temp AS $body$
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
    CONTINUE WHEN to_regclass(format('login_etl_ledger_p%%s', to_char(day, 'YYYYMMDD'))) IS NOT NULL
      OR EXISTS (SELECT FROM login_etl_ledger_other WHERE sent_date = day);
    BEGIN
      EXECUTE format('CREATE TABLE login_etl_ledger_p%%s PARTITION OF login_etl_ledger FOR VALUES FROM (%%L) TO (%%L)',
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
      EXECUTE format('DROP TABLE %%I', part.relname);
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
END
$body$$f$, current_schema());
  REVOKE ALL ON FUNCTION login_etl_ledger_maintain(integer, integer) FROM PUBLIC;
  FOR caller IN SELECT rolname FROM pg_roles WHERE rolname IN ('login_etl_consumer') LOOP
    EXECUTE format('GRANT EXECUTE ON FUNCTION login_etl_ledger_maintain(integer, integer) TO %I', caller);
  END LOOP;
END $do$;

INSERT INTO login_etl_migrations (version, name, source)
    VALUES (5, 'ledger partitioned by day of SentTimestamp', 'schema.sql');

COMMIT;

-- Version 6: login-etl's own tables and functions moved to the state schema
BEGIN;

DO $$
DECLARE
  data constant text := current_schema();
  state constant text := coalesce(nullif(current_setting('login_etl.state_schema', true), ''), 'login_etl');
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
  WHERE n.nspname = state AND c.relkind IN ('r', 'p') AND c.relname LIKE 'login\_etl\_%';
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
         'login_etl_vault', 'login_etl_audit') OR c.relispartition AND c.relname LIKE 'login\_etl\_ledger\_%')
      UNION ALL
      SELECT p.proowner, true, p.proacl FROM pg_proc p
      WHERE p.pronamespace = data_oid AND p.proname IN ('login_etl_vault_put', 'login_etl_recover',
        'login_etl_forget', 'login_etl_audit_note', 'login_etl_audit_list', 'login_etl_ledger_maintain')
    ) o, LATERAL (SELECT o.role, o.owner UNION ALL SELECT a.grantee, false FROM aclexplode(o.acl) a) g
    WHERE g.role <> 0 AND g.role <> (SELECT nspowner FROM pg_namespace WHERE nspname = state)
    GROUP BY g.role
    -- An owner that search_path.ts's rule does not trust gets nothing.
    HAVING NOT bool_or(g.owner) OR g.role IN (SELECT r.oid AS role FROM pg_catalog.pg_roles r
  WHERE r.rolsuper OR r.rolname::text = ANY (ARRAY[COALESCE(NULLIF(pg_catalog.current_setting('login_etl.owner_role', true), ''), 'login_etl_owner')])
  UNION SELECT n.nspowner FROM pg_catalog.pg_namespace n WHERE n.nspname::text = data)
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
END $$;

DO $$
DECLARE
  state constant text := COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl');
BEGIN
  EXECUTE pg_catalog.format('CREATE TABLE %I.login_etl_locks (name text PRIMARY KEY)', state);
  -- In random order (gen_random_uuid: strong randomness, built in since 13):
  -- the tuple a waiting session's lock names in pg_locks, seen by every
  -- login, is then no function of the bucket, and so of the mask.
  EXECUTE pg_catalog.format($i$INSERT INTO %I.login_etl_locks (name) SELECT n.name FROM (SELECT 'schema'
    UNION ALL SELECT pg_catalog.textcat('mask ', b::text) FROM pg_catalog.generate_series(0, %s) AS b) AS n(name)
    ORDER BY pg_catalog.gen_random_uuid()$i$,
    state, 1024 - 1);
  EXECUTE pg_catalog.format('REVOKE ALL ON %I.login_etl_locks FROM PUBLIC', state);
END $$;

DO $$
BEGIN
  EXECUTE pg_catalog.format('INSERT INTO %I.login_etl_migrations (version, name, source) VALUES (%s, %L, %L)',
                            COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl'), 6, 'login-etl''s own tables and functions moved to the state schema', 'schema.sql');
END $$;

COMMIT;

-- Version 7: SECURITY DEFINER functions that call only pg_catalog and the state schema; recovery released on committed tickets
BEGIN;

DO $$
DECLARE
  state constant text := COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl');
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
END $$;

DO $do$
DECLARE
  state constant text := COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl');
  caller text;
BEGIN
  EXECUTE pg_catalog.format($f$
CREATE OR REPLACE FUNCTION %1$I.login_etl_vault_put(p_masked text[], p_field text[], p_ciphertext bytea[], p_iv bytea[], p_key_id text[]) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, %1$I, pg_temp AS $body$
INSERT INTO %1$I.login_etl_vault AS v (masked_value, field, ciphertext, iv, key_id)
SELECT DISTINCT ON (u.m) u.m, u.f, u.c, u.i, u.k
FROM ROWS FROM (pg_catalog.unnest(p_masked), pg_catalog.unnest(p_field), pg_catalog.unnest(p_ciphertext),
                pg_catalog.unnest(p_iv), pg_catalog.unnest(p_key_id)) AS u(m, f, c, i, k)
ORDER BY u.m
ON CONFLICT (masked_value) DO UPDATE SET first_seen = v.first_seen
$body$$f$, state);
  EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %I.login_etl_vault_put(text[], text[], bytea[], bytea[], text[]) FROM PUBLIC', state);
  FOR caller IN SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.rolname::text IN ('login_etl_consumer') LOOP
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %I.login_etl_vault_put(text[], text[], bytea[], bytea[], text[]) TO %I', state, caller);
  END LOOP;
END $do$;

DO $do$
DECLARE
  state constant text := COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl');
  caller text;
BEGIN
  EXECUTE pg_catalog.format($f$
CREATE OR REPLACE FUNCTION %1$I.login_etl_forget(p_masked text[], p_actor text, p_reason text) RETURNS TABLE (masked_value text, outcome text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, %1$I, pg_temp AS $body$
#variable_conflict use_column
BEGIN
  IF COALESCE(pg_catalog.btrim(p_reason), '') = '' THEN
    INSERT INTO %1$I.login_etl_audit (actor, action, masked_value, reason, outcome, detail)
    SELECT p_actor, 'forget', m, p_reason, 'denied', 'no reason given' FROM pg_catalog.unnest(p_masked) AS m;
    RETURN QUERY SELECT m, 'denied'::text FROM pg_catalog.unnest(p_masked) AS m;
    RETURN;
  END IF;
  RETURN QUERY
  WITH asked AS (SELECT DISTINCT pg_catalog.unnest(p_masked) AS m),
  erased AS (
    INSERT INTO %1$I.login_etl_vault AS v (masked_value, erased_at)
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
    INSERT INTO %1$I.login_etl_audit (actor, action, masked_value, reason, outcome, detail)
    SELECT p_actor, 'forget', o.m, p_reason, o.o,
           CASE o.o WHEN 'success' THEN 'vault entry erased' ELSE 'no live vault entry; tombstone kept' END
    FROM outcomes o
  )
  SELECT o.m, o.o FROM outcomes o;
END
$body$$f$, state);
  EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %I.login_etl_forget(text[], text, text) FROM PUBLIC', state);
  FOR caller IN SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.rolname::text IN ('pii_recoverer') LOOP
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %I.login_etl_forget(text[], text, text) TO %I', state, caller);
  END LOOP;
END $do$;

DO $do$
DECLARE
  state constant text := COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl');
  caller text;
BEGIN
  EXECUTE pg_catalog.format($f$
CREATE OR REPLACE FUNCTION %1$I.login_etl_audit_note(p_action text, p_masked text[], p_actor text, p_reason text, p_outcome text, p_detail text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, %1$I, pg_temp AS $body$
BEGIN
  IF p_action IS NULL OR p_outcome IS NULL OR p_action NOT IN ('recover', 'forget')
     OR p_outcome NOT IN ('denied', 'failed') THEN
    RAISE EXCEPTION 'login_etl_audit_note records only denied or failed recover and forget attempts'
      USING ERRCODE = '22023';
  END IF;
  IF COALESCE(pg_catalog.btrim(p_actor), '') = '' OR pg_catalog.char_length(p_actor) > 200 THEN
    RAISE EXCEPTION 'login_etl_audit_note needs an actor of 1 to 200 characters'
      USING ERRCODE = '22023';
  END IF;
  IF pg_catalog.char_length(p_reason) > 1000 OR pg_catalog.char_length(p_detail) > 1000 THEN
    RAISE EXCEPTION 'login_etl_audit_note takes a reason and a detail of at most 1000 characters each'
      USING ERRCODE = '22023';
  END IF;
  IF COALESCE(pg_catalog.cardinality(p_masked), 0) = 0 THEN
    RAISE EXCEPTION 'login_etl_audit_note needs at least one mask' USING ERRCODE = '22023';
  END IF;
  IF pg_catalog.cardinality(p_masked) > 1000 THEN
    RAISE EXCEPTION 'login_etl_audit_note takes at most 1000 masks a call, not %%',
      pg_catalog.cardinality(p_masked) USING ERRCODE = '22023';
  END IF;
  IF EXISTS (SELECT FROM pg_catalog.unnest(p_masked) AS m
             WHERE m IS NULL OR m !~ '^[A-Za-z0-9_-]{1,16}:[A-Za-z0-9_-]{43}$') THEN
    RAISE EXCEPTION 'login_etl_audit_note takes only masks: a key id, a colon and 43 base64url characters'
      USING ERRCODE = '22023';
  END IF;
  INSERT INTO %1$I.login_etl_audit (actor, action, masked_value, reason, outcome, detail)
  SELECT p_actor, p_action, m, p_reason, p_outcome, p_detail FROM pg_catalog.unnest(p_masked) AS m;
END
$body$$f$, state);
  EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %I.login_etl_audit_note(text, text[], text, text, text, text) FROM PUBLIC', state);
  FOR caller IN SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.rolname::text IN ('login_etl_consumer', 'pii_recoverer') LOOP
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %I.login_etl_audit_note(text, text[], text, text, text, text) TO %I', state, caller);
  END LOOP;
END $do$;

DO $do$
DECLARE
  state constant text := COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl');
  caller text;
BEGIN
  EXECUTE pg_catalog.format($f$
CREATE OR REPLACE FUNCTION %1$I.login_etl_audit_list(p_after bigint, p_limit integer) RETURNS SETOF %1$I.login_etl_audit
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, %1$I, pg_temp AS $body$
SELECT * FROM %1$I.login_etl_audit WHERE id > p_after ORDER BY id LIMIT LEAST(p_limit, 10000)
$body$$f$, state);
  EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %I.login_etl_audit_list(bigint, integer) FROM PUBLIC', state);
  FOR caller IN SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.rolname::text IN ('pii_recoverer') LOOP
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %I.login_etl_audit_list(bigint, integer) TO %I', state, caller);
  END LOOP;
END $do$;

DO $do$
DECLARE
  state constant text := COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl');
  caller text;
BEGIN
  EXECUTE pg_catalog.format($f$
CREATE OR REPLACE FUNCTION %1$I.login_etl_ledger_maintain(p_retention_days integer, p_limit integer) RETURNS TABLE (created integer, dropped integer, deleted integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, %1$I, pg_temp AS $body$
DECLARE
  today constant date := (pg_catalog.now() AT TIME ZONE 'UTC')::date;
  oldest constant date := today - p_retention_days - 1;
  ledger constant oid := pg_catalog.to_regclass(pg_catalog.format('%%I.login_etl_ledger', %1$L))::oid;
  day date;
  part record;
  n_created integer := 0;
  n_dropped integer := 0;
  n_deleted integer := 0;
BEGIN
  IF p_retention_days IS NULL OR p_retention_days NOT BETWEEN 1 AND 400 THEN
    RAISE EXCEPTION 'login_etl_ledger_maintain keeps the ledger 1 to 400 days, not %%', p_retention_days
      USING ERRCODE = '22023';
  END IF;
  IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 10000 THEN
    RAISE EXCEPTION 'login_etl_ledger_maintain deletes 1 to 10000 rows a call, not %%', p_limit
      USING ERRCODE = '22023';
  END IF;
  PERFORM pg_catalog.set_config('lock_timeout', '2s', true);
  FOR day IN
    SELECT d::date FROM pg_catalog.generate_series(oldest::timestamp, (today + 3)::timestamp, interval '1 day') AS d
  LOOP
    EXIT WHEN n_created = 32;
    CONTINUE WHEN pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %1$L,
                    'login_etl_ledger_p' || pg_catalog.to_char(day::timestamp, 'YYYYMMDD'))) IS NOT NULL
      OR EXISTS (SELECT FROM %1$I.login_etl_ledger_other WHERE sent_date = day);
    BEGIN
      EXECUTE pg_catalog.format('CREATE TABLE %%I.%%I PARTITION OF %%I.login_etl_ledger FOR VALUES FROM (%%L) TO (%%L)',
                                %1$L, 'login_etl_ledger_p' || pg_catalog.to_char(day::timestamp, 'YYYYMMDD'),
                                %1$L, day, day + 1);
      n_created := n_created + 1;
    EXCEPTION WHEN lock_not_available THEN NULL;
    END;
  END LOOP;
  FOR part IN
    SELECT c.relname FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = ledger AND c.relname::text ~ '^login_etl_ledger_p[0-9]{8}$'
      AND pg_catalog.to_date(pg_catalog.substr(c.relname::text, 19), 'YYYYMMDD') < oldest
    ORDER BY c.relname LIMIT 32
  LOOP
    BEGIN
      EXECUTE pg_catalog.format('DROP TABLE %%I.%%I', %1$L, part.relname);
      n_dropped := n_dropped + 1;
    EXCEPTION WHEN lock_not_available THEN NULL;
    END;
  END LOOP;
  WITH aged AS (
    SELECT message_id, sent_date FROM %1$I.login_etl_ledger_undated
    WHERE committed_at < pg_catalog.now() - pg_catalog.make_interval(days => p_retention_days)
    UNION ALL
    SELECT message_id, sent_date FROM %1$I.login_etl_ledger_other
    WHERE committed_at < pg_catalog.now() - pg_catalog.make_interval(days => p_retention_days)
    LIMIT p_limit
  )
  DELETE FROM %1$I.login_etl_ledger l USING aged
  WHERE l.message_id = aged.message_id AND l.sent_date = aged.sent_date;
  GET DIAGNOSTICS n_deleted = ROW_COUNT;
  RETURN QUERY SELECT n_created, n_dropped, n_deleted;
END
$body$$f$, state);
  EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %I.login_etl_ledger_maintain(integer, integer) FROM PUBLIC', state);
  FOR caller IN SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.rolname::text IN ('login_etl_consumer') LOOP
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %I.login_etl_ledger_maintain(integer, integer) TO %I', state, caller);
  END LOOP;
END $do$;

DO $do$
DECLARE
  state constant text := COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl');
  caller text;
BEGIN
  EXECUTE pg_catalog.format($f$
CREATE OR REPLACE FUNCTION %1$I.login_etl_release_request(p_masked text[], p_actor text, p_reason text) RETURNS TABLE (ticket bigint, masked_value text, state text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, %1$I, pg_temp AS $body$
#variable_conflict use_column
BEGIN
  IF COALESCE(pg_catalog.cardinality(p_masked), 0) = 0 THEN
    RAISE EXCEPTION 'login_etl_release_request needs at least one mask' USING ERRCODE = '22023';
  END IF;
  IF EXISTS (SELECT FROM pg_catalog.unnest(p_masked) AS m
             WHERE m IS NULL OR m !~ '^[A-Za-z0-9_-]{1,16}:[A-Za-z0-9_-]{43}$') THEN
    RAISE EXCEPTION 'login_etl_release_request takes only masks: a key id, a colon and 43 base64url characters'
      USING ERRCODE = '22023';
  END IF;
  IF COALESCE(pg_catalog.btrim(p_reason), '') = '' THEN
    INSERT INTO %1$I.login_etl_audit (actor, action, masked_value, reason, outcome, detail)
    SELECT p_actor, 'recover', m, p_reason, 'denied', 'no reason given' FROM pg_catalog.unnest(p_masked) AS m;
    RETURN QUERY SELECT NULL::bigint, m, 'denied'::text FROM pg_catalog.unnest(p_masked) AS m;
    RETURN;
  END IF;
  DELETE FROM %1$I.login_etl_release_tickets WHERE requested_at < pg_catalog.now() - interval '1 day';
  RETURN QUERY
  WITH asked AS (SELECT DISTINCT pg_catalog.unnest(p_masked) AS m),
  found AS (
    SELECT a.m, v.field,
           CASE WHEN v.masked_value IS NOT NULL AND v.erased_at IS NOT NULL THEN 'erased'
                WHEN v.masked_value IS NOT NULL THEN 'released'
                -- A merge's claim dropped its inbox entries (the cap per
                -- mask and login, audited): not "never vaulted".
                WHEN EXISTS (SELECT FROM %1$I.login_etl_audit d
                             WHERE d.masked_value = a.m AND d.action = 'merge' AND d.outcome = 'dropped')
                  THEN 'dropped'
                ELSE 'not_found' END AS s
    FROM asked a LEFT JOIN %1$I.login_etl_vault v ON v.masked_value = a.m
  ),
  issued AS (
    INSERT INTO %1$I.login_etl_release_tickets (actor, masks)
    SELECT p_actor, pg_catalog.array_agg(f.m ORDER BY f.m) FROM found f WHERE f.s = 'released'
    HAVING pg_catalog.count(*) > 0
    RETURNING id
  ),
  audited AS (
    INSERT INTO %1$I.login_etl_audit (actor, action, masked_value, reason, outcome, detail)
    SELECT p_actor, 'recover', f.m, p_reason, CASE f.s WHEN 'dropped' THEN 'not_found' ELSE f.s END,
           CASE f.s WHEN 'released' THEN 'ciphertext released on ticket ' || i.id::text || ', field ' || f.field
                    WHEN 'erased' THEN 'erased by forget'
                    WHEN 'dropped' THEN 'no vault entry: its inbox entries were dropped by a merge (see its merge audit rows)'
                    ELSE 'no vault entry' END
    FROM found f LEFT JOIN issued i ON true
  )
  SELECT i.id, f.m, f.s FROM found f LEFT JOIN issued i ON true;
END
$body$$f$, state);
  EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %I.login_etl_release_request(text[], text, text) FROM PUBLIC', state);
  FOR caller IN SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.rolname::text IN ('pii_recoverer') LOOP
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %I.login_etl_release_request(text[], text, text) TO %I', state, caller);
  END LOOP;
END $do$;

DO $do$
DECLARE
  state constant text := COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl');
  caller text;
BEGIN
  EXECUTE pg_catalog.format($f$
CREATE OR REPLACE FUNCTION %1$I.login_etl_release(p_ticket bigint) RETURNS TABLE (masked_value text, field text, ciphertext bytea, iv bytea, key_id text, state text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, %1$I, pg_temp AS $body$
#variable_conflict use_column
DECLARE
  t record;
BEGIN
  SELECT k.id, k.masks, k.requested_at, k.requested_xid, k.released_at INTO t
  FROM %1$I.login_etl_release_tickets k
  WHERE k.id = p_ticket AND k.requested_by = SESSION_USER::text
  FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'No release ticket %% for login %%', p_ticket, SESSION_USER USING ERRCODE = 'P0002';
  END IF;
  IF t.released_at IS NOT NULL THEN
    RAISE EXCEPTION 'Release ticket %% was used already: request another', p_ticket USING ERRCODE = '55000';
  END IF;
  IF pg_catalog.txid_status(t.requested_xid) IS DISTINCT FROM 'committed' THEN
    RAISE EXCEPTION 'Release ticket %% is not committed: commit the request, and its audit rows, before the release',
      p_ticket USING ERRCODE = '55000';
  END IF;
  IF t.requested_at < pg_catalog.now() - interval '10 minutes' THEN
    RAISE EXCEPTION 'Release ticket %% expired (10 minutes): request another', p_ticket
      USING ERRCODE = '55000';
  END IF;
  UPDATE %1$I.login_etl_release_tickets SET released_at = pg_catalog.now() WHERE id = t.id;
  RETURN QUERY
  SELECT a.m, v.field, v.ciphertext, v.iv, v.key_id,
         CASE WHEN v.masked_value IS NULL THEN 'not_found'
              WHEN v.erased_at IS NOT NULL THEN 'erased' ELSE 'released' END
  FROM pg_catalog.unnest(t.masks) AS a(m) LEFT JOIN %1$I.login_etl_vault v ON v.masked_value = a.m;
END
$body$$f$, state);
  EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %I.login_etl_release(bigint) FROM PUBLIC', state);
  FOR caller IN SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.rolname::text IN ('pii_recoverer') LOOP
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %I.login_etl_release(bigint) TO %I', state, caller);
  END LOOP;
END $do$;

DO $$
DECLARE
  state constant text := COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl');
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
END $$;

DO $$
BEGIN
  EXECUTE pg_catalog.format('INSERT INTO %I.login_etl_migrations (version, name, source) VALUES (%s, %L, %L)',
                            COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl'), 7, 'SECURITY DEFINER functions that call only pg_catalog and the state schema; recovery released on committed tickets', 'schema.sql');
END $$;

COMMIT;

-- Version 8: vault inbox (no membership oracle), mask links and per-mask locks (erasure survives rotation)
BEGIN;

DO $$
DECLARE
  state constant text := COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl');
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
      pg_catalog.octet_length(masked_value) <= 60 AND pg_catalog.octet_length(key_id) <= 16
      AND pg_catalog.octet_length(written_by) <= 63)
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
END $$;

DO $$
DECLARE
  state constant text := COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl');
BEGIN
  EXECUTE pg_catalog.format('ALTER TABLE %I.login_etl_keys ADD COLUMN registered_by text', state);
  EXECUTE pg_catalog.format('ALTER TABLE %I.login_etl_keys ALTER COLUMN registered_by SET DEFAULT session_user', state);
END $$;

DO $do$
DECLARE
  state constant text := COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl');
  caller text;
BEGIN
  EXECUTE pg_catalog.format($f$
CREATE OR REPLACE FUNCTION %1$I.login_etl_hmac_keys_needed() RETURNS TABLE (key_id text, registered_by text, registered_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, %1$I, pg_temp AS $body$
SELECT k.key_id, k.registered_by, k.first_used
FROM %1$I.login_etl_keys k
WHERE pg_catalog.left(k.key_id, 6) <> 'vault:'
  AND NOT EXISTS (SELECT FROM %1$I.login_etl_key_retirements r WHERE r.key_id = k.key_id)
ORDER BY k.key_id
$body$$f$, state);
  EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %I.login_etl_hmac_keys_needed() FROM PUBLIC', state);
  FOR caller IN SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.rolname::text IN ('pii_recoverer') LOOP
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %I.login_etl_hmac_keys_needed() TO %I', state, caller);
  END LOOP;
END $do$;

DO $do$
DECLARE
  state constant text := COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl');
  caller text;
BEGIN
  EXECUTE pg_catalog.format($f$
CREATE OR REPLACE FUNCTION %1$I.login_etl_register_key(p_key_id text, p_fingerprint text) RETURNS TABLE (outcome text, registered_by text, registered_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, %1$I, pg_temp AS $body$
#variable_conflict use_column
DECLARE
  v_fingerprint text;
  v_by text;
  v_at timestamptz;
  v_recent integer;
BEGIN
  IF p_key_id IS NULL OR p_key_id !~ '^(vault:)?[A-Za-z0-9_-]{1,16}$' THEN
    RAISE EXCEPTION 'login_etl_register_key takes a key id of 1 to 16 letters, digits, _ or -, after vault: for a vault key'
      USING ERRCODE = '22023';
  END IF;
  IF p_fingerprint IS NULL OR p_fingerprint !~ '^[A-Za-z0-9_-]{22}$' THEN
    RAISE EXCEPTION 'login_etl_register_key takes a fingerprint of 22 base64url characters' USING ERRCODE = '22023';
  END IF;
  SELECT k.fingerprint, k.registered_by, k.first_used INTO v_fingerprint, v_by, v_at
  FROM %1$I.login_etl_keys k WHERE k.key_id = p_key_id;
  IF NOT FOUND THEN
    LOCK TABLE %1$I.login_etl_keys IN SHARE ROW EXCLUSIVE MODE;
    SELECT k.fingerprint, k.registered_by, k.first_used INTO v_fingerprint, v_by, v_at
    FROM %1$I.login_etl_keys k WHERE k.key_id = p_key_id;
  END IF;
  IF NOT FOUND THEN
    IF NOT pg_catalog.pg_has_role(session_user, current_user, 'MEMBER') THEN
      INSERT INTO %1$I.login_etl_locks AS l (name) VALUES (pg_catalog.textcat('registrar ', session_user::text))
      ON CONFLICT (name) DO UPDATE SET name = l.name;
      SELECT pg_catalog.count(*)::integer INTO v_recent FROM %1$I.login_etl_keys k
      WHERE k.registered_by = session_user::text AND k.first_used > pg_catalog.clock_timestamp() - interval '1 day';
      IF v_recent >= 8 THEN
        RAISE EXCEPTION 'Login %% registered %% key ids in the last 24 hours, the most a login may (8): use a key id already recorded, or wait',
          session_user, v_recent USING ERRCODE = '54000';
      END IF;
    END IF;
    v_at := pg_catalog.clock_timestamp();
    INSERT INTO %1$I.login_etl_keys (key_id, fingerprint, registered_by, first_used)
    VALUES (p_key_id, p_fingerprint, session_user::text, v_at);
    RETURN QUERY SELECT 'new'::text, session_user::text, v_at;
    RETURN;
  END IF;
  RETURN QUERY SELECT CASE WHEN v_fingerprint = p_fingerprint THEN 'known' ELSE 'mismatch' END, v_by, v_at;
END
$body$$f$, state);
  EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %I.login_etl_register_key(text, text) FROM PUBLIC', state);
  FOR caller IN SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.rolname::text IN ('login_etl_consumer') LOOP
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %I.login_etl_register_key(text, text) TO %I', state, caller);
  END LOOP;
END $do$;

DO $do$
DECLARE
  state constant text := COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl');
  caller text;
BEGIN
  EXECUTE pg_catalog.format($f$
CREATE OR REPLACE FUNCTION %1$I.login_etl_vault_drop_erased(p_masked text[], p_other text[], p_actor text, p_reason text) RETURNS TABLE (masked_value text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, %1$I, pg_temp AS $body$
#variable_conflict use_column
DECLARE
  v_mask text;
  v_all text[];
  v_dropped text[] := '{}';
BEGIN
  -- One lock call for all, in its global order: a forget locking some of
  -- the same masks cannot deadlock with it.
  PERFORM %1$I.login_etl_lock_masks(%1$I.login_etl_linked(pg_catalog.array_cat(p_masked, p_other)));
  FOR v_mask IN SELECT DISTINCT u.m FROM pg_catalog.unnest(p_masked) AS u(m) WHERE u.m IS NOT NULL ORDER BY 1 LOOP
    v_all := %1$I.login_etl_linked(pg_catalog.array_cat(ARRAY[v_mask], ARRAY(
      SELECT p.o FROM ROWS FROM (pg_catalog.unnest(p_masked), pg_catalog.unnest(p_other)) AS p(m, o)
      WHERE p.m = v_mask AND p.o IS NOT NULL)));
    CONTINUE WHEN NOT EXISTS (SELECT FROM %1$I.login_etl_vault v
                              WHERE v.masked_value = ANY(v_all) AND v.erased_at IS NOT NULL);
    DELETE FROM %1$I.login_etl_vault_inbox i WHERE i.masked_value = ANY(v_all);
    INSERT INTO %1$I.login_etl_vault AS v (masked_value, erased_at)
    SELECT a.m, pg_catalog.now() FROM pg_catalog.unnest(v_all) AS a(m) ORDER BY a.m
    ON CONFLICT (masked_value) DO UPDATE
      SET ciphertext = NULL, iv = NULL, key_id = NULL, erased_at = pg_catalog.now()
      WHERE v.erased_at IS NULL;
    INSERT INTO %1$I.login_etl_audit (actor, action, masked_value, reason, outcome, detail)
    VALUES (p_actor, 'recover', v_mask, p_reason, 'erased',
            'value erased under another of its masks: entry dropped, not shown');
    v_dropped := pg_catalog.array_append(v_dropped, v_mask);
  END LOOP;
  RETURN QUERY SELECT d.m FROM pg_catalog.unnest(v_dropped) AS d(m);
END
$body$$f$, state);
  EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %I.login_etl_vault_drop_erased(text[], text[], text, text) FROM PUBLIC', state);
  FOR caller IN SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.rolname::text IN ('pii_recoverer') LOOP
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %I.login_etl_vault_drop_erased(text[], text[], text, text) TO %I', state, caller);
  END LOOP;
END $do$;

DO $do$
DECLARE
  state constant text := COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl');
  caller text;
BEGIN
  EXECUTE pg_catalog.format($f$
CREATE OR REPLACE FUNCTION %1$I.login_etl_lock_masks(p_masks text[]) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, %1$I, pg_temp AS $body$
DECLARE
  v_wait constant text := pg_catalog.current_setting('lock_timeout');
BEGIN
  PERFORM pg_catalog.set_config('lock_timeout', '30s', true);
  PERFORM FROM %1$I.login_etl_locks l
  WHERE l.name = ANY(ARRAY(
    SELECT DISTINCT pg_catalog.textcat('mask ', pg_catalog.int4and(pg_catalog.hashtext(u.m), 1023)::text)
    FROM pg_catalog.unnest(p_masks) AS u(m) WHERE u.m IS NOT NULL))
  ORDER BY l.name FOR UPDATE;
  PERFORM pg_catalog.set_config('lock_timeout', v_wait, true);
END
$body$$f$, state);
  EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %I.login_etl_lock_masks(text[]) FROM PUBLIC', state);
  FOR caller IN SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.rolname::text IN (NULL) LOOP
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %I.login_etl_lock_masks(text[]) TO %I', state, caller);
  END LOOP;
END $do$;

DO $do$
DECLARE
  state constant text := COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl');
  caller text;
BEGIN
  EXECUTE pg_catalog.format($f$
CREATE OR REPLACE FUNCTION %1$I.login_etl_linked(p_masks text[]) RETURNS text[]
LANGUAGE sql STABLE SET search_path = pg_catalog, %1$I, pg_temp AS $body$
WITH RECURSIVE linked(m) AS (
  SELECT u.m FROM pg_catalog.unnest(p_masks) AS u(m) WHERE u.m IS NOT NULL
  UNION
  SELECT l.b FROM linked
  JOIN (SELECT k.mask AS a, k.other AS b FROM %1$I.login_etl_vault_links k
        UNION ALL SELECT k.other, k.mask FROM %1$I.login_etl_vault_links k) AS l ON l.a = linked.m
)
SELECT coalesce(pg_catalog.array_agg(linked.m ORDER BY linked.m), '{}'::text[]) FROM linked
$body$$f$, state);
  EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %I.login_etl_linked(text[]) FROM PUBLIC', state);
  FOR caller IN SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.rolname::text IN (NULL) LOOP
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %I.login_etl_linked(text[]) TO %I', state, caller);
  END LOOP;
END $do$;

DO $do$
DECLARE
  state constant text := COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl');
  caller text;
BEGIN
  EXECUTE pg_catalog.format($f$
CREATE OR REPLACE FUNCTION %1$I.login_etl_vault_put(p_masked text[], p_field text[], p_ciphertext bytea[], p_iv bytea[], p_key_id text[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, %1$I, pg_temp AS $body$
BEGIN
  IF greatest(pg_catalog.cardinality(p_masked), pg_catalog.cardinality(p_field), pg_catalog.cardinality(p_ciphertext),
              pg_catalog.cardinality(p_iv), pg_catalog.cardinality(p_key_id)) > 40000 THEN
    RAISE EXCEPTION 'A vault put takes at most 40000 entries (two per message of the largest batch)'
      USING ERRCODE = '54000';
  END IF;
  -- Lengths before patterns, so a 60 MB argument is refused unread; a NULL
  -- (or an array shorter than the others) is no mask, field or key id.
  IF EXISTS (SELECT FROM ROWS FROM (pg_catalog.unnest(p_masked), pg_catalog.unnest(p_field),
                                    pg_catalog.unnest(p_key_id)) AS u(m, f, k)
             WHERE CASE WHEN pg_catalog.octet_length(u.m) <= 60 AND pg_catalog.octet_length(u.k) <= 16
                        THEN NOT (u.m ~ '^[A-Za-z0-9_-]{1,16}:[A-Za-z0-9_-]{43}$' AND u.k ~ '^[A-Za-z0-9_-]{1,16}$'
                                  AND u.f IN ('ip', 'device_id'))
                        ELSE true END IS NOT false) THEN
    RAISE EXCEPTION 'A vault entry takes a mask (a key id, a colon and 43 base64url characters), a field (ip or device_id) and a key id of 1 to 16 letters, digits, _ or -'
      USING ERRCODE = '22023';
  END IF;
  IF EXISTS (SELECT FROM pg_catalog.unnest(p_ciphertext) AS u(c) WHERE pg_catalog.octet_length(u.c) > 4112) THEN
    RAISE EXCEPTION 'A vault entry''s ciphertext is at most 4112 bytes (the largest sealed value)'
      USING ERRCODE = '54000';
  END IF;
  IF EXISTS (SELECT FROM pg_catalog.unnest(p_iv) AS u(i)
             WHERE pg_catalog.octet_length(u.i) NOT IN (12, 49)) THEN
    RAISE EXCEPTION 'A vault entry''s iv is 49 bytes (sealed) or 12 (symmetric)'
      USING ERRCODE = '22023';
  END IF;
  INSERT INTO %1$I.login_etl_vault_inbox (masked_value, field, ciphertext, iv, key_id)
  SELECT DISTINCT ON (u.m) u.m, u.f, u.c, u.i, u.k
  FROM ROWS FROM (pg_catalog.unnest(p_masked), pg_catalog.unnest(p_field), pg_catalog.unnest(p_ciphertext),
                  pg_catalog.unnest(p_iv), pg_catalog.unnest(p_key_id)) AS u(m, f, c, i, k)
  ORDER BY u.m;
END
$body$$f$, state);
  EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %I.login_etl_vault_put(text[], text[], bytea[], bytea[], text[]) FROM PUBLIC', state);
  FOR caller IN SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.rolname::text IN ('login_etl_consumer') LOOP
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %I.login_etl_vault_put(text[], text[], bytea[], bytea[], text[]) TO %I', state, caller);
  END LOOP;
END $do$;

DO $do$
DECLARE
  state constant text := COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl');
  caller text;
BEGIN
  EXECUTE pg_catalog.format($f$
CREATE OR REPLACE FUNCTION %1$I.login_etl_forget(p_masked text[], p_actor text, p_reason text) RETURNS TABLE (masked_value text, outcome text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, %1$I, pg_temp AS $body$
#variable_conflict use_column
DECLARE
  v_asked text[];
  v_todo text[];
  v_done text[] := '{}';
  v_erased text[] := '{}';
  v_round text[];
BEGIN
  IF coalesce(pg_catalog.btrim(p_reason), '') = '' THEN
    INSERT INTO %1$I.login_etl_audit (actor, action, masked_value, reason, outcome, detail)
    SELECT p_actor, 'forget', u.m, p_reason, 'denied', 'no reason given' FROM pg_catalog.unnest(p_masked) AS u(m);
    RETURN QUERY SELECT u.m, 'denied'::text FROM pg_catalog.unnest(p_masked) AS u(m);
    RETURN;
  END IF;
  v_asked := ARRAY(SELECT DISTINCT u.m FROM pg_catalog.unnest(p_masked) AS u(m) WHERE u.m IS NOT NULL ORDER BY 1);
  v_todo := v_asked;
  LOOP
    v_todo := ARRAY(SELECT l.m FROM pg_catalog.unnest(%1$I.login_etl_linked(pg_catalog.array_cat(v_done, v_todo))) AS l(m)
                    EXCEPT SELECT d.m FROM pg_catalog.unnest(v_done) AS d(m) ORDER BY 1);
    EXIT WHEN pg_catalog.cardinality(v_todo) = 0;
    PERFORM %1$I.login_etl_lock_masks(v_todo);
    WITH gone AS (
      DELETE FROM %1$I.login_etl_vault_inbox i WHERE i.masked_value = ANY(v_todo) RETURNING i.masked_value AS m
    ), erased AS (
      INSERT INTO %1$I.login_etl_vault AS v (masked_value, erased_at)
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
    INSERT INTO %1$I.login_etl_audit (actor, action, masked_value, reason, outcome, detail)
    SELECT p_actor, 'forget', o.m, p_reason, o.o,
           CASE WHEN NOT o.asked THEN 'linked to an erased mask (the same value under another HMAC key); '
                ELSE '' END ||
           CASE o.o WHEN 'success' THEN 'vault entry erased' ELSE 'no live vault entry; tombstone kept' END
    FROM outcomes o ORDER BY NOT o.asked, o.m
  )
  SELECT o.m, o.o FROM outcomes o;
END
$body$$f$, state);
  EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %I.login_etl_forget(text[], text, text) FROM PUBLIC', state);
  FOR caller IN SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.rolname::text IN ('pii_recoverer') LOOP
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %I.login_etl_forget(text[], text, text) TO %I', state, caller);
  END LOOP;
END $do$;

DO $do$
DECLARE
  state constant text := COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl');
  caller text;
BEGIN
  EXECUTE pg_catalog.format($f$
CREATE OR REPLACE FUNCTION %1$I.login_etl_inbox_claim(p_masked text[], p_after bigint, p_limit integer, p_actor text, p_reason text) RETURNS TABLE (claim bigint, entries integer, last_id bigint, dropped integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, %1$I, pg_temp AS $body$
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
  UPDATE %1$I.login_etl_vault_inbox i SET claim_id = NULL
  FROM %1$I.login_etl_inbox_claims c
  WHERE i.claim_id = c.id AND c.claimed_at < pg_catalog.now() - interval '10 minutes';
  DELETE FROM %1$I.login_etl_inbox_claims c WHERE c.claimed_at < pg_catalog.now() - interval '10 minutes';
  IF NOT v_bulk THEN
    v_erased := ARRAY(SELECT u.m FROM pg_catalog.unnest(p_masked) AS u(m)
                      WHERE EXISTS (SELECT FROM %1$I.login_etl_vault v
                                    WHERE v.masked_value = ANY(%1$I.login_etl_linked(ARRAY[u.m]))
                                      AND v.erased_at IS NOT NULL));
  END IF;
  INSERT INTO %1$I.login_etl_inbox_claims (actor) VALUES (p_actor) RETURNING id INTO v_claim;
  -- The batch's window; of it, junk is deleted unread and the rest claimed.
  WITH window_ AS (
    SELECT i.id, ((CASE WHEN pg_catalog.octet_length(i.ciphertext) <= 4112
                 AND pg_catalog.octet_length(i.iv) IN (12, 49)
                 AND pg_catalog.octet_length(i.masked_value) <= 60
                 AND pg_catalog.octet_length(i.key_id) <= 16
                 AND pg_catalog.octet_length(i.written_by) <= 63
            THEN i.masked_value ~ '^[A-Za-z0-9_-]{1,16}:[A-Za-z0-9_-]{43}$' AND i.key_id ~ '^[A-Za-z0-9_-]{1,16}$'
                 AND i.field IN ('ip', 'device_id')
            ELSE false END) AND i.id <= coalesce((
             SELECT j.id FROM %1$I.login_etl_vault_inbox j
             WHERE j.masked_value = i.masked_value AND j.written_by = i.written_by AND (CASE WHEN pg_catalog.octet_length(j.ciphertext) <= 4112
                 AND pg_catalog.octet_length(j.iv) IN (12, 49)
                 AND pg_catalog.octet_length(j.masked_value) <= 60
                 AND pg_catalog.octet_length(j.key_id) <= 16
                 AND pg_catalog.octet_length(j.written_by) <= 63
            THEN j.masked_value ~ '^[A-Za-z0-9_-]{1,16}:[A-Za-z0-9_-]{43}$' AND j.key_id ~ '^[A-Za-z0-9_-]{1,16}$'
                 AND j.field IN ('ip', 'device_id')
            ELSE false END)
             ORDER BY j.id OFFSET 7 LIMIT 1), i.id)) AS kept FROM %1$I.login_etl_vault_inbox i
    WHERE i.claim_id IS NULL AND i.id > coalesce(p_after, 0)
      AND (v_bulk OR (i.masked_value = ANY(p_masked) AND NOT i.masked_value = ANY(v_erased)))
    ORDER BY i.id LIMIT greatest(1, least(coalesce(p_limit, 1000), 10000))
    FOR UPDATE SKIP LOCKED
  ), junk AS (
    -- The mask and login only where they have their shape: junk's own
    -- columns may be any size, and are not read.
    DELETE FROM %1$I.login_etl_vault_inbox i USING window_ w WHERE i.id = w.id AND NOT w.kept
    RETURNING i.id,
              CASE WHEN pg_catalog.octet_length(i.masked_value) <= 60
                        AND i.masked_value ~ '^[A-Za-z0-9_-]{1,16}:[A-Za-z0-9_-]{43}$' THEN i.masked_value END AS m,
              CASE WHEN pg_catalog.octet_length(i.written_by) <= 63 THEN i.written_by END AS w
  ), dropped AS (
    -- Audited per mask, with the logins that wrote them: recover tells a
    -- mask whose entries were dropped from one never vaulted.
    INSERT INTO %1$I.login_etl_audit (actor, action, masked_value, reason, outcome, detail)
    SELECT p_actor, 'merge', j.m, p_reason, 'dropped',
           pg_catalog.format('%%s inbox entries dropped unread, written by %%s: over the size bound or past the oldest 8 of their mask and login (claim %%s)',
                             pg_catalog.count(*), pg_catalog.string_agg(DISTINCT coalesce(j.w, '?'), ', '), v_claim)
    FROM junk j WHERE j.m IS NOT NULL GROUP BY j.m ORDER BY j.m
  ), claimed AS (
    UPDATE %1$I.login_etl_vault_inbox i SET claim_id = v_claim FROM window_ w
    WHERE i.id = w.id AND w.kept RETURNING i.id, i.masked_value
  )
  SELECT pg_catalog.count(*)::integer, pg_catalog.array_agg(DISTINCT c.masked_value),
         (SELECT pg_catalog.count(*)::integer FROM junk),
         (SELECT pg_catalog.count(*)::integer FROM junk j WHERE j.m IS NULL),
         greatest(pg_catalog.max(c.id), (SELECT pg_catalog.max(j.id) FROM junk j))
  INTO v_count, v_masks, v_dropped, v_malformed, v_last FROM claimed c;
  IF v_malformed > 0 THEN
    INSERT INTO %1$I.login_etl_audit (actor, action, masked_value, reason, outcome, detail)
    VALUES (p_actor, 'merge', NULL, p_reason, 'dropped',
            pg_catalog.format('%%s inbox entries dropped unread: no mask of its shape, or a column over its size bound (claim %%s)',
                              v_malformed, v_claim));
  END IF;
  IF v_count = 0 THEN
    DELETE FROM %1$I.login_etl_inbox_claims c WHERE c.id = v_claim;
    -- Past the junk: a batch of junk alone does not end the caller's loop.
    RETURN QUERY SELECT NULL::bigint, 0, v_last, v_dropped;
    RETURN;
  END IF;
  IF v_bulk THEN
    INSERT INTO %1$I.login_etl_audit (actor, action, masked_value, reason, outcome, detail)
    VALUES (p_actor, 'merge', NULL, p_reason, 'released',
            pg_catalog.format('%%s inbox entries released to be verified and merged (claim %%s)', v_count, v_claim));
  ELSE
    INSERT INTO %1$I.login_etl_audit (actor, action, masked_value, reason, outcome, detail)
    SELECT p_actor, 'merge', u.m, p_reason, 'released',
           pg_catalog.format('inbox entries released to be verified and merged (claim %%s)', v_claim)
    FROM pg_catalog.unnest(v_masks) AS u(m) ORDER BY u.m;
  END IF;
  RETURN QUERY SELECT v_claim, v_count, v_last, v_dropped;
END
$body$$f$, state);
  EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %I.login_etl_inbox_claim(text[], bigint, integer, text, text) FROM PUBLIC', state);
  FOR caller IN SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.rolname::text IN ('pii_recoverer') LOOP
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %I.login_etl_inbox_claim(text[], bigint, integer, text, text) TO %I', state, caller);
  END LOOP;
END $do$;

DO $do$
DECLARE
  state constant text := COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl');
  caller text;
BEGIN
  EXECUTE pg_catalog.format($f$
CREATE OR REPLACE FUNCTION %1$I.login_etl_inbox_claimed(p_claim bigint) RETURNS TABLE (id bigint, masked_value text, field text, ciphertext bytea, iv bytea, key_id text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, %1$I, pg_temp AS $body$
#variable_conflict use_column
DECLARE
  v_claim record;
BEGIN
  SELECT c.db_user, c.xact INTO v_claim FROM %1$I.login_etl_inbox_claims c WHERE c.id = p_claim;
  IF NOT FOUND OR v_claim.db_user <> session_user::text THEN
    RAISE EXCEPTION 'No inbox claim %% of this login' , p_claim USING ERRCODE = '22023';
  END IF;
  IF pg_catalog.pg_xact_status(v_claim.xact) IS DISTINCT FROM 'committed' THEN
    RAISE EXCEPTION 'An inbox claim is read after the transaction that made it commits (its audit rows first)'
      USING ERRCODE = '25000';
  END IF;
  RETURN QUERY SELECT i.id, i.masked_value, i.field, i.ciphertext, i.iv, i.key_id
  FROM %1$I.login_etl_vault_inbox i WHERE i.claim_id = p_claim ORDER BY i.id;
END
$body$$f$, state);
  EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %I.login_etl_inbox_claimed(bigint) FROM PUBLIC', state);
  FOR caller IN SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.rolname::text IN ('pii_recoverer') LOOP
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %I.login_etl_inbox_claimed(bigint) TO %I', state, caller);
  END LOOP;
END $do$;

DO $do$
DECLARE
  state constant text := COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl');
  caller text;
BEGIN
  EXECUTE pg_catalog.format($f$
CREATE OR REPLACE FUNCTION %1$I.login_etl_inbox_settle(p_claim bigint, p_accept bigint[], p_keep bigint[], p_link_id bigint[], p_link_mask text[]) RETURNS TABLE (accepted integer, known integer, erased integer, dropped integer, kept integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, %1$I, pg_temp AS $body$
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
  SELECT c.db_user, c.actor INTO v_user, v_actor FROM %1$I.login_etl_inbox_claims c WHERE c.id = p_claim;
  IF NOT FOUND OR v_user <> session_user::text THEN
    RAISE EXCEPTION 'No inbox claim %% of this login', p_claim USING ERRCODE = '22023';
  END IF;
  PERFORM %1$I.login_etl_lock_masks(%1$I.login_etl_linked(ARRAY(
    SELECT i.masked_value FROM %1$I.login_etl_vault_inbox i WHERE i.claim_id = p_claim AND i.id = ANY(p_accept)
    UNION SELECT l.mask FROM ROWS FROM (pg_catalog.unnest(p_link_id), pg_catalog.unnest(p_link_mask)) AS l(id, mask)
          WHERE l.id = ANY(p_accept))));
  -- Read after the locks: a forget that held them has deleted its masks' entries.
  SELECT pg_catalog.array_agg(x.id ORDER BY x.m), pg_catalog.array_agg(x.m ORDER BY x.m) INTO v_ids, v_masks
  FROM (SELECT DISTINCT ON (i.masked_value) i.id, i.masked_value AS m FROM %1$I.login_etl_vault_inbox i
        WHERE i.claim_id = p_claim AND i.id = ANY(p_accept) ORDER BY i.masked_value, i.id) AS x;
  SELECT pg_catalog.count(*)::integer INTO v_judged FROM %1$I.login_etl_vault_inbox i
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
      JOIN (SELECT x.mask AS a, x.other AS b FROM %1$I.login_etl_vault_links x
            UNION ALL SELECT x.other, x.mask FROM %1$I.login_etl_vault_links x) AS k ON k.a = rel.s
    )
    SELECT rel.m, rel.s FROM rel
  ) AS r;
  v_gone := ARRAY(SELECT DISTINCT p.m FROM ROWS FROM (pg_catalog.unnest(v_pair_m), pg_catalog.unnest(v_pair_s)) AS p(m, s)
                  JOIN %1$I.login_etl_vault v ON v.masked_value = p.s WHERE v.erased_at IS NOT NULL);
  INSERT INTO %1$I.login_etl_vault AS v (masked_value, erased_at)
  SELECT DISTINCT p.s, pg_catalog.now() FROM ROWS FROM (pg_catalog.unnest(v_pair_m), pg_catalog.unnest(v_pair_s)) AS p(m, s)
  WHERE p.m = ANY(v_gone) ORDER BY 1
  ON CONFLICT (masked_value) DO UPDATE
    SET ciphertext = NULL, iv = NULL, key_id = NULL, erased_at = pg_catalog.now()
    WHERE v.erased_at IS NULL;
  INSERT INTO %1$I.login_etl_vault (masked_value, field, ciphertext, iv, key_id)
  SELECT i.masked_value, i.field, i.ciphertext, i.iv, i.key_id FROM %1$I.login_etl_vault_inbox i
  WHERE i.id = ANY(v_ids) AND NOT i.masked_value = ANY(v_gone) ORDER BY i.masked_value
  ON CONFLICT (masked_value) DO NOTHING;
  GET DIAGNOSTICS v_accepted = ROW_COUNT;
  INSERT INTO %1$I.login_etl_vault_links (mask, other, made_by)
  SELECT DISTINCT i.masked_value, l.mask, 'merge'
  FROM ROWS FROM (pg_catalog.unnest(p_link_id), pg_catalog.unnest(p_link_mask)) AS l(id, mask)
  JOIN %1$I.login_etl_vault_inbox i ON i.id = l.id
  WHERE i.id = ANY(v_ids) AND NOT i.masked_value = ANY(v_gone) AND l.mask <> i.masked_value
  ON CONFLICT DO NOTHING;
  DELETE FROM %1$I.login_etl_vault_inbox i
  WHERE i.claim_id = p_claim AND NOT i.id = ANY(coalesce(p_keep, '{}'));
  GET DIAGNOSTICS v_deleted = ROW_COUNT;
  UPDATE %1$I.login_etl_vault_inbox i SET claim_id = NULL WHERE i.claim_id = p_claim;
  GET DIAGNOSTICS v_kept = ROW_COUNT;
  DELETE FROM %1$I.login_etl_inbox_claims c WHERE c.id = p_claim;
  RETURN QUERY
  WITH counts AS (
    SELECT v_accepted AS accepted,
           pg_catalog.cardinality(v_ids) - pg_catalog.cardinality(v_gone) - v_accepted AS known,
           pg_catalog.cardinality(v_gone) AS erased,
           v_deleted - v_judged AS dropped,
           v_kept AS kept
  ), audited AS (
    INSERT INTO %1$I.login_etl_audit (actor, action, masked_value, reason, outcome, detail)
    SELECT v_actor, 'merge', NULL, NULL, 'success',
           pg_catalog.format('claim %%s: %%s entries accepted, %%s already vaulted, %%s of erased values dropped, %%s refused, %%s kept',
                             p_claim, n.accepted, n.known, n.erased, n.dropped, n.kept)
    FROM counts n
  )
  SELECT n.accepted, n.known, n.erased, n.dropped, n.kept FROM counts n;
END
$body$$f$, state);
  EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %I.login_etl_inbox_settle(bigint, bigint[], bigint[], bigint[], text[]) FROM PUBLIC', state);
  FOR caller IN SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.rolname::text IN ('pii_recoverer') LOOP
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %I.login_etl_inbox_settle(bigint, bigint[], bigint[], bigint[], text[]) TO %I', state, caller);
  END LOOP;
END $do$;

DO $$
DECLARE
  state constant text := COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl');
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
END $$;

DO $$
DECLARE
  state constant text := COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl');
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
END $$;

DO $$
DECLARE
  state constant text := COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl');
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
END $$;

DO $$
BEGIN
  EXECUTE pg_catalog.format('INSERT INTO %I.login_etl_migrations (version, name, source) VALUES (%s, %L, %L)',
                            COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl'), 8, 'vault inbox (no membership oracle), mask links and per-mask locks (erasure survives rotation)', 'schema.sql');
END $$;

COMMIT;

-- Version 9: ledger maintenance one call at a time, today first (consumers starting together no longer deadlock)
BEGIN;

DO $do$
DECLARE
  state constant text := COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl');
  caller text;
BEGIN
  EXECUTE pg_catalog.format($f$
CREATE OR REPLACE FUNCTION %1$I.login_etl_ledger_maintain(p_retention_days integer, p_limit integer) RETURNS TABLE (created integer, dropped integer, deleted integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, %1$I, pg_temp AS $body$
DECLARE
  today constant date := (pg_catalog.now() AT TIME ZONE 'UTC')::date;
  oldest constant date := today - p_retention_days - 1;
  ledger constant oid := pg_catalog.to_regclass(pg_catalog.format('%%I.login_etl_ledger', %1$L))::oid;
  day date;
  part record;
  n_created integer := 0;
  n_dropped integer := 0;
  n_deleted integer := 0;
BEGIN
  IF p_retention_days IS NULL OR p_retention_days NOT BETWEEN 1 AND 400 THEN
    RAISE EXCEPTION 'login_etl_ledger_maintain keeps the ledger 1 to 400 days, not %%', p_retention_days
      USING ERRCODE = '22023';
  END IF;
  IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 10000 THEN
    RAISE EXCEPTION 'login_etl_ledger_maintain deletes 1 to 10000 rows a call, not %%', p_limit
      USING ERRCODE = '22023';
  END IF;
  PERFORM pg_catalog.set_config('lock_timeout', '2s', true);
  -- ONLY: the partitions' own locks would fill the lock table.
  BEGIN
    LOCK TABLE ONLY %1$I.login_etl_ledger IN SHARE UPDATE EXCLUSIVE MODE;
  EXCEPTION WHEN lock_not_available THEN
    RETURN QUERY SELECT 0, 0, 0;
    RETURN;
  END;
  FOR day IN
    SELECT d::date FROM pg_catalog.generate_series(oldest::timestamp, (today + 3)::timestamp, interval '1 day') AS d
    ORDER BY d >= today::timestamp DESC, d DESC
  LOOP
    EXIT WHEN n_created = 32;
    CONTINUE WHEN pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %1$L,
                    'login_etl_ledger_p' || pg_catalog.to_char(day::timestamp, 'YYYYMMDD'))) IS NOT NULL
      OR EXISTS (SELECT FROM %1$I.login_etl_ledger_other WHERE sent_date = day);
    BEGIN
      EXECUTE pg_catalog.format('CREATE TABLE %%I.%%I PARTITION OF %%I.login_etl_ledger FOR VALUES FROM (%%L) TO (%%L)',
                                %1$L, 'login_etl_ledger_p' || pg_catalog.to_char(day::timestamp, 'YYYYMMDD'),
                                %1$L, day, day + 1);
      n_created := n_created + 1;
    EXCEPTION WHEN lock_not_available THEN NULL;
    END;
  END LOOP;
  FOR part IN
    SELECT c.relname FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = ledger AND c.relname::text ~ '^login_etl_ledger_p[0-9]{8}$'
      AND pg_catalog.to_date(pg_catalog.substr(c.relname::text, 19), 'YYYYMMDD') < oldest
    ORDER BY c.relname LIMIT 32
  LOOP
    BEGIN
      EXECUTE pg_catalog.format('DROP TABLE %%I.%%I', %1$L, part.relname);
      n_dropped := n_dropped + 1;
    EXCEPTION WHEN lock_not_available THEN NULL;
    END;
  END LOOP;
  WITH aged AS (
    SELECT message_id, sent_date FROM %1$I.login_etl_ledger_undated
    WHERE committed_at < pg_catalog.now() - pg_catalog.make_interval(days => p_retention_days)
    UNION ALL
    SELECT message_id, sent_date FROM %1$I.login_etl_ledger_other
    WHERE committed_at < pg_catalog.now() - pg_catalog.make_interval(days => p_retention_days)
    LIMIT p_limit
  )
  DELETE FROM %1$I.login_etl_ledger l USING aged
  WHERE l.message_id = aged.message_id AND l.sent_date = aged.sent_date;
  GET DIAGNOSTICS n_deleted = ROW_COUNT;
  RETURN QUERY SELECT n_created, n_dropped, n_deleted;
END
$body$$f$, state);
  EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %I.login_etl_ledger_maintain(integer, integer) FROM PUBLIC', state);
  FOR caller IN SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.rolname::text IN ('login_etl_consumer') LOOP
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %I.login_etl_ledger_maintain(integer, integer) TO %I', state, caller);
  END LOOP;
END $do$;

DO $$
BEGIN
  EXECUTE pg_catalog.format('INSERT INTO %I.login_etl_migrations (version, name, source) VALUES (%s, %L, %L)',
                            COALESCE(NULLIF(pg_catalog.current_setting('login_etl.state_schema', true), ''), 'login_etl'), 9, 'ledger maintenance one call at a time, today first (consumers starting together no longer deadlock)', 'schema.sql');
END $$;

COMMIT;
