//! One immutable state of the index. Every record lives in a dense slot addressed by a `u32`
//! interned from its id; records refer to each other by those indices, so a record can arrive
//! before the ones it names (one store transaction may change many things, in any order) and
//! a reference to something absent is simply inert.
//!
//! All collections are persistent (`imbl`): cloning a snapshot is a handful of pointer copies,
//! and changing the clone copies only the path to what changed.

use crate::flat::{IdMap, IxSet, Slots};
use crate::model::{GrantRec, GroupRec, Member, ResRec, RoleRec, SaRec, TypeRec, UserRec, fold};
use crate::{MAX_RESOURCE_DEPTH, ResourceRef, SubjectKind, SubjectRef};
use imbl::{HashMap, OrdMap, OrdSet, Vector};
use std::hash::Hash;
use std::sync::Arc;
use wardkey_domain::{
    ForbidRuleId, GrantId, GroupId, ResourceId, ResourceTypeId, RoleId, ServiceAccountId, UserId, validate,
};

/// Requests name things with strings the index never stores longer than this; anything longer
/// is unknown without being looked at (and without being case-folded).
pub(crate) const MAX_NAME_BYTES: usize = 4 * validate::MAX_NAME;
/// Resource ids may be an application's own record ids; they only need to be recognised as
/// unregistered, so a longer bound than names.
pub(crate) const MAX_RESOURCE_ID_BYTES: usize = 1024;

/// The grants a holder holds, as records next to each other: a decision reads them in one
/// pass instead of looking each one up in `Snapshot::grants` (a persistent vector several
/// levels deep, and most of a decision's cache misses at scale). Kept equal to the holder's
/// `grants` list by every change (`Snapshot::verify` checks it). Shared between snapshots;
/// a change copies the one holder's list.
pub(crate) type Held = Arc<Vec<GrantRec>>;

#[derive(Debug)]
pub(crate) struct PrincipalSlot<R> {
    pub rec: Option<Arc<R>>,
    /// Whether `rec` may access anything, kept beside it so that a decision need not read the
    /// record (set only with it, through `set_rec`; `Snapshot::verify` checks it).
    pub active: bool,
    pub groups: IxSet,
    pub grants: OrdSet<u32>,
    pub held: Held,
}

// By hand: the derives would ask `R: Clone + Default`, which the shared record need not be.
impl<R> Clone for PrincipalSlot<R> {
    fn clone(&self) -> Self {
        PrincipalSlot {
            rec: self.rec.clone(),
            active: self.active,
            groups: self.groups.clone(),
            grants: self.grants.clone(),
            held: self.held.clone(),
        }
    }
}

impl<R> Default for PrincipalSlot<R> {
    fn default() -> Self {
        PrincipalSlot {
            rec: None,
            active: false,
            groups: IxSet::default(),
            grants: OrdSet::new(),
            held: Held::default(),
        }
    }
}

