#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Integration tests for wardkey-authn. TOTP codes are cross-checked against `totp-rs`, an
//! implementation nobody on this project wrote.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use wardkey_authn::hash::{self, HashParams, PasswordHasher};
use wardkey_authn::password::{
    ContextField, PasswordContext, PasswordPolicy, PasswordRejection, TrivialKind,
};
use wardkey_authn::recovery::{self, RecoveryCodes};
use wardkey_authn::totp::{self, TotpError, TotpSecret};

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).unwrap()
}

// ---------------------------------------------------------------- TOTP

/// RFC 6238 Appendix B, SHA-1 rows: secret "12345678901234567890", T0 = 0, X = 30.
const RFC6238_SHA1: [(i64, &str); 6] = [
    (59, "94287082"),
    (1_111_111_109, "07081804"),
    (1_111_111_111, "14050471"),
    (1_234_567_890, "89005924"),
    (2_000_000_000, "69279037"),
    (20_000_000_000, "65353130"),
];

fn rfc_secret() -> TotpSecret {
    TotpSecret::from_bytes(b"12345678901234567890".to_vec()).unwrap()
}

#[test]
fn rfc6238_appendix_b_eight_digits() {
    let secret = rfc_secret();
    for (t, want) in RFC6238_SHA1 {
        let step = totp::step_at(at(t)).unwrap();
        assert_eq!(totp::code_at_step(&secret, step, 8), want, "t = {t}");
    }
}

#[test]
fn rfc6238_appendix_b_six_digit_truncation() {
    let secret = rfc_secret();
    for (t, want8) in RFC6238_SHA1 {
        // The 6-digit code is the same HOTP value mod 10^6: the last six digits.
        let want6 = &want8[2..];
        assert_eq!(totp::generate(&secret, at(t)).unwrap(), want6, "t = {t}");
        let step = totp::verify(&secret, want6, at(t), None).unwrap();
        assert_eq!(step, (t / 30) as u64);
    }
}

fn independent(secret: &TotpSecret) -> totp_rs::Totp {
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_skew(0)
        .with_step_duration(30)
        .with_secret(secret.as_bytes().to_vec())
        .build()
        .unwrap()
}

#[test]
fn independent_implementation_codes_accepted_within_one_step() {
    let secret = TotpSecret::generate().unwrap();
    let other = independent(&secret);
    let now: i64 = 1_767_225_600 + 17; // 2026-01-01T00:00:17Z
    let current = (now / 30) as u64;
    for offset in [-1i64, 0, 1] {
        let t = (now + offset * 30) as u64;
        let code = other.generate(t).to_string();
        assert_eq!(code.len(), 6);
        let step = totp::verify(&secret, &code, at(now), None)
            .unwrap_or_else(|e| panic!("offset {offset}: {e}"));
        assert_eq!(step, current.checked_add_signed(offset).unwrap());
        // Our own generator agrees with theirs.
        assert_eq!(totp::generate(&secret, at(t as i64)).unwrap(), code);
    }
    for offset in [-2i64, 2] {
        let t = (now + offset * 30) as u64;
        let code = other.generate(t).to_string();
        // A code two steps away could collide with a valid one by chance (1e-6); skip then.
        let valid: Vec<String> = (-1..=1)
            .map(|o| other.generate((now + o * 30) as u64).to_string())
            .collect();
        if valid.contains(&code) {
            continue;
        }
        assert_eq!(
            totp::verify(&secret, &code, at(now), None),
            Err(TotpError::Invalid)
        );
    }
}

#[test]
fn many_secrets_agree_with_independent_implementation() {
    for i in 0..50i64 {
        let secret = TotpSecret::generate().unwrap();
        let other = independent(&secret);
        let t = 1_700_000_000 + i * 7_919;
        assert_eq!(
            totp::generate(&secret, at(t)).unwrap(),
            other.generate(t as u64).to_string()
        );
    }
}

#[test]
fn totp_replay_refused() {
    let secret = TotpSecret::generate().unwrap();
    let other = independent(&secret);
    let now = 1_767_225_600i64;
    let code = other.generate(now as u64).to_string();
    let step = totp::verify(&secret, &code, at(now), None).unwrap();
    // Same code again, even a few seconds later in the same step or the next: replay.
    assert_eq!(
        totp::verify(&secret, &code, at(now + 5), Some(step)),
        Err(TotpError::Replayed)
    );
    assert_eq!(
        totp::verify(&secret, &code, at(now + 30), Some(step)),
        Err(TotpError::Replayed)
    );
    // An older code (previous step) after a newer one was used: also refused.
    let older = other.generate((now - 30) as u64).to_string();
    if older != code {
        assert_eq!(
            totp::verify(&secret, &older, at(now), Some(step)),
            Err(TotpError::Replayed)
        );
    }
    // The next step's code is fine.
    let next = other.generate((now + 30) as u64).to_string();
    assert_eq!(
        totp::verify(&secret, &next, at(now + 30), Some(step)),
        Ok(step + 1)
    );
}

