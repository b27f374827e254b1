//! Exchange customer accounts as keysentinel needs to know them.

use crate::error::ValidationError;
use crate::ids::AccountId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Customer segment. Key policy and (later) detection baselines differ by segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Segment {
    Retail,
    Corporate,
    Broker,
    MarketMaker,
}

impl Segment {
    pub const ALL: [Segment; 4] = [Segment::Retail, Segment::Corporate, Segment::Broker, Segment::MarketMaker];
    pub fn as_str(self) -> &'static str {
        match self {
            Segment::Retail => "retail",
            Segment::Corporate => "corporate",
            Segment::Broker => "broker",
            Segment::MarketMaker => "market_maker",
        }
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Segment {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, ValidationError> {
        Segment::ALL.into_iter().find(|seg| seg.as_str() == s).ok_or_else(|| {
            ValidationError::new(
                "segment",
                format!("unknown segment {s:?}; expected retail, corporate, broker or market_maker"),
            )
        })
    }
}

/// Identity verification (KYC) status of the customer behind an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verification {
    Unverified,
    Verified,
    /// The customer must verify their identity again before keys are issued or reinstated.
    ReverificationRequired,
}

impl Verification {
    pub fn as_str(self) -> &'static str {
        match self {
            Verification::Unverified => "unverified",
            Verification::Verified => "verified",
            Verification::ReverificationRequired => "reverification_required",
        }
    }
}

impl std::str::FromStr for Verification {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, ValidationError> {
        match s {
            "unverified" => Ok(Verification::Unverified),
            "verified" => Ok(Verification::Verified),
            "reverification_required" => Ok(Verification::ReverificationRequired),
            _ => Err(ValidationError::new(
                "verification",
                format!("unknown status {s:?}; expected unverified, verified or reverification_required"),
            )),
        }
    }
}

/// An ISO 3166-1 alpha-2 country code, upper case ("KR").
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "KR")]
pub struct CountryCode(String);

impl CountryCode {
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        if s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(ValidationError::new(
                "declared_countries",
                format!("{s:?} is not an ISO 3166-1 alpha-2 code such as \"KR\""),
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for CountryCode {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, ValidationError> {
        Self::parse(&s)
    }
}
impl From<CountryCode> for String {
    fn from(c: CountryCode) -> String {
        c.0
    }
}

pub const MAX_PURPOSE_LEN: usize = 500;
pub const MAX_COUNTRIES: usize = 50;

/// Checks a free-text purpose: bounded, and no control characters (they end up in audit logs,
/// tables and reports).
/// Whether a text shows nothing: only whitespace, controls, and the zero-width and direction
/// marks (U+200B and the like) — a name or a reason made of them is none.
pub fn blank(text: &str) -> bool {
    text.chars().all(|c| {
        c.is_whitespace()
            || c.is_control()
            || matches!(c, '\u{00AD}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
    })
}

pub fn check_text(field: &str, text: &str, max: usize) -> Result<(), ValidationError> {
    if text.chars().count() > max {
        return Err(ValidationError::new(field, format!("must be at most {max} characters")));
    }
    if text.chars().any(|c| c.is_control()) {
        return Err(ValidationError::new(field, "must not contain control characters"));
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Account {
    pub account_id: AccountId,
    pub segment: Segment,
    pub verification: Verification,
    /// What the customer said the account's API access is for ("own-account algorithmic trading").
    pub declared_purpose: String,
    /// Jurisdictions the customer declared they operate from.
    pub declared_countries: Vec<CountryCode>,
    /// When the customer's identity was last verified, when keysentinel recorded it (an
    /// approved reinstatement: the owner re-verified); none for accounts recorded before.
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schema(value_type = Option<String>)]
    pub verified_at: Option<time::OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: time::OffsetDateTime,
}

impl Account {
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_text("declared_purpose", &self.declared_purpose, MAX_PURPOSE_LEN)?;
        if self.declared_countries.len() > MAX_COUNTRIES {
            return Err(ValidationError::new("declared_countries", format!("at most {MAX_COUNTRIES} countries")));
        }
        let mut seen = std::collections::HashSet::new();
        for c in &self.declared_countries {
            if !seen.insert(c.as_str()) {
                return Err(ValidationError::new("declared_countries", format!("{} is listed twice", c.as_str())));
            }
        }
        Ok(())
    }
}
