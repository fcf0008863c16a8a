use crate::validate;
use crate::{DomainError, FieldError, GroupId, ServiceAccountId, Timestamp, UserId};
use chrono::NaiveDate;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

// ----------------------------------------------------------------- usernames

/// Checks a username: the general name rules, then PRECIS UsernameCaseMapped (RFC 8265),
/// which refuses characters that only look like letters (compatibility forms such as `ℎ`,
/// symbols, unassigned code points). Used by every path that names a user: the admin API,
/// SCIM `userName` and HR imports.
pub fn validate_username(errors: &mut Vec<FieldError>, field: &str, value: &str) {
    let before = errors.len();
    validate::name(errors, field, value);
    if errors.len() == before && username_key(value).is_none() {
        errors.push(FieldError::new(
            field,
            "contains characters not allowed in usernames (PRECIS UsernameCaseMapped, RFC 8265): \
             compatibility forms, symbols or unassigned characters",
        ));
    }
}

/// The form usernames are compared in: PRECIS UsernameCaseMapped (RFC 8265) enforcement,
/// i.e. full-width letters mapped to their ordinary forms, lower-cased, NFC. `None` when the
/// profile refuses the string.
pub fn username_key(username: &str) -> Option<String> {
    use precis_profiles::precis_core::profile::PrecisFastInvocation;
    precis_profiles::UsernameCaseMapped::enforce(username).ok().map(|k| k.into_owned())
}

/// The key a username is looked up by: [`username_key`], or plain lower-casing for a string
/// the profile refuses (such a name cannot be created, but a sign-in form may send anything,
/// and accounts created before the profile was enforced keep working).
pub fn username_lookup_key(username: &str) -> String {
    username_key(username).unwrap_or_else(|| username.to_lowercase())
}

/// The confusable skeleton (Unicode TS #39, `skeleton(X)`) of a username's compared form:
/// two usernames with one skeleton look alike (`һ.nurse` in Cyrillic and `h.nurse`), and
/// the store refuses a second live user with the same skeleton.
pub fn username_skeleton(username: &str) -> String {
    unicode_security::skeleton(&username_lookup_key(username)).collect()
}

/// Lifecycle of a person's account.
///
/// ```text
/// pending_verification ──► active ◄──► suspended
///          │                 │            │
///          └────────────► disabled ◄──────┘      disabled ──► pending_verification (rehire:
///                                                 identity must be verified again)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    PendingVerification,
    Active,
    Suspended,
    /// Terminated. Every session, token and grant of the user is revoked on entry.
    Disabled,
}

impl UserStatus {
    pub const ALL: [UserStatus; 4] =
        [UserStatus::PendingVerification, UserStatus::Active, UserStatus::Suspended, UserStatus::Disabled];

