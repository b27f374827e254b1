//! The registry against the real embedded store.

// Test helpers may unwrap and panic: a failure there is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keysentinel_audit::{Actor, AuditEntry};
use keysentinel_domain::*;
use keysentinel_registry::*;
use keysentinel_secrets::{Keyring, MasterKey};
use keysentinel_sqlite::{verify_file, FileVerifyOptions, SqliteStore};
use keysentinel_store::{CaseFilter, KeyFilter, Outcome, StoreError};
use std::sync::{Arc, Mutex};
use time::macros::datetime;
use time::Duration;

/// A clock the test moves by hand.
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
    env_with(KeyPolicy::default_policy().unwrap())
}

fn env_with(policy: KeyPolicy) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ks.db");
    let clock = Arc::new(TestClock(Mutex::new(datetime!(2026-11-28 09:00 UTC))));
    let keyring = Arc::new(Keyring::new(MasterKey::generate(), vec![]));
    let (store, created) = SqliteStore::open(&db, &keyring, clock.clone()).unwrap();
    assert!(created);
    let reg = Registry::new(Arc::new(store), Arc::new(policy), keyring, clock.clone());
    Env { _dir: dir, db, clock, reg }
}

fn admin() -> Actor {
    Actor::Operator { id: "alice".into(), role: "admin".into() }
}
fn approver(id: &str) -> Actor {
    Actor::Operator { id: id.into(), role: "approver".into() }
}

async fn account(reg: &Registry, id: &str, segment: Segment) {
    reg.create_account(
        admin(),
        NewAccount {
            account_id: AccountId::parse(id).unwrap(),
            segment,
            verification: Verification::Verified,
            declared_purpose: "algorithmic trading".into(),
            declared_countries: vec![CountryCode::parse("KR").unwrap()],
        },
    )
    .await
    .unwrap();
}

fn new_key(account: &str, scopes: &[Scope], allowlist: &[&str]) -> NewKey {
    NewKey {
        account_id: AccountId::parse(account).unwrap(),
        algorithm: NewKeyAlgorithm::Hmac {},
        scheme: SigningScheme::Binance,
        scopes: scopes.to_vec(),
        ip_allowlist: IpAllowlist::parse(allowlist).unwrap(),
        lifetime_days: None,
        vendor_id: None,
        purpose: PurposeName::parse(if !allowlist.is_empty() {
            "treasury"
        } else if scopes.contains(&Scope::Trade) {
            "own_bot"
        } else {
            "portfolio_read_only"
        })
        .unwrap(),
        purpose_note: "bot".into(),
        terms_version: "2026-05".into(),
        terms_accepted_at: datetime!(2026-05-01 00:00 UTC),
        terms_channel: TermsChannel::Web,
        sensitive_grant_hours: None,
        operated_by: None,
    }
}

fn rule(err: RegistryError) -> Rule {
    match err {
        RegistryError::Policy(v) => v.rule,
        other => panic!("expected a policy violation, got {other:?}"),
    }
}

#[tokio::test]
async fn lifecycle_is_recorded_and_the_log_verifies() {
    let e = env();
    account(&e.reg, "acct-1", Segment::Retail).await;
    let issued = e.reg.create_key(admin(), new_key("acct-1", &[Scope::Read, Scope::Trade], &[])).await.unwrap();
    let secret = issued.secret.clone().unwrap();
    assert!(secret.starts_with("kss_"));
    let ak = issued.key.access_key.clone();
    assert!(ak.is_native());

    e.reg.suspend_key(admin(), ak.clone(), "investigating".into()).await.unwrap();
    e.reg.resume_key(admin(), ak.clone(), "cleared".into()).await.unwrap();
    let rotated = e.reg.rotate_key(admin(), ak.clone(), Duration::hours(1), None, "scheduled".into()).await.unwrap();
    assert_eq!(rotated.key.rotated_from.as_ref(), Some(&ak));
    assert_eq!(rotated.key.scopes, issued.key.scopes);
    assert_ne!(rotated.secret.as_ref().map(|s| s.as_str()), Some(secret.as_str()));
    let old = e.reg.key(&ak).unwrap();
    assert_eq!(old.expires_at, e.clock.now() + Duration::hours(1), "old key overlaps for one hour");
    e.reg.revoke_key(admin(), ak.clone(), "retired".into()).await.unwrap();
    let err = e.reg.resume_key(admin(), ak.clone(), "undo".into()).await.unwrap_err();
    assert!(matches!(err, RegistryError::Transition(TransitionError::AlreadyRevoked)), "{err:?}");
    assert!(matches!(e.reg.suspend_key(admin(), ak.clone(), "  ".into()).await, Err(RegistryError::Validation(_))));

    // Secrets never reach the log; the store holds them only encrypted.
    let entries = e.reg.audit_entries(0, 100).unwrap();
    let actions: Vec<&str> = entries.iter().map(|x| x.action.as_str()).collect();
    assert_eq!(
        actions,
        ["account.create", "key.create", "key.suspend", "key.resume", "key.create", "key.rotate", "key.revoke"]
    );
    let raw = std::fs::read(&e.db).unwrap();
    let wal = std::fs::read(e.db.with_extension("db-wal")).unwrap_or_default();
    for bytes in [&raw, &wal] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "secret found in clear in the database files"
        );
    }
    assert!(entries[1].details["secret_fingerprint"].as_str().unwrap().starts_with("hmac-sha256:"));

    let (report, _) = verify_file(&e.db, &FileVerifyOptions::default()).unwrap();
    assert_eq!(report.entries, 7);
    let proof = e.reg.audit_proof(3).unwrap();
    let (_, origin, verifier) = e.reg.audit_checkpoint().unwrap().unwrap();
    let entry = proof.verify(&keysentinel_audit::LogVerifier::parse(&verifier).unwrap(), &origin).unwrap();
    assert_eq!(entry.action, "key.resume");
}

