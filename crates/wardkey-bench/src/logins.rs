#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark harness: failing loudly is right
//! `logins`: password sign-ins per second with the default Argon2id parameters, set beside
//! Keycloak's published sizing (about 15 password logins per second per vCPU), and the p99
//! latency of `GET /healthz` and of an authenticated API read while idle and during a login
//! storm, in the same run (issue bound: the storm p99 stays within 2x of the idle p99).
//!
//! The real server runs in-process on a free loopback port, on its own tokio runtime built
//! like `wardkey serve`'s (one worker per core), with the default [`AuthnSettings`] except the
//! per-source sign-in limit: every request of a benchmark comes from 127.0.0.1, so that limit
//! is raised out of the way. The load (reqwest clients) runs on the bench's own runtime; the
//! latency probe runs alone on a thread of its own with a single-threaded runtime, so that it
//! does not queue behind the storm's client tasks.
//!
//! Knobs: `WK_BENCH_RUNS` (default 3), `WK_BENCH_CALLERS` (login clients, default 8),
//! `WK_BENCH_LOGINS` (logins per run, default 400), `WK_BENCH_STORM` (login loops in the storm,
//! default 16), `WK_BENCH_PROBES` (sequential requests per endpoint and phase, default 500).
//! For investigation only: `WK_BENCH_HASH_CONCURRENCY` (Argon2 jobs at once; default = cores),
//! `WK_BENCH_AUDIT_READS=0` (no `api.read` event per read), `WK_BENCH_SERVER_WORKERS` (tokio
//! workers of the server runtime), `WK_BENCH_STORM_KIND=spin` (instead of logins, as many
//! threads spinning on the CPU as the hashing pool admits: CPU saturation without the server).

use crate::{Db, db_label, median, percentile};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wardkey_domain::{NewApiToken, NewUser, Scope, UserStatus};
use wardkey_server::ServerConfig;
use wardkey_service::{AuthnSettings, ServiceConfig, Services};

/// Keycloak's sizing guide ("Concepts for sizing CPU and memory resources"): one vCPU per 15
/// password-based user logins per second.
const KEYCLOAK_LOGINS_PER_VCPU: f64 = 15.0;
const PASSWORD: &str = "a-long-passphrase-nobody-guesses-42";
const WRONG: &str = "a-long-passphrase-nobody-guesses-43";
const USERS: usize = 64;

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn vcpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// What the clients need to know about the server.
struct Target {
    base: String,
    admin_token: String,
    /// The user read by the authenticated probe.
    read_user: String,
    /// Users with [`PASSWORD`]; others for wrong-password attempts (they get locked: fine,
    /// a locked account costs the same Argon2 work) and for the storm.
    good: Vec<String>,
    bad: Vec<String>,
    hash_concurrency: usize,
}

/// The server on a runtime and thread of its own.
struct ServerThread {
    target: Target,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    async fn start(db: Arc<Db>) -> ServerThread {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Target>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("wk-server".into())
            .spawn(move || {
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                if let Some(w) = std::env::var("WK_BENCH_SERVER_WORKERS").ok().and_then(|v| v.parse().ok()) {
                    builder.worker_threads(w);
                }
                let rt = builder.enable_all().build().expect("server runtime");
                rt.block_on(async move {
                    let store = db.open().await;
                    let defaults = AuthnSettings::default();
                    let settings = AuthnSettings {
                        // Every benchmark request comes from 127.0.0.1: the per-source
                        // sign-in limit (default burst 20, 1/s) is raised out of the way.
                        source_burst: 10_000_000,
                        source_refill_per_sec: 1e9,
                        hash_concurrency: env_num("WK_BENCH_HASH_CONCURRENCY", defaults.hash_concurrency),
                        ..defaults
                    };
                    let hash_concurrency = settings.hash_concurrency;
                    let config = ServiceConfig { audit_reads: std::env::var("WK_BENCH_AUDIT_READS").map_or(true, |v| v != "0") };
                    let services = Services::with_authn(
                        store,
                        config,
                        settings,
                        wardkey_authn::secretbox::SecretKey::from_bytes([7u8; 32]),
                    )
                    .expect("services");
                    let (good, bad, read_user, admin_token) = populate(&services).await;
                    let server = wardkey_server::spawn(
                        ServerConfig { listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)), ..ServerConfig::default() },
                        services,
                    )
                    .await
                    .expect("server starts");
                    let target = Target { base: server.base_url(), admin_token, read_user, good, bad, hash_concurrency };
                    if ready_tx.send(target).is_err() {
                        return;
                    }
                    let _ = stop_rx.await;
                    server.shutdown().await.expect("clean shutdown");
                });
            })
            .expect("server thread");
        let target = ready_rx.await.expect("server thread started");
        ServerThread { target, stop: Some(stop_tx), thread: Some(thread) }
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let thread = self.thread.take().expect("thread");
        tokio::task::spawn_blocking(move || thread.join().expect("server thread")).await.expect("join");
    }
}

