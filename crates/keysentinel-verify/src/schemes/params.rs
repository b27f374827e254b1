//! Binance and Korbit: the API key in a header, and `signature` appended last to the query
//! string or the form body, over everything before it (Binance's "totalParams" is the query
//! string followed by the body). HMAC-SHA256 in hex, or Ed25519 in (URL-encoded) base64.
//! Freshness: `timestamp` (ms) within `recvWindow`.

use super::{hex_exact, Parsed};
use crate::encoding::{param, percent_decode, split_signature};
use crate::snapshot::{KeyEntry, Material};
use crate::{Code, Credential, Family, Freshness, Request, VerifyConfig};
use base64::Engine;
use hmac::Mac;

pub(crate) struct Signed<'r> {
    pub(crate) access_key: &'r str,
    /// The signed bytes, in two parts: query (minus signature) then body (minus signature).
    query: &'r str,
    body: &'r [u8],
    signature: &'r str,
}

fn is_body_method(method: &str) -> bool {
    !["GET", "HEAD"].iter().any(|m| m.eq_ignore_ascii_case(method))
}

pub(crate) fn extract<'r>(req: &Request<'r>, key: &'r str, family: Family) -> Result<Credential<'r>, Code> {
    if key.is_empty() || key.len() > 256 {
        return Err(Code::Malformed);
    }
    let signed = if let Some((query, signature)) = split_signature(req.query) {
        Signed { access_key: key, query, body: req.body.unwrap_or_default(), signature }
    } else {
        match req.body {
            Some(body) => {
                let text = std::str::from_utf8(body).map_err(|_| Code::Malformed)?;
                let (body, signature) = split_signature(text).ok_or(Code::Malformed)?;
                Signed { access_key: key, query: req.query, body: body.as_bytes(), signature }
            }
            // The signature is not in the query, so it is in a body we were not given.
            None if is_body_method(req.method) => return Err(Code::BodyRequired),
            None => return Err(Code::Malformed),
        }
    };
    Ok(Credential { family, parsed: Parsed::Params(signed) })
}

/// `timestamp` and `recvWindow` from the query or the body (body wins, as it comes last).
fn number(s: &Signed, name: &str) -> Result<Option<i64>, Code> {
    let body = std::str::from_utf8(s.body).map_err(|_| Code::Malformed)?;
    match param(body, name).or_else(|| param(s.query, name)) {
        None => Ok(None),
        Some(v) => v.parse::<i64>().map(Some).map_err(|_| Code::Malformed),
    }
}

pub(crate) fn check<'c, 'r>(
    s: &'c Signed<'r>,
    key: &KeyEntry,
    req: &Request<'r>,
    cfg: &VerifyConfig,
) -> Result<Freshness<'c>, Code> {
    let ok = match &key.material {
        Material::Hmac { sha256, .. } => {
            let sig: [u8; 32] = hex_exact(s.signature).ok_or(Code::BadSignature)?;
            let mut mac = sha256.clone();
            mac.update(s.query.as_bytes());
            mac.update(s.body);
            mac.verify_slice(&sig).is_ok()
        }
        Material::Ed25519(public) => {
            let decoded = percent_decode(s.signature).ok_or(Code::BadSignature)?;
            let raw = base64::engine::general_purpose::STANDARD.decode(&decoded).map_err(|_| Code::BadSignature)?;
            let sig = ed25519_dalek::Signature::from_slice(&raw).map_err(|_| Code::BadSignature)?;
            let msg: std::borrow::Cow<[u8]> = if s.body.is_empty() {
                s.query.as_bytes().into()
            } else {
                [s.query.as_bytes(), s.body].concat().into()
            };
            public.verify_strict(&msg, &sig).is_ok()
        }
    };
    if !ok {
        return Err(Code::BadSignature);
    }
    // The signature is in the query and the gateway did not forward the body: Binance and Korbit
    // sign query and body together, so an unseen body could add parameters nobody signed.
    if req.body.is_none() && !super::params_method_is_get(req.method) && !cfg.upstream_ignores_unsigned_body {
        return Err(Code::BodyRequired);
    }
    let timestamp = number(s, "timestamp")?.ok_or(Code::Malformed)?;
    let window = number(s, "recvWindow")?.unwrap_or(cfg.default_recv_window_ms);
    if window <= 0 || window > cfg.max_recv_window_ms {
        return Err(Code::Malformed);
    }
    if timestamp >= req.now_ms + cfg.future_tolerance_ms || req.now_ms - timestamp > window {
        return Err(Code::StaleTimestamp);
    }
    Ok(Freshness::default())
}
