//! Importing registry records sent as event-format v1 lines (`vendor` and `relationship`,
//! docs/events.md) by an operator: each line becomes the registry change it stands for, with its
//! own audit entry, under the same rules as the API's — or, if any line is refused, none does
//! (one transaction for the batch).

use crate::counterparties::{end, insert, NewCounterparty};
use crate::vendors::{restrict_keys, VendorChange};
use crate::{Registry, RegistryError};
use keysentinel_audit::{Actor, AuditDraft};
use keysentinel_domain::{
    AccessKey, AccountId, CounterpartyId, CounterpartyKind, CountryCode, EgressRanges, IpAllowlist, Principal,
    ResponsePolicy, Symbol, ValidationError, Vendor, VendorId, VendorStatus,
};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use time::OffsetDateTime;

/// One registry line, read.
#[derive(Debug, Clone)]
pub enum RegistryRecord {
    Vendor { vendor_id: VendorId, status: VendorStatus, egress_cidrs: EgressRanges, legal_name: Option<String> },
    Relationship { new: Box<NewCounterparty>, in_effect: bool },
}

impl RegistryRecord {
    /// `vendor` or `relationship`.
    pub fn kind(&self) -> &'static str {
        match self {
            RegistryRecord::Vendor { .. } => "vendor",
            RegistryRecord::Relationship { .. } => "relationship",
        }
    }
}

/// What became of one line.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImportedRecord {
    /// 1-based line number in the batch.
    pub line: usize,
    /// vendor | relationship
    #[serde(rename = "type")]
    pub kind: String,
    /// The vendor's or the counterparty's id.
    pub id: String,
    /// created | suspended | ended | unchanged
    pub outcome: String,
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct RegistryImportReport {
    /// Lines that changed the registry, each with its audit entry.
    pub imported: usize,
    /// Lines the registry already held as they are (a retry): no change, no entry.
    pub unchanged: usize,
    pub records: Vec<ImportedRecord>,
}

fn invalid(field: &str, message: impl Into<String>) -> RegistryError {
    ValidationError::new(field, message).into()
}

fn text<'a>(v: &'a Value, field: &str) -> Result<Option<&'a str>, RegistryError> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(field, "must be a string")),
    }
}

fn list<'a>(v: &'a Value, field: &str) -> Result<Vec<&'a str>, RegistryError> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => {
            items.iter().map(|i| i.as_str().ok_or_else(|| invalid(field, "must be a list of strings"))).collect()
        }
        Some(_) => Err(invalid(field, "must be a list of strings")),
    }
}

fn flag(v: &Value, field: &str, default: bool) -> Result<bool, RegistryError> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(invalid(field, "must be true or false")),
    }
}

fn time_of(v: &Value, field: &str) -> Result<Option<OffsetDateTime>, RegistryError> {
    text(v, field)?
        .map(|t| {
            OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .map_err(|_| invalid(field, format!("{t:?} is not an RFC 3339 time")))
        })
        .transpose()
}

