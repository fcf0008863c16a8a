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
    pub audit: Option<AuditFile>,
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
            format!("{}://{}{}@{}", &url[..scheme_end], user, if userinfo.contains(':') { ":***" } else { "" }, &url[at + 1..])
        }
                _ => url.to_owned(),
    };
    format!("{base}{}", query.unwrap_or_default())
}

pub struct AuditSettings {
    pub checkpoint_interval: Duration,
    pub checkpoint_every_events: u64,
    pub audit_reads: bool,
}

impl AuditSettings {
    pub fn from_file(file: &FileConfig) -> Self {
        let a = file.audit.as_ref();
        AuditSettings {
            checkpoint_interval: Duration::from_secs(a.and_then(|a| a.checkpoint_interval_secs).unwrap_or(5).clamp(1, 3600)),
            checkpoint_every_events: a.and_then(|a| a.checkpoint_every_events).unwrap_or(1000).clamp(1, 10_000_000),
            audit_reads: a.and_then(|a| a.audit_reads).unwrap_or(true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_printed() {
        assert_eq!(redact_url("postgres://wk:s3cret@db:5432/wk"), "postgres://wk:***@db:5432/wk");
        assert_eq!(redact_url("postgres://wk@db/wk"), "postgres://wk@db/wk");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
        assert_eq!(redact_url("postgres://db/wk?user=wk&password=s3cret&sslmode=require"), "postgres://db/wk?user=wk&password=***&sslmode=require");
    }

    #[test]
    fn unknown_keys_refused() {
        assert!(toml::from_str::<FileConfig>("listen = \"127.0.0.1:1\"\nbogus = 1").is_err());
        let ok: FileConfig = toml::from_str("listen = \"127.0.0.1:9\"\n[tls]\ncert = \"c\"\nkey = \"k\"").expect("parses");
        assert!(ok.tls.is_some());
    }
}
