//! The embedded store: SQLite in WAL mode, `synchronous = FULL` (a commit is on disk when it
//! returns), one writer thread and a small pool of reader connections.
//!
//! The writer takes every queued operation it finds, runs each in its own savepoint inside one
//! transaction, signs one checkpoint for the batch, and commits once: group commit, so many
//! concurrent changes share one fsync while each still commits or fails on its own.

mod expected;
mod rows;
mod state;
mod verify;
mod writer;

use expected::Expected;
use keysentinel_audit::{Hash, LogVerifier};
use keysentinel_domain::{
    AccessKey, Account, AccountId, ApiKey, Case, Clock, Counterparty, CounterpartyId, KeyStatus, Notice, Operator,
    Party, PartyId, ReportAssessment, Vendor, VendorId,
};
use keysentinel_secrets::Keyring;
use keysentinel_store::keys::{Meta, META_LOG_VERIFIER};
use keysentinel_store::{
    AccountFilter, CaseFilter, CounterpartyFilter, KeyFilter, LogKeys, ReadStore, Store, StoreError, StoredKey,
    VendorFilter, WriteOp, META_LOG_ORIGIN,
};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

pub use state::StateReport;
pub use verify::{export_checkpoint, verify_file, ExportedCheckpoint, FileVerifyError, FileVerifyOptions};

const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_cases.sql"),
    include_str!("../migrations/0003_reports.sql"),
    include_str!("../migrations/0004_registry.sql"),
    include_str!("../migrations/0005_identity.sql"),
];
/// Most operations one commit takes; bounds how long one slow batch holds the write lock.
const MAX_BATCH: usize = 512;
/// Queue depth before `submit` blocks the caller (back-pressure rather than unbounded memory).
const QUEUE_DEPTH: usize = 4096;

pub(crate) fn db_err(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(ref f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
            StoreError::Backend(format!("constraint violated: {e}"))
        }
        other => StoreError::Backend(other.to_string()),
    }
}

fn open_connection(path: &Path, read_only: bool) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(db_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(db_err)?;
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL").map_err(db_err)?;
    }
    conn.pragma_update(None, "synchronous", "FULL").map_err(db_err)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(db_err)?;
    Ok(conn)
}

/// Applies pending migrations, one transaction each, tracked in `PRAGMA user_version`.
/// (A dozen lines; a migration crate would add more than it saves here.)
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(db_err)?;
    if current as usize > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "database schema {current} is newer than this build understands ({}); upgrade keysentinel",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction().map_err(db_err)?;
        tx.execute_batch(sql).map_err(db_err)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64).map_err(db_err)?;
        tx.commit().map_err(db_err)?;
    }
    Ok(())
}

