//! Binding the state tables to the audit log (see `keysentinel_audit::state`).
//!
//! The writer records, in each operation's entries, the digest of every row it wrote as the row
//! stood after the operation. [`StateChecker`] replays the log's digests (the last one per row
//! wins) and compares every stored row with it: a row edited, inserted or deleted without an
//! entry is named by table and id.

use crate::db_err;
use crate::expected::{Expected, Want};
use keysentinel_audit::{row_digest, AuditEntry, Cell, Hash, RowState};
use keysentinel_store::{StateError, StoreError};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension};
use std::collections::HashMap;

/// A state table: its primary key and every other column, in the order they are digested.
/// Adding a column to a table means adding it here (and a migration re-recording the rows).
pub struct Table {
    pub name: &'static str,
    pub id: &'static str,
    pub columns: &'static [&'static str],
}

pub const TABLES: &[Table] = &[
    Table { name: "accounts", id: "account_id", columns: &["segment", "verification", "doc"] },
    Table {
        name: "api_keys",
        id: "access_key",
        columns: &["account_id", "status", "vendor_id", "expires_ms", "doc", "sealed_secret"],
    },
    Table { name: "operators", id: "operator_id", columns: &["role", "token_hash", "disabled", "doc"] },
    Table { name: "cases", id: "case_id", columns: &["key_id", "account_id", "status", "stage", "opened_ms", "doc"] },
    Table { name: "notices", id: "notice_id", columns: &["case_id", "status", "next_ms", "doc"] },
    Table { name: "report_assessments", id: "case_id", columns: &["status", "deadline_ms", "opened_ms", "doc"] },
    Table { name: "vendors", id: "vendor_id", columns: &["status", "recert_due_ms", "doc"] },
    Table {
        name: "counterparties",
        id: "counterparty_id",
        columns: &["kind", "account_id", "from_ms", "until_ms", "doc"],
    },
    Table { name: "parties", id: "party_id", columns: &["account_id", "kind", "doc"] },
];

/// Positions of the tables in [`TABLES`].
pub const ACCOUNTS: usize = 0;
pub const API_KEYS: usize = 1;
pub const OPERATORS: usize = 2;
pub const CASES: usize = 3;
pub const NOTICES: usize = 4;
pub const REPORTS: usize = 5;
pub const VENDORS: usize = 6;
pub const COUNTERPARTIES: usize = 7;
pub const PARTIES: usize = 8;

pub fn table(name: &str) -> Option<&'static Table> {
    TABLES.iter().find(|t| t.name == name)
}

/// The position of the table named `name` in [`TABLES`].
pub fn index(name: &str) -> Option<usize> {
    TABLES.iter().position(|t| t.name == name)
}

/// `SELECT id, columns… FROM table`: what [`digest_row`] digests.
pub fn select(t: &Table) -> String {
    format!("SELECT {}, {} FROM {}", t.id, t.columns.join(", "), t.name)
}