#[test]
fn totp_malformed_codes() {
    let secret = TotpSecret::generate().unwrap();
    let now = at(1_767_225_600);
    for bad in ["", "12345", "1234567", "12a456", "１２３４５６", "123456\0"] {
        assert_eq!(
            totp::verify(&secret, bad, now, None),
            Err(TotpError::Malformed),
            "{bad:?}"
        );
    }
    // Spaces are allowed, as apps display "123 456".
    let code = totp::generate(&secret, now).unwrap();
    let spaced = format!("{} {}", &code[..3], &code[3..]);
    assert!(totp::verify(&secret, &spaced, now, None).is_ok());
    assert_eq!(totp::step_at(at(-1)), Err(TotpError::TimeBeforeEpoch));
}

#[test]
fn otpauth_uri_format() {
    let secret = rfc_secret();
    let uri = totp::otpauth_uri("St Mary's", "jane.doe@stmarys.example", &secret);
    assert_eq!(
        uri,
        "otpauth://totp/St%20Mary%27s:jane.doe%40stmarys.example?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=St%20Mary%27s&algorithm=SHA1&digits=6&period=30"
    );
    // The secret in the URI decodes back to the same key.
    assert_eq!(
        TotpSecret::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap(),
        secret
    );
}

// ---------------------------------------------------------------- password policy

fn ctx() -> PasswordContext<'static> {
    PasswordContext {
        username: "jdoe",
        display_name: Some("Jane Doe"),
        organisation: Some("St Mary's Hospital"),
        email: Some("jane.doe@stmarys.example"),
        extra: &["wardkey"],
    }
}

fn check(pw: &str, mfa: bool) -> Result<(), PasswordRejection> {
    PasswordPolicy::default().check(pw, &ctx(), mfa)
}

#[test]
fn length_single_factor_and_mfa() {
    assert_eq!(
        check("tulip river cam", false).map_err(|e| e.to_string()),
        Ok(()),
        "15 code points"
    );
    let e = check("tulip river ca", false).unwrap_err();
    assert_eq!(
        e,
        PasswordRejection::TooShort {
            min: 15,
            actual: 14
        }
    );
    assert_eq!(
        e.to_string(),
        "the password is too short: it needs at least 15 characters, it has 14"
    );
    assert_eq!(check("tuliprvr", true), Ok(()), "8 with MFA");
    assert_eq!(
        check("tuliprv", true),
        Err(PasswordRejection::TooShort { min: 8, actual: 7 })
    );
}

#[test]
fn long_passwords() {
    let p64: String = "quiet harbour lanterns drift "
        .repeat(3)
        .chars()
        .take(64)
        .collect();
    assert_eq!(p64.chars().count(), 64);
    assert_eq!(check(&p64, false), Ok(()));
    let p256: String = "quiet harbour lanterns drift "
        .repeat(10)
        .chars()
        .take(256)
        .collect();
    assert_eq!(check(&p256, false), Ok(()));
    let p257 = format!("{p256}x");
    let e = check(&p257, false).unwrap_err();
    assert_eq!(
        e,
        PasswordRejection::TooLong {
            max: 256,
            actual: 257
        }
    );
    assert!(e.to_string().contains("at most 256"));
    // Megabytes are refused without normalising them.
    let huge = "x".repeat(10_000_000);
    assert!(matches!(
        check(&huge, false),
        Err(PasswordRejection::TooLong { .. })
    ));
}

#[test]
fn nfkc_and_code_points() {
    // Full-width "ｔｕｌｉｐ ｒｉｖｅｒ ｃａｍ" normalises to the ASCII form and counts the same.
    let ascii = "tulip river cam";
    let full: String = ascii
        .chars()
        .map(|c| {
            if c == ' ' {
                '\u{3000}'
            } else {
                char::from_u32(c as u32 + 0xFEE0).unwrap()
            }
        })
        .collect();
    assert_ne!(full, ascii);
    assert_eq!(wardkey_authn::normalize(&full), ascii);
    assert_eq!(check(&full, false), Ok(()));
    let full14: String = full.chars().take(14).collect();
    assert_eq!(
        check(&full14, false),
        Err(PasswordRejection::TooShort {
            min: 15,
            actual: 14
        })
    );
    // Emoji are one code point each: 8 emoji pass with MFA, 7 do not.
    assert_eq!(check("🐢🦊🌵🚲🎻🧭🪁🍋", true), Ok(()));
    assert_eq!(
        check("🐢🦊🌵🚲🎻🧭🪁", true),
        Err(PasswordRejection::TooShort { min: 8, actual: 7 })
    );
    // Accented letters in composed and decomposed form count alike after normalisation.
    let composed = "café crème brûlée"; // 17 code points
    let decomposed = "cafe\u{301} cre\u{300}me bru\u{302}le\u{301}e"; // 21 raw, 17 after NFKC
    assert_eq!(check(composed, false), Ok(()));
    assert_eq!(check(decomposed, false), Ok(()));
}

