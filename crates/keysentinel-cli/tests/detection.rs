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
use std::path::Path;
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
    // A gateway sends activity, accounts and keys: the comparison is on those.
    without_registry_records(Path::new(&p("ev.ndjson")));
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

/// The owner re-verified: support files the request, a second analyst reviews it, two
/// approvers approve it; a new key is issued — to the owner, never an operator: the approver's
/// answer holds no secret, the owner's one-time code comes through the outbox, and the
/// exchange's app (the customer channel) claims the key with it, once. Refused: the filer
/// reviewing it, an analyst or the filer approving it, one approver approving twice, anyone but
/// the customer channel claiming, a wrong code, a second claim.
fn reinstate(
    http: &Client,
    u: &str,
    case_id: &str,
    filer: &str,
    token: &dyn Fn(&str, &str) -> String,
    verify_key: &dyn Fn(&str, &str) -> String,
    delivered_code: &dyn Fn(&str) -> String,
) {
    let post = |who: &str, path: &str, body: Value| {
        let r = http
            .post(format!("{u}/v1/cases/{case_id}/reinstatement{path}"))
            .bearer_auth(who)
            .json(&body)
            .send()
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().unwrap())
    };
    let request = json!({ "explanation": "my nephew used it from his laptop abroad; he no longer has it",
        "evidence": ["ticket #4711: identity re-verified by video call"], "scopes": ["read", "trade", "withdraw"],
        "ip_allowlist": ["203.0.113.0/24"] });
    let (status, body) = post(filer, "", request.clone());
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("scopes")),
        "withdraw is not among the grants: {body}"
    );
    let mut request = request;
    request["scopes"] = json!(["read", "trade"]);
    let (status, body) = post(filer, "", request);
    assert_eq!((status, body["reinstatement"]["status"].as_str()), (200, Some("requested")), "{body}");
    let review = json!({ "approve": true, "note": "explanation consistent with the evidence" });
    assert_eq!(post(filer, "/review", review.clone()).0, 409, "the filer cannot review");
    let reviewer = token("ana-2", "analyst");
    let (status, body) = post(&reviewer, "/review", review);
    assert_eq!((status, body["reinstatement"]["status"].as_str()), (200, Some("reviewed")), "{body}");
    let approve = json!({ "note": "approved" });
    assert_eq!(post(filer, "/approve", approve.clone()).0, 403, "the filer (an analyst) cannot approve");
    let (a1, a2) = (token("apr-1", "approver"), token("apr-2", "approver"));
    let (status, body) = post(&a1, "/approve", approve.clone());
    assert_eq!((status, body["issued"].is_null()), (200, true), "one approval issues nothing: {body}");
    let (status, body) = post(&a1, "/approve", approve.clone());
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("invalid_case_state")), "twice by one approver");
    let r = http
        .post(format!("{u}/v1/cases/{case_id}/reinstatement/approve"))
        .bearer_auth(&a2)
        .json(&approve)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let raw = r.text().unwrap();
    assert_eq!(status, 200, "{raw}");
    let body: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        (body["case"]["status"].as_str(), body["case"]["resolution"].as_str()),
        (Some("closed"), Some("owner_reverified"))
    );
    let new_key = body["issued"]["key"]["access_key"].as_str().unwrap().to_owned();
    assert_eq!(body["issued"]["key"]["ip_allowlist"], json!(["203.0.113.0/24"]));
    assert_eq!(body["issued"]["key"]["status"], "pending", "held for its owner: {raw}");
    assert!(body["issued"]["secret"].is_null(), "{raw}");
    assert!(!raw.contains("kss_"), "no secret anywhere in the approver's answer: {raw}");

    // The owner re-verified: the account says so, and when.
    let account = body["case"]["account_id"].as_str().unwrap().to_owned();
    let acct: Value = http.get(format!("{u}/v1/accounts/{account}")).bearer_auth(filer).send().unwrap().json().unwrap();
    assert_eq!((acct["verification"].as_str(), acct["verified_at"].is_string()), (Some("verified"), true), "{acct}");

    // The owner's code reaches them through the outbox; the exchange's app claims the key with it.
    let code = delivered_code(&new_key);
    let channel = token("app-1", "customer_channel");
    let claim = |who: &str, code: &str| {
        let r = http
            .post(format!("{u}/v1/keys/{new_key}/claim"))
            .bearer_auth(who)
            .json(&json!({ "code": code }))
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    for operator in [filer, a2.as_str()] {
        assert_eq!(claim(operator, &code).0, 403, "only the customer channel claims keys");
    }
    // The code sent as a number is refused without repeating it (an app logging error bodies
    // would keep a live code), and is no try.
    let as_number: u64 = code.parse().unwrap();
    let r = http
        .post(format!("{u}/v1/keys/{new_key}/claim"))
        .bearer_auth(&channel)
        .json(&json!({ "code": as_number }))
        .send()
        .unwrap();
    let (status, refused) = (r.status().as_u16(), r.text().unwrap());
    assert_eq!(status, 400, "{refused}");
    assert!(!refused.contains(&as_number.to_string()), "the code is not echoed: {refused}");
    let wrong = if code == "00000000" { "11111111" } else { "00000000" };
    // Each wrong code counts, kept across calls (the fifth locks the claim).
    for left in ["4 attempts left", "3 attempts left"] {
        let (status, refused) = claim(&channel, wrong);
        assert_eq!(status, 403, "{refused}");
        assert!(refused.contains(left), "{refused}");
    }
    let (status, claimed) = claim(&channel, &code);
    assert_eq!(status, 200, "{claimed}");
    let claimed: Value = serde_json::from_str(&claimed).unwrap();
    let new_secret = claimed["secret"].as_str().unwrap().to_owned();
    assert_eq!(claimed["key"]["status"], "active");
    assert_eq!(verify_key(&new_key, &new_secret), "VALID", "the new key works");
    let (status, again) = claim(&channel, &code);
    assert_eq!(status, 409, "a claim is redeemed once: {again}");
    assert!(again.contains("invalid_claim_state"), "{again}");

    // Audited, without the secret or the code.
    let log = http.get(format!("{u}/v1/audit/entries?limit=1000")).bearer_auth(filer).send().unwrap().text().unwrap();
    assert!(!log.contains(&new_secret) && !log.contains(&format!("\"{code}\"")), "no secret or code in the log");
    let log: Vec<Value> = serde_json::from_str(&log).unwrap();
    let on_key = |action: &str| log.iter().filter(|e| e["action"] == action && e["target"] == new_key.as_str()).count();
    assert_eq!((on_key("key.claim.open"), on_key("key.claim.fail"), on_key("key.claim.redeem")), (1, 2, 1));
    assert!(log.iter().any(|e| e["action"] == "account.reverify" && e["target"] == account.as_str()));
    let redeemed = log.iter().find(|e| e["action"] == "key.claim.redeem").unwrap();
    assert_eq!(redeemed["actor"]["id"], "app-1");
}

