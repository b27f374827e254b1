//! One-time claims: how a reinstated key reaches its owner and nobody else. The approval that
//! issues the key returns no secret; it opens a claim on the new key (pending until then) and
//! sends the owner a one-time code through the outbox. The exchange's own app redeems the claim
//! for the owner (the `customer_channel` role) with the code; the secret is generated then, and
//! shown in that answer only. A claim lapses, is redeemed once, and locks after a few wrong codes.
//!
//! Only a keyed hash of the code is kept; comparing it is the registry's (constant time).

use crate::Timestamp;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use time::Duration;

/// How long the owner has to redeem a claim.
pub const CLAIM_TTL: Duration = Duration::hours(72);
/// Wrong codes before a claim locks (a new reinstatement is then needed).
pub const CLAIM_MAX_ATTEMPTS: u32 = 5;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyClaim {
    /// The case whose reinstatement issued the key.
    pub case_id: String,
    /// Keyed hash of the one-time code (never the code).
    pub code_hash: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub expires_at: Timestamp,
    pub failed_attempts: u32,
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schema(value_type = Option<String>)]
    pub redeemed_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ClaimError {
    #[error("the key has no claim to redeem")]
    None,
    #[error("the claim was redeemed already; a claim is redeemed once")]
    Redeemed,
    #[error("the claim expired; the owner must ask for reinstatement again")]
    Expired,
    #[error("the claim is locked after {CLAIM_MAX_ATTEMPTS} wrong codes; the owner must ask for reinstatement again")]
    Locked,
}

impl KeyClaim {
    pub fn new(case_id: &str, code_hash: String, now: Timestamp) -> Self {
        Self {
            case_id: case_id.to_owned(),
            code_hash,
            expires_at: now + CLAIM_TTL,
            failed_attempts: 0,
            redeemed_at: None,
        }
    }

    /// Whether a code may still be tried at `now`.
    pub fn open(&self, now: Timestamp) -> Result<(), ClaimError> {
        if self.redeemed_at.is_some() {
            Err(ClaimError::Redeemed)
        } else if self.failed_attempts >= CLAIM_MAX_ATTEMPTS {
            Err(ClaimError::Locked)
        } else if now >= self.expires_at {
            Err(ClaimError::Expired)
        } else {
            Ok(())
        }
    }

    /// A wrong code: returns how many tries are left.
    pub fn failed(&mut self) -> u32 {
        self.failed_attempts = self.failed_attempts.saturating_add(1);
        CLAIM_MAX_ATTEMPTS.saturating_sub(self.failed_attempts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_claim_is_redeemed_once_expires_and_locks() {
        let t0 = datetime!(2026-12-01 00:00 UTC);
        let mut c = KeyClaim::new("case-1", "h".into(), t0);
        assert_eq!(c.open(t0), Ok(()));
        assert_eq!(c.open(t0 + CLAIM_TTL), Err(ClaimError::Expired));
        for left in (0..CLAIM_MAX_ATTEMPTS).rev() {
            assert_eq!(c.failed(), left);
        }
        assert_eq!(c.open(t0), Err(ClaimError::Locked));
        let mut d = KeyClaim::new("case-1", "h".into(), t0);
        d.redeemed_at = Some(t0);
        assert_eq!(d.open(t0), Err(ClaimError::Redeemed));
    }
}
