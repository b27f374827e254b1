//! The single writer: group commit with a savepoint per operation.

use crate::expected::{Expected, Overlay, Want};
use crate::rows::{self, field, ms, to_doc};
use crate::state::{self, ROWS_PER_ENTRY};
use crate::{db_err, ConnMeta};
use keysentinel_audit::{Actor, AuditDraft, Checkpoint, Hash, LogState, RowState};
use keysentinel_domain::{
    AccessKey, Account, AccountId, ApiKey, Case, Clock, Counterparty, CounterpartyId, Notice, Operator, OperatorId,
    Party, PartyId, ReportAssessment, Vendor, VendorId,
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
    /// What the log holds for every row, committed, and what this batch's earlier operations
    /// recorded: every row the operation reads is judged against them.
    expected: &'a Expected,
    overlay: &'a Overlay,
    /// The rows this operation recorded (with the entry that recorded them), for the overlay.
    recorded: Vec<(u64, Option<Want>)>,
    /// Set by every method that changes a row; an operation that sets it must also append.
    dirty: bool,
    audited: bool,
    /// The state rows the operation wrote, in first-write order: their digests after the
    /// operation go into its entries.
    touched: Vec<(&'static state::Table, String)>,
    /// The operation's entries, sealed when it ends (their positions are fixed already), so
    /// that they can carry the rows' final state.
    pending: Vec<AuditDraft>,
}

impl<'a> Tx<'a> {
    fn new(
        conn: &'a Connection,
        keys: &'a LogKeys,
        state: &'a mut LogState,
        now: OffsetDateTime,
        expected: &'a Expected,
        overlay: &'a Overlay,
    ) -> Self {
        Tx {
            conn,
            keys,
            state,
            now,
            expected,
            overlay,
            recorded: Vec::new(),
            dirty: false,
            audited: false,
            touched: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// Runs a read of state rows under this operation's judge; a row the log does not vouch
    /// for fails the read (and so the operation), loudly: an edit in the file is never carried
    /// into a new row state, where the log would then vouch for it.
    fn judged<T>(&self, read: impl FnOnce(&dyn rows::Judge) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let judge = rows::InBatch { expected: self.expected, overlay: self.overlay, touched: &self.touched };
        read(&judge).inspect_err(|e| {
            if let StoreError::State(e) = e {
                self.expected.report(e);
            }
        })
    }

    fn exec(&mut self, table: &str, id: &str, sql: &str, params: impl rusqlite::Params) -> Result<usize, StoreError> {
        self.dirty = true;
        let t = state::table(table).ok_or_else(|| StoreError::Corrupt(format!("{table} is not a state table")))?;
        if !self.touched.iter().any(|(tt, i)| tt.name == t.name && i == id) {
            self.touched.push((t, id.to_owned()));
        }
        self.conn.prepare_cached(sql).map_err(db_err)?.execute(params).map_err(db_err)
    }

    /// Seals the operation's entries, each with the digests of the rows it leaves behind: a
    /// row goes with the operation's last entry aimed at it, the others with its last entry;
    /// rows beyond [`ROWS_PER_ENTRY`] spill into `state.continued` entries after it.
    fn seal(&mut self) -> Result<(), StoreError> {
        let pending = std::mem::take(&mut self.pending);
        let Some(last) = pending.len().checked_sub(1) else { return Ok(()) };
        let mut rows: Vec<Vec<RowState>> = vec![Vec::new(); pending.len()];
        let mut rest = Vec::new();
        for (t, id) in std::mem::take(&mut self.touched) {
            let digest = state::current(self.conn, t, &id)?;
            let row = RowState::new(t.name, &id, digest);
            match pending.iter().rposition(|d| d.target == id) {
                Some(i) if rows.get(i).is_some_and(|r| r.len() < ROWS_PER_ENTRY) => {
                    if let Some(r) = rows.get_mut(i) {
                        r.push(row);
                    }
                }
                _ => rest.push(row),
            }
        }
        let actor = pending.get(last).map(|d| d.actor.clone()).unwrap_or(Actor::System { component: "writer".into() });
        let mut chunks = rest.chunks(ROWS_PER_ENTRY);
        if let (Some(first), Some(r)) = (chunks.next(), rows.get_mut(last)) {
            r.extend_from_slice(first);
        }
        let mut drafts: Vec<(AuditDraft, Vec<RowState>)> = pending.into_iter().zip(rows).collect();
        for chunk in chunks {
            drafts.push((
                AuditDraft {
                    actor: actor.clone(),
                    action: "state.continued".into(),
                    target: "state".into(),
                    reason: "row states of the operation in the entries before this one".into(),
                    policy_version: None,
                    details: serde_json::json!({ "rows": chunk.len() }),
                },
                chunk.to_vec(),
            ));
        }
        for (draft, rows) in drafts {
            let seq = self.state.size();
            self.recorded.extend(wants(self.expected, seq, &rows)?);
            insert_entry(self.conn, self.state, draft, self.now, rows)?;
        }
        Ok(())
    }
}

/// The expected-map entries of `rows`, recorded by entry `seq`.
pub fn wants(expected: &Expected, seq: u64, rows: &[RowState]) -> Result<Vec<(u64, Option<Want>)>, StoreError> {
    rows.iter()
        .map(|r| {
            let table = state::index(&r.table)
                .ok_or_else(|| StoreError::Corrupt(format!("{} is not a state table", r.table)))?;
            let want = match &r.digest {
                None => None,
                Some(text) => {
                    let bytes = hex::decode(text).map_err(|_| StoreError::Corrupt("row digest is not hex".into()))?;
                    let digest = Hash::try_from(bytes.as_slice())
                        .map_err(|_| StoreError::Corrupt("row digest length".into()))?;
                    Some(Want::new(seq, &digest))
                }
            };
            Ok((expected.key(table, &r.id), want))
        })
        .collect()
}

/// Seals one entry onto the log and stores it.
pub fn insert_entry(
    conn: &Connection,
    state: &mut LogState,
    draft: AuditDraft,
    now: OffsetDateTime,
    rows: Vec<RowState>,
) -> Result<u64, StoreError> {
    let sealed = state
        .append_with_state(draft, now, rows)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode audit entry: {e}")))?;
    conn.prepare_cached("INSERT INTO audit_log(seq, entry, leaf) VALUES (?1, ?2, ?3)")
        .map_err(db_err)?
        .execute(params![sealed.seq as i64, sealed.text, sealed.leaf.as_slice()])
        .map_err(db_err)?;
    Ok(sealed.seq)
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
        self.judged(|j| rows::doc(self.conn, state::ACCOUNTS, "WHERE account_id = ?1", [id.as_str()], j))
    }

    fn live_case(&mut self, key_id: &AccessKey) -> Result<Option<Case>, StoreError> {
        self.judged(|j| rows::case(self.conn, "key_id", key_id.as_str(), j))
    }

    fn case(&mut self, id: &str) -> Result<Option<Case>, StoreError> {
        self.judged(|j| rows::case(self.conn, "case_id", id, j))
    }

    fn put_case(&mut self, case: &Case) -> Result<(), StoreError> {
        self.exec(
            "cases",
            case.case_id.as_str(),
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
        self.judged(|j| rows::doc(self.conn, state::REPORTS, "WHERE case_id = ?1", [case_id], j))
    }

    fn put_report(&mut self, report: &ReportAssessment) -> Result<(), StoreError> {
        self.exec(
            "report_assessments",
            report.case_id.as_str(),
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
        self.judged(|j| rows::doc(self.conn, state::NOTICES, "WHERE notice_id = ?1", [id], j))
    }

    fn put_notice(&mut self, notice: &Notice) -> Result<(), StoreError> {
        self.exec(
            "notices",
            notice.notice_id.as_str(),
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
        if self.account(&account.account_id)?.is_some() {
            return Err(StoreError::Conflict { what: "account", id: account.account_id.to_string() });
        }
        self.exec(
            "accounts",
            account.account_id.as_str(),
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
            "accounts",
            account.account_id.as_str(),
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
        self.judged(|j| rows::key(self.conn, access_key.as_str(), j))
    }

    fn insert_key(&mut self, stored: &StoredKey) -> Result<(), StoreError> {
        if self.key(&stored.key.access_key)?.is_some() {
            return Err(StoreError::Conflict { what: "key", id: stored.key.access_key.to_string() });
        }
        let (status, vendor, doc) = key_columns(&stored.key)?;
        self.exec(
            "api_keys",
            stored.key.access_key.as_str(),
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
            "api_keys",
            key.access_key.as_str(),
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
            "api_keys",
            access_key.as_str(),
            "UPDATE api_keys SET sealed_secret = ?2 WHERE access_key = ?1",
            params![access_key.as_str(), sealed],
        )?;
        Ok(())
    }

    fn live_key_count(&mut self, account: &AccountId, now: OffsetDateTime) -> Result<u32, StoreError> {
        // The rows themselves, judged, rather than a count: a key made to look revoked in the
        // file must not free a place under the per-account limit.
        let tail = "WHERE account_id = ?1 AND status IN ('pending','active','suspended') AND expires_ms > ?2";
        let counted = self.judged(|j| {
            rows::select(self.conn, state::API_KEYS, tail, params![account.as_str(), ms(now)], j, |_| Ok(()))
        })?;
        u32::try_from(counted.len()).map_err(|_| StoreError::Corrupt("key count".into()))
    }

    fn keys_past_expiry(&mut self, now: OffsetDateTime, limit: u32) -> Result<Vec<ApiKey>, StoreError> {
        let tail = "WHERE status IN ('pending','active','suspended') AND expires_ms <= ?1 ORDER BY expires_ms LIMIT ?2";
        self.judged(|j| rows::docs(self.conn, state::API_KEYS, tail, params![ms(now), limit], j))
    }

    fn sealed_secrets(&mut self) -> Result<Vec<(AccessKey, Vec<u8>)>, StoreError> {
        let sealed = state::TABLES
            .get(state::API_KEYS)
            .and_then(|t| t.columns.iter().position(|c| *c == "sealed_secret"))
            .map(|i| i + 1)
            .ok_or_else(|| StoreError::Corrupt("api_keys has no sealed_secret".into()))?;
        let found = self.judged(|j| {
            rows::select(self.conn, state::API_KEYS, "WHERE sealed_secret IS NOT NULL", [], j, |r| {
                Ok((r.get::<_, String>(0).map_err(db_err)?, r.get::<_, Vec<u8>>(sealed).map_err(db_err)?))
            })
        })?;
        found
            .into_iter()
            .map(|(k, s)| AccessKey::parse(&k).map(|k| (k, s)).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect()
    }

    fn vendor(&mut self, id: &VendorId) -> Result<Option<Vendor>, StoreError> {
        self.judged(|j| rows::doc(self.conn, state::VENDORS, "WHERE vendor_id = ?1", [id.as_str()], j))
    }

    fn put_vendor(&mut self, vendor: &Vendor) -> Result<(), StoreError> {
        self.exec(
            "vendors",
            vendor.vendor_id.as_str(),
            "INSERT INTO vendors(vendor_id, status, recert_due_ms, doc) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(vendor_id) DO UPDATE SET status = excluded.status, recert_due_ms = excluded.recert_due_ms,
             doc = excluded.doc",
            params![
                vendor.vendor_id.as_str(),
                vendor.status.as_str(),
                vendor.recertification_due.map(ms),
                to_doc(vendor)?
            ],
        )?;
        Ok(())
    }

    fn vendors_past_recertification(&mut self, now: OffsetDateTime, limit: u32) -> Result<Vec<Vendor>, StoreError> {
        let tail = "WHERE status = 'approved' AND recert_due_ms <= ?1 ORDER BY recert_due_ms, vendor_id LIMIT ?2";
        self.judged(|j| rows::docs(self.conn, state::VENDORS, tail, params![ms(now), limit], j))
    }

    fn vendor_keys(&mut self, id: &VendorId) -> Result<Vec<ApiKey>, StoreError> {
        let tail = "WHERE vendor_id = ?1 AND status != 'revoked' ORDER BY access_key";
        self.judged(|j| rows::docs(self.conn, state::API_KEYS, tail, params![id.as_str()], j))
    }

    fn counterparty(&mut self, id: &CounterpartyId) -> Result<Option<Counterparty>, StoreError> {
        self.judged(|j| rows::doc(self.conn, state::COUNTERPARTIES, "WHERE counterparty_id = ?1", [id.as_str()], j))
    }

    fn party(&mut self, id: &PartyId) -> Result<Option<Party>, StoreError> {
        self.judged(|j| rows::doc(self.conn, state::PARTIES, "WHERE party_id = ?1", [id.as_str()], j))
    }

    fn put_party(&mut self, p: &Party) -> Result<(), StoreError> {
        self.exec(
            "parties",
            p.party_id.as_str(),
            "INSERT INTO parties(party_id, account_id, kind, doc) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(party_id) DO UPDATE SET doc = excluded.doc",
            params![p.party_id.as_str(), p.account_id.as_str(), p.kind.as_str(), to_doc(p)?],
        )?;
        Ok(())
    }

    fn account_counterparties(&mut self, account: &AccountId) -> Result<Vec<Counterparty>, StoreError> {
        let tail = "WHERE account_id = ?1 ORDER BY counterparty_id";
        self.judged(|j| rows::docs(self.conn, state::COUNTERPARTIES, tail, params![account.as_str()], j))
    }

    fn put_counterparty(&mut self, c: &Counterparty) -> Result<(), StoreError> {
        self.exec(
            "counterparties",
            c.counterparty_id.as_str(),
            "INSERT INTO counterparties(counterparty_id, kind, account_id, from_ms, until_ms, doc) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(counterparty_id) DO UPDATE SET from_ms = excluded.from_ms, until_ms = excluded.until_ms,
             doc = excluded.doc",
            params![
                c.counterparty_id.as_str(),
                c.kind.as_str(),
                c.account_id.as_str(),
                ms(c.effective_from),
                c.effective_until.map(ms),
                to_doc(c)?
            ],
        )?;
        Ok(())
    }

    fn operator(&mut self, id: &OperatorId) -> Result<Option<Operator>, StoreError> {
        self.judged(|j| rows::doc(self.conn, state::OPERATORS, "WHERE operator_id = ?1", [id.as_str()], j))
    }

    fn insert_operator(&mut self, operator: &Operator, token_hash: &[u8; 32]) -> Result<(), StoreError> {
        // Names that differ only in case are one name to a person reading the log ("Alice"
        // approving what "alice" requested), so they may not coexist.
        let existing: Option<String> = self
            .conn
            .prepare_cached("SELECT operator_id FROM operators WHERE operator_id = ?1 COLLATE NOCASE")
            .map_err(db_err)?
            .query_row([operator.operator_id.as_str()], |r| r.get(0))
            .optional()
            .map_err(db_err)?;
        if let Some(existing) = existing {
            return Err(StoreError::Conflict { what: "operator", id: existing });
        }
        self.exec(
            "operators",
            operator.operator_id.as_str(),
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
            "operators",
            operator.operator_id.as_str(),
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
        // Sealed when the operation ends (`Tx::seal`); the position is known now.
        let seq = self.state.size() + self.pending.len() as u64;
        self.pending.push(draft);
        self.audited = true;
        Ok(seq)
    }
}

/// Runs one operation inside a savepoint. Returns whether its writes were kept, and its finish.
fn run_op(
    conn: &Connection,
    keys: &LogKeys,
    state: &mut LogState,
    now: OffsetDateTime,
    expected: &Expected,
    overlay: &mut Overlay,
    op: WriteOp,
) -> (bool, keysentinel_store::Finish) {
    let before = state.clone();
    let savepoint = conn.execute_batch("SAVEPOINT op");
    let mut tx = Tx::new(conn, keys, state, now, expected, overlay);
    // A panic in one operation (a bug: inputs are validated before any arithmetic) must not
    // take the writer down with it and stop every later write, revocations included: its
    // savepoint is rolled back and its caller told (the dropped `finish` closes its channel).
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| op(&mut tx)));
    let Ok(Outcome { keep, finish }) = ran else {
        tracing::error!("an operation panicked; rolled back, the writer goes on");
        if savepoint.is_ok() {
            let _ = conn.execute_batch("ROLLBACK TO op; RELEASE op");
        }
        *state = before;
        return (false, Box::new(|_| {}));
    };
    let unaudited = tx.dirty && !tx.audited;
    let sealed = if savepoint.is_ok() && keep && !unaudited { Some(tx.seal()) } else { None };
    let recorded = std::mem::take(&mut tx.recorded);
    drop(tx);
    let seal_failed = matches!(sealed, Some(Err(_)));
    let kept = savepoint.is_ok() && keep && !unaudited && !seal_failed && conn.execute_batch("RELEASE op").is_ok();
    if kept {
        // Later operations of the batch judge these rows by what this one recorded.
        overlay.extend(recorded);
    } else {
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
    if let Some(Err(e)) = sealed {
        tracing::error!("an operation's audit entries could not be sealed: {e}; rolled back");
        let msg = e.to_string();
        return (false, Box::new(move |_| finish(Err(StoreError::Backend(msg)))));
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
    expected: &Expected,
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
                let nothing = Overlay::new();
                let mut dead = Tx::new(&conn, &keys, &mut scratch, now, expected, &nothing);
                let Outcome { finish, .. } = op(&mut dead);
                finish(Err(StoreError::Backend(err.to_string())));
            }
            continue;
        }
        let mut overlay = Overlay::new();
        let finishes: Vec<_> =
            batch.into_iter().map(|op| run_op(&conn, &keys, &mut state, now, expected, &mut overlay, op)).collect();
        // Readers may see the batch's rows from the instant it commits: they are staged first.
        expected.stage(&overlay);
        let result = commit(&conn, &keys, &state, snapshot.size(), now);
        if result.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
            state = snapshot;
        }
        expected.settle(overlay, result.is_ok());
        for (_, finish) in finishes {
            finish(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Backend(e.to_string())),
            });
        }
    }
}

/// Signs a checkpoint for the new tree head (when entries were added) and commits.
pub(crate) fn commit(
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
