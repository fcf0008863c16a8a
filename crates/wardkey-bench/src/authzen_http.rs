//! `/access/v1/evaluation` over HTTP on loopback, driven by wrk (HTTP/1.1 keep-alive, 16
//! connections, 1,024 rotating request bodies), with decision audit off, async and sync; and
//! the same load on Cerbos's AuthZEN endpoint loaded with the equivalent policy. Also the
//! decision index's rebuild from the store at start-up, and its memory.
//!
//! The workload (see `workload.rs`) goes through the service layer into a fresh store, as an
//! import would: every record with its audit event. The server runs in this process on a
//! runtime of its own (one worker per core, like `wardkey serve`); wrk is a separate process.
//!
//! Needs `wrk` on the PATH (`apt-get install wrk`) and, for the peer, the Cerbos binary from the
//! npm package `@cerbos/cerbos-linux-x64` at `WK_BENCH_CERBOS` (default `cerbos` on the PATH);
//! without it the Cerbos run is skipped with a note. `WK_BENCH_QUICK=1` runs only audit off and
//! the floor, without a verdict, for trying a change. `WK_BENCH_WRK_SECS` (default 15) sets the
//! length of each wrk run, `WK_BENCH_WRK_RUNS` (default 3) their number,
//! `WK_BENCH_WARMUP_SECS` (default 15; 0 for none) a discarded run before them, and
//! `WK_BENCH_WRK_THREADS` (default 2) wrk's threads, for every server alike.
//!
//! Each run also prints what a request cost in CPU time — this process (the server, for
//! Wardkey and the floor) and wrk — from `/proc`: unlike req/s, that figure hardly moves when
//! the host is busy, so it is the one to compare changes by. And it counts host stalls (a 1 ms
//! sleep taking over 10 ms): on these microVMs the host sometimes pauses both vCPUs for
//! 25-40 ms, every 100 ms for a few seconds, and a run that caught that has the host's p99.

use crate::workload::{ACTIONS, Holder, REQUESTS, Sizes, TYPES, Workload};
use crate::{Db, median};
use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use wardkey_domain::*;
use wardkey_server::ServerConfig;
use wardkey_service::{ServiceConfig, Services};

const CONCURRENCY: usize = 64;
const CONNECTIONS: usize = 16;

/// Runs `f(i)` for `i in 0..n`, `CONCURRENCY` at a time, answers in order.
async fn par<T, F, Fut>(n: usize, f: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    futures::stream::iter(0..n).map(f).buffered(CONCURRENCY).collect().await
}

fn vm_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| l.to_owned()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// The ids the store gave the workload's records.
#[derive(serde::Serialize, serde::Deserialize)]
struct Loaded {
    types: Vec<ResourceTypeId>,
    users: Vec<UserId>,
    resources: Vec<ResourceId>,
}

