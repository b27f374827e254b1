//! The evidence pack over HTTP, as JSON for machines and as a readable HTML document for the
//! owner, their counsel or a regulator (the HTML carries the digest; the JSON is what
//! `keysentinel audit verify-pack` checks).

use crate::error::{ApiError, ErrorBody};
use crate::extract::{require, Authed, Json, Path, Query};
use crate::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use keysentinel_domain::Permission;
use keysentinel_registry::EvidencePack;
use serde::Deserialize;
use serde_json::Value;
use std::fmt::Write;
use std::sync::Arc;
use utoipa::IntoParams;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PackQuery {
    /// `json` (default) or `html`.
    pub format: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PackBody {
    /// Why the pack is exported (a dispute, a regulator's request...); audited.
    pub reason: String,
}

/// Exports the case's evidence pack (the export is itself audited, with the pack's digest).
#[utoipa::path(post, path = "/v1/cases/{case_id}/evidence-pack", tag = "response", request_body = PackBody,
    params(("case_id" = String, Path, description = "The case"), PackQuery), security(("bearer" = [])),
    responses((status = 200, body = EvidencePack), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn evidence_pack(
    State(st): State<Arc<AppState>>,
    who: Authed,
    path: Path<String>,
    query: Query<PackQuery>,
    body: Json<PackBody>,
) -> Result<Response, ApiError> {
    let allowed = require(&st, &who, Permission::ReadAudit, "export evidence packs").await?;
    let id = path.open(&allowed)?;
    let q = query.open(&allowed)?;
    let body = body.open(&allowed).await?;
    let html = match q.format.as_deref() {
        None | Some("json") => false,
        Some("html") => true,
        Some(other) => return Err(ApiError::invalid("format", format!("{other:?}: json or html"))),
    };
    let pack = st.registry.evidence_pack(who.actor(), id, body.reason).await?;
    Ok(if html {
        ([(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")], render_html(&pack)).into_response()
    } else {
        axum::Json(pack).into_response()
    })
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn text(v: &Value) -> String {
    esc(v.as_str().map_or_else(|| v.to_string(), str::to_owned).as_str())
}

/// The pack as a document a person reads: what triggered the suspicion, what was reviewed,
/// what notice was given and when, whether funds were affected, how access can be restored.
pub fn render_html(pack: &EvidencePack) -> String {
    let case = &pack.body["case"];
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Evidence pack {id}</title>\
         <style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}td,th{{border:1px solid #ccc;padding:.3em;vertical-align:top}}\
         table{{border-collapse:collapse}}code{{word-break:break-all}}</style></head><body>\
         <h1>Evidence pack for case {id}</h1><p>Key <code>{key}</code> of account <code>{account}</code> ({segment}); \
         stage reached: <b>{stage}</b>; status: {status}; response policy {policy}.</p>",
        id = text(&case["case_id"]),
        key = text(&case["key_id"]),
        account = text(&case["account_id"]),
        segment = text(&case["segment"]),
        stage = text(&case["stage"]),
        status = text(&case["status"]),
        policy = text(&case["policy_version"]),
    );
    h.push_str("<h2>What triggered the suspicion</h2><table><tr><th>When</th><th>Stage</th><th>Risk</th><th>Indicators and evidence</th></tr>");
    for s in case["suspicions"].as_array().into_iter().flatten() {
        let findings: String = s["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| format!("<li><b>{}</b> (×{}): {}</li>", text(&f["indicator"]), f["count"], text(&f["evidence"])))
            .collect();
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><ul>{findings}</ul></td></tr>",
            text(&s["at"]),
            text(&s["stage"]),
            s["risk"]
        );
    }
    h.push_str("</table><h2>What was done and reviewed</h2><table><tr><th>When</th><th>Who</th><th>What</th><th>Detail</th></tr>");
    for e in case["history"].as_array().into_iter().flatten() {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            text(&e["at"]),
            text(&e["by"]),
            text(&e["what"]),
            text(&e["detail"])
        );
    }
    h.push_str("</table><h2>Notices given to the owner</h2><table><tr><th>Kind</th><th>Queued</th><th>Delivered</th><th>Attempts</th><th>Subject</th></tr>");
    for n in pack.body["notices"].as_array().into_iter().flatten() {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}<br>{}</td></tr>",
            text(&n["kind"]),
            text(&n["created_at"]),
            text(&n["delivered_at"]),
            n["attempts"],
            text(&n["en"]["subject"]),
            text(&n["ko"]["subject"])
        );
    }
    h.push_str(
        "</table><h2>Whether funds were affected</h2><p>keysentinel's actions (notices, suspension, revocation) \
        move no funds: they stop the key from signing further requests. The key's scopes at the time are listed below; \
        a key without the withdraw scope could not move funds out.</p>",
    );
    let key = &pack.body["key"];
    let _ = write!(h, "<p>Scopes: <code>{}</code>; status now: {}.</p>", text(&key["scopes"]), text(&key["status"]));
    h.push_str("<h2>How access can be restored</h2><p>The stopped key stays dead. After re-verifying their identity the owner may ask \
        for a new key: an analyst reviews the request and two approvers, neither the requester nor the reviewer, approve it; the new key \
        has the same or tighter grants and an IP allowlist.</p>");
    if let Some(r) = case["reinstatement"].as_object() {
        let _ = write!(
            h,
            "<p>Reinstatement: {} (new key <code>{}</code>).</p>",
            text(&r["status"].clone()),
            text(&r["new_key"].clone())
        );
    }
    let _ = write!(
        h,
        "<h2>Integrity</h2><p>{n} audit entries about this case are included with inclusion proofs against the signed checkpoint of \
         log <code>{origin}</code>. Body digest (SHA-256): <code>{digest}</code>, recorded in audit entry {seq}. \
         Check the JSON pack offline with <code>keysentinel audit verify-pack FILE --log-key KEY</code>.</p></body></html>",
        n = pack.entries.len(),
        origin = esc(&pack.log_origin),
        digest = esc(&pack.digest),
        seq = pack.export.seq,
    );
    h
}
