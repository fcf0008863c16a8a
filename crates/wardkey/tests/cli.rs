#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! End-to-end tests of the `wardkey` binary: the server as a process, the CLI against it, and
//! `wardkey audit verify` against logs tampered with directly in SQLite and PostgreSQL.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn wardkey() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wardkey"));
    // A developer's environment must not leak into the tests.
    for v in [
        "WARDKEY_DATABASE_URL",
        "WARDKEY_DATA_DIR",
        "WARDKEY_CONFIG",
        "WARDKEY_TOKEN",
        "WARDKEY_SERVER",
        "WARDKEY_LISTEN",
    ] {
        c.env_remove(v);
    }
    c
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run wardkey")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

struct Server {
    child: Child,
    base: String,
    /// The bootstrap token at first; tests switch to a named one when they end it.
    token: String,
}

impl Server {
    /// Starts `wardkey serve` and reads the bootstrap token from its standard error.
    fn start(data_dir: &Path, database_url: Option<&str>) -> Server {
        Server::start_with(data_dir, database_url, &[])
    }

    /// [`Server::start`] with extra `serve` arguments.
    fn start_with(data_dir: &Path, database_url: Option<&str>, extra: &[&std::ffi::OsStr]) -> Server {
        let port = free_port();
        let mut cmd = wardkey();
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")]).arg("--data-dir").arg(data_dir).args(extra);
        if let Some(url) = database_url {
            cmd.args(["--database-url", url]);
        }
        let mut child =
            cmd.env("WARDKEY_LOG", "warn").stderr(Stdio::piped()).stdout(Stdio::null()).spawn().expect("spawn serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut token = None;
        while Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    if let Some(t) = line.split_whitespace().find(|w| w.starts_with("wkt_")) {
                        token = Some(t.to_owned());
                    }
                    if line.contains("listening on") {
                        break;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(_) => break,
            }
        }
        let base = format!("http://127.0.0.1:{port}");
        let token = token.expect("the first start prints a bootstrap token");
        let s = Server { child, base, token };
        s.wait_healthy();
        s
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(mut stream) = std::net::TcpStream::connect(self.base.trim_start_matches("http://")) {
                use std::io::{Read, Write};
                let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut buf = String::new();
                let _ = stream.read_to_string(&mut buf);
                if buf.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("server did not become healthy");
    }

    fn cli(&self, args: &[&str]) -> Output {
        let mut c = wardkey();
        c.args(args).env("WARDKEY_SERVER", &self.base).env("WARDKEY_TOKEN", &self.token);
        run(&mut c)
    }

    /// Runs the CLI with `input` on its standard input.
    fn cli_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write as _;
        let mut c = wardkey();
        c.args(args)
            .env("WARDKEY_SERVER", &self.base)
            .env("WARDKEY_TOKEN", &self.token)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().expect("spawn wardkey");
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
        child.wait_with_output().expect("wait")
    }

    fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(out.status.success(), "wardkey {args:?} failed: {}{}", text(&out.stdout), text(&out.stderr));
        text(&out.stdout)
    }

    /// SIGTERM, as an init system would; the server drains and signs a final checkpoint.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "server exited with {status}");
                return;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("server did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn verify(data_dir: &Path, database_url: Option<&str>) -> Output {
    let mut c = wardkey();
    c.args(["audit", "verify"]).arg("--data-dir").arg(data_dir);
    if let Some(url) = database_url {
        c.args(["--database-url", url]);
    }
    run(&mut c)
}

// ---------------------------------------------------------------- PostgreSQL plumbing

