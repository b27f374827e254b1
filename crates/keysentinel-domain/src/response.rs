//! The response to suspected sharing: a versioned policy that maps a detection's stage and the
//! account's segment to what happens to the key, and the case that records it.
//!
//! The four stages are the DAXA standard's: intensive monitoring, a warning notice, identity
//! re-verification (the key is suspended until the owner re-verifies) and forced expiry (the
//! key is revoked and never comes back). The policy says, per segment class, which action each
//! stage takes and whether it is taken automatically or queued for an analyst. A policy in
//! shadow mode records what it would have done and changes no key. See `docs/response.md`.

use crate::account::Segment;
use crate::ids::{AccessKey, AccountId};
use crate::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The stages of the standard, in increasing severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Monitor,
    Warn,
    Reverify,
    Invalidate,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Stage::Monitor, Stage::Warn, Stage::Reverify, Stage::Invalidate];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Monitor => "monitor",
            Stage::Warn => "warn",
            Stage::Reverify => "reverify",
            Stage::Invalidate => "invalidate",
        }
    }

    pub fn parse(s: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is done to the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Watch closely; the key keeps working.
    Monitor,
    /// Tell the owner; the key keeps working.
    Notify,
    /// Containment: drop the key's withdraw and transfer rights (its sensitive grants), tell
    /// the owner; it keeps reading and trading. Funds cannot leave through it meanwhile.
    Contain,
    /// Containment: as `contain`, and trading too is dropped; the key can only read.
    ReadOnly,
    /// Suspend the key until the owner re-verifies their identity.
    Suspend,
    /// Revoke the key: forced expiry, never reactivated.
    Revoke,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Monitor => "monitor",
            Action::Notify => "notify",
            Action::Contain => "contain",
            Action::ReadOnly => "read_only",
            Action::Suspend => "suspend",
            Action::Revoke => "revoke",
        }
    }

    /// Whether the action changes whether the key verifies.
    pub fn stops_the_key(self) -> bool {
        matches!(self, Action::Suspend | Action::Revoke)
    }

    /// Whether the action changes the key (its status or its rights).
    pub fn changes_the_key(self) -> bool {
        !matches!(self, Action::Monitor | Action::Notify)
    }
}

/// One stage's response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StageRule {
    pub action: Action,
    /// Taken at once; otherwise the case waits for an analyst's decision.
    pub automatic: bool,
    /// Hours within which an analyst must act on the case.
    pub sla_hours: u32,
}

/// The four stages' responses for one class of accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StageRules {
    pub monitor: StageRule,
    pub warn: StageRule,
    pub reverify: StageRule,
    pub invalidate: StageRule,
    /// The least time (hours) between a case's warning and a heavier stage when the evidence
    /// is not of compromise (`Suspicion::compromise`), so that the owner can answer the notice:
    /// a heavier detection within it is held at `warn` and applied when it ends (queued for an
    /// analyst if the owner answered). 0: no window.
    #[serde(default)]
    pub answer_window_hours: u32,
}

impl StageRules {
    pub fn get(&self, stage: Stage) -> StageRule {
        match stage {
            Stage::Monitor => self.monitor,
            Stage::Warn => self.warn,
            Stage::Reverify => self.reverify,
            Stage::Invalidate => self.invalidate,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Actions are taken.
    Enforce,
    /// Cases are recorded with what would have been done; no key changes.
    Shadow,
}

/// The response policy (TOML). Retail rules apply to retail accounts; institutional rules to
/// market makers, brokers and corporates, whose keys serve a mandate and whose forced expiry
/// should be a human decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResponsePolicy {
    /// Recorded with every case and every action taken under this policy.
    pub version: String,
    pub mode: Mode,
    pub retail: StageRules,
    pub institutional: StageRules,
    /// Indicators that take a key to at least a stage whatever its risk.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalate: Vec<Escalation>,
    /// Who reports suspicious matters, to which FIU, and its business calendar.
    #[serde(default)]
    pub reporting: crate::report::ReportingConfig,
    /// What a vendor's lapse or suspension does to the keys that name it.
    #[serde(default)]
    pub vendors: VendorRules,
}

/// What happens to a vendor's keys when the vendor stops being approved: `contain`,
/// `read_only` or `suspend` (vendor keys never hold withdraw or transfer, so `contain` takes
/// nothing from them: it only tells the owners).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VendorRules {
    /// Its recertification date passed.
    pub on_lapse: Action,
    /// An operator suspended it.
    pub on_suspend: Action,
}

