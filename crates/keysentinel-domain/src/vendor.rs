//! Approved third-party vendors (trading bots, copy-trading platforms, portfolio tools): who
//! they are, what was checked before they were approved, the addresses they connect from, and
//! until when their approval holds.
//!
//! Status moves only along these edges (anything else is a [`VendorError`]):
//!
//! ```text
//!   applied ──approve──▶ approved ──suspend──▶ suspended
//!                          │   ▲                  │
//!     lapse (time: recertification due)  recertify│
//!                          ▼   │                  │
//!                        lapsed ──recertify──▶ approved ◀┘
//! ```
//!
//! Approval and recertification follow the four-eyes rule: the operator who approves is not the
//! one who recorded the due diligence or reviewed the attestation (nor one of their chain of
//! creation, which the registry checks), and the due diligence must be newer than the last
//! approval, so that a recertification is a fresh look and not a date pushed forward.

use crate::account::{check_text, CountryCode};
use crate::error::ValidationError;
use crate::ids::VendorId;
use crate::Timestamp;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;
use time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VendorStatus {
    /// Registered, not yet approved: keys may not name it.
    Applied,
    /// Approved until its recertification date: keys may name it, its egress is sanctioned.
    Approved,
    /// Taken out of service by an operator: its keys are restricted as the response policy says.
    Suspended,
    /// Its recertification date passed: its keys are restricted as the response policy says.
    Lapsed,
}

impl VendorStatus {
    pub const ALL: [VendorStatus; 4] =
        [VendorStatus::Applied, VendorStatus::Approved, VendorStatus::Suspended, VendorStatus::Lapsed];

    pub fn as_str(self) -> &'static str {
        match self {
            VendorStatus::Applied => "applied",
            VendorStatus::Approved => "approved",
            VendorStatus::Suspended => "suspended",
            VendorStatus::Lapsed => "lapsed",
        }
    }
}

impl fmt::Display for VendorStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for VendorStatus {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, ValidationError> {
        VendorStatus::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| {
            ValidationError::new(
                "status",
                format!("unknown vendor status {s:?}; expected applied, approved, suspended or lapsed"),
            )
        })
    }
}

/// The widest egress network a vendor may register. A vendor's egress is its own servers' (NAT
/// gateways, fixed cloud addresses): a wider range would sanction the cloud's other tenants too,
/// since every address in it vouches for every key that names the vendor.
pub const MAX_EGRESS_PREFIX_V4: u8 = 24;
pub const MAX_EGRESS_PREFIX_V6: u8 = 48;
/// Egress networks one vendor may register.
pub const MAX_EGRESS_RANGES: usize = 64;

/// A vendor's egress networks: public, each at most a /24 (IPv4) or /48 (IPv6).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
#[schema(value_type = Vec<String>, example = json!(["198.51.100.0/24", "2001:db8:7::/48"]))]
pub struct EgressRanges(Vec<IpNet>);

/// Why a network is not a vendor's own: the whole internet, someone else's, or not public.
fn not_egress(net: &IpNet) -> Option<String> {
    let (prefix, max) = match net {
        IpNet::V4(n) => (n.prefix_len(), MAX_EGRESS_PREFIX_V4),
        IpNet::V6(n) => (n.prefix_len(), MAX_EGRESS_PREFIX_V6),
    };
    if prefix == 0 {
        return Some("is the whole internet".into());
    }
    let addr = net.network();
    let private = match addr {
        std::net::IpAddr::V4(a) => {
            a.is_unspecified() || a.is_loopback() || a.is_private() || a.is_link_local() || a.is_multicast()
        }
        std::net::IpAddr::V6(a) => {
            let first = a.segments()[0];
            a.is_unspecified()
                || a.is_loopback()
                || a.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link local
                || a.to_ipv4_mapped().is_some()
        }
    };
    if private {
        return Some("is not a public network (private, loopback, link-local, multicast or mapped)".into());
    }
    if prefix < max {
        return Some(format!(
            "is too broad: at most /{MAX_EGRESS_PREFIX_V4} (IPv4) or /{MAX_EGRESS_PREFIX_V6} (IPv6) per range"
        ));
    }
    None
}

