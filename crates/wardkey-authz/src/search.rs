//! Search: who has access to a resource, what a subject can reach, which actions it may take.
//! Each search gathers candidates from the index's reverse lists (type name → roles → grants
//! → holders → members, or subject → grants → scopes → descendants) and then asks the same
//! decision procedure as [`Snapshot::evaluate`] about each, so an answer is exactly what the
//! corresponding request would be told.

use crate::eval::{Early, Env, Target};
use crate::model::{Holder, Member, TypeRec};
use crate::snapshot::{Chain, Snapshot, Who, WhoRec, slot};
use crate::{
    AuthzError, Decision, GrantPath, MAX_ACTIONS, MAX_RESOURCE_DEPTH, NO_PROPERTIES, Reason, RequestContext,
    ResourceRef, SubjectRef,
};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use uuid::Uuid;
use wardkey_domain::{Member as DomainMember, ResourceId, ResourceTypeId, ServiceAccountId, UserId};

/// Which part of a search answer to return. Answers are ordered by id; `after` resumes after
/// the last id of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub after: Option<Uuid>,
    /// At most this many items (0 returns none).
    pub limit: usize,
}

impl Page {
    /// Everything, in one answer.
    pub const ALL: Page = Page { after: None, limit: usize::MAX };

    pub fn first(limit: usize) -> Page {
        Page { after: None, limit }
    }

    pub fn after(id: Uuid, limit: usize) -> Page {
        Page { after: Some(id), limit }
    }
}

/// One page of a search answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Found<T> {
    /// Revision of the snapshot that answered.
    pub revision: u64,
    pub items: Vec<T>,
    /// Where the next page starts (`Page::after`), when there is one.
    pub next: Option<Uuid>,
}

/// A subject that would be allowed, and every grant that allows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubjectAccess {
    pub subject: DomainMember,
    /// The `id` a PEP sends to name this subject in an evaluation (username, or the UUID when
    /// the username would not name it unambiguously; a service account's UUID).
    pub pep_id: String,
    /// Username, or the service account's name.
    pub name: String,
    pub grants: Vec<GrantPath>,
    /// Allowed only through emergency access.
    pub break_glass: bool,
}

/// An allowed action and every grant that allows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionAccess {
    pub action: String,
    pub grants: Vec<GrantPath>,
    pub break_glass: bool,
}

/// What a [`ResourceAccess`] is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AccessTarget {
    /// A registered resource (its stored attributes are properties, as in an evaluation).
    Resource {
        id: ResourceId,
        /// The `id` a PEP sends to name it in an evaluation: its name, or its UUID when the
        /// name would not name it unambiguously within the type.
        pep_id: String,
        name: String,
        type_id: ResourceTypeId,
        type_name: String,
    },
    /// Every resource of the type, registered or not, through grants without a scope (asked
    /// as a request with no resource id and no properties).
    AllOfType { type_id: ResourceTypeId, type_name: String },
}

