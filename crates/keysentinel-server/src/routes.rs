//! Admin API handlers. Each checks the caller's role, calls the registry, and maps the result.

use crate::error::{ApiError, ErrorBody};
use crate::extract::{require, Authed, Body, Json, Path, Query};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use keysentinel_audit::proof::InclusionProof;
use keysentinel_audit::AuditEntry;
use keysentinel_domain::{
    AccessKey, Account, AccountId, ApiKey, KeyPolicy, KeyStatus, Operator, OperatorId, Permission, Role, Scope,
    VendorId,
};
use keysentinel_registry::{
    AccountPatch, ImportOptions, ImportReport, IssuedKey, IssuedToken, NewAccount, NewKey, Registry, RegistryError,
};
use keysentinel_store::KeyFilter;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

type S = State<Arc<AppState>>;
type ApiResult<T> = Result<T, ApiError>;

/// Runs a blocking registry read off the async workers.
pub(crate) async fn read<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Registry) -> Result<T, RegistryError> + Send + 'static,
) -> ApiResult<T> {
    let reg = state.registry.clone();
    tokio::task::spawn_blocking(move || f(&reg))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage_error", "read task failed"))?
        .map_err(ApiError::from)
}

fn access_key(raw: &str) -> ApiResult<AccessKey> {
    AccessKey::parse(raw).map_err(|e| ApiError::invalid("access_key", e.to_string()))
}

fn account_id(raw: &str) -> ApiResult<AccountId> {
    AccountId::parse(raw).map_err(|e| ApiError::invalid("account_id", e.to_string()))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
}

fn health(st: &AppState) -> (StatusCode, axum::Json<Health>) {
    let version = env!("CARGO_PKG_VERSION").into();
    if st.registry.writable() {
        (StatusCode::OK, axum::Json(Health { status: "ok".into(), version }))
    } else {
        // A node that cannot write would still verify while refusing revocations: say so, so
        // that the orchestrator restarts it and the balancer stops sending it traffic.
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(Health { status: "writer_stopped".into(), version }))
    }
}

/// Liveness: answers without authentication; 503 `writer_stopped` once the store's writer has
/// stopped (the process also exits then).
#[utoipa::path(get, path = "/healthz", tag = "service", responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn healthz(State(st): S) -> (StatusCode, axum::Json<Health>) {
    health(&st)
}

/// Readiness: 200 while the node can both verify and write; 503 `writer_stopped` otherwise.
#[utoipa::path(get, path = "/readyz", tag = "service", responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn readyz(State(st): S) -> (StatusCode, axum::Json<Health>) {
    health(&st)
}

// ---- accounts ----

