//! Resources: the tree of things access is granted on.

use super::*;

fn res_from_row(r: &AnyRow) -> Result<Resource, StoreError> {
    Ok(Resource {
        id: ResourceId(r.uuid("id")?),
        type_id: ResourceTypeId(r.uuid("type_id")?),
        name: r.text("name")?,
        parent_id: r.opt_uuid("parent_id")?.map(ResourceId),
        description: r.opt_text("description")?,
        attributes: r.json("attributes")?,
        created_at: r.ts("created_at")?,
        updated_at: r.ts("updated_at")?,
        version: r.int("version")?,
    })
}

fn res_unique(value: &str) -> [Unique<'_>; 1] {
    [Unique {
        index: "resources_sibling_name_live",
        sqlite_columns: "resources.parent_key, resources.name_key",
        kind: "resource",
        field: "name",
        value,
    }]
}

impl Conn {
    pub async fn get_resource(&mut self, id: ResourceId) -> Result<Option<Resource>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", res_cols!(), " FROM resources WHERE id = $1 AND deleted_at IS NULL"))
            .bind(id.to_string())
            .fetch_optional(self.ex())
            .await?;
        row.as_ref().map(res_from_row).transpose()
    }

    /// A resource whether live or deleted, with the time of deletion.
    pub async fn get_resource_including_deleted(
        &mut self,
        id: ResourceId,
    ) -> Result<Option<(Resource, Option<DateTime<Utc>>)>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", res_cols!(), ", deleted_at FROM resources WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.ex())
            .await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some((res_from_row(&r)?, r.opt_ts("deleted_at")?))),
        }
    }

    pub async fn list_resources(&mut self, q: &ResourceQuery, page: &Page) -> Result<Vec<Resource>, StoreError> {
        let mut f = Filter::default();
        f.push("deleted_at IS NULL", []);
        if let Some(t) = q.type_id {
            f.push("type_id = ?", [Arg::Text(t.to_string())]);
        }
        match q.parent_id {
            None => {}
            Some(None) => f.push("parent_id IS NULL", []),
            Some(Some(p)) => f.push("parent_id = ?", [Arg::Text(p.to_string())]),
        }
        let tail = f.page(page, "id")?;
        let sql = format!(concat!("SELECT ", res_cols!(), " FROM resources{}{}"), f.where_sql(), tail);
        let rows = f.fetch_all(self.ex(), sql).await?;
        rows.iter().map(res_from_row).collect()
    }

    /// The ancestors of a resource, parent first, up to the root. Refuses a chain longer than
    /// [`MAX_RESOURCE_DEPTH`] (which is how a cycle would show).
    pub async fn ancestors(&mut self, id: ResourceId) -> Result<Vec<ResourceId>, StoreError> {
        let rows = sqlx::query(
            "WITH RECURSIVE chain (id, parent_id, depth) AS ( \
                 SELECT id, parent_id, CAST(0 AS BIGINT) FROM resources WHERE id = $1 \
                 UNION ALL \
                 SELECT r.id, r.parent_id, c.depth + 1 FROM resources r JOIN chain c ON r.id = c.parent_id \
                 WHERE c.depth <= $2 \
             ) SELECT id, depth FROM chain ORDER BY depth",
        )
        .bind(id.to_string())
        .bind(MAX_RESOURCE_DEPTH as i64)
        .fetch_all(self.ex())
        .await?;
        if rows.is_empty() {
            return Err(StoreError::NotFound { kind: "resource", id: id.to_string() });
        }
        if rows.len() > MAX_RESOURCE_DEPTH + 1 {
            return Err(StoreError::Invalid {
                field: "parent_id",
                message: format!("resource hierarchy deeper than {MAX_RESOURCE_DEPTH} levels (or cyclic)"),
            });
        }
        rows.iter().skip(1).map(|r| Ok(ResourceId(r.uuid("id")?))).collect()
    }

    /// Every live resource, in id order (building the decision index).
    pub async fn all_resources(&mut self) -> Result<Vec<Resource>, StoreError> {
        let rows = sqlx::query(concat!("SELECT ", res_cols!(), " FROM resources WHERE deleted_at IS NULL ORDER BY id"))
            .fetch_all(self.ex())
            .await?;
        rows.iter().map(res_from_row).collect()
    }
}

