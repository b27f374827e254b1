//! Evidence packs: everything a dispute about a case needs — the case with its detections and
//! history, the notices and their delivery, the key as it stands, and every audit entry about
//! them — with inclusion proofs against a signed checkpoint, so that the pack can be checked
//! offline (`keysentinel audit verify-pack`) by someone who trusts only the log's public key.
//!
//! The pack's body is bound to the log: its SHA-256 is recorded in an `evidence_pack.export`
//! audit entry, and that entry's inclusion proof travels with the pack. A change of one byte in
//! the body changes the digest; a change in an entry breaks its proof; a forged checkpoint fails
//! its signature.

use crate::{Registry, RegistryError};
use keysentinel_audit::merkle::inclusion_proof;
use keysentinel_audit::proof::InclusionProof;
use keysentinel_audit::{Actor, AuditDraft, AuditEntry};
use keysentinel_store::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const PACK_FORMAT: &str = "keysentinel-evidence-pack/1";

/// Case steps an evidence pack leaves out.
const HOLD_STEPS: [&str; 2] = ["hold", "release_hold"];

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EvidencePack {
    pub format: String,
    /// The log's origin line and verifier key (`name+id+key`): pin your own copy of the key
    /// when verifying, rather than trusting this one.
    pub log_origin: String,
    pub log_verifier: String,
    /// The case, notices, key and the positions of the audit entries about them.
    #[schema(value_type = Object)]
    pub body: Value,
    /// Hex SHA-256 of the body as serialised (compact, keys sorted).
    pub digest: String,
    /// The audit entry recording this export (it holds the digest), with its proof.
    pub export: InclusionProof,
    /// Each audit entry about the case, with its proof, in log order.
    pub entries: Vec<InclusionProof>,
}

/// The body's digest, as recorded in the log.
pub fn body_digest(body: &Value) -> String {
    hex::encode(Sha256::digest(body.to_string().as_bytes()))
}

impl Registry {
    /// Assembles the case's evidence pack, recording its export (and digest) in the audit log.
    pub async fn evidence_pack(
        &self,
        actor: Actor,
        case_id: String,
        reason: String,
    ) -> Result<EvidencePack, RegistryError> {
        crate::check_reason(&reason)?;
        let mut case = self.case(&case_id)?;
        // A legal hold can stand for a law-enforcement request the owner must not learn of: the
        // owner's pack leaves it out, like any report assessment (whose entries never name the
        // case).
        case.legal_hold = None;
        case.history.retain(|e| !HOLD_STEPS.contains(&e.what.as_str()));
        let notices = self.notices(&case_id)?;
        let key = self.store.key(&case.key_id)?.map(|s| s.key);
        // The entries about the case: the case itself, its key (and a reinstated key), its notices.
        let mut targets: Vec<String> = vec![case.case_id.clone(), case.key_id.to_string()];
        targets.extend(notices.iter().map(|n| n.notice_id.clone()));
        // Who stands behind the account, as recorded (owners, representatives, operators), and
        // the entries that recorded them.
        let parties = self.store.parties(&case.account_id)?;
        targets.extend(parties.iter().map(|p| p.party_id.to_string()));
        if let Some(k) = case.reinstatement.as_ref().and_then(|r| r.new_key.as_ref()) {
            targets.push(k.to_string());
        }
        let mut seqs = Vec::new();
        let mut from = 0;
        loop {
            let page = self.store.audit_entries(from, 1000)?;
            let Some((last, _)) = page.last() else { break };
            from = last + 1;
            for (seq, text) in &page {
                let entry: AuditEntry =
                    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("audit entry {seq}: {e}")))?;
                let hold_step = HOLD_STEPS.iter().any(|h| entry.action.strip_prefix("case.") == Some(h));
                if targets.contains(&entry.target) && !hold_step {
                    seqs.push(*seq);
                }
            }
            if page.len() < 1000 {
                break;
            }
        }
        let body = json!({ "case": case, "notices": notices, "key": key, "parties": parties, "audit_seqs": seqs });
        let digest = body_digest(&body);
        let details = json!({ "digest": digest, "entries": seqs.len() });
        let target = case_id.clone();
        let export_seq = self
            .transact(move |tx| {
                Ok(tx.append_audit(AuditDraft {
                    actor,
                    action: "evidence_pack.export".into(),
                    target,
                    reason,
                    policy_version: None,
                    details,
                })?)
            })
            .await?;
        let mut proofs = self.audit_proofs(&[&seqs[..], &[export_seq]].concat())?;
        let export = proofs.pop().ok_or(RegistryError::NotFound { what: "audit entry", id: export_seq.to_string() })?;
        let (log_origin, log_verifier) = self.store.log_identity()?;
        Ok(EvidencePack { format: PACK_FORMAT.into(), log_origin, log_verifier, body, digest, export, entries: proofs })
    }

    /// Inclusion proofs for `seqs` against the newest checkpoint, reading the leaves once.
    pub fn audit_proofs(&self, seqs: &[u64]) -> Result<Vec<InclusionProof>, RegistryError> {
        let (size, note) = self
            .store
            .latest_checkpoint()?
            .ok_or(RegistryError::NotFound { what: "checkpoint", id: "latest".into() })?;
        let leaves = self.store.audit_leaves(size)?;
        seqs.iter()
            .map(|&seq| {
                let missing = || RegistryError::NotFound { what: "audit entry", id: seq.to_string() };
                let path = inclusion_proof(&leaves, seq as usize).filter(|_| seq < size).ok_or_else(missing)?;
                let (_, entry) = self.store.audit_entries(seq, 1)?.into_iter().next().ok_or_else(missing)?;
                Ok(InclusionProof::new(entry, seq, size, &path, note.clone()))
            })
            .collect()
    }
}
