//! The trust boundaries of a running `serve`, tried from outside: a role that may not call an
//! endpoint learns nothing from its input parser; an IPv4 client is IPv4 however a socket
//! writes it; a nonce the journal cannot take is refused as the node's failure.

// Test helpers may unwrap and panic: a failure there is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use hmac::{Hmac, Mac};
use reqwest::blocking::Client;
use serde_json::{json, Value};
use sha2::Sha256;

/// Every operation of the admin API that takes a bearer token, from the served openapi.json:
/// (method, path template, request body's content type).
fn authenticated_operations(url: &str) -> Vec<(String, String, Option<String>)> {
    let doc: Value = Client::new().get(format!("{url}/openapi.json")).send().unwrap().json().unwrap();
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            // forward-auth takes the gateway's token in its own header (tested with the gateways).
            if op.get("security").is_none() || path == "/v1/verify/forward-auth" {
                continue;
            }
            let content = op["requestBody"]["content"].as_object().and_then(|c| c.keys().next().cloned());
            ops.push((method.to_uppercase(), path.clone(), content));
        }
    }
    assert!(ops.len() >= 40, "the admin API lists its operations: {}", ops.len());
    ops
}

/// The operation with malformed inputs: every path parameter `x`, a query whose `limit` is not a
/// number and which carries an unknown parameter, and a body its parser refuses.
fn malformed(
    http: &Client,
    url: &str,
    method: &str,
    path: &str,
    content: &Option<String>,
) -> reqwest::blocking::RequestBuilder {
    let mut concrete = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => in_param = true,
            '}' => {
                in_param = false;
                concrete.push('x');
            }
            _ if in_param => {}
            _ => concrete.push(c),
        }
    }
    let target = format!("{url}{concrete}?limit=not-a-number&no_such_parameter=1");
    let req = http.request(method.parse().unwrap(), target);
    match content.as_deref() {
        Some("application/json") => req.header("content-type", "application/json").body("{\"malformed"),
        Some(other) => req.header("content-type", other).body(vec![0xff, 0xfe, b'\n']),
        None => req,
    }
}

