//! The one grant path and the one step-up rule, over HTTP on both stores: every path that
//! creates or revokes a grant records one event shape; provenance cannot be asserted by a
//! client; reconciliation flags manual grants of sensitive roles; and every sensitive change
//! made from a session needs a fresh second factor (API tokens as before).

use super::*;
use reqwest::header::{COOKIE, SET_COOKIE};

const SESSION_COOKIE: &str = "__Host-wardkey_session";

/// Keys of every `grant.create` event, whatever produced it.
const CREATE_KEYS: [&str; 16] = [
    "admin_scopes",
    "approvers",
    "conditions",
    "expires_at",
    "justification",
    "origin",
    "privileged",
    "request",
    "requester",
    "resource",
    "review_item",
    "role",
    "role_name",
    "source",
    "starts_at",
    "subject",
];
/// Keys of every `grant.revoke` event, whatever produced it.
const REVOKE_KEYS: [&str; 12] = [
    "admin_scopes",
    "approvers",
    "origin",
    "privileged",
    "request",
    "requester",
    "resource",
    "review_item",
    "role",
    "role_name",
    "source",
    "subject",
];

fn keys(e: &Value) -> Vec<String> {
    let mut k: Vec<String> = e["details"].as_object().expect("details object").keys().cloned().collect();
    k.sort();
    k
}

/// A TOTP code computed independently (`totp-rs`) from the base32 secret the server showed.
fn totp(base32: &str, at: chrono::DateTime<chrono::Utc>) -> String {
    let bytes = data_encoding::BASE32_NOPAD.decode(base32.trim_end_matches('=').as_bytes()).expect("base32 secret");
    let t = totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_skew(0)
        .with_step_duration(30)
        .with_secret(bytes)
        .build()
        .expect("totp-rs accepts the secret");
    t.generate(at.timestamp() as u64).to_string()
}

fn cookie_of(r: &Resp) -> String {
    r.headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|s| s.strip_prefix(&format!("{SESSION_COOKIE}=")).and_then(|rest| rest.split(';').next()))
        .filter(|v| !v.is_empty())
        .expect("a session cookie")
        .to_owned()
}

/// A person signed in from their own session: the cookie and their TOTP secret. The session
/// proved its second factor just now (enrolment).
struct Person {
    uid: String,
    cookie: String,
    secret: String,
}

impl Harness {
    fn at(&self) -> chrono::DateTime<chrono::Utc> {
        wardkey_domain::Clock::now(self.clock.as_deref().expect("an authn harness"))
    }

    async fn as_person(&self, p: &Person, method: Method, path: &str, body: Option<Value>) -> Resp {
        let mut req =
            self.http.request(method, self.url(path)).header(COOKIE, format!("{SESSION_COOKIE}={}", p.cookie));
        if let Some(b) = body {
            req = req.json(&b);
        }
        Resp::read(req.send().await.expect("request sent")).await
    }

    /// An administrator who works from a session (a role conferring the `admin` scope).
    async fn session_admin(&self, username: &str) -> Person {
        let uid = self.person(username).await;
        let role = self
            .post(
                "/api/v1/roles",
                json!({ "name": format!("{username}-admin"), "session_policy": { "scopes": ["admin"] } }),
            )
            .await;
        assert_eq!(role.status, StatusCode::CREATED, "{}", role.text);
        let g = self
            .post(
                "/api/v1/grants",
                json!({ "subject": { "type": "user", "id": uid }, "role_id": id(&role.body), "justification": "runs Wardkey" }),
            )
            .await;
        assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
        let (cookie, secret, _) = self.enrolled(username).await;
        Person { uid, cookie, secret }
    }

    /// Proves the second factor again in `p`'s session (the cookie rotates).
    async fn step_up(&self, p: &mut Person) {
        self.advance(30);
        let up = self
            .as_person(p, Method::POST, "/api/v1/auth/totp", Some(json!({ "code": totp(&p.secret, self.at()) })))
            .await;
        assert_eq!(up.status, StatusCode::OK, "{}", up.text);
        p.cookie = cookie_of(&up);
    }

