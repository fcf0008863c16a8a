#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Tests of wardkey-audit: canonical encoding, Merkle tree cross-checked against ct-merkle,
//! signed checkpoints, and the offline verifier.

use chrono::{DateTime, TimeZone, Utc};
use ct_merkle::mem_backed_tree::MemoryBackedTree;
use proptest::prelude::*;
use serde_json::json;
use sha2_011::Sha256 as CtSha256;
use wardkey_audit::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
}

fn sample_event() -> AuditEvent {
    let time = t0() + chrono::Duration::nanoseconds(123_456_789);
    AuditEvent::new(
        42,
        time,
        AuditDraft::new("token:0190a0b2-7c1e-7000-8000-000000000001", Action::UserCreate, Outcome::Success)
            .with_target("user:abc")
            .with_source_ip(Some("10.0.0.1".to_string()))
            .with_request_id("req-1")
            .with_details(
                json!({"b": [1, -2, 1.5, true, null, 1e20, -0.0, 2.0, 0.1], "a": "x\"y\n\u{1}é/\\", "A": {}}),
            ),
    )
}

// ---------------------------------------------------------------- canonical encoding

#[test]
fn canonical_bytes_pinned() {
    let e = sample_event();
    let want = concat!(
        r#"{"v":1,"index":42,"time":"2026-11-22T10:00:00.123456Z","#,
        r#""actor":"token:0190a0b2-7c1e-7000-8000-000000000001","action":"user.create","#,
        r#""target":"user:abc","outcome":"success","reason":null,"source_ip":"10.0.0.1","#,
        r#""request_id":"req-1","approver":null,"request_ref":null,"#,
        r#""details":{"A":{},"a":"x\"y\n\u0001é/\\","b":[1,-2,1.5,true,null,100000000000000000000,-0,2,0.1]}}"#
    );
    assert_eq!(String::from_utf8(e.canonical_bytes()).unwrap(), want);
    assert_eq!(e.leaf_hash().to_hex(), "a9830519fcca4456d3d711b4ce42d76d11d80ca782259aab61832585d616638d");
    // leaf = SHA-256(0x00 || bytes)
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update([0u8]);
    h.update(want.as_bytes());
    assert_eq!(e.leaf_hash().0, <[u8; 32]>::from(h.finalize()));
    // buffer reuse gives the same bytes
    let mut buf = b"garbage".to_vec();
    e.canonical_bytes_into(&mut buf);
    assert_eq!(buf, want.as_bytes());
}

#[test]
fn event_serde_round_trip_and_outcome() {
    let e = sample_event();
    let s = serde_json::to_value(&e).unwrap();
    assert_eq!(s["index"], 42);
    assert_eq!(s["outcome"], "success");
    assert_eq!(s["actor"], "token:0190a0b2-7c1e-7000-8000-000000000001");
    let back: AuditEvent = serde_json::from_value(s).unwrap();
    assert_eq!(back, e);
    assert_eq!(back.canonical_bytes(), e.canonical_bytes());
    for o in [Outcome::Success, Outcome::Denied, Outcome::Failure] {
        assert_eq!(Outcome::parse(o.as_str()).unwrap(), o);
    }
    assert!(Outcome::parse("ok").is_err());
    let d = AuditDraft::uncatalogued("a", "b", Outcome::Denied).with_detail("k", 1).with_detail("j", "x");
    assert_eq!(d.details, json!({"k": 1, "j": "x"}));
    assert_eq!(truncate_to_micros(t0() + chrono::Duration::nanoseconds(999)), t0());
}

