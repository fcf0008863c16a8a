//! RFC 9457 problem details: every error this server returns, with a stable `type` URI.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use wardkey_service::ServiceError;

/// Base of every problem `type` URI. The URIs are stable: clients may switch on them.
pub const PROBLEM_BASE: &str = "https://wardkey.dev/problems/";

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// Problem kinds, each one `type` URI (`PROBLEM_BASE` + slug).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Validation,
    NotFound,
    Duplicate,
    VersionConflict,
    PreconditionFailed,
    Conflict,
    IllegalTransition,
    SodViolation,
    Unauthenticated,
    Forbidden,
    MalformedRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    MethodNotAllowed,
    Unavailable,
    Internal,
    LoginFailed,
    SecondFactorFailed,
    TooManyRequests,
    StepUpRequired,
    PasswordRejected,
    SessionExpired,
    SignInIncomplete,
    PasswordChangeRequired,
}

impl Kind {
    pub fn slug(self) -> &'static str {
        match self {
            Kind::Validation => "validation",
            Kind::NotFound => "not-found",
            Kind::Duplicate => "duplicate",
            Kind::VersionConflict => "version-conflict",
            Kind::PreconditionFailed => "precondition-failed",
            Kind::Conflict => "conflict",
            Kind::IllegalTransition => "illegal-transition",
            Kind::SodViolation => "sod-violation",
            Kind::Unauthenticated => "unauthenticated",
            Kind::Forbidden => "forbidden",
            Kind::MalformedRequest => "malformed-request",
            Kind::PayloadTooLarge => "payload-too-large",
            Kind::UnsupportedMediaType => "unsupported-media-type",
            Kind::MethodNotAllowed => "method-not-allowed",
            Kind::Unavailable => "unavailable",
            Kind::Internal => "internal",
            Kind::LoginFailed => "login-failed",
            Kind::SecondFactorFailed => "second-factor-failed",
            Kind::TooManyRequests => "too-many-requests",
            Kind::StepUpRequired => "step-up-required",
            Kind::PasswordRejected => "password-rejected",
            Kind::SessionExpired => "session-expired",
            Kind::SignInIncomplete => "sign-in-incomplete",
            Kind::PasswordChangeRequired => "password-change-required",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Kind::Validation => StatusCode::UNPROCESSABLE_ENTITY,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::Duplicate | Kind::VersionConflict | Kind::Conflict | Kind::IllegalTransition | Kind::SodViolation => {
                StatusCode::CONFLICT
            }
            Kind::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Kind::Unauthenticated => StatusCode::UNAUTHORIZED,
            Kind::Forbidden => StatusCode::FORBIDDEN,
            Kind::MalformedRequest => StatusCode::BAD_REQUEST,
            Kind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Kind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Kind::LoginFailed | Kind::SecondFactorFailed | Kind::SessionExpired => StatusCode::UNAUTHORIZED,
            Kind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Kind::StepUpRequired | Kind::SignInIncomplete | Kind::PasswordChangeRequired => StatusCode::FORBIDDEN,
            Kind::PasswordRejected => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Kind::Validation => "The request is not valid",
            Kind::NotFound => "Not found",
            Kind::Duplicate => "Already exists",
            Kind::VersionConflict => "Version conflict",
            Kind::PreconditionFailed => "Precondition failed",
            Kind::Conflict => "Conflict with the current state",
            Kind::IllegalTransition => "Illegal lifecycle transition",
            Kind::SodViolation => "Separation-of-duties violation",
            Kind::Unauthenticated => "Authentication required",
            Kind::Forbidden => "Forbidden",
            Kind::MalformedRequest => "Malformed request",
            Kind::PayloadTooLarge => "Payload too large",
            Kind::UnsupportedMediaType => "Unsupported media type",
            Kind::MethodNotAllowed => "Method not allowed",
            Kind::Unavailable => "Service unavailable",
            Kind::Internal => "Internal server error",
            Kind::LoginFailed => "Sign-in failed",
            Kind::SecondFactorFailed => "Second factor not accepted",
            Kind::TooManyRequests => "Too many requests",
            Kind::StepUpRequired => "Step-up authentication required",
            Kind::PasswordRejected => "Password not acceptable",
            Kind::SessionExpired => "Session ended",
            Kind::SignInIncomplete => "Sign-in not complete",
            Kind::PasswordChangeRequired => "Password change required",
        }
    }

    pub fn type_uri(self) -> String {
        format!("{PROBLEM_BASE}{}", self.slug())
    }
}

