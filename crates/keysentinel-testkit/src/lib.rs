//! Fixtures shared by tests, benchmarks and fuzz targets, so that each does not spell out a
//! full `ApiKey` of its own.

use keysentinel_domain::*;
use time::OffsetDateTime;

/// Far enough ahead that fixtures never expire during a test.
pub fn far_future() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(4_102_444_800).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    // 2100-01-01
}

/// An active key with the given binding. Sensitive scopes become approved grants lasting until
/// `far_future()`; the rest are base scopes.
pub fn api_key(
    access_key: &str,
    scheme: SigningScheme,
    algorithm: KeyAlgorithm,
    scopes: &[Scope],
    allowlist: &[&str],
) -> ApiKey {
    let far = far_future();
    ApiKey {
        access_key: AccessKey::parse(access_key).unwrap_or_else(|e| panic_fixture(&e)),
        account_id: AccountId::parse("acct-1").unwrap_or_else(|e| panic_fixture(&e)),
        algorithm,
        scheme,
        scopes: scopes.iter().copied().filter(|s| !s.is_sensitive()).collect(),
        grants: scopes
            .iter()
            .filter(|s| s.is_sensitive())
            .map(|s| SensitiveGrant {
                scope: *s,
                status: GrantStatus::Active,
                ttl_seconds: 3600,
                requested_by: "requester".into(),
                requested_at: far,
                approved_by: Some("approver".into()),
                approved_at: Some(far),
                expires_at: Some(far),
            })
            .collect(),
        ip_allowlist: IpAllowlist::parse(allowlist).unwrap_or_else(|e| panic_fixture(&e)),
        vendor_id: None,
        declared: keysentinel_domain::Declared {
            purpose: keysentinel_domain::PurposeName::legacy(),
            note: String::new(),
        },
        terms_version: "test".into(),
        terms_acceptance: None,
        approval: None,
        unrestricted_lapse_at: None,
        lapse_notice_id: None,
        claim: None,
        operated_by: None,
        origin: KeyOrigin::Imported,
        created_at: far,
        expires_at: far,
        status: KeyStatus::Active,
        status_reason: String::new(),
        status_changed_by: String::new(),
        status_changed_at: far,
        rotated_from: None,
        rotated_to: None,
    }
}

#[allow(clippy::panic)] // a fixture given bad literals is a broken test
fn panic_fixture(e: &ValidationError) -> ! {
    panic!("bad fixture: {e}")
}
