//! Users, groups, memberships and service accounts.

use crate::conn::{Arg, Conn, Filter, Page, RowExt, fold, micros, prefix_range, to_json};
use crate::error::{Unique, map_write_err};
use crate::{StoreError, WriteTx};
use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;
use wardkey_domain::{
    Group, GroupId, HrAttributes, Member, ServiceAccount, ServiceAccountId, ServiceAccountStatus, User, UserId,
    UserStatus,
};

/// Filters of [`Conn::list_users`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserQuery {
    pub status: Option<UserStatus>,
    /// Case-insensitive prefix of the username.
    pub username_prefix: Option<String>,
    /// Exact HR department.
    pub department: Option<String>,
    /// Also list tombstoned (deleted) users.
    pub include_deleted: bool,
}

macro_rules! user_cols {
    () => {
        "id, username, display_name, email, status, hr, verification, created_at, updated_at, version, deleted_at"
    };
}
macro_rules! group_cols {
    () => {
        "id, name, description, created_at, updated_at, version, deleted_at"
    };
}
macro_rules! sa_cols {
    () => {
        "id, name, description, owner_id, status, created_at, updated_at, version, deleted_at"
    };
}

fn user_from_row(r: &AnyRow) -> Result<User, StoreError> {
    let status = r.text("status")?;
    Ok(User {
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
    })
}

fn group_from_row(r: &AnyRow) -> Result<Group, StoreError> {
    Ok(Group {
        id: GroupId(r.uuid("id")?),
        name: r.text("name")?,
        description: r.opt_text("description")?,
        created_at: r.ts("created_at")?,
        updated_at: r.ts("updated_at")?,
        version: r.int("version")?,
    })
}

fn sa_from_row(r: &AnyRow) -> Result<ServiceAccount, StoreError> {
    let status = r.text("status")?;
    Ok(ServiceAccount {
        id: ServiceAccountId(r.uuid("id")?),
        name: r.text("name")?,
        description: r.opt_text("description")?,
        owner_id: UserId(r.uuid("owner_id")?),
        status: ServiceAccountStatus::parse(&status)
            .ok_or_else(|| StoreError::corrupt(format!("service account status {status:?}")))?,
        created_at: r.ts("created_at")?,
        updated_at: r.ts("updated_at")?,
        version: r.int("version")?,
    })
}

fn member_parts(m: &Member) -> (&'static str, String) {
    match m {
        Member::User(id) => ("user", id.to_string()),
        Member::ServiceAccount(id) => ("service_account", id.to_string()),
    }
}

fn username_unique(value: &str) -> [Unique<'_>; 2] {
    [
        Unique {
            index: "users_username_live",
            sqlite_columns: "users.username_key",
            kind: "user",
            field: "username",
            value,
        },
        // A different spelling that looks the same (Unicode TS #39 skeleton): refused like a
        // duplicate, so nobody can be impersonated by a look-alike account.
        Unique {
            index: "users_username_skeleton_live",
            sqlite_columns: "users.username_skeleton",
            kind: "user",
            field: "username",
            value,
        },
    ]
}

