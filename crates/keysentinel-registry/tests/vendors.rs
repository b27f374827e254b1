//! The vendor and counterparty registry against the real embedded store, with a clock the test
//! moves: what a suspension does under each response policy, what a lapsed vendor's keys may
//! no longer do, and what the observers (detection) are told as counterparties begin and end.

// Test helpers may unwrap and panic: a failure there is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keysentinel_audit::{Actor, AuditEntry};
use keysentinel_domain::*;
use keysentinel_registry::*;
use keysentinel_secrets::{Keyring, MasterKey};
use keysentinel_sqlite::{verify_file, FileVerifyOptions, SqliteStore};
use std::sync::{Arc, Mutex};
use time::macros::datetime;
use time::Duration;

struct TestClock(Mutex<Timestamp>);
impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
}

struct Env {
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
    clock: Arc<TestClock>,
    reg: Registry,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ks.db");
    let clock = Arc::new(TestClock(Mutex::new(datetime!(2026-12-01 09:00 UTC))));
    let keyring = Arc::new(Keyring::new(MasterKey::generate(), vec![]));
    let (store, _) = SqliteStore::open(&db, &keyring, clock.clone()).unwrap();
    let policy = Arc::new(KeyPolicy::default_policy().unwrap());
    let reg = Registry::new(Arc::new(store), policy, keyring, clock.clone());
    Env { _dir: dir, db, clock, reg }
}

impl Env {
    fn advance(&self, by: Duration) {
        let mut t = self.clock.0.lock().unwrap();
        *t += by;
    }

    fn log(&self) -> Vec<AuditEntry> {
        self.reg.audit_entries(0, 1000).unwrap()
    }
}

fn op(id: &str, role: &str) -> Actor {
    Actor::Operator { id: id.into(), role: role.into() }
}

async fn account(reg: &Registry, id: &str) {
    let new = NewAccount {
        account_id: AccountId::parse(id).unwrap(),
        segment: Segment::Retail,
        verification: Verification::Verified,
        declared_purpose: String::new(),
        declared_countries: vec![],
    };
    reg.create_account(op("alice", "admin"), new).await.unwrap();
}

/// A vendor approved until `days` from now: registered and checked by alice, approved by bob.
async fn approved(e: &Env, id: &str, days: i64) -> VendorId {
    let vid = VendorId::parse(id).unwrap();
    let new = NewVendor {
        vendor_id: vid.clone(),
        legal_name: "Tradebot Inc.".into(),
        egress_cidrs: EgressRanges::parse(&["198.51.100.0/24"]).unwrap(),
        reason: "new tool".into(),
    };
    e.reg.apply_vendor(op("alice", "admin"), new).await.unwrap();
    let answers = Questionnaire {
        stores_customer_secrets: false,
        secrets_encrypted_at_rest: false,
        uses_registered_egress_only: true,
        shares_keys_with_third_parties: false,
        requests_withdrawal_rights: false,
        jurisdictions: vec![CountryCode::parse("KR").unwrap()],
        incident_contact: "sec@tradebot.example".into(),
        security_certification: None,
    };
    let attestation = AttestationInput { answers, attested_at: e.clock.now(), reason: "received".into() };
    e.reg.attest_vendor(op("alice", "admin"), vid.clone(), attestation).await.unwrap();
    let dd = DueDiligenceInput {
        outcome: DueDiligenceOutcome::Satisfactory,
        document_ref: "DMS-1".into(),
        notes: String::new(),
        reason: "done".into(),
    };
    e.reg.record_vendor_due_diligence(op("alice", "admin"), vid.clone(), dd).await.unwrap();
    let approval = ApprovalInput {
        recertification_due: e.clock.now() + Duration::days(days),
        egress_cidrs: None,
        reason: "ok".into(),
    };
    e.reg.approve_vendor(op("bob", "compliance"), vid.clone(), approval, false).await.unwrap();
    vid
}

async fn vendor_key(e: &Env, account: &str, vendor: &VendorId) -> Result<IssuedKey, RegistryError> {
    let new = NewKey {
        account_id: AccountId::parse(account).unwrap(),
        algorithm: NewKeyAlgorithm::Hmac {},
        scheme: SigningScheme::Binance,
        scopes: vec![Scope::Read, Scope::Trade],
        ip_allowlist: IpAllowlist::default(),
        lifetime_days: None,
        vendor_id: Some(vendor.clone()),
        purpose: PurposeName::parse("vendor_copy_trading").unwrap(),
        purpose_note: "copy trading".into(),
        terms_version: "2026-05".into(),
        terms_accepted_at: datetime!(2026-05-01 00:00 UTC),
        terms_channel: TermsChannel::Web,
        sensitive_grant_hours: None,
        operated_by: None,
    };
    e.reg.create_key(op("alice", "admin"), new).await
}

