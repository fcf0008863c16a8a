//! The access model: resource types, resources, roles, role templates, separation-of-duties
//! rules and grants.

use crate::conn::{Arg, Conn, Filter, Page, RowExt, fold, micros, opt_micros, to_json};
use crate::error::{Unique, map_write_err};
use crate::{StoreError, WriteTx};
use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;
use wardkey_domain::{
    DecisionAudit, Grant, GrantId, GrantSource, Permission, Resource, ResourceId, ResourceType, ResourceTypeId, Role,
    RoleId, RoleTemplate, RoleTemplateId, SodRule, SodRuleId, Subject,
};

/// Longest parent chain [`Conn::ancestors`] follows: the domain's one limit.
pub use wardkey_domain::MAX_RESOURCE_DEPTH;

/// Filters of [`Conn::list_resources`] (live resources only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceQuery {
    pub type_id: Option<ResourceTypeId>,
    /// `Some(None)`: roots only; `Some(Some(p))`: children of `p`.
    pub parent_id: Option<Option<ResourceId>>,
}

/// Filters of [`Conn::list_grants`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantQuery {
    pub subject: Option<Subject>,
    pub role_id: Option<RoleId>,
    pub resource_id: Option<ResourceId>,
    /// false: only grants neither revoked nor expired at the current time.
    pub include_inactive: bool,
}

macro_rules! rt_cols {
    () => {
        "id, name, description, actions, phi, decision_audit, created_at, updated_at, version"
    };
}
macro_rules! res_cols {
    () => {
        "id, type_id, name, parent_id, description, attributes, created_at, updated_at, version"
    };
}
macro_rules! role_cols {
    () => {
        "id, name, description, permissions, privileged, session_policy, conditions, break_glass, created_at, updated_at, version"
    };
}
macro_rules! tpl_cols {
    () => {
        "id, name, description, rule, role_ids, created_at, updated_at, version"
    };
}
macro_rules! sod_cols {
    () => {
        "id, name, description, left_item, right_item, created_at, updated_at, version"
    };
}
macro_rules! grant_cols {
    () => {
        "id, subject_kind, subject_id, role_id, resource_id, source, requester, approver, justification, \
         starts_at, expires_at, created_at, created_by, revoked_at, revoked_by, version, conditions"
    };
}

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

