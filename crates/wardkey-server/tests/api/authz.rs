//! The decision point over HTTP (OpenID AuthZEN 1.0) on both stores: decisions and reasons,
//! batches and their semantics, searches, revocation before the call returns, minimum
//! revisions, decision audit, conditions with step-up hints, break-glass obligations, and a
//! second node on the same PostgreSQL database.

use super::*;

struct Model {
    pdp: String,
    uid: String,
    grant: String,
    ward: String,
    bed: String,
    other_ward: String,
}

impl Harness {
    async fn pdp_token(&self) -> String {
        let t = self.operator_token(json!({ "name": "ehr-pep", "scopes": ["pdp"] })).await;
        assert_eq!(t.status, StatusCode::CREATED, "{}", t.text);
        t.body["secret"].as_str().unwrap().to_owned()
    }

    /// A ward with a bed, another ward, a nurse role, and a grant of it on the first ward.
    async fn model(&self) -> Model {
        let rt = self
            .post(
                "/api/v1/resource-types",
                json!({ "name": "record", "actions": ["read", "write"], "phi": true, "decision_audit": "sync" }),
            )
            .await;
        assert_eq!(rt.status, StatusCode::CREATED, "{}", rt.text);
        let ward = self.post("/api/v1/resources", json!({ "type_id": id(&rt.body), "name": "ward-7" })).await;
        let bed = self
            .post("/api/v1/resources", json!({ "type_id": id(&rt.body), "name": "bed-3", "parent_id": id(&ward.body) }))
            .await;
        assert_eq!(bed.status, StatusCode::CREATED, "{}", bed.text);
        let other = self.post("/api/v1/resources", json!({ "type_id": id(&rt.body), "name": "ward-9" })).await;
        let role = self
            .post(
                "/api/v1/roles",
                json!({ "name": "ward-nurse", "permissions": [{ "resource_type": "record", "actions": ["read"] }] }),
            )
            .await;
        let u = self.create_user("n.ward").await;
        let uid = id(&u);
        self.post(&format!("/api/v1/users/{uid}/verify-identity"), json!({ "version": 1, "method": "in_person" }))
            .await;
        let a = self.post(&format!("/api/v1/users/{uid}/status"), json!({ "version": 2, "status": "active" })).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        let g = self.post("/api/v1/grants", json!({ "justification": "test access", "subject": { "type": "user", "id": uid }, "role_id": id(&role.body), "resource_id": id(&ward.body) })).await;
        assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
        Model {
            pdp: self.pdp_token().await,
            uid,
            grant: id(&g.body),
            ward: id(&ward.body),
            bed: id(&bed.body),
            other_ward: id(&other.body),
        }
    }

    async fn pdp(&self, token: &str, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }
}

fn eval(subject: &str, action: &str, resource: &str) -> Value {
    json!({ "subject": { "type": "user", "id": subject }, "action": { "name": action }, "resource": { "type": "record", "id": resource } })
}

