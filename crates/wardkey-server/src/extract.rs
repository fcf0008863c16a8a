//! Extractors: bodies, queries and paths that fail as problem+json, bearer authentication with
//! a scope check, and `If-Match`.

use crate::AppState;
use crate::problem::{Kind, Problem, clip};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use wardkey_authn::session::COOKIE_NAME;
use wardkey_domain::SessionStage;
use wardkey_service::{Authorized, Caller, RequestMeta, ScopeRequirement, SessionCaller};

/// Per-request facts the middleware establishes before any handler runs.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub source_ip: Option<String>,
}

impl RequestContext {
    pub fn meta(&self) -> RequestMeta {
        RequestMeta { source_ip: self.source_ip.clone(), request_id: Some(self.request_id.clone()), operation: None }
    }
}

pub(crate) fn request_meta(parts: &Parts) -> RequestMeta {
    parts.extensions.get::<RequestContext>().map(RequestContext::meta).unwrap_or_default()
}

/// `"<METHOD> <route template>"`, as recorded in `auth.denied` and `api.read` events.
pub(crate) fn operation(parts: &Parts) -> String {
    let path = parts
        .extensions
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| parts.uri.path().to_owned());
    format!("{} {}", parts.method, path)
}

/// The value of cookie `name`, if exactly one is present (two is a sign of cookie injection).
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = None;
    for h in headers.get_all(header::COOKIE) {
        let Ok(s) = h.to_str() else { continue };
        for pair in s.split(';') {
            if let Some((n, v)) = pair.trim().split_once('=')
                && n == name
            {
                if found.is_some() {
                    return None;
                }
                found = Some(v);
            }
        }
    }
    found
}

/// A cookie-authenticated request that changes state must come from Wardkey's own pages.
/// With `SameSite=Strict` cookies and the forms' CSRF token this is defence in depth against
/// cross-site request forgery.
pub(crate) fn check_same_origin(parts: &Parts, state: &AppState) -> Result<(), Problem> {
    if parts.method.is_safe() {
        return Ok(());
    }
    same_origin_verdict(&parts.headers, state.services.public_origin())
        .map_err(|reason| Problem::new(Kind::Forbidden, reason))
}

/// Decides from the request's `Origin` and `Sec-Fetch-Site` whether an unsafe request came
/// from our own origin (`ours`, e.g. `http://localhost:8080`). Both headers are set by the
/// browser and cannot be forged by a page's script.
///
/// - An `Origin` that is a real origin must be ours.
/// - `Origin: null` (opaque) is what Chromium sends for a same-origin form post when the page's
///   referrer policy is `no-referrer`, and also what a sandboxed frame, a `data:` page or a
///   cross-origin redirect sends. Only `Sec-Fetch-Site` tells these apart, so an opaque origin
///   is accepted only with `Sec-Fetch-Site: same-origin` — never `same-site` (a sibling host is
///   another origin), `cross-site`, `none` or absent.
/// - Without `Origin` (older browsers, non-browser clients), `Sec-Fetch-Site` must not say
///   `cross-site` or `same-site`.
pub(crate) fn same_origin_verdict(headers: &HeaderMap, ours: &str) -> Result<(), &'static str> {
    let fetch_site = headers.get("sec-fetch-site").map(|v| v.to_str().unwrap_or_default().trim().to_ascii_lowercase());
    match headers.get(header::ORIGIN).map(|v| v.to_str().map(str::trim)) {
        Some(Ok("null")) => {
            if fetch_site.as_deref() == Some("same-origin") {
                Ok(())
            } else {
                Err("cross-origin request refused: an opaque Origin without Sec-Fetch-Site: same-origin")
            }
        }
        Some(Ok(origin)) if origin.trim_end_matches('/').eq_ignore_ascii_case(ours) => match fetch_site.as_deref() {
            Some("cross-site" | "same-site") => Err("cross-site request refused"),
            _ => Ok(()),
        },
        Some(_) => Err("cross-origin request refused: the Origin is not this server's"),
        None => match fetch_site.as_deref() {
            Some("cross-site" | "same-site") => Err("cross-site request refused"),
            _ => Ok(()),
        },
    }
}

