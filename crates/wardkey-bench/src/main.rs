#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark harness: failing loudly is right
//! Wardkey benchmarks. Every figure is compared with a peer or a bound measured in the same
//! run, because these machines are shared and noisy: we print medians and ratios.
//!
//! ```text
//! cargo run --release -p wardkey-bench -- audit-append   # write path vs plain INSERT loops
//! cargo run --release -p wardkey-bench -- verify         # audit verify on 1,000,000 events; inclusion proofs
//! cargo run --release -p wardkey-bench -- users          # 100,000 users through the service layer
//! cargo run --release -p wardkey-bench -- logins         # password sign-ins/s; latency during a login storm
//! cargo run --release -p wardkey-bench -- decisions    # decision index vs Cedar and casbin, in process
//! cargo run --release -p wardkey-bench -- authzen-http # /access/v1/evaluation under wrk vs Cerbos; index rebuild
//! cargo run --release -p wardkey-bench -- all
//! WK_BENCH_DB=postgres cargo run --release -p wardkey-bench -- all   # the same on PostgreSQL
//! ```

/// The same allocator as the `wardkey` binary, since the server runs inside this process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod authzen_http;
mod cerbos;
mod decisions;
mod hr_import;
mod http_floor;
mod logins;
mod scim;
mod workload;

use std::sync::Arc;
use std::time::{Duration, Instant};
use wardkey_audit::{AuditDraft, LogSigner, LogVerifier, Outcome};
use wardkey_domain::{NewUser, SystemClock};
use wardkey_service::{ServiceConfig, Services};
use wardkey_store::{Store, StoreError};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l.to_owned()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn sample_draft(i: u64) -> AuditDraft {
    AuditDraft::new(format!("token:bench-{}", i % 17), wardkey_audit::Action::GrantCreate, Outcome::Success)
        .with_target(format!("grant:{:032x}", i))
        .with_request_id(format!("req-{i}"))
        .with_details(serde_json::json!({ "subject": format!("user:{:032x}", i * 7), "role": "cardiology-reader" }))
}

/// A fresh database for one measurement: a SQLite file in a temporary directory, or (with
/// `WK_BENCH_DB=postgres`) a new PostgreSQL database dropped afterwards.
enum Db {
    Sqlite(tempfile::TempDir),
    /// A SQLite data directory kept between runs (`WK_BENCH_DATA`).
    Kept(std::path::PathBuf),
    Postgres {
        url: String,
        name: String,
    },
}

fn pg_base() -> String {
    std::env::var("WARDKEY_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn on_postgres() -> bool {
    std::env::var("WK_BENCH_DB").is_ok_and(|v| v == "postgres")
}

fn db_label() -> &'static str {
    if on_postgres() { "PostgreSQL" } else { "SQLite" }
}

impl Db {
    async fn fresh() -> Db {
        if !on_postgres() {
            return Db::Sqlite(tempfile::tempdir().expect("tempdir"));
        }
        use sqlx::Connection;
        let base = pg_base();
        let name = format!("wk_bench_{:016x}", rand::random::<u64>());
        let mut conn = sqlx::PgConnection::connect(&base).await.expect("connect to PostgreSQL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create database");
        let (prefix, _) = base.rsplit_once('/').expect("URL with a database");
        Db::Postgres { url: format!("{prefix}/{name}"), name }
    }

    fn url(&self) -> String {
        match self {
            Db::Sqlite(dir) => format!("sqlite://{}", dir.path().join(wardkey_store::SQLITE_FILE).display()),
            Db::Kept(dir) => format!("sqlite://{}", dir.join(wardkey_store::SQLITE_FILE).display()),
            Db::Postgres { url, .. } => url.clone(),
        }
    }

    async fn open(&self) -> Store {
        let store = match self {
            Db::Sqlite(dir) => Store::open_sqlite_dir(dir.path(), Arc::new(SystemClock)).await,
            Db::Kept(dir) => Store::open_sqlite_dir(dir, Arc::new(SystemClock)).await,
            Db::Postgres { url, .. } => Store::open(url, Arc::new(SystemClock)).await,
        }
        .unwrap_or_else(|e| panic!("open store: {e}"));
        store.set_signer(LogSigner::generate("wardkey.bench/1"));
        store
    }

