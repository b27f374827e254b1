//! Korbit v2 is not in ccxt, so these requests are signed here, independently of the verifier,
//! as Korbit's API documentation describes: `X-KAPI-KEY`, URL-encoded parameters with a
//! millisecond `timestamp` (and optional `recvWindow`), `signature` appended last — HMAC-SHA256
//! in hex, or Ed25519 in base64 (URL-encoded when appended).

// Test helpers may unwrap and panic: a failure there is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use hmac::{Hmac, Mac};
use keysentinel_domain::*;
use keysentinel_verify::routes::RouteTable;
use keysentinel_verify::snapshot::{KeyEntry, KeySnapshot};
use keysentinel_verify::{Code, Request, Verifier, VerifyConfig};
use sha2::Sha256;
use std::sync::Arc;

const NOW: i64 = 1_764_300_000_000;
const SECRET: &str = "korbit-secret-0123456789abcdefghij";

fn key(algorithm: KeyAlgorithm) -> ApiKey {
    keysentinel_testkit::api_key(
        "korbit-access-key-000001",
        SigningScheme::Korbit,
        algorithm,
        &[Scope::Read, Scope::Trade],
        &[],
    )
}

fn verifier(k: &ApiKey, secret: Option<&str>) -> Verifier {
    let snap = Arc::new(KeySnapshot::default());
    snap.upsert(KeyEntry::new(k, secret.map(str::as_bytes)).unwrap());
    Verifier::new(snap, RouteTable::default_routes().unwrap(), VerifyConfig::default())
}

fn hmac_hex(msg: &str) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
    m.update(msg.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

fn run(v: &Verifier, method: &str, path: &str, query: &str, body: Option<&str>, now: i64) -> Code {
    let headers = [("X-KAPI-KEY", "korbit-access-key-000001")];
    v.verify(&Request {
        method,
        path,
        query,
        body: body.map(str::as_bytes),
        headers: &headers,
        client_ip: "203.0.113.9".parse().unwrap(),
        now_ms: now,
    })
    .code
}

#[test]
fn hmac_get_and_post_verify_and_tampers_fail() {
    let v = verifier(&key(KeyAlgorithm::Hmac), Some(SECRET));
    let q = format!("symbol=btc_krw&timestamp={NOW}");
    let query = format!("{q}&signature={}", hmac_hex(&q));
    assert_eq!(run(&v, "GET", "/v2/balance", &query, None, NOW + 10), Code::Valid);
    // Hex signatures are case-insensitive (as Binance documents): the same MAC either way.
    let upper = format!("{q}&signature={}", hmac_hex(&q).to_ascii_uppercase());
    assert_eq!(run(&v, "GET", "/v2/balance", &upper, None, NOW + 20), Code::Valid);
    assert_eq!(run(&v, "GET", "/v2/balance", &query, None, NOW + 6_000), Code::StaleTimestamp, "default window 5s");

    let b =
        format!("symbol=btc_krw&side=buy&price=100000000&qty=0.01&orderType=limit&timestamp={NOW}&recvWindow=10000");
    let body = format!("{b}&signature={}", hmac_hex(&b));
    assert_eq!(run(&v, "POST", "/v2/orders", "", Some(&body), NOW + 6_000), Code::Valid, "recvWindow honoured");
    assert_eq!(run(&v, "POST", "/v2/orders", "", None, NOW), Code::BodyRequired);
    for i in 0..body.len() {
        let mut t = body.clone().into_bytes();
        t[i] = if t[i] == b'Z' { b'Y' } else { b'Z' };
        let t = String::from_utf8(t).unwrap();
        assert_ne!(run(&v, "POST", "/v2/orders", "", Some(&t), NOW), Code::Valid, "byte {i}");
    }
    // A withdrawal needs a scope this key does not hold.
    let w = format!("currency=btc&amount=0.1&address=bc1q&timestamp={NOW}");
    let wbody = format!("{w}&signature={}", hmac_hex(&w));
    assert_eq!(run(&v, "POST", "/v2/coin/withdrawal", "", Some(&wbody), NOW), Code::ScopeDenied);
    // The signature must be the last parameter.
    let moved = format!("signature={}&{q}", hmac_hex(&q));
    assert_ne!(run(&v, "GET", "/v2/balance", &moved, None, NOW), Code::Valid);
}

#[test]
fn ed25519_verifies_with_only_the_public_key() {
    let signing = SigningKey::from_bytes(&[7u8; 32]);
    let public = base64::engine::general_purpose::STANDARD.encode(signing.verifying_key().as_bytes());
    let v = verifier(&key(KeyAlgorithm::Ed25519 { public_key: public }), None);
    let q = format!("symbol=eth_krw&timestamp={NOW}");
    let sig = base64::engine::general_purpose::STANDARD.encode(signing.sign(q.as_bytes()).to_bytes());
    let encoded: String = sig
        .chars()
        .map(|c| match c {
            '+' => "%2B".into(),
            '/' => "%2F".into(),
            '=' => "%3D".into(),
            c => c.to_string(),
        })
        .collect();
    assert_eq!(run(&v, "GET", "/v2/balance", &format!("{q}&signature={encoded}"), None, NOW), Code::Valid);
    let other = SigningKey::from_bytes(&[8u8; 32]);
    let forged = base64::engine::general_purpose::STANDARD.encode(other.sign(q.as_bytes()).to_bytes());
    assert_eq!(run(&v, "GET", "/v2/balance", &format!("{q}&signature={forged}"), None, NOW), Code::BadSignature);
}
