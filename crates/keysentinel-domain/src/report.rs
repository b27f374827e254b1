//! Suspicious-matter reporting assessed on a case: the compliance officer's decision whether to
//! report a suspected lent, shared or leaked key to the financial intelligence unit, its
//! deadline, the filing, and a draft report filled from the case for the filer to complete
//! (facts in docs/response.md, "Suspicious-matter reporting").
//!
//! None of this ever reaches the key's owner: the assessment is kept apart from the case (its
//! history, the owner's notices and dispute evidence packs never mention it), because telling
//! a customer that a report was considered or filed is itself an offence in most regimes
//! ("tipping off").

use crate::account::Account;
use crate::indicator::Indicator;
use crate::key::ApiKey;
use crate::response::{Case, CaseEvent, Signoff};
use crate::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use time::{Date, Duration, Time, UtcOffset, Weekday};

pub const DRAFT_FORMAT: &str = "keysentinel-str-draft/1";

/// The financial intelligence unit a report goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Jurisdiction {
    /// Korea: KoFIU suspicious transaction report.
    #[serde(rename = "KR")]
    Kr,
    /// Australia: AUSTRAC suspicious matter report.
    #[serde(rename = "AU")]
    Au,
    /// United States: FinCEN suspicious activity report.
    #[serde(rename = "US")]
    Us,
}

impl Jurisdiction {
    pub fn form(self) -> &'static str {
        match self {
            Jurisdiction::Kr => "KoFIU suspicious transaction report (STR, 의심거래보고)",
            Jurisdiction::Au => "AUSTRAC suspicious matter report (SMR)",
            Jurisdiction::Us => "FinCEN suspicious activity report (SAR)",
        }
    }

    pub fn legal_basis(self) -> &'static str {
        match self {
            Jurisdiction::Kr => {
                "Act on Reporting and Using Specified Financial Transaction Information, Art. 4(1) \
                 (virtual asset service providers since 25 March 2021)"
            }
            Jurisdiction::Au => "Anti-Money Laundering and Counter-Terrorism Financing Act 2006, s 41",
            Jurisdiction::Us => "31 U.S.C. 5318(g); 31 CFR 1022.320",
        }
    }

    /// How the deadline runs, in words (shown with the deadline).
    pub fn deadline_rule(self) -> &'static str {
        match self {
            Jurisdiction::Kr => "3 business days from the reporting officer's determination that it is reportable",
            Jurisdiction::Au => {
                "3 business days from forming the suspicion (24 hours where it concerns terrorism financing)"
            }
            Jurisdiction::Us => "30 calendar days from initial detection",
        }
    }

    /// The office's local time, in which business days are counted. Australia's daylight time
    /// is not applied (AEST throughout), which only ever moves the deadline earlier.
    fn offset(self) -> UtcOffset {
        let hours = match self {
            Jurisdiction::Kr => 9,
            Jurisdiction::Au => 10,
            Jurisdiction::Us => -5,
        };
        UtcOffset::from_hms(hours, 0, 0).unwrap_or(UtcOffset::UTC)
    }
}

/// Who reports, and the public holidays that are not business days (ISO dates).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ReportingConfig {
    pub jurisdiction: Jurisdiction,
    /// The reporting entity's name and its identifier with the FIU; empty ones are left for
    /// the filer to complete.
    pub entity_name: String,
    pub entity_id: String,
    pub holidays: Vec<String>,
}

impl Default for ReportingConfig {
    fn default() -> Self {
        Self { jurisdiction: Jurisdiction::Kr, entity_name: String::new(), entity_id: String::new(), holidays: vec![] }
    }
}

impl ReportingConfig {
    pub fn holidays(&self) -> Result<Vec<Date>, String> {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        self.holidays
            .iter()
            .map(|h| Date::parse(h, &format).map_err(|e| format!("holiday {h:?} is not a YYYY-MM-DD date: {e}")))
            .collect()
    }
}

