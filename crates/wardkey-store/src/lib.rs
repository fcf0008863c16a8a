//! Wardkey's store: relational state of the directory and the access model, and the
//! tamper-evident audit log, in SQLite (embedded) or PostgreSQL (scale-out).
//!
//! - **One body of portable SQL** through sqlx's `Any` driver; the database-specific half is the
//!   [`Backend`] trait with two implementations, [`SqliteBackend`] and [`PostgresBackend`]
//!   (connecting, pools, migrations, how a write transaction begins, the audit sequencer).
//! - **One write path**: [`Store::write`] runs a job on the single writer inside a transaction,
//!   appends the audit events the job queued in the same transaction, commits durably, and only
//!   then returns. Jobs queued together share one transaction (group commit), each inside its
//!   own savepoint, so a failing job leaves the others alone.
//! - **Reads** go through [`Store::read`] ([`ReadTx`]); inside a job the same read methods are
//!   on [`WriteTx`]. Both dereference to [`Conn`], where the read methods live.

mod access;
mod audit_log;
mod authn;
mod backend;
mod conn;
mod depth;
mod directory;
mod error;
mod hr;
mod policy;
mod scim;
mod tokens;
mod writer;

pub use access::{GrantQuery, MAX_RESOURCE_DEPTH, ResourceQuery};
pub use audit_log::{AuditQuery, MAX_AUDIT_PAGE, StoredCheckpoint};
pub use authn::{FactorSecret, SessionAdvance, SessionQuery, SessionWithPending};
pub use backend::{Backend, BackendKind, Migration, PostgresBackend, SqliteBackend, StoreOptions};
pub use conn::{Conn, MAX_PAGE, Page, ReadTx};
pub use directory::UserQuery;
pub use error::StoreError;
pub use hr::{HrImportRecord, ReviewItem};
pub use scim::{ScimGroupRef, ScimGroupRow, ScimMember, ScimPage, ScimUserRow};
pub use writer::{Committed, WriteStats, WriteTx};

use futures::future::BoxFuture;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use wardkey_audit::{AuditDraft, LogSigner, LogVerifier, VerifyFailure, VerifyReport};
use wardkey_domain::{Clock, SystemClock};
use writer::{Cmd, Shared, Writer};

/// File name of the SQLite database inside the data directory.
pub const SQLITE_FILE: &str = "wardkey.db";

/// Handle to the store. Cheap to clone; all clones share the pools and the writer.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    /// None for a read-only store.
    queue: Option<mpsc::Sender<Cmd>>,
    writer: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

enum Target {
    Sqlite(PathBuf),
    Postgres(String),
}

fn parse_url(url: &str) -> Result<Target, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Target::Postgres(url.to_owned()));
    }
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let path = rest.split_once('?').map_or(rest, |(p, _)| p);
        if path.is_empty() || path == ":memory:" {
            return Err(StoreError::Invalid {
                field: "database_url",
                message: "a SQLite URL must name a database file".into(),
            });
        }
        return Ok(Target::Sqlite(PathBuf::from(path)));
    }
    Err(StoreError::Invalid { field: "database_url", message: "expected sqlite://<path> or postgres://...".into() })
}

impl Store {
    /// Opens (creating if missing) and migrates the database at `url`:
    /// `sqlite:///abs/path/wardkey.db`, `sqlite://relative.db` or `postgres://...`.
    pub async fn open(url: &str, clock: Arc<dyn Clock>) -> Result<Store, StoreError> {
        Store::open_with(url, clock, StoreOptions::default()).await
    }

    /// [`Store::open`] with tuning options.
    pub async fn open_with(url: &str, clock: Arc<dyn Clock>, options: StoreOptions) -> Result<Store, StoreError> {
        let backend: Box<dyn Backend> = match parse_url(url)? {
            Target::Sqlite(path) => Box::new(SqliteBackend::connect(&path, &options, false).await?),
            Target::Postgres(url) => Box::new(PostgresBackend::connect(&url, &options, false).await?),
        };
        Store::start(backend, clock, options).await
    }

