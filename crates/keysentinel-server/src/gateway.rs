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
        // A reinstated HMAC key held for its owner has no secret until claimed: nothing to
        // verify with, and nothing wrong (verify answers NOT_FOUND until then).
        if key.claim.as_ref().is_some_and(|c| c.redeemed_at.is_none()) && secret.is_none() {
            self.0.remove(key.access_key.as_str());
            return;
        }
        match KeyEntry::new(key, secret) {
            Ok(entry) => self.0.upsert(entry),
            // A key we cannot verify is a key we refuse.
            Err(e) => {
                tracing::error!(access_key = %key.access_key, error = %e, "key cannot be loaded for verification; refusing it");
                self.0.remove(key.access_key.as_str());
            }
        }
    }

    fn key_unreadable(&self, access_key: &keysentinel_domain::AccessKey) {
        self.0.remove(access_key.as_str());
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
    /// The raw body as text. Absent means the gateway did not forward it (then body-signed
    /// requests are `BODY_REQUIRED`); a request without a body is `""`.
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
    /// `NONCE_UNAVAILABLE`, `IP_NOT_ALLOWED`, `UNKNOWN_ENDPOINT` or `SCOPE_DENIED`.
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
    body: Json<VerifyRequest>,
) -> Result<axum::Json<VerifyResponse>, ApiError> {
    let allowed = require(&st, &who, Permission::Verify, "verify requests").await?;
    let body = body.open(&allowed).await?;
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
        // ::ffff:a.b.c.d (a dual-stack socket's view of an IPv4 client) is a.b.c.d.
        client_ip: body.client_ip.to_canonical(),
        now_ms: now_ms(&st),
    };
    let decision = decide(&st, &req);
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

/// Verifies, records the decision in the metrics, and emits it as an event.
pub(crate) fn decide(st: &AppState, req: &Request) -> keysentinel_verify::Decision {
    let started = std::time::Instant::now();
    let decision = st.verifier.verify(req);
    let scheme = decision.scheme.map(|s| s.as_str());
    st.telemetry.observe(decision.code.as_str(), scheme, started.elapsed().as_secs_f64());
    st.events.emit(crate::telemetry::RequestEvent {
        seq: st.events.next_seq(),
        ts_ms: req.now_ms,
        key: decision.key.clone(),
        ip: req.client_ip,
        user_agent: req.header("user-agent").map(Into::into),
        device_id: req.header("x-device-id").map(Into::into),
        method: req.method.into(),
        path: req.path.into(),
        outcome: decision.code,
        scheme,
        scope: decision.required_scope,
    });
    decision
}

