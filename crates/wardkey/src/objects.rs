//! Commands for the rest of the access model over the REST API: service accounts, role
//! templates, separation-of-duties rules, forbid rules, break-glass and API tokens.

use crate::client::{Api, ApiArgs, ok, s, urlencode};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::process::ExitCode;

/// `user:<id or username>` or `service-account:<id or name>` as the API's owner object.
async fn resolve_owner(api: &Api, owner: &str) -> Result<Value, String> {
    let (kind, who) = owner
        .split_once(':')
        .ok_or_else(|| format!("owner {owner:?}: use user:<id or username> or service-account:<id or name>"))?;
    match kind {
        "user" => Ok(json!({ "type": "user", "id": api.resolve_user(who).await?["id"] })),
        "service-account" | "service_account" => {
            Ok(json!({ "type": "service_account", "id": api.resolve_by_name("service-accounts", who).await?["id"] }))
        }
        _ => Err(format!("owner {owner:?}: use user:<id or username> or service-account:<id or name>")),
    }
}

/// `user:…`, `service_account:…` or `system:…` for printing.
fn owner_text(t: &Value) -> String {
    format!("{}:{}", t["owner"]["type"].as_str().unwrap_or("-"), t["owner"]["id"].as_str().unwrap_or("-"))
}

// ---------------------------------------------------------------- service accounts

#[derive(Subcommand)]
pub enum ServiceAccountCommand {
    /// Create a service account owned by an active (not disabled) person.
    Create {
        #[command(flatten)]
        api: ApiArgs,
        /// A name that says what system uses it.
        #[arg(long)]
        name: String,
        /// The accountable person: user id or username.
        #[arg(long)]
        owner: String,
        /// What it is for.
        #[arg(long)]
        description: Option<String>,
    },
    /// List service accounts.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Disable a service account: its grants, group memberships and API tokens end at once.
    Disable {
        #[command(flatten)]
        api: ApiArgs,
        /// Service account id or name.
        account: String,
    },
    /// Delete a service account (its grants, memberships and tokens end first).
    Delete {
        #[command(flatten)]
        api: ApiArgs,
        /// Service account id or name.
        account: String,
    },
}

pub async fn run_service_account(cmd: ServiceAccountCommand) -> Result<ExitCode, String> {
    match cmd {
        ServiceAccountCommand::Create { api, name, owner, description } => {
            let api = Api::new(&api)?;
            let owner = api.resolve_user(&owner).await?;
            let body = json!({ "name": name, "owner_id": owner["id"], "description": description });
            let sa = api.post("/service-accounts", body).await?;
            api.print(&sa, |sa| {
                format!("created service account {} ({}), owner {}", s(sa, "id"), s(sa, "name"), s(&owner, "username"))
            });
        }
        ServiceAccountCommand::List { api } => {
            let api = Api::new(&api)?;
            let items = api.list_all("/service-accounts").await?;
            api.print_list(&items, |sa| {
                format!("{}  {:<24} {:<8} owner {}", s(sa, "id"), s(sa, "name"), s(sa, "status"), s(sa, "owner_id"))
            });
        }
        ServiceAccountCommand::Disable { api, account } => {
            let api = Api::new(&api)?;
            let sa = api.resolve_by_name("service-accounts", &account).await?;
            let body = json!({ "version": sa["version"], "status": "disabled" });
            let sa = api.patch(&format!("/service-accounts/{}", s(&sa, "id")), body).await?;
            api.print(&sa, |sa| format!("service account {} disabled; its access and tokens ended", s(sa, "name")));
        }
        ServiceAccountCommand::Delete { api, account } => {
            let api = Api::new(&api)?;
            let sa = api.resolve_by_name("service-accounts", &account).await?;
            api.delete(&format!("/service-accounts/{}?version={}", s(&sa, "id"), sa["version"])).await?;
            if !api.json {
                println!("deleted service account {}", s(&sa, "name"));
            }
        }
    }
    ok()
}