    pub fn as_str(&self) -> &'static str {
        match self {
            UserStatus::PendingVerification => "pending_verification",
            UserStatus::Active => "active",
            UserStatus::Suspended => "suspended",
            UserStatus::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<UserStatus> {
        UserStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the state machine allows moving from `self` to `to`. Staying put is not a move.
    pub fn can_move_to(self, to: UserStatus) -> bool {
        use UserStatus::*;
        matches!(
            (self, to),
            (PendingVerification, Active)
                | (PendingVerification, Disabled)
                | (Active, Suspended)
                | (Active, Disabled)
                | (Suspended, Active)
                | (Suspended, Disabled)
                | (Disabled, PendingVerification)
        )
    }

    pub fn transition(self, to: UserStatus) -> Result<UserStatus, DomainError> {
        if self.can_move_to(to) {
            Ok(to)
        } else {
            Err(DomainError::IllegalTransition { from: self.as_str().into(), to: to.as_str().into() })
        }
    }

    /// Whether a subject in this state may hold effective access at all.
    pub fn may_access(self) -> bool {
        self == UserStatus::Active
    }
}

impl std::fmt::Display for UserStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EmploymentType {
    Employee,
    Contractor,
    Vendor,
    Student,
    Volunteer,
}

impl EmploymentType {
    pub fn as_str(&self) -> &'static str {
        match self {
            EmploymentType::Employee => "employee",
            EmploymentType::Contractor => "contractor",
            EmploymentType::Vendor => "vendor",
            EmploymentType::Student => "student",
            EmploymentType::Volunteer => "volunteer",
        }
    }

    pub fn parse(s: &str) -> Option<EmploymentType> {
        [
            EmploymentType::Employee,
            EmploymentType::Contractor,
            EmploymentType::Vendor,
            EmploymentType::Student,
            EmploymentType::Volunteer,
        ]
        .into_iter()
        .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// Contractors and vendors have an accountable sponsor and an end date.
    pub fn needs_sponsor(&self) -> bool {
        matches!(self, EmploymentType::Contractor | EmploymentType::Vendor)
    }
}

/// Attributes that come from HR. They drive birthright roles (role templates).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HrAttributes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employee_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager_id: Option<UserId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employment_type: Option<EmploymentType>,
    /// Last day of employment or contract, in the worker's calendar: access ends at the end of
    /// that day (00:00 of the next day) in `time_zone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<NaiveDate>,
    /// The accountable employee who sponsors a contractor or vendor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sponsor_id: Option<UserId>,
    /// IANA time zone of the worker (`America/Chicago`); dates such as `end_date` are read in
    /// it. UTC when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

impl HrAttributes {
    pub fn validate(&self, errors: &mut Vec<FieldError>) {
        validate::opt_text(errors, "hr.employee_id", &self.employee_id, validate::MAX_NAME);
        validate::opt_text(errors, "hr.department", &self.department, validate::MAX_SHORT);
        validate::opt_text(errors, "hr.job_code", &self.job_code, validate::MAX_NAME);
        validate::opt_text(errors, "hr.title", &self.title, validate::MAX_SHORT);
        validate::opt_text(errors, "hr.time_zone", &self.time_zone, validate::MAX_NAME);
        if let Some(tz) = &self.time_zone
            && tz.len() <= validate::MAX_NAME
            && tz.parse::<chrono_tz::Tz>().is_err()
        {
            errors.push(FieldError::new("hr.time_zone", "must be an IANA time zone such as America/Chicago"));
        }
        if self.employment_type.is_some_and(|t| t.needs_sponsor())
            && (self.sponsor_id.is_none() || self.end_date.is_none())
        {
            errors.push(FieldError::new("hr.sponsor_id", "contractors and vendors need a sponsor and an end date"));
        }
    }

    /// The worker's time zone (UTC when absent or unknown; validation refuses unknown zones).
    pub fn tz(&self) -> chrono_tz::Tz {
        self.time_zone.as_deref().and_then(|z| z.parse().ok()).unwrap_or(chrono_tz::UTC)
    }

    /// The instant access ends because of `end_date`: 00:00 of the day after it in the
    /// worker's time zone (the first instant of that local day when a DST gap skips midnight).
    pub fn access_ends_at(&self) -> Option<DateTime<Utc>> {
        let day_after = self.end_date?.succ_opt()?;
        Some(start_of_day(day_after, self.tz()))
    }

    /// Value of a named attribute, as role-template rules see it.
    pub fn get(&self, attribute: HrAttribute) -> Option<String> {
        match attribute {
            HrAttribute::EmployeeId => self.employee_id.clone(),
            HrAttribute::Department => self.department.clone(),
            HrAttribute::JobCode => self.job_code.clone(),
            HrAttribute::Title => self.title.clone(),
            HrAttribute::EmploymentType => self.employment_type.map(|e| e.as_str().to_owned()),
        }
    }
}

/// First instant of `day` in `tz`, as UTC (DST gaps move it to the first instant that exists).
pub fn start_of_day(day: NaiveDate, tz: chrono_tz::Tz) -> DateTime<Utc> {
    use chrono::TimeZone;
    let mut t = day.and_time(chrono::NaiveTime::MIN);
    // A gap is at most a few hours; step forward a quarter hour at a time until the local time exists.
    for _ in 0..32 {
        if let Some(local) = tz.from_local_datetime(&t).earliest() {
            return local.with_timezone(&Utc);
        }
        t += chrono::Duration::minutes(15);
    }
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// HR attributes a role template may match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HrAttribute {
    EmployeeId,
    Department,
    JobCode,
    Title,
    EmploymentType,
}

/// Record of who confirmed a person's identity at onboarding, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityVerification {
    /// Principal of whoever verified (as in audit events).
    pub verified_by: String,
    /// How: e.g. `in_person_government_id`, `remote_document_check`.
    pub method: String,
    pub verified_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub status: UserStatus,
    pub hr: HrAttributes,
    pub verification: Option<IdentityVerification>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency version; writes must name the version they read.
    pub version: i64,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    /// Always `pending_verification` (may be given explicitly); activation follows identity verification.
    #[serde(default)]
    pub status: Option<UserStatus>,
    #[serde(default)]
    pub hr: HrAttributes,
}

impl NewUser {
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut errors = Vec::new();
        validate_username(&mut errors, "username", &self.username);
        validate::opt_text(&mut errors, "display_name", &self.display_name, validate::MAX_SHORT);
        if let Some(email) = &self.email {
            validate::email(&mut errors, "email", email);
        }
        if let Some(status) = self.status
            && status != UserStatus::PendingVerification
        {
            // Activation needs a recorded identity verification: POST .../verify-identity, then .../status.
            errors.push(FieldError::new(
                "status",
                "a new user starts as pending_verification; verify the identity, then activate",
            ));
        }
        self.hr.validate(&mut errors);
        validate::finish(errors)
    }

