//! SCIM 2.0 service provider (RFC 7643/7644): Users (core + enterprise extension) and Groups,
//! mapped onto the directory.
//!
//! - **Storage.** Each SCIM resource is kept as sent (`scim_users.raw`, `scim_groups.raw`:
//!   the JSON with attribute names normalised) beside the directory user or group with the
//!   same id. userName → username, displayName (else name.formatted, else given + family) →
//!   display_name, the primary (else work, else first) email → email, active ↔ status,
//!   enterprise employeeNumber / department / manager.value → HR employee_id / department /
//!   manager_id, title → HR title, userType → HR employment_type when it is one of ours.
//!   Group displayName → group name (characters the directory does not allow in names become
//!   `-`), members → memberships (users only). What the directory owns (username, status,
//!   memberships, versions, times) is always read back from it, so changes made through
//!   `/api/v1` show in SCIM.
//! - **One write job per request.** Create, replace, PATCH (all operations) and delete each
//!   load, check, write the directory, the SCIM row and every audit event in one job: a
//!   request is applied entirely or not at all. Events name the connector (`actor` = the
//!   token; details `scim.connector`, `scim.operation`).
//! - **Lifecycle.** Creating with `active: true` records the identity verification
//!   (`verified_by` = the token, method `scim:<token name>`: the identity provider is the
//!   connector's source of identity) and activates; with `active: false` (or absent) the user
//!   is `pending_verification`. `active` turning false is a termination
//!   ([`crate::lifecycle::terminate_in_tx`]): disabled, every session, grant, membership and
//!   API token revoked in the same job. `active` turning true on a pending user verifies and
//!   activates it as on creation; on a disabled user it is a rehire: the user goes back to
//!   `pending_verification` and needs a new identity verification by an administrator
//!   (the domain lifecycle); a suspended user stays suspended (an administrator's hold).
//!   DELETE tombstones the user (identity and audit history kept, username freed for a new
//!   id) after revoking everything.
//! - **Birthright roles.** After a change of HR attributes (department, title, employee
//!   number, manager, user type) or an activation, [`crate::jml::sync_birthright_in_tx`]
//!   runs in the same job.

use crate::auth::{Authorized, Scim};
use crate::{Caller, Committed, ServiceError, Services, draft};
use serde_json::{Map, Value, json};
use wardkey_audit::{Action, Target};
use wardkey_domain::{
    Actor, DomainError, EmploymentType, Group, GroupId, HrAttributes, IdentityVerification, Member, Subject, User,
    UserId, UserStatus, check_sod, validate,
};
use wardkey_scim::patch::{apply, parse_patch};
use wardkey_scim::resource::{ScimError, UserFields, get_ci, group_members, normalize, user_fields, user_index};
use wardkey_scim::schema::{ENTERPRISE_SCHEMA, GROUP_SCHEMA, ResourceKind, USER_SCHEMA};
use wardkey_scim::sql::{Dialect, SqlCondition, sort_expr, translate};
use wardkey_store::{BackendKind, ScimGroupRow, ScimPage, ScimUserRow, StoreError, WriteTx};

/// Most resources one list page returns (`count` is clamped to it; advertised as
/// `filter.maxResults`).
pub const MAX_RESULTS: i64 = 200;
/// Operations one `/Bulk` request may carry, and its largest body.
pub const BULK_MAX_OPERATIONS: usize = 100;
pub const BULK_MAX_PAYLOAD: usize = 1024 * 1024;

/// A SCIM request failed: with a SCIM error, or with a service error the edge maps.
#[derive(Debug, thiserror::Error)]
pub enum ScimFailure {
    #[error("{0}")]
    Scim(ScimError),
    #[error("{0}")]
    Service(ServiceError),
}

impl From<ScimError> for ScimFailure {
    fn from(e: ScimError) -> Self {
        ScimFailure::Scim(e)
    }
}
impl From<ServiceError> for ScimFailure {
    fn from(e: ServiceError) -> Self {
        ScimFailure::Service(e)
    }
}
impl From<StoreError> for ScimFailure {
    fn from(e: StoreError) -> Self {
        ScimFailure::Service(e.into())
    }
}
impl From<DomainError> for ScimFailure {
    fn from(e: DomainError) -> Self {
        ScimFailure::Service(e.into())
    }
}
impl From<wardkey_scim::ScimFilterError> for ScimFailure {
    fn from(e: wardkey_scim::ScimFilterError) -> Self {
        ScimFailure::Scim(e.into())
    }
}

