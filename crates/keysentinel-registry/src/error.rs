use keysentinel_domain::{PolicyViolation, TransitionError, ValidationError};
use keysentinel_store::StoreError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RegistryError {
    #[error("invalid input: {0}")]
    Validation(#[from] ValidationError),
    #[error(transparent)]
    Policy(#[from] PolicyViolation),
    #[error("not allowed: {0}")]
    Transition(#[from] TransitionError),
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error("{what} {id} already exists")]
    Conflict { what: &'static str, id: String },
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// An operator is not in the state the command needs (not awaiting approval, disabled).
    #[error("not allowed: {0}")]
    OperatorState(String),
    #[error("not allowed: {0}")]
    CaseState(#[from] keysentinel_domain::CaseError),
    #[error("not allowed: {0}")]
    ReportState(#[from] keysentinel_domain::report::ReportError),
    /// A vendor is not in the state the command needs (or not ready for approval).
    #[error("not allowed: {0}")]
    VendorState(String),
    /// A counterparty is not in the state the command needs (ended).
    #[error("not allowed: {0}")]
    CounterpartyState(String),
    /// A party's record that cannot change (ended).
    #[error("not allowed: {0}")]
    PartyState(String),
    /// A reinstated key's claim that cannot be redeemed (none, redeemed, expired, locked).
    #[error("not allowed: {0}")]
    ClaimState(keysentinel_domain::ClaimError),
    #[error("storage: {0}")]
    Store(StoreError),
    /// An error about one line of an imported batch (which was refused whole).
    #[error("line {line}: {error}")]
    AtLine { line: usize, error: Box<RegistryError> },
}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { what, id } => RegistryError::Conflict { what, id },
            StoreError::Missing { what, id } => RegistryError::NotFound { what, id },
            other => RegistryError::Store(other),
        }
    }
}

impl From<keysentinel_secrets::SecretsError> for RegistryError {
    fn from(e: keysentinel_secrets::SecretsError) -> Self {
        RegistryError::Store(StoreError::Secrets(e))
    }
}

impl RegistryError {
    /// Stable machine-readable code for API errors and CLI output.
    pub fn code(&self) -> &'static str {
        match self {
            RegistryError::Validation(_) => "invalid_input",
            RegistryError::Policy(_) => "policy_violation",
            RegistryError::Transition(_) => "invalid_transition",
            RegistryError::NotFound { .. } => "not_found",
            RegistryError::Conflict { .. } => "conflict",
            RegistryError::Forbidden(_) => "forbidden",
            RegistryError::OperatorState(_) => "invalid_operator_state",
            RegistryError::CaseState(_) => "invalid_case_state",
            RegistryError::ReportState(_) => "invalid_report_state",
            RegistryError::VendorState(_) => "invalid_vendor_state",
            RegistryError::CounterpartyState(_) => "invalid_counterparty_state",
            RegistryError::ClaimState(_) => "invalid_claim_state",
            RegistryError::PartyState(_) => "invalid_party_state",
            RegistryError::Store(StoreError::Unaudited) => "unaudited_change",
            RegistryError::Store(StoreError::State(_)) => "state_mismatch",
            RegistryError::Store(_) => "storage_error",
            RegistryError::AtLine { error, .. } => error.code(),
        }
    }
}
