//! Envoy external authorization (`envoy.service.auth.v3.Authorization/Check`) over gRPC.
//!
//! Envoy forwards the request body when its `ext_authz` filter has `with_request_body`, so this
//! is the integration for the schemes that sign the body (Upbit and Bithumb POSTs, Coinone).
//! The decision is the same verify as the HTTP endpoints, with the same metrics and events.
//!
//! keysentinel never answers with a gRPC error: every refusal — including a misconfigured
//! gateway token or a request Envoy described incompletely — is a well-formed *denied*
//! `CheckResponse`, so that a filter accidentally set to `failure_mode_allow: true` still denies.

use crate::extract::{authenticate, require};
use crate::gateway::{decide, gateway_status, now_ms, GATEWAY_TOKEN_HEADER};
use crate::AppState;
use axum::http::StatusCode;
use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction,
    HeaderValue, HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::envoy::config::core::v3::address::Address;
use envoy_types::pb::google::rpc;
use keysentinel_domain::Permission;
use keysentinel_verify::{Code, Decision, Request};
use std::net::IpAddr;
use std::sync::Arc;

/// Envoy sets this on the check request when the body it forwards was cut at
/// `max_request_bytes` (with `allow_partial_message`): a partial body cannot be verified.
const PARTIAL_BODY_HEADER: &str = "x-envoy-auth-partial-body";

/// The gRPC service, ready to mount on a tonic server.
pub fn service(state: Arc<AppState>) -> AuthorizationServer<ExtAuthz> {
    AuthorizationServer::new(ExtAuthz(state))
}

pub struct ExtAuthz(Arc<AppState>);

#[tonic::async_trait]
impl Authorization for ExtAuthz {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let st = &self.0;
        let token = request.metadata().get(GATEWAY_TOKEN_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let Some(token) = token else {
            return Ok(gateway_refused("missing x-keysentinel-token metadata (the gateway's token)"));
        };
        let who = match authenticate(st, &token).await {
            Ok(who) => who,
            Err(e) => return Ok(gateway_refused(&e.detail.message)),
        };
        if let Err(e) = require(st, &who, Permission::Verify, "verify requests").await {
            return Ok(gateway_refused(&e.detail.message));
        }
        let check = request.into_inner();
        let Some(described) = Described::from_check(&check) else {
            return Ok(tonic::Response::new(denied(
                StatusCode::BAD_REQUEST,
                Code::Malformed.as_str(),
                "the check request lacks the HTTP request or the client's socket address",
            )));
        };
        let headers = &described.headers;
        let req = Request {
            method: described.method,
            path: described.path,
            query: described.query,
            body: described.body,
            headers,
            client_ip: described.client_ip,
            now_ms: now_ms(st),
        };
        let decision = decide(st, &req);
        Ok(tonic::Response::new(respond(&decision, req.now_ms)))
    }
}

/// The parts of Envoy's `AttributeContext` that verify needs.
struct Described<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a str,
    body: Option<&'a [u8]>,
    headers: Vec<(&'a str, &'a str)>,
    client_ip: IpAddr,
}

impl<'a> Described<'a> {
    fn from_check(check: &'a CheckRequest) -> Option<Self> {
        let attrs = check.attributes.as_ref()?;
        let http = attrs.request.as_ref()?.http.as_ref()?;
        let Address::SocketAddress(socket) = attrs.source.as_ref()?.address.as_ref()?.address.as_ref()? else {
            return None;
        };
        // An IPv4 client on a dual-stack listener is reported as ::ffff:a.b.c.d: it is a.b.c.d
        // to allowlists, events and detection alike.
        let client_ip = socket.address.parse::<IpAddr>().ok()?.to_canonical();
        // Envoy's `path` is the request target: path and raw query together.
        let (path, query) = http.path.split_once('?').unwrap_or((&http.path, ""));
        let headers = header_pairs(http);
        let header = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| *v);
        let body = if header(PARTIAL_BODY_HEADER) == Some("true") {
            None
        } else if !http.raw_body.is_empty() {
            Some(http.raw_body.as_slice())
        } else if !http.body.is_empty() {
            Some(http.body.as_bytes())
        } else if header("content-length").is_some_and(|n| n.trim() != "0") || header("transfer-encoding").is_some() {
            // The client sent a body and Envoy did not forward it (no `with_request_body`).
            None
        } else {
            Some(&[][..])
        };
        Some(Self { method: &http.method, path, query, body, headers, client_ip })
    }
}

/// The client's headers: the `headers` map, or `header_map` when Envoy is configured with
/// `encode_raw_headers`.
fn header_pairs(http: &envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest) -> Vec<(&str, &str)> {
    if !http.headers.is_empty() {
        return http.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    }
    let Some(map) = http.header_map.as_ref() else { return Vec::new() };
    map.headers
        .iter()
        .filter_map(|h| {
            let value =
                if h.raw_value.is_empty() { Some(h.value.as_str()) } else { std::str::from_utf8(&h.raw_value).ok() };
            value.map(|v| (h.key.as_str(), v))
        })
        .collect()
}

fn respond(decision: &Decision, now_ms: i64) -> CheckResponse {
    if !decision.allowed() {
        // The code and nothing else: Envoy returns a denial to the client as it is, and a
        // prober with a wrong secret must not learn whose key it named.
        return denied(gateway_status(decision.code), decision.code.as_str(), decision.code.as_str());
    }
    let mut headers = vec![header("x-keysentinel-code", decision.code.as_str())];
    if let Some(key) = &decision.key {
        headers.push(header("x-keysentinel-key", &key.access_key));
        headers.push(header("x-keysentinel-account", &key.account_id));
        headers.push(header("x-keysentinel-scopes", &key.scopes_at(now_ms).to_string()));
    }
    CheckResponse {
        status: Some(rpc::Status { code: tonic::Code::Ok.into(), message: String::new(), details: Vec::new() }),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse { headers, ..Default::default() })),
        ..Default::default()
    }
}

fn denied(status: StatusCode, code: &str, message: &str) -> CheckResponse {
    let grpc =
        if status == StatusCode::UNAUTHORIZED { tonic::Code::Unauthenticated } else { tonic::Code::PermissionDenied };
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    CheckResponse {
        status: Some(rpc::Status { code: grpc.into(), message: code.into(), details: Vec::new() }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus { code: i32::from(status.as_u16()) }),
            headers: vec![header("x-keysentinel-code", code), header("content-type", "application/json")],
            body,
        })),
        ..Default::default()
    }
}

/// The gateway itself was not allowed to ask: deny the client's request (503, since it is not
/// the client's fault) and say why in keysentinel's log, not to the client.
fn gateway_refused(why: &str) -> tonic::Response<CheckResponse> {
    tracing::warn!(reason = why, "ext_authz check refused: the gateway is not authorised to verify");
    tonic::Response::new(denied(
        StatusCode::SERVICE_UNAVAILABLE,
        "GATEWAY_UNAUTHORIZED",
        "the authorization service refused the gateway",
    ))
}

/// A header that replaces any value of the same name (so a client cannot smuggle its own
/// `x-keysentinel-*` headers to the upstream).
fn header(key: &str, value: &str) -> HeaderValueOption {
    #[allow(deprecated)] // `append` is deprecated in favour of `append_action`, and left unset.
    HeaderValueOption {
        header: Some(HeaderValue { key: key.into(), value: value.into(), raw_value: Vec::new() }),
        append: None,
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd.into(),
        keep_empty_value: false,
    }
}
