//! Handlers, one per route. Each parses, authenticates, calls one service method and maps
//! the result; none holds business rules.

pub mod access;
pub mod audit;
pub mod authn;
pub mod authzen;
pub mod directory;
pub mod hr;
pub mod ops;
pub mod pages;
pub mod policy;
pub mod scim;
pub mod tokens;

use crate::problem::Problem;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;
use wardkey_domain::{Member, ServiceAccountId, UserId};

/// `?version=N` on deletions (or send `If-Match: "N"`).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VersionQuery {
    /// The version you read (the entity's `ETag`).
    pub version: Option<i64>,
}

/// A member named by the `{kind}/{member_id}` path segments.
pub(crate) fn target_of_member(kind: &str, id: Uuid) -> Result<Member, Problem> {
    match kind {
        "user" => Ok(Member::User(UserId(id))),
        "service_account" => Ok(Member::ServiceAccount(ServiceAccountId(id))),
        _ => Err(Problem::malformed("the member kind must be user or service_account").with("field", "kind")),
    }
}
