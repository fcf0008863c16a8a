//! The read surface shared by [`ReadTx`] and [`WriteTx`](crate::WriteTx), and the helpers
//! every query uses to turn rows into domain types.

use crate::{BackendKind, StoreError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::any::AnyRow;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AssertSqlSafe, Row};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use uuid::Uuid;
use wardkey_domain::Clock;

/// Most items one list call returns.
pub const MAX_PAGE: u32 = 1000;

/// Keyset pagination over ids (UUIDv7, so creation order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Opaque cursor: the id of the last item of the previous page.
    pub after: Option<String>,
    /// At most [`MAX_PAGE`]; 0 returns nothing.
    pub limit: u32,
}

impl Page {
    pub fn first(limit: u32) -> Page {
        Page { after: None, limit }
    }
    pub fn after(cursor: impl Into<String>, limit: u32) -> Page {
        Page { after: Some(cursor.into()), limit }
    }
    pub(crate) fn cursor(&self) -> Result<Option<String>, StoreError> {
        match &self.after {
            None => Ok(None),
            Some(c) => Uuid::parse_str(c)
                .map(|u| Some(u.to_string()))
                .map_err(|_| StoreError::Invalid { field: "after", message: "not a valid page cursor".into() }),
        }
    }
    pub(crate) fn limit(&self) -> i64 {
        i64::from(self.limit.min(MAX_PAGE))
    }
}

impl Default for Page {
    fn default() -> Self {
        Page { after: None, limit: 100 }
    }
}

/// A database connection with the store's read methods (directory, access model, tokens,
/// audit log). [`ReadTx`] and [`WriteTx`](crate::WriteTx) both dereference to it, so
/// `tx.get_user(id).await` works on either, and helpers can take `&mut Conn`.
pub struct Conn {
    pub(crate) db: PoolConnection<Any>,
    pub(crate) kind: BackendKind,
    pub(crate) clock: Arc<dyn Clock>,
    /// Inside a write job: the job's time, so all of it sees one instant.
    pub(crate) fixed_now: Option<DateTime<Utc>>,
    pub(crate) stmt_savepoints: bool,
}

impl Conn {
    pub fn backend(&self) -> BackendKind {
        self.kind
    }

    /// The time queries such as "live grants" are evaluated at: the job's time inside a
    /// write job, the clock otherwise (truncated to microseconds, as stored).
    pub fn current_time(&self) -> DateTime<Utc> {
        self.fixed_now.unwrap_or_else(|| truncate_micros(self.clock.now()))
    }

    pub(crate) fn ex(&mut self) -> &mut AnyConnection {
        &mut self.db
    }

    /// Runs a statement that may fail on a constraint so that, on PostgreSQL, its failure does
    /// not poison the surrounding transaction (it gets its own savepoint).
    pub(crate) async fn guarded<'q>(
        &mut self,
        q: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    ) -> Result<u64, sqlx::Error> {
        if !self.stmt_savepoints {
            return q.execute(self.ex()).await.map(|r| r.rows_affected());
        }
        sqlx::raw_sql("SAVEPOINT wk_stmt").execute(self.ex()).await?;
        match q.execute(self.ex()).await {
            Ok(r) => {
                sqlx::raw_sql("RELEASE SAVEPOINT wk_stmt").execute(self.ex()).await?;
                Ok(r.rows_affected())
            }
            Err(e) => {
                sqlx::raw_sql("ROLLBACK TO SAVEPOINT wk_stmt").execute(self.ex()).await?;
                sqlx::raw_sql("RELEASE SAVEPOINT wk_stmt").execute(self.ex()).await?;
                Err(e)
            }
        }
    }

    /// Like [`guarded`](Self::guarded) for a statement with `RETURNING`: the row, if any.
    pub(crate) async fn guarded_optional<'q>(
        &mut self,
        q: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    ) -> Result<Option<AnyRow>, sqlx::Error> {
        if !self.stmt_savepoints {
            return q.fetch_optional(self.ex()).await;
        }
        sqlx::raw_sql("SAVEPOINT wk_stmt").execute(self.ex()).await?;
        match q.fetch_optional(self.ex()).await {
            Ok(r) => {
                sqlx::raw_sql("RELEASE SAVEPOINT wk_stmt").execute(self.ex()).await?;
                Ok(r)
            }
            Err(e) => {
                sqlx::raw_sql("ROLLBACK TO SAVEPOINT wk_stmt").execute(self.ex()).await?;
                sqlx::raw_sql("RELEASE SAVEPOINT wk_stmt").execute(self.ex()).await?;
                Err(e)
            }
        }
    }

    /// After an `UPDATE ... WHERE id AND version [AND deleted_at IS NULL]` changed no row:
    /// NotFound if there is no live row, else VersionConflict with the stored version.
    pub(crate) async fn version_miss(
        &mut self,
        table: &'static str,
        tombstoned: bool,
        kind: &'static str,
        id: &str,
        expected: i64,
    ) -> StoreError {
        let sql = if tombstoned {
            format!("SELECT version FROM {table} WHERE id = $1 AND deleted_at IS NULL")
        } else {
            format!("SELECT version FROM {table} WHERE id = $1")
        };
        match sqlx::query(AssertSqlSafe(sql)).bind(id.to_owned()).fetch_optional(self.ex()).await {
            Err(e) => e.into(),
            Ok(None) => StoreError::NotFound { kind, id: id.to_owned() },
            Ok(Some(row)) => match row.try_get::<i64, _>("version") {
                Ok(actual) => StoreError::VersionConflict { kind, id: id.to_owned(), expected, actual },
                Err(e) => StoreError::corrupt(e),
            },
        }
    }

    /// Whether a live (not tombstoned) row with this id exists in `table`.
    pub(crate) async fn exists_live(
        &mut self,
        table: &'static str,
        tombstoned: bool,
        id: &str,
    ) -> Result<bool, StoreError> {
        let sql = if tombstoned {
            format!("SELECT 1 AS one FROM {table} WHERE id = $1 AND deleted_at IS NULL")
        } else {
            format!("SELECT 1 AS one FROM {table} WHERE id = $1")
        };
        Ok(sqlx::query(AssertSqlSafe(sql)).bind(id.to_owned()).fetch_optional(self.ex()).await?.is_some())
    }
}