#[tokio::test]
async fn policy_violations_are_refused_by_rule_name_and_write_nothing() {
    let e = env();
    account(&e.reg, "retail-1", Segment::Retail).await;
    account(&e.reg, "corp-1", Segment::Corporate).await;
    let before = e.reg.audit_entries(0, 1000).unwrap().len();

    let mut vendor = new_key("retail-1", &[Scope::Read, Scope::Withdraw], &["203.0.113.0/24"]);
    vendor.vendor_id = Some(VendorId::parse("tradebot-inc").unwrap());
    assert_eq!(rule(e.reg.create_key(admin(), vendor).await.unwrap_err()), Rule::VendorKeySensitiveScope);
    assert_eq!(
        rule(e.reg.create_key(admin(), new_key("corp-1", &[Scope::Trade], &[])).await.unwrap_err()),
        Rule::AllowlistRequired
    );
    assert_eq!(
        rule(e.reg.create_key(admin(), new_key("retail-1", &[Scope::Withdraw], &[])).await.unwrap_err()),
        Rule::AllowlistRequired
    );
    let mut long = new_key("retail-1", &[Scope::Read], &[]);
    long.lifetime_days = Some(400);
    assert_eq!(rule(e.reg.create_key(admin(), long).await.unwrap_err()), Rule::MaxLifetime);
    assert_eq!(e.reg.audit_entries(0, 1000).unwrap().len(), before, "refusals write nothing");

    for _ in 0..10 {
        e.reg.create_key(admin(), new_key("retail-1", &[Scope::Read], &[])).await.unwrap();
    }
    assert_eq!(
        rule(e.reg.create_key(admin(), new_key("retail-1", &[Scope::Read], &[])).await.unwrap_err()),
        Rule::MaxKeysPerAccount
    );
    let keys = e
        .reg
        .keys(KeyFilter { account_id: Some(AccountId::parse("retail-1").unwrap()), limit: 100, ..Default::default() })
        .unwrap();
    assert_eq!(keys.len(), 10);
    // A revoked key frees its slot.
    e.reg.revoke_key(admin(), keys[0].access_key.clone(), "lost".into()).await.unwrap();
    e.reg.create_key(admin(), new_key("retail-1", &[Scope::Read], &[])).await.unwrap();

    let mut unverified = new_key("nobody", &[Scope::Read], &[]);
    unverified.account_id = AccountId::parse("nobody").unwrap();
    assert!(matches!(e.reg.create_key(admin(), unverified).await, Err(RegistryError::NotFound { .. })));
}

#[tokio::test]
async fn sensitive_grants_need_a_second_person_and_expire() {
    let e = env();
    account(&e.reg, "acct", Segment::Retail).await;
    let issued = e
        .reg
        .create_key(admin(), new_key("acct", &[Scope::Read, Scope::Withdraw], &["198.51.100.0/24"]))
        .await
        .unwrap();
    let ak = issued.key.access_key.clone();
    assert!(!issued.key.effective_scopes(e.clock.now()).contains(Scope::Withdraw), "withdraw is pending at creation");
    // The requester (alice) cannot approve her own request.
    let self_approval = e
        .reg
        .approve_grant(
            Actor::Operator { id: "alice".into(), role: "approver".into() },
            ak.clone(),
            Scope::Withdraw,
            "ok".into(),
        )
        .await;
    assert_eq!(rule(self_approval.unwrap_err()), Rule::SensitiveGrantSelfApproval);
    let key =
        e.reg.approve_grant(approver("bob"), ak.clone(), Scope::Withdraw, "customer called".into()).await.unwrap();
    assert!(key.effective_scopes(e.clock.now()).contains(Scope::Withdraw));
    *e.clock.0.lock().unwrap() += Duration::hours(25);
    assert!(
        !e.reg.key(&ak).unwrap().effective_scopes(e.clock.now()).contains(Scope::Withdraw),
        "grant lapsed after 24h"
    );
    let too_long = e.reg.request_grant(admin(), ak.clone(), Scope::Transfer, Some(48), "big transfer".into()).await;
    assert_eq!(rule(too_long.unwrap_err()), Rule::SensitiveGrantTtl);
}

