//! Offline verification of a whole log (`wardkey audit verify`).
//!
//! Usage, streaming rows from a database:
//!
//! ```text
//! let checkpoints = open_checkpoints(&log_verifier, &notes)?;     // signatures, order
//! let mut tree = TreeVerifier::for_checkpoints(&checkpoints);      // register sizes first
//! for row in rows_in_index_order {                                 // every row, ascending
//!     tree.push(&row.event, row.leaf, Some(&row.hashes))?;
//! }
//! let report = verify_checkpoints(&tree, &checkpoints)?;           // roots, consistency, truncation
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use tlog_tiles::{EMPTY_HASH, Hash, HashReader};

use crate::tree::{HashCache, consistency_proof, indices_for_consistency, verify_consistency};
use crate::{AuditEvent, Checkpoint, HASH_SIZE, LogVerifier};

/// Why verification stopped. `index` is the first event index that could be at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyFailure {
    pub index: u64,
    pub reason: String,
}

impl VerifyFailure {
    fn new(index: u64, reason: impl Into<String>) -> Self {
        VerifyFailure { index, reason: reason.into() }
    }
}

impl fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "audit log verification failed at index {}: {}", self.index, self.reason)
    }
}

impl std::error::Error for VerifyFailure {}

/// Result of a successful verification.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VerifyReport {
    /// Events read.
    pub tree_size: u64,
    /// Recomputed root of all events read.
    #[serde(serialize_with = "crate::serialize_hash_base64")]
    pub root: Hash,
    /// Checkpoints checked.
    pub checkpoints: usize,
    /// The largest checkpoint, if any.
    pub last_checkpoint: Option<Checkpoint>,
    /// Events after the last checkpoint: hash-chained but not yet covered by a signature.
    pub unchecked_events: u64,
}

#[derive(Clone, Debug, Default)]
struct Target {
    /// Root from a signed checkpoint at this size, if registered with one.
    signed_root: Option<Hash>,
    /// Recomputed root, once the tree reached this size.
    root: Option<Hash>,
    /// Outcome of the consistency proof from the previous target (its size, result).
    consistency: Option<(u64, Result<(), String>)>,
}

/// Reads the right edge of the tree (the perfect-subtree roots) for tlog_tiles.
struct Frontier<'a>(&'a [(u64, Hash)]);

impl HashReader for Frontier<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|i| self.0.iter().find(|(j, _)| j == i).map(|(_, h)| *h).ok_or(tlog_tiles::Error::IndexesNotInTree))
            .collect()
    }
}

/// Streaming recomputation of the tree from event rows. Memory: the right edge of the tree
/// (≤ 64 hashes), one recorded root per registered size, and O(log n) hashes for the
/// consistency proof between consecutive registered sizes. No per-event allocation besides
/// growth of the reused encoding buffer.
///
/// Register sizes of interest ([`TreeVerifier::want_root_at`], [`TreeVerifier::want_checkpoint`],
/// [`TreeVerifier::for_checkpoints`]) **before** pushing rows: a root is recorded at the moment
/// the tree reaches that size, and a consistency proof between two registered sizes needs
/// hashes seen while pushing the rows between them.
#[derive(Debug, Default)]
pub struct TreeVerifier {
    size: u64,
    /// Number of stored hashes so far (= `stored_hash_index(0, size)`).
    stored: u64,
    /// Roots of the perfect subtrees of the current tree, left to right: (stored index, hash).
    frontier: Vec<(u64, Hash)>,
    buf: Vec<u8>,
    targets: BTreeMap<u64, Target>,
    /// Smallest registered size > `size`.
    next_target: Option<u64>,
    /// Last registered size reached (> 0): the start of the pair being captured.
    pair_from: Option<u64>,
    /// Stored indices (≥ `stored` when set up) to capture for the current pair, ascending.
    pending: Vec<u64>,
    pending_pos: usize,
    captured: HashCache,
    /// Sizes whose root is recorded outside the checkpoint pairs (a trusted checkpoint from
    /// outside the store): size → root once reached.
    watched: BTreeMap<u64, Option<Hash>>,
    /// Smallest watched size > `size`.
    next_watch: Option<u64>,
}

