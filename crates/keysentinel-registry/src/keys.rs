use crate::{check_reason, Registry, RegistryError};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::pkcs8::DecodePublicKey;
use ed25519_dalek::VerifyingKey;
use keysentinel_audit::{Actor, AuditDraft};
use keysentinel_domain::{
    AccessKey, Account, AccountId, ApiKey, Approval, Declared, IpAllowlist, KeyAlgorithm, KeyApproval, KeyOrigin,
    KeyStatus, OperatorId, PurposeName, Rule, Scope, ScopeSet, SigningScheme, TermsAcceptance, TermsChannel,
    ValidationError, VendorId,
};
use keysentinel_secrets::{generate_api_secret, Keyring};
use keysentinel_store::{KeyFilter, StoredKey, WriteTx};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

/// How the new key signs.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum NewKeyAlgorithm {
    /// keysentinel generates the secret and returns it once. (A struct variant, so that
    /// `deny_unknown_fields` refuses a `secret` sent along instead of silently dropping it.)
    Hmac {},
    /// The customer's Ed25519 public key: base64 of the 32 raw bytes, or a PEM public key.
    Ed25519 { public_key: String },
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub account_id: AccountId,
    pub algorithm: NewKeyAlgorithm,
    /// The exchange signing scheme the key's requests use.
    pub scheme: SigningScheme,
    /// read and trade are granted at once; withdraw and transfer become pending grants that a
    /// different operator (an approver) must approve.
    pub scopes: Vec<Scope>,
    #[serde(default)]
    pub ip_allowlist: IpAllowlist,
    /// Lifetime in days; defaults to the segment's maximum.
    pub lifetime_days: Option<i64>,
    pub vendor_id: Option<VendorId>,
    /// What the key is for: one of the key policy's purposes (`GET /v1/policy`), whose rules
    /// the key must meet.
    #[schema(value_type = String, example = "own_bot")]
    pub purpose: PurposeName,
    /// The owner's own words about it (free text, up to 500 characters).
    #[serde(default)]
    pub purpose_note: String,
    /// The version of the no-sharing terms the owner accepted.
    pub terms_version: String,
    /// When the owner accepted them (RFC 3339; not in the future).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub terms_accepted_at: OffsetDateTime,
    /// Where the owner accepted them.
    pub terms_channel: TermsChannel,
    /// How long sensitive grants last once approved; defaults to the segment's maximum.
    pub sensitive_grant_hours: Option<i64>,
    /// Who operates the key: a party of the account's record in effect (a person, desk or
    /// system; `POST /v1/accounts/{id}/parties`). A vendor key is operated by its vendor.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub operated_by: Option<keysentinel_domain::PartyId>,
}

/// A key as issued: the secret is present only in the response that created it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IssuedKey {
    pub key: ApiKey,
    /// The HMAC secret. Shown once; keysentinel cannot show it again.
    #[schema(value_type = Option<String>)]
    #[serde(serialize_with = "ser_secret")]
    pub secret: Option<Zeroizing<String>>,
}

fn ser_secret<S: serde::Serializer>(secret: &Option<Zeroizing<String>>, s: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(v) => s.serialize_some(v.as_str()),
        None => s.serialize_none(),
    }
}

pub(crate) fn secret_context(access_key: &AccessKey) -> Vec<u8> {
    format!("api-key-secret:{access_key}").into_bytes()
}

/// Accepts base64 (standard or URL-safe) of the raw 32 bytes, or a PEM SPKI public key.
pub(crate) fn parse_ed25519(text: &str) -> Result<String, ValidationError> {
    let text = text.trim();
    let key = if text.starts_with("-----BEGIN") {
        VerifyingKey::from_public_key_pem(text)
            .map_err(|_| ValidationError::new("public_key", "not a valid Ed25519 PEM public key"))?
    } else {
        let raw = B64
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
            .map_err(|_| ValidationError::new("public_key", "must be base64 of 32 bytes or a PEM public key"))?;
        let bytes: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| ValidationError::new("public_key", "an Ed25519 public key is 32 bytes"))?;
        VerifyingKey::from_bytes(&bytes)
            .map_err(|_| ValidationError::new("public_key", "not a valid Ed25519 public key"))?
    };
    if key.is_weak() {
        return Err(ValidationError::new("public_key", "weak (small-order) Ed25519 key refused"));
    }
    Ok(B64.encode(key.as_bytes()))
}

