//! Forbid rules: denials that win over any grant.

use crate::conn::{Conn, RowExt, fold, micros, to_json};
use crate::error::{Unique, map_write_err};
use crate::{StoreError, WriteTx};
use sqlx::any::AnyRow;
use wardkey_domain::{ForbidRule, ForbidRuleId};

macro_rules! forbid_cols {
    () => {
        "id, name, description, resource_types, actions, rule, created_at, updated_at, version"
    };
}

fn forbid_from_row(r: &AnyRow) -> Result<ForbidRule, StoreError> {
    Ok(ForbidRule {
        id: ForbidRuleId(r.uuid("id")?),
        name: r.text("name")?,
        description: r.opt_text("description")?,
        resource_types: r.json("resource_types")?,
        actions: r.json("actions")?,
        when: r.json("rule")?,
        created_at: r.ts("created_at")?,
        updated_at: r.ts("updated_at")?,
        version: r.int("version")?,
    })
}

fn forbid_unique(name: &str) -> [Unique<'_>; 1] {
    [Unique {
        index: "forbid_rules_name",
        sqlite_columns: "forbid_rules.name_key",
        kind: "forbid_rule",
        field: "name",
        value: name,
    }]
}

impl Conn {
    pub async fn get_forbid_rule(&mut self, id: ForbidRuleId) -> Result<Option<ForbidRule>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", forbid_cols!(), " FROM forbid_rules WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.ex())
            .await?;
        row.as_ref().map(forbid_from_row).transpose()
    }

    /// Every forbid rule, in id order.
    pub async fn list_forbid_rules(&mut self) -> Result<Vec<ForbidRule>, StoreError> {
        let rows = sqlx::query(concat!("SELECT ", forbid_cols!(), " FROM forbid_rules ORDER BY id"))
            .fetch_all(self.ex())
            .await?;
        rows.iter().map(forbid_from_row).collect()
    }
}

impl WriteTx {
    pub async fn insert_forbid_rule(&mut self, f: &ForbidRule) -> Result<(), StoreError> {
        let q = sqlx::query(
            "INSERT INTO forbid_rules (id, name, name_key, description, resource_types, actions, rule, created_at, updated_at, version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(f.id.to_string())
        .bind(f.name.clone())
        .bind(fold(&f.name))
        .bind(f.description.clone())
        .bind(to_json(&f.resource_types)?)
        .bind(to_json(&f.actions)?)
        .bind(to_json(&f.when)?)
        .bind(micros(f.created_at))
        .bind(micros(f.updated_at))
        .bind(f.version);
        self.conn.guarded(q).await.map_err(|e| map_write_err(e, &forbid_unique(&f.name), None))?;
        Ok(())
    }

    pub async fn delete_forbid_rule(&mut self, id: ForbidRuleId, expected_version: i64) -> Result<(), StoreError> {
        let ids = id.to_string();
        let n = sqlx::query("DELETE FROM forbid_rules WHERE id = $1 AND version = $2")
            .bind(ids.clone())
            .bind(expected_version)
            .execute(self.conn.ex())
            .await?
            .rows_affected();
        if n == 0 {
            return Err(self.conn.version_miss("forbid_rules", false, "forbid_rule", &ids, expected_version).await);
        }
        Ok(())
    }
}
