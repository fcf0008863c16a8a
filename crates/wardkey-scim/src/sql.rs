//! A SCIM filter as an SQL condition over Wardkey's tables, for SQLite and PostgreSQL.
//!
//! The query this condition goes into names its tables with these aliases:
//!
//! - Users: `u` (`users`), `s` (`scim_users`, LEFT JOIN on the id); multi-valued attributes are
//!   `IN` sub-queries over `scim_values v`.
//! - Groups: `g` (`groups`), `sg` (`scim_groups`, LEFT JOIN); members are `IN` sub-queries over
//!   `group_members gm`.
//!
//! Every comparison is on a column (index-backed where it can be: `username_key`, the `*_key`
//! columns, `scim_values (attr, value_key)`), never a JSON scan; multi-valued attributes are
//! uncorrelated semi-joins (`u.id IN (SELECT v.resource_id FROM scim_values v WHERE ...)`). Strings whose `caseExact` is
//! false are compared through their lower-cased `*_key` column with a lower-cased value;
//! case-exact ones (`id`, `externalId`, member and manager ids) directly, with `instr`/`strpos`
//! and `substr` for `co`/`sw`/`ew` so that SQLite's case-insensitive `LIKE` is never used on
//! them. `LIKE` patterns escape `%`, `_` and `\`. Comparisons never yield SQL NULL (absent
//! attributes are tested explicitly), so `not (...)` means what SCIM says. Values are always
//! bound parameters (`$1`, `$2`, ... in the order they appear in the text).

use crate::ast::{AttrPath, CompValue, CompareOp, Condition, Filter};
use crate::resource::{ScimError, USER_KEY_COLUMNS, USER_VALUE_ATTRS, fold};
use crate::schema::{Attr, AttrType, ResourceKind, Scope, resolve};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A bind parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlArg {
    Text(String),
    Int(i64),
}