    /// Opens `<data_dir>/wardkey.db`, creating the directory (mode 0700) if missing.
    pub async fn open_sqlite_dir(data_dir: &Path, clock: Arc<dyn Clock>) -> Result<Store, StoreError> {
        let options = StoreOptions::default();
        let backend = SqliteBackend::connect(&data_dir.join(SQLITE_FILE), &options, false).await?;
        Store::start(Box::new(backend), clock, options).await
    }

    /// Opens an existing database read-only, without migrating, for `wardkey audit verify`
    /// and reports. Writes fail with [`StoreError::ReadOnly`].
    pub async fn open_for_verify(url: &str) -> Result<Store, StoreError> {
        let options = StoreOptions::default();
        let backend: Box<dyn Backend> = match parse_url(url)? {
            Target::Sqlite(path) => {
                if !path.exists() {
                    return Err(StoreError::Invalid {
                        field: "database_url",
                        message: format!("{} does not exist", path.display()),
                    });
                }
                Box::new(SqliteBackend::connect(&path, &options, true).await?)
            }
            Target::Postgres(url) => Box::new(PostgresBackend::connect(&url, &options, true).await?),
        };
        let shared = Arc::new(Shared {
            backend,
            clock: Arc::new(SystemClock),
            signer: std::sync::Mutex::new(None),
            max_batch: options.max_batch,
            stats: Default::default(),
            revision: tokio::sync::watch::Sender::new(0),
        });
        Ok(Store { inner: Arc::new(Inner { shared, queue: None, writer: tokio::sync::Mutex::new(None) }) })
    }

    /// Migrates and starts the writer task over an already connected backend.
    pub async fn start(
        backend: Box<dyn Backend>,
        clock: Arc<dyn Clock>,
        options: StoreOptions,
    ) -> Result<Store, StoreError> {
        backend.migrate().await?;
        directory::backfill_username_skeletons(backend.writer_pool()).await?;
        let shared = Arc::new(Shared {
            backend,
            clock,
            signer: std::sync::Mutex::new(None),
            max_batch: options.max_batch.max(1),
            stats: Default::default(),
            revision: tokio::sync::watch::Sender::new(0),
        });
        let (tx, rx) = mpsc::channel(options.queue_depth.max(1));
        let handle = tokio::spawn(Writer::new(shared.clone()).run(rx));
        let store =
            Store { inner: Arc::new(Inner { shared, queue: Some(tx), writer: tokio::sync::Mutex::new(Some(handle)) }) };
        let size = store.read().await?.audit_tree_size().await?;
        store.note_revision(size);
        Ok(store)
    }

    pub fn backend(&self) -> BackendKind {
        self.inner.shared.backend.kind()
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.shared.clock
    }

    async fn submit(&self, cmd: Cmd) -> Result<(), StoreError> {
        let Some(queue) = &self.inner.queue else {
            return Err(StoreError::ReadOnly);
        };
        queue.send(cmd).await.map_err(|_| StoreError::Closed)
    }

