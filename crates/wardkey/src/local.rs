//! Commands that act on the store directly, as the local operator.

use crate::StoreArgs;
use crate::config::{self, FileConfig, StoreLocation};
use crate::keys;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use wardkey_domain::{ApiTokenId, NewApiToken, Scope, SystemClock, TokenOwner};
use wardkey_service::{AuthnSettings, ServiceConfig, Services};
use wardkey_store::{AuditQuery, Store};

fn location(args: &StoreArgs) -> Result<StoreLocation, String> {
    let file = match &args.config {
        Some(p) => config::load_file(p)?,
        None => FileConfig::default(),
    };
    Ok(StoreLocation::resolve(args.data_dir.clone(), args.database_url.clone(), &file))
}

pub async fn open_store(loc: &StoreLocation) -> Result<Store, String> {
    let clock = Arc::new(SystemClock);
    let result = match &loc.database_url {
        Some(url) => Store::open(url, clock).await,
        None => Store::open_sqlite_dir(&loc.data_dir, clock).await,
    };
    result.map_err(|e| format!("cannot open the store ({}): {e}", loc.describe()))
}

/// Opens the store with its signing key (created on first use when `create_key`).
pub async fn open_services(
    loc: &StoreLocation,
    audit_reads: bool,
    create_key: bool,
) -> Result<(Services, bool), String> {
    open_services_with(loc, ServiceConfig { audit_reads, ..ServiceConfig::default() }, create_key, None).await
}

/// [`open_services`] with authentication settings and the TOTP-sealing key (the server);
/// without them, operator commands get defaults and a throw-away key (they sign no one in).
pub async fn open_services_with(
    loc: &StoreLocation,
    config: ServiceConfig,
    create_key: bool,
    authn: Option<(AuthnSettings, wardkey_authn::secretbox::SecretKey)>,
) -> Result<(Services, bool), String> {
    let key_exists = keys::signing_key_path(&loc.data_dir).exists();
    if !key_exists && !create_key {
        return Err(format!(
            "no audit signing key in {}; start `wardkey serve` once with this data directory first",
            loc.data_dir.display()
        ));
    }
    let store = open_store(loc).await?;
    if !key_exists {
        // A log already signed by some key must not quietly continue under a new one (a new
        // key on one PostgreSQL node would fork the log's signatures).
        let signed =
            store.read().await.map_err(|e| e.to_string())?.latest_checkpoint().await.map_err(|e| e.to_string())?;
        if signed.is_some() {
            store.close().await;
            return Err(format!(
                "the audit log already has signed checkpoints but {} is missing: restore the signing key \
                 (every node sharing a database needs the same key file)",
                keys::signing_key_path(&loc.data_dir).display()
            ));
        }
    }
    let (signer, created) = keys::load_or_create_signer(&loc.data_dir)?;
    store.set_signer(signer);
    let services = match authn {
        None => Services::new(store, config),
        Some((settings, secrets)) => {
            Services::with_authn(store, config, settings, secrets).map_err(|e| e.to_string())?
        }
    };
    Ok((services, created))
}

/// A service error for the terminal: a refusal names each field at fault.
fn describe(e: &wardkey_service::ServiceError) -> String {
    match e {
        wardkey_service::ServiceError::Invalid(errors) => {
            let fields: String = errors.iter().map(|f| format!("\n  {}: {}", f.field, f.message)).collect();
            format!("invalid input{fields}")
        }
        other => other.to_string(),
    }
}

pub(crate) fn os_user() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

