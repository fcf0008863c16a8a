//! Changes to the index. Each one touches only the slots and lists it concerns (O(log n) in
//! the persistent structures), whatever order they come in: a record may name another that
//! arrives later in the same batch.

use crate::flat::{IdMap, IxSet, Slots};
use crate::model::{
    Cond, ForbidRec, GrantRec, GroupRec, Holder, Member, PermRec, ResRec, RoleRec, SaRec, TypeRec, UserRec, When, key,
    parse_networks, sorted_unique, uuid_text,
};
use crate::snapshot::{Held, NameMap, Snapshot};
use imbl::OrdSet;
use std::hash::Hash;
use std::sync::Arc;
use wardkey_domain::{
    ForbidRule, ForbidRuleId, ForbidWhen, Grant, GrantId, Group, GroupId, Member as DomainMember, Resource, ResourceId,
    ResourceType, ResourceTypeId, Role, RoleId, ServiceAccount, ServiceAccountId, ServiceAccountStatus, Subject, User,
    UserId,
};

/// One change to the index. Removing something removes its record and the memberships it
/// takes part in; grants naming it stay but are inert (they apply again if it comes back).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    UpsertUser(User),
    RemoveUser(UserId),
    UpsertServiceAccount(ServiceAccount),
    RemoveServiceAccount(ServiceAccountId),
    UpsertGroup(Group),
    RemoveGroup(GroupId),
    /// Replaces the group's members.
    SetGroupMembers {
        group: GroupId,
        members: Vec<DomainMember>,
    },
    AddMember {
        group: GroupId,
        member: DomainMember,
    },
    RemoveMember {
        group: GroupId,
        member: DomainMember,
    },
    UpsertResourceType(ResourceType),
    RemoveResourceType(ResourceTypeId),
    UpsertResource(Resource),
    RemoveResource(ResourceId),
    UpsertRole(Role),
    RemoveRole(RoleId),
    /// A revoked grant is removed.
    UpsertGrant(Grant),
    RemoveGrant(GrantId),
    UpsertForbidRule(ForbidRule),
    RemoveForbidRule(ForbidRuleId),
    /// The store revision the snapshot reflects once the batch is applied.
    SetRevision(u64),
}

/// Everything the index is built from at start-up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Records {
    pub revision: u64,
    pub users: Vec<User>,
    pub service_accounts: Vec<ServiceAccount>,
    pub groups: Vec<Group>,
    pub memberships: Vec<(GroupId, DomainMember)>,
    pub resource_types: Vec<ResourceType>,
    pub resources: Vec<Resource>,
    pub roles: Vec<Role>,
    pub grants: Vec<Grant>,
    pub forbid_rules: Vec<ForbidRule>,
}

impl Records {
    /// The records as changes, in an order that compiles each role once (types first).
    pub fn into_changes(self) -> impl Iterator<Item = Change> {
        let Records {
            revision,
            users,
            service_accounts,
            groups,
            memberships,
            resource_types,
            resources,
            roles,
            grants,
            forbid_rules,
        } = self;
        resource_types
            .into_iter()
            .map(Change::UpsertResourceType)
            .chain(roles.into_iter().map(Change::UpsertRole))
            .chain(users.into_iter().map(Change::UpsertUser))
            .chain(service_accounts.into_iter().map(Change::UpsertServiceAccount))
            .chain(groups.into_iter().map(Change::UpsertGroup))
            .chain(memberships.into_iter().map(|(group, member)| Change::AddMember { group, member }))
            .chain(resources.into_iter().map(Change::UpsertResource))
            .chain(grants.into_iter().map(Change::UpsertGrant))
            .chain(forbid_rules.into_iter().map(Change::UpsertForbidRule))
            .chain(std::iter::once(Change::SetRevision(revision)))
    }
}

/// The slot of `id`, made if new. `None` only past `u32::MAX` records of one kind, when the
/// change is dropped rather than aliased onto another record.
fn intern<K, S>(map: &mut IdMap<K>, slots: &mut Slots<S>, id: K) -> Option<u32>
where
    K: Hash + Eq + Clone,
    S: Clone + Default,
{
    if let Some(ix) = map.get(&id) {
        return Some(*ix);
    }
    let ix = u32::try_from(slots.len()).ok()?;
    slots.push_back(S::default());
    map.insert(id, ix);
    Some(ix)
}

fn slot_mut<S: Clone + Default>(slots: &mut Slots<S>, ix: u32) -> Option<&mut S> {
    slots.get_mut(ix as usize)
}

fn name_add(names: &mut NameMap, key: &Arc<str>, ix: u32) {
    names.entry(key.clone()).or_default().insert(ix);
}

