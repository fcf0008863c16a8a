//! Resource types: the kinds of things access is granted on, and their actions.

use super::*;

fn rt_from_row(r: &AnyRow) -> Result<ResourceType, StoreError> {
    Ok(ResourceType {
        id: ResourceTypeId(r.uuid("id")?),
        name: r.text("name")?,
        description: r.opt_text("description")?,
        actions: r.json("actions")?,
        phi: r.flag("phi")?,
        decision_audit: {
            let m = r.text("decision_audit")?;
            DecisionAudit::parse(&m).ok_or_else(|| StoreError::corrupt(format!("decision audit mode {m:?}")))?
        },
        created_at: r.ts("created_at")?,
        updated_at: r.ts("updated_at")?,
        version: r.int("version")?,
    })
}

fn rt_unique(value: &str) -> [Unique<'_>; 1] {
    [Unique {
        index: "resource_types_name",
        sqlite_columns: "resource_types.name_key",
        kind: "resource_type",
        field: "name",
        value,
    }]
}

impl Conn {
    // ----- resource types -----

    pub async fn get_resource_type(&mut self, id: ResourceTypeId) -> Result<Option<ResourceType>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", rt_cols!(), " FROM resource_types WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.ex())
            .await?;
        row.as_ref().map(rt_from_row).transpose()
    }

    /// By name, ignoring case.
    pub async fn get_resource_type_by_name(&mut self, name: &str) -> Result<Option<ResourceType>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", rt_cols!(), " FROM resource_types WHERE name_key = $1"))
            .bind(fold(name))
            .fetch_optional(self.ex())
            .await?;
        row.as_ref().map(rt_from_row).transpose()
    }

    /// All resource types, in id order.
    pub async fn list_resource_types(&mut self) -> Result<Vec<ResourceType>, StoreError> {
        let rows = sqlx::query(concat!("SELECT ", rt_cols!(), " FROM resource_types ORDER BY id"))
            .fetch_all(self.ex())
            .await?;
        rows.iter().map(rt_from_row).collect()
    }
}

impl WriteTx {
    pub async fn insert_resource_type(&mut self, t: &ResourceType) -> Result<(), StoreError> {
        let q = sqlx::query(
            "INSERT INTO resource_types (id, name, name_key, description, actions, phi, created_at, updated_at, version, \
             decision_audit) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(t.id.to_string())
        .bind(t.name.clone())
        .bind(fold(&t.name))
        .bind(t.description.clone())
        .bind(to_json(&t.actions)?)
        .bind(i64::from(t.phi))
        .bind(micros(t.created_at))
        .bind(micros(t.updated_at))
        .bind(t.version)
        .bind(t.decision_audit.as_str());
        self.conn.guarded(q).await.map_err(|e| map_write_err(e, &rt_unique(&t.name), None))?;
        Ok(())
    }

    pub async fn update_resource_type(
        &mut self,
        t: &ResourceType,
        expected_version: i64,
    ) -> Result<ResourceType, StoreError> {
        let id = t.id.to_string();
        let q = sqlx::query(
            "UPDATE resource_types SET name = $1, name_key = $2, description = $3, actions = $4, phi = $5, \
             updated_at = $6, version = $7, decision_audit = $10 WHERE id = $8 AND version = $9 RETURNING created_at",
        )
        .bind(t.name.clone())
        .bind(fold(&t.name))
        .bind(t.description.clone())
        .bind(to_json(&t.actions)?)
        .bind(i64::from(t.phi))
        .bind(micros(t.updated_at))
        .bind(expected_version + 1)
        .bind(id.clone())
        .bind(expected_version)
        .bind(t.decision_audit.as_str());
        let row = self.conn.guarded_optional(q).await.map_err(|e| map_write_err(e, &rt_unique(&t.name), None))?;
        let Some(row) = row else {
            return Err(self.conn.version_miss("resource_types", false, "resource_type", &id, expected_version).await);
        };
        Ok(ResourceType { created_at: row.ts("created_at")?, version: expected_version + 1, ..t.clone() })
    }

    /// Deletes the resource type for good; refused while resources of the type (live or kept
    /// as tombstones) or live roles' permissions refer to it.
    pub async fn delete_resource_type(&mut self, id: ResourceTypeId, expected_version: i64) -> Result<(), StoreError> {
        let ids = id.to_string();
        let Some(t) = self.conn.get_resource_type(id).await? else {
            return Err(StoreError::NotFound { kind: "resource_type", id: ids });
        };
        if t.version != expected_version {
            return Err(StoreError::VersionConflict {
                kind: "resource_type",
                id: ids,
                expected: expected_version,
                actual: t.version,
            });
        }
        let n = self
            .conn
            .count("SELECT COUNT(*) AS n FROM resources WHERE type_id = $1", &[Arg::Text(ids.clone())])
            .await?;
        if n > 0 {
            return Err(StoreError::InUse {
                kind: "resource_type",
                id: ids,
                message: format!("{n} resource(s) of this type exist (deleted ones are kept as evidence)"),
            });
        }
        let roles = self.conn.list_all_live_roles().await?;
        if let Some(r) = roles.iter().find(|r| r.permissions.iter().any(|p| fold(&p.resource_type) == fold(&t.name))) {
            return Err(StoreError::InUse {
                kind: "resource_type",
                id: ids,
                message: format!("role {} has permissions on it", r.name),
            });
        }
        let n = sqlx::query("DELETE FROM resource_types WHERE id = $1 AND version = $2")
            .bind(ids.clone())
            .bind(expected_version)
            .execute(self.conn.ex())
            .await?
            .rows_affected();
        if n == 0 {
            return Err(self.conn.version_miss("resource_types", false, "resource_type", &ids, expected_version).await);
        }
        Ok(())
    }
}