impl TreeVerifier {
    pub fn new() -> Self {
        TreeVerifier { frontier: Vec::with_capacity(64), buf: Vec::with_capacity(512), ..Default::default() }
    }

    /// A verifier with every checkpoint registered ([`TreeVerifier::want_checkpoint`]).
    pub fn for_checkpoints(checkpoints: &[Checkpoint]) -> Self {
        let mut v = Self::new();
        for cp in checkpoints {
            v.want_checkpoint(cp);
        }
        v
    }

    /// Events pushed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Records the root when the tree reaches `size` (immediately if it is the current size;
    /// ignored if already past). Consecutive registered sizes also get a consistency proof
    /// checked between them.
    pub fn want_root_at(&mut self, size: u64) {
        self.register(size, None);
    }

    /// [`TreeVerifier::want_root_at`]`(cp.size)`, and the consistency proof into this size is
    /// checked against the checkpoint's signed root (the first one registered for a size).
    pub fn want_checkpoint(&mut self, cp: &Checkpoint) {
        self.register(cp.size, Some(cp.root));
    }

    /// Records the root when the tree reaches `size`, without making `size` part of the
    /// consistency pairs between registered checkpoints (so a trusted checkpoint from outside
    /// the store does not change which stored checkpoints are proved consistent).
    pub fn watch_root_at(&mut self, size: u64) {
        if size < self.size {
            return;
        }
        if size == self.size {
            let root = self.root();
            self.watched.insert(size, Some(root));
            return;
        }
        self.watched.entry(size).or_insert(None);
        if self.next_watch.is_none_or(|n| size < n) {
            self.next_watch = Some(size);
        }
    }

    fn reach_watch(&mut self) {
        let size = self.size;
        let root = self.frontier_root().ok();
        if let Some(slot) = self.watched.get_mut(&size) {
            *slot = root;
        }
        self.next_watch = self.watched.range(size + 1..).next().map(|(k, _)| *k);
    }

    fn register(&mut self, size: u64, signed_root: Option<Hash>) {
        if size < self.size {
            return;
        }
        let t = self.targets.entry(size).or_default();
        if t.signed_root.is_none() {
            t.signed_root = signed_root;
        }
        if size == self.size {
            if t.root.is_none() {
                self.reach_target();
            }
        } else if self.next_target.is_none_or(|n| size < n) {
            self.next_target = Some(size);
            self.setup_capture(false);
        }
    }

    /// Root of the first `size` events: the current root, or one recorded at a registered
    /// size. `None` if not available.
    pub fn root_at(&self, size: u64) -> Option<Hash> {
        if size == 0 {
            return Some(EMPTY_HASH);
        }
        if size == self.size {
            return Some(self.root());
        }
        self.targets.get(&size).and_then(|t| t.root).or_else(|| self.watched.get(&size).copied().flatten())
    }

    /// Root of all events pushed so far.
    pub fn root(&self) -> Hash {
        self.frontier_root().unwrap_or(EMPTY_HASH)
    }

    /// Outcome of the consistency proof checked from registered size `from` to the next
    /// registered size `to`, if it was checked.
    pub fn consistency_checked(&self, from: u64, to: u64) -> Option<Result<(), String>> {
        match &self.targets.get(&to)?.consistency {
            Some((f, r)) if *f == from => Some(r.clone()),
            _ => None,
        }
    }

    fn frontier_root(&self) -> Result<Hash, tlog_tiles::Error> {
        tlog_tiles::tree_hash(self.size, &Frontier(&self.frontier))
    }

