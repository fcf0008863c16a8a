//! HR roster import, without I/O: parse a roster (CSV or JSON) through a configurable column
//! mapping, compare it with the directory, and produce a plan — joiners, movers (with the
//! attributes that changed), leavers, scheduled terminations, unchanged, review items and errors
//! by row — plus the mass-termination circuit breaker. The service applies the plan.
//!
//! Rules:
//! - Workers are matched by employee id. A duplicate employee id makes every row that carries
//!   it an error (which one is right is for HR to say).
//! - A row with any error changes nothing; the other rows still count.
//! - A column absent from the file leaves that attribute as it is; an empty cell clears it.
//! - A termination is an explicit status (one of `terminated_values`) or a date: `end_date`
//!   is the last day of work, access ends at the end of it (00:00 of the next day) in the
//!   worker's time zone; `termination_date` is the first day without access (access ends at
//!   00:00 of it). A moment already past is a leaver now; a future one is stored as the
//!   worker's end date and carried out by the end-date job.
//! - With a full roster, a worker missing from the file is a review item, never a
//!   termination.
//! - Contractors and vendors need a sponsor (an existing person's employee id) and an end date.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::collections::{BTreeMap, HashMap, HashSet};
use wardkey_domain::{EmploymentType, HrAttributes, UserId, UserStatus};

/// Longest value accepted in any cell (bytes).
pub const MAX_VALUE: usize = 256;
/// Longest employee id / username.
pub const MAX_ID: usize = 128;

/// Which column (CSV header or JSON key) carries each attribute. Only `employee_id` must be
/// present in every file; `username` is needed for joiners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ColumnMapping {
    pub employee_id: String,
    pub username: String,
    pub display_name: String,
    pub email: String,
    pub department: String,
    pub job_code: String,
    pub title: String,
    /// The manager's employee id.
    pub manager: String,
    pub employment_type: String,
    pub end_date: String,
    pub termination_date: String,
    pub status: String,
    /// The sponsor's employee id (contractors, vendors).
    pub sponsor: String,
    pub time_zone: String,
}

impl Default for ColumnMapping {
    fn default() -> Self {
        ColumnMapping {
            employee_id: "employee_id".into(),
            username: "username".into(),
            display_name: "display_name".into(),
            email: "email".into(),
            department: "department".into(),
            job_code: "job_code".into(),
            title: "title".into(),
            manager: "manager_employee_id".into(),
            employment_type: "employment_type".into(),
            end_date: "end_date".into(),
            termination_date: "termination_date".into(),
            status: "status".into(),
            sponsor: "sponsor_employee_id".into(),
            time_zone: "time_zone".into(),
        }
    }
}

/// Settings of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImportSettings {
    pub mapping: ColumnMapping,
    /// Status values (case-insensitive) that mean "terminated".
    pub terminated_values: Vec<String>,
    /// The circuit breaker trips when more than this share of the workforce would be
    /// terminated at once...
    pub max_termination_share: f64,
    /// ...and at least this many people (small directories are not blocked by one leaver).
    pub breaker_min_terminations: usize,
    /// Most data rows in one file.
    pub max_rows: usize,
}

impl Default for ImportSettings {
    fn default() -> Self {
        ImportSettings {
            mapping: ColumnMapping::default(),
            terminated_values: vec!["terminated".into(), "inactive".into(), "withdrawn".into(), "leaver".into()],
            max_termination_share: 0.10,
            breaker_min_terminations: 5,
            max_rows: 1_000_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Csv,
    Json,
}

impl Format {
    pub fn as_str(&self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }
}

/// A problem with the whole file: nothing in it is planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileError {
    pub message: String,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FileError {}

fn file_err(m: impl Into<String>) -> FileError {
    FileError { message: m.into() }
}

/// A problem with one row; the row changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowError {
    /// 1-based: the CSV line (the header is line 1) or the JSON array index + 1.
    pub row: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub employee_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub message: String,
}

/// One roster row as text, keyed by attribute (absent key: column not in the file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawRow {
    pub row: usize,
    pub values: BTreeMap<&'static str, String>,
}