impl Default for VendorRules {
    fn default() -> Self {
        // A lapse is paperwork overdue: the tool may still read, not trade. A suspension is a
        // decision that the tool must stop.
        Self { on_lapse: Action::ReadOnly, on_suspend: Action::Suspend }
    }
}

/// A rule of the policy's indicator dimension: a detection with any of `indicators` is treated
/// as at least `at_least` (a leaked secret probed from the cloud is not a matter of degree).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Escalation {
    /// Named as the engine names them; an unknown name is refused when the policy is read.
    pub indicators: Vec<crate::Indicator>,
    pub at_least: Stage,
}

#[derive(Debug, thiserror::Error)]
#[error("response policy: {0}")]
pub struct ResponsePolicyError(String);

/// The longest SLA or answer window a response policy may set: a year.
pub const MAX_POLICY_HOURS: u32 = 24 * 366;

impl ResponsePolicy {
    pub fn from_toml(text: &str) -> Result<Self, ResponsePolicyError> {
        let policy: Self = toml::from_str(text).map_err(|e| ResponsePolicyError(e.to_string()))?;
        policy.validate()?;
        Ok(policy)
    }

    /// Severity never goes down as the stage goes up, and every SLA is at least an hour: a
    /// policy that suspended at `warn` but only notified at `invalidate` is a typo, not a choice.
    pub fn validate(&self) -> Result<(), ResponsePolicyError> {
        if self.version.trim().is_empty() {
            return Err(ResponsePolicyError("version must not be empty".into()));
        }
        self.reporting.holidays().map_err(|e| ResponsePolicyError(format!("[reporting] {e}")))?;
        for (name, action) in [("on_lapse", self.vendors.on_lapse), ("on_suspend", self.vendors.on_suspend)] {
            if !matches!(action, Action::Contain | Action::ReadOnly | Action::Suspend) {
                return Err(ResponsePolicyError(format!(
                    "[vendors] {name} must be contain, read_only or suspend (not {})",
                    action.as_str()
                )));
            }
        }
        if self.escalate.iter().any(|e| e.indicators.is_empty()) {
            return Err(ResponsePolicyError("[[escalate]] needs at least one indicator".into()));
        }
        for (class, rules) in [("retail", &self.retail), ("institutional", &self.institutional)] {
            // Bounded so that adding them to a time can never overflow (a panic on the writer).
            if rules.answer_window_hours > MAX_POLICY_HOURS {
                return Err(ResponsePolicyError(format!(
                    "[{class}] answer_window_hours must be at most {MAX_POLICY_HOURS}"
                )));
            }
            let mut previous = Action::Monitor;
            for stage in Stage::ALL {
                let rule = rules.get(stage);
                if rule.action < previous {
                    return Err(ResponsePolicyError(format!(
                        "[{class}.{stage}] action {} is milder than a lower stage's {}",
                        rule.action.as_str(),
                        previous.as_str()
                    )));
                }
                if rule.sla_hours == 0 || rule.sla_hours > MAX_POLICY_HOURS {
                    return Err(ResponsePolicyError(format!(
                        "[{class}.{stage}] sla_hours must be 1 to {MAX_POLICY_HOURS}"
                    )));
                }
                previous = rule.action;
            }
        }
        Ok(())
    }

    /// The stage a detection is treated as: its own, or higher where an escalation rule names
    /// one of its indicators; with the rule that raised it.
    pub fn stage_for<'a>(&'a self, stage: Stage, indicators: &[crate::Indicator]) -> (Stage, Option<&'a Escalation>) {
        let rule = self
            .escalate
            .iter()
            .filter(|e| e.at_least > stage && e.indicators.iter().any(|i| indicators.contains(i)))
            .max_by_key(|e| e.at_least);
        (rule.map_or(stage, |e| e.at_least), rule)
    }

    pub fn rule(&self, segment: Segment, stage: Stage) -> StageRule {
        self.rules(segment).get(stage)
    }

    fn rules(&self, segment: Segment) -> &StageRules {
        match segment {
            Segment::Retail => &self.retail,
            Segment::Corporate | Segment::Broker | Segment::MarketMaker => &self.institutional,
        }
    }

    /// The least time between a case's warning and a heavier stage on evidence that is not of
    /// compromise.
    pub fn answer_window(&self, segment: Segment) -> time::Duration {
        time::Duration::hours(i64::from(self.rules(segment).answer_window_hours))
    }
}

