//! The signing schemes: extracting the credential (before the key is known) and checking the
//! signature and freshness (with the key).

mod coinone;
mod jwt;
mod params;

use crate::snapshot::KeyEntry;
use crate::{Code, Credential, Freshness, Request, VerifyConfig};

// The JWT variant carries its claims inline (~570 bytes): a `Parsed` lives on the stack for one
// verify, and boxing it would bring back the allocation the inline buffers avoid.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Parsed<'r> {
    Params(params::Signed<'r>),
    Jwt(jwt::Token<'r>),
    Coinone(coinone::Payload<'r>),
}

pub(crate) fn extract<'r>(req: &Request<'r>) -> Result<Credential<'r>, Code> {
    if let Some(key) = req.header("x-mbx-apikey") {
        return params::extract(req, key, crate::Family::Binance);
    }
    if let Some(key) = req.header("x-kapi-key") {
        return params::extract(req, key, crate::Family::Korbit);
    }
    if let Some(payload) = req.header("x-coinone-payload") {
        return coinone::extract(req, payload);
    }
    if let Some(auth) = req.header("authorization") {
        return jwt::extract(auth);
    }
    Err(Code::MissingCredentials)
}

impl Credential<'_> {
    /// The access key the request names.
    pub(crate) fn access_key(&self) -> &str {
        match &self.parsed {
            Parsed::Params(p) => p.access_key,
            Parsed::Jwt(t) => &t.access_key,
            Parsed::Coinone(p) => &p.access_token,
        }
    }
}

pub(crate) fn check<'c, 'r>(
    cred: &'c Credential<'r>,
    key: &KeyEntry,
    req: &Request<'r>,
    cfg: &VerifyConfig,
) -> Result<Freshness<'c>, Code> {
    match &cred.parsed {
        Parsed::Params(p) => params::check(p, key, req, cfg),
        Parsed::Jwt(t) => jwt::check(t, key, req, cfg),
        Parsed::Coinone(p) => coinone::check(p, key, req, cfg),
    }
}

/// Decodes lowercase or uppercase hex of exactly `N` bytes.
pub(crate) fn hex_exact<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// GET, HEAD and DELETE carry their parameters in the query string.
pub(crate) fn params_method_is_get(method: &str) -> bool {
    ["GET", "HEAD", "DELETE"].iter().any(|m| m.eq_ignore_ascii_case(method))
}
