#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The REST API end to end: the real server in-process on a free port, a fresh store per test
//! (SQLite in a temporary directory; PostgreSQL in a fresh database when reachable), driven
//! over HTTP with reqwest.
//!
//! PostgreSQL: `WARDKEY_TEST_PG_URL` (default postgres://postgres@127.0.0.1:5432/postgres);
//! each test creates and drops a database `wk_s_<random>`. When the server is unreachable the
//! PostgreSQL half is skipped loudly, or fails with `WARDKEY_REQUIRE_PG=1`.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use wardkey_audit::{AuditEvent, Hash, HashExt, LogSigner, LogVerifier};
use wardkey_domain::SystemClock;
use wardkey_server::{RunningServer, ServerConfig, ServerError};
use wardkey_service::{ServiceConfig, Services};
use wardkey_store::Store;
use wardkey_testkit::{say_loudly, with_database};

const ORIGIN: &str = "wardkey/test";
const SEED: [u8; 32] = [7; 32];

fn signer() -> LogSigner {
    LogSigner::from_seed(ORIGIN, SEED).expect("signer from seed")
}

enum Backing {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, db: String },
}

struct Harness {
    /// Set for scenarios that move time (sign-in, timeouts, lockout).
    clock: Option<Arc<wardkey_domain::ManualClock>>,
    server: Option<RunningServer>,
    services: Services,
    base: String,
    /// An admin token minted by the operator with the longest lifetime, so that tests which move
    /// the clock by days, or create named admin tokens (which end the bootstrap token), keep it.
    admin: String,
    /// The first-start bootstrap admin token.
    bootstrap: String,
    http: reqwest::Client,
    backing: Backing,
}

/// The harness's admin token (see [`Harness::admin`]).
async fn harness_admin(services: &Services) -> String {
    let input = wardkey_domain::NewApiToken {
        name: "test-admin".into(),
        scopes: vec![wardkey_domain::Scope::Admin],
        owner: wardkey_domain::TokenOwner::System(wardkey_domain::TokenOwner::OPERATOR.into()),
        expires_at: Some(wardkey_domain::Clock::now(services.clock().as_ref()) + services.config().tokens.max_lifetime),
    };
    services.create_token(&services.operator("test"), input).await.expect("harness admin token").value.1
}

fn test_config() -> ServerConfig {
    ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        checkpoint_interval: Duration::from_millis(200),
        checkpoint_every_events: 1000,
        max_body_bytes: 64 * 1024,
        ..ServerConfig::default()
    }
}

impl Harness {
    async fn start(store: Store, backing: Backing) -> Harness {
        store.set_signer(signer());
        let services = Services::new(store, ServiceConfig::default());
        let bootstrap = services.bootstrap().await.expect("bootstrap").expect("first start issues a token");
        let admin = harness_admin(&services).await;
        let server = wardkey_server::spawn(test_config(), services.clone()).await.expect("server starts");
        let base = server.base_url();
        let http = reqwest::Client::new();
        Harness { clock: None, server: Some(server), services, base, admin, bootstrap, http, backing }
    }

    /// A server whose clock the test moves, with authentication settings for tests (cheaper
    /// Argon2 so many sign-ins stay fast; every other setting is the default).
    async fn start_authn(store: Store, backing: Backing, clock: Arc<wardkey_domain::ManualClock>) -> Harness {
        store.set_signer(signer());
        let mut settings = wardkey_service::AuthnSettings {
            hash_params: wardkey_authn::hash::HashParams { m_cost_kib: 4096, t_cost: 1, p_cost: 1 },
            ..Default::default()
        };
        settings.passkeys.rp_origin = authn::ORIGIN.into();
        settings.passkeys.rp_id = "localhost".into();
        let key = wardkey_authn::secretbox::SecretKey::from_bytes([9; 32]);
        let services = Services::with_authn(store, ServiceConfig::default(), settings, key).expect("authn settings");
        let bootstrap = services.bootstrap().await.expect("bootstrap").expect("first start issues a token");
        let admin = harness_admin(&services).await;
        let server = wardkey_server::spawn(test_config(), services.clone()).await.expect("server starts");
        let base = server.base_url();
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        Harness { clock: Some(clock), server: Some(server), services, base, admin, bootstrap, http, backing }
    }

