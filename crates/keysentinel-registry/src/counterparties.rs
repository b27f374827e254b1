//! Counterparties as registry records: created, changed and ended by operators, each change one
//! transaction with its audit entry, and told to detection as it commits (and as its dates
//! begin and end: `Registry::counterparties_turned`).

use crate::cases::new_id;
use crate::{check_reason, Registry, RegistryError};
use keysentinel_audit::{Actor, AuditDraft};
use keysentinel_domain::{
    AccountId, Counterparty, CounterpartyId, CounterpartyKind, CountryCode, Ended, IpAllowlist, Principal, Symbol,
};
use keysentinel_store::{CounterpartyFilter, WriteTx};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCounterparty {
    /// Given, or made up (`cp-` and 16 hex digits).
    pub counterparty_id: Option<CounterpartyId>,
    pub kind: CounterpartyKind,
    /// The market maker's, the broker's, the parent's, one affiliate's, the delegating account.
    pub account_id: AccountId,
    /// Clients, sub-accounts, affiliates, the vendor's account, a mandate's principal's.
    #[serde(default)]
    pub related_accounts: Vec<AccountId>,
    /// mm_mandate: own, issuer or clients.
    pub principal: Option<Principal>,
    /// mm_mandate for an issuer: its name.
    pub issuer: Option<String>,
    /// mm_mandate: the symbols it covers.
    #[serde(default)]
    pub symbols: Vec<Symbol>,
    /// mm_mandate: the countries it is carried out from.
    #[serde(default)]
    pub countries: Vec<CountryCode>,
    /// mm_mandate: the networks it is carried out from.
    #[serde(default)]
    pub ip_allowlist: IpAllowlist,
    /// broker_client: held in one omnibus account.
    #[serde(default)]
    pub omnibus: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub effective_from: OffsetDateTime,
    /// Required for a mandate.
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schema(value_type = Option<String>)]
    pub effective_until: Option<OffsetDateTime>,
    /// The documents or attestation behind it.
    pub document_ref: String,
    pub reason: String,
}

/// Fields to change; absent ones stay as they are. Kind and account are the record's identity
/// and do not change (end it and record another).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CounterpartyPatch {
    pub related_accounts: Option<Vec<AccountId>>,
    pub issuer: Option<String>,
    pub symbols: Option<Vec<Symbol>>,
    pub countries: Option<Vec<CountryCode>>,
    pub ip_allowlist: Option<IpAllowlist>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schema(value_type = Option<String>)]
    pub effective_from: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schema(value_type = Option<String>)]
    pub effective_until: Option<OffsetDateTime>,
    pub document_ref: Option<String>,
    pub reason: String,
}

impl NewCounterparty {
    /// The record it makes at `now`, by `by`, validated.
    pub(crate) fn build(self, by: &str, now: OffsetDateTime) -> Result<Counterparty, RegistryError> {
        let id = match self.counterparty_id {
            Some(id) => id,
            None => CounterpartyId::parse(&new_id("cp"))?,
        };
        let c = Counterparty {
            counterparty_id: id,
            kind: self.kind,
            account_id: self.account_id,
            related_accounts: self.related_accounts,
            principal: self.principal,
            issuer: self.issuer,
            symbols: self.symbols,
            countries: self.countries,
            ip_allowlist: self.ip_allowlist,
            omnibus: self.omnibus,
            effective_from: self.effective_from,
            effective_until: self.effective_until,
            document_ref: self.document_ref,
            version: 1,
            created_by: by.into(),
            created_at: now,
            updated_at: now,
            ended: None,
        };
        c.validate()?;
        Ok(c)
    }
}

/// Every account the record names must be one the registry holds.
fn check_accounts(tx: &mut dyn WriteTx, c: &Counterparty) -> Result<(), RegistryError> {
    for a in c.accounts() {
        if tx.account(a)?.is_none() {
            return Err(RegistryError::NotFound { what: "account", id: a.to_string() });
        }
    }
    Ok(())
}

/// The record as its audit entries show it: its terms, without its id (the entry's target)
/// and its bookkeeping.
pub(crate) fn details(c: &Counterparty) -> Result<serde_json::Value, RegistryError> {
    let mut v = serde_json::to_value(c).map_err(|e| {
        RegistryError::Store(keysentinel_store::StoreError::Corrupt(format!("cannot encode counterparty: {e}")))
    })?;
    if let Some(m) = v.as_object_mut() {
        for noise in ["counterparty_id", "created_by", "created_at", "updated_at"] {
            m.remove(noise);
        }
    }
    Ok(v)
}

/// Inserts a new counterparty and its entry (`counterparty.create`, or what `action` says).
pub(crate) fn insert(
    tx: &mut dyn WriteTx,
    actor: Actor,
    c: &Counterparty,
    action: &str,
    reason: String,
) -> Result<(), RegistryError> {
    if tx.counterparty(&c.counterparty_id)?.is_some() {
        return Err(RegistryError::Conflict { what: "counterparty", id: c.counterparty_id.to_string() });
    }
    check_accounts(tx, c)?;
    tx.put_counterparty(c)?;
    tx.append_audit(AuditDraft {
        actor,
        action: action.into(),
        target: c.counterparty_id.to_string(),
        reason,
        policy_version: None,
        details: details(c)?,
    })?;
    Ok(())
}

