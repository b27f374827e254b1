//! Row encoding: each entity is stored as its JSON document plus indexed columns.

use crate::db_err;
use keysentinel_domain::{
    AccessKey, Account, AccountId, Case, Counterparty, CounterpartyId, ReportAssessment, Vendor, VendorId,
};
use keysentinel_store::{StoreError, StoredKey};
use rusqlite::{Connection, OptionalExtension};
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

pub fn account(c: &Connection, id: &AccountId) -> Result<Option<Account>, StoreError> {
    let doc: Option<String> = c
        .prepare_cached("SELECT doc FROM accounts WHERE account_id = ?1")
        .map_err(db_err)?
        .query_row([id.as_str()], |r| r.get(0))
        .optional()
        .map_err(db_err)?;
    doc.map(|d| from_doc(&d)).transpose()
}

/// The documents a query selects (its first column), decoded.
pub fn docs<T: serde::de::DeserializeOwned>(
    c: &Connection,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<Vec<T>, StoreError> {
    let mut stmt = c.prepare_cached(sql).map_err(db_err)?;
    let docs = stmt
        .query_map(params, |r| r.get::<_, String>(0))
        .map_err(db_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db_err)?;
    docs.iter().map(|d| from_doc(d)).collect()
}

/// The case whose `column` (`case_id`, or `key_id` for the key's live case) is `value`.
pub fn case(c: &Connection, column: &str, value: &str) -> Result<Option<Case>, StoreError> {
    let sql = match column {
        "case_id" => "SELECT doc FROM cases WHERE case_id = ?1",
        _ => "SELECT doc FROM cases WHERE key_id = ?1 AND status != 'closed'",
    };
    let doc: Option<String> =
        c.prepare_cached(sql).map_err(db_err)?.query_row([value], |r| r.get(0)).optional().map_err(db_err)?;
    doc.map(|d| from_doc(&d)).transpose()
}

pub fn report(c: &Connection, case_id: &str) -> Result<Option<ReportAssessment>, StoreError> {
    let doc: Option<String> = c
        .prepare_cached("SELECT doc FROM report_assessments WHERE case_id = ?1")
        .map_err(db_err)?
        .query_row([case_id], |r| r.get(0))
        .optional()
        .map_err(db_err)?;
    doc.map(|d| from_doc(&d)).transpose()
}

pub fn key(c: &Connection, access_key: &AccessKey) -> Result<Option<StoredKey>, StoreError> {
    let row: Option<(String, Option<Vec<u8>>)> = c
        .prepare_cached("SELECT doc, sealed_secret FROM api_keys WHERE access_key = ?1")
        .map_err(db_err)?
        .query_row([access_key.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(db_err)?;
    row.map(|(doc, sealed_secret)| Ok(StoredKey { key: from_doc(&doc)?, sealed_secret })).transpose()
}

pub fn vendor(c: &Connection, id: &VendorId) -> Result<Option<Vendor>, StoreError> {
    let doc: Option<String> = c
        .prepare_cached("SELECT doc FROM vendors WHERE vendor_id = ?1")
        .map_err(db_err)?
        .query_row([id.as_str()], |r| r.get(0))
        .optional()
        .map_err(db_err)?;
    doc.map(|d| from_doc(&d)).transpose()
}

pub fn counterparty(c: &Connection, id: &CounterpartyId) -> Result<Option<Counterparty>, StoreError> {
    let doc: Option<String> = c
        .prepare_cached("SELECT doc FROM counterparties WHERE counterparty_id = ?1")
        .map_err(db_err)?
        .query_row([id.as_str()], |r| r.get(0))
        .optional()
        .map_err(db_err)?;
    doc.map(|d| from_doc(&d)).transpose()
}