    async fn authn_sqlite() -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(wardkey_domain::ManualClock::new(authn::start_time()));
        let store = Store::open_sqlite_dir(dir.path(), clock.clone()).await.expect("sqlite store");
        Harness::start_authn(store, Backing::Sqlite(dir), clock).await
    }

    async fn authn_postgres() -> Option<Harness> {
        let (url, admin_url, db) = fresh_pg_database().await?;
        let clock = Arc::new(wardkey_domain::ManualClock::new(authn::start_time()));
        let store = Store::open(&url, clock.clone()).await.expect("postgres store");
        Some(Harness::start_authn(store, Backing::Postgres { admin_url, db }, clock).await)
    }

    async fn sqlite() -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_sqlite_dir(dir.path(), Arc::new(SystemClock)).await.expect("sqlite store");
        Harness::start(store, Backing::Sqlite(dir)).await
    }

    /// None (after a loud notice) when PostgreSQL is unreachable and not required.
    async fn postgres() -> Option<Harness> {
        let (url, admin_url, db) = fresh_pg_database().await?;
        let store = Store::open(&url, Arc::new(SystemClock)).await.expect("postgres store");
        Some(Harness::start(store, Backing::Postgres { admin_url, db }).await)
    }

    async fn finish(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("clean shutdown");
        }
        if let Backing::Postgres { admin_url, db } = &self.backing
            && let Ok(mut conn) = sqlx::postgres::PgConnection::connect(admin_url).await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")))
                .execute(&mut conn)
                .await;
            let _ = conn.close().await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Resp {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Resp::read(req.send().await.expect("request sent")).await
    }

    async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, Some(&self.admin), None).await
    }

    async fn post(&self, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(&self.admin), Some(body)).await
    }

    async fn patch(&self, path: &str, body: Value) -> Resp {
        self.call(Method::PATCH, path, Some(&self.admin), Some(body)).await
    }

    async fn delete(&self, path: &str) -> Resp {
        self.call(Method::DELETE, path, Some(&self.admin), None).await
    }

    async fn tree_size(&self) -> u64 {
        // `api.read` events are queued (written within 100 ms): count them once they are.
        self.services.sync_audit_queue().await;
        self.services
            .store_unchecked_for_operator_and_tests()
            .read()
            .await
            .expect("read")
            .audit_tree_size()
            .await
            .expect("tree size")
    }

    /// Audit events matching a query string (as admin).
    async fn events(&self, query: &str) -> Vec<Value> {
        self.services.sync_audit_queue().await;
        let r = self.get(&format!("/api/v1/audit/events?{query}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body["items"].as_array().cloned().unwrap_or_default()
    }

    /// A token minted in-process by the local operator (owner `system:operator`), answered as
    /// `POST /api/v1/tokens` would (`{ "token", "secret" }`): for tests that need a credential with
    /// some scopes and no person to own it (`tests/api/tokens.rs` covers owners over HTTP).
    async fn operator_token(&self, body: Value) -> Resp {
        let input = wardkey_domain::NewApiToken {
            name: body["name"].as_str().expect("name").to_owned(),
            scopes: serde_json::from_value(body["scopes"].clone()).expect("scopes"),
            owner: wardkey_domain::TokenOwner::System(wardkey_domain::TokenOwner::OPERATOR.into()),
            expires_at: None,
        };
        let op = self.services.operator("test");
        let (token, secret) = self.services.create_token(&op, input).await.expect("operator token").value;
        let body = json!({ "token": token, "secret": secret });
        Resp { status: StatusCode::CREATED, headers: reqwest::header::HeaderMap::new(), text: body.to_string(), body }
    }

    async fn create_user(&self, username: &str) -> Value {
        let r = self.post("/api/v1/users", json!({ "username": username })).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body
    }

    async fn create_role(&self, name: &str) -> Value {
        let r = self.post("/api/v1/roles", json!({ "name": name })).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body
    }
}

/// A new empty PostgreSQL database: (its URL, the admin URL, its name). None (after a loud
/// notice) when PostgreSQL is unreachable and not required.
async fn fresh_pg_database() -> Option<(String, String, String)> {
    let db = wardkey_testkit::PgDatabase::create("wk_s").await?;
    Some((db.url, db.base, db.name))
}

struct Resp {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
    text: String,
}

impl Resp {
    async fn read(r: reqwest::Response) -> Resp {
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp { status, headers, body, text }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a problem document of the given status and type slug.
    fn problem(&self, status: StatusCode, slug: &str) -> &Value {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "{}", self.text);
        assert_eq!(self.body["type"], format!("https://wardkey.dev/problems/{slug}"), "{}", self.text);
        assert_eq!(self.body["status"], status.as_u16(), "{}", self.text);
        assert!(self.body["title"].is_string() && self.body["detail"].is_string(), "{}", self.text);
        &self.body
    }
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_owned()
}

fn hash(v: &Value) -> Hash {
    Hash::from_hex(v.as_str().expect("hex string")).expect("hash")
}

// ------------------------------------------------------------------------------------------
// Scenarios, each run against SQLite and PostgreSQL.

/// The five-minute walk-through, ending with a verified inclusion proof of the grant event.
async fn walkthrough(h: &Harness) {
    let rt = h
        .post(
            "/api/v1/resource-types",
            json!({ "name": "dataset", "actions": ["read", "write", "export"], "phi": true }),
        )
        .await;
    assert_eq!(rt.status, StatusCode::CREATED, "{}", rt.text);
    assert_eq!(rt.header("etag"), Some("\"1\""));
    assert!(rt.header("x-wardkey-revision").is_some_and(|r| r.parse::<u64>().is_ok()));
    assert_eq!(rt.header("location"), Some(format!("/api/v1/resource-types/{}", id(&rt.body)).as_str()));

    let res = h.post("/api/v1/resources", json!({ "type_id": id(&rt.body), "name": "oncology-records" })).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    let role = h
        .post(
            "/api/v1/roles",
            json!({ "name": "clinician", "permissions": [{ "resource_type": "dataset", "actions": ["read"] }] }),
        )
        .await;
    assert_eq!(role.status, StatusCode::CREATED, "{}", role.text);

    let user = h.create_user("alice").await;
    assert_eq!(user["status"], "pending_verification");
    let uid = id(&user);
    let v = h
        .post(
            &format!("/api/v1/users/{uid}/verify-identity"),
            json!({ "version": 1, "method": "in_person_government_id" }),
        )
        .await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.text);
    assert_eq!(v.header("etag"), Some("\"2\""));
    assert!(v.body["verification"]["verified_by"].as_str().is_some_and(|p| p.starts_with("token:")));
    let a = h
        .post(
            &format!("/api/v1/users/{uid}/status"),
            json!({ "version": 2, "status": "active", "reason": "onboarded" }),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["status"], "active");

    let g = h
        .post(
            "/api/v1/grants",
            json!({
                "subject": { "type": "user", "id": uid },
                "role_id": id(&role.body),
                "resource_id": id(&res.body),
                "justification": "attending physician",
            }),
        )
        .await;
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
    let gid = id(&g.body);

    let got = h.get(&format!("/api/v1/users/{uid}")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.header("etag"), Some("\"3\""));
    let grants = h.get(&format!("/api/v1/grants?subject_type=user&subject_id={uid}")).await;
    assert_eq!(grants.status, StatusCode::OK, "{}", grants.text);
    assert_eq!(grants.body["items"].as_array().map(Vec::len), Some(1));
    assert!(grants.body["next_cursor"].is_null());

    // The grant's event is in the log...
    let events = h.events(&format!("action=grant.create&target=grant:{gid}")).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let index = events[0]["index"].as_u64().expect("index");
    assert_eq!(events[0]["outcome"], "success");

    // ...and the background checkpointer signs a tree that contains it.
    let mut checkpoint = Value::Null;
    for _ in 0..100 {
        let cp = h.get("/api/v1/audit/checkpoint").await;
        if cp.status == StatusCode::OK && cp.body["size"].as_u64().is_some_and(|s| s > index) {
            checkpoint = cp.body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let size = checkpoint["size"].as_u64().expect("a checkpoint covering the grant event");
    let opened = LogVerifier::from_signer(&signer())
        .open_checkpoint(checkpoint["note"].as_str().expect("note"))
        .expect("signed note verifies");
    assert_eq!(opened.size, size);
    assert_eq!(opened.root, hash(&checkpoint["root"]));

    let p = h.get(&format!("/api/v1/audit/proof/inclusion?index={index}&size={size}")).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    assert_eq!(p.body["root"], checkpoint["root"]);
    let event: AuditEvent = serde_json::from_value(p.body["event"].clone()).expect("event parses");
    assert_eq!(event.draft.action, "grant.create");
    assert_eq!(event.leaf_hash(), hash(&p.body["leaf_hash"]), "leaf hash recomputed from the event");
    let proof: Vec<Hash> = p.body["proof"].as_array().expect("proof").iter().map(hash).collect();
    wardkey_audit::verify_inclusion(index, size, event.leaf_hash(), hash(&p.body["root"]), &proof)
        .expect("inclusion proof verifies");

    let c = h.get(&format!("/api/v1/audit/proof/consistency?from=1&to={size}")).await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.text);
    let cproof: Vec<Hash> = c.body["proof"].as_array().expect("proof").iter().map(hash).collect();
    wardkey_audit::verify_consistency(1, hash(&c.body["from_root"]), size, hash(&c.body["to_root"]), &cproof)
        .expect("consistency proof verifies");

    // Reads of directory data are themselves audited.
    assert!(!h.events(&format!("action=api.read&target=user:{uid}")).await.is_empty());

    // Revoking answers with the revoked grant.
    let r = h.delete(&format!("/api/v1/grants/{gid}?version=1&reason=moved%20team")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.body["revoked_at"].is_string());
    assert!(r.body["revoked_by"].as_str().is_some_and(|p| p.starts_with("token:")));
}

async fn authentication(h: &Harness) {
    let before = h.tree_size().await;
    let r = h.call(Method::GET, "/api/v1/users", None, None).await;
    r.problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    assert!(r.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")));
    assert_eq!(h.tree_size().await, before, "a request without credentials writes nothing");

    let r = h.call(Method::GET, "/api/v1/users", Some("wkt_0123456789abcdef0123456789abcdef_bogus"), None).await;
    r.problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    assert!(r.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer") && v.contains("invalid_token")));
    assert_eq!(h.tree_size().await, before + 1, "a failed authentication is audited");

    let r = h
        .http
        .get(h.url("/api/v1/users"))
        .header("authorization", "Basic YWxpY2U6c2VjcmV0")
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // A revoked token stops working.
    let t = h.operator_token(json!({ "name": "ephemeral", "scopes": ["admin"] })).await;
    assert_eq!(t.status, StatusCode::CREATED, "{}", t.text);
    let secret = t.body["secret"].as_str().expect("secret").to_owned();
    assert_eq!(h.call(Method::GET, "/api/v1/groups", Some(&secret), None).await.status, StatusCode::OK);
    let d = h.delete(&format!("/api/v1/tokens/{}", id(&t.body["token"]))).await;
    assert_eq!(d.status, StatusCode::NO_CONTENT, "{}", d.text);
    h.call(Method::GET, "/api/v1/groups", Some(&secret), None)
        .await
        .problem(StatusCode::UNAUTHORIZED, "unauthenticated");
}

async fn scopes(h: &Harness) {
    let t = h.operator_token(json!({ "name": "pdp-client", "scopes": ["pdp"] })).await;
    assert_eq!(t.status, StatusCode::CREATED, "{}", t.text);
    assert!(t.body["token"]["scopes"] == json!(["pdp"]));
    let pdp = t.body["secret"].as_str().expect("secret").to_owned();
    let pdp_id = id(&t.body["token"]);
    let listed = h.get("/api/v1/tokens").await;
    assert!(!listed.text.contains(&pdp), "secrets are never listed");

    let r = h.call(Method::GET, "/api/v1/users", Some(&pdp), None).await;
    let body = r.problem(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(body["needed_scope"], "admin");
    let denied = h.events(&format!("action=auth.denied&actor=token:{pdp_id}")).await;
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["outcome"], "denied");
    assert_eq!(denied[0]["details"]["attempted"], "GET /api/v1/users");

    // audit:read reaches the log but not the directory.
    let t = h.operator_token(json!({ "name": "auditor", "scopes": ["audit:read"] })).await;
    let auditor = t.body["secret"].as_str().expect("secret").to_owned();
    assert_eq!(h.call(Method::GET, "/api/v1/audit/events?limit=1", Some(&auditor), None).await.status, StatusCode::OK);
    h.call(Method::GET, "/api/v1/groups", Some(&auditor), None).await.problem(StatusCode::FORBIDDEN, "forbidden");
    h.call(Method::GET, "/api/v1/audit/events", Some(&pdp), None).await.problem(StatusCode::FORBIDDEN, "forbidden");
}

async fn malformed_input(h: &Harness) {
    let send_raw = |body: &'static str, ct: &'static str| {
        h.http.post(h.url("/api/v1/users")).bearer_auth(&h.admin).header("content-type", ct).body(body).send()
    };
    let r = Resp::read(send_raw("{\"username\": ", "application/json").await.expect("sent")).await;
    let p = r.problem(StatusCode::BAD_REQUEST, "malformed-request");
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("JSON")), "{p}");

    let r = h.post("/api/v1/users", json!({ "username": "bob", "foo": 1 })).await;
    let p = r.problem(StatusCode::BAD_REQUEST, "malformed-request");
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("unknown field `foo`")), "{p}");

    let r = h.post("/api/v1/users", json!({ "username": 5 })).await;
    let p = r.problem(StatusCode::BAD_REQUEST, "malformed-request");
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("username")), "{p}");

    let r = h.post("/api/v1/users", json!({ "username": "x", "hr": { "department": 3 } })).await;
    let p = r.problem(StatusCode::BAD_REQUEST, "malformed-request");
    assert_eq!(p["field"], "hr.department", "{p}");

    let r = h.post("/api/v1/users", json!({ "username": "a".repeat(200) })).await;
    let p = r.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    assert_eq!(p["errors"][0]["field"], "username", "{p}");

    let r = Resp::read(send_raw("username=bob", "application/x-www-form-urlencoded").await.expect("sent")).await;
    r.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type");

    let big = format!("{{\"username\": \"{}\"}}", "b".repeat(128 * 1024));
    let r = h
        .http
        .post(h.url("/api/v1/users"))
        .bearer_auth(&h.admin)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await;
    let r = Resp::read(r.expect("sent")).await;
    r.problem(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large");

    // Without Content-Length (chunked), the limit applies while reading.
    let raw = chunked_post(h, "/api/v1/users", &vec![b'b'; 128 * 1024]).await;
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    assert!(raw.contains("payload-too-large"), "{raw}");

    h.get("/api/v1/nowhere").await.problem(StatusCode::NOT_FOUND, "not-found");
    h.call(Method::PUT, "/api/v1/users", Some(&h.admin), Some(json!({})))
        .await
        .problem(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed");
    h.get("/api/v1/users/not-a-uuid").await.problem(StatusCode::BAD_REQUEST, "malformed-request");
    h.get(&format!("/api/v1/users/{}", uuid::Uuid::now_v7())).await.problem(StatusCode::NOT_FOUND, "not-found");
    h.get("/api/v1/users?limit=lots").await.problem(StatusCode::BAD_REQUEST, "malformed-request");
    h.get("/api/v1/users?stauts=active").await.problem(StatusCode::BAD_REQUEST, "malformed-request");
}

/// A raw HTTP/1.1 POST with a chunked body; returns the whole response text.
async fn chunked_post(h: &Harness, path: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = h.base.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        h.admin
    );
    let _ = s.write_all(head.as_bytes()).await;
    for chunk in body.chunks(16 * 1024) {
        let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
        frame.extend_from_slice(chunk);
        frame.extend_from_slice(b"\r\n");
        if s.write_all(&frame).await.is_err() {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

async fn lifecycle(h: &Harness) {
    let u = h.create_user("carol").await;
    let uid = id(&u);
    let r = h.post(&format!("/api/v1/users/{uid}/status"), json!({ "version": 1, "status": "suspended" })).await;
    let p = r.problem(StatusCode::CONFLICT, "illegal-transition");
    assert_eq!(p["from"], "pending_verification");
    assert_eq!(p["to"], "suspended");
    let r = h.post(&format!("/api/v1/users/{uid}/status"), json!({ "version": 1, "status": "active" })).await;
    r.problem(StatusCode::CONFLICT, "conflict");
    let got = h.get(&format!("/api/v1/users/{uid}")).await;
    assert_eq!(got.body["status"], "pending_verification");
    assert_eq!(got.body["version"], 1);
}

async fn dangling_reference(h: &Harness) {
    let u = h.create_user("dave").await;
    let before = h.tree_size().await;
    let r = h
        .post("/api/v1/grants", json!({ "justification": "test access", "subject": { "type": "user", "id": id(&u) }, "role_id": uuid::Uuid::now_v7() }))
        .await;
    let p = r.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    assert_eq!(p["errors"][0]["field"], "role_id", "{p}");
    assert_eq!(h.tree_size().await, before, "nothing written");
    let grants = h.get(&format!("/api/v1/grants?subject_type=user&subject_id={}&include_inactive=true", id(&u))).await;
    assert_eq!(grants.body["items"], json!([]));
}

async fn duplicates(h: &Harness) {
    h.create_user("erin").await;
    let r = h.post("/api/v1/users", json!({ "username": "erin" })).await;
    let p = r.problem(StatusCode::CONFLICT, "duplicate");
    assert_eq!(p["field"], "username");
}

async fn versions(h: &Harness) {
    let u = h.create_user("frank").await;
    let path = format!("/api/v1/users/{}", id(&u));
    let r = h.patch(&path, json!({ "version": 1, "display_name": "Frank A" })).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.header("etag"), Some("\"2\""));
    assert!(r.header("x-wardkey-revision").is_some());

    let before = h.tree_size().await;
    let r = h.patch(&path, json!({ "version": 1, "display_name": "Frank B" })).await;
    let p = r.problem(StatusCode::CONFLICT, "version-conflict");
    assert_eq!(p["expected_version"], 1);
    assert_eq!(p["current_version"], 2);

    let r = h
        .http
        .patch(h.url(&path))
        .bearer_auth(&h.admin)
        .header("if-match", "\"1\"")
        .json(&json!({ "version": 1, "display_name": "Frank C" }))
        .send()
        .await
        .expect("sent");
    let r = Resp::read(r).await;
    let p = r.problem(StatusCode::PRECONDITION_FAILED, "precondition-failed");
    assert_eq!(p["current_version"], 2);

    let r = Resp::read(
        h.http.delete(h.url(&path)).bearer_auth(&h.admin).header("if-match", "\"1\"").send().await.expect("sent"),
    )
    .await;
    r.problem(StatusCode::PRECONDITION_FAILED, "precondition-failed");
    h.delete(&format!("{path}?version=1")).await.problem(StatusCode::CONFLICT, "version-conflict");
    h.delete(&path).await.problem(StatusCode::BAD_REQUEST, "malformed-request");

    let got = h.get(&path).await;
    assert_eq!(got.body["display_name"], "Frank A", "nothing changed");
    assert_eq!(got.body["version"], 2);
    // The GET above recorded one api.read; the refused writes recorded nothing.
    assert_eq!(h.tree_size().await, before + 1);

    let r = Resp::read(
        h.http.delete(h.url(&path)).bearer_auth(&h.admin).header("if-match", "\"2\"").send().await.expect("sent"),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert!(r.header("x-wardkey-revision").is_some());
    h.get(&path).await.problem(StatusCode::NOT_FOUND, "not-found");
}

async fn separation_of_duties(h: &Harness) {
    let requester = h.create_role("payments-requester").await;
    let approver = h.create_role("payments-approver").await;
    let rule = h
        .post(
            "/api/v1/sod-rules",
            json!({
                "name": "request-vs-approve",
                "left": { "kind": "role", "role_id": id(&requester) },
                "right": { "kind": "role", "role_id": id(&approver) },
            }),
        )
        .await;
    assert_eq!(rule.status, StatusCode::CREATED, "{}", rule.text);
    let u = h.create_user("grace").await;
    let subject = json!({ "type": "user", "id": id(&u) });
    let g = h
        .post(
            "/api/v1/grants",
            json!({ "justification": "test access", "subject": subject, "role_id": id(&requester) }),
        )
        .await;
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
    let r = h
        .post("/api/v1/grants", json!({ "justification": "test access", "subject": subject, "role_id": id(&approver) }))
        .await;
    let p = r.problem(StatusCode::CONFLICT, "sod-violation");
    assert_eq!(p["rule_name"], "request-vs-approve");
    assert_eq!(p["rule_id"], id(&rule.body));

    // The same rule guards group membership: grace may not join a group holding the approver role.
    let group = h.post("/api/v1/groups", json!({ "name": "approvers" })).await;
    assert_eq!(group.status, StatusCode::CREATED, "{}", group.text);
    let gid = id(&group.body);
    let gg =
        h.post("/api/v1/grants", json!({ "justification": "test access", "subject": { "type": "group", "id": gid }, "role_id": id(&approver) })).await;
    assert_eq!(gg.status, StatusCode::CREATED, "{}", gg.text);
    let before = h.tree_size().await;
    let m = h.post(&format!("/api/v1/groups/{gid}/members"), json!({ "type": "user", "id": id(&u) })).await;
    m.problem(StatusCode::CONFLICT, "sod-violation");
    assert_eq!(h.tree_size().await, before, "a refused membership writes nothing");

    // A role that a rule names cannot be deleted out from under the rule.
    let v = approver["version"].as_i64().unwrap_or(1);
    let del = h.delete(&format!("/api/v1/roles/{}?version={v}", id(&approver))).await;
    let p = del.problem(StatusCode::CONFLICT, "conflict");
    assert!(p["detail"].as_str().unwrap_or_default().contains("request-vs-approve"), "{p}");

    // Permission-based rule: editing a role someone already holds may not complete a conflict.
    let t = h.post("/api/v1/resource-types", json!({ "name": "payment", "actions": ["request", "approve"] })).await;
    assert_eq!(t.status, StatusCode::CREATED, "{}", t.text);
    let rule = h
        .post(
            "/api/v1/sod-rules",
            json!({
                "name": "no-self-payment",
                "left": { "kind": "permission", "resource_type": "payment", "action": "request" },
                "right": { "kind": "permission", "resource_type": "payment", "action": "approve" },
            }),
        )
        .await;
    assert_eq!(rule.status, StatusCode::CREATED, "{}", rule.text);
    let clerk = h
        .post(
            "/api/v1/roles",
            json!({ "name": "clerk", "permissions": [{ "resource_type": "payment", "actions": ["request"] }] }),
        )
        .await;
    let helper = h.create_role("helper").await;
    let heidi = h.create_user("heidi").await;
    for role in [&clerk.body, &helper] {
        let g = h
            .post("/api/v1/grants", json!({ "justification": "test access", "subject": { "type": "user", "id": id(&heidi) }, "role_id": id(role) }))
            .await;
        assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
    }
    let before = h.tree_size().await;
    let edit = h
        .patch(
            &format!("/api/v1/roles/{}", id(&helper)),
            json!({ "version": helper["version"], "permissions": [{ "resource_type": "payment", "actions": ["approve"] }] }),
        )
        .await;
    let p = edit.problem(StatusCode::CONFLICT, "sod-violation");
    assert_eq!(p["rule_name"], "no-self-payment");
    assert_eq!(h.tree_size().await, before, "the refused edit wrote nothing");
    let still = h.get(&format!("/api/v1/roles/{}", id(&helper))).await;
    assert_eq!(still.body["permissions"], json!([]));
}

async fn request_ids(h: &Harness) {
    let r = h
        .http
        .post(h.url("/api/v1/users"))
        .bearer_auth(&h.admin)
        .header("x-request-id", "test-req-123")
        .json(&json!({ "username": "heidi" }))
        .send()
        .await
        .expect("sent");
    let r = Resp::read(r).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.header("x-request-id"), Some("test-req-123"));
    let events = h.events(&format!("action=user.create&target=user:{}", id(&r.body))).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["request_id"], "test-req-123");
    assert_eq!(events[0]["source_ip"], "127.0.0.1");

    // An unusable id is replaced by a fresh UUIDv7.
    let long = "x".repeat(129);
    let r = h.http.get(h.url("/healthz")).header("x-request-id", &long).send().await.expect("sent");
    let echoed = r.headers().get("x-request-id").and_then(|v| v.to_str().ok()).expect("request id").to_owned();
    assert_ne!(echoed, long);
    assert!(uuid::Uuid::parse_str(&echoed).is_ok_and(|u| u.get_version_num() == 7), "{echoed}");
}

async fn listing(h: &Harness) {
    for name in ["ward-a", "ward-b", "ward-c"] {
        let r = h.post("/api/v1/groups", json!({ "name": name })).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let first = h.get("/api/v1/groups?limit=2").await;
    assert_eq!(first.body["items"].as_array().map(Vec::len), Some(2), "{}", first.text);
    let cursor = first.body["next_cursor"].as_str().expect("more pages").to_owned();
    let second = h.get(&format!("/api/v1/groups?limit=2&after={cursor}")).await;
    assert_eq!(second.body["items"].as_array().map(Vec::len), Some(1), "{}", second.text);
    assert!(second.body["next_cursor"].is_null());

    // Membership round trip.
    let gid = id(&first.body["items"][0]);
    let u = h.create_user("ivan").await;
    let add = h.post(&format!("/api/v1/groups/{gid}/members"), json!({ "type": "user", "id": id(&u) })).await;
    assert_eq!(add.status, StatusCode::CREATED, "{}", add.text);
    assert_eq!(add.body["added"], true);
    let again = h.post(&format!("/api/v1/groups/{gid}/members"), json!({ "type": "user", "id": id(&u) })).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    let members = h.get(&format!("/api/v1/groups/{gid}/members")).await;
    assert_eq!(members.body["items"], json!([{ "type": "user", "id": id(&u) }]));
    let rm = h.delete(&format!("/api/v1/groups/{gid}/members/user/{}", id(&u))).await;
    assert_eq!(rm.status, StatusCode::NO_CONTENT, "{}", rm.text);
    h.delete(&format!("/api/v1/groups/{gid}/members/user/{}", id(&u)))
        .await
        .problem(StatusCode::NOT_FOUND, "not-found");
    h.delete(&format!("/api/v1/groups/{gid}/members/robot/{}", id(&u)))
        .await
        .problem(StatusCode::BAD_REQUEST, "malformed-request");
}

async fn operations(h: &Harness) {
    let r = h.http.get(h.url("/api/v1/openapi.json")).send().await.expect("sent");
    assert_eq!(r.status(), StatusCode::OK);
    let doc: Value = r.json().await.expect("openapi parses");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    for path in ["/api/v1/users", "/api/v1/users/{id}", "/api/v1/grants", "/api/v1/audit/proof/inclusion", "/healthz"] {
        assert!(doc["paths"][path].is_object(), "openapi lists {path}");
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");

    let r = h.http.get(h.url("/healthz")).send().await.expect("sent");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.expect("body").trim(), "ok");
    let r = h.http.get(h.url("/readyz")).send().await.expect("sent");
    assert_eq!(r.status(), StatusCode::OK);

    // Queued `api.read` events written first, so the gauge and the store agree.
    let size = h.tree_size().await;
    let r = h.http.get(h.url("/metrics")).send().await.expect("sent");
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.expect("body");
    assert!(text.contains("wardkey_http_requests_total"), "{text}");
    assert!(text.contains("path=\"/healthz\""), "{text}");
    assert!(text.contains("wardkey_http_request_duration_seconds"), "{text}");
    assert!(text.contains(&format!("wardkey_audit_tree_size {size}")), "{text}");
}

/// Runs each named `async fn(&Harness)` on SQLite and on a fresh PostgreSQL database, building
/// the harness with `Harness::$sqlite()` / `Harness::$postgres()`. The one definition every test
/// module of this binary uses (through the two shorthands below).
macro_rules! on_both_stores_with {
    ($sqlite:ident, $postgres:ident; $($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = super::Harness::$sqlite().await;
                    super::$name(&h).await;
                    h.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(h) = super::Harness::$postgres().await else { return };
                    super::$name(&h).await;
                    h.finish().await;
                }
            )*
        }
    };
}