fn name_remove(names: &mut NameMap, key: &Arc<str>, ix: u32) {
    if let Some(set) = names.get_mut(key.as_ref()) {
        set.remove(&ix);
        if set.is_empty() {
            names.remove(key.as_ref());
        }
    }
}

impl Snapshot {
    pub(crate) fn apply_change(&mut self, change: Change) {
        match change {
            Change::UpsertUser(u) => self.upsert_user(u),
            Change::RemoveUser(id) => self.remove_user(id),
            Change::UpsertServiceAccount(s) => self.upsert_sa(s),
            Change::RemoveServiceAccount(id) => self.remove_sa(id),
            Change::UpsertGroup(g) => self.upsert_group(g),
            Change::RemoveGroup(id) => self.remove_group(id),
            Change::SetGroupMembers { group, members } => self.set_members(group, members),
            Change::AddMember { group, member } => {
                if let (Some(g), Some(m)) = (self.group_slot(group), self.member_slot(member)) {
                    self.link(g, m);
                }
            }
            Change::RemoveMember { group, member } => {
                if let (Some(g), Some(m)) = (self.group_ix.get(&group).copied(), self.existing_member(member)) {
                    self.unlink(g, m);
                }
            }
            Change::UpsertResourceType(t) => self.upsert_type(t),
            Change::RemoveResourceType(id) => self.remove_type(id),
            Change::UpsertResource(r) => self.upsert_resource(r),
            Change::RemoveResource(id) => self.remove_resource(id),
            Change::UpsertRole(r) => self.upsert_role(r),
            Change::RemoveRole(id) => self.remove_role(id),
            Change::UpsertGrant(g) => self.upsert_grant(g),
            Change::RemoveGrant(id) => self.remove_grant(id),
            Change::UpsertForbidRule(f) => self.upsert_forbid(f),
            Change::RemoveForbidRule(id) => {
                self.forbids.remove(&id);
            }
            Change::SetRevision(r) => self.revision = r,
        }
    }

    fn group_slot(&mut self, id: GroupId) -> Option<u32> {
        intern(&mut self.group_ix, &mut self.groups, id)
    }

    fn member_slot(&mut self, m: DomainMember) -> Option<Member> {
        match m {
            DomainMember::User(id) => intern(&mut self.user_ix, &mut self.users, id).map(Member::User),
            DomainMember::ServiceAccount(id) => intern(&mut self.sa_ix, &mut self.sas, id).map(Member::Sa),
        }
    }

    fn existing_member(&self, m: DomainMember) -> Option<Member> {
        match m {
            DomainMember::User(id) => self.user_ix.get(&id).copied().map(Member::User),
            DomainMember::ServiceAccount(id) => self.sa_ix.get(&id).copied().map(Member::Sa),
        }
    }

    fn member_groups_mut(&mut self, m: Member) -> Option<&mut IxSet> {
        match m {
            Member::User(ix) => slot_mut(&mut self.users, ix).map(|s| &mut s.groups),
            Member::Sa(ix) => slot_mut(&mut self.sas, ix).map(|s| &mut s.groups),
        }
    }

    fn link(&mut self, group: u32, m: Member) {
        if let Some(g) = slot_mut(&mut self.groups, group) {
            g.members.insert(m);
        }
        if let Some(groups) = self.member_groups_mut(m) {
            groups.insert(group);
        }
    }

    fn unlink(&mut self, group: u32, m: Member) {
        if let Some(g) = slot_mut(&mut self.groups, group) {
            g.members.remove(&m);
        }
        if let Some(groups) = self.member_groups_mut(m) {
            groups.remove(&group);
        }
    }

    /// Drops every membership of a member that is going away.
    fn unlink_member(&mut self, m: Member) {
        let groups = self.member_groups_mut(m).map(std::mem::take).unwrap_or_default();
        for &g in groups.iter() {
            if let Some(gs) = slot_mut(&mut self.groups, g) {
                gs.members.remove(&m);
            }
        }
    }

    fn set_members(&mut self, group: GroupId, members: Vec<DomainMember>) {
        let Some(g) = self.group_slot(group) else { return };
        let wanted: OrdSet<Member> = members.into_iter().filter_map(|m| self.member_slot(m)).collect();
        let current = self.groups.get(g as usize).map(|s| s.members.clone()).unwrap_or_default();
        for m in current.iter().filter(|m| !wanted.contains(*m)) {
            self.unlink(g, *m);
        }
        for m in wanted.iter().filter(|m| !current.contains(*m)) {
            self.link(g, *m);
        }
    }