fn role_from_row(r: &AnyRow) -> Result<Role, StoreError> {
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

fn grant_from_row(r: &AnyRow) -> Result<Grant, StoreError> {
    let kind = r.text("subject_kind")?;
    let subject = Subject::from_parts(&kind, r.uuid("subject_id")?)
        .ok_or_else(|| StoreError::corrupt(format!("subject kind {kind:?}")))?;
    let source = r.text("source")?;
    Ok(Grant {
        id: GrantId(r.uuid("id")?),
        subject,
        role_id: RoleId(r.uuid("role_id")?),
        resource_id: r.opt_uuid("resource_id")?.map(ResourceId),
        source: GrantSource::parse(&source).ok_or_else(|| StoreError::corrupt(format!("grant source {source:?}")))?,
        requester: r.opt_text("requester")?,
        approver: r.opt_text("approver")?,
        justification: r.opt_text("justification")?,
        starts_at: r.ts("starts_at")?,
        expires_at: r.opt_ts("expires_at")?,
        created_at: r.ts("created_at")?,
        created_by: r.text("created_by")?,
        revoked_at: r.opt_ts("revoked_at")?,
        revoked_by: r.opt_text("revoked_by")?,
        conditions: r.json("conditions")?,
        version: r.int("version")?,
    })
}

fn subject_table(s: &Subject) -> &'static str {
    match s {
        Subject::User(_) => "users",
        Subject::Group(_) => "groups",
        Subject::ServiceAccount(_) => "service_accounts",
    }
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
fn res_unique(value: &str) -> [Unique<'_>; 1] {
    [Unique {
        index: "resources_sibling_name_live",
        sqlite_columns: "resources.parent_key, resources.name_key",
        kind: "resource",
        field: "name",
        value,
    }]
}
fn role_unique(value: &str) -> [Unique<'_>; 1] {
    [Unique { index: "roles_name_live", sqlite_columns: "roles.name_key", kind: "role", field: "name", value }]
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

/// `... AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)` for grants live at `now`.
fn push_live(f: &mut Filter, prefix: &str, now: DateTime<Utc>) {
    f.push(&format!("{prefix}revoked_at IS NULL"), []);
    f.push(&format!("({prefix}expires_at IS NULL OR {prefix}expires_at > ?)"), [Arg::Int(micros(now))]);
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

    // ----- resources -----

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

    // ----- roles -----

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

    // ----- role templates -----

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

    /// Every live resource, in id order (building the decision index).
    pub async fn all_resources(&mut self) -> Result<Vec<Resource>, StoreError> {
        let rows = sqlx::query(concat!("SELECT ", res_cols!(), " FROM resources WHERE deleted_at IS NULL ORDER BY id"))
            .fetch_all(self.ex())
            .await?;
        rows.iter().map(res_from_row).collect()
    }

    /// Every live role, in id order.
    pub async fn all_roles(&mut self) -> Result<Vec<Role>, StoreError> {
        let rows = sqlx::query(concat!("SELECT ", role_cols!(), " FROM roles WHERE deleted_at IS NULL ORDER BY id"))
            .fetch_all(self.ex())
            .await?;
        rows.iter().map(role_from_row).collect()
    }

    // ----- SoD rules -----

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

    // ----- grants -----

    pub async fn get_grant(&mut self, id: GrantId) -> Result<Option<Grant>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", grant_cols!(), " FROM grants WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.ex())
            .await?;
        row.as_ref().map(grant_from_row).transpose()
    }

    pub async fn list_grants(&mut self, q: &GrantQuery, page: &Page) -> Result<Vec<Grant>, StoreError> {
        let mut f = Filter::default();
        if let Some(s) = q.subject {
            f.push(
                "subject_kind = ? AND subject_id = ?",
                [Arg::Text(s.kind().into()), Arg::Text(s.uuid().to_string())],
            );
        }
        if let Some(r) = q.role_id {
            f.push("role_id = ?", [Arg::Text(r.to_string())]);
        }
        if let Some(r) = q.resource_id {
            f.push("resource_id = ?", [Arg::Text(r.to_string())]);
        }
        if !q.include_inactive {
            push_live(&mut f, "", self.current_time());
        }
        let tail = f.page(page, "id")?;
        let sql = format!(concat!("SELECT ", grant_cols!(), " FROM grants{}{}"), f.where_sql(), tail);
        let rows = f.fetch_all(self.ex(), sql).await?;
        rows.iter().map(grant_from_row).collect()
    }

    /// Grants of `subject` neither revoked nor expired at `now` (including ones that start
    /// later), in id order.
    pub async fn live_grants_for_subject(
        &mut self,
        subject: Subject,
        now: DateTime<Utc>,
    ) -> Result<Vec<Grant>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            grant_cols!(),
            " FROM grants WHERE subject_kind = $1 AND subject_id = $2 AND revoked_at IS NULL \
              AND (expires_at IS NULL OR expires_at > $3) ORDER BY id"
        ))
        .bind(subject.kind())
        .bind(subject.uuid().to_string())
        .bind(micros(now))
        .fetch_all(self.ex())
        .await?;
        rows.iter().map(grant_from_row).collect()
    }

    /// Every grant neither revoked nor expired at `now`, in id order (the decision index is
    /// built from this).
    pub async fn all_live_grants(&mut self, now: DateTime<Utc>) -> Result<Vec<Grant>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            grant_cols!(),
            " FROM grants WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1) ORDER BY id"
        ))
        .bind(micros(now))
        .fetch_all(self.ex())
        .await?;
        rows.iter().map(grant_from_row).collect()
    }

    async fn count(&mut self, sql: &'static str, args: &[Arg]) -> Result<i64, StoreError> {
        let mut q = sqlx::query(sql);
        for a in args {
            q = match a {
                Arg::Text(s) => q.bind(s.clone()),
                Arg::Int(i) => q.bind(*i),
            };
        }
        let row = q.fetch_one(self.ex()).await?;
        row.int("n")
    }
}

impl WriteTx {
    // ----- resource types -----

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

    // ----- resources -----

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

    // ----- roles -----

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

    // ----- role templates -----

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

    // ----- SoD rules -----

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

    // ----- grants -----

