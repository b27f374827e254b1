//! Set-up shared by the server's benchmarks.

use hmac::{Hmac, Mac};
use keysentinel_audit::Actor;
use keysentinel_domain::{AccountId, IpAllowlist, Scope, SigningScheme};
use keysentinel_registry::{NewKey, NewKeyAlgorithm, Registry};

/// Issues a read-only Binance HMAC key for `account`, allowed from 203.0.113.0/24, and signs a
/// query with it valid for a minute: (access key, signed query, the query's time in ms).
pub fn signed_key(
    rt: &tokio::runtime::Runtime,
    reg: &Registry,
    admin: &Actor,
    account: &AccountId,
) -> (String, String, i64) {
    let issued = rt
        .block_on(reg.create_key(
            admin.clone(),
            NewKey {
                account_id: account.clone(),
                algorithm: NewKeyAlgorithm::Hmac,
                scheme: SigningScheme::Binance,
                scopes: vec![Scope::Read],
                ip_allowlist: IpAllowlist::parse(&["203.0.113.0/24"]).unwrap(),
                lifetime_days: None,
                vendor_id: None,
                purpose: String::new(),
                terms_version: "2026-05".into(),
                sensitive_grant_hours: None,
            },
        ))
        .unwrap();
    let now_ms = (reg.now().unix_timestamp_nanos() / 1_000_000) as i64;
    let q = format!("timestamp={now_ms}&recvWindow=60000");
    let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(issued.secret.as_ref().unwrap().as_bytes()).unwrap();
    m.update(q.as_bytes());
    (issued.key.access_key.to_string(), format!("{q}&signature={}", hex::encode(m.finalize().into_bytes())), now_ms)
}
