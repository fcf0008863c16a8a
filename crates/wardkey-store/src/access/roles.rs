//! Roles: bundles of permissions.

use super::*;

pub(super) fn role_from_row(r: &AnyRow) -> Result<Role, StoreError> {
    Ok(Role {
        id: RoleId(r.uuid("id")?),
        name: r.text("name")?,
        description: r.opt_text("description")?,
        permissions: r.json::<Vec<Permission>>("permissions")?,
        privileged: r.flag("privileged")?,
        session_policy: r.json("session_policy")?,
        conditions: r.json("conditions")?,
        break_glass: r.flag("break_glass")?,
        created_at: r.ts("created_at")?,
        updated_at: r.ts("updated_at")?,
        version: r.int("version")?,
    })
}

fn role_unique(value: &str) -> [Unique<'_>; 1] {
    [Unique { index: "roles_name_live", sqlite_columns: "roles.name_key", kind: "role", field: "name", value }]
}

impl Conn {
    pub async fn get_role(&mut self, id: RoleId) -> Result<Option<Role>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", role_cols!(), " FROM roles WHERE id = $1 AND deleted_at IS NULL"))
            .bind(id.to_string())
            .fetch_optional(self.ex())
            .await?;
        row.as_ref().map(role_from_row).transpose()
    }

    /// A role whether live or deleted, with the time of deletion.
    pub async fn get_role_including_deleted(
        &mut self,
        id: RoleId,
    ) -> Result<Option<(Role, Option<DateTime<Utc>>)>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", role_cols!(), ", deleted_at FROM roles WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.ex())
            .await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some((role_from_row(&r)?, r.opt_ts("deleted_at")?))),
        }
    }

    pub async fn get_role_by_name(&mut self, name: &str) -> Result<Option<Role>, StoreError> {
        let row =
            sqlx::query(concat!("SELECT ", role_cols!(), " FROM roles WHERE name_key = $1 AND deleted_at IS NULL"))
                .bind(fold(name))
                .fetch_optional(self.ex())
                .await?;
        row.as_ref().map(role_from_row).transpose()
    }

    pub async fn list_roles(&mut self, page: &Page) -> Result<Vec<Role>, StoreError> {
        let mut f = Filter::default();
        f.push("deleted_at IS NULL", []);
        let tail = f.page(page, "id")?;
        let sql = format!(concat!("SELECT ", role_cols!(), " FROM roles{}{}"), f.where_sql(), tail);
        let rows = f.fetch_all(self.ex(), sql).await?;
        rows.iter().map(role_from_row).collect()
    }

    /// The live roles among `ids`, in id order (missing ones are left out).
    pub async fn get_roles(&mut self, ids: &[RoleId]) -> Result<Vec<Role>, StoreError> {
        let mut ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        ids.sort();
        ids.dedup();
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                concat!("SELECT ", role_cols!(), " FROM roles WHERE deleted_at IS NULL AND id IN ({}) ORDER BY id"),
                placeholders.join(", ")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(id.clone());
            }
            for r in q.fetch_all(self.ex()).await? {
                out.push(role_from_row(&r)?);
            }
        }
        Ok(out)
    }

    /// Every live role, in id order.
    pub async fn all_roles(&mut self) -> Result<Vec<Role>, StoreError> {
        let rows = sqlx::query(concat!("SELECT ", role_cols!(), " FROM roles WHERE deleted_at IS NULL ORDER BY id"))
            .fetch_all(self.ex())
            .await?;
        rows.iter().map(role_from_row).collect()
    }

    pub(super) async fn list_all_live_roles(&mut self) -> Result<Vec<Role>, StoreError> {
        let rows = sqlx::query(concat!("SELECT ", role_cols!(), " FROM roles WHERE deleted_at IS NULL ORDER BY id"))
            .fetch_all(self.ex())
            .await?;
        rows.iter().map(role_from_row).collect()
    }
}

impl WriteTx {
    pub async fn insert_role(&mut self, r: &Role) -> Result<(), StoreError> {
        let q = sqlx::query(
            "INSERT INTO roles (id, name, name_key, description, permissions, privileged, created_at, updated_at, version, \
             session_policy, conditions, break_glass) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(r.id.to_string())
        .bind(r.name.clone())
        .bind(fold(&r.name))
        .bind(r.description.clone())
        .bind(to_json(&r.permissions)?)
        .bind(i64::from(r.privileged))
        .bind(micros(r.created_at))
        .bind(micros(r.updated_at))
        .bind(r.version)
        .bind(to_json(&r.session_policy)?)
        .bind(to_json(&r.conditions)?)
        .bind(i64::from(r.break_glass));
        self.conn.guarded(q).await.map_err(|e| map_write_err(e, &role_unique(&r.name), None))?;
        Ok(())
    }

    pub async fn update_role(&mut self, r: &Role, expected_version: i64) -> Result<Role, StoreError> {
        let id = r.id.to_string();
        let q = sqlx::query(
            "UPDATE roles SET name = $1, name_key = $2, description = $3, permissions = $4, privileged = $5, \
             updated_at = $6, version = $7, session_policy = $10, conditions = $11, break_glass = $12 WHERE id = $8 AND version = $9 AND deleted_at IS NULL \
             RETURNING created_at",
        )
        .bind(r.name.clone())
        .bind(fold(&r.name))
        .bind(r.description.clone())
        .bind(to_json(&r.permissions)?)
        .bind(i64::from(r.privileged))
        .bind(micros(r.updated_at))
        .bind(expected_version + 1)
        .bind(id.clone())
        .bind(expected_version)
        .bind(to_json(&r.session_policy)?)
        .bind(to_json(&r.conditions)?)
        .bind(i64::from(r.break_glass));
        let row = self.conn.guarded_optional(q).await.map_err(|e| map_write_err(e, &role_unique(&r.name), None))?;
        let Some(row) = row else {
            return Err(self.conn.version_miss("roles", true, "role", &id, expected_version).await);
        };
        Ok(Role { created_at: row.ts("created_at")?, version: expected_version + 1, ..r.clone() })
    }

    /// Tombstones the role; refused while live grants or role templates refer to it.
    pub async fn delete_role(&mut self, id: RoleId, expected_version: i64) -> Result<(), StoreError> {
        let ids = id.to_string();
        let grants = self
            .conn
            .count(
                "SELECT COUNT(*) AS n FROM grants WHERE role_id = $1 AND revoked_at IS NULL \
                 AND (expires_at IS NULL OR expires_at > $2)",
                &[Arg::Text(ids.clone()), Arg::Int(micros(self.now))],
            )
            .await?;
        if grants > 0 {
            return Err(StoreError::InUse {
                kind: "role",
                id: ids,
                message: format!("{grants} live grant(s) give it"),
            });
        }
        let templates = self
            .conn
            .count("SELECT COUNT(*) AS n FROM role_template_roles WHERE role_id = $1", &[Arg::Text(ids.clone())])
            .await?;
        if templates > 0 {
            return Err(StoreError::InUse {
                kind: "role",
                id: ids,
                message: format!("{templates} role template(s) name it"),
            });
        }
        self.tombstone("roles", "role", &ids, expected_version).await
    }
}
