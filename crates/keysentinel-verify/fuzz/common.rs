#![allow(dead_code)] // each user of this module takes only what it needs
                     // Shared by the fuzz target and the corpus seeder: the input framing and the golden keys.
use keysentinel_domain::*;
use keysentinel_verify::routes::RouteTable;
use keysentinel_verify::snapshot::{KeyEntry, KeySnapshot};
use keysentinel_verify::{Verifier, VerifyConfig};
use serde_json::Value;
use std::sync::Arc;

pub const GOLDEN: &str = include_str!("../tests/ccxt/golden.jsonl");
pub const HEADERS: [&str; 6] =
    ["x-mbx-apikey", "x-kapi-key", "authorization", "x-coinone-payload", "x-coinone-signature", "accept"];

pub fn golden() -> Vec<Value> {
    GOLDEN.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v.get("scheme").is_some()).collect()
}

/// Input framing: `METHOD\nPATH\nQUERY\n(H<index>:VALUE\n)*\n` then the body (if any bytes follow).
pub fn encode(v: &Value) -> Vec<u8> {
    let mut out = format!(
        "{}\n{}\n{}\n",
        v["method"].as_str().unwrap_or(""),
        v["path"].as_str().unwrap_or(""),
        v["query"].as_str().unwrap_or("")
    );
    for (k, val) in v["headers"].as_object().into_iter().flatten() {
        if let Some(i) = HEADERS.iter().position(|h| h.eq_ignore_ascii_case(k)) {
            out.push_str(&format!("H{i}:{}\n", val.as_str().unwrap_or("")));
        }
    }
    out.push('\n');
    let mut bytes = out.into_bytes();
    if let Some(b) = v["body"].as_str() {
        bytes.extend_from_slice(b.as_bytes());
    }
    bytes
}

pub fn verifier() -> Verifier {
    let snapshot = Arc::new(KeySnapshot::default());
    for v in golden() {
        let (Ok(access_key), Ok(scheme)) = (
            AccessKey::parse(v["access_key"].as_str().unwrap_or("")),
            v["scheme"].as_str().unwrap_or("").parse::<SigningScheme>(),
        ) else {
            continue;
        };
        let algorithm = match v["public_key"].as_str() {
            Some(pk) => KeyAlgorithm::Ed25519 { public_key: pk.into() },
            None => KeyAlgorithm::Hmac,
        };
        let key =
            keysentinel_testkit::api_key(access_key.as_str(), scheme, algorithm, &[Scope::Read, Scope::Trade], &[]);
        if let Ok(entry) = KeyEntry::new(&key, v["secret"].as_str().map(str::as_bytes)) {
            snapshot.upsert(entry);
        }
    }
    Verifier::new(snapshot, RouteTable::default_routes().unwrap_or_else(|_| unreachable!()), VerifyConfig::default())
}

/// The signed material in canonical form: hex signatures are case-insensitive (as Binance
/// documents) and percent-escapes decode to the same bytes, so two requests that differ only
/// there carry the same signature and are the same request.
pub fn canonical(query: &str, body: Option<&str>, creds: &[(&str, &str)]) -> (String, Option<String>, Vec<String>) {
    fn sig(s: &str) -> String {
        match keysentinel_verify::encoding::split_signature(s) {
            Some((signed, sig)) => {
                let decoded = keysentinel_verify::encoding::percent_decode(sig)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_else(|| sig.to_owned());
                let sig =
                    if decoded.bytes().all(|b| b.is_ascii_hexdigit()) { decoded.to_ascii_lowercase() } else { decoded };
                format!("{signed}&signature={sig}")
            }
            None => s.to_owned(),
        }
    }
    let mut c: Vec<String> = creds
        .iter()
        .filter(|(k, _)| {
            !k.eq_ignore_ascii_case("accept")
                && !k.eq_ignore_ascii_case("content-type")
                && !k.eq_ignore_ascii_case("open-api-partner")
        })
        .map(
            |(k, v)| if k.eq_ignore_ascii_case("x-coinone-signature") { v.to_ascii_lowercase() } else { v.to_string() },
        )
        .collect();
    c.sort();
    (sig(query), body.map(sig), c)
}
