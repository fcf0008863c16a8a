//! SCIM resources beside the directory (migration 0005): the raw JSON of each SCIM User and
//! Group (same id as the directory row), the columns and value rows its filters are translated
//! to, and the list queries that run those translated filters.
//!
//! The condition, `ORDER BY` expression and their parameters come from `wardkey_scim::sql`
//! (pure, tested there); this module only runs them. Users are `u` (+ `s`), groups `g` (+ `sg`).

use crate::conn::{Conn, RowExt, micros};
use crate::{StoreError, WriteTx};
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;
use wardkey_domain::{Group, GroupId, HrAttributes, User, UserId, UserStatus};
use wardkey_scim::resource::UserIndex;
use wardkey_scim::sql::{SqlArg, SqlCondition};

/// One page of a SCIM list: which rows, in what order.
#[derive(Debug, Clone, Default)]
pub struct ScimPage<'a> {
    pub filter: Option<&'a SqlCondition>,
    /// `ORDER BY` expression for `sortBy`; ties (and no `sortBy`) are ordered by id.
    pub sort: Option<String>,
    pub descending: bool,
    /// 0-based offset (SCIM `startIndex` - 1).
    pub offset: i64,
    pub limit: i64,
}

/// A directory user with its SCIM representation, if a connector wrote one.
#[derive(Debug, Clone)]
pub struct ScimUserRow {
    pub user: User,
    pub raw: Option<String>,
    /// The live groups the user is a direct member of, in id order (the read-only `groups`).
    pub groups: Vec<ScimGroupRef>,
}

/// A group as a SCIM User's `groups` shows it.
#[derive(Debug, Clone)]
pub struct ScimGroupRef {
    pub id: GroupId,
    /// The Group's SCIM `displayName` when a connector sent one, else the directory name.
    pub display: String,
}

#[derive(Debug, Clone)]
pub struct ScimGroupRow {
    pub group: Group,
    pub raw: Option<String>,
}

/// A member as a SCIM Group shows it.
#[derive(Debug, Clone)]
pub struct ScimMember {
    pub id: UserId,
    pub username: String,
    pub display_name: Option<String>,
}

const USER_SELECT: &str = "SELECT u.id AS id, u.username AS username, u.display_name AS display_name, u.email AS email, \
     u.status AS status, u.hr AS hr, u.verification AS verification, u.created_at AS created_at, \
     u.updated_at AS updated_at, u.version AS version, s.raw AS scim_raw \
     FROM users u LEFT JOIN scim_users s ON s.id = u.id WHERE u.deleted_at IS NULL";

const GROUP_SELECT: &str = "SELECT g.id AS id, g.name AS name, g.description AS description, g.created_at AS created_at, \
     g.updated_at AS updated_at, g.version AS version, sg.raw AS scim_raw \
     FROM groups g LEFT JOIN scim_groups sg ON sg.id = g.id WHERE g.deleted_at IS NULL";

fn user_row(r: &AnyRow) -> Result<ScimUserRow, StoreError> {
    let status = r.text("status")?;
    Ok(ScimUserRow {
        user: User {
            id: UserId(r.uuid("id")?),
            username: r.text("username")?,
            display_name: r.opt_text("display_name")?,
            email: r.opt_text("email")?,
            status: UserStatus::parse(&status).ok_or_else(|| StoreError::corrupt(format!("user status {status:?}")))?,
            hr: r.json::<HrAttributes>("hr")?,
            verification: r.opt_json("verification")?,
            created_at: r.ts("created_at")?,
            updated_at: r.ts("updated_at")?,
            version: r.int("version")?,
        },
        raw: r.opt_text("scim_raw")?,
        groups: Vec::new(),
    })
}

fn group_row(r: &AnyRow) -> Result<ScimGroupRow, StoreError> {
    Ok(ScimGroupRow {
        group: Group {
            id: GroupId(r.uuid("id")?),
            name: r.text("name")?,
            description: r.opt_text("description")?,
            created_at: r.ts("created_at")?,
            updated_at: r.ts("updated_at")?,
            version: r.int("version")?,
        },
        raw: r.opt_text("scim_raw")?,
    })
}

fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    args: &[SqlArg],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for a in args {
        q = match a {
            SqlArg::Text(s) => q.bind(s.clone()),
            SqlArg::Int(i) => q.bind(*i),
        };
    }
    q
}

/// `(sql, args)` of a count and of a page query over `select`.
fn page_sql(select: &str, id_col: &str, page: &ScimPage<'_>) -> (String, String, Vec<SqlArg>) {
    let mut where_sql = String::new();
    let mut args = Vec::new();
    if let Some(f) = page.filter {
        where_sql = format!(" AND {}", f.sql);
        args.extend(f.args.iter().cloned());
    }
    let count_sql = match select.split_once(" FROM ") {
        Some((_, from)) => format!("SELECT COUNT(*) AS n FROM {from}{where_sql}"),
        None => String::new(),
    };
    let dir = if page.descending { "DESC" } else { "ASC" };
    let order = match &page.sort {
        Some(e) => format!(" ORDER BY ({e}) IS NULL, {e} {dir}, {id_col}"),
        None => format!(" ORDER BY {id_col}"),
    };
    let n = args.len();
    let sql = format!("{select}{where_sql}{order} LIMIT ${} OFFSET ${}", n + 1, n + 2);
    (count_sql, sql, args)
}

