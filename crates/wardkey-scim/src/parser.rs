//! The lexer and the recursive-descent parser.
//!
//! Design points, each there for a reason:
//!
//! - One token of look-ahead (cached, so each token is lexed once) and never any
//!   backtracking, so time is linear in the input.
//! - `and`/`or` chains are loops, not recursion: the parser recurses only where the input
//!   nests (`(`, `not (`, `[`), and each of those first passes [`Parser::enter`], which
//!   refuses to go deeper than [`Limits::max_depth`]. Stack use is therefore bounded by the
//!   limits, not by the input.
//! - All indexing goes through `get`, so no input can make the parser panic; an impossible
//!   case degrades to an error or an empty slice rather than an abort.

use crate::ast::{
    AttrPath, CompValue, CompareOp, Condition, Filter, Name, Number, NumberError, PatchPath, SubAttrCondition,
};
use crate::error::{Reason, ScimFilterError};
use crate::limits::Limits;

/// At most this many characters of the offending text are quoted in an error.
const QUOTE_MAX_CHARS: usize = 40;

/// Errors are boxed inside the parser so that every `Result` on the recursive path is two
/// words: in a debug build each frame keeps a slot per temporary, and unboxed results (a
/// `Filter` is a few hundred bytes) made a nesting level cost over ten kilobytes of stack.
type Result<T> = std::result::Result<T, Box<ScimFilterError>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    LParen,
    RParen,
    LBracket,
    RBracket,
    /// A double-quoted string, quotes included in the span; decoded only when used as a value.
    Str,
    /// A maximal run of anything but whitespace, parentheses, brackets and `"`: attribute
    /// paths, operators, keywords, numbers, `true`/`false`/`null`.
    Word,
    Eof,
}

#[derive(Debug, Clone, Copy)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

/// Which `scimType` errors get: a PATCH path's bracketed filter is parsed as a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Filter,
    Path,
}

pub(crate) struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    peeked: Option<Token>,
    limits: Limits,
    terms: usize,
    ctx: Ctx,
}

fn is_delimiter(b: u8) -> bool {
    b.is_ascii_whitespace() || matches!(b, b'(' | b')' | b'[' | b']' | b'"')
}

/// Quotes the start of `text` for an error message, cut on a character boundary.
fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_MAX_CHARS) {
        Some((cut, _)) => format!("{:?}...", text.get(..cut).unwrap_or_default()),
        None => format!("{text:?}"),
    }
}

impl<'a> Parser<'a> {
    fn new(src: &'a str, limits: Limits, ctx: Ctx) -> Self {
        Parser { src, bytes: src.as_bytes(), pos: 0, peeked: None, limits, terms: 0, ctx }
    }

    /// Parses a whole filter.
    pub(crate) fn filter(src: &'a str, limits: Limits) -> Result<Filter> {
        let mut p = Parser::new(src, limits, Ctx::Filter);
        p.check_input()?;
        let filter = p.parse_expr(0, false)?;
        let t = p.peek()?;
        match t.kind {
            Kind::Eof => Ok(*filter),
            Kind::RParen => Err(p.err(t.start, Reason::Unmatched { open: '(', close: ')' })),
            Kind::RBracket => Err(p.err(t.start, Reason::Unmatched { open: '[', close: ']' })),
            _ => Err(p.expected(t, "\"and\", \"or\" or the end of the filter")),
        }
    }

    /// Parses a whole PATCH path: `attrPath` or `attrPath "[" valFilter "]" ["." subAttr]`.
    pub(crate) fn patch_path(src: &'a str, limits: Limits) -> Result<PatchPath> {
        let mut p = Parser::new(src, limits, Ctx::Path);
        p.check_input()?;
        let t = p.peek()?;
        if t.kind != Kind::Word {
            return Err(p.expected(t, "an attribute path"));
        }
        p.bump(t);
        let path = p.attr_path(t)?;
        let result = if p.byte_at(p.pos) == Some(b'[') {
            if path.sub_attr.is_some() {
                return Err(p.err(p.pos, Reason::SubAttrBeforeValuePath));
            }
            // The bracketed part is a filter: errors inside it are `invalidFilter`.
            p.ctx = Ctx::Filter;
            let filter = p.value_filter(&path, 0)?;
            p.ctx = Ctx::Path;
            let sub_attr = if p.byte_at(p.pos) == Some(b'.') { Some(p.sub_attr_after_bracket()?) } else { None };
            PatchPath::ValuePath { path, filter, sub_attr }
        } else {
            PatchPath::Attr(path)
        };
        let t = p.peek()?;
        match t.kind {
            Kind::Eof => Ok(result),
            Kind::RBracket => Err(p.err(t.start, Reason::Unmatched { open: '[', close: ']' })),
            _ => Err(p.expected(t, "the end of the path")),
        }
    }

