//! Key policy per segment: the rules every key must satisfy at creation and change.
//! The policy is a versioned TOML document (see `docs/policy.md`); every refusal names the rule.

use crate::account::{Account, Segment, Verification};
use crate::counterparty::{Counterparty, CounterpartyKind};
use crate::key::{ApiKey, SensitiveGrant};
use crate::purpose::{PurposeName, PurposeRule, Requirement};
use crate::scope::Scope;
use crate::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use thiserror::Error;
use time::Duration;

/// The rules, by stable name. The names appear in API errors, CLI output and audit entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    AccountNotVerified,
    TermsNotAccepted,
    MaxLifetime,
    MaxKeysPerAccount,
    AllowlistRequired,
    AllowlistTooLarge,
    VendorKeySensitiveScope,
    SensitiveGrantTtl,
    SensitiveGrantSelfApproval,
    VendorNotRegistered,
    VendorNotApproved,
    /// The key names no purpose of the policy (or `legacy`, which is never issued).
    PurposeNotDefined,
    /// The purpose is not one the account's segment may hold.
    PurposeNotForSegment,
    /// The key holds or asks for a scope its purpose does not allow.
    PurposeScopeNotAllowed,
    /// The purpose needs an approved vendor and the key names none.
    VendorRequired,
    /// The key names a vendor under a purpose that is not a vendor's.
    VendorNotAllowed,
    /// The purpose needs a market-making mandate of the account in effect.
    MandateRequired,
    /// The purpose needs a broker-client arrangement of the account in effect.
    BrokerClientRequired,
    /// The key names as its operator a party not on its account's record (or not in effect).
    OperatorNotOnRecord,
    /// The segment's keys must name who operates them (a party, or their vendor).
    OperatorRequired,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::AccountNotVerified => "account_not_verified",
            Rule::TermsNotAccepted => "terms_not_accepted",
            Rule::MaxLifetime => "max_lifetime",
            Rule::MaxKeysPerAccount => "max_keys_per_account",
            Rule::AllowlistRequired => "allowlist_required",
            Rule::AllowlistTooLarge => "allowlist_too_large",
            Rule::VendorKeySensitiveScope => "vendor_key_sensitive_scope",
            Rule::SensitiveGrantTtl => "sensitive_grant_ttl",
            Rule::SensitiveGrantSelfApproval => "sensitive_grant_self_approval",
            Rule::VendorNotRegistered => "vendor_not_registered",
            Rule::VendorNotApproved => "vendor_not_approved",
            Rule::PurposeNotDefined => "purpose_not_defined",
            Rule::PurposeNotForSegment => "purpose_not_for_segment",
            Rule::PurposeScopeNotAllowed => "purpose_scope_not_allowed",
            Rule::VendorRequired => "vendor_required",
            Rule::VendorNotAllowed => "vendor_not_allowed",
            Rule::MandateRequired => "mandate_required",
            Rule::BrokerClientRequired => "broker_client_required",
            Rule::OperatorNotOnRecord => "operator_not_on_record",
            Rule::OperatorRequired => "operator_required",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("policy rule {rule} (policy {policy_version}): {message}")]
pub struct PolicyViolation {
    pub rule: Rule,
    pub policy_version: String,
    pub message: String,
}

/// Limits for one segment. In the file every field is optional and falls back to `[defaults]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentPolicy {
    /// Longest lifetime a key may be created with. Keys are never extended: rotate instead.
    pub max_lifetime_days: i64,
    /// Live (active or suspended) keys one account may hold.
    pub max_keys_per_account: u32,
    /// Every key of this segment must carry an IP allowlist.
    pub allowlist_required: bool,
    pub max_allowlist_entries: u32,
    /// Longest a withdraw or transfer grant may last once approved.
    pub sensitive_grant_max_hours: i64,
    /// Keys without an IP allowlist lapse this many days after issuance (0: never). Exchanges
    /// do this to keys anyone who learns them could use from anywhere (Binance 30, OKX 14,
    /// Bybit 90 days).
    #[serde(default)]
    pub unrestricted_lapse_days: u32,
    /// The owner is told this many days before such a lapse.
    #[serde(default = "default_notice_days")]
    pub unrestricted_notice_days: u32,
    /// New keys must name who operates them: a person, desk or system on the account's record,
    /// or their vendor (docs/registry.md).
    #[serde(default)]
    pub operator_required: bool,
}

