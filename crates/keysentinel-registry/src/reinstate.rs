//! Re-verification and reinstatement: the owner's way back after a key was stopped. Filed on the
//! owner's behalf with their explanation, reviewed by an analyst, approved by two approvers —
//! none of them the one who filed it, the approvers not the reviewer — then a new key with the
//! same or tighter grants is issued in the same transaction as the last approval. The stopped
//! key is revoked if it was only suspended, and never comes back. Every step is audited.

use crate::keys::{check_request, issue, prepare, IssuedKey, Material, NewKey, NewKeyAlgorithm};
use crate::{check_reason, Registry, RegistryError};
use keysentinel_audit::{Actor, AuditDraft};
use keysentinel_domain::account::check_text;
use keysentinel_domain::{
    Case, IpAllowlist, KeyAlgorithm, KeyClaim, KeyStatus, Reinstatement, ReinstatementStatus, Scope, Signoff,
    ValidationError, Verification,
};
use keysentinel_store::WriteTx;
use serde::Deserialize;
use serde_json::json;

/// The owner's request, as support files it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReinstatementRequest {
    /// The owner's explanation of the use that was detected.
    pub explanation: String,
    /// References to what the owner supplied (documents, ticket numbers), up to 20.
    #[serde(default)]
    pub evidence: Vec<String>,
    /// Scopes for the new key: read and/or trade, among the old key's.
    pub scopes: Vec<Scope>,
    /// The new key's IP allowlist (required).
    pub ip_allowlist: Vec<String>,
    /// For Ed25519 keys: the owner's new public key.
    pub public_key: Option<String>,
}

fn operator_only(actor: &Actor) -> Result<(), RegistryError> {
    match actor {
        Actor::Operator { .. } => Ok(()),
        other => Err(RegistryError::Forbidden(format!("{} cannot take part in a reinstatement", other.label()))),
    }
}

fn load_case(tx: &mut dyn WriteTx, id: &str) -> Result<Case, RegistryError> {
    tx.case(id)?.ok_or_else(|| RegistryError::NotFound { what: "case", id: id.to_owned() })
}

fn audit(tx: &mut dyn WriteTx, actor: Actor, action: &str, case: &Case, reason: String) -> Result<(), RegistryError> {
    tx.append_audit(AuditDraft {
        actor,
        action: action.into(),
        target: case.case_id.clone(),
        reason,
        policy_version: Some(case.policy_version.clone()),
        details: json!({ "key_id": case.key_id, "account_id": case.account_id, "reinstatement": case.reinstatement }),
    })?;
    Ok(())
}

/// The owner re-verified (the reinstatement rests on it): the account is verified as of now,
/// audited with the case.
fn reverified(tx: &mut dyn WriteTx, actor: Actor, case: &Case) -> Result<(), RegistryError> {
    let now = tx.now();
    let mut account = crate::keys::load_account(tx, &case.account_id)?;
    let from = account.verification;
    account.verification = Verification::Verified;
    account.verified_at = Some(now);
    account.updated_at = now;
    tx.update_account(&account)?;
    tx.append_audit(AuditDraft {
        actor,
        action: "account.reverify".into(),
        target: account.account_id.to_string(),
        reason: format!("identity re-verified for reinstatement ({})", case.case_id),
        policy_version: Some(case.policy_version.clone()),
        details: json!({ "from": from, "to": account.verification, "case_id": case.case_id,
            "verified_at": now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default() }),
    })?;
    Ok(())
}

impl Registry {
    pub async fn request_reinstatement(
        &self,
        actor: Actor,
        case_id: String,
        req: ReinstatementRequest,
    ) -> Result<Case, RegistryError> {
        operator_only(&actor)?;
        check_text("explanation", &req.explanation, 4000)?;
        if req.explanation.trim().is_empty() {
            return Err(ValidationError::new("explanation", "the owner's explanation is required").into());
        }
        if req.evidence.len() > 20 {
            return Err(ValidationError::new("evidence", "at most 20 references").into());
        }
        for e in &req.evidence {
            check_text("evidence", e, 500)?;
        }
        IpAllowlist::parse(&req.ip_allowlist)?;
        self.transact(move |tx| {
            let now = tx.now();
            let mut case = load_case(tx, &case_id)?;
            let old = crate::keys::load_key(tx, &case.key_id)?.key;
            if let Some(s) = req.scopes.iter().find(|s| !old.scopes.contains(**s)) {
                return Err(ValidationError::new("scopes", format!("the old key did not have {}", s.as_str())).into());
            }
            let ed25519 = matches!(old.algorithm, KeyAlgorithm::Ed25519 { .. });
            if ed25519 != req.public_key.is_some() {
                let msg = if ed25519 {
                    "an Ed25519 key needs the owner's new public key"
                } else {
                    "an HMAC key takes no public key"
                };
                return Err(ValidationError::new("public_key", msg).into());
            }
            let request = Reinstatement {
                status: ReinstatementStatus::Requested,
                requested: Signoff { by: actor.label(), at: now, note: String::new() },
                explanation: req.explanation,
                evidence: req.evidence,
                scopes: req.scopes,
                ip_allowlist: req.ip_allowlist,
                public_key: req.public_key,
                review: None,
                approvals: Vec::new(),
                new_key: None,
            };
            case.request_reinstatement(request, now)?;
            tx.put_case(&case)?;
            audit(tx, actor, "reinstatement.request", &case, "owner re-verified and asked for access back".into())?;
            Ok(case)
        })
        .await
    }