/// A fresh database for one test, or None (loudly) when PostgreSQL is absent and not required.
fn fresh_pg_database(rt: &tokio::runtime::Runtime) -> Option<String> {
    rt.block_on(wardkey_testkit::PgDatabase::create("wk_cli")).map(|db| db.url)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

// ---------------------------------------------------------------- tests

#[test]
fn walkthrough_from_the_readme_over_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start(&data, None);

    server.cli_ok(&["resource-type", "create", "--name", "dataset", "--action", "read", "--action", "write", "--phi"]);
    server.cli_ok(&["resource", "create", "--type", "dataset", "--name", "cardiology-records"]);
    server.cli_ok(&["role", "create", "--name", "cardiology-reader", "--permission", "dataset:read"]);
    server.cli_ok(&["user", "create", "--username", "a.nurse", "--department", "Cardiology", "--job-code", "RN"]);
    // Activation before identity verification is refused with a clear message.
    let refused = server.cli(&["user", "set-status", "a.nurse", "active"]);
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("verif"), "{}", text(&refused.stderr));
    server.cli_ok(&["user", "verify-identity", "a.nurse", "--method", "in_person_government_id"]);
    server.cli_ok(&["user", "set-status", "a.nurse", "active"]);
    server.cli_ok(&[
        "grant",
        "create",
        "--user",
        "a.nurse",
        "--role",
        "cardiology-reader",
        "--justification",
        "ward rotation",
    ]);
    let group = json(&server.cli_ok(&["group", "create", "--name", "cardiology-ward", "--json"]));
    server.cli_ok(&["group", "add-member", "cardiology-ward", "a.nurse"]);

    let grants = json(&server.cli_ok(&["grant", "list", "--user", "a.nurse", "--json"]));
    let grants = grants.as_array().expect("array");
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0]["justification"], "ward rotation");
    let user = json(&server.cli_ok(&["user", "get", "a.nurse", "--json"]));
    assert_eq!(user["status"], "active");
    assert_eq!(user["verification"]["method"], "in_person_government_id");

    // Signing in: a first password from standard input (a weak one is refused with the reason),
    // then the password step of sign-in answers that a second factor must be enrolled.
    let weak = server.cli_stdin(&["user", "set-password", "a.nurse"], "password1\n");
    assert!(!weak.status.success());
    assert!(text(&weak.stderr).contains("common") || text(&weak.stderr).contains("short"), "{}", text(&weak.stderr));
    let set =
        server.cli_stdin(&["user", "set-password", "a.nurse", "--no-must-change"], "winter tulips over the harbour\n");
    assert!(set.status.success(), "{}", text(&set.stderr));
    let login = http_get::blocking_post(
        &format!("{}/api/v1/auth/login", server.base),
        r#"{"username":"a.nurse","password":"winter tulips over the harbour"}"#,
    );
    assert_eq!(login["next"], "enrol", "{login}");
    let authn = json(&server.cli_ok(&["user", "authn", "a.nurse", "--json"]));
    assert_eq!(authn["password"]["must_change"], false);
    assert_eq!(authn["locked"], false);
    let sessions = json(&server.cli_ok(&["user", "sessions", "a.nurse", "--json"]));
    assert_eq!(sessions.as_array().map(Vec::len), Some(1));
    assert_eq!(sessions[0]["stage"], "enrol");

    // Leaver: disabling revokes the grant (and ends the session) before the command returns.
    server.cli_ok(&["user", "set-status", "a.nurse", "disabled", "--reason", "left"]);
    let sessions = json(&server.cli_ok(&["user", "sessions", "a.nurse", "--json"]));
    assert_eq!(sessions.as_array().map(Vec::len), Some(0));
    let live = json(&server.cli_ok(&["grant", "list", "--user", "a.nurse", "--json"]));
    assert_eq!(live.as_array().map(Vec::len), Some(0), "no live grant after disable: {live}");
    // ... and no group access either.
    let members = http_get::blocking_client()(
        &format!("{}/api/v1/groups/{}/members", server.base, group["id"].as_str().expect("id")),
        &server.token,
    );
    assert_eq!(members["items"].as_array().map(Vec::len), Some(0), "no membership after disable: {members}");
    let refused = server.cli(&["group", "add-member", "cardiology-ward", "a.nurse"]);
    assert!(!refused.status.success(), "a disabled user cannot join a group");

    server.stop();

    // The directory, the database and the signing key are the owner's alone.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for p in [data.clone(), data.join("wardkey.db"), data.join("audit-signing.key"), data.join("secrets.key")] {
            let mode = std::fs::metadata(&p).expect("metadata").permissions().mode();
            assert_eq!(mode & 0o077, 0, "{} is mode {:o}", p.display(), mode);
        }
    }

    let out = verify(&data, None);
    assert!(out.status.success(), "verify: {}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("audit log OK"), "{}", text(&out.stdout));

    // Export: one JSON object per event, contiguous indices, and the grant is there.
    let out = run(wardkey().args(["audit", "export", "--format", "jsonl"]).arg("--data-dir").arg(&data));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let events: Vec<serde_json::Value> = text(&out.stdout).lines().map(json).collect();
    assert!(events.len() > 10);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["index"].as_u64(), Some(i as u64));
    }
    assert!(events.iter().any(|e| e["action"] == "grant.create"));
    assert!(events.iter().any(|e| e["action"] == "grant.revoke" && e["reason"] == "user disabled"));
    // The verify report after a clean shutdown covers everything with a signature.
    let out = run(wardkey().args(["audit", "verify", "--json", "--require-signed-tail"]).arg("--data-dir").arg(&data));
    let report = json(&text(&out.stdout));
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["unsigned_tail"], 0);
    assert_eq!(report["events"].as_u64(), Some(events.len() as u64));
}