#[test]
fn a_role_that_may_not_call_an_endpoint_gets_403_whatever_it_sends_and_no_token_gets_401() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve_with(&data, &["--no-detection"]);
    let u = server.url.clone();
    let token = |name: &str, role: &str| {
        ok_json(&data, &u, &["operators", "create", name, "--role", role])["token"].as_str().unwrap().to_owned()
    };
    let gateway = token("gw-1", "gateway");
    let auditor = token("audit-1", "auditor");
    let http = Client::new();
    // What each role may call (domain/src/operator.rs): everything else must be 403 before its
    // inputs are looked at.
    let gateway_may = |m: &str, p: &str| {
        matches!((m, p), ("POST", "/v1/verify") | ("POST", "/v1/events") | ("GET", "/v1/operators/me"))
    };
    let auditor_may = |m: &str, p: &str| {
        (m == "GET" && !matches!(p, "/v1/operators")) || (m == "POST" && p == "/v1/cases/{case_id}/evidence-pack")
    };
    let mut checked = 0;
    for (method, path, content) in authenticated_operations(&u) {
        let r = malformed(&http, &u, &method, &path, &content).send().unwrap();
        assert_eq!(r.status(), 401, "{method} {path} without a token");

        for (role, token, may) in
            [("gateway", &gateway, &gateway_may as &dyn Fn(&str, &str) -> bool), ("auditor", &auditor, &auditor_may)]
        {
            let r = malformed(&http, &u, &method, &path, &content).bearer_auth(token).send().unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().unwrap_or(Value::Null);
            if may(&method, &path) {
                assert!(
                    ![401, 403].contains(&status) && status < 500,
                    "{role} may call {method} {path}; its malformed input is judged: {status} {body}"
                );
            } else {
                assert_eq!(status, 403, "{role} may not call {method} {path}, whatever it sends: {body}");
                assert_eq!(body["error"]["code"], "forbidden", "{method} {path}: {body}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 50, "refusals checked: {checked}");
}

/// `serve` on `listen` (rather than the helpers' 127.0.0.1:0), with its log kept in `log`.
fn serve_on(data: &std::path::Path, listen: &str, extra: &[&str], log: &std::path::Path) -> Server {
    use std::io::BufRead;
    let mut child = std::process::Command::new(BIN)
        .args(["serve", "--no-detection", "--listen", listen, "--data-dir"])
        .arg(data)
        .args(extra)
        .env("KEYSENTINEL_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("keysentinel listening on ").expect("listening line").to_owned();
    Server { child, url, grpc: None }
}

fn forward_auth(url: &str, gateway: &str, access_key: &str, uri: &str) -> (u16, String) {
    let r = Client::new()
        .get(format!("{url}/v1/verify/forward-auth"))
        .header("X-Keysentinel-Token", gateway)
        .header("X-Original-Method", "GET")
        .header("X-Original-URI", uri)
        .header("X-MBX-APIKEY", access_key)
        .send()
        .unwrap();
    let code = r.headers().get("x-keysentinel-code").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    (r.status().as_u16(), code)
}

#[test]
fn an_ipv4_mapped_allowlist_entry_is_its_ipv4_network_and_a_dual_stack_peer_matches_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A dual-stack listener: an IPv4 client connecting to 127.0.0.1 is seen as ::ffff:127.0.0.1.
    let server = serve_on(&data, "[::]:0", &[], &dir.path().join("serve.log"));
    let port = server.url.rsplit(':').next().unwrap().to_owned();
    let u = format!("http://127.0.0.1:{port}");
    let gateway =
        ok_json(&data, &u, &["operators", "create", "gw-1", "--role", "gateway"])["token"].as_str().unwrap().to_owned();
    ok_json(&data, &u, &["accounts", "create", "acct-1", "--segment", "retail", "--verification", "verified"]);

    // Entered as a mapped address, stored (and shown) as the IPv4 address it names.
    let (mapped, mapped_secret) = create_key(&data, &u, "binance", "acct-1", "::ffff:127.0.0.1");
    let shown = ok_json(&data, &u, &["keys", "show", &mapped]);
    assert_eq!(shown["ip_allowlist"], serde_json::json!(["127.0.0.1/32"]), "{shown}");
    let (plain, plain_secret) = create_key(&data, &u, "binance", "acct-1", "127.0.0.1");
    let (elsewhere, elsewhere_secret) = create_key(&data, &u, "binance", "acct-1", "198.51.100.0/24");

    let uri = |secret: &str| format!("/api/v3/account?{}", binance_query(secret, "omitZeroBalances=true"));
    assert_eq!(forward_auth(&u, &gateway, &mapped, &uri(&mapped_secret)), (200, "VALID".into()), "mapped entry");
    assert_eq!(forward_auth(&u, &gateway, &plain, &uri(&plain_secret)), (200, "VALID".into()), "mapped peer");
    assert_eq!(
        forward_auth(&u, &gateway, &elsewhere, &uri(&elsewhere_secret)),
        (403, "IP_NOT_ALLOWED".into()),
        "the allowlist still holds"
    );

    // The JSON verify API: a gateway that reports the client as ::ffff:127.0.0.1.
    let r: Value = Client::new()
        .post(format!("{u}/v1/verify"))
        .bearer_auth(&gateway)
        .json(&serde_json::json!({ "method": "GET", "path": "/api/v3/account",
            "query": binance_query(&mapped_secret, "omitZeroBalances=true"), "body": "",
            "headers": { "X-MBX-APIKEY": mapped }, "client_ip": "::ffff:127.0.0.1" }))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r["code"], "VALID", "{r}");

    // An entry around the whole mapped range is refused, saying why.
    let out = ks(
        &data,
        &u,
        &key_create(&[
            "--scheme",
            "binance",
            "--account",
            "acct-1",
            "--scopes",
            "read",
            "--allow",
            "::/32",
            "--purpose",
            "portfolio_read_only",
        ]),
    );
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("IPv4-mapped range"));
}

fn upbit_token(access_key: &str, secret: &str, nonce: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = json!({ "access_key": access_key, "nonce": nonce });
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(input.as_bytes());
    format!("Bearer {input}.{}", URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()))
}