/// 2 x 64 active users with a password (one Argon2 hash each), and an admin API token.
async fn populate(services: &Services) -> (Vec<String>, Vec<String>, String, String) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..8usize {
        let services = services.clone();
        tasks.push(tokio::spawn(async move {
            let op = services.operator("bench");
            let mut made = Vec::new();
            for i in (t..2 * USERS).step_by(8) {
                let username = format!("clinician{i:04}");
                let user = services
                    .create_user(
                        &op,
                        NewUser {
                            username: username.clone(),
                            display_name: Some(format!("Clinician {i}")),
                            email: Some(format!("clinician{i}@hospital.example")),
                            status: None,
                            hr: Default::default(),
                        },
                    )
                    .await
                    .expect("create user")
                    .value;
                let user = services
                    .verify_identity(&op, user.id, user.version, "in_person_government_id".into())
                    .await
                    .expect("verify identity")
                    .value;
                services
                    .set_user_status(&op, user.id, user.version, UserStatus::Active, Some("onboarded".into()))
                    .await
                    .expect("activate");
                services.admin_set_password(&op, user.id, PASSWORD.as_bytes(), false).await.expect("set password");
                made.push((i, username, user.id.to_string()));
            }
            made
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("populate task"));
    }
    all.sort();
    let read_user = all[0].2.clone();
    let (good, bad): (Vec<_>, Vec<_>) = all.into_iter().partition(|(i, _, _)| *i < USERS);
    let op = services.operator("bench");
    let (_, secret) = services
        .create_token(&op, NewApiToken { name: "bench-admin".into(), scopes: vec![Scope::Admin], expires_at: None })
        .await
        .expect("token")
        .value;
    println!("  set up {} active users with passwords in {:.1}s", 2 * USERS, started.elapsed().as_secs_f64());
    (good.into_iter().map(|u| u.1).collect(), bad.into_iter().map(|u| u.1).collect(), read_user, secret)
}

/// One sign-in over HTTP; returns the status and the body.
async fn login(http: &reqwest::Client, base: &str, username: &str, password: &str) -> (u16, serde_json::Value) {
    let r = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({ "username": username, "password": password }))
        .send()
        .await
        .expect("login request");
    let status = r.status().as_u16();
    let cookie = r.headers().get("set-cookie").is_some();
    let body: serde_json::Value = r.json().await.unwrap_or(serde_json::Value::Null);
    if status == 200 {
        assert!(cookie, "a sign-in sets the session cookie");
    }
    (status, body)
}

/// `total` sign-ins by `callers` concurrent clients, cycling over `users`; returns sign-ins/s.
async fn login_run(t: &Target, http: &reqwest::Client, users: &[String], password: &'static str, expect: u16, total: u64, callers: u64) -> f64 {
    let next = Arc::new(AtomicU64::new(0));
    let users = Arc::new(users.to_vec());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let (http, base, next, users) = (http.clone(), t.base.clone(), next.clone(), users.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let user = &users[i as usize % users.len()];
                let (status, body) = login(&http, &base, user, password).await;
                assert_eq!(status, expect, "sign-in of {user}: {body:?}");
            }
        }));
    }
    for task in tasks {
        task.await.expect("login caller");
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// Sequential probes, alternating `GET /healthz` and `GET /api/v1/users/{id}` (bearer), from a
/// thread and single-threaded runtime of their own. Returns (healthz ms, read ms).
async fn probe(t: &Target, n: usize) -> (Vec<f64>, Vec<f64>) {
    let health = format!("{}/healthz", t.base);
    let read = format!("{}/api/v1/users/{}", t.base, t.read_user);
    let token = t.admin_token.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("wk-probe".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("probe runtime");
            let out = rt.block_on(async move {
                let http = reqwest::Client::new();
                let get = |url: &str, bearer: bool| {
                    let mut req = http.get(url);
                    if bearer {
                        req = req.bearer_auth(&token);
                    }
                    async move {
                        let started = Instant::now();
                        let r = req.send().await.expect("probe request");
                        assert_eq!(r.status().as_u16(), 200, "probe");
                        let _ = r.bytes().await.expect("probe body");
                        started.elapsed().as_secs_f64() * 1000.0
                    }
                };
                for _ in 0..20 {
                    get(&health, false).await;
                    get(&read, true).await;
                }
                let (mut h, mut r) = (Vec::with_capacity(n), Vec::with_capacity(n));
                for _ in 0..n {
                    h.push(get(&health, false).await);
                    r.push(get(&read, true).await);
                }
                (h, r)
            });
            let _ = tx.send(out);
        })
        .expect("probe thread");
    rx.await.expect("probe thread finished")
}

