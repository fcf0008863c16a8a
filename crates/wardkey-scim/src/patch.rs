//! PATCH (RFC 7644 §3.5.2) applied to a resource's JSON, with the dialects of the large
//! clients: operation names in any case (Entra's `Replace`), a path-less `add`/`replace` whose
//! value keys are themselves paths (`name.givenName`, `urn:...:User:department`), removal of
//! members by a value array, and `add`/`replace` through a value path that matches nothing
//! creating the value when the filter is a plain equality (`emails[type eq "work"].value`).
//!
//! The caller loads the current representation, applies every operation here in memory, then
//! normalises and stores the result in one write job: a request is applied entirely or not at all.

use crate::ast::{AttrPath, CompValue, CompareOp, Filter, PatchPath};
use crate::resource::{MAX_PATCH_OPS, ScimError, element_matches, get_ci};
use crate::schema::{Attr, ENTERPRISE_SCHEMA, Mutability, PATCH_OP, ResourceKind, Scope, find, resolve};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Remove,
    Replace,
}

#[derive(Debug, Clone)]
pub struct PatchOperation {
    pub op: OpKind,
    pub path: Option<PatchPath>,
    pub value: Option<Value>,
}

/// Parses a PatchOp request body.
pub fn parse_patch(body: &Value) -> Result<Vec<PatchOperation>, ScimError> {
    let obj = body.as_object().ok_or_else(|| ScimError::invalid_syntax("the request body must be a JSON object"))?;
    let schemas = get_ci(obj, "schemas").and_then(Value::as_array);
    if !schemas.is_some_and(|s| s.iter().any(|u| u.as_str().is_some_and(|u| u.eq_ignore_ascii_case(PATCH_OP)))) {
        return Err(ScimError::invalid_syntax(format!("\"schemas\" must be [\"{PATCH_OP}\"]")));
    }
    let ops = get_ci(obj, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::invalid_syntax("\"Operations\" must be an array of operations"))?;
    if ops.is_empty() {
        return Err(ScimError::invalid_syntax("\"Operations\" is empty"));
    }
    if ops.len() > MAX_PATCH_OPS {
        return Err(ScimError::new(400, Some("tooMany"), format!("at most {MAX_PATCH_OPS} operations per request")));
    }
    let mut out = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let o = op.as_object().ok_or_else(|| ScimError::invalid_syntax(format!("operation {i} is not an object")))?;
        let name = get_ci(o, "op").and_then(Value::as_str).unwrap_or_default();
        let kind = if name.eq_ignore_ascii_case("add") {
            OpKind::Add
        } else if name.eq_ignore_ascii_case("remove") {
            OpKind::Remove
        } else if name.eq_ignore_ascii_case("replace") {
            OpKind::Replace
        } else {
            return Err(ScimError::invalid_syntax(format!("operation {i}: \"op\" must be add, remove or replace")));
        };
        let path = match get_ci(o, "path") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) if p.trim().is_empty() => None,
            Some(Value::String(p)) => Some(crate::parse_patch_path(p)?),
            Some(_) => return Err(ScimError::invalid_path(format!("operation {i}: \"path\" must be a string"))),
        };
        let value = get_ci(o, "value").cloned();
        if kind == OpKind::Remove && path.is_none() {
            return Err(ScimError::no_target(format!("operation {i}: remove needs a \"path\"")));
        }
        if kind != OpKind::Remove && value.is_none() {
            return Err(ScimError::invalid_syntax(format!("operation {i}: {name} needs a \"value\"")));
        }
        out.push(PatchOperation { op: kind, path, value });
    }
    Ok(out)
}

