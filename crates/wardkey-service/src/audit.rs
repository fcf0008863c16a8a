//! Reading the audit log and its proofs.

use crate::auth::{AuditRead, Authorized};
use crate::{MAX_PAGE, Result, ServiceError, Services};
use wardkey_audit::{AuditEvent, Hash};
use wardkey_store::{AuditQuery, StoredCheckpoint};

impl Services {
    pub async fn audit_events(
        &self,
        by: &Authorized<AuditRead>,
        query: AuditQuery,
        after_index: Option<u64>,
        limit: Option<u32>,
    ) -> Result<(Vec<AuditEvent>, Option<u64>)> {
        let target = None;
        let result: Result<(Vec<AuditEvent>, Option<u64>)> = async {
            crate::check_filters(&[("actor", &query.actor), ("target", &query.target), ("action", &query.action)])?;
            let limit = limit.unwrap_or(100).clamp(1, MAX_PAGE);
            let events = self.store.read().await?.audit_events(&query, after_index, limit).await?;
            let next = if events.len() as u32 >= limit { events.last().map(|e| e.index) } else { None };
            Ok((events, next))
        }
        .await;
        self.recorded(by.caller(), "audit_events", target, result).await
    }

    pub async fn audit_checkpoint(&self, by: &Authorized<AuditRead>) -> Result<StoredCheckpoint> {
        let target = None;
        let result: Result<StoredCheckpoint> = async {
            self.store
                .read()
                .await?
                .latest_checkpoint()
                .await?
                .ok_or_else(|| ServiceError::NotFound { kind: "checkpoint", id: "latest".into() })
        }
        .await;
        self.recorded(by.caller(), "audit_checkpoint", target, result).await
    }

    pub async fn inclusion_proof(
        &self,
        by: &Authorized<AuditRead>,
        index: u64,
        size: u64,
    ) -> Result<(AuditEvent, Hash, Vec<Hash>)> {
        let target = Some(format!("audit_event:{index}"));
        let result: Result<(AuditEvent, Hash, Vec<Hash>)> = async {
            let mut r = self.store.read().await?;
            let tree = r.audit_tree_size().await?;
            if size == 0 || size > tree {
                return Err(ServiceError::invalid("size", format!("must be between 1 and the tree size {tree}")));
            }
            if index >= size {
                return Err(ServiceError::invalid("index", "must be less than size"));
            }
            let event = r
                .audit_event(index)
                .await?
                .ok_or_else(|| ServiceError::NotFound { kind: "audit_event", id: index.to_string() })?;
            let proof = r.inclusion_proof(index, size).await?;
            let root = r.tree_root(size).await?;
            Ok((event, root, proof))
        }
        .await;
        self.recorded(by.caller(), "inclusion_proof", target, result).await
    }

    pub async fn consistency_proof(
        &self,
        by: &Authorized<AuditRead>,
        from: u64,
        to: u64,
    ) -> Result<(Hash, Hash, Vec<Hash>)> {
        let target = None;
        let result: Result<(Hash, Hash, Vec<Hash>)> = async {
            let mut r = self.store.read().await?;
            let tree = r.audit_tree_size().await?;
            if to == 0 || to > tree {
                return Err(ServiceError::invalid("to", format!("must be between 1 and the tree size {tree}")));
            }
            if from == 0 || from > to {
                return Err(ServiceError::invalid("from", "must be between 1 and to"));
            }
            let proof = r.consistency_proof(from, to).await?;
            let from_root = r.tree_root(from).await?;
            let to_root = r.tree_root(to).await?;
            Ok((from_root, to_root, proof))
        }
        .await;
        self.recorded(by.caller(), "consistency_proof", target, result).await
    }
}