#[test]
fn blocklist() {
    for pw in [
        "password123",
        "password1234567890",
        "Password123456789!",
        "!!PASSWORD!!2024!!",
        "qwertyuiop123456",
        "1234567890abcdef!",
        "iloveyou12345678",
        "baseball",
    ] {
        let mfa = pw.chars().count() < 15;
        let e = check(pw, mfa)
            .err()
            .unwrap_or_else(|| panic!("{pw} accepted"));
        assert!(
            matches!(
                e,
                PasswordRejection::Blocklisted | PasswordRejection::Trivial(_)
            ),
            "{pw}: {e:?}"
        );
    }
    let e = check("password123", true).unwrap_err();
    assert_eq!(e, PasswordRejection::Blocklisted);
    assert_eq!(
        e.to_string(),
        "the password is on a list of common or breached passwords"
    );
    assert_eq!(e.code(), "blocklisted");
    assert!(wardkey_authn::password::blocklist_len() >= 29_000);
}

#[test]
fn context_words() {
    let cases = [
        ("JDOE-sunflower-meadow", ContextField::Username),
        ("jdoe2024", ContextField::Username),
        ("janeeeeeee sunflower", ContextField::Email),
        ("sunflower jane doe 77", ContextField::Name),
        ("stmaryshospital2024", ContextField::Organisation),
        ("Hospital Sunflower 9", ContextField::Organisation),
        ("my wardkey sunflower", ContextField::ServiceWord),
    ];
    for (pw, field) in cases {
        let mfa = pw.chars().count() < 15;
        let got = check(pw, mfa);
        assert!(
            matches!(got, Err(PasswordRejection::ContainsContextWord(_))),
            "{pw}: {got:?} (expected {field:?})"
        );
    }
    let e = check("jdoe12345678", true).unwrap_err();
    assert_eq!(
        e,
        PasswordRejection::ContainsContextWord(ContextField::Username)
    );
    assert_eq!(e.to_string(), "the password contains your username");
    // Username is "Bob": a 3-letter context word is refused alone with digits, not inside a word.
    let bob = PasswordContext {
        username: "Bob",
        ..PasswordContext::default()
    };
    let policy = PasswordPolicy::default();
    assert!(policy.check("BOB12345", &bob, true).is_err());
    assert_eq!(policy.check("bobsled marathon", &bob, false), Ok(()));
}

#[test]
fn trivial_and_bad_input() {
    assert_eq!(
        check("aaaaaaaaaaaaaaaa", false),
        Err(PasswordRejection::Trivial(TrivialKind::Repetitive))
    );
    assert_eq!(
        check("xyzxyzxyzxyzxyz", false),
        Err(PasswordRejection::Trivial(TrivialKind::Repetitive))
    );
    assert_eq!(
        check("123456789012345", false),
        Err(PasswordRejection::Trivial(TrivialKind::Sequential))
    );
    assert_eq!(
        check("tulip\u{0}river cam", false),
        Err(PasswordRejection::ControlCharacter)
    );
    let policy = PasswordPolicy::default();
    let e = policy
        .check_bytes(b"tulip river cam\xff\xfe", &ctx(), false)
        .unwrap_err();
    assert_eq!(e, PasswordRejection::InvalidUtf8);
    assert_eq!(e.to_string(), "the password is not valid UTF-8 text");
    assert_eq!(
        policy.check_bytes("tulip river cam".as_bytes(), &ctx(), false),
        Ok(())
    );
    // No composition rules: all lowercase, no digits, no symbols is fine.
    assert_eq!(check("correct horse battery staple", false), Ok(()));
}

// ---------------------------------------------------------------- Argon2id

fn cheap() -> HashParams {
    HashParams {
        m_cost_kib: 256,
        t_cost: 1,
        p_cost: 1,
    }
}

#[test]
fn argon2_default_params_are_owasp() {
    assert_eq!(
        HashParams::default(),
        HashParams {
            m_cost_kib: 19_456,
            t_cost: 2,
            p_cost: 1
        }
    );
    let phc = hash::hash_password("correct horse battery staple", &HashParams::default()).unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    assert_eq!(HashParams::from_phc(&phc), Some(HashParams::OWASP));
    assert!(hash::verify_password("correct horse battery staple", &phc));
    assert!(!hash::verify_password(
        "correct horse battery stapler",
        &phc
    ));
}

