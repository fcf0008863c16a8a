//! Conditions on roles and grants, and forbid rules: the data the decision point evaluates.
//! Everything here is validated when saved (bad networks, unknown time zones, empty rules are
//! refused), so evaluation never meets a malformed condition.

use crate::{FieldError, validate};
use serde::{Deserialize, Serialize};

/// How strongly the person behind a request authenticated, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Assurance {
    /// A password (or nothing known).
    Password,
    /// A second factor was used.
    Mfa,
    /// A phishing-resistant factor (a passkey) was used.
    PhishingResistant,
}

impl Assurance {
    /// The `acr_values` hint for a PEP that must step up to reach this level.
    pub fn acr(&self) -> &'static str {
        match self {
            Assurance::Password => "urn:wardkey:acr:password",
            Assurance::Mfa => "urn:wardkey:acr:mfa",
            Assurance::PhishingResistant => "urn:wardkey:acr:phishing-resistant",
        }
    }

    /// From RFC 8176 `amr` values a PEP reports: `hwk`/`swk` with user verification or
    /// `pop` count as phishing-resistant, `otp`/`mfa`/`sms` as MFA.
    pub fn from_amr<'a>(amr: impl IntoIterator<Item = &'a str>) -> Assurance {
        let mut level = Assurance::Password;
        for a in amr {
            let l = match a {
                "hwk" | "pop" | "swk" | "webauthn" => Assurance::PhishingResistant,
                "otp" | "mfa" | "sms" | "tel" | "totp" => Assurance::Mfa,
                _ => Assurance::Password,
            };
            level = level.max(l);
        }
        level
    }
}

/// How much the device a request comes from is trusted, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceTrust {
    Unknown,
    Registered,
    Managed,
    Compliant,
}

impl DeviceTrust {
    pub fn parse(s: &str) -> Option<DeviceTrust> {
        match s {
            "unknown" => Some(DeviceTrust::Unknown),
            "registered" => Some(DeviceTrust::Registered),
            "managed" => Some(DeviceTrust::Managed),
            "compliant" => Some(DeviceTrust::Compliant),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Day {
    pub fn from_chrono(d: chrono::Weekday) -> Day {
        match d {
            chrono::Weekday::Mon => Day::Mon,
            chrono::Weekday::Tue => Day::Tue,
            chrono::Weekday::Wed => Day::Wed,
            chrono::Weekday::Thu => Day::Thu,
            chrono::Weekday::Fri => Day::Fri,
            chrono::Weekday::Sat => Day::Sat,
            chrono::Weekday::Sun => Day::Sun,
        }
    }
}

/// Shift hours in a named time zone. `start` and `end` are `HH:MM`; an `end` at or before
/// `start` spans midnight (a night shift 19:00–07:00 belongs to the day it starts). Empty
/// `days` means every day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeWindow {
    /// IANA time zone name, e.g. `Europe/London`, `America/New_York`.
    pub time_zone: String,
    #[serde(default)]
    pub days: Vec<Day>,
    pub start: String,
    pub end: String,
}

/// Minutes after midnight of an `HH:MM` string.
pub fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: u32 = h.parse().ok()?;
    let m: u32 = m.parse().ok()?;
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// How a resource property is compared with a subject attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttributeOp {
    /// The resource property equals the subject attribute (e.g. `owner` = `id`).
    Equals,
    /// The subject attribute (a list, e.g. `groups`) contains the resource property (e.g.
    /// the record's `care_team`).
    In,
}

/// A comparison of a property the application sends about the resource with an attribute
/// Wardkey holds about the subject. A missing property fails the rule (deny by default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributeRule {
    /// Property of the resource: the attribute Wardkey stores for a registered resource, else
    /// the request's `resource.properties.<name>` (a stored attribute wins over a sent one).
    pub resource_property: String,
    pub op: AttributeOp,
    /// Subject attribute: `id`, `username`, `email`, `department`, `job_code`, `title`,
    /// `employment_type`, or `groups` (names of the groups the subject belongs to).
    pub subject_attribute: String,
}

pub const SUBJECT_ATTRIBUTES: [&str; 8] =
    ["id", "username", "email", "department", "job_code", "title", "employment_type", "groups"];

/// Conditions that must all hold for a role or grant to allow. Empty: always.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    /// Minimum authentication assurance of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_assurance: Option<Assurance>,
    /// The request's source address must be in one of these networks (CIDR).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
    /// The request time must fall in one of these windows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub time_windows: Vec<TimeWindow>,
    /// Minimum trust of the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_device_trust: Option<DeviceTrust>,
    /// Every rule must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attribute_rules: Vec<AttributeRule>,
}

impl Conditions {
    pub fn is_empty(&self) -> bool {
        self.min_assurance.is_none()
            && self.networks.is_empty()
            && self.time_windows.is_empty()
            && self.min_device_trust.is_none()
            && self.attribute_rules.is_empty()
    }

