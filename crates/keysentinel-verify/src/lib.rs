//! The gateway hot path: decide whether a signed exchange API request may pass.
//!
//! Given the request as the gateway sees it (method, path, raw query, raw body when the gateway
//! forwards it, headers, client IP, time) the [`Verifier`] answers with a stable [`Code`] and,
//! when a key was identified, the key, its account and its scopes. Deny by default: anything
//! not positively verified is refused. Pure and in-memory: no I/O, no clock (time is an input).
//!
//! Order of checks: credential present and well-formed → key known → key bound to this scheme →
//! key status → signature (constant time) → timestamp window → nonce not seen before → client IP
//! in the allowlist → endpoint known → scope granted. A nonce is consumed only by a request whose
//! signature verified, so forged requests cannot burn a client's nonces.

pub mod encoding;
pub mod replay;
pub mod routes;
mod schemes;
pub mod snapshot;

use keysentinel_domain::{KeyStatus, Scope, SigningScheme};
use replay::{NonceCache, Nonces};
use routes::RouteTable;
use snapshot::{KeyEntry, KeySnapshot};
use std::net::IpAddr;
use std::sync::Arc;

/// The request as the gateway sees it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The raw query string, without `?`, exactly as received.
    pub query: &'a str,
    /// The raw body, when the gateway forwards it; `None` means *not forwarded* (nginx
    /// `auth_request` cannot), never "empty": a request without a body is `Some(b"")`.
    pub body: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, &'a str)],
    pub client_ip: IpAddr,
    pub now_ms: i64,
}

impl<'a> Request<'a> {
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }
}

/// Stable decision codes: the domain's vocabulary, which the events, the metrics and detection
/// share.
pub use keysentinel_domain::outcome::Code;

/// The answer for one request.
#[derive(Clone)]
pub struct Decision {
    pub code: Code,
    pub scheme: Option<SigningScheme>,
    /// The key named by the request, when it exists (also for denials after lookup).
    pub key: Option<Arc<KeyEntry>>,
    /// The scope the endpoint needs, once known.
    pub required_scope: Option<Scope>,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        self.code == Code::Valid
    }
    fn deny(code: Code, scheme: Option<SigningScheme>, key: Option<Arc<KeyEntry>>) -> Self {
        Self { code, scheme, key, required_scope: None }
    }
}

/// Freshness rules.
#[derive(Debug, Clone)]
pub struct VerifyConfig {
    /// Binance/Korbit: `recvWindow` when the request gives none.
    pub default_recv_window_ms: i64,
    /// Binance/Korbit: the largest `recvWindow` accepted.
    pub max_recv_window_ms: i64,
    /// How far in the future a timestamp may be (clock skew).
    pub future_tolerance_ms: i64,
    /// Bithumb: how old a JWT `timestamp` may be.
    pub jwt_timestamp_window_ms: i64,
    /// How long nonces are remembered (Upbit and Coinone nonces carry no time).
    pub nonce_window_ms: i64,
    /// A request whose body the gateway did not forward (`Request::body` is `None`, as through
    /// nginx `auth_request`, Caddy `forward_auth` or Traefik `forwardAuth`) on a method that
    /// carries one is refused `BODY_REQUIRED` for the schemes that sign the body — unless the
    /// deployment declares that its upstream acts only on what is signed (Coinone's payload
    /// header, Binance's and Korbit's signed query) and never on such a body. Off by default.
    pub upstream_ignores_unsigned_body: bool,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        Self {
            default_recv_window_ms: 5_000,
            max_recv_window_ms: 60_000,
            future_tolerance_ms: 1_000,
            jwt_timestamp_window_ms: 30_000,
            nonce_window_ms: 600_000,
            upstream_ignores_unsigned_body: false,
        }
    }
}

pub struct Verifier {
    keys: Arc<KeySnapshot>,
    nonces: Arc<dyn Nonces>,
    routes: RouteTable,
    config: VerifyConfig,
}

