/// The one error type of this crate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// An argument is out of range (e.g. `index >= size`, `from > to`).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A hash or a hashes blob has the wrong length or encoding.
    #[error("malformed hash: {0}")]
    MalformedHash(String),
    /// The computation needs these stored-hash indices, absent from the cache.
    #[error("missing {} stored hash(es), first index {}", .0.len(), .0.first().copied().unwrap_or(0))]
    MissingHashes(Vec<u64>),
    /// A Merkle proof does not verify.
    #[error("invalid Merkle proof")]
    InvalidProof,
    /// A key file or verifier key is malformed or inconsistent.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A signed checkpoint is malformed, badly signed, or for another log.
    #[error("invalid checkpoint: {0}")]
    InvalidCheckpoint(String),
    /// Not one of `success`, `denied`, `failure`.
    #[error("unknown outcome {0:?}")]
    UnknownOutcome(String),
    /// Unexpected failure inside the tree library.
    #[error("tree computation failed: {0}")]
    Tree(String),
}

impl From<tlog_tiles::Error> for AuditError {
    fn from(e: tlog_tiles::Error) -> Self {
        match e {
            tlog_tiles::Error::InvalidProof => AuditError::InvalidProof,
            tlog_tiles::Error::InvalidInput(s) => AuditError::InvalidInput(s),
            other => AuditError::Tree(other.to_string()),
        }
    }
}