#[utoipa::path(post, path = "/v1/accounts", tag = "accounts", request_body = NewAccount, security(("bearer" = [])),
    responses((status = 201, body = Account), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_account(
    State(st): S,
    who: Authed,
    body: Json<NewAccount>,
) -> ApiResult<(StatusCode, axum::Json<Account>)> {
    let allowed = require(&st, &who, Permission::ManageAccounts, "create accounts").await?;
    let body = body.open(&allowed).await?;
    let account = st.registry.create_account(who.actor(), body).await?;
    st.account_changed(&account);
    Ok((StatusCode::CREATED, axum::Json(account)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// Return items after this id (the last id of the previous page).
    pub after: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/accounts", tag = "accounts", params(Page), security(("bearer" = [])),
    responses((status = 200, body = Vec<Account>), (status = 403, body = ErrorBody)))]
pub async fn list_accounts(State(st): S, who: Authed, query: Query<Page>) -> ApiResult<axum::Json<Vec<Account>>> {
    let allowed = require(&st, &who, Permission::ReadInventory, "read accounts").await?;
    let page = query.open(&allowed)?;
    let after = page.after.as_deref().map(account_id).transpose()?;
    let limit = page.limit.unwrap_or(100);
    Ok(axum::Json(read(&st, move |r| r.accounts(after, limit)).await?))
}

#[utoipa::path(get, path = "/v1/accounts/{account_id}", tag = "accounts", params(("account_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Account), (status = 404, body = ErrorBody)))]
pub async fn get_account(State(st): S, who: Authed, path: Path<String>) -> ApiResult<axum::Json<Account>> {
    let allowed = require(&st, &who, Permission::ReadInventory, "read accounts").await?;
    let id = path.open(&allowed)?;
    let id = account_id(&id)?;
    Ok(axum::Json(read(&st, move |r| r.account(&id)).await?))
}

#[utoipa::path(patch, path = "/v1/accounts/{account_id}", tag = "accounts", params(("account_id" = String, Path)), request_body = AccountPatch,
    security(("bearer" = [])), responses((status = 200, body = Account), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_account(
    State(st): S,
    who: Authed,
    path: Path<String>,
    body: Json<AccountPatch>,
) -> ApiResult<axum::Json<Account>> {
    let allowed = require(&st, &who, Permission::ManageAccounts, "change accounts").await?;
    let id = path.open(&allowed)?;
    let patch = body.open(&allowed).await?;
    let account = st.registry.update_account(who.actor(), account_id(&id)?, patch).await?;
    st.account_changed(&account);
    Ok(axum::Json(account))
}

// ---- parties: who stands behind an account ----

fn party_id(raw: &str) -> ApiResult<keysentinel_domain::PartyId> {
    keysentinel_domain::PartyId::parse(raw).map_err(|e| ApiError::invalid("party_id", e.to_string()))
}

/// Records a beneficial owner or representative of the account or, for a corporate, broker or
/// market-maker account, a person, desk or system that operates its keys.
#[utoipa::path(post, path = "/v1/accounts/{account_id}/parties", tag = "accounts", params(("account_id" = String, Path)),
    request_body = keysentinel_registry::NewParty, security(("bearer" = [])),
    responses((status = 201, body = keysentinel_domain::Party), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_party(
    State(st): S,
    who: Authed,
    path: Path<String>,
    body: Json<keysentinel_registry::NewParty>,
) -> ApiResult<(StatusCode, axum::Json<keysentinel_domain::Party>)> {
    let allowed = require(&st, &who, Permission::ManageAccounts, "record an account's parties").await?;
    let id = path.open(&allowed)?;
    let body = body.open(&allowed).await?;
    Ok((StatusCode::CREATED, axum::Json(st.registry.create_party(who.actor(), account_id(&id)?, body).await?)))
}

/// The account's parties, ended ones too.
#[utoipa::path(get, path = "/v1/accounts/{account_id}/parties", tag = "accounts", params(("account_id" = String, Path)),
    security(("bearer" = [])), responses((status = 200, body = Vec<keysentinel_domain::Party>), (status = 404, body = ErrorBody)))]
pub async fn list_parties(
    State(st): S,
    who: Authed,
    path: Path<String>,
) -> ApiResult<axum::Json<Vec<keysentinel_domain::Party>>> {
    let allowed = require(&st, &who, Permission::ReadInventory, "read an account's parties").await?;
    let id = account_id(&path.open(&allowed)?)?;
    Ok(axum::Json(read(&st, move |r| r.parties(&id)).await?))
}

/// A new version of the record (name, document, end date); the entry lists what changed.
#[utoipa::path(patch, path = "/v1/parties/{party_id}", tag = "accounts", params(("party_id" = String, Path)),
    request_body = keysentinel_registry::PartyPatch, security(("bearer" = [])),
    responses((status = 200, body = keysentinel_domain::Party), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update_party(
    State(st): S,
    who: Authed,
    path: Path<String>,
    body: Json<keysentinel_registry::PartyPatch>,
) -> ApiResult<axum::Json<keysentinel_domain::Party>> {
    let allowed = require(&st, &who, Permission::ManageAccounts, "change an account's parties").await?;
    let id = path.open(&allowed)?;
    let body = body.open(&allowed).await?;
    Ok(axum::Json(st.registry.update_party(who.actor(), party_id(&id)?, body).await?))
}

/// Ends the record now: keys may no longer name it as their operator.
#[utoipa::path(post, path = "/v1/parties/{party_id}/end", tag = "accounts", params(("party_id" = String, Path)), request_body = Reason,
    security(("bearer" = [])), responses((status = 200, body = keysentinel_domain::Party), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn end_party(
    State(st): S,
    who: Authed,
    path: Path<String>,
    body: Json<Reason>,
) -> ApiResult<axum::Json<keysentinel_domain::Party>> {
    let allowed = require(&st, &who, Permission::ManageAccounts, "end an account's parties").await?;
    let id = path.open(&allowed)?;
    let body = body.open(&allowed).await?;
    Ok(axum::Json(st.registry.end_party(who.actor(), party_id(&id)?, body.reason).await?))
}

// ---- keys ----

/// Issues a key. For HMAC keys the response carries the secret: it is shown this once.
#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = NewKey, security(("bearer" = [])),
    responses((status = 201, body = IssuedKey), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_key(
    State(st): S,
    who: Authed,
    body: Json<NewKey>,
) -> ApiResult<(StatusCode, axum::Json<IssuedKey>)> {
    let allowed = require(&st, &who, Permission::IssueKeys, "issue keys").await?;
    let body = body.open(&allowed).await?;
    Ok((StatusCode::CREATED, axum::Json(st.registry.create_key(who.actor(), body).await?)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct KeyQuery {
    pub account_id: Option<String>,
    /// Effective status: a key past its expiry is `expired`.
    pub status: Option<KeyStatus>,
    pub vendor_id: Option<String>,
    pub after: Option<String>,
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/keys", tag = "keys", params(KeyQuery), security(("bearer" = [])),
    responses((status = 200, body = Vec<ApiKey>), (status = 400, body = ErrorBody)))]
pub async fn list_keys(State(st): S, who: Authed, query: Query<KeyQuery>) -> ApiResult<axum::Json<Vec<ApiKey>>> {
    let allowed = require(&st, &who, Permission::ReadInventory, "read keys").await?;
    let q = query.open(&allowed)?;
    let filter = KeyFilter {
        account_id: q.account_id.as_deref().map(account_id).transpose()?,
        status: q.status,
        vendor_id: q
            .vendor_id
            .as_deref()
            .map(VendorId::parse)
            .transpose()
            .map_err(|e| ApiError::invalid("vendor_id", e.to_string()))?,
        after: q.after.as_deref().map(access_key).transpose()?,
        limit: q.limit.unwrap_or(100),
    };
    Ok(axum::Json(read(&st, move |r| r.keys(filter)).await?))
}

#[utoipa::path(get, path = "/v1/keys/{access_key}", tag = "keys", params(("access_key" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = ApiKey), (status = 404, body = ErrorBody)))]
pub async fn get_key(State(st): S, who: Authed, path: Path<String>) -> ApiResult<axum::Json<ApiKey>> {
    let allowed = require(&st, &who, Permission::ReadInventory, "read keys").await?;
    let ak = path.open(&allowed)?;
    let ak = access_key(&ak)?;
    Ok(axum::Json(read(&st, move |r| r.key(&ak)).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    /// Why (required; recorded in the audit log).
    pub reason: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// How long the old key keeps working beside the new one (0 = expire at once, max 30 days).
    #[serde(default)]
    pub overlap_seconds: i64,
    /// For Ed25519 keys: the customer's new public key.
    pub public_key: Option<String>,
    pub reason: String,
}

/// Issues a successor with the same grants; the old key expires after the overlap.
#[utoipa::path(post, path = "/v1/keys/{access_key}/rotate", tag = "keys", params(("access_key" = String, Path)), request_body = RotateRequest,
    security(("bearer" = [])), responses((status = 201, body = IssuedKey), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn rotate_key(
    State(st): S,
    who: Authed,
    path: Path<String>,
    body: Json<RotateRequest>,
) -> ApiResult<(StatusCode, axum::Json<IssuedKey>)> {
    let allowed = require(&st, &who, Permission::IssueKeys, "rotate keys").await?;
    let ak = path.open(&allowed)?;
    let body = body.open(&allowed).await?;
    let issued = st
        .registry
        .rotate_key(
            who.actor(),
            access_key(&ak)?,
            time::Duration::seconds(body.overlap_seconds),
            body.public_key,
            body.reason,
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(issued)))
}

#[utoipa::path(post, path = "/v1/keys/{access_key}/suspend", tag = "keys", params(("access_key" = String, Path)), request_body = Reason,
    security(("bearer" = [])), responses((status = 200, body = ApiKey), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn suspend_key(
    State(st): S,
    who: Authed,
    path: Path<String>,
    body: Json<Reason>,
) -> ApiResult<axum::Json<ApiKey>> {
    let allowed = require(&st, &who, Permission::ContainKeys, "suspend keys").await?;
    let ak = path.open(&allowed)?;
    let body = body.open(&allowed).await?;
    Ok(axum::Json(st.registry.suspend_key(who.actor(), access_key(&ak)?, body.reason).await?))
}

#[utoipa::path(post, path = "/v1/keys/{access_key}/resume", tag = "keys", params(("access_key" = String, Path)), request_body = Reason,
    security(("bearer" = [])), responses((status = 200, body = ApiKey), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn resume_key(
    State(st): S,
    who: Authed,
    path: Path<String>,
    body: Json<Reason>,
) -> ApiResult<axum::Json<ApiKey>> {
    let allowed = require(&st, &who, Permission::ContainKeys, "resume keys").await?;
    let ak = path.open(&allowed)?;
    let body = body.open(&allowed).await?;
    Ok(axum::Json(st.registry.resume_key(who.actor(), access_key(&ak)?, body.reason).await?))
}

/// Permanent: a revoked key is never reactivated.
#[utoipa::path(post, path = "/v1/keys/{access_key}/revoke", tag = "keys", params(("access_key" = String, Path)), request_body = Reason,
    security(("bearer" = [])), responses((status = 200, body = ApiKey), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn revoke_key(
    State(st): S,
    who: Authed,
    path: Path<String>,
    body: Json<Reason>,
) -> ApiResult<axum::Json<ApiKey>> {
    let allowed = require(&st, &who, Permission::RevokeKeys, "revoke keys").await?;
    let ak = path.open(&allowed)?;
    let body = body.open(&allowed).await?;
    Ok(axum::Json(st.registry.revoke_key(who.actor(), access_key(&ak)?, body.reason).await?))
}

/// Approves a key its purpose issued pending (market making: docs/policy.md). Compliance only,
/// and never the operator who asked for the key nor one in a chain of creation with them (403).
#[utoipa::path(post, path = "/v1/keys/{access_key}/approve", tag = "keys", params(("access_key" = String, Path)), request_body = Reason,
    security(("bearer" = [])), responses((status = 200, body = ApiKey), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn approve_key(
    State(st): S,
    who: Authed,
    path: Path<String>,
    body: Json<Reason>,
) -> ApiResult<axum::Json<ApiKey>> {
    let allowed = require(&st, &who, Permission::ApproveKeys, "approve keys issued pending").await?;
    let ak = path.open(&allowed)?;
    let body = body.open(&allowed).await?;
    Ok(axum::Json(st.registry.approve_key(who.actor(), access_key(&ak)?, body.reason).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// The owner's one-time code (8 digits), as the outbox notice delivered it to them.
    #[serde(deserialize_with = "code_text")]
    pub code: String,
}

/// The code as a JSON string. Any other JSON type is refused without echoing the value: serde's
/// own message would repeat a code sent as a number, and an app that logs error bodies would
/// keep a live code.
fn code_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(code) => Ok(code),
        _ => Err(serde::de::Error::custom("`code` is the 8-digit code as a JSON string")),
    }
}

/// Debug never shows the code.
impl std::fmt::Debug for ClaimRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClaimRequest { code: <redacted> }")
    }
}

/// The owner claims their reinstated key, through the exchange's own app (the
/// `customer_channel` role, which can do nothing else) with the one-time code the owner was sent:
/// the key becomes valid and its secret is returned in this answer only. A claim is redeemed
/// once, expires after 72 hours and locks after 5 wrong codes (403 names how many are left).
#[utoipa::path(post, path = "/v1/keys/{access_key}/claim", tag = "keys", params(("access_key" = String, Path)), request_body = ClaimRequest,
    security(("bearer" = [])), responses((status = 200, body = IssuedKey), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn redeem_claim(
    State(st): S,
    who: Authed,
    path: Path<String>,
    body: Json<ClaimRequest>,
) -> ApiResult<axum::Json<IssuedKey>> {
    let allowed = require(&st, &who, Permission::RedeemClaims, "redeem key claims").await?;
    let ak = path.open(&allowed)?;
    let body = body.open(&allowed).await?;
    Ok(axum::Json(st.registry.redeem_claim(who.actor(), access_key(&ak)?, body.code).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    /// withdraw or transfer.
    pub scope: Scope,
    /// How long the grant lasts once approved (default and maximum: the segment's limit).
    pub hours: Option<i64>,
    pub reason: String,
}

/// Requests a time-limited sensitive grant; an approver (not the requester) must approve it.
#[utoipa::path(post, path = "/v1/keys/{access_key}/grants", tag = "keys", params(("access_key" = String, Path)), request_body = GrantRequest,
    security(("bearer" = [])), responses((status = 200, body = ApiKey), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn request_grant(
    State(st): S,
    who: Authed,
    path: Path<String>,
    body: Json<GrantRequest>,
) -> ApiResult<axum::Json<ApiKey>> {
    let allowed = require(&st, &who, Permission::RequestGrant, "request sensitive grants").await?;
    let ak = path.open(&allowed)?;
    let body = body.open(&allowed).await?;
    Ok(axum::Json(st.registry.request_grant(who.actor(), access_key(&ak)?, body.scope, body.hours, body.reason).await?))
}

#[utoipa::path(post, path = "/v1/keys/{access_key}/grants/{scope}/approve", tag = "keys",
    params(("access_key" = String, Path), ("scope" = Scope, Path)), request_body = Reason,
    security(("bearer" = [])), responses((status = 200, body = ApiKey), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn approve_grant(
    State(st): S,
    who: Authed,
    path: Path<(String, String)>,
    body: Json<Reason>,
) -> ApiResult<axum::Json<ApiKey>> {
    let allowed = require(&st, &who, Permission::ApproveGrant, "approve sensitive grants").await?;
    let (ak, scope) = path.open(&allowed)?;
    let body = body.open(&allowed).await?;
    let scope: Scope =
        scope.parse().map_err(|e: keysentinel_domain::ValidationError| ApiError::invalid("scope", e.to_string()))?;
    Ok(axum::Json(st.registry.approve_grant(who.actor(), access_key(&ak)?, scope, body.reason).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// Refuse keys that break the key policy instead of importing them with a warning.
    #[serde(default)]
    pub enforce_policy: bool,
    /// Lines per transaction (default 500).
    pub batch_size: Option<usize>,
}

/// Imports existing keys from NDJSON (one key per line; see docs/import.md).
#[utoipa::path(post, path = "/v1/keys/import", tag = "keys", params(ImportQuery),
    request_body(content = String, content_type = "application/x-ndjson"), security(("bearer" = [])),
    responses((status = 200, body = ImportReport), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn import_keys(
    State(st): S,
    who: Authed,
    query: Query<ImportQuery>,
    body: Body,
) -> ApiResult<axum::Json<ImportReport>> {
    let allowed = require(&st, &who, Permission::IssueKeys, "import keys").await?;
    let q = query.open(&allowed)?;
    let body = body.text(&allowed).await?;
    // An empty import is a mistake (a truncated or wrong file), never "0 keys imported, OK".
    if body.lines().all(|l| l.trim().is_empty()) {
        return Err(ApiError::invalid("body", "the import is empty: send at least one key, one JSON object per line"));
    }
    let options = ImportOptions { enforce_policy: q.enforce_policy, batch_size: q.batch_size.unwrap_or(500) };
    Ok(axum::Json(st.registry.import_keys(who.actor(), body, options).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RegistryImportQuery {
    /// Why the registry is imported (required; recorded in every entry).
    pub reason: String,
}

/// Imports an existing registry — accounts, their parties, vendors' applications and
/// counterparties — as NDJSON (`application/x-ndjson`, one object with a `type` per line) or CSV
/// (`text/csv`, a header naming the fields), all or nothing: every bad line is named (400), a
/// line refused by a rule names its line, and then nothing is imported (docs/registry.md).
#[utoipa::path(post, path = "/v1/registry/import", tag = "accounts", params(RegistryImportQuery),
    request_body(content = String, content_type = "application/x-ndjson"), security(("bearer" = [])),
    responses((status = 200, body = keysentinel_registry::BulkReport), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn import_registry(
    State(st): S,
    who: Authed,
    query: Query<RegistryImportQuery>,
    body: Body,
) -> ApiResult<axum::Json<keysentinel_registry::BulkReport>> {
    let allowed = require(&st, &who, Permission::ManageAccounts, "import a registry").await?;
    require(&st, &who, Permission::ManageVendors, "import a registry").await?;
    require(&st, &who, Permission::ManageCounterparties, "import a registry").await?;
    let q = query.open(&allowed)?;
    let kind = body.headers().get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let format = match kind.split(';').next().map(str::trim) {
        Some("application/x-ndjson") => keysentinel_registry::BulkFormat::Ndjson,
        Some("text/csv") => keysentinel_registry::BulkFormat::Csv,
        _ => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_input",
                "send the registry as application/x-ndjson or text/csv",
            ))
        }
    };
    let text = body.text(&allowed).await?;
    let report = st.registry.bulk_import(who.actor(), text, format, q.reason).await?;
    // Detection learns of the new accounts as it does of one created through the API.
    for r in report.records.iter().filter(|r| r.kind == "account") {
        if let Ok(id) = AccountId::parse(&r.id) {
            if let Ok(a) = read(&st, move |reg| reg.account(&id)).await {
                st.account_changed(&a);
            }
        }
    }
    Ok(axum::Json(report))
}

// ---- operators ----

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOperator {
    pub operator_id: OperatorId,
    pub role: Role,
    #[serde(default)]
    pub description: String,
}

/// Creates an operator; the response carries its bearer token, shown this once.
#[utoipa::path(post, path = "/v1/operators", tag = "operators", request_body = NewOperator, security(("bearer" = [])),
    responses((status = 201, body = IssuedToken), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_operator(
    State(st): S,
    who: Authed,
    body: Json<NewOperator>,
) -> ApiResult<(StatusCode, axum::Json<IssuedToken>)> {
    let allowed = require(&st, &who, Permission::ManageOperators, "manage operators").await?;
    let body = body.open(&allowed).await?;
    let issued = st.registry.create_operator(who.actor(), body.operator_id, body.role, body.description).await?;
    Ok((StatusCode::CREATED, axum::Json(issued)))
}

#[utoipa::path(get, path = "/v1/operators", tag = "operators", security(("bearer" = [])),
    responses((status = 200, body = Vec<Operator>), (status = 403, body = ErrorBody)))]
pub async fn list_operators(State(st): S, who: Authed) -> ApiResult<axum::Json<Vec<Operator>>> {
    require(&st, &who, Permission::ManageOperators, "manage operators").await?;
    Ok(axum::Json(read(&st, |r| r.operators()).await?))
}

/// The calling operator.
#[utoipa::path(get, path = "/v1/operators/me", tag = "operators", security(("bearer" = [])), responses((status = 200, body = Operator), (status = 401, body = ErrorBody)))]
pub async fn whoami(who: Authed) -> axum::Json<Operator> {
    axum::Json(who.0)
}

#[utoipa::path(post, path = "/v1/operators/{operator_id}/disable", tag = "operators", params(("operator_id" = String, Path)), request_body = Reason,
    security(("bearer" = [])), responses((status = 200, body = Operator), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn disable_operator(
    State(st): S,
    who: Authed,
    path: Path<String>,
    body: Json<Reason>,
) -> ApiResult<axum::Json<Operator>> {
    let allowed = require(&st, &who, Permission::ManageOperators, "manage operators").await?;
    let id = path.open(&allowed)?;
    let body = body.open(&allowed).await?;
    let id = OperatorId::parse(&id).map_err(|e| ApiError::invalid("operator_id", e.to_string()))?;
    Ok(axum::Json(st.registry.disable_operator(who.actor(), id, body.reason).await?))
}

/// A second admin approves an operator whose role takes part in a four-eyes check (admin,
/// approver, compliance): until then its token authenticates nothing. Refused to the operator's
/// creator and to anyone in the creator's chain of creation.
#[utoipa::path(post, path = "/v1/operators/{operator_id}/approve", tag = "operators", params(("operator_id" = String, Path)), request_body = Reason,
    security(("bearer" = [])), responses((status = 200, body = Operator), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn approve_operator(
    State(st): S,
    who: Authed,
    path: Path<String>,
    body: Json<Reason>,
) -> ApiResult<axum::Json<Operator>> {
    let allowed = require(&st, &who, Permission::ManageOperators, "manage operators").await?;
    let id = path.open(&allowed)?;
    let body = body.open(&allowed).await?;
    let id = OperatorId::parse(&id).map_err(|e| ApiError::invalid("operator_id", e.to_string()))?;
    Ok(axum::Json(st.registry.approve_operator(who.actor(), id, body.reason).await?))
}

// ---- policy and audit ----

/// The key policy in force.
#[utoipa::path(get, path = "/v1/policy", tag = "policy", security(("bearer" = [])), responses((status = 200, body = KeyPolicy)))]
pub async fn get_policy(State(st): S, who: Authed) -> ApiResult<axum::Json<KeyPolicy>> {
    require(&st, &who, Permission::ReadInventory, "read the policy").await?;
    Ok(axum::Json(st.registry.policy().clone()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// First position to return (default 0).
    pub from: Option<u64>,
    /// 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/audit/entries", tag = "audit", params(AuditQuery), security(("bearer" = [])),
    responses((status = 200, body = Vec<AuditEntry>), (status = 403, body = ErrorBody)))]
pub async fn audit_entries(
    State(st): S,
    who: Authed,
    query: Query<AuditQuery>,
) -> ApiResult<axum::Json<Vec<AuditEntry>>> {
    let allowed = require(&st, &who, Permission::ReadAudit, "read the audit log").await?;
    let q = query.open(&allowed)?;
    let (from, limit) = (q.from.unwrap_or(0), q.limit.unwrap_or(100));
    let mut entries = read(&st, move |r| r.audit_entries(from, limit)).await?;
    if !who.0.role.allows(Permission::ReadReports) {
        entries.retain(|e| !is_report_entry(&e.target));
    }
    Ok(axum::Json(entries))
}

/// Suspicious-matter report steps are for the roles that may read reports: who else learns a
/// report was considered, the likelier the owner is tipped off. The entries stay in the log
/// (and in its checkpoints); the listing and proofs skip them for the other roles.
fn is_report_entry(target: &str) -> bool {
    target.starts_with("report:")
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointResponse {
    /// The signed checkpoint (signed-note text).
    pub checkpoint: String,
    /// The log's origin line.
    pub origin: String,
    /// The verifier key to pin: `name+keyid+base64key`.
    pub verifier_key: String,
}

/// The newest signed checkpoint. Keep copies elsewhere: `audit verify --checkpoint` checks the
/// log still contains what they signed.
#[utoipa::path(get, path = "/v1/audit/checkpoint", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = CheckpointResponse), (status = 404, body = ErrorBody)))]
pub async fn audit_checkpoint(State(st): S, who: Authed) -> ApiResult<axum::Json<CheckpointResponse>> {
    require(&st, &who, Permission::ReadAudit, "read the audit log").await?;
    let cp = read(&st, |r| r.audit_checkpoint()).await?;
    let (checkpoint, origin, verifier_key) =
        cp.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "the log has no checkpoint yet"))?;
    Ok(axum::Json(CheckpointResponse { checkpoint, origin, verifier_key }))
}

/// Inclusion proof of one entry against the newest checkpoint, checkable offline.
#[utoipa::path(get, path = "/v1/audit/entries/{seq}/proof", tag = "audit", params(("seq" = u64, Path)), security(("bearer" = [])),
    responses((status = 200, body = InclusionProof), (status = 404, body = ErrorBody)))]
pub async fn audit_proof(State(st): S, who: Authed, path: Path<String>) -> ApiResult<axum::Json<InclusionProof>> {
    let allowed = require(&st, &who, Permission::ReadAudit, "read the audit log").await?;
    let seq = path.open(&allowed)?;
    let seq: u64 = seq.parse().map_err(|_| ApiError::invalid("seq", "must be a non-negative integer"))?;
    let proof = read(&st, move |r| r.audit_proof(seq)).await?;
    let target = serde_json::from_str::<AuditEntry>(&proof.entry).map(|e| e.target).unwrap_or_default();
    if is_report_entry(&target) && !who.0.role.allows(Permission::ReadReports) {
        return Err(RegistryError::NotFound { what: "audit entry", id: seq.to_string() }.into());
    }
    Ok(axum::Json(proof))
}
