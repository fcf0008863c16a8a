//! The decision procedure. One candidate walk and one set of condition predicates serve the
//! allocation-free [`Snapshot::check`], the explaining [`Snapshot::evaluate`] and the
//! searches, so they cannot disagree.

use crate::decision::{ConditionSource, Decision, FailedCondition, GrantPath, Reason, Via};
use crate::model::{Attr, Cond, ForbidRec, GrantRec, GroupRec, RoleRec, Rule, TypeRec, When, fold};
use crate::snapshot::{Chain, Snapshot, Who, WhoRec, slot};
use crate::{Properties, Request, RequestContext};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::ops::ControlFlow;
use wardkey_domain::{AttributeOp, DeviceTrust, GrantSource};

/// The request's circumstances, normalised once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Env<'a> {
    pub now: DateTime<Utc>,
    pub ip: Option<IpAddr>,
    pub assurance: wardkey_domain::Assurance,
    pub device: DeviceTrust,
    /// What the request says about the resource.
    pub props: &'a Properties,
    /// What Wardkey stores about it, when it is a registered resource with attributes.
    pub stored: Option<&'a BTreeMap<String, String>>,
}

/// One resource property, from either source.
#[derive(Debug, Clone, Copy)]
enum Prop<'a> {
    Stored(&'a str),
    Sent(&'a serde_json::Value),
}

impl<'a> Env<'a> {
    pub fn new(ctx: &RequestContext, props: &'a Properties, stored: Option<&'a BTreeMap<String, String>>) -> Env<'a> {
        Env {
            now: ctx.now,
            // A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d; networks are written
            // in plain IPv4.
            ip: ctx.source_ip.map(|ip| ip.to_canonical()),
            assurance: ctx.assurance,
            device: ctx.device_trust.unwrap_or(DeviceTrust::Unknown),
            props,
            stored,
        }
    }

    /// A property of the resource: the stored attribute when Wardkey has one (its record is
    /// authoritative for a registered resource), else what the request sent.
    fn prop(&self, key: &str) -> Option<Prop<'a>> {
        if let Some(v) = self.stored.and_then(|m| m.get(key)) {
            return Some(Prop::Stored(v));
        }
        self.props.get(key).map(Prop::Sent)
    }
}

/// A property's text (see [`with_text`]).
fn prop_text<R>(p: Prop<'_>, f: impl FnOnce(&str) -> R) -> Option<R> {
    match p {
        Prop::Stored(s) => Some(f(s)),
        Prop::Sent(v) => with_text(v, f),
    }
}

/// What the request is about, resolved: the type, the action's bit, the resource chain.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'s, 'r> {
    pub ty: &'s TypeRec,
    pub action: &'r str,
    pub bit: u64,
    pub chain: Chain,
}

/// A grant that applies to the request, before its conditions are looked at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cand<'s> {
    pub grant: &'s GrantRec,
    pub role: &'s RoleRec,
    pub via: Option<&'s GroupRec>,
}

/// Why a request could not get as far as the grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Early {
    UnknownSubject,
    NotActive(&'static str),
    UnknownType,
    UnknownAction,
}

impl Early {
    fn reason(self) -> Reason {
        match self {
            Early::UnknownSubject => Reason::UnknownSubject,
            Early::NotActive(status) => Reason::SubjectNotActive { status: status.to_owned() },
            Early::UnknownType => Reason::UnknownResourceType,
            Early::UnknownAction => Reason::UnknownAction,
        }
    }
}

/// A resource property as text: strings as they are, numbers as their JSON text (written to
/// the stack). Anything else has no text and fails whatever compares it.
fn with_text<R>(v: &serde_json::Value, f: impl FnOnce(&str) -> R) -> Option<R> {
    match v {
        serde_json::Value::String(s) => Some(f(s)),
        serde_json::Value::Number(n) => {
            let mut buf = StackText::default();
            write!(buf, "{n}").ok()?;
            Some(f(buf.as_str()?))
        }
        _ => None,
    }
}

