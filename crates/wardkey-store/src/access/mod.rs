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

mod grants;
mod resource_types;
mod resources;
mod roles;
mod templates;

impl Conn {
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
