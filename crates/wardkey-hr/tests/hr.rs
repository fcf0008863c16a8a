#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The roster parser and the plan, without a store: column mapping, errors by row (missing
//! columns, bad UTF-8, duplicates, over-long values, dates, zones), joiners/movers/leavers,
//! full rosters, contractors, the circuit breaker and time zones.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use proptest::prelude::*;
use wardkey_domain::{EmploymentType, HrAttributes, UserId, UserStatus};
use wardkey_hr::{ColumnMapping, Format, ImportSettings, Plan, Worker, parse, plan};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).unwrap()
}

fn worker(eid: &str, username: &str, dept: &str) -> Worker {
    Worker {
        user_id: UserId::generate(),
        username: username.into(),
        display_name: None,
        email: None,
        status: UserStatus::Active,
        hr: HrAttributes { employee_id: Some(eid.into()), department: Some(dept.into()), ..Default::default() },
        version: 3,
    }
}

fn run(csv: &str, workers: &[Worker], full: bool) -> Plan {
    let s = ImportSettings::default();
    let roster = parse(csv.as_bytes(), Format::Csv, &s).expect("parses");
    plan(&roster, workers, &s, full, now())
}

#[test]
fn mapping_renames_columns_case_insensitively() {
    let s = ImportSettings {
        mapping: ColumnMapping {
            employee_id: "Worker ID".into(),
            department: "Cost Center".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let csv = "\u{feff}worker id , USERNAME,cost center\nE1,ann,Lab\n";
    let roster = parse(csv.as_bytes(), Format::Csv, &s).unwrap();
    let p = plan(&roster, &[], &s, false, now());
    assert_eq!(p.joiners.len(), 1, "{p:?}");
    assert_eq!(p.joiners[0].hr.department.as_deref(), Some("Lab"));
    assert_eq!(p.joiners[0].row, 2);
    // A mapping that uses one column twice is refused.
    let bad = ImportSettings {
        mapping: ColumnMapping { username: "employee_id".into(), ..Default::default() },
        ..Default::default()
    };
    assert!(parse(b"employee_id\nE1\n", Format::Csv, &bad).unwrap_err().message.contains("more than one"));
}

#[test]
fn file_errors_are_clear() {
    let s = ImportSettings::default();
    let e = parse(b"username,department\nx,y\n", Format::Csv, &s).unwrap_err();
    assert!(e.message.contains("missing column \"employee_id\""), "{e}");
    assert!(parse(b"", Format::Csv, &s).is_err());
    assert!(parse(b"employee_id,employee_id\n1,2\n", Format::Csv, &s).is_err());
    assert!(parse(b"\xff\xfe,employee_id\n", Format::Csv, &s).unwrap_err().message.contains("UTF-8"));
    assert!(parse(b"{\"workers\": 3}", Format::Json, &s).is_err());
    assert!(parse(b"[1,", Format::Json, &s).is_err());
    assert!(parse(b"\xff", Format::Json, &s).is_err());
}

#[test]
fn errors_by_row_and_nothing_else_for_those_rows() {
    let mut csv = b"employee_id,username,department,end_date,time_zone,email\n".to_vec();
    csv.extend_from_slice(b"E1,ann,Lab,,,\n"); // 2 ok
    csv.extend_from_slice(b"E2,bad,La\xffb,,,\n"); // 3 bad UTF-8
    csv.extend_from_slice(b"E3,d1,Lab,,,\n"); // 4 duplicate
    csv.extend_from_slice(b"E3,d2,Lab,,,\n"); // 5 duplicate
    csv.extend_from_slice(format!("E4,long,{},,,\n", "x".repeat(257)).as_bytes()); // 6 too long
    csv.extend_from_slice(b"E5,date,Lab,2026-02-30,,\n"); // 7 bad date
    csv.extend_from_slice(b"E6,zone,Lab,,Europe/Atlantis,\n"); // 8 bad zone
    csv.extend_from_slice(b"E7,mail,Lab,,,not-an-email\n"); // 9 bad email
    csv.extend_from_slice(b",noid,Lab,,,\n"); // 10 no employee id
    csv.extend_from_slice(b"E8,short\n"); // 11 wrong field count
    csv.extend_from_slice(b"E9,Bad Name!,Lab,,,\n"); // 12 bad username
    csv.extend_from_slice(b"E10,ann,Lab,,,\n"); // 13 username taken in this file
    let s = ImportSettings::default();
    let roster = parse(&csv, Format::Csv, &s).unwrap();
    let p = plan(&roster, &[], &s, false, now());
    let rows: Vec<usize> = p.errors.iter().map(|e| e.row).collect();
    assert_eq!(rows, vec![3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13], "{:#?}", p.errors);
    assert_eq!(p.joiners.len(), 1);
    assert_eq!(p.rows, 12);
    assert_eq!(p.errors[0].column.as_deref(), Some("department"));
    assert_eq!(p.errors[0].employee_id.as_deref(), Some("E2"));
}

#[test]
fn joiners_movers_leavers_unchanged() {
    let a = worker("E1", "ann", "Lab");
    let b = worker("E2", "ben", "Lab");
    let c = worker("E3", "cat", "Lab");
    let p = run(
        "employee_id,username,department,job_code,status\nE1,ann,Lab,,active\nE2,ben,Radiology,RN,active\nE3,cat,Lab,,Terminated\nE4,dan,Lab,,active\n",
        &[a.clone(), b.clone(), c.clone()],
        false,
    );
    // E1: an empty job code cell over an absent job code is no change.
    assert_eq!(p.unchanged, 1, "{p:#?}");
    assert_eq!(p.joiners.len(), 1);
    assert_eq!(p.joiners[0].username, "dan");
    assert_eq!(p.movers[0].changes.len(), 2, "department and job code");
    // Without the job_code column, E1 is unchanged: absent columns leave attributes alone.
    let p = run(
        "employee_id,department,status\nE1,Lab,active\nE2,Radiology,active\nE3,Lab,terminated\n",
        &[a, b.clone(), c.clone()],
        false,
    );
    assert_eq!(p.unchanged, 1);
    assert_eq!(p.movers.len(), 1);
    assert_eq!(p.movers[0].user_id, b.user_id);
    assert!(p.movers[0].job_change);
    assert_eq!(p.movers[0].changes[0].attribute, "department");
    assert_eq!(p.movers[0].changes[0].before.as_deref(), Some("Lab"));
    assert_eq!(p.movers[0].changes[0].after.as_deref(), Some("Radiology"));
    assert_eq!(p.leavers.len(), 1);
    assert_eq!(p.leavers[0].user_id, c.user_id);
    assert_eq!(p.leavers[0].cause, "status");
    // An already disabled leaver is unchanged; a disabled person back on the roster is a rehire.
    let mut gone = c.clone();
    gone.status = UserStatus::Disabled;
    let p = run("employee_id,status\nE3,terminated\n", std::slice::from_ref(&gone), false);
    assert_eq!((p.leavers.len(), p.unchanged), (0, 1));
    let p = run("employee_id,status\nE3,active\n", &[gone.clone()], false);
    assert_eq!(p.joiners[0].rehire_of, Some(gone.user_id));
}

#[test]
fn full_roster_missing_is_review_not_termination() {
    let ws = [worker("E1", "ann", "Lab"), worker("E2", "ben", "Lab")];
    let p = run("employee_id\nE1\n", &ws, true);
    assert!(p.leavers.is_empty());
    assert_eq!(p.review.len(), 1);
    assert_eq!(p.review[0].employee_id, "E2");
    // Not a full roster: nothing to review.
    assert!(run("employee_id\nE1\n", &ws, false).review.is_empty());
    // A row with an error still counts as present.
    assert!(run("employee_id,end_date\nE1,\nE2,nope\n", &ws, true).review.is_empty());
}

#[test]
fn contractors_need_sponsor_and_end_date() {
    let sponsor = worker("S1", "sam", "Lab");
    let p = run(
        "employee_id,username,employment_type,end_date,sponsor_employee_id\nC1,con,contractor,2027-01-01,\n",
        std::slice::from_ref(&sponsor),
        false,
    );
    assert!(p.errors[0].message.contains("sponsor"), "{:?}", p.errors);
    let p = run(
        "employee_id,username,employment_type,end_date,sponsor_employee_id\nC1,con,vendor,,S1\n",
        std::slice::from_ref(&sponsor),
        false,
    );
    assert!(p.errors[0].message.contains("end date"), "{:?}", p.errors);
    let p = run(
        "employee_id,username,employment_type,end_date,sponsor_employee_id\nC1,con,Contractor,2027-01-01,S1\n",
        std::slice::from_ref(&sponsor),
        false,
    );
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert_eq!(p.joiners[0].hr.sponsor_id, Some(sponsor.user_id));
    assert_eq!(p.joiners[0].hr.employment_type, Some(EmploymentType::Contractor));
    // An unknown sponsor is an error, not a guess.
    let p = run(
        "employee_id,username,employment_type,end_date,sponsor_employee_id\nC1,con,contractor,2027-01-01,S9\n",
        &[sponsor],
        false,
    );
    assert!(p.errors[0].message.contains("S9"));
}

#[test]
fn dates_take_effect_in_the_workers_time_zone() {
    let w = worker("E1", "ann", "Lab");
    // now = 2026-11-22 09:00 UTC = 03:00 in Chicago, 18:00 in Tokyo.
    // Last day 2026-11-21 in Chicago: access ended 2026-11-22 06:00 UTC → a leaver now.
    let p = run("employee_id,end_date,time_zone\nE1,2026-11-21,America/Chicago\n", std::slice::from_ref(&w), false);
    assert_eq!(p.leavers.len(), 1, "{p:#?}");
    assert_eq!(p.leavers[0].effective_at, Utc.with_ymd_and_hms(2026, 11, 22, 6, 0, 0).unwrap());
    // Last day 2026-11-22 in Chicago: ends 2026-11-23 06:00 UTC → scheduled (a mover with the date).
    let p = run("employee_id,end_date,time_zone\nE1,2026-11-22,America/Chicago\n", std::slice::from_ref(&w), false);
    assert!(p.leavers.is_empty());
    assert_eq!(p.movers[0].terminates_at, Some(Utc.with_ymd_and_hms(2026, 11, 23, 6, 0, 0).unwrap()));
    // Termination date today (first day without access) in Tokyo: 2026-11-22 00:00 JST is past.
    let p = run("employee_id,termination_date,time_zone\nE1,2026-11-22,Asia/Tokyo\n", std::slice::from_ref(&w), false);
    assert_eq!(p.leavers[0].cause, "termination_date");
    assert_eq!(p.leavers[0].effective_at, Utc.with_ymd_and_hms(2026, 11, 21, 15, 0, 0).unwrap());
    // A future termination date is stored as the day before (the last day).
    let p = run("employee_id,termination_date\nE1,2026-12-01\n", std::slice::from_ref(&w), false);
    assert_eq!(p.movers[0].hr.end_date, NaiveDate::from_ymd_opt(2026, 11, 30));
    // A DST gap at midnight (America/Santiago, 2026-09-06 00:00 does not exist): the first instant of the day.
    let hr = HrAttributes {
        end_date: NaiveDate::from_ymd_opt(2026, 9, 5),
        time_zone: Some("America/Santiago".into()),
        ..Default::default()
    };
    assert_eq!(hr.access_ends_at(), Some(Utc.with_ymd_and_hms(2026, 9, 6, 4, 0, 0).unwrap()));
}

#[test]
fn circuit_breaker() {
    let ws: Vec<Worker> = (0..100).map(|i| worker(&format!("E{i}"), &format!("u{i}"), "Lab")).collect();
    let mut csv = String::from("employee_id,status\n");
    for i in 0..10 {
        csv.push_str(&format!("E{i},terminated\n"));
    }
    let p = run(&csv, &ws, false);
    assert_eq!((p.breaker.terminations, p.breaker.workforce), (10, 100));
    assert!(!p.breaker.tripped, "10 % is allowed");
    csv.push_str("E10,terminated\n");
    assert!(run(&csv, &ws, false).breaker.tripped, "11 % is not");
    // Small directories: fewer than the minimum never trip.
    let few = &ws[..3];
    assert!(!run("employee_id,status\nE0,terminated\n", few, false).breaker.tripped);
}

#[test]
fn json_rosters() {
    let s = ImportSettings::default();
    let doc = br#"{"workers": [{"employee_id": 17, "username": "ann", "department": null}, {"employee_id": "E2", "username": ["x"]}, 3]}"#;
    let roster = parse(doc, Format::Json, &s).unwrap();
    let p = plan(&roster, &[], &s, false, now());
    assert_eq!(p.joiners.len(), 1);
    assert_eq!(p.joiners[0].employee_id, "17");
    assert_eq!(p.errors.len(), 2);
    assert_eq!(p.errors[0].row, 2);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// Arbitrary bytes never panic the parser or the plan, in either format.
    #[test]
    fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let s = ImportSettings::default();
        for f in [Format::Csv, Format::Json] {
            let mut input = b"employee_id,username,end_date,time_zone\n".to_vec();
            input.extend_from_slice(&bytes);
            if let Ok(r) = parse(&input, f, &s) {
                let _ = plan(&r, &[worker("E1", "ann", "Lab")], &s, true, now());
            }
            let _ = parse(&bytes, f, &s);
        }
    }
}
