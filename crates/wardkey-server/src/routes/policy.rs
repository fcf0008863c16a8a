//! Forbid rules (admin) and break-glass (a person's own session).

use super::VersionQuery;
use super::directory::PageQuery;
use crate::AppState;
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth, IfMatch, SessionAuth};
use crate::problem::{Problem, ProblemDoc};
use crate::respond::{ApiResult, Page, created, entity, no_content, page_of};
use axum::extract::State;
use axum::response::IntoResponse;
use wardkey_domain::{ForbidRule, ForbidRuleId, Grant, NewForbidRule};
use wardkey_service::Admin;
use wardkey_service::policy::BreakGlassRequest;

/// Create a forbid rule: it denies whatever any grant allows (sensitive categories without a
/// clearance group, untrusted devices, outside networks).
#[utoipa::path(post, path = "/api/v1/forbid-rules", tag = "access", request_body = NewForbidRule,
    responses((status = 201, description = "Created", body = ForbidRule),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn create_forbid_rule(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiJson(input): ApiJson<NewForbidRule>,
) -> ApiResult {
    let c = s.services.create_forbid_rule(&auth.authorized, input).await?;
    let (id, v) = (c.value.id, c.value.version);
    Ok(created(c, v, format!("/api/v1/forbid-rules/{id}")))
}

#[utoipa::path(get, path = "/api/v1/forbid-rules", tag = "access", params(PageQuery),
    responses((status = 200, description = "One page", body = Page<ForbidRule>),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_forbid_rules(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult {
    let all = s.services.list_forbid_rules(&auth.authorized).await?;
    Ok(page_of(all, q.after.as_deref(), q.limit, |r| r.id.to_string()).into_response())
}

#[utoipa::path(get, path = "/api/v1/forbid-rules/{id}", tag = "access", params(("id" = Uuid, Path, description = "Rule id")),
    responses((status = 200, description = "The rule", body = ForbidRule),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get_forbid_rule(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<ForbidRuleId>,
) -> ApiResult {
    let r = s.services.get_forbid_rule(&auth.authorized, id).await?;
    Ok(entity(&r, r.version))
}

#[utoipa::path(delete, path = "/api/v1/forbid-rules/{id}", tag = "access",
    params(("id" = Uuid, Path, description = "Rule id"), VersionQuery, ("If-Match" = Option<String>, Header, description = "\"<version>\"")),
    responses((status = 204, description = "Deleted"),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn delete_forbid_rule(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<ForbidRuleId>,
    if_match: IfMatch,
    ApiQuery(q): ApiQuery<VersionQuery>,
) -> ApiResult {
    let version = if_match.resolve(q.version)?;
    let c = s
        .services
        .delete_forbid_rule(&auth.authorized, id, version)
        .await
        .map_err(|e| Problem::from_service(e, if_match.conditional()))?;
    Ok(no_content(c))
}

/// Declare an emergency: with a second factor proved in the last minutes, give yourself a
/// role marked for break-glass, for a short time (default 60 minutes). The declaration is an
/// audit event flagged for review; decisions it allows carry an obligation to record the use.
#[utoipa::path(post, path = "/api/v1/break-glass", tag = "access", request_body = BreakGlassRequest,
    responses((status = 201, description = "The time-boxed grant", body = Grant),
        (status = "4XX", description = "Problem (403 step-up-required without a fresh second factor)", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn break_glass(
    State(s): State<AppState>,
    SessionAuth(sc): SessionAuth,
    ApiJson(input): ApiJson<BreakGlassRequest>,
) -> ApiResult {
    let c = s.services.declare_break_glass(&sc, input).await?;
    let (id, v) = (c.value.id, c.value.version);
    Ok(created(c, v, format!("/api/v1/grants/{id}")))
}
