//! Users, groups, service accounts and membership.

use crate::auth::{Admin, Authorized};
use crate::{Caller, Committed, PageRequest, Paged, Result, ServiceError, Services, event};
use serde_json::json;
use wardkey_audit::Action;
use wardkey_domain::{
    Group, GroupId, GroupUpdate, IdentityVerification, Member, NewGroup, NewServiceAccount, NewUser, ServiceAccount,
    ServiceAccountId, ServiceAccountStatus, ServiceAccountUpdate, Subject, User, UserId, UserStatus, UserUpdate,
    check_sod,
};
use wardkey_store::{UserQuery, WriteTx};

fn not_found(kind: &'static str, id: impl ToString) -> ServiceError {
    ServiceError::NotFound { kind, id: id.to_string() }
}

/// A live user, or NotFound (tombstoned users are not found by id either, for writes).
pub(crate) async fn live_user(tx: &mut WriteTx, id: UserId) -> Result<User> {
    tx.get_user(id).await?.ok_or_else(|| not_found("user", id))
}

/// Revokes every live grant of `subject` through the one revoke path.
pub(crate) use crate::grants::revoke_all_in_tx as revoke_everything;

/// Removes `member` from every group, one event per membership.
pub(crate) async fn leave_all_groups(tx: &mut WriteTx, caller: &Caller, member: Member, why: &str) -> Result<()> {
    for g in tx.groups_of(member).await? {
        tx.remove_member(g, member).await?;
        let mut e = event(caller, Action::GroupMemberRemove, g);
        e.reason = Some(why.to_owned());
        e.details = json!({ "member": member.target() });
        tx.audit(e);
    }
    Ok(())
}

