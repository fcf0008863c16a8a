//! Password policy per NIST SP 800-63B-4 (section 3.1.1.2).
//!
//! * length is counted in Unicode code points after NFKC normalisation;
//! * at least 15 when the password is the only factor, at least 8 inside MFA;
//! * at least 64 accepted; a hard cap (default 256) bounds the work spent on one input;
//! * no composition rules;
//! * refused: entries of a blocklist of common passwords shipped with the crate (also with
//!   digits or symbols added before or after), context words (username, name, organisation,
//!   e-mail), and trivially repetitive or sequential strings.
//!
//! Every refusal says why, without echoing the password.

use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

use unicode_normalization::UnicodeNormalization;

/// The blocklist data file: one lowercase password per line, `#` lines are comments.
const BLOCKLIST_DATA: &str = include_str!("../data/common-passwords.txt");

static BLOCKLIST: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| BLOCKLIST_DATA.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect());

/// Number of entries in the shipped blocklist.
pub fn blocklist_len() -> usize {
    BLOCKLIST.len()
}

/// NFKC-normalise a password. Every length check and every hash works on this form.
pub fn normalize(password: &str) -> String {
    password.nfkc().collect()
}

/// NIST floors: a configured policy may be stricter, never weaker.
pub const NIST_MIN_SINGLE_FACTOR: usize = 15;
/// Minimum length when the password is used together with a second factor.
pub const NIST_MIN_WITH_MFA: usize = 8;
/// Verifiers SHALL accept at least this many characters.
pub const NIST_MIN_MAX_LEN: usize = 64;

/// Context words shorter than this (in code points) are only refused as the whole password
/// (optionally with digits or symbols around it), not as a substring: a 3-letter name part
/// like "ann" occurs by chance inside many long passphrases.
const CONTEXT_SUBSTRING_MIN: usize = 4;
const CONTEXT_WORD_MIN: usize = 3;

/// Length limits of the password policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Minimum length (code points, after NFKC) when the password is the only factor.
    pub min_len_single_factor: usize,
    /// Minimum length when the account uses a second factor.
    pub min_len_with_mfa: usize,
    /// Hard upper bound; must be at least 64. Longer input is refused to bound hashing and
    /// normalisation cost.
    pub max_len: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self { min_len_single_factor: NIST_MIN_SINGLE_FACTOR, min_len_with_mfa: NIST_MIN_WITH_MFA, max_len: 256 }
    }
}

/// A configured policy weaker than NIST SP 800-63B-4 allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("min_len_single_factor must be at least {NIST_MIN_SINGLE_FACTOR}, got {0}")]
    SingleFactorTooShort(usize),
    #[error("min_len_with_mfa must be at least {NIST_MIN_WITH_MFA}, got {0}")]
    WithMfaTooShort(usize),
    #[error("max_len must be at least {NIST_MIN_MAX_LEN} and at least both minimums, got {0}")]
    MaxTooShort(usize),
}

/// Information about the account, whose words may not be used in its password.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PasswordContext<'a> {
    pub username: &'a str,
    pub display_name: Option<&'a str>,
    pub organisation: Option<&'a str>,
    pub email: Option<&'a str>,
    /// Further site-specific words (service name, department, ...).
    pub extra: &'a [&'a str],
}

/// Which context field a refused password was built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextField {
    Username,
    Name,
    Organisation,
    Email,
    ServiceWord,
}

impl fmt::Display for ContextField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Username => "your username",
            Self::Name => "your name",
            Self::Organisation => "your organisation's name",
            Self::Email => "your e-mail address",
            Self::ServiceWord => "the name of this service",
        })
    }
}

/// What makes a password trivially guessable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrivialKind {
    /// One short unit repeated (`aaaaaaaa`, `abcabcabc`).
    Repetitive,
    /// A run of consecutive characters (`abcdefgh`, `987654321`).
    Sequential,
}

/// Why a password was refused. `Display` is a message that can be shown to the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRejection {
    #[error("the password is not valid UTF-8 text")]
    InvalidUtf8,
    #[error("the password contains control characters")]
    ControlCharacter,
    #[error("the password is too short: it needs at least {min} characters, it has {actual}")]
    TooShort { min: usize, actual: usize },
    #[error("the password is too long: at most {max} characters are allowed, it has {actual}")]
    TooLong { max: usize, actual: usize },
    #[error("the password is on a list of common or breached passwords")]
    Blocklisted,
    #[error("the password contains {0}")]
    ContainsContextWord(ContextField),
    #[error("the password is {}", match .0 { TrivialKind::Repetitive => "a repeated pattern", TrivialKind::Sequential => "a sequence of consecutive characters" })]
    Trivial(TrivialKind),
}

