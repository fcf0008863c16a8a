#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! One test per rule of the decision procedure. Every evaluation also asserts that the
//! allocation-free `check` gives the same answer.

mod common;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::*;
use serde_json::json;
use std::net::IpAddr;
use wardkey_authz::*;
use wardkey_domain::*;

/// A question, owning its strings, so tests can build them in one line.
#[derive(Clone)]
struct Q {
    kind: SubjectKind,
    who: String,
    action: String,
    ty: String,
    id: Option<String>,
    props: Properties,
    ctx: RequestContext,
}

impl Q {
    fn user(u: &User) -> Q {
        Q::named(&u.id.to_string())
    }
    fn named(who: &str) -> Q {
        Q {
            kind: SubjectKind::User,
            who: who.to_owned(),
            action: "read".into(),
            ty: "patient_record".into(),
            id: None,
            props: Properties::new(),
            ctx: RequestContext::at(t0()),
        }
    }
    fn sa(s: &ServiceAccount) -> Q {
        Q { kind: SubjectKind::ServiceAccount, ..Q::named(&s.id.to_string()) }
    }
    fn action(self, a: &str) -> Q {
        Q { action: a.into(), ..self }
    }
    fn on(self, ty: &ResourceType, r: &Resource) -> Q {
        Q { ty: ty.name.clone(), id: Some(r.id.to_string()), ..self }
    }
    fn ty(self, t: &str) -> Q {
        Q { ty: t.into(), ..self }
    }
    fn id(self, id: &str) -> Q {
        Q { id: Some(id.into()), ..self }
    }
    fn prop(mut self, k: &str, v: serde_json::Value) -> Q {
        self.props.insert(k.into(), v);
        self
    }
    fn at(self, now: DateTime<Utc>) -> Q {
        Q { ctx: RequestContext { now, ..self.ctx }, ..self }
    }
    fn ip(self, ip: &str) -> Q {
        Q { ctx: self.ctx.with_ip(ip.parse::<IpAddr>().unwrap()), ..self }
    }
    fn assurance(self, a: Assurance) -> Q {
        Q { ctx: self.ctx.with_assurance(a), ..self }
    }
    fn device(self, d: DeviceTrust) -> Q {
        Q { ctx: self.ctx.with_device(d), ..self }
    }
    fn request(&self) -> Request<'_> {
        Request {
            subject: SubjectRef { kind: self.kind, id: &self.who },
            action: &self.action,
            resource: ResourceRef { type_name: &self.ty, id: self.id.as_deref(), properties: &self.props },
            context: self.ctx,
        }
    }
    fn run(&self, index: &Index) -> Decision {
        let d = index.evaluate(&self.request());
        assert_eq!(index.check(&self.request()), d.allow, "check and evaluate disagree: {d:?}");
        index.snapshot().verify().unwrap();
        d
    }
}

fn codes(d: &Decision) -> Vec<&'static str> {
    d.reasons.iter().map(|r| r.code()).collect()
}

fn granted_ids(d: &Decision) -> Vec<GrantId> {
    d.reasons
        .iter()
        .filter_map(|r| match r {
            Reason::Granted { grant } => Some(grant.grant_id),
            _ => None,
        })
        .collect()
}

fn failures(d: &Decision) -> Vec<&'static str> {
    d.reasons
        .iter()
        .flat_map(|r| match r {
            Reason::ConditionsNotMet { failed, .. } => failed.iter().map(|f| f.code()).collect(),
            _ => vec![],
        })
        .collect()
}

fn with(mut records: Records, grants: Vec<Grant>) -> Index {
    records.grants.extend(grants);
    Index::build(records)
}

#[test]
fn a_direct_grant_allows_and_names_its_path() {
    let w = Ward::new();
    let g = grant(uid(&w.doctor), &w.writer, None);
    let index = with(w.records.clone(), vec![g.clone()]);
    let d = Q::user(&w.doctor).action("write").on(&w.record, &w.chart_a).run(&index);
    assert!(d.allow);
    assert_eq!(d.revision, 1);
    assert!(!d.break_glass && d.obligations.is_empty() && d.step_up.is_none());
    assert_eq!(
        d.reasons,
        vec![Reason::Granted {
            grant: GrantPath {
                grant_id: g.id,
                role_id: w.writer.id,
                role_name: "record-writer".into(),
                via: Via::Direct,
                scope: None,
                source: GrantSource::Manual,
            }
        }]
    );
    // The role permits read and write on records, nothing else.
    assert!(!Q::user(&w.doctor).action("delete").on(&w.record, &w.chart_a).run(&index).allow);
    assert!(!Q::user(&w.doctor).action("read").on(&w.unit, &w.ward_a).ty("unit").run(&index).allow);
    // Someone else holds nothing.
    assert_eq!(codes(&Q::user(&w.nurse).action("write").on(&w.record, &w.chart_a).run(&index)), ["no_grant"]);
}

#[test]
fn the_json_shape_of_reasons_is_stable() {
    let w = Ward::new();
    let g = grant(gid(&w.nurses), &w.reader, Some(&w.ward_a));
    let index = with(w.records.clone(), vec![g.clone()]);
    let d = Q::user(&w.nurse).on(&w.record, &w.chart_a).run(&index);
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(
        v,
        json!({
            "allow": true, "revision": 1, "obligations": [], "break_glass": false, "step_up": null,
            "reasons": [{
                "code": "granted", "grant_id": g.id, "role_id": w.reader.id, "role_name": "record-reader",
                "via": {"type": "group", "group_id": w.nurses.id, "group_name": "Nurses"},
                "scope": w.ward_a.id, "source": "manual"
            }]
        })
    );
}

#[test]
fn grants_to_a_group_reach_its_members_and_follow_membership() {
    let w = Ward::new();
    let g = grant(gid(&w.nurses), &w.reader, None);
    let index = with(w.records.clone(), vec![g.clone()]);
    let q = Q::user(&w.nurse).on(&w.record, &w.chart_b);
    let d = q.run(&index);
    assert!(d.allow);
    let Reason::Granted { grant: path } = &d.reasons[0] else { panic!() };
    assert_eq!(path.via, Via::Group { group_id: w.nurses.id, group_name: "Nurses".into() });

    // The doctor joins, the nurse leaves: one membership change each.
    index.add_member(w.nurses.id, Member::User(w.doctor.id));
    assert!(Q::user(&w.doctor).on(&w.record, &w.chart_b).run(&index).allow);
    index.remove_member(w.nurses.id, Member::User(w.nurse.id));
    assert!(!q.run(&index).allow);
    index.set_group_members(w.nurses.id, vec![Member::User(w.nurse.id), Member::ServiceAccount(w.bot.id)]);
    assert!(q.run(&index).allow);
    assert!(!Q::user(&w.doctor).on(&w.record, &w.chart_b).run(&index).allow);
    assert!(Q::sa(&w.bot).on(&w.record, &w.chart_b).run(&index).allow);

    // A removed group grants nothing, and its memberships go with it.
    index.remove_group(w.nurses.id);
    assert!(!q.run(&index).allow);
    index.upsert_group(w.nurses.clone());
    assert!(!q.run(&index).allow, "memberships do not come back with the group");
    index.add_member(w.nurses.id, Member::User(w.nurse.id));
    assert!(q.run(&index).allow, "the group's grant was never revoked");
}

