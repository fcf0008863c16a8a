//! Who is calling, and the proof that they may.

use crate::tokens::parse_token;
use crate::{Result, ServiceError, Services, draft};
use sha2::{Digest, Sha256};
use std::marker::PhantomData;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use wardkey_audit::Action;
use wardkey_audit::{AuditDraft, Outcome};
use wardkey_domain::{Actor, Scope};

// Token management (issue, list, revoke, bootstrap, the cache) lives in `crate::tokens`; these
// keep the old paths working.
pub use crate::tokens::TOKEN_CACHE_TTL;
pub(crate) use crate::tokens::TokenCache;

/// Where a request came from, for the audit trail.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub source_ip: Option<String>,
    pub request_id: Option<String>,
    /// What the caller asked for, e.g. `"GET /api/v1/users/{id}"` (the HTTP method and route
    /// template, set by the server's extractor). The read methods record it in their
    /// `api.read` event, so the service audits every read whoever calls it; `None` for callers
    /// outside HTTP, whose events name the service method instead.
    pub operation: Option<String>,
}

/// An authenticated caller and what its credential allows.
#[derive(Debug, Clone)]
pub struct Caller {
    pub actor: Actor,
    pub scopes: Vec<Scope>,
    pub meta: RequestMeta,
    /// For a person signed in with a session: what the session proved and when.
    pub session: Option<crate::authn::SessionContext>,
}

impl Caller {
    pub fn has_scope(&self, needed: Scope) -> bool {
        self.scopes.iter().any(|s| s.satisfies(needed))
    }
}

/// A scope a service method requires, as a type, so the compiler checks that every
/// privileged call went through [`Services::authorize`].
pub trait ScopeRequirement {
    const SCOPE: Scope;
}
pub struct Admin;
impl ScopeRequirement for Admin {
    const SCOPE: Scope = Scope::Admin;
}
pub struct Pdp;
impl ScopeRequirement for Pdp {
    const SCOPE: Scope = Scope::Pdp;
}
pub struct AuditRead;
impl ScopeRequirement for AuditRead {
    const SCOPE: Scope = Scope::AuditRead;
}
/// SCIM connectors (`/scim/v2`): an identity provider's token reaches nothing else.
pub struct Scim;
impl ScopeRequirement for Scim {
    const SCOPE: Scope = Scope::Scim;
}

/// Proof that `caller` passed the check for scope `S`. Only this module constructs it.
pub struct Authorized<S: ScopeRequirement> {
    caller: Caller,
    _scope: PhantomData<S>,
}

impl<S: ScopeRequirement> Authorized<S> {
    pub fn caller(&self) -> &Caller {
        &self.caller
    }
}

impl Services {
    /// The local operator: someone with shell access to the host and the store. They hold
    /// every scope already (they could edit the database), so we record rather than check.
    pub fn operator(&self, os_user: &str) -> Authorized<Admin> {
        Authorized {
            caller: Caller {
                actor: Actor::Operator { os_user: os_user.to_owned() },
                scopes: vec![Scope::Admin],
                meta: RequestMeta::default(),
                session: None,
            },
            _scope: PhantomData,
        }
    }

    /// Checks that `caller` holds scope `S`. A refusal is an audit event.
    pub async fn authorize<S: ScopeRequirement>(&self, caller: &Caller, attempted: &str) -> Result<Authorized<S>> {
        if caller.session.as_ref().is_some_and(|s| s.must_change_password) {
            let mut event = draft(caller, Action::AuthDenied, None);
            event.outcome = Outcome::Denied;
            event.reason = Some("password change required".into());
            event.details = serde_json::json!({ "attempted": truncate(attempted, 256) });
            self.store.append_audit(vec![event]).await?;
            return Err(ServiceError::PasswordChangeRequired);
        }
        if caller.has_scope(S::SCOPE) {
            return Ok(Authorized { caller: caller.clone(), _scope: PhantomData });
        }
        let mut event = draft(caller, Action::AuthDenied, None);
        event.outcome = Outcome::Denied;
        event.reason = Some(format!("missing scope {}", S::SCOPE));
        event.details = serde_json::json!({ "attempted": truncate(attempted, 256), "needed_scope": S::SCOPE.as_str() });
        self.store.append_audit(vec![event]).await?;
        Err(ServiceError::Forbidden { needed: S::SCOPE })
    }

