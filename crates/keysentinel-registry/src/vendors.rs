//! The approved-vendor registry: applications, attestations, due diligence, approval and
//! recertification (four eyes), suspension, and the sweep that lapses vendors past their
//! recertification date. A vendor that stops being approved takes its keys with it, in the same
//! transaction: each live key is restricted as the response policy's `[vendors]` rules say, its
//! owner's notice is queued, and every step is audited.

use crate::cases::{apply, new_id, record_key_change};
use crate::{check_reason, Registry, RegistryError};
use keysentinel_audit::{Actor, AuditDraft};
use keysentinel_domain::{
    AccessKey, Action, ApiKey, DueDiligenceOutcome, EgressRanges, Mode, Notice, Questionnaire, ResponsePolicy,
    ValidationError, Vendor, VendorError, VendorId, VendorStatus,
};
use keysentinel_store::{KeyFilter, VendorFilter, WriteTx};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use time::OffsetDateTime;

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewVendor {
    pub vendor_id: VendorId,
    pub legal_name: String,
    /// The networks its requests come from (each at most a /24 or /48; none is fine for a tool
    /// that runs where its customer does).
    #[serde(default)]
    pub egress_cidrs: EgressRanges,
    /// Why it is registered (recorded in the audit log).
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttestationInput {
    pub answers: Questionnaire,
    /// When the vendor signed it (RFC 3339; not in the future).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub attested_at: OffsetDateTime,
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DueDiligenceInput {
    pub outcome: DueDiligenceOutcome,
    /// Where the documents are kept.
    pub document_ref: String,
    #[serde(default)]
    pub notes: String,
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalInput {
    /// When the approval lapses unless recertified (RFC 3339; ahead, within two years).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub recertification_due: OffsetDateTime,
    /// New egress networks, on a recertification only (they stay as they are when absent).
    #[serde(default)]
    pub egress_cidrs: Option<EgressRanges>,
    pub reason: String,
}

/// What a vendor's lapse or suspension did to one key.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KeyRestriction {
    #[schema(value_type = String)]
    pub access_key: AccessKey,
    pub account_id: String,
    /// What the key lost or became ("lost trade", "is now suspended"); none when the action took
    /// nothing from it (contain, a key already suspended) or the policy is in shadow mode.
    pub change: Option<String>,
    /// The owner's notice; none in shadow mode.
    pub notice_id: Option<String>,
}

/// A vendor as it now stands, and what its change did to its keys.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VendorChange {
    pub vendor: Vendor,
    /// The policy's action on its keys (`[vendors]` of the response policy).
    pub action: Option<Action>,
    /// The policy ran in shadow mode: the keys were left as they were.
    pub shadowed: bool,
    pub keys: Vec<KeyRestriction>,
}

pub(crate) fn vendor_error(e: VendorError) -> RegistryError {
    match e {
        VendorError::WrongStatus { .. } => RegistryError::VendorState(e.to_string()),
        VendorError::NotReady(m) => RegistryError::VendorState(m),
        VendorError::SameOperator(m) => RegistryError::Forbidden(m),
        VendorError::Invalid(v) => RegistryError::Validation(v),
    }
}

pub(crate) fn load_vendor(tx: &mut dyn WriteTx, id: &VendorId) -> Result<Vendor, RegistryError> {
    tx.vendor(id)?.ok_or_else(|| RegistryError::NotFound { what: "vendor", id: id.to_string() })
}

fn rfc3339(t: Option<OffsetDateTime>) -> Option<String> {
    t.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
}

/// Writes the vendor and its entry.
fn record(
    tx: &mut dyn WriteTx,
    actor: Actor,
    vendor: &Vendor,
    action: &str,
    reason: String,
    details: serde_json::Value,
) -> Result<(), RegistryError> {
    tx.put_vendor(vendor)?;
    tx.append_audit(AuditDraft {
        actor,
        action: action.into(),
        target: vendor.vendor_id.to_string(),
        reason,
        policy_version: None,
        details,
    })?;
    Ok(())
}

/// Restricts every live key of `vendor` as `policy` says for its new status (lapsed or
/// suspended), queues each owner's notice, and records the vendor with one entry summing up
/// what was done; each changed key has its own entry.
pub(crate) fn restrict_keys(
    tx: &mut dyn WriteTx,
    actor: Actor,
    vendor: &Vendor,
    entry: &str,
    reason: String,
    policy: &ResponsePolicy,
) -> Result<VendorChange, RegistryError> {
    let now = tx.now();
    let action = match vendor.status {
        VendorStatus::Suspended => policy.vendors.on_suspend,
        _ => policy.vendors.on_lapse,
    };
    let shadowed = policy.mode == Mode::Shadow;
    let by = actor.label();
    let mut keys = Vec::new();
    for mut key in tx.vendor_keys(&vendor.vendor_id)? {
        if !key.is_live(now) {
            continue;
        }
        if shadowed {
            keys.push(KeyRestriction {
                access_key: key.access_key.clone(),
                account_id: key.account_id.to_string(),
                change: None,
                notice_id: None,
            });
            continue;
        }
        let key_reason = format!("vendor {} is {}: {reason}", vendor.vendor_id, vendor.status);
        let change = apply(&mut key, action, &key_reason, &by, now)?;
        let notice = Notice::vendor(
            new_id("notice"),
            &vendor.vendor_id,
            &vendor.legal_name,
            vendor.status,
            action,
            &key.account_id,
            &key.access_key,
            now,
        );
        tx.put_notice(&notice)?;
        if let Some(change) = &change {
            let about = ("vendor_id", vendor.vendor_id.as_str());
            record_key_change(tx, actor.clone(), &key, change, key_reason, &policy.version, about)?;
        }
        keys.push(KeyRestriction {
            access_key: key.access_key.clone(),
            account_id: key.account_id.to_string(),
            change: change.map(|c| c.describe()),
            notice_id: Some(notice.notice_id),
        });
    }
    tx.put_vendor(vendor)?;
    tx.append_audit(AuditDraft {
        actor,
        action: entry.into(),
        target: vendor.vendor_id.to_string(),
        reason,
        policy_version: Some(policy.version.clone()),
        details: json!({
            "status": vendor.status, "action": action, "shadowed": shadowed,
            "recertification_due": rfc3339(vendor.recertification_due),
            "keys": keys.iter().map(|k| json!({
                "key_id": k.access_key, "account_id": k.account_id, "change": k.change, "notice": k.notice_id,
            })).collect::<Vec<_>>(),
        }),
    })?;
    Ok(VendorChange { vendor: vendor.clone(), action: Some(action), shadowed, keys })
}

/// Registers a vendor's application within a transaction, with its entry.
pub(crate) fn apply_in(tx: &mut dyn WriteTx, actor: Actor, new: NewVendor) -> Result<Vendor, RegistryError> {
    if tx.vendor(&new.vendor_id)?.is_some() {
        return Err(RegistryError::Conflict { what: "vendor", id: new.vendor_id.to_string() });
    }
    let vendor = Vendor::apply(new.vendor_id, new.legal_name, new.egress_cidrs, &actor.label(), tx.now())?;
    let details = json!({ "legal_name": vendor.legal_name, "egress_cidrs": vendor.egress_cidrs });
    record(tx, actor, &vendor, "vendor.apply", new.reason, details)?;
    Ok(vendor)
}

impl Registry {
    pub async fn apply_vendor(&self, actor: Actor, new: NewVendor) -> Result<Vendor, RegistryError> {
        check_reason(&new.reason)?;
        let vendor = self.transact(move |tx| apply_in(tx, actor, new)).await?;
        self.publish_vendor(&vendor.vendor_id);
        Ok(vendor)
    }

    pub async fn attest_vendor(
        &self,
        actor: Actor,
        id: VendorId,
        input: AttestationInput,
    ) -> Result<Vendor, RegistryError> {
        check_reason(&input.reason)?;
        self.transact(move |tx| {
            let mut vendor = load_vendor(tx, &id)?;
            vendor.attest(input.answers, input.attested_at, &actor.label(), tx.now())?;
            let details = json!({ "attestation": vendor.attestation });
            record(tx, actor, &vendor, "vendor.attest", input.reason, details)?;
            Ok(vendor)
        })
        .await
    }

    pub async fn record_vendor_due_diligence(
        &self,
        actor: Actor,
        id: VendorId,
        input: DueDiligenceInput,
    ) -> Result<Vendor, RegistryError> {
        check_reason(&input.reason)?;
        self.transact(move |tx| {
            let mut vendor = load_vendor(tx, &id)?;
            let by = actor.label();
            vendor.record_due_diligence(input.outcome, input.document_ref, input.notes, &by, tx.now())?;
            let details = json!({ "due_diligence": vendor.due_diligence });
            record(tx, actor, &vendor, "vendor.due_diligence", input.reason, details)?;
            Ok(vendor)
        })
        .await
    }

    /// The first approval (`recertify: false`) or a recertification. The approver may be
    /// neither who recorded the due diligence or reviewed the attestation, nor in a chain of
    /// creation with them.
    pub async fn approve_vendor(
        &self,
        actor: Actor,
        id: VendorId,
        input: ApprovalInput,
        recertify: bool,
    ) -> Result<Vendor, RegistryError> {
        check_reason(&input.reason)?;
        if !recertify && input.egress_cidrs.is_some() {
            return Err(ValidationError::new(
                "egress_cidrs",
                "an approval takes the egress registered with the application; change it on a recertification",
            )
            .into());
        }
        let vendor = self
            .transact(move |tx| {
                let now = tx.now();
                let mut vendor = load_vendor(tx, &id)?;
                let approver = match &actor {
                    Actor::Operator { id, .. } => id.clone(),
                    other => {
                        return Err(RegistryError::Forbidden(format!("{} cannot approve vendors", other.label())))
                    }
                };
                // Four eyes means two people: nobody who created, or was created by, whoever
                // recorded the checks.
                let checked_by: Vec<String> = [
                    vendor.due_diligence.as_ref().map(|d| d.recorded_by.clone()),
                    vendor.attestation.as_ref().map(|a| a.reviewed_by.clone()),
                ]
                .into_iter()
                .flatten()
                .collect();
                for other in &checked_by {
                    if other != &approver && crate::operators::related(tx, &approver, other)? {
                        return Err(RegistryError::Forbidden(format!(
                            "{approver} may not approve checks {other} recorded: one of them created the other; another operator must"
                        )));
                    }
                }
                let before = vendor.effective_status(now);
                let egress_before = vendor.egress_cidrs.clone();
                let due = input.recertification_due;
                let done = if recertify {
                    vendor.recertify(&approver, due, input.egress_cidrs, &input.reason, now)
                } else {
                    vendor.approve(&approver, due, &input.reason, now)
                };
                done.map_err(vendor_error)?;
                let mut details = json!({
                    "from": before, "recertification_due": rfc3339(vendor.recertification_due),
                    "due_diligence": vendor.due_diligence.as_ref().map(|d| &d.document_ref),
                    "checked_by": checked_by,
                });
                if vendor.egress_cidrs != egress_before {
                    details["egress_cidrs"] = json!({ "from": egress_before, "to": vendor.egress_cidrs });
                }
                let action = if recertify { "vendor.recertify" } else { "vendor.approve" };
                record(tx, actor, &vendor, action, input.reason, details)?;
                Ok(vendor)
            })
            .await?;
        self.publish_vendor(&vendor.vendor_id);
        Ok(vendor)
    }

    /// Suspends a vendor; its live keys are restricted as `policy` says, in the same
    /// transaction.
    pub async fn suspend_vendor(
        &self,
        actor: Actor,
        id: VendorId,
        reason: String,
        policy: Arc<ResponsePolicy>,
    ) -> Result<VendorChange, RegistryError> {
        check_reason(&reason)?;
        let change = self
            .transact(move |tx| {
                let now = tx.now();
                let mut vendor = load_vendor(tx, &id)?;
                vendor.suspend(&reason, &actor.label(), now).map_err(vendor_error)?;
                restrict_keys(tx, actor, &vendor, "vendor.suspend", reason, &policy)
            })
            .await?;
        self.after_vendor_change(&change);
        Ok(change)
    }

    /// The sweep: records the lapse of every vendor past its recertification date, each in its
    /// own transaction with its keys' restrictions.
    pub async fn lapse_vendors(&self, policy: Arc<ResponsePolicy>) -> Result<Vec<VendorChange>, RegistryError> {
        let now = self.now();
        let due: Vec<VendorId> = self
            .store
            .vendors(&VendorFilter { status: Some(VendorStatus::Approved), limit: 10_000, ..VendorFilter::default() })?
            .into_iter()
            .filter(|v| v.effective_status(now) == VendorStatus::Lapsed)
            .map(|v| v.vendor_id)
            .collect();
        let mut changes = Vec::new();
        for id in due {
            let policy = policy.clone();
            let change = self
                .transact(move |tx| {
                    let now = tx.now();
                    let mut vendor = load_vendor(tx, &id)?;
                    if !vendor.record_lapse(now) {
                        return Ok(None);
                    }
                    let due = rfc3339(vendor.recertification_due).unwrap_or_default();
                    let reason = format!("recertification was due {due}");
                    let actor = Actor::System { component: "vendor-sweep".into() };
                    restrict_keys(tx, actor, &vendor, "vendor.lapse", reason, &policy).map(Some)
                })
                .await?;
            if let Some(change) = change {
                self.after_vendor_change(&change);
                changes.push(change);
            }
        }
        Ok(changes)
    }

    /// Tells the observers: the keys first (the gateway refuses what they lost), then the vendor.
    fn after_vendor_change(&self, change: &VendorChange) {
        let keys: Vec<AccessKey> =
            change.keys.iter().filter(|k| k.change.is_some()).map(|k| k.access_key.clone()).collect();
        self.publish(&keys);
        self.publish_vendor(&change.vendor.vendor_id);
    }

    pub fn vendor(&self, id: &VendorId) -> Result<Vendor, RegistryError> {
        self.store.vendor(id)?.ok_or_else(|| RegistryError::NotFound { what: "vendor", id: id.to_string() })
    }

    pub fn vendors(&self, mut filter: VendorFilter) -> Result<Vec<Vendor>, RegistryError> {
        filter.limit = filter.limit.clamp(1, 1000);
        Ok(self.store.vendors(&filter)?)
    }

    /// The vendor and every key that names it (revoked ones too: exposure is history as well).
    pub fn vendor_keys(&self, id: &VendorId) -> Result<(Vendor, Vec<ApiKey>), RegistryError> {
        let vendor = self.vendor(id)?;
        let mut keys = Vec::new();
        let mut after = None;
        loop {
            let filter =
                KeyFilter { vendor_id: Some(id.clone()), after: after.clone(), limit: 1000, ..KeyFilter::default() };
            let page = self.store.keys(&filter, self.now())?;
            let Some(last) = page.last() else { break };
            after = Some(last.access_key.clone());
            let full = page.len() == 1000;
            keys.extend(page);
            if !full {
                break;
            }
        }
        Ok((vendor, keys))
    }
}
