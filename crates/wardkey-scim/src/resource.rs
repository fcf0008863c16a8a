//! SCIM resources as JSON: checking and normalising what a client sends (attribute names to
//! their schema spelling, booleans sent as strings, bounded sizes), the columns and rows a
//! stored resource is indexed by, and `attributes` / `excludedAttributes` projection.
//!
//! Values are kept as sent; only attribute *names* are normalised (they are case-insensitive,
//! RFC 7643 §2.1), so that a later PATCH path finds them. Unknown attributes are dropped,
//! read-only ones are ignored (RFC 7643 §7), and `password` is never stored: Wardkey keeps its
//! own credentials.

use crate::ast::{AttrPath, CompValue, CompareOp, Filter};
use crate::schema::{
    Attr, AttrType, COMMON, ENTERPRISE_ATTRS, ENTERPRISE_SCHEMA, Mutability, ResourceKind, Scope, find,
};
use serde_json::{Map, Value};

/// Longest string value accepted (characters).
pub const MAX_STRING: usize = 1024;
/// Most values of one multi-valued attribute (other than Group members).
pub const MAX_VALUES: usize = 100;
/// Most members one Group request may name.
pub const MAX_MEMBERS: usize = 10_000;
/// Most operations in one PATCH request.
pub const MAX_PATCH_OPS: usize = 1_000;

/// A SCIM error (RFC 7644 §3.12): HTTP status, `scimType` when one applies, and a detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct ScimError {
    pub status: u16,
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl ScimError {
    pub fn new(status: u16, scim_type: Option<&'static str>, detail: impl Into<String>) -> ScimError {
        ScimError { status, scim_type, detail: detail.into() }
    }
    pub fn bad(scim_type: &'static str, detail: impl Into<String>) -> ScimError {
        ScimError::new(400, Some(scim_type), detail)
    }
    pub fn invalid_value(detail: impl Into<String>) -> ScimError {
        ScimError::bad("invalidValue", detail)
    }
    pub fn invalid_syntax(detail: impl Into<String>) -> ScimError {
        ScimError::bad("invalidSyntax", detail)
    }
    pub fn invalid_path(detail: impl Into<String>) -> ScimError {
        ScimError::bad("invalidPath", detail)
    }
    pub fn invalid_filter(detail: impl Into<String>) -> ScimError {
        ScimError::bad("invalidFilter", detail)
    }
    pub fn no_target(detail: impl Into<String>) -> ScimError {
        ScimError::bad("noTarget", detail)
    }
    pub fn mutability(detail: impl Into<String>) -> ScimError {
        ScimError::bad("mutability", detail)
    }
    /// The JSON body of the error response.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("schemas".into(), Value::Array(vec![Value::String(crate::schema::ERROR.into())]));
        m.insert("status".into(), Value::String(self.status.to_string()));
        if let Some(t) = self.scim_type {
            m.insert("scimType".into(), Value::String(t.into()));
        }
        m.insert("detail".into(), Value::String(self.detail.clone()));
        Value::Object(m)
    }
}

impl From<crate::ScimFilterError> for ScimError {
    fn from(e: crate::ScimFilterError) -> Self {
        ScimError::bad(e.scim_type(), e.to_string())
    }
}

/// Case-insensitive key lookup in a JSON object.
pub fn get_ci<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

/// Lower-case comparison key, as the store folds names.
pub fn fold(s: &str) -> String {
    s.to_lowercase()
}

fn clip(s: &str) -> String {
    s.chars().take(60).collect()
}