impl ReportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportStatus::Assessing => "assessing",
            ReportStatus::ToFile => "to_file",
            ReportStatus::NotFiling => "not_filing",
            ReportStatus::Filed => "filed",
        }
    }
}

/// The reporting deadline: business days (Monday to Friday, not a holiday) counted from the
/// day after `from` in the office's local time, ending at that day's close (23:59:59).
pub fn deadline(
    jurisdiction: Jurisdiction,
    from: Timestamp,
    terrorism_financing: bool,
    holidays: &[Date],
) -> Timestamp {
    match jurisdiction {
        Jurisdiction::Us => from + Duration::days(30),
        Jurisdiction::Au if terrorism_financing => from + Duration::hours(24),
        Jurisdiction::Kr | Jurisdiction::Au => {
            let offset = jurisdiction.offset();
            let mut day = from.to_offset(offset).date();
            let mut counted = 0;
            while counted < 3 {
                day = day.next_day().unwrap_or(day);
                let weekend = matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday);
                if !weekend && !holidays.contains(&day) {
                    counted += 1;
                }
            }
            day.with_time(Time::from_hms(23, 59, 59).unwrap_or(Time::MIDNIGHT))
                .assume_offset(offset)
                .to_offset(UtcOffset::UTC)
        }
    }
}

/// Where the assessment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportStatus {
    /// Opened; no decision yet.
    Assessing,
    /// Determined reportable: the deadline runs.
    ToFile,
    /// Determined not reportable, with reasons.
    NotFiling,
    /// Filed with the FIU.
    Filed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReportDecision {
    pub file: bool,
    pub reasons: String,
    pub terrorism_financing: bool,
    pub by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Filing {
    /// The FIU's receipt or reference number.
    pub reference: String,
    pub by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub at: Timestamp,
    /// Filed after the deadline.
    pub late: bool,
}

/// The assessment of one case, kept apart from the case itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReportAssessment {
    pub case_id: String,
    pub jurisdiction: Jurisdiction,
    pub status: ReportStatus,
    pub opened: Signoff,
    pub decision: Option<ReportDecision>,
    /// When the report is due; for the US it runs from the case's detection, elsewhere from the
    /// decision to file.
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schema(value_type = Option<String>)]
    pub deadline: Option<Timestamp>,
    pub deadline_rule: String,
    pub filing: Option<Filing>,
    pub history: Vec<CaseEvent>,
}

/// A compliance officer's step on an assessment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum ReportStep {
    /// Determine whether the matter is reportable (`file`), with the reasons either way.
    Decide {
        file: bool,
        reasons: String,
        #[serde(default)]
        terrorism_financing: bool,
    },
    /// Record the filing and the FIU's reference.
    Filed { reference: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("report assessment of case {case_id}: {message}")]
pub struct ReportError {
    pub case_id: String,
    pub message: String,
}

impl ReportAssessment {
    /// Opens the assessment of `case`.
    pub fn open(
        case: &Case,
        config: &ReportingConfig,
        by: &str,
        note: &str,
        now: Timestamp,
    ) -> Result<Self, ReportError> {
        let holidays = config.holidays().map_err(|message| ReportError { case_id: case.case_id.clone(), message })?;
        let jurisdiction = config.jurisdiction;
        let deadline =
            (jurisdiction == Jurisdiction::Us).then(|| deadline(jurisdiction, case.opened_at, false, &holidays));
        Ok(Self {
            case_id: case.case_id.clone(),
            jurisdiction,
            status: ReportStatus::Assessing,
            opened: Signoff { by: by.into(), at: now, note: note.into() },
            decision: None,
            deadline,
            deadline_rule: jurisdiction.deadline_rule().into(),
            filing: None,
            history: vec![CaseEvent { at: now, by: by.into(), what: "assess".into(), detail: note.into() }],
        })
    }

    fn refuse<T>(&self, message: &str) -> Result<T, ReportError> {
        Err(ReportError { case_id: self.case_id.clone(), message: message.into() })
    }