/// A pooled reader connection. From [`Store::read`](crate::Store::read) it is not a
/// transaction (each statement sees the latest commit); from
/// [`Store::read_snapshot`](crate::Store::read_snapshot) every read sees one snapshot until
/// [`ReadTx::end`]. A snapshot dropped without `end` closes its connection instead of
/// returning it to the pool with the transaction open.
pub struct ReadTx {
    pub(crate) conn: Conn,
    pub(crate) in_tx: bool,
}

impl ReadTx {
    /// Whether this reader holds a snapshot (read transaction).
    pub fn is_snapshot(&self) -> bool {
        self.in_tx
    }

    /// Ends the snapshot, if any, and returns the connection to the pool.
    pub async fn end(mut self) -> Result<(), StoreError> {
        if self.in_tx {
            sqlx::raw_sql("ROLLBACK").execute(self.conn.ex()).await?;
            self.in_tx = false;
        }
        Ok(())
    }
}

impl Drop for ReadTx {
    fn drop(&mut self) {
        if self.in_tx {
            self.conn.db.close_on_drop();
        }
    }
}

impl Deref for ReadTx {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl DerefMut for ReadTx {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

// ---------------------------------------------------------------------------------------------
// Value helpers

pub(crate) fn truncate_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    wardkey_audit::truncate_to_micros(t)
}

pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn opt_micros(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(micros)
}

pub(crate) fn from_micros(v: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(v).ok_or_else(|| StoreError::corrupt(format!("timestamp {v} out of range")))
}

pub(crate) fn to_json<T: Serialize + ?Sized>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Database(format!("cannot encode JSON: {e}")))
}

/// Lower-cased form that name uniqueness and lookups use (same on both databases).
pub(crate) fn fold(name: &str) -> String {
    name.to_lowercase()
}

/// The half-open range `[lower, upper)` of strings that start with `prefix`, in byte order
/// (SQLite's BINARY, PostgreSQL's "C" collation; UTF-8 byte order is code-point order).
/// Unlike `LIKE 'p%'` (case-insensitive on SQLite, linguistic on PostgreSQL), both databases
/// answer it from a B-tree index. `upper` is `None` when nothing in Unicode sorts above it.
pub(crate) fn prefix_range(prefix: &str) -> (String, Option<String>) {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        // The next scalar value, skipping the surrogate gap.
        let next = match u32::from(last) {
            0xD7FF => Some('\u{E000}'),
            n => n.checked_add(1).and_then(char::from_u32),
        };
        if let Some(next) = next {
            chars.push(next);
            return (prefix.to_owned(), Some(chars.into_iter().collect()));
        }
    }
    (prefix.to_owned(), None)
}

/// Typed column access with errors that say which column was bad.
pub(crate) trait RowExt {
    fn text(&self, col: &str) -> Result<String, StoreError>;
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, col: &str) -> Result<i64, StoreError>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError>;
    fn bytes(&self, col: &str) -> Result<Vec<u8>, StoreError>;
    fn flag(&self, col: &str) -> Result<bool, StoreError> {
        Ok(self.int(col)? != 0)
    }
    fn ts(&self, col: &str) -> Result<DateTime<Utc>, StoreError> {
        from_micros(self.int(col)?)
    }
    fn opt_ts(&self, col: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.opt_int(col)?.map(from_micros).transpose()
    }
    fn uuid(&self, col: &str) -> Result<Uuid, StoreError> {
        let s = self.text(col)?;
        Uuid::parse_str(&s).map_err(|e| StoreError::corrupt(format!("{col}: {e}")))
    }
    fn opt_uuid(&self, col: &str) -> Result<Option<Uuid>, StoreError> {
        match self.opt_text(col)? {
            None => Ok(None),
            Some(s) => Uuid::parse_str(&s).map(Some).map_err(|e| StoreError::corrupt(format!("{col}: {e}"))),
        }
    }
    fn json<T: DeserializeOwned>(&self, col: &str) -> Result<T, StoreError> {
        let s = self.text(col)?;
        serde_json::from_str(&s).map_err(|e| StoreError::corrupt(format!("{col}: {e}")))
    }
    fn opt_json<T: DeserializeOwned>(&self, col: &str) -> Result<Option<T>, StoreError> {
        match self.opt_text(col)? {
            None => Ok(None),
            Some(s) => serde_json::from_str(&s).map(Some).map_err(|e| StoreError::corrupt(format!("{col}: {e}"))),
        }
    }
}

