//! What the audit log says every state row holds, kept in memory while the store is open, so
//! that a row edited in the file while keysentinel runs is refused when it is read.
//!
//! The start-up check proves each row against the last digest the log records for it; from then
//! on the writer is the only one that may change a row, and it records every change in the log.
//! So the map of row → digest is built from the verified log at start and kept by the writer at
//! each commit — memory the file cannot change — and every read that materialises a row (an
//! operator looked up by its token, a key, an account, a case...) digests what it read and
//! compares. A difference means someone wrote the file: the read fails with the row named, and
//! the store logs it and counts it ([`Expected::mismatches`]).
//!
//! - **Memory.** A row costs a 64-bit keyed hash of its table and id, the entry's position and
//!   the first 128 bits of its SHA-256 digest (forging a row to match 128 bits is as hard as
//!   finding a second preimage): 33 bytes a row in the hash map, 40 to 70 with its slack, so
//!   40 to 70 MB for a million keys. Two ids whose hashes collide share an entry and so fail
//!   each other's check: a false alarm, never a pass.
//! - **Commits.** The writer stages a batch's digests before `COMMIT` and settles them after it,
//!   and a reader accepts either side of a staged change. Settling moves a generation counter
//!   first: a reader whose row does not match reads it again only if a commit settled while it
//!   read (its snapshot may predate that commit), so a mismatch with no commit in between is an
//!   edit, and a race is never called one.
//! - **What a read cannot see.** A row deleted from the file makes a read find nothing (an
//!   unknown key or token: refused), and a row whose filtered column was changed may drop out of
//!   a list; both are found by the next start and by `audit verify`, which check every row.

use keysentinel_audit::Hash;
use keysentinel_store::StateError;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

/// How many times a reader reads a row that does not match while commits keep settling before it
/// calls it changed anyway (one read again is enough for a race: it sees the settled commit).
pub const READS: usize = 16;

/// A row's digest, as the log holds it: the entry that recorded it and its first 128 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    pub seq: u64,
    digest: [u8; 16],
}

impl Want {
    pub fn new(seq: u64, digest: &Hash) -> Self {
        let mut short = [0u8; 16];
        short.copy_from_slice(&digest[..16]);
        Want { seq, digest: short }
    }

    fn matches(&self, digest: &Hash) -> bool {
        self.digest[..] == digest[..16]
    }
}

/// Row digests staged by one batch of the writer: `None` for a row the batch removed.
pub type Overlay = HashMap<u64, Option<Want>>;

/// A row found in the file that the log does not vouch for.
pub struct Mismatch {
    /// What the log holds for the row, if anything.
    pub want: Option<Want>,
}

impl Mismatch {
    /// The error naming the row.
    pub fn error(&self, table: &str, id: &str) -> StateError {
        match self.want {
            Some(w) => StateError::Changed { table: table.into(), id: id.into(), seq: w.seq },
            None => StateError::Unrecorded { table: table.into(), id: id.into() },
        }
    }
}

pub struct Expected {
    ids: std::collections::hash_map::RandomState,
    committed: RwLock<HashMap<u64, Want>>,
    /// The batch between its checkpoint and its commit: a reader may see the row either side.
    pending: RwLock<Overlay>,
    /// Moved by every settle, before it changes the map.
    generation: AtomicU64,
    mismatches: AtomicU64,
}

impl Default for Expected {
    fn default() -> Self {
        Self {
            ids: std::collections::hash_map::RandomState::new(),
            committed: RwLock::default(),
            pending: RwLock::default(),
            generation: AtomicU64::new(0),
            mismatches: AtomicU64::new(0),
        }
    }
}

impl Expected {
    /// The key of row `id` of state table number `table` (its index in `state::TABLES`).
    pub fn key(&self, table: usize, id: &str) -> u64 {
        self.ids.hash_one((table, id))
    }

    /// Records what the log says row `key` holds (building the map, at start).
    pub fn insert(&self, key: u64, want: Option<Want>) {
        let mut committed = self.committed.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        match want {
            Some(w) => committed.insert(key, w),
            None => committed.remove(&key),
        };
    }

    /// Whether a row read from the file, with this digest, is what the log says (committed, or
    /// staged by the batch being committed).
    pub fn judge(&self, key: u64, digest: &Hash) -> Result<(), Mismatch> {
        let committed = self.committed.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&key).copied();
        if committed.is_some_and(|w| w.matches(digest)) {
            return Ok(());
        }
        let pending = self.pending.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        match pending.get(&key) {
            Some(Some(w)) if w.matches(digest) => Ok(()),
            _ => Err(Mismatch { want: committed }),
        }
    }

    /// The writer's view within a batch: the batch's own staged rows first, then the committed.
    pub fn judge_in_batch(&self, overlay: &Overlay, key: u64, digest: &Hash) -> Result<(), Mismatch> {
        match overlay.get(&key) {
            Some(Some(w)) if w.matches(digest) => Ok(()),
            Some(want) => Err(Mismatch { want: *want }),
            None => {
                let committed =
                    self.committed.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&key).copied();
                match committed {
                    Some(w) if w.matches(digest) => Ok(()),
                    want => Err(Mismatch { want }),
                }
            }
        }
    }

    /// Stages a batch's rows just before its commit.
    pub fn stage(&self, overlay: &Overlay) {
        if overlay.is_empty() {
            return;
        }
        self.pending.write().unwrap_or_else(std::sync::PoisonError::into_inner).clone_from(overlay);
    }

    /// After the commit: its rows become the committed state (or are dropped if it failed).
    pub fn settle(&self, overlay: Overlay, committed: bool) {
        if overlay.is_empty() {
            return;
        }
        // First: a reader that then sees the new map also sees that a commit settled.
        self.generation.fetch_add(1, Ordering::SeqCst);
        if committed {
            let mut map = self.committed.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            for (key, want) in overlay {
                match want {
                    Some(w) => map.insert(key, w),
                    None => map.remove(&key),
                };
            }
        }
        self.pending.write().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }

    /// Which settle the map is at (a reader compares it before and after a read).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Says loudly that a row in the file is not what the log holds, and counts it.
    pub fn report(&self, error: &StateError) {
        let n = self.mismatches.fetch_add(1, Ordering::Relaxed) + 1;
        let (table, row) = error.row();
        tracing::error!(
            table,
            row,
            mismatches = n,
            "{error}: a state row does not match its audit history — someone wrote the database file while keysentinel runs; the row is refused. Stop the server, run `keysentinel audit verify`, and restore from a backup that verifies"
        );
    }

    /// Rows refused since the store opened.
    pub fn mismatches(&self) -> u64 {
        self.mismatches.load(Ordering::Relaxed)
    }
}
