//! Settings: built-in defaults < TOML file < `WARDKEY_*` environment < command-line flags.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_DATA_DIR: &str = "./wardkey-data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// The TOML file. Every key is optional. (No `Debug`: it may hold a database password.)
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub database_url: Option<String>,
    pub insecure_http: Option<bool>,
    pub tls: Option<TlsFile>,
    /// `[http]`: connection cap and timeouts.
    pub http: Option<HttpFile>,
    pub audit: Option<AuditFile>,
    pub auth: Option<AuthFile>,
    /// `[hr]`: roster column mapping (`[hr.columns]`), circuit breaker, dormancy.
    pub hr: Option<wardkey_service::hr::HrConfig>,
    /// `[tokens]`: API token lifetimes.
    pub tokens: Option<TokensFile>,
}

/// `[tokens]`: how long API tokens live. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensFile {
    /// Lifetime of a token created without an explicit expiry (default 90).
    pub default_lifetime_days: Option<u32>,
    /// Longest lifetime a token may be created with (default 365, at most 3650).
    pub max_lifetime_days: Option<u32>,
}

/// Token lifetimes from `[tokens]`, checked.
pub fn token_settings(file: Option<&TokensFile>) -> Result<wardkey_service::tokens::TokenSettings, String> {
    let mut t = wardkey_service::tokens::TokenSettings::default();
    if let Some(f) = file {
        if let Some(d) = f.default_lifetime_days {
            t.default_lifetime = chrono::Duration::days(i64::from(d));
        }
        if let Some(d) = f.max_lifetime_days {
            t.max_lifetime = chrono::Duration::days(i64::from(d));
        }
    }
    t.validate().map_err(|e| format!("[tokens] in the config file: {e}"))?;
    Ok(t)
}

/// `[auth]`: sign-in, sessions, lockout, passkeys. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFile {
    /// The URL people's browsers use to reach Wardkey (`https://wardkey.example.org`). Passkeys
    /// are bound to its host; cross-origin posts are refused against it.
    pub public_url: Option<String>,
    /// The key that seals TOTP secrets at rest. Keep it outside the database and its backups.
    pub secrets_key_file: Option<PathBuf>,
    /// Require a second factor for every person (default true).
    pub mfa_required: Option<bool>,
    pub idle_timeout_minutes: Option<u32>,
    pub absolute_lifetime_hours: Option<u32>,
    pub step_up_window_minutes: Option<u32>,
    /// Lock an account after this many consecutive failures (1..=100, default 10).
    pub lockout_after: Option<u32>,
    /// Minutes a lock lasts; 0 = until an admin unlocks (default 30).
    pub lockout_minutes: Option<u32>,
    /// Argon2id memory (KiB), iterations, lanes (default OWASP: 19456, 2, 1).
    pub argon2_memory_kib: Option<u32>,
    pub argon2_iterations: Option<u32>,
    pub argon2_lanes: Option<u32>,
    /// Hashes at once (default: one fewer than the cores, at least 1) and their CPU priority: `low` (nice 19, the
    /// default), `idle` (SCHED_IDLE) or `normal`.
    pub hash_threads: Option<u32>,
    pub hash_priority: Option<String>,
    /// Organisation name (authenticator apps show it; refused inside passwords).
    pub organisation: Option<String>,
}

/// `[http]`: bounds on connections, so slow or idle clients cannot exhaust the server.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFile {
    /// Seconds to receive a request's headers, counted from when the server starts waiting
    /// (so also the longest a kept-alive connection waits for its next request) (default 10).
    pub header_timeout_secs: Option<u64>,
    /// Seconds to receive a whole request body (default 30).
    pub body_timeout_secs: Option<u64>,
    /// Seconds a connection may sit with no bytes moving and no request running (default 60).
    pub idle_timeout_secs: Option<u64>,
    /// Open connections at most; more are closed at once (default 1024).
    pub max_connections: Option<usize>,
}

