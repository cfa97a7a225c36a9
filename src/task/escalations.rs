//! Escalations: a task (and optionally an agent) handed to a human. Raised by callers, or
//! opened by the service inside the change that found the deadlock (a dead letter, an
//! invalid output, a quality gate that keeps refusing, a rejected peer review).

use entity::{agent, escalation, task};
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, sea_query::Expr,
};
use serde_json::json;
use uuid::Uuid;

use super::{
    events::TaskEventKind,
    model::limits,
    service::{EscalationDraft, EscalationFilter, NewEscalation, TaskService, text},
};
use crate::{
    audit::{self, AuditEntry},
    auth::RequestMeta,
    clock,
    error::{AppError, AppResult},
    infra::db::{self, tenant_condition},
    pagination::{Page, PageRequest, keyset_page},
};

impl TaskService {
    pub async fn escalation(&self, scope: Option<&str>, id: Uuid) -> AppResult<escalation::Model> {
        escalation::Entity::find_by_id(id)
            .filter(tenant_condition(escalation::Column::TenantId, scope))
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::not_found("Escalation", id))
    }

    fn escalation_condition(scope: Option<&str>, filter: &EscalationFilter) -> Condition {
        let mut cond = tenant_condition(escalation::Column::TenantId, scope);
        if let Some(status) = filter.status {
            cond =
                cond.add(escalation::Column::Status.eq(escalation::EscalationStatus::from(status)));
        }
        if let Some(task) = filter.task_id {
            cond = cond.add(escalation::Column::TaskId.eq(task));
        }
        cond
    }

    pub async fn list_escalations(
        &self,
        scope: Option<&str>,
        filter: &EscalationFilter,
        page: PageRequest,
    ) -> AppResult<Page<escalation::Model>> {
        let select = escalation::Entity::find().filter(Self::escalation_condition(scope, filter));
        Ok(keyset_page(select, escalation::Column::Id, page, &self.db).await?)
    }

    pub async fn count_escalations(
        &self,
        scope: Option<&str>,
        filter: &EscalationFilter,
    ) -> AppResult<u64> {
        Ok(escalation::Entity::find()
            .filter(Self::escalation_condition(scope, filter))
            .count(&self.db)
            .await?)
    }

    /// Batch lookup for DataLoaders: every escalation of the given tasks, oldest first.
    pub async fn escalations_by_task_ids(
        &self,
        task_ids: &[Uuid],
    ) -> AppResult<Vec<escalation::Model>> {
        Ok(escalation::Entity::find()
            .filter(escalation::Column::TaskId.is_in(task_ids.iter().copied()))
            .order_by_asc(escalation::Column::Id)
            .all(&self.db)
            .await?)
    }

    pub async fn create_escalation(
        &self,
        meta: &RequestMeta,
        input: NewEscalation,
    ) -> AppResult<escalation::Model> {
        let reason = text("reason", &input.reason, limits::REASON_MAX)?;
        let scope = meta.caller.tenant();
        let txn = db::begin_write(&self.db).await?;
        let task = task::Entity::find_by_id(input.task_id)
            .filter(tenant_condition(task::Column::TenantId, scope))
            .one(&txn)
            .await?
            .ok_or_else(|| AppError::not_found("Task", input.task_id))?;
        if let Some(agent_id) = input.agent_id {
            let agent = agent::Entity::find_by_id(agent_id)
                .filter(tenant_condition(agent::Column::TenantId, scope))
                .one(&txn)
                .await?
                .ok_or_else(|| AppError::not_found("Agent", agent_id))?;
            if agent.tenant_id != task.tenant_id {
                return Err(AppError::bad_field(
                    "agentId",
                    "the agent belongs to another tenant than the task",
                ));
            }
        }
        let model = self
            .open_escalation(
                &txn,
                meta,
                &task,
                EscalationDraft {
                    agent_id: input.agent_id,
                    reason,
                    severity: input.severity.into(),
                    pattern: None,
                    suggested_fix: None,
                    cause: "raised",
                },
            )
            .await?;
        txn.commit().await?;
        self.bus.wake();
        Ok(model)
    }

    /// In `txn`: opens an escalation on `task`, audited (`escalation.create`, with its cause)
    /// and announced (`ESCALATED`) with the change that caused it.
    pub(super) async fn open_escalation(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        meta: &RequestMeta,
        task: &task::Model,
        draft: EscalationDraft,
    ) -> AppResult<escalation::Model> {
        let model = escalation::Model {
            id: Uuid::now_v7(),
            task_id: task.id,
            agent_id: draft.agent_id,
            reason: draft.reason,
            severity: draft.severity,
            status: escalation::EscalationStatus::Open,
            resolution: None,
            resolved_by: None,
            tenant_id: task.tenant_id.clone(),
            pattern: draft.pattern,
            suggested_fix: draft.suggested_fix,
            created_by: meta.caller.audit_label(),
            created_at: clock::now(),
            resolved_at: None,
        };
        escalation::Entity::insert(escalation::ActiveModel::from(model.clone()))
            .exec_without_returning(txn)
            .await?;
        audit::record(
            txn,
            meta,
            AuditEntry {
                action: "escalation.create",
                entity_type: "escalation",
                entity_id: Some(model.id.to_string()),
                tenant_id: model.tenant_id.as_deref(),
                details: json!({
                    "taskId": task.id,
                    "severity": model.severity,
                    "pattern": model.pattern,
                    "cause": draft.cause,
                }),
            },
        )
        .await?;
        self.announce(txn, TaskEventKind::Escalated, task.clone())
            .await?;
        Ok(model)
    }

    pub async fn resolve_escalation(
        &self,
        meta: &RequestMeta,
        id: Uuid,
        resolution: &str,
    ) -> AppResult<escalation::Model> {
        let resolution = text("resolution", resolution, limits::RESOLUTION_MAX)?;
        let scope = meta.caller.tenant();
        let txn = db::begin_write(&self.db).await?;
        let mut current = escalation::Entity::find_by_id(id)
            .filter(tenant_condition(escalation::Column::TenantId, scope))
            .one(&txn)
            .await?
            .ok_or_else(|| AppError::not_found("Escalation", id))?;
        let now = clock::now();
        let res = escalation::Entity::update_many()
            .col_expr(
                escalation::Column::Status,
                Expr::value(escalation::EscalationStatus::Resolved),
            )
            .col_expr(
                escalation::Column::Resolution,
                Expr::value(resolution.clone()),
            )
            .col_expr(
                escalation::Column::ResolvedBy,
                Expr::value(meta.caller.audit_label()),
            )
            .col_expr(escalation::Column::ResolvedAt, Expr::value(now))
            .filter(escalation::Column::Id.eq(id))
            .filter(escalation::Column::Status.eq(escalation::EscalationStatus::Open))
            .exec(&txn)
            .await?;
        if res.rows_affected != 1 {
            return Err(AppError::Conflict(
                "the escalation is already resolved".into(),
            ));
        }
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: "escalation.resolve",
                entity_type: "escalation",
                entity_id: Some(id.to_string()),
                tenant_id: current.tenant_id.as_deref(),
                details: json!({ "taskId": current.task_id }),
            },
        )
        .await?;
        if let Some(task) = task::Entity::find_by_id(current.task_id).one(&txn).await? {
            self.announce(&txn, TaskEventKind::EscalationResolved, task)
                .await?;
        }
        txn.commit().await?;
        self.bus.wake();
        current.status = escalation::EscalationStatus::Resolved;
        current.resolution = Some(resolution);
        current.resolved_by = Some(meta.caller.audit_label());
        current.resolved_at = Some(now);
        Ok(current)
    }
}
