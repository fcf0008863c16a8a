//! The decision point: the in-memory index (`wardkey-authz`) kept current with the store,
//! decisions with their audit events, and the "who has access" questions.
//!
//! Consistency: the index is at a store revision (the audit tree size). Every write a service
//! makes waits, before the service returns, for the index to catch up to its revision
//! ([`crate::ServiceStore::write`], [`Services::catch_up`]), which reads the audit events since the index's
//! revision, reloads each access-relevant object they name, and publishes one new snapshot
//! with the revision. So a revocation is in the index before its API call returns. Other
//! nodes hear revisions through PostgreSQL `NOTIFY` and catch up the same way.

use crate::auth::{AuditRead, Authorized, Pdp};
use crate::{Result, ServiceError, Services};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, mpsc, watch};
use wardkey_audit::{Action, AuditDraft, Outcome};
use wardkey_authz::{Change, Index, Records};
use wardkey_domain::{
    Assurance, DecisionAudit, DeviceTrust, ForbidRuleId, GrantId, GroupId, ResourceId, ResourceTypeId, RoleId,
    ServiceAccountId, UserId,
};
use wardkey_store::{AuditQuery, Conn};

/// Longest a PEP may make a decision wait for a minimum revision.
pub const MAX_REVISION_WAIT: Duration = Duration::from_secs(2);
/// Async decision-audit queue: capacity and flush interval.
pub const DECISION_QUEUE: usize = 50_000;
pub const DECISION_FLUSH: Duration = Duration::from_millis(100);
/// Events read per round when catching up.
const CATCH_UP_PAGE: u32 = 1000;

/// What the group-commit flusher takes: an event, or a barrier answered once every event
/// queued before it is written.
pub(crate) enum Queued {
    Event(Box<AuditDraft>),
    Barrier(tokio::sync::oneshot::Sender<()>),
}

pub(crate) struct DecisionPoint {
    pub(crate) index: Index,
    /// Set once the index is built: from then on every service write waits for it to apply
    /// (before, there is no index to keep current, e.g. in a CLI command).
    started: std::sync::atomic::AtomicBool,
    /// Held while applying changes; the value is the revision applied.
    updater: Mutex<u64>,
    applied: watch::Sender<u64>,
    /// Async decision-audit queue (None until started).
    queue: std::sync::Mutex<Option<mpsc::Sender<Queued>>>,
    flusher: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// PHI resource types and their audit mode, by lower-cased name.
    audit_modes: arc_swap::ArcSwap<std::collections::HashMap<String, DecisionAudit>>,
}

impl DecisionPoint {
    pub(crate) fn new() -> DecisionPoint {
        DecisionPoint {
            index: Index::new(),
            started: std::sync::atomic::AtomicBool::new(false),
            updater: Mutex::new(0),
            applied: watch::Sender::new(0),
            queue: std::sync::Mutex::new(None),
            flusher: Mutex::new(None),
            audit_modes: arc_swap::ArcSwap::from_pointee(Default::default()),
        }
    }
}

/// An access question, as the AuthZEN edge parsed it. The names borrow from the request body
/// when they can (the decision hot path copies no string it does not have to).
#[derive(Debug, Clone)]
pub struct AccessRequest<'a> {
    pub subject_type: Cow<'a, str>,
    pub subject_id: Cow<'a, str>,
    pub action: Cow<'a, str>,
    pub resource_type: Cow<'a, str>,
    pub resource_id: Option<Cow<'a, str>>,
    pub resource_properties: wardkey_authz::Properties,
    pub context: AccessContext,
}

/// What the PEP says about the circumstances (the time is always the server's).
#[derive(Debug, Clone, Default)]
pub struct AccessContext {
    pub source_ip: Option<IpAddr>,
    pub assurance: Option<Assurance>,
    pub device_trust: Option<DeviceTrust>,
}

