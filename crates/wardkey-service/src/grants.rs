//! The one grant path and the one revoke path.
//!
//! Every way access is given — an administrator over the API, a birthright role from a role
//! template (HR import, SCIM, activation), break-glass, and the coming access requests and
//! reviews — calls [`create_in_tx`] inside its own write job; every way access is taken away —
//! an administrator, a birthright no longer justified, a leaver, a deleted group or service
//! account — calls [`revoke_in_tx`] (or [`revoke_all_in_tx`]). Both check what every grant
//! must satisfy and record one event with one shape, so evidence reads the same whatever
//! produced it:
//!
//! `grant.create` details: `subject`, `role`, `role_name`, `privileged`, `admin_scopes`,
//! `resource`, `source`, `requester`, `approvers`, `request`, `review_item`, `justification`,
//! `starts_at`, `expires_at`, `conditions`, `origin`.
//!
//! `grant.revoke` details: `subject`, `role`, `role_name`, `privileged`, `admin_scopes`,
//! `resource`, `source`, `requester`, `approvers`, `request`, `review_item`, `origin`.
//!
//! `request` and `review_item` name the access request or review item that produced the
//! change (null until those workflows exist); `origin` carries where an automated change came
//! from (an HR import and its row), or null.
//!
//! Provenance (`source`, `requester`, `approvers`) is set by the workflow calling these
//! functions, never taken from a client: see [`Provenance`].

use crate::event;
use crate::{Caller, Result, ServiceError};
use chrono::{DateTime, Utc};
use serde_json::json;
use wardkey_audit::Action;
use wardkey_domain::{
    Conditions, Grant, GrantId, GrantSource, Member, ResourceId, Role, ServiceAccountStatus, Subject, UserId,
    UserStatus, check_sod,
};
use wardkey_store::WriteTx;

/// Who and what produced a grant. Built by the workflow, never from client input.
#[derive(Debug, Clone)]
pub struct Provenance {
    pub source: GrantSource,
    /// Principal that asked for the access (`user:<id>`, `token:<id>`, `system:...`).
    pub requester: String,
    /// Principals (`user:<id>`) who approved it, in order. Empty unless an approval happened.
    pub approvers: Vec<String>,
    pub justification: Option<String>,
    /// The access request that produced the grant (`access_request:<id>`), when there is one.
    pub request: Option<String>,
    /// The review item that produced or decided the change, when there is one.
    pub review_item: Option<String>,
}

impl Provenance {
    /// A grant made by `caller` directly: `manual`, requested by the caller, nobody approved.
    pub fn manual(caller: &Caller, justification: String) -> Self {
        Provenance {
            source: GrantSource::Manual,
            requester: caller.actor.principal(),
            approvers: Vec::new(),
            justification: Some(justification),
            request: None,
            review_item: None,
        }
    }
}

/// What to grant. The role is loaded by the caller (in the same `tx`): paths decide on it
/// (step-up, break-glass eligibility) before granting.
#[derive(Debug, Clone)]
pub struct NewGrantSpec {
    pub subject: Subject,
    pub role: Role,
    pub resource_id: Option<ResourceId>,
    /// Default: now.
    pub starts_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub conditions: Conditions,
    pub provenance: Provenance,
}

/// How a change is framed in the audit log, beyond the grant itself.
#[derive(Debug, Clone, Default)]
pub struct EventContext {
    /// The event's `reason`.
    pub reason: Option<String>,
    /// The event's `request_ref` (e.g. `hr_import:<id>#row=12`). Defaults to the request.
    pub request_ref: Option<String>,
    /// Where an automated change came from; goes to `details.origin`.
    pub origin: Option<serde_json::Value>,
    /// For revocations: the access request or review item that decided it.
    pub request: Option<String>,
    pub review_item: Option<String>,
}

impl EventContext {
    pub fn reason(why: impl Into<String>) -> Self {
        EventContext { reason: Some(why.into()), ..Default::default() }
    }
}

