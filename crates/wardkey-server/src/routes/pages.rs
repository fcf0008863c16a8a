//! Server-rendered pages for people signing in: sign-in, second factor, enrolment (TOTP with a
//! QR code, passkeys), and their account (sessions, sign-out). Plain HTML forms that work
//! without JavaScript; only the passkey ceremonies need the small script at
//! `/assets/passkey.js`, which calls the JSON API.
//!
//! Forms carry a CSRF token that must equal the `__Host-wardkey_csrf` cookie (double submit),
//! and posts must come from our own origin. A refused form writes only its audit event.

use crate::AppState;
use crate::extract::{check_same_origin, cookie, request_meta, session_caller};
use crate::problem::Problem;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use subtle::ConstantTimeEq;
use wardkey_domain::{SessionId, SessionStage};
use wardkey_service::{NextStep, ServiceError, SessionCaller};

const CSRF_COOKIE: &str = "__Host-wardkey_csrf";
/// Largest form accepted (a password is at most 1 KiB; the rest are short).
const MAX_FORM_BYTES: usize = 8 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { redirect("/account") }))
        .route("/login", get(login_page).post(login_submit))
        .route("/login/second-factor", get(second_factor_page))
        .route("/login/totp", post(totp_submit))
        .route("/login/recovery", post(recovery_submit))
        .route("/enrol", get(enrol_page))
        .route("/enrol/totp", post(enrol_totp_start))
        .route("/enrol/totp/confirm", post(enrol_totp_confirm))
        .route("/account", get(account_page))
        .route("/account/sessions/{id}/end", post(end_session_submit))
        .route("/logout", post(logout_submit))
        .route("/assets/passkey.js", get(passkey_js))
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn redirect(to: &'static str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    res.headers_mut().insert(header::LOCATION, HeaderValue::from_static(to));
    res
}

fn with_cookie(mut res: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(c) = cookie {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}

/// A page: our layout, strict CSP (scripts only from our origin), never cached, not framed.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · Wardkey</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <style>body{{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;line-height:1.5}}\
         label{{display:block;margin:.6rem 0 .2rem}}input{{font-size:1rem;padding:.4rem;width:100%;box-sizing:border-box}}\
         button{{font-size:1rem;padding:.45rem 1rem;margin-top:.8rem}}.error{{color:#a00;font-weight:600}}\
         code,pre{{background:#f4f4f4;padding:.15rem .3rem}}table{{border-collapse:collapse}}td,th{{padding:.2rem .5rem;text-align:left}}</style>\
         </head><body><h1>{}</h1>{}</body></html>",
        esc(title),
        esc(title),
        body
    );
    let mut res = (status, html).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    res
}

fn error_html(message: &str) -> String {
    format!("<p class=\"error\" role=\"alert\">{}</p>", esc(message))
}

// ----------------------------------------------------------------------------- CSRF

/// The CSRF token for a form: the existing cookie's, or a new one to set.
fn csrf_token(headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    if let Some(v) = cookie(headers, CSRF_COOKIE).filter(|v| v.len() == 43) {
        return (v.to_owned(), None);
    }
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let set = HeaderValue::from_str(&format!("{CSRF_COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict")).ok();
    (token, set)
}

fn csrf_field(token: &str) -> String {
    format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(token))
}

/// A submitted form: fields as raw bytes (a password may be any bytes; the service decides).
struct Form {
    fields: Vec<(String, Vec<u8>)>,
}

impl Form {
    fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }

    fn text(&self, name: &str) -> String {
        self.get(name).map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default()
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `application/x-www-form-urlencoded` to raw bytes (percent-decoding, `+` as space).
fn decode_component(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s.get(i) {
            Some(b'+') => {
                out.push(b' ');
                i += 1;
            }
            Some(b'%') => match (s.get(i + 1).copied().and_then(hex_val), s.get(i + 2).copied().and_then(hex_val)) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            Some(b) => {
                out.push(*b);
                i += 1;
            }
            None => break,
        }
    }
    out
}

fn parse_form(body: &[u8]) -> Form {
    let fields = body
        .split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .take(32)
        .map(|pair| {
            let mut it = pair.splitn(2, |b| *b == b'=');
            let name = decode_component(it.next().unwrap_or_default());
            let value = decode_component(it.next().unwrap_or_default());
            (String::from_utf8_lossy(&name).into_owned(), value)
        })
        .collect();
    Form { fields }
}

/// Checks content type, size, origin and the CSRF token of a posted form. A refusal is
/// audited (`auth.csrf_refused`) and answered with a page that says what to do.
async fn accept_form(s: &AppState, parts: &Parts, body: &Bytes) -> Result<Form, Response> {
    let refuse = |reason: &'static str| async move {
        let _ = s.services.audit_refusal(&request_meta(parts), "auth.csrf_refused", reason).await;
        page(
            StatusCode::FORBIDDEN,
            "Form refused",
            &format!(
                "{}<p><a href=\"/login\">Reload the sign-in page</a> and try again.</p>",
                error_html("This form expired or was sent from another site, so it was not accepted.")
            ),
        )
    };
    let ct = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !ct.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded") {
        return Err(page(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Form refused",
            &error_html("Send the form as application/x-www-form-urlencoded."),
        ));
    }
    if body.len() > MAX_FORM_BYTES {
        return Err(page(StatusCode::PAYLOAD_TOO_LARGE, "Form refused", &error_html("The form is too large.")));
    }
    if check_same_origin(parts, s).is_err() {
        return Err(refuse("cross-origin form post").await);
    }
    let form = parse_form(body);
    let sent = form.get("csrf").unwrap_or_default();
    let ok = cookie(&parts.headers, CSRF_COOKIE).is_some_and(|c| !c.is_empty() && ct_eq(c.as_bytes(), sent));
    if !ok {
        return Err(refuse("missing or wrong CSRF token").await);
    }
    Ok(form)
}