/// Sign-in loops (or CPU spinners) running until stopped.
struct Storm {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<Vec<f64>>>,
    spinners: Vec<std::thread::JoinHandle<()>>,
}

impl Storm {
    fn start(t: &Target, http: &reqwest::Client, loops: usize) -> Storm {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let mut storm = Storm { stop: stop.clone(), done: done.clone(), tasks: Vec::new(), spinners: Vec::new() };
        if std::env::var("WK_BENCH_STORM_KIND").is_ok_and(|v| v == "spin") {
            for _ in 0..t.hash_concurrency {
                let stop = stop.clone();
                storm.spinners.push(std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        for i in 0..100_000u64 {
                            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
                        }
                    }
                }));
            }
            return storm;
        }
        // Storm users: the 64 with the right password (sign-ins succeed, each a session).
        for k in 0..loops {
            let (http, base, stop, done) = (http.clone(), t.base.clone(), stop.clone(), done.clone());
            let users = t.good.clone();
            storm.tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut i = k;
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let (status, body) = login(&http, &base, &users[i % users.len()], PASSWORD).await;
                    assert_eq!(status, 200, "storm sign-in: {body:?}");
                    lat.push(started.elapsed().as_secs_f64() * 1000.0);
                    done.fetch_add(1, Ordering::Relaxed);
                    i += loops;
                }
                lat
            }));
        }
        storm
    }

    fn completed(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Stops the storm; returns the sign-in latencies (ms).
    async fn stop(self) -> Vec<f64> {
        self.stop.store(true, Ordering::Relaxed);
        let mut lat = Vec::new();
        for t in self.tasks {
            lat.extend(t.await.expect("storm loop"));
        }
        for s in self.spinners {
            tokio::task::spawn_blocking(move || s.join().expect("spinner")).await.expect("join");
        }
        lat
    }
}

