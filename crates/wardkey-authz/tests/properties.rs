#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Property tests over small random models: the searches answer exactly what `evaluate` would,
//! `check` agrees with `evaluate`, and any sequence of incremental changes leaves the index
//! deciding exactly like a fresh build of the final records.
//!
//! The universe is a fixed set of ids per kind; records, names (with case-insensitive
//! collisions), parents (cycles included), conditions and requests are drawn at random.

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashSet};
use uuid::Uuid;
use wardkey_authz::*;
use wardkey_domain::*;

const USERS: u8 = 4;
const SAS: u8 = 2;
const GROUPS: u8 = 3;
const TYPES: u8 = 3;
const RESOURCES: u8 = 6;
const ROLES: u8 = 4;
const GRANTS: u8 = 12;
const FORBIDS: u8 = 2;

fn id(kind: u128, i: u8) -> Uuid {
    Uuid::from_u128((kind << 96) | 0x7000_8000_0000_0000 | u128::from(i))
}
fn user_id(i: u8) -> UserId {
    UserId(id(1, i))
}
fn sa_id(i: u8) -> ServiceAccountId {
    ServiceAccountId(id(2, i))
}
fn group_id(i: u8) -> GroupId {
    GroupId(id(3, i))
}
fn type_id(i: u8) -> ResourceTypeId {
    ResourceTypeId(id(4, i))
}
fn resource_id(i: u8) -> ResourceId {
    ResourceId(id(5, i))
}
fn role_id(i: u8) -> RoleId {
    RoleId(id(6, i))
}
fn grant_id(i: u8) -> GrantId {
    GrantId(id(7, i))
}
fn forbid_id(i: u8) -> ForbidRuleId {
    ForbidRuleId(id(8, i))
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 4, 12, 0, 0).single().unwrap()
}

const ACTIONS: [&str; 4] = ["read", "write", "export", "approve"];
/// Each type, user and group has its own name, except now and then one that collides with
/// another's case-insensitively (which the index must treat as ambiguous).
const TYPE_NAMES: [&str; 3] = ["rec", "unit", "doc"];
const RESOURCE_NAMES: [&str; 4] = ["a", "A", "b", "c"];

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn arb_user(i: u8) -> impl Strategy<Value = User> {
    (
        prop_oneof![9 => Just(["ann", "bob", "cy", "dee"][usize::from(i)]), 1 => Just("ANN")],
        prop_oneof![
            10 => Just(UserStatus::Active),
            1 => Just(UserStatus::Suspended),
            1 => Just(UserStatus::PendingVerification)
        ],
        prop::sample::select(vec![None, Some("cardio"), Some("onco")]),
        prop::sample::select(vec![None, Some("42"), Some("7")]),
        prop::sample::select(vec![None, Some(EmploymentType::Employee), Some(EmploymentType::Contractor)]),
    )
        .prop_map(move |(name, status, dept, job, emp)| User {
            id: user_id(i),
            username: name.to_owned(),
            display_name: None,
            email: None,
            status,
            hr: HrAttributes {
                department: dept.map(str::to_owned),
                job_code: job.map(str::to_owned),
                employment_type: emp,
                ..HrAttributes::default()
            },
            verification: None,
            created_at: t0(),
            updated_at: t0(),
            version: 1,
        })
}

fn arb_sa(i: u8) -> impl Strategy<Value = ServiceAccount> {
    prop_oneof![4 => Just(ServiceAccountStatus::Active), 1 => Just(ServiceAccountStatus::Disabled)].prop_map(
        move |status| ServiceAccount {
            id: sa_id(i),
            name: format!("sa{i}"),
            description: None,
            owner_id: user_id(0),
            status,
            created_at: t0(),
            updated_at: t0(),
            version: 1,
        },
    )
}

fn arb_group(i: u8) -> impl Strategy<Value = Group> {
    prop_oneof![9 => Just(["g0", "g1", "care"][usize::from(i)]), 1 => Just("G0")].prop_map(move |name| Group {
        id: group_id(i),
        name: name.to_owned(),
        description: None,
        created_at: t0(),
        updated_at: t0(),
        version: 1,
    })
}

fn arb_type(i: u8) -> impl Strategy<Value = ResourceType> {
    (
        prop_oneof![9 => Just(TYPE_NAMES[usize::from(i)]), 1 => Just("REC")],
        prop::sample::subsequence(ACTIONS[1..].to_vec(), 1..=3),
    )
        .prop_map(move |(name, actions)| {
            // Always `read`; the others come and go, which moves every action's bit.
            let mut actions = strings(&actions);
            actions.push("read".to_owned());
            normalise_actions(&mut actions);
            ResourceType {
                id: type_id(i),
                name: name.to_owned(),
                description: None,
                actions,
                phi: false,
                decision_audit: DecisionAudit::default(),
                created_at: t0(),
                updated_at: t0(),
                version: 1,
            }
        })
}

fn arb_resource(i: u8) -> impl Strategy<Value = Resource> {
    (
        0..TYPES,
        prop::sample::select(RESOURCE_NAMES.to_vec()),
        prop::option::weighted(0.6, 0..RESOURCES),
        prop::sample::select(vec![None, Some("psych"), Some("gen")]),
        prop::option::of(0..USERS),
        // The properties the attribute rules read, stored on the record (which an evaluation
        // and every search must honour alike).
        prop::sample::select(vec![None, Some("cardio"), Some("onco")]),
        prop::sample::select(vec![None, Some("care"), Some("G0")]),
    )
        .prop_map(move |(t, name, parent, category, owner, dept, team)| {
            let mut attributes = BTreeMap::new();
            if let Some(c) = category {
                attributes.insert("category".to_owned(), c.to_owned());
            }
            if let Some(d) = dept {
                attributes.insert("dept".to_owned(), d.to_owned());
            }
            if let Some(t) = team {
                attributes.insert("team".to_owned(), t.to_owned());
            }
            if let Some(o) = owner {
                attributes.insert("owner".to_owned(), user_id(o).to_string());
            }
            Resource {
                id: resource_id(i),
                type_id: type_id(t),
                name: name.to_owned(),
                parent_id: parent.map(resource_id),
                description: None,
                attributes,
                created_at: t0(),
                updated_at: t0(),
                version: 1,
            }
        })
}

