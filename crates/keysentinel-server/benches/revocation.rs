//! Revocation to denial on one node. Keys are revoked (and suspended) through the registry and
//! the durable SQLite commit; two observers stamp the change as it is published: one registered
//! before the gateway's snapshot observer (the commit has returned and the key has been read back
//! and its secret opened, which this span therefore leaves out) and one
//! after it (the snapshot holds the change: from then on every verify is denied, which is
//! checked). Reported as p50/p99 of commit → applied, and of the whole admin call → applied
//! (which includes the fsync and the signed audit checkpoint).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use keysentinel_domain::*;
use keysentinel_registry::NewAccount;
use keysentinel_verify::{Code, Request};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Stamps when a committed key change (away from active) reaches it.
struct Stamp(Arc<AtomicU64>, Instant);

impl keysentinel_registry::KeyObserver for Stamp {
    fn key_changed(&self, key: &ApiKey, _secret: Option<&[u8]>) {
        if key.status != KeyStatus::Active {
            let _ = self.0.compare_exchange(0, self.1.elapsed().as_nanos() as u64, Ordering::SeqCst, Ordering::SeqCst);
        }
    }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let rounds = if bench { 300 } else { 5 };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    let (reg, admin) = common::registry(dir.path());
    // Registered before the gateway's snapshot observer, so it runs first: it stamps the moment
    // the committed change starts being published, i.e. just after the commit.
    let epoch = Instant::now();
    let committed_at = Arc::new(AtomicU64::new(0));
    reg.observe(Arc::new(Stamp(committed_at.clone(), epoch))).unwrap();
    let state = common::state(&rt, &reg);
    let verifier = state.verifier.clone();
    let applied_at = Arc::new(AtomicU64::new(0));
    reg.observe(Arc::new(Stamp(applied_at.clone(), epoch))).unwrap();
    rt.block_on(reg.create_account(
        admin.clone(),
        NewAccount {
            account_id: AccountId::parse("acct").unwrap(),
            segment: Segment::MarketMaker,
            verification: Verification::Verified,
            declared_purpose: String::new(),
            declared_countries: vec![],
        },
    ))
    .unwrap();

    let (mut revoke_us, mut suspend_us, mut commit_us) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (ak, query, now_ms) = common::signed_key(&rt, &reg, &admin, &AccountId::parse("acct").unwrap());

        committed_at.store(0, Ordering::SeqCst);
        applied_at.store(0, Ordering::SeqCst);
        let key = AccessKey::parse(&ak).unwrap();
        let t0 = epoch.elapsed().as_nanos() as u64;
        if round % 2 == 0 {
            rt.block_on(reg.revoke_key(admin.clone(), key.clone(), "bench".into())).unwrap();
        } else {
            rt.block_on(reg.suspend_key(admin.clone(), key.clone(), "bench".into())).unwrap();
        }
        // By the time the call returns the snapshot holds the change: this verify is denied.
        let headers = [("X-MBX-APIKEY", ak.as_str())];
        let req = Request {
            method: "GET",
            path: "/api/v3/account",
            query: &query,
            body: None,
            headers: &headers,
            client_ip: [203, 0, 113, 7].into(),
            now_ms: now_ms + 1,
        };
        assert_ne!(verifier.verify(&req).code, Code::Valid);
        let (committed, applied) = (committed_at.load(Ordering::SeqCst), applied_at.load(Ordering::SeqCst));
        assert!(committed > 0 && applied >= committed);
        commit_us.push((applied - committed) as f64 / 1000.0);
        let us = (applied - t0) as f64 / 1000.0;
        if round % 2 == 0 {
            revoke_us.push(us)
        } else {
            suspend_us.push(us);
            // Suspended keys still count against the account's limit: retire it.
            rt.block_on(reg.revoke_key(admin.clone(), key, "bench done".into())).unwrap();
        }
    }
    let (r50, r99) = (percentile(&mut revoke_us, 0.5), percentile(&mut revoke_us, 0.99));
    let (s50, s99) = (percentile(&mut suspend_us, 0.5), percentile(&mut suspend_us, 0.99));
    let (c50, c99) = (percentile(&mut commit_us, 0.5), percentile(&mut commit_us, 0.99));
    println!("commit       -> denied at verify: p50 {c50:8.1} µs  p99 {c99:8.1} µs  ({} changes)", commit_us.len());
    println!(
        "revoke call  -> denied at verify: p50 {r50:8.1} µs  p99 {r99:8.1} µs  ({} revocations, incl. fsync)",
        revoke_us.len()
    );
    println!(
        "suspend call -> denied at verify: p50 {s50:8.1} µs  p99 {s99:8.1} µs  ({} suspensions, incl. fsync)",
        suspend_us.len()
    );
}