    /// Applies a step. A decision is taken once; only a decision to file can be filed.
    pub fn step(&mut self, step: &ReportStep, holidays: &[Date], by: &str, now: Timestamp) -> Result<(), ReportError> {
        let detail = match step {
            ReportStep::Decide { file, reasons, terrorism_financing } => {
                if self.status != ReportStatus::Assessing {
                    return self.refuse("is already decided");
                }
                if *terrorism_financing && !file {
                    return self.refuse("a matter of terrorism financing is reported: decide to file");
                }
                self.decision = Some(ReportDecision {
                    file: *file,
                    reasons: reasons.clone(),
                    terrorism_financing: *terrorism_financing,
                    by: by.into(),
                    at: now,
                });
                if *file {
                    self.status = ReportStatus::ToFile;
                    if self.jurisdiction != Jurisdiction::Us {
                        self.deadline = Some(deadline(self.jurisdiction, now, *terrorism_financing, holidays));
                    }
                } else {
                    self.status = ReportStatus::NotFiling;
                    self.deadline = None;
                }
                format!("{}: {reasons}", if *file { "reportable" } else { "not reportable" })
            }
            ReportStep::Filed { reference } => {
                if self.status != ReportStatus::ToFile {
                    return self.refuse("is not decided for filing");
                }
                let late = self.deadline.is_some_and(|d| now > d);
                self.filing = Some(Filing { reference: reference.clone(), by: by.into(), at: now, late });
                self.status = ReportStatus::Filed;
                format!("filed, reference {reference}{}", if late { " (after the deadline)" } else { "" })
            }
        };
        let what = match step {
            ReportStep::Decide { .. } => "decide",
            ReportStep::Filed { .. } => "filed",
        };
        self.history.push(CaseEvent { at: now, by: by.into(), what: what.into(), detail });
        Ok(())
    }
}

/// The draft report: every field the case can fill, and the list of those it cannot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReportDraft {
    pub format: String,
    pub form: String,
    pub jurisdiction: Jurisdiction,
    pub legal_basis: String,
    pub reporting_entity: ReportingEntity,
    pub subject: Subject,
    /// The people seen using the key who are not (known to be) its owner.
    pub unidentified_parties: UnidentifiedParties,
    /// Plain-language grounds for suspicion.
    pub grounds: String,
    pub indicators: Vec<DraftIndicator>,
    /// Reason codes of the form that fit the case.
    pub reason_codes: Vec<String>,
    pub dates: DraftDates,
    /// What the exchange did to the key, from the case.
    pub actions_taken: Vec<String>,
    pub transactions: String,
    pub decision: Option<ReportDecision>,
    /// Fields the filer must complete from records keysentinel does not hold.
    pub to_complete: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReportingEntity {
    pub name: Option<String>,
    pub id: Option<String>,
    /// The exchange's own reference for the matter: the case id.
    pub internal_reference: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Subject {
    pub account_id: String,
    pub is_customer: bool,
    pub segment: String,
    pub identity_verification: Option<String>,
    pub declared_purpose: Option<String>,
    pub declared_countries: Vec<String>,
    pub api_key: String,
    pub api_key_scopes: Vec<String>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schema(value_type = Option<String>)]
    pub api_key_created_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UnidentifiedParties {
    pub description: String,
    /// Device identifiers of type IP address, as the forms ask for them.
    pub ip_addresses: Vec<String>,
    /// Networks (ASNs) the key was used from during the suspicion.
    pub networks: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DraftIndicator {
    pub indicator: crate::Indicator,
    pub count: u32,
    pub evidence: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub seen_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DraftDates {
    /// The first detection on the key: when the suspected sharing was first seen.
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schema(value_type = Option<String>)]
    pub onset: Option<Timestamp>,
    /// The case opened (initial detection).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub detected: Timestamp,
    /// The decision that the matter is reportable (the suspicion formed).
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schema(value_type = Option<String>)]
    pub determined: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schema(value_type = Option<String>)]
    pub deadline: Option<Timestamp>,
}