impl Conn {
    /// The number of live users matching the filter, and one page of them.
    pub async fn scim_list_users(&mut self, page: &ScimPage<'_>) -> Result<(i64, Vec<ScimUserRow>), StoreError> {
        let (count_sql, sql, args) = page_sql(USER_SELECT, "u.id", page);
        let total: i64 = {
            let row = bind_all(sqlx::query(AssertSqlSafe(count_sql)), &args).fetch_one(self.ex()).await?;
            row.int("n")?
        };
        if page.limit <= 0 || total == 0 {
            return Ok((total, Vec::new()));
        }
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), &args)
            .bind(page.limit)
            .bind(page.offset)
            .fetch_all(self.ex())
            .await?;
        let mut users = rows.iter().map(user_row).collect::<Result<Vec<_>, _>>()?;
        self.fill_groups(&mut users).await?;
        Ok((total, users))
    }

    /// Fills `groups` of each row with one query (the page is bounded by the list's limit).
    async fn fill_groups(&mut self, users: &mut [ScimUserRow]) -> Result<(), StoreError> {
        if users.is_empty() {
            return Ok(());
        }
        let marks: Vec<String> = (1..=users.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT m.member_id AS user_id, g.id AS id, g.name AS name, sg.raw AS scim_raw FROM group_members m \
             JOIN groups g ON g.id = m.group_id LEFT JOIN scim_groups sg ON sg.id = g.id \
             WHERE m.member_kind = 'user' AND g.deleted_at IS NULL AND m.member_id IN ({}) ORDER BY m.member_id, g.id",
            marks.join(", ")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for u in users.iter() {
            q = q.bind(u.user.id.to_string());
        }
        let rows = q.fetch_all(self.ex()).await?;
        let mut by_user: std::collections::HashMap<UserId, Vec<ScimGroupRef>> = std::collections::HashMap::new();
        for r in &rows {
            let raw = r.opt_text("scim_raw")?;
            let display = raw
                .as_deref()
                .and_then(|raw| serde_json::from_str::<serde_json::Value>(raw).ok())
                .and_then(|v| v.get("displayName").and_then(serde_json::Value::as_str).map(str::to_owned));
            let display = match display {
                Some(d) => d,
                None => r.text("name")?,
            };
            by_user
                .entry(UserId(r.uuid("user_id")?))
                .or_default()
                .push(ScimGroupRef { id: GroupId(r.uuid("id")?), display });
        }
        for u in users.iter_mut() {
            u.groups = by_user.remove(&u.user.id).unwrap_or_default();
        }
        Ok(())
    }

    pub async fn scim_list_groups(&mut self, page: &ScimPage<'_>) -> Result<(i64, Vec<ScimGroupRow>), StoreError> {
        let (count_sql, sql, args) = page_sql(GROUP_SELECT, "g.id", page);
        let total: i64 = {
            let row = bind_all(sqlx::query(AssertSqlSafe(count_sql)), &args).fetch_one(self.ex()).await?;
            row.int("n")?
        };
        if page.limit <= 0 || total == 0 {
            return Ok((total, Vec::new()));
        }
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), &args)
            .bind(page.limit)
            .bind(page.offset)
            .fetch_all(self.ex())
            .await?;
        Ok((total, rows.iter().map(group_row).collect::<Result<_, _>>()?))
    }

    /// The query plan of a user list with this filter (`EXPLAIN QUERY PLAN` on SQLite,
    /// `EXPLAIN` on PostgreSQL), one line per row: for tests that filters run in SQL on indexes.
    pub async fn scim_explain_users(&mut self, filter: &SqlCondition) -> Result<Vec<String>, StoreError> {
        let page = ScimPage { filter: Some(filter), limit: 100, ..ScimPage::default() };
        let (_, sql, args) = page_sql(USER_SELECT, "u.id", &page);
        let (prefix, col) = match self.backend() {
            crate::BackendKind::Sqlite => ("EXPLAIN QUERY PLAN ", "detail"),
            crate::BackendKind::Postgres => ("EXPLAIN ", "QUERY PLAN"),
        };
        let rows = bind_all(sqlx::query(AssertSqlSafe(format!("{prefix}{sql}"))), &args)
            .bind(100_i64)
            .bind(0_i64)
            .fetch_all(self.ex())
            .await?;
        rows.iter().map(|r| r.text(col)).collect()
    }

    /// A live user and its SCIM JSON.
    pub async fn scim_get_user(&mut self, id: UserId) -> Result<Option<ScimUserRow>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!("{USER_SELECT} AND u.id = $1")))
            .bind(id.to_string())
            .fetch_optional(self.ex())
            .await?;
        let Some(row) = row.as_ref().map(user_row).transpose()? else { return Ok(None) };
        let mut one = [row];
        self.fill_groups(&mut one).await?;
        let [row] = one;
        Ok(Some(row))
    }

    pub async fn scim_get_group(&mut self, id: GroupId) -> Result<Option<ScimGroupRow>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!("{GROUP_SELECT} AND g.id = $1")))
            .bind(id.to_string())
            .fetch_optional(self.ex())
            .await?;
        row.as_ref().map(group_row).transpose()
    }

    /// The live user members of a group, in id order, with their names.
    pub async fn scim_group_members(&mut self, group: GroupId) -> Result<Vec<ScimMember>, StoreError> {
        let rows = sqlx::query(
            "SELECT u.id AS id, u.username AS username, u.display_name AS display_name FROM group_members m \
             JOIN users u ON u.id = m.member_id WHERE m.group_id = $1 AND m.member_kind = 'user' \
             AND u.deleted_at IS NULL ORDER BY u.id",
        )
        .bind(group.to_string())
        .fetch_all(self.ex())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ScimMember {
                    id: UserId(r.uuid("id")?),
                    username: r.text("username")?,
                    display_name: r.opt_text("display_name")?,
                })
            })
            .collect()
    }
}