impl<R: crate::model::Principal> PrincipalSlot<R> {
    /// Sets the record and what is kept beside it; returns the record it replaces.
    pub fn set_rec(&mut self, rec: Option<Arc<R>>) -> Option<Arc<R>> {
        self.active = rec.as_deref().is_some_and(R::may_access);
        std::mem::replace(&mut self.rec, rec)
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct GroupSlot {
    pub rec: Option<Arc<GroupRec>>,
    pub members: OrdSet<Member>,
    pub grants: OrdSet<u32>,
    pub held: Held,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct TypeSlot {
    pub rec: Option<Arc<TypeRec>>,
}

/// Everything that goes by one (case-folded) resource type name: the live types with that
/// name (one, normally) and the roles whose permissions name it.
#[derive(Debug, Clone, Default)]
pub(crate) struct TnameSlot {
    pub types: OrdSet<u32>,
    pub roles: OrdSet<u32>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ResSlot {
    pub rec: Option<Arc<ResRec>>,
    /// `rec`'s parent, kept beside it so that the ancestor walk of every decision reads the
    /// slots alone (set with `rec`, `Snapshot::verify` checks it).
    pub parent: Option<u32>,
    /// Live resources whose parent is this one.
    pub children: OrdSet<u32>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct RoleSlot {
    pub rec: Option<Arc<RoleRec>>,
    pub grants: OrdSet<u32>,
}

/// Case-folded name → the live records with that name.
pub(crate) type NameMap = HashMap<Arc<str>, OrdSet<u32>>;

/// An immutable state of the index: what one decision reads from start to end.
#[derive(Clone, Default)]
pub struct Snapshot {
    pub(crate) revision: u64,

    pub(crate) users: Slots<PrincipalSlot<UserRec>>,
    pub(crate) user_ix: IdMap<UserId>,
    pub(crate) user_names: NameMap,

    pub(crate) sas: Slots<PrincipalSlot<SaRec>>,
    pub(crate) sa_ix: IdMap<ServiceAccountId>,

    pub(crate) groups: Slots<GroupSlot>,
    pub(crate) group_ix: IdMap<GroupId>,

    pub(crate) types: Slots<TypeSlot>,
    pub(crate) type_ix: IdMap<ResourceTypeId>,
    pub(crate) tnames: Slots<TnameSlot>,
    pub(crate) tname_ix: IdMap<Arc<str>>,

    pub(crate) resources: Slots<ResSlot>,
    pub(crate) resource_ix: IdMap<ResourceId>,
    /// Per resource type id: folded resource name → live resources of that type so named.
    pub(crate) resource_names: HashMap<ResourceTypeId, NameMap>,

    pub(crate) roles: Slots<RoleSlot>,
    pub(crate) role_ix: IdMap<RoleId>,

    /// Grants are referenced only from the holder and role lists, which are cleaned when a
    /// grant goes, so grant slots are recycled (revoked grants accumulate otherwise).
    pub(crate) grants: Slots<Option<GrantRec>>,
    pub(crate) grant_ix: IdMap<GrantId>,
    pub(crate) free_grants: Vector<u32>,

    /// Few, and ordered by id so that reasons come out in a stable order.
    pub(crate) forbids: OrdMap<ForbidRuleId, Arc<crate::model::ForbidRec>>,
}

// By hand: a derived Debug would print every record of a hospital into one log line.
impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("revision", &self.revision)
            .field("user_slots", &self.users.len())
            .field("group_slots", &self.groups.len())
            .field("resource_slots", &self.resources.len())
            .field("role_slots", &self.roles.len())
            .field("grant_slots", &self.grants.len())
            .field("forbid_rules", &self.forbids.len())
            .finish()
    }
}

/// Counts of live records, for metrics and sizing (O(size of the index)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Stats {
    pub revision: u64,
    pub users: usize,
    pub service_accounts: usize,
    pub groups: usize,
    pub memberships: usize,
    pub resource_types: usize,
    pub resources: usize,
    pub roles: usize,
    pub grants: usize,
    pub forbid_rules: usize,
}

/// The resource a request is about and its ancestors, nearest first (no allocation).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chain {
    ixs: [u32; MAX_RESOURCE_DEPTH + 1],
    len: usize,
}

impl Chain {
    pub const EMPTY: Chain = Chain { ixs: [0; MAX_RESOURCE_DEPTH + 1], len: 0 };

