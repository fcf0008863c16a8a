//! Audit witnesses: copies of every signed checkpoint kept outside the store, so that cutting
//! the log back (events and the newest checkpoints removed together) or rewriting it with the
//! signing key is caught by `wardkey audit verify --trusted-checkpoint`.
//!
//! Two sinks, either or both:
//! - a **file** outside the data directory: each checkpoint note appended (one `write`, then
//!   `fsync`), followed by a blank line;
//! - a **URL**: each note POSTed as `text/plain` (2xx = accepted).
//!
//! The checkpoints table is the outbox: each sink keeps a cursor (the last size it delivered)
//! and reads the checkpoints above it, so nothing signed while the server runs is lost when a
//! sink is down, and checkpoints signed by other nodes sharing a PostgreSQL database reach it
//! too. The file's cursor is the file itself (its last note), so it catches up after a
//! restart; the URL's cursor lives in memory and starts at the latest checkpoint (which vouches
//! for all earlier ones). Delivery never blocks writes: it runs in its own task, retries with
//! exponential backoff, and a failing sink is logged and reported on `/readyz`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use wardkey_store::{Store, StoredCheckpoint};

/// Where checkpoints go, and how hard to try.
#[derive(Debug, Clone)]
pub struct WitnessConfig {
    /// Append every checkpoint here (must be outside the data directory; the caller checks).
    pub file: Option<PathBuf>,
    /// POST every checkpoint here (`http://` or `https://`).
    pub url: Option<String>,
    /// First retry delay after a failure; doubles up to `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// Per-request timeout of a POST.
    pub timeout: Duration,
    /// How often the checkpoints table is looked at when nothing woke the task (other nodes'
    /// checkpoints, retries).
    pub poll: Duration,
}

impl Default for WitnessConfig {
    fn default() -> Self {
        WitnessConfig {
            file: None,
            url: None,
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            poll: Duration::from_secs(5),
        }
    }
}

impl WitnessConfig {
    pub fn is_enabled(&self) -> bool {
        self.file.is_some() || self.url.is_some()
    }

    /// Checks the URL's form (scheme and host); the file's location is checked by the caller,
    /// which knows the data directory ([`file_inside`]).
    pub fn validate(&self) -> Result<(), String> {
        if let Some(u) = &self.url {
            let parsed = reqwest::Url::parse(u).map_err(|e| format!("witness_url {u:?}: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(format!("witness_url {u:?}: must be an http:// or https:// URL with a host"));
            }
        }
        Ok(())
    }
}

/// Whether `file` is (or would be created) inside `dir`, comparing real paths: a witness
/// copy inside the data directory would be cut back together with the store it vouches for.
pub fn file_inside(file: &Path, dir: &Path) -> Result<bool, String> {
    let dir = std::fs::canonicalize(dir).map_err(|e| format!("cannot resolve {}: {e}", dir.display()))?;
    let file = std::path::absolute(file).map_err(|e| format!("cannot resolve {}: {e}", file.display()))?;
    // The file may not exist yet: resolve its nearest existing ancestor, keep the rest.
    let mut existing = file.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        let (Some(parent), Some(name)) = (existing.parent(), existing.file_name()) else { break };
        rest.push(name.to_owned());
        existing = parent;
    }
    let mut real = std::fs::canonicalize(existing).map_err(|e| format!("cannot resolve {}: {e}", file.display()))?;
    for part in rest.iter().rev() {
        real.push(part);
    }
    Ok(real.starts_with(&dir))
}

/// One sink's health, for `/readyz` and the log.
#[derive(Debug, Default, Clone)]
struct SinkHealth {
    /// Size of the last checkpoint delivered.
    delivered: u64,
    /// Since when deliveries fail (`None` while healthy).
    failing_since: Option<Instant>,
    last_error: Option<String>,
    failures: u64,
}

/// Health of the witness sinks, shared with `/readyz`.
#[derive(Debug, Default)]
pub struct WitnessStatus {
    file: Mutex<Option<SinkHealth>>,
    url: Mutex<Option<SinkHealth>>,
    /// The name of the URL sink as shown (scheme, host, port and path; never a query or
    /// credentials).
    url_label: Mutex<String>,
    /// Found at start: the store is behind the witness file (events were removed).
    behind: Mutex<Option<String>>,
}

