#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Integration tests for wardkey-authn. TOTP codes are cross-checked against `totp-rs`, an
//! implementation nobody on this project wrote.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use wardkey_authn::hash::{self, HashParams, PasswordHasher};
use wardkey_authn::password::{ContextField, PasswordContext, PasswordPolicy, PasswordRejection, TrivialKind};
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
        let step = totp::verify(&secret, &code, at(now), None).unwrap_or_else(|e| panic!("offset {offset}: {e}"));
        assert_eq!(step, current.checked_add_signed(offset).unwrap());
        // Our own generator agrees with theirs.
        assert_eq!(totp::generate(&secret, at(t as i64)).unwrap(), code);
    }
    for offset in [-2i64, 2] {
        let t = (now + offset * 30) as u64;
        let code = other.generate(t).to_string();
        // A code two steps away could collide with a valid one by chance (1e-6); skip then.
        let valid: Vec<String> = (-1..=1).map(|o| other.generate((now + o * 30) as u64).to_string()).collect();
        if valid.contains(&code) {
            continue;
        }
        assert_eq!(totp::verify(&secret, &code, at(now), None), Err(TotpError::Invalid));
    }
}

#[test]
fn many_secrets_agree_with_independent_implementation() {
    for i in 0..50i64 {
        let secret = TotpSecret::generate().unwrap();
        let other = independent(&secret);
        let t = 1_700_000_000 + i * 7_919;
        assert_eq!(totp::generate(&secret, at(t)).unwrap(), other.generate(t as u64).to_string());
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
    assert_eq!(totp::verify(&secret, &code, at(now + 5), Some(step)), Err(TotpError::Replayed));
    assert_eq!(totp::verify(&secret, &code, at(now + 30), Some(step)), Err(TotpError::Replayed));
    // An older code (previous step) after a newer one was used: also refused.
    let older = other.generate((now - 30) as u64).to_string();
    if older != code {
        assert_eq!(totp::verify(&secret, &older, at(now), Some(step)), Err(TotpError::Replayed));
    }
    // The next step's code is fine.
    let next = other.generate((now + 30) as u64).to_string();
    assert_eq!(totp::verify(&secret, &next, at(now + 30), Some(step)), Ok(step + 1));
}

#[test]
fn totp_malformed_codes() {
    let secret = TotpSecret::generate().unwrap();
    let now = at(1_767_225_600);
    for bad in ["", "12345", "1234567", "12a456", "１２３４５６", "123456\0"] {
        assert_eq!(totp::verify(&secret, bad, now, None), Err(TotpError::Malformed), "{bad:?}");
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
    assert_eq!(TotpSecret::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap(), secret);
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
    assert_eq!(check("tulip river cam", false).map_err(|e| e.to_string()), Ok(()), "15 code points");
    let e = check("tulip river ca", false).unwrap_err();
    assert_eq!(e, PasswordRejection::TooShort { min: 15, actual: 14 });
    assert_eq!(e.to_string(), "the password is too short: it needs at least 15 characters, it has 14");
    assert_eq!(check("tuliprvr", true), Ok(()), "8 with MFA");
    assert_eq!(check("tuliprv", true), Err(PasswordRejection::TooShort { min: 8, actual: 7 }));
}

#[test]
fn long_passwords() {
    let p64: String = "quiet harbour lanterns drift ".repeat(3).chars().take(64).collect();
    assert_eq!(p64.chars().count(), 64);
    assert_eq!(check(&p64, false), Ok(()));
    let p256: String = "quiet harbour lanterns drift ".repeat(10).chars().take(256).collect();
    assert_eq!(check(&p256, false), Ok(()));
    let p257 = format!("{p256}x");
    let e = check(&p257, false).unwrap_err();
    assert_eq!(e, PasswordRejection::TooLong { max: 256, actual: 257 });
    assert!(e.to_string().contains("at most 256"));
    // Megabytes are refused without normalising them.
    let huge = "x".repeat(10_000_000);
    assert!(matches!(check(&huge, false), Err(PasswordRejection::TooLong { .. })));
}

#[test]
fn nfkc_and_code_points() {
    // Full-width "ｔｕｌｉｐ ｒｉｖｅｒ ｃａｍ" normalises to the ASCII form and counts the same.
    let ascii = "tulip river cam";
    let full: String =
        ascii.chars().map(|c| if c == ' ' { '\u{3000}' } else { char::from_u32(c as u32 + 0xFEE0).unwrap() }).collect();
    assert_ne!(full, ascii);
    assert_eq!(wardkey_authn::normalize(&full), ascii);
    assert_eq!(check(&full, false), Ok(()));
    let full14: String = full.chars().take(14).collect();
    assert_eq!(check(&full14, false), Err(PasswordRejection::TooShort { min: 15, actual: 14 }));
    // Emoji are one code point each: 8 emoji pass with MFA, 7 do not.
    assert_eq!(check("🐢🦊🌵🚲🎻🧭🪁🍋", true), Ok(()));
    assert_eq!(check("🐢🦊🌵🚲🎻🧭🪁", true), Err(PasswordRejection::TooShort { min: 8, actual: 7 }));
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
        let e = check(pw, mfa).err().unwrap_or_else(|| panic!("{pw} accepted"));
        assert!(matches!(e, PasswordRejection::Blocklisted | PasswordRejection::Trivial(_)), "{pw}: {e:?}");
    }
    let e = check("password123", true).unwrap_err();
    assert_eq!(e, PasswordRejection::Blocklisted);
    assert_eq!(e.to_string(), "the password is on a list of common or breached passwords");
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
        assert!(matches!(got, Err(PasswordRejection::ContainsContextWord(_))), "{pw}: {got:?} (expected {field:?})");
    }
    let e = check("jdoe12345678", true).unwrap_err();
    assert_eq!(e, PasswordRejection::ContainsContextWord(ContextField::Username));
    assert_eq!(e.to_string(), "the password contains your username");
    // Username is "Bob": a 3-letter context word is refused alone with digits, not inside a word.
    let bob = PasswordContext { username: "Bob", ..PasswordContext::default() };
    let policy = PasswordPolicy::default();
    assert!(policy.check("BOB12345", &bob, true).is_err());
    assert_eq!(policy.check("bobsled marathon", &bob, false), Ok(()));
}

