//! keysentinel's domain: the plain types an exchange's API-key inventory is made of, and the
//! decisions taken on them (key policy, lifecycle transitions), and the registry of who stands
//! behind them (approved vendors, counterparties).
//!
//! Nothing here performs I/O or reads the wall clock: every decision that depends on time takes
//! `now` as an argument, so the same inputs always give the same answer (and replay is exact).

pub mod account;
pub mod allowlist;
pub mod claim;
pub mod counterparty;
pub mod dated;
pub mod error;
pub mod identity;
pub mod ids;
pub mod indicator;
pub mod key;
pub mod notice;
pub mod operator;
pub mod outcome;
pub mod policy;
pub mod purpose;
pub mod report;
pub mod response;
pub mod scheme;
pub mod scope;
pub mod vendor;

pub use account::{Account, CountryCode, Segment, Verification};
pub use allowlist::IpAllowlist;
pub use claim::{ClaimError, KeyClaim};
pub use counterparty::{Counterparty, CounterpartyKind, Ended, Principal, Symbol};
pub use error::ValidationError;
pub use identity::{OperatedBy, OperatorKind, Party, PartyEnded, PartyKind};
pub use ids::{AccessKey, AccountId, CounterpartyId, OperatorId, PartyId, VendorId};
pub use indicator::{Indicator, Kind};
pub use key::{ApiKey, GrantStatus, KeyAlgorithm, KeyOrigin, KeyStatus, SensitiveGrant, TransitionError};
pub use notice::{Delivery, Notice, NoticeKind};
pub use operator::{Operator, Permission, Role};
pub use policy::{KeyPolicy, PolicyViolation, Rule, SegmentPolicy};
pub use purpose::{
    Approval, Declared, KeyApproval, PurposeName, PurposeRule, Requirement, TermsAcceptance, TermsChannel,
};
pub use report::{Jurisdiction, ReportAssessment, ReportDraft, ReportStatus, ReportStep, ReportingConfig};
pub use response::{
    Action, AnswerChannel, Case, CaseCommand, CaseError, CaseEvent, CaseStatus, Escalation, Finding, Held, KeyBaseline,
    Mode, Observation, OwnerAnswer, Plan, Reinstatement, ReinstatementStatus, RelatedAccount, Resolution,
    ResponsePolicy, Share, Signoff, Stage, Suspicion, VendorRules,
};
pub use scheme::SigningScheme;
pub use scope::{Scope, ScopeSet};
pub use vendor::{
    Attestation, DueDiligence, DueDiligenceOutcome, EgressRanges, Questionnaire, Vendor, VendorError, VendorStatus,
};

/// Timestamps are UTC instants; they serialise as RFC 3339.
pub type Timestamp = time::OffsetDateTime;

/// Where domain callers get "now" from. Implementations live at the edges (the system clock in
/// the server, an event-time clock in replay); the domain itself only ever receives a value.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}
