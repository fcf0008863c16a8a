//! The syntax tree and its canonical printing.
//!
//! Equality is structural and exact (original spellings included), so that "print, re-parse,
//! compare" is a meaningful round-trip check. Code that *matches* attributes should compare
//! the lower-cased [`Name::key`] instead: SCIM attribute names are case-insensitive.

use std::fmt::{self, Write as _};

/// An attribute name, a sub-attribute name or a schema URN, as written, with a lower-cased key.
///
/// The original spelling is kept so that errors, logs and [`Display`](fmt::Display) show what
/// the client sent; the key is computed once here because a filter evaluator compares names
/// for every resource it looks at.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Name {
    text: String,
    key: String,
}

impl Name {
    /// Wraps a name. No validation: the parser only builds names it has checked, and a
    /// hand-built tree with an invalid name simply prints something that will not re-parse.
    pub fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        // Names and URNs the parser accepts are ASCII, so ASCII lower-casing is the whole story.
        let key = text.to_ascii_lowercase();
        Name { text, key }
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The lower-cased comparison key (RFC 7643 §2.1: attribute names are case-insensitive).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Case-insensitive comparison with another spelling.
    pub fn eq_ignore_case(&self, other: &str) -> bool {
        self.text.eq_ignore_ascii_case(other)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Name").field(&self.text).finish()
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `[schema-urn ":"] attr ["." subAttr]` (RFC 7644 §3.10), e.g. `userName`, `name.familyName`,
/// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttrPath {
    /// The schema URN when the path is fully qualified (without the trailing `:`).
    pub schema: Option<Name>,
    pub attr: Name,
    pub sub_attr: Option<Name>,
}

impl AttrPath {
    /// A path with just an attribute name.
    pub fn new(attr: impl Into<String>) -> Self {
        AttrPath { schema: None, attr: Name::new(attr), sub_attr: None }
    }

    /// The whole path lower-cased, e.g. `name.familyname`: one string to look up.
    pub fn key(&self) -> String {
        let mut key = String::new();
        if let Some(schema) = &self.schema {
            key.push_str(schema.key());
            key.push(':');
        }
        key.push_str(self.attr.key());
        if let Some(sub) = &self.sub_attr {
            key.push('.');
            key.push_str(sub.key());
        }
        key
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(schema) = &self.schema {
            write!(f, "{schema}:")?;
        }
        write!(f, "{}", self.attr)?;
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

/// The attribute operators of RFC 7644 §3.4.2.2 that take a value (`pr` is [`Filter::Present`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Lt,
    Ge,
    Le,
}

impl CompareOp {
    /// Every operator, in the RFC's order.
    pub const ALL: [CompareOp; 9] = [
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Co,
        CompareOp::Sw,
        CompareOp::Ew,
        CompareOp::Gt,
        CompareOp::Lt,
        CompareOp::Ge,
        CompareOp::Le,
    ];

    /// The canonical (lower-case) keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Lt => "lt",
            CompareOp::Ge => "ge",
            CompareOp::Le => "le",
        }
    }

