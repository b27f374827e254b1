//! `serve` as a process: what it remembers across a restart (one-time nonces, after a clean stop
//! and after `kill -9`) and what it refuses to share (its listening address).

// Test helpers may unwrap and panic: a failure there is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::*;
use hmac::{Hmac, Mac};
use reqwest::blocking::Client;
use serde_json::{json, Value};
use sha2::{Sha256, Sha512};
use std::process::{Command, Stdio};

fn upbit_token(access_key: &str, secret: &str, nonce: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = json!({ "access_key": access_key, "nonce": nonce });
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(input.as_bytes());
    format!("Bearer {input}.{}", URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()))
}

fn verify(url: &str, gateway: &str, request: &Value) -> String {
    let r = Client::new().post(format!("{url}/v1/verify")).bearer_auth(gateway).json(request).send().unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().unwrap()["code"].as_str().unwrap().to_owned()
}

fn stop_cleanly(mut server: Server) {
    let _ = Command::new("kill").arg("-TERM").arg(server.child.id().to_string()).status();
    let status = server.child.wait().unwrap();
    assert!(status.success(), "a clean stop exits 0: {status:?}");
}

#[test]
fn a_signed_request_is_a_replay_after_a_clean_stop_and_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve_with(&data, &["--no-detection"]);
    let u = server.url.clone();
    let gateway =
        ok_json(&data, &u, &["operators", "create", "gw-1", "--role", "gateway"])["token"].as_str().unwrap().to_owned();
    ok_json(&data, &u, &["accounts", "create", "acct-1", "--segment", "retail", "--verification", "verified"]);
    let (uk, usecret) = create_key(&data, &u, "upbit", "acct-1", "203.0.113.0/24");
    let (ck, csecret) = create_key(&data, &u, "coinone", "acct-1", "203.0.113.0/24");
    let upbit = |nonce: &str| {
        json!({ "method": "GET", "path": "/v1/accounts", "body": "", "client_ip": "203.0.113.7",
            "headers": { "Authorization": upbit_token(&uk, &usecret, nonce) } })
    };
    let coinone = |nonce: &str| {
        let payload = STANDARD.encode(json!({ "access_token": ck, "nonce": nonce }).to_string());
        let mut m = <Hmac<Sha512> as Mac>::new_from_slice(csecret.to_ascii_uppercase().as_bytes()).unwrap();
        m.update(payload.as_bytes());
        json!({ "method": "POST", "path": "/v2.1/account/balance/all", "body": payload, "client_ip": "203.0.113.7",
            "headers": { "X-COINONE-PAYLOAD": payload, "X-COINONE-SIGNATURE": hex::encode(m.finalize().into_bytes()) } })
    };
    let requests = [upbit("before-clean-stop"), coinone("before-clean-stop")];
    for r in &requests {
        assert_eq!(verify(&u, &gateway, r), "VALID");
        assert_eq!(verify(&u, &gateway, r), "REPLAYED");
    }

    stop_cleanly(server);
    let server = serve_with(&data, &["--no-detection"]);
    let u = server.url.clone();
    for r in &requests {
        assert_eq!(verify(&u, &gateway, r), "REPLAYED", "after a clean stop: {r}");
    }
    let later = [upbit("before-kill-9"), coinone("before-kill-9")];
    for r in &later {
        assert_eq!(verify(&u, &gateway, r), "VALID");
    }

    drop(server); // SIGKILL: no shutdown code runs
    let server = serve_with(&data, &["--no-detection"]);
    let u = server.url.clone();
    for r in requests.iter().chain(&later) {
        assert_eq!(verify(&u, &gateway, r), "REPLAYED", "after kill -9: {r}");
    }
    assert_eq!(verify(&u, &gateway, &upbit("fresh")), "VALID", "new nonces still pass");
}

#[test]
fn a_second_serve_on_the_same_address_fails_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let first = serve_with(&dir.path().join("one"), &["--no-detection"]);
    let addr = first.url.trim_start_matches("http://").to_owned();
    let mut second = Command::new(BIN)
        .args(["serve", "--no-detection", "--listen", &addr, "--data-dir"])
        .arg(dir.path().join("two"))
        .env("KEYSENTINEL_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A guard against a hang (the defect: the second server serves): not a timing claim.
    let mut status = None;
    for _ in 0..600 {
        if let Some(s) = second.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let Some(status) = status else {
        let _ = second.kill();
        panic!("a second serve on {addr} kept running: requests would be split between two key stores");
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(2), "usage exit code; stderr: {stderr}");
    assert!(stderr.contains(&format!("cannot listen on {addr}")) && stderr.contains("in use"), "{stderr}");
    // The first is untouched.
    assert_eq!(Client::new().get(format!("{}/healthz", first.url)).send().unwrap().status(), 200);
}
