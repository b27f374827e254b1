//! What events retention needs from the registry: the keys under a legal hold, and an audit
//! entry for each file it removes.

use crate::{Registry, RegistryError};
use keysentinel_audit::{Actor, AuditDraft};
use keysentinel_domain::AccessKey;
use serde_json::json;

impl Registry {
    /// Keys under a legal hold (retention keeps their logs).
    pub fn held_keys(&self) -> Result<Vec<AccessKey>, RegistryError> {
        Ok(self.store.held_keys()?)
    }

    /// Records a retention run that removed an events file (keeping the held keys' lines in
    /// `kept_in`, if any): purging logs is a change like any other, and audited.
    pub async fn record_purge(
        &self,
        file: String,
        removed: u64,
        kept: u64,
        kept_in: Option<String>,
        days: u32,
    ) -> Result<(), RegistryError> {
        self.transact(move |tx| {
            tx.append_audit(AuditDraft {
                actor: Actor::System { component: "retention".into() },
                action: "events.purge".into(),
                target: file.clone(),
                reason: format!("older than the {days}-day retention"),
                policy_version: None,
                details: json!({ "lines_removed": removed, "lines_kept_for_holds": kept, "kept_in": kept_in }),
            })?;
            Ok(())
        })
        .await
    }
}
