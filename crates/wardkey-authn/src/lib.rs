//! Authentication mechanics for Wardkey: password policy per NIST SP 800-63B-4, Argon2id
//! hashing on a bounded blocking pool, TOTP (RFC 6238), single-use recovery codes, session ids,
//! timeouts and cookies, login throttling, passkeys (WebAuthn), sealing of secrets at rest and
//! QR codes for enrolment.
//!
//! Nothing here reads the system clock: time is always a parameter, so callers inject the
//! domain `Clock`. The only I/O is `secretbox` reading (or creating) its key file.
//! Randomness comes from the operating system.

pub mod hash;
pub mod password;
pub mod qr;
pub mod recovery;
pub mod secretbox;
pub mod session;
pub mod throttle;
pub mod totp;
pub mod webauthn;

pub use hash::{HashError, HashParams, PasswordHasher, dummy_verify, hash_password, verify_password};
pub use password::{
    ContextField, PasswordContext, PasswordPolicy, PasswordRejection, PolicyError, TrivialKind, normalize,
};
pub use recovery::{RecoveryCodes, RecoveryError, verify_and_consume};
pub use session::{
    CookieSpec, RolePolicyOverride, SessionCheck, SessionId, SessionIdError, SessionPolicy, SessionPolicyError,
    SessionState,
};
pub use throttle::{
    AccountFailures, FailureOutcome, LockoutPolicy, LockoutPolicyError, RateLimitError, SourceRateLimiter,
};
pub use totp::{TotpError, TotpSecret};
