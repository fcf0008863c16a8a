//! Sign-in, second factors, enrolment, sessions, lockout and step-up, end to end over HTTP
//! against the real server, on SQLite and PostgreSQL. Time is a manual clock the tests move;
//! TOTP codes come from `totp-rs` and passkeys from `webauthn-authenticator-rs`'s software
//! authenticator, implementations nobody on this project wrote.

use super::*;
use chrono::{DateTime, TimeZone, Utc};
use reqwest::header::{COOKIE, HeaderMap, SET_COOKIE};
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;

/// The origin browsers use in these tests (the passkey RP origin and the CSRF origin).
pub const ORIGIN: &str = "http://localhost:8080";
const PASSWORD: &str = "correct horse battery staple 1987";
const SESSION_COOKIE: &str = "__Host-wardkey_session";

pub fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 10).unwrap()
}

impl Harness {
    fn clock(&self) -> &wardkey_domain::ManualClock {
        self.clock.as_deref().expect("an authn harness")
    }

    pub(crate) fn advance(&self, secs: i64) {
        self.clock().advance(chrono::Duration::seconds(secs));
    }

    fn now(&self) -> DateTime<Utc> {
        wardkey_domain::Clock::now(self.clock())
    }

    /// A request with the session cookie `cookie` (and no bearer token).
    pub(crate) async fn with_cookie(&self, method: Method, path: &str, cookie: &str, body: Option<Value>) -> Resp {
        let mut req = self.http.request(method, self.url(path)).header(COOKIE, format!("{SESSION_COOKIE}={cookie}"));
        if let Some(b) = body {
            req = req.json(&b);
        }
        Resp::read(req.send().await.expect("request sent")).await
    }

    async fn login(&self, username: &str, password: &str) -> Resp {
        self.call(Method::POST, "/api/v1/auth/login", None, Some(json!({ "username": username, "password": password })))
            .await
    }

    /// An active person with a password (created, identity verified, activated).
    pub(crate) async fn person(&self, username: &str) -> String {
        let u = self.create_user(username).await;
        let uid = id(&u);
        let v = self
            .post(&format!("/api/v1/users/{uid}/verify-identity"), json!({ "version": 1, "method": "in_person" }))
            .await;
        assert_eq!(v.status, StatusCode::OK, "{}", v.text);
        let a = self.post(&format!("/api/v1/users/{uid}/status"), json!({ "version": 2, "status": "active" })).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        let p = self
            .post(&format!("/api/v1/users/{uid}/password"), json!({ "password": PASSWORD, "must_change": false }))
            .await;
        assert_eq!(p.status, StatusCode::NO_CONTENT, "{}", p.text);
        uid
    }

    /// Signs `username` in and enrols TOTP at first sign-in; returns (active cookie, base32
    /// secret, recovery codes).
    pub(crate) async fn enrolled(&self, username: &str) -> (String, String, Vec<String>) {
        let r = self.login(username, PASSWORD).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.body["next"], "enrol");
        let c = session_cookie(&r.headers).expect("cookie");
        let e = self.with_cookie(Method::POST, "/api/v1/me/factors/totp", &c, Some(json!({ "name": "phone" }))).await;
        assert_eq!(e.status, StatusCode::CREATED, "{}", e.text);
        let secret = e.body["secret"].as_str().unwrap().to_owned();
        let fid = e.body["factor_id"].as_str().unwrap().to_owned();
        let code = totp_code(&secret, self.now());
        let done = self
            .with_cookie(
                Method::POST,
                &format!("/api/v1/me/factors/totp/{fid}/confirm"),
                &c,
                Some(json!({ "code": code })),
            )
            .await;
        assert_eq!(done.status, StatusCode::OK, "{}", done.text);
        let codes =
            done.body["recovery_codes"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
        (session_cookie(&done.headers).expect("rotated cookie"), secret, codes)
    }

    /// Full sign-in with password then TOTP (the clock moves one step first so the code is
    /// fresh). Returns the active cookie.
    async fn sign_in_totp(&self, username: &str, secret: &str) -> String {
        self.advance(30);
        let r = self.login(username, PASSWORD).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.body["next"], "second_factor", "{}", r.text);
        let c = session_cookie(&r.headers).unwrap();
        let t = self
            .with_cookie(Method::POST, "/api/v1/auth/totp", &c, Some(json!({ "code": totp_code(secret, self.now()) })))
            .await;
        assert_eq!(t.status, StatusCode::OK, "{}", t.text);
        session_cookie(&t.headers).unwrap()
    }

    async fn actions_for(&self, target: &str) -> Vec<(String, Option<String>)> {
        self.events(&format!("target={target}&limit=500"))
            .await
            .iter()
            .map(|e| (e["action"].as_str().unwrap().to_owned(), e["reason"].as_str().map(str::to_owned)))
            .collect()
    }
}

/// The session secret from a response's `Set-Cookie`, checking the cookie's attributes.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<String> {
    for v in headers.get_all(SET_COOKIE) {
        let s = v.to_str().ok()?;
        if let Some(rest) = s.strip_prefix(&format!("{SESSION_COOKIE}=")) {
            for attr in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
                assert!(s.contains(attr), "{s}");
            }
            assert!(!s.contains("Domain"), "{s}");
            let value = rest.split(';').next()?.to_owned();
            if value.is_empty() {
                return None;
            }
            return Some(value);
        }
    }
    None
}

