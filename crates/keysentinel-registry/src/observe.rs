//! Observers of committed changes: how the gateway's in-memory snapshot stays current with no
//! database on the hot path, and how detection learns the registry's keys, vendors and
//! counterparties (at start, and after every commit that changes them).

use crate::keys::secret_context;
use crate::{Registry, RegistryError};
use keysentinel_domain::{AccessKey, ApiKey, Counterparty, CounterpartyId, Vendor, VendorId};
use keysentinel_store::{CounterpartyFilter, KeyFilter, VendorFilter};
use std::sync::Arc;
use time::OffsetDateTime;

pub trait KeyObserver: Send + Sync {
    /// A key as committed, with its opened HMAC secret (None for Ed25519 keys, or when the
    /// secret could not be opened: the observer must then refuse the key).
    fn key_changed(&self, key: &ApiKey, secret: Option<&[u8]>);

    /// A committed key could not be read back (its row no longer matches its audit history,
    /// or the read failed): the observer must refuse it rather than keep its previous state,
    /// which may be the one a revocation just ended.
    fn key_unreadable(&self, _access_key: &AccessKey) {}

    /// A vendor as committed, and whether its approval holds now (an approval past its
    /// recertification date does not, before the sweep records the lapse too).
    fn vendor_changed(&self, _vendor: &Vendor, _approved: bool) {}

    /// A counterparty as committed or as time moved it, and whether it is in effect now. When
    /// one stops being in effect, those still in effect between the same accounts follow it.
    fn counterparty_changed(&self, _counterparty: &Counterparty, _in_effect: bool) {}
}

impl Registry {
    /// Registers an observer and replays every existing vendor, key and counterparty into it
    /// (counterparties not in effect before those in effect, so that an ended one does not undo
    /// a pair another still documents). Returns how many keys.
    pub fn observe(&self, observer: Arc<dyn KeyObserver>) -> Result<usize, RegistryError> {
        let now = self.now();
        let mut after: Option<VendorId> = None;
        loop {
            let page = self.store.vendors(&VendorFilter { after: after.clone(), limit: 1000, ..Default::default() })?;
            let Some(last) = page.last() else { break };
            after = Some(last.vendor_id.clone());
            for v in &page {
                observer.vendor_changed(v, v.is_approved(now));
            }
        }
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
        let mut after: Option<CounterpartyId> = None;
        let mut live = Vec::new();
        loop {
            let filter = CounterpartyFilter { after: after.clone(), limit: 1000, ..Default::default() };
            let page = self.store.counterparties(&filter)?;
            let Some(last) = page.last() else { break };
            after = Some(last.counterparty_id.clone());
            for c in page {
                if c.in_effect(now) {
                    live.push(c);
                } else {
                    observer.counterparty_changed(&c, false);
                }
            }
        }
        for c in &live {
            observer.counterparty_changed(c, true);
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

    /// Pushes the committed state of a vendor to every observer.
    pub(crate) fn publish_vendor(&self, id: &VendorId) {
        let Ok(observers) = self.observers.read() else { return };
        match self.store.vendor(id) {
            Ok(Some(v)) => {
                let approved = v.is_approved(self.now());
                for o in observers.iter() {
                    o.vendor_changed(&v, approved);
                }
            }
            other => tracing::error!(vendor_id = %id, ?other, "changed vendor not readable after commit"),
        }
    }

    /// Pushes the committed state of counterparties to every observer, as they stand at `now`;
    /// after one that is not in effect, the others in effect that share an account with it.
    pub(crate) fn publish_counterparties(&self, ids: &[CounterpartyId]) {
        let Ok(observers) = self.observers.read() else { return };
        if observers.is_empty() {
            return;
        }
        let now = self.now();
        let mut resend: Vec<Counterparty> = Vec::new();
        for id in ids {
            let c = match self.store.counterparty(id) {
                Ok(Some(c)) => c,
                other => {
                    tracing::error!(counterparty_id = %id, ?other, "changed counterparty not readable after commit");
                    continue;
                }
            };
            let in_effect = c.in_effect(now);
            for o in observers.iter() {
                o.counterparty_changed(&c, in_effect);
            }
            if !in_effect {
                match self.still_in_effect(&c, now) {
                    Ok(others) => resend.extend(others.into_iter().filter(|o| !ids.contains(&o.counterparty_id))),
                    Err(e) => tracing::error!(error = %e, "cannot read the counterparties that share accounts"),
                }
            }
        }
        resend.sort_by(|a, b| a.counterparty_id.cmp(&b.counterparty_id));
        resend.dedup_by(|a, b| a.counterparty_id == b.counterparty_id);
        for c in &resend {
            for o in observers.iter() {
                o.counterparty_changed(c, true);
            }
        }
    }

    /// Counterparties in effect at `now` that name one of `c`'s accounts (but `c`).
    fn still_in_effect(&self, c: &Counterparty, now: OffsetDateTime) -> Result<Vec<Counterparty>, RegistryError> {
        let mut found = Vec::new();
        for account in c.accounts() {
            let filter = CounterpartyFilter {
                account_id: Some(account.clone()),
                active_at: Some(now),
                limit: 1000,
                ..Default::default()
            };
            found.extend(
                self.store.counterparties(&filter)?.into_iter().filter(|o| o.counterparty_id != c.counterparty_id),
            );
        }
        Ok(found)
    }

    /// Tells the observers of the counterparties that began or stopped being in effect in
    /// `(after, until]` (no write marks that: time does). The server's sweep calls it with the
    /// time of its previous call; returns how many.
    pub fn counterparties_turned(&self, after: OffsetDateTime, until: OffsetDateTime) -> Result<usize, RegistryError> {
        let turned: Vec<CounterpartyId> =
            self.store.counterparties_turning(after, until)?.into_iter().map(|c| c.counterparty_id).collect();
        self.publish_counterparties(&turned);
        Ok(turned.len())
    }
}