    /// Feeds the next stored row (ascending index order). `stored_leaf`: the row's leaf hash
    /// column, if the store keeps one; `stored_hashes`: the row's hashes blob, if any. Checks
    /// the index is the expected position, the leaf recomputed from the event matches the
    /// stored leaf, and the blob matches the recomputed stored hashes.
    pub fn push(
        &mut self,
        event: &AuditEvent,
        stored_leaf: Option<Hash>,
        stored_hashes: Option<&[u8]>,
    ) -> Result<(), VerifyFailure> {
        let n = self.size;
        if event.index != n {
            return Err(if event.index > n {
                VerifyFailure::new(
                    n,
                    format!("expected event {n} but found event {} (missing or reordered rows)", event.index),
                )
            } else {
                VerifyFailure::new(
                    event.index,
                    format!(
                        "event {} appears again at position {n} (duplicated, inserted or reordered rows)",
                        event.index
                    ),
                )
            });
        }
        let leaf = event.leaf_hash_with(&mut self.buf);
        if let Some(stored) = stored_leaf
            && stored != leaf
        {
            return Err(VerifyFailure::new(n, "event content does not match its stored leaf hash (event altered)"));
        }

        // The stored hashes record n adds (same as tlog_tiles::stored_hashes_for_record_hash):
        // the leaf, then node_hash(left sibling, h) for each perfect subtree it completes.
        let m = (n + 1).trailing_zeros() as usize;
        let mut produced = [Hash::default(); 65];
        produced[0] = leaf;
        let mut h = leaf;
        for slot in produced.iter_mut().skip(1).take(m) {
            let Some((_, left)) = self.frontier.pop() else {
                return Err(VerifyFailure::new(n, "internal error: tree frontier underflow"));
            };
            h = tlog_tiles::node_hash(left, h);
            *slot = h;
        }
        let produced = &produced[..=m];

        if let Some(blob) = stored_hashes {
            if blob.len() != produced.len() * HASH_SIZE {
                return Err(VerifyFailure::new(
                    n,
                    format!("stored hashes blob has {} bytes, expected {}", blob.len(), produced.len() * HASH_SIZE),
                ));
            }
            for (i, (chunk, want)) in blob.chunks_exact(HASH_SIZE).zip(produced).enumerate() {
                if chunk != want.0 {
                    return Err(VerifyFailure::new(
                        n,
                        if i == 0 {
                            "stored hashes blob: leaf hash does not match the event (event or blob altered)".to_owned()
                        } else {
                            format!("stored hashes blob: tree hash {i} does not match the recomputed tree")
                        },
                    ));
                }
            }
        }

        let start = self.stored;
        let end = start + produced.len() as u64;
        while let Some(&idx) = self.pending.get(self.pending_pos) {
            if idx >= end {
                break;
            }
            if idx >= start {
                self.captured.insert(idx, produced[(idx - start) as usize]);
            }
            self.pending_pos += 1;
        }
        self.frontier.push((end - 1, h));
        self.stored = end;
        self.size = n + 1;
        if self.next_target == Some(self.size) {
            self.reach_target();
        }
        if self.next_watch == Some(self.size) {
            self.reach_watch();
        }
        Ok(())
    }

    /// The tree just reached a registered size: record its root, check the consistency proof
    /// from the previous registered size, and prepare capture for the next pair.
    fn reach_target(&mut self) {
        let size = self.size;
        let root = match self.frontier_root() {
            Ok(r) => r,
            Err(_) => return,
        };
        let consistency = self.pair_from.filter(|&a| a < size).map(|a| (a, self.check_pair(a, size, root)));
        if let Some(t) = self.targets.get_mut(&size) {
            t.root = Some(root);
            if consistency.is_some() {
                t.consistency = consistency;
            }
        }
        self.next_target = self.targets.range(size + 1..).next().map(|(k, _)| *k);
        if size > 0 {
            self.pair_from = Some(size);
        }
        self.setup_capture(true);
    }

