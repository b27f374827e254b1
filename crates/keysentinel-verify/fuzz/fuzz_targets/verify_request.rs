//! Arbitrary requests never panic the verifier, and are never allowed unless what the scheme
//! signs (query, body, credential headers) is exactly that of a request ccxt signed.
#![no_main]

#[path = "../common.rs"]
mod common;

use keysentinel_verify::{Request, Verifier};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

struct World {
    verifier: Verifier,
    /// (query, body, credential header values) of every genuine request, canonical.
    genuine: Vec<(String, Option<String>, Vec<String>)>,
    now_ms: i64,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let golden = common::golden();
        let genuine = golden
            .iter()
            .map(|v| {
                let creds: Vec<(&str, &str)> =
                    v["headers"].as_object().into_iter().flatten().map(|(k, v)| (k.as_str(), v.as_str().unwrap_or(""))).collect();
                common::canonical(v["query"].as_str().unwrap_or(""), v["body"].as_str(), &creds)
            })
            .collect();
        World { verifier: common::verifier(), genuine, now_ms: golden.first().and_then(|v| v["now_ms"].as_i64()).unwrap_or(0) }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let split = data.windows(2).position(|p| p == b"\n\n").unwrap_or(data.len());
    let Ok(head) = std::str::from_utf8(&data[..split]) else { return };
    let body = data.get(split + 2..).filter(|b| !b.is_empty());
    let mut lines = head.split('\n');
    let (method, path, query) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    let mut headers = Vec::new();
    for line in lines {
        if let Some((idx, value)) = line.strip_prefix('H').and_then(|l| l.split_once(':')) {
            if let Some(name) = idx.parse::<usize>().ok().and_then(|i| common::HEADERS.get(i)) {
                headers.push((*name, value));
            }
        }
    }
    let req = Request { method, path, query, body, headers: &headers, client_ip: [203, 0, 113, 7].into(), now_ms: w.now_ms };
    let decision = w.verifier.verify(&req);
    if decision.allowed() {
        let body = body.map(|b| String::from_utf8_lossy(b).into_owned());
        // Extra headers the scheme does not read (another scheme's credential, say) change nothing:
        // the genuine request's signed material must all be there.
        let (q, b, creds) = common::canonical(query, body.as_deref(), &headers);
        let genuine = w.genuine.iter().any(|(gq, gb, gc)| *gq == q && *gb == b && gc.iter().all(|c| creds.contains(c)));
        assert!(genuine, "allowed a request ccxt did not sign");
    }
});