#[cfg(unix)]
#[test]
fn a_nonce_the_journal_cannot_take_is_refused_nonce_unavailable_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("serve.log");
    let window_ms = 10_000;
    let server = serve_on(&data, "127.0.0.1:0", &["--nonce-window-seconds", "10"], &log);
    let u = server.url.clone();
    let gateway =
        ok_json(&data, &u, &["operators", "create", "gw-1", "--role", "gateway"])["token"].as_str().unwrap().to_owned();
    ok_json(&data, &u, &["accounts", "create", "acct-1", "--segment", "retail", "--verification", "verified"]);
    let (upbit, upbit_secret) = create_key(&data, &u, "upbit", "acct-1", "127.0.0.1");
    let (binance, binance_secret) = create_key(&data, &u, "binance", "acct-1", "127.0.0.1");
    let http = Client::new();
    let upbit_call = |nonce: &str| {
        let r = http
            .get(format!("{u}/v1/verify/forward-auth"))
            .header("X-Keysentinel-Token", &gateway)
            .header("X-Original-Method", "GET")
            .header("X-Original-URI", "/v1/accounts")
            .header("Authorization", upbit_token(&upbit, &upbit_secret, nonce))
            .send()
            .unwrap();
        let code = r.headers().get("x-keysentinel-code").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        (r.status().as_u16(), code)
    };
    assert_eq!(upbit_call("journaled"), (200, "VALID".into()));

    // The journal's next segment is a full disk: every record written to it fails (ENOSPC).
    let next = (now_ms() / window_ms + 1) * window_ms;
    std::os::unix::fs::symlink("/dev/full", data.join("nonces").join(format!("segment-{next}.log"))).unwrap();
    while now_ms() < next + 100 {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Refused, as the node's failure (503: nginx answers 500, Caddy and Traefik pass it on),
    // not as a replay the client could be blamed for.
    assert_eq!(upbit_call("cannot-be-journaled"), (503, "NONCE_UNAVAILABLE".into()));
    let verified: Value = http
        .post(format!("{u}/v1/verify"))
        .bearer_auth(&gateway)
        .json(&json!({ "method": "GET", "path": "/v1/accounts", "body": "", "client_ip": "127.0.0.1",
            "headers": { "Authorization": upbit_token(&upbit, &upbit_secret, "also-not-journaled") } }))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!((&verified["allow"], &verified["code"]), (&json!(false), &json!("NONCE_UNAVAILABLE")), "{verified}");
    // What was journaled is still a replay, and a scheme without nonces is unaffected.
    assert_eq!(upbit_call("journaled"), (401, "REPLAYED".into()));
    assert_eq!(
        forward_auth(&u, &gateway, &binance, &format!("/api/v3/account?{}", binance_query(&binance_secret, "a=1"))),
        (200, "VALID".into())
    );

    let metrics = http.get(format!("{u}/metrics")).send().unwrap().text().unwrap();
    let counted = metrics
        .lines()
        .find(|l| l.starts_with("keysentinel_verifies_total{") && l.contains("code=\"NONCE_UNAVAILABLE\""))
        .unwrap_or_else(|| panic!("no NONCE_UNAVAILABLE count in:\n{metrics}"));
    assert!(counted.ends_with(" 2"), "{counted}");
    drop(server);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("cannot journal a nonce"), "the failure is logged: {logged}");
}