    fn check_pair(&self, a: u64, b: u64, root_b: Hash) -> Result<(), String> {
        let proof = consistency_proof(a, b, &self.captured).map_err(|e| {
            format!("cannot build the consistency proof {a}→{b} ({e}); register checkpoints before pushing rows")
        })?;
        let ta = self.targets.get(&a);
        let ra = ta.and_then(|t| t.signed_root.or(t.root)).unwrap_or(EMPTY_HASH);
        let rb = self.targets.get(&b).and_then(|t| t.signed_root).unwrap_or(root_b);
        verify_consistency(a, ra, b, rb, &proof)
            .map_err(|_| format!("checkpoints at sizes {a} and {b} are not consistent"))
    }

    /// Lists the stored hashes the proof `pair_from → next_target` needs: those already
    /// written come from the frontier (all of them are on it when the tree is at `pair_from`),
    /// the rest are captured by `push`.
    fn setup_capture(&mut self, fresh: bool) {
        if fresh {
            self.captured.clear();
        }
        self.pending.clear();
        self.pending_pos = 0;
        let (Some(a), Some(b)) = (self.pair_from, self.next_target) else {
            return;
        };
        let Ok(needed) = indices_for_consistency(a, b) else {
            return;
        };
        for idx in needed {
            if idx < self.stored {
                if let Some((_, h)) = self.frontier.iter().find(|(j, _)| *j == idx) {
                    self.captured.insert(idx, *h);
                }
            } else {
                self.pending.push(idx);
            }
        }
        self.pending.sort_unstable();
        self.pending.dedup();
    }
}

/// Opens signed checkpoint notes (ascending by size) with the log's key. A bad signature,
/// foreign origin or malformed note fails at the previous checkpoint's size (the first event
/// no longer covered); a size smaller than its predecessor fails at that size.
pub fn open_checkpoints<S: AsRef<str>>(log: &LogVerifier, notes: &[S]) -> Result<Vec<Checkpoint>, VerifyFailure> {
    let mut out: Vec<Checkpoint> = Vec::with_capacity(notes.len());
    for (i, note) in notes.iter().enumerate() {
        let prev = out.last().map_or(0, |c| c.size);
        let cp = log
            .open_checkpoint(note.as_ref())
            .map_err(|e| VerifyFailure::new(prev, format!("checkpoint #{i}: {e}")))?;
        if cp.size < prev {
            return Err(VerifyFailure::new(
                cp.size,
                format!("checkpoint #{i} (size {}) is smaller than its predecessor (size {prev})", cp.size),
            ));
        }
        out.push(cp);
    }
    Ok(out)
}

