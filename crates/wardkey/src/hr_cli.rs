//! `wardkey hr import` and `wardkey reconcile`: operator commands on the store (like `admin
//! token create`), so a 100,000-row roster needs no HTTP body limit and shows its progress.

use crate::StoreArgs;
use crate::config::{self, FileConfig, StoreLocation};
use clap::{Args, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use wardkey_hr::{Format, Plan};
use wardkey_service::hr::{HrConfig, HrImportRequest};

#[derive(Subcommand)]
pub enum HrCommand {
    /// Plan (and with --apply, apply) an HR roster: joiners, movers, leavers, errors by row.
    Import(ImportArgs),
}

#[derive(Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The roster: .csv or .json (the column mapping is `[hr.columns]` in the config file).
    pub file: PathBuf,
    /// Apply the plan (default: print it and change nothing).
    #[arg(long)]
    pub apply: bool,
    /// The file is the complete roster: people missing from it become review items.
    #[arg(long)]
    pub full: bool,
    /// Apply even though more than the allowed share would be terminated (recorded in the audit).
    #[arg(long)]
    pub override_breaker: bool,
    /// Roster format when the file name does not say (.csv / .json).
    #[arg(long, value_parser = ["csv", "json"])]
    pub format: Option<String>,
    /// Print the plan (and result) as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Days without a sign-in after which an active account is dormant (default `[hr] dormant_days`, 90).
    #[arg(long)]
    pub dormant_days: Option<u32>,
    #[arg(long)]
    pub json: bool,
}

/// Largest roster file read (bytes).
const MAX_FILE: u64 = 512 * 1024 * 1024;

fn load(args: &StoreArgs) -> Result<(StoreLocation, HrConfig), String> {
    let file = match &args.config {
        Some(p) => config::load_file(p)?,
        None => FileConfig::default(),
    };
    let hr = file.hr.clone().unwrap_or_default();
    hr.validate().map_err(|e| format!("[hr] in the config file: {e}"))?;
    Ok((StoreLocation::resolve(args.data_dir.clone(), args.database_url.clone(), &file), hr))
}

pub async fn import(args: ImportArgs) -> Result<ExitCode, String> {
    let (loc, hr) = load(&args.store)?;
    let format = match args.format.as_deref() {
        Some("json") => Format::Json,
        Some(_) => Format::Csv,
        None => match args.file.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("json") => Format::Json,
            Some("csv") | Some("txt") => Format::Csv,
            _ => return Err(format!("{}: say --format csv or --format json", args.file.display())),
        },
    };
    let meta = std::fs::metadata(&args.file).map_err(|e| format!("{}: {e}", args.file.display()))?;
    if meta.len() > MAX_FILE {
        return Err(format!("{} is larger than {} MiB; split it", args.file.display(), MAX_FILE >> 20));
    }
    let bytes = std::fs::read(&args.file).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let (services, _) = crate::local::open_services(&loc, true, true).await?;
    let operator = services.operator(&crate::local::os_user());
    let req =
        HrImportRequest { format, apply: args.apply, full_roster: args.full, override_breaker: args.override_breaker };
    let settings = hr.import_settings();
    let bar = if args.apply && std::io::stderr().is_terminal() && !args.json {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("applying [{bar:40}] {pos}/{len} rows, {per_sec}, eta {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let progress: Option<wardkey_service::hr::Progress> = bar.clone().map(|b| {
        let f: wardkey_service::hr::Progress = Arc::new(move |done, total| {
            b.set_length(total as u64);
            b.set_position(done as u64);
        });
        f
    });
    let result = services.hr_import(&operator, &bytes, &req, &settings, progress).await;
    services.close().await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let outcome = result.map_err(|e| e.to_string())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome).map_err(|e| e.to_string())?);
    } else {
        print_plan(&outcome.plan);
        if let Some(a) = &outcome.applied {
            println!();
            println!(
                "Applied (import {}): {} joiners created, {} rehires, {} movers updated, {} leavers disabled, {} review items.",
                a.import_id, a.joiners_created, a.rehires, a.movers_updated, a.leavers_terminated, a.review_items
            );
            for e in &a.row_errors {
                println!("  row {}: {}", e.row, e.message);
            }
        } else if outcome.refused.is_none() {
            println!();
            println!("Nothing was changed. Run again with --apply to apply this plan.");
        }
    }
    if let Some(why) = &outcome.refused {
        eprintln!("refused: {why}");
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}

