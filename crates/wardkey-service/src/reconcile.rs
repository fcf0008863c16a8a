//! The reconciliation report: what the directory holds that HR and the role templates do not
//! explain. Read-only, from one consistent snapshot; each finding names the account, the
//! reason and the suggested action.
//!
//! Kinds: `orphaned_account` (no HR record — no employee id — and no sponsor),
//! `dormant_account` (active, no completed sign-in for N days; never signed in counts from
//! creation), `permission_creep` (a grant neither justified by a role template nor from an
//! approved request), `template_mismatch` (a birthright role the person lacks),
//! `sod_conflict` (roles held together, directly or through groups, that a
//! separation-of-duties rule forbids), `ownerless_service_account` (an active service account
//! whose owner is missing or not active), `review_item` (open items: grants kept after a
//! move, workers missing from a full roster, birthright roles refused by SoD),
//! `unreviewed_sensitive_grant` (a `manual` grant, to anyone, of a role that is privileged,
//! administers Wardkey, or reaches a PHI resource type, with no access request behind it: it
//! needs a review until such grants come from approved requests).

use crate::auth::{Admin, Authorized};
use crate::{Result, Services};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use wardkey_domain::{
    GrantSource, Member, Role, RoleId, ServiceAccountStatus, SodItem, Subject, UserId, UserStatus, birthright_roles,
};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Finding {
    pub kind: String,
    /// `user:<id>` or `service_account:<id>`.
    pub subject: String,
    /// Username or service-account name.
    pub name: String,
    pub reason: String,
    pub suggested_action: String,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReconciliationReport {
    pub generated_at: DateTime<Utc>,
    pub dormant_days: u32,
    pub users: usize,
    pub service_accounts: usize,
    /// Findings per kind.
    pub counts: BTreeMap<String, usize>,
    pub findings: Vec<Finding>,
}

/// Most open review items listed.
const MAX_REVIEW_ITEMS: u32 = 10_000;

impl Services {
    pub async fn reconciliation_report(
        &self,
        by: &Authorized<Admin>,
        dormant_days: u32,
    ) -> Result<ReconciliationReport> {
        let target = None;
        let result: Result<ReconciliationReport> = async {
        let dormant_days = dormant_days.clamp(1, 3650);
        let now = self.clock().now();
        let mut r = self.store.read_snapshot().await?;
        let users = r.all_users().await?;
        let sas = r.all_service_accounts().await?;
        let grants = r.all_live_grants(now).await?;
        let templates = r.list_role_templates().await?;
        let rules = r.list_sod_rules().await?;
        let roles = r.all_roles().await?;
        let memberships = r.all_memberships().await?;
        let last = r.last_sign_ins().await?;
        let reviews = r.open_review_items(MAX_REVIEW_ITEMS).await?;
        let types = r.list_resource_types().await?;
        let groups = r.all_groups().await?;
        r.end().await?;
        let phi_types: HashSet<&str> = types.iter().filter(|t| t.phi).map(|t| t.name.as_str()).collect();

        let roles_by_id: HashMap<RoleId, &Role> = roles.iter().map(|r| (r.id, r)).collect();
        let role_name = |id: &RoleId| roles_by_id.get(id).map(|r| r.name.clone()).unwrap_or_else(|| id.to_string());
        let users_by_id: HashMap<UserId, &wardkey_domain::User> = users.iter().map(|u| (u.id, u)).collect();
        let mut direct: HashMap<Subject, Vec<&wardkey_domain::Grant>> = HashMap::new();
        for g in grants.iter().filter(|g| g.starts_at <= now) {
            direct.entry(g.subject).or_default().push(g);
        }
        let mut groups_of: HashMap<Member, Vec<Subject>> = HashMap::new();
        for (g, m) in &memberships {
            groups_of.entry(*m).or_default().push(Subject::Group(*g));
        }
        let mut findings = Vec::new();
        let mut add =
            |kind: &str, subject: String, name: &str, reason: String, action: &str, details: serde_json::Value| {
                findings.push(Finding {
                    kind: kind.to_owned(),
                    subject,
                    name: name.to_owned(),
                    reason,
                    suggested_action: action.to_owned(),
                    details,
                });
            };
        let dormant_cutoff = now - chrono::Duration::days(i64::from(dormant_days));

        for u in &users {
            if u.status == UserStatus::Disabled {
                continue;
            }
            let subject = Subject::User(u.id);
            let target = u.id.target();
            if u.hr.employee_id.is_none() && u.hr.sponsor_id.is_none() {
                add(
                    "orphaned_account",
                    target.clone(),
                    &u.username,
                    "no HR record (no employee id) and no sponsor".into(),
                    "link the account to its HR record or a sponsor, or disable it",
                    json!({ "status": u.status }),
                );
            }
            if u.status == UserStatus::Active {
                let seen = last.get(&u.id).copied();
                let since = seen.unwrap_or(u.created_at);
                if since < dormant_cutoff {
                    let days = (now - since).num_days();
                    add(
                        "dormant_account",
                        target.clone(),
                        &u.username,
                        match seen {
                            Some(_) => format!("no sign-in for {days} days (threshold {dormant_days})"),
                            None => format!("never signed in; created {days} days ago (threshold {dormant_days})"),
                        },
                        "confirm with the manager that the account is still needed; suspend or disable it otherwise",
                        json!({ "last_sign_in": seen }),
                    );
                }
            }
            let mine: &[&wardkey_domain::Grant] = direct.get(&subject).map(Vec::as_slice).unwrap_or(&[]);
            // Birthright roles apply to active people only.
            let wanted: Vec<RoleId> =
                if u.status == UserStatus::Active { birthright_roles(&templates, &u.hr) } else { Vec::new() };
            for g in mine {
                let justified = match g.source {
                    GrantSource::Template => wanted.contains(&g.role_id),
                    GrantSource::Request => g.approver.is_some(),
                    _ => false,
                };
                if !justified {
                    let reason = match g.source {
                        GrantSource::Template => {
                            format!("template grant of {} no longer matches the HR attributes", role_name(&g.role_id))
                        }
                        GrantSource::Request => {
                            format!("{} from a request without a recorded approver", role_name(&g.role_id))
                        }
                        other => format!(
                            "{} granted as {} — beyond the role templates, not from an approved request",
                            role_name(&g.role_id),
                            other.as_str()
                        ),
                    };
                    add(
                        "permission_creep",
                        target.clone(),
                        &u.username,
                        reason,
                        "review the grant; revoke it or have it requested and approved",
                        json!({ "grant": g.id.target(), "role": g.role_id.target(), "source": g.source }),
                    );
                }
            }
            let held_template: HashSet<RoleId> = mine.iter().map(|g| g.role_id).collect();
            let missing: Vec<String> = wanted.iter().filter(|r| !held_template.contains(r)).map(&role_name).collect();
            if !missing.is_empty() {
                add(
                    "template_mismatch",
                    target.clone(),
                    &u.username,
                    format!("missing birthright role(s): {}", missing.join(", ")),
                    "re-run the birthright sync (update the HR record) or resolve the SoD review item that blocked it",
                    json!({ "missing": missing }),
                );
            }
            // Separation of duties over everything held (direct and through groups).
            if !rules.is_empty() {
                let mut held: Vec<&Role> = mine.iter().filter_map(|g| roles_by_id.get(&g.role_id).copied()).collect();
                for gs in groups_of.get(&Member::User(u.id)).map(Vec::as_slice).unwrap_or(&[]) {
                    for g in direct.get(gs).map(Vec::as_slice).unwrap_or(&[]) {
                        if let Some(r) = roles_by_id.get(&g.role_id) {
                            held.push(r);
                        }
                    }
                }
                let holds = |item: &SodItem| held.iter().any(|r| item.held_by(r));
                for rule in &rules {
                    if holds(&rule.left) && holds(&rule.right) {
                        add(
                            "sod_conflict",
                            target.clone(),
                            &u.username,
                            format!(
                                "holds both {} and {} (rule {})",
                                rule.left.describe(),
                                rule.right.describe(),
                                rule.name
                            ),
                            "revoke one side, or record an approved exception",
                            json!({ "rule": rule.id.target(), "rule_name": rule.name }),
                        );
                    }
                }
            }
        }

        for sa in sas.iter().filter(|s| s.status == ServiceAccountStatus::Active) {
            let owner = users_by_id.get(&sa.owner_id);
            let problem = match owner {
                None => Some("its owner no longer exists".to_owned()),
                Some(o) if o.status != UserStatus::Active => Some(format!("its owner {} is {}", o.username, o.status)),
                Some(_) => None,
            };
            if let Some(reason) = problem {
                add(
                    "ownerless_service_account",
                    sa.id.target(),
                    &sa.name,
                    reason,
                    "assign an active owner, or disable the service account",
                    json!({ "owner": sa.owner_id.target() }),
                );
            }
        }

        for item in &reviews {
            let name = users_by_id.get(&item.user_id).map(|u| u.username.clone()).unwrap_or_default();
            add(
                "review_item",
                item.user_id.target(),
                &name,
                item.reason.clone(),
                match item.kind.as_str() {
                    "grant_after_move" => "confirm the grant is still needed after the move, or revoke it",
                    "missing_from_roster" => "confirm with HR whether the person left; disable the account if so",
                    _ => "resolve the separation-of-duties conflict, then re-run the birthright sync",
                },
                json!({
                    "review_kind": item.kind,
                    "grant": item.grant_id.map(|g| g.target()),
                    "import": item.import_id,
                    "created_at": item.created_at,
                    "details": item.details,
                }),
            );
        }

        // Manual grants of sensitive roles, to anyone (people, groups, service accounts): an
        // administrator's say-so is not an approval.
        let name_of = |subject: &Subject| match subject {
            Subject::User(id) => users_by_id.get(id).map(|u| u.username.clone()).unwrap_or_default(),
            Subject::Group(id) => groups.iter().find(|g| g.id == *id).map(|g| g.name.clone()).unwrap_or_default(),
            Subject::ServiceAccount(id) => sas.iter().find(|s| s.id == *id).map(|s| s.name.clone()).unwrap_or_default(),
        };
        let disabled = |subject: &Subject| match subject {
            Subject::User(id) => users_by_id.get(id).is_none_or(|u| u.status == UserStatus::Disabled),
            _ => false,
        };
        for g in grants.iter().filter(|g| g.source == GrantSource::Manual && !disabled(&g.subject)) {
            let Some(role) = roles_by_id.get(&g.role_id) else { continue };
            let phi = role.permissions.iter().any(|p| phi_types.contains(p.resource_type.as_str()));
            let admin_scoped = !role.session_policy.scopes.is_empty();
            if !(role.privileged || admin_scoped || phi) {
                continue;
            }
            let mut why = Vec::new();
            if role.privileged {
                why.push("privileged");
            }
            if admin_scoped {
                why.push("administers Wardkey");
            }
            if phi {
                why.push("reaches PHI");
            }
            findings.push(Finding {
                kind: "unreviewed_sensitive_grant".to_owned(),
                subject: g.subject.target(),
                name: name_of(&g.subject),
                reason: format!(
                    "{} ({}) granted manually by {}, not from an approved access request",
                    role.name,
                    why.join(", "),
                    g.requester.as_deref().unwrap_or(&g.created_by)
                ),
                suggested_action:
                    "review the grant with the data owner: confirm it, or revoke it and have it requested".to_owned(),
                details: json!({
                    "grant": g.id.target(),
                    "role": g.role_id.target(),
                    "privileged": role.privileged,
                    "admin_scopes": role.session_policy.scopes,
                    "phi": phi,
                    "requester": g.requester,
                    "justification": g.justification,
                    "created_at": g.created_at,
                }),
            });
        }

        let mut counts = BTreeMap::new();
        for f in &findings {
            *counts.entry(f.kind.clone()).or_insert(0) += 1;
        }
        Ok(ReconciliationReport {
            generated_at: now,
            dormant_days,
            users: users.len(),
            service_accounts: sas.len(),
            counts,
            findings,
        })
        }
        .await;
        self.recorded(by.caller(), "reconciliation_report", target, result).await
    }
}