    pub fn into_user(self, id: UserId, now: Timestamp) -> User {
        User {
            id,
            username: self.username,
            display_name: self.display_name,
            email: self.email,
            status: self.status.unwrap_or(UserStatus::PendingVerification),
            hr: self.hr,
            verification: None,
            created_at: now,
            updated_at: now,
            version: 1,
        }
    }
}

/// Changes to a user. Absent fields stay as they are; `version` must match the stored one.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    pub version: i64,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    /// Replaces all HR attributes when present.
    #[serde(default)]
    pub hr: Option<HrAttributes>,
}

impl UserUpdate {
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut errors = Vec::new();
        validate::opt_text(&mut errors, "display_name", &self.display_name, validate::MAX_SHORT);
        if let Some(email) = &self.email {
            validate::email(&mut errors, "email", email);
        }
        if let Some(hr) = &self.hr {
            hr.validate(&mut errors);
        }
        validate::finish(errors)
    }

    /// Applies the changes; returns the names of the fields that changed.
    pub fn apply(self, user: &mut User) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if let Some(v) = self.display_name
            && user.display_name.as_ref() != Some(&v)
        {
            user.display_name = Some(v);
            changed.push("display_name");
        }
        if let Some(v) = self.email
            && user.email.as_ref() != Some(&v)
        {
            user.email = Some(v);
            changed.push("email");
        }
        if let Some(hr) = self.hr
            && user.hr != hr
        {
            user.hr = hr;
            changed.push("hr");
        }
        changed
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Group {
    pub id: GroupId,
    pub name: String,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

impl NewGroup {
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut errors = Vec::new();
        validate::name(&mut errors, "name", &self.name);
        validate::opt_text(&mut errors, "description", &self.description, validate::MAX_TEXT);
        validate::finish(errors)
    }
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupUpdate {
    pub version: i64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

impl GroupUpdate {
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut errors = Vec::new();
        if let Some(n) = &self.name {
            validate::name(&mut errors, "name", n);
        }
        validate::opt_text(&mut errors, "description", &self.description, validate::MAX_TEXT);
        validate::finish(errors)
    }
}

/// A member of a group: a person or a service account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum Member {
    User(UserId),
    ServiceAccount(ServiceAccountId),
}

impl Member {
    pub fn target(&self) -> String {
        match self {
            Member::User(id) => id.target(),
            Member::ServiceAccount(id) => id.target(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServiceAccountStatus {
    Active,
    Disabled,
}

impl ServiceAccountStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ServiceAccountStatus::Active => "active",
            ServiceAccountStatus::Disabled => "disabled",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(ServiceAccountStatus::Active),
            "disabled" => Some(ServiceAccountStatus::Disabled),
            _ => None,
        }
    }
}

/// A non-human identity. No shared accounts: every service account has one accountable
/// human owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServiceAccount {
    pub id: ServiceAccountId,
    pub name: String,
    pub description: Option<String>,
    pub owner_id: UserId,
    pub status: ServiceAccountStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewServiceAccount {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub owner_id: UserId,
}

impl NewServiceAccount {
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut errors = Vec::new();
        validate::name(&mut errors, "name", &self.name);
        validate::opt_text(&mut errors, "description", &self.description, validate::MAX_TEXT);
        validate::finish(errors)
    }
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccountUpdate {
    pub version: i64,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub owner_id: Option<UserId>,
    #[serde(default)]
    pub status: Option<ServiceAccountStatus>,
}

impl ServiceAccountUpdate {
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut errors = Vec::new();
        validate::opt_text(&mut errors, "description", &self.description, validate::MAX_TEXT);
        validate::finish(errors)
    }
}
