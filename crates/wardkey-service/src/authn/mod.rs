//! People signing in: passwords, second factors, enrolment, step-up, sessions, lockout.
//!
//! Every step is one store write with its audit event(s). Sign-in failures are answered the
//! same way whatever went wrong (unknown user, wrong password, locked, not active) and cost
//! the same Argon2 work; the audit event keeps the real reason. A session's cookie secret is
//! never stored: only its hash, which rotates at every completed step (sign-in, step-up).

use crate::auth::truncate;
use crate::auth::{Admin, Authorized, Caller, RequestMeta};
use crate::{PageRequest, Paged, Result, ServiceError, Services};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Mutex;
use wardkey_audit::Action;
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

mod enrolment;
mod factors;
mod passwords;
mod sessions;
mod signin;

pub(crate) use sessions::end_sessions;

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

fn anon_event(action: Action, meta: &RequestMeta, outcome: Outcome) -> AuditDraft {
    let mut e = AuditDraft::new(Actor::Anonymous.principal(), action, outcome);
    e.source_ip = meta.source_ip.clone();
    e.request_id = meta.request_id.clone();
    e
}

fn user_event(user: UserId, action: Action, meta: &RequestMeta, outcome: Outcome) -> AuditDraft {
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
        let mut e = anon_event(Action::AuthRateLimited, meta, Outcome::Denied);
        e.reason = Some(format!("source over its {what} limit"));
        self.store.append_audit(vec![e]).await?;
        Err(ServiceError::RateLimited { retry_after_secs: 1 })
    }

    /// Records a refused request that reached no service (a forged form, a cross-site post):
    /// the audit event is the only thing written.
    pub async fn audit_refusal(&self, meta: &RequestMeta, action: Action, reason: &str) -> Result<()> {
        let mut e = anon_event(action, meta, Outcome::Denied);
        e.reason = Some(truncate(reason, 256));
        self.store.append_audit(vec![e]).await?;
        Ok(())
    }
}
