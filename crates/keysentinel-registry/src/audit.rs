use crate::{Registry, RegistryError};
use keysentinel_audit::merkle::inclusion_proof;
use keysentinel_audit::proof::InclusionProof;
use keysentinel_audit::AuditEntry;
use keysentinel_store::StoreError;

impl Registry {
    pub fn audit_entries(&self, from: u64, limit: u32) -> Result<Vec<AuditEntry>, RegistryError> {
        self.store
            .audit_entries(from, limit.clamp(1, 1000))?
            .into_iter()
            .map(|(_, text)| {
                serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("audit entry: {e}")).into())
            })
            .collect()
    }

    /// The newest signed checkpoint (note text), with the log's origin and verifier key.
    pub fn audit_checkpoint(&self) -> Result<Option<(String, String, String)>, RegistryError> {
        let (origin, verifier) = self.store.log_identity()?;
        Ok(self.store.latest_checkpoint()?.map(|(_, note)| (note, origin, verifier)))
    }

    /// An inclusion proof for entry `seq` against the newest checkpoint.
    pub fn audit_proof(&self, seq: u64) -> Result<InclusionProof, RegistryError> {
        let (size, note) = self
            .store
            .latest_checkpoint()?
            .ok_or(RegistryError::NotFound { what: "checkpoint", id: "latest".into() })?;
        if seq >= size {
            return Err(RegistryError::NotFound { what: "audit entry", id: seq.to_string() });
        }
        let leaves = self.store.audit_leaves(size)?;
        let path = inclusion_proof(&leaves, seq as usize)
            .ok_or(RegistryError::NotFound { what: "audit entry", id: seq.to_string() })?;
        let (_, entry) = self
            .store
            .audit_entries(seq, 1)?
            .into_iter()
            .next()
            .ok_or(RegistryError::NotFound { what: "audit entry", id: seq.to_string() })?;
        Ok(InclusionProof::new(entry, seq, size, &path, note))
    }
}
