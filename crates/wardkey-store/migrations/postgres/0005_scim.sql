-- SCIM 2.0 (issue 5). Keep in step with migrations/sqlite/0005_scim.sql.
--
-- A SCIM resource is kept as sent (`raw`, the JSON after schema-aware key normalisation and
-- PATCH application) beside the directory user or group it maps to (same id). Filters are
-- translated to SQL over the columns below, never evaluated by scanning rows in Rust:
-- single-valued attributes are columns (`*_key` = lower-cased in Rust, for the attributes
-- whose caseExact is false), multi-valued ones (emails, phoneNumbers, ...) are rows of
-- scim_values. Attributes the directory owns (userName, active, meta.created/lastModified,
-- id) are read from users/groups themselves.

CREATE TABLE scim_users (
    id                     TEXT COLLATE "C" PRIMARY KEY REFERENCES users (id),
    external_id            TEXT,
    raw                    TEXT NOT NULL,
    connector              TEXT NOT NULL,
    display_name_key       TEXT,
    name_formatted_key     TEXT,
    family_name_key        TEXT,
    given_name_key         TEXT,
    middle_name_key        TEXT,
    honorific_prefix_key   TEXT,
    honorific_suffix_key   TEXT,
    nick_name_key          TEXT,
    profile_url_key        TEXT,
    title_key              TEXT,
    user_type_key          TEXT,
    preferred_language_key TEXT,
    locale_key             TEXT,
    timezone_key           TEXT,
    employee_number_key    TEXT,
    cost_center_key        TEXT,
    organization_key       TEXT,
    division_key           TEXT,
    department_key         TEXT,
    manager_value          TEXT
);
CREATE INDEX scim_users_external_id ON scim_users (external_id);
CREATE INDEX scim_users_display_name ON scim_users (display_name_key);
CREATE INDEX scim_users_family_name ON scim_users (family_name_key);
CREATE INDEX scim_users_given_name ON scim_users (given_name_key);
CREATE INDEX scim_users_employee_number ON scim_users (employee_number_key);
CREATE INDEX scim_users_department ON scim_users (department_key);
CREATE INDEX scim_users_manager ON scim_users (manager_value);

CREATE TABLE scim_groups (
    id               TEXT COLLATE "C" PRIMARY KEY REFERENCES groups (id),
    external_id      TEXT,
    raw              TEXT NOT NULL,
    connector        TEXT NOT NULL,
    display_name_key TEXT
);
CREATE INDEX scim_groups_external_id ON scim_groups (external_id);
CREATE INDEX scim_groups_display_name ON scim_groups (display_name_key);

-- One row per value of a multi-valued attribute of a SCIM user (emails, phoneNumbers, ims,
-- photos, addresses, entitlements, roles, x509Certificates): idx is its position in the
-- array; value (as sent) and value_key (lower-cased), type_key, display_key, primary_flag.
-- For addresses, value is `formatted`.
CREATE TABLE scim_values (
    resource_id  TEXT COLLATE "C" NOT NULL,
    attr         TEXT NOT NULL,
    idx          BIGINT NOT NULL,
    value        TEXT,
    value_key    TEXT,
    type_key     TEXT,
    display_key  TEXT,
    primary_flag BIGINT NOT NULL,
    PRIMARY KEY (resource_id, attr, idx)
);
CREATE INDEX scim_values_value ON scim_values (attr, value_key);
CREATE INDEX scim_values_type_value ON scim_values (attr, type_key, value_key);
