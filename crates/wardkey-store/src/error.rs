//! The store's one error type, and the mapping of database errors onto it.

use sqlx::error::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("a {kind} with this {field} already exists: {value}")]
    Duplicate { kind: &'static str, field: &'static str, value: String },
    #[error("{kind} {id} was changed concurrently: expected version {expected}, stored version is {actual}")]
    VersionConflict { kind: &'static str, id: String, expected: i64, actual: i64 },
    #[error("{kind} {id} is in use: {message}")]
    InUse { kind: &'static str, id: String, message: String },
    /// The object is in a state that forbids the change (e.g. a grant that is already revoked).
    #[error("{kind} {id}: {message}")]
    Conflict { kind: &'static str, id: String, message: String },
    #[error("invalid {field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("write job queued no audit event; every state change must commit with its audit event")]
    NoAuditEvent,
    #[error("the store is closed")]
    Closed,
    #[error("the store was opened read-only")]
    ReadOnly,
    /// Text of the underlying database error. Never shown to API clients.
    #[error("database error: {0}")]
    Database(String),
    #[error("audit log: {0}")]
    Audit(#[from] wardkey_audit::AuditError),
    #[error("migration: {0}")]
    Migration(String),
}

impl StoreError {
    pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
        StoreError::Database(format!("corrupt row: {what}"))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolClosed => StoreError::Closed,
            sqlx::Error::Database(db) => match db.kind() {
                ErrorKind::UniqueViolation => StoreError::Duplicate {
                    kind: "object",
                    field: "unknown",
                    value: unique_target(db.as_ref()).unwrap_or_default(),
                },
                ErrorKind::ForeignKeyViolation => StoreError::Invalid {
                    field: "reference",
                    message: "refers to an object that does not exist".into(),
                },
                _ => StoreError::Database(e.to_string()),
            },
            _ => StoreError::Database(e.to_string()),
        }
    }
}

/// A unique index a write may collide with: its PostgreSQL name, the column list SQLite
/// reports (`table.col, table.col`), and how to name the collision to the caller.
pub(crate) struct Unique<'a> {
    pub index: &'static str,
    pub sqlite_columns: &'static str,
    pub kind: &'static str,
    pub field: &'static str,
    pub value: &'a str,
}

/// What a unique violation names: the constraint (PostgreSQL) or the column list (SQLite).
fn unique_target(db: &dyn sqlx::error::DatabaseError) -> Option<String> {
    if let Some(c) = db.constraint() {
        return Some(c.to_owned());
    }
    db.message().strip_prefix("UNIQUE constraint failed: ").map(|s| s.trim().to_owned())
}

/// Maps a database error from a write, naming unique collisions from `uniques` and foreign-key
/// failures with `fk` (kind and id of what the write refers to, when there is one candidate).
pub(crate) fn map_write_err(e: sqlx::Error, uniques: &[Unique<'_>], fk: Option<(&'static str, String)>) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        match db.kind() {
            ErrorKind::UniqueViolation => {
                let target = unique_target(db.as_ref()).unwrap_or_default();
                if let Some(u) = uniques.iter().find(|u| target == u.index || target == u.sqlite_columns) {
                    return StoreError::Duplicate { kind: u.kind, field: u.field, value: u.value.to_owned() };
                }
                if let Some(u) = uniques.first() {
                    // The primary key (a reused id) or an index we did not name.
                    let field = if target.ends_with(".id") || target.ends_with("_pkey") { "id" } else { u.field };
                    let value = if field == "id" { String::new() } else { u.value.to_owned() };
                    return StoreError::Duplicate { kind: u.kind, field, value };
                }
            }
            ErrorKind::ForeignKeyViolation => {
                if let Some((kind, id)) = fk {
                    return StoreError::NotFound { kind, id };
                }
            }
            _ => {}
        }
    }
    StoreError::from(e)
}