/// Applies the operations, in order, to `resource` (a normalised resource object).
pub fn apply(kind: ResourceKind, resource: &mut Value, ops: &[PatchOperation]) -> Result<(), ScimError> {
    let obj = resource.as_object_mut().ok_or_else(|| ScimError::invalid_syntax("the resource is not an object"))?;
    let before: Vec<bool> = must_stay_assigned(kind).iter().map(|n| assigned(obj, n)).collect();
    for op in ops {
        match &op.path {
            None => {
                let Some(Value::Object(values)) = &op.value else {
                    return Err(ScimError::invalid_value("an operation without a path needs an object value"));
                };
                for (key, v) in values {
                    if key.eq_ignore_ascii_case("schemas") {
                        continue;
                    }
                    if let Some(ext) = kind.extensions().iter().find(|e| e.eq_ignore_ascii_case(key)) {
                        let Value::Object(inner) = v else {
                            return Err(ScimError::invalid_value(format!("{ext} must be an object")));
                        };
                        for (k2, v2) in inner {
                            let mut p = AttrPath::new(k2.as_str());
                            p.schema = Some(crate::Name::new(*ext));
                            apply_attr(kind, obj, op.op, &p, Some(v2), true)?;
                        }
                        continue;
                    }
                    // Entra: keys are paths ("name.givenName", "urn:...:User:department").
                    match crate::parse_patch_path(key) {
                        Ok(PatchPath::Attr(p)) => apply_attr(kind, obj, op.op, &p, Some(v), true)?,
                        Ok(PatchPath::ValuePath { path, filter, sub_attr }) => apply_value_path(
                            kind,
                            obj,
                            op.op,
                            &path,
                            &filter,
                            sub_attr.as_ref().map(|s| s.as_str()),
                            Some(v),
                        )?,
                        Err(_) => {} // not an attribute name: ignored like any unknown attribute
                    }
                }
            }
            Some(PatchPath::Attr(p)) => match extension_named(kind, p) {
                Some(ext) => apply_extension(kind, obj, ext, op.op, op.value.as_ref())?,
                None => apply_attr(kind, obj, op.op, p, op.value.as_ref(), false)?,
            },
            Some(PatchPath::ValuePath { path, filter, sub_attr }) => apply_value_path(
                kind,
                obj,
                op.op,
                path,
                filter,
                sub_attr.as_ref().map(|s| s.as_str()),
                op.value.as_ref(),
            )?,
        }
    }
    check_still_assigned(kind, &before, obj)
}

/// Attributes a PATCH may change but never leave unassigned. RFC 7644 §3.5.2: an attribute
/// that "is removed or becomes unassigned and is defined as a required attribute" is a
/// `mutability` error. `active` is not required by RFC 7643, but Wardkey's directory has no
/// "unknown" status: removing it used to be dropped silently, leaving the user as it was while
/// the client believed the value gone. Deactivating is `replace active false`.
fn must_stay_assigned(kind: ResourceKind) -> &'static [&'static str] {
    match kind {
        ResourceKind::User => &["userName", "active"],
        ResourceKind::Group => &["displayName"],
    }
}

fn assigned(obj: &Map<String, Value>, name: &str) -> bool {
    get_ci(obj, name).is_some_and(|v| !v.is_null() && v.as_str().is_none_or(|s| !s.is_empty()))
}

fn check_still_assigned(kind: ResourceKind, before: &[bool], obj: &Map<String, Value>) -> Result<(), ScimError> {
    for (name, was) in must_stay_assigned(kind).iter().zip(before) {
        if *was && !assigned(obj, name) {
            let hint = if *name == "active" { "; replace it with false to deactivate the user" } else { "" };
            return Err(ScimError::mutability(format!("{name} cannot be removed or left unassigned{hint}")));
        }
    }
    Ok(())
}

/// The extension a path names as a whole (`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User`),
/// which the parser reads as attribute `User` of schema `urn:...:2.0` (see the crate docs).
fn extension_named(kind: ResourceKind, path: &AttrPath) -> Option<&'static str> {
    if path.sub_attr.is_some() {
        return None;
    }
    let schema = path.schema.as_ref()?;
    let whole = format!("{}:{}", schema.as_str(), path.attr.as_str());
    kind.extensions().iter().find(|e| e.eq_ignore_ascii_case(&whole)).copied()
}