/// A TOTP code computed by `totp-rs` from the base32 secret the server showed.
pub(crate) fn totp_code(base32: &str, at: DateTime<Utc>) -> String {
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

// ------------------------------------------------------------------------------------------

/// Password, then TOTP enrolment at first sign-in, then sign-ins with TOTP and recovery
/// codes; ids rotate at every step; replayed codes are refused.
async fn sign_in_with_totp(h: &Harness) {
    let uid = h.person("nurse.joy").await;
    let r = h.login("nurse.joy", PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["next"], "enrol", "no second factor yet: enrolment first");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let enrol_cookie = session_cookie(&r.headers).expect("session cookie");
    assert_eq!(enrol_cookie.len(), 43, "256-bit id, base64url");
    // An enrolment session reaches nothing else.
    h.with_cookie(Method::GET, "/api/v1/me", &enrol_cookie, None)
        .await
        .problem(StatusCode::FORBIDDEN, "sign-in-incomplete");
    h.with_cookie(Method::GET, "/api/v1/users", &enrol_cookie, None)
        .await
        .problem(StatusCode::FORBIDDEN, "sign-in-incomplete");

    let e = h.with_cookie(Method::POST, "/api/v1/me/factors/totp", &enrol_cookie, None).await;
    assert_eq!(e.status, StatusCode::CREATED, "{}", e.text);
    let secret = e.body["secret"].as_str().unwrap().to_owned();
    assert!(data_encoding::BASE32_NOPAD.decode(secret.as_bytes()).unwrap().len() >= 20, "at least 160 bits");
    let uri = e.body["otpauth_uri"].as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://totp/") && uri.contains(&format!("secret={secret}")) && uri.contains("nurse.joy"),
        "{uri}"
    );
    assert!(e.body["qr_svg"].as_str().unwrap().contains("<svg"));
    let fid = e.body["factor_id"].as_str().unwrap().to_owned();
    // A wrong code does not confirm.
    let wrong = h
        .with_cookie(
            Method::POST,
            &format!("/api/v1/me/factors/totp/{fid}/confirm"),
            &enrol_cookie,
            Some(json!({ "code": "000000" })),
        )
        .await;
    if totp_code(&secret, h.now()) != "000000" {
        wrong.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    }
    let code = totp_code(&secret, h.now());
    let done = h
        .with_cookie(
            Method::POST,
            &format!("/api/v1/me/factors/totp/{fid}/confirm"),
            &enrol_cookie,
            Some(json!({ "code": code })),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    let codes: Vec<String> =
        done.body["recovery_codes"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    assert_eq!(codes.len(), 10);
    assert_eq!(done.body["sign_in"]["next"], "done");
    let active = session_cookie(&done.headers).expect("rotated cookie");
    assert_ne!(active, enrol_cookie, "the id rotates when sign-in completes");
    h.with_cookie(Method::GET, "/api/v1/me", &enrol_cookie, None)
        .await
        .problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    let me = h.with_cookie(Method::GET, "/api/v1/me", &active, None).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    assert_eq!(me.body["user"]["username"], "nurse.joy");
    assert_eq!(me.body["recovery_codes_left"], 10);
    assert_eq!(me.body["session"]["methods"], json!(["password", "totp"]));

    // Sign out; the cookie stops working.
    let out = h.with_cookie(Method::POST, "/api/v1/auth/logout", &active, None).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.text);
    h.with_cookie(Method::GET, "/api/v1/me", &active, None).await.problem(StatusCode::UNAUTHORIZED, "unauthenticated");

    // Next sign-in: the second factor. The code used at enrolment is refused (same step).
    let r = h.login("nurse.joy", PASSWORD).await;
    assert_eq!(r.body["next"], "second_factor");
    let mut factors: Vec<&str> = r.body["factors"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    factors.sort();
    assert_eq!(factors, ["recovery_code", "totp"]);
    let c = session_cookie(&r.headers).unwrap();
    h.with_cookie(Method::POST, "/api/v1/auth/totp", &c, Some(json!({ "code": code })))
        .await
        .problem(StatusCode::UNAUTHORIZED, "second-factor-failed");
    h.advance(30);
    let fresh = totp_code(&secret, h.now());
    let ok = h.with_cookie(Method::POST, "/api/v1/auth/totp", &c, Some(json!({ "code": fresh }))).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    let signed_in = session_cookie(&ok.headers).unwrap();
    assert_ne!(signed_in, c);
    // The same code again (step-up attempt on the active session) is a replay.
    h.with_cookie(Method::POST, "/api/v1/auth/totp", &signed_in, Some(json!({ "code": fresh })))
        .await
        .problem(StatusCode::UNAUTHORIZED, "second-factor-failed");

    // A recovery code works once. (Failed second factors count like failed passwords: the
    // account waits a moment before the next attempt.)
    h.advance(2);
    let r = h.login("nurse.joy", PASSWORD).await;
    let c = session_cookie(&r.headers).unwrap();
    let rc = h
        .with_cookie(Method::POST, "/api/v1/auth/recovery", &c, Some(json!({ "code": codes[3].to_lowercase() })))
        .await;
    assert_eq!(rc.status, StatusCode::OK, "{}", rc.text);
    let r = h.login("nurse.joy", PASSWORD).await;
    let c = session_cookie(&r.headers).unwrap();
    h.advance(2);
    h.with_cookie(Method::POST, "/api/v1/auth/recovery", &c, Some(json!({ "code": codes[3] })))
        .await
        .problem(StatusCode::UNAUTHORIZED, "second-factor-failed");

    let actions = h.actions_for(&format!("user:{uid}")).await;
    let names: Vec<&str> = actions.iter().map(|(a, _)| a.as_str()).collect();
    for a in [
        "password.set",
        "auth.password_verified",
        "factor.enrol_started",
        "factor.enrolled",
        "factor.recovery_codes_issued",
        "auth.login",
        "auth.mfa_failed",
        "factor.recovery_code_used",
    ] {
        assert!(names.contains(&a), "{a} missing from {names:?}");
    }
    assert!(
        actions.iter().any(|(a, r)| a == "auth.mfa_failed" && r.as_deref() == Some("TOTP code already used")),
        "{actions:?}"
    );
    let logout = h.events("action=session.logout").await;
    assert_eq!(logout.len(), 1);
    // Nothing secret in the log.
    let all = h.get("/api/v1/audit/events?limit=500").await.text;
    assert!(!all.contains(PASSWORD) && !all.contains(&secret) && !all.contains(&codes[0]) && !all.contains(&active));
}

/// Unknown user, wrong password, disabled, suspended and pending accounts get the same
/// answer; the audit events keep the reasons.
async fn no_user_enumeration(h: &Harness) {
    let uid = h.person("dr.quinn").await;
    let pending = h.create_user("dr.pending").await;
    let p = h.post(&format!("/api/v1/users/{}/password", id(&pending)), json!({ "password": PASSWORD })).await;
    assert_eq!(p.status, StatusCode::NO_CONTENT, "{}", p.text);
    let unknown = h.login("nobody.here", PASSWORD).await;
    let wrong = h.login("dr.quinn", "definitely not the password at all").await;
    let pend = h.login("dr.pending", PASSWORD).await;
    let body = |r: &Resp| r.problem(StatusCode::UNAUTHORIZED, "login-failed").clone();
    assert_eq!(body(&unknown), body(&wrong));
    assert_eq!(body(&unknown), body(&pend));
    let s = h.post(&format!("/api/v1/users/{uid}/status"), json!({ "version": 3, "status": "suspended" })).await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.text);
    h.advance(120);
    let susp = h.login("dr.quinn", PASSWORD).await;
    assert_eq!(body(&unknown), body(&susp));
    assert!(unknown.header("set-cookie").is_none() && susp.header("set-cookie").is_none());
    let reasons: Vec<String> = h
        .events("action=auth.login_failed")
        .await
        .iter()
        .filter_map(|e| e["reason"].as_str().map(str::to_owned))
        .collect();
    for r in ["unknown user", "wrong password", "account pending identity verification", "account suspended"] {
        assert!(reasons.iter().any(|x| x == r), "{r} not in {reasons:?}");
    }
}

/// Consecutive failures slow the account down, then lock it (events for each); an admin
/// unlocks; the time windows come from the injected clock.
async fn lockout_and_unlock(h: &Harness) {
    let uid = h.person("dr.lock").await;
    h.login("dr.lock", "wrong wrong wrong wrong").await.problem(StatusCode::UNAUTHORIZED, "login-failed");
    // Right password but too soon after a failure: refused, and the event says why.
    h.login("dr.lock", PASSWORD).await.problem(StatusCode::UNAUTHORIZED, "login-failed");
    let ev = h.events("action=auth.login_failed").await;
    assert_eq!(ev.last().unwrap()["reason"], "too soon after a failure");
    h.advance(2);
    let ok = h.login("dr.lock", PASSWORD).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    for _ in 0..10 {
        h.advance(61);
        h.login("dr.lock", "wrong wrong wrong wrong").await.problem(StatusCode::UNAUTHORIZED, "login-failed");
    }
    let locks = h.events(&format!("action=auth.lockout&target=user:{uid}")).await;
    assert_eq!(locks.len(), 1);
    h.advance(61);
    h.login("dr.lock", PASSWORD).await.problem(StatusCode::UNAUTHORIZED, "login-failed");
    assert_eq!(h.events("action=auth.login_failed").await.last().unwrap()["reason"], "account locked");
    let st = h.get(&format!("/api/v1/users/{uid}/authn")).await;
    assert_eq!(st.body["locked"], true, "{}", st.text);
    let un = h.post(&format!("/api/v1/users/{uid}/unlock"), json!({})).await;
    assert_eq!(un.status, StatusCode::OK, "{}", un.text);
    assert_eq!(un.body["was_locked"], true);
    assert_eq!(h.events(&format!("action=auth.unlock&target=user:{uid}")).await.len(), 1);
    let ok = h.login("dr.lock", PASSWORD).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    // The lock also lifts by itself after its duration (30 min by default).
    for _ in 0..10 {
        h.advance(61);
        h.login("dr.lock", "wrong wrong wrong wrong").await;
    }
    h.advance(31 * 60);
    assert_eq!(h.login("dr.lock", PASSWORD).await.status, StatusCode::OK);
}

/// Idle timeout (15 min global, 5 min for holders of a role), `session.timeout`, absolute
/// lifetime, and heartbeats that keep a used session alive.
async fn timeouts(h: &Harness) {
    let uid = h.person("dr.idle").await;
    let (c, secret, _) = h.enrolled("dr.idle").await;
    // Used every 10 minutes: stays alive for an hour.
    for _ in 0..6 {
        h.advance(10 * 60);
        let me = h.with_cookie(Method::GET, "/api/v1/me", &c, None).await;
        assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    }
    h.advance(15 * 60);
    h.with_cookie(Method::GET, "/api/v1/me", &c, None).await.problem(StatusCode::UNAUTHORIZED, "session-expired");
    let to = h.events("action=session.timeout").await;
    assert_eq!(to.len(), 1);
    assert_eq!(to[0]["details"]["user"], format!("user:{uid}"));
    // Once ended it stays ended.
    h.with_cookie(Method::GET, "/api/v1/me", &c, None).await.problem(StatusCode::UNAUTHORIZED, "unauthenticated");

    // A role held tightens the idle timeout to 5 minutes for its holders.
    let role = h
        .post(
            "/api/v1/roles",
            json!({ "name": "icu-shared-workstation", "session_policy": { "idle_timeout_secs": 300 } }),
        )
        .await;
    assert_eq!(role.status, StatusCode::CREATED, "{}", role.text);
    let g =
        h.post("/api/v1/grants", json!({ "justification": "test access", "subject": { "type": "user", "id": uid }, "role_id": id(&role.body) })).await;
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
    let c = h.sign_in_totp("dr.idle", &secret).await;
    let me = h.with_cookie(Method::GET, "/api/v1/me", &c, None).await;
    assert_eq!(me.body["idle_timeout_secs"], 300);
    h.advance(4 * 60);
    assert_eq!(h.with_cookie(Method::GET, "/api/v1/me", &c, None).await.status, StatusCode::OK);
    h.advance(5 * 60);
    h.with_cookie(Method::GET, "/api/v1/me", &c, None).await.problem(StatusCode::UNAUTHORIZED, "session-expired");

    // Absolute lifetime (12 h) ends even a busy session.
    let r = h
        .patch(
            &format!("/api/v1/roles/{}", id(&role.body)),
            json!({ "version": 1, "session_policy": { "max_lifetime_secs": 3600 } }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let c = h.sign_in_totp("dr.idle", &secret).await;
    for _ in 0..4 {
        h.advance(14 * 60);
        assert_eq!(h.with_cookie(Method::GET, "/api/v1/me", &c, None).await.status, StatusCode::OK);
    }
    h.advance(14 * 60);
    h.with_cookie(Method::GET, "/api/v1/me", &c, None).await.problem(StatusCode::UNAUTHORIZED, "session-expired");
    assert_eq!(h.events("action=session.expired").await.len(), 1);

    // A session never presented again is ended by the sweeper once past the idle timeout.
    let c = h.sign_in_totp("dr.idle", &secret).await;
    let me = h.with_cookie(Method::GET, "/api/v1/me", &c, None).await;
    let sid = me.body["session"]["id"].as_str().unwrap().to_owned();
    h.advance(10 * 60);
    assert_eq!(h.services.sweep_sessions().await.unwrap(), 0, "not idle long enough");
    h.advance(6 * 60);
    assert_eq!(h.services.sweep_sessions().await.unwrap(), 1);
    let ev = h.events(&format!("action=session.timeout&target=session:{sid}")).await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["actor"], "system:session");
    let listed = h.get(&format!("/api/v1/sessions?user={uid}")).await;
    assert_eq!(listed.body["items"], json!([]), "no live session left");
}

/// Suspension, disabling, a password change and a factor reset end every session of the
/// user before the call returns.
async fn sessions_end_with_the_account(h: &Harness) {
    let uid = h.person("dr.gone").await;
    let (c1, secret, _) = h.enrolled("dr.gone").await;
    let c2 = h.sign_in_totp("dr.gone", &secret).await;
    let s = h
        .post(
            &format!("/api/v1/users/{uid}/status"),
            json!({ "version": 3, "status": "suspended", "reason": "investigation" }),
        )
        .await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.text);
    for c in [&c1, &c2] {
        h.with_cookie(Method::GET, "/api/v1/me", c, None).await.problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    let revokes = h.events("action=session.revoke").await;
    assert_eq!(revokes.len(), 2);
    assert!(
        revokes.iter().all(|e| e["reason"] == "user_suspended" && e["actor"].as_str().unwrap().starts_with("token:"))
    );
    let a = h.post(&format!("/api/v1/users/{uid}/status"), json!({ "version": 4, "status": "active" })).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);

    // Password change by the user: every session ends, this one too.
    let c3 = h.sign_in_totp("dr.gone", &secret).await;
    let c4 = h.sign_in_totp("dr.gone", &secret).await;
    let weak = h
        .with_cookie(
            Method::POST,
            "/api/v1/me/password",
            &c3,
            Some(json!({ "current_password": PASSWORD, "new_password": "password123" })),
        )
        .await;
    let p = weak.problem(StatusCode::UNPROCESSABLE_ENTITY, "password-rejected");
    assert!(p["detail"].as_str().unwrap().contains("common") || p["reason"] == "too_short", "{p}");
    let ch = h
        .with_cookie(
            Method::POST,
            "/api/v1/me/password",
            &c3,
            Some(json!({ "current_password": PASSWORD, "new_password": "a whole new passphrase for winter" })),
        )
        .await;
    assert_eq!(ch.status, StatusCode::NO_CONTENT, "{}", ch.text);
    for c in [&c3, &c4] {
        h.with_cookie(Method::GET, "/api/v1/me", c, None).await.problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    let p =
        h.post(&format!("/api/v1/users/{uid}/password"), json!({ "password": PASSWORD, "must_change": false })).await;
    assert_eq!(p.status, StatusCode::NO_CONTENT, "{}", p.text);

    // Factor reset by an admin: sessions end; the next sign-in goes to enrolment.
    let c5 = h.sign_in_totp("dr.gone", &secret).await;
    let rs = h.post(&format!("/api/v1/users/{uid}/factors/reset"), json!({ "reason": "lost phone" })).await;
    assert_eq!(rs.status, StatusCode::OK, "{}", rs.text);
    assert_eq!(rs.body["removed"], 1);
    h.with_cookie(Method::GET, "/api/v1/me", &c5, None).await.problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    assert_eq!(h.login("dr.gone", PASSWORD).await.body["next"], "enrol");

    // Marked compromised: sessions end; after sign-in only a password change is allowed.
    let (c6, _, _) = h.enrolled("dr.gone").await;
    let m = h
        .post(&format!("/api/v1/users/{uid}/password/compromised"), json!({ "reason": "found in a phishing kit" }))
        .await;
    assert_eq!(m.status, StatusCode::NO_CONTENT, "{}", m.text);
    h.with_cookie(Method::GET, "/api/v1/me", &c6, None).await.problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    assert_eq!(h.events(&format!("action=password.compromised&target=user:{uid}")).await.len(), 1);

    // Disabled: the same, and sign-in is refused afterwards.
    let u = h.get(&format!("/api/v1/users/{uid}")).await;
    let v = u.body["version"].as_i64().unwrap();
    let d = h.post(&format!("/api/v1/users/{uid}/status"), json!({ "version": v, "status": "disabled" })).await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.text);
    h.advance(60);
    h.login("dr.gone", PASSWORD).await.problem(StatusCode::UNAUTHORIZED, "login-failed");
}

/// People list and end their own sessions; admins list and end anyone's; events name who.
async fn session_listing_and_revocation(h: &Harness) {
    let uid = h.person("dr.many").await;
    let (c1, secret, _) = h.enrolled("dr.many").await;
    let c2 = h.sign_in_totp("dr.many", &secret).await;
    let mine = h.with_cookie(Method::GET, "/api/v1/me/sessions", &c1, None).await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.text);
    let items = mine.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let me2 = h.with_cookie(Method::GET, "/api/v1/me", &c2, None).await;
    let sid2 = me2.body["session"]["id"].as_str().unwrap().to_owned();
    let end = h.with_cookie(Method::DELETE, &format!("/api/v1/me/sessions/{sid2}"), &c1, None).await;
    assert_eq!(end.status, StatusCode::NO_CONTENT, "{}", end.text);
    h.with_cookie(Method::GET, "/api/v1/me", &c2, None).await.problem(StatusCode::UNAUTHORIZED, "unauthenticated");

    // Another person cannot end it (it is not theirs: 404).
    h.person("dr.other").await;
    let (o, _, _) = h.enrolled("dr.other").await;
    let me1 = h.with_cookie(Method::GET, "/api/v1/me", &c1, None).await;
    let sid1 = me1.body["session"]["id"].as_str().unwrap().to_owned();
    h.with_cookie(Method::DELETE, &format!("/api/v1/me/sessions/{sid1}"), &o, None)
        .await
        .problem(StatusCode::NOT_FOUND, "not-found");

    // The admin sees and ends it.
    let all = h.get(&format!("/api/v1/sessions?user={uid}")).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    assert_eq!(all.body["items"].as_array().unwrap().len(), 1);
    let with_ended = h.get(&format!("/api/v1/sessions?user={uid}&include_ended=true")).await;
    assert_eq!(with_ended.body["items"].as_array().unwrap().len(), 2);
    let rv = h.delete(&format!("/api/v1/sessions/{sid1}")).await;
    assert_eq!(rv.status, StatusCode::NO_CONTENT, "{}", rv.text);
    h.with_cookie(Method::GET, "/api/v1/me", &c1, None).await.problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    let ev = h.events(&format!("action=session.revoke&target=session:{sid1}")).await;
    assert_eq!(ev.len(), 1);
    assert!(ev[0]["actor"].as_str().unwrap().starts_with("token:"), "revoked by whom");
    // And every session of a user at once.
    let c3 = h.sign_in_totp("dr.many", &secret).await;
    let all = h.post(&format!("/api/v1/users/{uid}/sessions/revoke"), json!({})).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    assert_eq!(all.body["ended"], 1);
    h.with_cookie(Method::GET, "/api/v1/me", &c3, None).await.problem(StatusCode::UNAUTHORIZED, "unauthenticated");
}

