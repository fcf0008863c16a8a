//! People signing in: passwords, second factors, enrolment, step-up, sessions, lockout.
//!
//! Every step is one store write with its audit event(s). Sign-in failures are answered the
//! same way whatever went wrong (unknown user, wrong password, locked, not active) and cost
//! the same Argon2 work; the audit event keeps the real reason. A session's cookie secret is
//! never stored: only its hash, which rotates at every completed step (sign-in, step-up).

use crate::auth::truncate;
use crate::auth::{Admin, Authorized, Caller, RequestMeta};
use crate::{PageRequest, Paged, Result, ServiceError, Services, draft};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Mutex;
use wardkey_audit::{AuditDraft, Outcome};
use wardkey_authn::hash::{HashParams, PasswordHasher};
use wardkey_authn::password::{PasswordContext, PasswordPolicy};
use wardkey_authn::secretbox::SecretKey;
use wardkey_authn::session::{RolePolicyOverride, SessionId as SessionToken, SessionPolicy};
use wardkey_authn::throttle::{AccountFailures, LockoutPolicy, SourceRateLimiter};
use wardkey_authn::webauthn::{PasskeyConfig, Passkeys};
use wardkey_domain::{
    Actor, Factor, FactorId, FactorKind, LoginFailures, Member, PasswordInfo, Role, RoleId, Scope, Session, SessionId,
    SessionStage, Subject, User, UserId, UserStatus,
};
use wardkey_store::{Committed, Conn, SessionAdvance, SessionQuery, SessionWithPending, WriteTx};

/// Longest username accepted at sign-in (longer cannot exist).
const MAX_USERNAME_BYTES: usize = 256;
/// Ceremony state older than this is refused (a WebAuthn challenge is single-use and short-lived).
const CEREMONY_TTL_SECS: i64 = 300;
/// Failed second factors one session may make before it is ended and sign-in must start
/// again with the password (each failure also counts toward the account lock).
pub const MAX_SECOND_FACTOR_ATTEMPTS_PER_SESSION: u32 = 5;
/// Purpose of the keyed hash that stands for an unknown username in the audit log.
const UNKNOWN_USERNAME_HASH: &str = "audit: unknown sign-in username";
/// A TOTP enrolment not confirmed within this time is discarded when the user starts another.
const TOTP_NAME_DEFAULT: &str = "Authenticator app";

/// How authentication behaves. Defaults follow NIST SP 800-63B-4 and HIPAA guidance.
#[derive(Debug, Clone)]
pub struct AuthnSettings {
    pub password_policy: PasswordPolicy,
    pub hash_params: HashParams,
    /// Argon2 jobs at once, each on a hashing thread of its own (the rest wait; other requests
    /// keep their threads). Default: one fewer than the cores (at least 1).
    pub hash_concurrency: usize,
    /// CPU priority of the hashing threads (default: nice 19, so sign-ins never starve requests).
    pub hash_priority: wardkey_authn::hash::HashPriority,
    pub session_policy: SessionPolicy,
    pub lockout: LockoutPolicy,
    /// Every person must have a second factor (enrolment is forced at first sign-in).
    pub mfa_required: bool,
    /// Shown in authenticator apps and checked as a context word in passwords.
    pub organisation: String,
    /// Sign-in attempts per source address: burst and refill per second.
    pub source_burst: u32,
    pub source_refill_per_sec: f64,
    pub passkeys: PasskeyConfig,
    /// Longest break-glass grant a person may declare (minutes).
    pub break_glass_max_minutes: u32,
}

impl Default for AuthnSettings {
    fn default() -> Self {
        AuthnSettings {
            password_policy: PasswordPolicy::default(),
            hash_params: HashParams::default(),
            // One core is left to everything else: with every core hashing, a storm of sign-ins
            // delays other requests by a scheduler tick or more (measured on 2 vCPUs: /healthz
            // p99 2.5x idle at nice 19, 15x at normal priority; 1.7x with a core left free).
            hash_concurrency: std::thread::available_parallelism()
                .map(|n| n.get().saturating_sub(1).max(1))
                .unwrap_or(1),
            hash_priority: wardkey_authn::hash::HashPriority::default(),
            session_policy: SessionPolicy::default(),
            lockout: LockoutPolicy::default(),
            mfa_required: true,
            organisation: "Wardkey".into(),
            source_burst: 20,
            source_refill_per_sec: 1.0,
            passkeys: PasskeyConfig {
                rp_id: "localhost".into(),
                rp_origin: "http://localhost:8080".into(),
                rp_name: "Wardkey".into(),
            },
            break_glass_max_minutes: 240,
        }
    }
}

pub(crate) struct AuthnRuntime {
    pub(crate) settings: AuthnSettings,
    hasher: PasswordHasher,
    secrets: SecretKey,
    passkeys: Passkeys,
    limiter: Mutex<SourceRateLimiter>,
}

impl AuthnRuntime {
    pub(crate) fn new(settings: AuthnSettings, secrets: SecretKey) -> Result<AuthnRuntime> {
        let bad = |what: &str, e: String| ServiceError::Internal(format!("authentication settings: {what}: {e}"));
        settings.password_policy.validate().map_err(|e| bad("password policy", e.to_string()))?;
        settings.session_policy.validate().map_err(|e| bad("session policy", e.to_string()))?;
        settings.lockout.validate().map_err(|e| bad("lockout policy", e.to_string()))?;
        let hasher = PasswordHasher::with_priority(
            settings.hash_params,
            settings.hash_concurrency.max(1),
            settings.hash_priority,
        )
        .map_err(|e| bad("password hashing", e.to_string()))?;
        let passkeys = Passkeys::new(&settings.passkeys).map_err(|e| bad("passkeys", e.to_string()))?;
        let limiter = SourceRateLimiter::new(settings.source_burst, settings.source_refill_per_sec, 100_000)
            .map_err(|e| bad("source rate limit", e.to_string()))?;
        Ok(AuthnRuntime { settings, hasher, secrets, passkeys, limiter: Mutex::new(limiter) })
    }
}

/// What a session proved and when, carried with a caller authenticated by a session cookie.
#[derive(Debug, Clone)]
pub struct SessionContext {
    pub id: SessionId,
    pub user_id: UserId,
    pub stage: SessionStage,
    pub mfa_at: Option<DateTime<Utc>>,
    pub phishing_resistant_at: Option<DateTime<Utc>>,
    pub must_change_password: bool,
    pub step_up_window: Duration,
}

impl SessionContext {
    /// Whether a second factor was proved in this session less than the step-up window ago.
    pub fn fresh_mfa(&self, now: DateTime<Utc>) -> bool {
        self.mfa_at.is_some_and(|t| t <= now && now - t < self.step_up_window)
    }
}

/// What the client must do next after a sign-in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NextStep {
    /// Prove a second factor (`POST /api/v1/auth/totp`, `/recovery`, `/webauthn/...`).
    SecondFactor,
    /// Enrol a second factor first (`POST /api/v1/me/factors/totp` or `/webauthn/...`).
    Enrol,
    /// Signed in.
    Done,
}

/// The answer to a sign-in step: the new cookie secret (the old one no longer works).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SignIn {
    #[serde(skip)]
    pub token: String,
    pub session: Session,
    pub next: NextStep,
    /// Second factors the user can prove (`totp`, `webauthn`, `recovery_code`).
    pub factors: Vec<String>,
    /// The password was marked compromised: change it before anything else.
    pub password_change_required: bool,
}

/// A new TOTP factor to confirm with its first code.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TotpEnrolment {
    pub factor_id: FactorId,
    /// Base32 secret for manual entry.
    pub secret: String,
    pub otpauth_uri: String,
    /// The same URI as a QR code (SVG document).
    pub qr_svg: String,
}

/// The result of confirming a first factor: the recovery codes, shown once.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FactorConfirmed {
    pub factor: Factor,
    /// Present when new recovery codes were issued (first factor); never shown again.
    pub recovery_codes: Option<Vec<String>>,
    /// Present when the step completed sign-in (enrolment at first sign-in).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sign_in: Option<SignIn>,
}