/// Verifies the log and every state row against it; on a log written before row digests
/// existed, records a baseline of every row first (`state.baseline` entries, actor
/// `local:upgrade`), trusting the rows as this version finds them. That happens once: after it
/// the log records rows, and a log that records rows never takes a baseline again.
fn bind_state(
    conn: &Connection,
    keys: &LogKeys,
    clock: &dyn Clock,
    pinned: Option<&LogVerifier>,
    expected: &Expected,
) -> Result<StateReport, StoreError> {
    let verifier = keys.signer.verifier();
    // A pinned key must be the one that signs: checkpoints verified with it, and new ones
    // signed by it. A file whose own key differs was re-signed (or is another store).
    if let Some(pinned) = pinned {
        if *pinned != verifier {
            return Err(StoreError::LogKeyMismatch { pinned: pinned.encode(), found: verifier.encode() });
        }
    }
    let (log, report) = match verify::check(conn, &verifier, &keys.origin, Vec::new(), Some(expected)) {
        Ok(found) => found,
        Err(FileVerifyError::Log(e)) => return Err(StoreError::Log(e)),
        Err(FileVerifyError::State(e)) => return Err(StoreError::State(e)),
        Err(FileVerifyError::Store(e)) => return Err(e),
        Err(FileVerifyError::Setup(m)) => return Err(StoreError::Corrupt(m)),
    };
    if report.bound || report.rows == 0 {
        return Ok(report);
    }
    let rows = state::all_rows(conn)?;
    let mut log_state = writer::load_log_state(conn)?;
    let size_before = log_state.size();
    let now = clock.now();
    conn.execute_batch("BEGIN IMMEDIATE").map_err(db_err)?;
    let result = (|| {
        for chunk in rows.chunks(state::ROWS_PER_ENTRY) {
            let draft = keysentinel_audit::AuditDraft {
                actor: keysentinel_audit::Actor::Local { command: "upgrade".into() },
                action: "state.baseline".into(),
                target: "state".into(),
                reason: "first start with row digests: the rows as found are recorded as the baseline".into(),
                policy_version: None,
                details: serde_json::json!({ "rows": chunk.len(), "log_size_before": log.entries }),
            };
            let seq = writer::insert_entry(conn, &mut log_state, draft, now, chunk.to_vec())?;
            for (key, want) in writer::wants(expected, seq, chunk)? {
                expected.insert(key, want);
            }
        }
        writer::commit(conn, keys, &log_state, size_before, now)
    })();
    if let Err(e) = result {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(e);
    }
    tracing::warn!(
        rows = rows.len(),
        "the audit log predates row digests: recorded a baseline of every row as found (run `keysentinel audit verify` on a copy from before the upgrade to check the log itself)"
    );
    Ok(StateReport { rows: rows.len() as u64, bound: true })
}

struct ConnMeta<'a>(&'a Connection);

impl Meta for ConnMeta<'_> {
    fn get(&mut self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| r.get(0)).optional().map_err(db_err)
    }
    fn put(&mut self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.0
            .execute(
                "INSERT INTO meta(name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                params![name, value],
            )
            .map(|_| ())
            .map_err(db_err)
    }
}

