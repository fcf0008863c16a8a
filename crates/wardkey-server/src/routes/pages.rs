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
use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use subtle::ConstantTimeEq;
use wardkey_audit::Action;
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
        .route("/assets/wardkey.css", get(stylesheet))
        .route("/assets/icon.svg", get(icon_svg))
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
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

// ----------------------------------------------------------------------------- layout

/// The console's navigation, in order. Pages for people who are signed in show it; later
/// console pages (access requests, approvals, reviews) add their entry here.
const NAV: &[(&str, &str)] = &[("/account", "Your account")];

/// What the shared layout (`templates/layout.html`) needs from every page.
struct Chrome {
    title: &'static str,
    /// The form token for this page's forms, sign-out included.
    csrf: String,
    /// The person whose session this is, shown with sign-out.
    person: Option<Person>,
    nav: Vec<NavLink>,
    /// A message shown above the content (`role="alert"`).
    error: Option<String>,
    /// A single narrow column (sign-in steps) rather than the console width.
    narrow: bool,
}

struct Person {
    name: String,
    /// False while signing in (second factor, first enrolment).
    signed_in: bool,
}

struct NavLink {
    href: &'static str,
    label: &'static str,
    current: bool,
}

impl Chrome {
    /// A page before anyone is known (sign-in, refused forms).
    fn anonymous(title: &'static str, csrf: &str) -> Chrome {
        Chrome { title, csrf: csrf.to_owned(), person: None, nav: Vec::new(), error: None, narrow: true }
    }

    /// A page for the holder of `sc`; `current` is the navigation entry to mark.
    fn session(title: &'static str, csrf: &str, sc: &SessionCaller, name: String, current: &str) -> Chrome {
        let signed_in = sc.session.stage == SessionStage::Active;
        let nav = if signed_in { nav_links(current) } else { Vec::new() };
        Chrome {
            title,
            csrf: csrf.to_owned(),
            person: Some(Person { name, signed_in }),
            nav,
            error: None,
            narrow: !signed_in,
        }
    }

    fn error(mut self, message: Option<String>) -> Chrome {
        self.error = message;
        self
    }

    fn wide(mut self) -> Chrome {
        self.narrow = false;
        self
    }

    fn narrow(mut self) -> Chrome {
        self.narrow = true;
        self
    }

    /// The sign-in just finished on this page: show the person signed in, with navigation.
    fn signed_in(mut self, current: &str) -> Chrome {
        if let Some(p) = self.person.as_mut() {
            p.signed_in = true;
        }
        self.nav = nav_links(current);
        self.narrow = false;
        self
    }
}

fn nav_links(current: &str) -> Vec<NavLink> {
    NAV.iter().map(|&(href, label)| NavLink { href, label, current: href == current }).collect()
}

/// The name to show for the holder of `sc` (display name, else username).
async fn person_name(s: &AppState, sc: &SessionCaller) -> String {
    match s.services.me(sc).await {
        Ok(me) => me.user.display_name.filter(|n| !n.trim().is_empty()).unwrap_or(me.user.username),
        Err(_) => String::new(),
    }
}

/// Renders a page with our headers: strict CSP (scripts, styles and images only from our
/// origin, plus the QR code's `data:` image), never cached, not framed. The referrer policy
/// keeps our origin on same-origin requests: under `no-referrer` Chromium sends `Origin: null`
/// on our own form posts.
fn render(status: StatusCode, page: &impl Template) -> Response {
    let html = match page.render() {
        Ok(html) => html,
        Err(e) => {
            tracing::error!(error = %e, "rendering a page failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "The page could not be shown.").into_response();
        }
    };
    let mut res = (status, html).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    res
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    chrome: Chrome,
    text: Option<&'static str>,
    link: Option<(&'static str, &'static str)>,
}

/// A page that only says what went wrong, with a way on.
fn message(
    status: StatusCode,
    title: &'static str,
    error: String,
    link: Option<(&'static str, &'static str)>,
) -> Response {
    render(status, &MessagePage { chrome: Chrome::anonymous(title, "").error(Some(error)), text: None, link })
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
        let _ = s.services.audit_refusal(&request_meta(parts), Action::AuthCsrfRefused, reason).await;
        message(
            StatusCode::FORBIDDEN,
            "Form refused",
            "This form expired or was sent from another site, so it was not accepted.".to_owned(),
            Some(("/login", "Reload the sign-in page and try again")),
        )
    };
    let ct = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !ct.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded") {
        return Err(message(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Form refused",
            "Send the form as application/x-www-form-urlencoded.".to_owned(),
            None,
        ));
    }
    if body.len() > MAX_FORM_BYTES {
        return Err(message(StatusCode::PAYLOAD_TOO_LARGE, "Form refused", "The form is too large.".to_owned(), None));
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

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    chrome: Chrome,
    username: String,
}