/// A decision as the edge returns it.
#[derive(Debug, Clone, Serialize)]
pub struct AccessDecision {
    pub decision: bool,
    pub revision: u64,
    /// The index's reasons (stable `code`s), or `audit_unavailable` when a decision could not
    /// be recorded and was therefore denied.
    pub reasons: Vec<wardkey_authz::Reason>,
    pub obligations: Vec<serde_json::Value>,
    pub break_glass: bool,
    /// `acr_values` a PEP should ask for to change a deny into an allow.
    pub acr_values: Option<&'static str>,
}

fn target_of(kind: &str, id: &str) -> Option<Target> {
    let id = uuid::Uuid::parse_str(id).ok()?;
    Some(match kind {
        "user" => Target::User(UserId(id)),
        "group" => Target::Group(GroupId(id)),
        "service_account" => Target::ServiceAccount(ServiceAccountId(id)),
        "resource_type" => Target::ResourceType(ResourceTypeId(id)),
        "resource" => Target::Resource(ResourceId(id)),
        "role" => Target::Role(RoleId(id)),
        "grant" => Target::Grant(GrantId(id)),
        "forbid_rule" => Target::ForbidRule(ForbidRuleId(id)),
        _ => return None,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    User(UserId),
    Group(GroupId),
    ServiceAccount(ServiceAccountId),
    ResourceType(ResourceTypeId),
    Resource(ResourceId),
    Role(RoleId),
    Grant(GrantId),
    ForbidRule(ForbidRuleId),
}

/// The objects that changed, as changes for the index (reloaded from the store).
async fn reload(conn: &mut Conn, targets: &BTreeSet<Target>) -> Result<Vec<Change>> {
    let mut changes = Vec::with_capacity(targets.len());
    for t in targets {
        match *t {
            Target::User(id) => changes.push(match conn.get_user(id).await? {
                Some(u) => Change::UpsertUser(u),
                None => Change::RemoveUser(id),
            }),
            Target::Group(id) => match conn.get_group(id).await? {
                Some(g) => {
                    let members = conn.list_members(id).await?;
                    changes.push(Change::UpsertGroup(g));
                    changes.push(Change::SetGroupMembers { group: id, members });
                }
                None => changes.push(Change::RemoveGroup(id)),
            },
            Target::ServiceAccount(id) => changes.push(match conn.get_service_account(id).await? {
                Some(s) => Change::UpsertServiceAccount(s),
                None => Change::RemoveServiceAccount(id),
            }),
            Target::ResourceType(id) => changes.push(match conn.get_resource_type(id).await? {
                Some(t) => Change::UpsertResourceType(t),
                None => Change::RemoveResourceType(id),
            }),
            Target::Resource(id) => changes.push(match conn.get_resource(id).await? {
                Some(r) => Change::UpsertResource(r),
                None => Change::RemoveResource(id),
            }),
            Target::Role(id) => changes.push(match conn.get_role(id).await? {
                Some(r) => Change::UpsertRole(r),
                None => Change::RemoveRole(id),
            }),
            Target::Grant(id) => changes.push(match conn.get_grant(id).await? {
                Some(g) if g.revoked_at.is_none() => Change::UpsertGrant(g),
                _ => Change::RemoveGrant(id),
            }),
            Target::ForbidRule(id) => changes.push(match conn.get_forbid_rule(id).await? {
                Some(f) => Change::UpsertForbidRule(f),
                None => Change::RemoveForbidRule(id),
            }),
        }
    }
    Ok(changes)
}

/// What the index follower does with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Follow {
    /// Never changes what the index holds (reads, decisions, sign-in, credentials).
    Ignore,
    /// A token changed: drop it from the token cache so it is read afresh when next presented.
    /// Tokens are not in the index.
    ForgetToken,
    /// May change the index: reload the object the event targets (kinds the index does not
    /// hold, such as role templates or HR imports, are skipped by [`target_of`]; the events
    /// that follow them name the users and grants that changed).
    Reload,
}

/// Exhaustive on purpose: a new action does not compile until someone decides whether the
/// decision index must follow it.
fn follow(action: Action) -> Follow {
    use Action as A;
    match action {
        A::AuthLogin
        | A::AuthPasswordVerified
        | A::AuthStepUp
        | A::AuthLoginFailed
        | A::AuthMfaFailed
        | A::AuthLockout
        | A::AuthUnlock
        | A::AuthFailed
        | A::AuthDenied
        | A::AuthRateLimited
        | A::AuthCsrfRefused
        | A::WebauthnChallenge
        | A::WebauthnRegistrationStarted
        | A::SessionLogout
        | A::SessionRevoke
        | A::SessionRevokeAll
        | A::SessionTimeout
        | A::SessionExpired
        | A::FactorEnrolStarted
        | A::FactorEnrolled
        | A::FactorEnrolFailed
        | A::FactorRemoved
        | A::FactorReset
        | A::FactorRecoveryCodesIssued
        | A::FactorRecoveryCodeUsed
        | A::PasswordSet
        | A::PasswordChanged
        | A::PasswordChangeFailed
        | A::PasswordCompromised
        | A::AccessEvaluate
        | A::ApiRead
        // The grant a break-glass declaration creates has its own `grant.create` event.
        | A::BreakGlassDeclared => Follow::Ignore,
        A::ApiTokenCreate | A::ApiTokenRevoke | A::ApiTokenUse => Follow::ForgetToken,
        A::GrantCreate
        | A::GrantRevoke
        | A::GrantReviewFlagged
        | A::UserCreate
        | A::UserUpdate
        | A::UserStatus
        | A::UserVerifyIdentity
        | A::UserDelete
        | A::GroupCreate
        | A::GroupUpdate
        | A::GroupDelete
        | A::GroupMemberAdd
        | A::GroupMemberRemove
        | A::ServiceAccountCreate
        | A::ServiceAccountUpdate
        | A::ServiceAccountDelete
        | A::HrImport
        | A::HrImportRefused
        | A::HrReviewItem
        | A::HrTermination
        | A::ScimTerminate
        | A::ResourceTypeCreate
        | A::ResourceTypeUpdate
        | A::ResourceTypeDelete
        | A::ResourceCreate
        | A::ResourceUpdate
        | A::ResourceDelete
        | A::RoleCreate
        | A::RoleUpdate
        | A::RoleDelete
        | A::RoleTemplateCreate
        | A::RoleTemplateUpdate
        | A::RoleTemplateDelete
        | A::SodRuleCreate
        | A::SodRuleUpdate
        | A::SodRuleDelete
        | A::ForbidRuleCreate
        | A::ForbidRuleDelete => Follow::Reload,
    }
}

/// The token an event targets, if it targets one.
fn token_target(event: &wardkey_audit::AuditEvent) -> Option<wardkey_domain::ApiTokenId> {
    event.draft.target.as_deref().and_then(|t| t.strip_prefix("api_token:")).and_then(|id| id.parse().ok())
}

impl Services {
    fn decisions(&self) -> &DecisionPoint {
        &self.decisions
    }

    /// Builds the index from one consistent snapshot of the store (start-up), starts the
    /// async decision-audit flusher, and follows other nodes' revisions (PostgreSQL).
    pub async fn start_decision_point(&self) -> Result<(u64, Duration)> {
        let started = std::time::Instant::now();
        let mut r = self.store.read_snapshot().await?;
        let now = r.current_time();
        let records = Records {
            revision: r.audit_tree_size().await?,
            users: r.all_users().await?,
            service_accounts: r.all_service_accounts().await?,
            groups: r.all_groups().await?,
            memberships: r.all_memberships().await?,
            resource_types: r.list_resource_types().await?,
            resources: r.all_resources().await?,
            roles: r.all_roles().await?,
            grants: r.all_live_grants(now).await?,
            forbid_rules: r.list_forbid_rules().await?,
        };
        r.end().await?;
        let revision = records.revision;
        self.refresh_audit_modes(&records.resource_types);
        {
            let mut applied = self.decisions().updater.lock().await;
            self.decisions().index.replace(records);
            *applied = revision;
            self.decisions().applied.send_replace(revision);
            self.decisions().started.store(true, std::sync::atomic::Ordering::Release);
        }
        self.start_flusher().await;
        self.store.listen_for_other_nodes();
        // Follow revisions made without an HTTP response to wait on them (other nodes, the
        // sweeper, operator commands): catch up as they are announced, and poll as a backstop.
        let me = self.clone();
        let mut rx = self.store.revisions();
        tokio::spawn(async move {
            loop {
                let changed = tokio::time::timeout(Duration::from_secs(1), rx.changed()).await;
                if matches!(changed, Ok(Err(_))) {
                    return;
                }
                if me.store.is_closed() {
                    return;
                }
                let target = *rx.borrow_and_update();
                if let Err(e) = me.catch_up(target).await {
                    tracing::warn!(error = %e, "decision index catch-up failed; retrying");
                }
                if changed.is_err()
                    && let Ok(mut c) = me.store.read().await
                    && let Ok(size) = c.audit_tree_size().await
                {
                    me.store.note_revision(size);
                }
            }
        });
        Ok((revision, started.elapsed()))
    }

    fn refresh_audit_modes(&self, types: &[wardkey_domain::ResourceType]) {
        self.store.follower().refresh_audit_modes(types);
    }

    /// The revision the index is at.
    pub fn decision_revision(&self) -> u64 {
        *self.decisions().applied.borrow()
    }

    /// Brings the index up to at least `revision` (a no-op when it is there already).
    pub async fn catch_up(&self, revision: u64) -> Result<u64> {
        self.store.follower().catch_up(revision).await
    }
}

/// What keeping the index current needs, borrowed from the services' store
/// ([`crate::ServiceStore`]), so that a write can wait for its own revision to be applied.
pub(crate) struct Follower<'a> {
    pub(crate) store: &'a wardkey_store::Store,
    pub(crate) decisions: &'a DecisionPoint,
    pub(crate) token_cache: &'a crate::auth::TokenCache,
}