    /// Checks every part; `prefix` names the field in errors (`conditions`).
    pub fn validate(&self, errors: &mut Vec<FieldError>, prefix: &str) {
        validate::list_len(errors, &format!("{prefix}.networks"), &self.networks, 64);
        for (i, n) in self.networks.iter().enumerate() {
            if n.parse::<ipnet::IpNet>().is_err() {
                errors.push(FieldError::new(
                    format!("{prefix}.networks[{i}]"),
                    format!("{n:?} is not a network in CIDR form (10.0.0.0/8, 2001:db8::/32)"),
                ));
            }
        }
        validate::list_len(errors, &format!("{prefix}.time_windows"), &self.time_windows, 16);
        for (i, w) in self.time_windows.iter().enumerate() {
            let f = format!("{prefix}.time_windows[{i}]");
            if w.time_zone.parse::<chrono_tz::Tz>().is_err() {
                errors.push(FieldError::new(
                    format!("{f}.time_zone"),
                    format!("{:?} is not an IANA time zone (e.g. Europe/London)", validate::clip(&w.time_zone)),
                ));
            }
            if parse_hhmm(&w.start).is_none() {
                errors.push(FieldError::new(format!("{f}.start"), "expected HH:MM (00:00 to 23:59)"));
            }
            if parse_hhmm(&w.end).is_none() {
                errors.push(FieldError::new(format!("{f}.end"), "expected HH:MM (00:00 to 23:59)"));
            }
            if w.days.len() > 7 {
                errors.push(FieldError::new(format!("{f}.days"), "at most 7 days"));
            }
        }
        validate::list_len(errors, &format!("{prefix}.attribute_rules"), &self.attribute_rules, 16);
        for (i, r) in self.attribute_rules.iter().enumerate() {
            let f = format!("{prefix}.attribute_rules[{i}]");
            validate::text(errors, &format!("{f}.resource_property"), &r.resource_property, validate::MAX_NAME);
            if !SUBJECT_ATTRIBUTES.contains(&r.subject_attribute.as_str()) {
                errors.push(FieldError::new(
                    format!("{f}.subject_attribute"),
                    format!("must be one of {}", SUBJECT_ATTRIBUTES.join(", ")),
                ));
            }
            if r.op == AttributeOp::In && r.subject_attribute != "groups" {
                errors.push(FieldError::new(format!("{f}.op"), "`in` needs a list attribute (groups)"));
            }
        }
    }
}

/// What makes a forbid rule apply (besides its resource types and actions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ForbidWhen {
    /// The resource property has one of `values` (e.g. `category` in `psychiatry`, `hiv`) and
    /// the subject is not in the group `unless_group` (a clearance).
    ResourceProperty {
        property: String,
        values: Vec<String>,
        #[serde(default)]
        unless_group: Option<String>,
    },
    /// The device is trusted less than `min` (e.g. writes from unmanaged devices).
    DeviceTrustBelow { min: DeviceTrust },
    /// The source address is outside every one of `networks`.
    NetworkOutside { networks: Vec<String> },
    /// Always (with resource types and actions, a blanket ban).
    Always,
}

/// A rule that denies whatever any grant allows. Subjects that are not active (suspended,
/// disabled, pending) are always forbidden without a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ForbidRule {
    pub id: crate::ForbidRuleId,
    pub name: String,
    pub description: Option<String>,
    /// Resource type names it covers; empty: all.
    pub resource_types: Vec<String>,
    /// Actions it covers; empty: all.
    pub actions: Vec<String>,
    pub when: ForbidWhen,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub version: i64,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewForbidRule {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub resource_types: Vec<String>,
    #[serde(default)]
    pub actions: Vec<String>,
    pub when: ForbidWhen,
}

impl ForbidWhen {
    pub fn validate(&self, errors: &mut Vec<FieldError>) {
        match self {
            ForbidWhen::ResourceProperty { property, values, unless_group } => {
                validate::text(errors, "when.property", property, validate::MAX_NAME);
                if values.is_empty() {
                    errors.push(FieldError::new("when.values", "name at least one value"));
                }
                validate::list_len(errors, "when.values", values, 256);
                for v in values {
                    validate::text(errors, "when.values", v, validate::MAX_SHORT);
                }
                validate::opt_text(errors, "when.unless_group", unless_group, validate::MAX_NAME);
            }
            ForbidWhen::DeviceTrustBelow { .. } | ForbidWhen::Always => {}
            ForbidWhen::NetworkOutside { networks } => {
                if networks.is_empty() {
                    errors.push(FieldError::new("when.networks", "name at least one network"));
                }
                validate::list_len(errors, "when.networks", networks, 64);
                for (i, n) in networks.iter().enumerate() {
                    if n.parse::<ipnet::IpNet>().is_err() {
                        errors.push(FieldError::new(
                            format!("when.networks[{i}]"),
                            format!("{n:?} is not a network in CIDR form"),
                        ));
                    }
                }
            }
        }
    }
}

impl NewForbidRule {
    pub fn validate(&self) -> Result<(), crate::DomainError> {
        let mut errors = Vec::new();
        validate::name(&mut errors, "name", &self.name);
        validate::opt_text(&mut errors, "description", &self.description, validate::MAX_TEXT);
        validate::list_len(&mut errors, "resource_types", &self.resource_types, 64);
        validate::list_len(&mut errors, "actions", &self.actions, 64);
        self.when.validate(&mut errors);
        validate::finish(errors)
    }
}
