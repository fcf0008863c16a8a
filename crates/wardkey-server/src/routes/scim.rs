//! SCIM 2.0 at `/scim/v2` (RFC 7644): discovery, Users, Groups, `.search`, `/Bulk`, `/Me`.
//!
//! Bearer tokens with scope `scim` (or `admin`). Bodies are `application/scim+json` (plain
//! `application/json` is accepted too); every error is a SCIM error document
//! (`urn:ietf:params:scim:api:messages:2.0:Error`, `status` as a string, `scimType`).
//! Writes carry `X-Wardkey-Revision`, so the `observe` middleware holds the response until the
//! decision index has applied them, as for every other write.

use crate::AppState;
use crate::problem::Problem;
use crate::respond::REVISION_HEADER;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::{Value, json};
use wardkey_scim::resource::{ScimError, get_ci, parse_attr_list, project};
use wardkey_scim::schema::{self, BULK_REQUEST, LIST_RESPONSE, ResourceKind, SEARCH_REQUEST};
use wardkey_service::scim::{
    BULK_MAX_OPERATIONS, BULK_MAX_PAYLOAD, Change, ListRequest, MAX_RESULTS, Precondition, ScimFailure,
};
use wardkey_service::{Authorized, ServiceError};

type Scim = wardkey_service::auth::Scim;

pub const SCIM_CONTENT_TYPE: &str = "application/scim+json";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/scim/v2/ServiceProviderConfig", get(sp_config).fallback(read_only))
        .route("/scim/v2/ResourceTypes", get(resource_types).fallback(read_only))
        .route("/scim/v2/ResourceTypes/{id}", get(resource_type).fallback(read_only))
        .route("/scim/v2/Schemas", get(schemas).fallback(read_only))
        .route("/scim/v2/Schemas/{id}", get(schema_by_id).fallback(read_only))
        .route("/scim/v2/Users", get(list_users).post(create_user).fallback(not_allowed))
        .route("/scim/v2/Users/.search", post(search_users).fallback(not_allowed))
        .route(
            "/scim/v2/Users/{id}",
            get(get_user).put(put_user).patch(patch_user).delete(delete_user).fallback(not_allowed),
        )
        .route("/scim/v2/Groups", get(list_groups).post(create_group).fallback(not_allowed))
        .route("/scim/v2/Groups/.search", post(search_groups).fallback(not_allowed))
        .route(
            "/scim/v2/Groups/{id}",
            get(get_group).put(put_group).patch(patch_group).delete(delete_group).fallback(not_allowed),
        )
        .route("/scim/v2/.search", post(search_root).fallback(not_allowed))
        .route("/scim/v2/Bulk", post(bulk).fallback(not_allowed))
        .route("/scim/v2/Me", any(me))
        .route("/scim/v2/Me/{*rest}", any(me))
        .route("/scim/v2", any(unknown))
        .route("/scim/v2/{*rest}", any(unknown))
}

// ---------------------------------------------------------------------------------------------
// Responses

fn scim_json(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut res = (status, bytes).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_CONTENT_TYPE));
    res
}

fn error_response(e: &ScimError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut res = scim_json(status, &e.to_json());
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"wardkey\""));
    }
    res
}