impl Follower<'_> {
    fn decisions(&self) -> &DecisionPoint {
        self.decisions
    }

    fn decision_revision(&self) -> u64 {
        *self.decisions.applied.borrow()
    }

    fn refresh_audit_modes(&self, types: &[wardkey_domain::ResourceType]) {
        let map = types.iter().filter(|t| t.phi).map(|t| (t.name.to_lowercase(), t.decision_audit)).collect();
        self.decisions.audit_modes.store(Arc::new(map));
    }

    /// After a committed write: the index has applied `revision` when this returns (nothing
    /// to wait for before the decision point is started). An error means the write committed
    /// but decisions may not see it yet, so the caller must not report success.
    pub(crate) async fn settle(&self, revision: u64) -> std::result::Result<(), wardkey_store::StoreError> {
        if !self.decisions.started.load(std::sync::atomic::Ordering::Acquire) || self.decision_revision() >= revision {
            return Ok(());
        }
        match self.catch_up(revision).await {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::error!(error = %e, revision, "the decision index could not apply this write");
                Err(wardkey_store::StoreError::Database(format!(
                    "committed at revision {revision}, but the decision index could not apply it: {e}"
                )))
            }
        }
    }

    /// Brings the index up to at least `revision` (a no-op when it is there already).
    pub(crate) async fn catch_up(&self, revision: u64) -> Result<u64> {
        if self.decision_revision() >= revision {
            return Ok(self.decision_revision());
        }
        let mut applied = self.decisions().updater.lock().await;
        let mut types_changed = false;
        while *applied < revision {
            let mut r = self.store.read().await?;
            let events = r.audit_events(&AuditQuery::default(), applied.checked_sub(1), CATCH_UP_PAGE).await?;
            // `after` is exclusive: events with index > applied - 1, i.e. from `applied` on.
            let Some(last) = events.last().map(|e| e.index) else { break };
            let mut targets = BTreeSet::new();
            for e in &events {
                match Action::parse(&e.draft.action).map(follow) {
                    Some(Follow::Ignore) => continue,
                    Some(Follow::ForgetToken) => {
                        // A token changed anywhere (another node, too) is read afresh when next presented.
                        if let Some(id) = token_target(e) {
                            self.token_cache.forget(id);
                        }
                        continue;
                    }
                    Some(Follow::Reload) => {}
                    None => {
                        // Not in this version's catalogue (a newer node, a tool): assume the
                        // worst — forget a token it names and reload whatever else it names.
                        tracing::debug!(
                            action = %e.draft.action,
                            index = e.index,
                            "uncatalogued audit action; reloading its target"
                        );
                        if let Some(id) = token_target(e) {
                            self.token_cache.forget(id);
                        }
                    }
                }
                if let Some((kind, id)) = e.draft.target.as_deref().and_then(|t| t.split_once(':'))
                    && let Some(t) = target_of(kind, id)
                {
                    types_changed |= matches!(t, Target::ResourceType(_));
                    targets.insert(t);
                }
            }
            let mut changes = reload(&mut r, &targets).await?;
            drop(r);
            let next = last + 1;
            changes.push(Change::SetRevision(next));
            self.decisions().index.apply(changes);
            *applied = next;
            self.decisions().applied.send_replace(next);
        }
        if types_changed {
            let types = self.store.read().await?.list_resource_types().await?;
            self.refresh_audit_modes(&types);
        }
        Ok(*applied)
    }
}

