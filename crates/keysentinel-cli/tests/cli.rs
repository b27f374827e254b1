//! End to end: the real `keysentinel` binary serving on the embedded store, driven by the real
//! CLI; then the database file is tampered with directly and `audit verify` must name the entry.

// Test helpers may unwrap and panic: a failure there is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::*;

/// Runs a scripted lifecycle and returns the data directory (server stopped).
fn scripted_lifecycle() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data);
    let u = server.url.as_str();
    ok_json(
        &data,
        u,
        &["accounts", "create", "retail-1", "--segment", "retail", "--verification", "verified", "--countries", "KR"],
    );
    ok_json(&data, u, &["accounts", "create", "corp-1", "--segment", "corporate", "--verification", "verified"]);
    let key = ok_json(
        &data,
        u,
        &key_create(&[
            "--scheme",
            "binance",
            "--account",
            "retail-1",
            "--scopes",
            "read,trade",
            "--purpose",
            "own_bot",
        ]),
    );
    let ak = key["key"]["access_key"].as_str().unwrap().to_owned();
    assert!(key["secret"].as_str().unwrap().starts_with("kss_"));
    ok_json(&data, u, &["keys", "suspend", &ak, "--reason", "suspected sharing"]);
    ok_json(&data, u, &["keys", "resume", &ak, "--reason", "cleared"]);
    let rotated =
        ok_json(&data, u, &["keys", "rotate", &ak, "--overlap-seconds", "0", "--reason", "scheduled rotation"]);
    let new_ak = rotated["key"]["access_key"].as_str().unwrap().to_owned();
    ok_json(&data, u, &["keys", "revoke", &new_ak, "--reason", "customer request"]);
    let shown = ok_json(&data, u, &["keys", "show", &ak]);
    assert_eq!(shown["status"], "expired");
    assert_eq!(shown["rotated_to"], new_ak.as_str());

    // Policy violations: refused with the rule's name and exit code 7.
    let corp = ks(
        &data,
        u,
        &key_create(&[
            "--scheme",
            "binance",
            "--account",
            "corp-1",
            "--scopes",
            "read",
            "--purpose",
            "portfolio_read_only",
        ]),
    );
    assert_eq!(code(&corp), 7, "{}", stderr(&corp));
    assert!(stderr(&corp).contains("allowlist_required"));
    let vendor = ks(
        &data,
        u,
        &key_create(&[
            "--scheme",
            "binance",
            "--account",
            "retail-1",
            "--scopes",
            "read,withdraw",
            "--allow",
            "203.0.113.0/24",
            "--vendor",
            "bot-vendor",
            "--purpose",
            "vendor_copy_trading",
        ]),
    );
    assert_eq!(code(&vendor), 7);
    assert!(stderr(&vendor).contains("vendor_key_sensitive_scope"), "{}", stderr(&vendor));
    // Illegal transition and bad input have their own exit codes.
    let resume = ks(&data, u, &["keys", "resume", &new_ak, "--reason", "undo"]);
    assert_eq!(code(&resume), 6, "{}", stderr(&resume));
    let bad_cidr = ks(
        &data,
        u,
        &key_create(&[
            "--scheme",
            "binance",
            "--account",
            "retail-1",
            "--scopes",
            "read",
            "--allow",
            "10.0.0.1/8",
            "--purpose",
            "portfolio_read_only",
        ]),
    );
    assert_eq!(code(&bad_cidr), 3);
    assert!(stderr(&bad_cidr).contains("host bits"), "{}", stderr(&bad_cidr));
    let missing = ks(&data, u, &["keys", "show", "ksk_doesnotexist0000000000000000000000"]);
    assert_eq!(code(&missing), 5);
    drop(server);
    (dir, data)
}

fn verify(db: &Path) -> Output {
    Command::new(BIN).args(["audit", "verify", "--db"]).arg(db).output().unwrap()
}

/// Copies the database and applies `sql` to the copy, as an attacker with the file would
/// (dropping the append-only triggers first).
fn tampered(data: &Path, name: &str, sql: &str) -> PathBuf {
    let copy = data.join(format!("{name}.db"));
    std::fs::copy(data.join("keysentinel.db"), &copy).unwrap();
    // After a kill the newest commits live in the write-ahead log: copy it with the file.
    let wal = data.join("keysentinel.db-wal");
    if wal.exists() {
        std::fs::copy(&wal, data.join(format!("{name}.db-wal"))).unwrap();
    }
    let conn = rusqlite::Connection::open(&copy).unwrap();
    conn.execute_batch(
        "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete; \
         DROP TRIGGER audit_checkpoints_no_update; DROP TRIGGER audit_checkpoints_no_delete;",
    )
    .unwrap();
    conn.execute_batch(sql).unwrap();
    copy
}

