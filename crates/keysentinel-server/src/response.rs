//! From detection to response: every decision of the engine becomes a suspicion the registry
//! responds to under the response policy (cases, suspensions, revocations — audited), and the
//! case API.

use crate::error::{ApiError, ErrorBody};
use crate::extract::{require, require_any, Authed, Json, Path, Query};
use crate::routes::read;
use crate::AppState;
use axum::extract::State;
use keysentinel_detect::event::{Confirmer, Record};
use keysentinel_detect::Decision;
use keysentinel_domain::{
    AccessKey, AccountId, AnswerChannel, Case, CaseCommand, CaseStatus, Finding, KeyBaseline, Observation, Permission,
    RelatedAccount, Resolution, ResponsePolicy, Share, Stage, Suspicion,
};
use keysentinel_registry::{Registry, ReinstatementRequest};
use keysentinel_store::CaseFilter;
use serde::Deserialize;
use std::borrow::Cow;
use std::sync::Arc;
use tokio::sync::mpsc;
use utoipa::IntoParams;

/// The decision as the registry's response sees it; None for keys that are not keysentinel
/// access keys (events may name keys managed elsewhere).
pub fn suspicion(d: &Decision) -> Option<Suspicion> {
    Some(Suspicion {
        at: time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(d.ts) * 1_000_000).ok()?,
        key_id: AccessKey::parse(&d.key_id).ok()?,
        stage: d.level,
        risk: d.risk,
        findings: d
            .reasons
            .iter()
            .map(|r| Finding {
                indicator: r.indicator,
                count: r.count,
                evidence: r.evidence.clone(),
                observed: r.observed.iter().map(observation).collect(),
            })
            .collect(),
        compromise: d.reasons.iter().any(|r| r.indicator.unambiguous()),
        detector: concat!("keysentinel-detect ", env!("CARGO_PKG_VERSION")).into(),
        related_accounts: d
            .related
            .iter()
            .map(|r| RelatedAccount { account_id: r.account_id.clone(), via: r.via.clone() })
            .collect(),
        baseline: Some(baseline(&d.baseline)),
    })
}

fn observation(o: &keysentinel_detect::Observed) -> Observation {
    Observation {
        ip: o.ip,
        asn: o.asn,
        country: o.country.map(|c| String::from_utf8_lossy(&c).into_owned()),
        client: o.client.clone(),
        device: o.device.clone(),
    }
}

/// What a case's evidence showed, confirmed as the owner's (by the owner answering a notice,
/// or by an analyst closing the case as a false positive): detection takes its addresses,
/// networks, countries, clients and devices as the owner's, so the same honest pattern does not
/// open a second case.
pub fn confirmation(case: &Case, by: Confirmer, text: &str, now: time::OffsetDateTime) -> Record<'static> {
    const MOST: usize = 32;
    let observed = case.suspicions.iter().flat_map(|s| &s.findings).flat_map(|f| &f.observed);
    let mut ips = Vec::new();
    let mut asns = Vec::new();
    let mut countries = Vec::new();
    let mut clients: Vec<Cow<'static, str>> = Vec::new();
    let mut devices: Vec<Cow<'static, str>> = Vec::new();
    fn add<T: PartialEq>(list: &mut Vec<T>, x: T) {
        if list.len() < MOST && !list.contains(&x) {
            list.push(x);
        }
    }
    for o in observed {
        add(&mut ips, o.ip);
        if let Some(a) = o.asn {
            add(&mut asns, a);
        }
        if let Some([a, b]) = o.country.as_deref().map(str::as_bytes).and_then(|c| <[u8; 2]>::try_from(c).ok()) {
            add(&mut countries, [a, b]);
        }
        if let Some(c) = &o.client {
            add(&mut clients, Cow::Owned(c.clone()));
        }
        if let Some(d) = &o.device {
            add(&mut devices, Cow::Owned(d.clone()));
        }
    }
    Record::Confirmation {
        ts: i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX),
        account_id: Cow::Owned(case.account_id.as_str().to_owned()),
        key_id: Some(Cow::Owned(case.key_id.as_str().to_owned())),
        by,
        ips,
        asns,
        countries,
        clients,
        devices,
        text: Some(Cow::Owned(text.to_owned())),
    }
}