/// Checks and normalises a full resource (POST, PUT, or the result of a PATCH).
pub fn normalize(kind: ResourceKind, input: &Value) -> Result<Value, ScimError> {
    let obj = input.as_object().ok_or_else(|| ScimError::invalid_syntax("the request body must be a JSON object"))?;
    let schemas = get_ci(obj, "schemas").ok_or_else(|| {
        ScimError::invalid_syntax(format!("\"schemas\" is missing; it must list {}", kind.core_schema()))
    })?;
    let schemas =
        schemas.as_array().ok_or_else(|| ScimError::invalid_syntax("\"schemas\" must be an array of schema URNs"))?;
    let mut has_core = false;
    for s in schemas {
        let s = s.as_str().ok_or_else(|| ScimError::invalid_syntax("\"schemas\" must be an array of schema URNs"))?;
        if s.eq_ignore_ascii_case(kind.core_schema()) {
            has_core = true;
        } else if !kind.extensions().iter().any(|e| e.eq_ignore_ascii_case(s)) {
            return Err(ScimError::invalid_value(format!(
                "schema {:?} is not one of this resource type's schemas",
                clip(s)
            )));
        }
    }
    if !has_core {
        return Err(ScimError::invalid_value(format!("\"schemas\" must include {}", kind.core_schema())));
    }
    let mut out = Map::new();
    let mut out_schemas = vec![Value::String(kind.core_schema().into())];
    for (key, value) in obj {
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        if let Some(ext) = kind.extensions().iter().find(|e| e.eq_ignore_ascii_case(key)) {
            if value.is_null() {
                continue;
            }
            let inner = value
                .as_object()
                .ok_or_else(|| ScimError::invalid_value(format!("{ext} must be an object of its attributes")))?;
            let mut ext_out = Map::new();
            for (k, v) in inner {
                let Some(attr) = find(ENTERPRISE_ATTRS, k) else { continue };
                if let Some(v) = normalize_value(attr, v, k)? {
                    ext_out.insert(attr.name.into(), v);
                }
            }
            if !ext_out.is_empty() {
                out.insert((*ext).into(), Value::Object(ext_out));
                out_schemas.push(Value::String((*ext).into()));
            }
            continue;
        }
        let attr = match find(COMMON, key) {
            Some(a) => a,
            None => match find(kind.core_attrs(), key) {
                Some(a) => a,
                None => continue, // unknown attributes are ignored
            },
        };
        if matches!(attr.mutability, Mutability::ReadOnly | Mutability::WriteOnly) {
            continue;
        }
        if let Some(v) = normalize_value(attr, value, attr.name)? {
            out.insert(attr.name.into(), v);
        }
    }
    out.insert("schemas".into(), Value::Array(out_schemas));
    Ok(Value::Object(out))
}

/// A value for `attr`, normalised; `None` when it is null or empty (unassigned).
pub fn normalize_value(attr: &Attr, v: &Value, path: &str) -> Result<Option<Value>, ScimError> {
    if v.is_null() {
        return Ok(None);
    }
    if attr.multi {
        let items: Vec<&Value> = match v {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        let max = if attr.name == "members" { MAX_MEMBERS } else { MAX_VALUES };
        if items.len() > max {
            return Err(ScimError::invalid_value(format!("{path}: at most {max} values are accepted")));
        }
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(n) = normalize_single(attr, item, path)?
                && !out.contains(&n)
            {
                out.push(n);
            }
        }
        return Ok(if out.is_empty() { None } else { Some(Value::Array(out)) });
    }
    normalize_single(attr, v, path)
}