    /// The operator for a keyword in any case (`EQ`, `Eq`, `eq`).
    pub fn from_keyword(word: &str) -> Option<CompareOp> {
        CompareOp::ALL.into_iter().find(|op| op.as_str().eq_ignore_ascii_case(word))
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A JSON number literal: the text as written (so nothing is lost to rounding, and `1.0` and
/// `1` stay distinguishable for an evaluator that cares) and its values.
///
/// Two numbers are equal when their texts are equal.
#[derive(Clone)]
pub struct Number {
    text: String,
    float: f64,
    int: Option<i64>,
}

/// Why a number literal was refused (internal: the parser turns it into a [`crate::Reason`]).
pub(crate) enum NumberError {
    Syntax,
    OutOfRange,
}

impl Number {
    /// Parses a JSON number (`-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`); `None`
    /// for anything else, and for magnitudes beyond `f64`.
    pub fn parse(text: &str) -> Option<Number> {
        Number::parse_checked(text).ok()
    }

    pub(crate) fn parse_checked(text: &str) -> Result<Number, NumberError> {
        let b = text.as_bytes();
        let digits_from = |mut i: usize| {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        let mut i = 0;
        if b.first() == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = digits_from(i + 1),
            _ => return Err(NumberError::Syntax),
        }
        let mut integral = true;
        if b.get(i) == Some(&b'.') {
            integral = false;
            let end = digits_from(i + 1);
            if end == i + 1 {
                return Err(NumberError::Syntax);
            }
            i = end;
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            integral = false;
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let end = digits_from(i);
            if end == i {
                return Err(NumberError::Syntax);
            }
            i = end;
        }
        if i != b.len() {
            return Err(NumberError::Syntax);
        }
        // Rust's float grammar is a superset of JSON's, so the text (already checked) parses;
        // an exponent beyond f64 gives infinity, which JSON parsers refuse too.
        let float = text.parse::<f64>().map_err(|_| NumberError::Syntax)?;
        if !float.is_finite() {
            return Err(NumberError::OutOfRange);
        }
        let int = if integral { text.parse::<i64>().ok() } else { None };
        Ok(Number { text: text.to_owned(), float, int })
    }

    /// The literal as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The value as a float (always available: out-of-range literals are refused).
    pub fn as_f64(&self) -> f64 {
        self.float
    }

    /// The value as an integer, when written without fraction or exponent and within `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        self.int
    }
}

impl From<i64> for Number {
    fn from(n: i64) -> Self {
        // i64 → f64 may round for |n| > 2^53; the text keeps the exact value.
        Number { text: n.to_string(), float: n as f64, int: Some(n) }
    }
}

impl PartialEq for Number {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Number {}

impl fmt::Debug for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Number").field(&self.text).finish()
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A comparison value (RFC 7644 §3.4.2.2 `compValue`). Strings are decoded JSON strings;
/// dates are strings too (the RFC quotes them), left to the evaluator to interpret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompValue {
    String(String),
    Number(Number),
    Bool(bool),
    Null,
}

impl fmt::Display for CompValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompValue::String(s) => write_json_string(f, s),
            CompValue::Number(n) => write!(f, "{n}"),
            CompValue::Bool(b) => write!(f, "{b}"),
            CompValue::Null => f.write_str("null"),
        }
    }
}

/// Writes `s` as a JSON string literal: quotes, backslashes and control characters escaped,
/// everything else as is (the filter is UTF-8 text, so there is no need for `\u` beyond that).
fn write_json_string(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            '\u{8}' => f.write_str("\\b")?,
            '\u{c}' => f.write_str("\\f")?,
            c if u32::from(c) < 0x20 => write!(f, "\\u{:04x}", u32::from(c))?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

/// What a trailing sub-attribute of a value path is tested for: `pr`, or an operator and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Present,
    Compare { op: CompareOp, value: CompValue },
}

/// The `.value eq "x"` that Microsoft Entra ID writes after a value path
/// (`emails[type eq "work"].value eq "x"`): the sub-attribute of the matching values and its test.
///
/// RFC 7644's filter grammar has no such form; Entra's meaning is "some value of `emails`
/// matches the bracketed filter *and* its `value` sub-attribute passes the test", i.e.
/// `emails[type eq "work" and value eq "x"]`. It is kept as written rather than rewritten, so
/// that it prints back the way the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAttrCondition {
    pub sub_attr: Name,
    pub condition: Condition,
}

impl fmt::Display for SubAttrCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.condition {
            Condition::Present => write!(f, "{} pr", self.sub_attr),
            Condition::Compare { op, value } => write!(f, "{} {op} {value}", self.sub_attr),
        }
    }
}

/// A SCIM filter (RFC 7644 §3.4.2.2).
///
/// `and`/`or` chains are left-nested: `a or b or c` is `Or(Or(a, b), c)`. A chain is therefore
/// as deep as it is long, and a compiler-generated `Clone`, `PartialEq` or `Debug` would
/// recurse once per term (a derived `Clone` of a 2,000-term chain overflows a 2 MiB stack in a
/// debug build). So those are written by hand: `Clone` and `PartialEq` use an explicit stack
/// whatever the shape, `Debug` and `Display` walk chains in a loop. Only `Drop` recurses, and
/// its frames are small enough for [`crate::HARD_MAX_TERMS`]. Evaluators should walk chains
/// with [`Filter::chain_operands`] for the same reason.
pub enum Filter {
    /// `path op value`, e.g. `userName eq "bjensen"`.
    Compare {
        path: AttrPath,
        op: CompareOp,
        value: CompValue,
    },
    /// `path pr`.
    Present {
        path: AttrPath,
    },
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    /// `not (filter)`.
    Not(Box<Filter>),
    /// `path[filter]`, e.g. `emails[type eq "work" and value co "@example.com"]`, optionally
    /// followed by Entra's `.subAttr op value` ([`SubAttrCondition`]). `filter` never contains
    /// another value path (the RFC's `valFilter` excludes it).
    ValuePath {
        path: AttrPath,
        filter: Box<Filter>,
        sub_attr: Option<SubAttrCondition>,
    },
}

