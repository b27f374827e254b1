//! `simulate` and `replay` end to end on the real geo data: deterministic, and bad input is
//! reported and skipped, never fatal.

// Test helpers may unwrap and panic: a failure there is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{geo_dir, BIN};
use std::path::PathBuf;
use std::process::Command;

fn ks(args: &[&str], geo: &Option<PathBuf>) -> std::process::Output {
    let mut c = Command::new(BIN);
    c.args(args);
    match geo {
        Some(d) => c.arg("--geo-dir").arg(d),
        None => c.arg("--geo-dir").arg(std::env::temp_dir().join("no-geo-data-here")),
    };
    c.output().unwrap()
}

#[test]
fn simulate_then_replay_twice_gives_identical_decisions() {
    let geo = geo_dir();
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    let simulate = |out: &str, truth: &str| {
        let args = ["simulate", "--out", out, "--truth", truth, "--seed", "11", "--accounts", "300", "--hours", "12"];
        ks(&[&args[..], &["--sharing-rate", "0.03"]].concat(), &geo)
    };
    let sim = simulate(&p("ev.ndjson"), &p("truth.ndjson"));
    if geo.is_none() {
        // The directory named does not exist: a clear usage error.
        assert_eq!(sim.status.code(), Some(2), "{}", String::from_utf8_lossy(&sim.stderr));
        return;
    }
    assert!(sim.status.success(), "{}", String::from_utf8_lossy(&sim.stderr));
    let again = simulate(&p("ev2.ndjson"), &p("truth2.ndjson"));
    assert!(again.status.success());
    assert_eq!(
        std::fs::read(p("ev.ndjson")).unwrap(),
        std::fs::read(p("ev2.ndjson")).unwrap(),
        "simulation is deterministic"
    );

    let one = ks(&["replay", &p("ev.ndjson"), "--out", &p("d1.ndjson"), "--truth", &p("truth.ndjson")], &geo);
    assert!(one.status.success(), "{}", String::from_utf8_lossy(&one.stderr));
    let two = ks(&["replay", &p("ev.ndjson"), "--out", &p("d2.ndjson")], &geo);
    assert!(two.status.success());
    let (d1, d2) = (std::fs::read(p("d1.ndjson")).unwrap(), std::fs::read(p("d2.ndjson")).unwrap());
    assert!(!d1.is_empty());
    assert_eq!(d1, d2, "two replays of the same file give identical output");
    for line in String::from_utf8(d1).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(["monitor", "warn", "reverify", "invalidate"].contains(&v["level"].as_str().unwrap()));
        assert!(v["reasons"].as_array().is_some_and(|r| !r.is_empty() && r[0]["evidence"].is_string()));
    }
    let report = String::from_utf8_lossy(&one.stdout);
    assert!(report.contains("invalidate: precision"), "{report}");
}

#[test]
fn malformed_lines_are_reported_with_their_number_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ev.ndjson");
    std::fs::write(
        &file,
        concat!(
            r#"{"type":"account","account_id":"a","segment":"retail","declared_countries":["KR"]}"#, "\n",
            "{not json\n",
            r#"{"type":"request","ts":"2026-11-28T00:00:00.000Z","key_id":"k","ip":"999.1.1.1","outcome":"VALID"}"#, "\n",
            r#"{"type":"complaint","ts":"2026-11-28T00:00:01.000Z","account_id":"a","text":"I shared my key","extra":{"kept":true}}"#, "\n",
            // Unknown values of closed fields: reported, never read as something else.
            r#"{"type":"request","ts":"2026-11-28T00:00:02.000Z","key_id":"k","ip":"203.0.113.7","outcome":"ok"}"#, "\n",
            r#"{"type":"account","account_id":"b","segment":"vip","declared_countries":["KR"]}"#, "\n",
            r#"{"type":"relationship","from":"a","to":"b","kind":"friend"}"#, "\n",
            r#"{"type":"account","account_id":"c","segment":"retail","declared_countries":["Korea"]}"#, "\n",
        ),
    )
    .unwrap();
    let out =
        Command::new(BIN).args(["replay", file.to_str().unwrap()]).env_remove("KEYSENTINEL_GEO_DIR").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ev.ndjson:2: skipped: not a JSON object"), "{err}");
    assert!(err.contains("ev.ndjson:3: skipped: invalid ip"), "{err}");
    assert!(err.contains("ev.ndjson:5: skipped: invalid outcome: \"ok\" is not a verify code"), "{err}");
    assert!(err.contains("ev.ndjson:6: skipped: invalid segment: \"vip\""), "{err}");
    assert!(err.contains("ev.ndjson:7: skipped: invalid kind: unknown relationship \"friend\""), "{err}");
    assert!(err.contains("ev.ndjson:8: skipped: invalid declared_countries: \"Korea\""), "{err}");
    assert!(err.contains("8 lines (6 skipped)"), "{err}");

    let missing = Command::new(BIN).args(["replay", "/nonexistent/events.ndjson"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let bad_rate = Command::new(BIN)
        .args(["simulate", "--out", "/tmp/x", "--truth", "/tmp/y", "--sharing-rate", "0.9"])
        .output()
        .unwrap();
    assert_eq!(bad_rate.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_rate.stderr).contains("--sharing-rate"));
}

