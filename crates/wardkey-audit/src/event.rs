//! Audit event schema and its canonical encoding.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, SecondsFormat, SubsecRound, Timelike, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::AuditError;
use crate::Hash;

/// How an audited action ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Denied,
    Failure,
}

impl Outcome {
    /// `"success"`, `"denied"` or `"failure"` (also the serde and canonical form).
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failure => "failure",
        }
    }

    /// Inverse of [`Outcome::as_str`] (exact, lowercase).
    pub fn parse(s: &str) -> Result<Self, AuditError> {
        match s {
            "success" => Ok(Outcome::Success),
            "denied" => Ok(Outcome::Denied),
            "failure" => Ok(Outcome::Failure),
            other => Err(AuditError::UnknownOutcome(other.to_owned())),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = AuditError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Outcome::parse(s)
    }
}

/// Anything the optional builder methods of [`AuditDraft`] accept: `&str`, `String`,
/// `Option<String>`, `Option<&str>`, …
pub trait IntoOptionalString {
    fn into_optional_string(self) -> Option<String>;
}

impl IntoOptionalString for String {
    fn into_optional_string(self) -> Option<String> {
        Some(self)
    }
}
impl IntoOptionalString for &str {
    fn into_optional_string(self) -> Option<String> {
        Some(self.to_owned())
    }
}
impl IntoOptionalString for &String {
    fn into_optional_string(self) -> Option<String> {
        Some(self.clone())
    }
}
impl IntoOptionalString for Cow<'_, str> {
    fn into_optional_string(self) -> Option<String> {
        Some(self.into_owned())
    }
}
impl IntoOptionalString for Option<String> {
    fn into_optional_string(self) -> Option<String> {
        self
    }
}
impl IntoOptionalString for Option<&str> {
    fn into_optional_string(self) -> Option<String> {
        self.map(str::to_owned)
    }
}
impl IntoOptionalString for Option<&String> {
    fn into_optional_string(self) -> Option<String> {
        self.cloned()
    }
}

/// What a service records; the store assigns index and time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditDraft {
    /// Principal, e.g. `token:<uuid>`, `operator:root`, `system:bootstrap`.
    pub actor: String,
    /// E.g. `user.create`, `auth.denied`: an [`Action`](crate::Action)'s wire name.
    pub action: String,
    /// E.g. `user:<uuid>`.
    #[serde(default)]
    pub target: Option<String>,
    pub outcome: Outcome,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub source_ip: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub approver: Option<String>,
    #[serde(default)]
    pub request_ref: Option<String>,
    /// A JSON object, or null.
    #[serde(default)]
    #[schema(value_type = Object, nullable, required = true)]
    pub details: Value,
}

impl AuditDraft {
    /// An event for a catalogued [`Action`](crate::Action); `action` stores its wire name.
    pub fn new(actor: impl Into<String>, action: crate::Action, outcome: Outcome) -> Self {
        Self::with_action_name(actor.into(), action.as_str().to_owned(), outcome)
    }

    /// TESTS AND BENCHMARKS ONLY: an event whose action is not in the catalogue (`test.event`,
    /// `bench.probe`), for exercising the log itself with synthetic events. Production code must
    /// use [`AuditDraft::new`] with an [`Action`](crate::Action): alerts, SIEM exports and the
    /// decision-index follower key on the catalogue, and an uncatalogued name is invisible to
    /// them. The tidy test `crates/wardkey-audit/tests/catalogue.rs` fails if this is called
    /// from non-test code outside `wardkey-bench`.
    pub fn uncatalogued(actor: impl Into<String>, action: impl Into<String>, outcome: Outcome) -> Self {
        Self::with_action_name(actor.into(), action.into(), outcome)
    }

    fn with_action_name(actor: String, action: String, outcome: Outcome) -> Self {
        AuditDraft {
            actor,
            action,
            target: None,
            outcome,
            reason: None,
            source_ip: None,
            request_id: None,
            approver: None,
            request_ref: None,
            details: Value::Null,
        }
    }

    /// The catalogued action, or `None` for a name not in the catalogue.
    pub fn catalogued_action(&self) -> Option<crate::Action> {
        crate::Action::parse(&self.action)
    }

    pub fn with_target(mut self, target: impl IntoOptionalString) -> Self {
        self.target = target.into_optional_string();
        self
    }

    pub fn with_reason(mut self, reason: impl IntoOptionalString) -> Self {
        self.reason = reason.into_optional_string();
        self
    }

