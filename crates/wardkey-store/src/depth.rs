//! How tall a resource's subtree is, so that a move can be refused before it pushes a
//! descendant past [`MAX_RESOURCE_DEPTH`] (the chain [`Conn::ancestors`] walks up is the one
//! the decision index walks too).

use crate::StoreError;
use crate::access::MAX_RESOURCE_DEPTH;
use crate::conn::{Conn, RowExt};
use wardkey_domain::ResourceId;

impl Conn {
    /// Levels of live descendants below `id` (0 for a leaf), counted at most to
    /// [`MAX_RESOURCE_DEPTH`] + 1: anything taller is refused anyway, and the bound also ends
    /// the walk on a cycle.
    pub async fn subtree_height(&mut self, id: ResourceId) -> Result<usize, StoreError> {
        let row = sqlx::query(
            "WITH RECURSIVE below (id, depth) AS ( \
                 SELECT id, CAST(0 AS BIGINT) FROM resources WHERE id = $1 \
                 UNION ALL \
                 SELECT r.id, b.depth + 1 FROM resources r JOIN below b ON r.parent_id = b.id \
                 WHERE b.depth <= $2 AND r.deleted_at IS NULL \
             ) SELECT CAST(MAX(depth) AS BIGINT) AS height FROM below",
        )
        .bind(id.to_string())
        .bind(MAX_RESOURCE_DEPTH as i64)
        .fetch_one(self.ex())
        .await?;
        let height = row.opt_int("height")?.unwrap_or(0);
        Ok(usize::try_from(height).unwrap_or(0))
    }
}