/// Fills in the confusable skeleton of live users that have none (users created before
/// migration 0010). SQL cannot compute skeletons, so this runs in Rust when the store opens,
/// one row at a time outside any transaction: a user whose skeleton collides with another
/// live user's is left without one (the migration must not fail on data that was valid when
/// written) and reported in the log at every start until an administrator renames one of
/// the two; new names are still checked against the other user's skeleton, which is the same.
pub(crate) async fn backfill_username_skeletons(pool: &sqlx::AnyPool) -> Result<(), StoreError> {
    let rows = sqlx::query("SELECT id, username FROM users WHERE username_skeleton IS NULL AND deleted_at IS NULL")
        .fetch_all(pool)
        .await?;
    for r in &rows {
        let id = r.text("id")?;
        let username = r.text("username")?;
        let done = sqlx::query("UPDATE users SET username_skeleton = $1 WHERE id = $2 AND username_skeleton IS NULL")
            .bind(wardkey_domain::username_skeleton(&username))
            .bind(id.clone())
            .execute(pool)
            .await;
        match done {
            Ok(_) => {}
            Err(sqlx::Error::Database(db)) if db.kind() == sqlx::error::ErrorKind::UniqueViolation => {
                tracing::warn!(
                    user = %id,
                    "this user's username looks like another live user's (same confusable skeleton); \
                     rename one of them"
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn group_unique(value: &str) -> [Unique<'_>; 1] {
    [Unique { index: "groups_name_live", sqlite_columns: "groups.name_key", kind: "group", field: "name", value }]
}

fn sa_unique(value: &str) -> [Unique<'_>; 1] {
    [Unique {
        index: "service_accounts_name_live",
        sqlite_columns: "service_accounts.name_key",
        kind: "service_account",
        field: "name",
        value,
    }]
}

impl Conn {
    // ----- users -----

    /// A live user.
    pub async fn get_user(&mut self, id: UserId) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", user_cols!(), " FROM users WHERE id = $1 AND deleted_at IS NULL"))
            .bind(id.to_string())
            .fetch_optional(self.ex())
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// A user whether live or deleted, with the time of deletion (evidence reports need the
    /// people who are gone).
    pub async fn get_user_including_deleted(
        &mut self,
        id: UserId,
    ) -> Result<Option<(User, Option<DateTime<Utc>>)>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", user_cols!(), " FROM users WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.ex())
            .await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some((user_from_row(&r)?, r.opt_ts("deleted_at")?))),
        }
    }

    /// The live user with this username, ignoring case.
    pub async fn get_user_by_username(&mut self, username: &str) -> Result<Option<User>, StoreError> {
        let row =
            sqlx::query(concat!("SELECT ", user_cols!(), " FROM users WHERE username_key = $1 AND deleted_at IS NULL"))
                .bind(wardkey_domain::username_lookup_key(username))
                .fetch_optional(self.ex())
                .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Live users with this HR employee id (HR imports match on it).
    pub async fn get_users_by_employee_id(&mut self, employee_id: &str) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            user_cols!(),
            " FROM users WHERE employee_id = $1 AND deleted_at IS NULL ORDER BY id"
        ))
        .bind(employee_id.to_owned())
        .fetch_all(self.ex())
        .await?;
        rows.iter().map(user_from_row).collect()
    }

    pub async fn list_users(&mut self, q: &UserQuery, page: &Page) -> Result<Vec<User>, StoreError> {
        let mut f = Filter::default();
        if !q.include_deleted {
            f.push("deleted_at IS NULL", []);
        }
        if let Some(s) = q.status {
            f.push("status = ?", [Arg::Text(s.as_str().to_owned())]);
        }
        if let Some(p) = q.username_prefix.as_deref().filter(|p| !p.is_empty()) {
            match prefix_range(&fold(p)) {
                (lower, Some(upper)) => {
                    f.push("username_key >= ? AND username_key < ?", [Arg::Text(lower), Arg::Text(upper)])
                }
                (lower, None) => f.push("username_key >= ?", [Arg::Text(lower)]),
            }
        }
        if let Some(d) = &q.department {
            f.push("department = ?", [Arg::Text(d.clone())]);
        }
        let tail = f.page(page, "id")?;
        let sql = format!(concat!("SELECT ", user_cols!(), " FROM users{}{}"), f.where_sql(), tail);
        let rows = f.fetch_all(self.ex(), sql).await?;
        rows.iter().map(user_from_row).collect()
    }

    // ----- groups -----

    pub async fn get_group(&mut self, id: GroupId) -> Result<Option<Group>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", group_cols!(), " FROM groups WHERE id = $1 AND deleted_at IS NULL"))
            .bind(id.to_string())
            .fetch_optional(self.ex())
            .await?;
        row.as_ref().map(group_from_row).transpose()
    }

    /// The live group with this name, ignoring case.
    pub async fn get_group_by_name(&mut self, name: &str) -> Result<Option<Group>, StoreError> {
        let row =
            sqlx::query(concat!("SELECT ", group_cols!(), " FROM groups WHERE name_key = $1 AND deleted_at IS NULL"))
                .bind(fold(name))
                .fetch_optional(self.ex())
                .await?;
        row.as_ref().map(group_from_row).transpose()
    }

    pub async fn list_groups(&mut self, page: &Page) -> Result<Vec<Group>, StoreError> {
        let mut f = Filter::default();
        f.push("deleted_at IS NULL", []);
        let tail = f.page(page, "id")?;
        let sql = format!(concat!("SELECT ", group_cols!(), " FROM groups{}{}"), f.where_sql(), tail);
        let rows = f.fetch_all(self.ex(), sql).await?;
        rows.iter().map(group_from_row).collect()
    }

    /// Members of a group, users first, each kind in id order.
    pub async fn list_members(&mut self, group: GroupId) -> Result<Vec<Member>, StoreError> {
        let rows = sqlx::query(
            "SELECT member_kind, member_id FROM group_members WHERE group_id = $1 ORDER BY member_kind DESC, member_id",
        )
        .bind(group.to_string())
        .fetch_all(self.ex())
        .await?;
        rows.iter()
            .map(|r| {
                let kind = r.text("member_kind")?;
                let id = r.uuid("member_id")?;
                match kind.as_str() {
                    "user" => Ok(Member::User(UserId(id))),
                    "service_account" => Ok(Member::ServiceAccount(ServiceAccountId(id))),
                    other => Err(StoreError::corrupt(format!("member kind {other:?}"))),
                }
            })
            .collect()
    }

    /// Every live user, in id order (building the decision index).
    pub async fn all_users(&mut self) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query(concat!("SELECT ", user_cols!(), " FROM users WHERE deleted_at IS NULL ORDER BY id"))
            .fetch_all(self.ex())
            .await?;
        rows.iter().map(user_from_row).collect()
    }

    /// Every live group, in id order.
    pub async fn all_groups(&mut self) -> Result<Vec<Group>, StoreError> {
        let rows = sqlx::query(concat!("SELECT ", group_cols!(), " FROM groups WHERE deleted_at IS NULL ORDER BY id"))
            .fetch_all(self.ex())
            .await?;
        rows.iter().map(group_from_row).collect()
    }

    /// Every live service account, in id order.
    pub async fn all_service_accounts(&mut self) -> Result<Vec<ServiceAccount>, StoreError> {
        let rows =
            sqlx::query(concat!("SELECT ", sa_cols!(), " FROM service_accounts WHERE deleted_at IS NULL ORDER BY id"))
                .fetch_all(self.ex())
                .await?;
        rows.iter().map(sa_from_row).collect()
    }

    /// Every membership of a live group: (group, member).
    pub async fn all_memberships(&mut self) -> Result<Vec<(GroupId, Member)>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.group_id, m.member_kind, m.member_id FROM group_members m JOIN groups g ON g.id = m.group_id \
             WHERE g.deleted_at IS NULL ORDER BY m.group_id, m.member_kind DESC, m.member_id",
        )
        .fetch_all(self.ex())
        .await?;
        rows.iter()
            .map(|r| {
                let g = GroupId(r.uuid("group_id")?);
                let kind = r.text("member_kind")?;
                let id = r.uuid("member_id")?;
                let m = match kind.as_str() {
                    "user" => Member::User(UserId(id)),
                    "service_account" => Member::ServiceAccount(ServiceAccountId(id)),
                    other => return Err(StoreError::corrupt(format!("member kind {other:?}"))),
                };
                Ok((g, m))
            })
            .collect()
    }

    /// The live groups `member` belongs to, in id order.
    pub async fn groups_of(&mut self, member: Member) -> Result<Vec<GroupId>, StoreError> {
        let (kind, id) = member_parts(&member);
        let rows = sqlx::query(
            "SELECT m.group_id AS group_id FROM group_members m JOIN groups g ON g.id = m.group_id \
             WHERE m.member_kind = $1 AND m.member_id = $2 AND g.deleted_at IS NULL ORDER BY m.group_id",
        )
        .bind(kind)
        .bind(id)
        .fetch_all(self.ex())
        .await?;
        rows.iter().map(|r| Ok(GroupId(r.uuid("group_id")?))).collect()
    }

    // ----- service accounts -----

    pub async fn get_service_account(&mut self, id: ServiceAccountId) -> Result<Option<ServiceAccount>, StoreError> {
        let row =
            sqlx::query(concat!("SELECT ", sa_cols!(), " FROM service_accounts WHERE id = $1 AND deleted_at IS NULL"))
                .bind(id.to_string())
                .fetch_optional(self.ex())
                .await?;
        row.as_ref().map(sa_from_row).transpose()
    }

    pub async fn get_service_account_by_name(&mut self, name: &str) -> Result<Option<ServiceAccount>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            sa_cols!(),
            " FROM service_accounts WHERE name_key = $1 AND deleted_at IS NULL"
        ))
        .bind(fold(name))
        .fetch_optional(self.ex())
        .await?;
        row.as_ref().map(sa_from_row).transpose()
    }

    pub async fn list_service_accounts(&mut self, page: &Page) -> Result<Vec<ServiceAccount>, StoreError> {
        let mut f = Filter::default();
        f.push("deleted_at IS NULL", []);
        let tail = f.page(page, "id")?;
        let sql = format!(concat!("SELECT ", sa_cols!(), " FROM service_accounts{}{}"), f.where_sql(), tail);
        let rows = f.fetch_all(self.ex(), sql).await?;
        rows.iter().map(sa_from_row).collect()
    }

    /// Live service accounts owned by `owner`.
    pub async fn service_accounts_owned_by(&mut self, owner: UserId) -> Result<Vec<ServiceAccount>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            sa_cols!(),
            " FROM service_accounts WHERE owner_id = $1 AND deleted_at IS NULL ORDER BY id"
        ))
        .bind(owner.to_string())
        .fetch_all(self.ex())
        .await?;
        rows.iter().map(sa_from_row).collect()
    }
}