fn normalize_single(attr: &Attr, v: &Value, path: &str) -> Result<Option<Value>, ScimError> {
    let wrong = |what: &str| ScimError::invalid_value(format!("{path}: expected {what}"));
    Ok(Some(match attr.ty {
        AttrType::String | AttrType::Reference | AttrType::Binary => match v {
            Value::Null => return Ok(None),
            Value::String(s) => {
                check_string(s, path)?;
                Value::String(s.clone())
            }
            Value::Number(n) => Value::String(n.to_string()),
            _ => return Err(wrong("a string")),
        },
        AttrType::Boolean => match v {
            Value::Null => return Ok(None),
            Value::Bool(b) => Value::Bool(*b),
            // Microsoft Entra ID sends "True" / "False".
            Value::String(s) if s.eq_ignore_ascii_case("true") => Value::Bool(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Value::Bool(false),
            _ => return Err(wrong("a boolean")),
        },
        AttrType::DateTime => match v {
            Value::Null => return Ok(None),
            Value::String(s) if chrono::DateTime::parse_from_rfc3339(s).is_ok() => Value::String(s.clone()),
            _ => return Err(wrong("an RFC 3339 date-time string")),
        },
        AttrType::Integer => match v {
            Value::Null => return Ok(None),
            Value::Number(n) if n.is_i64() => v.clone(),
            _ => return Err(wrong("an integer")),
        },
        AttrType::Decimal => match v {
            Value::Null => return Ok(None),
            Value::Number(_) => v.clone(),
            _ => return Err(wrong("a number")),
        },
        AttrType::Complex => {
            let obj = match v {
                Value::Null => return Ok(None),
                Value::Object(o) => o,
                // A bare value for a multi-valued attribute: {"value": ...}.
                Value::String(_) | Value::Number(_) if attr.multi => {
                    let mut m = Map::new();
                    m.insert("value".into(), v.clone());
                    return normalize_single(attr, &Value::Object(m), path);
                }
                _ => return Err(wrong("an object")),
            };
            let mut out = Map::new();
            for (k, sv) in obj {
                let Some(sub) = find(attr.sub, k) else { continue };
                if sub.mutability == Mutability::ReadOnly {
                    continue;
                }
                if let Some(n) = normalize_single(sub, sv, &format!("{path}.{}", sub.name))? {
                    out.insert(sub.name.into(), n);
                }
            }
            if out.is_empty() {
                return Ok(None);
            }
            Value::Object(out)
        }
    }))
}

fn check_string(s: &str, path: &str) -> Result<(), ScimError> {
    if s.chars().count() > MAX_STRING {
        return Err(ScimError::invalid_value(format!("{path}: at most {MAX_STRING} characters are accepted")));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ScimError::invalid_value(format!("{path}: control characters are not accepted")));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// What the store indexes

/// A single-valued attribute stored as a column.
#[derive(Debug, Clone, Copy)]
pub struct ColumnMap {
    pub scope: Scope,
    pub attr: &'static str,
    pub sub: Option<&'static str>,
    pub column: &'static str,
}

const fn col(scope: Scope, attr: &'static str, sub: Option<&'static str>, column: &'static str) -> ColumnMap {
    ColumnMap { scope, attr, sub, column }
}

/// Columns of `scim_users` holding lower-cased keys of single-valued, caseExact=false strings.
pub const USER_KEY_COLUMNS: &[ColumnMap] = &[
    col(Scope::Core, "displayName", None, "display_name_key"),
    col(Scope::Core, "name", Some("formatted"), "name_formatted_key"),
    col(Scope::Core, "name", Some("familyName"), "family_name_key"),
    col(Scope::Core, "name", Some("givenName"), "given_name_key"),
    col(Scope::Core, "name", Some("middleName"), "middle_name_key"),
    col(Scope::Core, "name", Some("honorificPrefix"), "honorific_prefix_key"),
    col(Scope::Core, "name", Some("honorificSuffix"), "honorific_suffix_key"),
    col(Scope::Core, "nickName", None, "nick_name_key"),
    col(Scope::Core, "profileUrl", None, "profile_url_key"),
    col(Scope::Core, "title", None, "title_key"),
    col(Scope::Core, "userType", None, "user_type_key"),
    col(Scope::Core, "preferredLanguage", None, "preferred_language_key"),
    col(Scope::Core, "locale", None, "locale_key"),
    col(Scope::Core, "timezone", None, "timezone_key"),
    col(Scope::Enterprise, "employeeNumber", None, "employee_number_key"),
    col(Scope::Enterprise, "costCenter", None, "cost_center_key"),
    col(Scope::Enterprise, "organization", None, "organization_key"),
    col(Scope::Enterprise, "division", None, "division_key"),
    col(Scope::Enterprise, "department", None, "department_key"),
];

/// Multi-valued User attributes stored as rows of `scim_values`.
pub const USER_VALUE_ATTRS: &[&str] =
    &["emails", "phoneNumbers", "ims", "photos", "addresses", "entitlements", "roles", "x509Certificates"];

/// One value of a multi-valued attribute, as stored in `scim_values`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueRow {
    /// Lower-cased attribute name (`emails`).
    pub attr: String,
    pub idx: i64,
    pub value: Option<String>,
    pub value_key: Option<String>,
    pub type_key: Option<String>,
    pub display_key: Option<String>,
    pub primary: bool,
}

/// What the store keeps beside a User's raw JSON.
#[derive(Debug, Clone, Default)]
pub struct UserIndex {
    pub external_id: Option<String>,
    /// (column, lower-cased value) for every [`USER_KEY_COLUMNS`] entry.
    pub keys: Vec<(&'static str, Option<String>)>,
    pub manager_value: Option<String>,
    pub values: Vec<ValueRow>,
}

/// The value at a column mapping in a normalised resource.
pub fn value_at<'a>(resource: &'a Value, scope: Scope, attr: &str, sub: Option<&str>) -> Option<&'a Value> {
    let obj = resource.as_object()?;
    let container = match scope {
        Scope::Enterprise => get_ci(obj, ENTERPRISE_SCHEMA)?.as_object()?,
        _ => obj,
    };
    let v = get_ci(container, attr)?;
    match sub {
        None => Some(v),
        Some(sub) => get_ci(v.as_object()?, sub),
    }
}

