//! The peer for the HTTP decision benchmark: Cerbos (the binary from the npm package
//! `@cerbos/cerbos-linux-x64`) on its AuthZEN endpoint, loaded with the policy equivalent to
//! the workload.
//!
//! Cerbos keeps no directory: the caller sends who the principal is. So each request carries
//! what Wardkey would look up itself: the roles the user holds (directly or through their
//! group) in `subject.properties["cerbos.roles"]` (the key Cerbos 0.55 reads roles from), the
//! scopes per role (`scopes`, `*` for type-wide), the user's `status` and the `assurance` of the
//! session (Cerbos passes no AuthZEN context other than its own keys to policies); the resource
//! carries its ancestor chain, itself first. The policy: one resource policy per type, one rule
//! per role that names the type, allowing the role's actions when the user is active, the
//! role's scopes contain `*` or meet the chain, and (for MFA roles) the assurance is `mfa`.
//! Every one of the 1,024 answers must match Wardkey's before anything is timed.
//!
//! Run as a fair peer: requests logged at `warn` only, audit and telemetry off, the same
//! transport (HTTP/1.1 JSON on loopback) and the same wrk settings as Wardkey.

use crate::authzen_http::{WrkResult, wrk_median, wrk_script};
use crate::workload::{ACTIONS, Holder, REQUESTS, TYPES, Workload, mask_actions};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn binary() -> Option<PathBuf> {
    let candidate = std::env::var("WK_BENCH_CERBOS").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("cerbos"));
    Command::new(&candidate)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()
        .filter(|s| s.success())
        .map(|_| candidate)
}

fn policies(w: &Workload, dir: &Path) {
    std::fs::create_dir_all(dir).expect("policy dir");
    for (t, ty) in TYPES.iter().enumerate() {
        let mut y = String::new();
        let _ = write!(
            y,
            "apiVersion: api.cerbos.dev/v1\nresourcePolicy:\n  version: default\n  resource: {ty}\n  variables:\n    local:\n      \
             active: has(P.attr.status) && P.attr.status == \"active\"\n      \
             mfa: has(P.attr.assurance) && P.attr.assurance == \"mfa\"\n  rules:\n"
        );
        for (i, role) in w.roles.iter().enumerate() {
            for &(pt, mask) in &role.perms {
                if pt != t {
                    continue;
                }
                let actions: Vec<String> = mask_actions(mask).iter().map(|a| format!("\"{a}\"")).collect();
                let _ = write!(
                    y,
                    "    - name: role{i}\n      actions: [{}]\n      effect: EFFECT_ALLOW\n      roles: [\"role{i}\"]\n      \
                     condition:\n        match:\n          all:\n            of:\n              - expr: V.active\n              \
                     - expr: '\"role{i}\" in P.attr.scopes && (\"*\" in P.attr.scopes[\"role{i}\"] || hasIntersection(P.attr.scopes[\"role{i}\"], R.attr.ancestors))'\n",
                    actions.join(", ")
                );
                if role.mfa {
                    y.push_str("              - expr: V.mfa\n");
                }
            }
        }
        std::fs::write(dir.join(format!("{ty}.yaml")), y).expect("policy file");
    }
}

fn bodies(w: &Workload) -> Vec<String> {
    let mut scopes: Vec<BTreeMap<String, BTreeSet<String>>> = vec![BTreeMap::new(); w.users.len()];
    let members = w.members();
    for g in &w.grants {
        let scope = g.scope.map(|r| format!("r{r}")).unwrap_or_else(|| "*".into());
        let holders = match g.holder {
            Holder::User(u) => vec![u],
            Holder::Group(k) => members[k].clone(),
        };
        for u in holders {
            scopes[u].entry(format!("role{}", g.role)).or_default().insert(scope.clone());
        }
    }
    w.asks
        .iter()
        .map(|a| {
            let held = &scopes[a.user];
            serde_json::json!({
                "subject": { "type": "user", "id": format!("u{}", a.user), "properties": {
                    "cerbos.roles": held.keys().collect::<Vec<_>>(),
                    "scopes": held,
                    "status": if w.users[a.user].active { "active" } else { "suspended" },
                    "assurance": if a.mfa { "mfa" } else { "password" },
                }},
                "action": { "name": ACTIONS[a.action] },
                "resource": { "type": TYPES[w.resources[a.resource].ty], "id": format!("r{}", a.resource), "properties": {
                    "ancestors": w.chain(a.resource).into_iter().map(|r| format!("r{r}")).collect::<Vec<_>>(),
                }},
            })
            .to_string()
        })
        .collect()
}

struct Running(Child);
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the Cerbos comparison; `None` when the binary is not there.
pub async fn run(w: &Workload, expected: &[bool], work: &Path, secs: u64, runs: usize) -> Option<WrkResult> {
    let bin = binary()?;
    let dir = work.join("cerbos");
    policies(w, &dir.join("policies"));
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        l.local_addr().expect("addr").port()
    };
    let grpc = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        l.local_addr().expect("addr").port()
    };
    let conf = dir.join("conf.yaml");
    std::fs::write(
        &conf,
        format!(
            "server:\n  httpListenAddr: \"127.0.0.1:{port}\"\n  grpcListenAddr: \"127.0.0.1:{grpc}\"\n  metricsEnabled: false\n  \
             logRequestPayloads: false\n  apiExplorerEnabled: false\nstorage:\n  driver: disk\n  disk:\n    directory: {}\n    \
             watchForChanges: false\nengine:\n  defaultPolicyVersion: default\naudit:\n  enabled: false\ntelemetry:\n  disabled: true\n",
            dir.join("policies").display()
        ),
    )
    .expect("cerbos config");
    let started = Instant::now();
    let _child = Running(
        Command::new(&bin)
            .args(["server", "--log-level=warn", "--config"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cerbos starts"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    loop {
        if http.get(format!("{base}/_cerbos/health")).send().await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "Cerbos did not become healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "  Cerbos {} ready in {:.1}s with {} rules",
        bin.display(),
        started.elapsed().as_secs_f64(),
        w.roles.iter().map(|r| r.perms.len()).sum::<usize>()
    );
    let url = format!("{base}/access/v1/evaluation");
    let bodies = bodies(w);
    for (i, body) in bodies.iter().enumerate() {
        let resp = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("cerbos evaluation");
        assert!(resp.status().is_success(), "Cerbos answered {} to request {i}", resp.status());
        let v: serde_json::Value = resp.json().await.expect("json");
        assert_eq!(v["decision"], expected[i], "Cerbos disagrees with Wardkey on request {i}: {body} -> {v}");
    }
    println!("  all {REQUESTS} Cerbos answers match Wardkey's");
    let script = wrk_script(&dir, "cerbos.lua", &bodies, None);
    Some(wrk_median(&url, &script, secs, runs))
}
