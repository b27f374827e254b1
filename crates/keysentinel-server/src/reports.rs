//! Suspicious-matter reporting over HTTP, for the compliance officer only (the auditor reads):
//! open an assessment on a case, decide whether to file, record the filing, export the draft.
//! Nothing here is reachable by the roles that work cases with owners.

use crate::error::{ApiError, ErrorBody};
use crate::extract::{require, Authed, Json, Path, Query};
use crate::routes::read;
use crate::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use keysentinel_domain::{Permission, ReportAssessment, ReportDraft, ReportStep};
use serde::Deserialize;
use std::sync::Arc;
use utoipa::IntoParams;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssessBody {
    /// Why the matter is assessed (audited).
    pub reason: String,
}

/// Opens the case's suspicious-matter report assessment, under the response policy's
/// `[reporting]` jurisdiction.
#[utoipa::path(post, path = "/v1/cases/{case_id}/report", tag = "reporting", request_body = AssessBody,
    security(("bearer" = [])), params(("case_id" = String, Path, description = "The case")),
    responses((status = 200, body = ReportAssessment), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn assess(
    State(st): State<Arc<AppState>>,
    who: Authed,
    path: Path<String>,
    body: Json<AssessBody>,
) -> Result<axum::Json<ReportAssessment>, ApiError> {
    let allowed = require(&st, &who, Permission::ReportMatters, "assess suspicious-matter reports").await?;
    let id = path.open(&allowed)?;
    let body = body.open(&allowed).await?;
    let config = st.response_policy.reporting.clone();
    Ok(axum::Json(st.registry.assess_report(who.actor(), id, config, body.reason).await?))
}

/// The case's report assessment.
#[utoipa::path(get, path = "/v1/cases/{case_id}/report", tag = "reporting", security(("bearer" = [])),
    params(("case_id" = String, Path, description = "The case")),
    responses((status = 200, body = ReportAssessment), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_report(
    State(st): State<Arc<AppState>>,
    who: Authed,
    path: Path<String>,
) -> Result<axum::Json<ReportAssessment>, ApiError> {
    let allowed = require(&st, &who, Permission::ReadReports, "read suspicious-matter reports").await?;
    let id = path.open(&allowed)?;
    Ok(axum::Json(read(&st, move |r| r.report(&id)).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct StepBody {
    #[serde(flatten)]
    pub step: ReportStep,
    /// Why (required; audited).
    pub reason: String,
}

/// A step on the assessment: `decide` (file or not, with reasons; a decision to file starts
/// the deadline) or `filed` (the FIU's reference).
#[utoipa::path(post, path = "/v1/cases/{case_id}/report/steps", tag = "reporting", request_body = StepBody,
    security(("bearer" = [])), params(("case_id" = String, Path, description = "The case")),
    responses((status = 200, body = ReportAssessment), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn step(
    State(st): State<Arc<AppState>>,
    who: Authed,
    path: Path<String>,
    body: Json<StepBody>,
) -> Result<axum::Json<ReportAssessment>, ApiError> {
    let allowed = require(&st, &who, Permission::ReportMatters, "decide and file suspicious-matter reports").await?;
    let id = path.open(&allowed)?;
    let body = body.open(&allowed).await?;
    let config = st.response_policy.reporting.clone();
    Ok(axum::Json(st.registry.report_step(who.actor(), id, body.step, config, body.reason).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DraftQuery {
    /// `json` (default) or `text` (the form's parts in order, for the FIU's own system).
    pub format: Option<String>,
}

/// Exports the draft report, filled from the case, for the filer to complete (audited).
#[utoipa::path(post, path = "/v1/cases/{case_id}/report/draft", tag = "reporting", request_body = AssessBody,
    security(("bearer" = [])), params(("case_id" = String, Path, description = "The case"), DraftQuery),
    responses((status = 200, body = ReportDraft), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn draft(
    State(st): State<Arc<AppState>>,
    who: Authed,
    path: Path<String>,
    query: Query<DraftQuery>,
    body: Json<AssessBody>,
) -> Result<Response, ApiError> {
    let allowed = require(&st, &who, Permission::ReportMatters, "export suspicious-matter report drafts").await?;
    let id = path.open(&allowed)?;
    let q = query.open(&allowed)?;
    let body = body.open(&allowed).await?;
    let text = match q.format.as_deref() {
        None | Some("json") => false,
        Some("text") => true,
        Some(other) => return Err(ApiError::invalid("format", format!("{other:?}: json or text"))),
    };
    let config = st.response_policy.reporting.clone();
    let draft = st.registry.report_draft(who.actor(), id, config, body.reason).await?;
    Ok(if text {
        ([(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], draft.to_text()).into_response()
    } else {
        axum::Json(draft).into_response()
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReportsQuery {
    /// Only assessments still open (assessing or to file); default true.
    pub open: Option<bool>,
    /// 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

/// The compliance queue: open assessments first, soonest deadline first.
#[utoipa::path(get, path = "/v1/reports", tag = "reporting", params(ReportsQuery), security(("bearer" = [])),
    responses((status = 200, body = Vec<ReportAssessment>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(st): State<Arc<AppState>>,
    who: Authed,
    query: Query<ReportsQuery>,
) -> Result<axum::Json<Vec<ReportAssessment>>, ApiError> {
    let allowed = require(&st, &who, Permission::ReadReports, "read suspicious-matter reports").await?;
    let q = query.open(&allowed)?;
    let limit = crate::extract::list_limit(q.limit)?;
    let open = q.open.unwrap_or(true);
    Ok(axum::Json(read(&st, move |r| r.reports(open, limit)).await?))
}