/// What a scheme extracted before the key is known.
pub(crate) struct Credential<'r> {
    pub family: Family,
    pub parsed: schemes::Parsed<'r>,
}

/// Request families: the JWT family covers Upbit and Bithumb, told apart by the key's binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Binance,
    Korbit,
    Jwt,
    Coinone,
}

impl Family {
    fn accepts(self, scheme: SigningScheme) -> bool {
        matches!(
            (self, scheme),
            (Family::Binance, SigningScheme::Binance)
                | (Family::Korbit, SigningScheme::Korbit)
                | (Family::Jwt, SigningScheme::Upbit | SigningScheme::Bithumb)
                | (Family::Coinone, SigningScheme::Coinone)
        )
    }
}

/// What the signature check established about freshness.
#[derive(Debug, Default)]
pub(crate) struct Freshness<'c> {
    pub nonce: Option<&'c str>,
}

impl Verifier {
    /// A verifier whose nonces live in memory only (a restart forgets them): tests and tools.
    pub fn new(keys: Arc<KeySnapshot>, routes: RouteTable, config: VerifyConfig) -> Self {
        let nonces = Arc::new(NonceCache::new(config.nonce_window_ms));
        Self::with_nonces(keys, routes, config, nonces)
    }

    /// A verifier remembering nonces in `nonces` (the server's: a cache backed by its journal).
    pub fn with_nonces(
        keys: Arc<KeySnapshot>,
        routes: RouteTable,
        config: VerifyConfig,
        nonces: Arc<dyn Nonces>,
    ) -> Self {
        Self { keys, nonces, routes, config }
    }

    pub fn keys(&self) -> &Arc<KeySnapshot> {
        &self.keys
    }

    pub fn remembered_nonces(&self) -> usize {
        self.nonces.len()
    }

    pub fn verify(&self, req: &Request) -> Decision {
        let cred = match schemes::extract(req) {
            Ok(c) => c,
            Err(code) => return Decision::deny(code, None, None),
        };
        let Some(key) = self.keys.get(cred.access_key()) else {
            return Decision::deny(Code::NotFound, None, None);
        };
        let scheme = Some(key.scheme);
        if !cred.family.accepts(key.scheme) {
            return Decision::deny(Code::WrongScheme, scheme, Some(key));
        }
        match key.status_at(req.now_ms) {
            KeyStatus::Active => {}
            KeyStatus::Revoked => return Decision::deny(Code::Revoked, scheme, Some(key)),
            KeyStatus::Suspended => return Decision::deny(Code::Suspended, scheme, Some(key)),
            KeyStatus::Expired => return Decision::deny(Code::Expired, scheme, Some(key)),
            KeyStatus::Pending => return Decision::deny(Code::Pending, scheme, Some(key)),
        }
        let fresh = match schemes::check(&cred, &key, req, &self.config) {
            Ok(f) => f,
            Err(code) => return Decision::deny(code, scheme, Some(key)),
        };
        if let Some(nonce) = fresh.nonce {
            match self.nonces.check_and_insert(&key.access_key, nonce, req.now_ms) {
                Ok(true) => {}
                Ok(false) => return Decision::deny(Code::Replayed, scheme, Some(key)),
                // Not recorded, so a restart would accept it again: refuse it now, under a code of
                // its own (it is not a replay, and not the client's doing). The store's failure
                // is logged where the store is (the server's journal).
                Err(_) => return Decision::deny(Code::NonceUnavailable, scheme, Some(key)),
            }
        }
        if !key.allowlist.is_empty() && !key.allowlist.contains(req.client_ip) {
            return Decision::deny(Code::IpNotAllowed, scheme, Some(key));
        }
        let Some(required) = self.routes.required_scope(key.scheme, req.method, req.path) else {
            return Decision::deny(Code::UnknownEndpoint, scheme, Some(key));
        };
        let code = if key.scopes_at(req.now_ms).contains(required) { Code::Valid } else { Code::ScopeDenied };
        Decision { code, scheme, key: Some(key), required_scope: Some(required) }
    }
}