#[tokio::test]
async fn a_key_without_an_allowlist_lapses_when_the_policy_says_its_owner_told_first() {
    let text = keysentinel_domain::policy::DEFAULT_POLICY_TOML
        .replace("unrestricted_lapse_days = 0 ", "unrestricted_lapse_days = 30 ")
        .replace("unrestricted_notice_days = 7 ", "unrestricted_notice_days = 5 ");
    let e = env_with(KeyPolicy::from_toml(&text).unwrap());
    account(&e.reg, "acct", Segment::Retail).await;
    let t0 = e.clock.now();
    let open = e.reg.create_key(admin(), new_key("acct", &[Scope::Read], &[])).await.unwrap().key;
    let bound = e.reg.create_key(admin(), new_key("acct", &[Scope::Read], &["198.51.100.0/24"])).await.unwrap().key;
    assert_eq!((open.unrestricted_lapse_at, open.expires_at), (Some(t0 + Duration::days(30)), t0 + Duration::days(30)));
    assert_eq!(
        (bound.unrestricted_lapse_at, bound.expires_at),
        (None, t0 + Duration::days(365)),
        "an allowlist keeps the lifetime"
    );

    // Too early for the notice; then five days before, once.
    *e.clock.0.lock().unwrap() += Duration::days(24);
    assert_eq!(e.reg.sweep_unrestricted().await.unwrap(), (0, 0));
    *e.clock.0.lock().unwrap() += Duration::days(1);
    assert_eq!(e.reg.sweep_unrestricted().await.unwrap(), (1, 0));
    assert_eq!(e.reg.sweep_unrestricted().await.unwrap(), (0, 0), "told once");
    let notices = e.reg.notices(&format!("lapse:{}", open.access_key)).unwrap();
    assert_eq!(notices.iter().map(|n| n.kind).collect::<Vec<_>>(), [NoticeKind::UnrestrictedLapse]);
    assert!(notices[0].en.body.contains("no IP allowlist"), "{}", notices[0].en.body);
    assert_eq!(e.reg.key(&open.access_key).unwrap().lapse_notice_id.as_deref(), Some(notices[0].notice_id.as_str()));

    // The day comes: refused at once (its expiry), recorded as a lapse by the sweep.
    *e.clock.0.lock().unwrap() += Duration::days(5);
    assert_eq!(e.reg.key(&open.access_key).unwrap().effective_status(e.clock.now()), KeyStatus::Expired);
    assert_eq!(e.reg.sweep_unrestricted().await.unwrap(), (0, 1));
    let lapsed = e.reg.key(&open.access_key).unwrap();
    assert_eq!((lapsed.status, lapsed.status_changed_by.as_str()), (KeyStatus::Expired, "system:registry-sweep"));
    assert_eq!(e.reg.key(&bound.access_key).unwrap().status, KeyStatus::Active);
    let log: Vec<AuditEntry> = e.reg.audit_entries(0, 1000).unwrap();
    let of = |action: &str| log.iter().filter(|x| x.action == action).map(|x| x.target.clone()).collect::<Vec<_>>();
    assert_eq!(of("key.lapse_notice"), [open.access_key.to_string()]);
    assert_eq!(of("key.lapse"), [open.access_key.to_string()]);
    assert!(of("key.expire").is_empty(), "a lapse is not recorded as an ordinary expiry");
}

#[tokio::test]
async fn a_grant_is_a_scope_the_purpose_must_allow() {
    let e = env();
    account(&e.reg, "acct", Segment::Retail).await;
    let mut nk = new_key("acct", &[Scope::Read], &["198.51.100.0/24"]);
    nk.purpose = PurposeName::parse("portfolio_read_only").unwrap();
    let ak = e.reg.create_key(admin(), nk).await.unwrap().key.access_key;
    let refused = e.reg.request_grant(admin(), ak.clone(), Scope::Withdraw, Some(1), "payout".into()).await;
    assert_eq!(rule(refused.unwrap_err()), Rule::PurposeScopeNotAllowed);
    assert!(e.reg.key(&ak).unwrap().grants.is_empty(), "nothing written");
    let mut legacy = new_key("acct", &[Scope::Read], &[]);
    legacy.purpose = PurposeName::legacy();
    assert_eq!(
        rule(e.reg.create_key(admin(), legacy).await.unwrap_err()),
        Rule::PurposeNotDefined,
        "legacy is never issued"
    );
    let mut future = new_key("acct", &[Scope::Read], &[]);
    future.terms_accepted_at = e.clock.now() + Duration::hours(1);
    assert!(
        matches!(e.reg.create_key(admin(), future).await, Err(RegistryError::Validation(v)) if v.field == "terms_accepted_at")
    );
}

