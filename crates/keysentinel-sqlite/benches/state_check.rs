//! The cost of checking every state row against the audit log (`audit verify`, and every start
//! of the server): a store of N keys, each created by its own audited operation, verified
//! whole (log entries, checkpoints, row digests), against reading the same rows and entries
//! in the same run.
//!
//! `cargo bench -p keysentinel-sqlite --bench state_check` checks 1 000 000 keys
//! (`KS_BENCH_KEYS` to change it); under `cargo test --benches` it runs 2 000, so it is kept
//! compiling and working. No timing is asserted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use keysentinel_audit::{Actor, AuditDraft};
use keysentinel_domain::{
    AccessKey, Account, AccountId, Clock, KeyAlgorithm, Scope, Segment, SigningScheme, Timestamp, Verification,
};
use keysentinel_secrets::{Keyring, MasterKey};
use keysentinel_sqlite::{verify_file, SqliteStore};
use keysentinel_store::{Outcome, Store, StoredKey};
use std::sync::{mpsc, Arc};
use std::time::Instant;

struct FixedClock;
impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        time::macros::datetime!(2026-11-28 00:00 UTC)
    }
}

fn draft(action: &str, target: String) -> AuditDraft {
    AuditDraft {
        actor: Actor::Operator { id: "admin".into(), role: "admin".into() },
        action: action.into(),
        target,
        reason: "bench".into(),
        policy_version: None,
        details: serde_json::json!({}),
    }
}

fn run(store: &SqliteStore, op: impl FnOnce(&mut dyn keysentinel_store::WriteTx) + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    store
        .submit(Box::new(move |wtx| {
            op(wtx);
            Outcome { keep: true, finish: Box::new(move |r| tx.send(r.is_ok()).unwrap()) }
        }))
        .unwrap();
    assert!(rx.recv().unwrap());
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("KS_BENCH_KEYS").ok().and_then(|v| v.parse().ok()).unwrap_or(if bench {
        1_000_000
    } else {
        2_000
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keysentinel.db");
    let keyring = Keyring::new(MasterKey::generate(), vec![]);
    let build = Instant::now();
    {
        let (store, _) = SqliteStore::open(&path, &keyring, Arc::new(FixedClock)).unwrap();
        run(&store, |tx| {
            let now = tx.now();
            let account = Account {
                account_id: AccountId::parse("acct-1").unwrap(),
                segment: Segment::Retail,
                verification: Verification::Verified,
                declared_purpose: String::new(),
                declared_countries: vec![],
                verified_at: None,
                created_at: now,
                updated_at: now,
            };
            tx.insert_account(&account).unwrap();
            tx.append_audit(draft("account.create", "acct-1".into())).unwrap();
        });
        // Operations of 1 000 keys, each key with its own entry, as `keys import` writes them.
        let per_op = 1_000;
        for chunk in 0..n.div_ceil(per_op) {
            run(&store, move |tx| {
                for i in chunk * per_op..((chunk + 1) * per_op).min(n) {
                    let ak = format!("ksk_{i:036}");
                    let mut key = keysentinel_testkit::api_key(
                        &ak,
                        SigningScheme::Binance,
                        KeyAlgorithm::Hmac,
                        &[Scope::Read],
                        &[],
                    );
                    key.access_key = AccessKey::parse(&ak).unwrap();
                    tx.insert_key(&StoredKey { key, sealed_secret: Some(vec![7u8; 72]) }).unwrap();
                    tx.append_audit(draft("key.import", ak)).unwrap();
                }
            });
        }
    }
    println!("built {n} keys in {:.1} s", build.elapsed().as_secs_f64());

    // Reading: every key row and every entry, as the check must, without checking anything.
    let read = Instant::now();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let mut bytes = 0usize;
        let mut stmt = conn
            .prepare("SELECT access_key, account_id, status, vendor_id, expires_ms, doc, sealed_secret FROM api_keys")
            .unwrap();
        let mut rows = stmt.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            bytes += r.get_ref(5).unwrap().as_str().unwrap().len();
        }
        let mut stmt = conn.prepare("SELECT seq, entry, leaf FROM audit_log ORDER BY seq").unwrap();
        let mut rows = stmt.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            bytes += r.get_ref(1).unwrap().as_str().unwrap().len();
        }
        assert!(bytes > 0);
    }
    let read = read.elapsed().as_secs_f64();

    let check = Instant::now();
    let (log, rows) = verify_file(&path, &Default::default()).unwrap();
    let check = check.elapsed().as_secs_f64();
    assert_eq!(rows.rows, n as u64 + 1);
    assert_eq!(log.entries, n as u64 + 1);

    let start = Instant::now();
    let (store, _) = SqliteStore::open(&path, &keyring, Arc::new(FixedClock)).unwrap();
    let start = start.elapsed().as_secs_f64();
    drop(store);

    println!("read rows and entries: {read:.2} s");
    println!("audit verify (log + every row): {check:.2} s, {:.1}x reading", check / read);
    println!("start-up check (open): {start:.2} s, {:.1}x reading", start / read);
    println!("per 1 M keys: verify {:.2} s, start-up {:.2} s", check * 1e6 / n as f64, start * 1e6 / n as f64);
}
