//! What differs between the two databases: connecting, pools, migrations, how a write
//! transaction begins and how the audit sequencer is taken. Everything else in the crate is
//! one body of portable SQL run through sqlx's `Any` driver.

use crate::StoreError;
use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, Row};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Once;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    Sqlite,
    Postgres,
}

impl BackendKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            BackendKind::Sqlite => "sqlite",
            BackendKind::Postgres => "postgres",
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Tuning knobs; `Default` is what `Store::open` uses.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// SQLite: connections in the reader pool (the writer has its own single connection).
    pub sqlite_readers: u32,
    /// PostgreSQL: size of the one pool shared by readers and the writer.
    pub pg_max_connections: u32,
    /// Most write jobs committed together in one transaction (group commit).
    pub max_batch: usize,
    /// Write jobs that may wait in the queue before `write` waits for room.
    pub queue_depth: usize,
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            sqlite_readers: 4,
            pg_max_connections: 16,
            max_batch: 512,
            queue_depth: 4096,
            acquire_timeout: Duration::from_secs(30),
        }
    }
}

/// One versioned schema change, embedded in the binary.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

const SQLITE_MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "init", sql: include_str!("../migrations/sqlite/0001_init.sql") },
    Migration {
        version: 2,
        name: "audit_action_index",
        sql: include_str!("../migrations/sqlite/0002_audit_action_index.sql"),
    },
    Migration { version: 3, name: "authn", sql: include_str!("../migrations/sqlite/0003_authn.sql") },
    Migration { version: 4, name: "authz", sql: include_str!("../migrations/sqlite/0004_authz.sql") },
    Migration { version: 5, name: "scim", sql: include_str!("../migrations/sqlite/0005_scim.sql") },
    Migration { version: 6, name: "hr", sql: include_str!("../migrations/sqlite/0006_hr.sql") },
    Migration { version: 7, name: "key_collation", sql: include_str!("../migrations/sqlite/0007_key_collation.sql") },
    Migration { version: 9, name: "token_owners", sql: include_str!("../migrations/sqlite/0009_token_owners.sql") },
    Migration {
        version: 10,
        name: "authn_hardening",
        sql: include_str!("../migrations/sqlite/0010_authn_hardening.sql"),
    },
];

const POSTGRES_MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "init", sql: include_str!("../migrations/postgres/0001_init.sql") },
    Migration {
        version: 2,
        name: "audit_action_index",
        sql: include_str!("../migrations/postgres/0002_audit_action_index.sql"),
    },
    Migration { version: 3, name: "authn", sql: include_str!("../migrations/postgres/0003_authn.sql") },
    Migration { version: 4, name: "authz", sql: include_str!("../migrations/postgres/0004_authz.sql") },
    Migration { version: 5, name: "scim", sql: include_str!("../migrations/postgres/0005_scim.sql") },
    Migration { version: 6, name: "hr", sql: include_str!("../migrations/postgres/0006_hr.sql") },
    Migration { version: 7, name: "key_collation", sql: include_str!("../migrations/postgres/0007_key_collation.sql") },
    Migration { version: 9, name: "token_owners", sql: include_str!("../migrations/postgres/0009_token_owners.sql") },
    Migration {
        version: 10,
        name: "authn_hardening",
        sql: include_str!("../migrations/postgres/0010_authn_hardening.sql"),
    },
];

/// The database-specific half of the store. Two implementations: [`SqliteBackend`] and
/// [`PostgresBackend`].
pub trait Backend: Send + Sync + 'static {
    fn kind(&self) -> BackendKind;
    /// The database file, for a SQLite backend (verification reads it in-process).
    fn sqlite_file(&self) -> Option<&Path> {
        None
    }
    /// The database URL, for a PostgreSQL backend (LISTEN for other nodes' commits).
    fn postgres_url(&self) -> Option<&str> {
        None
    }
    /// Where the single writer takes its connection from.
    fn writer_pool(&self) -> &AnyPool;
    /// Where `Store::read` takes connections from.
    fn reader_pool(&self) -> &AnyPool;
    fn migrations(&self) -> &'static [Migration];
    /// Statement that opens a write transaction.
    fn begin_write(&self) -> &'static str;
    /// Statements that open a read-only snapshot and pin it (the snapshot starts at the first
    /// read on both databases).
    fn begin_snapshot(&self) -> &'static str;
    /// Statement run first in every write transaction to take the audit sequencer, if the
    /// backend needs one (SQLite's single writer connection already is the sequencer).
    fn sequencer_lock(&self) -> Option<&'static str>;
    /// Whether a failed statement poisons the whole transaction (PostgreSQL), so that
    /// statements that may fail on a constraint run inside their own savepoint.
    fn statement_savepoints(&self) -> bool;

    /// Applies the migrations this binary knows and the database has not seen.
    fn migrate(&self) -> BoxFuture<'_, Result<(), StoreError>>;
    fn close(&self) -> BoxFuture<'_, ()>;
}

