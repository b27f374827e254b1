//! `keys import`: adopting an exchange's existing keys in bulk from NDJSON.
//!
//! Each line is validated on its own and reported by line number; valid lines are imported in
//! batches, each batch one transaction. Re-running the same file is safe: a key that already
//! exists with the same owner and the same secret or public key is reported as unchanged; one
//! that exists with different material is an error, never an overwrite.

use crate::keys::{key_details, parse_ed25519, secret_context};
use crate::{Registry, RegistryError};
use keysentinel_audit::{Actor, AuditDraft};
use keysentinel_domain::{
    AccessKey, AccountId, ApiKey, IpAllowlist, KeyAlgorithm, KeyOrigin, KeyStatus, OperatorId, Scope, ScopeSet,
    SigningScheme, ValidationError, VendorId,
};
use keysentinel_secrets::ct_eq;
use keysentinel_store::{StoredKey, WriteTx};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

/// One line of the import file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportLine {
    access_key: String,
    secret: Option<Zeroizing<String>>,
    public_key: Option<String>,
    account_id: String,
    scheme: String,
    scopes: Vec<String>,
    #[serde(default)]
    ip_allowlist: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    vendor_id: Option<String>,
    #[serde(default)]
    purpose: String,
    terms_version: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ImportIssue {
    pub line: usize,
    pub access_key: Option<String>,
    /// Stable code: `invalid_line`, `unknown_account`, `conflict`, `policy_violation`, `pending_grant`.
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ImportReport {
    pub lines: usize,
    pub imported: usize,
    pub unchanged: usize,
    pub errors: Vec<ImportIssue>,
    pub warnings: Vec<ImportIssue>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct ImportOptions {
    /// Refuse keys that break the current key policy instead of importing them with a warning.
    #[serde(default)]
    pub enforce_policy: bool,
    /// Lines per transaction.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
}

fn default_batch() -> usize {
    500
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self { enforce_policy: false, batch_size: default_batch() }
    }
}

const MAX_LINE: usize = 64 * 1024;

struct Candidate {
    line: usize,
    key: ApiKey,
    secret: Option<Zeroizing<String>>,
    requested_sensitive: ScopeSet,
}

fn parse_line(line_no: usize, text: &str, terms_default: &str, now: OffsetDateTime) -> Result<Candidate, ImportIssue> {
    let issue = |access_key: Option<String>, message: String| ImportIssue {
        line: line_no,
        access_key,
        code: "invalid_line".into(),
        message,
    };
    if text.len() > MAX_LINE {
        return Err(issue(None, format!("line is longer than {MAX_LINE} bytes")));
    }
    let raw: ImportLine =
        serde_json::from_str(text).map_err(|e| issue(None, format!("not a valid import record: {e}")))?;
    let ak = Some(raw.access_key.clone());
    let v = |e: ValidationError| issue(ak.clone(), e.to_string());
    let access_key = AccessKey::parse(&raw.access_key).map_err(v)?;
    let account_id = AccountId::parse(&raw.account_id).map_err(v)?;
    let scopes = ScopeSet::from_names(raw.scopes.iter().map(String::as_str)).map_err(v)?;
    if scopes.is_empty() {
        return Err(v(ValidationError::new("scopes", "at least one scope is required")));
    }
    let ip_allowlist = IpAllowlist::parse(&raw.ip_allowlist).map_err(v)?;
    let vendor_id = raw.vendor_id.as_deref().map(VendorId::parse).transpose().map_err(v)?;
    keysentinel_domain::account::check_text("purpose", &raw.purpose, 500).map_err(v)?;
    if raw.expires_at <= raw.created_at {
        return Err(v(ValidationError::new("expires_at", "must be after created_at")));
    }
    if raw.created_at > now + Duration::minutes(5) {
        return Err(v(ValidationError::new("created_at", "is in the future")));
    }
    let (algorithm, secret) = match (raw.secret, raw.public_key) {
        (Some(secret), None) => {
            if secret.len() < 16 || secret.len() > 256 || !secret.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(v(ValidationError::new("secret", "must be 16 to 256 printable ASCII characters")));
            }
            (KeyAlgorithm::Hmac, Some(secret))
        }
        (None, Some(pk)) => (KeyAlgorithm::Ed25519 { public_key: parse_ed25519(&pk).map_err(v)? }, None),
        _ => {
            return Err(v(ValidationError::new("secret", "give exactly one of secret (HMAC) or public_key (Ed25519)")))
        }
    };
    let scheme: SigningScheme = raw.scheme.parse().map_err(v)?;
    scheme.check(&algorithm).map_err(v)?;
    let status = match raw.status.as_deref() {
        None | Some("active") => KeyStatus::Active,
        Some("suspended") => KeyStatus::Suspended,
        Some(other) => {
            return Err(v(ValidationError::new(
                "status",
                format!("{other:?}: only active or suspended keys are imported"),
            )))
        }
    };
    let key = ApiKey {
        access_key,
        account_id,
        algorithm,
        scheme,
        scopes: scopes.iter().filter(|s| !s.is_sensitive()).collect(),
        grants: vec![],
        ip_allowlist,
        vendor_id,
        // An imported key's free text is kept as its note; its purpose is `legacy` until the
        // registry import of item 7 carries purposes (docs/import.md).
        declared: keysentinel_domain::Declared {
            purpose: keysentinel_domain::PurposeName::legacy(),
            note: raw.purpose,
        },
        terms_version: raw.terms_version.unwrap_or_else(|| terms_default.to_owned()),
        terms_acceptance: None,
        approval: None,
        unrestricted_lapse_at: None,
        lapse_notice_id: None,
        claim: None,
        operated_by: None,
        origin: KeyOrigin::Imported,
        created_at: raw.created_at,
        expires_at: raw.expires_at,
        status,
        status_reason: "imported".into(),
        status_changed_by: String::new(),
        status_changed_at: now,
        rotated_from: None,
        rotated_to: None,
    };
    Ok(Candidate {
        line: line_no,
        key,
        secret,
        requested_sensitive: scopes.iter().filter(|s| s.is_sensitive()).collect(),
    })
}