impl WriteTx {
    // ----- users -----

    pub async fn insert_user(&mut self, u: &User) -> Result<(), StoreError> {
        let q = sqlx::query(
            "INSERT INTO users (id, username, username_key, display_name, email, status, hr, department, \
             employee_id, verification, created_at, updated_at, version, username_skeleton) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(u.id.to_string())
        .bind(u.username.clone())
        .bind(wardkey_domain::username_lookup_key(&u.username))
        .bind(u.display_name.clone())
        .bind(u.email.clone())
        .bind(u.status.as_str())
        .bind(to_json(&u.hr)?)
        .bind(u.hr.department.clone())
        .bind(u.hr.employee_id.clone())
        .bind(u.verification.as_ref().map(to_json).transpose()?)
        .bind(micros(u.created_at))
        .bind(micros(u.updated_at))
        .bind(u.version)
        .bind(wardkey_domain::username_skeleton(&u.username));
        self.conn.guarded(q).await.map_err(|e| map_write_err(e, &username_unique(&u.username), None))?;
        Ok(())
    }

    /// Writes `u` over the live user with `expected_version`; returns it as stored (version
    /// `expected_version + 1`).
    pub async fn update_user(&mut self, u: &User, expected_version: i64) -> Result<User, StoreError> {
        let id = u.id.to_string();
        let q = sqlx::query(
            "UPDATE users SET username = $1, username_key = $2, display_name = $3, email = $4, status = $5, \
             hr = $6, department = $7, employee_id = $8, verification = $9, updated_at = $10, version = $11, \
             username_skeleton = $14 \
             WHERE id = $12 AND version = $13 AND deleted_at IS NULL RETURNING created_at",
        )
        .bind(u.username.clone())
        .bind(wardkey_domain::username_lookup_key(&u.username))
        .bind(u.display_name.clone())
        .bind(u.email.clone())
        .bind(u.status.as_str())
        .bind(to_json(&u.hr)?)
        .bind(u.hr.department.clone())
        .bind(u.hr.employee_id.clone())
        .bind(u.verification.as_ref().map(to_json).transpose()?)
        .bind(micros(u.updated_at))
        .bind(expected_version + 1)
        .bind(id.clone())
        .bind(expected_version)
        .bind(wardkey_domain::username_skeleton(&u.username));
        let row =
            self.conn.guarded_optional(q).await.map_err(|e| map_write_err(e, &username_unique(&u.username), None))?;
        let Some(row) = row else {
            return Err(self.conn.version_miss("users", true, "user", &id, expected_version).await);
        };
        Ok(User { created_at: row.ts("created_at")?, version: expected_version + 1, ..u.clone() })
    }

    /// Tombstones the user: the id is never reused, the username is free again. Removes the
    /// user's group memberships.
    pub async fn delete_user(&mut self, id: UserId, expected_version: i64) -> Result<(), StoreError> {
        self.tombstone("users", "user", &id.to_string(), expected_version).await?;
        sqlx::query("DELETE FROM group_members WHERE member_kind = 'user' AND member_id = $1")
            .bind(id.to_string())
            .execute(self.conn.ex())
            .await?;
        Ok(())
    }

    pub(crate) async fn tombstone(
        &mut self,
        table: &'static str,
        kind: &'static str,
        id: &str,
        expected_version: i64,
    ) -> Result<(), StoreError> {
        let now = micros(self.now);
        let sql = format!(
            "UPDATE {table} SET deleted_at = $1, updated_at = $1, version = version + 1 \
             WHERE id = $2 AND version = $3 AND deleted_at IS NULL"
        );
        let n = sqlx::query(AssertSqlSafe(sql))
            .bind(now)
            .bind(id.to_owned())
            .bind(expected_version)
            .execute(self.conn.ex())
            .await?
            .rows_affected();
        if n == 0 {
            return Err(self.conn.version_miss(table, true, kind, id, expected_version).await);
        }
        Ok(())
    }

    // ----- groups -----

    pub async fn insert_group(&mut self, g: &Group) -> Result<(), StoreError> {
        let q = sqlx::query(
            "INSERT INTO groups (id, name, name_key, description, created_at, updated_at, version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(g.id.to_string())
        .bind(g.name.clone())
        .bind(fold(&g.name))
        .bind(g.description.clone())
        .bind(micros(g.created_at))
        .bind(micros(g.updated_at))
        .bind(g.version);
        self.conn.guarded(q).await.map_err(|e| map_write_err(e, &group_unique(&g.name), None))?;
        Ok(())
    }

    pub async fn update_group(&mut self, g: &Group, expected_version: i64) -> Result<Group, StoreError> {
        let id = g.id.to_string();
        let q = sqlx::query(
            "UPDATE groups SET name = $1, name_key = $2, description = $3, updated_at = $4, version = $5 \
             WHERE id = $6 AND version = $7 AND deleted_at IS NULL RETURNING created_at",
        )
        .bind(g.name.clone())
        .bind(fold(&g.name))
        .bind(g.description.clone())
        .bind(micros(g.updated_at))
        .bind(expected_version + 1)
        .bind(id.clone())
        .bind(expected_version);
        let row = self.conn.guarded_optional(q).await.map_err(|e| map_write_err(e, &group_unique(&g.name), None))?;
        let Some(row) = row else {
            return Err(self.conn.version_miss("groups", true, "group", &id, expected_version).await);
        };
        Ok(Group { created_at: row.ts("created_at")?, version: expected_version + 1, ..g.clone() })
    }

    /// Tombstones the group and removes its memberships.
    pub async fn delete_group(&mut self, id: GroupId, expected_version: i64) -> Result<(), StoreError> {
        self.tombstone("groups", "group", &id.to_string(), expected_version).await?;
        sqlx::query("DELETE FROM group_members WHERE group_id = $1")
            .bind(id.to_string())
            .execute(self.conn.ex())
            .await?;
        Ok(())
    }

    /// Adds `member` to the live group; false if it already was a member.
    pub async fn add_member(&mut self, group: GroupId, member: Member) -> Result<bool, StoreError> {
        if !self.conn.exists_live("groups", true, &group.to_string()).await? {
            return Err(StoreError::NotFound { kind: "group", id: group.to_string() });
        }
        let (kind, id) = member_parts(&member);
        let table = if kind == "user" { "users" } else { "service_accounts" };
        if !self.conn.exists_live(table, true, &id).await? {
            return Err(StoreError::NotFound { kind, id });
        }
        let n = sqlx::query(
            "INSERT INTO group_members (group_id, member_kind, member_id, added_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(group.to_string())
        .bind(kind)
        .bind(id)
        .bind(micros(self.now))
        .execute(self.conn.ex())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Removes `member` from the group; false if it was not a member.
    pub async fn remove_member(&mut self, group: GroupId, member: Member) -> Result<bool, StoreError> {
        let (kind, id) = member_parts(&member);
        let n = sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND member_kind = $2 AND member_id = $3")
            .bind(group.to_string())
            .bind(kind)
            .bind(id)
            .execute(self.conn.ex())
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    // ----- service accounts -----

    pub async fn insert_service_account(&mut self, s: &ServiceAccount) -> Result<(), StoreError> {
        if !self.conn.exists_live("users", true, &s.owner_id.to_string()).await? {
            return Err(StoreError::NotFound { kind: "user", id: s.owner_id.to_string() });
        }
        let q = sqlx::query(
            "INSERT INTO service_accounts (id, name, name_key, description, owner_id, status, created_at, \
             updated_at, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(s.id.to_string())
        .bind(s.name.clone())
        .bind(fold(&s.name))
        .bind(s.description.clone())
        .bind(s.owner_id.to_string())
        .bind(s.status.as_str())
        .bind(micros(s.created_at))
        .bind(micros(s.updated_at))
        .bind(s.version);
        self.conn
            .guarded(q)
            .await
            .map_err(|e| map_write_err(e, &sa_unique(&s.name), Some(("user", s.owner_id.to_string()))))?;
        Ok(())
    }

    pub async fn update_service_account(
        &mut self,
        s: &ServiceAccount,
        expected_version: i64,
    ) -> Result<ServiceAccount, StoreError> {
        let id = s.id.to_string();
        if !self.conn.exists_live("users", true, &s.owner_id.to_string()).await? {
            return Err(StoreError::NotFound { kind: "user", id: s.owner_id.to_string() });
        }
        let q = sqlx::query(
            "UPDATE service_accounts SET name = $1, name_key = $2, description = $3, owner_id = $4, status = $5, \
             updated_at = $6, version = $7 WHERE id = $8 AND version = $9 AND deleted_at IS NULL RETURNING created_at",
        )
        .bind(s.name.clone())
        .bind(fold(&s.name))
        .bind(s.description.clone())
        .bind(s.owner_id.to_string())
        .bind(s.status.as_str())
        .bind(micros(s.updated_at))
        .bind(expected_version + 1)
        .bind(id.clone())
        .bind(expected_version);
        let row = self
            .conn
            .guarded_optional(q)
            .await
            .map_err(|e| map_write_err(e, &sa_unique(&s.name), Some(("user", s.owner_id.to_string()))))?;
        let Some(row) = row else {
            return Err(self
                .conn
                .version_miss("service_accounts", true, "service_account", &id, expected_version)
                .await);
        };
        Ok(ServiceAccount { created_at: row.ts("created_at")?, version: expected_version + 1, ..s.clone() })
    }

    /// Tombstones the service account and removes its group memberships.
    pub async fn delete_service_account(
        &mut self,
        id: ServiceAccountId,
        expected_version: i64,
    ) -> Result<(), StoreError> {
        self.tombstone("service_accounts", "service_account", &id.to_string(), expected_version).await?;
        sqlx::query("DELETE FROM group_members WHERE member_kind = 'service_account' AND member_id = $1")
            .bind(id.to_string())
            .execute(self.conn.ex())
            .await?;
        Ok(())
    }
}
