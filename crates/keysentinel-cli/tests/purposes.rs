//! Purpose-based issuance through the real binary (issue #13, item 4): a market maker's key is
//! refused without a mandate in effect (API and CLI name the rule), created pending with one,
//! refused at verify until a compliance operator approves it — never the operator who asked for
//! it, nor one in a chain of creation with them — and valid after. The audit entries say who
//! asked, who approved, the purpose and the owner's acceptance of the terms.

// Test helpers may unwrap and panic: a failure there is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use reqwest::blocking::Client;
use serde_json::{json, Value};
use std::path::Path;

/// A verify of a Binance order signed with `secret`, from inside the key's allowlist: its code.
fn verify(url: &str, gateway: &str, key: &str, secret: &str) -> String {
    let body = json!({ "method": "POST", "path": "/api/v3/order", "query": binance_query(secret, "symbol=BTCUSDT"),
        "body": "", "headers": { "X-MBX-APIKEY": key }, "client_ip": "198.51.100.20" });
    let r = Client::new().post(format!("{url}/v1/verify")).bearer_auth(gateway).json(&body).send().unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().unwrap()["code"].as_str().unwrap().to_owned()
}

const MARKET_MAKING: [&str; 20] = [
    "keys",
    "create",
    "--scheme",
    "binance",
    "--account",
    "mm-7",
    "--scopes",
    "read,trade",
    "--allow",
    "198.51.100.0/24",
    "--purpose",
    "market_making",
    "--terms-version",
    "2026-05",
    "--terms-accepted-at",
    "2026-05-01T00:00:00Z",
    "--terms-channel",
    "account_manager",
    "--purpose-note",
    "KLAY liquidity",
];

