//! Upbit and Bithumb 2.0: `Authorization: Bearer <JWT>`, HS256 (HS512 also seen), claims
//! `access_key`, one-time `nonce`, and when the request has parameters a `query_hash`: hex
//! SHA-512 of the query string — unescaped for Upbit, URL-encoded for Bithumb — or, for a JSON
//! body, of the body's members in order. Bithumb adds a millisecond `timestamp` claim.

use super::Parsed;
use crate::encoding::{bithumb_body_query, json_members, percent_decode, upbit_body_query};
use crate::snapshot::{KeyEntry, Material};
use crate::{Code, Credential, Family, Freshness, Request, VerifyConfig};
use arrayvec::ArrayString;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::Mac;
use keysentinel_domain::SigningScheme;
use keysentinel_flatjson::{self as flatjson, Scalar};
use serde::Deserialize;
use sha2::{Digest, Sha512};
use std::borrow::Cow;

#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// Claims as serde_json reads them: the fallback for payloads outside the scanner's subset.
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
    exp: Option<serde_json::Value>,
    nbf: Option<serde_json::Value>,
}

/// The claims verify reads, borrowed from the decoded payload (or from `Claims`).
#[derive(Default)]
struct Raw<'a> {
    access_key: Option<&'a str>,
    nonce: Option<&'a str>,
    query_hash: Option<&'a str>,
    query_hash_alg: Option<&'a str>,
    timestamp: Option<i64>,
    exp: Option<i64>,
    nbf: Option<i64>,
}

pub(crate) struct Token<'r> {
    /// `header.payload`: the bytes the signature covers.
    signing_input: &'r str,
    sha512: bool,
    signature: [u8; 64],
    signature_len: usize,
    /// Copied out of the decoded payload into fixed buffers: no allocation per request.
    pub(crate) access_key: ArrayString<MAX_ACCESS_KEY>,
    /// None when missing, empty or too long (refused as malformed once the signature verifies).
    nonce: Option<ArrayString<MAX_NONCE>>,
    query_hash: Option<[u8; 64]>,
    query_hash_alg_ok: bool,
    timestamp: Option<i64>,
    /// RFC 7519 `exp` and `nbf` (seconds): neither exchange requires them, but a token that
    /// carries them is held to them (an expired token is not a fresh one).
    exp: Option<i64>,
    nbf: Option<i64>,
}

/// base64url of `{"alg":"HS256","typ":"JWT"}` and of its HS512 form: the headers ccxt and most
/// clients send, recognised without decoding.
const HS256_HEADER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";
const HS512_HEADER: &str = "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9";
const MAX_TOKEN: usize = 8 * 1024;
const MAX_ACCESS_KEY: usize = 256;
const MAX_NONCE: usize = 128;
/// Upbit and Bithumb claims are ~250 bytes decoded; larger payloads are decoded on the heap.
const INLINE_PAYLOAD: usize = 1024;

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
    // The claims are decoded with SIMD (base64-simd): at ~330 characters a token, the scalar
    // decoder took a tenth of a verify. Either decoder refuses what is not base64url; the
    // signature covers the encoded text, so how leniently bits are read cannot matter.
    let b64 = base64_simd::URL_SAFE_NO_PAD;
    let mut inline = [0u8; INLINE_PAYLOAD];
    let heap;
    let n = b64.decoded_length(p.as_bytes()).map_err(|_| Code::Malformed)?;
    let payload: &[u8] = match inline.get_mut(..n) {
        Some(buf) => b64.decode(p.as_bytes(), base64_simd::Out::from_slice(buf)).map_err(|_| Code::Malformed)?,
        None => {
            heap = b64.decode_to_vec(p.as_bytes()).map_err(|_| Code::Malformed)?;
            &heap
        }
    };
    let mut signature = [0u8; 64];
    // The claims are read inside `with_claims`, so the serde fallback can lend its strings too.
    let token = with_claims(payload, |raw| {
        let signature_len = URL_SAFE_NO_PAD.decode_slice(s, &mut signature).map_err(|_| Code::Malformed)?;
        let access_key =
            raw.access_key.filter(|k| !k.is_empty()).and_then(|k| ArrayString::from(k).ok()).ok_or(Code::Malformed)?;
        let query_hash = match raw.query_hash {
            None => None,
            Some(h) => Some(super::hex_exact::<64>(h).ok_or(Code::BadSignature)?),
        };
        Ok(Token {
            signing_input,
            sha512,
            signature,
            signature_len,
            access_key,
            nonce: raw.nonce.filter(|n| !n.is_empty()).and_then(|n| ArrayString::from(n).ok()),
            query_hash,
            query_hash_alg_ok: raw.query_hash_alg.is_none_or(|a| a.eq_ignore_ascii_case("SHA512")),
            timestamp: raw.timestamp,
            exp: raw.exp,
            nbf: raw.nbf,
        })
    })?;
    Ok(Credential { family: Family::Jwt, parsed: Parsed::Jwt(token) })
}

