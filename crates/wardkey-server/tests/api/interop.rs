//! The public OpenID AuthZEN interop scenarios (`examples/<scenario>/`), on both stores: each
//! scenario's `model.json` is loaded through the admin API into a fresh server, then every
//! request of its `decisions.json` is sent, body unchanged, as the interop PEP sends it, to
//! `/access/v1/evaluation` (and its batches to `/access/v1/evaluations`). Every decision must
//! be the scenario's; a failure lists every mismatch with the reasons Wardkey gave.

use super::*;

const TODO_MODEL: &str = include_str!("../../../../examples/todo/model.json");
const TODO_DECISIONS: &str = include_str!("../../../../examples/todo/decisions.json");
const GATEWAY_MODEL: &str = include_str!("../../../../examples/api-gateway/model.json");
const GATEWAY_DECISIONS: &str = include_str!("../../../../examples/api-gateway/decisions.json");

fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("example JSON parses")
}

fn items<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v[key].as_array().map(Vec::as_slice).unwrap_or_default()
}

fn name_of(v: &Value) -> &str {
    v["name"].as_str().or_else(|| v["username"].as_str()).expect("a name")
}

/// Creates the model's objects through the admin API, as `examples/*/load.sh` does, and
/// returns a `pdp` token for the PEP.
async fn load_model(h: &Harness, model: &Value) -> String {
    for t in items(model, "resource_types") {
        let r = h.post("/api/v1/resource-types", t.clone()).await;
        assert_eq!(r.status, StatusCode::CREATED, "resource type {}: {}", name_of(t), r.text);
    }
    let mut roles = std::collections::HashMap::new();
    for role in items(model, "roles") {
        let r = h.post("/api/v1/roles", role.clone()).await;
        assert_eq!(r.status, StatusCode::CREATED, "role {}: {}", name_of(role), r.text);
        roles.insert(name_of(role).to_owned(), id(&r.body));
    }
    let mut groups = std::collections::HashMap::new();
    for g in items(model, "groups") {
        let r = h.post("/api/v1/groups", g.clone()).await;
        assert_eq!(r.status, StatusCode::CREATED, "group {}: {}", name_of(g), r.text);
        groups.insert(name_of(g).to_owned(), id(&r.body));
    }
    let method = model["identity_verification_method"].as_str().unwrap_or("interop_fixture");
    let mut users = std::collections::HashMap::new();
    for u in items(model, "users") {
        let r = h.post("/api/v1/users", u.clone()).await;
        assert_eq!(r.status, StatusCode::CREATED, "user {}: {}", name_of(u), r.text);
        let uid = id(&r.body);
        let v = h
            .post(
                &format!("/api/v1/users/{uid}/verify-identity"),
                json!({ "version": r.body["version"], "method": method }),
            )
            .await;
        assert_eq!(v.status, StatusCode::OK, "verify {}: {}", name_of(u), v.text);
        let a = h
            .post(&format!("/api/v1/users/{uid}/status"), json!({ "version": v.body["version"], "status": "active" }))
            .await;
        assert_eq!(a.status, StatusCode::OK, "activate {}: {}", name_of(u), a.text);
        assert_eq!(a.body["email"], u["email"], "{}", a.text);
        users.insert(name_of(u).to_owned(), uid);
    }
    for m in items(model, "memberships") {
        let gid = &groups[m["group"].as_str().unwrap()];
        let uid = &users[m["username"].as_str().unwrap()];
        let r = h.post(&format!("/api/v1/groups/{gid}/members"), json!({ "type": "user", "id": uid })).await;
        assert_eq!(r.status, StatusCode::CREATED, "membership {m}: {}", r.text);
    }
    for g in items(model, "grants") {
        let subject = match (g["group"].as_str(), g["username"].as_str()) {
            (Some(group), None) => json!({ "type": "group", "id": groups[group] }),
            (None, Some(user)) => json!({ "type": "user", "id": users[user] }),
            _ => panic!("a grant names a group or a username: {g}"),
        };
        let r = h
            .post("/api/v1/grants", json!({ "justification": "test access", "subject": subject, "role_id": roles[g["role"].as_str().unwrap()] }))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "grant {g}: {}", r.text);
    }
    let t = h.operator_token(json!({ "name": "authzen-interop-pep", "scopes": ["pdp"] })).await;
    assert_eq!(t.status, StatusCode::CREATED, "{}", t.text);
    t.body["secret"].as_str().unwrap().to_owned()
}

/// Sends every request of the scenario and returns the mismatches (empty: all as expected)
/// and how many decisions were checked.
async fn run_decisions(h: &Harness, pdp: &str, decisions: &Value) -> (Vec<String>, usize) {
    let mut wrong = Vec::new();
    let mut checked = 0;
    for (i, d) in items(decisions, "evaluation").iter().enumerate() {
        let r = h.call(Method::POST, "/access/v1/evaluation", Some(pdp), Some(d["request"].clone())).await;
        checked += 1;
        if r.status != StatusCode::OK {
            wrong.push(format!("evaluation[{i}]: HTTP {} {}\n  request: {}", r.status, r.text, d["request"]));
        } else if r.body["decision"] != d["expected"] {
            wrong.push(format!(
                "evaluation[{i}]: expected {}, got {}\n  request: {}\n  reasons: {}",
                d["expected"], r.body["decision"], d["request"], r.body["context"]["reasons"]
            ));
        }
    }
    for (i, d) in items(decisions, "evaluations").iter().enumerate() {
        let mut request = d["request"].clone();
        request["options"] = json!({ "include_reasons": true });
        let r = h.call(Method::POST, "/access/v1/evaluations", Some(pdp), Some(request)).await;
        let expected: Vec<Value> = items(d, "expected").iter().map(|e| e["decision"].clone()).collect();
        checked += expected.len();
        if r.status != StatusCode::OK {
            wrong.push(format!("evaluations[{i}]: HTTP {} {}\n  request: {}", r.status, r.text, d["request"]));
            continue;
        }
        let got = items(&r.body, "evaluations");
        assert_eq!(got.len(), expected.len(), "evaluations[{i}]: one answer per item: {}", r.text);
        for (j, (g, e)) in got.iter().zip(&expected).enumerate() {
            if &g["decision"] != e {
                wrong.push(format!(
                    "evaluations[{i}][{j}]: expected {e}, got {}\n  item: {}\n  reasons: {}",
                    g["decision"], d["request"]["evaluations"][j], g["context"]["reasons"]
                ));
            }
        }
    }
    (wrong, checked)
}

async fn scenario(h: &Harness, name: &str, model: &str, decisions: &str, expected_count: usize) {
    let pdp = load_model(h, &parse(model)).await;
    let (wrong, checked) = run_decisions(h, &pdp, &parse(decisions)).await;
    assert_eq!(checked, expected_count, "{name}: every decision of the scenario is checked");
    assert!(
        wrong.is_empty(),
        "{name}: {} of {checked} decisions differ from the scenario:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Todo application (AuthZEN 1.0): 40 single evaluations and 3 batches of 2.
async fn todo_interop(h: &Harness) {
    scenario(h, "todo", TODO_MODEL, TODO_DECISIONS, 46).await;
}

/// API gateway (route-level authorization): 25 single evaluations.
async fn api_gateway_interop(h: &Harness) {
    scenario(h, "api-gateway", GATEWAY_MODEL, GATEWAY_DECISIONS, 25).await;
}

authn_on_both_stores!(todo_interop, api_gateway_interop);