/// A parsed file: its rows, the attributes it carries, and rows that could not be read.
#[derive(Debug, Clone, Default)]
pub struct Roster {
    pub sha256: String,
    pub format: Option<Format>,
    /// Attributes (internal names) present as columns.
    pub columns: HashSet<&'static str>,
    pub rows: Vec<RawRow>,
    pub errors: Vec<RowError>,
}

/// Internal attribute names, in mapping order.
const ATTRS: [&str; 14] = [
    "employee_id",
    "username",
    "display_name",
    "email",
    "department",
    "job_code",
    "title",
    "manager",
    "employment_type",
    "end_date",
    "termination_date",
    "status",
    "sponsor",
    "time_zone",
];

impl ColumnMapping {
    fn column_of(&self, attr: &str) -> &str {
        match attr {
            "employee_id" => &self.employee_id,
            "username" => &self.username,
            "display_name" => &self.display_name,
            "email" => &self.email,
            "department" => &self.department,
            "job_code" => &self.job_code,
            "title" => &self.title,
            "manager" => &self.manager,
            "employment_type" => &self.employment_type,
            "end_date" => &self.end_date,
            "termination_date" => &self.termination_date,
            "status" => &self.status,
            "sponsor" => &self.sponsor,
            _ => &self.time_zone,
        }
    }

    /// Checks the mapping itself: every column named, no column used twice.
    pub fn validate(&self) -> Result<(), FileError> {
        let mut seen = HashSet::new();
        for a in ATTRS {
            let c = self.column_of(a).trim();
            if c.is_empty() || c.len() > MAX_ID {
                return Err(file_err(format!("column mapping for {a} must be 1..={MAX_ID} characters")));
            }
            if !seen.insert(c.to_lowercase()) {
                return Err(file_err(format!("column {c:?} is mapped to more than one attribute")));
            }
        }
        Ok(())
    }
}

/// Hex SHA-256 of the file (named in every audit event the import causes).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Reads a roster. The format is given (from the content type or the file name); bytes that
/// are not UTF-8 are a per-row error in CSV (the header must be UTF-8) and a file error in
/// JSON.
pub fn parse(bytes: &[u8], format: Format, settings: &ImportSettings) -> Result<Roster, FileError> {
    settings.mapping.validate()?;
    let mut roster = match format {
        Format::Csv => parse_csv(bytes, settings)?,
        Format::Json => parse_json(bytes, settings)?,
    };
    roster.sha256 = sha256_hex(bytes);
    roster.format = Some(format);
    Ok(roster)
}

fn parse_csv(bytes: &[u8], settings: &ImportSettings) -> Result<Roster, FileError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(bytes);
    let header = reader.byte_headers().map_err(|e| file_err(format!("cannot read the CSV header: {e}")))?.clone();
    if header.is_empty() || (header.len() == 1 && header.get(0).is_some_and(|h| h.is_empty())) {
        return Err(file_err("the file is empty: a header line naming the columns is required"));
    }
    let mut names = Vec::with_capacity(header.len());
    for (i, h) in header.iter().enumerate() {
        let h = std::str::from_utf8(h).map_err(|_| file_err(format!("header column {} is not valid UTF-8", i + 1)))?;
        names.push(h.trim().to_lowercase());
    }
    // Which CSV column carries each attribute.
    let mut index: Vec<(&'static str, usize)> = Vec::new();
    for a in ATTRS {
        let want = settings.mapping.column_of(a).trim().to_lowercase();
        let found: Vec<usize> = names.iter().enumerate().filter(|(_, n)| **n == want).map(|(i, _)| i).collect();
        match found.as_slice() {
            [] => {}
            [i] => index.push((a, *i)),
            _ => return Err(file_err(format!("column {want:?} appears more than once in the header"))),
        }
    }
    if !index.iter().any(|(a, _)| *a == "employee_id") {
        return Err(file_err(format!(
            "missing column {:?} (employee id; workers are matched on it). The header has: {}",
            settings.mapping.employee_id,
            names.join(", ")
        )));
    }
    let mut roster = Roster { columns: index.iter().map(|(a, _)| *a).collect(), ..Default::default() };
    let mut record = csv::ByteRecord::new();
    loop {
        let line = reader.position().line() as usize;
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                // The csv reader cannot resynchronise after a broken quote; stop with a clear error.
                roster.errors.push(RowError {
                    row: line,
                    employee_id: None,
                    column: None,
                    message: format!("unreadable CSV: {e}"),
                });
                break;
            }
        }
        let row = record.position().map(|p| p.line() as usize).unwrap_or(line);
        if record.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
            continue; // blank line
        }
        if roster.rows.len() >= settings.max_rows {
            return Err(file_err(format!("more than {} rows; split the file", settings.max_rows)));
        }
        if record.len() != header.len() {
            roster.errors.push(RowError {
                row,
                employee_id: None,
                column: None,
                message: format!("has {} fields, the header has {}", record.len(), header.len()),
            });
            continue;
        }
        let mut raw = RawRow { row, values: BTreeMap::new() };
        let mut bad: Option<RowError> = None;
        for (attr, i) in &index {
            let field = record.get(*i).unwrap_or_default();
            match std::str::from_utf8(field) {
                Ok(v) => {
                    raw.values.insert(attr, v.trim().to_owned());
                }
                Err(_) => {
                    bad = Some(RowError {
                        row,
                        employee_id: None,
                        column: Some(settings.mapping.column_of(attr).to_owned()),
                        message: "is not valid UTF-8 (save the file as UTF-8)".into(),
                    });
                    break;
                }
            }
        }
        match bad {
            Some(mut e) => {
                e.employee_id = raw.values.get("employee_id").cloned().filter(|s| !s.is_empty());
                roster.errors.push(e);
            }
            None => roster.rows.push(raw),
        }
    }
    Ok(roster)
}