#[test]
fn lifecycle_then_every_kind_of_tampering_is_detected_and_named() {
    let (_dir, data) = scripted_lifecycle();
    // Server stopped with SIGKILL: every acknowledged change was already durable.
    let clean = verify(&data.join("keysentinel.db"));
    assert!(clean.status.success(), "{}", stderr(&clean));
    assert!(
        String::from_utf8_lossy(&clean.stdout).contains("audit log OK: 9 entries"),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );

    let leaf = |text: &str| keysentinel_audit::merkle::leaf_hash(text.as_bytes());
    // Rewrites entry 4 and fixes its stored hash, as a careful attacker would.
    let rewritten = {
        let copy = tampered(&data, "rehashed", "SELECT 1");
        let conn = rusqlite::Connection::open(&copy).unwrap();
        let text: String = conn.query_row("SELECT entry FROM audit_log WHERE seq = 4", [], |r| r.get(0)).unwrap();
        let forged = text.replace("suspected sharing", "routine check");
        assert_ne!(forged, text);
        conn.execute(
            "UPDATE audit_log SET entry = ?1, leaf = ?2 WHERE seq = 4",
            rusqlite::params![forged, leaf(&forged).to_vec()],
        )
        .unwrap();
        copy
    };
    let cases: Vec<(PathBuf, &str)> = vec![
        (tampered(&data, "update", "UPDATE audit_log SET entry = replace(entry, 'cleared', 'CLEARED') WHERE seq = 5"), "entry 5 was modified"),
        (rewritten, "entry 4 was modified"),
        (tampered(&data, "delete", "DELETE FROM audit_log WHERE seq = 3"), "entry 3 is missing"),
        (
            tampered(
                &data,
                "insert",
                "UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 3; UPDATE audit_log SET seq = seq - 999 WHERE seq >= 1000; \
                 INSERT INTO audit_log(seq, entry, leaf) SELECT 3, replace(entry, 'key issued', 'forged entry'), leaf FROM audit_log WHERE seq = 4;",
            ),
            "entry 3 was modified",
        ),
        (
            tampered(
                &data,
                "reorder",
                "UPDATE audit_log SET seq = -1 WHERE seq = 6; UPDATE audit_log SET seq = 6 WHERE seq = 7; UPDATE audit_log SET seq = 7 WHERE seq = -1;",
            ),
            "entry 6",
        ),
        (tampered(&data, "truncate", "DELETE FROM audit_log WHERE seq >= 7"), "entry 7 is missing"),
    ];
    for (db, needle) in cases {
        let out = verify(&db);
        let err = stderr(&out);
        println!("{}: {}", db.file_name().unwrap_or_default().to_string_lossy(), err.trim());
        assert_eq!(code(&out), 8, "{}: expected failure, got: {err}", db.display());
        assert!(err.contains(needle), "{}: {needle:?} not in {err}", db.display());
        assert!(err.contains("entry"), "names the entry: {err}");
    }
}

#[test]
fn exported_checkpoints_catch_a_rollback_of_the_whole_tail() {
    let (_dir, data) = scripted_lifecycle();
    let export = data.join("export.json");
    let out = Command::new(BIN)
        .args(["audit", "export", "--db"])
        .arg(data.join("keysentinel.db"))
        .arg("--out")
        .arg(&export)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let exported: Value = serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    let key = exported["verifier_key"].as_str().unwrap().to_owned();
    // An attacker removes the last entries and their checkpoints: the log alone is consistent,
    // but the rows those entries wrote no longer match what the remaining log says...
    let rolled_back = tampered(
        &data,
        "rollback",
        "DELETE FROM audit_log WHERE seq >= 6; DELETE FROM audit_checkpoints WHERE size > 6;",
    );
    let alone = verify(&rolled_back);
    assert_eq!(code(&alone), 8, "{}", stderr(&alone));
    assert!(stderr(&alone).contains("state verification FAILED: api_keys row"), "{}", stderr(&alone));
    // ...and against the checkpoint exported earlier, the log check names the missing entry.
    let out = Command::new(BIN)
        .args(["audit", "verify", "--log-key", &key, "--checkpoint"])
        .arg(&export)
        .arg("--db")
        .arg(&rolled_back)
        .output()
        .unwrap();
    assert_eq!(code(&out), 8, "{}", stderr(&out));
    assert!(stderr(&out).contains("entry 6 is missing"), "{}", stderr(&out));
    // A pinned key that is not the log's refuses every checkpoint.
    let other = "keysentinel/audit/other+00000000+AQ==";
    let out = Command::new(BIN)
        .args(["audit", "verify", "--log-key", other, "--db"])
        .arg(data.join("keysentinel.db"))
        .output()
        .unwrap();
    assert_ne!(code(&out), 0);
}

