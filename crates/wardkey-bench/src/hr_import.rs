//! HR roster import: plan + apply of a 100,000-row roster with 5 % movers (department change:
//! template roles swap) and 1 % leavers (terminated: disabled, everything revoked), against a
//! store already holding the 100,000 workers (active, verified, with their birthright grants).
//! Bound (issue 5): plan + apply ≤ 60 s on SQLite on this machine.
//!
//! ```text
//! cargo run --release -p wardkey-bench -- hr-import
//! WK_HR_ROWS=20000 cargo run --release -p wardkey-bench -- hr-import
//! ```

use std::sync::Arc;
use std::time::Instant;
use wardkey_audit::{AuditDraft, Outcome};
use wardkey_domain::{
    AttributeMatch, Grant, GrantId, GrantSource, HrAttribute, HrAttributes, IdentityVerification, MatchOp, Role,
    RoleId, RoleTemplate, RoleTemplateId, Subject, TemplateRule, User, UserId, UserStatus,
};
use wardkey_hr::Format;
use wardkey_service::hr::HrImportRequest;
use wardkey_service::{ServiceConfig, Services};

const DEPARTMENTS: usize = 20;
const BOUND_SECS: f64 = 60.0;

fn dept(i: usize) -> String {
    format!("Dept{:02}", i % DEPARTMENTS)
}