impl Filter {
    /// The operands of an `and` or `or` chain, left to right: for `a and b and c`
    /// (`And(And(a, b), c)`), `[a, b, c]`. Only the left spine of the same operator is
    /// flattened, which is exactly what parsing a chain builds; `a and (b and c)` gives
    /// `[a, And(b, c)]`. Any other filter gives itself alone.
    ///
    /// Found without recursion, so an evaluator can loop over a long chain instead of
    /// recursing once per term.
    pub fn chain_operands(&self) -> Vec<&Filter> {
        let is_and = matches!(self, Filter::And(..));
        let mut rights = Vec::new();
        let mut leftmost = self;
        while let (Filter::And(l, r), true) | (Filter::Or(l, r), false) = (leftmost, is_and) {
            rights.push(r.as_ref());
            leftmost = l;
        }
        rights.push(leftmost);
        rights.reverse();
        rights
    }

    /// A cheap stand-in, overwritten before anyone can see it (no allocation).
    fn placeholder() -> Filter {
        Filter::Present { path: AttrPath::new(String::new()) }
    }

    /// This node with its children replaced by placeholders.
    fn clone_node(&self) -> Filter {
        match self {
            Filter::Compare { path, op, value } => {
                Filter::Compare { path: path.clone(), op: *op, value: value.clone() }
            }
            Filter::Present { path } => Filter::Present { path: path.clone() },
            Filter::And(..) => Filter::and(Filter::placeholder(), Filter::placeholder()),
            Filter::Or(..) => Filter::or(Filter::placeholder(), Filter::placeholder()),
            Filter::Not(_) => Filter::negate(Filter::placeholder()),
            Filter::ValuePath { path, sub_attr, .. } => Filter::ValuePath {
                path: path.clone(),
                filter: Box::new(Filter::placeholder()),
                sub_attr: sub_attr.clone(),
            },
        }
    }

    /// `left and right`.
    pub fn and(left: Filter, right: Filter) -> Filter {
        Filter::And(Box::new(left), Box::new(right))
    }

    /// `left or right`.
    pub fn or(left: Filter, right: Filter) -> Filter {
        Filter::Or(Box::new(left), Box::new(right))
    }

    /// `not (inner)`.
    pub fn negate(inner: Filter) -> Filter {
        Filter::Not(Box::new(inner))
    }
}

/// Copies top-down with an explicit stack of (slot to fill, node to copy) pairs.
impl Clone for Filter {
    fn clone(&self) -> Self {
        let mut root = Filter::placeholder();
        let mut todo: Vec<(&mut Filter, &Filter)> = vec![(&mut root, self)];
        while let Some((slot, src)) = todo.pop() {
            *slot = src.clone_node();
            match (slot, src) {
                (Filter::And(dl, dr), Filter::And(sl, sr)) | (Filter::Or(dl, dr), Filter::Or(sl, sr)) => {
                    todo.push((&mut **dl, &**sl));
                    todo.push((&mut **dr, &**sr));
                }
                (Filter::Not(d), Filter::Not(s))
                | (Filter::ValuePath { filter: d, .. }, Filter::ValuePath { filter: s, .. }) => {
                    todo.push((&mut **d, &**s));
                }
                _ => {}
            }
        }
        root
    }
}