    /// Refreshes the planner's statistics, as autovacuum's autoanalyze would after a bulk
    /// load. This machine's PostgreSQL runs with autovacuum off; without statistics the
    /// planner guesses row counts and can ignore a selective index. Returns whether it ran.
    async fn analyze(&self) -> bool {
        if let Db::Postgres { url, .. } = self {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(url).await.expect("connect to PostgreSQL");
            sqlx::query("ANALYZE").execute(&mut conn).await.expect("ANALYZE");
            return true;
        }
        false
    }

    async fn drop_db(self) {
        if let Db::Postgres { name, .. } = self {
            use sqlx::Connection;
            if let Ok(mut conn) = sqlx::PgConnection::connect(&pg_base()).await {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                    .execute(&mut conn)
                    .await;
            }
        }
    }
}

/// Events through the real write path: `concurrency` callers, each job one audited event.
async fn write_path_run(events: u64, concurrency: u64, with_job: bool) -> f64 {
    let db = Db::fresh().await;
    let store = db.open().await;
    let started = Instant::now();
    let per_task = events / concurrency;
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_task {
                let d = sample_draft(t * per_task + i);
                if with_job {
                    // A write job that only audits: the path every state change takes.
                    store
                        .write(move |tx| {
                            Box::pin(async move {
                                tx.audit(d);
                                Ok::<_, StoreError>(())
                            })
                        })
                        .await
                        .expect("write");
                } else {
                    // Events without a state change (denials, reads, decisions).
                    store.append_audit(vec![d]).await.expect("append");
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let secs = started.elapsed().as_secs_f64();
    let stats = store.write_stats();
    if std::env::var("WK_BENCH_VERBOSE").is_ok() {
        eprintln!(
            "    {} commits, {:.1} jobs per commit on average, largest batch {}",
            stats.commits,
            stats.jobs_committed as f64 / stats.commits.max(1) as f64,
            stats.max_batch
        );
    }
    store.close().await;
    db.drop_db().await;
    (per_task * concurrency) as f64 / secs
}

fn peer_schema() -> &'static str {
    if on_postgres() {
        "CREATE TABLE ev (idx BIGINT PRIMARY KEY, time BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, \
         target TEXT, outcome TEXT NOT NULL, reason TEXT, source_ip TEXT, request_id TEXT, approver TEXT, request_ref TEXT, \
         details TEXT NOT NULL, leaf BYTEA NOT NULL, hashes BYTEA NOT NULL)"
    } else {
        "CREATE TABLE ev (idx INTEGER PRIMARY KEY, time INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, \
         target TEXT, outcome TEXT NOT NULL, reason TEXT, source_ip TEXT, request_id TEXT, approver TEXT, request_ref TEXT, \
         details TEXT NOT NULL, leaf BLOB NOT NULL, hashes BLOB NOT NULL)"
    }
}

/// The peer's own database, with the same durability settings as the store's.
async fn peer_pool(db: &Db) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    let url = match db {
        Db::Sqlite(dir) => format!("sqlite://{}?mode=rwc", dir.path().join("peer.db").display()),
        Db::Kept(dir) => format!("sqlite://{}?mode=rwc", dir.join("peer.db").display()),
        Db::Postgres { url, .. } => url.clone(),
    };
    let sqlite = !matches!(db, Db::Postgres { .. });
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if sqlite {
                    sqlx::query("PRAGMA journal_mode = WAL").fetch_all(&mut *conn).await?;
                    sqlx::query("PRAGMA synchronous = FULL").fetch_all(&mut *conn).await?;
                }
                Ok(())
            })
        })
        .connect(&url)
        .await
        .expect("peer db");
    sqlx::query(peer_schema()).execute(&pool).await.expect("schema");
    pool
}

async fn peer_insert(conn: &mut sqlx::AnyConnection, i: u64) {
    let d = sample_draft(i);
    sqlx::query("INSERT INTO ev (idx, time, actor, action, target, outcome, reason, source_ip, request_id, approver, request_ref, details, leaf, hashes) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)")
        .bind(i as i64)
        .bind(1_763_800_000_000_000i64 + i as i64)
        .bind(d.actor.clone())
        .bind(d.action.clone())
        .bind(d.target.clone())
        .bind(d.outcome.as_str())
        .bind(d.reason.clone())
        .bind(d.source_ip.clone())
        .bind(d.request_id.clone())
        .bind(d.approver.clone())
        .bind(d.request_ref.clone())
        .bind(d.details.to_string())
        .bind(vec![7u8; 32])
        .bind(vec![9u8; 64])
        .execute(conn)
        .await
        .expect("insert");
}

