use crate::validate;
use crate::{
    ApiTokenId, DomainError, FieldError, GrantId, GroupId, ResourceId, ResourceTypeId, RoleId, Scope, ServiceAccountId,
    Timestamp, UserId,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A kind of protected thing (`dataset`, `application`, `record_set`) and the actions that
/// can be done on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResourceType {
    pub id: ResourceTypeId,
    pub name: String,
    pub description: Option<String>,
    /// Sorted, unique action names (`read`, `write`, `delete`, `export`, ...).
    pub actions: Vec<String>,
    /// Whether resources of this type hold protected health information.
    pub phi: bool,
    /// For PHI types: whether a decision waits for its audit event (`sync`) or the event is
    /// queued and flushed within 100 ms (`async`).
    #[serde(default)]
    pub decision_audit: DecisionAudit,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

fn validate_actions(errors: &mut Vec<FieldError>, actions: &[String]) {
    if actions.is_empty() {
        errors.push(FieldError::new("actions", "must name at least one action"));
    }
    validate::list_len(errors, "actions", actions, 64);
    for (i, a) in actions.iter().enumerate() {
        validate::name(errors, &format!("actions[{i}]"), a);
    }
}

/// Sorted and deduplicated, so that equal sets compare and store equal.
pub fn normalise_actions(actions: &mut Vec<String>) {
    actions.sort();
    actions.dedup();
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewResourceType {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub actions: Vec<String>,
    #[serde(default)]
    pub phi: bool,
    #[serde(default)]
    pub decision_audit: DecisionAudit,
}

/// How decisions on a PHI resource type are recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionAudit {
    /// The decision is returned after its event is durable.
    Sync,
    /// The event is queued (bounded) and flushed within 100 ms; overflow denies.
    #[default]
    Async,
}

impl DecisionAudit {
    pub fn as_str(&self) -> &'static str {
        match self {
            DecisionAudit::Sync => "sync",
            DecisionAudit::Async => "async",
        }
    }
    pub fn parse(s: &str) -> Option<DecisionAudit> {
        match s {
            "sync" => Some(DecisionAudit::Sync),
            "async" => Some(DecisionAudit::Async),
            _ => None,
        }
    }
}

impl NewResourceType {
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut errors = Vec::new();
        validate::name(&mut errors, "name", &self.name);
        validate::opt_text(&mut errors, "description", &self.description, validate::MAX_TEXT);
        validate_actions(&mut errors, &self.actions);
        validate::finish(errors)
    }
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceTypeUpdate {
    pub version: i64,
    #[serde(default)]
    pub description: Option<String>,
    /// Replaces the action list. Removing an action still used by a role is refused.
    #[serde(default)]
    pub actions: Option<Vec<String>>,
    #[serde(default)]
    pub phi: Option<bool>,
    #[serde(default)]
    pub decision_audit: Option<DecisionAudit>,
}

impl ResourceTypeUpdate {
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut errors = Vec::new();
        validate::opt_text(&mut errors, "description", &self.description, validate::MAX_TEXT);
        if let Some(actions) = &self.actions {
            validate_actions(&mut errors, actions);
        }
        validate::finish(errors)
    }
}

/// A protected thing. Resources form a tree (facility → department → dataset); a grant
/// scoped to a resource covers all of its descendants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Resource {
    pub id: ResourceId,
    pub type_id: ResourceTypeId,
    pub name: String,
    pub parent_id: Option<ResourceId>,
    pub description: Option<String>,
    /// Free-form string attributes (e.g. `department`, `sensitivity`), used by conditions.
    pub attributes: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

