//! Property tests (stable, in CI) of what the fuzz target checks: arbitrary requests, and
//! requests with several random changes to what ccxt signed, never panic and are never allowed.

// Test helpers may unwrap and panic: a failure there is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../fuzz/common.rs"]
mod common;

use keysentinel_verify::{Code, Request};
use proptest::prelude::*;
use serde_json::Value;

fn request<'a>(v: &'a Value, query: &'a str, body: Option<&'a [u8]>, headers: &'a [(&'a str, &'a str)]) -> Request<'a> {
    Request {
        method: v["method"].as_str().unwrap(),
        path: v["path"].as_str().unwrap(),
        query,
        body,
        headers,
        client_ip: [203, 0, 113, 7].into(),
        now_ms: v["now_ms"].as_i64().unwrap(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn mutated_genuine_requests_are_never_allowed(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec((0usize..3, any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let golden = common::golden();
        let v = &golden[pick.index(golden.len())];
        let mut query = v["query"].as_str().unwrap().as_bytes().to_vec();
        let mut body = v["body"].as_str().map(|b| b.as_bytes().to_vec());
        let cred_name = v["headers"].as_object().unwrap().keys()
            .find(|k| ["authorization", "x-mbx-apikey", "x-coinone-payload"].contains(&k.to_ascii_lowercase().as_str()))
            .unwrap().clone();
        let mut cred = v["headers"][&cred_name].as_str().unwrap().as_bytes().to_vec();
        let original = (query.clone(), body.clone(), cred.clone());
        for (target, at, byte) in edits {
            let buf = match target { 0 => &mut query, 1 => match body.as_mut() { Some(b) => b, None => &mut query }, _ => &mut cred };
            if !buf.is_empty() {
                let i = at.index(buf.len());
                buf[i] = byte;
            }
        }
        prop_assume!((query.clone(), body.clone(), cred.clone()) != original);
        let verifier = common::verifier();
        let (q, c) = (String::from_utf8_lossy(&query).into_owned(), String::from_utf8_lossy(&cred).into_owned());
        let mut headers: Vec<(&str, &str)> = v["headers"].as_object().unwrap().iter()
            .filter(|(k, _)| **k != cred_name).map(|(k, v)| (k.as_str(), v.as_str().unwrap())).collect();
        headers.push((cred_name.as_str(), c.as_str()));
        // Coinone's signature header travels beside the payload: keep it.
        let d = verifier.verify(&request(v, &q, body.as_deref(), &headers));
        if d.code == Code::Valid {
            // Only an equivalent encoding of the same signed material may pass (hex case, escapes).
            let original_headers: Vec<(&str, &str)> = v["headers"].as_object().unwrap().iter().map(|(k, v)| (k.as_str(), v.as_str().unwrap())).collect();
            let b = body.as_deref().map(|b| String::from_utf8_lossy(b).into_owned());
            prop_assert_eq!(
                common::canonical(&q, b.as_deref(), &headers),
                common::canonical(v["query"].as_str().unwrap(), v["body"].as_str(), &original_headers),
                "{}: mutated request allowed", v["name"]
            );
        }
    }

    #[test]
    fn arbitrary_requests_never_panic_and_are_never_allowed(
        method in "[A-Z]{0,7}", path in ".{0,40}", query in ".{0,200}",
        body in prop::option::of(prop::collection::vec(any::<u8>(), 0..300)),
        headers in prop::collection::vec((0usize..6, ".{0,300}"), 0..4),
    ) {
        let verifier = common::verifier();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(i, v)| (common::HEADERS[*i], v.as_str())).collect();
        let req = Request { method: &method, path: &path, query: &query, body: body.as_deref(), headers: &headers,
            client_ip: [203, 0, 113, 7].into(), now_ms: 1_764_300_000_000 };
        prop_assert!(!verifier.verify(&req).allowed());
    }
}