/// A role that administers Wardkey gives its holders' sessions the admin scope; granting a
/// privileged role needs a fresh second factor (step-up); a role that requires a passkey is
/// not exercised by a TOTP session.
async fn step_up_and_role_scopes(h: &Harness) {
    let uid = h.person("it.admin").await;
    let admins = h
        .post(
            "/api/v1/roles",
            json!({ "name": "wardkey-admins", "privileged": true, "session_policy": { "scopes": ["admin"] } }),
        )
        .await;
    assert_eq!(admins.status, StatusCode::CREATED, "{}", admins.text);
    let g = h
        .post("/api/v1/grants", json!({ "justification": "test access", "subject": { "type": "user", "id": uid }, "role_id": id(&admins.body) }))
        .await;
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
    let (c, secret, _) = h.enrolled("it.admin").await;
    let users = h.with_cookie(Method::GET, "/api/v1/users", &c, None).await;
    assert_eq!(users.status, StatusCode::OK, "{}", users.text);
    // A role requiring a passkey is listed but not exercisable in this TOTP session.
    let pr = h.post("/api/v1/roles", json!({ "name": "auditors", "session_policy": { "require_phishing_resistant": true, "scopes": ["audit:read"] } })).await;
    let g =
        h.post("/api/v1/grants", json!({ "justification": "test access", "subject": { "type": "user", "id": uid }, "role_id": id(&pr.body) })).await;
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
    let me = h.with_cookie(Method::GET, "/api/v1/me", &c, None).await;
    let auditors = me.body["roles"].as_array().unwrap().iter().find(|r| r["name"] == "auditors").unwrap().clone();
    assert_eq!(auditors["exercisable"], false);
    assert_eq!(me.body["scopes"], json!(["admin"]));

    // Granting a privileged role from a session needs a second factor within 5 minutes.
    let other = h.person("new.admin").await;
    h.advance(6 * 60);
    let body = json!({ "justification": "new administrator", "subject": { "type": "user", "id": other }, "role_id": id(&admins.body) });
    let refused = h.with_cookie(Method::POST, "/api/v1/grants", &c, Some(body.clone())).await;
    assert_eq!(refused.problem(StatusCode::FORBIDDEN, "step-up-required")["acr_values"], "urn:wardkey:acr:mfa-fresh");
    let up = h
        .with_cookie(Method::POST, "/api/v1/auth/totp", &c, Some(json!({ "code": totp_code(&secret, h.now()) })))
        .await;
    assert_eq!(up.status, StatusCode::OK, "{}", up.text);
    let c2 = session_cookie(&up.headers).unwrap();
    assert_ne!(c2, c, "the id rotates at step-up");
    h.with_cookie(Method::GET, "/api/v1/me", &c, None).await.problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    let granted = h.with_cookie(Method::POST, "/api/v1/grants", &c2, Some(body)).await;
    assert_eq!(granted.status, StatusCode::CREATED, "{}", granted.text);
    assert_eq!(granted.body["created_by"], format!("user:{uid}"));
    assert_eq!(h.events("action=auth.step_up").await.len(), 1);
    // Enrolling another factor is a sensitive action too.
    h.advance(6 * 60);
    h.with_cookie(Method::POST, "/api/v1/me/factors/totp", &c2, None)
        .await
        .problem(StatusCode::FORBIDDEN, "step-up-required");
    // A session without the admin role's scope is forbidden from admin routes (and audited).
    h.person("nobody.special").await;
    let (pc, _, _) = h.enrolled("nobody.special").await;
    h.with_cookie(Method::GET, "/api/v1/users", &pc, None).await.problem(StatusCode::FORBIDDEN, "forbidden");
}