#[test]
fn second_start_prints_no_token_and_non_loopback_needs_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start(&data, None);
    server.stop();

    // Non-loopback without TLS: refused before anything listens, naming the way out.
    let out = run(wardkey().args(["serve", "--listen", "0.0.0.0:0"]).arg("--data-dir").arg(&data));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--insecure-http"), "{}", text(&out.stderr));

    // Config file errors are reported, not ignored.
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "listen = \"127.0.0.1:1\"\nnot_a_key = true\n").expect("write");
    let out = run(wardkey().args(["serve"]).arg("--config").arg(&cfg).arg("--data-dir").arg(&data));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("not_a_key"), "{}", text(&out.stderr));

    // Help exists for every command.
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["admin", "token", "create", "--help"],
        vec!["audit", "verify", "--help"],
        vec!["grant", "create", "--help"],
        vec!["grant", "list", "--help"],
        vec!["token", "create", "--help"],
        vec!["token", "list", "--help"],
        vec!["token", "revoke", "--help"],
        vec!["service-account", "create", "--help"],
        vec!["service-account", "disable", "--help"],
        vec!["role-template", "create", "--help"],
        vec!["sod-rule", "create", "--help"],
        vec!["forbid-rule", "create", "--help"],
        vec!["break-glass", "declare", "--help"],
        vec!["break-glass", "list", "--help"],
        vec!["audit", "export", "--help"],
    ] {
        let out = run(wardkey().args(&args));
        assert!(out.status.success(), "{args:?}");
        assert!(text(&out.stdout).contains("Usage"), "{args:?}");
    }
}

#[test]
fn admin_token_create_acts_on_the_store_and_is_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let out = run(wardkey()
        .args([
            "admin",
            "token",
            "create",
            "--name",
            "auditor",
            "--scope",
            "audit:read",
            "--owner",
            "operator",
            "--json",
        ])
        .arg("--data-dir")
        .arg(&data));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let created = json(&text(&out.stdout));
    let secret = created["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("wkt_"));
    assert_eq!(created["token"]["scopes"], serde_json::json!(["audit:read"]));
    assert_eq!(created["token"]["owner"], serde_json::json!({ "type": "system", "id": "operator" }));
    assert!(created["token"]["expires_at"].is_string(), "the default lifetime applies: {created}");
    // An owner is required, and must be a person, a service account or the operator.
    let out =
        run(wardkey().args(["admin", "token", "create", "--name", "x", "--scope", "pdp"]).arg("--data-dir").arg(&data));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--owner"), "{}", text(&out.stderr));
    let out = run(wardkey()
        .args(["admin", "token", "create", "--name", "x", "--scope", "pdp", "--owner", "system:bootstrap"])
        .arg("--data-dir")
        .arg(&data));
    assert!(!out.status.success());
    let ghost = format!("user:{}", uuid_like());
    let out = run(wardkey()
        .args(["admin", "token", "create", "--name", "x", "--scope", "pdp", "--owner", &ghost])
        .arg("--data-dir")
        .arg(&data));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("owner: no such user"), "{}", text(&out.stderr));

    let out = run(wardkey()
        .args(["admin", "token", "create", "--name", "x", "--scope", "root", "--owner", "operator"])
        .arg("--data-dir")
        .arg(&data));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("unknown scope"));

    let server = Server::start(&data, None);
    let http = http_get::blocking_client();
    let events: serde_json::Value =
        http(&format!("{}/api/v1/audit/events?action=api_token.create", server.base), &secret);
    let items = events["items"].as_array().expect("items");
    assert!(items.iter().any(|e| e["actor"].as_str().is_some_and(|a| a.starts_with("operator:"))), "{events}");
    // The audit:read token cannot manage users.
    let status = status_of(&format!("{}/api/v1/users", server.base), &secret);
    assert_eq!(status, 403);
    server.stop();

    // Its use is on record: last_used_at is set and an api_token.use event names it.
    let out = run(wardkey().args(["admin", "token", "list", "--json"]).arg("--data-dir").arg(&data));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tokens = json(&text(&out.stdout));
    let auditor = tokens
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "auditor"))
        .cloned()
        .expect("auditor token listed");
    assert!(auditor["last_used_at"].is_string(), "{auditor}");
    let out = run(wardkey().args(["audit", "export", "--format", "jsonl"]).arg("--data-dir").arg(&data));
    let token_target = format!("api_token:{}", auditor["id"].as_str().expect("id"));
    assert!(
        text(&out.stdout)
            .lines()
            .map(json)
            .any(|e| e["action"] == "api_token.use" && e["target"] == token_target.as_str())
    );
}

