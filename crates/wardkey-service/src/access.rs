//! Resource types, resources, roles, role templates, SoD rules and grants.

use crate::auth::{Admin, Authorized};
use crate::event;
use crate::grants::{EventContext, NewGrantSpec, Provenance};
use crate::stepup::{SensitiveChange, is_sensitive_role, require_step_up};
use crate::{Committed, PageRequest, Paged, Result, ServiceError, Services};
use serde_json::json;
use wardkey_audit::Action;
use wardkey_domain::{
    Grant, GrantId, Member, NewGrant, NewResource, NewResourceType, NewRole, NewRoleTemplate, NewSodRule, Resource,
    ResourceId, ResourceType, ResourceTypeId, ResourceTypeUpdate, ResourceUpdate, Role, RoleId, RoleTemplate,
    RoleTemplateId, RoleTemplateUpdate, RoleUpdate, SodItem, SodRule, SodRuleId, SodRuleUpdate, Subject,
    check_no_cycle, check_sod, normalise_actions, normalise_permissions,
};
use wardkey_store::{GrantQuery, ResourceQuery, WriteTx};

fn not_found(kind: &'static str, id: impl ToString) -> ServiceError {
    ServiceError::NotFound { kind, id: id.to_string() }
}

/// Roles a subject holds through live grants made to it directly.
pub(crate) async fn roles_of_grants(tx: &mut WriteTx, subject: Subject) -> Result<Vec<Role>> {
    let now = tx.now();
    let mut ids: Vec<RoleId> = tx.live_grants_for_subject(subject, now).await?.into_iter().map(|g| g.role_id).collect();
    ids.sort();
    ids.dedup();
    Ok(tx.get_roles(&ids).await?)
}

/// Roles a subject holds directly or through the groups it belongs to.
pub(crate) async fn roles_held(tx: &mut WriteTx, subject: Subject) -> Result<Vec<Role>> {
    let mut roles = roles_of_grants(tx, subject).await?;
    let member = match subject {
        Subject::User(u) => Some(Member::User(u)),
        Subject::ServiceAccount(s) => Some(Member::ServiceAccount(s)),
        Subject::Group(_) => None,
    };
    if let Some(member) = member {
        for g in tx.groups_of(member).await? {
            roles.extend(roles_of_grants(tx, Subject::Group(g)).await?);
        }
    }
    roles.sort_by_key(|r| r.id);
    roles.dedup_by_key(|r| r.id);
    Ok(roles)
}

