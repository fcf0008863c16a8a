//! HR provisioning over HTTP on both stores, with a manual clock: roster plans and applies,
//! joiner → verification → birthright roles, movers (template roles follow, request grants
//! stay flagged), leavers (everything revoked before the response), the circuit breaker,
//! full-roster review items, contractors' sponsors and end dates (the end-date job), bad
//! input, and every kind of reconciliation finding.

use super::*;

impl Harness {
    async fn roster(&self, query: &str, content_type: &str, body: impl Into<Vec<u8>>) -> Resp {
        let url = self.url(&format!("/api/v1/hr/imports{query}"));
        let req = self.http.post(url).bearer_auth(&self.admin).header("content-type", content_type).body(body.into());
        Resp::read(req.send().await.expect("sent")).await
    }

    async fn csv(&self, query: &str, body: &str) -> Resp {
        self.roster(query, "text/csv", body.as_bytes().to_vec()).await
    }

    async fn user_by_name(&self, username: &str) -> Value {
        let r = self.get(&format!("/api/v1/users?username_prefix={username}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body["items"].as_array().unwrap().iter().find(|u| u["username"] == username).cloned().unwrap_or(Value::Null)
    }

    /// Live grants of a user: (role id, source).
    async fn live_grants(&self, uid: &str) -> Vec<(String, String)> {
        let r = self.get(&format!("/api/v1/grants?subject_type=user&subject_id={uid}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let mut v: Vec<(String, String)> = r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| (g["role_id"].as_str().unwrap().to_owned(), g["source"].as_str().unwrap().to_owned()))
            .collect();
        v.sort();
        v
    }

    async fn activate(&self, uid: &str) {
        let u = self.get(&format!("/api/v1/users/{uid}")).await;
        let v = u.body["version"].as_i64().unwrap();
        let r = self
            .post(
                &format!("/api/v1/users/{uid}/verify-identity"),
                json!({ "version": v, "method": "in_person_government_id" }),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let r =
            self.post(&format!("/api/v1/users/{uid}/status"), json!({ "version": v + 1, "status": "active" })).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }

    async fn template(&self, name: &str, attribute: &str, value: &str, role: &str) {
        let r = self
            .post(
                "/api/v1/role-templates",
                json!({ "name": name, "rule": { "all": [{ "attribute": attribute, "op": "in", "values": [value] }] }, "role_ids": [role] }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }

    async fn report(&self, days: u32) -> Vec<Value> {
        let r = self.get(&format!("/api/v1/reports/reconciliation?dormant_days={days}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body["findings"].as_array().unwrap().clone()
    }
}

fn has(findings: &[Value], kind: &str, name: &str) -> bool {
    findings
        .iter()
        .any(|f| f["kind"] == kind && f["name"] == name && f["reason"].is_string() && f["suggested_action"].is_string())
}

async fn hr_joiner_mover_leaver(h: &Harness) {
    let cardio = id(&h.create_role("cardiology-records").await);
    let onc = id(&h.create_role("oncology-records").await);
    let nurse = id(&h.create_role("nursing").await);
    let extra = id(&h.create_role("research-export").await);
    h.template("cardiology", "department", "Cardiology", &cardio).await;
    h.template("oncology", "department", "Oncology", &onc).await;
    h.template("nurses", "job_code", "RN", &nurse).await;

    let file = "employee_id,username,display_name,department,job_code,title\n\
                E1,alice,Alice A,Cardiology,RN,Nurse\n\
                E2,bob,Bob B,Oncology,RN,Nurse\n";
    // Plan only: nothing written.
    let p = h.csv("", file).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    assert_eq!(p.body["plan"]["joiners"].as_array().unwrap().len(), 2, "{}", p.text);
    assert!(p.body.get("applied").is_none());
    assert!(h.user_by_name("alice").await.is_null(), "a plan writes nothing");

    // Apply: joiners are pending, without access until verified.
    let a = h.csv("?apply=true", file).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["applied"]["joiners_created"], 2, "{}", a.text);
    let import_id = a.body["applied"]["import_id"].as_str().unwrap().to_owned();
    let sha = a.body["plan"]["sha256"].as_str().unwrap().to_owned();
    let alice = h.user_by_name("alice").await;
    let uid = id(&alice);
    assert_eq!(alice["status"], "pending_verification");
    assert_eq!(alice["hr"]["employee_id"], "E1");
    assert!(h.live_grants(&uid).await.is_empty());
    let created = h.events(&format!("target=user:{uid}&action=user.create")).await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["request_ref"], format!("hr_import:{import_id}#row=2"), "{}", created[0]);
    assert_eq!(created[0]["details"]["import"]["sha256"], sha);

    // Verified and activated: birthright roles from the templates.
    h.activate(&uid).await;
    let mut want = vec![(cardio.clone(), "template".to_owned()), (nurse.clone(), "template".to_owned())];
    want.sort();
    assert_eq!(h.live_grants(&uid).await, want);
    // A grant from elsewhere (an administrator's).
    let g = h
        .post(
            "/api/v1/grants",
            json!({ "justification": "test access", "subject": { "type": "user", "id": uid }, "role_id": extra }),
        )
        .await;
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);

    // Mover: the plan names the attribute; applying swaps the template roles, keeps the
    // other grant and flags it for review.
    let moved = "employee_id,department\nE1,Oncology\n";
    let p = h.csv("", moved).await;
    let movers = p.body["plan"]["movers"].as_array().unwrap().clone();
    assert_eq!(movers.len(), 1, "{}", p.text);
    assert_eq!(
        movers[0]["changes"],
        json!([{ "attribute": "department", "before": "Cardiology", "after": "Oncology" }])
    );
    assert_eq!(p.body["plan"]["unchanged"], 0);
    let a = h.csv("?apply=true", moved).await;
    assert_eq!(a.body["applied"]["movers_updated"], 1, "{}", a.text);
    let mut want = vec![
        (onc.clone(), "template".to_owned()),
        (nurse.clone(), "template".to_owned()),
        (extra.clone(), "manual".to_owned()),
    ];
    want.sort();
    assert_eq!(h.live_grants(&uid).await, want);
    let flagged = h.events(&format!("target=grant:{}&action=grant.review_flagged", id(&g.body))).await;
    assert_eq!(flagged.len(), 1, "the kept grant is flagged");
    let findings = h.report(90).await;
    assert!(
        findings.iter().any(|f| f["kind"] == "review_item"
            && f["name"] == "alice"
            && f["details"]["review_kind"] == "grant_after_move"),
        "{findings:?}"
    );

    // Leaver: disabled, every grant gone before the response.
    let a = h.csv("?apply=true", "employee_id,status\nE1,Terminated\n").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["plan"]["leavers"][0]["cause"], "status", "{}", a.text);
    assert_eq!(a.body["applied"]["leavers_terminated"], 1, "{}", a.text);
    assert_eq!(h.get(&format!("/api/v1/users/{uid}")).await.body["status"], "disabled");
    assert!(h.live_grants(&uid).await.is_empty());
    let term = h.events(&format!("target=user:{uid}&action=hr.termination")).await;
    assert_eq!(term.len(), 1);
    assert!(term[0]["request_ref"].as_str().unwrap().starts_with("hr_import:"), "{}", term[0]);
    // Unchanged the second time.
    let again = h.csv("", "employee_id,status\nE1,Terminated\n").await;
    assert_eq!(again.body["plan"]["unchanged"], 1, "{}", again.text);
    // JSON rosters too.
    let j = h
        .roster(
            "?apply=true",
            "application/json",
            serde_json::to_vec(&json!([{ "employee_id": "E3", "username": "carol", "department": "Oncology" }]))
                .unwrap(),
        )
        .await;
    assert_eq!(j.status, StatusCode::OK, "{}", j.text);
    assert_eq!(j.body["applied"]["joiners_created"], 1, "{}", j.text);
}

async fn hr_bad_input(h: &Harness) {
    let before = h.tree_size().await;
    // Missing employee id column: the whole file.
    h.csv("?apply=true", "username,department\nx,y\n").await.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    // Wrong media type.
    h.roster("", "application/xml", b"<x/>".to_vec())
        .await
        .problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type");
    // Empty body.
    h.csv("", "").await.problem(StatusCode::BAD_REQUEST, "malformed-request");
    // Not JSON.
    h.roster("", "application/json", b"{\"workers\": [".to_vec())
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    assert!(h.tree_size().await <= before + 1);

    // Row errors: bad UTF-8, duplicates, over-long, bad date, bad zone, contractor without sponsor.
    let mut file = b"employee_id,username,department,employment_type,end_date,time_zone,sponsor_employee_id\n".to_vec();
    file.extend_from_slice(b"E10,ok.one,Cardiology,employee,,,\n");
    file.extend_from_slice(b"E11,bad.bytes,Cardio\xff\xfe,employee,,,\n");
    file.extend_from_slice(b"E12,dup.a,Cardiology,employee,,,\n");
    file.extend_from_slice(b"E12,dup.b,Cardiology,employee,,,\n");
    file.extend_from_slice(format!("E13,long,{},employee,,,\n", "x".repeat(300)).as_bytes());
    file.extend_from_slice(b"E14,baddate,Cardiology,employee,31/31/2026,,\n");
    file.extend_from_slice(b"E15,badzone,Cardiology,employee,,Mars/Olympus,\n");
    file.extend_from_slice(b"E16,contractor.nosponsor,Cardiology,contractor,2027-01-31,,\n");
    file.extend_from_slice(b"E17,contractor.ok,Cardiology,contractor,2027-01-31,America/Chicago,E10\n");
    let r = h.roster("?apply=true", "text/csv", file).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let errors = r.body["plan"]["errors"].as_array().unwrap().clone();
    let rows: Vec<u64> = errors.iter().map(|e| e["row"].as_u64().unwrap()).collect();
    assert_eq!(rows, vec![3, 4, 5, 6, 7, 8, 9, 10], "{errors:#?}");
    assert!(errors[0]["message"].as_str().unwrap().contains("UTF-8"), "{errors:#?}");
    assert!(errors[1]["message"].as_str().unwrap().contains("duplicate"));
    assert!(errors[6]["message"].as_str().unwrap().contains("sponsor"), "{errors:#?}");
    assert!(errors[7]["message"].as_str().unwrap().contains("E10"), "{errors:#?}");
    // E10 is created; E17's sponsor E10 did not exist when the plan was made, so it waits.
    assert_eq!(r.body["applied"]["joiners_created"], 1, "{}", r.text);
    for name in ["bad.bytes", "dup.a", "dup.b", "long", "baddate", "badzone", "contractor.nosponsor"] {
        assert!(h.user_by_name(name).await.is_null(), "{name} was not written");
    }
    // Now the sponsor exists: the contractor row is accepted.
    let r = h.csv("?apply=true", "employee_id,username,employment_type,end_date,time_zone,sponsor_employee_id\nE17,contractor.ok,contractor,2027-01-31,America/Chicago,E10\n").await;
    assert_eq!(r.body["applied"]["joiners_created"], 1, "{}", r.text);
    let c = h.user_by_name("contractor.ok").await;
    assert_eq!(c["hr"]["time_zone"], "America/Chicago");
    assert_eq!(c["hr"]["sponsor_id"], id(&h.user_by_name("ok.one").await));
    // The admin API refuses a contractor without a sponsor too.
    let r = h.post("/api/v1/users", json!({ "username": "c2", "hr": { "employment_type": "contractor" } })).await;
    r.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
}

async fn hr_breaker_and_full_roster(h: &Harness) {
    let mut file = String::from("employee_id,username,department\n");
    for i in 0..10 {
        file.push_str(&format!("W{i},worker{i},Lab\n"));
    }
    let r = h.csv("?apply=true", &file).await;
    assert_eq!(r.body["applied"]["joiners_created"], 10, "{}", r.text);
    for i in 0..10 {
        let u = h.user_by_name(&format!("worker{i}")).await;
        h.activate(&id(&u)).await;
    }
    // Six of ten terminated at once: refused, nothing changes.
    let mut term = String::from("employee_id,status\n");
    for i in 0..6 {
        term.push_str(&format!("W{i},terminated\n"));
    }
    let r = h.csv("?apply=true", &term).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert!(r.body["refused"].as_str().unwrap().contains("circuit breaker"));
    assert_eq!(r.body["plan"]["breaker"]["tripped"], true);
    assert_eq!(h.user_by_name("worker0").await["status"], "active");
    assert_eq!(h.events("action=hr.import_refused").await.len(), 1);
    // With the override: applied, and the override is on record.
    let r = h.csv("?apply=true&override_breaker=true", &term).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["applied"]["leavers_terminated"], 6, "{}", r.text);
    assert_eq!(h.user_by_name("worker0").await["status"], "disabled");
    let imports = h.events("action=hr.import").await;
    assert_eq!(imports.last().unwrap()["details"]["override_breaker"], true);

    // A full roster without W9: a review item, not a termination.
    let mut full = String::from("employee_id,department\n");
    for i in 6..9 {
        full.push_str(&format!("W{i},Lab\n"));
    }
    let r = h.csv("?apply=true&full=true", &full).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let review = r.body["plan"]["review"].as_array().unwrap().clone();
    assert_eq!(review.len(), 1, "{}", r.text);
    assert_eq!(review[0]["employee_id"], "W9");
    assert_eq!(r.body["applied"]["review_items"], 1);
    assert_eq!(h.user_by_name("worker9").await["status"], "active", "missing is not terminated");
    let findings = h.report(90).await;
    assert!(
        findings.iter().any(|f| f["kind"] == "review_item"
            && f["name"] == "worker9"
            && f["details"]["review_kind"] == "missing_from_roster"),
        "{findings:?}"
    );
}

async fn hr_end_dates(h: &Harness) {
    let clock = h.clock.clone().expect("manual clock");
    // 09:00 UTC on 2026-11-22 is 03:00 in Chicago. A sponsor, then a contractor whose last day is today.
    let r = h.csv("?apply=true", "employee_id,username\nS1,sponsor\n").await;
    assert_eq!(r.body["applied"]["joiners_created"], 1, "{}", r.text);
    let sponsor = h.user_by_name("sponsor").await;
    h.activate(&id(&sponsor)).await;
    let r = h
        .csv("?apply=true", "employee_id,username,employment_type,end_date,time_zone,sponsor_employee_id\nC1,contractor,contractor,2026-11-22,America/Chicago,S1\n")
        .await;
    assert_eq!(r.body["applied"]["joiners_created"], 1, "{}", r.text);
    let c = h.user_by_name("contractor").await;
    h.activate(&id(&c)).await;
    // An employee with a future termination date: scheduled, not a leaver yet.
    let r = h.csv("?apply=true", "employee_id,username\nE9,leaving\n").await;
    assert_eq!(r.body["applied"]["joiners_created"], 1);
    let e = h.user_by_name("leaving").await;
    h.activate(&id(&e)).await;
    let r = h.csv("?apply=true", "employee_id,termination_date\nE9,2026-11-24\n").await;
    assert_eq!(r.body["plan"]["leavers"].as_array().unwrap().len(), 0, "{}", r.text);
    assert!(r.body["plan"]["movers"][0]["terminates_at"].is_string(), "{}", r.text);

    // Access ends at 00:00 on 2026-11-23 in Chicago = 06:00 UTC.
    clock.set(Utc.with_ymd_and_hms(2026, 11, 23, 5, 59, 0).unwrap());
    assert_eq!(h.services.run_end_dates().await.unwrap(), 0);
    assert_eq!(h.get(&format!("/api/v1/users/{}", id(&c))).await.body["status"], "active");
    clock.set(Utc.with_ymd_and_hms(2026, 11, 23, 6, 0, 0).unwrap());
    assert_eq!(h.services.run_end_dates().await.unwrap(), 1);
    assert_eq!(h.get(&format!("/api/v1/users/{}", id(&c))).await.body["status"], "disabled");
    let ev = h.events(&format!("target=user:{}&action=user.status", id(&c))).await;
    assert_eq!(ev.last().unwrap()["actor"], "system:hr_end_date", "{ev:?}");
    // The termination date (UTC zone): 00:00 UTC on 2026-11-24.
    clock.set(Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 1).unwrap());
    assert_eq!(h.services.run_end_dates().await.unwrap(), 1);
    assert_eq!(h.get(&format!("/api/v1/users/{}", id(&e))).await.body["status"], "disabled");
    assert!(h.live_grants(&id(&e)).await.is_empty());
}

async fn hr_reconciliation(h: &Harness) {
    let clock = h.clock.clone().expect("manual clock");
    let lab = id(&h.create_role("lab-results").await);
    let pay_req = id(&h.create_role("pay-request").await);
    let pay_ok = id(&h.create_role("pay-approve").await);
    h.template("lab", "department", "Lab", &lab).await;
    // orphan: no employee id, no sponsor.
    let orphan = h.create_user("orphan").await;
    // creep + sod: an HR person with manual grants that a later rule forbids together.
    let r = h.csv("?apply=true", "employee_id,username,department\nR1,creepy,Lab\nR2,owner,Lab\n").await;
    assert_eq!(r.body["applied"]["joiners_created"], 2, "{}", r.text);
    let creepy = id(&h.user_by_name("creepy").await);
    h.activate(&creepy).await;
    for role in [&pay_req, &pay_ok] {
        let g = h
            .post(
                "/api/v1/grants",
                json!({ "justification": "test access", "subject": { "type": "user", "id": creepy }, "role_id": role }),
            )
            .await;
        assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
    }
    let rule = h.post("/api/v1/sod-rules", json!({ "name": "pay", "left": { "kind": "role", "role_id": pay_req }, "right": { "kind": "role", "role_id": pay_ok } })).await;
    assert_eq!(rule.status, StatusCode::CREATED, "{}", rule.text);
    // template mismatch: a template created after activation.
    let extra = id(&h.create_role("lab-extra").await);
    h.template("lab-extra", "department", "Lab", &extra).await;
    // ownerless service account: its owner leaves.
    let owner = id(&h.user_by_name("owner").await);
    h.activate(&owner).await;
    let sa = h.post("/api/v1/service-accounts", json!({ "name": "lab-feed", "owner_id": owner })).await;
    assert_eq!(sa.status, StatusCode::CREATED, "{}", sa.text);
    let r = h.csv("?apply=true", "employee_id,status\nR2,terminated\n").await;
    assert_eq!(r.body["applied"]["leavers_terminated"], 1, "{}", r.text);
    // dormant: 100 days without a sign-in.
    clock.advance(chrono::Duration::days(100));

    let f = h.report(90).await;
    assert!(has(&f, "orphaned_account", "orphan"), "{f:#?}");
    assert!(!has(&f, "orphaned_account", "creepy"));
    assert!(has(&f, "dormant_account", "creepy"), "{f:#?}");
    assert!(has(&f, "permission_creep", "creepy"), "{f:#?}");
    assert_eq!(f.iter().filter(|x| x["kind"] == "permission_creep" && x["name"] == "creepy").count(), 2);
    assert!(has(&f, "template_mismatch", "creepy"), "{f:#?}");
    assert!(has(&f, "sod_conflict", "creepy"), "{f:#?}");
    assert!(has(&f, "ownerless_service_account", "lab-feed"), "{f:#?}");
    let _ = orphan;
    // Each finding names the subject.
    assert!(f.iter().all(|x| x["subject"].as_str().unwrap().contains(':')));
    // Admin scope only.
    let t = h.operator_token(json!({ "name": "reader", "scopes": ["audit:read"] })).await;
    let secret = t.body["secret"].as_str().unwrap().to_owned();
    let r = h.call(Method::GET, "/api/v1/reports/reconciliation", Some(&secret), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
}

use chrono::TimeZone;
use chrono::Utc;

authn_on_both_stores!(
    hr_joiner_mover_leaver,
    hr_bad_input,
    hr_breaker_and_full_roster,
    hr_end_dates,
    hr_reconciliation
);