fn condition_parts() -> Vec<Conditions> {
    let rule = |p: &str, op, a: &str| AttributeRule { resource_property: p.into(), op, subject_attribute: a.into() };
    vec![
        Conditions { min_assurance: Some(Assurance::Mfa), ..Conditions::default() },
        Conditions { min_assurance: Some(Assurance::PhishingResistant), ..Conditions::default() },
        Conditions { networks: strings(&["10.0.0.0/8"]), ..Conditions::default() },
        Conditions {
            time_windows: vec![TimeWindow {
                time_zone: "UTC".into(),
                days: vec![],
                start: "08:00".into(),
                end: "17:00".into(),
            }],
            ..Conditions::default()
        },
        Conditions {
            time_windows: vec![TimeWindow {
                time_zone: "America/New_York".into(),
                days: vec![Day::Wed],
                start: "19:00".into(),
                end: "07:00".into(),
            }],
            ..Conditions::default()
        },
        Conditions { min_device_trust: Some(DeviceTrust::Managed), ..Conditions::default() },
        Conditions { attribute_rules: vec![rule("owner", AttributeOp::Equals, "id")], ..Conditions::default() },
        Conditions { attribute_rules: vec![rule("dept", AttributeOp::Equals, "department")], ..Conditions::default() },
        Conditions { attribute_rules: vec![rule("team", AttributeOp::In, "groups")], ..Conditions::default() },
    ]
}

fn merge(parts: Vec<Conditions>) -> Conditions {
    let mut c = Conditions::default();
    for p in parts {
        c.min_assurance = c.min_assurance.max(p.min_assurance);
        c.networks.extend(p.networks);
        c.time_windows.extend(p.time_windows);
        c.min_device_trust = c.min_device_trust.max(p.min_device_trust);
        c.attribute_rules.extend(p.attribute_rules);
    }
    c
}

fn arb_conditions() -> impl Strategy<Value = Conditions> {
    prop_oneof![
        3 => Just(Conditions::default()),
        1 => prop::collection::vec(prop::sample::select(condition_parts()), 1..3).prop_map(merge),
    ]
}

fn arb_role(i: u8) -> impl Strategy<Value = Role> {
    let perm = (
        prop_oneof![3 => Just("rec"), 2 => Just("unit"), 2 => Just("doc"), 1 => Just("ghost")],
        prop::sample::subsequence(vec!["read", "write", "export", "bogus"], 1..=3),
    )
        .prop_map(|(t, a)| Permission { resource_type: t.to_owned(), actions: strings(&a) });
    (prop::collection::vec(perm, 1..3), arb_conditions()).prop_map(move |(permissions, conditions)| Role {
        id: role_id(i),
        name: format!("role{i}"),
        description: None,
        permissions,
        privileged: false,
        session_policy: RoleSessionPolicy::default(),
        break_glass: false,
        conditions,
        created_at: t0(),
        updated_at: t0(),
        version: 1,
    })
}

fn arb_subject() -> impl Strategy<Value = Subject> {
    prop_oneof![
        3 => (0..USERS).prop_map(|i| Subject::User(user_id(i))),
        1 => (0..SAS).prop_map(|i| Subject::ServiceAccount(sa_id(i))),
        2 => (0..GROUPS).prop_map(|i| Subject::Group(group_id(i))),
    ]
}

fn hours(h: i64) -> DateTime<Utc> {
    t0() + Duration::hours(h)
}

fn arb_grant(i: u8) -> impl Strategy<Value = Grant> {
    (
        arb_subject(),
        0..ROLES,
        prop::option::weighted(0.4, 0..RESOURCES),
        prop::sample::select(vec![
            GrantSource::Manual,
            GrantSource::Manual,
            GrantSource::BreakGlass,
            GrantSource::Template,
        ]),
        prop::sample::select(vec![-2i64, -2, -2, 0, 1]),
        prop::sample::select(vec![None, None, None, Some(0i64), Some(1), Some(2)]),
        prop::bool::weighted(0.1),
        arb_conditions(),
    )
        .prop_map(move |(subject, role, scope, source, starts, expires, revoked, conditions)| Grant {
            id: grant_id(i),
            subject,
            role_id: role_id(role),
            resource_id: scope.map(resource_id),
            source,
            requester: None,
            approver: None,
            justification: None,
            starts_at: hours(starts),
            expires_at: expires.map(hours),
            created_at: t0(),
            created_by: "test".into(),
            revoked_at: revoked.then(t0),
            revoked_by: None,
            conditions,
            version: 1,
        })
}

fn arb_forbid(i: u8) -> impl Strategy<Value = ForbidRule> {
    let when = prop_oneof![
        Just(ForbidWhen::Always),
        Just(ForbidWhen::DeviceTrustBelow { min: DeviceTrust::Managed }),
        Just(ForbidWhen::NetworkOutside { networks: strings(&["10.0.0.0/8"]) }),
        prop::sample::select(vec![None, Some("care".to_owned())]).prop_map(|unless_group| {
            ForbidWhen::ResourceProperty { property: "category".into(), values: strings(&["psych"]), unless_group }
        }),
    ];
    (
        prop::sample::subsequence(vec!["rec", "unit", "ghost"], 0..=2),
        prop::sample::subsequence(vec!["read", "write"], 0..=1),
        when,
    )
        .prop_map(move |(types, actions, when)| ForbidRule {
            id: forbid_id(i),
            name: format!("forbid{i}"),
            description: None,
            resource_types: strings(&types),
            actions: strings(&actions),
            when,
            created_at: t0(),
            updated_at: t0(),
            version: 1,
        })
}