pub(crate) fn load_account(tx: &mut dyn WriteTx, id: &AccountId) -> Result<Account, RegistryError> {
    tx.account(id)?.ok_or_else(|| RegistryError::NotFound { what: "account", id: id.to_string() })
}

pub(crate) fn load_key(tx: &mut dyn WriteTx, access_key: &AccessKey) -> Result<StoredKey, RegistryError> {
    tx.key(access_key)?.ok_or_else(|| RegistryError::NotFound { what: "key", id: access_key.to_string() })
}

/// The key policy's vendor rules: a key names only a registered vendor whose approval holds.
pub(crate) fn check_vendor(
    tx: &mut dyn WriteTx,
    policy: &keysentinel_domain::KeyPolicy,
    key: &ApiKey,
    now: OffsetDateTime,
) -> Result<(), RegistryError> {
    let vendor = match &key.vendor_id {
        Some(id) => tx.vendor(id)?,
        None => None,
    };
    policy.check_vendor(key, vendor.as_ref(), now)?;
    Ok(())
}

/// Audit details describing a key's grants; nothing secret.
pub(crate) fn key_details(key: &ApiKey) -> serde_json::Value {
    json!({
        "account_id": key.account_id,
        "scheme": key.scheme,
        "algorithm": match &key.algorithm { KeyAlgorithm::Hmac => "hmac", KeyAlgorithm::Ed25519 { .. } => "ed25519" },
        "public_key": match &key.algorithm { KeyAlgorithm::Ed25519 { public_key } => Some(public_key), KeyAlgorithm::Hmac => None },
        "scopes": key.scopes,
        "pending_grants": key.grants.iter().map(|g| g.scope).collect::<Vec<_>>(),
        "ip_allowlist": key.ip_allowlist,
        "vendor_id": key.vendor_id,
        "purpose": key.declared.purpose,
        "purpose_note": key.declared.note,
        "terms_version": key.terms_version,
        "terms_acceptance": key.terms_acceptance,
        "status": key.status,
        "approval": key.approval,
        "operated_by": key.operated_by,
        "expires_at": key.expires_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "unrestricted_lapse_at": key.unrestricted_lapse_at.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
        "origin": key.origin,
    })
}

pub(crate) struct Material {
    algorithm: KeyAlgorithm,
    secret: Option<Zeroizing<String>>,
}

impl Material {
    /// An HMAC key whose secret is generated later, when its owner claims it (`claims.rs`).
    pub(crate) fn deferred_hmac(scheme: SigningScheme) -> Result<Self, RegistryError> {
        scheme.check(&KeyAlgorithm::Hmac)?;
        Ok(Material { algorithm: KeyAlgorithm::Hmac, secret: None })
    }
}

fn material(algorithm: &NewKeyAlgorithm) -> Result<Material, RegistryError> {
    Ok(match algorithm {
        NewKeyAlgorithm::Hmac {} => Material { algorithm: KeyAlgorithm::Hmac, secret: Some(generate_api_secret()) },
        NewKeyAlgorithm::Ed25519 { public_key } => {
            Material { algorithm: KeyAlgorithm::Ed25519 { public_key: parse_ed25519(public_key)? }, secret: None }
        }
    })
}

/// Seals a secret for storage, and a keyed fingerprint of it for the audit log (so a dispute can
/// establish which secret was issued without the log ever holding it).
fn seal(
    tx: &dyn WriteTx,
    keyring: &Keyring,
    key: &AccessKey,
    secret: &Option<Zeroizing<String>>,
) -> (Option<Vec<u8>>, Option<String>) {
    match secret {
        Some(s) => {
            (Some(keyring.seal(s.as_bytes(), &secret_context(key))), Some(tx.pseudonym("api-secret", s.as_bytes())))
        }
        None => (None, None),
    }
}

/// Checks a new key's request before its transaction: scopes, and the key material.
pub(crate) fn prepare(new: &NewKey) -> Result<(ScopeSet, Material), RegistryError> {
    let scopes = check_request(new)?;
    let mat = material(&new.algorithm)?;
    new.scheme.check(&mat.algorithm)?;
    Ok((scopes, mat))
}