fn validate_attributes(errors: &mut Vec<FieldError>, attributes: &BTreeMap<String, String>) {
    if attributes.len() > 64 {
        errors.push(FieldError::new("attributes", "must have at most 64 entries"));
    }
    for (k, v) in attributes {
        validate::name(errors, &format!("attributes.{k}"), k);
        validate::text(errors, &format!("attributes.{k}"), v, validate::MAX_SHORT);
    }
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewResource {
    pub type_id: ResourceTypeId,
    pub name: String,
    #[serde(default)]
    pub parent_id: Option<ResourceId>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

impl NewResource {
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut errors = Vec::new();
        validate::name(&mut errors, "name", &self.name);
        validate::opt_text(&mut errors, "description", &self.description, validate::MAX_TEXT);
        validate_attributes(&mut errors, &self.attributes);
        validate::finish(errors)
    }
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceUpdate {
    pub version: i64,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub attributes: Option<BTreeMap<String, String>>,
    /// Moves the resource under another parent. Cycles are refused. `null` is not a move;
    /// use `move_to_root` to detach.
    #[serde(default)]
    pub parent_id: Option<ResourceId>,
    #[serde(default)]
    pub move_to_root: bool,
}

impl ResourceUpdate {
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut errors = Vec::new();
        validate::opt_text(&mut errors, "description", &self.description, validate::MAX_TEXT);
        if let Some(attrs) = &self.attributes {
            validate_attributes(&mut errors, attrs);
        }
        if self.move_to_root && self.parent_id.is_some() {
            errors.push(FieldError::new("parent_id", "give either parent_id or move_to_root, not both"));
        }
        validate::finish(errors)
    }
}

/// How many ancestors a resource may have (a root has none). One limit for the whole product:
/// the domain refuses a resource (or a move) that would sit deeper, the store follows parent
/// chains this far, and the decision index walks this far up from a resource, so a grant on
/// any ancestor the store accepted applies to it.
pub const MAX_RESOURCE_DEPTH: usize = 64;

/// Refuses a resource whose deepest point would lie below [`MAX_RESOURCE_DEPTH`]: placed under
/// a parent that has `parent_ancestors` ancestors, with a subtree `subtree_height` levels tall
/// below it (0 for a new resource or a leaf).
pub fn check_depth(parent_ancestors: usize, subtree_height: usize) -> Result<(), DomainError> {
    let deepest = parent_ancestors.saturating_add(1).saturating_add(subtree_height);
    if deepest > MAX_RESOURCE_DEPTH {
        Err(DomainError::invalid(
            "parent_id",
            format!(
                "the resource tree may be at most {MAX_RESOURCE_DEPTH} levels below its root; this would put a \
                 resource {deepest} levels down"
            ),
        ))
    } else {
        Ok(())
    }
}

/// Refuses a parent change that would make `resource` its own ancestor.
/// `ancestors_of_new_parent` lists the new parent and all of its ancestors.
pub fn check_no_cycle(resource: ResourceId, ancestors_of_new_parent: &[ResourceId]) -> Result<(), DomainError> {
    if ancestors_of_new_parent.contains(&resource) {
        Err(DomainError::invalid("parent_id", "would make the resource its own ancestor"))
    } else {
        Ok(())
    }
}

/// Actions allowed on one resource type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Permission {
    /// Name of the resource type.
    pub resource_type: String,
    pub actions: Vec<String>,
}

/// A bundle of permissions. Least privilege: a role grants nothing it does not list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Role {
    pub id: RoleId,
    pub name: String,
    pub description: Option<String>,
    pub permissions: Vec<Permission>,
    /// Privileged roles are flagged in reviews and (later) need step-up to grant.
    pub privileged: bool,
    /// What holding this role asks of a session (passkey, tighter timeouts) and the Wardkey
    /// scopes it gives a holder's session.
    #[serde(default)]
    pub session_policy: crate::RoleSessionPolicy,
    /// Conditions every use of this role must meet (assurance, network, shift hours, device,
    /// attribute rules).
    #[serde(default, skip_serializing_if = "crate::Conditions::is_empty")]
    pub conditions: crate::Conditions,
    /// People may give themselves this role in an emergency (break-glass), time-boxed and
    /// flagged for review.
    #[serde(default)]
    pub break_glass: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

impl Role {
    pub fn allows(&self, resource_type: &str, action: &str) -> bool {
        self.permissions.iter().any(|p| p.resource_type == resource_type && p.actions.iter().any(|a| a == action))
    }
}