// ------------------------------------------------------------------------------------------
// Passkeys with a software authenticator.

fn client_register(auth: &mut SoftPasskey, origin: &str, options: &Value) -> Value {
    let options: CreationChallengeResponse = serde_json::from_value(options.clone()).expect("creation options");
    let r = auth.do_registration(url::Url::parse(origin).unwrap(), options).expect("authenticator registers");
    serde_json::to_value(&r).unwrap()
}

fn client_authenticate(auth: &mut SoftPasskey, origin: &str, options: &Value) -> Result<Value, String> {
    let options: RequestChallengeResponse = serde_json::from_value(options.clone()).expect("request options");
    auth.do_authentication(url::Url::parse(origin).unwrap(), options)
        .map(|r| serde_json::to_value(&r).unwrap())
        .map_err(|e| format!("{e:?}"))
}

/// A person enrols a passkey at first sign-in (no TOTP), signs in with it, and so exercises
/// a role that requires a phishing-resistant factor. Malformed and foreign responses fail.
async fn passkeys(h: &Harness) {
    let uid = h.person("dr.key").await;
    let role = h.post("/api/v1/roles", json!({ "name": "phi-export", "session_policy": { "require_phishing_resistant": true, "scopes": ["audit:read"] } })).await;
    assert_eq!(role.status, StatusCode::CREATED, "{}", role.text);
    let g =
        h.post("/api/v1/grants", json!({ "justification": "test access", "subject": { "type": "user", "id": uid }, "role_id": id(&role.body) })).await;
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
    let mut key = SoftPasskey::new(true);

    let r = h.login("dr.key", PASSWORD).await;
    let c = session_cookie(&r.headers).unwrap();
    let opts = h
        .with_cookie(Method::POST, "/api/v1/me/factors/webauthn/challenge", &c, Some(json!({ "name": "YubiKey 5" })))
        .await;
    assert_eq!(opts.status, StatusCode::OK, "{}", opts.text);
    assert_eq!(opts.body["publicKey"]["rp"]["id"], "localhost");
    // A response from another origin (a phishing site) is refused.
    let mut evil_key = SoftPasskey::new(true);
    let foreign = client_register(&mut evil_key, "http://localhost:9999", &opts.body);
    h.with_cookie(Method::POST, "/api/v1/me/factors/webauthn", &c, Some(foreign))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    // The ceremony state was spent by the failed attempt: start again.
    let opts = h
        .with_cookie(Method::POST, "/api/v1/me/factors/webauthn/challenge", &c, Some(json!({ "name": "YubiKey 5" })))
        .await;
    let reg = client_register(&mut key, ORIGIN, &opts.body);
    let done = h.with_cookie(Method::POST, "/api/v1/me/factors/webauthn", &c, Some(reg)).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert_eq!(done.body["factor"]["kind"], "webauthn");
    assert_eq!(done.body["recovery_codes"].as_array().map(Vec::len), Some(10));
    let active = session_cookie(&done.headers).unwrap();
    let me = h.with_cookie(Method::GET, "/api/v1/me", &active, None).await;
    assert_eq!(me.body["roles"][0]["exercisable"], true, "{}", me.text);
    assert_eq!(me.body["scopes"], json!(["audit:read"]));
    // audit:read through the role: the audit log is readable from this session.
    let ev = h.with_cookie(Method::GET, "/api/v1/audit/events?limit=1", &active, None).await;
    assert_eq!(ev.status, StatusCode::OK, "{}", ev.text);

    // Sign in again with the passkey.
    let r = h.login("dr.key", PASSWORD).await;
    assert_eq!(r.body["factors"], json!(["webauthn", "recovery_code"]));
    let c = session_cookie(&r.headers).unwrap();
    // Malformed responses: refused with a clear error, no panic.
    let ch = h.with_cookie(Method::POST, "/api/v1/auth/webauthn/challenge", &c, None).await;
    assert_eq!(ch.status, StatusCode::OK, "{}", ch.text);
    h.with_cookie(Method::POST, "/api/v1/auth/webauthn", &c, Some(json!({ "id": "x", "response": {} })))
        .await
        .problem(StatusCode::UNAUTHORIZED, "second-factor-failed");
    let bad = h
        .http
        .post(h.url("/api/v1/auth/webauthn"))
        .header(COOKIE, format!("{SESSION_COOKIE}={c}"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    // A real assertion against the current challenge works.
    h.advance(2);
    let ch = h.with_cookie(Method::POST, "/api/v1/auth/webauthn/challenge", &c, None).await;
    let assertion = client_authenticate(&mut key, ORIGIN, &ch.body).unwrap();
    let ok = h.with_cookie(Method::POST, "/api/v1/auth/webauthn", &c, Some(assertion.clone())).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    let signed = session_cookie(&ok.headers).unwrap();
    let me = h.with_cookie(Method::GET, "/api/v1/me", &signed, None).await;
    assert!(me.body["session"]["phishing_resistant_at"].is_string());
    assert_eq!(me.body["session"]["methods"], json!(["password", "webauthn"]));
    // Replaying the same assertion (as step-up) fails: the challenge was single-use.
    h.with_cookie(Method::POST, "/api/v1/auth/webauthn", &signed, Some(assertion))
        .await
        .problem(StatusCode::UNAUTHORIZED, "second-factor-failed");
    let fails: Vec<String> = h
        .events("action=auth.mfa_failed")
        .await
        .iter()
        .filter_map(|e| e["reason"].as_str().map(str::to_owned))
        .collect();
    assert!(fails.iter().any(|r| r.starts_with("passkey refused")), "{fails:?}");
    assert!(
        h.events("action=factor.enrol_failed")
            .await
            .iter()
            .any(|e| e["reason"].as_str().unwrap_or_default().contains("rejected"))
    );
}

// ------------------------------------------------------------------------------------------
// Bad input.

/// Forged, malformed and expired cookies, over-long passwords, cross-origin posts: refused
/// with a clear error, nothing written but the audit event, no panic.
async fn bad_credentials(h: &Harness) {
    h.person("dr.bad").await;
    let before = h.tree_size().await;
    let forged = "A".repeat(43);
    h.with_cookie(Method::GET, "/api/v1/me", &forged, None).await.problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    h.with_cookie(Method::GET, "/api/v1/me", "not-a-session", None)
        .await
        .problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    assert_eq!(h.tree_size().await, before + 2, "one auth.failed event each, nothing else");
    // A cookie header that is not even ASCII is no session cookie at all: refused unread.
    let raw = h
        .http
        .get(h.url("/api/v1/me"))
        .header(COOKIE, reqwest::header::HeaderValue::from_bytes(b"__Host-wardkey_session=\xc3\xa9").unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::UNAUTHORIZED);
    let failed = h.events("action=auth.failed").await;
    assert!(
        failed.iter().any(|e| e["reason"] == "unknown session")
            && failed.iter().any(|e| e["reason"] == "malformed session cookie")
    );

    let long = "x".repeat(2000);
    let r = h.login("dr.bad", &long).await;
    r.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    let r = h.login(&"u".repeat(5000), PASSWORD).await;
    r.problem(StatusCode::UNAUTHORIZED, "login-failed");
    let r = h.call(Method::POST, "/api/v1/auth/login", None, Some(json!({ "username": "dr.bad" }))).await;
    r.problem(StatusCode::BAD_REQUEST, "malformed-request");
    let r = h
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({ "username": "dr.bad", "password": PASSWORD, "extra": 1 })),
        )
        .await;
    r.problem(StatusCode::BAD_REQUEST, "malformed-request");

    // A cookie-authenticated write from another origin is refused before it does anything.
    let ok = h.login("dr.bad", PASSWORD).await;
    let c = session_cookie(&ok.headers).unwrap();
    let cross = h
        .http
        .post(h.url("/api/v1/me/factors/totp"))
        .header(COOKIE, format!("{SESSION_COOKIE}={c}"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    let same = h
        .http
        .post(h.url("/api/v1/me/factors/totp"))
        .header(COOKIE, format!("{SESSION_COOKIE}={c}"))
        .header("origin", ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), StatusCode::CREATED);

    // Per-source limits: a burst of attempts from one address is cut off with 429.
    let mut limited = false;
    for _ in 0..40 {
        let r = h.login("nobody.at.all", "whatever whatever whatever").await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.header("retry-after").is_some());
            limited = true;
            break;
        }
    }
    assert!(limited, "the per-source limit never triggered");
    assert!(!h.events("action=auth.rate_limited").await.is_empty());
}

