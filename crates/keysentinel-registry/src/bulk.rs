//! Bulk import of an existing registry (issue #13, item 7): accounts, their parties (owners,
//! representatives, operators), vendors' applications and counterparties (mandates, broker
//! arrangements, affiliates, sub-accounts) as NDJSON or CSV. Every line is read first and every
//! bad one named by its line; then all of them go in one transaction, each the registry change
//! the API would make with its own entry, under the API's rules — or, if any is refused, none.
//! A last entry (`registry.import`) records the batch: its digest and counts.

use crate::accounts::{insert_account, NewAccount};
use crate::counterparties::{insert, NewCounterparty};
use crate::parties::{insert_party, NewParty};
use crate::vendors::{apply_in, NewVendor};
use crate::{check_reason, Registry, RegistryError};
use keysentinel_audit::{Actor, AuditDraft};
use keysentinel_domain::{AccountId, CounterpartyId, ValidationError, VendorId};
use serde::Serialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// Lines in one batch at most: it is one transaction.
pub const MAX_BULK_LINES: usize = 10_000;

/// Fields a CSV cell holds as a list, `;`-separated.
const LIST_FIELDS: [&str; 6] =
    ["declared_countries", "related_accounts", "symbols", "countries", "ip_allowlist", "egress_cidrs"];

/// CSV records, each with the line it starts on.
type CsvRecords = Vec<(usize, Vec<String>)>;
/// Objects read from the batch, each with its line, or what was wrong with the line.
type Objects = Vec<(usize, Result<Value, String>)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkFormat {
    Ndjson,
    Csv,
}

/// One line, read.
enum BulkRecord {
    Account(NewAccount),
    Party { account_id: AccountId, new: NewParty },
    Vendor(NewVendor),
    Counterparty(Box<NewCounterparty>),
}

/// What one line became.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BulkImported {
    pub line: usize,
    /// account | party | vendor | counterparty
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BulkReport {
    pub imported: usize,
    pub records: Vec<BulkImported>,
    /// SHA-256 of the batch as sent, recorded in the `registry.import` entry.
    pub digest: String,
}

/// Splits CSV text into records of fields (RFC 4180: quoted fields may hold commas, quotes as
/// `""` and line breaks). Each record comes with the line it starts on.
fn csv_records(text: &str) -> Result<CsvRecords, (usize, String)> {
    let mut out = Vec::new();
    let (mut record, mut field) = (Vec::new(), String::new());
    let (mut line, mut start) = (1usize, 1usize);
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut touched = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => {
                if c == '\n' {
                    line += 1;
                }
                field.push(c);
            }
            (false, '"') if field.is_empty() => {
                quoted = true;
                touched = true;
            }
            (false, '"') => return Err((line, "a quote inside an unquoted field".into())),
            (false, ',') => {
                record.push(std::mem::take(&mut field));
                touched = true;
            }
            (false, '\r') => {}
            (false, '\n') => {
                if touched || !field.is_empty() {
                    record.push(std::mem::take(&mut field));
                    out.push((start, std::mem::take(&mut record)));
                }
                touched = false;
                line += 1;
                start = line;
            }
            (false, c) => {
                field.push(c);
                touched = true;
            }
        }
    }
    if quoted {
        return Err((start, "a quoted field is not closed".into()));
    }
    if touched || !field.is_empty() {
        record.push(field);
        out.push((start, record));
    }
    Ok(out)
}

/// CSV rows as the JSON objects NDJSON lines would be: the header names the fields (`type`
/// first among them), an empty cell is an absent field, list fields are `;`-separated, and
/// `omnibus` is `true` or `false`.
fn csv_objects(text: &str) -> Result<Objects, RegistryError> {
    let bad = |line: usize, m: String| ValidationError::new("csv", format!("line {line}: {m}"));
    let records = csv_records(text).map_err(|(l, m)| bad(l, m))?;
    let mut rows = records.into_iter();
    let Some((_, header)) = rows.next() else { return Ok(Vec::new()) };
    // A spreadsheet's "CSV UTF-8" starts with a byte-order mark.
    let header: Vec<String> = header.into_iter().map(|h| h.trim_start_matches('\u{feff}').trim().to_owned()).collect();
    if !header.iter().any(|h| h == "type") {
        return Err(bad(1, "the header needs a `type` column".into()).into());
    }
    if let Some(twice) = header.iter().enumerate().find(|(i, h)| header[..*i].contains(h)).map(|(_, h)| h) {
        return Err(bad(1, format!("column {twice:?} appears twice: which of its cells is meant?")).into());
    }
    Ok(rows
        .map(|(line, cells)| {
            if cells.len() != header.len() {
                return (line, Err(format!("{} cells for {} columns", cells.len(), header.len())));
            }
            let mut obj = Map::new();
            for (name, cell) in header.iter().zip(cells) {
                if cell.is_empty() {
                    continue;
                }
                let value = if LIST_FIELDS.contains(&name.as_str()) {
                    json!(cell.split(';').map(str::trim).filter(|s| !s.is_empty()).collect::<Vec<_>>())
                } else if name == "omnibus" {
                    match cell.as_str() {
                        "true" => json!(true),
                        "false" => json!(false),
                        other => return (line, Err(format!("omnibus: {other:?} is neither true nor false"))),
                    }
                } else {
                    json!(cell)
                };
                obj.insert(name.clone(), value);
            }
            (line, Ok(Value::Object(obj)))
        })
        .collect())
}

