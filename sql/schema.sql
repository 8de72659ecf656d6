-- login-etl's tables and functions, for a DBA who creates them ahead of time
-- (login-etl creates whichever are missing on start when its role may). Run
-- with search_path set to login-etl's schema, then sql/roles.sql:
--   psql "$ADMIN_URL" -v ON_ERROR_STOP=1 -c 'SET search_path = public' -f sql/schema.sql -f sql/roles.sql
-- Written from src/db/schema.ts by `make docs`; do not edit by hand.

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

CREATE INDEX IF NOT EXISTS login_etl_rejects_rejected_at
    ON login_etl_rejects USING brin (rejected_at);

CREATE TABLE IF NOT EXISTS login_etl_keys (
      key_id       text PRIMARY KEY,
      fingerprint  text NOT NULL,
      first_used   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS login_etl_vault (
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
);

CREATE TABLE IF NOT EXISTS login_etl_audit (
      id           bigserial PRIMARY KEY,
      at           timestamptz NOT NULL DEFAULT now(),
      actor        text NOT NULL,
      db_user      text NOT NULL DEFAULT session_user,
      action       text NOT NULL,
      masked_value text,
      reason       text,
      outcome      text NOT NULL,
      detail       text
);

DO $do$ BEGIN EXECUTE format($f$
CREATE OR REPLACE FUNCTION login_etl_vault_put(p_masked text[], p_field text[], p_ciphertext bytea[], p_iv bytea[], p_key_id text[]) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = %I, pg_temp AS $body$
INSERT INTO login_etl_vault AS v (masked_value, field, ciphertext, iv, key_id)
SELECT DISTINCT ON (u.m) u.m, u.f, u.c, u.i, u.k
FROM unnest(p_masked, p_field, p_ciphertext, p_iv, p_key_id) AS u(m, f, c, i, k)
ORDER BY u.m
ON CONFLICT (masked_value) DO UPDATE SET first_seen = v.first_seen
$body$$f$, current_schema()); END $do$;

DO $do$ BEGIN EXECUTE format($f$
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
$body$$f$, current_schema()); END $do$;

DO $do$ BEGIN EXECUTE format($f$
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
$body$$f$, current_schema()); END $do$;

DO $do$ BEGIN EXECUTE format($f$
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
$body$$f$, current_schema()); END $do$;

DO $do$ BEGIN EXECUTE format($f$
CREATE OR REPLACE FUNCTION login_etl_audit_list(p_after bigint, p_limit integer) RETURNS SETOF login_etl_audit
LANGUAGE sql SECURITY DEFINER SET search_path = %I, pg_temp AS $body$
SELECT * FROM login_etl_audit WHERE id > p_after ORDER BY id LIMIT least(p_limit, 10000)
$body$$f$, current_schema()); END $do$;
