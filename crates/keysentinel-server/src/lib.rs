//! HTTP wiring for keysentinel: the admin REST API (axum) and its OpenAPI document (utoipa).
//! Handlers only authenticate, authorise, translate and delegate to the registry.

pub mod client_addr;
pub mod counterparties;
pub mod detection;
pub mod error;
pub mod events;
pub mod evidence;
pub mod ext_authz;
pub mod extract;
pub mod gateway;
pub mod journal;
pub mod nonce_journal;
pub mod notify;
pub mod reports;
pub mod response;
pub mod retention;
pub mod routes;
pub mod telemetry;
pub mod vendors;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use axum::Router;
use keysentinel_registry::Registry;
use std::sync::Arc;
use std::time::Duration;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

pub struct AppState {
    pub registry: Arc<Registry>,
    pub verifier: Arc<keysentinel_verify::Verifier>,
    pub telemetry: telemetry::Telemetry,
    pub events: telemetry::EventPipeline,
    /// In-process detection; None when serving with detection off.
    pub detection: Option<Arc<detection::Detection>>,
    /// The response policy in force (the built-in one unless configured).
    pub response_policy: Arc<keysentinel_domain::ResponsePolicy>,
    /// Whose address forward-auth checks: the peer, or what a trusted proxy says (none trusted
    /// unless configured).
    pub client_address: client_addr::ClientAddress,
}

impl AppState {
    /// Builds the state: a verifier whose snapshot the registry keeps current (every existing
    /// key is loaded now; every committed change is pushed before it is acknowledged).
    ///
    /// Nonces are remembered in memory only; [`AppState::with_nonces`] gives them a store that
    /// outlives the process (the server's journal).
    pub fn new(
        registry: Arc<Registry>,
        routes: keysentinel_verify::routes::RouteTable,
        config: keysentinel_verify::VerifyConfig,
        events: telemetry::EventPipeline,
    ) -> Result<Self, keysentinel_registry::RegistryError> {
        let nonces = Arc::new(keysentinel_verify::replay::NonceCache::new(config.nonce_window_ms));
        Self::with_nonces(registry, routes, config, events, nonces)
    }

    /// As [`AppState::new`], with the nonce store given.
    pub fn with_nonces(
        registry: Arc<Registry>,
        routes: keysentinel_verify::routes::RouteTable,
        config: keysentinel_verify::VerifyConfig,
        events: telemetry::EventPipeline,
        nonces: Arc<dyn keysentinel_verify::replay::Nonces>,
    ) -> Result<Self, keysentinel_registry::RegistryError> {
        let snapshot = Arc::new(keysentinel_verify::snapshot::KeySnapshot::default());
        let loaded = registry.observe(Arc::new(gateway::SnapshotObserver(snapshot.clone())))?;
        tracing::info!(keys = loaded, "key snapshot loaded for verification");
        let verifier = Arc::new(keysentinel_verify::Verifier::with_nonces(snapshot, routes, config, nonces));
        Ok(Self {
            registry,
            verifier,
            telemetry: telemetry::Telemetry::default(),
            events,
            detection: None,
            response_policy: Arc::default(),
            client_address: client_addr::ClientAddress::default(),
        })
    }

    /// Turns on in-process detection: every account, vendor, key and counterparty is loaded into
    /// the engine (accounts first, so keys meet their owners' segments), and every committed
    /// change of them follows.
    pub fn with_detection(
        mut self,
        detection: Arc<detection::Detection>,
    ) -> Result<Self, keysentinel_registry::RegistryError> {
        let mut after = None;
        loop {
            let page = self.registry.accounts(after, 1000)?;
            for account in &page {
                detection.registry(detection::account_record(account));
            }
            match page.last() {
                Some(last) if page.len() == 1000 => after = Some(last.account_id.clone()),
                _ => break,
            }
        }
        let keys = self.registry.observe(Arc::new(detection::DetectionObserver(detection.clone())))?;
        tracing::info!(keys, "keys loaded for detection");
        self.detection = Some(detection);
        Ok(self)
    }