#[test]
fn argon2_round_trip_and_normalisation() {
    let phc = hash::hash_password("ｔｕｌｉｐ river cam", &cheap()).unwrap();
    assert!(
        hash::verify_password("tulip river cam", &phc),
        "NFKC before hashing"
    );
    assert!(hash::verify_password("ｔｕｌｉｐ river cam", &phc));
    assert!(!hash::verify_password("tulip river cab", &phc));
    assert!(!hash::verify_password("", &phc));
    // Fresh salt each time.
    assert_ne!(
        phc,
        hash::hash_password("tulip river cam", &cheap()).unwrap()
    );
    assert!(!hash::dummy_verify("tulip river cam", &cheap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hasher_async_round_trip() {
    let hasher = PasswordHasher::new(cheap(), 2).unwrap();
    let phc = hasher.hash("quiet harbour lanterns".into()).await.unwrap();
    assert!(
        hasher
            .verify("quiet harbour lanterns".into(), phc.clone())
            .await
    );
    assert!(
        !hasher
            .verify("quiet harbour lantern".into(), phc.clone())
            .await
    );
    assert!(
        hasher
            .verify_or_dummy("quiet harbour lanterns".into(), Some(phc))
            .await
    );
    assert!(
        !hasher
            .verify_or_dummy("quiet harbour lanterns".into(), None)
            .await
    );
    assert_eq!(hasher.available(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hasher_pool_is_bounded() {
    const LIMIT: usize = 2;
    let hasher = PasswordHasher::new(cheap(), LIMIT).unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..24 {
        let hasher = hasher.clone();
        let running = Arc::clone(&running);
        let peak = Arc::clone(&peak);
        tasks.push(tokio::spawn(async move {
            hasher
                .run(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    // Real work plus a pause so that jobs overlap if the bound were broken.
                    let phc =
                        hash::hash_password(&format!("storm password {i}"), &cheap()).unwrap();
                    std::thread::sleep(Duration::from_millis(5));
                    running.fetch_sub(1, Ordering::SeqCst);
                    phc
                })
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap().starts_with("$argon2id$"));
    }
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= LIMIT, "peak {peak} > {LIMIT}");
    assert!(peak >= 1);
    assert_eq!(running.load(Ordering::SeqCst), 0);
    assert_eq!(hasher.available(), LIMIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_callers_still_hold_their_permit_until_the_job_ends() {
    let hasher = PasswordHasher::new(cheap(), 1).unwrap();
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let h = hasher.clone();
    let task = tokio::spawn(async move {
        h.run(move || {
            started_tx.send(()).unwrap();
            release_rx.recv().unwrap();
        })
        .await
    });
    tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
        .await
        .unwrap();
    task.abort();
    let _ = task.await;
    assert_eq!(hasher.available(), 0, "the blocking job still runs");
    release_tx.send(()).unwrap();
    // Once the job ends the permit comes back.
    let phc = hasher.hash("after the storm passes".into()).await.unwrap();
    assert!(phc.starts_with("$argon2id$"));
    assert_eq!(hasher.available(), 1);
}

// ---------------------------------------------------------------- recovery codes

#[test]
fn recovery_codes_single_use() {
    let set = RecoveryCodes::generate().unwrap();
    assert_eq!(set.codes.len(), 10);
    let mut stored = set.hashes.clone();
    // Each code works once, in any order, typed loosely.
    for (n, code) in set.codes.iter().rev().enumerate() {
        let typed = code.to_lowercase().replace('-', " ");
        assert!(recovery::verify_and_consume(&mut stored, &typed), "{code}");
        assert_eq!(stored.len(), 10 - n - 1);
        assert!(
            !recovery::verify_and_consume(&mut stored, code),
            "reuse of {code}"
        );
    }
    assert!(stored.is_empty());
}

#[test]
fn recovery_codes_refuse_wrong_and_malformed() {
    let set = RecoveryCodes::generate().unwrap();
    let mut stored = set.hashes.clone();
    for bad in [
        "",
        "ABCD",
        "not a code at all",
        "ABCD-EFGH-JKMN-PQRU",
        "ZZZZ-ZZZZ-ZZZZ-ZZZZ",
    ] {
        if set.codes.iter().any(|c| c == bad) {
            continue;
        }
        assert!(!recovery::verify_and_consume(&mut stored, bad), "{bad}");
    }
    assert_eq!(stored.len(), 10);
    // Hashes are SHA-256 hex and do not contain the code.
    for (code, hash) in set.codes.iter().zip(&set.hashes) {
        assert_eq!(hash.len(), 64);
        assert_eq!(recovery::hash_code(code).as_deref(), Some(hash.as_str()));
        assert!(!hash.contains(&code.replace('-', "")));
    }
    // Another set's code does not work here.
    let other = RecoveryCodes::generate().unwrap();
    assert!(!recovery::verify_and_consume(&mut stored, &other.codes[0]));
}
