//! Observers of committed key changes: how the gateway's in-memory snapshot stays current with
//! no database on the hot path.

use crate::keys::secret_context;
use crate::{Registry, RegistryError};
use keysentinel_domain::{AccessKey, ApiKey};
use keysentinel_store::KeyFilter;
use std::sync::Arc;

pub trait KeyObserver: Send + Sync {
    /// A key as committed, with its opened HMAC secret (None for Ed25519 keys, or when the
    /// secret could not be opened: the observer must then refuse the key).
    fn key_changed(&self, key: &ApiKey, secret: Option<&[u8]>);

    /// A committed key could not be read back (its row no longer matches its audit history,
    /// or the read failed): the observer must refuse it rather than keep its previous state,
    /// which may be the one a revocation just ended.
    fn key_unreadable(&self, _access_key: &AccessKey) {}
}

impl Registry {
    /// Registers an observer and replays every existing key into it. Returns how many keys.
    pub fn observe(&self, observer: Arc<dyn KeyObserver>) -> Result<usize, RegistryError> {
        let mut after = None;
        let mut n = 0;
        loop {
            let page =
                self.store.keys(&KeyFilter { after: after.clone(), limit: 1000, ..Default::default() }, self.now())?;
            let Some(last) = page.last() else { break };
            after = Some(last.access_key.clone());
            for key in &page {
                self.publish_key(&key.access_key, std::slice::from_ref(&observer));
                n += 1;
            }
        }
        if let Ok(mut list) = self.observers.write() {
            list.push(observer);
        }
        Ok(n)
    }

    /// Reads `access_key` as committed, opens its secret once, and hands both to `observers`.
    fn publish_key(&self, access_key: &AccessKey, observers: &[Arc<dyn KeyObserver>]) {
        let stored = match self.store.key(access_key) {
            Ok(Some(stored)) => stored,
            other => {
                tracing::error!(%access_key, ?other, "changed key not readable after commit; refusing it");
                for o in observers {
                    o.key_unreadable(access_key);
                }
                return;
            }
        };
        let secret = stored.sealed_secret.as_ref().and_then(|sealed| match self.keyring.open(sealed, &secret_context(access_key)) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(%access_key, error = %e, "cannot open a key's secret; the gateway will refuse the key");
                None
            }
        });
        for o in observers {
            o.key_changed(&stored.key, secret.as_deref().map(|s| s.as_slice()));
        }
    }

    /// Pushes the committed state of `keys` to every observer. Called after each commit that
    /// changed keys, before the change is acknowledged.
    pub(crate) fn publish(&self, keys: &[AccessKey]) {
        let Ok(observers) = self.observers.read() else { return };
        if observers.is_empty() {
            return;
        }
        for access_key in keys {
            self.publish_key(access_key, &observers);
        }
    }
}