async fn populate(services: &Services, w: &Workload) -> Loaded {
    let op = services.operator("bench");
    let op = &op;
    let t = Instant::now();
    let types: Vec<ResourceTypeId> = par(TYPES.len(), |i| async move {
        let input = NewResourceType {
            name: TYPES[i].into(),
            description: None,
            actions: ACTIONS.iter().map(|a| (*a).to_owned()).collect(),
            phi: false,
            decision_audit: DecisionAudit::default(),
        };
        services.create_resource_type(op, input).await.expect("resource type").value.id
    })
    .await;
    // Parents come before children (lower index, shallower level): one level at a time.
    let mut resources: Vec<ResourceId> = Vec::with_capacity(w.resources.len());
    for level in 0..TYPES.len() {
        let idx: Vec<usize> = (0..w.resources.len()).filter(|&i| w.resources[i].ty == level).collect();
        assert!(idx.first().is_none_or(|&f| f == resources.len()), "levels are contiguous");
        let done = &resources;
        let (types, idx) = (&types, &idx);
        let made: Vec<ResourceId> = par(idx.len(), |k| async move {
            let i = idx[k];
            let r = &w.resources[i];
            let input = NewResource {
                type_id: types[r.ty],
                name: format!("r{i}"),
                parent_id: r.parent.map(|p| done[p]),
                description: None,
                attributes: Default::default(),
            };
            services.create_resource(op, input).await.expect("resource").value.id
        })
        .await;
        resources.extend(made);
    }
    let roles: Vec<RoleId> = par(w.roles.len(), |i| async move {
        let role = w.role(i, &w.roles[i], crate::workload::now());
        let input = NewRole {
            name: role.name,
            description: None,
            permissions: role.permissions,
            privileged: false,
            session_policy: RoleSessionPolicy::default(),
            conditions: role.conditions,
            break_glass: false,
        };
        services.create_role(op, input).await.expect("role").value.id
    })
    .await;
    let groups: Vec<GroupId> = par(w.groups, |i| async move {
        services.create_group(op, NewGroup { name: format!("g{i}"), description: None }).await.expect("group").value.id
    })
    .await;
    println!(
        "  loaded types, {} resources, {} roles, {} groups in {:.0}s",
        resources.len(),
        roles.len(),
        groups.len(),
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let groups_ref = &groups;
    let users: Vec<UserId> = par(w.users.len(), |i| async move {
        let input = NewUser {
            username: format!("u{i}"),
            display_name: None,
            email: None,
            status: None,
            hr: HrAttributes::default(),
        };
        let user = services.create_user(op, input).await.expect("user").value;
        let user = services
            .verify_identity(op, user.id, user.version, "in_person_government_id".into())
            .await
            .expect("verify")
            .value;
        let user = services
            .set_user_status(op, user.id, user.version, UserStatus::Active, None)
            .await
            .expect("activate")
            .value;
        services.add_member(op, groups_ref[w.users[i].group], Member::User(user.id)).await.expect("member");
        user.id
    })
    .await;
    println!(
        "  loaded {} users (created, verified, activated, in a group) in {:.0}s",
        users.len(),
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let expires = chrono::Utc::now() + chrono::Duration::days(30);
    let (users_ref, resources_ref, roles_ref) = (&users, &resources, &roles);
    par(w.grants.len(), |i| async move {
        let g = &w.grants[i];
        let input = NewGrant {
            subject: match g.holder {
                Holder::User(u) => Subject::User(users_ref[u]),
                Holder::Group(k) => Subject::Group(groups_ref[k]),
            },
            role_id: roles_ref[g.role],
            resource_id: g.scope.map(|r| resources_ref[r]),
            source: None,
            requester: None,
            approver: None,
            justification: Some("benchmark".into()),
            starts_at: None,
            expires_at: g.expires.then_some(expires),
            conditions: Conditions::default(),
        };
        services.create_grant(op, input).await.expect("grant");
    })
    .await;
    // Suspensions last: a grant to a suspended user would be refused.
    let suspended: Vec<usize> = (0..w.users.len()).filter(|&i| !w.users[i].active).collect();
    let suspended_ref = &suspended;
    par(suspended.len(), |k| async move {
        let id = users_ref[suspended_ref[k]];
        let user = services.get_user(op, id).await.expect("user");
        services
            .set_user_status(op, id, user.version, UserStatus::Suspended, Some("benchmark".into()))
            .await
            .expect("suspend");
    })
    .await;
    println!(
        "  loaded {} grants and {} suspensions in {:.0}s",
        w.grants.len(),
        suspended.len(),
        t.elapsed().as_secs_f64()
    );
    Loaded { types, users, resources }
}

fn wardkey_body(w: &Workload, l: &Loaded, i: usize) -> String {
    let a = &w.asks[i];
    serde_json::json!({
        "subject": { "type": "user", "id": l.users[a.user].to_string() },
        "action": { "name": ACTIONS[a.action] },
        "resource": { "type": TYPES[w.resources[a.resource].ty], "id": l.resources[a.resource].to_string() },
        "context": { "assurance": if a.mfa { "mfa" } else { "password" } }
    })
    .to_string()
}

/// A wrk script that posts the bodies in turn (each thread starts at its own offset). The
/// requests are formatted once per thread in `init`, not per request: wrk shares the two
/// vCPUs with the server, and building each request in Lua took CPU time from whatever server
/// was measured (Wardkey, the floor and Cerbos alike).
pub(crate) fn wrk_script(dir: &Path, name: &str, bodies: &[String], token: Option<&str>) -> PathBuf {
    let mut lua = String::from("wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n");
    if let Some(t) = token {
        lua.push_str(&format!("wrk.headers[\"Authorization\"] = \"Bearer {t}\"\n"));
    }
    lua.push_str("local bodies = {\n");
    for b in bodies {
        assert!(!b.contains("]]"), "a body must fit a Lua long string");
        lua.push_str(&format!("[[{b}]],\n"));
    }
    lua.push_str(
        "}\nlocal i = 0\nlocal n = 0\nsetup = function(thread) thread:set(\"offset\", n * 257); n = n + 1 end\n\
         local reqs = {}\n",
    );
    // WK_BENCH_WRK_FORMAT_EACH=1: the earlier script, one `wrk.format` per request (to compare).
    if std::env::var("WK_BENCH_WRK_FORMAT_EACH").is_ok_and(|v| v == "1") {
        lua.push_str(
            "init = function(args) i = offset or 0 end\n\
             request = function() i = i % #bodies + 1; return wrk.format(nil, nil, nil, bodies[i]) end\n",
        );
    } else {
        lua.push_str(
            "init = function(args) i = offset or 0; for k, b in ipairs(bodies) do reqs[k] = wrk.format(nil, nil, nil, b) end end\n\
             request = function() i = i % #reqs + 1; return reqs[i] end\n",
        );
    }
    // wrk prints p50-p99; the tail beyond p99 says whether a bad p99 was a broad shoulder or a
    // few long pauses.
    lua.push_str("done = function(summary, latency, requests) io.write(string.format(\"wk-p999 %d\\n\", latency:percentile(99.9))) end\n");
    let path = dir.join(name);
    std::fs::write(&path, lua).expect("wrk script");
    path
}

pub(crate) struct WrkResult {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub non_2xx: u64,
    /// CPU time of this process per request, µs (the server's, when it runs in here).
    pub self_cpu_us: f64,
    /// CPU time of wrk per request, µs.
    pub wrk_cpu_us: f64,
    /// Sleeps of 1 ms that took over 10 ms during the run (the host pausing the VM).
    pub stalls: u64,
    pub worst_stall_ms: f64,
    /// CPU time the hypervisor gave to others while this VM's vCPUs wanted it (`steal` in
    /// `/proc/stat`), as a share of all vCPU time during the run.
    pub steal_pct: f64,
}

fn wrk_ms(v: &str) -> f64 {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        _ => f64::NAN,
    }
}

/// wrk's threads: 2 by default; `WK_BENCH_WRK_THREADS` overrides it for every server measured.
pub(crate) fn wrk_threads() -> usize {
    std::env::var("WK_BENCH_WRK_THREADS").ok().and_then(|v| v.parse().ok()).filter(|&t| t >= 1).unwrap_or(2)
}

/// CPU time (user + system, seconds) of this process and of its waited-for children, from
/// `/proc/self/stat` (clock ticks of 10 ms; a run of several seconds makes that precise enough).
fn cpu_secs() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest.split_whitespace().map(|v| v.parse().unwrap_or(0.0)).collect();
    // utime, stime, cutime, cstime are fields 14-17 of the whole line: 11-14 after ')'.
    let at = |i: usize| f.get(i).copied().unwrap_or(0.0) / 100.0;
    (at(11) + at(12), at(13) + at(14))
}