/// A page-friendly answer for a session that is missing or at the wrong step.
fn session_problem(p: Problem) -> Response {
    match p.kind {
        crate::problem::Kind::SignInIncomplete => redirect("/login/second-factor"),
        _ => redirect("/login"),
    }
}

async fn page_session(s: &AppState, parts: &Parts, stages: &[SessionStage]) -> Result<SessionCaller, Response> {
    session_caller(parts, s, stages).await.map_err(session_problem)
}

fn next_location(next: NextStep) -> &'static str {
    match next {
        NextStep::SecondFactor => "/login/second-factor",
        NextStep::Enrol => "/enrol",
        NextStep::Done => "/account",
    }
}

fn session_set_cookie(token: &str) -> Option<HeaderValue> {
    super::authn::session_cookie(token)
}

// ----------------------------------------------------------------------------- sign-in

fn login_form(csrf: &str, error: Option<&str>, username: &str) -> String {
    format!(
        "{}<form method=\"post\" action=\"/login\">{}\
         <label for=\"username\">Username</label><input id=\"username\" name=\"username\" autocomplete=\"username\" value=\"{}\" required maxlength=\"256\">\
         <label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Sign in</button></form>",
        error.map(error_html).unwrap_or_default(),
        csrf_field(csrf),
        esc(username)
    )
}

async fn login_page(parts: Parts) -> Response {
    let (csrf, set) = csrf_token(&parts.headers);
    with_cookie(page(StatusCode::OK, "Sign in", &login_form(&csrf, None, "")), set)
}

async fn login_submit(State(s): State<AppState>, parts: Parts, body: Bytes) -> Response {
    let form = match accept_form(&s, &parts, &body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let username = form.text("username");
    let password = form.get("password").unwrap_or_default();
    let (csrf, _) = csrf_token(&parts.headers);
    match s.services.login_password(&username, password, request_meta(&parts), super::authn::user_agent(&parts)).await {
        Ok(step) => with_cookie(redirect(next_location(step.next)), session_set_cookie(&step.token)),
        Err(e) => {
            let (status, message) = match &e {
                ServiceError::RateLimited { .. } => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many attempts from this address. Wait a moment and try again.".to_owned(),
                ),
                ServiceError::Invalid(errors) => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    errors.iter().map(|e| e.message.clone()).collect::<Vec<_>>().join("; "),
                ),
                ServiceError::LoginFailed => (
                    StatusCode::UNAUTHORIZED,
                    "The username or password is wrong, or the account cannot sign in now.".to_owned(),
                ),
                _ => {
                    let p = Problem::from(e);
                    (p.kind.status(), "Sign-in is unavailable right now. Try again later.".to_owned())
                }
            };
            page(status, "Sign in", &login_form(&csrf, Some(&message), &username))
        }
    }
}