// ---------------------------------------------------------------- role templates

#[derive(Subcommand)]
pub enum RoleTemplateCommand {
    /// Create a birthright rule: people whose HR attributes match every condition get the roles.
    Create {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// A condition ATTRIBUTE:OP[:VALUE,VALUE...]; attribute employee_id, department, job_code,
        /// title or employment_type; op in, prefix or present. Repeat: all must hold.
        #[arg(long = "match", required = true)]
        matches: Vec<String>,
        /// A role given to matching people (id or name). Repeat for several.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
    },
    /// List role templates.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Delete a role template.
    Delete {
        #[command(flatten)]
        api: ApiArgs,
        /// Template id or name.
        template: String,
    },
}

fn parse_match(m: &str) -> Result<Value, String> {
    let mut parts = m.splitn(3, ':');
    let (Some(attribute), Some(op)) = (parts.next(), parts.next()) else {
        return Err(format!("--match {m:?} must look like department:in:Cardiology,Oncology"));
    };
    let values: Vec<&str> = parts.next().map(|v| v.split(',').filter(|x| !x.is_empty()).collect()).unwrap_or_default();
    Ok(json!({ "attribute": attribute, "op": op, "values": values }))
}

pub async fn run_role_template(cmd: RoleTemplateCommand) -> Result<ExitCode, String> {
    match cmd {
        RoleTemplateCommand::Create { api, name, description, matches, roles } => {
            let api = Api::new(&api)?;
            let all = matches.iter().map(|m| parse_match(m)).collect::<Result<Vec<_>, _>>()?;
            let mut role_ids = Vec::new();
            for r in &roles {
                role_ids.push(api.resolve_by_name("roles", r).await?["id"].clone());
            }
            let body =
                json!({ "name": name, "description": description, "rule": { "all": all }, "role_ids": role_ids });
            let t = api.post("/role-templates", body).await?;
            api.print(&t, |t| format!("created role template {} ({})", s(t, "id"), s(t, "name")));
        }
        RoleTemplateCommand::List { api } => {
            let api = Api::new(&api)?;
            let items = api.list_all("/role-templates").await?;
            api.print_list(&items, |t| {
                format!("{}  {:<24} roles {}  rule {}", s(t, "id"), s(t, "name"), t["role_ids"], t["rule"])
            });
        }
        RoleTemplateCommand::Delete { api, template } => {
            let api = Api::new(&api)?;
            let t = api.resolve_by_name("role-templates", &template).await?;
            api.delete(&format!("/role-templates/{}?version={}", s(&t, "id"), t["version"])).await?;
            if !api.json {
                println!("deleted role template {}", s(&t, "name"));
            }
        }
    }
    ok()
}

// ---------------------------------------------------------------- separation of duties

#[derive(Subcommand)]
pub enum SodRuleCommand {
    /// Create a rule that no one may hold both sides: each side `role:<id or name>` or
    /// `permission:<resource type>:<action>`.
    Create {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// One side, e.g. role:payments-approver or permission:ledger:write.
        #[arg(long)]
        left: String,
        /// The other side.
        #[arg(long)]
        right: String,
    },
    /// List separation-of-duties rules.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Delete a separation-of-duties rule.
    Delete {
        #[command(flatten)]
        api: ApiArgs,
        /// Rule id or name.
        rule: String,
    },
}

async fn sod_item(api: &Api, side: &str) -> Result<Value, String> {
    match side.split_once(':') {
        Some(("role", r)) => Ok(json!({ "kind": "role", "role_id": api.resolve_by_name("roles", r).await?["id"] })),
        Some(("permission", p)) => match p.split_once(':') {
            Some((t, a)) => Ok(json!({ "kind": "permission", "resource_type": t, "action": a })),
            None => Err(format!("{side:?}: use permission:<resource type>:<action>")),
        },
        _ => Err(format!("{side:?}: use role:<id or name> or permission:<resource type>:<action>")),
    }
}