async fn authzen_decisions(h: &Harness) {
    let m = h.model().await;
    // Allowed below the granted ward, with the grant as the reason and the revision.
    let r = h.pdp(&m.pdp, "/access/v1/evaluation", eval(&m.uid, "read", &m.bed)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["decision"], true, "{}", r.text);
    let reasons = r.body["context"]["reasons"].as_array().unwrap();
    assert_eq!(reasons[0]["code"], "granted");
    assert_eq!(reasons[0]["grant_id"], m.grant, "{}", r.text);
    let rev = r.body["context"]["revision"].as_u64().unwrap();
    assert_eq!(r.header("x-wardkey-revision").unwrap().parse::<u64>().unwrap(), rev);
    // By username too; a sibling ward, another action, unknown ids: 200 with false.
    assert_eq!(h.pdp(&m.pdp, "/access/v1/evaluation", eval("N.Ward", "read", &m.ward)).await.body["decision"], true);
    for (s, a, res, code) in [
        (m.uid.as_str(), "read", m.other_ward.as_str(), "no_grant"),
        (m.uid.as_str(), "write", m.bed.as_str(), "no_grant"),
        ("nobody", "read", m.bed.as_str(), "unknown_subject"),
        (m.uid.as_str(), "delete", m.bed.as_str(), "unknown_action"),
    ] {
        let r = h.pdp(&m.pdp, "/access/v1/evaluation", eval(s, a, res)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.body["decision"], false, "{}", r.text);
        assert_eq!(r.body["context"]["reasons"][0]["code"], code, "{}", r.text);
    }
    // An unregistered record id is reachable only through unscoped grants: denied here.
    assert_eq!(
        h.pdp(&m.pdp, "/access/v1/evaluation", eval(&m.uid, "read", "mrn-000123")).await.body["decision"],
        false
    );
    // Unknown fields are ignored; X-Request-ID is echoed.
    let mut body = eval(&m.uid, "read", &m.bed);
    body["extension_of_someone"] = json!({ "x": 1 });
    let r = h
        .http
        .post(h.url("/access/v1/evaluation"))
        .bearer_auth(&m.pdp)
        .header("x-request-id", "pep-42")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers().get("x-request-id").unwrap(), "pep-42");
    assert_eq!(r.status(), StatusCode::OK);
    // Malformed: 400, never an accidental allow.
    h.pdp(
        &m.pdp,
        "/access/v1/evaluation",
        json!({ "subject": { "type": "user" }, "action": { "name": "read" }, "resource": { "type": "record" } }),
    )
    .await
    .problem(StatusCode::BAD_REQUEST, "malformed-request");
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let r = h
        .http
        .post(h.url("/access/v1/evaluation"))
        .bearer_auth(&m.pdp)
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let mut bad_ip = eval(&m.uid, "read", &m.bed);
    bad_ip["context"] = json!({ "ip": "999.1.1.1" });
    h.pdp(&m.pdp, "/access/v1/evaluation", bad_ip).await.problem(StatusCode::BAD_REQUEST, "malformed-request");
    // Wardkey's context members have types; a wrong one is a 400 that names the member, while
    // members Wardkey does not know (of any shape) are ignored.
    for (ctx, field) in [
        (json!({ "ip": 5 }), "context.ip"),
        (json!({ "amr": "otp" }), "context.amr"),
        (json!({ "min_revision": -1 }), "context.min_revision"),
        (json!({ "amr": vec!["otp"; 33] }), "context.amr"),
    ] {
        let mut b = eval(&m.uid, "read", &m.bed);
        b["context"] = ctx;
        let p = h.pdp(&m.pdp, "/access/v1/evaluation", b).await;
        assert_eq!(p.status, StatusCode::BAD_REQUEST, "{:?}", p.body);
        assert_eq!(p.body["field"], field, "{:?}", p.body);
    }
    let mut odd = eval(&m.uid, "read", &m.bed);
    odd["context"] =
        json!({ "app": { "nested": [1, { "x": null }] }, "time": "2026-01-01T00:00:00Z", "ip": "10.0.0.1" });
    let plain = h.pdp(&m.pdp, "/access/v1/evaluation", eval(&m.uid, "read", &m.bed)).await;
    let p = h.pdp(&m.pdp, "/access/v1/evaluation", odd).await;
    assert_eq!(p.status, StatusCode::OK, "{:?}", p.body);
    assert!(p.body["decision"].is_boolean(), "{:?}", p.body);
    assert_eq!(p.body["decision"], plain.body["decision"], "{:?}", p.body);
    // Only `pdp` (or admin) tokens ask.
    let audit = h.operator_token(json!({ "name": "auditor", "scopes": ["audit:read"] })).await;
    let at = audit.body["secret"].as_str().unwrap();
    h.pdp(at, "/access/v1/evaluation", eval(&m.uid, "read", &m.bed)).await.problem(StatusCode::FORBIDDEN, "forbidden");
    h.call(Method::POST, "/access/v1/evaluation", None, Some(eval(&m.uid, "read", &m.bed)))
        .await
        .problem(StatusCode::UNAUTHORIZED, "unauthenticated");

    // Decisions on a PHI type are audit events (sync: already there).
    let ev = h.events("action=access.evaluate&limit=500").await;
    assert!(ev.iter().any(|e| e["details"]["decision"] == true && e["details"]["resource"]["id"] == m.bed), "{ev:?}");
    assert!(ev.iter().any(|e| e["outcome"] == "denied"));

    // Batch: defaults overridden per item, order kept, semantics honoured.
    let batch = json!({
        "subject": { "type": "user", "id": m.uid },
        "action": { "name": "read" },
        "evaluations": [
            { "resource": { "type": "record", "id": m.bed } },
            { "resource": { "type": "record", "id": m.other_ward } },
            { "resource": { "type": "record", "id": m.ward } },
        ],
    });
    let r = h.pdp(&m.pdp, "/access/v1/evaluations", batch.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let d: Vec<bool> =
        r.body["evaluations"].as_array().unwrap().iter().map(|e| e["decision"].as_bool().unwrap()).collect();
    assert_eq!(d, [true, false, true]);
    assert_eq!(
        r.body["evaluations"],
        json!([{ "decision": true }, { "decision": false }, { "decision": true }]),
        "AuthZEN answers, with a context only when reasons are asked for: {}",
        r.text
    );
    let mut asked = batch.clone();
    asked["options"] = json!({ "evaluations_semantic": "deny_on_first_deny", "include_reasons": true });
    let r = h.pdp(&m.pdp, "/access/v1/evaluations", asked).await;
    assert_eq!(r.body["evaluations"].as_array().unwrap().len(), 2, "stops at the first deny");
    assert!(r.body["evaluations"][1]["context"]["reasons"].is_array());
    assert!(r.body["evaluations"][0]["context"]["revision"].is_u64(), "{}", r.text);
    let mut permit = batch.clone();
    permit["options"] = json!({ "evaluations_semantic": "permit_on_first_permit" });
    assert_eq!(h.pdp(&m.pdp, "/access/v1/evaluations", permit).await.body["evaluations"].as_array().unwrap().len(), 1);
    let mut wrong = batch;
    wrong["options"] = json!({ "evaluations_semantic": "whatever" });
    h.pdp(&m.pdp, "/access/v1/evaluations", wrong).await.problem(StatusCode::BAD_REQUEST, "malformed-request");

    // Searches.
    let r = h.pdp(&m.pdp, "/access/v1/search/subject", json!({ "subject": { "type": "user" }, "action": { "name": "read" }, "resource": { "type": "record", "id": m.bed } })).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // Named as a PEP names them (the username), without properties unless asked for.
    assert_eq!(r.body["results"], json!([{ "type": "user", "id": "n.ward" }]), "{}", r.text);
    let r = h.pdp(&m.pdp, "/access/v1/search/subject", json!({ "subject": { "type": "user" }, "action": { "name": "read" }, "resource": { "type": "record", "id": m.bed }, "options": { "include_properties": true } })).await;
    assert_eq!(r.body["results"][0]["id"], "n.ward", "{}", r.text);
    assert_eq!(r.body["results"][0]["properties"]["wardkey_id"], m.uid, "{}", r.text);
    assert_eq!(r.body["results"][0]["properties"]["grants"][0]["grant_id"], m.grant);
    let r = h.pdp(&m.pdp, "/access/v1/search/resource", json!({ "subject": { "type": "user", "id": m.uid }, "action": { "name": "read" }, "resource": { "type": "record" } })).await;
    let mut ids: Vec<&str> = r.body["results"].as_array().unwrap().iter().map(|x| x["id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, ["bed-3", "ward-7"], "resources by name: {}", r.text);
    assert!(r.body["results"].as_array().unwrap().iter().all(|x| x["properties"].is_null() && x["type"] == "record"));
    let r = h
        .pdp(
            &m.pdp,
            "/access/v1/search/action",
            json!({ "subject": { "type": "user", "id": m.uid }, "resource": { "type": "record", "id": m.bed } }),
        )
        .await;
    assert_eq!(
        r.body["results"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect::<Vec<_>>(),
        ["read"]
    );
    let cfg = h.call(Method::GET, "/.well-known/authzen-configuration", None, None).await;
    assert_eq!(cfg.status, StatusCode::OK);
    assert!(cfg.body["access_evaluation_endpoint"].as_str().unwrap().ends_with("/access/v1/evaluation"));
    assert!(cfg.body["search_action_endpoint"].as_str().unwrap().ends_with("/access/v1/search/action"));

    // "Who has access" and "what can they reach" for reviews, from the same index.
    let who = h.get(&format!("/api/v1/access/subjects?resource_type=record&resource={}&action=read", m.bed)).await;
    assert_eq!(who.status, StatusCode::OK, "{}", who.text);
    assert_eq!(who.body["items"][0]["subject"]["id"], m.uid, "{}", who.text);
    assert_eq!(who.body["items"][0]["grants"][0]["grant_id"], m.grant);
    let reach = h.get("/api/v1/access/resources?subject=n.ward&resource_type=record").await;
    assert_eq!(reach.status, StatusCode::OK, "{}", reach.text);
    assert_eq!(reach.body["items"].as_array().map(Vec::len), Some(2), "{}", reach.text);
    assert!(!h.events("action=api.read").await.is_empty());
    h.pdp(&m.pdp, "/access/v1/evaluation", eval(&m.uid, "read", &m.bed)).await;
    let forbidden =
        h.call(Method::GET, "/api/v1/access/subjects?resource_type=record&action=read", Some(&m.pdp), None).await;
    forbidden.problem(StatusCode::FORBIDDEN, "forbidden");

    // A minimum revision from the future: 503 after a bounded wait, not a stale answer.
    let started = std::time::Instant::now();
    let r = h
        .http
        .post(h.url("/access/v1/evaluation"))
        .bearer_auth(&m.pdp)
        .header("x-wardkey-min-revision", "99999999")
        .json(&eval(&m.uid, "read", &m.bed))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_secs(5));

    // Revocation: the call returns only once the index denies.
    let g = h.get(&format!("/api/v1/grants/{}", m.grant)).await;
    let rv = h.delete(&format!("/api/v1/grants/{}?version={}", m.grant, g.body["version"])).await;
    assert!(rv.status.is_success(), "{}", rv.text);
    let r = h.pdp(&m.pdp, "/access/v1/evaluation", eval(&m.uid, "read", &m.bed)).await;
    assert_eq!(r.body["decision"], false, "denied as soon as the revoke returned: {}", r.text);
    let revoked_at: u64 = rv.header("x-wardkey-revision").unwrap().parse().unwrap();
    assert!(r.body["context"]["revision"].as_u64().unwrap() >= revoked_at);
}

/// Checks race revocations: once a revoking call has returned, no check started afterwards
/// allows, on any connection.
async fn revocation_race(h: &Harness) {
    let m = h.model().await;
    let rt = h.get("/api/v1/resource-types").await;
    let type_id = rt.body["items"][0]["id"].as_str().unwrap().to_owned();
    let role = h
        .post(
            "/api/v1/roles",
            json!({ "name": "r2", "permissions": [{ "resource_type": "record", "actions": ["write"] }] }),
        )
        .await;
    let _ = type_id;
    for round in 0..5 {
        let g = h
            .post(
                "/api/v1/grants",
                json!({ "justification": "test access", "subject": { "type": "user", "id": m.uid }, "role_id": id(&role.body), "resource_id": m.ward }),
            )
            .await;
        assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
        let gid = id(&g.body);
        let revoked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut checkers = Vec::new();
        for _ in 0..4 {
            let http = h.http.clone();
            let url = h.url("/access/v1/evaluation");
            let token = m.pdp.clone();
            let body = eval(&m.uid, "write", &m.bed);
            let revoked = revoked.clone();
            checkers.push(tokio::spawn(async move {
                let mut late_allows = 0;
                for _ in 0..40 {
                    let after = revoked.load(std::sync::atomic::Ordering::SeqCst);
                    let r: Value =
                        http.post(&url).bearer_auth(&token).json(&body).send().await.unwrap().json().await.unwrap();
                    if after && r["decision"] == true {
                        late_allows += 1;
                    }
                }
                late_allows
            }));
        }
        tokio::time::sleep(Duration::from_millis(5 * round)).await;
        let rv = h.delete(&format!("/api/v1/grants/{gid}?version=1")).await;
        assert!(rv.status.is_success(), "{}", rv.text);
        revoked.store(true, std::sync::atomic::Ordering::SeqCst);
        for c in checkers {
            assert_eq!(c.await.unwrap(), 0, "an allow after the revoke returned");
        }
    }
}

/// Conditions in decisions: an MFA-only role denies a password-only request with a step-up
/// hint, and allows once the PEP reports a second factor; break-glass allows with an
/// obligation and its use is on record.
async fn conditions_and_break_glass(h: &Harness) {
    let m = h.model().await;
    let role = h
        .post("/api/v1/roles", json!({ "name": "writer-mfa", "permissions": [{ "resource_type": "record", "actions": ["write"] }], "conditions": { "min_assurance": "mfa" } }))
        .await;
    assert_eq!(role.status, StatusCode::CREATED, "{}", role.text);
    let g = h
        .post("/api/v1/grants", json!({ "justification": "test access", "subject": { "type": "user", "id": m.uid }, "role_id": id(&role.body) }))
        .await;
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
    let r = h.pdp(&m.pdp, "/access/v1/evaluation", eval(&m.uid, "write", &m.bed)).await;
    assert_eq!(r.body["decision"], false, "{}", r.text);
    assert_eq!(r.body["context"]["acr_values"], "urn:wardkey:acr:mfa", "{}", r.text);
    let mut with_mfa = eval(&m.uid, "write", &m.bed);
    with_mfa["context"] = json!({ "amr": ["pwd", "otp"] });
    assert_eq!(h.pdp(&m.pdp, "/access/v1/evaluation", with_mfa).await.body["decision"], true);

    // A forbid rule beats the grant.
    let f = h
        .post("/api/v1/forbid-rules", json!({ "name": "psych", "resource_types": ["record"], "when": { "kind": "resource_property", "property": "category", "values": ["psychiatry"], "unless_group": "clearance-psych" } }))
        .await;
    assert_eq!(f.status, StatusCode::CREATED, "{}", f.text);
    let mut psych = eval(&m.uid, "read", &m.bed);
    psych["resource"]["properties"] = json!({ "category": "psychiatry" });
    let r = h.pdp(&m.pdp, "/access/v1/evaluation", psych).await;
    assert_eq!(r.body["decision"], false, "{}", r.text);
    assert_eq!(r.body["context"]["reasons"][0]["code"], "forbidden_by_rule");

    // Break-glass: a time-boxed grant; decisions through it carry the obligation.
    let er = h.post("/api/v1/roles", json!({ "name": "er-reader", "break_glass": true, "permissions": [{ "resource_type": "record", "actions": ["read"] }] })).await;
    let doc = h.person("dr.bg").await;
    let (c, _, _) = h.enrolled("dr.bg").await;
    let bg = h
        .with_cookie(
            Method::POST,
            "/api/v1/break-glass",
            &c,
            Some(json!({ "role_id": id(&er.body), "justification": "cardiac arrest, no attending on site" })),
        )
        .await;
    assert_eq!(bg.status, StatusCode::CREATED, "{}", bg.text);
    let r = h.pdp(&m.pdp, "/access/v1/evaluation", eval(&doc, "read", &m.other_ward)).await;
    assert_eq!(r.body["decision"], true, "{}", r.text);
    assert_eq!(r.body["context"]["break_glass"], true);
    assert_eq!(r.body["context"]["obligations"][0]["type"], "record_break_glass_use", "{}", r.text);
    let ev = h.events("action=access.evaluate&limit=500").await;
    assert!(ev.iter().any(|e| e["details"]["break_glass"] == true && e["details"]["review_required"] == true));
    // Expiry is exact: an hour later the same question is denied, with no job having run.
    h.advance(3600);
    assert_eq!(h.pdp(&m.pdp, "/access/v1/evaluation", eval(&doc, "read", &m.other_ward)).await.body["decision"], false);
}

/// `POST /access/v1/evaluation` is answered by the hot path in front of the router; it must
/// keep every promise the generic path makes (request ids, limits, problems, audit of
/// refusals, metrics), and hand anything unusual to the router.
async fn hot_path_keeps_the_edge_promises(h: &Harness) {
    let m = h.model().await;
    let url = h.url("/access/v1/evaluation");
    let metric = |text: &str, status: u16| -> u64 {
        let series = format!(
            "wardkey_http_requests_total{{method=\"POST\",path=\"/access/v1/evaluation\",status=\"{status}\"}} "
        );
        text.lines().find_map(|l| l.strip_prefix(series.as_str())).map(|v| v.trim().parse().unwrap()).unwrap_or(0)
    };
    let before = h.http.get(h.url("/metrics")).send().await.unwrap().text().await.unwrap();

    // A request id is made when none (or an unusable one) is sent; a good one is echoed.
    let r = h.http.post(&url).bearer_auth(&m.pdp).json(&eval(&m.uid, "read", &m.bed)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers().get("cache-control").unwrap(), "no-store");
    assert!(r.headers().get("x-wardkey-revision").is_some());
    let made = r.headers().get("x-request-id").unwrap().to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&made).is_ok(), "{made}");
    let r = h
        .http
        .post(&url)
        .bearer_auth(&m.pdp)
        .header("x-request-id", "a\tb")
        .json(&eval(&m.uid, "read", &m.bed))
        .send()
        .await
        .unwrap();
    let replaced = r.headers().get("x-request-id").unwrap().to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&replaced).is_ok() && replaced != made, "{replaced}");

    // Body limits: declared, and while reading a chunked body.
    let big = format!("{{\"subject\": \"{}\"}}", "b".repeat(128 * 1024));
    let r = h
        .http
        .post(&url)
        .bearer_auth(&m.pdp)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    Resp::read(r).await.problem(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large");
    let raw = super::chunked_post(h, "/access/v1/evaluation", &vec![b' '; 128 * 1024]).await;
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    assert!(raw.to_ascii_lowercase().contains("x-request-id"), "{raw}");

    // Not JSON, no credential, another scheme, an unknown token: the same problems as
    // every other route.
    let r = h.http.post(&url).bearer_auth(&m.pdp).header("content-type", "text/plain").body("{}").send().await.unwrap();
    Resp::read(r).await.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type");
    let r = h
        .http
        .post(&url)
        .header("authorization", "Basic dXNlcjpwYXNz")
        .json(&eval(&m.uid, "read", &m.bed))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("www-authenticate").is_some());
    Resp::read(r).await.problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    let forged = format!("wkt_{}_c2VjcmV0", uuid::Uuid::now_v7().simple());
    let r = h.http.post(&url).bearer_auth(&forged).json(&eval(&m.uid, "read", &m.bed)).send().await.unwrap();
    assert!(r.headers().get("www-authenticate").is_some());
    Resp::read(r).await.problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    let failed = h.events("action=auth.failed").await;
    assert!(failed.iter().any(|e| e["reason"] == "unknown token"), "{failed:?}");

    // A token without the scope: 403, and the refusal names the route.
    let audit = h.operator_token(json!({ "name": "reader", "scopes": ["audit:read"] })).await;
    let at = audit.body["secret"].as_str().unwrap().to_owned();
    h.pdp(&at, "/access/v1/evaluation", eval(&m.uid, "read", &m.bed)).await.problem(StatusCode::FORBIDDEN, "forbidden");
    let denied = h.events("action=auth.denied").await;
    assert!(denied.iter().any(|e| e["details"]["attempted"] == "POST /access/v1/evaluation"), "{denied:?}");

    // Other methods on the route go to the router.
    h.call(Method::GET, "/access/v1/evaluation", Some(&m.pdp), None)
        .await
        .problem(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed");

    // Counted like every request.
    let after = h.http.get(h.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metric(&after, 200) >= metric(&before, 200) + 2, "{after}");
    assert!(metric(&after, 403) > metric(&before, 403), "{after}");
    assert!(metric(&after, 413) > metric(&before, 413), "{after}");
}