    pub fn with_source_ip(mut self, ip: impl IntoOptionalString) -> Self {
        self.source_ip = ip.into_optional_string();
        self
    }

    pub fn with_request_id(mut self, id: impl IntoOptionalString) -> Self {
        self.request_id = id.into_optional_string();
        self
    }

    pub fn with_approver(mut self, approver: impl IntoOptionalString) -> Self {
        self.approver = approver.into_optional_string();
        self
    }

    pub fn with_request_ref(mut self, request_ref: impl IntoOptionalString) -> Self {
        self.request_ref = request_ref.into_optional_string();
        self
    }

    pub fn with_outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// Replaces `details` (should be an object or null).
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// Sets one key of `details` (turning null or a non-object into an object first).
    pub fn with_detail(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        if !self.details.is_object() {
            self.details = Value::Object(serde_json::Map::new());
        }
        if let Value::Object(m) = &mut self.details {
            m.insert(key.into(), value.into());
        }
        self
    }
}

/// A stored event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    /// Position in the log (0-based, contiguous) = Merkle leaf index.
    pub index: u64,
    /// Truncated to microseconds (see [`truncate_to_micros`]).
    pub time: DateTime<Utc>,
    #[serde(flatten)]
    pub draft: AuditDraft,
}

/// Truncates to whole microseconds, the precision databases keep. Store times through this so a
/// re-read event encodes to the same bytes.
pub fn truncate_to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

/// The canonical text form of a time: RFC 3339, UTC, exactly six fractional digits, `Z`
/// (`2026-11-22T10:00:00.000000Z`). Sub-microsecond digits are dropped (truncated).
pub fn format_time(t: &DateTime<Utc>) -> String {
    let mut buf = Vec::with_capacity(27);
    write_time(&mut buf, t);
    String::from_utf8_lossy(&buf).into_owned()
}

impl AuditEvent {
    /// An event with its time truncated to microseconds.
    pub fn new(index: u64, time: DateTime<Utc>, draft: AuditDraft) -> Self {
        AuditEvent { index, time: truncate_to_micros(time), draft }
    }

    /// The canonical encoding hashed into the Merkle leaf. **Frozen: changing it breaks every
    /// existing log.** Version 1 is one line of JSON, UTF-8, no whitespace outside strings, with
    /// the keys in exactly this order:
    ///
    /// ```text
    /// {"v":1,"index":I,"time":T,"actor":S,"action":S,"target":S?,"outcome":O,"reason":S?,
    ///  "source_ip":S?,"request_id":S?,"approver":S?,"request_ref":S?,"details":D}
    /// ```
    /// (shown wrapped; there is no newline) where
    /// - `I` is the index in decimal, no sign, no leading zeros;
    /// - `T` is the time as a JSON string `"YYYY-MM-DDTHH:MM:SS.ffffffZ"` (RFC 3339, UTC, exactly
    ///   six fractional digits, sub-microsecond digits truncated; see [`format_time`]);
    /// - `S` is a JSON string, `S?` a JSON string or `null`;
    /// - `O` is `"success"`, `"denied"` or `"failure"`;
    /// - strings escape `"` as `\"`, `\` as `\\`, U+0008/0009/000A/000C/000D as
    ///   `\b \t \n \f \r`, other U+0000–U+001F as `\u00xx` (lowercase hex); every other
    ///   character, including `/`, U+007F and non-ASCII, is written as raw UTF-8;
    /// - `D` is `details` in canonical JSON: `null`/`true`/`false`; integers in decimal (`-`
    ///   sign if negative); other numbers as Rust's `Display` for `f64` prints them — the
    ///   shortest decimal that round-trips, never an exponent (`1.5`, `0.1`, `2` for 2.0,
    ///   `-0` for -0.0, `100000000000000000000` for 1e20);
    ///   strings as above; arrays in order; objects with keys sorted by their UTF-8 bytes
    ///   (independent of serde_json's map ordering features), each key escaped as above.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(256);
        self.canonical_bytes_into(&mut buf);
        buf
    }

    /// [`AuditEvent::canonical_bytes`] into a reusable buffer (cleared first).
    pub fn canonical_bytes_into(&self, buf: &mut Vec<u8>) {
        let d = &self.draft;
        buf.clear();
        buf.extend_from_slice(b"{\"v\":1,\"index\":");
        write_u64(buf, self.index);
        buf.extend_from_slice(b",\"time\":\"");
        write_time(buf, &self.time);
        buf.extend_from_slice(b"\",\"actor\":");
        write_str(buf, &d.actor);
        buf.extend_from_slice(b",\"action\":");
        write_str(buf, &d.action);
        buf.extend_from_slice(b",\"target\":");
        write_opt_str(buf, d.target.as_deref());
        buf.extend_from_slice(b",\"outcome\":\"");
        buf.extend_from_slice(d.outcome.as_str().as_bytes());
        buf.extend_from_slice(b"\",\"reason\":");
        write_opt_str(buf, d.reason.as_deref());
        buf.extend_from_slice(b",\"source_ip\":");
        write_opt_str(buf, d.source_ip.as_deref());
        buf.extend_from_slice(b",\"request_id\":");
        write_opt_str(buf, d.request_id.as_deref());
        buf.extend_from_slice(b",\"approver\":");
        write_opt_str(buf, d.approver.as_deref());
        buf.extend_from_slice(b",\"request_ref\":");
        write_opt_str(buf, d.request_ref.as_deref());
        buf.extend_from_slice(b",\"details\":");
        write_value(buf, &d.details);
        buf.push(b'}');
    }

    /// RFC 9162 leaf hash: SHA-256(0x00 ‖ canonical bytes) (= `tlog_tiles::record_hash`).
    pub fn leaf_hash(&self) -> Hash {
        tlog_tiles::record_hash(&self.canonical_bytes())
    }

    /// [`AuditEvent::leaf_hash`] reusing `buf` for the encoding.
    pub fn leaf_hash_with(&self, buf: &mut Vec<u8>) -> Hash {
        self.canonical_bytes_into(buf);
        tlog_tiles::record_hash(buf)
    }
}