#[test]
fn a_scoped_grant_covers_the_resource_and_its_descendants_only() {
    let w = Ward::new();
    let g = grant(uid(&w.nurse), &w.reader, Some(&w.ward_a));
    let index = with(w.records.clone(), vec![g]);
    let nurse = || Q::user(&w.nurse);
    assert!(nurse().on(&w.record, &w.chart_a).run(&index).allow, "descendant");
    assert!(nurse().on(&w.unit, &w.ward_a).run(&index).allow, "the scope itself");
    assert!(!nurse().on(&w.record, &w.chart_b).run(&index).allow, "a sibling's child");
    assert!(!nurse().on(&w.unit, &w.ward_b).run(&index).allow, "a sibling");
    assert!(!nurse().on(&w.unit, &w.hospital).run(&index).allow, "the parent");
    assert!(!nurse().ty("patient_record").run(&index).allow, "the type as a whole");

    // Ancestors are found up to MAX_RESOURCE_DEPTH levels above: a chain of that many units
    // under chart A.
    let mut chain = vec![];
    let mut parent = w.chart_a.clone();
    for i in 0..MAX_RESOURCE_DEPTH {
        let r = resource(&w.unit, &format!("level-{i}"), Some(&parent));
        chain.push(Change::UpsertResource(r.clone()));
        parent = r;
    }
    index.apply(chain);
    // `parent` is MAX + 1 levels below ward A (chart A is 1): out of reach (and the store
    // refuses to build such a chain).
    assert!(!nurse().on(&w.unit, &parent).run(&index).allow);
}

/// The engine walks as far up as the store lets a chain grow: a grant at the root of a chain
/// of the domain's maximum depth applies at its leaf (it used to stop at 16 levels, and a grant
/// above that silently never applied), and search finds the leaf too.
#[test]
fn a_grant_at_the_root_of_a_maximum_depth_chain_applies_at_its_leaf() {
    assert_eq!(MAX_RESOURCE_DEPTH, wardkey_domain::MAX_RESOURCE_DEPTH, "one limit");
    let w = Ward::new();
    let root = resource(&w.unit, "root", None);
    let index = with(w.records.clone(), vec![grant(uid(&w.nurse), &w.reader, Some(&root))]);
    index.upsert_resource(root.clone());
    let mut parent = root.clone();
    let mut levels = vec![];
    for i in 1..=MAX_RESOURCE_DEPTH + 1 {
        let r = resource(&w.unit, &format!("l{i}"), Some(&parent));
        index.upsert_resource(r.clone());
        levels.push(r.clone());
        parent = r;
    }
    // levels[i] has i + 1 ancestors: the leaf the domain allows is levels[MAX - 1].
    let leaf = &levels[MAX_RESOURCE_DEPTH - 1];
    assert!(wardkey_domain::check_depth(MAX_RESOURCE_DEPTH - 1, 0).is_ok());
    assert!(wardkey_domain::check_depth(MAX_RESOURCE_DEPTH, 0).is_err());
    assert!(Q::user(&w.nurse).ty("unit").on(&w.unit, leaf).run(&index).allow);
    assert!(Q::user(&w.nurse).ty("unit").id("l64").run(&index).allow, "by name too");
    assert!(!Q::user(&w.nurse).ty("unit").on(&w.unit, &levels[MAX_RESOURCE_DEPTH]).run(&index).allow);
    let subject = w.nurse.id.to_string();
    let found = index
        .snapshot()
        .resources_for(&SubjectRef::user(&subject), Some("unit"), Some("read"), &RequestContext::at(t0()), Page::ALL)
        .unwrap();
    let reached: Vec<&str> = found
        .items
        .iter()
        .filter_map(|r| match &r.target {
            AccessTarget::Resource { pep_id, .. } => Some(pep_id.as_str()),
            AccessTarget::AllOfType { .. } => None,
        })
        .collect();
    assert_eq!(reached.len(), MAX_RESOURCE_DEPTH + 1, "the root and its {MAX_RESOURCE_DEPTH} levels");
    assert!(reached.contains(&"l64") && !reached.contains(&"l65"));
}

