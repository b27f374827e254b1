//! Counterparties: the documented arrangements under which one account's keys may act for, or
//! beside, other accounts — market-making mandates, broker and omnibus arrangements with their
//! clients, affiliates, sub-accounts, delegation to a vendor's account. Each holds for a stated
//! time (`effective_from` to `effective_until`) on the documents it names; only one in effect
//! at a time excuses what it documents (detection reads them from the registry).

use crate::account::{check_text, CountryCode};
use crate::allowlist::IpAllowlist;
use crate::error::ValidationError;
use crate::ids::{AccountId, CounterpartyId};
use crate::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CounterpartyKind {
    /// A market maker's mandate: for whom, in which symbols, from where, until when.
    MmMandate,
    /// A broker's arrangement with its client accounts (disclosed, or omnibus).
    BrokerClient,
    /// Accounts of affiliated entities.
    Affiliate,
    /// An account's sub-accounts.
    SubAccount,
    /// An account's documented delegation to a vendor's own account.
    VendorDelegation,
}

impl CounterpartyKind {
    pub const ALL: [CounterpartyKind; 5] = [
        CounterpartyKind::MmMandate,
        CounterpartyKind::BrokerClient,
        CounterpartyKind::Affiliate,
        CounterpartyKind::SubAccount,
        CounterpartyKind::VendorDelegation,
    ];

    /// The name shared with event format v1's `relationship` records.
    pub fn as_str(self) -> &'static str {
        match self {
            CounterpartyKind::MmMandate => "mm_mandate",
            CounterpartyKind::BrokerClient => "broker_client",
            CounterpartyKind::Affiliate => "affiliate",
            CounterpartyKind::SubAccount => "sub_account",
            CounterpartyKind::VendorDelegation => "vendor_delegation",
        }
    }
}

impl fmt::Display for CounterpartyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for CounterpartyKind {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, ValidationError> {
        CounterpartyKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            ValidationError::new(
                "kind",
                format!(
                    "unknown counterparty kind {s:?}; expected mm_mandate, broker_client, affiliate, sub_account or vendor_delegation"
                ),
            )
        })
    }
}

/// For whom a market maker makes markets under a mandate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Principal {
    /// Its own account.
    Own,
    /// A token issuer (named in `issuer`; its account, if it has one here, in `related_accounts`).
    Issuer,
    /// Client accounts (`related_accounts`).
    Clients,
}

impl Principal {
    pub fn as_str(self) -> &'static str {
        match self {
            Principal::Own => "own",
            Principal::Issuer => "issuer",
            Principal::Clients => "clients",
        }
    }
}

/// A market symbol as the exchange names it: `BTC-KRW`, `ETH/KRW`, `BTCUSDT`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "BTC-KRW")]
pub struct Symbol(String);

impl Symbol {
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let part =
            |p: &str| (1..=16).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        let ok = match s.find(['-', '/', '_']) {
            Some(i) => part(&s[..i]) && part(&s[i + 1..]),
            None => part(s),
        };
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ValidationError::new(
                "symbols",
                format!(
                    "{s:?} is not a market symbol (upper-case letters and digits, one -, / or _ between base and quote: BTC-KRW, ETHUSDT)"
                ),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Symbol {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, ValidationError> {
        Self::parse(&s)
    }
}

impl From<Symbol> for String {
    fn from(s: Symbol) -> String {
        s.0
    }
}

/// Why and when an operator ended a counterparty before its `effective_until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Ended {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub at: Timestamp,
    pub by: String,
    pub reason: String,
}

/// Most related accounts one record holds (an omnibus broker's clients are listed by the
/// broker's own books, not here, past this).
pub const MAX_RELATED: usize = 1000;
pub const MAX_SYMBOLS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Counterparty {
    pub counterparty_id: CounterpartyId,
    pub kind: CounterpartyKind,
    /// The account the arrangement is about: the market maker's, the broker's, the parent's,
    /// one affiliate's, the delegating customer's.
    pub account_id: AccountId,
    /// The other accounts: clients, sub-accounts, affiliates, the vendor's account; a
    /// mandate's principal's account when it has one here.
    pub related_accounts: Vec<AccountId>,
    /// A mandate's principal.
    pub principal: Option<Principal>,
    /// A mandate's token issuer, by name.
    pub issuer: Option<String>,
    /// A mandate's symbols.
    pub symbols: Vec<Symbol>,
    /// Where a mandate is carried out from: countries...
    pub countries: Vec<CountryCode>,
    /// ...and networks.
    pub ip_allowlist: IpAllowlist,
    /// A broker arrangement held in one omnibus account.
    pub omnibus: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub effective_from: Timestamp,
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schema(value_type = Option<String>)]
    pub effective_until: Option<Timestamp>,
    /// The documents or attestation behind it ("contract MM-2026-07", "KYB file 4411").
    pub document_ref: String,
    /// 1 when created, one more at each change.
    pub version: u32,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub updated_at: Timestamp,
    pub ended: Option<Ended>,
}