#[tokio::test]
async fn expiry_is_enforced_then_recorded_by_the_sweeper() {
    let e = env();
    account(&e.reg, "acct", Segment::Retail).await;
    let mut nk = new_key("acct", &[Scope::Read], &[]);
    nk.lifetime_days = Some(1);
    let ak = e.reg.create_key(admin(), nk).await.unwrap().key.access_key;
    *e.clock.0.lock().unwrap() += Duration::days(2);
    let listed = e.reg.keys(KeyFilter { status: Some(KeyStatus::Expired), limit: 10, ..Default::default() }).unwrap();
    assert_eq!(listed.len(), 1, "listed as expired before the sweeper runs");
    assert_eq!(e.reg.expire_due().await.unwrap(), 1);
    assert_eq!(e.reg.key(&ak).unwrap().status, KeyStatus::Expired);
    assert_eq!(e.reg.expire_due().await.unwrap(), 0);
    assert_eq!(e.reg.audit_entries(0, 100).unwrap().last().unwrap().action, "key.expire");
}

#[tokio::test]
async fn import_reports_by_line_is_atomic_per_batch_and_idempotent() {
    let e = env();
    account(&e.reg, "upbit-user-1", Segment::Retail).await;
    account(&e.reg, "corp-9", Segment::Corporate).await;
    let file = [
        r#"{"access_key":"xKnY2pS8hRbQw5C0mVtLz3JfA9gE6dUoNi4Ha1Bs","secret":"Qm9vdGlzZmFrZVNlY3JldEZvclRlc3RzMTIzNDU2","account_id":"upbit-user-1","scheme":"upbit","scopes":["read","trade"],"created_at":"2026-01-10T00:00:00Z","expires_at":"2027-01-10T00:00:00Z","terms_version":"2026-05"}"#,
        r#"{"access_key":"bad key with spaces","secret":"x","account_id":"upbit-user-1","scheme":"upbit","scopes":["read"],"created_at":"2026-01-10T00:00:00Z","expires_at":"2027-01-10T00:00:00Z"}"#,
        "",
        r#"{"access_key":"AAAABBBBCCCCDDDDEEEEFFFF","secret":"0123456789abcdef0123","account_id":"ghost","scheme":"upbit","scopes":["read"],"created_at":"2026-01-10T00:00:00Z","expires_at":"2027-01-10T00:00:00Z"}"#,
        r#"{"access_key":"CorpKey0000000000000001","public_key":"11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=","account_id":"corp-9","scheme":"korbit","scopes":["read","withdraw"],"created_at":"2026-01-10T00:00:00Z","expires_at":"2027-01-10T00:00:00Z","terms_version":"2026-05"}"#,
        r#"{"access_key":"TypoKey00000000000000001","secret":"0123456789abcdef0123","account_id":"upbit-user-1","scheme":"upbit","scopes":["read"],"ip_alowlist":["1.2.3.4"],"created_at":"2026-01-10T00:00:00Z","expires_at":"2027-01-10T00:00:00Z"}"#,
        "not json",
    ]
    .join("\n");
    let report = e.reg.import_keys(admin(), file.clone(), ImportOptions::default()).await.unwrap();
    assert_eq!(report.lines, 6);
    assert_eq!(report.imported, 2);
    let error_lines: Vec<(usize, &str)> = report.errors.iter().map(|i| (i.line, i.code.as_str())).collect();
    assert_eq!(error_lines, [(2, "invalid_line"), (4, "unknown_account"), (6, "invalid_line"), (7, "invalid_line")]);
    assert!(
        report.errors[2].message.contains("ip_alowlist"),
        "an unknown field is named: {}",
        report.errors[2].message
    );
    let warning_codes: Vec<(usize, &str)> = report.warnings.iter().map(|i| (i.line, i.code.as_str())).collect();
    assert!(
        warning_codes.contains(&(5, "pending_grant")) && warning_codes.contains(&(5, "policy_violation")),
        "{warning_codes:?}"
    );

    let upbit = e.reg.key(&AccessKey::parse("xKnY2pS8hRbQw5C0mVtLz3JfA9gE6dUoNi4Ha1Bs").unwrap()).unwrap();
    assert_eq!(upbit.origin, KeyOrigin::Imported);
    assert!(!upbit.access_key.is_native(), "imported keys keep their native format");

    let again = e.reg.import_keys(admin(), file, ImportOptions::default()).await.unwrap();
    assert_eq!((again.imported, again.unchanged), (0, 2), "re-running is safe");

    let changed = r#"{"access_key":"xKnY2pS8hRbQw5C0mVtLz3JfA9gE6dUoNi4Ha1Bs","secret":"AnotherSecretThatDiffers0","account_id":"upbit-user-1","scheme":"upbit","scopes":["read"],"created_at":"2026-01-10T00:00:00Z","expires_at":"2027-01-10T00:00:00Z"}"#;
    let conflict = e.reg.import_keys(admin(), changed.into(), ImportOptions::default()).await.unwrap();
    assert_eq!(conflict.errors[0].code, "conflict");

    let strict = r#"{"access_key":"CorpKey0000000000000002","secret":"0123456789abcdef0123","account_id":"corp-9","scheme":"korbit","scopes":["read"],"created_at":"2026-01-10T00:00:00Z","expires_at":"2027-01-10T00:00:00Z","terms_version":"2026-05"}"#;
    let refused = e
        .reg
        .import_keys(admin(), strict.into(), ImportOptions { enforce_policy: true, batch_size: 10 })
        .await
        .unwrap();
    assert_eq!((refused.imported, refused.errors[0].code.as_str()), (0, "policy_violation"));
    assert!(refused.errors[0].message.contains("allowlist_required"));
    verify_file(&e.db, &FileVerifyOptions::default()).unwrap();
}

