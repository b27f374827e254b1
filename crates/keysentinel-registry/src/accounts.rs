use crate::{check_reason, Registry, RegistryError};
use keysentinel_audit::{Actor, AuditDraft};
use keysentinel_domain::{Account, AccountId, CountryCode, Segment, Verification};
use keysentinel_store::AccountFilter;
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    pub account_id: AccountId,
    pub segment: Segment,
    #[serde(default = "default_verification")]
    pub verification: Verification,
    #[serde(default)]
    pub declared_purpose: String,
    #[serde(default)]
    pub declared_countries: Vec<CountryCode>,
}

fn default_verification() -> Verification {
    Verification::Unverified
}

/// Fields to change; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountPatch {
    pub segment: Option<Segment>,
    pub verification: Option<Verification>,
    pub declared_purpose: Option<String>,
    pub declared_countries: Option<Vec<CountryCode>>,
    /// Why the account is changed (required).
    pub reason: String,
}

/// Records a new account within a transaction, with its entry.
pub(crate) fn insert_account(
    tx: &mut dyn keysentinel_store::WriteTx,
    actor: Actor,
    new: NewAccount,
    reason: String,
) -> Result<Account, RegistryError> {
    let now = tx.now();
    let account = Account {
        account_id: new.account_id,
        segment: new.segment,
        verification: new.verification,
        declared_purpose: new.declared_purpose,
        declared_countries: new.declared_countries,
        verified_at: None,
        created_at: now,
        updated_at: now,
    };
    account.validate()?;
    if tx.account(&account.account_id)?.is_some() {
        return Err(RegistryError::Conflict { what: "account", id: account.account_id.to_string() });
    }
    tx.insert_account(&account)?;
    tx.append_audit(AuditDraft {
        actor,
        action: "account.create".into(),
        target: account.account_id.to_string(),
        reason,
        policy_version: None,
        details: json!({
            "segment": account.segment,
            "verification": account.verification,
            "declared_purpose": account.declared_purpose,
            "declared_countries": account.declared_countries,
        }),
    })?;
    Ok(account)
}

impl Registry {
    pub async fn create_account(&self, actor: Actor, new: NewAccount) -> Result<Account, RegistryError> {
        self.transact(move |tx| insert_account(tx, actor, new, "account registered".into())).await
    }

    pub async fn update_account(
        &self,
        actor: Actor,
        id: AccountId,
        patch: AccountPatch,
    ) -> Result<Account, RegistryError> {
        check_reason(&patch.reason)?;
        self.transact(move |tx| {
            let mut account =
                tx.account(&id)?.ok_or_else(|| RegistryError::NotFound { what: "account", id: id.to_string() })?;
            let before = serde_json::to_value(&account).unwrap_or_default();
            if let Some(s) = patch.segment {
                account.segment = s;
            }
            if let Some(v) = patch.verification {
                account.verification = v;
            }
            if let Some(p) = patch.declared_purpose {
                account.declared_purpose = p;
            }
            if let Some(c) = patch.declared_countries {
                account.declared_countries = c;
            }
            account.validate()?;
            account.updated_at = tx.now();
            let after = serde_json::to_value(&account).unwrap_or_default();
            let mut changes = serde_json::Map::new();
            for field in ["segment", "verification", "declared_purpose", "declared_countries"] {
                if before.get(field) != after.get(field) {
                    changes.insert(field.into(), json!({ "from": before.get(field), "to": after.get(field) }));
                }
            }
            tx.update_account(&account)?;
            tx.append_audit(AuditDraft {
                actor,
                action: "account.update".into(),
                target: account.account_id.to_string(),
                reason: patch.reason,
                policy_version: None,
                details: serde_json::Value::Object(changes),
            })?;
            Ok(account)
        })
        .await
    }

    pub fn account(&self, id: &AccountId) -> Result<Account, RegistryError> {
        self.store.account(id)?.ok_or_else(|| RegistryError::NotFound { what: "account", id: id.to_string() })
    }

    pub fn accounts(&self, after: Option<AccountId>, limit: u32) -> Result<Vec<Account>, RegistryError> {
        Ok(self.store.accounts(&AccountFilter { after, limit: limit.clamp(1, 1000) })?)
    }
}