struct StackText {
    buf: [u8; 48],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        StackText { buf: [0; 48], len: 0 }
    }
}

impl StackText {
    fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(self.buf.get(..self.len)?).ok()
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(std::fmt::Error)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl Snapshot {
    /// The decision for `req`, with reasons.
    pub fn evaluate(&self, req: &Request<'_>) -> Decision {
        match self.prepare(req) {
            Ok((who, target, env)) => self.decide(&who, &target, &env),
            Err(early) => Decision::deny(self.revision, early.reason()),
        }
    }

    /// Whether `req` is allowed; the same answer as [`Snapshot::evaluate`] without reasons,
    /// and without allocating (unless a name needs case-folding).
    pub fn check(&self, req: &Request<'_>) -> bool {
        match self.prepare(req) {
            Ok((who, target, env)) => self.allowed(&who, &target, &env),
            Err(_) => false,
        }
    }

    /// Steps 1 and 2: the subject, its state, the type, the action and the resource.
    #[allow(clippy::type_complexity)]
    pub(crate) fn prepare<'e, 's: 'e, 'r: 'e>(
        &'s self,
        req: &Request<'r>,
    ) -> Result<(Who<'s>, Target<'s, 'r>, Env<'e>), Early> {
        let who = self.resolve_subject(&req.subject).ok_or(Early::UnknownSubject)?;
        if !who.active() {
            return Err(Early::NotActive(who.status()));
        }
        let target = self.target(&req.resource, req.action)?;
        let stored = self.stored_attributes(&target.chain);
        Ok((who, target, Env::new(&req.context, req.resource.properties, stored)))
    }

    pub(crate) fn target<'s, 'r>(
        &'s self,
        resource: &crate::ResourceRef<'_>,
        action: &'r str,
    ) -> Result<Target<'s, 'r>, Early> {
        let ty = self.resolve_type(resource.type_name).ok_or(Early::UnknownType)?;
        let bit = ty.action_bit(action).ok_or(Early::UnknownAction)?;
        let chain = self.chain(self.resolve_resource(ty, resource));
        Ok(Target { ty, action, bit, chain })
    }