impl Counterparty {
    /// Whether it holds at `at`: within its dates (an early end moves `effective_until`).
    pub fn in_effect(&self, at: Timestamp) -> bool {
        crate::dated::in_effect(self.effective_from, self.effective_until, at)
    }

    /// The pairs of accounts it relates, as detection's `relationship` records name them: the
    /// account with each related one, or the account with itself (a mandate for its own
    /// account relates it to no other).
    pub fn pairs(&self) -> Vec<(&AccountId, &AccountId)> {
        if self.related_accounts.is_empty() {
            return vec![(&self.account_id, &self.account_id)];
        }
        self.related_accounts.iter().map(|r| (&self.account_id, r)).collect()
    }

    /// Every account it names.
    pub fn accounts(&self) -> impl Iterator<Item = &AccountId> {
        std::iter::once(&self.account_id).chain(self.related_accounts.iter())
    }

    /// The record's rules, each refusal naming its field: what each kind needs, and what only
    /// some kinds may carry (a value another kind would silently ignore is refused).
    pub fn validate(&self) -> Result<(), ValidationError> {
        use CounterpartyKind::*;
        if self.document_ref.trim().is_empty() {
            return Err(ValidationError::new(
                "document_ref",
                "name the documents or attestation behind it (a contract, a KYB file)",
            ));
        }
        check_text("document_ref", &self.document_ref, 500)?;
        if let Some(until) = self.effective_until {
            if until <= self.effective_from {
                return Err(ValidationError::new(
                    "effective_until",
                    format!(
                        "must be after effective_from ({})",
                        self.effective_from.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
                    ),
                ));
            }
        }
        if self.related_accounts.len() > MAX_RELATED {
            return Err(ValidationError::new("related_accounts", format!("at most {MAX_RELATED} accounts")));
        }
        let mut seen = std::collections::HashSet::new();
        for a in &self.related_accounts {
            if *a == self.account_id {
                return Err(ValidationError::new("related_accounts", format!("{a} is the record's own account_id")));
            }
            if !seen.insert(a) {
                return Err(ValidationError::new("related_accounts", format!("{a} is listed twice")));
            }
        }
        let mandate = self.kind == MmMandate;
        let only_mandate = |field: &str, present: bool| -> Result<(), ValidationError> {
            if present && !mandate {
                return Err(ValidationError::new(
                    field,
                    format!("only a market-making mandate (mm_mandate) has {field}; a {} does not", self.kind),
                ));
            }
            Ok(())
        };
        only_mandate("principal", self.principal.is_some())?;
        only_mandate("issuer", self.issuer.is_some())?;
        only_mandate("symbols", !self.symbols.is_empty())?;
        only_mandate("countries", !self.countries.is_empty())?;
        only_mandate("ip_allowlist", !self.ip_allowlist.is_empty())?;
        if self.omnibus && self.kind != BrokerClient {
            return Err(ValidationError::new(
                "omnibus",
                format!("only a broker arrangement (broker_client) is omnibus; a {} is not", self.kind),
            ));
        }
        if mandate {
            self.validate_mandate()
        } else if self.related_accounts.is_empty() {
            let who = match self.kind {
                BrokerClient => "the broker's client accounts",
                Affiliate => "the affiliated accounts",
                SubAccount => "the sub-accounts",
                _ => "the vendor's account",
            };
            Err(ValidationError::new("related_accounts", format!("a {} names {who}", self.kind)))
        } else {
            Ok(())
        }
    }