#[test]
fn every_field_changes_the_leaf() {
    let base = sample_event();
    type Edit = Box<dyn Fn(&mut AuditEvent)>;
    let variants: Vec<Edit> = vec![
        Box::new(|e| e.index += 1),
        Box::new(|e| e.time += chrono::Duration::microseconds(1)),
        Box::new(|e| e.draft.actor.push('x')),
        Box::new(|e| e.draft.action.push('x')),
        Box::new(|e| e.draft.target = None),
        Box::new(|e| e.draft.outcome = Outcome::Denied),
        Box::new(|e| e.draft.reason = Some(String::new())),
        Box::new(|e| e.draft.source_ip = None),
        Box::new(|e| e.draft.request_id = Some("req-2".into())),
        Box::new(|e| e.draft.approver = Some("x".into())),
        Box::new(|e| e.draft.request_ref = Some("x".into())),
        Box::new(|e| e.draft.details = json!(null)),
    ];
    for (i, f) in variants.iter().enumerate() {
        let mut e = base.clone();
        f(&mut e);
        assert_ne!(e.leaf_hash(), base.leaf_hash(), "variant {i}");
    }
}

proptest! {
    #[test]
    fn string_escaping_matches_serde_json(s in any::<String>(), k in any::<String>()) {
        let mut e = sample_event();
        e.draft.details = json!({ k.clone(): s.clone() });
        let bytes = String::from_utf8(e.canonical_bytes()).unwrap();
        let want = format!(r#""details":{{{}:{}}}}}"#,
            serde_json::to_string(&k).unwrap(), serde_json::to_string(&s).unwrap());
        prop_assert!(bytes.ends_with(&want), "{} !~ {}", bytes, want);
        e.draft.actor = s.clone();
        let bytes = String::from_utf8(e.canonical_bytes()).unwrap();
        let want_actor = format!(r#","actor":{},"#, serde_json::to_string(&s).unwrap());
        prop_assert!(bytes.contains(&want_actor));
    }

    #[test]
    fn time_format_matches_chrono(secs in 0i64..253_402_300_799, nanos in 0u32..1_000_000_000) {
        let t = Utc.timestamp_opt(secs, nanos).unwrap();
        prop_assert_eq!(format_time(&t), t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
    }
}

// ---------------------------------------------------------------- tree

/// A simulated store: one blob per record; the appender's cache starts cold every `cold_every`.
struct Store {
    blobs: Vec<Vec<u8>>,
    leaves: Vec<Hash>,
}

impl Store {
    fn new() -> Self {
        Store { blobs: Vec::new(), leaves: Vec::new() }
    }

    fn load(&self, cache: &mut HashCache, missing: &[u64]) {
        for r in records_for_indices(missing) {
            cache.insert_record_blob(r, &self.blobs[r as usize]).unwrap();
        }
    }

    fn append(&mut self, cache: &mut HashCache, leaf: Hash) {
        let n = self.blobs.len() as u64;
        let mut rounds = 0;
        let hashes = loop {
            match append_hashes(cache, n, leaf) {
                Ok(h) => break h,
                Err(MissingHashes(m)) => {
                    rounds += 1;
                    assert!(rounds < 3);
                    self.load(cache, &m);
                }
            }
        };
        self.blobs.push(encode_hashes(&hashes));
        self.leaves.push(leaf);
    }

    /// Two-phase computation from a cold cache, the way the store does it.
    fn compute<T>(&self, f: impl Fn(&HashCache) -> Result<T, AuditError>) -> T {
        let mut cache = HashCache::default();
        for _ in 0..3 {
            match f(&cache) {
                Ok(v) => return v,
                Err(AuditError::MissingHashes(m)) => self.load(&mut cache, &m),
                Err(e) => panic!("{e}"),
            }
        }
        panic!("still missing hashes after loading them");
    }

    /// Same, but fetching exactly the announced indices up front.
    fn compute_planned<T>(&self, indices: Vec<u64>, f: impl Fn(&HashCache) -> Result<T, AuditError>) -> T {
        let mut cache = HashCache::default();
        for i in indices {
            let (r, off) = record_for_stored_index(i);
            let hs = decode_hashes(&self.blobs[r as usize]).unwrap();
            cache.insert(i, hs[off]);
        }
        f(&cache).unwrap()
    }
}

fn ct_root(t: &MemoryBackedTree<CtSha256, Vec<u8>>) -> [u8; 32] {
    let r = t.root();
    let mut a = [0u8; 32];
    a.copy_from_slice(r.as_bytes());
    a
}

fn concat(h: &[Hash]) -> Vec<u8> {
    encode_hashes(h)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]
    #[test]
    fn tree_matches_ct_merkle(
        data in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..=300usize),
        cold in prop::collection::vec(any::<bool>(), 300),
        picks in prop::collection::vec((any::<u64>(), any::<u64>(), any::<u64>()), 12),
    ) {
        let n = data.len() as u64;
        let mut store = Store::new();
        let mut cache = HashCache::default();
        let mut ct: MemoryBackedTree<CtSha256, Vec<u8>> = MemoryBackedTree::new();
        let mut ct_roots = vec![];
        for (i, d) in data.iter().enumerate() {
            if cold[i] { cache.clear(); }
            store.append(&mut cache, tlog_tiles::record_hash(d));
            ct.push(d.clone());
            ct_roots.push(ct_root(&ct));
        }
        // Blobs equal tlog_tiles::stored_hashes with a full reader.
        let mut all = HashCache::default();
        for (i, d) in data.iter().enumerate() {
            let want = tlog_tiles::stored_hashes(i as u64, d, &all).unwrap();
            prop_assert_eq!(&encode_hashes(&want), &store.blobs[i]);
            all.insert_record(i as u64, &want);
        }
        // Roots at every size.
        for s in 1..=n {
            let r = store.compute(|c| tree_root(s, c));
            prop_assert_eq!(r.0, ct_roots[s as usize - 1], "root at {}", s);
            let r2 = store.compute_planned(indices_for_root(s), |c| tree_root(s, c));
            prop_assert_eq!(r2, r);
        }
        prop_assert_eq!(tree_root(0, &HashCache::default()).unwrap(), EMPTY_HASH);

        for &(a, b, c) in &picks {
            // Inclusion of `idx` in a tree of size `size`.
            let size = 1 + a % n;
            let idx = b % size;
            let mut ct_s: MemoryBackedTree<CtSha256, Vec<u8>> = MemoryBackedTree::new();
            for d in &data[..size as usize] { ct_s.push(d.clone()); }
            let proof = store.compute(|c| inclusion_proof(idx, size, c));
            prop_assert_eq!(concat(&proof), ct_s.prove_inclusion(idx as usize).as_bytes().to_vec());
            let planned = store.compute_planned(indices_for_inclusion(idx, size).unwrap(), |c| inclusion_proof(idx, size, c));
            prop_assert_eq!(&planned, &proof);
            let root = Hash(ct_roots[size as usize - 1]);
            let leaf = store.leaves[idx as usize];
            prop_assert!(verify_inclusion(idx, size, leaf, root, &proof).is_ok());
            prop_assert!(verify_inclusion(idx, size, Hash([7; 32]), root, &proof).is_err());
            if !proof.is_empty() {
                let mut bad = proof.clone();
                let k = (c as usize) % bad.len();
                bad[k].0[0] ^= 1;
                prop_assert!(verify_inclusion(idx, size, leaf, root, &bad).is_err());
                prop_assert!(verify_inclusion(idx, size, leaf, root, &proof[1..]).is_err());
            }
            // Consistency from `from` to `to`.
            let to = 1 + c % n;
            let from = 1 + a.rotate_left(17) % to;
            let mut ct_t: MemoryBackedTree<CtSha256, Vec<u8>> = MemoryBackedTree::new();
            for d in &data[..to as usize] { ct_t.push(d.clone()); }
            let proof = store.compute(|c| consistency_proof(from, to, c));
            prop_assert_eq!(concat(&proof), ct_t.prove_consistency((to - from) as usize).as_bytes().to_vec());
            let planned = store.compute_planned(indices_for_consistency(from, to).unwrap(), |c| consistency_proof(from, to, c));
            prop_assert_eq!(&planned, &proof);
            let (fr, tr) = (Hash(ct_roots[from as usize - 1]), Hash(ct_roots[to as usize - 1]));
            prop_assert!(verify_consistency(from, fr, to, tr, &proof).is_ok());
            prop_assert!(verify_consistency(from, Hash([1; 32]), to, tr, &proof).is_err());
            if !proof.is_empty() {
                let mut bad = proof.clone();
                bad[(b as usize) % proof.len()].0[31] ^= 0x80;
                prop_assert!(verify_consistency(from, fr, to, tr, &bad).is_err());
            }
        }
    }
}

