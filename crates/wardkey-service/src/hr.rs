//! HR roster import (plan, then apply) and the contractor end-date job.
//!
//! The plan is computed from one read of the whole directory (no per-row queries); applying
//! submits the changes as write jobs of [`APPLY_CHUNK`] rows, many in flight, so the
//! group-commit writer folds them into few transactions. A job that fails is retried row by
//! row, so a bad row costs only itself: nothing of a row with an error is written. Every
//! event names the import (`request_ref = hr_import:<id>#row=<n>`, and the import id, the
//! file's SHA-256 and the row in its details or reason).

use crate::auth::{Admin, Authorized};
use crate::jml::{ChangeContext, review_item, sync_birthright_with};
use crate::{Caller, RequestMeta, Result, ServiceError, Services, draft, event};
use futures::StreamExt;
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;
use wardkey_audit::{Action, Target};
use wardkey_domain::{Actor, User, UserId, UserStatus};
use wardkey_hr::{Format, ImportSettings, Joiner, Leaver, Mover, Plan, ReviewEntry, RowError, Worker};
use wardkey_store::{HrImportRecord, WriteTx};

/// Rows per write job.
pub const APPLY_CHUNK: usize = 64;
/// Write jobs in flight at once (the writer takes up to 512 per transaction).
const IN_FLIGHT: usize = 16;

/// What the caller asks for.
#[derive(Debug, Clone)]
pub struct HrImportRequest {
    pub format: Format,
    pub apply: bool,
    pub full_roster: bool,
    /// Apply even though the circuit breaker tripped (recorded in the audit event).
    pub override_breaker: bool,
}

/// What applying did.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ApplyResult {
    pub import_id: Uuid,
    pub joiners_created: usize,
    pub rehires: usize,
    pub movers_updated: usize,
    pub leavers_terminated: usize,
    pub review_items: usize,
    /// Rows whose changes could not be written (nothing of them was).
    #[schema(value_type = Vec<Object>)]
    pub row_errors: Vec<RowError>,
    /// Store revision after the last change (the decision index reaches it before an HTTP
    /// answer leaves).
    pub revision: u64,
}

/// HR settings of this process: the import settings (column mapping, circuit breaker) and
/// the reconciliation report's dormancy threshold. Set once at start-up from `[hr]`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HrConfig {
    /// Which roster column carries each attribute (`[hr.columns]`).
    pub columns: wardkey_hr::ColumnMapping,
    /// Status values that mean "terminated" (case-insensitive).
    pub terminated_values: Vec<String>,
    /// The circuit breaker refuses to apply when more than this share of the workforce would
    /// be terminated at once (default 0.10)...
    pub max_termination_share: f64,
    /// ...and at least this many people (default 5).
    pub breaker_min_terminations: usize,
    /// Most rows in one roster.
    pub max_rows: usize,
    /// An active account with no sign-in for this many days is dormant (default 90).
    pub dormant_days: u32,
}

impl Default for HrConfig {
    fn default() -> Self {
        let d = ImportSettings::default();
        HrConfig {
            columns: d.mapping,
            terminated_values: d.terminated_values,
            max_termination_share: d.max_termination_share,
            breaker_min_terminations: d.breaker_min_terminations,
            max_rows: d.max_rows,
            dormant_days: 90,
        }
    }
}

impl HrConfig {
    pub fn import_settings(&self) -> ImportSettings {
        ImportSettings {
            mapping: self.columns.clone(),
            terminated_values: self.terminated_values.clone(),
            max_termination_share: self.max_termination_share,
            breaker_min_terminations: self.breaker_min_terminations,
            max_rows: self.max_rows,
        }
    }

    /// Checks the settings (the mapping, the share within 0..=1).
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.columns.validate().map_err(|e| e.message)?;
        if !(0.0..=1.0).contains(&self.max_termination_share) {
            return Err("hr.max_termination_share must be between 0 and 1".into());
        }
        if self.dormant_days == 0 {
            return Err("hr.dormant_days must be at least 1".into());
        }
        Ok(())
    }
}

static HR_CONFIG: std::sync::OnceLock<HrConfig> = std::sync::OnceLock::new();

/// Sets the process's HR settings (first call wins; later calls are ignored).
pub fn configure(config: HrConfig) {
    let _ = HR_CONFIG.set(config);
}

/// The process's HR settings (defaults unless [`configure`]d).
pub fn config() -> HrConfig {
    HR_CONFIG.get().cloned().unwrap_or_default()
}