    fn validate_mandate(&self) -> Result<(), ValidationError> {
        let principal = self
            .principal
            .ok_or_else(|| ValidationError::new("principal", "a mandate says for whom: own, issuer or clients"))?;
        if self.effective_until.is_none() {
            return Err(ValidationError::new("effective_until", "a mandate is given for a stated time; set its end"));
        }
        if self.symbols.is_empty() || self.symbols.len() > MAX_SYMBOLS {
            return Err(ValidationError::new("symbols", format!("a mandate names 1 to {MAX_SYMBOLS} symbols")));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(s) = self.symbols.iter().find(|s| !seen.insert(*s)) {
            return Err(ValidationError::new("symbols", format!("{} is listed twice", s.as_str())));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(c) = self.countries.iter().find(|c| !seen.insert(c.as_str())) {
            return Err(ValidationError::new("countries", format!("{} is listed twice", c.as_str())));
        }
        match principal {
            Principal::Own if !self.related_accounts.is_empty() => Err(ValidationError::new(
                "related_accounts",
                "a mandate for the market maker's own account relates no other account",
            )),
            Principal::Issuer => {
                let issuer = self.issuer.as_deref().unwrap_or("");
                if issuer.trim().is_empty() {
                    return Err(ValidationError::new("issuer", "a mandate for a token issuer names the issuer"));
                }
                check_text("issuer", issuer, 200)?;
                if self.related_accounts.len() > 1 {
                    return Err(ValidationError::new(
                        "related_accounts",
                        "a mandate for an issuer names at most the issuer's own account",
                    ));
                }
                Ok(())
            }
            Principal::Clients if self.related_accounts.is_empty() => {
                Err(ValidationError::new("related_accounts", "a mandate for clients names their accounts"))
            }
            _ if self.issuer.is_some() => Err(ValidationError::new(
                "issuer",
                format!("only a mandate for an issuer names one (principal is {})", principal.as_str()),
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: Timestamp = datetime!(2026-12-01 00:00 UTC);

    fn id(s: &str) -> AccountId {
        AccountId::parse(s).unwrap_or_else(|e| unreachable!("{e}"))
    }

    fn mandate() -> Counterparty {
        Counterparty {
            counterparty_id: CounterpartyId::parse("cp-1").unwrap_or_else(|e| unreachable!("{e}")),
            kind: CounterpartyKind::MmMandate,
            account_id: id("mm-1"),
            related_accounts: vec![],
            principal: Some(Principal::Issuer),
            issuer: Some("Klaytn Foundation".into()),
            symbols: vec![Symbol::parse("KLAY-KRW").unwrap_or_else(|e| unreachable!("{e}"))],
            countries: vec![],
            ip_allowlist: IpAllowlist::default(),
            omnibus: false,
            effective_from: T0,
            effective_until: Some(T0 + time::Duration::days(90)),
            document_ref: "MM-2026-07".into(),
            version: 1,
            created_by: "alice".into(),
            created_at: T0,
            updated_at: T0,
            ended: None,
        }
    }

    fn field(c: &Counterparty) -> Option<String> {
        c.validate().err().map(|e| e.field)
    }

    #[test]
    fn each_kind_carries_what_it_needs_and_nothing_it_would_ignore() {
        assert_eq!(field(&mandate()), None);
        let mut backwards = mandate();
        backwards.effective_until = Some(T0 - time::Duration::days(1));
        assert_eq!(field(&backwards).as_deref(), Some("effective_until"));
        let mut open_ended = mandate();
        open_ended.effective_until = None;
        assert_eq!(field(&open_ended).as_deref(), Some("effective_until"));
        let mut no_issuer = mandate();
        no_issuer.issuer = None;
        assert_eq!(field(&no_issuer).as_deref(), Some("issuer"));
        let mut no_docs = mandate();
        no_docs.document_ref = " ".into();
        assert_eq!(field(&no_docs).as_deref(), Some("document_ref"));

        let mut affiliate = mandate();
        affiliate.kind = CounterpartyKind::Affiliate;
        assert_eq!(field(&affiliate).as_deref(), Some("principal"), "a mandate's terms on an affiliate");
        affiliate.principal = None;
        affiliate.issuer = None;
        affiliate.symbols.clear();
        assert_eq!(field(&affiliate).as_deref(), Some("related_accounts"));
        affiliate.related_accounts = vec![id("corp-2")];
        affiliate.effective_until = None;
        assert_eq!(field(&affiliate), None);
        affiliate.related_accounts.push(id("corp-2"));
        assert_eq!(field(&affiliate).as_deref(), Some("related_accounts"));
        affiliate.related_accounts = vec![id("corp-2")];
        affiliate.omnibus = true;
        assert_eq!(field(&affiliate).as_deref(), Some("omnibus"));
        assert!(Symbol::parse("btc-krw").is_err() && Symbol::parse("BTC--KRW").is_err() && Symbol::parse("").is_err());
        assert!("friend".parse::<CounterpartyKind>().is_err());
    }

    #[test]
    fn in_effect_within_its_dates_only() {
        let m = mandate();
        assert!(!m.in_effect(T0 - time::Duration::seconds(1)));
        assert!(m.in_effect(T0));
        assert!(!m.in_effect(T0 + time::Duration::days(90)), "the end is exclusive");
        assert_eq!(m.pairs(), vec![(&m.account_id, &m.account_id)]);
    }
}
