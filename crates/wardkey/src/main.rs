//! `wardkey`: the server and its command line.

mod client;
mod config;
mod hr_cli;
mod keys;
mod local;
mod objects;

use clap::{Args, Parser, Subcommand};

/// mimalloc instead of the system allocator: the request path makes many small allocations
/// (measured: glibc malloc and free took ~20 % of the server's CPU under an AuthZEN load).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "wardkey",
    version,
    about = "Identity lifecycle and access management for organisations that handle PHI"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (embedded SQLite under ./wardkey-data on 127.0.0.1:8080 unless told otherwise).
    Serve(ServeArgs),
    /// Operator tasks that act on the store directly (needs access to the data directory or database).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Manage users over the API.
    #[command(subcommand)]
    User(client::UserCommand),
    /// Manage groups over the API.
    #[command(subcommand)]
    Group(client::GroupCommand),
    /// Manage resource types over the API.
    #[command(subcommand, name = "resource-type")]
    ResourceType(client::ResourceTypeCommand),
    /// Manage resources over the API.
    #[command(subcommand)]
    Resource(client::ResourceCommand),
    /// Manage roles over the API.
    #[command(subcommand)]
    Role(client::RoleCommand),
    /// Grant, list and revoke access over the API.
    #[command(subcommand)]
    Grant(client::GrantCommand),
    /// Verify and export the tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Service accounts (owned by a person) over the API.
    #[command(subcommand, name = "service-account")]
    ServiceAccount(objects::ServiceAccountCommand),
    /// Birthright role templates (roles from HR attributes) over the API.
    #[command(subcommand, name = "role-template")]
    RoleTemplate(objects::RoleTemplateCommand),
    /// Separation-of-duties rules over the API.
    #[command(subcommand, name = "sod-rule")]
    SodRule(objects::SodRuleCommand),
    /// Forbid rules (deny whatever grants allow, under a condition) over the API.
    #[command(subcommand, name = "forbid-rule")]
    ForbidRule(objects::ForbidRuleCommand),
    /// Emergency access: declare (as a signed-in person) and review.
    #[command(subcommand, name = "break-glass")]
    BreakGlass(objects::BreakGlassCommand),
    /// API tokens with their owners, over the API (`admin token` acts on the store directly).
    #[command(subcommand)]
    Token(objects::TokenCommand),
    /// HR roster imports (operator command on the store).
    #[command(subcommand)]
    Hr(hr_cli::HrCommand),
    /// The reconciliation report: orphaned, dormant, over-provisioned and ownerless accounts.
    Reconcile(hr_cli::ReconcileArgs),
}