impl WitnessStatus {
    /// Lines describing failing sinks; empty when every configured sink is delivering.
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = lock(&self.behind).iter().cloned().collect();
        let describe = |name: &str, h: &SinkHealth, out: &mut Vec<String>| {
            if let Some(since) = h.failing_since {
                let mut line = format!(
                    "audit witness {name} failing for {}s ({} attempt(s); last checkpoint delivered: size {})",
                    since.elapsed().as_secs(),
                    h.failures,
                    h.delivered
                );
                if let Some(e) = &h.last_error {
                    let _ = write!(line, ": {e}");
                }
                out.push(line);
            }
        };
        if let Some(h) = lock(&self.file).as_ref() {
            describe("file", h, &mut out);
        }
        if let Some(h) = lock(&self.url).as_ref() {
            let label = lock(&self.url_label).clone();
            describe(&format!("URL {label}"), h, &mut out);
        }
        out
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running witness task.
pub struct Witness {
    pub status: Arc<WitnessStatus>,
    wake: Arc<Notify>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Witness {
    /// Starts delivering. Returns `None` when no sink is configured.
    pub fn start(config: WitnessConfig, store: Store) -> Option<Witness> {
        if !config.is_enabled() {
            return None;
        }
        let status = Arc::new(WitnessStatus::default());
        let wake = Arc::new(Notify::new());
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(config, store, status.clone(), wake.clone(), stop_rx));
        Some(Witness { status, wake, stop, task })
    }

    /// A handle the checkpointer pokes after signing.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// One last delivery round (each sink tried once, the URL within its timeout), then stop.
    pub async fn finish(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "audit witness task failed");
        }
    }
}

/// Size of the last checkpoint in a witness file (0 if the file is missing or empty). The
/// file is only appended to, so its tail holds the newest note.
fn last_size_in_file(path: &Path) -> Result<u64, String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024))).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf);
    // A note body is origin, size, root, extension lines; a note starts after a blank line
    // (or at the file's start) with a line that is not a signature. Its next line is the size.
    let mut last = 0;
    let mut at_boundary = len <= 64 * 1024;
    let mut size_next = false;
    for line in text.lines() {
        if size_next {
            if let Ok(n) = line.parse::<u64>() {
                last = n;
            }
            size_next = false;
        } else if at_boundary && !line.is_empty() && !line.starts_with('\u{2014}') {
            size_next = true;
        }
        at_boundary = line.is_empty();
    }
    Ok(last)
}

fn append_to_file(path: &Path, notes: &[StoredCheckpoint]) -> Result<(), String> {
    let mut text = String::new();
    for cp in notes {
        text.push_str(&cp.note);
        text.push('\n');
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    // One write of whole notes: a reader never sees half of one unless the disk fails mid-way.
    f.write_all(text.as_bytes()).map_err(|e| format!("cannot append to {}: {e}", path.display()))?;
    f.sync_data().map_err(|e| format!("cannot sync {}: {e}", path.display()))
}

/// The URL as shown in logs and on `/readyz`: no credentials, no query.
fn url_label(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "(invalid URL)".to_owned(),
    }
}

struct Sink {
    kind: SinkKind,
    cursor: u64,
    /// Not before this instant (backoff after a failure).
    next_try: Option<Instant>,
    backoff: Duration,
}

enum SinkKind {
    File(PathBuf),
    Url { url: String, label: String, client: reqwest::Client },
}

impl Sink {
    fn name(&self) -> String {
        match &self.kind {
            SinkKind::File(p) => format!("file {}", p.display()),
            // (the path goes to the log only; /readyz says "file")
            SinkKind::Url { label, .. } => format!("URL {label}"),
        }
    }

    async fn deliver(&self, notes: &[StoredCheckpoint]) -> Result<(), String> {
        match &self.kind {
            SinkKind::File(p) => {
                let (p, notes) = (p.clone(), notes.to_vec());
                tokio::task::spawn_blocking(move || append_to_file(&p, &notes))
                    .await
                    .map_err(|e| format!("witness file task failed: {e}"))?
            }
            SinkKind::Url { url, client, .. } => {
                for cp in notes {
                    let r = client
                        .post(url)
                        .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                        .body(cp.note.clone())
                        .send()
                        .await
                        .map_err(|e| format!("POST failed: {}", without_url(&e)))?;
                    if !r.status().is_success() {
                        return Err(format!("POST answered {}", r.status()));
                    }
                }
                Ok(())
            }
        }
    }
}

/// reqwest's error text without the URL (which may carry a token in its query).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = String::new();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request error"
    };
    s.push_str(kind);
    while let Some(inner) = src {
        let _ = write!(s, ": {inner}");
        src = inner.source();
    }
    s
}