/// The subject must exist and be able to hold access.
async fn check_subject(tx: &mut WriteTx, subject: Subject) -> Result<()> {
    let field = "subject";
    match subject {
        Subject::User(id) => {
            let u = tx.get_user(id).await?.ok_or_else(|| ServiceError::invalid(field, "no such user"))?;
            if u.status == UserStatus::Disabled {
                return Err(ServiceError::invalid(field, "the user is disabled"));
            }
        }
        Subject::Group(id) => {
            tx.get_group(id).await?.ok_or_else(|| ServiceError::invalid(field, "no such group"))?;
        }
        Subject::ServiceAccount(id) => {
            let s = tx
                .get_service_account(id)
                .await?
                .ok_or_else(|| ServiceError::invalid(field, "no such service account"))?;
            if s.status == ServiceAccountStatus::Disabled {
                return Err(ServiceError::invalid(field, "the service account is disabled"));
            }
        }
    }
    Ok(())
}

/// Approvers must be real, active people, neither the requester nor the subject.
async fn check_approvers(tx: &mut WriteTx, p: &Provenance, subject: Subject) -> Result<()> {
    for approver in &p.approvers {
        if *approver == p.requester {
            return Err(ServiceError::invalid("approver", "the approver must not be the requester"));
        }
        if *approver == subject.target() {
            return Err(ServiceError::invalid("approver", "nobody approves their own access"));
        }
        // Evidence must name someone real and accountable, not free text.
        let id = approver
            .strip_prefix("user:")
            .and_then(|s| s.parse::<UserId>().ok())
            .ok_or_else(|| ServiceError::invalid("approver", "must name a person as user:<id>"))?;
        let person = tx.get_user(id).await?.ok_or_else(|| ServiceError::invalid("approver", "no such user"))?;
        if person.status != UserStatus::Active {
            return Err(ServiceError::invalid("approver", "the approver is not an active user"));
        }
    }
    Ok(())
}

/// Separation of duties for the subject or, for a group, for each of its members.
async fn check_sod_for(tx: &mut WriteTx, subject: Subject, role: &Role) -> Result<()> {
    let rules = tx.list_sod_rules().await?;
    if rules.is_empty() {
        return Ok(());
    }
    let added = std::slice::from_ref(role);
    let subjects: Vec<Subject> = match subject {
        Subject::Group(g) => tx.list_members(g).await?.into_iter().map(member_subject).collect(),
        s => vec![s],
    };
    for s in subjects {
        let held = crate::access::roles_held(tx, s).await?;
        check_sod(&rules, &held, added)?;
    }
    Ok(())
}

/// A group member as a subject of grants.
pub(crate) fn member_subject(m: Member) -> Subject {
    match m {
        Member::User(u) => Subject::User(u),
        Member::ServiceAccount(s) => Subject::ServiceAccount(s),
    }
}

/// The keys every grant event shares: what was granted and how it came about.
fn grant_facts(
    grant: &Grant,
    role: Option<&Role>,
    approvers: &[String],
    request: Option<&str>,
    review_item: Option<&str>,
    origin: Option<&serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("subject".into(), json!(grant.subject.target()));
    m.insert("role".into(), json!(grant.role_id.target()));
    m.insert("role_name".into(), json!(role.map(|r| r.name.clone())));
    m.insert("privileged".into(), json!(role.map(|r| r.privileged)));
    m.insert("admin_scopes".into(), json!(role.map(|r| r.session_policy.scopes.clone()).unwrap_or_default()));
    m.insert("resource".into(), json!(grant.resource_id.map(|r| r.target())));
    m.insert("source".into(), json!(grant.source));
    m.insert("requester".into(), json!(grant.requester));
    m.insert("approvers".into(), json!(approvers));
    m.insert("request".into(), json!(request));
    m.insert("review_item".into(), json!(review_item));
    m.insert("origin".into(), origin.cloned().unwrap_or(serde_json::Value::Null));
    m
}

