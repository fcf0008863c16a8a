//! The OpenAPI document tells the truth, checked against the running server on SQLite and
//! PostgreSQL:
//! - an independent validator (Python's openapi-spec-validator, `tests/openapi/`) accepts the
//!   document, and real responses conform to the schemas it declares (audit `details: null`);
//! - every DELETE the router serves is documented, and the document requires `version`
//!   exactly where the server refuses a DELETE without one;
//! - every documented `maximum` of a query parameter is enforced: one past it is a 400 naming
//!   the parameter, the maximum itself is accepted;
//! - a factor reset without a reason is refused, naming `reason`, and writes nothing.
//!
//! The validator runs from the virtualenv at `$WARDKEY_PY_VENV` (default
//! `$HOME/.cache/wardkey-pyenv`, made by `.ci/run`). Without it the validator half prints
//! `OPENAPI VALIDATOR SKIPPED` and the rest still runs, unless `WARDKEY_REQUIRE_PY=1`, which
//! makes it a failure.

use super::*;
use std::path::{Path, PathBuf};
use std::process::Command;

async fn document(h: &Harness) -> Value {
    let r = h.http.get(h.url("/api/v1/openapi.json")).send().await.expect("sent");
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.expect("the document is JSON")
}

/// The venv's python, if it can import what the test needs.
fn validator_python() -> Option<PathBuf> {
    wardkey_testkit::venv_python(
        "openapi_spec_validator, openapi_schema_validator",
        "OPENAPI VALIDATOR",
        "tests/openapi/requirements.txt",
    )
}

fn validator_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/openapi/validate_openapi.py")
}

/// One response captured for the validator: checked against the schema the document declares.
async fn capture(h: &Harness, path_template: &str, path: &str) -> Value {
    let r = h.get(path).await;
    assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
    json!({ "method": "GET", "path": path_template, "status": r.status.as_u16(), "body": r.body })
}

async fn openapi_independent_validator(h: &Harness) {
    let doc = document(h).await;
    // An event whose `details` is null (a group deletion records none), among others.
    let u = h.create_user("openapi.check").await;
    let g = h.post("/api/v1/groups", json!({ "name": "openapi-null-details" })).await;
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
    let del = h.delete(&format!("/api/v1/groups/{}?version=1", id(&g.body))).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT, "{}", del.text);
    let events = h.events("limit=500").await;
    assert!(events.iter().any(|e| e["details"].is_null()), "some event has details null: {events:?}");
    let mut cases = vec![
        capture(h, "/api/v1/audit/events", "/api/v1/audit/events?limit=500").await,
        capture(h, "/api/v1/users", "/api/v1/users").await,
        capture(h, "/api/v1/users/{id}", &format!("/api/v1/users/{}", id(&u))).await,
        capture(h, "/api/v1/groups", "/api/v1/groups").await,
        capture(h, "/api/v1/tokens", "/api/v1/tokens").await,
    ];
    h.services.sync_audit_queue().await;
    tokio::time::sleep(Duration::from_millis(400)).await; // a checkpoint (test interval 200 ms)
    let cp = h.get("/api/v1/audit/checkpoint").await;
    if cp.status == StatusCode::OK {
        let size = cp.body["size"].as_u64().expect("size");
        cases.push(capture(h, "/api/v1/audit/checkpoint", "/api/v1/audit/checkpoint").await);
        cases.push(
            capture(h, "/api/v1/audit/proof/inclusion", &format!("/api/v1/audit/proof/inclusion?index=0&size={size}"))
                .await,
        );
    }
    // A problem document too.
    let bad = h.get("/api/v1/users?limit=100000").await;
    cases.push(json!({ "method": "GET", "path": "/api/v1/users", "status": bad.status.as_u16(), "body": bad.body }));

    let Some(py) = validator_python() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let doc_file = dir.path().join("openapi.json");
    let cases_file = dir.path().join("responses.json");
    std::fs::write(&doc_file, serde_json::to_vec(&doc).unwrap()).unwrap();
    std::fs::write(&cases_file, serde_json::to_vec(&cases).unwrap()).unwrap();
    let out = Command::new(py).arg(validator_script()).arg(&doc_file).arg(&cases_file).output().expect("run validator");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the OpenAPI validator refused the document or a response:\n{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("{} responses checked; 0 failures", cases.len())), "{stdout}\n{stderr}");

    // And it is not a validator that accepts anything: a broken document and a response the
    // document does not describe are refused.
    let mut broken = doc.clone();
    broken["paths"]["/api/v1/users/{id}"]["get"]["parameters"] = json!([]);
    std::fs::write(&doc_file, serde_json::to_vec(&broken).unwrap()).unwrap();
    let out = Command::new(validator_python().unwrap()).arg(validator_script()).arg(&doc_file).output().unwrap();
    assert!(!out.status.success(), "a path parameter left undeclared must be refused");
    std::fs::write(&doc_file, serde_json::to_vec(&doc).unwrap()).unwrap();
    let mut wrong = cases[0].clone();
    wrong["body"]["items"][0]["index"] = json!("zero");
    std::fs::write(&cases_file, serde_json::to_vec(&json!([wrong])).unwrap()).unwrap();
    let out = Command::new(validator_python().unwrap())
        .arg(validator_script())
        .arg(&doc_file)
        .arg(&cases_file)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a response off its schema must be refused");
}

