//! Who is calling, and the proof that they may.

use crate::{Result, ServiceError, Services, draft};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::marker::PhantomData;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use wardkey_audit::{AuditDraft, Outcome};
use wardkey_domain::{Actor, ApiToken, ApiTokenId, NewApiToken, Scope};
use wardkey_store::Committed;

/// Where a request came from, for the audit trail.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub source_ip: Option<String>,
    pub request_id: Option<String>,
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

const TOKEN_PREFIX: &str = "wkt_";
/// `last_used_at` is kept to this resolution (and `api_token.use` recorded at most this often).
const TOKEN_USE_RESOLUTION_SECS: i64 = 60;
const SECRET_BYTES: usize = 32;

fn secret_hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// `wkt_<token id, 32 hex>_<secret, base64url>`: the id lets us find the row without
/// comparing secrets across rows; the secret is compared in constant time.
fn format_token(id: ApiTokenId, secret: &str) -> String {
    format!("{TOKEN_PREFIX}{}_{secret}", id.0.simple())
}

fn parse_token(token: &str) -> Option<(ApiTokenId, &str)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    if id.len() != 32 || secret.is_empty() || secret.len() > 128 {
        return None;
    }
    let id = uuid::Uuid::try_parse(id).ok()?;
    Some((ApiTokenId(id), secret))
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
            let mut event = draft(caller, "auth.denied", None);
            event.outcome = Outcome::Denied;
            event.reason = Some("password change required".into());
            event.details = serde_json::json!({ "attempted": truncate(attempted, 256) });
            self.store.append_audit(vec![event]).await?;
            return Err(ServiceError::PasswordChangeRequired);
        }
        if caller.has_scope(S::SCOPE) {
            return Ok(Authorized { caller: caller.clone(), _scope: PhantomData });
        }
        let mut event = draft(caller, "auth.denied", None);
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
        let mut event = AuditDraft::new(Actor::Anonymous.principal(), "auth.failed", Outcome::Failure);
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

    /// Keeps `last_used_at` true to the minute for every token, whatever it is used for, with
    /// an `api_token.use` event; at most one write per token per minute.
    async fn note_token_use(
        &self,
        caller: &Caller,
        token: &ApiToken,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<()> {
        if token.last_used_at.is_some_and(|t| now - t < chrono::Duration::seconds(TOKEN_USE_RESOLUTION_SECS)) {
            return Ok(());
        }
        // Requests in flight with the same token all see the stale stamp until the first one
        // has written; only that one writes (one `api_token.use` per minute, not one per
        // concurrent request).
        if !self.token_cache.claim_use_note(token.id, now) {
            return Ok(());
        }
        let id = token.id;
        let event = draft(caller, "api_token.use", Some(id.target()));
        let written = self
            .store
            .write(move |tx| {
                Box::pin(async move {
                    let now = tx.now();
                    tx.touch_api_token(id, now).await?;
                    tx.audit(event);
                    Ok::<_, ServiceError>(())
                })
            })
            .await;
        if written.is_err() {
            // Not written: the next request tries again.
            self.token_cache.release_use_note(id);
        }
        written?;
        self.token_cache.forget(id);
        Ok(())
    }

    /// Records that `caller` read something (`api.read`), when configured to.
    pub async fn record_read(&self, caller: &Caller, what: &str, target: Option<String>) -> Result<()> {
        if !self.config().audit_reads {
            return Ok(());
        }
        let mut event = draft(caller, "api.read", target);
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

    /// Creates an API token and returns it with its secret, which is never shown again.
    pub async fn create_token(
        &self,
        by: &Authorized<Admin>,
        input: NewApiToken,
    ) -> Result<Committed<(ApiToken, String)>> {
        let now = self.clock().now();
        input.validate(now)?;
        crate::stepup::require_step_up_for_token(by.caller(), now, &input.scopes)?;
        let mut secret_bytes = [0u8; SECRET_BYTES];
        rand::fill(&mut secret_bytes);
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret_bytes);
        let mut scopes = input.scopes;
        scopes.sort();
        scopes.dedup();
        let caller = by.caller().clone();
        let token = ApiToken {
            id: ApiTokenId::generate(),
            name: input.name,
            scopes,
            created_by: caller.actor.principal(),
            created_at: wardkey_audit::truncate_to_micros(now),
            expires_at: input.expires_at.map(wardkey_audit::truncate_to_micros),
            revoked_at: None,
            last_used_at: None,
        };
        let plain = format_token(token.id, &secret);
        let hash = secret_hash(&secret);
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    tx.insert_api_token(&token, &hash).await?;
                    let mut event = draft(&caller, "api_token.create", Some(token.id.target()));
                    event.details = serde_json::json!({
                        "name": token.name,
                        "scopes": token.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                        "expires_at": token.expires_at,
                    });
                    tx.audit(event);
                    Ok::<_, ServiceError>((token, plain))
                })
            })
            .await
    }

    pub async fn list_tokens(&self, _by: &Authorized<Admin>) -> Result<Vec<ApiToken>> {
        Ok(self.store.read().await?.list_api_tokens().await?)
    }

    pub async fn revoke_token(&self, by: &Authorized<Admin>, id: ApiTokenId) -> Result<Committed<()>> {
        let caller = by.caller().clone();
        let done = self
            .store
            .write(move |tx| {
                Box::pin(async move {
                    let now = tx.now();
                    if !tx.revoke_api_token(id, now).await? {
                        return Err(ServiceError::NotFound { kind: "api_token", id: id.to_string() });
                    }
                    tx.audit(draft(&caller, "api_token.revoke", Some(id.target())));
                    Ok(())
                })
            })
            .await;
        // Whatever the outcome, the next presentation reads the token afresh.
        self.token_cache.forget(id);
        done
    }
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

