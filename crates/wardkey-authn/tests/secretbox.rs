#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Encryption at rest of TOTP secrets and the key file it depends on.

use std::collections::HashSet;

use data_encoding::BASE64URL_NOPAD;
use wardkey_authn::secretbox::{
    MAX_CONTEXT_BYTES, MAX_PLAINTEXT_BYTES, NONCE_BYTES, SecretBoxError, SecretKey, TAG_BYTES,
};

const CTX: &str = "totp:user:0196a4c0-0000-7000-8000-000000000001";
const SECRET: &[u8] = b"12345678901234567890";

fn key(byte: u8) -> SecretKey {
    SecretKey::from_bytes([byte; 32])
}

#[test]
fn round_trip() {
    let k = SecretKey::generate().unwrap();
    let sealed = k.seal(SECRET, CTX).unwrap();
    assert!(sealed.starts_with("v1."));
    assert_eq!(BASE64URL_NOPAD.decode(&sealed.as_bytes()[3..]).unwrap().len(), NONCE_BYTES + SECRET.len() + TAG_BYTES);
    assert_eq!(&k.open(&sealed, CTX).unwrap()[..], SECRET);

    for plaintext in [&b""[..], &[0u8; 1], &[0xffu8; MAX_PLAINTEXT_BYTES]] {
        let sealed = k.seal(plaintext, "").unwrap();
        assert_eq!(&k.open(&sealed, "").unwrap()[..], plaintext);
    }
}

#[test]
fn nonces_are_fresh() {
    let k = key(1);
    let sealed: HashSet<String> = (0..200).map(|_| k.seal(SECRET, CTX).unwrap()).collect();
    assert_eq!(sealed.len(), 200);
    let nonces: HashSet<Vec<u8>> =
        sealed.iter().map(|s| BASE64URL_NOPAD.decode(&s.as_bytes()[3..]).unwrap()[..NONCE_BYTES].to_vec()).collect();
    assert_eq!(nonces.len(), 200);
}

#[test]
fn wrong_context_fails() {
    let k = key(1);
    let sealed = k.seal(SECRET, CTX).unwrap();
    for other in [
        "",
        "totp:user:0196a4c0-0000-7000-8000-000000000002",
        "totp:user:0196a4c0-0000-7000-8000-00000000000",
        &CTX.to_uppercase(),
    ] {
        assert!(matches!(k.open(&sealed, other).unwrap_err(), SecretBoxError::Decrypt));
    }
}

#[test]
fn wrong_key_fails() {
    let sealed = key(1).seal(SECRET, CTX).unwrap();
    assert!(matches!(key(2).open(&sealed, CTX).unwrap_err(), SecretBoxError::Decrypt));
    assert!(matches!(SecretKey::generate().unwrap().open(&sealed, CTX).unwrap_err(), SecretBoxError::Decrypt));
}

#[test]
fn tampered_ciphertext_fails() {
    let k = key(1);
    let sealed = k.seal(SECRET, CTX).unwrap();
    let raw = BASE64URL_NOPAD.decode(&sealed.as_bytes()[3..]).unwrap();
    // Every bit of nonce, ciphertext and tag is covered.
    for i in 0..raw.len() {
        for bit in 0..8 {
            let mut t = raw.clone();
            t[i] ^= 1 << bit;
            let tampered = format!("v1.{}", BASE64URL_NOPAD.encode(&t));
            assert!(matches!(k.open(&tampered, CTX), Err(SecretBoxError::Decrypt)), "byte {i} bit {bit}");
        }
    }
    // Truncated or extended by whole bytes.
    for t in [&raw[..raw.len() - 1], &raw[1..]] {
        let tampered = format!("v1.{}", BASE64URL_NOPAD.encode(t));
        assert!(k.open(&tampered, CTX).is_err());
    }
    let mut longer = raw.clone();
    longer.push(0);
    assert!(k.open(&format!("v1.{}", BASE64URL_NOPAD.encode(&longer)), CTX).is_err());
}

#[test]
fn malformed_input_fails() {
    let k = key(1);
    let sealed = k.seal(SECRET, CTX).unwrap();
    let too_long = format!("v1.{}", "A".repeat(100_000));
    let short = format!("v1.{}", BASE64URL_NOPAD.encode(&[0u8; NONCE_BYTES + TAG_BYTES - 1]));
    for bad in [
        "",
        "v1.",
        "v1",
        "v2.AAAA",
        "V1.AAAA",
        "AAAA",
        " v1.AAAA",
        &sealed[..sealed.len() - 1],
        &sealed[3..],
        &format!("{sealed}="),
        &format!("{sealed} "),
        &format!("{sealed}\n"),
        &sealed.replace('v', "w"),
        // '+' is standard base64, not base64url (always present, unlike a replaced '-').
        &format!("v1.+{}", &sealed[4..]),
        "v1.!!!!",
        "v1.é",
        &short,
        &too_long,
    ] {
        let err = k.open(bad, CTX).unwrap_err();
        assert!(matches!(err, SecretBoxError::Malformed | SecretBoxError::Decrypt), "{bad:.40}: {err:?}");
    }
    assert!(matches!(k.open("", CTX).unwrap_err(), SecretBoxError::Malformed));
}

