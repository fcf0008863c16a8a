#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A hospital-shaped workload at a twentieth of the target size (5k users, 50 roles, 1k
//! resources, 15k grants): builds, decides, and takes incremental changes. Set
//! `WARDKEY_AUTHZ_SCALE=20` (with `--release`) for the full target (100k users, 1k roles, 20k
//! resources, 300k grants); timings and resident memory are printed either way.

use chrono::{DateTime, TimeZone, Utc};
use std::collections::BTreeMap;
use std::time::Instant;
use uuid::Uuid;
use wardkey_authz::*;
use wardkey_domain::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 4, 12, 0, 0).single().unwrap()
}

/// A cheap deterministic generator (no dependency for a test's randomness).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn id(kind: u128, i: usize) -> Uuid {
    Uuid::from_u128((kind << 96) | 0x7000_8000_0000_0000 | i as u128)
}

struct Sizes {
    users: usize,
    groups: usize,
    roles: usize,
    resources: usize,
    grants: usize,
}

fn workload(s: &Sizes) -> Records {
    let mut rng = Lcg(7);
    let type_names = ["facility", "department", "dataset", "patient_record", "application"];
    let actions = ["read", "write", "export", "delete", "approve", "admin"];
    let resource_types: Vec<ResourceType> = type_names
        .iter()
        .enumerate()
        .map(|(i, n)| ResourceType {
            id: ResourceTypeId(id(4, i)),
            name: (*n).to_owned(),
            description: None,
            actions: {
                let mut a: Vec<String> = actions.iter().map(|a| (*a).to_owned()).collect();
                normalise_actions(&mut a);
                a
            },
            phi: true,
            decision_audit: DecisionAudit::default(),
            created_at: t0(),
            updated_at: t0(),
            version: 1,
        })
        .collect();
    let users: Vec<User> = (0..s.users)
        .map(|i| User {
            id: UserId(id(1, i)),
            username: format!("user{i}"),
            display_name: None,
            email: None,
            status: if i % 50 == 0 { UserStatus::Suspended } else { UserStatus::Active },
            hr: HrAttributes {
                department: Some(format!("dept{}", i % 40)),
                job_code: Some(format!("{}", 1000 + i % 300)),
                title: Some("Staff".into()),
                employment_type: Some(EmploymentType::Employee),
                ..HrAttributes::default()
            },
            verification: None,
            created_at: t0(),
            updated_at: t0(),
            version: 1,
        })
        .collect();
    let groups: Vec<Group> = (0..s.groups)
        .map(|i| Group {
            id: GroupId(id(3, i)),
            name: format!("group{i}"),
            description: None,
            created_at: t0(),
            updated_at: t0(),
            version: 1,
        })
        .collect();
    let mut memberships = Vec::new();
    for (i, u) in users.iter().enumerate() {
        for k in 0..3 {
            memberships.push((groups[(i * 7 + k * 13) % groups.len()].id, Member::User(u.id)));
        }
    }
    // A tree: 20 facilities, each with departments, each with datasets and record sets.
    let mut resources: Vec<Resource> = Vec::with_capacity(s.resources);
    for i in 0..s.resources {
        let (ty, parent) = match i {
            i if i < 20 => (0, None),
            i if i < 20 + s.resources / 10 => (1, Some(resources[rng.below(20)].id)),
            _ => {
                let dept_end = 20 + s.resources / 10;
                (2 + rng.below(2), Some(resources[20 + rng.below(dept_end - 20)].id))
            }
        };
        let mut attributes = BTreeMap::new();
        attributes.insert("sensitivity".to_owned(), if i % 10 == 0 { "high" } else { "normal" }.to_owned());
        resources.push(Resource {
            id: ResourceId(id(5, i)),
            type_id: resource_types[ty].id,
            name: format!("res{i}"),
            parent_id: parent,
            description: None,
            attributes,
            created_at: t0(),
            updated_at: t0(),
            version: 1,
        });
    }
    let roles: Vec<Role> = (0..s.roles)
        .map(|i| Role {
            id: RoleId(id(6, i)),
            name: format!("role{i}"),
            description: None,
            permissions: (0..2)
                .map(|k| Permission {
                    resource_type: type_names[(i + k) % type_names.len()].to_owned(),
                    actions: actions[..1 + (i + k) % actions.len()].iter().map(|a| (*a).to_owned()).collect(),
                })
                .collect(),
            privileged: false,
            session_policy: RoleSessionPolicy::default(),
            break_glass: false,
            conditions: if i % 5 == 0 {
                Conditions { min_assurance: Some(Assurance::Mfa), ..Conditions::default() }
            } else {
                Conditions::default()
            },
            created_at: t0(),
            updated_at: t0(),
            version: 1,
        })
        .collect();
    // Direct grants mostly scoped to one resource, a few type-wide (birthright); group grants
    // scoped to a department, as a ward's team would hold them.
    let departments = 20..20 + s.resources / 10;
    let grants: Vec<Grant> = (0..s.grants)
        .map(|i| {
            let (subject, scope) = if i % 50 == 0 {
                let dept = &resources[departments.start + rng.below(departments.len())];
                (Subject::Group(groups[rng.below(groups.len())].id), Some(dept.id))
            } else {
                let scope = if i % 20 == 0 { None } else { Some(resources[rng.below(resources.len())].id) };
                (Subject::User(users[rng.below(users.len())].id), scope)
            };
            Grant {
                id: GrantId(id(7, i)),
                subject,
                role_id: roles[rng.below(roles.len())].id,
                resource_id: scope,
                source: if i % 100 == 1 { GrantSource::BreakGlass } else { GrantSource::Manual },
                requester: None,
                approver: None,
                justification: None,
                starts_at: t0() - chrono::Duration::days(1),
                expires_at: if i % 4 == 0 { Some(t0() + chrono::Duration::days(30)) } else { None },
                created_at: t0(),
                created_by: "hr".into(),
                revoked_at: None,
                revoked_by: None,
                conditions: Conditions::default(),
                version: 1,
            }
        })
        .collect();
    Records {
        revision: 1,
        users,
        service_accounts: vec![],
        groups,
        memberships,
        resource_types,
        resources,
        roles,
        grants,
        forbid_rules: vec![],
    }
}

