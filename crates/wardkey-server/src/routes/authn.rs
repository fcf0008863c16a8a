//! Sign-in, second factors, enrolment, the person's own account and sessions, and the admin
//! side of authentication (unlock, factor reset, password, session revocation).

use super::directory::PageQuery;
use crate::AppState;
use crate::extract::{
    ApiJson, ApiPath, ApiQuery, Auth, EnrolSession, OptionalJson, SecondFactorSession, SessionAuth, request_meta,
};
use crate::problem::{Problem, ProblemDoc};
use crate::respond::{ApiResult, Page, json_written, no_content};
use axum::Json;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use wardkey_authn::session::{CookieSpec, SessionId as SessionToken};
use wardkey_domain::{Factor, FactorId, Session, SessionId, UserId};
use wardkey_service::{Admin, FactorConfirmed, Me, SignIn, TotpEnrolment};
use wardkey_store::SessionQuery;

/// `Set-Cookie` for a sign-in step's new session secret, or nothing if it does not parse
/// (it always does: the service made it).
pub(crate) fn session_cookie(token: &str) -> Option<HeaderValue> {
    let t = SessionToken::parse(token).ok()?;
    HeaderValue::from_str(&CookieSpec::default().set_cookie(&t)).ok()
}

pub(crate) fn clear_cookie() -> Option<HeaderValue> {
    HeaderValue::from_str(&CookieSpec::clear_cookie()).ok()
}

fn no_store(res: &mut Response) {
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// The JSON answer to a sign-in step, with the rotated session cookie.
pub(crate) fn sign_in_response(step: &SignIn) -> Response {
    let mut res = Json(step).into_response();
    if let Some(c) = session_cookie(&step.token) {
        res.headers_mut().insert(header::SET_COOKIE, c);
    }
    no_store(&mut res);
    res
}

/// The request's `User-Agent`, bounded, for the session list.
pub(crate) fn user_agent(parts: &Parts) -> Option<String> {
    parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|s| s.chars().take(256).collect())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    /// Never logged or stored in clear.
    pub password: String,
}

