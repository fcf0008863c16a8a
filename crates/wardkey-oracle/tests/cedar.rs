#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Differential test: Wardkey's decision engine against Cedar.
//!
//! Random models (users, service accounts, groups, types, a resource forest, roles with
//! conditions, grants, forbid rules) are built once as Wardkey `Records` and once as a Cedar
//! policy set plus entity store, re-stating the semantics of `wardkey-authz` (its crate docs)
//! in Cedar. Random requests are asked of both; the allow/deny answers must agree on every one.
//!
//! What Cedar cannot do by itself (case-insensitive name lookup, local wall-clock time in a
//! zone, turning a JSON property into text) is done here in Rust, as plain data preparation:
//! the harness resolves names to ids, puts each zone's local weekday and minute in the
//! context, and gives each property's kind and text. Every rule (who holds what, scopes,
//! validity, conditions, forbids, activity, unknown types and actions) is a Cedar policy.
//!
//! `WK_ORACLE_SEED` (a number, or `random`) and `WK_ORACLE_CASES` (requests in all, 600 per
//! model) override the defaults. On a mismatch the case is shrunk and printed in full.

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicySet,
    Request as CedarRequest, Response, RestrictedExpression,
};
use chrono::{DateTime, Datelike, Duration, TimeZone, Timelike, Utc};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::str::FromStr;
use uuid::Uuid;
use wardkey_authz::{
    Decision, Index, Properties, Reason, Records, Request, RequestContext, ResourceRef, SubjectKind, SubjectRef,
};
use wardkey_domain::{
    Assurance, AttributeOp, AttributeRule, Conditions, Day, DeviceTrust, EmploymentType, ForbidRule, ForbidRuleId,
    ForbidWhen, Grant, GrantId, GrantSource, Group, GroupId, HrAttributes, Member, Permission, Resource, ResourceId,
    ResourceType, ResourceTypeId, Role, RoleId, ServiceAccount, ServiceAccountId, ServiceAccountStatus, Subject,
    TimeWindow, User, UserId, UserStatus,
};

const REQUESTS_PER_MODEL: usize = 600;
const DEFAULT_CASES: usize = 30_000;
const DEFAULT_SEED: u64 = 0x5744_4b45_5900_0001;

// ---------------------------------------------------------------------------------------------
// The request, owned (Wardkey's `Request` borrows).

#[derive(Debug, Clone)]
struct Ask {
    kind: SubjectKind,
    subject: String,
    action: String,
    type_name: String,
    resource: Option<String>,
    props: Properties,
    now: DateTime<Utc>,
    ip: Option<IpAddr>,
    assurance: Assurance,
    device: Option<DeviceTrust>,
}

impl Ask {
    fn request(&self) -> Request<'_> {
        Request {
            subject: SubjectRef { kind: self.kind, id: &self.subject },
            action: &self.action,
            resource: ResourceRef { type_name: &self.type_name, id: self.resource.as_deref(), properties: &self.props },
            context: RequestContext {
                now: self.now,
                source_ip: self.ip,
                assurance: self.assurance,
                device_trust: self.device,
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Small re-statements of the data rules (names fold with `to_lowercase`; HH:MM; CIDR).

fn fold(s: &str) -> String {
    s.to_lowercase()
}

fn hhmm(s: &str) -> Option<i64> {
    let (h, m) = s.split_once(':')?;
    let two_digits = |x: &str| x.len() == 2 && x.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(h) || !two_digits(m) {
        return None;
    }
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// A network in CIDR form (a prefix is required), as (address, prefix length).
fn cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = s.split_once('/')?;
    let addr = IpAddr::from_str(addr).ok()?;
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let len: u8 = len.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((addr, len))
}

/// An address as Cedar's `ip()` reads it: IPv6 always in full hexadecimal form (Cedar refuses
/// the dotted `::ffff:a.b.c.d` notation).
fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => v6.segments().iter().map(|s| format!("{s:x}")).collect::<Vec<_>>().join(":"),
    }
}

fn assurance_level(a: Assurance) -> i64 {
    match a {
        Assurance::Password => 0,
        Assurance::Mfa => 1,
        Assurance::PhishingResistant => 2,
    }
}

fn device_level(d: DeviceTrust) -> i64 {
    match d {
        DeviceTrust::Unknown => 0,
        DeviceTrust::Registered => 1,
        DeviceTrust::Managed => 2,
        DeviceTrust::Compliant => 3,
    }
}

fn day_number(d: Day) -> i64 {
    match d {
        Day::Mon => 0,
        Day::Tue => 1,
        Day::Wed => 2,
        Day::Thu => 3,
        Day::Fri => 4,
        Day::Sat => 5,
        Day::Sun => 6,
    }
}

fn nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().expect("times in range")
}

