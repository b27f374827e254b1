//! Arbitrary requests never panic the verifier, and are never allowed unless what the scheme
//! signs (query, body, credential headers) is exactly that of a request ccxt signed.
#![no_main]

#[path = "../common.rs"]
mod common;

use keysentinel_verify::{Request, Verifier};
use libfuzzer_sys::fuzz_target;
use std::collections::HashSet;
use std::sync::OnceLock;

struct World {
    verifier: Verifier,
    /// (query, body, credential header values) of every genuine request.
    genuine: HashSet<(String, Option<String>, Vec<String>)>,
    now_ms: i64,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let golden = common::golden();
        let genuine = golden
            .iter()
            .map(|v| {
                let mut creds: Vec<String> = v["headers"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(k, _)| !k.eq_ignore_ascii_case("accept") && !k.eq_ignore_ascii_case("content-type") && !k.eq_ignore_ascii_case("open-api-partner"))
                    .map(|(_, v)| v.as_str().unwrap_or("").to_owned())
                    .collect();
                creds.sort();
                (v["query"].as_str().unwrap_or("").to_owned(), v["body"].as_str().map(str::to_owned), creds)
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
        let mut creds: Vec<String> =
            headers.iter().filter(|(k, _)| *k != "accept").map(|(_, v)| v.to_string()).collect();
        creds.sort();
        let body = body.map(|b| String::from_utf8_lossy(b).into_owned());
        assert!(w.genuine.contains(&(query.to_owned(), body, creds)), "allowed a request ccxt did not sign");
    }
});
