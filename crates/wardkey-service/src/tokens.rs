//! API token management: issuing (with an owner and a bounded lifetime), listing, revoking,
//! the first-start bootstrap token, revocation with the owner, and the cache of recently
//! presented tokens. Checking a presented token is `crate::auth::Services::authenticate`.

use crate::event;
use crate::{Admin, Authorized, Caller, RequestMeta, Result, ServiceError, Services};
use base64::Engine as _;
use chrono::Duration;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use wardkey_audit::Action;
use wardkey_domain::{Actor, ApiToken, ApiTokenId, NewApiToken, Scope, ServiceAccountStatus, TokenOwner, UserStatus};
use wardkey_store::{Committed, WriteTx};

/// How long API tokens live (`[tokens]` in the configuration file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenSettings {
    /// Lifetime of a token created without `expires_at`.
    pub default_lifetime: Duration,
    /// Longest lifetime a token may be created with: a credential that never expires outlives
    /// the reason it was issued.
    pub max_lifetime: Duration,
}

pub const DEFAULT_TOKEN_LIFETIME_DAYS: i64 = 90;
pub const MAX_TOKEN_LIFETIME_DAYS: i64 = 365;
/// Longest lifetime an operator may configure (`max_lifetime_days`).
pub const MAX_CONFIGURABLE_LIFETIME_DAYS: i64 = 3650;
/// The bootstrap admin token is for the first minutes of an installation: it lives this long
/// at most, and ends earlier when a named admin token exists.
pub const BOOTSTRAP_TOKEN_LIFETIME: Duration = Duration::hours(24);

impl Default for TokenSettings {
    fn default() -> Self {
        TokenSettings {
            default_lifetime: Duration::days(DEFAULT_TOKEN_LIFETIME_DAYS),
            max_lifetime: Duration::days(MAX_TOKEN_LIFETIME_DAYS),
        }
    }
}

impl TokenSettings {
    /// Both lifetimes positive, the default within the maximum, the maximum within ten years.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.default_lifetime <= Duration::zero() || self.max_lifetime <= Duration::zero() {
            return Err("token lifetimes must be positive".into());
        }
        if self.default_lifetime > self.max_lifetime {
            return Err("default_lifetime_days must not exceed max_lifetime_days".into());
        }
        if self.max_lifetime > Duration::days(MAX_CONFIGURABLE_LIFETIME_DAYS) {
            return Err(format!("max_lifetime_days must be at most {MAX_CONFIGURABLE_LIFETIME_DAYS}"));
        }
        Ok(())
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

pub(crate) fn parse_token(token: &str) -> Option<(ApiTokenId, &str)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    if id.len() != 32 || secret.is_empty() || secret.len() > 128 {
        return None;
    }
    let id = uuid::Uuid::try_parse(id).ok()?;
    Some((ApiTokenId(id), secret))
}

fn new_secret() -> String {
    let mut secret_bytes = [0u8; SECRET_BYTES];
    rand::fill(&mut secret_bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret_bytes)
}

/// Refuses an owner that does not exist or is not active (field `owner`). Wardkey's own owners
/// are not for callers: only the local operator may mint a token owned by `system:operator`.
async fn check_owner(tx: &mut WriteTx, caller: &Caller, owner: &TokenOwner) -> Result<()> {
    match owner {
        TokenOwner::User(id) => {
            let user = tx.get_user(*id).await?.ok_or_else(|| ServiceError::invalid("owner", "no such user"))?;
            if user.status != UserStatus::Active {
                return Err(ServiceError::invalid(
                    "owner",
                    format!("the user is {}; only an active person can own a token", user.status.as_str()),
                ));
            }
        }
        TokenOwner::ServiceAccount(id) => {
            let sa = tx
                .get_service_account(*id)
                .await?
                .ok_or_else(|| ServiceError::invalid("owner", "no such service account"))?;
            if sa.status != ServiceAccountStatus::Active {
                return Err(ServiceError::invalid("owner", "the service account is disabled"));
            }
        }
        TokenOwner::System(component) => {
            let operator = matches!(caller.actor, Actor::Operator { .. });
            if !(operator && component == TokenOwner::OPERATOR) {
                return Err(ServiceError::invalid("owner", "a token must be owned by a person or a service account"));
            }
        }
    }
    Ok(())
}

