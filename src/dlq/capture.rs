//! Recording a dead letter with its consequences, in the caller's transaction: the
//! `dlq_messages` row (once per stream and sequence: a second capture of the same message
//! changes nothing), the task to `FAILED`, its live budget reservations released, an
//! escalation with the last error, the audit entry and the `dlqMessageAdded` event. Both
//! queue stores call this before they let the message go.

use chrono::{DateTime, Utc};
use entity::dlq_message;
use sea_orm::{DatabaseTransaction, EntityTrait, sea_query::OnConflict};
use serde_json::json;
use uuid::Uuid;

use super::{
    events::{DlqEvent, DlqEventKind},
    model::{DeadReason, read_errors},
};
use crate::{
    audit::{self, AuditEntry},
    auth::RequestMeta,
    budget::service::BudgetService,
    error::AppResult,
    events::{Bus, DomainEvent},
    task::service::TaskService,
};

/// A message leaving its queue for the DLQ, as the store knows it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub queue: String,
    pub subject: String,
    /// The JetStream stream, or `database`.
    pub stream: String,
    pub stream_seq: i64,
    pub task_id: Uuid,
    pub tenant_id: Option<String>,
    pub headers: serde_json::Value,
    pub payload: Option<String>,
    pub reason: DeadReason,
    pub attempts: i32,
    /// JSON array of the errors workers reported.
    pub errors: String,
    pub first_delivered_at: Option<DateTime<Utc>>,
    pub last_delivered_at: Option<DateTime<Utc>>,
}

/// What a dead letter does to the rest of the system.
#[derive(Clone)]
pub struct Consequences {
    tasks: TaskService,
    budgets: BudgetService,
    bus: Bus,
}

impl Consequences {
    pub fn new(tasks: TaskService, budgets: BudgetService, bus: Bus) -> Self {
        Self {
            tasks,
            budgets,
            bus,
        }
    }

    /// Records `letter` in `txn`. `None` when this message was recorded before (by this
    /// replica or another): nothing is written then.
    pub async fn record(
        &self,
        txn: &DatabaseTransaction,
        letter: DeadLetter,
        now: DateTime<Utc>,
    ) -> AppResult<Option<dlq_message::Model>> {
        let last_error = read_errors(&letter.errors).pop().map(|e| e.error);
        let row = dlq_message::Model {
            id: Uuid::now_v7(),
            queue: letter.queue,
            subject: letter.subject,
            stream: letter.stream,
            stream_seq: letter.stream_seq,
            task_id: letter.task_id,
            tenant_id: letter.tenant_id,
            headers: letter.headers.to_string(),
            payload: letter.payload,
            reason: letter.reason.into(),
            attempts: letter.attempts,
            errors: letter.errors,
            last_error,
            first_delivered_at: letter.first_delivered_at,
            last_delivered_at: letter.last_delivered_at,
            dead_at: now,
            status: dlq_message::DlqStatus::Open,
            note: None,
            resolved_by: None,
            resolved_at: None,
            redrive_id: None,
        };
        let inserted = dlq_message::Entity::insert(dlq_message::ActiveModel::from(row.clone()))
            .on_conflict(
                OnConflict::columns([dlq_message::Column::Stream, dlq_message::Column::StreamSeq])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
        if inserted == 0 {
            return Ok(None);
        }
        let why = match letter.reason {
            DeadReason::MaxDeliveries => format!("failed all {} deliveries", row.attempts),
            DeadReason::Rejected => format!("rejected as poison on delivery {}", row.attempts),
        };
        let reason = format!(
            "task message dead-lettered from queue {}: {why}; last error: {}",
            row.queue,
            row.last_error.as_deref().unwrap_or("none reported")
        );
        self.tasks.dead_lettered(txn, row.task_id, reason).await?;
        let released = self.budgets.release_for_task(txn, row.task_id, now).await?;
        audit::record(
            txn,
            &RequestMeta::system("dead-letter"),
            AuditEntry {
                action: "dlq.capture",
                entity_type: "dlq_message",
                entity_id: Some(row.id.to_string()),
                tenant_id: row.tenant_id.as_deref(),
                details: json!({
                    "queue": row.queue, "taskId": row.task_id, "streamSeq": row.stream_seq,
                    "reason": row.reason, "attempts": row.attempts, "reservationsReleased": released,
                }),
            },
        )
        .await?;
        self.bus
            .append(
                txn,
                &DomainEvent::Dlq(DlqEvent {
                    kind: DlqEventKind::Added,
                    message: row.clone(),
                }),
            )
            .await?;
        Ok(Some(row))
    }
}
