//! Wardkey's tamper-evident audit log: event schema and canonical encoding, the RFC 9162 Merkle
//! tree over events (storage model, roots, inclusion and consistency proofs), signed C2SP
//! checkpoints, and the offline verifier used by `wardkey audit verify`.
//!
//! [`Action`] is the catalogue of every event Wardkey records (`docs/audit-events.md` is
//! generated from it).
//!
//! Pure logic: no filesystem, no database. The store crate calls into it.
//!
//! Merkle math comes from [`tlog_tiles`] (a port of Go's `golang.org/x/mod/sumdb/tlog`), note
//! signatures from [`signed_note`]. Hashes are [`tlog_tiles::Hash`], re-exported as [`Hash`];
//! [`HashExt`] adds `from_bytes`, `as_bytes` and hex helpers.

pub mod catalogue;
mod error;
mod event;
mod sign;
mod tree;
mod verify;

pub use catalogue::{Action, Category, Safeguard, Target, TargetKind};
pub use error::AuditError;
pub use event::{AuditDraft, AuditEvent, IntoOptionalString, Outcome, format_time, truncate_to_micros};
pub use sign::{Checkpoint, LogSigner, LogVerifier};
pub use tlog_tiles::{EMPTY_HASH, HASH_SIZE, Hash};
pub use tree::{
    HashCache, MissingHashes, append_hashes, consistency_proof, decode_hashes, encode_hashes, inclusion_proof,
    indices_for_append, indices_for_consistency, indices_for_inclusion, indices_for_root, record_for_stored_index,
    records_for_indices, stored_hash_count, stored_hash_span, tree_root, verify_consistency, verify_inclusion,
};
pub use verify::{
    TreeVerifier, TrustedMismatch, VerifyFailure, VerifyReport, check_trusted, open_checkpoints,
    open_trusted_checkpoint, split_witness_notes, verify_checkpoints,
};

/// Convenience methods on [`Hash`] (a foreign type, hence a trait). `Hash::from_bytes(b)` works
/// with this trait in scope (`use wardkey_audit::HashExt;`).
pub trait HashExt: Sized {
    /// Wraps 32 raw bytes.
    fn from_bytes(bytes: [u8; HASH_SIZE]) -> Self;
    /// Parses exactly 32 bytes (e.g. a database BLOB column).
    fn from_slice(bytes: &[u8]) -> Result<Self, AuditError>;
    /// The raw bytes.
    fn as_bytes(&self) -> &[u8; HASH_SIZE];
    /// Lowercase hex, 64 characters.
    fn to_hex(&self) -> String;
    /// Parses 64 hex characters (either case).
    fn from_hex(s: &str) -> Result<Self, AuditError>;
    /// Standard base64 with padding (the form used in checkpoints and `Display`).
    fn to_base64(&self) -> String;
    /// Parses standard base64 with padding.
    fn from_base64(s: &str) -> Result<Self, AuditError>;
}

impl HashExt for Hash {
    fn from_bytes(bytes: [u8; HASH_SIZE]) -> Self {
        Hash(bytes)
    }

    fn from_slice(bytes: &[u8]) -> Result<Self, AuditError> {
        let arr: [u8; HASH_SIZE] = bytes
            .try_into()
            .map_err(|_| AuditError::MalformedHash(format!("expected {HASH_SIZE} bytes, got {}", bytes.len())))?;
        Ok(Hash(arr))
    }

    fn as_bytes(&self) -> &[u8; HASH_SIZE] {
        &self.0
    }

    fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    fn from_hex(s: &str) -> Result<Self, AuditError> {
        let v = hex::decode(s).map_err(|e| AuditError::MalformedHash(e.to_string()))?;
        Self::from_slice(&v)
    }

    fn to_base64(&self) -> String {
        self.to_string()
    }

    fn from_base64(s: &str) -> Result<Self, AuditError> {
        Hash::parse_hash(s).map_err(|e| AuditError::MalformedHash(e.to_string()))
    }
}

/// Serde helper: serialise a [`Hash`] as standard base64 (matching `Hash`'s own `Deserialize`).
/// Use with `#[serde(serialize_with = "wardkey_audit::serialize_hash_base64")]`.
pub fn serialize_hash_base64<S: serde::Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(h)
}
