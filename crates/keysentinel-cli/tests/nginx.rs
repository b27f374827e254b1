//! Real nginx in front of a small upstream, deciding every request with keysentinel through
//! `auth_request`, using the shipped deploy/nginx/nginx.conf. An authorised request reaches the
//! upstream; a denied one gets 401/403 and never does.

// Test helpers may unwrap and panic: a failure there is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::gateways::*;
use common::*;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::{Digest, Sha256, Sha512};
use std::process::Command;

fn nginx() -> Option<String> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"].iter().find(|p| std::path::Path::new(p).exists()).map(|p| p.to_string())
}

fn upbit_token(access_key: &str, secret: &str, query: &str, nonce: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = json!({ "access_key": access_key, "nonce": nonce, "query_hash": hex::encode(Sha512::digest(query.as_bytes())), "query_hash_alg": "SHA512" });
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(input.as_bytes());
    format!("Bearer {input}.{}", URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_lets_only_verified_requests_reach_the_upstream() {
    let Some(nginx_bin) = nginx() else {
        assert!(std::env::var("CI").is_err(), "nginx is required in CI: scripts/test installs it");
        eprintln!("skipped: nginx not installed (scripts/test installs it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve_behind_gateway(&data, &[]);
    let u = server.url.clone();
    let gateway = ok_json(&data, &u, &["operators", "create", "gw-edge-1", "--role", "gateway"]);
    let gateway_token = gateway["token"].as_str().unwrap().to_owned();
    ok_json(&data, &u, &["accounts", "create", "acct-9", "--segment", "retail", "--verification", "verified"]);
    let (bk, bsecret) = create_key(&data, &u, "binance", "acct-9", "127.0.0.0/24");
    let (uk, usecret) = create_key(&data, &u, "upbit", "acct-9", "127.0.0.0/24");
    let read_only = ok_json(
        &data,
        &u,
        &key_create(&[
            "--scheme",
            "binance",
            "--account",
            "acct-9",
            "--scopes",
            "read",
            "--allow",
            "127.0.0.0/24",
            "--purpose",
            "portfolio_read_only",
        ]),
    );
    let (rk, rsecret) =
        (read_only["key"]["access_key"].as_str().unwrap().to_owned(), read_only["secret"].as_str().unwrap().to_owned());

    let (up_port, seen) = upstream().await;
    let listen = free_port();
    let prefix = dir.path().join("nginx");
    std::fs::create_dir_all(&prefix).unwrap();
    let conf = include_str!("../../../deploy/nginx/nginx.conf")
        .replace("${LISTEN}", &format!("127.0.0.1:{listen}"))
        .replace("${KEYSENTINEL}", u.trim_start_matches("http://"))
        .replace("${UPSTREAM}", &format!("127.0.0.1:{up_port}"))
        .replace("${GATEWAY_TOKEN}", &gateway_token)
        .replace("${PREFIX}", prefix.to_str().unwrap());
    let conf_path = prefix.join("nginx.conf");
    std::fs::write(&conf_path, format!("user root;\n{conf}")).unwrap();
    let test = Command::new(&nginx_bin).arg("-t").arg("-c").arg(&conf_path).arg("-p").arg(&prefix).output().unwrap();
    assert!(test.status.success(), "nginx -t: {}", String::from_utf8_lossy(&test.stderr));
    let _nginx = Gateway::start(
        Command::new(&nginx_bin).arg("-c").arg(&conf_path).arg("-p").arg(&prefix).arg("-g").arg("daemon off;"),
    );
    let base = format!("http://127.0.0.1:{listen}");
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if http.get(format!("{base}/")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let hits = || seen.lock().unwrap().len();
    let before = hits();

    // A correctly signed Binance-style request reaches the upstream, which learns who it is,
    // and a client cannot forge that.
    let q = binance_query(&bsecret, "symbol=BTCUSDT");
    let resp = http
        .get(format!("{base}/api/v3/openOrders?{q}"))
        .header("X-MBX-APIKEY", &bk)
        .header("X-Keysentinel-Account", "someone-else")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "upstream reached");
    let last = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        (last.path.as_str(), last.key.as_str(), last.account.as_str()),
        ("/api/v3/openOrders", bk.as_str(), "acct-9")
    );
    assert_eq!(hits(), before + 1);

    // Denials: none of these reaches the upstream.
    let tampered = q.replace("BTCUSDT", "ETHUSDT");
    let cases: Vec<(reqwest::RequestBuilder, u16)> = vec![
        (http.get(format!("{base}/api/v3/openOrders?{tampered}")).header("X-MBX-APIKEY", &bk), 401),
        (http.get(format!("{base}/api/v3/account")), 401),
        (http.get(format!("{base}/api/v3/openOrders?{q}")).header("X-MBX-APIKEY", "unknown-key-000000000000"), 401),
        // A body-signed POST cannot be checked by a header-only proxy: refused.
        (
            http.post(format!("{base}/api/v3/order"))
                .header("X-MBX-APIKEY", &bk)
                .body(binance_query(&bsecret, "symbol=BTCUSDT&side=BUY")),
            403,
        ),
        // Signed in the query, but a POST's body could add what nobody signed: refused too.
        (
            http.post(format!("{base}/sapi/v1/capital/withdraw/apply?{}", binance_query(&bsecret, "coin=BTC")))
                .header("X-MBX-APIKEY", &bk),
            403,
        ),
        // A read-only key cancelling an order.
        (
            http.delete(format!("{base}/api/v3/order?{}", binance_query(&rsecret, "symbol=BTCUSDT&orderId=7")))
                .header("X-MBX-APIKEY", &rk),
            403,
        ),
    ];
    for (i, (req, status)) in cases.into_iter().enumerate() {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "case {i}");
    }
    assert_eq!(hits(), before + 1, "no denied request reached the upstream");

    // Upbit-style JWT in Authorization passes through the proxy to keysentinel untouched.
    let query = "market=KRW-BTC";
    let token = upbit_token(&uk, &usecret, query, "5f1e9e39-2b4f-4b7f-9a51-1f0e7d1c0a11");
    let resp =
        http.get(format!("{base}/v1/orders/chance?{query}")).header("Authorization", &token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let replay =
        http.get(format!("{base}/v1/orders/chance?{query}")).header("Authorization", &token).send().await.unwrap();
    assert_eq!(replay.status(), 401, "a replayed nonce is refused");
    assert_eq!(hits(), before + 2);

    // Revoked through the CLI: the next request through nginx is refused.
    ok_json(&data, &u, &["keys", "revoke", &bk, "--reason", "leaked"]);
    let q = binance_query(&bsecret, "symbol=BTCUSDT");
    let resp = http.get(format!("{base}/api/v3/openOrders?{q}")).header("X-MBX-APIKEY", &bk).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(hits(), before + 2);

    // Every verify became an event in the events file (written off the request path); the
    // revocation was the last.
    let events_dir = data.join("events");
    let mut outcomes = Vec::new();
    for _ in 0..100 {
        // One file per UTC day; a run across midnight has two.
        let mut files: Vec<_> = std::fs::read_dir(&events_dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        let text: String = files.iter().map(|f| std::fs::read_to_string(f).unwrap_or_default()).collect();
        outcomes = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["outcome"].as_str().unwrap().to_owned())
            .collect();
        if outcomes.iter().any(|o| o == "REVOKED") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for expected in [
        "VALID",
        "BAD_SIGNATURE",
        "MISSING_CREDENTIALS",
        "NOT_FOUND",
        "BODY_REQUIRED",
        "SCOPE_DENIED",
        "REPLAYED",
        "REVOKED",
    ] {
        assert!(outcomes.iter().any(|o| o == expected), "{expected} not in {outcomes:?}");
    }

    // The attacks every gateway is put through (common/gateways.rs).
    attacks(&data, &u, &base, &seen, Forwards::HeadersOnly).await;
}
