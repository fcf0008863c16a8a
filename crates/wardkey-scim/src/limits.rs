//! Bounds on what the parser accepts, so that neither time nor stack depends on the input
//! beyond them.

/// Default maximum input length in bytes. Real filters from identity providers are a few
/// dozen bytes; 8 KiB is also a common URL length limit of HTTP front ends.
pub const MAX_INPUT_LEN: usize = 8 * 1024;

/// Default maximum nesting depth: each `(`, `not (` and value path `[` opens one level.
/// Real filters nest two or three levels.
pub const MAX_DEPTH: usize = 64;

/// Default maximum number of attribute expressions (comparisons and `pr` tests, including
/// those inside value paths). An `or` chain of ids for a batch lookup is the largest real use.
pub const MAX_TERMS: usize = 1_000;

/// The highest depth [`Limits::with_max_depth`] accepts. The parser recurses three frames per
/// level, so this keeps parsing far inside a 2 MiB thread stack.
pub const HARD_MAX_DEPTH: usize = 256;

/// The highest term count [`Limits::with_max_terms`] accepts. An `and`/`or` chain is as deep
/// as it is long, and the compiler-generated `Drop`, `Clone`, `PartialEq` and `Debug` of
/// [`crate::Filter`] recurse through it: this cap keeps them inside a 2 MiB thread stack
/// (tested in debug builds).
pub const HARD_MAX_TERMS: usize = 10_000;

/// The limits one parse runs under. [`Limits::DEFAULT`] suits a SCIM endpoint; raise them
/// (up to the hard caps) only for trusted input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    max_len: usize,
    max_depth: usize,
    max_terms: usize,
}

impl Limits {
    pub const DEFAULT: Limits = Limits { max_len: MAX_INPUT_LEN, max_depth: MAX_DEPTH, max_terms: MAX_TERMS };

    /// Maximum input length in bytes. Not capped: time is linear in the length, and the term
    /// and depth limits bound everything the length could otherwise make grow.
    pub const fn with_max_len(self, max_len: usize) -> Limits {
        Limits { max_len, ..self }
    }

    /// Maximum nesting depth, capped at [`HARD_MAX_DEPTH`].
    pub const fn with_max_depth(self, max_depth: usize) -> Limits {
        let max_depth = if max_depth > HARD_MAX_DEPTH { HARD_MAX_DEPTH } else { max_depth };
        Limits { max_depth, ..self }
    }

    /// Maximum number of attribute expressions, capped at [`HARD_MAX_TERMS`].
    pub const fn with_max_terms(self, max_terms: usize) -> Limits {
        let max_terms = if max_terms > HARD_MAX_TERMS { HARD_MAX_TERMS } else { max_terms };
        Limits { max_terms, ..self }
    }

    pub const fn max_len(&self) -> usize {
        self.max_len
    }

    pub const fn max_depth(&self) -> usize {
        self.max_depth
    }

    pub const fn max_terms(&self) -> usize {
        self.max_terms
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}