const BOOTSTRAP_META: &str = "bootstrap_token_issued_at";

impl Services {
    /// On first start: issues the one-time bootstrap admin token and returns its secret.
    /// Later starts return `None`; the secret is never stored in clear and never shown again.
    pub async fn bootstrap(&self) -> Result<Option<String>> {
        if self.store.read().await?.get_meta(BOOTSTRAP_META).await?.is_some() {
            return Ok(None);
        }
        let system = Authorized::<Admin> {
            caller: Caller {
                actor: Actor::System { component: "bootstrap".into() },
                scopes: vec![Scope::Admin],
                meta: RequestMeta::default(),
                session: None,
            },
            _scope: PhantomData,
        };
        let mut secret_bytes = [0u8; SECRET_BYTES];
        rand::fill(&mut secret_bytes);
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret_bytes);
        let now = wardkey_audit::truncate_to_micros(self.clock().now());
        let token = ApiToken {
            id: ApiTokenId::generate(),
            name: "bootstrap-admin".into(),
            scopes: vec![Scope::Admin],
            created_by: system.caller.actor.principal(),
            created_at: now,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        };
        let plain = format_token(token.id, &secret);
        let hash = secret_hash(&secret);
        let caller = system.caller.clone();
        let issued = self
            .store
            .write(move |tx| {
                Box::pin(async move {
                    // Checked again inside the write: two nodes starting at once issue one token.
                    if tx.get_meta(BOOTSTRAP_META).await?.is_some() {
                        return Ok::<_, ServiceError>(false);
                    }
                    let now = tx.now();
                    tx.set_meta(BOOTSTRAP_META, &now.to_rfc3339()).await?;
                    tx.insert_api_token(&token, &hash).await?;
                    let mut e = draft(&caller, "api_token.create", Some(token.id.target()));
                    e.reason = Some("bootstrap admin token issued on first start".into());
                    e.details = serde_json::json!({ "name": token.name, "scopes": ["admin"] });
                    tx.audit(e);
                    Ok(true)
                })
            })
            .await?;
        Ok(issued.value.then_some(plain))
    }
}

/// API tokens recently presented, so that a PEP asking thousands of questions a second does not
/// read its token from the database for each one. An entry is dropped when this process
/// changes the token (revocation, last-use stamp), when the decision point's catch-up sees
/// another node change it (PostgreSQL), and in any case after [`TOKEN_CACHE_TTL`], which bounds
/// how long a change made behind the server's back (another process on the same SQLite file)
/// can go unseen. The secret's hash is kept, never the secret.
pub(crate) struct TokenCache {
    entries: std::sync::RwLock<std::collections::HashMap<ApiTokenId, CachedToken>>,
    /// When this process last set out to stamp each token's use (see `note_token_use`).
    use_notes: std::sync::Mutex<std::collections::HashMap<ApiTokenId, chrono::DateTime<chrono::Utc>>>,
}

/// A token with its secret's hash, and when it was read.
type CachedToken = (Arc<(ApiToken, Vec<u8>)>, std::time::Instant);

/// Longest a cached token is trusted without reading it again.
pub const TOKEN_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(1);
const TOKEN_CACHE_MAX: usize = 10_000;

impl TokenCache {
    pub(crate) fn new() -> TokenCache {
        TokenCache {
            entries: std::sync::RwLock::new(std::collections::HashMap::new()),
            use_notes: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// True for the one caller that should stamp `id`'s use now: no other caller of this
    /// process set out to within the last [`TOKEN_USE_RESOLUTION_SECS`].
    fn claim_use_note(&self, id: ApiTokenId, now: chrono::DateTime<chrono::Utc>) -> bool {
        let mut notes = self.use_notes.lock().unwrap_or_else(|e| e.into_inner());
        if notes.get(&id).is_some_and(|t| now - *t < chrono::Duration::seconds(TOKEN_USE_RESOLUTION_SECS)) {
            return false;
        }
        if notes.len() >= TOKEN_CACHE_MAX {
            // Bounded whatever callers present; forgetting costs at most one extra stamp.
            notes.clear();
        }
        notes.insert(id, now);
        true
    }

    fn release_use_note(&self, id: ApiTokenId) {
        self.use_notes.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }

    /// A shared handle, not a copy: every request with a token reads it here.
    fn get(&self, id: ApiTokenId) -> Option<Arc<(ApiToken, Vec<u8>)>> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries.get(&id).filter(|(_, at)| at.elapsed() < TOKEN_CACHE_TTL).map(|(entry, _)| Arc::clone(entry))
    }

    fn put(&self, entry: Arc<(ApiToken, Vec<u8>)>) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= TOKEN_CACHE_MAX {
            // Bounded whatever callers present; a rebuild costs one read per live token.
            entries.clear();
        }
        entries.insert(entry.0.id, (entry, std::time::Instant::now()));
    }

    pub(crate) fn forget(&self, id: ApiTokenId) {
        self.entries.write().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip() {
        let id = ApiTokenId::generate();
        let t = format_token(id, "c2VjcmV0");
        let (pid, secret) = parse_token(&t).expect("parses");
        assert_eq!(pid, id);
        assert_eq!(secret, "c2VjcmV0");
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in [
            "",
            "wkt_",
            "wkt_abc_def",
            "Bearer x",
            "wkt_0123456789abcdef0123456789abcdef_",
            "xyz_0123456789abcdef0123456789abcdef_s",
        ] {
            assert!(parse_token(bad).is_none(), "{bad}");
        }
    }
}
