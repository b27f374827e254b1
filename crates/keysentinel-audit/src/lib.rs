//! The tamper-evident audit log, as pure logic: entries are sealed into an RFC 6962 Merkle tree
//! with a hash chain alongside, tree heads are signed as checkpoints, and a stored log can be
//! re-verified offline. Storage lives in the store adapters; nothing here does I/O.

pub mod checkpoint;
pub mod entry;
pub mod merkle;
pub mod proof;
pub mod state;
pub mod verify;

pub use checkpoint::{Checkpoint, CheckpointError, LogSigner, LogVerifier};
pub use entry::{Actor, AuditDraft, AuditEntry, LogState, SealedEntry};
pub use merkle::Hash;
pub use state::{row_digest, Cell, RowState};
pub use verify::{verify_log, LogAuditor, LogError, StoredCheckpoint, StoredEntry, VerifyReport};