#[test]
fn init_is_one_time_and_tokens_gate_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = Command::new(BIN).args(["init", "--json", "--data-dir"]).arg(&data).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let token = serde_json::from_slice::<Value>(&out.stdout).unwrap()["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("kso_"));
    let again = Command::new(BIN).args(["init", "--data-dir"]).arg(&data).output().unwrap();
    assert_eq!(code(&again), 6, "a second bootstrap is refused: {}", stderr(&again));

    let server = serve(&data);
    assert!(!data.join("admin.token").exists(), "serve does not mint a second admin on an initialised store");
    let who = Command::new(BIN)
        .args(["operators", "whoami", "--data-dir"])
        .arg(&data)
        .env("KEYSENTINEL_URL", &server.url)
        .env("KEYSENTINEL_TOKEN", &token)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&who.stdout).contains("admin (admin)"), "{}", stderr(&who));
    let anon = ks(&data, &server.url, &["keys", "list"]);
    assert_eq!(code(&anon), 4, "{}", stderr(&anon));
    // The data directory is locked while the server runs.
    let second = Command::new(BIN).args(["secrets", "rewrap", "--data-dir"]).arg(&data).output().unwrap();
    assert_ne!(code(&second), 0);
    assert!(stderr(&second).contains("in use by another keysentinel process"), "{}", stderr(&second));
    drop(server);
    let unreachable = ks(&data, "http://127.0.0.1:9", &["keys", "list"]);
    assert_eq!(code(&unreachable), 9);
    let usage = Command::new(BIN).args(["keys", "list", "--status", "sleeping"]).output().unwrap();
    assert_eq!(code(&usage), 2);
}

/// Starts `serve` on `data` and returns its exit code and stderr if it refuses to start; fails
/// the test if it starts listening.
fn serve_refuses(data: &Path) -> (i32, String) {
    serve_refuses_with(data, &[])
}

fn serve_refuses_with(data: &Path, extra: &[&str]) -> (i32, String) {
    use std::io::{BufRead, BufReader, Read};
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(extra)
        .env("KEYSENTINEL_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    if !line.is_empty() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("serve started on tampered data: {line}");
    }
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (child.wait().unwrap().code().unwrap_or(-1), err)
}

#[test]
fn a_state_row_changed_without_an_entry_is_named_and_the_server_refuses_to_start() {
    let (_dir, data) = scripted_lifecycle();
    let db = data.join("keysentinel.db");
    {
        // A gateway operator, whose role an attacker will raise to admin.
        let server = serve(&data);
        ok_json(&data, &server.url, &["operators", "create", "edge-1", "--role", "gateway"]);
    }
    let clean = verify(&db);
    assert!(clean.status.success(), "{}", stderr(&clean));
    assert!(String::from_utf8_lossy(&clean.stdout).contains("state rows match their history"));
    let revoked: String = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT access_key FROM api_keys WHERE status = 'revoked'", [], |r| r.get(0))
        .unwrap();
    let revive = format!(
        "UPDATE api_keys SET status = 'active', doc = replace(doc, '\"status\":\"revoked\"', '\"status\":\"active\"') WHERE access_key = '{revoked}'"
    );
    let cases: Vec<(PathBuf, String)> = vec![
        (tampered(&data, "revived", &revive), format!("api_keys row {revoked} was changed without an audit entry")),
        (
            tampered(&data, "status-column", &format!("UPDATE api_keys SET status = 'active' WHERE access_key = '{revoked}'")),
            format!("api_keys row {revoked} was changed"),
        ),
        (
            tampered(
                &data,
                "promoted",
                "UPDATE operators SET role = 'admin', doc = replace(doc, '\"role\":\"gateway\"', '\"role\":\"admin\"') WHERE operator_id = 'edge-1'",
            ),
            "operators row edge-1 was changed".into(),
        ),
        (
            tampered(&data, "inserted", "INSERT INTO accounts(account_id, segment, verification, doc) SELECT 'ghost-1', segment, verification, doc FROM accounts WHERE account_id = 'corp-1'"),
            "accounts row ghost-1 has no audit entry".into(),
        ),
        (tampered(&data, "deleted", "DELETE FROM accounts WHERE account_id = 'corp-1'"), "accounts row corp-1 is missing".into()),
    ];
    for (copy, needle) in &cases {
        let out = verify(copy);
        let err = stderr(&out);
        println!("{}: {}", copy.file_name().unwrap_or_default().to_string_lossy(), err.trim());
        assert_eq!(code(&out), 8, "{}: {err}", copy.display());
        assert!(err.contains(needle.as_str()), "{needle:?} not in {err}");
        let json = Command::new(BIN).args(["audit", "verify", "--json", "--db"]).arg(copy).output().unwrap();
        assert_eq!(code(&json), 8);
        let report: Value = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(report["ok"], false);
        assert!(report["table"].is_string() && report["row"].is_string(), "{report}");
    }

    // The same edit on the live data directory: serve refuses to start, names the row, exits 8.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(&revive).unwrap();
    drop(conn);
    let (exit, err) = serve_refuses(&data);
    assert_eq!(exit, 8, "{err}");
    assert!(err.contains(&format!("api_keys row {revoked} was changed without an audit entry")), "{err}");
    assert!(err.contains("audit verify"), "says what to do: {err}");
}

