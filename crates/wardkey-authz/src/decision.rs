//! What the index answers. Serialisable with stable `code` strings, so the server can put the
//! reasons in a response or an audit event as they are.

use serde::Serialize;
use wardkey_domain::{
    Assurance, AttributeRule, DeviceTrust, ForbidRuleId, GrantId, GrantSource, GroupId, ResourceId, RoleId,
};

/// The answer to one [`crate::Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub allow: bool,
    /// Revision of the snapshot that decided, so a caller can tell how fresh the answer is.
    pub revision: u64,
    /// Why: the satisfied grants when allowed; what denied otherwise.
    pub reasons: Vec<Reason>,
    /// What the enforcement point must do along with an allow (`record_break_glass_use`).
    pub obligations: Vec<serde_json::Value>,
    /// Allowed only through emergency access.
    pub break_glass: bool,
    /// On a deny: the lowest assurance that would have allowed, all else equal (the caller
    /// turns it into `acr_values`).
    pub step_up: Option<Assurance>,
}

impl Decision {
    pub(crate) fn deny(revision: u64, reason: Reason) -> Decision {
        Decision::denied(revision, vec![reason], None)
    }

    pub(crate) fn denied(revision: u64, reasons: Vec<Reason>, step_up: Option<Assurance>) -> Decision {
        Decision { allow: false, revision, reasons, obligations: Vec::new(), break_glass: false, step_up }
    }
}

/// One reason of a decision. The `code` is stable API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Reason {
    UnknownSubject,
    SubjectNotActive {
        /// The subject's status (`suspended`, `disabled`, `pending_verification`).
        status: String,
    },
    UnknownResourceType,
    UnknownAction,
    ForbiddenByRule {
        rule_id: ForbidRuleId,
        rule_name: String,
    },
    /// A grant that allows.
    Granted {
        #[serde(flatten)]
        grant: GrantPath,
    },
    /// A grant that would have applied but whose conditions did not all hold.
    ConditionsNotMet {
        #[serde(flatten)]
        grant: GrantPath,
        failed: Vec<FailedCondition>,
    },
    NoGrant,
    /// Not the index's: the decision had to be recorded (PHI, `async` audit) and the queue
    /// was full, so the service denied rather than lose the event.
    AuditUnavailable,
}

impl Reason {
    pub fn code(&self) -> &'static str {
        match self {
            Reason::UnknownSubject => "unknown_subject",
            Reason::SubjectNotActive { .. } => "subject_not_active",
            Reason::UnknownResourceType => "unknown_resource_type",
            Reason::UnknownAction => "unknown_action",
            Reason::ForbiddenByRule { .. } => "forbidden_by_rule",
            Reason::Granted { .. } => "granted",
            Reason::ConditionsNotMet { .. } => "conditions_not_met",
            Reason::NoGrant => "no_grant",
            Reason::AuditUnavailable => "audit_unavailable",
        }
    }
}

/// How a subject holds a grant: the grant, its role, the group it came through, its scope and
/// its provenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantPath {
    pub grant_id: GrantId,
    pub role_id: RoleId,
    pub role_name: String,
    pub via: Via,
    /// The resource the grant is scoped to; `None`: every resource of the role's types.
    pub scope: Option<ResourceId>,
    pub source: GrantSource,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Via {
    /// Granted to the subject itself.
    Direct,
    /// Granted to a group the subject is a member of.
    Group { group_id: GroupId, group_name: String },
}

/// Whose condition failed: the role's (every holder's) or this grant's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConditionSource {
    Role,
    Grant,
}

/// A condition that did not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "condition", rename_all = "snake_case")]
pub enum FailedCondition {
    Assurance { on: ConditionSource, required: Assurance },
    Network { on: ConditionSource },
    TimeWindow { on: ConditionSource },
    DeviceTrust { on: ConditionSource, required: DeviceTrust },
    AttributeRule { on: ConditionSource, rule: AttributeRule },
}

impl FailedCondition {
    pub fn code(&self) -> &'static str {
        match self {
            FailedCondition::Assurance { .. } => "assurance",
            FailedCondition::Network { .. } => "network",
            FailedCondition::TimeWindow { .. } => "time_window",
            FailedCondition::DeviceTrust { .. } => "device_trust",
            FailedCondition::AttributeRule { .. } => "attribute_rule",
        }
    }
}
