//! Single-use recovery codes.
//!
//! Ten codes, each 16 symbols of Crockford's base32 alphabet (`0-9A-Z` without `I L O U`),
//! shown as `XXXX-XXXX-XXXX-XXXX`: 16 * 5 = 80 bits from the operating system's random number
//! generator. Input is forgiving the Crockford way: case, hyphens and spaces are ignored, `O`
//! reads as `0`, `I` and `L` as `1`, so no code can be mistyped by confusing look-alikes.
//!
//! Stored as SHA-256 (with a domain-separation prefix), not Argon2: a slow hash protects
//! secrets a person chose, with little entropy. An 80-bit uniformly random code cannot be
//! found from its SHA-256 by search (2^80 guesses), and a fast hash lets a login check all
//! ten stored codes without ten Argon2 runs. Online guessing is bounded by the login
//! throttling.

use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Codes issued at a time.
pub const CODE_COUNT: usize = 10;
/// Symbols per code (5 bits each).
pub const CODE_SYMBOLS: usize = 16;
/// Entropy of one code.
pub const CODE_BITS: usize = CODE_SYMBOLS * 5;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const DOMAIN: &[u8] = b"wardkey-recovery-code-v1\0";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryError {
    #[error("the operating system's random number generator failed")]
    Rng,
}

/// A fresh set: `codes` to show the user once, `hashes` to store.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCodes {
    pub codes: Vec<String>,
    pub hashes: Vec<String>,
}

impl std::fmt::Debug for RecoveryCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecoveryCodes(<{} codes>)", self.codes.len())
    }
}

impl RecoveryCodes {
    /// Generate [`CODE_COUNT`] new codes.
    pub fn generate() -> Result<Self, RecoveryError> {
        let mut codes = Vec::with_capacity(CODE_COUNT);
        let mut hashes = Vec::with_capacity(CODE_COUNT);
        for _ in 0..CODE_COUNT {
            let code = new_code()?;
            hashes.push(hash_canonical(&canonical(&code).unwrap_or_default()));
            codes.push(code);
        }
        Ok(Self { codes, hashes })
    }
}

fn new_code() -> Result<String, RecoveryError> {
    let mut bytes = [0u8; CODE_BITS / 8];
    OsRng.try_fill_bytes(&mut bytes).map_err(|_| RecoveryError::Rng)?;
    // Read the 80 bits five at a time: each symbol is uniform, no modulo bias.
    let mut acc: u128 = 0;
    for b in bytes {
        acc = (acc << 8) | u128::from(b);
    }
    let mut out = String::with_capacity(CODE_SYMBOLS + 3);
    for i in 0..CODE_SYMBOLS {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        let shift = (CODE_SYMBOLS - 1 - i) * 5;
        let idx = usize::try_from((acc >> shift) & 0x1f).unwrap_or(0);
        out.push(char::from(ALPHABET[idx]));
    }
    Ok(out)
}

/// The canonical form of user input, or `None` if it cannot be a code.
fn canonical(input: &str) -> Option<String> {
    let mut out = String::with_capacity(CODE_SYMBOLS);
    for c in input.chars() {
        if c == '-' || c.is_whitespace() {
            continue;
        }
        let c = match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) {
            return None;
        }
        out.push(c);
    }
    (out.chars().count() == CODE_SYMBOLS).then_some(out)
}

fn hash_canonical(canonical: &str) -> String {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(canonical.as_bytes());
    hex::encode(h.finalize())
}

/// The stored form of a code as typed by a user (`None` if malformed).
pub fn hash_code(code: &str) -> Option<String> {
    canonical(code).map(|c| hash_canonical(&c))
}

/// If `code` matches one of `stored_hashes`, remove that hash (so it cannot be used again)
/// and return true. Every stored hash is compared in constant time, without stopping at the
/// first match. The caller persists the shortened list in the same transaction that accepts
/// the login.
pub fn verify_and_consume(stored_hashes: &mut Vec<String>, code: &str) -> bool {
    let Some(candidate) = hash_code(code) else {
        return false;
    };
    let mut found: Option<usize> = None;
    for (i, stored) in stored_hashes.iter().enumerate() {
        let eq: bool = stored.as_bytes().ct_eq(candidate.as_bytes()).into();
        if eq && found.is_none() {
            found = Some(i);
        }
    }
    match found {
        Some(i) => {
            stored_hashes.remove(i);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_entropy() {
        let set = RecoveryCodes::generate().unwrap();
        assert_eq!(set.codes.len(), CODE_COUNT);
        assert_eq!(set.hashes.len(), CODE_COUNT);
        for code in &set.codes {
            assert_eq!(code.len(), 19);
            assert_eq!(code.matches('-').count(), 3);
            assert!(code.chars().all(|c| c == '-' || ALPHABET.contains(&(c as u8))));
        }
        let mut unique = set.codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), CODE_COUNT);
        assert_eq!(CODE_BITS, 80);
    }

    #[test]
    fn crockford_input() {
        assert_eq!(canonical("abcd-efgh-jkmn-pqrs"), Some("ABCDEFGHJKMNPQRS".into()));
        assert_eq!(canonical("oOiL 0000 1111 2222"), Some("0011000011112222".into()));
        assert_eq!(canonical("ABCD-EFGH-JKMN-PQR"), None);
        assert_eq!(canonical("ABCD-EFGH-JKMN-PQRU"), None);
        assert_eq!(canonical("ABCD-EFGH-JKMN-PQRÉ"), None);
    }
}
