-- Authorization: conditions on roles and grants, forbid rules. Keep in step with
-- migrations/postgres/0004_authz.sql.

ALTER TABLE roles ADD COLUMN conditions TEXT NOT NULL DEFAULT '{}';
ALTER TABLE grants ADD COLUMN conditions TEXT NOT NULL DEFAULT '{}';
ALTER TABLE roles ADD COLUMN break_glass BIGINT NOT NULL DEFAULT 0;
ALTER TABLE resource_types ADD COLUMN decision_audit TEXT NOT NULL DEFAULT 'async';

CREATE TABLE forbid_rules (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    name_key       TEXT NOT NULL,
    description    TEXT,
    resource_types TEXT NOT NULL,
    actions        TEXT NOT NULL,
    rule           TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    version        BIGINT NOT NULL
);
CREATE UNIQUE INDEX forbid_rules_name ON forbid_rules (name_key);
