//! The decision benchmarks' workload, as plain indices so that one model can be loaded into
//! Wardkey's index, Wardkey's store (for the HTTP runs), Cedar, casbin and Cerbos alike.
//!
//! Shape (issue 4): 100,000 users in 1,000 groups, 1,000 roles, 20,000 resources in a 4-level
//! tree (facility → department → dataset → patient record), 300,000 grants (3 per user on
//! average; 1 in 100 held by a group and scoped to a department, 1 in 20 type-wide, the rest
//! scoped to one resource at any level; 1 in 4 with an expiry), 1 role in 5 requiring MFA, 1
//! user in 50 suspended; 1,024 rotating requests, half aimed at what some grant gives (so about
//! half allow), half anywhere. `WK_BENCH_SCALE=k` divides every count by k, for a quick run.

use chrono::{DateTime, TimeZone, Utc};
use std::collections::BTreeMap;
use wardkey_authz::Records;
use wardkey_domain::*;

pub const TYPES: [&str; 4] = ["facility", "department", "dataset", "patient_record"];
pub const ACTIONS: [&str; 4] = ["delete", "export", "read", "write"]; // sorted, as Wardkey stores them
pub const REQUESTS: usize = 1_024;

pub struct Sizes {
    pub users: usize,
    pub groups: usize,
    pub roles: usize,
    pub resources: usize,
    pub grants: usize,
}

impl Sizes {
    pub fn from_env() -> Sizes {
        let k: usize =
            std::env::var("WK_BENCH_SCALE").ok().and_then(|v| v.parse().ok()).filter(|k| *k >= 1).unwrap_or(1);
        Sizes { users: 100_000 / k, groups: 1_000 / k, roles: 1_000 / k, resources: 20_000 / k, grants: 300_000 / k }
    }
}

pub struct WUser {
    pub active: bool,
    pub group: usize,
}

pub struct WResource {
    pub ty: usize,
    pub parent: Option<usize>,
}

pub struct WRole {
    /// (type, bitmask over `ACTIONS`)
    pub perms: Vec<(usize, u8)>,
    pub mfa: bool,
}

#[derive(Clone, Copy)]
pub enum Holder {
    User(usize),
    Group(usize),
}

pub struct WGrant {
    pub holder: Holder,
    pub role: usize,
    pub scope: Option<usize>,
    pub expires: bool,
}

#[derive(Clone, Copy)]
pub struct Ask {
    pub user: usize,
    pub action: usize,
    pub resource: usize,
    pub mfa: bool,
}

pub struct Workload {
    pub users: Vec<WUser>,
    pub groups: usize,
    pub resources: Vec<WResource>,
    pub roles: Vec<WRole>,
    pub grants: Vec<WGrant>,
    pub asks: Vec<Ask>,
}

/// A cheap deterministic generator: the workload is the same in every run.
pub struct Lcg(pub u64);
impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The instant every request is asked at (grants start a day before, expiries are 30 days on).
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 4, 12, 0, 0).single().unwrap_or_default()
}

pub fn expiry() -> DateTime<Utc> {
    now() + chrono::Duration::days(30)
}

impl Workload {
    pub fn generate(s: &Sizes) -> Workload {
        let mut rng = Lcg(0x5744_4b45_5942_454e);
        let users: Vec<WUser> = (0..s.users).map(|i| WUser { active: i % 50 != 7, group: i % s.groups }).collect();
        let facilities = 20.min(s.resources);
        let departments = facilities + s.resources / 10;
        let datasets = departments + s.resources * 3 / 10;
        let mut resources = Vec::with_capacity(s.resources);
        for i in 0..s.resources {
            let (ty, parent) = if i < facilities {
                (0, None)
            } else if i < departments {
                (1, Some(rng.below(facilities)))
            } else if i < datasets {
                (2, Some(facilities + rng.below(departments - facilities)))
            } else {
                (3, Some(departments + rng.below(datasets - departments)))
            };
            resources.push(WResource { ty, parent });
        }
        let roles: Vec<WRole> = (0..s.roles)
            .map(|i| WRole {
                // Every role can read; the other three actions vary (a non-empty 4-bit mask).
                perms: (0..1 + i % 2)
                    .map(|k| ((i + k * 3) % TYPES.len(), (((i * 7 + k * 3) % 15) as u8 + 1) | 0b0100))
                    .collect(),
                mfa: i % 5 == 0,
            })
            .collect();
        let grants: Vec<WGrant> = (0..s.grants)
            .map(|i| {
                let (holder, scope) = if i % 100 == 0 {
                    (Holder::Group(rng.below(s.groups)), Some(facilities + rng.below(departments - facilities)))
                } else if i % 20 == 1 {
                    (Holder::User(rng.below(s.users)), None)
                } else {
                    (Holder::User(rng.below(s.users)), Some(rng.below(s.resources)))
                };
                WGrant { holder, role: rng.below(s.roles), scope, expires: i % 4 == 0 }
            })
            .collect();
        let mut w = Workload { users, groups: s.groups, resources, roles, grants, asks: Vec::new() };
        w.asks = w.make_asks(&mut rng);
        w
    }

