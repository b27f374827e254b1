//! The response to detections: cases, and the actions the response policy takes on keys. One
//! detection is one transaction — the case moves, the key changes (or the change is recorded as
//! shadowed or queued), and both are audited together, or nothing happens.

use crate::{Registry, RegistryError};
use keysentinel_audit::{Actor, AuditDraft};
use keysentinel_domain::{
    Action, ApiKey, Case, CaseCommand, CaseEvent, CaseStatus, Delivery, KeyStatus, Notice, NoticeKind, OwnerAnswer,
    Plan, ResponsePolicy, Scope, Segment, Stage, Suspicion,
};
use keysentinel_store::{CaseFilter, StoredKey, WriteTx};
use rand::RngCore;
use serde_json::json;
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

/// An account linked to a case's key, with its own cases.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct LinkedAccount {
    pub account_id: String,
    pub via: String,
    pub cases: Vec<CaseRef>,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct CaseRef {
    pub case_id: String,
    pub key_id: String,
    pub status: CaseStatus,
    pub stage: Stage,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub opened_at: OffsetDateTime,
}

/// The actor recorded for what the response policy does on its own.
fn response_actor() -> Actor {
    Actor::System { component: "response".into() }
}

pub(crate) fn new_id(prefix: &str) -> String {
    let mut b = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut b);
    format!("{prefix}-{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>())
}

/// Queues the owner's notice of what was done to the key, in the same transaction.
fn queue_notice(tx: &mut dyn WriteTx, case: &mut Case, kind: NoticeKind, by: &str) -> Result<String, RegistryError> {
    let now = tx.now();
    let notice = Notice::new(new_id("notice"), &case.case_id, &case.account_id, &case.key_id, kind, case.stage, now);
    tx.put_notice(&notice)?;
    case.history.push(CaseEvent {
        at: now,
        by: by.into(),
        what: "notice_queued".into(),
        detail: format!("{} notice {} to the owner", kind.as_str(), notice.notice_id),
    });
    Ok(notice.notice_id)
}

/// What a response action did to a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyChange {
    Status(KeyStatus),
    /// Containment: these scopes were dropped.
    Restricted(Vec<Scope>),
}

impl KeyChange {
    pub(crate) fn notice(&self) -> NoticeKind {
        match self {
            KeyChange::Status(KeyStatus::Revoked) => NoticeKind::Revoked,
            KeyChange::Status(_) => NoticeKind::Suspended,
            KeyChange::Restricted(_) => NoticeKind::Restricted,
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            KeyChange::Status(s) => format!("is now {}", s.as_str()),
            KeyChange::Restricted(dropped) => {
                format!("lost {}", dropped.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "))
            }
        }
    }
}

/// Writes the changed key and its audit entry, under the policy version and what it was done
/// for: `("case_id", id)`, or `("vendor_id", id)` for a vendor's lapse or suspension.
pub(crate) fn record_key_change(
    tx: &mut dyn WriteTx,
    actor: Actor,
    key: &ApiKey,
    change: &KeyChange,
    reason: String,
    policy_version: &str,
    about: (&str, &str),
) -> Result<(), RegistryError> {
    tx.update_key(key)?;
    let (action, mut details) = match change {
        KeyChange::Status(to) => (
            if *to == KeyStatus::Revoked { "key.revoke" } else { "key.suspend" },
            json!({ "to": to, "account_id": key.account_id }),
        ),
        KeyChange::Restricted(dropped) => ("key.restrict", json!({ "dropped": dropped, "account_id": key.account_id })),
    };
    details[about.0] = json!(about.1);
    tx.append_audit(AuditDraft {
        actor,
        action: action.into(),
        target: key.access_key.to_string(),
        reason,
        policy_version: Some(policy_version.to_owned()),
        details,
    })?;
    Ok(())
}

impl Registry {
    /// Responds to a detection on a key under `policy`. Below `warn` nothing is recorded (the
    /// detection itself is the monitoring record). From `warn` up, the key's live case is
    /// opened or moved, with the detection as evidence, and the stage's action is taken when
    /// the policy takes it automatically, queued for an analyst when it does not, or recorded as
    /// shadowed when the policy runs in shadow mode. Keys the registry does not know are
    /// ignored (None): events may name keys managed elsewhere.
    pub async fn respond(
        &self,
        suspicion: Suspicion,
        policy: Arc<ResponsePolicy>,
    ) -> Result<Option<Case>, RegistryError> {
        if suspicion.stage < Stage::Warn {
            return Ok(None);
        }
        let case = self.transact(move |tx| respond_in(tx, &suspicion, &policy)).await?;
        if let Some(c) = &case {
            // The snapshot learns of a suspension or revocation before the call returns.
            self.publish(std::slice::from_ref(&c.key_id));
        }
        Ok(case)
    }

