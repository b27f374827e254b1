//! The vendor and counterparty registry through the real binary: a vendor from application to
//! approval (four eyes) to lapse, its customers' keys restricted at verify and their owners
//! notified; keys refused for unknown vendors; gateways refused registry records while an
//! operator's import is audited whole or not at all; a vendor row edited in the file caught;
//! counterparties recorded, searched, ended and expired (detection is told); bad inputs named.
//! Each checks the audit entries it should leave.

// Test helpers may unwrap and panic: a failure there is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use reqwest::blocking::Client;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

fn ok_as(data: &Path, url: &str, token: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = ks_as(data, url, token, &all);
    assert!(out.status.success(), "{args:?} failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn entries<'a>(log: &'a [Value], action: &str, target: &str) -> Vec<&'a Value> {
    log.iter().filter(|e| e["action"] == action && e["target"] == target).collect()
}

const ANSWERS: &str = r#"{"stores_customer_secrets":true,"secrets_encrypted_at_rest":true,
    "uses_registered_egress_only":true,"shares_keys_with_third_parties":false,"requests_withdrawal_rights":false,
    "jurisdictions":["KR"],"incident_contact":"security@tradebot.example"}"#;

/// A vendor registered by the admin (`admin.token`), its attestation reviewed and its due
/// diligence recorded by the operator holding `checker` (or the admin).
fn applied_vendor(data: &Path, url: &str, id: &str) {
    ok_json(
        data,
        url,
        &[
            "vendors",
            "apply",
            id,
            "--legal-name",
            "Tradebot Inc.",
            "--egress",
            "198.51.100.0/24",
            "--reason",
            "new tool",
        ],
    );
    checked(data, url, None, id);
}

fn checked(data: &Path, url: &str, checker: Option<&str>, id: &str) {
    let attested = rfc3339(now_ms() - 86_400_000);
    let steps: [&[&str]; 2] = [
        &[
            "vendors",
            "attest",
            id,
            "--answers",
            ANSWERS,
            "--attested-at",
            &attested,
            "--reason",
            "questionnaire received",
        ],
        &[
            "vendors",
            "due-diligence",
            id,
            "--outcome",
            "satisfactory",
            "--document-ref",
            "DMS-2026-0412",
            "--reason",
            "KYB and security review done",
        ],
    ];
    for args in steps {
        match checker {
            Some(token) => ok_as(data, url, token, args),
            None => ok_json(data, url, args),
        };
    }
}

fn vendor_key(data: &Path, url: &str, account: &str, vendor: &str) -> Output {
    ks(
        data,
        url,
        &key_create(&[
            "--scheme",
            "binance",
            "--account",
            account,
            "--scopes",
            "read,trade",
            "--vendor",
            vendor,
            "--purpose",
            "vendor_copy_trading",
            "--json",
        ]),
    )
}

/// A verify of a Binance request signed with `secret`: its code.
fn verify(url: &str, gateway: &str, key: &str, secret: &str, method: &str, path: &str) -> String {
    let body = json!({ "method": method, "path": path, "query": binance_query(secret, "symbol=BTCUSDT"), "body": "",
        "headers": { "X-MBX-APIKEY": key }, "client_ip": "198.51.100.20" });
    let r = Client::new().post(format!("{url}/v1/verify")).bearer_auth(gateway).json(&body).send().unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().unwrap()["code"].as_str().unwrap().to_owned()
}