    /// Tells detection about a committed account change (segment, declared countries).
    pub fn account_changed(&self, account: &keysentinel_domain::Account) {
        if let Some(d) = &self.detection {
            d.registry(detection::account_record(account));
        }
    }
}

/// JSON bodies are small; key imports may be large.
const JSON_LIMIT: usize = 1024 * 1024;
const IMPORT_LIMIT: usize = 64 * 1024 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(title = "keysentinel admin API", description = "Issue, govern, revoke and account for exchange API keys. \
        Every change is recorded in a tamper-evident audit log. Authenticate with `Authorization: Bearer <operator token>`."),
    paths(
        routes::healthz, routes::readyz,
        routes::create_account, routes::list_accounts, routes::get_account, routes::update_account,
        routes::create_party, routes::list_parties, routes::update_party, routes::end_party,
        routes::create_key, routes::list_keys, routes::get_key, routes::rotate_key, routes::suspend_key,
        routes::resume_key, routes::revoke_key, routes::approve_key, routes::redeem_claim, routes::request_grant, routes::approve_grant, routes::import_keys, routes::import_registry,
        routes::create_operator, routes::list_operators, routes::whoami, routes::disable_operator, routes::approve_operator,
        routes::get_policy, routes::audit_entries, routes::audit_checkpoint, routes::audit_proof,
        gateway::verify, gateway::forward_auth, gateway::metrics,
        events::ingest_events, events::list_decisions,
        response::list_cases, response::get_case, response::case_command, response::answer, response::case_notices, response::related,
        response::get_response_policy, response::request_reinstatement, response::review_reinstatement,
        response::approve_reinstatement, evidence::evidence_pack, reports::assess, reports::get_report,
        reports::step, reports::draft, reports::list,
        vendors::apply, vendors::list, vendors::get, vendors::attest, vendors::due_diligence, vendors::approve,
        vendors::recertify, vendors::suspend, vendors::notices, vendors::exposure,
        counterparties::create, counterparties::list, counterparties::get, counterparties::update, counterparties::end,
    ),
    modifiers(&BearerAuth, &StandardErrors),
    tags(
        (name = "keys", description = "API key lifecycle"),
        (name = "gateway", description = "Verifying signed exchange API requests"),
        (name = "accounts", description = "Customer accounts"),
        (name = "operators", description = "Who may operate keysentinel"),
        (name = "audit", description = "The tamper-evident audit log"),
        (name = "policy", description = "The key policy in force"),
        (name = "response", description = "Cases and the staged response to suspected sharing"),
        (name = "detection", description = "Detection of suspected key sharing: events in, decisions out"),
        (name = "reporting", description = "Suspicious-matter report assessments (compliance officer only)"),
        (name = "vendors", description = "The approved-vendor registry: attestation, due diligence, approval, recertification, lapse"),
        (name = "counterparties", description = "Mandates, broker arrangements, affiliates and sub-accounts, with their dates and documents"),
        (name = "service", description = "Health"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// The error answers every operation can give by how it is called, added where a handler's own
/// list leaves them out, so that the document describes every answer (schemathesis checks it):
/// 401 and 403 for an operation that needs a token (the role is checked before anything else),
/// 400 for one with path or query parameters (a malformed value, an unknown parameter), 400, 413
/// and 415 for one with a body, 404 for one that names a resource in its path.
struct StandardErrors;

impl Modify for StandardErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            let ops = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for op in ops.into_iter().flatten() {
                let params = op.parameters.as_deref().unwrap_or_default();
                let in_path = params.iter().any(|p| matches!(p.parameter_in, ParameterIn::Path));
                let in_query = params.iter().any(|p| matches!(p.parameter_in, ParameterIn::Query));
                let mut standard: Vec<(&str, &str)> = Vec::new();
                if op.security.is_some() {
                    standard.push(("401", "no, unknown or disabled bearer token"));
                    standard.push(("403", "the operator's role may not do this (checked before any input is read)"));
                }
                if in_path || in_query {
                    standard.push(("400", "a malformed parameter, or one the operation does not take"));
                }
                if op.request_body.is_some() {
                    standard.push(("400", "a malformed body"));
                    standard.push(("413", "the body is larger than the operation takes"));
                    standard.push(("415", "the body's content type is not the one the operation takes"));
                }
                if in_path {
                    standard.push(("404", "no such resource"));
                }
                for (status, description) in standard {
                    op.responses.responses.entry(status.into()).or_insert_with(|| error(description).into());
                }
            }
        }
    }
}