    /// Applies the stages held for the owner's answer whose window has ended (a sweep the
    /// server runs every minute); the cases moved.
    pub async fn release_held(&self, policy: Arc<ResponsePolicy>) -> Result<Vec<Case>, RegistryError> {
        let now = self.now();
        let mut due = Vec::new();
        for status in [CaseStatus::Open, CaseStatus::AwaitingDecision] {
            // Held stages are rare and short-lived; open cases are few next to keys. (A store
            // index on the hold's end would replace the scan past one node.)
            let filter = CaseFilter { status: Some(status), limit: 1000, ..CaseFilter::default() };
            due.extend(
                self.store
                    .cases(&filter)?
                    .into_iter()
                    .filter(|c| c.held.as_ref().is_some_and(|h| h.until <= now))
                    .map(|c| c.case_id),
            );
        }
        let mut moved = Vec::new();
        for id in due {
            let policy = policy.clone();
            if let Some(case) = self.transact(move |tx| release_in(tx, &id, &policy)).await? {
                self.publish(std::slice::from_ref(&case.key_id));
                moved.push(case);
            }
        }
        Ok(moved)
    }

    /// Records the owner's answer to a case's notice, audited.
    pub async fn answer(
        &self,
        actor: Actor,
        case_id: String,
        channel: keysentinel_domain::AnswerChannel,
        text: String,
        confirms: bool,
    ) -> Result<Case, RegistryError> {
        if text.trim().is_empty() {
            return Err(keysentinel_domain::ValidationError::new("text", "the owner's answer must not be empty").into());
        }
        keysentinel_domain::account::check_text("text", &text, 4000)?;
        self.transact(move |tx| {
            let now = tx.now();
            let mut case = tx.case(&case_id)?.ok_or(RegistryError::NotFound { what: "case", id: case_id })?;
            let answer = OwnerAnswer { at: now, filed_by: actor.label(), channel, text: text.clone(), confirms };
            case.answered(answer)?;
            tx.put_case(&case)?;
            tx.append_audit(AuditDraft {
                actor,
                action: "case.answer".into(),
                target: case.case_id.clone(),
                reason: text,
                policy_version: Some(case.policy_version.clone()),
                details: json!({ "channel": channel, "confirms": confirms, "held": case.held }),
            })?;
            Ok(case)
        })
        .await
    }

    /// An analyst's step on a case; approving a queued action takes it on the key in the same
    /// transaction, audited as the analyst's.
    pub async fn case_command(
        &self,
        actor: Actor,
        case_id: String,
        cmd: CaseCommand,
        reason: String,
    ) -> Result<Case, RegistryError> {
        crate::check_reason(&reason)?;
        if let CaseCommand::Note { text }
        | CaseCommand::Dispute { text }
        | CaseCommand::ReviewRelated { text }
        | CaseCommand::DueDiligence { text }
        | CaseCommand::Hold { text }
        | CaseCommand::ReleaseHold { text } = &cmd
        {
            keysentinel_domain::account::check_text("text", text, 4000)?;
        }
        let case = self
            .transact(move |tx| {
                let now = tx.now();
                let mut case = tx.case(&case_id)?.ok_or(RegistryError::NotFound { what: "case", id: case_id })?;
                if let CaseCommand::Assign { operator_id } = &cmd {
                    let id = keysentinel_domain::OperatorId::parse(operator_id)?;
                    if tx.operator(&id)?.is_none_or(|o| o.disabled) {
                        return Err(RegistryError::NotFound { what: "operator", id: operator_id.clone() });
                    }
                }
                let by = actor.label();
                let take = case.command(&cmd, &by, &reason, now)?;
                let mut changed = None;
                if let Some(action) = take {
                    let StoredKey { mut key, .. } = crate::keys::load_key(tx, &case.key_id)?;
                    if let Some(change) = apply(&mut key, action, &reason, &by, now)? {
                        let (version, id) = (case.policy_version.clone(), case.case_id.clone());
                        let about = ("case_id", id.as_str());
                        record_key_change(tx, actor.clone(), &key, &change, reason.clone(), &version, about)?;
                        queue_notice(tx, &mut case, change.notice(), &by)?;
                        changed = Some(change.describe());
                    }
                }
                tx.put_case(&case)?;
                tx.append_audit(AuditDraft {
                    actor,
                    action: format!("case.{}", cmd.name()),
                    target: case.case_id.clone(),
                    reason,
                    policy_version: Some(case.policy_version.clone()),
                    details: json!({ "command": cmd, "status": case.status, "key_change": changed }),
                })?;
                Ok(case)
            })
            .await?;
        self.publish(std::slice::from_ref(&case.key_id));
        Ok(case)
    }

