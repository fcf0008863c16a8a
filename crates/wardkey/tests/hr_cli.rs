#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `wardkey hr import` and `wardkey reconcile` as processes, on the store directly (SQLite, and
//! PostgreSQL when reachable), with a column mapping from the config file: the plan is
//! printed and changes nothing; `--apply` applies it; JSON output; the circuit breaker's exit
//! code; the reconciliation table.

use std::path::Path;
use std::process::{Command, Output};

fn wardkey() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wardkey"));
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

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const CONFIG: &str = r#"
[hr]
max_termination_share = 0.2
breaker_min_terminations = 2
dormant_days = 30

[hr.columns]
employee_id = "Worker ID"
username = "Login"
department = "Dept"
status = "Employment Status"
"#;

fn hr(dir: &Path, db: Option<&str>, args: &[&str]) -> Output {
    let mut c = wardkey();
    c.args(args).arg("--data-dir").arg(dir.join("data")).arg("--config").arg(dir.join("wardkey.toml"));
    if let Some(url) = db {
        c.arg("--database-url").arg(url);
    }
    c.output().expect("run wardkey")
}

fn scenario(dir: &Path, db: Option<&str>) {
    std::fs::write(dir.join("wardkey.toml"), CONFIG).unwrap();
    let roster = dir.join("roster.csv");
    std::fs::write(&roster, "Worker ID,Login,Dept,Employment Status\nE1,ann,Cardiology,Active\nE2,ben,Oncology,Active\nE3,cat,Oncology,Active\nE2,dup,Oncology,Active\n").unwrap();
    let file = roster.to_str().unwrap();

    // The plan: printed, nothing written.
    let out = hr(dir, db, &["hr", "import", file]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan = text(&out.stdout);
    assert!(plan.contains("Plan: 2 joiners, 0 movers, 0 leavers, 0 unchanged, 0 review items, 2 errors"), "{plan}");
    assert!(plan.contains("row 3 E2 [Worker ID]: duplicate employee id"), "{plan}");
    assert!(plan.contains("Nothing was changed"), "{plan}");
    let out = hr(dir, db, &["hr", "import", file, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json plan");
    assert_eq!(v["plan"]["joiners"].as_array().unwrap().len(), 2);
    assert!(v.get("applied").is_none());

    // Apply.
    let out = hr(dir, db, &["hr", "import", file, "--apply"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let done = text(&out.stdout);
    assert!(done.contains("2 joiners created"), "{done}");
    // Now the same file is unchanged, and a mover shows its change.
    std::fs::write(&roster, "Worker ID,Dept\nE1,Oncology\nE3,Oncology\n").unwrap();
    let out = hr(dir, db, &["hr", "import", file]);
    let plan = text(&out.stdout);
    assert!(plan.contains("department: Cardiology -> Oncology"), "{plan}");
    assert!(plan.contains("1 movers") && plan.contains("1 unchanged"), "{plan}");

    // Terminating both of two (100 % > 20 %): refused with exit code 3, nothing changes.
    std::fs::write(&roster, "Worker ID,Employment Status\nE1,Terminated\nE3,terminated\n").unwrap();
    let out = hr(dir, db, &["hr", "import", file, "--apply"]);
    assert_eq!(out.status.code(), Some(3), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stderr).contains("circuit breaker"), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("TRIPPED"));

    // The reconciliation report as a table and as JSON.
    let out = hr(dir, db, &["reconcile"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains("Reconciliation at") && table.contains("2 users") && table.contains("0 findings"),
        "{table}"
    );
    let out = hr(dir, db, &["reconcile", "--json"]);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(r["dormant_days"], 30);
    assert!(r["findings"].is_array());

    // A bad mapping in the config is refused with a clear message.
    std::fs::write(dir.join("wardkey.toml"), "[hr.columns]\nemployee_id = \"X\"\nusername = \"X\"\n").unwrap();
    let out = hr(dir, db, &["hr", "import", file]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("more than one attribute"), "{}", text(&out.stderr));
}

#[test]
fn hr_import_and_reconcile_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    scenario(dir.path(), None);
}

#[test]
fn hr_import_and_reconcile_on_postgres() {
    let Some(db) = wardkey_testkit::PgDatabase::create_blocking("wk_hrcli") else { return };
    let dir = tempfile::tempdir().unwrap();
    scenario(dir.path(), Some(&db.url));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(db.drop_database());
}