/// `(path, delete handler)` of every `.route(...)` in the router that serves DELETE, read
/// from the router's source so a new DELETE cannot be added without showing up here.
fn router_deletes() -> Vec<String> {
    let src = include_str!("../../src/lib.rs");
    let mut out = Vec::new();
    for part in src.split(".route(").skip(1) {
        let Some(part) = part.trim_start().strip_prefix('"') else { continue };
        let Some((path, rest)) = part.split_once('"') else { continue };
        let call = rest.split(".route(").next().unwrap_or(rest);
        let call = call.split(".merge(").next().unwrap_or(call);
        if call.contains("delete(") {
            out.push(path.to_owned());
        }
    }
    out
}

async fn openapi_delete_versions(h: &Harness) {
    let doc = document(h).await;
    let paths = doc["paths"].as_object().expect("paths");
    let deletes = router_deletes();
    assert!(deletes.len() >= 15, "{deletes:?}");
    for p in &deletes {
        assert!(paths.get(p).is_some_and(|item| item["delete"].is_object()), "DELETE {p} is served but not documented");
    }
    let mut versioned = 0;
    for (path, item) in paths {
        let Some(op) = item.get("delete") else { continue };
        assert!(deletes.contains(path), "DELETE {path} is documented but not in the router");
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let version = params.iter().find(|p| p["name"] == "version" && p["in"] == "query");
        let if_match = params.iter().find(|p| p["name"] == "If-Match" && p["in"] == "header");
        // What the server does with a DELETE that names no version.
        let concrete = path
            .replace("{kind}", "user")
            .split('/')
            .map(|seg| if seg.starts_with('{') { uuid::Uuid::now_v7().to_string() } else { seg.to_owned() })
            .collect::<Vec<_>>()
            .join("/");
        let r = h.delete(&concrete).await;
        let refused_for_version = r.status == StatusCode::BAD_REQUEST && r.body["field"] == "version";
        if refused_for_version {
            versioned += 1;
            let v = version.unwrap_or_else(|| panic!("DELETE {path} needs a version but documents none"));
            assert_eq!(v["required"], true, "DELETE {path}: version must be required: {v}");
            assert_eq!(v["schema"]["type"], "integer", "{v}");
            assert!(if_match.is_some(), "DELETE {path}: If-Match, the alternative, is documented");
            // And the documented way works: `?version=` gets past the version check.
            let r = h.delete(&format!("{concrete}?version=1")).await;
            assert_ne!(r.body["field"], "version", "{path}: {}", r.text);
        } else {
            assert!(version.is_none(), "DELETE {path} documents a version it does not need ({})", r.text);
        }
    }
    assert!(versioned >= 10, "versioned DELETEs: {versioned}");
}

/// Fills a documented path template and the required query parameters with something
/// parseable.
fn concrete_get(path: &str, params: &[Value], name: &str, value: i64) -> String {
    let mut url = path
        .split('/')
        .map(|seg| if seg.starts_with('{') { uuid::Uuid::now_v7().to_string() } else { seg.to_owned() })
        .collect::<Vec<_>>()
        .join("/");
    let mut query = vec![format!("{name}={value}")];
    for p in params {
        if p["in"] == "query" && p["required"] == true && p["name"] != name {
            query.push(format!("{}=x", p["name"].as_str().unwrap()));
        }
    }
    url.push('?');
    url.push_str(&query.join("&"));
    url
}