impl Services {
    pub async fn create_resource_type(
        &self,
        by: &Authorized<Admin>,
        mut input: NewResourceType,
    ) -> Result<Committed<ResourceType>> {
        input.validate()?;
        normalise_actions(&mut input.actions);
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let now = tx.now();
                    let rt = ResourceType {
                        id: ResourceTypeId::generate(),
                        name: input.name,
                        description: input.description,
                        actions: input.actions,
                        phi: input.phi,
                        decision_audit: input.decision_audit,
                        created_at: now,
                        updated_at: now,
                        version: 1,
                    };
                    tx.insert_resource_type(&rt).await?;
                    let mut e = event(&caller, Action::ResourceTypeCreate, rt.id);
                    e.details = json!({ "name": rt.name, "actions": rt.actions, "phi": rt.phi, "decision_audit": rt.decision_audit });
                    tx.audit(e);
                    Ok(rt)
                })
            })
            .await
    }

    pub async fn get_resource_type(&self, by: &Authorized<Admin>, id: ResourceTypeId) -> Result<ResourceType> {
        let target = Some(id.target());
        let result: Result<ResourceType> = async {
            self.store.read().await?.get_resource_type(id).await?.ok_or_else(|| not_found("resource_type", id))
        }
        .await;
        self.recorded(by.caller(), "get_resource_type", target, result).await
    }

    pub async fn list_resource_types(&self, by: &Authorized<Admin>) -> Result<Vec<ResourceType>> {
        let target = None;
        let result: Result<Vec<ResourceType>> =
            async { Ok(self.store.read().await?.list_resource_types().await?) }.await;
        self.recorded(by.caller(), "list_resource_types", target, result).await
    }

    pub async fn update_resource_type(
        &self,
        by: &Authorized<Admin>,
        id: ResourceTypeId,
        input: ResourceTypeUpdate,
    ) -> Result<Committed<ResourceType>> {
        input.validate()?;
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let mut rt = tx.get_resource_type(id).await?.ok_or_else(|| not_found("resource_type", id))?;
                    let before = rt.clone();
                    if let Some(mut actions) = input.actions {
                        normalise_actions(&mut actions);
                        // An action still named by a role must not disappear under it.
                        for role in &all_roles(tx).await? {
                            for p in role.permissions.iter().filter(|p| p.resource_type == rt.name) {
                                if let Some(a) = p.actions.iter().find(|a| !actions.contains(a)) {
                                    return Err(ServiceError::Conflict {
                                        kind: "resource_type",
                                        message: format!("action {a:?} is still used by role {}", role.name),
                                    });
                                }
                            }
                        }
                        rt.actions = actions;
                    }
                    if let Some(d) = input.description {
                        rt.description = Some(d);
                    }
                    if let Some(mode) = input.decision_audit {
                        rt.decision_audit = mode;
                    }
                    if let Some(phi) = input.phi {
                        rt.phi = phi;
                    }
                    rt.updated_at = tx.now();
                    let rt = tx.update_resource_type(&rt, input.version).await?;
                    let mut e = event(&caller, Action::ResourceTypeUpdate, id);
                    e.details = json!({ "actions_before": before.actions, "actions_after": rt.actions, "phi": rt.phi });
                    tx.audit(e);
                    Ok(rt)
                })
            })
            .await
    }

    pub async fn delete_resource_type(
        &self,
        by: &Authorized<Admin>,
        id: ResourceTypeId,
        version: i64,
    ) -> Result<Committed<()>> {
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let rt = tx.get_resource_type(id).await?.ok_or_else(|| not_found("resource_type", id))?;
                    if let Some(role) =
                        all_roles(tx).await?.iter().find(|r| r.permissions.iter().any(|p| p.resource_type == rt.name))
                    {
                        return Err(ServiceError::Conflict {
                            kind: "resource_type",
                            message: format!("role {} still has permissions on this type", role.name),
                        });
                    }
                    tx.delete_resource_type(id, version).await?;
                    let mut e = event(&caller, Action::ResourceTypeDelete, id);
                    e.details = json!({ "name": rt.name });
                    tx.audit(e);
                    Ok(())
                })
            })
            .await
    }

    pub async fn create_resource(&self, by: &Authorized<Admin>, input: NewResource) -> Result<Committed<Resource>> {
        input.validate()?;
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    tx.get_resource_type(input.type_id).await?.ok_or_else(|| ServiceError::invalid("type_id", "no such resource type"))?;
                    if let Some(parent) = input.parent_id {
                        tx.get_resource(parent).await?.ok_or_else(|| ServiceError::invalid("parent_id", "no such resource"))?;
                        wardkey_domain::check_depth(tx.ancestors(parent).await?.len(), 0)?;
                    }
                    let now = tx.now();
                    let r = Resource {
                        id: ResourceId::generate(),
                        type_id: input.type_id,
                        name: input.name,
                        parent_id: input.parent_id,
                        description: input.description,
                        attributes: input.attributes,
                        created_at: now,
                        updated_at: now,
                        version: 1,
                    };
                    tx.insert_resource(&r).await?;
                    let mut e = event(&caller, Action::ResourceCreate, r.id);
                    e.details = json!({ "name": r.name, "type": r.type_id.target(), "parent": r.parent_id.map(|p| p.target()) });
                    tx.audit(e);
                    Ok(r)
                })
            })
            .await
    }

    pub async fn get_resource(&self, by: &Authorized<Admin>, id: ResourceId) -> Result<Resource> {
        let target = Some(id.target());
        let result: Result<Resource> =
            async { self.store.read().await?.get_resource(id).await?.ok_or_else(|| not_found("resource", id)) }.await;
        self.recorded(by.caller(), "get_resource", target, result).await
    }

    pub async fn list_resources(
        &self,
        by: &Authorized<Admin>,
        query: ResourceQuery,
        page: PageRequest,
    ) -> Result<Paged<Resource>> {
        let target = None;
        let result: Result<Paged<Resource>> = async {
            let page = page.to_store();
            let items = self.store.read().await?.list_resources(&query, &page).await?;
            Ok(Paged::new(items, page.limit, |r| r.id.to_string()))
        }
        .await;
        self.recorded(by.caller(), "list_resources", target, result).await
    }

    pub async fn update_resource(
        &self,
        by: &Authorized<Admin>,
        id: ResourceId,
        input: ResourceUpdate,
    ) -> Result<Committed<Resource>> {
        input.validate()?;
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let mut r = tx.get_resource(id).await?.ok_or_else(|| not_found("resource", id))?;
                    let parent_before = r.parent_id;
                    if let Some(parent) = input.parent_id {
                        tx.get_resource(parent)
                            .await?
                            .ok_or_else(|| ServiceError::invalid("parent_id", "no such resource"))?;
                        let mut chain = vec![parent];
                        chain.extend(tx.ancestors(parent).await?);
                        check_no_cycle(id, &chain)?;
                        // The whole subtree moves: its deepest descendant must stay within the limit.
                        wardkey_domain::check_depth(chain.len().saturating_sub(1), tx.subtree_height(id).await?)?;
                        r.parent_id = Some(parent);
                    } else if input.move_to_root {
                        r.parent_id = None;
                    }
                    if let Some(d) = input.description {
                        r.description = Some(d);
                    }
                    if let Some(a) = input.attributes {
                        r.attributes = a;
                    }
                    r.updated_at = tx.now();
                    let r = tx.update_resource(&r, input.version).await?;
                    let mut e = event(&caller, Action::ResourceUpdate, id);
                    e.details = json!({
                        "parent_before": parent_before.map(|p| p.target()),
                        "parent_after": r.parent_id.map(|p| p.target()),
                        "attributes": r.attributes,
                    });
                    tx.audit(e);
                    Ok(r)
                })
            })
            .await
    }

    pub async fn delete_resource(&self, by: &Authorized<Admin>, id: ResourceId, version: i64) -> Result<Committed<()>> {
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let r = tx.get_resource(id).await?.ok_or_else(|| not_found("resource", id))?;
                    tx.delete_resource(id, version).await?;
                    let mut e = event(&caller, Action::ResourceDelete, id);
                    e.details = json!({ "name": r.name });
                    tx.audit(e);
                    Ok(())
                })
            })
            .await
    }

    pub async fn create_role(&self, by: &Authorized<Admin>, input: NewRole) -> Result<Committed<Role>> {
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let types = tx.list_resource_types().await?;
                    input.validate(&types)?;
                    let now = tx.now();
                    let role = Role {
                        id: RoleId::generate(),
                        name: input.name,
                        description: input.description,
                        permissions: normalise_permissions(input.permissions),
                        privileged: input.privileged,
                        session_policy: input.session_policy,
                        conditions: input.conditions,
                        break_glass: input.break_glass,
                        created_at: now,
                        updated_at: now,
                        version: 1,
                    };
                    tx.insert_role(&role).await?;
                    let mut e = event(&caller, Action::RoleCreate, role.id);
                    e.details = json!({
                        "name": role.name,
                        "permissions": role.permissions,
                        "privileged": role.privileged,
                        "session_policy": role.session_policy,
                        "conditions": role.conditions,
                        "break_glass": role.break_glass,
                    });
                    tx.audit(e);
                    Ok(role)
                })
            })
            .await
    }

    pub async fn get_role(&self, by: &Authorized<Admin>, id: RoleId) -> Result<Role> {
        let target = Some(id.target());
        let result: Result<Role> =
            async { self.store.read().await?.get_role(id).await?.ok_or_else(|| not_found("role", id)) }.await;
        self.recorded(by.caller(), "get_role", target, result).await
    }

    pub async fn list_roles(&self, by: &Authorized<Admin>, page: PageRequest) -> Result<Paged<Role>> {
        let target = None;
        let result: Result<Paged<Role>> = async {
            let page = page.to_store();
            let items = self.store.read().await?.list_roles(&page).await?;
            Ok(Paged::new(items, page.limit, |r| r.id.to_string()))
        }
        .await;
        self.recorded(by.caller(), "list_roles", target, result).await
    }

    pub async fn update_role(&self, by: &Authorized<Admin>, id: RoleId, input: RoleUpdate) -> Result<Committed<Role>> {
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let types = tx.list_resource_types().await?;
                    input.validate(&types)?;
                    let mut role = tx.get_role(id).await?.ok_or_else(|| not_found("role", id))?;
                    let role_before = role.clone();
                    let before = role.permissions.clone();
                    if let Some(p) = input.permissions {
                        role.permissions = normalise_permissions(p);
                    }
                    if let Some(d) = input.description {
                        role.description = Some(d);
                    }
                    if let Some(p) = input.privileged {
                        role.privileged = p;
                    }
                    if let Some(b) = input.break_glass {
                        role.break_glass = b;
                    }
                    let policy_before = role.session_policy.clone();
                    if let Some(p) = input.session_policy.clone() {
                        role.session_policy = p;
                    }
                    let conditions_before = role.conditions.clone();
                    if let Some(c) = input.conditions.clone() {
                        role.conditions = c;
                    }
                    role.updated_at = tx.now();
                    // Making a held role privileged or admin-scoped hands that power to every
                    // holder at once: as sensitive as granting it to each of them.
                    if crate::stepup::became_more_sensitive(&role_before, &role)
                        && !holders_of_role(tx, id).await?.is_empty()
                    {
                        require_step_up(&caller, tx.now(), SensitiveChange::RoleBecomesSensitive)?;
                    }
                    if role.permissions != before {
                        // New permissions may complete a permission-based SoD conflict for
                        // someone who already holds the role.
                        let rules = tx.list_sod_rules().await?;
                        if !rules.is_empty() {
                            for subject in holders_of_role(tx, id).await? {
                                let held: Vec<Role> =
                                    roles_held(tx, subject).await?.into_iter().filter(|r| r.id != id).collect();
                                check_sod(&rules, &held, std::slice::from_ref(&role))?;
                            }
                        }
                    }
                    let role = tx.update_role(&role, input.version).await?;
                    let mut e = event(&caller, Action::RoleUpdate, id);
                    e.details = json!({
                        "permissions_before": before,
                        "permissions_after": role.permissions,
                        "privileged": role.privileged,
                        "session_policy_before": policy_before,
                        "session_policy_after": role.session_policy,
                        "conditions_before": conditions_before,
                        "conditions_after": role.conditions,
                    });
                    tx.audit(e);
                    Ok(role)
                })
            })
            .await
    }

    pub async fn delete_role(&self, by: &Authorized<Admin>, id: RoleId, version: i64) -> Result<Committed<()>> {
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let role = tx.get_role(id).await?.ok_or_else(|| not_found("role", id))?;
                    // A rule naming a deleted role would silently stop protecting anything.
                    let named = |item: &SodItem| matches!(item, SodItem::Role { role_id } if *role_id == id);
                    if let Some(rule) =
                        tx.list_sod_rules().await?.into_iter().find(|r| named(&r.left) || named(&r.right))
                    {
                        return Err(ServiceError::Conflict {
                            kind: "role",
                            message: format!(
                                "separation-of-duties rule {} names this role; change or delete it first",
                                rule.name
                            ),
                        });
                    }
                    tx.delete_role(id, version).await?;
                    let mut e = event(&caller, Action::RoleDelete, id);
                    e.details = json!({ "name": role.name });
                    tx.audit(e);
                    Ok(())
                })
            })
            .await
    }

    pub async fn create_role_template(
        &self,
        by: &Authorized<Admin>,
        mut input: NewRoleTemplate,
    ) -> Result<Committed<RoleTemplate>> {
        input.validate()?;
        input.role_ids.sort();
        input.role_ids.dedup();
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    check_roles_exist(tx, &input.role_ids, "role_ids").await?;
                    let now = tx.now();
                    let t = RoleTemplate {
                        id: RoleTemplateId::generate(),
                        name: input.name,
                        description: input.description,
                        rule: input.rule,
                        role_ids: input.role_ids,
                        created_at: now,
                        updated_at: now,
                        version: 1,
                    };
                    tx.insert_role_template(&t).await?;
                    let mut e = event(&caller, Action::RoleTemplateCreate, t.id);
                    e.details = json!({ "name": t.name, "rule": t.rule, "role_ids": t.role_ids });
                    tx.audit(e);
                    Ok(t)
                })
            })
            .await
    }

    pub async fn get_role_template(&self, by: &Authorized<Admin>, id: RoleTemplateId) -> Result<RoleTemplate> {
        let target = Some(id.target());
        let result: Result<RoleTemplate> = async {
            self.store.read().await?.get_role_template(id).await?.ok_or_else(|| not_found("role_template", id))
        }
        .await;
        self.recorded(by.caller(), "get_role_template", target, result).await
    }

    pub async fn list_role_templates(&self, by: &Authorized<Admin>) -> Result<Vec<RoleTemplate>> {
        let target = None;
        let result: Result<Vec<RoleTemplate>> =
            async { Ok(self.store.read().await?.list_role_templates().await?) }.await;
        self.recorded(by.caller(), "list_role_templates", target, result).await
    }

    pub async fn update_role_template(
        &self,
        by: &Authorized<Admin>,
        id: RoleTemplateId,
        input: RoleTemplateUpdate,
    ) -> Result<Committed<RoleTemplate>> {
        input.validate()?;
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let mut t = tx.get_role_template(id).await?.ok_or_else(|| not_found("role_template", id))?;
                    if let Some(mut ids) = input.role_ids {
                        ids.sort();
                        ids.dedup();
                        check_roles_exist(tx, &ids, "role_ids").await?;
                        t.role_ids = ids;
                    }
                    if let Some(rule) = input.rule {
                        t.rule = rule;
                    }
                    if let Some(d) = input.description {
                        t.description = Some(d);
                    }
                    t.updated_at = tx.now();
                    let t = tx.update_role_template(&t, input.version).await?;
                    let mut e = event(&caller, Action::RoleTemplateUpdate, id);
                    e.details = json!({ "rule": t.rule, "role_ids": t.role_ids });
                    tx.audit(e);
                    Ok(t)
                })
            })
            .await
    }

    pub async fn delete_role_template(
        &self,
        by: &Authorized<Admin>,
        id: RoleTemplateId,
        version: i64,
    ) -> Result<Committed<()>> {
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let t = tx.get_role_template(id).await?.ok_or_else(|| not_found("role_template", id))?;
                    tx.delete_role_template(id, version).await?;
                    let mut e = event(&caller, Action::RoleTemplateDelete, id);
                    e.details = json!({ "name": t.name, "rule": t.rule, "role_ids": t.role_ids });
                    tx.audit(e);
                    Ok(())
                })
            })
            .await
    }

    pub async fn create_sod_rule(&self, by: &Authorized<Admin>, input: NewSodRule) -> Result<Committed<SodRule>> {
        input.validate()?;
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    for (field, item) in [("left", &input.left), ("right", &input.right)] {
                        if let SodItem::Role { role_id } = item {
                            tx.get_role(*role_id)
                                .await?
                                .ok_or_else(|| ServiceError::invalid(format!("{field}.role_id"), "no such role"))?;
                        }
                    }
                    let now = tx.now();
                    let rule = SodRule {
                        id: SodRuleId::generate(),
                        name: input.name,
                        description: input.description,
                        left: input.left,
                        right: input.right,
                        created_at: now,
                        updated_at: now,
                        version: 1,
                    };
                    tx.insert_sod_rule(&rule).await?;
                    let mut e = event(&caller, Action::SodRuleCreate, rule.id);
                    e.details = json!({ "name": rule.name, "left": rule.left, "right": rule.right });
                    tx.audit(e);
                    Ok(rule)
                })
            })
            .await
    }

    pub async fn get_sod_rule(&self, by: &Authorized<Admin>, id: SodRuleId) -> Result<SodRule> {
        let target = Some(id.target());
        let result: Result<SodRule> =
            async { self.store.read().await?.get_sod_rule(id).await?.ok_or_else(|| not_found("sod_rule", id)) }.await;
        self.recorded(by.caller(), "get_sod_rule", target, result).await
    }

    pub async fn list_sod_rules(&self, by: &Authorized<Admin>) -> Result<Vec<SodRule>> {
        let target = None;
        let result: Result<Vec<SodRule>> = async { Ok(self.store.read().await?.list_sod_rules().await?) }.await;
        self.recorded(by.caller(), "list_sod_rules", target, result).await
    }

    pub async fn update_sod_rule(
        &self,
        by: &Authorized<Admin>,
        id: SodRuleId,
        input: SodRuleUpdate,
    ) -> Result<Committed<SodRule>> {
        input.validate()?;
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let mut rule = tx.get_sod_rule(id).await?.ok_or_else(|| not_found("sod_rule", id))?;
                    if let Some(d) = input.description {
                        rule.description = Some(d);
                    }
                    rule.updated_at = tx.now();
                    let rule = tx.update_sod_rule(&rule, input.version).await?;
                    tx.audit(event(&caller, Action::SodRuleUpdate, id));
                    Ok(rule)
                })
            })
            .await
    }

    pub async fn delete_sod_rule(&self, by: &Authorized<Admin>, id: SodRuleId, version: i64) -> Result<Committed<()>> {
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let rule = tx.get_sod_rule(id).await?.ok_or_else(|| not_found("sod_rule", id))?;
                    tx.delete_sod_rule(id, version).await?;
                    let mut e = event(&caller, Action::SodRuleDelete, id);
                    e.details = json!({ "name": rule.name, "left": rule.left, "right": rule.right });
                    tx.audit(e);
                    Ok(())
                })
            })
            .await
    }

    /// Grants a role over the admin API: a `manual` grant requested by the caller, with a
    /// justification ([`crate::grants::create_in_tx`] does the rest). Provenance cannot be
    /// asserted (see [`NewGrant`]); a person granting a privileged or admin-scoped role proves
    /// a second factor again first ([`crate::stepup`]).
    pub async fn create_grant(&self, by: &Authorized<Admin>, input: NewGrant) -> Result<Committed<Grant>> {
        let now = self.clock().now();
        input.validate(now)?;
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let role = tx
                        .get_role(input.role_id)
                        .await?
                        .ok_or_else(|| ServiceError::invalid("role_id", "no such role"))?;
                    if is_sensitive_role(&role) {
                        require_step_up(&caller, tx.now(), SensitiveChange::GrantSensitiveRole)?;
                    }
                    let justification = input.justification.unwrap_or_default();
                    let spec = NewGrantSpec {
                        subject: input.subject,
                        role,
                        resource_id: input.resource_id,
                        starts_at: input.starts_at,
                        expires_at: input.expires_at,
                        conditions: input.conditions,
                        provenance: Provenance::manual(&caller, justification),
                    };
                    crate::grants::create_in_tx(tx, &caller, spec, &EventContext::default()).await
                })
            })
            .await
    }

    pub async fn get_grant(&self, by: &Authorized<Admin>, id: GrantId) -> Result<Grant> {
        let target = Some(id.target());
        let result: Result<Grant> =
            async { self.store.read().await?.get_grant(id).await?.ok_or_else(|| not_found("grant", id)) }.await;
        self.recorded(by.caller(), "get_grant", target, result).await
    }

    pub async fn list_grants(
        &self,
        by: &Authorized<Admin>,
        query: GrantQuery,
        page: PageRequest,
    ) -> Result<Paged<Grant>> {
        let target = None;
        let result: Result<Paged<Grant>> = async {
            let page = page.to_store();
            let items = self.store.read().await?.list_grants(&query, &page).await?;
            Ok(Paged::new(items, page.limit, |g| g.id.to_string()))
        }
        .await;
        self.recorded(by.caller(), "list_grants", target, result).await
    }

    /// Revokes a grant. The row stays, with who revoked it and when, for evidence.
    pub async fn revoke_grant(
        &self,
        by: &Authorized<Admin>,
        id: GrantId,
        version: i64,
        reason: Option<String>,
    ) -> Result<Committed<Grant>> {
        if let Some(r) = &reason {
            let mut errors = Vec::new();
            wardkey_domain::validate::text(&mut errors, "reason", r, wardkey_domain::validate::MAX_TEXT);
            wardkey_domain::validate::finish(errors)?;
        }
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let ctx = EventContext { reason, ..Default::default() };
                    let grant = crate::grants::revoke_in_tx(tx, &caller, id, version, &ctx).await?;
                    Ok(grant)
                })
            })
            .await
    }
}