pub async fn run_sod_rule(cmd: SodRuleCommand) -> Result<ExitCode, String> {
    match cmd {
        SodRuleCommand::Create { api, name, description, left, right } => {
            let api = Api::new(&api)?;
            let body = json!({
                "name": name,
                "description": description,
                "left": sod_item(&api, &left).await?,
                "right": sod_item(&api, &right).await?,
            });
            let r = api.post("/sod-rules", body).await?;
            api.print(&r, |r| format!("created separation-of-duties rule {} ({})", s(r, "id"), s(r, "name")));
        }
        SodRuleCommand::List { api } => {
            let api = Api::new(&api)?;
            let items = api.list_all("/sod-rules").await?;
            api.print_list(&items, |r| format!("{}  {:<24} {} <> {}", s(r, "id"), s(r, "name"), r["left"], r["right"]));
        }
        SodRuleCommand::Delete { api, rule } => {
            let api = Api::new(&api)?;
            let r = api.resolve_by_name("sod-rules", &rule).await?;
            api.delete(&format!("/sod-rules/{}?version={}", s(&r, "id"), r["version"])).await?;
            if !api.json {
                println!("deleted separation-of-duties rule {}", s(&r, "name"));
            }
        }
    }
    ok()
}

// ---------------------------------------------------------------- forbid rules

#[derive(Subcommand)]
pub enum ForbidRuleCommand {
    /// Create a rule that denies whatever grants allow, on the given resource types and actions
    /// (all when none are given), when its condition holds (always when none is given).
    Create {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// A resource type name it covers. Repeat for several.
        #[arg(long = "resource-type")]
        resource_types: Vec<String>,
        /// An action it covers. Repeat for several.
        #[arg(long = "action")]
        actions: Vec<String>,
        #[command(flatten)]
        when: ForbidWhenArgs,
        /// With --resource-property: members of this group are spared (a clearance).
        #[arg(long, requires = "resource_property")]
        unless_group: Option<String>,
    },
    /// List forbid rules.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Delete a forbid rule.
    Delete {
        #[command(flatten)]
        api: ApiArgs,
        /// Rule id or name.
        rule: String,
    },
}

/// At most one condition.
#[derive(Args)]
#[group(multiple = false)]
pub struct ForbidWhenArgs {
    /// Applies when the resource property has one of the values: PROPERTY=VALUE[,VALUE...]
    /// (e.g. category=psychiatry,hiv).
    #[arg(long)]
    resource_property: Option<String>,
    /// Applies when the device is trusted less than this: unknown, registered, managed or compliant.
    #[arg(long)]
    device_trust_below: Option<String>,
    /// Applies when the source address is outside every one of these networks (CIDR, comma-separated).
    #[arg(long)]
    network_outside: Option<String>,
}

fn forbid_when(w: &ForbidWhenArgs, unless_group: Option<String>) -> Result<Value, String> {
    if let Some(p) = &w.resource_property {
        let (property, values) =
            p.split_once('=').ok_or_else(|| format!("--resource-property {p:?}: use PROPERTY=VALUE[,VALUE...]"))?;
        let values: Vec<&str> = values.split(',').filter(|v| !v.is_empty()).collect();
        return Ok(
            json!({ "kind": "resource_property", "property": property, "values": values, "unless_group": unless_group }),
        );
    }
    if unless_group.is_some() {
        return Err("--unless-group goes with --resource-property".into());
    }
    if let Some(min) = &w.device_trust_below {
        return Ok(json!({ "kind": "device_trust_below", "min": min }));
    }
    if let Some(n) = &w.network_outside {
        let networks: Vec<&str> = n.split(',').filter(|v| !v.is_empty()).collect();
        return Ok(json!({ "kind": "network_outside", "networks": networks }));
    }
    Ok(json!({ "kind": "always" }))
}