#[test]
fn proof_argument_errors() {
    let c = HashCache::default();
    assert!(matches!(indices_for_inclusion(5, 5), Err(AuditError::InvalidInput(_))));
    assert!(matches!(indices_for_consistency(6, 5), Err(AuditError::InvalidInput(_))));
    assert!(matches!(inclusion_proof(0, 0, &c), Err(AuditError::InvalidInput(_))));
    assert!(matches!(tree_root(3, &c), Err(AuditError::MissingHashes(_))));
    assert_eq!(consistency_proof(0, 9, &c).unwrap(), vec![]);
    assert!(verify_consistency(0, EMPTY_HASH, 9, Hash([1; 32]), &[]).is_ok());
    assert!(verify_consistency(0, EMPTY_HASH, 9, Hash([1; 32]), &[Hash([0; 32])]).is_err());
    assert!(verify_inclusion(3, 3, Hash([0; 32]), Hash([0; 32]), &[]).is_err());
    assert!(decode_hashes(&[0u8; 33]).is_err());
    assert_eq!(
        decode_hashes(&encode_hashes(&[Hash([3; 32]), Hash([4; 32])])).unwrap(),
        vec![Hash([3; 32]), Hash([4; 32])]
    );
}

#[test]
fn stored_index_mapping() {
    let mut next = 0u64;
    for n in 0..5000u64 {
        let span = stored_hash_span(n);
        assert_eq!(span.start, next, "record {n}");
        assert_eq!(span.end, tlog_tiles::stored_hash_index(0, n + 1));
        for (off, i) in span.clone().enumerate() {
            assert_eq!(record_for_stored_index(i), (n, off));
        }
        next = span.end;
        assert_eq!(stored_hash_count(n + 1), next);
    }
}