pub type ScimResult<T> = std::result::Result<T, ScimFailure>;

/// `If-Match` as the edge read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    None,
    Version(i64),
    /// A tag that names no version of ours: never matches.
    Unmatchable,
}

impl Precondition {
    fn check(self, actual: i64) -> ScimResult<()> {
        match self {
            Precondition::None => Ok(()),
            Precondition::Version(v) if v == actual => Ok(()),
            _ => Err(ScimError::new(
                412,
                None,
                format!("the resource is at version W/\"{actual}\"; If-Match does not match"),
            )
            .into()),
        }
    }
}

/// A list request (query parameters or a `.search` body).
#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    pub filter: Option<String>,
    pub sort_by: Option<String>,
    pub sort_order: Option<String>,
    pub start_index: Option<i64>,
    pub count: Option<i64>,
}

/// One page of resources (not yet projected by `attributes`).
#[derive(Debug, Clone)]
pub struct ListResult {
    pub total: i64,
    pub start_index: i64,
    pub resources: Vec<Value>,
}

/// A resource written: its representation and version.
#[derive(Debug, Clone)]
pub struct Written {
    pub resource: Value,
    pub version: i64,
    pub id: String,
}

fn connector(caller: &Caller) -> String {
    match &caller.actor {
        Actor::Token { name, .. } => name.clone(),
        other => other.principal(),
    }
}