/// Plain INSERT loop, one durable commit per row (what an unbatched audit log does).
async fn peer_autocommit_run(rows: u64) -> f64 {
    let db = Db::fresh().await;
    let pool = peer_pool(&db).await;
    let mut conn = pool.acquire().await.expect("conn");
    let started = Instant::now();
    for i in 0..rows {
        peer_insert(&mut conn, i).await;
    }
    let rate = rows as f64 / started.elapsed().as_secs_f64();
    drop(conn);
    pool.close().await;
    db.drop_db().await;
    rate
}

/// Plain INSERT loop inside one transaction: the ceiling for these rows on this disk.
async fn peer_one_tx_run(rows: u64) -> f64 {
    let db = Db::fresh().await;
    let pool = peer_pool(&db).await;
    let mut tx = pool.begin().await.expect("begin");
    let started = Instant::now();
    for i in 0..rows {
        peer_insert(&mut tx, i).await;
    }
    tx.commit().await.expect("commit");
    let rate = rows as f64 / started.elapsed().as_secs_f64();
    pool.close().await;
    db.drop_db().await;
    rate
}

async fn bench_audit_append() {
    let runs: usize = std::env::var("WK_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let events = 100_000;
    let concurrency: u64 = std::env::var("WK_BENCH_CALLERS").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    if on_postgres() {
        println!("== audit append on PostgreSQL (default durability: synchronous_commit=on) ==");
    } else {
        println!("== audit append on SQLite (durable commits: WAL, synchronous=FULL) ==");
    }
    let (mut ours, mut jobs, mut auto, mut one_tx) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in 0..runs {
        // Interleave so that machine noise hits every contender alike.
        ours.push(write_path_run(events, concurrency, false).await);
        if std::env::var("WK_BENCH_ONLY_APPEND").is_ok() {
            println!("  run {r}: append_audit {:>9.0} ev/s", ours[r]);
            continue;
        }
        jobs.push(write_path_run(events / 4, concurrency, true).await);
        auto.push(peer_autocommit_run(2_000).await);
        one_tx.push(peer_one_tx_run(events).await);
        println!(
            "  run {r}: append_audit {:>9.0} ev/s | write job {:>8.0} ev/s | INSERT+COMMIT per row {:>8.0} rows/s | INSERT loop in one tx {:>9.0} rows/s",
            ours[r], jobs[r], auto[r], one_tx[r]
        );
    }
    if std::env::var("WK_BENCH_ONLY_APPEND").is_ok() {
        return;
    }
    let (o, j, a, t) = (median(ours), median(jobs), median(auto), median(one_tx));
    println!(
        "  median: append_audit {o:.0} events/s ({events} events, {concurrency} concurrent callers, each call = 1 event acknowledged only after its durable COMMIT)"
    );
    println!("  median: write job (savepoint + 1 event) {j:.0} events/s");
    println!("  median: plain INSERT loop, durable commit per row: {a:.0} rows/s  -> write path is {:.1}x", o / a);
    println!(
        "  median: plain INSERT loop, all rows in one transaction: {t:.0} rows/s  -> write path is {:.2}x of that ceiling",
        o / t
    );
    println!(
        "  bound: >= 20,000 events/s -> {} ({:.2}x the bound)",
        if o >= 20_000.0 { "MET" } else { "NOT MET" },
        o / 20_000.0
    );
}

async fn bench_verify() {
    let n: u64 = std::env::var("WK_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    println!("== audit verify on {n} events ({}) ==", db_label());
    let db = Db::fresh().await;
    let signer = LogSigner::generate("wardkey.bench/1");
    let verifier = LogVerifier::from_signer(&signer);
    {
        let store = db.open().await;
        store.set_signer(signer);
        let fill = Instant::now();
        let batch = 1000u64;
        let mut tasks = Vec::new();
        for t in 0..4u64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut i = t * batch;
                while i < n {
                    let drafts: Vec<AuditDraft> = (i..(i + batch).min(n)).map(sample_draft).collect();
                    store.append_audit(drafts).await.expect("append");
                    // A checkpoint every ~10,000 events, as a busy server would sign them.
                    if (i / batch).is_multiple_of(10) {
                        store.checkpoint_now().await.expect("checkpoint");
                    }
                    i += 4 * batch;
                }
            }));
        }
        for (k, t) in tasks.into_iter().enumerate() {
            t.await.expect("fill task");
            let _ = k;
        }
        store.checkpoint_now().await.expect("checkpoint");
        println!("  filled in {:.1}s", fill.elapsed().as_secs_f64());
        store.close().await;
    }
    let url = db.url();
    let mut times = Vec::new();
    for r in 0..3 {
        let store = Store::open_for_verify(&url).await.expect("open for verify");
        let started = Instant::now();
        let report = store.verify_audit(&verifier).await.unwrap_or_else(|f| panic!("verify failed: {f}"));
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(report.tree_size, n);
        println!("  run {r}: verified {} events, {} checkpoints in {secs:.2}s", report.tree_size, report.checkpoints);
        times.push(secs);
        store.close().await;
    }
    let m = median(times);
    println!(
        "  median verify time {m:.2}s; bound 5 s -> {} ({:.2}x of the bound)",
        if m <= 5.0 { "MET" } else { "NOT MET" },
        m / 5.0
    );

    let store = Store::open_for_verify(&url).await.expect("open");
    let mut lat = Vec::new();
    let mut rng_state = 0x2545F4914F6CDD1Du64;
    for _ in 0..2000 {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        let index = rng_state % n;
        let started = Instant::now();
        let mut r = store.read().await.expect("read");
        let proof = r.inclusion_proof(index, n).await.expect("proof");
        lat.push(started.elapsed().as_secs_f64() * 1000.0);
        std::hint::black_box(proof);
    }
    let (p50, p99) = (percentile(lat.clone(), 0.5), percentile(lat, 0.99));
    println!(
        "  inclusion proof (random index, tree of {n}): median {p50:.3} ms, p99 {p99:.3} ms; bound 1 ms -> {} ({:.2}x of the bound)",
        if p50 <= 1.0 { "MET" } else { "NOT MET" },
        p50
    );
    store.close().await;
    db.drop_db().await;
}