fn arb_member() -> impl Strategy<Value = Member> {
    prop_oneof![
        3 => (0..USERS).prop_map(|i| Member::User(user_id(i))),
        1 => (0..SAS).prop_map(|i| Member::ServiceAccount(sa_id(i))),
    ]
}

/// Records keyed by id, with the same removal rules as the index, to build from afresh.
#[derive(Debug, Clone, Default)]
struct Model {
    revision: u64,
    users: BTreeMap<UserId, User>,
    sas: BTreeMap<ServiceAccountId, ServiceAccount>,
    groups: BTreeMap<GroupId, Group>,
    members: HashSet<(GroupId, Member)>,
    types: BTreeMap<ResourceTypeId, ResourceType>,
    resources: BTreeMap<ResourceId, Resource>,
    roles: BTreeMap<RoleId, Role>,
    grants: BTreeMap<GrantId, Grant>,
    forbids: BTreeMap<ForbidRuleId, ForbidRule>,
}

impl Model {
    fn apply(&mut self, c: &Change) {
        match c.clone() {
            Change::UpsertUser(u) => {
                self.users.insert(u.id, u);
            }
            Change::RemoveUser(id) => {
                self.users.remove(&id);
                self.members.retain(|(_, m)| *m != Member::User(id));
            }
            Change::UpsertServiceAccount(s) => {
                self.sas.insert(s.id, s);
            }
            Change::RemoveServiceAccount(id) => {
                self.sas.remove(&id);
                self.members.retain(|(_, m)| *m != Member::ServiceAccount(id));
            }
            Change::UpsertGroup(g) => {
                self.groups.insert(g.id, g);
            }
            Change::RemoveGroup(id) => {
                self.groups.remove(&id);
                self.members.retain(|(g, _)| *g != id);
            }
            Change::SetGroupMembers { group, members } => {
                self.members.retain(|(g, _)| *g != group);
                self.members.extend(members.into_iter().map(|m| (group, m)));
            }
            Change::AddMember { group, member } => {
                self.members.insert((group, member));
            }
            Change::RemoveMember { group, member } => {
                self.members.remove(&(group, member));
            }
            Change::UpsertResourceType(t) => {
                self.types.insert(t.id, t);
            }
            Change::RemoveResourceType(id) => {
                self.types.remove(&id);
            }
            Change::UpsertResource(r) => {
                self.resources.insert(r.id, r);
            }
            Change::RemoveResource(id) => {
                self.resources.remove(&id);
            }
            Change::UpsertRole(r) => {
                self.roles.insert(r.id, r);
            }
            Change::RemoveRole(id) => {
                self.roles.remove(&id);
            }
            Change::UpsertGrant(g) => {
                self.grants.insert(g.id, g);
            }
            Change::RemoveGrant(id) => {
                self.grants.remove(&id);
            }
            Change::UpsertForbidRule(f) => {
                self.forbids.insert(f.id, f);
            }
            Change::RemoveForbidRule(id) => {
                self.forbids.remove(&id);
            }
            Change::SetRevision(r) => self.revision = r,
        }
    }

    fn records(&self) -> Records {
        Records {
            revision: self.revision,
            users: self.users.values().cloned().collect(),
            service_accounts: self.sas.values().cloned().collect(),
            groups: self.groups.values().cloned().collect(),
            memberships: self.members.iter().copied().collect(),
            resource_types: self.types.values().cloned().collect(),
            resources: self.resources.values().cloned().collect(),
            roles: self.roles.values().cloned().collect(),
            grants: self.grants.values().cloned().collect(),
            forbid_rules: self.forbids.values().cloned().collect(),
        }
    }
}

fn arb_change() -> impl Strategy<Value = Change> {
    prop_oneof![
        3 => (0..USERS).prop_flat_map(arb_user).prop_map(Change::UpsertUser),
        1 => (0..USERS).prop_map(|i| Change::RemoveUser(user_id(i))),
        1 => (0..SAS).prop_flat_map(arb_sa).prop_map(Change::UpsertServiceAccount),
        1 => (0..SAS).prop_map(|i| Change::RemoveServiceAccount(sa_id(i))),
        2 => (0..GROUPS).prop_flat_map(arb_group).prop_map(Change::UpsertGroup),
        1 => (0..GROUPS).prop_map(|i| Change::RemoveGroup(group_id(i))),
        1 => ((0..GROUPS), prop::collection::vec(arb_member(), 0..4))
            .prop_map(|(g, members)| Change::SetGroupMembers { group: group_id(g), members }),
        3 => ((0..GROUPS), arb_member()).prop_map(|(g, member)| Change::AddMember { group: group_id(g), member }),
        1 => ((0..GROUPS), arb_member()).prop_map(|(g, member)| Change::RemoveMember { group: group_id(g), member }),
        2 => (0..TYPES).prop_flat_map(arb_type).prop_map(Change::UpsertResourceType),
        1 => (0..TYPES).prop_map(|i| Change::RemoveResourceType(type_id(i))),
        3 => (0..RESOURCES).prop_flat_map(arb_resource).prop_map(Change::UpsertResource),
        1 => (0..RESOURCES).prop_map(|i| Change::RemoveResource(resource_id(i))),
        3 => (0..ROLES).prop_flat_map(arb_role).prop_map(Change::UpsertRole),
        1 => (0..ROLES).prop_map(|i| Change::RemoveRole(role_id(i))),
        5 => (0..GRANTS).prop_flat_map(arb_grant).prop_map(Change::UpsertGrant),
        1 => (0..GRANTS).prop_map(|i| Change::RemoveGrant(grant_id(i))),
        1 => (0..FORBIDS).prop_flat_map(arb_forbid).prop_map(Change::UpsertForbidRule),
        2 => (0..FORBIDS).prop_map(|i| Change::RemoveForbidRule(forbid_id(i))),
    ]
}

