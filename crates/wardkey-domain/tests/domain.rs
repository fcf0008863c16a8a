#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Unit and property tests of the domain rules.

use chrono::{Duration, TimeZone, Utc};
use proptest::prelude::*;
use wardkey_domain::*;

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).single().expect("valid time")
}

fn status_strategy() -> impl Strategy<Value = UserStatus> {
    prop::sample::select(UserStatus::ALL.to_vec())
}

#[test]
fn lifecycle_allows_exactly_the_documented_moves() {
    use UserStatus::*;
    let allowed = [
        (PendingVerification, Active),
        (PendingVerification, Disabled),
        (Active, Suspended),
        (Active, Disabled),
        (Suspended, Active),
        (Suspended, Disabled),
        (Disabled, PendingVerification),
    ];
    for from in UserStatus::ALL {
        for to in UserStatus::ALL {
            let expected = allowed.contains(&(from, to));
            assert_eq!(from.can_move_to(to), expected, "{from} -> {to}");
            match from.transition(to) {
                Ok(s) => assert!(expected && s == to),
                Err(DomainError::IllegalTransition { from: f, to: t }) => {
                    assert!(!expected);
                    assert_eq!((f.as_str(), t.as_str()), (from.as_str(), to.as_str()));
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
    }
    assert!(Active.may_access());
    assert!(!Suspended.may_access() && !Disabled.may_access() && !PendingVerification.may_access());
}

proptest! {
    /// Whatever sequence of moves is attempted, refused moves leave the state alone and a
    /// terminated (disabled) account never becomes active without re-verification.
    #[test]
    fn lifecycle_sequences_never_skip_verification(moves in prop::collection::vec(status_strategy(), 0..40)) {
        let mut state = UserStatus::PendingVerification;
        let mut verified_since_rehire = false;
        for to in moves {
            let before = state;
            match state.transition(to) {
                Ok(next) => {
                    if before == UserStatus::Disabled { verified_since_rehire = false; }
                    if before == UserStatus::PendingVerification && next == UserStatus::Active { verified_since_rehire = true; }
                    state = next;
                }
                Err(_) => prop_assert_eq!(state, before),
            }
            if state == UserStatus::Active || state == UserStatus::Suspended {
                prop_assert!(verified_since_rehire, "reached {} without passing pending_verification -> active", state);
            }
        }
    }

    #[test]
    fn status_names_round_trip(s in status_strategy()) {
        prop_assert_eq!(UserStatus::parse(s.as_str()), Some(s));
        let json = serde_json::to_string(&s).expect("serialises");
        prop_assert_eq!(json, format!("\"{}\"", s.as_str()));
    }

    /// Usernames: bounded, no control characters, never panics on any input.
    #[test]
    fn username_validation_is_total(name in ".{0,300}") {
        let input = NewUser { username: name.clone(), display_name: None, email: None, status: None, hr: HrAttributes::default() };
        let result = input.validate();
        let ok_chars = name.chars().next().is_some_and(|c| c.is_alphanumeric())
            && name.chars().all(|c| c.is_alphanumeric() || ".-_@:".contains(c));
        let ok = !name.is_empty() && name.chars().count() <= 128 && ok_chars;
        prop_assert_eq!(result.is_ok(), ok, "{:?}", name);
        if let Err(DomainError::Invalid(errors)) = result {
            prop_assert!(errors.iter().all(|e| e.field == "username"));
        }
    }

    #[test]
    fn normalised_permissions_are_idempotent_and_sorted(
        perms in prop::collection::vec(("[a-c]{1,2}", prop::collection::vec("[r-w]{1,2}", 1..4)), 0..8)
    ) {
        let input: Vec<Permission> = perms.into_iter().map(|(t, a)| Permission { resource_type: t, actions: a }).collect();
        let once = normalise_permissions(input.clone());
        let twice = normalise_permissions(once.clone());
        prop_assert_eq!(&once, &twice);
        prop_assert!(once.windows(2).all(|w| w[0].resource_type < w[1].resource_type));
        for p in &input {
            for a in &p.actions {
                let covered = once.iter().any(|q| q.resource_type == p.resource_type && q.actions.contains(a));
                prop_assert!(covered);
            }
        }
    }
}

fn role(name: &str, perms: &[(&str, &[&str])]) -> Role {
    Role {
        id: RoleId::generate(),
        name: name.into(),
        description: None,
        permissions: perms
            .iter()
            .map(|(t, a)| Permission { resource_type: (*t).into(), actions: a.iter().map(|s| (*s).into()).collect() })
            .collect(),
        privileged: false,
        session_policy: Default::default(),
        conditions: Default::default(),
        break_glass: false,
        created_at: now(),
        updated_at: now(),
        version: 1,
    }
}

fn rule(left: SodItem, right: SodItem) -> SodRule {
    SodRule {
        id: SodRuleId::generate(),
        name: "r".into(),
        description: None,
        left,
        right,
        created_at: now(),
        updated_at: now(),
        version: 1,
    }
}

#[test]
fn sod_blocks_the_grant_that_completes_a_conflict() {
    let requester = role("requester", &[("payment", &["request"])]);
    let approver = role("approver", &[("payment", &["approve"])]);
    let reader = role("reader", &[("dataset", &["read"])]);
    let by_role = rule(SodItem::Role { role_id: requester.id }, SodItem::Role { role_id: approver.id });
    let by_perm = rule(
        SodItem::Permission { resource_type: "payment".into(), action: "request".into() },
        SodItem::Permission { resource_type: "payment".into(), action: "approve".into() },
    );
    for r in [&by_role, &by_perm] {
        let rules = vec![r.clone()];
        assert!(check_sod(&rules, std::slice::from_ref(&requester), std::slice::from_ref(&approver)).is_err());
        assert!(
            check_sod(&rules, std::slice::from_ref(&approver), std::slice::from_ref(&requester)).is_err(),
            "symmetric"
        );
        assert!(check_sod(&rules, &[], &[requester.clone(), approver.clone()]).is_err(), "both at once");
        assert!(check_sod(&rules, std::slice::from_ref(&requester), std::slice::from_ref(&reader)).is_ok());
        // A conflict that predates the rule does not block unrelated grants.
        assert!(check_sod(&rules, &[requester.clone(), approver.clone()], std::slice::from_ref(&reader)).is_ok());
    }
    match check_sod(std::slice::from_ref(&by_role), &[requester], &[approver]) {
        Err(DomainError::SodViolation { rule_id, .. }) => assert_eq!(rule_id, by_role.id),
        other => panic!("{other:?}"),
    }
}

#[test]
fn templates_match_hr_attributes_case_insensitively_and_never_when_empty() {
    let nurse = RoleId::generate();
    let cardio = RoleId::generate();
    let t = |all: Vec<AttributeMatch>, roles: Vec<RoleId>| RoleTemplate {
        id: RoleTemplateId::generate(),
        name: "t".into(),
        description: None,
        rule: TemplateRule { all },
        role_ids: roles,
        created_at: now(),
        updated_at: now(),
        version: 1,
    };
    let templates = vec![
        t(
            vec![AttributeMatch { attribute: HrAttribute::JobCode, op: MatchOp::Prefix, values: vec!["rn".into()] }],
            vec![nurse],
        ),
        t(
            vec![
                AttributeMatch {
                    attribute: HrAttribute::Department,
                    op: MatchOp::In,
                    values: vec!["Cardiology".into()],
                },
                AttributeMatch {
                    attribute: HrAttribute::EmploymentType,
                    op: MatchOp::In,
                    values: vec!["employee".into()],
                },
            ],
            vec![cardio, nurse],
        ),
        t(vec![], vec![RoleId::generate()]),
    ];
    let hr = HrAttributes {
        job_code: Some("RN-2".into()),
        department: Some(" cardiology ".into()),
        employment_type: Some(EmploymentType::Employee),
        ..Default::default()
    };
    let mut expected = vec![nurse, cardio];
    expected.sort();
    assert_eq!(birthright_roles(&templates, &hr), expected);
    let contractor = HrAttributes { employment_type: Some(EmploymentType::Contractor), ..hr.clone() };
    assert_eq!(birthright_roles(&templates, &contractor), vec![nurse]);
    assert!(birthright_roles(&templates, &HrAttributes::default()).is_empty());
    // Templates with an empty rule are refused when saved.
    let bad = NewRoleTemplate {
        name: "x".into(),
        description: None,
        rule: TemplateRule { all: vec![] },
        role_ids: vec![nurse],
    };
    assert!(matches!(bad.validate(), Err(DomainError::Invalid(e)) if e[0].field == "rule.all"));
}

#[test]
fn grants_validate_their_window_and_refuse_asserted_provenance() {
    let base = NewGrant {
        subject: Subject::User(UserId::generate()),
        role_id: RoleId::generate(),
        resource_id: None,
        source: None,
        requester: None,
        approver: Some(serde_json::json!("user:bob")),
        justification: Some("covering the night shift".into()),
        starts_at: None,
        expires_at: None,
        conditions: Default::default(),
    };
    let err = base.validate(now()).expect_err("a named approver is refused");
    assert!(matches!(err, DomainError::Invalid(e) if e[0].field == "approver"));
    for (field, g) in [
        ("source", NewGrant { approver: None, source: Some(serde_json::json!("request")), ..base.clone() }),
        ("source", NewGrant { approver: None, source: Some(serde_json::json!("break_glass")), ..base.clone() }),
        ("requester", NewGrant { approver: None, requester: Some(serde_json::json!("user:x")), ..base.clone() }),
        ("justification", NewGrant { approver: None, justification: None, ..base.clone() }),
        ("justification", NewGrant { approver: None, justification: Some("  ".into()), ..base.clone() }),
    ] {
        assert!(matches!(g.validate(now()), Err(DomainError::Invalid(e)) if e[0].field == field), "{field}");
    }
    let manual = NewGrant { approver: None, source: Some(serde_json::json!("manual")), ..base.clone() };
    assert!(manual.validate(now()).is_ok());
    let mut g = base.clone();
    g.approver = None;
    g.expires_at = Some(now() - Duration::minutes(1));
    assert!(matches!(g.validate(now()), Err(DomainError::Invalid(e)) if e[0].field == "expires_at"));
    g.starts_at = Some(now() + Duration::days(2));
    g.expires_at = Some(now() + Duration::days(1));
    assert!(g.validate(now()).is_err());
    g.expires_at = Some(now() + Duration::days(3));
    assert!(g.validate(now()).is_ok());

    let grant = Grant {
        id: GrantId::generate(),
        subject: g.subject,
        role_id: g.role_id,
        resource_id: None,
        source: GrantSource::Manual,
        requester: None,
        approver: None,
        justification: None,
        starts_at: now(),
        expires_at: Some(now() + Duration::hours(1)),
        created_at: now(),
        created_by: "operator:root".into(),
        revoked_at: None,
        revoked_by: None,
        conditions: Default::default(),
        version: 1,
    };
    assert!(grant.is_effective_at(now()));
    assert!(!grant.is_effective_at(now() + Duration::hours(1)), "expiry is exact");
    assert!(!grant.is_effective_at(now() - Duration::seconds(1)), "not before start");
    let revoked = Grant { revoked_at: Some(now()), ..grant };
    assert!(!revoked.is_effective_at(now()));
}

#[test]
fn resource_cycles_and_bounds() {
    let a = ResourceId::generate();
    let b = ResourceId::generate();
    assert!(check_no_cycle(a, &[b]).is_ok());
    assert!(check_no_cycle(a, &[b, a]).is_err());
    // One depth limit: a resource may have MAX_RESOURCE_DEPTH ancestors, its subtree included.
    assert!(check_depth(MAX_RESOURCE_DEPTH - 1, 0).is_ok(), "a leaf at the limit");
    assert!(matches!(check_depth(MAX_RESOURCE_DEPTH, 0), Err(DomainError::Invalid(e)) if e[0].field == "parent_id"));
    assert!(check_depth(MAX_RESOURCE_DEPTH - 3, 2).is_ok());
    assert!(check_depth(MAX_RESOURCE_DEPTH - 3, 3).is_err(), "a moved subtree's deepest point counts");
    assert!(check_depth(usize::MAX, usize::MAX).is_err());
    let long = "x".repeat(5000);
    let r = NewResource {
        type_id: ResourceTypeId::generate(),
        name: "ok".into(),
        parent_id: None,
        description: Some(long),
        attributes: Default::default(),
    };
    assert!(matches!(r.validate(), Err(DomainError::Invalid(e)) if e[0].field == "description"));
    let rt = NewResourceType {
        name: "dataset".into(),
        description: None,
        actions: vec![],
        phi: true,
        decision_audit: Default::default(),
    };
    assert!(matches!(rt.validate(), Err(DomainError::Invalid(e)) if e[0].field == "actions"));
}

#[test]
fn roles_only_name_existing_types_and_actions() {
    let dataset = ResourceType {
        id: ResourceTypeId::generate(),
        name: "dataset".into(),
        description: None,
        actions: vec!["read".into(), "write".into()],
        phi: true,
        decision_audit: Default::default(),
        created_at: now(),
        updated_at: now(),
        version: 1,
    };
    let ok = NewRole {
        name: "r".into(),
        description: None,
        permissions: vec![Permission { resource_type: "dataset".into(), actions: vec!["read".into()] }],
        privileged: false,
        session_policy: Default::default(),
        conditions: Default::default(),
        break_glass: false,
    };
    assert!(ok.validate(std::slice::from_ref(&dataset)).is_ok());
    let bad_action = NewRole {
        permissions: vec![Permission { resource_type: "dataset".into(), actions: vec!["delete".into()] }],
        ..ok.clone()
    };
    assert!(
        matches!(bad_action.validate(std::slice::from_ref(&dataset)), Err(DomainError::Invalid(e)) if e[0].field == "permissions[0].actions[0]")
    );
    let bad_type =
        NewRole { permissions: vec![Permission { resource_type: "app".into(), actions: vec!["read".into()] }], ..ok };
    assert!(
        matches!(bad_type.validate(&[dataset]), Err(DomainError::Invalid(e)) if e[0].field == "permissions[0].resource_type")
    );
}

#[test]
fn scopes_and_ids() {
    assert!(Scope::Admin.satisfies(Scope::Pdp));
    assert!(!Scope::Pdp.satisfies(Scope::Admin));
    assert!(!Scope::AuditRead.satisfies(Scope::Scim));
    assert_eq!(Scope::parse("audit:read"), Some(Scope::AuditRead));
    assert_eq!(serde_json::to_string(&Scope::AuditRead).expect("json"), "\"audit:read\"");
    // UUIDv7: time-ordered and distinct.
    let ids: Vec<UserId> = (0..1000).map(|_| UserId::generate()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 1000);
    assert_eq!(ids[0].0.get_version_num(), 7);
    assert!(ids[0].target().starts_with("user:"));
}

#[test]
fn conditions_are_validated_when_saved() {
    let good = Conditions {
        min_assurance: Some(Assurance::Mfa),
        networks: vec!["10.0.0.0/8".into(), "2001:db8::/32".into()],
        time_windows: vec![TimeWindow {
            time_zone: "Europe/London".into(),
            days: vec![Day::Mon],
            start: "19:00".into(),
            end: "07:00".into(),
        }],
        min_device_trust: Some(DeviceTrust::Managed),
        attribute_rules: vec![AttributeRule {
            resource_property: "care_team".into(),
            op: AttributeOp::In,
            subject_attribute: "groups".into(),
        }],
    };
    let mut errors = Vec::new();
    good.validate(&mut errors, "conditions");
    assert!(errors.is_empty(), "{errors:?}");
    let bad = Conditions {
        networks: vec!["10.0.0.0/33".into(), "not-a-net".into()],
        time_windows: vec![TimeWindow {
            time_zone: "Mars/Olympus".into(),
            days: vec![],
            start: "25:00".into(),
            end: "7:00".into(),
        }],
        attribute_rules: vec![
            AttributeRule {
                resource_property: "owner".into(),
                op: AttributeOp::Equals,
                subject_attribute: "shoe_size".into(),
            },
            AttributeRule {
                resource_property: "dept".into(),
                op: AttributeOp::In,
                subject_attribute: "department".into(),
            },
        ],
        ..Default::default()
    };
    let mut errors = Vec::new();
    bad.validate(&mut errors, "conditions");
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    for f in [
        "conditions.networks[0]",
        "conditions.networks[1]",
        "conditions.time_windows[0].time_zone",
        "conditions.time_windows[0].start",
        "conditions.time_windows[0].end",
        "conditions.attribute_rules[0].subject_attribute",
        "conditions.attribute_rules[1].op",
    ] {
        assert!(fields.contains(&f), "{f} not in {fields:?}");
    }
    assert_eq!(Assurance::from_amr(["pwd", "otp"]), Assurance::Mfa);
    assert_eq!(Assurance::from_amr(["pwd", "hwk"]), Assurance::PhishingResistant);
    assert_eq!(Assurance::from_amr(["pwd"]), Assurance::Password);
    let forbid = NewForbidRule {
        name: "no-psych-without-clearance".into(),
        description: None,
        resource_types: vec!["record".into()],
        actions: vec![],
        when: ForbidWhen::NetworkOutside { networks: vec!["nope".into()] },
    };
    assert!(matches!(forbid.validate(), Err(DomainError::Invalid(e)) if e[0].field == "when.networks[0]"));
}

/// Look-alike usernames: full-width letters compare equal (PRECIS UsernameCaseMapped), a
/// Cyrillic look-alike shares the skeleton (Unicode TS #39), and compatibility characters
/// such as U+210E PLANCK CONSTANT are refused outright.
#[test]
fn look_alike_usernames() {
    use wardkey_domain::{username_key, username_skeleton, validate_username};
    assert_eq!(username_key("H.Nurse").as_deref(), Some("h.nurse"));
    assert_eq!(username_key("\u{ff48}.nurse").as_deref(), Some("h.nurse"), "full-width h");
    assert_eq!(username_key("\u{210e}.nurse"), None, "PLANCK CONSTANT is a compatibility form");
    let latin = username_skeleton("h.nurse");
    assert_eq!(username_skeleton("\u{4bb}.nurse"), latin, "Cyrillic shha");
    assert_eq!(username_skeleton("\u{ff48}.nurse"), latin, "full-width h");
    assert_eq!(username_skeleton("H.NURSE"), latin, "case");
    assert_ne!(username_skeleton("n.nurse"), latin);
    let refused = |name: &str| {
        let mut errors = Vec::new();
        validate_username(&mut errors, "username", name);
        errors.iter().any(|e| e.field == "username")
    };
    assert!(refused("\u{210e}.nurse"));
    assert!(!refused("h.nurse") && !refused("\u{4bb}.nurse") && !refused("jos\u{e9}.garc\u{ed}a"));
}