#[derive(Debug, Clone, Serialize)]
pub struct HrImportOutcome {
    pub plan: Plan,
    /// Present when applying was asked for and done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<ApplyResult>,
    /// Why applying was refused (the circuit breaker), if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// One unit of work of an import.
#[derive(Debug, Clone)]
enum Op {
    Join(Joiner),
    Move(Mover),
    Leave(Leaver),
    Review(ReviewEntry),
}

impl Op {
    fn row(&self) -> usize {
        match self {
            Op::Join(j) => j.row,
            Op::Move(m) => m.row,
            Op::Leave(l) => l.row,
            Op::Review(_) => 0,
        }
    }
    fn employee_id(&self) -> &str {
        match self {
            Op::Join(j) => &j.employee_id,
            Op::Move(m) => &m.employee_id,
            Op::Leave(l) => &l.employee_id,
            Op::Review(r) => &r.employee_id,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    joiners: usize,
    rehires: usize,
    movers: usize,
    leavers: usize,
    review: usize,
}

impl Counts {
    fn add(&mut self, o: Counts) {
        self.joiners += o.joiners;
        self.rehires += o.rehires;
        self.movers += o.movers;
        self.leavers += o.leavers;
        self.review += o.review;
    }
}

/// Import identity carried into every event.
#[derive(Debug, Clone)]
struct ImportRef {
    id: Uuid,
    sha256: String,
}

impl ImportRef {
    fn ctx(&self, row: usize, attributes_changed: bool) -> ChangeContext {
        ChangeContext {
            request_ref: Some(format!("hr_import:{}#row={row}", self.id)),
            details: Some(json!({ "import": { "id": self.id, "sha256": self.sha256, "row": row } })),
            import_id: Some(self.id),
            attributes_changed,
        }
    }
    fn why(&self, row: usize, what: &str) -> String {
        format!("{what} (HR import {} row {row})", self.id)
    }
}

/// Progress of an apply: (rows done, rows to do).
pub type Progress = std::sync::Arc<dyn Fn(usize, usize) + Send + Sync>;

impl Services {
    /// Reads the directory once, in bulk, as the plan sees it.
    pub async fn hr_workers(&self, _by: &Authorized<Admin>) -> Result<Vec<Worker>> {
        let users = self.store.read().await?.all_users().await?;
        Ok(users.into_iter().map(worker).collect())
    }

    /// Parses the roster and compares it with the directory. Writes nothing.
    pub async fn hr_plan(
        &self,
        by: &Authorized<Admin>,
        bytes: &[u8],
        req: &HrImportRequest,
        settings: &ImportSettings,
    ) -> Result<Plan> {
        let roster =
            wardkey_hr::parse(bytes, req.format, settings).map_err(|e| ServiceError::invalid("roster", e.message))?;
        let workers = self.hr_workers(by).await?;
        let now = self.clock().now();
        Ok(wardkey_hr::plan(&roster, &workers, settings, req.full_roster, now))
    }

    /// Plans, and applies when asked and the circuit breaker allows (or is overridden).
    pub async fn hr_import(
        &self,
        by: &Authorized<Admin>,
        bytes: &[u8],
        req: &HrImportRequest,
        settings: &ImportSettings,
        progress: Option<Progress>,
    ) -> Result<HrImportOutcome> {
        let plan = self.hr_plan(by, bytes, req, settings).await?;
        if !req.apply {
            // A dry run is a read of the directory against the file: on record as one.
            self.record_read(by.caller(), "hr_import", None).await?;
            return Ok(HrImportOutcome { plan, applied: None, refused: None });
        }
        if plan.breaker.tripped && !req.override_breaker {
            let refused = format!(
                "circuit breaker: {} of {} workers ({:.1} %) would be terminated at once, more than the {:.1} % allowed; \
                 check the file, or apply with the override if this is intended",
                plan.breaker.terminations,
                plan.breaker.workforce,
                plan.breaker.share * 100.0,
                plan.breaker.max_share * 100.0
            );
            // The refusal is on record too.
            let mut e = draft(by.caller(), Action::HrImportRefused, None);
            e.outcome = wardkey_audit::Outcome::Failure;
            e.reason = Some(refused.clone());
            e.details = json!({ "sha256": plan.sha256, "breaker": plan.breaker });
            self.store.append_audit(vec![e]).await?;
            self.record_read(by.caller(), "hr_import", None).await?;
            return Ok(HrImportOutcome { plan, applied: None, refused: Some(refused) });
        }
        let applied = self.hr_apply(by, &plan, req, progress).await?;
        Ok(HrImportOutcome { plan, applied: Some(applied), refused: None })
    }

    async fn hr_apply(
        &self,
        by: &Authorized<Admin>,
        plan: &Plan,
        req: &HrImportRequest,
        progress: Option<Progress>,
    ) -> Result<ApplyResult> {
        let caller = by.caller().clone();
        let import = ImportRef { id: Uuid::now_v7(), sha256: plan.sha256.clone() };
        // The import itself first: every later event names it.
        let first = {
            let caller = caller.clone();
            let record = HrImportRecord {
                id: import.id,
                sha256: plan.sha256.clone(),
                format: plan.format.as_str().to_owned(),
                full_roster: plan.full_roster,
                override_breaker: req.override_breaker,
                row_count: plan.rows as i64,
                summary: plan.summary(),
                created_by: caller.actor.principal(),
                created_at: self.clock().now(),
            };
            let breaker = plan.breaker.clone();
            self.store
                .write(move |tx| {
                    Box::pin(async move {
                        let record = HrImportRecord { created_at: tx.now(), ..record };
                        tx.insert_hr_import(&record).await?;
                        let mut e = event(&caller, Action::HrImport, Target::hr_import(record.id));
                        e.request_ref = Some(format!("hr_import:{}", record.id));
                        e.details = json!({
                            "sha256": record.sha256,
                            "format": record.format,
                            "full_roster": record.full_roster,
                            "override_breaker": record.override_breaker,
                            "breaker": breaker,
                            "summary": record.summary,
                        });
                        if record.override_breaker && breaker.tripped {
                            e.reason = Some("circuit breaker overridden by the caller".into());
                        }
                        tx.audit(e);
                        Ok::<_, ServiceError>(())
                    })
                })
                .await?
                .revision
        };

        let mut ops: Vec<Op> =
            Vec::with_capacity(plan.joiners.len() + plan.movers.len() + plan.leavers.len() + plan.review.len());
        ops.extend(plan.leavers.iter().cloned().map(Op::Leave));
        ops.extend(plan.movers.iter().cloned().map(Op::Move));
        ops.extend(plan.joiners.iter().cloned().map(Op::Join));
        ops.extend(plan.review.iter().cloned().map(Op::Review));
        let total = ops.len();
        if let Some(p) = &progress {
            p(0, total);
        }
        let chunks: Vec<Vec<Op>> = ops.chunks(APPLY_CHUNK).map(<[Op]>::to_vec).collect();
        let mut done = 0usize;
        let mut counts = Counts::default();
        let mut row_errors = Vec::new();
        let mut revision = first;
        let mut stream = futures::stream::iter(chunks.into_iter().map(|chunk| {
            let caller = caller.clone();
            let import = import.clone();
            let store = self.store.clone();
            async move {
                let n = chunk.len();
                let whole = {
                    let (caller, import, ops) = (caller.clone(), import.clone(), chunk.clone());
                    store.write(move |tx| Box::pin(async move { apply_ops(tx, &caller, &import, &ops).await })).await
                };
                match whole {
                    Ok(c) => (n, c.value, Vec::new(), c.revision),
                    Err(_) => {
                        // One bad row spoils its job: redo the rows one by one.
                        let mut counts = Counts::default();
                        let mut errors = Vec::new();
                        let mut rev = 0u64;
                        for op in chunk {
                            let (caller, import, one) = (caller.clone(), import.clone(), vec![op.clone()]);
                            let r = store
                                .write(move |tx| Box::pin(async move { apply_ops(tx, &caller, &import, &one).await }))
                                .await;
                            match r {
                                Ok(c) => {
                                    counts.add(c.value);
                                    rev = rev.max(c.revision);
                                }
                                Err(e) => errors.push(RowError {
                                    row: op.row(),
                                    employee_id: Some(op.employee_id().to_owned()),
                                    column: None,
                                    message: format!("not applied: {e}"),
                                }),
                            }
                        }
                        (n, counts, errors, rev)
                    }
                }
            }
        }))
        .buffer_unordered(IN_FLIGHT);
        while let Some((n, c, errs, rev)) = stream.next().await {
            done += n;
            revision = revision.max(rev);
            counts.add(c);
            row_errors.extend(errs);
            if let Some(p) = &progress {
                p(done, total);
            }
        }
        row_errors.sort_by_key(|e| e.row);
        Ok(ApplyResult {
            import_id: import.id,
            joiners_created: counts.joiners,
            rehires: counts.rehires,
            movers_updated: counts.movers,
            leavers_terminated: counts.leavers,
            review_items: counts.review,
            row_errors,
            revision,
        })
    }

    /// The end-date job: disables every person whose end date has passed in their time zone
    /// (access ends at 00:00 of the day after `end_date`). Returns how many were disabled.
    pub async fn run_end_dates(&self) -> Result<usize> {
        let now = self.clock().now();
        // Only people whose end has come get a write job (re-checked inside it).
        let ids: Vec<UserId> = self
            .store
            .read()
            .await?
            .users_with_end_date()
            .await?
            .into_iter()
            .filter(|(_, hr)| hr.access_ends_at().is_some_and(|at| at <= now))
            .map(|(id, _)| id)
            .collect();
        let caller = Caller {
            actor: Actor::System { component: "hr_end_date".into() },
            scopes: Vec::new(),
            meta: RequestMeta::default(),
            session: None,
        };
        let mut disabled = 0;
        for id in ids {
            let caller = caller.clone();
            let r = self
                .store
                .write(move |tx| {
                    Box::pin(async move {
                        let Some(user) = tx.get_user(id).await? else { return Ok::<_, ServiceError>(false) };
                        let Some(ends) = user.hr.access_ends_at() else { return Ok(false) };
                        if user.status == UserStatus::Disabled || ends > tx.now() {
                            return Ok(false);
                        }
                        let why = format!(
                            "end date {} passed ({})",
                            user.hr.end_date.map(|d| d.to_string()).unwrap_or_default(),
                            user.hr.tz()
                        );
                        crate::lifecycle::terminate_in_tx(tx, &caller, user, &why).await?;
                        Ok(true)
                    })
                })
                .await;
            match r {
                Ok(c) if c.value => disabled += 1,
                Ok(_) => {}
                // A job that found nothing to do queued no event and is reported as refused
                // by the store; anything else is logged and retried on the next run.
                Err(e) => tracing::debug!(user = %id, error = %e, "end-date check wrote nothing"),
            }
        }
        Ok(disabled)
    }
}

/// How often the end-date job looks (end dates are days; a minute is precise enough).
pub const END_DATE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs [`Services::run_end_dates`] every [`END_DATE_INTERVAL`] until `stop` changes.
pub async fn end_date_job(services: Services, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(END_DATE_INTERVAL) => {}
            _ = stop.changed() => break,
        }
        match services.run_end_dates().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(disabled = n, "disabled people past their end date"),
            Err(e) => tracing::error!(error = %e, "the end-date job failed"),
        }
    }
}

