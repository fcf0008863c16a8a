-- HR provisioning: import runs and review items. Keep in step with
-- migrations/postgres/0006_hr.sql.

-- One row per applied roster import (plans are not stored; they write nothing).
CREATE TABLE hr_imports (
    id               TEXT PRIMARY KEY,
    sha256           TEXT NOT NULL,
    format           TEXT NOT NULL,
    full_roster      BIGINT NOT NULL,
    override_breaker BIGINT NOT NULL,
    row_count        BIGINT NOT NULL,
    summary          TEXT NOT NULL,
    created_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL
);

-- Things a person must look at: a grant kept after a move, a worker missing from a full
-- roster, a birthright role refused by separation of duties.
CREATE TABLE review_items (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    grant_id    TEXT NOT NULL DEFAULT '',
    import_id   TEXT,
    reason      TEXT NOT NULL,
    details     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    resolved_at BIGINT,
    resolved_by TEXT
);
CREATE INDEX review_items_user ON review_items (user_id);
CREATE UNIQUE INDEX review_items_open ON review_items (kind, user_id, grant_id) WHERE resolved_at IS NULL;