#[test]
fn a_vendor_lapses_and_its_customers_keys_are_restricted_at_verify_and_their_owners_notified() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let second = init_two_admins(&data);
    let server = serve_with(&data, &["--sweep-seconds", "1"]);
    let u = server.url.clone();
    let compliance = operator_token(&data, &u, &second, "kim-compliance", "compliance");
    let gateway = operator_token(&data, &u, &second, "gw-1", "gateway");
    for a in ["acct-1", "acct-2"] {
        ok_json(&data, &u, &["accounts", "create", a, "--segment", "retail", "--verification", "verified"]);
    }
    applied_vendor(&data, &u, "tradebot");

    // An application is not an approval.
    let early = vendor_key(&data, &u, "acct-1", "tradebot");
    assert_eq!(code(&early), 7, "{}", stderr(&early));
    assert!(
        stderr(&early).contains("vendor_not_approved") && stderr(&early).contains("is applied"),
        "{}",
        stderr(&early)
    );

    // Four eyes: the admin who recorded the checks may not approve (no right); nor may the
    // compliance officer that admin created (one chain of creation), so another admin checks.
    let later = rfc3339(now_ms() + 3_600_000);
    let by_admin =
        ks(&data, &u, &["vendors", "approve", "tradebot", "--recertification-due", &later, "--reason", "ok"]);
    assert_eq!(code(&by_admin), 4, "{}", stderr(&by_admin));
    let approve = ["vendors", "approve", "tradebot", "--recertification-due", &later, "--reason", "checks complete"];
    let chained = ks_as(&data, &u, &compliance, &approve);
    assert_eq!(code(&chained), 4, "{}", stderr(&chained));
    assert!(stderr(&chained).contains("one of them created the other"), "{}", stderr(&chained));
    checked(&data, &u, Some(&second), "tradebot");
    let own = ok_as(
        &data,
        &u,
        &compliance,
        &[
            "vendors",
            "due-diligence",
            "tradebot",
            "--outcome",
            "satisfactory",
            "--document-ref",
            "DMS-2026-0413",
            "--reason",
            "my own look",
        ],
    );
    assert_eq!(own["due_diligence"]["recorded_by"], "kim-compliance");
    let self_approved = ks_as(&data, &u, &compliance, &approve);
    assert_eq!(code(&self_approved), 4, "{}", stderr(&self_approved));
    assert!(
        stderr(&self_approved).contains("recorded the due diligence and may not also approve"),
        "{}",
        stderr(&self_approved)
    );
    checked(&data, &u, Some(&second), "tradebot");
    let past = rfc3339(now_ms() - 1000);
    let backdated = ks_as(
        &data,
        &u,
        &compliance,
        &["vendors", "approve", "tradebot", "--recertification-due", &past, "--reason", "checks complete"],
    );
    assert_eq!(code(&backdated), 3, "{}", stderr(&backdated));
    assert!(stderr(&backdated).contains("recertification_due: must be in the future"), "{}", stderr(&backdated));
    // Approved until a few seconds from now, so that the test sees the date pass.
    let due = rfc3339(now_ms() + 5_000);
    let approved = ok_as(
        &data,
        &u,
        &compliance,
        &["vendors", "approve", "tradebot", "--recertification-due", &due, "--reason", "checks complete"],
    );
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["approved_by"], "kim-compliance");

    // Its customers' keys, one of them used to trade.
    let mut keys = Vec::new();
    for a in ["acct-1", "acct-2"] {
        let out = vendor_key(&data, &u, a, "tradebot");
        assert!(out.status.success(), "{}", stderr(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        keys.push((v["key"]["access_key"].as_str().unwrap().to_owned(), v["secret"].as_str().unwrap().to_owned()));
    }
    let (key, secret) = keys[0].clone();
    assert_eq!(verify(&u, &gateway, &key, &secret, "POST", "/api/v3/order"), "VALID");
    let exposure = ok_json(&data, &u, &["vendors", "exposure", "tradebot"]);
    assert_eq!((exposure["keys"].as_array().unwrap().len(), exposure["active_keys"].as_u64()), (2, Some(2)));
    assert_eq!(exposure["accounts"].as_array().unwrap().len(), 2);
    assert_eq!(exposure["trading_measured"], true, "{exposure}");

    // The recertification date passes: the sweep lapses the vendor and takes trade from its
    // keys (the built-in policy's [vendors] on_lapse = read_only).
    let mut lapsed = Value::Null;
    for _ in 0..150 {
        lapsed = ok_json(&data, &u, &["vendors", "show", "tradebot"]);
        let restricted = ok_json(&data, &u, &["keys", "show", &key]);
        if lapsed["status_reason"] == "recertification due date passed" && restricted["scopes"] == json!(["read"]) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(lapsed["status"], "lapsed", "{lapsed}");
    assert_eq!(lapsed["status_changed_by"], "system:vendor-sweep");
    assert_eq!(verify(&u, &gateway, &key, &secret, "POST", "/api/v3/order"), "SCOPE_DENIED", "no more trading");
    assert_eq!(verify(&u, &gateway, &key, &secret, "GET", "/api/v3/openOrders"), "VALID", "reading goes on");
    let again = vendor_key(&data, &u, "acct-1", "tradebot");
    assert!(
        stderr(&again).contains("vendor_not_approved") && stderr(&again).contains("is lapsed"),
        "{}",
        stderr(&again)
    );

    // Each owner is told, about the tool, in both languages.
    let notices = ok_json(&data, &u, &["vendors", "notices", "tradebot"]);
    let notices = notices.as_array().unwrap();
    assert_eq!(notices.len(), 2, "{notices:?}");
    for n in notices {
        assert_eq!(
            (n["kind"].as_str(), n["case_id"].as_str(), n["vendor_id"].as_str()),
            (Some("vendor_restricted"), Some("vendor:tradebot"), Some("tradebot"))
        );
        assert!(n["en"]["body"].as_str().unwrap().contains("Tradebot Inc."), "{n}");
        assert!(n["stage"].is_null());
    }
    let mut owners: Vec<&str> = notices.iter().map(|n| n["account_id"].as_str().unwrap()).collect();
    owners.sort_unstable();
    assert_eq!(owners, ["acct-1", "acct-2"]);

    // Every step is in the log: the application, the checks, the approval by compliance, the
    // lapse by the sweep with what it did, and each key's restriction under the policy.
    let log = audit(&data, &u);
    for (action, n) in [
        ("vendor.apply", 1),
        ("vendor.attest", 3),
        ("vendor.due_diligence", 4),
        ("vendor.approve", 1),
        ("vendor.lapse", 1),
    ] {
        assert_eq!(entries(&log, action, "tradebot").len(), n, "{action}");
    }
    let checks = entries(&log, "vendor.due_diligence", "tradebot");
    assert_eq!(checks.last().unwrap()["actor"]["id"], "admin-2", "the checks the approval rests on");
    let approve = entries(&log, "vendor.approve", "tradebot")[0];
    assert_eq!(approve["actor"]["id"], "kim-compliance", "{approve}");
    let lapse = entries(&log, "vendor.lapse", "tradebot")[0];
    assert_eq!(lapse["actor"]["component"], "vendor-sweep", "{lapse}");
    assert_eq!(
        (lapse["details"]["action"].as_str(), lapse["details"]["keys"].as_array().map(Vec::len)),
        (Some("read_only"), Some(2))
    );
    assert_eq!(lapse["policy_version"], "builtin-2026-11");
    for (k, _) in &keys {
        let restrict = entries(&log, "key.restrict", k);
        assert_eq!(restrict.len(), 1, "{k}");
        assert_eq!(
            (restrict[0]["details"]["vendor_id"].as_str(), restrict[0]["details"]["dropped"].clone()),
            (Some("tradebot"), json!(["trade"]))
        );
    }
    // The approval the role may not make is recorded too.
    assert!(log.iter().any(|e| e["action"] == "access.denied" && e["target"] == "approve vendors"));
}

#[test]
fn a_key_naming_an_unknown_vendor_is_refused_at_creation_and_import() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve_with(&data, &["--no-detection"]);
    let u = server.url.clone();
    ok_json(&data, &u, &["accounts", "create", "acct-1", "--segment", "retail", "--verification", "verified"]);
    let out = vendor_key(&data, &u, "acct-1", "nobot");
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("vendor_not_registered")
            && stderr(&out).contains("vendor nobot is not in the vendor registry"),
        "{}",
        stderr(&out)
    );
    // The same through import, whatever --enforce-policy says.
    let file = dir.path().join("keys.ndjson");
    let line = json!({ "access_key": "IMPORTEDKEY0000000000001", "secret": "s3cr3t-s3cr3t-s3cr3t", "account_id": "acct-1",
        "scheme": "binance", "scopes": ["read"], "vendor_id": "nobot", "created_at": rfc3339(now_ms() - 1000),
        "expires_at": rfc3339(now_ms() + 86_400_000), "terms_version": "2026-05" });
    std::fs::write(&file, format!("{line}\n")).unwrap();
    let imported = ks(&data, &u, &["keys", "import", file.to_str().unwrap(), "--json"]);
    assert_eq!(code(&imported), 3, "{}", stderr(&imported));
    let report: Value = serde_json::from_slice(&imported.stdout).unwrap();
    assert_eq!(report["imported"], 0);
    assert!(report["errors"][0]["message"].as_str().unwrap().contains("vendor_not_registered"), "{report}");
    // No key was recorded for the account.
    let log = audit(&data, &u);
    assert!(!log.iter().any(|e| e["action"] == "key.create" || e["action"] == "key.import"), "{log:?}");
    assert!(ok_json(&data, &u, &["keys", "list", "--account", "acct-1"]).as_array().unwrap().is_empty());
}

