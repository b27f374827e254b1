//! What a key is for. The key policy lists purposes (`[purposes.NAME]`, docs/policy.md), each
//! saying for which segments it may be issued, which scopes it allows, whether it needs an IP
//! allowlist, which registry records must stand behind it and whose approval it needs. A key
//! names one of them; a creation that does not meet its purpose's rules is refused naming the
//! rule, like every other key-policy rule.
//!
//! Keys issued before purposes existed carry free text; they read back as [`PurposeName::LEGACY`]
//! with that text kept as their note (`Declared`). `legacy` is never issued.

use crate::account::Segment;
use crate::error::ValidationError;
use crate::scope::Scope;
use crate::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A purpose's name: lower-case ASCII letters, digits and `_`, 1 to 40 characters
/// (`market_making`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "own_bot")]
pub struct PurposeName(String);

impl PurposeName {
    /// Keys from before purposes: readable, never issued, not subject to purpose rules.
    pub const LEGACY: &'static str = "legacy";

    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let ok = !s.is_empty()
            && s.len() <= 40
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && s.as_bytes().first().is_some_and(u8::is_ascii_lowercase);
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ValidationError::new(
                "purpose",
                format!(
                    "{s:?} is not a purpose name: 1 to 40 lower-case letters, digits or '_', starting with a letter"
                ),
            ))
        }
    }

    pub fn legacy() -> Self {
        Self(Self::LEGACY.to_owned())
    }

    pub fn is_legacy(&self) -> bool {
        self.0 == Self::LEGACY
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PurposeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for PurposeName {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, ValidationError> {
        Self::parse(&s)
    }
}

impl From<PurposeName> for String {
    fn from(p: PurposeName) -> String {
        p.0
    }
}

/// A registry record a purpose needs behind the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Requirement {
    /// The key names a vendor in the vendor registry whose approval holds (and only such
    /// purposes may name one).
    ApprovedVendor,
    /// An `mm_mandate` counterparty of the key's account in effect at issuance.
    MmMandate,
    /// A `broker_client` counterparty of the key's account in effect at issuance.
    BrokerClient,
}

impl Requirement {
    pub fn as_str(self) -> &'static str {
        match self {
            Requirement::ApprovedVendor => "approved_vendor",
            Requirement::MmMandate => "mm_mandate",
            Requirement::BrokerClient => "broker_client",
        }
    }
}

/// Whose approval a key of the purpose needs before it is valid.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    /// Issued active.
    #[default]
    None,
    /// Issued pending; a compliance operator who is neither the requester nor in their chain
    /// of creation approves it.
    Compliance,
}

impl Approval {
    pub fn as_str(self) -> &'static str {
        match self {
            Approval::None => "none",
            Approval::Compliance => "compliance",
        }
    }
}

/// One purpose as the policy defines it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurposeRule {
    /// What it is for, for people.
    pub description: String,
    /// The segments whose accounts may hold keys of this purpose.
    pub segments: Vec<Segment>,
    /// Every scope a key of this purpose may hold or ask for.
    pub scopes: Vec<Scope>,
    /// Keys of this purpose need an IP allowlist (besides the segment's own rule).
    #[serde(default)]
    pub allowlist_required: bool,
    /// Registry records that must stand behind the key at issuance.
    #[serde(default)]
    pub requires: Vec<Requirement>,
    #[serde(default)]
    pub approval: Approval,
}

impl PurposeRule {
    pub fn requires(&self, r: Requirement) -> bool {
        self.requires.contains(&r)
    }
}

/// The purpose a key was issued for, and the owner's own words about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Declared {
    /// One of the key policy's purposes; `legacy` for keys issued before purposes.
    pub purpose: PurposeName,
    /// Free text: what the owner said (a legacy key's old `purpose` text).
    #[serde(rename = "purpose_note")]
    pub note: String,
}

/// Stored keys written before purposes hold `purpose` as free text and no `purpose_note`:
/// they read as `legacy`, their text kept as the note. A key written since always has
/// `purpose_note`, and its `purpose` must be a purpose name (a bad one fails loudly).
impl<'de> Deserialize<'de> for Declared {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default)]
            purpose: String,
            #[serde(default)]
            purpose_note: Option<String>,
        }
        let raw = Raw::deserialize(d)?;
        match raw.purpose_note {
            None => Ok(Declared { purpose: PurposeName::legacy(), note: raw.purpose }),
            Some(note) => {
                Ok(Declared { purpose: PurposeName::parse(&raw.purpose).map_err(serde::de::Error::custom)?, note })
            }
        }
    }
}

/// How the owner accepted the terms against key sharing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TermsChannel {
    /// The exchange's website.
    Web,
    /// The exchange's mobile app.
    App,
    /// Signed on paper or at a branch (corporate onboarding).
    Paper,
    /// An account manager recorded it for an institutional client.
    AccountManager,
}

/// The owner's acceptance of the no-sharing terms, recorded at issuance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TermsAcceptance {
    pub version: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub accepted_at: Timestamp,
    pub channel: TermsChannel,
}

/// A pending key's approval: who asked, and once approved, who approved and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyApproval {
    pub needed: Approval,
    pub requested_by: String,
    pub approved_by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schema(value_type = Option<String>)]
    pub approved_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(PurposeName::parse("market_making").is_ok());
        for bad in ["", "Market", "own bot", "9lives", &"x".repeat(41)] {
            assert!(PurposeName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn old_free_text_reads_as_legacy_and_new_names_are_strict() {
        let old: Declared = serde_json::from_str(r#"{"purpose":"own trading bot"}"#).unwrap();
        assert_eq!((old.purpose.as_str(), old.note.as_str()), ("legacy", "own trading bot"));
        let empty: Declared = serde_json::from_str(r#"{}"#).unwrap();
        assert!(empty.purpose.is_legacy());
        let new: Declared = serde_json::from_str(r#"{"purpose":"own_bot","purpose_note":"grid bot"}"#).unwrap();
        assert_eq!((new.purpose.as_str(), new.note.as_str()), ("own_bot", "grid bot"));
        assert!(serde_json::from_str::<Declared>(r#"{"purpose":"own bot","purpose_note":""}"#).is_err());
        let back = serde_json::to_value(&new).unwrap();
        assert_eq!(back, serde_json::json!({"purpose": "own_bot", "purpose_note": "grid bot"}));
    }
}