fn default_notice_days() -> u32 {
    7
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SegmentOverrides {
    max_lifetime_days: Option<i64>,
    max_keys_per_account: Option<u32>,
    allowlist_required: Option<bool>,
    max_allowlist_entries: Option<u32>,
    sensitive_grant_max_hours: Option<i64>,
    unrestricted_lapse_days: Option<u32>,
    unrestricted_notice_days: Option<u32>,
    operator_required: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    schema: u32,
    version: String,
    terms_version: String,
    defaults: SegmentPolicy,
    #[serde(default)]
    segments: BTreeMap<String, SegmentOverrides>,
    /// Absent: the built-in purposes (the default policy's).
    #[serde(default)]
    purposes: Option<BTreeMap<String, PurposeRule>>,
}

/// The effective policy: defaults merged with each segment's overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KeyPolicy {
    /// The policy's own version, recorded with every decision it made.
    pub version: String,
    /// The no-sharing terms a key owner must have accepted.
    pub terms_version: String,
    pub retail: SegmentPolicy,
    pub corporate: SegmentPolicy,
    pub broker: SegmentPolicy,
    pub market_maker: SegmentPolicy,
    /// What keys may be issued for, by name.
    #[schema(value_type = Object)]
    pub purposes: BTreeMap<PurposeName, PurposeRule>,
}

#[derive(Debug, Error)]
pub enum PolicyFileError {
    #[error("policy file is not valid TOML or has unknown fields: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("policy file schema {0} is not supported (this build reads schema 1)")]
    Schema(u32),
    #[error("policy file: {0}")]
    Invalid(String),
}

/// The default policy, shipped with the binary and documented field by field.
pub const DEFAULT_POLICY_TOML: &str = include_str!("../default-policy.toml");

impl KeyPolicy {
    pub fn from_toml(text: &str) -> Result<Self, PolicyFileError> {
        let file: PolicyFile = toml::from_str(text)?;
        if file.schema != 1 {
            return Err(PolicyFileError::Schema(file.schema));
        }
        if file.version.trim().is_empty() || file.terms_version.trim().is_empty() {
            return Err(PolicyFileError::Invalid("version and terms_version must not be empty".into()));
        }
        let merge = |name: &str| -> Result<SegmentPolicy, PolicyFileError> {
            let o = file.segments.get(name).cloned().unwrap_or_default();
            let d = &file.defaults;
            let p = SegmentPolicy {
                max_lifetime_days: o.max_lifetime_days.unwrap_or(d.max_lifetime_days),
                max_keys_per_account: o.max_keys_per_account.unwrap_or(d.max_keys_per_account),
                allowlist_required: o.allowlist_required.unwrap_or(d.allowlist_required),
                max_allowlist_entries: o.max_allowlist_entries.unwrap_or(d.max_allowlist_entries),
                sensitive_grant_max_hours: o.sensitive_grant_max_hours.unwrap_or(d.sensitive_grant_max_hours),
                unrestricted_lapse_days: o.unrestricted_lapse_days.unwrap_or(d.unrestricted_lapse_days),
                unrestricted_notice_days: o.unrestricted_notice_days.unwrap_or(d.unrestricted_notice_days),
                operator_required: o.operator_required.unwrap_or(d.operator_required),
            };
            if p.unrestricted_lapse_days > 3650 || p.unrestricted_notice_days > 365 {
                return Err(PolicyFileError::Invalid(format!(
                    "{name}: unrestricted_lapse_days must be 0..=3650 and unrestricted_notice_days 0..=365"
                )));
            }
            if p.max_lifetime_days < 1 || p.max_lifetime_days > 3650 {
                return Err(PolicyFileError::Invalid(format!("{name}: max_lifetime_days must be 1..=3650")));
            }
            if p.sensitive_grant_max_hours < 1 || p.sensitive_grant_max_hours > 24 * 90 {
                return Err(PolicyFileError::Invalid(format!("{name}: sensitive_grant_max_hours must be 1..=2160")));
            }
            if p.max_keys_per_account == 0 || p.max_allowlist_entries == 0 {
                return Err(PolicyFileError::Invalid(format!("{name}: limits must be at least 1")));
            }
            Ok(p)
        };
        for name in file.segments.keys() {
            if name.parse::<Segment>().is_err() {
                return Err(PolicyFileError::Invalid(format!(
                    "unknown segment [segments.{name}]; expected retail, corporate, broker or market_maker"
                )));
            }
        }
        let purposes = match file.purposes {
            Some(p) => check_purposes(p)?,
            // The default file defines them, so this does not recurse further.
            None => Self::default_policy()?.purposes,
        };
        Ok(KeyPolicy {
            purposes,
            retail: merge("retail")?,
            corporate: merge("corporate")?,
            broker: merge("broker")?,
            market_maker: merge("market_maker")?,
            version: file.version,
            terms_version: file.terms_version,
        })
    }