    /// Steps 3 to 6 for a resolved, active subject.
    pub(crate) fn decide(&self, who: &Who<'_>, t: &Target<'_, '_>, env: &Env<'_>) -> Decision {
        let forbidden: Vec<Reason> = self
            .forbids
            .values()
            .filter(|f| self.forbid_applies(f, who, t, env))
            .map(|f| Reason::ForbiddenByRule { rule_id: f.id, rule_name: f.name.to_string() })
            .collect();
        if !forbidden.is_empty() {
            return Decision::denied(self.revision, forbidden, None);
        }

        let mut satisfied: Vec<Cand<'_>> = Vec::new();
        let mut failed: Vec<(Cand<'_>, Vec<FailedCondition>)> = Vec::new();
        let _ = self.for_each_candidate(who, t, env.now, |c| {
            let mut fails = Vec::new();
            self.failures(c.role.conditions.as_deref(), ConditionSource::Role, who, env, &mut fails);
            self.failures(c.grant.conditions.as_deref(), ConditionSource::Grant, who, env, &mut fails);
            if fails.is_empty() {
                satisfied.push(c);
            } else {
                failed.push((c, fails));
            }
            ControlFlow::Continue(())
        });

        if !satisfied.is_empty() {
            satisfied.sort_by_key(|c| c.grant.id);
            let only_break_glass = satisfied.iter().all(|c| c.grant.source == GrantSource::BreakGlass);
            let obligations = if only_break_glass {
                satisfied
                    .iter()
                    .map(|c| serde_json::json!({"type": "record_break_glass_use", "grant_id": c.grant.id}))
                    .collect()
            } else {
                Vec::new()
            };
            return Decision {
                allow: true,
                revision: self.revision,
                reasons: satisfied.iter().map(|c| Reason::Granted { grant: self.path(c) }).collect(),
                obligations,
                break_glass: only_break_glass,
                step_up: None,
            };
        }
        if failed.is_empty() {
            return Decision::deny(self.revision, Reason::NoGrant);
        }
        // Only a grant that fails on nothing but assurance can be rescued by stepping up; it
        // needs the higher of its role's and its own minimum.
        let step_up = failed
            .iter()
            .filter_map(|(_, fails)| {
                fails.iter().try_fold(None, |max, f| match f {
                    FailedCondition::Assurance { required, .. } => Some(max.max(Some(*required))),
                    _ => None,
                })?
            })
            .min();
        failed.sort_by_key(|(c, _)| c.grant.id);
        let reasons =
            failed.into_iter().map(|(c, failed)| Reason::ConditionsNotMet { grant: self.path(&c), failed }).collect();
        Decision::denied(self.revision, reasons, step_up)
    }

    /// Steps 3 to 5 without reasons: stops at the first satisfied grant.
    pub(crate) fn allowed(&self, who: &Who<'_>, t: &Target<'_, '_>, env: &Env<'_>) -> bool {
        if self.forbids.values().any(|f| self.forbid_applies(f, who, t, env)) {
            return false;
        }
        self.for_each_candidate(who, t, env.now, |c| {
            if self.holds(c.role.conditions.as_deref(), who, env) && self.holds(c.grant.conditions.as_deref(), who, env)
            {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .is_break()
    }

    /// Every effective grant of the subject (direct, then through each live group) whose role
    /// permits the type and action and whose scope covers the resource.
    pub(crate) fn for_each_candidate<'s>(
        &'s self,
        who: &Who<'s>,
        t: &Target<'_, '_>,
        now: DateTime<Utc>,
        mut f: impl FnMut(Cand<'s>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let mut visit = |grant: &'s GrantRec, via: Option<&'s GroupRec>| -> ControlFlow<()> {
            if !grant.effective_at(now) || !t.chain.covered_by(grant.scope) {
                return ControlFlow::Continue(());
            }
            match self.role(grant.role) {
                Some(role) if role.mask_for(t.ty.tname) & t.bit != 0 => f(Cand { grant, role, via }),
                _ => ControlFlow::Continue(()),
            }
        };
        for grant in who.held {
            visit(grant, None)?;
        }
        for group_ix in who.groups.iter() {
            let Some(gs) = slot(&self.groups, *group_ix) else { continue };
            let Some(group) = gs.rec.as_deref() else { continue };
            for grant in gs.held.iter() {
                visit(grant, Some(group))?;
            }
        }
        ControlFlow::Continue(())
    }

    pub(crate) fn path(&self, c: &Cand<'_>) -> GrantPath {
        GrantPath {
            grant_id: c.grant.id,
            role_id: c.role.id,
            role_name: c.role.name.to_string(),
            via: match c.via {
                None => Via::Direct,
                Some(g) => Via::Group { group_id: g.id, group_name: g.name.to_string() },
            },
            scope: c.grant.scope.and_then(|s| self.resource(s)).map(|r| r.id),
            source: c.grant.source,
        }
    }

    fn forbid_applies(&self, f: &ForbidRec, who: &Who<'_>, t: &Target<'_, '_>, env: &Env<'_>) -> bool {
        if f.types.as_ref().is_some_and(|types| types.binary_search(&t.ty.tname).is_err()) {
            return false;
        }
        if f.actions.as_ref().is_some_and(|a| a.binary_search_by(|x| x.as_ref().cmp(t.action)).is_err()) {
            return false;
        }
        match &f.when {
            When::Always => true,
            When::DeviceBelow(min) => env.device < *min,
            When::NetworkOutside(nets) => !env.ip.is_some_and(|ip| nets.iter().any(|n| n.contains(&ip))),
            When::Property { property, values, unless_group } => {
                let listed = |s: &str| values.binary_search_by(|v| v.as_ref().cmp(s)).is_ok();
                // Strings and numbers (by their JSON text), alone or in an array: a client
                // that sends `42` instead of `"42"` must not slip past a ban.
                let matches = match env.prop(property) {
                    Some(Prop::Sent(serde_json::Value::Array(items))) => {
                        items.iter().any(|i| with_text(i, listed).unwrap_or(false))
                    }
                    Some(p) => prop_text(p, listed).unwrap_or(false),
                    None => false,
                };
                matches && !unless_group.as_ref().is_some_and(|g| self.in_group_keyed(who, g))
            }
        }
    }

    /// Whether the subject is a member of a live group with this folded name.
    fn in_group_keyed(&self, who: &Who<'_>, key: &str) -> bool {
        who.groups.iter().any(|g| self.group(*g).is_some_and(|rec| rec.key.as_ref() == key))
    }

    fn holds(&self, c: Option<&Cond>, who: &Who<'_>, env: &Env<'_>) -> bool {
        let Some(c) = c else { return true };
        assurance_ok(c, env)
            && network_ok(c, env)
            && windows_ok(c, env)
            && device_ok(c, env)
            && c.rules.iter().all(|r| self.rule_holds(r, who, env))
    }

    fn failures(
        &self,
        c: Option<&Cond>,
        on: ConditionSource,
        who: &Who<'_>,
        env: &Env<'_>,
        out: &mut Vec<FailedCondition>,
    ) {
        let Some(c) = c else { return };
        if let Some(required) = c.min_assurance
            && !assurance_ok(c, env)
        {
            out.push(FailedCondition::Assurance { on, required });
        }
        if !network_ok(c, env) {
            out.push(FailedCondition::Network { on });
        }
        if !windows_ok(c, env) {
            out.push(FailedCondition::TimeWindow { on });
        }
        if let Some(required) = c.min_device
            && !device_ok(c, env)
        {
            out.push(FailedCondition::DeviceTrust { on, required });
        }
        for r in c.rules.iter().filter(|r| !self.rule_holds(r, who, env)) {
            out.push(FailedCondition::AttributeRule { on, rule: r.source.clone() });
        }
    }

    fn rule_holds(&self, r: &Rule, who: &Who<'_>, env: &Env<'_>) -> bool {
        let Some(value) = env.prop(r.source.resource_property.as_str()) else { return false };
        match r.op() {
            AttributeOp::Equals => prop_text(value, |p| subject_attr_equals(who, r.attr, p)).unwrap_or(false),
            AttributeOp::In => {
                r.attr == Attr::Groups && prop_text(value, |p| self.in_group_keyed(who, &fold(p))).unwrap_or(false)
            }
        }
    }
}

fn subject_attr_equals(who: &Who<'_>, attr: Attr, p: &str) -> bool {
    match who.rec {
        WhoRec::User(u) => match attr {
            Attr::Id => p.as_bytes() == u.id_text,
            Attr::Username => u.username.as_ref() == p,
            Attr::Email => u.email.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(p)),
            Attr::Department => u.department.as_deref() == Some(p),
            Attr::JobCode => u.job_code.as_deref() == Some(p),
            Attr::Title => u.title.as_deref() == Some(p),
            Attr::EmploymentType => u.employment_type.map(|e| e.as_str()) == Some(p),
            Attr::Groups | Attr::Unknown => false,
        },
        WhoRec::Sa(s) => attr == Attr::Id && p.as_bytes() == s.id_text,
    }
}

fn assurance_ok(c: &Cond, env: &Env<'_>) -> bool {
    c.min_assurance.is_none_or(|m| env.assurance >= m)
}

fn network_ok(c: &Cond, env: &Env<'_>) -> bool {
    c.networks.as_ref().is_none_or(|nets| env.ip.is_some_and(|ip| nets.iter().any(|n| n.contains(&ip))))
}

fn windows_ok(c: &Cond, env: &Env<'_>) -> bool {
    c.windows.as_ref().is_none_or(|ws| ws.iter().any(|w| w.contains(env.now)))
}

fn device_ok(c: &Cond, env: &Env<'_>) -> bool {
    c.min_device.is_none_or(|m| env.device >= m)
}
