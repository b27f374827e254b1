use crate::{check_reason, Registry, RegistryError};
use keysentinel_audit::{Actor, AuditDraft};
use keysentinel_domain::ids::has_valid_checksum;
use keysentinel_domain::{Operator, OperatorId, Role};
use keysentinel_secrets::{generate_operator_token, hash_token};
use serde::Serialize;
use serde_json::json;
use zeroize::Zeroizing;

/// An operator with the token it authenticates with, shown once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IssuedToken {
    pub operator: Operator,
    #[schema(value_type = String)]
    #[serde(serialize_with = "ser_token")]
    pub token: Zeroizing<String>,
}

fn ser_token<S: serde::Serializer>(t: &Zeroizing<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(t.as_str())
}

impl Registry {
    /// Creates the first admin. Refused once any operator exists, so it cannot be used to mint
    /// a second admin behind the existing ones' backs.
    pub async fn bootstrap_admin(&self, actor: Actor, id: OperatorId) -> Result<IssuedToken, RegistryError> {
        self.transact(move |tx| {
            if tx.operator_count()? > 0 {
                return Err(RegistryError::Forbidden(
                    "operators already exist; the bootstrap admin can be created only in an empty store".into(),
                ));
            }
            insert_operator(tx, actor, id, Role::Admin, "bootstrap administrator".into(), false, "operator.create")
        })
        .await
    }

    /// Creates an active operator of any role without a second admin: the break-glass path,
    /// for when the admins needed for an approval are gone. Only a command on the host with
    /// the data directory (and the master key) reaches it, and it is loud: its own audit
    /// action, `operator.break_glass`, and a warning in the log.
    pub async fn break_glass(
        &self,
        actor: Actor,
        id: OperatorId,
        role: Role,
        reason: String,
    ) -> Result<IssuedToken, RegistryError> {
        check_reason(&reason)?;
        if !matches!(actor, Actor::Local { .. }) {
            return Err(RegistryError::Forbidden("break-glass is only for a command on the host".into()));
        }
        let label = actor.label();
        let issued = self
            .transact(move |tx| {
                let description = format!("break-glass: {reason}");
                insert_operator(tx, actor, id, role, description, false, "operator.break_glass")
            })
            .await?;
        tracing::warn!(
            operator = %issued.operator.operator_id, role = %role, by = %label,
            "BREAK-GLASS: an operator was created without a second admin's approval"
        );
        Ok(issued)
    }

    /// A second admin approves an operator whose role needs it. The approver may be neither
    /// the operator, nor its creator, nor an operator its creator created, nor the creator of
    /// its creator: any of those is one person's chain of tokens, not a second person.
    pub async fn approve_operator(
        &self,
        actor: Actor,
        id: OperatorId,
        reason: String,
    ) -> Result<Operator, RegistryError> {
        check_reason(&reason)?;
        self.transact(move |tx| {
            let mut op =
                tx.operator(&id)?.ok_or_else(|| RegistryError::NotFound { what: "operator", id: id.to_string() })?;
            if !op.pending_approval {
                return Err(RegistryError::OperatorState(format!("operator {id} is not awaiting approval")));
            }
            let Actor::Operator { id: me, .. } = &actor else {
                return Err(RegistryError::Forbidden("only an admin approves an operator".into()));
            };
            if me == id.as_str() {
                return Err(RegistryError::Forbidden("an operator cannot approve itself".into()));
            }
            if related(tx, me, &op.created_by)? {
                return Err(RegistryError::Forbidden(format!(
                    "{me} may not approve {id}: {id} was created by {}, and {me} is that operator or in its chain of creation; another admin must approve",
                    op.created_by
                )));
            }
            if op.disabled {
                return Err(RegistryError::OperatorState(format!("operator {id} is disabled")));
            }
            op.pending_approval = false;
            op.approved_by = Some(me.clone());
            tx.update_operator(&op)?;
            tx.append_audit(AuditDraft {
                actor,
                action: "operator.approve".into(),
                target: id.to_string(),
                reason,
                policy_version: None,
                details: json!({ "role": op.role, "created_by": op.created_by }),
            })?;
            Ok(op)
        })
        .await
        .inspect(|_| {
            if let Ok(mut cache) = self.tokens.write() {
                cache.clear();
            }
        })
    }

    pub async fn create_operator(
        &self,
        actor: Actor,
        id: OperatorId,
        role: Role,
        description: String,
    ) -> Result<IssuedToken, RegistryError> {
        keysentinel_domain::account::check_text("description", &description, 200)?;
        // A role that takes part in a four-eyes check waits for a second admin.
        let pending = role.needs_second_approval();
        self.transact(move |tx| insert_operator(tx, actor, id, role, description, pending, "operator.create")).await
    }