async fn bench_users() {
    let n: u64 = std::env::var("WK_BENCH_USERS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    println!("== {n} users through the service layer ({}) ==", db_label());
    let db = Db::fresh().await;
    let store = db.open().await;
    let services = Services::new(store.clone(), ServiceConfig::default());
    let rss_before = peak_rss_mib();
    let started = Instant::now();
    let concurrency = 64u64;
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let services = services.clone();
        tasks.push(tokio::spawn(async move {
            let op = services.operator("bench");
            let mut i = t;
            while i < n {
                let input = NewUser {
                    username: format!("user{i:07}"),
                    display_name: Some(format!("User {i}")),
                    email: Some(format!("user{i}@hospital.example")),
                    status: None,
                    hr: wardkey_domain::HrAttributes {
                        employee_id: Some(format!("E{i:07}")),
                        department: Some(["Cardiology", "Oncology", "ED", "Radiology"][(i % 4) as usize].into()),
                        job_code: Some("RN".into()),
                        ..Default::default()
                    },
                };
                services.create_user(&op, input).await.expect("create user");
                i += concurrency;
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let secs = started.elapsed().as_secs_f64();
    let size = store.read().await.expect("read").audit_tree_size().await.expect("size");
    println!(
        "  created {n} users in {secs:.1}s ({:.0} users/s, {concurrency} concurrent callers); audit events {size}",
        n as f64 / secs
    );
    println!("  peak RSS {:.0} MiB (before: {rss_before:.0} MiB)", peak_rss_mib());
    store.close().await;
    db.drop_db().await;
}

fn main() {
    let what = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let started = Instant::now();
        match what.as_str() {
            "audit-append" => bench_audit_append().await,
            "verify" => bench_verify().await,
            "users" => bench_users().await,
            "logins" => logins::bench_logins().await,
            "decisions" => decisions::bench_decisions().await,
            "authzen-http" => authzen_http::bench_authzen_http().await,
            "hr-import" => hr_import::bench_hr_import().await, // HR roster plan + apply, 100,000 rows (not in "all")
            "scim" => scim::bench_scim().await, // SCIM create/filter/termination on SQLite and PostgreSQL (not in "all")
            "all" => {
                bench_audit_append().await;
                bench_verify().await;
                bench_users().await;
                logins::bench_logins().await;
                decisions::bench_decisions().await;
                authzen_http::bench_authzen_http().await;
            }
            other => {
                eprintln!("unknown benchmark {other:?}; use audit-append, verify, users, logins, decisions, authzen-http or all");
                std::process::exit(2);
            }
        }
        let _ = Duration::from_secs(0);
        eprintln!("(benchmarks took {:.0}s)", started.elapsed().as_secs_f64());
    });
}
