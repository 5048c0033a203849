-- Authentication (daemon/modules/auth) and the audit log (daemon/modules/audit).

CREATE TYPE user_role AS ENUM ('admin', 'analyst', 'viewer');

CREATE TABLE users (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Kept as entered (trimmed); unique and looked up case-insensitively.
    email                text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    display_name         text NOT NULL DEFAULT '' CHECK (length(display_name) <= 200),
    role                 user_role NOT NULL,
    active               boolean NOT NULL DEFAULT true,
    password_hash        text NOT NULL,  -- argon2id, PHC string format
    password_changed_at  timestamptz NOT NULL DEFAULT now(),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- Login sessions: only the SHA-256 of the bearer token is stored.
CREATE TABLE sessions (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash    bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    last_used_at  timestamptz,
    revoked_at    timestamptz,
    client_addr   text
);
CREATE INDEX sessions_live_by_user ON sessions (user_id) WHERE revoked_at IS NULL;
CREATE INDEX sessions_expires ON sessions (expires_at);

-- API keys for machine clients: ``tgd_<prefix>_<secret>``; the SHA-256 of the whole key
-- is stored, the prefix is shown to recognise a key.
CREATE TABLE api_keys (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    prefix        text NOT NULL UNIQUE CHECK (prefix ~ '^[0-9a-f]{8}$'),
    secret_hash   bytea NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
    role          user_role NOT NULL,
    created_by    bigint REFERENCES users (id) ON DELETE SET NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    last_used_at  timestamptz,
    revoked_at    timestamptz
);

-- Failed-login counters, shared by every process: scope 'account' (key: the lowercased
-- email, known or not) or 'address' (key: the client address).
CREATE TABLE login_throttle (
    scope            text NOT NULL CHECK (scope IN ('account', 'address')),
    key              text NOT NULL,
    failures         integer NOT NULL CHECK (failures > 0),
    last_failure_at  timestamptz NOT NULL,
    blocked_until    timestamptz,
    PRIMARY KEY (scope, key)
);

-- The audit log: append-only. The table owner (the role triaged connects as) cannot be
-- denied UPDATE/DELETE by REVOKE, so a trigger refuses them instead; the audit module
-- exposes no way to change or delete an event. Removing events (retention) takes a
-- migration that disables the trigger on purpose.
CREATE TYPE audit_actor AS ENUM ('user', 'api_key', 'system', 'anonymous');

CREATE TABLE audit_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor_type   audit_actor NOT NULL,
    actor_id     bigint,
    action       text NOT NULL CHECK (action ~ '^[a-z_]+(\.[a-z_]+)+$'),
    target_type  text,
    target_id    text,
    client_addr  text,
    request_id   text,
    details      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object')
);
CREATE INDEX audit_events_action ON audit_events (action, id);
CREATE INDEX audit_events_actor ON audit_events (actor_type, actor_id, id);
CREATE INDEX audit_events_target ON audit_events (target_type, target_id, id);
CREATE INDEX audit_events_at ON audit_events (at);

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_events_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