#[test]
fn an_overflowing_grant_is_a_400_and_a_node_whose_writer_stops_says_so_and_exits() {
    use std::io::{BufRead, BufReader, Read};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--no-detection", "--data-dir"])
        .arg(&data)
        .env("KEYSENTINEL_LOG", "warn")
        .env("KEYSENTINEL_TEST_STOP_WRITER_ON_SIGUSR1", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let u = line.trim().strip_prefix("keysentinel listening on ").expect("listening line").to_owned();
    let http = reqwest::blocking::Client::new();
    let status = |path: &str| http.get(format!("{u}{path}")).send().ok().map(|r| r.status().as_u16());
    assert_eq!((status("/healthz"), status("/readyz")), (Some(200), Some(200)));

    // The value that used to panic the writer thread: a 400 naming the field, and writes go on.
    ok_json(&data, &u, &["accounts", "create", "retail-1", "--segment", "retail", "--verification", "verified"]);
    let create = |hours: &str| {
        ks(
            &data,
            &u,
            &key_create(&[
                "--scheme",
                "binance",
                "--account",
                "retail-1",
                "--scopes",
                "read,withdraw",
                "--allow",
                "203.0.113.0/24",
                "--purpose",
                "treasury",
                "--grant-hours",
                hours,
            ]),
        )
    };
    let out = create("2562047788015216");
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("sensitive_grant_hours"), "{}", stderr(&out));
    let key = ok_json(
        &data,
        &u,
        &key_create(&[
            "--scheme",
            "binance",
            "--account",
            "retail-1",
            "--scopes",
            "read",
            "--allow",
            "203.0.113.0/24",
            "--purpose",
            "portfolio_read_only",
        ]),
    );
    let ak = key["key"]["access_key"].as_str().unwrap().to_owned();
    let out = ks(
        &data,
        &u,
        &["keys", "grant", &ak, "--scope", "withdraw", "--hours", "2562047788015216", "--reason", "sweep"],
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("hours"), "{}", stderr(&out));
    ok_json(&data, &u, &["keys", "revoke", &ak, "--reason", "still writing"]);
    assert_eq!(status("/healthz"), Some(200));

    // The writer stops (injected): the node stops serving and exits non-zero, saying why.
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-USR1", &pid]).status().unwrap().success());
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(1), "{err}");
    assert!(err.contains("writer stopped"), "{err}");
    assert_eq!(status("/healthz"), None, "nothing serves after it");
}

#[test]
fn break_glass_is_local_loud_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    drop(serve(&data));
    let out = Command::new(BIN)
        .args([
            "operators",
            "break-glass",
            "ops-2",
            "--role",
            "admin",
            "--reason",
            "both admins left",
            "--json",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("BREAK-GLASS"), "logged as a warning: {}", stderr(&out));
    let issued: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(issued["operator"]["role"], "admin");
    assert!(issued["operator"].get("pending_approval").is_none(), "active at once: {issued}");
    let conn = rusqlite::Connection::open(data.join("keysentinel.db")).unwrap();
    let entry: String = conn
        .query_row("SELECT entry FROM audit_log WHERE entry LIKE '%operator.break_glass%'", [], |r| r.get(0))
        .unwrap();
    let entry: Value = serde_json::from_str(&entry).unwrap();
    assert_eq!((entry["target"].as_str(), entry["actor"]["kind"].as_str()), (Some("ops-2"), Some("local")));
    assert_eq!(entry["reason"], "break-glass: both admins left");
    let clean = verify(&data.join("keysentinel.db"));
    assert!(clean.status.success(), "{}", stderr(&clean));
}