    pub fn purpose(&self, name: &PurposeName) -> Option<&PurposeRule> {
        self.purposes.get(name)
    }

    /// The purpose rules a new key must meet: its purpose is defined and open to the account's
    /// segment, its scopes (held and asked for) are among the purpose's, it has an allowlist if
    /// the purpose says so, it names a vendor exactly when the purpose needs one, and the
    /// records the purpose needs are in effect at `now` among `counterparties` (the account's
    /// own). Whether the vendor is approved is `check_vendor`'s. Returns the purpose's rule.
    pub fn check_purpose(
        &self,
        account: &Account,
        key: &ApiKey,
        counterparties: &[Counterparty],
        now: Timestamp,
    ) -> Result<&PurposeRule, PolicyViolation> {
        let name = &key.declared.purpose;
        let rule = self.purpose(name).filter(|_| !name.is_legacy()).ok_or_else(|| {
            let known: Vec<&str> = self.purposes.keys().map(PurposeName::as_str).collect();
            self.violation(
                Rule::PurposeNotDefined,
                format!("purpose {name} is not one of the key policy's ({})", known.join(", ")),
            )
        })?;
        if !rule.segments.contains(&account.segment) {
            return Err(self.violation(
                Rule::PurposeNotForSegment,
                format!("purpose {name} is not issued to {} accounts", account.segment),
            ));
        }
        if let Some(scope) = key.requested_scopes().iter().find(|s| !rule.scopes.contains(s)) {
            return Err(self.violation(Rule::PurposeScopeNotAllowed, format!("purpose {name} does not allow {scope}")));
        }
        if rule.allowlist_required && key.ip_allowlist.is_empty() {
            return Err(self.violation(Rule::AllowlistRequired, format!("keys for {name} must have an IP allowlist")));
        }
        let wants_vendor = rule.requires(Requirement::ApprovedVendor);
        match (&key.vendor_id, wants_vendor) {
            (None, true) => {
                return Err(self.violation(
                    Rule::VendorRequired,
                    format!("purpose {name} needs the approved vendor whose tool runs the key (vendor_id)"),
                ))
            }
            (Some(v), false) => {
                return Err(self.violation(
                    Rule::VendorNotAllowed,
                    format!("the key names vendor {v}, but purpose {name} is not a vendor's; use a vendor purpose"),
                ))
            }
            _ => {}
        }
        let in_effect = |kind: CounterpartyKind| {
            counterparties.iter().any(|c| c.kind == kind && c.account_id == account.account_id && c.in_effect(now))
        };
        if rule.requires(Requirement::MmMandate) && !in_effect(CounterpartyKind::MmMandate) {
            return Err(self.violation(
                Rule::MandateRequired,
                format!(
                    "purpose {name} needs a market-making mandate (an mm_mandate counterparty) of account {} in effect",
                    account.account_id
                ),
            ));
        }
        if rule.requires(Requirement::BrokerClient) && !in_effect(CounterpartyKind::BrokerClient) {
            return Err(self.violation(
                Rule::BrokerClientRequired,
                format!(
                    "purpose {name} needs a broker-client arrangement (a broker_client counterparty) of account {} in effect",
                    account.account_id
                ),
            ));
        }
        Ok(rule)
    }