fn validate_permissions(errors: &mut Vec<FieldError>, permissions: &[Permission], types: &[ResourceType]) {
    validate::list_len(errors, "permissions", permissions, 256);
    for (i, p) in permissions.iter().enumerate() {
        let Some(rt) = types.iter().find(|t| t.name == p.resource_type) else {
            errors.push(FieldError::new(
                format!("permissions[{i}].resource_type"),
                format!("no resource type named {:?}", truncate(&p.resource_type)),
            ));
            continue;
        };
        if p.actions.is_empty() {
            errors.push(FieldError::new(format!("permissions[{i}].actions"), "must name at least one action"));
        }
        for (j, a) in p.actions.iter().enumerate() {
            if !rt.actions.contains(a) {
                errors.push(FieldError::new(
                    format!("permissions[{i}].actions[{j}]"),
                    format!("resource type {} has no action {:?}", rt.name, truncate(a)),
                ));
            }
        }
    }
}

/// Merges permissions per resource type and sorts them, so equal roles store equal.
pub fn normalise_permissions(permissions: Vec<Permission>) -> Vec<Permission> {
    let mut by_type: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in permissions {
        by_type.entry(p.resource_type).or_default().extend(p.actions);
    }
    by_type
        .into_iter()
        .map(|(resource_type, mut actions)| {
            normalise_actions(&mut actions);
            Permission { resource_type, actions }
        })
        .collect()
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRole {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub permissions: Vec<Permission>,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub session_policy: crate::RoleSessionPolicy,
    #[serde(default)]
    pub conditions: crate::Conditions,
    #[serde(default)]
    pub break_glass: bool,
}

impl NewRole {
    /// `types` are the resource types the permissions may name.
    pub fn validate(&self, types: &[ResourceType]) -> Result<(), DomainError> {
        let mut errors = Vec::new();
        validate::name(&mut errors, "name", &self.name);
        validate::opt_text(&mut errors, "description", &self.description, validate::MAX_TEXT);
        validate_permissions(&mut errors, &self.permissions, types);
        self.session_policy.validate(&mut errors);
        self.conditions.validate(&mut errors, "conditions");
        validate::finish(errors)
    }
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleUpdate {
    pub version: i64,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub permissions: Option<Vec<Permission>>,
    #[serde(default)]
    pub privileged: Option<bool>,
    #[serde(default)]
    pub session_policy: Option<crate::RoleSessionPolicy>,
    #[serde(default)]
    pub conditions: Option<crate::Conditions>,
    #[serde(default)]
    pub break_glass: Option<bool>,
}

impl RoleUpdate {
    pub fn validate(&self, types: &[ResourceType]) -> Result<(), DomainError> {
        let mut errors = Vec::new();
        validate::opt_text(&mut errors, "description", &self.description, validate::MAX_TEXT);
        if let Some(p) = &self.permissions {
            validate_permissions(&mut errors, p, types);
        }
        if let Some(p) = &self.session_policy {
            p.validate(&mut errors);
        }
        if let Some(c) = &self.conditions {
            c.validate(&mut errors, "conditions");
        }
        validate::finish(errors)
    }
}

/// Who or what a grant gives access to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum Subject {
    User(UserId),
    Group(GroupId),
    ServiceAccount(ServiceAccountId),
}

impl Subject {
    pub fn kind(&self) -> &'static str {
        match self {
            Subject::User(_) => "user",
            Subject::Group(_) => "group",
            Subject::ServiceAccount(_) => "service_account",
        }
    }
    pub fn uuid(&self) -> uuid::Uuid {
        match self {
            Subject::User(id) => id.0,
            Subject::Group(id) => id.0,
            Subject::ServiceAccount(id) => id.0,
        }
    }
    pub fn target(&self) -> String {
        format!("{}:{}", self.kind(), self.uuid())
    }
    pub fn from_parts(kind: &str, id: uuid::Uuid) -> Option<Subject> {
        match kind {
            "user" => Some(Subject::User(UserId(id))),
            "group" => Some(Subject::Group(GroupId(id))),
            "service_account" => Some(Subject::ServiceAccount(ServiceAccountId(id))),
            _ => None,
        }
    }
}

/// Where a grant came from; evidence reports and reviews show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantSource {
    /// Made directly by an administrator.
    Manual,
    /// Approved access request.
    Request,
    /// Birthright role from a role template.
    Template,
    /// Emergency access.
    BreakGlass,
    /// Pushed by an identity provider over SCIM.
    Scim,
    /// HR roster import.
    Hr,
}