fn parse_json(bytes: &[u8], settings: &ImportSettings) -> Result<Roster, FileError> {
    let doc: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| file_err(format!("not a JSON roster: {e}")))?;
    let items = match doc {
        serde_json::Value::Array(a) => a,
        serde_json::Value::Object(mut o) => match o.remove("workers") {
            Some(serde_json::Value::Array(a)) => a,
            _ => return Err(file_err("a JSON roster is an array of workers, or an object with a \"workers\" array")),
        },
        _ => return Err(file_err("a JSON roster is an array of workers, or an object with a \"workers\" array")),
    };
    if items.len() > settings.max_rows {
        return Err(file_err(format!("more than {} rows; split the file", settings.max_rows)));
    }
    let mut roster = Roster::default();
    // Columns: the attributes whose key appears in any object.
    for item in &items {
        if let serde_json::Value::Object(o) = item {
            for a in ATTRS {
                let key = settings.mapping.column_of(a);
                if o.keys().any(|k| k.eq_ignore_ascii_case(key)) {
                    roster.columns.insert(a);
                }
            }
        }
    }
    if !roster.columns.contains("employee_id") {
        return Err(file_err(format!("no worker has the key {:?} (employee id)", settings.mapping.employee_id)));
    }
    for (i, item) in items.into_iter().enumerate() {
        let row = i + 1;
        let serde_json::Value::Object(o) = item else {
            roster.errors.push(RowError {
                row,
                employee_id: None,
                column: None,
                message: "is not a JSON object".into(),
            });
            continue;
        };
        let mut raw = RawRow { row, values: BTreeMap::new() };
        let mut bad = None;
        for a in ATTRS {
            let key = settings.mapping.column_of(a);
            let Some((_, v)) = o.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)) else {
                if roster.columns.contains(a) {
                    // Absent in this object but a column of the file: treat as empty (clears it).
                    raw.values.insert(a, String::new());
                }
                continue;
            };
            let s = match v {
                serde_json::Value::Null => String::new(),
                serde_json::Value::String(s) => s.trim().to_owned(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => {
                    bad = Some(RowError {
                        row,
                        employee_id: None,
                        column: Some(key.to_owned()),
                        message: "must be a string, a number or null".into(),
                    });
                    break;
                }
            };
            raw.values.insert(a, s);
        }
        match bad {
            Some(mut e) => {
                e.employee_id = raw.values.get("employee_id").cloned().filter(|s| !s.is_empty());
                roster.errors.push(e);
            }
            None => roster.rows.push(raw),
        }
    }
    Ok(roster)
}

/// A person in the directory, as the plan sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    pub user_id: UserId,
    pub username: String,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub status: UserStatus,
    pub hr: HrAttributes,
    pub version: i64,
}