/// Checks opened checkpoints (ascending by size; see [`open_checkpoints`] for signatures)
/// against a [`TreeVerifier`] that consumed every row and had the checkpoints registered
/// before ([`TreeVerifier::for_checkpoints`]):
/// - each root equals the recomputed root at its size — otherwise fails at the previous
///   checkpoint's size (events before it are vouched for by that checkpoint);
/// - consecutive checkpoints are consistent (an RFC 9162 consistency proof computed from the
///   recomputed tree verifies against both signed roots);
/// - the log is not shorter than any checkpoint (truncation fails at index = tree size).
///
/// Events after the last checkpoint are reported in [`VerifyReport::unchecked_events`].
pub fn verify_checkpoints(tree: &TreeVerifier, checkpoints: &[Checkpoint]) -> Result<VerifyReport, VerifyFailure> {
    let mut prev: Option<&Checkpoint> = None;
    for cp in checkpoints {
        let prev_size = prev.map_or(0, |p| p.size);
        if cp.size < prev_size {
            return Err(VerifyFailure::new(
                cp.size,
                format!("checkpoints out of order: size {} after size {prev_size}", cp.size),
            ));
        }
        if cp.size > tree.size() {
            return Err(VerifyFailure::new(
                tree.size(),
                format!("log truncated: a checkpoint covers {} events but only {} remain", cp.size, tree.size()),
            ));
        }
        match tree.root_at(cp.size) {
            None => {
                return Err(VerifyFailure::new(
                    prev_size,
                    format!("no recomputed root at size {} (register checkpoints before pushing rows)", cp.size),
                ));
            }
            Some(root) if root != cp.root => {
                return Err(VerifyFailure::new(
                    prev_size,
                    format!(
                        "checkpoint at size {} has root {} but the events give {}: an event in [{prev_size}, {}) was altered, removed or inserted",
                        cp.size, cp.root, root, cp.size
                    ),
                ));
            }
            Some(_) => {}
        }
        if let Some(p) = prev
            && p.size > 0
            && p.size < cp.size
        {
            match tree.consistency_checked(p.size, cp.size) {
                Some(Ok(())) => {}
                Some(Err(reason)) => return Err(VerifyFailure::new(prev_size, reason)),
                None => {
                    return Err(VerifyFailure::new(
                        prev_size,
                        format!(
                            "consistency {}→{} was not checked (register checkpoints before pushing rows)",
                            p.size, cp.size
                        ),
                    ));
                }
            }
        }
        prev = Some(cp);
    }
    let last = checkpoints.last();
    Ok(VerifyReport {
        tree_size: tree.size(),
        root: tree.root(),
        checkpoints: checkpoints.len(),
        last_checkpoint: last.cloned(),
        unchecked_events: tree.size() - last.map_or(0, |c| c.size),
    })
}

/// How a store compares with a checkpoint kept outside it (a witness copy).
#[derive(Clone, Debug, PartialEq)]
pub enum TrustedMismatch {
    /// The store holds fewer events than the trusted checkpoint covers: events were cut off
    /// the end (truncation), or the store was rolled back to an older state.
    Behind { store_size: u64, trusted_size: u64 },
    /// The store's events give a different root at the trusted size: the log was rewritten
    /// (a fork), even if it verifies against its own, re-signed checkpoints.
    Forked { size: u64, trusted_root: Hash, store_root: Hash },
}

impl fmt::Display for TrustedMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustedMismatch::Behind { store_size, trusted_size } => write!(
                f,
                "the store is behind the trusted checkpoint: it holds {store_size} events but the trusted \
                 checkpoint covers {trusted_size} (the log was truncated or rolled back)"
            ),
            TrustedMismatch::Forked { size, trusted_root, store_root } => write!(
                f,
                "the store is inconsistent with the trusted checkpoint: at size {size} its events give root \
                 {store_root} but the trusted checkpoint says {trusted_root} (the log was rewritten: a fork)"
            ),
        }
    }
}

impl TrustedMismatch {
    /// The first event index that may be at fault: the store's end for truncation; for a fork
    /// only the trusted size is known, so 0 (some event below it differs).
    pub fn index(&self) -> u64 {
        match self {
            TrustedMismatch::Behind { store_size, .. } => *store_size,
            TrustedMismatch::Forked { .. } => 0,
        }
    }
}

impl From<TrustedMismatch> for VerifyFailure {
    fn from(m: TrustedMismatch) -> Self {
        VerifyFailure::new(m.index(), m.to_string())
    }
}

/// Compares a tree that consumed every stored row with a trusted checkpoint (whose size was
/// watched with [`TreeVerifier::watch_root_at`] before the rows were pushed).
///
/// The recomputed root at the trusted size must equal the trusted root. Because that root is
/// recomputed from the very events the store holds now, equality proves the store extends the
/// trusted tree — it implies (and is stronger than) a consistency proof from the trusted size
/// to the store's size, which a store could only fake by finding a hash collision.
pub fn check_trusted(tree: &TreeVerifier, trusted: &Checkpoint) -> Result<(), TrustedMismatch> {
    if trusted.size > tree.size() {
        return Err(TrustedMismatch::Behind { store_size: tree.size(), trusted_size: trusted.size });
    }
    match tree.root_at(trusted.size) {
        Some(root) if root == trusted.root => Ok(()),
        Some(root) => Err(TrustedMismatch::Forked { size: trusted.size, trusted_root: trusted.root, store_root: root }),
        // Not watched before the rows were pushed: treat as a fork rather than pass silently.
        None => Err(TrustedMismatch::Forked { size: trusted.size, trusted_root: trusted.root, store_root: EMPTY_HASH }),
    }
}

