//! A reinstated key's way to its owner (domain `claim.rs`): the claim opened with the approval
//! that issues the key, the one-time code sent through the outbox, and the redemption through
//! the exchange's customer channel, where the secret is made and shown once. The code is kept
//! only as a keyed hash (the claim) and sealed for delivery (the notice); secrets and codes never
//! reach the audit log, only fingerprints.

use crate::cases::new_id;
use crate::keys::{load_key, secret_context, IssuedKey};
use crate::{Registry, RegistryError};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use keysentinel_audit::{Actor, AuditDraft};
use keysentinel_domain::{AccessKey, ApiKey, KeyClaim, Notice, NoticeKind, ValidationError};
use keysentinel_secrets::{ct_eq, generate_api_secret, Keyring};
use keysentinel_store::{StoredKey, WriteTx};
use rand::Rng;
use serde_json::json;
use zeroize::Zeroizing;

/// Digits in a one-time code: typed by the owner in the app, guessed at most
/// `CLAIM_MAX_ATTEMPTS` times in 10^8.
const CODE_DIGITS: usize = 8;

pub(crate) fn one_time_code() -> Zeroizing<String> {
    let mut rng = rand::rngs::OsRng;
    Zeroizing::new((0..CODE_DIGITS).map(|_| char::from(b'0' + rng.gen_range(0..10u8))).collect())
}

/// Keyed with the log's pseudonym key: a stolen database alone does not let anyone try the
/// 10^8 codes offline.
pub(crate) fn code_hash(tx: &dyn WriteTx, code: &str) -> String {
    tx.pseudonym("claim-code", code.as_bytes())
}

fn code_context(notice_id: &str) -> Vec<u8> {
    format!("claim-code:{notice_id}").into_bytes()
}

/// Sends the owner the code (a `key_claim` notice, the code sealed in it) and records the claim's
/// opening, in the approval's transaction.
pub(crate) fn open(
    tx: &mut dyn WriteTx,
    keyring: &Keyring,
    actor: Actor,
    key: &ApiKey,
    claim: &KeyClaim,
    code: &str,
) -> Result<(), RegistryError> {
    let now = tx.now();
    let notice_id = new_id("notice");
    let sealed = B64.encode(keyring.seal(code.as_bytes(), &code_context(&notice_id)));
    let notice =
        Notice::key_claim(notice_id, &claim.case_id, &key.account_id, &key.access_key, sealed, claim.expires_at, now);
    tx.put_notice(&notice)?;
    tx.append_audit(AuditDraft {
        actor,
        action: "key.claim.open".into(),
        target: key.access_key.to_string(),
        reason: format!("held for its owner's claim ({})", claim.case_id),
        policy_version: None,
        details: json!({ "case_id": claim.case_id, "account_id": key.account_id, "notice_id": notice.notice_id,
            "expires_at": claim.expires_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default() }),
    })?;
    Ok(())
}

/// What a redemption came to inside its transaction: a wrong code is recorded (the attempt
/// counts) and then refused, so it must commit rather than roll back.
enum Redeemed {
    Issued(Box<IssuedKey>),
    WrongCode { left: u32 },
}

impl Registry {
    /// The owner claims their reinstated key through the customer channel with the one-time
    /// code: the key becomes valid and its secret is made now, returned in this answer only.
    pub async fn redeem_claim(
        &self,
        actor: Actor,
        access_key: AccessKey,
        code: String,
    ) -> Result<IssuedKey, RegistryError> {
        let code = Zeroizing::new(code);
        if code.len() != CODE_DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ValidationError::new("code", format!("the one-time code is {CODE_DIGITS} digits")).into());
        }
        let keyring = self.keyring.clone();
        let by = actor.label();
        let done = self
            .transact(move |tx| {
                let now = tx.now();
                let StoredKey { mut key, .. } = load_key(tx, &access_key)?;
                let claim = key.claim.clone().ok_or(RegistryError::ClaimState(keysentinel_domain::ClaimError::None))?;
                claim.open(now).map_err(RegistryError::ClaimState)?;
                if !ct_eq(code_hash(tx, &code).as_bytes(), claim.code_hash.as_bytes()) {
                    let left = key.claim.as_mut().map_or(0, KeyClaim::failed);
                    tx.update_key(&key)?;
                    tx.append_audit(AuditDraft {
                        actor,
                        action: "key.claim.fail".into(),
                        target: access_key.to_string(),
                        reason: "a wrong one-time code".into(),
                        policy_version: None,
                        details: json!({ "case_id": claim.case_id, "attempts_left": left }),
                    })?;
                    return Ok(Redeemed::WrongCode { left });
                }
                key.redeem_claim(&by, now).map_err(RegistryError::ClaimState)?;
                let secret = generate_api_secret();
                let sealed = keyring.seal(secret.as_bytes(), &secret_context(&access_key));
                let fingerprint = tx.pseudonym("api-secret", secret.as_bytes());
                tx.update_key(&key)?;
                tx.update_sealed_secret(&access_key, &sealed)?;
                tx.append_audit(AuditDraft {
                    actor,
                    action: "key.claim.redeem".into(),
                    target: access_key.to_string(),
                    reason: format!("claimed by its owner ({})", claim.case_id),
                    policy_version: None,
                    details: json!({ "case_id": claim.case_id, "account_id": key.account_id, "to": key.status,
                        "secret_fingerprint": fingerprint }),
                })?;
                Ok(Redeemed::Issued(Box::new(IssuedKey { key, secret: Some(secret) })))
            })
            .await?;
        match done {
            Redeemed::Issued(issued) => {
                self.publish(std::slice::from_ref(&issued.key.access_key));
                Ok(*issued)
            }
            Redeemed::WrongCode { left: 0 } => Err(RegistryError::Forbidden(
                "the one-time code does not match; that was the last attempt: the claim is locked".into(),
            )),
            Redeemed::WrongCode { left: 1 } => Err(RegistryError::Forbidden(
                "the one-time code does not match; 1 attempt left before the claim locks".into(),
            )),
            Redeemed::WrongCode { left } => Err(RegistryError::Forbidden(format!(
                "the one-time code does not match; {left} attempts left before the claim locks"
            ))),
        }
    }

    /// The code a `key_claim` notice delivers, opened for the notifier only (never for an
    /// operator's view of the notice).
    pub fn notice_code(&self, notice: &Notice) -> Option<Zeroizing<String>> {
        if notice.kind != NoticeKind::KeyClaim {
            return None;
        }
        let sealed = B64.decode(notice.sealed_code.as_deref()?).ok()?;
        let code = self.keyring.open(&sealed, &code_context(&notice.notice_id)).ok()?;
        String::from_utf8(code.to_vec()).ok().map(Zeroizing::new)
    }
}
