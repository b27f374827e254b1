//! What every real gateway in front of keysentinel is put through: an upstream that records
//! what reaches it, a client on its own loopback address (127.0.0.2, so that the gateway's
//! address 127.0.0.1 — the trusted proxy — is never the client's), and the attacks of issue 12:
//! a client naming an allowlisted address in X-Real-IP / X-Forwarded-For, a Coinone body
//! substituted under a payload signed for something else, and a refusal that would name the
//! key's owner.

use super::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha512;
use std::net::IpAddr;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};

/// The client's own address: loopback, but not the gateway's.
pub const CLIENT_IP: &str = "127.0.0.2";

/// A gateway binary from the project's venv (scripts/test installs them), or None — which CI
/// does not allow.
pub fn venv_bin(name: &str) -> Option<std::path::PathBuf> {
    let venv = std::env::var_os("KEYSENTINEL_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/venv"));
    let bin = venv.join("bin").join(name);
    if bin.exists() {
        return Some(bin);
    }
    assert!(std::env::var("CI").is_err(), "{name} is required in CI: scripts/test installs it into .cache/venv");
    eprintln!("skipped: {name} not installed in {} (scripts/test installs it)", venv.display());
    None
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A gateway process, stopped with SIGTERM (so its workers go with it) when dropped.
pub struct Gateway(pub Child);
impl Gateway {
    /// Starts a gateway with its output discarded (its config was checked before), stopped on drop.
    pub fn start(cmd: &mut Command) -> Gateway {
        use std::process::Stdio;
        Gateway(cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap())
    }
}
impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Hit {
    pub path: String,
    pub key: String,
    pub account: String,
    pub token: String,
    pub body: Vec<u8>,
}

pub type Seen = Arc<Mutex<Vec<Hit>>>;

/// The exchange's backend: answers "upstream reached" and records every request.
pub async fn upstream() -> (u16, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let log = log.clone();
        async move {
            // In a block: a borrow of the request (whose body is not Sync) must not live across
            // the await below.
            let (path, key, account, token) = {
                let h = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                (
                    req.uri().path().to_owned(),
                    h("x-keysentinel-key"),
                    h("x-keysentinel-account"),
                    h("x-keysentinel-token"),
                )
            };
            let body = axum::body::to_bytes(req.into_body(), 1 << 20).await.unwrap_or_default().to_vec();
            log.lock().unwrap().push(Hit { path, key, account, token, body });
            "upstream reached"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, seen)
}

/// An HTTP client connecting from [`CLIENT_IP`].
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().local_address(CLIENT_IP.parse::<IpAddr>().unwrap()).build().unwrap()
}

/// Waits until the gateway answers `/` with something other than a connection error or 404
/// (Traefik answers 404 until its routes are loaded): keysentinel's 401 for a request with no
/// credentials.
pub async fn wait_ready(http: &reqwest::Client, base: &str) {
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{base}/")).send().await {
            if r.status() != 404 && r.status() != 502 && r.status() != 503 {
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the gateway at {base} never came up");
}

/// keysentinel with the gateway (127.0.0.1) as its one trusted proxy.
pub fn serve_behind_gateway(data: &Path, extra: &[&str]) -> Server {
    let mut args = vec!["--trusted-proxy", "127.0.0.1"];
    args.extend_from_slice(extra);
    serve_with(data, &args)
}

/// Coinone v2.1: a payload for an order of `qty`, its signature, and the body that goes with it.
pub fn coinone(access_key: &str, secret: &str, nonce: &str, qty: &str) -> (String, String) {
    let body = json!({ "access_token": access_key, "nonce": nonce, "quote_currency": "KRW", "target_currency": "BTC",
        "side": "BUY", "price": "100000000", "qty": qty, "post_only": false })
    .to_string();
    let payload = STANDARD.encode(&body);
    let mut m = <Hmac<Sha512> as Mac>::new_from_slice(secret.to_ascii_uppercase().as_bytes()).unwrap();
    m.update(payload.as_bytes());
    (payload, hex::encode(m.finalize().into_bytes()))
}

/// Whether the gateway shows keysentinel the body (Envoy) or not (nginx, Caddy, Traefik).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Forwards {
    Body,
    HeadersOnly,
}

fn code(resp: &reqwest::Response) -> String {
    resp.headers().get("x-keysentinel-code").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
}

fn names_the_owner(resp: &reqwest::Response) -> Vec<String> {
    ["x-keysentinel-account", "x-keysentinel-scopes", "x-keysentinel-key"]
        .iter()
        .filter(|h| resp.headers().contains_key(**h))
        .map(|h| (*h).to_owned())
        .collect()
}