impl AccessTarget {
    /// The id answers are ordered and paged by (the resource's, or the type's).
    pub fn id(&self) -> Uuid {
        match self {
            AccessTarget::Resource { id, .. } => id.0,
            AccessTarget::AllOfType { type_id, .. } => type_id.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceAccess {
    pub target: AccessTarget,
    pub actions: Vec<ActionAccess>,
}

fn early_error(e: Early) -> AuthzError {
    match e {
        Early::UnknownType => AuthzError::UnknownResourceType,
        Early::UnknownAction => AuthzError::UnknownAction,
        Early::UnknownSubject | Early::NotActive(_) => AuthzError::UnknownSubject,
    }
}

fn grants_of(d: Decision) -> Vec<GrantPath> {
    d.reasons
        .into_iter()
        .filter_map(|r| match r {
            Reason::Granted { grant } => Some(grant),
            _ => None,
        })
        .collect()
}

fn action_access(action: &str, d: Decision) -> ActionAccess {
    let break_glass = d.break_glass;
    ActionAccess { action: action.to_owned(), grants: grants_of(d), break_glass }
}

#[derive(Debug, Clone, Copy)]
enum Candidate<'s> {
    Type(&'s TypeRec),
    Resource(u32, &'s TypeRec),
}

impl Snapshot {
    /// Users and service accounts (directly or through groups) that would be allowed `action`
    /// on the resource with this context, ordered by id.
    pub fn subjects_with_access(
        &self,
        resource: &ResourceRef<'_>,
        action: &str,
        ctx: &RequestContext,
        page: Page,
    ) -> Result<Found<SubjectAccess>, AuthzError> {
        let t = self.target(resource, action).map_err(early_error)?;
        let env = Env::new(ctx, resource.properties, self.stored_attributes(&t.chain));
        let mut candidates: Vec<(Uuid, Member)> = Vec::new();
        let mut add = |m: Member| {
            if let Some(w) = self.who_member(m) {
                candidates.push((w.uuid(), m));
            }
        };
        let roles = slot(&self.tnames, t.ty.tname).map(|s| &s.roles);
        for role_ix in roles.into_iter().flatten() {
            let Some(rs) = slot(&self.roles, *role_ix) else { continue };
            if rs.rec.as_ref().is_none_or(|r| r.mask_for(t.ty.tname) & t.bit == 0) {
                continue;
            }
            for gix in rs.grants.iter() {
                let Some(g) = self.grant(*gix) else { continue };
                if !g.effective_at(env.now) || !t.chain.covered_by(g.scope) {
                    continue;
                }
                match g.holder {
                    Holder::User(u) => add(Member::User(u)),
                    Holder::Sa(s) => add(Member::Sa(s)),
                    Holder::Group(gr) => {
                        let Some(gs) = slot(&self.groups, gr) else { continue };
                        if gs.rec.is_some() {
                            gs.members.iter().for_each(|m| add(*m));
                        }
                    }
                }
            }
        }
        candidates.sort_unstable();
        candidates.dedup();

        let mut items = Vec::new();
        let mut next = None;
        for (_, m) in candidates.iter().filter(|(id, _)| page.after.is_none_or(|a| *id > a)) {
            let Some(who) = self.who_member(*m) else { continue };
            if !who.active() {
                continue;
            }
            if items.len() >= page.limit {
                if self.allowed(&who, &t, &env) {
                    next = items.last().map(|i: &SubjectAccess| member_uuid(&i.subject));
                    break;
                }
                continue;
            }
            let d = self.decide(&who, &t, &env);
            if d.allow {
                let break_glass = d.break_glass;
                items.push(SubjectAccess {
                    subject: domain_member(&who),
                    pep_id: self.subject_pep_id(&who),
                    name: who_name(&who).to_owned(),
                    grants: grants_of(d),
                    break_glass,
                });
            }
        }
        Ok(Found { revision: self.revision, items, next })
    }

    /// What the subject can act on: registered resources reached through scoped grants (with
    /// their stored attributes as properties) and, for grants without a scope, "every
    /// resource of type T" (asked with no resource and no properties) and the registered
    /// resources of T whose stored attributes its conditions or a forbid rule read (which may
    /// be answered otherwise). Each with the allowed actions (only `action`, if given), ordered
    /// by id. A registered resource not listed is answered as "every resource of type T" is. A
    /// subject that is not active reaches nothing.
    pub fn resources_for(
        &self,
        subject: &SubjectRef<'_>,
        type_name: Option<&str>,
        action: Option<&str>,
        ctx: &RequestContext,
        page: Page,
    ) -> Result<Found<ResourceAccess>, AuthzError> {
        let who = self.resolve_subject(subject).ok_or(AuthzError::UnknownSubject)?;
        let only_type = match type_name {
            Some(n) => Some(self.resolve_type(n).ok_or(AuthzError::UnknownResourceType)?),
            None => None,
        };
        if let (Some(ty), Some(a)) = (only_type, action) {
            ty.action_bit(a).ok_or(AuthzError::UnknownAction)?;
        }
        let empty = Found { revision: self.revision, items: Vec::new(), next: None };
        if !who.active() {
            return Ok(empty);
        }
        let wanted = |ty: &TypeRec| -> u64 {
            if only_type.is_some_and(|o| o.id != ty.id) {
                return 0;
            }
            match action {
                Some(a) => ty.action_bit(a).unwrap_or(0),
                None => ty.all_actions(),
            }
        };

        let mut candidates: BTreeMap<Uuid, Candidate<'_>> = BTreeMap::new();
        self.for_each_held_grant(&who, |g| {
            if !g.effective_at(ctx.now) {
                return;
            }
            let Some(role) = self.role(g.role) else { return };
            for p in role.perms.iter() {
                let Some(ty) = self.type_of_tname(p.tname) else { continue };
                if p.mask & wanted(ty) == 0 {
                    continue;
                }
                match g.scope {
                    None => {
                        candidates.insert(ty.id.0, Candidate::Type(ty));
                        // "Any resource of the type" is asked without properties; a registered
                        // resource whose stored attributes a condition or a forbid rule reads
                        // may be answered otherwise, so it is an answer of its own.
                        if self.attributes_matter(g, role, ty) {
                            for r in self.resources_of_type(ty) {
                                if let Some(rec) = self.resource(r)
                                    && !rec.attributes.is_empty()
                                {
                                    candidates.insert(rec.id.0, Candidate::Resource(r, ty));
                                }
                            }
                        }
                    }
                    Some(scope) => {
                        for r in self.descendants(scope) {
                            if let Some(rec) = self.resource(r)
                                && rec.type_id == ty.id
                            {
                                candidates.insert(rec.id.0, Candidate::Resource(r, ty));
                            }
                        }
                    }
                }
            }
        });

        let mut items = Vec::new();
        let mut next = None;
        let after = page.after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        for c in candidates.range((after, std::ops::Bound::Unbounded)).map(|(_, c)| c) {
            // As a PEP would ask: the resource by its id and no properties of its own, so the
            // stored attributes are the properties (exactly as in an evaluation).
            let (ty, chain, target) = match *c {
                Candidate::Type(ty) => {
                    (ty, Chain::EMPTY, AccessTarget::AllOfType { type_id: ty.id, type_name: ty.name.to_string() })
                }
                Candidate::Resource(r, ty) => {
                    let Some(rec) = self.resource(r) else { continue };
                    let Some(pep_id) = self.resource_pep_id(ty, r) else { continue };
                    let target = AccessTarget::Resource {
                        id: rec.id,
                        pep_id,
                        name: rec.name.to_string(),
                        type_id: ty.id,
                        type_name: ty.name.to_string(),
                    };
                    (ty, self.chain(Some(r)), target)
                }
            };
            let env = Env::new(ctx, &NO_PROPERTIES, self.stored_attributes(&chain));
            let mask = wanted(ty);
            let mut targets = ty
                .actions
                .iter()
                .enumerate()
                .take(MAX_ACTIONS)
                .map(|(pos, a)| Target { ty, action: a, bit: 1u64 << pos, chain })
                .filter(|t| mask & t.bit != 0);
            if items.len() >= page.limit {
                // One more answer exists past this page: say where the next page starts.
                if targets.any(|t| self.allowed(&who, &t, &env)) {
                    next = items.last().map(|i: &ResourceAccess| i.target.id());
                    break;
                }
                continue;
            }
            let actions: Vec<ActionAccess> = targets
                .filter_map(|t| {
                    let d = self.decide(&who, &t, &env);
                    d.allow.then(|| action_access(t.action, d))
                })
                .collect();
            if !actions.is_empty() {
                items.push(ResourceAccess { target, actions });
            }
        }
        Ok(Found { revision: self.revision, items, next })
    }

    /// The actions the subject may take on the resource with this context, in name order.
    pub fn actions_for(
        &self,
        subject: &SubjectRef<'_>,
        resource: &ResourceRef<'_>,
        ctx: &RequestContext,
    ) -> Result<Found<ActionAccess>, AuthzError> {
        let who = self.resolve_subject(subject).ok_or(AuthzError::UnknownSubject)?;
        let ty = self.resolve_type(resource.type_name).ok_or(AuthzError::UnknownResourceType)?;
        let mut items = Vec::new();
        if who.active() {
            let chain = self.chain(self.resolve_resource(ty, resource));
            let env = Env::new(ctx, resource.properties, self.stored_attributes(&chain));
            for (pos, a) in ty.actions.iter().enumerate().take(MAX_ACTIONS) {
                let t = Target { ty, action: a, bit: 1u64 << pos, chain };
                let d = self.decide(&who, &t, &env);
                if d.allow {
                    items.push(action_access(a, d));
                }
            }
        }
        Ok(Found { revision: self.revision, items, next: None })
    }

    /// Whether a resource's stored attributes can change what an unscoped grant of this role
    /// allows on the type: the grant or the role has attribute rules, or a forbid rule on the
    /// type reads a resource property.
    fn attributes_matter(&self, g: &crate::model::GrantRec, role: &crate::model::RoleRec, ty: &TypeRec) -> bool {
        let rules = |c: Option<&crate::model::Cond>| c.is_some_and(|c| !c.rules.is_empty());
        rules(g.conditions.as_deref())
            || rules(role.conditions.as_deref())
            || self.forbids.values().any(|f| {
                matches!(f.when, crate::model::When::Property { .. })
                    && f.types.as_ref().is_none_or(|ts| ts.binary_search(&ty.tname).is_ok())
            })
    }

    /// The live resources of a type.
    fn resources_of_type(&self, ty: &TypeRec) -> Vec<u32> {
        let Some(names) = self.resource_names.get(&ty.id) else { return Vec::new() };
        names
            .values()
            .flat_map(|ixs| ixs.iter().copied())
            .filter(|ix| self.resource(*ix).is_some_and(|r| r.type_id == ty.id))
            .collect()
    }

    /// Every grant the subject holds, directly or through a live group.
    fn for_each_held_grant<'s>(&'s self, who: &Who<'s>, mut f: impl FnMut(&'s crate::model::GrantRec)) {
        who.held.iter().for_each(&mut f);
        for group in who.groups.iter() {
            let Some(gs) = slot(&self.groups, *group) else { continue };
            if gs.rec.is_some() {
                gs.held.iter().for_each(&mut f);
            }
        }
    }

    /// The live resource and its live descendants down to [`MAX_RESOURCE_DEPTH`] levels: the
    /// resources whose ancestor chain (as [`Snapshot::chain`] walks it) contains it.
    fn descendants(&self, root: u32) -> Vec<u32> {
        if self.resource(root).is_none() {
            return Vec::new();
        }
        let mut out = vec![root];
        let mut seen: HashSet<u32> = HashSet::from([root]);
        let mut level = vec![root];
        for _ in 0..MAX_RESOURCE_DEPTH {
            let mut below = Vec::new();
            for r in &level {
                let Some(rs) = slot(&self.resources, *r) else { continue };
                for c in rs.children.iter() {
                    if self.resource(*c).is_some() && seen.insert(*c) {
                        below.push(*c);
                    }
                }
            }
            if below.is_empty() {
                break;
            }
            out.extend_from_slice(&below);
            level = below;
        }
        out
    }
}

fn who_name<'s>(w: &Who<'s>) -> &'s str {
    match w.rec {
        WhoRec::User(u) => &u.username,
        WhoRec::Sa(s) => &s.name,
    }
}

fn domain_member(w: &Who<'_>) -> DomainMember {
    match w.rec {
        WhoRec::User(u) => DomainMember::User(UserId(u.id.0)),
        WhoRec::Sa(s) => DomainMember::ServiceAccount(ServiceAccountId(s.id.0)),
    }
}

fn member_uuid(m: &DomainMember) -> Uuid {
    match m {
        DomainMember::User(id) => id.0,
        DomainMember::ServiceAccount(id) => id.0,
    }
}
