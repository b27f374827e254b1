//! Extractors that turn every malformed request into a JSON error, and the authenticated
//! operator.

use crate::error::ApiError;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use keysentinel_audit::Actor;
use keysentinel_domain::{Operator, Permission};
use serde::de::DeserializeOwned;
use std::marker::PhantomData;
use std::sync::Arc;

/// Proof that the caller's role was checked for what the handler is about to do: only
/// [`require`] makes one. A request's inputs — its body, query string and path parameters —
/// open only with it, so a role that may not call an endpoint gets 403 whatever it sent, and
/// never a parser's account of its input (nor a 413 or 415 first).
pub struct Allowed(());

/// A JSON body, read and parsed only once the caller is [`Allowed`] (the request is kept
/// unread until then, so its size limit applies then too).
pub struct Json<T> {
    request: Request,
    _body: PhantomData<fn() -> T>,
}

impl<T, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;
    async fn from_request(request: Request, _: &S) -> Result<Self, ApiError> {
        Ok(Json { request, _body: PhantomData })
    }
}

impl<T: DeserializeOwned> Json<T> {
    /// Reads and parses the body: 415 without a JSON content type, 413 over the route's
    /// limit, 400 naming what is wrong otherwise.
    pub async fn open(self, _: &Allowed) -> Result<T, ApiError> {
        match axum::Json::<T>::from_request(self.request, &()).await {
            Ok(axum::Json(v)) => Ok(v),
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

/// A raw body (NDJSON batches, key imports), read only once the caller is [`Allowed`].
pub struct Body {
    request: Request,
}

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;
    async fn from_request(request: Request, _: &S) -> Result<Self, ApiError> {
        Ok(Body { request })
    }
}

impl Body {
    /// The request's headers (to judge its content type before reading it).
    pub fn headers(&self) -> &axum::http::HeaderMap {
        self.request.headers()
    }

    /// The body's bytes: 413 over the route's limit.
    pub async fn bytes(self, _: &Allowed) -> Result<Bytes, ApiError> {
        Bytes::from_request(self.request, &()).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", e.body_text())
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", e.body_text())
            }
        })
    }

    /// The body as UTF-8 text: 413 over the route's limit, 400 when it is not UTF-8.
    pub async fn text(self, allowed: &Allowed) -> Result<String, ApiError> {
        let bytes = self.bytes(allowed).await?;
        String::from_utf8(bytes.to_vec())
            .map_err(|e| ApiError::invalid("body", format!("the body is not UTF-8 text: {}", e.utf8_error())))
    }
}

/// The query string, parsed when the request arrives but shown only to an [`Allowed`] caller
/// (a refused role learns nothing of what was wrong with it).
pub struct Query<T>(Result<T, ApiError>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Ok(Query(
            axum::extract::Query::<T>::from_request_parts(parts, state)
                .await
                .map(|q| q.0)
                .map_err(|e: QueryRejection| ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", e.body_text())),
        ))
    }
}

impl<T> Query<T> {
    pub fn open(self, _: &Allowed) -> Result<T, ApiError> {
        self.0
    }
}

/// Path parameters, as [`Query`]: parsed on arrival, shown only to an [`Allowed`] caller.
pub struct Path<T>(Result<T, ApiError>);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Ok(Path(
            axum::extract::Path::<T>::from_request_parts(parts, state)
                .await
                .map(|p| p.0)
                .map_err(|e: PathRejection| ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", e.body_text())),
        ))
    }
}

impl<T> Path<T> {
    pub fn open(self, _: &Allowed) -> Result<T, ApiError> {
        self.0
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

/// Checks the operator's role; a refusal is itself recorded in the audit log. The request's
/// inputs open only with the [`Allowed`] this returns.
pub async fn require(state: &AppState, who: &Authed, permission: Permission, what: &str) -> Result<Allowed, ApiError> {
    require_any(state, who, &[permission], what).await
}

/// As [`require`], for a handler whose exact permission depends on its input (a case's step):
/// the role must hold one of `permissions` before the input is read, and the handler checks the
/// exact one once it has read it.
pub async fn require_any(
    state: &AppState,
    who: &Authed,
    permissions: &[Permission],
    what: &str,
) -> Result<Allowed, ApiError> {
    if permissions.iter().any(|p| who.0.role.allows(*p)) {
        return Ok(Allowed(()));
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