fn install_drivers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(sqlx::any::install_default_drivers);
}

// ---------------------------------------------------------------------------------------------
// SQLite

/// Embedded store: `<data_dir>/wardkey.db` in WAL mode with `synchronous=FULL`, one writer
/// connection (its own pool of one, used only by the writer task) and a pool of readers.
pub struct SqliteBackend {
    path: PathBuf,
    writer: AnyPool,
    readers: AnyPool,
}

impl SqliteBackend {
    pub async fn connect(path: &Path, options: &StoreOptions, read_only: bool) -> Result<SqliteBackend, StoreError> {
        install_drivers();
        let path = std::path::absolute(path)
            .map_err(|e| StoreError::Invalid { field: "database_url", message: format!("bad path: {e}") })?;
        if !read_only && let Some(parent) = path.parent() {
            create_private_dir(parent)?;
        }
        if !read_only {
            create_private_file(&path)?;
        }
        let Some(path_str) = path.to_str() else {
            return Err(StoreError::Invalid { field: "database_url", message: "path is not UTF-8".into() });
        };
        let mode = if read_only { "ro" } else { "rwc" };
        let url = format!("sqlite://{}?mode={mode}", encode_path(path_str));
        let connect = AnyConnectOptions::from_str(&url)?;

        let writer = if read_only {
            None
        } else {
            Some(
                AnyPoolOptions::new()
                    .max_connections(1)
                    .min_connections(0)
                    .acquire_timeout(options.acquire_timeout)
                    // A SQLite connection is a file handle, not a socket that can die idle:
                    // sqlx's ping before each acquire is a round trip to the connection's
                    // worker thread that only adds latency (and, when the CPUs are busy, a
                    // wake-up to wait for).
                    .test_before_acquire(false)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // WAL first: the mode is a property of the file, set by the writer.
                            for pragma in [
                                "PRAGMA journal_mode = WAL",
                                "PRAGMA synchronous = FULL",
                                "PRAGMA foreign_keys = ON",
                                "PRAGMA busy_timeout = 10000",
                                // The writer walks five B-trees per audit row (table + four
                                // indexes); 64 MiB of page cache keeps them out of pread().
                                "PRAGMA cache_size = -65536",
                                // Fold the WAL back less often (every ~40 MiB instead of 4 MiB).
                                "PRAGMA wal_autocheckpoint = 10000",
                            ] {
                                sqlx::query(pragma).fetch_all(&mut *conn).await?;
                            }
                            Ok(())
                        })
                    })
                    .connect_with(connect.clone())
                    .await?,
            )
        };
        let readers = AnyPoolOptions::new()
            .max_connections(options.sqlite_readers.max(1))
            .min_connections(0)
            .acquire_timeout(options.acquire_timeout)
            .test_before_acquire(false)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    for pragma in ["PRAGMA foreign_keys = ON", "PRAGMA busy_timeout = 10000", "PRAGMA query_only = ON"]
                    {
                        sqlx::query(pragma).fetch_all(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(connect)
            .await?;
        // A read-only store has no writer; its "writer pool" is never used for writes.
        let writer = writer.unwrap_or_else(|| readers.clone());
        Ok(SqliteBackend { path, writer, readers })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Creates `dir` (and parents) readable by the owner only when it is new.
fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    if dir.as_os_str().is_empty() || dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| StoreError::Invalid {
        field: "data_dir",
        message: format!("cannot create {}: {e}", dir.display()),
    })
}

/// Creates the database file readable by its owner only (SQLite gives its -wal and -shm files
/// the same permissions). An existing file is left as it is.
fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Invalid {
            field: "database_url",
            message: format!("cannot create {}: {e}", path.display()),
        }),
    }
}

/// Percent-encodes what would end the path part of a `sqlite://` URL.
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3F"),
            '#' => out.push_str("%23"),
            ' ' => out.push_str("%20"),
            _ => out.push(c),
        }
    }
    out
}