/// Regression: a department rule on a grant scoped to a chart whose department Wardkey stores.
/// Resource search listed the chart while the evaluation of the same triple denied, because
/// evaluation read only the request's properties. Now both read the stored attributes (which
/// win over what a request sends), and the search names the chart as a PEP does.
#[test]
fn stored_resource_attributes_decide_evaluation_and_search_alike() {
    let mut w = Ward::new();
    let nurse =
        User { hr: HrAttributes { department: Some("cardio".into()), ..HrAttributes::default() }, ..w.nurse.clone() };
    w.records.users = vec![nurse.clone(), w.doctor.clone()];
    let dept =
        |r: &Resource, d: &str| Resource { attributes: [("department".to_owned(), d.to_owned())].into(), ..r.clone() };
    let chart_a = dept(&w.chart_a, "cardio");
    let chart_b = dept(&w.chart_b, "onco");
    w.records.resources.retain(|r| r.id != chart_a.id && r.id != chart_b.id);
    w.records.resources.extend([chart_a.clone(), chart_b.clone()]);
    let g = Grant {
        conditions: Conditions {
            attribute_rules: vec![rule("department", AttributeOp::Equals, "department")],
            ..Conditions::default()
        },
        ..grant(uid(&nurse), &w.reader, Some(&w.hospital))
    };
    let index = with(w.records.clone(), vec![g.clone()]);
    let by_name = || Q::named("nurse.joy");

    // Evaluation: the stored department decides, by id or by name, with no properties sent.
    assert!(by_name().on(&w.record, &chart_a).run(&index).allow);
    assert!(by_name().id("chart-a").run(&index).allow);
    assert_eq!(failures(&by_name().id("chart-b").run(&index)), ["attribute_rule"]);
    // What Wardkey stores wins over what the PEP sends, both ways.
    assert!(!by_name().id("chart-b").prop("department", json!("cardio")).run(&index).allow);
    assert!(by_name().id("chart-a").prop("department", json!("onco")).run(&index).allow);
    // An attribute Wardkey does not store comes from the request.
    let extra = Grant {
        conditions: Conditions {
            attribute_rules: vec![rule("owner", AttributeOp::Equals, "username")],
            ..Conditions::default()
        },
        ..grant(uid(&nurse), &w.writer, Some(&w.hospital))
    };
    let index2 = with(w.records.clone(), vec![g, extra]);
    assert!(by_name().action("write").id("chart-b").prop("owner", json!("nurse.joy")).run(&index2).allow);
    assert!(!by_name().action("write").id("chart-b").run(&index2).allow);

    // Resource search: exactly chart A, named as the PEP names it.
    let snap = index.snapshot();
    let ctx = RequestContext::at(t0());
    let found = snap
        .resources_for(&SubjectRef::user("nurse.joy"), Some("patient_record"), Some("read"), &ctx, Page::ALL)
        .unwrap();
    let ids: Vec<String> = found
        .items
        .iter()
        .map(|r| match &r.target {
            AccessTarget::Resource { pep_id, .. } => pep_id.clone(),
            AccessTarget::AllOfType { .. } => "*".to_owned(),
        })
        .collect();
    assert_eq!(ids, ["chart-a"]);
    // Subject search and action search agree.
    let who =
        snap.subjects_with_access(&ResourceRef::new("patient_record", "chart-a"), "read", &ctx, Page::ALL).unwrap();
    assert_eq!(who.items.iter().map(|s| s.pep_id.as_str()).collect::<Vec<_>>(), ["nurse.joy"]);
    let who =
        snap.subjects_with_access(&ResourceRef::new("patient_record", "chart-b"), "read", &ctx, Page::ALL).unwrap();
    assert!(who.items.is_empty());
    let actions =
        snap.actions_for(&SubjectRef::user("nurse.joy"), &ResourceRef::new("patient_record", "chart-a"), &ctx).unwrap();
    assert_eq!(actions.items.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(), ["read"]);
    let actions =
        snap.actions_for(&SubjectRef::user("nurse.joy"), &ResourceRef::new("patient_record", "chart-b"), &ctx).unwrap();
    assert!(actions.items.is_empty());
}

#[test]
fn resources_are_named_by_id_or_by_name_within_their_type() {
    let w = Ward::new();
    let index = with(w.records.clone(), vec![grant(uid(&w.nurse), &w.reader, Some(&w.ward_a))]);
    let q = Q::user(&w.nurse);
    assert!(q.clone().id("CHART-A").run(&index).allow, "names are case-insensitive");
    assert!(!q.clone().id("chart-b").run(&index).allow);
    // A registered resource of another type is unregistered for this request.
    assert!(!q.clone().id(&w.ward_a.id.to_string()).run(&index).allow);
    // Two siblings-of-different-parents with one name: ambiguous, so unregistered.
    let dup = resource(&w.record, "Chart-A", Some(&w.ward_b));
    index.upsert_resource(dup.clone());
    assert!(!q.clone().id("chart-a").run(&index).allow);
    assert!(q.clone().id(&w.chart_a.id.to_string()).run(&index).allow, "the id still resolves");
    index.remove_resource(dup.id);
    assert!(q.clone().id("chart-a").run(&index).allow);
}

#[test]
fn unregistered_resources_match_only_unscoped_grants() {
    let w = Ward::new();
    let scoped = grant(uid(&w.nurse), &w.reader, Some(&w.ward_a));
    let index = with(w.records.clone(), vec![scoped]);
    let app_record = Q::user(&w.nurse).id("MRN-000123");
    assert_eq!(codes(&app_record.run(&index)), ["no_grant"]);
    let unscoped = grant(uid(&w.nurse), &w.reader, None);
    index.upsert_grant(unscoped.clone());
    let d = app_record.run(&index);
    assert!(d.allow);
    assert_eq!(granted_ids(&d), [unscoped.id]);
    // An over-long id is unregistered too, without being looked at.
    assert!(Q::user(&w.nurse).id(&"x".repeat(100_000)).run(&index).allow);
}

#[test]
fn expiry_is_exact_at_the_instant() {
    let w = Ward::new();
    let expires = t0() + Duration::hours(1);
    let g = Grant { expires_at: Some(expires), ..grant(uid(&w.nurse), &w.reader, None) };
    let index = with(w.records.clone(), vec![g]);
    let q = Q::user(&w.nurse);
    assert!(q.clone().at(expires - Duration::microseconds(1)).run(&index).allow);
    assert_eq!(codes(&q.clone().at(expires).run(&index)), ["no_grant"]);
    assert!(!q.clone().at(expires + Duration::seconds(1)).run(&index).allow);
}

#[test]
fn a_grant_starting_in_the_future_denies_until_it_starts() {
    let w = Ward::new();
    let starts = t0() + Duration::hours(2);
    let g = Grant { starts_at: starts, ..grant(uid(&w.nurse), &w.reader, None) };
    let index = with(w.records.clone(), vec![g]);
    let q = Q::user(&w.nurse);
    assert!(!q.clone().run(&index).allow);
    assert!(!q.clone().at(starts - Duration::microseconds(1)).run(&index).allow);
    assert!(q.clone().at(starts).run(&index).allow);
}

#[test]
fn a_revoked_grant_denies() {
    let w = Ward::new();
    let g = grant(uid(&w.nurse), &w.reader, None);
    let revoked = Grant { revoked_at: Some(t0()), ..g.clone() };
    let index = with(w.records.clone(), vec![revoked.clone()]);
    assert!(!Q::user(&w.nurse).run(&index).allow, "revoked at build");
    index.upsert_grant(g.clone());
    assert!(Q::user(&w.nurse).run(&index).allow);
    index.upsert_grant(revoked);
    assert!(!Q::user(&w.nurse).run(&index).allow, "revoked by update");
    index.upsert_grant(g.clone());
    index.remove_grant(g.id);
    assert!(!Q::user(&w.nurse).run(&index).allow, "removed");
    assert_eq!(index.snapshot().stats().grants, 0);
}

