//! Coinone v2.1: `X-COINONE-PAYLOAD` = base64(JSON with `access_token`, uuid `nonce` and the
//! parameters), `X-COINONE-SIGNATURE` = hex HMAC-SHA512 of the payload keyed with the secret
//! upper-cased. The body is the payload: it must be exactly the signed payload, and a request
//! whose body was not forwarded is `BODY_REQUIRED` (unless the upstream acts on the header alone).

use super::{hex_exact, Parsed};
use crate::snapshot::{KeyEntry, Material};
use crate::{Code, Credential, Family, Freshness, Request, VerifyConfig};
use base64::Engine;
use hmac::Mac;
use serde::Deserialize;

#[derive(Deserialize)]
struct Body {
    access_token: String,
    nonce: serde_json::Value,
}

pub(crate) struct Payload<'r> {
    pub(crate) access_token: String,
    raw: &'r str,
    signature: [u8; 64],
    nonce: String,
}

pub(crate) fn extract<'r>(req: &Request<'r>, payload: &'r str) -> Result<Credential<'r>, Code> {
    if payload.len() > 64 * 1024 {
        return Err(Code::Malformed);
    }
    let signature = req.header("x-coinone-signature").and_then(hex_exact::<64>).ok_or(Code::Malformed)?;
    let json = base64::engine::general_purpose::STANDARD.decode(payload).map_err(|_| Code::Malformed)?;
    let body: Body = serde_json::from_slice(&json).map_err(|_| Code::Malformed)?;
    let nonce = match body.nonce {
        serde_json::Value::String(s) => s,
        serde_json::Value::Number(n) => n.to_string(),
        _ => return Err(Code::Malformed),
    };
    if body.access_token.is_empty() || body.access_token.len() > 256 || nonce.is_empty() || nonce.len() > 128 {
        return Err(Code::Malformed);
    }
    Ok(Credential {
        family: Family::Coinone,
        parsed: Parsed::Coinone(Payload { access_token: body.access_token, raw: payload, signature, nonce }),
    })
}

pub(crate) fn check<'c, 'r>(
    p: &'c Payload<'r>,
    key: &KeyEntry,
    req: &Request<'r>,
    cfg: &VerifyConfig,
) -> Result<Freshness<'c>, Code> {
    let Material::Hmac { sha512_upper, .. } = &key.material else { return Err(Code::WrongScheme) };
    let mut mac = sha512_upper.clone();
    mac.update(p.raw.as_bytes());
    if mac.verify_slice(&p.signature).is_err() {
        return Err(Code::BadSignature);
    }
    match req.body {
        Some(body) if body.trim_ascii() != p.raw.as_bytes() => return Err(Code::BadSignature),
        Some(_) => {}
        // Coinone's backend reads the order from the body: one keysentinel was not shown could
        // say anything (qty 5 under a payload signed for 0.0001), unless the deployment's
        // upstream acts on the signed payload header alone.
        None if !cfg.upstream_ignores_unsigned_body => return Err(Code::BodyRequired),
        None => {}
    }
    Ok(Freshness { nonce: Some(&p.nonce) })
}
