#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark harness: failing loudly is right
//! `logins`: password sign-ins per second with the default Argon2id parameters, set beside
//! Keycloak's published sizing (about 15 password logins per second per vCPU), and the p99
//! latency of `GET /healthz` and of an authenticated API read while idle and during a login
//! storm, in the same run (issue bound: the storm p99 stays within 2x of the idle p99). A peer
//! phase repeats the probes while as many threads as the hashing pool admits only spin on the
//! CPU: what CPU saturation alone costs, with no sign-in, no store write, no server work.
//!
//! The real server runs in-process on a free loopback port, on its own tokio runtime built
//! like `wardkey serve`'s (one worker per core), with the default [`AuthnSettings`] except the
//! per-source sign-in limit: every request of a benchmark comes from 127.0.0.1, so that limit
//! is raised out of the way. The load (reqwest clients) runs on the bench's own runtime; the
//! latency probe runs alone on a thread of its own with a single-threaded runtime, so that it
//! does not queue behind the storm's client tasks. All of it shares the machine's cores.
//!
//! Knobs: `WK_BENCH_RUNS` (default 3), `WK_BENCH_CALLERS` (login clients, default 8),
//! `WK_BENCH_LOGINS` (logins per run, default 400), `WK_BENCH_STORM` (login loops in the storm,
//! default 16), `WK_BENCH_PROBES` (sequential requests per endpoint and phase, default 2000),
//! `WK_BENCH_VERBOSE=1` (writer commits during the storm).
//! For investigation only: `WK_BENCH_HASH_CONCURRENCY` (Argon2 jobs at once; default = cores),
//! `WK_BENCH_AUDIT_READS=0` (no `api.read` event per read), `WK_BENCH_SERVER_WORKERS` (tokio
//! workers of the server runtime), `WK_BENCH_HASH_PRIORITY=idle|low|normal` (the hashing
//! threads' priority, `[auth] hash_priority`; default low; the peer's spinners follow it).

use crate::{Db, db_label, median, percentile};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wardkey_authn::hash::HashPriority;
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
    /// For the writer's counters and probes only (`WK_BENCH_VERBOSE`).
    services: Services,
    /// The server's runtime, where the writer probe runs as a handler would.
    server_rt: tokio::runtime::Handle,
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
                        hash_priority: hash_priority(),
                        ..defaults
                    };
                    let hash_concurrency = settings.hash_concurrency;
                    let config = ServiceConfig {
                        audit_reads: std::env::var("WK_BENCH_AUDIT_READS").map_or(true, |v| v != "0"),
                        durable_reads: std::env::var("WK_BENCH_DURABLE_READS").is_ok_and(|v| v == "1"),
                        ..ServiceConfig::default()
                    };
                    let services = Services::with_authn(
                        store,
                        config,
                        settings,
                        wardkey_authn::secretbox::SecretKey::from_bytes([7u8; 32]),
                    )
                    .expect("services");
                    let (good, bad, read_user, admin_token) = populate(&services).await;
                    let server = wardkey_server::spawn(
                        ServerConfig {
                            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                            ..ServerConfig::default()
                        },
                        services.clone(),
                    )
                    .await
                    .expect("server starts");
                    let target = Target {
                        base: server.base_url(),
                        admin_token,
                        read_user,
                        good,
                        bad,
                        hash_concurrency,
                        services,
                        server_rt: tokio::runtime::Handle::current(),
                    };
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

/// The hashing threads' priority: the product default unless `WK_BENCH_HASH_PRIORITY` says.
fn hash_priority() -> HashPriority {
    std::env::var("WK_BENCH_HASH_PRIORITY")
        .ok()
        .map(|p| HashPriority::parse(&p).expect("WK_BENCH_HASH_PRIORITY: idle, low or normal"))
        .unwrap_or_default()
}