    /// The checks that need no parsing: length first (so nothing below ever looks at an
    /// oversized input), then emptiness.
    fn check_input(&self) -> Result<()> {
        let max = self.limits.max_len();
        if self.src.len() > max {
            return Err(self.err(max, Reason::TooLong { len: self.src.len(), max }));
        }
        if self.src.trim_ascii().is_empty() {
            return Err(self.err(0, Reason::Empty));
        }
        Ok(())
    }

    // ---- errors -------------------------------------------------------------------------

    fn err(&self, offset: usize, reason: Reason) -> Box<ScimFilterError> {
        Box::new(match self.ctx {
            Ctx::Filter => ScimFilterError::InvalidFilter { offset, reason },
            Ctx::Path => ScimFilterError::InvalidPath { offset, reason },
        })
    }

    fn describe(&self, t: Token) -> String {
        match t.kind {
            Kind::LParen => "'('".to_owned(),
            Kind::RParen => "')'".to_owned(),
            Kind::LBracket => "'['".to_owned(),
            Kind::RBracket => "']'".to_owned(),
            Kind::Str => format!("the string {}", quote(self.slice(t.start, t.end))),
            Kind::Word => quote(self.slice(t.start, t.end)),
            Kind::Eof => "the end of the input".to_owned(),
        }
    }

    fn expected(&self, t: Token, expected: &'static str) -> Box<ScimFilterError> {
        self.err(t.start, Reason::Expected { expected, found: self.describe(t) })
    }

    // ---- lexing -------------------------------------------------------------------------