#[tokio::test]
async fn a_suspension_suspends_its_keys_or_in_shadow_mode_only_says_what_it_would_do() {
    let e = env();
    account(&e.reg, "acct-1").await;
    let v = approved(&e, "tradebot", 365).await;
    let key = vendor_key(&e, "acct-1", &v).await.unwrap().key.access_key;

    let shadow = Arc::new(ResponsePolicy { mode: Mode::Shadow, ..Default::default() });
    let change = e.reg.suspend_vendor(op("alice", "admin"), v.clone(), "breach".into(), shadow).await.unwrap();
    assert!(change.shadowed);
    assert_eq!((change.keys.len(), change.keys[0].change.as_ref(), change.keys[0].notice_id.as_ref()), (1, None, None));
    assert_eq!(e.reg.key(&key).unwrap().status, KeyStatus::Active, "shadow mode changes no key");
    assert!(e.reg.notices("vendor:tradebot").unwrap().is_empty());

    // Recertified (a new due diligence, by someone other than the approver), then suspended
    // under the built-in policy: the key is suspended and its owner told.
    let dd = DueDiligenceInput {
        outcome: DueDiligenceOutcome::Conditional,
        document_ref: "DMS-2".into(),
        notes: "monthly logs".into(),
        reason: "re-review".into(),
    };
    e.advance(Duration::minutes(1));
    e.reg.record_vendor_due_diligence(op("carol", "admin"), v.clone(), dd).await.unwrap();
    let again = ApprovalInput {
        recertification_due: e.clock.now() + Duration::days(90),
        egress_cidrs: None,
        reason: "fixed".into(),
    };
    let back = e.reg.approve_vendor(op("bob", "compliance"), v.clone(), again.clone(), false).await;
    assert!(matches!(back, Err(RegistryError::VendorState(_))), "a suspended vendor is recertified, not approved");
    e.reg.approve_vendor(op("bob", "compliance"), v.clone(), again, true).await.unwrap();
    let change = e.reg.suspend_vendor(op("alice", "admin"), v.clone(), "breach".into(), Arc::default()).await.unwrap();
    assert_eq!((change.action, change.shadowed), (Some(Action::Suspend), false));
    assert_eq!(e.reg.key(&key).unwrap().status, KeyStatus::Suspended);
    let notices = e.reg.notices("vendor:tradebot").unwrap();
    assert_eq!(notices.iter().map(|n| n.kind).collect::<Vec<_>>(), [NoticeKind::VendorSuspended]);
    let log = e.log();
    let suspended: Vec<&AuditEntry> = log.iter().filter(|x| x.action == "key.suspend").collect();
    assert_eq!(suspended.len(), 1);
    assert_eq!(suspended[0].details["vendor_id"], "tradebot");
    assert_eq!(log.iter().filter(|x| x.action == "vendor.suspend").count(), 2);
    assert_eq!(log.iter().filter(|x| x.action == "vendor.recertify").count(), 1);
    // Every row written is bound to the log.
    let (_, rows) = verify_file(&e.db, &FileVerifyOptions::default()).unwrap();
    assert!(rows.bound);
}

