//! The shared handle: the current snapshot behind an `ArcSwap`, and the writer's mutex.

use crate::search::{Found, Page, ResourceAccess, SubjectAccess};
use crate::{
    ActionAccess, AuthzError, Change, Decision, Records, Request, RequestContext, ResourceRef, Snapshot, SubjectRef,
};
use arc_swap::ArcSwap;
use std::sync::{Arc, Mutex, PoisonError};
use wardkey_domain::{
    ForbidRule, ForbidRuleId, Grant, GrantId, Group, GroupId, Member, Resource, ResourceId, ResourceType,
    ResourceTypeId, Role, RoleId, ServiceAccount, ServiceAccountId, User, UserId,
};

/// The decision index. Cloning shares it: every clone sees the same snapshots.
///
/// Reads ([`Index::evaluate`], [`Index::check`], the searches) load the current snapshot
/// without waiting for anything. Writes are serialised among themselves and publish a new
/// snapshot atomically when they return; a batch ([`Index::apply`]) publishes once.
#[derive(Clone)]
pub struct Index {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").field("current", &*self.shared.current.load()).finish()
    }
}

struct Shared {
    current: ArcSwap<Snapshot>,
    /// Taken only by writers, so that two batches cannot both start from the same snapshot
    /// and lose one another's changes. Readers never touch it.
    writer: Mutex<()>,
}

impl Default for Index {
    fn default() -> Self {
        Index::new()
    }
}

impl Index {
    /// An empty index at revision 0 (denies everything).
    pub fn new() -> Index {
        Index::from_snapshot(Snapshot::empty())
    }

    /// The index of a full set of records (start-up).
    pub fn build(records: Records) -> Index {
        Index::from_snapshot(Snapshot::build(records))
    }

    fn from_snapshot(s: Snapshot) -> Index {
        Index { shared: Arc::new(Shared { current: ArcSwap::from_pointee(s), writer: Mutex::new(()) }) }
    }

    /// The current snapshot, to answer several questions from one consistent state.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.current.load_full()
    }

    pub fn revision(&self) -> u64 {
        self.shared.current.load().revision()
    }

    pub fn evaluate(&self, req: &Request<'_>) -> Decision {
        self.shared.current.load().evaluate(req)
    }

    pub fn check(&self, req: &Request<'_>) -> bool {
        self.shared.current.load().check(req)
    }

    pub fn subjects_with_access(
        &self,
        resource: &ResourceRef<'_>,
        action: &str,
        ctx: &RequestContext,
        page: Page,
    ) -> Result<Found<SubjectAccess>, AuthzError> {
        self.shared.current.load().subjects_with_access(resource, action, ctx, page)
    }

    pub fn resources_for(
        &self,
        subject: &SubjectRef<'_>,
        type_name: Option<&str>,
        action: Option<&str>,
        ctx: &RequestContext,
        page: Page,
    ) -> Result<Found<ResourceAccess>, AuthzError> {
        self.shared.current.load().resources_for(subject, type_name, action, ctx, page)
    }

    pub fn actions_for(
        &self,
        subject: &SubjectRef<'_>,
        resource: &ResourceRef<'_>,
        ctx: &RequestContext,
    ) -> Result<Found<ActionAccess>, AuthzError> {
        self.shared.current.load().actions_for(subject, resource, ctx)
    }

    /// Applies a batch of changes (one store transaction, say) and publishes the result as one
    /// snapshot: readers see all of the batch or none of it. Put a [`Change::SetRevision`] in
    /// the batch so that the data and its revision appear together.
    pub fn apply(&self, changes: impl IntoIterator<Item = Change>) {
        // A writer that panicked published nothing (the snapshot is swapped in only at the
        // end), so the state behind a poisoned lock is still the last good one.
        let _writer = self.shared.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = Snapshot::clone(&self.shared.current.load());
        for c in changes {
            next.apply_change(c);
        }
        self.shared.current.store(Arc::new(next));
    }

    /// Replaces everything with a fresh build (start-up, or after the store was restored).
    /// The records are read outside any lock here, so the caller orders this with its own
    /// [`Index::apply`] calls (a replace built from older records would undo a newer apply).
    pub fn replace(&self, records: Records) {
        let next = Snapshot::build(records);
        let _writer = self.shared.writer.lock().unwrap_or_else(PoisonError::into_inner);
        self.shared.current.store(Arc::new(next));
    }

    pub fn set_revision(&self, revision: u64) {
        self.apply([Change::SetRevision(revision)]);
    }

    pub fn upsert_user(&self, user: User) {
        self.apply([Change::UpsertUser(user)]);
    }
    pub fn remove_user(&self, id: UserId) {
        self.apply([Change::RemoveUser(id)]);
    }
    pub fn upsert_service_account(&self, sa: ServiceAccount) {
        self.apply([Change::UpsertServiceAccount(sa)]);
    }
    pub fn remove_service_account(&self, id: ServiceAccountId) {
        self.apply([Change::RemoveServiceAccount(id)]);
    }
    pub fn upsert_group(&self, group: Group) {
        self.apply([Change::UpsertGroup(group)]);
    }
    pub fn remove_group(&self, id: GroupId) {
        self.apply([Change::RemoveGroup(id)]);
    }
    pub fn set_group_members(&self, group: GroupId, members: Vec<Member>) {
        self.apply([Change::SetGroupMembers { group, members }]);
    }
    pub fn add_member(&self, group: GroupId, member: Member) {
        self.apply([Change::AddMember { group, member }]);
    }
    pub fn remove_member(&self, group: GroupId, member: Member) {
        self.apply([Change::RemoveMember { group, member }]);
    }
    pub fn upsert_resource_type(&self, t: ResourceType) {
        self.apply([Change::UpsertResourceType(t)]);
    }
    pub fn remove_resource_type(&self, id: ResourceTypeId) {
        self.apply([Change::RemoveResourceType(id)]);
    }
    pub fn upsert_resource(&self, r: Resource) {
        self.apply([Change::UpsertResource(r)]);
    }
    pub fn remove_resource(&self, id: ResourceId) {
        self.apply([Change::RemoveResource(id)]);
    }
    pub fn upsert_role(&self, role: Role) {
        self.apply([Change::UpsertRole(role)]);
    }
    pub fn remove_role(&self, id: RoleId) {
        self.apply([Change::RemoveRole(id)]);
    }
    pub fn upsert_grant(&self, grant: Grant) {
        self.apply([Change::UpsertGrant(grant)]);
    }
    pub fn remove_grant(&self, id: GrantId) {
        self.apply([Change::RemoveGrant(id)]);
    }
    pub fn upsert_forbid_rule(&self, rule: ForbidRule) {
        self.apply([Change::UpsertForbidRule(rule)]);
    }
    pub fn remove_forbid_rule(&self, id: ForbidRuleId) {
        self.apply([Change::RemoveForbidRule(id)]);
    }
}

impl Snapshot {
    /// A snapshot of a full set of records.
    pub fn build(records: Records) -> Snapshot {
        let mut s = Snapshot::empty();
        for c in records.into_changes() {
            s.apply_change(c);
        }
        s
    }

    /// This snapshot with `changes` applied (the snapshot itself is unchanged).
    pub fn with_changes(&self, changes: impl IntoIterator<Item = Change>) -> Snapshot {
        let mut next = self.clone();
        for c in changes {
            next.apply_change(c);
        }
        next
    }
}
