use crate::keys::secret_context;
use crate::{Registry, RegistryError};
use keysentinel_audit::{Actor, AuditDraft};
use keysentinel_store::keys::Meta;
use keysentinel_store::{LogKeys, StoreError, WriteTx};
use serde_json::json;

struct TxMeta<'a>(&'a mut dyn WriteTx);

impl Meta for TxMeta<'_> {
    fn get(&mut self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.meta(name)
    }
    fn put(&mut self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.0.set_meta(name, value)
    }
}

impl Registry {
    /// Re-encrypts every sealed value under the current master key, in one transaction.
    /// Returns how many values were rewrapped.
    pub fn rewrap_secrets(&self, actor: Actor) -> Result<usize, RegistryError> {
        let keyring = self.keyring.clone();
        self.transact_blocking(move |tx| {
            let mut n = 0;
            for (access_key, sealed) in tx.sealed_secrets()? {
                if keyring.needs_rewrap(&sealed) {
                    let plain = keyring.open(&sealed, &secret_context(&access_key))?;
                    tx.update_sealed_secret(&access_key, &keyring.seal(&plain, &secret_context(&access_key)))?;
                    n += 1;
                }
            }
            n += LogKeys::rewrap(&mut TxMeta(tx), &keyring)? as usize;
            tx.append_audit(AuditDraft {
                actor,
                action: "secrets.rewrap".into(),
                target: "master-key".into(),
                reason: "master key rotation".into(),
                policy_version: None,
                details: json!({ "rewrapped": n, "master_key_fingerprint": keyring.current_fingerprint() }),
            })?;
            Ok(n)
        })
    }
}