/// A model as a list of upserts (so the same list drives the model and the index).
fn arb_model_changes() -> impl Strategy<Value = Vec<Change>> {
    let users = (0..USERS).map(|i| prop::option::weighted(0.9, arb_user(i)).boxed()).collect::<Vec<_>>();
    let sas = (0..SAS).map(|i| prop::option::weighted(0.8, arb_sa(i)).boxed()).collect::<Vec<_>>();
    let groups = (0..GROUPS).map(|i| prop::option::weighted(0.9, arb_group(i)).boxed()).collect::<Vec<_>>();
    let types = (0..TYPES).map(|i| prop::option::weighted(0.9, arb_type(i)).boxed()).collect::<Vec<_>>();
    let resources = (0..RESOURCES).map(|i| prop::option::weighted(0.9, arb_resource(i)).boxed()).collect::<Vec<_>>();
    let roles = (0..ROLES).map(|i| prop::option::weighted(0.9, arb_role(i)).boxed()).collect::<Vec<_>>();
    let grants = (0..GRANTS).map(|i| prop::option::weighted(0.9, arb_grant(i)).boxed()).collect::<Vec<_>>();
    let forbids = (0..FORBIDS).map(|i| prop::option::weighted(0.3, arb_forbid(i)).boxed()).collect::<Vec<_>>();
    let members = prop::collection::vec((0..GROUPS, arb_member()), 0..8);
    (users, sas, groups, types, resources, roles, grants, forbids, members).prop_map(
        |(users, sas, groups, types, resources, roles, grants, forbids, members)| {
            let mut out = Vec::new();
            out.extend(types.into_iter().flatten().map(Change::UpsertResourceType));
            out.extend(roles.into_iter().flatten().map(Change::UpsertRole));
            out.extend(users.into_iter().flatten().map(Change::UpsertUser));
            out.extend(sas.into_iter().flatten().map(Change::UpsertServiceAccount));
            out.extend(groups.into_iter().flatten().map(Change::UpsertGroup));
            out.extend(members.into_iter().map(|(g, member)| Change::AddMember { group: group_id(g), member }));
            out.extend(resources.into_iter().flatten().map(Change::UpsertResource));
            out.extend(grants.into_iter().flatten().map(Change::UpsertGrant));
            out.extend(forbids.into_iter().flatten().map(Change::UpsertForbidRule));
            out.push(Change::SetRevision(1));
            out
        },
    )
}

fn model_of(changes: &[Change]) -> Model {
    let mut m = Model::default();
    changes.iter().for_each(|c| m.apply(c));
    m
}

/// A request with owned strings.
#[derive(Debug, Clone)]
struct Ask {
    kind: SubjectKind,
    who: String,
    action: String,
    ty: String,
    id: Option<String>,
    props: Properties,
    ctx: RequestContext,
}

impl Ask {
    fn request(&self) -> Request<'_> {
        Request {
            subject: SubjectRef { kind: self.kind, id: &self.who },
            action: &self.action,
            resource: self.resource(),
            context: self.ctx,
        }
    }
    fn resource(&self) -> ResourceRef<'_> {
        ResourceRef { type_name: &self.ty, id: self.id.as_deref(), properties: &self.props }
    }
}

fn arb_ctx() -> impl Strategy<Value = RequestContext> {
    (
        prop::sample::select(vec![-2i64, -1, 0, 1, 2, 8]),
        prop::sample::select(vec![None, Some("10.1.1.1"), Some("192.0.2.1")]),
        prop::sample::select(vec![Assurance::Password, Assurance::Mfa, Assurance::PhishingResistant]),
        prop::sample::select(vec![None, Some(DeviceTrust::Registered), Some(DeviceTrust::Managed)]),
    )
        .prop_map(|(h, ip, assurance, device_trust)| RequestContext {
            now: hours(h),
            source_ip: ip.map(|i| i.parse().unwrap()),
            assurance,
            device_trust,
        })
}

fn arb_props() -> impl Strategy<Value = Properties> {
    (
        prop::option::of(0..USERS),
        prop::sample::select(vec![None, Some("cardio")]),
        prop::sample::select(vec![None, Some("g0"), Some("CARE")]),
        prop::sample::select(vec![None, Some(serde_json::json!("psych")), Some(serde_json::json!(["gen", "psych"]))]),
    )
        .prop_map(|(owner, dept, team, category)| {
            let mut p = Properties::new();
            if let Some(o) = owner {
                p.insert("owner".into(), serde_json::json!(user_id(o).to_string()));
            }
            if let Some(d) = dept {
                p.insert("dept".into(), serde_json::json!(d));
            }
            if let Some(t) = team {
                p.insert("team".into(), serde_json::json!(t));
            }
            if let Some(c) = category {
                p.insert("category".into(), c);
            }
            p
        })
}

fn arb_resource_id() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        1 => Just(None),
        3 => (0..RESOURCES).prop_map(|i| Some(resource_id(i).to_string())),
        1 => prop::sample::select(RESOURCE_NAMES.to_vec()).prop_map(|n| Some(n.to_owned())),
        1 => Just(Some("ext-1".to_owned())),
    ]
}