#[test]
fn assurance_conditions_and_the_step_up_hint() {
    let w = Ward::new();
    let mfa = Grant {
        conditions: Conditions { min_assurance: Some(Assurance::Mfa), ..Conditions::default() },
        ..grant(uid(&w.nurse), &w.reader, None)
    };
    let passkey = Grant {
        conditions: Conditions { min_assurance: Some(Assurance::PhishingResistant), ..Conditions::default() },
        ..grant(uid(&w.nurse), &w.reader, None)
    };
    let index = with(w.records.clone(), vec![mfa.clone(), passkey.clone()]);
    let q = Q::user(&w.nurse);
    let d = q.clone().run(&index);
    assert!(!d.allow);
    assert_eq!(d.step_up, Some(Assurance::Mfa), "the lowest level that would allow");
    assert_eq!(codes(&d), ["conditions_not_met", "conditions_not_met"]);
    assert_eq!(
        d.reasons[0],
        Reason::ConditionsNotMet {
            grant: GrantPath {
                grant_id: mfa.id,
                role_id: w.reader.id,
                role_name: "record-reader".into(),
                via: Via::Direct,
                scope: None,
                source: GrantSource::Manual
            },
            failed: vec![FailedCondition::Assurance { on: ConditionSource::Grant, required: Assurance::Mfa }],
        }
    );
    let d = q.clone().assurance(Assurance::Mfa).run(&index);
    assert!(d.allow && d.step_up.is_none());
    assert_eq!(granted_ids(&d), [mfa.id]);
    let d = q.clone().assurance(Assurance::PhishingResistant).run(&index);
    assert_eq!(granted_ids(&d), [mfa.id, passkey.id]);
}

#[test]
fn step_up_needs_both_the_role_and_the_grant_minimum_and_nothing_else_failing() {
    let w = Ward::new();
    let strict_role = Role {
        conditions: Conditions { min_assurance: Some(Assurance::Mfa), ..Conditions::default() },
        ..role("strict", &[("patient_record", &["read"])])
    };
    let both = Grant {
        conditions: Conditions { min_assurance: Some(Assurance::PhishingResistant), ..Conditions::default() },
        ..grant(uid(&w.nurse), &strict_role, None)
    };
    let mut records = w.records.clone();
    records.roles.push(strict_role.clone());
    let index = with(records, vec![both]);
    let d = Q::user(&w.nurse).run(&index);
    assert_eq!(d.step_up, Some(Assurance::PhishingResistant));
    assert_eq!(failures(&d), ["assurance", "assurance"]);
    let d = Q::user(&w.nurse).assurance(Assurance::Mfa).run(&index);
    assert_eq!(d.step_up, Some(Assurance::PhishingResistant));
    assert!(Q::user(&w.nurse).assurance(Assurance::PhishingResistant).run(&index).allow);

    // Assurance plus a network failure: stepping up alone would not help.
    let netted = Grant {
        conditions: Conditions {
            min_assurance: Some(Assurance::Mfa),
            networks: vec!["10.0.0.0/8".into()],
            ..Conditions::default()
        },
        ..grant(uid(&w.doctor), &w.reader, None)
    };
    index.upsert_grant(netted);
    let d = Q::user(&w.doctor).ip("192.0.2.1").run(&index);
    assert_eq!(failures(&d), ["assurance", "network"]);
    assert_eq!(d.step_up, None);
    let d = Q::user(&w.doctor).ip("10.1.2.3").run(&index);
    assert_eq!(d.step_up, Some(Assurance::Mfa));
}

#[test]
fn network_conditions() {
    let w = Ward::new();
    let g = Grant {
        conditions: Conditions {
            networks: vec!["10.20.0.0/16".into(), "2001:db8::/32".into()],
            ..Conditions::default()
        },
        ..grant(uid(&w.nurse), &w.reader, None)
    };
    let index = with(w.records.clone(), vec![g]);
    let q = Q::user(&w.nurse);
    assert!(q.clone().ip("10.20.3.4").run(&index).allow);
    assert!(q.clone().ip("::ffff:10.20.3.4").run(&index).allow, "IPv4-mapped IPv6 is the IPv4 address");
    assert!(q.clone().ip("2001:db8::1").run(&index).allow);
    assert_eq!(failures(&q.clone().ip("10.21.0.1").run(&index)), ["network"]);
    assert_eq!(failures(&q.clone().run(&index)), ["network"], "no source address fails");
}

#[test]
fn device_trust_conditions() {
    let w = Ward::new();
    let g = Grant {
        conditions: Conditions { min_device_trust: Some(DeviceTrust::Managed), ..Conditions::default() },
        ..grant(uid(&w.nurse), &w.reader, None)
    };
    let index = with(w.records.clone(), vec![g]);
    let q = Q::user(&w.nurse);
    assert!(q.clone().device(DeviceTrust::Managed).run(&index).allow);
    assert!(q.clone().device(DeviceTrust::Compliant).run(&index).allow);
    assert_eq!(failures(&q.clone().device(DeviceTrust::Registered).run(&index)), ["device_trust"]);
    assert_eq!(failures(&q.clone().run(&index)), ["device_trust"], "unknown device");
    let Reason::ConditionsNotMet { failed, .. } = &q.clone().run(&index).reasons[0] else { panic!() };
    assert_eq!(failed[0], FailedCondition::DeviceTrust { on: ConditionSource::Grant, required: DeviceTrust::Managed });
}

fn windowed(w: &Ward, tz: &str, days: &[Day], start: &str, end: &str) -> Index {
    let g = Grant {
        conditions: Conditions {
            time_windows: vec![TimeWindow {
                time_zone: tz.into(),
                days: days.to_vec(),
                start: start.into(),
                end: end.into(),
            }],
            ..Conditions::default()
        },
        ..grant(uid(&w.nurse), &w.reader, None)
    };
    with(w.records.clone(), vec![g])
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).single().unwrap()
}

#[test]
fn a_day_shift_window() {
    let w = Ward::new();
    let index = windowed(&w, "UTC", &[], "08:00", "17:00");
    let at = |t| Q::user(&w.nurse).at(t).run(&index).allow;
    assert!(at(utc(2026, 3, 4, 8, 0)));
    assert!(at(utc(2026, 3, 4, 16, 59)));
    assert!(!at(utc(2026, 3, 4, 17, 0)), "end is exclusive");
    assert!(!at(utc(2026, 3, 4, 7, 59)));
    assert_eq!(failures(&Q::user(&w.nurse).at(utc(2026, 3, 4, 20, 0)).run(&index)), ["time_window"]);
}