fn post_events(url: &str, token: &str, body: String) -> (u16, Value) {
    let r = Client::new()
        .post(format!("{url}/v1/events"))
        .bearer_auth(token)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

#[test]
fn a_gateway_cannot_post_registry_records_and_an_operators_import_is_whole_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data);
    let u = server.url.clone();
    let gateway =
        ok_json(&data, &u, &["operators", "create", "gw-1", "--role", "gateway"])["token"].as_str().unwrap().to_owned();
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap().trim().to_owned();
    for a in ["broker-1", "client-1", "client-2"] {
        ok_json(&data, &u, &["accounts", "create", a, "--segment", "broker", "--verification", "verified"]);
    }
    let from = rfc3339(now_ms() - 60_000);
    let rel = |to: &str| {
        json!({ "type": "relationship", "from": "broker-1", "to": to, "kind": "broker_client",
            "effective_from": from, "document_ref": "BRK-2026-11" })
        .to_string()
    };
    let evil_vendor = r#"{"type":"vendor","vendor_id":"evil","status":"approved","egress_cidrs":["0.0.0.0/0"]}"#;

    // A gateway posts neither kind, with or without activity beside it.
    for batch in [rel("client-1"), evil_vendor.to_owned()] {
        let (status, reply) = post_events(&u, &gateway, format!("{batch}\n"));
        assert_eq!(status, 403, "{reply}");
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(message.contains("role gateway may not send") && message.contains("line 1"), "{message}");
    }
    let log = audit(&data, &u);
    assert_eq!(
        log.iter().filter(|e| e["action"] == "access.denied" && e["target"] == "import registry records").count(),
        2
    );
    assert!(ok_json(&data, &u, &["counterparties", "list"]).as_array().unwrap().is_empty());
    assert!(ok_json(&data, &u, &["vendors", "list"]).as_array().unwrap().is_empty());

    // An operator's batch with one bad line is refused whole, naming the line and the field.
    let (status, reply) = post_events(&u, &admin, format!("{}\n{}\n{evil_vendor}\n", rel("client-1"), rel("client-2")));
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["error"]["field"], "egress_cidrs", "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().starts_with("line 3: "), "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains("whole internet"), "{reply}");
    assert!(ok_json(&data, &u, &["counterparties", "list"]).as_array().unwrap().is_empty(), "no half-import");
    // A registry record the registry's rules refuse, too: an approval is not imported.
    let (status, reply) = post_events(
        &u,
        &admin,
        format!(
            "{}\n{}\n",
            rel("client-1"),
            r#"{"type":"vendor","vendor_id":"v2","status":"approved","egress_cidrs":[]}"#
        ),
    );
    assert_eq!((status, reply["error"]["field"].as_str()), (400, Some("status")), "{reply}");
    assert!(ok_json(&data, &u, &["counterparties", "list"]).as_array().unwrap().is_empty(), "no half-import");

    // The good lines: each a registry change with its entry; again, nothing new.
    let body = format!("{}\n{}\n", rel("client-1"), rel("client-2"));
    let (status, reply) = post_events(&u, &admin, body.clone());
    assert_eq!((status, reply["imported"].as_u64()), (200, Some(2)), "{reply}");
    let (status, reply) = post_events(&u, &admin, body);
    assert_eq!((status, reply["imported"].as_u64(), reply["unchanged"].as_u64()), (200, Some(0), Some(2)), "{reply}");
    let listed = ok_json(&data, &u, &["counterparties", "list", "--account", "client-2"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["document_ref"], "BRK-2026-11");
    let log = audit(&data, &u);
    for r in ok_json(&data, &u, &["counterparties", "list", "--account", "broker-1"]).as_array().unwrap() {
        let id = r["counterparty_id"].as_str().unwrap();
        let imported = entries(&log, "counterparty.import", id);
        assert_eq!(imported.len(), 1, "{id}");
        assert_eq!(imported[0]["actor"]["id"], "admin");
    }
    // Registry records and activity do not share a batch.
    let mixed = format!(
        "{}\n{}\n",
        rel("client-1"),
        json!({"type":"complaint","ts":rfc3339(now_ms()),"account_id":"client-1","text":"x"})
    );
    let (status, reply) = post_events(&u, &admin, mixed);
    assert_eq!(status, 400, "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains("holds nothing else"), "{reply}");
}

#[test]
fn an_edited_vendor_or_counterparty_row_is_caught_by_audit_verify_and_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let server = serve_with(&data, &["--no-detection"]);
        applied_vendor(&data, &server.url, "tradebot");
        for a in ["corp-1", "corp-2"] {
            ok_json(&data, &server.url, &["accounts", "create", a, "--segment", "corporate"]);
        }
        let from = rfc3339(now_ms());
        ok_json(
            &data,
            &server.url,
            &[
                "counterparties",
                "create",
                "--kind",
                "affiliate",
                "--account",
                "corp-1",
                "--related",
                "corp-2",
                "--from",
                &from,
                "--document-ref",
                "KYB-1",
                "--reason",
                "one group",
                "--id",
                "grp-1",
            ],
        );
    }
    let db = data.join("keysentinel.db");
    let clean = Command::new(BIN).args(["audit", "verify", "--db"]).arg(&db).output().unwrap();
    assert!(clean.status.success(), "{}", stderr(&clean));
    // A counterparty made to relate another account, on a copy.
    let copy = data.join("copy.db");
    std::fs::copy(&db, &copy).unwrap();
    if data.join("keysentinel.db-wal").exists() {
        std::fs::copy(data.join("keysentinel.db-wal"), data.join("copy.db-wal")).unwrap();
    }
    rusqlite::Connection::open(&copy)
        .unwrap()
        .execute_batch(
            "UPDATE counterparties SET doc = replace(doc, 'corp-2', 'corp-9') WHERE counterparty_id = 'grp-1'",
        )
        .unwrap();
    let out = Command::new(BIN).args(["audit", "verify", "--db"]).arg(&copy).output().unwrap();
    assert_eq!(code(&out), 8, "{}", stderr(&out));
    assert!(stderr(&out).contains("counterparties row grp-1 was changed without an audit entry"), "{}", stderr(&out));
    // Someone with the file makes the application look approved, with egress everywhere.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "UPDATE vendors SET status = 'approved', doc = replace(replace(doc, '\"status\":\"applied\"', '\"status\":\"approved\"'),
         '198.51.100.0/24', '0.0.0.0/0') WHERE vendor_id = 'tradebot'",
    )
    .unwrap();
    drop(conn);
    let out = Command::new(BIN).args(["audit", "verify", "--db"]).arg(&db).output().unwrap();
    assert_eq!(code(&out), 8, "{}", stderr(&out));
    assert!(stderr(&out).contains("vendors row tradebot was changed without an audit entry"), "{}", stderr(&out));
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--no-detection", "--data-dir"])
        .arg(&data)
        .env("KEYSENTINEL_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(8), "{err}");
    assert!(err.contains("vendors row tradebot was changed without an audit entry"), "{err}");
}