/// Resident and peak resident memory of this process, in MiB (Linux).
fn memory_mib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            / 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[test]
fn a_hospital_sized_workload_builds_decides_and_updates() {
    let factor: usize = std::env::var("WARDKEY_AUTHZ_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let sizes = Sizes {
        users: 5_000 * factor,
        groups: 50 * factor,
        roles: 50 * factor,
        resources: 1_000 * factor,
        grants: 15_000 * factor,
    };
    let baseline = memory_mib();
    let records = workload(&sizes);
    // What the requests and updates below need, kept aside so the records can be moved into
    // the build (and freed), leaving the index as the main thing in memory.
    let mut rng = Lcg(11);
    let n = 20_000;
    let type_name: BTreeMap<ResourceTypeId, String> =
        records.resource_types.iter().map(|t| (t.id, t.name.clone())).collect();
    let asks: Vec<(String, String, String)> = (0..n)
        .map(|_| {
            let u = &records.users[rng.below(records.users.len())];
            let r = &records.resources[rng.below(records.resources.len())];
            (u.id.to_string(), type_name[&r.type_id].clone(), r.id.to_string())
        })
        .collect();
    let dataset = records.resources.iter().rev().find(|r| r.type_id == records.resource_types[2].id).unwrap().id;
    let new_grants: Vec<Grant> = records.grants.iter().take(2_000).cloned().collect();

    let started = Instant::now();
    let index = Index::build(records);
    let built = started.elapsed();
    let after_build = memory_mib();
    let stats = index.snapshot().stats();
    assert_eq!(stats.users, sizes.users);
    assert_eq!(stats.grants, sizes.grants);
    assert_eq!(stats.resources, sizes.resources);
    assert_eq!(stats.roles, sizes.roles);
    index.snapshot().verify().unwrap();

    // Decisions on a spread of requests; count allows so the work is not optimised away.
    let ctx = RequestContext::at(t0()).with_assurance(Assurance::Mfa);
    let actions = ["read", "write", "export"];
    let started = Instant::now();
    let mut allowed = 0usize;
    for (i, (who, ty, rid)) in asks.iter().enumerate() {
        let req = Request {
            subject: SubjectRef::user(who),
            action: actions[i % 3],
            resource: ResourceRef { type_name: ty, id: Some(rid), properties: &NO_PROPERTIES },
            context: ctx,
        };
        if index.check(&req) {
            allowed += 1;
        }
    }
    let per_check = started.elapsed() / n as u32;
    let started = Instant::now();
    for (i, (who, ty, rid)) in asks.iter().enumerate().take(2_000) {
        let req = Request {
            subject: SubjectRef::user(who),
            action: actions[i % 3],
            resource: ResourceRef { type_name: ty, id: Some(rid), properties: &NO_PROPERTIES },
            context: ctx,
        };
        assert_eq!(index.evaluate(&req).allow, index.check(&req));
    }
    let per_evaluate = started.elapsed() / 2_000;

    // Incremental changes: one grant at a time, each a published snapshot.
    let started = Instant::now();
    let updates = 2_000;
    for (i, g) in new_grants.into_iter().enumerate() {
        let mut g = g;
        g.id = GrantId(id(9, i));
        index.apply([Change::UpsertGrant(g), Change::SetRevision(2 + i as u64)]);
    }
    let per_update = started.elapsed() / updates as u32;
    assert_eq!(index.snapshot().stats().grants, sizes.grants + updates);
    assert_eq!(index.revision(), 1 + updates as u64);

    // Who has access to one dataset, through groups and scopes.
    let started = Instant::now();
    let rid = dataset.to_string();
    let who = index.subjects_with_access(&ResourceRef::new("dataset", &rid), "read", &ctx, Page::ALL).unwrap();
    let search = started.elapsed();

    eprintln!(
        "scale x{factor}: {stats:?}\n  build {built:?}; memory (MiB, resident/peak): before records {baseline:?}, \
         after build with records freed {after_build:?}\n  check {per_check:?} each ({allowed}/{n} allowed), \
         evaluate {per_evaluate:?} each, one-grant update {per_update:?} each, \
         subjects_with_access {search:?} ({} subjects)",
        who.items.len()
    );
    assert!(allowed > 0, "the workload allows something");
}