#[test]
fn a_night_shift_spans_midnight_and_belongs_to_the_day_it_starts() {
    let w = Ward::new();
    // 2026-03-02 is a Monday.
    let index = windowed(&w, "UTC", &[Day::Mon], "19:00", "07:00");
    let at = |t| Q::user(&w.nurse).at(t).run(&index).allow;
    assert!(!at(utc(2026, 3, 2, 18, 59)));
    assert!(at(utc(2026, 3, 2, 19, 0)));
    assert!(at(utc(2026, 3, 2, 23, 59)));
    assert!(at(utc(2026, 3, 3, 0, 0)), "Tuesday early morning is Monday's shift");
    assert!(at(utc(2026, 3, 3, 6, 59)));
    assert!(!at(utc(2026, 3, 3, 7, 0)));
    assert!(!at(utc(2026, 3, 2, 6, 0)), "Monday early morning is Sunday's shift");
    assert!(!at(utc(2026, 3, 3, 19, 30)), "Tuesday evening");
}

#[test]
fn a_window_whose_end_equals_its_start_is_a_whole_day() {
    let w = Ward::new();
    let index = windowed(&w, "UTC", &[Day::Wed], "06:00", "06:00");
    let at = |t| Q::user(&w.nurse).at(t).run(&index).allow;
    assert!(at(utc(2026, 3, 4, 6, 0)));
    assert!(at(utc(2026, 3, 5, 5, 59)));
    assert!(!at(utc(2026, 3, 5, 6, 0)));
    assert!(!at(utc(2026, 3, 4, 5, 59)));
}

#[test]
fn windows_follow_local_time_across_dst_changes() {
    let w = Ward::new();
    // New York night shift on Saturdays. Clocks go forward on Sunday 2026-03-08 at 02:00 EST
    // and back on Sunday 2026-11-01 at 02:00 EDT.
    let index = windowed(&w, "America/New_York", &[Day::Sat], "19:00", "07:00");
    let at = |t| Q::user(&w.nurse).at(t).run(&index).allow;
    assert!(!at(utc(2026, 3, 7, 23, 30)), "18:30 EST");
    assert!(at(utc(2026, 3, 8, 0, 30)), "19:30 EST");
    assert!(at(utc(2026, 3, 8, 10, 30)), "06:30 EDT");
    assert!(!at(utc(2026, 3, 8, 11, 30)), "07:30 EDT (06:30 at a fixed EST offset)");
    assert!(at(utc(2026, 10, 31, 23, 0)), "19:00 EDT");
    assert!(!at(utc(2026, 10, 31, 22, 59)), "18:59 EDT");
    assert!(at(utc(2026, 11, 1, 11, 30)), "06:30 EST (07:30 at a fixed EDT offset)");
    assert!(!at(utc(2026, 11, 1, 12, 0)), "07:00 EST");
}

#[test]
fn a_window_in_an_unparsable_zone_matches_nothing() {
    let w = Ward::new();
    let index = windowed(&w, "Mars/Olympus_Mons", &[], "00:00", "00:00");
    assert_eq!(failures(&Q::user(&w.nurse).run(&index)), ["time_window"]);
}

fn ruled(w: &Ward, who: Subject, rules: Vec<AttributeRule>) -> Index {
    let g = Grant {
        conditions: Conditions { attribute_rules: rules, ..Conditions::default() },
        ..grant(who, &w.reader, None)
    };
    with(w.records.clone(), vec![g])
}

fn rule(property: &str, op: AttributeOp, attribute: &str) -> AttributeRule {
    AttributeRule { resource_property: property.into(), op, subject_attribute: attribute.into() }
}

#[test]
fn attribute_rule_equals() {
    let mut w = Ward::new();
    let nurse = User {
        hr: HrAttributes {
            department: Some("Cardiology".into()),
            job_code: Some("4021".into()),
            title: Some("RN".into()),
            employment_type: Some(EmploymentType::Contractor),
            ..HrAttributes::default()
        },
        // Hex letters in the id, so that its upper-case text differs (ids from the shared
        // counter may be all digits, depending on which tests ran first).
        id: UserId(uuid::Uuid::from_u128(0xabcd_ef00_0000_7000_8000_0000_0000_00fe)),
        ..w.nurse.clone()
    };
    w.records.users = vec![nurse.clone(), w.doctor.clone()];
    let check = |attr: &str, value: serde_json::Value| {
        let index = ruled(&w, uid(&nurse), vec![rule("p", AttributeOp::Equals, attr)]);
        Q::user(&nurse).prop("p", value).run(&index)
    };
    assert!(check("id", json!(nurse.id.to_string())).allow);
    assert!(!check("id", json!(nurse.id.to_string().to_uppercase())).allow, "exact text");
    assert!(!check("id", json!(w.doctor.id.to_string())).allow);
    assert!(check("username", json!("nurse.joy")).allow);
    assert!(check("department", json!("Cardiology")).allow);
    assert!(!check("department", json!("cardiology")).allow);
    assert!(check("job_code", json!(4021)).allow, "numbers compare by their JSON text");
    assert!(check("job_code", json!("4021")).allow);
    assert!(!check("job_code", json!(4021.5)).allow);
    assert!(check("title", json!("RN")).allow);
    assert!(check("employment_type", json!("contractor")).allow);
    assert!(!check("employment_type", json!("employee")).allow);
    assert!(!check("department", json!(["Cardiology"])).allow, "a list is not a string");
    assert!(!check("department", json!(null)).allow);
    assert!(!check("groups", json!("Nurses")).allow, "equals on a list attribute");
    let d = check("department", json!("Oncology"));
    let Reason::ConditionsNotMet { failed, .. } = &d.reasons[0] else { panic!("{d:?}") };
    assert_eq!(
        failed,
        &vec![FailedCondition::AttributeRule {
            on: ConditionSource::Grant,
            rule: rule("p", AttributeOp::Equals, "department")
        }]
    );
    // A missing property fails; so does a missing attribute (the doctor has no department).
    let index = ruled(&w, uid(&nurse), vec![rule("p", AttributeOp::Equals, "department")]);
    assert_eq!(failures(&Q::user(&nurse).run(&index)), ["attribute_rule"]);
    let index = ruled(&w, uid(&w.doctor), vec![rule("p", AttributeOp::Equals, "department")]);
    assert!(!Q::user(&w.doctor).prop("p", json!("Cardiology")).run(&index).allow);
}