#[test]
fn appender_cache_stays_bounded() {
    let mut cache = HashCache::default();
    let mut full = HashCache::default();
    let mut max_len = 0;
    for n in 0..10_000u64 {
        let data = n.to_be_bytes();
        let leaf = tlog_tiles::record_hash(&data);
        let got = cache.append(n, leaf).expect("frontier suffices");
        let want = tlog_tiles::stored_hashes(n, &data, &full).unwrap();
        assert_eq!(got, want, "record {n}");
        full.insert_record(n, &want);
        max_len = max_len.max(cache.len());
        assert!(cache.len() <= 64);
        // The frontier also gives the root for the next checkpoint, no DB reads.
        if n % 997 == 0 {
            assert_eq!(tree_root(n + 1, &cache).unwrap(), tree_root(n + 1, &full).unwrap());
        }
    }
    assert!(max_len <= 14, "max cache len {max_len}");
    // The explicit API: append_hashes + insert_record + retain_frontier.
    let mut c2 = HashCache::default();
    for n in 0..300u64 {
        let leaf = tlog_tiles::record_hash(&n.to_be_bytes());
        let h = append_hashes(&c2, n, leaf).unwrap();
        c2.insert_record(n, &h);
        c2.retain_frontier(n + 1);
        assert!(c2.len() <= 9);
    }
    // A cold cache reports what it needs.
    let cold = HashCache::default();
    let err = append_hashes(&cold, 7, Hash([0; 32])).unwrap_err();
    assert_eq!(err.0, indices_for_append(7));
    assert_eq!(err.records(), vec![3, 5, 6]);
}

// ---------------------------------------------------------------- signing