fn uuid_like() -> String {
    format!("{:032x}", rand::random::<u128>()).chars().enumerate().fold(String::new(), |mut acc, (i, c)| {
        if [8, 12, 16, 20].contains(&i) {
            acc.push('-');
        }
        acc.push(c);
        acc
    })
}

/// Every object the CLI manages, against a running server: service accounts, tokens with owners
/// (and their end with the owner), role templates, SoD and forbid rules, break-glass review,
/// grant listings with names, and the export format check.
fn every_object_over_the_cli(server: &mut Server, data: &Path, database_url: Option<&str>) {
    server.cli_ok(&["resource-type", "create", "--name", "dataset", "--action", "read", "--action", "write"]);
    server.cli_ok(&["resource", "create", "--type", "dataset", "--name", "ward-7-records"]);
    server.cli_ok(&["role", "create", "--name", "ward-reader", "--permission", "dataset:read"]);
    server.cli_ok(&["role", "create", "--name", "ward-writer", "--permission", "dataset:write"]);
    server.cli_ok(&["group", "create", "--name", "hiv-cleared"]);
    server.cli_ok(&["user", "create", "--username", "c.owner"]);
    server.cli_ok(&["user", "verify-identity", "c.owner", "--method", "in_person_government_id"]);
    server.cli_ok(&["user", "set-status", "c.owner", "active"]);
    server.cli_ok(&["user", "create", "--username", "d.pending"]);

    // Service accounts.
    let sa = json(&server.cli_ok(&["service-account", "create", "--name", "lab-feed", "--owner", "c.owner", "--json"]));
    assert_eq!(sa["status"], "active");
    assert!(server.cli_ok(&["service-account", "list"]).contains("lab-feed"));

    // Tokens with owners.
    let t = json(&server.cli_ok(&[
        "token",
        "create",
        "--name",
        "feed",
        "--scope",
        "pdp",
        "--owner",
        "service-account:lab-feed",
        "--json",
    ]));
    let feed = t["secret"].as_str().expect("secret").to_owned();
    assert_eq!(t["token"]["owner"]["type"], "service_account");
    assert_eq!(t["token"]["owner"]["id"], sa["id"]);
    let listed = server.cli_ok(&["token", "list", "--owner", "service-account:lab-feed"]);
    assert!(listed.contains("feed") && listed.contains(&format!("service_account:{}", s_(&sa["id"]))), "{listed}");
    let refused = server.cli(&["token", "create", "--name", "x", "--scope", "pdp", "--owner", "user:d.pending"]);
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("owner"), "{}", text(&refused.stderr));
    let refused = server.cli(&["token", "create", "--name", "x", "--scope", "pdp", "--owner", "user:nobody.here"]);
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("no user"), "{}", text(&refused.stderr));
    let short = json(&server.cli_ok(&[
        "token",
        "create",
        "--name",
        "short",
        "--scope",
        "audit:read",
        "--owner",
        "user:c.owner",
        "--expires-in-days",
        "7",
        "--json",
    ]));
    let short_id = s_(&short["token"]["id"]);
    server.cli_ok(&["token", "revoke", &short_id]);
    let all = json(&server.cli_ok(&["token", "list", "--json"]));
    let revoked = all.as_array().unwrap().iter().find(|t| t["id"] == short["token"]["id"]).expect("listed");
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    // Disabling the service account ends its token.
    assert_eq!(status_of(&format!("{}/api/v1/users", server.base), &feed), 403);
    server.cli_ok(&["service-account", "disable", "lab-feed"]);
    assert_eq!(status_of(&format!("{}/api/v1/users", server.base), &feed), 401, "the token died with its owner");

    // Role templates, separation of duties, forbid rules.
    server.cli_ok(&[
        "role-template",
        "create",
        "--name",
        "ward-nurses",
        "--match",
        "job_code:in:RN,LPN",
        "--match",
        "department:prefix:Ward",
        "--role",
        "ward-reader",
    ]);
    let templates = json(&server.cli_ok(&["role-template", "list", "--json"]));
    assert_eq!(templates[0]["rule"]["all"][0]["values"], serde_json::json!(["RN", "LPN"]));
    let bad =
        server.cli(&["role-template", "create", "--name", "x", "--match", "job_code:in", "--role", "ward-reader"]);
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("rule.all[0].values"), "{}", text(&bad.stderr));
    server.cli_ok(&[
        "sod-rule",
        "create",
        "--name",
        "read-write",
        "--left",
        "role:ward-reader",
        "--right",
        "permission:dataset:write",
    ]);
    assert!(server.cli_ok(&["sod-rule", "list"]).contains("read-write"));
    server.cli_ok(&[
        "forbid-rule",
        "create",
        "--name",
        "hiv-records",
        "--resource-type",
        "dataset",
        "--action",
        "read",
        "--resource-property",
        "category=hiv",
        "--unless-group",
        "hiv-cleared",
    ]);
    let rules = json(&server.cli_ok(&["forbid-rule", "list", "--json"]));
    assert_eq!(rules[0]["when"]["kind"], "resource_property");
    assert_eq!(rules[0]["when"]["unless_group"], "hiv-cleared");
    let bad = server.cli(&["forbid-rule", "create", "--name", "y", "--unless-group", "hiv-cleared"]);
    assert!(!bad.status.success(), "--unless-group needs --resource-property");
    server.cli_ok(&["forbid-rule", "delete", "hiv-records"]);
    server.cli_ok(&["sod-rule", "delete", "read-write"]);
    server.cli_ok(&["role-template", "delete", "ward-nurses"]);
    assert_eq!(json(&server.cli_ok(&["forbid-rule", "list", "--json"])).as_array().map(Vec::len), Some(0));

    // Grants are listed with names beside ids.
    server.cli_ok(&[
        "grant",
        "create",
        "--user",
        "c.owner",
        "--role",
        "ward-reader",
        "--resource",
        &resource_id(server, "ward-7-records"),
        "--justification",
        "ward rotation",
    ]);
    let line = server.cli_ok(&["grant", "list", "--user", "c.owner"]);
    assert!(line.contains("c.owner") && line.contains("ward-reader") && line.contains("ward-7-records"), "{line}");
    let listed = json(&server.cli_ok(&["grant", "list", "--user", "c.owner", "--json"]));
    assert_eq!(listed[0]["names"]["role"], "ward-reader");
    assert_eq!(listed[0]["names"]["subject"], "c.owner");

    // Break-glass: nothing declared yet; declaring needs a signed-in person's session.
    let bg = json(&server.cli_ok(&["break-glass", "list", "--all", "--json"]));
    assert_eq!(bg.as_array().map(Vec::len), Some(0));
    let mut c = wardkey();
    c.args(["break-glass", "declare", "--role", "ward-reader", "--justification", "cardiac arrest, bed 4"])
        .env("WARDKEY_SERVER", &server.base)
        .env("WARDKEY_TOKEN", &server.token)
        .env("WARDKEY_SESSION", "not-a-session");
    let out = run(&mut c);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));

    // The first admin token owned by a person ends the bootstrap token.
    let admin = json(&server.cli_ok(&[
        "token",
        "create",
        "--name",
        "c-admin",
        "--scope",
        "admin",
        "--owner",
        "user:c.owner",
        "--json",
    ]));
    let bootstrap = std::mem::replace(&mut server.token, admin["secret"].as_str().expect("secret").to_owned());
    assert_eq!(status_of(&format!("{}/api/v1/users", server.base), &bootstrap), 401);
    assert!(server.cli_ok(&["token", "list"]).contains("system:bootstrap"));

    // Export refuses a format it does not write.
    let mut c = wardkey();
    c.args(["audit", "export", "--format", "csv"]).arg("--data-dir").arg(data);
    if let Some(url) = database_url {
        c.args(["--database-url", url]);
    }
    let out = run(&mut c);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("invalid value 'csv'"), "{}", text(&out.stderr));
}