/// Reads the claims with the scanner, or with serde_json when the payload is outside the
/// scanner's subset; either way the same rules: `access_key` a string, the others strings or
/// null, `timestamp`, `exp` and `nbf` integers or strings of one, no known claim twice.
fn with_claims<T>(payload: &[u8], then: impl FnOnce(Raw<'_>) -> Result<T, Code>) -> Result<T, Code> {
    let mut raw = Raw::default();
    let mut seen: arrayvec::ArrayVec<&str, 7> = arrayvec::ArrayVec::new();
    // Any doubt (a duplicate, a wrong type) declines the fast path: serde_json then decides.
    let text = std::str::from_utf8(payload).ok();
    let scanned = text.and_then(|text| {
        flatjson::scan(text, |name, value| {
            let known =
                ["access_key", "nonce", "query_hash", "query_hash_alg", "timestamp", "exp", "nbf"].contains(&name);
            if !known {
                return true;
            }
            if seen.contains(&name) || seen.try_push(name).is_err() {
                return false;
            }
            match (name, value) {
                ("access_key", Scalar::Str(v)) => raw.access_key = Some(v),
                ("access_key", _) => return false,
                (_, Scalar::Null) => {}
                ("timestamp" | "exp" | "nbf", Scalar::Int(n)) => *time_claim(&mut raw, name) = Some(n),
                ("timestamp" | "exp" | "nbf", Scalar::Str(v)) => match v.parse() {
                    Ok(n) => *time_claim(&mut raw, name) = Some(n),
                    Err(_) => return false,
                },
                ("nonce", Scalar::Str(v)) => raw.nonce = Some(v),
                ("query_hash", Scalar::Str(v)) => raw.query_hash = Some(v),
                ("query_hash_alg", Scalar::Str(v)) => raw.query_hash_alg = Some(v),
                _ => return false,
            }
            true
        })
    });
    if scanned.is_some() && raw.access_key.is_some() {
        return then(raw);
    }
    let claims: Claims = serde_json::from_slice(payload).map_err(|_| Code::Malformed)?;
    let integer = |claim: &Option<serde_json::Value>| match claim {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => Ok(Some(n.as_i64().ok_or(Code::Malformed)?)),
        Some(serde_json::Value::String(s)) => Ok(Some(s.parse().map_err(|_| Code::Malformed)?)),
        Some(_) => Err(Code::Malformed),
    };
    then(Raw {
        access_key: Some(&claims.access_key),
        nonce: claims.nonce.as_deref(),
        query_hash: claims.query_hash.as_deref(),
        query_hash_alg: claims.query_hash_alg.as_deref(),
        timestamp: integer(&claims.timestamp)?,
        exp: integer(&claims.exp)?,
        nbf: integer(&claims.nbf)?,
    })
}

/// The slot of an integer time claim.
fn time_claim<'r>(raw: &'r mut Raw<'_>, name: &str) -> &'r mut Option<i64> {
    match name {
        "exp" => &mut raw.exp,
        "nbf" => &mut raw.nbf,
        _ => &mut raw.timestamp,
    }
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

pub(crate) fn check<'c, 'r>(
    t: &'c Token<'r>,
    key: &KeyEntry,
    req: &Request<'r>,
    cfg: &VerifyConfig,
) -> Result<Freshness<'c>, Code> {
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
    // A body keysentinel was not shown (a header-only gateway) could carry parameters the hash
    // never covered; unless the deployment says the upstream ignores such a body, refuse.
    if req.body.is_none() && !super::params_method_is_get(req.method) && !cfg.upstream_ignores_unsigned_body {
        return Err(Code::BodyRequired);
    }
    // The parameters must be exactly those the client hashed: otherwise a signed token could be
    // replayed onto other parameters (another price, another withdrawal address).
    match (&t.query_hash, hash_input(key.scheme, req)?) {
        (None, None) => {}
        (Some(_), None) if req.body.is_none() && !super::params_method_is_get(req.method) => {
            return Err(Code::BodyRequired)
        }
        (Some(claimed), Some(input)) => {
            if !t.query_hash_alg_ok {
                return Err(Code::Malformed);
            }
            let digest = Sha512::digest(&input);
            // A plain comparison: both sides are hashes of public data (the request's own
            // parameters, and a claim the signature above already vouched for), so how long it
            // takes reveals nothing; the secret-dependent comparison is the MAC's, constant-time.
            if claimed.as_slice() != digest.as_slice() {
                return Err(Code::BadSignature);
            }
        }
        _ => return Err(Code::BadSignature),
    }
    let nonce = t.nonce.as_ref().ok_or(Code::Malformed)?;
    // `exp` and `nbf` are NumericDates (seconds); a clock skew of `future_tolerance_ms` is
    // allowed either way, as for timestamps.
    if t.exp.is_some_and(|exp| req.now_ms >= exp.saturating_mul(1000).saturating_add(cfg.future_tolerance_ms)) {
        return Err(Code::StaleTimestamp);
    }
    if t.nbf.is_some_and(|nbf| nbf.saturating_mul(1000) > req.now_ms.saturating_add(cfg.future_tolerance_ms)) {
        return Err(Code::StaleTimestamp);
    }
    if key.scheme == SigningScheme::Bithumb {
        let ts = t.timestamp.ok_or(Code::Malformed)?;
        if ts >= req.now_ms + cfg.future_tolerance_ms || req.now_ms - ts > cfg.jwt_timestamp_window_ms {
            return Err(Code::StaleTimestamp);
        }
    }
    Ok(Freshness { nonce: Some(nonce.as_str()) })
}