#[test]
fn trivial_and_bad_input() {
    assert_eq!(check("aaaaaaaaaaaaaaaa", false), Err(PasswordRejection::Trivial(TrivialKind::Repetitive)));
    assert_eq!(check("xyzxyzxyzxyzxyz", false), Err(PasswordRejection::Trivial(TrivialKind::Repetitive)));
    assert_eq!(check("123456789012345", false), Err(PasswordRejection::Trivial(TrivialKind::Sequential)));
    assert_eq!(check("tulip\u{0}river cam", false), Err(PasswordRejection::ControlCharacter));
    let policy = PasswordPolicy::default();
    let e = policy.check_bytes(b"tulip river cam\xff\xfe", &ctx(), false).unwrap_err();
    assert_eq!(e, PasswordRejection::InvalidUtf8);
    assert_eq!(e.to_string(), "the password is not valid UTF-8 text");
    assert_eq!(policy.check_bytes("tulip river cam".as_bytes(), &ctx(), false), Ok(()));
    // No composition rules: all lowercase, no digits, no symbols is fine.
    assert_eq!(check("correct horse battery staple", false), Ok(()));
}

// ---------------------------------------------------------------- Argon2id

fn cheap() -> HashParams {
    HashParams { m_cost_kib: 256, t_cost: 1, p_cost: 1 }
}

#[test]
fn argon2_default_params_are_owasp() {
    assert_eq!(HashParams::default(), HashParams { m_cost_kib: 19_456, t_cost: 2, p_cost: 1 });
    let phc = hash::hash_password("correct horse battery staple", &HashParams::default()).unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    assert_eq!(HashParams::from_phc(&phc), Some(HashParams::OWASP));
    assert!(hash::verify_password("correct horse battery staple", &phc));
    assert!(!hash::verify_password("correct horse battery stapler", &phc));
}