const SHOW: usize = 25;

fn more(n: usize) {
    if n > SHOW {
        println!("  ... and {} more (--json lists everything)", n - SHOW);
    }
}

fn print_plan(p: &Plan) {
    println!("Roster {} ({} rows, sha256 {})", p.format.as_str(), p.rows, p.sha256);
    println!(
        "Plan: {} joiners, {} movers, {} leavers, {} unchanged, {} review items, {} errors",
        p.joiners.len(),
        p.movers.len(),
        p.leavers.len(),
        p.unchanged,
        p.review.len(),
        p.errors.len()
    );
    if !p.joiners.is_empty() {
        println!("\nJoiners (created pending_verification; birthright roles after identity verification):");
        for j in p.joiners.iter().take(SHOW) {
            let what = if j.rehire_of.is_some() { " (rehire)" } else { "" };
            println!(
                "  row {:<6} {:<12} {:<24} {} {}{what}",
                j.row,
                j.employee_id,
                j.username,
                j.hr.department.as_deref().unwrap_or("-"),
                j.hr.job_code.as_deref().unwrap_or("-")
            );
        }
        more(p.joiners.len());
    }
    if !p.movers.is_empty() {
        println!("\nMovers:");
        for m in p.movers.iter().take(SHOW) {
            let changes: Vec<String> = m
                .changes
                .iter()
                .map(|c| {
                    format!(
                        "{}: {} -> {}",
                        c.attribute,
                        c.before.as_deref().unwrap_or("(none)"),
                        c.after.as_deref().unwrap_or("(none)")
                    )
                })
                .collect();
            let ends = m.terminates_at.map(|t| format!(" [access ends {t}]")).unwrap_or_default();
            println!("  row {:<6} {:<12} {}{ends}", m.row, m.employee_id, changes.join("; "));
        }
        more(p.movers.len());
    }
    if !p.leavers.is_empty() {
        println!("\nLeavers (disabled; every session, grant, membership and token revoked):");
        for l in p.leavers.iter().take(SHOW) {
            println!("  row {:<6} {:<12} by {} (effective {})", l.row, l.employee_id, l.cause, l.effective_at);
        }
        more(p.leavers.len());
    }
    if !p.review.is_empty() {
        println!("\nReview (missing from the full roster; not terminated):");
        for r in p.review.iter().take(SHOW) {
            println!("  {:<12} user {}", r.employee_id, r.user_id);
        }
        more(p.review.len());
    }
    if !p.errors.is_empty() {
        println!("\nErrors (these rows change nothing):");
        for e in p.errors.iter().take(SHOW) {
            let col = e.column.as_deref().map(|c| format!(" [{c}]")).unwrap_or_default();
            let eid = e.employee_id.as_deref().map(|c| format!(" {c}")).unwrap_or_default();
            println!("  row {}{eid}{col}: {}", e.row, e.message);
        }
        more(p.errors.len());
    }
    let b = &p.breaker;
    println!(
        "\nCircuit breaker: {} of {} workers terminated ({:.1} %, limit {:.1} %){}",
        b.terminations,
        b.workforce,
        b.share * 100.0,
        b.max_share * 100.0,
        if b.tripped { " — TRIPPED: applying needs --override-breaker" } else { "" }
    );
}

pub async fn reconcile(args: ReconcileArgs) -> Result<ExitCode, String> {
    let (loc, hr) = load(&args.store)?;
    let (services, _) = crate::local::open_services(&loc, true, false).await?;
    let operator = services.operator(&crate::local::os_user());
    let result = services.reconciliation_report(&operator, args.dormant_days.unwrap_or(hr.dormant_days)).await;
    services.close().await;
    let report = result.map_err(|e| e.to_string())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Reconciliation at {} ({} users, {} service accounts, dormant after {} days): {} findings",
        report.generated_at,
        report.users,
        report.service_accounts,
        report.dormant_days,
        report.findings.len()
    );
    for (k, n) in &report.counts {
        println!("  {k:<27} {n}");
    }
    if !report.findings.is_empty() {
        println!();
        println!("{:<27} {:<24} {:<60} SUGGESTED ACTION", "KIND", "NAME", "REASON");
        for f in &report.findings {
            println!(
                "{:<27} {:<24} {:<60} {}",
                f.kind,
                truncate(&f.name, 24),
                truncate(&f.reason, 60),
                f.suggested_action
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}