async fn openapi_maxima_enforced(h: &Harness) {
    let doc = document(h).await;
    let mut checked = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let Some(op) = item.get("get") else { continue };
        if path.starts_with("/api/v1/me") {
            continue; // the signed-in person's own lists take a session cookie, not this token
        }
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        for p in &params {
            let name = p["name"].as_str().unwrap();
            if p["in"] != "query" {
                continue;
            }
            if name == "limit" || name == "dormant_days" {
                assert_eq!(p["schema"]["minimum"], 1, "{path} {name}: {p}");
                assert!(p["schema"]["maximum"].is_u64(), "{path} {name} documents its maximum: {p}");
            }
            let Some(max) = p["schema"]["maximum"].as_i64() else { continue };
            for bad in [max + 1, 0] {
                let r = h.get(&concrete_get(path, &params, name, bad)).await;
                let body = r.problem(StatusCode::BAD_REQUEST, "malformed-request");
                assert_eq!(body["field"], name, "{path}?{name}={bad}: {}", r.text);
                assert!(body["detail"].as_str().unwrap().contains(&max.to_string()), "{}", r.text);
            }
            let r = h.get(&concrete_get(path, &params, name, max)).await;
            assert_ne!(r.body["field"], name, "{path}?{name}={max} is within the documented range: {}", r.text);
            checked.push(format!("{path} {name}"));
        }
    }
    for must in [
        "/api/v1/users limit",
        "/api/v1/audit/events limit",
        "/api/v1/grants limit",
        "/api/v1/sessions limit",
        "/api/v1/access/subjects limit",
        "/api/v1/reports/reconciliation dormant_days",
    ] {
        assert!(checked.iter().any(|c| c == must), "{must} not checked: {checked:?}");
    }
    // The limit is honoured, not just accepted: 2 of 3 groups, and a cursor.
    for name in ["maxima-a", "maxima-b", "maxima-c"] {
        assert_eq!(h.post("/api/v1/groups", json!({ "name": name })).await.status, StatusCode::CREATED);
    }
    let page = h.get("/api/v1/groups?limit=2").await;
    assert_eq!(page.body["items"].as_array().map(Vec::len), Some(2), "{}", page.text);
    assert!(page.body["next_cursor"].is_string());
}

async fn openapi_reset_factors_needs_reason(h: &Harness) {
    let doc = document(h).await;
    let schema = &doc["components"]["schemas"]["ResetFactorsRequest"];
    assert!(schema["required"].as_array().is_some_and(|r| r.iter().any(|f| f == "reason")), "{schema}");
    let op = &doc["paths"]["/api/v1/users/{id}/factors/reset"]["post"];
    assert_eq!(
        op["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ResetFactorsRequest"
    );

    let uid = id(&h.create_user("reset.reason").await);
    let path = format!("/api/v1/users/{uid}/factors/reset");
    let before = h.tree_size().await;
    for body in [None, Some(json!({})), Some(json!({ "reason": "   " })), Some(json!({ "reason": null }))] {
        let r = h.call(Method::POST, &path, Some(&h.admin), body.clone()).await;
        let p = r.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
        assert_eq!(p["errors"][0]["field"], "reason", "{body:?}: {}", r.text);
    }
    let r = h.post(&path, json!({ "reason": "r".repeat(1025) })).await;
    assert_eq!(r.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation")["errors"][0]["field"], "reason");
    assert_eq!(h.tree_size().await, before, "refused resets wrote nothing");
    let ok = h.post(&path, json!({ "reason": "lost phone; identity checked in person" })).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    let ev = h.events(&format!("target=user:{uid}&action=factor.reset")).await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["reason"], "lost phone; identity checked in person");
}

async fn openapi_audit_details_nullable(h: &Harness) {
    let doc = document(h).await;
    let schemas = &doc["components"]["schemas"];
    let details = &schemas["AuditDraft"]["properties"]["details"];
    let text = details.to_string();
    assert!(text.contains("\"null\""), "details may be null: {details}");
    assert!(schemas["AuditDraft"]["required"].as_array().is_some_and(|r| r.iter().any(|f| f == "details")));
}

on_both_stores!(
    openapi_independent_validator,
    openapi_delete_versions,
    openapi_maxima_enforced,
    openapi_reset_factors_needs_reason,
    openapi_audit_details_nullable,
);