/// A person's own view of their account and this session.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Me {
    pub user: User,
    pub session: Session,
    pub factors: Vec<Factor>,
    pub recovery_codes_left: i64,
    pub password: Option<PasswordInfo>,
    /// Roles held, and whether this session may exercise each.
    pub roles: Vec<RoleInSession>,
    /// Wardkey API scopes this session exercises.
    pub scopes: Vec<Scope>,
    pub idle_timeout_secs: i64,
    pub step_up_fresh: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RoleInSession {
    pub role_id: RoleId,
    pub name: String,
    pub exercisable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A pending ceremony kept on the session row.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Pending {
    WebauthnAuth { state: String, at: i64 },
    WebauthnRegister { state: String, name: String, at: i64 },
}

fn new_token() -> Result<(SessionToken, Vec<u8>)> {
    let t = SessionToken::generate().map_err(|e| ServiceError::Internal(e.to_string()))?;
    let h = t.hash().to_vec();
    Ok((t, h))
}

fn failures_to_domain(f: &AccountFailures) -> LoginFailures {
    LoginFailures {
        consecutive: f.consecutive,
        last_failure_at: f.last_failure_at,
        locked_at: f.locked_at,
        second_factor_consecutive: f.second_factor,
        second_factor_last_failure_at: f.second_factor_last_at,
    }
}

fn failures_from_domain(f: &LoginFailures) -> AccountFailures {
    AccountFailures {
        consecutive: f.consecutive,
        last_failure_at: f.last_failure_at,
        locked_at: f.locked_at,
        second_factor: f.second_factor_consecutive,
        second_factor_last_at: f.second_factor_last_failure_at,
    }
}

fn anon_event(action: &str, meta: &RequestMeta, outcome: Outcome) -> AuditDraft {
    let mut e = AuditDraft::new(Actor::Anonymous.principal(), action, outcome);
    e.source_ip = meta.source_ip.clone();
    e.request_id = meta.request_id.clone();
    e
}

fn user_event(user: UserId, action: &str, meta: &RequestMeta, outcome: Outcome) -> AuditDraft {
    let mut e = AuditDraft::new(Actor::User { user_id: user }.principal(), action, outcome);
    e.target = Some(user.target());
    e.source_ip = meta.source_ip.clone();
    e.request_id = meta.request_id.clone();
    e
}

/// Roles a user holds now (started, not expired, not revoked), directly or through groups.
pub(crate) async fn current_roles(conn: &mut Conn, user: UserId) -> Result<Vec<Role>> {
    let now = conn.current_time();
    let mut subjects = vec![Subject::User(user)];
    for g in conn.groups_of(Member::User(user)).await? {
        subjects.push(Subject::Group(g));
    }
    let mut ids = Vec::new();
    for s in subjects {
        for g in conn.live_grants_for_subject(s, now).await? {
            if g.starts_at <= now {
                ids.push(g.role_id);
            }
        }
    }
    ids.sort();
    ids.dedup();
    Ok(conn.get_roles(&ids).await?)
}

/// The policy that applies to `user`'s sessions: the global one tightened by every role held.
fn effective_policy(global: &SessionPolicy, roles: &[Role]) -> SessionPolicy {
    let overrides: Vec<RolePolicyOverride> = roles
        .iter()
        .map(|r| RolePolicyOverride {
            idle_timeout: r.session_policy.idle_timeout_secs.map(|s| Duration::seconds(i64::from(s))),
            absolute_lifetime: r.session_policy.max_lifetime_secs.map(|s| Duration::seconds(i64::from(s))),
        })
        .collect();
    SessionPolicy::strictest(global, &overrides)
}

/// Scopes a session exercises: those of its roles, except roles that need a passkey when the
/// session has not used one.
fn session_scopes(roles: &[Role], phishing_resistant: bool) -> Vec<Scope> {
    let mut scopes: Vec<Scope> = roles
        .iter()
        .filter(|r| phishing_resistant || !r.session_policy.require_phishing_resistant)
        .flat_map(|r| r.session_policy.scopes.iter().copied())
        .collect();
    scopes.sort();
    scopes.dedup();
    scopes
}

/// How long `last_seen_at` may lag: a tenth of the idle timeout, at most a minute. A session
/// may therefore time out up to that much early, never late.
fn heartbeat_resolution(policy: &SessionPolicy) -> Duration {
    (policy.idle_timeout / 10).min(Duration::seconds(60)).max(Duration::seconds(1))
}

fn session_state(s: &Session) -> wardkey_authn::session::SessionState {
    wardkey_authn::session::SessionState {
        created_at: s.created_at,
        last_seen_at: s.last_seen_at,
        mfa_at: s.mfa_at,
        phishing_resistant_at: s.phishing_resistant_at,
        ended_at: s.ended_at,
    }
}

/// A caller authenticated by session, with the session as stored.
pub struct SessionCaller {
    pub caller: Caller,
    pub session: Session,
    pending: Option<String>,
}

impl Services {
    fn authn(&self) -> &crate::AuthnRuntime {
        &self.authn
    }

    /// The origin browsers use to reach Wardkey (`https://host[:port]`), for origin checks.
    pub fn public_origin(&self) -> &str {
        self.authn().settings.passkeys.rp_origin.trim_end_matches('/')
    }

    /// The global session policy (for cookie lifetimes at the edge).
    pub fn session_policy(&self) -> SessionPolicy {
        self.authn().settings.session_policy
    }

    /// Counts one attempt from `meta.source_ip`; false when that source is over its limit.
    pub(crate) fn source_allows(&self, meta: &RequestMeta) -> bool {
        let Some(ip) = meta.source_ip.as_deref().and_then(|s| s.parse::<std::net::IpAddr>().ok()) else {
            return true;
        };
        let now = self.clock().now();
        let mut limiter = self.authn().limiter.lock().unwrap_or_else(|e| e.into_inner());
        limiter.check(ip, now)
    }

    /// Refuses a request from a source over its limit, with an audit event.
    async fn check_source(&self, meta: &RequestMeta, what: &str) -> Result<()> {
        if self.source_allows(meta) {
            return Ok(());
        }
        let mut e = anon_event("auth.rate_limited", meta, Outcome::Denied);
        e.reason = Some(format!("source over its {what} limit"));
        self.store.append_audit(vec![e]).await?;
        Err(ServiceError::RateLimited { retry_after_secs: 1 })
    }

    /// Records a refused request that reached no service (a forged form, a cross-site post):
    /// the audit event is the only thing written.
    pub async fn audit_refusal(&self, meta: &RequestMeta, action: &str, reason: &str) -> Result<()> {
        let mut e = anon_event(action, meta, Outcome::Denied);
        e.reason = Some(truncate(reason, 256));
        self.store.append_audit(vec![e]).await?;
        Ok(())
    }

    // ----------------------------------------------------------------- sign-in

    /// First step: username and password. `password` is raw bytes (an HTML form may send
    /// anything); it is never logged.
    pub async fn login_password(
        &self,
        username: &str,
        password: &[u8],
        meta: RequestMeta,
        user_agent: Option<String>,
    ) -> Result<SignIn> {
        self.check_source(&meta, "sign-in").await?;
        let rt = self.authn();
        if password.len() > wardkey_authn::hash::MAX_PASSWORD_BYTES {
            return Err(ServiceError::invalid(
                "password",
                format!("at most {} bytes", wardkey_authn::hash::MAX_PASSWORD_BYTES),
            ));
        }
        let Ok(password) = std::str::from_utf8(password) else {
            return Err(ServiceError::invalid("password", "the password is not valid UTF-8 text"));
        };
        let username = username.trim();
        let now = self.clock().now();
        let (user, phc, failures) = if username.is_empty() || username.len() > MAX_USERNAME_BYTES {
            (None, None, LoginFailures::default())
        } else {
            let mut r = self.store.read().await?;
            match r.get_user_by_username(username).await? {
                None => (None, None, LoginFailures::default()),
                Some(u) => {
                    let phc = r.get_password(u.id).await?.map(|(_, phc)| phc);
                    let f = r.get_login_failures(u.id).await?;
                    (Some(u), phc, f)
                }
            }
        };
        let acct = failures_from_domain(&failures);
        let throttled = acct.earliest_next_attempt(&rt.settings.lockout).is_some_and(|t| now < t);
        let locked = acct.is_locked(&rt.settings.lockout, now);
        // One Argon2 verification on every path, so timing does not tell the cases apart.
        let verified = rt.hasher.verify_or_dummy(password.to_owned(), phc.clone()).await;
        let reason = match &user {
            None => Some("unknown user"),
            Some(_) if phc.is_none() => Some("no password set"),
            Some(_) if locked => Some("account locked"),
            Some(_) if throttled => Some("too soon after a failure"),
            Some(_) if !verified => Some("wrong password"),
            Some(u) if u.status != UserStatus::Active => Some(match u.status {
                UserStatus::PendingVerification => "account pending identity verification",
                UserStatus::Suspended => "account suspended",
                _ => "account disabled",
            }),
            Some(_) => None,
        };
        let Some(user) = user else {
            let mut e = anon_event("auth.login_failed", &meta, Outcome::Failure);
            e.reason = reason.map(str::to_owned);
            // Never the text itself: people type passwords into the username field. A keyed
            // hash of its compared form still lets attempts on one name be correlated
            // (spraying), and cannot be reversed or confirmed by guessing without the key.
            let hashed = rt.secrets.keyed_hash(
                UNKNOWN_USERNAME_HASH,
                wardkey_domain::username_lookup_key(username).as_bytes(),
            );
            e.details = json!({ "username_hmac": hashed, "step": "password" });
            self.store.append_audit(vec![e]).await?;
            return Err(ServiceError::LoginFailed);
        };
        if let Some(reason) = reason {
            // Wrong passwords count towards lockout; attempts refused for other reasons
            // (locked, throttled, inactive) are recorded but do not extend the count unless
            // the password was also wrong.
            let count = !verified;
            let lockout = rt.settings.lockout;
            let uid = user.id;
            let uname = truncate(username, 64);
            let meta2 = meta.clone();
            self.store
                .write(move |tx| {
                    Box::pin(async move {
                        let mut acct = failures_from_domain(&tx.get_login_failures(uid).await?);
                        let mut e = user_event(uid, "auth.login_failed", &meta2, Outcome::Failure);
                        e.actor = Actor::Anonymous.principal();
                        e.reason = Some(reason.to_owned());
                        let mut details = json!({ "username": uname, "step": "password" });
                        if count {
                            let outcome = acct.record_failure(&lockout, tx.now());
                            tx.set_login_failures(uid, &failures_to_domain(&acct)).await?;
                            details["consecutive_failures"] = json!(acct.consecutive);
                            e.details = details;
                            tx.audit(e);
                            if outcome.locked_now {
                                let mut l = user_event(uid, "auth.lockout", &meta2, Outcome::Success);
                                l.actor = "system:lockout".into();
                                l.reason = Some(format!("{} consecutive failed sign-ins", acct.consecutive));
                                tx.audit(l);
                            }
                        } else {
                            e.details = details;
                            tx.audit(e);
                        }
                        Ok::<_, ServiceError>(())
                    })
                })
                .await?;
            return Err(ServiceError::LoginFailed);
        }
        // Password accepted: start a session at the right stage.
        let uid = user.id;
        let params = rt.hasher.params();
        let rehash = phc.as_deref().is_some_and(|p| params.needs_rehash(p));
        let new_phc = if rehash { rt.hasher.hash(password.to_owned()).await.ok() } else { None };
        let global = rt.settings.session_policy;
        let mfa_required = rt.settings.mfa_required;
        let (token, token_hash) = new_token()?;
        let meta2 = meta.clone();
        let ua = user_agent.map(|s| truncate(&s, 256));
        let committed = self
            .store
            .write(move |tx| {
                Box::pin(async move {
                    let now = tx.now();
                    let roles = current_roles(tx, uid).await?;
                    let policy = effective_policy(&global, &roles);
                    let factors: Vec<Factor> =
                        tx.list_factors(uid).await?.into_iter().filter(|f| f.confirmed).collect();
                    let recovery = tx.unused_recovery_codes(uid).await?;
                    let must_change = tx.get_password(uid).await?.is_some_and(|(i, _)| i.must_change);
                    let stage = if !factors.is_empty() {
                        SessionStage::SecondFactor
                    } else if mfa_required {
                        SessionStage::Enrol
                    } else {
                        SessionStage::Active
                    };
                    let session = Session {
                        id: SessionId::generate(),
                        user_id: uid,
                        stage,
                        created_at: now,
                        last_seen_at: now,
                        expires_at: now + policy.absolute_lifetime,
                        password_at: Some(now),
                        mfa_at: None,
                        phishing_resistant_at: None,
                        methods: vec!["password".into()],
                        source_ip: meta2.source_ip.clone(),
                        user_agent: ua,
                        ended_at: None,
                        ended_reason: None,
                        ended_by: None,
                    };
                    tx.insert_session(&session, &token_hash, None).await?;
                    // A correct password clears failed passwords only: failed second factors
                    // stand until a second factor is proved, or each round of right password
                    // and wrong code would start the count again.
                    let mut acct = failures_from_domain(&tx.get_login_failures(uid).await?);
                    if stage == SessionStage::Active {
                        acct.record_success();
                    } else {
                        acct.record_password_success();
                    }
                    tx.set_login_failures(uid, &failures_to_domain(&acct)).await?;
                    if let Some(p) = &new_phc {
                        tx.rehash_password(uid, p).await?;
                    }
                    let action = if stage == SessionStage::Active { "auth.login" } else { "auth.password_verified" };
                    let mut e = user_event(uid, action, &meta2, Outcome::Success);
                    e.details = json!({ "session": session.id.target(), "methods": session.methods, "next": stage });
                    tx.audit(e);
                    let mut kinds: Vec<String> = factors.iter().map(|f| f.kind.as_str().to_owned()).collect();
                    kinds.sort();
                    kinds.dedup();
                    if recovery > 0 && !factors.is_empty() {
                        kinds.push("recovery_code".into());
                    }
                    Ok::<_, ServiceError>((session, kinds, must_change))
                })
            })
            .await?;
        let (session, factors, must_change) = committed.value;
        let next = match session.stage {
            SessionStage::SecondFactor => NextStep::SecondFactor,
            SessionStage::Enrol => NextStep::Enrol,
            SessionStage::Active => NextStep::Done,
        };
        Ok(SignIn { token: token.encode(), session, next, factors, password_change_required: must_change })
    }

    /// Looks up a session by cookie secret. Expired sessions are ended here (with
    /// `session.timeout` or `session.expired`); forged or unknown secrets are `auth.failed`.
    async fn load_session(
        &self,
        cookie: &str,
        meta: &RequestMeta,
    ) -> Result<(SessionWithPending, SessionPolicy, Vec<Role>)> {
        let token = match SessionToken::parse(cookie) {
            Ok(t) => t,
            Err(_) => return Err(self.session_auth_failed(meta, "malformed session cookie").await),
        };
        let mut r = self.store.read().await?;
        let Some(found) = r.get_session_by_token(&token.hash()).await? else {
            drop(r);
            return Err(self.session_auth_failed(meta, "unknown session").await);
        };
        if found.session.ended_at.is_some() {
            drop(r);
            return Err(self.session_auth_failed(meta, "session already ended").await);
        }
        let roles = current_roles(&mut r, found.session.user_id).await?;
        drop(r);
        let policy = effective_policy(&self.authn().settings.session_policy, &roles);
        Ok((found, policy, roles))
    }

    async fn session_auth_failed(&self, meta: &RequestMeta, reason: &str) -> ServiceError {
        let mut e = anon_event("auth.failed", meta, Outcome::Failure);
        e.reason = Some(reason.to_owned());
        e.details = json!({ "credential": "session" });
        match self.store.append_audit(vec![e]).await {
            Ok(_) => ServiceError::Unauthenticated,
            Err(e) => e.into(),
        }
    }

    /// Ends `session` because it ran out; the event names which deadline.
    async fn expire(&self, session: &Session, idle: bool, meta: &RequestMeta) -> Result<()> {
        let id = session.id;
        let uid = session.user_id;
        let meta = meta.clone();
        let since = if idle { session.last_seen_at } else { session.created_at };
        let r = self
            .store
            .write(move |tx| {
                Box::pin(async move {
                    let now = tx.now();
                    let (action, reason) =
                        if idle { ("session.timeout", "timeout") } else { ("session.expired", "expired") };
                    if tx.end_session(id, now, reason, "system:session").await? {
                        let mut e = user_event(uid, action, &meta, Outcome::Success);
                        e.actor = "system:session".into();
                        e.target = Some(id.target());
                        e.details = json!({ "user": uid.target(), "since": since });
                        tx.audit(e);
                    } else {
                        // Ended meanwhile (by another node or request): nothing to record.
                        return Err(ServiceError::SessionExpired);
                    }
                    Ok::<_, ServiceError>(())
                })
            })
            .await;
        match r {
            Ok(_) | Err(ServiceError::SessionExpired) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Ends sessions nobody used within the global idle timeout or past their absolute
    /// lifetime (`session.timeout` / `session.expired`), so session lists stay true even for
    /// sessions never presented again. Roles only tighten timeouts, so a session past a
    /// role's tighter idle timeout is ended when next presented. Returns how many ended.
    pub async fn sweep_sessions(&self) -> Result<usize> {
        let global = self.authn().settings.session_policy;
        let now = self.clock().now();
        let stale = self.store.read().await?.stale_sessions(now - global.idle_timeout, now, 500).await?;
        let meta = RequestMeta::default();
        let mut n = 0;
        for s in stale {
            let idle = s.expires_at > now;
            self.expire(&s, idle, &meta).await?;
            n += 1;
        }
        Ok(n)
    }

    /// Authenticates a request by session cookie. The session must be in one of `stages`
    /// (`Active` for everything but the sign-in steps). Records activity (heartbeat).
    pub async fn authenticate_session(
        &self,
        cookie: &str,
        meta: RequestMeta,
        stages: &[SessionStage],
    ) -> Result<SessionCaller> {
        let (found, policy, roles) = self.load_session(cookie, &meta).await?;
        let now = self.clock().now();
        let session = found.session;
        match session_state(&session).check(&policy, now) {
            wardkey_authn::session::SessionCheck::Active if now < session.expires_at => {}
            wardkey_authn::session::SessionCheck::IdleExpired { .. } => {
                self.expire(&session, true, &meta).await?;
                return Err(ServiceError::SessionExpired);
            }
            _ => {
                self.expire(&session, false, &meta).await?;
                return Err(ServiceError::SessionExpired);
            }
        }
        if !stages.contains(&session.stage) {
            return Err(ServiceError::WrongStage {
                message: match session.stage {
                    SessionStage::SecondFactor => "sign-in is not complete: prove a second factor first".into(),
                    SessionStage::Enrol => "sign-in is not complete: enrol a second factor first".into(),
                    SessionStage::Active => "this session is already signed in".into(),
                },
            });
        }
        // The user may have been suspended since; their sessions end with that change, but
        // check anyway (defence in depth against a row written by an older node).
        let user = self.store.read().await?.get_user(session.user_id).await?;
        if user.as_ref().is_none_or(|u| u.status != UserStatus::Active) {
            return Err(self.session_auth_failed(&meta, "session of an inactive user").await);
        }
        if now - session.last_seen_at >= heartbeat_resolution(&policy) {
            self.store.touch_sessions(vec![(session.id, now)]).await?;
        }
        let must_change = if session.stage == SessionStage::Active {
            self.store.read().await?.get_password(session.user_id).await?.is_some_and(|(i, _)| i.must_change)
        } else {
            false
        };
        let pr = session.phishing_resistant_at.is_some();
        let caller = Caller {
            actor: Actor::User { user_id: session.user_id },
            scopes: if session.stage == SessionStage::Active { session_scopes(&roles, pr) } else { Vec::new() },
            meta,
            session: Some(SessionContext {
                id: session.id,
                user_id: session.user_id,
                stage: session.stage,
                mfa_at: session.mfa_at,
                phishing_resistant_at: session.phishing_resistant_at,
                must_change_password: must_change,
                step_up_window: policy.step_up_window,
            }),
        };
        Ok(SessionCaller { caller, session, pending: found.pending })
    }

    /// Counts a failed second factor against the account (counted apart from passwords, same
    /// lock threshold) and against the session; a lock ends the user's sessions, and the
    /// session's [`MAX_SECOND_FACTOR_ATTEMPTS_PER_SESSION`]th failure ends that session.
    async fn second_factor_failed(&self, sc: &SessionCaller, method: &str, reason: &str) -> ServiceError {
        let lockout = self.authn().settings.lockout;
        let uid = sc.session.user_id;
        let sid = sc.session.id;
        let meta = sc.caller.meta.clone();
        let method = method.to_owned();
        let reason = reason.to_owned();
        let r = self
            .store
            .write(move |tx| {
                Box::pin(async move {
                    let now = tx.now();
                    let mut acct = failures_from_domain(&tx.get_login_failures(uid).await?);
                    let outcome = acct.record_second_factor_failure(&lockout, now);
                    tx.set_login_failures(uid, &failures_to_domain(&acct)).await?;
                    // A ceremony's state is single-use: a failed attempt spends it too.
                    tx.set_session_pending(sid, None).await?;
                    let in_session = tx.count_session_second_factor_failure(sid).await?;
                    let mut e = user_event(uid, "auth.mfa_failed", &meta, Outcome::Failure);
                    e.reason = Some(reason);
                    e.details = json!({
                        "session": sid.target(),
                        "method": method,
                        "consecutive_failures": acct.second_factor,
                        "session_failures": in_session,
                    });
                    tx.audit(e);
                    let mut locked = false;
                    let mut ended = false;
                    if outcome.locked_now || acct.is_locked(&lockout, now) {
                        if outcome.locked_now {
                            let mut l = user_event(uid, "auth.lockout", &meta, Outcome::Success);
                            l.actor = "system:lockout".into();
                            l.reason = Some(format!("{} consecutive failed sign-in steps", acct.consecutive));
                            tx.audit(l);
                        }
                        end_sessions(tx, uid, "locked", "system:lockout", &meta).await?;
                        locked = true;
                    }
                    if !locked && in_session >= MAX_SECOND_FACTOR_ATTEMPTS_PER_SESSION {
                        // Bounded per session too: guessing must go back through the password
                        // step (and its throttle) every few codes.
                        if tx.end_session(sid, now, "second_factor_attempts", "system:lockout").await? {
                            let mut x = AuditDraft::new("system:lockout".to_owned(), "session.revoke", Outcome::Success);
                            x.target = Some(sid.target());
                            x.reason = Some(format!("{in_session} failed second factors in this session"));
                            x.source_ip = meta.source_ip.clone();
                            x.request_id = meta.request_id.clone();
                            x.details = json!({ "user": uid.target() });
                            tx.audit(x);
                        }
                        ended = true;
                    }
                    Ok::<_, ServiceError>(ended)
                })
            })
            .await;
        match r {
            // The session is over: the client must sign in again from the password.
            Ok(c) if c.value => ServiceError::SessionExpired,
            Ok(_) => ServiceError::SecondFactorFailed,
            Err(e) => e,
        }
    }

    /// Refuses a second-factor attempt on a locked or throttled account.
    async fn check_account_open(&self, sc: &SessionCaller) -> Result<()> {
        let lockout = &self.authn().settings.lockout;
        let now = self.clock().now();
        let acct = failures_from_domain(&self.store.read().await?.get_login_failures(sc.session.user_id).await?);
        if acct.is_locked(lockout, now) || acct.earliest_next_attempt(lockout).is_some_and(|t| now < t) {
            let mut e = user_event(sc.session.user_id, "auth.mfa_failed", &sc.caller.meta, Outcome::Denied);
            e.reason =
                Some(if acct.is_locked(lockout, now) { "account locked" } else { "too soon after a failure" }.into());
            self.store.append_audit(vec![e]).await?;
            return Err(ServiceError::SecondFactorFailed);
        }
        Ok(())
    }

    /// Completes a second-factor step: rotates the session id, records the proof, audits
    /// `auth.login` (sign-in) or `auth.step_up` (an active session proving again).
    async fn complete_factor(
        &self,
        sc: &SessionCaller,
        method: &'static str,
        phishing_resistant: bool,
        extra: impl for<'t> FnOnce(&'t mut WriteTx) -> futures::future::BoxFuture<'t, Result<bool>> + Send + 'static,
    ) -> Result<SignIn> {
        let (token, token_hash) = new_token()?;
        let s = sc.session.clone();
        let meta = sc.caller.meta.clone();
        let committed = self
            .store
            .write(move |tx| {
                Box::pin(async move {
                    if !extra(tx).await? {
                        // Lost a race for a single-use code: roll back, answered below.
                        return Err(ServiceError::SecondFactorFailed);
                    }
                    let now = tx.now();
                    let mut methods = s.methods.clone();
                    methods.push(method.to_owned());
                    methods.truncate(32);
                    let advance = SessionAdvance {
                        new_token_hash: token_hash,
                        stage: SessionStage::Active,
                        mfa_at: Some(now),
                        phishing_resistant_at: if phishing_resistant { Some(now) } else { s.phishing_resistant_at },
                        password_at: s.password_at,
                        methods: methods.clone(),
                        last_seen_at: now,
                    };
                    if !tx.advance_session(s.id, &advance).await? {
                        return Err(ServiceError::SessionExpired);
                    }
                    tx.set_login_failures(s.user_id, &LoginFailures::default()).await?;
                    let action = if s.stage == SessionStage::Active { "auth.step_up" } else { "auth.login" };
                    let mut e = user_event(s.user_id, action, &meta, Outcome::Success);
                    e.details = json!({ "session": s.id.target(), "method": method, "methods": methods, "phishing_resistant": phishing_resistant });
                    tx.audit(e);
                    let session = tx.get_session(s.id).await?.ok_or(ServiceError::SessionExpired)?;
                    let must_change = tx.get_password(s.user_id).await?.is_some_and(|(i, _)| i.must_change);
                    Ok::<_, ServiceError>((session, must_change))
                })
            })
            .await;
        match committed {
            Ok(c) => {
                let (session, must_change) = c.value;
                Ok(SignIn {
                    token: token.encode(),
                    session,
                    next: NextStep::Done,
                    factors: Vec::new(),
                    password_change_required: must_change,
                })
            }
            Err(ServiceError::SecondFactorFailed) => {
                Err(self.second_factor_failed(sc, method, "code already used").await)
            }
            Err(e) => Err(e),
        }
    }

    /// Second factor by TOTP code: at sign-in (stage `second_factor`) or as step-up.
    pub async fn verify_totp(&self, sc: &SessionCaller, code: &str) -> Result<SignIn> {
        self.check_account_open(sc).await?;
        if code.len() > 32 {
            return Err(ServiceError::invalid("code", "a TOTP code has 6 digits"));
        }
        let now = self.clock().now();
        let uid = sc.session.user_id;
        let factors = self.store.read().await?.factor_secrets(uid, FactorKind::Totp).await?;
        let mut matched: Option<(FactorId, u64)> = None;
        let mut replayed = false;
        let mut malformed = false;
        for f in factors.iter().filter(|f| f.factor.confirmed) {
            let secret = self.open_totp(uid, &f.secret)?;
            let last = f.last_used_step.and_then(|s| u64::try_from(s).ok());
            match wardkey_authn::totp::verify(&secret, code, now, last) {
                Ok(step) if matched.is_none() => matched = Some((f.factor.id, step)),
                Ok(_) => {}
                Err(wardkey_authn::totp::TotpError::Replayed) => replayed = true,
                Err(wardkey_authn::totp::TotpError::Malformed) => malformed = true,
                Err(_) => {}
            }
        }
        let Some((fid, step)) = matched else {
            let reason = if replayed {
                "TOTP code already used"
            } else if malformed {
                "malformed TOTP code"
            } else {
                "wrong TOTP code"
            };
            return Err(self.second_factor_failed(sc, "totp", reason).await);
        };
        let step = i64::try_from(step).map_err(|_| ServiceError::Internal("TOTP step out of range".into()))?;
        self.complete_factor(sc, "totp", false, move |tx| {
            Box::pin(async move {
                let now = tx.now();
                Ok(tx.use_totp_step(fid, step, now).await?)
            })
        })
        .await
    }

    /// Second factor by recovery code (single use).
    pub async fn verify_recovery_code(&self, sc: &SessionCaller, code: &str) -> Result<SignIn> {
        self.check_account_open(sc).await?;
        if code.len() > 64 {
            return Err(ServiceError::invalid("code", "a recovery code looks like XXXX-XXXX-XXXX-XXXX"));
        }
        let Some(hash) = wardkey_authn::recovery::hash_code(code) else {
            return Err(self.second_factor_failed(sc, "recovery_code", "malformed recovery code").await);
        };
        let uid = sc.session.user_id;
        let meta = sc.caller.meta.clone();
        self.complete_factor(sc, "recovery_code", false, move |tx| {
            Box::pin(async move {
                let now = tx.now();
                if !tx.use_recovery_code(uid, &hash, now).await? {
                    return Ok(false);
                }
                let left = tx.unused_recovery_codes(uid).await?;
                let mut e = user_event(uid, "factor.recovery_code_used", &meta, Outcome::Success);
                e.details = json!({ "remaining": left });
                tx.audit(e);
                Ok(true)
            })
        })
        .await
    }

    /// Starts a passkey assertion (sign-in or step-up): the options for
    /// `navigator.credentials.get()`.
    pub async fn webauthn_begin(&self, sc: &SessionCaller) -> Result<serde_json::Value> {
        self.check_account_open(sc).await?;
        let uid = sc.session.user_id;
        let stored: Vec<String> = self
            .store
            .read()
            .await?
            .factor_secrets(uid, FactorKind::Webauthn)
            .await?
            .into_iter()
            .map(|f| f.secret)
            .collect();
        if stored.is_empty() {
            return Err(ServiceError::Conflict { kind: "factor", message: "no passkey is enrolled".into() });
        }
        let (options, state) =
            self.authn().passkeys.start_authentication(&stored).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let pending = Pending::WebauthnAuth { state, at: self.clock().now().timestamp() };
        self.set_pending(sc, &pending, "webauthn.challenge").await?;
        Ok(options)
    }

    async fn set_pending(&self, sc: &SessionCaller, pending: &Pending, action: &str) -> Result<()> {
        let json = serde_json::to_string(pending).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let sid = sc.session.id;
        let uid = sc.session.user_id;
        let meta = sc.caller.meta.clone();
        let action = action.to_owned();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    if !tx.set_session_pending(sid, Some(&json)).await? {
                        return Err(ServiceError::SessionExpired);
                    }
                    let mut e = user_event(uid, &action, &meta, Outcome::Success);
                    e.details = json!({ "session": sid.target() });
                    tx.audit(e);
                    Ok::<_, ServiceError>(())
                })
            })
            .await?;
        Ok(())
    }

    fn take_pending(&self, sc: &SessionCaller) -> Option<Pending> {
        let p: Pending = serde_json::from_str(sc.pending.as_deref()?).ok()?;
        let at = match &p {
            Pending::WebauthnAuth { at, .. } | Pending::WebauthnRegister { at, .. } => *at,
        };
        let age = self.clock().now().timestamp() - at;
        (0..=CEREMONY_TTL_SECS).contains(&age).then_some(p)
    }

    /// Finishes a passkey assertion: a phishing-resistant second factor.
    pub async fn webauthn_finish(&self, sc: &SessionCaller, response_json: &str) -> Result<SignIn> {
        self.check_account_open(sc).await?;
        let Some(Pending::WebauthnAuth { state, .. }) = self.take_pending(sc) else {
            return Err(self
                .second_factor_failed(sc, "webauthn", "no passkey challenge pending (or it expired)")
                .await);
        };
        let assertion = match self.authn().passkeys.finish_authentication(response_json, &state) {
            Ok(a) => a,
            Err(e) => {
                return Err(self.second_factor_failed(sc, "webauthn", &format!("passkey refused: {}", e.code())).await);
            }
        };
        let uid = sc.session.user_id;
        let stored = self.store.read().await?.factor_secrets(uid, FactorKind::Webauthn).await?;
        let Some(f) = stored.into_iter().find(|f| f.credential_id.as_deref() == Some(assertion.credential_id.as_str()))
        else {
            return Err(self.second_factor_failed(sc, "webauthn", "passkey not enrolled for this user").await);
        };
        let updated =
            Passkeys::update_stored(&f.secret, &assertion).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let fid = f.factor.id;
        self.complete_factor(sc, "webauthn", true, move |tx| {
            Box::pin(async move {
                let now = tx.now();
                tx.touch_factor(fid, updated.as_deref(), now).await?;
                Ok(true)
            })
        })
        .await
    }

    // ----------------------------------------------------------------- enrolment

    /// Enrolment is open to a session at the `enrol` stage (first factor) or to an active
    /// session with a fresh second factor (step-up).
    fn check_may_enrol(&self, sc: &SessionCaller) -> Result<()> {
        match sc.session.stage {
            SessionStage::Enrol => Ok(()),
            SessionStage::Active => {
                let fresh = sc.caller.session.as_ref().is_some_and(|s| s.fresh_mfa(self.clock().now()));
                if fresh { Ok(()) } else { Err(ServiceError::StepUpRequired) }
            }
            SessionStage::SecondFactor => {
                Err(ServiceError::WrongStage { message: "sign-in is not complete: prove a second factor first".into() })
            }
        }
    }

    fn open_totp(&self, user: UserId, sealed: &str) -> Result<wardkey_authn::totp::TotpSecret> {
        let bytes =
            self.authn().secrets.open(sealed, &format!("totp:{}", user.target())).map_err(|e| {
                ServiceError::Internal(format!("TOTP secret cannot be opened (wrong secrets key?): {e}"))
            })?;
        wardkey_authn::totp::TotpSecret::from_bytes(bytes.to_vec()).map_err(|e| ServiceError::Internal(e.to_string()))
    }

    /// Starts a TOTP enrolment: a new secret (stored sealed, unconfirmed) and its QR code.
    pub async fn totp_enrol_begin(&self, sc: &SessionCaller, name: Option<String>) -> Result<TotpEnrolment> {
        self.check_may_enrol(sc)?;
        let name = name.unwrap_or_else(|| TOTP_NAME_DEFAULT.into());
        let mut errors = Vec::new();
        wardkey_domain::validate::text(&mut errors, "name", &name, wardkey_domain::validate::MAX_SHORT);
        wardkey_domain::validate::finish(errors)?;
        let uid = sc.session.user_id;
        let user = self.store.read().await?.get_user(uid).await?.ok_or(ServiceError::SessionExpired)?;
        let secret = wardkey_authn::totp::TotpSecret::generate().map_err(|e| ServiceError::Internal(e.to_string()))?;
        let sealed = self
            .authn()
            .secrets
            .seal(secret.as_bytes(), &format!("totp:{}", uid.target()))
            .map_err(|e| ServiceError::Internal(format!("sealing the TOTP secret: {e}")))?;
        let uri = wardkey_authn::totp::otpauth_uri(&self.authn().settings.organisation, &user.username, &secret);
        let qr_svg = wardkey_authn::qr::svg(&uri).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let factor = Factor {
            id: FactorId::generate(),
            user_id: uid,
            kind: FactorKind::Totp,
            name,
            confirmed: false,
            created_at: wardkey_audit::truncate_to_micros(self.clock().now()),
            last_used_at: None,
        };
        let meta = sc.caller.meta.clone();
        let f2 = factor.clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    // One pending enrolment at a time: drop older unconfirmed ones.
                    for old in tx.list_factors(uid).await? {
                        if !old.confirmed {
                            tx.delete_factor(old.id).await?;
                        }
                    }
                    tx.insert_factor(&f2, &sealed, None).await?;
                    let mut e = user_event(uid, "factor.enrol_started", &meta, Outcome::Success);
                    e.details = json!({ "factor": f2.id.target(), "kind": "totp" });
                    tx.audit(e);
                    Ok::<_, ServiceError>(())
                })
            })
            .await?;
        Ok(TotpEnrolment { factor_id: factor.id, secret: secret.to_base32(), otpauth_uri: uri, qr_svg })
    }

    /// Confirms a TOTP enrolment with its first code. At the `enrol` stage this completes
    /// sign-in (the session id rotates). The first factor comes with recovery codes.
    pub async fn totp_enrol_confirm(
        &self,
        sc: &SessionCaller,
        factor_id: FactorId,
        code: &str,
    ) -> Result<FactorConfirmed> {
        self.check_may_enrol(sc)?;
        let uid = sc.session.user_id;
        let f = self.store.read().await?.get_factor(factor_id).await?;
        let Some(f) = f.filter(|f| f.factor.user_id == uid && f.factor.kind == FactorKind::Totp && !f.factor.confirmed)
        else {
            return Err(ServiceError::NotFound { kind: "factor", id: factor_id.to_string() });
        };
        let secret = self.open_totp(uid, &f.secret)?;
        let step = match wardkey_authn::totp::verify(&secret, code, self.clock().now(), None) {
            Ok(s) => i64::try_from(s).map_err(|_| ServiceError::Internal("TOTP step out of range".into()))?,
            Err(_) => {
                let mut e = user_event(uid, "factor.enrol_failed", &sc.caller.meta, Outcome::Failure);
                e.reason = Some("wrong TOTP code at enrolment".into());
                self.store.append_audit(vec![e]).await?;
                return Err(ServiceError::invalid(
                    "code",
                    "the code does not match: check the device's clock and try the current code",
                ));
            }
        };
        self.finish_enrolment(
            sc,
            f.factor,
            move |tx| {
                Box::pin(async move {
                    let now = tx.now();
                    Ok(tx.confirm_factor(factor_id, Some(step), now).await?)
                })
            },
            "totp",
            false,
        )
        .await
    }

    /// Starts passkey registration: the options for `navigator.credentials.create()`.
    pub async fn passkey_register_begin(&self, sc: &SessionCaller, name: Option<String>) -> Result<serde_json::Value> {
        self.check_may_enrol(sc)?;
        let name = name.unwrap_or_else(|| "Passkey".into());
        let mut errors = Vec::new();
        wardkey_domain::validate::text(&mut errors, "name", &name, wardkey_domain::validate::MAX_SHORT);
        wardkey_domain::validate::finish(errors)?;
        let uid = sc.session.user_id;
        let mut r = self.store.read().await?;
        let user = r.get_user(uid).await?.ok_or(ServiceError::SessionExpired)?;
        let existing: Vec<String> =
            r.factor_secrets(uid, FactorKind::Webauthn).await?.into_iter().filter_map(|f| f.credential_id).collect();
        drop(r);
        let display = user.display_name.clone().unwrap_or_else(|| user.username.clone());
        let (options, state) = self
            .authn()
            .passkeys
            .start_registration(uid.0, &user.username, &display, &existing)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let pending = Pending::WebauthnRegister { state, name, at: self.clock().now().timestamp() };
        self.set_pending(sc, &pending, "webauthn.registration_started").await?;
        Ok(options)
    }

    /// Finishes passkey registration with the authenticator's response.
    pub async fn passkey_register_finish(&self, sc: &SessionCaller, response_json: &str) -> Result<FactorConfirmed> {
        self.check_may_enrol(sc)?;
        let uid = sc.session.user_id;
        let Some(Pending::WebauthnRegister { state, name, .. }) = self.take_pending(sc) else {
            let mut e = user_event(uid, "factor.enrol_failed", &sc.caller.meta, Outcome::Failure);
            e.reason = Some("no passkey registration pending (or it expired)".into());
            self.store.append_audit(vec![e]).await?;
            return Err(ServiceError::Conflict {
                kind: "factor",
                message: "no passkey registration is pending; start again".into(),
            });
        };
        let registered = match self.authn().passkeys.finish_registration(response_json, &state) {
            Ok(r) => r,
            Err(err) => {
                let mut e = user_event(uid, "factor.enrol_failed", &sc.caller.meta, Outcome::Failure);
                e.reason = Some(format!("passkey registration refused: {}", err.code()));
                let sid = sc.session.id;
                self.store
                    .write(move |tx| {
                        Box::pin(async move {
                            tx.set_session_pending(sid, None).await?;
                            tx.audit(e);
                            Ok::<_, ServiceError>(())
                        })
                    })
                    .await?;
                return Err(ServiceError::invalid(
                    "credential",
                    format!("the passkey response was not accepted ({})", err.code()),
                ));
            }
        };
        let factor = Factor {
            id: FactorId::generate(),
            user_id: uid,
            kind: FactorKind::Webauthn,
            name,
            confirmed: true,
            created_at: wardkey_audit::truncate_to_micros(self.clock().now()),
            last_used_at: None,
        };
        let f2 = factor.clone();
        let sid = sc.session.id;
        self.finish_enrolment(
            sc,
            factor,
            move |tx| {
                Box::pin(async move {
                    tx.insert_factor(&f2, &registered.passkey_json, Some(&registered.credential_id)).await?;
                    tx.set_session_pending(sid, None).await?;
                    Ok(true)
                })
            },
            "webauthn",
            true,
        )
        .await
    }

    /// Shared tail of enrolments: the factor is stored by `store_factor`; the first factor
    /// brings recovery codes; at the `enrol` stage the session becomes active (id rotates).
    async fn finish_enrolment(
        &self,
        sc: &SessionCaller,
        factor: Factor,
        store_factor: impl for<'t> FnOnce(&'t mut WriteTx) -> futures::future::BoxFuture<'t, Result<bool>> + Send + 'static,
        method: &'static str,
        phishing_resistant: bool,
    ) -> Result<FactorConfirmed> {
        let codes =
            wardkey_authn::recovery::RecoveryCodes::generate().map_err(|e| ServiceError::Internal(e.to_string()))?;
        let s = sc.session.clone();
        let meta = sc.caller.meta.clone();
        let (token, token_hash) = new_token()?;
        let f2 = factor.clone();
        let hashes = codes.hashes.clone();
        let committed = self
            .store
            .write(move |tx| {
                Box::pin(async move {
                    let now = tx.now();
                    let had_factor = tx.list_factors(s.user_id).await?.iter().any(|f| f.confirmed);
                    if !store_factor(tx).await? {
                        return Err(ServiceError::Conflict {
                            kind: "factor",
                            message: "the enrolment was already completed".into(),
                        });
                    }
                    let mut e = user_event(s.user_id, "factor.enrolled", &meta, Outcome::Success);
                    e.details =
                        json!({ "factor": f2.id.target(), "kind": method, "name": f2.name, "session": s.id.target() });
                    tx.audit(e);
                    let issue_codes = !had_factor || tx.unused_recovery_codes(s.user_id).await? == 0;
                    if issue_codes {
                        tx.replace_recovery_codes(s.user_id, &hashes, now).await?;
                        let mut e = user_event(s.user_id, "factor.recovery_codes_issued", &meta, Outcome::Success);
                        e.details = json!({ "count": hashes.len() });
                        tx.audit(e);
                    }
                    let mut signed_in = None;
                    if s.stage == SessionStage::Enrol {
                        let mut methods = s.methods.clone();
                        methods.push(method.to_owned());
                        let advance = SessionAdvance {
                            new_token_hash: token_hash,
                            stage: SessionStage::Active,
                            mfa_at: Some(now),
                            phishing_resistant_at: phishing_resistant.then_some(now),
                            password_at: s.password_at,
                            methods: methods.clone(),
                            last_seen_at: now,
                        };
                        if !tx.advance_session(s.id, &advance).await? {
                            return Err(ServiceError::SessionExpired);
                        }
                        let mut e = user_event(s.user_id, "auth.login", &meta, Outcome::Success);
                        e.details =
                            json!({ "session": s.id.target(), "method": method, "methods": methods, "enrolled": true });
                        tx.audit(e);
                        let session = tx.get_session(s.id).await?.ok_or(ServiceError::SessionExpired)?;
                        let must_change = tx.get_password(s.user_id).await?.is_some_and(|(i, _)| i.must_change);
                        signed_in = Some((session, must_change));
                    }
                    let factor = tx.get_factor(f2.id).await?.map(|f| f.factor).unwrap_or(f2);
                    Ok::<_, ServiceError>((factor, issue_codes, signed_in))
                })
            })
            .await?;
        let (factor, issued, signed_in) = committed.value;
        Ok(FactorConfirmed {
            factor,
            recovery_codes: issued.then_some(codes.codes),
            sign_in: signed_in.map(|(session, must_change)| SignIn {
                token: token.encode(),
                session,
                next: NextStep::Done,
                factors: Vec::new(),
                password_change_required: must_change,
            }),
        })
    }

    /// New recovery codes (the old ones stop working). Needs step-up.
    pub async fn regenerate_recovery_codes(&self, sc: &SessionCaller) -> Result<Vec<String>> {
        self.require_step_up(sc)?;
        let codes =
            wardkey_authn::recovery::RecoveryCodes::generate().map_err(|e| ServiceError::Internal(e.to_string()))?;
        let uid = sc.session.user_id;
        let meta = sc.caller.meta.clone();
        let hashes = codes.hashes.clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    if !tx.list_factors(uid).await?.iter().any(|f| f.confirmed) {
                        return Err(ServiceError::Conflict {
                            kind: "factor",
                            message: "enrol a second factor first".into(),
                        });
                    }
                    let now = tx.now();
                    tx.replace_recovery_codes(uid, &hashes, now).await?;
                    let mut e = user_event(uid, "factor.recovery_codes_issued", &meta, Outcome::Success);
                    e.details = json!({ "count": hashes.len(), "replaced": true });
                    tx.audit(e);
                    Ok::<_, ServiceError>(())
                })
            })
            .await?;
        Ok(codes.codes)
    }

    fn require_step_up(&self, sc: &SessionCaller) -> Result<()> {
        let fresh = sc.caller.session.as_ref().is_some_and(|s| s.fresh_mfa(self.clock().now()));
        if fresh { Ok(()) } else { Err(ServiceError::StepUpRequired) }
    }

    /// Removes one of the caller's own factors (step-up). The last factor cannot go while
    /// MFA is required: reset by an admin instead.
    pub async fn remove_own_factor(&self, sc: &SessionCaller, id: FactorId) -> Result<()> {
        self.require_step_up(sc)?;
        let uid = sc.session.user_id;
        let meta = sc.caller.meta.clone();
        let mfa_required = self.authn().settings.mfa_required;
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let factors = tx.list_factors(uid).await?;
                    let Some(f) = factors.iter().find(|f| f.id == id) else {
                        return Err(ServiceError::NotFound { kind: "factor", id: id.to_string() });
                    };
                    let confirmed = factors.iter().filter(|f| f.confirmed).count();
                    if mfa_required && f.confirmed && confirmed == 1 {
                        return Err(ServiceError::Conflict {
                            kind: "factor",
                            message: "this is your only second factor: enrol another one first".into(),
                        });
                    }
                    tx.delete_factor(id).await?;
                    let mut e = user_event(uid, "factor.removed", &meta, Outcome::Success);
                    e.details = json!({ "factor": id.target(), "kind": f.kind, "name": f.name });
                    tx.audit(e);
                    Ok::<_, ServiceError>(())
                })
            })
            .await?;
        Ok(())
    }

    // ----------------------------------------------------------------- passwords

    fn check_new_password(&self, user: &User, password: &[u8]) -> Result<String> {
        let rt = self.authn();
        let ctx = PasswordContext {
            username: &user.username,
            display_name: user.display_name.as_deref(),
            organisation: Some(&rt.settings.organisation),
            email: user.email.as_deref(),
            extra: &["wardkey"],
        };
        rt.settings
            .password_policy
            .check_bytes(password, &ctx, rt.settings.mfa_required)
            .map_err(|r| ServiceError::PasswordRejected { code: r.code(), message: r.to_string() })?;
        // check_bytes proved it is UTF-8.
        Ok(String::from_utf8_lossy(password).into_owned())
    }

    /// An admin sets a person's password (onboarding, or after a reset). `must_change` makes
    /// the next sign-in change it. Every session of the user ends.
    pub async fn admin_set_password(
        &self,
        by: &Authorized<Admin>,
        user: UserId,
        password: &[u8],
        must_change: bool,
    ) -> Result<Committed<()>> {
        let u = self
            .store
            .read()
            .await?
            .get_user(user)
            .await?
            .ok_or(ServiceError::NotFound { kind: "user", id: user.to_string() })?;
        let password = self.check_new_password(&u, password)?;
        let phc = self.authn().hasher.hash(password).await.map_err(|e| ServiceError::Internal(e.to_string()))?;
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let now = tx.now();
                    tx.get_user(user).await?.ok_or(ServiceError::NotFound { kind: "user", id: user.to_string() })?;
                    let info = PasswordInfo { set_at: now, must_change, set_by: caller.actor.principal() };
                    tx.set_password(user, &phc, &info).await?;
                    let mut e = draft(&caller, "password.set", Some(user.target()));
                    e.details = json!({ "must_change": must_change });
                    tx.audit(e);
                    end_sessions(tx, user, "password_changed", &caller.actor.principal(), &caller.meta).await?;
                    Ok::<_, ServiceError>(())
                })
            })
            .await
    }

    /// An admin marks a password compromised: it must be changed at the next sign-in, and
    /// every session ends now.
    pub async fn mark_password_compromised(
        &self,
        by: &Authorized<Admin>,
        user: UserId,
        reason: Option<String>,
    ) -> Result<Committed<()>> {
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    tx.get_user(user).await?.ok_or(ServiceError::NotFound { kind: "user", id: user.to_string() })?;
                    if !tx.set_password_must_change(user, true).await? {
                        return Err(ServiceError::Conflict {
                            kind: "password",
                            message: "the user has no password".into(),
                        });
                    }
                    let mut e = draft(&caller, "password.compromised", Some(user.target()));
                    e.reason = reason.map(|r| truncate(&r, 1024));
                    tx.audit(e);
                    end_sessions(tx, user, "password_compromised", &caller.actor.principal(), &caller.meta).await?;
                    Ok::<_, ServiceError>(())
                })
            })
            .await
    }

    /// A person changes their own password, proving the current one. Every session of the
    /// user ends (this one too: sign in again with the new password).
    pub async fn change_own_password(&self, sc: &SessionCaller, current: &[u8], new: &[u8]) -> Result<Committed<()>> {
        let uid = sc.session.user_id;
        let u = self.store.read().await?.get_user(uid).await?.ok_or(ServiceError::SessionExpired)?;
        let phc = self.store.read().await?.get_password(uid).await?.map(|(_, p)| p);
        let current_ok = match std::str::from_utf8(current) {
            Ok(c) if current.len() <= wardkey_authn::hash::MAX_PASSWORD_BYTES => {
                self.authn().hasher.verify_or_dummy(c.to_owned(), phc).await
            }
            _ => false,
        };
        if !current_ok {
            let mut e = user_event(uid, "password.change_failed", &sc.caller.meta, Outcome::Failure);
            e.reason = Some("current password wrong".into());
            self.store.append_audit(vec![e]).await?;
            return Err(ServiceError::invalid("current_password", "the current password is not correct"));
        }
        let new = self.check_new_password(&u, new)?;
        if new.as_bytes() == current {
            return Err(ServiceError::invalid("new_password", "the new password must differ from the current one"));
        }
        let phc = self.authn().hasher.hash(new).await.map_err(|e| ServiceError::Internal(e.to_string()))?;
        let meta = sc.caller.meta.clone();
        let principal = sc.caller.actor.principal();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let now = tx.now();
                    let info = PasswordInfo { set_at: now, must_change: false, set_by: principal.clone() };
                    tx.set_password(uid, &phc, &info).await?;
                    tx.audit(user_event(uid, "password.changed", &meta, Outcome::Success));
                    end_sessions(tx, uid, "password_changed", &principal, &meta).await?;
                    Ok::<_, ServiceError>(())
                })
            })
            .await
    }

    // ----------------------------------------------------------------- sessions

    /// Ends the caller's own session (logout).
    pub async fn logout(&self, sc: &SessionCaller) -> Result<()> {
        self.end_one_session(&sc.caller, sc.session.id, "logout", Some(sc.session.user_id)).await.map(|_| ())
    }

    async fn end_one_session(
        &self,
        caller: &Caller,
        id: SessionId,
        reason: &'static str,
        owner: Option<UserId>,
    ) -> Result<Committed<()>> {
        let caller = caller.clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let s = tx.get_session(id).await?;
                    let Some(s) = s.filter(|s| owner.is_none_or(|o| s.user_id == o)) else {
                        return Err(ServiceError::NotFound { kind: "session", id: id.to_string() });
                    };
                    let now = tx.now();
                    if !tx.end_session(id, now, reason, &caller.actor.principal()).await? {
                        return Err(ServiceError::Conflict {
                            kind: "session",
                            message: "the session has already ended".into(),
                        });
                    }
                    let action = if reason == "logout" { "session.logout" } else { "session.revoke" };
                    let mut e = draft(&caller, action, Some(id.target()));
                    e.details = json!({ "user": s.user_id.target() });
                    tx.audit(e);
                    Ok::<_, ServiceError>(())
                })
            })
            .await
    }

    /// The caller's own live sessions.
    pub async fn list_own_sessions(&self, sc: &SessionCaller, page: PageRequest) -> Result<Paged<Session>> {
        let p = page.to_store();
        let items = self
            .store
            .read()
            .await?
            .list_sessions(&SessionQuery { user: Some(sc.session.user_id), include_ended: false }, &p)
            .await?;
        Ok(Paged::new(items, p.limit, |s| s.id.to_string()))
    }

    /// Ends one of the caller's own sessions.
    pub async fn end_own_session(&self, sc: &SessionCaller, id: SessionId) -> Result<()> {
        self.end_one_session(&sc.caller, id, "ended_by_user", Some(sc.session.user_id)).await.map(|_| ())
    }

    /// Any user's sessions (admin).
    pub async fn list_sessions(
        &self,
        _by: &Authorized<Admin>,
        query: SessionQuery,
        page: PageRequest,
    ) -> Result<Paged<Session>> {
        let p = page.to_store();
        let items = self.store.read().await?.list_sessions(&query, &p).await?;
        Ok(Paged::new(items, p.limit, |s| s.id.to_string()))
    }

    /// Ends any session (admin).
    pub async fn revoke_session(&self, by: &Authorized<Admin>, id: SessionId) -> Result<Committed<()>> {
        self.end_one_session(by.caller(), id, "revoked", None).await
    }

    /// Ends every session of a user (admin).
    pub async fn revoke_user_sessions(&self, by: &Authorized<Admin>, user: UserId) -> Result<Committed<usize>> {
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    tx.get_user_including_deleted(user)
                        .await?
                        .ok_or(ServiceError::NotFound { kind: "user", id: user.to_string() })?;
                    let n = end_sessions(tx, user, "revoked", &caller.actor.principal(), &caller.meta).await?;
                    let mut e = draft(&caller, "session.revoke_all", Some(user.target()));
                    e.details = json!({ "ended": n });
                    tx.audit(e);
                    Ok::<_, ServiceError>(n)
                })
            })
            .await
    }

    /// Lifts a lockout (admin).
    pub async fn unlock_account(&self, by: &Authorized<Admin>, user: UserId) -> Result<Committed<bool>> {
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    tx.get_user(user).await?.ok_or(ServiceError::NotFound { kind: "user", id: user.to_string() })?;
                    let before = tx.get_login_failures(user).await?;
                    let mut acct = failures_from_domain(&before);
                    acct.admin_unlock();
                    tx.set_login_failures(user, &failures_to_domain(&acct)).await?;
                    let mut e = draft(&caller, "auth.unlock", Some(user.target()));
                    e.details =
                        json!({ "was_locked": before.locked_at.is_some(), "consecutive_failures": before.consecutive });
                    tx.audit(e);
                    Ok::<_, ServiceError>(before.locked_at.is_some())
                })
            })
            .await
    }

    /// Removes every factor and recovery code of a user (lost device); every session ends and
    /// the next sign-in goes to enrolment (admin).
    pub async fn reset_factors(
        &self,
        by: &Authorized<Admin>,
        user: UserId,
        reason: Option<String>,
    ) -> Result<Committed<usize>> {
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    tx.get_user(user).await?.ok_or(ServiceError::NotFound { kind: "user", id: user.to_string() })?;
                    let removed = tx.delete_all_factors(user).await?;
                    let mut e = draft(&caller, "factor.reset", Some(user.target()));
                    e.reason = reason.map(|r| truncate(&r, 1024));
                    e.details = json!({
                        "removed": removed.iter().map(|f| json!({ "factor": f.id.target(), "kind": f.kind })).collect::<Vec<_>>(),
                    });
                    tx.audit(e);
                    end_sessions(tx, user, "factors_reset", &caller.actor.principal(), &caller.meta).await?;
                    Ok::<_, ServiceError>(removed.len())
                })
            })
            .await
    }

    /// Sign-in state of a user for admins: factors, lockout, password metadata.
    pub async fn authn_status(&self, _by: &Authorized<Admin>, user: UserId) -> Result<serde_json::Value> {
        let mut r = self.store.read().await?;
        r.get_user(user).await?.ok_or(ServiceError::NotFound { kind: "user", id: user.to_string() })?;
        let factors = r.list_factors(user).await?;
        let failures = r.get_login_failures(user).await?;
        let password = r.get_password(user).await?.map(|(i, _)| i);
        let codes = r.unused_recovery_codes(user).await?;
        let locked = failures_from_domain(&failures).is_locked(&self.authn().settings.lockout, self.clock().now());
        Ok(
            json!({ "factors": factors, "failures": failures, "locked": locked, "password": password, "recovery_codes_left": codes }),
        )
    }

    /// The caller's own account and session.
    pub async fn me(&self, sc: &SessionCaller) -> Result<Me> {
        let uid = sc.session.user_id;
        let mut r = self.store.read().await?;
        let user = r.get_user(uid).await?.ok_or(ServiceError::SessionExpired)?;
        let factors = r.list_factors(uid).await?;
        let recovery_codes_left = r.unused_recovery_codes(uid).await?;
        let password = r.get_password(uid).await?.map(|(i, _)| i);
        let roles = current_roles(&mut r, uid).await?;
        drop(r);
        let pr = sc.session.phishing_resistant_at.is_some();
        let policy = effective_policy(&self.authn().settings.session_policy, &roles);
        Ok(Me {
            user,
            session: sc.session.clone(),
            factors,
            recovery_codes_left,
            password,
            roles: roles
                .iter()
                .map(|r| {
                    let blocked = r.session_policy.require_phishing_resistant && !pr;
                    RoleInSession {
                        role_id: r.id,
                        name: r.name.clone(),
                        exercisable: !blocked,
                        reason: blocked.then(|| "needs a session signed in with a passkey".into()),
                    }
                })
                .collect(),
            scopes: sc.caller.scopes.clone(),
            idle_timeout_secs: policy.idle_timeout.num_seconds(),
            step_up_fresh: sc.caller.session.as_ref().is_some_and(|s| s.fresh_mfa(self.clock().now())),
        })
    }
}

/// Ends every live session of `user` inside the current write job, one `session.revoke`
/// event each, so the change that caused it returns only once they are gone.
pub(crate) async fn end_sessions(
    tx: &mut WriteTx,
    user: UserId,
    reason: &str,
    by: &str,
    meta: &RequestMeta,
) -> Result<usize> {
    let now = tx.now();
    let ended = tx.end_user_sessions(user, now, reason, by).await?;
    for id in &ended {
        let mut e = AuditDraft::new(by.to_owned(), "session.revoke", Outcome::Success);
        e.target = Some(id.target());
        e.reason = Some(reason.to_owned());
        e.source_ip = meta.source_ip.clone();
        e.request_id = meta.request_id.clone();
        e.details = json!({ "user": user.target() });
        tx.audit(e);
    }
    Ok(ended.len())
}
