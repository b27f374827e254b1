//! Detection state across restarts of `serve`: batches acknowledged with 202 survive a
//! `kill -9` (snapshot plus journal), a producer's retry after the crash is recognised as a
//! duplicate, and the decisions are those of a server that never stopped. A clean stop leaves a
//! snapshot and an empty journal; a damaged snapshot stops the start until the operator resets.

// Test helpers may unwrap and panic: a failure there is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use reqwest::blocking::Client;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};

fn post(http: &Client, url: &str, token: &str, lines: &[String]) -> (u16, Value) {
    let r = http
        .post(format!("{url}/v1/events"))
        .bearer_auth(token)
        .header("content-type", "application/x-ndjson")
        .body(lines.join("\n") + "\n")
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

/// Every decision the server keeps, as sorted JSON lines.
fn decisions(http: &Client, url: &str, token: &str) -> Vec<String> {
    let r = http.get(format!("{url}/v1/decisions?limit=1000")).bearer_auth(token).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut all: Vec<String> = r.json::<Vec<Value>>().unwrap().iter().map(|v| v.to_string()).collect();
    all.sort();
    all
}

/// Polls until the server has made `n` decisions (the engine runs behind a queue).
fn settled(http: &Client, url: &str, token: &str, n: usize) -> Vec<String> {
    for _ in 0..600 {
        let got = decisions(http, url, token);
        if got.len() >= n {
            return got;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    decisions(http, url, token)
}

fn token(data: &Path, url: &str, id: &str, role: &str) -> String {
    ok_json(data, url, &["operators", "create", id, "--role", role])["token"].as_str().unwrap().to_owned()
}

#[test]
fn a_crash_loses_nothing_acknowledged_and_a_retry_is_a_duplicate() {
    let geo = geo_dir();
    let geo_args: Vec<String> =
        geo.iter().flat_map(|g| ["--geo-dir".to_owned(), g.to_str().unwrap().to_owned()]).collect();
    let geo_args: Vec<&str> = geo_args.iter().map(String::as_str).collect();
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    let mut sim = Command::new(BIN);
    sim.args(["simulate", "--out", &p("ev.ndjson"), "--truth", &p("truth.ndjson"), "--seed", "23"]);
    sim.args(["--accounts", "150", "--hours", "8", "--sharing-rate", "0.05"]).args(&geo_args);
    assert!(sim.output().unwrap().status.success());
    // A gateway sends activity, accounts and keys: the comparison is on those.
    without_registry_records(Path::new(&p("ev.ndjson")));
    let mut replay = Command::new(BIN);
    replay.args(["replay", &p("ev.ndjson"), "--out", &p("replayed.ndjson")]).args(&geo_args);
    assert!(replay.output().unwrap().status.success());
    let expected = std::fs::read_to_string(p("replayed.ndjson")).unwrap().lines().count();
    assert!(expected > 5, "the scenario makes decisions: {expected}");
    let text = std::fs::read_to_string(p("ev.ndjson")).unwrap();
    let lines: Vec<String> =
        text.lines().enumerate().map(|(i, l)| l.replacen('{', &format!("{{\"event_id\":\"sim-{i}\","), 1)).collect();
    let batches: Vec<&[String]> = lines.chunks(2000).collect();
    assert!(batches.len() >= 6, "enough batches to cut: {}", batches.len());
    let http = Client::new();

    // The server that never stops.
    let whole_dir = dir.path().join("whole");
    let whole = serve_with(&whole_dir, &geo_args);
    let feed = token(&whole_dir, &whole.url, "feed", "gateway");
    for b in &batches {
        assert_eq!(post(&http, &whole.url, &feed, b).0, 202);
    }
    let reader = token(&whole_dir, &whole.url, "reader", "analyst");
    let uninterrupted = settled(&http, &whole.url, &reader, expected);
    assert_eq!(uninterrupted.len(), expected, "serve makes the decisions replay makes");
    drop(whole);

    // The one killed half-way, a snapshot behind it and the journal since.
    let data = dir.path().join("crash");
    let args = [&["--detection-snapshot-records", "5000"][..], &geo_args].concat();
    let mut server = serve_with(&data, &args);
    let feed = token(&data, &server.url, "feed", "gateway");
    let reader = token(&data, &server.url, "reader", "analyst");
    let cut = batches.len() / 2;
    for b in &batches[..cut] {
        let (status, reply) = post(&http, &server.url, &feed, b);
        assert_eq!(status, 202, "{reply}");
    }
    server.child.kill().unwrap(); // SIGKILL: no shutdown, no final snapshot
    server.child.wait().unwrap();
    assert!(data.join("detection/snapshot.bin").exists(), "a snapshot was taken before the crash");
    let journal_bytes: u64 = std::fs::read_dir(data.join("detection"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("journal-"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(journal_bytes > 0, "records after the snapshot are in the journal");

    let server = serve_with(&data, &args);
    // The producer never saw the last reply (say): it retries, and the server knows the batch.
    let (status, reply) = post(&http, &server.url, &feed, batches[cut - 1]);
    assert_eq!(status, 202, "{reply}");
    assert_eq!((reply["accepted"].as_u64(), reply["duplicates"].as_u64()), (Some(0), Some(2000)), "{reply}");
    for b in &batches[cut..] {
        assert_eq!(post(&http, &server.url, &feed, b).0, 202);
    }
    let restarted = settled(&http, &server.url, &reader, expected);
    assert!(
        restarted == uninterrupted,
        "{} decisions after the crash, {} without",
        restarted.len(),
        uninterrupted.len()
    );

    // A clean stop writes a snapshot that covers everything: the journal left is empty.
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let mut server = server;
    assert!(server.child.wait().unwrap().success());
    let left: Vec<(String, u64)> = std::fs::read_dir(data.join("detection"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("journal-"))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().len()))
        .collect();
    assert!(left.len() == 1 && left[0].1 == 0, "{left:?}");
    let server = serve_with(&data, &args);
    assert!(decisions(&http, &server.url, &reader) == uninterrupted, "the decisions kept survive a clean restart");
    let (_, reply) = post(&http, &server.url, &feed, batches[0]);
    assert_eq!(reply["duplicates"].as_u64(), Some(2000), "the event-id window survives too: {reply}");
    drop(server);

    // A damaged snapshot: the start is refused, naming the file and the way out.
    let snap = data.join("detection/snapshot.bin");
    let mut bytes = std::fs::read(&snap).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&snap, bytes).unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .args(&args)
        .env("KEYSENTINEL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("snapshot.bin") && err.contains("corrupt") && err.contains("--detection-reset"), "{err}");
    // The operator resets: the old state is moved aside, detection starts afresh.
    let server = serve_with(&data, &[&["--detection-reset"][..], &args].concat());
    assert!(decisions(&http, &server.url, &reader).is_empty());
    let (_, reply) = post(&http, &server.url, &feed, batches[0]);
    assert_eq!(reply["accepted"].as_u64(), Some(2000), "a fresh window: {reply}");
    let aside = std::fs::read_dir(&data)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("detection.reset-"));
    assert_eq!(aside.count(), 1, "the damaged state is kept aside for the operator");
}
