//! The single writer: group commit with a savepoint per operation.

use crate::rows::{self, field, ms, to_doc};
use crate::{db_err, ConnMeta};
use keysentinel_audit::{AuditDraft, Checkpoint, Hash, LogState};
use keysentinel_domain::{
    AccessKey, Account, AccountId, ApiKey, Case, Clock, Notice, Operator, OperatorId, ReportAssessment,
};
use keysentinel_store::keys::Meta;
use keysentinel_store::{LogKeys, Outcome, StoreError, StoredKey, WriteOp, WriteTx};
use rusqlite::{params, Connection, OptionalExtension};
use std::sync::{mpsc, Arc};
use time::OffsetDateTime;

pub fn load_log_state(conn: &Connection) -> Result<LogState, StoreError> {
    let mut stmt = conn.prepare("SELECT leaf FROM audit_log ORDER BY seq").map_err(db_err)?;
    let leaves = stmt
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .map_err(db_err)?
        .map(|r| {
            r.map_err(db_err)
                .and_then(|v| Hash::try_from(v.as_slice()).map_err(|_| StoreError::Corrupt("leaf hash length".into())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(LogState::from_leaves(leaves))
}

struct Tx<'a> {
    conn: &'a Connection,
    keys: &'a LogKeys,
    state: &'a mut LogState,
    now: OffsetDateTime,
    /// Set by every method that changes a row; an operation that sets it must also append.
    dirty: bool,
    audited: bool,
}

impl Tx<'_> {
    fn exec(&mut self, sql: &str, params: impl rusqlite::Params) -> Result<usize, StoreError> {
        self.dirty = true;
        self.conn.prepare_cached(sql).map_err(db_err)?.execute(params).map_err(db_err)
    }
}

fn key_columns(key: &ApiKey) -> Result<(String, Option<String>, String), StoreError> {
    let doc = to_doc(key)?;
    let value: serde_json::Value = serde_json::from_str(&doc).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok((field(&value, "status").unwrap_or_default(), field(&value, "vendor_id"), doc))
}

impl WriteTx for Tx<'_> {
    fn now(&self) -> OffsetDateTime {
        self.now
    }

    fn account(&mut self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        rows::account(self.conn, id)
    }

    fn live_case(&mut self, key_id: &AccessKey) -> Result<Option<Case>, StoreError> {
        rows::case(self.conn, "key_id", key_id.as_str())
    }

    fn case(&mut self, id: &str) -> Result<Option<Case>, StoreError> {
        rows::case(self.conn, "case_id", id)
    }

    fn put_case(&mut self, case: &Case) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO cases(case_id, key_id, account_id, status, stage, opened_ms, doc) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(case_id) DO UPDATE SET status = excluded.status, stage = excluded.stage, doc = excluded.doc",
            params![
                case.case_id,
                case.key_id.as_str(),
                case.account_id.as_str(),
                case.status.as_str(),
                case.stage.as_str(),
                rows::ms(case.opened_at),
                to_doc(case)?
            ],
        )?;
        Ok(())
    }

    fn report(&mut self, case_id: &str) -> Result<Option<ReportAssessment>, StoreError> {
        rows::report(self.conn, case_id)
    }

    fn put_report(&mut self, report: &ReportAssessment) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO report_assessments(case_id, status, deadline_ms, opened_ms, doc) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(case_id) DO UPDATE SET status = excluded.status, deadline_ms = excluded.deadline_ms,
             doc = excluded.doc",
            params![
                report.case_id,
                report.status.as_str(),
                report.deadline.map(rows::ms),
                rows::ms(report.opened.at),
                to_doc(report)?
            ],
        )?;
        Ok(())
    }

    fn notice(&mut self, id: &str) -> Result<Option<Notice>, StoreError> {
        let doc: Option<String> = self
            .conn
            .prepare_cached("SELECT doc FROM notices WHERE notice_id = ?1")
            .map_err(db_err)?
            .query_row([id], |r| r.get(0))
            .optional()
            .map_err(db_err)?;
        doc.map(|d| rows::from_doc(&d)).transpose()
    }

    fn put_notice(&mut self, notice: &Notice) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO notices(notice_id, case_id, status, next_ms, doc) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(notice_id) DO UPDATE SET status = excluded.status, next_ms = excluded.next_ms, doc = excluded.doc",
            params![
                notice.notice_id,
                notice.case_id,
                notice.status.as_str(),
                rows::ms(notice.next_attempt_at),
                to_doc(notice)?
            ],
        )?;
        Ok(())
    }

    fn insert_account(&mut self, account: &Account) -> Result<(), StoreError> {
        if rows::account(self.conn, &account.account_id)?.is_some() {
            return Err(StoreError::Conflict { what: "account", id: account.account_id.to_string() });
        }
        self.exec(
            "INSERT INTO accounts(account_id, segment, verification, doc) VALUES (?1, ?2, ?3, ?4)",
            params![
                account.account_id.as_str(),
                account.segment.as_str(),
                account.verification.as_str(),
                to_doc(account)?
            ],
        )?;
        Ok(())
    }

    fn update_account(&mut self, account: &Account) -> Result<(), StoreError> {
        let n = self.exec(
            "UPDATE accounts SET segment = ?2, verification = ?3, doc = ?4 WHERE account_id = ?1",
            params![
                account.account_id.as_str(),
                account.segment.as_str(),
                account.verification.as_str(),
                to_doc(account)?
            ],
        )?;
        if n == 0 {
            return Err(StoreError::Missing { what: "account", id: account.account_id.to_string() });
        }
        Ok(())
    }

    fn key(&mut self, access_key: &AccessKey) -> Result<Option<StoredKey>, StoreError> {
        rows::key(self.conn, access_key)
    }

    fn insert_key(&mut self, stored: &StoredKey) -> Result<(), StoreError> {
        if rows::key(self.conn, &stored.key.access_key)?.is_some() {
            return Err(StoreError::Conflict { what: "key", id: stored.key.access_key.to_string() });
        }
        let (status, vendor, doc) = key_columns(&stored.key)?;
        self.exec(
            "INSERT INTO api_keys(access_key, account_id, status, vendor_id, expires_ms, doc, sealed_secret) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                stored.key.access_key.as_str(),
                stored.key.account_id.as_str(),
                status,
                vendor,
                ms(stored.key.expires_at),
                doc,
                stored.sealed_secret
            ],
        )?;
        Ok(())
    }

    fn update_key(&mut self, key: &ApiKey) -> Result<(), StoreError> {
        let (status, vendor, doc) = key_columns(key)?;
        let n = self.exec(
            "UPDATE api_keys SET status = ?2, vendor_id = ?3, expires_ms = ?4, doc = ?5 WHERE access_key = ?1",
            params![key.access_key.as_str(), status, vendor, ms(key.expires_at), doc],
        )?;
        if n == 0 {
            return Err(StoreError::Missing { what: "key", id: key.access_key.to_string() });
        }
        Ok(())
    }

    fn update_sealed_secret(&mut self, access_key: &AccessKey, sealed: &[u8]) -> Result<(), StoreError> {
        self.exec(
            "UPDATE api_keys SET sealed_secret = ?2 WHERE access_key = ?1",
            params![access_key.as_str(), sealed],
        )?;
        Ok(())
    }

    fn live_key_count(&mut self, account: &AccountId, now: OffsetDateTime) -> Result<u32, StoreError> {
        self.conn
            .prepare_cached("SELECT COUNT(*) FROM api_keys WHERE account_id = ?1 AND status IN ('active','suspended') AND expires_ms > ?2")
            .map_err(db_err)?
            .query_row(params![account.as_str(), ms(now)], |r| r.get(0))
            .map_err(db_err)
    }

    fn keys_past_expiry(&mut self, now: OffsetDateTime, limit: u32) -> Result<Vec<ApiKey>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT doc FROM api_keys WHERE status IN ('active','suspended') AND expires_ms <= ?1 ORDER BY expires_ms LIMIT ?2")
            .map_err(db_err)?;
        let docs = stmt
            .query_map(params![ms(now), limit], |r| r.get::<_, String>(0))
            .map_err(db_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_err)?;
        docs.iter().map(|d| rows::from_doc(d)).collect()
    }

    fn sealed_secrets(&mut self) -> Result<Vec<(AccessKey, Vec<u8>)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT access_key, sealed_secret FROM api_keys WHERE sealed_secret IS NOT NULL")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)))
            .map_err(db_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_err)?;
        rows.into_iter()
            .map(|(k, s)| AccessKey::parse(&k).map(|k| (k, s)).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect()
    }

    fn operator(&mut self, id: &OperatorId) -> Result<Option<Operator>, StoreError> {
        let doc: Option<String> = self
            .conn
            .prepare_cached("SELECT doc FROM operators WHERE operator_id = ?1")
            .map_err(db_err)?
            .query_row([id.as_str()], |r| r.get(0))
            .optional()
            .map_err(db_err)?;
        doc.map(|d| rows::from_doc(&d)).transpose()
    }

    fn insert_operator(&mut self, operator: &Operator, token_hash: &[u8; 32]) -> Result<(), StoreError> {
        if self.operator(&operator.operator_id)?.is_some() {
            return Err(StoreError::Conflict { what: "operator", id: operator.operator_id.to_string() });
        }
        self.exec(
            "INSERT INTO operators(operator_id, role, token_hash, disabled, doc) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                operator.operator_id.as_str(),
                operator.role.as_str(),
                token_hash.as_slice(),
                operator.disabled,
                to_doc(operator)?
            ],
        )?;
        Ok(())
    }

    fn update_operator(&mut self, operator: &Operator) -> Result<(), StoreError> {
        let n = self.exec(
            "UPDATE operators SET role = ?2, disabled = ?3, doc = ?4 WHERE operator_id = ?1",
            params![operator.operator_id.as_str(), operator.role.as_str(), operator.disabled, to_doc(operator)?],
        )?;
        if n == 0 {
            return Err(StoreError::Missing { what: "operator", id: operator.operator_id.to_string() });
        }
        Ok(())
    }

    fn operator_count(&mut self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM operators", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(db_err)
    }

    fn meta(&mut self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        ConnMeta(self.conn).get(name)
    }

    fn set_meta(&mut self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.dirty = true;
        ConnMeta(self.conn).put(name, value)
    }

    fn pseudonym(&self, kind: &str, value: &[u8]) -> String {
        self.keys.pseudonymizer.pseudonym(kind, value)
    }

    fn append_audit(&mut self, draft: AuditDraft) -> Result<u64, StoreError> {
        let sealed = self
            .state
            .append(draft, self.now)
            .map_err(|e| StoreError::Corrupt(format!("cannot encode audit entry: {e}")))?;
        self.conn
            .prepare_cached("INSERT INTO audit_log(seq, entry, leaf) VALUES (?1, ?2, ?3)")
            .map_err(db_err)?
            .execute(params![sealed.seq as i64, sealed.text, sealed.leaf.as_slice()])
            .map_err(db_err)?;
        self.audited = true;
        Ok(sealed.seq)
    }
}

