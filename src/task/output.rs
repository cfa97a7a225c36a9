//! Task outputs: an agent submits its model's text for a task; the text has been validated
//! (and where it could be, repaired) as an LLM output kind by `crate::llm`. A valid output is
//! stored on the task and completes it; one that stays invalid blocks the task and opens an
//! escalation carrying the errors, in the same transaction. Idempotent by `requestId`.

use entity::{escalation, task, task_output};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, sea_query::Expr};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::{events::TaskEventKind, model::TaskState, service::TaskService};
use crate::{
    audit::{self, AuditEntry},
    auth::RequestMeta,
    clock,
    error::{AppError, AppResult},
    idempotency,
    infra::db,
    llm::service::Validation,
};

/// Errors quoted in an escalation's reason, at most.
const QUOTED_ERRORS: usize = 10;

/// What `submitTaskOutput` answers (and replays).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Submitted {
    pub task: task::Model,
    pub output: task_output::Model,
    pub escalation: Option<escalation::Model>,
}

fn to_json(value: &impl Serialize) -> AppResult<String> {
    serde_json::to_string(value)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("encoding a task output: {e}")))
}

impl TaskService {
    /// Records `validation` (of `text`) as task `task_id`'s output. The task must be
    /// `IN_PROGRESS`: a valid output completes it (unless quality gates guarding COMPLETED
    /// refuse: `GATE_FAILED`, nothing recorded), an invalid one blocks it and opens an
    /// escalation with the errors.
    pub async fn submit_output(
        &self,
        meta: &RequestMeta,
        task_id: Uuid,
        text: &str,
        validation: Validation,
        request_id: &str,
    ) -> AppResult<Submitted> {
        let key = idempotency::Key::new(
            &meta.caller,
            request_id,
            "submitTaskOutput",
            &json!([task_id, validation.kind, text]),
        )?;
        let now = clock::now();
        let txn = db::begin_write(&self.db).await?;
        if let Some(previous) = idempotency::claim::<Submitted>(&txn, &key, None, now).await? {
            return Ok(previous);
        }
        let mut task = Self::lock_task(&txn, meta.caller.tenant(), task_id).await?;
        let from = TaskState::from(task.state);
        if from != TaskState::InProgress {
            return Err(AppError::Conflict(format!(
                "a {from} task takes no output; only an IN_PROGRESS task does"
            )));
        }
        let next = if validation.valid {
            TaskState::Completed
        } else {
            TaskState::Blocked
        };
        if let Some(refusal) = Self::gate_refusal(&txn, &task, next).await? {
            // The refusal commits its plan, not this call's answer: the key goes back so
            // the same request can be retried once the gates hold.
            idempotency::release(&txn, &key).await?;
            return Err(self.refuse(txn, meta, task, next, refusal).await?);
        }
        let moved = task::Entity::update_many()
            .col_expr(
                task::Column::State,
                Expr::value(task::TaskState::from(next)),
            )
            .col_expr(task::Column::UpdatedAt, Expr::value(now))
            .filter(task::Column::Id.eq(task_id))
            .filter(task::Column::State.eq(task::TaskState::InProgress))
            .exec(&txn)
            .await?;
        if moved.rows_affected != 1 {
            return Err(AppError::Conflict(
                "the task changed concurrently; reload it and retry".into(),
            ));
        }
        task.state = next.into();
        task.updated_at = now;
        if next == TaskState::Completed
            && let Some(agent_id) = task.assignee_id
        {
            Self::free_agent(&txn, agent_id, task_id).await?;
        }
        let escalation = if validation.valid {
            None
        } else {
            let quoted: Vec<String> = validation
                .errors
                .iter()
                .take(QUOTED_ERRORS)
                .map(|e| {
                    if e.pointer.is_empty() {
                        e.message.clone()
                    } else {
                        format!("{}: {}", e.pointer, e.message)
                    }
                })
                .collect();
            let more = validation.errors.len().saturating_sub(QUOTED_ERRORS);
            let reason = format!(
                "output of kind {} is invalid{}: {}{}",
                validation.kind,
                if validation.fixes.is_empty() {
                    ""
                } else {
                    " after repair"
                },
                quoted.join("; "),
                if more > 0 {
                    format!(" (and {more} more)")
                } else {
                    String::new()
                }
            );
            let e = escalation::Model {
                id: Uuid::now_v7(),
                task_id,
                agent_id: task.assignee_id,
                reason,
                severity: escalation::Severity::Medium,
                status: escalation::EscalationStatus::Open,
                resolution: None,
                resolved_by: None,
                tenant_id: task.tenant_id.clone(),
                pattern: None,
                suggested_fix: None,
                created_by: meta.caller.audit_label(),
                created_at: now,
                resolved_at: None,
            };
            escalation::Entity::insert(escalation::ActiveModel::from(e.clone()))
                .exec_without_returning(&txn)
                .await?;
            Some(e)
        };
        let output = task_output::Model {
            id: Uuid::now_v7(),
            task_id,
            kind: validation.kind.clone(),
            valid: validation.valid,
            value: validation.value.as_ref().map(ToString::to_string),
            errors: to_json(&validation.errors)?,
            fixes: to_json(&validation.fixes)?,
            escalation_id: escalation.as_ref().map(|e| e.id),
            submitted_by: meta.caller.audit_label(),
            created_at: now,
        };
        task_output::Entity::insert(task_output::ActiveModel::from(output.clone()))
            .exec_without_returning(&txn)
            .await?;
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: "task.submit_output",
                entity_type: "task",
                entity_id: Some(task_id.to_string()),
                tenant_id: task.tenant_id.as_deref(),
                details: json!({
                    "kind": validation.kind,
                    "valid": validation.valid,
                    "repaired": validation.repaired,
                    "fixes": validation.fixes.len(),
                    "errors": validation.errors.len(),
                    "from": from.to_string(),
                    "to": next.to_string(),
                    "escalationId": escalation.as_ref().map(|e| e.id),
                }),
            },
        )
        .await?;
        self.announce(&txn, TaskEventKind::StateChanged, task.clone())
            .await?;
        if escalation.is_some() {
            self.announce(&txn, TaskEventKind::Escalated, task.clone())
                .await?;
        }
        let answer = Submitted {
            task,
            output,
            escalation,
        };
        idempotency::store(&txn, &key, &answer).await?;
        txn.commit().await?;
        self.bus.wake();
        Ok(answer)
    }

    /// A task's outputs, newest first.
    pub async fn outputs(
        &self,
        scope: Option<&str>,
        task_id: Uuid,
    ) -> AppResult<Vec<task_output::Model>> {
        self.task(scope, task_id).await?;
        Ok(task_output::Entity::find()
            .filter(task_output::Column::TaskId.eq(task_id))
            .order_by_desc(task_output::Column::Id)
            .all(&self.db)
            .await?)
    }
}