/// The request's own checks, without making key material: the note, the scopes.
pub(crate) fn check_request(new: &NewKey) -> Result<ScopeSet, RegistryError> {
    keysentinel_domain::account::check_text("purpose_note", &new.purpose_note, 500)?;
    let scopes: ScopeSet = new.scopes.iter().copied().collect();
    if scopes.is_empty() {
        return Err(ValidationError::new("scopes", "at least one scope is required").into());
    }
    if scopes.len() != new.scopes.len() {
        return Err(ValidationError::new("scopes", "a scope is listed twice").into());
    }
    Ok(scopes)
}

/// Issues a key within a transaction: the key policy is checked, the secret sealed, the
/// creation audited with `reason`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn issue(
    tx: &mut dyn WriteTx,
    policy: &keysentinel_domain::KeyPolicy,
    keyring: &Keyring,
    actor: Actor,
    new: NewKey,
    terms: Option<TermsAcceptance>,
    scopes: ScopeSet,
    mat: Material,
    claim: Option<keysentinel_domain::KeyClaim>,
    reason: String,
) -> Result<IssuedKey, RegistryError> {
    let now = tx.now();
    let account = load_account(tx, &new.account_id)?;
    let seg = policy.for_segment(account.segment);
    let lifetime = new.lifetime_days.unwrap_or(seg.max_lifetime_days);
    if lifetime < 1 {
        return Err(ValidationError::new("lifetime_days", "must be at least 1").into());
    }
    let access_key = AccessKey::generate(&mut rand::rngs::OsRng);
    let actor_name = actor.label();
    let mut key = ApiKey {
        access_key: access_key.clone(),
        account_id: account.account_id.clone(),
        algorithm: mat.algorithm,
        scheme: new.scheme,
        scopes: scopes.iter().filter(|s| !s.is_sensitive()).collect(),
        grants: vec![],
        ip_allowlist: new.ip_allowlist,
        vendor_id: new.vendor_id,
        declared: Declared { purpose: new.purpose, note: new.purpose_note },
        terms_version: new.terms_version,
        terms_acceptance: terms,
        approval: None,
        unrestricted_lapse_at: None,
        lapse_notice_id: None,
        claim: None,
        operated_by: None,
        origin: KeyOrigin::Generated,
        created_at: now,
        expires_at: now + Duration::days(lifetime.min(3650)),
        status: KeyStatus::Active,
        status_reason: "issued".into(),
        status_changed_by: actor_name.clone(),
        status_changed_at: now,
        rotated_from: None,
        rotated_to: None,
    };
    let ttl = grant_ttl("sensitive_grant_hours", new.sensitive_grant_hours.unwrap_or(seg.sensitive_grant_max_hours))?;
    if scopes.has_sensitive() {
        let requester = operator_id(&actor)?;
        for scope in scopes.iter().filter(|s| s.is_sensitive()) {
            key.request_grant(scope, ttl, &requester, now)?;
        }
    }
    let live = tx.live_key_count(&account.account_id, now)?;
    policy.check_new_key(&account, &key, live, now)?;
    check_vendor(tx, policy, &key, now)?;
    key.operated_by = operator_of(tx, policy, &account, &key, new.operated_by.as_ref(), now)?;
    policy.check_operator(&account, &key)?;
    let approval = check_purpose(tx, policy, &account, &key, now)?;
    if claim.is_some() {
        // Held for its owner: valid once they claim it. The reinstatement's two approvers stand
        // for any approval its purpose needs.
        key.status = KeyStatus::Pending;
        key.status_reason = "awaiting its owner's claim".into();
        key.claim = claim;
    } else if let Some(approval) = approval {
        // Not valid until approved: the secret is issued now, the key is refused until then.
        key.status = KeyStatus::Pending;
        key.status_reason = format!("awaiting {} approval for purpose {}", approval.as_str(), key.declared.purpose);
        key.approval =
            Some(KeyApproval { needed: approval, requested_by: actor_name, approved_by: None, approved_at: None });
    }
    set_unrestricted_lapse(policy, &account, &mut key, now);
    let (sealed_secret, fingerprint) = seal(tx, keyring, &access_key, &mat.secret);
    tx.insert_key(&StoredKey { key: key.clone(), sealed_secret })?;
    let mut details = key_details(&key);
    details["secret_fingerprint"] = json!(fingerprint);
    tx.append_audit(AuditDraft {
        actor,
        action: "key.create".into(),
        target: access_key.to_string(),
        reason,
        policy_version: Some(policy.version.clone()),
        details,
    })?;
    Ok(IssuedKey { key, secret: mat.secret })
}