/// Reads a `vendor` or `relationship` line (the event parser has checked its format already);
/// errors name the field.
pub fn parse_registry_line(line: &str) -> Result<RegistryRecord, RegistryError> {
    let v: Value = serde_json::from_str(line).map_err(|e| invalid("line", format!("not a JSON object: {e}")))?;
    match text(&v, "type")? {
        Some("vendor") => {
            let id = text(&v, "vendor_id")?.ok_or_else(|| invalid("vendor_id", "is required"))?;
            let status = text(&v, "status")?.ok_or_else(|| invalid("status", "is required"))?;
            Ok(RegistryRecord::Vendor {
                vendor_id: VendorId::parse(id)?,
                status: status.parse()?,
                egress_cidrs: EgressRanges::parse(&list(&v, "egress_cidrs")?)?,
                legal_name: text(&v, "legal_name")?.map(str::to_owned),
            })
        }
        Some("relationship") => {
            let from = AccountId::parse(text(&v, "from")?.ok_or_else(|| invalid("from", "is required"))?)?;
            let to = AccountId::parse(text(&v, "to")?.ok_or_else(|| invalid("to", "is required"))?)?;
            let kind: CounterpartyKind = text(&v, "kind")?.ok_or_else(|| invalid("kind", "is required"))?.parse()?;
            let effective_from = time_of(&v, "effective_from")?
                .ok_or_else(|| invalid("effective_from", "a registry record says from when it holds (RFC 3339)"))?;
            let effective_until = time_of(&v, "effective_until")?;
            let principal = match text(&v, "principal")? {
                None => None,
                Some("own") => Some(Principal::Own),
                Some("issuer") => Some(Principal::Issuer),
                Some("clients") => Some(Principal::Clients),
                Some(other) => return Err(invalid("principal", format!("{other:?}: own, issuer or clients"))),
            };
            let symbols = list(&v, "symbols")?.into_iter().map(Symbol::parse).collect::<Result<Vec<_>, _>>()?;
            let countries =
                list(&v, "countries")?.into_iter().map(CountryCode::parse).collect::<Result<Vec<_>, _>>()?;
            let document_ref = text(&v, "document_ref")?.unwrap_or_default().to_owned();
            let id = match text(&v, "counterparty_id")? {
                Some(id) => CounterpartyId::parse(id)?,
                // The same relationship sent again is the same record: its retry is recognised.
                None => {
                    let mut h = Sha256::new();
                    for part in [kind.as_str(), from.as_str(), to.as_str()] {
                        h.update(part.as_bytes());
                        h.update([0]);
                    }
                    h.update(effective_from.unix_timestamp().to_be_bytes());
                    CounterpartyId::parse(&format!("cp-{}", &hex::encode(h.finalize())[..16]))?
                }
            };
            let related = if to == from { Vec::new() } else { vec![to] };
            let new = NewCounterparty {
                counterparty_id: Some(id),
                kind,
                account_id: from,
                related_accounts: related,
                principal,
                issuer: text(&v, "issuer")?.map(str::to_owned),
                symbols,
                countries,
                ip_allowlist: IpAllowlist::parse(&list(&v, "ip_allowlist")?)?,
                omnibus: flag(&v, "omnibus", false)?,
                effective_from,
                effective_until,
                document_ref,
                reason: "imported".into(),
            };
            Ok(RegistryRecord::Relationship { new: Box::new(new), in_effect: flag(&v, "in_effect", true)? })
        }
        other => Err(invalid("type", format!("{other:?} is not a registry record (vendor or relationship)"))),
    }
}

/// What one transaction changed, for the observers after it commits.
#[derive(Default)]
struct Changed {
    keys: Vec<AccessKey>,
    vendors: Vec<VendorId>,
    counterparties: Vec<CounterpartyId>,
}

fn at_line(line: usize) -> impl Fn(RegistryError) -> RegistryError {
    move |e| RegistryError::AtLine { line, error: Box::new(e) }
}

impl Registry {
    /// Imports `records` (line number, record) as one transaction: all of them, or none.
    pub async fn import_registry(
        &self,
        actor: Actor,
        records: Vec<(usize, RegistryRecord)>,
        policy: Arc<ResponsePolicy>,
    ) -> Result<RegistryImportReport, RegistryError> {
        let (report, changed) = self
            .transact(move |tx| {
                let mut report = RegistryImportReport::default();
                let mut changed = Changed::default();
                for (line, record) in records {
                    let kind = record.kind();
                    let (id, outcome) = import_one(tx, &actor, record, &policy, &mut changed).map_err(at_line(line))?;
                    if outcome == "unchanged" {
                        report.unchanged += 1;
                    } else {
                        report.imported += 1;
                    }
                    report.records.push(ImportedRecord { line, kind: kind.into(), id, outcome: outcome.into() });
                }
                Ok((report, changed))
            })
            .await?;
        self.publish(&changed.keys);
        for v in &changed.vendors {
            self.publish_vendor(v);
        }
        self.publish_counterparties(&changed.counterparties);
        Ok(report)
    }
}