/// A JSON value whose objects, at any depth, name each field once. serde_json keeps the last
/// of a repeated field without a word, and has no switch to refuse it (hence this, by hand); an
/// import must not pick one of two values for the operator.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut obj = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if obj.contains_key(&name) {
                return Err(serde::de::Error::custom(format!("field {name:?} appears twice")));
            }
            let Strict(v) = map.next_value()?;
            obj.insert(name, v);
        }
        Ok(Value::Object(obj))
    }
}

/// One object as the record its `type` names; `reason` fills in a record's missing reason.
fn record(mut obj: Value, reason: &str) -> Result<BulkRecord, String> {
    let map = obj.as_object_mut().ok_or("not a JSON object")?;
    let kind = match map.remove("type") {
        Some(Value::String(k)) => k,
        _ => return Err("missing field \"type\" (account, party, vendor or counterparty)".into()),
    };
    let text = |e: serde_json::Error| e.to_string();
    match kind.as_str() {
        "account" => Ok(BulkRecord::Account(serde_json::from_value(obj).map_err(text)?)),
        "party" => {
            let account_id: AccountId = match map.remove("account_id") {
                Some(v) => serde_json::from_value(v).map_err(text)?,
                None => return Err("missing field `account_id`".into()),
            };
            map.entry("reason").or_insert_with(|| json!(reason));
            Ok(BulkRecord::Party { account_id, new: serde_json::from_value(obj).map_err(text)? })
        }
        "vendor" => {
            map.entry("reason").or_insert_with(|| json!(reason));
            Ok(BulkRecord::Vendor(serde_json::from_value(obj).map_err(text)?))
        }
        "counterparty" => {
            map.entry("reason").or_insert_with(|| json!(reason));
            Ok(BulkRecord::Counterparty(Box::new(serde_json::from_value(obj).map_err(text)?)))
        }
        other => Err(format!("unknown type {other:?}; expected account, party, vendor or counterparty")),
    }
}

/// Reads the whole batch; every bad line is named (a 400 listing them all).
fn read(text: &str, format: BulkFormat, reason: &str) -> Result<Vec<(usize, BulkRecord)>, RegistryError> {
    let objects: Objects = match format {
        BulkFormat::Ndjson => text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| (i + 1, serde_json::from_str::<Strict>(l).map(|s| s.0).map_err(|e| format!("not JSON: {e}"))))
            .collect(),
        BulkFormat::Csv => csv_objects(text)?,
    };
    if objects.is_empty() {
        return Err(ValidationError::new("body", "no records: send NDJSON lines or CSV rows after a header").into());
    }
    if objects.len() > MAX_BULK_LINES {
        return Err(ValidationError::new("body", format!("at most {MAX_BULK_LINES} records in one batch")).into());
    }
    let mut records = Vec::new();
    let mut errors = Vec::new();
    for (line, obj) in objects {
        match obj.and_then(|o| record(o, reason)) {
            Ok(r) => records.push((line, r)),
            Err(e) => errors.push(format!("line {line}: {e}")),
        }
    }
    if !errors.is_empty() {
        return Err(ValidationError::new("lines", errors.join("; ")).into());
    }
    Ok(records)
}

/// What the observers are told after the commit.
#[derive(Default)]
struct Touched {
    vendors: Vec<VendorId>,
    counterparties: Vec<CounterpartyId>,
}

