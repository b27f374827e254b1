//! Counterparties over HTTP: market-making mandates, broker and omnibus arrangements,
//! affiliates, sub-accounts and delegation to a vendor's account, each with its dates and the
//! documents behind it; recorded, changed and ended by operators with the counterparty right,
//! listed and searched by anyone who may read the inventory.

use crate::error::{ApiError, ErrorBody};
use crate::extract::{list_limit, require, Authed, Json, Path, Query};
use crate::routes::read;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use keysentinel_domain::{AccountId, Counterparty, CounterpartyId, CounterpartyKind, Permission};
use keysentinel_registry::{CounterpartyPatch, NewCounterparty};
use keysentinel_store::CounterpartyFilter;
use serde::Deserialize;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

type S = State<Arc<AppState>>;
type ApiResult<T> = Result<T, ApiError>;

fn counterparty_id(raw: &str) -> ApiResult<CounterpartyId> {
    CounterpartyId::parse(raw).map_err(|e| ApiError::invalid("counterparty_id", e.message))
}

/// Records a counterparty. Every account it names must exist; a mandate names its principal,
/// symbols and end; values a kind does not have are refused, naming the field.
#[utoipa::path(operation_id = "create_counterparty", post, path = "/v1/counterparties", tag = "counterparties", request_body = NewCounterparty, security(("bearer" = [])),
    responses((status = 201, body = Counterparty), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(st): S,
    who: Authed,
    body: Json<NewCounterparty>,
) -> ApiResult<(StatusCode, axum::Json<Counterparty>)> {
    let allowed = require(&st, &who, Permission::ManageCounterparties, "record counterparties").await?;
    let body = body.open(&allowed).await?;
    Ok((StatusCode::CREATED, axum::Json(st.registry.create_counterparty(who.actor(), body).await?)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CounterpartyQuery {
    /// The account on either side (the record's own, or one it relates).
    pub account_id: Option<String>,
    /// mm_mandate | broker_client | affiliate | sub_account | vendor_delegation
    pub kind: Option<String>,
    /// Only those in effect at this time (RFC 3339).
    pub active_at: Option<String>,
    pub after: Option<String>,
    /// 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

/// Counterparties by id, filtered.
#[utoipa::path(operation_id = "list_counterparties", get, path = "/v1/counterparties", tag = "counterparties", params(CounterpartyQuery), security(("bearer" = [])),
    responses((status = 200, body = Vec<Counterparty>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(st): S,
    who: Authed,
    query: Query<CounterpartyQuery>,
) -> ApiResult<axum::Json<Vec<Counterparty>>> {
    let allowed = require(&st, &who, Permission::ReadInventory, "read counterparties").await?;
    let q = query.open(&allowed)?;
    let filter = CounterpartyFilter {
        account_id: q
            .account_id
            .as_deref()
            .map(AccountId::parse)
            .transpose()
            .map_err(|e| ApiError::invalid("account_id", e.message))?,
        kind: q
            .kind
            .as_deref()
            .map(str::parse::<CounterpartyKind>)
            .transpose()
            .map_err(|e| ApiError::invalid("kind", e.message))?,
        active_at: q
            .active_at
            .as_deref()
            .map(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| ApiError::invalid("active_at", format!("{t:?} is not an RFC 3339 time")))
            })
            .transpose()?,
        after: q.after.as_deref().map(counterparty_id).transpose()?,
        limit: list_limit(q.limit)?,
    };
    Ok(axum::Json(read(&st, move |r| r.counterparties(filter)).await?))
}

#[utoipa::path(operation_id = "get_counterparty", get, path = "/v1/counterparties/{counterparty_id}", tag = "counterparties", params(("counterparty_id" = String, Path)),
    security(("bearer" = [])), responses((status = 200, body = Counterparty), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(State(st): S, who: Authed, path: Path<String>) -> ApiResult<axum::Json<Counterparty>> {
    let allowed = require(&st, &who, Permission::ReadInventory, "read counterparties").await?;
    let id = counterparty_id(&path.open(&allowed)?)?;
    Ok(axum::Json(read(&st, move |r| r.counterparty(&id)).await?))
}

/// Changes a counterparty (a new version, audited with what changed). An ended one is not
/// changed: record a new one.
#[utoipa::path(operation_id = "update_counterparty", patch, path = "/v1/counterparties/{counterparty_id}", tag = "counterparties", params(("counterparty_id" = String, Path)),
    request_body = CounterpartyPatch, security(("bearer" = [])),
    responses((status = 200, body = Counterparty), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update(
    State(st): S,
    who: Authed,
    path: Path<String>,
    body: Json<CounterpartyPatch>,
) -> ApiResult<axum::Json<Counterparty>> {
    let allowed = require(&st, &who, Permission::ManageCounterparties, "change counterparties").await?;
    let id = counterparty_id(&path.open(&allowed)?)?;
    let body = body.open(&allowed).await?;
    Ok(axum::Json(st.registry.update_counterparty(who.actor(), id, body).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndCounterparty {
    pub reason: String,
}

/// Ends a counterparty now: from this moment it no longer excuses what it documented.
#[utoipa::path(operation_id = "end_counterparty", post, path = "/v1/counterparties/{counterparty_id}/end", tag = "counterparties", params(("counterparty_id" = String, Path)),
    request_body = EndCounterparty, security(("bearer" = [])),
    responses((status = 200, body = Counterparty), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn end(
    State(st): S,
    who: Authed,
    path: Path<String>,
    body: Json<EndCounterparty>,
) -> ApiResult<axum::Json<Counterparty>> {
    let allowed = require(&st, &who, Permission::ManageCounterparties, "end counterparties").await?;
    let id = counterparty_id(&path.open(&allowed)?)?;
    let body = body.open(&allowed).await?;
    Ok(axum::Json(st.registry.end_counterparty(who.actor(), id, body.reason).await?))
}