/// Runs one operation inside a savepoint. Returns whether its writes were kept, and its finish.
fn run_op(
    conn: &Connection,
    keys: &LogKeys,
    state: &mut LogState,
    now: OffsetDateTime,
    op: WriteOp,
) -> (bool, keysentinel_store::Finish) {
    let before = state.clone();
    let savepoint = conn.execute_batch("SAVEPOINT op");
    let mut tx = Tx { conn, keys, state, now, dirty: false, audited: false };
    let Outcome { keep, finish } = op(&mut tx);
    let unaudited = tx.dirty && !tx.audited;
    let kept = savepoint.is_ok() && keep && !unaudited && conn.execute_batch("RELEASE op").is_ok();
    if !kept {
        if savepoint.is_ok() {
            // If even the rollback fails, the whole batch's commit fails after it.
            let _ = conn.execute_batch("ROLLBACK TO op; RELEASE op");
        }
        *state = before;
    }
    if unaudited {
        tracing::error!("an operation changed state without an audit entry; rolled back");
        return (false, Box::new(move |_| finish(Err(StoreError::Unaudited))));
    }
    if let Err(e) = savepoint {
        let msg = db_err(e).to_string();
        return (false, Box::new(move |_| finish(Err(StoreError::Backend(msg)))));
    }
    (kept, finish)
}

