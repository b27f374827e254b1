//! Suspicious-matter report assessments: opened on a case, decided and filed by a compliance
//! officer, every step audited. Their audit entries name `report:<case id>` as their target,
//! not the case, so a dispute's evidence pack (which gathers the entries about the case, its
//! key and its notices) never carries them to the owner.

use crate::{Registry, RegistryError};
use keysentinel_audit::{Actor, AuditDraft};
use keysentinel_domain::report::ReportError;
use keysentinel_domain::{ReportAssessment, ReportDraft, ReportStep, ReportingConfig};
use serde_json::json;

pub fn audit_target(case_id: &str) -> String {
    format!("report:{case_id}")
}

impl Registry {
    /// Opens the assessment of whether the case's matter is reportable, under `config`.
    pub async fn assess_report(
        &self,
        actor: Actor,
        case_id: String,
        config: ReportingConfig,
        reason: String,
    ) -> Result<ReportAssessment, RegistryError> {
        crate::check_reason(&reason)?;
        self.transact(move |tx| {
            let now = tx.now();
            let case = tx.case(&case_id)?.ok_or(RegistryError::NotFound { what: "case", id: case_id.clone() })?;
            if tx.report(&case_id)?.is_some() {
                return Err(RegistryError::Conflict { what: "report assessment of case", id: case_id });
            }
            let assessment = ReportAssessment::open(&case, &config, &actor.label(), &reason, now)?;
            tx.put_report(&assessment)?;
            tx.append_audit(AuditDraft {
                actor,
                action: "report.assess".into(),
                target: audit_target(&case_id),
                reason,
                policy_version: Some(case.policy_version.clone()),
                details: json!({ "jurisdiction": assessment.jurisdiction, "deadline": assessment.deadline }),
            })?;
            Ok(assessment)
        })
        .await
    }

    /// A step on the assessment: the decision whether to file (with its reasons), or the filing.
    pub async fn report_step(
        &self,
        actor: Actor,
        case_id: String,
        step: ReportStep,
        config: ReportingConfig,
        reason: String,
    ) -> Result<ReportAssessment, RegistryError> {
        crate::check_reason(&reason)?;
        match &step {
            ReportStep::Decide { reasons, .. } => keysentinel_domain::account::check_text("reasons", reasons, 4000)?,
            ReportStep::Filed { reference } => {
                if reference.trim().is_empty() {
                    return Err(keysentinel_domain::ValidationError::new(
                        "reference",
                        "the FIU's reference is required",
                    )
                    .into());
                }
                keysentinel_domain::account::check_text("reference", reference, 200)?
            }
        }
        let holidays = config
            .holidays()
            .map_err(|message| RegistryError::ReportState(ReportError { case_id: case_id.clone(), message }))?;
        self.transact(move |tx| {
            let now = tx.now();
            let mut assessment = tx
                .report(&case_id)?
                .ok_or(RegistryError::NotFound { what: "report assessment of case", id: case_id.clone() })?;
            assessment.step(&step, &holidays, &actor.label(), now)?;
            tx.put_report(&assessment)?;
            let action = match step {
                ReportStep::Decide { .. } => "report.decide",
                ReportStep::Filed { .. } => "report.filed",
            };
            tx.append_audit(AuditDraft {
                actor,
                action: action.into(),
                target: audit_target(&case_id),
                reason,
                policy_version: None,
                details: json!({ "step": step, "status": assessment.status, "deadline": assessment.deadline }),
            })?;
            Ok(assessment)
        })
        .await
    }

    pub fn report(&self, case_id: &str) -> Result<ReportAssessment, RegistryError> {
        self.store
            .report(case_id)?
            .ok_or(RegistryError::NotFound { what: "report assessment of case", id: case_id.into() })
    }

    pub fn reports(&self, open_only: bool, limit: u32) -> Result<Vec<ReportAssessment>, RegistryError> {
        Ok(self.store.reports(open_only, limit.clamp(1, 1000))?)
    }

    /// The draft report for the filer, its export recorded in the audit log.
    pub async fn report_draft(
        &self,
        actor: Actor,
        case_id: String,
        config: ReportingConfig,
        reason: String,
    ) -> Result<ReportDraft, RegistryError> {
        crate::check_reason(&reason)?;
        self.transact(move |tx| {
            let case = tx.case(&case_id)?.ok_or(RegistryError::NotFound { what: "case", id: case_id.clone() })?;
            let assessment = tx
                .report(&case_id)?
                .ok_or(RegistryError::NotFound { what: "report assessment of case", id: case_id.clone() })?;
            let account = tx.account(&case.account_id)?;
            let key = tx.key(&case.key_id)?.map(|s| s.key);
            let draft = ReportDraft::build(&case, account.as_ref(), key.as_ref(), &assessment, &config);
            tx.append_audit(AuditDraft {
                actor,
                action: "report.export".into(),
                target: audit_target(&case_id),
                reason,
                policy_version: None,
                details: json!({ "format": draft.format, "digest": crate::body_digest(&serde_json::to_value(&draft).unwrap_or_default()) }),
            })?;
            Ok(draft)
        })
        .await
    }
}