impl Services {
    /// Waits (bounded) until the index is at `revision`; `Unavailable` if it cannot get there.
    pub async fn wait_for_revision(&self, revision: u64) -> Result<()> {
        if self.decision_revision() >= revision {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + MAX_REVISION_WAIT;
        let mut rx = self.decisions().applied.subscribe();
        loop {
            let known = *self.store.revisions().borrow();
            if known >= revision {
                self.catch_up(revision).await?;
            }
            if self.decision_revision() >= revision {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(ServiceError::Unavailable {
                    message: format!(
                        "revision {revision} not reached (at {}) within {} ms",
                        self.decision_revision(),
                        MAX_REVISION_WAIT.as_millis()
                    ),
                });
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(50)), rx.changed()).await;
        }
    }

    async fn start_flusher(&self) {
        let (tx, mut rx) = mpsc::channel::<Queued>(DECISION_QUEUE);
        *self.decisions().queue.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        let store = self.store.clone();
        let handle = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(1024);
            let mut waiting = Vec::new();
            loop {
                let Some(first) = rx.recv().await else { break };
                let deadline = tokio::time::Instant::now() + DECISION_FLUSH;
                let mut next = Some(first);
                while let Some(item) = next.take() {
                    match item {
                        Queued::Event(e) => batch.push(*e),
                        // A barrier flushes at once: whoever waits wants what came before it.
                        Queued::Barrier(done) => {
                            waiting.push(done);
                            break;
                        }
                    }
                    if batch.len() >= 4096 {
                        break;
                    }
                    next = tokio::time::timeout_at(deadline, rx.recv()).await.ok().flatten();
                }
                if !batch.is_empty()
                    && let Err(e) = store.append_audit(std::mem::take(&mut batch)).await
                {
                    tracing::error!(error = %e, "writing queued audit events failed");
                }
                for done in waiting.drain(..) {
                    let _ = done.send(());
                }
            }
        });
        *self.decisions().flusher.lock().await = Some(handle);
    }

    /// Hands `event` to the group-commit flusher (written within [`DECISION_FLUSH`]); gives it
    /// back when the queue is full or not running, for the caller to write durably instead.
    pub(crate) fn queue_audit(&self, event: AuditDraft) -> std::result::Result<(), Box<AuditDraft>> {
        let event = Box::new(event);
        let queue = self.decisions().queue.lock().unwrap_or_else(|e| e.into_inner());
        match queue.as_ref().map(|q| q.try_reserve()) {
            Some(Ok(slot)) => {
                slot.send(Queued::Event(event));
                Ok(())
            }
            Some(Err(_)) | None => Err(event),
        }
    }

    /// Waits until every audit event queued before this call (async decisions, `api.read`) is
    /// written. For tests and for callers that must read their own queued events.
    pub async fn sync_audit_queue(&self) {
        let sender = self.decisions().queue.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(q) = sender {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if q.send(Queued::Barrier(tx)).await.is_ok() {
                let _ = rx.await;
            }
        }
    }

    /// Stops taking async decision events and writes those queued (shutdown).
    pub async fn drain_decision_audit(&self) {
        let tx = self.decisions().queue.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(tx);
        if let Some(h) = self.decisions().flusher.lock().await.take() {
            let _ = h.await;
        }
    }

    fn request_context(&self, ctx: &AccessContext) -> wardkey_authz::RequestContext {
        wardkey_authz::RequestContext {
            now: self.clock().now(),
            source_ip: ctx.source_ip,
            assurance: ctx.assurance.unwrap_or(Assurance::Password),
            device_trust: ctx.device_trust,
        }
    }

    /// One decision. Decisions on PHI resource types are audit events (sync: durable before
    /// the answer; async: queued, and a full queue denies rather than lose the event).
    pub async fn evaluate(&self, by: &Authorized<Pdp>, req: &AccessRequest<'_>) -> Result<AccessDecision> {
        let ctx = self.request_context(&req.context);
        let decision = {
            let resource = wardkey_authz::ResourceRef {
                type_name: &req.resource_type,
                id: req.resource_id.as_deref(),
                properties: &req.resource_properties,
            };
            let Some(kind) = wardkey_authz::SubjectKind::parse(&req.subject_type) else {
                return Ok(AccessDecision {
                    decision: false,
                    revision: self.decision_revision(),
                    reasons: vec![wardkey_authz::Reason::UnknownSubject],
                    obligations: Vec::new(),
                    break_glass: false,
                    acr_values: None,
                });
            };
            let subject = wardkey_authz::SubjectRef { kind, id: &req.subject_id };
            self.decisions().index.evaluate(&wardkey_authz::Request {
                subject,
                action: &req.action,
                resource,
                context: ctx,
            })
        };
        let answer = AccessDecision {
            decision: decision.allow,
            revision: decision.revision,
            acr_values: decision.step_up.map(|a| a.acr()),
            reasons: decision.reasons,
            obligations: decision.obligations,
            break_glass: decision.break_glass,
        };
        let mode = {
            let modes = self.decisions().audit_modes.load();
            // No PHI types (decision audit off everywhere): no lookup, no lower-casing.
            if modes.is_empty() { None } else { modes.get(&req.resource_type.to_lowercase()).copied() }
        };
        if let Some(mode) = mode {
            let event = self.decision_event(by, req, &answer, ctx.now);
            match mode {
                DecisionAudit::Sync => {
                    self.store.append_audit(vec![event]).await?;
                }
                DecisionAudit::Async => {
                    let sent = self.queue_audit(event).is_ok();
                    if !sent {
                        // Fail closed: a decision we cannot record is a deny.
                        return Ok(AccessDecision {
                            decision: false,
                            revision: answer.revision,
                            reasons: vec![wardkey_authz::Reason::AuditUnavailable],
                            obligations: Vec::new(),
                            break_glass: false,
                            acr_values: None,
                        });
                    }
                }
            }
        } else if answer.break_glass {
            // Break-glass use is always on record, PHI or not.
            let event = self.decision_event(by, req, &answer, ctx.now);
            self.store.append_audit(vec![event]).await?;
        }
        Ok(answer)
    }

    fn decision_event(
        &self,
        by: &Authorized<Pdp>,
        req: &AccessRequest<'_>,
        answer: &AccessDecision,
        _now: DateTime<Utc>,
    ) -> AuditDraft {
        let caller = by.caller();
        let outcome = if answer.decision { Outcome::Success } else { Outcome::Denied };
        let mut e = AuditDraft::new(caller.actor.principal(), Action::AccessEvaluate, outcome);
        e.source_ip = caller.meta.source_ip.clone();
        e.request_id = caller.meta.request_id.clone();
        if answer.break_glass {
            e.reason = Some("break-glass access: review required".into());
        }
        e.details = json!({
            "subject": { "type": req.subject_type, "id": crate::auth::truncate(&req.subject_id, 256) },
            "action": crate::auth::truncate(&req.action, 128),
            "resource": { "type": crate::auth::truncate(&req.resource_type, 128), "id": req.resource_id.as_deref().map(|s| crate::auth::truncate(s, 256)) },
            "decision": answer.decision,
            "reasons": answer.reasons,
            "revision": answer.revision,
            "break_glass": answer.break_glass,
            "review_required": answer.break_glass,
        });
        e
    }
}