fn vcpus() -> f64 {
    std::thread::available_parallelism().map(|n| n.get() as f64).unwrap_or(1.0)
}

/// The machine's steal time so far, seconds (summed over vCPUs; ticks of 10 ms).
fn steal_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(8))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|ticks| ticks / 100.0)
        .unwrap_or(0.0)
}

/// Watches for the whole machine stalling: a thread that sleeps 1 ms at a time and counts the
/// sleeps that took over 10 ms. On this project's VMs the host pauses both vCPUs for 25-40 ms
/// at a time in some periods (seen right after a large index rebuild freed memory); a run with
/// stalls says so, since its p99 is then the host's, not the server's.
struct StallWatch {
    stalls: std::sync::Arc<std::sync::atomic::AtomicU64>,
    worst_us: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StallWatch {
    fn start() -> StallWatch {
        use std::sync::atomic::Ordering::Relaxed;
        let stalls = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let worst_us = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, w, st) = (stalls.clone(), worst_us.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Relaxed) {
                let t = Instant::now();
                std::thread::sleep(Duration::from_millis(1));
                let took = t.elapsed();
                if took > Duration::from_millis(10) {
                    s.fetch_add(1, Relaxed);
                    w.fetch_max(took.as_micros() as u64, Relaxed);
                }
            }
        });
        StallWatch { stalls, worst_us, stop, thread: Some(thread) }
    }

    /// Stops watching: how many stalls, and the longest in ms.
    fn finish(mut self) -> (u64, f64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (self.stalls.load(Relaxed), self.worst_us.load(Relaxed) as f64 / 1000.0)
    }
}