pub async fn run_forbid_rule(cmd: ForbidRuleCommand) -> Result<ExitCode, String> {
    match cmd {
        ForbidRuleCommand::Create { api, name, description, resource_types, actions, when, unless_group } => {
            let api = Api::new(&api)?;
            let body = json!({
                "name": name,
                "description": description,
                "resource_types": resource_types,
                "actions": actions,
                "when": forbid_when(&when, unless_group)?,
            });
            let r = api.post("/forbid-rules", body).await?;
            api.print(&r, |r| format!("created forbid rule {} ({})", s(r, "id"), s(r, "name")));
        }
        ForbidRuleCommand::List { api } => {
            let api = Api::new(&api)?;
            let items = api.list_all("/forbid-rules").await?;
            api.print_list(&items, |r| {
                format!(
                    "{}  {:<24} types {}  actions {}  when {}",
                    s(r, "id"),
                    s(r, "name"),
                    r["resource_types"],
                    r["actions"],
                    r["when"]
                )
            });
        }
        ForbidRuleCommand::Delete { api, rule } => {
            let api = Api::new(&api)?;
            let r = api.resolve_by_name("forbid-rules", &rule).await?;
            api.delete(&format!("/forbid-rules/{}?version={}", s(&r, "id"), r["version"])).await?;
            if !api.json {
                println!("deleted forbid rule {}", s(&r, "name"));
            }
        }
    }
    ok()
}

// ---------------------------------------------------------------- break-glass