    /// Lets the step-up window (5 minutes by default) pass.
    fn go_stale(&self) {
        self.advance(6 * 60);
    }

    async fn role_with(&self, body: Value) -> Value {
        let r = self.post("/api/v1/roles", body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body
    }

    async fn grant_to(&self, subject: Value, role: &Value) -> Value {
        let g = self
            .post("/api/v1/grants", json!({ "subject": subject, "role_id": id(role), "justification": "test access" }))
            .await;
        assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
        g.body
    }
}

fn user(uid: &str) -> Value {
    json!({ "type": "user", "id": uid })
}

/// Admin API, birthright (template), break-glass, admin revoke, birthright revoke (a mover)
/// and a leaver's termination: one shape for `grant.create`, one for `grant.revoke`.
async fn one_event_shape_from_every_path(h: &Harness) {
    h.post("/api/v1/resource-types", json!({ "name": "record", "actions": ["read"], "phi": true })).await;
    let perms = json!([{ "resource_type": "record", "actions": ["read"] }]);
    let reader = h.role_with(json!({ "name": "reader", "permissions": perms })).await;
    let cardio = h.role_with(json!({ "name": "cardio", "permissions": perms })).await;
    let er = h.role_with(json!({ "name": "er", "break_glass": true, "permissions": perms })).await;
    let t = h
        .post(
            "/api/v1/role-templates",
            json!({ "name": "cardiology", "rule": { "all": [{ "attribute": "department", "op": "in", "values": ["Cardiology"] }] }, "role_ids": [id(&cardio)] }),
        )
        .await;
    assert_eq!(t.status, StatusCode::CREATED, "{}", t.text);

    // Birthright: an active person in Cardiology.
    let u = h.post("/api/v1/users", json!({ "username": "c.nurse", "hr": { "department": "Cardiology" } })).await;
    assert_eq!(u.status, StatusCode::CREATED, "{}", u.text);
    let nurse = id(&u.body);
    let v =
        h.post(&format!("/api/v1/users/{nurse}/verify-identity"), json!({ "version": 1, "method": "in_person" })).await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.text);
    let a = h.post(&format!("/api/v1/users/{nurse}/status"), json!({ "version": 2, "status": "active" })).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    // Admin API.
    let manual = h.grant_to(user(&nurse), &reader).await;
    // Break-glass from a person's own (fresh) session.
    let dr = h.person("dr.er").await;
    let (cookie, _, _) = h.enrolled("dr.er").await;
    let p = Person { uid: dr.clone(), cookie, secret: String::new() };
    let bg = h
        .as_person(
            &p,
            Method::POST,
            "/api/v1/break-glass",
            Some(json!({ "role_id": id(&er), "justification": "patient coding in bay 4, attending unavailable" })),
        )
        .await;
    assert_eq!(bg.status, StatusCode::CREATED, "{}", bg.text);

    let created = h.events("action=grant.create&limit=500").await;
    let sources: Vec<&str> = created.iter().filter_map(|e| e["details"]["source"].as_str()).collect();
    for s in ["manual", "template", "break_glass"] {
        assert!(sources.contains(&s), "a {s} grant.create in {created:?}");
    }
    for e in &created {
        assert_eq!(keys(e), CREATE_KEYS, "{e}");
    }
    let by_target = |target: String| created.iter().find(|e| e["target"] == target.as_str()).cloned().unwrap();
    let m = by_target(format!("grant:{}", id(&manual)));
    assert_eq!(m["details"]["source"], "manual");
    assert_eq!(m["details"]["requester"], m["actor"]);
    assert_eq!(m["details"]["approvers"], json!([]));
    assert_eq!(m["details"]["justification"], "test access");
    assert_eq!(m["details"]["role_name"], "reader");
    let b = by_target(format!("grant:{}", id(&bg.body)));
    assert_eq!(b["details"]["requester"], format!("user:{dr}"));
    assert_eq!(b["reason"], "patient coding in bay 4, attending unavailable");

