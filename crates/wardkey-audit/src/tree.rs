//! The Merkle tree over events: storage model and two-phase computation of roots and proofs.
//!
//! Storage model (tlog "stored hashes", Crosby–Wallach order): appending record `n` produces
//! `1 + trailing_ones(n)` hashes — its leaf hash, then the root of every perfect subtree that
//! record `n` completes, bottom-up. They live at stored-hash indices [`stored_hash_span`]`(n)`;
//! the store keeps them as one BLOB per event row ([`encode_hashes`]). Every stored index
//! belongs to exactly one record ([`record_for_stored_index`]).
//!
//! Async stores cannot implement the sync [`tlog_tiles::HashReader`], so computing is two-phase:
//! ask which stored indices a computation needs (`indices_for_*`, or the
//! [`MissingHashes`] error of [`append_hashes`]), load the rows holding them into a
//! [`HashCache`], then compute.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use tlog_tiles::{Hash, HashReader};

use crate::{AuditError, HASH_SIZE};

pub use tlog_tiles::stored_hash_count;

/// Stored-hash indices written when record `n` is appended:
/// `[stored_hash_index(0, n), stored_hash_index(0, n + 1))`. Its length is
/// `1 + (n + 1).trailing_zeros()`.
pub fn stored_hash_span(n: u64) -> Range<u64> {
    let start = tlog_tiles::stored_hash_index(0, n);
    start..start + 1 + u64::from((n + 1).trailing_zeros())
}

/// The record whose append wrote stored hash `i`, and `i`'s position (in hashes) within that
/// record's blob. Inverse of [`stored_hash_span`]: `stored_hash_span(n).start + offset == i`.
pub fn record_for_stored_index(i: u64) -> (u64, usize) {
    // Hash (level, k) covers records [k·2^level, (k+1)·2^level) and is completed by the last
    // of them; it is the `level`-th hash that record writes.
    let (level, k) = tlog_tiles::split_stored_hash_index(i);
    (((k + 1) << level) - 1, usize::from(level))
}

/// The distinct records (sorted) whose blobs hold the given stored indices: the rows to load.
pub fn records_for_indices(indices: &[u64]) -> Vec<u64> {
    let mut v: Vec<u64> = indices.iter().map(|&i| record_for_stored_index(i).0).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Concatenated raw 32-byte hashes.
pub fn encode_hashes(h: &[Hash]) -> Vec<u8> {
    let mut out = Vec::with_capacity(h.len() * HASH_SIZE);
    for x in h {
        out.extend_from_slice(&x.0);
    }
    out
}

/// Inverse of [`encode_hashes`]; the length must be a multiple of 32.
pub fn decode_hashes(b: &[u8]) -> Result<Vec<Hash>, AuditError> {
    if !b.len().is_multiple_of(HASH_SIZE) {
        return Err(AuditError::MalformedHash(format!(
            "hashes blob of {} bytes is not a multiple of {HASH_SIZE}",
            b.len()
        )));
    }
    Ok(b.chunks_exact(HASH_SIZE)
        .map(|c| {
            let mut a = [0u8; HASH_SIZE];
            a.copy_from_slice(c);
            Hash(a)
        })
        .collect())
}

/// Stored-hash indices the caller must fetch before a computation can run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingHashes(pub Vec<u64>);

impl MissingHashes {
    /// The rows to load ([`records_for_indices`]).
    pub fn records(&self) -> Vec<u64> {
        records_for_indices(&self.0)
    }
}

impl fmt::Display for MissingHashes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "missing stored hashes {:?}", self.0)
    }
}

impl std::error::Error for MissingHashes {}

impl From<MissingHashes> for AuditError {
    fn from(m: MissingHashes) -> Self {
        AuditError::MissingHashes(m.0)
    }
}

/// In-memory stored hashes keyed by stored index. Implements [`tlog_tiles::HashReader`].
#[derive(Clone, Debug, Default)]
pub struct HashCache {
    map: HashMap<u64, Hash>,
}