/// Addresses and networks the findings observed, for the form's typed device identifiers.
fn sightings(case: &Case) -> (Vec<String>, Vec<String>) {
    let mut ips = BTreeSet::new();
    let mut asns = BTreeSet::new();
    for o in case.suspicions.iter().flat_map(|s| &s.findings).flat_map(|f| &f.observed) {
        ips.insert(o.ip.to_string());
        if let Some(asn) = o.asn {
            asns.insert(format!("AS{asn}"));
        }
    }
    (ips.into_iter().collect(), asns.into_iter().collect())
}

fn reason_codes(jurisdiction: Jurisdiction, indicators: &BTreeSet<Indicator>) -> Vec<String> {
    use Indicator::*;
    let any = |these: &[Indicator]| these.iter().any(|i| indicators.contains(i));
    // Whose hands the secret is in (a probed, leaked or outside-the-allowlist secret) against
    // whom the access is organised by (rings, reports).
    let takeover = [ProbedThenUsed, BadSignatureBurst, OutsideAllowlist, NewWithdrawalAddress];
    let organised = [LinkedAccounts, CoordinatedOrders, Complaint, VendorIntel];
    let codes: Vec<&str> = match jurisdiction {
        Jurisdiction::Kr => vec!["차명거래 의심 (suspected borrowed-name use of the account's API access)"],
        Jurisdiction::Au => {
            let mut c = vec!["Unusual account activity", "Inconsistent with customer profile"];
            if any(&takeover) {
                c.push("Unauthorised account transactions");
                c.push("Internet fraud");
            }
            if any(&organised) {
                c.push("Suspicious behaviour");
            }
            c
        }
        Jurisdiction::Us => {
            let mut c = vec!["Other suspicious activities: suspected use of an account's access by a third party"];
            if any(&takeover) {
                c.push("Cyber event: account takeover");
            }
            c
        }
    };
    codes.into_iter().map(String::from).collect()
}