#[tokio::test]
async fn a_lapsed_vendors_keys_are_not_renewed_and_contain_only_tells_the_owner() {
    let e = env();
    account(&e.reg, "acct-1").await;
    let v = approved(&e, "tradebot", 30).await;
    let key = vendor_key(&e, "acct-1", &v).await.unwrap().key.access_key;
    e.advance(Duration::days(30));
    // Lapsed before the sweep records it: no new key, and no successor by rotation.
    let refused = vendor_key(&e, "acct-1", &v).await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(refused.contains("vendor_not_approved") || refused.contains("is lapsed"), "{refused}");
    let rotated = e.reg.rotate_key(op("alice", "admin"), key.clone(), Duration::ZERO, None, "scheduled".into()).await;
    assert!(matches!(rotated, Err(RegistryError::Policy(ref p)) if p.rule == Rule::VendorNotApproved), "{rotated:?}");

    // A policy that only contains: vendor keys hold nothing it takes, so the key is as it was
    // and the owner is told; the lapse is recorded once.
    let contain = ResponsePolicy {
        vendors: VendorRules { on_lapse: Action::Contain, ..VendorRules::default() },
        ..Default::default()
    };
    let changes = e.reg.lapse_vendors(Arc::new(contain.clone())).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!((changes[0].vendor.status, changes[0].action), (VendorStatus::Lapsed, Some(Action::Contain)));
    assert_eq!((changes[0].keys[0].change.as_ref(), changes[0].keys[0].notice_id.is_some()), (None, true));
    assert_eq!(e.reg.key(&key).unwrap().scopes, ScopeSet::parse_list("read,trade").unwrap());
    let notices = e.reg.notices("vendor:tradebot").unwrap();
    assert_eq!(notices.iter().map(|n| n.kind).collect::<Vec<_>>(), [NoticeKind::VendorRestricted]);
    assert!(notices[0].en.body.contains("keeps working"), "{}", notices[0].en.body);
    assert!(e.reg.lapse_vendors(Arc::new(contain)).await.unwrap().is_empty(), "recorded once");
    let log = e.log();
    let lapse: Vec<&AuditEntry> = log.iter().filter(|x| x.action == "vendor.lapse").collect();
    assert_eq!(lapse.len(), 1);
    assert_eq!(lapse[0].actor, Actor::System { component: "vendor-sweep".into() });
    assert!(!log.iter().any(|x| x.action == "key.restrict"), "nothing was taken from the key");
}

/// What an observer (detection) is told of counterparties.
#[derive(Default)]
struct Told(Mutex<Vec<(String, bool)>>);

impl KeyObserver for Told {
    fn key_changed(&self, _key: &ApiKey, _secret: Option<&[u8]>) {}
    fn counterparty_changed(&self, c: &Counterparty, in_effect: bool) {
        self.0.lock().unwrap().push((c.counterparty_id.to_string(), in_effect));
    }
}

fn relationship(e: &Env, id: &str, kind: CounterpartyKind, until: Option<Timestamp>) -> NewCounterparty {
    NewCounterparty {
        counterparty_id: Some(CounterpartyId::parse(id).unwrap()),
        kind,
        account_id: AccountId::parse("broker-1").unwrap(),
        related_accounts: vec![AccountId::parse("client-1").unwrap()],
        principal: None,
        issuer: None,
        symbols: vec![],
        countries: vec![],
        ip_allowlist: IpAllowlist::default(),
        omnibus: kind == CounterpartyKind::BrokerClient,
        effective_from: e.clock.now(),
        effective_until: until,
        document_ref: "DOC-1".into(),
        reason: "signed".into(),
    }
}

#[tokio::test]
async fn detection_is_told_as_counterparties_begin_and_end_and_what_still_holds_follows_an_end() {
    let e = env();
    account(&e.reg, "broker-1").await;
    account(&e.reg, "client-1").await;
    let soon = e.clock.now() + Duration::hours(1);
    e.reg
        .create_counterparty(op("alice", "admin"), relationship(&e, "cp-broker", CounterpartyKind::BrokerClient, None))
        .await
        .unwrap();
    e.reg
        .create_counterparty(
            op("alice", "admin"),
            relationship(&e, "cp-group", CounterpartyKind::Affiliate, Some(soon)),
        )
        .await
        .unwrap();
    let told = Arc::new(Told::default());
    e.reg.observe(told.clone()).unwrap();
    let take = || std::mem::take(&mut *told.0.lock().unwrap());
    assert_eq!(take(), [("cp-broker".to_owned(), true), ("cp-group".to_owned(), true)], "replayed at start");

    // Ended by an operator: detection forgets the pair, then hears again what still holds.
    e.reg
        .end_counterparty(op("alice", "admin"), CounterpartyId::parse("cp-broker").unwrap(), "closed".into())
        .await
        .unwrap();
    assert_eq!(take(), [("cp-broker".to_owned(), false), ("cp-group".to_owned(), true)]);

    // Expired with time (no write): the sweep tells.
    let before = e.clock.now();
    e.advance(Duration::hours(2));
    assert_eq!(e.reg.counterparties_turned(before, e.clock.now()).unwrap(), 1);
    assert_eq!(take(), [("cp-group".to_owned(), false)]);
    assert_eq!(e.reg.counterparties_turned(e.clock.now(), e.clock.now()).unwrap(), 0, "told once");
    let log = e.log();
    assert_eq!(log.iter().filter(|x| x.action == "counterparty.create").count(), 2);
    assert_eq!(log.iter().filter(|x| x.action == "counterparty.end" && x.target == "cp-broker").count(), 1);
}