    /// The case's group: the accounts linked to its key's (as its detections found them) and
    /// their cases, for the playbook's review of related accounts.
    pub fn case_related(&self, case_id: &str) -> Result<Vec<LinkedAccount>, RegistryError> {
        let case = self.case(case_id)?;
        let mut linked: Vec<LinkedAccount> = Vec::new();
        for r in case.suspicions.iter().flat_map(|s| &s.related_accounts) {
            if linked.iter().any(|l| l.account_id == r.account_id) {
                continue;
            }
            let cases = match keysentinel_domain::AccountId::parse(&r.account_id) {
                Ok(id) => self
                    .store
                    .cases(&CaseFilter { account_id: Some(id), limit: 20, ..CaseFilter::default() })?
                    .into_iter()
                    .map(|c| CaseRef {
                        case_id: c.case_id,
                        key_id: c.key_id.to_string(),
                        status: c.status,
                        stage: c.stage,
                        opened_at: c.opened_at,
                    })
                    .collect(),
                // An account known to detection only (named in events, not in the registry).
                Err(_) => Vec::new(),
            };
            linked.push(LinkedAccount { account_id: r.account_id.clone(), via: r.via.clone(), cases });
        }
        Ok(linked)
    }

    /// SLA breaches: cases not closed (of `filter.status` if given) whose `due_at` has passed,
    /// most overdue first.
    pub fn overdue_cases(&self, filter: CaseFilter) -> Result<Vec<Case>, RegistryError> {
        let now = self.now();
        let statuses = filter.status.map_or_else(|| vec![CaseStatus::Open, CaseStatus::AwaitingDecision], |s| vec![s]);
        let mut late = Vec::new();
        for status in statuses.into_iter().filter(|s| *s != CaseStatus::Closed) {
            let all = CaseFilter { status: Some(status), limit: 1000, ..filter.clone() };
            late.extend(self.store.cases(&all)?.into_iter().filter(|c| c.due_at < now));
        }
        late.sort_by_key(|c| c.due_at);
        late.truncate(filter.limit.clamp(1, 1000) as usize);
        Ok(late)
    }

    /// Notices due for delivery now.
    pub fn due_notices(&self, limit: u32) -> Result<Vec<Notice>, RegistryError> {
        Ok(self.store.due_notices(self.now(), limit.clamp(1, 1000))?)
    }

    pub fn notices(&self, case_id: &str) -> Result<Vec<Notice>, RegistryError> {
        Ok(self.store.notices(case_id)?)
    }

    /// Records a delivery attempt: delivered, or failed with why (retried later, or given up
    /// after the last attempt). Audited, like every change.
    pub async fn notice_attempted(&self, notice_id: String, error: Option<String>) -> Result<Notice, RegistryError> {
        self.transact(move |tx| {
            let now = tx.now();
            let mut notice =
                tx.notice(&notice_id)?.ok_or(RegistryError::NotFound { what: "notice", id: notice_id.clone() })?;
            match &error {
                None => notice.delivered(now),
                Some(e) => notice.attempt_failed(e, now),
            }
            tx.put_notice(&notice)?;
            tx.append_audit(AuditDraft {
                actor: Actor::System { component: "notifier".into() },
                action: match notice.status {
                    Delivery::Delivered => "notice.delivered",
                    Delivery::Failed => "notice.failed",
                    Delivery::Pending => "notice.retry",
                }
                .into(),
                target: notice.notice_id.clone(),
                reason: error.clone().unwrap_or_else(|| "delivered".into()),
                policy_version: None,
                details: json!({ "case_id": notice.case_id, "kind": notice.kind, "attempts": notice.attempts }),
            })?;
            Ok(notice)
        })
        .await
    }

    pub fn case(&self, id: &str) -> Result<Case, RegistryError> {
        self.store.case(id)?.ok_or_else(|| RegistryError::NotFound { what: "case", id: id.to_owned() })
    }