#[test]
fn bad_registry_inputs_are_refused_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve_with(&data, &["--no-detection"]);
    let u = server.url.clone();
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap().trim().to_owned();
    for a in ["mm-1", "corp-2"] {
        ok_json(&data, &u, &["accounts", "create", a, "--segment", "market_maker", "--verification", "verified"]);
    }
    let http = Client::new();
    let post = |path: &str, body: Value| {
        let r = http.post(format!("{u}{path}")).bearer_auth(&admin).json(&body).send().unwrap();
        (r.status().as_u16(), r.json::<Value>().unwrap())
    };
    let from = rfc3339(now_ms());
    let until = rfc3339(now_ms() + 90 * 86_400_000);
    let before = rfc3339(now_ms() - 86_400_000);
    let mandate = json!({ "kind": "mm_mandate", "account_id": "mm-1", "principal": "own", "symbols": ["BTC-KRW"],
        "effective_from": from, "effective_until": until, "document_ref": "MM-1", "reason": "new mandate" });
    let with = |patch: Value| {
        let mut m = mandate.clone();
        for (k, v) in patch.as_object().unwrap() {
            m[k] = v.clone();
        }
        m
    };
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "/v1/vendors",
            json!({ "vendor_id": "v", "legal_name": "V", "egress_cidrs": ["0.0.0.0/0"], "reason": "x" }),
            "egress_cidrs",
            "whole internet",
        ),
        (
            "/v1/vendors",
            json!({ "vendor_id": "v", "legal_name": "V", "egress_cidrs": ["203.0.0.0/16"], "reason": "x" }),
            "egress_cidrs",
            "too broad",
        ),
        (
            "/v1/counterparties",
            with(json!({ "effective_until": before })),
            "effective_until",
            "must be after effective_from",
        ),
        ("/v1/counterparties", with(json!({ "kind": "friend" })), "kind", "unknown variant `friend`"),
        ("/v1/counterparties", with(json!({ "symbols": ["btc-krw"] })), "symbols[0]", "not a market symbol"),
        ("/v1/counterparties", with(json!({ "effective_until": null })), "effective_until", "stated time"),
        (
            "/v1/counterparties",
            with(json!({ "kind": "affiliate", "principal": null, "related_accounts": ["corp-2"] })),
            "symbols",
            "only a market-making mandate",
        ),
        ("/v1/counterparties", with(json!({ "document_ref": "" })), "document_ref", "documents"),
    ];
    for (path, body, field, needle) in cases {
        let (status, reply) = post(path, body.clone());
        assert_eq!(status, 400, "{body}: {reply}");
        assert_eq!(reply["error"]["field"], field, "{body}: {reply}");
        assert!(reply["error"]["message"].as_str().unwrap().contains(needle), "{needle:?}: {reply}");
    }
    let r = http.get(format!("{u}/v1/counterparties?kind=friend")).bearer_auth(&admin).send().unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.json::<Value>().unwrap()["error"]["field"], "kind");
    let (status, reply) = post("/v1/counterparties", with(json!({ "account_id": "nobody" })));
    assert_eq!((status, reply["error"]["code"].as_str()), (404, Some("not_found")), "{reply}");
    // None of it was recorded.
    let log = audit(&data, &u);
    assert!(!log
        .iter()
        .any(|e| e["action"].as_str().unwrap().starts_with("counterparty.") || e["action"] == "vendor.apply"));
}