    fn slice(&self, start: usize, end: usize) -> &'a str {
        // Token boundaries are always at ASCII bytes or the ends, so this never falls back.
        self.src.get(start..end).unwrap_or_default()
    }

    fn byte_at(&self, i: usize) -> Option<u8> {
        self.bytes.get(i).copied()
    }

    /// The next token, without consuming it.
    fn peek(&mut self) -> Result<Token> {
        if let Some(t) = self.peeked {
            return Ok(t);
        }
        let t = self.lex()?;
        self.peeked = Some(t);
        Ok(t)
    }

    /// Consumes a token returned by [`Parser::peek`].
    fn bump(&mut self, t: Token) {
        self.pos = t.end;
        self.peeked = None;
    }

    fn lex(&self) -> Result<Token> {
        let mut start = self.pos;
        while self.byte_at(start).is_some_and(|b| b.is_ascii_whitespace()) {
            start += 1;
        }
        let Some(b) = self.byte_at(start) else {
            return Ok(Token { kind: Kind::Eof, start, end: start });
        };
        let single = |kind| Ok(Token { kind, start, end: start + 1 });
        match b {
            b'(' => single(Kind::LParen),
            b')' => single(Kind::RParen),
            b'[' => single(Kind::LBracket),
            b']' => single(Kind::RBracket),
            b'"' => {
                // Find the closing quote; a backslash always takes the next byte with it (the
                // decoder validates escapes later). `"` and `\` never occur inside a multi-byte
                // UTF-8 sequence, so scanning bytes is exact.
                let mut i = start + 1;
                loop {
                    match self.byte_at(i) {
                        None => return Err(self.err(start, Reason::UnterminatedString)),
                        Some(b'"') => {
                            return Ok(Token { kind: Kind::Str, start, end: i + 1 });
                        }
                        Some(b'\\') => i += 2,
                        Some(_) => i += 1,
                    }
                }
            }
            _ => {
                let mut end = start + 1;
                while self.byte_at(end).is_some_and(|b| !is_delimiter(b)) {
                    end += 1;
                }
                Ok(Token { kind: Kind::Word, start, end })
            }
        }
    }

    fn is_keyword(&self, t: Token, keyword: &str) -> bool {
        t.kind == Kind::Word && self.slice(t.start, t.end).eq_ignore_ascii_case(keyword)
    }

    // ---- limits -------------------------------------------------------------------------

    /// Every construct that makes the parser recurse passes here first.
    fn enter(&self, depth: usize, at: usize) -> Result<usize> {
        let depth = depth + 1;
        if depth > self.limits.max_depth() {
            return Err(self.err(at, Reason::TooDeep { max: self.limits.max_depth() }));
        }
        Ok(depth)
    }

    /// Counts one attribute expression (comparison or presence test).
    fn count_term(&mut self, at: usize) -> Result<()> {
        self.terms += 1;
        if self.terms > self.limits.max_terms() {
            return Err(self.err(at, Reason::TooManyTerms { max: self.limits.max_terms() }));
        }
        Ok(())
    }

    // ---- filters ------------------------------------------------------------------------

    /// `unary *("and" unary) *("or" unary *("and" unary))`: `or` of `and`s, both left-nested.
    ///
    /// One loop for both levels of precedence (rather than a function per level) so that a
    /// nesting level costs two stack frames (this and [`Parser::parse_unary`]), not three.
    fn parse_expr(&mut self, depth: usize, in_value_path: bool) -> Result<Box<Filter>> {
        // `done` is the `or` chain so far; `and` the `and` chain being built after its last `or`.
        let mut done: Option<Box<Filter>> = None;
        let mut and = self.parse_unary(depth, in_value_path)?;
        loop {
            let t = self.peek()?;
            if self.is_keyword(t, "and") {
                self.bump(t);
                let right = self.parse_unary(depth, in_value_path)?;
                and = Box::new(Filter::And(and, right));
            } else if self.is_keyword(t, "or") {
                self.bump(t);
                done = Some(match done {
                    Some(left) => Box::new(Filter::Or(left, and)),
                    None => and,
                });
                and = self.parse_unary(depth, in_value_path)?;
            } else {
                return Ok(match done {
                    Some(left) => Box::new(Filter::Or(left, and)),
                    None => and,
                });
            }
        }
    }

    /// `"(" filter ")"` | `"not" "(" filter ")"` | attribute expression.
    fn parse_unary(&mut self, depth: usize, in_value_path: bool) -> Result<Box<Filter>> {
        const WANT: &str = "an attribute path, '(' or \"not (\"";
        let t = self.peek()?;
        match t.kind {
            Kind::LParen => {
                self.bump(t);
                let inner_depth = self.enter(depth, t.start)?;
                let inner = self.parse_expr(inner_depth, in_value_path)?;
                self.close(Kind::RParen, t.start)?;
                Ok(inner)
            }
            Kind::Word if self.is_keyword(t, "not") => {
                self.bump(t);
                // RFC 7644: `"not" "(" valFilter ")"` – the parentheses are required.
                let open = self.peek()?;
                if open.kind != Kind::LParen {
                    return Err(self.expected(open, "'(' after \"not\""));
                }
                self.bump(open);
                let inner_depth = self.enter(depth, t.start)?;
                let inner = self.parse_expr(inner_depth, in_value_path)?;
                self.close(Kind::RParen, open.start)?;
                Ok(Box::new(Filter::Not(inner)))
            }
            // `and`/`or` where a term should start is a missing term, not an attribute name.
            Kind::Word if self.is_keyword(t, "and") || self.is_keyword(t, "or") => Err(self.expected(t, WANT)),
            Kind::Word => self.parse_attr_expr(t, depth, in_value_path),
            _ => Err(self.expected(t, WANT)),
        }
    }

    /// Consumes the closing `)` or `]` of a group opened at `opened_at`.
    fn close(&mut self, kind: Kind, opened_at: usize) -> Result<()> {
        let t = self.peek()?;
        if t.kind == kind {
            self.bump(t);
            return Ok(());
        }
        let (open, expected) = match kind {
            Kind::RBracket => ('[', "\"and\", \"or\" or ']'"),
            _ => ('(', "\"and\", \"or\" or ')'"),
        };
        Err(self.err(t.start, Reason::Unclosed { open, opened_at, expected, found: self.describe(t) }))
    }

    /// `path pr` | `path op value` | `path "[" valFilter "]" ["." subAttr (pr | op value)]`.
    /// `t` is the (peeked) word holding the path.
    fn parse_attr_expr(&mut self, t: Token, depth: usize, in_value_path: bool) -> Result<Box<Filter>> {
        self.bump(t);
        let path = self.attr_path(t)?;
        // A value path's `[` must follow the attribute directly: `emails[...]`.
        if self.byte_at(self.pos) == Some(b'[') {
            if in_value_path {
                return Err(self.err(self.pos, Reason::NestedValuePath));
            }
            let filter = self.value_filter(&path, depth)?;
            let sub_attr = if self.byte_at(self.pos) == Some(b'.') {
                let at = self.pos;
                let sub_attr = self.sub_attr_after_bracket()?;
                self.count_term(at)?;
                Some(SubAttrCondition { sub_attr, condition: self.condition()? })
            } else {
                None
            };
            return Ok(Box::new(Filter::ValuePath { path, filter, sub_attr }));
        }
        self.count_term(t.start)?;
        Ok(Box::new(match self.condition()? {
            Condition::Present => Filter::Present { path },
            Condition::Compare { op, value } => Filter::Compare { path, op, value },
        }))
    }

    /// `"[" valFilter "]"`, with `self.pos` on the `[`.
    fn value_filter(&mut self, path: &AttrPath, depth: usize) -> Result<Box<Filter>> {
        let open = self.pos;
        if path.sub_attr.is_some() {
            return Err(self.err(open, Reason::SubAttrBeforeValuePath));
        }
        self.pos += 1;
        self.peeked = None;
        let inner_depth = self.enter(depth, open)?;
        let filter = self.parse_expr(inner_depth, true)?;
        self.close(Kind::RBracket, open)?;
        Ok(filter)
    }

    /// `"." ATTRNAME` directly after a `]`, with `self.pos` on the `.`.
    fn sub_attr_after_bracket(&mut self) -> Result<Name> {
        let start = self.pos + 1;
        let mut end = start;
        while self.byte_at(end).is_some_and(|b| !is_delimiter(b)) {
            end += 1;
        }
        let name = self.slice(start, end);
        check_attr_name(name).map_err(|(i, reason)| self.err(start + i, reason))?;
        self.pos = end;
        self.peeked = None;
        Ok(Name::new(name))
    }

    /// `"pr"` | compareOp compValue.
    fn condition(&mut self) -> Result<Condition> {
        let t = self.peek()?;
        if t.kind != Kind::Word {
            return Err(self.expected(t, "an operator (eq, ne, co, sw, ew, gt, lt, ge, le or pr)"));
        }
        if self.is_keyword(t, "pr") {
            self.bump(t);
            // `title pr "x"`: say what is wrong rather than "expected and/or".
            let next = self.peek()?;
            if self.looks_like_value(next) {
                return Err(self.err(next.start, Reason::PresentWithValue { found: self.describe(next) }));
            }
            return Ok(Condition::Present);
        }
        let Some(op) = CompareOp::from_keyword(self.slice(t.start, t.end)) else {
            return Err(self.err(t.start, Reason::UnknownOperator { found: self.describe(t) }));
        };
        self.bump(t);
        let value = self.value()?;
        Ok(Condition::Compare { op, value })
    }

    fn looks_like_value(&self, t: Token) -> bool {
        match t.kind {
            Kind::Str => true,
            Kind::Word => self.starts_like_number(t) || ["true", "false", "null"].iter().any(|k| self.is_keyword(t, k)),
            _ => false,
        }
    }

    /// A word meant as a number, well-formed or not: `+1` and `.5` get "invalid number" rather
    /// than "expected a value".
    fn starts_like_number(&self, t: Token) -> bool {
        matches!(self.byte_at(t.start), Some(b'-' | b'+' | b'.' | b'0'..=b'9'))
    }

    /// compValue: a JSON string or number, or `true`/`false`/`null` in any case.
    fn value(&mut self) -> Result<CompValue> {
        const WANT: &str = "a value (a \"double-quoted\" string, a number, true, false or null)";
        let t = self.peek()?;
        let value = match t.kind {
            Kind::Str => CompValue::String(self.decode_string(t)?),
            Kind::Word if self.is_keyword(t, "true") => CompValue::Bool(true),
            Kind::Word if self.is_keyword(t, "false") => CompValue::Bool(false),
            Kind::Word if self.is_keyword(t, "null") => CompValue::Null,
            Kind::Word if self.starts_like_number(t) => {
                let text = self.slice(t.start, t.end);
                let number = Number::parse_checked(text).map_err(|e| {
                    let found = quote(text);
                    self.err(
                        t.start,
                        match e {
                            NumberError::Syntax => Reason::InvalidNumber { found },
                            NumberError::OutOfRange => Reason::NumberOutOfRange { found },
                        },
                    )
                })?;
                CompValue::Number(number)
            }
            _ => return Err(self.expected(t, WANT)),
        };
        self.bump(t);
        Ok(value)
    }

    /// Decodes a JSON string token (RFC 8259 §7): the escapes `\" \\ \/ \b \f \n \r \t \uXXXX`
    /// (surrogate pairs combined, lone surrogates refused), no raw control characters.
    fn decode_string(&self, t: Token) -> Result<String> {
        let start = t.start + 1;
        let body = self.slice(start, t.end.saturating_sub(1));
        let b = body.as_bytes();
        let mut out = String::with_capacity(body.len());
        let mut run = 0; // start of the not-yet-copied run of plain characters
        let mut i = 0;
        while let Some(&c) = b.get(i) {
            if c < 0x20 {
                return Err(self.err(start + i, Reason::ControlCharacter(u32::from(c))));
            }
            if c != b'\\' {
                i += 1;
                continue;
            }
            out.push_str(body.get(run..i).unwrap_or_default());
            let escape_at = start + i;
            let simple = match b.get(i + 1) {
                Some(b'"') => Some('"'),
                Some(b'\\') => Some('\\'),
                Some(b'/') => Some('/'),
                Some(b'b') => Some('\u{8}'),
                Some(b'f') => Some('\u{c}'),
                Some(b'n') => Some('\n'),
                Some(b'r') => Some('\r'),
                Some(b't') => Some('\t'),
                Some(b'u') => None,
                _ => {
                    return Err(self.err(
                        escape_at,
                        Reason::InvalidEscape("expected one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u"),
                    ));
                }
            };
            if let Some(ch) = simple {
                out.push(ch);
                i += 2;
            } else {
                let bad = |why| self.err(escape_at, Reason::InvalidEscape(why));
                let hi = hex4(b, i + 2).ok_or_else(|| bad("\\u needs four hex digits"))?;
                i += 6;
                let code = match hi {
                    0xD800..=0xDBFF => {
                        // A high surrogate must be followed by an escaped low surrogate.
                        let lo = (b.get(i) == Some(&b'\\') && b.get(i + 1) == Some(&b'u'))
                            .then(|| hex4(b, i + 2))
                            .flatten()
                            .filter(|lo| (0xDC00..=0xDFFF).contains(lo))
                            .ok_or_else(|| bad("unpaired UTF-16 surrogate"))?;
                        i += 6;
                        0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                    }
                    0xDC00..=0xDFFF => return Err(bad("unpaired UTF-16 surrogate")),
                    _ => hi,
                };
                out.push(char::from_u32(code).ok_or_else(|| bad("not a Unicode scalar value"))?);
            }
            run = i;
        }
        out.push_str(body.get(run..).unwrap_or_default());
        Ok(out)
    }

    // ---- attribute paths ----------------------------------------------------------------

    /// `[URN ":"] ATTRNAME ["." ATTRNAME]` from a word token.
    ///
    /// The schema URN is everything before the *last* colon: URNs contain colons and dots
    /// (`...:core:2.0:User`), attribute names contain neither. Sub-attributes are split off
    /// after that, so `urn:...:User:name.familyName` works.
    fn attr_path(&self, t: Token) -> Result<AttrPath> {
        let word = self.slice(t.start, t.end);
        let fail = |(i, reason): (usize, Reason)| self.err(t.start + i, reason);
        let (schema, rest, rest_at) = match word.rfind(':') {
            Some(colon) => {
                let urn = word.get(..colon).unwrap_or_default();
                check_urn(urn).map_err(fail)?;
                (Some(Name::new(urn)), word.get(colon + 1..).unwrap_or_default(), colon + 1)
            }
            None => (None, word, 0),
        };
        if rest.is_empty() {
            return Err(fail((
                rest_at,
                Reason::InvalidAttrName {
                    found: quote(word),
                    why: "the attribute name after the schema URN is missing",
                },
            )));
        }
        let (attr, sub) = match rest.split_once('.') {
            Some((attr, sub)) => (attr, Some(sub)),
            None => (rest, None),
        };
        check_attr_name(attr).map_err(|(i, r)| fail((rest_at + i, r)))?;
        let sub_attr = match sub {
            Some(sub) => {
                let sub_at = rest_at + attr.len() + 1;
                if let Some(dot) = sub.find('.') {
                    return Err(fail((
                        sub_at + dot,
                        Reason::InvalidAttrName {
                            found: quote(rest),
                            why: "at most one sub-attribute is allowed (\"name.givenName\")",
                        },
                    )));
                }
                check_attr_name(sub).map_err(|(i, r)| fail((sub_at + i, r)))?;
                Some(Name::new(sub))
            }
            None => None,
        };
        Ok(AttrPath { schema, attr: Name::new(attr), sub_attr })
    }
}