    /// Inserts a grant; its subject, role and resource must exist and be live.
    pub async fn insert_grant(&mut self, g: &Grant) -> Result<(), StoreError> {
        let sid = g.subject.uuid().to_string();
        if !self.conn.exists_live(subject_table(&g.subject), true, &sid).await? {
            return Err(StoreError::NotFound { kind: g.subject.kind(), id: sid });
        }
        if !self.conn.exists_live("roles", true, &g.role_id.to_string()).await? {
            return Err(StoreError::NotFound { kind: "role", id: g.role_id.to_string() });
        }
        if let Some(r) = g.resource_id
            && !self.conn.exists_live("resources", true, &r.to_string()).await?
        {
            return Err(StoreError::NotFound { kind: "resource", id: r.to_string() });
        }
        let q = sqlx::query(
            "INSERT INTO grants (id, subject_kind, subject_id, role_id, resource_id, source, requester, approver, \
             justification, starts_at, expires_at, created_at, created_by, revoked_at, revoked_by, version, conditions) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        )
        .bind(g.id.to_string())
        .bind(g.subject.kind())
        .bind(sid)
        .bind(g.role_id.to_string())
        .bind(g.resource_id.map(|r| r.to_string()))
        .bind(g.source.as_str())
        .bind(g.requester.clone())
        .bind(g.approver.clone())
        .bind(g.justification.clone())
        .bind(micros(g.starts_at))
        .bind(opt_micros(g.expires_at))
        .bind(micros(g.created_at))
        .bind(g.created_by.clone())
        .bind(opt_micros(g.revoked_at))
        .bind(g.revoked_by.clone())
        .bind(g.version)
        .bind(to_json(&g.conditions)?);
        let unique =
            [Unique { index: "grants_pkey", sqlite_columns: "grants.id", kind: "grant", field: "id", value: "" }];
        self.conn.guarded(q).await.map_err(|e| map_write_err(e, &unique, None))?;
        Ok(())
    }

    /// Revokes a grant (kept, with who and when, for evidence). Already revoked → Conflict.
    pub async fn revoke_grant(
        &mut self,
        id: GrantId,
        expected_version: i64,
        at: DateTime<Utc>,
        by: &str,
    ) -> Result<Grant, StoreError> {
        let ids = id.to_string();
        let n = sqlx::query(
            "UPDATE grants SET revoked_at = $1, revoked_by = $2, version = version + 1 \
             WHERE id = $3 AND version = $4 AND revoked_at IS NULL",
        )
        .bind(micros(at))
        .bind(by.to_owned())
        .bind(ids.clone())
        .bind(expected_version)
        .execute(self.conn.ex())
        .await?
        .rows_affected();
        let grant = self.conn.get_grant(id).await?;
        let Some(grant) = grant else {
            return Err(StoreError::NotFound { kind: "grant", id: ids });
        };
        if n == 1 {
            return Ok(grant);
        }
        if grant.version != expected_version {
            return Err(StoreError::VersionConflict {
                kind: "grant",
                id: ids,
                expected: expected_version,
                actual: grant.version,
            });
        }
        Err(StoreError::Conflict { kind: "grant", id: ids, message: "the grant is already revoked".into() })
    }

    /// Revokes every grant of `subject` not yet revoked nor expired at `at`; returns their ids.
    pub async fn revoke_all_grants_for_subject(
        &mut self,
        subject: Subject,
        at: DateTime<Utc>,
        by: &str,
    ) -> Result<Vec<GrantId>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM grants WHERE subject_kind = $1 AND subject_id = $2 AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $3) ORDER BY id",
        )
        .bind(subject.kind())
        .bind(subject.uuid().to_string())
        .bind(micros(at))
        .fetch_all(self.conn.ex())
        .await?;
        let ids: Vec<GrantId> = rows.iter().map(|r| Ok(GrantId(r.uuid("id")?))).collect::<Result<_, StoreError>>()?;
        for id in &ids {
            sqlx::query(
                "UPDATE grants SET revoked_at = $1, revoked_by = $2, version = version + 1 \
                 WHERE id = $3 AND revoked_at IS NULL",
            )
            .bind(micros(at))
            .bind(by.to_owned())
            .bind(id.to_string())
            .execute(self.conn.ex())
            .await?;
        }
        Ok(ids)
    }
}

impl Conn {
    async fn list_all_live_roles(&mut self) -> Result<Vec<Role>, StoreError> {
        let rows = sqlx::query(concat!("SELECT ", role_cols!(), " FROM roles WHERE deleted_at IS NULL ORDER BY id"))
            .fetch_all(self.ex())
            .await?;
        rows.iter().map(role_from_row).collect()
    }
}
