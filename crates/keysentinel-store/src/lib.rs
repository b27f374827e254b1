//! Storage ports. Domain and application code talk to these traits; each backend is an adapter
//! crate (`keysentinel-sqlite` now, PostgreSQL next) that implements them.
//!
//! Writes go through [`Store::submit`]: an operation runs inside the backend's transaction with a
//! [`WriteTx`], reads and writes rows, and appends audit entries. The backend guarantees:
//! - an operation's rows and its audit entries commit together or not at all;
//! - an operation that changes state without appending an audit entry is rolled back
//!   ("if it cannot be audited it does not happen");
//! - every commit that appends entries also stores a signed checkpoint of the new tree head.

pub mod keys;

use keysentinel_audit::{AuditDraft, Hash};
use keysentinel_domain::{
    AccessKey, Account, AccountId, ApiKey, Case, CaseStatus, Counterparty, CounterpartyId, CounterpartyKind, KeyStatus,
    Notice, Operator, OperatorId, Party, PartyId, ReportAssessment, Vendor, VendorId, VendorStatus,
};
use thiserror::Error;
use time::OffsetDateTime;

pub use keys::{LogKeys, META_LOG_KEY, META_LOG_ORIGIN, META_PSEUDONYM_KEY};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{what} {id} already exists")]
    Conflict { what: &'static str, id: String },
    #[error("{what} {id} does not exist")]
    Missing { what: &'static str, id: String },
    #[error("refused: the operation changed state without an audit entry")]
    Unaudited,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("secrets: {0}")]
    Secrets(#[from] keysentinel_secrets::SecretsError),
    #[error("the store is shut down")]
    Closed,
    #[error("database error: {0}")]
    Backend(String),
    /// A state row is not what its audit history says (`keysentinel_audit::state`).
    #[error("the data does not match its audit log: {0}")]
    State(#[from] StateError),
    /// The audit log itself failed verification.
    #[error("the audit log failed verification: {0}")]
    Log(#[from] keysentinel_audit::LogError),
    /// The log is signed with another key than the one the operator pinned: the file was
    /// re-signed, or it is another store.
    #[error("the audit log is signed with the key {found}, not the pinned key {pinned} (the file was re-signed, or it is another store)")]
    LogKeyMismatch { pinned: String, found: String },
}

/// A row that is not what its audit history says. Each names the table and the row.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StateError {
    #[error("{table} row {id} was changed without an audit entry: it does not match the state entry {seq} recorded")]
    Changed { table: String, id: String, seq: u64 },
    #[error("{table} row {id} has no audit entry (written outside keysentinel?)")]
    Unrecorded { table: String, id: String },
    #[error("{table} row {id} is missing: entry {seq} recorded it (deleted outside keysentinel?)")]
    Deleted { table: String, id: String, seq: u64 },
    #[error("{table} row {id} exists, but entry {seq} recorded its removal")]
    Revived { table: String, id: String, seq: u64 },
    #[error("entry {seq} records a row of {table} {id}, which is not a state table or not a valid digest")]
    BadRecord { seq: u64, table: String, id: String },
}

impl StateError {
    /// The table and row id the error is about.
    pub fn row(&self) -> (&str, &str) {
        match self {
            StateError::Changed { table, id, .. }
            | StateError::Unrecorded { table, id }
            | StateError::Deleted { table, id, .. }
            | StateError::Revived { table, id, .. }
            | StateError::BadRecord { table, id, .. } => (table, id),
        }
    }
}

/// A key row: the key and, for HMAC keys, its sealed secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub key: ApiKey,
    pub sealed_secret: Option<Vec<u8>>,
}

/// Filters for listing keys. `status` is the effective status at `now` (a key past its expiry
/// is listed as expired even before the sweeper records it).
#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    pub account_id: Option<AccountId>,
    pub status: Option<KeyStatus>,
    pub vendor_id: Option<VendorId>,
    /// Return keys whose access key sorts after this one (pagination cursor).
    pub after: Option<AccessKey>,
    pub limit: u32,
}

#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    pub status: Option<CaseStatus>,
    pub key_id: Option<AccessKey>,
    pub account_id: Option<AccountId>,
    pub limit: u32,
}

#[derive(Debug, Clone, Default)]
pub struct VendorFilter {
    /// Stored status (a vendor past its recertification date is `approved` here until the
    /// sweep records its lapse; callers judge the effective status).
    pub status: Option<VendorStatus>,
    pub after: Option<VendorId>,
    pub limit: u32,
}