impl EgressRanges {
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, ValidationError> {
        if entries.len() > MAX_EGRESS_RANGES {
            return Err(ValidationError::new("egress_cidrs", format!("at most {MAX_EGRESS_RANGES} ranges")));
        }
        let mut nets: Vec<IpNet> = Vec::with_capacity(entries.len());
        for raw in entries {
            let raw = raw.as_ref();
            let text = raw.trim();
            let net = if text.contains('/') {
                let net: IpNet = text.parse().map_err(|_| {
                    ValidationError::new("egress_cidrs", format!("{raw:?} is not a CIDR (e.g. 198.51.100.0/24)"))
                })?;
                if net.network() != net.addr() {
                    return Err(ValidationError::new(
                        "egress_cidrs",
                        format!("{raw:?} has host bits set; did you mean {}?", net.trunc()),
                    ));
                }
                net
            } else {
                let addr: std::net::IpAddr = text.parse().map_err(|_| {
                    ValidationError::new("egress_cidrs", format!("{raw:?} is not an IP address or CIDR"))
                })?;
                IpNet::from(addr)
            };
            if let Some(why) = not_egress(&net) {
                return Err(ValidationError::new(
                    "egress_cidrs",
                    format!("{raw:?} {why}; a vendor's egress is its own servers' addresses"),
                ));
            }
            if nets.contains(&net) {
                return Err(ValidationError::new("egress_cidrs", format!("{net} is listed twice")));
            }
            nets.push(net);
        }
        Ok(Self(nets))
    }

    pub fn networks(&self) -> &[IpNet] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TryFrom<Vec<String>> for EgressRanges {
    type Error = ValidationError;
    fn try_from(entries: Vec<String>) -> Result<Self, ValidationError> {
        Self::parse(&entries)
    }
}

impl From<EgressRanges> for Vec<String> {
    fn from(r: EgressRanges) -> Vec<String> {
        r.0.iter().map(ToString::to_string).collect()
    }
}

/// The vendor's answers to the exchange's questionnaire, as structured fields (each is asked of
/// every vendor; none may be left out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Questionnaire {
    /// The vendor stores its customers' API secrets (a hosted bot) rather than running where the
    /// customer does.
    pub stores_customer_secrets: bool,
    /// Those secrets are encrypted at rest (false when it stores none).
    pub secrets_encrypted_at_rest: bool,
    /// Requests with customers' keys come only from the registered egress.
    pub uses_registered_egress_only: bool,
    /// Customers' keys or their use are passed to anyone else (sub-processors, signal sellers).
    pub shares_keys_with_third_parties: bool,
    /// The vendor asks customers for keys that can withdraw or transfer.
    pub requests_withdrawal_rights: bool,
    /// Where the vendor operates (ISO 3166-1 alpha-2).
    pub jurisdictions: Vec<CountryCode>,
    /// Who the exchange calls about an incident (a mailbox or a phone number).
    pub incident_contact: String,
    /// A security certification held, if any ("ISO/IEC 27001:2022").
    #[serde(default)]
    pub security_certification: Option<String>,
}

