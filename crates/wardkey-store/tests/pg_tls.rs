//! PostgreSQL over TLS: the test starts its own PostgreSQL with TLS required (initdb into a
//! temporary directory, a CA and server certificate made here with rcgen, a free port), then
//! checks that the store connects and migrates with `sslmode=verify-full` and the right CA,
//! and is refused when the certificate does not name the host, when the CA is another one,
//! and without TLS.
//!
//! Needs PostgreSQL's server binaries (`pg_config --bindir`, else `initdb` on the PATH). As
//! root, initdb refuses to run, so the server runs as the `postgres` user through `runuser`.
//! Without the binaries the test is skipped loudly, or fails when `WARDKEY_REQUIRE_PG=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use wardkey_domain::SystemClock;
use wardkey_store::Store;

fn required() -> bool {
    std::env::var("WARDKEY_REQUIRE_PG").as_deref() == Ok("1")
}

fn skip_or_fail(why: &str) {
    if required() {
        panic!("PostgreSQL over TLS is required (WARDKEY_REQUIRE_PG=1) but cannot run: {why}");
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\n*** PostgreSQL TLS test SKIPPED: {why} ***\n");
}

/// Where `initdb`, `pg_ctl` and `postgres` live.
fn pg_bindir() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() && dir.join("pg_ctl").exists() {
            return Some(dir);
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

fn id_of(flag: &str) -> u32 {
    let out = Command::new("id").args([flag, "postgres"]).output().expect("run id");
    assert!(out.status.success(), "no `postgres` user to run PostgreSQL as (initdb refuses root)");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("numeric id")
}

/// A PostgreSQL server of our own, TLS required, stopped on drop.
struct TlsPostgres {
    dir: tempfile::TempDir,
    bindir: PathBuf,
    as_postgres: bool,
    port: u16,
}

impl TlsPostgres {
    /// `bin args…`, as the `postgres` user when we are root.
    fn command(&self, bin: &str) -> Command {
        let exe = self.bindir.join(bin);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn give(&self, path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        if self.as_postgres {
            std::os::unix::fs::chown(path, Some(id_of("-u")), Some(id_of("-g"))).expect("chown");
        }
    }

    fn start(server_cert: &str, server_key: &str) -> Option<TlsPostgres> {
        let Some(bindir) = pg_bindir() else {
            skip_or_fail("no PostgreSQL server binaries (pg_config --bindir, or initdb on the PATH)");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pg = TlsPostgres { dir: tempfile::tempdir().unwrap(), bindir, as_postgres: running_as_root(), port };
        pg.give(pg.dir.path(), 0o700);

        let out = pg
            .command("initdb")
            .arg("-D")
            .arg(pg.data())
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync"])
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));

        for (name, text, mode) in [("server.crt", server_cert, 0o644), ("server.key", server_key, 0o600)] {
            let p = pg.path(name);
            std::fs::write(&p, text).unwrap();
            pg.give(&p, mode);
        }
        // TLS or nothing: only `hostssl` lines, so a plain connection is refused.
        let hba = pg.data().join("pg_hba.conf");
        std::fs::write(
            &hba,
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
        )
        .unwrap();
        pg.give(&hba, 0o600);

        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file={} -c ssl_key_file={} -c fsync=off",
            pg.port,
            pg.dir.path().display(),
            pg.path("server.crt").display(),
            pg.path("server.key").display()
        );
        let out = pg
            .command("pg_ctl")
            .arg("-D")
            .arg(pg.data())
            .args(["-w", "-t", "60", "-l"])
            .arg(pg.path("server.log"))
            .args(["-o", &opts, "start"])
            .output()
            .expect("run pg_ctl");
        if !out.status.success() {
            let log = std::fs::read_to_string(pg.path("server.log")).unwrap_or_default();
            panic!(
                "pg_ctl start failed: {}{}\n{log}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Some(pg)
    }

    fn url(&self, host: &str, query: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres?{query}", self.port)
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let _ = self.command("pg_ctl").arg("-D").arg(self.data()).args(["-m", "immediate", "-w", "stop"]).output();
    }
}

struct Pki {
    ca_pem: String,
    server_cert: String,
    server_key: String,
}

/// A CA, and a server certificate it signs for the name `localhost` only (no IP address).
fn make_pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "Wardkey test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    server.distinguished_name.push(DnType::CommonName, "localhost");
    let cert = server.signed_by(&key, &ca).unwrap();
    Pki { ca_pem: ca.pem(), server_cert: cert.pem(), server_key: key.serialize_pem() }
}

async fn open_err(url: &str) -> String {
    match Store::open(url, Arc::new(SystemClock)).await {
        Ok(store) => {
            store.close().await;
            panic!("connected, but must be refused: {url}");
        }
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_verify_full() {
    let pki = make_pki();
    let Some(pg) = TlsPostgres::start(&pki.server_cert, &pki.server_key) else { return };
    let ca = pg.path("ca.crt");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let other_ca = pg.path("other-ca.crt");
    std::fs::write(&other_ca, make_pki().ca_pem).unwrap();

    // The right CA and a matching name: connects, migrates, writes, and the session is TLS.
    let good = pg.url("localhost", &format!("sslmode=verify-full&sslrootcert={}", ca.display()));
    let store = Store::open(&good, Arc::new(SystemClock)).await.expect("connects over verified TLS");
    let committed = store
        .append_audit(vec![wardkey_audit::AuditDraft::uncatalogued(
            "operator:test",
            "tls.check",
            wardkey_audit::Outcome::Success,
        )])
        .await;
    assert_eq!(committed.expect("writes").event_indices, vec![0]);
    assert_eq!(store.read().await.unwrap().audit_tree_size().await.unwrap(), 1);
    store.close().await;
    {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&good).await.unwrap();
        let row: (bool,) = sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert!(row.0, "the session is encrypted");
        let _ = conn.close().await;
    }

    // The certificate names `localhost`, not 127.0.0.1: refused.
    let e = open_err(&pg.url("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={}", ca.display()))).await;
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    // Signed by a CA we do not trust: refused.
    let e = open_err(&pg.url("localhost", &format!("sslmode=verify-full&sslrootcert={}", other_ca.display()))).await;
    assert!(e.to_lowercase().contains("certificate") || e.contains("UnknownIssuer"), "{e}");
    // Without TLS: the server refuses (only hostssl lines), so TLS above was real.
    let e = open_err(&pg.url("localhost", "sslmode=disable")).await;
    assert!(e.contains("pg_hba.conf") || e.contains("encryption"), "{e}");
}