fn second_factor_body(csrf: &str, error: Option<&str>, step_up: bool) -> String {
    let intro = if step_up {
        "<p>Confirm it is you: this action needs a fresh second factor.</p>"
    } else {
        "<p>Your password was accepted. Prove your second factor to finish signing in.</p>"
    };
    format!(
        "{}{intro}<h2>Authenticator app</h2><form method=\"post\" action=\"/login/totp\">{}\
         <label for=\"code\">6-digit code</label><input id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" pattern=\"[0-9 ]*\" maxlength=\"8\" required>\
         <button type=\"submit\">Verify</button></form>\
         <h2>Passkey</h2><p><button type=\"button\" id=\"passkey-signin\" data-next=\"/account\">Use a passkey</button></p>\
         <p id=\"passkey-status\" role=\"status\"></p>\
         <h2>Recovery code</h2><form method=\"post\" action=\"/login/recovery\">{}\
         <label for=\"rcode\">Recovery code</label><input id=\"rcode\" name=\"code\" autocomplete=\"off\" maxlength=\"32\" required>\
         <button type=\"submit\">Use recovery code</button></form>\
         <form method=\"post\" action=\"/logout\">{}<button type=\"submit\">Cancel and sign out</button></form>\
         <script src=\"/assets/passkey.js\"></script>",
        error.map(error_html).unwrap_or_default(),
        csrf_field(csrf),
        csrf_field(csrf),
        csrf_field(csrf),
    )
}