fn worker(u: User) -> Worker {
    Worker {
        user_id: u.id,
        username: u.username,
        display_name: u.display_name,
        email: u.email,
        status: u.status,
        hr: u.hr,
        version: u.version,
    }
}

async fn apply_ops(tx: &mut WriteTx, caller: &Caller, import: &ImportRef, ops: &[Op]) -> Result<Counts> {
    let mut counts = Counts::default();
    for op in ops {
        match op {
            Op::Join(j) => {
                if apply_join(tx, caller, import, j).await? {
                    counts.rehires += 1;
                } else {
                    counts.joiners += 1;
                }
            }
            Op::Move(m) => {
                if apply_move(tx, caller, import, m).await? {
                    counts.movers += 1;
                }
            }
            Op::Leave(l) => {
                if apply_leave(tx, caller, import, l).await? {
                    counts.leavers += 1;
                }
            }
            Op::Review(r) => {
                let Some(user) = tx.get_user(r.user_id).await? else { continue };
                let ctx = import.ctx(0, false);
                let item = review_item(
                    &ctx,
                    "missing_from_roster",
                    &user,
                    None,
                    &r.reason,
                    json!({ "employee_id": r.employee_id }),
                    tx.now(),
                );
                if tx.insert_review_item(&item).await? {
                    tx.audit(ctx.event(
                        caller,
                        Action::HrReviewItem,
                        Some(user.id.into()),
                        &r.reason,
                        json!({ "kind": "missing_from_roster", "employee_id": r.employee_id }),
                    ));
                    counts.review += 1;
                }
            }
        }
    }
    Ok(counts)
}

