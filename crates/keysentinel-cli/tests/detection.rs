//! Detection inside `serve`: verify events flow into the engine; `POST /v1/events` takes
//! batches (idempotent by `event_id`, malformed lines reported by number); `GET /v1/decisions`
//! shows what the engine decided — the very decisions `replay` makes of the same records.

// Test helpers may unwrap and panic: a failure there is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use reqwest::blocking::Client;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::process::Command;

fn post_events(http: &Client, url: &str, token: &str, body: String) -> (u16, Value) {
    let r = http
        .post(format!("{url}/v1/events"))
        .bearer_auth(token)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

fn decisions(http: &Client, url: &str, token: &str, query: &str) -> Vec<Value> {
    let r = http.get(format!("{url}/v1/decisions?{query}")).bearer_auth(token).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json::<Vec<Value>>().unwrap()
}

/// Polls until `done` holds of the decisions (the engine runs behind a queue).
fn wait_for(http: &Client, url: &str, token: &str, query: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    for _ in 0..300 {
        let got = decisions(http, url, token, query);
        if done(&got) {
            return got;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    decisions(http, url, token, query)
}

#[test]
fn a_signed_request_from_outside_the_allowlist_is_a_decision_with_its_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data);
    let u = server.url.clone();
    let gateway = ok_json(&data, &u, &["operators", "create", "gw-1", "--role", "gateway"]);
    let gateway = gateway["token"].as_str().unwrap().to_owned();
    let analyst = ok_json(&data, &u, &["operators", "create", "ana-1", "--role", "analyst"]);
    let analyst = analyst["token"].as_str().unwrap().to_owned();
    ok_json(&data, &u, &["accounts", "create", "acct-7", "--segment", "retail", "--verification", "verified"]);
    let (key, secret) = create_key(&data, &u, "binance", "acct-7", "203.0.113.0/24");

    let http = Client::new();
    let verify = |ip: &str| {
        let body = json!({ "method": "GET", "path": "/api/v3/openOrders", "query": binance_query(&secret, "symbol=BTCUSDT"),
            "headers": { "X-MBX-APIKEY": key }, "client_ip": ip });
        let r = http.post(format!("{u}/v1/verify")).bearer_auth(&gateway).json(&body).send().unwrap();
        r.json::<Value>().unwrap()["code"].as_str().unwrap().to_owned()
    };
    assert_eq!(verify("203.0.113.9"), "VALID");
    assert_eq!(verify("198.51.100.23"), "IP_NOT_ALLOWED");

    let found = wait_for(&http, &u, &analyst, &format!("key_id={key}"), |d| !d.is_empty());
    assert_eq!(found.len(), 1, "{found:?}");
    let d = &found[0];
    assert_eq!((d["account_id"].as_str(), d["level"].as_str()), (Some("acct-7"), Some("monitor")), "{d}");
    assert_eq!(d["reasons"][0]["indicator"], "signed_outside_allowlist");
    assert!(d["reasons"][0]["evidence"].as_str().unwrap().contains("198.51.100.23"), "{d}");

    // Reading decisions needs a role that may read the inventory; sending events, one that may
    // send them.
    let r = http.get(format!("{u}/v1/decisions")).bearer_auth(&gateway).send().unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let (status, body) = post_events(&http, &u, &analyst, String::new());
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")));
    let r = http.get(format!("{u}/v1/decisions?level=urgent")).bearer_auth(&analyst).send().unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let metrics = http.get(format!("{u}/metrics")).send().unwrap().text().unwrap();
    assert!(metrics.contains(r#"keysentinel_detection_decisions_total{level="monitor"} 1"#), "{metrics}");
}

#[test]
fn posted_batches_give_the_decisions_replay_gives() {
    let geo = geo_dir();
    let geo_arg = geo.as_ref().map(|g| g.to_str().unwrap().to_owned());
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    let mut sim = Command::new(BIN);
    sim.args(["simulate", "--out", &p("ev.ndjson"), "--truth", &p("truth.ndjson"), "--seed", "21"]);
    sim.args(["--accounts", "150", "--hours", "8", "--sharing-rate", "0.05"]);
    if let Some(g) = &geo_arg {
        sim.args(["--geo-dir", g]);
    }
    assert!(sim.output().unwrap().status.success());
    let mut replay = Command::new(BIN);
    replay.args(["replay", &p("ev.ndjson"), "--out", &p("replayed.ndjson")]);
    if let Some(g) = &geo_arg {
        replay.args(["--geo-dir", g]);
    }
    assert!(replay.output().unwrap().status.success());
    let replayed: BTreeSet<(String, String, String)> = std::fs::read_to_string(p("replayed.ndjson"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["ts"].as_str().unwrap().into(),
                v["key_id"].as_str().unwrap().into(),
                v["level"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(replayed.len() > 5, "the scenario makes decisions: {}", replayed.len());

    let data = dir.path().join("data");
    let server = match &geo_arg {
        Some(g) => serve_with(&data, &["--geo-dir", g]),
        None => serve(&data),
    };
    let u = server.url.clone();
    let gateway = ok_json(&data, &u, &["operators", "create", "feed-1", "--role", "gateway"]);
    let gateway = gateway["token"].as_str().unwrap().to_owned();
    let http = Client::new();

    // Each record with an event id, as a producer would send them; batches of 2 000 lines.
    let text = std::fs::read_to_string(p("ev.ndjson")).unwrap();
    let lines: Vec<String> =
        text.lines().enumerate().map(|(i, l)| l.replacen('{', &format!("{{\"event_id\":\"sim-{i}\","), 1)).collect();
    let mut accepted = 0;
    for (n, chunk) in lines.chunks(2000).enumerate() {
        let (status, reply) = post_events(&http, &u, &gateway, chunk.join("\n") + "\n");
        assert_eq!(status, 202, "{reply}");
        accepted += reply["accepted"].as_u64().unwrap();
        if n == 0 {
            // A retry of the first batch (the reply was lost, say) is recognised, not re-ingested.
            let (status, again) = post_events(&http, &u, &gateway, chunk.join("\n"));
            assert_eq!((status, again["accepted"].as_u64(), again["duplicates"].as_u64()), (202, Some(0), Some(2000)));
        }
    }
    assert_eq!(accepted, lines.len() as u64);

    let analyst = ok_json(&data, &u, &["operators", "create", "ana-2", "--role", "analyst"]);
    let analyst = analyst["token"].as_str().unwrap().to_owned();
    let served = wait_for(&http, &u, &analyst, "limit=1000", |d| d.len() >= replayed.len());
    let served: BTreeSet<(String, String, String)> = served
        .iter()
        .map(|v| {
            (
                v["ts"].as_str().unwrap().into(),
                v["key_id"].as_str().unwrap().into(),
                v["level"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(served, replayed, "serve and replay run the same engine on the same records");

    // Bad lines are reported by number and skipped; a batch of nothing valid is refused.
    let (status, reply) = post_events(
        &http,
        &u,
        &gateway,
        format!("{}\nnot json\n{{\"type\":\"order\"}}\n", lines[0].replace("sim-0", "new-0")),
    );
    assert_eq!(status, 202, "{reply}");
    assert_eq!((reply["accepted"].as_u64(), reply["rejected"].as_u64()), (Some(1), Some(2)));
    assert_eq!(reply["errors"][0]["line"], 2);
    assert_eq!(reply["errors"][1]["line"], 3);
    assert!(reply["errors"][1]["error"].as_str().unwrap().contains("missing field"), "{reply}");
    let (status, reply) = post_events(&http, &u, &gateway, "{\"type\":\"teleport\"}\n".into());
    assert_eq!((status, reply["error"]["code"].as_str()), (400, Some("invalid_events")));
    let r = http.post(format!("{u}/v1/events")).bearer_auth(&gateway).json(&json!({})).send().unwrap();
    assert_eq!(r.status().as_u16(), 415);
}