impl Backend for SqliteBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Sqlite
    }
    fn sqlite_file(&self) -> Option<&Path> {
        Some(&self.path)
    }
    fn writer_pool(&self) -> &AnyPool {
        &self.writer
    }
    fn reader_pool(&self) -> &AnyPool {
        &self.readers
    }
    fn migrations(&self) -> &'static [Migration] {
        SQLITE_MIGRATIONS
    }
    fn begin_write(&self) -> &'static str {
        // Take the write lock at once: the writer never needs to upgrade a read lock.
        "BEGIN IMMEDIATE"
    }
    fn begin_snapshot(&self) -> &'static str {
        "BEGIN; SELECT COUNT(*) FROM meta"
    }
    fn sequencer_lock(&self) -> Option<&'static str> {
        None
    }
    fn statement_savepoints(&self) -> bool {
        false
    }

    fn migrate(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut conn = self.writer.acquire().await?;
            run_migrations(&mut conn, SQLITE_MIGRATIONS, "BEGIN IMMEDIATE").await
        })
    }
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.writer.close().await;
            self.readers.close().await;
        })
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// Scale-out store: one pool; the audit sequencer is a transaction-scoped advisory lock, so
/// several Wardkey nodes can share the database and still number events contiguously.
pub struct PostgresBackend {
    pool: AnyPool,
    /// Kept to open a LISTEN connection for other nodes' revisions.
    url: String,
}

/// Advisory-lock key space of Wardkey (first half of the two-int key); the second half is
/// derived from the schema, and advisory locks are per database, so parallel databases or
/// schemas never contend.
const PG_LOCK_SEQUENCER: &str =
    "SELECT count(*) FROM (SELECT pg_advisory_xact_lock(2037412197, hashtext(current_schema()))) AS l";
const PG_LOCK_MIGRATE: &str =
    "SELECT count(*) FROM (SELECT pg_advisory_lock(2037412198, hashtext(current_schema()))) AS l";
const PG_UNLOCK_MIGRATE: &str =
    "SELECT count(*) FROM (SELECT pg_advisory_unlock(2037412198, hashtext(current_schema()))) AS l";

impl PostgresBackend {
    pub async fn connect(url: &str, options: &StoreOptions, read_only: bool) -> Result<PostgresBackend, StoreError> {
        install_drivers();
        warn_unverified_tls(url);
        // `sslmode`, `sslrootcert`, `sslcert` and `sslkey` in the URL (or PGSSLMODE, …) are
        // honoured by sqlx's PostgreSQL driver, over rustls.
        let connect = AnyConnectOptions::from_str(url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(options.pg_max_connections.max(2))
            .min_connections(0)
            .acquire_timeout(options.acquire_timeout)
            // A connection is pinged before use only when it has sat idle for a while (after a
            // server restart or a network drop, that is where the dead ones are); one used
            // moments ago goes straight to its query. Under load this saves a round trip to
            // the database on every read, as connection pools commonly do.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for < PG_FRESH_CONNECTION {
                        return Ok(true);
                    }
                    // A failed ping drops the connection; the pool opens another.
                    Ok(sqlx::Connection::ping(conn).await.is_ok())
                })
            })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    // A prepared statement's generic plan is fixed when it is first chosen,
                    // often while a table is nearly empty, and is only replanned when the
                    // table is analysed. With autovacuum off (or behind), a primary-key
                    // lookup stayed a full scan of a partial index as `users` grew, and SCIM
                    // creates fell from 320/s to 50/s over 20k users. Custom plans cost tens
                    // of microseconds of planning per statement and follow the table's size.
                    sqlx::query("SET plan_cache_mode = force_custom_plan").execute(&mut *conn).await?;
                    if read_only {
                        sqlx::query("SET default_transaction_read_only = on").execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(connect)
            .await?;
        warn_without_autovacuum(&pool).await;
        Ok(PostgresBackend { pool, url: url.to_owned() })
    }
}

/// A database on another host reached without `sslmode=verify-full` (or `verify-ca`) can be
/// impersonated by anyone on the path: say so once at start. Loopback and Unix sockets are
/// left alone.
fn warn_unverified_tls(url: &str) {
    use sqlx::postgres::{PgConnectOptions, PgSslMode};
    let Ok(opts) = PgConnectOptions::from_str(url) else { return };
    let host = opts.get_host();
    let local = opts.get_socket().is_some()
        || host.starts_with('/')
        || host == "localhost"
        || host.trim_matches(|c| c == '[' || c == ']').parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !local && !matches!(opts.get_ssl_mode(), PgSslMode::VerifyFull | PgSslMode::VerifyCa) {
        tracing::warn!(
            host = %host,
            "the PostgreSQL server's certificate is not verified: add sslmode=verify-full&sslrootcert=<CA file> to the database URL"
        );
    }
}