fn s_(v: &serde_json::Value) -> String {
    v.as_str().expect("string").to_owned()
}

fn resource_id(server: &Server, name: &str) -> String {
    let all = json(&server.cli_ok(&["resource", "list", "--json"]));
    s_(&all.as_array().unwrap().iter().find(|r| r["name"] == name).expect("resource")["id"])
}

#[test]
fn every_object_over_the_cli_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut server = Server::start(&data, None);
    every_object_over_the_cli(&mut server, &data, None);
    server.stop();
}

#[test]
fn every_object_over_the_cli_on_postgres() {
    let rt = rt();
    let Some(url) = fresh_pg_database(&rt) else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("keys");
    let mut server = Server::start(&data, Some(&url));
    every_object_over_the_cli(&mut server, &data, Some(&url));
    server.stop();
    let name = url.rsplit('/').next().unwrap_or_default().to_owned();
    let _ = rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&wardkey_testkit::pg_base_url()).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
            .execute(&mut conn)
            .await
    });
}

mod http_get {
    /// A tiny blocking GET helper on top of the async client, to keep the test synchronous.
    pub fn blocking_client() -> impl Fn(&str, &str) -> serde_json::Value {
        |url: &str, token: &str| {
            let rt = super::rt();
            rt.block_on(async {
                let resp = ::reqwest::Client::new().get(url).bearer_auth(token).send().await.expect("GET");
                assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
                resp.json().await.expect("JSON")
            })
        }
    }