pub struct SqliteStore {
    path: PathBuf,
    /// Held for the store's life: one writer process per database, because the writer keeps the
    /// audit tree's state in memory and another process appending would fork it.
    _lock: std::fs::File,
    queue: Mutex<Option<mpsc::SyncSender<WriteOp>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Cleared by the writer thread as it ends, however it ends (a guard's drop runs on unwind).
    writing: Arc<std::sync::atomic::AtomicBool>,
    readers: Mutex<Vec<Connection>>,
    /// What the log says every state row holds (expected.rs); kept by the writer.
    expected: Arc<Expected>,
}

/// Clears the flag when the writer thread ends, returning or unwinding.
struct Alive(Arc<std::sync::atomic::AtomicBool>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::SeqCst);
        // Loud only when it was not asked to stop (`close`, at the end of a command or a serve).
        if std::thread::panicking() {
            tracing::error!("the store's writer thread panicked: no more writes on this node");
        } else {
            tracing::debug!("the store's writer has stopped");
        }
    }
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database at `path`. The bool is true when
    /// the audit log keys were created now, i.e. the store is new.
    pub fn open(path: &Path, keyring: &Keyring, clock: Arc<dyn Clock>) -> Result<(Self, bool), StoreError> {
        Self::open_pinned(path, keyring, clock, None)
    }

    /// As [`SqliteStore::open`], refusing a store whose audit log is not signed with `pinned`
    /// (`StoreError::LogKeyMismatch`): a file re-signed by someone who held the master key, or
    /// another store in its place.
    pub fn open_pinned(
        path: &Path,
        keyring: &Keyring,
        clock: Arc<dyn Clock>,
        pinned: Option<&LogVerifier>,
    ) -> Result<(Self, bool), StoreError> {
        let lock_path = path.with_extension("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", lock_path.display())))?;
        lock.try_lock().map_err(|_| {
            StoreError::Backend(format!(
                "{} is in use by another keysentinel process (stop it, or use the API of the running server)",
                path.display()
            ))
        })?;
        let mut conn = open_connection(path, false)?;
        migrate(&mut conn)?;
        let (keys, created) = {
            let tx = conn.transaction().map_err(db_err)?;
            let loaded = LogKeys::load_or_create(&mut ConnMeta(&tx), keyring)?;
            tx.commit().map_err(db_err)?;
            loaded
        };
        // Fail closed: a store whose log or rows do not verify is not opened for writing (nor
        // served from). The message names the entry or the row.
        // What the verified log says each row holds, kept while the store is open: a row read
        // later must still be that (expected.rs).
        let expected = Arc::new(Expected::default());
        bind_state(&conn, &keys, clock.as_ref(), pinned, &expected)?;
        let state = writer::load_log_state(&conn)?;
        let (tx, rx) = mpsc::sync_channel(QUEUE_DEPTH);
        let writing = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let alive = Alive(writing.clone());
        let in_writer = expected.clone();
        let handle = std::thread::Builder::new()
            .name("keysentinel-sqlite-writer".into())
            .spawn(move || {
                let _alive = alive;
                writer::run(conn, rx, keys, state, clock, &in_writer)
            })
            .map_err(|e| StoreError::Backend(format!("cannot start writer thread: {e}")))?;
        Ok((
            Self {
                path: path.to_owned(),
                _lock: lock,
                queue: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(handle)),
                writing,
                readers: Mutex::new(Vec::new()),
                expected,
            },
            created,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting writes, lets the writer finish what is queued, and waits for it.
    pub fn close(&self) {
        if let Ok(mut q) = self.queue.lock() {
            q.take();
        }
        if let Ok(mut w) = self.writer.lock() {
            if let Some(handle) = w.take() {
                let _ = handle.join();
            }
        }
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let conn = self.readers.lock().map_err(|_| StoreError::Closed)?.pop();
        let conn = match conn {
            Some(c) => c,
            None => open_connection(&self.path, true)?,
        };
        let result = f(&conn);
        if let Ok(mut pool) = self.readers.lock() {
            if pool.len() < 8 {
                pool.push(conn);
            }
        }
        result
    }

    /// A read of state rows, each judged against what the log holds. A row that does not
    /// match is read again when a commit settled during the read (its snapshot may predate
    /// it); otherwise, or if it keeps not matching, it is refused — named, logged and counted.
    fn read_rows<T>(
        &self,
        f: impl Fn(&Connection, &dyn rows::Judge) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let judge = rows::Committed(&self.expected);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let generation = self.expected.generation();
            match self.with_reader(|c| f(c, &judge)) {
                Err(StoreError::State(_)) if self.expected.generation() != generation && attempt < expected::READS => {}
                Err(StoreError::State(e)) => {
                    self.expected.report(&e);
                    return Err(StoreError::State(e));
                }
                other => return other,
            }
        }
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close();
    }
}

impl Store for SqliteStore {
    fn submit(&self, op: WriteOp) -> Result<(), StoreError> {
        let sender = self.queue.lock().map_err(|_| StoreError::Closed)?.clone().ok_or(StoreError::Closed)?;
        sender.send(op).map_err(|_| StoreError::Closed)
    }

    fn writable(&self) -> bool {
        self.writing.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn state_mismatches(&self) -> u64 {
        self.expected.mismatches()
    }
}

impl ReadStore for SqliteStore {
    fn account(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        self.read_rows(|c, j| rows::doc(c, state::ACCOUNTS, "WHERE account_id = ?1", [id.as_str()], j))
    }

    fn case(&self, id: &str) -> Result<Option<Case>, StoreError> {
        self.read_rows(|c, j| rows::case(c, "case_id", id, j))
    }

    fn cases(&self, filter: &CaseFilter) -> Result<Vec<Case>, StoreError> {
        let tail = "WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR key_id = ?2)
                   AND (?3 IS NULL OR account_id = ?3) ORDER BY opened_ms DESC, case_id LIMIT ?4";
        self.read_rows(|c, j| {
            let args = params![
                filter.status.map(|s| s.as_str()),
                filter.key_id.as_ref().map(|k| k.as_str()),
                filter.account_id.as_ref().map(|a| a.as_str()),
                filter.limit
            ];
            rows::docs(c, state::CASES, tail, args, j)
        })
    }