#[tokio::test]
async fn a_change_without_an_audit_entry_is_rolled_back() {
    let e = env();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let op: keysentinel_store::WriteOp = Box::new(move |wtx| {
        let now = wtx.now();
        let acct = Account {
            account_id: AccountId::parse("sneaky").unwrap(),
            segment: Segment::Retail,
            verification: Verification::Verified,
            declared_purpose: String::new(),
            declared_countries: vec![],
            verified_at: None,
            created_at: now,
            updated_at: now,
        };
        let wrote = wtx.insert_account(&acct).is_ok();
        Outcome {
            keep: true,
            finish: Box::new(move |r| {
                let _ = tx.send((wrote, r));
            }),
        }
    });
    e.reg.store().submit(op).unwrap();
    let (wrote, result) = rx.await.unwrap();
    assert!(wrote);
    assert!(matches!(result, Err(StoreError::Unaudited)));
    assert!(e.reg.store().account(&AccountId::parse("sneaky").unwrap()).unwrap().is_none());
}

#[tokio::test]
async fn concurrent_changes_group_commit_and_each_lands_once() {
    let e = env();
    account(&e.reg, "acct", Segment::MarketMaker).await;
    let reg = Arc::new(e.reg);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let reg = reg.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("acct-{i}");
            reg.create_account(
                admin(),
                NewAccount {
                    account_id: AccountId::parse(&id).unwrap(),
                    segment: Segment::Retail,
                    verification: Verification::Verified,
                    declared_purpose: String::new(),
                    declared_countries: vec![],
                },
            )
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // A duplicate fails on its own without failing the others in its batch.
    let dup = reg.create_account(
        admin(),
        NewAccount {
            account_id: AccountId::parse("acct-3").unwrap(),
            segment: Segment::Retail,
            verification: Verification::Verified,
            declared_purpose: String::new(),
            declared_countries: vec![],
        },
    );
    assert!(matches!(dup.await, Err(RegistryError::Conflict { .. })));
    let (report, _) = verify_file(&e.db, &FileVerifyOptions::default()).unwrap();
    assert_eq!(report.entries, 41);
    assert!(report.checkpoints >= 1);
}

#[tokio::test]
async fn master_key_rotation_rewraps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ks.db");
    let clock: Arc<dyn Clock> = Arc::new(TestClock(Mutex::new(datetime!(2026-11-28 09:00 UTC))));
    let policy = Arc::new(KeyPolicy::default_policy().unwrap());
    let (old, new) = (MasterKey::generate(), MasterKey::generate());
    let (old_b64, new_b64) = (old.to_base64(), new.to_base64());
    let (access_key, secret) = {
        let keyring = Arc::new(Keyring::new(old, vec![]));
        let (store, _) = SqliteStore::open(&db, &keyring, clock.clone()).unwrap();
        let reg = Registry::new(Arc::new(store), policy.clone(), keyring, clock.clone());
        account(&reg, "acct", Segment::Retail).await;
        let issued = reg.create_key(admin(), new_key("acct", &[Scope::Read], &[])).await.unwrap();
        (issued.key.access_key, issued.secret.unwrap())
    };
    // Without the old key loaded, the store cannot be opened at all.
    let only_new = Arc::new(Keyring::new(MasterKey::from_base64(&new_b64).unwrap(), vec![]));
    assert!(SqliteStore::open(&db, &only_new, clock.clone()).is_err());
    {
        let both = Arc::new(Keyring::new(new, vec![MasterKey::from_base64(&old_b64).unwrap()]));
        let (store, created) = SqliteStore::open(&db, &both, clock.clone()).unwrap();
        assert!(!created);
        let reg = Registry::new(Arc::new(store), policy.clone(), both, clock.clone());
        let n = tokio::task::spawn_blocking(move || {
            reg.rewrap_secrets(Actor::Local { command: "secrets rewrap".into() }).unwrap()
        })
        .await
        .unwrap();
        assert_eq!(n, 3, "one key secret and the two log keys");
    }
    // After the rewrap the new key alone opens everything: re-importing the key with its
    // secret decrypts the stored one and finds it unchanged.
    let (store, _) = SqliteStore::open(&db, &only_new, clock.clone()).unwrap();
    let reg = Registry::new(Arc::new(store), policy, only_new, clock);
    let line = format!(
        r#"{{"access_key":"{access_key}","secret":"{}","account_id":"acct","scheme":"binance","scopes":["read"],"created_at":"2026-11-28T09:00:00Z","expires_at":"2027-11-28T09:00:00Z"}}"#,
        secret.as_str()
    );
    let report = reg.import_keys(admin(), line, ImportOptions::default()).await.unwrap();
    assert_eq!((report.unchanged, report.errors.len()), (1, 0), "{report:?}");
    assert_eq!(reg.audit_entries(0, 100).unwrap().iter().filter(|e| e.action == "secrets.rewrap").count(), 1);
    verify_file(&db, &FileVerifyOptions::default()).unwrap();
}