/// Lowers the calling thread's CPU priority: `idle` (SCHED_IDLE) or a nice value. Through
/// `chrt`/`renice` on the thread id: the workspace forbids `unsafe`, so no direct syscall.
fn lower_this_thread(priority: &str) {
    let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    let tid = link.file_name().expect("thread id").to_string_lossy().into_owned();
    let status = if priority == "idle" {
        std::process::Command::new("chrt").args(["--idle", "-p", "0", &tid]).status()
    } else {
        std::process::Command::new("renice")
            .args(["-n", priority, "-p", &tid])
            .stdout(std::process::Stdio::null())
            .status()
    };
    assert!(status.is_ok_and(|s| s.success()), "could not set priority {priority} on thread {tid}");
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
        .create_token(
            &op,
            NewApiToken {
                name: "bench-admin".into(),
                scopes: vec![Scope::Admin],
                owner: operator_owner(),
                expires_at: None,
            },
        )
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
async fn login_run(
    t: &Target,
    http: &reqwest::Client,
    users: &[String],
    password: &'static str,
    expect: u16,
    total: u64,
    callers: u64,
) -> f64 {
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

/// `n` sequential audit-only appends (what an `api.read` costs in the writer), timed on the
/// server's runtime, in ms.
async fn append_probe(t: &Target, n: usize) -> Vec<f64> {
    let store = t.services.store_unchecked_for_operator_and_tests().clone();
    t.server_rt
        .spawn(async move {
            let mut lat = Vec::with_capacity(n);
            for i in 0..n {
                let d = wardkey_audit::AuditDraft::uncatalogued(
                    "bench:probe",
                    "bench.probe",
                    wardkey_audit::Outcome::Success,
                )
                .with_request_id(format!("probe-{i}"));
                let started = Instant::now();
                store.append_audit(vec![d]).await.expect("append");
                lat.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            lat
        })
        .await
        .expect("append probe")
}

/// `n` 4 KiB appends to a file each followed by `fdatasync` (the disk flush a durable commit
/// waits for), on a thread of its own; in ms.
async fn fsync_probe(n: usize) -> Vec<f64> {
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut f = std::fs::File::create(dir.path().join("fsync-probe")).expect("file");
        let block = [0x5au8; 4096];
        (0..n)
            .map(|_| {
                let started = Instant::now();
                f.write_all(&block).expect("write");
                f.sync_data().expect("fdatasync");
                started.elapsed().as_secs_f64() * 1000.0
            })
            .collect()
    })
    .await
    .expect("fsync probe")
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default()
}

/// Sign-in loops (or CPU spinners) running until stopped.
struct Storm {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<Vec<f64>>>,
    spinners: Vec<std::thread::JoinHandle<()>>,
}

impl Storm {
    /// `loops` sign-in loops, or with `spin` as many CPU-bound threads as the hashing pool admits.
    fn start(t: &Target, http: &reqwest::Client, loops: usize, spin: bool) -> Storm {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let mut storm = Storm { stop: stop.clone(), done: done.clone(), tasks: Vec::new(), spinners: Vec::new() };
        if spin {
            for _ in 0..t.hash_concurrency {
                let stop = stop.clone();
                storm.spinners.push(std::thread::spawn(move || {
                    // The peer spins at the hashing threads' priority: what the same CPU demand
                    // costs without any sign-in work.
                    match hash_priority() {
                        HashPriority::Idle => lower_this_thread("idle"),
                        HashPriority::Low => lower_this_thread("19"),
                        HashPriority::Normal => {}
                    }
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
    let probes: usize = env_num("WK_BENCH_PROBES", 2000).max(10);
    let cpus = vcpus();
    let load_at_start = load_average();
    let db = Arc::new(Db::fresh().await);
    let server = ServerThread::start(db.clone()).await;
    let t = &server.target;
    println!(
        "== password sign-ins ({}, Argon2id m=19 MiB t=2 p=1, hashing pool {} at once at priority {}, {cpus} vCPU; per-source limit raised for the benchmark) ==",
        db_label(),
        t.hash_concurrency,
        hash_priority().as_str()
    );
    let knobs: Vec<String> =
        ["WK_BENCH_HASH_CONCURRENCY", "WK_BENCH_AUDIT_READS", "WK_BENCH_SERVER_WORKERS", "WK_BENCH_HASH_PRIORITY"]
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| format!("{k}={v}")))
            .collect();
    println!(
        "  machine load average (1 min) at start: {load_at_start} (this benchmark is CPU-bound: other work on the machine shows)"
    );
    if !knobs.is_empty() {
        println!("  investigation settings: {}", knobs.join(" "));
    }
    let http = reqwest::Client::new();
    let (status, body) = login(&http, &t.base, &t.good[0], PASSWORD).await;
    assert_eq!(status, 200, "{body:?}");
    let next = body["next"].as_str().unwrap_or("?").to_owned();
    let (status, _) = login(&http, &t.base, &t.bad[0], WRONG).await;
    assert_eq!(status, 401, "a wrong password is refused");
    println!(
        "  a sign-in answers 200 with next = {next:?} (MFA required, the default), a session cookie, an audit event"
    );

    // 1. Throughput, interleaving right and wrong passwords so that noise hits both alike.
    let (mut ok_rates, mut bad_rates) = (Vec::new(), Vec::new());
    for r in 0..runs {
        let ok = login_run(t, &http, &t.good, PASSWORD, 200, total, callers).await;
        let bad = login_run(t, &http, &t.bad, WRONG, 401, total / 2, callers).await;
        println!(
            "  run {r}: {ok:6.1} sign-ins/s (right password, {total}) | {bad:6.1} refusals/s (wrong password, {})",
            total / 2
        );
        ok_rates.push(ok);
        bad_rates.push(bad);
    }
    let ok = median(ok_rates);
    let bad = median(bad_rates);
    let per_vcpu = ok / cpus as f64;
    println!(
        "  median: {ok:.1} password sign-ins/s ({callers} concurrent clients, {USERS} users) = {per_vcpu:.1} per vCPU"
    );
    println!(
        "  peer: Keycloak's sizing guide, ~{KEYCLOAK_LOGINS_PER_VCPU:.0} password logins/s per vCPU -> {:.2}x that",
        per_vcpu / KEYCLOAK_LOGINS_PER_VCPU
    );
    println!(
        "  median: {bad:.1} wrong-password refusals/s -> {:.2}x the sign-in rate (same Argon2 work; ~1 means failures are not cheaper)",
        bad / ok
    );

    // 2. Latency of health and an authenticated read: idle, during a sign-in storm, and (the
    // peer) while as many threads as the hashing pool admits only spin on the CPU.
    println!(
        "== latency: idle | storm of {storm_loops} concurrent sign-in loops | peer: {} CPU-spinning threads, no sign-ins ({probes} sequential probes per endpoint and phase) ==",
        t.hash_concurrency
    );
    let verbose = std::env::var("WK_BENCH_VERBOSE").is_ok();
    let mut rows = Vec::new();
    for r in 0..runs {
        let load = load_average();
        let idle = probe(t, probes).await;
        let idle_append = if verbose { append_probe(t, probes).await } else { Vec::new() };
        let idle_fsync = if verbose { fsync_probe(500).await } else { Vec::new() };
        let storm = Storm::start(t, &http, storm_loops, false);
        // Let the storm fill the hashing pool before measuring.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (before, w0) = (storm.completed(), t.services.write_stats());
        let window = Instant::now();
        let during_storm = probe(t, probes).await;
        let secs = window.elapsed().as_secs_f64();
        let (during, w1) = (storm.completed() - before, t.services.write_stats());
        let storm_append = if verbose { append_probe(t, probes).await } else { Vec::new() };
        let storm_fsync = if verbose { fsync_probe(500).await } else { Vec::new() };
        let login_lat = storm.stop().await;
        let spin = Storm::start(t, &http, 0, true);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let spinning = probe(t, probes).await;
        let spin_fsync = if verbose { fsync_probe(500).await } else { Vec::new() };
        spin.stop().await;
        let p = |v: &[f64], q: f64| percentile(v.to_vec(), q);
        // healthz: idle p50, idle p99, storm p50, storm p99, spin p99; then the same for the read.
        let row = [
            p(&idle.0, 0.5),
            p(&idle.0, 0.99),
            p(&during_storm.0, 0.5),
            p(&during_storm.0, 0.99),
            p(&spinning.0, 0.99),
            p(&idle.1, 0.5),
            p(&idle.1, 0.99),
            p(&during_storm.1, 0.5),
            p(&during_storm.1, 0.99),
            p(&spinning.1, 0.99),
        ];
        let login_p50 = if login_lat.is_empty() { f64::NAN } else { percentile(login_lat, 0.5) };
        println!(
            "  run {r}: /healthz p99 {:.2} | {:.2} ({:.1}x) | {:.2} ms  --  read p99 {:.2} | {:.2} ({:.1}x) | {:.2} ms  --  {during} sign-ins in the {secs:.1}s storm window ({:.1}/s, each p50 {login_p50:.0} ms); load average {load}",
            row[1],
            row[3],
            row[3] / row[1],
            row[4],
            row[6],
            row[8],
            row[8] / row[6],
            row[9],
            during as f64 / secs
        );
        if verbose {
            let commits = w1.commits - w0.commits;
            println!(
                "    writer during the storm window: {commits} commits ({:.0}/s), {:.1} jobs per commit, {} events",
                commits as f64 / secs,
                (w1.jobs_committed - w0.jobs_committed) as f64 / commits.max(1) as f64,
                w1.events - w0.events
            );
            println!(
                "    audit-only append (the api.read part of a read), {probes} sequential on the server runtime: p50 {:.2} -> {:.2} ms, p99 {:.2} -> {:.2} ms ({:.1}x)",
                p(&idle_append, 0.5),
                p(&storm_append, 0.5),
                p(&idle_append, 0.99),
                p(&storm_append, 0.99),
                p(&storm_append, 0.99) / p(&idle_append, 0.99)
            );
            println!(
                "    fdatasync of a 4 KiB append, 500 sequential: p50 {:.2} | {:.2} | {:.2} ms, p99 {:.2} | {:.2} | {:.2} ms (idle | storm | spinners)",
                p(&idle_fsync, 0.5),
                p(&storm_fsync, 0.5),
                p(&spin_fsync, 0.5),
                p(&idle_fsync, 0.99),
                p(&storm_fsync, 0.99),
                p(&spin_fsync, 0.99)
            );
        }
        rows.push((row, during as f64 / secs));
    }
    let col = |i: usize| median(rows.iter().map(|(r, _)| r[i]).collect());
    let ratio = |i: usize, j: usize| median(rows.iter().map(|(r, _)| r[i] / r[j]).collect());
    let storm_rate = median(rows.iter().map(|(_, s)| *s).collect());
    let verdict = |x: f64| if x <= 2.0 { "MET" } else { "NOT MET" };
    println!("  medians over {runs} runs (p50 and p99, idle -> storm; the bound compares p99s of the same run):");
    for (name, o) in [("GET /healthz          ", 0usize), ("GET /api/v1/users/{id}", 5)] {
        let x = ratio(o + 3, o + 1);
        println!(
            "    {name}  p50 {:.2} -> {:.2} ms   p99 {:.2} -> {:.2} ms   storm/idle p99 {x:.2}x; bound 2x -> {}   | peer, CPU spinners: p99 {:.2} ms ({:.2}x idle)",
            col(o),
            col(o + 2),
            col(o + 1),
            col(o + 3),
            verdict(x),
            col(o + 4),
            ratio(o + 4, o + 1)
        );
    }
    println!(
        "    sign-ins completed during the storm windows: {storm_rate:.1}/s ({:.0}% of the median throughput above: the hashing pool was saturated)",
        100.0 * storm_rate / ok
    );
    server.stop().await;
    let db = Arc::try_unwrap(db).ok().expect("the server thread released the database");
    db.drop_db().await;
}

/// Benchmark tokens are minted by the local operator on the host, owned by no person.
pub(crate) fn operator_owner() -> wardkey_domain::TokenOwner {
    wardkey_domain::TokenOwner::System(wardkey_domain::TokenOwner::OPERATOR.into())
}