/// A page of search answers: the items and the token for the next page.
#[derive(Debug, Clone, Serialize)]
pub struct SearchPage<T> {
    pub revision: u64,
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// Which page of a search: the token a previous page returned, and a size.
#[derive(Debug, Clone, Copy, Default)]
pub struct SearchPaging<'a> {
    pub token: Option<&'a str>,
    pub limit: Option<usize>,
}

/// Largest page a search returns.
pub const MAX_SEARCH_PAGE: usize = 1000;

fn page_of(token: Option<&str>, limit: Option<usize>) -> Result<wardkey_authz::Page> {
    let limit = limit.unwrap_or(100).clamp(1, MAX_SEARCH_PAGE);
    match token {
        None | Some("") => Ok(wardkey_authz::Page::first(limit)),
        Some(t) => uuid::Uuid::parse_str(t)
            .map(|u| wardkey_authz::Page::after(u, limit))
            .map_err(|_| ServiceError::invalid("page.token", "not a page token this server issued")),
    }
}

/// Unknown subjects, types and actions find nothing (like a deny), rather than an error.
fn found_or_empty<T>(
    r: std::result::Result<wardkey_authz::Found<T>, wardkey_authz::AuthzError>,
    revision: u64,
) -> SearchPage<T> {
    match r {
        Ok(found) => {
            SearchPage { revision: found.revision, items: found.items, next: found.next.map(|u| u.to_string()) }
        }
        Err(_) => SearchPage { revision, items: Vec::new(), next: None },
    }
}