#[test]
fn attribute_rule_in_groups_is_case_insensitive() {
    let w = Ward::new();
    let index = ruled(&w, uid(&w.nurse), vec![rule("care_team", AttributeOp::In, "groups")]);
    let q = Q::user(&w.nurse);
    assert!(q.clone().prop("care_team", json!("nurses")).run(&index).allow);
    assert!(q.clone().prop("care_team", json!("NURSES")).run(&index).allow);
    assert!(!q.clone().prop("care_team", json!("surgeons")).run(&index).allow);
    assert!(!q.clone().run(&index).allow);
    index.remove_member(w.nurses.id, Member::User(w.nurse.id));
    assert!(!q.clone().prop("care_team", json!("nurses")).run(&index).allow);
}

#[test]
fn service_accounts_have_only_id_and_groups() {
    let w = Ward::new();
    let index =
        ruled(&w, sid(&w.bot), vec![rule("owner", AttributeOp::Equals, "id"), rule("team", AttributeOp::In, "groups")]);
    index.add_member(w.nurses.id, Member::ServiceAccount(w.bot.id));
    let q = Q::sa(&w.bot).prop("owner", json!(w.bot.id.to_string())).prop("team", json!("Nurses"));
    assert!(q.run(&index).allow);
    let index = ruled(&w, sid(&w.bot), vec![rule("name", AttributeOp::Equals, "username")]);
    assert!(!Q::sa(&w.bot).prop("name", json!("lab-feed")).run(&index).allow);
}

#[test]
fn role_and_grant_conditions_must_both_hold() {
    let w = Ward::new();
    let role = Role {
        conditions: Conditions { networks: vec!["10.0.0.0/8".into()], ..Conditions::default() },
        ..role("on-site", &[("patient_record", &["read"])])
    };
    let g = Grant {
        conditions: Conditions { min_device_trust: Some(DeviceTrust::Registered), ..Conditions::default() },
        ..grant(uid(&w.nurse), &role, None)
    };
    let mut records = w.records.clone();
    records.roles.push(role);
    let index = with(records, vec![g]);
    let d = Q::user(&w.nurse).run(&index);
    let Reason::ConditionsNotMet { failed, .. } = &d.reasons[0] else { panic!() };
    assert_eq!(
        failed,
        &vec![
            FailedCondition::Network { on: ConditionSource::Role },
            FailedCondition::DeviceTrust { on: ConditionSource::Grant, required: DeviceTrust::Registered }
        ]
    );
    assert!(!Q::user(&w.nurse).ip("10.0.0.1").run(&index).allow);
    assert!(!Q::user(&w.nurse).device(DeviceTrust::Managed).run(&index).allow);
    assert!(Q::user(&w.nurse).ip("10.0.0.1").device(DeviceTrust::Managed).run(&index).allow);
}