/// Who operates a new key: the party it names, which must be on its account's record, in effect
/// and one that operates keys (rule `operator_not_on_record`); or its vendor.
pub(crate) fn operator_of(
    tx: &mut dyn WriteTx,
    policy: &keysentinel_domain::KeyPolicy,
    account: &Account,
    key: &ApiKey,
    party: Option<&keysentinel_domain::PartyId>,
    now: OffsetDateTime,
) -> Result<Option<keysentinel_domain::OperatedBy>, RegistryError> {
    use keysentinel_domain::{OperatedBy, OperatorKind};
    match (party, &key.vendor_id) {
        (Some(_), Some(v)) => Err(ValidationError::new(
            "operated_by",
            format!("the key names vendor {v}, which operates it; name no party"),
        )
        .into()),
        (None, Some(v)) => Ok(Some(OperatedBy { kind: OperatorKind::Vendor, party_id: None, name: v.to_string() })),
        (None, None) => Ok(None),
        (Some(id), None) => {
            let p = tx
                .party(id)?
                .filter(|p| p.account_id == account.account_id && p.in_effect(now) && p.kind.operates_keys());
            match p {
                Some(p) => Ok(Some(OperatedBy::party(&p))),
                None => Err(policy
                    .violation(
                        Rule::OperatorNotOnRecord,
                        format!(
                            "{id} is not a person, desk or system on account {}'s record in effect now",
                            account.account_id
                        ),
                    )
                    .into()),
            }
        }
    }
}

/// The key policy's purpose rules, with the account's counterparties as they stand in this
/// transaction. A legacy purpose (a key from before purposes, reinstated or rotated) has no
/// rules to meet; `create_key` never issues one. Returns the approval the purpose needs.
pub(crate) fn check_purpose(
    tx: &mut dyn WriteTx,
    policy: &keysentinel_domain::KeyPolicy,
    account: &Account,
    key: &ApiKey,
    now: OffsetDateTime,
) -> Result<Option<Approval>, RegistryError> {
    if key.declared.purpose.is_legacy() {
        return Ok(None);
    }
    let counterparties = tx.account_counterparties(&account.account_id)?;
    let rule = policy.check_purpose(account, key, &counterparties, now)?;
    Ok(match rule.approval {
        Approval::None => None,
        needed => Some(needed),
    })
}

/// A key without an IP allowlist lapses when the segment's policy says (its expiry brought
/// forward, never pushed back).
pub(crate) fn set_unrestricted_lapse(
    policy: &keysentinel_domain::KeyPolicy,
    account: &Account,
    key: &mut ApiKey,
    now: OffsetDateTime,
) {
    key.unrestricted_lapse_at = policy.unrestricted_lapse(account.segment, key, now).filter(|t| *t < key.expires_at);
    if let Some(t) = key.unrestricted_lapse_at {
        key.expires_at = t;
    }
}

impl Registry {
    pub async fn create_key(&self, actor: Actor, new: NewKey) -> Result<IssuedKey, RegistryError> {
        let (scopes, mat) = prepare(&new)?;
        if new.purpose.is_legacy() {
            return Err(self
                .policy
                .violation(
                    Rule::PurposeNotDefined,
                    "legacy names keys issued before purposes; name a purpose of the key policy",
                )
                .into());
        }
        keysentinel_domain::account::check_text("terms_version", &new.terms_version, 40)?;
        if new.terms_accepted_at > self.now() {
            return Err(ValidationError::new(
                "terms_accepted_at",
                "the owner cannot have accepted the terms in the future",
            )
            .into());
        }
        let terms = TermsAcceptance {
            version: new.terms_version.clone(),
            accepted_at: new.terms_accepted_at,
            channel: new.terms_channel,
        };
        let policy = self.policy.clone();
        let keyring = self.keyring.clone();
        self.transact(move |tx| {
            issue(tx, &policy, &keyring, actor, new, Some(terms), scopes, mat, None, "key issued".into())
        })
        .await
        .inspect(|issued| self.publish(std::slice::from_ref(&issued.key.access_key)))
    }

