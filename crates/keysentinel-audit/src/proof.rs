//! Inclusion proofs for single entries, in a self-contained form that can be checked offline
//! with nothing but the log's verifier key.

use crate::checkpoint::{CheckpointError, LogVerifier};
use crate::entry::AuditEntry;
use crate::merkle::{leaf_hash, verify_inclusion, Hash};
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InclusionProof {
    /// The entry exactly as stored (the bytes that were hashed).
    pub entry: String,
    pub seq: u64,
    /// Size of the tree the proof is against (that of `checkpoint`).
    pub tree_size: u64,
    /// Audit path, hex, leaf to root.
    pub path: Vec<String>,
    /// The signed checkpoint (note text) whose root the path leads to.
    pub checkpoint: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProofError {
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("the proof is for tree size {proof} but the checkpoint signs size {checkpoint}")]
    SizeMismatch { proof: u64, checkpoint: u64 },
    #[error("the entry does not record position {0}")]
    WrongPosition(u64),
    #[error("the proof is malformed: {0}")]
    Malformed(String),
    #[error("the entry is not in the signed tree (modified entry or forged proof)")]
    NotIncluded,
}

impl InclusionProof {
    pub fn new(entry: String, seq: u64, tree_size: u64, path: &[Hash], checkpoint: String) -> Self {
        Self { entry, seq, tree_size, path: path.iter().map(hex::encode).collect(), checkpoint }
    }

    /// Checks the checkpoint's signature, then the entry's path to its root.
    pub fn verify(&self, verifier: &LogVerifier, origin: &str) -> Result<AuditEntry, ProofError> {
        let cp = verifier.open_for(origin, &self.checkpoint)?;
        if cp.size != self.tree_size {
            return Err(ProofError::SizeMismatch { proof: self.tree_size, checkpoint: cp.size });
        }
        let entry: AuditEntry = serde_json::from_str(&self.entry).map_err(|e| ProofError::Malformed(e.to_string()))?;
        if entry.seq != self.seq {
            return Err(ProofError::WrongPosition(self.seq));
        }
        let mut path = Vec::with_capacity(self.path.len());
        for h in &self.path {
            let bytes = hex::decode(h).map_err(|e| ProofError::Malformed(e.to_string()))?;
            let hash: Hash = bytes.try_into().map_err(|_| ProofError::Malformed("path hash is not 32 bytes".into()))?;
            path.push(hash);
        }
        if !verify_inclusion(&leaf_hash(self.entry.as_bytes()), self.seq, self.tree_size, &path, &cp.root) {
            return Err(ProofError::NotIncluded);
        }
        Ok(entry)
    }
}
