//! A full consistency check of a snapshot's derived structures against its records. Every
//! list the index keeps for speed (memberships both ways, holder and role grant lists,
//! children, name indices, role masks) must say exactly what the records say; a stale entry
//! would only show in a decision much later (a group removed, then re-created), so tests check
//! it directly after every change.

use crate::flat::{IdMap, Slots};
use crate::model::{Holder, Member, Principal};
use crate::snapshot::{NameMap, Snapshot, slot};
use std::hash::Hash;

fn fail<T>(msg: String) -> Result<T, String> {
    Err(msg)
}

/// Every id maps to a slot in range; every live record sits in the slot its id maps to.
fn check_interner<K, S>(
    what: &str,
    map: &IdMap<K>,
    slots: &Slots<S>,
    id_of: impl Fn(&S) -> Option<K>,
) -> Result<(), String>
where
    K: Hash + Eq + Clone + std::fmt::Debug,
    S: Clone,
{
    for (k, ix) in map.iter() {
        let Some(s) = slot(slots, *ix) else { return fail(format!("{what} {k:?} maps past the slots")) };
        if let Some(id) = id_of(s)
            && id != *k
        {
            return fail(format!("{what} slot {ix} holds {id:?}, not {k:?}"));
        }
    }
    if map.len() != slots.len() {
        return fail(format!("{what}: {} ids for {} slots", map.len(), slots.len()));
    }
    Ok(())
}

/// The name index lists exactly the live records under their keys.
fn check_names<S: Clone>(
    what: &str,
    names: &NameMap,
    slots: &Slots<S>,
    key_of: impl Fn(&S) -> Option<&str>,
) -> Result<(), String> {
    let mut listed = 0usize;
    for (key, ixs) in names.iter() {
        if ixs.is_empty() {
            return fail(format!("{what} name {key:?} lists nothing"));
        }
        for ix in ixs.iter() {
            listed += 1;
            if slot(slots, *ix).and_then(&key_of) != Some(key.as_ref()) {
                return fail(format!("{what} name {key:?} lists slot {ix}, which is not so named"));
            }
        }
    }
    let live = slots.iter().filter(|s| key_of(s).is_some()).count();
    if listed != live {
        return fail(format!("{what}: {listed} named, {live} live"));
    }
    Ok(())
}

