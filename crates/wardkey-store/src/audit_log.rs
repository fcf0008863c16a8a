//! The audit log in the database: appending events with their Merkle hashes, reading events,
//! checkpoints and proofs, and streaming verification.

use crate::StoreError;
use crate::conn::{Arg, Conn, Filter, RowExt, micros, truncate_micros};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe};
use wardkey_audit::{
    AuditDraft, AuditEvent, Checkpoint, Hash, HashCache, HashExt, LogVerifier, Outcome, TreeVerifier, VerifyFailure,
    VerifyReport, append_hashes, encode_hashes, indices_for_consistency, indices_for_inclusion, indices_for_root,
    records_for_indices,
};

/// Filters of [`Conn::audit_events`]; all optional, combined with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub target: Option<String>,
    pub action: Option<String>,
    /// Events at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Events strictly before this time.
    pub until: Option<DateTime<Utc>>,
}

/// A signed checkpoint as stored: tree size, root, signing time and the signed note.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub root: Hash,
    pub time: DateTime<Utc>,
    /// The signed note (C2SP checkpoint), as `LogSigner::sign_checkpoint` made it.
    pub note: String,
}

/// Most events one `audit_events` call returns.
pub const MAX_AUDIT_PAGE: u32 = 10_000;

macro_rules! event_cols {
    () => {
        "idx, time, actor, action, target, outcome, reason, source_ip, request_id, approver, request_ref, details"
    };
}

fn u64_of(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::corrupt(format!("{what} {v} is negative")))
}

fn i64_of(v: u64, field: &'static str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Invalid { field, message: "out of range".into() })
}

pub(crate) fn event_from_row(r: &AnyRow) -> Result<AuditEvent, StoreError> {
    let outcome = r.text("outcome")?;
    let details = r.text("details")?;
    Ok(AuditEvent {
        index: u64_of(r.int("idx")?, "idx")?,
        time: r.ts("time")?,
        draft: AuditDraft {
            actor: r.text("actor")?,
            action: r.text("action")?,
            target: r.opt_text("target")?,
            outcome: Outcome::parse(&outcome).map_err(|e| StoreError::corrupt(format!("outcome: {e}")))?,
            reason: r.opt_text("reason")?,
            source_ip: r.opt_text("source_ip")?,
            request_id: r.opt_text("request_id")?,
            approver: r.opt_text("approver")?,
            request_ref: r.opt_text("request_ref")?,
            details: serde_json::from_str(&details).map_err(|e| StoreError::corrupt(format!("details: {e}")))?,
        },
    })
}

fn checkpoint_from_row(r: &AnyRow) -> Result<StoredCheckpoint, StoreError> {
    Ok(StoredCheckpoint {
        size: u64_of(r.int("size")?, "checkpoint size")?,
        root: Hash::from_slice(&r.bytes("root")?).map_err(|e| StoreError::corrupt(format!("root: {e}")))?,
        time: r.ts("time")?,
        note: r.text("note")?,
    })
}

/// Makes a draft store and re-read as exactly the same bytes: NUL (which PostgreSQL text
/// cannot hold) becomes U+FFFD, and `details` goes through its JSON text form once.
pub(crate) fn normalise_draft(mut d: AuditDraft) -> Result<(AuditDraft, String), StoreError> {
    fn clean(s: &mut String) {
        if s.contains('\0') {
            *s = s.replace('\0', "\u{FFFD}");
        }
    }
    fn clean_opt(s: &mut Option<String>) {
        if let Some(s) = s {
            clean(s);
        }
    }
    clean(&mut d.actor);
    clean(&mut d.action);
    clean_opt(&mut d.target);
    clean_opt(&mut d.reason);
    clean_opt(&mut d.source_ip);
    clean_opt(&mut d.request_id);
    clean_opt(&mut d.approver);
    clean_opt(&mut d.request_ref);
    let text = serde_json::to_string(&d.details)
        .map_err(|e| StoreError::Invalid { field: "details", message: format!("not encodable: {e}") })?;
    // Only floats can read back differently from how they were written; skip the parse (a
    // tree of allocations per event) when there are none.
    if has_float(&d.details) {
        d.details = serde_json::from_str(&text)
            .map_err(|e| StoreError::Invalid { field: "details", message: format!("does not round-trip: {e}") })?;
    }
    Ok((d, text))
}