// ------------------------------------------------------------------------------------------
// HTML pages.

fn form_cookies(headers: &HeaderMap, jar: &mut Vec<(String, String)>) {
    for v in headers.get_all(SET_COOKIE) {
        let s = v.to_str().unwrap();
        let pair = s.split(';').next().unwrap();
        let (n, val) = pair.split_once('=').unwrap();
        jar.retain(|(k, _)| k != n);
        if !val.is_empty() {
            jar.push((n.to_owned(), val.to_owned()));
        }
    }
}

fn cookie_header(jar: &[(String, String)]) -> String {
    jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no {name} in {html}")) + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

async fn form_post(
    h: &Harness,
    path: &str,
    jar: &mut Vec<(String, String)>,
    body: &[u8],
    origin: Option<&str>,
) -> reqwest::Response {
    let mut req = h
        .http
        .post(h.url(path))
        .header(COOKIE, cookie_header(jar))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_vec());
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    let r = req.send().await.unwrap();
    form_cookies(r.headers(), jar);
    r
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Sign-in and TOTP enrolment through the HTML pages, without JavaScript; CSRF and
/// non-UTF-8 passwords are refused with a clear page.
async fn html_pages(h: &Harness) {
    h.person("dr.html").await;
    let mut jar = Vec::new();
    let page = h.http.get(h.url("/login")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers().get("content-security-policy").unwrap().to_str().unwrap().contains("frame-ancestors 'none'")
    );
    form_cookies(page.headers(), &mut jar);
    let html = page.text().await.unwrap();
    let csrf = hidden(&html, "csrf");
    assert!(jar.iter().any(|(k, v)| k == "__Host-wardkey_csrf" && *v == csrf));

    // Without the CSRF token (or with another's): refused, audited, nothing else written.
    let before = h.tree_size().await;
    let r = form_post(
        h,
        "/login",
        &mut jar,
        format!("username=dr.html&password={}", enc(PASSWORD)).as_bytes(),
        Some(ORIGIN),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("not accepted"));
    let r = form_post(
        h,
        "/login",
        &mut jar,
        format!("username=dr.html&password={}&csrf=forged", enc(PASSWORD)).as_bytes(),
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = form_post(
        h,
        "/login",
        &mut jar,
        format!("username=dr.html&password={}&csrf={csrf}", enc(PASSWORD)).as_bytes(),
        Some("https://evil.example"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(h.tree_size().await, before + 3);
    assert_eq!(h.events("action=auth.csrf_refused").await.len(), 3);

    // A password that is not UTF-8: a clear error on the page.
    let r = form_post(
        h,
        "/login",
        &mut jar,
        format!("username=dr.html&password=%FF%FE%FD&csrf={csrf}").as_bytes(),
        Some(ORIGIN),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("not valid UTF-8"));
    // Wrong password: the generic message, the username kept (escaped).
    let r = form_post(
        h,
        "/login",
        &mut jar,
        format!("username=%3Cb%3Edr.html&password=nope&csrf={csrf}").as_bytes(),
        Some(ORIGIN),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let text = r.text().await.unwrap();
    assert!(text.contains("&#60;b&#62;dr.html") && !text.contains("<b>dr.html"), "{text}");

    let r = form_post(
        h,
        "/login",
        &mut jar,
        format!("username=dr.html&password={}&csrf={csrf}", enc(PASSWORD)).as_bytes(),
        Some(ORIGIN),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers().get("location").unwrap(), "/enrol");
    assert!(jar.iter().any(|(k, _)| k == SESSION_COOKIE));
    let enrol = h.http.get(h.url("/enrol")).header(COOKIE, cookie_header(&jar)).send().await.unwrap();
    assert_eq!(enrol.status(), StatusCode::OK);
    let r = form_post(h, "/enrol/totp", &mut jar, format!("csrf={csrf}").as_bytes(), Some(ORIGIN)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains("data:image/svg+xml;base64,"));
    let secret = html.split("Key: <code>").nth(1).unwrap().split('<').next().unwrap().to_owned();
    let factor = hidden(&html, "factor_id");
    let code = totp_code(&secret, h.now());
    let r = form_post(
        h,
        "/enrol/totp/confirm",
        &mut jar,
        format!("csrf={csrf}&factor_id={factor}&code={code}").as_bytes(),
        Some(ORIGIN),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains("Recovery codes"), "{html}");
    let account = h.http.get(h.url("/account")).header(COOKIE, cookie_header(&jar)).send().await.unwrap();
    assert_eq!(account.status(), StatusCode::OK);
    let html = account.text().await.unwrap();
    assert!(html.contains("dr.html") && html.contains("(this one)"), "{html}");
    // Sign out through the form; the account page then sends you to sign in.
    let r = form_post(h, "/logout", &mut jar, format!("csrf={csrf}").as_bytes(), Some(ORIGIN)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let account = h.http.get(h.url("/account")).header(COOKIE, cookie_header(&jar)).send().await.unwrap();
    assert_eq!(account.status(), StatusCode::SEE_OTHER);
    assert_eq!(account.headers().get("location").unwrap(), "/login");
    // The passkey script is served from our origin.
    let js = h.http.get(h.url("/assets/passkey.js")).send().await.unwrap();
    assert_eq!(js.status(), StatusCode::OK);
    assert!(js.text().await.unwrap().contains("navigator.credentials.create"));
}

/// Form posts as browsers send them. Chromium sends `Origin: null` on a same-origin form post
/// from a page whose referrer policy is `no-referrer`; such a post is told apart from a forged
/// one by `Sec-Fetch-Site`. Pages now keep the origin on same-origin requests.
async fn forms_from_opaque_origins(h: &Harness) {
    h.person("dr.opaque").await;
    let mut jar = Vec::new();
    let page = h.http.get(h.url("/login")).send().await.unwrap();
    assert_eq!(page.headers().get("referrer-policy").unwrap(), "same-origin");
    form_cookies(page.headers(), &mut jar);
    let csrf = hidden(&page.text().await.unwrap(), "csrf");
    let body = format!("username=dr.opaque&password={}&csrf={csrf}", enc(PASSWORD));
    let post = |origin: &'static str, site: Option<&'static str>, jar: &[(String, String)]| {
        let mut req = h
            .http
            .post(h.url("/login"))
            .header(COOKIE, cookie_header(jar))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", origin)
            .body(body.clone());
        if let Some(s) = site {
            req = req.header("sec-fetch-site", s);
        }
        req.send()
    };
    let before = h.events("action=auth.csrf_refused").await.len();
    // Forged: an opaque origin from another site (a sandboxed frame, a data: page), one
    // that does not say where it came from, a sibling site, and a foreign origin.
    for (origin, site) in [
        ("null", Some("cross-site")),
        ("null", None),
        ("null", Some("same-site")),
        ("https://evil.example", Some("cross-site")),
        ("https://evil.example", None),
    ] {
        let r = post(origin, site, &jar).await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{origin} {site:?}");
        assert!(r.text().await.unwrap().contains("Form refused"));
    }
    assert_eq!(h.events("action=auth.csrf_refused").await.len(), before + 5);
    // Chromium's same-origin post under `no-referrer`: accepted, the person signs in.
    let r = post("null", Some("same-origin"), &jar).await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers().get("location").unwrap(), "/enrol");
    assert_eq!(h.events("action=auth.csrf_refused").await.len(), before + 5);
}

/// Break-glass needs a fresh second factor and a role marked for it; it yields a time-boxed
/// `break_glass` grant and a `break_glass.declared` event flagged for review. Forbid rules are
/// validated when saved.
async fn break_glass_and_forbid_rules(h: &Harness) {
    let uid = h.person("dr.er").await;
    let rt = h
        .post(
            "/api/v1/resource-types",
            json!({ "name": "record", "actions": ["read", "write"], "phi": true, "decision_audit": "sync" }),
        )
        .await;
    assert_eq!(rt.status, StatusCode::CREATED, "{}", rt.text);
    assert_eq!(rt.body["decision_audit"], "sync");
    let plain = h
        .post(
            "/api/v1/roles",
            json!({ "name": "clinician", "permissions": [{ "resource_type": "record", "actions": ["read"] }] }),
        )
        .await;
    let er = h
        .post("/api/v1/roles", json!({ "name": "emergency-reader", "break_glass": true, "permissions": [{ "resource_type": "record", "actions": ["read"] }] }))
        .await;
    assert_eq!(er.status, StatusCode::CREATED, "{}", er.text);
    assert_eq!(er.body["break_glass"], true);
    let (c, secret, _) = h.enrolled("dr.er").await;
    let body = json!({ "role_id": id(&er.body), "justification": "patient coding in bay 4, attending unavailable" });
    // Fresh from enrolment: allowed now; after 6 minutes a step-up is needed.
    h.advance(6 * 60);
    h.with_cookie(Method::POST, "/api/v1/break-glass", &c, Some(body.clone()))
        .await
        .problem(StatusCode::FORBIDDEN, "step-up-required");
    let up = h
        .with_cookie(Method::POST, "/api/v1/auth/totp", &c, Some(json!({ "code": totp_code(&secret, h.now()) })))
        .await;
    assert_eq!(up.status, StatusCode::OK, "{}", up.text);
    let c = session_cookie(&up.headers).unwrap();
    let not_eligible =
        json!({ "role_id": id(&plain.body), "justification": "patient coding in bay 4, attending unavailable" });
    h.with_cookie(Method::POST, "/api/v1/break-glass", &c, Some(not_eligible))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    let short = json!({ "role_id": id(&er.body), "justification": "urgent" });
    h.with_cookie(Method::POST, "/api/v1/break-glass", &c, Some(short))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    let too_long =
        json!({ "role_id": id(&er.body), "justification": "patient coding in bay 4", "duration_minutes": 100000 });
    h.with_cookie(Method::POST, "/api/v1/break-glass", &c, Some(too_long))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    let g = h.with_cookie(Method::POST, "/api/v1/break-glass", &c, Some(body)).await;
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
    assert_eq!(g.body["source"], "break_glass");
    assert_eq!(g.body["subject"]["id"], uid);
    let expires: DateTime<Utc> = g.body["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(expires - h.now(), chrono::Duration::minutes(60));
    let ev = h.events(&format!("action=break_glass.declared&target=grant:{}", id(&g.body))).await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["details"]["review_required"], true);
    assert_eq!(ev[0]["actor"], format!("user:{uid}"));
    // An API token cannot declare break-glass (it is a person's act).
    let t = h
        .post("/api/v1/break-glass", json!({ "role_id": id(&er.body), "justification": "patient coding in bay 4" }))
        .await;
    t.problem(StatusCode::UNAUTHORIZED, "unauthenticated");

    // Forbid rules: validated when saved.
    let bad = h
        .post(
            "/api/v1/forbid-rules",
            json!({ "name": "offsite", "when": { "kind": "network_outside", "networks": ["10.0.0.0/99"] } }),
        )
        .await;
    assert_eq!(bad.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation")["errors"][0]["field"], "when.networks[0]");
    let bad = h
        .post("/api/v1/forbid-rules", json!({ "name": "x", "resource_types": ["nope"], "when": { "kind": "always" } }))
        .await;
    bad.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    let ok = h
        .post(
            "/api/v1/forbid-rules",
            json!({ "name": "psych-needs-clearance", "resource_types": ["record"], "when": { "kind": "resource_property", "property": "category", "values": ["psychiatry"], "unless_group": "clearance-psych" } }),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
    let list = h.get("/api/v1/forbid-rules").await;
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(1));
    let del = h.delete(&format!("/api/v1/forbid-rules/{}?version=1", id(&ok.body))).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT, "{}", del.text);
    // Conditions on roles are validated too.
    let bad = h
        .post("/api/v1/roles", json!({ "name": "nights", "conditions": { "time_windows": [{ "time_zone": "Nowhere/Land", "start": "19:00", "end": "07:00" }] } }))
        .await;
    assert_eq!(
        bad.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation")["errors"][0]["field"],
        "conditions.time_windows[0].time_zone"
    );
}

/// A token's use is stamped (`last_used_at` and an `api_token.use` event) at most once a
/// minute, however many requests carry it at once: a burst of concurrent requests after the
/// stamp went stale writes one event between them, and the next minute's use writes the next.
async fn token_use_is_stamped_once_per_minute(h: &Harness) {
    assert_eq!(h.get("/api/v1/users").await.status, StatusCode::OK);
    let before = h.events("action=api_token.use&limit=500").await.len();
    assert!(before >= 1, "the first use is stamped");
    h.clock().advance(chrono::Duration::minutes(2));
    let burst = futures::future::join_all((0..16).map(|_| h.get("/api/v1/users"))).await;
    assert!(burst.iter().all(|r| r.status == StatusCode::OK));
    let events = h.events("action=api_token.use&limit=500").await;
    assert_eq!(events.len(), before + 1, "one stamp for the whole burst: {events:?}");
    h.clock().advance(chrono::Duration::minutes(2));
    assert_eq!(h.get("/api/v1/users").await.status, StatusCode::OK);
    assert_eq!(
        h.events("action=api_token.use&limit=500").await.len(),
        before + 2,
        "the next minute's use is stamped again"
    );
}

/// A code that is not the current one (nor, by construction, the previous or next).
fn wrong_code(secret: &str, at: DateTime<Utc>) -> String {
    let near: Vec<String> =
        [-30, 0, 30].iter().map(|d| totp_code(secret, at + chrono::Duration::seconds(*d))).collect();
    (0..1000).map(|n| format!("{n:06}")).find(|c| !near.contains(c)).unwrap()
}

/// Knowing the password must not give unlimited authenticator guesses: 30 rounds of right
/// password + wrong code lock the account after `lock_after` (10) failed second factors,
/// because a correct password no longer clears them; the right code does not get in while
/// locked; the lock lifts after its duration and a proved second factor clears the count.
async fn second_factor_guessing_is_locked_out(h: &Harness) {
    let uid = h.person("dr.guess").await;
    let (_, secret, _) = h.enrolled("dr.guess").await;
    let mut refused_at = None;
    for round in 1..=30 {
        h.advance(61);
        let r = h.login("dr.guess", PASSWORD).await;
        if r.status != StatusCode::OK {
            r.problem(StatusCode::UNAUTHORIZED, "login-failed");
            refused_at = Some(round);
            break;
        }
        let c = session_cookie(&r.headers).unwrap();
        let t = h
            .with_cookie(Method::POST, "/api/v1/auth/totp", &c, Some(json!({ "code": wrong_code(&secret, h.now()) })))
            .await;
        t.problem(StatusCode::UNAUTHORIZED, "second-factor-failed");
    }
    assert_eq!(refused_at, Some(11), "locked after 10 failed second factors, password or not");
    assert_eq!(h.events(&format!("action=auth.lockout&target=user:{uid}")).await.len(), 1);
    assert_eq!(h.events("action=auth.login_failed").await.last().unwrap()["reason"], "account locked");
    let st = h.get(&format!("/api/v1/users/{uid}/authn")).await;
    assert_eq!(st.body["locked"], true, "{}", st.text);
    // Still locked a little later, even with the right code in hand.
    h.advance(61);
    h.login("dr.guess", PASSWORD).await.problem(StatusCode::UNAUTHORIZED, "login-failed");
    // The lock runs out (30 min); then the right code signs in and clears the count.
    h.advance(31 * 60);
    h.sign_in_totp("dr.guess", &secret).await;
    let fails = h.events(&format!("action=auth.mfa_failed&target=user:{uid}")).await;
    assert_eq!(fails.last().unwrap()["details"]["consecutive_failures"], 10, "{fails:?}");
}

/// One session gets at most 5 second-factor attempts: the 5th failure ends it (the client
/// must start again from the password), and even the right code is refused on it then.
async fn second_factor_attempts_are_bounded_per_session(h: &Harness) {
    let uid = h.person("dr.bound").await;
    let (_, secret, _) = h.enrolled("dr.bound").await;
    h.advance(61);
    let r = h.login("dr.bound", PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let c = session_cookie(&r.headers).unwrap();
    for attempt in 1..=5 {
        h.advance(61);
        let t = h
            .with_cookie(Method::POST, "/api/v1/auth/totp", &c, Some(json!({ "code": wrong_code(&secret, h.now()) })))
            .await;
        let slug = if attempt < 5 { "second-factor-failed" } else { "session-expired" };
        t.problem(StatusCode::UNAUTHORIZED, slug);
    }
    h.advance(61);
    let t = h
        .with_cookie(Method::POST, "/api/v1/auth/totp", &c, Some(json!({ "code": totp_code(&secret, h.now()) })))
        .await;
    assert_eq!(t.status, StatusCode::UNAUTHORIZED, "{}", t.text);
    let revoked = h.events("action=session.revoke").await;
    assert!(
        revoked.iter().any(|e| e["details"]["user"] == format!("user:{uid}")
            && e["reason"].as_str().unwrap_or("").contains("5 failed second factors")),
        "{revoked:?}"
    );
    // Not locked (5 < 10): a new sign-in with the right code works.
    h.sign_in_totp("dr.bound", &secret).await;
}

/// A password typed into the username field never reaches the audit log: an unknown
/// username is recorded as a keyed hash, equal for equal text (attempts correlate), different
/// for different text.
async fn unknown_usernames_are_hashed_in_the_audit_log(h: &Harness) {
    let typed = "Hunter2-Correct-Staple-77";
    h.login(typed, PASSWORD).await.problem(StatusCode::UNAUTHORIZED, "login-failed");
    h.advance(1);
    h.login(typed, PASSWORD).await.problem(StatusCode::UNAUTHORIZED, "login-failed");
    h.advance(1);
    h.login("someone.else", PASSWORD).await.problem(StatusCode::UNAUTHORIZED, "login-failed");
    let all = h.get("/api/v1/audit/events?limit=500").await.text;
    for trace in [typed.to_owned(), typed.to_lowercase(), "someone.else".to_owned(), "Hunter2".to_owned()] {
        assert!(!all.to_lowercase().contains(&trace.to_lowercase()), "{trace} in the audit log");
    }
    let unknown: Vec<Value> =
        h.events("action=auth.login_failed").await.into_iter().filter(|e| e["reason"] == "unknown user").collect();
    assert_eq!(unknown.len(), 3, "{unknown:?}");
    let hashes: Vec<&str> = unknown.iter().map(|e| e["details"]["username_hmac"].as_str().unwrap()).collect();
    assert!(hashes.iter().all(|x| x.len() == 32 && x.chars().all(|c| c.is_ascii_hexdigit())), "{hashes:?}");
    assert!(unknown.iter().all(|e| e["details"].get("username").is_none()));
    assert_eq!(hashes[0], hashes[1], "the same text, the same hash");
    assert_ne!(hashes[0], hashes[2]);
}

/// Look-alike usernames are refused on every path that names a user: the admin API (create
/// and rename through SCIM), SCIM and HR imports. Full-width letters compare equal (PRECIS),
/// Cyrillic look-alikes share the confusable skeleton, compatibility forms are invalid.
async fn look_alike_usernames_are_refused(h: &Harness) {
    h.create_user("h.nurse").await;
    for name in ["\u{4bb}.nurse", "\u{ff48}.nurse", "H.NURSE"] {
        let r = h.post("/api/v1/users", json!({ "username": name })).await;
        let p = r.problem(StatusCode::CONFLICT, "duplicate");
        assert_eq!(p["field"], "username", "{name}: {}", r.text);
    }
    let r = h.post("/api/v1/users", json!({ "username": "\u{210e}.nurse" })).await;
    let p = r.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    assert_eq!(p["errors"][0]["field"], "username", "{}", r.text);
    // A different name is fine, including non-Latin ones that resemble nothing in use.
    h.create_user("\u{4bb}\u{430}\u{43a}.nurse").await;
    // SCIM: create and rename.
    let t = h.operator_token(json!({ "name": "idp", "scopes": ["scim"] })).await;
    assert_eq!(t.status, StatusCode::CREATED, "{}", t.text);
    let token = t.body["secret"].as_str().unwrap().to_owned();
    let scim = |method: Method, path: &str, body: Value| {
        let req = h
            .http
            .request(method, h.url(&format!("/scim/v2{path}")))
            .bearer_auth(&token)
            .header("content-type", "application/scim+json")
            .body(serde_json::to_vec(&body).unwrap());
        async move { Resp::read(req.send().await.expect("sent")).await }
    };
    let user = "urn:ietf:params:scim:schemas:core:2.0:User";
    let r = scim(Method::POST, "/Users", json!({ "schemas": [user], "userName": "\u{4bb}.nurse" })).await;
    assert_eq!(r.status.as_u16(), 409, "{}", r.text);
    let ok = scim(Method::POST, "/Users", json!({ "schemas": [user], "userName": "k.nurse" })).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
    let kid = id(&ok.body);
    let rename = scim(
        Method::PATCH,
        &format!("/Users/{kid}"),
        json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{ "op": "replace", "path": "userName", "value": "\u{ff48}.nurse" }] }),
    )
    .await;
    assert_eq!(rename.status.as_u16(), 409, "{}", rename.text);
    // HR import: the look-alike joiner is not created.
    let file = "employee_id,username,display_name\nE77,\u{4bb}.nurse,Look Alike\n";
    let req = h
        .http
        .post(h.url("/api/v1/hr/imports?apply=true"))
        .bearer_auth(&h.admin)
        .header("content-type", "text/csv")
        .body(file.as_bytes().to_vec());
    let r = Resp::read(req.send().await.expect("sent")).await;
    assert_ne!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text);
    let users = h.get("/api/v1/users?limit=500").await;
    let names: Vec<&str> =
        users.body["items"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
    assert_eq!(names.iter().filter(|n| n.ends_with(".nurse") && n.chars().count() == 7).count(), 2, "{names:?}");
    assert!(!names.contains(&"\u{4bb}.nurse") && !names.contains(&"\u{ff48}.nurse"), "{names:?}");
    // The original signs in by its name in any case or width.
    assert_eq!(h.get("/api/v1/users?username_prefix=h.nurse").await.body["items"].as_array().unwrap().len(), 1);
}

authn_on_both_stores!(
    sign_in_with_totp,
    no_user_enumeration,
    lockout_and_unlock,
    timeouts,
    sessions_end_with_the_account,
    session_listing_and_revocation,
    step_up_and_role_scopes,
    passkeys,
    bad_credentials,
    html_pages,
    forms_from_opaque_origins,
    break_glass_and_forbid_rules,
    token_use_is_stamped_once_per_minute,
    second_factor_guessing_is_locked_out,
    second_factor_attempts_are_bounded_per_session,
    unknown_usernames_are_hashed_in_the_audit_log,
    look_alike_usernames_are_refused,
);

// ------------------------------------------------------------------ slow and idle clients

mod connections {
    //! Slow clients over real TCP sockets: an idle connection, half-sent headers and a body
    //! trickled one byte at a time are cut off within their bounds while `/healthz` is served;
    //! over the connection cap new connections are closed at once, and the server recovers.
    use super::super::*;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use wardkey_server::listen::HttpLimits;

    const LIMITS: HttpLimits = HttpLimits {
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(2),
        max_connections: 8,
    };

    async fn server(tls: Option<wardkey_server::TlsConfig>) -> (RunningServer, String, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_sqlite_dir(&dir.path().join("data"), Arc::new(SystemClock)).await.expect("store");
        store.set_signer(signer());
        let services = Services::new(store, ServiceConfig::default());
        let admin = services.bootstrap().await.expect("bootstrap").expect("first start issues a token");
        let config = ServerConfig { tls, http: LIMITS, ..test_config() };
        let server = wardkey_server::spawn(config, services.clone()).await.expect("server starts");
        (server, admin, dir)
    }

    /// How long until the server closes `s` (reading and discarding whatever it sends), or
    /// `None` if it is still open after `within`.
    async fn closed_after(s: &mut TcpStream, within: Duration) -> Option<Duration> {
        let start = Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            let left = within.checked_sub(start.elapsed())?;
            match tokio::time::timeout(left, s.read(&mut buf)).await {
                Err(_) => return None,
                Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
                Ok(Ok(_)) => continue,
            }
        }
    }

    /// A fresh connection per request (no pooling), so each check really connects.
    fn client(pem: Option<&[u8]>) -> reqwest::Client {
        let b = reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(2));
        match pem {
            Some(p) => b.tls_certs_only([reqwest::Certificate::from_pem(p).expect("pem")]),
            None => b,
        }
        .build()
        .expect("client")
    }

    async fn healthz(http: &reqwest::Client, base: &str) -> bool {
        matches!(http.get(format!("{base}/healthz")).send().await, Ok(r) if r.status() == StatusCode::OK)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_clients_are_cut_off_and_the_cap_holds() {
        let (server, admin, _dir) = server(None).await;
        let addr = server.local_addr();
        let base = server.base_url();
        let http = client(None);

        // An idle connection, half-sent headers, and a body trickled a byte at a time.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        let mut half = TcpStream::connect(addr).await.unwrap();
        half.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").await.unwrap();
        let trickle = TcpStream::connect(addr).await.unwrap();
        let (mut trickle_rd, mut trickle_wr) = trickle.into_split();
        // Authorized, so the handler really waits for the body.
        let head = format!(
            "POST /api/v1/users HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {admin}\r\n\
             Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n{{"
        );
        trickle_wr.write_all(head.as_bytes()).await.unwrap();
        let trickle_started = Instant::now();
        let trickler = tokio::spawn(async move {
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if trickle_wr.write_all(b" ").await.is_err() {
                    return;
                }
            }
        });
        // Meanwhile other requests are served.
        assert!(healthz(&http, &base).await, "served beside slow clients");
        let idle_t = closed_after(&mut idle, Duration::from_secs(5)).await.expect("idle connection closed");
        assert!(idle_t < Duration::from_millis(2500), "idle closed after {idle_t:?}");
        let half_t = closed_after(&mut half, Duration::from_secs(5)).await.expect("half-sent headers closed");
        assert!(half_t < Duration::from_millis(2500), "half headers closed after {half_t:?}");
        let mut answer = Vec::new();
        let trickled = tokio::time::timeout(Duration::from_secs(6), trickle_rd.read_to_end(&mut answer)).await;
        assert!(trickled.is_ok(), "a trickled body is cut off (body timeout 2 s)");
        let took = trickle_started.elapsed();
        assert!(took < Duration::from_millis(4500), "body cut after {took:?}");
        // Cut by the body timeout, not refused at once (the header timer, 1 s, does not apply).
        assert!(took >= Duration::from_millis(1800), "cut after {took:?}: {}", String::from_utf8_lossy(&answer));
        trickler.abort();
        assert!(healthz(&http, &base).await);

        // A kept-alive connection that sends nothing after its request is closed too (the
        // header timer covers the wait for the next request).
        let mut kept = TcpStream::connect(addr).await.unwrap();
        kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
        let kept_t = closed_after(&mut kept, Duration::from_secs(5)).await.expect("kept-alive connection closed");
        assert!(kept_t < Duration::from_millis(2500), "kept-alive idle closed after {kept_t:?}");

        // The cap: 8 connections held open; the 9th is closed at once, /healthz fails fast
        // rather than hanging, and recovers when the held connections time out.
        let mut held = Vec::new();
        for _ in 0..LIMITS.max_connections {
            held.push(TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut extra = TcpStream::connect(addr).await.unwrap();
        let t = closed_after(&mut extra, Duration::from_millis(500)).await.expect("over the cap: closed");
        assert!(t < Duration::from_millis(500));
        let start = Instant::now();
        assert!(!healthz(&http, &base).await, "no slot free");
        assert!(start.elapsed() < Duration::from_millis(1500), "refused quickly, not hung");
        let start = Instant::now();
        let mut recovered = false;
        while start.elapsed() < Duration::from_secs(5) {
            if healthz(&http, &base).await {
                recovered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(recovered, "healthz recovers once held connections time out");
        drop(held);
        server.shutdown().await.expect("clean shutdown");
    }

    /// The same bounds on HTTPS: a connection that never completes its TLS handshake is
    /// closed within the header timeout, and the cap counts it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_handshakes_are_bounded_and_capped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let made = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
            .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("the openssl command makes the test certificate");
        assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
        let pem = std::fs::read(&cert).expect("cert");
        let (server, _admin, _data) = server(Some(wardkey_server::TlsConfig { cert_path: cert, key_path: key })).await;
        let addr = server.local_addr();
        let base = server.base_url();
        let http = client(Some(&pem));
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let mut hello_only = TcpStream::connect(addr).await.unwrap();
        hello_only.write_all(&[0x16, 0x03, 0x01, 0x00, 0x40]).await.unwrap();
        assert!(healthz(&http, &base).await, "HTTPS served beside stalled handshakes");
        let t = closed_after(&mut silent, Duration::from_secs(5)).await.expect("silent TLS connection closed");
        assert!(t < Duration::from_millis(2500), "closed after {t:?}");
        let t = closed_after(&mut hello_only, Duration::from_secs(5)).await.expect("half handshake closed");
        assert!(t < Duration::from_millis(2500), "closed after {t:?}");
        let mut held = Vec::new();
        for _ in 0..LIMITS.max_connections {
            held.push(TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut extra = TcpStream::connect(addr).await.unwrap();
        assert!(closed_after(&mut extra, Duration::from_millis(500)).await.is_some(), "over the cap: closed");
        let start = Instant::now();
        let mut recovered = false;
        while start.elapsed() < Duration::from_secs(5) {
            if healthz(&http, &base).await {
                recovered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(recovered, "HTTPS recovers once the stalled handshakes time out");
        drop(held);
        server.shutdown().await.expect("clean shutdown");
    }
}