/// How one attribute changes for a mover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeChange {
    pub attribute: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joiner {
    pub row: usize,
    pub employee_id: String,
    pub username: String,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub hr: HrAttributes,
    /// A disabled person who comes back: re-verified from scratch (`pending_verification`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rehire_of: Option<UserId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mover {
    pub row: usize,
    pub employee_id: String,
    pub user_id: UserId,
    pub changes: Vec<AttributeChange>,
    /// Whether the job changed (department, job code, title, employment type): template
    /// roles are recomputed and other grants flagged for review.
    pub job_change: bool,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub hr: HrAttributes,
    /// A future termination this row schedules (the end-date job carries it out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminates_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leaver {
    pub row: usize,
    pub employee_id: String,
    pub user_id: UserId,
    /// `status`, `termination_date` or `end_date`.
    pub cause: String,
    /// When access ended (or ends: now, for a status).
    pub effective_at: DateTime<Utc>,
    pub hr: HrAttributes,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewEntry {
    pub employee_id: String,
    pub user_id: UserId,
    pub reason: String,
}

/// The mass-termination circuit breaker's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breaker {
    /// People who hold (or may hold) access and have an employee id.
    pub workforce: usize,
    pub terminations: usize,
    pub share: f64,
    pub max_share: f64,
    pub min_terminations: usize,
    /// Applying is refused unless overridden.
    pub tripped: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub sha256: String,
    pub format: Format,
    pub full_roster: bool,
    pub rows: usize,
    pub joiners: Vec<Joiner>,
    pub movers: Vec<Mover>,
    pub leavers: Vec<Leaver>,
    pub unchanged: usize,
    pub review: Vec<ReviewEntry>,
    pub errors: Vec<RowError>,
    pub breaker: Breaker,
}

impl Plan {
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "rows": self.rows,
            "joiners": self.joiners.len(),
            "movers": self.movers.len(),
            "leavers": self.leavers.len(),
            "scheduled_terminations": self.movers.iter().filter(|m| m.terminates_at.is_some()).count(),
            "unchanged": self.unchanged,
            "review": self.review.len(),
            "errors": self.errors.len(),
            "breaker_tripped": self.breaker.tripped,
        })
    }
}

/// A row read into typed values, before comparing with the directory.
struct Typed {
    row: usize,
    employee_id: String,
    username: Option<String>,
    display_name: Option<Option<String>>,
    email: Option<Option<String>>,
    department: Option<Option<String>>,
    job_code: Option<Option<String>>,
    title: Option<Option<String>>,
    manager: Option<Option<UserId>>,
    employment_type: Option<Option<EmploymentType>>,
    end_date: Option<Option<NaiveDate>>,
    termination_date: Option<NaiveDate>,
    terminated: bool,
    sponsor: Option<Option<UserId>>,
    time_zone: Option<Option<String>>,
}

fn opt(s: &str) -> Option<String> {
    if s.is_empty() { None } else { Some(s.to_owned()) }
}

fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().or_else(|| NaiveDate::parse_from_str(s, "%m/%d/%Y").ok())
}

