//! Conformance against the real ccxt client: requests signed by ccxt's own `sign()` (golden
//! vectors with pinned time and nonces, committed; and live ones with random nonces when ccxt is
//! installed) are accepted, and every tampered variant is refused.

// Test helpers may unwrap and panic: a failure there is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keysentinel_domain::*;
use keysentinel_verify::routes::RouteTable;
use keysentinel_verify::snapshot::{KeyEntry, KeySnapshot};
use keysentinel_verify::{Code, Request, Verifier, VerifyConfig};
use serde_json::Value;
use std::net::IpAddr;
use std::sync::Arc;

#[derive(Clone)]
struct Vector {
    name: String,
    scheme: SigningScheme,
    access_key: String,
    secret: Option<String>,
    public_key: Option<String>,
    method: String,
    path: String,
    query: String,
    body: Option<String>,
    headers: Vec<(String, String)>,
    now_ms: i64,
    scope: Scope,
}

fn load(text: &str) -> Vec<Vector> {
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v.get("scheme").is_some())
        .map(|v| Vector {
            name: v["name"].as_str().unwrap().into(),
            scheme: v["scheme"].as_str().unwrap().parse().unwrap(),
            access_key: v["access_key"].as_str().unwrap().into(),
            secret: v["secret"].as_str().map(Into::into),
            public_key: v["public_key"].as_str().map(Into::into),
            method: v["method"].as_str().unwrap().into(),
            path: v["path"].as_str().unwrap().into(),
            query: v["query"].as_str().unwrap().into(),
            body: v["body"].as_str().map(Into::into),
            headers: v["headers"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect(),
            now_ms: v["now_ms"].as_i64().unwrap(),
            scope: serde_json::from_value(v["scope"].clone()).unwrap(),
        })
        .collect()
}

fn api_key(v: &Vector, scopes: &[Scope], allowlist: &[&str]) -> ApiKey {
    let algorithm = match &v.public_key {
        Some(pk) => KeyAlgorithm::Ed25519 { public_key: pk.clone() },
        None => KeyAlgorithm::Hmac,
    };
    keysentinel_testkit::api_key(&v.access_key, v.scheme, algorithm, scopes, allowlist)
}

fn verifier_with(key: &ApiKey, secret: Option<&str>) -> Verifier {
    let snapshot = Arc::new(KeySnapshot::default());
    snapshot.upsert(KeyEntry::new(key, secret.map(str::as_bytes)).unwrap());
    Verifier::new(snapshot, RouteTable::default_routes().unwrap(), VerifyConfig::default())
}

fn all_scopes() -> Vec<Scope> {
    Scope::ALL.to_vec()
}

const INSIDE: &str = "203.0.113.7";

fn verify(verifier: &Verifier, v: &Vector, ip: &str, now_ms: i64) -> (Code, Option<Scope>) {
    let headers: Vec<(&str, &str)> = v.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let req = Request {
        method: &v.method,
        path: &v.path,
        query: &v.query,
        body: v.body.as_deref().map(str::as_bytes),
        headers: &headers,
        client_ip: ip.parse::<IpAddr>().unwrap(),
        now_ms,
    };
    let d = verifier.verify(&req);
    (d.code, d.required_scope)
}

fn fresh(v: &Vector) -> Verifier {
    verifier_with(&api_key(v, &all_scopes(), &["203.0.113.0/24"]), v.secret.as_deref())
}

fn uses_nonce(s: SigningScheme) -> bool {
    matches!(s, SigningScheme::Upbit | SigningScheme::Bithumb | SigningScheme::Coinone)
}

fn uses_timestamp(s: SigningScheme) -> bool {
    matches!(s, SigningScheme::Binance | SigningScheme::Korbit | SigningScheme::Bithumb)
}