impl Default for ResponsePolicy {
    fn default() -> Self {
        let rule = |action, automatic, sla_hours| StageRule { action, automatic, sla_hours };
        Self {
            version: "builtin-2026-11".into(),
            mode: Mode::Enforce,
            retail: StageRules {
                monitor: rule(Action::Monitor, true, 168),
                warn: rule(Action::Notify, true, 72),
                reverify: rule(Action::Suspend, true, 24),
                invalidate: rule(Action::Revoke, true, 4),
                answer_window_hours: 24,
            },
            institutional: StageRules {
                monitor: rule(Action::Monitor, true, 168),
                warn: rule(Action::Notify, true, 48),
                reverify: rule(Action::Suspend, false, 8),
                invalidate: rule(Action::Revoke, false, 4),
                answer_window_hours: 24,
            },
            escalate: Vec::new(),
            reporting: crate::report::ReportingConfig::default(),
            vendors: VendorRules::default(),
        }
    }
}

/// Where a case is in its workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    /// Opened; the policy's actions so far are taken (or were shadowed).
    Open,
    /// The policy wants an action that is not automatic: an analyst must decide.
    AwaitingDecision,
    /// Closed with a resolution.
    Closed,
}

impl CaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CaseStatus::Open => "open",
            CaseStatus::AwaitingDecision => "awaiting_decision",
            CaseStatus::Closed => "closed",
        }
    }
}

/// One indicator behind a detection, with what it saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Finding {
    pub indicator: crate::Indicator,
    pub count: u32,
    pub evidence: String,
    /// What the requests that fired it showed, as data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observed: Vec<Observation>,
}

/// One request behind a finding: its address, network, country, client and device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Observation {
    #[schema(value_type = String)]
    pub ip: std::net::IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    /// ISO 3166-1 alpha-2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// The client family (the user agent's product).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

/// A detection as the response sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Suspicion {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub at: Timestamp,
    #[schema(value_type = String)]
    pub key_id: AccessKey,
    pub stage: Stage,
    pub risk: f32,
    pub findings: Vec<Finding>,
    /// Evidence of compromise (a probed secret then used, intelligence naming the key, a
    /// withdrawal to a new address from a new network): not held for the owner's answer.
    #[serde(default)]
    pub compromise: bool,
    /// The detection settings' identity (engine version and thresholds), for the record.
    pub detector: String,
    /// Accounts linked to the key's through shared addresses or devices, documented
    /// relationships or coinciding orders, as detection saw them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related_accounts: Vec<RelatedAccount>,
    /// The key's own history when detected: what the evidence departs from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<KeyBaseline>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyBaseline {
    /// Requests the key had made.
    pub requests: u32,
    /// Its first request.
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schema(value_type = Option<String>)]
    pub since: Option<Timestamp>,
    /// Its most used networks ("AS4766") and countries ("KR"), each with its share of requests.
    pub networks: Vec<Share>,
    pub countries: Vec<Share>,
    /// Client families (user-agent products) it had used.
    pub clients: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Share {
    pub value: String,
    pub share: f32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RelatedAccount {
    pub account_id: String,
    /// How it is linked ("shared address 203.0.113.7", "documented relationship (affiliate)").
    pub via: String,
}

/// Something that happened in a case, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CaseEvent {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub at: Timestamp,
    pub by: String,
    /// `opened`, `escalated`, `action_taken`, `action_shadowed`, `action_queued`, ...
    pub what: String,
    pub detail: String,
}

/// A case: one key's suspected sharing, from the first `warn` on, with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Case {
    pub case_id: String,
    #[schema(value_type = String)]
    pub key_id: AccessKey,
    #[schema(value_type = String)]
    pub account_id: AccountId,
    pub segment: Segment,
    pub status: CaseStatus,
    /// The highest stage reached.
    pub stage: Stage,
    pub risk: f32,
    /// The response policy in force when the case last moved.
    pub policy_version: String,
    /// Whether the policy was enforcing (false: shadow mode, nothing was done to the key).
    pub enforced: bool,
    /// The action the policy wants and an analyst has yet to decide, if any.
    pub pending_action: Option<Action>,
    /// Every detection that moved the case, first to last: the evidence snapshot.
    pub suspicions: Vec<Suspicion>,
    pub history: Vec<CaseEvent>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub opened_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub updated_at: Timestamp,
    /// When an analyst must have acted (the SLA of the highest stage reached).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub due_at: Timestamp,
    /// The operator working the case.
    #[serde(default)]
    pub assignee: Option<String>,
    /// Why the case was closed.
    #[serde(default)]
    pub resolution: Option<Resolution>,
    /// The owner's way back, once they ask for it.
    #[serde(default)]
    pub reinstatement: Option<Reinstatement>,
    /// A legal hold on the key's logs: who placed it, when, why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_hold: Option<Signoff>,
    /// A heavier stage detected within the answer window, held at `warn` until it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Held>,
    /// The owner's answers to the case's notices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<OwnerAnswer>,
}

