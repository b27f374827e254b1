//! Who stands behind an account and operates its keys (issue #13, item 1): its beneficial
//! owners and authorised representatives and, for corporate, broker and market-maker accounts,
//! the people, desks and systems that operate its keys. Each is a dated, versioned record; a key
//! may name the party that operates it (`ApiKey::operated_by`), or its vendor does.

use crate::account::{blank, check_text, Segment};
use crate::error::ValidationError;
use crate::ids::{AccountId, PartyId};
use crate::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PartyKind {
    /// Owns or controls the account (for a company: 25 % or more, or control by other means).
    BeneficialOwner,
    /// May act for the account (power of attorney, a company's signatory).
    Representative,
    /// A named person who operates the account's keys (a trader, an engineer).
    Operator,
    /// A trading desk operating the account's keys.
    Desk,
    /// A program operating the account's keys on its own (an execution system, a bot host).
    System,
}

impl PartyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PartyKind::BeneficialOwner => "beneficial_owner",
            PartyKind::Representative => "representative",
            PartyKind::Operator => "operator",
            PartyKind::Desk => "desk",
            PartyKind::System => "system",
        }
    }

    /// Whether a key may name a party of this kind as its operator: the people, desks and
    /// systems that run keys, and a representative acting for the owner.
    pub fn operates_keys(self) -> bool {
        !matches!(self, PartyKind::BeneficialOwner)
    }

    /// Named operators, desks and systems are recorded for institutional accounts; a retail
    /// customer operates their own keys.
    pub fn allowed_for(self, segment: Segment) -> bool {
        match self {
            PartyKind::BeneficialOwner | PartyKind::Representative => true,
            PartyKind::Operator | PartyKind::Desk | PartyKind::System => segment != Segment::Retail,
        }
    }
}

/// How a party's record ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PartyEnded {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub at: Timestamp,
    pub by: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Party {
    pub party_id: PartyId,
    pub account_id: AccountId,
    pub kind: PartyKind,
    /// The person's, desk's or system's name.
    pub name: String,
    /// The document behind the record (KYC/KYB file, power of attorney, desk mandate).
    pub document_ref: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub effective_from: Timestamp,
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schema(value_type = Option<String>)]
    pub effective_until: Option<Timestamp>,
    /// 1 when recorded, one more at each change.
    pub version: u32,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub updated_at: Timestamp,
    pub ended: Option<PartyEnded>,
}

impl Party {
    pub fn in_effect(&self, at: Timestamp) -> bool {
        crate::dated::in_effect(self.effective_from, self.effective_until, at)
    }

    /// The record's own rules, for an account of `segment`.
    pub fn validate(&self, segment: Segment) -> Result<(), ValidationError> {
        if blank(&self.name) {
            return Err(ValidationError::new("name", "is required"));
        }
        check_text("name", &self.name, 200)?;
        if blank(&self.document_ref) {
            return Err(ValidationError::new("document_ref", "the document behind the record is required"));
        }
        check_text("document_ref", &self.document_ref, 200)?;
        if !self.kind.allowed_for(segment) {
            return Err(ValidationError::new(
                "kind",
                format!(
                    "{} records are kept for corporate, broker and market-maker accounts, not {segment}",
                    self.kind.as_str()
                ),
            ));
        }
        if self.effective_until.is_some_and(|u| u <= self.effective_from) {
            return Err(ValidationError::new("effective_until", "must be after effective_from"));
        }
        Ok(())
    }
}

/// Who operates a key: a party of its account, or the vendor the key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperatorKind {
    Person,
    Desk,
    System,
    Vendor,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OperatedBy {
    pub kind: OperatorKind,
    /// The party's record; none for a vendor (the key's `vendor_id` names it).
    pub party_id: Option<PartyId>,
    /// The party's name as recorded when the key was issued.
    pub name: String,
}

impl OperatedBy {
    pub fn party(p: &Party) -> Self {
        let kind = match p.kind {
            PartyKind::Desk => OperatorKind::Desk,
            PartyKind::System => OperatorKind::System,
            _ => OperatorKind::Person,
        };
        Self { kind, party_id: Some(p.party_id.clone()), name: p.name.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn party(kind: PartyKind) -> Party {
        let t = datetime!(2026-12-01 00:00 UTC);
        Party {
            party_id: PartyId::parse("p1").unwrap(),
            account_id: AccountId::parse("corp-1").unwrap(),
            kind,
            name: "Kim Minji".into(),
            document_ref: "KYB-4411".into(),
            effective_from: t,
            effective_until: None,
            version: 1,
            created_by: "alice".into(),
            created_at: t,
            updated_at: t,
            ended: None,
        }
    }

    #[test]
    fn operators_desks_and_systems_are_for_institutions_and_records_need_a_document() {
        assert!(party(PartyKind::Desk).validate(Segment::Corporate).is_ok());
        assert_eq!(party(PartyKind::Desk).validate(Segment::Retail).unwrap_err().field, "kind");
        assert!(party(PartyKind::BeneficialOwner).validate(Segment::Retail).is_ok());
        let mut no_doc = party(PartyKind::Representative);
        no_doc.document_ref = " ".into();
        assert_eq!(no_doc.validate(Segment::Retail).unwrap_err().field, "document_ref");
        // A name that shows nothing (zero-width characters) is no name.
        let mut invisible = party(PartyKind::BeneficialOwner);
        invisible.name = "\u{200B}\u{2060}".into();
        assert_eq!(invisible.validate(Segment::Retail).unwrap_err().field, "name");
        let mut backwards = party(PartyKind::Operator);
        backwards.effective_until = Some(backwards.effective_from);
        assert_eq!(backwards.validate(Segment::Broker).unwrap_err().field, "effective_until");
        assert!(!PartyKind::BeneficialOwner.operates_keys() && PartyKind::System.operates_keys());
        assert_eq!(OperatedBy::party(&party(PartyKind::System)).kind, OperatorKind::System);
    }
}