/// Resolves the session cookie of a person to a caller, requiring one of `stages`.
pub(crate) async fn session_caller(
    parts: &Parts,
    state: &AppState,
    stages: &[SessionStage],
) -> Result<SessionCaller, Problem> {
    let Some(value) = cookie(&parts.headers, COOKIE_NAME) else {
        return Err(Problem::unauthenticated(
            "sign in first (POST /api/v1/auth/login); no session cookie was sent",
            None,
        ));
    };
    check_same_origin(parts, state)?;
    state.services.authenticate_session(value, request_meta(parts), stages).await.map_err(Problem::from)
}

/// A person signed in (session `active`).
pub struct SessionAuth(pub SessionCaller);
/// A session at the second-factor step, or an active one stepping up.
pub struct SecondFactorSession(pub SessionCaller);
/// A session that may enrol factors (first enrolment, or active with step-up).
pub struct EnrolSession(pub SessionCaller);

impl FromRequestParts<AppState> for SessionAuth {
    type Rejection = Problem;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        session_caller(parts, state, &[SessionStage::Active]).await.map(SessionAuth)
    }
}

impl FromRequestParts<AppState> for SecondFactorSession {
    type Rejection = Problem;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        session_caller(parts, state, &[SessionStage::SecondFactor, SessionStage::Active]).await.map(SecondFactorSession)
    }
}

impl FromRequestParts<AppState> for EnrolSession {
    type Rejection = Problem;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        session_caller(parts, state, &[SessionStage::Enrol, SessionStage::Active]).await.map(EnrolSession)
    }
}

/// Resolves `Authorization: Bearer <token>` (or, without that header, a person's session
/// cookie) to a caller. A missing or non-bearer header is refused without touching the
/// store; a presented token is checked (and a failure audited) by the service.
pub async fn authenticate(parts: &Parts, state: &AppState) -> Result<Caller, Problem> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        if cookie(&parts.headers, COOKIE_NAME).is_some() {
            return session_caller(parts, state, &[SessionStage::Active]).await.map(|sc| sc.caller);
        }
        return Err(Problem::unauthenticated("send an API token as `Authorization: Bearer <token>`", None));
    };
    let token = bearer(value)?;
    state.services.authenticate(token, request_meta(parts)).await.map_err(Problem::from)
}

/// The token of an `Authorization: Bearer <token>` header; 401 for any other scheme.
fn bearer(value: &axum::http::HeaderValue) -> Result<&str, Problem> {
    value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Problem::unauthenticated(
                "the Authorization header must use the Bearer scheme: `Authorization: Bearer <token>`",
                Some("invalid_request"),
            )
        })
}

/// The bearer token of a request that must have one.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<&str, Problem> {
    match headers.get(header::AUTHORIZATION) {
        Some(value) => bearer(value),
        None => Err(Problem::unauthenticated("send an API token as `Authorization: Bearer <token>`", None)),
    }
}

/// An authenticated caller holding scope `S` (`Admin`, `AuditRead`). A refusal is audited by
/// the service as `auth.denied` and answered 403.
///
/// The operation (`"<METHOD> <route template>"`) travels in the caller's
/// [`RequestMeta::operation`], where the service's read methods find it for their `api.read`
/// events.
pub struct Auth<S: ScopeRequirement> {
    pub authorized: Authorized<S>,
}

impl<S: ScopeRequirement> Auth<S> {
    pub fn caller(&self) -> &Caller {
        self.authorized.caller()
    }
}

impl<S> FromRequestParts<AppState> for Auth<S>
where
    S: ScopeRequirement + Send + Sync + 'static,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let mut caller = authenticate(parts, state).await?;
        caller.meta.operation = Some(operation(parts));
        let authorized = state.services.authorize_request::<S>(caller).await?;
        Ok(Auth { authorized })
    }
}

/// A JSON body. Wrong content type: 415. Too large: 413. Not JSON, unknown fields, wrong
/// types: 400 `malformed-request`, with serde's message and the path of the field at fault.
pub struct ApiJson<T>(pub T);

pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    // Compared without lower-casing into a new string: this runs on every decision request.
    let essence = ct.split(';').next().unwrap_or_default().trim();
    let starts = |p: &str| essence.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p));
    let ends = |p: &str| {
        essence.len() >= p.len() && essence.get(essence.len() - p.len()..).is_some_and(|t| t.eq_ignore_ascii_case(p))
    };
    essence.eq_ignore_ascii_case("application/json") || (starts("application/") && ends("+json"))
}

