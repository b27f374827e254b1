//! Request-signing schemes. A key is bound to one at creation: the gateway verifies its requests
//! the way that exchange's API signs them (see docs/signing.md).

use crate::error::ValidationError;
use crate::key::KeyAlgorithm;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SigningScheme {
    /// `X-MBX-APIKEY` + `signature` over the query/body, HMAC-SHA256 (hex) or Ed25519 (base64),
    /// with `timestamp` and `recvWindow`.
    Binance,
    /// `Authorization: Bearer` JWT (HS256/HS512) with a one-time `nonce` and SHA-512 `query_hash`.
    Upbit,
    /// Bithumb API 2.0: as Upbit plus a millisecond `timestamp` claim.
    Bithumb,
    /// Coinone v2.1: base64 JSON payload with `access_token` and uuid `nonce`, HMAC-SHA512 (hex)
    /// keyed with the upper-cased secret.
    Coinone,
    /// Korbit v2: `X-KAPI-KEY` + `signature` over the query/body with `timestamp`, HMAC-SHA256
    /// (hex) or Ed25519 (base64).
    Korbit,
}

impl SigningScheme {
    pub const ALL: [SigningScheme; 5] = [
        SigningScheme::Binance,
        SigningScheme::Upbit,
        SigningScheme::Bithumb,
        SigningScheme::Coinone,
        SigningScheme::Korbit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SigningScheme::Binance => "binance",
            SigningScheme::Upbit => "upbit",
            SigningScheme::Bithumb => "bithumb",
            SigningScheme::Coinone => "coinone",
            SigningScheme::Korbit => "korbit",
        }
    }

    /// Whether the scheme can sign with the key's algorithm.
    pub fn supports(self, algorithm: &KeyAlgorithm) -> bool {
        match algorithm {
            KeyAlgorithm::Hmac => true,
            KeyAlgorithm::Ed25519 { .. } => matches!(self, SigningScheme::Binance | SigningScheme::Korbit),
        }
    }

    pub fn check(self, algorithm: &KeyAlgorithm) -> Result<(), ValidationError> {
        if self.supports(algorithm) {
            Ok(())
        } else {
            Err(ValidationError::new(
                "scheme",
                format!("{self} signs with HMAC only; Ed25519 keys are for binance or korbit"),
            ))
        }
    }
}

impl fmt::Display for SigningScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SigningScheme {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, ValidationError> {
        SigningScheme::ALL.into_iter().find(|x| x.as_str() == s).ok_or_else(|| {
            ValidationError::new(
                "scheme",
                format!("unknown scheme {s:?}; expected binance, upbit, bithumb, coinone or korbit"),
            )
        })
    }
}
