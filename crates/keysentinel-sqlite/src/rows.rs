//! Row encoding: each entity is stored as its JSON document plus indexed columns. Rows of the
//! state tables are read whole and judged against what the audit log holds for them
//! ([`Judge`], `expected.rs`) before they are decoded.

use crate::db_err;
use crate::expected::{Expected, Overlay};
use crate::state::{self, Table};
use keysentinel_audit::Hash;
use keysentinel_store::{StateError, StoreError, StoredKey};
use rusqlite::Connection;
use serde_json::Value;

pub fn ms(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn to_doc<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("cannot encode row: {e}")))
}

pub fn from_doc<T: serde::de::DeserializeOwned>(doc: &str) -> Result<T, StoreError> {
    serde_json::from_str(doc).map_err(|e| StoreError::Corrupt(format!("cannot decode row: {e}")))
}

/// The document's string field, for indexed columns.
pub fn field(doc: &Value, name: &str) -> Option<String> {
    doc.get(name).and_then(Value::as_str).map(str::to_owned)
}

/// Vouches (or not) for a state row read from the file.
pub trait Judge {
    /// Ok when row `id` of `table` (its index in `state::TABLES`), whose digest is `digest`,
    /// is what the audit log holds for it.
    fn judge(&self, table: usize, id: &str, digest: &Hash) -> Result<(), StateError>;
}

/// A reader's judge: the committed state (and the batch being committed).
pub struct Committed<'a>(pub &'a Expected);

impl Judge for Committed<'_> {
    fn judge(&self, table: usize, id: &str, digest: &Hash) -> Result<(), StateError> {
        let name = state::TABLES.get(table).map_or("?", |t| t.name);
        self.0.judge(self.0.key(table, id), digest).map_err(|m| m.error(name, id))
    }
}

/// The writer's judge inside a batch: rows the running operation wrote itself are its own;
/// rows earlier operations of the batch wrote are judged against what they recorded; the rest
/// against the committed state.
pub struct InBatch<'a> {
    pub expected: &'a Expected,
    pub overlay: &'a Overlay,
    pub touched: &'a [(&'static Table, String)],
}

impl Judge for InBatch<'_> {
    fn judge(&self, table: usize, id: &str, digest: &Hash) -> Result<(), StateError> {
        let name = state::TABLES.get(table).map_or("?", |t| t.name);
        if self.touched.iter().any(|(t, i)| t.name == name && i == id) {
            return Ok(());
        }
        let key = self.expected.key(table, id);
        self.expected.judge_in_batch(self.overlay, key, digest).map_err(|m| m.error(name, id))
    }
}

/// The rows of table `table` that `tail` (`WHERE … ORDER BY … LIMIT …`, over `params`)
/// selects, each judged and then decoded by `decode` (columns in `state::select` order: the id,
/// then the table's columns).
pub fn select<T>(
    c: &Connection,
    table: usize,
    tail: &str,
    params: impl rusqlite::Params,
    judge: &dyn Judge,
    decode: impl Fn(&rusqlite::Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let t = state::TABLES.get(table).ok_or_else(|| StoreError::Corrupt(format!("no state table {table}")))?;
    let sql = format!("{} {tail}", state::select(t));
    let mut stmt = c.prepare_cached(&sql).map_err(db_err)?;
    let mut rows = stmt.query(params).map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(db_err)? {
        let (id, digest) = state::digest_row(t, r)?;
        judge.judge(table, &id, &digest)?;
        out.push(decode(r)?);
    }
    Ok(out)
}

/// The position of `column` in a row of [`select`].
fn column(table: usize, name: &str) -> Result<usize, StoreError> {
    state::TABLES
        .get(table)
        .and_then(|t| t.columns.iter().position(|c| *c == name))
        .map(|i| i + 1)
        .ok_or_else(|| StoreError::Corrupt(format!("state table {table} has no column {name}")))
}

/// The documents of the rows `tail` selects, judged, decoded.
pub fn docs<T: serde::de::DeserializeOwned>(
    c: &Connection,
    table: usize,
    tail: &str,
    params: impl rusqlite::Params,
    judge: &dyn Judge,
) -> Result<Vec<T>, StoreError> {
    let doc = column(table, "doc")?;
    select(c, table, tail, params, judge, |r| from_doc(&r.get::<_, String>(doc).map_err(db_err)?))
}

/// The document of the one row `tail` selects, if any.
pub fn doc<T: serde::de::DeserializeOwned>(
    c: &Connection,
    table: usize,
    tail: &str,
    params: impl rusqlite::Params,
    judge: &dyn Judge,
) -> Result<Option<T>, StoreError> {
    Ok(docs(c, table, tail, params, judge)?.into_iter().next())
}

/// The key row: the key and its sealed secret.
pub fn key(c: &Connection, access_key: &str, judge: &dyn Judge) -> Result<Option<StoredKey>, StoreError> {
    let (doc, sealed) = (column(state::API_KEYS, "doc")?, column(state::API_KEYS, "sealed_secret")?);
    let found = select(c, state::API_KEYS, "WHERE access_key = ?1", [access_key], judge, |r| {
        Ok(StoredKey {
            key: from_doc(&r.get::<_, String>(doc).map_err(db_err)?)?,
            sealed_secret: r.get(sealed).map_err(db_err)?,
        })
    })?;
    Ok(found.into_iter().next())
}

/// The case whose `column` (`case_id`, or `key_id` for the key's live case) is `value`.
pub fn case<T: serde::de::DeserializeOwned>(
    c: &Connection,
    column: &str,
    value: &str,
    judge: &dyn Judge,
) -> Result<Option<T>, StoreError> {
    let tail = match column {
        "case_id" => "WHERE case_id = ?1",
        _ => "WHERE key_id = ?1 AND status != 'closed'",
    };
    doc(c, state::CASES, tail, [value], judge)
}