/// Everyone who holds `role` through a live grant: the grantees, and the members of groups
/// that are grantees.
async fn holders_of_role(tx: &mut WriteTx, role: RoleId) -> Result<Vec<Subject>> {
    let query = GrantQuery { role_id: Some(role), ..Default::default() };
    let mut page = wardkey_store::Page { after: None, limit: 500 };
    let mut subjects = Vec::new();
    loop {
        let batch = tx.list_grants(&query, &page).await?;
        let done = batch.len() < page.limit as usize;
        page.after = batch.last().map(|g| g.id.to_string());
        for g in batch {
            match g.subject {
                Subject::Group(gid) => {
                    for m in tx.list_members(gid).await? {
                        subjects.push(crate::grants::member_subject(m));
                    }
                }
                s => subjects.push(s),
            }
        }
        if done {
            break;
        }
    }
    subjects.sort();
    subjects.dedup();
    Ok(subjects)
}

/// Every role, page by page (roles number in the hundreds, not millions).
async fn all_roles(tx: &mut WriteTx) -> Result<Vec<Role>> {
    let mut roles = Vec::new();
    let mut page = wardkey_store::Page { after: None, limit: 500 };
    loop {
        let batch = tx.list_roles(&page).await?;
        let done = batch.len() < page.limit as usize;
        page.after = batch.last().map(|r| r.id.to_string());
        roles.extend(batch);
        if done {
            return Ok(roles);
        }
    }
}

async fn check_roles_exist(tx: &mut WriteTx, ids: &[RoleId], field: &str) -> Result<()> {
    let found = tx.get_roles(ids).await?;
    for (i, id) in ids.iter().enumerate() {
        if !found.iter().any(|r| r.id == *id) {
            return Err(ServiceError::invalid(format!("{field}[{i}]"), "no such role"));
        }
    }
    Ok(())
}
