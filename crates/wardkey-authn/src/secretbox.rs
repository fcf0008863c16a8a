//! Encryption at rest for secrets the server must read back (TOTP secrets): a database dump
//! alone then reveals nothing, because the key lives in a file outside the database.
//!
//! XChaCha20-Poly1305 with a fresh random 24-byte nonce per seal: at 192 bits, random nonces
//! never collide in practice, so no nonce counter has to be kept in step across nodes.
//! Sealed text is `v1.` + base64url(nonce || ciphertext || tag). The caller's `context`
//! (e.g. `totp:user:<uuid>`) is authenticated but not stored, so a sealed value copied to
//! another user's row does not open there.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use data_encoding::BASE64URL_NOPAD;
use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Key size (XChaCha20-Poly1305).
pub const KEY_BYTES: usize = 32;
/// Nonce size.
pub const NONCE_BYTES: usize = 24;
/// Poly1305 tag size.
pub const TAG_BYTES: usize = 16;
/// Largest plaintext sealed. The secrets kept this way are tens of bytes; the bound keeps
/// what `open` must accept (and allocate for) small.
pub const MAX_PLAINTEXT_BYTES: usize = 4096;
/// Largest context.
pub const MAX_CONTEXT_BYTES: usize = 256;

const PREFIX: &str = "v1.";
// The version and purpose go into the associated data too, so a ciphertext made for some
// other use of the same key (or a later format) never opens as this one.
const AAD_DOMAIN: &[u8] = b"wardkey-secretbox-v1\0";
const FINGERPRINT_DOMAIN: &[u8] = b"wardkey-secretbox-key-fingerprint-v1\0";
/// A key file is one line of 64 hex or 43 base64url characters; anything much longer is not
/// a key file, so reading stops early.
const MAX_KEY_FILE_BYTES: u64 = 128;

/// Why a key could not be loaded or a value not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretBoxError {
    #[error("key file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "key file {} has mode {mode:03o}, which lets group or others access it; \
         run `chmod 600` on it",
        path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error(
        "key file {} must hold one line: {KEY_BYTES} bytes as 64 hex or 43 base64url characters",
        path.display()
    )]
    KeyFormat { path: PathBuf },
    #[error("the operating system's random number generator failed")]
    Rng,
    #[error("plaintext over {MAX_PLAINTEXT_BYTES} bytes or context over {MAX_CONTEXT_BYTES} bytes")]
    TooLarge,
    #[error("not a sealed value")]
    Malformed,
    /// Deliberately one error for all three causes: telling them apart is impossible by
    /// design of an AEAD.
    #[error("cannot open: wrong key, wrong context, or the value was altered")]
    Decrypt,
}

/// A 256-bit secret key, wiped from memory when dropped. `Debug` shows its fingerprint only.
#[derive(Clone)]
pub struct SecretKey(Zeroizing<[u8; KEY_BYTES]>);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(fingerprint {})", self.fingerprint())
    }
}

impl SecretKey {
    /// A fresh key from the operating system's random number generator.
    pub fn generate() -> Result<Self, SecretBoxError> {
        let mut key = Zeroizing::new([0u8; KEY_BYTES]);
        OsRng.try_fill_bytes(key.as_mut()).map_err(|_| SecretBoxError::Rng)?;
        Ok(Self(key))
    }

    /// A key obtained some other way (a secrets manager, tests). The caller's copy of the
    /// array is not wiped by this type.
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Reads the key file, or creates it with a new key (mode 0600) if there is none.
    /// `true` in the answer means it was created, which is worth a log line: every value
    /// sealed under a previous key is now unreadable.
    ///
    /// Creation is race-free between processes: the key is written to a private temporary
    /// file first and then hard-linked into place, which fails if the file appeared in the
    /// meantime (then that file is read). A reader therefore never sees a half-written key.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), SecretBoxError> {
        match Self::load(path) {
            Err(SecretBoxError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
            other => return other.map(|key| (key, false)),
        }
        let key = Self::generate()?;
        let io = |source| SecretBoxError::Io { path: path.to_owned(), source };
        let tmp = temporary_path(path)?;
        let written = write_new_private(&tmp, key.encode().as_bytes());
        let published = written.and_then(|()| fs::hard_link(&tmp, path));
        // The temporary name is only a vehicle; drop it whatever happened.
        let _ = fs::remove_file(&tmp);
        match published {
            Ok(()) => {
                sync_parent(path);
                Ok((key, true))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load(path).map(|key| (key, false)),
            Err(e) => Err(io(e)),
        }
    }

    /// Reads an existing key file. On unix, a file that group or others may access is
    /// refused: the key is worth as much as every secret it protects.
    pub fn load(path: &Path) -> Result<Self, SecretBoxError> {
        let io = |source| SecretBoxError::Io { path: path.to_owned(), source };
        let file = File::open(path).map_err(io)?;
        // The open file's own metadata: what is checked is what is read.
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(io(std::io::Error::other("not a regular file")));
        }
        check_private(path, &meta)?;
        // Sized up front so the buffer never reallocates and leaves key copies behind.
        let mut text = Zeroizing::new(String::with_capacity(MAX_KEY_FILE_BYTES as usize + 1));
        file.take(MAX_KEY_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|_| SecretBoxError::KeyFormat { path: path.to_owned() })?;
        if text.len() as u64 > MAX_KEY_FILE_BYTES {
            return Err(SecretBoxError::KeyFormat { path: path.to_owned() });
        }
        Self::decode(&text).ok_or_else(|| SecretBoxError::KeyFormat { path: path.to_owned() })
    }