/// An active user with these HR attributes, by username; returns the id.
async fn active_user(h: &Harness, username: &str, hr: Value) -> String {
    let u = h.post("/api/v1/users", json!({ "username": username, "hr": hr })).await;
    assert_eq!(u.status, StatusCode::CREATED, "{}", u.text);
    let uid = id(&u.body);
    h.post(&format!("/api/v1/users/{uid}/verify-identity"), json!({ "version": 1, "method": "in_person" })).await;
    let a = h.post(&format!("/api/v1/users/{uid}/status"), json!({ "version": 2, "status": "active" })).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    uid
}

/// A role on `rtype` granted to `uid` (on `scope`, if given).
async fn grant_role(
    h: &Harness,
    name: &str,
    rtype: &str,
    actions: Value,
    conditions: Value,
    uid: &str,
    scope: Option<&str>,
) {
    let role = h
        .post(
            "/api/v1/roles",
            json!({ "name": name, "permissions": [{ "resource_type": rtype, "actions": actions }], "conditions": conditions }),
        )
        .await;
    assert_eq!(role.status, StatusCode::CREATED, "{}", role.text);
    let g = h
        .post(
            "/api/v1/grants",
            json!({ "subject": { "type": "user", "id": uid }, "role_id": id(&role.body), "resource_id": scope, "justification": "test" }),
        )
        .await;
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
}

