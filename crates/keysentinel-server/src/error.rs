//! API errors: JSON `{"error": {"code", "message", ...}}` with a stable code.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use keysentinel_registry::RegistryError;
use serde::Serialize;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code: `invalid_input`, `invalid_json`, `policy_violation`,
    /// `invalid_transition`, `not_found`, `conflict`, `unauthorized`, `forbidden`,
    /// `payload_too_large`, `storage_error`, `unaudited_change`, `state_mismatch`,
    /// `invalid_vendor_state`, `invalid_counterparty_state`.
    pub code: String,
    /// What was wrong and how to fix it.
    pub message: String,
    /// For `policy_violation`: the rule's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// For `policy_violation`: the version of the policy that refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
    /// For `invalid_input`: the field at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: Box<ErrorDetail>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            detail: Box::new(ErrorDetail {
                code: code.into(),
                message: message.into(),
                rule: None,
                policy_version: None,
                field: None,
            }),
        }
    }
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "missing, malformed, unknown or disabled bearer token")
    }
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, "invalid_input", message);
        e.detail.field = Some(field.into());
        e
    }
}

fn status_of(e: &RegistryError) -> StatusCode {
    match e {
        RegistryError::Validation(_) => StatusCode::BAD_REQUEST,
        RegistryError::Policy(_) => StatusCode::UNPROCESSABLE_ENTITY,
        RegistryError::Transition(_)
        | RegistryError::Conflict { .. }
        | RegistryError::CaseState(_)
        | RegistryError::ReportState(_)
        | RegistryError::VendorState(_)
        | RegistryError::CounterpartyState(_)
        | RegistryError::ClaimState(_)
        | RegistryError::PartyState(_)
        | RegistryError::OperatorState(_) => StatusCode::CONFLICT,
        RegistryError::NotFound { .. } => StatusCode::NOT_FOUND,
        RegistryError::Forbidden(_) => StatusCode::FORBIDDEN,
        RegistryError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        RegistryError::AtLine { error, .. } => status_of(error),
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let mut out = ApiError::new(status_of(&e), e.code(), e.to_string());
        // A batch's error names its line first, then says what any error says.
        let (line, inner) = match &e {
            RegistryError::AtLine { line, error } => (Some(*line), error.as_ref()),
            other => (None, other),
        };
        let at = |m: String| line.map_or(m.clone(), |l| format!("line {l}: {m}"));
        match inner {
            RegistryError::Policy(v) => {
                out.detail.message = at(v.message.clone());
                out.detail.rule = Some(v.rule.as_str().into());
                out.detail.policy_version = Some(v.policy_version.clone());
            }
            RegistryError::Validation(v) => out.detail.field = Some(v.field.clone()),
            // Named and logged by the store; the caller learns only that the row was refused.
            RegistryError::Store(keysentinel_store::StoreError::State(_)) => {
                out.detail.message =
                    "a stored row does not match its audit history (the database file was changed outside keysentinel); refused, nothing was changed".into();
            }
            RegistryError::Store(s) => {
                tracing::error!(error = %s, "storage error");
                out.detail.message = "internal storage error; nothing was changed".into();
            }
            _ => {}
        }
        out
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let mut resp = (self.status, axum::Json(ErrorBody { error: *self.detail })).into_response();
        if unauthorized {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