/// Where the store is. `--database-url` (or WARDKEY_DATABASE_URL) selects PostgreSQL;
/// otherwise the embedded SQLite store in the data directory is used.
#[derive(Args, Clone)]
pub struct StoreArgs {
    /// Data directory: the SQLite database and the audit signing key live here.
    #[arg(long, env = "WARDKEY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL, e.g. postgres://wardkey@db.internal/wardkey (the key files stay in --data-dir).
    #[arg(long, env = "WARDKEY_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// TOML configuration file.
    #[arg(long, short = 'c', env = "WARDKEY_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Address to listen on.
    #[arg(long, env = "WARDKEY_LISTEN")]
    listen: Option<SocketAddr>,
    /// TLS certificate chain (PEM). Required to listen on a non-loopback address.
    #[arg(long, env = "WARDKEY_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "WARDKEY_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Allow plain HTTP on a non-loopback address (only behind a TLS-terminating proxy on a trusted network).
    #[arg(long, env = "WARDKEY_INSECURE_HTTP")]
    insecure_http: bool,
    /// The URL browsers use to reach Wardkey (passkeys are bound to its host). Default:
    /// http://localhost:<port> on loopback, https://<listen address> with TLS.
    #[arg(long, env = "WARDKEY_PUBLIC_URL")]
    public_url: Option<String>,
    /// File holding the key that seals TOTP secrets (created 0600 if missing). Default:
    /// <data dir>/secrets.key; keep it out of database backups.
    #[arg(long, env = "WARDKEY_SECRETS_KEY_FILE")]
    secrets_key_file: Option<PathBuf>,
    /// Append every signed audit checkpoint to this file, outside the data directory
    /// ([audit] witness_file).
    #[arg(long, env = "WARDKEY_AUDIT_WITNESS_FILE")]
    audit_witness_file: Option<PathBuf>,
    /// POST every signed audit checkpoint to this URL ([audit] witness_url).
    #[arg(long, env = "WARDKEY_AUDIT_WITNESS_URL", hide_env_values = true)]
    audit_witness_url: Option<String>,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an API token and print it once. Recorded in the audit log as a local operator action.
    Create {
        #[command(flatten)]
        store: StoreArgs,
        /// A name that says who or what uses the token.
        #[arg(long)]
        name: String,
        /// Scope: admin, scim, pdp or audit:read. Repeat for several.
        #[arg(long = "scope", required = true, value_parser = parse_scope)]
        scopes: Vec<wardkey_domain::Scope>,
        /// Whom the token acts for: `user:<id>` or `service-account:<id>` (active; disabling them
        /// revokes the token), or `operator` for a token of the host's operator that no person owns.
        #[arg(long, value_parser = parse_local_owner)]
        owner: wardkey_domain::TokenOwner,
        /// Expire the token after this many days (default: [tokens] default_lifetime_days, 90).
        #[arg(long)]
        expires_in_days: Option<u32>,
        /// Print JSON instead of the bare token.
        #[arg(long)]
        json: bool,
    },
    /// List API tokens (never their secrets).
    List {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API token at once.
    Revoke {
        #[command(flatten)]
        store: StoreArgs,
        /// Token id.
        id: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute the Merkle tree from the stored events, check every signed checkpoint and
    /// every consistency step. Exits non-zero naming the first bad index.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        /// Public verifier key file (default: audit-signing.pub in the data directory).
        #[arg(long)]
        verifier_key: Option<PathBuf>,
        /// Treat events not yet covered by a signed checkpoint as a failure.
        #[arg(long)]
        require_signed_tail: bool,
        /// A signed checkpoint kept outside the store (a note, or the audit witness file:
        /// its last checkpoint counts). Fails if the store is behind it (truncation,
        /// rollback) or disagrees with it (a rewritten log).
        #[arg(long, value_name = "FILE")]
        trusted_checkpoint: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Write every event as one JSON object per line.
    Export {
        #[command(flatten)]
        store: StoreArgs,
        /// Output format: only `jsonl` (one JSON object per line) is written; any other is refused.
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        /// Output file (default: standard output).
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
        /// Only events with index ≥ this.
        #[arg(long)]
        from_index: Option<u64>,
    },
}

/// Formats `audit export` writes. A format it does not write is refused by the parser, never
/// silently replaced by another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ExportFormat {
    /// One JSON object per line, in index order.
    Jsonl,
}

/// `--owner` of `admin token create`: `user:<id>`, `service-account:<id>` or `operator`.
fn parse_local_owner(s: &str) -> Result<wardkey_domain::TokenOwner, String> {
    use wardkey_domain::TokenOwner;
    if s == TokenOwner::OPERATOR {
        return Ok(TokenOwner::System(TokenOwner::OPERATOR.into()));
    }
    let (kind, id) =
        s.split_once(':').ok_or_else(|| format!("owner {s:?}: use user:<id>, service-account:<id> or operator"))?;
    let kind = if kind == "service-account" { "service_account" } else { kind };
    match TokenOwner::from_parts(kind, id) {
        Some(o @ (TokenOwner::User(_) | TokenOwner::ServiceAccount(_))) => Ok(o),
        _ => Err(format!("owner {s:?}: use user:<id>, service-account:<id> or operator")),
    }
}

fn parse_scope(s: &str) -> Result<wardkey_domain::Scope, String> {
    wardkey_domain::Scope::parse(s).ok_or_else(|| format!("unknown scope {s:?}; use admin, scim, pdp or audit:read"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Admin(AdminCommand::Token(cmd)) => match cmd {
                TokenCommand::Create { store, name, scopes, owner, expires_in_days, json } => {
                    local::token_create(&store, name, scopes, owner, expires_in_days, json).await
                }
                TokenCommand::List { store, json } => local::token_list(&store, json).await,
                TokenCommand::Revoke { store, id } => local::token_revoke(&store, &id).await,
            },
            Command::Hr(hr_cli::HrCommand::Import(args)) => hr_cli::import(args).await,
            Command::Reconcile(args) => hr_cli::reconcile(args).await,
            Command::User(cmd) => client::run_user(cmd).await,
            Command::Group(cmd) => client::run_group(cmd).await,
            Command::ResourceType(cmd) => client::run_resource_type(cmd).await,
            Command::Resource(cmd) => client::run_resource(cmd).await,
            Command::Role(cmd) => client::run_role(cmd).await,
            Command::Grant(cmd) => client::run_grant(cmd).await,
            Command::ServiceAccount(cmd) => objects::run_service_account(cmd).await,
            Command::RoleTemplate(cmd) => objects::run_role_template(cmd).await,
            Command::SodRule(cmd) => objects::run_sod_rule(cmd).await,
            Command::ForbidRule(cmd) => objects::run_forbid_rule(cmd).await,
            Command::BreakGlass(cmd) => objects::run_break_glass(cmd).await,
            Command::Token(cmd) => objects::run_token(cmd).await,
            Command::Audit(AuditCommand::Verify {
                store,
                verifier_key,
                require_signed_tail,
                trusted_checkpoint,
                json,
            }) => {
                let opts = local::VerifyOptions { require_signed_tail, trusted_checkpoint, json };
                local::audit_verify(&store, verifier_key.as_deref(), opts).await
            }
            Command::Audit(AuditCommand::Export { store, format: ExportFormat::Jsonl, output, from_index }) => {
                local::audit_export(&store, output.as_deref(), from_index).await
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// File name of the TOTP-sealing key in the data directory (the default location).
const SECRETS_KEY_FILE: &str = "secrets.key";

fn default_public_url(config: &wardkey_server::ServerConfig) -> String {
    let port = config.listen.port();
    if config.tls.is_none() && config.listen.ip().to_canonical().is_loopback() {
        format!("http://localhost:{port}")
    } else {
        let scheme = if config.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", config.listen)
    }
}

fn create_private_dir(dir: &std::path::Path) -> Result<(), String> {
    if dir.exists() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

async fn serve(args: ServeArgs) -> Result<ExitCode, String> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WARDKEY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let file = match &args.store.config {
        Some(p) => config::load_file(p)?,
        None => config::FileConfig::default(),
    };
    let location = config::StoreLocation::resolve(args.store.data_dir.clone(), args.store.database_url.clone(), &file);
    let listen: SocketAddr = match args.listen.or(file.listen) {
        Some(a) => a,
        None => config::DEFAULT_LISTEN.parse().map_err(|e| format!("default listen address: {e}"))?,
    };
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert_path), Some(key_path)) => Some(wardkey_server::TlsConfig { cert_path, key_path }),
        _ => {
            file.tls.as_ref().map(|t| wardkey_server::TlsConfig { cert_path: t.cert.clone(), key_path: t.key.clone() })
        }
    };
    let mut audit = config::AuditSettings::from_file(&file);
    if let Some(f) = args.audit_witness_file.clone() {
        audit.witness_file = Some(f);
    }
    if let Some(u) = args.audit_witness_url.clone().filter(|u| !u.is_empty()) {
        audit.witness_url = Some(u);
    }
    // [hr]: roster column mapping, circuit breaker, dormancy (HTTP imports and the report).
    let hr = file.hr.clone().unwrap_or_default();
    hr.validate().map_err(|e| format!("[hr] in the config file: {e}"))?;
    wardkey_service::hr::configure(hr);
    let server_config = wardkey_server::ServerConfig {
        listen,
        tls,
        insecure_http: args.insecure_http || file.insecure_http.unwrap_or(false),
        checkpoint_interval: audit.checkpoint_interval,
        checkpoint_every_events: audit.checkpoint_every_events,
        http: file.http.as_ref().map_or_else(|| Ok(Default::default()), config::HttpFile::limits)?,
        ..wardkey_server::ServerConfig::default()
    };
    // Refuse a dangerous bind before creating anything on disk.
    wardkey_server::check_bind_policy(&server_config).map_err(|e| e.to_string())?;
    // The data directory is created before the witness file is checked against it.
    create_private_dir(&location.data_dir)?;
    let server_config = wardkey_server::ServerConfig {
        witness: audit.witness(&location.data_dir, audit.checkpoint_interval)?,
        ..server_config
    };

    let public_url = args
        .public_url
        .clone()
        .or_else(|| file.auth.as_ref().and_then(|a| a.public_url.clone()))
        .unwrap_or_else(|| default_public_url(&server_config));
    let key_path = args
        .secrets_key_file
        .clone()
        .or_else(|| file.auth.as_ref().and_then(|a| a.secrets_key_file.clone()))
        .unwrap_or_else(|| location.data_dir.join(SECRETS_KEY_FILE));
    let authn = config::authn_settings(file.auth.as_ref(), &public_url)?;
    if let Some(parent) = key_path.parent()
        && !parent.as_os_str().is_empty()
    {
        create_private_dir(parent)?;
    }
    let (secrets, created_secrets) = wardkey_authn::secretbox::SecretKey::load_or_create(&key_path)
        .map_err(|e| format!("secrets key {}: {e}", key_path.display()))?;
    if created_secrets {
        eprintln!(
            "Created the secrets key {} (fingerprint {}); it seals TOTP secrets. Back it up apart from the database.",
            key_path.display(),
            secrets.fingerprint()
        );
    }
    let (services, created_key) = local::open_services_with(
        &location,
        wardkey_service::ServiceConfig {
            audit_reads: audit.audit_reads,
            durable_reads: audit.durable_reads,
            tokens: config::token_settings(file.tokens.as_ref())?,
        },
        true,
        Some((authn, secrets)),
    )
    .await?;
    if created_key {
        eprintln!(
            "Created the audit signing key in {} (keep {} secret; give auditors {}).",
            location.data_dir.display(),
            keys::SIGNING_KEY_FILE,
            keys::VERIFIER_KEY_FILE
        );
    }
    if let Some(token) = services.bootstrap().await.map_err(|e| format!("bootstrap failed: {e}"))? {
        eprintln!();
        eprintln!("  First start: one-time bootstrap admin API token (shown only now, store it safely):");
        eprintln!();
        eprintln!("    {token}");
        eprintln!();
        eprintln!(
            "  It expires in 24 hours, or as soon as an admin token owned by a person or service account exists."
        );
        eprintln!();
    }
    eprintln!(
        "wardkey listening on {}://{listen} (store: {})",
        if server_config.tls.is_some() { "https" } else { "http" },
        location.describe()
    );
    let shutdown = async {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
    };
    wardkey_server::run(server_config, services, shutdown).await.map_err(|e| e.to_string())?;
    eprintln!("wardkey stopped; final audit checkpoint written");
    Ok(ExitCode::SUCCESS)
}
