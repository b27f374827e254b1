//! Offline verification of a stored log: every entry rehashed, the hash chain followed, every
//! signed checkpoint's root recomputed and its signature checked, and the log's length compared
//! with the newest checkpoint (and, optionally, with checkpoints held elsewhere).
//!
//! It names the first bad entry. What each check catches:
//! - a modified entry: its text no longer hashes to its stored leaf hash, or (if that was
//!   updated too) to the link the next entry holds, or (if the whole tail was rewritten) to the
//!   signed root of the first checkpoint after it;
//! - a deleted or inserted entry: a gap or a repeat in positions, or a broken chain;
//! - reordered entries: each entry records its own position;
//! - truncation: the newest checkpoint signed more entries than remain (keep an exported
//!   checkpoint elsewhere to catch a truncation that also removed the checkpoints).

use crate::checkpoint::{Checkpoint, CheckpointError, LogVerifier};
use crate::entry::AuditEntry;
use crate::merkle::{leaf_hash, Frontier, Hash};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LogError {
    #[error("entry {seq} is missing: the log goes from entry {before} to entry {found} (deleted?)")]
    Missing { seq: u64, before: i64, found: i64 },
    #[error("entry {seq} is not valid: {reason}")]
    Unreadable { seq: u64, reason: String },
    #[error("entry {seq} records position {claimed} (reordered or renumbered?)")]
    WrongPosition { seq: u64, claimed: u64 },
    #[error("entry {seq} was modified: its content does not match its recorded hash")]
    ContentMismatch { seq: u64 },
    #[error("entry {seq} was modified, removed or inserted: entry {next} does not link to it")]
    BrokenChain { seq: u64, next: u64 },
    #[error("{}", root_mismatch(*from, *size))]
    RootMismatch { from: u64, size: u64 },
    #[error("checkpoint {size} is not valid: {source}")]
    BadCheckpoint { size: u64, source: CheckpointError },
    #[error("checkpoint stored as size {stored} signs size {signed}")]
    CheckpointSizeMismatch { stored: u64, signed: u64 },
    #[error("entry {seq} is missing: a signed checkpoint covers {size} entries but the log holds {seq} (truncated?)")]
    Truncated { seq: u64, size: u64 },
    #[error("entry {seq} is not covered by any signed checkpoint (appended outside keysentinel?)")]
    Unsigned { seq: u64 },
}

fn root_mismatch(from: u64, size: u64) -> String {
    if size == from + 1 {
        format!("entry {from} was modified: it does not match the root signed in checkpoint {size}")
    } else {
        format!("entries {from} to {} were rewritten (the first bad one is at or after {from}): they do not match the root signed in checkpoint {size}", size - 1)
    }
}

impl LogError {
    /// The first entry found bad, when the problem is about an entry.
    pub fn first_bad_entry(&self) -> Option<u64> {
        match self {
            LogError::Missing { seq, .. }
            | LogError::Unreadable { seq, .. }
            | LogError::WrongPosition { seq, .. }
            | LogError::ContentMismatch { seq }
            | LogError::BrokenChain { seq, .. }
            | LogError::Truncated { seq, .. }
            | LogError::Unsigned { seq } => Some(*seq),
            LogError::RootMismatch { from, .. } => Some(*from),
            LogError::BadCheckpoint { .. } | LogError::CheckpointSizeMismatch { .. } => None,
        }
    }
}

/// One stored entry row.
pub struct StoredEntry {
    pub seq: i64,
    pub text: String,
    pub leaf: Vec<u8>,
}

/// One stored checkpoint row.
pub struct StoredCheckpoint {
    pub size: i64,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub entries: u64,
    pub checkpoints: u64,
    pub root: Hash,
    pub latest: Option<Checkpoint>,
}

/// Streams a log through the checks. Feed entries in position order with `push`, then `finish`.
pub struct LogAuditor {
    /// Signed checkpoints, smallest size first, with the size the row claims.
    pending: std::collections::VecDeque<(u64, Checkpoint)>,
    /// Checkpoints held outside the log (exported earlier), smallest first.
    external: std::collections::VecDeque<Checkpoint>,
    frontier: Frontier,
    prev: Option<(u64, Hash)>,
    last_verified: u64,
    checked: u64,
    latest: Option<Checkpoint>,
}

