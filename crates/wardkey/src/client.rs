//! Commands that talk to a running server over its REST API.

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::process::ExitCode;

impl ApiArgs {
    /// Arguments for a token that did not come from these flags.
    pub(crate) fn for_token(server: &str, token: String, json: bool) -> ApiArgs {
        ApiArgs { server: server.to_owned(), token, json }
    }
}

/// The session cookie's name (see the server's pages).
const SESSION_COOKIE: &str = "__Host-wardkey_session";

#[derive(Args, Clone)]
pub struct ApiArgs {
    /// Server base URL.
    #[arg(long, env = "WARDKEY_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// API token (scope admin).
    #[arg(long, env = "WARDKEY_TOKEN", hide_env_values = true)]
    token: String,
    /// Print the server's JSON instead of a summary.
    #[arg(long, global = true)]
    json: bool,
}

pub(crate) struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
    pub(crate) json: bool,
    /// A person's session (`WARDKEY_SESSION`), sent as the session cookie instead of the token
    /// for the routes only a signed-in person may use (break-glass).
    session: Option<String>,
}

impl Api {
    pub(crate) fn new(args: &ApiArgs) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| format!("cannot build HTTP client: {e}"))?;
        Ok(Api {
            http,
            base: args.server.trim_end_matches('/').to_owned(),
            token: args.token.clone(),
            json: args.json,
            session: None,
        })
    }

    /// A client that authenticates with a person's session (the value of the session cookie)
    /// instead of an API token: for what only a signed-in person may do (break-glass).
    pub(crate) fn for_session(server: &str, session: String, json: bool) -> Result<Self, String> {
        let mut api = Api::new(&ApiArgs::for_token(server, String::new(), json))?;
        api.session = Some(session);
        Ok(api)
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}/api/v1{path}", self.base);
        let mut req = match &self.session {
            Some(session) => {
                self.http.request(method, &url).header(reqwest::header::COOKIE, format!("{SESSION_COOKIE}={session}"))
            }
            None => self.http.request(method, &url).bearer_auth(&self.token),
        };
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| format!("cannot reach {}: {e}", self.base))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| format!("reading the response: {e}"))?;
        let value: Value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        if status.is_success() { Ok(value) } else { Err(describe_problem(status.as_u16(), &value)) }
    }

    pub(crate) async fn get(&self, path: &str) -> Result<Value, String> {
        self.call(reqwest::Method::GET, path, None).await
    }
    pub(crate) async fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
    pub(crate) async fn patch(&self, path: &str, body: Value) -> Result<Value, String> {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    pub(crate) async fn delete(&self, path: &str) -> Result<Value, String> {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    /// Every item of a paginated list.
    pub(crate) async fn list_all(&self, path: &str) -> Result<Vec<Value>, String> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let url = match &cursor {
                Some(c) => format!("{path}{sep}limit=500&after={c}"),
                None => format!("{path}{sep}limit=500"),
            };
            let page = self.get(&url).await?;
            if let Some(arr) = page.get("items").and_then(Value::as_array) {
                items.extend(arr.iter().cloned());
            } else if let Some(arr) = page.as_array() {
                items.extend(arr.iter().cloned());
                break;
            }
            match page.get("next_cursor").and_then(Value::as_str) {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
            if items.len() > 1_000_000 {
                return Err("more than a million items; narrow the query".into());
            }
        }
        Ok(items)
    }

    pub(crate) fn print(&self, value: &Value, summary: impl FnOnce(&Value) -> String) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
        } else {
            println!("{}", summary(value));
        }
    }

    pub(crate) fn print_list(&self, items: &[Value], line: impl Fn(&Value) -> String) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(&items).unwrap_or_default());
        } else {
            for i in items {
                println!("{}", line(i));
            }
        }
    }

    /// A user id, or the id of the user with that username.
    pub(crate) async fn resolve_user(&self, who: &str) -> Result<Value, String> {
        if uuid::Uuid::parse_str(who).is_ok() {
            return self.get(&format!("/users/{who}")).await;
        }
        let matches = self.list_all(&format!("/users?username_prefix={}", urlencode(who))).await?;
        matches
            .into_iter()
            .find(|u| u["username"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(who)))
            .ok_or_else(|| format!("no user {who:?}"))
    }

    pub(crate) async fn resolve_by_name(&self, collection: &str, what: &str) -> Result<Value, String> {
        if uuid::Uuid::parse_str(what).is_ok() {
            return self.get(&format!("/{collection}/{what}")).await;
        }
        let all = self.list_all(&format!("/{collection}")).await?;
        all.into_iter()
            .find(|v| v["name"].as_str() == Some(what))
            .ok_or_else(|| format!("no {collection} entry named {what:?}"))
    }
}

pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn describe_problem(status: u16, v: &Value) -> String {
    let title = v.get("title").and_then(Value::as_str).unwrap_or("request failed");
    let mut out = format!("{status} {title}");
    if let Some(d) = v.get("detail").and_then(Value::as_str) {
        out.push_str(&format!(": {d}"));
    }
    if let Some(errors) = v.get("errors").and_then(Value::as_array) {
        for e in errors {
            out.push_str(&format!(
                "\n  {}: {}",
                e["field"].as_str().unwrap_or("?"),
                e["message"].as_str().unwrap_or("?")
            ));
        }
    }
    if v.is_string() {
        out.push_str(&format!(": {}", v.as_str().unwrap_or_default()));
    }
    out
}

pub(crate) fn s(v: &Value, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or("-").to_owned()
}

pub(crate) fn ok() -> Result<ExitCode, String> {
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user (starts as pending_verification).
    Create {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        username: String,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        employee_id: Option<String>,
        #[arg(long)]
        department: Option<String>,
        #[arg(long)]
        job_code: Option<String>,
        #[arg(long)]
        title: Option<String>,
        /// employee, contractor, vendor, student or volunteer.
        #[arg(long)]
        employment_type: Option<String>,
        /// Last day of employment (YYYY-MM-DD).
        #[arg(long)]
        end_date: Option<String>,
    },
    /// List users.
    List {
        #[command(flatten)]
        api: ApiArgs,
        /// pending_verification, active, suspended or disabled.
        #[arg(long)]
        status: Option<String>,
    },
    /// Show one user (id or username).
    Get {
        #[command(flatten)]
        api: ApiArgs,
        user: String,
    },
    /// Record that the person's identity was verified, and how.
    VerifyIdentity {
        #[command(flatten)]
        api: ApiArgs,
        user: String,
        /// e.g. in_person_government_id
        #[arg(long)]
        method: String,
    },
    /// Move a user through the lifecycle: active, suspended, disabled, pending_verification.
    SetStatus {
        #[command(flatten)]
        api: ApiArgs,
        user: String,
        status: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Delete a user (the identity stays as a tombstone with its audit history).
    Delete {
        #[command(flatten)]
        api: ApiArgs,
        user: String,
    },
    /// Set a person's password, read from standard input (never from the command line, where
    /// other users of the host could see it). Every session of the user ends.
    SetPassword {
        #[command(flatten)]
        api: ApiArgs,
        user: String,
        /// The person keeps this password (default: they must change it at next sign-in).
        #[arg(long)]
        no_must_change: bool,
    },
    /// Mark the password compromised: it must be changed at next sign-in; sessions end now.
    PasswordCompromised {
        #[command(flatten)]
        api: ApiArgs,
        user: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lift a sign-in lockout.
    Unlock {
        #[command(flatten)]
        api: ApiArgs,
        user: String,
    },
    /// Remove every second factor and recovery code (lost device); the next sign-in enrols again.
    ResetFactors {
        #[command(flatten)]
        api: ApiArgs,
        user: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Sign-in state: factors, failures, lock, password metadata.
    Authn {
        #[command(flatten)]
        api: ApiArgs,
        user: String,
    },
    /// List the user's live sessions.
    Sessions {
        #[command(flatten)]
        api: ApiArgs,
        user: String,
    },
    /// End every session of the user now.
    EndSessions {
        #[command(flatten)]
        api: ApiArgs,
        user: String,
    },
}

pub async fn run_user(cmd: UserCommand) -> Result<ExitCode, String> {
    match cmd {
        UserCommand::Create {
            api,
            username,
            display_name,
            email,
            employee_id,
            department,
            job_code,
            title,
            employment_type,
            end_date,
        } => {
            let api = Api::new(&api)?;
            let mut hr = serde_json::Map::new();
            for (k, v) in [
                ("employee_id", employee_id),
                ("department", department),
                ("job_code", job_code),
                ("title", title),
                ("employment_type", employment_type),
                ("end_date", end_date),
            ] {
                if let Some(v) = v {
                    hr.insert(k.into(), Value::String(v));
                }
            }
            let mut body = json!({ "username": username, "hr": hr });
            if let Some(d) = display_name {
                body["display_name"] = json!(d);
            }
            if let Some(e) = email {
                body["email"] = json!(e);
            }
            let u = api.post("/users", body).await?;
            api.print(&u, |u| format!("created user {} ({}), status {}", s(u, "id"), s(u, "username"), s(u, "status")));
        }
        UserCommand::List { api, status } => {
            let api = Api::new(&api)?;
            let path = match status {
                Some(st) => format!("/users?status={}", urlencode(&st)),
                None => "/users".into(),
            };
            let users = api.list_all(&path).await?;
            api.print_list(&users, |u| format!("{}  {:<24} {}", s(u, "id"), s(u, "username"), s(u, "status")));
        }
        UserCommand::Get { api, user } => {
            let api = Api::new(&api)?;
            let u = api.resolve_user(&user).await?;
            api.print(&u, |u| serde_json::to_string_pretty(u).unwrap_or_default());
        }
        UserCommand::VerifyIdentity { api, user, method } => {
            let api = Api::new(&api)?;
            let u = api.resolve_user(&user).await?;
            let body = json!({ "version": u["version"], "method": method });
            let u = api.post(&format!("/users/{}/verify-identity", s(&u, "id")), body).await?;
            api.print(&u, |u| format!("identity of {} verified", s(u, "username")));
        }
        UserCommand::SetStatus { api, user, status, reason } => {
            let api = Api::new(&api)?;
            let u = api.resolve_user(&user).await?;
            let body = json!({ "version": u["version"], "status": status, "reason": reason });
            let u = api.post(&format!("/users/{}/status", s(&u, "id")), body).await?;
            api.print(&u, |u| format!("{} is now {}", s(u, "username"), s(u, "status")));
        }
        UserCommand::Delete { api, user } => {
            let api = Api::new(&api)?;
            let u = api.resolve_user(&user).await?;
            api.delete(&format!("/users/{}?version={}", s(&u, "id"), u["version"])).await?;
            if !api.json {
                println!("deleted user {}", s(&u, "username"));
            }
        }
        UserCommand::SetPassword { api, user, no_must_change } => {
            let api = Api::new(&api)?;
            let u = api.resolve_user(&user).await?;
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| format!("reading the password from standard input: {e}"))?;
            let password = line.trim_end_matches(['\n', '\r']).to_owned();
            if password.is_empty() {
                return Err(
                    "no password on standard input (pipe it in: `printf '%s' \"$PW\" | wardkey user set-password ...`)"
                        .into(),
                );
            }
            api.post(
                &format!("/users/{}/password", s(&u, "id")),
                json!({ "password": password, "must_change": !no_must_change }),
            )
            .await?;
            if !api.json {
                println!(
                    "password of {} set{}",
                    s(&u, "username"),
                    if no_must_change { "" } else { "; it must be changed at next sign-in" }
                );
            }
        }
        UserCommand::PasswordCompromised { api, user, reason } => {
            let api = Api::new(&api)?;
            let u = api.resolve_user(&user).await?;
            api.post(&format!("/users/{}/password/compromised", s(&u, "id")), json!({ "reason": reason })).await?;
            if !api.json {
                println!("password of {} marked compromised; their sessions ended", s(&u, "username"));
            }
        }
        UserCommand::Unlock { api, user } => {
            let api = Api::new(&api)?;
            let u = api.resolve_user(&user).await?;
            let r = api.post(&format!("/users/{}/unlock", s(&u, "id")), json!({})).await?;
            api.print(&r, |r| {
                if r["was_locked"] == json!(true) {
                    format!("{} unlocked", s(&u, "username"))
                } else {
                    format!("{} was not locked; failure count cleared", s(&u, "username"))
                }
            });
        }
        UserCommand::ResetFactors { api, user, reason } => {
            let api = Api::new(&api)?;
            let u = api.resolve_user(&user).await?;
            let r = api.post(&format!("/users/{}/factors/reset", s(&u, "id")), json!({ "reason": reason })).await?;
            api.print(&r, |r| {
                format!("removed {} factor(s) of {}; they enrol again at next sign-in", r["removed"], s(&u, "username"))
            });
        }
        UserCommand::Authn { api, user } => {
            let api = Api::new(&api)?;
            let u = api.resolve_user(&user).await?;
            let r = api.get(&format!("/users/{}/authn", s(&u, "id"))).await?;
            api.print(&r, |r| serde_json::to_string_pretty(r).unwrap_or_default());
        }
        UserCommand::Sessions { api, user } => {
            let api = Api::new(&api)?;
            let u = api.resolve_user(&user).await?;
            let items = api.list_all(&format!("/sessions?user={}", s(&u, "id"))).await?;
            api.print_list(&items, |x| {
                format!("{}  since {}  from {}  {}", s(x, "id"), s(x, "created_at"), s(x, "source_ip"), s(x, "stage"))
            });
        }
        UserCommand::EndSessions { api, user } => {
            let api = Api::new(&api)?;
            let u = api.resolve_user(&user).await?;
            let r = api.post(&format!("/users/{}/sessions/revoke", s(&u, "id")), json!({})).await?;
            api.print(&r, |r| format!("ended {} session(s) of {}", r["ended"], s(&u, "username")));
        }
    }
    ok()
}

#[derive(Subcommand)]
pub enum GroupCommand {
    /// Create a group.
    Create {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// List groups.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Add a user to a group.
    AddMember {
        #[command(flatten)]
        api: ApiArgs,
        /// Group id or name.
        group: String,
        /// User id or username.
        user: String,
    },
}

pub async fn run_group(cmd: GroupCommand) -> Result<ExitCode, String> {
    match cmd {
        GroupCommand::Create { api, name, description } => {
            let api = Api::new(&api)?;
            let g = api.post("/groups", json!({ "name": name, "description": description })).await?;
            api.print(&g, |g| format!("created group {} ({})", s(g, "id"), s(g, "name")));
        }
        GroupCommand::List { api } => {
            let api = Api::new(&api)?;
            let groups = api.list_all("/groups").await?;
            api.print_list(&groups, |g| format!("{}  {}", s(g, "id"), s(g, "name")));
        }
        GroupCommand::AddMember { api, group, user } => {
            let api = Api::new(&api)?;
            let g = api.resolve_by_name("groups", &group).await?;
            let u = api.resolve_user(&user).await?;
            let r =
                api.post(&format!("/groups/{}/members", s(&g, "id")), json!({ "type": "user", "id": u["id"] })).await?;
            api.print(&r, |_| format!("{} is a member of {}", s(&u, "username"), s(&g, "name")));
        }
    }
    ok()
}

#[derive(Subcommand)]
pub enum ResourceTypeCommand {
    /// Create a resource type with its actions.
    Create {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        name: String,
        /// An action (read, write, delete, export, ...). Repeat for several.
        #[arg(long = "action", required = true)]
        actions: Vec<String>,
        /// Resources of this type hold PHI.
        #[arg(long)]
        phi: bool,
    },
    /// List resource types.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
}

pub async fn run_resource_type(cmd: ResourceTypeCommand) -> Result<ExitCode, String> {
    match cmd {
        ResourceTypeCommand::Create { api, name, actions, phi } => {
            let api = Api::new(&api)?;
            let t = api.post("/resource-types", json!({ "name": name, "actions": actions, "phi": phi })).await?;
            api.print(&t, |t| format!("created resource type {} ({})", s(t, "id"), s(t, "name")));
        }
        ResourceTypeCommand::List { api } => {
            let api = Api::new(&api)?;
            let v = api.get("/resource-types").await?;
            let items =
                v.get("items").and_then(Value::as_array).cloned().or_else(|| v.as_array().cloned()).unwrap_or_default();
            api.print_list(&items, |t| format!("{}  {:<20} {}", s(t, "id"), s(t, "name"), t["actions"]));
        }
    }
    ok()
}

#[derive(Subcommand)]
pub enum ResourceCommand {
    /// Create a resource.
    Create {
        #[command(flatten)]
        api: ApiArgs,
        /// Resource type id or name.
        #[arg(long = "type")]
        resource_type: String,
        #[arg(long)]
        name: String,
        /// Parent resource id.
        #[arg(long)]
        parent: Option<String>,
    },
    /// List resources.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
}

pub async fn run_resource(cmd: ResourceCommand) -> Result<ExitCode, String> {
    match cmd {
        ResourceCommand::Create { api, resource_type, name, parent } => {
            let api = Api::new(&api)?;
            let t = api.resolve_by_name("resource-types", &resource_type).await?;
            let r = api.post("/resources", json!({ "type_id": t["id"], "name": name, "parent_id": parent })).await?;
            api.print(&r, |r| format!("created resource {} ({})", s(r, "id"), s(r, "name")));
        }
        ResourceCommand::List { api } => {
            let api = Api::new(&api)?;
            let items = api.list_all("/resources").await?;
            api.print_list(&items, |r| format!("{}  {:<24} parent {}", s(r, "id"), s(r, "name"), s(r, "parent_id")));
        }
    }
    ok()
}

#[derive(Subcommand)]
pub enum RoleCommand {
    /// Create a role. Permissions as TYPE:ACTION[,ACTION...], e.g. dataset:read,write.
    Create {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long = "permission")]
        permissions: Vec<String>,
        /// Mark the role privileged (flagged in reviews; step-up to grant).
        #[arg(long)]
        privileged: bool,
    },
    /// List roles.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
}

fn parse_permission(p: &str) -> Result<Value, String> {
    let (t, actions) =
        p.split_once(':').ok_or_else(|| format!("permission {p:?} must look like dataset:read,write"))?;
    let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
    Ok(json!({ "resource_type": t, "actions": actions }))
}

pub async fn run_role(cmd: RoleCommand) -> Result<ExitCode, String> {
    match cmd {
        RoleCommand::Create { api, name, description, permissions, privileged } => {
            let api = Api::new(&api)?;
            let permissions = permissions.iter().map(|p| parse_permission(p)).collect::<Result<Vec<_>, _>>()?;
            let r = api
                .post("/roles", json!({ "name": name, "description": description, "permissions": permissions, "privileged": privileged }))
                .await?;
            api.print(&r, |r| format!("created role {} ({})", s(r, "id"), s(r, "name")));
        }
        RoleCommand::List { api } => {
            let api = Api::new(&api)?;
            let items = api.list_all("/roles").await?;
            api.print_list(&items, |r| format!("{}  {:<24} {}", s(r, "id"), s(r, "name"), r["permissions"]));
        }
    }
    ok()
}

#[derive(Subcommand)]
pub enum GrantCommand {
    /// Grant a role to a user, group or service account.
    Create {
        #[command(flatten)]
        api: ApiArgs,
        /// User id or username.
        #[arg(long, group = "subject")]
        user: Option<String>,
        /// Group id or name.
        #[arg(long, group = "subject")]
        group: Option<String>,
        /// Service account id.
        #[arg(long, group = "subject")]
        service_account: Option<String>,
        /// Role id or name.
        #[arg(long)]
        role: String,
        /// Limit the grant to this resource and its descendants.
        #[arg(long)]
        resource: Option<String>,
        /// Why the access is needed (required). The grant is recorded as `manual`, requested
        /// by you; approvals come from access requests, never from a flag.
        #[arg(long)]
        justification: String,
        /// When access ends (RFC 3339, e.g. 2026-12-31T23:59:59Z).
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// List grants (live ones unless --all).
    List {
        #[command(flatten)]
        api: ApiArgs,
        /// Only this user's grants (id or username).
        #[arg(long)]
        user: Option<String>,
        /// Include revoked and expired grants.
        #[arg(long)]
        all: bool,
    },
    /// Revoke a grant at once.
    Revoke {
        #[command(flatten)]
        api: ApiArgs,
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

pub async fn run_grant(cmd: GrantCommand) -> Result<ExitCode, String> {
    match cmd {
        GrantCommand::Create { api, user, group, service_account, role, resource, justification, expires_at } => {
            let api = Api::new(&api)?;
            let subject = if let Some(u) = user {
                json!({ "type": "user", "id": api.resolve_user(&u).await?["id"] })
            } else if let Some(g) = group {
                json!({ "type": "group", "id": api.resolve_by_name("groups", &g).await?["id"] })
            } else if let Some(sa) = service_account {
                json!({ "type": "service_account", "id": sa })
            } else {
                return Err("name the subject with --user, --group or --service-account".into());
            };
            let role = api.resolve_by_name("roles", &role).await?;
            let body = json!({
                "subject": subject,
                "role_id": role["id"],
                "resource_id": resource,
                "justification": justification,
                "expires_at": expires_at,
            });
            let g = api.post("/grants", body).await?;
            api.print(&g, |g| format!("granted role {} (grant {})", s(&role, "name"), s(g, "id")));
        }
        GrantCommand::List { api, user, all } => {
            let api = Api::new(&api)?;
            let mut path = format!("/grants?include_inactive={all}");
            if let Some(u) = user {
                let u = api.resolve_user(&u).await?;
                path.push_str(&format!("&subject_type=user&subject_id={}", s(&u, "id")));
            }
            let items = api.list_all(&path).await?;
            // Names beside ids: each subject, role and resource read once.
            let mut names = Names::default();
            for g in &items {
                names.learn(&api, g).await;
            }
            if api.json {
                let with_names: Vec<Value> = items
                    .iter()
                    .map(|g| {
                        let mut g = g.clone();
                        g["names"] = names.of(&g);
                        g
                    })
                    .collect();
                api.print_list(&with_names, |_| String::new());
            } else {
                api.print_list(&items, |g| {
                    let n = names.of(g);
                    format!(
                        "{}  {} {} ({})  role {} ({})  resource {}  expires {}{}",
                        s(g, "id"),
                        g["subject"]["type"].as_str().unwrap_or("-"),
                        n["subject"].as_str().unwrap_or("-"),
                        g["subject"]["id"].as_str().unwrap_or("-"),
                        n["role"].as_str().unwrap_or("-"),
                        s(g, "role_id"),
                        match g["resource_id"].as_str() {
                            Some(rid) => format!("{} ({rid})", n["resource"].as_str().unwrap_or("-")),
                            None => "(all)".to_owned(),
                        },
                        s(g, "expires_at"),
                        if g["revoked_at"].is_null() { "" } else { "  (revoked)" }
                    )
                });
            }
        }
        GrantCommand::Revoke { api, id, reason } => {
            let api = Api::new(&api)?;
            let g = api.get(&format!("/grants/{id}")).await?;
            let mut path = format!("/grants/{id}?version={}", g["version"]);
            if let Some(r) = reason {
                path.push_str(&format!("&reason={}", urlencode(&r)));
            }
            let g = api.delete(&path).await?;
            api.print(&g, |g| format!("revoked grant {}", s(g, "id")));
        }
    }
    ok()
}

/// Names of the objects grants refer to, read once each (`-` for one that is gone).
#[derive(Default)]
struct Names {
    known: std::collections::HashMap<String, String>,
}

impl Names {
    async fn learn(&mut self, api: &Api, g: &Value) {
        let subject = match g["subject"]["type"].as_str() {
            Some("user") => ("users", "username"),
            Some("group") => ("groups", "name"),
            _ => ("service-accounts", "name"),
        };
        let refs = [
            (subject.0, g["subject"]["id"].as_str(), subject.1),
            ("roles", g["role_id"].as_str(), "name"),
            ("resources", g["resource_id"].as_str(), "name"),
        ];
        for (collection, id, field) in refs {
            let Some(id) = id else { continue };
            let key = format!("{collection}/{id}");
            if self.known.contains_key(&key) {
                continue;
            }
            let name = match api.get(&format!("/{key}")).await {
                Ok(v) => v[field].as_str().unwrap_or("-").to_owned(),
                Err(_) => "-".to_owned(),
            };
            self.known.insert(key, name);
        }
    }

    fn of(&self, g: &Value) -> Value {
        let subject = match g["subject"]["type"].as_str() {
            Some("user") => "users",
            Some("group") => "groups",
            _ => "service-accounts",
        };
        let get = |collection: &str, id: &Value| {
            id.as_str().and_then(|id| self.known.get(&format!("{collection}/{id}"))).cloned()
        };
        json!({
            "subject": get(subject, &g["subject"]["id"]),
            "role": get("roles", &g["role_id"]),
            "resource": get("resources", &g["resource_id"]),
        })
    }
}