fn has_float(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Number(n) => n.is_f64(),
        serde_json::Value::Array(a) => a.iter().any(has_float),
        serde_json::Value::Object(o) => o.values().any(has_float),
        _ => false,
    }
}

/// Tree size = next index, read from the table.
pub(crate) async fn stored_tree_size(conn: &mut AnyConnection) -> Result<u64, StoreError> {
    let row = sqlx::query("SELECT COALESCE(MAX(idx) + 1, 0) AS n FROM audit_events").fetch_one(conn).await?;
    u64_of(row.int("n")?, "tree size")
}

/// Loads the hashes blobs of `records` into `cache`.
pub(crate) async fn load_records(
    conn: &mut AnyConnection,
    cache: &mut HashCache,
    records: &[u64],
) -> Result<(), StoreError> {
    for chunk in records.chunks(500) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!("SELECT idx, hashes FROM audit_events WHERE idx IN ({})", placeholders.join(", "));
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for &n in chunk {
            q = q.bind(i64_of(n, "index")?);
        }
        let rows = q.fetch_all(&mut *conn).await?;
        if rows.len() != chunk.len() {
            return Err(StoreError::Database(format!(
                "audit log rows missing: wanted records {chunk:?}, found {}",
                rows.len()
            )));
        }
        for r in rows {
            let n = u64_of(r.int("idx")?, "idx")?;
            cache.insert_record_blob(n, &r.bytes("hashes")?)?;
        }
    }
    Ok(())
}

/// Makes sure `cache` holds the stored hashes at `indices`.
pub(crate) async fn ensure_indices(
    conn: &mut AnyConnection,
    cache: &mut HashCache,
    indices: &[u64],
) -> Result<(), StoreError> {
    let missing = cache.missing(indices);
    if !missing.is_empty() {
        load_records(conn, cache, &records_for_indices(&missing)).await?;
    }
    Ok(())
}

/// The writer's view of the tree: its size and the hashes later appends need.
#[derive(Debug, Default)]
pub(crate) struct TreeState {
    pub size: u64,
    pub cache: HashCache,
}

/// An event with its index, leaf and tree hashes computed, waiting for the batch's INSERT.
pub(crate) struct PreparedEvent {
    event: AuditEvent,
    details: String,
    leaf: Hash,
    hashes: Vec<u8>,
}

/// Rows per multi-row INSERT: 64 × 14 parameters stays far below both databases' limits.
const INSERT_CHUNK: usize = 64;

impl TreeState {
    /// Gives the next event its index and Merkle hashes (in memory). The row is written by
    /// [`insert_prepared`] in the same transaction, before COMMIT.
    pub(crate) async fn prepare(
        &mut self,
        conn: &mut AnyConnection,
        time: DateTime<Utc>,
        draft: AuditDraft,
    ) -> Result<PreparedEvent, StoreError> {
        let (draft, details) = normalise_draft(draft)?;
        let n = self.size;
        let event = AuditEvent::new(n, time, draft);
        let leaf = event.leaf_hash();
        let mut tries = 0;
        let hashes = loop {
            match append_hashes(&self.cache, n, leaf) {
                Ok(h) => break h,
                Err(missing) if tries == 0 => {
                    tries += 1;
                    load_records(conn, &mut self.cache, &missing.records()).await?;
                }
                Err(missing) => return Err(StoreError::Audit(missing.into())),
            }
        };
        self.cache.insert_record(n, &hashes);
        self.size = n + 1;
        Ok(PreparedEvent { event, details, leaf, hashes: encode_hashes(&hashes) })
    }

    /// Forgets events prepared after `size` (their job failed before they were written).
    pub(crate) fn truncate(&mut self, size: u64) {
        self.size = size;
        self.cache.retain_frontier(size);
    }
}

