//! Who stands behind an account (domain `identity.rs`): its beneficial owners, representatives
//! and the people, desks and systems that operate its keys, as registry records — recorded,
//! changed (a new version) and ended by operators, each change one transaction with its audit
//! entry carrying what changed.

use crate::cases::new_id;
use crate::keys::load_account;
use crate::{check_reason, Registry, RegistryError};
use keysentinel_audit::{Actor, AuditDraft};
use keysentinel_domain::{AccountId, Party, PartyEnded, PartyId, PartyKind};
use keysentinel_store::WriteTx;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewParty {
    /// Given, or made up (`party-` and 16 hex digits).
    #[schema(value_type = Option<String>)]
    pub party_id: Option<PartyId>,
    pub kind: PartyKind,
    pub name: String,
    /// The document behind the record (KYC/KYB file, power of attorney, desk mandate).
    pub document_ref: String,
    /// From when it holds (default: now).
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schema(value_type = Option<String>)]
    pub effective_from: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schema(value_type = Option<String>)]
    pub effective_until: Option<OffsetDateTime>,
    pub reason: String,
}

/// Fields to change; absent ones stay. Kind and account are the record's identity (end it and
/// record another).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartyPatch {
    pub name: Option<String>,
    pub document_ref: Option<String>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schema(value_type = Option<String>)]
    pub effective_until: Option<OffsetDateTime>,
    pub reason: String,
}

fn load(tx: &mut dyn WriteTx, id: &PartyId) -> Result<Party, RegistryError> {
    tx.party(id)?.ok_or_else(|| RegistryError::NotFound { what: "party", id: id.to_string() })
}

fn record(
    tx: &mut dyn WriteTx,
    actor: Actor,
    p: &Party,
    action: &str,
    reason: String,
    details: serde_json::Value,
) -> Result<(), RegistryError> {
    tx.put_party(p)?;
    tx.append_audit(AuditDraft {
        actor,
        action: action.into(),
        target: p.party_id.to_string(),
        reason,
        policy_version: None,
        details,
    })?;
    Ok(())
}

fn rfc3339(t: Option<OffsetDateTime>) -> Option<String> {
    t.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
}

/// Records a party of `account` within a transaction, with its entry.
pub(crate) fn insert_party(
    tx: &mut dyn WriteTx,
    actor: Actor,
    account: &AccountId,
    new: NewParty,
) -> Result<Party, RegistryError> {
    let now = tx.now();
    let acct = load_account(tx, account)?;
    let party_id = match new.party_id {
        Some(id) => id,
        None => PartyId::parse(&new_id("party"))?,
    };
    if tx.party(&party_id)?.is_some() {
        return Err(RegistryError::Conflict { what: "party", id: party_id.to_string() });
    }
    let p = Party {
        party_id,
        account_id: acct.account_id.clone(),
        kind: new.kind,
        name: new.name,
        document_ref: new.document_ref,
        effective_from: new.effective_from.unwrap_or(now),
        effective_until: new.effective_until,
        version: 1,
        created_by: actor.label(),
        created_at: now,
        updated_at: now,
        ended: None,
    };
    p.validate(acct.segment)?;
    let details = json!({ "account_id": p.account_id, "kind": p.kind, "name": p.name,
                "document_ref": p.document_ref, "effective_from": rfc3339(Some(p.effective_from)),
                "effective_until": rfc3339(p.effective_until), "version": p.version });
    record(tx, actor, &p, "party.create", new.reason, details)?;
    Ok(p)
}

impl Registry {
    pub async fn create_party(&self, actor: Actor, account: AccountId, new: NewParty) -> Result<Party, RegistryError> {
        check_reason(&new.reason)?;
        self.transact(move |tx| insert_party(tx, actor, &account, new)).await
    }

    /// A new version of the record; the entry lists each changed field, before and after.
    pub async fn update_party(&self, actor: Actor, id: PartyId, patch: PartyPatch) -> Result<Party, RegistryError> {
        check_reason(&patch.reason)?;
        self.transact(move |tx| {
            let now = tx.now();
            let mut p = load(tx, &id)?;
            if p.ended.is_some() {
                return Err(RegistryError::PartyState(format!("party {id} has been ended; record a new one")));
            }
            let acct = load_account(tx, &p.account_id)?;
            let mut changed = serde_json::Map::new();
            if let Some(v) = patch.name.filter(|v| *v != p.name) {
                changed.insert("name".into(), json!({ "from": p.name, "to": v }));
                p.name = v;
            }
            if let Some(v) = patch.document_ref.filter(|v| *v != p.document_ref) {
                changed.insert("document_ref".into(), json!({ "from": p.document_ref, "to": v }));
                p.document_ref = v;
            }
            if let Some(v) = patch.effective_until.filter(|v| Some(*v) != p.effective_until) {
                changed.insert(
                    "effective_until".into(),
                    json!({ "from": rfc3339(p.effective_until), "to": rfc3339(Some(v)) }),
                );
                p.effective_until = Some(v);
            }
            if changed.is_empty() {
                return Err(keysentinel_domain::ValidationError::new("reason", "nothing to change").into());
            }
            p.validate(acct.segment)?;
            p.version += 1;
            p.updated_at = now;
            let details = json!({ "account_id": p.account_id, "version": p.version, "changed": changed });
            record(tx, actor, &p, "party.update", patch.reason, details)?;
            Ok(p)
        })
        .await
    }

    /// Ends the record now: it no longer holds, and keys may no longer name it.
    pub async fn end_party(&self, actor: Actor, id: PartyId, reason: String) -> Result<Party, RegistryError> {
        check_reason(&reason)?;
        self.transact(move |tx| {
            let now = tx.now();
            let mut p = load(tx, &id)?;
            if p.ended.is_some() {
                return Err(RegistryError::PartyState(format!("party {id} has been ended already")));
            }
            let before = p.effective_until;
            p.effective_until = Some(keysentinel_domain::dated::ended_until(p.effective_from, p.effective_until, now));
            p.ended = Some(PartyEnded { at: now, by: actor.label(), reason: reason.clone() });
            p.version += 1;
            p.updated_at = now;
            let details = json!({ "account_id": p.account_id, "version": p.version,
                "effective_until": { "from": rfc3339(before), "to": rfc3339(p.effective_until) } });
            record(tx, actor, &p, "party.end", reason, details)?;
            Ok(p)
        })
        .await
    }

    pub fn party(&self, id: &PartyId) -> Result<Party, RegistryError> {
        self.store.party(id)?.ok_or_else(|| RegistryError::NotFound { what: "party", id: id.to_string() })
    }

    /// The account's parties (ended ones too: the record is history as well).
    pub fn parties(&self, account: &AccountId) -> Result<Vec<Party>, RegistryError> {
        if self.store.account(account)?.is_none() {
            return Err(RegistryError::NotFound { what: "account", id: account.to_string() });
        }
        Ok(self.store.parties(account)?)
    }
}