    pub async fn review_reinstatement(
        &self,
        actor: Actor,
        case_id: String,
        approve: bool,
        note: String,
    ) -> Result<Case, RegistryError> {
        operator_only(&actor)?;
        check_reason(&note)?;
        self.transact(move |tx| {
            let now = tx.now();
            let mut case = load_case(tx, &case_id)?;
            case.review_reinstatement(&actor.label(), approve, &note, now)?;
            tx.put_case(&case)?;
            audit(tx, actor, if approve { "reinstatement.recommend" } else { "reinstatement.reject" }, &case, note)?;
            Ok(case)
        })
        .await
    }

    /// An approver's approval; the second issues the new key. An HMAC key is held for its owner
    /// (pending, no secret yet): this answer carries no secret, the owner claims the key through
    /// the customer channel with the code the outbox sends them (`redeem_claim`).
    pub async fn approve_reinstatement(
        &self,
        actor: Actor,
        case_id: String,
        note: String,
    ) -> Result<(Case, Option<IssuedKey>), RegistryError> {
        operator_only(&actor)?;
        check_reason(&note)?;
        let (policy, keyring) = (self.policy.clone(), self.keyring.clone());
        let (case, issued) = self
            .transact(move |tx| {
                let now = tx.now();
                let mut case = load_case(tx, &case_id)?;
                let by = actor.label();
                // Four eyes are two people: no approver in a creation chain with the requester,
                // the reviewer or the other approver.
                if let Some(r) = &case.reinstatement {
                    let others = std::iter::once(&r.requested).chain(&r.review).chain(&r.approvals);
                    for other in others.filter(|o| o.by != by) {
                        if crate::operators::related(tx, &by, &other.by)? {
                            return Err(RegistryError::Forbidden(format!(
                                "{by} may not approve this reinstatement: {by} and {} are one chain of creation (one created the other)",
                                other.by
                            )));
                        }
                    }
                }
                let done = case.approve_reinstatement(&by, &note, now)?;
                audit(tx, actor.clone(), "reinstatement.approve", &case, note.clone())?;
                if !done {
                    tx.put_case(&case)?;
                    return Ok((case, None));
                }
                let Some(r) = case.reinstatement.clone() else {
                    return Err(RegistryError::NotFound { what: "reinstatement", id: case.case_id.clone() });
                };
                let mut old = crate::keys::load_key(tx, &case.key_id)?.key;
                if old.status != KeyStatus::Revoked {
                    let reason = format!("replaced by reinstatement ({})", case.case_id);
                    old.revoke(&reason, &by, now)?;
                    tx.update_key(&old)?;
                    tx.append_audit(AuditDraft {
                        actor: actor.clone(),
                        action: "key.revoke".into(),
                        target: old.access_key.to_string(),
                        reason,
                        policy_version: Some(case.policy_version.clone()),
                        details: json!({ "to": KeyStatus::Revoked, "account_id": old.account_id, "case_id": case.case_id }),
                    })?;
                }
                let new = NewKey {
                    account_id: case.account_id.clone(),
                    algorithm: match r.public_key {
                        Some(public_key) => NewKeyAlgorithm::Ed25519 { public_key },
                        None => NewKeyAlgorithm::Hmac {},
                    },
                    scheme: old.scheme,
                    scopes: r.scopes,
                    ip_allowlist: IpAllowlist::parse(&r.ip_allowlist)?,
                    lifetime_days: None,
                    vendor_id: old.vendor_id.clone(),
                    // The same purpose, under its rules as they stand now (a legacy key's has
                    // none); a purpose needing approval makes the new key pending again.
                    purpose: old.declared.purpose.clone(),
                    purpose_note: old.declared.note.clone(),
                    terms_version: old.terms_version.clone(),
                    // Not read: `issue` records the old key's acceptance as it is (none for a key
                    // from before acceptances were recorded), passed beside.
                    terms_accepted_at: old.created_at,
                    terms_channel: keysentinel_domain::TermsChannel::Web,
                    sensitive_grant_hours: None,
                    // The same operator, if still on the record (the rule holds again).
                    operated_by: old.operated_by.as_ref().and_then(|o| o.party_id.clone()),
                };
                let scopes = check_request(&new)?;
                let reason = format!("reinstated after re-verification ({})", case.case_id);
                let terms = old.terms_acceptance.clone();
                reverified(tx, actor.clone(), &case)?;
                // An HMAC key reaches its owner only: no secret now, a claim the owner redeems
                // with a one-time code the outbox delivers to them. An Ed25519 key has no
                // secret to deliver (the owner holds its private half) and is issued at once.
                let (mat, claim) = match &new.algorithm {
                    NewKeyAlgorithm::Hmac {} => {
                        let code = crate::claims::one_time_code();
                        let hash = crate::claims::code_hash(tx, &code);
                        (Material::deferred_hmac(new.scheme)?, Some((KeyClaim::new(&case.case_id, hash, now), code)))
                    }
                    NewKeyAlgorithm::Ed25519 { .. } => (prepare(&new)?.1, None),
                };
                let held = claim.as_ref().map(|(c, _)| c.clone());
                let issued = issue(tx, &policy, &keyring, actor.clone(), new, terms, scopes, mat, held, reason.clone())?;
                if let Some((claim, code)) = claim {
                    crate::claims::open(tx, &keyring, actor.clone(), &issued.key, &claim, &code)?;
                }
                case.reinstated(issued.key.access_key.clone(), &by, now);
                tx.put_case(&case)?;
                audit(tx, actor, "reinstatement.issue", &case, reason)?;
                Ok((case, Some(issued)))
            })
            .await?;
        let mut changed = vec![case.key_id.clone()];
        changed.extend(issued.iter().map(|i| i.key.access_key.clone()));
        self.publish(&changed);
        Ok((case, issued))
    }
}
