//! SCIM 2.0 filter and PATCH path parsing: the `filter` query parameter of RFC 7644 §3.4.2.2
//! and the `path` of a PATCH operation (§3.5.2), with RFC 7643 attribute names and schema URNs.
//!
//! The crate is pure: no I/O, no database, no clock. It turns text into a syntax tree
//! ([`Filter`], [`PatchPath`]) or a [`ScimFilterError`] carrying the byte offset, what was
//! expected there, and the `scimType` for the response. Evaluating a filter against resources
//! (and schema-aware checks, such as refusing `gt` on a boolean attribute) is left to the caller.
//!
//! ```
//! use wardkey_scim::{parse_filter, parse_patch_path, CompareOp, Filter, PatchPath};
//!
//! let filter = parse_filter(r#"userName Eq "bjensen" and not (emails pr)"#)?;
//! assert_eq!(filter.to_string(), r#"userName eq "bjensen" and not (emails pr)"#);
//! let Filter::And(left, _) = &filter else { unreachable!() };
//! assert!(matches!(**left, Filter::Compare { op: CompareOp::Eq, .. }));
//!
//! let path = parse_patch_path(r#"emails[type eq "work"].value"#)?;
//! assert!(matches!(path, PatchPath::ValuePath { .. }));
//!
//! let error = parse_filter(r#"userName xx "a""#).unwrap_err();
//! assert_eq!(error.scim_type(), "invalidFilter");
//! assert_eq!(error.offset(), 9);
//! # Ok::<(), wardkey_scim::ScimFilterError>(())
//! ```
//!
//! # Grammar
//!
//! ```text
//! filter     = or-expr
//! or-expr    = and-expr *("or" and-expr)            ; left-nested: a or b or c = (a or b) or c
//! and-expr   = unary *("and" unary)                 ; "and" binds tighter than "or"
//! unary      = "(" or-expr ")"
//!            / "not" "(" or-expr ")"                ; the parentheses are required
//!            / attr-expr
//! attr-expr  = attrPath "pr"
//!            / attrPath compareOp compValue
//!            / attrPath "[" or-expr "]" [ "." ATTRNAME ("pr" / compareOp compValue) ]
//!                                                   ; no "[" inside "[...]"; the trailing
//!                                                   ; part is Microsoft Entra ID's form
//! attrPath   = [URN ":"] ATTRNAME ["." ATTRNAME]    ; no sub-attribute before "["
//! ATTRNAME   = ALPHA *(ALPHA / DIGIT / "-" / "_") / "$ref"
//! URN        = "urn:" NID ":" NSS                   ; RFC 8141; the URN is everything
//!                                                   ; before the path's last ":"
//! compareOp  = "eq" / "ne" / "co" / "sw" / "ew" / "gt" / "lt" / "ge" / "le"
//! compValue  = JSON string / JSON number / "true" / "false" / "null"
//!
//! patch-path = attrPath / attrPath "[" or-expr "]" ["." ATTRNAME]
//! ```
//!
//! Keywords, operators and `true`/`false`/`null` are case-insensitive. Attribute names are
//! case-insensitive too: [`Name`] keeps the spelling as written and a lower-cased
//! [`Name::key`] for matching. Whitespace between tokens may be any run of ASCII whitespace,
//! and may be left out where the next token is self-delimiting (`(a eq "x")and(b pr)`); the
//! `[` of a value path and the `.` after its `]` must follow without space.
//!
//! # Limits
//!
//! Every parse runs under [`Limits`] (defaults: [`MAX_INPUT_LEN`] = 8 KiB, [`MAX_DEPTH`] = 64
//! levels, [`MAX_TERMS`] = 1,000 attribute expressions). Anything beyond them is a clean
//! error: 10,000 nested parentheses or 100,000 `not (` are refused at once, never a stack
//! overflow. Parsing is linear in the input: one token of look-ahead, no backtracking.
//!
//! # Why a hand-written parser
//!
//! The grammar is small, and the properties that matter here are easy to guarantee by hand and
//! hard to retrofit onto a generated or combinator parser: recursion only where the input
//! nests, an explicit depth counter checked before each recursion, no backtracking (published
//! Rust SCIM filter crates overflow the stack on deep nesting or backtrack exponentially),
//! no panics on any input (indexing goes through `get`), errors that point at a byte offset,
//! and no dependency beyond `thiserror`.
//!
//! # Printing
//!
//! [`Filter`]'s `Display` is a canonical form (lower-case keywords, single spaces, JSON-escaped
//! strings, numbers as written, parentheses only where the tree needs them) that parses back
//! to an equal tree.
//!
//! # Decisions the RFC leaves open
//!
//! - `and` and `or` cannot start a term and `not` must be followed by `(`, so no attribute can
//!   be called `and`, `or` or `not` in a filter (none is, in any SCIM schema).
//! - A value path's attribute cannot have a sub-attribute (`name.x[...]`): RFC 7643 §2.3.8 says
//!   complex attributes do not nest, so such a path could never match.
//! - Inside `[...]`, attribute paths may still be URN-qualified or have a sub-attribute, as
//!   the RFC's `valFilter` grammar allows; what they mean is the evaluator's business.
//! - The URN of a path is everything before its last `:`, so a bare schema URN used as a PATCH
//!   path (`urn:...:enterprise:2.0:User`) parses as attribute `User` of schema
//!   `urn:...:enterprise:2.0`; a caller that accepts such paths must check the schema list.
//! - Value paths inside parentheses are allowed (`(emails[type eq "work"])`), although the
//!   RFC's ABNF only reaches them outside parentheses.

mod ast;
mod error;
mod limits;
mod parser;
pub mod patch;
pub mod resource;
pub mod schema;
pub mod sql;

pub use ast::{AttrPath, CompValue, CompareOp, Condition, Filter, Name, Number, PatchPath, SubAttrCondition};
pub use error::{Reason, ScimFilterError};
pub use limits::{HARD_MAX_DEPTH, HARD_MAX_TERMS, Limits, MAX_DEPTH, MAX_INPUT_LEN, MAX_TERMS};

/// Parses a SCIM filter under the default [`Limits`]. Errors are `invalidFilter`.
pub fn parse_filter(input: &str) -> Result<Filter, ScimFilterError> {
    parse_filter_with(input, Limits::DEFAULT)
}

/// Parses a SCIM filter under the given limits.
pub fn parse_filter_with(input: &str, limits: Limits) -> Result<Filter, ScimFilterError> {
    parser::Parser::filter(input, limits).map_err(|e| *e)
}

/// Parses a PATCH operation's `path` under the default [`Limits`]. Errors are `invalidPath`,
/// except inside a value path's `[...]`, where they are `invalidFilter`.
pub fn parse_patch_path(input: &str) -> Result<PatchPath, ScimFilterError> {
    parse_patch_path_with(input, Limits::DEFAULT)
}

/// Parses a PATCH operation's `path` under the given limits.
pub fn parse_patch_path_with(input: &str, limits: Limits) -> Result<PatchPath, ScimFilterError> {
    parser::Parser::patch_path(input, limits).map_err(|e| *e)
}

impl std::str::FromStr for Filter {
    type Err = ScimFilterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_filter(s)
    }
}

impl std::str::FromStr for PatchPath {
    type Err = ScimFilterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_patch_path(s)
    }
}