fn str_at(resource: &Value, scope: Scope, attr: &str, sub: Option<&str>) -> Option<String> {
    value_at(resource, scope, attr, sub).and_then(Value::as_str).map(str::to_owned)
}

pub fn user_index(resource: &Value) -> UserIndex {
    let keys = USER_KEY_COLUMNS
        .iter()
        .map(|c| (c.column, str_at(resource, c.scope, c.attr, c.sub).map(|s| fold(&s))))
        .collect();
    let mut values = Vec::new();
    if let Some(obj) = resource.as_object() {
        for name in USER_VALUE_ATTRS {
            let Some(Value::Array(items)) = get_ci(obj, name) else { continue };
            for (i, item) in items.iter().enumerate() {
                let Some(o) = item.as_object() else { continue };
                let text = |k: &str| get_ci(o, k).and_then(Value::as_str).map(str::to_owned);
                let value = if *name == "addresses" { text("formatted") } else { text("value") };
                values.push(ValueRow {
                    attr: name.to_ascii_lowercase(),
                    idx: i as i64,
                    value_key: value.as_deref().map(fold),
                    value,
                    type_key: text("type").map(|s| fold(&s)),
                    display_key: text("display").map(|s| fold(&s)),
                    primary: get_ci(o, "primary").and_then(Value::as_bool).unwrap_or(false),
                });
            }
        }
    }
    UserIndex {
        external_id: str_at(resource, Scope::Common, "externalId", None),
        keys,
        manager_value: str_at(resource, Scope::Enterprise, "manager", Some("value")),
        values,
    }
}

/// The directory fields a User maps to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFields {
    pub user_name: String,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub active: Option<bool>,
    pub title: Option<String>,
    pub user_type: Option<String>,
    pub employee_number: Option<String>,
    pub department: Option<String>,
    pub manager: Option<String>,
}

pub fn user_fields(resource: &Value) -> Result<UserFields, ScimError> {
    let user_name = str_at(resource, Scope::Core, "userName", None)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ScimError::invalid_value("userName is required"))?;
    let display_name = str_at(resource, Scope::Core, "displayName", None)
        .or_else(|| str_at(resource, Scope::Core, "name", Some("formatted")))
        .or_else(|| {
            let given = str_at(resource, Scope::Core, "name", Some("givenName"));
            let family = str_at(resource, Scope::Core, "name", Some("familyName"));
            match (given, family) {
                (Some(g), Some(f)) => Some(format!("{g} {f}")),
                (g, f) => g.or(f),
            }
        });
    Ok(UserFields {
        user_name,
        display_name,
        email: primary_email(resource),
        active: value_at(resource, Scope::Core, "active", None).and_then(Value::as_bool),
        title: str_at(resource, Scope::Core, "title", None),
        user_type: str_at(resource, Scope::Core, "userType", None),
        employee_number: str_at(resource, Scope::Enterprise, "employeeNumber", None),
        department: str_at(resource, Scope::Enterprise, "department", None),
        manager: str_at(resource, Scope::Enterprise, "manager", Some("value")),
    })
}

/// The primary email, else the work one, else the first.
pub fn primary_email(resource: &Value) -> Option<String> {
    let items = value_at(resource, Scope::Core, "emails", None)?.as_array()?;
    let value = |o: &Value| o.get("value").and_then(Value::as_str).map(str::to_owned);
    items
        .iter()
        .find(|e| e.get("primary").and_then(Value::as_bool) == Some(true))
        .and_then(value)
        .or_else(|| {
            items
                .iter()
                .find(|e| e.get("type").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case("work")))
                .and_then(value)
        })
        .or_else(|| items.iter().find_map(value))
}