#[test]
fn sizes_are_bounded() {
    let k = key(1);
    assert!(matches!(k.seal(&vec![0; MAX_PLAINTEXT_BYTES + 1], CTX).unwrap_err(), SecretBoxError::TooLarge));
    let long_ctx = "c".repeat(MAX_CONTEXT_BYTES + 1);
    assert!(matches!(k.seal(SECRET, &long_ctx).unwrap_err(), SecretBoxError::TooLarge));
    let sealed = k.seal(SECRET, CTX).unwrap();
    assert!(matches!(k.open(&sealed, &long_ctx).unwrap_err(), SecretBoxError::TooLarge));
    assert!(k.seal(SECRET, &"c".repeat(MAX_CONTEXT_BYTES)).is_ok());
}

#[test]
fn debug_and_fingerprint_do_not_reveal_the_key() {
    let k = key(0xab);
    let debug = format!("{k:?}");
    assert!(!debug.contains("171, 171") && !debug.contains("0xab"), "{debug}");
    assert!(!debug.to_lowercase().contains(&"ab".repeat(8)), "{debug}");
    let fp = k.fingerprint();
    assert_eq!(fp.len(), 16);
    assert!(fp.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(debug.contains(&fp));
    assert_eq!(fp, key(0xab).fingerprint());
    assert_ne!(fp, key(0xac).fingerprint());
    // The fingerprint is not a plain hash of the key (domain-separated).
    use sha2::Digest;
    assert!(!hex::encode(sha2::Sha256::digest([0xab; 32])).starts_with(&fp));
}

#[cfg(unix)]
mod files {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &std::path::Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_0600_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secretbox.key");
        let (k1, created) = SecretKey::load_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(mode(&path), 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 44, "{text:?}");
        assert!(text.ends_with('\n'));
        // Nothing but the key file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

        let (k2, created) = SecretKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(k1.fingerprint(), k2.fingerprint());
        let k3 = SecretKey::load(&path).unwrap();
        let sealed = k1.seal(SECRET, CTX).unwrap();
        assert_eq!(&k3.open(&sealed, CTX).unwrap()[..], SECRET);
    }

    #[test]
    fn concurrent_creators_agree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secretbox.key");
        let results: Vec<(String, bool)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        let (k, created) = SecretKey::load_or_create(&path).unwrap();
                        (k.fingerprint(), created)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(results.iter().filter(|(_, created)| *created).count(), 1);
        assert!(results.iter().all(|(fp, _)| *fp == results[0].0));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn hex_and_base64url_files_load() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: [u8; 32] = std::array::from_fn(|i| i as u8 * 7);
        let expected = SecretKey::from_bytes(bytes).fingerprint();
        for (name, text) in [
            ("hex", format!("{}\n", hex::encode(bytes))),
            ("HEX", hex::encode_upper(bytes)),
            ("b64", BASE64URL_NOPAD.encode(&bytes)),
            ("b64nl", format!("{}\r\n", BASE64URL_NOPAD.encode(&bytes))),
        ] {
            let path = dir.path().join(name);
            fs::write(&path, text).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
            assert_eq!(SecretKey::load(&path).unwrap().fingerprint(), expected, "{name}");
        }
    }

    #[test]
    fn malformed_key_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = [7u8; 32];
        for (i, text) in [
            String::new(),
            "\n".into(),
            hex::encode(&bytes[..31]),
            format!("{}00", hex::encode(bytes)),
            BASE64URL_NOPAD.encode(&bytes[..31]),
            format!("{}=", BASE64URL_NOPAD.encode(&bytes)),
            format!("{}\n{}\n", hex::encode(bytes), hex::encode(bytes)),
            "z".repeat(64),
            "A".repeat(10_000),
        ]
        .into_iter()
        .enumerate()
        {
            let path = dir.path().join(format!("k{i}"));
            fs::write(&path, &text).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            let err = SecretKey::load(&path).unwrap_err();
            assert!(matches!(err, SecretBoxError::KeyFormat { .. }), "{text:.20?}: {err}");
            // Never overwritten by load_or_create either.
            assert!(SecretKey::load_or_create(&path).is_err());
            assert_eq!(fs::read_to_string(&path).unwrap(), text);
        }
        let path = dir.path().join("binary");
        fs::write(&path, [0xffu8, 0xfe, 0x00]).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(SecretKey::load(&path).unwrap_err(), SecretBoxError::KeyFormat { .. }));
    }

    #[test]
    fn group_or_world_accessible_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secretbox.key");
        let (k, _) = SecretKey::load_or_create(&path).unwrap();
        for bad in [0o640, 0o604, 0o644, 0o660, 0o620, 0o602] {
            fs::set_permissions(&path, fs::Permissions::from_mode(bad)).unwrap();
            let err = SecretKey::load(&path).unwrap_err();
            assert!(matches!(err, SecretBoxError::Permissions { mode, .. } if mode == bad), "{bad:o}: {err}");
            let message = err.to_string();
            assert!(message.contains("chmod 600"), "{message}");
            assert!(message.contains(&format!("{bad:o}")), "{message}");
            assert!(SecretKey::load_or_create(&path).is_err());
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(SecretKey::load(&path).unwrap().fingerprint(), k.fingerprint());
    }

    #[test]
    fn missing_file_and_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.key");
        assert!(matches!(SecretKey::load(&path).unwrap_err(), SecretBoxError::Io { .. }));
        let nested = dir.path().join("no-such-dir").join("k");
        let err = SecretKey::load_or_create(&nested).unwrap_err();
        assert!(matches!(err, SecretBoxError::Io { .. }), "{err}");
        assert!(err.to_string().contains("no-such-dir"), "{err}");
        // A directory is not a key file.
        assert!(SecretKey::load(dir.path()).is_err());
    }
}