/// The owner disputes the decision; the answer is an evidence pack that verifies offline against
/// the log's pinned key, and fails after a one-byte change.
fn dispute_with_an_evidence_pack(
    http: &Client,
    u: &str,
    case_id: &str,
    auditor: &str,
    analyst: &str,
    dir: &std::path::Path,
) {
    let hold = json!({ "command": "hold", "text": "police request 2026-117", "reason": "preserve the key's logs" });
    let r = http.post(format!("{u}/v1/cases/{case_id}/commands")).bearer_auth(analyst).json(&hold).send().unwrap();
    assert_eq!(r.status().as_u16(), 200, "a closed case still takes a hold");
    let dispute =
        json!({ "command": "dispute", "text": "I never shared my key", "reason": "owner's letter of 2026-11-28" });
    let r = http.post(format!("{u}/v1/cases/{case_id}/commands")).bearer_auth(analyst).json(&dispute).send().unwrap();
    assert_eq!(r.status().as_u16(), 200, "a closed case still takes a dispute");
    let export = |format: &str| {
        http.post(format!("{u}/v1/cases/{case_id}/evidence-pack?format={format}"))
            .bearer_auth(auditor)
            .json(&json!({ "reason": "answering the owner's dispute" }))
            .send()
            .unwrap()
    };
    let pack = export("json");
    assert_eq!(pack.status().as_u16(), 200);
    let pack: Value = pack.json().unwrap();
    let actions: Vec<String> = pack["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            serde_json::from_str::<Value>(p["entry"].as_str().unwrap()).unwrap()["action"].as_str().unwrap().to_owned()
        })
        .collect();
    assert!(!actions.iter().any(|a| a.starts_with("report.")), "the owner's pack never shows reporting: {actions:?}");
    assert!(!actions.iter().any(|a| a.contains("hold")), "nor a legal hold: {actions:?}");
    assert!(!pack["body"].to_string().contains("police request"), "{}", pack["body"]);
    assert_eq!(pack["body"]["parties"][0]["party_id"], "rep-1", "the account's parties are in the pack");
    for want in [
        "party.create",
        "key.create",
        "case.open",
        "case.answer",
        "key.revoke",
        "notice.delivered",
        "reinstatement.issue",
        "case.dispute",
    ] {
        assert!(actions.iter().any(|a| a == want), "{want} missing from {actions:?}");
    }
    let checkpoint: Value =
        http.get(format!("{u}/v1/audit/checkpoint")).bearer_auth(auditor).send().unwrap().json().unwrap();
    let key = checkpoint["verifier_key"].as_str().unwrap();
    let file = dir.join("pack.json");
    let text = serde_json::to_string_pretty(&pack).unwrap();
    std::fs::write(&file, &text).unwrap();
    let check = |f: &std::path::Path| {
        Command::new(BIN).args(["audit", "verify-pack"]).arg(f).args(["--log-key", key]).output().unwrap()
    };
    let ok = check(&file);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("evidence pack OK"));
    // One byte changed in the body: the owner's explanation.
    let tampered = text.replacen("my nephew", "my nephev", 1);
    assert_ne!(tampered, text);
    std::fs::write(&file, tampered).unwrap();
    let bad = check(&file);
    assert_eq!(bad.status.code(), Some(8), "{}", String::from_utf8_lossy(&bad.stdout));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("digest"), "{}", String::from_utf8_lossy(&bad.stderr));
    // One byte changed in an audit entry: its proof fails.
    let tampered = text.replacen("key.revoke", "key.revoka", 1);
    std::fs::write(&file, tampered).unwrap();
    assert_eq!(check(&file).status.code(), Some(8));
    // The pack's statement of its own log key changed, with the real key pinned: refused.
    let mut forged = pack.clone();
    forged["log_verifier"] = json!("keysentinel/audit/other+00000000+AQ==");
    std::fs::write(&file, serde_json::to_string_pretty(&forged).unwrap()).unwrap();
    let bad = check(&file);
    assert_eq!(bad.status.code(), Some(8), "{}", String::from_utf8_lossy(&bad.stderr));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("log key other than the pinned one"));
    // Any one byte changed is a failed verification (8), never a usage or internal error.
    for at in [0, 1, text.len() / 5, text.len() / 3, text.len() / 2, text.len() * 4 / 5, text.len() - 2] {
        let mut bytes = text.clone().into_bytes();
        bytes[at] ^= 0x01;
        std::fs::write(&file, &bytes).unwrap();
        let bad = check(&file);
        assert_eq!(bad.status.code(), Some(8), "byte {at}: {}", String::from_utf8_lossy(&bad.stderr));
    }
    // --json is honoured, both ways.
    let json_check = |f: &std::path::Path| {
        let out = Command::new(BIN)
            .args(["audit", "verify-pack", "--json"])
            .arg(f)
            .args(["--log-key", key])
            .output()
            .unwrap();
        (out.status.code(), serde_json::from_slice::<Value>(&out.stdout).unwrap())
    };
    let (code, report) = json_check(&file);
    assert_eq!((code, report["ok"].as_bool()), (Some(8), Some(false)), "{report}");
    std::fs::write(&file, &text).unwrap();
    let (code, report) = json_check(&file);
    assert_eq!(
        (code, report["ok"].as_bool(), report["pinned_key"].as_bool()),
        (Some(0), Some(true), Some(true)),
        "{report}"
    );
    let html = export("html");
    assert!(html.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = html.text().unwrap();
    assert!(
        html.contains(&format!("Evidence pack for case {case_id}")) && html.contains("What triggered the suspicion")
    );
    assert!(html.contains("bad_signature_burst") && html.contains("How access can be restored"));
}

