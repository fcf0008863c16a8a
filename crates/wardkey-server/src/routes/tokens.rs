//! API tokens.

use crate::AppState;
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth};
use crate::problem::ProblemDoc;
use crate::respond::{ApiResult, Page, json_written, no_content, page_of};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use wardkey_domain::{ApiToken, ApiTokenId, NewApiToken};
use wardkey_service::Admin;

/// A new token and its secret. The secret is shown only in this response.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    pub token: ApiToken,
    /// Send as `Authorization: Bearer <secret>`. Never shown again.
    pub secret: String,
}

/// Create an API token with the given scopes (`admin`, `scim`, `pdp`, `audit:read`) for an owner:
/// an active person or service account, whose disabling revokes it. Without `expires_at` it lives
/// the configured default lifetime (90 days); `expires_at` may not be later than the configured
/// maximum. An admin-scoped token created from a signed-in session needs a fresh second factor.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = NewApiToken,
    responses((status = 201, description = "Created; the secret is shown once", body = CreatedToken),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn create_token(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiJson(input): ApiJson<NewApiToken>,
) -> ApiResult {
    let c = s.services.create_token(&auth.authorized, input).await?;
    let (token, secret) = c.value.clone();
    let mut res = json_written(StatusCode::CREATED, &c, &CreatedToken { token, secret });
    res.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    Ok(res)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TokenListQuery {
    /// `next_cursor` of the previous page.
    pub after: Option<String>,
    /// Page size, 1 to 500 (default 100).
    #[serde(default, deserialize_with = "crate::extract::page_limit")]
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// Only tokens of this owner: `user:<id>`, `service_account:<id>` or `system:<name>`.
    pub owner: Option<String>,
}

/// List API tokens (metadata only; secrets are never stored in clear), each with its owner.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", params(TokenListQuery),
    responses((status = 200, description = "One page", body = Page<ApiToken>),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_tokens(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiQuery(q): ApiQuery<TokenListQuery>,
) -> ApiResult {
    let owner = match q.owner.as_deref() {
        None => None,
        Some(o) => {
            Some(o.split_once(':').and_then(|(kind, id)| wardkey_domain::TokenOwner::from_parts(kind, id)).ok_or_else(
                || {
                    wardkey_service::ServiceError::invalid(
                        "owner",
                        "use user:<id>, service_account:<id> or system:<name>",
                    )
                },
            )?)
        }
    };
    let mut all = s.services.list_tokens(&auth.authorized).await?;
    if let Some(owner) = owner {
        all.retain(|t| t.owner == owner);
    }
    Ok(page_of(all, q.after.as_deref(), q.limit, |t| t.id.to_string()).into_response())
}

/// Revoke an API token; it stops working at once.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens", params(("id" = Uuid, Path, description = "Token id")),
    responses((status = 204, description = "Revoked"),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn revoke_token(State(s): State<AppState>, auth: Auth<Admin>, ApiPath(id): ApiPath<ApiTokenId>) -> ApiResult {
    let c = s.services.revoke_token(&auth.authorized, id).await?;
    Ok(no_content(c))
}
