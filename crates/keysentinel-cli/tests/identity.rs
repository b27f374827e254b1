//! Who stands behind an account, through the real binary (issue #13, item 1): owners,
//! representatives and the desks that operate a corporate account's keys recorded, changed (a
//! new version) and ended, each audited; a key names the desk that operates it, and may not name
//! a party off the record, ended, or one that does not operate keys; retail accounts keep no
//! desks.

// Test helpers may unwrap and panic: a failure there is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Output;

fn key_operated_by(data: &Path, u: &str, account: &str, party: &str) -> Output {
    ks(
        data,
        u,
        &key_create(&[
            "--scheme",
            "binance",
            "--account",
            account,
            "--scopes",
            "read,trade",
            "--allow",
            "198.51.100.0/24",
            "--purpose",
            "own_bot",
            "--operated-by",
            party,
            "--json",
        ]),
    )
}

#[test]
fn an_accounts_parties_are_recorded_versioned_ended_and_name_who_operates_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Corporate keys must name who operates them under this policy.
    let policy = dir.path().join("policy.toml");
    let text = keysentinel_policy_with_operators();
    std::fs::write(&policy, text).unwrap();
    let server = serve_with(&data, &["--policy", policy.to_str().unwrap()]);
    let u = server.url.clone();
    for (a, seg) in [("corp-1", "corporate"), ("retail-1", "retail")] {
        ok_json(&data, &u, &["accounts", "create", a, "--segment", seg, "--verification", "verified"]);
    }
    let party = |account: &str, kind: &str, name: &str, id: &str| {
        let args = [
            "parties",
            "create",
            account,
            "--kind",
            kind,
            "--name",
            name,
            "--document-ref",
            "KYB-4411",
            "--id",
            id,
            "--reason",
            "onboarding file",
        ];
        ks(&data, &u, &args)
    };
    assert!(party("corp-1", "beneficial_owner", "Park Jisoo", "bo-1").status.success());
    assert!(party("corp-1", "desk", "Delta-one desk", "desk-7").status.success());
    // A retail customer operates their own keys: no desks on their record.
    let retail_desk = party("retail-1", "desk", "Home desk", "desk-x");
    assert_eq!(code(&retail_desk), 3, "{}", stderr(&retail_desk));
    assert!(stderr(&retail_desk).contains("kind"), "{}", stderr(&retail_desk));

    // Under this policy a corporate key names who operates it.
    let unnamed = ks(
        &data,
        &u,
        &key_create(&[
            "--scheme",
            "binance",
            "--account",
            "corp-1",
            "--scopes",
            "read",
            "--allow",
            "198.51.100.0/24",
            "--purpose",
            "portfolio_read_only",
        ]),
    );
    assert_eq!(code(&unnamed), 7, "{}", stderr(&unnamed));
    assert!(stderr(&unnamed).contains("operator_required"), "{}", stderr(&unnamed));

    // The key names its desk; nobody off the record, and never an owner who does not operate it.
    let key: Value = serde_json::from_slice(&key_operated_by(&data, &u, "corp-1", "desk-7").stdout).unwrap();
    let by = &key["key"]["operated_by"];
    assert_eq!(
        (by["kind"].as_str(), by["party_id"].as_str(), by["name"].as_str()),
        (Some("desk"), Some("desk-7"), Some("Delta-one desk"))
    );
    for who in ["nobody", "bo-1"] {
        let refused = key_operated_by(&data, &u, "corp-1", who);
        assert_eq!(code(&refused), 7, "{who}: {}", stderr(&refused));
        assert!(stderr(&refused).contains("operator_not_on_record"), "{}", stderr(&refused));
    }

    // A change is a new version; an end stops keys naming it.
    let renamed =
        ok_json(&data, &u, &["parties", "update", "desk-7", "--name", "Delta-one desk (Seoul)", "--reason", "moved"]);
    assert_eq!((renamed["version"].as_u64(), renamed["name"].as_str()), (Some(2), Some("Delta-one desk (Seoul)")));
    let ended = ok_json(&data, &u, &["parties", "end", "desk-7", "--reason", "desk closed"]);
    assert_eq!((ended["version"].as_u64(), ended["ended"]["reason"].as_str()), (Some(3), Some("desk closed")));
    let after_end = key_operated_by(&data, &u, "corp-1", "desk-7");
    assert_eq!(code(&after_end), 7, "{}", stderr(&after_end));
    let again = ks(&data, &u, &["parties", "end", "desk-7", "--reason", "twice"]);
    assert_eq!(code(&again), 6, "{}", stderr(&again));
    let listed = ok_json(&data, &u, &["parties", "list", "corp-1"]);
    let ids: Vec<&str> = listed.as_array().unwrap().iter().map(|p| p["party_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["bo-1", "desk-7"], "ended records stay on the record");

    // Audited: each record, each change with what changed, the key with who operates it.
    let log = ok_json(&data, &u, &["audit", "list", "--limit", "1000"]);
    let log = log.as_array().unwrap();
    let of = |action: &str, target: &str| log.iter().filter(|e| e["action"] == action && e["target"] == target).count();
    assert_eq!((of("party.create", "bo-1"), of("party.create", "desk-7"), of("party.end", "desk-7")), (1, 1, 1));
    let update = log.iter().find(|e| e["action"] == "party.update").unwrap();
    assert_eq!(update["details"]["changed"]["name"]["from"], "Delta-one desk", "{update}");
    let created = log.iter().find(|e| e["action"] == "key.create").unwrap();
    assert_eq!(created["details"]["operated_by"]["party_id"], "desk-7", "{created}");
    drop(server);
}

/// The default key policy with `operator_required` for corporate accounts.
fn keysentinel_policy_with_operators() -> String {
    let out = std::process::Command::new(BIN).args(["policy", "default"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.replace("[segments.corporate]\n", "[segments.corporate]\noperator_required = true\n")
}