/// A PostgreSQL connection used within this long is handed out without a ping.
const PG_FRESH_CONNECTION: Duration = Duration::from_millis(500);

/// Without autovacuum, dead row versions pile up and the planner's statistics go stale:
/// Wardkey still answers, but an operator should know why the database grows and slows.
async fn warn_without_autovacuum(pool: &AnyPool) {
    let on: Result<(String,), _> =
        sqlx::query_as("SELECT setting FROM pg_settings WHERE name = 'autovacuum'").fetch_one(pool).await;
    if let Ok((setting,)) = on
        && setting != "on"
    {
        tracing::warn!(
            autovacuum = %setting,
            "PostgreSQL autovacuum is off: tables will bloat and statistics go stale; turn it on (it is PostgreSQL's default) or schedule VACUUM ANALYZE"
        );
    }
}

impl Backend for PostgresBackend {
    fn postgres_url(&self) -> Option<&str> {
        Some(&self.url)
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Postgres
    }
    fn writer_pool(&self) -> &AnyPool {
        &self.pool
    }
    fn reader_pool(&self) -> &AnyPool {
        &self.pool
    }
    fn migrations(&self) -> &'static [Migration] {
        POSTGRES_MIGRATIONS
    }
    fn begin_write(&self) -> &'static str {
        "BEGIN"
    }
    fn begin_snapshot(&self) -> &'static str {
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT COUNT(*) FROM meta"
    }
    fn sequencer_lock(&self) -> Option<&'static str> {
        Some(PG_LOCK_SEQUENCER)
    }
    fn statement_savepoints(&self) -> bool {
        true
    }
    fn migrate(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await?;
            // Nodes starting together migrate one at a time.
            sqlx::query(PG_LOCK_MIGRATE).fetch_all(&mut *conn).await?;
            let result = run_migrations(&mut conn, POSTGRES_MIGRATIONS, "BEGIN").await;
            let unlock = sqlx::query(PG_UNLOCK_MIGRATE).fetch_all(&mut *conn).await;
            if unlock.is_err() {
                // Do not hand a connection holding the lock back to the pool.
                conn.close_on_drop();
            }
            result
        })
    }
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move { self.pool.close().await })
    }
}

// ---------------------------------------------------------------------------------------------
// Migrations: our own small runner, recorded in `wardkey_migrations` (version, name, checksum).

const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS wardkey_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at BIGINT NOT NULL
)";

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

fn mig_err(version: i64, e: impl std::fmt::Display) -> StoreError {
    StoreError::Migration(format!("migration {version}: {e}"))
}

async fn run_migrations(
    conn: &mut AnyConnection,
    migrations: &[Migration],
    begin: &'static str,
) -> Result<(), StoreError> {
    sqlx::raw_sql(CREATE_MIGRATIONS_TABLE).execute(&mut *conn).await.map_err(|e| mig_err(0, e))?;
    let rows = sqlx::query("SELECT version, checksum FROM wardkey_migrations ORDER BY version")
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| mig_err(0, e))?;
    let mut applied = Vec::with_capacity(rows.len());
    for row in rows {
        let version: i64 = row.try_get("version").map_err(|e| mig_err(0, e))?;
        let sum: String = row.try_get("checksum").map_err(|e| mig_err(version, e))?;
        applied.push((version, sum));
    }
    for (version, sum) in &applied {
        match migrations.iter().find(|m| m.version == *version) {
            None => {
                return Err(StoreError::Migration(format!(
                    "the database has schema version {version}, which this Wardkey does not know; upgrade Wardkey"
                )));
            }
            Some(m) if checksum(m.sql) != *sum => {
                return Err(mig_err(*version, "was changed after it was applied (checksum differs)"));
            }
            Some(_) => {}
        }
    }
    for m in migrations {
        if applied.iter().any(|(v, _)| *v == m.version) {
            continue;
        }
        tracing::info!(version = m.version, name = m.name, "applying database migration");
        sqlx::raw_sql(begin).execute(&mut *conn).await.map_err(|e| mig_err(m.version, e))?;
        let result = async {
            sqlx::raw_sql(m.sql).execute(&mut *conn).await?;
            sqlx::query("INSERT INTO wardkey_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)")
                .bind(m.version)
                .bind(m.name)
                .bind(checksum(m.sql))
                .bind(chrono::Utc::now().timestamp_micros())
                .execute(&mut *conn)
                .await?;
            sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
            Ok::<(), sqlx::Error>(())
        }
        .await;
        if let Err(e) = result {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
            return Err(mig_err(m.version, e));
        }
    }
    Ok(())
}