/// The OpenAPI document as committed in `openapi.json`.
pub fn openapi_json() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.to_pretty_json().unwrap_or_default() + "\n"
}

pub fn router(state: Arc<AppState>) -> Router {
    use routes::*;
    let import = Router::new()
        .route("/v1/keys/import", post(import_keys))
        .route("/v1/registry/import", post(import_registry))
        .layer(DefaultBodyLimit::max(IMPORT_LIMIT));
    let events = Router::new()
        .route("/v1/events", post(events::ingest_events))
        .layer(DefaultBodyLimit::max(events::EVENTS_LIMIT));
    // The hot path gets no per-request tracing span: every decision is already counted in the
    // metrics and emitted as an event, and a span per verify would only add log volume.
    let gateway = Router::new()
        .route("/v1/verify", post(gateway::verify))
        .route("/v1/verify/forward-auth", axum::routing::any(gateway::forward_auth))
        .route("/metrics", get(gateway::metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(DefaultBodyLimit::max(JSON_LIMIT));
    let admin = Router::new()
        .route(
            "/openapi.json",
            get(|| async { ([(axum::http::header::CONTENT_TYPE, "application/json")], openapi_json()) }),
        )
        .route("/v1/accounts", post(create_account).get(list_accounts))
        .route("/v1/accounts/{account_id}", get(get_account).patch(update_account))
        .route("/v1/accounts/{account_id}/parties", post(create_party).get(list_parties))
        .route("/v1/parties/{party_id}", patch(update_party))
        .route("/v1/parties/{party_id}/end", post(end_party))
        .route("/v1/keys", post(create_key).get(list_keys))
        .route("/v1/keys/{access_key}", get(get_key))
        .route("/v1/keys/{access_key}/rotate", post(rotate_key))
        .route("/v1/keys/{access_key}/suspend", post(suspend_key))
        .route("/v1/keys/{access_key}/resume", post(resume_key))
        .route("/v1/keys/{access_key}/revoke", post(revoke_key))
        .route("/v1/keys/{access_key}/approve", post(approve_key))
        .route("/v1/keys/{access_key}/claim", post(redeem_claim))
        .route("/v1/keys/{access_key}/grants", post(request_grant))
        .route("/v1/keys/{access_key}/grants/{scope}/approve", post(approve_grant))
        .route("/v1/operators", post(create_operator).get(list_operators))
        .route("/v1/operators/me", get(whoami))
        .route("/v1/operators/{operator_id}/disable", post(disable_operator))
        .route("/v1/operators/{operator_id}/approve", post(approve_operator))
        .route("/v1/policy", get(get_policy))
        .route("/v1/audit/entries", get(audit_entries))
        .route("/v1/audit/checkpoint", get(audit_checkpoint))
        .route("/v1/audit/entries/{seq}/proof", get(audit_proof))
        .route("/v1/decisions", get(events::list_decisions))
        .route("/v1/cases", get(response::list_cases))
        .route("/v1/cases/{case_id}", get(response::get_case))
        .route("/v1/cases/{case_id}/commands", post(response::case_command))
        .route("/v1/cases/{case_id}/notices", get(response::case_notices))
        .route("/v1/cases/{case_id}/answer", post(response::answer))
        .route("/v1/cases/{case_id}/related", get(response::related))
        .route("/v1/cases/{case_id}/reinstatement", post(response::request_reinstatement))
        .route("/v1/cases/{case_id}/evidence-pack", post(evidence::evidence_pack))
        .route("/v1/cases/{case_id}/reinstatement/review", post(response::review_reinstatement))
        .route("/v1/cases/{case_id}/reinstatement/approve", post(response::approve_reinstatement))
        .route("/v1/response-policy", get(response::get_response_policy))
        .route("/v1/cases/{case_id}/report", post(reports::assess).get(reports::get_report))
        .route("/v1/cases/{case_id}/report/steps", post(reports::step))
        .route("/v1/cases/{case_id}/report/draft", post(reports::draft))
        .route("/v1/reports", get(reports::list))
        .route("/v1/vendors", post(vendors::apply).get(vendors::list))
        .route("/v1/vendors/{vendor_id}", get(vendors::get))
        .route("/v1/vendors/{vendor_id}/attestation", post(vendors::attest))
        .route("/v1/vendors/{vendor_id}/due-diligence", post(vendors::due_diligence))
        .route("/v1/vendors/{vendor_id}/approve", post(vendors::approve))
        .route("/v1/vendors/{vendor_id}/recertify", post(vendors::recertify))
        .route("/v1/vendors/{vendor_id}/suspend", post(vendors::suspend))
        .route("/v1/vendors/{vendor_id}/notices", get(vendors::notices))
        .route("/v1/vendors/{vendor_id}/exposure", get(vendors::exposure))
        .route("/v1/counterparties", post(counterparties::create).get(counterparties::list))
        .route("/v1/counterparties/{counterparty_id}", get(counterparties::get).patch(counterparties::update))
        .route("/v1/counterparties/{counterparty_id}/end", post(counterparties::end))
        .layer(DefaultBodyLimit::max(JSON_LIMIT))
        .merge(import)
        .merge(events)
        .fallback(|| async {
            error::ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint; see /openapi.json")
        })
        .method_not_allowed_fallback(|| async {
            error::ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this endpoint; see /openapi.json",
            )
        })
        .layer(tower_http::trace::TraceLayer::new_for_http());
    gateway.merge(admin).with_state(state)
}

/// The registry's sweep: records the lapse of vendors past their recertification date (their
/// keys restricted as `policy` says), tells owners of keys without an IP allowlist of their
/// coming lapse and records it when due (the key policy's `unrestricted_lapse_days`), and tells detection of the counterparties whose dates
/// began or ended since the last round (time changes whether they are in effect; no write does).
pub fn spawn_registry_sweeper(
    registry: Arc<Registry>,
    policy: Arc<keysentinel_domain::ResponsePolicy>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        let mut since = registry.now();
        loop {
            tick.tick().await;
            match registry.lapse_vendors(policy.clone()).await {
                Ok(changes) => {
                    for c in changes {
                        tracing::warn!(vendor_id = %c.vendor.vendor_id, keys = c.keys.len(), action = ?c.action,
                            shadowed = c.shadowed, "vendor lapsed: recertification overdue");
                    }
                }
                Err(e) => tracing::error!(error = %e, "vendor lapse sweep failed"),
            }
            match registry.sweep_unrestricted().await {
                Ok((0, 0)) => {}
                Ok((notices, lapsed)) => {
                    tracing::info!(notices, lapsed, "keys without an IP allowlist: owners told, lapses recorded")
                }
                Err(e) => tracing::error!(error = %e, "unrestricted-key sweep failed"),
            }
            let now = registry.now();
            let reg = registry.clone();
            match tokio::task::spawn_blocking(move || reg.counterparties_turned(since, now)).await {
                Ok(Ok(n)) => {
                    if n > 0 {
                        tracing::info!(counterparties = n, "counterparties began or ended; detection told");
                    }
                    since = now;
                }
                Ok(Err(e)) => tracing::error!(error = %e, "counterparty sweep failed"),
                Err(e) => tracing::error!(error = %e, "counterparty sweep task failed"),
            }
        }
    })
}

/// Records expiries as they happen (enforcement does not wait for this: an expired key is
/// refused from the moment it expires).
pub fn spawn_expiry_sweeper(registry: Arc<Registry>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            match registry.expire_due().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(keys = n, "recorded key expiries"),
                Err(e) => tracing::error!(error = %e, "expiry sweep failed"),
            }
        }
    })
}