    /// A new key of a segment whose policy says so names who operates it (`operated_by`, set by
    /// the registry from the party or vendor it names).
    pub fn check_operator(&self, account: &Account, key: &ApiKey) -> Result<(), PolicyViolation> {
        if self.for_segment(account.segment).operator_required && key.operated_by.is_none() {
            return Err(self.violation(
                Rule::OperatorRequired,
                format!(
                    "{} keys must name who operates them: a person, desk or system on the account's record (operated_by), or their vendor",
                    account.segment
                ),
            ));
        }
        Ok(())
    }

    /// When a key issued at `now` lapses for having no IP allowlist, if the segment's policy
    /// makes such keys lapse.
    pub fn unrestricted_lapse(&self, segment: Segment, key: &ApiKey, now: Timestamp) -> Option<Timestamp> {
        let days = self.for_segment(segment).unrestricted_lapse_days;
        (days > 0 && key.ip_allowlist.is_empty()).then(|| now + Duration::days(i64::from(days)))
    }

    pub fn default_policy() -> Result<Self, PolicyFileError> {
        Self::from_toml(DEFAULT_POLICY_TOML)
    }

    pub fn for_segment(&self, segment: Segment) -> &SegmentPolicy {
        match segment {
            Segment::Retail => &self.retail,
            Segment::Corporate => &self.corporate,
            Segment::Broker => &self.broker,
            Segment::MarketMaker => &self.market_maker,
        }
    }

    /// A refusal under `rule`, stamped with this policy's version.
    pub fn violation(&self, rule: Rule, message: impl Into<String>) -> PolicyViolation {
        PolicyViolation { rule, policy_version: self.version.clone(), message: message.into() }
    }

    /// Every rule a new key (created, rotated in or imported) must satisfy, given the number of
    /// live keys the account already holds. Returns the first violation.
    pub fn check_new_key(
        &self,
        account: &Account,
        key: &ApiKey,
        live_keys: u32,
        now: Timestamp,
    ) -> Result<(), PolicyViolation> {
        self.violations(account, key, live_keys, now).into_iter().next().map_or(Ok(()), Err)
    }

    /// All violations, for reports (import) that list everything wrong with a key at once.
    pub fn violations(&self, account: &Account, key: &ApiKey, live_keys: u32, now: Timestamp) -> Vec<PolicyViolation> {
        let seg = self.for_segment(account.segment);
        let mut out = Vec::new();
        if account.verification != Verification::Verified {
            out.push(self.violation(
                Rule::AccountNotVerified,
                format!(
                    "account {} is {}; keys are issued only to verified customers",
                    account.account_id,
                    account.verification.as_str()
                ),
            ));
        }
        if key.terms_version != self.terms_version {
            out.push(self.violation(
                Rule::TermsNotAccepted,
                format!(
                    "the owner must accept the no-sharing terms version {} (got {:?})",
                    self.terms_version, key.terms_version
                ),
            ));
        }
        let max_expiry = key.created_at.min(now) + Duration::days(seg.max_lifetime_days);
        if key.expires_at > max_expiry {
            out.push(self.violation(
                Rule::MaxLifetime,
                format!("{} keys may live at most {} days", account.segment, seg.max_lifetime_days),
            ));
        }
        if live_keys >= seg.max_keys_per_account {
            out.push(self.violation(
                Rule::MaxKeysPerAccount,
                format!(
                    "account {} already holds {live_keys} live keys; the {} limit is {}",
                    account.account_id, account.segment, seg.max_keys_per_account
                ),
            ));
        }
        let sensitive = key.requested_scopes().has_sensitive();
        if key.ip_allowlist.is_empty() && (seg.allowlist_required || sensitive) {
            let why = if seg.allowlist_required {
                format!("{} keys", account.segment)
            } else {
                "keys that can withdraw or transfer".to_owned()
            };
            out.push(self.violation(Rule::AllowlistRequired, format!("{why} must have an IP allowlist")));
        }
        if key.ip_allowlist.len() > seg.max_allowlist_entries as usize {
            out.push(self.violation(
                Rule::AllowlistTooLarge,
                format!("{} entries given; at most {} are allowed", key.ip_allowlist.len(), seg.max_allowlist_entries),
            ));
        }
        if key.vendor_id.is_some() && sensitive {
            out.push(self.violation(
                Rule::VendorKeySensitiveScope,
                "third-party tool (vendor) keys may never hold withdraw or transfer",
            ));
        }
        for grant in &key.grants {
            if let Err(v) = self.check_grant_ttl(account.segment, grant) {
                out.push(v);
            }
        }
        out
    }