impl Questionnaire {
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.incident_contact.trim().is_empty() {
            return Err(ValidationError::new("answers.incident_contact", "must not be empty"));
        }
        check_text("answers.incident_contact", &self.incident_contact, 200)?;
        if let Some(c) = &self.security_certification {
            check_text("answers.security_certification", c, 200)?;
        }
        if self.jurisdictions.is_empty() || self.jurisdictions.len() > 50 {
            return Err(ValidationError::new("answers.jurisdictions", "list 1 to 50 countries"));
        }
        if self.secrets_encrypted_at_rest && !self.stores_customer_secrets {
            return Err(ValidationError::new(
                "answers.secrets_encrypted_at_rest",
                "true only when stores_customer_secrets is true",
            ));
        }
        Ok(())
    }

    /// Answers that rule an approval out whatever the due diligence found: third-party tools
    /// never withdraw, and a customer's key goes to no one else.
    pub fn disqualifies(&self) -> Option<&'static str> {
        if self.requests_withdrawal_rights {
            return Some("the vendor asks for withdrawal rights, which third-party tool keys never hold");
        }
        if self.shares_keys_with_third_parties {
            return Some("the vendor passes customers' keys to third parties");
        }
        if self.stores_customer_secrets && !self.secrets_encrypted_at_rest {
            return Some("the vendor stores customers' secrets unencrypted");
        }
        None
    }
}

/// The vendor's attestation: its answers, when it gave them, and who reviewed them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attestation {
    pub answers: Questionnaire,
    /// When the vendor signed the attestation.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub attested_at: Timestamp,
    /// The operator who reviewed it.
    pub reviewed_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub reviewed_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DueDiligenceOutcome {
    Satisfactory,
    /// Satisfactory on conditions, which the record's notes state.
    Conditional,
    Unsatisfactory,
}

impl DueDiligenceOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            DueDiligenceOutcome::Satisfactory => "satisfactory",
            DueDiligenceOutcome::Conditional => "conditional",
            DueDiligenceOutcome::Unsatisfactory => "unsatisfactory",
        }
    }
}

/// What the exchange checked about the vendor: by whom, when, the outcome and where the
/// documents are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DueDiligence {
    /// The operator who recorded it (and answers for it).
    pub recorded_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub recorded_at: Timestamp,
    pub outcome: DueDiligenceOutcome,
    /// Where the documents are kept ("DMS-2026-0412").
    pub document_ref: String,
    /// Findings and conditions.
    #[serde(default)]
    pub notes: String,
}