/// Splits a witness file (signed checkpoint notes appended one after another, each followed
/// by a blank line) into its notes, in file order. A note is a body (no blank line inside)
/// and a block of signature lines starting with `— `. Fails on anything else, naming the line.
pub fn split_witness_notes(text: &str) -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    let mut body = String::new();
    let mut sigs = String::new();
    // 0: in body, 1: after body's blank line (signature block), 2: between notes.
    let mut state = 2u8;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let lineno = n + 1;
        let bare = line.strip_suffix('\n').unwrap_or(line);
        if !line.ends_with('\n') {
            return Err(format!("line {lineno} is incomplete (no newline; a torn write?)"));
        }
        match state {
            2 if bare.is_empty() => {}
            2 | 0 if bare.starts_with('\u{2014}') => {
                return Err(format!("line {lineno}: a signature line where a checkpoint body was expected"));
            }
            2 => {
                body.clear();
                body.push_str(line);
                state = 0;
            }
            0 if bare.is_empty() => {
                state = 1;
                sigs.clear();
            }
            0 => body.push_str(line),
            _ if bare.is_empty() => {
                if sigs.is_empty() {
                    return Err(format!("line {lineno}: a checkpoint without signature lines"));
                }
                notes.push(format!("{body}\n{sigs}"));
                state = 2;
            }
            _ if bare.starts_with("\u{2014} ") => sigs.push_str(line),
            _ => return Err(format!("line {lineno}: expected a signature line (\"\u{2014} <key name> <signature>\")")),
        }
    }
    match state {
        1 if !sigs.is_empty() => notes.push(format!("{body}\n{sigs}")),
        0 | 1 => return Err("the last checkpoint is incomplete (a torn write?)".to_owned()),
        _ => {}
    }
    Ok(notes)
}

