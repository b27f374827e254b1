//! The signed requests docs/gateway.md shows, one per scheme, run as written (bash, openssl,
//! curl) against the real binary: the documentation cannot drift from what keysentinel accepts.

// Test helpers may unwrap and panic: a failure there is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

/// The shell blocks of docs/gateway.md that start with `# <scheme>:`, with the output each
/// documents (its `# → ` lines).
fn documented_requests() -> Vec<(String, String, Vec<String>)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/gateway.md")).unwrap();
    let mut found = Vec::new();
    let mut rest = doc.as_str();
    while let Some(start) = rest.find("```sh\n") {
        let body = &rest[start + 6..];
        let end = body.find("```").unwrap();
        let block = &body[..end];
        rest = &body[end + 3..];
        let scheme = block
            .strip_prefix("# ")
            .and_then(|l| l.split_once(':'))
            .map(|(s, _)| s)
            .filter(|s| ["binance", "upbit", "bithumb", "coinone", "korbit"].contains(s));
        if let Some(scheme) = scheme {
            let expected = block.lines().filter_map(|l| l.strip_prefix("# → ")).map(str::to_owned).collect();
            found.push((scheme.to_owned(), block.to_owned(), expected));
        }
    }
    found
}

#[test]
fn every_documented_signed_request_is_accepted_as_documented() {
    for tool in ["bash", "openssl", "curl"] {
        let present = std::process::Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().unwrap();
        if !present.status.success() {
            assert!(std::env::var("CI").is_err(), "{tool} is required in CI");
            eprintln!("skipped: {tool} is not installed");
            return;
        }
    }
    let requests = documented_requests();
    let mut schemes: Vec<&str> = requests.iter().map(|(s, _, _)| s.as_str()).collect();
    schemes.sort();
    assert_eq!(schemes, ["binance", "bithumb", "coinone", "korbit", "upbit"], "one documented request per scheme");

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve_with(&data, &["--no-detection"]);
    let u = server.url.clone();
    let gateway = ok_json(&data, &u, &["operators", "create", "gw-docs", "--role", "gateway"])["token"]
        .as_str()
        .unwrap()
        .to_owned();
    ok_json(&data, &u, &["accounts", "create", "acct-docs", "--segment", "retail", "--verification", "verified"]);
    for (scheme, block, expected) in requests {
        assert!(!expected.is_empty(), "{scheme}: the block documents its output");
        let (key, secret) = create_key(&data, &u, &scheme, "acct-docs", "127.0.0.1");
        let out = std::process::Command::new("bash")
            .args(["-euo", "pipefail", "-c", &block])
            .env("KS", &u)
            .env("GATEWAY_TOKEN", &gateway)
            .env("ACCESS_KEY", &key)
            .env("SECRET", &secret)
            .output()
            .unwrap();
        let printed: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
        assert_eq!(printed, expected, "{scheme}: {}\n{block}", String::from_utf8_lossy(&out.stderr));
    }
}
