//! HR provisioning: applied roster imports, review items, and the reads the lifecycle engine
//! and the reconciliation report need in bulk.

use crate::conn::{Conn, RowExt, micros, to_json};
use crate::{StoreError, WriteTx};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::any::AnyRow;
use std::collections::HashMap;
use uuid::Uuid;
use wardkey_domain::{GrantId, HrAttributes, UserId};

/// Something a person must look at (not an automatic change): a grant kept after a move, a
/// worker missing from a full roster, a birthright role refused by separation of duties.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewItem {
    pub id: Uuid,
    /// `grant_after_move`, `missing_from_roster`, `birthright_refused`.
    pub kind: String,
    pub user_id: UserId,
    pub grant_id: Option<GrantId>,
    /// The HR import that raised it, if any.
    pub import_id: Option<Uuid>,
    pub reason: String,
    pub details: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// One applied roster import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HrImportRecord {
    pub id: Uuid,
    /// Hex SHA-256 of the file's bytes.
    pub sha256: String,
    pub format: String,
    pub full_roster: bool,
    pub override_breaker: bool,
    pub row_count: i64,
    pub summary: serde_json::Value,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

fn review_from_row(r: &AnyRow) -> Result<ReviewItem, StoreError> {
    let grant = r.text("grant_id")?;
    let grant_id = if grant.is_empty() {
        None
    } else {
        Some(GrantId(Uuid::parse_str(&grant).map_err(|e| StoreError::corrupt(format!("grant_id: {e}")))?))
    };
    Ok(ReviewItem {
        id: r.uuid("id")?,
        kind: r.text("kind")?,
        user_id: UserId(r.uuid("user_id")?),
        grant_id,
        import_id: r.opt_uuid("import_id")?,
        reason: r.text("reason")?,
        details: r.json("details")?,
        created_at: r.ts("created_at")?,
        resolved_at: r.opt_ts("resolved_at")?,
    })
}

impl Conn {
    /// Open review items (oldest first), at most `limit`.
    pub async fn open_review_items(&mut self, limit: u32) -> Result<Vec<ReviewItem>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, kind, user_id, grant_id, import_id, reason, details, created_at, resolved_at \
             FROM review_items WHERE resolved_at IS NULL ORDER BY created_at, id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(self.ex())
        .await?;
        rows.iter().map(review_from_row).collect()
    }

    /// Open review items of one user.
    pub async fn review_items_of(&mut self, user: UserId) -> Result<Vec<ReviewItem>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, kind, user_id, grant_id, import_id, reason, details, created_at, resolved_at \
             FROM review_items WHERE user_id = $1 AND resolved_at IS NULL ORDER BY created_at, id",
        )
        .bind(user.to_string())
        .fetch_all(self.ex())
        .await?;
        rows.iter().map(review_from_row).collect()
    }

    /// The last completed sign-in (a session that reached `active`) of every user who has one.
    pub async fn last_sign_ins(&mut self) -> Result<HashMap<UserId, DateTime<Utc>>, StoreError> {
        let rows = sqlx::query(
            "SELECT user_id, MAX(created_at) AS last_at FROM sessions WHERE stage = 'active' GROUP BY user_id",
        )
        .fetch_all(self.ex())
        .await?;
        let mut out = HashMap::with_capacity(rows.len());
        for r in &rows {
            out.insert(UserId(r.uuid("user_id")?), r.ts("last_at")?);
        }
        Ok(out)
    }

    /// Live, not yet disabled users whose HR record carries an end date, with their HR
    /// attributes (the end-date job decides in each worker's time zone which are due).
    pub async fn users_with_end_date(&mut self) -> Result<Vec<(UserId, HrAttributes)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, hr FROM users WHERE deleted_at IS NULL AND status <> 'disabled' \
             AND hr LIKE '%\"end_date\"%' ORDER BY id",
        )
        .fetch_all(self.ex())
        .await?;
        rows.iter().map(|r| Ok((UserId(r.uuid("id")?), r.json::<HrAttributes>("hr")?))).collect()
    }

    /// Applied imports, newest first.
    pub async fn list_hr_imports(&mut self, limit: u32) -> Result<Vec<HrImportRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, sha256, format, full_roster, override_breaker, row_count, summary, created_by, created_at \
             FROM hr_imports ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(self.ex())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(HrImportRecord {
                    id: r.uuid("id")?,
                    sha256: r.text("sha256")?,
                    format: r.text("format")?,
                    full_roster: r.flag("full_roster")?,
                    override_breaker: r.flag("override_breaker")?,
                    row_count: r.int("row_count")?,
                    summary: r.json("summary")?,
                    created_by: r.text("created_by")?,
                    created_at: r.ts("created_at")?,
                })
            })
            .collect()
    }
}

impl WriteTx {
    /// Records a review item unless the same one (kind, user, grant) is already open; returns
    /// whether it was new.
    pub async fn insert_review_item(&mut self, item: &ReviewItem) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "INSERT INTO review_items (id, kind, user_id, grant_id, import_id, reason, details, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(item.id.to_string())
        .bind(item.kind.clone())
        .bind(item.user_id.to_string())
        .bind(item.grant_id.map(|g| g.to_string()).unwrap_or_default())
        .bind(item.import_id.map(|i| i.to_string()))
        .bind(item.reason.clone())
        .bind(to_json(&item.details)?)
        .bind(micros(item.created_at))
        .execute(self.conn.ex())
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    /// Marks a review item resolved; returns whether it was open.
    pub async fn resolve_review_item(&mut self, id: Uuid, by: &str) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE review_items SET resolved_at = $1, resolved_by = $2 WHERE id = $3 AND resolved_at IS NULL",
        )
        .bind(micros(self.now))
        .bind(by.to_owned())
        .bind(id.to_string())
        .execute(self.conn.ex())
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    pub async fn insert_hr_import(&mut self, r: &HrImportRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO hr_imports (id, sha256, format, full_roster, override_breaker, row_count, summary, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(r.id.to_string())
        .bind(r.sha256.clone())
        .bind(r.format.clone())
        .bind(i64::from(r.full_roster))
        .bind(i64::from(r.override_breaker))
        .bind(r.row_count)
        .bind(to_json(&r.summary)?)
        .bind(r.created_by.clone())
        .bind(micros(r.created_at))
        .execute(self.conn.ex())
        .await?;
        Ok(())
    }
}