/// Reads a trusted checkpoint: a single signed note, or a witness file of several (the last
/// one counts, being the newest), and opens it with the log's key. Errors say what is wrong:
/// empty, malformed, or not signed by this key.
pub fn open_trusted_checkpoint(log: &LogVerifier, text: &str) -> Result<Checkpoint, String> {
    if text.trim().is_empty() {
        return Err("the trusted checkpoint file is empty".to_owned());
    }
    let notes = split_witness_notes(text).map_err(|e| format!("the trusted checkpoint file is malformed: {e}"))?;
    let Some(last) = notes.last() else {
        return Err("the trusted checkpoint file holds no checkpoint".to_owned());
    };
    log.open_checkpoint(last).map_err(|e| match e {
        crate::AuditError::InvalidCheckpoint(m) if m.contains("not signed by this log's key") => format!(
            "the trusted checkpoint is not signed by the verifier key {}+{:08x} (signed by another key, or altered)",
            log.origin(),
            log.key_id()
        ),
        crate::AuditError::InvalidCheckpoint(m) => format!("the trusted checkpoint is malformed: {m}"),
        other => format!("the trusted checkpoint is malformed: {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuditDraft, AuditEvent, LogSigner, Outcome};
    use chrono::{TimeZone, Utc};

    fn events(n: u64, actor: &str) -> Vec<AuditEvent> {
        let t = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        (0..n).map(|i| AuditEvent::new(i, t, AuditDraft::uncatalogued(actor, "test.event", Outcome::Success))).collect()
    }

    fn signer() -> LogSigner {
        LogSigner::from_seed("wardkey/test", [3; 32]).unwrap()
    }

    /// The root after `n` events, signed.
    fn checkpoint_at(evs: &[AuditEvent], n: u64) -> String {
        let mut t = TreeVerifier::new();
        for e in &evs[..n as usize] {
            t.push(e, None, None).unwrap();
        }
        signer().sign_checkpoint(n, t.root(), Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap())
    }

    fn run(evs: &[AuditEvent], stored: &[Checkpoint], trusted: &Checkpoint) -> Result<VerifyReport, VerifyFailure> {
        let mut t = TreeVerifier::for_checkpoints(stored);
        t.watch_root_at(trusted.size);
        for e in evs {
            t.push(e, None, None)?;
        }
        let report = verify_checkpoints(&t, stored)?;
        check_trusted(&t, trusted)?;
        Ok(report)
    }

    #[test]
    fn trusted_checkpoint_between_stored_ones_leaves_their_pairs_alone() {
        let evs = events(10, "a");
        let v = LogVerifier::from_signer(&signer());
        let stored: Vec<Checkpoint> =
            [4, 8].iter().map(|&n| v.open_checkpoint(&checkpoint_at(&evs, n)).unwrap()).collect();
        let trusted = v.open_checkpoint(&checkpoint_at(&evs, 6)).unwrap();
        let r = run(&evs, &stored, &trusted).unwrap();
        assert_eq!((r.tree_size, r.checkpoints), (10, 2));
        // The same trusted size as a stored one, and the current size.
        let at8 = v.open_checkpoint(&checkpoint_at(&evs, 8)).unwrap();
        run(&evs, &stored, &at8).unwrap();
        let at10 = v.open_checkpoint(&checkpoint_at(&evs, 10)).unwrap();
        run(&evs, &stored, &at10).unwrap();
    }

    #[test]
    fn behind_and_forked_are_named() {
        let evs = events(10, "a");
        let v = LogVerifier::from_signer(&signer());
        let trusted = v.open_checkpoint(&checkpoint_at(&evs, 10)).unwrap();
        let f = run(&evs[..6], &[], &trusted).unwrap_err();
        assert_eq!(f.index, 6);
        assert!(f.reason.contains("behind the trusted checkpoint"), "{f}");
        let forged = events(12, "mallory");
        let f = run(&forged, &[], &trusted).unwrap_err();
        assert!(f.reason.contains("fork") && f.reason.contains("at size 10"), "{f}");
        let f = run(&forged[..10], &[], &trusted).unwrap_err();
        assert!(f.reason.contains("fork"), "{f}");
    }

    #[test]
    fn witness_files_split_into_notes() {
        let evs = events(5, "a");
        let (a, b) = (checkpoint_at(&evs, 2), checkpoint_at(&evs, 5));
        let file = format!("{a}\n{b}\n");
        assert_eq!(split_witness_notes(&file).unwrap(), vec![a.clone(), b.clone()]);
        assert_eq!(split_witness_notes(&a).unwrap(), vec![a.clone()]);
        let v = LogVerifier::from_signer(&signer());
        assert_eq!(open_trusted_checkpoint(&v, &file).unwrap().size, 5);
        // Torn, garbage, empty, another key.
        assert!(split_witness_notes(&file[..file.len() - 10]).is_err());
        assert!(open_trusted_checkpoint(&v, "hello\n").unwrap_err().contains("malformed"));
        assert!(open_trusted_checkpoint(&v, "").unwrap_err().contains("empty"));
        let other = LogSigner::from_seed("wardkey/test", [4; 32]).unwrap();
        let foreign = other.sign_checkpoint(5, EMPTY_HASH, Utc::now());
        let e = open_trusted_checkpoint(&v, &foreign).unwrap_err();
        assert!(e.contains("not signed by the verifier key"), "{e}");
    }
}
