-- Wardkey schema, PostgreSQL flavour. Keep in step with migrations/sqlite/0001_init.sql:
-- the same tables, columns and index names; only the types differ (BYTEA vs BYTEA).
-- Ids are UUID text, timestamps are BIGINT unix microseconds, JSON is TEXT, booleans are 0/1.
-- *_key columns hold the case-folded name (computed in Rust) so that uniqueness and lookups
-- ignore case identically on both databases.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE users (
    id           TEXT COLLATE "C" PRIMARY KEY,
    username     TEXT NOT NULL,
    username_key TEXT NOT NULL,
    display_name TEXT,
    email        TEXT,
    status       TEXT NOT NULL,
    hr           TEXT NOT NULL,
    department   TEXT,
    employee_id  TEXT,
    verification TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    version      BIGINT NOT NULL,
    deleted_at   BIGINT
);
CREATE UNIQUE INDEX users_username_live ON users (username_key) WHERE deleted_at IS NULL;
CREATE INDEX users_department ON users (department);
CREATE INDEX users_employee_id ON users (employee_id);

CREATE TABLE groups (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT NOT NULL,
    name_key    TEXT NOT NULL,
    description TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    version     BIGINT NOT NULL,
    deleted_at  BIGINT
);
CREATE UNIQUE INDEX groups_name_live ON groups (name_key) WHERE deleted_at IS NULL;

CREATE TABLE service_accounts (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT NOT NULL,
    name_key    TEXT NOT NULL,
    description TEXT,
    owner_id    TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    status      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    version     BIGINT NOT NULL,
    deleted_at  BIGINT
);
CREATE UNIQUE INDEX service_accounts_name_live ON service_accounts (name_key) WHERE deleted_at IS NULL;
CREATE INDEX service_accounts_owner ON service_accounts (owner_id);

CREATE TABLE group_members (
    group_id    TEXT COLLATE "C" NOT NULL REFERENCES groups (id),
    member_kind TEXT NOT NULL CHECK (member_kind IN ('user', 'service_account')),
    member_id   TEXT COLLATE "C" NOT NULL,
    added_at    BIGINT NOT NULL,
    PRIMARY KEY (group_id, member_kind, member_id)
);
CREATE INDEX group_members_member ON group_members (member_kind, member_id);

CREATE TABLE resource_types (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT NOT NULL,
    name_key    TEXT NOT NULL,
    description TEXT,
    actions     TEXT NOT NULL,
    phi         BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    version     BIGINT NOT NULL
);
CREATE UNIQUE INDEX resource_types_name ON resource_types (name_key);

CREATE TABLE resources (
    id          TEXT COLLATE "C" PRIMARY KEY,
    type_id     TEXT COLLATE "C" NOT NULL REFERENCES resource_types (id),
    name        TEXT NOT NULL,
    name_key    TEXT NOT NULL,
    parent_id   TEXT COLLATE "C" REFERENCES resources (id),
    parent_key  TEXT NOT NULL,
    description TEXT,
    attributes  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    version     BIGINT NOT NULL,
    deleted_at  BIGINT
);
CREATE UNIQUE INDEX resources_sibling_name_live ON resources (parent_key, name_key) WHERE deleted_at IS NULL;
CREATE INDEX resources_parent ON resources (parent_id);
CREATE INDEX resources_type ON resources (type_id);

CREATE TABLE roles (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT NOT NULL,
    name_key    TEXT NOT NULL,
    description TEXT,
    permissions TEXT NOT NULL,
    privileged  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    version     BIGINT NOT NULL,
    deleted_at  BIGINT
);
CREATE UNIQUE INDEX roles_name_live ON roles (name_key) WHERE deleted_at IS NULL;

CREATE TABLE role_templates (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT NOT NULL,
    name_key    TEXT NOT NULL,
    description TEXT,
    rule        TEXT NOT NULL,
    role_ids    TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    version     BIGINT NOT NULL
);
CREATE UNIQUE INDEX role_templates_name ON role_templates (name_key);

-- Which roles each template names (role_templates.role_ids keeps the order); lets a role
-- delete find its templates and lets the database check the roles exist.
CREATE TABLE role_template_roles (
    template_id TEXT COLLATE "C" NOT NULL REFERENCES role_templates (id) ON DELETE CASCADE,
    role_id     TEXT COLLATE "C" NOT NULL REFERENCES roles (id),
    PRIMARY KEY (template_id, role_id)
);
CREATE INDEX role_template_roles_role ON role_template_roles (role_id);

CREATE TABLE sod_rules (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT NOT NULL,
    name_key    TEXT NOT NULL,
    description TEXT,
    left_item   TEXT NOT NULL,
    right_item  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    version     BIGINT NOT NULL
);
CREATE UNIQUE INDEX sod_rules_name ON sod_rules (name_key);

CREATE TABLE grants (
    id            TEXT COLLATE "C" PRIMARY KEY,
    subject_kind  TEXT NOT NULL CHECK (subject_kind IN ('user', 'group', 'service_account')),
    subject_id    TEXT COLLATE "C" NOT NULL,
    role_id       TEXT COLLATE "C" NOT NULL REFERENCES roles (id),
    resource_id   TEXT COLLATE "C" REFERENCES resources (id),
    source        TEXT NOT NULL,
    requester     TEXT,
    approver      TEXT,
    justification TEXT,
    starts_at     BIGINT NOT NULL,
    expires_at    BIGINT,
    created_at    BIGINT NOT NULL,
    created_by    TEXT NOT NULL,
    revoked_at    BIGINT,
    revoked_by    TEXT,
    version       BIGINT NOT NULL
);
CREATE INDEX grants_subject ON grants (subject_kind, subject_id);
CREATE INDEX grants_role ON grants (role_id);
CREATE INDEX grants_resource ON grants (resource_id);

CREATE TABLE api_tokens (
    id           TEXT COLLATE "C" PRIMARY KEY,
    name         TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_used_at BIGINT,
    secret_hash  BYTEA NOT NULL
);

-- The audit log: one row per event, idx contiguous from 0. `leaf` is the RFC 9162 leaf hash,
-- `hashes` the Merkle tree hashes this leaf completes (the tlog "stored hashes" of record idx).
CREATE TABLE audit_events (
    idx         BIGINT PRIMARY KEY,
    time        BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT,
    outcome     TEXT NOT NULL,
    reason      TEXT,
    source_ip   TEXT,
    request_id  TEXT,
    approver    TEXT,
    request_ref TEXT,
    details     TEXT NOT NULL,
    leaf        BYTEA NOT NULL,
    hashes      BYTEA NOT NULL
);
CREATE INDEX audit_events_actor ON audit_events (actor);
CREATE INDEX audit_events_target ON audit_events (target);
CREATE INDEX audit_events_action ON audit_events (action);
CREATE INDEX audit_events_time ON audit_events (time);

CREATE TABLE audit_checkpoints (
    size BIGINT PRIMARY KEY,
    time BIGINT NOT NULL,
    root BYTEA NOT NULL,
    note TEXT NOT NULL
);

-- Append-only, as defence in depth (the Merkle tree is what makes tampering evident).
CREATE FUNCTION wardkey_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION wardkey_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION wardkey_append_only();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION wardkey_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION wardkey_append_only();