impl WriteTx {
    /// Stores the SCIM JSON of user `id` and the columns and value rows its filters use.
    pub async fn scim_put_user(
        &mut self,
        id: UserId,
        raw: &str,
        connector: &str,
        index: &UserIndex,
    ) -> Result<(), StoreError> {
        let id = id.to_string();
        sqlx::query("DELETE FROM scim_values WHERE resource_id = $1").bind(id.clone()).execute(self.conn.ex()).await?;
        sqlx::query("DELETE FROM scim_users WHERE id = $1").bind(id.clone()).execute(self.conn.ex()).await?;
        let mut cols = vec!["id", "external_id", "raw", "connector", "manager_value"];
        cols.extend(index.keys.iter().map(|(c, _)| *c));
        let placeholders: Vec<String> = (1..=cols.len()).map(|i| format!("${i}")).collect();
        let sql = format!("INSERT INTO scim_users ({}) VALUES ({})", cols.join(", "), placeholders.join(", "));
        let mut q = sqlx::query(AssertSqlSafe(sql))
            .bind(id.clone())
            .bind(index.external_id.clone())
            .bind(raw.to_owned())
            .bind(connector.to_owned())
            .bind(index.manager_value.clone());
        for (_, v) in &index.keys {
            q = q.bind(v.clone());
        }
        q.execute(self.conn.ex()).await?;
        for v in &index.values {
            sqlx::query(
                "INSERT INTO scim_values (resource_id, attr, idx, value, value_key, type_key, display_key, primary_flag) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(id.clone())
            .bind(v.attr.clone())
            .bind(v.idx)
            .bind(v.value.clone())
            .bind(v.value_key.clone())
            .bind(v.type_key.clone())
            .bind(v.display_key.clone())
            .bind(i64::from(v.primary))
            .execute(self.conn.ex())
            .await?;
        }
        Ok(())
    }

    /// Stores the SCIM JSON of group `id`.
    pub async fn scim_put_group(
        &mut self,
        id: GroupId,
        raw: &str,
        connector: &str,
        external_id: Option<&str>,
        display_name_key: Option<&str>,
    ) -> Result<(), StoreError> {
        let id = id.to_string();
        sqlx::query("DELETE FROM scim_groups WHERE id = $1").bind(id.clone()).execute(self.conn.ex()).await?;
        sqlx::query(
            "INSERT INTO scim_groups (id, external_id, raw, connector, display_name_key) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(external_id.map(str::to_owned))
        .bind(raw.to_owned())
        .bind(connector.to_owned())
        .bind(display_name_key.map(str::to_owned))
        .execute(self.conn.ex())
        .await?;
        Ok(())
    }

    /// Bumps a group's version (SCIM membership changes change its ETag).
    pub async fn scim_touch_group(&mut self, id: GroupId, expected_version: i64) -> Result<i64, StoreError> {
        let n = sqlx::query("UPDATE groups SET version = version + 1, updated_at = $1 WHERE id = $2 AND version = $3 AND deleted_at IS NULL")
            .bind(micros(self.now))
            .bind(id.to_string())
            .bind(expected_version)
            .execute(self.conn.ex())
            .await?
            .rows_affected();
        if n == 0 {
            return Err(self.conn.version_miss("groups", true, "group", &id.to_string(), expected_version).await);
        }
        Ok(expected_version + 1)
    }
}