#[derive(Debug, Clone, Default)]
pub struct CounterpartyFilter {
    /// The account on either side: the record's own, or one it relates.
    pub account_id: Option<AccountId>,
    pub kind: Option<CounterpartyKind>,
    /// Only those in effect at this time.
    pub active_at: Option<OffsetDateTime>,
    pub after: Option<CounterpartyId>,
    pub limit: u32,
}

#[derive(Debug, Clone, Default)]
pub struct AccountFilter {
    pub after: Option<AccountId>,
    pub limit: u32,
}

/// What an operation can do inside a write transaction.
pub trait WriteTx {
    /// The transaction's time, read once per operation from the store's clock.
    fn now(&self) -> OffsetDateTime;

    fn account(&mut self, id: &AccountId) -> Result<Option<Account>, StoreError>;
    fn insert_account(&mut self, account: &Account) -> Result<(), StoreError>;

    /// The key's case that is not closed, if any (there is at most one).
    fn live_case(&mut self, key_id: &AccessKey) -> Result<Option<Case>, StoreError>;
    fn case(&mut self, id: &str) -> Result<Option<Case>, StoreError>;
    /// Inserts the case or replaces it whole.
    fn put_case(&mut self, case: &Case) -> Result<(), StoreError>;
    fn notice(&mut self, id: &str) -> Result<Option<Notice>, StoreError>;
    /// A case's suspicious-matter report assessment.
    fn report(&mut self, case_id: &str) -> Result<Option<ReportAssessment>, StoreError>;
    /// Inserts the assessment or replaces it whole.
    fn put_report(&mut self, report: &ReportAssessment) -> Result<(), StoreError>;
    /// Inserts the notice or replaces it whole.
    fn put_notice(&mut self, notice: &Notice) -> Result<(), StoreError>;
    fn update_account(&mut self, account: &Account) -> Result<(), StoreError>;

    fn key(&mut self, access_key: &AccessKey) -> Result<Option<StoredKey>, StoreError>;
    fn insert_key(&mut self, key: &StoredKey) -> Result<(), StoreError>;
    /// Updates everything but the sealed secret.
    fn update_key(&mut self, key: &ApiKey) -> Result<(), StoreError>;
    fn update_sealed_secret(&mut self, access_key: &AccessKey, sealed: &[u8]) -> Result<(), StoreError>;
    /// Keys counting against the per-account limit at `now`.
    fn live_key_count(&mut self, account: &AccountId, now: OffsetDateTime) -> Result<u32, StoreError>;
    /// Keys whose expiry has passed but whose stored status is still active or suspended.
    fn keys_past_expiry(&mut self, now: OffsetDateTime, limit: u32) -> Result<Vec<ApiKey>, StoreError>;
    /// Every sealed value (key secrets), for rewrapping under a new master key.
    fn sealed_secrets(&mut self) -> Result<Vec<(AccessKey, Vec<u8>)>, StoreError>;

    fn vendor(&mut self, id: &VendorId) -> Result<Option<Vendor>, StoreError>;
    /// Inserts the vendor or replaces it whole.
    fn put_vendor(&mut self, vendor: &Vendor) -> Result<(), StoreError>;
    /// Vendors stored as approved whose recertification date is at or before `now`.
    fn vendors_past_recertification(&mut self, now: OffsetDateTime, limit: u32) -> Result<Vec<Vendor>, StoreError>;
    /// Keys naming the vendor that are not revoked, by access key.
    fn vendor_keys(&mut self, id: &VendorId) -> Result<Vec<ApiKey>, StoreError>;

    fn counterparty(&mut self, id: &CounterpartyId) -> Result<Option<Counterparty>, StoreError>;
    /// Inserts the counterparty or replaces it whole.
    fn put_counterparty(&mut self, counterparty: &Counterparty) -> Result<(), StoreError>;
    /// The counterparties whose own account is `account` (a market maker's mandates, a
    /// broker's client arrangements), ended ones too: what a key's purpose may need.
    fn account_counterparties(&mut self, account: &AccountId) -> Result<Vec<Counterparty>, StoreError>;
    fn party(&mut self, id: &PartyId) -> Result<Option<Party>, StoreError>;
    /// Inserts the party or replaces its document (its account and kind never change).
    fn put_party(&mut self, party: &Party) -> Result<(), StoreError>;

    fn operator(&mut self, id: &OperatorId) -> Result<Option<Operator>, StoreError>;
    fn insert_operator(&mut self, operator: &Operator, token_hash: &[u8; 32]) -> Result<(), StoreError>;
    fn update_operator(&mut self, operator: &Operator) -> Result<(), StoreError>;
    fn operator_count(&mut self) -> Result<u64, StoreError>;