impl PasswordRejection {
    /// A stable machine-readable code for APIs and audit events.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidUtf8 => "invalid_utf8",
            Self::ControlCharacter => "control_character",
            Self::TooShort { .. } => "too_short",
            Self::TooLong { .. } => "too_long",
            Self::Blocklisted => "blocklisted",
            Self::ContainsContextWord(_) => "context_word",
            Self::Trivial(_) => "trivial",
        }
    }
}

impl PasswordPolicy {
    /// Refuse a configuration weaker than NIST SP 800-63B-4.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.min_len_single_factor < NIST_MIN_SINGLE_FACTOR {
            return Err(PolicyError::SingleFactorTooShort(self.min_len_single_factor));
        }
        if self.min_len_with_mfa < NIST_MIN_WITH_MFA {
            return Err(PolicyError::WithMfaTooShort(self.min_len_with_mfa));
        }
        if self.max_len < NIST_MIN_MAX_LEN
            || self.max_len < self.min_len_single_factor
            || self.max_len < self.min_len_with_mfa
        {
            return Err(PolicyError::MaxTooShort(self.max_len));
        }
        Ok(())
    }

    /// Check a new password given as raw bytes (e.g. a form field that may not be UTF-8).
    pub fn check_bytes(
        &self,
        password: &[u8],
        context: &PasswordContext<'_>,
        with_mfa: bool,
    ) -> Result<(), PasswordRejection> {
        let s = std::str::from_utf8(password).map_err(|_| PasswordRejection::InvalidUtf8)?;
        self.check(s, context, with_mfa)
    }

    /// Check a new password against the policy. `with_mfa` is true when the account has (or
    /// is required to have) a second factor, which lowers the minimum length.
    pub fn check(
        &self,
        password: &str,
        context: &PasswordContext<'_>,
        with_mfa: bool,
    ) -> Result<(), PasswordRejection> {
        // Bound the work before normalising: a code point is at most 4 bytes, so more bytes
        // than 4 * max_len means more code points than max_len.
        let max = self.max_len;
        if password.len() > max.saturating_mul(4) {
            return Err(PasswordRejection::TooLong { max, actual: password.chars().count() });
        }
        let raw_len = password.chars().count();
        if raw_len > max {
            return Err(PasswordRejection::TooLong { max, actual: raw_len });
        }
        if password.chars().any(char::is_control) {
            return Err(PasswordRejection::ControlCharacter);
        }
        let normalised = normalize(password);
        let len = normalised.chars().count();
        if len > max {
            return Err(PasswordRejection::TooLong { max, actual: len });
        }
        let min = if with_mfa { self.min_len_with_mfa } else { self.min_len_single_factor };
        if len < min {
            return Err(PasswordRejection::TooShort { min, actual: len });
        }
        let lower = normalised.to_lowercase();
        if is_blocklisted(&lower) {
            return Err(PasswordRejection::Blocklisted);
        }
        if let Some(field) = context_word(&lower, context) {
            return Err(PasswordRejection::ContainsContextWord(field));
        }
        if let Some(kind) = trivial(&lower) {
            return Err(PasswordRejection::Trivial(kind));
        }
        Ok(())
    }
}

/// The password with leading and trailing non-letters removed (`"123password!!"` ->
/// `"password"`), the usual way a common word is "strengthened".
fn core_word(lower: &str) -> &str {
    lower.trim_matches(|c: char| !c.is_alphabetic())
}

fn is_blocklisted(lower: &str) -> bool {
    if BLOCKLIST.contains(lower) {
        return true;
    }
    let core = core_word(lower);
    // A core of 1-3 letters ("a1234567890123") is not a dictionary word; leave it to length.
    if core.chars().count() >= 4 && BLOCKLIST.contains(core) {
        return true;
    }
    // Also the core with digits kept but surrounding symbols removed ("!!password123!!").
    let no_symbols = lower.trim_matches(|c: char| !c.is_alphanumeric());
    no_symbols != lower && BLOCKLIST.contains(no_symbols)
}

/// Lowercase letters and digits only: separators do not hide a context word.
fn squash(s: &str) -> String {
    s.chars().filter(|c| c.is_alphanumeric()).collect()
}