pub fn run(
    conn: Connection,
    queue: mpsc::Receiver<WriteOp>,
    keys: LogKeys,
    mut state: LogState,
    clock: Arc<dyn Clock>,
) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < crate::MAX_BATCH {
            match queue.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let snapshot = state.clone();
        let now = clock.now();
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let err = db_err(e);
            for op in batch {
                // Nothing can be written; run each operation on a throwaway state so that it
                // reports the failure to its caller.
                let mut scratch = state.clone();
                let mut dead = Tx { conn: &conn, keys: &keys, state: &mut scratch, now, dirty: false, audited: false };
                let Outcome { finish, .. } = op(&mut dead);
                finish(Err(StoreError::Backend(err.to_string())));
            }
            continue;
        }
        let finishes: Vec<_> = batch.into_iter().map(|op| run_op(&conn, &keys, &mut state, now, op)).collect();
        let result = commit(&conn, &keys, &state, snapshot.size(), now);
        if result.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
            state = snapshot;
        }
        for (_, finish) in finishes {
            finish(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Backend(e.to_string())),
            });
        }
    }
}

/// Signs a checkpoint for the new tree head (when entries were added) and commits.
fn commit(
    conn: &Connection,
    keys: &LogKeys,
    state: &LogState,
    size_before: u64,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    if state.size() > size_before {
        let cp = Checkpoint { origin: keys.origin.clone(), size: state.size(), root: state.root(), time: now };
        let note = keys.signer.sign(&cp).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        conn.execute("INSERT INTO audit_checkpoints(size, note) VALUES (?1, ?2)", params![state.size() as i64, note])
            .map_err(db_err)?;
    }
    conn.execute_batch("COMMIT").map_err(db_err)
}