impl Services {
    /// Who may do `action` on the resource (AuthZEN subject search; "who has access").
    pub async fn search_subjects(
        &self,
        resource_type: &str,
        resource_id: Option<&str>,
        properties: &wardkey_authz::Properties,
        action: &str,
        ctx: &AccessContext,
        paging: SearchPaging<'_>,
    ) -> Result<SearchPage<wardkey_authz::SubjectAccess>> {
        let page = page_of(paging.token, paging.limit)?;
        let rctx = self.request_context(ctx);
        let resource = wardkey_authz::ResourceRef { type_name: resource_type, id: resource_id, properties };
        let found = self.decisions().index.subjects_with_access(&resource, action, &rctx, page);
        Ok(found_or_empty(found, self.decision_revision()))
    }

    /// "Who has access" for an auditor: [`Services::search_subjects`], recorded as a read
    /// (`api.read`). The AuthZEN search endpoints (PDP clients) call `search_subjects` itself
    /// and are not recorded, like decisions.
    // The arguments of the search it wraps, plus the proof of authority.
    #[allow(clippy::too_many_arguments)]
    pub async fn who_has_access(
        &self,
        by: &Authorized<AuditRead>,
        resource_type: &str,
        resource_id: Option<&str>,
        properties: &wardkey_authz::Properties,
        action: &str,
        ctx: &AccessContext,
        paging: SearchPaging<'_>,
    ) -> Result<SearchPage<wardkey_authz::SubjectAccess>> {
        let result = self.search_subjects(resource_type, resource_id, properties, action, ctx, paging).await;
        self.recorded(by.caller(), "who_has_access", None, result).await
    }