    pub fn check_grant_ttl(&self, segment: Segment, grant: &SensitiveGrant) -> Result<(), PolicyViolation> {
        let max = self.for_segment(segment).sensitive_grant_max_hours;
        if grant.ttl_seconds < 60 || grant.ttl_seconds > max * 3600 {
            return Err(self.violation(
                Rule::SensitiveGrantTtl,
                format!("{} grants last from 1 minute to {max} hours for {segment} keys", grant.scope),
            ));
        }
        Ok(())
    }

    /// The four-eyes rule: a sensitive grant is approved by someone other than its requester.
    pub fn check_grant_approval(&self, grant: &SensitiveGrant, approver: &str) -> Result<(), PolicyViolation> {
        if grant.requested_by == approver {
            return Err(self.violation(
                Rule::SensitiveGrantSelfApproval,
                format!("{} grants need an approver other than the requester ({approver})", grant.scope),
            ));
        }
        Ok(())
    }

    /// A key may name only a registered vendor whose approval holds at `now` (`vendor` is the
    /// registry's record of the key's `vendor_id`, None when there is none).
    pub fn check_vendor(
        &self,
        key: &ApiKey,
        vendor: Option<&crate::vendor::Vendor>,
        now: Timestamp,
    ) -> Result<(), PolicyViolation> {
        let Some(id) = &key.vendor_id else { return Ok(()) };
        match vendor {
            None => Err(self.violation(
                Rule::VendorNotRegistered,
                format!("vendor {id} is not in the vendor registry; keys may name only registered, approved vendors"),
            )),
            Some(v) if !v.is_approved(now) => Err(self.violation(
                Rule::VendorNotApproved,
                format!("vendor {id} is {}; keys may name only approved vendors", v.effective_status(now).as_str()),
            )),
            Some(_) => Ok(()),
        }
    }

    /// Whether a key would be allowed to hold `scope` at all (vendor keys never hold sensitive scopes).
    pub fn check_scope_for_key(&self, key: &ApiKey, scope: Scope) -> Result<(), PolicyViolation> {
        if key.vendor_id.is_some() && scope.is_sensitive() {
            return Err(self.violation(
                Rule::VendorKeySensitiveScope,
                "third-party tool (vendor) keys may never hold withdraw or transfer",
            ));
        }
        if scope.is_sensitive() && key.ip_allowlist.is_empty() {
            return Err(
                self.violation(Rule::AllowlistRequired, "keys that can withdraw or transfer must have an IP allowlist")
            );
        }
        Ok(())
    }
}