/// Every decision the conformance suite asks for, on one vector.
fn conformance(v: &Vector, now_ms: i64) {
    let n = &v.name;
    let ks = fresh(v);
    assert_eq!(verify(&ks, v, INSIDE, now_ms), (Code::Valid, Some(v.scope)), "{n}: accepted");
    let again = verify(&ks, v, INSIDE, now_ms + 1).0;
    if uses_nonce(v.scheme) {
        assert_eq!(again, Code::Replayed, "{n}: replayed nonce");
    }
    if uses_timestamp(v.scheme) {
        assert_eq!(verify(&fresh(v), v, INSIDE, now_ms + 120_000).0, Code::StaleTimestamp, "{n}: stale");
        assert_eq!(verify(&fresh(v), v, INSIDE, now_ms - 120_000).0, Code::StaleTimestamp, "{n}: from the future");
    }
    assert_eq!(verify(&fresh(v), v, "198.51.100.1", now_ms).0, Code::IpNotAllowed, "{n}: outside the allowlist");
    // Wrong key: the same access key with another secret (or public key).
    let mut other = v.clone();
    if other.public_key.is_some() {
        other.public_key = Some("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=".into());
        if v.public_key == other.public_key {
            other.public_key = Some("PUAXw+hDiVqStwqnTRt+vJyYLM8uxJaMwM1V8Sr0Zgw=".into());
        }
    }
    let wrong =
        verifier_with(&api_key(&other, &all_scopes(), &[]), Some("kss_AnotherSecretEntirely000000000000000000000"));
    assert_eq!(verify(&wrong, v, INSIDE, now_ms).0, Code::BadSignature, "{n}: wrong key");
    // A key without the endpoint's scope.
    let read_only = verifier_with(&api_key(v, &[Scope::Read], &[]), v.secret.as_deref());
    let expected = if v.scope == Scope::Read { Code::Valid } else { Code::ScopeDenied };
    assert_eq!(verify(&read_only, v, INSIDE, now_ms).0, expected, "{n}: scope");
    // A key bound to another scheme.
    let mut foreign = api_key(v, &all_scopes(), &[]);
    foreign.scheme = if v.scheme == SigningScheme::Korbit { SigningScheme::Binance } else { SigningScheme::Korbit };
    if foreign.scheme.supports(&foreign.algorithm) {
        let ks = verifier_with(&foreign, v.secret.as_deref());
        assert_ne!(verify(&ks, v, INSIDE, now_ms).0, Code::Valid, "{n}: key bound to another scheme");
    }
    // Without the body a body-signing request cannot be verified.
    if v.body.is_some() && v.method != "GET" {
        let mut no_body = v.clone();
        no_body.body = None;
        let code = verify(&fresh(v), &no_body, INSIDE, now_ms).0;
        // Coinone too: its backend reads the order from the body, which the payload must equal.
        assert_eq!(code, Code::BodyRequired, "{n}: body withheld");
    }
}

/// Changes one byte: a different printable character.
fn flip(s: &str, i: usize) -> String {
    let mut b = s.as_bytes().to_vec();
    b[i] = if b[i] == b'Z' { b'Y' } else { b'Z' };
    String::from_utf8(b).unwrap()
}

/// Every single-byte change to what is signed, or to the credential, is refused.
fn tampering(v: &Vector, now_ms: i64) -> usize {
    let mut tried = 0;
    let mut check = |t: &Vector, what: &str| {
        let code = verify(&fresh(v), t, INSIDE, now_ms).0;
        assert_ne!(code, Code::Valid, "{}: tampered {what} was accepted", v.name);
        tried += 1;
    };
    for i in 0..v.query.len() {
        let mut t = v.clone();
        t.query = flip(&v.query, i);
        if t.query != v.query {
            check(&t, &format!("query byte {i}"));
        }
    }
    if let Some(body) = &v.body {
        for i in 0..body.len() {
            let mut t = v.clone();
            t.body = Some(flip(body, i));
            check(&t, &format!("body byte {i}"));
        }
    }
    for (h, (name, value)) in v.headers.iter().enumerate() {
        // Only credential headers are signed or identify the key; Accept and the like are not.
        let credential = ["authorization", "x-mbx-apikey", "x-kapi-key", "x-coinone-payload", "x-coinone-signature"];
        if !credential.iter().any(|c| name.eq_ignore_ascii_case(c)) {
            continue;
        }
        for i in 0..value.len() {
            let mut t = v.clone();
            t.headers[h].1 = flip(value, i);
            check(&t, &format!("header {name} byte {i}"));
        }
    }
    tried
}

#[test]
fn golden_vectors_signed_by_ccxt_are_accepted_and_every_tamper_refused() {
    let vectors = load(include_str!("ccxt/golden.jsonl"));
    assert_eq!(vectors.len(), 23);
    let mut tampers = 0;
    for v in &vectors {
        conformance(v, v.now_ms);
        tampers += tampering(v, v.now_ms);
    }
    assert!(tampers > 5_000, "{tampers}");
}

fn python() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("KEYSENTINEL_PYTHON") {
        return Some(p.into());
    }
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/venv/bin/python");
    venv.exists().then_some(venv)
}

/// Fresh requests from ccxt with random uuid nonces and the real clock, verified at once.
#[test]
fn live_requests_from_ccxt_verify_end_to_end() {
    let Some(py) = python() else {
        assert!(std::env::var("CI").is_err(), "ccxt is required in CI: run scripts/test, which installs it");
        eprintln!("skipped: ccxt not installed (scripts/test installs it into .cache/venv)");
        return;
    };
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ccxt/sign_requests.py");
    let out = std::process::Command::new(py).arg(script).arg("live").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let vectors = load(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(vectors.len(), 23);
    for v in &vectors {
        // Verify against the time they were signed: the check is the signature, not this
        // machine's speed.
        conformance(v, v.now_ms + 5);
    }
    let nonces: std::collections::HashSet<String> = vectors
        .iter()
        .filter(|v| v.scheme == SigningScheme::Upbit)
        .map(|v| v.headers.iter().map(|h| h.1.clone()).collect())
        .collect();
    assert_eq!(nonces.len(), 5, "live requests carry distinct tokens");
}
