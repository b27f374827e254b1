//! Durable audit appends per second: keysentinel's store (each append its own operation, with
//! a signed checkpoint per commit, group-committed) against raw SQLite inserts of the same rows
//! on the same disk, in the same run. Both use WAL with `synchronous = FULL`, so every
//! acknowledged append is on disk.
//!
//! `cargo bench -p keysentinel-sqlite --bench audit_append` for the figures; under
//! `cargo test --benches` it runs a few rows only, so it is kept compiling and working.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use keysentinel_audit::{Actor, AuditDraft, LogState};
use keysentinel_domain::{Clock, Timestamp};
use keysentinel_secrets::{Keyring, MasterKey};
use keysentinel_sqlite::SqliteStore;
use keysentinel_store::{Outcome, Store};
use std::sync::{mpsc, Arc};
use std::time::Instant;

struct FixedClock;
impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        time::macros::datetime!(2026-11-28 00:00 UTC)
    }
}

fn draft(i: usize) -> AuditDraft {
    AuditDraft {
        actor: Actor::Operator { id: format!("op{}", i % 7), role: "analyst".into() },
        action: "key.suspend".into(),
        target: format!("ksk_{i:036}"),
        reason: "suspected sharing: concurrent use from distant places".into(),
        policy_version: Some("2026-11-28.1".into()),
        details: serde_json::json!({ "from": "active", "to": "suspended", "account_id": format!("acct-{}", i % 1000) }),
    }
}

/// Raw inserts of pre-sealed rows, one autocommit transaction (one fsync) per row.
fn raw_autocommit(dir: &std::path::Path, n: usize) -> f64 {
    let conn = rusqlite::Connection::open(dir.join("raw.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute_batch("CREATE TABLE audit_log (seq INTEGER PRIMARY KEY, entry TEXT NOT NULL, leaf BLOB NOT NULL)")
        .unwrap();
    let mut state = LogState::default();
    let rows: Vec<_> = (0..n).map(|i| state.append(draft(i), FixedClock.now()).unwrap()).collect();
    let start = Instant::now();
    let mut stmt = conn.prepare("INSERT INTO audit_log(seq, entry, leaf) VALUES (?1, ?2, ?3)").unwrap();
    for r in &rows {
        stmt.execute(rusqlite::params![r.seq as i64, r.text, r.leaf.as_slice()]).unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Raw inserts of the same rows in one transaction: the ceiling for any batching scheme.
fn raw_one_transaction(dir: &std::path::Path, n: usize) -> f64 {
    let mut conn = rusqlite::Connection::open(dir.join("raw1.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute_batch("CREATE TABLE audit_log (seq INTEGER PRIMARY KEY, entry TEXT NOT NULL, leaf BLOB NOT NULL)")
        .unwrap();
    let mut state = LogState::default();
    let rows: Vec<_> = (0..n).map(|i| state.append(draft(i), FixedClock.now()).unwrap()).collect();
    let start = Instant::now();
    let tx = conn.transaction().unwrap();
    {
        let mut stmt = tx.prepare("INSERT INTO audit_log(seq, entry, leaf) VALUES (?1, ?2, ?3)").unwrap();
        for r in &rows {
            stmt.execute(rusqlite::params![r.seq as i64, r.text, r.leaf.as_slice()]).unwrap();
        }
    }
    tx.commit().unwrap();
    n as f64 / start.elapsed().as_secs_f64()
}

/// keysentinel appends from `writers` threads, each waiting for its own commit.
fn keysentinel(dir: &std::path::Path, n: usize, writers: usize) -> (f64, u64) {
    let keyring = Keyring::new(MasterKey::generate(), vec![]);
    let path = dir.join(format!("ks-{writers}.db"));
    let (store, _) = SqliteStore::open(&path, &keyring, Arc::new(FixedClock)).unwrap();
    let store = Arc::new(store);
    let per = n / writers;
    let start = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..per {
                    let (tx, rx) = mpsc::channel();
                    store
                        .submit(Box::new(move |wtx| {
                            let ok = wtx.append_audit(draft(w * per + i)).is_ok();
                            Outcome { keep: ok, finish: Box::new(move |r| tx.send(r.is_ok()).unwrap()) }
                        }))
                        .unwrap();
                    assert!(rx.recv().unwrap(), "append failed");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let rate = (per * writers) as f64 / start.elapsed().as_secs_f64();
    store.close();
    let checkpoints = keysentinel_sqlite::verify_file(&path, &Default::default()).unwrap().0.checkpoints;
    (rate, checkpoints)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (n_seq, n_conc) = if bench { (1_000, 20_000) } else { (20, 64) };
    let dir = tempfile::Builder::new()
        .prefix("ks-bench")
        .tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into()))
        .unwrap();
    let raw = raw_autocommit(dir.path(), n_seq);
    let ceiling = raw_one_transaction(dir.path(), n_conc);
    println!("baseline  raw SQLite insert, one durable commit per row : {raw:>10.0} rows/s");
    println!("ceiling   raw SQLite insert, all rows in one commit     : {ceiling:>10.0} rows/s");
    for writers in [1usize, 16, 128] {
        let n = if writers == 1 { n_seq } else { n_conc };
        let (rate, checkpoints) = keysentinel(dir.path(), n, writers);
        println!(
            "keysentinel durable appends, {writers:>3} concurrent writers   : {rate:>10.0} appends/s = {:>6.2}x baseline ({} signed checkpoints, {:.1} appends per commit)",
            rate / raw,
            checkpoints,
            n as f64 / checkpoints.max(1) as f64
        );
    }
}