fn run_wrk(url: &str, script: &Path, secs: u64) -> WrkResult {
    let (self_before, wrk_before) = cpu_secs();
    let steal_before = steal_secs();
    let watch = StallWatch::start();
    let out = Command::new("wrk")
        .args([&format!("-t{}", wrk_threads()), &format!("-c{CONNECTIONS}"), &format!("-d{secs}s"), "--latency", "-s"])
        .arg(script)
        .arg(url)
        .stderr(Stdio::inherit())
        .output()
        .expect("wrk runs (apt-get install wrk)");
    let (stalls, worst_stall_ms) = watch.finish();
    let (self_after, wrk_after) = cpu_secs();
    let steal = steal_secs() - steal_before;
    let text = String::from_utf8_lossy(&out.stdout);
    let find = |prefix: &str| {
        text.lines().map(str::trim).find(|l| l.starts_with(prefix)).map(|l| l[prefix.len()..].trim().to_owned())
    };
    let rps = find("Requests/sec:").and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
    let p50_ms = find("50%").map(|v| wrk_ms(&v)).unwrap_or(f64::NAN);
    let p99_ms = find("99%").map(|v| wrk_ms(&v)).unwrap_or(f64::NAN);
    let p999_ms = find("wk-p999").and_then(|v| v.parse::<f64>().ok()).map(|us| us / 1000.0).unwrap_or(f64::NAN);
    let non_2xx = find("Non-2xx or 3xx responses:").and_then(|v| v.parse().ok()).unwrap_or(0);
    if rps.is_nan() {
        eprintln!("wrk printed:\n{text}");
    }
    let requests = rps * secs as f64;
    WrkResult {
        rps,
        p50_ms,
        p99_ms,
        p999_ms,
        non_2xx,
        self_cpu_us: (self_after - self_before) * 1e6 / requests,
        wrk_cpu_us: (wrk_after - wrk_before) * 1e6 / requests,
        stalls,
        worst_stall_ms,
        steal_pct: steal * 100.0 / (secs as f64 * vcpus()),
    }
}

fn print_wrk(name: &str, r: &WrkResult) {
    println!(
        "  {name:<36} {:>9.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms{}",
        r.rps,
        r.p50_ms,
        r.p99_ms,
        if r.non_2xx > 0 { format!("   ({} non-2xx!)", r.non_2xx) } else { String::new() }
    );
}