    /// A blocking JSON POST without credentials (sign-in).
    pub fn blocking_post(url: &str, body: &str) -> serde_json::Value {
        super::rt().block_on(async {
            let resp = ::reqwest::Client::new()
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_owned())
                .send()
                .await
                .expect("POST");
            assert!(resp.status().is_success(), "POST {url}: {}", resp.status());
            resp.json().await.expect("JSON")
        })
    }
}

fn status_of(url: &str, token: &str) -> u16 {
    rt().block_on(async {
        ::reqwest::Client::new().get(url).bearer_auth(token).send().await.expect("GET").status().as_u16()
    })
}

// ---------------------------------------------------------------- tampering

/// Produces a log of `n` events across several processes, each closing with a signed checkpoint.
fn build_log(data: &Path, database_url: Option<&str>, n: usize) {
    for i in 0..n {
        let mut c = wardkey();
        c.args(["admin", "token", "create", "--name", &format!("t{i}"), "--scope", "pdp", "--owner", "operator"])
            .arg("--data-dir")
            .arg(data);
        if let Some(url) = database_url {
            c.args(["--database-url", url]);
        }
        let out = run(&mut c);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let out = verify(data, database_url);
    assert!(out.status.success(), "intact log must verify: {}{}", text(&out.stdout), text(&out.stderr));
}

#[test]
fn a_log_without_any_signed_checkpoint_fails_and_a_lost_key_is_not_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    build_log(&data, None, 3);
    // The signing key disappears: nothing may continue the log under a fresh key.
    std::fs::remove_file(data.join("audit-signing.key")).expect("rm key");
    let out = run(wardkey()
        .args(["admin", "token", "create", "--name", "x", "--scope", "pdp", "--owner", "operator"])
        .arg("--data-dir")
        .arg(&data));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("restore the signing key"), "{}", text(&out.stderr));
    assert!(!data.join("audit-signing.key").exists(), "no new key was made");

    // Someone deletes every checkpoint: events nobody vouches for are a failure, not "OK".
    rt().block_on(async {
        use sqlx::Connection;
        let url = format!("sqlite://{}", data.join("wardkey.db").display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("open sqlite");
        sqlx::query("DROP TRIGGER audit_checkpoints_no_delete").execute(&mut conn).await.expect("drop trigger");
        sqlx::query("DELETE FROM audit_checkpoints").execute(&mut conn).await.expect("delete");
        conn.close().await.expect("close");
    });
    let out = verify(&data, None);
    assert_verify_names(&out, 0, Tamper::Delete);
}

#[derive(Clone, Copy, Debug)]
enum Tamper {
    Change,
    Delete,
    Reorder,
    Insert,
}

const TAMPERS: [(Tamper, u64); 4] =
    [(Tamper::Change, 3), (Tamper::Delete, 2), (Tamper::Reorder, 1), (Tamper::Insert, 4)];

const COLS: &str =
    "time, actor, action, target, outcome, reason, source_ip, request_id, approver, request_ref, details, leaf, hashes";

fn tamper_sql(t: Tamper, k: u64) -> Vec<String> {
    match t {
        // Someone edits who did it.
        Tamper::Change => vec![format!("UPDATE audit_events SET actor = 'operator:nobody' WHERE idx = {k}")],
        Tamper::Delete => vec![format!("DELETE FROM audit_events WHERE idx = {k}")],
        // Swap rows k and k+2 (their index numbers trade places).
        Tamper::Reorder => vec![
            format!("UPDATE audit_events SET idx = -1 WHERE idx = {k}"),
            format!("UPDATE audit_events SET idx = {k} WHERE idx = {}", k + 2),
            format!("UPDATE audit_events SET idx = {} WHERE idx = -1", k + 2),
        ],
        // Shift everything from k up by one and slip a forged copy of row 0 in at k.
        Tamper::Insert => vec![
            format!("UPDATE audit_events SET idx = -idx - 1000 WHERE idx >= {k}"),
            "UPDATE audit_events SET idx = -idx - 1000 + 1 WHERE idx < 0".to_owned(),
            format!("INSERT INTO audit_events (idx, {COLS}) SELECT {k}, {COLS} FROM audit_events WHERE idx = 0"),
        ],
    }
}

fn assert_verify_names(out: &Output, k: u64, what: Tamper) {
    let stdout = text(&out.stdout);
    assert!(!out.status.success(), "{what:?}: verify must fail: {stdout}");
    assert!(stdout.contains(&format!("at index {k}")), "{what:?} at {k}: {stdout}{}", text(&out.stderr));
}