#[test]
fn a_policy_backtest_shows_what_would_change_key_by_key() {
    let Some(geo) = geo_dir() else { return };
    let geo = Some(geo);
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    let sim = ks(
        &[
            "simulate",
            "--truth",
            &p("truth.ndjson"),
            "--out",
            &p("ev.ndjson"),
            "--seed",
            "5",
            "--accounts",
            "300",
            "--hours",
            "12",
            "--sharing-rate",
            "0.03",
        ],
        &geo,
    );
    assert!(sim.status.success(), "{}", String::from_utf8_lossy(&sim.stderr));
    // Stricter for retail: revoke already at reverify.
    let shipped = include_str!("../../../deploy/response/response-policy.toml");
    let strict = shipped.replace("version = \"builtin-2026-11\"", "version = \"strict-1\"").replacen(
        "reverify = { action = \"suspend\", automatic = true",
        "reverify = { action = \"revoke\", automatic = true",
        1,
    );
    assert_ne!(strict, shipped);
    std::fs::write(p("strict.toml"), &strict).unwrap();
    let run = ks(&["policy", "backtest", "--policy", &p("strict.toml"), "--events", &p("ev.ndjson"), "--json"], &geo);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(
        (report["current_policy"].as_str(), report["new_policy"].as_str()),
        (Some("builtin-2026-11"), Some("strict-1"))
    );
    let differences = report["differences"].as_array().unwrap();
    assert!(!differences.is_empty(), "{report}");
    for d in differences {
        assert_eq!((d["segment"].as_str(), d["stage"].as_str()), (Some("retail"), Some("reverify")), "{d}");
        assert_eq!((d["current"].as_str(), d["new"].as_str()), (Some("suspend"), Some("revoke")), "{d}");
    }
    // The same policy against itself changes nothing.
    let same = ks(
        &[
            "policy",
            "backtest",
            "--policy",
            &p("strict.toml"),
            "--current",
            &p("strict.toml"),
            "--events",
            &p("ev.ndjson"),
            "--json",
        ],
        &geo,
    );
    let same: serde_json::Value = serde_json::from_slice(&same.stdout).unwrap();
    assert_eq!(same["differences"].as_array().map(Vec::len), Some(0));
    // A policy whose stages go the wrong way is refused with the stage named.
    std::fs::write(
        p("bad.toml"),
        shipped.replacen("action = \"revoke\", automatic = true", "action = \"notify\", automatic = true", 1),
    )
    .unwrap();
    let bad = ks(&["policy", "backtest", "--policy", &p("bad.toml"), "--events", &p("ev.ndjson")], &geo);
    assert_eq!(bad.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("[retail.invalidate]"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
fn replaying_in_two_parts_through_a_saved_state_gives_the_whole_replays_decisions() {
    let geo = geo_dir();
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    // With the geo data when there is some; else synthetic addresses and no geo at all (fewer
    // indicators, but still decisions, and the same property to show).
    let run = |args: &[&str]| {
        let mut c = Command::new(BIN);
        c.args(args);
        if let Some(g) = &geo {
            c.arg("--geo-dir").arg(g);
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    };
    let (ev, truth) = (p("ev.ndjson"), p("t.ndjson"));
    run(&["simulate", "--out", &ev, "--truth", &truth, "--seed", "3", "--accounts", "150", "--hours", "28"]);
    let text = std::fs::read_to_string(p("ev.ndjson")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // Cut a few hours past the first day boundary (the simulation starts at midnight UTC).
    let cut = lines.len() * 7 / 8;
    std::fs::write(p("first.ndjson"), lines[..cut].join("\n") + "\n").unwrap();
    std::fs::write(p("rest.ndjson"), lines[cut..].join("\n") + "\n").unwrap();

    run(&["replay", &p("ev.ndjson"), "--out", &p("whole.ndjson")]);
    run(&["replay", &p("first.ndjson"), "--out", &p("d1.ndjson"), "--save-state", &p("state.bin")]);
    run(&["replay", &p("rest.ndjson"), "--out", &p("d2.ndjson"), "--load-state", &p("state.bin")]);
    let whole = std::fs::read(p("whole.ndjson")).unwrap();
    let (d1, d2) = (std::fs::read(p("d1.ndjson")).unwrap(), std::fs::read(p("d2.ndjson")).unwrap());
    assert!(!d1.is_empty() && !d2.is_empty(), "decisions on both sides of the cut");
    assert!([d1, d2].concat() == whole, "the two parts' decisions, one after the other, are the whole replay's");

    // A state saved under other settings is refused, clearly, with its file named.
    std::fs::write(p("other.toml"), "link_accounts = 4\n").unwrap();
    let mut c = Command::new(BIN);
    c.args(["replay", &p("rest.ndjson"), "--load-state", &p("state.bin"), "--config", &p("other.toml")]);
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("state.bin") && err.contains("other detection settings"), "{err}");
    // And a damaged one.
    let mut state = std::fs::read(p("state.bin")).unwrap();
    let mid = state.len() / 2;
    state[mid] ^= 1;
    std::fs::write(p("state.bin"), state).unwrap();
    let out = Command::new(BIN).args(["replay", &p("rest.ndjson"), "--load-state", &p("state.bin")]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("corrupt"), "{err}");
}

/// Through the binary, on the real geo data: the owner's own laptop, known from a login on their
/// phone's carrier, logs in through a line in the US (AS701) two minutes after the key was used
/// from their home line in Korea, then uses the key through it while the phone uses it at home —
/// a head office's VPN, which places nobody. A stranger logging in there on a device the owner
/// never used, and using the key the same way, is someone in the US beside the owner.
#[test]
fn a_tunnel_needs_the_owners_own_device_a_stranger_abroad_is_still_seen() {
    let Some(geo) = geo_dir() else { return };
    let geo = Some(geo);
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    let at = |min: i64| format!("2026-12-01T{:02}:{:02}:00Z", min / 60, min % 60);
    let req = |min: i64, ip: &str, ua: &str| {
        format!(
            r#"{{"type":"request","ts":"{}","key_id":"k","ip":"{ip}","user_agent":"{ua}","method":"GET","path":"/v1/accounts","outcome":"VALID"}}"#,
            at(min)
        )
    };
    let login = |min: i64, ip: &str, device: &str| {
        format!(
            r#"{{"type":"login","ts":"{}","account_id":"a","ip":"{ip}","user_agent":"Mozilla/5.0","device_id":"{device}"}}"#,
            at(min)
        )
    };
    let (home, abroad, phone) = ("210.216.119.41", "204.76.11.252", "27.160.10.10");
    let indicators = |device: &str| {
        let mut lines = vec![
            r#"{"type":"account","account_id":"a","segment":"retail","declared_countries":["KR"]}"#.to_owned(),
            r#"{"type":"key","key_id":"k","account_id":"a","scopes":["read","trade"],"ip_allowlist":[]}"#.to_owned(),
            login(5, phone, "pc-laptop-1"),
        ];
        lines.extend((0..30).map(|i| req(i * 4, home, "ccxt/4.5.90")));
        lines.push(login(118, abroad, device));
        for m in [121, 125, 129] {
            lines.push(req(m, abroad, "ccxt/4.5.90"));
            lines.push(req(m + 2, home, "CoinPilot/5.2.3"));
        }
        std::fs::write(p("ev.ndjson"), lines.join("\n") + "\n").unwrap();
        let run = ks(&["replay", &p("ev.ndjson"), "--out", &p("dec.ndjson"), "--trace", &p("trace.ndjson")], &geo);
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        std::fs::read_to_string(p("trace.ndjson"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["indicator"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let owner = indicators("pc-laptop-1");
    assert!(
        !owner.iter().any(|i| i == "concurrent_distant_use" || i == "impossible_travel"),
        "the owner's own laptop through a tunnel: {owner:?}"
    );
    let stranger = indicators("pc-stranger");
    assert!(stranger.iter().any(|i| i == "concurrent_distant_use"), "a stranger in the US: {stranger:?}");
}