/// `\uXXXX`'s four hex digits at `i`.
fn hex4(b: &[u8], i: usize) -> Option<u32> {
    let digits = b.get(i..i + 4)?;
    digits.iter().try_fold(0u32, |acc, &d| Some(acc * 16 + char::from(d).to_digit(16)?))
}

/// RFC 7643 §2.1: `ATTRNAME = ALPHA *(nameChar)`, `nameChar = "-" / "_" / DIGIT / ALPHA`;
/// plus `$ref`, the one name RFC 7643 gives outside that grammar (`members.$ref`).
/// On error, the offset within `name` and the reason.
fn check_attr_name(name: &str) -> std::result::Result<(), (usize, Reason)> {
    if name.eq_ignore_ascii_case("$ref") {
        return Ok(());
    }
    let invalid = |i, why| (i, Reason::InvalidAttrName { found: quote(name), why });
    let mut bytes = name.bytes().enumerate();
    match bytes.next() {
        None => return Err(invalid(0, "the name is empty")),
        Some((_, b)) if b.is_ascii_alphabetic() => {}
        Some((i, _)) => return Err(invalid(i, "an attribute name starts with a letter")),
    }
    match bytes.find(|&(_, b)| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_')) {
        Some((i, _)) => Err(invalid(i, "an attribute name has only letters, digits, '-' and '_'")),
        None => Ok(()),
    }
}

