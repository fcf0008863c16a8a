//! Wardkey's services: every operation an API, the CLI or a background job can perform.
//!
//! A service method takes typed input and an [`Authorized`] handle that can only be obtained
//! by passing the scope check (or, for the local operator, by having shell access to the
//! store). It validates with the domain crate, then performs its change and its audit
//! event(s) in one store write job, so one commits only with the other.

pub mod access;
pub mod audit;
pub mod auth;
pub mod authn;
pub mod decisions;
pub mod directory;
pub mod error;
pub mod grants;
pub mod hr;
pub mod jml;
pub mod lifecycle;
pub mod policy;
pub mod reconcile;
pub mod scim;
pub mod stepup;
pub mod tokens;

pub use auth::{Admin, AuditRead, Authorized, Caller, Pdp, RequestMeta, ScopeRequirement};
pub(crate) use authn::AuthnRuntime;
pub use authn::{AuthnSettings, FactorConfirmed, Me, NextStep, SessionCaller, SessionContext, SignIn, TotpEnrolment};
pub use error::{Result, ServiceError};
pub use wardkey_store::Committed;

use std::sync::Arc;
use wardkey_audit::AuditDraft;
use wardkey_domain::Clock;
use wardkey_store::Store;

/// Limits that keep every list bounded.
pub const MAX_PAGE: u32 = 500;
pub const DEFAULT_PAGE: u32 = 100;

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Record an `api.read` audit event for every authenticated read of the directory or
    /// the audit log (HIPAA: access to access-control data is itself accountable).
    pub audit_reads: bool,
    /// Answer a read only once its `api.read` event is durable. Off by default: the event is
    /// queued and written by the group-commit flusher within 100 ms (drained at shutdown; a
    /// full queue falls back to a durable write, so no event is ever dropped). A crash can lose
    /// the read events of its last 100 ms; in exchange a read costs no disk flush of its own,
    /// and a busy server's flush latency does not reach it.
    pub durable_reads: bool,
    /// API token lifetimes (`[tokens]` in the configuration file).
    pub tokens: tokens::TokenSettings,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig { audit_reads: true, durable_reads: false, tokens: tokens::TokenSettings::default() }
    }
}

/// The store as the services write to it. Its [`ServiceStore::write`] returns only once the
/// decision index has applied the write, so whatever a service changes is what every decision
/// made after the service returns sees, whichever caller made the change (an HTTP handler of
/// any kind, the local CLI, SCIM, HR, a background job). Everything else is the [`Store`]'s.
#[derive(Clone)]
pub(crate) struct ServiceStore {
    store: Store,
    decisions: Arc<decisions::DecisionPoint>,
    token_cache: Arc<auth::TokenCache>,
}

impl std::ops::Deref for ServiceStore {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.store
    }
}

impl ServiceStore {
    /// [`Store::write`], then waits for the decision index to apply the committed revision
    /// (when the decision point runs in this process). A revocation is therefore in force for
    /// every decision once its service call returns; the `X-Wardkey-Revision` header the HTTP
    /// edge adds is information for PEPs on other nodes, not what makes this so.
    pub(crate) async fn write<T, E, F>(&self, job: F) -> std::result::Result<Committed<T>, E>
    where
        T: Send + 'static,
        E: From<wardkey_store::StoreError> + Send + 'static,
        F: for<'t> FnOnce(&'t mut wardkey_store::WriteTx) -> futures::future::BoxFuture<'t, std::result::Result<T, E>>
            + Send
            + 'static,
    {
        let committed = self.store.write(job).await?;
        self.follower().settle(committed.revision).await.map_err(E::from)?;
        Ok(committed)
    }

    pub(crate) fn follower(&self) -> decisions::Follower<'_> {
        decisions::Follower { store: &self.store, decisions: &self.decisions, token_cache: &self.token_cache }
    }
}

#[derive(Clone)]
pub struct Services {
    store: ServiceStore,
    config: Arc<ServiceConfig>,
    authn: Arc<AuthnRuntime>,
    decisions: Arc<decisions::DecisionPoint>,
    token_cache: Arc<auth::TokenCache>,
}

impl Services {
    /// Services with default authentication settings and a throw-away secrets key (TOTP
    /// seeds sealed with it are unreadable after a restart): for tests and tools that do not
    /// sign people in. The server uses [`Services::with_authn`].
    pub fn new(store: Store, config: ServiceConfig) -> Self {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        let authn = AuthnRuntime::new(AuthnSettings::default(), wardkey_authn::secretbox::SecretKey::from_bytes(key));
        match authn {
            Ok(a) => Services::assemble(store, config, a),
            // The defaults are valid by construction (tested); nothing to recover from here.
            Err(e) => unreachable_settings(e),
        }
    }