#[test]
fn a_market_makers_key_needs_a_mandate_and_a_compliance_approval_by_someone_else() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let second = init_two_admins(&data);
    let server = serve(&data);
    let u = server.url.clone();
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap().trim().to_owned();
    let requester = ok_json(&data, &u, &["operators", "whoami"])["operator_id"].as_str().unwrap().to_owned();
    let gateway = operator_token(&data, &u, &second, "gw-1", "gateway");
    // One compliance officer the requesting admin created (one chain of creation with them),
    // one the second admin created (approved by the first, which makes no chain).
    let chained = operator_token(&data, &u, &second, "kim-compliance", "compliance");
    let other = ok_as(&data, &u, &second, &["operators", "create", "lee-compliance", "--role", "compliance"])["token"]
        .as_str()
        .unwrap()
        .to_owned();
    ok_json(&data, &u, &["operators", "approve", "lee-compliance", "--reason", "second admin"]);
    for (a, seg) in [("mm-7", "market_maker"), ("klay-foundation", "corporate")] {
        ok_json(&data, &u, &["accounts", "create", a, "--segment", seg, "--verification", "verified"]);
    }

    // No mandate: refused naming the rule, by the CLI (exit 7) and the API (422).
    let refused = ks(&data, &u, &MARKET_MAKING);
    assert_eq!(code(&refused), 7, "{}", stderr(&refused));
    assert!(stderr(&refused).contains("mandate_required"), "{}", stderr(&refused));
    let body = json!({ "account_id": "mm-7", "algorithm": {"kind": "hmac"}, "scheme": "binance",
        "scopes": ["read", "trade"], "ip_allowlist": ["198.51.100.0/24"], "purpose": "market_making",
        "terms_version": "2026-05", "terms_accepted_at": "2026-05-01T00:00:00Z", "terms_channel": "account_manager" });
    let r = Client::new().post(format!("{u}/v1/keys")).bearer_auth(&admin).json(&body).send().unwrap();
    assert_eq!(r.status(), 422);
    let v: Value = r.json().unwrap();
    assert_eq!(
        (v["error"]["code"].as_str(), v["error"]["rule"].as_str()),
        (Some("policy_violation"), Some("mandate_required")),
        "{v}"
    );
    // Nor without the terms' acceptance: the channel is required.
    let mut no_channel = body.clone();
    no_channel.as_object_mut().unwrap().remove("terms_channel");
    let r = Client::new().post(format!("{u}/v1/keys")).bearer_auth(&admin).json(&no_channel).send().unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("terms_channel"));

    // A mandate in effect: the key is issued pending, refused at verify.
    let (from, until) = (rfc3339(now_ms() - 60_000), rfc3339(now_ms() + 30 * 86_400_000));
    ok_json(
        &data,
        &u,
        &[
            "counterparties",
            "create",
            "--kind",
            "mm_mandate",
            "--account",
            "mm-7",
            "--principal",
            "issuer",
            "--issuer",
            "Klaytn Foundation",
            "--related",
            "klay-foundation",
            "--symbols",
            "KLAY-KRW",
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
            "--id",
            "mm7-klay",
        ],
    );
    let issued = ok_json(&data, &u, &MARKET_MAKING);
    let key = issued["key"]["access_key"].as_str().unwrap().to_owned();
    let secret = issued["secret"].as_str().unwrap().to_owned();
    assert_eq!(
        (issued["key"]["status"].as_str(), issued["key"]["purpose"].as_str()),
        (Some("pending"), Some("market_making"))
    );
    assert_eq!(issued["key"]["approval"]["requested_by"].as_str(), Some(requester.as_str()));
    assert_eq!(issued["key"]["terms_acceptance"]["channel"], "account_manager");
    assert_eq!(verify(&u, &gateway, &key, &secret), "PENDING", "not valid before the approval");

    // The requester may not approve (their role has no such right; 403 is audited), nor a
    // compliance officer they created.
    let approve = ["keys", "approve-issue", key.as_str(), "--reason", "mandate MM-2026-07 checked"];
    let own = ks(&data, &u, &approve);
    assert_eq!(code(&own), 4, "{}", stderr(&own));
    let by_chain = ks_as(&data, &u, &chained, &approve);
    assert_eq!(code(&by_chain), 4, "{}", stderr(&by_chain));
    assert!(stderr(&by_chain).contains("one of them created the other"), "{}", stderr(&by_chain));
    assert_eq!(verify(&u, &gateway, &key, &secret), "PENDING");

    // Another compliance officer approves: valid at verify from the moment the call returns.
    let approved = ok_as(&data, &u, &other, &approve);
    assert_eq!(
        (approved["status"].as_str(), approved["approval"]["approved_by"].as_str()),
        (Some("active"), Some("lee-compliance"))
    );
    assert_eq!(verify(&u, &gateway, &key, &secret), "VALID");
    let again = ks_as(&data, &u, &other, &approve);
    assert_eq!(code(&again), 6, "approved once: {}", stderr(&again));

    // The log: the creation (pending, its purpose, the terms), the refusal by role, the approval.
    let log = audit(&data, &u);
    let created: Vec<&Value> =
        log.iter().filter(|e| e["action"] == "key.create" && e["target"] == key.as_str()).collect();
    assert_eq!(created.len(), 1);
    let d = &created[0]["details"];
    assert_eq!((d["purpose"].as_str(), d["status"].as_str()), (Some("market_making"), Some("pending")));
    assert_eq!(d["approval"]["needed"], "compliance");
    assert_eq!(
        (d["terms_acceptance"]["version"].as_str(), d["terms_acceptance"]["accepted_at"].as_str()),
        (Some("2026-05"), Some("2026-05-01T00:00:00Z"))
    );
    assert_eq!(created[0]["actor"]["id"].as_str(), Some(requester.as_str()));
    assert!(log.iter().any(|e| e["action"] == "access.denied" && e["target"] == "approve keys issued pending"));
    let approvals: Vec<&Value> = log.iter().filter(|e| e["action"] == "key.approve").collect();
    assert_eq!(approvals.len(), 1, "the refused attempts left no approval");
    assert_eq!(approvals[0]["target"].as_str(), Some(key.as_str()));
    assert_eq!(approvals[0]["actor"]["id"], "lee-compliance");
    assert_eq!(approvals[0]["details"]["requested_by"].as_str(), Some(requester.as_str()));
    assert_eq!(approvals[0]["reason"], "mandate MM-2026-07 checked");
    drop(server);
}

fn ok_as(data: &Path, url: &str, token: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = ks_as(data, url, token, &all);
    assert!(out.status.success(), "{args:?} failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}