/// The SCIM error for a failure; internal details go to the log only.
pub fn to_scim_error(f: ScimFailure) -> ScimError {
    match f {
        ScimFailure::Scim(e) => e,
        ScimFailure::Service(e) => match e {
            ServiceError::NotFound { kind, id } => ScimError::new(404, None, format!("{kind} {id} not found")),
            ServiceError::Duplicate { kind, field, value } => {
                ScimError::new(409, Some("uniqueness"), format!("a {kind} with {field} {value:?} already exists"))
            }
            ServiceError::VersionConflict { .. } => {
                ScimError::new(409, None, "the resource changed while this request ran; read it again and retry")
            }
            ServiceError::Invalid(errors) => ScimError::invalid_value(
                errors.iter().map(|f| format!("{}: {}", f.field, f.message)).collect::<Vec<_>>().join("; "),
            ),
            ServiceError::Conflict { message, .. } => ScimError::new(409, None, message),
            ServiceError::IllegalTransition { from, to } => {
                ScimError::new(409, None, format!("illegal lifecycle transition from {from} to {to}"))
            }
            e @ ServiceError::SodViolation { .. } => ScimError::new(409, None, e.to_string()),
            e @ (ServiceError::Forbidden { .. } | ServiceError::PasswordChangeRequired) => {
                ScimError::new(403, None, e.to_string())
            }
            ServiceError::Unauthenticated => {
                ScimError::new(401, None, "send an API token with scope scim as `Authorization: Bearer <token>`")
            }
            ServiceError::RateLimited { .. } => ScimError::new(429, None, "too many attempts; try again later"),
            e @ ServiceError::Unavailable { .. } => ScimError::new(503, None, e.to_string()),
            other => {
                tracing::error!(error = %other, "SCIM request failed");
                ScimError::new(500, None, "internal error")
            }
        },
    }
}

pub struct ScimResponse(Response);

impl IntoResponse for ScimResponse {
    fn into_response(self) -> Response {
        self.0
    }
}

impl From<ScimFailure> for ScimResponse {
    fn from(f: ScimFailure) -> Self {
        ScimResponse(error_response(&to_scim_error(f)))
    }
}

impl From<ScimError> for ScimResponse {
    fn from(e: ScimError) -> Self {
        ScimResponse(error_response(&e))
    }
}

type ScimResult = Result<Response, ScimResponse>;

fn problem_to_scim(p: Problem) -> ScimResponse {
    ScimResponse(error_response(&ScimError::new(p.kind.status().as_u16(), None, p.detail)))
}

// ---------------------------------------------------------------------------------------------
// Extractors

/// A caller holding scope `scim` (admin tokens qualify); failures answer as SCIM errors.
pub struct ScimAuth {
    authorized: Authorized<Scim>,
}

impl FromRequestParts<AppState> for ScimAuth {
    type Rejection = ScimResponse;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let mut caller = crate::extract::authenticate(parts, state).await.map_err(problem_to_scim)?;
        caller.meta.operation = Some(crate::extract::operation(parts));
        let authorized = state
            .services
            .authorize_request::<Scim>(caller)
            .await
            .map_err(|e| ScimResponse::from(ScimFailure::Service(e)))?;
        Ok(ScimAuth { authorized })
    }
}

/// A JSON body (`application/scim+json` or `application/json`).
pub struct ScimBody(Value);

impl<S: Send + Sync> axum::extract::FromRequest<S> for ScimBody {
    type Rejection = ScimResponse;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or_default().split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
            if !(ct == "application/json" || ct == SCIM_CONTENT_TYPE || ct.ends_with("+json")) {
                return Err(ScimError::new(415, None, "send the body as application/scim+json").into());
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ScimError::new(413, None, "the request body exceeds the server's limit")
            } else {
                ScimError::invalid_syntax("the request body could not be read")
            }
        })?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ScimError::invalid_syntax(format!(
                "the body is not valid JSON: {}",
                e.to_string().chars().take(200).collect::<String>()
            ))
        })?;
        Ok(ScimBody(v))
    }
}

/// Query parameters, names matched case-insensitively.
struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    fn int(&self, name: &str) -> Result<Option<i64>, ScimError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| ScimError::invalid_value(format!("{name} must be an integer"))),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ScimResponse;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match Query::<Vec<(String, String)>>::try_from_uri(&parts.uri) {
            Ok(Query(v)) => Ok(Params(v)),
            Err(_) => Err(ScimError::invalid_syntax("the query string could not be parsed").into()),
        }
    }
}

/// `<public URL>/scim/v2` for `Location`, `meta.location` and `$ref`s: built from the
/// configured public URL (`[auth] public_url` / `--public-url`), never from the request's
/// `Host` header, which any client can forge (a forged host in a `Location` would send a
/// connector's next request, token and all, wherever the forger likes).
fn base_url(s: &AppState) -> String {
    format!("{}/scim/v2", s.services.public_origin())
}

fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// `If-Match` / `If-None-Match` as a version: `W/"3"`, `"3"`, `*`.
fn parse_tag(v: &str) -> Option<i64> {
    let v = v.trim();
    let v = v.strip_prefix("W/").unwrap_or(v);
    v.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
}

fn precondition(headers: &HeaderMap) -> Precondition {
    match headers.get(header::IF_MATCH).map(|v| v.to_str().unwrap_or_default().trim().to_owned()) {
        None => Precondition::None,
        Some(v) if v == "*" => Precondition::None,
        Some(v) => match v.split(',').find_map(parse_tag) {
            Some(n) => Precondition::Version(n),
            None => Precondition::Unmatchable,
        },
    }
}

fn not_modified(headers: &HeaderMap, version: i64) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "*" || v.split(',').filter_map(parse_tag).any(|n| n == version))
}

/// `attributes` / `excludedAttributes`.
struct Projection {
    attributes: Vec<wardkey_scim::AttrPath>,
    excluded: Vec<wardkey_scim::AttrPath>,
}

impl Projection {
    fn parse(kind: ResourceKind, attributes: Option<&str>, excluded: Option<&str>) -> Result<Projection, ScimError> {
        Ok(Projection {
            attributes: attributes.map(|a| parse_attr_list(kind, a)).transpose()?.unwrap_or_default(),
            excluded: excluded.map(|a| parse_attr_list(kind, a)).transpose()?.unwrap_or_default(),
        })
    }
    fn from_params(kind: ResourceKind, p: &Params) -> Result<Projection, ScimError> {
        Projection::parse(kind, p.get("attributes"), p.get("excludedAttributes"))
    }
    /// Whether group members must be loaded.
    fn wants_members(&self) -> bool {
        let names = |l: &[wardkey_scim::AttrPath]| l.iter().any(|p| p.attr.eq_ignore_case("members"));
        if !self.attributes.is_empty() && !names(&self.attributes) {
            return false;
        }
        !self.excluded.iter().any(|p| p.attr.eq_ignore_case("members") && p.sub_attr.is_none())
    }
    fn apply(&self, kind: ResourceKind, v: Value) -> Value {
        if self.attributes.is_empty() && self.excluded.is_empty() {
            v
        } else {
            project(kind, v, &self.attributes, &self.excluded)
        }
    }
}

fn resource_response(
    status: StatusCode,
    body: &Value,
    version: i64,
    revision: Option<u64>,
    location: Option<&str>,
) -> Response {
    let mut res = scim_json(status, body);
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag(version)) {
        h.insert(header::ETAG, v);
    }
    if let Some(rev) = revision
        && let Ok(v) = HeaderValue::from_str(&rev.to_string())
    {
        h.insert(REVISION_HEADER, v);
    }
    if let Some(loc) = location.and_then(|l| HeaderValue::from_str(l).ok()) {
        h.insert(header::LOCATION, loc);
    }
    res
}

// ---------------------------------------------------------------------------------------------
// Discovery

async fn read_only() -> Response {
    error_response(&ScimError::new(405, None, "this endpoint is read-only"))
}

async fn not_allowed() -> Response {
    error_response(&ScimError::new(405, None, "method not allowed on this endpoint"))
}

async fn unknown() -> Response {
    error_response(&ScimError::new(404, None, "no such SCIM endpoint"))
}

async fn me(_auth: ScimAuth) -> Response {
    error_response(&ScimError::new(
        501,
        None,
        "/Me is not supported: connectors act for the organisation, not a signed-in user",
    ))
}

async fn sp_config(State(s): State<AppState>, _auth: ScimAuth) -> Response {
    let base = base_url(&s);
    let max_payload = BULK_MAX_PAYLOAD.min(s.max_body_bytes);
    scim_json(
        StatusCode::OK,
        &json!({
            "schemas": [schema::SP_CONFIG_SCHEMA],
            "documentationUri": "https://wardkey.dev/docs/scim",
            "patch": { "supported": true },
            "bulk": { "supported": true, "maxOperations": BULK_MAX_OPERATIONS, "maxPayloadSize": max_payload },
            "filter": { "supported": true, "maxResults": MAX_RESULTS },
            "changePassword": { "supported": false },
            "sort": { "supported": true },
            "etag": { "supported": true },
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "Bearer token",
                "description": "A Wardkey API token with scope scim: Authorization: Bearer <token>",
                "primary": true,
            }],
            "meta": { "resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig") },
        }),
    )
}

