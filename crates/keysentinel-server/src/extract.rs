//! Extractors that turn every malformed request into a JSON error, and the authenticated
//! operator.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use keysentinel_audit::Actor;
use keysentinel_domain::{Operator, Permission};
use serde::de::DeserializeOwned;
use std::sync::Arc;

pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_json",
                "send the body as application/json",
            )),
            Err(JsonRejection::BytesRejection(e)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", e.body_text()))
            }
            Err(e) => Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.body_text())),
        }
    }
}

pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e: QueryRejection| ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", e.body_text()))
    }
}

/// The operator behind the request's bearer token.
pub struct Authed(pub Operator);

impl Authed {
    pub fn actor(&self) -> Actor {
        Actor::Operator { id: self.0.operator_id.to_string(), role: self.0.role.to_string() }
    }
}

impl FromRequestParts<Arc<AppState>> for Authed {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_owned())
            .ok_or_else(ApiError::unauthorized)?;
        authenticate(state, &token)
            .await
            .inspect_err(|_| tracing::warn!(path = %parts.uri.path(), "rejected bearer token"))
    }
}

/// The operator holding `token`: from the in-memory cache when it is there (no thread hop on
/// the verify path), otherwise looked up on a blocking thread.
pub async fn authenticate(state: &AppState, token: &str) -> Result<Authed, ApiError> {
    if let Some(op) = state.registry.authenticate_cached(token) {
        return Ok(Authed(op));
    }
    let (reg, token) = (state.registry.clone(), token.to_owned());
    let op = tokio::task::spawn_blocking(move || reg.authenticate(&token)).await.map_err(|_| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage_error", "authentication task failed")
    })??;
    op.map(Authed).ok_or_else(ApiError::unauthorized)
}

/// Checks the operator's role; a refusal is itself recorded in the audit log.
pub async fn require(state: &AppState, who: &Authed, permission: Permission, what: &str) -> Result<(), ApiError> {
    if who.0.role.allows(permission) {
        return Ok(());
    }
    let message = format!("role {} may not {what}", who.0.role);
    if let Err(e) = state.registry.record_denied(who.actor(), what, &message).await {
        tracing::error!(error = %e, "could not audit a denied request");
    }
    Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", message))
}

/// A list's `limit` parameter: 1 to 1000, 100 when absent.
pub fn list_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(100),
        Some(n @ 1..=1000) => Ok(n),
        Some(n) => Err(ApiError::invalid("limit", format!("{n} is outside 1..=1000"))),
    }
}