/// Structural, exact equality, compared with an explicit stack of node pairs.
impl PartialEq for Filter {
    fn eq(&self, other: &Self) -> bool {
        let mut todo = vec![(self, other)];
        while let Some(pair) = todo.pop() {
            match pair {
                (Filter::Compare { path: pa, op: oa, value: va }, Filter::Compare { path: pb, op: ob, value: vb }) => {
                    if pa != pb || oa != ob || va != vb {
                        return false;
                    }
                }
                (Filter::Present { path: a }, Filter::Present { path: b }) => {
                    if a != b {
                        return false;
                    }
                }
                (Filter::And(al, ar), Filter::And(bl, br)) | (Filter::Or(al, ar), Filter::Or(bl, br)) => {
                    todo.push((ar, br));
                    todo.push((al, bl));
                }
                (Filter::Not(a), Filter::Not(b)) => todo.push((a, b)),
                (
                    Filter::ValuePath { path: pa, filter: fa, sub_attr: sa },
                    Filter::ValuePath { path: pb, filter: fb, sub_attr: sb },
                ) => {
                    if pa != pb || sa != sb {
                        return false;
                    }
                    todo.push((fa, fb));
                }
                _ => return false,
            }
        }
        true
    }
}

impl Eq for Filter {}

/// Like the derived form, except that a chain prints its operands side by side:
/// `Or(a, b, c)` for `Or(Or(a, b), c)` (two operands print exactly as derived).
impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Compare { path, op, value } => {
                f.debug_struct("Compare").field("path", path).field("op", op).field("value", value).finish()
            }
            Filter::Present { path } => f.debug_struct("Present").field("path", path).finish(),
            Filter::Not(inner) => f.debug_tuple("Not").field(inner).finish(),
            Filter::ValuePath { path, filter, sub_attr } => f
                .debug_struct("ValuePath")
                .field("path", path)
                .field("filter", filter)
                .field("sub_attr", sub_attr)
                .finish(),
            Filter::And(..) | Filter::Or(..) => {
                let name = if matches!(self, Filter::And(..)) { "And" } else { "Or" };
                let mut tuple = f.debug_tuple(name);
                for operand in self.chain_operands() {
                    tuple.field(operand);
                }
                tuple.finish()
            }
        }
    }
}

/// The canonical form: lower-case keywords, single spaces, `not (...)`, JSON-escaped strings,
/// numbers as written, and parentheses exactly where the tree's shape needs them (an `or`
/// under an `and`, a chain nested on the right of the same operator), so that parsing the
/// output gives back an equal tree.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Compare { path, op, value } => write!(f, "{path} {op} {value}"),
            Filter::Present { path } => write!(f, "{path} pr"),
            Filter::Not(inner) => write!(f, "not ({inner})"),
            Filter::ValuePath { path, filter, sub_attr } => {
                write!(f, "{path}[{filter}]")?;
                if let Some(sub) = sub_attr {
                    write!(f, ".{sub}")?;
                }
                Ok(())
            }
            Filter::And(..) | Filter::Or(..) => write_chain(f, self),
        }
    }
}

/// Prints an `and` or `or` chain in a loop over its operands: a chain of n terms is n levels
/// deep, and recursing per term would let a long (but accepted) filter exhaust the stack just
/// by being logged.
fn write_chain(f: &mut fmt::Formatter<'_>, node: &Filter) -> fmt::Result {
    let is_and = matches!(node, Filter::And(..));
    let keyword = if is_and { " and " } else { " or " };
    for (i, operand) in node.chain_operands().into_iter().enumerate() {
        if i > 0 {
            f.write_str(keyword)?;
        }
        write_operand(f, operand, is_and, i == 0)?;
    }
    Ok(())
}

fn write_operand(f: &mut fmt::Formatter<'_>, child: &Filter, parent_is_and: bool, is_left: bool) -> fmt::Result {
    // `and` binds tighter than `or`, and both associate to the left when parsed.
    let parens = match child {
        Filter::Or(..) => parent_is_and || !is_left,
        Filter::And(..) => parent_is_and && !is_left,
        _ => false,
    };
    if parens { write!(f, "({child})") } else { write!(f, "{child}") }
}

/// A PATCH operation's `path` (RFC 7644 §3.5.2): `attrPath` or `valuePath [subAttr]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchPath {
    /// `name.givenName`, `members`, `urn:...:enterprise:2.0:User:manager.value`.
    Attr(AttrPath),
    /// `members[value eq "2819c223"]`, `emails[type eq "work"].value`.
    ValuePath { path: AttrPath, filter: Box<Filter>, sub_attr: Option<Name> },
}

impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatchPath::Attr(path) => write!(f, "{path}"),
            PatchPath::ValuePath { path, filter, sub_attr } => {
                write!(f, "{path}[{filter}]")?;
                if let Some(sub) = sub_attr {
                    write!(f, ".{sub}")?;
                }
                Ok(())
            }
        }
    }
}
