//! The key inventory's operations. Each mutating call is one store transaction that reads the
//! current state, takes the decision with the pure domain code, writes the result and appends
//! its audit entry; if any step fails, nothing is written.

mod accounts;
mod audit;
mod bulk;
mod cases;
mod claims;
mod counterparties;
mod error;
mod evidence;
mod import;
mod keys;
mod observe;
mod operators;
mod parties;
mod registry_import;
mod reinstate;
mod reports;
mod retention;
mod rewrap;
mod vendors;

use keysentinel_domain::{Clock, KeyPolicy, Timestamp};
use keysentinel_secrets::Keyring;
use keysentinel_store::{Outcome, Store, WriteOp, WriteTx};
use std::sync::Arc;

pub use accounts::{AccountPatch, NewAccount};
pub use bulk::{BulkFormat, BulkImported, BulkReport, MAX_BULK_LINES};
pub use cases::{CaseRef, LinkedAccount};
pub use counterparties::{CounterpartyPatch, NewCounterparty};
pub use error::RegistryError;
pub use evidence::{body_digest, EvidencePack, PACK_FORMAT};
pub use import::{ImportIssue, ImportOptions, ImportReport};
pub use keys::{IssuedKey, NewKey, NewKeyAlgorithm};
pub use observe::KeyObserver;
pub use operators::IssuedToken;
pub use parties::{NewParty, PartyPatch};
pub use registry_import::{parse_registry_line, ImportedRecord, RegistryImportReport, RegistryRecord};
pub use reinstate::ReinstatementRequest;
pub use vendors::{ApprovalInput, AttestationInput, DueDiligenceInput, KeyRestriction, NewVendor, VendorChange};

/// The system clock, for the server and CLI edges.
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one sanctioned reader of the wall clock
    fn now(&self) -> Timestamp {
        time::OffsetDateTime::now_utc()
    }
}

impl Registry {
    /// Whether this node can still write (its store's writer is running).
    pub fn writable(&self) -> bool {
        self.store.writable()
    }

    /// State rows the store refused because the file no longer held what the audit log says.
    pub fn state_mismatches(&self) -> u64 {
        self.store.state_mismatches()
    }
}

pub struct Registry {
    store: Arc<dyn Store>,
    policy: Arc<KeyPolicy>,
    keyring: Arc<Keyring>,
    clock: Arc<dyn Clock>,
    observers: std::sync::RwLock<Vec<Arc<dyn KeyObserver>>>,
    /// Authenticated operators by token hash, so that authentication (on every gateway call)
    /// reads no database. Emptied whenever an operator changes.
    tokens: std::sync::RwLock<std::collections::HashMap<[u8; 32], keysentinel_domain::Operator>>,
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, policy: Arc<KeyPolicy>, keyring: Arc<Keyring>, clock: Arc<dyn Clock>) -> Self {
        Self { store, policy, keyring, clock, observers: Default::default(), tokens: Default::default() }
    }

    pub fn policy(&self) -> &KeyPolicy {
        &self.policy
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Runs `f` as one write operation and waits for its commit.
    pub async fn transact<T, F>(&self, f: F) -> Result<T, RegistryError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn WriteTx) -> Result<T, RegistryError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.store.submit(op(f, move |r| {
            let _ = tx.send(r);
        }))?;
        rx.await.map_err(|_| RegistryError::Store(keysentinel_store::StoreError::Closed))?
    }

    /// The same for callers outside an async runtime (offline CLI commands).
    pub fn transact_blocking<T, F>(&self, f: F) -> Result<T, RegistryError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn WriteTx) -> Result<T, RegistryError> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        self.store.submit(op(f, move |r| {
            let _ = tx.send(r);
        }))?;
        rx.recv().map_err(|_| RegistryError::Store(keysentinel_store::StoreError::Closed))?
    }
}

fn op<T, F, R>(f: F, reply: R) -> WriteOp
where
    T: Send + 'static,
    F: FnOnce(&mut dyn WriteTx) -> Result<T, RegistryError> + Send + 'static,
    R: FnOnce(Result<T, RegistryError>) + Send + 'static,
{
    Box::new(move |wtx: &mut dyn WriteTx| {
        let result = f(wtx);
        let keep = result.is_ok();
        Outcome {
            keep,
            finish: Box::new(move |commit| {
                reply(match (result, commit) {
                    (Err(e), _) => Err(e),
                    (Ok(_), Err(e)) => Err(e.into()),
                    (Ok(v), Ok(())) => Ok(v),
                })
            }),
        }
    })
}

/// A reason is required for every state change, and bounded like any free text.
pub(crate) fn check_reason(reason: &str) -> Result<(), RegistryError> {
    // A reason of only invisible characters (U+200B and the like) says nothing, either.
    if keysentinel_domain::account::blank(reason) {
        return Err(keysentinel_domain::ValidationError::new("reason", "a reason is required for every change").into());
    }
    keysentinel_domain::account::check_text("reason", reason, 1000)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_of_invisible_characters_is_no_reason() {
        for empty in ["", "   ", "\u{200B}", "\u{200B}\u{200C}\u{FEFF} \u{2060}", "\u{202E}\t"] {
            assert!(check_reason(empty).is_err(), "{empty:?}");
        }
        assert!(check_reason("customer request\u{200B}").is_ok());
    }
}