fn baseline(b: &keysentinel_detect::Baseline) -> KeyBaseline {
    let ms = |t: i64| time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t) * 1_000_000).ok();
    KeyBaseline {
        requests: b.requests,
        since: b.since_ms.and_then(ms),
        networks: b.networks.iter().map(|(asn, x)| Share { value: format!("AS{asn}"), share: *x }).collect(),
        countries: b.countries.iter().map(|(c, x)| Share { value: c.clone(), share: *x }).collect(),
        clients: u32::try_from(b.clients).unwrap_or(u32::MAX),
    }
}

/// Starts the responder: returns the sink to give detection, and the task that applies the
/// policy to each decision in order. A failed response is logged and the next one goes on: the
/// decision itself stays in `GET /v1/decisions`.
pub fn spawn_responder(
    registry: Arc<Registry>,
    policy: Arc<ResponsePolicy>,
) -> (crate::detection::DecisionSink, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Suspicion>();
    let sink: crate::detection::DecisionSink = Box::new(move |d: &Decision| {
        if d.level >= Stage::Warn {
            if let Some(s) = suspicion(d) {
                let _ = tx.send(s);
            }
        }
    });
    let task = tokio::spawn(async move {
        while let Some(s) = rx.recv().await {
            let key = s.key_id.clone();
            match registry.respond(s, policy.clone()).await {
                Ok(Some(case)) => tracing::info!(
                    case_id = %case.case_id, key_id = %key, stage = %case.stage, status = case.status.as_str(),
                    enforced = case.enforced, "case updated"
                ),
                Ok(None) => {}
                Err(e) => tracing::error!(key_id = %key, error = %e, "response to a detection failed"),
            }
        }
    });
    (sink, task)
}

