-- Authentication: passwords, second factors, recovery codes, sign-in failures and sessions.
-- Keep in step with migrations/sqlite/0003_authn.sql (BLOB there, BYTEA here).
-- Secrets never appear in clear: passwords are Argon2id PHC strings, TOTP seeds are sealed
-- with a key kept outside the database, recovery codes and session ids are SHA-256 hashes.

ALTER TABLE roles ADD COLUMN session_policy TEXT NOT NULL DEFAULT '{}';

CREATE TABLE password_credentials (
    user_id     TEXT PRIMARY KEY REFERENCES users (id),
    phc         TEXT NOT NULL,
    set_at      BIGINT NOT NULL,
    set_by      TEXT NOT NULL,
    must_change BIGINT NOT NULL
);

CREATE TABLE authn_factors (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id),
    kind           TEXT NOT NULL CHECK (kind IN ('totp', 'webauthn')),
    name           TEXT NOT NULL,
    -- totp: the sealed seed; webauthn: the stored passkey (public key, counter) as JSON
    secret         TEXT NOT NULL,
    credential_id  TEXT,
    confirmed      BIGINT NOT NULL,
    last_used_step BIGINT,
    created_at     BIGINT NOT NULL,
    last_used_at   BIGINT
);
CREATE INDEX authn_factors_user ON authn_factors (user_id);
CREATE UNIQUE INDEX authn_factors_credential ON authn_factors (credential_id);

CREATE TABLE recovery_codes (
    user_id    TEXT NOT NULL REFERENCES users (id),
    code_hash  TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    used_at    BIGINT,
    PRIMARY KEY (user_id, code_hash)
);

CREATE TABLE login_failures (
    user_id         TEXT PRIMARY KEY REFERENCES users (id),
    consecutive     BIGINT NOT NULL,
    last_failure_at BIGINT,
    locked_at       BIGINT
);

CREATE TABLE sessions (
    id                    TEXT PRIMARY KEY,
    token_hash            BYTEA NOT NULL,
    user_id               TEXT NOT NULL REFERENCES users (id),
    stage                 TEXT NOT NULL CHECK (stage IN ('second_factor', 'enrol', 'active')),
    created_at            BIGINT NOT NULL,
    last_seen_at          BIGINT NOT NULL,
    expires_at            BIGINT NOT NULL,
    password_at           BIGINT,
    mfa_at                BIGINT,
    phishing_resistant_at BIGINT,
    methods               TEXT NOT NULL,
    source_ip             TEXT,
    user_agent            TEXT,
    -- state of a ceremony in progress (WebAuthn challenge, TOTP enrolment), JSON, sealed where secret
    pending               TEXT,
    ended_at              BIGINT,
    ended_reason          TEXT,
    ended_by              TEXT
);
CREATE UNIQUE INDEX sessions_token_hash ON sessions (token_hash);
CREATE INDEX sessions_user_live ON sessions (user_id) WHERE ended_at IS NULL;