    fn push(&mut self, ix: u32) -> bool {
        match self.ixs.get_mut(self.len) {
            Some(slot) => {
                *slot = ix;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    pub fn as_slice(&self) -> &[u32] {
        self.ixs.get(..self.len).unwrap_or(&[])
    }

    /// Whether a grant with this scope covers the resource.
    pub fn covered_by(&self, scope: Option<u32>) -> bool {
        match scope {
            None => true,
            Some(s) => self.as_slice().contains(&s),
        }
    }
}

/// The subject of a request, resolved.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Who<'s> {
    pub rec: WhoRec<'s>,
    pub active: bool,
    pub groups: &'s IxSet,
    pub held: &'s [GrantRec],
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum WhoRec<'s> {
    User(&'s UserRec),
    Sa(&'s SaRec),
}

impl Who<'_> {
    pub fn active(&self) -> bool {
        self.active
    }

    pub fn status(&self) -> &'static str {
        match self.rec {
            WhoRec::User(u) => u.status.as_str(),
            WhoRec::Sa(s) if s.active => "active",
            WhoRec::Sa(_) => "disabled",
        }
    }

    pub fn uuid(&self) -> uuid::Uuid {
        match self.rec {
            WhoRec::User(u) => u.id.0,
            WhoRec::Sa(s) => s.id.0,
        }
    }
}

pub(crate) fn slot<T>(v: &Slots<T>, ix: u32) -> Option<&T> {
    v.get(ix as usize)
}

/// The one live record among `ixs`, if there is exactly one.
fn unique<T, R>(ixs: &OrdSet<u32>, v: &Slots<T>, rec: impl Fn(&T) -> Option<&Arc<R>>) -> Option<u32> {
    let mut live = ixs.iter().filter(|ix| slot(v, **ix).and_then(&rec).is_some());
    let first = *live.next()?;
    live.next().is_none().then_some(first)
}

pub(crate) fn lookup<K: Hash + Eq + Clone>(map: &IdMap<K>, k: &K) -> Option<u32> {
    map.get(k).copied()
}

impl Snapshot {
    /// An empty index at revision 0: every request is denied.
    pub fn empty() -> Snapshot {
        Snapshot::default()
    }

    /// The revision the caller last set (the store's revision these records reflect).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn stats(&self) -> Stats {
        Stats {
            revision: self.revision,
            users: self.users.iter().filter(|s| s.rec.is_some()).count(),
            service_accounts: self.sas.iter().filter(|s| s.rec.is_some()).count(),
            groups: self.groups.iter().filter(|s| s.rec.is_some()).count(),
            memberships: self.groups.iter().map(|s| s.members.len()).sum(),
            resource_types: self.types.iter().filter(|s| s.rec.is_some()).count(),
            resources: self.resources.iter().filter(|s| s.rec.is_some()).count(),
            roles: self.roles.iter().filter(|s| s.rec.is_some()).count(),
            grants: self.grants.iter().filter(|s| s.is_some()).count(),
            forbid_rules: self.forbids.len(),
        }
    }

    pub(crate) fn user(&self, ix: u32) -> Option<&PrincipalSlot<UserRec>> {
        slot(&self.users, ix)
    }
    pub(crate) fn sa(&self, ix: u32) -> Option<&PrincipalSlot<SaRec>> {
        slot(&self.sas, ix)
    }
    pub(crate) fn group(&self, ix: u32) -> Option<&GroupRec> {
        slot(&self.groups, ix).and_then(|s| s.rec.as_deref())
    }
    pub(crate) fn resource(&self, ix: u32) -> Option<&ResRec> {
        slot(&self.resources, ix).and_then(|s| s.rec.as_deref())
    }
    pub(crate) fn role(&self, ix: u32) -> Option<&RoleRec> {
        slot(&self.roles, ix).and_then(|s| s.rec.as_deref())
    }
    pub(crate) fn grant(&self, ix: u32) -> Option<&GrantRec> {
        slot(&self.grants, ix).and_then(|g| g.as_ref())
    }

    pub(crate) fn who_member(&self, m: Member) -> Option<Who<'_>> {
        match m {
            Member::User(ix) => {
                let s = self.user(ix)?;
                let rec = s.rec.as_deref()?;
                Some(Who { rec: WhoRec::User(rec), active: s.active, groups: &s.groups, held: &s.held })
            }
            Member::Sa(ix) => {
                let s = self.sa(ix)?;
                let rec = s.rec.as_deref()?;
                Some(Who { rec: WhoRec::Sa(rec), active: s.active, groups: &s.groups, held: &s.held })
            }
        }
    }

