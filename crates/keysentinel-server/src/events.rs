//! Detection over HTTP: `POST /v1/events` takes batches of event-format v1 records from the
//! exchange's own systems (orders, logins, withdrawals, complaints, registry records), and
//! `GET /v1/decisions` shows what the engine decided.

use crate::detection::{Posted, Unavailable};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{require, Authed, Body, Query};
use crate::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use keysentinel_detect::event::parse_event;
use keysentinel_detect::Stage;
use keysentinel_domain::Permission;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// A batch of events may carry up to this many bytes.
pub const EVENTS_LIMIT: usize = 16 * 1024 * 1024;
/// Line errors listed in a reply; the rest are counted.
const LISTED_ERRORS: usize = 100;

#[derive(Debug, Serialize, ToSchema)]
pub struct EventsReply {
    /// Records taken for detection.
    pub accepted: usize,
    /// Records whose `event_id` was already taken (a retry): acknowledged, not ingested again.
    pub duplicates: usize,
    /// Lines that are not valid event-format v1 records, skipped.
    pub rejected: usize,
    /// The first 100 rejected lines, with why.
    pub errors: Vec<LineError>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LineError {
    /// 1-based line number in the request body.
    pub line: usize,
    pub error: String,
}

fn unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "detection_disabled",
        "detection is not running on this node (serve --no-detection)",
    )
}

/// Takes a batch of NDJSON records (docs/events.md) for detection. Malformed lines are
/// reported with their line numbers and skipped; records with an `event_id` already taken are
/// acknowledged as duplicates, so a producer can safely retry a batch. When the detection queue
/// has no room for the whole batch, nothing is taken and the answer is 429 with `Retry-After`.
/// The answer 202 comes once the batch is written to the detection journal and synced; when it
/// cannot be written, 503 and nothing is taken or remembered.
#[utoipa::path(post, path = "/v1/events", tag = "detection", security(("bearer" = [])),
    request_body(content = String, content_type = "application/x-ndjson", description = "One event-format v1 record per line"),
    responses((status = 202, body = EventsReply), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn ingest_events(State(st): State<Arc<AppState>>, who: Authed, body: Body) -> Result<Response, ApiError> {
    let allowed = require(&st, &who, Permission::IngestEvents, "send events").await?;
    let content_type = body.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !matches!(media, "application/x-ndjson" | "application/ndjson" | "application/jsonl" | "text/plain") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_events",
            "send the events as application/x-ndjson, one record per line",
        ));
    }
    let body = body.bytes(&allowed).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_events", format!("the body is not UTF-8: {e}")))?;
    let mut events = Vec::new();
    let (mut rejected, mut errors) = (0, Vec::new());
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match parse_event(line) {
            // The line itself is what the journal keeps of the record (with its event id).
            Ok(e) => events.push(Posted {
                id: e.event_id.map(|id| id.into_owned()),
                record: e.record.into_owned(),
                line: Some(line.to_owned()),
            }),
            Err(e) => {
                rejected += 1;
                if errors.len() < LISTED_ERRORS {
                    errors.push(LineError { line: i + 1, error: e.to_string() });
                }
            }
        }
    }
    // An empty batch is a producer bug (a truncated file, a wrong variable), not a batch of
    // nothing: acknowledging it would hide the loss.
    if events.is_empty() && rejected == 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_events",
            "the batch is empty: send at least one event-format v1 record, one per line",
        ));
    }
    if events.is_empty() && rejected > 0 {
        let first = errors.first().map_or(String::new(), |e| format!(" (line {}: {})", e.line, e.error));
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_events",
            format!("no line is a valid event-format v1 record{first}"),
        ));
    }
    // Checked after the body so that a malformed batch gets the same answer on every node.
    let detection = st.detection.as_ref().ok_or_else(unavailable)?;
    let ack = match detection.batch_posted(events) {
        Ok(ack) => ack,
        Err(full) => {
            let error = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "queue_full",
                format!(
                    "the detection queue holds {} of {} records: nothing of this batch was taken; retry it",
                    full.pending, full.capacity
                ),
            );
            return Ok(([(header::RETRY_AFTER, "1")], error).into_response());
        }
    };
    // 202 only once the batch is on disk (when the node keeps detection state): a producer's
    // retry after a crash is then recognised as a duplicate.
    match ack.taken().await {
        Ok(taken) => Ok((
            StatusCode::ACCEPTED,
            axum::Json(EventsReply { accepted: taken.accepted, duplicates: taken.duplicates, rejected, errors }),
        )
            .into_response()),
        Err(Unavailable(why)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "detection_unavailable",
            format!("{why}: nothing of this batch was taken; retry it"),
        )),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DecisionQuery {
    /// Only this key's decisions.
    pub key_id: Option<String>,
    /// Only decisions at this level or above: monitor, warn, reverify, invalidate.
    pub level: Option<String>,
    /// At most this many, 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

/// One decision of the detection engine (the `replay` output format).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DecisionView {
    pub ts: String,
    pub key_id: String,
    pub account_id: String,
    pub risk: f64,
    /// monitor | warn | reverify | invalidate
    pub level: String,
    pub reasons: Vec<ReasonView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReasonView {
    pub indicator: String,
    pub count: u32,
    pub evidence: String,
}

impl From<&keysentinel_detect::Decision> for DecisionView {
    fn from(d: &keysentinel_detect::Decision) -> Self {
        Self {
            ts: keysentinel_detect::event::format_rfc3339_ms(d.ts),
            key_id: d.key_id.clone(),
            account_id: d.account_id.clone(),
            risk: (f64::from(d.risk) * 1000.0).round() / 1000.0,
            level: d.level.as_str().into(),
            reasons: d
                .reasons
                .iter()
                .map(|r| ReasonView {
                    indicator: r.indicator.as_str().into(),
                    count: r.count,
                    evidence: r.evidence.clone(),
                })
                .collect(),
        }
    }
}

/// The engine's most recent decisions (the last 10 000 are kept in memory), newest first.
#[utoipa::path(get, path = "/v1/decisions", tag = "detection", params(DecisionQuery), security(("bearer" = [])),
    responses((status = 200, body = Vec<DecisionView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn list_decisions(
    State(st): State<Arc<AppState>>,
    who: Authed,
    query: Query<DecisionQuery>,
) -> Result<axum::Json<Vec<DecisionView>>, ApiError> {
    let allowed = require(&st, &who, Permission::ReadInventory, "read detection decisions").await?;
    let q = query.open(&allowed)?;
    let detection = st.detection.as_ref().ok_or_else(unavailable)?;
    let level = match q.level.as_deref() {
        None => None,
        Some(l) => Some(Stage::ALL.into_iter().find(|x| x.as_str() == l).ok_or_else(|| {
            ApiError::invalid("level", format!("{l:?} is not a level: monitor, warn, reverify or invalidate"))
        })?),
    };
    let limit = crate::extract::list_limit(q.limit)? as usize;
    let found = detection.recent(q.key_id.as_deref(), level, limit);
    Ok(axum::Json(found.iter().map(DecisionView::from).collect()))
}