impl LogAuditor {
    pub fn new(
        verifier: &LogVerifier,
        origin: &str,
        checkpoints: impl IntoIterator<Item = StoredCheckpoint>,
        external: impl IntoIterator<Item = Checkpoint>,
    ) -> Result<Self, LogError> {
        let mut pending = Vec::new();
        for row in checkpoints {
            let stored = u64::try_from(row.size).unwrap_or(u64::MAX);
            let cp = verifier
                .open_for(origin, &row.note)
                .map_err(|source| LogError::BadCheckpoint { size: stored, source })?;
            if cp.size != stored {
                return Err(LogError::CheckpointSizeMismatch { stored, signed: cp.size });
            }
            pending.push((stored, cp));
        }
        pending.sort_by_key(|(size, _)| *size);
        let latest = pending.last().map(|(_, cp)| cp.clone());
        let mut external: Vec<Checkpoint> = external.into_iter().collect();
        external.sort_by_key(|cp| cp.size);
        Ok(Self {
            pending: pending.into(),
            external: external.into(),
            frontier: Frontier::default(),
            prev: None,
            last_verified: 0,
            checked: 0,
            latest,
        })
    }

    /// Checks the next entry; returns it parsed, for checks built on the entries (row digests).
    pub fn push(&mut self, row: StoredEntry) -> Result<AuditEntry, LogError> {
        let seq = self.frontier.size();
        if row.seq != seq as i64 {
            return Err(LogError::Missing { seq, before: seq as i64 - 1, found: row.seq });
        }
        let leaf = leaf_hash(row.text.as_bytes());
        let entry: AuditEntry =
            serde_json::from_str(&row.text).map_err(|e| LogError::Unreadable { seq, reason: e.to_string() })?;
        if entry.seq != seq {
            return Err(LogError::WrongPosition { seq, claimed: entry.seq });
        }
        if row.leaf.as_slice() != leaf.as_slice() {
            return Err(LogError::ContentMismatch { seq });
        }
        let expected_prev = self.prev.map(|(_, h)| hex::encode(h)).unwrap_or_default();
        if entry.prev != expected_prev {
            // This entry is self-consistent, so the link it holds is the previous entry's hash
            // as it was when this entry was written: the previous one changed (or one was
            // inserted or removed between them).
            let bad = self.prev.map_or(seq, |(s, _)| s);
            return Err(LogError::BrokenChain { seq: bad, next: seq });
        }
        self.frontier.push(leaf);
        self.prev = Some((seq, leaf));
        let size = self.frontier.size();
        while let Some((cp_size, cp)) = self.pending.front() {
            if *cp_size != size {
                break;
            }
            if cp.root != self.frontier.root() {
                return Err(LogError::RootMismatch { from: self.last_verified, size });
            }
            self.last_verified = size;
            self.checked += 1;
            self.pending.pop_front();
        }
        while let Some(cp) = self.external.front() {
            if cp.size != size {
                break;
            }
            if cp.root != self.frontier.root() {
                return Err(LogError::RootMismatch { from: 0, size });
            }
            self.checked += 1;
            self.external.pop_front();
        }
        Ok(entry)
    }

    pub fn finish(self) -> Result<VerifyReport, LogError> {
        let size = self.frontier.size();
        let signed_beyond =
            self.pending.back().map(|(s, _)| *s).into_iter().chain(self.external.back().map(|c| c.size)).max();
        if let Some(cp_size) = signed_beyond {
            return Err(LogError::Truncated { seq: size, size: cp_size });
        }
        if size > self.last_verified {
            return Err(LogError::Unsigned { seq: self.last_verified });
        }
        Ok(VerifyReport { entries: size, checkpoints: self.checked, root: self.frontier.root(), latest: self.latest })
    }
}

/// Convenience for in-memory logs (tests, small exports).
pub fn verify_log(
    verifier: &LogVerifier,
    origin: &str,
    entries: impl IntoIterator<Item = StoredEntry>,
    checkpoints: impl IntoIterator<Item = StoredCheckpoint>,
) -> Result<VerifyReport, LogError> {
    let mut auditor = LogAuditor::new(verifier, origin, checkpoints, [])?;
    for e in entries {
        auditor.push(e)?;
    }
    auditor.finish()
}