const NOTIFY_SECRET: &str = "test-notify-secret-0123456789abcdef";

type Received = std::sync::Arc<std::sync::Mutex<Vec<(std::collections::HashMap<String, String>, String)>>>;

/// A webhook receiver on a free port: answers the first request 503 and the rest 200, and keeps
/// every request's headers (lower-case names) and body.
/// The compliance officer assesses the matter, decides to report it, exports the draft and
/// records the filing; an analyst can neither see nor touch any of it.
fn report_the_matter(http: &Client, u: &str, case_id: &str, mlro: &str, analyst: &str) {
    let post = |path: &str, who: &str, body: Value| {
        let r = http.post(format!("{u}/v1/cases/{case_id}/{path}")).bearer_auth(who).json(&body).send().unwrap();
        let status = r.status().as_u16();
        (status, r.text().unwrap())
    };
    let assess = json!({ "reason": "case reached forced expiry; borrowed-name use suspected" });
    assert_eq!(post("report", analyst, assess.clone()).0, 403, "analysts do not assess reports");
    let (status, body) = post("report", mlro, assess.clone());
    assert_eq!(status, 200, "{body}");
    let a: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((a["status"].as_str(), a["jurisdiction"].as_str()), (Some("assessing"), Some("KR")), "{a}");
    assert!(a["deadline"].is_null(), "KoFIU's clock starts at the determination: {a}");
    assert_eq!(post("report", mlro, assess).0, 409, "one assessment per case");
    let r = http.get(format!("{u}/v1/cases/{case_id}/report")).bearer_auth(analyst).send().unwrap();
    assert_eq!(r.status().as_u16(), 403, "analysts do not read reports");
    let filed = json!({ "step": "filed", "reference": "KoFIU-2026-0001", "reason": "filed on the FIU's system" });
    assert_eq!(post("report/steps", mlro, filed.clone()).0, 409, "nothing to file before the decision");
    let decide = json!({ "step": "decide", "file": true, "reasons": "key lent to a third party abroad",
        "reason": "reporting officer's determination" });
    let (status, body) = post("report/steps", mlro, decide);
    assert_eq!(status, 200, "{body}");
    let a: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(a["status"], "to_file");
    assert!(a["deadline"].is_string(), "{a}");

    let (status, body) = post("report/draft", mlro, json!({ "reason": "preparing the STR" }));
    assert_eq!(status, 200, "{body}");
    let draft: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(draft["subject"]["account_id"], "acct-3");
    assert_eq!(draft["reporting_entity"]["internal_reference"], case_id);
    let ips: Vec<&str> =
        draft["unidentified_parties"]["ip_addresses"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(ips.contains(&"198.51.100.23"), "the address that probed the key: {draft}");
    assert!(draft["grounds"].as_str().unwrap().contains("wrong signatures"), "{draft}");
    assert!(draft["to_complete"].as_array().unwrap().len() >= 4, "{draft}");
    let r = http
        .post(format!("{u}/v1/cases/{case_id}/report/draft?format=text"))
        .bearer_auth(mlro)
        .json(&json!({ "reason": "the filer's copy" }))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let text = r.text().unwrap();
    assert!(text.contains("KoFIU") && text.contains(case_id) && text.contains("[to complete]"), "{text}");

    let (status, body) = post("report/steps", mlro, filed);
    assert_eq!(status, 200, "{body}");
    let a: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((a["status"].as_str(), a["filing"]["late"].as_bool()), (Some("filed"), Some(false)), "{a}");
    let queue: Vec<Value> =
        http.get(format!("{u}/v1/reports?open=false")).bearer_auth(mlro).send().unwrap().json().unwrap();
    assert!(queue.iter().any(|r| r["case_id"] == case_id), "{queue:?}");
    let audit: Vec<Value> =
        http.get(format!("{u}/v1/audit/entries?limit=1000")).bearer_auth(mlro).send().unwrap().json().unwrap();
    let steps: Vec<&str> = audit
        .iter()
        .filter(|e| e["target"] == format!("report:{case_id}").as_str())
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["report.assess", "report.decide", "report.export", "report.export", "report.filed"]);
    // Analysts read the audit log, but not its reporting entries, nor their proofs.
    let seen: Vec<Value> =
        http.get(format!("{u}/v1/audit/entries?limit=1000")).bearer_auth(analyst).send().unwrap().json().unwrap();
    assert!(!seen.is_empty() && !seen.iter().any(|e| e["target"].as_str().unwrap().starts_with("report:")));
    let seq = audit.iter().find(|e| e["action"] == "report.filed").unwrap()["seq"].as_u64().unwrap();
    let proof = |who: &str| http.get(format!("{u}/v1/audit/entries/{seq}/proof")).bearer_auth(who).send().unwrap();
    assert_eq!(proof(analyst).status().as_u16(), 404);
    assert_eq!(proof(mlro).status().as_u16(), 200);
}

