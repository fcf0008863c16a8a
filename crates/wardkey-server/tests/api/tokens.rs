//! API tokens over HTTP on both stores, with a manual clock: every token names an active owner
//! (refused with a field-named problem otherwise, nothing written); the default and maximum
//! lifetimes; a leaver's and a disabled service account's tokens stop authenticating before
//! the disabling call returns; the bootstrap token's two ends (24 hours, or the first named
//! admin token); and step-up for an admin-scoped token created from a session.

use super::authn::{session_cookie, totp_code};
use super::*;

impl Harness {
    /// `POST /api/v1/tokens` as the harness admin.
    async fn new_token(&self, name: &str, scopes: &[&str], owner: Value) -> Resp {
        self.post("/api/v1/tokens", json!({ "name": name, "scopes": scopes, "owner": owner })).await
    }

    async fn token_count(&self) -> usize {
        let r = self.get("/api/v1/tokens?limit=500").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body["items"].as_array().map(Vec::len).unwrap_or_default()
    }

    /// Status of `GET /api/v1/resource-types` with `token`: 200 while it works, 401 once it does not.
    async fn works(&self, token: &str) -> StatusCode {
        self.call(Method::GET, "/api/v1/resource-types", Some(token), None).await.status
    }

    /// A service account owned by a fresh active person.
    async fn service_account(&self, name: &str) -> Value {
        let owner = self.person(&format!("{name}.owner")).await;
        let sa = self.post("/api/v1/service-accounts", json!({ "name": name, "owner_id": owner })).await;
        assert_eq!(sa.status, StatusCode::CREATED, "{}", sa.text);
        sa.body
    }
}

fn user(id: &str) -> Value {
    json!({ "type": "user", "id": id })
}

fn secret(r: &Resp) -> String {
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body["secret"].as_str().expect("secret").to_owned()
}

fn field_refused(r: &Resp, field: &str) {
    let p = r.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    assert!(p["errors"].as_array().is_some_and(|e| e.iter().any(|e| e["field"] == field)), "{p}");
}

/// An owner that does not exist, is not active, or is Wardkey itself is refused naming `owner`,
/// and nothing is written; an expiry beyond the maximum is refused naming `expires_at`.
async fn token_owner_is_required_and_checked(h: &Harness) {
    let before = h.token_count().await;
    let size = h.tree_size().await;
    let missing = h.post("/api/v1/tokens", json!({ "name": "no-owner", "scopes": ["pdp"] })).await;
    let p = missing.problem(StatusCode::BAD_REQUEST, "malformed-request");
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("owner")), "{p}");
    field_refused(&h.new_token("ghost", &["pdp"], user(&uuid::Uuid::now_v7().to_string())).await, "owner");
    let sa_ghost = json!({ "type": "service_account", "id": uuid::Uuid::now_v7() });
    field_refused(&h.new_token("ghost", &["pdp"], sa_ghost).await, "owner");
    let pending = id(&h.create_user("not.yet").await);
    field_refused(&h.new_token("early", &["pdp"], user(&pending)).await, "owner");
    let system = json!({ "type": "system", "id": "operator" });
    field_refused(&h.new_token("sys", &["admin"], system).await, "owner");
    let system = json!({ "type": "system", "id": "bootstrap" });
    field_refused(&h.new_token("sys", &["admin"], system).await, "owner");
    assert_eq!(h.token_count().await, before, "a refused token leaves nothing behind");
    // One event for the user created above, none for the refusals (api.read events are off the
    // tree until synced; the count includes them, so compare writes by action instead).
    assert!(h.events("action=api_token.create").await.iter().all(|e| e["details"]["name"] != "ghost"));
    assert!(h.tree_size().await > size);

    // An active person owns a token; without `expires_at` it lives the default 90 days.
    let uid = h.person("token.owner").await;
    let t = h.new_token("laptop-cli", &["pdp"], user(&uid)).await;
    secret(&t);
    assert_eq!(t.body["token"]["owner"], user(&uid));
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(t.body["token"]["expires_at"].clone()).expect("expires_at set");
    assert_eq!(expires, h.now_utc() + chrono::Duration::days(90));
    // Longer when asked, within the maximum (365 days by default).
    let later = h.now_utc() + chrono::Duration::days(200);
    let t = h
        .post("/api/v1/tokens", json!({ "name": "long", "scopes": ["pdp"], "owner": user(&uid), "expires_at": later }))
        .await;
    secret(&t);
    let too_late = h.now_utc() + chrono::Duration::days(366);
    let r = h
        .post(
            "/api/v1/tokens",
            json!({ "name": "forever", "scopes": ["pdp"], "owner": user(&uid), "expires_at": too_late }),
        )
        .await;
    field_refused(&r, "expires_at");
    // The owner filter lists a person's tokens.
    let mine = h.get(&format!("/api/v1/tokens?owner=user:{uid}")).await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.text);
    let names: Vec<&str> = mine.body["items"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"laptop-cli") && names.contains(&"long"));
    let r = h.get("/api/v1/tokens?owner=someone").await;
    field_refused(&r, "owner");
    // The creation event names the owner.
    let created = h.events("action=api_token.create").await;
    assert!(created.iter().any(|e| e["details"]["owner"] == format!("user:{uid}")), "{created:?}");
}

