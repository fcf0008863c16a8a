//! The one error type of the crate.
//!
//! Every error names the byte offset where parsing stopped and what was wrong there, so that a
//! SCIM `400` response (`detail`) tells the client exactly which part of its filter to fix.
//! The variant says which RFC 7644 §3.12 `scimType` applies.

/// Why a filter or a PATCH path was refused.
///
/// The variant decides the RFC 7644 §3.12 `scimType` ([`ScimFilterError::scim_type`]); the
/// [`Reason`] says what was wrong, and `offset` where (a byte offset into the input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScimFilterError {
    /// The filter (a `filter` query parameter, or the `[...]` part of a PATCH path) is malformed.
    #[error("invalid filter at byte {offset}: {reason}")]
    InvalidFilter { offset: usize, reason: Reason },
    /// The PATCH `path` is malformed outside any `[...]` filter.
    #[error("invalid path at byte {offset}: {reason}")]
    InvalidPath { offset: usize, reason: Reason },
}

impl ScimFilterError {
    /// The RFC 7644 §3.12 `scimType` for the error response: `"invalidFilter"` or `"invalidPath"`.
    ///
    /// A syntax error inside the brackets of a PATCH path (`members[value eq ]`) is
    /// `invalidFilter`: §3.12 lists "PATCH (Path Filter)" under `invalidFilter`, and
    /// `invalidPath` for the rest of a malformed path.
    pub fn scim_type(&self) -> &'static str {
        match self {
            ScimFilterError::InvalidFilter { .. } => "invalidFilter",
            ScimFilterError::InvalidPath { .. } => "invalidPath",
        }
    }

    /// The byte offset into the input where the problem was found.
    pub fn offset(&self) -> usize {
        match self {
            ScimFilterError::InvalidFilter { offset, .. } | ScimFilterError::InvalidPath { offset, .. } => *offset,
        }
    }

    /// What was wrong.
    pub fn reason(&self) -> &Reason {
        match self {
            ScimFilterError::InvalidFilter { reason, .. } | ScimFilterError::InvalidPath { reason, .. } => reason,
        }
    }
}

/// What was wrong with the input. `found` fields quote at most the first 40 characters of the
/// offending text, so an error message never echoes a whole 8 KiB input back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Reason {
    #[error("the input is empty")]
    Empty,
    #[error("the input is {len} bytes long; at most {max} are accepted")]
    TooLong { len: usize, max: usize },
    #[error("nesting deeper than {max} levels (each '(', \"not (\" and value path '[' opens a level)")]
    TooDeep { max: usize },
    #[error("more than {max} attribute expressions")]
    TooManyTerms { max: usize },
    #[error("expected {expected}, found {found}")]
    Expected { expected: &'static str, found: String },
    #[error("unknown operator {found}; expected one of eq, ne, co, sw, ew, gt, lt, ge, le or pr")]
    UnknownOperator { found: String },
    #[error("\"pr\" takes no value, found {found}")]
    PresentWithValue { found: String },
    #[error("expected {expected} closing the '{open}' at byte {opened_at}, found {found}")]
    Unclosed { open: char, opened_at: usize, expected: &'static str, found: String },
    #[error("'{close}' has no matching '{open}'")]
    Unmatched { open: char, close: char },
    #[error("unterminated string: no closing '\"'")]
    UnterminatedString,
    #[error("invalid escape in string: {0}")]
    InvalidEscape(&'static str),
    #[error("control character U+{0:04X} in string; it must be escaped")]
    ControlCharacter(u32),
    #[error("invalid number {found}; numbers are JSON numbers such as 42, -1.5 or 1e3")]
    InvalidNumber { found: String },
    #[error("number {found} is out of range")]
    NumberOutOfRange { found: String },
    #[error("invalid attribute name {found}: {why}")]
    InvalidAttrName { found: String, why: &'static str },
    #[error("invalid schema URN {found}: {why}")]
    InvalidUrn { found: String, why: &'static str },
    #[error("value paths cannot be nested: a filter inside '[...]' cannot contain another '['")]
    NestedValuePath,
    #[error("a value path's attribute cannot have a sub-attribute (complex attributes do not nest)")]
    SubAttrBeforeValuePath,
}