    // Revocations: by an administrator, by a move (the template no longer applies), by a leaver.
    let r = h.delete(&format!("/api/v1/grants/{}?version=1&reason=rotation%20ended", id(&manual))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let again = h.grant_to(user(&nurse), &reader).await;
    let cur = h.get(&format!("/api/v1/users/{nurse}")).await;
    let moved = h
        .patch(
            &format!("/api/v1/users/{nurse}"),
            json!({ "version": cur.body["version"], "hr": { "department": "Oncology" } }),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.text);
    let cur = h.get(&format!("/api/v1/users/{nurse}")).await;
    let off = h
        .post(&format!("/api/v1/users/{nurse}/status"), json!({ "version": cur.body["version"], "status": "disabled" }))
        .await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.text);

    let revoked = h.events("action=grant.revoke&limit=500").await;
    assert_eq!(revoked.len(), 3, "admin, mover, leaver: {revoked:?}");
    for e in &revoked {
        assert_eq!(keys(e), REVOKE_KEYS, "{e}");
        assert_eq!(e["details"]["subject"], format!("user:{nurse}"));
    }
    let reasons: Vec<&str> = revoked.iter().filter_map(|e| e["reason"].as_str()).collect();
    assert!(reasons.contains(&"rotation ended"), "{reasons:?}");
    assert!(reasons.contains(&"user disabled"), "{reasons:?}");
    let leaver = revoked.iter().find(|e| e["target"] == format!("grant:{}", id(&again))).unwrap();
    assert_eq!(leaver["details"]["source"], "manual");
    assert_eq!(leaver["details"]["role_name"], "reader");
    assert!(
        revoked
            .iter()
            .any(|e| e["details"]["source"] == "template" && e["details"]["role"] == format!("role:{}", id(&cardio)))
    );
}

/// A client cannot label a grant or name its requester or approver; a justification is
/// required. Each refusal names its field and writes nothing.
async fn asserted_provenance_refused(h: &Harness) {
    let role = h.create_role("viewer").await;
    let uid = id(&h.create_user("ivan").await);
    let approver = id(&h.create_user("judy").await);
    let base = json!({ "subject": user(&uid), "role_id": id(&role), "justification": "audit season" });
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let before = h.tree_size().await;
    let mut cases: Vec<(&str, Value)> = ["request", "template", "break_glass", "scim", "hr"]
        .into_iter()
        .map(|s| ("source", with("source", json!(s))))
        .collect();
    cases.push(("requester", with("requester", json!(format!("user:{approver}")))));
    cases.push(("approver", with("approver", json!(format!("user:{approver}")))));
    cases.push(("approver", with("approver", json!("somebody"))));
    cases.push(("justification", with("justification", json!("   "))));
    let mut none = base.clone();
    none.as_object_mut().unwrap().remove("justification");
    cases.push(("justification", none));
    for (field, body) in cases {
        let r = h.post("/api/v1/grants", body.clone()).await;
        let p = r.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
        assert_eq!(p["errors"][0]["field"], field, "{body}: {p}");
        assert!(p["errors"][0]["message"].as_str().is_some_and(|m| !m.is_empty()), "{p}");
    }
    assert_eq!(h.tree_size().await, before, "refused grants write nothing");
    let listed = h.get(&format!("/api/v1/grants?subject_type=user&subject_id={uid}")).await;
    assert_eq!(listed.body["items"], json!([]));

    // The one accepted shape: recorded as manual, requested by the caller, no approver.
    let g = h.post("/api/v1/grants", with("source", json!("manual"))).await;
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
    assert_eq!(g.body["source"], "manual");
    assert_eq!(g.body["approver"], Value::Null);
    assert_eq!(g.body["justification"], "audit season");
    let ev = h.events(&format!("action=grant.create&target=grant:{}", id(&g.body))).await;
    assert_eq!(g.body["requester"], ev[0]["actor"]);
    assert!(g.body["requester"].as_str().unwrap().starts_with("token:"), "{}", g.body);
}

