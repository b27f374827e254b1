//! Set-up shared by the server's benchmarks.

use hmac::{Hmac, Mac};
use keysentinel_audit::Actor;
use keysentinel_domain::{AccountId, Clock, IpAllowlist, KeyPolicy, Scope, SigningScheme};
use keysentinel_registry::{NewKey, NewKeyAlgorithm, Registry, SystemClock};
use keysentinel_secrets::{Keyring, MasterKey};
use keysentinel_server::telemetry::EventPipeline;
use keysentinel_server::AppState;
use keysentinel_sqlite::SqliteStore;
use std::sync::Arc;

/// A registry on a fresh embedded store in `dir`, on the system clock, and its admin.
pub fn registry(dir: &std::path::Path) -> (Arc<Registry>, Actor) {
    let keyring = Arc::new(Keyring::new(MasterKey::generate(), vec![]));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (store, _) = SqliteStore::open(&dir.join("ks.db"), &keyring, clock.clone()).unwrap();
    let reg = Arc::new(Registry::new(Arc::new(store), Arc::new(KeyPolicy::default_policy().unwrap()), keyring, clock));
    (reg, Actor::Operator { id: "admin".into(), role: "admin".into() })
}

/// The server's state over `reg`, its verify events drained as a consumer would.
pub fn state(rt: &tokio::runtime::Runtime, reg: &Arc<Registry>) -> AppState {
    rt.block_on(async {
        let (events, mut rx) = EventPipeline::new(1 << 16, "bench".into());
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        AppState::new(
            reg.clone(),
            keysentinel_verify::routes::RouteTable::default_routes().unwrap(),
            Default::default(),
            events,
        )
        .unwrap()
    })
}

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
                algorithm: NewKeyAlgorithm::Hmac {},
                scheme: SigningScheme::Binance,
                scopes: vec![Scope::Read],
                ip_allowlist: IpAllowlist::parse(&["203.0.113.0/24"]).unwrap(),
                lifetime_days: None,
                vendor_id: None,
                purpose: keysentinel_domain::PurposeName::parse("portfolio_read_only").unwrap(),
                purpose_note: String::new(),
                terms_version: "2026-05".into(),
                terms_accepted_at: reg.now(),
                terms_channel: keysentinel_domain::TermsChannel::Web,
                sensitive_grant_hours: None,
                operated_by: None,
            },
        ))
        .unwrap();
    let now_ms = (reg.now().unix_timestamp_nanos() / 1_000_000) as i64;
    let q = format!("timestamp={now_ms}&recvWindow=60000");
    let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(issued.secret.as_ref().unwrap().as_bytes()).unwrap();
    m.update(q.as_bytes());
    (issued.key.access_key.to_string(), format!("{q}&signature={}", hex::encode(m.finalize().into_bytes())), now_ms)
}