#[test]
fn signer_round_trip() {
    let s = LogSigner::generate("wardkey/test-install");
    assert_eq!(s.origin(), "wardkey/test-install");
    let file = s.to_secret_file();
    assert!(file.starts_with("PRIVATE+KEY+wardkey/test-install+"));
    // PRIVATE+KEY+<origin>+<key hash>+<base64 key>: the key is everything after the fourth
    // '+' (base64 has '+' of its own, so splitting from the right would cut it short).
    let secret = file.trim().splitn(5, '+').nth(4).unwrap().to_owned();
    assert!(secret.len() >= 40, "{secret}");
    assert!(!format!("{s:?}").contains(&secret));
    let s2 = LogSigner::from_secret_file(&file).unwrap();
    assert_eq!(s2.verifier_key(), s.verifier_key());
    assert_eq!(s2.key_id(), s.key_id());

    let time = t0() + chrono::Duration::nanoseconds(1_500);
    let root = Hash([9; 32]);
    let note = s.sign_checkpoint(77, root, time);
    let v = LogVerifier::from_vkey(&s.verifier_key()).unwrap();
    assert_eq!(v.origin(), "wardkey/test-install");
    let cp = v.open_checkpoint(&note).unwrap();
    assert_eq!(
        cp,
        Checkpoint { origin: "wardkey/test-install".into(), size: 77, root, time: Some(truncate_to_micros(time)) }
    );
    assert_eq!(LogVerifier::from_signer(&s2).open_checkpoint(&note).unwrap(), cp);
    let j = serde_json::to_value(&cp).unwrap();
    assert_eq!(j["root"], root.to_base64());
    let back: Checkpoint = serde_json::from_value(j).unwrap();
    assert_eq!(back, cp);

    // Independent parsers accept it.
    let parsed = signed_note::Note::from_bytes(note.as_bytes()).unwrap();
    let sv = signed_note::StandardVerifier::new(&s.verifier_key()).unwrap();
    parsed.verify(&signed_note::VerifierList::new(vec![Box::new(sv)])).unwrap();
    let body = tlog_tiles::Checkpoint::from_bytes(parsed.text()).unwrap();
    assert_eq!(body.size(), 77);
    assert_eq!(body.extension(), "time 2026-11-22T10:00:00.000001Z\n");
}

#[test]
fn checkpoint_note_pinned() {
    let s = LogSigner::from_seed("wardkey/pinned", [7; 32]).unwrap();
    let note = s.sign_checkpoint(5, Hash([1; 32]), t0());
    assert_eq!(
        note,
        "wardkey/pinned\n5\nAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\ntime 2026-11-22T10:00:00.000000Z\n\n\u{2014} wardkey/pinned HOE0OnISbu6ydCVBT15AzoWI3V/Vcb/jb5+dl1cFvURDOnCBaJl+cwAfAR31MGD5mP4xqxT+YLRipZxfPXmU9K0L/w4=\n"
    );
}

#[test]
fn tampered_or_foreign_checkpoints_fail() {
    let s = LogSigner::generate("wardkey/a");
    let v = LogVerifier::from_signer(&s);
    let note = s.sign_checkpoint(10, Hash([2; 32]), t0());
    // Flip one byte of the body (size 10 -> 11) and of the signature.
    let tampered = note.replacen("\n10\n", "\n11\n", 1);
    assert!(matches!(v.open_checkpoint(&tampered), Err(AuditError::InvalidCheckpoint(_))));
    let sig_start = note.rfind(' ').unwrap() + 10;
    let mut bytes = note.clone().into_bytes();
    bytes[sig_start] = if bytes[sig_start] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(bytes).unwrap();
    assert!(v.open_checkpoint(&flipped).is_err());
    // Flip a byte of the root.
    let root_line = note.lines().nth(2).unwrap();
    let other_root = Hash([3; 32]).to_base64();
    assert!(v.open_checkpoint(&note.replacen(root_line, &other_root, 1)).is_err());
    // Wrong key, same origin.
    let other = LogSigner::generate("wardkey/a");
    assert!(LogVerifier::from_signer(&other).open_checkpoint(&note).is_err());
    // Wrong origin.
    let b = LogSigner::generate("wardkey/b");
    assert!(LogVerifier::from_signer(&b).open_checkpoint(&note).is_err());
    // Garbage.
    assert!(v.open_checkpoint("").is_err());
    assert!(v.open_checkpoint("wardkey/a\n10\n").is_err());
}