    /// THE write path. Runs `job` on the single writer inside a transaction, appends the audit
    /// events it queued ([`WriteTx::audit`]) in the same transaction, commits durably, and
    /// only then returns. If the job fails, or queued no event ([`StoreError::NoAuditEvent`]),
    /// or its events cannot be appended, nothing of it is written.
    ///
    /// Jobs waiting together are committed in one transaction (group commit), each inside its
    /// own savepoint. A job that was queued runs even if the caller stops waiting.
    pub async fn write<T, E, F>(&self, job: F) -> Result<Committed<T>, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: for<'t> FnOnce(&'t mut WriteTx) -> BoxFuture<'t, Result<T, E>> + Send + 'static,
    {
        let (job, rx) = writer::make_job(job);
        self.submit(Cmd::Job(job)).await.map_err(E::from)?;
        match rx.await {
            Ok(r) => r,
            Err(_) => Err(E::from(StoreError::Database("the write job was dropped before it finished".into()))),
        }
    }

    /// Appends audit events that go with no state change (e.g. an authorization denial),
    /// through the same durable path.
    pub async fn append_audit(&self, drafts: Vec<AuditDraft>) -> Result<Committed<()>, StoreError> {
        if drafts.is_empty() {
            return Err(StoreError::NoAuditEvent);
        }
        let (job, rx) = writer::make_audit_job(drafts);
        self.submit(Cmd::Job(job)).await?;
        match rx.await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Database("the write job was dropped before it finished".into())),
        }
    }

    /// Records session activity (`last_seen_at`), the one write without an audit event: a
    /// heartbeat changes no access. Sessions that ended are left alone; returns how many moved.
    pub async fn touch_sessions(
        &self,
        touches: Vec<(wardkey_domain::SessionId, chrono::DateTime<chrono::Utc>)>,
    ) -> Result<Committed<usize>, StoreError> {
        let (job, rx) = writer::make_heartbeat_job(touches);
        self.submit(Cmd::Job(job)).await?;
        match rx.await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Database("the write job was dropped before it finished".into())),
        }
    }

    /// Whether [`Store::close`] ran (background followers stop then).
    pub fn is_closed(&self) -> bool {
        self.inner.queue.as_ref().is_none_or(|q| q.is_closed())
    }

    /// Watches the latest revision this process knows of: its own commits at once, other
    /// nodes' after [`Store::listen_for_other_nodes`] (PostgreSQL). Readers of the store see a
    /// revision's data once the watch shows it.
    pub fn revisions(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.shared.revision.subscribe()
    }

    /// Raises the known revision (e.g. after reading the tree size at start-up).
    pub fn note_revision(&self, revision: u64) {
        self.inner.shared.revision.send_if_modified(|r| {
            if revision > *r {
                *r = revision;
                true
            } else {
                false
            }
        });
    }

    /// On PostgreSQL, listens for commits of other Wardkey nodes on the same database
    /// (`LISTEN wardkey_revision`) and feeds them to [`Store::revisions`]. Reconnects after
    /// errors; stops when the store is dropped. A no-op on SQLite (one process writes).
    pub fn listen_for_other_nodes(&self) {
        let Some(url) = self.inner.shared.backend.postgres_url().map(str::to_owned) else {
            return;
        };
        let weak = Arc::downgrade(&self.inner.shared);
        tokio::spawn(async move {
            loop {
                let mut listener = match sqlx::postgres::PgListener::connect(&url).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "LISTEN connection failed; retrying");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        if weak.strong_count() == 0 {
                            return;
                        }
                        continue;
                    }
                };
                if let Err(e) = listener.listen("wardkey_revision").await {
                    tracing::warn!(error = %e, "LISTEN failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
                loop {
                    let received = tokio::time::timeout(std::time::Duration::from_secs(5), listener.recv()).await;
                    let Some(shared) = weak.upgrade() else { return };
                    match received {
                        Ok(Ok(n)) => {
                            if let Ok(rev) = n.payload().parse::<u64>() {
                                shared.revision.send_if_modified(|r| {
                                    if rev > *r {
                                        *r = rev;
                                        true
                                    } else {
                                        false
                                    }
                                });
                            }
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
                            break;
                        }
                        Err(_) => {} // idle; check the store is still alive
                    }
                }
            }
        });
    }

    /// A pooled reader connection (each statement sees the latest commit).
    pub async fn read(&self) -> Result<ReadTx, StoreError> {
        let shared = &self.inner.shared;
        let db = shared.backend.reader_pool().acquire().await?;
        Ok(ReadTx {
            conn: Conn {
                db,
                kind: shared.backend.kind(),
                clock: shared.clock.clone(),
                fixed_now: None,
                stmt_savepoints: shared.backend.statement_savepoints(),
            },
            in_tx: false,
        })
    }

    /// A reader inside a read-only transaction: all its reads see one consistent snapshot,
    /// including `audit_tree_size` (the revision the data is at). Call [`ReadTx::end`] when
    /// done. For rebuilding in-memory indexes.
    pub async fn read_snapshot(&self) -> Result<ReadTx, StoreError> {
        let mut r = self.read().await?;
        let begin = self.inner.shared.backend.begin_snapshot();
        r.in_tx = true;
        sqlx::raw_sql(begin).execute(r.conn.ex()).await?;
        Ok(r)
    }

    /// Counters of the writer since the store was opened.
    pub fn write_stats(&self) -> WriteStats {
        self.inner.shared.stats.snapshot()
    }

    /// Sets the key [`Store::checkpoint_now`] (and `close`) sign checkpoints with.
    pub fn set_signer(&self, signer: LogSigner) {
        *self.inner.shared.signer.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(signer));
    }

    /// If the log grew since the last checkpoint: computes the root, signs it and appends the
    /// checkpoint. `None` if there was nothing new to sign. Needs a signer.
    pub async fn checkpoint_now(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.submit(Cmd::Checkpoint(tx)).await?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Re-computes the whole Merkle tree from the event rows (streamed in index order) and
    /// checks every signed checkpoint against it. The failure names the first index at fault.
    pub async fn verify_audit(&self, verifier: &LogVerifier) -> Result<VerifyReport, VerifyFailure> {
        self.verify_audit_trusted(verifier, None).await
    }

    /// [`Store::verify_audit`], then compares the store with a checkpoint kept outside it (a
    /// witness copy, opened with the same key): fails when the store is behind it (truncation,
    /// rollback) or its events give another root at that size (a fork).
    pub async fn verify_audit_trusted(
        &self,
        verifier: &LogVerifier,
        trusted: Option<&wardkey_audit::Checkpoint>,
    ) -> Result<VerifyReport, VerifyFailure> {
        let mut conn = self
            .inner
            .shared
            .backend
            .reader_pool()
            .acquire()
            .await
            .map_err(|e| VerifyFailure { index: 0, reason: format!("cannot connect to the database: {e}") })?;
        if let Some(path) = self.inner.shared.backend.sqlite_file() {
            drop(conn);
            let (path, verifier, trusted) = (path.to_owned(), verifier.clone(), trusted.cloned());
            return tokio::task::spawn_blocking(move || {
                audit_log::verify_sqlite_file(&path, &verifier, trusted.as_ref())
            })
            .await
            .unwrap_or_else(|e| Err(VerifyFailure { index: 0, reason: format!("verification task failed: {e}") }));
        }
        audit_log::verify(&mut conn, verifier, trusted).await
    }

    /// Finishes the queued writes, writes a final checkpoint if a signer is set, stops the
    /// writer and closes the pools (waiting for readers still holding a connection to drop
    /// it). Later writes fail with [`StoreError::Closed`].
    pub async fn close(&self) {
        let mut writer = self.inner.writer.lock().await;
        if let Some(handle) = writer.take() {
            let (tx, rx) = oneshot::channel();
            if self.submit(Cmd::Close(tx)).await.is_ok() {
                let _ = rx.await;
            }
            let _ = handle.await;
        }
        self.inner.shared.backend.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert!(
            matches!(parse_url("sqlite:///tmp/x/wardkey.db"), Ok(Target::Sqlite(p)) if p == Path::new("/tmp/x/wardkey.db"))
        );
        assert!(matches!(parse_url("sqlite://rel.db"), Ok(Target::Sqlite(p)) if p == Path::new("rel.db")));
        assert!(matches!(parse_url("sqlite:rel.db?mode=rwc"), Ok(Target::Sqlite(p)) if p == Path::new("rel.db")));
        assert!(matches!(parse_url("postgres://u@h/db"), Ok(Target::Postgres(_))));
        assert!(matches!(parse_url("postgresql://u@h/db"), Ok(Target::Postgres(_))));
        assert!(parse_url("sqlite::memory:").is_err());
        assert!(parse_url("mysql://x").is_err());
    }
}