#[test]
fn rows_edited_in_the_database_while_serve_runs_are_refused_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("serve.log");
    let server = serve_on(&data, "127.0.0.1:0", &[], &log);
    let u = server.url.clone();
    let http = Client::new();
    let gateway =
        ok_json(&data, &u, &["operators", "create", "gw-1", "--role", "gateway"])["token"].as_str().unwrap().to_owned();
    // An auditor whose token is never used before the edit: no cache stands between it and the file.
    ok_json(&data, &u, &["operators", "create", "eve", "--role", "auditor"]);
    ok_json(&data, &u, &["accounts", "create", "acct-1", "--segment", "retail", "--verification", "verified"]);
    let (key, secret) = create_key(&data, &u, "binance", "acct-1", "127.0.0.1");
    ok_json(&data, &u, &["keys", "suspend", &key, "--reason", "suspected sharing"]);

    // Someone with write access to the file, while serve runs: eve becomes an admin holding a
    // token they chose, and the suspended key gains withdraw, waiting for a routine resume.
    let attacker = keysentinel_secrets::generate_operator_token();
    let conn = rusqlite::Connection::open(data.join("keysentinel.db")).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    conn.execute(
        "UPDATE operators SET role = 'admin', token_hash = ?1, doc = json_set(doc, '$.role', 'admin') WHERE operator_id = 'eve'",
        [keysentinel_secrets::hash_token(&attacker).as_slice()],
    )
    .unwrap();
    conn.execute(
        "UPDATE api_keys SET doc = json_set(doc, '$.scopes', json('[\"read\",\"trade\",\"withdraw\"]')) WHERE access_key = ?1",
        [&key],
    )
    .unwrap();
    drop(conn);

    // The edited operator authenticates nobody.
    let me = http.get(format!("{u}/v1/operators/me")).bearer_auth(attacker.as_str()).send().unwrap();
    assert_eq!(me.status(), 401, "an operator row given another role and token in the file: {}", me.text().unwrap());
    let minted = http
        .post(format!("{u}/v1/operators"))
        .bearer_auth(attacker.as_str())
        .json(&json!({ "operator_id": "mallory", "role": "admin" }))
        .send()
        .unwrap();
    assert_eq!(minted.status(), 401);

    // The edited key is not carried into a new state by the next change, nor shown.
    let resumed = ks(&data, &u, &["keys", "resume", &key, "--reason", "customer confirmed", "--json"]);
    assert_ne!(resumed.status.code(), Some(0), "a resume would carry the forged withdraw scope into the log");
    assert!(String::from_utf8_lossy(&resumed.stderr).contains("does not match its audit history"), "{resumed:?}");
    let shown = ks(&data, &u, &["keys", "show", &key]);
    assert_ne!(shown.status.code(), Some(0));
    // The gateway still refuses it as it was.
    let withdraw: Value = http
        .post(format!("{u}/v1/verify"))
        .bearer_auth(&gateway)
        .json(
            &json!({ "method": "POST", "path": "/sapi/v1/capital/withdraw/apply", "body": "", "client_ip": "127.0.0.1",
            "query": binance_query(&secret, "coin=BTC&address=x&amount=1"), "headers": { "X-MBX-APIKEY": key } }),
        )
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(withdraw["code"], "SUSPENDED", "{withdraw}");

    // Reported: counted for alerting, and named in the log.
    let metrics = http.get(format!("{u}/metrics")).send().unwrap().text().unwrap();
    let counted = metrics.lines().find(|l| l.starts_with("keysentinel_state_mismatches_total ")).unwrap_or_default();
    let n: u64 = counted.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!(n >= 3, "refused rows are counted: {counted:?}\n{metrics}");
    drop(server);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("operators row eve was changed without an audit entry"), "{logged}");
    assert!(logged.contains(&format!("api_keys row {key} was changed without an audit entry")), "{logged}");
    // And the next start refuses the file whole.
    let restart = std::process::Command::new(BIN)
        .args(["serve", "--no-detection", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(restart.status.code(), Some(8), "{}", String::from_utf8_lossy(&restart.stderr));
}