#[test]
fn audit_verify_names_the_tampered_index_on_sqlite() {
    let rt = rt();
    for (what, k) in TAMPERS {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        build_log(&data, None, 7);
        rt.block_on(async {
            use sqlx::Connection;
            let url = format!("sqlite://{}", data.join("wardkey.db").display());
            let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("open sqlite");
            sqlx::query("DROP TRIGGER audit_events_no_update").execute(&mut conn).await.expect("drop trigger");
            sqlx::query("DROP TRIGGER audit_events_no_delete").execute(&mut conn).await.expect("drop trigger");
            for sql in tamper_sql(what, k) {
                sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .execute(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
            conn.close().await.expect("close");
        });
        assert_verify_names(&verify(&data, None), k, what);
    }
}

#[test]
fn audit_verify_names_the_tampered_index_on_postgres() {
    let rt = rt();
    for (what, k) in TAMPERS {
        let Some(url) = fresh_pg_database(&rt) else { return };
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("keys");
        build_log(&data, Some(&url), 7);
        rt.block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
            sqlx::query("ALTER TABLE audit_events DISABLE TRIGGER USER")
                .execute(&mut conn)
                .await
                .expect("disable triggers");
            for sql in tamper_sql(what, k) {
                sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .execute(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
        });
        assert_verify_names(&verify(&data, Some(&url)), k, what);
        let name = url.rsplit('/').next().unwrap_or_default().to_owned();
        let _ = rt.block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&wardkey_testkit::pg_base_url()).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                .execute(&mut conn)
                .await
        });
    }
}

#[test]
fn postgres_serve_walkthrough() {
    let rt = rt();
    let Some(url) = fresh_pg_database(&rt) else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("keys"), Some(&url));
    server.cli_ok(&["resource-type", "create", "--name", "dataset", "--action", "read"]);
    server.cli_ok(&["role", "create", "--name", "reader", "--permission", "dataset:read"]);
    server.cli_ok(&["user", "create", "--username", "b.doctor"]);
    server.cli_ok(&["grant", "create", "--user", "b.doctor", "--role", "reader", "--justification", "on call"]);
    server.stop();
    let out = verify(&dir.path().join("keys"), Some(&url));
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
}

// ---------------------------------------------------------------- trusted checkpoints

fn verify_trusted(data_dir: &Path, database_url: Option<&str>, trusted: &Path) -> Output {
    let mut c = wardkey();
    c.args(["audit", "verify"]).arg("--data-dir").arg(data_dir).arg("--trusted-checkpoint").arg(trusted);
    if let Some(url) = database_url {
        c.args(["--database-url", url]);
    }
    run(&mut c)
}

/// Runs SQL on the store (SQLite file or PostgreSQL), audit guards off.
fn tamper(rt: &tokio::runtime::Runtime, data: &Path, database_url: Option<&str>, sql: &[String]) {
    rt.block_on(async {
        use sqlx::Connection;
        match database_url {
            None => {
                let url = format!("sqlite://{}", data.join("wardkey.db").display());
                let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("open sqlite");
                for t in ["audit_events_no_delete", "audit_checkpoints_no_delete"] {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP TRIGGER IF EXISTS {t}")))
                        .execute(&mut conn)
                        .await;
                }
                for q in sql {
                    sqlx::query(sqlx::AssertSqlSafe(q.clone())).execute(&mut conn).await.expect("tamper");
                }
                conn.close().await.expect("close");
            }
            Some(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
                for t in ["audit_events", "audit_checkpoints"] {
                    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER TABLE {t} DISABLE TRIGGER USER")))
                        .execute(&mut conn)
                        .await
                        .expect("disable triggers");
                }
                for q in sql {
                    sqlx::query(sqlx::AssertSqlSafe(q.clone())).execute(&mut conn).await.expect("tamper");
                }
            }
        }
    });
}