    pub async fn disable_operator(
        &self,
        actor: Actor,
        id: OperatorId,
        reason: String,
    ) -> Result<Operator, RegistryError> {
        check_reason(&reason)?;
        self.transact(move |tx| {
            let mut op =
                tx.operator(&id)?.ok_or_else(|| RegistryError::NotFound { what: "operator", id: id.to_string() })?;
            if let Actor::Operator { id: me, .. } = &actor {
                if me == id.as_str() {
                    return Err(RegistryError::Forbidden("an operator cannot disable itself".into()));
                }
            }
            op.disabled = true;
            tx.update_operator(&op)?;
            tx.append_audit(AuditDraft {
                actor,
                action: "operator.disable".into(),
                target: id.to_string(),
                reason,
                policy_version: None,
                details: json!({ "role": op.role }),
            })?;
            Ok(op)
        })
        .await
        .inspect(|_| {
            // The disabled operator's token must stop working at once.
            if let Ok(mut cache) = self.tokens.write() {
                cache.clear();
            }
        })
    }

    /// The operator for `token` if it is in the in-memory cache: no I/O, for hot paths that can
    /// then skip a trip to a blocking thread. `None` means "not cached", not "invalid".
    pub fn authenticate_cached(&self, token: &str) -> Option<keysentinel_domain::Operator> {
        if !has_valid_checksum("kso_", token) {
            return None;
        }
        self.tokens.read().ok().and_then(|cache| cache.get(&hash_token(token)).cloned())
    }

    /// The operator holding `token`, if it is valid and enabled. Malformed tokens are refused
    /// before any lookup; the lookup is by hash, so timing reveals nothing of stored tokens.
    pub fn authenticate(&self, token: &str) -> Result<Option<Operator>, RegistryError> {
        if !has_valid_checksum("kso_", token) {
            return Ok(None);
        }
        let hash = hash_token(token);
        if let Some(op) = self.tokens.read().ok().and_then(|cache| cache.get(&hash).cloned()) {
            return Ok(Some(op));
        }
        // A row that is not what the audit log holds (given another role or token in the file)
        // authenticates nobody: the store has said so loudly, the caller gets 401.
        let found = match self.store.operator_by_token_hash(&hash) {
            Err(keysentinel_store::StoreError::State(_)) => None,
            other => other?,
        };
        // A pending operator (its role awaits a second admin) authenticates nothing yet.
        let op = found.filter(|o| !o.disabled && !o.pending_approval);
        if let (Some(op), Ok(mut cache)) = (&op, self.tokens.write()) {
            cache.insert(hash, op.clone());
        }
        Ok(op)
    }

    pub fn operators(&self) -> Result<Vec<Operator>, RegistryError> {
        Ok(self.store.operators()?)
    }
}

fn insert_operator(
    tx: &mut dyn keysentinel_store::WriteTx,
    actor: Actor,
    id: OperatorId,
    role: Role,
    description: String,
    pending_approval: bool,
    action: &str,
) -> Result<IssuedToken, RegistryError> {
    let token = generate_operator_token();
    let operator = Operator {
        operator_id: id.clone(),
        role,
        description,
        created_by: actor.label(),
        created_at: tx.now(),
        disabled: false,
        pending_approval,
        approved_by: None,
    };
    let hash = hash_token(&token);
    tx.insert_operator(&operator, &hash)?;
    tx.append_audit(AuditDraft {
        actor,
        action: action.into(),
        target: id.to_string(),
        reason: if action == "operator.create" { "operator created".into() } else { operator.description.clone() },
        policy_version: None,
        // The token itself never enters the log; its keyed fingerprint identifies it.
        details: json!({ "role": role, "description": operator.description, "pending_approval": pending_approval,
            "token_fingerprint": tx.pseudonym("operator-token", token.as_bytes()) }),
    })?;
    Ok(IssuedToken { operator, token })
}

impl Registry {
    /// Records that an authenticated operator tried something its role does not allow.
    pub async fn record_denied(&self, actor: Actor, what: &str, message: &str) -> Result<(), RegistryError> {
        let (what, message) = (what.to_owned(), message.to_owned());
        self.transact(move |tx| {
            tx.append_audit(AuditDraft {
                actor,
                action: "access.denied".into(),
                target: what,
                reason: message,
                policy_version: None,
                details: json!({}),
            })?;
            Ok(())
        })
        .await
    }
}

/// Whether operators `a` and `b` are one chain of creation: the same, or one created the other.
/// Creation is recorded in each operator's `created_by`; a local command (`local:init`) or the
/// system is nobody's creator here.
pub(crate) fn related(tx: &mut dyn keysentinel_store::WriteTx, a: &str, b: &str) -> Result<bool, RegistryError> {
    if a == b {
        return Ok(true);
    }
    let creator = |tx: &mut dyn keysentinel_store::WriteTx, id: &str| -> Result<Option<String>, RegistryError> {
        let Ok(id) = OperatorId::parse(id) else { return Ok(None) };
        Ok(tx.operator(&id)?.map(|o| o.created_by))
    };
    Ok(creator(tx, a)?.as_deref() == Some(b) || creator(tx, b)?.as_deref() == Some(a))
}