/// An SQL condition and its parameters; placeholders start at `$first`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlCondition {
    pub sql: String,
    pub args: Vec<SqlArg>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Col {
    /// Lower-cased text (caseExact false).
    Key(String),
    /// Text compared as is (caseExact true).
    Exact(String),
    /// Microseconds since the epoch.
    Time(String),
    /// 0/1.
    Flag(String),
    /// `active`: the directory status.
    Active,
    /// A constant (`meta.resourceType`, `members.type`).
    Const(&'static str),
}

/// Where an attribute lives.
enum Target {
    Single(Col),
    /// A multi-valued attribute in `scim_values` (lower-cased name).
    Values(&'static str),
    /// Group members.
    Members,
    /// A User's groups (read-only, from the directory's memberships).
    UserGroups,
}

fn not_filterable(path: &(impl std::fmt::Display + ?Sized)) -> ScimError {
    ScimError::invalid_filter(format!("{path} cannot be used in a filter"))
}

fn target(kind: ResourceKind, path: &AttrPath) -> Result<(Target, Option<&'static Attr>), ScimError> {
    let r = resolve(kind, path).ok_or_else(|| ScimError::invalid_filter(format!("unknown attribute {path}")))?;
    let name = r.attr.name;
    let sub = r.sub.map(|s| s.name);
    let single = |c: Col| Ok((Target::Single(c), None));
    match (kind, r.scope, name, sub) {
        (_, Scope::Common, "meta", Some("created")) => {
            single(Col::Time(if kind == ResourceKind::User { "u.created_at" } else { "g.created_at" }.into()))
        }
        (_, Scope::Common, "meta", Some("lastModified")) => {
            single(Col::Time(if kind == ResourceKind::User { "u.updated_at" } else { "g.updated_at" }.into()))
        }
        (_, Scope::Common, "meta", Some("resourceType")) => single(Col::Const(kind.name())),
        (ResourceKind::User, Scope::Common, "id", None) => single(Col::Exact("u.id".into())),
        (ResourceKind::User, Scope::Common, "externalId", None) => single(Col::Exact("s.external_id".into())),
        (ResourceKind::Group, Scope::Common, "id", None) => single(Col::Exact("g.id".into())),
        (ResourceKind::Group, Scope::Common, "externalId", None) => single(Col::Exact("sg.external_id".into())),
        (ResourceKind::User, Scope::Core, "userName", None) => single(Col::Key("u.username_key".into())),
        (ResourceKind::User, Scope::Core, "active", None) => single(Col::Active),
        (ResourceKind::User, Scope::Enterprise, "manager", None | Some("value")) => {
            single(Col::Exact("s.manager_value".into()))
        }
        (ResourceKind::Group, Scope::Core, "displayName", None) => {
            single(Col::Key("COALESCE(sg.display_name_key, g.name_key)".into()))
        }
        (ResourceKind::Group, Scope::Core, "members", _) => Ok((Target::Members, r.sub)),
        (ResourceKind::User, Scope::Core, "groups", _) => Ok((Target::UserGroups, r.sub)),
        (ResourceKind::User, Scope::Core, _, _) if r.attr.multi => {
            let attr = USER_VALUE_ATTRS.iter().find(|a| **a == name).ok_or_else(|| not_filterable(path))?;
            let lower: &'static str = match *attr {
                "emails" => "emails",
                "phoneNumbers" => "phonenumbers",
                "ims" => "ims",
                "photos" => "photos",
                "addresses" => "addresses",
                "entitlements" => "entitlements",
                "roles" => "roles",
                "x509Certificates" => "x509certificates",
                _ => return Err(not_filterable(path)),
            };
            Ok((Target::Values(lower), r.sub))
        }
        (ResourceKind::User, scope, _, _) => {
            let c = USER_KEY_COLUMNS
                .iter()
                .find(|c| c.scope == scope && c.attr == name && c.sub == sub)
                .ok_or_else(|| not_filterable(path))?;
            single(Col::Key(format!("s.{}", c.column)))
        }
        _ => Err(not_filterable(path)),
    }
}

/// The column of a sub-attribute of a multi-valued attribute.
fn element_col(multi: &Target, sub: Option<&Attr>, shown: &dyn std::fmt::Display) -> Result<Col, ScimError> {
    let sub_name = sub.map(|s| s.name).unwrap_or("value");
    match multi {
        Target::Values(attr) => Ok(match (sub_name, *attr) {
            ("value", "addresses") | ("formatted", "addresses") => Col::Key("v.value_key".into()),
            ("value", _) => Col::Key("v.value_key".into()),
            ("type", _) => Col::Key("v.type_key".into()),
            ("display", _) => Col::Key("v.display_key".into()),
            ("primary", _) => Col::Flag("v.primary_flag".into()),
            _ => return Err(not_filterable(shown)),
        }),
        Target::Members => Ok(match sub_name {
            "value" => Col::Exact("gm.member_id".into()),
            "type" => Col::Const("User"),
            _ => return Err(not_filterable(shown)),
        }),
        Target::UserGroups => Ok(match sub_name {
            "value" => Col::Exact("ugm.group_id".into()),
            "display" => Col::Key("COALESCE(usg.display_name_key, ug.name_key)".into()),
            "type" => Col::Const("direct"),
            _ => return Err(not_filterable(shown)),
        }),
        Target::Single(_) => Err(not_filterable(shown)),
    }
}

/// The opening of a semi-join over a multi-valued attribute's rows (closed by the caller with
/// `)` after the conditions on `v` / `gm`). Uncorrelated (`id IN (SELECT ...)`), so the
/// database reads the attribute's matching rows once, through the `(attr, type_key,
/// value_key)` / `(attr, value_key)` indexes, instead of once per resource.
fn exists_open(kind: ResourceKind, multi: &Target) -> String {
    match multi {
        Target::Values(attr) => {
            let owner = if kind == ResourceKind::User { "u.id" } else { "g.id" };
            format!("{owner} IN (SELECT v.resource_id FROM scim_values v WHERE v.attr = '{attr}'")
        }
        Target::UserGroups => {
            "u.id IN (SELECT ugm.member_id FROM group_members ugm JOIN groups ug ON ug.id = ugm.group_id \
             LEFT JOIN scim_groups usg ON usg.id = ug.id WHERE ugm.member_kind = 'user' AND ug.deleted_at IS NULL"
                .into()
        }
        _ => "g.id IN (SELECT gm.group_id FROM group_members gm WHERE gm.member_kind = 'user'".into(),
    }
}

struct Builder {
    kind: ResourceKind,
    dialect: Dialect,
    args: Vec<SqlArg>,
    first: usize,
}

impl Builder {
    fn bind(&mut self, a: SqlArg) -> String {
        self.args.push(a);
        format!("${}", self.first + self.args.len() - 1)
    }

    fn filter(&mut self, f: &Filter, element: Option<(&Target, &'static Attr)>) -> Result<String, ScimError> {
        match f {
            Filter::And(..) | Filter::Or(..) => {
                let joiner = if matches!(f, Filter::And(..)) { " AND " } else { " OR " };
                let mut parts = Vec::new();
                for operand in f.chain_operands() {
                    parts.push(self.filter(operand, element)?);
                }
                Ok(format!("({})", parts.join(joiner)))
            }
            Filter::Not(inner) => Ok(format!("(NOT {})", self.filter(inner, element)?)),
            Filter::Present { path } => match element {
                Some((multi, attr)) => {
                    let col = element_col(multi, sub_in(attr, path)?, path)?;
                    Ok(self.present(&col))
                }
                None => {
                    let (t, sub) = target(self.kind, path)?;
                    match t {
                        Target::Single(col) => Ok(self.present(&col)),
                        multi => {
                            let open = exists_open(self.kind, &multi);
                            match sub {
                                None => Ok(format!("{open})")),
                                Some(_) => {
                                    let col = element_col(&multi, sub, path)?;
                                    Ok(format!("{open} AND {})", self.present(&col)))
                                }
                            }
                        }
                    }
                }
            },
            Filter::Compare { path, op, value } => match element {
                Some((multi, attr)) => {
                    let col = element_col(multi, sub_in(attr, path)?, path)?;
                    self.compare(&col, *op, value, path)
                }
                None => {
                    let (t, sub) = target(self.kind, path)?;
                    match t {
                        Target::Single(col) => self.compare(&col, *op, value, path),
                        multi => {
                            let col = element_col(&multi, sub, path)?;
                            let open = exists_open(self.kind, &multi);
                            let cond = self.compare(&col, *op, value, path)?;
                            Ok(format!("{open} AND {cond})"))
                        }
                    }
                }
            },
            Filter::ValuePath { path, filter, sub_attr } => {
                if element.is_some() {
                    return Err(ScimError::invalid_filter("value paths cannot be nested"));
                }
                let (t, sub) = target(self.kind, path)?;
                if matches!(t, Target::Single(_)) || sub.is_some() {
                    return Err(ScimError::invalid_filter(format!("{path} is not a multi-valued attribute")));
                }
                let r = resolve(self.kind, path)
                    .ok_or_else(|| ScimError::invalid_filter(format!("unknown attribute {path}")))?;
                let open = exists_open(self.kind, &t);
                let inner = self.filter(filter, Some((&t, r.attr)))?;
                let mut sql = format!("{open} AND {inner}");
                if let Some(cond) = sub_attr {
                    let sub = crate::schema::find(r.attr.sub, cond.sub_attr.as_str()).ok_or_else(|| {
                        ScimError::invalid_filter(format!("{} has no sub-attribute {}", r.attr.name, cond.sub_attr))
                    })?;
                    let col = element_col(&t, Some(sub), &cond.sub_attr)?;
                    let c = match &cond.condition {
                        Condition::Present => self.present(&col),
                        Condition::Compare { op, value } => self.compare(&col, *op, value, &cond.sub_attr)?,
                    };
                    sql.push_str(" AND ");
                    sql.push_str(&c);
                }
                sql.push(')');
                Ok(sql)
            }
        }
    }

    fn present(&mut self, col: &Col) -> String {
        match col {
            Col::Key(e) | Col::Exact(e) => format!("({e} IS NOT NULL AND {e} <> '')"),
            Col::Time(e) | Col::Flag(e) => format!("({e} IS NOT NULL)"),
            Col::Active | Col::Const(_) => "(1 = 1)".into(),
        }
    }

    fn ordered(&self, e: &str) -> String {
        match self.dialect {
            Dialect::Postgres => format!("{e} COLLATE \"C\""),
            Dialect::Sqlite => e.to_owned(),
        }
    }

    fn compare(
        &mut self,
        col: &Col,
        op: CompareOp,
        value: &CompValue,
        path: &dyn std::fmt::Display,
    ) -> Result<String, ScimError> {
        use CompareOp::*;
        let bad = |why: &str| ScimError::invalid_filter(format!("{path} {op}: {why}"));
        if let CompValue::Null = value {
            let present = self.present(col);
            return match op {
                Eq => Ok(format!("(NOT {present})")),
                Ne => Ok(present),
                _ => Err(bad("null can only be compared with eq or ne")),
            };
        }
        match col {
            Col::Key(e) | Col::Exact(e) => {
                let exact = matches!(col, Col::Exact(_));
                let text = match value {
                    CompValue::String(s) => s.clone(),
                    CompValue::Number(n) => n.text().to_owned(),
                    CompValue::Bool(_) => return Err(bad("a string attribute is not compared with a boolean")),
                    CompValue::Null => String::new(),
                };
                let v = if exact { text } else { fold(&text) };
                let n = v.chars().count();
                Ok(match op {
                    Eq => format!("({e} IS NOT NULL AND {e} = {})", self.bind(SqlArg::Text(v))),
                    Ne => format!("({e} IS NULL OR {e} <> {})", self.bind(SqlArg::Text(v))),
                    Co | Sw | Ew if !exact => {
                        let esc = escape_like(&v);
                        let pattern = match op {
                            Co => format!("%{esc}%"),
                            Sw => format!("{esc}%"),
                            _ => format!("%{esc}"),
                        };
                        format!("({e} IS NOT NULL AND {e} LIKE {} ESCAPE '\\')", self.bind(SqlArg::Text(pattern)))
                    }
                    Co => {
                        let f = if self.dialect == Dialect::Sqlite { "instr" } else { "strpos" };
                        format!("({e} IS NOT NULL AND {f}({e}, {}) > 0)", self.bind(SqlArg::Text(v)))
                    }
                    Sw => format!("({e} IS NOT NULL AND substr({e}, 1, {n}) = {})", self.bind(SqlArg::Text(v))),
                    Ew => format!(
                        "({e} IS NOT NULL AND length({e}) >= {n} AND substr({e}, length({e}) - {n} + 1) = {})",
                        self.bind(SqlArg::Text(v))
                    ),
                    Gt | Lt | Ge | Le => {
                        let sym = match op {
                            Gt => ">",
                            Lt => "<",
                            Ge => ">=",
                            _ => "<=",
                        };
                        let lhs = self.ordered(e);
                        format!("({e} IS NOT NULL AND {lhs} {sym} {})", self.bind(SqlArg::Text(v)))
                    }
                })
            }
            Col::Time(e) => {
                let CompValue::String(s) = value else {
                    return Err(bad("a dateTime is compared with an RFC 3339 string"));
                };
                let t = chrono::DateTime::parse_from_rfc3339(s).map_err(|_| bad("not an RFC 3339 date-time"))?;
                let micros = t.timestamp_micros();
                let sym = match op {
                    Eq => "=",
                    Ne => "<>",
                    Gt => ">",
                    Lt => "<",
                    Ge => ">=",
                    Le => "<=",
                    _ => return Err(bad("co, sw and ew do not apply to dateTime")),
                };
                Ok(format!("({e} IS NOT NULL AND {e} {sym} {})", self.bind(SqlArg::Int(micros))))
            }
            Col::Flag(_) | Col::Active => {
                let b = match value {
                    CompValue::Bool(b) => *b,
                    CompValue::String(s) if s.eq_ignore_ascii_case("true") => true,
                    CompValue::String(s) if s.eq_ignore_ascii_case("false") => false,
                    _ => return Err(bad("a boolean is compared with true or false")),
                };
                let want = match op {
                    Eq => b,
                    Ne => !b,
                    _ => return Err(bad("booleans are compared with eq or ne")),
                };
                Ok(match col {
                    Col::Flag(e) => format!("({e} = {})", i64::from(want)),
                    _ if want => "(u.status = 'active')".into(),
                    _ => "(u.status <> 'active')".into(),
                })
            }
            Col::Const(c) => {
                let CompValue::String(s) = value else { return Err(bad("expected a string")) };
                let hit = crate::resource::compare_json(
                    &CONST_ATTR,
                    Some(&serde_json::Value::String((*c).into())),
                    op,
                    &CompValue::String(s.clone()),
                );
                Ok(if hit { "(1 = 1)".into() } else { "(1 = 0)".into() })
            }
        }
    }
}

static CONST_ATTR: Attr = Attr {
    name: "const",
    ty: AttrType::String,
    multi: false,
    required: false,
    case_exact: false,
    mutability: crate::schema::Mutability::ReadOnly,
    returned: crate::schema::Returned::Default,
    unique: false,
    sub: &[],
    description: "",
};

/// The sub-attribute named inside `attr[...]` (`type`, or `emails.type` in full).
fn sub_in(attr: &'static Attr, path: &AttrPath) -> Result<Option<&'static Attr>, ScimError> {
    let name = match &path.sub_attr {
        Some(sub) if path.attr.eq_ignore_case(attr.name) => sub.as_str(),
        Some(_) => return Err(ScimError::invalid_filter(format!("{path} is not a sub-attribute of {}", attr.name))),
        None => path.attr.as_str(),
    };
    crate::schema::find(attr.sub, name)
        .map(Some)
        .ok_or_else(|| ScimError::invalid_filter(format!("{} has no sub-attribute {name:?}", attr.name)))
}

/// Escapes `%`, `_` and `\` for `LIKE ... ESCAPE '\'`.
pub fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Translates `filter` for resources of `kind`; placeholders are numbered from `$first`.
pub fn translate(
    kind: ResourceKind,
    filter: &Filter,
    dialect: Dialect,
    first: usize,
) -> Result<SqlCondition, ScimError> {
    let mut b = Builder { kind, dialect, args: Vec::new(), first };
    let sql = b.filter(filter, None)?;
    Ok(SqlCondition { sql, args: b.args })
}

/// The `ORDER BY` expression for `sortBy` (without direction). Multi-valued attributes sort by
/// their primary (else first) value.
pub fn sort_expr(kind: ResourceKind, path: &AttrPath, dialect: Dialect) -> Result<String, ScimError> {
    let bad = || ScimError::invalid_value(format!("cannot sort by {path}"));
    let (t, sub) = target(kind, path).map_err(|_| bad())?;
    let ordered = |e: &str| match dialect {
        Dialect::Postgres => format!("{e} COLLATE \"C\""),
        Dialect::Sqlite => e.to_owned(),
    };
    match t {
        Target::Single(Col::Key(e)) | Target::Single(Col::Exact(e)) => Ok(ordered(&e)),
        Target::Single(Col::Time(e)) | Target::Single(Col::Flag(e)) => Ok(e),
        Target::Single(Col::Active) => Ok("(CASE WHEN u.status = 'active' THEN 1 ELSE 0 END)".into()),
        Target::Values(attr) => {
            let col = match sub.map(|s| s.name).unwrap_or("value") {
                "type" => "v.type_key",
                "display" => "v.display_key",
                "value" | "formatted" => "v.value_key",
                _ => return Err(bad()),
            };
            let owner = if kind == ResourceKind::User { "u.id" } else { "g.id" };
            Ok(format!(
                "(SELECT {} FROM scim_values v WHERE v.resource_id = {owner} AND v.attr = '{attr}' ORDER BY v.primary_flag DESC, v.idx LIMIT 1)",
                ordered(col)
            ))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn translates_value_paths_to_exists() {
        let f = crate::parse_filter(r#"emails[type eq "work" and value co "x_"]"#).unwrap();
        let c = translate(ResourceKind::User, &f, Dialect::Sqlite, 1).unwrap();
        assert!(c.sql.starts_with("u.id IN (SELECT v.resource_id FROM scim_values v"), "{}", c.sql);
        assert_eq!(c.args, vec![SqlArg::Text("work".into()), SqlArg::Text("%x\\_%".into())]);
        let f = crate::parse_filter(r#"userName eq "BJensen""#).unwrap();
        let c = translate(ResourceKind::User, &f, Dialect::Postgres, 3).unwrap();
        assert_eq!(c.sql, "(u.username_key IS NOT NULL AND u.username_key = $3)");
        assert!(
            translate(ResourceKind::User, &crate::parse_filter("nosuch eq 1").unwrap(), Dialect::Sqlite, 1).is_err()
        );
    }
}