    /// [`Services::authorize`] for a caller the edge has no further use for: no copy of it on
    /// success (the decision hot path).
    pub async fn authorize_owned<S: ScopeRequirement>(&self, caller: Caller, attempted: &str) -> Result<Authorized<S>> {
        if caller.has_scope(S::SCOPE) && !caller.session.as_ref().is_some_and(|s| s.must_change_password) {
            return Ok(Authorized { caller, _scope: PhantomData });
        }
        self.authorize(&caller, attempted).await
    }

    /// As [`Services::authorize_owned`], naming the attempt by `caller.meta.operation` (so the
    /// extractor need not keep a second copy of it).
    pub async fn authorize_request<S: ScopeRequirement>(&self, caller: Caller) -> Result<Authorized<S>> {
        if caller.has_scope(S::SCOPE) && !caller.session.as_ref().is_some_and(|s| s.must_change_password) {
            return Ok(Authorized { caller, _scope: PhantomData });
        }
        self.authorize(&caller, caller.meta.operation.as_deref().unwrap_or_default()).await
    }

    /// Resolves a bearer token to a caller. Every failure looks the same to the client; the
    /// audit event keeps the reason.
    pub async fn authenticate(&self, bearer: &str, meta: RequestMeta) -> Result<Caller> {
        let now = self.clock().now();
        let failure = match parse_token(bearer) {
            None => "malformed token",
            Some((id, secret)) => {
                let found = match self.token_cache.get(id) {
                    Some(hit) => Some(hit),
                    None => {
                        let loaded = self.store.read().await?.get_api_token(id).await?.map(Arc::new);
                        if let Some(entry) = &loaded {
                            self.token_cache.put(Arc::clone(entry));
                        }
                        loaded
                    }
                };
                match found.as_deref() {
                    None => "unknown token",
                    Some((token, stored_hash)) => {
                        let presented: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
                        let matches: bool = presented[..].ct_eq(stored_hash.as_slice()).into();
                        if !matches {
                            "wrong secret"
                        } else if token.revoked_at.is_some() {
                            "revoked token"
                        } else if !token.is_usable_at(now) {
                            "expired token"
                        } else {
                            let caller = Caller {
                                actor: Actor::Token { token_id: token.id, name: token.name.clone() },
                                scopes: token.scopes.clone(),
                                meta,
                                session: None,
                            };
                            self.note_token_use(&caller, token, now).await?;
                            return Ok(caller);
                        }
                    }
                }
            }
        };
        let meta_for_limit = meta.clone();
        let mut event = AuditDraft::new(Actor::Anonymous.principal(), Action::AuthFailed, Outcome::Failure);
        event.reason = Some(failure.to_owned());
        event.source_ip = meta.source_ip;
        event.request_id = meta.request_id;
        if let Some((id, _)) = parse_token(bearer) {
            event.target = Some(id.target());
        }
        // Failed presentations spend the source's sign-in budget: a source guessing tokens
        // is slowed down like one guessing passwords.
        let allowed = self.source_allows(&meta_for_limit);
        self.store.append_audit(vec![event]).await?;
        if !allowed {
            return Err(ServiceError::RateLimited { retry_after_secs: 1 });
        }
        Err(ServiceError::Unauthenticated)
    }

    /// The tail of every read method: a successful read is recorded (`api.read`, see
    /// [`Services::record_read`]) before its result is handed back; a failed one is not.
    pub(crate) async fn recorded<T, E: From<ServiceError>>(
        &self,
        caller: &Caller,
        method: &str,
        target: Option<String>,
        result: std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let value = result?;
        self.record_read(caller, method, target).await?;
        Ok(value)
    }

    /// Records that `caller` read something (`api.read`), when configured to.
    ///
    /// Called by the service's read methods themselves (after the read succeeded), never by
    /// handlers: the invariant "every authorized read is audited" then holds for every caller.
    /// The event names `caller.meta.operation` (the route) when there is one, else `method`.
    pub(crate) async fn record_read(&self, caller: &Caller, method: &str, target: Option<String>) -> Result<()> {
        if !self.config().audit_reads {
            return Ok(());
        }
        let what = caller.meta.operation.as_deref().unwrap_or(method);
        // `api.read` targets whatever was read, including things that are not a `TargetKind`
        // (`audit_event:<index>`), so the rendering the read method gives is kept as it is.
        let mut event = draft(caller, Action::ApiRead, None);
        event.target = target;
        event.details = serde_json::json!({ "read": truncate(what, 256) });
        let event = if self.config().durable_reads {
            event
        } else {
            match self.queue_audit(event) {
                Ok(()) => return Ok(()),
                Err(event) => *event,
            }
        };
        self.store.append_audit(vec![event]).await?;
        Ok(())
    }
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}