impl HashCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, index: u64, h: Hash) {
        self.map.insert(index, h);
    }

    /// Inserts the hashes record `n` wrote (its blob, decoded), at [`stored_hash_span`]`(n)`.
    /// Extra trailing hashes beyond the span are ignored.
    pub fn insert_record(&mut self, n: u64, hashes: &[Hash]) {
        for (i, h) in stored_hash_span(n).zip(hashes) {
            self.map.insert(i, *h);
        }
    }

    /// [`HashCache::insert_record`] from the raw blob; checks its length equals the span's.
    pub fn insert_record_blob(&mut self, n: u64, blob: &[u8]) -> Result<(), AuditError> {
        let span = stored_hash_span(n);
        let want = (span.end - span.start) as usize * HASH_SIZE;
        if blob.len() != want {
            return Err(AuditError::MalformedHash(format!(
                "hashes blob of record {n} has {} bytes, expected {want}",
                blob.len()
            )));
        }
        let hashes = decode_hashes(blob)?;
        self.insert_record(n, &hashes);
        Ok(())
    }

    pub fn get(&self, index: u64) -> Option<Hash> {
        self.map.get(&index).copied()
    }

    pub fn contains(&self, index: u64) -> bool {
        self.map.contains_key(&index)
    }

    /// The subset of `indices` not in the cache (order kept).
    pub fn missing(&self, indices: &[u64]) -> Vec<u64> {
        indices.iter().copied().filter(|i| !self.map.contains_key(i)).collect()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Keeps only the right edge of the tree of size `size` — the roots of its perfect subtrees
    /// (at most 64, one per set bit of `size`). That is exactly what [`tree_root`]`(size)` and
    /// every later [`append_hashes`] need, given the caller inserts each appended record's hashes.
    pub fn retain_frontier(&mut self, size: u64) {
        let keep = indices_for_root(size);
        self.map.retain(|k, _| keep.contains(k));
    }

    /// Appender convenience: [`append_hashes`], then inserts the result and trims to the
    /// frontier of size `n + 1`. Returns the blob hashes for record `n`.
    pub fn append(&mut self, n: u64, leaf: Hash) -> Result<Vec<Hash>, MissingHashes> {
        let hashes = append_hashes(self, n, leaf)?;
        self.insert_record(n, &hashes);
        self.retain_frontier(n + 1);
        Ok(hashes)
    }
}

impl HashReader for HashCache {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes.iter().map(|i| self.map.get(i).copied().ok_or(tlog_tiles::Error::IndexesNotInTree)).collect()
    }
}

/// A reader that records what is asked and answers with zero hashes: the index computations of
/// tlog_tiles do not depend on hash values.
struct Recorder(RefCell<Vec<u64>>);

impl HashReader for Recorder {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        self.0.borrow_mut().extend_from_slice(indexes);
        Ok(vec![Hash::default(); indexes.len()])
    }
}

/// Stored indices [`append_hashes`] needs for record `n` (the roots of the perfect subtrees
/// that record `n` completes a sibling of), ascending.
pub fn indices_for_append(n: u64) -> Vec<u64> {
    let m = (n + 1).trailing_zeros() as u8;
    (0..m).rev().map(|i| tlog_tiles::stored_hash_index(i, (n >> i) - 1)).collect()
}

/// The hashes to store for record `n` whose leaf hash is `leaf` (its blob, in order). On
/// `Err(MissingHashes)`, load those stored indices into `cache` and call again.
pub fn append_hashes(cache: &HashCache, n: u64, leaf: Hash) -> Result<Vec<Hash>, MissingHashes> {
    let needed = indices_for_append(n);
    let missing = cache.missing(&needed);
    if !missing.is_empty() {
        return Err(MissingHashes(missing));
    }
    tlog_tiles::stored_hashes_for_record_hash(n, leaf, cache).map_err(|_| MissingHashes(needed))
}