fn arb_ask() -> impl Strategy<Value = Ask> {
    let subject = prop_oneof![
        6 => (0..USERS).prop_map(|i| (SubjectKind::User, user_id(i).to_string())),
        1 => prop::sample::select(vec!["ann", "Bob", "cy", "zed"]).prop_map(|n| (SubjectKind::User, n.to_owned())),
        2 => (0..SAS).prop_map(|i| (SubjectKind::ServiceAccount, sa_id(i).to_string())),
    ];
    (
        subject,
        prop::sample::select(vec!["read", "read", "write", "export", "approve", "nope"]),
        prop::sample::select(vec!["rec", "rec", "Rec", "unit", "doc", "nope"]),
        arb_resource_id(),
        arb_props(),
        arb_ctx(),
    )
        .prop_map(|((kind, who), action, ty, id, props, ctx)| Ask {
            kind,
            who,
            action: action.to_owned(),
            ty: ty.to_owned(),
            id,
            props,
            ctx,
        })
}

/// Questions aimed at the model's grants (each holder, or each member of a holding group; the
/// role's types and actions; the scope or no resource; properties that can satisfy the
/// attribute rules), so that allows and condition failures are common, not rare.
fn targeted(model: &Model, ctxs: &[RequestContext]) -> Vec<Ask> {
    let mut out = Vec::new();
    for (n, g) in model.grants.values().enumerate() {
        let holders: Vec<(SubjectKind, Uuid)> = match g.subject {
            Subject::User(u) => vec![(SubjectKind::User, u.0)],
            Subject::ServiceAccount(s) => vec![(SubjectKind::ServiceAccount, s.0)],
            Subject::Group(gr) => model
                .members
                .iter()
                .filter(|(x, _)| *x == gr)
                .map(|(_, m)| match m {
                    Member::User(u) => (SubjectKind::User, u.0),
                    Member::ServiceAccount(s) => (SubjectKind::ServiceAccount, s.0),
                })
                .collect(),
        };
        let Some(role) = model.roles.get(&g.role_id) else { continue };
        for (kind, who) in holders {
            for p in &role.permissions {
                for action in &p.actions {
                    let mut props = Properties::new();
                    props.insert("owner".into(), serde_json::json!(who.to_string()));
                    props.insert("dept".into(), serde_json::json!("cardio"));
                    props.insert("team".into(), serde_json::json!("care"));
                    if n % 3 == 0 {
                        props.insert("category".into(), serde_json::json!("psych"));
                    }
                    let ctx = ctxs[(n + out.len()) % ctxs.len()];
                    out.push(Ask {
                        kind,
                        who: who.to_string(),
                        action: action.clone(),
                        ty: p.resource_type.clone(),
                        id: g.resource_id.map(|r| r.to_string()),
                        props,
                        ctx,
                    });
                }
            }
        }
    }
    out
}

fn with_targeted(model: &Model, asks: &[Ask]) -> Vec<Ask> {
    let ctxs: Vec<RequestContext> = asks.iter().map(|a| a.ctx).collect();
    let mut all = asks.to_vec();
    all.extend(targeted(model, &ctxs));
    all
}

fn granted(d: &Decision) -> Vec<GrantPath> {
    d.reasons
        .iter()
        .filter_map(|r| match r {
            Reason::Granted { grant } => Some(grant.clone()),
            _ => None,
        })
        .collect()
}

fn everyone() -> Vec<(SubjectKind, Uuid)> {
    let mut v: Vec<_> = (0..USERS)
        .map(|i| (SubjectKind::User, user_id(i).0))
        .chain((0..SAS).map(|i| (SubjectKind::ServiceAccount, sa_id(i).0)))
        .collect();
    v.sort_by_key(|(_, id)| *id);
    v
}

/// The model with attribute rules on roles and grants throughout (each rule in turn, on
/// every other grant and every role), so that stored attributes decide often.
fn with_attribute_rules(mut changes: Vec<Change>) -> Vec<Change> {
    let rules = [
        AttributeRule {
            resource_property: "dept".into(),
            op: AttributeOp::Equals,
            subject_attribute: "department".into(),
        },
        AttributeRule { resource_property: "team".into(), op: AttributeOp::In, subject_attribute: "groups".into() },
        AttributeRule { resource_property: "owner".into(), op: AttributeOp::Equals, subject_attribute: "id".into() },
    ];
    for (n, c) in changes.iter_mut().enumerate() {
        match c {
            Change::UpsertGrant(g) if n % 2 == 0 => g.conditions.attribute_rules.push(rules[n % 3].clone()),
            Change::UpsertRole(r) if n % 3 == 0 => r.conditions.attribute_rules.push(rules[(n / 3) % 3].clone()),
            _ => {}
        }
    }
    changes
}

/// How a PEP names a user: by username, unless another user's folds to the same (then the
/// username names no one, and the UUID is the name). Worked out from the model, not the index.
fn pep_user(model: &Model, u: &User) -> String {
    let key = u.username.to_lowercase();
    let clash = model.users.values().filter(|o| o.username.to_lowercase() == key).count() > 1;
    if clash || Uuid::parse_str(&u.username).is_ok() { u.id.to_string() } else { u.username.clone() }
}

/// How a PEP names a resource: by name within its type, unless another resource of the type
/// has the same name case-insensitively.
fn pep_resource(model: &Model, r: &Resource) -> String {
    let key = r.name.to_lowercase();
    let clash = model.resources.values().filter(|o| o.type_id == r.type_id && o.name.to_lowercase() == key).count() > 1;
    if clash || Uuid::parse_str(&r.name).is_ok() { r.id.to_string() } else { r.name.clone() }
}

