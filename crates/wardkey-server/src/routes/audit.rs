//! The audit log: events, the latest signed checkpoint, inclusion and consistency proofs.
//! Scope `audit:read` (or `admin`).

use crate::AppState;
use crate::extract::{ApiQuery, Auth};
use crate::problem::ProblemDoc;
use crate::respond::{ApiResult, Page};
use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use wardkey_audit::{AuditEvent, HashExt};
use wardkey_service::AuditRead;
use wardkey_store::AuditQuery;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Principal, e.g. `token:<uuid>`.
    pub actor: Option<String>,
    /// Target, e.g. `user:<uuid>`.
    pub target: Option<String>,
    /// Action, e.g. `grant.create`.
    pub action: Option<String>,
    /// Events at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Events before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// Index of the last event already seen (`next_cursor`).
    pub after: Option<u64>,
    /// Page size, 1 to 500 (default 100); outside that range is refused.
    #[serde(default, deserialize_with = "crate::extract::page_limit")]
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InclusionQuery {
    /// Leaf index of the event.
    pub index: u64,
    /// Tree size the proof is for (e.g. the latest checkpoint's).
    pub size: u64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyQuery {
    pub from: u64,
    pub to: u64,
}

/// The latest signed checkpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointView {
    pub size: u64,
    /// Merkle root, lowercase hex.
    pub root: String,
    pub time: DateTime<Utc>,
    /// The signed note (C2SP checkpoint text with signature lines), verifiable offline.
    pub note: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InclusionProofView {
    pub index: u64,
    pub size: u64,
    /// RFC 9162 leaf hash of the event, hex.
    pub leaf_hash: String,
    /// Root of the tree of `size` leaves, hex.
    pub root: String,
    /// Audit path, hex, leaf to root.
    pub proof: Vec<String>,
    pub event: AuditEvent,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConsistencyProofView {
    pub from: u64,
    pub to: u64,
    pub from_root: String,
    pub to_root: String,
    pub proof: Vec<String>,
}

/// List audit events, oldest first.
#[utoipa::path(get, path = "/api/v1/audit/events", tag = "audit", params(EventsQuery),
    responses((status = 200, description = "One page; `next_cursor` is the last index", body = Page<AuditEvent>),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_events(
    State(s): State<AppState>,
    auth: Auth<AuditRead>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult {
    let query = AuditQuery { actor: q.actor, target: q.target, action: q.action, since: q.since, until: q.until };
    let (items, next) = s.services.audit_events(&auth.authorized, query, q.after, q.limit).await?;
    Ok(Page { items, next_cursor: next.map(|i| i.to_string()) }.into_response())
}

/// The latest signed checkpoint (tree size, root, time, signed note).
#[utoipa::path(get, path = "/api/v1/audit/checkpoint", tag = "audit",
    responses((status = 200, description = "The checkpoint", body = CheckpointView),
        (status = "4XX", description = "Problem (404 before the first checkpoint)", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn checkpoint(State(s): State<AppState>, auth: Auth<AuditRead>) -> ApiResult {
    let cp = s.services.audit_checkpoint(&auth.authorized).await?;
    Ok(Json(CheckpointView { size: cp.size, root: cp.root.to_hex(), time: cp.time, note: cp.note }).into_response())
}

/// Proof that event `index` is in the tree of `size` events.
#[utoipa::path(get, path = "/api/v1/audit/proof/inclusion", tag = "audit", params(InclusionQuery),
    responses((status = 200, description = "The proof", body = InclusionProofView),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn inclusion_proof(
    State(s): State<AppState>,
    auth: Auth<AuditRead>,
    ApiQuery(q): ApiQuery<InclusionQuery>,
) -> ApiResult {
    let (event, root, proof) = s.services.inclusion_proof(&auth.authorized, q.index, q.size).await?;
    Ok(Json(InclusionProofView {
        index: q.index,
        size: q.size,
        leaf_hash: event.leaf_hash().to_hex(),
        root: root.to_hex(),
        proof: proof.iter().map(HashExt::to_hex).collect(),
        event,
    })
    .into_response())
}

/// Proof that the tree of `to` events extends the tree of `from` events.
#[utoipa::path(get, path = "/api/v1/audit/proof/consistency", tag = "audit", params(ConsistencyQuery),
    responses((status = 200, description = "The proof", body = ConsistencyProofView),
        (status = "4XX", description = "Problem", body = ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn consistency_proof(
    State(s): State<AppState>,
    auth: Auth<AuditRead>,
    ApiQuery(q): ApiQuery<ConsistencyQuery>,
) -> ApiResult {
    let (from_root, to_root, proof) = s.services.consistency_proof(&auth.authorized, q.from, q.to).await?;
    Ok(Json(ConsistencyProofView {
        from: q.from,
        to: q.to,
        from_root: from_root.to_hex(),
        to_root: to_root.to_hex(),
        proof: proof.iter().map(HashExt::to_hex).collect(),
    })
    .into_response())
}