/// Stored indices needed for [`tree_root`]`(size)`: the right edge of the tree (≤ 64).
pub fn indices_for_root(size: u64) -> Vec<u64> {
    tlog_tiles::sub_tree_index(0, size, Vec::new())
}

/// Stored indices needed for [`inclusion_proof`]`(index, size)`.
pub fn indices_for_inclusion(index: u64, size: u64) -> Result<Vec<u64>, AuditError> {
    if index >= size {
        return Err(AuditError::InvalidInput(format!("index {index} >= size {size}")));
    }
    let r = Recorder(RefCell::new(Vec::new()));
    tlog_tiles::prove_record(size, index, &r)?;
    Ok(r.0.into_inner())
}

/// Stored indices needed for [`consistency_proof`]`(from, to)` (none if `from` is 0 or equals `to`).
pub fn indices_for_consistency(from: u64, to: u64) -> Result<Vec<u64>, AuditError> {
    if from > to {
        return Err(AuditError::InvalidInput(format!("from {from} > to {to}")));
    }
    if from == 0 {
        return Ok(Vec::new());
    }
    let r = Recorder(RefCell::new(Vec::new()));
    tlog_tiles::prove_tree(to, from, &r)?;
    Ok(r.0.into_inner())
}

fn require(hashes: &HashCache, indices: &[u64]) -> Result<(), AuditError> {
    let missing = hashes.missing(indices);
    if missing.is_empty() { Ok(()) } else { Err(AuditError::MissingHashes(missing)) }
}

/// Root of the tree of the first `size` records ([`tlog_tiles::EMPTY_HASH`] for 0).
/// `Err(MissingHashes)` lists what to load.
pub fn tree_root(size: u64, hashes: &HashCache) -> Result<Hash, AuditError> {
    require(hashes, &indices_for_root(size))?;
    Ok(tlog_tiles::tree_hash(size, hashes)?)
}

/// RFC 9162 inclusion proof (audit path) of record `index` in the tree of size `size`.
pub fn inclusion_proof(index: u64, size: u64, hashes: &HashCache) -> Result<Vec<Hash>, AuditError> {
    require(hashes, &indices_for_inclusion(index, size)?)?;
    Ok(tlog_tiles::prove_record(size, index, hashes)?)
}

/// RFC 9162 consistency proof from size `from` to size `to` (empty if `from` is 0 or `to`).
pub fn consistency_proof(from: u64, to: u64, hashes: &HashCache) -> Result<Vec<Hash>, AuditError> {
    let needed = indices_for_consistency(from, to)?;
    if from == 0 {
        return Ok(Vec::new());
    }
    require(hashes, &needed)?;
    Ok(tlog_tiles::prove_tree(to, from, hashes)?)
}

/// Checks that `proof` shows record `index` with leaf hash `leaf` is in the tree of size `size`
/// with root `root`.
pub fn verify_inclusion(index: u64, size: u64, leaf: Hash, root: Hash, proof: &[Hash]) -> Result<(), AuditError> {
    if index >= size {
        return Err(AuditError::InvalidInput(format!("index {index} >= size {size}")));
    }
    Ok(tlog_tiles::check_record(&proof.to_vec(), size, root, index, leaf)?)
}

/// Checks that `proof` shows the tree (`to`, `to_root`) extends the tree (`from`, `from_root`).
/// From the empty tree (`from == 0`) the proof must be empty and `from_root` the empty hash.
pub fn verify_consistency(
    from: u64,
    from_root: Hash,
    to: u64,
    to_root: Hash,
    proof: &[Hash],
) -> Result<(), AuditError> {
    if from > to {
        return Err(AuditError::InvalidInput(format!("from {from} > to {to}")));
    }
    if from == 0 {
        return if proof.is_empty() && from_root == tlog_tiles::EMPTY_HASH {
            Ok(())
        } else {
            Err(AuditError::InvalidProof)
        };
    }
    Ok(tlog_tiles::check_tree(&proof.to_vec(), to, to_root, from, from_root)?)
}