    fn due_notices(&self, now: time::OffsetDateTime, limit: u32) -> Result<Vec<Notice>, StoreError> {
        let tail = "WHERE status = 'pending' AND next_ms <= ?1 ORDER BY next_ms, notice_id LIMIT ?2";
        self.read_rows(|c, j| rows::docs(c, state::NOTICES, tail, params![rows::ms(now), limit], j))
    }

    fn report(&self, case_id: &str) -> Result<Option<ReportAssessment>, StoreError> {
        self.read_rows(|c, j| rows::doc(c, state::REPORTS, "WHERE case_id = ?1", [case_id], j))
    }

    fn held_keys(&self) -> Result<Vec<AccessKey>, StoreError> {
        // The cases themselves, judged, rather than a projection of them: a hold lifted in the
        // file must not let retention purge a held key's logs.
        let held: Vec<Case> = self.read_rows(|c, j| {
            rows::docs(c, state::CASES, "WHERE json_extract(doc, '$.legal_hold') IS NOT NULL", [], j)
        })?;
        let mut keys: Vec<AccessKey> =
            held.into_iter().filter(|case| case.legal_hold.is_some()).map(|case| case.key_id).collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    fn reports(&self, open_only: bool, limit: u32) -> Result<Vec<ReportAssessment>, StoreError> {
        // Open ones (assessing or to file) by deadline, those without one last; then the rest.
        let tail = "WHERE (?1 = 0 OR status IN ('assessing', 'to_file'))
                   ORDER BY status IN ('assessing', 'to_file') DESC, deadline_ms IS NULL, deadline_ms, opened_ms LIMIT ?2";
        self.read_rows(|c, j| rows::docs(c, state::REPORTS, tail, params![open_only, limit], j))
    }

    fn notices(&self, case_id: &str) -> Result<Vec<Notice>, StoreError> {
        self.read_rows(|c, j| rows::docs(c, state::NOTICES, "WHERE case_id = ?1 ORDER BY rowid", [case_id], j))
    }

    fn accounts(&self, filter: &AccountFilter) -> Result<Vec<Account>, StoreError> {
        let after = filter.after.as_ref().map(|a| a.as_str().to_owned()).unwrap_or_default();
        self.read_rows(|c, j| {
            rows::docs(
                c,
                state::ACCOUNTS,
                "WHERE account_id > ?1 ORDER BY account_id LIMIT ?2",
                params![after, filter.limit],
                j,
            )
        })
    }

    fn key(&self, access_key: &AccessKey) -> Result<Option<StoredKey>, StoreError> {
        self.read_rows(|c, j| rows::key(c, access_key.as_str(), j))
    }

    fn keys(&self, filter: &KeyFilter, now: time::OffsetDateTime) -> Result<Vec<ApiKey>, StoreError> {
        let now_ms = rows::ms(now);
        // Effective status: stored active/suspended keys past expiry count as expired.
        let status_sql = match filter.status {
            None => "1",
            Some(KeyStatus::Pending) => "(status = 'pending' AND expires_ms > ?4)",
            Some(KeyStatus::Active) => "(status = 'active' AND expires_ms > ?4)",
            Some(KeyStatus::Suspended) => "(status = 'suspended' AND expires_ms > ?4)",
            Some(KeyStatus::Expired) => {
                "(status = 'expired' OR (status IN ('pending','active','suspended') AND expires_ms <= ?4))"
            }
            Some(KeyStatus::Revoked) => "(status = 'revoked')",
        };
        let tail = format!(
            "WHERE access_key > ?1 AND (?2 IS NULL OR account_id = ?2) \
             AND (?3 IS NULL OR vendor_id = ?3) AND {status_sql} ORDER BY access_key LIMIT ?5"
        );
        let after = filter.after.as_ref().map(|a| a.as_str().to_owned()).unwrap_or_default();
        self.read_rows(|c, j| {
            let args = params![
                after,
                filter.account_id.as_ref().map(|a| a.as_str()),
                filter.vendor_id.as_ref().map(|v| v.as_str()),
                now_ms,
                filter.limit
            ];
            rows::docs(c, state::API_KEYS, &tail, args, j)
        })
    }

    fn operator_by_token_hash(&self, hash: &[u8; 32]) -> Result<Option<Operator>, StoreError> {
        // The path by which a token becomes an operator (on a cache miss): a row given another
        // role or token in the file is refused here, before it authenticates anything.
        self.read_rows(|c, j| rows::doc(c, state::OPERATORS, "WHERE token_hash = ?1", [hash.as_slice()], j))
    }

    fn operators(&self) -> Result<Vec<Operator>, StoreError> {
        self.read_rows(|c, j| rows::docs(c, state::OPERATORS, "ORDER BY operator_id", [], j))
    }

    fn vendor(&self, id: &VendorId) -> Result<Option<Vendor>, StoreError> {
        self.read_rows(|c, j| rows::doc(c, state::VENDORS, "WHERE vendor_id = ?1", [id.as_str()], j))
    }

    fn vendors(&self, filter: &VendorFilter) -> Result<Vec<Vendor>, StoreError> {
        let tail = "WHERE vendor_id > ?1 AND (?2 IS NULL OR status = ?2) ORDER BY vendor_id LIMIT ?3";
        let after = filter.after.as_ref().map(|v| v.as_str().to_owned()).unwrap_or_default();
        self.read_rows(|c, j| {
            rows::docs(c, state::VENDORS, tail, params![after, filter.status.map(|s| s.as_str()), filter.limit], j)
        })
    }

    fn party(&self, id: &PartyId) -> Result<Option<Party>, StoreError> {
        self.read_rows(|c, j| rows::doc(c, state::PARTIES, "WHERE party_id = ?1", [id.as_str()], j))
    }

    fn parties(&self, account: &AccountId) -> Result<Vec<Party>, StoreError> {
        self.read_rows(|c, j| {
            rows::docs(c, state::PARTIES, "WHERE account_id = ?1 ORDER BY party_id", [account.as_str()], j)
        })
    }

    fn counterparty(&self, id: &CounterpartyId) -> Result<Option<Counterparty>, StoreError> {
        self.read_rows(|c, j| rows::doc(c, state::COUNTERPARTIES, "WHERE counterparty_id = ?1", [id.as_str()], j))
    }

    fn counterparties(&self, filter: &CounterpartyFilter) -> Result<Vec<Counterparty>, StoreError> {
        // The related accounts live in the document; a record relates few enough that reading
        // them there beats a second table (which would need binding to the log as well).
        let tail = "WHERE counterparty_id > ?1
                   AND (?2 IS NULL OR account_id = ?2
                        OR EXISTS (SELECT 1 FROM json_each(doc, '$.related_accounts') WHERE value = ?2))
                   AND (?3 IS NULL OR kind = ?3)
                   AND (?4 IS NULL OR (from_ms <= ?4 AND (until_ms IS NULL OR ?4 < until_ms)))
                   ORDER BY counterparty_id LIMIT ?5";
        let after = filter.after.as_ref().map(|v| v.as_str().to_owned()).unwrap_or_default();
        self.read_rows(|c, j| {
            let args = params![
                after,
                filter.account_id.as_ref().map(|a| a.as_str()),
                filter.kind.map(|k| k.as_str()),
                filter.active_at.map(rows::ms),
                filter.limit
            ];
            rows::docs(c, state::COUNTERPARTIES, tail, args, j)
        })
    }

    fn counterparties_turning(
        &self,
        after: time::OffsetDateTime,
        until: time::OffsetDateTime,
    ) -> Result<Vec<Counterparty>, StoreError> {
        let tail =
            "WHERE (from_ms > ?1 AND from_ms <= ?2) OR (until_ms > ?1 AND until_ms <= ?2) ORDER BY counterparty_id";
        self.read_rows(|c, j| rows::docs(c, state::COUNTERPARTIES, tail, params![rows::ms(after), rows::ms(until)], j))
    }

    fn audit_entries(&self, from: u64, limit: u32) -> Result<Vec<(u64, String)>, StoreError> {
        self.with_reader(|c| {
            let mut stmt = c
                .prepare_cached("SELECT seq, entry FROM audit_log WHERE seq >= ?1 ORDER BY seq LIMIT ?2")
                .map_err(db_err)?;
            let out = stmt
                .query_map(params![i64::try_from(from).unwrap_or(i64::MAX), limit], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
                })
                .map_err(db_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?;
            Ok(out)
        })
    }

    fn audit_leaves(&self, size: u64) -> Result<Vec<Hash>, StoreError> {
        self.with_reader(|c| {
            let mut stmt =
                c.prepare_cached("SELECT leaf FROM audit_log WHERE seq < ?1 ORDER BY seq").map_err(db_err)?;
            let leaves = stmt
                .query_map([i64::try_from(size).unwrap_or(i64::MAX)], |r| r.get::<_, Vec<u8>>(0))
                .map_err(db_err)?
                .map(|r| {
                    r.map_err(db_err).and_then(|v| {
                        Hash::try_from(v.as_slice()).map_err(|_| StoreError::Corrupt("leaf hash length".into()))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(leaves)
        })
    }

    fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError> {
        self.with_reader(|c| {
            c.query_row("SELECT size, note FROM audit_checkpoints ORDER BY size DESC LIMIT 1", [], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
            })
            .optional()
            .map_err(db_err)
        })
    }

    fn log_identity(&self) -> Result<(String, String), StoreError> {
        self.with_reader(|c| {
            let mut meta = ConnMeta(c);
            let origin = meta.get(META_LOG_ORIGIN)?.ok_or_else(|| StoreError::Corrupt("no audit origin".into()))?;
            let verifier =
                meta.get(META_LOG_VERIFIER)?.ok_or_else(|| StoreError::Corrupt("no audit verifier key".into()))?;
            Ok((String::from_utf8_lossy(&origin).into_owned(), String::from_utf8_lossy(&verifier).into_owned()))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use keysentinel_audit::{Actor, AuditDraft};
    use keysentinel_secrets::MasterKey;
    use keysentinel_store::{Outcome, StateError, WriteTx};

    struct Fixed;
    impl Clock for Fixed {
        fn now(&self) -> keysentinel_domain::Timestamp {
            time::macros::datetime!(2026-11-28 00:00 UTC)
        }
    }

    /// A store written before row digests existed: a row, and an entry that records no state.
    fn legacy_store(path: &Path, keyring: &Keyring) {
        drop(SqliteStore::open(path, keyring, Arc::new(Fixed)).unwrap());
        let conn = open_connection(path, false).unwrap();
        let (keys, _) = LogKeys::load_or_create(&mut ConnMeta(&conn), keyring).unwrap();
        let mut state = writer::load_log_state(&conn).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        conn.execute(
            "INSERT INTO accounts(account_id, segment, verification, doc) VALUES ('acct-1', 'retail', 'verified', '{}')",
            [],
        )
        .unwrap();
        let draft = AuditDraft {
            actor: Actor::Local { command: "old".into() },
            action: "account.create".into(),
            target: "acct-1".into(),
            reason: "written by an older keysentinel".into(),
            policy_version: None,
            details: serde_json::json!({}),
        };
        writer::insert_entry(&conn, &mut state, draft, Fixed.now(), Vec::new()).unwrap();
        writer::commit(&conn, &keys, &state, 0, Fixed.now()).unwrap();
    }

    #[test]
    fn a_log_from_before_row_digests_gets_one_baseline_and_then_binds_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keysentinel.db");
        let keyring = Keyring::new(MasterKey::generate(), vec![]);
        legacy_store(&path, &keyring);
        let (log, rows) = verify_file(&path, &FileVerifyOptions::default()).unwrap();
        assert_eq!((log.entries, rows.rows, rows.bound), (1, 1, false), "judged only after the baseline");

        // The first start records the baseline...
        drop(SqliteStore::open(&path, &keyring, Arc::new(Fixed)).unwrap());
        let (log, rows) = verify_file(&path, &FileVerifyOptions::default()).unwrap();
        assert_eq!((log.entries, rows.rows, rows.bound), (2, 1, true));
        // ...once.
        drop(SqliteStore::open(&path, &keyring, Arc::new(Fixed)).unwrap());
        assert_eq!(verify_file(&path, &FileVerifyOptions::default()).unwrap().0.entries, 2);
        let conn = Connection::open(&path).unwrap();
        let last: String = conn.query_row("SELECT entry FROM audit_log WHERE seq = 1", [], |r| r.get(0)).unwrap();
        assert!(last.contains("\"action\":\"state.baseline\"") && last.contains("\"local\""), "{last}");

        // From then on an edit is caught, at start-up too.
        conn.execute("UPDATE accounts SET verification = 'unverified' WHERE account_id = 'acct-1'", []).unwrap();
        drop(conn);
        match SqliteStore::open(&path, &keyring, Arc::new(Fixed)) {
            Err(StoreError::State(StateError::Changed { table, id, seq })) => {
                assert_eq!((table.as_str(), id.as_str(), seq), ("accounts", "acct-1", 1));
            }
            Err(other) => panic!("wrong error: {other}"),
            Ok(_) => panic!("a changed row was opened"),
        }
    }

    #[test]
    fn a_row_in_a_store_whose_log_is_empty_is_one_nobody_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keysentinel.db");
        let keyring = Keyring::new(MasterKey::generate(), vec![]);
        drop(SqliteStore::open(&path, &keyring, Arc::new(Fixed)).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO operators(operator_id, role, token_hash, disabled, doc) VALUES ('mallory', 'admin', x'00', 0, '{}')",
            [],
        )
        .unwrap();
        drop(conn);
        match SqliteStore::open(&path, &keyring, Arc::new(Fixed)) {
            Err(StoreError::State(StateError::Unrecorded { table, id })) => {
                assert_eq!((table.as_str(), id.as_str()), ("operators", "mallory"));
            }
            Err(other) => panic!("wrong error: {other}"),
            Ok(_) => panic!("an unrecorded operator was opened"),
        }
    }

    fn operator(id: &str, role: keysentinel_domain::Role) -> Operator {
        Operator {
            operator_id: keysentinel_domain::OperatorId::parse(id).unwrap(),
            role,
            description: String::new(),
            created_by: "test".into(),
            created_at: Fixed.now(),
            disabled: false,
            pending_approval: false,
            approved_by: None,
        }
    }

    /// Runs `op` as one audited operation and waits for its commit.
    fn write(
        store: &SqliteStore,
        op: impl FnOnce(&mut dyn WriteTx) -> Result<(), StoreError> + Send + 'static,
    ) -> Result<(), StoreError> {
        let (tx, rx) = std::sync::mpsc::channel();
        store
            .submit(Box::new(move |wtx| {
                let result = op(wtx).and_then(|()| {
                    wtx.append_audit(AuditDraft {
                        actor: Actor::Local { command: "test".into() },
                        action: "test.write".into(),
                        target: "test".into(),
                        reason: "test".into(),
                        policy_version: None,
                        details: serde_json::json!({}),
                    })
                    .map(|_| ())
                });
                let keep = result.is_ok();
                Outcome {
                    keep,
                    finish: Box::new(move |committed| {
                        let _ = tx.send(result.and(committed));
                    }),
                }
            }))
            .unwrap();
        rx.recv().unwrap()
    }

    #[test]
    fn a_row_edited_in_the_file_while_the_store_is_open_is_refused_when_read() {
        use keysentinel_domain::Role;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keysentinel.db");
        let keyring = Keyring::new(MasterKey::generate(), vec![]);
        let (store, _) = SqliteStore::open(&path, &keyring, Arc::new(Fixed)).unwrap();
        let eve = operator("eve", Role::Auditor);
        write(&store, move |tx| tx.insert_operator(&eve, &[1; 32])).unwrap();
        let found = store.operator_by_token_hash(&[1; 32]).unwrap().unwrap();
        assert_eq!(found.role, Role::Auditor, "a row as written reads back");

        // Someone with the file gives eve the admin role and a token they know.
        let conn = Connection::open(&path).unwrap();
        conn.execute(
            "UPDATE operators SET role = 'admin', token_hash = x'0202020202020202020202020202020202020202020202020202020202020202', \
             doc = json_set(doc, '$.role', 'admin') WHERE operator_id = 'eve'",
            [],
        )
        .unwrap();
        match store.operator_by_token_hash(&[2; 32]) {
            Err(StoreError::State(StateError::Changed { table, id, .. })) => {
                assert_eq!((table.as_str(), id.as_str()), ("operators", "eve"));
            }
            other => panic!("an edited operator row was read: {other:?}"),
        }
        // A row inserted in the file is one the log never recorded.
        conn.execute(
            "INSERT INTO operators(operator_id, role, token_hash, disabled, doc) \
             SELECT 'mallory', 'admin', x'0303030303030303030303030303030303030303030303030303030303030303', 0, json_set(doc, '$.operator_id', 'mallory') FROM operators WHERE operator_id = 'eve'",
            [],
        )
        .unwrap();
        assert!(matches!(
            store.operator_by_token_hash(&[3; 32]),
            Err(StoreError::State(StateError::Unrecorded { .. }))
        ));
        assert!(matches!(store.operators(), Err(StoreError::State(_))), "lists are judged too");
        // The writer will not carry the edit into a new row state either.
        let id = keysentinel_domain::OperatorId::parse("eve").unwrap();
        let laundered = write(&store, move |tx| {
            let mut op = tx.operator(&id)?.ok_or(StoreError::Missing { what: "operator", id: "eve".into() })?;
            op.description = "touched".into();
            tx.update_operator(&op)
        });
        assert!(matches!(laundered, Err(StoreError::State(StateError::Changed { .. }))), "{laundered:?}");
        assert_eq!(store.state_mismatches(), 4);
        drop(conn);
        drop(store);
        // And the next start refuses the file.
        assert!(matches!(SqliteStore::open(&path, &keyring, Arc::new(Fixed)), Err(StoreError::State(_))));
    }

    #[test]
    fn rows_the_writer_changes_while_readers_read_them_are_never_called_edited() {
        use keysentinel_domain::Role;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keysentinel.db");
        let keyring = Keyring::new(MasterKey::generate(), vec![]);
        let (store, _) = SqliteStore::open(&path, &keyring, Arc::new(Fixed)).unwrap();
        let store = Arc::new(store);
        let first = operator("busy", Role::Auditor);
        write(&store, move |tx| tx.insert_operator(&first, &[9; 32])).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (store, stop) = (store.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut reads = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        store.operator_by_token_hash(&[9; 32]).unwrap().unwrap();
                        store.operators().unwrap();
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        for i in 0..300 {
            let id = keysentinel_domain::OperatorId::parse("busy").unwrap();
            write(&store, move |tx| {
                let mut op = tx.operator(&id)?.ok_or(StoreError::Missing { what: "operator", id: "busy".into() })?;
                op.description = format!("change {i}");
                tx.update_operator(&op)
            })
            .unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let reads: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
        assert!(reads > 0);
        assert_eq!(store.state_mismatches(), 0, "no false alarm over {reads} reads racing 300 commits");
    }
}
