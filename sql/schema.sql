-- login-etl's tables, for a DBA who creates them ahead of time (login-etl
-- creates whichever are missing on start when its role may). Kept equal to
-- src/db.ts by tests/unit/schema_sql_test.ts.

CREATE TABLE IF NOT EXISTS user_logins(
    user_id             varchar(128),
    device_type         varchar(32),
    masked_ip           varchar(256),
    masked_device_id    varchar(256),
    locale              varchar(32),
    app_version         integer,
    create_date         date
);

-- One row per SQS MessageId committed, written in the same transaction as the
-- message's row or reject: a redelivered message finds its id and is skipped.
CREATE TABLE IF NOT EXISTS login_etl_ledger (
    message_id   text PRIMARY KEY,
    committed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS login_etl_ledger_committed_at
    ON login_etl_ledger USING brin (committed_at);

-- Refused messages with their reason; ip/device_id values in the body are masked.
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

-- HMAC key ids and fingerprints (never the secrets): a key id used with a
-- different secret is refused.
CREATE TABLE IF NOT EXISTS login_etl_keys (
    key_id       text PRIMARY KEY,
    fingerprint  text NOT NULL,
    first_used   timestamptz NOT NULL DEFAULT now()
);

-- The recovery vault: raw ip/device_id values encrypted with AES-256-GCM (the
-- field and mask bound in), keyed by mask, insert-once. Only pii_recoverer may
-- read it (sql/roles.sql). Empty unless a vault key is configured.
CREATE TABLE IF NOT EXISTS login_etl_vault (
    masked_value text PRIMARY KEY,
    field        text NOT NULL CHECK (field IN ('ip', 'device_id')),
    ciphertext   bytea NOT NULL,
    iv           bytea NOT NULL,
    key_id       text NOT NULL,
    first_seen   timestamptz NOT NULL DEFAULT now()
);

-- Masks whose vault entry was erased: never vaulted again.
CREATE TABLE IF NOT EXISTS login_etl_forgotten (
    masked_value text PRIMARY KEY,
    forgotten_at timestamptz NOT NULL DEFAULT now()
);

-- Every recovery, erasure and re-keying, allowed or refused.
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
