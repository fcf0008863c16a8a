//! Server-side sessions: identifiers, timeout policy, the per-session timestamps that decide
//! expiry and step-up, and the session cookie.
//!
//! A [`SessionId`] is 256 bits from the operating system's random number generator, sent to
//! the browser as 43 base64url characters and stored only as its SHA-256 (with a
//! domain-separation prefix), so a copy of the session table cannot be replayed as cookies.
//!
//! Expiry is exact: a session whose idle deadline (`last_seen_at + idle_timeout`) or absolute
//! deadline (`created_at + absolute_lifetime`) is `now` is already expired. Time is always a
//! parameter (`DateTime<Utc>` from the injected clock); the system clock is never read here.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use data_encoding::BASE64URL_NOPAD;
use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Random bytes in a session id (256 bits).
pub const SESSION_ID_BYTES: usize = 32;
/// Length of the encoded id: base64url without padding of 32 bytes.
pub const SESSION_ID_ENCODED_LEN: usize = 43;
/// Name of the session cookie. The `__Host-` prefix makes browsers insist on `Secure`,
/// `Path=/` and no `Domain`, so no sibling host can set or overwrite it.
pub const COOKIE_NAME: &str = "__Host-wardkey_session";

/// Default idle timeout: 15 minutes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::minutes(15);
/// Default absolute lifetime: 12 hours.
pub const DEFAULT_ABSOLUTE_LIFETIME: Duration = Duration::hours(12);
/// Default step-up window: a second factor within the last 5 minutes.
pub const DEFAULT_STEP_UP_WINDOW: Duration = Duration::minutes(5);
/// Largest idle timeout accepted: 24 hours.
pub const MAX_IDLE_TIMEOUT: Duration = Duration::hours(24);
/// Largest absolute lifetime accepted: 30 days.
pub const MAX_ABSOLUTE_LIFETIME: Duration = Duration::days(30);
/// Largest step-up window accepted: 1 hour.
pub const MAX_STEP_UP_WINDOW: Duration = Duration::hours(1);

const HASH_DOMAIN: &[u8] = b"wardkey-session-id-v1\0";

/// Why a session id could not be made or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionIdError {
    #[error("the operating system's random number generator failed")]
    Rng,
    #[error("the session id is malformed")]
    Malformed,
}

/// A session identifier. `Debug` never shows it; equality is constant-time.
#[derive(Clone)]
pub struct SessionId([u8; SESSION_ID_BYTES]);

impl SessionId {
    /// A fresh id from the operating system's random number generator.
    pub fn generate() -> Result<Self, SessionIdError> {
        let mut bytes = [0u8; SESSION_ID_BYTES];
        OsRng.try_fill_bytes(&mut bytes).map_err(|_| SessionIdError::Rng)?;
        Ok(Self(bytes))
    }

    /// Read an id from its cookie form. Anything but exactly [`SESSION_ID_ENCODED_LEN`]
    /// characters of the base64url alphabet, in canonical form (unused trailing bits zero),
    /// is refused. The length is checked before anything else, so huge input costs nothing.
    pub fn parse(encoded: &str) -> Result<Self, SessionIdError> {
        let raw = encoded.as_bytes();
        if raw.len() != SESSION_ID_ENCODED_LEN
            || !raw.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            return Err(SessionIdError::Malformed);
        }
        let decoded = BASE64URL_NOPAD.decode(raw).map_err(|_| SessionIdError::Malformed)?;
        let bytes: [u8; SESSION_ID_BYTES] = decoded.try_into().map_err(|_| SessionIdError::Malformed)?;
        Ok(Self(bytes))
    }

    /// The cookie form: 43 base64url characters, no padding.
    pub fn encode(&self) -> String {
        BASE64URL_NOPAD.encode(&self.0)
    }

    /// The stored form: SHA-256 over a domain-separation prefix and the 32 id bytes. A 256-bit
    /// uniformly random id needs no slow hash.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(HASH_DOMAIN);
        h.update(self.0);
        h.finalize().into()
    }

    /// Constant-time comparison of two ids.
    pub fn ct_eq(&self, other: &SessionId) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// Whether `stored` (a value from [`SessionId::hash`]) is this id's hash, compared in
    /// constant time. A stored value of the wrong length never matches.
    pub fn matches_hash(&self, stored: &[u8]) -> bool {
        hash_eq(&self.hash(), stored)
    }
}

/// Constant-time equality of two stored session hashes (false if the lengths differ).
pub fn hash_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

impl PartialEq for SessionId {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other)
    }
}

impl Eq for SessionId {}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(<redacted>)")
    }
}