#[derive(Subcommand)]
pub enum BreakGlassCommand {
    /// Declare an emergency as a signed-in person (second factor within the step-up window):
    /// give yourself a break-glass role for a short time. Flagged for review.
    Declare {
        /// Server base URL.
        #[arg(long, env = "WARDKEY_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
        /// Your session: the value of the `__Host-wardkey_session` cookie after signing in.
        #[arg(long, env = "WARDKEY_SESSION", hide_env_values = true)]
        session: String,
        /// A role marked break_glass (id or name; names are looked up with --token).
        #[arg(long)]
        role: String,
        /// Limit the access to this resource id and what lies below it.
        #[arg(long)]
        resource: Option<String>,
        /// Why (at least 10 characters); reviewed afterwards.
        #[arg(long)]
        justification: String,
        /// How long (default 60, at most the configured maximum).
        #[arg(long)]
        minutes: Option<u32>,
        /// An admin API token to look the role name up with (WARDKEY_TOKEN); not needed with a role id.
        #[arg(long, env = "WARDKEY_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Print the server's JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// List break-glass grants (live ones unless --all), for review.
    List {
        #[command(flatten)]
        api: ApiArgs,
        /// Include revoked and expired ones.
        #[arg(long)]
        all: bool,
    },
}

pub async fn run_break_glass(cmd: BreakGlassCommand) -> Result<ExitCode, String> {
    match cmd {
        BreakGlassCommand::Declare { server, session, role, resource, justification, minutes, token, json } => {
            let role_id = if uuid::Uuid::parse_str(&role).is_ok() {
                role.clone()
            } else {
                let token = token.ok_or("name the role by id, or give --token to look its name up")?;
                let lookup = Api::new(&ApiArgs::for_token(&server, token, false))?;
                s(&lookup.resolve_by_name("roles", &role).await?, "id")
            };
            let api = Api::for_session(&server, session, json)?;
            let body = json!({
                "role_id": role_id,
                "resource_id": resource,
                "justification": justification,
                "duration_minutes": minutes,
            });
            let g = api.post("/break-glass", body).await?;
            api.print(&g, |g| format!("break-glass grant {} of role {role} until {}", s(g, "id"), s(g, "expires_at")));
        }
        BreakGlassCommand::List { api, all } => {
            let api = Api::new(&api)?;
            let items = api.list_all(&format!("/grants?include_inactive={all}")).await?;
            let items: Vec<Value> = items.into_iter().filter(|g| g["source"] == "break_glass").collect();
            api.print_list(&items, |g| {
                format!(
                    "{}  {}:{}  role {}  until {}  {}",
                    s(g, "id"),
                    g["subject"]["type"].as_str().unwrap_or("-"),
                    g["subject"]["id"].as_str().unwrap_or("-"),
                    s(g, "role_id"),
                    s(g, "expires_at"),
                    s(g, "justification")
                )
            });
        }
    }
    ok()
}

// ---------------------------------------------------------------- API tokens

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create an API token for an owner and print its secret once. It is revoked when the owner
    /// is disabled or leaves; it expires after the configured default (90 days) unless told.
    Create {
        #[command(flatten)]
        api: ApiArgs,
        /// A name that says who or what uses the token.
        #[arg(long)]
        name: String,
        /// Scope: admin, scim, pdp or audit:read. Repeat for several.
        #[arg(long = "scope", required = true, value_parser = crate::parse_scope)]
        scopes: Vec<wardkey_domain::Scope>,
        /// Whom it acts for: user:<id or username> or service-account:<id or name> (active).
        #[arg(long)]
        owner: String,
        /// When it expires (RFC 3339); at most the configured maximum lifetime from now.
        #[arg(long, conflicts_with = "expires_in_days")]
        expires_at: Option<String>,
        /// Expire after this many days instead.
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List API tokens with their owners (never their secrets).
    List {
        #[command(flatten)]
        api: ApiArgs,
        /// Only this owner's: user:<id or username> or service-account:<id or name>.
        #[arg(long)]
        owner: Option<String>,
    },
    /// Revoke an API token at once.
    Revoke {
        #[command(flatten)]
        api: ApiArgs,
        /// Token id.
        id: String,
    },
}

pub async fn run_token(cmd: TokenCommand) -> Result<ExitCode, String> {
    match cmd {
        TokenCommand::Create { api, name, scopes, owner, expires_at, expires_in_days } => {
            let api = Api::new(&api)?;
            let owner = resolve_owner(&api, &owner).await?;
            let expires_at = match (expires_at, expires_in_days) {
                (Some(at), _) => Some(at),
                (None, Some(days)) => Some((chrono::Utc::now() + chrono::Duration::days(i64::from(days))).to_rfc3339()),
                (None, None) => None,
            };
            let body = json!({ "name": name, "scopes": scopes, "owner": owner, "expires_at": expires_at });
            let created = api.post("/tokens", body).await?;
            if api.json {
                api.print(&created, |_| String::new());
            } else {
                println!("{}", s(&created, "secret"));
                let t = &created["token"];
                eprintln!(
                    "token {} ({}) for {} created, expires {}; the secret above is shown only once",
                    s(t, "id"),
                    s(t, "name"),
                    owner_text(t),
                    s(t, "expires_at")
                );
            }
        }
        TokenCommand::List { api, owner } => {
            let api = Api::new(&api)?;
            let path = match owner {
                Some(o) => {
                    let o = resolve_owner(&api, &o).await?;
                    format!("/tokens?owner={}", urlencode(&format!("{}:{}", s(&o, "type"), s(&o, "id"))))
                }
                None => "/tokens".to_owned(),
            };
            let items = api.list_all(&path).await?;
            let now = chrono::Utc::now();
            api.print_list(&items, |t| {
                let state = if !t["revoked_at"].is_null() {
                    "revoked"
                } else if t["expires_at"]
                    .as_str()
                    .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
                    .is_some_and(|e| e <= now)
                {
                    "expired"
                } else {
                    "active"
                };
                format!(
                    "{}  {:<24} {:<8} {:<52} {}  expires {}",
                    s(t, "id"),
                    s(t, "name"),
                    state,
                    owner_text(t),
                    t["scopes"]
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))
                        .unwrap_or_default(),
                    s(t, "expires_at")
                )
            });
        }
        TokenCommand::Revoke { api, id } => {
            let api = Api::new(&api)?;
            if uuid::Uuid::parse_str(&id).is_err() {
                return Err(format!("{id:?} is not a token id"));
            }
            api.delete(&format!("/tokens/{id}")).await?;
            if !api.json {
                println!("token {id} revoked");
            }
        }
    }
    ok()
}