/// Sign in with username and password. The answer says what comes next (a second factor,
/// enrolment, or done) and sets the `__Host-wardkey_session` cookie. Unknown user, wrong
/// password and an account that cannot sign in all get the same 401.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "authentication", request_body = LoginRequest,
    responses((status = 200, description = "Password accepted; see `next`", body = SignIn),
        (status = "4XX", description = "Problem (401 login-failed, 429 too-many-requests)", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn login(State(s): State<AppState>, parts: Parts, ApiJson(body): ApiJson<LoginRequest>) -> ApiResult {
    let step = s
        .services
        .login_password(&body.username, body.password.as_bytes(), request_meta(&parts), user_agent(&parts))
        .await?;
    Ok(sign_in_response(&step))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    pub code: String,
}

/// Prove a TOTP code: completes sign-in, or steps up an active session. The session id
/// rotates (new cookie). Each code works once.
#[utoipa::path(post, path = "/api/v1/auth/totp", tag = "authentication", request_body = CodeRequest,
    responses((status = 200, description = "Signed in / stepped up", body = SignIn),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn totp(
    State(s): State<AppState>,
    SecondFactorSession(sc): SecondFactorSession,
    ApiJson(body): ApiJson<CodeRequest>,
) -> ApiResult {
    let step = s.services.verify_totp(&sc, &body.code).await?;
    Ok(sign_in_response(&step))
}

/// Prove a recovery code (each works once).
#[utoipa::path(post, path = "/api/v1/auth/recovery", tag = "authentication", request_body = CodeRequest,
    responses((status = 200, description = "Signed in / stepped up", body = SignIn),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn recovery(
    State(s): State<AppState>,
    SecondFactorSession(sc): SecondFactorSession,
    ApiJson(body): ApiJson<CodeRequest>,
) -> ApiResult {
    let step = s.services.verify_recovery_code(&sc, &body.code).await?;
    Ok(sign_in_response(&step))
}

/// Start a passkey assertion: options for `navigator.credentials.get()`.
#[utoipa::path(post, path = "/api/v1/auth/webauthn/challenge", tag = "authentication",
    responses((status = 200, description = "PublicKeyCredentialRequestOptions (JSON)", body = Object),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn webauthn_challenge(State(s): State<AppState>, SecondFactorSession(sc): SecondFactorSession) -> ApiResult {
    let options = s.services.webauthn_begin(&sc).await?;
    let mut res = Json(options).into_response();
    no_store(&mut res);
    Ok(res)
}

/// Finish a passkey assertion with the authenticator's response (the `PublicKeyCredential`
/// as JSON): a phishing-resistant second factor.
#[utoipa::path(post, path = "/api/v1/auth/webauthn", tag = "authentication", request_body = Object,
    responses((status = 200, description = "Signed in / stepped up", body = SignIn),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn webauthn(
    State(s): State<AppState>,
    SecondFactorSession(sc): SecondFactorSession,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> ApiResult {
    let text = body.to_string();
    let step = s.services.webauthn_finish(&sc, &text).await?;
    Ok(sign_in_response(&step))
}

/// End this session (sign out).
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "authentication",
    responses((status = 204, description = "Signed out; the cookie is cleared"),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn logout(State(s): State<AppState>, parts: Parts) -> ApiResult {
    let sc = crate::extract::session_caller(
        &parts,
        &s,
        &[
            wardkey_domain::SessionStage::SecondFactor,
            wardkey_domain::SessionStage::Enrol,
            wardkey_domain::SessionStage::Active,
        ],
    )
    .await?;
    s.services.logout(&sc).await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    if let Some(c) = clear_cookie() {
        res.headers_mut().insert(header::SET_COOKIE, c);
    }
    Ok(res)
}

/// The signed-in person: account, this session, factors, roles and whether this session may
/// exercise each.
#[utoipa::path(get, path = "/api/v1/me", tag = "self-service",
    responses((status = 200, description = "You", body = Me),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn me(State(s): State<AppState>, SessionAuth(sc): SessionAuth) -> ApiResult {
    let me = s.services.me(&sc).await?;
    let mut res = Json(me).into_response();
    no_store(&mut res);
    Ok(res)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    pub new_password: String,
}

/// Change your password. Every session of yours ends, this one included.
#[utoipa::path(post, path = "/api/v1/me/password", tag = "self-service", request_body = ChangePasswordRequest,
    responses((status = 204, description = "Changed; sign in again"),
        (status = "4XX", description = "Problem (422 password-rejected says why)", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn change_password(
    State(s): State<AppState>,
    SessionAuth(sc): SessionAuth,
    ApiJson(body): ApiJson<ChangePasswordRequest>,
) -> ApiResult {
    let c = s.services.change_own_password(&sc, body.current_password.as_bytes(), body.new_password.as_bytes()).await?;
    let mut res = no_content(c);
    if let Some(c) = clear_cookie() {
        res.headers_mut().insert(header::SET_COOKIE, c);
    }
    Ok(res)
}

/// Your factors (secrets are never shown).
#[utoipa::path(get, path = "/api/v1/me/factors", tag = "self-service",
    responses((status = 200, description = "Factors", body = [Factor]),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn my_factors(State(s): State<AppState>, EnrolSession(sc): EnrolSession) -> ApiResult {
    let me = s.services.me(&sc).await;
    match me {
        Ok(me) => Ok(Json(me.factors).into_response()),
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct FactorName {
    #[serde(default)]
    pub name: Option<String>,
}

/// Start enrolling an authenticator app: secret, `otpauth://` URI and QR code (SVG).
/// Confirm with the first code. Open at first sign-in (enrolment) or with a fresh step-up.
#[utoipa::path(post, path = "/api/v1/me/factors/totp", tag = "self-service", request_body = FactorName,
    responses((status = 201, description = "Pending enrolment", body = TotpEnrolment),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn totp_begin(
    State(s): State<AppState>,
    EnrolSession(sc): EnrolSession,
    OptionalJson(body): OptionalJson<FactorName>,
) -> ApiResult {
    let name = body.name;
    let e = s.services.totp_enrol_begin(&sc, name).await?;
    let mut res = (StatusCode::CREATED, Json(e)).into_response();
    no_store(&mut res);
    Ok(res)
}

/// Confirm a TOTP enrolment with a current code. The first factor comes with 10 recovery
/// codes, shown once; at first sign-in this also completes sign-in (new cookie).
#[utoipa::path(post, path = "/api/v1/me/factors/totp/{id}/confirm", tag = "self-service", request_body = CodeRequest,
    params(("id" = Uuid, Path, description = "Factor id from the enrolment")),
    responses((status = 200, description = "Enrolled", body = FactorConfirmed),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn totp_confirm(
    State(s): State<AppState>,
    EnrolSession(sc): EnrolSession,
    ApiPath(id): ApiPath<FactorId>,
    ApiJson(body): ApiJson<CodeRequest>,
) -> ApiResult {
    let done = s.services.totp_enrol_confirm(&sc, id, &body.code).await?;
    Ok(confirmed_response(&done))
}

fn confirmed_response(done: &FactorConfirmed) -> Response {
    let mut res = Json(done).into_response();
    if let Some(step) = &done.sign_in
        && let Some(c) = session_cookie(&step.token)
    {
        res.headers_mut().insert(header::SET_COOKIE, c);
    }
    no_store(&mut res);
    res
}

/// Start registering a passkey: options for `navigator.credentials.create()`.
#[utoipa::path(post, path = "/api/v1/me/factors/webauthn/challenge", tag = "self-service", request_body = FactorName,
    responses((status = 200, description = "PublicKeyCredentialCreationOptions (JSON)", body = Object),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn passkey_begin(
    State(s): State<AppState>,
    EnrolSession(sc): EnrolSession,
    OptionalJson(body): OptionalJson<FactorName>,
) -> ApiResult {
    let name = body.name;
    let options = s.services.passkey_register_begin(&sc, name).await?;
    let mut res = Json(options).into_response();
    no_store(&mut res);
    Ok(res)
}

/// Finish registering a passkey with the authenticator's response.
#[utoipa::path(post, path = "/api/v1/me/factors/webauthn", tag = "self-service", request_body = Object,
    responses((status = 200, description = "Enrolled", body = FactorConfirmed),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn passkey_finish(
    State(s): State<AppState>,
    EnrolSession(sc): EnrolSession,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> ApiResult {
    let done = s.services.passkey_register_finish(&sc, &body.to_string()).await?;
    Ok(confirmed_response(&done))
}

/// Remove one of your factors (needs a fresh step-up; not your only one).
#[utoipa::path(delete, path = "/api/v1/me/factors/{id}", tag = "self-service", params(("id" = Uuid, Path, description = "Factor id")),
    responses((status = 204, description = "Removed"),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn remove_factor(
    State(s): State<AppState>,
    SessionAuth(sc): SessionAuth,
    ApiPath(id): ApiPath<FactorId>,
) -> ApiResult {
    s.services.remove_own_factor(&sc, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct RecoveryCodes {
    /// Shown once; each works once.
    pub recovery_codes: Vec<String>,
}

/// New recovery codes (the old ones stop working). Needs a fresh step-up.
#[utoipa::path(post, path = "/api/v1/me/recovery-codes", tag = "self-service",
    responses((status = 200, description = "New codes", body = RecoveryCodes),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn recovery_codes(State(s): State<AppState>, SessionAuth(sc): SessionAuth) -> ApiResult {
    let codes = s.services.regenerate_recovery_codes(&sc).await?;
    let mut res = Json(RecoveryCodes { recovery_codes: codes }).into_response();
    no_store(&mut res);
    Ok(res)
}

/// Your live sessions.
#[utoipa::path(get, path = "/api/v1/me/sessions", tag = "self-service", params(PageQuery),
    responses((status = 200, description = "One page", body = Page<Session>),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn my_sessions(
    State(s): State<AppState>,
    SessionAuth(sc): SessionAuth,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult {
    let page = s.services.list_own_sessions(&sc, q.page()).await?;
    Ok(Page::from(page).into_response())
}

/// End one of your sessions (e.g. a shared workstation you forgot to sign out of).
#[utoipa::path(delete, path = "/api/v1/me/sessions/{id}", tag = "self-service", params(("id" = Uuid, Path, description = "Session id")),
    responses((status = 204, description = "Ended"),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn end_my_session(
    State(s): State<AppState>,
    SessionAuth(sc): SessionAuth,
    ApiPath(id): ApiPath<SessionId>,
) -> ApiResult {
    s.services.end_own_session(&sc, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SessionListQuery {
    /// Only this user's sessions.
    pub user: Option<UserId>,
    /// Include ended sessions.
    #[serde(default)]
    pub include_ended: bool,
    /// `next_cursor` of the previous page.
    pub after: Option<String>,
    /// Page size, 1 to 500 (default 100); outside that range is refused.
    #[serde(default, deserialize_with = "crate::extract::page_limit")]
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// Sessions of everyone (or one user), for admins.
#[utoipa::path(get, path = "/api/v1/sessions", tag = "sessions", params(SessionListQuery),
    responses((status = 200, description = "One page", body = Page<Session>),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_sessions(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiQuery(q): ApiQuery<SessionListQuery>,
) -> ApiResult {
    let page = s
        .services
        .list_sessions(
            &auth.authorized,
            SessionQuery { user: q.user, include_ended: q.include_ended },
            wardkey_service::PageRequest { after: q.after, limit: q.limit },
        )
        .await?;
    Ok(Page::from(page).into_response())
}

/// End any session (admin). The event names who ended it.
#[utoipa::path(delete, path = "/api/v1/sessions/{id}", tag = "sessions", params(("id" = Uuid, Path, description = "Session id")),
    responses((status = 204, description = "Ended"),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn revoke_session(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<SessionId>,
) -> ApiResult {
    let c = s.services.revoke_session(&auth.authorized, id).await?;
    Ok(no_content(c))
}

/// End every session of a user (admin).
#[utoipa::path(post, path = "/api/v1/users/{id}/sessions/revoke", tag = "sessions", params(("id" = Uuid, Path, description = "User id")),
    responses((status = 200, description = "Ended; `ended` counts them", body = Object),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn revoke_user_sessions(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<UserId>,
) -> ApiResult {
    let c = s.services.revoke_user_sessions(&auth.authorized, id).await?;
    Ok(json_written(StatusCode::OK, &c, &serde_json::json!({ "ended": c.value })))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPasswordRequest {
    pub password: String,
    /// The person must change it at their next sign-in (default true).
    #[serde(default = "yes")]
    pub must_change: bool,
}

fn yes() -> bool {
    true
}

/// Set a person's password (onboarding or reset). Checked against the NIST policy and the
/// blocklist; every session of the user ends.
#[utoipa::path(post, path = "/api/v1/users/{id}/password", tag = "authentication-admin", request_body = SetPasswordRequest,
    params(("id" = Uuid, Path, description = "User id")),
    responses((status = 204, description = "Set"),
        (status = "4XX", description = "Problem (422 password-rejected says why)", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn set_password(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<UserId>,
    ApiJson(body): ApiJson<SetPasswordRequest>,
) -> ApiResult {
    let c = s.services.admin_set_password(&auth.authorized, id, body.password.as_bytes(), body.must_change).await?;
    Ok(no_content(c))
}

#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ReasonRequest {
    #[serde(default)]
    pub reason: Option<String>,
}

/// Mark a password compromised: it must be changed at next sign-in; every session ends now.
#[utoipa::path(post, path = "/api/v1/users/{id}/password/compromised", tag = "authentication-admin", request_body = ReasonRequest,
    params(("id" = Uuid, Path, description = "User id")),
    responses((status = 204, description = "Marked"),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn password_compromised(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<UserId>,
    OptionalJson(body): OptionalJson<ReasonRequest>,
) -> ApiResult {
    let reason = body.reason;
    let c = s.services.mark_password_compromised(&auth.authorized, id, reason).await?;
    Ok(no_content(c))
}

/// Lift a lockout.
#[utoipa::path(post, path = "/api/v1/users/{id}/unlock", tag = "authentication-admin", params(("id" = Uuid, Path, description = "User id")),
    responses((status = 200, description = "Unlocked; `was_locked` says whether it was", body = Object),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn unlock(State(s): State<AppState>, auth: Auth<Admin>, ApiPath(id): ApiPath<UserId>) -> ApiResult {
    let c = s.services.unlock_account(&auth.authorized, id).await?;
    Ok(json_written(StatusCode::OK, &c, &serde_json::json!({ "was_locked": c.value })))
}

/// Why a person's factors are reset. Required: a reset re-opens enrolment to whoever signs in
/// next with the password, so the `factor.reset` event must say why and on what evidence.
#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ResetFactorsRequest {
    /// Why, e.g. "lost phone; identity checked in person" (1 to 1024 characters).
    #[serde(default)]
    #[schema(required = true, value_type = String, min_length = 1, max_length = 1024)]
    pub reason: Option<String>,
}

/// Remove every factor and recovery code of a user (lost device). Every session ends; the
/// next sign-in goes to enrolment. A reason is required.
#[utoipa::path(post, path = "/api/v1/users/{id}/factors/reset", tag = "authentication-admin", request_body = ResetFactorsRequest,
    params(("id" = Uuid, Path, description = "User id")),
    responses((status = 200, description = "Reset; `removed` counts factors", body = Object),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn reset_factors(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<UserId>,
    OptionalJson(body): OptionalJson<ResetFactorsRequest>,
) -> ApiResult {
    let reason = match body.reason.as_deref().map(str::trim) {
        Some(r) if r.chars().count() > 1024 => return Err(Problem::invalid_field("reason", "at most 1024 characters")),
        Some(r) if !r.is_empty() => r.to_owned(),
        _ => return Err(Problem::invalid_field("reason", "required: say why the factors are reset")),
    };
    let c = s.services.reset_factors(&auth.authorized, id, Some(reason)).await?;
    Ok(json_written(StatusCode::OK, &c, &serde_json::json!({ "removed": c.value })))
}

/// Sign-in state of a user: factors, failures, lock, password metadata.
#[utoipa::path(get, path = "/api/v1/users/{id}/authn", tag = "authentication-admin", params(("id" = Uuid, Path, description = "User id")),
    responses((status = 200, description = "State", body = Object),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn authn_status(State(s): State<AppState>, auth: Auth<Admin>, ApiPath(id): ApiPath<UserId>) -> ApiResult {
    let v = s.services.authn_status(&auth.authorized, id).await?;
    Ok(Json(v).into_response())
}
