//! Resource types, resources, roles, role templates, separation-of-duties rules and grants.

use super::VersionQuery;
use super::directory::PageQuery;
use crate::AppState;
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth, IfMatch};
use crate::problem::{Problem, ProblemDoc};
use crate::respond::{ApiResult, Page, created, entity, no_content, page_of, updated};
use axum::extract::State;
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;
use wardkey_domain::{
    Grant, GrantId, NewGrant, NewResource, NewResourceType, NewRole, NewRoleTemplate, NewSodRule, Resource, ResourceId,
    ResourceType, ResourceTypeId, ResourceTypeUpdate, ResourceUpdate, Role, RoleId, RoleTemplate, RoleTemplateId,
    RoleTemplateUpdate, RoleUpdate, SodRule, SodRuleId, SodRuleUpdate, Subject,
};
use wardkey_service::{Admin, PageRequest};
use wardkey_store::{GrantQuery, ResourceQuery};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ResourceListQuery {
    /// Only resources of this type.
    #[param(value_type = Option<Uuid>)]
    pub type_id: Option<ResourceTypeId>,
    /// Only direct children of this resource, or `root` for top-level resources only.
    pub parent_id: Option<String>,
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
pub struct GrantListQuery {
    /// `user`, `group` or `service_account`; give together with `subject_id`.
    pub subject_type: Option<String>,
    pub subject_id: Option<Uuid>,
    #[param(value_type = Option<Uuid>)]
    pub role_id: Option<RoleId>,
    #[param(value_type = Option<Uuid>)]
    pub resource_id: Option<ResourceId>,
    /// Also list revoked and expired grants (default false).
    #[serde(default)]
    pub include_inactive: bool,
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
pub struct RevokeQuery {
    /// The version you read (or send `If-Match: "<version>"`).
    pub version: Option<i64>,
    /// Why the access ends (recorded in the audit event).
    pub reason: Option<String>,
}

// ---- resource types ----

/// Create a resource type and its actions.
#[utoipa::path(post, path = "/api/v1/resource-types", tag = "access", request_body = NewResourceType,
    responses((status = 201, description = "Created", body = ResourceType),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn create_resource_type(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiJson(input): ApiJson<NewResourceType>,
) -> ApiResult {
    let c = s.services.create_resource_type(&auth.authorized, input).await?;
    let (id, v) = (c.value.id, c.value.version);
    Ok(created(c, v, format!("/api/v1/resource-types/{id}")))
}

#[utoipa::path(get, path = "/api/v1/resource-types", tag = "access", params(PageQuery),
    responses((status = 200, description = "One page", body = Page<ResourceType>),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_resource_types(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult {
    let all = s.services.list_resource_types(&auth.authorized).await?;
    Ok(page_of(all, q.after.as_deref(), q.limit, |t| t.id.to_string()).into_response())
}

#[utoipa::path(get, path = "/api/v1/resource-types/{id}", tag = "access", params(("id" = Uuid, Path, description = "Resource type id")),
    responses((status = 200, description = "The resource type", body = ResourceType),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get_resource_type(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<ResourceTypeId>,
) -> ApiResult {
    let t = s.services.get_resource_type(&auth.authorized, id).await?;
    Ok(entity(&t, t.version))
}

/// Change a resource type. Removing an action still used by a role is refused (409).
#[utoipa::path(patch, path = "/api/v1/resource-types/{id}", tag = "access", request_body = ResourceTypeUpdate,
    params(("id" = Uuid, Path, description = "Resource type id"), ("If-Match" = Option<String>, Header, description = "\"<version>\"")),
    responses((status = 200, description = "Updated", body = ResourceType),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn update_resource_type(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<ResourceTypeId>,
    if_match: IfMatch,
    ApiJson(input): ApiJson<ResourceTypeUpdate>,
) -> ApiResult {
    if_match.check(input.version)?;
    let c = s
        .services
        .update_resource_type(&auth.authorized, id, input)
        .await
        .map_err(|e| Problem::from_service(e, if_match.conditional()))?;
    let v = c.value.version;
    Ok(updated(c, v))
}

#[utoipa::path(delete, path = "/api/v1/resource-types/{id}", tag = "access",
    params(("id" = Uuid, Path, description = "Resource type id"), VersionQuery, ("If-Match" = Option<String>, Header, description = "\"<version>\"")),
    responses((status = 204, description = "Deleted"),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn delete_resource_type(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<ResourceTypeId>,
    if_match: IfMatch,
    ApiQuery(q): ApiQuery<VersionQuery>,
) -> ApiResult {
    let version = if_match.resolve(q.version)?;
    let c = s
        .services
        .delete_resource_type(&auth.authorized, id, version)
        .await
        .map_err(|e| Problem::from_service(e, if_match.conditional()))?;
    Ok(no_content(c))
}

// ---- resources ----

/// Create a resource, optionally under a parent (facility → department → dataset).
#[utoipa::path(post, path = "/api/v1/resources", tag = "access", request_body = NewResource,
    responses((status = 201, description = "Created", body = Resource),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn create_resource(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiJson(input): ApiJson<NewResource>,
) -> ApiResult {
    let c = s.services.create_resource(&auth.authorized, input).await?;
    let (id, v) = (c.value.id, c.value.version);
    Ok(created(c, v, format!("/api/v1/resources/{id}")))
}

#[utoipa::path(get, path = "/api/v1/resources", tag = "access", params(ResourceListQuery),
    responses((status = 200, description = "One page", body = Page<Resource>),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_resources(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiQuery(q): ApiQuery<ResourceListQuery>,
) -> ApiResult {
    let parent_id = match q.parent_id.as_deref() {
        None => None,
        Some("root") => Some(None),
        Some(p) => Some(Some(p.parse::<ResourceId>().map_err(|_| {
            Problem::malformed("parent_id must be a resource id or `root`").with("field", "parent_id")
        })?)),
    };
    let query = ResourceQuery { type_id: q.type_id, parent_id };
    let page =
        s.services.list_resources(&auth.authorized, query, PageRequest { after: q.after, limit: q.limit }).await?;
    Ok(Page::from(page).into_response())
}

#[utoipa::path(get, path = "/api/v1/resources/{id}", tag = "access", params(("id" = Uuid, Path, description = "Resource id")),
    responses((status = 200, description = "The resource", body = Resource),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get_resource(State(s): State<AppState>, auth: Auth<Admin>, ApiPath(id): ApiPath<ResourceId>) -> ApiResult {
    let r = s.services.get_resource(&auth.authorized, id).await?;
    Ok(entity(&r, r.version))
}

/// Change a resource; moving it under a new parent refuses cycles.
#[utoipa::path(patch, path = "/api/v1/resources/{id}", tag = "access", request_body = ResourceUpdate,
    params(("id" = Uuid, Path, description = "Resource id"), ("If-Match" = Option<String>, Header, description = "\"<version>\"")),
    responses((status = 200, description = "Updated", body = Resource),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn update_resource(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<ResourceId>,
    if_match: IfMatch,
    ApiJson(input): ApiJson<ResourceUpdate>,
) -> ApiResult {
    if_match.check(input.version)?;
    let c = s
        .services
        .update_resource(&auth.authorized, id, input)
        .await
        .map_err(|e| Problem::from_service(e, if_match.conditional()))?;
    let v = c.value.version;
    Ok(updated(c, v))
}

#[utoipa::path(delete, path = "/api/v1/resources/{id}", tag = "access",
    params(("id" = Uuid, Path, description = "Resource id"), VersionQuery, ("If-Match" = Option<String>, Header, description = "\"<version>\"")),
    responses((status = 204, description = "Deleted"),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn delete_resource(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<ResourceId>,
    if_match: IfMatch,
    ApiQuery(q): ApiQuery<VersionQuery>,
) -> ApiResult {
    let version = if_match.resolve(q.version)?;
    let c = s
        .services
        .delete_resource(&auth.authorized, id, version)
        .await
        .map_err(|e| Problem::from_service(e, if_match.conditional()))?;
    Ok(no_content(c))
}

// ---- roles ----

/// Create a role: a bundle of permissions on resource types.
#[utoipa::path(post, path = "/api/v1/roles", tag = "access", request_body = NewRole,
    responses((status = 201, description = "Created", body = Role),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn create_role(State(s): State<AppState>, auth: Auth<Admin>, ApiJson(input): ApiJson<NewRole>) -> ApiResult {
    let c = s.services.create_role(&auth.authorized, input).await?;
    let (id, v) = (c.value.id, c.value.version);
    Ok(created(c, v, format!("/api/v1/roles/{id}")))
}

#[utoipa::path(get, path = "/api/v1/roles", tag = "access", params(PageQuery),
    responses((status = 200, description = "One page", body = Page<Role>),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_roles(State(s): State<AppState>, auth: Auth<Admin>, ApiQuery(q): ApiQuery<PageQuery>) -> ApiResult {
    let page = s.services.list_roles(&auth.authorized, q.page()).await?;
    Ok(Page::from(page).into_response())
}

#[utoipa::path(get, path = "/api/v1/roles/{id}", tag = "access", params(("id" = Uuid, Path, description = "Role id")),
    responses((status = 200, description = "The role", body = Role),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get_role(State(s): State<AppState>, auth: Auth<Admin>, ApiPath(id): ApiPath<RoleId>) -> ApiResult {
    let r = s.services.get_role(&auth.authorized, id).await?;
    Ok(entity(&r, r.version))
}

#[utoipa::path(patch, path = "/api/v1/roles/{id}", tag = "access", request_body = RoleUpdate,
    params(("id" = Uuid, Path, description = "Role id"), ("If-Match" = Option<String>, Header, description = "\"<version>\"")),
    responses((status = 200, description = "Updated", body = Role),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn update_role(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<RoleId>,
    if_match: IfMatch,
    ApiJson(input): ApiJson<RoleUpdate>,
) -> ApiResult {
    if_match.check(input.version)?;
    let c = s
        .services
        .update_role(&auth.authorized, id, input)
        .await
        .map_err(|e| Problem::from_service(e, if_match.conditional()))?;
    let v = c.value.version;
    Ok(updated(c, v))
}

#[utoipa::path(delete, path = "/api/v1/roles/{id}", tag = "access",
    params(("id" = Uuid, Path, description = "Role id"), VersionQuery, ("If-Match" = Option<String>, Header, description = "\"<version>\"")),
    responses((status = 204, description = "Deleted"),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn delete_role(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<RoleId>,
    if_match: IfMatch,
    ApiQuery(q): ApiQuery<VersionQuery>,
) -> ApiResult {
    let version = if_match.resolve(q.version)?;
    let c = s
        .services
        .delete_role(&auth.authorized, id, version)
        .await
        .map_err(|e| Problem::from_service(e, if_match.conditional()))?;
    Ok(no_content(c))
}

// ---- role templates ----

/// Create a role template: birthright roles from HR attributes.
#[utoipa::path(post, path = "/api/v1/role-templates", tag = "access", request_body = NewRoleTemplate,
    responses((status = 201, description = "Created", body = RoleTemplate),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn create_role_template(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiJson(input): ApiJson<NewRoleTemplate>,
) -> ApiResult {
    let c = s.services.create_role_template(&auth.authorized, input).await?;
    let (id, v) = (c.value.id, c.value.version);
    Ok(created(c, v, format!("/api/v1/role-templates/{id}")))
}

#[utoipa::path(get, path = "/api/v1/role-templates", tag = "access", params(PageQuery),
    responses((status = 200, description = "One page", body = Page<RoleTemplate>),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_role_templates(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult {
    let all = s.services.list_role_templates(&auth.authorized).await?;
    Ok(page_of(all, q.after.as_deref(), q.limit, |t| t.id.to_string()).into_response())
}

#[utoipa::path(get, path = "/api/v1/role-templates/{id}", tag = "access", params(("id" = Uuid, Path, description = "Role template id")),
    responses((status = 200, description = "The role template", body = RoleTemplate),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get_role_template(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<RoleTemplateId>,
) -> ApiResult {
    let t = s.services.get_role_template(&auth.authorized, id).await?;
    Ok(entity(&t, t.version))
}

#[utoipa::path(patch, path = "/api/v1/role-templates/{id}", tag = "access", request_body = RoleTemplateUpdate,
    params(("id" = Uuid, Path, description = "Role template id"), ("If-Match" = Option<String>, Header, description = "\"<version>\"")),
    responses((status = 200, description = "Updated", body = RoleTemplate),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn update_role_template(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<RoleTemplateId>,
    if_match: IfMatch,
    ApiJson(input): ApiJson<RoleTemplateUpdate>,
) -> ApiResult {
    if_match.check(input.version)?;
    let c = s
        .services
        .update_role_template(&auth.authorized, id, input)
        .await
        .map_err(|e| Problem::from_service(e, if_match.conditional()))?;
    let v = c.value.version;
    Ok(updated(c, v))
}

#[utoipa::path(delete, path = "/api/v1/role-templates/{id}", tag = "access",
    params(("id" = Uuid, Path, description = "Role template id"), VersionQuery, ("If-Match" = Option<String>, Header, description = "\"<version>\"")),
    responses((status = 204, description = "Deleted"),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn delete_role_template(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<RoleTemplateId>,
    if_match: IfMatch,
    ApiQuery(q): ApiQuery<VersionQuery>,
) -> ApiResult {
    let version = if_match.resolve(q.version)?;
    let c = s
        .services
        .delete_role_template(&auth.authorized, id, version)
        .await
        .map_err(|e| Problem::from_service(e, if_match.conditional()))?;
    Ok(no_content(c))
}

// ---- separation-of-duties rules ----

/// Create a separation-of-duties rule: two roles or permissions nobody may hold together.
#[utoipa::path(post, path = "/api/v1/sod-rules", tag = "access", request_body = NewSodRule,
    responses((status = 201, description = "Created", body = SodRule),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn create_sod_rule(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiJson(input): ApiJson<NewSodRule>,
) -> ApiResult {
    let c = s.services.create_sod_rule(&auth.authorized, input).await?;
    let (id, v) = (c.value.id, c.value.version);
    Ok(created(c, v, format!("/api/v1/sod-rules/{id}")))
}

#[utoipa::path(get, path = "/api/v1/sod-rules", tag = "access", params(PageQuery),
    responses((status = 200, description = "One page", body = Page<SodRule>),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_sod_rules(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult {
    let all = s.services.list_sod_rules(&auth.authorized).await?;
    Ok(page_of(all, q.after.as_deref(), q.limit, |r| r.id.to_string()).into_response())
}

#[utoipa::path(get, path = "/api/v1/sod-rules/{id}", tag = "access", params(("id" = Uuid, Path, description = "Rule id")),
    responses((status = 200, description = "The rule", body = SodRule),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get_sod_rule(State(s): State<AppState>, auth: Auth<Admin>, ApiPath(id): ApiPath<SodRuleId>) -> ApiResult {
    let r = s.services.get_sod_rule(&auth.authorized, id).await?;
    Ok(entity(&r, r.version))
}

#[utoipa::path(patch, path = "/api/v1/sod-rules/{id}", tag = "access", request_body = SodRuleUpdate,
    params(("id" = Uuid, Path, description = "Rule id"), ("If-Match" = Option<String>, Header, description = "\"<version>\"")),
    responses((status = 200, description = "Updated", body = SodRule),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn update_sod_rule(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<SodRuleId>,
    if_match: IfMatch,
    ApiJson(input): ApiJson<SodRuleUpdate>,
) -> ApiResult {
    if_match.check(input.version)?;
    let c = s
        .services
        .update_sod_rule(&auth.authorized, id, input)
        .await
        .map_err(|e| Problem::from_service(e, if_match.conditional()))?;
    let v = c.value.version;
    Ok(updated(c, v))
}

#[utoipa::path(delete, path = "/api/v1/sod-rules/{id}", tag = "access",
    params(("id" = Uuid, Path, description = "Rule id"), VersionQuery, ("If-Match" = Option<String>, Header, description = "\"<version>\"")),
    responses((status = 204, description = "Deleted"),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn delete_sod_rule(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<SodRuleId>,
    if_match: IfMatch,
    ApiQuery(q): ApiQuery<VersionQuery>,
) -> ApiResult {
    let version = if_match.resolve(q.version)?;
    let c = s
        .services
        .delete_sod_rule(&auth.authorized, id, version)
        .await
        .map_err(|e| Problem::from_service(e, if_match.conditional()))?;
    Ok(no_content(c))
}

// ---- grants ----

/// Grant a role to a user, group or service account, optionally scoped to a resource subtree.
/// The grant is recorded as `manual`, requested by the caller, and needs a `justification`;
/// `source` (other than `manual`), `requester` and `approver` are refused (422 naming the
/// field): provenance is recorded by the workflow that produced a grant, never asserted.
/// Granting a privileged or admin-scoped role from a session needs a fresh second factor
/// (403 `step-up-required`). Dangling references are 422 (naming the field);
/// separation-of-duties conflicts are 409.
#[utoipa::path(post, path = "/api/v1/grants", tag = "access", request_body = NewGrant,
    responses((status = 201, description = "Created", body = Grant),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn create_grant(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiJson(input): ApiJson<NewGrant>,
) -> ApiResult {
    let c = s.services.create_grant(&auth.authorized, input).await?;
    let (id, v) = (c.value.id, c.value.version);
    Ok(created(c, v, format!("/api/v1/grants/{id}")))
}

#[utoipa::path(get, path = "/api/v1/grants", tag = "access", params(GrantListQuery),
    responses((status = 200, description = "One page", body = Page<Grant>),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_grants(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiQuery(q): ApiQuery<GrantListQuery>,
) -> ApiResult {
    let subject = match (q.subject_type.as_deref(), q.subject_id) {
        (None, None) => None,
        (Some(kind), Some(id)) => Some(Subject::from_parts(kind, id).ok_or_else(|| {
            Problem::malformed("subject_type must be user, group or service_account").with("field", "subject_type")
        })?),
        _ => {
            return Err(Problem::malformed("give subject_type and subject_id together").with("field", "subject_id"));
        }
    };
    let query =
        GrantQuery { subject, role_id: q.role_id, resource_id: q.resource_id, include_inactive: q.include_inactive };
    let page = s.services.list_grants(&auth.authorized, query, PageRequest { after: q.after, limit: q.limit }).await?;
    Ok(Page::from(page).into_response())
}

#[utoipa::path(get, path = "/api/v1/grants/{id}", tag = "access", params(("id" = Uuid, Path, description = "Grant id")),
    responses((status = 200, description = "The grant", body = Grant),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get_grant(State(s): State<AppState>, auth: Auth<Admin>, ApiPath(id): ApiPath<GrantId>) -> ApiResult {
    let g = s.services.get_grant(&auth.authorized, id).await?;
    Ok(entity(&g, g.version))
}

/// Revoke a grant. The grant is kept, with who revoked it and when, and returned.
#[utoipa::path(delete, path = "/api/v1/grants/{id}", tag = "access",
    params(("id" = Uuid, Path, description = "Grant id"), RevokeQuery, ("If-Match" = Option<String>, Header, description = "\"<version>\"")),
    responses((status = 200, description = "Revoked", body = Grant),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn revoke_grant(
    State(s): State<AppState>,
    auth: Auth<Admin>,
    ApiPath(id): ApiPath<GrantId>,
    if_match: IfMatch,
    ApiQuery(q): ApiQuery<RevokeQuery>,
) -> ApiResult {
    let version = if_match.resolve(q.version)?;
    let c = s
        .services
        .revoke_grant(&auth.authorized, id, version, q.reason)
        .await
        .map_err(|e| Problem::from_service(e, if_match.conditional()))?;
    let v = c.value.version;
    Ok(updated(c, v))
}
