//! The joiner / mover / leaver engine: birthright roles from role templates.
//!
//! - **Joiner**: a person gets the roles their HR attributes entitle them to (role templates,
//!   `birthright_roles`) when they become `active`, which needs a recorded identity
//!   verification. Nothing is granted while they are `pending_verification`.
//! - **Mover**: when HR attributes change, template-sourced grants the new attributes no longer
//!   justify are revoked and the new template's roles are granted; grants that came from
//!   requests, administrators or break-glass stay, each flagged for review (a `review_items`
//!   row and a `grant.review_flagged` event).
//! - **Leaver**: [`crate::lifecycle::terminate_in_tx`].
//!
//! Everything runs inside the caller's write job, so the attribute change and the access it
//! implies commit together, one audit event per change.

use crate::grants::{EventContext, NewGrantSpec, Provenance};
use crate::{Caller, Result, draft};
use serde::Serialize;
use serde_json::json;
use wardkey_audit::AuditDraft;
use wardkey_audit::{Action, Target};
use wardkey_domain::{Grant, GrantId, GrantSource, RoleId, Subject, User, UserStatus, birthright_roles};
use wardkey_store::{ReviewItem, WriteTx};

/// What a birthright synchronisation changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BirthrightChange {
    /// Roles newly granted from templates.
    pub granted: Vec<RoleId>,
    /// Template grants revoked because the attributes no longer justify them.
    pub revoked: Vec<RoleId>,
    /// Grants from other sources kept but flagged for review.
    pub flagged: Vec<GrantId>,
    /// Birthright roles not granted because a separation-of-duties rule forbids them
    /// (flagged for review instead).
    pub refused: Vec<RoleId>,
}

impl BirthrightChange {
    pub fn is_empty(&self) -> bool {
        self.granted.is_empty() && self.revoked.is_empty() && self.flagged.is_empty() && self.refused.is_empty()
    }
}

/// Where a change came from, for the audit trail (an HR import and its row).
#[derive(Debug, Clone, Default)]
pub(crate) struct ChangeContext {
    /// Goes to the events' `request_ref`, e.g. `hr_import:<id>#row=12`.
    pub request_ref: Option<String>,
    /// Extra keys added to every event's details (import id, file SHA-256, row).
    pub details: Option<serde_json::Value>,
    pub import_id: Option<uuid::Uuid>,
    /// The HR attributes changed (a mover): flag non-template grants even when the template
    /// roles happen to stay the same.
    pub attributes_changed: bool,
}

impl ChangeContext {
    /// How grant events of this change are framed (see [`crate::grants`]): the import's
    /// details go to `details.origin`, not beside the grant's own keys.
    pub(crate) fn grant_event(&self, why: &str) -> EventContext {
        EventContext {
            reason: Some(why.to_owned()),
            request_ref: self.request_ref.clone(),
            origin: self.details.clone(),
            request: None,
            review_item: None,
        }
    }

    pub(crate) fn event(
        &self,
        caller: &Caller,
        action: Action,
        target: Option<Target>,
        why: &str,
        details: serde_json::Value,
    ) -> AuditDraft {
        let mut e = draft(caller, action, target);
        e.reason = Some(why.to_owned());
        e.request_ref = self.request_ref.clone();
        let mut details = details;
        if let (Some(serde_json::Value::Object(extra)), serde_json::Value::Object(map)) = (&self.details, &mut details)
        {
            for (k, v) in extra {
                map.insert(k.clone(), v.clone());
            }
        }
        e.details = details;
        e
    }
}

/// Gives an active user the roles their HR attributes entitle them to and takes away the
/// template roles they no longer justify; other grants stay, flagged for review when the
/// template roles changed. A no-op (empty change) for users who are not active.
pub(crate) async fn sync_birthright_in_tx(
    tx: &mut WriteTx,
    caller: &Caller,
    user: &User,
    why: &str,
) -> Result<BirthrightChange> {
    sync_birthright_with(tx, caller, user, why, &ChangeContext::default()).await
}