/// A stage held back for the owner's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Held {
    pub stage: Stage,
    /// When the answer window ends and the stage is applied.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub until: Timestamp,
    pub risk: f32,
}

/// Through which channel the owner answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnswerChannel {
    App,
    Web,
    Email,
    Phone,
    Branch,
}

impl AnswerChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerChannel::App => "app",
            AnswerChannel::Web => "web",
            AnswerChannel::Email => "email",
            AnswerChannel::Phone => "phone",
            AnswerChannel::Branch => "branch",
        }
    }
}

/// The owner's answer to a notice ("it is me, travelling"), as filed by the exchange's
/// customer channel or support.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OwnerAnswer {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub at: Timestamp,
    /// The operator (or customer-channel integration) that filed it.
    pub filed_by: String,
    pub channel: AnswerChannel,
    pub text: String,
    /// The owner says the access the case names was theirs: detection takes its addresses,
    /// networks, countries, clients and devices as the owner's.
    pub confirms: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReinstatementStatus {
    /// Filed with the owner's explanation; waits for an analyst's review.
    Requested,
    /// Reviewed and recommended; waits for two approvers.
    Reviewed,
    Rejected,
    /// Approved twice; the new key is issued.
    Issued,
}

/// One person's recorded step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Signoff {
    pub by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub at: Timestamp,
    pub note: String,
}

/// The owner's request to get API access back after re-verifying: reviewed by an analyst, then
/// approved by two approvers, none of them the one who filed it; then a new key is issued with
/// the same or tighter grants. The stopped key never comes back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reinstatement {
    pub status: ReinstatementStatus,
    pub requested: Signoff,
    /// The owner's explanation of the use that was detected.
    pub explanation: String,
    /// References to what the owner supplied (documents, tickets), kept with the case.
    pub evidence: Vec<String>,
    /// Scopes for the new key: a subset of the old key's, never withdraw or transfer (those are
    /// asked for afresh through the grant workflow).
    pub scopes: Vec<crate::Scope>,
    /// The new key's allowlist: required.
    pub ip_allowlist: Vec<String>,
    /// For Ed25519 keys: the owner's new public key.
    pub public_key: Option<String>,
    pub review: Option<Signoff>,
    pub approvals: Vec<Signoff>,
    #[schema(value_type = Option<String>)]
    pub new_key: Option<AccessKey>,
}

/// Approvals a reinstatement needs.
pub const REINSTATEMENT_APPROVALS: usize = 2;

/// How a case ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// The key was shared; the actions stand.
    ConfirmedSharing,
    /// Not sharing (travel, a new device, an approved vendor...): recorded to tune detection.
    FalsePositive,
    /// The owner re-verified their identity and explained the use.
    OwnerReverified,
}

/// An analyst's step on a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum CaseCommand {
    /// Take the action the policy queued.
    Approve,
    /// Decline the queued action; the case stays open.
    Dismiss,
    Assign {
        operator_id: String,
    },
    Note {
        text: String,
    },
    Close {
        resolution: Resolution,
    },
    /// The owner disputes the decision (also on a closed case); answered with an evidence pack.
    Dispute {
        text: String,
    },
    /// The playbook's review of the accounts linked to the key's (`GET …/related`): which were
    /// looked at and what was found.
    ReviewRelated {
        text: String,
    },
    /// The playbook's decision on restrictions: take `action` (contain, read_only, suspend or
    /// revoke) on the key now, in the case's name.
    Restrict {
        action: Action,
    },
    /// The playbook's decision on enhanced due diligence of the customer: what is asked of them
    /// or why none is needed.
    DueDiligence {
        text: String,
    },
    /// Preserve the key's logs: event-file retention keeps its events while the hold stands
    /// (also on a closed case: holds often come after).
    Hold {
        text: String,
    },
    /// Lift the hold.
    ReleaseHold {
        text: String,
    },
}

