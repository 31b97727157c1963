-- The front door (issue 14): people and systems who may act, the service's signing key, and the
-- tamper-evident audit trail of every state-changing request (api/, vreserve/identity.py,
-- vreserve/auditlog.py; docs/api.md).

-- People: argon2id hashes only; a disabled account cannot log in and its tokens stop working.
CREATE TABLE api_users (
    name            text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9._@-]{1,64}$'),
    role            text NOT NULL CHECK (role IN ('viewer', 'operator', 'supervisor', 'admin')),
    password_hash   text NOT NULL,
    disabled        boolean NOT NULL DEFAULT false,
    failed_logins   integer NOT NULL DEFAULT 0,
    locked_until    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by      text NOT NULL
);

-- Logistics companies, and the regions (routes) whose orders they carry.
CREATE TABLE carriers (
    carrier_id  text PRIMARY KEY CHECK (carrier_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    name        text NOT NULL,
    regions     text[] NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- API tokens for systems (a carrier or an owner). Only a SHA-256 of the secret is kept.
CREATE TABLE api_tokens (
    token_id     text PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('carrier', 'owner')),
    subject      text NOT NULL,                       -- carrier_id or owner_id
    secret_hash  text NOT NULL,
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text NOT NULL
);

-- The key that signs bearer tokens and session cookies: generated once per installation (random,
-- never in code), shared by every API instance through the database so they stay stateless.
CREATE TABLE api_signing_keys (
    key_id      text PRIMARY KEY,
    secret      bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Append-only audit trail: who, when, from where, what, the outcome; each row carries the hash of
-- the one before it (hash chain), so `vreserve audit-log verify` finds an edited or removed row.
CREATE TABLE audit_log (
    seq          bigint PRIMARY KEY,
    at           timestamptz NOT NULL,
    actor        text NOT NULL,                       -- 'user:alice', 'carrier:c1', 'os-user:root', 'anonymous'
    source       text NOT NULL,                       -- client address, or 'cli'
    action       text NOT NULL,                       -- 'POST /api/v1/emergencies/declare', 'emergency.declare'
    target       text NOT NULL DEFAULT '',
    outcome      text NOT NULL,                       -- 'ok', 'refused', 'error'
    status       integer NOT NULL,                    -- HTTP status (CLI: 200 ok / 400 refused)
    detail       text NOT NULL DEFAULT '{}',          -- canonical JSON, exactly as hashed
    prev_hash    text NOT NULL,
    hash         text NOT NULL
);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