fn list_of(items: Vec<Value>) -> Value {
    json!({ "schemas": [LIST_RESPONSE], "totalResults": items.len(), "startIndex": 1, "itemsPerPage": items.len(), "Resources": items })
}

async fn resource_types(State(s): State<AppState>, _auth: ScimAuth) -> Response {
    scim_json(StatusCode::OK, &list_of(schema::resource_types(&base_url(&s))))
}

async fn resource_type(State(s): State<AppState>, _auth: ScimAuth, Path(id): Path<String>) -> Response {
    match schema::resource_types(&base_url(&s))
        .into_iter()
        .find(|r| r["id"].as_str().is_some_and(|i| i.eq_ignore_ascii_case(&id)))
    {
        Some(r) => scim_json(StatusCode::OK, &r),
        None => error_response(&ScimError::new(404, None, "no such resource type")),
    }
}

async fn schemas(State(s): State<AppState>, _auth: ScimAuth) -> Response {
    scim_json(StatusCode::OK, &list_of(schema::schemas(&base_url(&s))))
}

async fn schema_by_id(State(s): State<AppState>, _auth: ScimAuth, Path(id): Path<String>) -> Response {
    match schema::schemas(&base_url(&s))
        .into_iter()
        .find(|r| r["id"].as_str().is_some_and(|i| i.eq_ignore_ascii_case(&id)))
    {
        Some(r) => scim_json(StatusCode::OK, &r),
        None => error_response(&ScimError::new(404, None, "no such schema")),
    }
}

// ---------------------------------------------------------------------------------------------
// Lists and searches

async fn list(
    s: &AppState,
    auth: &ScimAuth,
    kind: ResourceKind,
    req: ListRequest,
    proj: Projection,
    base: &str,
) -> ScimResult {
    let page = s.services.scim_list(&auth.authorized, kind, &req, base, proj.wants_members()).await?;
    let n = page.resources.len();
    let resources: Vec<Value> = page.resources.into_iter().map(|r| proj.apply(kind, r)).collect();
    Ok(scim_json(
        StatusCode::OK,
        &json!({ "schemas": [LIST_RESPONSE], "totalResults": page.total, "startIndex": page.start_index, "itemsPerPage": n, "Resources": resources }),
    ))
}

fn list_request(p: &Params) -> Result<ListRequest, ScimError> {
    Ok(ListRequest {
        filter: p.get("filter").map(str::to_owned),
        sort_by: p.get("sortBy").map(str::to_owned),
        sort_order: p.get("sortOrder").map(str::to_owned),
        start_index: p.int("startIndex")?,
        count: p.int("count")?,
    })
}

async fn list_users(State(s): State<AppState>, auth: ScimAuth, p: Params) -> ScimResult {
    let kind = ResourceKind::User;
    list(&s, &auth, kind, list_request(&p)?, Projection::from_params(kind, &p)?, &base_url(&s)).await
}

async fn list_groups(State(s): State<AppState>, auth: ScimAuth, p: Params) -> ScimResult {
    let kind = ResourceKind::Group;
    list(&s, &auth, kind, list_request(&p)?, Projection::from_params(kind, &p)?, &base_url(&s)).await
}

fn str_list(v: Option<&Value>) -> Result<Option<String>, ScimError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(a)) => {
            let parts: Option<Vec<&str>> = a.iter().map(Value::as_str).collect();
            parts.map(|p| Some(p.join(","))).ok_or_else(|| ScimError::invalid_value("attributes must be strings"))
        }
        Some(_) => Err(ScimError::invalid_value("attributes must be an array of strings")),
    }
}