/// A discarded wrk run before the measured ones (`WK_BENCH_WARMUP_SECS`, default 15; 0 for
/// none): the first seconds of load after a start-up are not the steady state, for any server
/// (after the full-scale index rebuild the host stalled the VM for 10-15 s; 5 s was too short).
pub(crate) fn warm_up(url: &str, script: &Path) {
    let secs: u64 = std::env::var("WK_BENCH_WARMUP_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(15);
    if secs > 0 {
        let r = run_wrk(url, script, secs);
        println!("      warm-up (discarded): {:>7.0} req/s  p99 {:.2} ms  host stalls {}", r.rps, r.p99_ms, r.stalls);
    }
}

/// Several wrk runs after a warm-up; the one with the median rate. Each run is printed with
/// the CPU it cost per request: this process (the server, when it runs in here; not for
/// Cerbos, which is another process) and wrk, and the host stalls seen during it.
pub(crate) fn wrk_median(url: &str, script: &Path, secs: u64, runs: usize) -> WrkResult {
    warm_up(url, script);
    let mut all: Vec<WrkResult> = (0..runs)
        .map(|_| {
            let r = run_wrk(url, script, secs);
            println!(
                "      run: {:>7.0} req/s  p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  cpu/req: bench process {:.1} us, wrk {:.1} us  steal {:.1}%  host stalls {}{}",
                r.rps,
                r.p50_ms,
                r.p99_ms,
                r.p999_ms,
                r.self_cpu_us,
                r.wrk_cpu_us,
                r.steal_pct,
                r.stalls,
                if r.stalls > 0 { format!(" (worst {:.0} ms)", r.worst_stall_ms) } else { String::new() }
            );
            r
        })
        .collect();
    let m = median(all.iter().map(|r| r.rps).collect());
    let k = all.iter().position(|r| r.rps == m).unwrap_or(0);
    all.swap_remove(k)
}

/// Marks the workload's types PHI (decision audit in `mode`) or not (no decision audit).
async fn set_audit(
    services: &Services,
    op: &wardkey_service::Authorized<wardkey_service::Admin>,
    types: &[ResourceTypeId],
    phi: bool,
    mode: DecisionAudit,
) {
    for t in types {
        let current = services.get_resource_type(op, *t).await.expect("type");
        if current.phi == phi && current.decision_audit == mode {
            continue;
        }
        let update = ResourceTypeUpdate {
            version: current.version,
            description: None,
            actions: None,
            phi: Some(phi),
            decision_audit: Some(mode),
        };
        services.update_resource_type(op, *t, update).await.expect("audit mode");
    }
}

pub async fn bench_authzen_http() {
    let sizes = Sizes::from_env();
    let secs: u64 = std::env::var("WK_BENCH_WRK_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(15);
    let runs: usize = std::env::var("WK_BENCH_WRK_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    println!(
        "== AuthZEN over HTTP ({}): {} users, {} roles, {} resources, {} grants; wrk -t{} -c{CONNECTIONS}, {REQUESTS} rotating bodies, {runs} x {secs}s per setup (median) ==",
        crate::db_label(),
        sizes.users,
        sizes.roles,
        sizes.resources,
        sizes.grants,
        wrk_threads(),
    );
    let w = Workload::generate(&sizes);
    let expected: Vec<bool> = {
        let index = wardkey_authz::Index::build(w.records());
        let c = |mfa: bool| {
            wardkey_authz::RequestContext::at(crate::workload::now()).with_assurance(if mfa {
                Assurance::Mfa
            } else {
                Assurance::Password
            })
        };
        w.asks
            .iter()
            .map(|a| {
                let (u, r) = (
                    crate::workload::ids::user(a.user).to_string(),
                    crate::workload::ids::resource(a.resource).to_string(),
                );
                index.check(&wardkey_authz::Request {
                    subject: wardkey_authz::SubjectRef::user(&u),
                    action: ACTIONS[a.action],
                    resource: wardkey_authz::ResourceRef::new(TYPES[w.resources[a.resource].ty], &r),
                    context: c(a.mfa),
                })
            })
            .collect()
    };
    // WK_BENCH_DATA=<dir>: a SQLite data directory kept between runs (populated once; the
    // ids are kept beside it), since loading the workload takes minutes.
    let kept = std::env::var("WK_BENCH_DATA").ok().map(PathBuf::from);
    let db = std::sync::Arc::new(match &kept {
        Some(dir) => {
            std::fs::create_dir_all(dir).expect("WK_BENCH_DATA directory");
            Db::Kept(dir.clone())
        }
        None => Db::fresh().await,
    });
    let ids_file = kept.as_ref().map(|d| d.join("bench-ids.json"));
    let reused: Option<Loaded> =
        ids_file.as_ref().and_then(|f| std::fs::read(f).ok()).and_then(|b| serde_json::from_slice(&b).ok());
    let loaded = match reused {
        Some(l) => {
            println!(
                "  reusing the populated store in {}",
                kept.as_ref().map(|d| d.display().to_string()).unwrap_or_default()
            );
            l
        }
        None => {
            let store = db.open().await;
            let services = Services::new(store.clone(), ServiceConfig::default());
            let started = Instant::now();
            let loaded = populate(&services, &w).await;
            println!("  store populated in {:.0}s", started.elapsed().as_secs_f64());
            store.close().await;
            if let Some(f) = &ids_file {
                std::fs::write(f, serde_json::to_vec(&loaded).expect("ids")).expect("write ids");
            }
            loaded
        }
    };

    // Start-up: the index rebuilt from the store, as `wardkey serve` does before listening.
    let rss_before = vm_rss_mib();
    let store = db.open().await;
    let services = Services::new(store.clone(), ServiceConfig::default());
    let (revision, took) = services.start_decision_point().await.expect("decision index");
    let rss_after = vm_rss_mib();
    println!(
        "  start-up index rebuild from the store: {:.2}s at revision {revision}; resident memory {rss_before:.0} -> {rss_after:.0} MiB (+{:.0} MiB, index plus allocator slack)",
        took.as_secs_f64(),
        rss_after - rss_before
    );

    let op = services.operator("bench");
    let (_, token) = services
        .create_token(
            &op,
            NewApiToken {
                name: "bench-pdp".into(),
                scopes: vec![Scope::Pdp],
                owner: crate::logins::operator_owner(),
                expires_at: None,
            },
        )
        .await
        .expect("pdp token")
        .value;

    // The server on a runtime of its own, one worker per core.
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<String>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_services = services.clone();
    let server_thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("server runtime");
        rt.block_on(async move {
            let server = wardkey_server::spawn(
                ServerConfig { listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)), ..ServerConfig::default() },
                server_services,
            )
            .await
            .expect("server starts");
            let _ = ready_tx.send(server.base_url());
            let _ = stop_rx.await;
            server.shutdown().await.expect("clean shutdown");
        });
    });
    let base = ready_rx.await.expect("server ready");
    let url = format!("{base}/access/v1/evaluation");

    // Every answer over HTTP must match the in-process index's.
    let http = reqwest::Client::new();
    let bodies: Vec<String> = (0..REQUESTS).map(|i| wardkey_body(&w, &loaded, i)).collect();
    for (i, body) in bodies.iter().enumerate() {
        let resp = http
            .post(&url)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("evaluation");
        assert_eq!(resp.status(), 200, "request {i}");
        let v: serde_json::Value = resp.json().await.expect("json");
        assert_eq!(v["decision"], expected[i], "request {i}: over HTTP {v}");
    }
    let allows = expected.iter().filter(|a| **a).count();
    println!("  all {REQUESTS} HTTP answers match the in-process index ({allows} allow)");

    let dir = tempfile::tempdir().expect("tempdir");
    let script = wrk_script(dir.path(), "wardkey.lua", &bodies, Some(&token));
    set_audit(&services, &op, &loaded.types, false, DecisionAudit::default()).await;
    let off = wrk_median(&url, &script, secs, runs);
    print_wrk("Wardkey, decision audit off", &off);
    // WK_BENCH_QUICK=1: audit off and the floor only, for trying a change (no verdict).
    let quick = std::env::var("WK_BENCH_QUICK").is_ok_and(|v| v == "1");
    let mut modes = Vec::new();
    for mode in [DecisionAudit::Async, DecisionAudit::Sync] {
        if quick {
            break;
        }
        set_audit(&services, &op, &loaded.types, true, mode).await;
        let before = store.read().await.expect("read").audit_tree_size().await.expect("size");
        let r = wrk_median(&url, &script, secs, runs);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = store.read().await.expect("read").audit_tree_size().await.expect("size");
        print_wrk(
            &format!("Wardkey, decision audit {}", if mode == DecisionAudit::Async { "async" } else { "sync" }),
            &r,
        );
        println!("      ({} decision events written during these runs)", after - before);
        modes.push(r);
    }
    // The same wrk script against the bare stack (no auth, middleware or decision).
    let floor = crate::http_floor::run(&script, secs, runs).await;
    print_wrk("HTTP floor (axum, parse, fixed answer)", &floor);
    println!(
        "      Wardkey audit off = {:.2} of the floor's req/s; the floor itself is {:.2}x the 40,000 req/s goal",
        off.rps / floor.rps,
        floor.rps / 40_000.0
    );
    let bound = |r: &WrkResult| r.rps >= 40_000.0 && r.p99_ms <= 2.0;
    if quick {
        let _ = stop_tx.send(());
        tokio::task::spawn_blocking(move || server_thread.join().expect("server thread")).await.expect("join");
        store.close().await;
        println!("  (WK_BENCH_QUICK: no audit modes, no Cerbos, no verdict)");
        let db = std::sync::Arc::try_unwrap(db).ok().expect("database released");
        if kept.is_none() {
            db.drop_db().await;
        }
        return;
    }
    println!(
        "  goal >= 40,000 req/s with p99 <= 2 ms (audit off or async): off {}, async {}",
        if bound(&off) { "MET" } else { "NOT MET" },
        if bound(&modes[0]) { "MET" } else { "NOT MET" }
    );

    let _ = stop_tx.send(());
    tokio::task::spawn_blocking(move || server_thread.join().expect("server thread")).await.expect("join");
    services.drain_decision_audit().await;
    store.close().await;

    match crate::cerbos::run(&w, &expected, dir.path(), secs, runs).await {
        Some(cerbos) => {
            print_wrk("Cerbos AuthZEN (equivalent policy)", &cerbos);
            println!(
                "  ratio Wardkey / Cerbos: audit off {:.1}x req/s ({:.1}x lower p99), async {:.1}x, sync {:.1}x",
                off.rps / cerbos.rps,
                cerbos.p99_ms / off.p99_ms,
                modes[0].rps / cerbos.rps,
                modes[1].rps / cerbos.rps,
            );
            // The goal, per audit mode: >= 40,000 req/s, p99 <= 2 ms and >= 10x Cerbos
            // ("with audit off or async").
            let whole = |r: &WrkResult| bound(r) && r.rps / cerbos.rps >= 10.0;
            println!(
                "  goal (>= 40,000 req/s, p99 <= 2 ms, >= 10x Cerbos) with audit off or async: off {}, async {} -> {}",
                if whole(&off) { "MET" } else { "NOT MET" },
                if whole(&modes[0]) { "MET" } else { "NOT MET" },
                if whole(&off) || whole(&modes[0]) { "MET" } else { "NOT MET" }
            );
        }
        None => println!("  Cerbos: not run (set WK_BENCH_CERBOS to the binary from npm @cerbos/cerbos-linux-x64)"),
    }
    let db = std::sync::Arc::try_unwrap(db).ok().expect("database released");
    if kept.is_none() {
        db.drop_db().await;
    }
}