/// Manual grants of privileged, admin-scoped or PHI roles — to people, groups or service
/// accounts — are flagged for review; a manual grant of an ordinary role is not.
async fn reconcile_flags_sensitive_manual_grants(h: &Harness) {
    h.post("/api/v1/resource-types", json!({ "name": "chart", "actions": ["read"], "phi": true })).await;
    h.post("/api/v1/resource-types", json!({ "name": "menu", "actions": ["read"], "phi": false })).await;
    let phi = h
        .role_with(
            json!({ "name": "chart-reader", "permissions": [{ "resource_type": "chart", "actions": ["read"] }] }),
        )
        .await;
    let privileged = h.role_with(json!({ "name": "dba", "privileged": true })).await;
    let admin = h.role_with(json!({ "name": "iam-admins", "session_policy": { "scopes": ["admin"] } })).await;
    let plain = h
        .role_with(json!({ "name": "menu-reader", "permissions": [{ "resource_type": "menu", "actions": ["read"] }] }))
        .await;
    let uid = id(&h.create_user("kim").await);
    let grp = h.post("/api/v1/groups", json!({ "name": "dbas" })).await;
    let gid = id(&grp.body);
    let mut flagged = Vec::new();
    for role in [&phi, &privileged, &admin] {
        flagged.push(id(&h.grant_to(user(&uid), role).await));
    }
    flagged.push(id(&h.grant_to(json!({ "type": "group", "id": gid }), &privileged).await));
    let ordinary = id(&h.grant_to(user(&uid), &plain).await);

    let r = h.get("/api/v1/reports/reconciliation?dormant_days=30").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let found: Vec<&Value> =
        r.body["findings"].as_array().unwrap().iter().filter(|f| f["kind"] == "unreviewed_sensitive_grant").collect();
    let grants: Vec<String> =
        found.iter().map(|f| f["details"]["grant"].as_str().unwrap().trim_start_matches("grant:").to_owned()).collect();
    for g in &flagged {
        assert!(grants.contains(g), "{g} flagged: {found:?}");
    }
    assert!(!grants.contains(&ordinary), "an ordinary role is not flagged");
    assert_eq!(found.len(), flagged.len());
    assert_eq!(r.body["counts"]["unreviewed_sensitive_grant"], flagged.len());
    let group = found.iter().find(|f| f["subject"] == format!("group:{gid}")).expect("the group's grant");
    assert_eq!(group["name"], "dbas");
    let phi_f = found.iter().find(|f| f["details"]["grant"] == format!("grant:{}", flagged[0])).unwrap();
    assert_eq!(phi_f["details"]["phi"], true);
    assert!(phi_f["reason"].as_str().unwrap().contains("PHI"), "{phi_f}");
}

/// Granting a privileged or admin-scoped role: a stale session is refused (nothing written),
/// a fresh one allowed; an API token as before.
async fn step_up_grant(h: &Harness) {
    let mut admin = h.session_admin("it.one").await;
    let privileged = h.role_with(json!({ "name": "dba", "privileged": true })).await;
    let scoped = h.role_with(json!({ "name": "auditors", "session_policy": { "scopes": ["audit:read"] } })).await;
    let plain = h.create_role("plain").await;
    let target = id(&h.create_user("new.hire").await);
    let body = |r: &Value| json!({ "subject": user(&target), "role_id": id(r), "justification": "new hire" });
    h.go_stale();
    for role in [&privileged, &scoped] {
        let before = h.tree_size().await;
        h.as_person(&admin, Method::POST, "/api/v1/grants", Some(body(role)))
            .await
            .problem(StatusCode::FORBIDDEN, "step-up-required");
        assert_eq!(h.tree_size().await, before, "nothing written");
    }
    let ok = h.as_person(&admin, Method::POST, "/api/v1/grants", Some(body(&plain))).await;
    assert_eq!(ok.status, StatusCode::CREATED, "an ordinary role needs no step-up: {}", ok.text);
    h.step_up(&mut admin).await;
    for role in [&privileged, &scoped] {
        let g = h.as_person(&admin, Method::POST, "/api/v1/grants", Some(body(role))).await;
        assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
        assert_eq!(g.body["requester"], format!("user:{}", admin.uid));
    }
    let other = id(&h.create_user("token.hire").await);
    let t = h
        .post(
            "/api/v1/grants",
            json!({ "subject": user(&other), "role_id": id(&privileged), "justification": "x-fer" }),
        )
        .await;
    assert_eq!(t.status, StatusCode::CREATED, "an API token needs no step-up: {}", t.text);
}