impl HttpFile {
    /// The limits this section sets over the defaults, checked.
    pub fn limits(&self) -> Result<wardkey_server::listen::HttpLimits, String> {
        let d = wardkey_server::listen::HttpLimits::default();
        let l = wardkey_server::listen::HttpLimits {
            header_timeout: self.header_timeout_secs.map_or(d.header_timeout, Duration::from_secs),
            body_timeout: self.body_timeout_secs.map_or(d.body_timeout, Duration::from_secs),
            idle_timeout: self.idle_timeout_secs.map_or(d.idle_timeout, Duration::from_secs),
            max_connections: self.max_connections.unwrap_or(d.max_connections),
        };
        l.validate().map_err(|e| format!("[http] in the config file: {e}"))?;
        Ok(l)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFile {
    /// Sign a checkpoint at least this often (seconds) while events arrive.
    pub checkpoint_interval_secs: Option<u64>,
    /// ... or as soon as this many events are unsigned.
    pub checkpoint_every_events: Option<u64>,
    /// Record an `api.read` event for every authenticated read (default true).
    pub audit_reads: Option<bool>,
    /// Answer a read only once its `api.read` event is on disk (default false: queued and
    /// written within 100 ms, drained at shutdown, never dropped).
    pub durable_reads: Option<bool>,
    /// Append every signed checkpoint to this file (must be outside the data directory), for
    /// `wardkey audit verify --trusted-checkpoint`.
    pub witness_file: Option<PathBuf>,
    /// POST every signed checkpoint (text/plain) to this URL; retried with backoff.
    pub witness_url: Option<String>,
}

pub fn load_file(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    if text.len() > 1 << 20 {
        return Err(format!("config file {} is larger than 1 MiB", path.display()));
    }
    toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))
}

/// Where the store lives, resolved. (No `Debug`: print it with [`StoreLocation::describe`].)
#[derive(Clone)]
pub struct StoreLocation {
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
}

impl StoreLocation {
    pub fn resolve(flag_dir: Option<PathBuf>, flag_url: Option<String>, file: &FileConfig) -> Self {
        StoreLocation {
            data_dir: flag_dir.or_else(|| file.data_dir.clone()).unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            database_url: flag_url.or_else(|| file.database_url.clone()).filter(|u| !u.is_empty()),
        }
    }

    pub fn describe(&self) -> String {
        match &self.database_url {
            Some(url) => redact_url(url),
            None => format!("sqlite {}", self.data_dir.join("wardkey.db").display()),
        }
    }
}

/// Drops any password from a database URL before it is printed or logged.
pub fn redact_url(url: &str) -> String {
    let (url, query) = match url.split_once('?') {
        Some((u, q)) => (u, Some(q)),
        None => (url, None),
    };
    let query = query.map(|q| {
        let parts: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_owned(),
            })
            .collect();
        format!("?{}", parts.join("&"))
    });
    let base = match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!(
                "{}://{}{}@{}",
                &url[..scheme_end],
                user,
                if userinfo.contains(':') { ":***" } else { "" },
                &url[at + 1..]
            )
        }
        _ => url.to_owned(),
    };
    format!("{base}{}", query.unwrap_or_default())
}

pub struct AuditSettings {
    pub checkpoint_interval: Duration,
    pub checkpoint_every_events: u64,
    pub audit_reads: bool,
    pub durable_reads: bool,
    pub witness_file: Option<PathBuf>,
    pub witness_url: Option<String>,
}

impl AuditSettings {
    pub fn from_file(file: &FileConfig) -> Self {
        let a = file.audit.as_ref();
        AuditSettings {
            checkpoint_interval: Duration::from_secs(
                a.and_then(|a| a.checkpoint_interval_secs).unwrap_or(5).clamp(1, 3600),
            ),
            checkpoint_every_events: a.and_then(|a| a.checkpoint_every_events).unwrap_or(1000).clamp(1, 10_000_000),
            audit_reads: a.and_then(|a| a.audit_reads).unwrap_or(true),
            durable_reads: a.and_then(|a| a.durable_reads).unwrap_or(false),
            witness_file: a.and_then(|a| a.witness_file.clone()),
            witness_url: a.and_then(|a| a.witness_url.clone()).filter(|u| !u.is_empty()),
        }
    }