fn check_hr(hr: &wardkey_domain::HrAttributes) -> Result<()> {
    let mut errors = Vec::new();
    hr.validate(&mut errors);
    Ok(wardkey_domain::validate::finish(errors)?)
}

/// Creates a joiner (`pending_verification`), or brings a disabled person back to it (a
/// rehire: verified again from scratch). Returns whether it was a rehire.
async fn apply_join(tx: &mut WriteTx, caller: &Caller, import: &ImportRef, j: &Joiner) -> Result<bool> {
    check_hr(&j.hr)?;
    let ctx = import.ctx(j.row, false);
    let now = tx.now();
    if let Some(id) = j.rehire_of {
        let mut user =
            tx.get_user(id).await?.ok_or_else(|| ServiceError::NotFound { kind: "user", id: id.to_string() })?;
        let from = user.status;
        let expected = user.version;
        user.status = from.transition(UserStatus::PendingVerification)?;
        user.verification = None;
        let hr_before = user.hr.clone();
        user.hr = j.hr.clone();
        user.display_name = j.display_name.clone();
        user.email = j.email.clone();
        user.updated_at = now;
        let user = tx.update_user(&user, expected).await?;
        let why = import.why(j.row, "rehire");
        tx.audit(ctx.event(
            caller,
            Action::UserStatus,
            Some(id.into()),
            &why,
            json!({ "from": from, "to": user.status }),
        ));
        tx.audit(ctx.event(
            caller,
            Action::UserUpdate,
            Some(id.into()),
            &why,
            json!({ "changed": ["hr"], "hr_before": hr_before, "hr_after": user.hr }),
        ));
        return Ok(true);
    }
    let user = User {
        id: UserId::generate(),
        username: j.username.clone(),
        display_name: j.display_name.clone(),
        email: j.email.clone(),
        status: UserStatus::PendingVerification,
        hr: j.hr.clone(),
        verification: None,
        created_at: now,
        updated_at: now,
        version: 1,
    };
    tx.insert_user(&user).await?;
    tx.audit(ctx.event(
        caller,
        Action::UserCreate,
        Some(user.id.into()),
        &import.why(j.row, "joiner"),
        json!({ "username": user.username, "status": user.status, "hr": user.hr }),
    ));
    Ok(false)
}