fn search_request(
    kind: Option<ResourceKind>,
    body: &Value,
) -> Result<(ListRequest, Option<String>, Option<String>), ScimError> {
    let obj = body.as_object().ok_or_else(|| ScimError::invalid_syntax("the body must be a SearchRequest object"))?;
    let ok = get_ci(obj, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(SEARCH_REQUEST))));
    if !ok {
        return Err(ScimError::invalid_syntax(format!("\"schemas\" must be [\"{SEARCH_REQUEST}\"]")));
    }
    let text = |k: &str| -> Result<Option<String>, ScimError> {
        match get_ci(obj, k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ScimError::invalid_value(format!("{k} must be a string"))),
        }
    };
    let int = |k: &str| -> Result<Option<i64>, ScimError> {
        match get_ci(obj, k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| ScimError::invalid_value(format!("{k} must be an integer"))),
        }
    };
    let _ = kind;
    Ok((
        ListRequest {
            filter: text("filter")?,
            sort_by: text("sortBy")?,
            sort_order: text("sortOrder")?,
            start_index: int("startIndex")?,
            count: int("count")?,
        },
        str_list(get_ci(obj, "attributes"))?,
        str_list(get_ci(obj, "excludedAttributes"))?,
    ))
}

async fn search(s: &AppState, auth: &ScimAuth, kind: ResourceKind, body: &Value) -> ScimResult {
    let (req, attributes, excluded) = search_request(Some(kind), body)?;
    let proj = Projection::parse(kind, attributes.as_deref(), excluded.as_deref())?;
    list(s, auth, kind, req, proj, &base_url(s)).await
}

async fn search_users(State(s): State<AppState>, auth: ScimAuth, ScimBody(body): ScimBody) -> ScimResult {
    search(&s, &auth, ResourceKind::User, &body).await
}

async fn search_groups(State(s): State<AppState>, auth: ScimAuth, ScimBody(body): ScimBody) -> ScimResult {
    search(&s, &auth, ResourceKind::Group, &body).await
}

/// `POST /.search`: Users, then Groups, paged over both. A filter naming attributes only one
/// type has searches that type alone.
async fn search_root(State(s): State<AppState>, auth: ScimAuth, ScimBody(body): ScimBody) -> ScimResult {
    let (req, attributes, excluded) = search_request(None, &body)?;
    let base = base_url(&s);
    let start = req.start_index.unwrap_or(1).max(1);
    let count = req.count.unwrap_or(100).clamp(0, MAX_RESULTS);
    let mut total = 0;
    let mut resources = Vec::new();
    let mut first_error = None;
    let mut any_ok = false;
    let mut skipped = 0i64;
    for kind in [ResourceKind::User, ResourceKind::Group] {
        let proj = match Projection::parse(kind, attributes.as_deref(), excluded.as_deref()) {
            Ok(p) => p,
            Err(e) => {
                first_error.get_or_insert(e);
                continue;
            }
        };
        let want = count - resources.len() as i64;
        let offset = (start - 1 - skipped).max(0);
        let kreq = ListRequest { start_index: Some(offset + 1), count: Some(want), ..req.clone() };
        match s.services.scim_list(&auth.authorized, kind, &kreq, &base, proj.wants_members()).await {
            Ok(page) => {
                any_ok = true;
                total += page.total;
                skipped += page.total;
                resources.extend(page.resources.into_iter().map(|r| proj.apply(kind, r)));
            }
            Err(ScimFailure::Scim(e))
                if e.scim_type == Some("invalidFilter") || e.scim_type == Some("invalidValue") =>
            {
                first_error.get_or_insert(e);
            }
            Err(e) => return Err(e.into()),
        }
    }
    if !any_ok && let Some(e) = first_error {
        return Err(e.into());
    }
    let n = resources.len();
    Ok(scim_json(
        StatusCode::OK,
        &json!({ "schemas": [LIST_RESPONSE], "totalResults": total, "startIndex": start, "itemsPerPage": n, "Resources": resources }),
    ))
}

// ---------------------------------------------------------------------------------------------
// Single resources

