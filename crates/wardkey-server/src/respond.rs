//! Response shapes shared by the handlers.

use crate::problem::Problem;
use axum::Json;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use wardkey_service::Committed;

pub const REVISION_HEADER: HeaderName = HeaderName::from_static("x-wardkey-revision");

pub type ApiResult = Result<Response, Problem>;

/// One page of a list: `{"items": [...], "next_cursor": "..."}`. Pass `next_cursor` back as
/// `?after=` for the next page; `null` means this was the last.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> From<wardkey_service::Paged<T>> for Page<T> {
    fn from(p: wardkey_service::Paged<T>) -> Self {
        Page { items: p.items, next_cursor: p.next_cursor }
    }
}

impl<T: Serialize> IntoResponse for Page<T> {
    fn into_response(self) -> Response {
        Json(self).into_response()
    }
}

/// Pages a short list the service returns whole (resource types, role templates, ...):
/// items whose cursor sorts after `after`, at most `limit` of them.
pub fn page_of<T>(
    mut items: Vec<T>,
    after: Option<&str>,
    limit: Option<u32>,
    cursor: impl Fn(&T) -> String,
) -> Page<T> {
    let limit = limit.unwrap_or(wardkey_service::DEFAULT_PAGE).clamp(1, wardkey_service::MAX_PAGE) as usize;
    items.sort_by_key(|a| cursor(a));
    let mut items: Vec<T> = match after {
        Some(a) => items.into_iter().filter(|i| cursor(i).as_str() > a).collect(),
        None => items,
    };
    let more = items.len() > limit;
    items.truncate(limit);
    let next_cursor = if more { items.last().map(&cursor) } else { None };
    Page { items, next_cursor }
}

fn etag(version: i64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("\"{version}\"")).ok()
}

fn set_revision(res: &mut Response, revision: &impl std::fmt::Display) {
    if let Ok(v) = HeaderValue::from_str(&revision.to_string()) {
        res.headers_mut().insert(REVISION_HEADER, v);
    }
}

/// A single entity read: body and `ETag: "<version>"`.
pub fn entity<T: Serialize>(value: &T, version: i64) -> Response {
    let mut res = Json(value).into_response();
    if let Some(e) = etag(version) {
        res.headers_mut().insert(header::ETAG, e);
    }
    res
}

/// A write that returns the entity it wrote: body, `ETag`, `X-Wardkey-Revision`, and
/// `Location` when one is given (creations).
pub fn written<T: Serialize>(
    status: StatusCode,
    committed: Committed<T>,
    version: i64,
    location: Option<String>,
) -> Response {
    let mut res = (status, Json(&committed.value)).into_response();
    if let Some(e) = etag(version) {
        res.headers_mut().insert(header::ETAG, e);
    }
    set_revision(&mut res, &committed.revision);
    if let Some(loc) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        res.headers_mut().insert(header::LOCATION, loc);
    }
    res
}

/// A write that returns the entity it created.
pub fn created<T: Serialize>(committed: Committed<T>, version: i64, location: String) -> Response {
    written(StatusCode::CREATED, committed, version, Some(location))
}

/// A write that returns the entity it changed.
pub fn updated<T: Serialize>(committed: Committed<T>, version: i64) -> Response {
    written(StatusCode::OK, committed, version, None)
}

/// A write with nothing to return (deletions): 204 with `X-Wardkey-Revision`.
pub fn no_content<T>(committed: Committed<T>) -> Response {
    let mut res = StatusCode::NO_CONTENT.into_response();
    set_revision(&mut res, &committed.revision);
    res
}

/// A write whose body is some other JSON value.
pub fn json_written<T, B: Serialize>(status: StatusCode, committed: &Committed<T>, body: &B) -> Response {
    let mut res = (status, Json(body)).into_response();
    set_revision(&mut res, &committed.revision);
    res
}