fn suspicion(key: &AccessKey, stage: Stage, at: Timestamp) -> Suspicion {
    Suspicion {
        at,
        key_id: key.clone(),
        stage,
        risk: 0.6,
        findings: vec![Finding {
            indicator: keysentinel_domain::Indicator::OutsideAllowlist,
            count: 1,
            evidence: "correctly signed from 203.0.113.7 (US AS16509), outside the key's allowlist".into(),
            observed: vec![],
        }],
        compromise: false,
        detector: "test".into(),
        related_accounts: vec![],
        baseline: None,
    }
}

#[tokio::test]
async fn containment_drops_withdrawals_then_trading_short_of_suspension() {
    let e = env();
    account(&e.reg, "acct", Segment::Retail).await;
    let issued = e
        .reg
        .create_key(admin(), new_key("acct", &[Scope::Read, Scope::Trade, Scope::Withdraw], &["198.51.100.0/24"]))
        .await
        .unwrap();
    let ak = issued.key.access_key.clone();
    e.reg.approve_grant(approver("bob"), ak.clone(), Scope::Withdraw, "customer called".into()).await.unwrap();
    let text = include_str!("../../../deploy/response/response-policy.toml")
        .replace(
            "warn = { action = \"notify\", automatic = true, sla_hours = 72 }",
            "warn = { action = \"contain\", automatic = true, sla_hours = 72 }",
        )
        .replace(
            "reverify = { action = \"suspend\", automatic = true, sla_hours = 24 }",
            "reverify = { action = \"read_only\", automatic = true, sla_hours = 24 }",
        )
        // Each stage at once: the answer window is tested on its own.
        .replace("answer_window_hours = 24", "answer_window_hours = 0");
    let policy = Arc::new(ResponsePolicy::from_toml(&text).unwrap());
    assert_eq!(policy.retail.warn.action, Action::Contain);

    let case = e.reg.respond(suspicion(&ak, Stage::Warn, e.clock.now()), policy.clone()).await.unwrap().unwrap();
    let key = e.reg.key(&ak).unwrap();
    let scopes = key.effective_scopes(e.clock.now());
    assert!(!scopes.contains(Scope::Withdraw) && scopes.contains(Scope::Trade), "funds cannot leave; trading goes on");
    assert_eq!(key.status, KeyStatus::Active);
    let notices = e.reg.notices(&case.case_id).unwrap();
    assert_eq!(notices.iter().map(|n| n.kind).collect::<Vec<_>>(), [NoticeKind::Restricted]);

    let case = e.reg.respond(suspicion(&ak, Stage::Reverify, e.clock.now()), policy).await.unwrap().unwrap();
    let scopes = e.reg.key(&ak).unwrap().effective_scopes(e.clock.now());
    assert_eq!(scopes.iter().collect::<Vec<_>>(), [Scope::Read], "read only");
    assert!(
        case.history.iter().any(|h| h.what == "action_taken" && h.detail.contains("lost trade")),
        "{:?}",
        case.history
    );
    let entries: Vec<AuditEntry> =
        e.reg.audit_entries(0, 1000).unwrap().into_iter().filter(|a| a.action == "key.restrict").collect();
    assert_eq!(entries.len(), 2, "each restriction audited");
    assert_eq!(entries[0].details["dropped"], serde_json::json!(["withdraw"]));
}