async fn run(
    config: WitnessConfig,
    store: Store,
    status: Arc<WitnessStatus>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut sinks = Vec::new();
    if let Some(path) = &config.file {
        let cursor = match last_size_in_file(path) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the audit witness file; appending every checkpoint");
                0
            }
        };
        if let Some(problem) = check_store_against_file(&store, path, cursor).await {
            *lock(&status.behind) = Some(problem);
        }
        *lock(&status.file) = Some(SinkHealth { delivered: cursor, ..Default::default() });
        sinks.push(Sink { kind: SinkKind::File(path.clone()), cursor, next_try: None, backoff: config.retry_min });
    }
    if let Some(url) = &config.url {
        // Start at the latest checkpoint: it vouches for every earlier one.
        let latest = match store.read().await {
            Ok(mut r) => r.latest_checkpoint().await.ok().flatten().map_or(0, |c| c.size),
            Err(_) => 0,
        };
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .build();
        match client {
            Ok(client) => {
                let label = url_label(url);
                *lock(&status.url_label) = label.clone();
                *lock(&status.url) = Some(SinkHealth::default());
                sinks.push(Sink {
                    kind: SinkKind::Url { url: url.clone(), label, client },
                    cursor: latest.saturating_sub(1),
                    next_try: None,
                    backoff: config.retry_min,
                });
            }
            Err(e) => tracing::error!(error = %e, "cannot build the HTTP client for the audit witness URL"),
        }
    }
    let mut stopping = false;
    loop {
        for sink in &mut sinks {
            if !stopping && sink.next_try.is_some_and(|t| Instant::now() < t) {
                continue;
            }
            round(sink, &store, &status, &config).await;
        }
        if stopping {
            break;
        }
        let wait = sinks
            .iter()
            .filter_map(|s| s.next_try)
            .min()
            .map_or(config.poll, |t| t.saturating_duration_since(Instant::now()).min(config.poll));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = wake.notified() => {}
            _ = stop.wait_for(|v| *v) => {
                // Stop requested (or the sender is gone): one final round, then leave.
                stopping = true;
            }
        }
    }
}

/// Delivers everything above the sink's cursor, in pages; records health.
async fn round(sink: &mut Sink, store: &Store, status: &WitnessStatus, config: &WitnessConfig) {
    let slot = match sink.kind {
        SinkKind::File(_) => &status.file,
        SinkKind::Url { .. } => &status.url,
    };
    loop {
        let page = match store.read().await {
            Ok(mut r) => r.checkpoints_after(sink.cursor, 256).await,
            Err(e) => Err(e),
        };
        let page = match page {
            Ok(p) => p,
            Err(e) => {
                // The store is unreachable: /readyz says so already; try again next round.
                tracing::warn!(error = %e, "audit witness cannot read checkpoints");
                return;
            }
        };
        let Some(last) = page.last().map(|c| c.size) else { return };
        match sink.deliver(&page).await {
            Ok(()) => {
                sink.cursor = last;
                sink.next_try = None;
                sink.backoff = config.retry_min;
                let mut h = lock(slot);
                let h = h.get_or_insert_with(SinkHealth::default);
                if h.failing_since.is_some() {
                    tracing::info!(sink = %sink.name(), size = last, "audit witness delivering again");
                }
                *h = SinkHealth { delivered: last, ..Default::default() };
            }
            Err(e) => {
                tracing::warn!(sink = %sink.name(), error = %e, retry_in_ms = sink.backoff.as_millis() as u64,
                    "audit witness delivery failed; the server keeps serving and retries");
                sink.next_try = Some(Instant::now() + sink.backoff);
                sink.backoff = (sink.backoff * 2).min(config.retry_max);
                let mut h = lock(slot);
                let h = h.get_or_insert_with(SinkHealth::default);
                h.failing_since.get_or_insert_with(Instant::now);
                h.failures += 1;
                h.last_error = Some(e);
                return;
            }
        }
    }
}

/// At start: a witness file ahead of the store means the store lost events since the file was
/// written (truncated, or restored from an older backup). Said loudly; serving continues,
/// since refusing to start would not bring the events back, and `audit verify
/// --trusted-checkpoint` names the problem.
async fn check_store_against_file(store: &Store, path: &Path, witnessed: u64) -> Option<String> {
    if witnessed == 0 {
        return None;
    }
    let size = match store.read().await {
        Ok(mut r) => r.audit_tree_size().await,
        Err(e) => Err(e),
    };
    if let Ok(size) = size
        && size < witnessed
    {
        tracing::error!(
            witness_file = %path.display(),
            store_events = size,
            witnessed_events = witnessed,
            "the audit log is behind its witness file: events were removed (truncation or rollback); run `wardkey audit verify --trusted-checkpoint`"
        );
        return Some(format!(
            "the audit log holds {size} events but the witness file vouches for {witnessed}: events were removed"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_label_hides_credentials_and_query() {
        assert_eq!(url_label("https://u:p@w.example/cp?token=x"), "https://w.example/cp");
    }

    #[test]
    fn inside_detection_resolves_paths() {
        let d = tempfile::tempdir().expect("tempdir");
        let data = d.path().join("data");
        std::fs::create_dir_all(&data).expect("mkdir");
        assert!(file_inside(&data.join("w.log"), &data).expect("ok"));
        assert!(file_inside(&data.join("new/w.log"), &data).expect("ok"));
        assert!(!file_inside(&d.path().join("w.log"), &data).expect("ok"));
    }
}
