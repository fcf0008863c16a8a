//! Separation of duties: pairs of roles or permissions that no one may hold together.

use crate::validate;
use crate::{DomainError, FieldError, Role, RoleId, SodRuleId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One side of a separation-of-duties rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SodItem {
    /// Holding this role.
    Role { role_id: RoleId },
    /// Holding any role that allows `action` on `resource_type`.
    Permission { resource_type: String, action: String },
}

impl SodItem {
    pub fn held_by(&self, role: &Role) -> bool {
        match self {
            SodItem::Role { role_id } => role.id == *role_id,
            SodItem::Permission { resource_type, action } => role.allows(resource_type, action),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            SodItem::Role { role_id } => format!("role {role_id}"),
            SodItem::Permission { resource_type, action } => format!("permission {resource_type}:{action}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SodRule {
    pub id: SodRuleId,
    pub name: String,
    pub description: Option<String>,
    pub left: SodItem,
    pub right: SodItem,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSodRule {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub left: SodItem,
    pub right: SodItem,
}

fn validate_item(errors: &mut Vec<FieldError>, field: &str, item: &SodItem) {
    if let SodItem::Permission { resource_type, action } = item {
        validate::name(errors, &format!("{field}.resource_type"), resource_type);
        validate::name(errors, &format!("{field}.action"), action);
    }
}

impl NewSodRule {
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut errors = Vec::new();
        validate::name(&mut errors, "name", &self.name);
        validate::opt_text(&mut errors, "description", &self.description, validate::MAX_TEXT);
        validate_item(&mut errors, "left", &self.left);
        validate_item(&mut errors, "right", &self.right);
        if self.left == self.right {
            errors.push(FieldError::new("right", "must differ from left"));
        }
        validate::finish(errors)
    }
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SodRuleUpdate {
    pub version: i64,
    #[serde(default)]
    pub description: Option<String>,
}

impl SodRuleUpdate {
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut errors = Vec::new();
        validate::opt_text(&mut errors, "description", &self.description, validate::MAX_TEXT);
        validate::finish(errors)
    }
}

/// Checks that adding `added` roles to a subject that already holds `held` breaks no rule.
///
/// Only conflicts the addition creates are reported: a rule whose two sides were both met by
/// `held` alone (say, the rule was written after the grants) does not block an unrelated grant;
/// the reconciliation report finds those.
pub fn check_sod(rules: &[SodRule], held: &[Role], added: &[Role]) -> Result<(), DomainError> {
    for rule in rules {
        let in_held = |item: &SodItem| held.iter().any(|r| item.held_by(r));
        let in_added = |item: &SodItem| added.iter().any(|r| item.held_by(r));
        let left_after = in_held(&rule.left) || in_added(&rule.left);
        let right_after = in_held(&rule.right) || in_added(&rule.right);
        let already = in_held(&rule.left) && in_held(&rule.right);
        if left_after && right_after && !already {
            return Err(DomainError::SodViolation {
                rule_id: rule.id,
                rule_name: rule.name.clone(),
                left: rule.left.describe(),
                right: rule.right.describe(),
            });
        }
    }
    Ok(())
}
