//! What journaling nonces costs a verify: the same Upbit requests (each with its own nonce,
//! signed in advance) verified with the nonces in memory only — as before the journal — and
//! with the journal (`DATA_DIR/nonces`, one `write(2)` per nonce, `fdatasync` once a second on
//! another thread, as `serve` runs it), in alternating blocks, single-threaded, so that the
//! comparison is of the verify itself and not of a shared machine's HTTP stack.
//!
//! `cargo bench -p keysentinel-server --bench nonce_journal` (`BENCH_DIR` for where the journal
//! goes; the current directory by default). Under `cargo test --benches` it runs a few hundred
//! requests, so it keeps compiling and working. No timing is asserted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use keysentinel_domain::{KeyAlgorithm, Scope, SigningScheme};
use keysentinel_server::nonce_journal::NonceJournal;
use keysentinel_verify::replay::{NonceCache, Nonces};
use keysentinel_verify::routes::RouteTable;
use keysentinel_verify::snapshot::{KeyEntry, KeySnapshot};
use keysentinel_verify::{Code, Request, Verifier, VerifyConfig};
use std::sync::Arc;
use std::time::Instant;

const KEY: &str = "ksk_bench00000000000000000000000000000";
const SECRET: &str = "nonce-journal-bench-secret-0123456789";
const NOW: i64 = 1_764_300_000_000;

fn verifier(nonces: Arc<dyn Nonces>) -> Verifier {
    let k = keysentinel_testkit::api_key(KEY, SigningScheme::Upbit, KeyAlgorithm::Hmac, &[Scope::Read], &[]);
    let snap = Arc::new(KeySnapshot::default());
    snap.upsert(KeyEntry::new(&k, Some(SECRET.as_bytes())).unwrap());
    Verifier::with_nonces(snap, RouteTable::default_routes().unwrap(), VerifyConfig::default(), nonces)
}

fn tokens(prefix: &str, n: usize) -> Vec<String> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    (0..n)
        .map(|i| {
            let claims = serde_json::json!({ "access_key": KEY, "nonce": format!("{prefix}-{i}") });
            let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
            let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
            m.update(input.as_bytes());
            format!("Bearer {input}.{}", URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()))
        })
        .collect()
}

/// Nanoseconds per verify over `tokens`, each VALID.
fn run(v: &Verifier, tokens: &[String], now_ms: i64) -> f64 {
    let started = Instant::now();
    for t in tokens {
        let headers = [("Authorization", t.as_str())];
        let req = Request {
            method: "GET",
            path: "/v1/accounts",
            query: "",
            body: Some(b""),
            headers: &headers,
            client_ip: "127.0.0.1".parse().unwrap(),
            now_ms,
        };
        assert_eq!(v.verify(&req).code, Code::Valid);
    }
    started.elapsed().as_nanos() as f64 / tokens.len() as f64
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (block, rounds) = if bench { (50_000, 8) } else { (200, 2) };
    let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    let (journal, journaled) = NonceJournal::open(dir.path(), 600_000, NOW).unwrap();
    let on_disk = verifier(Arc::new(journaled));
    let in_memory = verifier(Arc::new(NonceCache::new(600_000)));
    // As serve does: the journal synced once a second, off the verify's thread.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let syncer = {
        let (journal, stop) = (journal.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_secs(1));
                journal.sync().unwrap();
            }
        })
    };
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let (a, b) = (tokens(&format!("mem-{round}"), block), tokens(&format!("disk-{round}"), block));
        before.push(run(&in_memory, &a, NOW + round));
        after.push(run(&on_disk, &b, NOW + round));
        println!(
            "round {round}: in memory {:.0} ns/verify, journaled {:.0} ns/verify: journaled/in memory {:.3}",
            before[round as usize],
            after[round as usize],
            after[round as usize] / before[round as usize]
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    syncer.join().unwrap();
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (b, a) = (median(&mut before), median(&mut after));
    println!("median: in memory {b:.0} ns, journaled {a:.0} ns per verify: +{:.0} ns, x{:.3}", a - b, a / b);
}