    /// The witness settings for the server, checked: a valid http(s) URL, and a file outside
    /// the data directory (a copy inside it would be cut back together with the store).
    pub fn witness(&self, data_dir: &Path, poll: Duration) -> Result<wardkey_server::witness::WitnessConfig, String> {
        let w = wardkey_server::witness::WitnessConfig {
            file: self.witness_file.clone(),
            url: self.witness_url.clone(),
            poll,
            ..Default::default()
        };
        w.validate().map_err(|e| format!("[audit] {e}"))?;
        if let Some(f) = &w.file {
            if data_dir.exists() && wardkey_server::witness::file_inside(f, data_dir)? {
                return Err(format!(
                    "[audit] witness_file {} is inside the data directory {}: keep it elsewhere (another disk or \
                     host), or it is lost together with the store it vouches for",
                    f.display(),
                    data_dir.display()
                ));
            }
            if f.is_dir() {
                return Err(format!("[audit] witness_file {} is a directory", f.display()));
            }
        }
        Ok(w)
    }
}

/// Authentication settings from `[auth]`, validated (limits are the policy's: NIST minimums
/// cannot be weakened, lockout stays within 1..=100).
pub fn authn_settings(file: Option<&AuthFile>, public_url: &str) -> Result<wardkey_service::AuthnSettings, String> {
    use chrono::Duration as D;
    let mut s = wardkey_service::AuthnSettings::default();
    let url = url::Url::parse(public_url).map_err(|e| format!("public URL {public_url:?}: {e}"))?;
    let host = url.host_str().ok_or_else(|| format!("public URL {public_url:?} names no host"))?.to_owned();
    let origin = url.origin().ascii_serialization();
    s.passkeys.rp_id = host;
    s.passkeys.rp_origin = origin;
    if let Some(a) = file {
        if let Some(v) = a.mfa_required {
            s.mfa_required = v;
        }
        if let Some(m) = a.idle_timeout_minutes {
            s.session_policy.idle_timeout = D::minutes(i64::from(m));
        }
        if let Some(h) = a.absolute_lifetime_hours {
            s.session_policy.absolute_lifetime = D::hours(i64::from(h));
        }
        if let Some(m) = a.step_up_window_minutes {
            s.session_policy.step_up_window = D::minutes(i64::from(m));
        }
        if let Some(n) = a.lockout_after {
            s.lockout.lock_after = n;
        }
        if let Some(m) = a.lockout_minutes {
            s.lockout.lock_duration = if m == 0 { None } else { Some(D::minutes(i64::from(m))) };
        }
        if let Some(v) = a.argon2_memory_kib {
            s.hash_params.m_cost_kib = v;
        }
        if let Some(v) = a.argon2_iterations {
            s.hash_params.t_cost = v;
        }
        if let Some(v) = a.argon2_lanes {
            s.hash_params.p_cost = v;
        }
        if let Some(n) = a.hash_threads {
            if !(1..=256).contains(&n) {
                return Err(format!("[auth] hash_threads = {n}: must be 1..=256"));
            }
            s.hash_concurrency = n as usize;
        }
        if let Some(p) = &a.hash_priority {
            s.hash_priority = wardkey_authn::hash::HashPriority::parse(p)
                .ok_or_else(|| format!("[auth] hash_priority = {p:?}: use idle, low or normal"))?;
        }
        if let Some(o) = &a.organisation {
            s.organisation = o.clone();
            s.passkeys.rp_name = o.clone();
        }
    }
    s.session_policy.validate().map_err(|e| format!("[auth] session settings: {e}"))?;
    s.lockout.validate().map_err(|e| format!("[auth] lockout settings: {e}"))?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_printed() {
        assert_eq!(redact_url("postgres://wk:s3cret@db:5432/wk"), "postgres://wk:***@db:5432/wk");
        assert_eq!(redact_url("postgres://wk@db/wk"), "postgres://wk@db/wk");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
        assert_eq!(
            redact_url("postgres://db/wk?user=wk&password=s3cret&sslmode=require"),
            "postgres://db/wk?user=wk&password=***&sslmode=require"
        );
    }

    #[test]
    fn unknown_keys_refused() {
        assert!(toml::from_str::<FileConfig>("listen = \"127.0.0.1:1\"\nbogus = 1").is_err());
        let ok: FileConfig =
            toml::from_str("listen = \"127.0.0.1:9\"\n[tls]\ncert = \"c\"\nkey = \"k\"").expect("parses");
        assert!(ok.tls.is_some());
    }
}
