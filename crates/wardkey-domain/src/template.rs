//! Role templates: birthright rules that give roles from HR attributes.

use crate::validate;
use crate::{DomainError, FieldError, HrAttribute, HrAttributes, RoleId, RoleTemplateId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MatchOp {
    /// The attribute equals one of `values`.
    In,
    /// The attribute starts with one of `values` (job-code families: `RN-`).
    Prefix,
    /// The attribute is set (to anything); `values` must be empty.
    Present,
}

/// One condition on an HR attribute. Comparison ignores case and surrounding white space,
/// because HR feeds are inconsistent about both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributeMatch {
    pub attribute: HrAttribute,
    pub op: MatchOp,
    #[serde(default)]
    pub values: Vec<String>,
}

fn fold(s: &str) -> String {
    s.trim().to_lowercase()
}

impl AttributeMatch {
    pub fn matches(&self, hr: &HrAttributes) -> bool {
        let Some(value) = hr.get(self.attribute) else { return false };
        let value = fold(&value);
        match self.op {
            MatchOp::Present => !value.is_empty(),
            MatchOp::In => self.values.iter().any(|v| fold(v) == value),
            MatchOp::Prefix => self.values.iter().any(|v| value.starts_with(&fold(v))),
        }
    }
}

/// All conditions must hold (an empty rule matches nobody: birthright access is never
/// given by accident).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateRule {
    pub all: Vec<AttributeMatch>,
}

impl TemplateRule {
    pub fn matches(&self, hr: &HrAttributes) -> bool {
        !self.all.is_empty() && self.all.iter().all(|m| m.matches(hr))
    }

    fn validate(&self, errors: &mut Vec<FieldError>) {
        if self.all.is_empty() {
            errors.push(FieldError::new("rule.all", "must have at least one condition"));
        }
        validate::list_len(errors, "rule.all", &self.all, 32);
        for (i, m) in self.all.iter().enumerate() {
            let field = format!("rule.all[{i}].values");
            match m.op {
                MatchOp::Present if !m.values.is_empty() => {
                    errors.push(FieldError::new(field, "must be empty for op present"))
                }
                MatchOp::In | MatchOp::Prefix if m.values.is_empty() => {
                    errors.push(FieldError::new(field, "must name at least one value"))
                }
                _ => {}
            }
            validate::list_len(errors, &format!("rule.all[{i}].values"), &m.values, 256);
            for (j, v) in m.values.iter().enumerate() {
                validate::non_empty_text(errors, &format!("rule.all[{i}].values[{j}]"), v, validate::MAX_SHORT);
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RoleTemplate {
    pub id: RoleTemplateId,
    pub name: String,
    pub description: Option<String>,
    pub rule: TemplateRule,
    pub role_ids: Vec<RoleId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRoleTemplate {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub rule: TemplateRule,
    pub role_ids: Vec<RoleId>,
}

impl NewRoleTemplate {
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut errors = Vec::new();
        validate::name(&mut errors, "name", &self.name);
        validate::opt_text(&mut errors, "description", &self.description, validate::MAX_TEXT);
        self.rule.validate(&mut errors);
        if self.role_ids.is_empty() {
            errors.push(FieldError::new("role_ids", "must name at least one role"));
        }
        validate::list_len(&mut errors, "role_ids", &self.role_ids, 64);
        validate::finish(errors)
    }
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleTemplateUpdate {
    pub version: i64,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub rule: Option<TemplateRule>,
    #[serde(default)]
    pub role_ids: Option<Vec<RoleId>>,
}

impl RoleTemplateUpdate {
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut errors = Vec::new();
        validate::opt_text(&mut errors, "description", &self.description, validate::MAX_TEXT);
        if let Some(rule) = &self.rule {
            rule.validate(&mut errors);
        }
        if let Some(ids) = &self.role_ids {
            if ids.is_empty() {
                errors.push(FieldError::new("role_ids", "must name at least one role"));
            }
            validate::list_len(&mut errors, "role_ids", ids, 64);
        }
        validate::finish(errors)
    }
}

/// The roles that HR attributes entitle a person to, across all templates (sorted, unique).
pub fn birthright_roles(templates: &[RoleTemplate], hr: &HrAttributes) -> Vec<RoleId> {
    let mut roles: Vec<RoleId> =
        templates.iter().filter(|t| t.rule.matches(hr)).flat_map(|t| t.role_ids.iter().copied()).collect();
    roles.sort();
    roles.dedup();
    roles
}