impl Registry {
    /// Imports a registry batch, all or nothing. Accounts go first in the file's order, so a
    /// party or counterparty may name an account the same batch creates (earlier or later).
    pub async fn bulk_import(
        &self,
        actor: Actor,
        text: String,
        format: BulkFormat,
        reason: String,
    ) -> Result<BulkReport, RegistryError> {
        check_reason(&reason)?;
        let digest = hex::encode(Sha256::digest(text.as_bytes()));
        let mut records = read(&text, format, &reason)?;
        drop(text);
        // Accounts before what names them.
        records.sort_by_key(|(line, r)| (!matches!(r, BulkRecord::Account(_)), *line));
        let batch_digest = digest.clone();
        let (report, touched) = self
            .transact(move |tx| {
                let mut out = Vec::new();
                let mut touched = Touched::default();
                for (line, r) in records {
                    let at = |error: RegistryError| RegistryError::AtLine { line, error: Box::new(error) };
                    let why = format!("registry import, line {line}: {reason}");
                    let (kind, id) = match r {
                        BulkRecord::Account(new) => {
                            let a = insert_account(tx, actor.clone(), new, why).map_err(at)?;
                            ("account", a.account_id.to_string())
                        }
                        BulkRecord::Party { account_id, mut new } => {
                            new.reason = format!("registry import, line {line}: {}", new.reason);
                            let p = insert_party(tx, actor.clone(), &account_id, new).map_err(at)?;
                            ("party", p.party_id.to_string())
                        }
                        BulkRecord::Vendor(mut new) => {
                            check_reason(&new.reason).map_err(at)?;
                            new.reason = format!("registry import, line {line}: {}", new.reason);
                            let v = apply_in(tx, actor.clone(), new).map_err(at)?;
                            touched.vendors.push(v.vendor_id.clone());
                            ("vendor", v.vendor_id.to_string())
                        }
                        BulkRecord::Counterparty(new) => {
                            check_reason(&new.reason).map_err(at)?;
                            let reason = format!("registry import, line {line}: {}", new.reason);
                            let c = (*new).build(&actor.label(), tx.now()).map_err(at)?;
                            insert(tx, actor.clone(), &c, "counterparty.create", reason).map_err(at)?;
                            touched.counterparties.push(c.counterparty_id.clone());
                            ("counterparty", c.counterparty_id.to_string())
                        }
                    };
                    out.push(BulkImported { line, kind: kind.into(), id });
                }
                out.sort_by_key(|r| r.line);
                let count = |k: &str| out.iter().filter(|r| r.kind == k).count();
                tx.append_audit(AuditDraft {
                    actor,
                    action: "registry.import".into(),
                    target: format!("import:{}", &batch_digest[..16]),
                    reason,
                    policy_version: None,
                    details: json!({ "digest": batch_digest, "records": out.len(), "accounts": count("account"),
                        "parties": count("party"), "vendors": count("vendor"), "counterparties": count("counterparty") }),
                })?;
                Ok((BulkReport { imported: out.len(), records: out, digest: batch_digest }, touched))
            })
            .await?;
        for v in &touched.vendors {
            self.publish_vendor(v);
        }
        self.publish_counterparties(&touched.counterparties);
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_quotes_and_line_breaks() {
        let text = "type,account_id,declared_purpose\naccount,a1,\"bots, and \"\"more\"\"\"\r\n\naccount,a2,\"two\nlines\"\naccount,a3,x";
        let recs = csv_records(text).unwrap();
        let lines: Vec<usize> = recs.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [1, 2, 4, 6], "blank lines skipped, a quoted line break counted");
        assert_eq!(recs[1].1, ["account", "a1", "bots, and \"more\""]);
        assert_eq!(recs[2].1[2], "two\nlines");
        assert!(csv_records("a,\"open").is_err());
        assert!(csv_records("a,b\"c").is_err());
    }

    #[test]
    fn every_bad_line_is_named() {
        let text = "{\"type\":\"account\",\"account_id\":\"a1\",\"segment\":\"retail\"}\nnot json\n{\"type\":\"teleport\"}\n{\"type\":\"party\",\"kind\":\"desk\"}\n";
        let Err(RegistryError::Validation(e)) = read(text, BulkFormat::Ndjson, "r") else { panic!("refused") };
        assert!(e.message.contains("line 2: not JSON") && e.message.contains("line 3: unknown type"), "{}", e.message);
        assert!(e.message.contains("line 4: missing field `account_id`"), "{}", e.message);
        assert!(!e.message.contains("line 1:"), "a good line is not named: {}", e.message);
        let csv = "type,account_id,segment,declared_countries\naccount,a1,corporate,KR;SG\naccount,a2\n";
        let Err(RegistryError::Validation(e)) = read(csv, BulkFormat::Csv, "r") else { panic!("refused") };
        assert!(e.message.contains("line 3: 2 cells for 4 columns"), "{}", e.message);
        let ok = read("type,account_id,segment,declared_countries\naccount,a1,corporate,KR;SG\n", BulkFormat::Csv, "r")
            .unwrap();
        let BulkRecord::Account(a) = &ok[0].1 else { panic!("an account") };
        assert_eq!(a.declared_countries.len(), 2);
    }

    #[test]
    fn a_field_given_twice_is_refused_not_one_of_them_kept() {
        let text = "{\"type\":\"account\",\"account_id\":\"y-1\",\"segment\":\"broker\",\"segment\":\"retail\"}\n{\"type\":\"counterparty\",\"mandate\":{\"symbols\":[],\"symbols\":[]}}\n";
        let Err(RegistryError::Validation(e)) = read(text, BulkFormat::Ndjson, "r") else { panic!("refused") };
        assert!(e.message.contains("line 1: not JSON: field \"segment\" appears twice"), "{}", e.message);
        assert!(e.message.contains("line 2: not JSON: field \"symbols\" appears twice"), "at any depth: {}", e.message);
        let csv = "type,account_id,segment,segment\naccount,w-7,broker,retail\n";
        let Err(RegistryError::Validation(e)) = read(csv, BulkFormat::Csv, "r") else { panic!("refused") };
        assert!(e.message.contains("line 1: column \"segment\" appears twice"), "{}", e.message);
        // A spreadsheet's byte-order mark before the header is not part of the first column's name.
        let ok = read("\u{feff}type,account_id,segment\naccount,a1,retail\n", BulkFormat::Csv, "r").unwrap();
        assert_eq!(ok.len(), 1);
    }
}