/// Editing a role people hold so that it becomes privileged or admin-scoped.
async fn step_up_role_edit(h: &Harness) {
    let mut admin = h.session_admin("it.two").await;
    let held = h.create_role("ward-clerk").await;
    let unheld = h.create_role("unused").await;
    let holder = id(&h.create_user("clerk").await);
    h.grant_to(user(&holder), &held).await;
    h.go_stale();
    let patch = |r: &Value, b: Value| {
        let mut b = b;
        b["version"] = r["version"].clone();
        b
    };
    for change in [json!({ "privileged": true }), json!({ "session_policy": { "scopes": ["admin"] } })] {
        let before = h.tree_size().await;
        h.as_person(&admin, Method::PATCH, &format!("/api/v1/roles/{}", id(&held)), Some(patch(&held, change)))
            .await
            .problem(StatusCode::FORBIDDEN, "step-up-required");
        assert_eq!(h.tree_size().await, before, "nothing written");
    }
    assert_eq!(h.get(&format!("/api/v1/roles/{}", id(&held))).await.body["privileged"], false);
    // Nobody holds it: not a sensitive change to anyone yet. A description edit is never one.
    let u = h
        .as_person(
            &admin,
            Method::PATCH,
            &format!("/api/v1/roles/{}", id(&unheld)),
            Some(patch(&unheld, json!({ "privileged": true }))),
        )
        .await;
    assert_eq!(u.status, StatusCode::OK, "{}", u.text);
    let d = h
        .as_person(
            &admin,
            Method::PATCH,
            &format!("/api/v1/roles/{}", id(&held)),
            Some(patch(&held, json!({ "description": "front desk" }))),
        )
        .await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.text);
    let held = d.body;
    h.step_up(&mut admin).await;
    let ok = h
        .as_person(
            &admin,
            Method::PATCH,
            &format!("/api/v1/roles/{}", id(&held)),
            Some(patch(&held, json!({ "privileged": true }))),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.body["privileged"], true);
    let t = h
        .patch(
            &format!("/api/v1/roles/{}", id(&held)),
            patch(&ok.body, json!({ "session_policy": { "scopes": ["admin"] } })),
        )
        .await;
    assert_eq!(t.status, StatusCode::OK, "an API token needs no step-up: {}", t.text);
}