/// Compares the roster with the directory. `workers` are the live people (any status);
/// `now` decides which dates are past.
pub fn plan(
    roster: &Roster,
    workers: &[Worker],
    settings: &ImportSettings,
    full_roster: bool,
    now: DateTime<Utc>,
) -> Plan {
    let mut errors = roster.errors.clone();
    // Employee id → person (the first live one; duplicates in the directory are the
    // reconciliation report's business).
    let mut by_eid: HashMap<&str, &Worker> = HashMap::with_capacity(workers.len());
    for w in workers {
        if let Some(eid) = w.hr.employee_id.as_deref() {
            by_eid.entry(eid).or_insert(w);
        }
    }
    let usernames: HashSet<String> = workers.iter().map(|w| w.username.to_lowercase()).collect();

    // Duplicate employee ids in the file: every row carrying one is an error.
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for r in &roster.rows {
        if let Some(e) = r.values.get("employee_id").filter(|e| !e.is_empty()) {
            *counts.entry(e.as_str()).or_default() += 1;
        }
    }
    let mut seen: HashSet<String> = HashSet::new();
    for e in &roster.errors {
        if let Some(eid) = &e.employee_id {
            seen.insert(eid.clone());
        }
    }
    let mut typed = Vec::with_capacity(roster.rows.len());
    for r in &roster.rows {
        let eid = r.values.get("employee_id").cloned().unwrap_or_default();
        if !eid.is_empty() {
            seen.insert(eid.clone());
        }
        if counts.get(eid.as_str()).copied().unwrap_or(0) > 1 {
            errors.push(RowError {
                row: r.row,
                employee_id: Some(eid),
                column: Some(settings.mapping.employee_id.clone()),
                message: "duplicate employee id in this file; every row with it is skipped".into(),
            });
            continue;
        }
        match type_row(r, settings, &by_eid) {
            Ok(t) => typed.push(t),
            Err(e) => errors.push(e),
        }
    }

    let mut joiners = Vec::new();
    let mut movers = Vec::new();
    let mut leavers = Vec::new();
    let mut unchanged = 0usize;
    let mut new_usernames: HashSet<String> = HashSet::new();
    for t in typed {
        let existing = by_eid.get(t.employee_id.as_str()).copied();
        let row_err = |column: &str, message: &str| RowError {
            row: t.row,
            employee_id: Some(t.employee_id.clone()),
            column: Some(settings.mapping.column_of(column).to_owned()),
            message: message.to_owned(),
        };
        let base = existing.map(|w| w.hr.clone()).unwrap_or_default();
        let hr = merge(&base, &t);
        // Contractors and vendors: sponsor and end date (or a termination) required.
        if hr.employment_type.is_some_and(|e| e.needs_sponsor()) && !t.terminated {
            if hr.sponsor_id.is_none() {
                errors.push(row_err(
                    "sponsor",
                    "contractors and vendors need a sponsor (an employee id in the directory)",
                ));
                continue;
            }
            if hr.end_date.is_none() && t.termination_date.is_none() {
                errors.push(row_err("end_date", "contractors and vendors need an end date"));
                continue;
            }
        }
        if let (Some(s), Some(w)) = (hr.sponsor_id, existing)
            && s == w.user_id
        {
            errors.push(row_err("sponsor", "a worker cannot sponsor themselves"));
            continue;
        }
        // When does access end, if this row says so?
        let mut hr = hr;
        let mut cause = None;
        let mut ends_at = None;
        if t.terminated {
            cause = Some("status");
            ends_at = Some(now);
        } else if let Some(td) = t.termination_date {
            // The day before the termination date is the last day.
            hr.end_date = td.pred_opt().or(Some(td));
            cause = Some("termination_date");
            ends_at = Some(wardkey_domain::start_of_day(td, hr.tz()));
        } else if let Some(at) = hr.access_ends_at() {
            cause = Some("end_date");
            ends_at = Some(at);
        }
        let past = ends_at.is_some_and(|at| at <= now);
        match existing {
            None => {
                if past || t.terminated {
                    // Already gone and never here: nothing to do.
                    unchanged += 1;
                    continue;
                }
                let Some(username) = t.username.clone().filter(|u| !u.is_empty()) else {
                    errors.push(row_err("username", "a new worker needs a username"));
                    continue;
                };
                if let Some(m) = username_problem(&username) {
                    errors.push(row_err("username", &m));
                    continue;
                }
                let key = username.to_lowercase();
                if usernames.contains(&key) || !new_usernames.insert(key) {
                    errors.push(row_err("username", "is already taken"));
                    continue;
                }
                joiners.push(Joiner {
                    row: t.row,
                    employee_id: t.employee_id.clone(),
                    username,
                    display_name: t.display_name.clone().flatten(),
                    email: t.email.clone().flatten(),
                    hr,
                    rehire_of: None,
                });
            }
            Some(w) if w.status == UserStatus::Disabled => {
                if past || t.terminated {
                    unchanged += 1;
                    continue;
                }
                // A rehire: verified again from scratch, birthright roles on activation.
                joiners.push(Joiner {
                    row: t.row,
                    employee_id: t.employee_id.clone(),
                    username: w.username.clone(),
                    display_name: t.display_name.clone().unwrap_or_else(|| w.display_name.clone()),
                    email: t.email.clone().unwrap_or_else(|| w.email.clone()),
                    hr,
                    rehire_of: Some(w.user_id),
                });
            }
            Some(w) => {
                if past {
                    leavers.push(Leaver {
                        row: t.row,
                        employee_id: t.employee_id.clone(),
                        user_id: w.user_id,
                        cause: cause.unwrap_or("status").to_owned(),
                        effective_at: ends_at.unwrap_or(now),
                        hr,
                    });
                    continue;
                }
                let display_name = t.display_name.clone().unwrap_or_else(|| w.display_name.clone());
                let email = t.email.clone().unwrap_or_else(|| w.email.clone());
                let mut changes = diff(&w.hr, &hr);
                if display_name != w.display_name {
                    changes.push(AttributeChange {
                        attribute: "display_name".into(),
                        before: w.display_name.clone(),
                        after: display_name.clone(),
                    });
                }
                if email != w.email {
                    changes.push(AttributeChange {
                        attribute: "email".into(),
                        before: w.email.clone(),
                        after: email.clone(),
                    });
                }
                if changes.is_empty() {
                    unchanged += 1;
                    continue;
                }
                let job_change = w.hr.department != hr.department
                    || w.hr.job_code != hr.job_code
                    || w.hr.title != hr.title
                    || w.hr.employment_type != hr.employment_type;
                movers.push(Mover {
                    row: t.row,
                    employee_id: t.employee_id.clone(),
                    user_id: w.user_id,
                    changes,
                    job_change,
                    display_name,
                    email,
                    hr,
                    terminates_at: ends_at,
                });
            }
        }
    }

    let mut review = Vec::new();
    if full_roster {
        for w in workers {
            if w.status == UserStatus::Disabled {
                continue;
            }
            if let Some(eid) = &w.hr.employee_id
                && !seen.contains(eid)
            {
                review.push(ReviewEntry {
                    employee_id: eid.clone(),
                    user_id: w.user_id,
                    reason: "missing from the full roster; confirm with HR before disabling".into(),
                });
            }
        }
    }

    let workforce = workers.iter().filter(|w| w.status != UserStatus::Disabled && w.hr.employee_id.is_some()).count();
    let terminations = leavers.len();
    let share = if workforce == 0 { 0.0 } else { terminations as f64 / workforce as f64 };
    let tripped = terminations >= settings.breaker_min_terminations.max(1) && share > settings.max_termination_share;
    errors.sort_by_key(|e| e.row);
    Plan {
        sha256: roster.sha256.clone(),
        format: roster.format.unwrap_or(Format::Csv),
        full_roster,
        rows: roster.rows.len() + roster.errors.len(),
        joiners,
        movers,
        leavers,
        unchanged,
        review,
        errors,
        breaker: Breaker {
            workforce,
            terminations,
            share,
            max_share: settings.max_termination_share,
            min_terminations: settings.breaker_min_terminations,
            tripped,
        },
    }
}