fn scim_event(
    caller: &Caller,
    action: Action,
    target: Option<Target>,
    operation: &str,
    extra: Value,
) -> wardkey_audit::AuditDraft {
    let mut e = draft(caller, action, target);
    let mut details = match extra {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    details.insert("scim".into(), json!({ "connector": connector(caller), "operation": operation }));
    e.details = Value::Object(details);
    e
}

fn invalid(e: ServiceError) -> ScimFailure {
    match e {
        ServiceError::Invalid(errors) => {
            let detail = errors.iter().map(|f| format!("{}: {}", f.field, f.message)).collect::<Vec<_>>().join("; ");
            ScimFailure::Scim(ScimError::invalid_value(detail))
        }
        other => ScimFailure::Service(other),
    }
}

fn parse_id(s: &str) -> Option<uuid::Uuid> {
    uuid::Uuid::try_parse(s).ok()
}

fn not_found(kind: ResourceKind, id: &str) -> ScimFailure {
    ScimFailure::Scim(ScimError::new(
        404,
        None,
        format!("{} {} not found", kind.name(), id.chars().take(64).collect::<String>()),
    ))
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

// ---------------------------------------------------------------------------------------------
// Representations

/// The SCIM User for a directory user and its stored JSON.
pub fn render_user(row: &ScimUserRow, base: &str) -> Value {
    let user = &row.user;
    let mut obj = row
        .raw
        .as_deref()
        .and_then(|r| serde_json::from_str::<Value>(r).ok())
        .and_then(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .unwrap_or_default();
    obj.insert("id".into(), Value::String(user.id.to_string()));
    obj.insert("userName".into(), Value::String(user.username.clone()));
    obj.insert("active".into(), Value::Bool(user.status == UserStatus::Active));
    // The directory's display name shows where the connector sent one (it may have been
    // changed through /api/v1 since) or for users created outside SCIM; one the directory
    // derived from name.* is not invented into the SCIM resource.
    if let Some(d) = &user.display_name
        && (row.raw.is_none() || obj.contains_key("displayName"))
    {
        obj.insert("displayName".into(), Value::String(d.clone()));
    }
    if !obj.contains_key("emails")
        && let Some(e) = &user.email
    {
        obj.insert("emails".into(), json!([{ "value": e, "type": "work", "primary": true }]));
    }
    let mut schemas = vec![Value::String(USER_SCHEMA.into())];
    let hr = &user.hr;
    let mut ext = match obj.remove(ENTERPRISE_SCHEMA) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let mut set = |k: &str, v: &Option<String>| match v {
        Some(v) => {
            ext.insert(k.into(), Value::String(v.clone()));
        }
        None => {
            ext.remove(k);
        }
    };
    set("employeeNumber", &hr.employee_id);
    set("department", &hr.department);
    if let Some(m) = hr.manager_id {
        ext.insert("manager".into(), json!({ "value": m.to_string(), "$ref": format!("{base}/Users/{m}") }));
    }
    if !ext.is_empty() {
        obj.insert(ENTERPRISE_SCHEMA.into(), Value::Object(ext));
        schemas.push(Value::String(ENTERPRISE_SCHEMA.into()));
    }
    if let Some(t) = &hr.title {
        obj.insert("title".into(), Value::String(t.clone()));
    }
    // Read-only and the directory's: whatever a connector sent under `groups` is not shown.
    obj.remove("groups");
    if !row.groups.is_empty() {
        let groups = row
            .groups
            .iter()
            .map(|g| json!({ "value": g.id.to_string(), "$ref": format!("{base}/Groups/{}", g.id), "display": g.display, "type": "direct" }))
            .collect();
        obj.insert("groups".into(), Value::Array(groups));
    }
    obj.insert("schemas".into(), Value::Array(schemas));
    obj.insert(
        "meta".into(),
        json!({
            "resourceType": "User",
            "created": rfc3339(user.created_at),
            "lastModified": rfc3339(user.updated_at),
            "location": format!("{base}/Users/{}", user.id),
            "version": format!("W/\"{}\"", user.version),
        }),
    );
    Value::Object(obj)
}

/// The SCIM Group for a directory group, its stored JSON and (when asked for) its members.
pub fn render_group(row: &ScimGroupRow, members: Option<&[wardkey_store::ScimMember]>, base: &str) -> Value {
    let g = &row.group;
    let mut obj = row
        .raw
        .as_deref()
        .and_then(|r| serde_json::from_str::<Value>(r).ok())
        .and_then(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .unwrap_or_default();
    obj.insert("schemas".into(), json!([GROUP_SCHEMA]));
    obj.insert("id".into(), Value::String(g.id.to_string()));
    if !obj.contains_key("displayName") {
        obj.insert("displayName".into(), Value::String(g.name.clone()));
    }
    obj.remove("members");
    if let Some(members) = members {
        let list: Vec<Value> = members
            .iter()
            .map(|m| {
                json!({
                    "value": m.id.to_string(),
                    "$ref": format!("{base}/Users/{}", m.id),
                    "display": m.display_name.clone().unwrap_or_else(|| m.username.clone()),
                    "type": "User",
                })
            })
            .collect();
        obj.insert("members".into(), Value::Array(list));
    }
    obj.insert(
        "meta".into(),
        json!({
            "resourceType": "Group",
            "created": rfc3339(g.created_at),
            "lastModified": rfc3339(g.updated_at),
            "location": format!("{base}/Groups/{}", g.id),
            "version": format!("W/\"{}\"", g.version),
        }),
    );
    Value::Object(obj)
}

/// A directory group name for a SCIM displayName: characters names may not hold become `-`.
pub fn group_name_for(display: &str) -> String {
    let mut out: String = display
        .trim()
        .chars()
        .map(|c| if c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | ':') { c } else { '-' })
        .take(validate::MAX_NAME)
        .collect();
    if !out.chars().next().is_some_and(char::is_alphanumeric) {
        out = format!("g{}", out.chars().take(validate::MAX_NAME - 1).collect::<String>());
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Users: shared write path

/// The HR attributes a SCIM user maps to, keeping those SCIM does not carry.
fn hr_from(fields: &UserFields, before: &HrAttributes, manager: Option<UserId>) -> HrAttributes {
    let employment_type = fields.user_type.as_deref().and_then(|t| match t.to_ascii_lowercase().as_str() {
        "employee" => Some(EmploymentType::Employee),
        "contractor" => Some(EmploymentType::Contractor),
        "vendor" => Some(EmploymentType::Vendor),
        "student" => Some(EmploymentType::Student),
        "volunteer" => Some(EmploymentType::Volunteer),
        _ => None,
    });
    HrAttributes {
        employee_id: fields.employee_number.clone(),
        department: fields.department.clone(),
        title: fields.title.clone(),
        manager_id: manager,
        employment_type: employment_type.or(if fields.user_type.is_some() { before.employment_type } else { None }),
        ..before.clone()
    }
}

fn validate_fields(fields: &UserFields, hr: &HrAttributes) -> ScimResult<()> {
    let mut errors = Vec::new();
    wardkey_domain::validate_username(&mut errors, "userName", &fields.user_name);
    validate::opt_text(&mut errors, "displayName", &fields.display_name, validate::MAX_SHORT);
    if let Some(e) = &fields.email {
        validate::email(&mut errors, "emails", e);
    }
    hr.validate(&mut errors);
    validate::finish(errors).map_err(|e| invalid(e.into()))
}

/// The manager named by `manager.value`, when it is a live user (other than `me`).
async fn resolve_manager(tx: &mut WriteTx, value: Option<&str>, me: UserId) -> ScimResult<Option<UserId>> {
    let Some(id) = value.and_then(parse_id).map(UserId) else { return Ok(None) };
    if id == me {
        return Ok(None);
    }
    Ok(tx.get_user(id).await?.map(|u| u.id))
}

/// Writes `resource` (normalised) over `user` (loaded in this job); `was_active` is what SCIM
/// showed before. Handles the lifecycle and birthright roles. Returns the user as stored.
async fn write_user(
    tx: &mut WriteTx,
    caller: &Caller,
    mut user: User,
    was_active: bool,
    resource: Value,
    operation: &str,
) -> ScimResult<User> {
    let fields = user_fields(&resource)?;
    let manager = resolve_manager(tx, fields.manager.as_deref(), user.id).await?;
    let mut hr = hr_from(&fields, &user.hr, manager);
    if operation == "replace" {
        // A PUT that leaves an HR attribute out does not erase what another source (an HR
        // roster) recorded: connectors often map only some of them. A PATCH starts from the
        // full representation, so there an absent attribute was removed on purpose.
        let before = &user.hr;
        if fields.employee_number.is_none() {
            hr.employee_id.clone_from(&before.employee_id);
        }
        if fields.department.is_none() {
            hr.department.clone_from(&before.department);
        }
        if fields.title.is_none() {
            hr.title.clone_from(&before.title);
        }
        if fields.manager.is_none() {
            hr.manager_id = before.manager_id;
        }
        if fields.user_type.is_none() {
            hr.employment_type = before.employment_type;
        }
    }
    validate_fields(&fields, &hr)?;
    let before = user.clone();
    user.username = fields.user_name.clone();
    user.display_name = fields.display_name.clone();
    user.email = fields.email.clone();
    user.hr = hr;
    let hr_changed = before.hr != user.hr;
    let profile_changed = before.username != user.username
        || before.display_name != user.display_name
        || before.email != user.email
        || hr_changed;
    user.updated_at = tx.now();
    let expected = user.version;
    let mut user = tx.update_user(&user, expected).await?;
    let raw =
        serde_json::to_string(&strip_owned(resource.clone())).map_err(|e| ServiceError::Internal(e.to_string()))?;
    tx.scim_put_user(user.id, &raw, &connector(caller), &user_index(&resource)).await?;
    tx.audit(scim_event(
        caller,
        Action::UserUpdate,
        Some(user.id.into()),
        operation,
        json!({
            "changed": profile_changed,
            "username": user.username,
            "hr_before": before.hr,
            "hr_after": user.hr,
        }),
    ));
    let mut activated = false;
    match fields.active {
        Some(false) if was_active || user.status == UserStatus::Active || user.status == UserStatus::Suspended => {
            let (u, revoked) = crate::lifecycle::terminate_in_tx(tx, caller, user, "scim active=false").await?;
            tx.audit(scim_event(
                caller,
                Action::ScimTerminate,
                Some(u.id.into()),
                operation,
                json!({ "revoked": revoked }),
            ));
            user = u;
        }
        Some(true) if !was_active => match user.status {
            UserStatus::PendingVerification => {
                user = verify_and_activate(tx, caller, user).await?;
                activated = true;
            }
            UserStatus::Disabled => {
                // Rehire: back to pending_verification; an administrator verifies again.
                let from = user.status;
                user.status = from.transition(UserStatus::PendingVerification)?;
                user.verification = None;
                user.updated_at = tx.now();
                let v = user.version;
                user = tx.update_user(&user, v).await?;
                let mut e = scim_event(
                    caller,
                    Action::UserStatus,
                    Some(user.id.into()),
                    operation,
                    json!({ "from": from, "to": user.status }),
                );
                e.reason = Some("scim active=true on a disabled user: rehire needs a new identity verification".into());
                tx.audit(e);
            }
            _ => {} // suspended: an administrator's hold stays
        },
        _ => {}
    }
    if (hr_changed || activated) && user.status == UserStatus::Active {
        crate::jml::sync_birthright_in_tx(tx, caller, &user, &format!("scim {operation}")).await?;
    }
    Ok(user)
}

/// Records the connector as the identity verification and activates a pending user.
async fn verify_and_activate(tx: &mut WriteTx, caller: &Caller, mut user: User) -> ScimResult<User> {
    let now = tx.now();
    let method = format!("scim:{}", connector(caller));
    user.verification =
        Some(IdentityVerification { verified_by: caller.actor.principal(), method: method.clone(), verified_at: now });
    let from = user.status;
    user.status = from.transition(UserStatus::Active)?;
    user.updated_at = now;
    let v = user.version;
    let user = tx.update_user(&user, v).await?;
    tx.audit(scim_event(
        caller,
        Action::UserVerifyIdentity,
        Some(user.id.into()),
        "activate",
        json!({ "method": method }),
    ));
    tx.audit(scim_event(
        caller,
        Action::UserStatus,
        Some(user.id.into()),
        "activate",
        json!({ "from": from, "to": user.status }),
    ));
    Ok(user)
}

/// What is stored as sent: everything but what the directory owns and returns itself.
fn strip_owned(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        for k in ["id", "meta", "active", "members", "groups"] {
            m.remove(k);
        }
    }
    v
}

fn dialect(kind: BackendKind) -> Dialect {
    match kind {
        BackendKind::Sqlite => Dialect::Sqlite,
        BackendKind::Postgres => Dialect::Postgres,
    }
}

// ---------------------------------------------------------------------------------------------
// Groups: shared write path

/// Adds `user` to `group` inside the job, checking status and separation of duties exactly
/// as the directory's `add_member` does.
async fn add_member_in_tx(
    tx: &mut WriteTx,
    caller: &Caller,
    group: GroupId,
    user: UserId,
    operation: &str,
) -> ScimResult<()> {
    let u = tx
        .get_user(user)
        .await?
        .ok_or_else(|| ScimError::invalid_value(format!("member {user} is not a user of this service provider")))?;
    if u.status == UserStatus::Disabled {
        return Err(ScimError::invalid_value(format!("member {user} is disabled")).into());
    }
    let held = crate::access::roles_held(tx, Subject::User(user)).await?;
    let added = crate::access::roles_of_grants(tx, Subject::Group(group)).await?;
    let rules = tx.list_sod_rules().await?;
    check_sod(&rules, &held, &added)?;
    if tx.add_member(group, Member::User(user)).await? {
        tx.audit(scim_event(
            caller,
            Action::GroupMemberAdd,
            Some(group.into()),
            operation,
            json!({ "member": Member::User(user).target() }),
        ));
    }
    Ok(())
}

/// Writes a Group: name, stored JSON, and members made equal to `resource`'s.
async fn write_group(
    tx: &mut WriteTx,
    caller: &Caller,
    mut group: Group,
    resource: Value,
    operation: &str,
    created: bool,
) -> ScimResult<Group> {
    let display =
        get_ci(resource.as_object().ok_or_else(|| ScimError::invalid_syntax("not an object"))?, "displayName")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| ScimError::invalid_value("displayName is required"))?;
    let mut wanted = Vec::new();
    for m in group_members(&resource) {
        let id = parse_id(&m).ok_or_else(|| {
            ScimError::invalid_value(format!("member {:?} is not a user id", m.chars().take(64).collect::<String>()))
        })?;
        wanted.push(UserId(id));
    }
    let name = group_name_for(&display);
    let mut errors = Vec::new();
    validate::name(&mut errors, "displayName", &name);
    validate::finish(errors).map_err(|e| invalid(e.into()))?;
    if created {
        group.name = name;
        tx.insert_group(&group).await?;
        tx.audit(scim_event(
            caller,
            Action::GroupCreate,
            Some(group.id.into()),
            operation,
            json!({ "name": group.name, "displayName": display }),
        ));
    } else {
        let before = group.name.clone();
        group.name = name;
        group.updated_at = tx.now();
        let v = group.version;
        group = tx.update_group(&group, v).await?;
        tx.audit(scim_event(
            caller,
            Action::GroupUpdate,
            Some(group.id.into()),
            operation,
            json!({ "name_before": before, "name": group.name, "displayName": display }),
        ));
    }
    let raw =
        serde_json::to_string(&strip_owned(resource.clone())).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let external_id = resource.get("externalId").and_then(Value::as_str);
    tx.scim_put_group(group.id, &raw, &connector(caller), external_id, Some(&wardkey_scim::resource::fold(&display)))
        .await?;
    let current: Vec<UserId> = tx.scim_group_members(group.id).await?.into_iter().map(|m| m.id).collect();
    for u in &current {
        if !wanted.contains(u) {
            tx.remove_member(group.id, Member::User(*u)).await?;
            tx.audit(scim_event(
                caller,
                Action::GroupMemberRemove,
                Some(group.id.into()),
                operation,
                json!({ "member": Member::User(*u).target() }),
            ));
        }
    }
    for u in &wanted {
        if !current.contains(u) {
            add_member_in_tx(tx, caller, group.id, *u, operation).await?;
        }
    }
    Ok(group)
}

// ---------------------------------------------------------------------------------------------

impl Services {
    fn scim_dialect(&self) -> Dialect {
        dialect(self.store.backend())
    }

    /// Lists Users or Groups: filter translated to SQL, sorted (ties by id), 1-based paging.
    pub async fn scim_list(
        &self,
        by: &Authorized<Scim>,
        kind: ResourceKind,
        req: &ListRequest,
        base: &str,
        with_members: bool,
    ) -> ScimResult<ListResult> {
        let target = None;
        let result: ScimResult<ListResult> = async {
            let d = self.scim_dialect();
            let cond: Option<SqlCondition> = match req.filter.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
                Some(f) => Some(translate(kind, &wardkey_scim::parse_filter(f)?, d, 1)?),
                None => None,
            };
            let sort = match req.sort_by.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
                Some(s) => match wardkey_scim::parse_patch_path(s)? {
                    wardkey_scim::PatchPath::Attr(p) => Some(sort_expr(kind, &p, d)?),
                    _ => return Err(ScimError::invalid_value("sortBy must name an attribute").into()),
                },
                None => None,
            };
            let descending = match req.sort_order.as_deref() {
                None => false,
                Some(o) if o.eq_ignore_ascii_case("ascending") => false,
                Some(o) if o.eq_ignore_ascii_case("descending") => true,
                Some(_) => return Err(ScimError::invalid_value("sortOrder must be ascending or descending").into()),
            };
            let start_index = req.start_index.unwrap_or(1).max(1);
            let count = req.count.unwrap_or(100).clamp(0, MAX_RESULTS);
            let page = ScimPage { filter: cond.as_ref(), sort, descending, offset: start_index - 1, limit: count };
            let mut r = self.store.read().await?;
            let (total, resources) = match kind {
                ResourceKind::User => {
                    let (total, rows) = r.scim_list_users(&page).await?;
                    (total, rows.iter().map(|row| render_user(row, base)).collect())
                }
                ResourceKind::Group => {
                    let (total, rows) = r.scim_list_groups(&page).await?;
                    let mut out = Vec::with_capacity(rows.len());
                    for row in &rows {
                        let members = if with_members { Some(r.scim_group_members(row.group.id).await?) } else { None };
                        out.push(render_group(row, members.as_deref(), base));
                    }
                    (total, out)
                }
            };
            Ok(ListResult { total, start_index, resources })
        }
        .await;
        self.recorded(by.caller(), "scim_list", target, result).await
    }

    /// The query plan of a user filter (for tests and operators: filters run in SQL).
    pub async fn scim_explain_user_filter(&self, _by: &Authorized<Scim>, filter: &str) -> ScimResult<Vec<String>> {
        let cond = translate(ResourceKind::User, &wardkey_scim::parse_filter(filter)?, self.scim_dialect(), 1)?;
        Ok(self.store.read().await?.scim_explain_users(&cond).await?)
    }

    pub async fn scim_get(
        &self,
        by: &Authorized<Scim>,
        kind: ResourceKind,
        id: &str,
        base: &str,
        with_members: bool,
    ) -> ScimResult<(Value, i64)> {
        let target = Some(format!("{}:{}", kind.name().to_ascii_lowercase(), id));
        let result: ScimResult<(Value, i64)> = async {
            let uuid = parse_id(id).ok_or_else(|| not_found(kind, id))?;
            let mut r = self.store.read().await?;
            match kind {
                ResourceKind::User => {
                    let row = r.scim_get_user(UserId(uuid)).await?.ok_or_else(|| not_found(kind, id))?;
                    Ok((render_user(&row, base), row.user.version))
                }
                ResourceKind::Group => {
                    let row = r.scim_get_group(GroupId(uuid)).await?.ok_or_else(|| not_found(kind, id))?;
                    let members = if with_members { Some(r.scim_group_members(row.group.id).await?) } else { None };
                    Ok((render_group(&row, members.as_deref(), base), row.group.version))
                }
            }
        }
        .await;
        self.recorded(by.caller(), "scim_get", target, result).await
    }

    /// POST /Users or /Groups.
    pub async fn scim_create(
        &self,
        by: &Authorized<Scim>,
        kind: ResourceKind,
        body: Value,
        base: String,
    ) -> ScimResult<Committed<Written>> {
        let resource = normalize(kind, &body)?;
        let caller = by.caller().clone();
        match kind {
            ResourceKind::User => {
                let fields = user_fields(&resource)?;
                validate_fields(&fields, &hr_from(&fields, &HrAttributes::default(), None))?;
                self.store
                    .write(move |tx| {
                        Box::pin(async move {
                            let now = tx.now();
                            let id = UserId::generate();
                            let manager = resolve_manager(tx, fields.manager.as_deref(), id).await?;
                            let user = User {
                                id,
                                username: fields.user_name.clone(),
                                display_name: fields.display_name.clone(),
                                email: fields.email.clone(),
                                status: UserStatus::PendingVerification,
                                hr: hr_from(&fields, &HrAttributes::default(), manager),
                                verification: None,
                                created_at: now,
                                updated_at: now,
                                version: 1,
                            };
                            tx.insert_user(&user).await?;
                            tx.audit(scim_event(
                                &caller,
                                Action::UserCreate,
                                Some(id.into()),
                                "create",
                                json!({ "username": user.username, "status": user.status, "hr": user.hr, "externalId": resource.get("externalId") }),
                            ));
                            let mut user = user;
                            // Activate before the SCIM row is written: its foreign-key check locks
                            // the users row, and updating a row locked from another savepoint of
                            // the same transaction makes PostgreSQL record a MultiXact.
                            if fields.active == Some(true) {
                                user = verify_and_activate(tx, &caller, user).await?;
                            }
                            let raw = serde_json::to_string(&strip_owned(resource.clone())).map_err(|e| ServiceError::Internal(e.to_string()))?;
                            tx.scim_put_user(id, &raw, &connector(&caller), &user_index(&resource)).await?;
                            if user.status == UserStatus::Active {
                                crate::jml::sync_birthright_in_tx(tx, &caller, &user, "scim create").await?;
                            }
                            let row = tx.scim_get_user(user.id).await?.ok_or_else(|| ServiceError::Internal("created user vanished".into()))?;
                            Ok::<_, ScimFailure>(Written { resource: render_user(&row, &base), version: row.user.version, id: id.to_string() })
                        })
                    })
                    .await
            }
            ResourceKind::Group => {
                self.store
                    .write(move |tx| {
                        Box::pin(async move {
                            let now = tx.now();
                            let group = Group {
                                id: GroupId::generate(),
                                name: String::new(),
                                description: None,
                                created_at: now,
                                updated_at: now,
                                version: 1,
                            };
                            let group = write_group(tx, &caller, group, resource, "create", true).await?;
                            group_written(tx, group.id, &base).await
                        })
                    })
                    .await
            }
        }
    }

    /// PUT (replace) or PATCH, in one write job.
    pub async fn scim_update(
        &self,
        by: &Authorized<Scim>,
        kind: ResourceKind,
        id: &str,
        change: Change,
        precondition: Precondition,
        base: String,
    ) -> ScimResult<Committed<Written>> {
        let uuid = parse_id(id).ok_or_else(|| not_found(kind, id))?;
        let id_text = id.to_owned();
        // Parse before the job: a malformed body writes nothing and holds no writer time.
        let change = match change {
            Change::Replace(body) => PreparedChange::Replace(normalize(kind, &body)?),
            Change::Patch(body) => PreparedChange::Patch(parse_patch(&body)?),
        };
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    match kind {
                        ResourceKind::User => {
                            let row = tx.scim_get_user(UserId(uuid)).await?.ok_or_else(|| not_found(kind, &id_text))?;
                            precondition.check(row.user.version)?;
                            let was_active = row.user.status == UserStatus::Active;
                            let (resource, op) = match change {
                                PreparedChange::Replace(r) => (r, "replace"),
                                PreparedChange::Patch(ops) => {
                                    let mut current = render_user(&row, &base);
                                    apply(kind, &mut current, &ops)?;
                                    (normalize(kind, &current)?, "patch")
                                }
                            };
                            let user = write_user(tx, &caller, row.user.clone(), was_active, resource, op).await?;
                            let row = tx.scim_get_user(user.id).await?.ok_or_else(|| not_found(kind, &id_text))?;
                            Ok(Written { resource: render_user(&row, &base), version: row.user.version, id: id_text })
                        }
                        ResourceKind::Group => {
                            let row =
                                tx.scim_get_group(GroupId(uuid)).await?.ok_or_else(|| not_found(kind, &id_text))?;
                            precondition.check(row.group.version)?;
                            let (resource, op) = match change {
                                PreparedChange::Replace(r) => (r, "replace"),
                                PreparedChange::Patch(ops) => {
                                    let members = tx.scim_group_members(row.group.id).await?;
                                    let mut current = render_group(&row, Some(&members), &base);
                                    apply(kind, &mut current, &ops)?;
                                    (normalize(kind, &current)?, "patch")
                                }
                            };
                            let group = write_group(tx, &caller, row.group.clone(), resource, op, false).await?;
                            group_written(tx, group.id, &base).await
                        }
                    }
                })
            })
            .await
    }

    /// DELETE: a user is tombstoned after losing every access; a group is tombstoned after its
    /// grants are revoked.
    pub async fn scim_delete(
        &self,
        by: &Authorized<Scim>,
        kind: ResourceKind,
        id: &str,
        precondition: Precondition,
    ) -> ScimResult<Committed<()>> {
        let uuid = parse_id(id).ok_or_else(|| not_found(kind, id))?;
        let id_text = id.to_owned();
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    match kind {
                        ResourceKind::User => {
                            let user = tx.get_user(UserId(uuid)).await?.ok_or_else(|| not_found(kind, &id_text))?;
                            precondition.check(user.version)?;
                            crate::lifecycle::revoke_access_in_tx(tx, &caller, &user, "scim delete").await?;
                            tx.delete_user(user.id, user.version).await?;
                            tx.audit(scim_event(
                                &caller,
                                Action::UserDelete,
                                Some(user.id.into()),
                                "delete",
                                json!({ "username": user.username }),
                            ));
                        }
                        ResourceKind::Group => {
                            let group = tx.get_group(GroupId(uuid)).await?.ok_or_else(|| not_found(kind, &id_text))?;
                            precondition.check(group.version)?;
                            crate::directory::revoke_everything(tx, &caller, Subject::Group(group.id), "scim delete")
                                .await?;
                            tx.delete_group(group.id, group.version).await?;
                            tx.audit(scim_event(
                                &caller,
                                Action::GroupDelete,
                                Some(group.id.into()),
                                "delete",
                                json!({ "name": group.name }),
                            ));
                        }
                    }
                    Ok::<_, ScimFailure>(())
                })
            })
            .await
    }
}

async fn group_written(tx: &mut WriteTx, id: GroupId, base: &str) -> ScimResult<Written> {
    let row = tx.scim_get_group(id).await?.ok_or_else(|| ServiceError::Internal("group vanished".into()))?;
    let members = tx.scim_group_members(id).await?;
    Ok(Written { resource: render_group(&row, Some(&members), base), version: row.group.version, id: id.to_string() })
}

/// A PUT body or a PATCH body.
#[derive(Debug, Clone)]
pub enum Change {
    Replace(Value),
    Patch(Value),
}

enum PreparedChange {
    Replace(Value),
    Patch(Vec<wardkey_scim::patch::PatchOperation>),
}