/// Revokes every live token `owner` owns, one `api_token.revoke` event each with `why` as the
/// reason, inside the caller's write job: the leaver path and service-account disabling call it
/// so that the owner's end and their tokens' end commit together. Returns the revoked ids.
pub(crate) async fn revoke_owner_tokens_in_tx(
    tx: &mut WriteTx,
    caller: &Caller,
    owner: &TokenOwner,
    why: &str,
) -> Result<Vec<ApiTokenId>> {
    let now = tx.now();
    let revoked = tx.revoke_api_tokens_owned_by(owner, now).await?;
    for t in &revoked {
        let mut e = event(caller, Action::ApiTokenRevoke, *t);
        e.reason = Some(why.to_owned());
        e.details = json!({ "owner": owner.principal() });
        tx.audit(e);
    }
    Ok(revoked)
}

impl Services {
    /// Keeps `last_used_at` true to the minute for every token, whatever it is used for, with
    /// an `api_token.use` event; at most one write per token per minute.
    pub(crate) async fn note_token_use(
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
        let event = event(caller, Action::ApiTokenUse, id);
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

    /// Creates an API token for `input.owner` and returns it with its secret, which is never
    /// shown again. Without `expires_at` it lives the configured default lifetime; with one, at
    /// most the maximum. The first admin-scoped token with a named owner ends the bootstrap
    /// token, in the same transaction.
    pub async fn create_token(
        &self,
        by: &Authorized<Admin>,
        input: NewApiToken,
    ) -> Result<Committed<(ApiToken, String)>> {
        let now = self.clock().now();
        let lifetimes = self.config().tokens;
        input.validate(now, now + lifetimes.max_lifetime)?;
        crate::stepup::require_step_up_for_token(by.caller(), now, &input.scopes)?;
        let secret = new_secret();
        let mut scopes = input.scopes;
        scopes.sort();
        scopes.dedup();
        let caller = by.caller().clone();
        let token = ApiToken {
            id: ApiTokenId::generate(),
            name: input.name,
            scopes,
            owner: input.owner,
            created_by: caller.actor.principal(),
            created_at: wardkey_audit::truncate_to_micros(now),
            expires_at: Some(wardkey_audit::truncate_to_micros(
                input.expires_at.unwrap_or(now + lifetimes.default_lifetime),
            )),
            revoked_at: None,
            last_used_at: None,
        };
        let plain = format_token(token.id, &secret);
        let hash = secret_hash(&secret);
        let done = self
            .store
            .write(move |tx| {
                Box::pin(async move {
                    check_owner(tx, &caller, &token.owner).await?;
                    tx.insert_api_token(&token, &hash).await?;
                    let mut event = event(&caller, Action::ApiTokenCreate, token.id);
                    event.details = json!({
                        "name": token.name,
                        "scopes": token.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                        "owner": token.owner.principal(),
                        "expires_at": token.expires_at,
                    });
                    tx.audit(event);
                    // Only a token a person or service account owns is "named"; an operator's is not.
                    let named = !matches!(token.owner, TokenOwner::System(_));
                    let ended = if named && token.has_scope(Scope::Admin) {
                        let bootstrap = TokenOwner::System(TokenOwner::BOOTSTRAP.into());
                        revoke_owner_tokens_in_tx(tx, &caller, &bootstrap, "a named admin token exists").await?
                    } else {
                        Vec::new()
                    };
                    Ok::<_, ServiceError>(((token, plain), ended))
                })
            })
            .await?;
        for id in &done.value.1 {
            self.token_cache.forget(*id);
        }
        Ok(done.map(|(created, _)| created))
    }

    pub async fn list_tokens(&self, by: &Authorized<Admin>) -> Result<Vec<ApiToken>> {
        let target = None;
        let result: Result<Vec<ApiToken>> = async { Ok(self.store.read().await?.list_api_tokens().await?) }.await;
        self.recorded(by.caller(), "list_tokens", target, result).await
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
                    tx.audit(event(&caller, Action::ApiTokenRevoke, id));
                    Ok(())
                })
            })
            .await;
        // Whatever the outcome, the next presentation reads the token afresh.
        self.token_cache.forget(id);
        done
    }
}