/// An operation on a whole extension (RFC 7644 §3.5.2, the extension treated as a complex
/// attribute whose sub-attributes are the extension's attributes):
/// - `add`: each attribute of the value is added (set, for these single-valued attributes);
/// - `replace`: the same; attributes the value does not name are left unchanged (§3.5.2.3:
///   "Sub-attributes that are not specified in the value parameter are left unchanged"), and
///   one set to `null` is removed;
/// - `remove`: the extension and every attribute in it are removed.
fn apply_extension(
    kind: ResourceKind,
    obj: &mut Map<String, Value>,
    ext: &'static str,
    op: OpKind,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    if op == OpKind::Remove {
        obj.retain(|k, _| !k.eq_ignore_ascii_case(ext));
        return Ok(());
    }
    let Some(Value::Object(values)) = value else {
        return Err(ScimError::invalid_value(format!(
            "{ext}: the value must be an object of the extension's attributes"
        )));
    };
    for (name, v) in values {
        if name.eq_ignore_ascii_case("schemas") {
            continue;
        }
        let mut p = AttrPath::new(name.as_str());
        p.schema = Some(crate::Name::new(ext));
        // Names of this extension only: a core attribute sent here is an error, not a silent
        // write elsewhere.
        if resolve(kind, &p).is_none_or(|r| r.scope != Scope::Enterprise) {
            return Err(ScimError::invalid_path(format!(
                "{ext} has no attribute {:?}",
                name.chars().take(60).collect::<String>()
            )));
        }
        apply_attr(kind, obj, op, &p, Some(v), false)?;
    }
    Ok(())
}

fn container(obj: &mut Map<String, Value>, scope: Scope, create: bool) -> Option<&mut Map<String, Value>> {
    if scope != Scope::Enterprise {
        return Some(obj);
    }
    let key = obj.keys().find(|k| k.eq_ignore_ascii_case(ENTERPRISE_SCHEMA)).cloned();
    let key = match key {
        Some(k) => k,
        None if create => {
            obj.insert(ENTERPRISE_SCHEMA.into(), Value::Object(Map::new()));
            ENTERPRISE_SCHEMA.into()
        }
        None => return None,
    };
    match obj.get_mut(&key) {
        Some(Value::Object(o)) => Some(o),
        Some(other) => {
            *other = Value::Object(Map::new());
            other.as_object_mut()
        }
        None => None,
    }
}