/// Disabling a person (the leaver path) revokes the tokens they own before the call returns,
/// with one `api_token.revoke` event each; someone else's token lives on.
async fn leaver_tokens_stop_before_disable_returns(h: &Harness) {
    let leaver = h.person("leaving.soon").await;
    let stayer = h.person("staying.on").await;
    let a = secret(&h.new_token("leaver-admin", &["admin"], user(&leaver)).await);
    let b = secret(&h.new_token("leaver-audit", &["audit:read"], user(&leaver)).await);
    let c = secret(&h.new_token("stayer-admin", &["admin"], user(&stayer)).await);
    // In use (and so in the token cache) right before the disable.
    assert_eq!(h.works(&a).await, StatusCode::OK);
    assert_eq!(h.works(&c).await, StatusCode::OK);
    let u = h.get(&format!("/api/v1/users/{leaver}")).await;
    let d = h
        .post(
            &format!("/api/v1/users/{leaver}/status"),
            json!({ "version": u.body["version"], "status": "disabled", "reason": "left the organisation" }),
        )
        .await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.text);
    assert_eq!(h.works(&a).await, StatusCode::UNAUTHORIZED, "the leaver's token is dead when disable returns");
    let r = h.call(Method::GET, "/api/v1/audit/events?limit=1", Some(&b), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(h.works(&c).await, StatusCode::OK, "another person's token is untouched");
    let revoked = h.events("action=api_token.revoke").await;
    let mine: Vec<_> = revoked.iter().filter(|e| e["details"]["owner"] == format!("user:{leaver}")).collect();
    assert_eq!(mine.len(), 2, "{revoked:?}");
    assert!(mine.iter().all(|e| e["reason"].is_string()), "{mine:?}");
    let listed = h.get(&format!("/api/v1/tokens?owner=user:{leaver}")).await;
    assert!(listed.body["items"].as_array().unwrap().iter().all(|t| t["revoked_at"].is_string()), "{}", listed.text);
    // A disabled person cannot be given a new token.
    field_refused(&h.new_token("again", &["pdp"], user(&leaver)).await, "owner");
}

/// A service account's tokens die when it is disabled, and when it is deleted.
async fn service_account_tokens_die_with_it(h: &Harness) {
    let sa = h.service_account("lab-feed").await;
    let sa_id = id(&sa);
    let owner = json!({ "type": "service_account", "id": sa_id });
    let t = secret(&h.new_token("lab-feed-admin", &["admin"], owner.clone()).await);
    assert_eq!(h.works(&t).await, StatusCode::OK);
    let d = h
        .patch(&format!("/api/v1/service-accounts/{sa_id}"), json!({ "version": sa["version"], "status": "disabled" }))
        .await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.text);
    assert_eq!(h.works(&t).await, StatusCode::UNAUTHORIZED, "dead when the disable returns");
    let ev = h.events("action=api_token.revoke").await;
    assert!(
        ev.iter().any(|e| e["details"]["owner"] == format!("service_account:{sa_id}")
            && e["reason"] == "service account disabled"),
        "{ev:?}"
    );
    field_refused(&h.new_token("again", &["pdp"], owner).await, "owner");

    let sa2 = h.service_account("pharmacy-feed").await;
    let sa2_id = id(&sa2);
    let t2 = secret(&h.new_token("feed", &["pdp"], json!({ "type": "service_account", "id": sa2_id })).await);
    let pdp_probe = json!({ "subject": { "type": "user", "id": "x" }, "action": { "name": "read" }, "resource": { "type": "t", "id": "r" } });
    let ok = h.call(Method::POST, "/access/v1/evaluation", Some(&t2), Some(pdp_probe.clone())).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    let del = h.delete(&format!("/api/v1/service-accounts/{sa2_id}?version={}", sa2["version"])).await;
    assert!(del.status.is_success(), "{}", del.text);
    let gone = h.call(Method::POST, "/access/v1/evaluation", Some(&t2), Some(pdp_probe)).await;
    assert_eq!(gone.status, StatusCode::UNAUTHORIZED, "{}", gone.text);
}