pub(crate) async fn sync_birthright_with(
    tx: &mut WriteTx,
    caller: &Caller,
    user: &User,
    why: &str,
    ctx: &ChangeContext,
) -> Result<BirthrightChange> {
    let mut change = BirthrightChange::default();
    if user.status != UserStatus::Active {
        return Ok(change);
    }
    let templates = tx.list_role_templates().await?;
    let wanted = birthright_roles(&templates, &user.hr);
    let subject = Subject::User(user.id);
    let now = tx.now();
    let grants = tx.live_grants_for_subject(subject, now).await?;
    // Template grants are unscoped and unconditional; anything else is someone's decision.
    let (template, other): (Vec<Grant>, Vec<Grant>) =
        grants.into_iter().partition(|g| g.source == GrantSource::Template);
    let had_template = !template.is_empty();

    // Revoke what the attributes no longer justify (and duplicates of one role).
    let mut kept: Vec<RoleId> = Vec::new();
    for g in &template {
        if wanted.contains(&g.role_id) && !kept.contains(&g.role_id) {
            kept.push(g.role_id);
            continue;
        }
        crate::grants::revoke_in_tx(tx, caller, g.id, g.version, &ctx.grant_event(why)).await?;
        change.revoked.push(g.role_id);
    }

    // Grant what is missing through the one grant path; a separation-of-duties refusal
    // becomes a review item instead of failing the whole change.
    let missing: Vec<RoleId> = wanted.iter().copied().filter(|r| !kept.contains(r)).collect();
    for role in tx.get_roles(&missing).await? {
        let spec = NewGrantSpec {
            subject,
            role: role.clone(),
            resource_id: None,
            starts_at: None,
            expires_at: None,
            conditions: Default::default(),
            provenance: Provenance {
                source: GrantSource::Template,
                requester: caller.actor.principal(),
                approvers: Vec::new(),
                justification: Some(format!("birthright: {why}")),
                request: None,
                review_item: None,
            },
        };
        match crate::grants::create_in_tx(tx, caller, spec, &ctx.grant_event(why)).await {
            Ok(_) => change.granted.push(role.id),
            Err(e @ crate::ServiceError::SodViolation { .. }) => {
                let reason = format!("birthright role {} refused: {e}", role.name);
                let item = review_item(
                    ctx,
                    "birthright_refused",
                    user,
                    None,
                    &reason,
                    json!({ "role": role.id.target() }),
                    now,
                );
                if tx.insert_review_item(&item).await? {
                    tx.audit(ctx.event(
                        caller,
                        Action::GrantReviewFlagged,
                        Some(user.id.into()),
                        why,
                        json!({ "role": role.id.target(), "role_name": role.name, "kind": "birthright_refused", "error": e.to_string() }),
                    ));
                }
                change.refused.push(role.id);
            }
            Err(e) => return Err(e),
        }
    }

    // A move: what people were given by request or by hand for the old job is looked at again.
    let moved = ctx.attributes_changed || !change.revoked.is_empty() || (had_template && !change.granted.is_empty());
    if moved {
        for g in other.iter().filter(|g| g.source != GrantSource::Template) {
            let reason = format!("kept after an HR attribute change ({why}); confirm it is still needed");
            let item = review_item(
                ctx,
                "grant_after_move",
                user,
                Some(g.id),
                &reason,
                json!({ "role": g.role_id.target(), "source": g.source }),
                now,
            );
            if tx.insert_review_item(&item).await? {
                tx.audit(ctx.event(
                    caller,
                    Action::GrantReviewFlagged,
                    Some(g.id.into()),
                    why,
                    json!({ "subject": subject.target(), "role": g.role_id.target(), "source": g.source, "kind": "grant_after_move" }),
                ));
                change.flagged.push(g.id);
            }
        }
    }
    Ok(change)
}

/// Whether a change of HR attributes is a move (a different job): department, job code,
/// title or employment type. An end date, sponsor or time zone change is not.
pub(crate) fn is_move(before: &wardkey_domain::HrAttributes, after: &wardkey_domain::HrAttributes) -> bool {
    before.department != after.department
        || before.job_code != after.job_code
        || before.title != after.title
        || before.employment_type != after.employment_type
}

pub(crate) fn review_item(
    ctx: &ChangeContext,
    kind: &str,
    user: &User,
    grant: Option<GrantId>,
    reason: &str,
    details: serde_json::Value,
    now: chrono::DateTime<chrono::Utc>,
) -> ReviewItem {
    ReviewItem {
        id: uuid::Uuid::now_v7(),
        kind: kind.to_owned(),
        user_id: user.id,
        grant_id: grant,
        import_id: ctx.import_id,
        reason: reason.to_owned(),
        details,
        created_at: now,
        resolved_at: None,
    }
}