    /// Approves a key its purpose issued pending. The approver (the server lets only compliance
    /// call this) is neither the requester nor in a chain of creation with them.
    pub async fn approve_key(
        &self,
        actor: Actor,
        access_key: AccessKey,
        reason: String,
    ) -> Result<ApiKey, RegistryError> {
        check_reason(&reason)?;
        let policy = self.policy.clone();
        self.transact(move |tx| {
            let now = tx.now();
            let StoredKey { mut key, .. } = load_key(tx, &access_key)?;
            let approver = operator_id(&actor)?;
            // Only a key its purpose holds for an approval: a key awaiting its owner's claim is
            // the owner's to release, nobody's to approve.
            let Some(requested_by) = key.approval.as_ref().map(|a| a.requested_by.clone()) else {
                return Err(keysentinel_domain::TransitionError::WrongStatus {
                    action: "an approval",
                    actual: key.effective_status(now),
                    needed: "pending an approval its purpose needs",
                }
                .into());
            };
            if requested_by == approver.as_str() {
                return Err(RegistryError::Forbidden(format!(
                    "{approver} asked for this key and may not approve it; another compliance operator must"
                )));
            }
            // Four eyes means two people: not one the requester created, nor one who created them.
            if crate::operators::related(tx, approver.as_str(), &requested_by)? {
                return Err(RegistryError::Forbidden(format!(
                    "{approver} may not approve a key {requested_by} asked for: one of them created the other; another compliance operator must"
                )));
            }
            key.approve(approver.as_str(), now)?;
            tx.update_key(&key)?;
            tx.append_audit(AuditDraft {
                actor,
                action: "key.approve".into(),
                target: access_key.to_string(),
                reason,
                policy_version: Some(policy.version.clone()),
                details: json!({ "account_id": key.account_id, "purpose": key.declared.purpose,
                    "requested_by": requested_by, "to": key.status }),
            })?;
            Ok(key)
        })
        .await
        .inspect(|key| self.publish(std::slice::from_ref(&key.access_key)))
    }

    /// Issues a successor with the same grants, and retires `access_key` after `overlap`.
    /// Ed25519 keys need the customer's new public key.
    pub async fn rotate_key(
        &self,
        actor: Actor,
        access_key: AccessKey,
        overlap: Duration,
        new_public_key: Option<String>,
        reason: String,
    ) -> Result<IssuedKey, RegistryError> {
        check_reason(&reason)?;
        if overlap < Duration::ZERO || overlap > Duration::days(30) {
            return Err(ValidationError::new("overlap_seconds", "must be between 0 and 30 days").into());
        }
        let policy = self.policy.clone();
        let keyring = self.keyring.clone();
        self.transact(move |tx| {
            let now = tx.now();
            let StoredKey { key: mut old, .. } = load_key(tx, &access_key)?;
            let account = load_account(tx, &old.account_id)?;
            let algorithm = match (&old.algorithm, new_public_key) {
                (KeyAlgorithm::Hmac, None) => NewKeyAlgorithm::Hmac {},
                (KeyAlgorithm::Hmac, Some(_)) => {
                    return Err(ValidationError::new("public_key", "an HMAC key rotates to a new generated secret; omit public_key").into())
                }
                (KeyAlgorithm::Ed25519 { .. }, Some(pk)) => NewKeyAlgorithm::Ed25519 { public_key: pk },
                (KeyAlgorithm::Ed25519 { .. }, None) => {
                    return Err(ValidationError::new("public_key", "rotating an Ed25519 key needs the customer's new public key").into())
                }
            };
            let mat = material(&algorithm)?;
            let successor = AccessKey::generate(&mut rand::rngs::OsRng);
            let actor_name = actor.label();
            let lifetime = policy.for_segment(account.segment).max_lifetime_days;
            let new = ApiKey {
                access_key: successor.clone(),
                algorithm: mat.algorithm,
                // Grants carry over as they are: an approved withdraw grant keeps its own expiry,
                // it is not renewed by rotation.
                grants: old.grants.iter().filter(|g| g.is_active(now) || g.status == keysentinel_domain::GrantStatus::Pending).cloned().collect(),
                origin: KeyOrigin::Generated,
                created_at: now,
                expires_at: now + Duration::days(lifetime),
                status: KeyStatus::Active,
                status_reason: format!("rotated from {access_key}"),
                status_changed_by: actor_name.clone(),
                status_changed_at: now,
                rotated_from: Some(access_key.clone()),
                rotated_to: None,
                ..old.clone()
            };
            let mut new = new;
            new.lapse_notice_id = None;
            new.claim = None;
            set_unrestricted_lapse(&policy, &account, &mut new, now);
            old.retire_after(overlap, &successor, &actor_name, now)?;
            // The key being retired does not count against the limit for its own successor.
            let live = tx.live_key_count(&account.account_id, now)?.saturating_sub(1);
            policy.check_new_key(&account, &new, live, now)?;
            // The purpose's records must still stand (a mandate may have ended); an approval
            // the predecessor holds carries over, it being the same key's use renewed.
            check_purpose(tx, &policy, &account, &new, now)?;
            // A successor names the vendor afresh: a lapsed or suspended vendor's key is not
            // renewed by rotation.
            check_vendor(tx, &policy, &new, now)?;
            let (sealed_secret, fingerprint) = seal(tx, &keyring, &successor, &mat.secret);
            tx.update_key(&old)?;
            tx.insert_key(&StoredKey { key: new.clone(), sealed_secret })?;
            let mut details = key_details(&new);
            details["secret_fingerprint"] = json!(fingerprint);
            details["rotated_from"] = json!(access_key);
            tx.append_audit(AuditDraft {
                actor: actor.clone(),
                action: "key.create".into(),
                target: successor.to_string(),
                reason: reason.clone(),
                policy_version: Some(policy.version.clone()),
                details,
            })?;
            tx.append_audit(AuditDraft {
                actor,
                action: "key.rotate".into(),
                target: access_key.to_string(),
                reason,
                policy_version: Some(policy.version.clone()),
                details: json!({ "successor": successor, "overlap_seconds": overlap.whole_seconds(),
                    "expires_at": old.expires_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default() }),
            })?;
            Ok(IssuedKey { key: new, secret: mat.secret })
        })
        .await
        .inspect(|issued| {
            let old = issued.key.rotated_from.clone().into_iter();
            self.publish(&old.chain([issued.key.access_key.clone()]).collect::<Vec<_>>())
        })
    }