    fn upsert_user(&mut self, u: User) {
        let Some(ix) = intern(&mut self.user_ix, &mut self.users, u.id) else { return };
        let rec = Arc::new(UserRec {
            id: u.id,
            id_text: uuid_text(&u.id.0),
            key: key(&u.username),
            username: u.username.into(),
            status: u.status,
            email: u.email.map(Into::into),
            department: u.hr.department.map(Into::into),
            job_code: u.hr.job_code.map(Into::into),
            title: u.hr.title.map(Into::into),
            employment_type: u.hr.employment_type,
        });
        let Some(slot) = slot_mut(&mut self.users, ix) else { return };
        if let Some(old) = slot.set_rec(Some(rec.clone())) {
            name_remove(&mut self.user_names, &old.key, ix);
        }
        name_add(&mut self.user_names, &rec.key, ix);
    }

    fn remove_user(&mut self, id: UserId) {
        let Some(ix) = self.user_ix.get(&id).copied() else { return };
        if let Some(old) = slot_mut(&mut self.users, ix).and_then(|s| s.set_rec(None)) {
            name_remove(&mut self.user_names, &old.key, ix);
        }
        self.unlink_member(Member::User(ix));
    }

    fn upsert_sa(&mut self, s: ServiceAccount) {
        let Some(ix) = intern(&mut self.sa_ix, &mut self.sas, s.id) else { return };
        let rec = Arc::new(SaRec {
            id: s.id,
            id_text: uuid_text(&s.id.0),
            name: s.name.into(),
            active: s.status == ServiceAccountStatus::Active,
        });
        if let Some(slot) = slot_mut(&mut self.sas, ix) {
            slot.set_rec(Some(rec));
        }
    }

    fn remove_sa(&mut self, id: ServiceAccountId) {
        let Some(ix) = self.sa_ix.get(&id).copied() else { return };
        if let Some(slot) = slot_mut(&mut self.sas, ix) {
            slot.set_rec(None);
        }
        self.unlink_member(Member::Sa(ix));
    }

    fn upsert_group(&mut self, g: Group) {
        let Some(ix) = self.group_slot(g.id) else { return };
        let rec = Arc::new(GroupRec { id: g.id, key: key(&g.name), name: g.name.into() });
        if let Some(slot) = slot_mut(&mut self.groups, ix) {
            slot.rec = Some(rec);
        }
    }

    fn remove_group(&mut self, id: GroupId) {
        let Some(ix) = self.group_ix.get(&id).copied() else { return };
        let members = match slot_mut(&mut self.groups, ix) {
            Some(slot) => {
                slot.rec = None;
                std::mem::take(&mut slot.members)
            }
            None => return,
        };
        for m in members {
            if let Some(groups) = self.member_groups_mut(m) {
                groups.remove(&ix);
            }
        }
    }

    fn tname_slot(&mut self, name: &str) -> Option<u32> {
        intern(&mut self.tname_ix, &mut self.tnames, key(name))
    }

    fn upsert_type(&mut self, t: ResourceType) {
        let Some(ix) = intern(&mut self.type_ix, &mut self.types, t.id) else { return };
        let Some(tname) = self.tname_slot(&t.name) else { return };
        let rec = Arc::new(TypeRec { id: t.id, name: t.name.into(), tname, actions: sorted_unique(&t.actions) });
        let old = slot_mut(&mut self.types, ix).and_then(|s| s.rec.replace(rec));
        if let Some(old) = old
            && old.tname != tname
        {
            if let Some(ts) = slot_mut(&mut self.tnames, old.tname) {
                ts.types.remove(&ix);
            }
            self.recompile_roles(old.tname);
        }
        if let Some(ts) = slot_mut(&mut self.tnames, tname) {
            ts.types.insert(ix);
        }
        self.recompile_roles(tname);
    }

    fn remove_type(&mut self, id: ResourceTypeId) {
        let Some(ix) = self.type_ix.get(&id).copied() else { return };
        let Some(old) = slot_mut(&mut self.types, ix).and_then(|s| s.rec.take()) else { return };
        if let Some(ts) = slot_mut(&mut self.tnames, old.tname) {
            ts.types.remove(&ix);
        }
        self.recompile_roles(old.tname);
    }

    /// Action bits are positions in the type's action list, so a role's masks follow the type
    /// its permission names: recomputed when that type appears, changes or goes.
    fn recompile_roles(&mut self, tname: u32) {
        let roles = self.tnames.get(tname as usize).map(|s| s.roles.clone()).unwrap_or_default();
        for r in roles {
            let Some(old) = self.role(r) else { continue };
            let perms: Box<[PermRec]> =
                old.perms.iter().map(|p| PermRec { mask: self.mask(p.tname, &p.actions), ..p.clone() }).collect();
            let rec =
                Arc::new(RoleRec { id: old.id, name: old.name.clone(), perms, conditions: old.conditions.clone() });
            if let Some(slot) = slot_mut(&mut self.roles, r) {
                slot.rec = Some(rec);
            }
        }
    }