impl Registry {
    pub async fn import_keys(
        &self,
        actor: Actor,
        ndjson: String,
        options: ImportOptions,
    ) -> Result<ImportReport, RegistryError> {
        let now = self.now();
        let mut report = ImportReport::default();
        let mut candidates = Vec::new();
        for (i, line) in ndjson.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            report.lines += 1;
            match parse_line(i + 1, line, "unknown", now) {
                Ok(c) => candidates.push(c),
                Err(issue) => report.errors.push(issue),
            }
        }
        let batch_size = options.batch_size.clamp(1, 5000);
        let mut batches: Vec<Vec<Candidate>> = Vec::new();
        for c in candidates {
            match batches.last_mut() {
                Some(b) if b.len() < batch_size => b.push(c),
                _ => batches.push(vec![c]),
            }
        }
        for batch in batches {
            let policy = self.policy.clone();
            let keyring = self.keyring.clone();
            let actor = actor.clone();
            let enforce = options.enforce_policy;
            let (part, imported) =
                self.transact(move |tx| import_batch(tx, &policy, &keyring, actor, batch, enforce)).await?;
            self.publish(&imported);
            report.imported += part.imported;
            report.unchanged += part.unchanged;
            report.errors.extend(part.errors);
            report.warnings.extend(part.warnings);
        }
        report.errors.sort_by_key(|i| i.line);
        report.warnings.sort_by_key(|i| i.line);
        Ok(report)
    }
}