    /// Services with explicit authentication settings and the key that seals TOTP secrets.
    pub fn with_authn(
        store: Store,
        config: ServiceConfig,
        settings: AuthnSettings,
        secrets: wardkey_authn::secretbox::SecretKey,
    ) -> Result<Self> {
        let authn = AuthnRuntime::new(settings, secrets)?;
        Ok(Services::assemble(store, config, authn))
    }

    fn assemble(store: Store, config: ServiceConfig, authn: AuthnRuntime) -> Self {
        let decisions = Arc::new(decisions::DecisionPoint::new());
        let token_cache = Arc::new(auth::TokenCache::new());
        Services {
            store: ServiceStore { store, decisions: Arc::clone(&decisions), token_cache: Arc::clone(&token_cache) },
            config: Arc::new(config),
            authn: Arc::new(authn),
            decisions,
            token_cache,
        }
    }

    /// The store itself, bypassing every service invariant: no authorization, no validation,
    /// no audit event, no `api.read` record. It exists for the few who must stand outside the
    /// services: the server's own machinery (the audit witness and the checkpoint loop hold a
    /// `Store` handle), the benchmarks, and tests that inspect what was written. Handlers and
    /// features must not use it: give the service a named method instead. The long name is
    /// meant to stand out in review.
    pub fn store_unchecked_for_operator_and_tests(&self) -> &Store {
        &self.store
    }

    /// Closes the store: waits for queued writes, then releases it (shutdown, CLI exit).
    pub async fn close(&self) {
        self.store.close().await;
    }

    /// Signs a checkpoint of the audit log now, if it grew since the last one (shutdown).
    pub async fn checkpoint_now(&self) -> Result<Option<wardkey_store::StoredCheckpoint>> {
        Ok(self.store.checkpoint_now().await?)
    }

    /// The audit log's size, for the unauthenticated readiness probe and `/metrics`: it says
    /// whether the store answers and how many events there are, nothing about any of them.
    pub async fn audit_tree_size_for_probes(&self) -> Result<u64> {
        Ok(self.store.read().await?.audit_tree_size().await?)
    }

    /// Counters of the store's writer (benchmarks, diagnostics).
    pub fn write_stats(&self) -> wardkey_store::WriteStats {
        self.store.write_stats()
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        self.store.clock()
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }
}

#[allow(clippy::panic)]
#[cold]
fn unreachable_settings(e: ServiceError) -> ! {
    panic!("default authentication settings are invalid: {e}")
}

/// An audit draft attributed to `caller`, with the request's source address and id.
pub(crate) fn draft(
    caller: &Caller,
    action: wardkey_audit::Action,
    target: Option<wardkey_audit::Target>,
) -> AuditDraft {
    let mut d = AuditDraft::new(caller.actor.principal(), action, wardkey_audit::Outcome::Success);
    d.target = target.map(String::from);
    d.source_ip = caller.meta.source_ip.clone();
    d.request_id = caller.meta.request_id.clone();
    d
}

/// [`draft`] for a catalogued action and a typed target (`user.id`, a `Member`, a `Subject`…).
pub(crate) fn event(
    caller: &Caller,
    action: wardkey_audit::Action,
    target: impl Into<wardkey_audit::Target>,
) -> AuditDraft {
    draft(caller, action, Some(target.into()))
}

/// Filters arrive as query strings; like every other input they are bounded.
pub(crate) fn check_filters(filters: &[(&str, &Option<String>)]) -> Result<()> {
    let mut errors = Vec::new();
    for (field, value) in filters {
        if let Some(v) = value {
            wardkey_domain::validate::text(&mut errors, field, v, wardkey_domain::validate::MAX_SHORT);
        }
    }
    Ok(wardkey_domain::validate::finish(errors)?)
}

/// A page request from the API: cursor and a limit clamped to [`MAX_PAGE`].
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub after: Option<String>,
    pub limit: Option<u32>,
}

impl PageRequest {
    pub(crate) fn to_store(&self) -> wardkey_store::Page {
        wardkey_store::Page { after: self.after.clone(), limit: self.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE) }
    }
}

/// One page of results and the cursor for the next, if there may be more.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Paged<T> {
    pub(crate) fn new(items: Vec<T>, limit: u32, cursor_of: impl Fn(&T) -> String) -> Self {
        let next_cursor = if items.len() as u32 >= limit { items.last().map(cursor_of) } else { None };
        Paged { items, next_cursor }
    }
}