    fn mask(&self, tname: u32, actions: &[Box<str>]) -> u64 {
        self.type_of_tname(tname).map_or(0, |ty| ty.mask_of(actions.iter().map(|a| a.as_ref())))
    }

    fn upsert_role(&mut self, role: Role) {
        let Some(ix) = intern(&mut self.role_ix, &mut self.roles, role.id) else { return };
        let mut by_tname: std::collections::BTreeMap<u32, Vec<String>> = std::collections::BTreeMap::new();
        for p in role.permissions {
            let Some(tname) = self.tname_slot(&p.resource_type) else { continue };
            by_tname.entry(tname).or_default().extend(p.actions);
        }
        let perms: Box<[PermRec]> = by_tname
            .into_iter()
            .map(|(tname, actions)| {
                let actions = sorted_unique(&actions);
                PermRec { tname, mask: self.mask(tname, &actions), actions }
            })
            .collect();
        let new_tnames: Vec<u32> = perms.iter().map(|p| p.tname).collect();
        let rec = Arc::new(RoleRec {
            id: role.id,
            name: role.name.into(),
            perms,
            conditions: Cond::compile(&role.conditions),
        });
        let old = slot_mut(&mut self.roles, ix).and_then(|s| s.rec.replace(rec));
        if let Some(old) = old {
            for p in old.perms.iter().filter(|p| !new_tnames.contains(&p.tname)) {
                if let Some(ts) = slot_mut(&mut self.tnames, p.tname) {
                    ts.roles.remove(&ix);
                }
            }
        }
        for t in new_tnames {
            if let Some(ts) = slot_mut(&mut self.tnames, t) {
                ts.roles.insert(ix);
            }
        }
    }

    fn remove_role(&mut self, id: RoleId) {
        let Some(ix) = self.role_ix.get(&id).copied() else { return };
        let Some(old) = slot_mut(&mut self.roles, ix).and_then(|s| s.rec.take()) else { return };
        for p in old.perms.iter() {
            if let Some(ts) = slot_mut(&mut self.tnames, p.tname) {
                ts.roles.remove(&ix);
            }
        }
    }

    fn upsert_resource(&mut self, r: Resource) {
        let Some(ix) = intern(&mut self.resource_ix, &mut self.resources, r.id) else { return };
        let parent = match r.parent_id {
            Some(p) => match intern(&mut self.resource_ix, &mut self.resources, p) {
                Some(p) => Some(p),
                None => return,
            },
            None => None,
        };
        let rec = Arc::new(ResRec {
            id: r.id,
            type_id: r.type_id,
            key: key(&r.name),
            name: r.name.into(),
            parent,
            attributes: r.attributes,
        });
        self.detach_resource(ix);
        if let Some(p) = parent
            && let Some(ps) = slot_mut(&mut self.resources, p)
        {
            ps.children.insert(ix);
        }
        let mut names = self.resource_names.get(&rec.type_id).cloned().unwrap_or_default();
        name_add(&mut names, &rec.key, ix);
        self.resource_names.insert(rec.type_id, names);
        if let Some(slot) = slot_mut(&mut self.resources, ix) {
            slot.parent = rec.parent;
            slot.rec = Some(rec);
        }
    }

    fn remove_resource(&mut self, id: ResourceId) {
        let Some(ix) = self.resource_ix.get(&id).copied() else { return };
        self.detach_resource(ix);
        if let Some(slot) = slot_mut(&mut self.resources, ix) {
            slot.rec = None;
            slot.parent = None;
        }
    }

    /// Takes a resource out of its parent's children and the name index (its record stays).
    fn detach_resource(&mut self, ix: u32) {
        let Some(old) = self.resource(ix).map(|r| (r.parent, r.type_id, r.key.clone())) else { return };
        let (parent, type_id, key) = old;
        if let Some(p) = parent
            && let Some(ps) = slot_mut(&mut self.resources, p)
        {
            ps.children.remove(&ix);
        }
        if let Some(mut names) = self.resource_names.get(&type_id).cloned() {
            name_remove(&mut names, &key, ix);
            if names.is_empty() {
                self.resource_names.remove(&type_id);
            } else {
                self.resource_names.insert(type_id, names);
            }
        }
    }