    /// "What can they reach" for an auditor: [`Services::search_resources`], recorded as a
    /// read of the subject (`api.read`, target `<subject_type>:<subject_id>`).
    // The arguments of the search it wraps, plus the proof of authority.
    #[allow(clippy::too_many_arguments)]
    pub async fn what_can_they_reach(
        &self,
        by: &Authorized<AuditRead>,
        subject_type: &str,
        subject_id: &str,
        resource_type: Option<&str>,
        action: Option<&str>,
        ctx: &AccessContext,
        paging: SearchPaging<'_>,
    ) -> Result<SearchPage<wardkey_authz::ResourceAccess>> {
        let result = self.search_resources(subject_type, subject_id, resource_type, action, ctx, paging).await;
        let target = Some(format!("{subject_type}:{subject_id}"));
        self.recorded(by.caller(), "what_can_they_reach", target, result).await
    }

    /// What the subject may reach (AuthZEN resource search; access reviews).
    pub async fn search_resources(
        &self,
        subject_type: &str,
        subject_id: &str,
        resource_type: Option<&str>,
        action: Option<&str>,
        ctx: &AccessContext,
        paging: SearchPaging<'_>,
    ) -> Result<SearchPage<wardkey_authz::ResourceAccess>> {
        let page = page_of(paging.token, paging.limit)?;
        let Some(kind) = wardkey_authz::SubjectKind::parse(subject_type) else {
            return Ok(SearchPage { revision: self.decision_revision(), items: Vec::new(), next: None });
        };
        let rctx = self.request_context(ctx);
        let subject = wardkey_authz::SubjectRef { kind, id: subject_id };
        let found = self.decisions().index.resources_for(&subject, resource_type, action, &rctx, page);
        Ok(found_or_empty(found, self.decision_revision()))
    }

