//! Importing an existing registry through the real binary (issue #13, item 7): accounts, their
//! parties, a vendor's application and a mandate from NDJSON, accounts from CSV; a batch with bad
//! lines names every one and imports nothing; a line a rule refuses names its line and takes the
//! whole batch with it; only an admin may import. Each import is audited line by line and as a
//! batch.

// Test helpers may unwrap and panic: a failure there is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;

const REGISTRY: &str = r#"{"type":"account","account_id":"corp-9","segment":"corporate","verification":"verified","declared_countries":["KR"]}
{"type":"party","account_id":"corp-9","party_id":"bo-9","kind":"beneficial_owner","name":"Park Jisoo","document_ref":"KYB-9"}
{"type":"party","account_id":"mm-9","party_id":"desk-9","kind":"desk","name":"MM desk","document_ref":"DESK-9"}
{"type":"account","account_id":"mm-9","segment":"market_maker","verification":"verified"}

{"type":"vendor","vendor_id":"gridbot","legal_name":"Gridbot Ltd.","egress_cidrs":["198.51.100.0/24"]}
{"type":"counterparty","counterparty_id":"mm9-own","kind":"mm_mandate","account_id":"mm-9","principal":"own","symbols":["BTC-KRW"],"effective_from":"2026-12-01T00:00:00Z","effective_until":"2027-12-01T00:00:00Z","document_ref":"MM-9"}
"#;

#[test]
fn an_existing_registry_is_imported_whole_or_not_at_all_with_every_bad_line_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data);
    let u = server.url.clone();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    };
    let import = |path: &str| {
        ks(&data, &u, &["registry", "import", path, "--reason", "migration from the old registry", "--json"])
    };

    // Bad lines: every one named, nothing imported.
    let broken = file("broken.ndjson", &format!("{REGISTRY}not json\n{{\"type\":\"teleport\"}}\n"));
    let out = import(&broken);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("line 8: not JSON") && stderr(&out).contains("line 9: unknown type"),
        "{}",
        stderr(&out)
    );
    // A field given twice: refused, naming it, rather than one of the two values kept.
    let twice = file(
        "twice.ndjson",
        "{\"type\":\"account\",\"account_id\":\"y-1\",\"segment\":\"broker\",\"segment\":\"retail\"}\n",
    );
    let out = import(&twice);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("line 1: not JSON: field \"segment\" appears twice"), "{}", stderr(&out));
    assert_ne!(code(&ks(&data, &u, &["accounts", "show", "y-1"])), 0, "nothing imported");
    // A line a rule refuses (a desk on a retail account): named, and the batch goes with it.
    let refused = file(
        "refused.ndjson",
        &format!("{REGISTRY}{{\"type\":\"account\",\"account_id\":\"r-9\",\"segment\":\"retail\"}}\n{{\"type\":\"party\",\"account_id\":\"r-9\",\"kind\":\"desk\",\"name\":\"x\",\"document_ref\":\"D\"}}\n"),
    );
    let out = import(&refused);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("line 9:"), "{}", stderr(&out));
    let gone = ks(&data, &u, &["accounts", "show", "corp-9"]);
    assert_ne!(code(&gone), 0, "nothing of a refused batch is kept");

    // The whole registry: accounts first (a party may come before its account in the file).
    let ok = file("registry.ndjson", REGISTRY);
    let out = import(&ok);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["imported"], 6);
    let lines: Vec<u64> = report["records"].as_array().unwrap().iter().map(|r| r["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [1, 2, 3, 4, 6, 7], "reported by line");
    assert_eq!(ok_json(&data, &u, &["accounts", "show", "mm-9"])["segment"], "market_maker");
    assert_eq!(ok_json(&data, &u, &["parties", "list", "mm-9"])[0]["party_id"], "desk-9");
    assert_eq!(ok_json(&data, &u, &["vendors", "show", "gridbot"])["status"], "applied");
    assert_eq!(ok_json(&data, &u, &["counterparties", "show", "mm9-own"])["kind"], "mm_mandate");
    // Again: the records exist, so the batch is refused whole (409), naming the first line.
    let again = import(&ok);
    assert_eq!(code(&again), 6, "{}", stderr(&again));
    assert!(stderr(&again).contains("line 1:"), "{}", stderr(&again));

    // CSV: a header, lists `;`-separated.
    let csv = file(
        "accounts.csv",
        "type,account_id,segment,verification,declared_countries\naccount,csv-1,retail,verified,KR\naccount,csv-2,broker,verified,\"KR;SG\"\n",
    );
    let out = import(&csv);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        ok_json(&data, &u, &["accounts", "show", "csv-2"])["declared_countries"],
        serde_json::json!(["KR", "SG"])
    );

    // Audited: each record with its line, and each batch with its digest.
    let log = ok_json(&data, &u, &["audit", "list", "--limit", "1000"]);
    let log = log.as_array().unwrap();
    let created = log.iter().find(|e| e["action"] == "account.create" && e["target"] == "mm-9").unwrap();
    assert!(created["reason"].as_str().unwrap().starts_with("registry import, line 4"), "{created}");
    let batches: Vec<&Value> = log.iter().filter(|e| e["action"] == "registry.import").collect();
    assert_eq!(batches.len(), 2, "the refused batches left nothing");
    assert_eq!(batches[0]["details"]["digest"], report["digest"]);
    assert_eq!(
        (batches[0]["details"]["parties"].as_u64(), batches[0]["details"]["counterparties"].as_u64()),
        (Some(2), Some(1))
    );

    // Only an admin imports a registry.
    let analyst = ok_json(&data, &u, &["operators", "create", "ana-9", "--role", "analyst"])["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let denied = Command::new(BIN)
        .args(["registry", "import", &ok, "--reason", "x", "--data-dir"])
        .arg(&data)
        .env("KEYSENTINEL_URL", &u)
        .env("KEYSENTINEL_TOKEN", &analyst)
        .output()
        .unwrap();
    assert_eq!(code(&denied), 4, "{}", stderr(&denied));
    drop(server);
}
