//! Role templates (birthright rules) and separation-of-duties rules.

use super::*;

fn tpl_from_row(r: &AnyRow) -> Result<RoleTemplate, StoreError> {
    Ok(RoleTemplate {
        id: RoleTemplateId(r.uuid("id")?),
        name: r.text("name")?,
        description: r.opt_text("description")?,
        rule: r.json("rule")?,
        role_ids: r.json("role_ids")?,
        created_at: r.ts("created_at")?,
        updated_at: r.ts("updated_at")?,
        version: r.int("version")?,
    })
}

fn sod_from_row(r: &AnyRow) -> Result<SodRule, StoreError> {
    Ok(SodRule {
        id: SodRuleId(r.uuid("id")?),
        name: r.text("name")?,
        description: r.opt_text("description")?,
        left: r.json("left_item")?,
        right: r.json("right_item")?,
        created_at: r.ts("created_at")?,
        updated_at: r.ts("updated_at")?,
        version: r.int("version")?,
    })
}

fn tpl_unique(value: &str) -> [Unique<'_>; 1] {
    [Unique {
        index: "role_templates_name",
        sqlite_columns: "role_templates.name_key",
        kind: "role_template",
        field: "name",
        value,
    }]
}
fn sod_unique(value: &str) -> [Unique<'_>; 1] {
    [Unique { index: "sod_rules_name", sqlite_columns: "sod_rules.name_key", kind: "sod_rule", field: "name", value }]
}

impl Conn {
    pub async fn get_role_template(&mut self, id: RoleTemplateId) -> Result<Option<RoleTemplate>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", tpl_cols!(), " FROM role_templates WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.ex())
            .await?;
        row.as_ref().map(tpl_from_row).transpose()
    }

    /// All role templates, in id order.
    pub async fn list_role_templates(&mut self) -> Result<Vec<RoleTemplate>, StoreError> {
        let rows = sqlx::query(concat!("SELECT ", tpl_cols!(), " FROM role_templates ORDER BY id"))
            .fetch_all(self.ex())
            .await?;
        rows.iter().map(tpl_from_row).collect()
    }

    pub async fn get_sod_rule(&mut self, id: SodRuleId) -> Result<Option<SodRule>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", sod_cols!(), " FROM sod_rules WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.ex())
            .await?;
        row.as_ref().map(sod_from_row).transpose()
    }

    /// All separation-of-duties rules, in id order.
    pub async fn list_sod_rules(&mut self) -> Result<Vec<SodRule>, StoreError> {
        let rows =
            sqlx::query(concat!("SELECT ", sod_cols!(), " FROM sod_rules ORDER BY id")).fetch_all(self.ex()).await?;
        rows.iter().map(sod_from_row).collect()
    }
}

impl WriteTx {
    async fn write_template_roles(&mut self, t: &RoleTemplate) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM role_template_roles WHERE template_id = $1")
            .bind(t.id.to_string())
            .execute(self.conn.ex())
            .await?;
        for role in &t.role_ids {
            if !self.conn.exists_live("roles", true, &role.to_string()).await? {
                return Err(StoreError::NotFound { kind: "role", id: role.to_string() });
            }
            sqlx::query(
                "INSERT INTO role_template_roles (template_id, role_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(t.id.to_string())
            .bind(role.to_string())
            .execute(self.conn.ex())
            .await?;
        }
        Ok(())
    }