fn webhook_receiver() -> (String, Received) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/notices", listener.local_addr().unwrap());
    let received: Received = Default::default();
    let kept = received.clone();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = std::collections::HashMap::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                let Some((k, v)) = line.trim_end().split_once(':') else { break };
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
            let len: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let status = if n == 0 { "503 Service Unavailable" } else { "200 OK" };
            kept.lock().unwrap().push((headers, String::from_utf8(body).unwrap()));
            let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    (url, received)
}

/// Polls `f` for up to 30 s.
fn wait_until<T>(f: impl Fn() -> Option<T>) -> T {
    for _ in 0..300 {
        if let Some(v) = f() {
            return v;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("timed out")
}

fn cases(http: &Client, url: &str, token: &str, key: &str) -> Vec<Value> {
    let r = http.get(format!("{url}/v1/cases?key_id={key}")).bearer_auth(token).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json().unwrap()
}

/// Polls until the key's case reaches `stage`; returns it.
fn case_at(http: &Client, url: &str, token: &str, key: &str, stage: &str) -> Value {
    for _ in 0..300 {
        if let Some(c) = cases(http, url, token, key).into_iter().find(|c| c["stage"] == stage) {
            return c;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("no case at {stage} for {key}: {:?}", cases(http, url, token, key));
}

/// A key used by someone else, step by step: signed from outside its allowlist and probed with
/// bad signatures (warn: a case opens, the owner is to be told), then a complaint (reverify: the
/// key is suspended), then vendor intelligence (invalidate: the key is revoked). Verify refuses
/// the key at each stopping stage, and the case holds the evidence. With the policy in shadow
/// mode the same detections record what would have been done and the key keeps working.
fn staged_response(shadow: bool, segment: &str) {
    let institutional = segment != "retail";
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut extra = vec![];
    let policy_path = dir.path().join("response.toml");
    // Retail enforcing runs the built-in policy, whose answer window holds a re-verification
    // on evidence other than compromise; the other runs go through every stage at once.
    if shadow || institutional {
        let mode = if shadow { "shadow" } else { "enforce" };
        let text = format!("version = \"test-{mode}-1\"\nmode = \"{mode}\"\n")
            + &["retail", "institutional"]
                .iter()
                .map(|class| {
                    let automatic = *class == "retail";
                    format!(
                        "[{class}]\nmonitor = {{ action = \"monitor\", automatic = true, sla_hours = 168 }}\n\
                         warn = {{ action = \"notify\", automatic = true, sla_hours = 72 }}\n\
                         reverify = {{ action = \"suspend\", automatic = {automatic}, sla_hours = 24 }}\n\
                         invalidate = {{ action = \"revoke\", automatic = {automatic}, sla_hours = 4 }}\n\
                         answer_window_hours = 0\n"
                    )
                })
                .collect::<String>();
        std::fs::write(&policy_path, text).unwrap();
        extra = vec!["--response-policy", policy_path.to_str().unwrap()];
    }
    // The response to each stage is what is tested here, on a detection set for an exchange
    // that expects more sharing than the built-in prior (1 % of keys, not 0.3 %): a fresh
    // engine then warns on a key signed correctly from outside its allowlist and probed with
    // bad signatures (at the built-in prior, two facts of one kind on a cold engine are a key
    // to watch).
    let detect_path = dir.path().join("detect.toml");
    std::fs::write(&detect_path, "prior_sharing = 0.01\n").unwrap();
    extra.extend(["--detect-config", detect_path.to_str().unwrap()]);
    // The exchange's notification service: it fails the first delivery, then takes them all.
    let (hook_url, received) = webhook_receiver();
    extra.extend(["--notify-webhook", hook_url.as_str()]);
    let second_admin = init_two_admins(&data);
    let server = serve_with_env(&data, &extra, &[("KEYSENTINEL_NOTIFY_SECRET", NOTIFY_SECRET)]);
    let u = server.url.clone();
    let token = |name: &str, role: &str| operator_token(&data, &u, &second_admin, name, role);
    let (gateway, analyst) = (token("gw-1", "gateway"), token("ana-1", "analyst"));
    ok_json(&data, &u, &["accounts", "create", "acct-3", "--segment", segment, "--verification", "verified"]);
    let (key, secret) = create_key(&data, &u, "binance", "acct-3", "203.0.113.0/24");
    let http = Client::new();
    let verify = |ip: &str, secret: &str| {
        let body = json!({ "method": "GET", "path": "/api/v3/openOrders", "query": binance_query(secret, "symbol=BTCUSDT"),
            "headers": { "X-MBX-APIKEY": key }, "client_ip": ip });
        let r = http.post(format!("{u}/v1/verify")).bearer_auth(&gateway).json(&body).send().unwrap();
        r.json::<Value>().unwrap()["code"].as_str().unwrap().to_owned()
    };
    let post = |line: Value| {
        let (status, reply) = post_events(&http, &u, &gateway, line.to_string());
        assert_eq!((status, reply["accepted"].as_u64()), (202, Some(1)), "{reply}");
    };

    assert_eq!(verify("203.0.113.9", &secret), "VALID");
    assert_eq!(verify("198.51.100.23", &secret), "IP_NOT_ALLOWED");
    for _ in 0..10 {
        assert_eq!(verify("198.51.100.23", "not-the-secret"), "BAD_SIGNATURE");
    }
    let case = case_at(&http, &u, &analyst, &key, "warn");
    assert_eq!((case["status"].as_str(), case["account_id"].as_str()), (Some("open"), Some("acct-3")), "{case}");
    assert_eq!(case["history"][0]["what"], "opened");
    let indicators: Vec<&str> = case["suspicions"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["indicator"].as_str().unwrap())
        .collect();
    assert!(indicators.contains(&"bad_signature_burst") && indicators.contains(&"signed_outside_allowlist"), "{case}");
    assert!(case["suspicions"][0]["baseline"]["requests"].as_u64() >= Some(1), "the key's baseline: {case}");
    assert_eq!(verify("203.0.113.9", &secret), "VALID", "a warning does not stop the key");

    post(json!({ "type": "complaint", "ts": rfc3339(now_ms()), "account_id": "acct-3",
        "text": "I lent my API key to a friend abroad and now someone else trades on it" }));
    let held = !shadow && !institutional;
    if held {
        // A complaint is not compromise: the built-in policy holds the re-verification at
        // warn for 24 hours so that the owner can answer the notice.
        let case = wait_until(|| {
            let c = cases(&http, &u, &analyst, &key).into_iter().next()?;
            c["held"].is_object().then_some(c)
        });
        assert_eq!(
            (case["stage"].as_str(), case["held"]["stage"].as_str()),
            (Some("warn"), Some("reverify")),
            "{case}"
        );
        assert_eq!(verify("203.0.113.9", &secret), "VALID", "held: the owner may answer first");
        let case_id = case["case_id"].as_str().unwrap();
        let answer = |who: &str, body: Value| {
            let r = http.post(format!("{u}/v1/cases/{case_id}/answer")).bearer_auth(who).json(&body).send().unwrap();
            (r.status().as_u16(), r.json::<Value>().unwrap())
        };
        let text = "it is me: my laptop and my phone, travelling in Japan until the 12th";
        let body = json!({ "text": text, "channel": "app", "confirms": false });
        assert_eq!(answer(&gateway, body.clone()).0, 403, "a gateway files no answers");
        let (status, reply) = answer(&analyst, json!({ "text": " ", "channel": "app", "confirms": false }));
        assert_eq!((status, reply["error"]["field"].as_str()), (400, Some("text")), "{reply}");
        let (status, reply) = answer(&analyst, json!({ "text": text, "channel": "pigeon", "confirms": false }));
        assert_eq!(status, 400, "{reply}");
        let (status, reply) = answer(&analyst, body);
        assert_eq!((status, reply["answers"][0]["text"].as_str()), (200, Some(text)), "{reply}");
        assert_eq!(reply["answers"][0]["channel"], "app");
        assert!(reply["history"].as_array().unwrap().iter().any(|h| h["what"] == "owner_answered"), "{reply}");
    } else if !institutional {
        let case = case_at(&http, &u, &analyst, &key, "reverify");
        assert_eq!(verify("203.0.113.9", &secret), "VALID", "{case}");
    }
    if !institutional {
        // Intelligence naming the key: an unambiguous compromise, never held.
        post(json!({ "type": "vendor_intel", "ts": rfc3339(now_ms()), "key_id": key,
            "text": "key offered for rent on a copy-trading channel" }));
    }
    // A mandate's key stops at reverify here, where a person takes it on.
    let last = if institutional { "reverify" } else { "invalidate" };
    let case = case_at(&http, &u, &analyst, &key, last);
    let want = if shadow || institutional { "VALID" } else { "REVOKED" };
    assert_eq!(verify("203.0.113.9", &secret), want, "{case}");
    let detections = if institutional { 2 } else { 3 };
    assert_eq!(case["suspicions"].as_array().unwrap().len(), detections, "each stage's detection is kept as evidence");
    assert_eq!(case["enforced"].as_bool(), Some(!shadow));
    let whats: Vec<&str> = case["history"].as_array().unwrap().iter().map(|h| h["what"].as_str().unwrap()).collect();
    let case_id = case["case_id"].as_str().unwrap().to_owned();
    if institutional {
        // A mandate's key is stopped by a person: the suspension waits for an analyst.
        assert_eq!(
            (case["status"].as_str(), case["pending_action"].as_str()),
            (Some("awaiting_decision"), Some("suspend"))
        );
        let step = |who: &str, body: Value| {
            let r = http.post(format!("{u}/v1/cases/{case_id}/commands")).bearer_auth(who).json(&body).send().unwrap();
            (r.status().as_u16(), r.json::<Value>().unwrap())
        };
        let close = json!({ "command": "close", "resolution": "confirmed_sharing", "reason": "done" });
        let (status, body) = step(&analyst, close.clone());
        assert_eq!((status, body["error"]["code"].as_str()), (409, Some("invalid_case_state")), "{body}");
        let approver = token("apr-1", "approver");
        let approve = json!({ "command": "approve", "reason": "confirmed with the desk: key resold" });
        assert_eq!(step(&approver, approve.clone()).0, 403, "approvers approve grants, not case actions");
        assert_eq!(step(&analyst, json!({ "command": "approve" })).0, 400, "a reason is required");
        let (status, body) = step(&analyst, approve);
        assert_eq!((status, body["status"].as_str()), (200, Some("open")), "{body}");
        assert_eq!(verify("203.0.113.9", &secret), "SUSPENDED", "the approved suspension is enforced at once");
        let (status, body) = step(&analyst, close);
        assert_eq!((status, body["resolution"].as_str()), (200, Some("confirmed_sharing")), "{body}");
        let (status, _) = step(&analyst, json!({ "command": "note", "text": "late note", "reason": "x" }));
        assert_eq!(status, 409, "a closed case takes no more steps");
    } else if shadow {
        assert_eq!(case["policy_version"], "test-shadow-1");
        assert_eq!(whats.iter().filter(|w| **w == "action_shadowed").count(), 3, "{whats:?}");
    } else {
        // The warning, then the revocation: the held re-verification was overtaken.
        assert_eq!(whats.iter().filter(|w| **w == "action_taken").count(), 2, "{whats:?}");
        assert!(case["held"].is_null(), "{case}");
        // The revocation is in the audit log, by the response, under the policy's version.
        let r = http.get(format!("{u}/v1/audit/entries?limit=1000")).bearer_auth(&analyst).send().unwrap();
        let entries: Vec<Value> = r.json().unwrap();
        let revoke = entries.iter().find(|e| e["action"] == "key.revoke" && e["target"] == key.as_str()).unwrap();
        assert_eq!(revoke["policy_version"], case["policy_version"], "{revoke}");
        assert!(revoke["actor"].to_string().contains("response"), "{revoke}");
        assert!(entries.iter().any(|e| e["action"] == "case.open"));
    }
    if !shadow && !institutional {
        // The owner was told at each stage taken: warning, revocation — each delivery signed
        // with the shared secret; the one refused was retried.
        let delivered = wait_until(|| {
            let notices: Vec<Value> = http
                .get(format!("{u}/v1/cases/{case_id}/notices"))
                .bearer_auth(&analyst)
                .send()
                .unwrap()
                .json()
                .unwrap();
            (notices.len() == 2 && notices.iter().all(|n| n["status"] == "delivered")).then_some(notices)
        });
        let kinds: Vec<&str> = delivered.iter().map(|n| n["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["warning", "revoked"]);
        assert_eq!(delivered.iter().map(|n| n["attempts"].as_u64().unwrap()).sum::<u64>(), 3, "{delivered:?}");
        let got = received.lock().unwrap().clone();
        assert_eq!(got.len(), 3, "two notices, one retried");
        for (headers, body) in &got {
            let sig = &headers["x-keysentinel-signature"];
            let (t, v1) = sig.strip_prefix("t=").unwrap().split_once(",v1=").unwrap();
            let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(NOTIFY_SECRET.as_bytes()).unwrap();
            hmac::Mac::update(&mut mac, format!("{t}.{body}").as_bytes());
            hmac::Mac::verify_slice(mac, &hex::decode(v1).unwrap()).expect("a valid signature");
            let n: Value = serde_json::from_str(body).unwrap();
            assert_eq!((n["account_id"].as_str(), n["case_id"].as_str()), (Some("acct-3"), Some(case_id.as_str())));
            assert_eq!(headers["x-keysentinel-notice"], n["notice_id"].as_str().unwrap());
            assert!(n["messages"]["ko"]["body"].as_str().unwrap().contains(&case_id));
        }
    }
    if !shadow && !institutional {
        let verify_key = |k: &str, s: &str| {
            let body = json!({ "method": "GET", "path": "/api/v3/openOrders", "query": binance_query(s, "symbol=BTCUSDT"),
                "headers": { "X-MBX-APIKEY": k }, "client_ip": "203.0.113.9" });
            let r = http.post(format!("{u}/v1/verify")).bearer_auth(&gateway).json(&body).send().unwrap();
            r.json::<Value>().unwrap()["code"].as_str().unwrap().to_owned()
        };
        // What the exchange's notification service received for the owner: the claim's code.
        let delivered_code = |key: &str| {
            wait_until(|| {
                received.lock().unwrap().iter().find_map(|(_, body)| {
                    let n: Value = serde_json::from_str(body).ok()?;
                    (n["kind"] == "key_claim" && n["claim"]["key_id"] == key)
                        .then(|| n["claim"]["code"].as_str().map(str::to_owned))?
                })
            })
        };
        reinstate(&http, &u, &case_id, &analyst, &token, &verify_key, &delivered_code);
        assert_eq!(verify("203.0.113.9", &secret), "REVOKED", "the old key stays dead");
        report_the_matter(&http, &u, &case_id, &token("mlro-1", "compliance"), &analyst);
        // Who stands behind the account goes into the owner's pack.
        let account = case["account_id"].as_str().unwrap();
        let args = [
            "parties",
            "create",
            account,
            "--kind",
            "representative",
            "--name",
            "Lee Minho",
            "--document-ref",
            "POA-2026-88",
            "--id",
            "rep-1",
            "--reason",
            "power of attorney on file",
        ];
        ok_json(&data, &u, &args);
        dispute_with_an_evidence_pack(&http, &u, &case_id, &token("aud-1", "auditor"), &analyst, dir.path());
    }
    let one =
        http.get(format!("{u}/v1/cases/{}", case["case_id"].as_str().unwrap())).bearer_auth(&analyst).send().unwrap();
    assert_eq!(one.status().as_u16(), 200);
    let missing = http.get(format!("{u}/v1/cases/case-nothing")).bearer_auth(&analyst).send().unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    let r = http.get(format!("{u}/v1/cases")).bearer_auth(&gateway).send().unwrap();
    assert_eq!(r.status().as_u16(), 403, "a gateway may not read cases");
}

#[test]
fn detections_move_the_key_through_the_stages_and_verify_follows() {
    staged_response(false, "retail");
}

#[test]
fn in_shadow_mode_cases_record_what_would_have_been_done() {
    staged_response(true, "retail");
}

#[test]
fn a_market_makers_key_is_stopped_by_an_analysts_decision() {
    staged_response(false, "market_maker");
}

#[test]
fn the_demo_shows_the_stages_and_a_revoked_key_refused_then_keeps_serving() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    // Killed on drop, whatever happens below.
    let _server = Server { child, url: String::new(), grpc: None };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(180)) {
        let done = line.contains("The server keeps running");
        lines.push(line);
        if done {
            break;
        }
    }
    let text = lines.join("\n");
    let url = lines[0].strip_prefix("keysentinel listening on ").unwrap().to_owned();
    assert!(text.contains("→ reverify") && text.contains("→ invalidate"), "{text}");
    assert!(text.contains("verify says REVOKED"), "{text}");
    assert!(text.contains("revoked for good") && text.contains("summary"), "{text}");
    // Still serving.
    let health = reqwest::blocking::get(format!("{url}/healthz")).unwrap();
    assert_eq!(health.status().as_u16(), 200);
}

/// An analyst works a case from the command line: the same calls, roles and audit entries as
/// the API.
#[test]
fn cases_are_worked_from_the_command_line_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data);
    let u = server.url.clone();
    let gateway = ok_json(&data, &u, &["operators", "create", "gw-1", "--role", "gateway"]);
    let gateway = gateway["token"].as_str().unwrap().to_owned();
    ok_json(&data, &u, &["operators", "create", "ana-1", "--role", "analyst"]);
    ok_json(&data, &u, &["accounts", "create", "acct-9", "--segment", "retail", "--verification", "verified"]);
    let (key, _) = create_key(&data, &u, "binance", "acct-9", "203.0.113.0/24");
    // Intelligence naming the key: an unambiguous compromise, a case at once.
    let http = Client::new();
    let line = json!({ "type": "vendor_intel", "ts": rfc3339(now_ms()), "key_id": key,
        "text": "the key is offered for sale on a forum" });
    assert_eq!(post_events(&http, &u, &gateway, line.to_string()).0, 202);
    let listed = wait_until(|| {
        let v = ok_json(&data, &u, &["cases", "list", "--key", &key]);
        v.as_array().filter(|a| !a.is_empty()).cloned()
    });
    let case_id = listed[0]["case_id"].as_str().unwrap().to_owned();
    // The human listing names the case and its stage.
    let out = ks(&data, &u, &["cases", "list", "--account", "acct-9"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains(&case_id) && text.contains("invalidate"), "{text}");
    let shown = ok_json(&data, &u, &["cases", "show", &case_id]);
    assert_eq!(shown["suspicions"][0]["findings"][0]["indicator"], "vendor_intel", "{shown}");

    let noted = ok_json(&data, &u, &["cases", "note", &case_id, "called the owner", "--reason", "first contact"]);
    assert!(noted["history"].as_array().unwrap().iter().any(|h| h["what"] == "note"), "{noted}");
    let assigned = ok_json(&data, &u, &["cases", "assign", &case_id, "ana-1", "--reason", "on duty"]);
    assert_eq!(assigned["assignee"], "ana-1");
    let closed = ok_json(
        &data,
        &u,
        &["cases", "close", &case_id, "--resolution", "confirmed_sharing", "--reason", "owner admitted the sale"],
    );
    assert_eq!((closed["status"].as_str(), closed["resolution"].as_str()), (Some("closed"), Some("confirmed_sharing")));

    // Bad input is refused before anything is sent; a role that may not work cases is refused
    // by the server, and nothing is written.
    let out = ks(&data, &u, &["cases", "close", &case_id, "--resolution", "maybe", "--reason", "x"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(env!("CARGO_BIN_EXE_keysentinel"))
        .args(["cases", "note", &case_id, "hello", "--reason", "x", "--data-dir"])
        .arg(&data)
        .env("KEYSENTINEL_URL", &u)
        .env("KEYSENTINEL_TOKEN", &gateway)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a gateway works no cases");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("403")
            || String::from_utf8_lossy(&out.stderr).contains("forbidden"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = ok_json(&data, &u, &["cases", "show", &case_id]);
    assert_eq!(after["history"].as_array().unwrap().len(), closed["history"].as_array().unwrap().len());

    // Every step is in the audit log, aimed at the case.
    let audit = ok_json(&data, &u, &["audit", "list", "--limit", "1000"]);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"].as_str().is_some_and(|t| t.contains(&case_id)))
        .filter_map(|e| e["action"].as_str())
        .collect();
    for step in ["case.note", "case.assign", "case.close"] {
        assert!(actions.contains(&step), "{step} in {actions:?}");
    }
}
