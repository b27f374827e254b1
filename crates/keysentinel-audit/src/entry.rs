//! Audit entries. An entry is stored as the exact JSON text that was hashed, so verification
//! hashes stored bytes and never depends on re-serialising them the same way.

use crate::merkle::{leaf_hash, Frontier, Hash};
use crate::state::RowState;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// An operator authenticated by an admin-API token.
    Operator { id: String, role: String },
    /// keysentinel itself (expiry sweeper, policy engine).
    System { component: String },
    /// A command run on the host with direct access to the data directory (init, rewrap).
    Local { command: String },
}

impl Actor {
    /// The name recorded in a key's `status_changed_by` and shown in tables.
    pub fn label(&self) -> String {
        match self {
            Actor::Operator { id, .. } => id.clone(),
            Actor::System { component } => format!("system:{component}"),
            Actor::Local { command } => format!("local:{command}"),
        }
    }
}

/// What a state change asks to record; the log fills in the position, time and chain link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditDraft {
    pub actor: Actor,
    /// Dotted verb, e.g. `key.revoke`, `account.create`, `operator.create`.
    pub action: String,
    /// What the action was applied to (an access key, an account id, an operator id).
    pub target: String,
    pub reason: String,
    /// Version of the policy under which the decision was taken, when one was.
    pub policy_version: Option<String>,
    /// Action-specific facts. Sensitive values are keyed hashes here, never clear text.
    pub details: serde_json::Value,
}

/// The stored form, in the order the fields are written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Format version of the entry.
    pub v: u8,
    /// Position in the log, from 0.
    pub seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub ts: OffsetDateTime,
    /// Hex leaf hash of the previous entry ("" for the first): a hash chain that lets the
    /// verifier name the exact entry where a rewrite begins.
    pub prev: String,
    pub actor: Actor,
    pub action: String,
    pub target: String,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub policy_version: Option<String>,
    pub details: serde_json::Value,
    /// The digests of the rows the operation wrote, as they stood after it (`state.rs`). The
    /// operation's entry aimed at a row carries that row; the rest ride on its last entry.
    /// Absent from entries written before row digests existed (they verify as before).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state: Vec<RowState>,
}

/// An entry ready to store: its text and leaf hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedEntry {
    pub seq: u64,
    pub text: String,
    pub leaf: Hash,
}

/// The appender's state: the tree frontier and the last leaf, enough to seal the next entry and
/// compute the root for a checkpoint. Cheap to clone, so a writer can snapshot it and roll back
/// when a transaction fails.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogState {
    frontier: Frontier,
    last_leaf: Option<Hash>,
}

impl LogState {
    /// Rebuilds the state from stored leaf hashes, in order.
    pub fn from_leaves(leaves: impl IntoIterator<Item = Hash>) -> Self {
        let mut state = LogState::default();
        for leaf in leaves {
            state.frontier.push(leaf);
            state.last_leaf = Some(leaf);
        }
        state
    }

    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// Seals `draft` as the next entry and advances the state.
    pub fn append(&mut self, draft: AuditDraft, ts: OffsetDateTime) -> Result<SealedEntry, serde_json::Error> {
        self.append_with_state(draft, ts, Vec::new())
    }

    /// Seals `draft` with the digests of the rows it leaves behind.
    pub fn append_with_state(
        &mut self,
        draft: AuditDraft,
        ts: OffsetDateTime,
        state: Vec<RowState>,
    ) -> Result<SealedEntry, serde_json::Error> {
        let entry = AuditEntry {
            v: 1,
            seq: self.size(),
            ts,
            prev: self.last_leaf.map(hex::encode).unwrap_or_default(),
            actor: draft.actor,
            action: draft.action,
            target: draft.target,
            reason: draft.reason,
            policy_version: draft.policy_version,
            details: draft.details,
            state,
        };
        let text = serde_json::to_string(&entry)?;
        let leaf = leaf_hash(text.as_bytes());
        self.frontier.push(leaf);
        self.last_leaf = Some(leaf);
        Ok(SealedEntry { seq: entry.seq, text, leaf })
    }
}
