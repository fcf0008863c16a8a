#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]
//! Record builders shared by the test binaries. Ids are deterministic (`Uuid::from_u128`) so
//! that failures reproduce and orderings are predictable.

use chrono::{DateTime, TimeZone, Utc};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use uuid::Uuid;
use wardkey_authz::{Records, Request, RequestContext, ResourceRef, SubjectRef};
use wardkey_domain::*;

/// Wednesday 2026-03-04 12:00 UTC.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 4, 12, 0, 0).single().unwrap()
}

static NEXT: AtomicU64 = AtomicU64::new(1);

/// A fresh id, increasing within a test binary.
pub fn next_uuid() -> Uuid {
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + u128::from(NEXT.fetch_add(1, Ordering::Relaxed)))
}

pub fn user(username: &str) -> User {
    User {
        id: UserId(next_uuid()),
        username: username.to_owned(),
        display_name: None,
        email: None,
        status: UserStatus::Active,
        hr: HrAttributes::default(),
        verification: None,
        created_at: t0(),
        updated_at: t0(),
        version: 1,
    }
}

pub fn service_account(name: &str) -> ServiceAccount {
    ServiceAccount {
        id: ServiceAccountId(next_uuid()),
        name: name.to_owned(),
        description: None,
        owner_id: UserId(next_uuid()),
        status: ServiceAccountStatus::Active,
        created_at: t0(),
        updated_at: t0(),
        version: 1,
    }
}

pub fn group(name: &str) -> Group {
    Group {
        id: GroupId(next_uuid()),
        name: name.to_owned(),
        description: None,
        created_at: t0(),
        updated_at: t0(),
        version: 1,
    }
}

pub fn resource_type(name: &str, actions: &[&str]) -> ResourceType {
    let mut actions: Vec<String> = actions.iter().map(|a| (*a).to_owned()).collect();
    normalise_actions(&mut actions);
    ResourceType {
        id: ResourceTypeId(next_uuid()),
        name: name.to_owned(),
        description: None,
        actions,
        phi: true,
        decision_audit: DecisionAudit::default(),
        created_at: t0(),
        updated_at: t0(),
        version: 1,
    }
}

pub fn resource(ty: &ResourceType, name: &str, parent: Option<&Resource>) -> Resource {
    Resource {
        id: ResourceId(next_uuid()),
        type_id: ty.id,
        name: name.to_owned(),
        parent_id: parent.map(|p| p.id),
        description: None,
        attributes: BTreeMap::new(),
        created_at: t0(),
        updated_at: t0(),
        version: 1,
    }
}

pub fn role(name: &str, permissions: &[(&str, &[&str])]) -> Role {
    Role {
        id: RoleId(next_uuid()),
        name: name.to_owned(),
        description: None,
        permissions: permissions
            .iter()
            .map(|(t, a)| Permission {
                resource_type: (*t).to_owned(),
                actions: a.iter().map(|x| (*x).to_owned()).collect(),
            })
            .collect(),
        privileged: false,
        session_policy: RoleSessionPolicy::default(),
        break_glass: false,
        conditions: Conditions::default(),
        created_at: t0(),
        updated_at: t0(),
        version: 1,
    }
}

pub fn grant(subject: Subject, role: &Role, scope: Option<&Resource>) -> Grant {
    Grant {
        id: GrantId(next_uuid()),
        subject,
        role_id: role.id,
        resource_id: scope.map(|r| r.id),
        source: GrantSource::Manual,
        requester: None,
        approver: None,
        justification: None,
        starts_at: t0() - chrono::Duration::days(30),
        expires_at: None,
        created_at: t0(),
        created_by: "test".to_owned(),
        revoked_at: None,
        revoked_by: None,
        conditions: Conditions::default(),
        version: 1,
    }
}

pub fn forbid(name: &str, types: &[&str], actions: &[&str], when: ForbidWhen) -> ForbidRule {
    ForbidRule {
        id: ForbidRuleId(next_uuid()),
        name: name.to_owned(),
        description: None,
        resource_types: types.iter().map(|t| (*t).to_owned()).collect(),
        actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        when,
        created_at: t0(),
        updated_at: t0(),
        version: 1,
    }
}

pub fn uid(u: &User) -> Subject {
    Subject::User(u.id)
}
pub fn gid(g: &Group) -> Subject {
    Subject::Group(g.id)
}
pub fn sid(s: &ServiceAccount) -> Subject {
    Subject::ServiceAccount(s.id)
}

/// A small hospital: a facility with two wards (siblings), a chart under ward A, a nurse in
/// the nurses group, a doctor, an integration service account.
pub struct Ward {
    pub records: Records,
    pub record: ResourceType,
    pub unit: ResourceType,
    pub hospital: Resource,
    pub ward_a: Resource,
    pub ward_b: Resource,
    pub chart_a: Resource,
    pub chart_b: Resource,
    pub nurse: User,
    pub doctor: User,
    pub bot: ServiceAccount,
    pub nurses: Group,
    pub reader: Role,
    pub writer: Role,
}

impl Ward {
    pub fn new() -> Ward {
        let record = resource_type("patient_record", &["read", "write", "export", "delete"]);
        let unit = resource_type("unit", &["read", "admin"]);
        let hospital = resource(&unit, "St Elsewhere", None);
        let ward_a = resource(&unit, "Ward-A", Some(&hospital));
        let ward_b = resource(&unit, "Ward-B", Some(&hospital));
        let chart_a = resource(&record, "chart-a", Some(&ward_a));
        let chart_b = resource(&record, "chart-b", Some(&ward_b));
        let nurse = user("nurse.joy");
        let doctor = user("dr.house");
        let bot = service_account("lab-feed");
        let nurses = group("Nurses");
        let reader = role("record-reader", &[("patient_record", &["read"]), ("unit", &["read"])]);
        let writer = role("record-writer", &[("patient_record", &["read", "write"])]);
        let records = Records {
            revision: 1,
            users: vec![nurse.clone(), doctor.clone()],
            service_accounts: vec![bot.clone()],
            groups: vec![nurses.clone()],
            memberships: vec![(nurses.id, Member::User(nurse.id))],
            resource_types: vec![record.clone(), unit.clone()],
            resources: vec![hospital.clone(), ward_a.clone(), ward_b.clone(), chart_a.clone(), chart_b.clone()],
            roles: vec![reader.clone(), writer.clone()],
            grants: vec![],
            forbid_rules: vec![],
        };
        Ward {
            records,
            record,
            unit,
            hospital,
            ward_a,
            ward_b,
            chart_a,
            chart_b,
            nurse,
            doctor,
            bot,
            nurses,
            reader,
            writer,
        }
    }
}

/// A request by a user, named by username or id.
pub fn ask<'a>(who: &'a str, action: &'a str, resource: ResourceRef<'a>, ctx: RequestContext) -> Request<'a> {
    Request { subject: SubjectRef::user(who), action, resource, context: ctx }
}