/// Ends a counterparty now: it stops being in effect (its `effective_until` moves to now when
/// later or open).
pub(crate) fn end(
    tx: &mut dyn WriteTx,
    actor: Actor,
    id: &CounterpartyId,
    reason: String,
) -> Result<Counterparty, RegistryError> {
    let now = tx.now();
    let mut c =
        tx.counterparty(id)?.ok_or_else(|| RegistryError::NotFound { what: "counterparty", id: id.to_string() })?;
    if c.ended.is_some() {
        return Err(RegistryError::CounterpartyState(format!("counterparty {id} has already been ended")));
    }
    let until_before = c.effective_until;
    c.effective_until = Some(keysentinel_domain::dated::ended_until(c.effective_from, c.effective_until, now));
    c.ended = Some(Ended { at: now, by: actor.label(), reason: reason.clone() });
    c.version += 1;
    c.updated_at = now;
    tx.put_counterparty(&c)?;
    let fmt = |t: Option<OffsetDateTime>| t.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok());
    tx.append_audit(AuditDraft {
        actor,
        action: "counterparty.end".into(),
        target: c.counterparty_id.to_string(),
        reason,
        policy_version: None,
        details: json!({ "kind": c.kind, "account_id": c.account_id, "version": c.version,
            "effective_until": { "from": fmt(until_before), "to": fmt(c.effective_until) } }),
    })?;
    Ok(c)
}

impl Registry {
    pub async fn create_counterparty(&self, actor: Actor, new: NewCounterparty) -> Result<Counterparty, RegistryError> {
        check_reason(&new.reason)?;
        let c = self
            .transact(move |tx| {
                let reason = new.reason.clone();
                let c = new.build(&actor.label(), tx.now())?;
                insert(tx, actor, &c, "counterparty.create", reason)?;
                Ok(c)
            })
            .await?;
        self.publish_counterparties(std::slice::from_ref(&c.counterparty_id));
        Ok(c)
    }

    pub async fn update_counterparty(
        &self,
        actor: Actor,
        id: CounterpartyId,
        patch: CounterpartyPatch,
    ) -> Result<Counterparty, RegistryError> {
        check_reason(&patch.reason)?;
        let c = self
            .transact(move |tx| {
                let now = tx.now();
                let mut c = tx
                    .counterparty(&id)?
                    .ok_or_else(|| RegistryError::NotFound { what: "counterparty", id: id.to_string() })?;
                if c.ended.is_some() {
                    return Err(RegistryError::CounterpartyState(format!(
                        "counterparty {id} has been ended; record a new one"
                    )));
                }
                let before = details(&c)?;
                if let Some(v) = patch.related_accounts {
                    c.related_accounts = v;
                }
                if let Some(v) = patch.issuer {
                    c.issuer = Some(v);
                }
                if let Some(v) = patch.symbols {
                    c.symbols = v;
                }
                if let Some(v) = patch.countries {
                    c.countries = v;
                }
                if let Some(v) = patch.ip_allowlist {
                    c.ip_allowlist = v;
                }
                if let Some(v) = patch.effective_from {
                    c.effective_from = v;
                }
                if let Some(v) = patch.effective_until {
                    c.effective_until = Some(v);
                }
                if let Some(v) = patch.document_ref {
                    c.document_ref = v;
                }
                c.validate()?;
                let after = details(&c)?;
                let mut changes = serde_json::Map::new();
                if let (Some(b), Some(a)) = (before.as_object(), after.as_object()) {
                    for (field, value) in a {
                        if b.get(field) != Some(value) {
                            changes.insert(field.clone(), json!({ "from": b.get(field), "to": value }));
                        }
                    }
                }
                if changes.is_empty() {
                    return Err(keysentinel_domain::ValidationError::new(
                        "body",
                        "the change changes nothing; give at least one field with a new value",
                    )
                    .into());
                }
                check_accounts(tx, &c)?;
                c.version += 1;
                c.updated_at = now;
                tx.put_counterparty(&c)?;
                tx.append_audit(AuditDraft {
                    actor,
                    action: "counterparty.update".into(),
                    target: c.counterparty_id.to_string(),
                    reason: patch.reason,
                    policy_version: None,
                    details: json!({ "version": c.version, "changes": changes }),
                })?;
                Ok(c)
            })
            .await?;
        self.publish_counterparties(std::slice::from_ref(&c.counterparty_id));
        Ok(c)
    }

    pub async fn end_counterparty(
        &self,
        actor: Actor,
        id: CounterpartyId,
        reason: String,
    ) -> Result<Counterparty, RegistryError> {
        check_reason(&reason)?;
        let c = self.transact(move |tx| end(tx, actor, &id, reason)).await?;
        self.publish_counterparties(std::slice::from_ref(&c.counterparty_id));
        Ok(c)
    }

    pub fn counterparty(&self, id: &CounterpartyId) -> Result<Counterparty, RegistryError> {
        self.store.counterparty(id)?.ok_or_else(|| RegistryError::NotFound { what: "counterparty", id: id.to_string() })
    }

    pub fn counterparties(&self, mut filter: CounterpartyFilter) -> Result<Vec<Counterparty>, RegistryError> {
        filter.limit = filter.limit.clamp(1, 1000);
        Ok(self.store.counterparties(&filter)?)
    }
}