/// [`on_both_stores_with`] with the plain harness.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => { on_both_stores_with!(sqlite, postgres; $($name),*); };
}

/// [`on_both_stores_with`] with the harness whose clock the test moves and whose sign-in
/// settings are the defaults (`Harness::authn_*`).
macro_rules! authn_on_both_stores {
    ($($name:ident),* $(,)?) => { on_both_stores_with!(authn_sqlite, authn_postgres; $($name),*); };
}

on_both_stores!(
    walkthrough,
    authentication,
    scopes,
    malformed_input,
    lifecycle,
    dangling_reference,
    duplicates,
    versions,
    separation_of_duties,
    request_ids,
    listing,
    operations,
);

/// `api.read` events: queued by default (on disk within the flush interval, without anyone
/// waiting, and drained at shutdown); with `durable_reads` the read answers only once its event
/// is on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_events_are_queued_or_durable_as_configured() {
    for durable_reads in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_sqlite_dir(dir.path(), Arc::new(SystemClock)).await.expect("store");
        store.set_signer(signer());
        let services =
            Services::new(store, ServiceConfig { audit_reads: true, durable_reads, ..ServiceConfig::default() });
        let admin = services.bootstrap().await.expect("bootstrap").expect("token");
        let server = wardkey_server::spawn(test_config(), services.clone()).await.expect("server");
        let http = reqwest::Client::new();
        let count = |services: Services| async move {
            let mut r = services.store_unchecked_for_operator_and_tests().read().await.expect("read");
            r.audit_events(
                &wardkey_store::AuditQuery { action: Some("api.read".into()), ..Default::default() },
                None,
                100,
            )
            .await
            .expect("events")
            .len()
        };
        let r = http.get(format!("{}/api/v1/users", server.base_url())).bearer_auth(&admin).send().await.expect("sent");
        assert_eq!(r.status(), StatusCode::OK);
        if durable_reads {
            assert_eq!(count(services.clone()).await, 1, "on disk before the answer");
        } else {
            // Written by the flusher within its interval, nobody waiting for it.
            let deadline = std::time::Instant::now() + wardkey_service::decisions::DECISION_FLUSH * 20;
            while count(services.clone()).await == 0 {
                assert!(std::time::Instant::now() < deadline, "the queued read event was never written");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            assert_eq!(count(services.clone()).await, 1);
        }
        // Reads right before a shutdown are not lost: the queue is drained.
        for _ in 0..25 {
            let r = http
                .get(format!("{}/api/v1/groups", server.base_url()))
                .bearer_auth(&admin)
                .send()
                .await
                .expect("sent");
            assert_eq!(r.status(), StatusCode::OK);
        }
        server.shutdown().await.expect("clean shutdown");
        let store = Store::open_sqlite_dir(dir.path(), Arc::new(SystemClock)).await.expect("reopen");
        let mut r = store.read().await.expect("read");
        let events = r
            .audit_events(
                &wardkey_store::AuditQuery { action: Some("api.read".into()), ..Default::default() },
                None,
                100,
            )
            .await
            .expect("events");
        assert_eq!(events.len(), 26, "durable_reads = {durable_reads}");
        drop(r);
        store.close().await;
    }
}