impl WriteTx {
    async fn check_resource_refs(&mut self, r: &Resource) -> Result<(), StoreError> {
        if !self.conn.exists_live("resource_types", false, &r.type_id.to_string()).await? {
            return Err(StoreError::NotFound { kind: "resource_type", id: r.type_id.to_string() });
        }
        if let Some(p) = r.parent_id {
            if p == r.id {
                return Err(StoreError::Invalid {
                    field: "parent_id",
                    message: "a resource cannot be its own parent".into(),
                });
            }
            if !self.conn.exists_live("resources", true, &p.to_string()).await? {
                return Err(StoreError::NotFound { kind: "resource", id: p.to_string() });
            }
        }
        Ok(())
    }

    pub async fn insert_resource(&mut self, r: &Resource) -> Result<(), StoreError> {
        self.check_resource_refs(r).await?;
        let parent = r.parent_id.map(|p| p.to_string());
        let q = sqlx::query(
            "INSERT INTO resources (id, type_id, name, name_key, parent_id, parent_key, description, attributes, \
             created_at, updated_at, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(r.id.to_string())
        .bind(r.type_id.to_string())
        .bind(r.name.clone())
        .bind(fold(&r.name))
        .bind(parent.clone())
        .bind(parent.unwrap_or_default())
        .bind(r.description.clone())
        .bind(to_json(&r.attributes)?)
        .bind(micros(r.created_at))
        .bind(micros(r.updated_at))
        .bind(r.version);
        self.conn.guarded(q).await.map_err(|e| map_write_err(e, &res_unique(&r.name), None))?;
        Ok(())
    }

    /// Writes `r` (including a move to another parent; the caller checks for cycles with
    /// [`Conn::ancestors`]).
    pub async fn update_resource(&mut self, r: &Resource, expected_version: i64) -> Result<Resource, StoreError> {
        self.check_resource_refs(r).await?;
        let id = r.id.to_string();
        let parent = r.parent_id.map(|p| p.to_string());
        let q = sqlx::query(
            "UPDATE resources SET type_id = $1, name = $2, name_key = $3, parent_id = $4, parent_key = $5, \
             description = $6, attributes = $7, updated_at = $8, version = $9 \
             WHERE id = $10 AND version = $11 AND deleted_at IS NULL RETURNING created_at",
        )
        .bind(r.type_id.to_string())
        .bind(r.name.clone())
        .bind(fold(&r.name))
        .bind(parent.clone())
        .bind(parent.unwrap_or_default())
        .bind(r.description.clone())
        .bind(to_json(&r.attributes)?)
        .bind(micros(r.updated_at))
        .bind(expected_version + 1)
        .bind(id.clone())
        .bind(expected_version);
        let row = self.conn.guarded_optional(q).await.map_err(|e| map_write_err(e, &res_unique(&r.name), None))?;
        let Some(row) = row else {
            return Err(self.conn.version_miss("resources", true, "resource", &id, expected_version).await);
        };
        Ok(Resource { created_at: row.ts("created_at")?, version: expected_version + 1, ..r.clone() })
    }

    /// Tombstones the resource; refused while it has live children or live grants.
    pub async fn delete_resource(&mut self, id: ResourceId, expected_version: i64) -> Result<(), StoreError> {
        let ids = id.to_string();
        let children = self
            .conn
            .count(
                "SELECT COUNT(*) AS n FROM resources WHERE parent_id = $1 AND deleted_at IS NULL",
                &[Arg::Text(ids.clone())],
            )
            .await?;
        if children > 0 {
            return Err(StoreError::InUse {
                kind: "resource",
                id: ids,
                message: format!("it has {children} child resource(s)"),
            });
        }
        let grants = self
            .conn
            .count(
                "SELECT COUNT(*) AS n FROM grants WHERE resource_id = $1 AND revoked_at IS NULL \
                 AND (expires_at IS NULL OR expires_at > $2)",
                &[Arg::Text(ids.clone()), Arg::Int(micros(self.now))],
            )
            .await?;
        if grants > 0 {
            return Err(StoreError::InUse {
                kind: "resource",
                id: ids,
                message: format!("{grants} live grant(s) are scoped to it"),
            });
        }
        self.tombstone("resources", "resource", &ids, expected_version).await
    }
}