/// Resource attributes are honoured alike by evaluation and the three searches: a department
/// rule scoped to a chart with a stored `department` allows the evaluation (which denied
/// before: only the request's properties counted) and the searches say the same, naming
/// things as the PEP does. A change made through a service call, with no HTTP response and no
/// revision header to wait on, is decided on as soon as the call returns.
async fn stored_attributes_decide_everywhere(h: &Harness) {
    let token = h.pdp_token().await;
    let pdp = token.as_str();
    let rt = h.post("/api/v1/resource-types", json!({ "name": "chart", "actions": ["read", "sign"] })).await;
    assert_eq!(rt.status, StatusCode::CREATED, "{}", rt.text);
    let ty = id(&rt.body);
    let clinic = h.post("/api/v1/resources", json!({ "type_id": ty, "name": "clinic" })).await;
    let cardio = h
        .post(
            "/api/v1/resources",
            json!({ "type_id": ty, "name": "chart-1", "parent_id": id(&clinic.body), "attributes": { "department": "cardio" } }),
        )
        .await;
    assert_eq!(cardio.status, StatusCode::CREATED, "{}", cardio.text);
    let onco = h
        .post(
            "/api/v1/resources",
            json!({ "type_id": ty, "name": "chart-2", "parent_id": id(&clinic.body), "attributes": { "department": "onco" } }),
        )
        .await;
    let uid = active_user(h, "c.nurse", json!({ "department": "cardio" })).await;
    let rule = json!({ "attribute_rules": [{ "resource_property": "department", "op": "equals", "subject_attribute": "department" }] });
    grant_role(h, "dept-reader", "chart", json!(["read"]), rule, &uid, Some(&id(&clinic.body))).await;

    let ask = |subject: &str, resource: &str, properties: Value| {
        json!({ "subject": { "type": "user", "id": subject }, "action": { "name": "read" },
                "resource": { "type": "chart", "id": resource, "properties": properties } })
    };
    let decide = |body: Value| async move { h.pdp(pdp, "/access/v1/evaluation", body).await };
    let r = decide(ask("c.nurse", "chart-1", json!({}))).await;
    assert_eq!(r.body["decision"], true, "the stored department satisfies the rule: {}", r.text);
    let r = decide(ask("c.nurse", "chart-2", json!({}))).await;
    assert_eq!(r.body["decision"], false, "{}", r.text);
    // The record is authoritative: a PEP cannot re-label a registered chart.
    let r = decide(ask("c.nurse", "chart-2", json!({ "department": "cardio" }))).await;
    assert_eq!(r.body["decision"], false, "{}", r.text);
    // An unregistered record has only the properties the PEP sends (and the scoped grant
    // does not reach it anyway).
    let r = decide(ask("c.nurse", "ext-77", json!({ "department": "cardio" }))).await;
    assert_eq!(r.body["decision"], false, "{}", r.text);

    let search = |path: &'static str, body: Value| async move {
        let r = h.pdp(pdp, path, body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body
    };
    let found = search(
        "/access/v1/search/resource",
        json!({ "subject": { "type": "user", "id": "c.nurse" }, "action": { "name": "read" }, "resource": { "type": "chart" } }),
    )
    .await;
    assert_eq!(found["results"], json!([{ "type": "chart", "id": "chart-1" }]), "{found}");
    let found = search(
        "/access/v1/search/subject",
        json!({ "subject": { "type": "user" }, "action": { "name": "read" }, "resource": { "type": "chart", "id": "chart-1" } }),
    )
    .await;
    assert_eq!(found["results"], json!([{ "type": "user", "id": "c.nurse" }]), "{found}");
    let found = search(
        "/access/v1/search/subject",
        json!({ "subject": { "type": "user" }, "action": { "name": "read" }, "resource": { "type": "chart", "id": "chart-2" } }),
    )
    .await;
    assert_eq!(found["results"], json!([]), "{found}");
    let found = search(
        "/access/v1/search/action",
        json!({ "subject": { "type": "user", "id": "c.nurse" }, "resource": { "type": "chart", "id": "chart-1" } }),
    )
    .await;
    assert_eq!(found["results"], json!([{ "name": "read" }]), "{found}");
    // Every result, evaluated as it was given, is allowed.
    let r = decide(ask("c.nurse", "chart-1", json!({}))).await;
    assert_eq!(r.body["decision"], true);

    // Through a service call: chart-2 moves to cardiology. No response, no header, no wait
    // by the caller: the index has the change when the call returns.
    let by = h.services.operator("ops");
    let chart2: wardkey_domain::ResourceId = id(&onco.body).parse().unwrap();
    let update = |version: i64, department: &str| wardkey_domain::ResourceUpdate {
        version,
        description: None,
        attributes: Some([("department".to_owned(), department.to_owned())].into()),
        parent_id: None,
        move_to_root: false,
    };
    let mut version = onco.body["version"].as_i64().unwrap();
    for (department, allowed) in [("cardio", true), ("onco", false), ("cardio", true)] {
        let c = h.services.update_resource(&by, chart2, update(version, department)).await.unwrap();
        assert!(
            h.services.decision_revision() >= c.revision,
            "the index is at revision {} when the write of revision {} returns",
            h.services.decision_revision(),
            c.revision
        );
        version = c.value.version;
        let r = decide(ask("c.nurse", "chart-2", json!({}))).await;
        assert_eq!(r.body["decision"], allowed, "department {department}: {}", r.text);
    }
}

