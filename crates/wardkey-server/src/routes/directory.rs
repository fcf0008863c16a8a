//! Users, groups, memberships and service accounts.

use super::{VersionQuery, target_of_member};
use crate::AppState;
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth, IfMatch};
use crate::problem::{Problem, ProblemDoc};
use crate::respond::{ApiResult, Page, created, entity, json_written, no_content, page_of, updated};
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use wardkey_domain::{
    Group, GroupId, GroupUpdate, Member, NewGroup, NewServiceAccount, NewUser, ServiceAccount, ServiceAccountId,
    ServiceAccountUpdate, User, UserId, UserStatus, UserUpdate,
};
use wardkey_service::{Admin, PageRequest};
use wardkey_store::UserQuery;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UserListQuery {
    /// Only users in this lifecycle state.
    pub status: Option<UserStatus>,
    /// Case-insensitive prefix of the username.
    pub username_prefix: Option<String>,
    /// Exact HR department.
    pub department: Option<String>,
    /// `next_cursor` of the previous page.
    pub after: Option<String>,
    /// Page size, 1 to 500 (default 100); outside that range is refused.
    #[serde(default, deserialize_with = "crate::extract::page_limit")]
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// `next_cursor` of the previous page.
    pub after: Option<String>,
    /// Page size, 1 to 500 (default 100); outside that range is refused.
    #[serde(default, deserialize_with = "crate::extract::page_limit")]
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

impl PageQuery {
    pub fn page(&self) -> PageRequest {
        PageRequest { after: self.after.clone(), limit: self.limit }
    }
}

/// A lifecycle move: `pending_verification → active ⇄ suspended → disabled`, and
/// `disabled → pending_verification` (rehire). Disabling revokes every grant at once.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusChange {
    /// The version you read (`ETag`).
    pub version: i64,
    pub status: UserStatus,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Records who verified the person's identity (the caller), how, and when (now).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyIdentity {
    /// The version you read (`ETag`).
    pub version: i64,
    /// E.g. `in_person_government_id`, `remote_document_check`.
    pub method: String,
}

/// Result of adding a member.
#[derive(Debug, Serialize, ToSchema)]
pub struct MembershipChange {
    pub group_id: GroupId,
    pub member: Member,
    /// False when the member already belonged to the group.
    pub added: bool,
}

// ---- users ----