fn import_one(
    tx: &mut dyn keysentinel_store::WriteTx,
    actor: &Actor,
    record: RegistryRecord,
    policy: &ResponsePolicy,
    changed: &mut Changed,
) -> Result<(String, &'static str), RegistryError> {
    let now = tx.now();
    match record {
        RegistryRecord::Vendor { vendor_id, status, egress_cidrs, legal_name } => {
            let id = vendor_id.to_string();
            let Some(mut vendor) = tx.vendor(&vendor_id)? else {
                if status != VendorStatus::Applied {
                    return Err(invalid(
                        "status",
                        format!(
                            "vendor {vendor_id} is new: import it as applied; a vendor is approved only through the registry (due diligence recorded by one operator, approval by another)"
                        ),
                    ));
                }
                let name = legal_name.ok_or_else(|| invalid("legal_name", "a new vendor needs its legal name"))?;
                let vendor = Vendor::apply(vendor_id, name, egress_cidrs, &actor.label(), now)?;
                tx.put_vendor(&vendor)?;
                tx.append_audit(AuditDraft {
                    actor: actor.clone(),
                    action: "vendor.import".into(),
                    target: id.clone(),
                    reason: "imported as an application".into(),
                    policy_version: None,
                    details: json!({ "legal_name": vendor.legal_name, "egress_cidrs": vendor.egress_cidrs, "status": vendor.status }),
                })?;
                changed.vendors.push(vendor.vendor_id);
                return Ok((id, "created"));
            };
            let current = vendor.effective_status(now);
            if vendor.egress_cidrs != egress_cidrs {
                return Err(invalid(
                    "egress_cidrs",
                    format!("vendor {id} is registered with other egress; egress changes only with a recertification"),
                ));
            }
            if current == status && legal_name.as_deref().is_none_or(|n| n == vendor.legal_name) {
                return Ok((id, "unchanged"));
            }
            if status == VendorStatus::Suspended {
                vendor.suspend("suspended by import", &actor.label(), now).map_err(crate::vendors::vendor_error)?;
                let VendorChange { keys, .. } =
                    restrict_keys(tx, actor.clone(), &vendor, "vendor.suspend", "suspended by import".into(), policy)?;
                changed.keys.extend(keys.into_iter().filter(|k| k.change.is_some()).map(|k| k.access_key));
                changed.vendors.push(vendor.vendor_id);
                return Ok((id, "suspended"));
            }
            Err(invalid(
                "status",
                format!(
                    "vendor {id} is {current}; an import registers applications and suspends vendors, nothing else (approve and recertify through the registry)"
                ),
            ))
        }
        RegistryRecord::Relationship { new, in_effect } => {
            let id = new.counterparty_id.clone().ok_or_else(|| invalid("counterparty_id", "is required"))?;
            let existing = tx.counterparty(&id)?;
            if !in_effect {
                if existing.as_ref().is_some_and(|c| c.ended.is_some()) {
                    return Ok((id.to_string(), "unchanged"));
                }
                if existing.is_none() {
                    return Err(RegistryError::NotFound { what: "counterparty", id: id.to_string() });
                }
                let c = end(tx, actor.clone(), &id, "ended by import (in_effect: false)".into())?;
                changed.counterparties.push(c.counterparty_id);
                return Ok((id.to_string(), "ended"));
            }
            let c = new.build(&actor.label(), now)?;
            if let Some(existing) = existing {
                // The same record as the registry holds it (its history aside) is a retry.
                let terms = |c: &keysentinel_domain::Counterparty| {
                    crate::counterparties::details(c).map(|mut d| {
                        if let Some(m) = d.as_object_mut() {
                            m.remove("version");
                        }
                        d
                    })
                };
                return if terms(&existing)? == terms(&c)? {
                    Ok((id.to_string(), "unchanged"))
                } else {
                    Err(RegistryError::Conflict { what: "counterparty", id: id.to_string() })
                };
            }
            insert(tx, actor.clone(), &c, "counterparty.import", "imported".into())?;
            changed.counterparties.push(c.counterparty_id);
            Ok((id.to_string(), "created"))
        }
    }
}
