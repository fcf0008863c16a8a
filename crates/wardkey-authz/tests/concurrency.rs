#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Readers hammer the index while a writer changes it: once a revocation has been applied and
//! its revision set, no evaluation that starts afterwards, on any thread, allows.

mod common;

use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use wardkey_authz::*;
use wardkey_domain::*;

#[test]
fn a_revocation_is_seen_by_every_evaluation_that_starts_after_it() {
    let w = Ward::new();
    let g = grant(uid(&w.nurse), &w.reader, None);
    let mut records = w.records.clone();
    records.grants.push(g.clone());
    let index = Index::build(records);

    const READERS: usize = 3;
    let revoked = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let allowed_before = Arc::new(AtomicU64::new(0));
    let denied_after = Arc::new(AtomicU64::new(0));
    let nurse_id = w.nurse.id.to_string();

    let readers: Vec<_> = (0..READERS)
        .map(|n| {
            let (index, revoked, stop) = (index.clone(), revoked.clone(), stop.clone());
            let (allowed_before, denied_after) = (allowed_before.clone(), denied_after.clone());
            let who = nurse_id.clone();
            thread::spawn(move || {
                let req = ask(&who, "read", ResourceRef::of_type("patient_record"), RequestContext::at(t0()));
                while !stop.load(Ordering::Acquire) {
                    // Read the flag first: if the writer had returned by then, this
                    // evaluation starts after the revocation and must deny.
                    let after = revoked.load(Ordering::Acquire);
                    let d = index.evaluate(&req);
                    let fast = index.check(&req);
                    if after {
                        assert!(!d.allow && !fast, "reader {n} allowed after the revocation: {d:?}");
                        assert!(d.revision >= 2, "reader {n} saw revision {}", d.revision);
                        denied_after.fetch_add(1, Ordering::Relaxed);
                    } else if d.allow {
                        allowed_before.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();

    // Unrelated writes keep the writer path busy while readers run.
    let churn = {
        let (index, stop) = (index.clone(), stop.clone());
        let ty = w.unit.clone();
        let parent = w.hospital.clone();
        thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Acquire) {
                index.upsert_resource(resource(&ty, &format!("bed-{}", n % 50), Some(&parent)));
                n += 1;
            }
        })
    };

    let start = Instant::now();
    while allowed_before.load(Ordering::Relaxed) < 1000 && start.elapsed() < Duration::from_secs(20) {
        thread::yield_now();
    }
    index.apply([Change::RemoveGrant(g.id), Change::SetRevision(2)]);
    revoked.store(true, Ordering::Release);

    let start = Instant::now();
    while denied_after.load(Ordering::Relaxed) < 10_000 && start.elapsed() < Duration::from_secs(20) {
        thread::yield_now();
    }
    stop.store(true, Ordering::Release);
    for r in readers {
        r.join().unwrap();
    }
    churn.join().unwrap();
    assert!(allowed_before.load(Ordering::Relaxed) > 0);
    assert!(denied_after.load(Ordering::Relaxed) > 0);
    assert_eq!(index.revision(), 2);
}

#[test]
fn the_separate_calls_also_take_effect_when_they_return() {
    let w = Ward::new();
    let g = grant(gid(&w.nurses), &w.reader, None);
    let mut records = w.records.clone();
    records.grants.push(g.clone());
    let index = Index::build(records);
    let nurse_id = w.nurse.id.to_string();
    let req = ask(&nurse_id, "read", ResourceRef::of_type("patient_record"), RequestContext::at(t0()));
    for round in 0..200u64 {
        let index2 = index.clone();
        let who = nurse_id.clone();
        if round % 2 == 0 {
            index.remove_member(w.nurses.id, Member::User(w.nurse.id));
            index.set_revision(round + 10);
            let seen = thread::spawn(move || {
                let req = ask(&who, "read", ResourceRef::of_type("patient_record"), RequestContext::at(t0()));
                index2.evaluate(&req)
            })
            .join()
            .unwrap();
            assert!(!seen.allow && seen.revision == round + 10);
        } else {
            index.add_member(w.nurses.id, Member::User(w.nurse.id));
            index.set_revision(round + 10);
            let seen = thread::spawn(move || {
                let req = ask(&who, "read", ResourceRef::of_type("patient_record"), RequestContext::at(t0()));
                index2.check(&req)
            })
            .join()
            .unwrap();
            assert!(seen);
        }
    }
    assert!(index.check(&req));
}
