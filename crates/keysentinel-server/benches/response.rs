//! Detection to denial on one node: from handing detection the event that crosses a stopping
//! threshold to the first verify that refuses the key. The path is the real one — the detection
//! engine's thread, the responder, the registry's durable SQLite commit (fsync, signed audit
//! checkpoint) of the case and the suspension, the snapshot update — and it is timed by polling
//! verify in process. The baseline, in the same run, is an operator's suspension through the
//! registry, timed the same way.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

mod common;

use keysentinel_detect::event::Record;
use keysentinel_domain::*;
use keysentinel_registry::NewAccount;
use keysentinel_server::detection::Detection;
use keysentinel_verify::{Code, Request, Verifier};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Polls verify until the key is refused; the time from `t0`, in µs.
fn until_denied(verifier: &Verifier, ak: &str, query: &str, now_ms: i64, t0: Instant) -> f64 {
    let headers = [("X-MBX-APIKEY", ak)];
    let req = Request {
        method: "GET",
        path: "/api/v3/account",
        query,
        body: None,
        headers: &headers,
        client_ip: [203, 0, 113, 7].into(),
        now_ms,
    };
    loop {
        if verifier.verify(&req).code != Code::Valid {
            return t0.elapsed().as_secs_f64() * 1e6;
        }
        if t0.elapsed() > Duration::from_secs(10) {
            panic!("the key was never denied");
        }
        // Yield between polls: on two cores a spinning poller would take the CPU from the very
        // threads (detection, responder, store writer) whose latency it measures.
        std::thread::yield_now();
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let rounds = if bench { 200 } else { 4 };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let _guard = rt.enter();
    let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    let (reg, admin) = common::registry(dir.path());
    let (sink, _responder) =
        keysentinel_server::response::spawn_responder(reg.clone(), Arc::new(ResponsePolicy::default()));
    let detection =
        Detection::start(Default::default(), Box::new(keysentinel_detect::geo::NoGeo), 1 << 16, Some(sink)).unwrap();
    let state = common::state(&rt, &reg).with_detection(detection.clone()).unwrap();
    let verifier = state.verifier.clone();

    let (mut detected_us, mut operator_us) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // One retail account per round (retail keys are stopped automatically; the key limit
        // per account stays out of the way).
        let account = AccountId::parse(&format!("acct-{round}")).unwrap();
        let new_account = NewAccount {
            account_id: account.clone(),
            segment: Segment::Retail,
            verification: Verification::Verified,
            declared_purpose: String::new(),
            declared_countries: vec![],
        };
        let created = rt.block_on(reg.create_account(admin.clone(), new_account)).unwrap();
        state.account_changed(&created);
        let (ak, query, now_ms) = common::signed_key(&rt, &reg, &admin, &account);

        if round % 2 == 0 {
            // A complaint first (monitoring only); then vendor intelligence crosses `reverify`,
            // whose retail response is an automatic suspension.
            let complaint = Record::Complaint {
                ts: now_ms,
                account_id: Cow::Owned(account.to_string()),
                text: "my key was sold to someone else".into(),
            };
            detection.batch(vec![(None, complaint)]).unwrap();
            while detection.depth() > 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
            let intel = Record::VendorIntel {
                ts: now_ms + 1,
                key_id: Some(Cow::Owned(ak.clone())),
                vendor_id: None,
                text: "key offered for rent".into(),
            };
            let t0 = Instant::now();
            detection.batch(vec![(None, intel)]).unwrap();
            detected_us.push(until_denied(&verifier, &ak, &query, now_ms + 1, t0));
        } else {
            let key = AccessKey::parse(&ak).unwrap();
            let t0 = Instant::now();
            let (r, a) = (reg.clone(), admin.clone());
            let handle = rt.spawn(async move { r.suspend_key(a, key, "bench".into()).await });
            operator_us.push(until_denied(&verifier, &ak, &query, now_ms + 1, t0));
            rt.block_on(handle).unwrap().unwrap();
        }
    }
    let (d50, d99) = (percentile(&mut detected_us, 0.5), percentile(&mut detected_us, 0.99));
    let (o50, o99) = (percentile(&mut operator_us, 0.5), percentile(&mut operator_us, 0.99));
    println!(
        "crossing event -> denied at verify: p50 {d50:8.1} µs  p99 {d99:8.1} µs  ({} detections)",
        detected_us.len()
    );
    println!(
        "operator suspend -> denied (baseline): p50 {o50:8.1} µs  p99 {o99:8.1} µs  ({} suspensions)",
        operator_us.len()
    );
    println!("ratio p50 {:.2}x  p99 {:.2}x", d50 / o50, d99 / o99);
}