/// Adding someone to a group that holds a privileged or admin-scoped role.
async fn step_up_group_member(h: &Harness) {
    let mut admin = h.session_admin("it.three").await;
    let privileged = h.role_with(json!({ "name": "dba", "privileged": true })).await;
    let sensitive = id(&h.post("/api/v1/groups", json!({ "name": "dbas" })).await.body);
    let ordinary = id(&h.post("/api/v1/groups", json!({ "name": "readers" })).await.body);
    h.grant_to(json!({ "type": "group", "id": sensitive }), &privileged).await;
    let a = id(&h.create_user("m.one").await);
    let b = id(&h.create_user("m.two").await);
    h.go_stale();
    let before = h.tree_size().await;
    h.as_person(&admin, Method::POST, &format!("/api/v1/groups/{sensitive}/members"), Some(user(&a)))
        .await
        .problem(StatusCode::FORBIDDEN, "step-up-required");
    assert_eq!(h.tree_size().await, before, "nothing written");
    let m = h.as_person(&admin, Method::POST, &format!("/api/v1/groups/{ordinary}/members"), Some(user(&a))).await;
    assert!(m.status.is_success(), "an ordinary group needs no step-up: {}", m.text);
    h.step_up(&mut admin).await;
    let m = h.as_person(&admin, Method::POST, &format!("/api/v1/groups/{sensitive}/members"), Some(user(&a))).await;
    assert!(m.status.is_success(), "{}", m.text);
    let t = h.post(&format!("/api/v1/groups/{sensitive}/members"), user(&b)).await;
    assert!(t.status.is_success(), "an API token needs no step-up: {}", t.text);
    let members = h.get(&format!("/api/v1/groups/{sensitive}/members")).await;
    assert_eq!(members.body.as_array().or(members.body["items"].as_array()).map(Vec::len), Some(2), "{}", members.text);
}

/// Break-glass from a stale session is refused; after a step-up it is allowed.
async fn step_up_break_glass(h: &Harness) {
    h.post("/api/v1/resource-types", json!({ "name": "record", "actions": ["read"], "phi": true })).await;
    let er = h
        .role_with(json!({ "name": "er", "break_glass": true, "permissions": [{ "resource_type": "record", "actions": ["read"] }] }))
        .await;
    let uid = h.person("dr.who").await;
    let (cookie, secret, _) = h.enrolled("dr.who").await;
    let mut p = Person { uid, cookie, secret };
    let body = json!({ "role_id": id(&er), "justification": "patient coding in bay 4, attending unavailable" });
    h.go_stale();
    let before = h.tree_size().await;
    h.as_person(&p, Method::POST, "/api/v1/break-glass", Some(body.clone()))
        .await
        .problem(StatusCode::FORBIDDEN, "step-up-required");
    assert_eq!(h.tree_size().await, before, "nothing written");
    h.step_up(&mut p).await;
    let g = h.as_person(&p, Method::POST, "/api/v1/break-glass", Some(body)).await;
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
    assert_eq!(g.body["subject"]["id"], p.uid);
}

/// An admin-scoped API token created from a session; other scopes and token callers as before.
async fn step_up_admin_token(h: &Harness) {
    let mut admin = h.session_admin("it.four").await;
    h.go_stale();
    let before = h.tree_size().await;
    h.as_person(
        &admin,
        Method::POST,
        "/api/v1/tokens",
        Some(json!({ "name": "ci", "scopes": ["admin"], "owner": { "type": "user", "id": admin.uid } })),
    )
    .await
    .problem(StatusCode::FORBIDDEN, "step-up-required");
    assert_eq!(h.tree_size().await, before, "nothing written");
    let pdp = h
        .as_person(
            &admin,
            Method::POST,
            "/api/v1/tokens",
            Some(json!({ "name": "pep", "scopes": ["pdp"], "owner": { "type": "user", "id": admin.uid } })),
        )
        .await;
    assert_eq!(pdp.status, StatusCode::CREATED, "a pdp token needs no step-up: {}", pdp.text);
    h.step_up(&mut admin).await;
    let ok = h
        .as_person(
            &admin,
            Method::POST,
            "/api/v1/tokens",
            Some(json!({ "name": "ci", "scopes": ["admin"], "owner": { "type": "user", "id": admin.uid } })),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
    let t = h
        .post(
            "/api/v1/tokens",
            json!({ "name": "ci2", "scopes": ["admin"], "owner": { "type": "user", "id": admin.uid } }),
        )
        .await;
    assert_eq!(t.status, StatusCode::CREATED, "an API token needs no step-up: {}", t.text);
}

authn_on_both_stores!(
    one_event_shape_from_every_path,
    asserted_provenance_refused,
    reconcile_flags_sensitive_manual_grants,
    step_up_grant,
    step_up_role_edit,
    step_up_group_member,
    step_up_break_glass,
    step_up_admin_token,
);