/// Grants `spec.role` to `spec.subject` inside the caller's write job, with its
/// `grant.create` event. Refused when the subject cannot hold access, the resource does not
/// exist, an approver is not an accountable person, or a separation-of-duties rule would
/// break (for a group: for any member). Authorization and step-up are the caller's: they
/// differ by path (see [`crate::stepup`]).
pub(crate) async fn create_in_tx(
    tx: &mut WriteTx,
    caller: &Caller,
    spec: NewGrantSpec,
    ctx: &EventContext,
) -> Result<Grant> {
    let now = tx.now();
    let NewGrantSpec { subject, role, resource_id, starts_at, expires_at, conditions, provenance } = spec;
    check_subject(tx, subject).await?;
    if let Some(r) = resource_id {
        tx.get_resource(r).await?.ok_or_else(|| ServiceError::invalid("resource_id", "no such resource"))?;
    }
    check_approvers(tx, &provenance, subject).await?;
    check_sod_for(tx, subject, &role).await?;
    let grant = Grant {
        id: GrantId::generate(),
        subject,
        role_id: role.id,
        resource_id,
        source: provenance.source,
        requester: Some(provenance.requester.clone()),
        // One column today; the event keeps every approver.
        approver: provenance.approvers.first().cloned(),
        justification: provenance.justification.clone(),
        starts_at: starts_at.map(wardkey_audit::truncate_to_micros).unwrap_or(now),
        expires_at: expires_at.map(wardkey_audit::truncate_to_micros),
        created_at: now,
        created_by: caller.actor.principal(),
        revoked_at: None,
        revoked_by: None,
        conditions,
        version: 1,
    };
    tx.insert_grant(&grant).await?;
    let mut details = grant_facts(
        &grant,
        Some(&role),
        &provenance.approvers,
        provenance.request.as_deref(),
        provenance.review_item.as_deref(),
        ctx.origin.as_ref(),
    );
    details.insert("justification".into(), json!(grant.justification));
    details.insert("starts_at".into(), json!(grant.starts_at));
    details.insert("expires_at".into(), json!(grant.expires_at));
    details.insert("conditions".into(), json!(grant.conditions));
    let mut e = event(caller, Action::GrantCreate, grant.id);
    e.approver = grant.approver.clone();
    e.reason = ctx.reason.clone();
    e.request_ref = ctx.request_ref.clone().or(provenance.request);
    e.details = serde_json::Value::Object(details);
    tx.audit(e);
    Ok(grant)
}

/// Revokes `grant` (as loaded in this `tx`, at `expected_version`) inside the caller's write
/// job, with its `grant.revoke` event. The row stays, with who revoked it and when.
pub(crate) async fn revoke_in_tx(
    tx: &mut WriteTx,
    caller: &Caller,
    id: GrantId,
    expected_version: i64,
    ctx: &EventContext,
) -> Result<Grant> {
    let now = tx.now();
    let grant = tx.revoke_grant(id, expected_version, now, &caller.actor.principal()).await?;
    let role = tx.get_role(grant.role_id).await?;
    let approvers: Vec<String> = grant.approver.iter().cloned().collect();
    let details = grant_facts(
        &grant,
        role.as_ref(),
        &approvers,
        ctx.request.as_deref(),
        ctx.review_item.as_deref(),
        ctx.origin.as_ref(),
    );
    let mut e = event(caller, Action::GrantRevoke, grant.id);
    e.reason = ctx.reason.clone();
    e.request_ref = ctx.request_ref.clone().or_else(|| ctx.request.clone());
    e.details = serde_json::Value::Object(details);
    tx.audit(e);
    Ok(grant)
}

/// Revokes every live grant of `subject` (a leaver, a deleted group or service account), one
/// [`revoke_in_tx`] each. Returns how many.
pub(crate) async fn revoke_all_in_tx(tx: &mut WriteTx, caller: &Caller, subject: Subject, why: &str) -> Result<usize> {
    let now = tx.now();
    let live = tx.live_grants_for_subject(subject, now).await?;
    let ctx = EventContext::reason(why);
    for g in &live {
        revoke_in_tx(tx, caller, g.id, g.version, &ctx).await?;
    }
    Ok(live.len())
}