/// Starts the sweep that applies stages held for the owner's answer once their window ends.
pub fn spawn_release(registry: Arc<Registry>, policy: Arc<ResponsePolicy>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
        loop {
            tick.tick().await;
            match registry.release_held(policy.clone()).await {
                Ok(moved) => {
                    for case in moved {
                        tracing::info!(case_id = %case.case_id, key_id = %case.key_id, stage = %case.stage,
                            status = case.status.as_str(), "held stage applied after the answer window");
                    }
                }
                Err(e) => tracing::error!(error = %e, "applying held stages failed"),
            }
        }
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CaseQuery {
    /// open | awaiting_decision | closed
    pub status: Option<String>,
    pub key_id: Option<String>,
    pub account_id: Option<String>,
    /// Only cases not closed whose `due_at` has passed (SLA breaches), most overdue first.
    pub overdue: Option<bool>,
    /// 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

/// Cases, newest first (or, with `overdue=true`, the SLA breaches, most overdue first).
#[utoipa::path(get, path = "/v1/cases", tag = "response", params(CaseQuery), security(("bearer" = [])),
    responses((status = 200, body = Vec<Case>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_cases(
    State(st): State<Arc<AppState>>,
    who: Authed,
    query: Query<CaseQuery>,
) -> Result<axum::Json<Vec<Case>>, ApiError> {
    let allowed = require(&st, &who, Permission::ReadInventory, "read cases").await?;
    let q = query.open(&allowed)?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(
            [CaseStatus::Open, CaseStatus::AwaitingDecision, CaseStatus::Closed]
                .into_iter()
                .find(|x| x.as_str() == s)
                .ok_or_else(|| ApiError::invalid("status", format!("{s:?}: open, awaiting_decision or closed")))?,
        ),
    };
    let key_id = q
        .key_id
        .as_deref()
        .map(AccessKey::parse)
        .transpose()
        .map_err(|e| ApiError::invalid("key_id", e.to_string()))?;
    let account_id = q
        .account_id
        .as_deref()
        .map(AccountId::parse)
        .transpose()
        .map_err(|e| ApiError::invalid("account_id", e.to_string()))?;
    let limit = crate::extract::list_limit(q.limit)?;
    let filter = CaseFilter { status, key_id, account_id, limit };
    if q.overdue != Some(true) {
        return Ok(axum::Json(read(&st, move |r| r.cases(filter)).await?));
    }
    if status == Some(CaseStatus::Closed) {
        return Err(ApiError::invalid("status", "a closed case is never overdue"));
    }
    Ok(axum::Json(read(&st, move |r| r.overdue_cases(filter)).await?))
}

/// One case with its evidence: every detection that moved it, its history and policy version.
#[utoipa::path(get, path = "/v1/cases/{case_id}", tag = "response", security(("bearer" = [])),
    params(("case_id" = String, Path, description = "The case")),
    responses((status = 200, body = Case), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_case(
    State(st): State<Arc<AppState>>,
    who: Authed,
    path: Path<String>,
) -> Result<axum::Json<Case>, ApiError> {
    let allowed = require(&st, &who, Permission::ReadInventory, "read cases").await?;
    let id = path.open(&allowed)?;
    Ok(axum::Json(read(&st, move |r| r.case(&id)).await?))
}

/// The case's group: the accounts its detections linked to the key's (shared addresses or
/// devices, documented relationships, coinciding orders), each with its own cases — what the
/// playbook's review of related accounts works from.
#[utoipa::path(get, path = "/v1/cases/{case_id}/related", tag = "response", security(("bearer" = [])),
    params(("case_id" = String, Path, description = "The case")),
    responses((status = 200, body = Vec<keysentinel_registry::LinkedAccount>), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn related(
    State(st): State<Arc<AppState>>,
    who: Authed,
    path: Path<String>,
) -> Result<axum::Json<Vec<keysentinel_registry::LinkedAccount>>, ApiError> {
    let allowed = require(&st, &who, Permission::ReadInventory, "read cases").await?;
    let id = path.open(&allowed)?;
    Ok(axum::Json(read(&st, move |r| r.case_related(&id)).await?))
}

/// An analyst's step on a case, with the reason recorded in the audit log.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CaseStep {
    #[serde(flatten)]
    pub command: CaseCommand,
    /// Why (required).
    pub reason: String,
}

/// Works a case: `approve` or `dismiss` the action the policy queued (approving takes it on the
/// key), `assign` it, add a `note`, or `close` it with a resolution.
#[utoipa::path(post, path = "/v1/cases/{case_id}/commands", tag = "response", request_body = CaseStep, security(("bearer" = [])),
    params(("case_id" = String, Path, description = "The case")),
    responses((status = 200, body = Case), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn case_command(
    State(st): State<Arc<AppState>>,
    who: Authed,
    path: Path<String>,
    body: Json<CaseStep>,
) -> Result<axum::Json<Case>, ApiError> {
    // The step decides the permission, so the body must be read to know it: a role that can take
    // none of the steps is refused before that (and learns nothing from the parser).
    let allowed = require_any(
        &st,
        &who,
        &[Permission::RevokeKeys, Permission::ReportMatters, Permission::ContainKeys],
        "work cases",
    )
    .await?;
    let id = path.open(&allowed)?;
    let step = body.open(&allowed).await?;
    // Taking a queued revocation needs the right to revoke; every other step on a case needs the
    // right to contain keys (analysts and admins).
    let (permission, what) = match step.command {
        CaseCommand::Approve | CaseCommand::Restrict { action: keysentinel_domain::Action::Revoke } => {
            (Permission::RevokeKeys, "approve or take a case's action")
        }
        // Lifting a hold lets retention purge the key's logs: the compliance officer's call.
        CaseCommand::ReleaseHold { .. } => (Permission::ReportMatters, "release legal holds"),
        _ => (Permission::ContainKeys, "work cases"),
    };
    require(&st, &who, permission, what).await?;
    let dismissed = matches!(step.command, CaseCommand::Close { resolution: Resolution::FalsePositive });
    let reason = step.reason.clone();
    let case = st.registry.case_command(who.actor(), id, step.command, step.reason).await?;
    if dismissed {
        // The analyst found it honest: what the case saw is the owner's from now on.
        if let Some(d) = &st.detection {
            d.registry(confirmation(&case, Confirmer::Analyst, &reason, st.registry.now()));
        }
    }
    Ok(axum::Json(case))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerBody {
    /// The owner's answer, in their words ("it is me, travelling in Japan until the 12th").
    pub text: String,
    pub channel: AnswerChannel,
    /// The owner says the access the case names was theirs.
    pub confirms: bool,
}

/// Records the owner's answer to a case's notice, as the exchange's customer channel or
/// support received it. A heavier stage held for the answer then goes to an analyst rather
/// than being taken automatically; with `confirms`, detection takes the case's addresses,
/// networks, clients and devices as the owner's (evidence that counts against suspicion, not
/// a pardon: compromise is never held, and new evidence elsewhere still counts).
#[utoipa::path(post, path = "/v1/cases/{case_id}/answer", tag = "response", request_body = AnswerBody,
    security(("bearer" = [])), params(("case_id" = String, Path, description = "The case")),
    responses((status = 200, body = Case), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn answer(
    State(st): State<Arc<AppState>>,
    who: Authed,
    path: Path<String>,
    body: Json<AnswerBody>,
) -> Result<axum::Json<Case>, ApiError> {
    let allowed = require(&st, &who, Permission::ContainKeys, "file owners' answers").await?;
    let id = path.open(&allowed)?;
    let body = body.open(&allowed).await?;
    let AnswerBody { text, channel, confirms } = body;
    let case = st.registry.answer(who.actor(), id, channel, text.clone(), confirms).await?;
    if confirms {
        if let Some(d) = &st.detection {
            d.registry(confirmation(&case, Confirmer::Owner, &text, st.registry.now()));
        }
    }
    Ok(axum::Json(case))
}

/// The owner notices of a case, with their delivery status.
#[utoipa::path(get, path = "/v1/cases/{case_id}/notices", tag = "response", security(("bearer" = [])),
    params(("case_id" = String, Path, description = "The case")),
    responses((status = 200, body = Vec<keysentinel_domain::Notice>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn case_notices(
    State(st): State<Arc<AppState>>,
    who: Authed,
    path: Path<String>,
) -> Result<axum::Json<Vec<keysentinel_domain::Notice>>, ApiError> {
    let allowed = require(&st, &who, Permission::ReadInventory, "read notices").await?;
    let id = path.open(&allowed)?;
    Ok(axum::Json(read(&st, move |r| r.case(&id).and_then(|c| r.notices(&c.case_id))).await?))
}

/// Files the owner's request to get access back after re-verifying (support files it for the
/// owner): their explanation, evidence references, and the new key's grants — read and/or
/// trade among the old key's, with an IP allowlist.
#[utoipa::path(post, path = "/v1/cases/{case_id}/reinstatement", tag = "response", request_body = ReinstatementRequest,
    security(("bearer" = [])), params(("case_id" = String, Path, description = "The case")),
    responses((status = 200, body = Case), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn request_reinstatement(
    State(st): State<Arc<AppState>>,
    who: Authed,
    path: Path<String>,
    body: Json<ReinstatementRequest>,
) -> Result<axum::Json<Case>, ApiError> {
    let allowed = require(&st, &who, Permission::ContainKeys, "file reinstatement requests").await?;
    let id = path.open(&allowed)?;
    let req = body.open(&allowed).await?;
    Ok(axum::Json(st.registry.request_reinstatement(who.actor(), id, req).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewBody {
    /// Recommend the request to the approvers (true) or reject it (false).
    pub approve: bool,
    /// The analyst's assessment (required; audited).
    pub note: String,
}

/// An analyst's review of a reinstatement request (not the analyst who filed it).
#[utoipa::path(post, path = "/v1/cases/{case_id}/reinstatement/review", tag = "response", request_body = ReviewBody,
    security(("bearer" = [])), params(("case_id" = String, Path, description = "The case")),
    responses((status = 200, body = Case), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn review_reinstatement(
    State(st): State<Arc<AppState>>,
    who: Authed,
    path: Path<String>,
    body: Json<ReviewBody>,
) -> Result<axum::Json<Case>, ApiError> {
    let allowed = require(&st, &who, Permission::ContainKeys, "review reinstatement requests").await?;
    let id = path.open(&allowed)?;
    let body = body.open(&allowed).await?;
    Ok(axum::Json(st.registry.review_reinstatement(who.actor(), id, body.approve, body.note).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    /// Why (required; audited).
    pub note: String,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Approved {
    pub case: Case,
    /// The new key, after the second approval; its HMAC secret is shown here once.
    pub issued: Option<keysentinel_registry::IssuedKey>,
}

/// An approver's approval of a reviewed reinstatement; the second distinct approver (neither
/// the requester nor the reviewer) issues the new key.
#[utoipa::path(post, path = "/v1/cases/{case_id}/reinstatement/approve", tag = "response", request_body = ApproveBody,
    security(("bearer" = [])), params(("case_id" = String, Path, description = "The case")),
    responses((status = 200, body = Approved), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn approve_reinstatement(
    State(st): State<Arc<AppState>>,
    who: Authed,
    path: Path<String>,
    body: Json<ApproveBody>,
) -> Result<axum::Json<Approved>, ApiError> {
    let allowed = require(&st, &who, Permission::ApproveGrant, "approve reinstatements").await?;
    let id = path.open(&allowed)?;
    let body = body.open(&allowed).await?;
    let (case, issued) = st.registry.approve_reinstatement(who.actor(), id, body.note).await?;
    Ok(axum::Json(Approved { case, issued }))
}

/// The response policy in force.
#[utoipa::path(get, path = "/v1/response-policy", tag = "response", security(("bearer" = [])),
    responses((status = 200, body = ResponsePolicy), (status = 403, body = ErrorBody)))]
pub async fn get_response_policy(
    State(st): State<Arc<AppState>>,
    who: Authed,
) -> Result<axum::Json<ResponsePolicy>, ApiError> {
    require(&st, &who, Permission::ReadInventory, "read the response policy").await?;
    Ok(axum::Json((*st.response_policy).clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(ip: [u8; 4], asn: u32, client: &str) -> Observation {
        Observation {
            ip: ip.into(),
            asn: Some(asn),
            country: Some("KR".into()),
            client: Some(client.into()),
            device: Some("pc-1".into()),
        }
    }

    #[test]
    fn a_dismissed_case_confirms_everything_its_evidence_observed_once() {
        let now = time::OffsetDateTime::from_unix_timestamp(1_764_300_000).unwrap();
        let key = AccessKey::parse("ksk_NGOF1b4l7WtHWS36OfnWN06qth1bZc0cufHT").unwrap();
        let mut case = Case::open(
            "case-1".into(),
            key.clone(),
            AccountId::parse("acct-1").unwrap(),
            keysentinel_domain::Segment::Retail,
            now,
        );
        let finding = |observed| Finding {
            indicator: keysentinel_domain::Indicator::Unfamiliar,
            count: 1,
            evidence: "x".into(),
            observed,
        };
        for findings in [
            vec![finding(vec![observed([203, 0, 113, 7], 4766, "ccxt")])],
            vec![finding(vec![observed([203, 0, 113, 7], 4766, "ccxt"), observed([198, 51, 100, 2], 9318, "Mozilla")])],
        ] {
            case.suspicions.push(Suspicion {
                at: now,
                key_id: key.clone(),
                stage: Stage::Warn,
                risk: 0.6,
                findings,
                compromise: false,
                detector: "test".into(),
                related_accounts: vec![],
                baseline: None,
            });
        }
        let Record::Confirmation { ts, account_id, key_id, by, ips, asns, countries, clients, devices, text } =
            confirmation(&case, Confirmer::Analyst, "home and phone", now)
        else {
            panic!("not a confirmation");
        };
        assert_eq!((ts, account_id.as_ref(), key_id.as_deref()), (1_764_300_000_000, "acct-1", Some(key.as_str())));
        assert_eq!(by, Confirmer::Analyst);
        assert_eq!(ips, [std::net::IpAddr::from([203, 0, 113, 7]), [198, 51, 100, 2].into()], "each address once");
        assert_eq!(asns, [4766, 9318]);
        assert_eq!(countries, [*b"KR"]);
        assert_eq!(clients, ["ccxt", "Mozilla"]);
        assert_eq!(devices, ["pc-1"]);
        assert_eq!(text.as_deref(), Some("home and phone"));
    }
}
