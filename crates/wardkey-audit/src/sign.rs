//! Signed C2SP checkpoints (c2sp.org/tlog-checkpoint, c2sp.org/signed-note, Ed25519).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use rand::TryRngCore;
use serde::{Deserialize, Serialize};
use signed_note::{Note, StandardSigner, StandardVerifier, Verifier as _, VerifierList};

use crate::event::format_time;
use crate::{AuditError, Hash};

/// Ed25519 signature algorithm byte of signed-note keys.
const ALG_ED25519: u8 = 1;

/// Extension line prefix carrying the checkpoint time.
const TIME_PREFIX: &str = "time ";

/// A signed-note key name / checkpoint origin: non-empty, no whitespace, no `+`, no control
/// characters.
fn origin_is_valid(origin: &str) -> bool {
    signed_note::is_key_name_valid(origin) && !origin.chars().any(char::is_control)
}

/// Replaces characters a key name may not contain with `-`; empty becomes `wardkey`.
fn sanitize_origin(origin: &str) -> String {
    let s: String =
        origin.chars().map(|c| if c.is_whitespace() || c.is_control() || c == '+' { '-' } else { c }).collect();
    if s.is_empty() { "wardkey".to_owned() } else { s }
}

/// The log's signing key. The key name is the checkpoint origin (e.g. `wardkey/<install-id>`).
/// `Debug` never shows the secret.
#[derive(Clone)]
pub struct LogSigner {
    origin: String,
    key_id: u32,
    key: SigningKey,
}

impl fmt::Debug for LogSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogSigner")
            .field("origin", &self.origin)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl LogSigner {
    /// A new key from OS randomness. Characters not allowed in a key name (whitespace, `+`,
    /// control characters) are replaced by `-`; see [`LogSigner::origin`] for the result.
    ///
    /// Falls back to the thread RNG (itself seeded from the OS) if the OS source fails.
    pub fn generate(origin: &str) -> Self {
        let mut seed = [0u8; 32];
        if rand::rngs::OsRng.try_fill_bytes(&mut seed).is_err() {
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut seed);
        }
        Self::build(sanitize_origin(origin), SigningKey::from_bytes(&seed))
    }

    /// A key from a 32-byte Ed25519 seed (deterministic; for tests and imports).
    pub fn from_seed(origin: &str, seed: [u8; 32]) -> Result<Self, AuditError> {
        if !origin_is_valid(origin) {
            return Err(AuditError::InvalidKey(format!("invalid origin {origin:?}")));
        }
        Ok(Self::build(origin.to_owned(), SigningKey::from_bytes(&seed)))
    }

    fn build(origin: String, key: SigningKey) -> Self {
        let key_id = signed_note::key_id(&origin, &public_key_bytes(&key));
        LogSigner { origin, key_id, key }
    }

    /// The secret key file contents: signed-note's private key encoding
    /// `PRIVATE+KEY+<origin>+<key id hex>+<base64(0x01 ‖ seed)>` and a newline. Write it with
    /// mode 0600.
    pub fn to_secret_file(&self) -> String {
        let mut raw = Vec::with_capacity(33);
        raw.push(ALG_ED25519);
        raw.extend_from_slice(self.key.as_bytes());
        format!("PRIVATE+KEY+{}+{:08x}+{}\n", self.origin, self.key_id, BASE64.encode(&raw))
    }

    /// Parses [`LogSigner::to_secret_file`] output (surrounding whitespace ignored). Checks the
    /// format, algorithm and key id.
    pub fn from_secret_file(s: &str) -> Result<Self, AuditError> {
        let s = s.trim();
        StandardSigner::new(s).map_err(|e| AuditError::InvalidKey(e.to_string()))?;
        let parts: Vec<&str> = s.splitn(5, '+').collect();
        let [_, _, origin, _, key64] = parts.as_slice() else {
            return Err(AuditError::InvalidKey("malformed key file".into()));
        };
        let raw = BASE64.decode(key64).map_err(|e| AuditError::InvalidKey(e.to_string()))?;
        let seed: [u8; 32] = match raw.as_slice() {
            [ALG_ED25519, rest @ ..] => {
                rest.try_into().map_err(|_| AuditError::InvalidKey("bad Ed25519 key length".into()))?
            }
            _ => return Err(AuditError::InvalidKey("unsupported key algorithm".into())),
        };
        Self::from_seed(origin, seed)
    }

    /// The public verifier key `<origin>+<key id hex>+<base64(0x01 ‖ public key)>`, for
    /// auditors ([`LogVerifier::from_vkey`]).
    pub fn verifier_key(&self) -> String {
        signed_note::new_ed25519_verifier_key(&self.origin, &self.key.verifying_key())
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// A signed checkpoint note:
    ///
    /// ```text
    /// <origin>
    /// <size>
    /// <base64 root>
    /// time 2026-11-22T10:00:00.000000Z
    ///
    /// — <origin> <base64(key id ‖ Ed25519 signature)>
    /// ```
    /// The body is a C2SP checkpoint with one extension line `time <RFC 3339, µs, Z>` (the
    /// signing time, [`format_time`]); the signature covers the body up to and including its
    /// final newline (c2sp.org/signed-note).
    pub fn sign_checkpoint(&self, size: u64, root: Hash, time: DateTime<Utc>) -> String {
        let body = format!("{}\n{}\n{}\n{}{}\n", self.origin, size, root, TIME_PREFIX, format_time(&time));
        let sig = self.key.sign(body.as_bytes());
        let mut raw = Vec::with_capacity(4 + 64);
        raw.extend_from_slice(&self.key_id.to_be_bytes());
        raw.extend_from_slice(&sig.to_bytes());
        format!("{body}\n\u{2014} {} {}\n", self.origin, BASE64.encode(&raw))
    }
}

