//! The single writer: a task that owns the write connection, runs queued jobs in one
//! transaction per batch (group commit), each job inside its own savepoint, appends the audit
//! events each job queued right after it, commits durably, and only then answers.

use crate::audit_log::{self, PreparedEvent, StoredCheckpoint, TreeState};
use crate::conn::{Conn, truncate_micros};
use crate::{Backend, StoreError};
use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::future::BoxFuture;
use sqlx::Any;
use sqlx::pool::PoolConnection;
use std::ops::{Deref, DerefMut};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};
use wardkey_audit::{AuditDraft, LogSigner};
use wardkey_domain::Clock;

/// What a write job gets: the writer's connection inside the batch transaction (read methods
/// through `Deref` to [`Conn`]), the write methods, and the audit queue.
pub struct WriteTx {
    pub(crate) conn: Conn,
    pub(crate) drafts: Vec<AuditDraft>,
    pub(crate) now: DateTime<Utc>,
}

impl WriteTx {
    /// Queues an audit event; it is appended, in queue order, in the same transaction as the
    /// job's changes, and only if the job succeeds.
    pub fn audit(&mut self, draft: AuditDraft) {
        self.drafts.push(draft);
    }

    /// The job's time: the store clock when the job started, truncated to microseconds. The
    /// same for the whole job, and the time of its audit events.
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// Audit events queued so far by this job.
    pub fn queued_events(&self) -> usize {
        self.drafts.len()
    }
}

impl Deref for WriteTx {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

/// The result of a write: the job's value, the audit tree size after the job's last event (the
/// store revision) and the indices of the job's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed<T> {
    pub value: T,
    pub revision: u64,
    pub event_indices: Vec<u64>,
}

impl<T> Committed<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Committed<U> {
        Committed { value: f(self.value), revision: self.revision, event_indices: self.event_indices }
    }
}

/// How a finished job is told its fate: `Ok((revision, indices))` once committed, or the
/// store error that prevented it.
type Finish = Box<dyn FnOnce(Result<(u64, Vec<u64>), StoreError>) + Send>;

pub(crate) struct JobOutcome {
    ok: bool,
    finish: Finish,
}

type RunFn = Box<dyn for<'t> FnOnce(&'t mut WriteTx) -> BoxFuture<'t, JobOutcome> + Send>;

/// A type-erased write job. `abort` answers it without running it (store closing, or the
/// batch could not start); it and `run` share the reply channel.
pub(crate) struct Job {
    run: RunFn,
    abort: Box<dyn FnOnce(StoreError) + Send>,
    /// Jobs that only queue audit events write nothing of their own, so they need no
    /// savepoint to be undone (two statements fewer per event on the audit-only path).
    savepoint: bool,
    /// The one kind of write that commits without an audit event: session heartbeats
    /// (`last_seen_at`), made only by [`crate::Store::touch_sessions`]. They change no access,
    /// and auditing each would bury the log; sign-in, step-up, timeout and end are audited.
    heartbeat: bool,
}

type Reply<T, E> = Arc<Mutex<Option<oneshot::Sender<Result<Committed<T>, E>>>>>;

fn send<T, E>(reply: &Reply<T, E>, r: Result<Committed<T>, E>) {
    let sender = reply.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(s) = sender {
        // The caller may have gone away; the job still committed (or not) as reported.
        let _ = s.send(r);
    }
}

