//! HR roster imports and the reconciliation report.

use crate::AppState;
use crate::extract::{ApiQuery, Auth};
use crate::problem::{Kind, Problem, ProblemDoc};
use crate::respond::ApiResult;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Deserialize;
use utoipa::IntoParams;
use wardkey_hr::Format;
use wardkey_service::Admin;
use wardkey_service::hr::HrImportRequest;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/hr/imports", post(import)).route("/api/v1/reports/reconciliation", get(reconciliation))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// Apply the plan (default: only plan).
    pub apply: Option<bool>,
    /// The file is the complete roster: people missing from it become review items.
    pub full: Option<bool>,
    /// Apply even though the mass-termination circuit breaker tripped (recorded in the audit).
    pub override_breaker: Option<bool>,
}

fn format_of(headers: &HeaderMap) -> Result<Format, Problem> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match mime.as_str() {
        "text/csv" | "application/csv" => Ok(Format::Csv),
        "application/json" => Ok(Format::Json),
        _ => Err(Problem::new(Kind::UnsupportedMediaType, "send the roster as text/csv or application/json")),
    }
}

/// Plan (and, with `apply=true`, apply) an HR roster import. The body is the file itself.
/// A refusal by the circuit breaker answers 409 with the plan.
#[utoipa::path(post, path = "/api/v1/hr/imports", tag = "hr", params(ImportQuery),
    request_body(content = String, description = "The roster file", content_type = "text/csv"),
    responses((status = 200, description = "The plan, and what was applied", body = Object),
        (status = 409, description = "Refused by the circuit breaker (the plan is in the body)", body = Object),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn import(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiQuery(q): ApiQuery<ImportQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let format = format_of(&headers)?;
    if body.is_empty() {
        return Err(Problem::malformed("the body is empty: send the roster file"));
    }
    let req = HrImportRequest {
        format,
        apply: q.apply.unwrap_or(false),
        full_roster: q.full.unwrap_or(false),
        override_breaker: q.override_breaker.unwrap_or(false),
    };
    let settings = wardkey_service::hr::config().import_settings();
    let outcome = s.services.hr_import(&auth.authorized, &body, &req, &settings, None).await?;
    let status = if outcome.refused.is_some() { StatusCode::CONFLICT } else { StatusCode::OK };
    let revision = outcome.applied.as_ref().map(|a| a.revision);
    let mut res = (status, Json(&outcome)).into_response();
    if let Some(rev) = revision
        && let Ok(v) = axum::http::HeaderValue::from_str(&rev.to_string())
    {
        res.headers_mut().insert(crate::respond::REVISION_HEADER, v);
    }
    Ok(res)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReconciliationQuery {
    /// Days without a sign-in after which an active account is dormant, 1 to 3650 (default
    /// from `[hr]`); outside that range is refused.
    #[serde(default, deserialize_with = "crate::extract::dormant_days")]
    #[param(minimum = 1, maximum = 3650)]
    pub dormant_days: Option<u32>,
}

/// The reconciliation report: orphaned, dormant, permission creep, template mismatch, SoD
/// conflicts, ownerless service accounts and open review items.
#[utoipa::path(get, path = "/api/v1/reports/reconciliation", tag = "hr", params(ReconciliationQuery),
    responses((status = 200, description = "The report", body = wardkey_service::reconcile::ReconciliationReport),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn reconciliation(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiQuery(q): ApiQuery<ReconciliationQuery>,
) -> ApiResult {
    let days = q.dormant_days.unwrap_or_else(|| wardkey_service::hr::config().dormant_days);
    let report = s.services.reconciliation_report(&auth.authorized, days).await?;
    Ok(Json(report).into_response())
}