const BOOTSTRAP_META: &str = "bootstrap_token_issued_at";

impl Services {
    /// On first start: issues the one-time bootstrap admin token and returns its secret. It
    /// expires [`BOOTSTRAP_TOKEN_LIFETIME`] after issue, or earlier when a named admin token
    /// exists. Later starts return `None` (and end a bootstrap token that a named admin token
    /// has made redundant, e.g. one carried over from before tokens had owners); the secret is
    /// never stored in clear and never shown again.
    pub async fn bootstrap(&self) -> Result<Option<String>> {
        let system = Caller {
            actor: Actor::System { component: TokenOwner::BOOTSTRAP.into() },
            scopes: vec![Scope::Admin],
            meta: RequestMeta::default(),
            session: None,
        };
        if self.store.read().await?.get_meta(BOOTSTRAP_META).await?.is_some() {
            self.end_redundant_bootstrap_token(&system).await?;
            return Ok(None);
        }
        let secret = new_secret();
        let now = wardkey_audit::truncate_to_micros(self.clock().now());
        let token = ApiToken {
            id: ApiTokenId::generate(),
            name: "bootstrap-admin".into(),
            scopes: vec![Scope::Admin],
            owner: TokenOwner::System(TokenOwner::BOOTSTRAP.into()),
            created_by: system.actor.principal(),
            created_at: now,
            expires_at: Some(now + BOOTSTRAP_TOKEN_LIFETIME),
            revoked_at: None,
            last_used_at: None,
        };
        let plain = format_token(token.id, &secret);
        let hash = secret_hash(&secret);
        let caller = system.clone();
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
                    let mut e = event(&caller, Action::ApiTokenCreate, token.id);
                    e.reason = Some("bootstrap admin token issued on first start".into());
                    e.details = json!({
                        "name": token.name,
                        "scopes": ["admin"],
                        "owner": token.owner.principal(),
                        "expires_at": token.expires_at,
                    });
                    tx.audit(e);
                    Ok(true)
                })
            })
            .await?;
        Ok(issued.value.then_some(plain))
    }

    /// Revokes a live bootstrap token once a named admin token exists (created by anyone, by
    /// any path, including before an upgrade). Writes nothing when there is nothing to end.
    async fn end_redundant_bootstrap_token(&self, system: &Caller) -> Result<()> {
        let bootstrap = TokenOwner::System(TokenOwner::BOOTSTRAP.into());
        let now = self.clock().now();
        let mut r = self.store.read().await?;
        let live = r.list_api_tokens().await?.into_iter().any(|t| t.owner == bootstrap && t.is_usable_at(now));
        if !live || !r.named_admin_token_exists(now).await? {
            return Ok(());
        }
        drop(r);
        let caller = system.clone();
        let ended = self
            .store
            .write(move |tx| {
                Box::pin(async move {
                    let ended =
                        revoke_owner_tokens_in_tx(tx, &caller, &bootstrap, "a named admin token exists").await?;
                    if ended.is_empty() {
                        // Another node ended it first; a write job must record something, so
                        // leave without writing.
                        return Err(ServiceError::Conflict {
                            kind: "bootstrap_token",
                            message: "already ended".into(),
                        });
                    }
                    Ok(ended)
                })
            })
            .await;
        let ended = match ended {
            Ok(c) => c.value,
            Err(ServiceError::Conflict { kind: "bootstrap_token", .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        for id in ended {
            self.token_cache.forget(id);
        }
        Ok(())
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
    pub(crate) fn get(&self, id: ApiTokenId) -> Option<Arc<(ApiToken, Vec<u8>)>> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries.get(&id).filter(|(_, at)| at.elapsed() < TOKEN_CACHE_TTL).map(|(entry, _)| Arc::clone(entry))
    }

    pub(crate) fn put(&self, entry: Arc<(ApiToken, Vec<u8>)>) {
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