/// The type a name resolves to: the one whose name folds to it, if exactly one.
fn model_type<'m>(model: &'m Model, name: &str) -> Option<&'m ResourceType> {
    let key = name.to_lowercase();
    let mut found = model.types.values().filter(|t| t.name.to_lowercase() == key);
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

/// Every subject of the model as a PEP names it.
fn pep_subjects(model: &Model) -> Vec<(SubjectKind, String)> {
    let users = model.users.values().map(|u| (SubjectKind::User, pep_user(model, u)));
    let sas = model.sas.values().map(|s| (SubjectKind::ServiceAccount, s.id.to_string()));
    users.chain(sas).collect()
}

fn config() -> ProptestConfig {
    // No persistence file: the test binaries have no src/ beside them to put it in.
    ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    /// `subjects_with_access` lists exactly the subjects `evaluate` allows, with the same grants.
    #[test]
    fn who_has_access_equals_evaluate(changes in arb_model_changes(), asks in prop::collection::vec(arb_ask(), 1..12)) {
        let model = model_of(&changes);
        let snap = Snapshot::build(model.records());
        for ask in &with_targeted(&model, &asks) {
            let found = snap.subjects_with_access(&ask.resource(), &ask.action, &ask.ctx, Page::ALL);
            let mut expected = Vec::new();
            let mut error = None;
            for (kind, id) in everyone() {
                let who = id.to_string();
                let req = Request { subject: SubjectRef { kind, id: &who }, ..ask.request() };
                let d = snap.evaluate(&req);
                prop_assert_eq!(snap.check(&req), d.allow);
                match d.reasons.first().map(|r| r.code()) {
                    Some("unknown_resource_type") => error = Some(AuthzError::UnknownResourceType),
                    Some("unknown_action") => error = Some(AuthzError::UnknownAction),
                    _ => {}
                }
                if d.allow {
                    let member = match kind {
                        SubjectKind::User => Member::User(UserId(id)),
                        SubjectKind::ServiceAccount => Member::ServiceAccount(ServiceAccountId(id)),
                    };
                    expected.push((member, granted(&d), d.break_glass));
                }
            }
            match (found, error) {
                (Err(e), Some(expected_error)) => prop_assert_eq!(e, expected_error),
                // No subject got as far as the type (all unknown or inactive): evaluate could
                // not say, but it allowed no one either.
                (Err(_), None) => prop_assert!(expected.is_empty()),
                (Ok(found), None) => {
                    let got: Vec<_> = found.items.iter().map(|s| (s.subject, s.grants.clone(), s.break_glass)).collect();
                    prop_assert_eq!(got, expected);
                    prop_assert_eq!(found.next, None);
                }
                (found, error) => prop_assert!(false, "search {:?} but evaluate says {:?}", found, error),
            }
        }
    }

    /// `resources_for` and `actions_for` answer what `evaluate` would for the same subject.
    #[test]
    fn reachable_resources_equal_evaluate(
        changes in arb_model_changes(),
        ctx in prop_oneof![
            1 => Just(RequestContext {
                now: t0(),
                source_ip: Some("10.1.1.1".parse().unwrap()),
                assurance: Assurance::PhishingResistant,
                device_trust: Some(DeviceTrust::Managed),
            }),
            1 => arb_ctx(),
        ],
        type_filter in prop::option::of(prop::sample::select(vec!["rec", "unit", "doc"])),
        action_filter in prop::option::of(prop::sample::select(vec!["read", "write"])),
    ) {
        let model = model_of(&changes);
        let snap = Snapshot::build(model.records());
        for (kind, id) in everyone() {
            let who = id.to_string();
            let subject = SubjectRef { kind, id: &who };
            let ask = |ty: &str, rid: Option<&str>, action: &str, props: &Properties| {
                let req = Request {
                    subject,
                    action,
                    resource: ResourceRef { type_name: ty, id: rid, properties: props },
                    context: ctx,
                };
                let d = snap.evaluate(&req);
                assert_eq!(snap.check(&req), d.allow);
                d
            };
            let Ok(found) = snap.resources_for(&subject, type_filter, action_filter, &ctx, Page::ALL) else {
                // Unknown subject, or a filter naming an ambiguous/missing type or an action it lacks.
                let probe = ask(type_filter.unwrap_or("rec"), None, action_filter.unwrap_or("read"), &NO_PROPERTIES);
                prop_assert!(!probe.allow);
                continue;
            };
            let ids: Vec<Uuid> = found.items.iter().map(|r| r.target.id()).collect();
            let mut sorted = ids.clone();
            sorted.sort();
            sorted.dedup();
            prop_assert_eq!(&ids, &sorted, "ordered by id, no repeats");
            let mut listed: HashSet<(Uuid, String)> = HashSet::new();
            for item in &found.items {
                let (ty, rid, props) = match &item.target {
                    AccessTarget::AllOfType { type_name, .. } => (type_name.clone(), None, Properties::new()),
                    AccessTarget::Resource { id, type_name, .. } => {
                        let attrs = &model.resources[id].attributes;
                        let props = attrs.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect();
                        (type_name.clone(), Some(id.to_string()), props)
                    }
                };
                for a in &item.actions {
                    let d = ask(&ty, rid.as_deref(), &a.action, &props);
                    prop_assert!(d.allow);
                    prop_assert_eq!(&a.grants, &granted(&d));
                    prop_assert_eq!(a.break_glass, d.break_glass);
                    listed.insert((item.target.id(), a.action.clone()));
                }
            }
            // Completeness: whatever evaluate allows through a scoped grant is listed under the
            // resource; whatever it allows on the type as a whole is listed as "all of type".
            for ty in model.types.values() {
                if type_filter.is_some_and(|f| !f.eq_ignore_ascii_case(&ty.name)) {
                    continue;
                }
                for action in ty.actions.iter().filter(|a| action_filter.is_none_or(|f| f == a.as_str())) {
                    let d = ask(&ty.name, None, action, &NO_PROPERTIES);
                    if d.allow {
                        prop_assert!(listed.contains(&(ty.id.0, action.clone())), "all of {} {}", ty.name, action);
                    }
                    for r in model.resources.values().filter(|r| r.type_id == ty.id) {
                        let props = r.attributes.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect();
                        let d = ask(&ty.name, Some(&r.id.to_string()), action, &props);
                        if granted(&d).iter().any(|g| g.scope.is_some()) {
                            prop_assert!(listed.contains(&(r.id.0, action.clone())), "{} {}", r.name, action);
                        }
                    }
                }
            }
            // actions_for on each registered resource.
            for r in model.resources.values() {
                let Some(ty) = model.types.get(&r.type_id) else { continue };
                let rid = r.id.to_string();
                let props: Properties = r.attributes.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect();
                let resource = ResourceRef { type_name: &ty.name, id: Some(&rid), properties: &props };
                let Ok(found) = snap.actions_for(&subject, &resource, &ctx) else { continue };
                let allowed: Vec<String> = ty.actions.iter().filter(|a| ask(&ty.name, Some(&rid), a, &props).allow).cloned().collect();
                prop_assert_eq!(found.items.iter().map(|a| a.action.clone()).collect::<Vec<_>>(), allowed);
            }
        }
    }

    /// Incremental changes, in batches, decide exactly like a fresh build of the final records.
    #[test]
    fn incremental_updates_equal_a_fresh_build(
        initial in arb_model_changes(),
        batches in prop::collection::vec(prop::collection::vec(arb_change(), 1..8), 1..6),
        asks in prop::collection::vec(arb_ask(), 16..32),
    ) {
        let mut model = model_of(&initial);
        let index = Index::build(model.records());
        let before = index.snapshot();
        for (n, batch) in batches.into_iter().enumerate() {
            batch.iter().for_each(|c| model.apply(c));
            model.apply(&Change::SetRevision(n as u64 + 2));
            index.apply(batch.into_iter().chain([Change::SetRevision(n as u64 + 2)]));
            if let Err(e) = index.snapshot().verify() {
                prop_assert!(false, "after batch {}: {}", n, e);
            }
        }
        let fresh = Snapshot::build(model.records());
        prop_assert_eq!(fresh.verify(), Ok(()));
        let incremental = index.snapshot();
        prop_assert_eq!(incremental.stats(), fresh.stats());
        for ask in &with_targeted(&model, &asks) {
            let req = ask.request();
            prop_assert_eq!(incremental.evaluate(&req), fresh.evaluate(&req), "{:?}", ask);
            prop_assert_eq!(incremental.check(&req), fresh.check(&req));
            prop_assert_eq!(
                incremental.subjects_with_access(&ask.resource(), &ask.action, &ask.ctx, Page::ALL),
                fresh.subjects_with_access(&ask.resource(), &ask.action, &ask.ctx, Page::ALL)
            );
            prop_assert_eq!(
                incremental.resources_for(&req.subject, None, None, &ask.ctx, Page::ALL),
                fresh.resources_for(&req.subject, None, None, &ask.ctx, Page::ALL)
            );
        }
        // The snapshot taken before the changes still answers as the initial build does.
        let initial_build = Snapshot::build(model_of(&initial).records());
        for ask in &asks {
            prop_assert_eq!(before.evaluate(&ask.request()), initial_build.evaluate(&ask.request()));
        }
    }

    /// Paging through a search returns the unpaged answer, whatever the page size.
    #[test]
    fn paging_concatenates_to_the_whole(changes in arb_model_changes(), ask in arb_ask(), limit in 1usize..4) {
        let snap = Snapshot::build(model_of(&changes).records());
        if let Ok(all) = snap.subjects_with_access(&ask.resource(), &ask.action, &ask.ctx, Page::ALL) {
            let mut paged = Vec::new();
            let mut page = Page::first(limit);
            loop {
                let found = snap.subjects_with_access(&ask.resource(), &ask.action, &ask.ctx, page).unwrap();
                prop_assert!(found.items.len() <= limit);
                paged.extend(found.items);
                match found.next {
                    Some(n) => page = Page::after(n, limit),
                    None => break,
                }
            }
            prop_assert_eq!(paged, all.items);
        }
        let subject = ask.request().subject;
        if let Ok(all) = snap.resources_for(&subject, None, None, &ask.ctx, Page::ALL) {
            let mut paged = Vec::new();
            let mut page = Page::first(limit);
            loop {
                let found = snap.resources_for(&subject, None, None, &ask.ctx, page).unwrap();
                prop_assert!(found.items.len() <= limit);
                paged.extend(found.items);
                match found.next {
                    Some(n) => page = Page::after(n, limit),
                    None => break,
                }
            }
            prop_assert_eq!(paged, all.items);
        }
    }
    /// For random models with attribute rules and stored resource attributes, every search
    /// answer is exactly the set of evaluations it summarises, asked the way a PEP asks: with
    /// the `id`s the answer gives (usernames, resource names, `*` for "any of the type") and no
    /// properties of its own.
    #[test]
    fn search_answers_are_the_evaluations_they_summarise(changes in arb_model_changes(), ctx in arb_ctx()) {
        let model = model_of(&with_attribute_rules(changes));
        let snap = Snapshot::build(model.records());
        let eval = |kind: SubjectKind, who: &str, ty: &str, rid: Option<&str>, action: &str| {
            let req = Request {
                subject: SubjectRef { kind, id: who },
                action,
                resource: ResourceRef { type_name: ty, id: rid, properties: &NO_PROPERTIES },
                context: ctx,
            };
            let d = snap.evaluate(&req);
            assert_eq!(snap.check(&req), d.allow);
            d
        };
        let subjects = pep_subjects(&model);
        let mut resource_ids: Vec<(String, Option<String>)> = Vec::new();
        for ty in TYPE_NAMES {
            resource_ids.push((ty.to_owned(), None));
            resource_ids.push((ty.to_owned(), Some("ext-1".to_owned())));
        }
        for r in model.resources.values() {
            if let Some(t) = model.types.get(&r.type_id) {
                resource_ids.push((t.name.clone(), Some(pep_resource(&model, r))));
            }
        }

        // Subject search.
        for (ty, rid) in &resource_ids {
            for action in ACTIONS {
                let resource = ResourceRef { type_name: ty, id: rid.as_deref(), properties: &NO_PROPERTIES };
                let mut expected: Vec<(SubjectKind, String, Vec<GrantPath>)> = subjects
                    .iter()
                    .filter_map(|(kind, who)| {
                        let d = eval(*kind, who, ty, rid.as_deref(), action);
                        d.allow.then(|| (*kind, who.clone(), granted(&d)))
                    })
                    .collect();
                expected.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
                let mut got: Vec<(SubjectKind, String, Vec<GrantPath>)> =
                    match snap.subjects_with_access(&resource, action, &ctx, Page::ALL) {
                        Ok(found) => found
                            .items
                            .iter()
                            .map(|s| {
                                let kind = match s.subject {
                                    Member::User(_) => SubjectKind::User,
                                    Member::ServiceAccount(_) => SubjectKind::ServiceAccount,
                                };
                                (kind, s.pep_id.clone(), s.grants.clone())
                            })
                            .collect(),
                        Err(_) => Vec::new(),
                    };
                got.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
                prop_assert_eq!(got, expected, "who may {} {} {:?}", action, ty, rid);
            }
        }

        for (kind, who) in &subjects {
            let subject = SubjectRef { kind: *kind, id: who };
            // Resource search: each item is the allowed actions on what it names.
            let found = snap.resources_for(&subject, None, None, &ctx, Page::ALL);
            let mut listed: HashSet<(String, String, String)> = HashSet::new();
            for item in found.map(|f| f.items).unwrap_or_default() {
                let (ty, id) = match &item.target {
                    AccessTarget::AllOfType { type_name, .. } => (type_name.clone(), "*".to_owned()),
                    AccessTarget::Resource { pep_id, type_name, .. } => (type_name.clone(), pep_id.clone()),
                };
                let Some(t) = model_type(&model, &ty) else {
                    prop_assert!(false, "no type {}", ty);
                    continue;
                };
                let allowed: Vec<(String, Vec<GrantPath>, bool)> = t
                    .actions
                    .iter()
                    .filter_map(|a| {
                        let d = eval(*kind, who, &ty, Some(&id), a);
                        d.allow.then(|| (a.clone(), granted(&d), d.break_glass))
                    })
                    .collect();
                let got: Vec<(String, Vec<GrantPath>, bool)> =
                    item.actions.iter().map(|a| (a.action.clone(), a.grants.clone(), a.break_glass)).collect();
                prop_assert_eq!(got, allowed, "{} on {} {}", who, ty, id);
                for a in &item.actions {
                    listed.insert((ty.clone(), id.clone(), a.action.clone()));
                }
            }
            // ... and nothing is missing: whatever is allowed on a registered resource the answer
            // does not list is allowed on `*` by the same grants; and an unregistered resource is
            // answered exactly as `*`, which is listed with every action allowed on it. (A
            // registered resource that is not listed may still be denied where `*` is allowed: its
            // stored attributes can trip a forbid rule.)
            let listed_ids: HashSet<(String, String)> = listed.iter().map(|(t, i, _)| (t.clone(), i.clone())).collect();
            for (ty, rid) in &resource_ids {
                let Some(t) = model_type(&model, ty) else { continue };
                let id = rid.clone().unwrap_or_else(|| "*".to_owned());
                if listed_ids.contains(&(t.name.clone(), id.clone())) {
                    continue;
                }
                let registered = rid.as_deref().is_some_and(|r| r != "ext-1");
                for a in &t.actions {
                    let d = eval(*kind, who, ty, rid.as_deref(), a);
                    let any = eval(*kind, who, ty, Some("*"), a);
                    if registered && !d.allow {
                        continue;
                    }
                    prop_assert_eq!(
                        (d.allow, granted(&d)),
                        (any.allow, granted(&any)),
                        "{} {} {} {:?} is not listed, yet answered otherwise than *", who, a, ty, rid
                    );
                    prop_assert_eq!(
                        d.allow,
                        listed.contains(&(t.name.clone(), "*".to_owned(), a.clone())),
                        "{} {} {} {:?}: * listed iff allowed", who, a, ty, rid
                    );
                }
            }
            // Action search: exactly the allowed actions.
            for (ty, rid) in &resource_ids {
                let resource = ResourceRef { type_name: ty, id: rid.as_deref(), properties: &NO_PROPERTIES };
                let got: Vec<String> = match snap.actions_for(&subject, &resource, &ctx) {
                    Ok(f) => f.items.iter().map(|a| a.action.clone()).collect(),
                    Err(_) => Vec::new(),
                };
                let all: Vec<String> = model_type(&model, ty).map(|t| t.actions.clone()).unwrap_or_default();
                let allowed: Vec<String> =
                    all.into_iter().filter(|a| eval(*kind, who, ty, rid.as_deref(), a).allow).collect();
                prop_assert_eq!(got, allowed, "actions of {} on {} {:?}", who, ty, rid);
            }
        }
    }
}
