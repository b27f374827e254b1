//! What a verifier may not take on trust: a body it was not shown (header-only gateways), and a
//! JWT past its `exp` or before its `nbf`. Requests are signed here as each exchange documents.

// Test helpers may unwrap and panic: a failure there is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use keysentinel_domain::*;
use keysentinel_verify::routes::RouteTable;
use keysentinel_verify::snapshot::{KeyEntry, KeySnapshot};
use keysentinel_verify::{Code, Request, Verifier, VerifyConfig};
use sha2::{Digest, Sha256, Sha512};
use std::sync::Arc;

const NOW: i64 = 1_764_300_000_000;
const SECRET: &str = "freshness-secret-0123456789abcdefgh";

fn verifier(scheme: SigningScheme, access_key: &str, config: VerifyConfig) -> Verifier {
    let k = keysentinel_testkit::api_key(access_key, scheme, KeyAlgorithm::Hmac, &[Scope::Read, Scope::Trade], &[]);
    let snap = Arc::new(KeySnapshot::default());
    snap.upsert(KeyEntry::new(&k, Some(SECRET.as_bytes())).unwrap());
    Verifier::new(snap, RouteTable::default_routes().unwrap(), config)
}

fn run(v: &Verifier, method: &str, path: &str, query: &str, body: Option<&[u8]>, headers: &[(&str, &str)]) -> Code {
    v.verify(&Request { method, path, query, body, headers, client_ip: "203.0.113.9".parse().unwrap(), now_ms: NOW })
        .code
}

fn coinone(access_key: &str, qty: &str) -> (String, String) {
    let body =
        serde_json::json!({ "access_token": access_key, "nonce": format!("nonce-{qty}"), "quote_currency": "KRW",
        "target_currency": "BTC", "side": "BUY", "price": "100000000", "qty": qty })
        .to_string();
    let payload = STANDARD.encode(body);
    let mut m = <Hmac<Sha512> as Mac>::new_from_slice(SECRET.to_ascii_uppercase().as_bytes()).unwrap();
    m.update(payload.as_bytes());
    (payload, hex::encode(m.finalize().into_bytes()))
}

#[test]
fn a_coinone_order_whose_body_was_not_forwarded_is_body_required() {
    let ak = "coinone-access-key-0001";
    let (payload, signature) = coinone(ak, "0.0001");
    let headers = [("X-COINONE-PAYLOAD", payload.as_str()), ("X-COINONE-SIGNATURE", signature.as_str())];
    let strict = verifier(SigningScheme::Coinone, ak, VerifyConfig::default());
    assert_eq!(run(&strict, "POST", "/v2.1/order/limit", "", None, &headers), Code::BodyRequired);
    // The nonce was not consumed by that refusal: the same request with its body passes.
    assert_eq!(run(&strict, "POST", "/v2.1/order/limit", "", Some(payload.as_bytes()), &headers), Code::Valid);
    // A deployment whose upstream reads the signed payload header alone may let it through.
    let declared = verifier(
        SigningScheme::Coinone,
        ak,
        VerifyConfig { upstream_ignores_unsigned_body: true, ..VerifyConfig::default() },
    );
    assert_eq!(run(&declared, "POST", "/v2.1/order/limit", "", None, &headers), Code::Valid);
}

#[test]
fn a_binance_post_signed_in_the_query_needs_its_body_or_the_declaration() {
    let ak = "binance-access-key-0001";
    let q = format!("symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.0001&timestamp={NOW}");
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
    m.update(q.as_bytes());
    let query = format!("{q}&signature={}", hex::encode(m.finalize().into_bytes()));
    let headers = [("X-MBX-APIKEY", ak)];
    let strict = verifier(SigningScheme::Binance, ak, VerifyConfig::default());
    assert_eq!(run(&strict, "POST", "/api/v3/order", &query, None, &headers), Code::BodyRequired);
    assert_eq!(run(&strict, "POST", "/api/v3/order", &query, Some(b""), &headers), Code::Valid, "no body at all");
    assert_eq!(run(&strict, "GET", "/api/v3/openOrders", &query, None, &headers), Code::Valid, "GET has no body");
    let declared = verifier(
        SigningScheme::Binance,
        ak,
        VerifyConfig { upstream_ignores_unsigned_body: true, ..Default::default() },
    );
    assert_eq!(run(&declared, "POST", "/api/v3/order", &query, None, &headers), Code::Valid);
}