impl GrantSource {
    pub const ALL: [GrantSource; 6] = [
        GrantSource::Manual,
        GrantSource::Request,
        GrantSource::Template,
        GrantSource::BreakGlass,
        GrantSource::Scim,
        GrantSource::Hr,
    ];
    pub fn as_str(&self) -> &'static str {
        match self {
            GrantSource::Manual => "manual",
            GrantSource::Request => "request",
            GrantSource::Template => "template",
            GrantSource::BreakGlass => "break_glass",
            GrantSource::Scim => "scim",
            GrantSource::Hr => "hr",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        GrantSource::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

/// Subject → role, optionally scoped to a resource subtree, with its provenance and
/// validity window. Revoked grants are kept (with who revoked them and when) for evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Grant {
    pub id: GrantId,
    pub subject: Subject,
    pub role_id: RoleId,
    /// `None`: every resource the role's permissions name.
    pub resource_id: Option<ResourceId>,
    pub source: GrantSource,
    /// Principal that asked for the access.
    pub requester: Option<String>,
    /// Principal that approved it; never the requester.
    pub approver: Option<String>,
    pub justification: Option<String>,
    pub starts_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_by: Option<String>,
    /// Conditions on this grant, on top of the role's.
    #[serde(default, skip_serializing_if = "crate::Conditions::is_empty")]
    pub conditions: crate::Conditions,
    pub version: i64,
}

impl Grant {
    /// Whether the grant gives access at `now`: started, not expired, not revoked.
    pub fn is_effective_at(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.starts_at <= now && self.expires_at.is_none_or(|e| now < e)
    }
}

/// A grant made over the admin API. Its provenance is recorded, never asserted: the grant is
/// `manual`, its requester is the caller, and nobody is named as approver (approvals are
/// recorded by the access-request workflow). `source`, `requester` and `approver` are still
/// read so that a client sending them gets an error naming the field instead of a silently
/// different grant.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGrant {
    pub subject: Subject,
    pub role_id: RoleId,
    #[serde(default)]
    pub resource_id: Option<ResourceId>,
    /// Why the access is needed. Required; recorded on the grant and its event.
    #[serde(default)]
    pub justification: Option<String>,
    #[serde(default)]
    pub starts_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub conditions: crate::Conditions,
    /// Refused unless `manual`: the workflow that produces a grant sets its source.
    #[serde(default)]
    #[schema(value_type = Option<String>, deprecated)]
    pub source: Option<serde_json::Value>,
    /// Refused: the requester of an admin grant is the caller.
    #[serde(default)]
    #[schema(value_type = Option<String>, deprecated)]
    pub requester: Option<serde_json::Value>,
    /// Refused: approvals are recorded by the access-request workflow, not named by a client.
    #[serde(default)]
    #[schema(value_type = Option<String>, deprecated)]
    pub approver: Option<serde_json::Value>,
}

impl NewGrant {
    pub fn validate(&self, now: Timestamp) -> Result<(), DomainError> {
        let mut errors = Vec::new();
        if let Some(source) = &self.source
            && source.as_str() != Some(GrantSource::Manual.as_str())
        {
            errors.push(FieldError::new(
                "source",
                "set by the workflow that produced the grant; a grant made over the admin API is always manual",
            ));
        }
        if self.requester.is_some() {
            errors.push(FieldError::new("requester", "recorded as the caller; it cannot be named"));
        }
        if self.approver.is_some() {
            errors.push(FieldError::new(
                "approver",
                "approvals are recorded by the access-request workflow; an administrator cannot name an approver",
            ));
        }
        match &self.justification {
            Some(j) if !j.trim().is_empty() => validate::text(&mut errors, "justification", j, validate::MAX_TEXT),
            _ => errors.push(FieldError::new("justification", "required: say why the access is needed")),
        }
        self.conditions.validate(&mut errors, "conditions");
        let starts = self.starts_at.unwrap_or(now);
        if let Some(exp) = self.expires_at {
            if exp <= starts {
                errors.push(FieldError::new("expires_at", "must be after starts_at"));
            } else if exp <= now {
                errors.push(FieldError::new("expires_at", "must be in the future"));
            }
        }
        validate::finish(errors)
    }
}

