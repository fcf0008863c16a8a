//! Audit witnesses: every signed checkpoint is appended to a witness file and POSTed to a
//! witness URL — a real HTTP receiver the test starts on a free port. An unreachable URL
//! never stops the server: writes go on, `/readyz` says `degraded` naming the URL, and the
//! backlog is delivered once the receiver comes up.

use super::*;
use std::sync::Mutex;
use wardkey_server::witness::WitnessConfig;

/// A tiny HTTP receiver (axum) collecting the bodies POSTed to `/checkpoints`.
struct Receiver {
    notes: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(listener: tokio::net::TcpListener) -> Receiver {
        let notes = Arc::new(Mutex::new(Vec::new()));
        let sink = notes.clone();
        let app = axum::Router::new().route(
            "/checkpoints",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let sink = sink.clone();
                async move {
                    assert!(
                        headers
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .is_some_and(|v| v.starts_with("text/plain")),
                        "{headers:?}"
                    );
                    sink.lock().unwrap().push(body);
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { notes, task }
    }

    fn notes(&self) -> Vec<String> {
        self.notes.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Witnessed {
    services: Services,
    server: Option<RunningServer>,
    admin: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    pg: Option<(String, String)>,
}

fn witness_config(file: Option<std::path::PathBuf>, url: Option<String>) -> WitnessConfig {
    WitnessConfig {
        file,
        url,
        retry_min: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        timeout: Duration::from_secs(2),
        poll: Duration::from_millis(100),
    }
}

impl Witnessed {
    async fn start(store: Store, dir: tempfile::TempDir, pg: Option<(String, String)>, witness: WitnessConfig) -> Self {
        store.set_signer(signer());
        let services = Services::new(store, ServiceConfig::default());
        let admin = services.bootstrap().await.expect("bootstrap").expect("token");
        let config = ServerConfig { witness, ..test_config() };
        let server = wardkey_server::spawn(config, services.clone()).await.expect("server starts");
        Witnessed { services, server: Some(server), admin, http: reqwest::Client::new(), _dir: dir, pg }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.server.as_ref().expect("running").base_url(), path)
    }

    async fn create_user(&self, name: &str) {
        let r = self
            .http
            .post(self.url("/api/v1/users"))
            .bearer_auth(&self.admin)
            .json(&json!({ "username": name }))
            .send()
            .await
            .expect("sent");
        assert_eq!(r.status(), StatusCode::CREATED);
    }

    async fn readyz(&self) -> (StatusCode, String) {
        let r = self.http.get(self.url("/readyz")).send().await.expect("sent");
        (r.status(), r.text().await.expect("body"))
    }

    async fn stored_notes(&self) -> Vec<String> {
        let mut r = self.services.store_unchecked_for_operator_and_tests().read().await.expect("read");
        r.list_checkpoints().await.expect("checkpoints").into_iter().map(|c| c.note).collect()
    }

    async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.expect("clean shutdown");
        }
        if let Some((admin_url, db)) = &self.pg
            && let Ok(mut conn) = sqlx::postgres::PgConnection::connect(admin_url).await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")))
                .execute(&mut conn)
                .await;
        }
    }
}

async fn wait_for(what: &str, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !ok().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Splits a witness file into its notes (each followed by a blank line).
fn file_notes(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    wardkey_audit::split_witness_notes(&text).expect("well-formed witness file")
}

async fn file_and_url_get_every_checkpoint(store: Store, dir: tempfile::TempDir, pg: Option<(String, String)>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
    let url = format!("http://{}/checkpoints", listener.local_addr().expect("addr"));
    let receiver = Receiver::start(listener).await;
    // The witness file lives outside the store's directory.
    let outside = tempfile::tempdir().expect("tempdir");
    let file = outside.path().join("checkpoints.witness");
    let w = Witnessed::start(store, dir, pg, witness_config(Some(file.clone()), Some(url))).await;

    // Several checkpoints (the checkpointer signs every 200 ms when the log grew).
    for round in 0..3 {
        w.create_user(&format!("witnessed.{round}")).await;
        let before = w.stored_notes().await.len();
        wait_for("a new checkpoint", async || w.stored_notes().await.len() > before).await;
    }
    let (status, body) = w.readyz().await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ready\n"));
    let before_stop = w.stored_notes().await;
    w.stop().await;

    // After shutdown (which signs a last checkpoint if the log grew, and flushes the
    // witnesses): the file holds every checkpoint the store held, in order, byte for byte,
    // and at most the final one more; the receiver got checkpoints as they were signed.
    let stored = file_notes(&file);
    assert!(before_stop.len() >= 3, "{}", before_stop.len());
    assert_eq!(stored[..before_stop.len()], before_stop[..], "the witness file has every checkpoint");
    assert!(stored.len() <= before_stop.len() + 1, "{} vs {}", stored.len(), before_stop.len());
    let verifier = LogVerifier::from_signer(&signer());
    let mut last = 0;
    for note in &stored {
        let cp = verifier.open_checkpoint(note).expect("witness note opens");
        assert!(cp.size > last, "ascending sizes");
        last = cp.size;
    }
    let received = receiver.notes();
    assert!(received.len() >= 3, "{received:?}");
    for note in &received {
        assert!(stored.contains(note), "every POSTed note is a real checkpoint");
    }
    assert_eq!(received.last(), stored.last(), "the final checkpoint reached the URL too");
}

async fn unreachable_url_degrades_readiness_and_recovers(store: Store, dir: tempfile::TempDir) {
    // A port nothing listens on (yet).
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let url = format!("http://127.0.0.1:{port}/checkpoints");
    let w = Witnessed::start(store, dir, None, witness_config(None, Some(url.clone()))).await;

    w.create_user("while.down").await;
    wait_for("/readyz to report the witness", async || w.readyz().await.1.starts_with("degraded")).await;
    let (status, body) = w.readyz().await;
    assert_eq!(status, StatusCode::OK, "the node still serves: {body}");
    assert!(body.contains(&format!("audit witness URL {url}")), "{body}");
    assert!(body.contains("cannot connect"), "{body}");

    // Writes and reads go on while the witness is down.
    w.create_user("still.serving").await;
    let r = w.http.get(w.url("/healthz")).send().await.expect("sent");
    assert_eq!(r.status(), StatusCode::OK);

    // The receiver comes up: the backlog arrives and readiness is clean again.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind the witness port");
    let receiver = Receiver::start(listener).await;
    wait_for("the backlog to be delivered", async || !receiver.notes().is_empty()).await;
    wait_for("/readyz to be clean", async || w.readyz().await.1 == "ready\n").await;
    let latest = w.stored_notes().await;
    wait_for("the latest checkpoint delivered", async || {
        receiver.notes().last() == w.stored_notes().await.last() && !latest.is_empty()
    })
    .await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_file_and_url_get_every_checkpoint_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite_dir(dir.path(), Arc::new(SystemClock)).await.expect("sqlite store");
    file_and_url_get_every_checkpoint(store, dir, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_file_and_url_get_every_checkpoint_on_postgres() {
    let Some((url, admin_url, db)) = fresh_pg_database().await else { return };
    let store = Store::open(&url, Arc::new(SystemClock)).await.expect("postgres store");
    let dir = tempfile::tempdir().expect("tempdir");
    file_and_url_get_every_checkpoint(store, dir, Some((admin_url, db))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_witness_url_shows_on_readyz_while_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite_dir(dir.path(), Arc::new(SystemClock)).await.expect("sqlite store");
    unreachable_url_degrades_readiness_and_recovers(store, dir).await;
}