/// A session policy that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionPolicyError {
    #[error("the idle timeout must be positive and at most {MAX_IDLE_TIMEOUT}")]
    IdleTimeout,
    #[error("the absolute lifetime must be positive and at most {MAX_ABSOLUTE_LIFETIME}")]
    AbsoluteLifetime,
    #[error("the idle timeout must not exceed the absolute lifetime")]
    IdleExceedsAbsolute,
    #[error("the step-up window must be positive and at most {MAX_STEP_UP_WINDOW}")]
    StepUpWindow,
}

/// Session timeouts. The global policy is tightened per role with [`SessionPolicy::strictest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// A session unused this long is expired (HIPAA automatic logoff).
    pub idle_timeout: Duration,
    /// A session this old is expired however active it is.
    pub absolute_lifetime: Duration,
    /// Sensitive actions need a second factor used within this window.
    pub step_up_window: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            absolute_lifetime: DEFAULT_ABSOLUTE_LIFETIME,
            step_up_window: DEFAULT_STEP_UP_WINDOW,
        }
    }
}

impl SessionPolicy {
    /// Check the bounds: each duration positive and under its cap, idle ≤ absolute.
    pub fn validate(&self) -> Result<(), SessionPolicyError> {
        if self.idle_timeout <= Duration::zero() || self.idle_timeout > MAX_IDLE_TIMEOUT {
            return Err(SessionPolicyError::IdleTimeout);
        }
        if self.absolute_lifetime <= Duration::zero() || self.absolute_lifetime > MAX_ABSOLUTE_LIFETIME {
            return Err(SessionPolicyError::AbsoluteLifetime);
        }
        if self.idle_timeout > self.absolute_lifetime {
            return Err(SessionPolicyError::IdleExceedsAbsolute);
        }
        if self.step_up_window <= Duration::zero() || self.step_up_window > MAX_STEP_UP_WINDOW {
            return Err(SessionPolicyError::StepUpWindow);
        }
        Ok(())
    }

    /// The policy for a user holding roles with these overrides: each timeout is the minimum
    /// of the global value and every override that sets it (the strictest wins; an override
    /// can only tighten). The idle timeout is also capped at the resulting absolute lifetime.
    /// Overrides should be checked with [`RolePolicyOverride::validate`] when configured; a
    /// non-positive one that slips through makes every session expired (fail closed).
    pub fn strictest(global: &SessionPolicy, role_overrides: &[RolePolicyOverride]) -> Self {
        let mut out = *global;
        for o in role_overrides {
            if let Some(idle) = o.idle_timeout {
                out.idle_timeout = out.idle_timeout.min(idle);
            }
            if let Some(abs) = o.absolute_lifetime {
                out.absolute_lifetime = out.absolute_lifetime.min(abs);
            }
        }
        out.idle_timeout = out.idle_timeout.min(out.absolute_lifetime);
        out
    }
}

/// A role's tightening of the session policy; `None` leaves the value to other policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RolePolicyOverride {
    pub idle_timeout: Option<Duration>,
    pub absolute_lifetime: Option<Duration>,
}

impl RolePolicyOverride {
    /// Each value set must be positive and under the same caps as the global policy.
    pub fn validate(&self) -> Result<(), SessionPolicyError> {
        if let Some(idle) = self.idle_timeout
            && (idle <= Duration::zero() || idle > MAX_IDLE_TIMEOUT)
        {
            return Err(SessionPolicyError::IdleTimeout);
        }
        if let Some(abs) = self.absolute_lifetime
            && (abs <= Duration::zero() || abs > MAX_ABSOLUTE_LIFETIME)
        {
            return Err(SessionPolicyError::AbsoluteLifetime);
        }
        Ok(())
    }
}

/// The outcome of [`SessionState::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionCheck {
    Active,
    /// Unused for the idle timeout; expired since `since` (the caller ends it and audits
    /// `session.timeout`).
    IdleExpired {
        since: DateTime<Utc>,
    },
    /// Older than the absolute lifetime; expired since `since`.
    AbsoluteExpired {
        since: DateTime<Utc>,
    },
    /// Ended explicitly (logout, revocation, suspension).
    Ended,
}