    fn holder_slot(&mut self, s: Subject) -> Option<Holder> {
        match s {
            Subject::User(id) => intern(&mut self.user_ix, &mut self.users, id).map(Holder::User),
            Subject::ServiceAccount(id) => intern(&mut self.sa_ix, &mut self.sas, id).map(Holder::Sa),
            Subject::Group(id) => self.group_slot(id).map(Holder::Group),
        }
    }

    /// The holder's grant slots and the records of those grants.
    fn holder_grants_mut(&mut self, h: Holder) -> Option<(&mut OrdSet<u32>, &mut Held)> {
        match h {
            Holder::User(ix) => slot_mut(&mut self.users, ix).map(|s| (&mut s.grants, &mut s.held)),
            Holder::Sa(ix) => slot_mut(&mut self.sas, ix).map(|s| (&mut s.grants, &mut s.held)),
            Holder::Group(ix) => slot_mut(&mut self.groups, ix).map(|s| (&mut s.grants, &mut s.held)),
        }
    }

    fn upsert_grant(&mut self, g: Grant) {
        if g.revoked_at.is_some() {
            self.remove_grant(g.id);
            return;
        }
        let Some(holder) = self.holder_slot(g.subject) else { return };
        let Some(role) = intern(&mut self.role_ix, &mut self.roles, g.role_id) else { return };
        let scope = match g.resource_id {
            Some(r) => match intern(&mut self.resource_ix, &mut self.resources, r) {
                Some(ix) => Some(ix),
                None => return,
            },
            None => None,
        };
        let rec = GrantRec {
            id: g.id,
            holder,
            role,
            scope,
            source: g.source,
            starts_at: g.starts_at,
            expires_at: g.expires_at,
            conditions: Cond::compile(&g.conditions),
        };
        let ix = match self.grant_ix.get(&g.id).copied() {
            Some(ix) => {
                self.detach_grant(ix);
                ix
            }
            None => {
                let ix = match self.free_grants.pop_back() {
                    Some(ix) => ix,
                    None => match u32::try_from(self.grants.len()) {
                        Ok(ix) => {
                            self.grants.push_back(None);
                            ix
                        }
                        Err(_) => return,
                    },
                };
                self.grant_ix.insert(g.id, ix);
                ix
            }
        };
        if let Some((grants, held)) = self.holder_grants_mut(holder) {
            grants.insert(ix);
            Arc::make_mut(held).push(rec.clone());
        }
        if let Some(rs) = slot_mut(&mut self.roles, role) {
            rs.grants.insert(ix);
        }
        if let Some(slot) = slot_mut(&mut self.grants, ix) {
            *slot = Some(rec);
        }
    }

    fn remove_grant(&mut self, id: GrantId) {
        let Some(ix) = self.grant_ix.remove(&id) else { return };
        self.detach_grant(ix);
        if let Some(slot) = slot_mut(&mut self.grants, ix) {
            *slot = None;
        }
        self.free_grants.push_back(ix);
    }

    /// Takes a grant out of its holder's and its role's lists.
    fn detach_grant(&mut self, ix: u32) {
        let Some((holder, role, id)) = self.grant(ix).map(|g| (g.holder, g.role, g.id)) else { return };
        if let Some((grants, held)) = self.holder_grants_mut(holder) {
            grants.remove(&ix);
            if held.iter().any(|g| g.id == id) {
                Arc::make_mut(held).retain(|g| g.id != id);
            }
        }
        if let Some(rs) = slot_mut(&mut self.roles, role) {
            rs.grants.remove(&ix);
        }
    }

    fn upsert_forbid(&mut self, f: ForbidRule) {
        let mut types: Vec<u32> = f.resource_types.iter().filter_map(|t| self.tname_slot(t)).collect();
        types.sort_unstable();
        types.dedup();
        let when = match f.when {
            ForbidWhen::Always => When::Always,
            ForbidWhen::DeviceTrustBelow { min } => When::DeviceBelow(min),
            ForbidWhen::NetworkOutside { networks } => When::NetworkOutside(parse_networks(&networks)),
            ForbidWhen::ResourceProperty { property, values, unless_group } => When::Property {
                property: property.into(),
                values: sorted_unique(&values),
                unless_group: unless_group.as_deref().map(key),
            },
        };
        let rec = ForbidRec {
            id: f.id,
            name: f.name.into(),
            // Empty lists mean every type or action. Names are interned whether or not a type
            // has them yet, so a rule naming a type created later applies to it then.
            types: (!f.resource_types.is_empty()).then(|| types.into_boxed_slice()),
            actions: (!f.actions.is_empty()).then(|| sorted_unique(&f.actions)),
            when,
        };
        self.forbids.insert(f.id, Arc::new(rec));
    }
}