async fn get_one(
    s: &AppState,
    auth: &ScimAuth,
    kind: ResourceKind,
    id: &str,
    headers: &HeaderMap,
    p: &Params,
) -> ScimResult {
    let proj = Projection::from_params(kind, p)?;
    let (resource, version) =
        s.services.scim_get(&auth.authorized, kind, id, &base_url(s), proj.wants_members()).await?;
    if not_modified(headers, version) {
        let mut res = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(v) = HeaderValue::from_str(&etag(version)) {
            res.headers_mut().insert(header::ETAG, v);
        }
        return Ok(res);
    }
    Ok(resource_response(StatusCode::OK, &proj.apply(kind, resource), version, None, None))
}

async fn create(s: &AppState, auth: &ScimAuth, kind: ResourceKind, p: &Params, body: Value) -> ScimResult {
    let proj = Projection::from_params(kind, p)?;
    let base = base_url(s);
    let c = s.services.scim_create(&auth.authorized, kind, body, base.clone()).await?;
    let location = format!("{base}{}/{}", kind.endpoint(), c.value.id);
    Ok(resource_response(
        StatusCode::CREATED,
        &proj.apply(kind, c.value.resource),
        c.value.version,
        Some(c.revision),
        Some(&location),
    ))
}

async fn update(
    s: &AppState,
    auth: &ScimAuth,
    kind: ResourceKind,
    id: &str,
    headers: &HeaderMap,
    p: &Params,
    change: Change,
) -> ScimResult {
    let proj = Projection::from_params(kind, p)?;
    let c = s.services.scim_update(&auth.authorized, kind, id, change, precondition(headers), base_url(s)).await?;
    Ok(resource_response(StatusCode::OK, &proj.apply(kind, c.value.resource), c.value.version, Some(c.revision), None))
}

async fn delete(s: &AppState, auth: &ScimAuth, kind: ResourceKind, id: &str, headers: &HeaderMap) -> ScimResult {
    let c = s.services.scim_delete(&auth.authorized, kind, id, precondition(headers)).await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&c.revision.to_string()) {
        res.headers_mut().insert(REVISION_HEADER, v);
    }
    Ok(res)
}