    pub async fn suspend_key(
        &self,
        actor: Actor,
        access_key: AccessKey,
        reason: String,
    ) -> Result<ApiKey, RegistryError> {
        self.change_status(actor, access_key, reason, "key.suspend", |k, r, a, now| k.suspend(r, a, now)).await
    }

    pub async fn resume_key(
        &self,
        actor: Actor,
        access_key: AccessKey,
        reason: String,
    ) -> Result<ApiKey, RegistryError> {
        self.change_status(actor, access_key, reason, "key.resume", |k, r, a, now| k.resume(r, a, now)).await
    }

    pub async fn revoke_key(
        &self,
        actor: Actor,
        access_key: AccessKey,
        reason: String,
    ) -> Result<ApiKey, RegistryError> {
        self.change_status(actor, access_key, reason, "key.revoke", |k, r, a, now| k.revoke(r, a, now)).await
    }

    async fn change_status<F>(
        &self,
        actor: Actor,
        access_key: AccessKey,
        reason: String,
        action: &'static str,
        apply: F,
    ) -> Result<ApiKey, RegistryError>
    where
        F: FnOnce(&mut ApiKey, &str, &str, OffsetDateTime) -> Result<(), keysentinel_domain::TransitionError>
            + Send
            + 'static,
    {
        check_reason(&reason)?;
        self.transact(move |tx| {
            let now = tx.now();
            let StoredKey { mut key, .. } = load_key(tx, &access_key)?;
            let from = key.effective_status(now);
            apply(&mut key, &reason, &actor.label(), now)?;
            tx.update_key(&key)?;
            tx.append_audit(AuditDraft {
                actor,
                action: action.into(),
                target: access_key.to_string(),
                reason,
                policy_version: None,
                details: json!({ "from": from, "to": key.status, "account_id": key.account_id }),
            })?;
            Ok(key)
        })
        .await
        .inspect(|key| self.publish(std::slice::from_ref(&key.access_key)))
    }