/// The bootstrap token works for 24 hours after first start, then not; other tokens go on.
async fn bootstrap_token_expires_after_24_hours(h: &Harness) {
    assert_eq!(h.works(&h.bootstrap).await, StatusCode::OK);
    let listed = h.get("/api/v1/tokens?owner=system:bootstrap").await;
    let items = listed.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", listed.text);
    assert_eq!(items[0]["owner"], json!({ "type": "system", "id": "bootstrap" }));
    h.advance(24 * 3600 - 60);
    assert_eq!(h.works(&h.bootstrap).await, StatusCode::OK, "still valid a minute before 24 hours");
    h.advance(60);
    assert_eq!(h.works(&h.bootstrap).await, StatusCode::UNAUTHORIZED, "expired at 24 hours");
    assert_eq!(h.works(&h.admin).await, StatusCode::OK);
    let failed = h.events("action=auth.failed").await;
    assert!(failed.iter().any(|e| e["reason"] == "expired token"), "{failed:?}");
}

/// A named admin token (owned by a person or service account, created by anyone) ends the
/// bootstrap token at once; a named token without the admin scope does not, nor does an
/// operator's token that no person owns.
async fn bootstrap_token_ends_with_first_named_admin_token(h: &Harness) {
    let uid = h.person("first.admin").await;
    secret(&h.new_token("pdp-only", &["pdp"], user(&uid)).await);
    h.operator_token(json!({ "name": "host-script", "scopes": ["admin"] })).await;
    assert_eq!(h.works(&h.bootstrap).await, StatusCode::OK, "no named admin token yet");
    // Created with the bootstrap token itself, as a new installation would.
    let r = h.call(
        Method::POST,
        "/api/v1/tokens",
        Some(&h.bootstrap),
        Some(json!({ "name": "first-admin", "scopes": ["admin"], "owner": user(&uid) })),
    );
    let named = secret(&r.await);
    assert_eq!(h.works(&h.bootstrap).await, StatusCode::UNAUTHORIZED, "ended in the same transaction");
    assert_eq!(h.works(&named).await, StatusCode::OK);
    let ev = h.events("action=api_token.revoke").await;
    assert!(
        ev.iter().any(|e| e["details"]["owner"] == "system:bootstrap" && e["reason"] == "a named admin token exists"),
        "{ev:?}"
    );
    // A later start issues no new bootstrap token and finds nothing more to end.
    assert!(h.services.bootstrap().await.expect("bootstrap").is_none());
}

/// An admin-scoped token created from a signed-in session needs a second factor within the
/// step-up window; a token without the admin scope does not.
async fn admin_token_from_a_session_needs_step_up(h: &Harness) {
    let uid = h.person("token.minter").await;
    let admins = h
        .post(
            "/api/v1/roles",
            json!({ "name": "wardkey-admins", "privileged": true, "session_policy": { "scopes": ["admin"] } }),
        )
        .await;
    assert_eq!(admins.status, StatusCode::CREATED, "{}", admins.text);
    let g = h
        .post("/api/v1/grants", json!({ "subject": { "type": "user", "id": uid }, "role_id": id(&admins.body), "justification": "runs the CI pipeline's deploy tokens" }))
        .await;
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
    let (c, totp, _) = h.enrolled("token.minter").await;
    h.advance(6 * 60);
    let admin_body = json!({ "name": "minted", "scopes": ["admin"], "owner": user(&uid) });
    let before = h.token_count().await;
    let refused = h.with_cookie(Method::POST, "/api/v1/tokens", &c, Some(admin_body.clone())).await;
    refused.problem(StatusCode::FORBIDDEN, "step-up-required");
    assert_eq!(h.token_count().await, before, "nothing written");
    let pdp = h
        .with_cookie(
            Method::POST,
            "/api/v1/tokens",
            &c,
            Some(json!({ "name": "p", "scopes": ["pdp"], "owner": user(&uid) })),
        )
        .await;
    assert_eq!(pdp.status, StatusCode::CREATED, "{}", pdp.text);
    let up = h
        .with_cookie(Method::POST, "/api/v1/auth/totp", &c, Some(json!({ "code": totp_code(&totp, h.now_utc()) })))
        .await;
    assert_eq!(up.status, StatusCode::OK, "{}", up.text);
    let c2 = session_cookie(&up.headers).expect("rotated cookie");
    let made = h.with_cookie(Method::POST, "/api/v1/tokens", &c2, Some(admin_body)).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    assert_eq!(made.body["token"]["created_by"], format!("user:{uid}"));
}

impl Harness {
    fn now_utc(&self) -> chrono::DateTime<chrono::Utc> {
        wardkey_domain::Clock::now(self.clock.as_deref().expect("an authn harness"))
    }
}

authn_on_both_stores!(
    token_owner_is_required_and_checked,
    leaver_tokens_stop_before_disable_returns,
    service_account_tokens_die_with_it,
    bootstrap_token_expires_after_24_hours,
    bootstrap_token_ends_with_first_named_admin_token,
    admin_token_from_a_session_needs_step_up,
);