async fn get_user(
    State(s): State<AppState>,
    auth: ScimAuth,
    Path(id): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> ScimResult {
    get_one(&s, &auth, ResourceKind::User, &id, &headers, &p).await
}
async fn get_group(
    State(s): State<AppState>,
    auth: ScimAuth,
    Path(id): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> ScimResult {
    get_one(&s, &auth, ResourceKind::Group, &id, &headers, &p).await
}
async fn create_user(State(s): State<AppState>, auth: ScimAuth, p: Params, ScimBody(b): ScimBody) -> ScimResult {
    create(&s, &auth, ResourceKind::User, &p, b).await
}
async fn create_group(State(s): State<AppState>, auth: ScimAuth, p: Params, ScimBody(b): ScimBody) -> ScimResult {
    create(&s, &auth, ResourceKind::Group, &p, b).await
}
async fn put_user(
    State(s): State<AppState>,
    auth: ScimAuth,
    Path(id): Path<String>,
    headers: HeaderMap,
    p: Params,
    ScimBody(b): ScimBody,
) -> ScimResult {
    update(&s, &auth, ResourceKind::User, &id, &headers, &p, Change::Replace(b)).await
}
async fn put_group(
    State(s): State<AppState>,
    auth: ScimAuth,
    Path(id): Path<String>,
    headers: HeaderMap,
    p: Params,
    ScimBody(b): ScimBody,
) -> ScimResult {
    update(&s, &auth, ResourceKind::Group, &id, &headers, &p, Change::Replace(b)).await
}
async fn patch_user(
    State(s): State<AppState>,
    auth: ScimAuth,
    Path(id): Path<String>,
    headers: HeaderMap,
    p: Params,
    ScimBody(b): ScimBody,
) -> ScimResult {
    update(&s, &auth, ResourceKind::User, &id, &headers, &p, Change::Patch(b)).await
}
async fn patch_group(
    State(s): State<AppState>,
    auth: ScimAuth,
    Path(id): Path<String>,
    headers: HeaderMap,
    p: Params,
    ScimBody(b): ScimBody,
) -> ScimResult {
    update(&s, &auth, ResourceKind::Group, &id, &headers, &p, Change::Patch(b)).await
}
async fn delete_user(
    State(s): State<AppState>,
    auth: ScimAuth,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ScimResult {
    delete(&s, &auth, ResourceKind::User, &id, &headers).await
}
async fn delete_group(
    State(s): State<AppState>,
    auth: ScimAuth,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ScimResult {
    delete(&s, &auth, ResourceKind::Group, &id, &headers).await
}

// ---------------------------------------------------------------------------------------------
// Bulk

/// Replaces `bulkId:<id>` strings by the ids created earlier in the request.
fn resolve_bulk_ids(v: &mut Value, ids: &[(String, String)]) -> Result<(), ScimError> {
    match v {
        Value::String(s) => {
            if let Some(b) = s.strip_prefix("bulkId:") {
                let id = ids.iter().find(|(k, _)| k == b).ok_or_else(|| {
                    ScimError::new(
                        409,
                        Some("invalidValue"),
                        format!(
                            "bulkId {:?} is not defined by an earlier operation",
                            b.chars().take(64).collect::<String>()
                        ),
                    )
                })?;
                *s = id.1.clone();
            }
        }
        Value::Array(a) => {
            for i in a {
                resolve_bulk_ids(i, ids)?;
            }
        }
        Value::Object(o) => {
            for (_, i) in o.iter_mut() {
                resolve_bulk_ids(i, ids)?;
            }
        }
        _ => {}
    }
    Ok(())
}

async fn bulk(State(s): State<AppState>, auth: ScimAuth, body: Bytes) -> ScimResult {
    let max_payload = BULK_MAX_PAYLOAD.min(s.max_body_bytes);
    if body.len() > max_payload {
        return Err(ScimError::new(
            413,
            None,
            format!("the bulk request exceeds maxPayloadSize ({max_payload} bytes)"),
        )
        .into());
    }
    let body: Value =
        serde_json::from_slice(&body).map_err(|_| ScimError::invalid_syntax("the body is not valid JSON"))?;
    let obj = body.as_object().ok_or_else(|| ScimError::invalid_syntax("the body must be a BulkRequest object"))?;
    let ok = get_ci(obj, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(BULK_REQUEST))));
    if !ok {
        return Err(ScimError::invalid_syntax(format!("\"schemas\" must be [\"{BULK_REQUEST}\"]")).into());
    }
    let ops = get_ci(obj, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::invalid_syntax("\"Operations\" must be an array"))?;
    if ops.len() > BULK_MAX_OPERATIONS {
        return Err(ScimError::new(
            413,
            None,
            format!("the bulk request has more than maxOperations ({BULK_MAX_OPERATIONS}) operations"),
        )
        .into());
    }
    let fail_on_errors = match get_ci(obj, "failOnErrors") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|n| *n >= 1)
                .ok_or_else(|| ScimError::invalid_value("failOnErrors must be a positive integer"))?,
        ),
    };
    let base = base_url(&s);
    let mut ids: Vec<(String, String)> = Vec::new();
    let mut results = Vec::new();
    let mut errors = 0u64;
    let mut revision: Option<u64> = None;
    for op in ops {
        if fail_on_errors.is_some_and(|n| errors >= n) {
            break;
        }
        let outcome = bulk_one(&s, &auth, &base, op, &mut ids).await;
        let mut entry = serde_json::Map::new();
        let o = op.as_object();
        let method =
            o.and_then(|o| get_ci(o, "method")).and_then(Value::as_str).unwrap_or_default().to_ascii_uppercase();
        entry.insert("method".into(), Value::String(method));
        if let Some(b) = o.and_then(|o| get_ci(o, "bulkId")) {
            entry.insert("bulkId".into(), b.clone());
        }
        match outcome {
            Ok((status, location, version, rev)) => {
                revision = Some(revision.map_or(rev, |r| r.max(rev)));
                if let Some(l) = location {
                    entry.insert("location".into(), Value::String(l));
                }
                if let Some(v) = version {
                    entry.insert("version".into(), Value::String(etag(v)));
                }
                entry.insert("status".into(), Value::String(status.to_string()));
            }
            Err(e) => {
                errors += 1;
                entry.insert("status".into(), Value::String(e.status.to_string()));
                entry.insert("response".into(), e.to_json());
            }
        }
        results.push(Value::Object(entry));
    }
    let mut res = scim_json(StatusCode::OK, &json!({ "schemas": [schema::BULK_RESPONSE], "Operations": results }));
    if let Some(rev) = revision
        && let Ok(v) = HeaderValue::from_str(&rev.to_string())
    {
        res.headers_mut().insert(REVISION_HEADER, v);
    }
    Ok(res)
}