fn run_job<'t, T, E, F>(job: F, reply: Reply<T, E>, tx: &'t mut WriteTx) -> BoxFuture<'t, JobOutcome>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: for<'a> FnOnce(&'a mut WriteTx) -> BoxFuture<'a, Result<T, E>> + Send + 'static,
{
    Box::pin(async move {
        match job(tx).await {
            Ok(value) => JobOutcome {
                ok: true,
                finish: Box::new(move |r| {
                    let r = r
                        .map(|(revision, event_indices)| Committed { value, revision, event_indices })
                        .map_err(E::from);
                    send(&reply, r);
                }),
            },
            Err(e) => JobOutcome { ok: false, finish: Box::new(move |_| send(&reply, Err(e))) },
        }
    })
}

pub(crate) fn make_job<T, E, F>(job: F) -> (Job, oneshot::Receiver<Result<Committed<T>, E>>)
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: for<'a> FnOnce(&'a mut WriteTx) -> BoxFuture<'a, Result<T, E>> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let reply: Reply<T, E> = Arc::new(Mutex::new(Some(tx)));
    let reply2 = reply.clone();
    let run: RunFn = Box::new(move |wtx| run_job(job, reply, wtx));
    let abort = Box::new(move |e: StoreError| send(&reply2, Err(E::from(e))));
    (Job { run, abort, savepoint: true, heartbeat: false }, rx)
}

/// A session heartbeat job: updates `last_seen_at` and nothing else, with no audit event.
pub(crate) fn make_heartbeat_job(
    touches: Vec<(wardkey_domain::SessionId, chrono::DateTime<chrono::Utc>)>,
) -> (Job, oneshot::Receiver<Result<Committed<usize>, StoreError>>) {
    let (mut job, rx) = make_job(move |tx: &mut WriteTx| {
        Box::pin(async move {
            let mut n = 0;
            for (id, at) in touches {
                if tx.touch_session(id, at).await? {
                    n += 1;
                }
            }
            Ok::<usize, StoreError>(n)
        })
    });
    job.heartbeat = true;
    (job, rx)
}

/// A job that queues audit events and touches nothing else.
pub(crate) fn make_audit_job(drafts: Vec<AuditDraft>) -> (Job, oneshot::Receiver<Result<Committed<()>, StoreError>>) {
    let (mut job, rx) = make_job(move |tx: &mut WriteTx| {
        Box::pin(async move {
            for d in drafts {
                tx.audit(d);
            }
            Ok::<(), StoreError>(())
        })
    });
    job.savepoint = false;
    (job, rx)
}

pub(crate) enum Cmd {
    Job(Job),
    Checkpoint(oneshot::Sender<Result<Option<StoredCheckpoint>, StoreError>>),
    /// Finish what is queued, write a final checkpoint if a signer is set, stop.
    Close(oneshot::Sender<()>),
}

/// Counters of the writer (for metrics and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Transactions committed by the writer (batches with at least one committed job).
    pub commits: u64,
    /// Jobs committed.
    pub jobs_committed: u64,
    /// Jobs rolled back (job error, no audit event, append failure, failed commit).
    pub jobs_failed: u64,
    /// Audit events appended and committed.
    pub events: u64,
    /// Largest number of jobs in one transaction.
    pub max_batch: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Stats {
    commits: AtomicU64,
    jobs_committed: AtomicU64,
    jobs_failed: AtomicU64,
    events: AtomicU64,
    max_batch: AtomicU64,
}