impl ReportDraft {
    /// Fills the draft from the case, the account and key as the registry holds them, and the
    /// assessment.
    pub fn build(
        case: &Case,
        account: Option<&Account>,
        key: Option<&ApiKey>,
        assessment: &ReportAssessment,
        config: &ReportingConfig,
    ) -> Self {
        let j = assessment.jurisdiction;
        let mut indicators: Vec<DraftIndicator> = Vec::new();
        for s in &case.suspicions {
            for f in &s.findings {
                match indicators.iter_mut().find(|d| d.indicator == f.indicator) {
                    Some(d) => {
                        d.count = d.count.max(f.count);
                        d.evidence.clone_from(&f.evidence);
                    }
                    None => indicators.push(DraftIndicator {
                        indicator: f.indicator,
                        count: f.count,
                        evidence: f.evidence.clone(),
                        seen_at: s.at,
                    }),
                }
            }
        }
        let names: BTreeSet<Indicator> = indicators.iter().map(|d| d.indicator).collect();
        let (ip_addresses, networks) = sightings(case);
        let onset = case.suspicions.iter().map(|s| s.at).min();
        let last = case.suspicions.iter().map(|s| s.at).max();
        let rfc = |t: Option<Timestamp>| {
            t.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()).unwrap_or_else(|| "-".into())
        };
        let mut grounds = format!(
            "Between {} and {}, API key {} of customer account {} ({} segment{}) was used in a way that indicates \
             use by someone other than the verified customer:",
            rfc(onset),
            rfc(last),
            case.key_id,
            case.account_id,
            case.segment.as_str(),
            account
                .filter(|a| !a.declared_countries.is_empty())
                .map(|a| format!(
                    ", declared countries {}",
                    a.declared_countries.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
                ))
                .unwrap_or_default()
        );
        for d in &indicators {
            grounds.push_str(&format!(
                "\n- {} ({}; seen {}×): {}.",
                d.indicator.meaning(),
                d.indicator,
                d.count,
                d.evidence
            ));
        }
        grounds.push_str(&format!(
            "\nThe detection reached the stage \"{}\" (risk {:.2}) under response policy {}. Case {} records every \
             detection and action; the exchange's audit log holds their entries.",
            case.stage.as_str(),
            case.risk,
            case.policy_version,
            case.case_id
        ));
        let actions_taken = case
            .history
            .iter()
            .filter(|e| !matches!(e.what.as_str(), "note" | "assign"))
            .map(|e| format!("{} {} by {}: {}", rfc(Some(e.at)), e.what, e.by, e.detail))
            .collect();
        let mut to_complete = vec![
            "subject: full name, date of birth, address and identity documents (from KYC records)".to_owned(),
            "subject: beneficial owners, where the customer is not a natural person".to_owned(),
            format!(
                "transactions: orders, trades and withdrawals made with key {} since {} (from the exchange's ledger), \
                 with amounts, assets, wallet addresses and transaction ids",
                case.key_id,
                rfc(onset)
            ),
            "preparer and a second contact for the report".to_owned(),
        ];
        if config.entity_name.is_empty() || config.entity_id.is_empty() {
            to_complete.push("reporting entity: name and FIU identifier (not configured)".into());
        }
        if j == Jurisdiction::Au {
            to_complete.push("total amount in AUD, and earlier related reports or other agencies told".into());
        }
        let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        ReportDraft {
            format: DRAFT_FORMAT.into(),
            form: j.form().into(),
            jurisdiction: j,
            legal_basis: j.legal_basis().into(),
            reporting_entity: ReportingEntity {
                name: nonempty(&config.entity_name),
                id: nonempty(&config.entity_id),
                internal_reference: case.case_id.clone(),
            },
            subject: Subject {
                account_id: case.account_id.to_string(),
                is_customer: true,
                segment: case.segment.as_str().into(),
                identity_verification: account.map(|a| a.verification.as_str().into()),
                declared_purpose: account.map(|a| a.declared_purpose.clone()),
                declared_countries: account
                    .map(|a| a.declared_countries.iter().map(|c| c.as_str().to_owned()).collect())
                    .unwrap_or_default(),
                api_key: case.key_id.to_string(),
                api_key_scopes: key.map(|k| k.scopes.iter().map(|s| s.to_string()).collect()).unwrap_or_default(),
                api_key_created_at: key.map(|k| k.created_at),
            },
            unidentified_parties: UnidentifiedParties {
                description: format!(
                    "Person or persons other than the customer, unidentified, using API key {} from the addresses and \
                     networks listed.",
                    case.key_id
                ),
                ip_addresses,
                networks,
            },
            grounds,
            reason_codes: reason_codes(j, &names),
            indicators,
            dates: DraftDates {
                onset,
                detected: case.opened_at,
                determined: assessment.decision.as_ref().filter(|d| d.file).map(|d| d.at),
                deadline: assessment.deadline,
            },
            actions_taken,
            transactions: format!(
                "To complete from the ledger: activity of key {} from {} to the date of the report.",
                case.key_id,
                rfc(onset)
            ),
            decision: assessment.decision.clone(),
            to_complete,
        }
    }

    /// The draft as plain text, in the order of the form's parts, for a filer working in the
    /// FIU's own system (KoFIU publishes no file format to import).
    pub fn to_text(&self) -> String {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "[to complete]".into());
        let ts = |t: Option<Timestamp>| {
            t.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
                .unwrap_or_else(|| "[not yet]".into())
        };
        let mut out = format!(
            "DRAFT — {}\nLegal basis: {}\nPrepared by keysentinel ({}); to be completed, reviewed and filed by the \
             compliance officer.\n\n",
            self.form, self.legal_basis, self.format
        );
        out.push_str(&format!(
            "1. Reporting entity\n   Name: {}\n   Identifier: {}\n   Internal reference: {}\n\n",
            opt(&self.reporting_entity.name),
            opt(&self.reporting_entity.id),
            self.reporting_entity.internal_reference
        ));
        let s = &self.subject;
        out.push_str(&format!(
            "2. Customer (subject)\n   Account: {} (a customer: {})\n   Segment: {}\n   Identity verification: {}\n   \
             Declared purpose: {}\n   Declared countries: {}\n   API key: {} (scopes {}; created {})\n\n",
            s.account_id,
            if s.is_customer { "yes" } else { "no" },
            s.segment,
            opt(&s.identity_verification),
            opt(&s.declared_purpose),
            if s.declared_countries.is_empty() { "-".into() } else { s.declared_countries.join(", ") },
            s.api_key,
            if s.api_key_scopes.is_empty() { "-".into() } else { s.api_key_scopes.join(", ") },
            ts(s.api_key_created_at)
        ));
        let u = &self.unidentified_parties;
        out.push_str(&format!(
            "3. Other and unidentified parties\n   {}\n   IP addresses: {}\n   Networks: {}\n\n",
            u.description,
            if u.ip_addresses.is_empty() { "-".into() } else { u.ip_addresses.join(", ") },
            if u.networks.is_empty() { "-".into() } else { u.networks.join(", ") }
        ));
        out.push_str(&format!(
            "4. Grounds for suspicion\n{}\n   Reason codes: {}\n\n",
            self.grounds,
            self.reason_codes.join("; ")
        ));
        out.push_str(&format!("5. Transactions\n   {}\n\n", self.transactions));
        out.push_str("6. Actions taken\n");
        for a in &self.actions_taken {
            out.push_str(&format!("   - {a}\n"));
        }
        out.push_str(&format!(
            "\n7. Dates\n   Onset: {}\n   Detected: {}\n   Determined reportable: {}\n   Deadline: {}\n\n",
            ts(self.dates.onset),
            ts(Some(self.dates.detected)),
            ts(self.dates.determined),
            ts(self.dates.deadline)
        ));
        out.push_str("8. To complete before filing\n");
        for t in &self.to_complete {
            out.push_str(&format!("   - {t}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::{sample_case, Finding, Observation, Suspicion};
    use crate::Stage;
    use time::macros::datetime;

    #[test]
    fn deadlines_count_business_days_in_the_offices_time() {
        // Friday 10:00 in Seoul: Monday, Tuesday, Wednesday; due Wednesday 23:59:59 KST.
        let friday = datetime!(2026-11-27 01:00 UTC);
        assert_eq!(deadline(Jurisdiction::Kr, friday, false, &[]), datetime!(2026-12-02 14:59:59 UTC));
        // A holiday on the Tuesday moves it to Thursday.
        let holiday = [time::macros::date!(2026 - 12 - 01)];
        assert_eq!(deadline(Jurisdiction::Kr, friday, false, &holiday), datetime!(2026-12-03 14:59:59 UTC));
        // Friday 20:00 UTC is already Saturday in Sydney: Monday to Wednesday.
        let late_friday = datetime!(2026-11-27 20:00 UTC);
        assert_eq!(deadline(Jurisdiction::Au, late_friday, false, &[]), datetime!(2026-12-02 13:59:59 UTC));
        assert_eq!(deadline(Jurisdiction::Au, late_friday, true, &[]), datetime!(2026-11-28 20:00 UTC));
        assert_eq!(deadline(Jurisdiction::Us, friday, false, &[]), datetime!(2026-12-27 01:00 UTC));
    }

    #[test]
    fn a_decision_is_taken_once_and_only_a_decision_to_file_is_filed() {
        let now = datetime!(2026-11-27 01:00 UTC);
        let case = sample_case(now);
        let config = ReportingConfig::default();
        let mut a = ReportAssessment::open(&case, &config, "op:mlro", "looks like a lent key", now).unwrap();
        assert_eq!((a.status, a.deadline), (ReportStatus::Assessing, None), "KoFIU's clock starts at determination");
        let filed = ReportStep::Filed { reference: "STR-1".into() };
        assert!(a.step(&filed, &[], "op:mlro", now).is_err(), "nothing to file before a decision");
        let decide = ReportStep::Decide { file: true, reasons: "borrowed-name use".into(), terrorism_financing: false };
        a.step(&decide, &[], "op:mlro", now).unwrap();
        assert_eq!(a.deadline, Some(datetime!(2026-12-02 14:59:59 UTC)));
        assert!(a.step(&decide, &[], "op:mlro", now).is_err(), "decided once");
        a.step(&filed, &[], "op:mlro", datetime!(2026-12-03 00:00 UTC)).unwrap();
        let filing = a.filing.clone().unwrap();
        assert!(filing.late, "filed after Wednesday's close");
        assert_eq!(a.status, ReportStatus::Filed);
        assert_eq!(a.history.len(), 3);

        let us = ReportingConfig { jurisdiction: Jurisdiction::Us, ..ReportingConfig::default() };
        let b = ReportAssessment::open(&case, &us, "op:mlro", "", now).unwrap();
        assert_eq!(b.deadline, Some(datetime!(2026-12-27 01:00 UTC)), "FinCEN's runs from detection");
        let mut c = ReportAssessment::open(&case, &config, "op:mlro", "", now).unwrap();
        let tf = ReportStep::Decide { file: false, reasons: "x".into(), terrorism_financing: true };
        assert!(c.step(&tf, &[], "op:mlro", now).is_err());
    }

    #[test]
    fn the_draft_is_filled_from_the_case_and_lists_what_it_cannot_fill() {
        let now = datetime!(2026-11-27 01:00 UTC);
        let mut case = sample_case(now);
        case.suspicions.push(Suspicion {
            at: now,
            key_id: case.key_id.clone(),
            stage: Stage::Reverify,
            risk: 0.8,
            findings: vec![
                Finding {
                    indicator: Indicator::ImpossibleTravel,
                    count: 1,
                    evidence: "KR → VN: 2700 km in 5 min (32400 km/h)".into(),
                    observed: vec![],
                },
                Finding {
                    indicator: Indicator::BadSignatureBurst,
                    count: 1,
                    evidence: "12 bad signatures in 5 min, latest from 203.0.113.9 (US AS16509 Amazon.com)".into(),
                    // The typed identifiers come from what the finding observed, not its prose.
                    observed: vec![Observation {
                        ip: "203.0.113.9".parse().unwrap(),
                        asn: Some(16509),
                        country: Some("US".into()),
                        client: Some("python-requests".into()),
                        device: None,
                    }],
                },
            ],
            compromise: false,
            detector: "test".into(),
            related_accounts: vec![],
            baseline: None,
        });
        let config = ReportingConfig { jurisdiction: Jurisdiction::Au, ..ReportingConfig::default() };
        let a = ReportAssessment::open(&case, &config, "op:mlro", "", now).unwrap();
        let d = ReportDraft::build(&case, None, None, &a, &config);
        assert_eq!(d.unidentified_parties.ip_addresses, vec!["203.0.113.9"]);
        assert_eq!(d.unidentified_parties.networks, vec!["AS16509"]);
        assert!(d.grounds.contains("faster than anyone can travel"), "{}", d.grounds);
        assert!(d.reason_codes.iter().any(|c| c == "Unauthorised account transactions"));
        assert!(d.to_complete.iter().any(|t| t.starts_with("reporting entity")), "no entity configured");
        assert!(d.to_complete.iter().any(|t| t.contains("AUD")));
        assert_eq!(d.dates.onset, Some(now));
        let text = d.to_text();
        assert!(text.contains("AUSTRAC") && text.contains("[to complete]") && text.contains("203.0.113.9"));
    }
}