impl Snapshot {
    /// Checks that every derived structure agrees with the records (O(size of the index)).
    /// For tests and diagnostics; a failure is a bug in the index, never in the input.
    pub fn verify(&self) -> Result<(), String> {
        check_interner("user", &self.user_ix, &self.users, |s| s.rec.as_ref().map(|r| r.id))?;
        check_interner("service account", &self.sa_ix, &self.sas, |s| s.rec.as_ref().map(|r| r.id))?;
        check_interner("group", &self.group_ix, &self.groups, |s| s.rec.as_ref().map(|r| r.id))?;
        check_interner("type", &self.type_ix, &self.types, |s| s.rec.as_ref().map(|r| r.id))?;
        check_interner("resource", &self.resource_ix, &self.resources, |s| s.rec.as_ref().map(|r| r.id))?;
        check_interner("role", &self.role_ix, &self.roles, |s| s.rec.as_ref().map(|r| r.id))?;
        if self.tname_ix.len() != self.tnames.len() {
            return fail("type names and their slots differ in number".into());
        }
        check_names("user", &self.user_names, &self.users, |s| s.rec.as_ref().map(|r| r.key.as_ref()))?;

        // What principal slots keep beside their records.
        let stale = |active: bool, rec: Option<bool>| active != rec.unwrap_or(false);
        if let Some(ix) = self.users.iter().position(|s| stale(s.active, s.rec.as_deref().map(Principal::may_access))) {
            return fail(format!("user slot {ix}'s active flag disagrees with its record"));
        }
        if let Some(ix) = self.sas.iter().position(|s| stale(s.active, s.rec.as_deref().map(Principal::may_access))) {
            return fail(format!("service account slot {ix}'s active flag disagrees with its record"));
        }

        // Memberships, both ways.
        let member_groups = |m: Member| match m {
            Member::User(ix) => self.user(ix).map(|s| &s.groups),
            Member::Sa(ix) => self.sa(ix).map(|s| &s.groups),
        };
        let mut links = 0usize;
        for (g, gs) in self.groups.iter().enumerate() {
            for m in gs.members.iter() {
                links += 1;
                if !member_groups(*m).is_some_and(|groups| groups.iter().any(|x| *x as usize == g)) {
                    return fail(format!("group {g} lists {m:?}, who does not list it"));
                }
            }
        }
        let back: usize = self.users.iter().map(|s| s.groups.len()).sum::<usize>()
            + self.sas.iter().map(|s| s.groups.len()).sum::<usize>();
        if back != links {
            return fail(format!("{links} memberships seen from groups, {back} from members"));
        }

        // Grants: slots, id map, free list, holder and role lists.
        let mut live = 0usize;
        for (ix, g) in self.grants.iter().enumerate() {
            let Some(g) = g else { continue };
            live += 1;
            let ix32 = u32::try_from(ix).map_err(|e| e.to_string())?;
            if self.grant_ix.get(&g.id) != Some(&ix32) {
                return fail(format!("grant {} is in slot {ix} but not mapped there", g.id));
            }
            let held = match g.holder {
                Holder::User(u) => self.user(u).map(|s| &s.grants),
                Holder::Sa(s) => self.sa(s).map(|s| &s.grants),
                Holder::Group(gr) => slot(&self.groups, gr).map(|s| &s.grants),
            };
            if !held.is_some_and(|h| h.contains(&ix32)) {
                return fail(format!("grant {} is missing from its holder's list", g.id));
            }
            if !slot(&self.roles, g.role).is_some_and(|r| r.grants.contains(&ix32)) {
                return fail(format!("grant {} is missing from its role's list", g.id));
            }
        }
        if self.grant_ix.len() != live || live + self.free_grants.len() != self.grants.len() {
            return fail(format!(
                "{live} grants, {} ids, {} free of {} slots",
                self.grant_ix.len(),
                self.free_grants.len(),
                self.grants.len()
            ));
        }
        if self.free_grants.iter().any(|ix| self.grant(*ix).is_some()) {
            return fail("a free grant slot is in use".into());
        }
        let holder_lists = self.users.iter().map(|s| (&s.grants, 0u8)).chain(self.sas.iter().map(|s| (&s.grants, 1)));
        for (i, (list, kind)) in holder_lists.enumerate() {
            for gix in list.iter() {
                let ok = self.grant(*gix).is_some_and(|g| match (g.holder, kind) {
                    (Holder::User(u), 0) => u as usize == i,
                    (Holder::Sa(s), 1) => s as usize + self.users.len() == i,
                    _ => false,
                });
                if !ok {
                    return fail(format!("a subject lists grant slot {gix}, which is not its grant"));
                }
            }
        }
        for (gr, gs) in self.groups.iter().enumerate() {
            if gs.grants.iter().any(|gix| self.grant(*gix).is_none_or(|g| g.holder != Holder::Group(gr as u32))) {
                return fail(format!("group {gr} lists a grant that is not its own"));
            }
        }
        // Each holder's records are exactly its listed grants, as they are in their slots.
        let held_lists = self
            .users
            .iter()
            .map(|s| (&s.grants, &s.held))
            .chain(self.sas.iter().map(|s| (&s.grants, &s.held)))
            .chain(self.groups.iter().map(|s| (&s.grants, &s.held)));
        for (list, held) in held_lists {
            let mut ids: Vec<_> = held.iter().map(|g| g.id).collect();
            ids.sort_unstable();
            ids.dedup();
            if list.len() != held.len() || ids.len() != held.len() {
                return fail(format!("a holder lists {} grants but keeps {} records", list.len(), held.len()));
            }
            for copy in held.iter() {
                let Some(&ix) = self.grant_ix.get(&copy.id) else {
                    return fail(format!("a holder keeps the record of grant {}, which is gone", copy.id));
                };
                let same = list.contains(&ix)
                    && self.grant(ix).is_some_and(|g| {
                        g.holder == copy.holder
                            && g.role == copy.role
                            && g.scope == copy.scope
                            && g.source == copy.source
                            && g.starts_at == copy.starts_at
                            && g.expires_at == copy.expires_at
                            && match (&g.conditions, &copy.conditions) {
                                (None, None) => true,
                                (Some(a), Some(b)) => std::sync::Arc::ptr_eq(a, b),
                                _ => false,
                            }
                    });
                if !same {
                    return fail(format!("a holder's record of grant {} differs from the grant", copy.id));
                }
            }
        }
        for (r, rs) in self.roles.iter().enumerate() {
            if rs.grants.iter().any(|gix| self.grant(*gix).is_none_or(|g| g.role as usize != r)) {
                return fail(format!("role {r} lists a grant of another role"));
            }
        }

        // The resource tree and the per-type name index.
        for (r, rs) in self.resources.iter().enumerate() {
            if rs.parent != rs.rec.as_ref().and_then(|rec| rec.parent) {
                return fail(format!("resource {r}'s slot names another parent than its record"));
            }
            if let Some(p) = rs.rec.as_ref().and_then(|rec| rec.parent)
                && !slot(&self.resources, p).is_some_and(|ps| ps.children.contains(&(r as u32)))
            {
                return fail(format!("resource {r} is missing from its parent's children"));
            }
            for c in rs.children.iter() {
                if self.resource(*c).and_then(|rec| rec.parent) != Some(r as u32) {
                    return fail(format!("resource {r} lists child {c}, whose parent it is not"));
                }
            }
        }
        let mut named = 0usize;
        for (type_id, names) in self.resource_names.iter() {
            for (key, ixs) in names.iter() {
                for ix in ixs.iter() {
                    named += 1;
                    let ok = self.resource(*ix).is_some_and(|r| r.type_id == *type_id && r.key == *key);
                    if !ok {
                        return fail(format!("resource name {key:?} lists slot {ix}, which is not so named"));
                    }
                }
            }
        }
        if named != self.resources.iter().filter(|s| s.rec.is_some()).count() {
            return fail("resource names and live resources differ in number".into());
        }

        // Type names: their types and the roles naming them; role masks as of now.
        for (t, ts) in self.tnames.iter().enumerate() {
            for ix in ts.types.iter() {
                if slot(&self.types, *ix).and_then(|s| s.rec.as_ref()).is_none_or(|r| r.tname as usize != t) {
                    return fail(format!("type name {t} lists type {ix}, which has another name"));
                }
            }
            for r in ts.roles.iter() {
                if !self.role(*r).is_some_and(|role| role.perms.iter().any(|p| p.tname as usize == t)) {
                    return fail(format!("type name {t} lists role {r}, which does not name it"));
                }
            }
        }
        for (ix, s) in self.types.iter().enumerate() {
            if let Some(rec) = &s.rec
                && !slot(&self.tnames, rec.tname).is_some_and(|ts| ts.types.contains(&(ix as u32)))
            {
                return fail(format!("type {} is missing from its name's list", rec.id));
            }
        }
        for (ix, s) in self.roles.iter().enumerate() {
            let Some(role) = &s.rec else { continue };
            for p in role.perms.iter() {
                if !slot(&self.tnames, p.tname).is_some_and(|ts| ts.roles.contains(&(ix as u32))) {
                    return fail(format!("role {} is missing from a type name's list", role.id));
                }
                let expected =
                    self.type_of_tname(p.tname).map_or(0, |ty| ty.mask_of(p.actions.iter().map(|a| a.as_ref())));
                if p.mask != expected {
                    return fail(format!("role {} has a stale action mask", role.id));
                }
            }
        }
        Ok(())
    }
}