impl CaseCommand {
    pub fn name(&self) -> &'static str {
        match self {
            CaseCommand::Approve => "approve",
            CaseCommand::Dismiss => "dismiss",
            CaseCommand::Assign { .. } => "assign",
            CaseCommand::Note { .. } => "note",
            CaseCommand::Close { .. } => "close",
            CaseCommand::Dispute { .. } => "dispute",
            CaseCommand::ReviewRelated { .. } => "review_related",
            CaseCommand::Restrict { .. } => "restrict",
            CaseCommand::DueDiligence { .. } => "due_diligence",
            CaseCommand::Hold { .. } => "hold",
            CaseCommand::ReleaseHold { .. } => "release_hold",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("case {case_id}: {message}")]
pub struct CaseError {
    pub case_id: String,
    pub message: String,
}

impl Case {
    /// A new case on a key, open at `monitor` until the caller records what opened it.
    pub fn open(case_id: String, key_id: AccessKey, account_id: AccountId, segment: Segment, now: Timestamp) -> Self {
        Case {
            case_id,
            key_id,
            account_id,
            segment,
            status: CaseStatus::Open,
            stage: Stage::Monitor,
            risk: 0.0,
            policy_version: String::new(),
            enforced: false,
            pending_action: None,
            suspicions: Vec::new(),
            history: Vec::new(),
            opened_at: now,
            updated_at: now,
            due_at: now,
            assignee: None,
            resolution: None,
            reinstatement: None,
            legal_hold: None,
            held: None,
            answers: Vec::new(),
        }
    }

    /// The stage a detection at `stage` moves the case to now, holding a heavier stage than
    /// `warn` on evidence other than compromise until the owner has had `window` to answer the
    /// case's warning (the case opened with it); what is held is kept in `held`.
    pub fn gate(&mut self, stage: Stage, risk: f32, compromise: bool, window: time::Duration, now: Timestamp) -> Stage {
        let until = self.opened_at + window;
        if stage <= Stage::Warn || stage <= self.stage || compromise || now >= until {
            if self.held.as_ref().is_some_and(|h| h.stage <= stage.max(self.stage)) {
                self.held = None;
            }
            return stage;
        }
        let held = self.held.get_or_insert(Held { stage, until, risk });
        held.stage = held.stage.max(stage);
        held.risk = held.risk.max(risk);
        Stage::Warn
    }

    /// Takes the held stage whose window has ended.
    pub fn release(&mut self, now: Timestamp) -> Option<Held> {
        // (Closing a case clears its hold.)
        self.held.take_if(|h| h.until <= now)
    }

    /// Records the owner's answer to the case's notice.
    pub fn answered(&mut self, answer: OwnerAnswer) -> Result<(), CaseError> {
        if self.status == CaseStatus::Closed {
            return self.refuse("is closed");
        }
        let detail = format!(
            "via {}{}: {}",
            answer.channel.as_str(),
            if answer.confirms { ", confirms the access as theirs" } else { "" },
            answer.text
        );
        self.history.push(CaseEvent {
            at: answer.at,
            by: answer.filed_by.clone(),
            what: "owner_answered".into(),
            detail,
        });
        self.updated_at = answer.at;
        self.answers.push(answer);
        Ok(())
    }

    /// Files the owner's request to get access back. The key must have been stopped (stage
    /// reverify or above) and no other request be under way.
    pub fn request_reinstatement(&mut self, request: Reinstatement, now: Timestamp) -> Result<(), CaseError> {
        if self.status == CaseStatus::Closed {
            return self.refuse("is closed");
        }
        if self.stage < Stage::Reverify {
            return self.refuse("did not stop the key: there is nothing to reinstate");
        }
        if self.reinstatement.as_ref().is_some_and(|r| r.status != ReinstatementStatus::Rejected) {
            return self.refuse("already has a reinstatement request under way");
        }
        if request.ip_allowlist.is_empty() {
            return self.refuse("a reinstated key needs an IP allowlist");
        }
        if request.scopes.is_empty() || request.scopes.iter().any(|s| s.is_sensitive()) {
            return self
                .refuse("a reinstated key gets read and/or trade only; withdraw and transfer are asked for afresh");
        }
        let by = request.requested.by.clone();
        self.reinstatement = Some(request);
        self.history.push(CaseEvent {
            at: now,
            by,
            what: "reinstatement_requested".into(),
            detail: "owner re-verified and asked for access back".into(),
        });
        self.updated_at = now;
        Ok(())
    }