    /// Asks for a time-limited withdraw or transfer grant; it stays pending until approved.
    pub async fn request_grant(
        &self,
        actor: Actor,
        access_key: AccessKey,
        scope: Scope,
        hours: Option<i64>,
        reason: String,
    ) -> Result<ApiKey, RegistryError> {
        check_reason(&reason)?;
        let policy = self.policy.clone();
        self.transact(move |tx| {
            let now = tx.now();
            let StoredKey { mut key, .. } = load_key(tx, &access_key)?;
            let account = load_account(tx, &key.account_id)?;
            policy.check_scope_for_key(&key, scope)?;
            let hours = hours.unwrap_or(policy.for_segment(account.segment).sensitive_grant_max_hours);
            let requester = operator_id(&actor)?;
            key.request_grant(scope, grant_ttl("hours", hours)?, &requester, now)?;
            // A grant is a scope the key comes to hold: its purpose must allow it.
            if !key.declared.purpose.is_legacy() {
                let counterparties = tx.account_counterparties(&account.account_id)?;
                policy.check_purpose(&account, &key, &counterparties, now)?;
            }
            if let Some(grant) = key.pending_grant(scope) {
                policy.check_grant_ttl(account.segment, grant)?;
            }
            tx.update_key(&key)?;
            tx.append_audit(AuditDraft {
                actor,
                action: "key.grant.request".into(),
                target: access_key.to_string(),
                reason,
                policy_version: Some(policy.version.clone()),
                details: json!({ "scope": scope, "hours": hours, "account_id": key.account_id }),
            })?;
            Ok(key)
        })
        .await
        .inspect(|key| self.publish(std::slice::from_ref(&key.access_key)))
    }