/// Checks a file's purposes: names, and rules that say something.
fn check_purposes(raw: BTreeMap<String, PurposeRule>) -> Result<BTreeMap<PurposeName, PurposeRule>, PolicyFileError> {
    let mut out = BTreeMap::new();
    for (name, rule) in raw {
        let parsed =
            PurposeName::parse(&name).map_err(|e| PolicyFileError::Invalid(format!("[purposes.{name}]: {e}")))?;
        if parsed.is_legacy() {
            return Err(PolicyFileError::Invalid(
                "[purposes.legacy]: legacy names the keys issued before purposes and cannot be defined".into(),
            ));
        }
        if rule.segments.is_empty() || rule.scopes.is_empty() {
            return Err(PolicyFileError::Invalid(format!(
                "[purposes.{name}]: segments and scopes must each name at least one"
            )));
        }
        out.insert(parsed, rule);
    }
    if out.is_empty() {
        return Err(PolicyFileError::Invalid("[purposes]: at least one purpose is needed to issue keys".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::tests::sample_key;
    use crate::{AccountId, IpAllowlist, OperatorId, VendorId};
    use time::macros::datetime;

    const T0: Timestamp = datetime!(2026-11-28 00:00 UTC);

    fn account(segment: Segment) -> Account {
        Account {
            account_id: AccountId::parse("acct-1").unwrap(),
            segment,
            verification: Verification::Verified,
            declared_purpose: "trading".into(),
            declared_countries: vec![],
            verified_at: None,
            created_at: T0,
            updated_at: T0,
        }
    }

    fn rule_of(policy: &KeyPolicy, acct: &Account, key: &ApiKey, live: u32) -> Option<Rule> {
        policy.check_new_key(acct, key, live, T0).err().map(|v| v.rule)
    }

    #[test]
    fn default_policy_parses_with_documented_defaults() {
        let p = KeyPolicy::default_policy().unwrap();
        assert_eq!(p.retail.max_lifetime_days, 365);
        assert_eq!(p.retail.max_keys_per_account, 10);
        assert!(!p.retail.allowlist_required);
        assert!(p.corporate.allowlist_required && p.broker.allowlist_required && p.market_maker.allowlist_required);
        assert_eq!(p.retail.sensitive_grant_max_hours, 24);
    }

    #[test]
    fn each_rule_fires_and_names_itself() {
        let p = KeyPolicy::default_policy().unwrap();
        let retail = account(Segment::Retail);
        let key = sample_key(T0);
        assert_eq!(rule_of(&p, &retail, &key, 0), None);
        assert_eq!(rule_of(&p, &retail, &key, 10), Some(Rule::MaxKeysPerAccount));
        assert_eq!(rule_of(&p, &account(Segment::Corporate), &key, 0), Some(Rule::AllowlistRequired));

        let mut unverified = retail.clone();
        unverified.verification = Verification::Unverified;
        assert_eq!(rule_of(&p, &unverified, &key, 0), Some(Rule::AccountNotVerified));

        let mut old_terms = key.clone();
        old_terms.terms_version = "2020-01".into();
        assert_eq!(rule_of(&p, &retail, &old_terms, 0), Some(Rule::TermsNotAccepted));

        let mut long = key.clone();
        long.expires_at = T0 + Duration::days(366);
        assert_eq!(rule_of(&p, &retail, &long, 0), Some(Rule::MaxLifetime));

        let mut wide = key.clone();
        let many: Vec<String> = (0..11).map(|i| format!("198.51.100.{i}")).collect();
        wide.ip_allowlist = IpAllowlist::parse(&many).unwrap();
        assert_eq!(rule_of(&p, &retail, &wide, 0), Some(Rule::AllowlistTooLarge));

        let mut vendor = key.clone();
        vendor.vendor_id = Some(VendorId::parse("3commas").unwrap());
        vendor.ip_allowlist = IpAllowlist::parse(&["198.51.100.0/24"]).unwrap();
        vendor.request_grant(Scope::Withdraw, Duration::hours(1), &OperatorId::parse("op").unwrap(), T0).unwrap();
        assert_eq!(rule_of(&p, &retail, &vendor, 0), Some(Rule::VendorKeySensitiveScope));

        let mut withdraw = key.clone();
        withdraw.request_grant(Scope::Withdraw, Duration::hours(1), &OperatorId::parse("op").unwrap(), T0).unwrap();
        assert_eq!(rule_of(&p, &retail, &withdraw, 0), Some(Rule::AllowlistRequired));

        let mut too_long = key;
        too_long.ip_allowlist = IpAllowlist::parse(&["198.51.100.0/24"]).unwrap();
        too_long.request_grant(Scope::Transfer, Duration::hours(25), &OperatorId::parse("op").unwrap(), T0).unwrap();
        assert_eq!(rule_of(&p, &retail, &too_long, 0), Some(Rule::SensitiveGrantTtl));
    }

    #[test]
    fn keys_name_only_registered_approved_vendors() {
        use crate::vendor::{EgressRanges, Vendor};
        let p = KeyPolicy::default_policy().unwrap();
        let mut key = sample_key(T0);
        assert!(p.check_vendor(&key, None, T0).is_ok(), "no vendor, nothing to check");
        key.vendor_id = Some(VendorId::parse("tradebot").unwrap());
        assert_eq!(p.check_vendor(&key, None, T0).map_err(|v| v.rule), Err(Rule::VendorNotRegistered));
        let applied = Vendor::apply(
            VendorId::parse("tradebot").unwrap(),
            "Tradebot Inc.".into(),
            EgressRanges::default(),
            "alice",
            T0,
        )
        .unwrap();
        let refused = p.check_vendor(&key, Some(&applied), T0).unwrap_err();
        assert_eq!((refused.rule, refused.message.contains("is applied")), (Rule::VendorNotApproved, true));
        let mut approved = applied;
        approved.status = crate::vendor::VendorStatus::Approved;
        approved.recertification_due = Some(T0 + Duration::days(1));
        assert!(p.check_vendor(&key, Some(&approved), T0).is_ok());
        let lapsed = p.check_vendor(&key, Some(&approved), T0 + Duration::days(1)).unwrap_err();
        assert!(lapsed.message.contains("is lapsed"), "{}", lapsed.message);
    }

    fn mandate_of(account: &str, from: Timestamp, until: Timestamp) -> Counterparty {
        Counterparty {
            counterparty_id: crate::CounterpartyId::parse("mm1").unwrap(),
            kind: CounterpartyKind::MmMandate,
            account_id: AccountId::parse(account).unwrap(),
            related_accounts: vec![],
            principal: Some(crate::Principal::Own),
            issuer: None,
            symbols: vec![],
            countries: vec![],
            ip_allowlist: IpAllowlist::default(),
            omnibus: false,
            effective_from: from,
            effective_until: Some(until),
            document_ref: "MM-1".into(),
            version: 1,
            created_by: "alice".into(),
            created_at: from,
            updated_at: from,
            ended: None,
        }
    }

    #[test]
    fn purposes_name_their_rules() {
        use crate::purpose::{Approval, PurposeName};
        let p = KeyPolicy::default_policy().unwrap();
        let named = |name: &str| {
            let mut k = sample_key(T0);
            k.declared.purpose = PurposeName::parse(name).unwrap();
            k
        };
        let rule = |acct: &Account, key: &ApiKey, cps: &[Counterparty]| {
            p.check_purpose(acct, key, cps, T0).err().map(|v| v.rule)
        };
        let retail = account(Segment::Retail);
        assert_eq!(rule(&retail, &named("own_bot"), &[]), None);
        assert_eq!(rule(&retail, &named("day_trading"), &[]), Some(Rule::PurposeNotDefined));
        assert_eq!(rule(&retail, &named("legacy"), &[]), Some(Rule::PurposeNotDefined), "legacy is never issued");
        assert_eq!(rule(&retail, &named("portfolio_read_only"), &[]), Some(Rule::PurposeScopeNotAllowed));
        assert_eq!(rule(&retail, &named("market_making"), &[]), Some(Rule::PurposeNotForSegment));
        assert_eq!(rule(&retail, &named("vendor_copy_trading"), &[]), Some(Rule::VendorRequired));
        let mut vendor_bot = named("own_bot");
        vendor_bot.vendor_id = Some(VendorId::parse("tradebot").unwrap());
        assert_eq!(rule(&retail, &vendor_bot, &[]), Some(Rule::VendorNotAllowed));

        let mut mm = account(Segment::MarketMaker);
        mm.account_id = AccountId::parse("mm-7").unwrap();
        let mut making = named("market_making");
        making.account_id = mm.account_id.clone();
        assert_eq!(rule(&mm, &making, &[]), Some(Rule::AllowlistRequired));
        making.ip_allowlist = IpAllowlist::parse(&["198.51.100.0/24"]).unwrap();
        assert_eq!(rule(&mm, &making, &[]), Some(Rule::MandateRequired));
        let current = mandate_of("mm-7", T0 - Duration::days(1), T0 + Duration::days(90));
        let ended = mandate_of("mm-7", T0 - Duration::days(90), T0);
        let someone_elses = mandate_of("mm-8", T0 - Duration::days(1), T0 + Duration::days(90));
        assert_eq!(rule(&mm, &making, &[ended, someone_elses]), Some(Rule::MandateRequired));
        let ok = p.check_purpose(&mm, &making, &[current], T0).unwrap();
        assert_eq!(ok.approval, Approval::Compliance);

        let broker = account(Segment::Broker);
        let mut exec = named("broker_execution");
        exec.ip_allowlist = IpAllowlist::parse(&["198.51.100.0/24"]).unwrap();
        assert_eq!(rule(&broker, &exec, &[]), Some(Rule::BrokerClientRequired));
    }

    #[test]
    fn a_segment_may_require_keys_to_name_their_operator() {
        let text = DEFAULT_POLICY_TOML.replace("[segments.broker]\n", "[segments.broker]\noperator_required = true\n");
        let p = KeyPolicy::from_toml(&text).unwrap();
        let mut key = sample_key(T0);
        assert!(p.check_operator(&account(Segment::Retail), &key).is_ok(), "retail: not required");
        let refused = p.check_operator(&account(Segment::Broker), &key).unwrap_err();
        assert_eq!(refused.rule, Rule::OperatorRequired);
        key.operated_by = Some(crate::identity::OperatedBy {
            kind: crate::identity::OperatorKind::Desk,
            party_id: None,
            name: "desk".into(),
        });
        assert!(p.check_operator(&account(Segment::Broker), &key).is_ok());
    }

    #[test]
    fn unrestricted_keys_lapse_when_the_policy_says() {
        let text = DEFAULT_POLICY_TOML.replace("unrestricted_lapse_days = 0 ", "unrestricted_lapse_days = 30 ");
        let p = KeyPolicy::from_toml(&text).unwrap();
        let mut key = sample_key(T0);
        assert_eq!(p.unrestricted_lapse(Segment::Retail, &key, T0), Some(T0 + Duration::days(30)));
        key.ip_allowlist = IpAllowlist::parse(&["198.51.100.0/24"]).unwrap();
        assert_eq!(p.unrestricted_lapse(Segment::Retail, &key, T0), None);
        let off = KeyPolicy::default_policy().unwrap();
        assert_eq!(off.unrestricted_lapse(Segment::Retail, &sample_key(T0), T0), None);
    }

    #[test]
    fn four_eyes_on_sensitive_grants() {
        let p = KeyPolicy::default_policy().unwrap();
        let mut key = sample_key(T0);
        key.request_grant(Scope::Withdraw, Duration::hours(1), &OperatorId::parse("alice").unwrap(), T0).unwrap();
        let grant = key.pending_grant(Scope::Withdraw).unwrap();
        assert_eq!(p.check_grant_approval(grant, "alice").map_err(|v| v.rule), Err(Rule::SensitiveGrantSelfApproval));
        assert!(p.check_grant_approval(grant, "bob").is_ok());
    }

    #[test]
    fn bad_policy_files_are_refused_with_reasons() {
        let bad_schema = DEFAULT_POLICY_TOML.replace("schema = 1", "schema = 2");
        assert!(matches!(KeyPolicy::from_toml(&bad_schema), Err(PolicyFileError::Schema(2))));
        let typo = format!("{DEFAULT_POLICY_TOML}\n[segments.whale]\nmax_keys_per_account = 3\n");
        assert!(matches!(KeyPolicy::from_toml(&typo), Err(PolicyFileError::Invalid(_))));
        let unknown_field = DEFAULT_POLICY_TOML.replace("max_keys_per_account = 10", "max_keys_per_acount = 10");
        assert!(matches!(KeyPolicy::from_toml(&unknown_field), Err(PolicyFileError::Parse(_))));
        assert!(KeyPolicy::from_toml("not toml [").is_err());
        let legacy = format!("{DEFAULT_POLICY_TOML}\n[purposes.legacy]\nsegments = [\"retail\"]\nscopes = [\"read\"]\ndescription = \"x\"\n");
        assert!(matches!(KeyPolicy::from_toml(&legacy), Err(PolicyFileError::Invalid(m)) if m.contains("legacy")));
        let no_scopes = DEFAULT_POLICY_TOML.replace("scopes = [\"read\"]\n", "scopes = []\n");
        assert!(matches!(KeyPolicy::from_toml(&no_scopes), Err(PolicyFileError::Invalid(_))));
        let own: String = DEFAULT_POLICY_TOML.split("[purposes.").next().unwrap_or_default().to_owned();
        assert_eq!(KeyPolicy::from_toml(&own).unwrap().purposes.len(), 6, "no [purposes]: the built-in ones");
    }
}