fn username_problem(u: &str) -> Option<String> {
    let mut errors = Vec::new();
    wardkey_domain::validate_username(&mut errors, "username", u);
    errors.first().map(|e| e.message.clone())
}

fn type_row(r: &RawRow, settings: &ImportSettings, by_eid: &HashMap<&str, &Worker>) -> Result<Typed, RowError> {
    let eid = r.values.get("employee_id").cloned().unwrap_or_default();
    let err = |attr: &str, message: String| RowError {
        row: r.row,
        employee_id: if eid.is_empty() { None } else { Some(eid.clone()) },
        column: Some(settings.mapping.column_of(attr).to_owned()),
        message,
    };
    if eid.is_empty() {
        return Err(err("employee_id", "is empty; workers are matched on it".into()));
    }
    for (attr, v) in &r.values {
        let max = if matches!(*attr, "employee_id" | "username") { MAX_ID } else { MAX_VALUE };
        if v.len() > max {
            return Err(err(attr, format!("is {} bytes long; at most {max}", v.len())));
        }
        if v.chars().any(|c| c.is_control()) {
            return Err(err(attr, "contains control characters".into()));
        }
    }
    let get = |a: &str| r.values.get(a).map(String::as_str);
    let text = |a: &str| get(a).map(opt);
    let person = |a: &str| -> Result<Option<Option<UserId>>, RowError> {
        match get(a) {
            None => Ok(None),
            Some("") => Ok(Some(None)),
            Some(v) => match by_eid.get(v) {
                Some(w) if w.status != UserStatus::Disabled => Ok(Some(Some(w.user_id))),
                Some(_) => Err(err(a, format!("employee id {v:?} belongs to a disabled person"))),
                None => Err(err(a, format!("no person with employee id {v:?} in the directory"))),
            },
        }
    };
    let date = |a: &str| -> Result<Option<Option<NaiveDate>>, RowError> {
        match get(a) {
            None => Ok(None),
            Some("") => Ok(Some(None)),
            Some(v) => {
                parse_date(v).map(|d| Some(Some(d))).ok_or_else(|| err(a, format!("{v:?} is not a date (YYYY-MM-DD)")))
            }
        }
    };
    let employment_type = match get("employment_type") {
        None => None,
        Some("") => Some(None),
        Some(v) => Some(Some(EmploymentType::parse(v).ok_or_else(|| {
            err("employment_type", format!("{v:?} is not one of employee, contractor, vendor, student, volunteer"))
        })?)),
    };
    let time_zone = match get("time_zone") {
        None => None,
        Some("") => Some(None),
        Some(v) => {
            let mut errors = Vec::new();
            let hr = HrAttributes { time_zone: Some(v.to_owned()), ..Default::default() };
            hr.validate(&mut errors);
            if !errors.is_empty() {
                return Err(err("time_zone", format!("{v:?} is not an IANA time zone (e.g. America/Chicago)")));
            }
            Some(Some(v.to_owned()))
        }
    };
    let email = match text("email") {
        Some(Some(e)) => {
            let mut errors = Vec::new();
            wardkey_domain::validate::email(&mut errors, "email", &e);
            if let Some(fe) = errors.first() {
                return Err(err("email", fe.message.clone()));
            }
            Some(Some(e))
        }
        other => other,
    };
    let terminated =
        get("status").is_some_and(|s| settings.terminated_values.iter().any(|t| t.eq_ignore_ascii_case(s)));
    Ok(Typed {
        row: r.row,
        employee_id: eid.clone(),
        username: get("username").map(str::to_owned),
        display_name: text("display_name"),
        email,
        department: text("department"),
        job_code: text("job_code"),
        title: text("title"),
        // An unknown manager leaves the stored one (managers may join in a later file).
        manager: person("manager").unwrap_or(None),
        employment_type,
        end_date: date("end_date")?,
        termination_date: date("termination_date")?.flatten(),
        terminated,
        sponsor: person("sponsor")?,
        time_zone,
    })
}

