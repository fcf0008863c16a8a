//! TOTP second factor (RFC 6238 over RFC 4226 HOTP): HMAC-SHA-1, 6 digits, 30-second steps,
//! 160-bit secrets from the operating system, ±1 step of clock skew, single use enforced by
//! returning the matched step for the caller to store.
//!
//! Time is always passed in (`DateTime<Utc>` from the injected clock); the system clock is
//! never read here.

use std::fmt;

use chrono::{DateTime, Utc};
use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, KeyInit, Mac};
use rand::TryRngCore;
use rand::rngs::OsRng;
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// Digits of a code.
pub const DIGITS: u32 = 6;
/// Length of a time step in seconds.
pub const STEP_SECONDS: i64 = 30;
/// Secret size: 160 bits, the HMAC-SHA-1 output size recommended by RFC 4226 section 4.
pub const SECRET_BYTES: usize = 20;
/// Steps of clock skew accepted either side of the current one.
pub const SKEW_STEPS: u64 = 1;

/// Why a TOTP code was refused (or a secret could not be made).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TotpError {
    #[error("the code must be exactly {DIGITS} digits")]
    Malformed,
    #[error("the code is wrong or has expired")]
    Invalid,
    #[error("the code has already been used")]
    Replayed,
    #[error("the secret must be at least {SECRET_BYTES} bytes")]
    SecretTooShort,
    #[error("the secret is not valid base32")]
    SecretEncoding,
    #[error("time before the Unix epoch")]
    TimeBeforeEpoch,
    #[error("the operating system's random number generator failed")]
    Rng,
}

/// A TOTP shared secret. `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(Vec<u8>);

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TotpSecret(<{} bytes>)", self.0.len())
    }
}

impl TotpSecret {
    /// A fresh 160-bit secret from the operating system's random number generator.
    pub fn generate() -> Result<Self, TotpError> {
        let mut bytes = vec![0u8; SECRET_BYTES];
        OsRng.try_fill_bytes(&mut bytes).map_err(|_| TotpError::Rng)?;
        Ok(Self(bytes))
    }

    /// Wrap existing secret bytes (e.g. decrypted from storage); at least 160 bits.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, TotpError> {
        if bytes.len() < SECRET_BYTES {
            return Err(TotpError::SecretTooShort);
        }
        Ok(Self(bytes))
    }

    /// Parse the base32 form (RFC 4648, padding, spaces and case ignored).
    pub fn from_base32(s: &str) -> Result<Self, TotpError> {
        let cleaned: String =
            s.chars().filter(|c| !c.is_whitespace() && *c != '=').map(|c| c.to_ascii_uppercase()).collect();
        let bytes = BASE32_NOPAD.decode(cleaned.as_bytes()).map_err(|_| TotpError::SecretEncoding)?;
        Self::from_bytes(bytes)
    }

    /// Unpadded base32, as authenticator apps expect.
    pub fn to_base32(&self) -> String {
        BASE32_NOPAD.encode(&self.0)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The RFC 6238 time step containing `now` (T0 = 0, X = 30 s).
pub fn step_at(now: DateTime<Utc>) -> Result<u64, TotpError> {
    u64::try_from(now.timestamp().div_euclid(STEP_SECONDS)).map_err(|_| TotpError::TimeBeforeEpoch)
}

/// RFC 4226 HOTP value (dynamic truncation) for `counter`, reduced to `digits` digits.
fn hotp(key: &[u8], counter: u64, digits: u32) -> u32 {
    // HMAC accepts keys of any length, so this cannot fail; keep it total anyway.
    let Ok(mut mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(key) else {
        return u32::MAX;
    };
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = usize::from(h[19] & 0x0f);
    let bin = u32::from_be_bytes([h[offset] & 0x7f, h[offset + 1], h[offset + 2], h[offset + 3]]);
    bin % 10u32.pow(digits.min(9))
}

/// The code for a given time step, zero-padded to `digits` (6 in production; the RFC 6238
/// test vectors use 8).
pub fn code_at_step(secret: &TotpSecret, step: u64, digits: u32) -> String {
    let digits = digits.clamp(1, 9);
    format!("{:0width$}", hotp(&secret.0, step, digits), width = digits as usize)
}

/// The current 6-digit code (for tests and enrolment previews).
pub fn generate(secret: &TotpSecret, now: DateTime<Utc>) -> Result<String, TotpError> {
    Ok(code_at_step(secret, step_at(now)?, DIGITS))
}

/// Verify a 6-digit code at time `now`, accepting the current step and one step either side.
/// Spaces in the code are ignored. A code whose step is not after `last_used_step` is refused
/// as a replay. On success returns the matched step: the caller stores it as the new
/// `last_used_step` (in the same transaction that accepts the login) so each code works once.
pub fn verify(
    secret: &TotpSecret,
    code: &str,
    now: DateTime<Utc>,
    last_used_step: Option<u64>,
) -> Result<u64, TotpError> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TotpError::Malformed);
    }
    let current = step_at(now)?;
    // Compare against every candidate step without stopping early.
    let mut matched: Option<u64> = None;
    let mut replayed = false;
    for step in current.saturating_sub(SKEW_STEPS)..=current.saturating_add(SKEW_STEPS) {
        let expected = code_at_step(secret, step, DIGITS);
        let eq: bool = expected.as_bytes().ct_eq(code.as_bytes()).into();
        if eq {
            if last_used_step.is_some_and(|last| step <= last) {
                replayed = true;
            } else if matched.is_none() {
                matched = Some(step);
            }
        }
    }
    match (matched, replayed) {
        (Some(step), _) => Ok(step),
        (None, true) => Err(TotpError::Replayed),
        (None, false) => Err(TotpError::Invalid),
    }
}

/// Percent-encode everything outside RFC 3986's unreserved set.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `otpauth://totp/...` URI for enrolment (Key Uri Format used by authenticator apps):
/// label `Issuer:account`, with `secret`, `issuer`, `algorithm`, `digits` and `period`.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &TotpSecret) -> String {
    let issuer_enc = percent_encode(issuer);
    format!(
        "otpauth://totp/{issuer_enc}:{account}?secret={secret}&issuer={issuer_enc}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
        account = percent_encode(account),
        secret = secret.to_base32(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4226_appendix_d() {
        // RFC 4226 Appendix D: HOTP values for counters 0..9 with the ASCII key "12345678901234567890".
        let expected = [755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489];
        for (counter, want) in expected.iter().enumerate() {
            assert_eq!(hotp(b"12345678901234567890", counter as u64, 6), *want);
        }
    }

    #[test]
    fn secret_roundtrip_and_size() {
        let s = TotpSecret::generate().unwrap();
        assert_eq!(s.as_bytes().len(), SECRET_BYTES);
        assert_ne!(s, TotpSecret::generate().unwrap());
        let b32 = s.to_base32();
        assert_eq!(b32.len(), 32);
        assert_eq!(TotpSecret::from_base32(&b32.to_lowercase()).unwrap(), s);
        assert_eq!(TotpSecret::from_bytes(vec![0; 19]), Err(TotpError::SecretTooShort));
        assert_eq!(TotpSecret::from_base32("not base32!"), Err(TotpError::SecretEncoding));
        assert!(!format!("{s:?}").contains(&b32));
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(percent_encode("St Mary's:ICU"), "St%20Mary%27s%3AICU");
        assert_eq!(percent_encode("a.b-c_d~"), "a.b-c_d~");
    }
}