/// Writes prepared events with multi-row INSERTs: a batch of hundreds of events costs a
/// handful of statements instead of one each.
///
/// `numbered`: `$1, $2, …` placeholders (PostgreSQL). SQLite gets anonymous `?` ones: sqlx
/// resolves each numbered SQLite parameter by name, a linear search per parameter that made
/// a 900-parameter statement quadratic (a quarter of the writer's time in a profile).
pub(crate) async fn insert_prepared(
    conn: &mut AnyConnection,
    events: &[PreparedEvent],
    numbered: bool,
) -> Result<(), StoreError> {
    const COLS: usize = 14;
    for chunk in events.chunks(INSERT_CHUNK) {
        let mut sql = String::with_capacity(200 + chunk.len() * 80);
        sql.push_str(
            "INSERT INTO audit_events (idx, time, actor, action, target, outcome, reason, source_ip, request_id, \
             approver, request_ref, details, leaf, hashes) VALUES ",
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for c in 0..COLS {
                if c > 0 {
                    sql.push_str(", ");
                }
                if numbered {
                    sql.push('$');
                    sql.push_str(&(i * COLS + c + 1).to_string());
                } else {
                    sql.push('?');
                }
            }
            sql.push(')');
        }
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for p in chunk {
            let d = &p.event.draft;
            q = q
                .bind(i64_of(p.event.index, "index")?)
                .bind(micros(p.event.time))
                .bind(d.actor.as_str())
                .bind(d.action.as_str())
                .bind(d.target.as_deref())
                .bind(d.outcome.as_str())
                .bind(d.reason.as_deref())
                .bind(d.source_ip.as_deref())
                .bind(d.request_id.as_deref())
                .bind(d.approver.as_deref())
                .bind(d.request_ref.as_deref())
                .bind(p.details.as_str())
                .bind(p.leaf.as_bytes().as_slice())
                .bind(p.hashes.as_slice());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

impl Conn {
    /// Events in the log (= the next index).
    pub async fn audit_tree_size(&mut self) -> Result<u64, StoreError> {
        stored_tree_size(self.ex()).await
    }

    pub async fn audit_event(&mut self, index: u64) -> Result<Option<AuditEvent>, StoreError> {
        let Ok(i) = i64::try_from(index) else {
            return Ok(None);
        };
        let row = sqlx::query(concat!("SELECT ", event_cols!(), " FROM audit_events WHERE idx = $1"))
            .bind(i)
            .fetch_optional(self.ex())
            .await?;
        row.as_ref().map(event_from_row).transpose()
    }

    /// Events matching `q` with index > `after_index`, ascending, at most `limit`
    /// (capped at [`MAX_AUDIT_PAGE`]).
    pub async fn audit_events(
        &mut self,
        q: &AuditQuery,
        after_index: Option<u64>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let mut f = Filter::default();
        if let Some(a) = &q.actor {
            f.push("actor = ?", [Arg::Text(a.clone())]);
        }
        if let Some(t) = &q.target {
            f.push("target = ?", [Arg::Text(t.clone())]);
        }
        if let Some(a) = &q.action {
            f.push("action = ?", [Arg::Text(a.clone())]);
        }
        if let Some(s) = q.since {
            f.push("time >= ?", [Arg::Int(micros(s))]);
        }
        if let Some(u) = q.until {
            f.push("time < ?", [Arg::Int(micros(u))]);
        }
        if let Some(a) = after_index {
            f.push("idx > ?", [Arg::Int(i64_of(a, "after_index")?)]);
        }
        f.args.push(Arg::Int(i64::from(limit.min(MAX_AUDIT_PAGE))));
        let sql = format!(
            concat!("SELECT ", event_cols!(), " FROM audit_events{} ORDER BY idx LIMIT ${}"),
            f.where_sql(),
            f.args.len()
        );
        let rows = f.fetch_all(self.ex(), sql).await?;
        rows.iter().map(event_from_row).collect()
    }

    pub async fn latest_checkpoint(&mut self) -> Result<Option<StoredCheckpoint>, StoreError> {
        let row = sqlx::query("SELECT size, time, root, note FROM audit_checkpoints ORDER BY size DESC LIMIT 1")
            .fetch_optional(self.ex())
            .await?;
        row.as_ref().map(checkpoint_from_row).transpose()
    }

    /// Checkpoints larger than `after_size`, ascending by size, at most `limit` (a witness
    /// catching up reads the table as its outbox).
    pub async fn checkpoints_after(
        &mut self,
        after_size: u64,
        limit: u32,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let rows =
            sqlx::query("SELECT size, time, root, note FROM audit_checkpoints WHERE size > $1 ORDER BY size LIMIT $2")
                .bind(i64_of(after_size, "after_size")?)
                .bind(i64::from(limit.min(MAX_AUDIT_PAGE)))
                .fetch_all(self.ex())
                .await?;
        rows.iter().map(checkpoint_from_row).collect()
    }

    /// Every checkpoint, ascending by size.
    pub async fn list_checkpoints(&mut self) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let rows = sqlx::query("SELECT size, time, root, note FROM audit_checkpoints ORDER BY size")
            .fetch_all(self.ex())
            .await?;
        rows.iter().map(checkpoint_from_row).collect()
    }

    async fn check_size(&mut self, size: u64) -> Result<(), StoreError> {
        let have = self.audit_tree_size().await?;
        if size > have {
            return Err(StoreError::Invalid { field: "size", message: format!("the log has only {have} events") });
        }
        Ok(())
    }

    /// Merkle root of the first `size` events.
    pub async fn tree_root(&mut self, size: u64) -> Result<Hash, StoreError> {
        self.check_size(size).await?;
        let mut cache = HashCache::new();
        ensure_indices(self.ex(), &mut cache, &indices_for_root(size)).await?;
        Ok(wardkey_audit::tree_root(size, &cache)?)
    }

    /// RFC 9162 inclusion proof of event `index` in the tree of `size` events.
    pub async fn inclusion_proof(&mut self, index: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
        if index >= size {
            return Err(StoreError::Invalid {
                field: "index",
                message: format!("index {index} is not below size {size}"),
            });
        }
        self.check_size(size).await?;
        let mut cache = HashCache::new();
        let needed = indices_for_inclusion(index, size)?;
        ensure_indices(self.ex(), &mut cache, &needed).await?;
        Ok(wardkey_audit::inclusion_proof(index, size, &cache)?)
    }

    /// RFC 9162 consistency proof from the tree of `from` events to the tree of `to` events.
    pub async fn consistency_proof(&mut self, from: u64, to: u64) -> Result<Vec<Hash>, StoreError> {
        if from > to {
            return Err(StoreError::Invalid { field: "from", message: format!("from {from} is above to {to}") });
        }
        self.check_size(to).await?;
        let mut cache = HashCache::new();
        let needed = indices_for_consistency(from, to)?;
        ensure_indices(self.ex(), &mut cache, &needed).await?;
        Ok(wardkey_audit::consistency_proof(from, to, &cache)?)
    }
}

fn fail(index: u64, reason: impl Into<String>) -> VerifyFailure {
    VerifyFailure { index, reason: reason.into() }
}

/// Checks the stored checkpoint rows against their signed notes; returns the opened notes.
fn open_stored(stored: &[StoredCheckpoint], verifier: &LogVerifier) -> Result<Vec<Checkpoint>, VerifyFailure> {
    let notes: Vec<&str> = stored.iter().map(|c| c.note.as_str()).collect();
    let checkpoints = wardkey_audit::open_checkpoints(verifier, &notes)?;
    let mut prev = 0;
    for (s, c) in stored.iter().zip(&checkpoints) {
        if s.size != c.size || s.root != c.root {
            return Err(fail(prev, format!("checkpoint row of size {} differs from its signed note", s.size)));
        }
        prev = c.size;
    }
    Ok(checkpoints)
}

/// Streams every event row, in index order, through a [`TreeVerifier`] primed with the signed
/// checkpoints, then checks the checkpoints against the recomputed tree.
pub(crate) async fn verify(
    conn: &mut AnyConnection,
    verifier: &LogVerifier,
    trusted: Option<&Checkpoint>,
) -> Result<VerifyReport, VerifyFailure> {
    let rows = sqlx::query("SELECT size, time, root, note FROM audit_checkpoints ORDER BY size")
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| fail(0, format!("cannot read checkpoints: {e}")))?;
    let mut stored = Vec::with_capacity(rows.len());
    for r in &rows {
        stored.push(checkpoint_from_row(r).map_err(|e| fail(0, format!("unreadable checkpoint row: {e}")))?);
    }
    let checkpoints = open_stored(&stored, verifier)?;
    let mut tree = primed(&checkpoints, trusted);
    {
        let mut stream =
            sqlx::query(concat!("SELECT ", event_cols!(), ", leaf, hashes FROM audit_events ORDER BY idx"))
                .fetch(&mut *conn);
        loop {
            let row = match stream.try_next().await {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => return Err(fail(tree.size(), format!("cannot read the audit log: {e}"))),
            };
            let at = tree.size();
            let event = event_from_row(&row).map_err(|e| fail(at, format!("unreadable event row: {e}")))?;
            let leaf = row
                .bytes("leaf")
                .and_then(|b| Hash::from_slice(&b).map_err(StoreError::from))
                .map_err(|e| fail(at, format!("unreadable leaf hash: {e}")))?;
            let hashes = row.bytes("hashes").map_err(|e| fail(at, format!("unreadable hashes: {e}")))?;
            tree.push(&event, Some(leaf), Some(&hashes))?;
        }
    }
    finish(&tree, &checkpoints, trusted)
}

/// A tree verifier primed with the stored checkpoints and, if given, the trusted one's size.
fn primed(checkpoints: &[Checkpoint], trusted: Option<&Checkpoint>) -> TreeVerifier {
    let mut tree = TreeVerifier::for_checkpoints(checkpoints);
    if let Some(t) = trusted {
        tree.watch_root_at(t.size);
    }
    tree
}

/// The store's own checkpoints first (a tampered event is named precisely), then the store
/// against the trusted checkpoint kept outside it (truncation, rollback, fork).
fn finish(
    tree: &TreeVerifier,
    checkpoints: &[Checkpoint],
    trusted: Option<&Checkpoint>,
) -> Result<VerifyReport, VerifyFailure> {
    let report = wardkey_audit::verify_checkpoints(tree, checkpoints)?;
    if let Some(t) = trusted {
        wardkey_audit::check_trusted(tree, t)?;
    }
    Ok(report)
}

/// The same verification for a SQLite file, read in-process with rusqlite (blocking; run it on
/// a blocking thread). Opened read-only: verification never writes.
pub(crate) fn verify_sqlite_file(
    path: &std::path::Path,
    verifier: &LogVerifier,
    trusted: Option<&Checkpoint>,
) -> Result<VerifyReport, VerifyFailure> {
    use rusqlite::{Connection, OpenFlags};
    let db = |e: rusqlite::Error| fail(0, format!("cannot read the database: {e}"));
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(db)?;
    let mut stmt = conn.prepare("SELECT size, time, root, note FROM audit_checkpoints ORDER BY size").map_err(db)?;
    let mut stored = Vec::new();
    let mut rows = stmt.query([]).map_err(db)?;
    while let Some(r) = rows.next().map_err(db)? {
        let bad = |what: &str| fail(0, format!("unreadable checkpoint row: {what}"));
        let size: i64 = r.get(0).map_err(|_| bad("size"))?;
        let time: i64 = r.get(1).map_err(|_| bad("time"))?;
        let root: Vec<u8> = r.get(2).map_err(|_| bad("root"))?;
        stored.push(StoredCheckpoint {
            size: u64::try_from(size).map_err(|_| bad("size"))?,
            root: Hash::from_slice(&root).map_err(|_| bad("root"))?,
            time: crate::conn::from_micros(time).map_err(|_| bad("time"))?,
            note: r.get(3).map_err(|_| bad("note"))?,
        });
    }
    let checkpoints = open_stored(&stored, verifier)?;
    let mut tree = primed(&checkpoints, trusted);
    let mut stmt =
        conn.prepare(concat!("SELECT ", event_cols!(), ", leaf, hashes FROM audit_events ORDER BY idx")).map_err(db)?;
    let mut rows = stmt.query([]).map_err(db)?;
    loop {
        let at = tree.size();
        let row = match rows.next() {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => return Err(fail(at, format!("cannot read the audit log: {e}"))),
        };
        let bad = |what: &str| fail(at, format!("unreadable event row: {what}"));
        let idx: i64 = row.get(0).map_err(|_| bad("idx"))?;
        let time: i64 = row.get(1).map_err(|_| bad("time"))?;
        let outcome: String = row.get(5).map_err(|_| bad("outcome"))?;
        let details: String = row.get(11).map_err(|_| bad("details"))?;
        let event = AuditEvent {
            index: u64::try_from(idx).map_err(|_| bad("idx"))?,
            time: crate::conn::from_micros(time).map_err(|_| bad("time"))?,
            draft: AuditDraft {
                actor: row.get(2).map_err(|_| bad("actor"))?,
                action: row.get(3).map_err(|_| bad("action"))?,
                target: row.get(4).map_err(|_| bad("target"))?,
                outcome: Outcome::parse(&outcome).map_err(|_| bad("outcome"))?,
                reason: row.get(6).map_err(|_| bad("reason"))?,
                source_ip: row.get(7).map_err(|_| bad("source_ip"))?,
                request_id: row.get(8).map_err(|_| bad("request_id"))?,
                approver: row.get(9).map_err(|_| bad("approver"))?,
                request_ref: row.get(10).map_err(|_| bad("request_ref"))?,
                details: serde_json::from_str(&details).map_err(|_| bad("details"))?,
            },
        };
        let leaf = row
            .get_ref(12)
            .ok()
            .and_then(|v| v.as_blob().ok())
            .and_then(|b| Hash::from_slice(b).ok())
            .ok_or_else(|| fail(at, "unreadable leaf hash"))?;
        let hashes =
            row.get_ref(13).ok().and_then(|v| v.as_blob().ok()).ok_or_else(|| fail(at, "unreadable hashes"))?;
        tree.push(&event, Some(leaf), Some(hashes))?;
    }
    finish(&tree, &checkpoints, trusted)
}

/// Signs and inserts a checkpoint for the tree of `size` events if it is larger than the last
/// checkpoint. Runs on the writer's transaction.
pub(crate) async fn write_checkpoint(
    conn: &mut AnyConnection,
    tree: &mut TreeState,
    signer: &wardkey_audit::LogSigner,
    now: DateTime<Utc>,
) -> Result<Option<StoredCheckpoint>, StoreError> {
    let size = tree.size;
    let row = sqlx::query("SELECT COALESCE(MAX(size), -1) AS n FROM audit_checkpoints").fetch_one(&mut *conn).await?;
    let last = row.int("n")?;
    if size == 0 || i64_of(size, "size")? <= last {
        return Ok(None);
    }
    ensure_indices(conn, &mut tree.cache, &indices_for_root(size)).await?;
    let root = wardkey_audit::tree_root(size, &tree.cache)?;
    let time = truncate_micros(now);
    let note = signer.sign_checkpoint(size, root, time);
    sqlx::query("INSERT INTO audit_checkpoints (size, time, root, note) VALUES ($1, $2, $3, $4)")
        .bind(i64_of(size, "size")?)
        .bind(micros(time))
        .bind(root.as_bytes().to_vec())
        .bind(note.clone())
        .execute(&mut *conn)
        .await?;
    Ok(Some(StoredCheckpoint { size, root, time, note }))
}
