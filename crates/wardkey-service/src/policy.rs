//! Forbid rules and break-glass: the parts of the access model that override or bypass
//! ordinary grants, each loud in the audit log.

use crate::auth::{Admin, Authorized};
use crate::authn::SessionCaller;
use crate::event;
use crate::grants::{EventContext, NewGrantSpec, Provenance};
use crate::stepup::SensitiveChange;
use crate::{Committed, Result, ServiceError, Services};
use serde::Deserialize;
use serde_json::json;
use wardkey_audit::Action;
use wardkey_domain::{ForbidRule, ForbidRuleId, Grant, GrantSource, NewForbidRule, ResourceId, RoleId, Subject};

/// Emergency access a person declares for themselves.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassRequest {
    /// A role marked `break_glass: true`.
    pub role_id: RoleId,
    /// Limit the emergency access to this resource (and what lies below it).
    #[serde(default)]
    pub resource_id: Option<ResourceId>,
    /// Why: recorded, and reviewed afterwards. At least 10 characters.
    pub justification: String,
    /// How long; default 60, at most the configured maximum.
    #[serde(default)]
    pub duration_minutes: Option<u32>,
}

/// Default and ceiling of break-glass durations.
pub const BREAK_GLASS_DEFAULT_MINUTES: u32 = 60;

impl Services {
    pub async fn create_forbid_rule(
        &self,
        by: &Authorized<Admin>,
        input: NewForbidRule,
    ) -> Result<Committed<ForbidRule>> {
        input.validate()?;
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let now = tx.now();
                    let mut types = input.resource_types.clone();
                    types.sort();
                    types.dedup();
                    let known: Vec<String> = tx.list_resource_types().await?.into_iter().map(|t| t.name).collect();
                    if let Some(unknown) = types.iter().find(|t| !known.iter().any(|k| k.eq_ignore_ascii_case(t))) {
                        return Err(ServiceError::invalid("resource_types", format!("no resource type named {unknown:?}")));
                    }
                    let mut actions = input.actions.clone();
                    actions.sort();
                    actions.dedup();
                    let rule = ForbidRule {
                        id: ForbidRuleId::generate(),
                        name: input.name,
                        description: input.description,
                        resource_types: types,
                        actions,
                        when: input.when,
                        created_at: now,
                        updated_at: now,
                        version: 1,
                    };
                    tx.insert_forbid_rule(&rule).await?;
                    let mut e = event(&caller, Action::ForbidRuleCreate, rule.id);
                    e.details = json!({ "name": rule.name, "resource_types": rule.resource_types, "actions": rule.actions, "when": rule.when });
                    tx.audit(e);
                    Ok(rule)
                })
            })
            .await
    }

    pub async fn list_forbid_rules(&self, by: &Authorized<Admin>) -> Result<Vec<ForbidRule>> {
        let target = None;
        let result: Result<Vec<ForbidRule>> = async { Ok(self.store.read().await?.list_forbid_rules().await?) }.await;
        self.recorded(by.caller(), "list_forbid_rules", target, result).await
    }

    pub async fn get_forbid_rule(&self, by: &Authorized<Admin>, id: ForbidRuleId) -> Result<ForbidRule> {
        let target = Some(id.target());
        let result: Result<ForbidRule> = async {
            self.store
                .read()
                .await?
                .get_forbid_rule(id)
                .await?
                .ok_or(ServiceError::NotFound { kind: "forbid_rule", id: id.to_string() })
        }
        .await;
        self.recorded(by.caller(), "get_forbid_rule", target, result).await
    }

    pub async fn delete_forbid_rule(
        &self,
        by: &Authorized<Admin>,
        id: ForbidRuleId,
        version: i64,
    ) -> Result<Committed<()>> {
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let rule = tx
                        .get_forbid_rule(id)
                        .await?
                        .ok_or(ServiceError::NotFound { kind: "forbid_rule", id: id.to_string() })?;
                    tx.delete_forbid_rule(id, version).await?;
                    let mut e = event(&caller, Action::ForbidRuleDelete, id);
                    e.details = json!({ "name": rule.name });
                    tx.audit(e);
                    Ok(())
                })
            })
            .await
    }

    /// Break-glass: a person with a fresh second factor gives themselves a role marked for
    /// emergencies, for a short time. The grant is `break_glass`, the declaration an audit
    /// event flagged for review (`break_glass.declared`), and decisions it allows carry an
    /// obligation to record the use.
    pub async fn declare_break_glass(&self, sc: &SessionCaller, input: BreakGlassRequest) -> Result<Committed<Grant>> {
        self.require_step_up_for(&sc.caller, SensitiveChange::BreakGlass)?;
        let max = self.authn.settings.break_glass_max_minutes.max(1);
        let minutes = input.duration_minutes.unwrap_or(BREAK_GLASS_DEFAULT_MINUTES.min(max));
        let mut errors = Vec::new();
        wardkey_domain::validate::text(
            &mut errors,
            "justification",
            &input.justification,
            wardkey_domain::validate::MAX_TEXT,
        );
        if input.justification.trim().chars().count() < 10 {
            errors.push(wardkey_domain::FieldError::new("justification", "say why, in at least 10 characters"));
        }
        if minutes == 0 || minutes > max {
            errors.push(wardkey_domain::FieldError::new("duration_minutes", format!("between 1 and {max} minutes")));
        }
        wardkey_domain::validate::finish(errors)?;
        let user = sc.session.user_id;
        let caller = sc.caller.clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let now = tx.now();
                    let role = tx
                        .get_role(input.role_id)
                        .await?
                        .ok_or_else(|| ServiceError::invalid("role_id", "no such role"))?;
                    if !role.break_glass {
                        return Err(ServiceError::invalid("role_id", "this role is not available for break-glass"));
                    }
                    if let Some(r) = input.resource_id {
                        tx.get_resource(r)
                            .await?
                            .ok_or_else(|| ServiceError::invalid("resource_id", "no such resource"))?;
                    }
                    let expires_at = now + chrono::Duration::minutes(i64::from(minutes));
                    let (role_id, role_name) = (role.id, role.name.clone());
                    let spec = NewGrantSpec {
                        subject: Subject::User(user),
                        role,
                        resource_id: input.resource_id,
                        starts_at: Some(now),
                        expires_at: Some(expires_at),
                        conditions: Default::default(),
                        provenance: Provenance {
                            source: GrantSource::BreakGlass,
                            requester: caller.actor.principal(),
                            approvers: Vec::new(),
                            justification: Some(input.justification.clone()),
                            request: None,
                            review_item: None,
                        },
                    };
                    let ctx = EventContext::reason(input.justification.clone());
                    let grant = crate::grants::create_in_tx(tx, &caller, spec, &ctx).await?;
                    let mut d = event(&caller, Action::BreakGlassDeclared, grant.id);
                    d.reason = Some(input.justification.clone());
                    d.details = json!({
                        "review_required": true,
                        "role": role_id.target(),
                        "role_name": role_name,
                        "resource": grant.resource_id.map(|r| r.target()),
                        "expires_at": grant.expires_at,
                        "minutes": minutes,
                    });
                    tx.audit(d);
                    Ok(grant)
                })
            })
            .await
    }
}