#[tokio::test]
async fn cases_past_their_sla_are_listed_most_overdue_first() {
    let e = env();
    account(&e.reg, "acct", Segment::Retail).await;
    let mut policy = ResponsePolicy::default();
    policy.retail.answer_window_hours = 0;
    let policy = Arc::new(policy);
    let mut keys = Vec::new();
    for _ in 0..2 {
        let issued = e.reg.create_key(admin(), new_key("acct", &[Scope::Read], &["198.51.100.0/24"])).await.unwrap();
        keys.push(issued.key.access_key);
    }
    // A warning (72 h to act) on the first key, a re-verification (24 h) on the second.
    let warned = e.reg.respond(suspicion(&keys[0], Stage::Warn, e.clock.now()), policy.clone()).await.unwrap().unwrap();
    let stopped = e.reg.respond(suspicion(&keys[1], Stage::Reverify, e.clock.now()), policy).await.unwrap().unwrap();
    let overdue = |e: &Env| {
        e.reg
            .overdue_cases(CaseFilter { limit: 100, ..CaseFilter::default() })
            .unwrap()
            .into_iter()
            .map(|c| c.case_id)
            .collect::<Vec<_>>()
    };
    assert!(overdue(&e).is_empty());
    *e.clock.0.lock().unwrap() += Duration::hours(25);
    assert_eq!(overdue(&e), std::slice::from_ref(&stopped.case_id));
    *e.clock.0.lock().unwrap() += Duration::hours(48);
    assert_eq!(overdue(&e), [stopped.case_id.clone(), warned.case_id.clone()]);
    e.reg
        .case_command(
            admin(),
            stopped.case_id.clone(),
            CaseCommand::Close { resolution: Resolution::ConfirmedSharing },
            "done".into(),
        )
        .await
        .unwrap();
    assert_eq!(overdue(&e), [warned.case_id], "a closed case is no longer overdue");
}

#[tokio::test]
async fn a_case_shows_the_linked_accounts_cases_and_their_review_is_recorded() {
    let e = env();
    let policy = Arc::new(ResponsePolicy::default());
    let mut keys = Vec::new();
    for a in ["acct-1", "acct-2"] {
        account(&e.reg, a, Segment::Retail).await;
        let issued = e.reg.create_key(admin(), new_key(a, &[Scope::Read], &["198.51.100.0/24"])).await.unwrap();
        keys.push(issued.key.access_key);
    }
    let other = e.reg.respond(suspicion(&keys[1], Stage::Warn, e.clock.now()), policy.clone()).await.unwrap().unwrap();
    let mut s = suspicion(&keys[0], Stage::Warn, e.clock.now());
    s.related_accounts = vec![
        RelatedAccount { account_id: "acct-2".into(), via: "shared address 203.0.113.7".into() },
        RelatedAccount { account_id: "acct-ghost".into(), via: "shared device \"d1\"".into() },
    ];
    let case = e.reg.respond(s, policy).await.unwrap().unwrap();
    let linked = e.reg.case_related(&case.case_id).unwrap();
    assert_eq!(linked.len(), 2);
    assert_eq!(linked[0].account_id, "acct-2");
    assert_eq!(linked[0].cases.iter().map(|c| c.case_id.clone()).collect::<Vec<_>>(), [other.case_id]);
    assert!(linked[1].cases.is_empty(), "an account only detection knows");
    let cmd = CaseCommand::ReviewRelated { text: "acct-2 is the owner's spouse; same household".into() };
    let case = e.reg.case_command(admin(), case.case_id, cmd, "playbook step".into()).await.unwrap();
    assert_eq!(case.history.last().unwrap().what, "review_related");
}

#[tokio::test]
async fn an_escalation_rule_takes_a_probed_key_straight_to_revocation() {
    let e = env();
    account(&e.reg, "acct", Segment::Retail).await;
    let issued = e.reg.create_key(admin(), new_key("acct", &[Scope::Read], &["198.51.100.0/24"])).await.unwrap();
    let ak = issued.key.access_key;
    let mut policy = ResponsePolicy::default();
    policy.escalate.push(Escalation {
        indicators: vec![keysentinel_domain::Indicator::ProbedThenUsed],
        at_least: Stage::Invalidate,
    });
    let mut s = suspicion(&ak, Stage::Warn, e.clock.now());
    s.findings.push(Finding {
        indicator: keysentinel_domain::Indicator::ProbedThenUsed,
        count: 1,
        evidence: "from AS16509".into(),
        observed: vec![],
    });
    let case = e.reg.respond(s, Arc::new(policy)).await.unwrap().unwrap();
    assert_eq!(case.stage, Stage::Invalidate);
    assert!(case.history.iter().any(|h| h.what == "escalated"), "{:?}", case.history);
    assert_eq!(e.reg.key(&ak).unwrap().status, KeyStatus::Revoked);
}