    /// A user by UUID or by username (case-insensitive); a service account by UUID.
    pub(crate) fn resolve_subject(&self, s: &SubjectRef<'_>) -> Option<Who<'_>> {
        if s.id.is_empty() || s.id.len() > MAX_NAME_BYTES {
            return None;
        }
        let uuid = uuid::Uuid::parse_str(s.id).ok();
        match s.kind {
            SubjectKind::User => {
                let by_id = uuid.and_then(|u| lookup(&self.user_ix, &UserId(u)));
                if let Some(w) = by_id.and_then(|ix| self.who_member(Member::User(ix))) {
                    return Some(w);
                }
                let ixs = self.user_names.get(fold(s.id).as_ref())?;
                let ix = unique(ixs, &self.users, |slot| slot.rec.as_ref())?;
                self.who_member(Member::User(ix))
            }
            SubjectKind::ServiceAccount => {
                let ix = lookup(&self.sa_ix, &ServiceAccountId(uuid?))?;
                self.who_member(Member::Sa(ix))
            }
        }
    }

    /// The live resource type with this (case-insensitive) name, if exactly one.
    pub(crate) fn resolve_type(&self, name: &str) -> Option<&TypeRec> {
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return None;
        }
        let tname = *self.tname_ix.get(fold(name).as_ref())?;
        self.type_of_tname(tname)
    }

    pub(crate) fn type_of_tname(&self, tname: u32) -> Option<&TypeRec> {
        let ts = slot(&self.tnames, tname)?;
        let ix = unique(&ts.types, &self.types, |slot| slot.rec.as_ref())?;
        slot(&self.types, ix)?.rec.as_deref()
    }

    /// The registered resource of type `ty` the request names, if any.
    pub(crate) fn resolve_resource(&self, ty: &TypeRec, r: &ResourceRef<'_>) -> Option<u32> {
        let id = r.id?;
        if id.is_empty() || id.len() > MAX_RESOURCE_ID_BYTES {
            return None;
        }
        if let Ok(u) = uuid::Uuid::parse_str(id)
            && let Some(ix) = lookup(&self.resource_ix, &ResourceId(u))
            && self.resource(ix).is_some_and(|rec| rec.type_id == ty.id)
        {
            return Some(ix);
        }
        if id.len() > MAX_NAME_BYTES {
            return None;
        }
        let ixs = self.resource_names.get(&ty.id)?.get(fold(id).as_ref())?;
        unique(ixs, &self.resources, |slot| slot.rec.as_ref())
    }

    /// The stored attributes of the registered resource a chain starts at (none when the
    /// request named no registered resource, or it has no attributes).
    pub(crate) fn stored_attributes(&self, chain: &Chain) -> Option<&std::collections::BTreeMap<String, String>> {
        let ix = *chain.as_slice().first()?;
        self.resource(ix).map(|r| &r.attributes).filter(|a| !a.is_empty())
    }

    /// The `id` a PEP sends to name this subject: a user's username when it resolves back to
    /// this user (it does unless it collides case-insensitively with another), else the UUID.
    pub(crate) fn subject_pep_id(&self, who: &Who<'_>) -> String {
        if let WhoRec::User(u) = who.rec
            && self.resolve_subject(&SubjectRef::user(&u.username)).is_some_and(|w| w.uuid() == u.id.0)
        {
            return u.username.to_string();
        }
        who.uuid().to_string()
    }

    /// The `id` a PEP sends to name this resource: its name when that resolves back to this
    /// resource within its type, else its UUID.
    pub(crate) fn resource_pep_id(&self, ty: &TypeRec, ix: u32) -> Option<String> {
        let rec = self.resource(ix)?;
        let by_name = ResourceRef::new(&ty.name, &rec.name);
        Some(if self.resolve_resource(ty, &by_name) == Some(ix) { rec.name.to_string() } else { rec.id.to_string() })
    }

    /// The resource and its live ancestors, at most [`MAX_RESOURCE_DEPTH`] above it.
    pub(crate) fn chain(&self, target: Option<u32>) -> Chain {
        let live = |ix: u32| slot(&self.resources, ix).filter(|s| s.rec.is_some());
        let mut chain = Chain::EMPTY;
        let Some(ix) = target else { return chain };
        let Some(mut cur) = live(ix) else { return chain };
        if !chain.push(ix) {
            return chain;
        }
        for _ in 0..MAX_RESOURCE_DEPTH {
            let Some(parent) = cur.parent else { break };
            let Some(up) = live(parent) else { break };
            if !chain.push(parent) {
                break;
            }
            cur = up;
        }
        chain
    }
}