pub(crate) fn payload_too_large() -> Problem {
    Problem::new(Kind::PayloadTooLarge, "the request body exceeds the configured limit")
}

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = json_body_bytes(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// The body of a request that must be JSON (415 otherwise), within the body limit (413).
pub(crate) async fn json_body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, Problem> {
    if !is_json(req.headers()) {
        return Err(Problem::new(Kind::UnsupportedMediaType, "send the request body as application/json"));
    }
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            payload_too_large()
        } else {
            Problem::malformed("the request body could not be read")
        }
    })
}

/// An optional JSON body: empty means `T::default()`; otherwise as [`ApiJson`].
pub struct OptionalJson<T>(pub T);

impl<T, S> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = is_json(req.headers());
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                payload_too_large()
            } else {
                Problem::malformed("the request body could not be read")
            }
        })?;
        if bytes.is_empty() {
            return Ok(OptionalJson(T::default()));
        }
        if !json {
            return Err(Problem::new(Kind::UnsupportedMediaType, "send the request body as application/json"));
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                if path == "." || path.is_empty() {
                    Problem::malformed(clip(&inner.to_string()))
                } else {
                    Problem::malformed(clip(&format!("{path}: {inner}"))).with("field", clip(&path))
                }
            }
            _ => Problem::malformed(clip(&format!("the body is not valid JSON: {inner}"))),
        }
    })?;
    de.end().map_err(|e| Problem::malformed(clip(&format!("the body is not valid JSON: {e}"))))?;
    Ok(value)
}

/// A query string; anything it cannot parse is a 400 naming the parameter (`field`).
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or_default()).map(ApiQuery)
    }
}

pub(crate) fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, Problem> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path == "." || path.is_empty() {
            Problem::malformed(clip(&format!("the query string: {inner}")))
        } else {
            Problem::malformed(clip(&format!("{path}: {inner}"))).with("field", clip(&path))
        }
    })
}

/// Page sizes of the lists (`?limit=`): 1 to [`wardkey_service::MAX_PAGE`]. Outside that range
/// is refused, not clamped: a client asking for 10,000 and silently getting 500 would take
/// the missing rows for absent ones unless it also reads `next_cursor`.
pub const PAGE_LIMIT_MAX: u32 = wardkey_service::MAX_PAGE;
/// Page sizes of the access searches (`/api/v1/access/subjects|resources`).
pub const SEARCH_LIMIT_MAX: usize = wardkey_service::decisions::MAX_SEARCH_PAGE;
/// `?dormant_days=` of the reconciliation report: 1 day to 10 years.
pub const DORMANT_DAYS_MAX: u32 = 3650;

fn within<'de, D, N>(d: D, max: N) -> Result<Option<N>, D::Error>
where
    D: serde::Deserializer<'de>,
    N: serde::Deserialize<'de> + PartialOrd + From<u8> + std::fmt::Display + Copy,
{
    let v = <Option<N> as serde::Deserialize>::deserialize(d)?;
    match v {
        Some(n) if n < N::from(1) || n > max => Err(serde::de::Error::custom(format!("must be 1 to {max}, not {n}"))),
        other => Ok(other),
    }
}

/// `#[serde(default, deserialize_with = "crate::extract::page_limit")]` on a `limit: Option<u32>`.
pub fn page_limit<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    within(d, PAGE_LIMIT_MAX)
}

/// As [`page_limit`], for the access searches' `limit: Option<usize>`.
pub fn search_limit<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    within(d, SEARCH_LIMIT_MAX)
}

/// As [`page_limit`], for `dormant_days: Option<u32>`.
pub fn dormant_days<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    within(d, DORMANT_DAYS_MAX)
}

/// Path parameters; a malformed id is a 400.
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(ApiPath(v)),
            Err(rejection) if rejection.status().is_server_error() => {
                tracing::error!(error = %rejection.body_text(), "path extraction failed");
                Err(Problem::internal())
            }
            Err(rejection) => Err(Problem::malformed(clip(&rejection.body_text()))),
        }
    }
}

/// The `If-Match` request header, read as an entity version (`ETag: "<version>"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMatch {
    Absent,
    /// `*`: any current representation.
    Any,
    Version(i64),
    /// A weak or unparseable tag: it can match no version.
    Unmatchable,
}