#[test]
fn a_mandate_is_recorded_searched_and_stops_counting_when_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve_with(&data, &["--sweep-seconds", "1"]);
    let u = server.url.clone();
    for (a, seg) in
        [("mm-1", "market_maker"), ("issuer-1", "corporate"), ("corp-1", "corporate"), ("corp-2", "corporate")]
    {
        ok_json(&data, &u, &["accounts", "create", a, "--segment", seg, "--verification", "verified"]);
    }
    let from = rfc3339(now_ms() - 1000);
    let until = rfc3339(now_ms() + 4000);
    let mandate = ok_json(
        &data,
        &u,
        &[
            "counterparties",
            "create",
            "--kind",
            "mm_mandate",
            "--account",
            "mm-1",
            "--principal",
            "issuer",
            "--issuer",
            "Klaytn Foundation",
            "--related",
            "issuer-1",
            "--symbols",
            "KLAY-KRW,KLAY-USDT",
            "--countries",
            "KR,SG",
            "--allow",
            "198.51.100.0/24",
            "--from",
            &from,
            "--until",
            &until,
            "--document-ref",
            "MM-2026-07",
            "--reason",
            "liquidity agreement signed",
        ],
    );
    let id = mandate["counterparty_id"].as_str().unwrap().to_owned();
    assert_eq!((mandate["version"].as_u64(), mandate["symbols"].as_array().map(Vec::len)), (Some(1), Some(2)));
    let affiliate = ok_json(
        &data,
        &u,
        &[
            "counterparties",
            "create",
            "--kind",
            "affiliate",
            "--account",
            "corp-1",
            "--related",
            "corp-2",
            "--from",
            &from,
            "--document-ref",
            "KYB-4411",
            "--reason",
            "same group",
            "--id",
            "grp-1",
        ],
    );
    assert_eq!(affiliate["counterparty_id"], "grp-1");

    // Searched by either side, by kind, by date.
    let ids = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["counterparties", "list"];
        all.extend_from_slice(args);
        ok_json(&data, &u, &all)
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["counterparty_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&["--account", "issuer-1"]), std::slice::from_ref(&id));
    assert_eq!(ids(&["--kind", "affiliate"]), ["grp-1"]);
    let now = rfc3339(now_ms());
    assert_eq!(ids(&["--active-at", &now]).len(), 2);
    assert_eq!(ids(&["--active-at", &rfc3339(now_ms() + 10_000)]), ["grp-1"], "the mandate ends");

    // Detection learns of it as committed, and that it stopped being in effect when its end
    // passed (the sweep: no write marks that), with its terms.
    let journal = || -> Vec<Value> {
        let mut lines = Vec::new();
        for e in std::fs::read_dir(data.join("detection")).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().unwrap().to_string_lossy().starts_with("journal-") {
                for l in std::fs::read_to_string(&p).unwrap().lines() {
                    let v: Value = serde_json::from_str(l).unwrap();
                    if v["type"] == "relationship" && v["counterparty_id"] == id.as_str() {
                        lines.push(v);
                    }
                }
            }
        }
        lines
    };
    let mut seen = Vec::new();
    for _ in 0..150 {
        seen = journal();
        if seen.iter().any(|v| v["in_effect"] == false) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let began = seen.iter().find(|v| v["in_effect"] == true).unwrap_or_else(|| panic!("{seen:?}"));
    assert_eq!(
        (began["from"].as_str(), began["to"].as_str(), began["kind"].as_str()),
        (Some("mm-1"), Some("issuer-1"), Some("mm_mandate"))
    );
    assert_eq!(began["symbols"], json!(["KLAY-KRW", "KLAY-USDT"]));
    assert_eq!((began["principal"].as_str(), began["countries"].clone()), (Some("issuer"), json!(["KR", "SG"])));
    assert!(seen.iter().any(|v| v["in_effect"] == false), "the expiry reached detection: {seen:?}");

    // Ending the affiliation is a change with its entry; an ended record changes no more.
    let ended = ok_json(&data, &u, &["counterparties", "end", "grp-1", "--reason", "group restructured"]);
    assert_eq!((ended["version"].as_u64(), ended["ended"]["by"].as_str()), (Some(2), Some("admin")));
    let again = ks(&data, &u, &["counterparties", "update", "grp-1", "--document-ref", "KYB-9", "--reason", "late"]);
    assert_eq!(code(&again), 6, "{}", stderr(&again));
    let log = audit(&data, &u);
    assert_eq!(entries(&log, "counterparty.create", &id).len(), 1);
    let created = entries(&log, "counterparty.create", &id)[0];
    assert_eq!(
        (created["details"]["issuer"].as_str(), created["reason"].as_str()),
        (Some("Klaytn Foundation"), Some("liquidity agreement signed"))
    );
    assert_eq!(entries(&log, "counterparty.create", "grp-1").len(), 1);
    assert_eq!(entries(&log, "counterparty.end", "grp-1").len(), 1);
}