    fn meta(&mut self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    fn set_meta(&mut self, name: &str, value: &[u8]) -> Result<(), StoreError>;

    /// A keyed hash of a sensitive value, for audit details (`kind` separates uses).
    fn pseudonym(&self, kind: &str, value: &[u8]) -> String;

    /// Appends an entry to the audit log; returns its position.
    fn append_audit(&mut self, draft: AuditDraft) -> Result<u64, StoreError>;
}

/// What the writer does after committing (or failing to commit) an operation's batch.
pub type Finish = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// The result of running an operation: whether to keep its writes, and how to report back.
pub struct Outcome {
    pub keep: bool,
    pub finish: Finish,
}

pub type WriteOp = Box<dyn FnOnce(&mut dyn WriteTx) -> Outcome + Send>;

/// Reads. Implementations are safe to call from many threads at once.
pub trait ReadStore: Send + Sync {
    fn account(&self, id: &AccountId) -> Result<Option<Account>, StoreError>;
    fn accounts(&self, filter: &AccountFilter) -> Result<Vec<Account>, StoreError>;
    fn case(&self, id: &str) -> Result<Option<Case>, StoreError>;
    /// Newest first.
    fn cases(&self, filter: &CaseFilter) -> Result<Vec<Case>, StoreError>;
    /// Pending notices due at `now`, oldest due first.
    fn due_notices(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<Notice>, StoreError>;
    /// A case's notices, oldest first.
    fn notices(&self, case_id: &str) -> Result<Vec<Notice>, StoreError>;
    fn report(&self, case_id: &str) -> Result<Option<ReportAssessment>, StoreError>;
    /// Keys whose logs a case holds (legal hold), in any case status.
    fn held_keys(&self) -> Result<Vec<AccessKey>, StoreError>;
    /// Report assessments, open ones first by deadline (or only those).
    fn reports(&self, open_only: bool, limit: u32) -> Result<Vec<ReportAssessment>, StoreError>;
    fn key(&self, access_key: &AccessKey) -> Result<Option<StoredKey>, StoreError>;
    fn keys(&self, filter: &KeyFilter, now: OffsetDateTime) -> Result<Vec<ApiKey>, StoreError>;
    fn operator_by_token_hash(&self, hash: &[u8; 32]) -> Result<Option<Operator>, StoreError>;
    fn operators(&self) -> Result<Vec<Operator>, StoreError>;

    fn vendor(&self, id: &VendorId) -> Result<Option<Vendor>, StoreError>;
    /// By vendor id.
    fn vendors(&self, filter: &VendorFilter) -> Result<Vec<Vendor>, StoreError>;
    fn party(&self, id: &PartyId) -> Result<Option<Party>, StoreError>;
    /// The account's parties, ended ones too, by id.
    fn parties(&self, account: &AccountId) -> Result<Vec<Party>, StoreError>;
    fn counterparty(&self, id: &CounterpartyId) -> Result<Option<Counterparty>, StoreError>;
    /// By counterparty id.
    fn counterparties(&self, filter: &CounterpartyFilter) -> Result<Vec<Counterparty>, StoreError>;
    /// Counterparties whose effective dates begin or end within `(after, until]`: those whose
    /// being in effect changed in that time without any write.
    fn counterparties_turning(
        &self,
        after: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<Vec<Counterparty>, StoreError>;

    /// Entries `[from, from + limit)` as stored text.
    fn audit_entries(&self, from: u64, limit: u32) -> Result<Vec<(u64, String)>, StoreError>;
    /// Leaf hashes of the first `size` entries.
    fn audit_leaves(&self, size: u64) -> Result<Vec<Hash>, StoreError>;
    /// The newest signed checkpoint: (tree size, note).
    fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError>;
    /// The log's origin and verifier key (`name+id+key`) as recorded at initialisation.
    fn log_identity(&self) -> Result<(String, String), StoreError>;
}

/// A complete backend.
pub trait Store: ReadStore {
    /// Queues a write operation. It runs on the backend's writer, possibly batched with others
    /// into one durable commit (group commit); `Outcome::finish` reports the commit's result.
    fn submit(&self, op: WriteOp) -> Result<(), StoreError>;

    /// Whether the backend can still write: false once its writer has stopped (closed, or died).
    /// A node that cannot write must say so rather than serve reads and verifies while refusing
    /// revocations (`/healthz`, `/readyz`, and `serve` exits).
    fn writable(&self) -> bool {
        true
    }

    /// State rows refused since the store opened because what was read no longer matched what
    /// the audit log holds for them (someone wrote the backend's data behind keysentinel).
    fn state_mismatches(&self) -> u64 {
        0
    }
}
