//! Records of authentication: sessions, enrolled factors, password metadata, and the
//! per-role session rules. The mechanics (hashing, TOTP, WebAuthn, timeouts) live in
//! `wardkey-authn`; these are the shapes the store keeps and the API shows.

use crate::{FactorId, Scope, SessionId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a session is in the sign-in flow. Only `Active` sessions reach anything but the
/// next sign-in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionStage {
    /// Password accepted; a second factor is due.
    SecondFactor,
    /// Password accepted, but the user has no second factor yet: enrolment only.
    Enrol,
    /// Fully signed in.
    Active,
}

impl SessionStage {
    pub fn as_str(&self) -> &'static str {
        match self {
            SessionStage::SecondFactor => "second_factor",
            SessionStage::Enrol => "enrol",
            SessionStage::Active => "active",
        }
    }

    pub fn parse(s: &str) -> Option<SessionStage> {
        [SessionStage::SecondFactor, SessionStage::Enrol, SessionStage::Active].into_iter().find(|v| v.as_str() == s)
    }
}

/// A server-side session. The cookie carries a random secret; the store keeps only its hash
/// (not part of this record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    pub stage: SessionStage,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// The absolute deadline, fixed at sign-in by the strictest applicable policy.
    pub expires_at: DateTime<Utc>,
    /// When a password was last proved in this session.
    pub password_at: Option<DateTime<Utc>>,
    /// When a second factor was last proved (step-up renews it).
    pub mfa_at: Option<DateTime<Utc>>,
    /// When a phishing-resistant factor (a passkey) was last proved.
    pub phishing_resistant_at: Option<DateTime<Utc>>,
    /// Methods proved in this session, in order (`password`, `totp`, `recovery_code`, `webauthn`).
    pub methods: Vec<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub ended_at: Option<DateTime<Utc>>,
    /// `logout`, `timeout`, `expired`, `revoked`, `user_disabled`, `password_changed`, ...
    pub ended_reason: Option<String>,
    /// Principal who ended it (the user, an admin, `system:...`).
    pub ended_by: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FactorKind {
    Totp,
    Webauthn,
}

impl FactorKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            FactorKind::Totp => "totp",
            FactorKind::Webauthn => "webauthn",
        }
    }

    pub fn parse(s: &str) -> Option<FactorKind> {
        match s {
            "totp" => Some(FactorKind::Totp),
            "webauthn" => Some(FactorKind::Webauthn),
            _ => None,
        }
    }

    /// A passkey is bound to the origin, so a look-alike site cannot relay it.
    pub fn phishing_resistant(&self) -> bool {
        matches!(self, FactorKind::Webauthn)
    }
}

/// An enrolled second factor, without its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Factor {
    pub id: FactorId,
    pub user_id: UserId,
    pub kind: FactorKind,
    pub name: String,
    /// A TOTP factor counts only after the user has typed one code from it.
    pub confirmed: bool,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// Password metadata (the hash is never part of a record that leaves the store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PasswordInfo {
    pub set_at: DateTime<Utc>,
    /// Set by an admin on evidence of compromise; the next sign-in must change it.
    pub must_change: bool,
    pub set_by: String,
}

/// Consecutive sign-in failures of an account, as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoginFailures {
    pub consecutive: u32,
    pub last_failure_at: Option<DateTime<Utc>>,
    pub locked_at: Option<DateTime<Utc>>,
    /// Consecutive failed second factors, counted apart from passwords (a correct password
    /// does not clear them).
    #[serde(default)]
    pub second_factor_consecutive: u32,
    #[serde(default)]
    pub second_factor_last_failure_at: Option<DateTime<Utc>>,
}

/// What holding a role asks of a session. The strictest rule among the roles a user holds
/// applies to the whole session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleSessionPolicy {
    /// The role is exercised only in sessions that used a passkey.
    #[serde(default)]
    pub require_phishing_resistant: bool,
    /// Idle timeout for sessions of holders, if tighter than the global one.
    #[serde(default)]
    pub idle_timeout_secs: Option<u32>,
    /// Absolute lifetime for sessions of holders, if tighter than the global one.
    #[serde(default)]
    pub max_lifetime_secs: Option<u32>,
    /// Wardkey API scopes a holder's session may exercise (`admin`, `audit:read`): how people
    /// administer Wardkey from the console with their own account instead of a shared token.
    #[serde(default)]
    pub scopes: Vec<Scope>,
}

pub const MIN_IDLE_TIMEOUT_SECS: u32 = 60;
pub const MAX_IDLE_TIMEOUT_SECS: u32 = 24 * 3600;
pub const MIN_LIFETIME_SECS: u32 = 300;
pub const MAX_LIFETIME_SECS: u32 = 7 * 24 * 3600;

impl RoleSessionPolicy {
    pub(crate) fn validate(&self, errors: &mut Vec<crate::FieldError>) {
        if let Some(v) = self.idle_timeout_secs
            && !(MIN_IDLE_TIMEOUT_SECS..=MAX_IDLE_TIMEOUT_SECS).contains(&v)
        {
            errors.push(crate::FieldError::new(
                "session_policy.idle_timeout_secs",
                format!("must be between {MIN_IDLE_TIMEOUT_SECS} and {MAX_IDLE_TIMEOUT_SECS} seconds"),
            ));
        }
        if let Some(v) = self.max_lifetime_secs
            && !(MIN_LIFETIME_SECS..=MAX_LIFETIME_SECS).contains(&v)
        {
            errors.push(crate::FieldError::new(
                "session_policy.max_lifetime_secs",
                format!("must be between {MIN_LIFETIME_SECS} and {MAX_LIFETIME_SECS} seconds"),
            ));
        }
        for s in &self.scopes {
            if !matches!(s, Scope::Admin | Scope::AuditRead) {
                errors.push(crate::FieldError::new(
                    "session_policy.scopes",
                    format!("scope {s} is for machine callers (API tokens), not people's sessions"),
                ));
            }
        }
    }
}
