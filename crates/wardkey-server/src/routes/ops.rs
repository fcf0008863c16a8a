//! Unauthenticated operational endpoints: liveness, readiness, metrics, the OpenAPI
//! document, and the problem answers for unknown routes and methods.

use crate::AppState;
use crate::problem::{Kind, Problem, ProblemDoc};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Liveness: 200 while the process serves.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Serving", body = String, content_type = "text/plain")))]
pub async fn healthz() -> Response {
    (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")], "ok\n").into_response()
}

/// Readiness: 200 when the store answers a read, else 503. A failing audit witness (file or
/// URL) leaves the answer 200 but its body starts `degraded` and names the sink and error:
/// the node still serves and writes correctly, and taking every node out of rotation because
/// a witness is down would turn a monitoring gap into an outage.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready (`ready`), or ready with a failing audit witness (`degraded` and one line per problem)", body = String, content_type = "text/plain"),
        (status = 503, description = "The store does not answer", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn readyz(State(s): State<AppState>) -> Response {
    match s.services.audit_tree_size_for_probes().await {
        Ok(_) => {
            let problems = s.witness.as_ref().map(|w| w.problems()).unwrap_or_default();
            let body =
                if problems.is_empty() { "ready\n".to_owned() } else { format!("degraded\n{}\n", problems.join("\n")) };
            (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")], body).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness probe failed");
            Problem::new(Kind::Unavailable, "the store does not answer").into_response()
        }
    }
}

/// Prometheus metrics (OpenMetrics text): request counts and latency by route template, the
/// audit tree size. Unauthenticated: it carries no identities, tokens or PHI; restrict it at
/// the network if scrape targets are sensitive in your deployment.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics text", body = String, content_type = "application/openmetrics-text")))]
pub async fn metrics(State(s): State<AppState>) -> Response {
    match s.services.audit_tree_size_for_probes().await {
        Ok(n) => s.metrics.set_audit_tree_size(n),
        Err(e) => tracing::warn!(error = %e, "could not read the audit tree size for /metrics"),
    }
    match s.metrics.encode() {
        Ok(text) => {
            let mut res = text.into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            );
            res
        }
        Err(e) => {
            tracing::error!(error = %e, "could not encode metrics");
            Problem::internal().into_response()
        }
    }
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
pub async fn openapi(State(s): State<AppState>) -> Response {
    let mut res = s.openapi.clone().into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

pub async fn not_found() -> Problem {
    Problem::not_found("no such route; see /api/v1/openapi.json")
}

pub async fn method_not_allowed() -> Problem {
    Problem::new(Kind::MethodNotAllowed, "this route does not support the method; see /api/v1/openapi.json")
}