impl Services {
    pub async fn create_user(&self, by: &Authorized<Admin>, input: NewUser) -> Result<Committed<User>> {
        input.validate()?;
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    if let Some(manager) = input.hr.manager_id {
                        live_user(tx, manager)
                            .await
                            .map_err(|_| ServiceError::invalid("hr.manager_id", "no such user"))?;
                    }
                    let user = input.into_user(UserId::generate(), tx.now());
                    tx.insert_user(&user).await?;
                    let mut e = event(&caller, Action::UserCreate, user.id);
                    e.details = json!({ "username": user.username, "status": user.status, "hr": user.hr });
                    tx.audit(e);
                    Ok(user)
                })
            })
            .await
    }

    pub async fn get_user(&self, by: &Authorized<Admin>, id: UserId) -> Result<User> {
        let target = Some(id.target());
        let result: Result<User> =
            async { self.store.read().await?.get_user(id).await?.ok_or_else(|| not_found("user", id)) }.await;
        self.recorded(by.caller(), "get_user", target, result).await
    }

    pub async fn get_user_by_username(&self, _by: &Authorized<Admin>, username: &str) -> Result<User> {
        self.store.read().await?.get_user_by_username(username).await?.ok_or_else(|| not_found("user", username))
    }

    pub async fn list_users(&self, by: &Authorized<Admin>, query: UserQuery, page: PageRequest) -> Result<Paged<User>> {
        let target = None;
        let result: Result<Paged<User>> = async {
            crate::check_filters(&[
                ("username_prefix", &query.username_prefix),
                ("department", &query.department),
                ("after", &page.after),
            ])?;
            let page = page.to_store();
            let items = self.store.read().await?.list_users(&query, &page).await?;
            Ok(Paged::new(items, page.limit, |u| u.id.to_string()))
        }
        .await;
        self.recorded(by.caller(), "list_users", target, result).await
    }

    pub async fn update_user(&self, by: &Authorized<Admin>, id: UserId, input: UserUpdate) -> Result<Committed<User>> {
        input.validate()?;
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let mut user = live_user(tx, id).await?;
                    if let Some(Some(manager)) = input.hr.as_ref().map(|h| h.manager_id) {
                        if manager == id {
                            return Err(ServiceError::invalid("hr.manager_id", "a user cannot be their own manager"));
                        }
                        live_user(tx, manager)
                            .await
                            .map_err(|_| ServiceError::invalid("hr.manager_id", "no such user"))?;
                    }
                    let expected = input.version;
                    let before_hr = user.hr.clone();
                    let changed = input.apply(&mut user);
                    user.updated_at = tx.now();
                    let user = tx.update_user(&user, expected).await?;
                    let mut e = event(&caller, Action::UserUpdate, id);
                    e.details = json!({ "changed": changed, "hr_before": before_hr, "hr_after": user.hr });
                    tx.audit(e);
                    if before_hr != user.hr {
                        // A mover: new template roles in, old ones out, other grants flagged.
                        let ctx = crate::jml::ChangeContext {
                            attributes_changed: crate::jml::is_move(&before_hr, &user.hr),
                            ..Default::default()
                        };
                        crate::jml::sync_birthright_with(tx, &caller, &user, "HR attributes changed", &ctx).await?;
                    }
                    Ok(user)
                })
            })
            .await
    }

    /// Moves a user through the lifecycle. Disabling revokes every grant in the same
    /// transaction, so access ends the moment the call returns.
    pub async fn set_user_status(
        &self,
        by: &Authorized<Admin>,
        id: UserId,
        version: i64,
        to: UserStatus,
        reason: Option<String>,
    ) -> Result<Committed<User>> {
        if let Some(r) = &reason {
            let mut errors = Vec::new();
            wardkey_domain::validate::text(&mut errors, "reason", r, wardkey_domain::validate::MAX_TEXT);
            wardkey_domain::validate::finish(errors)?;
        }
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let mut user = live_user(tx, id).await?;
                    let from = user.status;
                    user.status = from.transition(to)?;
                    if from == UserStatus::PendingVerification
                        && to == UserStatus::Active
                        && user.verification.is_none()
                    {
                        return Err(ServiceError::Conflict {
                            kind: "user",
                            message: "identity must be verified (POST .../verify-identity) before activation".into(),
                        });
                    }
                    if to == UserStatus::PendingVerification {
                        // Rehire: the identity is verified again, from scratch.
                        user.verification = None;
                    }
                    user.updated_at = tx.now();
                    let user = tx.update_user(&user, version).await?;
                    let mut e = event(&caller, Action::UserStatus, id);
                    e.reason = reason.clone();
                    e.details = json!({ "from": from, "to": to });
                    tx.audit(e);
                    if to == UserStatus::Suspended {
                        // Sign-in ends with the status change, before the call returns.
                        crate::authn::end_sessions(tx, id, "user_suspended", &caller.actor.principal(), &caller.meta)
                            .await?;
                    }
                    if to == UserStatus::Disabled {
                        // Sessions, grants, memberships and the user's own API tokens.
                        crate::lifecycle::revoke_access_in_tx(tx, &caller, &user, "user disabled").await?;
                    }
                    if to == UserStatus::Active {
                        // Joiner (after identity verification) or return: birthright roles.
                        crate::jml::sync_birthright_in_tx(tx, &caller, &user, "user activated").await?;
                    }
                    Ok(user)
                })
            })
            .await
    }

    /// Records who verified a person's identity, how and when (onboarding).
    pub async fn verify_identity(
        &self,
        by: &Authorized<Admin>,
        id: UserId,
        version: i64,
        method: String,
    ) -> Result<Committed<User>> {
        let mut errors = Vec::new();
        wardkey_domain::validate::name(&mut errors, "method", &method);
        wardkey_domain::validate::finish(errors)?;
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let mut user = live_user(tx, id).await?;
                    let now = tx.now();
                    user.verification = Some(IdentityVerification {
                        verified_by: caller.actor.principal(),
                        method: method.clone(),
                        verified_at: now,
                    });
                    user.updated_at = now;
                    let user = tx.update_user(&user, version).await?;
                    let mut e = event(&caller, Action::UserVerifyIdentity, id);
                    e.details = json!({ "method": method });
                    tx.audit(e);
                    Ok(user)
                })
            })
            .await
    }

    /// Deletes a user: the identity becomes a tombstone (kept with its audit history), its
    /// grants are revoked, and its username is free again for a *new* id.
    pub async fn delete_user(&self, by: &Authorized<Admin>, id: UserId, version: i64) -> Result<Committed<()>> {
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let user = live_user(tx, id).await?;
                    crate::lifecycle::revoke_access_in_tx(tx, &caller, &user, "user deleted").await?;
                    tx.delete_user(id, version).await?;
                    let mut e = event(&caller, Action::UserDelete, id);
                    e.details = json!({ "username": user.username });
                    tx.audit(e);
                    Ok(())
                })
            })
            .await
    }

    pub async fn create_group(&self, by: &Authorized<Admin>, input: NewGroup) -> Result<Committed<Group>> {
        input.validate()?;
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let now = tx.now();
                    let group = Group {
                        id: GroupId::generate(),
                        name: input.name,
                        description: input.description,
                        created_at: now,
                        updated_at: now,
                        version: 1,
                    };
                    tx.insert_group(&group).await?;
                    let mut e = event(&caller, Action::GroupCreate, group.id);
                    e.details = json!({ "name": group.name });
                    tx.audit(e);
                    Ok(group)
                })
            })
            .await
    }

    pub async fn get_group(&self, by: &Authorized<Admin>, id: GroupId) -> Result<Group> {
        let target = Some(id.target());
        let result: Result<Group> =
            async { self.store.read().await?.get_group(id).await?.ok_or_else(|| not_found("group", id)) }.await;
        self.recorded(by.caller(), "get_group", target, result).await
    }

    pub async fn list_groups(&self, by: &Authorized<Admin>, page: PageRequest) -> Result<Paged<Group>> {
        let target = None;
        let result: Result<Paged<Group>> = async {
            let page = page.to_store();
            let items = self.store.read().await?.list_groups(&page).await?;
            Ok(Paged::new(items, page.limit, |g| g.id.to_string()))
        }
        .await;
        self.recorded(by.caller(), "list_groups", target, result).await
    }

    pub async fn update_group(
        &self,
        by: &Authorized<Admin>,
        id: GroupId,
        input: GroupUpdate,
    ) -> Result<Committed<Group>> {
        input.validate()?;
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let mut group = tx.get_group(id).await?.ok_or_else(|| not_found("group", id))?;
                    if let Some(n) = input.name {
                        group.name = n;
                    }
                    if let Some(d) = input.description {
                        group.description = Some(d);
                    }
                    group.updated_at = tx.now();
                    let group = tx.update_group(&group, input.version).await?;
                    let mut e = event(&caller, Action::GroupUpdate, id);
                    e.details = json!({ "name": group.name });
                    tx.audit(e);
                    Ok(group)
                })
            })
            .await
    }

    pub async fn delete_group(&self, by: &Authorized<Admin>, id: GroupId, version: i64) -> Result<Committed<()>> {
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    tx.get_group(id).await?.ok_or_else(|| not_found("group", id))?;
                    revoke_everything(tx, &caller, Subject::Group(id), "group deleted").await?;
                    tx.delete_group(id, version).await?;
                    tx.audit(event(&caller, Action::GroupDelete, id));
                    Ok(())
                })
            })
            .await
    }

    /// Adds a member. Separation of duties is checked: the member's own roles plus those of
    /// its other groups must not conflict with this group's roles.
    pub async fn add_member(&self, by: &Authorized<Admin>, group: GroupId, member: Member) -> Result<Committed<bool>> {
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    tx.get_group(group).await?.ok_or_else(|| not_found("group", group))?;
                    match member {
                        Member::User(u) => {
                            if live_user(tx, u).await?.status == UserStatus::Disabled {
                                return Err(ServiceError::invalid("id", "the user is disabled"));
                            }
                        }
                        Member::ServiceAccount(s) => {
                            let sa = tx.get_service_account(s).await?.ok_or_else(|| not_found("service_account", s))?;
                            if sa.status == ServiceAccountStatus::Disabled {
                                return Err(ServiceError::invalid("id", "the service account is disabled"));
                            }
                        }
                    }
                    let member_subject = match member {
                        Member::User(u) => Subject::User(u),
                        Member::ServiceAccount(s) => Subject::ServiceAccount(s),
                    };
                    let held = crate::access::roles_held(tx, member_subject).await?;
                    let added = crate::access::roles_of_grants(tx, Subject::Group(group)).await?;
                    // Joining a group that holds a privileged or admin-scoped role is granting it.
                    if added.iter().any(crate::stepup::is_sensitive_role) {
                        crate::stepup::require_step_up(
                            &caller,
                            tx.now(),
                            crate::stepup::SensitiveChange::JoinGroupWithSensitiveRole,
                        )?;
                    }
                    let rules = tx.list_sod_rules().await?;
                    check_sod(&rules, &held, &added)?;
                    let inserted = tx.add_member(group, member).await?;
                    let mut e = event(&caller, Action::GroupMemberAdd, group);
                    e.details = json!({ "member": member.target(), "already_member": !inserted });
                    tx.audit(e);
                    Ok(inserted)
                })
            })
            .await
    }

    pub async fn remove_member(
        &self,
        by: &Authorized<Admin>,
        group: GroupId,
        member: Member,
    ) -> Result<Committed<bool>> {
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    tx.get_group(group).await?.ok_or_else(|| not_found("group", group))?;
                    let removed = tx.remove_member(group, member).await?;
                    if !removed {
                        return Err(not_found("membership", member.target()));
                    }
                    let mut e = event(&caller, Action::GroupMemberRemove, group);
                    e.details = json!({ "member": member.target() });
                    tx.audit(e);
                    Ok(removed)
                })
            })
            .await
    }

    pub async fn list_members(&self, by: &Authorized<Admin>, group: GroupId) -> Result<Vec<Member>> {
        let target = Some(group.target());
        let result: Result<Vec<Member>> = async {
            let mut r = self.store.read().await?;
            r.get_group(group).await?.ok_or_else(|| not_found("group", group))?;
            Ok(r.list_members(group).await?)
        }
        .await;
        self.recorded(by.caller(), "list_members", target, result).await
    }

    pub async fn create_service_account(
        &self,
        by: &Authorized<Admin>,
        input: NewServiceAccount,
    ) -> Result<Committed<ServiceAccount>> {
        input.validate()?;
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    check_owner(tx, input.owner_id).await?;
                    let now = tx.now();
                    let sa = ServiceAccount {
                        id: ServiceAccountId::generate(),
                        name: input.name,
                        description: input.description,
                        owner_id: input.owner_id,
                        status: ServiceAccountStatus::Active,
                        created_at: now,
                        updated_at: now,
                        version: 1,
                    };
                    tx.insert_service_account(&sa).await?;
                    let mut e = event(&caller, Action::ServiceAccountCreate, sa.id);
                    e.details = json!({ "name": sa.name, "owner": sa.owner_id.target() });
                    tx.audit(e);
                    Ok(sa)
                })
            })
            .await
    }

    pub async fn get_service_account(&self, by: &Authorized<Admin>, id: ServiceAccountId) -> Result<ServiceAccount> {
        let target = Some(id.target());
        let result: Result<ServiceAccount> = async {
            self.store.read().await?.get_service_account(id).await?.ok_or_else(|| not_found("service_account", id))
        }
        .await;
        self.recorded(by.caller(), "get_service_account", target, result).await
    }

    pub async fn list_service_accounts(
        &self,
        by: &Authorized<Admin>,
        page: PageRequest,
    ) -> Result<Paged<ServiceAccount>> {
        let target = None;
        let result: Result<Paged<ServiceAccount>> = async {
            let page = page.to_store();
            let items = self.store.read().await?.list_service_accounts(&page).await?;
            Ok(Paged::new(items, page.limit, |s| s.id.to_string()))
        }
        .await;
        self.recorded(by.caller(), "list_service_accounts", target, result).await
    }

    pub async fn update_service_account(
        &self,
        by: &Authorized<Admin>,
        id: ServiceAccountId,
        input: ServiceAccountUpdate,
    ) -> Result<Committed<ServiceAccount>> {
        input.validate()?;
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let mut sa = tx.get_service_account(id).await?.ok_or_else(|| not_found("service_account", id))?;
                    let before = sa.clone();
                    if let Some(owner) = input.owner_id {
                        check_owner(tx, owner).await?;
                        sa.owner_id = owner;
                    }
                    if let Some(d) = input.description {
                        sa.description = Some(d);
                    }
                    if let Some(s) = input.status {
                        sa.status = s;
                    }
                    sa.updated_at = tx.now();
                    let sa = tx.update_service_account(&sa, input.version).await?;
                    let mut e = event(&caller, Action::ServiceAccountUpdate, id);
                    e.details = json!({ "owner_before": before.owner_id.target(), "owner_after": sa.owner_id.target(), "status": sa.status });
                    tx.audit(e);
                    if sa.status == ServiceAccountStatus::Disabled && before.status != ServiceAccountStatus::Disabled {
                        revoke_everything(tx, &caller, Subject::ServiceAccount(id), "service account disabled").await?;
                        leave_all_groups(tx, &caller, Member::ServiceAccount(id), "service account disabled").await?;
                        let owner = wardkey_domain::TokenOwner::ServiceAccount(id);
                        crate::tokens::revoke_owner_tokens_in_tx(tx, &caller, &owner, "service account disabled").await?;
                    }
                    Ok(sa)
                })
            })
            .await
    }

    pub async fn delete_service_account(
        &self,
        by: &Authorized<Admin>,
        id: ServiceAccountId,
        version: i64,
    ) -> Result<Committed<()>> {
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    tx.get_service_account(id).await?.ok_or_else(|| not_found("service_account", id))?;
                    revoke_everything(tx, &caller, Subject::ServiceAccount(id), "service account deleted").await?;
                    leave_all_groups(tx, &caller, Member::ServiceAccount(id), "service account deleted").await?;
                    let owner = wardkey_domain::TokenOwner::ServiceAccount(id);
                    crate::tokens::revoke_owner_tokens_in_tx(tx, &caller, &owner, "service account deleted").await?;
                    tx.delete_service_account(id, version).await?;
                    tx.audit(event(&caller, Action::ServiceAccountDelete, id));
                    Ok(())
                })
            })
            .await
    }
}

/// A service account's owner must be a person who is not terminated.
async fn check_owner(tx: &mut WriteTx, owner: UserId) -> Result<()> {
    let user = tx.get_user(owner).await?.ok_or_else(|| ServiceError::invalid("owner_id", "no such user"))?;
    if user.status == UserStatus::Disabled {
        return Err(ServiceError::invalid("owner_id", "the owner is disabled; choose an active person"));
    }
    Ok(())
}