/// Metadata of an API token. The secret itself is shown once at creation and stored only
/// as a hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiToken {
    pub id: ApiTokenId,
    pub name: String,
    pub scopes: Vec<Scope>,
    /// Whom the token acts for; it is revoked when they are disabled or leave.
    pub owner: TokenOwner,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// Whom an API token belongs to. A token's life is bounded by its owner's: disabling the person
/// or the service account revokes it in the same transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum TokenOwner {
    User(UserId),
    ServiceAccount(ServiceAccountId),
    /// Wardkey itself: `bootstrap` (the first-start admin token) or `migrated` (tokens issued
    /// before tokens had owners, by someone other than a person). Never given over the API.
    System(String),
}

impl TokenOwner {
    /// The first-start admin token's owner.
    pub const BOOTSTRAP: &'static str = "bootstrap";
    /// Tokens the local operator mints on the host without naming a person (recovery, scripts
    /// on the host); listed as such so that they can be replaced by named ones.
    pub const OPERATOR: &'static str = "operator";

    pub fn kind(&self) -> &'static str {
        match self {
            TokenOwner::User(_) => "user",
            TokenOwner::ServiceAccount(_) => "service_account",
            TokenOwner::System(_) => "system",
        }
    }
    /// The id part as stored (`owner_id` column).
    pub fn id_string(&self) -> String {
        match self {
            TokenOwner::User(id) => id.0.to_string(),
            TokenOwner::ServiceAccount(id) => id.0.to_string(),
            TokenOwner::System(component) => component.clone(),
        }
    }
    /// `user:<id>`, `service_account:<id>`, `system:bootstrap`: the principal form audit events use.
    pub fn principal(&self) -> String {
        format!("{}:{}", self.kind(), self.id_string())
    }
    pub fn from_parts(kind: &str, id: &str) -> Option<TokenOwner> {
        match kind {
            "user" => uuid::Uuid::try_parse(id).ok().map(|u| TokenOwner::User(UserId(u))),
            "service_account" => {
                uuid::Uuid::try_parse(id).ok().map(|u| TokenOwner::ServiceAccount(ServiceAccountId(u)))
            }
            "system" if !id.is_empty() => Some(TokenOwner::System(id.to_owned())),
            _ => None,
        }
    }
}

impl From<crate::Member> for TokenOwner {
    fn from(m: crate::Member) -> TokenOwner {
        match m {
            crate::Member::User(id) => TokenOwner::User(id),
            crate::Member::ServiceAccount(id) => TokenOwner::ServiceAccount(id),
        }
    }
}

impl ApiToken {
    pub fn is_usable_at(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
    pub fn has_scope(&self, needed: Scope) -> bool {
        self.scopes.iter().any(|s| s.satisfies(needed))
    }
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiToken {
    pub name: String,
    pub scopes: Vec<Scope>,
    /// The person or service account the token acts for (`{"type": "user", "id": ...}` or
    /// `{"type": "service_account", "id": ...}`); it must exist and be active. Only the local
    /// operator (the CLI on the host) may name `{"type": "system", "id": "operator"}`.
    pub owner: TokenOwner,
    /// Default: the configured default lifetime (90 days) from now. At most the configured
    /// maximum lifetime from now.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

impl NewApiToken {
    /// `latest` is the furthest expiry allowed (now + the maximum lifetime).
    pub fn validate(&self, now: Timestamp, latest: Timestamp) -> Result<(), DomainError> {
        let mut errors = Vec::new();
        validate::name(&mut errors, "name", &self.name);
        if self.scopes.is_empty() {
            errors.push(FieldError::new("scopes", "must name at least one scope"));
        }
        if let Some(e) = self.expires_at {
            if e <= now {
                errors.push(FieldError::new("expires_at", "must be in the future"));
            } else if e > latest {
                errors.push(FieldError::new(
                    "expires_at",
                    format!("must be no later than {} (the maximum token lifetime)", latest.to_rfc3339()),
                ));
            }
        }
        validate::finish(errors)
    }
}
