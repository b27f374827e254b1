//! The approved-vendor registry over HTTP: applications, attestations, due diligence,
//! approval and recertification (compliance, never on checks the approver recorded),
//! suspension, and a vendor's exposure (its keys, their accounts, and what detection saw them
//! trade over 30 days).

use crate::detection::Traded;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{list_limit, require, Authed, Json, Path, Query};
use crate::routes::read;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use keysentinel_domain::{
    AccessKey, Account, KeyStatus, Notice, Permission, ScopeSet, Segment, Vendor, VendorId, VendorStatus,
};
use keysentinel_registry::{ApprovalInput, AttestationInput, DueDiligenceInput, NewVendor, VendorChange};
use keysentinel_store::VendorFilter;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

type S = State<Arc<AppState>>;
type ApiResult<T> = Result<T, ApiError>;

fn vendor_id(raw: &str) -> ApiResult<VendorId> {
    VendorId::parse(raw).map_err(|e| ApiError::invalid("vendor_id", e.message))
}

/// Registers a vendor's application (not yet approved: keys may not name it).
#[utoipa::path(operation_id = "apply_vendor", post, path = "/v1/vendors", tag = "vendors", request_body = NewVendor, security(("bearer" = [])),
    responses((status = 201, body = Vendor), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn apply(State(st): S, who: Authed, body: Json<NewVendor>) -> ApiResult<(StatusCode, axum::Json<Vendor>)> {
    let allowed = require(&st, &who, Permission::ManageVendors, "register vendors").await?;
    let body = body.open(&allowed).await?;
    Ok((StatusCode::CREATED, axum::Json(st.registry.apply_vendor(who.actor(), body).await?)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct VendorQuery {
    /// applied | approved | suspended | lapsed (effective: an approval past its recertification
    /// date is lapsed)
    pub status: Option<String>,
    pub after: Option<String>,
    /// 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

/// Vendors by id, with their effective status.
#[utoipa::path(operation_id = "list_vendors", get, path = "/v1/vendors", tag = "vendors", params(VendorQuery), security(("bearer" = [])),
    responses((status = 200, body = Vec<Vendor>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(State(st): S, who: Authed, query: Query<VendorQuery>) -> ApiResult<axum::Json<Vec<Vendor>>> {
    let allowed = require(&st, &who, Permission::ReadInventory, "read vendors").await?;
    let q = query.open(&allowed)?;
    let status: Option<VendorStatus> = q
        .status
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e: keysentinel_domain::ValidationError| ApiError::invalid("status", e.message))?;
    let after = q.after.as_deref().map(vendor_id).transpose()?;
    let limit = list_limit(q.limit)?;
    let now = st.registry.now();
    // The store filters by stored status; a lapse the sweep has yet to record is judged here.
    let stored = match status {
        Some(VendorStatus::Lapsed) => None,
        other => other,
    };
    let found = read(&st, move |r| {
        let mut out = Vec::new();
        let mut after = after;
        loop {
            let page = r.vendors(VendorFilter { status: stored, after: after.clone(), limit: 1000 })?;
            let full = page.len() == 1000;
            after = page.last().map(|v| v.vendor_id.clone());
            out.extend(page.into_iter().filter(|v| status.is_none_or(|s| v.effective_status(now) == s)).map(
                |mut v| {
                    v.status = v.effective_status(now);
                    v
                },
            ));
            if out.len() >= limit as usize || !full {
                break;
            }
        }
        out.truncate(limit as usize);
        Ok(out)
    })
    .await?;
    Ok(axum::Json(found))
}

#[utoipa::path(operation_id = "get_vendor", get, path = "/v1/vendors/{vendor_id}", tag = "vendors", params(("vendor_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Vendor), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(State(st): S, who: Authed, path: Path<String>) -> ApiResult<axum::Json<Vendor>> {
    let allowed = require(&st, &who, Permission::ReadInventory, "read vendors").await?;
    let id = vendor_id(&path.open(&allowed)?)?;
    let now = st.registry.now();
    let mut v = read(&st, move |r| r.vendor(&id)).await?;
    v.status = v.effective_status(now);
    Ok(axum::Json(v))
}

/// Records the vendor's answers to the questionnaire, reviewed by the caller.
#[utoipa::path(operation_id = "attest_vendor", post, path = "/v1/vendors/{vendor_id}/attestation", tag = "vendors", params(("vendor_id" = String, Path)),
    request_body = AttestationInput, security(("bearer" = [])),
    responses((status = 200, body = Vendor), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn attest(
    State(st): S,
    who: Authed,
    path: Path<String>,
    body: Json<AttestationInput>,
) -> ApiResult<axum::Json<Vendor>> {
    let allowed = require(&st, &who, Permission::ManageVendors, "record vendor attestations").await?;
    let id = vendor_id(&path.open(&allowed)?)?;
    let body = body.open(&allowed).await?;
    Ok(axum::Json(st.registry.attest_vendor(who.actor(), id, body).await?))
}

/// Records a due diligence on the vendor, by the caller (who may then not approve it).
#[utoipa::path(operation_id = "record_vendor_due_diligence", post, path = "/v1/vendors/{vendor_id}/due-diligence", tag = "vendors", params(("vendor_id" = String, Path)),
    request_body = DueDiligenceInput, security(("bearer" = [])),
    responses((status = 200, body = Vendor), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn due_diligence(
    State(st): S,
    who: Authed,
    path: Path<String>,
    body: Json<DueDiligenceInput>,
) -> ApiResult<axum::Json<Vendor>> {
    let allowed = require(&st, &who, Permission::ManageVendors, "record vendor due diligence").await?;
    let id = vendor_id(&path.open(&allowed)?)?;
    let body = body.open(&allowed).await?;
    Ok(axum::Json(st.registry.record_vendor_due_diligence(who.actor(), id, body).await?))
}

/// Approves an application (compliance). Refused to whoever recorded the due diligence or
/// reviewed the attestation, and to anyone in a chain of creation with them; needs an
/// attestation that does not rule approval out and a due diligence that was not unsatisfactory.
#[utoipa::path(operation_id = "approve_vendor", post, path = "/v1/vendors/{vendor_id}/approve", tag = "vendors", params(("vendor_id" = String, Path)),
    request_body = ApprovalInput, security(("bearer" = [])),
    responses((status = 200, body = Vendor), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn approve(
    State(st): S,
    who: Authed,
    path: Path<String>,
    body: Json<ApprovalInput>,
) -> ApiResult<axum::Json<Vendor>> {
    let allowed = require(&st, &who, Permission::ApproveVendors, "approve vendors").await?;
    let id = vendor_id(&path.open(&allowed)?)?;
    let body = body.open(&allowed).await?;
    Ok(axum::Json(st.registry.approve_vendor(who.actor(), id, body, false).await?))
}

/// Renews an approval on a due diligence newer than it (compliance, the same four eyes): the
/// only way back for a suspended or lapsed vendor. Keys restricted meanwhile stay as they are.
#[utoipa::path(operation_id = "recertify_vendor", post, path = "/v1/vendors/{vendor_id}/recertify", tag = "vendors", params(("vendor_id" = String, Path)),
    request_body = ApprovalInput, security(("bearer" = [])),
    responses((status = 200, body = Vendor), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn recertify(
    State(st): S,
    who: Authed,
    path: Path<String>,
    body: Json<ApprovalInput>,
) -> ApiResult<axum::Json<Vendor>> {
    let allowed = require(&st, &who, Permission::ApproveVendors, "recertify vendors").await?;
    let id = vendor_id(&path.open(&allowed)?)?;
    let body = body.open(&allowed).await?;
    Ok(axum::Json(st.registry.approve_vendor(who.actor(), id, body, true).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuspendVendor {
    pub reason: String,
}

/// Suspends a vendor: every live key that names it is restricted as the response policy's
/// `[vendors] on_suspend` says, and its owner notified, in the same transaction.
#[utoipa::path(operation_id = "suspend_vendor", post, path = "/v1/vendors/{vendor_id}/suspend", tag = "vendors", params(("vendor_id" = String, Path)),
    request_body = SuspendVendor, security(("bearer" = [])),
    responses((status = 200, body = VendorChange), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn suspend(
    State(st): S,
    who: Authed,
    path: Path<String>,
    body: Json<SuspendVendor>,
) -> ApiResult<axum::Json<VendorChange>> {
    let allowed = require(&st, &who, Permission::ManageVendors, "suspend vendors").await?;
    let id = vendor_id(&path.open(&allowed)?)?;
    let body = body.open(&allowed).await?;
    let policy = st.response_policy.clone();
    Ok(axum::Json(st.registry.suspend_vendor(who.actor(), id, body.reason, policy).await?))
}

/// The owners' notices about the vendor's lapse or suspension, oldest first.
#[utoipa::path(operation_id = "vendor_notices", get, path = "/v1/vendors/{vendor_id}/notices", tag = "vendors", params(("vendor_id" = String, Path)),
    security(("bearer" = [])), responses((status = 200, body = Vec<Notice>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn notices(State(st): S, who: Authed, path: Path<String>) -> ApiResult<axum::Json<Vec<Notice>>> {
    let allowed = require(&st, &who, Permission::ReadInventory, "read vendors").await?;
    let id = vendor_id(&path.open(&allowed)?)?;
    Ok(axum::Json(
        read(&st, move |r| {
            r.vendor(&id)?;
            r.notices(&format!("vendor:{id}"))
        })
        .await?,
    ))
}

/// One key of a vendor's.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExposedKey {
    #[schema(value_type = String)]
    pub access_key: AccessKey,
    pub account_id: String,
    /// Effective: a key past its expiry is expired.
    pub status: KeyStatus,
    #[schema(value_type = Vec<String>)]
    pub scopes: ScopeSet,
    /// Orders placed through it over the last 30 days, as detection counted them; none when
    /// detection does not run on this node or has not seen the key.
    pub traded_30d: Option<Traded>,
}

/// One account whose keys name the vendor.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExposedAccount {
    pub account_id: String,
    pub segment: Option<Segment>,
    pub keys: usize,
    pub live_keys: usize,
    pub orders_30d: u64,
    pub notional_30d: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Exposure {
    pub vendor: Vendor,
    pub keys: Vec<ExposedKey>,
    pub accounts: Vec<ExposedAccount>,
    /// Keys that verify now (active, not expired).
    pub active_keys: usize,
    pub orders_30d: u64,
    pub notional_30d: f64,
    /// Whether the trading figures come from detection (false: `serve --no-detection`).
    pub trading_measured: bool,
}

/// What the vendor reaches: every key that names it, their accounts and statuses, and the
/// orders detection saw through them over the last 30 days.
#[utoipa::path(operation_id = "vendor_exposure", get, path = "/v1/vendors/{vendor_id}/exposure", tag = "vendors", params(("vendor_id" = String, Path)),
    security(("bearer" = [])), responses((status = 200, body = Exposure), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn exposure(State(st): S, who: Authed, path: Path<String>) -> ApiResult<axum::Json<Exposure>> {
    let allowed = require(&st, &who, Permission::ReadInventory, "read vendors").await?;
    let id = vendor_id(&path.open(&allowed)?)?;
    let now = st.registry.now();
    let (mut vendor, keys, owners) = read(&st, move |r| {
        let (vendor, keys) = r.vendor_keys(&id)?;
        let mut owners: BTreeMap<String, Option<Account>> = BTreeMap::new();
        for k in &keys {
            if !owners.contains_key(k.account_id.as_str()) {
                owners.insert(k.account_id.to_string(), r.account(&k.account_id).ok());
            }
        }
        Ok((vendor, keys, owners))
    })
    .await?;
    vendor.status = vendor.effective_status(now);
    let traded = match &st.detection {
        Some(d) => {
            let ids = keys.iter().map(|k| k.access_key.to_string()).collect();
            let at = (now.unix_timestamp_nanos() / 1_000_000) as i64;
            Some(d.traded(ids, at).await.map_err(|e| {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "detection_unavailable", format!("{}: retry", e.0))
            })?)
        }
        None => None,
    };
    let mut accounts: BTreeMap<String, ExposedAccount> = BTreeMap::new();
    let mut exposed = Vec::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate() {
        let t = traded.as_ref().and_then(|t| t.get(i).copied().flatten());
        let status = k.effective_status(now);
        let a = accounts.entry(k.account_id.to_string()).or_insert_with(|| ExposedAccount {
            account_id: k.account_id.to_string(),
            segment: owners.get(k.account_id.as_str()).and_then(|o| o.as_ref()).map(|o| o.segment),
            keys: 0,
            live_keys: 0,
            orders_30d: 0,
            notional_30d: 0.0,
        });
        a.keys += 1;
        a.live_keys += usize::from(k.is_live(now));
        if let Some(t) = t {
            a.orders_30d += t.orders;
            a.notional_30d += t.notional;
        }
        exposed.push(ExposedKey {
            access_key: k.access_key.clone(),
            account_id: k.account_id.to_string(),
            status,
            scopes: k.scopes,
            traded_30d: t,
        });
    }
    let accounts: Vec<ExposedAccount> = accounts.into_values().collect();
    Ok(axum::Json(Exposure {
        active_keys: exposed.iter().filter(|k| k.status == KeyStatus::Active).count(),
        orders_30d: accounts.iter().map(|a| a.orders_30d).sum(),
        notional_30d: accounts.iter().map(|a| a.notional_30d).sum(),
        trading_measured: traded.is_some(),
        vendor,
        keys: exposed,
        accounts,
    }))
}
