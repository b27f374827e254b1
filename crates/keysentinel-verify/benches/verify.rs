//! The verify hot path against the bare cryptography each scheme needs, in the same run:
//! - Binance HMAC: one HMAC-SHA256 of the signed string, keyed from scratch;
//! - Upbit JWT: SHA-512 of the query plus one HMAC-SHA256 of the token, keyed from scratch;
//! - Binance Ed25519: one `ed25519-dalek` strict verification.
//!
//! Requests are the ccxt golden vectors (tests/ccxt/golden.jsonl); Upbit tokens are re-signed
//! here with distinct nonces so that no iteration is a replay.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use hmac::{Hmac, Mac};
use keysentinel_domain::*;
use keysentinel_verify::routes::RouteTable;
use keysentinel_verify::snapshot::{KeyEntry, KeySnapshot};
use keysentinel_verify::{Code, Request, Verifier, VerifyConfig};
use serde_json::Value;
use sha2::{Digest, Sha256, Sha512};
use std::cell::Cell;
use std::sync::Arc;

const SECRET: &str = "kss_GoldenVectorSecretNotForProduction0123456789ab";

fn vector(name: &str) -> Value {
    include_str!("../tests/ccxt/golden.jsonl")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["name"] == name)
        .unwrap()
}

fn key(v: &Value) -> ApiKey {
    let algorithm = match v["public_key"].as_str() {
        Some(pk) => KeyAlgorithm::Ed25519 { public_key: pk.into() },
        None => KeyAlgorithm::Hmac,
    };
    let scheme = v["scheme"].as_str().unwrap().parse().unwrap();
    keysentinel_testkit::api_key(
        v["access_key"].as_str().unwrap(),
        scheme,
        algorithm,
        &[Scope::Read, Scope::Trade],
        &["203.0.113.0/24"],
    )
}

fn verifier(keys: &[&Value], nonce_window_ms: i64) -> Verifier {
    let snap = Arc::new(KeySnapshot::default());
    // A realistic snapshot: the keys under test among 100,000 others.
    for i in 0..100_000 {
        let mut k = key(keys[0]);
        k.access_key = AccessKey::parse(&format!("filler-access-key-{i:08}")).unwrap();
        snap.upsert(KeyEntry::new(&k, Some(SECRET.as_bytes())).unwrap());
    }
    for v in keys {
        let secret = v["secret"].as_str().map(str::as_bytes);
        snap.upsert(KeyEntry::new(&key(v), secret).unwrap());
    }
    Verifier::new(
        snap,
        RouteTable::default_routes().unwrap(),
        VerifyConfig { nonce_window_ms, ..VerifyConfig::default() },
    )
}

fn bench(c: &mut Criterion) {
    let ip = "203.0.113.7".parse().unwrap();

    // Binance HMAC, GET /api/v3/account.
    let v = vector("binance/hmac/GET account");
    let query = v["query"].as_str().unwrap().to_owned();
    let signed = query.rsplit_once("&signature=").unwrap().0.to_owned();
    let ks = verifier(&[&v], 600_000);
    let headers = [("X-MBX-APIKEY", v["access_key"].as_str().unwrap())];
    let req = Request {
        method: "GET",
        path: "/api/v3/account",
        query: &query,
        body: None,
        headers: &headers,
        client_ip: ip,
        now_ms: v["now_ms"].as_i64().unwrap(),
    };
    assert_eq!(ks.verify(&req).code, Code::Valid);
    let mut g = c.benchmark_group("binance-hmac");
    g.bench_function("baseline: HMAC-SHA256 of the signed string", |b| {
        b.iter(|| {
            let mut m = <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
            m.update(black_box(signed.as_bytes()));
            black_box(m.finalize())
        })
    });
    g.bench_function("keysentinel verify", |b| b.iter(|| black_box(ks.verify(black_box(&req)).code)));
    g.finish();

    // Binance Ed25519, GET /api/v3/account.
    let v = vector("binance/ed25519/GET account");
    let query = v["query"].as_str().unwrap().to_owned();
    let (signed, sig) = query.rsplit_once("&signature=").unwrap();
    let sig_raw = STANDARD.decode(sig.replace("%2B", "+").replace("%2F", "/").replace("%3D", "=")).unwrap();
    let sig = ed25519_dalek::Signature::from_slice(&sig_raw).unwrap();
    let pk: [u8; 32] = STANDARD.decode(v["public_key"].as_str().unwrap()).unwrap().try_into().unwrap();
    let public = ed25519_dalek::VerifyingKey::from_bytes(&pk).unwrap();
    let ks = verifier(&[&v], 600_000);
    let headers = [("X-MBX-APIKEY", v["access_key"].as_str().unwrap())];
    let req = Request {
        method: "GET",
        path: "/api/v3/account",
        query: &query,
        body: None,
        headers: &headers,
        client_ip: ip,
        now_ms: v["now_ms"].as_i64().unwrap(),
    };
    assert_eq!(ks.verify(&req).code, Code::Valid);
    let mut g = c.benchmark_group("binance-ed25519");
    g.bench_function("baseline: ed25519-dalek verify_strict", |b| {
        b.iter(|| black_box(public.verify_strict(black_box(signed.as_bytes()), &sig).is_ok()))
    });
    g.bench_function("keysentinel verify", |b| b.iter(|| black_box(ks.verify(black_box(&req)).code)));
    g.finish();

    // Upbit JWT, GET /v1/orders/chance?market=KRW-BTC, with a fresh nonce per request.
    let v = vector("upbit/hmac/GET orders/chance");
    let access_key = v["access_key"].as_str().unwrap().to_owned();
    let query = v["query"].as_str().unwrap().to_owned();
    let query_hash = hex::encode(Sha512::digest(query.as_bytes()));
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let tokens: Vec<String> = (0..65_536u32)
        .map(|i| {
            let claims = format!(
                r#"{{"access_key":"{access_key}","nonce":"00000000-0000-4000-8000-{i:012}","query_hash":"{query_hash}","query_hash_alg":"SHA512"}}"#
            );
            let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims));
            let mut m = <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
            m.update(input.as_bytes());
            format!("Bearer {input}.{}", URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()))
        })
        .collect();
    let ks = verifier(&[&v], 1_000);
    let now = Cell::new(v["now_ms"].as_i64().unwrap());
    let next = Cell::new(0usize);
    let verify_one = |ks: &Verifier| {
        let i = next.get();
        next.set((i + 1) % tokens.len());
        now.set(now.get() + 1);
        let headers = [("Authorization", tokens[i].as_str())];
        let req = Request {
            method: "GET",
            path: "/v1/orders/chance",
            query: &query,
            body: None,
            headers: &headers,
            client_ip: ip,
            now_ms: now.get(),
        };
        ks.verify(&req).code
    };
    assert_eq!(verify_one(&ks), Code::Valid);
    let input0 = tokens[0].strip_prefix("Bearer ").unwrap().rsplit_once('.').unwrap().0.to_owned();
    let mut g = c.benchmark_group("upbit-jwt");
    g.bench_function("baseline: SHA-512 of the query + HMAC-SHA256 of the token", |b| {
        b.iter(|| {
            let h = Sha512::digest(black_box(query.as_bytes()));
            let mut m = <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
            m.update(black_box(input0.as_bytes()));
            black_box((h, m.finalize()))
        })
    });
    g.bench_function("keysentinel verify", |b| b.iter(|| black_box(verify_one(&ks))));
    g.finish();
    assert_eq!(verify_one(&ks), Code::Valid, "no iteration was a replay");
}

criterion_group!(benches, bench);
criterion_main!(benches);