/// One problem response. Build with [`Problem::new`] and the `with_*` methods.
#[derive(Debug, Clone)]
pub struct Problem {
    pub kind: Kind,
    pub detail: String,
    /// Boxed: the map's size depends on serde_json's features, and errors travel by value.
    pub extensions: Box<Map<String, Value>>,
    /// Extra value for `WWW-Authenticate` on 401 (e.g. `error="invalid_token"`).
    pub bearer_error: Option<&'static str>,
    /// `Retry-After` seconds on 429.
    pub retry_after: Option<u64>,
}

/// Upper bound on echoed client input inside problem details.
const MAX_ECHO: usize = 200;

pub(crate) fn clip(s: &str) -> String {
    if s.chars().count() <= MAX_ECHO {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(MAX_ECHO).collect();
        out.push('…');
        out
    }
}

impl Problem {
    pub fn new(kind: Kind, detail: impl Into<String>) -> Self {
        Problem { kind, detail: detail.into(), extensions: Box::default(), bearer_error: None, retry_after: None }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(key.to_owned(), value.into());
        self
    }

    pub fn malformed(detail: impl Into<String>) -> Self {
        Problem::new(Kind::MalformedRequest, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(Kind::NotFound, detail)
    }

    /// 422 with one field at fault.
    pub fn invalid_field(field: &str, message: &str) -> Self {
        Problem::new(Kind::Validation, format!("{field}: {message}"))
            .with("errors", json!([{ "field": field, "message": message }]))
    }

    pub fn internal() -> Self {
        Problem::new(
            Kind::Internal,
            "The server could not complete the request. Quote the X-Request-ID response header when reporting this.",
        )
    }

    pub fn unauthenticated(detail: impl Into<String>, bearer_error: Option<&'static str>) -> Self {
        let mut p = Problem::new(Kind::Unauthenticated, detail);
        p.bearer_error = bearer_error;
        p
    }

    /// Maps a service error. `conditional` says whether the client sent `If-Match`: a version
    /// conflict then answers 412 instead of 409.
    pub fn from_service(err: ServiceError, conditional: bool) -> Self {
        match err {
            ServiceError::Unauthenticated => {
                Problem::unauthenticated("the bearer token is missing, malformed, unknown, expired or revoked", Some("invalid_token"))
            }
            ServiceError::Forbidden { needed } => {
                Problem::new(Kind::Forbidden, format!("the credential lacks the {needed} scope"))
                    .with("needed_scope", needed.as_str())
            }
            ServiceError::NotFound { kind, id } => {
                Problem::not_found(format!("{kind} {} not found", clip(&id))).with("kind", kind)
            }
            ServiceError::Invalid(errors) => {
                let summary = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
                let list: Vec<Value> =
                    errors.iter().map(|e| json!({ "field": e.field, "message": e.message })).collect();
                Problem::new(Kind::Validation, summary).with("errors", Value::Array(list))
            }
            ServiceError::Duplicate { kind, field, value: _ } => {
                Problem::new(Kind::Duplicate, format!("a {kind} with this {field} already exists"))
                    .with("field", field)
                    .with("kind", kind)
            }
            ServiceError::VersionConflict { kind, id, expected, actual } => {
                let k = if conditional { Kind::PreconditionFailed } else { Kind::VersionConflict };
                Problem::new(
                    k,
                    format!("{kind} {} is at version {actual}, not {expected}; read it again and retry", clip(&id)),
                )
                .with("expected_version", expected)
                .with("current_version", actual)
            }
            ServiceError::Conflict { kind, message } => {
                Problem::new(Kind::Conflict, message).with("kind", kind)
            }
            ServiceError::IllegalTransition { from, to } => {
                Problem::new(Kind::IllegalTransition, format!("a user cannot move from {from} to {to}"))
                    .with("from", from)
                    .with("to", to)
            }
            ServiceError::SodViolation { rule_id, rule_name, left, right } => Problem::new(
                Kind::SodViolation,
                format!("separation-of-duties rule {rule_name} forbids holding both {left} and {right}"),
            )
            .with("rule_id", rule_id)
            .with("rule_name", rule_name)
            .with("left", left)
            .with("right", right),
            ServiceError::LoginFailed => Problem::new(
                Kind::LoginFailed,
                "the username or password is wrong, or the account cannot sign in now",
            ),
            ServiceError::SecondFactorFailed => {
                Problem::new(Kind::SecondFactorFailed, "the code or passkey was not accepted")
            }
            ServiceError::RateLimited { retry_after_secs } => {
                let mut p = Problem::new(Kind::TooManyRequests, format!("too many attempts; retry in {retry_after_secs} s"));
                p.retry_after = Some(retry_after_secs);
                p
            }
            ServiceError::StepUpRequired => Problem::new(
                Kind::StepUpRequired,
                "this action needs a second factor proved within the last minutes: verify again (POST /api/v1/auth/totp or /api/v1/auth/webauthn), then retry",
            )
            .with("acr_values", "urn:wardkey:acr:mfa-fresh"),
            ServiceError::PasswordRejected { code, message } => Problem::new(Kind::PasswordRejected, message.clone())
                .with("reason", code)
                .with("errors", json!([{ "field": "password", "message": message }])),
            ServiceError::SessionExpired => Problem::new(Kind::SessionExpired, "the session has ended or expired; sign in again"),
            ServiceError::WrongStage { message } => Problem::new(Kind::SignInIncomplete, message),
            ServiceError::PasswordChangeRequired => Problem::new(
                Kind::PasswordChangeRequired,
                "the password was marked compromised: change it (POST /api/v1/me/password) before anything else",
            ),
            ServiceError::Unavailable { message } => Problem::new(Kind::Unavailable, message),
            ServiceError::Internal(detail) => {
                // The span around this request carries its id; the client sees none of this.
                tracing::error!(error = %detail, "internal error");
                Problem::internal()
            }
        }
    }

    pub fn body(&self) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), Value::String(self.kind.type_uri()));
        m.insert("title".into(), Value::String(self.kind.title().into()));
        m.insert("status".into(), Value::from(self.kind.status().as_u16()));
        m.insert("detail".into(), Value::String(self.detail.clone()));
        for (k, v) in self.extensions.iter() {
            m.entry(k.clone()).or_insert_with(|| v.clone());
        }
        Value::Object(m)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.kind.status();
        let body = serde_json::to_vec(&self.body()).unwrap_or_else(|_| b"{}".to_vec());
        let mut res = (status, body).into_response();
        let headers = res.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status == StatusCode::UNAUTHORIZED {
            let value = match self.bearer_error {
                Some("invalid_token") => HeaderValue::from_static("Bearer realm=\"wardkey\", error=\"invalid_token\""),
                _ => HeaderValue::from_static("Bearer realm=\"wardkey\""),
            };
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            headers.insert(header::RETRY_AFTER, v);
        }
        res
    }
}

impl From<ServiceError> for Problem {
    fn from(e: ServiceError) -> Self {
        Problem::from_service(e, false)
    }
}

/// Schema of a problem document, for the OpenAPI description.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = Problem)]
#[allow(dead_code)]
pub struct ProblemDoc {
    /// Stable URI naming the kind of problem, e.g. `https://wardkey.dev/problems/validation`.
    #[serde(rename = "type")]
    kind: String,
    title: String,
    status: u16,
    detail: String,
    /// Validation problems: every field at fault.
    errors: Option<Vec<FieldErrorDoc>>,
    /// Duplicates: the field whose value is taken.
    field: Option<String>,
    /// Version conflicts: the version the request named.
    expected_version: Option<i64>,
    /// Version conflicts: the stored version.
    current_version: Option<i64>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = FieldError)]
#[allow(dead_code)]
pub struct FieldErrorDoc {
    field: String,
    message: String,
}