#[test]
fn key_parsing() {
    let s = LogSigner::generate("wardkey/k");
    let vk = s.verifier_key();
    assert!(vk.starts_with("wardkey/k+"));
    let v = LogVerifier::from_vkey(&format!("  {vk}\n")).unwrap();
    assert_eq!(v.key_id(), s.key_id());
    assert_eq!(v.vkey(), vk);
    assert!(LogVerifier::from_vkey("wardkey/k+00000000+AQ==").is_err());
    assert!(LogVerifier::from_vkey("nonsense").is_err());
    let mut wrong_id = vk.clone();
    let pos = vk.find('+').unwrap() + 1;
    wrong_id.replace_range(pos..pos + 8, "deadbeef");
    assert!(LogVerifier::from_vkey(&wrong_id).is_err());
    assert!(LogSigner::from_secret_file("PRIVATE+KEY+x+00000000+AQ==").is_err());
    assert!(LogSigner::from_secret_file(&vk).is_err());
    assert_eq!(LogSigner::generate("bad origin+x").origin(), "bad-origin-x");
    assert_eq!(LogSigner::generate("").origin(), "wardkey");
}

// ---------------------------------------------------------------- offline verifier

#[derive(Clone)]
struct Row {
    event: AuditEvent,
    leaf: Option<Hash>,
    hashes: Option<Vec<u8>>,
}

fn make_event(i: u64) -> AuditEvent {
    AuditEvent::new(
        i,
        t0() + chrono::Duration::milliseconds(i as i64 * 37),
        AuditDraft::new(format!("token:{}", i % 7), Action::UserUpdate, Outcome::Success)
            .with_target(format!("user:{i}"))
            .with_details(json!({"n": i, "tags": ["a", "b"]})),
    )
}

/// A log of `n` events as the store writes it, with checkpoints signed at `cps` sizes.
fn make_log(n: u64, cps: &[u64], signer: &LogSigner) -> (Vec<Row>, Vec<String>) {
    let mut cache = HashCache::default();
    let mut rows = vec![];
    let mut notes = vec![];
    for i in 0..n {
        let e = make_event(i);
        let leaf = e.leaf_hash();
        let hashes = cache.append(i, leaf).unwrap();
        rows.push(Row { event: e, leaf: Some(leaf), hashes: Some(encode_hashes(&hashes)) });
        if cps.contains(&(i + 1)) {
            let root = tree_root(i + 1, &cache).unwrap();
            notes.push(signer.sign_checkpoint(i + 1, root, t0()));
        }
    }
    (rows, notes)
}

fn run(rows: &[Row], notes: &[String], v: &LogVerifier) -> Result<VerifyReport, VerifyFailure> {
    let cps = open_checkpoints(v, notes)?;
    let mut tree = TreeVerifier::for_checkpoints(&cps);
    for r in rows {
        tree.push(&r.event, r.leaf, r.hashes.as_deref())?;
    }
    verify_checkpoints(&tree, &cps)
}

const CPS: [u64; 5] = [1, 10, 37, 64, 90];

fn setup() -> (Vec<Row>, Vec<String>, LogVerifier, LogSigner) {
    let s = LogSigner::generate("wardkey/verify");
    let (rows, notes) = make_log(100, &CPS, &s);
    (rows, notes, LogVerifier::from_signer(&s), s)
}

fn fails_at(r: Result<VerifyReport, VerifyFailure>) -> u64 {
    match r {
        Ok(rep) => panic!("expected failure, got {rep:?}"),
        Err(f) => {
            assert!(f.to_string().starts_with(&format!("audit log verification failed at index {}: ", f.index)));
            f.index
        }
    }
}