    /// 16 hex digits naming the key in logs and errors. It reveals nothing usable about the
    /// key (a truncated, domain-separated SHA-256 of 256 random bits).
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(FINGERPRINT_DOMAIN);
        h.update(self.0.as_ref());
        let digest = h.finalize();
        hex::encode(digest.get(..8).unwrap_or_default())
    }

    /// A keyed hash (HMAC-SHA-256, 128 bits shown as 32 hex digits) of `data` for `purpose`:
    /// equal inputs give equal hashes under one key, so attempts can be correlated, but the
    /// input cannot be recovered or confirmed by guessing without the key (a password typed
    /// into the username field stays secret in the audit log). The key for each purpose is
    /// derived from this key, so no other use of it meets these hashes.
    pub fn keyed_hash(&self, purpose: &str, data: &[u8]) -> String {
        use hmac::{KeyInit, Mac};
        type HmacSha256 = hmac::Hmac<sha2_hmac::Sha256>;
        let derive = |key: &[u8], msg: &[&[u8]]| {
            // HMAC accepts keys of any length, so this cannot fail; keep it total anyway.
            let Ok(mut m) = <HmacSha256 as KeyInit>::new_from_slice(key) else {
                return Zeroizing::new(Vec::new());
            };
            for part in msg {
                m.update(part);
            }
            Zeroizing::new(m.finalize().into_bytes().to_vec())
        };
        let sub = derive(self.0.as_ref(), &[KEYED_HASH_DOMAIN, purpose.as_bytes()]);
        let tag = derive(sub.as_ref(), &[data]);
        hex::encode(tag.get(..16).unwrap_or_default())
    }

    /// Encrypts `plaintext`, binding it to `context`.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Result<String, SecretBoxError> {
        if plaintext.len() > MAX_PLAINTEXT_BYTES || context.len() > MAX_CONTEXT_BYTES {
            return Err(SecretBoxError::TooLarge);
        }
        let mut nonce = [0u8; NONCE_BYTES];
        OsRng.try_fill_bytes(&mut nonce).map_err(|_| SecretBoxError::Rng)?;
        let aad = associated_data(context);
        let ciphertext = self
            .cipher()
            .encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad: &aad })
            .map_err(|_| SecretBoxError::TooLarge)?;
        let mut raw = Vec::with_capacity(NONCE_BYTES + ciphertext.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&ciphertext);
        Ok(format!("{PREFIX}{}", BASE64URL_NOPAD.encode(&raw)))
    }

    /// Decrypts a value from [`SecretKey::seal`] made with this key and the same context.
    pub fn open(&self, sealed: &str, context: &str) -> Result<Zeroizing<Vec<u8>>, SecretBoxError> {
        if context.len() > MAX_CONTEXT_BYTES {
            return Err(SecretBoxError::TooLarge);
        }
        let max_raw = NONCE_BYTES + MAX_PLAINTEXT_BYTES + TAG_BYTES;
        let encoded = sealed
            .strip_prefix(PREFIX)
            .filter(|e| e.len() <= max_raw.div_ceil(3) * 4)
            .ok_or(SecretBoxError::Malformed)?;
        let raw = BASE64URL_NOPAD.decode(encoded.as_bytes()).map_err(|_| SecretBoxError::Malformed)?;
        if raw.len() < NONCE_BYTES + TAG_BYTES || raw.len() > max_raw {
            return Err(SecretBoxError::Malformed);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_BYTES);
        let nonce = XNonce::try_from(nonce).map_err(|_| SecretBoxError::Malformed)?;
        let aad = associated_data(context);
        self.cipher()
            .decrypt(&nonce, Payload { msg: ciphertext, aad: &aad })
            .map(Zeroizing::new)
            .map_err(|_| SecretBoxError::Decrypt)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        // The crate's `zeroize` feature wipes the cipher's copy of the key on drop.
        let key: &Key = (&*self.0).into();
        XChaCha20Poly1305::new(key)
    }

    /// The key file's text: base64url, one line.
    fn encode(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{}\n", BASE64URL_NOPAD.encode(self.0.as_ref())))
    }

    fn decode(text: &str) -> Option<Self> {
        let line = text.trim();
        let bytes = Zeroizing::new(match line.len() {
            64 => hex::decode(line).ok()?,
            43 => BASE64URL_NOPAD.decode(line.as_bytes()).ok()?,
            _ => return None,
        });
        let mut key = Zeroizing::new([0u8; KEY_BYTES]);
        if bytes.len() != KEY_BYTES {
            return None;
        }
        key.copy_from_slice(&bytes);
        Some(Self(key))
    }
}

/// Domain separation for [`SecretKey::keyed_hash`] subkeys.
const KEYED_HASH_DOMAIN: &[u8] = b"wardkey keyed-hash v1\0";

fn associated_data(context: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_DOMAIN.len() + context.len());
    aad.extend_from_slice(AAD_DOMAIN);
    aad.extend_from_slice(context.as_bytes());
    aad
}

/// A name next to `path` that no other process will pick.
fn temporary_path(path: &Path) -> Result<PathBuf, SecretBoxError> {
    let mut tag = [0u8; 8];
    OsRng.try_fill_bytes(&mut tag).map_err(|_| SecretBoxError::Rng)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(path.with_file_name(format!(".{name}.{}.tmp", hex::encode(tag))))
}

fn write_new_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Makes the new directory entry durable, so a crash cannot lose a key that has already
/// sealed values. Best effort: not every platform can sync a directory.
fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
}

#[cfg(unix)]
fn check_private(path: &Path, meta: &fs::Metadata) -> Result<(), SecretBoxError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    // Write access for others is refused too: whoever can replace the key can make the
    // server seal new secrets under a key they know.
    if mode & 0o077 != 0 {
        return Err(SecretBoxError::Permissions { path: path.to_owned(), mode });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _meta: &fs::Metadata) -> Result<(), SecretBoxError> {
    Ok(())
}