/// The timestamps stored with a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionState {
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// Last time a second factor was verified in this session.
    pub mfa_at: Option<DateTime<Utc>>,
    /// Last time a phishing-resistant factor (WebAuthn) was verified in this session.
    pub phishing_resistant_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl SessionState {
    /// A session created (and last seen) at `now`, with no factor recorded yet.
    pub fn new(now: DateTime<Utc>) -> Self {
        Self { created_at: now, last_seen_at: now, mfa_at: None, phishing_resistant_at: None, ended_at: None }
    }

    /// Whether the session may be used at `now`. Deadlines are exclusive: at exactly
    /// `last_seen_at + idle_timeout` or `created_at + absolute_lifetime` it is expired. If
    /// both deadlines have passed, the earlier one is reported (absolute on a tie).
    pub fn check(&self, policy: &SessionPolicy, now: DateTime<Utc>) -> SessionCheck {
        if self.ended_at.is_some() {
            return SessionCheck::Ended;
        }
        let absolute = passed(self.created_at, policy.absolute_lifetime, now);
        let idle = passed(self.last_seen_at, policy.idle_timeout, now);
        match (absolute, idle) {
            (Some(a), Some(i)) if i < a => SessionCheck::IdleExpired { since: i },
            (Some(a), _) => SessionCheck::AbsoluteExpired { since: a },
            (None, Some(i)) => SessionCheck::IdleExpired { since: i },
            (None, None) => SessionCheck::Active,
        }
    }

    /// Record use at `now` (never moves `last_seen_at` backwards). The caller checks first.
    pub fn touch(&mut self, now: DateTime<Utc>) {
        self.last_seen_at = self.last_seen_at.max(now);
    }

    /// Record a verified second factor at `now`; `phishing_resistant` for WebAuthn.
    pub fn record_second_factor(&mut self, now: DateTime<Utc>, phishing_resistant: bool) {
        self.mfa_at = Some(now);
        if phishing_resistant {
            self.phishing_resistant_at = Some(now);
        }
        self.touch(now);
    }

    /// Mark the session ended at `now` (idempotent: the first end time is kept).
    pub fn end(&mut self, now: DateTime<Utc>) {
        self.ended_at.get_or_insert(now);
    }

    /// Whether a sensitive action needs a fresh second factor: none recorded, or the last one
    /// is `step_up_window` old or older (or stamped in the future, which is not trusted).
    pub fn needs_step_up(&self, policy: &SessionPolicy, now: DateTime<Utc>) -> bool {
        !fresh(self.mfa_at, now, policy.step_up_window)
    }

    /// Whether a phishing-resistant factor was used less than `window` before `now`.
    pub fn has_phishing_resistant(&self, now: DateTime<Utc>, window: Duration) -> bool {
        fresh(self.phishing_resistant_at, now, window)
    }
}

/// `Some(start + len)` if that deadline is at or before `now`. A deadline past the end of
/// representable time never passes.
fn passed(start: DateTime<Utc>, len: Duration, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    start.checked_add_signed(len).filter(|deadline| *deadline <= now)
}

fn fresh(at: Option<DateTime<Utc>>, now: DateTime<Utc>, window: Duration) -> bool {
    match at {
        Some(t) if t <= now => now.signed_duration_since(t) < window,
        _ => false,
    }
}

/// The session cookie. No `Domain` is ever set (the `__Host-` prefix forbids it); `Max-Age`
/// is optional: without it the browser drops the cookie when it closes, and the server-side
/// deadlines apply either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CookieSpec {
    pub max_age: Option<Duration>,
}

impl CookieSpec {
    /// A cookie that lives in the browser no longer than the policy's absolute lifetime.
    pub fn for_policy(policy: &SessionPolicy) -> Self {
        Self { max_age: Some(policy.absolute_lifetime) }
    }

    /// The `Set-Cookie` header value carrying `id`.
    pub fn set_cookie(&self, id: &SessionId) -> String {
        let mut out = format!("{COOKIE_NAME}={}; Path=/; Secure; HttpOnly; SameSite=Strict", id.encode());
        if let Some(age) = self.max_age {
            out.push_str(&format!("; Max-Age={}", age.num_seconds().max(0)));
        }
        out
    }

    /// The `Set-Cookie` header value that deletes the session cookie (logout, expiry).
    pub fn clear_cookie() -> String {
        format!("{COOKIE_NAME}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
    }

    /// The session id in a request's `Cookie` header, if exactly one well-formed session
    /// cookie is present. Several cookies with the session name (a sign of cookie injection)
    /// or a malformed value give `None`.
    pub fn session_id_from_cookie_header(header: &str) -> Option<SessionId> {
        let mut found = None;
        for pair in header.split(';') {
            let Some((name, value)) = pair.trim().split_once('=') else {
                continue;
            };
            if name.trim() != COOKIE_NAME {
                continue;
            }
            if found.is_some() {
                return None;
            }
            found = Some(SessionId::parse(value.trim()).ok()?);
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_length_matches_bytes() {
        let id = SessionId::generate().unwrap();
        assert_eq!(id.encode().len(), SESSION_ID_ENCODED_LEN);
        assert_eq!(SESSION_ID_BYTES * 8, 256);
    }

    #[test]
    fn debug_redacts() {
        let id = SessionId::generate().unwrap();
        assert!(!format!("{id:?}").contains(&id.encode()));
    }
}
