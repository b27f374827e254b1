//! Upbit and Bithumb 2.0: `Authorization: Bearer <JWT>`, HS256 (HS512 also seen), claims
//! `access_key`, one-time `nonce`, and when the request has parameters a `query_hash`: hex
//! SHA-512 of the query string — unescaped for Upbit, URL-encoded for Bithumb — or, for a JSON
//! body, of the body's members in order. Bithumb adds a millisecond `timestamp` claim.

use super::Parsed;
use crate::encoding::{bithumb_body_query, json_members, percent_decode, upbit_body_query};
use crate::snapshot::{KeyEntry, Material};
use crate::{Code, Credential, Family, Freshness, Request, VerifyConfig};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::Mac;
use keysentinel_domain::SigningScheme;
use serde::Deserialize;
use sha2::{Digest, Sha512};

#[derive(Deserialize)]
struct Header {
    alg: String,
}

#[derive(Deserialize)]
struct Claims {
    access_key: String,
    nonce: Option<String>,
    query_hash: Option<String>,
    query_hash_alg: Option<String>,
    timestamp: Option<serde_json::Value>,
}

pub(crate) struct Token {
    signing_input_len: usize,
    raw: String,
    sha512: bool,
    signature: Vec<u8>,
    claims: Claims,
}

const MAX_TOKEN: usize = 8 * 1024;

pub(crate) fn extract(auth: &str) -> Result<Credential<'static>, Code> {
    let token = auth.strip_prefix("Bearer ").ok_or(Code::Malformed)?.trim();
    if token.len() > MAX_TOKEN {
        return Err(Code::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(Code::Malformed);
    };
    let header: Header = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).map_err(|_| Code::Malformed)?)
        .map_err(|_| Code::Malformed)?;
    let sha512 = match header.alg.as_str() {
        "HS256" => false,
        "HS512" => true,
        // Never "none", never an asymmetric algorithm keyed with the shared secret.
        _ => return Err(Code::Malformed),
    };
    let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).map_err(|_| Code::Malformed)?)
        .map_err(|_| Code::Malformed)?;
    let signature = URL_SAFE_NO_PAD.decode(s).map_err(|_| Code::Malformed)?;
    if claims.access_key.is_empty() || claims.access_key.len() > 256 {
        return Err(Code::Malformed);
    }
    let access_key = claims.access_key.clone();
    let parsed = Token { signing_input_len: h.len() + 1 + p.len(), raw: token.to_owned(), sha512, signature, claims };
    Ok(Credential { family: Family::Jwt, access_key: access_key.into(), parsed: Parsed::Jwt(parsed) })
}

/// The string the query hash covers, or None when the request carries no parameters.
fn hash_input(scheme: SigningScheme, req: &Request) -> Result<Option<Vec<u8>>, Code> {
    if !req.query.is_empty() {
        return Ok(Some(match scheme {
            SigningScheme::Upbit => percent_decode(req.query).ok_or(Code::Malformed)?,
            _ => req.query.as_bytes().to_vec(),
        }));
    }
    match req.body {
        Some(body) if !body.iter().all(u8::is_ascii_whitespace) => {
            let members = json_members(body).ok_or(Code::Malformed)?;
            if members.is_empty() {
                return Ok(None);
            }
            Ok(Some(
                match scheme {
                    SigningScheme::Upbit => upbit_body_query(&members),
                    _ => bithumb_body_query(&members),
                }
                .into_bytes(),
            ))
        }
        _ => Ok(None),
    }
}

pub(crate) fn check<'r>(
    t: &Token,
    key: &KeyEntry,
    req: &Request<'r>,
    cfg: &VerifyConfig,
) -> Result<Freshness<'r>, Code> {
    let Material::Hmac { sha256, sha512, .. } = &key.material else { return Err(Code::WrongScheme) };
    let input = t.raw.as_bytes().get(..t.signing_input_len).ok_or(Code::Malformed)?;
    let ok = if t.sha512 {
        let mut mac = sha512.clone();
        mac.update(input);
        mac.verify_slice(&t.signature).is_ok()
    } else {
        let mut mac = sha256.clone();
        mac.update(input);
        mac.verify_slice(&t.signature).is_ok()
    };
    if !ok {
        return Err(Code::BadSignature);
    }
    // The parameters must be exactly those the client hashed: otherwise a signed token could be
    // replayed onto other parameters (another price, another withdrawal address).
    match (&t.claims.query_hash, hash_input(key.scheme, req)?) {
        (None, None) => {}
        (Some(_), None) if req.body.is_none() && !crate::schemes::params_method_is_get(req.method) => {
            return Err(Code::BodyRequired)
        }
        (Some(claimed), Some(input)) => {
            if t.claims.query_hash_alg.as_deref().is_some_and(|a| !a.eq_ignore_ascii_case("SHA512")) {
                return Err(Code::Malformed);
            }
            let expected = hex::encode(Sha512::digest(&input));
            if !subtle_eq(claimed.to_ascii_lowercase().as_bytes(), expected.as_bytes()) {
                return Err(Code::BadSignature);
            }
        }
        _ => return Err(Code::BadSignature),
    }
    let nonce = t.claims.nonce.as_deref().filter(|n| !n.is_empty() && n.len() <= 128).ok_or(Code::Malformed)?;
    if key.scheme == SigningScheme::Bithumb {
        let ts = match &t.claims.timestamp {
            Some(serde_json::Value::Number(n)) => n.as_i64(),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        }
        .ok_or(Code::Malformed)?;
        if ts >= req.now_ms + cfg.future_tolerance_ms || req.now_ms - ts > cfg.jwt_timestamp_window_ms {
            return Err(Code::StaleTimestamp);
        }
    }
    Ok(Freshness { nonce: Some(nonce.to_owned().into()) })
}

fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}