#[test]
fn intact_log_verifies() {
    let (rows, notes, v, _) = setup();
    let rep = run(&rows, &notes, &v).unwrap();
    assert_eq!(rep.tree_size, 100);
    assert_eq!(rep.checkpoints, 5);
    assert_eq!(rep.unchecked_events, 10);
    assert_eq!(rep.last_checkpoint.as_ref().unwrap().size, 90);
    // Also without the stored columns.
    let bare: Vec<Row> = rows.iter().map(|r| Row { leaf: None, hashes: None, ..r.clone() }).collect();
    assert_eq!(run(&bare, &notes, &v).unwrap(), rep);
    // Roots registered by size.
    let mut t = TreeVerifier::new();
    t.want_root_at(0);
    t.want_root_at(50);
    for r in &rows {
        t.push(&r.event, r.leaf, r.hashes.as_deref()).unwrap();
    }
    let mut cache = HashCache::default();
    for r in &rows[..50] {
        cache.insert_record(r.event.index, &decode_hashes(r.hashes.as_ref().unwrap()).unwrap());
    }
    assert_eq!(t.root_at(50), Some(tree_root(50, &cache).unwrap()));
    assert_eq!(t.root_at(0), Some(EMPTY_HASH));
    assert_eq!(t.root_at(51), None);
    assert_eq!(t.size(), 100);
}

#[test]
fn changed_field_is_named() {
    let (rows, notes, v, _) = setup();
    for k in [0, 9, 50, 95] {
        let mut r = rows.clone();
        r[k].event.draft.action = "user.delete".into();
        assert_eq!(fails_at(run(&r, &notes, &v)), k as u64);
        // Without a leaf column the blob still catches it.
        r[k].leaf = None;
        assert_eq!(fails_at(run(&r, &notes, &v)), k as u64);
    }
    // Changed time / details.
    let mut r = rows.clone();
    r[33].event.time += chrono::Duration::microseconds(1);
    assert_eq!(fails_at(run(&r, &notes, &v)), 33);
    let mut r = rows.clone();
    r[34].event.draft.details = json!({"n": 34});
    assert_eq!(fails_at(run(&r, &notes, &v)), 34);
    // A corrupted interior hash in a blob.
    let mut r = rows.clone();
    let b = r[63].hashes.as_mut().unwrap();
    b[40] ^= 1;
    assert_eq!(fails_at(run(&r, &notes, &v)), 63);
}

#[test]
fn rewritten_tree_is_caught_by_checkpoints() {
    let (rows, notes, v, _) = setup();
    // Attacker edits event 50 and recomputes every leaf and blob consistently.
    let mut cache = HashCache::default();
    let mut r = rows.clone();
    r[50].event.draft.outcome = Outcome::Denied;
    for (i, row) in r.iter_mut().enumerate() {
        let leaf = row.event.leaf_hash();
        row.leaf = Some(leaf);
        row.hashes = Some(encode_hashes(&cache.append(i as u64, leaf).unwrap()));
    }
    assert_eq!(fails_at(run(&r, &notes, &v)), 37); // the checkpoint before the edit
    // Same without stored columns at all.
    let bare: Vec<Row> = rows
        .iter()
        .map(|x| Row { leaf: None, hashes: None, ..x.clone() })
        .enumerate()
        .map(|(i, mut x)| {
            if i == 95 {
                x.event.draft.actor = "operator:root".into();
            }
            x
        })
        .collect();
    // 95 is after the last checkpoint: not detectable without stored columns, only reported.
    assert_eq!(run(&bare, &notes, &v).unwrap().unchecked_events, 10);
    let mut bare2 = bare.clone();
    bare2[12].event.draft.actor = "operator:root".into();
    assert_eq!(fails_at(run(&bare2, &notes, &v)), 10);
}