/// Prometheus metrics: verifies by code and scheme, verify latency, snapshot size, remembered
/// nonces, event queue depth and shed events. Unauthenticated: expose the admin port only to
/// your internal network.
#[utoipa::path(get, path = "/metrics", tag = "service", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(
    State(st): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> impl axum::response::IntoResponse {
    st.telemetry.state_mismatches(st.registry.state_mismatches());
    let text = st.telemetry.render(
        st.verifier.keys().len(),
        st.verifier.remembered_nonces(),
        &st.events,
        st.detection.as_deref(),
    );
    // OpenMetrics only when the scraper asks for it (Prometheus does); a plain scrape (curl,
    // `promtool check metrics`) gets the classic text format 0.0.4, which they parse.
    let wants_openmetrics = headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if wants_openmetrics {
        ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
    } else {
        (
            [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            crate::telemetry::to_prometheus_text(&text),
        )
    }
}

pub(crate) fn now_ms(st: &AppState) -> i64 {
    (st.registry.now().unix_timestamp_nanos() / 1_000_000) as i64
}

/// The HTTP status a gateway answers the client with: 401 when the request is not authenticated
/// (no, unknown or bad credentials, stale, replayed), 403 when it is but may not pass, 503 when
/// this node cannot decide safely (its nonce store failed).
pub(crate) fn gateway_status(code: keysentinel_verify::Code) -> axum::http::StatusCode {
    use axum::http::StatusCode;
    use keysentinel_verify::Code;
    match code {
        Code::Valid => StatusCode::OK,
        Code::MissingCredentials
        | Code::Malformed
        | Code::NotFound
        | Code::BadSignature
        | Code::StaleTimestamp
        | Code::Replayed => StatusCode::UNAUTHORIZED,
        // Every code by name: a new one must be placed on one side or the other.
        Code::WrongScheme
        | Code::Revoked
        | Code::Suspended
        | Code::Expired
        | Code::Pending
        | Code::BodyRequired
        | Code::IpNotAllowed
        | Code::UnknownEndpoint
        | Code::ScopeDenied => StatusCode::FORBIDDEN,
        // The node's fault: a gateway fails closed on it (nginx answers 500, Caddy and Traefik
        // pass the 503 on), and the client may retry the same request later.
        Code::NonceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Header carrying the gateway's own keysentinel token on forward-auth calls: `Authorization`
/// belongs to the client (Upbit and Bithumb put their JWT there) and is passed through untouched.
pub const GATEWAY_TOKEN_HEADER: &str = "x-keysentinel-token";

/// Forward-auth for nginx `auth_request`, Traefik `forwardAuth` and Caddy `forward_auth`:
/// header-only (these proxies cannot pass the body), so schemes that sign the body are refused
/// with `BODY_REQUIRED` — use Envoy `ext_authz` or `/v1/verify` for those — unless the node is
/// told its upstream acts only on the signed payload (`serve --upstream-ignores-unsigned-body`).
///
/// The original request is read from `X-Original-Method` and `X-Original-URI` (nginx), or
/// `X-Forwarded-Method` and `X-Forwarded-Uri` (Traefik, Caddy). The client's address is the
/// connection's peer, unless that peer is a trusted proxy (`serve --trusted-proxy`): then the
/// one header the proxies are configured to set (`--client-ip-header`, default
/// `X-Forwarded-For`, whose right-most hop not itself a trusted proxy is the client). The
/// client's own headers arrive as they are. Answers 200 (allow) with `X-Keysentinel-Code`,
/// `-Key`, `-Account` and `-Scopes`; 401 when the request is not authenticated (no, unknown or
/// bad credentials, stale, replayed), 403 when it is but may not pass (revoked, suspended,
/// expired, IP, scope, body required) and 503 when the node cannot record the request's nonce
/// (`NONCE_UNAVAILABLE`), each with `X-Keysentinel-Code` only — nothing about the key's owner,
/// since Caddy and Traefik hand a refusal's headers to the client.
#[utoipa::path(get, path = "/v1/verify/forward-auth", tag = "gateway",
    params(("X-Keysentinel-Token" = String, Header, description = "the gateway operator's token"),
           ("X-Original-Method" = String, Header), ("X-Original-URI" = String, Header),
           ("X-Forwarded-For" = Option<String>, Header, description = "read only when the connection comes from a trusted proxy (`serve --trusted-proxy`), and only the header `--client-ip-header` names")),
    responses((status = 200, description = "allowed"), (status = 401, description = "not authenticated"), (status = 403, description = "not allowed"), (status = 400, body = ErrorBody),
               (status = 503, description = "this node cannot decide safely: its nonce store failed (`NONCE_UNAVAILABLE`)")))]
pub async fn forward_auth(
    State(st): State<Arc<AppState>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::http::{HeaderValue, StatusCode};
    use axum::response::IntoResponse;

    // The request itself rather than a `HeaderMap` extractor, which would copy every header.
    let headers = request.headers();
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(token) = get(GATEWAY_TOKEN_HEADER) else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing X-Keysentinel-Token (the gateway's token)",
        )
        .into_response();
    };
    let who = match crate::extract::authenticate(&st, token).await {
        Ok(who) => who,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = require(&st, &who, Permission::Verify, "verify requests").await {
        return e.into_response();
    }
    let (Some(method), Some(uri)) =
        (get("x-original-method").or(get("x-forwarded-method")), get("x-original-uri").or(get("x-forwarded-uri")))
    else {
        return ApiError::invalid(
            "x-original-uri",
            "set X-Original-Method and X-Original-URI (or X-Forwarded-Method and X-Forwarded-Uri)",
        )
        .into_response();
    };
    // Without the peer there is no address to trust or distrust: refuse rather than guess.
    let Some(peer) = request.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip())
    else {
        tracing::error!("forward-auth served without the connection's peer address; refusing");
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the connection's peer address is unknown",
        )
        .into_response();
    };
    let client_ip = match st.client_address.resolve(peer, headers) {
        Ok(ip) => ip,
        Err(e) => return ApiError::invalid(st.client_address.header(), e.to_string()).into_response(),
    };
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    // The proxy's own headers are not the client's; everything else is passed as received.
    let client_headers: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(k, _)| !k.as_str().starts_with("x-keysentinel-") && !k.as_str().starts_with("x-original-"))
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
        .collect();
    let req = Request { method, path, query, body: None, headers: &client_headers, client_ip, now_ms: now_ms(&st) };
    let decision = decide(&st, &req);
    let mut resp = gateway_status(decision.code).into_response();
    let h = resp.headers_mut();
    h.insert("x-keysentinel-code", HeaderValue::from_static(decision.code.as_str()));
    // Who the key belongs to goes to the upstream with an allowed request, never with a refusal.
    if let (true, Some(key)) = (decision.allowed(), &decision.key) {
        if let Ok(v) = HeaderValue::from_str(&key.access_key) {
            h.insert("x-keysentinel-key", v);
        }
        if let Ok(v) = HeaderValue::from_str(&key.account_id) {
            h.insert("x-keysentinel-account", v);
        }
        if let Ok(v) = HeaderValue::from_str(&key.scopes_at(req.now_ms).to_string()) {
            h.insert("x-keysentinel-scopes", v);
        }
    }
    resp
}
