//! Test support shared by the suites that run every case on SQLite and on PostgreSQL
//! (`wardkey-store`'s conformance suite, the server's `api` binary, the CLI and SCIM-client
//! suites). Only ever a dev-dependency: nothing here is part of the server.
//!
//! The rules it keeps in one place:
//! - PostgreSQL is `WARDKEY_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`,
//!   the CI machine's trust-auth server), and each test gets a database of its own.
//! - When PostgreSQL cannot be reached, a developer's `cargo test` still passes but says
//!   `PostgreSQL SKIPPED` on the process's standard error (which `.ci/run` greps for); with
//!   `WARDKEY_REQUIRE_PG=1` (set by `.ci/run`) it is a failure instead.

// A test-support crate fails tests by panicking; that is its job.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sqlx::{Connection, PgConnection};

/// The PostgreSQL server the suites use: `WARDKEY_TEST_PG_URL` or the local trust-auth default.
pub fn pg_base_url() -> String {
    std::env::var("WARDKEY_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Whether an environment switch such as `WARDKEY_REQUIRE_PG` is set to `1`.
pub fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}

/// `base` with its database name replaced by `db` (the query string kept).
pub fn with_database(base: &str, db: &str) -> String {
    let (main, query) = match base.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (base, None),
    };
    let scheme_end = main.find("://").map_or(0, |i| i + 3);
    let rest = &main[scheme_end..];
    let new = match rest.find('/') {
        Some(i) => format!("{}{}/{}", &main[..scheme_end], &rest[..i], db),
        None => format!("{main}/{db}"),
    };
    match query {
        Some(q) => format!("{new}?{q}"),
        None => new,
    }
}

/// Writes straight to the process's standard error: the test harness captures `eprintln!` of
/// passing tests, and a skipped suite must be visible in a plain `cargo test`.
pub fn say_loudly(message: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(message.as_bytes());
    let _ = std::io::stderr().write_all(b"\n");
}

/// PostgreSQL is unreachable: a failure under `WARDKEY_REQUIRE_PG=1`, else a loud skip.
pub fn pg_unreachable<T>(url: &str, why: &str) -> Option<T> {
    if required("WARDKEY_REQUIRE_PG") {
        panic!("PostgreSQL at {url} is required (WARDKEY_REQUIRE_PG=1) but unreachable: {why}");
    }
    say_loudly(&format!(
        "\n*** PostgreSQL SKIPPED: {url} unreachable ({why}); set WARDKEY_REQUIRE_PG=1 to make this fail ***\n"
    ));
    None
}

/// The Python of the test virtualenv (`WARDKEY_PY_VENV`, default `~/.cache/wardkey-pyenv`, made
/// by `.ci/run`) when it can run `import <imports>`; else a failure under
/// `WARDKEY_REQUIRE_PY=1`, or a loud `*** <banner> SKIPPED` naming the requirements file to
/// install.
pub fn venv_python(imports: &str, banner: &str, requirements: &str) -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    let venv = std::env::var_os("WARDKEY_PY_VENV")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("wardkey-pyenv")));
    let reason = match venv {
        None => "no $WARDKEY_PY_VENV and no $HOME".to_owned(),
        Some(venv) => {
            let py = venv.join("bin").join("python3");
            match std::process::Command::new(&py).args(["-c", &format!("import {imports}")]).output() {
                Ok(out) if out.status.success() => return Some(py),
                Ok(out) => {
                    format!("{} cannot import {imports}: {}", py.display(), String::from_utf8_lossy(&out.stderr).trim())
                }
                Err(e) => format!("no python at {} ({e})", py.display()),
            }
        }
    };
    if required("WARDKEY_REQUIRE_PY") {
        panic!("{banner} is required (WARDKEY_REQUIRE_PY=1) but {reason}");
    }
    say_loudly(&format!(
        "\n*** {banner} SKIPPED: {reason}; python3 -m venv ~/.cache/wardkey-pyenv && \
         ~/.cache/wardkey-pyenv/bin/pip install -r {requirements} ***\n"
    ));
    None
}

/// A database made for one test on the suites' PostgreSQL server.
#[derive(Clone, Debug)]
pub struct PgDatabase {
    /// The URL of the new database.
    pub url: String,
    /// The server's URL as configured (its own database), for administration.
    pub base: String,
    /// The new database's name.
    pub name: String,
}

impl PgDatabase {
    /// A new empty database named `<prefix>_<uuid>`, or `None` (loudly) when PostgreSQL is
    /// unreachable and not required.
    pub async fn create(prefix: &str) -> Option<PgDatabase> {
        let base = pg_base_url();
        let mut conn = match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&base)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return pg_unreachable(&base, &e.to_string()),
            Err(_) => return pg_unreachable(&base, "timed out"),
        };
        let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let _ = conn.close().await;
        Some(PgDatabase { url: with_database(&base, &name), base, name })
    }

    /// [`PgDatabase::create`] for synchronous tests (a runtime of its own for the call).
    pub fn create_blocking(prefix: &str) -> Option<PgDatabase> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(PgDatabase::create(prefix))
    }

    /// Drops the database (sessions still connected are ended). Errors are ignored: a left-over
    /// test database costs disk, not correctness.
    pub async fn drop_database(&self) {
        if let Ok(mut admin) = PgConnection::connect(&self.base).await {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)))
                .execute(&mut admin)
                .await;
            let _ = admin.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn with_database_rewrites_the_path_and_keeps_the_query() {
        assert_eq!(with_database("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
        assert_eq!(with_database("postgres://u@h/postgres?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
