//! API tokens (metadata plus the hash of the secret) and key/value metadata.

use crate::conn::{Conn, RowExt, micros, opt_micros, to_json};
use crate::error::{Unique, map_write_err};
use crate::{StoreError, WriteTx};
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use wardkey_domain::{ApiToken, ApiTokenId, TokenOwner};

macro_rules! token_cols {
    () => {
        "id, name, scopes, owner_kind, owner_id, created_by, created_at, expires_at, revoked_at, last_used_at"
    };
}

fn token_from_row(r: &AnyRow) -> Result<ApiToken, StoreError> {
    Ok(ApiToken {
        id: ApiTokenId(r.uuid("id")?),
        name: r.text("name")?,
        scopes: r.json("scopes")?,
        owner: {
            let (kind, id) = (r.text("owner_kind")?, r.text("owner_id")?);
            TokenOwner::from_parts(&kind, &id)
                .ok_or_else(|| StoreError::corrupt(format!("api token owner {kind}:{id}")))?
        },
        created_by: r.text("created_by")?,
        created_at: r.ts("created_at")?,
        expires_at: r.opt_ts("expires_at")?,
        revoked_at: r.opt_ts("revoked_at")?,
        last_used_at: r.opt_ts("last_used_at")?,
    })
}

impl Conn {
    /// The token and the stored hash of its secret.
    pub async fn get_api_token(&mut self, id: ApiTokenId) -> Result<Option<(ApiToken, Vec<u8>)>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", token_cols!(), ", secret_hash FROM api_tokens WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.ex())
            .await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some((token_from_row(&r)?, r.bytes("secret_hash")?))),
        }
    }

    /// All tokens (revoked and expired included), in id order.
    pub async fn list_api_tokens(&mut self) -> Result<Vec<ApiToken>, StoreError> {
        let rows =
            sqlx::query(concat!("SELECT ", token_cols!(), " FROM api_tokens ORDER BY id")).fetch_all(self.ex()).await?;
        rows.iter().map(token_from_row).collect()
    }

    /// Whether a live token (not revoked, not expired at `now`) with the admin scope belongs to a
    /// person or a service account: once one does, the bootstrap token has done its job.
    pub async fn named_admin_token_exists(&mut self, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let rows = sqlx::query(
            "SELECT scopes FROM api_tokens WHERE owner_kind <> 'system' AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $1)",
        )
        .bind(micros(now))
        .fetch_all(self.ex())
        .await?;
        for r in &rows {
            let scopes: Vec<wardkey_domain::Scope> = r.json("scopes")?;
            if scopes.contains(&wardkey_domain::Scope::Admin) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub async fn get_meta(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        let row =
            sqlx::query("SELECT value FROM meta WHERE key = $1").bind(key.to_owned()).fetch_optional(self.ex()).await?;
        row.map(|r| r.text("value")).transpose()
    }
}

impl WriteTx {
    pub async fn insert_api_token(&mut self, t: &ApiToken, secret_hash: &[u8]) -> Result<(), StoreError> {
        let q = sqlx::query(
            "INSERT INTO api_tokens (id, name, scopes, created_by, created_at, expires_at, revoked_at, last_used_at, \
             secret_hash, owner_kind, owner_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(t.id.to_string())
        .bind(t.name.clone())
        .bind(to_json(&t.scopes)?)
        .bind(t.created_by.clone())
        .bind(micros(t.created_at))
        .bind(opt_micros(t.expires_at))
        .bind(opt_micros(t.revoked_at))
        .bind(opt_micros(t.last_used_at))
        .bind(secret_hash.to_vec())
        .bind(t.owner.kind())
        .bind(t.owner.id_string());
        let unique = [Unique {
            index: "api_tokens_pkey",
            sqlite_columns: "api_tokens.id",
            kind: "api_token",
            field: "id",
            value: "",
        }];
        self.conn.guarded(q).await.map_err(|e| map_write_err(e, &unique, None))?;
        Ok(())
    }

    /// Revokes the token; false if it does not exist or was already revoked.
    pub async fn revoke_api_token(&mut self, id: ApiTokenId, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let n = sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(micros(at))
            .bind(id.to_string())
            .execute(self.conn.ex())
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// Records when the token was last used.
    pub async fn touch_api_token(&mut self, id: ApiTokenId, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(micros(at))
            .bind(id.to_string())
            .execute(self.conn.ex())
            .await?;
        Ok(())
    }

    pub async fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key.to_owned())
        .bind(value.to_owned())
        .execute(self.conn.ex())
        .await?;
        Ok(())
    }
}

impl WriteTx {
    /// Revokes every live token `owner` owns (a leaver's, a disabled service account's, the
    /// bootstrap token once a named admin token exists); returns their ids.
    pub async fn revoke_api_tokens_owned_by(
        &mut self,
        owner: &TokenOwner,
        at: DateTime<Utc>,
    ) -> Result<Vec<ApiTokenId>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM api_tokens WHERE owner_kind = $1 AND owner_id = $2 AND revoked_at IS NULL ORDER BY id",
        )
        .bind(owner.kind())
        .bind(owner.id_string())
        .fetch_all(self.ex())
        .await?;
        let mut ids = Vec::with_capacity(rows.len());
        for r in &rows {
            let id = ApiTokenId(r.uuid("id")?);
            if self.revoke_api_token(id, at).await? {
                ids.push(id);
            }
        }
        Ok(ids)
    }
}
