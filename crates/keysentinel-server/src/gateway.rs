//! The gateway side: the in-memory key snapshot kept current by the registry, and the verify
//! endpoints gateways call.

use crate::error::{ApiError, ErrorBody};
use crate::extract::{require, Authed, Json};
use crate::AppState;
use axum::extract::State;
use base64::Engine;
use keysentinel_domain::{ApiKey, Permission, Scope};
use keysentinel_registry::KeyObserver;
use keysentinel_verify::snapshot::{KeyEntry, KeySnapshot};
use keysentinel_verify::Request;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use utoipa::ToSchema;

/// Keeps the verifier's snapshot equal to the committed key inventory.
pub struct SnapshotObserver(pub Arc<KeySnapshot>);

impl KeyObserver for SnapshotObserver {
    fn key_changed(&self, key: &ApiKey, secret: Option<&[u8]>) {
        match KeyEntry::new(key, secret) {
            Ok(entry) => self.0.upsert(entry),
            // A key we cannot verify is a key we refuse.
            Err(e) => {
                tracing::error!(access_key = %key.access_key, error = %e, "key cannot be loaded for verification; refusing it");
                self.0.remove(key.access_key.as_str());
            }
        }
    }
}

/// A request as the gateway saw it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// The raw query string, without `?`, exactly as received.
    #[serde(default)]
    pub query: String,
    /// The raw body as text, when the gateway has it.
    pub body: Option<String>,
    /// The raw body in base64, for bodies that are not UTF-8 (instead of `body`).
    pub body_base64: Option<String>,
    /// Request headers (names case-insensitive).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The client's address as the gateway established it.
    #[schema(value_type = String, example = "203.0.113.7")]
    pub client_ip: IpAddr,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyResponse {
    /// True only for `VALID`.
    pub allow: bool,
    /// `VALID`, `MISSING_CREDENTIALS`, `MALFORMED`, `NOT_FOUND`, `WRONG_SCHEME`, `REVOKED`,
    /// `SUSPENDED`, `EXPIRED`, `BAD_SIGNATURE`, `BODY_REQUIRED`, `STALE_TIMESTAMP`, `REPLAYED`,
    /// `IP_NOT_ALLOWED`, `UNKNOWN_ENDPOINT` or `SCOPE_DENIED`.
    pub code: String,
    pub scheme: Option<String>,
    pub access_key: Option<String>,
    pub account_id: Option<String>,
    /// Scopes the key holds now.
    pub scopes: Vec<Scope>,
    /// The scope the endpoint needs, when known.
    pub required_scope: Option<Scope>,
}

/// Verifies one signed exchange API request (for gateways that call keysentinel from their own
/// code). Always 200 for a well-formed call; the decision is in the body.
#[utoipa::path(post, path = "/v1/verify", tag = "gateway", request_body = VerifyRequest, security(("bearer" = [])),
    responses((status = 200, body = VerifyResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn verify(
    State(st): State<Arc<AppState>>,
    who: Authed,
    Json(body): Json<VerifyRequest>,
) -> Result<axum::Json<VerifyResponse>, ApiError> {
    require(&st, &who, Permission::Verify, "verify requests").await?;
    let raw_body = match (body.body, body.body_base64) {
        (Some(_), Some(_)) => return Err(ApiError::invalid("body", "give body or body_base64, not both")),
        (Some(text), None) => Some(text.into_bytes()),
        (None, Some(b64)) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| ApiError::invalid("body_base64", "not valid base64"))?,
        ),
        (None, None) => None,
    };
    let headers: Vec<(&str, &str)> = body.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let req = Request {
        method: &body.method,
        path: &body.path,
        query: &body.query,
        body: raw_body.as_deref(),
        headers: &headers,
        client_ip: body.client_ip,
        now_ms: now_ms(&st),
    };
    let decision = st.verifier.verify(&req);
    let now = req.now_ms;
    Ok(axum::Json(VerifyResponse {
        allow: decision.allowed(),
        code: decision.code.as_str().into(),
        scheme: decision.scheme.map(|s| s.as_str().into()),
        access_key: decision.key.as_ref().map(|k| k.access_key.to_string()),
        account_id: decision.key.as_ref().map(|k| k.account_id.to_string()),
        scopes: decision.key.as_ref().map(|k| k.scopes_at(now).iter().collect()).unwrap_or_default(),
        required_scope: decision.required_scope,
    }))
}

fn now_ms(st: &AppState) -> i64 {
    (st.registry.now().unix_timestamp_nanos() / 1_000_000) as i64
}