    fn make_asks(&self, rng: &mut Lcg) -> Vec<Ask> {
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); self.resources.len()];
        for (i, r) in self.resources.iter().enumerate() {
            if let Some(p) = r.parent {
                children[p].push(i);
            }
        }
        let mut by_type: Vec<Vec<usize>> = vec![Vec::new(); TYPES.len()];
        for (i, r) in self.resources.iter().enumerate() {
            by_type[r.ty].push(i);
        }
        let members: Vec<Vec<usize>> = {
            let mut m = vec![Vec::new(); self.groups];
            for (u, user) in self.users.iter().enumerate() {
                m[user.group].push(u);
            }
            m
        };
        (0..REQUESTS)
            .map(|i| {
                let mfa = rng.below(2) == 0;
                if i % 2 == 0 {
                    // Aimed: a holder of some grant, an action its role lists, a resource of the
                    // permitted type under the grant's scope (grants whose scope holds no such
                    // resource, like a facility permission scoped to one patient record, are
                    // passed over).
                    loop {
                        let g = &self.grants[rng.below(self.grants.len())];
                        let (ty, mask) = self.roles[g.role].perms[rng.below(self.roles[g.role].perms.len())];
                        let under: Vec<usize> = match g.scope {
                            None => by_type[ty].clone(),
                            Some(scope) => {
                                let mut found = Vec::new();
                                let mut stack = vec![scope];
                                while let Some(r) = stack.pop() {
                                    if self.resources[r].ty == ty {
                                        found.push(r);
                                    }
                                    stack.extend(children[r].iter().copied());
                                }
                                found
                            }
                        };
                        if under.is_empty() {
                            continue;
                        }
                        let user = match g.holder {
                            Holder::User(u) => u,
                            Holder::Group(k) => members[k][rng.below(members[k].len())],
                        };
                        let actions: Vec<usize> = (0..ACTIONS.len()).filter(|a| mask & (1 << a) != 0).collect();
                        let action = actions[rng.below(actions.len())];
                        break Ask { user, action, resource: under[rng.below(under.len())], mfa };
                    }
                } else {
                    Ask {
                        user: rng.below(self.users.len()),
                        action: rng.below(ACTIONS.len()),
                        resource: rng.below(self.resources.len()),
                        mfa,
                    }
                }
            })
            .collect()
    }

    /// The resource and its ancestors, nearest first.
    pub fn chain(&self, mut r: usize) -> Vec<usize> {
        let mut out = vec![r];
        while let Some(p) = self.resources[r].parent {
            out.push(p);
            r = p;
        }
        out
    }

    pub fn members(&self) -> Vec<Vec<usize>> {
        let mut m = vec![Vec::new(); self.groups];
        for (u, user) in self.users.iter().enumerate() {
            m[user.group].push(u);
        }
        m
    }

    /// The same model as Wardkey records, with ids chosen here (see `ids`).
    pub fn records(&self) -> Records {
        let t0 = now();
        let resource_types: Vec<ResourceType> = TYPES
            .iter()
            .enumerate()
            .map(|(i, n)| ResourceType {
                id: ResourceTypeId(ids::uuid(4, i)),
                name: (*n).to_owned(),
                description: None,
                actions: ACTIONS.iter().map(|a| (*a).to_owned()).collect(),
                phi: true,
                decision_audit: DecisionAudit::default(),
                created_at: t0,
                updated_at: t0,
                version: 1,
            })
            .collect();
        let users = self
            .users
            .iter()
            .enumerate()
            .map(|(i, u)| User {
                id: UserId(ids::user(i)),
                username: format!("u{i}"),
                display_name: None,
                email: None,
                status: if u.active { UserStatus::Active } else { UserStatus::Suspended },
                hr: HrAttributes::default(),
                verification: None,
                created_at: t0,
                updated_at: t0,
                version: 1,
            })
            .collect();
        let groups = (0..self.groups)
            .map(|i| Group {
                id: GroupId(ids::group(i)),
                name: format!("g{i}"),
                description: None,
                created_at: t0,
                updated_at: t0,
                version: 1,
            })
            .collect();
        let memberships = self
            .users
            .iter()
            .enumerate()
            .map(|(i, u)| (GroupId(ids::group(u.group)), Member::User(UserId(ids::user(i)))))
            .collect();
        let resources = self
            .resources
            .iter()
            .enumerate()
            .map(|(i, r)| Resource {
                id: ResourceId(ids::resource(i)),
                type_id: ResourceTypeId(ids::uuid(4, r.ty)),
                name: format!("r{i}"),
                parent_id: r.parent.map(|p| ResourceId(ids::resource(p))),
                description: None,
                attributes: BTreeMap::new(),
                created_at: t0,
                updated_at: t0,
                version: 1,
            })
            .collect();
        let roles = self.roles.iter().enumerate().map(|(i, r)| self.role(i, r, t0)).collect();
        let grants = self
            .grants
            .iter()
            .enumerate()
            .map(|(i, g)| Grant {
                id: GrantId(ids::uuid(7, i)),
                subject: match g.holder {
                    Holder::User(u) => Subject::User(UserId(ids::user(u))),
                    Holder::Group(k) => Subject::Group(GroupId(ids::group(k))),
                },
                role_id: RoleId(ids::role(g.role)),
                resource_id: g.scope.map(|r| ResourceId(ids::resource(r))),
                source: GrantSource::Manual,
                requester: None,
                approver: None,
                justification: None,
                starts_at: t0 - chrono::Duration::days(1),
                expires_at: g.expires.then(expiry),
                created_at: t0,
                created_by: "bench".into(),
                revoked_at: None,
                revoked_by: None,
                conditions: Conditions::default(),
                version: 1,
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

    pub fn role(&self, i: usize, r: &WRole, t0: DateTime<Utc>) -> Role {
        Role {
            id: RoleId(ids::role(i)),
            name: format!("role{i}"),
            description: None,
            permissions: r
                .perms
                .iter()
                .map(|&(ty, mask)| Permission { resource_type: TYPES[ty].to_owned(), actions: mask_actions(mask) })
                .collect(),
            privileged: false,
            session_policy: RoleSessionPolicy::default(),
            break_glass: false,
            conditions: if r.mfa {
                Conditions { min_assurance: Some(Assurance::Mfa), ..Conditions::default() }
            } else {
                Conditions::default()
            },
            created_at: t0,
            updated_at: t0,
            version: 1,
        }
    }
}

pub fn mask_actions(mask: u8) -> Vec<String> {
    (0..ACTIONS.len()).filter(|a| mask & (1 << a) != 0).map(|a| ACTIONS[a].to_owned()).collect()
}

/// Deterministic ids for the in-process engines (the HTTP run uses the ids its store makes).
pub mod ids {
    use uuid::Uuid;
    pub fn uuid(kind: u128, i: usize) -> Uuid {
        Uuid::from_u128((kind << 96) | 0x7000_8000_0000_0000 | i as u128)
    }
    pub fn user(i: usize) -> Uuid {
        uuid(1, i)
    }
    pub fn group(i: usize) -> Uuid {
        uuid(3, i)
    }
    pub fn resource(i: usize) -> Uuid {
        uuid(5, i)
    }
    pub fn role(i: usize) -> Uuid {
        uuid(6, i)
    }
}