/// The stored attributes with the row's columns laid over them.
fn merge(base: &HrAttributes, t: &Typed) -> HrAttributes {
    let mut hr = base.clone();
    hr.employee_id = Some(t.employee_id.clone());
    if let Some(v) = &t.department {
        hr.department = v.clone();
    }
    if let Some(v) = &t.job_code {
        hr.job_code = v.clone();
    }
    if let Some(v) = &t.title {
        hr.title = v.clone();
    }
    if let Some(v) = t.manager {
        hr.manager_id = v;
    }
    if let Some(v) = t.employment_type {
        hr.employment_type = v;
    }
    if let Some(v) = t.end_date {
        hr.end_date = v;
    }
    if let Some(v) = t.sponsor {
        hr.sponsor_id = v;
    }
    if let Some(v) = &t.time_zone {
        hr.time_zone = v.clone();
    }
    hr
}

fn diff(before: &HrAttributes, after: &HrAttributes) -> Vec<AttributeChange> {
    let mut out = Vec::new();
    let mut push = |name: &str, b: Option<String>, a: Option<String>| {
        if b != a {
            out.push(AttributeChange { attribute: name.to_owned(), before: b, after: a });
        }
    };
    push("department", before.department.clone(), after.department.clone());
    push("job_code", before.job_code.clone(), after.job_code.clone());
    push("title", before.title.clone(), after.title.clone());
    push("manager_id", before.manager_id.map(|m| m.to_string()), after.manager_id.map(|m| m.to_string()));
    push(
        "employment_type",
        before.employment_type.map(|e| e.as_str().to_owned()),
        after.employment_type.map(|e| e.as_str().to_owned()),
    );
    push("end_date", before.end_date.map(|d| d.to_string()), after.end_date.map(|d| d.to_string()));
    push("sponsor_id", before.sponsor_id.map(|m| m.to_string()), after.sponsor_id.map(|m| m.to_string()));
    push("time_zone", before.time_zone.clone(), after.time_zone.clone());
    out
}