    pub fn cases(&self, mut filter: CaseFilter) -> Result<Vec<Case>, RegistryError> {
        filter.limit = filter.limit.clamp(1, 1000);
        Ok(self.store.cases(&filter)?)
    }
}

fn respond_in(
    tx: &mut dyn WriteTx,
    suspicion: &Suspicion,
    policy: &ResponsePolicy,
) -> Result<Option<Case>, RegistryError> {
    let Some(stored) = tx.key(&suspicion.key_id)? else {
        return Ok(None);
    };
    let key = stored.key;
    let now = tx.now();
    let segment = tx.account(&key.account_id)?.map_or(Segment::Retail, |a| a.segment);
    let indicators: Vec<_> = suspicion.findings.iter().map(|f| f.indicator).collect();
    let names = indicators.iter().map(|i| i.as_str()).collect::<Vec<_>>().join(", ");
    let (stage, escalation) = policy.stage_for(suspicion.stage, &indicators);

    let existing = tx.live_case(&key.access_key)?;
    let opened = existing.is_none();
    let mut case = existing
        .unwrap_or_else(|| Case::open(new_id("case"), key.access_key.clone(), key.account_id.clone(), segment, now));
    case.suspicions.push(suspicion.clone());
    let by = response_actor().label();
    let event = |case: &mut Case, what: &str, detail: String| {
        case.history.push(CaseEvent { at: now, by: by.clone(), what: what.into(), detail });
    };
    event(
        &mut case,
        if opened { "opened" } else { "detected" },
        format!("stage {} (risk {:.2}): {}", suspicion.stage, suspicion.risk, names),
    );
    if let Some(rule) = escalation {
        event(
            &mut case,
            "escalated",
            format!(
                "treated as {stage}: the policy escalates {} to at least {stage}",
                rule.indicators.iter().map(|i| i.as_str()).collect::<Vec<_>>().join(", ")
            ),
        );
    }
    // An escalation rule is the policy saying the evidence is not a matter of degree: like
    // compromise, it is not held for the owner's answer.
    let held_before = case.held.clone();
    let window = policy.answer_window(segment);
    let stage = case.gate(stage, suspicion.risk, suspicion.compromise || escalation.is_some(), window, now);
    if let Some(h) = case.held.as_ref().filter(|h| held_before.as_ref() != Some(*h)) {
        let detail = format!(
            "{} held at warn until {} so that the owner can answer the notice (answer window {} h; the evidence is not of compromise)",
            h.stage,
            h.until.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            window.whole_hours()
        );
        event(&mut case, "held", detail);
    }
    let plan = policy.plan(segment, stage);
    let reason = format!("suspected key sharing ({}, stage {stage}): {}", case.case_id, names);
    let details = json!({
        "key_id": case.key_id, "account_id": case.account_id, "stage": stage, "detected_stage": suspicion.stage,
        "risk": suspicion.risk, "indicators": indicators, "detector": suspicion.detector,
        "compromise": suspicion.compromise, "held": case.held,
    });
    advance(tx, case, key, Step { stage, risk: suspicion.risk, plan, opened, reason, details }, policy).map(Some)
}

/// A stage reached by a case, and what the policy does there.
struct Step {
    stage: Stage,
    risk: f32,
    plan: Plan,
    opened: bool,
    reason: String,
    /// What the audit entry records of how the stage was reached.
    details: serde_json::Value,
}

/// Moves `case` to the step's stage and takes, queues or shadows its action on `key`, with
/// the owner's notice; writes the case, the key and their audit entries.
fn advance(
    tx: &mut dyn WriteTx,
    mut case: Case,
    mut key: ApiKey,
    step: Step,
    policy: &ResponsePolicy,
) -> Result<Case, RegistryError> {
    let Step { stage, risk, plan, opened, reason, mut details } = step;
    let now = tx.now();
    let actor = response_actor();
    let by = actor.label();
    let escalated = opened || stage > case.stage;
    case.stage = case.stage.max(stage);
    case.risk = case.risk.max(risk);
    case.policy_version = policy.version.clone();
    case.enforced = policy.mode == keysentinel_domain::Mode::Enforce;
    case.updated_at = now;
    if escalated {
        case.due_at = now + Duration::hours(i64::from(plan.sla_hours));
    }
    let event = |case: &mut Case, what: &str, detail: String| {
        case.history.push(CaseEvent { at: now, by: by.clone(), what: what.into(), detail });
    };
    let mut key_change = None;
    // A notice already went out at this stage: a repeat of it takes nothing.
    let repeat = !escalated && !plan.action.changes_the_key();
    if plan.act && !repeat {
        if let Some(change) = apply(&mut key, plan.action, &reason, &by, now)? {
            let detail = format!("{}: key {} {}", plan.action.as_str(), key.access_key, change.describe());
            event(&mut case, "action_taken", detail);
            key_change = Some(change);
        } else if plan.action.changes_the_key() {
            event(
                &mut case,
                "action_taken",
                format!("{}: key was already {}", plan.action.as_str(), key.status.as_str()),
            );
        } else {
            event(&mut case, "action_taken", plan.action.as_str().to_owned());
        }
        if case.pending_action.is_some_and(|p| p <= plan.action) {
            case.pending_action = None;
            case.status = CaseStatus::Open;
        }
    } else if plan.queue {
        if case.pending_action.is_none_or(|p| p < plan.action) {
            case.pending_action = Some(plan.action);
        }
        case.status = CaseStatus::AwaitingDecision;
        let detail = format!("{} awaits an analyst's decision (policy {})", plan.action.as_str(), policy.version);
        event(&mut case, "action_queued", detail);
    } else if policy.mode == keysentinel_domain::Mode::Shadow {
        let detail = format!("would {} (policy {} in shadow mode)", plan.action.as_str(), policy.version);
        event(&mut case, "action_shadowed", detail);
    }

    let notice = match (plan.act, plan.action, &key_change) {
        (true, _, Some(change)) => Some(queue_notice(tx, &mut case, change.notice(), &by)?),
        (true, Action::Notify, None) if escalated => Some(queue_notice(tx, &mut case, NoticeKind::Warning, &by)?),
        _ => None,
    };
    tx.put_case(&case)?;
    if let Some(d) = details.as_object_mut() {
        d.insert("planned".into(), json!(plan.action));
        d.insert("enforced".into(), json!(case.enforced));
        d.insert("automatic".into(), json!(plan.act));
        d.insert("queued".into(), json!(plan.queue));
        d.insert("status".into(), json!(case.status));
        d.insert("notice".into(), json!(notice));
    }
    tx.append_audit(AuditDraft {
        actor: actor.clone(),
        action: if opened { "case.open" } else { "case.update" }.into(),
        target: case.case_id.clone(),
        reason: reason.clone(),
        policy_version: Some(policy.version.clone()),
        details,
    })?;
    if let Some(change) = key_change {
        record_key_change(tx, actor, &key, &change, reason, &policy.version, ("case_id", case.case_id.as_str()))?;
    }
    Ok(case)
}

/// Applies the stage held on case `case_id` if its answer window has ended: as the policy
/// says, or — when the owner answered within the window — queued for an analyst, who reads
/// the answer before anything stops the key.
fn release_in(tx: &mut dyn WriteTx, case_id: &str, policy: &ResponsePolicy) -> Result<Option<Case>, RegistryError> {
    let now = tx.now();
    let Some(mut case) = tx.case(case_id)? else { return Ok(None) };
    let Some(held) = case.release(now) else { return Ok(None) };
    let StoredKey { key, .. } = crate::keys::load_key(tx, &case.key_id)?;
    let mut plan = policy.plan(case.segment, held.stage);
    let answered = !case.answers.is_empty();
    if answered && plan.act && plan.action.changes_the_key() {
        (plan.act, plan.queue) = (false, true);
    }
    let detail = if answered {
        format!("answer window over: {} applied; the owner answered, so an analyst decides", held.stage)
    } else {
        format!("answer window over without an answer: {} applied", held.stage)
    };
    case.history.push(CaseEvent { at: now, by: response_actor().label(), what: "held_released".into(), detail });
    let reason = format!("suspected key sharing ({}, stage {}): answer window over", case.case_id, held.stage);
    let details = json!({
        "key_id": case.key_id, "account_id": case.account_id, "stage": held.stage, "released": true,
        "owner_answered": answered,
    });
    let step = Step { stage: held.stage, risk: held.risk, plan, opened: false, reason, details };
    advance(tx, case, key, step, policy).map(Some)
}

/// Applies an action to the key; what changed, if anything did.
pub(crate) fn apply(
    key: &mut ApiKey,
    action: Action,
    reason: &str,
    actor: &str,
    now: OffsetDateTime,
) -> Result<Option<KeyChange>, RegistryError> {
    let status = key.effective_status(now);
    match action {
        Action::Suspend if status == KeyStatus::Active => key.suspend(reason, actor, now)?,
        Action::Revoke if status != KeyStatus::Revoked => key.revoke(reason, actor, now)?,
        Action::Contain | Action::ReadOnly => {
            let dropped = key.restrict(action == Action::ReadOnly);
            return Ok((!dropped.is_empty()).then_some(KeyChange::Restricted(dropped)));
        }
        _ => return Ok(None),
    }
    Ok(Some(KeyChange::Status(key.status)))
}