/// Create a user (starts as `pending_verification` unless `active` is given).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUser,
    responses((status = 201, description = "Created", body = User),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn create_user(State(s): State<AppState>, auth: Auth<Admin>, ApiJson(input): ApiJson<NewUser>) -> ApiResult {
    let c = s.services.create_user(&auth.authorized, input).await?;
    let (id, v) = (c.value.id, c.value.version);
    Ok(created(c, v, format!("/api/v1/users/{id}")))
}

/// List users.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(UserListQuery),
    responses((status = 200, description = "One page", body = Page<User>),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_users(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiQuery(q): ApiQuery<UserListQuery>,
) -> ApiResult {
    let query = UserQuery {
        status: q.status,
        username_prefix: q.username_prefix,
        department: q.department,
        ..UserQuery::default()
    };
    let page = s.services.list_users(&auth.authorized, query, PageRequest { after: q.after, limit: q.limit }).await?;
    Ok(axum::response::IntoResponse::into_response(Page::from(page)))
}

/// Read a user. `ETag` carries its version.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", params(("id" = Uuid, Path, description = "User id")),
    responses((status = 200, description = "The user", body = User),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get_user(State(s): State<AppState>, auth: Auth<Admin>, ApiPath(id): ApiPath<UserId>) -> ApiResult {
    let user = s.services.get_user(&auth.authorized, id).await?;
    Ok(entity(&user, user.version))
}

/// Change a user's profile or HR attributes. `version` must match; with `If-Match` a stale
/// version answers 412.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", request_body = UserUpdate,
    params(("id" = Uuid, Path, description = "User id"), ("If-Match" = Option<String>, Header, description = "\"<version>\"")),
    responses((status = 200, description = "Updated", body = User),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn update_user(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<UserId>,
    if_match: IfMatch,
    ApiJson(input): ApiJson<UserUpdate>,
) -> ApiResult {
    if_match.check(input.version)?;
    let c = s
        .services
        .update_user(&auth.authorized, id, input)
        .await
        .map_err(|e| Problem::from_service(e, if_match.conditional()))?;
    let v = c.value.version;
    Ok(updated(c, v))
}

/// Delete a user: a tombstone is kept with its audit history, grants are revoked.
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = Uuid, Path, description = "User id"), VersionQuery, ("If-Match" = Option<String>, Header, description = "\"<version>\"")),
    responses((status = 204, description = "Deleted"),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn delete_user(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<UserId>,
    if_match: IfMatch,
    ApiQuery(q): ApiQuery<VersionQuery>,
) -> ApiResult {
    let version = if_match.resolve(q.version)?;
    let c = s
        .services
        .delete_user(&auth.authorized, id, version)
        .await
        .map_err(|e| Problem::from_service(e, if_match.conditional()))?;
    Ok(no_content(c))
}

/// Move a user through the lifecycle.
#[utoipa::path(post, path = "/api/v1/users/{id}/status", tag = "users", request_body = StatusChange,
    params(("id" = Uuid, Path, description = "User id"), ("If-Match" = Option<String>, Header, description = "\"<version>\"")),
    responses((status = 200, description = "Moved", body = User),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn set_user_status(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<UserId>,
    if_match: IfMatch,
    ApiJson(input): ApiJson<StatusChange>,
) -> ApiResult {
    if_match.check(input.version)?;
    let c = s
        .services
        .set_user_status(&auth.authorized, id, input.version, input.status, input.reason)
        .await
        .map_err(|e| Problem::from_service(e, if_match.conditional()))?;
    let v = c.value.version;
    Ok(updated(c, v))
}

/// Record the identity verification of a user (required before activation).
#[utoipa::path(post, path = "/api/v1/users/{id}/verify-identity", tag = "users", request_body = VerifyIdentity,
    params(("id" = Uuid, Path, description = "User id"), ("If-Match" = Option<String>, Header, description = "\"<version>\"")),
    responses((status = 200, description = "Recorded", body = User),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn verify_identity(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<UserId>,
    if_match: IfMatch,
    ApiJson(input): ApiJson<VerifyIdentity>,
) -> ApiResult {
    if_match.check(input.version)?;
    let c = s
        .services
        .verify_identity(&auth.authorized, id, input.version, input.method)
        .await
        .map_err(|e| Problem::from_service(e, if_match.conditional()))?;
    let v = c.value.version;
    Ok(updated(c, v))
}

// ---- groups ----

#[utoipa::path(post, path = "/api/v1/groups", tag = "groups", request_body = NewGroup,
    responses((status = 201, description = "Created", body = Group),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn create_group(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiJson(input): ApiJson<NewGroup>,
) -> ApiResult {
    let c = s.services.create_group(&auth.authorized, input).await?;
    let (id, v) = (c.value.id, c.value.version);
    Ok(created(c, v, format!("/api/v1/groups/{id}")))
}

#[utoipa::path(get, path = "/api/v1/groups", tag = "groups", params(PageQuery),
    responses((status = 200, description = "One page", body = Page<Group>),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_groups(State(s): State<AppState>, auth: Auth<Admin>, ApiQuery(q): ApiQuery<PageQuery>) -> ApiResult {
    let page = s.services.list_groups(&auth.authorized, q.page()).await?;
    Ok(axum::response::IntoResponse::into_response(Page::from(page)))
}

#[utoipa::path(get, path = "/api/v1/groups/{id}", tag = "groups", params(("id" = Uuid, Path, description = "Group id")),
    responses((status = 200, description = "The group", body = Group),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get_group(State(s): State<AppState>, auth: Auth<Admin>, ApiPath(id): ApiPath<GroupId>) -> ApiResult {
    let g = s.services.get_group(&auth.authorized, id).await?;
    Ok(entity(&g, g.version))
}

#[utoipa::path(patch, path = "/api/v1/groups/{id}", tag = "groups", request_body = GroupUpdate,
    params(("id" = Uuid, Path, description = "Group id"), ("If-Match" = Option<String>, Header, description = "\"<version>\"")),
    responses((status = 200, description = "Updated", body = Group),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn update_group(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<GroupId>,
    if_match: IfMatch,
    ApiJson(input): ApiJson<GroupUpdate>,
) -> ApiResult {
    if_match.check(input.version)?;
    let c = s
        .services
        .update_group(&auth.authorized, id, input)
        .await
        .map_err(|e| Problem::from_service(e, if_match.conditional()))?;
    let v = c.value.version;
    Ok(updated(c, v))
}

/// Delete a group; grants made to it are revoked.
#[utoipa::path(delete, path = "/api/v1/groups/{id}", tag = "groups",
    params(("id" = Uuid, Path, description = "Group id"), VersionQuery, ("If-Match" = Option<String>, Header, description = "\"<version>\"")),
    responses((status = 204, description = "Deleted"),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn delete_group(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<GroupId>,
    if_match: IfMatch,
    ApiQuery(q): ApiQuery<VersionQuery>,
) -> ApiResult {
    let version = if_match.resolve(q.version)?;
    let c = s
        .services
        .delete_group(&auth.authorized, id, version)
        .await
        .map_err(|e| Problem::from_service(e, if_match.conditional()))?;
    Ok(no_content(c))
}

#[utoipa::path(get, path = "/api/v1/groups/{id}/members", tag = "groups",
    params(("id" = Uuid, Path, description = "Group id"), PageQuery),
    responses((status = 200, description = "One page of members", body = Page<Member>),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_members(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<GroupId>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult {
    let members = s.services.list_members(&auth.authorized, id).await?;
    let page = page_of(members, q.after.as_deref(), q.limit, Member::target);
    Ok(axum::response::IntoResponse::into_response(page))
}

/// Add a member (`{"type": "user", "id": "..."}`). Separation-of-duties rules are checked
/// against the group's roles. 201 when added, 200 when already a member.
#[utoipa::path(post, path = "/api/v1/groups/{id}/members", tag = "groups", request_body = Member,
    params(("id" = Uuid, Path, description = "Group id")),
    responses((status = 201, description = "Added", body = MembershipChange),
        (status = 200, description = "Already a member", body = MembershipChange),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn add_member(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<GroupId>,
    ApiJson(member): ApiJson<Member>,
) -> ApiResult {
    let c = s.services.add_member(&auth.authorized, id, member).await?;
    let added = c.value;
    let status = if added { StatusCode::CREATED } else { StatusCode::OK };
    Ok(json_written(status, &c, &MembershipChange { group_id: id, member, added }))
}

/// Remove a member. `kind` is `user` or `service_account`.
#[utoipa::path(delete, path = "/api/v1/groups/{id}/members/{kind}/{member_id}", tag = "groups",
    params(("id" = Uuid, Path, description = "Group id"),
        ("kind" = String, Path, description = "`user` or `service_account`"),
        ("member_id" = Uuid, Path, description = "Member id")),
    responses((status = 204, description = "Removed"),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn remove_member(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiPath((id, kind, member_id)): ApiPath<(GroupId, String, Uuid)>,
) -> ApiResult {
    let member = target_of_member(&kind, member_id)?;
    let c = s.services.remove_member(&auth.authorized, id, member).await?;
    Ok(no_content(c))
}

// ---- service accounts ----

/// Create a service account, owned by an accountable person.
#[utoipa::path(post, path = "/api/v1/service-accounts", tag = "service-accounts", request_body = NewServiceAccount,
    responses((status = 201, description = "Created", body = ServiceAccount),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn create_service_account(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiJson(input): ApiJson<NewServiceAccount>,
) -> ApiResult {
    let c = s.services.create_service_account(&auth.authorized, input).await?;
    let (id, v) = (c.value.id, c.value.version);
    Ok(created(c, v, format!("/api/v1/service-accounts/{id}")))
}

#[utoipa::path(get, path = "/api/v1/service-accounts", tag = "service-accounts", params(PageQuery),
    responses((status = 200, description = "One page", body = Page<ServiceAccount>),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_service_accounts(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult {
    let page = s.services.list_service_accounts(&auth.authorized, q.page()).await?;
    Ok(axum::response::IntoResponse::into_response(Page::from(page)))
}

#[utoipa::path(get, path = "/api/v1/service-accounts/{id}", tag = "service-accounts",
    params(("id" = Uuid, Path, description = "Service account id")),
    responses((status = 200, description = "The service account", body = ServiceAccount),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get_service_account(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<ServiceAccountId>,
) -> ApiResult {
    let sa = s.services.get_service_account(&auth.authorized, id).await?;
    Ok(entity(&sa, sa.version))
}

/// Change a service account. Disabling it revokes its grants.
#[utoipa::path(patch, path = "/api/v1/service-accounts/{id}", tag = "service-accounts", request_body = ServiceAccountUpdate,
    params(("id" = Uuid, Path, description = "Service account id"), ("If-Match" = Option<String>, Header, description = "\"<version>\"")),
    responses((status = 200, description = "Updated", body = ServiceAccount),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn update_service_account(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<ServiceAccountId>,
    if_match: IfMatch,
    ApiJson(input): ApiJson<ServiceAccountUpdate>,
) -> ApiResult {
    if_match.check(input.version)?;
    let c = s
        .services
        .update_service_account(&auth.authorized, id, input)
        .await
        .map_err(|e| Problem::from_service(e, if_match.conditional()))?;
    let v = c.value.version;
    Ok(updated(c, v))
}

#[utoipa::path(delete, path = "/api/v1/service-accounts/{id}", tag = "service-accounts",
    params(("id" = Uuid, Path, description = "Service account id"), VersionQuery, ("If-Match" = Option<String>, Header, description = "\"<version>\"")),
    responses((status = 204, description = "Deleted"),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn delete_service_account(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<ServiceAccountId>,
    if_match: IfMatch,
    ApiQuery(q): ApiQuery<VersionQuery>,
) -> ApiResult {
    let version = if_match.resolve(q.version)?;
    let c = s
        .services
        .delete_service_account(&auth.authorized, id, version)
        .await
        .map_err(|e| Problem::from_service(e, if_match.conditional()))?;
    Ok(no_content(c))
}