fn as_items(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

/// Merges the keys of `value` (an object) into `target`, with sub-attribute names in their
/// schema spelling.
fn merge_complex(attr: &Attr, target: &mut Map<String, Value>, value: &Value) -> Result<(), ScimError> {
    let Value::Object(v) = value else {
        return Err(ScimError::invalid_value(format!("{}: expected an object", attr.name)));
    };
    for (k, sv) in v {
        let Some(sub) = find(attr.sub, k) else { continue };
        target.retain(|existing, _| !existing.eq_ignore_ascii_case(sub.name));
        target.insert(sub.name.into(), sv.clone());
    }
    Ok(())
}

fn same_value(attr: &Attr, a: &Value, b: &Value) -> bool {
    let key = |v: &Value| -> Option<String> {
        let s = match v {
            Value::Object(o) => get_ci(o, "value")?.as_str()?.to_owned(),
            Value::String(s) => s.clone(),
            _ => return None,
        };
        let exact = find(attr.sub, "value").is_some_and(|s| s.case_exact);
        Some(if exact { s } else { s.to_lowercase() })
    };
    match (key(a), key(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn apply_attr(
    kind: ResourceKind,
    obj: &mut Map<String, Value>,
    op: OpKind,
    path: &AttrPath,
    value: Option<&Value>,
    pathless: bool,
) -> Result<(), ScimError> {
    let Some(r) = resolve(kind, path) else {
        if pathless {
            return Ok(());
        }
        return Err(ScimError::invalid_path(format!("{path} is not an attribute of {}", kind.name())));
    };
    let leaf = r.leaf();
    if r.attr.mutability == Mutability::ReadOnly || leaf.mutability == Mutability::ReadOnly {
        if pathless {
            return Ok(()); // read-only values sent along are ignored, as on PUT
        }
        return Err(ScimError::mutability(format!("{path} is read-only")));
    }
    if r.attr.mutability == Mutability::WriteOnly {
        return Ok(()); // password: never stored
    }
    let create = op != OpKind::Remove;
    let Some(target) = container(obj, r.scope, create) else { return Ok(()) };
    let name = r.attr.name;
    let existing_key = target.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned();
    if let Some(k) = &existing_key
        && k != name
        && let Some(v) = target.remove(k)
    {
        target.insert(name.into(), v);
    }
    match (op, r.sub) {
        (OpKind::Remove, None) => {
            match value.filter(|v| !v.is_null()) {
                // Entra: {"op":"Remove","path":"members","value":[{"value":"<id>"}]}
                Some(v) if r.attr.multi => {
                    let gone = as_items(v);
                    if let Some(Value::Array(items)) = target.get_mut(name) {
                        items.retain(|i| !gone.iter().any(|g| same_value(r.attr, i, g)));
                    }
                }
                _ => {
                    target.remove(name);
                }
            }
        }
        (OpKind::Remove, Some(sub)) => match target.get_mut(name) {
            Some(Value::Object(o)) => {
                o.retain(|k, _| !k.eq_ignore_ascii_case(sub.name));
            }
            Some(Value::Array(items)) => {
                for i in items {
                    if let Value::Object(o) = i {
                        o.retain(|k, _| !k.eq_ignore_ascii_case(sub.name));
                    }
                }
            }
            _ => {}
        },
        (_, None) => {
            let Some(v) = value else { return Err(ScimError::invalid_syntax(format!("{path}: a value is required"))) };
            if r.attr.multi {
                let new = as_items(v);
                if op == OpKind::Replace {
                    target.insert(name.into(), Value::Array(new));
                } else {
                    let entry = target.entry(name).or_insert_with(|| Value::Array(Vec::new()));
                    if !entry.is_array() {
                        *entry = Value::Array(Vec::new());
                    }
                    if let Value::Array(items) = entry {
                        for n in new {
                            if !items.iter().any(|i| same_value(r.attr, i, &n)) {
                                items.push(n);
                            }
                        }
                    }
                }
            } else if r.attr.ty == crate::schema::AttrType::Complex && v.is_object() {
                let entry = target.entry(name).or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                if let Value::Object(o) = entry {
                    merge_complex(r.attr, o, v)?;
                }
            } else {
                target.insert(name.into(), v.clone());
            }
        }
        (_, Some(sub)) => {
            let Some(v) = value else { return Err(ScimError::invalid_syntax(format!("{path}: a value is required"))) };
            let entry = target
                .entry(name)
                .or_insert_with(|| if r.attr.multi { Value::Array(Vec::new()) } else { Value::Object(Map::new()) });
            match entry {
                Value::Object(o) => {
                    o.retain(|k, _| !k.eq_ignore_ascii_case(sub.name));
                    o.insert(sub.name.into(), v.clone());
                }
                Value::Array(items) => {
                    if items.is_empty() {
                        let mut m = Map::new();
                        m.insert(sub.name.into(), v.clone());
                        items.push(Value::Object(m));
                    } else {
                        for i in items.iter_mut() {
                            if let Value::Object(o) = i {
                                o.retain(|k, _| !k.eq_ignore_ascii_case(sub.name));
                                o.insert(sub.name.into(), v.clone());
                            }
                        }
                    }
                }
                other => {
                    let mut m = Map::new();
                    m.insert(sub.name.into(), v.clone());
                    *other = Value::Object(m);
                }
            }
        }
    }
    Ok(())
}

/// `a eq "x" and b eq "y"` as [(a, "x"), (b, "y")]; None for any other filter.
fn equalities(filter: &Filter) -> Option<Vec<(String, Value)>> {
    let mut out = Vec::new();
    let operands = if matches!(filter, Filter::And(..)) { filter.chain_operands() } else { vec![filter] };
    for f in operands {
        match f {
            Filter::Compare { path, op: CompareOp::Eq, value } if path.sub_attr.is_none() && path.schema.is_none() => {
                let v = match value {
                    CompValue::String(s) => Value::String(s.clone()),
                    CompValue::Bool(b) => Value::Bool(*b),
                    _ => return None,
                };
                out.push((path.attr.as_str().to_owned(), v));
            }
            _ => return None,
        }
    }
    Some(out)
}

fn apply_value_path(
    kind: ResourceKind,
    obj: &mut Map<String, Value>,
    op: OpKind,
    path: &AttrPath,
    filter: &Filter,
    sub_attr: Option<&str>,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let r = resolve(kind, path)
        .ok_or_else(|| ScimError::invalid_path(format!("{path} is not an attribute of {}", kind.name())))?;
    if !r.attr.multi || r.sub.is_some() {
        return Err(ScimError::invalid_path(format!("{path} is not a multi-valued attribute")));
    }
    if r.attr.mutability == Mutability::ReadOnly {
        return Err(ScimError::mutability(format!("{path} is read-only")));
    }
    let sub = match sub_attr {
        None => None,
        Some(s) => Some(
            find(r.attr.sub, s)
                .ok_or_else(|| ScimError::invalid_path(format!("{} has no sub-attribute {s:?}", r.attr.name)))?,
        ),
    };
    let Some(target) = container(obj, r.scope, op != OpKind::Remove) else { return Ok(()) };
    let name = r.attr.name;
    let mut items = match target.remove(name) {
        Some(Value::Array(a)) => a,
        Some(other) => vec![other],
        None => Vec::new(),
    };
    let mut matched = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if element_matches(r.attr, filter, item)? {
            matched.push(i);
        }
    }
    match op {
        OpKind::Remove => {
            if let Some(sub) = sub {
                for &i in &matched {
                    if let Some(Value::Object(o)) = items.get_mut(i) {
                        o.retain(|k, _| !k.eq_ignore_ascii_case(sub.name));
                    }
                }
            } else {
                let mut i = 0;
                items.retain(|_| {
                    let keep = !matched.contains(&i);
                    i += 1;
                    keep
                });
            }
        }
        OpKind::Add | OpKind::Replace => {
            let Some(v) = value else { return Err(ScimError::invalid_syntax(format!("{path}: a value is required"))) };
            if matched.is_empty() {
                // Entra adds a work email as `emails[type eq "work"].value`.
                let Some(pairs) = equalities(filter) else {
                    target.insert(name.into(), Value::Array(items));
                    return Err(ScimError::no_target(format!("no value of {name} matches the filter")));
                };
                let mut m = Map::new();
                for (k, pv) in pairs {
                    if let Some(s) = find(r.attr.sub, &k) {
                        m.insert(s.name.into(), pv);
                    }
                }
                match sub {
                    Some(s) => {
                        m.insert(s.name.into(), v.clone());
                    }
                    None => merge_complex(r.attr, &mut m, v)?,
                }
                items.push(Value::Object(m));
            } else {
                for &i in &matched {
                    if let Some(Value::Object(o)) = items.get_mut(i) {
                        match sub {
                            Some(s) => {
                                o.retain(|k, _| !k.eq_ignore_ascii_case(s.name));
                                o.insert(s.name.into(), v.clone());
                            }
                            None => merge_complex(r.attr, o, v)?,
                        }
                    }
                }
            }
        }
    }
    if !items.is_empty() {
        target.insert(name.into(), Value::Array(items));
    }
    Ok(())
}