    /// Approves a pending grant. The approver must not be its requester.
    pub async fn approve_grant(
        &self,
        actor: Actor,
        access_key: AccessKey,
        scope: Scope,
        reason: String,
    ) -> Result<ApiKey, RegistryError> {
        check_reason(&reason)?;
        let policy = self.policy.clone();
        self.transact(move |tx| {
            let now = tx.now();
            let StoredKey { mut key, .. } = load_key(tx, &access_key)?;
            let approver = operator_id(&actor)?;
            let grant = key.pending_grant(scope).ok_or(keysentinel_domain::TransitionError::NoPendingGrant { scope })?;
            policy.check_grant_approval(grant, approver.as_str())?;
            let requested_by = grant.requested_by.clone();
            // Four eyes means two people: not an approver the requester created, nor one who
            // created the requester (for ever, not within a window: a window only delays it).
            if crate::operators::related(tx, approver.as_str(), &requested_by)? {
                return Err(RegistryError::Forbidden(format!(
                    "{approver} may not approve a grant {requested_by} requested: one of them created the other; another approver must"
                )));
            }
            let expires = key.approve_grant(scope, &approver, now)?.expires_at;
            tx.update_key(&key)?;
            tx.append_audit(AuditDraft {
                actor,
                action: "key.grant.approve".into(),
                target: access_key.to_string(),
                reason,
                policy_version: Some(policy.version.clone()),
                details: json!({ "scope": scope, "requested_by": requested_by,
                    "expires_at": expires.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()) }),
            })?;
            Ok(key)
        })
        .await
        .inspect(|key| self.publish(std::slice::from_ref(&key.access_key)))
    }

    /// Records the expiry of keys past their time (they are already refused: effective status).
    /// A key whose expiry the key policy brought forward for want of an IP allowlist is
    /// recorded as lapsed (`key.lapse`).
    pub async fn expire_due(&self) -> Result<usize, RegistryError> {
        let policy_version = self.policy.version.clone();
        self.transact(move |tx| {
            let now = tx.now();
            let due = tx.keys_past_expiry(now, 500)?;
            let mut expired = Vec::new();
            for mut key in due.iter().cloned() {
                if key.record_expiry(now) {
                    let lapsed = key.unrestricted_lapse_at == Some(key.expires_at);
                    let (component, action, reason, policy_version) = if lapsed {
                        key.status_reason = "lapsed: no IP allowlist (key policy's unrestricted_lapse_days)".into();
                        ("registry-sweep", "key.lapse", key.status_reason.clone(), Some(policy_version.clone()))
                    } else {
                        ("expiry", "key.expire", "reached its expiry time".to_owned(), None)
                    };
                    key.status_changed_by = format!("system:{component}");
                    tx.update_key(&key)?;
                    tx.append_audit(AuditDraft {
                        actor: Actor::System { component: component.into() },
                        action: action.into(),
                        target: key.access_key.to_string(),
                        reason,
                        policy_version,
                        details: json!({ "account_id": key.account_id, "expires_at":
                            key.expires_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                            "lapse_notice_id": key.lapse_notice_id }),
                    })?;
                    expired.push(key.access_key);
                }
            }
            Ok(expired)
        })
        .await
        .map(|expired| {
            self.publish(&expired);
            expired.len()
        })
    }

    /// The registry sweep's part for keys without an IP allowlist: tells each owner whose key
    /// lapses within the segment's `unrestricted_notice_days` (once, through the outbox, the
    /// notice recorded on the key), then records the lapses that are due (`expire_due`), the
    /// gateway's snapshot told before this returns. Returns (notices, lapses recorded).
    pub async fn sweep_unrestricted(&self) -> Result<(usize, usize), RegistryError> {
        let policy = self.policy.clone();
        let horizon = [&policy.retail, &policy.corporate, &policy.broker, &policy.market_maker]
            .iter()
            .map(|s| s.unrestricted_notice_days)
            .max()
            .unwrap_or(0);
        let noticed = self
            .transact(move |tx| {
                let now = tx.now();
                let soon = tx.keys_past_expiry(now + Duration::days(i64::from(horizon)), 1000)?;
                let mut noticed = 0usize;
                for mut key in soon {
                    let Some(lapses_at) = key.unrestricted_lapse_at else { continue };
                    if key.lapse_notice_id.is_some() || !key.is_live(now) || key.expires_at != lapses_at {
                        continue;
                    }
                    let account = load_account(tx, &key.account_id)?;
                    let days = policy.for_segment(account.segment).unrestricted_notice_days;
                    if now < lapses_at - Duration::days(i64::from(days)) {
                        continue;
                    }
                    let notice = keysentinel_domain::Notice::unrestricted_lapse(
                        crate::cases::new_id("notice"),
                        &key.account_id,
                        &key.access_key,
                        lapses_at,
                        now,
                    );
                    tx.put_notice(&notice)?;
                    key.lapse_notice_id = Some(notice.notice_id.clone());
                    tx.update_key(&key)?;
                    tx.append_audit(AuditDraft {
                        actor: Actor::System { component: "registry-sweep".into() },
                        action: "key.lapse_notice".into(),
                        target: key.access_key.to_string(),
                        reason: "the key has no IP allowlist and lapses soon".into(),
                        policy_version: Some(policy.version.clone()),
                        details: json!({ "account_id": key.account_id, "notice_id": notice.notice_id,
                            "lapses_at": lapses_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default() }),
                    })?;
                    noticed += 1;
                }
                Ok(noticed)
            })
            .await?;
        let lapsed = self.expire_due().await?;
        Ok((noticed, lapsed))
    }

    pub fn key(&self, access_key: &AccessKey) -> Result<ApiKey, RegistryError> {
        self.store
            .key(access_key)?
            .map(|s| s.key)
            .ok_or_else(|| RegistryError::NotFound { what: "key", id: access_key.to_string() })
    }

    pub fn keys(&self, mut filter: KeyFilter) -> Result<Vec<ApiKey>, RegistryError> {
        filter.limit = filter.limit.clamp(1, 1000);
        Ok(self.store.keys(&filter, self.now())?)
    }
}

fn operator_id(actor: &Actor) -> Result<OperatorId, RegistryError> {
    match actor {
        Actor::Operator { id, .. } => Ok(OperatorId::parse(id)?),
        other => Err(RegistryError::Forbidden(format!(
            "{} cannot request or approve grants; an operator must",
            other.label()
        ))),
    }
}

/// The longest grant any key policy may allow (`policy.rs` bounds `sensitive_grant_max_hours`
/// to it). Checked before any arithmetic: `Duration::hours` and adding a duration to a time
/// panic on overflow, and a panic on the writer thread would stop every write after it.
pub const MAX_GRANT_HOURS: i64 = 24 * 90;

/// A grant's lifetime from hours given by a caller, refused with the field's name when out of
/// bounds (the policy's own, narrower limit is checked after, as a policy rule).
pub(crate) fn grant_ttl(field: &'static str, hours: i64) -> Result<Duration, ValidationError> {
    if !(1..=MAX_GRANT_HOURS).contains(&hours) {
        return Err(ValidationError::new(field, format!("must be between 1 and {MAX_GRANT_HOURS} hours")));
    }
    Ok(Duration::hours(hours))
}