pub async fn bench_hr_import() {
    let rows: usize = std::env::var("WK_HR_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let db = crate::Db::fresh().await;
    let store = db.open().await;
    let services = Services::new(store.clone(), ServiceConfig::default());
    let admin = services.operator("bench");

    // ---- setup (not timed): roles, one template per department, the workforce with grants ----
    let t0 = Instant::now();
    let now = services.clock().now();
    let roles: Vec<Role> = (0..DEPARTMENTS)
        .map(|d| Role {
            id: RoleId::generate(),
            name: format!("dept-{d:02}-records"),
            description: None,
            permissions: vec![],
            privileged: false,
            session_policy: Default::default(),
            conditions: Default::default(),
            break_glass: false,
            created_at: now,
            updated_at: now,
            version: 1,
        })
        .collect();
    {
        let roles = roles.clone();
        store
            .write(move |tx| {
                Box::pin(async move {
                    for (d, r) in roles.iter().enumerate() {
                        tx.insert_role(r).await?;
                        let t = RoleTemplate {
                            id: RoleTemplateId::generate(),
                            name: format!("dept-{d:02}"),
                            description: None,
                            rule: TemplateRule {
                                all: vec![AttributeMatch {
                                    attribute: HrAttribute::Department,
                                    op: MatchOp::In,
                                    values: vec![dept(d)],
                                }],
                            },
                            role_ids: vec![r.id],
                            created_at: now,
                            updated_at: now,
                            version: 1,
                        };
                        tx.insert_role_template(&t).await?;
                        tx.audit(
                            AuditDraft::new("operator:bench", wardkey_audit::Action::RoleCreate, Outcome::Success)
                                .with_target(r.id.target()),
                        );
                    }
                    Ok::<_, wardkey_store::StoreError>(())
                })
            })
            .await
            .expect("roles");
    }
    let role_of: Arc<Vec<RoleId>> = Arc::new(roles.iter().map(|r| r.id).collect());
    let chunk = 1000;
    let mut jobs = Vec::new();
    for start in (0..rows).step_by(chunk) {
        let store = store.clone();
        let role_of = role_of.clone();
        jobs.push(async move {
            store
                .write(move |tx| {
                    Box::pin(async move {
                        for i in start..(start + chunk).min(rows) {
                            let u = User {
                                id: UserId::generate(),
                                username: format!("w{i:07}"),
                                display_name: Some(format!("Worker {i}")),
                                email: None,
                                status: UserStatus::Active,
                                hr: HrAttributes {
                                    employee_id: Some(format!("E{i:07}")),
                                    department: Some(dept(i)),
                                    job_code: Some("RN".into()),
                                    ..Default::default()
                                },
                                verification: Some(IdentityVerification {
                                    verified_by: "operator:bench".into(),
                                    method: "bench".into(),
                                    verified_at: now,
                                }),
                                created_at: now,
                                updated_at: now,
                                version: 1,
                            };
                            tx.insert_user(&u).await?;
                            let g = Grant {
                                id: GrantId::generate(),
                                subject: Subject::User(u.id),
                                role_id: role_of[i % DEPARTMENTS],
                                resource_id: None,
                                source: GrantSource::Template,
                                requester: None,
                                approver: None,
                                justification: None,
                                starts_at: now,
                                expires_at: None,
                                created_at: now,
                                created_by: "operator:bench".into(),
                                revoked_at: None,
                                revoked_by: None,
                                conditions: Default::default(),
                                version: 1,
                            };
                            tx.insert_grant(&g).await?;
                            tx.audit(
                                AuditDraft::new("operator:bench", wardkey_audit::Action::UserCreate, Outcome::Success)
                                    .with_target(u.id.target()),
                            );
                        }
                        Ok::<_, wardkey_store::StoreError>(())
                    })
                })
                .await
                .expect("workers")
        });
    }
    futures::future::join_all(jobs).await;
    println!(
        "hr-import: setup of {rows} active workers with birthright grants took {:.1} s ({})",
        t0.elapsed().as_secs_f64(),
        crate::db_label()
    );

    // ---- the roster: 5 % movers, 1 % leavers, the rest unchanged ----
    let mut csv = String::with_capacity(rows * 48);
    csv.push_str("employee_id,username,display_name,department,job_code,status\n");
    let (mut movers, mut leavers) = (0, 0);
    for i in 0..rows {
        let (department, status) = if i % 100 == 7 {
            leavers += 1;
            (dept(i), "terminated")
        } else if i % 20 == 3 {
            movers += 1;
            (dept(i + 1), "active")
        } else {
            (dept(i), "active")
        };
        csv.push_str(&format!("E{i:07},w{i:07},Worker {i},{department},RN,{status}\n"));
    }
    let bytes = csv.into_bytes();
    println!(
        "hr-import: roster of {rows} rows ({:.1} MiB): {movers} movers, {leavers} leavers",
        bytes.len() as f64 / 1048576.0
    );
    let settings = wardkey_service::hr::HrConfig::default().import_settings();

    let req = HrImportRequest { format: Format::Csv, apply: false, full_roster: true, override_breaker: false };
    let t = Instant::now();
    let plan = services.hr_plan(&admin, &bytes, &req, &settings).await.expect("plan");
    let plan_s = t.elapsed().as_secs_f64();
    println!(
        "hr-import: plan {plan_s:.2} s — joiners {}, movers {}, leavers {}, unchanged {}, review {}, errors {}",
        plan.joiners.len(),
        plan.movers.len(),
        plan.leavers.len(),
        plan.unchanged,
        plan.review.len(),
        plan.errors.len()
    );
    assert_eq!(plan.movers.len(), movers);
    assert_eq!(plan.leavers.len(), leavers);

    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("hr-import: apply [{bar:40}] {pos}/{len} rows {per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let pb = bar.clone();
    let progress: wardkey_service::hr::Progress = Arc::new(move |done, total| {
        pb.set_length(total as u64);
        pb.set_position(done as u64);
    });
    let req = HrImportRequest { apply: true, ..req };
    let t = Instant::now();
    let outcome = services.hr_import(&admin, &bytes, &req, &settings, Some(progress)).await.expect("apply");
    let total_s = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let applied = outcome.applied.expect("applied");
    // hr_import plans again before applying; the apply share is the rest.
    let apply_s = (total_s - plan_s).max(0.0);
    println!(
        "hr-import: plan+apply {total_s:.2} s (apply ≈ {apply_s:.2} s): movers updated {}, leavers terminated {}, row errors {}",
        applied.movers_updated,
        applied.leavers_terminated,
        applied.row_errors.len()
    );
    assert_eq!(applied.movers_updated, movers);
    assert_eq!(applied.leavers_terminated, leavers);
    assert!(applied.row_errors.is_empty(), "{:?}", applied.row_errors.first());
    println!(
        "hr-import: {rows} rows on {}: plan {plan_s:.2} s + apply {apply_s:.2} s = {total_s:.2} s; bound {BOUND_SECS:.0} s; ratio {:.2} of the bound ({})",
        crate::db_label(),
        total_s / BOUND_SECS,
        if total_s <= BOUND_SECS { "met" } else { "NOT met" }
    );
    store.close().await;
    db.drop_db().await;
}
