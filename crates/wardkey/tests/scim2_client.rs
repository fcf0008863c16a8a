#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The SCIM 2.0 endpoints driven by a client nobody here wrote: `wardkey serve` as a process
//! (SQLite, then a fresh PostgreSQL database), a token with scope `scim` made through the API,
//! and `tests/scim2/test_scim2_client.py` (Python's scim2-client) run against `/scim/v2`.
//!
//! The Python environment is the virtualenv at `$WARDKEY_PY_VENV` (default
//! `$HOME/.cache/wardkey-pyenv`, made by `.ci/run` from `tests/scim2/requirements.txt`). Without
//! it (or without scim2-client in it) the test prints `SCIM2 CLIENT SKIPPED` and passes, unless
//! `WARDKEY_REQUIRE_PY=1` (set by `.ci/run`), which makes it a failure.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wardkey_testkit::say_loudly;

/// The venv's python, if it can import what the test needs.
fn python() -> Option<PathBuf> {
    wardkey_testkit::venv_python(
        "scim2_client.engines.httpx2, scim2_models",
        "SCIM2 CLIENT",
        "tests/scim2/requirements.txt",
    )
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/scim2/test_scim2_client.py")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

struct Server {
    child: Child,
    base: String,
    #[allow(dead_code)]
    token: String,
    /// A `scim`-only token minted by the local operator before the first start (owner
    /// `system:operator`: the suite lists users, so no person is created to own it).
    scim: String,
}

impl Server {
    /// `wardkey serve` on a free port; the bootstrap admin token is read from standard error.
    fn start(data_dir: &Path, database_url: Option<&str>) -> Server {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wardkey"));
        for v in [
            "WARDKEY_DATABASE_URL",
            "WARDKEY_DATA_DIR",
            "WARDKEY_CONFIG",
            "WARDKEY_TOKEN",
            "WARDKEY_SERVER",
            "WARDKEY_LISTEN",
        ] {
            cmd.env_remove(v);
        }
        let mut mint = Command::new(env!("CARGO_BIN_EXE_wardkey"));
        mint.args(["admin", "token", "create", "--name", "scim2-client", "--scope", "scim", "--owner", "operator"])
            .args(["--json", "--data-dir"])
            .arg(data_dir)
            .env_remove("WARDKEY_DATABASE_URL")
            .env_remove("WARDKEY_CONFIG");
        if let Some(url) = database_url {
            mint.args(["--database-url", url]);
        }
        let minted = mint.output().expect("run wardkey admin token create");
        assert!(minted.status.success(), "{}", String::from_utf8_lossy(&minted.stderr));
        let minted: serde_json::Value = serde_json::from_slice(&minted.stdout).expect("JSON");
        assert_eq!(minted["token"]["scopes"], serde_json::json!(["scim"]));
        let scim = minted["secret"].as_str().expect("secret").to_owned();
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")]).arg("--data-dir").arg(data_dir);
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
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            token: token.expect("the first start prints a bootstrap token"),
            scim,
        };
        server.wait_healthy();
        server
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

    /// The token with scope `scim` only.
    fn scim_token(&self) -> String {
        self.scim.clone()
    }

    /// SIGTERM; the server drains and exits cleanly.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "server exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// Runs the Python suite against the server; its whole output goes to standard error.
fn run_client(py: &Path, server: &Server, label: &str) {
    let token = server.scim_token();
    let started = Instant::now();
    let out = Command::new(py)
        .arg(script())
        .env("WARDKEY_SCIM_URL", format!("{}/scim/v2", server.base))
        .env("WARDKEY_SCIM_TOKEN", &token)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    say_loudly(&format!("--- scim2-client on {label} ({:.1}s) ---\n{stderr}{stdout}", started.elapsed().as_secs_f64()));
    if !out.status.success() {
        // The whole output is above; the panic names what failed.
        let summary: Vec<&str> = stderr
            .lines()
            .chain(stdout.lines())
            .filter(|l| {
                l.starts_with("FAIL:") || l.starts_with("ERROR:") || l.contains("Error:") || l.contains(" passed, ")
            })
            .collect();
        panic!("scim2-client suite failed on {label} ({}):\n{}", out.status, summary.join("\n"));
    }
    assert!(stdout.contains(" passed, 0 failed"), "the suite reported no result on {label}:\n{stdout}");
}

#[test]
fn scim2_client_against_sqlite() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), None);
    run_client(&py, &server, "SQLite");
    server.stop();
}

#[test]
fn scim2_client_against_postgres() {
    let Some(py) = python() else { return };
    let Some(db) = wardkey_testkit::PgDatabase::create_blocking("wk_scim2") else { return };
    let _drop = DropDb(db.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), Some(&db.url));
    run_client(&py, &server, "PostgreSQL");
    server.stop();
}

/// Drops the test's database, also when the test failed.
struct DropDb(wardkey_testkit::PgDatabase);

impl Drop for DropDb {
    fn drop(&mut self) {
        rt().block_on(self.0.drop_database());
    }
}