fn public_key_bytes(key: &SigningKey) -> Vec<u8> {
    let mut v = Vec::with_capacity(33);
    v.push(ALG_ED25519);
    v.extend_from_slice(key.verifying_key().as_bytes());
    v
}

/// A signed-note verifier over an Ed25519 public key (so [`LogVerifier::from_signer`] needs no
/// parsing).
#[derive(Clone)]
struct KeyVerifier {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl signed_note::Verifier for KeyVerifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        match ed25519_dalek::Signature::from_slice(sig) {
            Ok(sig) => self.key.verify_strict(msg, &sig).is_ok(),
            Err(_) => false,
        }
    }
}

/// Checks checkpoints signed by one [`LogSigner`].
#[derive(Clone)]
pub struct LogVerifier {
    verifier: KeyVerifier,
}

impl fmt::Debug for LogVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogVerifier")
            .field("origin", &self.verifier.name)
            .field("key_id", &format_args!("{:08x}", self.verifier.id))
            .finish()
    }
}

impl LogVerifier {
    /// Parses a verifier key (`<origin>+<key id hex>+<base64(0x01 ‖ public key)>`, as
    /// [`LogSigner::verifier_key`]); checks format, algorithm and key id.
    pub fn from_vkey(s: &str) -> Result<Self, AuditError> {
        let s = s.trim();
        let std = StandardVerifier::new(s).map_err(|e| AuditError::InvalidKey(e.to_string()))?;
        let key64 = s.splitn(3, '+').nth(2).unwrap_or_default();
        let raw = BASE64.decode(key64).map_err(|e| AuditError::InvalidKey(e.to_string()))?;
        let pk: [u8; 32] = match raw.as_slice() {
            [ALG_ED25519, rest @ ..] => {
                rest.try_into().map_err(|_| AuditError::InvalidKey("bad Ed25519 key length".into()))?
            }
            _ => return Err(AuditError::InvalidKey("unsupported key algorithm".into())),
        };
        let key = VerifyingKey::from_bytes(&pk).map_err(|e| AuditError::InvalidKey(e.to_string()))?;
        Ok(LogVerifier { verifier: KeyVerifier { name: std.name().to_owned(), id: std.key_id(), key } })
    }

    pub fn from_signer(signer: &LogSigner) -> Self {
        LogVerifier {
            verifier: KeyVerifier { name: signer.origin.clone(), id: signer.key_id, key: signer.key.verifying_key() },
        }
    }

    /// The log origin (= key name).
    pub fn origin(&self) -> &str {
        &self.verifier.name
    }

    pub fn key_id(&self) -> u32 {
        self.verifier.id
    }

    /// The verifier key text (same as [`LogSigner::verifier_key`]).
    pub fn vkey(&self) -> String {
        signed_note::new_ed25519_verifier_key(&self.verifier.name, &self.verifier.key)
    }

    /// Parses a signed checkpoint note and checks it carries a valid signature by this key, for
    /// this origin. Signatures by other keys are ignored. The `time` extension line, if any,
    /// must be RFC 3339; other extension lines are ignored.
    pub fn open_checkpoint(&self, note: &str) -> Result<Checkpoint, AuditError> {
        let bad = |m: &str| AuditError::InvalidCheckpoint(m.to_owned());
        let parsed = Note::from_bytes(note.as_bytes()).map_err(|e| bad(&e.to_string()))?;
        let known = VerifierList::new(vec![Box::new(self.verifier.clone())]);
        parsed.verify(&known).map_err(|e| match e {
            signed_note::NoteError::UnverifiedNote => bad("not signed by this log's key"),
            other => bad(&other.to_string()),
        })?;
        let cp = tlog_tiles::Checkpoint::from_bytes(parsed.text()).map_err(|_| bad("malformed checkpoint body"))?;
        if cp.origin() != self.verifier.name {
            return Err(bad(&format!("origin {:?} is not this log's {:?}", cp.origin(), self.verifier.name)));
        }
        let mut time = None;
        for line in cp.extension().lines() {
            if let Some(t) = line.strip_prefix(TIME_PREFIX) {
                if time.is_some() {
                    return Err(bad("duplicate time line"));
                }
                let t = DateTime::parse_from_rfc3339(t).map_err(|e| bad(&format!("bad time line: {e}")))?;
                time = Some(t.with_timezone(&Utc));
            }
        }
        Ok(Checkpoint { origin: cp.origin().to_owned(), size: cp.size(), root: *cp.hash(), time })
    }
}

/// An opened (signature-checked) checkpoint. `root` serialises as standard base64, as in the
/// note.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    #[serde(serialize_with = "crate::serialize_hash_base64")]
    #[schema(value_type = String, example = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")]
    pub root: Hash,
    pub time: Option<DateTime<Utc>>,
}