pub async fn token_create(
    args: &StoreArgs,
    name: String,
    scopes: Vec<Scope>,
    owner: TokenOwner,
    expires_in_days: Option<u32>,
    json: bool,
) -> Result<ExitCode, String> {
    let file = match &args.config {
        Some(p) => config::load_file(p)?,
        None => FileConfig::default(),
    };
    let loc = StoreLocation::resolve(args.data_dir.clone(), args.database_url.clone(), &file);
    let tokens = config::token_settings(file.tokens.as_ref())?;
    let (services, _) =
        open_services_with(&loc, ServiceConfig { tokens, ..ServiceConfig::default() }, true, None).await?;
    let operator = services.operator(&os_user());
    let expires_at = expires_in_days.map(|d| services.clock().now() + chrono::Duration::days(i64::from(d)));
    let result = services.create_token(&operator, NewApiToken { name, scopes, owner, expires_at }).await;
    services.close().await;
    let committed = result.map_err(|e| describe(&e))?;
    let (token, secret) = committed.value;
    if json {
        let out = serde_json::json!({ "token": token, "secret": secret });
        println!("{out}");
    } else {
        println!("{secret}");
        eprintln!(
            "token {} ({}) for {} with scopes {} created, expires {}; the secret above is shown only once",
            token.id,
            token.name,
            token.owner.principal(),
            token.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","),
            token.expires_at.map_or_else(|| "never".to_owned(), |t| t.to_rfc3339()),
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn token_list(args: &StoreArgs, json: bool) -> Result<ExitCode, String> {
    let loc = location(args)?;
    let (services, _) = open_services(&loc, true, false).await?;
    let operator = services.operator(&os_user());
    let result = services.list_tokens(&operator).await;
    services.close().await;
    let tokens = result.map_err(|e| e.to_string())?;
    if json {
        println!("{}", serde_json::to_string_pretty(&tokens).map_err(|e| e.to_string())?);
    } else {
        let now = chrono::Utc::now();
        for t in tokens {
            let state = if t.revoked_at.is_some() {
                "revoked"
            } else if t.is_usable_at(now) {
                "active"
            } else {
                "expired"
            };
            println!(
                "{}  {:<24} {:<8} {:<52} {}",
                t.id,
                t.name,
                state,
                t.owner.principal(),
                t.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn token_revoke(args: &StoreArgs, id: &str) -> Result<ExitCode, String> {
    let id: ApiTokenId = id.parse().map_err(|_| format!("{id:?} is not a token id"))?;
    let loc = location(args)?;
    let (services, _) = open_services(&loc, true, false).await?;
    let operator = services.operator(&os_user());
    let result = services.revoke_token(&operator, id).await;
    services.close().await;
    result.map_err(|e| e.to_string())?;
    eprintln!("token {id} revoked");
    Ok(ExitCode::SUCCESS)
}

/// Options of `wardkey audit verify`.
pub struct VerifyOptions {
    pub require_signed_tail: bool,
    pub trusted_checkpoint: Option<std::path::PathBuf>,
    pub json: bool,
}

/// Most of a witness file read for its last checkpoint: the tail, since the file only grows.
const WITNESS_TAIL_BYTES: u64 = 64 * 1024;

/// Reads the trusted checkpoint file: the whole file when small, else its tail starting at a
/// checkpoint boundary (a blank line followed by a body line, never a signature line).
fn read_trusted_text(path: &Path) -> Result<String, String> {
    use std::io::{Read, Seek, SeekFrom};
    let cannot = |e: std::io::Error| format!("cannot read the trusted checkpoint {}: {e}", path.display());
    let mut f = std::fs::File::open(path).map_err(cannot)?;
    let len = f.metadata().map_err(cannot)?.len();
    let start = len.saturating_sub(WITNESS_TAIL_BYTES);
    f.seek(SeekFrom::Start(start)).map_err(cannot)?;
    let mut buf = Vec::with_capacity((len - start) as usize);
    f.read_to_end(&mut buf).map_err(cannot)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    if start == 0 {
        return Ok(text);
    }
    let from = text
        .match_indices("\n\n")
        .map(|(i, _)| i + 2)
        .find(|&i| i < text.len() && !text[i..].starts_with('\u{2014}') && !text[i..].starts_with('\n'))
        .ok_or_else(|| {
            format!(
                "the trusted checkpoint file {} is malformed: no checkpoint in its last {WITNESS_TAIL_BYTES} bytes",
                path.display()
            )
        })?;
    Ok(text[from..].to_owned())
}

pub async fn audit_verify(
    args: &StoreArgs,
    verifier_key: Option<&Path>,
    opts: VerifyOptions,
) -> Result<ExitCode, String> {
    let VerifyOptions { require_signed_tail, trusted_checkpoint, json } = opts;
    let loc = location(args)?;
    let verifier = keys::load_verifier(&loc.data_dir, verifier_key)?;
    // Name the key: an auditor compares it with the verifier key they hold, since a key file
    // beside the data can be replaced by whoever can rewrite the data.
    let key_name = format!("{}+{:08x}", verifier.origin(), verifier.key_id());
    // The trusted checkpoint is read and checked before the store is touched: a bad file is
    // an operator error, reported as such, not a verification result.
    let trusted = match &trusted_checkpoint {
        Some(p) => {
            let text = read_trusted_text(p)?;
            Some(
                wardkey_audit::open_trusted_checkpoint(&verifier, &text)
                    .map_err(|e| format!("{e} ({})", p.display()))?,
            )
        }
        None => None,
    };
    // Read-only: verification must not migrate, write or sign anything.
    let url = match &loc.database_url {
        Some(u) => u.clone(),
        None => format!("sqlite://{}", loc.data_dir.join(wardkey_store::SQLITE_FILE).display()),
    };
    let store =
        Store::open_for_verify(&url).await.map_err(|e| format!("cannot open the store ({}): {e}", loc.describe()))?;
    let started = std::time::Instant::now();
    let result = store.verify_audit_trusted(&verifier, trusted.as_ref()).await;
    store.close().await;
    let elapsed = started.elapsed();
    match result {
        Ok(report) => {
            // Events but no signed checkpoint at all: nothing vouches for any of them, and
            // a rewrite with recomputed hashes would look intact. Always a failure.
            let tail_fails = report.unchecked_events > 0 && (require_signed_tail || report.checkpoints == 0);
            if json {
                let out = serde_json::json!({
                    "ok": !tail_fails,
                    "verifier_key": key_name,
                    "events": report.tree_size,
                    "checkpoints": report.checkpoints,
                    "unsigned_tail": report.unchecked_events,
                    "trusted_checkpoint": trusted.as_ref().map(|t| serde_json::json!({ "size": t.size, "root": t.root.to_string() })),
                    "first_bad_index": if tail_fails { Some(report.tree_size - report.unchecked_events) } else { None },
                    "seconds": elapsed.as_secs_f64(),
                });
                println!("{out}");
            } else if tail_fails {
                println!(
                    "audit log verification failed at index {}: {} event(s) not covered by any signed checkpoint",
                    report.tree_size - report.unchecked_events,
                    report.unchecked_events
                );
            } else {
                println!(
                    "audit log OK: {} events, {} signed checkpoints verified with key {key_name}, {} event(s) newer than the last checkpoint ({:.2}s)",
                    report.tree_size,
                    report.checkpoints,
                    report.unchecked_events,
                    elapsed.as_secs_f64()
                );
                if let Some(t) = &trusted {
                    println!("consistent with the trusted checkpoint at size {} (root {})", t.size, t.root);
                }
            }
            Ok(if tail_fails { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        Err(failure) => {
            if json {
                let out = serde_json::json!({ "ok": false, "verifier_key": key_name, "first_bad_index": failure.index, "reason": failure.reason });
                println!("{out}");
            } else {
                println!("{failure}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

pub async fn audit_export(
    args: &StoreArgs,
    output: Option<&Path>,
    from_index: Option<u64>,
) -> Result<ExitCode, String> {
    let loc = location(args)?;
    let store = open_store(&loc).await?;
    let mut out: Box<dyn Write> = match output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).map_err(|e| format!("cannot create {}: {e}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut after = from_index.and_then(|i| i.checked_sub(1));
    let mut count = 0u64;
    let query = AuditQuery::default();
    loop {
        let mut reader = store.read().await.map_err(|e| e.to_string())?;
        let events = reader.audit_events(&query, after, 1000).await.map_err(|e| e.to_string())?;
        drop(reader);
        let Some(last) = events.last() else { break };
        after = Some(last.index);
        for e in &events {
            serde_json::to_writer(&mut out, e).map_err(|e| e.to_string())?;
            out.write_all(b"\n").map_err(|e| e.to_string())?;
            count += 1;
        }
        if events.len() < 1000 {
            break;
        }
    }
    out.flush().map_err(|e| e.to_string())?;
    store.close().await;
    eprintln!("exported {count} audit events");
    Ok(ExitCode::SUCCESS)
}