impl IfMatch {
    pub fn parse(headers: &HeaderMap) -> IfMatch {
        let Some(v) = headers.get(header::IF_MATCH) else { return IfMatch::Absent };
        let Ok(s) = v.to_str() else { return IfMatch::Unmatchable };
        let s = s.trim();
        if s == "*" {
            return IfMatch::Any;
        }
        s.strip_prefix('"')
            .and_then(|rest| rest.strip_suffix('"'))
            .and_then(|n| n.parse::<i64>().ok())
            .map(IfMatch::Version)
            .unwrap_or(IfMatch::Unmatchable)
    }

    /// Whether the client made the write conditional on a version it named: a version
    /// conflict then answers 412 Precondition Failed instead of 409.
    pub fn conditional(self) -> bool {
        matches!(self, IfMatch::Version(_))
    }

    fn unmatchable() -> Problem {
        Problem::new(
            Kind::PreconditionFailed,
            "If-Match names no version of this resource (expected a strong ETag such as \"3\")",
        )
    }

    /// Checks the header against the version named in the request body.
    pub fn check(self, body_version: i64) -> Result<(), Problem> {
        match self {
            IfMatch::Absent | IfMatch::Any => Ok(()),
            IfMatch::Unmatchable => Err(Self::unmatchable()),
            IfMatch::Version(v) if v == body_version => Ok(()),
            IfMatch::Version(v) => Err(Problem::malformed(format!(
                "If-Match names version {v} but the request body names version {body_version}"
            ))
            .with("field", "version")),
        }
    }

    /// The expected version of a body-less write (DELETE): `?version=N`, `If-Match: "N"`, or
    /// both when they agree.
    pub fn resolve(self, query_version: Option<i64>) -> Result<i64, Problem> {
        match (self, query_version) {
            (IfMatch::Unmatchable, _) => Err(Self::unmatchable()),
            (IfMatch::Version(v), None) => Ok(v),
            (IfMatch::Version(_), Some(q)) | (IfMatch::Absent | IfMatch::Any, Some(q)) => {
                self.check(q)?;
                Ok(q)
            }
            (IfMatch::Absent | IfMatch::Any, None) => Err(Problem::malformed(
                "name the version you read: the `version` query parameter or an `If-Match: \"<version>\"` header",
            )
            .with("field", "version")),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(IfMatch::parse(&parts.headers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_type(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn json_media_types_are_recognised_whatever_their_case() {
        for yes in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            " application/json ",
            "application/scim+json",
            "APPLICATION/PROBLEM+JSON",
        ] {
            assert!(is_json(&with_type(yes)), "{yes}");
        }
        for no in ["text/plain", "application/jsonx", "text/json", "application/xml", "+json", "application/json+x", ""]
        {
            assert!(!is_json(&with_type(no)), "{no}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }
    fn fetch(origin: Option<&'static str>, site: Option<&'static str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_static(o));
        }
        if let Some(s) = site {
            h.insert("sec-fetch-site", HeaderValue::from_static(s));
        }
        h
    }

    #[test]
    fn same_origin_posts_are_told_from_cross_site_ones() {
        const OURS: &str = "http://localhost:8080";
        // Accepted: our Origin; Chromium's opaque Origin on a same-origin form post under
        // `Referrer-Policy: no-referrer`; non-browser clients that send neither header.
        for (origin, site) in [
            (Some("http://localhost:8080"), Some("same-origin")),
            (Some("HTTP://LOCALHOST:8080/"), None),
            (Some("null"), Some("same-origin")),
            (None, Some("same-origin")),
            (None, Some("none")),
            (None, None),
        ] {
            assert_eq!(same_origin_verdict(&fetch(origin, site), OURS), Ok(()), "{origin:?} {site:?}");
        }
        // Refused: a foreign Origin whatever else is said; an opaque Origin that is not
        // vouched for as same-origin (sandboxed frames, data: pages, cross-site redirects);
        // cross-site or same-site (a sibling host) fetches.
        for (origin, site) in [
            (Some("https://evil.example"), None),
            (Some("https://evil.example"), Some("same-origin")),
            (Some("http://localhost:8081"), Some("same-origin")),
            (Some("null"), Some("cross-site")),
            (Some("null"), Some("same-site")),
            (Some("null"), Some("none")),
            (Some("null"), None),
            (Some("http://localhost:8080"), Some("cross-site")),
            (None, Some("cross-site")),
            (None, Some("same-site")),
        ] {
            assert!(same_origin_verdict(&fetch(origin, site), OURS).is_err(), "{origin:?} {site:?}");
        }
    }
}
