//! Operators of keysentinel itself, their roles and what each role may do (least privilege).

use crate::error::ValidationError;
use crate::ids::OperatorId;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages operators, accounts and keys.
    Admin,
    /// Investigates and contains: reads everything, suspends, resumes and revokes keys.
    Analyst,
    /// Approves sensitive grants requested by someone else.
    Approver,
    /// Reads everything, changes nothing.
    Auditor,
    /// An API gateway: may only call verify.
    Gateway,
    /// The compliance (reporting) officer: assesses, decides and files suspicious-matter
    /// reports, which no other role sees but the auditor.
    Compliance,
    /// The exchange's own customer app, redeeming a reinstated key's claim for its owner with
    /// the owner's one-time code; it can do nothing else (it reads nothing either).
    CustomerChannel,
}

/// Everything the admin API lets an operator do, grouped by risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    ReadInventory,
    ManageAccounts,
    IssueKeys,
    ContainKeys,
    RevokeKeys,
    RequestGrant,
    ApproveGrant,
    ReadAudit,
    ManageOperators,
    Verify,
    /// Send activity and registry records to detection (`POST /v1/events`).
    IngestEvents,
    /// Read suspicious-matter report assessments and drafts.
    ReadReports,
    /// Assess, decide and file suspicious-matter reports.
    ReportMatters,
    /// Register vendors, record their attestation and due diligence, suspend them.
    ManageVendors,
    /// Approve and recertify vendors (never on a due diligence or attestation one recorded).
    ApproveVendors,
    /// Record, change and end counterparties (mandates, broker arrangements, affiliates,
    /// sub-accounts).
    ManageCounterparties,
    /// Approve a key its purpose issued pending (never one the approver asked for).
    ApproveKeys,
    /// Redeem a reinstated key's one-time claim for its owner (the customer channel only).
    RedeemClaims,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::Admin,
        Role::Analyst,
        Role::Approver,
        Role::Auditor,
        Role::Gateway,
        Role::Compliance,
        Role::CustomerChannel,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Analyst => "analyst",
            Role::Approver => "approver",
            Role::Auditor => "auditor",
            Role::Gateway => "gateway",
            Role::Compliance => "compliance",
            Role::CustomerChannel => "customer_channel",
        }
    }

    /// Whether the role takes part in a four-eyes check (approves grants, files reports,
    /// manages operators), so that granting it needs a second admin (`operator.approve`):
    /// otherwise one admin could mint the second pair of eyes it needs.
    pub fn needs_second_approval(self) -> bool {
        matches!(self, Role::Admin | Role::Approver | Role::Compliance)
    }

    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            // Reporting is kept to the compliance officer (and read by the auditor): who else
            // knows a report is considered, the more likely the owner is tipped off.
            // Approving a vendor is compliance's: the admin who registers it and records its
            // due diligence is the first pair of eyes, not the second.
            // Approving a pending key is compliance's: the admin who issues it is the first pair.
            // Redeeming a claim is the owner's, through the customer channel: an operator who
            // could redeem it could take the owner's new key.
            Role::Admin => !matches!(
                permission,
                ApproveGrant | Verify | ReadReports | ReportMatters | ApproveVendors | ApproveKeys | RedeemClaims
            ),
            Role::CustomerChannel => matches!(permission, RedeemClaims),
            Role::Analyst => matches!(permission, ReadInventory | ContainKeys | RevokeKeys | ReadAudit),
            Role::Approver => matches!(permission, ReadInventory | ApproveGrant),
            Role::Auditor => matches!(permission, ReadInventory | ReadAudit | ReadReports),
            Role::Gateway => matches!(permission, Verify | IngestEvents),
            Role::Compliance => matches!(
                permission,
                ReadInventory
                    | ReadAudit
                    | ReadReports
                    | ReportMatters
                    | ManageVendors
                    | ApproveVendors
                    | ManageCounterparties
                    | ApproveKeys
            ),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, ValidationError> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| {
            ValidationError::new(
                "role",
                format!(
                    "unknown role {s:?}; expected admin, analyst, approver, auditor, gateway, compliance or customer_channel"
                ),
            )
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Operator {
    pub operator_id: OperatorId,
    pub role: Role,
    /// Who this is ("Kim Minji, compliance" or "gateway-seoul-1").
    pub description: String,
    pub created_by: String,
    #[serde(with = "created_at")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: time::OffsetDateTime,
    pub disabled: bool,
    /// Set while the operator's role awaits a second admin's approval
    /// ([`Role::needs_second_approval`]); a pending operator's token authenticates nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending_approval: bool,
    /// The admin who approved the role, when it needed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
}

/// RFC 3339 as `openapi.json` declares. Rows written before 0.x stored the time in `time`'s
/// default form (an array of its parts), and are still read.
mod created_at {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;

    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        time::serde::rfc3339::serialize(t, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(#[serde(with = "time::serde::rfc3339")] OffsetDateTime),
            Legacy(OffsetDateTime),
        }
        Ok(match Either::deserialize(d)? {
            Either::Text(t) | Either::Legacy(t) => t,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_privilege_matrix() {
        use Permission::*;
        assert!(Role::Admin.allows(IssueKeys) && Role::Admin.allows(ManageOperators));
        assert!(!Role::Admin.allows(ApproveGrant), "separation of duties: admins request, approvers approve");
        assert!(Role::Analyst.allows(RevokeKeys) && !Role::Analyst.allows(IssueKeys));
        assert!(Role::Approver.allows(ApproveGrant) && !Role::Approver.allows(ContainKeys));
        for p in
            [ManageAccounts, IssueKeys, ContainKeys, RevokeKeys, RequestGrant, ApproveGrant, ManageOperators, Verify]
        {
            assert!(!Role::Auditor.allows(p), "auditors are read-only");
        }
        for p in [ReadInventory, ReadAudit, IssueKeys, ManageOperators] {
            assert!(!Role::Gateway.allows(p), "gateways may only verify");
        }
        assert!(Role::Gateway.allows(Verify));
        assert!("root".parse::<Role>().is_err());
        // Vendors: an admin registers and checks them, compliance approves; nobody else.
        assert!(Role::Admin.allows(ManageVendors) && !Role::Admin.allows(ApproveVendors));
        assert!(Role::Compliance.allows(ApproveVendors) && Role::Compliance.allows(ManageVendors));
        for role in [Role::Analyst, Role::Approver, Role::Auditor, Role::Gateway] {
            for p in [ManageVendors, ApproveVendors, ManageCounterparties, ApproveKeys] {
                assert!(!role.allows(p), "{role} {p:?}");
            }
        }
        // Keys a purpose issues pending: an admin issues them, compliance approves them.
        assert!(Role::Compliance.allows(ApproveKeys) && !Role::Compliance.allows(IssueKeys));
        assert!(!Role::Admin.allows(ApproveKeys));
        // The customer channel redeems claims and nothing else; nobody else redeems them.
        for role in Role::ALL {
            assert_eq!(role.allows(RedeemClaims), role == Role::CustomerChannel, "{role}");
        }
        for p in [ReadInventory, ReadAudit, IssueKeys, Verify, ManageOperators, ApproveGrant] {
            assert!(!Role::CustomerChannel.allows(p), "{p:?}");
        }
    }
}