fn context_tokens(context: &PasswordContext<'_>) -> Vec<(String, ContextField)> {
    let mut out = Vec::new();
    let mut push_field = |value: &str, field: ContextField| {
        let lower = normalize(value).to_lowercase();
        out.push((squash(&lower), field));
        for part in lower.split(|c: char| !c.is_alphanumeric()) {
            out.push((part.to_owned(), field));
        }
    };
    push_field(context.username, ContextField::Username);
    if let Some(name) = context.display_name {
        push_field(name, ContextField::Name);
    }
    if let Some(org) = context.organisation {
        push_field(org, ContextField::Organisation);
    }
    if let Some(email) = context.email {
        // The local part and the first domain label ("jane.doe@stmarys.example").
        let mut it = email.splitn(2, '@');
        if let Some(local) = it.next() {
            push_field(local, ContextField::Email);
        }
        if let Some(label) = it.next().and_then(|d| d.split('.').next()) {
            push_field(label, ContextField::Email);
        }
    }
    for word in context.extra {
        push_field(word, ContextField::ServiceWord);
    }
    out.retain(|(t, _)| t.chars().count() >= CONTEXT_WORD_MIN);
    out
}

fn context_word(lower: &str, context: &PasswordContext<'_>) -> Option<ContextField> {
    let squashed = squash(lower);
    let core = core_word(lower);
    for (token, field) in context_tokens(context) {
        let n = token.chars().count();
        let hit = if n >= CONTEXT_SUBSTRING_MIN {
            squashed.contains(token.as_str())
        } else {
            core == token || squashed == token
        };
        if hit {
            return Some(field);
        }
    }
    None
}

/// Signed distance from `a` to `b`; digits wrap (…7890123…) as on a keyboard row.
fn char_step(a: char, b: char) -> i64 {
    if a.is_ascii_digit() && b.is_ascii_digit() {
        let d = (i64::from(u32::from(b)) - i64::from(u32::from(a))).rem_euclid(10);
        return match d {
            9 => -1,
            d => d,
        };
    }
    i64::from(u32::from(b)) - i64::from(u32::from(a))
}

fn trivial(lower: &str) -> Option<TrivialKind> {
    let chars: Vec<char> = lower.chars().collect();
    let n = chars.len();
    if n == 0 {
        return None;
    }
    // Repetition of a unit of at most a third of the length.
    for period in 1..=n / 3 {
        if n.is_multiple_of(period) && chars.iter().enumerate().all(|(i, c)| *c == chars[i % period]) {
            return Some(TrivialKind::Repetitive);
        }
    }
    // Only runs of at least 3 consecutive or repeated characters ("1234567890abcdef!",
    // "zyxw4444qrst"), separators ignored.
    let alnum: Vec<char> = chars.iter().copied().filter(|c| c.is_alphanumeric()).collect();
    if alnum.len() * 2 < n || alnum.len() < 3 {
        return None;
    }
    let mut i = 0;
    while i < alnum.len() {
        let mut len = 1;
        if let (Some(&a), Some(&b)) = (alnum.get(i), alnum.get(i + 1)) {
            let step = char_step(a, b);
            if (-1..=1).contains(&step) {
                len = 2;
                while let (Some(&x), Some(&y)) = (alnum.get(i + len - 1), alnum.get(i + len)) {
                    if char_step(x, y) != step {
                        break;
                    }
                    len += 1;
                }
            }
        }
        if len < 3 {
            return None;
        }
        i += len;
    }
    Some(TrivialKind::Sequential)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocklist_loaded() {
        assert!(blocklist_len() >= 29_000);
        assert!(BLOCKLIST.contains("password"));
        assert!(!BLOCKLIST.iter().any(|w| w.starts_with('#')));
    }

    #[test]
    fn core_and_trivial() {
        assert_eq!(core_word("123password!!"), "password");
        assert_eq!(trivial("aaaaaaaaaaaaaaa"), Some(TrivialKind::Repetitive));
        assert_eq!(trivial("abcabcabcabcabc"), Some(TrivialKind::Repetitive));
        assert_eq!(trivial("abcdefghijklmnop"), Some(TrivialKind::Sequential));
        assert_eq!(trivial("123456789012345"), Some(TrivialKind::Sequential));
        assert_eq!(trivial("543210987654321"), Some(TrivialKind::Sequential));
        assert_eq!(trivial("1234567890abcdef!"), Some(TrivialKind::Sequential));
        assert_eq!(trivial("zyxw-4444-qrst"), Some(TrivialKind::Sequential));
        assert_eq!(trivial("correct horse battery staple"), None);
        assert_eq!(trivial("abcdefgh tulip"), None);
    }

    #[test]
    fn default_policy_is_nist() {
        assert_eq!(PasswordPolicy::default().validate(), Ok(()));
        let weak = PasswordPolicy { min_len_single_factor: 12, ..PasswordPolicy::default() };
        assert_eq!(weak.validate(), Err(PolicyError::SingleFactorTooShort(12)));
        let short_max = PasswordPolicy { max_len: 63, ..PasswordPolicy::default() };
        assert_eq!(short_max.validate(), Err(PolicyError::MaxTooShort(63)));
    }
}