    /// An analyst's review: recommends (the request goes to the approvers) or rejects it.
    pub fn review_reinstatement(
        &mut self,
        by: &str,
        approve: bool,
        note: &str,
        now: Timestamp,
    ) -> Result<(), CaseError> {
        let Some(r) = self.reinstatement.as_mut().filter(|r| r.status == ReinstatementStatus::Requested) else {
            return self.refuse("has no reinstatement request awaiting review");
        };
        if r.requested.by == by {
            return self.refuse("the one who filed the request cannot review it");
        }
        r.review = Some(Signoff { by: by.into(), at: now, note: note.into() });
        r.status = if approve { ReinstatementStatus::Reviewed } else { ReinstatementStatus::Rejected };
        let what = if approve { "reinstatement_recommended" } else { "reinstatement_rejected" };
        self.history.push(CaseEvent { at: now, by: by.into(), what: what.into(), detail: note.into() });
        self.updated_at = now;
        Ok(())
    }

    /// An approver's approval; true when it is the last one needed (the caller then issues the
    /// new key and records it with `reinstated`).
    pub fn approve_reinstatement(&mut self, by: &str, note: &str, now: Timestamp) -> Result<bool, CaseError> {
        let Some(r) = self.reinstatement.as_mut().filter(|r| r.status == ReinstatementStatus::Reviewed) else {
            return self.refuse("has no reviewed reinstatement request awaiting approval");
        };
        let reviewer = r.review.as_ref().map(|s| s.by.as_str());
        if r.requested.by == by || reviewer == Some(by) {
            return self.refuse("an approver must be neither the requester nor the reviewing analyst");
        }
        if r.approvals.iter().any(|a| a.by == by) {
            return self.refuse("needs two distinct approvers; this one has already approved");
        }
        r.approvals.push(Signoff { by: by.into(), at: now, note: note.into() });
        let done = r.approvals.len() >= REINSTATEMENT_APPROVALS;
        self.history.push(CaseEvent {
            at: now,
            by: by.into(),
            what: "reinstatement_approved".into(),
            detail: note.into(),
        });
        self.updated_at = now;
        Ok(done)
    }

    /// Records the new key and closes the case: the owner re-verified.
    pub fn reinstated(&mut self, new_key: AccessKey, by: &str, now: Timestamp) {
        if let Some(r) = self.reinstatement.as_mut() {
            r.status = ReinstatementStatus::Issued;
            r.new_key = Some(new_key.clone());
        }
        self.history.push(CaseEvent {
            at: now,
            by: by.into(),
            what: "reinstated".into(),
            detail: format!("new key {new_key} issued; the old key stays dead"),
        });
        self.status = CaseStatus::Closed;
        self.resolution = Some(Resolution::OwnerReverified);
        self.updated_at = now;
    }

    fn refuse<T>(&self, message: impl Into<String>) -> Result<T, CaseError> {
        Err(CaseError { case_id: self.case_id.clone(), message: message.into() })
    }