/// A schema URN (RFC 8141): `"urn:" NID ":" NSS`, NID 2 to 32 letters, digits or `-`
/// (starting and ending with a letter or digit), NSS non-empty `pchar`s and `/`.
/// On error, the offset within `urn` and the reason.
fn check_urn(urn: &str) -> std::result::Result<(), (usize, Reason)> {
    let invalid = |i, why| (i, Reason::InvalidUrn { found: quote(urn), why });
    let has_prefix = urn.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"));
    if !has_prefix {
        return Err(invalid(0, "a schema must be a URN starting with \"urn:\""));
    }
    let rest = urn.get(4..).unwrap_or_default();
    let Some((nid, nss)) = rest.split_once(':') else {
        return Err(invalid(urn.len(), "expected \"urn:<namespace>:<name>\""));
    };
    let nid_ok = (2..=32).contains(&nid.len())
        && nid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !nid.starts_with('-')
        && !nid.ends_with('-');
    if !nid_ok {
        return Err(invalid(4, "the namespace must be 2 to 32 letters, digits or '-'"));
    }
    let nss_at = 4 + nid.len() + 1;
    if nss.is_empty() {
        return Err(invalid(nss_at, "the namespace-specific part is empty"));
    }
    let b = nss.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let ok = c.is_ascii_alphanumeric() || b"-._~!$&'*+,;=:@/".contains(&c);
        if ok {
            i += 1;
        } else if c == b'%' && b.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
            i += 3;
        } else {
            return Err(invalid(nss_at + i, "character not allowed in a URN"));
        }
    }
    Ok(())
}