pub(crate) async fn bench_logins() {
    let runs: usize = env_num("WK_BENCH_RUNS", 3).max(1);
    let callers: u64 = env_num("WK_BENCH_CALLERS", 8).max(1);
    let total: u64 = env_num("WK_BENCH_LOGINS", 400).max(1);
    let storm_loops: usize = env_num("WK_BENCH_STORM", 16).max(1);
    let probes: usize = env_num("WK_BENCH_PROBES", 500).max(10);
    let cpus = vcpus();
    let db = Arc::new(Db::fresh().await);
    let server = ServerThread::start(db.clone()).await;
    let t = &server.target;
    println!(
        "== password sign-ins ({}, Argon2id m=19 MiB t=2 p=1, hashing pool {} at once, {cpus} vCPU; per-source limit raised for the benchmark) ==",
        db_label(),
        t.hash_concurrency
    );
    let http = reqwest::Client::new();
    let (status, body) = login(&http, &t.base, &t.good[0], PASSWORD).await;
    assert_eq!(status, 200, "{body:?}");
    let next = body["next"].as_str().unwrap_or("?").to_owned();
    let (status, _) = login(&http, &t.base, &t.bad[0], WRONG).await;
    assert_eq!(status, 401, "a wrong password is refused");
    println!("  a sign-in answers 200 with next = {next:?} (MFA required, the default), a session cookie, an audit event");

    // 1. Throughput, interleaving right and wrong passwords so that noise hits both alike.
    let (mut ok_rates, mut bad_rates) = (Vec::new(), Vec::new());
    for r in 0..runs {
        let ok = login_run(t, &http, &t.good, PASSWORD, 200, total, callers).await;
        let bad = login_run(t, &http, &t.bad, WRONG, 401, total / 2, callers).await;
        println!("  run {r}: {ok:6.1} sign-ins/s (right password, {total}) | {bad:6.1} refusals/s (wrong password, {})", total / 2);
        ok_rates.push(ok);
        bad_rates.push(bad);
    }
    let ok = median(ok_rates);
    let bad = median(bad_rates);
    let per_vcpu = ok / cpus as f64;
    println!("  median: {ok:.1} password sign-ins/s ({callers} concurrent clients, {USERS} users) = {per_vcpu:.1} per vCPU");
    println!(
        "  peer: Keycloak's sizing guide, ~{KEYCLOAK_LOGINS_PER_VCPU:.0} password logins/s per vCPU -> {:.2}x that",
        per_vcpu / KEYCLOAK_LOGINS_PER_VCPU
    );
    println!("  median: {bad:.1} wrong-password refusals/s -> {:.2}x the sign-in rate (same Argon2 work; ~1 means failures are not cheaper)", bad / ok);

    // 2. Latency of health and an authenticated read, idle and during a login storm.
    let spin = std::env::var("WK_BENCH_STORM_KIND").is_ok_and(|v| v == "spin");
    if spin {
        println!("== latency, idle vs {} spinning threads (no sign-ins; CPU saturation alone) ==", t.hash_concurrency);
    } else {
        println!("== latency, idle vs a storm of {storm_loops} concurrent sign-in loops ({probes} sequential probes each) ==");
    }
    let mut rows = Vec::new();
    for r in 0..runs {
        let (ih, ir) = probe(t, probes).await;
        let storm = Storm::start(t, &http, storm_loops);
        // Let the storm fill the hashing pool before measuring.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let before = storm.completed();
        let window = Instant::now();
        let (sh, sr) = probe(t, probes).await;
        let secs = window.elapsed().as_secs_f64();
        let during = storm.completed() - before;
        let login_lat = storm.stop().await;
        let row = [
            percentile(ih.clone(), 0.5),
            percentile(ih, 0.99),
            percentile(sh.clone(), 0.5),
            percentile(sh, 0.99),
            percentile(ir.clone(), 0.5),
            percentile(ir, 0.99),
            percentile(sr.clone(), 0.5),
            percentile(sr, 0.99),
        ];
        let login_p50 = if login_lat.is_empty() { f64::NAN } else { percentile(login_lat, 0.5) };
        println!(
            "  run {r}: /healthz p50 {:.2} -> {:.2} ms, p99 {:.2} -> {:.2} ms ({:.1}x) | read p50 {:.2} -> {:.2} ms, p99 {:.2} -> {:.2} ms ({:.1}x) | {during} sign-ins in the {secs:.1}s window ({:.1}/s, p50 {login_p50:.0} ms each)",
            row[0], row[2], row[1], row[3], row[3] / row[1], row[4], row[6], row[5], row[7], row[7] / row[5], during as f64 / secs
        );
        rows.push((row, during as f64 / secs));
    }
    let col = |i: usize| median(rows.iter().map(|(r, _)| r[i]).collect());
    let ratio = |i: usize, j: usize| median(rows.iter().map(|(r, _)| r[i] / r[j]).collect());
    let storm_rate = median(rows.iter().map(|(_, s)| *s).collect());
    let verdict = |x: f64| if x <= 2.0 { "MET" } else { "NOT MET" };
    println!("  medians over {runs} runs (idle -> storm):");
    let (h99, r99) = (ratio(3, 1), ratio(7, 5));
    println!(
        "    GET /healthz            p50 {:.2} -> {:.2} ms   p99 {:.2} -> {:.2} ms   storm/idle p99 {h99:.2}x; bound 2x -> {}",
        col(0), col(2), col(1), col(3), verdict(h99)
    );
    println!(
        "    GET /api/v1/users/{{id}}  p50 {:.2} -> {:.2} ms   p99 {:.2} -> {:.2} ms   storm/idle p99 {r99:.2}x; bound 2x -> {}",
        col(4), col(6), col(5), col(7), verdict(r99)
    );
    if !spin {
        println!(
            "    sign-ins completed during the storm window: {storm_rate:.1}/s ({:.0}% of the median throughput above: the hashing pool was saturated)",
            100.0 * storm_rate / ok
        );
    }
    server.stop().await;
    let db = Arc::try_unwrap(db).ok().expect("the server thread released the database");
    db.drop_db().await;
}