    /// Which actions the subject may take on the resource (AuthZEN action search).
    pub async fn search_actions(
        &self,
        subject_type: &str,
        subject_id: &str,
        resource_type: &str,
        resource_id: Option<&str>,
        properties: &wardkey_authz::Properties,
        ctx: &AccessContext,
    ) -> Result<SearchPage<wardkey_authz::ActionAccess>> {
        let Some(kind) = wardkey_authz::SubjectKind::parse(subject_type) else {
            return Ok(SearchPage { revision: self.decision_revision(), items: Vec::new(), next: None });
        };
        let rctx = self.request_context(ctx);
        let subject = wardkey_authz::SubjectRef { kind, id: subject_id };
        let resource = wardkey_authz::ResourceRef { type_name: resource_type, id: resource_id, properties };
        let found = self.decisions().index.actions_for(&subject, &resource, &rctx);
        Ok(SearchPage { next: None, ..found_or_empty(found, self.decision_revision()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The prefix rule the follower used before the catalogue, kept here as the reference the
    /// exhaustive match must agree with.
    fn old_rule(action: &str) -> Follow {
        if action.starts_with("api_token.") {
            return Follow::ForgetToken;
        }
        let irrelevant = ["access.", "api.", "auth.", "session.", "factor.", "password.", "webauthn.", "break_glass."];
        if irrelevant.iter().any(|p| action.starts_with(p)) { Follow::Ignore } else { Follow::Reload }
    }

    #[test]
    fn follower_treats_every_catalogued_action_as_the_prefix_rule_did() {
        for a in Action::ALL {
            assert_eq!(follow(*a), old_rule(a.as_str()), "{a}");
        }
    }

    #[test]
    fn token_targets_are_read_only_from_api_token_targets() {
        let id = wardkey_domain::ApiTokenId::generate();
        let mut d = AuditDraft::new("anonymous", Action::ApiTokenRevoke, Outcome::Success);
        d.target = Some(id.target());
        let e = wardkey_audit::AuditEvent::new(0, Utc::now(), d.clone());
        assert_eq!(token_target(&e), Some(id));
        d.target = Some(wardkey_domain::UserId(id.0).target());
        let e = wardkey_audit::AuditEvent::new(0, Utc::now(), d);
        assert_eq!(token_target(&e), None);
    }
}