fn text_of(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::Text(b) => String::from_utf8_lossy(b).into_owned(),
        ValueRef::Integer(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

/// The digest of the row `r` (selected by [`select`]) and its id.
pub fn digest_row(t: &Table, r: &rusqlite::Row<'_>) -> Result<(String, Hash), StoreError> {
    let id = text_of(r.get_ref(0).map_err(db_err)?);
    let mut values = Vec::with_capacity(t.columns.len());
    for i in 0..t.columns.len() {
        values.push(r.get_ref(i + 1).map_err(db_err)?);
    }
    let reals: Vec<[u8; 8]> =
        values.iter().map(|v| if let ValueRef::Real(f) = v { f.to_be_bytes() } else { [0; 8] }).collect();
    let cells: Vec<Cell<'_>> = values
        .iter()
        .zip(&reals)
        .map(|(v, real)| match v {
            ValueRef::Null => Cell::Null,
            ValueRef::Integer(n) => Cell::Int(*n),
            // No state column is a float; one stored there is still digested, as a blob.
            ValueRef::Real(_) => Cell::Blob(real),
            ValueRef::Text(b) => std::str::from_utf8(b).map_or(Cell::Blob(b), Cell::Text),
            ValueRef::Blob(b) => Cell::Blob(b),
        })
        .collect();
    Ok((id.clone(), row_digest(t.name, &id, &cells)))
}

/// The digest of one row as it stands (`None` when there is no such row).
pub fn current(conn: &Connection, t: &Table, id: &str) -> Result<Option<Hash>, StoreError> {
    let sql = format!("{} WHERE {} = ?1", select(t), t.id);
    let mut stmt = conn.prepare_cached(&sql).map_err(db_err)?;
    let found = stmt.query_row([id], |r| Ok(digest_row(t, r))).optional().map_err(db_err)?;
    found.transpose().map(|o| o.map(|(_, h)| h))
}

/// What a state check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StateReport {
    /// Rows compared with their history.
    pub rows: u64,
    /// Whether the log records row digests at all (a log written before they existed does not,
    /// until the first start of this version records a baseline).
    pub bound: bool,
}

/// Replays the digests the log records, then checks the tables against them.
#[derive(Default)]
pub struct StateChecker {
    /// (table index, id) → (entry, digest after it; `None` for a removed row).
    expected: HashMap<(usize, String), (u64, Option<Hash>)>,
    entries: u64,
}

impl StateChecker {
    /// Takes the next entry of the log, in order.
    pub fn push(&mut self, entry: &AuditEntry) -> Result<(), StateError> {
        self.entries += 1;
        for RowState { table, id, digest } in &entry.state {
            let bad = || StateError::BadRecord { seq: entry.seq, table: table.clone(), id: id.clone() };
            let index = TABLES.iter().position(|t| t.name == table).ok_or_else(bad)?;
            let digest = match digest {
                None => None,
                Some(hex_text) => {
                    let bytes = hex::decode(hex_text).map_err(|_| bad())?;
                    Some(Hash::try_from(bytes.as_slice()).map_err(|_| bad())?)
                }
            };
            self.expected.insert((index, id.clone()), (entry.seq, digest));
        }
        Ok(())
    }

    /// Whether any entry so far recorded a row.
    pub fn bound(&self) -> bool {
        !self.expected.is_empty()
    }

    /// Compares every row of every state table with its history. A log that records no row
    /// at all is a log written before row digests existed: its rows are counted but cannot be
    /// judged (`bound` is false), unless the log is empty, when any row is one nobody recorded.
    /// Every row that matches goes into `keep`, when given (the store's map for checking rows
    /// as they are read while it serves).
    pub fn finish(mut self, conn: &Connection, keep: Option<&Expected>) -> Result<StateReport, StoreError> {
        let bound = self.bound();
        let mut rows = 0u64;
        for (index, t) in TABLES.iter().enumerate() {
            let mut stmt = conn.prepare(&select(t)).map_err(db_err)?;
            let mut cursor = stmt.query([]).map_err(db_err)?;
            while let Some(r) = cursor.next().map_err(db_err)? {
                let (id, digest) = digest_row(t, r)?;
                rows += 1;
                if !bound {
                    if self.entries == 0 {
                        return Err(StateError::Unrecorded { table: t.name.into(), id }.into());
                    }
                    continue;
                }
                match self.expected.remove(&(index, id)) {
                    None => {
                        let id = text_of(r.get_ref(0).map_err(db_err)?);
                        return Err(StateError::Unrecorded { table: t.name.into(), id }.into());
                    }
                    Some((seq, None)) => {
                        let id = text_of(r.get_ref(0).map_err(db_err)?);
                        return Err(StateError::Revived { table: t.name.into(), id, seq }.into());
                    }
                    Some((seq, Some(want))) if want != digest => {
                        let id = text_of(r.get_ref(0).map_err(db_err)?);
                        return Err(StateError::Changed { table: t.name.into(), id, seq }.into());
                    }
                    Some((seq, Some(want))) => {
                        if let Some(keep) = keep {
                            let id = text_of(r.get_ref(0).map_err(db_err)?);
                            keep.insert(keep.key(index, &id), Some(Want::new(seq, &want)));
                        }
                    }
                }
            }
        }
        // What is left was recorded but is not there any more (the first, for a stable message).
        let mut gone: Vec<_> =
            self.expected.into_iter().filter_map(|((i, id), (seq, d))| d.map(|_| (seq, i, id))).collect();
        gone.sort();
        if let Some((seq, i, id)) = gone.into_iter().next() {
            return Err(StateError::Deleted { table: TABLES[i].name.into(), id, seq }.into());
        }
        Ok(StateReport { rows, bound })
    }
}

/// Rows per `state.baseline` or `state.continued` entry: bounds an entry's size (and a proof's).
pub const ROWS_PER_ENTRY: usize = 1000;

/// Every row of every state table, as digests, for the baseline of a log written before row
/// digests existed.
pub fn all_rows(conn: &Connection) -> Result<Vec<RowState>, StoreError> {
    let mut out = Vec::new();
    for t in TABLES {
        let mut stmt = conn.prepare(&select(t)).map_err(db_err)?;
        let mut cursor = stmt.query([]).map_err(db_err)?;
        while let Some(r) = cursor.next().map_err(db_err)? {
            let (id, digest) = digest_row(t, r)?;
            out.push(RowState::new(t.name, &id, Some(digest)));
        }
    }
    Ok(out)
}
