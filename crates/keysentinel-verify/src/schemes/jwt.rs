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
use std::borrow::Cow;

#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// Claims, borrowed from the decoded payload where they need no unescaping.
#[derive(Deserialize)]
struct Claims<'a> {
    #[serde(borrow)]
    access_key: Cow<'a, str>,
    #[serde(borrow)]
    nonce: Option<Cow<'a, str>>,
    #[serde(borrow)]
    query_hash: Option<Cow<'a, str>>,
    #[serde(borrow)]
    query_hash_alg: Option<Cow<'a, str>>,
    timestamp: Option<serde_json::Value>,
}

/// What the check needs of the claims.
struct Checked {
    nonce: Option<String>,
    query_hash: Option<[u8; 64]>,
    query_hash_alg_ok: bool,
    timestamp: Option<i64>,
}

pub(crate) struct Token<'r> {
    /// `header.payload`: the bytes the signature covers.
    signing_input: &'r str,
    sha512: bool,
    signature: [u8; 64],
    signature_len: usize,
    claims: Checked,
}

/// base64url of `{"alg":"HS256","typ":"JWT"}` and of its HS512 form: the headers ccxt and most
/// clients send, recognised without decoding.
const HS256_HEADER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";
const HS512_HEADER: &str = "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9";
const MAX_TOKEN: usize = 8 * 1024;

pub(crate) fn extract(auth: &str) -> Result<Credential<'_>, Code> {
    let token = auth.strip_prefix("Bearer ").ok_or(Code::Malformed)?.trim();
    if token.len() > MAX_TOKEN {
        return Err(Code::Malformed);
    }
    let (signing_input, s) = token.rsplit_once('.').ok_or(Code::Malformed)?;
    let (h, p) = signing_input.split_once('.').ok_or(Code::Malformed)?;
    let sha512 = match h {
        HS256_HEADER => false,
        HS512_HEADER => true,
        other => {
            let raw = URL_SAFE_NO_PAD.decode(other).map_err(|_| Code::Malformed)?;
            let header: Header = serde_json::from_slice(&raw).map_err(|_| Code::Malformed)?;
            match header.alg.as_str() {
                "HS256" => false,
                "HS512" => true,
                // Never "none", never an asymmetric algorithm keyed with the shared secret.
                _ => return Err(Code::Malformed),
            }
        }
    };
    let payload = URL_SAFE_NO_PAD.decode(p).map_err(|_| Code::Malformed)?;
    let claims: Claims = serde_json::from_slice(&payload).map_err(|_| Code::Malformed)?;
    let mut signature = [0u8; 64];
    let signature_len = URL_SAFE_NO_PAD.decode_slice(s, &mut signature).map_err(|_| Code::Malformed)?;
    if claims.access_key.is_empty() || claims.access_key.len() > 256 {
        return Err(Code::Malformed);
    }
    let query_hash = match &claims.query_hash {
        None => None,
        Some(h) => Some(super::hex_exact::<64>(h).ok_or(Code::BadSignature)?),
    };
    let timestamp = match &claims.timestamp {
        None => None,
        Some(serde_json::Value::Number(n)) => Some(n.as_i64().ok_or(Code::Malformed)?),
        Some(serde_json::Value::String(s)) => Some(s.parse().map_err(|_| Code::Malformed)?),
        Some(_) => return Err(Code::Malformed),
    };
    let checked = Checked {
        nonce: claims.nonce.map(Cow::into_owned),
        query_hash,
        query_hash_alg_ok: claims.query_hash_alg.as_deref().is_none_or(|a| a.eq_ignore_ascii_case("SHA512")),
        timestamp,
    };
    let parsed = Token { signing_input, sha512, signature, signature_len, claims: checked };
    Ok(Credential {
        family: Family::Jwt,
        access_key: claims.access_key.into_owned().into(),
        parsed: Parsed::Jwt(parsed),
    })
}

/// The string the query hash covers, or None when the request carries no parameters.
fn hash_input<'r>(scheme: SigningScheme, req: &Request<'r>) -> Result<Option<Cow<'r, [u8]>>, Code> {
    if !req.query.is_empty() {
        return Ok(Some(match scheme {
            SigningScheme::Upbit if req.query.contains('%') => percent_decode(req.query).ok_or(Code::Malformed)?.into(),
            _ => req.query.as_bytes().into(),
        }));
    }
    match req.body {
        Some(body) if !body.iter().all(u8::is_ascii_whitespace) => {
            let members = json_members(body).ok_or(Code::Malformed)?;
            if members.is_empty() {
                return Ok(None);
            }
            let text = match scheme {
                SigningScheme::Upbit => upbit_body_query(&members),
                _ => bithumb_body_query(&members),
            };
            Ok(Some(text.into_bytes().into()))
        }
        _ => Ok(None),
    }
}

pub(crate) fn check<'r>(
    t: &Token<'r>,
    key: &KeyEntry,
    req: &Request<'r>,
    cfg: &VerifyConfig,
) -> Result<Freshness<'r>, Code> {
    let Material::Hmac { sha256, sha512, .. } = &key.material else { return Err(Code::WrongScheme) };
    let input = t.signing_input.as_bytes();
    let signature = t.signature.get(..t.signature_len).ok_or(Code::Malformed)?;
    let ok = if t.sha512 {
        let mut mac = sha512.clone();
        mac.update(input);
        mac.verify_slice(signature).is_ok()
    } else {
        let mut mac = sha256.clone();
        mac.update(input);
        mac.verify_slice(signature).is_ok()
    };
    if !ok {
        return Err(Code::BadSignature);
    }
    // The parameters must be exactly those the client hashed: otherwise a signed token could be
    // replayed onto other parameters (another price, another withdrawal address).
    match (&t.claims.query_hash, hash_input(key.scheme, req)?) {
        (None, None) => {}
        (Some(_), None) if req.body.is_none() && !super::params_method_is_get(req.method) => {
            return Err(Code::BodyRequired)
        }
        (Some(claimed), Some(input)) => {
            if !t.claims.query_hash_alg_ok {
                return Err(Code::Malformed);
            }
            let digest = Sha512::digest(&input);
            if !bool::from(subtle::ConstantTimeEq::ct_eq(claimed.as_slice(), digest.as_slice())) {
                return Err(Code::BadSignature);
            }
        }
        _ => return Err(Code::BadSignature),
    }
    let nonce = t.claims.nonce.as_deref().filter(|n| !n.is_empty() && n.len() <= 128).ok_or(Code::Malformed)?;
    if key.scheme == SigningScheme::Bithumb {
        let ts = t.claims.timestamp.ok_or(Code::Malformed)?;
        if ts >= req.now_ms + cfg.future_tolerance_ms || req.now_ms - ts > cfg.jwt_timestamp_window_ms {
            return Err(Code::StaleTimestamp);
        }
    }
    Ok(Freshness { nonce: Some(nonce.to_owned().into()) })
}