/// The attacks, through the gateway at `base`, against keysentinel at `url` (data in `data`).
pub async fn attacks(data: &Path, url: &str, base: &str, seen: &Seen, forwards: Forwards) {
    ok_json(data, url, &["accounts", "create", "acct-attack", "--segment", "retail", "--verification", "verified"]);
    let (near, near_secret) = create_key(data, url, "binance", "acct-attack", &format!("{CLIENT_IP}/32"));
    let (far, far_secret) = create_key(data, url, "binance", "acct-attack", "198.51.100.0/24");
    let (ck, csecret) = create_key(data, url, "coinone", "acct-attack", &format!("{CLIENT_IP}/32"));
    let http = client();
    let hits = || seen.lock().unwrap().len();

    // The real peer is allowlisted: through, and the upstream learns the key's owner from
    // keysentinel, not from the client's forged header (nor the gateway's token).
    let before = hits();
    let q = binance_query(&near_secret, "symbol=BTCUSDT");
    let resp = http
        .get(format!("{base}/api/v3/openOrders?{q}"))
        .header("X-MBX-APIKEY", &near)
        .header("X-Keysentinel-Account", "someone-else")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "allowlisted peer: {:?}", resp.headers());
    let last = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!((last.key.as_str(), last.account.as_str()), (near.as_str(), "acct-attack"), "{last:?}");
    assert_eq!(last.token, "", "the gateway's token never reaches the upstream");
    assert_eq!(hits(), before + 1);

    // Spoofed client address: the key allows 198.51.100.0/24, the client is 127.0.0.2 and says
    // it is 198.51.100.7 in every header a client can send.
    for (header, value) in [
        ("X-Real-IP", "198.51.100.7"),
        ("X-Forwarded-For", "198.51.100.7"),
        ("X-Forwarded-For", "198.51.100.7, 198.51.100.8"),
    ] {
        let q = binance_query(&far_secret, "symbol=BTCUSDT");
        let resp = http
            .get(format!("{base}/api/v3/openOrders?{q}"))
            .header("X-MBX-APIKEY", &far)
            .header(header, value)
            .header("X-Real-IP", "198.51.100.7")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "spoofed {header}: {value}");
        assert_eq!(code(&resp), "IP_NOT_ALLOWED", "spoofed {header}: {value}");
        assert_eq!(names_the_owner(&resp), Vec::<String>::new(), "a refusal names nobody");
    }
    assert_eq!(hits(), before + 1, "no spoofed request reached the upstream");

    // A wrong secret on a real key: refused, and the refusal does not say whose key it is.
    let q = binance_query("not-the-secret-at-all-0000000000000", "symbol=BTCUSDT");
    let resp = http.get(format!("{base}/api/v3/openOrders?{q}")).header("X-MBX-APIKEY", &near).send().await.unwrap();
    assert_eq!((resp.status().as_u16(), code(&resp)), (401, "BAD_SIGNATURE".to_owned()));
    assert_eq!(names_the_owner(&resp), Vec::<String>::new(), "a wrong secret learns no account or scopes");

    // Substituted body: signed for 0.0001 BTC, sent with 5.
    let (payload, signature) = coinone(&ck, &csecret, "3c1f6a52-6f0e-4c36-9d0b-0a9b8d3e2f01", "0.0001");
    let (bigger, _) = coinone(&ck, &csecret, "3c1f6a52-6f0e-4c36-9d0b-0a9b8d3e2f01", "5");
    let resp = http
        .post(format!("{base}/v2.1/order/limit"))
        .header("X-COINONE-PAYLOAD", &payload)
        .header("X-COINONE-SIGNATURE", &signature)
        .header("Content-Type", "application/json")
        .body(bigger)
        .send()
        .await
        .unwrap();
    let expected = match forwards {
        Forwards::HeadersOnly => (403, "BODY_REQUIRED"),
        Forwards::Body => (401, "BAD_SIGNATURE"),
    };
    assert_eq!((resp.status().as_u16(), code(&resp).as_str()), expected, "substituted Coinone body");
    assert_eq!(names_the_owner(&resp), Vec::<String>::new());
    assert_eq!(hits(), before + 1, "the substituted order never reached the upstream");

    if forwards == Forwards::Body {
        // Envoy shows keysentinel the body: the honest order goes through, exactly as signed.
        let resp = http
            .post(format!("{base}/v2.1/order/limit"))
            .header("X-COINONE-PAYLOAD", &payload)
            .header("X-COINONE-SIGNATURE", &signature)
            .body(payload.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{:?}", resp.headers());
        assert_eq!(seen.lock().unwrap().last().unwrap().body, payload.as_bytes());
    }
}