async fn login_page(parts: Parts) -> Response {
    let (csrf, set) = csrf_token(&parts.headers);
    let page = LoginPage { chrome: Chrome::anonymous("Sign in", &csrf), username: String::new() };
    with_cookie(render(StatusCode::OK, &page), set)
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
            let page = LoginPage { chrome: Chrome::anonymous("Sign in", &csrf).error(Some(message)), username };
            render(status, &page)
        }
    }
}

#[derive(Template)]
#[template(path = "second_factor.html")]
struct SecondFactorPage {
    chrome: Chrome,
    /// An active session proving a factor again (step-up), not finishing a sign-in.
    step_up: bool,
}

async fn second_factor_page(State(s): State<AppState>, parts: Parts) -> Response {
    let sc = match page_session(&s, &parts, &[SessionStage::SecondFactor, SessionStage::Active]).await {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let (csrf, set) = csrf_token(&parts.headers);
    let name = person_name(&s, &sc).await;
    let step_up = sc.session.stage == SessionStage::Active;
    let page = SecondFactorPage { chrome: Chrome::session("Second factor", &csrf, &sc, name, "").narrow(), step_up };
    with_cookie(render(StatusCode::OK, &page), set)
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
            let name = person_name(&s, &sc).await;
            let step_up = sc.session.stage == SessionStage::Active;
            let chrome = Chrome::session("Second factor", &csrf, &sc, name, "").narrow().error(Some(msg));
            render(StatusCode::UNAUTHORIZED, &SecondFactorPage { chrome, step_up })
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

#[derive(Template)]
#[template(path = "enrol.html")]
struct EnrolPage {
    chrome: Chrome,
    /// Adding another factor from the account page rather than a first enrolment.
    has_factors: bool,
}

async fn enrol_chrome(s: &AppState, sc: &SessionCaller, csrf: &str, title: &'static str) -> Chrome {
    let name = person_name(s, sc).await;
    Chrome::session(title, csrf, sc, name, "/account")
}

async fn enrol_page(State(s): State<AppState>, parts: Parts) -> Response {
    let sc = match page_session(&s, &parts, &[SessionStage::Enrol, SessionStage::Active]).await {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let (csrf, set) = csrf_token(&parts.headers);
    let has_factors = sc.session.stage == SessionStage::Active;
    let chrome = enrol_chrome(&s, &sc, &csrf, "Set up a second factor").await.wide();
    with_cookie(render(StatusCode::OK, &EnrolPage { chrome, has_factors }), set)
}

async fn enrol_error_page(s: &AppState, sc: &SessionCaller, csrf: &str, e: ServiceError) -> Response {
    let (status, message) = match e {
        ServiceError::StepUpRequired => return redirect("/login/second-factor"),
        ServiceError::SessionExpired => return redirect("/login"),
        ServiceError::Invalid(errors) => {
            (StatusCode::UNPROCESSABLE_ENTITY, errors.iter().map(|e| e.message.clone()).collect::<Vec<_>>().join("; "))
        }
        other => {
            let p = Problem::from(other);
            (p.kind.status(), p.detail)
        }
    };
    let has_factors = sc.session.stage == SessionStage::Active;
    let chrome = enrol_chrome(s, sc, csrf, "Set up a second factor").await.wide().error(Some(message));
    render(status, &EnrolPage { chrome, has_factors })
}

#[derive(Template)]
#[template(path = "totp_setup.html")]
struct TotpSetupPage {
    chrome: Chrome,
    /// The QR code as a `data:` URL (the CSP allows `data:` images only for this).
    qr: String,
    secret: String,
    factor_id: String,
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
        Ok(e) => {
            let page = TotpSetupPage {
                chrome: enrol_chrome(&s, &sc, &csrf, "Set up an authenticator app").await,
                qr: format!(
                    "data:image/svg+xml;base64,{}",
                    base64::engine::general_purpose::STANDARD.encode(e.qr_svg.as_bytes())
                ),
                secret: e.secret,
                factor_id: e.factor_id.to_string(),
            };
            render(StatusCode::OK, &page)
        }
        Err(e) => enrol_error_page(&s, &sc, &csrf, e).await,
    }
}

#[derive(Template)]
#[template(path = "totp_done.html")]
struct TotpDonePage {
    chrome: Chrome,
    /// Shown once, after the first factor.
    recovery_codes: Option<Vec<String>>,
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
        return enrol_error_page(&s, &sc, &csrf, ServiceError::invalid("factor_id", "start the enrolment again")).await;
    };
    match s.services.totp_enrol_confirm(&sc, factor_id, &form.text("code")).await {
        Ok(done) => {
            let cookie = done.sign_in.as_ref().and_then(|s| session_set_cookie(&s.token));
            // The first factor finishes the sign-in: the layout shows the person signed in.
            let mut chrome = enrol_chrome(&s, &sc, &csrf, "Second factor enrolled").await;
            if done.sign_in.is_some() {
                chrome = chrome.signed_in("/account");
            }
            let page = TotpDonePage { chrome, recovery_codes: done.recovery_codes };
            with_cookie(render(StatusCode::OK, &page), cookie)
        }
        Err(ServiceError::Invalid(errors)) => {
            // The key is not kept on the page after a failed code; start again with a new one.
            let msg = errors.iter().map(|e| e.message.clone()).collect::<Vec<_>>().join("; ");
            let chrome = enrol_chrome(&s, &sc, &csrf, "Set up an authenticator app").await.error(Some(msg));
            let page = MessagePage { chrome, text: None, link: Some(("/enrol", "Start again")) };
            render(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(e) => enrol_error_page(&s, &sc, &csrf, e).await,
    }
}

// ----------------------------------------------------------------------------- account

struct FactorRow {
    name: String,
    kind: &'static str,
    added: String,
}

struct SessionRow {
    id: String,
    started: String,
    this: bool,
    source: String,
    agent: String,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    chrome: Chrome,
    username: String,
    idle_minutes: i64,
    must_change_password: bool,
    factors: Vec<FactorRow>,
    recovery_left: i64,
    password_set: Option<String>,
    sessions: Vec<SessionRow>,
}

const WHEN: &str = "%Y-%m-%d %H:%M UTC";

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
    let sessions = sessions
        .map(|p| p.items)
        .unwrap_or_default()
        .into_iter()
        .map(|ses| SessionRow {
            id: ses.id.to_string(),
            started: ses.created_at.format(WHEN).to_string(),
            this: ses.id == sc.session.id,
            source: ses.source_ip.unwrap_or_else(|| "-".to_owned()),
            agent: ses.user_agent.unwrap_or_else(|| "-".to_owned()),
        })
        .collect();
    let factors = me
        .factors
        .iter()
        .filter(|f| f.confirmed)
        .map(|f| FactorRow {
            name: f.name.clone(),
            kind: f.kind.as_str(),
            added: f.created_at.format("%Y-%m-%d").to_string(),
        })
        .collect();
    let name =
        me.user.display_name.clone().filter(|n| !n.trim().is_empty()).unwrap_or_else(|| me.user.username.clone());
    let page = AccountPage {
        chrome: Chrome::session("Your account", &csrf, &sc, name, "/account"),
        must_change_password: sc.caller.session.as_ref().is_some_and(|c| c.must_change_password),
        username: me.user.username,
        idle_minutes: me.idle_timeout_secs / 60,
        factors,
        recovery_left: me.recovery_codes_left,
        password_set: me.password.map(|p| p.set_at.format(WHEN).to_string()),
        sessions,
    };
    with_cookie(render(StatusCode::OK, &page), set)
}

async fn end_session_submit(State(s): State<AppState>, Path(id): Path<String>, parts: Parts, body: Bytes) -> Response {
    if let Err(r) = accept_form(&s, &parts, &body).await {
        return r;
    }
    let sc = match page_session(&s, &parts, &[SessionStage::Active]).await {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let back = Some(("/account", "Back to your account"));
    let Ok(id) = id.parse::<SessionId>() else {
        return message(StatusCode::BAD_REQUEST, "Your account", "No such session.".to_owned(), back);
    };
    let ended_self = id == sc.session.id;
    match s.services.end_own_session(&sc, id).await {
        Ok(()) if ended_self => with_cookie(redirect("/login"), super::authn::clear_cookie()),
        Ok(()) => redirect("/account"),
        Err(e) => {
            let p = Problem::from(e);
            message(p.kind.status(), "Your account", p.detail, back)
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

// ----------------------------------------------------------------------------- assets

/// The passkey ceremonies: base64url <-> ArrayBuffer around navigator.credentials, posting
/// to the JSON API with the session cookie. Everything else works without it.
const PASSKEY_JS: &str = include_str!("../../assets/passkey.js");
/// The one stylesheet (the CSP allows styles only from our origin, none inline).
const STYLESHEET: &str = include_str!("../../assets/wardkey.css");
const ICON_SVG: &str = include_str!("../../assets/icon.svg");

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Revalidated on each use, so a new version is picked up at once after an upgrade.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    res
}

async fn passkey_js() -> Response {
    asset(PASSKEY_JS, "text/javascript; charset=utf-8")
}

async fn stylesheet() -> Response {
    asset(STYLESHEET, "text/css; charset=utf-8")
}

async fn icon_svg() -> Response {
    asset(ICON_SVG, "image/svg+xml")
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
    fn text_from_people_is_escaped_by_the_templates() {
        let chrome = Chrome::anonymous("Sign in", "tok\"en").error(Some("<i>bad</i>".to_owned()));
        let html = LoginPage { chrome, username: "<b>\"dr\"&'x".to_owned() }.render().unwrap();
        assert!(html.contains("value=\"&#60;b&#62;&#34;dr&#34;&#38;&#39;x\""), "{html}");
        assert!(html.contains("&#60;i&#62;bad&#60;/i&#62;") && !html.contains("<i>bad"), "{html}");
        assert!(html.contains("value=\"tok&#34;en\""), "{html}");
    }

    #[test]
    fn the_layout_is_accessible_and_shows_the_console_frame() {
        let chrome = Chrome {
            title: "Your account",
            csrf: "t".into(),
            person: Some(Person { name: "Dr <Joy>".into(), signed_in: true }),
            nav: nav_links("/account"),
            error: None,
            narrow: false,
        };
        let page = MessagePage { chrome, text: Some("hello"), link: None };
        let html = page.render().unwrap();
        for needle in [
            "<html lang=\"en\">",
            "name=\"viewport\"",
            "href=\"/assets/wardkey.css\"",
            "<a class=\"skip\" href=\"#main\">",
            "<main id=\"main\"",
            "<nav class=\"nav\" aria-label=\"Main\">",
            "<a href=\"/account\" aria-current=\"page\">Your account</a>",
            "Signed in as",
            "Dr &#60;Joy&#62;",
            "<form method=\"post\" action=\"/logout\">",
            "<h1>Your account</h1>",
        ] {
            assert!(html.contains(needle), "{needle} not in {html}");
        }
        // The skip link comes first, the navigation before the content.
        let at = |n: &str| html.find(n).unwrap();
        assert!(at("class=\"skip\"") < at("class=\"brand\""));
        assert!(at("aria-label=\"Main\"") < at("id=\"main\""));
        // Nobody signed in: no navigation and no sign-out.
        let html =
            MessagePage { chrome: Chrome::anonymous("Form refused", ""), text: None, link: None }.render().unwrap();
        assert!(!html.contains("aria-label=\"Main\"") && !html.contains("/logout"), "{html}");
    }
}