/// The longest an approval may run before it must be recertified.
pub const MAX_RECERTIFICATION_DAYS: i64 = 2 * 366;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Vendor {
    pub vendor_id: VendorId,
    pub legal_name: String,
    pub status: VendorStatus,
    /// The networks its requests come from; sanctioned for its customers' keys while approved.
    pub egress_cidrs: EgressRanges,
    pub attestation: Option<Attestation>,
    pub due_diligence: Option<DueDiligence>,
    /// When the approval lapses unless recertified before.
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schema(value_type = Option<String>)]
    pub recertification_due: Option<Timestamp>,
    pub approved_by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schema(value_type = Option<String>)]
    pub approved_at: Option<Timestamp>,
    pub status_reason: String,
    pub status_changed_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub status_changed_at: Timestamp,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VendorError {
    #[error("vendor is {actual}; {action} needs a vendor that is {needed}")]
    WrongStatus { action: &'static str, actual: VendorStatus, needed: &'static str },
    #[error("{0}")]
    NotReady(String),
    #[error("four eyes: {0}")]
    SameOperator(String),
    /// An input of the approval is wrong (the recertification date).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

impl Vendor {
    /// A new application.
    pub fn apply(
        vendor_id: VendorId,
        legal_name: String,
        egress_cidrs: EgressRanges,
        by: &str,
        now: Timestamp,
    ) -> Result<Self, ValidationError> {
        if legal_name.trim().is_empty() {
            return Err(ValidationError::new("legal_name", "must not be empty"));
        }
        check_text("legal_name", &legal_name, 200)?;
        Ok(Vendor {
            vendor_id,
            legal_name,
            status: VendorStatus::Applied,
            egress_cidrs,
            attestation: None,
            due_diligence: None,
            recertification_due: None,
            approved_by: None,
            approved_at: None,
            status_reason: "applied".into(),
            status_changed_by: by.into(),
            status_changed_at: now,
            created_by: by.into(),
            created_at: now,
        })
    }

    /// The status as of `now`: an approval past its recertification date has lapsed even
    /// before the sweep records it, so key creation never depends on the sweep having run.
    pub fn effective_status(&self, now: Timestamp) -> VendorStatus {
        match (self.status, self.recertification_due) {
            (VendorStatus::Approved, Some(due)) if now >= due => VendorStatus::Lapsed,
            (status, _) => status,
        }
    }

    /// Whether keys may name the vendor and its egress is sanctioned at `now`.
    pub fn is_approved(&self, now: Timestamp) -> bool {
        self.effective_status(now) == VendorStatus::Approved
    }

    fn set_status(&mut self, status: VendorStatus, reason: &str, by: &str, now: Timestamp) {
        self.status = status;
        self.status_reason = reason.into();
        self.status_changed_by = by.into();
        self.status_changed_at = now;
    }

    /// Records the vendor's attestation, reviewed by `by`, in any status: a fresh attestation
    /// may accompany a recertification.
    pub fn attest(
        &mut self,
        answers: Questionnaire,
        attested_at: Timestamp,
        by: &str,
        now: Timestamp,
    ) -> Result<(), ValidationError> {
        answers.validate()?;
        if attested_at > now {
            return Err(ValidationError::new("attested_at", "is in the future"));
        }
        self.attestation = Some(Attestation { answers, attested_at, reviewed_by: by.into(), reviewed_at: now });
        Ok(())
    }

    /// Records a due diligence by `by`.
    pub fn record_due_diligence(
        &mut self,
        outcome: DueDiligenceOutcome,
        document_ref: String,
        notes: String,
        by: &str,
        now: Timestamp,
    ) -> Result<(), ValidationError> {
        if document_ref.trim().is_empty() {
            return Err(ValidationError::new("document_ref", "must name where the due diligence's documents are"));
        }
        check_text("document_ref", &document_ref, 200)?;
        check_text("notes", &notes, 4000)?;
        self.due_diligence =
            Some(DueDiligence { recorded_by: by.into(), recorded_at: now, outcome, document_ref, notes });
        Ok(())
    }

    /// What an approval needs besides the status: an attestation that does not disqualify, a
    /// due diligence that is not unsatisfactory (and newer than the last approval), an approver
    /// other than whoever recorded either, and a recertification date ahead.
    fn check_approval(
        &self,
        approver: &str,
        recertification_due: Timestamp,
        now: Timestamp,
    ) -> Result<(), VendorError> {
        let attestation = self.attestation.as_ref().ok_or_else(|| {
            VendorError::NotReady("no attestation is recorded; record the vendor's answers first".into())
        })?;
        if let Some(why) = attestation.answers.disqualifies() {
            return Err(VendorError::NotReady(format!("the attestation rules approval out: {why}")));
        }
        let dd = self
            .due_diligence
            .as_ref()
            .ok_or_else(|| VendorError::NotReady("no due diligence is recorded; record it first".into()))?;
        if dd.outcome == DueDiligenceOutcome::Unsatisfactory {
            return Err(VendorError::NotReady(format!("the due diligence ({}) was unsatisfactory", dd.document_ref)));
        }
        if let Some(last) = self.approved_at {
            if dd.recorded_at <= last {
                return Err(VendorError::NotReady(
                    "the due diligence predates the last approval; a recertification needs a new one".into(),
                ));
            }
        }
        if dd.recorded_by == approver {
            return Err(VendorError::SameOperator(format!(
                "{approver} recorded the due diligence and may not also approve; another operator must"
            )));
        }
        if attestation.reviewed_by == approver {
            return Err(VendorError::SameOperator(format!(
                "{approver} reviewed the attestation and may not also approve; another operator must"
            )));
        }
        if recertification_due <= now {
            return Err(ValidationError::new("recertification_due", "must be in the future").into());
        }
        if recertification_due > now + Duration::days(MAX_RECERTIFICATION_DAYS) {
            return Err(ValidationError::new(
                "recertification_due",
                format!("must be within {MAX_RECERTIFICATION_DAYS} days (a recertification at least every two years)"),
            )
            .into());
        }
        Ok(())
    }

    /// The first approval of an application.
    pub fn approve(
        &mut self,
        approver: &str,
        recertification_due: Timestamp,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), VendorError> {
        if self.status != VendorStatus::Applied {
            return Err(VendorError::WrongStatus {
                action: "approval",
                actual: self.effective_status(now),
                needed: "applied (an approved, suspended or lapsed vendor is recertified instead)",
            });
        }
        self.check_approval(approver, recertification_due, now)?;
        self.grant(approver, recertification_due, reason, now);
        Ok(())
    }

    /// A recertification: the approval renewed on a fresh due diligence, which is also the only
    /// way back for a suspended or lapsed vendor. Egress may change with it.
    pub fn recertify(
        &mut self,
        approver: &str,
        recertification_due: Timestamp,
        egress: Option<EgressRanges>,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), VendorError> {
        if self.status == VendorStatus::Applied {
            return Err(VendorError::WrongStatus {
                action: "recertification",
                actual: self.status,
                needed: "approved, suspended or lapsed (an application is approved instead)",
            });
        }
        self.check_approval(approver, recertification_due, now)?;
        if let Some(egress) = egress {
            self.egress_cidrs = egress;
        }
        self.grant(approver, recertification_due, reason, now);
        Ok(())
    }

    fn grant(&mut self, approver: &str, recertification_due: Timestamp, reason: &str, now: Timestamp) {
        self.recertification_due = Some(recertification_due);
        self.approved_by = Some(approver.into());
        self.approved_at = Some(now);
        self.set_status(VendorStatus::Approved, reason, approver, now);
    }

    /// Takes the vendor out of service (approved, or already lapsed).
    pub fn suspend(&mut self, reason: &str, by: &str, now: Timestamp) -> Result<(), VendorError> {
        match self.effective_status(now) {
            VendorStatus::Approved | VendorStatus::Lapsed => {
                self.set_status(VendorStatus::Suspended, reason, by, now);
                Ok(())
            }
            actual => Err(VendorError::WrongStatus { action: "suspension", actual, needed: "approved or lapsed" }),
        }
    }

    /// Records a lapse that has happened (`effective_status` already reports it); false when
    /// there is nothing to record.
    pub fn record_lapse(&mut self, now: Timestamp) -> bool {
        if self.status == VendorStatus::Approved && self.effective_status(now) == VendorStatus::Lapsed {
            let due = self.recertification_due.unwrap_or(now);
            self.set_status(
                VendorStatus::Lapsed,
                "recertification due date passed",
                "system:vendor-sweep",
                due.min(now),
            );
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: Timestamp = datetime!(2026-12-01 00:00 UTC);

    fn answers() -> Questionnaire {
        Questionnaire {
            stores_customer_secrets: true,
            secrets_encrypted_at_rest: true,
            uses_registered_egress_only: true,
            shares_keys_with_third_parties: false,
            requests_withdrawal_rights: false,
            jurisdictions: vec![CountryCode::parse("KR").unwrap_or_else(|e| unreachable!("{e}"))],
            incident_contact: "security@tradebot.example".into(),
            security_certification: None,
        }
    }

    fn vendor() -> Vendor {
        let id = VendorId::parse("tradebot").unwrap_or_else(|e| unreachable!("{e}"));
        let egress = EgressRanges::parse(&["198.51.100.0/24"]).unwrap_or_else(|e| unreachable!("{e}"));
        Vendor::apply(id, "Tradebot Inc.".into(), egress, "alice", T0).unwrap_or_else(|e| unreachable!("{e}"))
    }

    fn message(r: Result<EgressRanges, ValidationError>) -> String {
        r.err().map(|e| e.message).unwrap_or_default()
    }

    #[test]
    fn egress_is_the_vendors_own_public_addresses() {
        assert!(message(EgressRanges::parse(&["0.0.0.0/0"])).contains("whole internet"));
        assert!(message(EgressRanges::parse(&["::/0"])).contains("whole internet"));
        assert!(message(EgressRanges::parse(&["203.0.0.0/16"])).contains("too broad: at most /24"));
        assert!(message(EgressRanges::parse(&["2001:db8::/32"])).contains("/48"));
        assert!(message(EgressRanges::parse(&["10.1.2.0/24"])).contains("not a public network"));
        assert!(message(EgressRanges::parse(&["198.51.100.7/24"])).contains("host bits"));
        assert!(message(EgressRanges::parse(&["198.51.100.0/24", "198.51.100.0/24"])).contains("twice"));
        let ok = EgressRanges::parse(&["198.51.100.0/24", "203.0.113.9", "2001:db8:7::/48"]);
        assert_eq!(ok.map(|r| r.networks().len()), Ok(3));
    }

    #[test]
    fn approval_needs_four_eyes_a_clean_attestation_and_a_date_ahead() {
        let mut v = vendor();
        let due = T0 + Duration::days(365);
        assert!(matches!(v.approve("bob", due, "ok", T0), Err(VendorError::NotReady(_))));
        v.attest(answers(), T0, "alice", T0).unwrap_or_else(|e| unreachable!("{e}"));
        v.record_due_diligence(DueDiligenceOutcome::Satisfactory, "DMS-1".into(), String::new(), "alice", T0)
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert!(matches!(v.approve("alice", due, "ok", T0), Err(VendorError::SameOperator(_))));
        assert!(
            matches!(v.approve("bob", T0, "ok", T0), Err(VendorError::Invalid(ref e)) if e.field == "recertification_due")
        );
        assert!(v.approve("bob", due, "ok", T0).is_ok());
        assert_eq!(v.effective_status(T0), VendorStatus::Approved);
        // A second approval is a recertification.
        assert!(matches!(v.approve("bob", due, "ok", T0), Err(VendorError::WrongStatus { .. })));

        let mut bad = vendor();
        let mut a = answers();
        a.requests_withdrawal_rights = true;
        bad.attest(a, T0, "alice", T0).unwrap_or_else(|e| unreachable!("{e}"));
        bad.record_due_diligence(DueDiligenceOutcome::Satisfactory, "DMS-2".into(), String::new(), "alice", T0)
            .unwrap_or_else(|e| unreachable!("{e}"));
        let e = bad.approve("bob", due, "ok", T0).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("withdrawal rights"), "{e}");
    }

    #[test]
    fn a_lapse_or_suspension_comes_back_only_through_recertification() {
        let mut v = vendor();
        let due = T0 + Duration::days(30);
        v.attest(answers(), T0, "alice", T0).unwrap_or_else(|e| unreachable!("{e}"));
        v.record_due_diligence(DueDiligenceOutcome::Satisfactory, "DMS-1".into(), String::new(), "alice", T0)
            .unwrap_or_else(|e| unreachable!("{e}"));
        v.approve("bob", due, "ok", T0).unwrap_or_else(|e| unreachable!("{e}"));
        let later = due + Duration::seconds(1);
        assert_eq!(v.effective_status(later), VendorStatus::Lapsed, "lapsed before the sweep records it");
        assert!(!v.is_approved(later));
        assert!(v.record_lapse(later));
        assert!(!v.record_lapse(later), "recorded once");
        // The old due diligence does not recertify.
        let next = later + Duration::days(365);
        assert!(matches!(v.recertify("bob", next, None, "ok", later), Err(VendorError::NotReady(_))));
        v.record_due_diligence(
            DueDiligenceOutcome::Conditional,
            "DMS-3".into(),
            "quarterly review".into(),
            "carol",
            later,
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        assert!(v.recertify("bob", next, None, "ok", later).is_ok());
        assert_eq!(v.status, VendorStatus::Approved);
        assert!(v.suspend("breach", "carol", later).is_ok());
        assert!(matches!(v.suspend("again", "carol", later), Err(VendorError::WrongStatus { .. })));
    }
}