    /// Applies an analyst's command to the case (not to the key: the caller takes the returned
    /// action, if any, on the key in the same transaction). Records it in the history.
    pub fn command(
        &mut self,
        cmd: &CaseCommand,
        by: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<Option<Action>, CaseError> {
        let after_closing =
            matches!(cmd, CaseCommand::Dispute { .. } | CaseCommand::Hold { .. } | CaseCommand::ReleaseHold { .. });
        if self.status == CaseStatus::Closed && !after_closing {
            return self.refuse("is closed");
        }
        let mut take = None;
        let detail = match cmd {
            CaseCommand::Approve | CaseCommand::Dismiss => {
                let (CaseStatus::AwaitingDecision, Some(action)) = (self.status, self.pending_action) else {
                    return self.refuse("has no action awaiting a decision");
                };
                self.pending_action = None;
                self.status = CaseStatus::Open;
                if *cmd == CaseCommand::Approve {
                    take = Some(action);
                }
                format!("{} {}: {reason}", cmd.name(), action.as_str())
            }
            CaseCommand::Assign { operator_id } => {
                self.assignee = Some(operator_id.clone());
                format!("assigned to {operator_id}: {reason}")
            }
            CaseCommand::Note { text } | CaseCommand::Dispute { text } | CaseCommand::ReviewRelated { text } => {
                text.clone()
            }
            CaseCommand::Restrict { action } => {
                if !action.changes_the_key() {
                    return self.refuse("restrict takes contain, read_only, suspend or revoke");
                }
                take = Some(*action);
                format!("restrict: {}: {reason}", action.as_str())
            }
            CaseCommand::DueDiligence { text } => format!("enhanced due diligence: {text}"),
            CaseCommand::Hold { text } => {
                if self.legal_hold.is_some() {
                    return self.refuse("is already on legal hold");
                }
                self.legal_hold = Some(Signoff { by: by.into(), at: now, note: text.clone() });
                format!("legal hold: {text}")
            }
            CaseCommand::ReleaseHold { text } => {
                if self.legal_hold.take().is_none() {
                    return self.refuse("is not on legal hold");
                }
                format!("hold released: {text}")
            }
            CaseCommand::Close { resolution } => {
                if self.pending_action.is_some() {
                    return self.refuse("has an action awaiting a decision: approve or dismiss it first");
                }
                self.status = CaseStatus::Closed;
                self.held = None;
                self.resolution = Some(*resolution);
                format!("closed ({}): {reason}", serde_json::to_value(resolution).unwrap_or_default())
            }
        };
        self.history.push(CaseEvent { at: now, by: by.into(), what: cmd.name().into(), detail });
        self.updated_at = now;
        Ok(take)
    }
}

/// What the policy does with a suspicion on a key: the action, and whether it happens now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub action: Action,
    /// Take the action now (automatic, enforcing).
    pub act: bool,
    /// Queue it for an analyst (not automatic, enforcing).
    pub queue: bool,
    pub sla_hours: u32,
}

impl ResponsePolicy {
    /// The plan for `stage` on an account of `segment`.
    pub fn plan(&self, segment: Segment, stage: Stage) -> Plan {
        let rule = self.rule(segment, stage);
        let enforcing = self.mode == Mode::Enforce;
        Plan {
            action: rule.action,
            act: enforcing && rule.automatic,
            queue: enforcing && !rule.automatic && rule.action.changes_the_key(),
            sla_hours: rule.sla_hours,
        }
    }
}

/// A retail case at `reverify`, for tests.
#[cfg(test)]
pub(crate) fn sample_case(now: Timestamp) -> Case {
    let parse = |k: &str| AccessKey::parse(k).unwrap_or_else(|e| panic!("{e}"));
    let account = AccountId::parse("acct-1").unwrap_or_else(|e| panic!("{e}"));
    let mut case =
        Case::open("case-1".into(), parse("ksk_NGOF1b4l7WtHWS36OfnWN06qth1bZc0cufHT"), account, Segment::Retail, now);
    (case.stage, case.risk, case.policy_version, case.enforced) = (Stage::Reverify, 0.8, "p".into(), true);
    case
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_is_valid_and_staged() {
        let p = ResponsePolicy::default();
        p.validate().unwrap();
        let retail = p.plan(Segment::Retail, Stage::Invalidate);
        assert_eq!((retail.action, retail.act, retail.queue), (Action::Revoke, true, false));
        let mm = p.plan(Segment::MarketMaker, Stage::Invalidate);
        assert_eq!((mm.action, mm.act, mm.queue), (Action::Revoke, false, true), "a human decides for mandates");
        assert_eq!(p.plan(Segment::Retail, Stage::Warn).action, Action::Notify);
        let text = toml::to_string(&p).unwrap();
        assert_eq!(ResponsePolicy::from_toml(&text).unwrap(), p);
    }

    #[test]
    fn escalation_rules_raise_the_stage_for_their_indicators_only() {
        use crate::Indicator::{BadSignatureBurst, Complaint, ProbedThenUsed};
        let text = toml::to_string(&ResponsePolicy::default()).unwrap()
            + "\n[[escalate]]\nindicators = [\"probed_then_used\"]\nat_least = \"invalidate\"\n\n\
               [[escalate]]\nindicators = [\"complaint\", \"vendor_intel\"]\nat_least = \"reverify\"\n";
        let p = ResponsePolicy::from_toml(&text).unwrap();
        assert_eq!(p.stage_for(Stage::Warn, &[BadSignatureBurst]).0, Stage::Warn);
        assert_eq!(p.stage_for(Stage::Warn, &[Complaint]).0, Stage::Reverify);
        let (stage, rule) = p.stage_for(Stage::Warn, &[Complaint, ProbedThenUsed]);
        assert_eq!((stage, rule.map(|r| r.at_least)), (Stage::Invalidate, Some(Stage::Invalidate)), "the highest rule");
        assert_eq!(p.stage_for(Stage::Invalidate, &[Complaint]), (Stage::Invalidate, None), "never lowers");
        // A name the engine does not have is refused, naming it; so is a rule naming none.
        let typo = text.replace("vendor_intel", "vendor_intell");
        let err = ResponsePolicy::from_toml(&typo).unwrap_err();
        assert!(err.to_string().contains("vendor_intell"), "{err}");
        let empty = toml::to_string(&ResponsePolicy::default()).unwrap()
            + "\n[[escalate]]\nindicators = []\nat_least = \"warn\"\n";
        assert!(ResponsePolicy::from_toml(&empty).is_err());
    }

    #[test]
    fn reinstatement_needs_a_review_and_two_approvers_none_of_them_the_filer() {
        let now = time::OffsetDateTime::UNIX_EPOCH;
        let mut case = sample_case(now);
        let request = Reinstatement {
            status: ReinstatementStatus::Requested,
            requested: Signoff { by: "op:filer".into(), at: now, note: String::new() },
            explanation: "x".into(),
            evidence: vec![],
            scopes: vec![crate::Scope::Read],
            ip_allowlist: vec!["203.0.113.0/24".into()],
            public_key: None,
            review: None,
            approvals: vec![],
            new_key: None,
        };
        case.request_reinstatement(request.clone(), now).unwrap();
        assert!(case.request_reinstatement(request, now).is_err(), "one request at a time");
        assert!(case.approve_reinstatement("op:a1", "", now).is_err(), "not before a review");
        assert!(case.review_reinstatement("op:filer", true, "", now).is_err(), "the filer cannot review");
        case.review_reinstatement("op:analyst", true, "", now).unwrap();
        for wrong in ["op:filer", "op:analyst"] {
            assert!(case.approve_reinstatement(wrong, "", now).is_err(), "{wrong} may not approve");
        }
        assert!(!case.approve_reinstatement("op:a1", "", now).unwrap(), "one approval is not enough");
        assert!(case.approve_reinstatement("op:a1", "", now).is_err(), "the same approver twice");
        assert!(case.approve_reinstatement("op:a2", "", now).unwrap());
    }

    #[test]
    fn the_shipped_policy_file_is_the_built_in_policy() {
        let shipped = include_str!("../../../deploy/response/response-policy.toml");
        assert_eq!(ResponsePolicy::from_toml(shipped).unwrap(), ResponsePolicy::default());
    }

    #[test]
    fn shadow_mode_never_acts_and_inconsistent_policies_are_refused() {
        let p = ResponsePolicy { mode: Mode::Shadow, ..Default::default() };
        let plan = p.plan(Segment::Retail, Stage::Invalidate);
        assert!(!plan.act && !plan.queue);
        let mut bad = ResponsePolicy::default();
        bad.retail.invalidate.action = Action::Notify;
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("[retail.invalidate]") && e.contains("milder"), "{e}");
        let mut bad = ResponsePolicy::default();
        bad.institutional.warn.sla_hours = 0;
        assert!(bad.validate().unwrap_err().to_string().contains("sla_hours"));
        bad.institutional.warn.sla_hours = u32::MAX;
        assert!(bad.validate().unwrap_err().to_string().contains("sla_hours"), "too long to add to a time");
        let mut long = ResponsePolicy::default();
        long.retail.answer_window_hours = u32::MAX;
        assert!(long.validate().unwrap_err().to_string().contains("answer_window_hours"));
        assert!(ResponsePolicy::from_toml("version = 1").is_err());
        // A vendor's lapse restricts its keys; it neither only watches them nor revokes them.
        for (field, action) in [("on_lapse", Action::Notify), ("on_suspend", Action::Revoke)] {
            let mut bad = ResponsePolicy::default();
            if field == "on_lapse" {
                bad.vendors.on_lapse = action;
            } else {
                bad.vendors.on_suspend = action;
            }
            let e = bad.validate().unwrap_err().to_string();
            assert!(e.contains(&format!("[vendors] {field}")), "{e}");
        }
        let typo = toml::to_string(&ResponsePolicy::default()).unwrap().replace("on_lapse", "on_lapsed");
        assert!(ResponsePolicy::from_toml(&typo).is_err(), "an unknown field is refused");
    }
}
