//! Permission scopes. read, trade, withdraw and transfer are separate; withdraw and transfer
//! move funds and are "sensitive": they are granted only for a limited time and with approval.

use crate::error::ValidationError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Read,
    Trade,
    Withdraw,
    Transfer,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Read, Scope::Trade, Scope::Withdraw, Scope::Transfer];

    /// Scopes that move funds out of the account.
    pub fn is_sensitive(self) -> bool {
        matches!(self, Scope::Withdraw | Scope::Transfer)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Trade => "trade",
            Scope::Withdraw => "withdraw",
            Scope::Transfer => "transfer",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, ValidationError> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s).ok_or_else(|| {
            ValidationError::new(
                "scopes",
                format!("unknown scope {s:?}; expected one of read, trade, withdraw, transfer"),
            )
        })
    }
}

/// A set of scopes, as a bitset (cheap to copy and test on the verify hot path).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet(u8);

impl ScopeSet {
    pub const EMPTY: ScopeSet = ScopeSet(0);

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }
    pub fn insert(&mut self, scope: Scope) {
        self.0 |= scope.bit();
    }
    pub fn remove(&mut self, scope: Scope) {
        self.0 &= !scope.bit();
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }
    pub fn has_sensitive(self) -> bool {
        self.iter().any(Scope::is_sensitive)
    }

    /// Parses a comma-separated list ("read,trade"). Empty items, unknown names and duplicates
    /// are refused: a duplicate usually means a typo for another scope.
    pub fn parse_list(list: &str) -> Result<ScopeSet, ValidationError> {
        Self::from_names(list.split(','))
    }

    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<ScopeSet, ValidationError> {
        let mut set = ScopeSet::EMPTY;
        for raw in names {
            let name = raw.trim();
            if name.is_empty() {
                return Err(ValidationError::new("scopes", "empty scope name in list"));
            }
            let scope: Scope = name.parse()?;
            if set.contains(scope) {
                return Err(ValidationError::new("scopes", format!("scope {scope} listed twice")));
            }
            set.insert(scope);
        }
        Ok(set)
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut set = ScopeSet::EMPTY;
        for scope in iter {
            set.insert(scope);
        }
        set
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Scope::as_str).collect();
        f.write_str(&names.join(","))
    }
}

impl Serialize for ScopeSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for ScopeSet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(deserializer)?;
        ScopeSet::from_names(names.iter().map(String::as_str)).map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for ScopeSet {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ArrayBuilder::new()
            .items(<Scope as utoipa::PartialSchema>::schema())
            .unique_items(true)
            .into()
    }
}
impl utoipa::ToSchema for ScopeSet {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_lists_and_refuses_unknown_or_duplicate() {
        let set = ScopeSet::parse_list("read, trade").map_err(|e| e.to_string());
        assert_eq!(set.map(|s| s.to_string()), Ok("read,trade".to_owned()));
        assert!(ScopeSet::parse_list("read,admin").is_err());
        assert!(ScopeSet::parse_list("read,read").is_err());
        assert!(ScopeSet::parse_list("read,,trade").is_err());
        assert!(ScopeSet::parse_list("").is_err());
        assert!(ScopeSet::parse_list("READ").is_err());
    }

    #[test]
    fn sensitivity() {
        assert!(Scope::Withdraw.is_sensitive() && Scope::Transfer.is_sensitive());
        assert!(!Scope::Read.is_sensitive() && !Scope::Trade.is_sensitive());
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(bits in 1u8..16) {
            let set: ScopeSet = Scope::ALL.into_iter().filter(|s| bits & (1 << (*s as u8)) != 0).collect();
            let parsed = ScopeSet::parse_list(&set.to_string());
            prop_assert_eq!(parsed, Ok(set));
        }

        #[test]
        fn arbitrary_text_never_panics_and_only_known_names_parse(s in ".{0,40}") {
            if let Ok(set) = ScopeSet::parse_list(&s) {
                for name in s.split(',') {
                    prop_assert!(name.trim().parse::<Scope>().is_ok());
                }
                prop_assert!(!set.is_empty());
            }
        }
    }
}