fn upbit(access_key: &str, nonce: &str, extra: serde_json::Value) -> String {
    let mut claims = serde_json::json!({ "access_key": access_key, "nonce": nonce });
    if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
    m.update(input.as_bytes());
    format!("Bearer {input}.{}", URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()))
}

#[test]
fn a_jwt_is_held_to_its_exp_and_nbf() {
    let ak = "upbit-access-key-00001";
    let v = verifier(SigningScheme::Upbit, ak, VerifyConfig::default());
    let secs = NOW / 1000;
    let cases = [
        ("n1", serde_json::json!({ "exp": secs - 3600 }), Code::StaleTimestamp, "an hour-old token"),
        ("n2", serde_json::json!({ "exp": secs - 5 }), Code::StaleTimestamp, "expired seconds ago"),
        ("n3", serde_json::json!({ "exp": secs + 60 }), Code::Valid, "not yet expired"),
        ("n4", serde_json::json!({ "nbf": secs + 3600 }), Code::StaleTimestamp, "not valid yet"),
        ("n5", serde_json::json!({ "nbf": secs - 1, "exp": (secs + 30).to_string() }), Code::Valid, "in its window"),
        ("n6", serde_json::json!({ "exp": "soon" }), Code::Malformed, "not a NumericDate"),
        ("n7", serde_json::json!({}), Code::Valid, "neither claim: Upbit does not require them"),
    ];
    for (nonce, extra, expected, what) in cases {
        let auth = upbit(ak, nonce, extra);
        assert_eq!(run(&v, "GET", "/v1/accounts", "", None, &[("Authorization", &auth)]), expected, "{what}");
    }
    // The serde fallback (a payload outside the scanner's subset: nested value) reads them too.
    let auth = upbit(ak, "n8", serde_json::json!({ "exp": secs - 3600, "meta": { "a": 1 } }));
    assert_eq!(run(&v, "GET", "/v1/accounts", "", None, &[("Authorization", &auth)]), Code::StaleTimestamp);
    // An Upbit order whose JSON body the gateway did not forward.
    let hash = hex::encode(Sha512::digest(b"market=KRW-BTC&side=bid"));
    let auth = upbit(ak, "n9", serde_json::json!({ "query_hash": hash, "query_hash_alg": "SHA512" }));
    assert_eq!(run(&v, "POST", "/v1/orders", "", None, &[("Authorization", &auth)]), Code::BodyRequired);
}

/// A nonce store that cannot record anything (a full disk under the journal).
struct Unwritable;

impl keysentinel_verify::replay::Nonces for Unwritable {
    fn check_and_insert(&self, _: &str, _: &str, _: i64) -> Result<bool, keysentinel_verify::replay::NonceLogError> {
        Err(keysentinel_verify::replay::NonceLogError(std::io::Error::from_raw_os_error(28)))
    }
    fn len(&self) -> usize {
        0
    }
}

#[test]
fn a_nonce_the_store_cannot_record_is_nonce_unavailable_not_replayed() {
    let ak = "coinone-access-key-0002";
    let k =
        keysentinel_testkit::api_key(ak, SigningScheme::Coinone, KeyAlgorithm::Hmac, &[Scope::Read, Scope::Trade], &[]);
    let snap = Arc::new(KeySnapshot::default());
    snap.upsert(KeyEntry::new(&k, Some(SECRET.as_bytes())).unwrap());
    let v = Verifier::with_nonces(
        snap,
        RouteTable::default_routes().unwrap(),
        VerifyConfig::default(),
        Arc::new(Unwritable),
    );
    let (payload, signature) = coinone(ak, "0.0002");
    let headers = [("X-COINONE-PAYLOAD", payload.as_str()), ("X-COINONE-SIGNATURE", signature.as_str())];
    let code = run(&v, "POST", "/v2.1/order/limit", "", Some(payload.as_bytes()), &headers);
    assert_eq!(code, Code::NonceUnavailable);
    assert_eq!(code.as_str(), "NONCE_UNAVAILABLE");
    // A forged request never reaches the store: it is refused for its signature first.
    let wrong = "0".repeat(128);
    let forged = [("X-COINONE-PAYLOAD", payload.as_str()), ("X-COINONE-SIGNATURE", wrong.as_str())];
    assert_eq!(run(&v, "POST", "/v2.1/order/limit", "", Some(payload.as_bytes()), &forged), Code::BadSignature);
}