async fn second_factor_page(State(s): State<AppState>, parts: Parts) -> Response {
    let sc = match page_session(&s, &parts, &[SessionStage::SecondFactor, SessionStage::Active]).await {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let (csrf, set) = csrf_token(&parts.headers);
    let step_up = sc.session.stage == SessionStage::Active;
    with_cookie(page(StatusCode::OK, "Second factor", &second_factor_body(&csrf, None, step_up)), set)
}

async fn factor_submit(s: AppState, parts: Parts, body: Bytes, recovery: bool) -> Response {
    let form = match accept_form(&s, &parts, &body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let sc = match page_session(&s, &parts, &[SessionStage::SecondFactor, SessionStage::Active]).await {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let code = form.text("code");
    let r = if recovery {
        s.services.verify_recovery_code(&sc, &code).await
    } else {
        s.services.verify_totp(&sc, &code).await
    };
    let (csrf, _) = csrf_token(&parts.headers);
    match r {
        Ok(step) => with_cookie(redirect("/account"), session_set_cookie(&step.token)),
        Err(ServiceError::SessionExpired) => redirect("/login"),
        Err(e) => {
            let msg = match e {
                ServiceError::SecondFactorFailed => {
                    "That code was not accepted. Codes work once; wait for the next one.".to_owned()
                }
                ServiceError::Invalid(errors) => {
                    errors.iter().map(|e| e.message.clone()).collect::<Vec<_>>().join("; ")
                }
                _ => "The second factor could not be checked right now.".to_owned(),
            };
            let step_up = sc.session.stage == SessionStage::Active;
            page(StatusCode::UNAUTHORIZED, "Second factor", &second_factor_body(&csrf, Some(&msg), step_up))
        }
    }
}

async fn totp_submit(State(s): State<AppState>, parts: Parts, body: Bytes) -> Response {
    factor_submit(s, parts, body, false).await
}

async fn recovery_submit(State(s): State<AppState>, parts: Parts, body: Bytes) -> Response {
    factor_submit(s, parts, body, true).await
}

// ----------------------------------------------------------------------------- enrolment

fn enrol_body(csrf: &str, error: Option<&str>) -> String {
    format!(
        "{}<p>Wardkey requires a second factor. Set one up now.</p>\
         <h2>Authenticator app</h2><form method=\"post\" action=\"/enrol/totp\">{}\
         <button type=\"submit\">Set up an authenticator app</button></form>\
         <h2>Passkey</h2><p>A passkey (security key, phone or this device) also protects against phishing.</p>\
         <label for=\"passkey-name\">Name for this passkey</label><input id=\"passkey-name\" maxlength=\"100\" value=\"Passkey\">\
         <p><button type=\"button\" id=\"passkey-register\">Register a passkey</button></p><p id=\"passkey-status\" role=\"status\"></p>\
         <script src=\"/assets/passkey.js\"></script>",
        error.map(error_html).unwrap_or_default(),
        csrf_field(csrf)
    )
}

async fn enrol_page(State(s): State<AppState>, parts: Parts) -> Response {
    let sc = match page_session(&s, &parts, &[SessionStage::Enrol, SessionStage::Active]).await {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let _ = sc;
    let (csrf, set) = csrf_token(&parts.headers);
    with_cookie(page(StatusCode::OK, "Set up a second factor", &enrol_body(&csrf, None)), set)
}

fn enrol_error_page(csrf: &str, e: ServiceError) -> Response {
    match e {
        ServiceError::StepUpRequired => redirect("/login/second-factor"),
        ServiceError::SessionExpired => redirect("/login"),
        ServiceError::Invalid(errors) => page(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Set up a second factor",
            &enrol_body(csrf, Some(&errors.iter().map(|e| e.message.clone()).collect::<Vec<_>>().join("; "))),
        ),
        other => {
            let p = Problem::from(other);
            page(p.kind.status(), "Set up a second factor", &enrol_body(csrf, Some(&p.detail)))
        }
    }
}

async fn enrol_totp_start(State(s): State<AppState>, parts: Parts, body: Bytes) -> Response {
    if let Err(r) = accept_form(&s, &parts, &body).await {
        return r;
    }
    let sc = match page_session(&s, &parts, &[SessionStage::Enrol, SessionStage::Active]).await {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let (csrf, _) = csrf_token(&parts.headers);
    match s.services.totp_enrol_begin(&sc, None).await {
        Ok(e) => page(StatusCode::OK, "Set up an authenticator app", &totp_confirm_body(&csrf, &e, None)),
        Err(e) => enrol_error_page(&csrf, e),
    }
}

fn totp_confirm_body(csrf: &str, e: &wardkey_service::TotpEnrolment, error: Option<&str>) -> String {
    let qr =
        format!("data:image/svg+xml;base64,{}", base64::engine::general_purpose::STANDARD.encode(e.qr_svg.as_bytes()));
    format!(
        "{}<p>Scan this code with your authenticator app, or enter the key by hand.</p>\
         <p><img src=\"{}\" alt=\"QR code of the TOTP key\" width=\"240\" height=\"240\"></p>\
         <p>Key: <code>{}</code></p>\
         <form method=\"post\" action=\"/enrol/totp/confirm\">{}<input type=\"hidden\" name=\"factor_id\" value=\"{}\">\
         <label for=\"code\">Enter the 6-digit code the app shows</label><input id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" maxlength=\"8\" required>\
         <button type=\"submit\">Confirm</button></form>",
        error.map(error_html).unwrap_or_default(),
        esc(&qr),
        esc(&e.secret),
        csrf_field(csrf),
        esc(&e.factor_id.to_string())
    )
}

async fn enrol_totp_confirm(State(s): State<AppState>, parts: Parts, body: Bytes) -> Response {
    let form = match accept_form(&s, &parts, &body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let sc = match page_session(&s, &parts, &[SessionStage::Enrol, SessionStage::Active]).await {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let (csrf, _) = csrf_token(&parts.headers);
    let Ok(factor_id) = form.text("factor_id").parse::<wardkey_domain::FactorId>() else {
        return enrol_error_page(&csrf, ServiceError::invalid("factor_id", "start the enrolment again"));
    };
    match s.services.totp_enrol_confirm(&sc, factor_id, &form.text("code")).await {
        Ok(done) => {
            let codes = done
                .recovery_codes
                .as_ref()
                .map(|c| {
                    format!(
                        "<h2>Recovery codes</h2><p>Keep these somewhere safe. Each works once if you lose your device. They are shown only now.</p><pre>{}</pre>",
                        esc(&c.join("\n"))
                    )
                })
                .unwrap_or_default();
            let body =
                format!("<p>Your authenticator app is set up.</p>{codes}<p><a href=\"/account\">Continue</a></p>");
            let cookie = done.sign_in.as_ref().and_then(|s| session_set_cookie(&s.token));
            with_cookie(page(StatusCode::OK, "Second factor enrolled", &body), cookie)
        }
        Err(ServiceError::Invalid(errors)) => {
            // Show the same key again so the person can retry with the next code.
            let msg = errors.iter().map(|e| e.message.clone()).collect::<Vec<_>>().join("; ");
            page(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Set up an authenticator app",
                &format!("{}<p><a href=\"/enrol\">Start again</a></p>", error_html(&msg)),
            )
        }
        Err(e) => enrol_error_page(&csrf, e),
    }
}

// ----------------------------------------------------------------------------- account

async fn account_page(State(s): State<AppState>, parts: Parts) -> Response {
    let sc = match page_session(&s, &parts, &[SessionStage::Active]).await {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let me = match s.services.me(&sc).await {
        Ok(m) => m,
        Err(_) => return redirect("/login"),
    };
    let sessions =
        s.services.list_own_sessions(&sc, wardkey_service::PageRequest { after: None, limit: Some(100) }).await;
    let (csrf, set) = csrf_token(&parts.headers);
    let mut rows = String::new();
    for ses in sessions.map(|p| p.items).unwrap_or_default() {
        let this = if ses.id == sc.session.id { " (this one)" } else { "" };
        rows.push_str(&format!(
            "<tr><td>{}{}</td><td>{}</td><td>{}</td><td><form method=\"post\" action=\"/account/sessions/{}/end\">{}<button type=\"submit\">End</button></form></td></tr>",
            esc(&ses.created_at.format("%Y-%m-%d %H:%M UTC").to_string()),
            this,
            esc(ses.source_ip.as_deref().unwrap_or("-")),
            esc(ses.user_agent.as_deref().unwrap_or("-")),
            esc(&ses.id.to_string()),
            csrf_field(&csrf)
        ));
    }
    let factors: String = me
        .factors
        .iter()
        .filter(|f| f.confirmed)
        .map(|f| format!("<li>{} ({})</li>", esc(&f.name), esc(f.kind.as_str())))
        .collect();
    let warn = if sc.caller.session.as_ref().is_some_and(|c| c.must_change_password) {
        error_html("Your password must be changed (it was marked compromised). Use the API: POST /api/v1/me/password.")
    } else {
        String::new()
    };
    let body = format!(
        "{warn}<p>Signed in as <strong>{}</strong>. Sessions end after {} minutes without activity.</p>\
         <h2>Second factors</h2><ul>{factors}</ul><p>{} recovery codes left. <a href=\"/enrol\">Add a factor</a> (asks for a second factor again).</p>\
         <h2>Your sessions</h2><table><tr><th>Started</th><th>From</th><th>Browser</th><th></th></tr>{rows}</table>\
         <form method=\"post\" action=\"/logout\">{}<button type=\"submit\">Sign out</button></form>",
        esc(&me.user.username),
        me.idle_timeout_secs / 60,
        me.recovery_codes_left,
        csrf_field(&csrf)
    );
    with_cookie(page(StatusCode::OK, "Your account", &body), set)
}

async fn end_session_submit(State(s): State<AppState>, Path(id): Path<String>, parts: Parts, body: Bytes) -> Response {
    if let Err(r) = accept_form(&s, &parts, &body).await {
        return r;
    }
    let sc = match page_session(&s, &parts, &[SessionStage::Active]).await {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let Ok(id) = id.parse::<SessionId>() else {
        return page(StatusCode::BAD_REQUEST, "Your account", &error_html("No such session."));
    };
    let ended_self = id == sc.session.id;
    match s.services.end_own_session(&sc, id).await {
        Ok(()) if ended_self => with_cookie(redirect("/login"), super::authn::clear_cookie()),
        Ok(()) => redirect("/account"),
        Err(e) => {
            let p = Problem::from(e);
            page(
                p.kind.status(),
                "Your account",
                &format!("{}<p><a href=\"/account\">Back</a></p>", error_html(&p.detail)),
            )
        }
    }
}

async fn logout_submit(State(s): State<AppState>, parts: Parts, body: Bytes) -> Response {
    if let Err(r) = accept_form(&s, &parts, &body).await {
        return r;
    }
    if let Ok(sc) =
        session_caller(&parts, &s, &[SessionStage::SecondFactor, SessionStage::Enrol, SessionStage::Active]).await
    {
        let _ = s.services.logout(&sc).await;
    }
    with_cookie(redirect("/login"), super::authn::clear_cookie())
}

// ----------------------------------------------------------------------------- script

/// The passkey ceremonies: base64url <-> ArrayBuffer around navigator.credentials, posting
/// to the JSON API with the session cookie. Everything else works without it.
const PASSKEY_JS: &str = r#"(function () {
  "use strict";
  function b64uToBuf(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }
  function bufToB64u(buf) {
    var bytes = new Uint8Array(buf), bin = "";
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function status(msg) { var el = document.getElementById("passkey-status"); if (el) el.textContent = msg; }
  async function post(url, body) {
    var r = await fetch(url, { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {}) });
    var data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (!r.ok) throw new Error((data && data.detail) || ("HTTP " + r.status));
    return data;
  }
  async function signIn(btn) {
    try {
      status("Waiting for your passkey...");
      var opts = await post("/api/v1/auth/webauthn/challenge");
      var pk = opts.publicKey;
      pk.challenge = b64uToBuf(pk.challenge);
      (pk.allowCredentials || []).forEach(function (c) { c.id = b64uToBuf(c.id); });
      var cred = await navigator.credentials.get({ publicKey: pk });
      await post("/api/v1/auth/webauthn", {
        id: cred.id, rawId: bufToB64u(cred.rawId), type: cred.type, extensions: {},
        response: {
          authenticatorData: bufToB64u(cred.response.authenticatorData),
          clientDataJSON: bufToB64u(cred.response.clientDataJSON),
          signature: bufToB64u(cred.response.signature),
          userHandle: cred.response.userHandle ? bufToB64u(cred.response.userHandle) : null
        }
      });
      window.location.href = btn.getAttribute("data-next") || "/account";
    } catch (e) { status("Passkey not accepted: " + e.message); }
  }
  async function register() {
    try {
      status("Follow your browser's prompt...");
      var nameEl = document.getElementById("passkey-name");
      var opts = await post("/api/v1/me/factors/webauthn/challenge", { name: nameEl ? nameEl.value : null });
      var pk = opts.publicKey;
      pk.challenge = b64uToBuf(pk.challenge);
      pk.user.id = b64uToBuf(pk.user.id);
      (pk.excludeCredentials || []).forEach(function (c) { c.id = b64uToBuf(c.id); });
      var cred = await navigator.credentials.create({ publicKey: pk });
      var done = await post("/api/v1/me/factors/webauthn", {
        id: cred.id, rawId: bufToB64u(cred.rawId), type: cred.type, extensions: {},
        response: {
          attestationObject: bufToB64u(cred.response.attestationObject),
          clientDataJSON: bufToB64u(cred.response.clientDataJSON)
        }
      });
      var msg = "Passkey registered.";
      if (done && done.recovery_codes) msg += " Recovery codes (shown once): " + done.recovery_codes.join("  ");
      status(msg);
      var link = document.createElement("a"); link.href = "/account"; link.textContent = " Continue";
      var el = document.getElementById("passkey-status"); if (el) el.appendChild(link);
    } catch (e) { status("Passkey not registered: " + e.message); }
  }
  document.addEventListener("DOMContentLoaded", function () {
    var a = document.getElementById("passkey-signin");
    if (a) a.addEventListener("click", function () { signIn(a); });
    var b = document.getElementById("passkey-register");
    if (b) b.addEventListener("click", register);
  });
})();
"#;

async fn passkey_js() -> Response {
    let mut res = PASSKEY_JS.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_to_raw_bytes() {
        let f = parse_form(b"username=nurse+joy&password=%FF%FEab%25&csrf=x&broken=%G1");
        assert_eq!(f.text("username"), "nurse joy");
        assert_eq!(f.get("password"), Some(&[0xFF, 0xFE, b'a', b'b', b'%'][..]));
        assert_eq!(f.get("broken"), Some(&b"%G1"[..]));
        assert_eq!(f.get("missing"), None);
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(esc("<script>\"x\"&'"), "&lt;script&gt;&quot;x&quot;&amp;&#39;");
    }
}