impl RowExt for AnyRow {
    fn text(&self, col: &str) -> Result<String, StoreError> {
        self.try_get(col).map_err(|e| StoreError::corrupt(format!("{col}: {e}")))
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
        self.try_get(col).map_err(|e| StoreError::corrupt(format!("{col}: {e}")))
    }
    fn int(&self, col: &str) -> Result<i64, StoreError> {
        self.try_get(col).map_err(|e| StoreError::corrupt(format!("{col}: {e}")))
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
        self.try_get(col).map_err(|e| StoreError::corrupt(format!("{col}: {e}")))
    }
    fn bytes(&self, col: &str) -> Result<Vec<u8>, StoreError> {
        self.try_get(col).map_err(|e| StoreError::corrupt(format!("{col}: {e}")))
    }
}

/// A bind value of a dynamically built query.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(String),
    Int(i64),
}

/// Builds `WHERE`-clauses with numbered placeholders.
#[derive(Default)]
pub(crate) struct Filter {
    clauses: Vec<String>,
    pub(crate) args: Vec<Arg>,
}

impl Filter {
    /// Adds a clause; each `?` in it becomes the next `$n`.
    pub(crate) fn push(&mut self, clause: &str, args: impl IntoIterator<Item = Arg>) {
        let mut out = String::with_capacity(clause.len() + 4);
        let args: Vec<Arg> = args.into_iter().collect();
        let mut it = args.into_iter();
        for c in clause.chars() {
            if c == '?'
                && let Some(a) = it.next()
            {
                self.args.push(a);
                out.push('$');
                out.push_str(&self.args.len().to_string());
                continue;
            }
            out.push(c);
        }
        self.clauses.push(out);
    }

    /// `WHERE a AND b` (or nothing).
    pub(crate) fn where_sql(&self) -> String {
        if self.clauses.is_empty() { String::new() } else { format!(" WHERE {}", self.clauses.join(" AND ")) }
    }

    /// Appends the page's cursor condition and returns the `ORDER BY id LIMIT $n` tail.
    pub(crate) fn page(&mut self, page: &Page, id_col: &str) -> Result<String, StoreError> {
        if let Some(after) = page.cursor()? {
            self.push(&format!("{id_col} > ?"), [Arg::Text(after)]);
        }
        self.args.push(Arg::Int(page.limit()));
        Ok(format!(" ORDER BY {id_col} LIMIT ${}", self.args.len()))
    }

    pub(crate) async fn fetch_all(self, conn: &mut AnyConnection, sql: String) -> Result<Vec<AnyRow>, StoreError> {
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for a in self.args {
            q = match a {
                Arg::Text(s) => q.bind(s),
                Arg::Int(i) => q.bind(i),
            };
        }
        Ok(q.fetch_all(conn).await?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::prefix_range;

    /// Every string that starts with the prefix is inside the range, and strings that do not
    /// are outside it, in byte order (what both databases compare with).
    #[test]
    fn prefix_range_is_exactly_the_strings_with_that_prefix() {
        let inside = |p: &str, s: &str| {
            let (lo, hi) = prefix_range(p);
            s.as_bytes() >= lo.as_bytes() && hi.is_none_or(|h| s.as_bytes() < h.as_bytes())
        };
        for (p, s) in [
            ("nurse1", "nurse1"),
            ("nurse1", "nurse1@x"),
            ("nurse1", "nurse1\u{10FFFF}zz"),
            ("ü", "über"),
            ("a\u{D7FF}", "a\u{D7FF}b"),
        ] {
            assert!(inside(p, s), "{s:?} starts with {p:?}");
        }
        for (p, s) in
            [("nurse1", "nurse2"), ("nurse1", "nurse"), ("nurse1", "nurse0zzz"), ("ü", "v"), ("a\u{D7FF}", "a\u{E000}")]
        {
            assert!(!inside(p, s), "{s:?} does not start with {p:?}");
        }
        assert_eq!(prefix_range("a\u{10FFFF}"), ("a\u{10FFFF}".to_owned(), Some("b".to_owned())));
        assert_eq!(prefix_range("\u{10FFFF}"), ("\u{10FFFF}".to_owned(), None));
    }
}