#[test]
fn a_closed_pipe_ends_quietly_and_file_arguments_are_bounded() {
    use std::io::{BufRead, BufReader};
    // `keysentinel openapi | head -1`: the document is larger than a pipe's buffer.
    let mut child = Command::new(BIN)
        .arg("openapi")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert_eq!(first.trim(), "{");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));

    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["audit", "verify", "--log-key", "@/dev/zero", "--db"])
        .arg(dir.path().join("none.db"))
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("larger than"), "{}", stderr(&out));
}

/// Re-signs the store's audit log with another key, as someone holding the master key could:
/// a new signing key sealed in its place, its verifier recorded, every checkpoint signed again.
/// The file is then self-consistent: only a pinned key tells.
fn resign(data: &Path) -> String {
    use keysentinel_audit::{LogSigner, LogVerifier};
    use keysentinel_store::keys::META_LOG_VERIFIER;
    use keysentinel_store::{META_LOG_KEY, META_LOG_ORIGIN};
    let master = std::fs::read_to_string(data.join("master.key")).unwrap();
    let keyring =
        keysentinel_secrets::Keyring::new(keysentinel_secrets::MasterKey::from_base64(master.trim()).unwrap(), vec![]);
    let conn = rusqlite::Connection::open(data.join("keysentinel.db")).unwrap();
    conn.execute_batch("DROP TRIGGER audit_checkpoints_no_update; DROP TRIGGER audit_checkpoints_no_delete;").unwrap();
    let meta = |name: &str| -> Vec<u8> {
        conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| r.get(0)).unwrap()
    };
    let origin = String::from_utf8(meta(META_LOG_ORIGIN)).unwrap();
    let old = LogVerifier::parse(&String::from_utf8(meta(META_LOG_VERIFIER)).unwrap()).unwrap();
    let attacker = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let signer = LogSigner::new(origin, attacker.clone());
    let put = |name: &str, value: &[u8]| {
        conn.execute("UPDATE meta SET value = ?2 WHERE name = ?1", rusqlite::params![name, value]).unwrap();
    };
    put(META_LOG_KEY, &keyring.seal(attacker.as_bytes(), META_LOG_KEY.as_bytes()));
    put(META_LOG_VERIFIER, signer.verifier().encode().as_bytes());
    let notes: Vec<(i64, String)> = conn
        .prepare("SELECT size, note FROM audit_checkpoints")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (size, note) in notes {
        let resigned = signer.sign(&old.open(&note).unwrap()).unwrap();
        conn.execute("UPDATE audit_checkpoints SET note = ?2 WHERE size = ?1", rusqlite::params![size, resigned])
            .unwrap();
    }
    signer.verifier().encode()
}

#[test]
fn serve_with_a_pinned_log_key_refuses_a_store_whose_log_was_re_signed() {
    let (dir, data) = scripted_lifecycle();
    let exported = ok_json(&data, "http://unused", &["audit", "export"]);
    let ours = exported["verifier_key"].as_str().unwrap().to_owned();
    let pinned_file = dir.path().join("log-key.txt");
    std::fs::write(&pinned_file, format!("{ours}\n")).unwrap();

    // Pinned to its own key, the store starts (inline or @FILE).
    for pin in [ours.clone(), format!("@{}", pinned_file.display())] {
        let server = serve_with(&data, &["--no-detection", "--log-key", &pin]);
        drop(server);
    }

    let theirs = resign(&data);
    assert_ne!(theirs, ours);
    // Self-consistent: without a pinned key nothing looks wrong...
    assert_eq!(code(&verify(&data.join("keysentinel.db"))), 0, "the re-signed file verifies against its own key");
    // ...with one, the start is refused, naming both keys.
    let (exit, err) =
        serve_refuses_with(&data, &["--no-detection", "--log-key", &format!("@{}", pinned_file.display())]);
    assert_eq!(exit, 8, "{err}");
    assert!(err.contains("not the pinned key") && err.contains(&ours) && err.contains(&theirs), "{err}");

    // A key that is not a verifier key, and a pin on a store that does not exist yet, are usage errors.
    let (exit, err) = serve_refuses_with(&data, &["--log-key", "not-a-key"]);
    assert_eq!(exit, 2, "{err}");
    let fresh = dir.path().join("fresh");
    let (exit, err) = serve_refuses_with(&fresh, &["--log-key", &ours]);
    assert_eq!(exit, 2, "{err}");
    assert!(!fresh.join("keysentinel.db").exists(), "nothing is created under a pin");
}