fn write_u64(buf: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

fn push_digits(buf: &mut Vec<u8>, n: u32, width: usize) {
    let mut tmp = [b'0'; 10];
    let mut n = n;
    for slot in tmp[10 - width..].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    buf.extend_from_slice(&tmp[10 - width..]);
}

fn write_time(buf: &mut Vec<u8>, t: &DateTime<Utc>) {
    let n = t.naive_utc();
    let year = n.year();
    let nanos = n.nanosecond();
    if (0..=9999).contains(&year) && nanos < 1_000_000_000 {
        push_digits(buf, year.unsigned_abs(), 4);
        buf.push(b'-');
        push_digits(buf, n.month(), 2);
        buf.push(b'-');
        push_digits(buf, n.day(), 2);
        buf.push(b'T');
        push_digits(buf, n.hour(), 2);
        buf.push(b':');
        push_digits(buf, n.minute(), 2);
        buf.push(b':');
        push_digits(buf, n.second(), 2);
        buf.push(b'.');
        push_digits(buf, nanos / 1000, 6);
        buf.push(b'Z');
    } else {
        // Leap seconds and years outside 0000–9999: chrono's RFC 3339 form.
        buf.extend_from_slice(t.to_rfc3339_opts(SecondsFormat::Micros, true).as_bytes());
    }
}

fn write_opt_str(buf: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => write_str(buf, s),
        None => buf.extend_from_slice(b"null"),
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn write_str(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x09 => b"\\t",
            0x0a => b"\\n",
            0x0c => b"\\f",
            0x0d => b"\\r",
            0x00..=0x1f => b"",
            _ => continue,
        };
        buf.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            buf.extend_from_slice(b"\\u00");
            buf.push(HEX[usize::from(b >> 4)]);
            buf.push(HEX[usize::from(b & 0xf)]);
        } else {
            buf.extend_from_slice(esc);
        }
        start = i + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
    buf.push(b'"');
}

fn write_value(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => buf.extend_from_slice(b"null"),
        Value::Bool(true) => buf.extend_from_slice(b"true"),
        Value::Bool(false) => buf.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                write_u64(buf, u);
            } else if let Some(i) = n.as_i64() {
                buf.push(b'-');
                write_u64(buf, i.unsigned_abs());
            } else if let Some(f) = n.as_f64() {
                // Rust's float Display: shortest round-trip decimal, never an exponent.
                buf.extend_from_slice(f.to_string().as_bytes());
            } else {
                buf.extend_from_slice(n.to_string().as_bytes());
            }
        }
        Value::String(s) => write_str(buf, s),
        Value::Array(items) => {
            buf.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                write_value(buf, item);
            }
            buf.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            buf.push(b'{');
            for (i, (k, val)) in entries.into_iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                write_str(buf, k);
                buf.push(b':');
                write_value(buf, val);
            }
            buf.push(b'}');
        }
    }
}