/// Whether a CIDR network contains the address (its IPv4 form, if it has one). Used only to
/// aim requests, never to decide.
fn net_contains(net: &str, ip: IpAddr) -> bool {
    let Some((addr, len)) = cidr(net) else { return false };
    match (addr, ip.to_canonical()) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// A Cedar string literal.
fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn set_of<I: IntoIterator<Item = String>>(items: I) -> String {
    format!("[{}]", items.into_iter().collect::<Vec<_>>().join(", "))
}

/// The Cedar entity type of a resource type (by folded name; hex keeps any name an identifier).
fn cedar_type(folded: &str) -> String {
    let mut s = String::from("T_");
    for b in folded.bytes() {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn uid(ty: &str, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(EntityTypeName::from_str(ty).expect("type name"), EntityId::new(id))
}

fn uid_text(ty: &str, id: &str) -> String {
    format!("{ty}::{}", q(id))
}

/// Where the harness puts each property of the request, for the policies to read.
fn prop_expr(p: &str) -> String {
    format!("context.props[{}]", q(p))
}

/// A property with text (a string, or a number as its JSON text).
fn prop_has_text(p: &str) -> String {
    format!(
        "context.props has {p_q} && ({e}.kind == \"string\" || {e}.kind == \"number\")",
        p_q = q(p),
        e = prop_expr(p)
    )
}

// ---------------------------------------------------------------------------------------------
// The model in Cedar.

struct CedarModel {
    records: Records,
    policies: PolicySet,
    text: String,
    entities: Entities,
    zones: Vec<(String, chrono_tz::Tz)>,
    authorizer: Authorizer,
}

/// What a request names, resolved the way the crate docs describe (done here because Cedar has
/// no case-insensitive lookup).
struct Resolved {
    principal: EntityUid,
    resource: EntityUid,
}

impl CedarModel {
    fn build(records: &Records) -> CedarModel {
        let r = records;
        let mut text = String::new();

        // Resource types by folded name; a name held by more than one type resolves to none.
        let mut type_names: HashMap<String, usize> = HashMap::new();
        for t in &r.resource_types {
            *type_names.entry(fold(&t.name)).or_default() += 1;
        }
        let unique_type = |name: &str| -> Option<&ResourceType> {
            let f = fold(name);
            if type_names.get(&f) != Some(&1) {
                return None;
            }
            r.resource_types.iter().find(|t| fold(&t.name) == f)
        };
        let type_of_id = |id: ResourceTypeId| r.resource_types.iter().find(|t| t.id == id);
        let resource_entity = |id: ResourceId| -> EntityUid {
            match r.resources.iter().find(|x| x.id == id) {
                Some(res) => match type_of_id(res.type_id) {
                    Some(t) => uid(&cedar_type(&fold(&t.name)), &id.0.to_string()),
                    None => uid("Typeless", &id.0.to_string()),
                },
                None => uid("Missing", &id.0.to_string()),
            }
        };

        // Rule 1: unknown or inactive subjects are denied (an unknown principal has no status).
        text.push_str(
            "@id(\"subject-active\")\nforbid (principal, action, resource)\nunless { principal has status && principal.status == \"active\" };\n\n",
        );
        // Rule 2: unknown types and actions the type does not list are denied.
        let known: Vec<String> = r
            .resource_types
            .iter()
            .filter(|t| unique_type(&t.name).is_some())
            .map(|t| {
                let actions = set_of(t.actions.iter().map(|a| uid_text("Action", a)));
                format!("(resource is {} && action in {actions})", cedar_type(&fold(&t.name)))
            })
            .collect();
        let known = if known.is_empty() { "false".to_owned() } else { known.join("\n  || ") };
        let _ = writeln!(
            text,
            "@id(\"known-type-and-action\")\nforbid (principal, action, resource)\nunless {{\n  {known}\n}};\n"
        );

        // Zones any window names (those that parse), for the context.
        let mut zones: BTreeMap<String, chrono_tz::Tz> = BTreeMap::new();
        let conds = r.roles.iter().map(|x| &x.conditions).chain(r.grants.iter().map(|g| &g.conditions));
        for c in conds {
            for w in &c.time_windows {
                if let Ok(tz) = w.time_zone.parse::<chrono_tz::Tz>() {
                    zones.insert(w.time_zone.clone(), tz);
                }
            }
        }

        // Rule 3: forbid rules.
        for f in &r.forbid_rules {
            let mut parts = Vec::new();
            if !f.resource_types.is_empty() {
                let types: Vec<String> =
                    f.resource_types.iter().map(|t| format!("resource is {}", cedar_type(&fold(t)))).collect();
                parts.push(format!("({})", types.join(" || ")));
            }
            if !f.actions.is_empty() {
                parts.push(format!("action in {}", set_of(f.actions.iter().map(|a| uid_text("Action", a)))));
            }
            parts.push(match &f.when {
                ForbidWhen::Always => "true".to_owned(),
                ForbidWhen::DeviceTrustBelow { min } => format!("context.device < {}", device_level(*min)),
                ForbidWhen::NetworkOutside { networks } => format!("!({})", in_networks(networks)),
                ForbidWhen::ResourceProperty { property, values, unless_group } => {
                    let e = prop_expr(property);
                    let vals = set_of(values.iter().map(|v| q(v)));
                    let mut s = format!(
                        "(context.props has {p} && ((({e}.kind == \"string\" || {e}.kind == \"number\") && {vals}.contains({e}.text)) || ({e}.kind == \"array\" && {e}.items.containsAny({vals}))))",
                        p = q(property)
                    );
                    if let Some(g) = unless_group {
                        let _ = write!(s, " && !(principal has groups && principal.groups.contains({}))", q(&fold(g)));
                    }
                    s
                }
            });
            let _ = writeln!(
                text,
                "@id({})\nforbid (principal, action, resource)\nwhen {{\n  {}\n}};\n",
                q(&format!("forbid {} {}", f.id.0, f.name)),
                parts.join("\n  && ")
            );
        }

        // Rules 4 and 5: each live grant permits what its role lists, on its scope, while it
        // is valid, when the role's and its own conditions hold.
        for g in r.grants.iter().filter(|g| g.revoked_at.is_none()) {
            let Some(role) = r.roles.iter().find(|x| x.id == g.role_id) else { continue };
            let principal = match g.subject {
                Subject::User(id) => format!("principal == {}", uid_text("User", &id.0.to_string())),
                Subject::ServiceAccount(id) => format!("principal == {}", uid_text("Sa", &id.0.to_string())),
                Subject::Group(id) => format!("principal in {}", uid_text("Group", &id.0.to_string())),
            };
            let mut by_type: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for p in &role.permissions {
                by_type.entry(fold(&p.resource_type)).or_default().extend(p.actions.iter().cloned());
            }
            let mut when = vec![format!("context.now >= {}", nanos(g.starts_at))];
            if let Some(e) = g.expires_at {
                when.push(format!("context.now < {}", nanos(e)));
            }
            when.extend(conditions(&role.conditions));
            when.extend(conditions(&g.conditions));
            for (tname, actions) in by_type {
                let Some(ty) = unique_type(&tname) else { continue };
                let actions: Vec<String> =
                    actions.into_iter().filter(|a| ty.actions.contains(a)).map(|a| uid_text("Action", &a)).collect();
                if actions.is_empty() {
                    continue;
                }
                let resource = match g.resource_id {
                    None => format!("resource is {}", cedar_type(&tname)),
                    Some(scope) => format!("resource is {} in {}", cedar_type(&tname), resource_entity(scope)),
                };
                let _ = writeln!(
                    text,
                    "@id({})\npermit (\n  {principal},\n  action in {},\n  {resource}\n)\nwhen {{\n  {}\n}};\n",
                    q(&format!("grant {} role {} on {tname} ({})", g.id.0, role.name, g.source.as_str())),
                    set_of(actions),
                    when.join("\n  && ")
                );
            }
        }

        let policies = match PolicySet::from_str(&text) {
            Ok(p) => p,
            Err(e) => panic!("the generated Cedar policies do not parse: {e:?}\n{text}"),
        };

        // Entities: principals (attributes; parents are their live groups), groups, resources
        // (parent: the live parent resource).
        let mut entities = Vec::new();
        let live_group: HashMap<GroupId, &Group> = r.groups.iter().map(|g| (g.id, g)).collect();
        let groups_of = |m: Member| -> (HashSet<EntityUid>, Vec<RestrictedExpression>) {
            let mut parents = HashSet::new();
            let mut names = BTreeSet::new();
            for (gid, mm) in &r.memberships {
                if *mm == m
                    && let Some(g) = live_group.get(gid)
                {
                    parents.insert(uid("Group", &gid.0.to_string()));
                    names.insert(fold(&g.name));
                }
            }
            (parents, names.into_iter().map(RestrictedExpression::new_string).collect())
        };
        let s = |v: &str| RestrictedExpression::new_string(v.to_owned());
        for u in &r.users {
            let (parents, groups) = groups_of(Member::User(u.id));
            let mut attrs: HashMap<String, RestrictedExpression> = HashMap::new();
            attrs.insert("status".into(), s(u.status.as_str()));
            attrs.insert("id".into(), s(&u.id.0.to_string()));
            attrs.insert("username".into(), s(&u.username));
            attrs.insert("groups".into(), RestrictedExpression::new_set(groups));
            if let Some(v) = &u.hr.department {
                attrs.insert("department".into(), s(v));
            }
            if let Some(v) = &u.hr.job_code {
                attrs.insert("job_code".into(), s(v));
            }
            if let Some(v) = &u.hr.title {
                attrs.insert("title".into(), s(v));
            }
            if let Some(v) = &u.hr.employment_type {
                attrs.insert("employment_type".into(), s(v.as_str()));
            }
            entities.push(Entity::new(uid("User", &u.id.0.to_string()), attrs, parents).expect("user entity"));
        }
        for sa in &r.service_accounts {
            let (parents, groups) = groups_of(Member::ServiceAccount(sa.id));
            let mut attrs: HashMap<String, RestrictedExpression> = HashMap::new();
            attrs.insert("status".into(), s(sa.status.as_str()));
            attrs.insert("id".into(), s(&sa.id.0.to_string()));
            attrs.insert("groups".into(), RestrictedExpression::new_set(groups));
            entities.push(Entity::new(uid("Sa", &sa.id.0.to_string()), attrs, parents).expect("sa entity"));
        }
        for g in &r.groups {
            entities.push(Entity::new_no_attrs(uid("Group", &g.id.0.to_string()), HashSet::new()));
        }
        for res in &r.resources {
            let parents: HashSet<EntityUid> = res
                .parent_id
                .filter(|p| r.resources.iter().any(|x| x.id == *p))
                .map(resource_entity)
                .into_iter()
                .collect();
            entities.push(Entity::new_no_attrs(resource_entity(res.id), parents));
        }
        let entities = Entities::from_entities(entities, None).expect("entities");

        CedarModel {
            records: records.clone(),
            policies,
            text,
            entities,
            zones: zones.into_iter().collect(),
            authorizer: Authorizer::new(),
        }
    }

    /// Names to entities: a user by UUID, else by unique case-insensitive username; a service
    /// account by UUID; the type by unique case-insensitive name; the resource by UUID (of that
    /// type), else by unique case-insensitive name within the type; anything else unregistered.
    fn resolve(&self, ask: &Ask) -> Resolved {
        let r = &self.records;
        let uuid = Uuid::parse_str(&ask.subject).ok();
        let principal = match ask.kind {
            SubjectKind::User => {
                let by_id = uuid.and_then(|u| r.users.iter().find(|x| x.id.0 == u));
                let by_name = || {
                    let f = fold(&ask.subject);
                    let mut named = r.users.iter().filter(|x| fold(&x.username) == f);
                    let first = named.next()?;
                    named.next().is_none().then_some(first)
                };
                match by_id.or_else(by_name) {
                    Some(u) => uid("User", &u.id.0.to_string()),
                    None => uid("Nobody", &ask.subject),
                }
            }
            SubjectKind::ServiceAccount => match uuid.and_then(|u| r.service_accounts.iter().find(|x| x.id.0 == u)) {
                Some(sa) => uid("Sa", &sa.id.0.to_string()),
                None => uid("Nobody", &ask.subject),
            },
        };
        let tname = fold(&ask.type_name);
        let registered = self.registered(ask);
        let resource = match registered {
            Some(res) => uid(&cedar_type(&tname), &res.id.0.to_string()),
            None => uid(&cedar_type(&tname), &format!("unregistered:{}", ask.resource.as_deref().unwrap_or(""))),
        };
        Resolved { principal, resource }
    }

    /// The registered resource a request names: by UUID within its type, else by unique
    /// case-insensitive name within it.
    fn registered(&self, ask: &Ask) -> Option<&wardkey_domain::Resource> {
        let r = &self.records;
        let tname = fold(&ask.type_name);
        let ty = {
            let mut named = r.resource_types.iter().filter(|t| fold(&t.name) == tname);
            named.next().filter(|_| named.next().is_none())
        }?;
        let id = ask.resource.as_ref()?;
        let by_id =
            Uuid::parse_str(id).ok().and_then(|u| r.resources.iter().find(|x| x.id.0 == u && x.type_id == ty.id));
        by_id.or_else(|| {
            let f = fold(id);
            let mut named = r.resources.iter().filter(|x| x.type_id == ty.id && fold(&x.name) == f);
            let first = named.next()?;
            named.next().is_none().then_some(first)
        })
    }

    fn context(&self, ask: &Ask) -> Context {
        let mut pairs: Vec<(String, RestrictedExpression)> = vec![
            ("now".into(), RestrictedExpression::new_long(nanos(ask.now))),
            ("assurance".into(), RestrictedExpression::new_long(assurance_level(ask.assurance))),
            ("device".into(), RestrictedExpression::new_long(device_level(ask.device.unwrap_or(DeviceTrust::Unknown)))),
        ];
        if let Some(ip) = ask.ip {
            // A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d; networks are IPv4.
            pairs.push(("ip".into(), RestrictedExpression::new_ip(ip_text(ip.to_canonical()))));
        }
        let zones = self.zones.iter().map(|(name, tz)| {
            let local = ask.now.with_timezone(tz);
            let rec = RestrictedExpression::new_record([
                ("day".to_owned(), RestrictedExpression::new_long(i64::from(local.weekday().num_days_from_monday()))),
                ("minute".to_owned(), RestrictedExpression::new_long(i64::from(local.hour() * 60 + local.minute()))),
            ])
            .expect("zone record");
            (name.clone(), rec)
        });
        pairs.push(("tz".into(), RestrictedExpression::new_record(zones).expect("zones")));
        // A registered resource's stored attributes win over what the request says about it
        // (the crate docs: a PEP cannot re-label a record the store describes).
        let mut merged = ask.props.clone();
        if let Some(res) = self.registered(ask) {
            for (k, v) in &res.attributes {
                merged.insert(k.clone(), serde_json::Value::String(v.clone()));
            }
        }
        let props = merged.iter().map(|(k, v)| (k.clone(), prop_record(v)));
        pairs.push(("props".into(), RestrictedExpression::new_record(props).expect("props")));
        Context::from_pairs(pairs).expect("context")
    }

    fn decide(&self, ask: &Ask) -> (bool, Response) {
        let who = self.resolve(ask);
        let request =
            CedarRequest::new(who.principal, uid("Action", &ask.action), who.resource, self.context(ask), None)
                .expect("cedar request");
        let response = self.authorizer.is_authorized(&request, &self.policies, &self.entities);
        (response.decision() == CedarDecision::Allow, response)
    }
}

/// A JSON property as data the policies can compare: its kind, its text (strings as they are,
/// numbers as their JSON text), that text lower-cased (for group names), and the strings of an
/// array.
fn prop_record(v: &serde_json::Value) -> RestrictedExpression {
    let (kind, text) = match v {
        serde_json::Value::String(s) => ("string", s.clone()),
        serde_json::Value::Number(n) => ("number", n.to_string()),
        serde_json::Value::Array(_) => ("array", String::new()),
        _ => ("other", String::new()),
    };
    let items: Vec<RestrictedExpression> = match v {
        serde_json::Value::Array(items) => items
            .iter()
            .filter_map(|i| match i {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .map(RestrictedExpression::new_string)
            .collect(),
        _ => Vec::new(),
    };
    RestrictedExpression::new_record([
        ("kind".to_owned(), RestrictedExpression::new_string(kind.to_owned())),
        ("folded".to_owned(), RestrictedExpression::new_string(fold(&text))),
        ("text".to_owned(), RestrictedExpression::new_string(text)),
        ("items".to_owned(), RestrictedExpression::new_set(items)),
    ])
    .expect("property record")
}

/// `context.ip` is in one of the networks (those that do not parse match nothing).
fn in_networks(networks: &[String]) -> String {
    let nets: Vec<String> = networks
        .iter()
        .filter_map(|n| cidr(n))
        .map(|(addr, len)| format!("context.ip.isInRange(ip({}))", q(&format!("{}/{len}", ip_text(addr)))))
        .collect();
    if nets.is_empty() { "false".to_owned() } else { format!("context has ip && ({})", nets.join(" || ")) }
}

/// The conditions as Cedar conjuncts.
fn conditions(c: &Conditions) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(a) = c.min_assurance {
        out.push(format!("context.assurance >= {}", assurance_level(a)));
    }
    if !c.networks.is_empty() {
        out.push(format!("({})", in_networks(&c.networks)));
    }
    if !c.time_windows.is_empty() {
        let ws: Vec<String> = c.time_windows.iter().map(window).collect();
        out.push(format!("({})", ws.join(" || ")));
    }
    if let Some(d) = c.min_device_trust {
        out.push(format!("context.device >= {}", device_level(d)));
    }
    for rule in &c.attribute_rules {
        out.push(attribute_rule(rule));
    }
    out
}

/// A shift: `start <= minute < end` on a listed day; when `end <= start` it spans midnight and
/// belongs to the day it starts, so the part after midnight is on the day after a listed day.
fn window(w: &TimeWindow) -> String {
    let (Ok(_), Some(start), Some(end)) = (w.time_zone.parse::<chrono_tz::Tz>(), hhmm(&w.start), hhmm(&w.end)) else {
        return "false".to_owned();
    };
    let t = format!("context.tz[{}]", q(&w.time_zone));
    let on = |shift: i64| -> String {
        if w.days.is_empty() {
            "true".to_owned()
        } else {
            let days: BTreeSet<i64> = w.days.iter().map(|d| (day_number(*d) + shift) % 7).collect();
            format!("{}.contains({t}.day)", set_of(days.into_iter().map(|d| d.to_string())))
        }
    };
    if start < end {
        format!("({start} <= {t}.minute && {t}.minute < {end} && {})", on(0))
    } else {
        format!("(({t}.minute >= {start} && {}) || ({t}.minute < {end} && {}))", on(0), on(1))
    }
}

fn attribute_rule(rule: &AttributeRule) -> String {
    let p = &rule.resource_property;
    let e = prop_expr(p);
    let attr = rule.subject_attribute.as_str();
    match rule.op {
        AttributeOp::Equals => match attr {
            "id" | "username" | "department" | "job_code" | "title" | "employment_type" => {
                format!("({} && principal has {attr} && principal.{attr} == {e}.text)", prop_has_text(p))
            }
            _ => "false".to_owned(),
        },
        AttributeOp::In => match attr {
            "groups" => {
                format!("({} && principal has groups && principal.groups.contains({e}.folded))", prop_has_text(p))
            }
            _ => "false".to_owned(),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Random models and requests.

fn id(kind: u128, i: usize) -> Uuid {
    Uuid::from_u128((kind << 112) | i as u128)
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).single().unwrap()
}

const USERNAMES: [&str; 9] = ["ann", "bob", "cy", "dee", "eve", "fay", "gus", "1001", "hal"];
const GROUP_NAMES: [&str; 7] = ["nurses", "doctors", "admins", "42", "clearance-psych", "ärzte", "oncall"];
const TYPE_NAMES: [&str; 6] = ["dataset", "Application", "record_set", "Ärzte-Daten", "unit", "doc"];
const ACTIONS: [&str; 7] = ["read", "write", "delete", "export", "approve", "Read", "list"];
const RESOURCE_NAMES: [&str; 6] = ["a", "A", "b", "ward-1", "Ward-1", "c"];
const DEPARTMENTS: [&str; 4] = ["cardio", "onco", "42", "1.5"];
const JOB_CODES: [&str; 3] = ["42", "7", "rn"];
const TITLES: [&str; 2] = ["Nurse", "nurse"];
const PROPERTIES: [&str; 8] = ["owner", "department", "care_team", "category", "job", "Owner", "emp", "odd \"key\""];
const FORBID_VALUES: [&str; 5] = ["psychiatry", "hiv", "42", "Psychiatry", "ärzte"];
const NETWORKS: [&str; 12] = [
    "10.0.0.0/8",
    "10.1.2.3/16",
    "192.168.1.0/24",
    "0.0.0.0/0",
    "2001:db8::/32",
    "::/0",
    "10.20.30.40/32",
    "::ffff:10.0.0.0/104",
    "10.0.0.1",
    "300.0.0.0/8",
    "10.0.0.0/33",
    "lan",
];
const IPS: [&str; 11] = [
    "10.1.2.3",
    "10.200.0.1",
    "192.168.1.77",
    "8.8.8.8",
    "2001:db8::1",
    "2001:db9::1",
    "::ffff:10.1.2.3",
    "::ffff:8.8.8.8",
    "::1",
    "10.20.30.40",
    "127.0.0.1",
];
const ZONES: [&str; 7] = [
    "Europe/London",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "UTC",
    "Mars/Olympus",
];
const CLOCK: [&str; 12] =
    ["00:00", "07:00", "08:15", "12:30", "17:45", "19:00", "23:59", "23:00", "06:30", "24:00", "7:00", "12:60"];
const DAYS: [Day; 7] = [Day::Mon, Day::Tue, Day::Wed, Day::Thu, Day::Fri, Day::Sat, Day::Sun];

struct Gen {
    rng: StdRng,
}

impl Gen {
    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }
    fn below(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n)
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        xs.choose(&mut self.rng).expect("non-empty")
    }
    fn some<T>(&mut self, p: f64, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
        if self.chance(p) { Some(f(self)) } else { None }
    }
    /// Another spelling of the same name now and then.
    fn recase(&mut self, s: &str) -> String {
        match self.below(6) {
            0 => s.to_uppercase(),
            1 => {
                let mut c = s.chars();
                c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
            }
            _ => s.to_owned(),
        }
    }
    /// A time in the two months around the DST changes of spring 2026, often on a quarter hour.
    fn time(&mut self) -> DateTime<Utc> {
        let secs = self.rng.random_range(-10 * 86_400..50 * 86_400_i64);
        let t = t0() + Duration::seconds(secs);
        if self.chance(0.4) {
            let q = t.timestamp() - t.timestamp().rem_euclid(900);
            Utc.timestamp_opt(q, 0).single().unwrap()
        } else if self.chance(0.2) {
            t + Duration::nanoseconds(self.rng.random_range(0..1_000_000_000))
        } else {
            t
        }
    }

    fn window(&mut self) -> TimeWindow {
        let n = if self.chance(0.95) { 6 } else { 7 };
        let zone = *self.pick(&ZONES[..n]);
        let clock = if self.chance(0.93) { &CLOCK[..9] } else { &CLOCK[..] };
        let start = (*self.pick(clock)).to_owned();
        let end = if self.chance(0.1) { start.clone() } else { (*self.pick(clock)).to_owned() };
        let days = if self.chance(0.4) {
            Vec::new()
        } else {
            let n = 1 + self.below(4);
            (0..n).map(|_| *self.pick(&DAYS)).collect()
        };
        TimeWindow { time_zone: zone.to_owned(), days, start, end }
    }

    /// One to three networks, now and then one that does not parse; or only such a one.
    fn networks(&mut self) -> Vec<String> {
        if self.chance(0.15) {
            return vec![(*self.pick(&NETWORKS[8..])).to_owned()];
        }
        let n = 1 + self.below(3);
        (0..n)
            .map(|_| {
                let pool = if self.chance(0.9) { &NETWORKS[..8] } else { &NETWORKS[..] };
                (*self.pick(pool)).to_owned()
            })
            .collect()
    }

    fn rule(&mut self) -> AttributeRule {
        let resource_property = (*self.pick(&PROPERTIES)).to_owned();
        let (op, subject_attribute) = match self.below(10) {
            0..=2 => (AttributeOp::In, "groups"),
            3 => (AttributeOp::In, *self.pick(&["department", "id"])),
            4 => (AttributeOp::Equals, *self.pick(&["groups", "email"])),
            _ => (
                AttributeOp::Equals,
                *self.pick(&["id", "username", "department", "job_code", "title", "employment_type"]),
            ),
        };
        AttributeRule { resource_property, op, subject_attribute: subject_attribute.to_owned() }
    }

    fn conditions(&mut self, p: f64) -> Conditions {
        if !self.chance(p) {
            return Conditions::default();
        }
        let assurances = [Assurance::Password, Assurance::Mfa, Assurance::PhishingResistant];
        let devices = [DeviceTrust::Unknown, DeviceTrust::Registered, DeviceTrust::Managed, DeviceTrust::Compliant];
        Conditions {
            min_assurance: self.some(0.35, |g| *g.pick(&assurances)),
            networks: if self.chance(0.3) { self.networks() } else { Vec::new() },
            time_windows: if self.chance(0.3) {
                (0..1 + self.below(2)).map(|_| self.window()).collect()
            } else {
                Vec::new()
            },
            min_device_trust: self.some(0.3, |g| *g.pick(&devices)),
            attribute_rules: if self.chance(0.35) {
                (0..1 + self.below(2)).map(|_| self.rule()).collect()
            } else {
                Vec::new()
            },
        }
    }

    fn model(&mut self) -> Records {
        let at = t0() - Duration::days(100);
        let n_users = 4 + self.below(5);
        let users: Vec<User> = (0..n_users)
            .map(|i| {
                let name = if i > 0 && self.chance(0.08) {
                    USERNAMES[0].to_uppercase()
                } else {
                    USERNAMES[i % USERNAMES.len()].to_owned()
                };
                let status = match self.below(16) {
                    0 => UserStatus::Suspended,
                    1 => UserStatus::Disabled,
                    2 => UserStatus::PendingVerification,
                    _ => UserStatus::Active,
                };
                User {
                    id: UserId(id(1, i)),
                    username: name,
                    display_name: None,
                    email: None,
                    status,
                    hr: HrAttributes {
                        department: self.some(0.7, |g| (*g.pick(&DEPARTMENTS)).to_owned()),
                        job_code: self.some(0.6, |g| (*g.pick(&JOB_CODES)).to_owned()),
                        title: self.some(0.5, |g| (*g.pick(&TITLES)).to_owned()),
                        employment_type: self.some(0.5, |g| {
                            *g.pick(&[EmploymentType::Employee, EmploymentType::Contractor, EmploymentType::Vendor])
                        }),
                        ..HrAttributes::default()
                    },
                    verification: None,
                    created_at: at,
                    updated_at: at,
                    version: 1,
                }
            })
            .collect();
        let n_sas = 1 + self.below(3);
        let service_accounts: Vec<ServiceAccount> = (0..n_sas)
            .map(|i| ServiceAccount {
                id: ServiceAccountId(id(2, i)),
                name: format!("svc-{i}"),
                description: None,
                owner_id: UserId(id(1, 0)),
                status: if self.chance(0.2) { ServiceAccountStatus::Disabled } else { ServiceAccountStatus::Active },
                created_at: at,
                updated_at: at,
                version: 1,
            })
            .collect();
        // Group ids run one past the records: the last one has none (a removed group).
        let n_groups = 2 + self.below(4);
        let groups: Vec<Group> = (0..n_groups)
            .map(|i| {
                let name = if i > 0 && self.chance(0.08) {
                    GROUP_NAMES[0].to_uppercase()
                } else {
                    GROUP_NAMES[i % GROUP_NAMES.len()].to_owned()
                };
                Group { id: GroupId(id(3, i)), name, description: None, created_at: at, updated_at: at, version: 1 }
            })
            .collect();
        let mut memberships = Vec::new();
        for g in 0..=n_groups {
            for u in 0..=n_users {
                if self.chance(if u == n_users { 0.1 } else { 0.35 }) {
                    memberships.push((GroupId(id(3, g)), Member::User(UserId(id(1, u)))));
                }
            }
            for s in 0..n_sas {
                if self.chance(0.3) {
                    memberships.push((GroupId(id(3, g)), Member::ServiceAccount(ServiceAccountId(id(2, s)))));
                }
            }
        }

        let n_types = 2 + self.below(3);
        let mut type_names: Vec<&str> = TYPE_NAMES.to_vec();
        let mut resource_types: Vec<ResourceType> = (0..n_types)
            .map(|i| {
                let name = type_names.remove(self.below(type_names.len()));
                let n_actions = 2 + self.below(3);
                let mut actions: Vec<String> = Vec::new();
                while actions.len() < n_actions {
                    let a = (*self.pick(&ACTIONS)).to_owned();
                    if !actions.contains(&a) {
                        actions.push(a);
                    }
                }
                actions.sort();
                ResourceType {
                    id: ResourceTypeId(id(4, i)),
                    name: name.to_owned(),
                    description: None,
                    actions,
                    phi: false,
                    decision_audit: Default::default(),
                    created_at: at,
                    updated_at: at,
                    version: 1,
                }
            })
            .collect();
        // Now and then a second type whose name differs only in case: both are ambiguous.
        if self.chance(0.05) {
            let mut twin = resource_types[0].clone();
            twin.id = ResourceTypeId(id(4, n_types));
            twin.name = twin.name.to_uppercase();
            resource_types.push(twin);
        }
        let n_types = resource_types.len();

        let n_resources = 4 + self.below(12);
        let mut depth: Vec<usize> = Vec::new();
        let mut resources: Vec<Resource> = Vec::new();
        for i in 0..n_resources {
            let parent = if i == 0 || self.chance(0.3) {
                None
            } else if self.chance(0.05) {
                Some((ResourceId(id(5, 800 + self.below(4))), 0))
            } else {
                let shallow: Vec<usize> = (0..i).filter(|j| depth[*j] < 3).collect();
                shallow.choose(&mut self.rng).map(|j| (resources[*j].id, depth[*j] + 1))
            };
            depth.push(parent.map_or(0, |(_, d)| d));
            let mut attributes = BTreeMap::new();
            if self.chance(0.3) {
                attributes.insert("owner".to_owned(), USERNAMES[self.below(3)].to_owned());
            }
            resources.push(Resource {
                id: ResourceId(id(5, i)),
                type_id: resource_types[self.below(n_types)].id,
                name: (*self.pick(&RESOURCE_NAMES)).to_owned(),
                parent_id: parent.map(|(p, _)| p),
                description: None,
                attributes,
                created_at: at,
                updated_at: at,
                version: 1,
            });
        }

        let n_roles = 3 + self.below(4);
        let roles: Vec<Role> = (0..n_roles)
            .map(|i| {
                let n_perms = 1 + self.below(2);
                let permissions = (0..n_perms)
                    .map(|_| {
                        let resource_type = if self.chance(0.05) {
                            "nosuchtype".to_owned()
                        } else {
                            let t = &resource_types[self.below(n_types)];
                            if self.chance(0.15) { fold(&t.name) } else { t.name.clone() }
                        };
                        let ty_actions: Vec<String> = resource_types
                            .iter()
                            .find(|t| fold(&t.name) == fold(&resource_type))
                            .map(|t| t.actions.clone())
                            .unwrap_or_default();
                        let mut actions: Vec<String> =
                            ty_actions.iter().filter(|_| self.chance(0.6)).cloned().collect();
                        if actions.is_empty() || self.chance(0.05) {
                            actions.push((*self.pick(&ACTIONS)).to_owned());
                        }
                        Permission { resource_type, actions }
                    })
                    .collect();
                Role {
                    id: RoleId(id(6, i)),
                    name: format!("role-{i}"),
                    description: None,
                    permissions,
                    privileged: false,
                    session_policy: Default::default(),
                    conditions: self.conditions(0.35),
                    break_glass: self.chance(0.15),
                    created_at: at,
                    updated_at: at,
                    version: 1,
                }
            })
            .collect();

        let n_grants = 10 + self.below(16);
        let grants: Vec<Grant> = (0..n_grants)
            .map(|i| {
                // Now and then a holder with no record (a removed user, group or account).
                let gone = usize::from(self.chance(0.06));
                let subject = match self.below(10) {
                    0..=4 => Subject::User(UserId(id(1, if gone == 1 { n_users } else { self.below(n_users) }))),
                    5..=7 => Subject::Group(GroupId(id(3, if gone == 1 { n_groups } else { self.below(n_groups) }))),
                    _ => Subject::ServiceAccount(ServiceAccountId(id(
                        2,
                        if gone == 1 { n_sas } else { self.below(n_sas) },
                    ))),
                };
                let resource_id = if self.chance(0.45) {
                    None
                } else if self.chance(0.05) {
                    Some(ResourceId(id(5, 800 + self.below(4))))
                } else {
                    Some(resources[self.below(n_resources)].id)
                };
                let starts_at = if self.chance(0.6) { at } else { self.time() };
                let expires_at = if self.chance(0.5) {
                    None
                } else {
                    let e = self.time();
                    Some(if e > starts_at { e } else { starts_at + Duration::days(1 + self.below(30) as i64) })
                };
                let revoked = self.chance(0.08);
                Grant {
                    id: GrantId(id(7, i)),
                    subject,
                    role_id: RoleId(id(6, if self.chance(0.05) { n_roles } else { self.below(n_roles) })),
                    resource_id,
                    source: if self.chance(0.12) { GrantSource::BreakGlass } else { *self.pick(&GrantSource::ALL) },
                    requester: None,
                    approver: None,
                    justification: None,
                    starts_at,
                    expires_at,
                    created_at: at,
                    created_by: "oracle".to_owned(),
                    revoked_at: revoked.then_some(at),
                    revoked_by: revoked.then(|| "oracle".to_owned()),
                    conditions: self.conditions(0.3),
                    version: 1,
                }
            })
            .collect();

        let n_forbids = self.below(4);
        let forbid_rules: Vec<ForbidRule> = (0..n_forbids)
            .map(|i| {
                let resource_types = if self.chance(0.5) {
                    Vec::new()
                } else {
                    let t = &resource_types[self.below(n_types)].name.clone();
                    let mut v = vec![self.recase(t)];
                    if self.chance(0.2) {
                        v.push("nosuchtype".to_owned());
                    }
                    v
                };
                let actions = if self.chance(0.5) {
                    Vec::new()
                } else {
                    (0..1 + self.below(2)).map(|_| (*self.pick(&ACTIONS)).to_owned()).collect()
                };
                let when = match self.below(4) {
                    // A blanket ban on everything would leave nothing to compare.
                    0 if !resource_types.is_empty() || !actions.is_empty() => ForbidWhen::Always,
                    0 => ForbidWhen::DeviceTrustBelow { min: DeviceTrust::Registered },
                    1 => ForbidWhen::DeviceTrustBelow {
                        min: *self.pick(&[DeviceTrust::Registered, DeviceTrust::Managed, DeviceTrust::Compliant]),
                    },
                    2 => ForbidWhen::NetworkOutside { networks: self.networks() },
                    _ => ForbidWhen::ResourceProperty {
                        property: (*self.pick(&PROPERTIES[..5])).to_owned(),
                        values: (0..1 + self.below(2)).map(|_| (*self.pick(&FORBID_VALUES)).to_owned()).collect(),
                        unless_group: self.some(0.7, |g| {
                            let name = *g.pick(&GROUP_NAMES[..4]);
                            g.recase(name)
                        }),
                    },
                };
                ForbidRule {
                    id: ForbidRuleId(id(8, i)),
                    name: format!("forbid-{i}"),
                    description: None,
                    resource_types,
                    actions,
                    when,
                    created_at: at,
                    updated_at: at,
                    version: 1,
                }
            })
            .collect();

        Records {
            revision: 1,
            users,
            service_accounts,
            groups,
            memberships,
            resource_types,
            resources,
            roles,
            grants,
            forbid_rules,
        }
    }

    fn prop_value(&mut self, r: &Records) -> serde_json::Value {
        use serde_json::json;
        match self.below(14) {
            0 => json!(r.users[self.below(r.users.len())].id.0.to_string()),
            1 => json!(r.users[self.below(r.users.len())].id.0.to_string().to_uppercase()),
            2 => {
                let u = &r.users[self.below(r.users.len())].username.clone();
                json!(self.recase(u))
            }
            3 => json!(*self.pick(&DEPARTMENTS)),
            4 => {
                let g = *self.pick(&GROUP_NAMES);
                json!(self.recase(g))
            }
            5 => json!(*self.pick(&FORBID_VALUES)),
            6 => self.pick(&[json!(42), json!(7), json!(1.5), json!(-3), json!(4.0), json!(1001)]).clone(),
            7 => {
                let n = self.below(3);
                let items: Vec<serde_json::Value> = (0..n)
                    .map(|_| if self.chance(0.8) { json!(*self.pick(&FORBID_VALUES)) } else { json!(42) })
                    .collect();
                json!(items)
            }
            8 => self.pick(&[json!(true), json!(null), json!({"a": "psychiatry"})]).clone(),
            9 => json!(*self.pick(&JOB_CODES)),
            10 => json!(*self.pick(&TITLES)),
            11 => json!(*self.pick(&["employee", "contractor", "Employee"])),
            12 => json!(r.service_accounts[self.below(r.service_accounts.len())].id.0.to_string()),
            _ => json!(""),
        }
    }

    /// A request: 60% of them aimed at what some grant gives (its holder, a type and action
    /// its role lists, a resource under its scope, a time while it is valid, properties that
    /// meet its rules), the others anywhere.
    fn ask(&mut self, r: &Records) -> Ask {
        let ask = self.anywhere(r);
        if self.chance(0.6) { self.aim(r, ask) } else { ask }
    }

    fn aim(&mut self, r: &Records, mut ask: Ask) -> Ask {
        let live: Vec<&Grant> = r.grants.iter().filter(|g| g.revoked_at.is_none()).collect();
        let Some(g) = live.choose(&mut self.rng).copied() else { return ask };
        let holder = match g.subject {
            Subject::User(u) => Some(Member::User(u)),
            Subject::ServiceAccount(s) => Some(Member::ServiceAccount(s)),
            Subject::Group(gid) => {
                let members: Vec<Member> = r.memberships.iter().filter(|(x, _)| *x == gid).map(|(_, m)| *m).collect();
                members.choose(&mut self.rng).copied()
            }
        };
        match holder {
            Some(Member::User(u)) => {
                ask.kind = SubjectKind::User;
                ask.subject = match r.users.iter().find(|x| x.id == u) {
                    Some(user) if self.chance(0.3) => {
                        let name = user.username.clone();
                        self.recase(&name)
                    }
                    _ => u.0.to_string(),
                };
            }
            Some(Member::ServiceAccount(s)) => {
                ask.kind = SubjectKind::ServiceAccount;
                ask.subject = s.0.to_string();
            }
            None => {}
        }
        let role = r.roles.iter().find(|x| x.id == g.role_id);
        let perm = role.and_then(|x| x.permissions.choose(&mut self.rng));
        let ty = perm.and_then(|p| r.resource_types.iter().find(|t| fold(&t.name) == fold(&p.resource_type)));
        if let (Some(p), Some(ty)) = (perm, ty) {
            ask.type_name = self.recase(&ty.name);
            let actions: Vec<&String> = p.actions.iter().filter(|a| ty.actions.contains(a)).collect();
            if let Some(a) = actions.choose(&mut self.rng) {
                ask.action = (*a).clone();
            }
            // A resource of the type under the scope (the scope itself included).
            let under = |res: &Resource| -> bool {
                let Some(scope) = g.resource_id else { return true };
                let mut cur = Some(res.id);
                for _ in 0..8 {
                    match cur {
                        Some(c) if c == scope => return true,
                        Some(c) => cur = r.resources.iter().find(|x| x.id == c).and_then(|x| x.parent_id),
                        None => return false,
                    }
                }
                false
            };
            let fits: Vec<&Resource> = r.resources.iter().filter(|x| x.type_id == ty.id && under(x)).collect();
            if let Some(res) = fits.choose(&mut self.rng)
                && self.chance(0.85)
            {
                ask.resource = Some(if self.chance(0.2) { res.name.clone() } else { res.id.0.to_string() });
            }
        }
        if self.chance(0.7) {
            let end = g.expires_at.unwrap_or(t0() + Duration::days(50));
            let span = (end - g.starts_at).num_seconds().max(1);
            ask.now = g.starts_at + Duration::seconds(self.rng.random_range(0..span));
        }
        let conds: Vec<&Conditions> = role.iter().map(|x| &x.conditions).chain([&g.conditions]).collect();
        // A time in (or at the very edge of) one of the windows.
        let windows: Vec<&TimeWindow> = conds.iter().flat_map(|c| c.time_windows.iter()).collect();
        if let Some(w) = windows.choose(&mut self.rng).copied()
            && self.chance(0.8)
            && let Some(t) = self.in_window(w, ask.now)
        {
            ask.now = t;
        }
        // Exactly at the grant's start or expiry, or just before.
        if self.chance(0.15) {
            let edge = match g.expires_at {
                Some(e) if self.chance(0.7) => e,
                _ => g.starts_at,
            };
            ask.now = if self.chance(0.3) { edge - Duration::nanoseconds(1) } else { edge };
        }
        // An address in every network list of the conditions, when there is one.
        let inside: Vec<IpAddr> = IPS
            .iter()
            .map(|i| IpAddr::from_str(i).unwrap())
            .filter(|ip| conds.iter().all(|c| c.networks.is_empty() || c.networks.iter().any(|n| net_contains(n, *ip))))
            .collect();
        if let Some(ip) = inside.choose(&mut self.rng)
            && self.chance(0.8)
        {
            ask.ip = Some(*ip);
        }
        // Properties that meet the role's and the grant's attribute rules, mostly.
        let rules = role.iter().flat_map(|x| x.conditions.attribute_rules.iter()).chain(&g.conditions.attribute_rules);
        let user = match holder {
            Some(Member::User(u)) => r.users.iter().find(|x| x.id == u),
            _ => None,
        };
        let groups: Vec<String> = r
            .memberships
            .iter()
            .filter(|(_, m)| Some(*m) == holder)
            .filter_map(|(gid, _)| r.groups.iter().find(|x| x.id == *gid).map(|x| x.name.clone()))
            .collect();
        for rule in rules.cloned().collect::<Vec<_>>() {
            if !self.chance(0.8) {
                continue;
            }
            let value = match (rule.subject_attribute.as_str(), user) {
                ("groups", _) => match groups.choose(&mut self.rng) {
                    Some(name) => {
                        let name = name.clone();
                        Some(self.recase(&name))
                    }
                    None => None,
                },
                ("id", _) => Some(ask.subject.clone()),
                ("username", Some(u)) => Some(u.username.clone()),
                ("department", Some(u)) => u.hr.department.clone(),
                ("job_code", Some(u)) => u.hr.job_code.clone(),
                ("title", Some(u)) => u.hr.title.clone(),
                ("employment_type", Some(u)) => u.hr.employment_type.map(|e| e.as_str().to_owned()),
                _ => None,
            };
            if let Some(v) = value {
                // Numeric attributes also as JSON numbers (1.5 and 42 match "1.5" and "42"; 42.0
                // has the text "42.0").
                let v = match (v.parse::<i64>(), v.parse::<f64>(), self.below(10)) {
                    (Ok(n), _, 0..=3) => serde_json::json!(n),
                    (Ok(n), _, 4) => serde_json::json!(n as f64),
                    (_, Ok(x), 0..=4) => serde_json::json!(x),
                    _ => serde_json::json!(v),
                };
                ask.props.insert(rule.resource_property.clone(), v);
            }
        }
        // Now and then a property a forbid rule looks for.
        let by_property: Vec<&ForbidRule> =
            r.forbid_rules.iter().filter(|f| matches!(f.when, ForbidWhen::ResourceProperty { .. })).collect();
        // Mostly one the holder is exempt from by a group, when there is one.
        let exempt: Vec<&ForbidRule> = by_property
            .iter()
            .copied()
            .filter(|f| match &f.when {
                ForbidWhen::ResourceProperty { unless_group: Some(u), .. } => groups.iter().any(|g| fold(g) == fold(u)),
                _ => false,
            })
            .collect();
        let pool = if !exempt.is_empty() && self.chance(0.6) { &exempt } else { &by_property };
        if let Some(f) = pool.choose(&mut self.rng)
            && let ForbidWhen::ResourceProperty { property, values, .. } = &f.when
            && self.chance(0.3)
        {
            let v = self.pick(values).clone();
            let v = match self.below(10) {
                0..=4 => serde_json::json!(v),
                5..=7 => serde_json::json!(["other", v, 42]),
                8 => serde_json::json!(self.recase(&v)),
                _ => match v.parse::<i64>() {
                    Ok(n) => serde_json::json!(n),
                    Err(_) => serde_json::json!([v.to_uppercase()]),
                },
            };
            ask.props.insert(property.clone(), v);
        }
        if self.chance(0.6) {
            ask.assurance = Assurance::PhishingResistant;
        }
        if self.chance(0.5) {
            ask.device = Some(DeviceTrust::Compliant);
        }
        ask
    }

    /// An instant near `near` whose local time in the window's zone is inside the window or at
    /// one of its edges.
    fn in_window(&mut self, w: &TimeWindow, near: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let tz: chrono_tz::Tz = w.time_zone.parse().ok()?;
        let (start, end) = (hhmm(&w.start)?, hhmm(&w.end)?);
        let span = if end > start { end - start } else { end + 1440 - start };
        let offset = match self.below(6) {
            0 => 0,
            1 => span - 1,
            2 => span,
            3 => -1,
            _ => self.rng.random_range(0..span.max(1)),
        };
        let local = near.with_timezone(&tz).date_naive();
        let date = match w.days.choose(&mut self.rng) {
            Some(d) => {
                let ahead = (day_number(*d) - i64::from(local.weekday().num_days_from_monday())).rem_euclid(7);
                local + Duration::days(ahead)
            }
            None => local,
        };
        let at = date.and_hms_opt(0, 0, 0)? + Duration::minutes(start + offset);
        tz.from_local_datetime(&at).earliest().map(|t| t.with_timezone(&Utc))
    }

    fn anywhere(&mut self, r: &Records) -> Ask {
        // Subject: mostly a known one.
        let (kind, subject) = match self.below(30) {
            0 => (SubjectKind::User, Uuid::from_u128(self.rng.random()).to_string()),
            1 => (SubjectKind::User, "nobody".to_owned()),
            2 => (SubjectKind::ServiceAccount, r.users[0].id.0.to_string()),
            3..=5 => {
                let sa = &r.service_accounts[self.below(r.service_accounts.len())];
                (SubjectKind::ServiceAccount, sa.id.0.to_string())
            }
            6 => (SubjectKind::User, id(1, r.users.len()).to_string()),
            7..=10 => {
                let u = &r.users[self.below(r.users.len())].username.clone();
                (SubjectKind::User, self.recase(u))
            }
            11 => (SubjectKind::User, r.users[self.below(r.users.len())].id.0.simple().to_string()),
            13 => (SubjectKind::ServiceAccount, r.service_accounts[0].name.clone()),
            12 => (SubjectKind::User, id(1, 0).to_string().to_uppercase()),
            _ => (SubjectKind::User, r.users[self.below(r.users.len())].id.0.to_string()),
        };
        let ty = &r.resource_types[self.below(r.resource_types.len())];
        let type_name = if self.chance(0.04) { "nosuchtype".to_owned() } else { self.recase(&ty.name) };
        let action =
            if self.chance(0.85) { (*self.pick(&ty.actions)).clone() } else { (*self.pick(&ACTIONS)).to_owned() };
        let resource = match self.below(20) {
            0..=1 => None,
            2..=10 => {
                // Mostly one of the requested type (others are unregistered for this type).
                let of_type: Vec<&Resource> = r.resources.iter().filter(|x| x.type_id == ty.id).collect();
                let res = if !of_type.is_empty() && self.chance(0.8) {
                    *self.pick(&of_type)
                } else {
                    &r.resources[self.below(r.resources.len())]
                };
                Some(if self.chance(0.1) { res.id.0.to_string().to_uppercase() } else { res.id.0.to_string() })
            }
            11..=14 => {
                let n = (*self.pick(&RESOURCE_NAMES)).to_owned();
                Some(self.recase(&n))
            }
            15 => Some(String::new()),
            16 => Some(id(5, 800 + self.below(6)).to_string()),
            _ => Some(format!("app-record-{}", self.below(100))),
        };
        let mut props = Properties::new();
        for _ in 0..self.below(4) {
            let k = (*self.pick(&PROPERTIES)).to_owned();
            let v = self.prop_value(r);
            props.insert(k, v);
        }
        // Time: now and then exactly at a grant's start or expiry, or just before it.
        let now = match self.below(10) {
            0 | 1 => {
                let g = &r.grants[self.below(r.grants.len())];
                let edge = match (self.chance(0.5), g.expires_at) {
                    (true, Some(e)) => e,
                    _ => g.starts_at,
                };
                if self.chance(0.3) { edge - Duration::nanoseconds(1) } else { edge }
            }
            _ => self.time(),
        };
        let ip = self.some(0.85, |g| g.pick(&IPS).parse::<IpAddr>().unwrap());
        let assurance = *self.pick(&[Assurance::Password, Assurance::Mfa, Assurance::PhishingResistant]);
        let device = self.some(0.7, |g| {
            *g.pick(&[DeviceTrust::Unknown, DeviceTrust::Registered, DeviceTrust::Managed, DeviceTrust::Compliant])
        });
        Ask { kind, subject, action, type_name, resource, props, now, ip, assurance, device }
    }
}

// ---------------------------------------------------------------------------------------------
// Comparing, shrinking, reporting.

struct Outcome {
    wardkey: Decision,
    check: bool,
    cedar: bool,
    response: Response,
}

impl Outcome {
    fn disagrees(&self) -> bool {
        self.wardkey.allow != self.cedar
            || self.check != self.wardkey.allow
            || self.response.diagnostics().errors().next().is_some()
    }
}

fn run(index: &Index, cedar: &CedarModel, ask: &Ask) -> Outcome {
    let wardkey = index.evaluate(&ask.request());
    let check = index.check(&ask.request());
    let (allow, response) = cedar.decide(ask);
    Outcome { wardkey, check, cedar: allow, response }
}

fn run_fresh(records: &Records, ask: &Ask) -> Outcome {
    let index = Index::build(records.clone());
    let cedar = CedarModel::build(records);
    run(&index, &cedar, ask)
}

/// Every one-step simplification of a failing case: drop one record, clear or drop one part of
/// a condition, drop a property.
fn simplifications(r: &Records, ask: &Ask) -> Vec<(Records, Ask)> {
    let mut out = Vec::new();
    macro_rules! drop_each {
        ($field:ident) => {
            for i in 0..r.$field.len() {
                let mut s = r.clone();
                s.$field.remove(i);
                out.push((s, ask.clone()));
            }
        };
    }
    drop_each!(grants);
    drop_each!(forbid_rules);
    drop_each!(memberships);
    drop_each!(roles);
    drop_each!(resources);
    drop_each!(groups);
    drop_each!(service_accounts);
    drop_each!(users);
    drop_each!(resource_types);
    let simpler_conditions = |c: &Conditions| -> Vec<Conditions> {
        let mut v = Vec::new();
        if !c.is_empty() {
            v.push(Conditions::default());
        }
        if c.min_assurance.is_some() {
            v.push(Conditions { min_assurance: None, ..c.clone() });
        }
        if c.min_device_trust.is_some() {
            v.push(Conditions { min_device_trust: None, ..c.clone() });
        }
        for i in 0..c.networks.len() {
            let mut x = c.clone();
            x.networks.remove(i);
            v.push(x);
        }
        for i in 0..c.time_windows.len() {
            let mut x = c.clone();
            x.time_windows.remove(i);
            v.push(x);
        }
        for i in 0..c.attribute_rules.len() {
            let mut x = c.clone();
            x.attribute_rules.remove(i);
            v.push(x);
        }
        v
    };
    for i in 0..r.roles.len() {
        for c in simpler_conditions(&r.roles[i].conditions) {
            let mut s = r.clone();
            s.roles[i].conditions = c;
            out.push((s, ask.clone()));
        }
        for p in 0..r.roles[i].permissions.len() {
            let mut s = r.clone();
            s.roles[i].permissions.remove(p);
            out.push((s, ask.clone()));
        }
    }
    for i in 0..r.grants.len() {
        for c in simpler_conditions(&r.grants[i].conditions) {
            let mut s = r.clone();
            s.grants[i].conditions = c;
            out.push((s, ask.clone()));
        }
    }
    for k in ask.props.keys() {
        let mut a = ask.clone();
        a.props.remove(k);
        out.push((r.clone(), a));
    }
    out
}

fn shrink(mut r: Records, mut ask: Ask) -> (Records, Ask) {
    'outer: loop {
        for (sr, sa) in simplifications(&r, &ask) {
            if run_fresh(&sr, &sa).disagrees() {
                r = sr;
                ask = sa;
                continue 'outer;
            }
        }
        return (r, ask);
    }
}

fn report(seed: u64, model_no: usize, req_no: usize, records: &Records, ask: &Ask) -> String {
    let (r, a) = shrink(records.clone(), ask.clone());
    let cedar = CedarModel::build(&r);
    let o = run(&Index::build(r.clone()), &cedar, &a);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "MISMATCH (seed {seed}, model {model_no}, request {req_no}; rerun this model alone with WK_ORACLE_SEED={} WK_ORACLE_CASES={REQUESTS_PER_MODEL})",
        seed.wrapping_add(model_no as u64)
    );
    let _ = writeln!(s, "\n== shrunk model ==\n{r:#?}");
    let _ = writeln!(s, "\n== request ==\n{a:#?}");
    let _ = writeln!(s, "\n== wardkey: allow={} (check: {}) ==\n{:#?}", o.wardkey.allow, o.check, o.wardkey);
    let reasons: Vec<String> = o
        .response
        .diagnostics()
        .reason()
        .map(|p| cedar.policies.annotation(p, "id").unwrap_or("?").to_owned())
        .collect();
    let errors: Vec<String> = o.response.diagnostics().errors().map(|e| e.to_string()).collect();
    let who = cedar.resolve(&a);
    let _ = writeln!(
        s,
        "\n== cedar: allow={} ==\nprincipal {}, resource {}\ndetermining policies: {reasons:?}\nerrors: {errors:?}",
        o.cedar, who.principal, who.resource
    );
    let _ = writeln!(s, "\n== cedar policies ==\n{}", cedar.text);
    let _ = writeln!(s, "\n== unshrunk request ==\n{ask:#?}");
    s
}

#[derive(Default, Debug)]
struct Tally {
    requests: usize,
    allow: usize,
    break_glass: usize,
    unknown_subject: usize,
    not_active: usize,
    unknown_type: usize,
    unknown_action: usize,
    forbidden: usize,
    conditions_not_met: usize,
    no_grant: usize,
}

impl Tally {
    fn add(&mut self, d: &Decision) {
        self.requests += 1;
        if d.allow {
            self.allow += 1;
            self.break_glass += usize::from(d.break_glass);
            return;
        }
        match d.reasons.first() {
            Some(Reason::UnknownSubject) => self.unknown_subject += 1,
            Some(Reason::SubjectNotActive { .. }) => self.not_active += 1,
            Some(Reason::UnknownResourceType) => self.unknown_type += 1,
            Some(Reason::UnknownAction) => self.unknown_action += 1,
            Some(Reason::ForbiddenByRule { .. }) => self.forbidden += 1,
            Some(Reason::ConditionsNotMet { .. }) => self.conditions_not_met += 1,
            _ => self.no_grant += 1,
        }
    }
}

fn env_number(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    if v == "random" {
        return Some(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
        );
    }
    Some(v.parse().unwrap_or_else(|_| panic!("{name} must be a number (or `random` for the seed), not {v:?}")))
}

#[test]
fn wardkey_agrees_with_cedar() {
    let seed = env_number("WK_ORACLE_SEED").unwrap_or(DEFAULT_SEED);
    let cases = env_number("WK_ORACLE_CASES").map_or(DEFAULT_CASES, |n| n as usize).max(1);
    let models = cases.div_ceil(REQUESTS_PER_MODEL);
    println!("wardkey-oracle: seed {seed}, {cases} requests over {models} models (WK_ORACLE_SEED / WK_ORACLE_CASES)");
    let started = std::time::Instant::now();
    let mut tally = Tally::default();
    let mut policies = 0;
    for m in 0..models {
        let mut g = Gen { rng: StdRng::seed_from_u64(seed.wrapping_add(m as u64)) };
        let records = g.model();
        let index = Index::build(records.clone());
        let cedar = CedarModel::build(&records);
        policies += cedar.policies.policies().count();
        let n = REQUESTS_PER_MODEL.min(cases - m * REQUESTS_PER_MODEL);
        for k in 0..n {
            let ask = g.ask(&records);
            let o = run(&index, &cedar, &ask);
            if o.disagrees() {
                panic!("{}", report(seed, m, k, &records, &ask));
            }
            tally.add(&o.wardkey);
        }
    }
    println!(
        "wardkey-oracle: {} requests agree ({policies} Cedar policies in all) in {:.1?}",
        tally.requests,
        started.elapsed()
    );
    println!("wardkey-oracle: {tally:?}");
    assert_eq!(tally.requests, cases);
    // The generator must reach both answers and every kind of deny, or the comparison is hollow.
    if cases >= 2_000 {
        assert!(tally.allow * 10 >= tally.requests, "too few allows: {tally:?}");
        for (what, n) in [
            ("break-glass allows", tally.break_glass),
            ("unknown subjects", tally.unknown_subject),
            ("inactive subjects", tally.not_active),
            ("unknown types", tally.unknown_type),
            ("unknown actions", tally.unknown_action),
            ("forbidden", tally.forbidden),
            ("conditions not met", tally.conditions_not_met),
            ("no grant", tally.no_grant),
        ] {
            assert!(n > 0, "no {what} among {tally:?}");
        }
    }
}