impl Stats {
    pub(crate) fn snapshot(&self) -> WriteStats {
        WriteStats {
            commits: self.commits.load(Ordering::Relaxed),
            jobs_committed: self.jobs_committed.load(Ordering::Relaxed),
            jobs_failed: self.jobs_failed.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            max_batch: self.max_batch.load(Ordering::Relaxed),
        }
    }
    fn failed(&self, n: usize) {
        self.jobs_failed.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// State shared by the store handle and the writer task.
pub(crate) struct Shared {
    pub backend: Box<dyn Backend>,
    pub clock: Arc<dyn Clock>,
    pub signer: Mutex<Option<Arc<LogSigner>>>,
    pub max_batch: usize,
    pub stats: Stats,
    /// The latest revision (audit tree size) known to this process: its own commits, and on
    /// PostgreSQL other nodes' commits heard through LISTEN.
    pub revision: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    pub(crate) fn signer(&self) -> Option<Arc<LogSigner>> {
        self.signer.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    tree: TreeState,
    /// Events of the current batch, written with multi-row INSERTs just before COMMIT.
    pending: Vec<PreparedEvent>,
}

async fn exec(conn: &mut PoolConnection<Any>, sql: &'static str) -> Result<(), StoreError> {
    sqlx::raw_sql(sql).execute(&mut **conn).await?;
    Ok(())
}

impl Writer {
    pub(crate) fn new(shared: Arc<Shared>) -> Writer {
        Writer { shared, tree: TreeState::default(), pending: Vec::new() }
    }

    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let mut pending: Option<Cmd> = None;
        loop {
            let cmd = match pending.take() {
                Some(c) => c,
                None => match rx.recv().await {
                    Some(c) => c,
                    None => break,
                },
            };
            match cmd {
                Cmd::Job(first) => {
                    let mut batch = vec![first];
                    while batch.len() < self.shared.max_batch {
                        match rx.try_recv() {
                            Ok(Cmd::Job(j)) => batch.push(j),
                            Ok(other) => {
                                pending = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.run_batch(batch).await;
                }
                Cmd::Checkpoint(reply) => {
                    let r = self.checkpoint().await;
                    let _ = reply.send(r);
                }
                Cmd::Close(ack) => {
                    rx.close();
                    while let Ok(cmd) = rx.try_recv() {
                        match cmd {
                            Cmd::Job(j) => (j.abort)(StoreError::Closed),
                            Cmd::Checkpoint(reply) => {
                                let _ = reply.send(Err(StoreError::Closed));
                            }
                            Cmd::Close(other) => {
                                let _ = other.send(());
                            }
                        }
                    }
                    if self.shared.signer().is_some()
                        && let Err(e) = self.checkpoint().await
                    {
                        tracing::warn!(error = %e, "final audit checkpoint failed");
                    }
                    let _ = ack.send(());
                    return;
                }
            }
        }
    }

    /// BEGIN, take the sequencer, and bring the in-memory tree in line with the table (another
    /// node, or another process on the same SQLite file, may have appended).
    async fn begin(&mut self) -> Result<PoolConnection<Any>, StoreError> {
        let backend = &self.shared.backend;
        let mut conn = backend.writer_pool().acquire().await?;
        exec(&mut conn, backend.begin_write()).await.inspect_err(|_| conn.close_on_drop())?;
        let synced = async {
            if let Some(lock) = backend.sequencer_lock() {
                sqlx::query(lock).fetch_all(&mut *conn).await?;
            }
            audit_log::stored_tree_size(&mut conn).await
        }
        .await;
        match synced {
            Ok(size) => {
                if size != self.tree.size {
                    self.tree.size = size;
                    self.tree.cache.clear();
                }
                Ok(conn)
            }
            Err(e) => {
                self.rollback(&mut conn).await;
                Err(e)
            }
        }
    }

    async fn rollback(&mut self, conn: &mut PoolConnection<Any>) {
        if exec(conn, "ROLLBACK").await.is_err() {
            conn.close_on_drop();
        }
    }

    /// Forget the in-memory tree; the next batch re-reads it.
    fn reset_tree(&mut self) {
        self.tree.size = 0;
        self.tree.cache.clear();
    }

    async fn run_batch(&mut self, batch: Vec<Job>) {
        let conn = match self.begin().await {
            Ok(c) => c,
            Err(e) => {
                let msg = e.to_string();
                tracing::error!(error = %msg, "cannot start a write transaction");
                self.shared.stats.failed(batch.len());
                for j in batch {
                    (j.abort)(StoreError::Database(msg.clone()));
                }
                return;
            }
        };
        let mut wtx = WriteTx {
            conn: Conn {
                db: conn,
                kind: self.shared.backend.kind(),
                clock: self.shared.clock.clone(),
                fixed_now: None,
                stmt_savepoints: self.shared.backend.statement_savepoints(),
            },
            drafts: Vec::new(),
            now: truncate_micros(self.shared.clock.now()),
        };
        let mut committed: Vec<(Finish, u64, Vec<u64>)> = Vec::with_capacity(batch.len());
        let mut jobs = batch.into_iter();
        let mut broken: Option<String> = None;
        for job in jobs.by_ref() {
            match self.run_one(&mut wtx, job).await {
                Ok(Some(done)) => committed.push(done),
                Ok(None) => {}
                Err(e) => {
                    broken = Some(e.to_string());
                    break;
                }
            }
        }
        let mut conn = wtx.conn.db;
        let pending = std::mem::take(&mut self.pending);
        if broken.is_none()
            && !pending.is_empty()
            && let Err(e) = audit_log::insert_prepared(
                &mut conn,
                &pending,
                self.shared.backend.kind() == crate::BackendKind::Postgres,
            )
            .await
        {
            broken = Some(format!("appending audit events failed: {e}"));
        }
        drop(pending);
        if let Some(msg) = broken {
            // The transaction is in an unknown state: give up the whole batch.
            tracing::error!(error = %msg, "write transaction broken; rolling back the batch");
            self.rollback(&mut conn).await;
            conn.close_on_drop();
            self.reset_tree();
            self.shared.stats.failed(committed.len() + jobs.len());
            for (finish, _, _) in committed {
                finish(Err(StoreError::Database(msg.clone())));
            }
            for j in jobs {
                (j.abort)(StoreError::Database(msg.clone()));
            }
            return;
        }
        if committed.is_empty() {
            self.rollback(&mut conn).await;
            return;
        }
        if self.shared.backend.kind() == crate::BackendKind::Postgres {
            // Delivered at COMMIT (never for a rolled-back batch): other nodes catch up.
            let notify = sqlx::query("SELECT pg_notify('wardkey_revision', $1)")
                .bind(self.tree.size.to_string())
                .execute(&mut *conn)
                .await;
            if let Err(e) = notify {
                tracing::warn!(error = %e, "pg_notify failed; other nodes will catch up by polling");
            }
        }
        match exec(&mut conn, "COMMIT").await {
            Ok(()) => {
                self.tree.cache.retain_frontier(self.tree.size);
                let size = self.tree.size;
                self.shared.revision.send_if_modified(|r| {
                    if size > *r {
                        *r = size;
                        true
                    } else {
                        false
                    }
                });
                let st = &self.shared.stats;
                st.commits.fetch_add(1, Ordering::Relaxed);
                st.jobs_committed.fetch_add(committed.len() as u64, Ordering::Relaxed);
                st.events.fetch_add(committed.iter().map(|c| c.2.len() as u64).sum(), Ordering::Relaxed);
                st.max_batch.fetch_max(committed.len() as u64, Ordering::Relaxed);
                for (finish, revision, indices) in committed {
                    finish(Ok((revision, indices)));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                tracing::error!(error = %msg, "commit failed");
                self.rollback(&mut conn).await;
                conn.close_on_drop();
                self.reset_tree();
                self.shared.stats.failed(committed.len());
                for (finish, _, _) in committed {
                    finish(Err(StoreError::Database(msg.clone())));
                }
            }
        }
    }

    /// Runs one job in its savepoint. `Ok(Some(..))`: the job and its events are in the
    /// transaction, to be acknowledged after COMMIT. `Ok(None)`: the job failed and was rolled
    /// back to its savepoint (and told). `Err`: the transaction itself is broken.
    async fn run_one(&mut self, wtx: &mut WriteTx, job: Job) -> Result<Option<(Finish, u64, Vec<u64>)>, StoreError> {
        let now = truncate_micros(self.shared.clock.now());
        wtx.now = now;
        wtx.conn.fixed_now = Some(now);
        wtx.drafts.clear();
        let savepoint = job.savepoint;
        if savepoint && let Err(e) = exec(&mut wtx.conn.db, "SAVEPOINT wk_job").await {
            self.shared.stats.failed(1);
            (job.abort)(StoreError::Database(e.to_string()));
            return Err(e);
        }
        let Job { run, abort, heartbeat, .. } = job;
        let outcome = AssertUnwindSafe(run(wtx)).catch_unwind().await;
        let failure: (Option<Finish>, StoreError) = match outcome {
            Err(_) => {
                tracing::error!("write job panicked; rolled back");
                abort(StoreError::Database("write job panicked".into()));
                (None, StoreError::Database("write job panicked".into()))
            }
            Ok(JobOutcome { ok: false, finish }) => (Some(finish), StoreError::Closed),
            Ok(JobOutcome { ok: true, finish }) if wtx.drafts.is_empty() && heartbeat => {
                if savepoint && let Err(e) = exec(&mut wtx.conn.db, "RELEASE SAVEPOINT wk_job").await {
                    self.shared.stats.failed(1);
                    finish(Err(StoreError::Database(e.to_string())));
                    return Err(e);
                }
                return Ok(Some((finish, self.tree.size, Vec::new())));
            }
            Ok(JobOutcome { ok: true, finish }) if wtx.drafts.is_empty() => {
                tracing::error!("write job queued no audit event; rolled back");
                (Some(finish), StoreError::NoAuditEvent)
            }
            Ok(JobOutcome { ok: true, finish }) => {
                let start = self.tree.size;
                let pending_start = self.pending.len();
                let drafts = std::mem::take(&mut wtx.drafts);
                let mut indices = Vec::with_capacity(drafts.len());
                let mut err = None;
                for d in drafts {
                    match self.tree.prepare(&mut wtx.conn.db, now, d).await {
                        Ok(p) => {
                            indices.push(start + indices.len() as u64);
                            self.pending.push(p);
                        }
                        Err(e) => {
                            err = Some(e);
                            break;
                        }
                    }
                }
                match err {
                    None => {
                        if savepoint && let Err(e) = exec(&mut wtx.conn.db, "RELEASE SAVEPOINT wk_job").await {
                            self.shared.stats.failed(1);
                            finish(Err(StoreError::Database(e.to_string())));
                            return Err(e);
                        }
                        return Ok(Some((finish, self.tree.size, indices)));
                    }
                    Some(e) => {
                        tracing::error!(error = %e, "appending audit events failed; job rolled back");
                        self.pending.truncate(pending_start);
                        self.tree.truncate(start);
                        (Some(finish), e)
                    }
                }
            }
        };
        let undo = async {
            if !savepoint {
                return Ok(());
            }
            exec(&mut wtx.conn.db, "ROLLBACK TO SAVEPOINT wk_job").await?;
            exec(&mut wtx.conn.db, "RELEASE SAVEPOINT wk_job").await
        }
        .await;
        self.shared.stats.failed(1);
        if let (Some(finish), e) = failure {
            finish(Err(e));
        }
        undo.map(|()| None)
    }

    async fn checkpoint(&mut self) -> Result<Option<StoredCheckpoint>, StoreError> {
        let Some(signer) = self.shared.signer() else {
            return Err(StoreError::Invalid { field: "signer", message: "no log signer is set".into() });
        };
        let mut conn = self.begin().await?;
        let now = self.shared.clock.now();
        match audit_log::write_checkpoint(&mut conn, &mut self.tree, &signer, now).await {
            Ok(Some(cp)) => match exec(&mut conn, "COMMIT").await {
                Ok(()) => Ok(Some(cp)),
                Err(e) => {
                    self.rollback(&mut conn).await;
                    conn.close_on_drop();
                    Err(e)
                }
            },
            Ok(None) => {
                self.rollback(&mut conn).await;
                Ok(None)
            }
            Err(e) => {
                self.rollback(&mut conn).await;
                self.reset_tree();
                Err(e)
            }
        }
    }
}