#[tokio::test]
async fn non_loopback_bind_without_tls_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite_dir(dir.path(), Arc::new(SystemClock)).await.expect("store");
    let services = Services::new(store, ServiceConfig::default());
    let config = ServerConfig { listen: SocketAddr::from(([0, 0, 0, 0], 0)), ..ServerConfig::default() };
    let err = wardkey_server::spawn(config.clone(), services.clone()).await.err().expect("refused");
    assert!(matches!(err, ServerError::InsecureBind { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("--insecure-http") && msg.contains("--tls-cert") && msg.contains("[tls]"), "{msg}");
    let run = wardkey_server::run(config, services.clone(), async {}).await;
    assert!(matches!(run, Err(ServerError::InsecureBind { .. })));
    services.store_unchecked_for_operator_and_tests().close().await;
}

#[tokio::test]
async fn missing_tls_files_fail_before_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite_dir(dir.path(), Arc::new(SystemClock)).await.expect("store");
    let services = Services::new(store, ServiceConfig::default());
    let config = ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        tls: Some(wardkey_server::TlsConfig {
            cert_path: dir.path().join("none.pem"),
            key_path: dir.path().join("none.key"),
        }),
        ..ServerConfig::default()
    };
    let err = wardkey_server::spawn(config, services.clone()).await.err().expect("refused");
    assert!(matches!(err, ServerError::Tls { .. }), "{err}");
    services.store_unchecked_for_operator_and_tests().close().await;
}