fn forbidden(d: &Decision) -> Vec<String> {
    d.reasons
        .iter()
        .filter_map(|r| match r {
            Reason::ForbiddenByRule { rule_name, .. } => Some(rule_name.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_sensitive_category_is_forbidden_unless_cleared() {
    let w = Ward::new();
    let cleared = group("Psych-Cleared");
    let rule = forbid(
        "psych-notes",
        &["patient_record"],
        &[],
        ForbidWhen::ResourceProperty {
            property: "category".into(),
            values: vec!["psychiatry".into(), "hiv".into()],
            unless_group: Some("psych-cleared".into()),
        },
    );
    let mut records = w.records.clone();
    records.groups.push(cleared.clone());
    records.forbid_rules.push(rule.clone());
    let bg = Grant { source: GrantSource::BreakGlass, ..grant(uid(&w.nurse), &w.reader, None) };
    let index = with(records, vec![grant(uid(&w.nurse), &w.reader, None), bg]);
    let q = Q::user(&w.nurse);
    let d = q.clone().prop("category", json!("psychiatry")).run(&index);
    assert!(!d.allow && !d.break_glass && d.obligations.is_empty());
    assert_eq!(d.reasons, vec![Reason::ForbiddenByRule { rule_id: rule.id, rule_name: "psych-notes".into() }]);
    assert!(!q.clone().prop("category", json!(["general", "hiv"])).run(&index).allow, "any element of a list");
    assert!(q.clone().prop("category", json!(["general"])).run(&index).allow);
    assert!(q.clone().prop("category", json!("Psychiatry")).run(&index).allow, "values are exact");
    assert!(q.clone().prop("category", json!("general")).run(&index).allow);
    assert!(q.clone().run(&index).allow, "no property, no match");
    // Cleared staff get through.
    index.add_member(cleared.id, Member::User(w.nurse.id));
    assert!(q.clone().prop("category", json!("hiv")).run(&index).allow);
}

#[test]
fn forbid_rules_beat_grants_including_break_glass() {
    let w = Ward::new();
    let bg = Grant { source: GrantSource::BreakGlass, ..grant(uid(&w.nurse), &w.writer, None) };
    let kinds = [
        ("unmanaged-writes", ForbidWhen::DeviceTrustBelow { min: DeviceTrust::Managed }),
        ("off-site", ForbidWhen::NetworkOutside { networks: vec!["10.0.0.0/8".into()] }),
        ("freeze", ForbidWhen::Always),
    ];
    for (name, when) in kinds {
        let rule = forbid(name, &["PATIENT_RECORD"], &["write"], when);
        let mut records = w.records.clone();
        records.forbid_rules.push(rule);
        let index = with(records, vec![bg.clone()]);
        let write = Q::user(&w.nurse).action("write");
        let d = write.clone().run(&index);
        assert!(!d.allow, "{name}");
        assert_eq!(forbidden(&d), [name]);
        // The rule covers writes only: break-glass reads go through.
        let d = Q::user(&w.nurse).run(&index);
        assert!(d.allow && d.break_glass, "{name}");
        match name {
            "unmanaged-writes" => {
                assert!(!write.clone().device(DeviceTrust::Registered).run(&index).allow);
                assert!(write.clone().device(DeviceTrust::Managed).run(&index).allow);
            }
            "off-site" => {
                assert!(!write.clone().ip("192.0.2.7").run(&index).allow);
                assert!(write.clone().ip("10.9.9.9").run(&index).allow);
                assert!(write.clone().ip("::ffff:10.9.9.9").run(&index).allow);
            }
            _ => assert!(!write.clone().ip("10.9.9.9").device(DeviceTrust::Compliant).run(&index).allow),
        }
    }
}

#[test]
fn forbid_rules_with_empty_lists_cover_everything_and_list_every_applying_rule() {
    let w = Ward::new();
    let a = forbid("a", &[], &[], ForbidWhen::Always);
    let b = forbid("b", &["unit"], &[], ForbidWhen::Always);
    let c = forbid("c", &[], &["read"], ForbidWhen::Always);
    let mut records = w.records.clone();
    records.forbid_rules = vec![a.clone(), b.clone(), c.clone()];
    let index = with(records, vec![grant(uid(&w.nurse), &w.reader, None)]);
    assert_eq!(forbidden(&Q::user(&w.nurse).run(&index)), ["a", "c"]);
    assert_eq!(forbidden(&Q::user(&w.nurse).ty("unit").run(&index)), ["a", "b", "c"]);
    index.apply([Change::RemoveForbidRule(a.id), Change::RemoveForbidRule(c.id)]);
    assert!(Q::user(&w.nurse).run(&index).allow);
    assert!(!Q::user(&w.nurse).ty("unit").run(&index).allow);
}

#[test]
fn subjects_that_are_not_active_are_denied_whatever_they_hold() {
    let w = Ward::new();
    let index =
        with(w.records.clone(), vec![grant(uid(&w.nurse), &w.reader, None), grant(sid(&w.bot), &w.reader, None)]);
    for status in [UserStatus::Suspended, UserStatus::Disabled, UserStatus::PendingVerification] {
        index.upsert_user(User { status, ..w.nurse.clone() });
        let d = Q::user(&w.nurse).run(&index);
        assert_eq!(d.reasons, vec![Reason::SubjectNotActive { status: status.as_str().into() }]);
    }
    index.upsert_user(w.nurse.clone());
    assert!(Q::user(&w.nurse).run(&index).allow);
    index.upsert_service_account(ServiceAccount { status: ServiceAccountStatus::Disabled, ..w.bot.clone() });
    assert_eq!(codes(&Q::sa(&w.bot).run(&index)), ["subject_not_active"]);
}

#[test]
fn unknown_subjects_types_and_actions() {
    let w = Ward::new();
    let index =
        with(w.records.clone(), vec![grant(uid(&w.nurse), &w.reader, None), grant(sid(&w.bot), &w.reader, None)]);
    assert!(Q::named("NURSE.JOY").run(&index).allow, "usernames are case-insensitive");
    assert!(Q::named(&w.nurse.id.to_string().to_uppercase()).run(&index).allow, "UUIDs in any case");
    assert_eq!(codes(&Q::named("nobody").run(&index)), ["unknown_subject"]);
    assert_eq!(codes(&Q::named("").run(&index)), ["unknown_subject"]);
    assert_eq!(codes(&Q::named(&"n".repeat(10_000)).run(&index)), ["unknown_subject"]);
    // A service account is named by id only, and a user id is not a service account.
    assert!(Q::sa(&w.bot).run(&index).allow);
    assert_eq!(
        codes(&Q { kind: SubjectKind::ServiceAccount, ..Q::named("lab-feed") }.run(&index)),
        ["unknown_subject"]
    );
    assert_eq!(codes(&Q { kind: SubjectKind::ServiceAccount, ..Q::user(&w.nurse) }.run(&index)), ["unknown_subject"]);
    assert_eq!(codes(&Q::user(&w.nurse).ty("lab_result").run(&index)), ["unknown_resource_type"]);
    assert!(Q::user(&w.nurse).ty("Patient_Record").run(&index).allow, "type names are case-insensitive");
    assert_eq!(codes(&Q::user(&w.nurse).action("READ").run(&index)), ["unknown_action"]);
    assert_eq!(codes(&Q::user(&w.nurse).action("approve").run(&index)), ["unknown_action"]);
    // Order of checks: the subject comes first.
    assert_eq!(codes(&Q::named("nobody").ty("nope").action("nope").run(&index)), ["unknown_subject"]);
    index.remove_user(w.nurse.id);
    assert_eq!(codes(&Q::user(&w.nurse).run(&index)), ["unknown_subject"]);
}

#[test]
fn break_glass_is_flagged_only_when_it_is_the_only_path() {
    let w = Ward::new();
    let bg = Grant { source: GrantSource::BreakGlass, ..grant(uid(&w.nurse), &w.writer, None) };
    let normal = grant(gid(&w.nurses), &w.reader, None);
    let index = with(w.records.clone(), vec![bg.clone(), normal.clone()]);
    let d = Q::user(&w.nurse).action("write").run(&index);
    assert!(d.allow && d.break_glass);
    assert_eq!(d.obligations, vec![json!({"type": "record_break_glass_use", "grant_id": bg.id})]);
    let d = Q::user(&w.nurse).action("read").run(&index);
    assert!(d.allow && !d.break_glass && d.obligations.is_empty());
    let mut ids = granted_ids(&d);
    ids.sort();
    assert_eq!(
        ids,
        {
            let mut v = vec![bg.id, normal.id];
            v.sort();
            v
        },
        "every satisfied grant is listed"
    );
}

#[test]
fn changing_a_types_actions_recompiles_role_masks() {
    let w = Ward::new();
    let index = with(w.records.clone(), vec![grant(uid(&w.nurse), &w.writer, None)]);
    assert!(Q::user(&w.nurse).action("write").run(&index).allow);
    // "approve" sorts first, so every bit position moves.
    let mut record = w.record.clone();
    record.actions = vec!["approve".into(), "delete".into(), "export".into(), "read".into(), "write".into()];
    index.upsert_resource_type(record.clone());
    assert!(Q::user(&w.nurse).action("write").run(&index).allow);
    assert!(Q::user(&w.nurse).action("read").run(&index).allow);
    assert!(!Q::user(&w.nurse).action("approve").run(&index).allow);
    assert!(!Q::user(&w.nurse).action("export").run(&index).allow);
    // Without the type nothing about it is known; back again, the role applies again.
    index.remove_resource_type(record.id);
    assert_eq!(codes(&Q::user(&w.nurse).action("write").run(&index)), ["unknown_resource_type"]);
    index.upsert_resource_type(record);
    assert!(Q::user(&w.nurse).action("write").run(&index).allow);
    // A role edit takes effect at once; removing the role removes what it gave.
    index.upsert_role(Role { permissions: vec![], ..w.writer.clone() });
    assert!(!Q::user(&w.nurse).action("write").run(&index).allow);
    index.upsert_role(w.writer.clone());
    assert!(Q::user(&w.nurse).action("write").run(&index).allow);
    index.remove_role(w.writer.id);
    assert_eq!(codes(&Q::user(&w.nurse).action("write").run(&index)), ["no_grant"]);
}

#[test]
fn records_may_arrive_in_any_order_within_a_batch() {
    let w = Ward::new();
    let g = grant(gid(&w.nurses), &w.reader, Some(&w.ward_a));
    let index = Index::new();
    assert_eq!(codes(&Q::user(&w.nurse).run(&index)), ["unknown_subject"]);
    // Grant first, then the role, the member, the resources, the group, the types, the user.
    let mut changes = vec![
        Change::UpsertGrant(g),
        Change::UpsertRole(w.reader.clone()),
        Change::AddMember { group: w.nurses.id, member: Member::User(w.nurse.id) },
    ];
    changes.extend(w.records.resources.iter().rev().cloned().map(Change::UpsertResource));
    changes.push(Change::UpsertGroup(w.nurses.clone()));
    changes.extend(w.records.resource_types.iter().cloned().map(Change::UpsertResourceType));
    changes.push(Change::UpsertUser(w.nurse.clone()));
    changes.push(Change::SetRevision(42));
    index.apply(changes);
    let d = Q::user(&w.nurse).on(&w.record, &w.chart_a).run(&index);
    assert!(d.allow);
    assert_eq!(d.revision, 42);
    assert_eq!(index.revision(), 42);
}

#[test]
fn revision_is_only_what_the_caller_sets() {
    let w = Ward::new();
    let index = with(w.records.clone(), vec![]);
    assert_eq!(index.revision(), 1);
    index.upsert_grant(grant(uid(&w.nurse), &w.reader, None));
    assert_eq!(index.revision(), 1);
    index.set_revision(7);
    assert_eq!(Q::user(&w.nurse).run(&index).revision, 7);
    let snap = index.snapshot();
    index.set_revision(8);
    assert_eq!(snap.revision(), 7, "a snapshot held by a reader does not change");
}

#[test]
fn search_who_has_access() {
    let w = Ward::new();
    let via_group = grant(gid(&w.nurses), &w.reader, Some(&w.ward_a));
    let direct = grant(uid(&w.doctor), &w.writer, None);
    let bot = Grant { source: GrantSource::BreakGlass, ..grant(sid(&w.bot), &w.reader, None) };
    let index = with(w.records.clone(), vec![via_group.clone(), direct.clone(), bot.clone()]);
    let ctx = RequestContext::at(t0());
    let chart_a = w.chart_a.id.to_string();
    let found =
        index.subjects_with_access(&ResourceRef::new("patient_record", &chart_a), "read", &ctx, Page::ALL).unwrap();
    let mut expected = vec![
        (Member::User(w.nurse.id), via_group.id, false),
        (Member::User(w.doctor.id), direct.id, false),
        (Member::ServiceAccount(w.bot.id), bot.id, true),
    ];
    expected.sort_by_key(|(m, _, _)| match m {
        Member::User(id) => id.0,
        Member::ServiceAccount(id) => id.0,
    });
    let got: Vec<_> = found.items.iter().map(|s| (s.subject, s.grants[0].grant_id, s.break_glass)).collect();
    assert_eq!(got, expected);
    assert_eq!(found.revision, 1);
    assert_eq!(found.next, None);

    // Chart B: not under ward A.
    let chart_b = w.chart_b.id.to_string();
    let found =
        index.subjects_with_access(&ResourceRef::new("patient_record", &chart_b), "write", &ctx, Page::ALL).unwrap();
    assert_eq!(found.items.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["dr.house"]);

    // Paging: one at a time.
    let mut pages = vec![];
    let mut page = Page::first(1);
    loop {
        let found =
            index.subjects_with_access(&ResourceRef::new("patient_record", &chart_a), "read", &ctx, page).unwrap();
        pages.extend(found.items.iter().map(|s| s.subject));
        match found.next {
            Some(n) => page = Page::after(n, 1),
            None => break,
        }
    }
    assert_eq!(pages, expected.iter().map(|e| e.0).collect::<Vec<_>>());

    assert_eq!(
        index.subjects_with_access(&ResourceRef::of_type("nope"), "read", &ctx, Page::ALL),
        Err(AuthzError::UnknownResourceType)
    );
    assert_eq!(
        index.subjects_with_access(&ResourceRef::of_type("unit"), "write", &ctx, Page::ALL),
        Err(AuthzError::UnknownAction)
    );
}

#[test]
fn search_what_a_subject_can_reach() {
    let w = Ward::new();
    let index = with(
        w.records.clone(),
        vec![grant(gid(&w.nurses), &w.reader, Some(&w.ward_a)), grant(uid(&w.nurse), &w.writer, None)],
    );
    let ctx = RequestContext::at(t0());
    let nurse = SubjectRef::user("nurse.joy");
    let found = index.resources_for(&nurse, None, None, &ctx, Page::ALL).unwrap();
    let summary: Vec<(String, Vec<String>)> = found
        .items
        .iter()
        .map(|r| {
            let name = match &r.target {
                AccessTarget::Resource { name, .. } => name.clone(),
                AccessTarget::AllOfType { type_name, .. } => format!("all {type_name}"),
            };
            (name, r.actions.iter().map(|a| a.action.clone()).collect())
        })
        .collect();
    let mut expected = vec![
        (w.record.id.0, ("all patient_record".to_owned(), vec!["read".to_owned(), "write".to_owned()])),
        (w.ward_a.id.0, ("Ward-A".to_owned(), vec!["read".to_owned()])),
        (w.chart_a.id.0, ("chart-a".to_owned(), vec!["read".to_owned(), "write".to_owned()])),
    ];
    expected.sort_by_key(|e| e.0);
    assert_eq!(summary, expected.into_iter().map(|e| e.1).collect::<Vec<_>>());

    let found = index.resources_for(&nurse, Some("unit"), Some("read"), &ctx, Page::ALL).unwrap();
    assert_eq!(found.items.len(), 1);
    assert_eq!(found.items[0].target.id(), w.ward_a.id.0);
    assert_eq!(
        index.resources_for(&nurse, Some("unit"), Some("write"), &ctx, Page::ALL),
        Err(AuthzError::UnknownAction)
    );
    assert_eq!(
        index.resources_for(&SubjectRef::user("ghost"), None, None, &ctx, Page::ALL),
        Err(AuthzError::UnknownSubject)
    );

    let chart_a = w.chart_a.id.to_string();
    let found = index.actions_for(&nurse, &ResourceRef::new("patient_record", &chart_a), &ctx).unwrap();
    assert_eq!(found.items.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(), ["read", "write"]);
    let found = index.actions_for(&nurse, &ResourceRef::new("unit", "ward-b"), &ctx).unwrap();
    assert!(found.items.is_empty());
}