#[test]
fn argon2_round_trip_and_normalisation() {
    let phc = hash::hash_password("ｔｕｌｉｐ river cam", &cheap()).unwrap();
    assert!(hash::verify_password("tulip river cam", &phc), "NFKC before hashing");
    assert!(hash::verify_password("ｔｕｌｉｐ river cam", &phc));
    assert!(!hash::verify_password("tulip river cab", &phc));
    assert!(!hash::verify_password("", &phc));
    // Fresh salt each time.
    assert_ne!(phc, hash::hash_password("tulip river cam", &cheap()).unwrap());
    assert!(!hash::dummy_verify("tulip river cam", &cheap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hasher_async_round_trip() {
    let hasher = PasswordHasher::new(cheap(), 2).unwrap();
    let phc = hasher.hash("quiet harbour lanterns".into()).await.unwrap();
    assert!(hasher.verify("quiet harbour lanterns".into(), phc.clone()).await);
    assert!(!hasher.verify("quiet harbour lantern".into(), phc.clone()).await);
    assert!(hasher.verify_or_dummy("quiet harbour lanterns".into(), Some(phc)).await);
    assert!(!hasher.verify_or_dummy("quiet harbour lanterns".into(), None).await);
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
                    let phc = hash::hash_password(&format!("storm password {i}"), &cheap()).unwrap();
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
    tokio::task::spawn_blocking(move || started_rx.recv().unwrap()).await.unwrap();
    task.abort();
    let _ = task.await;
    assert_eq!(hasher.available(), 0, "the blocking job still runs");
    release_tx.send(()).unwrap();
    // Once the job ends the permit comes back.
    let phc = hasher.hash("after the storm passes".into()).await.unwrap();
    assert!(phc.starts_with("$argon2id$"));
    assert_eq!(hasher.available(), 1);
}

/// Scheduling policy (`SCHED_*` number) and nice value of the calling thread, from
/// /proc/thread-self/stat (fields 41 and 19; the command name in field 2 may hold spaces).
#[cfg(target_os = "linux")]
fn this_thread_policy_and_nice() -> (u32, i32) {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state).
    (fields[41 - 3].parse().unwrap(), fields[19 - 3].parse().unwrap())
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashing_threads_run_at_the_configured_priority() {
    use wardkey_authn::hash::HashPriority;
    const SCHED_OTHER: u32 = 0;
    const SCHED_IDLE: u32 = 5;
    // The default: nice 19, so request handling wins the CPU from a hash.
    let default = PasswordHasher::new(cheap(), 1).unwrap();
    assert_eq!(default.priority(), HashPriority::Low);
    assert_eq!(default.run(this_thread_policy_and_nice).await.unwrap(), (SCHED_OTHER, 19));
    let idle = PasswordHasher::with_priority(cheap(), 2, HashPriority::Idle).unwrap();
    for _ in 0..4 {
        let (policy, _) = idle.run(this_thread_policy_and_nice).await.unwrap();
        assert_eq!(policy, SCHED_IDLE);
    }
    // Each thread lowers itself when it starts; the second may not have been scheduled yet on
    // a busy machine (the jobs above can all land on the first), so wait for it, boundedly.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while idle.threads_lowered() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(idle.threads_lowered(), 2);
    // The hashing threads are their own: the caller's threads are untouched.
    assert_eq!(this_thread_policy_and_nice().0, SCHED_OTHER);
    let blocking = tokio::task::spawn_blocking(this_thread_policy_and_nice).await.unwrap();
    assert_eq!(blocking.0, SCHED_OTHER, "tokio's blocking pool keeps its priority");

    let low = PasswordHasher::with_priority(cheap(), 1, HashPriority::Low).unwrap();
    let (policy, nice) = low.run(this_thread_policy_and_nice).await.unwrap();
    assert_eq!((policy, nice), (SCHED_OTHER, 19));

    let normal = PasswordHasher::with_priority(cheap(), 1, HashPriority::Normal).unwrap();
    let (policy, nice) = normal.run(this_thread_policy_and_nice).await.unwrap();
    assert_eq!(policy, SCHED_OTHER);
    assert_eq!(nice, this_thread_policy_and_nice().1);
    // Hashing still works on the lowered threads.
    let phc = idle.hash("quiet harbour lanterns".into()).await.unwrap();
    assert!(idle.verify("quiet harbour lanterns".into(), phc).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_job_fails_alone_and_the_pool_keeps_its_threads() {
    let hasher = PasswordHasher::new(cheap(), 1).unwrap();
    for _ in 0..3 {
        let r = hasher.run(|| -> u32 { panic!("boom") }).await;
        assert!(r.is_err());
    }
    assert_eq!(hasher.available(), 1);
    let phc = hasher.hash("the pool survived".into()).await.unwrap();
    assert!(phc.starts_with("$argon2id$"));
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
        assert!(!recovery::verify_and_consume(&mut stored, code), "reuse of {code}");
    }
    assert!(stored.is_empty());
}

#[test]
fn recovery_codes_refuse_wrong_and_malformed() {
    let set = RecoveryCodes::generate().unwrap();
    let mut stored = set.hashes.clone();
    for bad in ["", "ABCD", "not a code at all", "ABCD-EFGH-JKMN-PQRU", "ZZZZ-ZZZZ-ZZZZ-ZZZZ"] {
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

// ---------------------------------------------------------------- Sessions

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use chrono::TimeDelta;
use wardkey_authn::session::{
    self, CookieSpec, RolePolicyOverride, SessionCheck, SessionId, SessionIdError, SessionPolicy, SessionPolicyError,
    SessionState,
};
use wardkey_authn::throttle::{
    self, AccountFailures, LockoutPolicy, LockoutPolicyError, RateLimitError, SourceRateLimiter,
};

const T0: i64 = 1_800_000_000;

fn mins(m: i64) -> TimeDelta {
    TimeDelta::minutes(m)
}

fn secs(s: i64) -> TimeDelta {
    TimeDelta::seconds(s)
}

#[test]
fn session_id_round_trip_and_hash() {
    let id = SessionId::generate().unwrap();
    let encoded = id.encode();
    assert_eq!(encoded.len(), session::SESSION_ID_ENCODED_LEN);
    assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    let parsed = SessionId::parse(&encoded).unwrap();
    assert_eq!(parsed, id);
    assert!(parsed.ct_eq(&id));
    assert_eq!(parsed.hash(), id.hash());
    assert!(id.matches_hash(&id.hash()));
    assert!(!id.matches_hash(&id.hash()[..31]));
    assert!(!id.matches_hash(&[]));
    // Two ids differ, and so do their hashes; the hash is not the id.
    let other = SessionId::generate().unwrap();
    assert_ne!(other, id);
    assert!(!other.ct_eq(&id));
    assert_ne!(other.hash(), id.hash());
    assert!(!other.matches_hash(&id.hash()));
    assert!(session::hash_eq(&id.hash(), &parsed.hash()));
    assert!(!session::hash_eq(&id.hash(), &other.hash()));
    assert!(!format!("{id:?}").contains(&encoded));
}

#[test]
fn session_id_malformed_refused() {
    let good = SessionId::generate().unwrap().encode();
    let huge = "A".repeat(1 << 20);
    let bad: Vec<String> = vec![
        String::new(),
        good[..42].to_string(),
        format!("{good}A"),
        format!("{good}="),
        format!("{}=", &good[..42]),
        format!("{}+", &good[..42]),
        format!("{}/", &good[..42]),
        format!("{} ", &good[..42]),
        format!("{}é", &good[..41]),
        format!("{}\0", &good[..42]),
        huge,
        // Last symbol carries 4 bits plus 2 that must be zero: 'B' (000001) is non-canonical.
        format!("{}B", &good[..42]),
    ];
    for s in &bad {
        assert_eq!(SessionId::parse(s), Err(SessionIdError::Malformed), "{:?}", &s[..s.len().min(60)]);
    }
    // All-zero and all-one ids in canonical form parse.
    assert!(SessionId::parse(&"A".repeat(43)).is_ok());
    assert!(SessionId::parse(&format!("{}w", "_".repeat(42))).is_ok());
}

#[test]
fn session_policy_defaults_and_validation() {
    let p = SessionPolicy::default();
    assert_eq!(p.idle_timeout, mins(15));
    assert_eq!(p.absolute_lifetime, TimeDelta::hours(12));
    assert_eq!(p.step_up_window, mins(5));
    assert_eq!(p.validate(), Ok(()));

    let with = |f: &dyn Fn(&mut SessionPolicy)| {
        let mut p = SessionPolicy::default();
        f(&mut p);
        p.validate()
    };
    assert_eq!(with(&|p| p.idle_timeout = TimeDelta::zero()), Err(SessionPolicyError::IdleTimeout));
    assert_eq!(with(&|p| p.idle_timeout = secs(-1)), Err(SessionPolicyError::IdleTimeout));
    assert_eq!(with(&|p| p.idle_timeout = TimeDelta::hours(25)), Err(SessionPolicyError::IdleTimeout));
    assert_eq!(with(&|p| p.absolute_lifetime = TimeDelta::zero()), Err(SessionPolicyError::AbsoluteLifetime));
    assert_eq!(with(&|p| p.absolute_lifetime = TimeDelta::days(31)), Err(SessionPolicyError::AbsoluteLifetime));
    assert_eq!(
        with(&|p| {
            p.idle_timeout = mins(20);
            p.absolute_lifetime = mins(10);
        }),
        Err(SessionPolicyError::IdleExceedsAbsolute)
    );
    assert_eq!(
        with(&|p| {
            p.idle_timeout = mins(10);
            p.absolute_lifetime = mins(10);
        }),
        Ok(())
    );
    assert_eq!(with(&|p| p.step_up_window = TimeDelta::zero()), Err(SessionPolicyError::StepUpWindow));
    assert_eq!(with(&|p| p.step_up_window = TimeDelta::hours(2)), Err(SessionPolicyError::StepUpWindow));
    assert_eq!(
        RolePolicyOverride { idle_timeout: Some(TimeDelta::zero()), absolute_lifetime: None }.validate(),
        Err(SessionPolicyError::IdleTimeout)
    );
    assert_eq!(
        RolePolicyOverride { idle_timeout: None, absolute_lifetime: Some(TimeDelta::days(365)) }.validate(),
        Err(SessionPolicyError::AbsoluteLifetime)
    );
    assert_eq!(RolePolicyOverride::default().validate(), Ok(()));
}

#[test]
fn strictest_policy_wins() {
    let global = SessionPolicy::default();
    assert_eq!(SessionPolicy::strictest(&global, &[]), global);
    let overrides = [
        // A clinician role on shared workstations: 5-minute idle.
        RolePolicyOverride { idle_timeout: Some(mins(5)), absolute_lifetime: None },
        // An admin role: 8-hour lifetime, a looser idle that must not loosen anything.
        RolePolicyOverride { idle_timeout: Some(mins(30)), absolute_lifetime: Some(TimeDelta::hours(8)) },
        // A role that loosens the lifetime: ignored.
        RolePolicyOverride { idle_timeout: None, absolute_lifetime: Some(TimeDelta::hours(24)) },
        RolePolicyOverride::default(),
    ];
    let p = SessionPolicy::strictest(&global, &overrides);
    assert_eq!(p.idle_timeout, mins(5));
    assert_eq!(p.absolute_lifetime, TimeDelta::hours(8));
    assert_eq!(p.step_up_window, global.step_up_window);
    assert_eq!(p.validate(), Ok(()));
    // Order does not matter.
    let mut reversed = overrides;
    reversed.reverse();
    assert_eq!(SessionPolicy::strictest(&global, &reversed), p);
    // Loosening alone leaves the global policy.
    let loose =
        [RolePolicyOverride { idle_timeout: Some(TimeDelta::hours(1)), absolute_lifetime: Some(TimeDelta::days(2)) }];
    assert_eq!(SessionPolicy::strictest(&global, &loose), global);
    // A lifetime below the idle timeout pulls the idle timeout down with it.
    let short = [RolePolicyOverride { idle_timeout: None, absolute_lifetime: Some(mins(10)) }];
    let p = SessionPolicy::strictest(&global, &short);
    assert_eq!(p.absolute_lifetime, mins(10));
    assert_eq!(p.idle_timeout, mins(10));
    assert_eq!(p.validate(), Ok(()));
}

#[test]
fn idle_expiry_exactly_at_boundary() {
    let policy = SessionPolicy::default();
    let mut s = SessionState::new(at(T0));
    assert_eq!(s.check(&policy, at(T0)), SessionCheck::Active);
    let almost = at(T0) + mins(15) - TimeDelta::nanoseconds(1);
    assert_eq!(s.check(&policy, almost), SessionCheck::Active);
    assert_eq!(s.check(&policy, at(T0) + mins(15)), SessionCheck::IdleExpired { since: at(T0) + mins(15) });
    assert_eq!(s.check(&policy, at(T0) + mins(40)), SessionCheck::IdleExpired { since: at(T0) + mins(15) });
    // Activity moves the idle deadline.
    s.touch(at(T0) + mins(14));
    assert_eq!(s.check(&policy, at(T0) + mins(28)), SessionCheck::Active);
    assert_eq!(s.check(&policy, at(T0) + mins(29)), SessionCheck::IdleExpired { since: at(T0) + mins(29) });
    // touch never moves backwards.
    s.touch(at(T0));
    assert_eq!(s.last_seen_at, at(T0) + mins(14));
    // A stricter role policy expires earlier.
    let strict = SessionPolicy::strictest(
        &policy,
        &[RolePolicyOverride { idle_timeout: Some(mins(5)), absolute_lifetime: None }],
    );
    assert_eq!(s.check(&strict, at(T0) + mins(19)), SessionCheck::IdleExpired { since: at(T0) + mins(19) });
}

#[test]
fn absolute_expiry_even_when_active() {
    let policy = SessionPolicy::default();
    let start = at(T0);
    let mut s = SessionState::new(start);
    // Used every 10 minutes for 12 hours.
    let mut now = start;
    while now + mins(10) < start + TimeDelta::hours(12) {
        now += mins(10);
        assert_eq!(s.check(&policy, now), SessionCheck::Active, "{now}");
        s.touch(now);
    }
    let end = start + TimeDelta::hours(12);
    assert_eq!(s.check(&policy, end - TimeDelta::nanoseconds(1)), SessionCheck::Active);
    s.touch(end - secs(1));
    assert_eq!(s.check(&policy, end), SessionCheck::AbsoluteExpired { since: end });
    // Both passed: the earlier deadline is the reason.
    let mut idle_first = SessionState::new(start);
    idle_first.touch(start + mins(30));
    assert_eq!(
        idle_first.check(&policy, start + TimeDelta::hours(13)),
        SessionCheck::IdleExpired { since: start + mins(45) }
    );
}

#[test]
fn ended_sessions_stay_ended() {
    let policy = SessionPolicy::default();
    let mut s = SessionState::new(at(T0));
    s.end(at(T0) + mins(1));
    s.end(at(T0) + mins(2));
    assert_eq!(s.ended_at, Some(at(T0) + mins(1)));
    assert_eq!(s.check(&policy, at(T0) + mins(1)), SessionCheck::Ended);
    assert_eq!(s.check(&policy, at(T0) + mins(100)), SessionCheck::Ended);
}

#[test]
fn step_up_freshness() {
    let policy = SessionPolicy::default();
    let mut s = SessionState::new(at(T0));
    assert!(s.needs_step_up(&policy, at(T0)));
    s.record_second_factor(at(T0) + mins(1), false);
    assert_eq!(s.mfa_at, Some(at(T0) + mins(1)));
    assert_eq!(s.last_seen_at, at(T0) + mins(1));
    assert!(!s.needs_step_up(&policy, at(T0) + mins(1)));
    assert!(!s.needs_step_up(&policy, at(T0) + mins(6) - TimeDelta::nanoseconds(1)));
    assert!(s.needs_step_up(&policy, at(T0) + mins(6)));
    // A factor stamped in the future is not trusted.
    assert!(s.needs_step_up(&policy, at(T0)));
    // TOTP is not phishing resistant.
    assert!(!s.has_phishing_resistant(at(T0) + mins(1), TimeDelta::hours(12)));
    s.record_second_factor(at(T0) + mins(10), true);
    assert!(!s.needs_step_up(&policy, at(T0) + mins(12)));
    assert!(s.has_phishing_resistant(at(T0) + mins(10), mins(5)));
    assert!(s.has_phishing_resistant(at(T0) + mins(15) - TimeDelta::nanoseconds(1), mins(5)));
    assert!(!s.has_phishing_resistant(at(T0) + mins(15), mins(5)));
    assert!(s.has_phishing_resistant(at(T0) + mins(15), TimeDelta::hours(12)));
    assert!(!s.has_phishing_resistant(at(T0) + mins(9), TimeDelta::hours(12)));
    // A later TOTP step-up keeps the earlier WebAuthn time.
    s.record_second_factor(at(T0) + mins(20), false);
    assert_eq!(s.phishing_resistant_at, Some(at(T0) + mins(10)));
}

#[test]
fn session_cookie_attributes() {
    let id = SessionId::generate().unwrap();
    let header = CookieSpec::default().set_cookie(&id);
    let parts: Vec<&str> = header.split("; ").collect();
    assert_eq!(parts[0], format!("__Host-wardkey_session={}", id.encode()));
    for attr in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(parts.contains(&attr), "{attr} missing from {header}");
    }
    assert!(!header.to_ascii_lowercase().contains("domain"));
    assert!(!header.contains("Max-Age"));
    assert!(!header.contains("Expires"));

    let with_age = CookieSpec::for_policy(&SessionPolicy::default()).set_cookie(&id);
    assert!(with_age.split("; ").any(|p| p == "Max-Age=43200"), "{with_age}");
    assert!(!with_age.to_ascii_lowercase().contains("domain"));

    let clear = CookieSpec::clear_cookie();
    let parts: Vec<&str> = clear.split("; ").collect();
    assert_eq!(parts[0], "__Host-wardkey_session=");
    for attr in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict", "Max-Age=0"] {
        assert!(parts.contains(&attr), "{attr} missing from {clear}");
    }
    assert!(!clear.to_ascii_lowercase().contains("domain"));
}

#[test]
fn session_cookie_from_request_header() {
    let id = SessionId::generate().unwrap();
    let enc = id.encode();
    let found = CookieSpec::session_id_from_cookie_header(&format!("a=1; __Host-wardkey_session={enc}; b=2"));
    assert_eq!(found, Some(id));
    assert_eq!(CookieSpec::session_id_from_cookie_header(""), None);
    assert_eq!(CookieSpec::session_id_from_cookie_header("a=1; b"), None);
    assert_eq!(CookieSpec::session_id_from_cookie_header("__Host-wardkey_session=forged"), None);
    // Without the prefix the cookie could have been set by a sibling host: ignored.
    assert_eq!(CookieSpec::session_id_from_cookie_header(&format!("wardkey_session={enc}")), None);
    // Two session cookies: refused.
    let other = SessionId::generate().unwrap().encode();
    assert_eq!(
        CookieSpec::session_id_from_cookie_header(&format!(
            "__Host-wardkey_session={enc}; __Host-wardkey_session={other}"
        )),
        None
    );
}

// ---------------------------------------------------------------- Throttling

fn lockout(lock_duration: Option<TimeDelta>) -> LockoutPolicy {
    LockoutPolicy { lock_duration, ..LockoutPolicy::default() }
}

#[test]
fn lockout_policy_validation() {
    assert_eq!(LockoutPolicy::default().lock_after, 10);
    assert_eq!(LockoutPolicy::default().validate(), Ok(()));
    assert_eq!(lockout(None).validate(), Ok(()));
    for (n, ok) in [(0, false), (1, true), (100, true), (101, false), (u32::MAX, false)] {
        let p = LockoutPolicy { lock_after: n, ..LockoutPolicy::default() };
        let want = if ok { Ok(()) } else { Err(LockoutPolicyError::LockAfter) };
        assert_eq!(p.validate(), want, "lock_after = {n}");
    }
    let p = LockoutPolicy { base_delay: secs(-1), ..LockoutPolicy::default() };
    assert_eq!(p.validate(), Err(LockoutPolicyError::BaseDelay));
    let p = LockoutPolicy { base_delay: secs(10), max_delay: secs(5), ..LockoutPolicy::default() };
    assert_eq!(p.validate(), Err(LockoutPolicyError::MaxDelay));
    let p = LockoutPolicy { max_delay: TimeDelta::hours(2), ..LockoutPolicy::default() };
    assert_eq!(p.validate(), Err(LockoutPolicyError::MaxDelay));
    assert_eq!(lockout(Some(TimeDelta::zero())).validate(), Err(LockoutPolicyError::LockDuration));
}

#[test]
fn lockout_after_exactly_n_failures_with_growing_capped_delay() {
    let policy = lockout(None);
    let mut acct = AccountFailures::default();
    assert_eq!(acct.earliest_next_attempt(&policy), None);
    let want_delays = [1, 2, 4, 8, 16, 32, 60, 60, 60];
    let mut now = at(T0);
    for (i, want) in want_delays.iter().enumerate() {
        assert!(!acct.is_locked(&policy, now), "locked before failure {}", i + 1);
        let out = acct.record_failure(&policy, now);
        assert_eq!(out.delay_before_next, secs(*want), "failure {}", i + 1);
        assert!(!out.locked_now, "failure {}", i + 1);
        assert_eq!(acct.consecutive, i as u32 + 1);
        assert_eq!(acct.earliest_next_attempt(&policy), Some(now + secs(*want)));
        now += secs(*want);
    }
    assert!(!acct.is_locked(&policy, now));
    let out = acct.record_failure(&policy, now);
    assert!(out.locked_now);
    assert_eq!(out.delay_before_next, secs(60));
    assert_eq!(acct.locked_at, Some(now));
    assert!(acct.is_locked(&policy, now));
    // Locked until an admin unlocks: no time will do.
    assert!(acct.is_locked(&policy, now + TimeDelta::days(3650)));
    assert_eq!(acct.earliest_next_attempt(&policy), Some(chrono::DateTime::<Utc>::MAX_UTC));
    // Further failures are counted but do not lock "again".
    let out = acct.record_failure(&policy, now + secs(1));
    assert!(!out.locked_now);
    assert_eq!(acct.consecutive, 11);
    assert_eq!(acct.locked_at, Some(now));
    // Admin unlock clears everything.
    acct.admin_unlock();
    assert_eq!(acct, AccountFailures::default());
    assert!(!acct.is_locked(&policy, now));
}

#[test]
fn lock_after_one_and_hundred() {
    for n in [1u32, 100] {
        let policy = LockoutPolicy { lock_after: n, ..lockout(None) };
        let mut acct = AccountFailures::default();
        for i in 1..n {
            assert!(!acct.record_failure(&policy, at(T0 + i64::from(i))).locked_now);
        }
        assert!(acct.record_failure(&policy, at(T0 + 1000)).locked_now, "n = {n}");
        assert_eq!(acct.consecutive, n);
    }
}

#[test]
fn success_resets_failures() {
    let policy = LockoutPolicy::default();
    let mut acct = AccountFailures::default();
    for i in 0..9 {
        acct.record_failure(&policy, at(T0 + i * 100));
    }
    acct.record_success();
    assert_eq!(acct, AccountFailures::default());
    assert_eq!(acct.earliest_next_attempt(&policy), None);
    // The count starts again from zero: nine more failures do not lock.
    for i in 0..9 {
        let out = acct.record_failure(&policy, at(T0 + 10_000 + i * 100));
        assert!(!out.locked_now);
    }
    assert_eq!(acct.record_failure(&policy, at(T0 + 20_000)).delay_before_next, secs(60));
    assert!(acct.is_locked(&policy, at(T0 + 20_000)));
}

#[test]
fn auto_unlock_after_lock_duration() {
    let policy = lockout(Some(mins(30)));
    let mut acct = AccountFailures::default();
    let mut locked_at = None;
    for i in 0..10 {
        let now = at(T0) + secs(i * 60);
        if acct.record_failure(&policy, now).locked_now {
            locked_at = Some(now);
        }
    }
    let locked_at = locked_at.unwrap();
    assert_eq!(acct.earliest_next_attempt(&policy), Some(locked_at + mins(30)));
    assert!(acct.is_locked(&policy, locked_at + mins(30) - TimeDelta::nanoseconds(1)));
    assert!(!acct.is_locked(&policy, locked_at + mins(30)));
    // The next failure after the lock ran out starts a fresh count.
    let out = acct.record_failure(&policy, locked_at + mins(31));
    assert!(!out.locked_now);
    assert_eq!(acct.consecutive, 1);
    assert_eq!(acct.locked_at, None);
    assert_eq!(out.delay_before_next, secs(1));
}

fn v4(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(n))
}

#[test]
fn rate_limiter_validation() {
    assert_eq!(SourceRateLimiter::new(0, 1.0, 10).err(), Some(RateLimitError::Capacity));
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert_eq!(SourceRateLimiter::new(5, bad, 10).err(), Some(RateLimitError::Refill));
    }
    assert_eq!(SourceRateLimiter::new(5, 1.0, 0).err(), Some(RateLimitError::MaxSources));
}

#[test]
fn rate_limiter_capacity_refill_and_isolation() {
    // 5 at once, then one every 2 seconds.
    let mut rl = SourceRateLimiter::new(5, 0.5, 1000).unwrap();
    let a = v4(0xC000_0201);
    let b = v4(0xC000_0202);
    let t = at(T0);
    for i in 0..5 {
        assert!(rl.check(a, t), "request {i}");
    }
    assert!(!rl.check(a, t));
    assert!(!rl.check(a, t));
    // Another source is unaffected.
    for _ in 0..5 {
        assert!(rl.check(b, t));
    }
    assert!(!rl.check(b, t));
    // Refill: half a token after 1 s is not enough; one token after 2 s.
    assert!(!rl.check(a, t + secs(1)));
    assert!(rl.check(a, t + secs(2)));
    assert!(!rl.check(a, t + secs(2)));
    // A long quiet spell refills to capacity and no more.
    let later = t + TimeDelta::hours(1);
    for _ in 0..5 {
        assert!(rl.check(a, later));
    }
    assert!(!rl.check(a, later));
    // Time going backwards grants nothing.
    assert!(!rl.check(a, t));
    // Addresses in one IPv6 /64 share a bucket; another /64 does not.
    let n1: Ipv6Addr = "2001:db8:aa:1::1".parse().unwrap();
    let n2: Ipv6Addr = "2001:db8:aa:1:dead:beef:0:2".parse().unwrap();
    let n3: Ipv6Addr = "2001:db8:aa:2::1".parse().unwrap();
    for _ in 0..5 {
        assert!(rl.check(n1.into(), t));
    }
    assert!(!rl.check(n2.into(), t));
    assert!(rl.check(n3.into(), t));
    assert_eq!(rl.tracked_sources(), 4);
    // Full buckets are pruned; exhausted ones are kept.
    rl.prune(later);
    assert_eq!(rl.tracked_sources(), 1); // only `a`, exhausted at `later`
    assert!(!rl.check(a, later));
}

#[test]
fn rate_limiter_tracked_sources_bounded_under_spraying() {
    let cap = throttle::DEFAULT_MAX_SOURCES;
    let mut rl = SourceRateLimiter::new(3, 0.1, cap).unwrap();
    let t = at(T0);
    let victim = v4(0x0A00_0001);
    for _ in 0..3 {
        assert!(rl.check(victim, t));
    }
    assert!(!rl.check(victim, t));
    for i in 0..200_000u32 {
        // 11.0.0.0 onwards: never the victim.
        assert!(rl.check(v4(0x0B00_0000 + i), t));
        assert!(rl.tracked_sources() <= cap);
    }
    assert_eq!(rl.tracked_sources(), cap);
    // The most recent sources are still tracked (and limited); the oldest were evicted.
    let last = v4(0x0B00_0000 + 199_999);
    assert!(rl.check(last, t));
    assert!(rl.check(last, t));
    assert!(!rl.check(last, t));
    assert!(rl.check(victim, t)); // evicted long ago: starts afresh
    assert_eq!(rl.tracked_sources(), cap);
}