/// Writes a mover's new attributes; an active mover's template roles follow. Returns whether
/// anything changed (the directory may have moved on since the plan).
async fn apply_move(tx: &mut WriteTx, caller: &Caller, import: &ImportRef, m: &Mover) -> Result<bool> {
    check_hr(&m.hr)?;
    let Some(mut user) = tx.get_user(m.user_id).await? else {
        return Err(ServiceError::NotFound { kind: "user", id: m.user_id.to_string() });
    };
    if user.status == UserStatus::Disabled {
        return Err(ServiceError::Conflict { kind: "user", message: "was disabled after the plan was made".into() });
    }
    if user.hr == m.hr && user.display_name == m.display_name && user.email == m.email {
        return Ok(false);
    }
    let expected = user.version;
    let hr_before = user.hr.clone();
    user.hr = m.hr.clone();
    user.display_name = m.display_name.clone();
    user.email = m.email.clone();
    user.updated_at = tx.now();
    let user = tx.update_user(&user, expected).await?;
    let why = import.why(m.row, if m.job_change { "mover" } else { "HR attributes" });
    let ctx = import.ctx(m.row, m.job_change);
    tx.audit(ctx.event(
        caller,
        Action::UserUpdate,
        Some(user.id.into()),
        &why,
        json!({ "changes": m.changes, "hr_before": hr_before, "hr_after": user.hr, "terminates_at": m.terminates_at }),
    ));
    if hr_before != user.hr {
        sync_birthright_with(tx, caller, &user, &why, &ctx).await?;
    }
    Ok(true)
}

/// A leaver: the HR record is updated and the person disabled, losing every session, grant,
/// membership and API token in this same job. Returns whether anything changed.
async fn apply_leave(tx: &mut WriteTx, caller: &Caller, import: &ImportRef, l: &Leaver) -> Result<bool> {
    let Some(mut user) = tx.get_user(l.user_id).await? else {
        return Err(ServiceError::NotFound { kind: "user", id: l.user_id.to_string() });
    };
    if user.status == UserStatus::Disabled {
        return Ok(false);
    }
    let why = import.why(l.row, &format!("termination by {}", l.cause));
    let ctx = import.ctx(l.row, false);
    if user.hr != l.hr {
        let expected = user.version;
        let hr_before = user.hr.clone();
        user.hr = l.hr.clone();
        user.updated_at = tx.now();
        user = tx.update_user(&user, expected).await?;
        tx.audit(ctx.event(
            caller,
            Action::UserUpdate,
            Some(user.id.into()),
            &why,
            json!({ "changed": ["hr"], "hr_before": hr_before, "hr_after": user.hr }),
        ));
    }
    tx.audit(ctx.event(
        caller,
        Action::HrTermination,
        Some(user.id.into()),
        &why,
        json!({ "cause": l.cause, "effective_at": l.effective_at, "employee_id": l.employee_id }),
    ));
    crate::lifecycle::terminate_in_tx(tx, caller, user, &why).await?;
    Ok(true)
}