#[tokio::test]
async fn the_playbook_decides_restrictions_and_due_diligence_on_the_case() {
    let e = env();
    account(&e.reg, "acct", Segment::Retail).await;
    let issued =
        e.reg.create_key(admin(), new_key("acct", &[Scope::Read, Scope::Trade], &["198.51.100.0/24"])).await.unwrap();
    let ak = issued.key.access_key;
    let case = e.reg.respond(suspicion(&ak, Stage::Warn, e.clock.now()), Arc::new(ResponsePolicy::default())).await;
    let id = case.unwrap().unwrap().case_id;
    let refused = e
        .reg
        .case_command(admin(), id.clone(), CaseCommand::Restrict { action: Action::Notify }, "x".into())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "invalid_case_state");
    let cmd = CaseCommand::Restrict { action: Action::ReadOnly };
    let case = e.reg.case_command(admin(), id.clone(), cmd, "while the owner is asked".into()).await.unwrap();
    assert_eq!(e.reg.key(&ak).unwrap().effective_scopes(e.clock.now()).iter().collect::<Vec<_>>(), [Scope::Read]);
    assert_eq!(e.reg.notices(&id).unwrap().last().unwrap().kind, NoticeKind::Restricted);
    assert!(case.history.iter().any(|h| h.what == "restrict"));
    let edd = CaseCommand::DueDiligence { text: "source of funds and the bot's operator requested".into() };
    let case = e.reg.case_command(admin(), id, edd, "EDD".into()).await.unwrap();
    assert_eq!(case.history.last().unwrap().what, "due_diligence");
}

#[tokio::test]
async fn a_heavier_stage_waits_for_the_owners_answer_unless_it_is_compromise() {
    let e = env();
    account(&e.reg, "acct", Segment::Retail).await;
    let policy = Arc::new(ResponsePolicy::default());
    assert_eq!(policy.retail.answer_window_hours, 24);
    let mut keys = Vec::new();
    for _ in 0..3 {
        let issued = e.reg.create_key(admin(), new_key("acct", &[Scope::Read], &["198.51.100.0/24"])).await.unwrap();
        keys.push(issued.key.access_key);
    }
    let status = |k: &AccessKey| e.reg.key(k).unwrap().status;
    let mut moved = Vec::new();
    for k in &keys {
        e.reg.respond(suspicion(k, Stage::Warn, e.clock.now()), policy.clone()).await.unwrap().unwrap();
        *e.clock.0.lock().unwrap() += Duration::hours(2);
        // Re-verification on a pattern (not compromise) two hours after the warning: held.
        let case = e.reg.respond(suspicion(k, Stage::Reverify, e.clock.now()), policy.clone()).await.unwrap().unwrap();
        assert_eq!((case.stage, case.held.as_ref().map(|h| h.stage)), (Stage::Warn, Some(Stage::Reverify)));
        assert!(case.history.iter().any(|h| h.what == "held"), "{:?}", case.history);
        assert_eq!(status(k), KeyStatus::Active, "the owner may answer first");
        assert_eq!(e.reg.notices(&case.case_id).unwrap().len(), 1, "one warning, not two");
        moved.push(case.case_id);
    }
    // The second key's owner answers; the third key meets evidence of compromise.
    let answer = "it is me, travelling in Japan until the 12th";
    let case = e.reg.answer(admin(), moved[1].clone(), AnswerChannel::App, answer.into(), true).await.unwrap();
    assert_eq!(case.answers.len(), 1);
    let refused = e.reg.answer(admin(), moved[1].clone(), AnswerChannel::App, "  ".into(), false).await.unwrap_err();
    assert_eq!(refused.code(), "invalid_input");
    let mut s = suspicion(&keys[2], Stage::Invalidate, e.clock.now());
    s.compromise = true;
    let case = e.reg.respond(s, policy.clone()).await.unwrap().unwrap();
    assert_eq!((case.stage, case.held.is_none()), (Stage::Invalidate, true), "compromise is never held");
    assert_eq!(status(&keys[2]), KeyStatus::Revoked);

    // Nothing is released before the window ends (24 h after each warning: the first two at
    // +24 h and +26 h from the first).
    *e.clock.0.lock().unwrap() += Duration::hours(15);
    assert!(e.reg.release_held(policy.clone()).await.unwrap().is_empty());
    *e.clock.0.lock().unwrap() += Duration::hours(6);
    let released = e.reg.release_held(policy.clone()).await.unwrap();
    assert_eq!(released.len(), 2, "{released:?}");
    // Unanswered: the policy's suspension is taken.
    assert_eq!(status(&keys[0]), KeyStatus::Suspended);
    let first = e.reg.case(&moved[0]).unwrap();
    assert_eq!((first.stage, first.held.is_none()), (Stage::Reverify, true));
    // Answered: an analyst reads the answer before the key stops.
    assert_eq!(status(&keys[1]), KeyStatus::Active);
    let second = e.reg.case(&moved[1]).unwrap();
    assert_eq!((second.status, second.pending_action), (CaseStatus::AwaitingDecision, Some(Action::Suspend)));
    assert!(e.reg.release_held(policy).await.unwrap().is_empty(), "released once");
    let audit = e.reg.audit_entries(0, 1000).unwrap();
    assert!(audit.iter().any(|a| a.action == "case.answer" && a.target == moved[1]));
    assert!(audit.iter().any(|a| a.action == "key.suspend" && a.target == keys[0].as_str()));
}