/// Member ids named by a normalised Group.
pub fn group_members(resource: &Value) -> Vec<String> {
    let Some(Value::Array(items)) = value_at(resource, Scope::Core, "members", None) else { return Vec::new() };
    let mut out: Vec<String> = Vec::new();
    for i in items {
        if let Some(v) = i.get("value").and_then(Value::as_str)
            && !out.iter().any(|o| o == v)
        {
            out.push(v.to_owned());
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// attributes / excludedAttributes

/// Parses a comma-separated attribute list (`userName,name.givenName,urn:...:User:department`).
pub fn parse_attr_list(kind: ResourceKind, list: &str) -> Result<Vec<AttrPath>, ScimError> {
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let path = match crate::parse_patch_path(part)? {
            crate::PatchPath::Attr(p) => p,
            crate::PatchPath::ValuePath { .. } => {
                return Err(ScimError::invalid_value(format!("{:?} is not an attribute name", clip(part))));
            }
        };
        if crate::schema::resolve(kind, &path).is_none() && !is_schema_urn(kind, part) {
            return Err(ScimError::invalid_value(format!("unknown attribute {:?}", clip(part))));
        }
        out.push(path);
        if out.len() > 100 {
            return Err(ScimError::invalid_value("at most 100 attributes may be named"));
        }
    }
    Ok(out)
}

fn is_schema_urn(kind: ResourceKind, s: &str) -> bool {
    kind.extensions().iter().any(|e| e.eq_ignore_ascii_case(s))
}

/// Applies `attributes` (keep only these, plus id, schemas and meta) or `excludedAttributes`.
pub fn project(kind: ResourceKind, resource: Value, attributes: &[AttrPath], excluded: &[AttrPath]) -> Value {
    let Value::Object(mut obj) = resource else { return resource };
    if !attributes.is_empty() {
        let mut out = Map::new();
        for keep in ["id", "schemas", "meta"] {
            if let Some(v) = obj.get(keep) {
                out.insert(keep.into(), v.clone());
            }
        }
        for p in attributes {
            // A whole extension named by its URN.
            let whole = format!(
                "{}{}",
                p.schema.as_ref().map(|s| format!("{}:", s.as_str())).unwrap_or_default(),
                p.attr.as_str()
            );
            if let Some(ext) = kind.extensions().iter().find(|e| e.eq_ignore_ascii_case(&whole)) {
                if let Some(v) = obj.get(*ext) {
                    out.insert((*ext).into(), v.clone());
                }
                continue;
            }
            let Some(r) = crate::schema::resolve(kind, p) else { continue };
            let (src, dst) = match r.scope {
                Scope::Enterprise => {
                    let Some(Value::Object(src)) = obj.get(ENTERPRISE_SCHEMA) else { continue };
                    let dst = out.entry(ENTERPRISE_SCHEMA).or_insert_with(|| Value::Object(Map::new()));
                    let Value::Object(dst) = dst else { continue };
                    (src, dst)
                }
                _ => (&obj, &mut out),
            };
            let Some(v) = src.get(r.attr.name) else { continue };
            match r.sub {
                None => {
                    dst.insert(r.attr.name.into(), v.clone());
                }
                Some(sub) => {
                    let picked = match v {
                        Value::Object(o) => o.get(sub.name).map(|x| {
                            let mut m = Map::new();
                            m.insert(sub.name.into(), x.clone());
                            Value::Object(m)
                        }),
                        Value::Array(items) => Some(Value::Array(
                            items
                                .iter()
                                .filter_map(|i| {
                                    i.get(sub.name).map(|x| {
                                        let mut m = Map::new();
                                        m.insert(sub.name.into(), x.clone());
                                        Value::Object(m)
                                    })
                                })
                                .collect(),
                        )),
                        _ => None,
                    };
                    if let Some(picked) = picked {
                        merge_into(dst, r.attr.name, picked);
                    }
                }
            }
        }
        obj = out;
    }
    for p in excluded {
        let whole =
            format!("{}{}", p.schema.as_ref().map(|s| format!("{}:", s.as_str())).unwrap_or_default(), p.attr.as_str());
        if let Some(ext) = kind.extensions().iter().find(|e| e.eq_ignore_ascii_case(&whole)) {
            obj.remove(*ext);
            continue;
        }
        let Some(r) = crate::schema::resolve(kind, p) else { continue };
        if r.attr.name == "id" || r.attr.returned == crate::schema::Returned::Always {
            continue;
        }
        let container = match r.scope {
            Scope::Enterprise => match obj.get_mut(ENTERPRISE_SCHEMA) {
                Some(Value::Object(o)) => o,
                _ => continue,
            },
            _ => &mut obj,
        };
        match r.sub {
            None => {
                container.remove(r.attr.name);
            }
            Some(sub) => match container.get_mut(r.attr.name) {
                Some(Value::Object(o)) => {
                    o.remove(sub.name);
                }
                Some(Value::Array(items)) => {
                    for i in items {
                        if let Value::Object(o) = i {
                            o.remove(sub.name);
                        }
                    }
                }
                _ => {}
            },
        }
    }
    Value::Object(obj)
}

fn merge_into(dst: &mut Map<String, Value>, name: &str, picked: Value) {
    match (dst.get_mut(name), picked) {
        (Some(Value::Object(d)), Value::Object(p)) => d.extend(p),
        (_, picked) => {
            dst.insert(name.into(), picked);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Matching one value of a multi-valued attribute (PATCH value paths)

/// Whether the complex value `elem` (of attribute `attr`) matches `filter`, whose attribute
/// paths name sub-attributes. Unknown sub-attributes are an `invalidFilter` error.
pub fn element_matches(attr: &'static Attr, filter: &Filter, elem: &Value) -> Result<bool, ScimError> {
    match filter {
        Filter::And(..) => {
            for f in filter.chain_operands() {
                if !element_matches(attr, f, elem)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Filter::Or(..) => {
            for f in filter.chain_operands() {
                if element_matches(attr, f, elem)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Filter::Not(inner) => Ok(!element_matches(attr, inner, elem)?),
        Filter::ValuePath { .. } => Err(ScimError::invalid_filter("value paths cannot be nested")),
        Filter::Present { path } => {
            let sub = sub_of(attr, path)?;
            Ok(elem.get(sub.name).is_some_and(|v| !v.is_null() && v != &Value::String(String::new())))
        }
        Filter::Compare { path, op, value } => {
            let sub = sub_of(attr, path)?;
            Ok(compare_json(sub, elem.get(sub.name), *op, value))
        }
    }
}

fn sub_of(attr: &'static Attr, path: &AttrPath) -> Result<&'static Attr, ScimError> {
    // `value`, or `emails.value` spelled in full inside the brackets.
    let name = match &path.sub_attr {
        Some(sub) if path.attr.eq_ignore_case(attr.name) => sub.as_str(),
        Some(_) => return Err(ScimError::invalid_filter(format!("{path} is not a sub-attribute of {}", attr.name))),
        None => path.attr.as_str(),
    };
    find(attr.sub, name)
        .ok_or_else(|| ScimError::invalid_filter(format!("{} has no sub-attribute {name:?}", attr.name)))
}

/// The RFC 7644 operators over one JSON value.
pub fn compare_json(attr: &Attr, actual: Option<&Value>, op: CompareOp, expected: &CompValue) -> bool {
    let actual = actual.filter(|v| !v.is_null());
    match (actual, expected) {
        (None, CompValue::Null) => op == CompareOp::Eq,
        (None, _) => op == CompareOp::Ne,
        (Some(_), CompValue::Null) => op == CompareOp::Ne,
        (Some(Value::Bool(a)), CompValue::Bool(b)) => match op {
            CompareOp::Eq => a == b,
            CompareOp::Ne => a != b,
            _ => false,
        },
        (Some(Value::String(a)), CompValue::String(b)) => {
            let (a, b) = if attr.case_exact { (a.clone(), b.clone()) } else { (fold(a), fold(b)) };
            match op {
                CompareOp::Eq => a == b,
                CompareOp::Ne => a != b,
                CompareOp::Co => a.contains(&b),
                CompareOp::Sw => a.starts_with(&b),
                CompareOp::Ew => a.ends_with(&b),
                CompareOp::Gt => a > b,
                CompareOp::Lt => a < b,
                CompareOp::Ge => a >= b,
                CompareOp::Le => a <= b,
            }
        }
        (Some(Value::Number(a)), CompValue::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap_or(f64::NAN), b.as_f64());
            match op {
                CompareOp::Eq => a == b,
                CompareOp::Ne => a != b,
                CompareOp::Gt => a > b,
                CompareOp::Lt => a < b,
                CompareOp::Ge => a >= b,
                CompareOp::Le => a <= b,
                _ => false,
            }
        }
        _ => op == CompareOp::Ne,
    }
}