/// One depth limit: a chain as deep as the domain allows can be built, a grant at its root
/// applies at its leaf (the engine walks as far as the store allows), and a resource or a
/// move that would go deeper is refused, naming `parent_id`.
async fn resource_depth_is_one_limit(h: &Harness) {
    use wardkey_domain::MAX_RESOURCE_DEPTH;
    let pdp = h.pdp_token().await;
    let rt = h.post("/api/v1/resource-types", json!({ "name": "folder", "actions": ["read"] })).await;
    let ty = id(&rt.body);
    let mut chain: Vec<String> = Vec::new();
    for level in 0..=MAX_RESOURCE_DEPTH {
        let r = h
            .post("/api/v1/resources", json!({ "type_id": ty, "name": format!("f{level}"), "parent_id": chain.last() }))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "level {level}: {}", r.text);
        chain.push(id(&r.body));
    }
    let leaf = chain.last().unwrap().clone();
    let too_deep = h.post("/api/v1/resources", json!({ "type_id": ty, "name": "too-deep", "parent_id": leaf })).await;
    assert_eq!(too_deep.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation")["errors"][0]["field"], "parent_id");
    let all = h.get("/api/v1/resources?limit=500").await;
    assert!(all.body["items"].as_array().unwrap().iter().all(|r| r["name"] != "too-deep"), "nothing half-written");

    let uid = active_user(h, "f.reader", json!({})).await;
    grant_role(h, "folder-reader", "folder", json!(["read"]), json!({}), &uid, Some(&chain[0])).await;
    let ask = |name: String| json!({ "subject": { "type": "user", "id": "f.reader" }, "action": { "name": "read" }, "resource": { "type": "folder", "id": name } });
    let r = h.pdp(&pdp, "/access/v1/evaluation", ask(format!("f{MAX_RESOURCE_DEPTH}"))).await;
    assert_eq!(r.body["decision"], true, "the root's grant applies {MAX_RESOURCE_DEPTH} levels down: {}", r.text);
    let r = h
        .pdp(
            &pdp,
            "/access/v1/search/resource",
            json!({ "subject": { "type": "user", "id": "f.reader" }, "action": { "name": "read" }, "resource": { "type": "folder" } }),
        )
        .await;
    assert_eq!(r.body["results"].as_array().map(Vec::len), Some(MAX_RESOURCE_DEPTH + 1), "{}", r.text);

    // A two-level subtree may move to where its top sits at the limit's last level but one,
    // not one level lower (its child would be too deep).
    let top = h.post("/api/v1/resources", json!({ "type_id": ty, "name": "s0" })).await;
    let child = h.post("/api/v1/resources", json!({ "type_id": ty, "name": "s1", "parent_id": id(&top.body) })).await;
    assert_eq!(child.status, StatusCode::CREATED, "{}", child.text);
    let moved = h
        .patch(
            &format!("/api/v1/resources/{}", id(&top.body)),
            json!({ "version": top.body["version"], "parent_id": chain[MAX_RESOURCE_DEPTH - 1] }),
        )
        .await;
    assert_eq!(moved.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation")["errors"][0]["field"], "parent_id");
    let moved = h
        .patch(
            &format!("/api/v1/resources/{}", id(&top.body)),
            json!({ "version": top.body["version"], "parent_id": chain[MAX_RESOURCE_DEPTH - 2] }),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.text);
    let r = h.pdp(&pdp, "/access/v1/evaluation", ask("s1".to_owned())).await;
    assert_eq!(r.body["decision"], true, "{}", r.text);
}

authn_on_both_stores!(
    authzen_decisions,
    revocation_race,
    conditions_and_break_glass,
    hot_path_keeps_the_edge_promises,
    stored_attributes_decide_everywhere,
    resource_depth_is_one_limit,
);

/// Two Wardkey nodes on one PostgreSQL database: a revocation on one is honoured by the other
/// for any PEP that names the revision the revoke returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_revisions() {
    let Some(a) = Harness::authn_postgres().await else { return };
    let m = a.model().await;
    let url = match &a.backing {
        Backing::Postgres { admin_url, db } => with_database(admin_url, db),
        Backing::Sqlite(_) => unreachable!(),
    };
    let clock = a.clock.clone().unwrap();
    let store_b = Store::open(&url, clock).await.expect("second node store");
    store_b.set_signer(signer());
    let services_b = Services::new(store_b, ServiceConfig::default());
    let node_b = wardkey_server::spawn(test_config(), services_b.clone()).await.expect("second node");
    let b = node_b.base_url();
    let ask = |base: String, min: Option<u64>| {
        let http = a.http.clone();
        let token = m.pdp.clone();
        let body = eval(&m.uid, "read", &m.bed);
        async move {
            let mut req = http.post(format!("{base}/access/v1/evaluation")).bearer_auth(token).json(&body);
            if let Some(r) = min {
                req = req.header("x-wardkey-min-revision", r.to_string());
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<Value>().await.unwrap()
        }
    };
    assert_eq!(ask(b.clone(), None).await["decision"], true, "node B built its index from the shared database");
    let g = a.get(&format!("/api/v1/grants/{}", m.grant)).await;
    let rv = a.delete(&format!("/api/v1/grants/{}?version={}", m.grant, g.body["version"])).await;
    let revision: u64 = rv.header("x-wardkey-revision").unwrap().parse().unwrap();
    let on_b = ask(b.clone(), Some(revision)).await;
    assert_eq!(on_b["decision"], false, "{on_b}");
    assert!(on_b["context"]["revision"].as_u64().unwrap() >= revision);

    // Node B keeps presented tokens in memory; one revoked on node A is refused by B as soon
    // as B has caught up with the revocation (not only once the cache entry ages out).
    let t = a.operator_token(json!({ "name": "pep-2", "scopes": ["pdp"] })).await;
    assert_eq!(t.status, StatusCode::CREATED, "{}", t.text);
    let secret = t.body["secret"].as_str().unwrap().to_owned();
    let on_b = |secret: String| {
        let http = a.http.clone();
        let url = format!("{b}/access/v1/evaluation");
        let body = eval(&m.uid, "read", &m.bed);
        async move { http.post(url).bearer_auth(secret).json(&body).send().await.unwrap().status() }
    };
    assert_eq!(on_b(secret.clone()).await, StatusCode::OK, "the token is now cached on node B");
    let d = a.delete(&format!("/api/v1/tokens/{}", t.body["token"]["id"].as_str().unwrap())).await;
    assert_eq!(d.status, StatusCode::NO_CONTENT, "{}", d.text);
    let revision: u64 = d.header("x-wardkey-revision").unwrap().parse().unwrap();
    let started = std::time::Instant::now();
    services_b.wait_for_revision(revision).await.unwrap();
    assert_eq!(on_b(secret).await, StatusCode::UNAUTHORIZED);
    assert!(started.elapsed() < wardkey_service::auth::TOKEN_CACHE_TTL, "refused through catch-up, before the TTL");
    node_b.shutdown().await.expect("clean shutdown");
    a.finish().await;
}