/// The witness file written by `serve --audit-witness-file`, and `audit verify
/// --trusted-checkpoint` with it: clean when intact; truncation and a rolled-back-then-
/// continued (forked) log caught though the store verifies against itself; a malformed file
/// and a checkpoint signed by another key refused with a clear message.
fn trusted_checkpoint_scenario(database_url: Option<&str>) {
    let rt = rt();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let witness = dir.path().join("witness").join("checkpoints.log");
    std::fs::create_dir_all(witness.parent().expect("parent")).expect("mkdir");

    // A witness file inside the data directory is refused.
    std::fs::create_dir_all(&data).expect("mkdir data");
    let mut c = wardkey();
    c.args(["serve", "--listen", "127.0.0.1:0"]).arg("--data-dir").arg(&data);
    c.arg("--audit-witness-file").arg(data.join("w.log"));
    if let Some(url) = database_url {
        c.args(["--database-url", url]);
    }
    let out = run(&mut c);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("inside the data directory"), "{}", text(&out.stderr));

    // The server, set up by the config file, signs a checkpoint every second and one at
    // shutdown; each goes to the witness file.
    let cfg = dir.path().join("wardkey.toml");
    std::fs::write(
        &cfg,
        format!("[audit]\ncheckpoint_interval_secs = 1\nwitness_file = {:?}\n", witness.display().to_string()),
    )
    .expect("write config");
    let server = Server::start_with(&data, database_url, &["--config".as_ref(), cfg.as_os_str()]);
    std::thread::sleep(Duration::from_millis(1500));
    server.cli_ok(&["user", "create", "--username", "w.user"]);
    std::thread::sleep(Duration::from_millis(2500));
    server.stop();
    // Every checkpoint the store holds is in the witness file, in order.
    let notes = wardkey_audit::split_witness_notes(&std::fs::read_to_string(&witness).expect("witness file"))
        .expect("well-formed witness file");
    let stored: Vec<(i64, String)> = rt.block_on(async {
        use sqlx::Connection;
        match database_url {
            None => {
                let url = format!("sqlite://{}", data.join("wardkey.db").display());
                let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("open");
                sqlx::query_as("SELECT size, note FROM audit_checkpoints ORDER BY size").fetch_all(&mut conn).await
            }
            Some(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
                sqlx::query_as("SELECT size, note FROM audit_checkpoints ORDER BY size").fetch_all(&mut conn).await
            }
        }
        .expect("checkpoints")
    });
    assert!(stored.len() >= 2, "{stored:?}");
    assert_eq!(notes, stored.iter().map(|(_, n)| n.clone()).collect::<Vec<_>>(), "the witness has every checkpoint");

    let out = verify_trusted(&data, database_url, &witness);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("consistent with the trusted checkpoint"), "{}", text(&out.stdout));

    // A malformed file, and a checkpoint signed by another key: clear errors.
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "this is not a checkpoint\n").expect("write");
    let out = verify_trusted(&data, database_url, &bad);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("malformed"), "{}", text(&out.stderr));
    let stranger = wardkey_audit::LogSigner::generate("wardkey/other");
    std::fs::write(&bad, stranger.sign_checkpoint(1, wardkey_audit::EMPTY_HASH, chrono::Utc::now())).expect("write");
    let out = verify_trusted(&data, database_url, &bad);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("not signed by the verifier key"), "{}", text(&out.stderr));

    // Truncation back to the previous checkpoint boundary: the store alone looks fine.
    let (last, prev) = (stored[stored.len() - 1].0, stored[stored.len() - 2].0);
    tamper(
        &rt,
        &data,
        database_url,
        &[
            format!("DELETE FROM audit_events WHERE idx >= {prev}"),
            format!("DELETE FROM audit_checkpoints WHERE size > {prev}"),
        ],
    );
    let out = verify(&data, database_url);
    assert!(out.status.success(), "the store alone cannot tell: {}", text(&out.stdout));
    let out = verify_trusted(&data, database_url, &witness);
    assert!(!out.status.success());
    let stdout = text(&out.stdout);
    assert!(stdout.contains("behind the trusted checkpoint"), "{stdout}");
    assert!(stdout.contains(&format!("covers {last}")), "{stdout}");

    // The truncated store written on past the witnessed size (with the real key): a fork.
    for i in 0..(last - prev + 2) {
        let mut c = wardkey();
        c.args(["admin", "token", "create", "--name", &format!("f{i}"), "--scope", "pdp", "--owner", "operator"])
            .arg("--data-dir")
            .arg(&data);
        if let Some(url) = database_url {
            c.args(["--database-url", url]);
        }
        let out = run(&mut c);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let out = verify(&data, database_url);
    assert!(out.status.success(), "the forked store verifies against itself: {}", text(&out.stdout));
    let out = verify_trusted(&data, database_url, &witness);
    assert!(!out.status.success());
    let stdout = text(&out.stdout);
    assert!(stdout.contains("inconsistent with the trusted checkpoint") && stdout.contains("fork"), "{stdout}");
}

#[test]
fn trusted_checkpoint_catches_truncation_and_fork_on_sqlite() {
    trusted_checkpoint_scenario(None);
}

#[test]
fn trusted_checkpoint_catches_truncation_and_fork_on_postgres() {
    let rt = rt();
    let Some(url) = fresh_pg_database(&rt) else { return };
    trusted_checkpoint_scenario(Some(&url));
    let name = url.rsplit('/').next().unwrap_or_default().to_owned();
    let _ = rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&wardkey_testkit::pg_base_url()).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
            .execute(&mut conn)
            .await
    });
}