/// One bulk operation: (status, location, version, revision) or its error.
async fn bulk_one(
    s: &AppState,
    auth: &ScimAuth,
    base: &str,
    op: &Value,
    ids: &mut Vec<(String, String)>,
) -> Result<(u16, Option<String>, Option<i64>, u64), ScimError> {
    let o = op.as_object().ok_or_else(|| ScimError::invalid_syntax("an operation must be an object"))?;
    let method = get_ci(o, "method")
        .and_then(Value::as_str)
        .ok_or_else(|| ScimError::invalid_syntax("operation without \"method\""))?;
    let path = get_ci(o, "path")
        .and_then(Value::as_str)
        .ok_or_else(|| ScimError::invalid_syntax("operation without \"path\""))?;
    let mut segments: Vec<Value> = path.split('/').map(|s| Value::String(s.to_owned())).collect();
    for s in &mut segments {
        resolve_bulk_ids(s, ids)?;
    }
    let path = segments.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("/");
    let mut data = get_ci(o, "data").cloned().unwrap_or(Value::Null);
    resolve_bulk_ids(&mut data, ids)?;
    let pre = match get_ci(o, "version").and_then(Value::as_str) {
        None => Precondition::None,
        Some(v) => parse_tag(v).map_or(Precondition::Unmatchable, Precondition::Version),
    };
    let mut segments = path.trim_start_matches('/').splitn(2, '/');
    let kind = match segments.next() {
        Some("Users") => ResourceKind::User,
        Some("Groups") => ResourceKind::Group,
        _ => {
            return Err(ScimError::invalid_path(format!(
                "unsupported bulk path {:?}",
                path.chars().take(64).collect::<String>()
            )));
        }
    };
    let id = segments.next().map(str::to_owned);
    let fail = |f: ScimFailure| to_scim_error(f);
    match (method.to_ascii_uppercase().as_str(), id) {
        ("POST", None) => {
            let c = s.services.scim_create(&auth.authorized, kind, data, base.to_owned()).await.map_err(fail)?;
            if let Some(b) = get_ci(o, "bulkId").and_then(Value::as_str) {
                ids.push((b.to_owned(), c.value.id.clone()));
            }
            Ok((201, Some(format!("{base}{}/{}", kind.endpoint(), c.value.id)), Some(c.value.version), c.revision))
        }
        ("PUT", Some(id)) | ("PATCH", Some(id)) => {
            let change = if method.eq_ignore_ascii_case("PUT") { Change::Replace(data) } else { Change::Patch(data) };
            let c = s
                .services
                .scim_update(&auth.authorized, kind, &id, change, pre, base.to_owned())
                .await
                .map_err(fail)?;
            Ok((200, Some(format!("{base}{}/{}", kind.endpoint(), c.value.id)), Some(c.value.version), c.revision))
        }
        ("DELETE", Some(id)) => {
            let c = s.services.scim_delete(&auth.authorized, kind, &id, pre).await.map_err(fail)?;
            Ok((204, Some(format!("{base}{}/{id}", kind.endpoint())), None, c.revision))
        }
        _ => Err(ScimError::invalid_syntax("unsupported bulk method/path combination")),
    }
}
