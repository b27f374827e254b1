//! What a verify decided about one request: the code the gateway, the API, the events, the
//! metrics and the detection engine all name it by (defined once here; `keysentinel-verify`
//! decides it, `keysentinel-detect` reads it), and the class of it detection cares about.

use std::fmt;

/// Stable decision codes (they appear in API responses, events and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    Valid,
    /// No credential header this verifier understands.
    MissingCredentials,
    /// A credential is present but cannot be parsed.
    Malformed,
    NotFound,
    /// The key is bound to another signing scheme.
    WrongScheme,
    Revoked,
    Suspended,
    Expired,
    BadSignature,
    /// The scheme signs the body, and the gateway did not forward it.
    BodyRequired,
    StaleTimestamp,
    Replayed,
    /// The nonce could not be recorded durably (the nonce store failed: disk full, I/O error),
    /// so it could be accepted again after a restart: refused, and the node's fault, not the
    /// client's (it may retry the same request once the store recovers).
    NonceUnavailable,
    IpNotAllowed,
    /// No route rule matches the endpoint (deny by default).
    UnknownEndpoint,
    ScopeDenied,
    /// The key awaits the approval its purpose needs (it is not valid yet).
    Pending,
}

/// What a code says of the key's holder, for detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Valid,
    /// Signature, hash or payload did not match, on a key id that exists.
    BadSignature,
    /// Refused for freshness: stale timestamp or replayed nonce.
    Stale,
    /// Correctly signed, from outside the key's IP allowlist: someone else holds the secret.
    IpNotAllowed,
    /// Refused by the key's other restrictions: scope, endpoint, scheme.
    Restricted,
    /// Refused for the key's status: revoked, suspended, expired, pending.
    Inactive,
    /// Missing or malformed credentials, an unknown key, a body the gateway did not show.
    Other,
}

impl Code {
    pub const ALL: [Code; 17] = [
        Code::Valid,
        Code::MissingCredentials,
        Code::Malformed,
        Code::NotFound,
        Code::WrongScheme,
        Code::Revoked,
        Code::Suspended,
        Code::Expired,
        Code::BadSignature,
        Code::BodyRequired,
        Code::StaleTimestamp,
        Code::Replayed,
        Code::NonceUnavailable,
        Code::IpNotAllowed,
        Code::UnknownEndpoint,
        Code::ScopeDenied,
        Code::Pending,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::Valid => "VALID",
            Code::MissingCredentials => "MISSING_CREDENTIALS",
            Code::Malformed => "MALFORMED",
            Code::NotFound => "NOT_FOUND",
            Code::WrongScheme => "WRONG_SCHEME",
            Code::Revoked => "REVOKED",
            Code::Suspended => "SUSPENDED",
            Code::Expired => "EXPIRED",
            Code::BadSignature => "BAD_SIGNATURE",
            Code::BodyRequired => "BODY_REQUIRED",
            Code::StaleTimestamp => "STALE_TIMESTAMP",
            Code::Replayed => "REPLAYED",
            Code::NonceUnavailable => "NONCE_UNAVAILABLE",
            Code::IpNotAllowed => "IP_NOT_ALLOWED",
            Code::UnknownEndpoint => "UNKNOWN_ENDPOINT",
            Code::ScopeDenied => "SCOPE_DENIED",
            Code::Pending => "PENDING",
        }
    }

    /// The code named `s` exactly; None for anything else.
    pub fn parse(s: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// What the code says of the key's holder. None for `NONCE_UNAVAILABLE`, the node's own
    /// failure, which says nothing of whoever sent the request.
    pub fn class(self) -> Option<Class> {
        Some(match self {
            Code::Valid => Class::Valid,
            Code::BadSignature => Class::BadSignature,
            Code::StaleTimestamp | Code::Replayed => Class::Stale,
            Code::IpNotAllowed => Class::IpNotAllowed,
            Code::ScopeDenied | Code::UnknownEndpoint | Code::WrongScheme => Class::Restricted,
            Code::Revoked | Code::Suspended | Code::Expired | Code::Pending => Class::Inactive,
            Code::MissingCredentials | Code::Malformed | Code::NotFound | Code::BodyRequired => Class::Other,
            Code::NonceUnavailable => return None,
        })
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_has_its_class() {
        for code in Code::ALL {
            assert_eq!(Code::parse(code.as_str()), Some(code));
            assert_eq!(code.to_string(), code.as_str());
            assert_eq!(code.class().is_none(), code == Code::NonceUnavailable, "{code}");
        }
        assert_eq!(Code::parse("ok"), None);
        assert_eq!(Code::parse("valid"), None, "codes are exact");
        assert_eq!(Code::Replayed.class(), Some(Class::Stale));
    }
}