fn import_batch(
    tx: &mut dyn WriteTx,
    policy: &keysentinel_domain::KeyPolicy,
    keyring: &keysentinel_secrets::Keyring,
    actor: Actor,
    batch: Vec<Candidate>,
    enforce: bool,
) -> Result<(ImportReport, Vec<AccessKey>), RegistryError> {
    let now = tx.now();
    let mut report = ImportReport::default();
    let mut imported = Vec::new();
    let issue = |c: &Candidate, code: &str, message: String| ImportIssue {
        line: c.line,
        access_key: Some(c.key.access_key.to_string()),
        code: code.into(),
        message,
    };
    let requester = match &actor {
        Actor::Operator { id, .. } => OperatorId::parse(id).ok(),
        _ => None,
    };
    for mut c in batch {
        let Some(account) = tx.account(&c.key.account_id)? else {
            report.errors.push(issue(
                &c,
                "unknown_account",
                format!("account {} does not exist; create it first", c.key.account_id),
            ));
            continue;
        };
        if let Some(existing) = tx.key(&c.key.access_key)? {
            let same_material = match (&existing.key.algorithm, &c.key.algorithm, &existing.sealed_secret, &c.secret) {
                (KeyAlgorithm::Hmac, KeyAlgorithm::Hmac, Some(sealed), Some(secret)) => {
                    let stored = keyring.open(sealed, &secret_context(&c.key.access_key))?;
                    ct_eq(&stored, secret.as_bytes())
                }
                (KeyAlgorithm::Ed25519 { public_key: a }, KeyAlgorithm::Ed25519 { public_key: b }, _, _) => a == b,
                _ => false,
            };
            if same_material && existing.key.account_id == c.key.account_id {
                report.unchanged += 1;
            } else {
                report.errors.push(issue(
                    &c,
                    "conflict",
                    "this access key already exists with a different owner or secret; not overwritten".into(),
                ));
            }
            continue;
        }
        c.key.status_changed_by = actor.label();
        // Sensitive scopes arrive as pending grants: importing must not bypass the four-eyes rule.
        if !c.requested_sensitive.is_empty() {
            let Some(requester) = requester.as_ref() else {
                report.errors.push(issue(
                    &c,
                    "invalid_line",
                    "sensitive scopes can only be imported by an operator".into(),
                ));
                continue;
            };
            let hours = policy.for_segment(account.segment).sensitive_grant_max_hours;
            for scope in c.requested_sensitive.iter() {
                c.key.request_grant(scope, Duration::hours(hours), requester, now)?;
            }
            let names: Vec<&str> = c.requested_sensitive.iter().map(Scope::as_str).collect();
            report.warnings.push(issue(
                &c,
                "pending_grant",
                format!("{} imported as pending grants; an approver must approve them", names.join(", ")),
            ));
        }
        // A key that names a vendor the registry does not hold, or has not approved, is refused
        // whatever `enforce_policy` says: the rule is the vendor registry's, not a limit an
        // old key may predate.
        if let Err(RegistryError::Policy(v)) = crate::keys::check_vendor(tx, policy, &c.key, now) {
            report.errors.push(issue(&c, "policy_violation", format!("{}: {}", v.rule, v.message)));
            continue;
        }
        let live = tx.live_key_count(&account.account_id, now)?;
        // Imported keys predate our policy, so the lifetime rule is judged from their own creation.
        let violations = policy.violations(&account, &c.key, live, now);
        if !violations.is_empty() {
            let texts: Vec<String> = violations.iter().map(|v| format!("{}: {}", v.rule, v.message)).collect();
            let text = texts.join("; ");
            if enforce {
                report.errors.push(issue(&c, "policy_violation", text));
                continue;
            }
            report.warnings.push(issue(&c, "policy_violation", text));
        }
        let sealed_secret = c.secret.as_ref().map(|s| keyring.seal(s.as_bytes(), &secret_context(&c.key.access_key)));
        let fingerprint = c.secret.as_ref().map(|s| tx.pseudonym("api-secret", s.as_bytes()));
        tx.insert_key(&StoredKey { key: c.key.clone(), sealed_secret })?;
        let mut details = key_details(&c.key);
        details["secret_fingerprint"] = json!(fingerprint);
        details["line"] = json!(c.line);
        details["policy_violations"] = json!(violations.iter().map(|v| v.rule).collect::<Vec<_>>());
        tx.append_audit(AuditDraft {
            actor: actor.clone(),
            action: "key.import".into(),
            target: c.key.access_key.to_string(),
            reason: "imported from the exchange's existing keys".into(),
            policy_version: Some(policy.version.clone()),
            details,
        })?;
        report.imported += 1;
        imported.push(c.key.access_key);
    }
    Ok((report, imported))
}