#[test]
fn deleted_swapped_inserted_rows_are_named() {
    let (rows, notes, v, _) = setup();
    // Deleted row k.
    for k in [0usize, 50, 99] {
        let mut r = rows.clone();
        r.remove(k);
        let want = if k == 99 { None } else { Some(k as u64) };
        match want {
            Some(w) => assert_eq!(fails_at(run(&r, &notes, &v)), w),
            // Deleting the last row (after the last checkpoint) just shortens the log.
            None => assert_eq!(run(&r, &notes, &v).unwrap().unchecked_events, 9),
        }
    }
    // Swapped rows.
    let mut r = rows.clone();
    r.swap(40, 41);
    assert_eq!(fails_at(run(&r, &notes, &v)), 40);
    let mut r = rows.clone();
    r.swap(20, 70);
    assert_eq!(fails_at(run(&r, &notes, &v)), 20);
    // Inserted row reusing an index (forged leaf, no blob), before or after the original.
    let fake = {
        let mut e = make_event(50);
        e.draft.actor = "operator:mallory".into();
        Row { leaf: Some(e.leaf_hash()), hashes: None, event: e }
    };
    let mut r = rows.clone();
    r.insert(50, fake.clone());
    assert_eq!(fails_at(run(&r, &notes, &v)), 50);
    let mut r = rows.clone();
    r.insert(51, fake.clone());
    assert_eq!(fails_at(run(&r, &notes, &v)), 50);
    // Inserted with the following rows renumbered (their stored columns kept).
    let mut r = rows.clone();
    let mut fake2 = fake.clone();
    fake2.hashes = rows[50].hashes.clone();
    for row in r.iter_mut().skip(50) {
        row.event.index += 1;
    }
    r.insert(50, fake2);
    assert_eq!(fails_at(run(&r, &notes, &v)), 50);
}

#[test]
fn truncation_and_unchecked_tail() {
    let (rows, notes, v, s) = setup();
    // Truncated below the last checkpoint (90).
    let f = run(&rows[..85], &notes, &v).unwrap_err();
    assert_eq!(f.index, 85);
    assert!(f.reason.contains("truncated"), "{}", f.reason);
    // Truncated to exactly the last checkpoint: fine, nothing unchecked.
    assert_eq!(run(&rows[..90], &notes, &v).unwrap().unchecked_events, 0);
    // Appended after the last checkpoint.
    let mut r = rows.clone();
    let mut cache = HashCache::default();
    for row in &r {
        cache.insert_record(row.event.index, &decode_hashes(row.hashes.as_ref().unwrap()).unwrap());
    }
    cache.retain_frontier(100);
    let e = make_event(100);
    let leaf = e.leaf_hash();
    let h = cache.append(100, leaf).unwrap();
    r.push(Row { event: e, leaf: Some(leaf), hashes: Some(encode_hashes(&h)) });
    let rep = run(&r, &notes, &v).unwrap();
    assert_eq!((rep.tree_size, rep.unchecked_events), (101, 11));
    // No checkpoints at all: everything unchecked.
    assert_eq!(run(&rows, &[], &v).unwrap().unchecked_events, 100);
    // A validly signed checkpoint with a wrong root fails at the previous checkpoint.
    let mut bad_notes = notes.clone();
    bad_notes[3] = s.sign_checkpoint(64, Hash([5; 32]), t0());
    assert_eq!(fails_at(run(&rows, &bad_notes, &v)), 37);
    // A badly signed checkpoint fails at the previous checkpoint's size.
    let mut forged = notes.clone();
    forged[2] = LogSigner::generate("wardkey/verify").sign_checkpoint(37, Hash([5; 32]), t0());
    assert_eq!(fails_at(run(&rows, &forged, &v)), 10);
    // Out of order.
    let mut swapped = notes.clone();
    swapped.swap(1, 2);
    assert_eq!(fails_at(run(&rows, &swapped, &v)), 10);
    // Checkpoints registered after pushing: reported, not silently passed.
    let cps = open_checkpoints(&v, &notes).unwrap();
    let mut late = TreeVerifier::new();
    for row in &rows {
        late.push(&row.event, row.leaf, row.hashes.as_deref()).unwrap();
    }
    for cp in &cps {
        late.want_checkpoint(cp);
    }
    assert_eq!(verify_checkpoints(&late, &cps).unwrap_err().index, 0);
}

#[test]
fn consistency_is_checked_between_checkpoints() {
    let (rows, notes, v, _) = setup();
    let cps = open_checkpoints(&v, &notes).unwrap();
    let mut t = TreeVerifier::for_checkpoints(&cps);
    for r in &rows {
        t.push(&r.event, r.leaf, r.hashes.as_deref()).unwrap();
    }
    for w in CPS.windows(2) {
        assert_eq!(t.consistency_checked(w[0], w[1]), Some(Ok(())), "{w:?}");
    }
}