/// HTTPS with a throw-away self-signed certificate made by the `openssl` command (skipped,
/// loudly, where that command is missing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_configured_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    match made {
        Ok(out) if out.status.success() => {}
        _ => {
            say_loudly("\n*** HTTPS test SKIPPED: the openssl command is not available to make a certificate ***\n");
            return;
        }
    }
    let store = Store::open_sqlite_dir(&dir.path().join("data"), Arc::new(SystemClock)).await.expect("store");
    store.set_signer(signer());
    let services = Services::new(store, ServiceConfig::default());
    let admin = services.bootstrap().await.expect("bootstrap").expect("token");
    let config = ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        tls: Some(wardkey_server::TlsConfig { cert_path: cert.clone(), key_path: key }),
        ..ServerConfig::default()
    };
    let server = wardkey_server::spawn(config, services.clone()).await.expect("server starts");
    assert!(server.base_url().starts_with("https://"));
    let pem = std::fs::read(&cert).expect("cert");
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("pem")])
        .build()
        .expect("client");
    let r = http.get(format!("{}/healthz", server.base_url())).send().await.expect("https request");
    assert_eq!(r.status(), StatusCode::OK);
    let r = http
        .post(format!("{}/api/v1/users", server.base_url()))
        .bearer_auth(&admin)
        .header("x-request-id", "tls-1")
        .json(&json!({ "username": "tls-user" }))
        .send()
        .await
        .expect("https request");
    assert_eq!(r.status(), StatusCode::CREATED);
    let mut reader = services.store_unchecked_for_operator_and_tests().read().await.expect("read");
    let size = reader.audit_tree_size().await.expect("size");
    drop(reader);
    server.shutdown().await.expect("clean shutdown");
    // The final checkpoint written on close covers everything.
    let store = Store::open_sqlite_dir(&dir.path().join("data"), Arc::new(SystemClock)).await.expect("reopen");
    let cp = store.read().await.expect("read").latest_checkpoint().await.expect("checkpoint").expect("one exists");
    assert_eq!(cp.size, size);
    let events = store
        .read()
        .await
        .expect("read")
        .audit_events(&wardkey_store::AuditQuery { action: Some("user.create".into()), ..Default::default() }, None, 10)
        .await
        .expect("events");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].draft.request_id.as_deref(), Some("tls-1"));
    assert_eq!(events[0].draft.source_ip.as_deref(), Some("127.0.0.1"));
    store.close().await;
}

#[path = "api/authn.rs"]
mod authn;
#[path = "api/authz.rs"]
mod authz;
#[path = "api/grants.rs"]
mod grants;
#[path = "api/hr.rs"]
mod hr;
#[path = "api/interop.rs"]
mod interop;
#[path = "api/openapi.rs"]
mod openapi;
#[path = "api/scim.rs"]
mod scim;
#[path = "api/tokens.rs"]
mod tokens;
#[path = "api/witness.rs"]
mod witness;