    pub async fn insert_role_template(&mut self, t: &RoleTemplate) -> Result<(), StoreError> {
        let q = sqlx::query(
            "INSERT INTO role_templates (id, name, name_key, description, rule, role_ids, created_at, updated_at, version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(t.id.to_string())
        .bind(t.name.clone())
        .bind(fold(&t.name))
        .bind(t.description.clone())
        .bind(to_json(&t.rule)?)
        .bind(to_json(&t.role_ids)?)
        .bind(micros(t.created_at))
        .bind(micros(t.updated_at))
        .bind(t.version);
        self.conn.guarded(q).await.map_err(|e| map_write_err(e, &tpl_unique(&t.name), None))?;
        self.write_template_roles(t).await
    }

    pub async fn update_role_template(
        &mut self,
        t: &RoleTemplate,
        expected_version: i64,
    ) -> Result<RoleTemplate, StoreError> {
        let id = t.id.to_string();
        let q = sqlx::query(
            "UPDATE role_templates SET name = $1, name_key = $2, description = $3, rule = $4, role_ids = $5, \
             updated_at = $6, version = $7 WHERE id = $8 AND version = $9 RETURNING created_at",
        )
        .bind(t.name.clone())
        .bind(fold(&t.name))
        .bind(t.description.clone())
        .bind(to_json(&t.rule)?)
        .bind(to_json(&t.role_ids)?)
        .bind(micros(t.updated_at))
        .bind(expected_version + 1)
        .bind(id.clone())
        .bind(expected_version);
        let row = self.conn.guarded_optional(q).await.map_err(|e| map_write_err(e, &tpl_unique(&t.name), None))?;
        let Some(row) = row else {
            return Err(self.conn.version_miss("role_templates", false, "role_template", &id, expected_version).await);
        };
        self.write_template_roles(t).await?;
        Ok(RoleTemplate { created_at: row.ts("created_at")?, version: expected_version + 1, ..t.clone() })
    }

    pub async fn delete_role_template(&mut self, id: RoleTemplateId, expected_version: i64) -> Result<(), StoreError> {
        let ids = id.to_string();
        sqlx::query(
            "DELETE FROM role_template_roles WHERE template_id = $1 \
             AND EXISTS (SELECT 1 FROM role_templates WHERE id = $1 AND version = $2)",
        )
        .bind(ids.clone())
        .bind(expected_version)
        .execute(self.conn.ex())
        .await?;
        let n = sqlx::query("DELETE FROM role_templates WHERE id = $1 AND version = $2")
            .bind(ids.clone())
            .bind(expected_version)
            .execute(self.conn.ex())
            .await?
            .rows_affected();
        if n == 0 {
            return Err(self.conn.version_miss("role_templates", false, "role_template", &ids, expected_version).await);
        }
        Ok(())
    }

    pub async fn insert_sod_rule(&mut self, s: &SodRule) -> Result<(), StoreError> {
        let q = sqlx::query(
            "INSERT INTO sod_rules (id, name, name_key, description, left_item, right_item, created_at, updated_at, version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(s.id.to_string())
        .bind(s.name.clone())
        .bind(fold(&s.name))
        .bind(s.description.clone())
        .bind(to_json(&s.left)?)
        .bind(to_json(&s.right)?)
        .bind(micros(s.created_at))
        .bind(micros(s.updated_at))
        .bind(s.version);
        self.conn.guarded(q).await.map_err(|e| map_write_err(e, &sod_unique(&s.name), None))?;
        Ok(())
    }

    pub async fn update_sod_rule(&mut self, s: &SodRule, expected_version: i64) -> Result<SodRule, StoreError> {
        let id = s.id.to_string();
        let q = sqlx::query(
            "UPDATE sod_rules SET name = $1, name_key = $2, description = $3, left_item = $4, right_item = $5, \
             updated_at = $6, version = $7 WHERE id = $8 AND version = $9 RETURNING created_at",
        )
        .bind(s.name.clone())
        .bind(fold(&s.name))
        .bind(s.description.clone())
        .bind(to_json(&s.left)?)
        .bind(to_json(&s.right)?)
        .bind(micros(s.updated_at))
        .bind(expected_version + 1)
        .bind(id.clone())
        .bind(expected_version);
        let row = self.conn.guarded_optional(q).await.map_err(|e| map_write_err(e, &sod_unique(&s.name), None))?;
        let Some(row) = row else {
            return Err(self.conn.version_miss("sod_rules", false, "sod_rule", &id, expected_version).await);
        };
        Ok(SodRule { created_at: row.ts("created_at")?, version: expected_version + 1, ..s.clone() })
    }

    pub async fn delete_sod_rule(&mut self, id: SodRuleId, expected_version: i64) -> Result<(), StoreError> {
        let ids = id.to_string();
        let n = sqlx::query("DELETE FROM sod_rules WHERE id = $1 AND version = $2")
            .bind(ids.clone())
            .bind(expected_version)
            .execute(self.conn.ex())
            .await?
            .rows_affected();
        if n == 0 {
            return Err(self.conn.version_miss("sod_rules", false, "sod_rule", &ids, expected_version).await);
        }
        Ok(())
    }
}
