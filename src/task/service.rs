//! Task, agent and escalation rules applied in transactions. Every mutation writes its audit
//! row and its event (into the outbox) in the same transaction; the bus relays the event
//! after commit. State changes are
//! conditional updates (`WHERE state = <the state we checked>`), so two racing requests cannot
//! both succeed on a stale read.

use entity::{agent, escalation, task};
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    sea_query::Expr,
};
use serde_json::json;
use uuid::Uuid;

use super::{
    events::{TaskEvent, TaskEventKind},
    model::{
        AgentStatus, EscalationStatus, Severity, TaskState, agent_role, limits, required_text,
    },
};
use crate::{
    audit::{self, AuditEntry},
    auth::RequestMeta,
    clock,
    error::{AppError, AppResult},
    events::{Bus, DomainEvent},
    infra::db::{self, tenant_condition},
    pagination::{Page, PageRequest, keyset_page},
};

/// Input of `createTask`, before validation.
#[derive(Debug, Clone, Default)]
pub struct NewTask {
    pub title: String,
    pub description: Option<String>,
    pub priority: Option<i32>,
}

/// Input of `registerAgent`, before validation.
#[derive(Debug, Clone)]
pub struct NewAgent {
    pub name: String,
    pub role: String,
}

/// Input of `createEscalation`, before validation.
#[derive(Debug, Clone)]
pub struct NewEscalation {
    pub task_id: Uuid,
    pub agent_id: Option<Uuid>,
    pub reason: String,
    pub severity: Severity,
}

/// An escalation the service opens inside another change's transaction.
#[derive(Debug, Clone)]
pub struct EscalationDraft {
    pub agent_id: Option<Uuid>,
    pub reason: String,
    pub severity: escalation::Severity,
    pub pattern: Option<escalation::EscalationPattern>,
    pub suggested_fix: Option<String>,
    /// What opened it, for the audit entry (`dead-lettered`, `quality gate`, …).
    pub cause: &'static str,
}

/// Filters of the `tasks` list.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub state: Option<TaskState>,
    pub assignee_id: Option<Uuid>,
}

/// Filters of the `agents` list.
#[derive(Debug, Clone, Default)]
pub struct AgentFilter {
    pub role: Option<String>,
    pub status: Option<AgentStatus>,
}

/// Filters of the `escalations` list.
#[derive(Debug, Clone, Default)]
pub struct EscalationFilter {
    pub status: Option<EscalationStatus>,
    pub task_id: Option<Uuid>,
}

/// The task domain's operations.
#[derive(Clone)]
pub struct TaskService {
    pub(super) db: DatabaseConnection,
    pub(super) bus: Bus,
}

pub(super) fn text(field: &'static str, value: &str, max: usize) -> AppResult<String> {
    required_text(field, value, max).map_err(|m| AppError::bad_field(field, m))
}

impl TaskService {
    pub fn new(db: DatabaseConnection, bus: Bus) -> Self {
        Self { db, bus }
    }

    /// Writes the task's event through `txn`, the transaction making the change; the bus
    /// relays it once that commits.
    pub(super) async fn announce(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        kind: TaskEventKind,
        task: task::Model,
    ) -> AppResult<()> {
        self.bus
            .append(txn, &DomainEvent::Task(TaskEvent { kind, task }))
            .await?;
        Ok(())
    }

    // ---- tasks -------------------------------------------------------------------------

    fn task_condition(scope: Option<&str>, filter: &TaskFilter) -> Condition {
        let mut cond = tenant_condition(task::Column::TenantId, scope);
        if let Some(state) = filter.state {
            cond = cond.add(task::Column::State.eq(task::TaskState::from(state)));
        }
        if let Some(agent) = filter.assignee_id {
            cond = cond.add(task::Column::AssigneeId.eq(agent));
        }
        cond
    }

    pub async fn list_tasks(
        &self,
        scope: Option<&str>,
        filter: &TaskFilter,
        page: PageRequest,
    ) -> AppResult<Page<task::Model>> {
        let select = task::Entity::find().filter(Self::task_condition(scope, filter));
        Ok(keyset_page(select, task::Column::Id, page, &self.db).await?)
    }

    pub async fn count_tasks(&self, scope: Option<&str>, filter: &TaskFilter) -> AppResult<u64> {
        Ok(task::Entity::find()
            .filter(Self::task_condition(scope, filter))
            .count(&self.db)
            .await?)
    }

    pub async fn task(&self, scope: Option<&str>, id: Uuid) -> AppResult<task::Model> {
        task::Entity::find_by_id(id)
            .filter(tenant_condition(task::Column::TenantId, scope))
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::not_found("Task", id))
    }

    /// Batch lookup for DataLoaders; the caller applies tenant visibility.
    pub async fn tasks_by_ids(&self, ids: &[Uuid]) -> AppResult<Vec<task::Model>> {
        Ok(task::Entity::find()
            .filter(task::Column::Id.is_in(ids.iter().copied()))
            .all(&self.db)
            .await?)
    }

    pub async fn create_task(&self, meta: &RequestMeta, input: NewTask) -> AppResult<task::Model> {
        let title = text("title", &input.title, limits::TITLE_MAX)?;
        let description = match input.description.as_deref() {
            None => None,
            Some(d) if d.trim().is_empty() => None,
            Some(d) => Some(text("description", d, limits::DESCRIPTION_MAX)?),
        };
        let priority = input.priority.unwrap_or(0);
        if !limits::PRIORITY_RANGE.contains(&priority) {
            return Err(AppError::bad_field(
                "priority",
                format!(
                    "priority must be between {} and {}",
                    limits::PRIORITY_RANGE.start(),
                    limits::PRIORITY_RANGE.end()
                ),
            ));
        }
        let now = clock::now();
        let model = task::Model {
            id: Uuid::now_v7(),
            title,
            description,
            state: TaskState::Pending.into(),
            priority,
            assignee_id: None,
            tenant_id: meta.caller.tenant().map(str::to_owned),
            created_by: meta.caller.audit_label(),
            created_at: now,
            updated_at: now,
        };
        let txn = db::begin_write(&self.db).await?;
        task::Entity::insert(task::ActiveModel::from(model.clone()))
            .exec_without_returning(&txn)
            .await?;
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: "task.create",
                entity_type: "task",
                entity_id: Some(model.id.to_string()),
                tenant_id: model.tenant_id.as_deref(),
                details: json!({ "title": model.title, "priority": model.priority }),
            },
        )
        .await?;
        self.announce(&txn, TaskEventKind::Created, model.clone())
            .await?;
        txn.commit().await?;
        self.bus.wake();
        Ok(model)
    }

    pub async fn update_task_state(
        &self,
        meta: &RequestMeta,
        id: Uuid,
        next: TaskState,
    ) -> AppResult<task::Model> {
        let txn = db::begin_write(&self.db).await?;
        let mut current = Self::lock_task(&txn, meta.caller.tenant(), id).await?;
        let from = TaskState::from(current.state);
        if !from.can_move_to(next) {
            let allowed: Vec<String> = from
                .allowed_next()
                .iter()
                .map(ToString::to_string)
                .collect();
            return Err(AppError::bad_field(
                "state",
                format!(
                    "a {from} task cannot move to {next}; allowed: {}",
                    if allowed.is_empty() {
                        "none (terminal state)".to_owned()
                    } else {
                        allowed.join(", ")
                    }
                ),
            ));
        }
        if let Some(refusal) = Self::gate_refusal(&txn, &current, next).await? {
            return Err(self.refuse(txn, meta, current, next, refusal).await?);
        }
        let now = clock::now();
        let previous_agent = current.assignee_id;
        let mut update = task::Entity::update_many()
            .col_expr(
                task::Column::State,
                Expr::value(task::TaskState::from(next)),
            )
            .col_expr(task::Column::UpdatedAt, Expr::value(now));
        if next == TaskState::Pending {
            update = update.col_expr(task::Column::AssigneeId, Expr::value(Option::<Uuid>::None));
            current.assignee_id = None;
        }
        let res = update
            .filter(task::Column::Id.eq(id))
            .filter(task::Column::State.eq(task::TaskState::from(from)))
            .exec(&txn)
            .await?;
        if res.rows_affected != 1 {
            return Err(AppError::Conflict(
                "the task changed concurrently; reload it and retry".into(),
            ));
        }
        if (next.is_finished() || next == TaskState::Pending)
            && let Some(agent_id) = previous_agent
        {
            Self::free_agent(&txn, agent_id, id).await?;
        }
        if from == TaskState::Reviewing {
            self.withdraw_reviews(&txn, meta, &current, next).await?;
        }
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: "task.update_state",
                entity_type: "task",
                entity_id: Some(id.to_string()),
                tenant_id: current.tenant_id.as_deref(),
                details: json!({ "from": from.to_string(), "to": next.to_string() }),
            },
        )
        .await?;
        current.state = next.into();
        current.updated_at = now;
        self.announce(&txn, TaskEventKind::StateChanged, current.clone())
            .await?;
        txn.commit().await?;
        self.bus.wake();
        Ok(current)
    }

    /// Clears `agent_id`'s current task if it is still `task_id`.
    pub(super) async fn free_agent<C: sea_orm::ConnectionTrait>(
        conn: &C,
        agent_id: Uuid,
        task_id: Uuid,
    ) -> AppResult<()> {
        agent::Entity::update_many()
            .col_expr(
                agent::Column::CurrentTaskId,
                Expr::value(Option::<Uuid>::None),
            )
            .col_expr(agent::Column::Status, Expr::value(agent::AgentStatus::Idle))
            .col_expr(agent::Column::UpdatedAt, Expr::value(clock::now()))
            .filter(agent::Column::Id.eq(agent_id))
            .filter(agent::Column::CurrentTaskId.eq(task_id))
            .exec(conn)
            .await?;
        Ok(())
    }

    pub async fn assign_task(
        &self,
        meta: &RequestMeta,
        task_id: Uuid,
        agent_id: Uuid,
    ) -> AppResult<task::Model> {
        let scope = meta.caller.tenant();
        let txn = db::begin_write(&self.db).await?;
        let mut current = task::Entity::find_by_id(task_id)
            .filter(tenant_condition(task::Column::TenantId, scope))
            .one(&txn)
            .await?
            .ok_or_else(|| AppError::not_found("Task", task_id))?;
        let state = TaskState::from(current.state);
        if !state.is_assignable() {
            return Err(AppError::bad_field(
                "taskId",
                format!("only PENDING or ASSIGNED tasks can be assigned; this one is {state}"),
            ));
        }
        let agent = agent::Entity::find_by_id(agent_id)
            .filter(tenant_condition(agent::Column::TenantId, scope))
            .one(&txn)
            .await?
            .ok_or_else(|| AppError::not_found("Agent", agent_id))?;
        if agent.tenant_id != current.tenant_id {
            return Err(AppError::bad_field(
                "agentId",
                "the agent belongs to another tenant than the task",
            ));
        }
        if current.assignee_id == Some(agent_id) {
            return Err(AppError::bad_field(
                "agentId",
                "the task is already assigned to this agent",
            ));
        }
        let now = clock::now();
        let claimed = agent::Entity::update_many()
            .col_expr(agent::Column::CurrentTaskId, Expr::value(Some(task_id)))
            .col_expr(agent::Column::Status, Expr::value(agent::AgentStatus::Busy))
            .col_expr(agent::Column::UpdatedAt, Expr::value(now))
            .filter(agent::Column::Id.eq(agent_id))
            .filter(agent::Column::CurrentTaskId.is_null())
            .exec(&txn)
            .await?;
        if claimed.rows_affected != 1 {
            return Err(AppError::Conflict(
                "the agent is busy with another task".into(),
            ));
        }
        if let Some(previous) = current.assignee_id {
            Self::free_agent(&txn, previous, task_id).await?;
        }
        let res = task::Entity::update_many()
            .col_expr(task::Column::State, Expr::value(task::TaskState::Assigned))
            .col_expr(task::Column::AssigneeId, Expr::value(Some(agent_id)))
            .col_expr(task::Column::UpdatedAt, Expr::value(now))
            .filter(task::Column::Id.eq(task_id))
            .filter(task::Column::State.eq(task::TaskState::from(state)))
            .exec(&txn)
            .await?;
        if res.rows_affected != 1 {
            return Err(AppError::Conflict(
                "the task changed concurrently; reload it and retry".into(),
            ));
        }
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: "task.assign",
                entity_type: "task",
                entity_id: Some(task_id.to_string()),
                tenant_id: current.tenant_id.as_deref(),
                details: json!({ "agentId": agent_id, "previousAgentId": current.assignee_id }),
            },
        )
        .await?;
        current.state = task::TaskState::Assigned;
        current.assignee_id = Some(agent_id);
        current.updated_at = now;
        self.announce(&txn, TaskEventKind::Assigned, current.clone())
            .await?;
        txn.commit().await?;
        self.bus.wake();
        Ok(current)
    }

    // ---- queue consequences ------------------------------------------------------------

    /// In `txn`, the transaction recording a dead letter of task `task_id`: the task moves to
    /// `FAILED` unless it already finished (its agent freed), and an escalation opens with
    /// `reason` (the queue, the attempts, the last error). `None` when the task is gone.
    pub async fn dead_lettered(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        task_id: Uuid,
        reason: String,
    ) -> AppResult<Option<task::Model>> {
        let Some(mut task) = task::Entity::find_by_id(task_id).one(txn).await? else {
            return Ok(None);
        };
        let meta = RequestMeta::system("dead-letter");
        let from = TaskState::from(task.state);
        let now = clock::now();
        if !from.is_finished() {
            task::Entity::update_many()
                .col_expr(task::Column::State, Expr::value(task::TaskState::Failed))
                .col_expr(task::Column::UpdatedAt, Expr::value(now))
                .filter(task::Column::Id.eq(task_id))
                .exec(txn)
                .await?;
            if let Some(agent_id) = task.assignee_id {
                Self::free_agent(txn, agent_id, task_id).await?;
            }
            if from == TaskState::Reviewing {
                self.withdraw_reviews(txn, &meta, &task, TaskState::Failed)
                    .await?;
            }
            audit::record(
                txn,
                &meta,
                AuditEntry {
                    action: "task.update_state",
                    entity_type: "task",
                    entity_id: Some(task_id.to_string()),
                    tenant_id: task.tenant_id.as_deref(),
                    details: json!({ "from": from.to_string(), "to": TaskState::Failed.to_string(), "cause": "dead-lettered" }),
                },
            )
            .await?;
            task.state = task::TaskState::Failed;
            task.updated_at = now;
            self.announce(txn, TaskEventKind::StateChanged, task.clone())
                .await?;
        }
        self.open_escalation(
            txn,
            &meta,
            &task,
            EscalationDraft {
                agent_id: task.assignee_id,
                reason,
                severity: escalation::Severity::High,
                pattern: None,
                suggested_fix: None,
                cause: "dead-lettered",
            },
        )
        .await?;
        Ok(Some(task))
    }

    /// In `txn`, the transaction putting a dead letter of task `task_id` back on its queue:
    /// a `FAILED` task goes back to `PENDING` (unassigned). Other states stay.
    pub async fn requeued(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        meta: &RequestMeta,
        task_id: Uuid,
    ) -> AppResult<()> {
        let Some(mut task) = task::Entity::find_by_id(task_id).one(txn).await? else {
            return Ok(());
        };
        if TaskState::from(task.state) != TaskState::Failed {
            return Ok(());
        }
        let now = clock::now();
        let res = task::Entity::update_many()
            .col_expr(task::Column::State, Expr::value(task::TaskState::Pending))
            .col_expr(task::Column::AssigneeId, Expr::value(Option::<Uuid>::None))
            .col_expr(task::Column::UpdatedAt, Expr::value(now))
            .filter(task::Column::Id.eq(task_id))
            .filter(task::Column::State.eq(task::TaskState::Failed))
            .exec(txn)
            .await?;
        if res.rows_affected != 1 {
            return Ok(());
        }
        audit::record(
            txn,
            meta,
            AuditEntry {
                action: "task.update_state",
                entity_type: "task",
                entity_id: Some(task_id.to_string()),
                tenant_id: task.tenant_id.as_deref(),
                details: json!({ "from": "FAILED", "to": "PENDING", "cause": "dead letter retried" }),
            },
        )
        .await?;
        task.state = task::TaskState::Pending;
        task.assignee_id = None;
        task.updated_at = now;
        self.announce(txn, TaskEventKind::StateChanged, task).await
    }

    // ---- agents ------------------------------------------------------------------------

    fn agent_condition(scope: Option<&str>, filter: &AgentFilter) -> Condition {
        let mut cond = tenant_condition(agent::Column::TenantId, scope);
        if let Some(role) = &filter.role {
            cond = cond.add(agent::Column::Role.eq(role.as_str()));
        }
        if let Some(status) = filter.status {
            cond = cond.add(agent::Column::Status.eq(agent::AgentStatus::from(status)));
        }
        cond
    }

    pub async fn list_agents(
        &self,
        scope: Option<&str>,
        filter: &AgentFilter,
        page: PageRequest,
    ) -> AppResult<Page<agent::Model>> {
        let select = agent::Entity::find().filter(Self::agent_condition(scope, filter));
        Ok(keyset_page(select, agent::Column::Id, page, &self.db).await?)
    }

    pub async fn count_agents(&self, scope: Option<&str>, filter: &AgentFilter) -> AppResult<u64> {
        Ok(agent::Entity::find()
            .filter(Self::agent_condition(scope, filter))
            .count(&self.db)
            .await?)
    }

    pub async fn agent(&self, scope: Option<&str>, id: Uuid) -> AppResult<agent::Model> {
        agent::Entity::find_by_id(id)
            .filter(tenant_condition(agent::Column::TenantId, scope))
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::not_found("Agent", id))
    }

    /// Batch lookup for DataLoaders; the caller applies tenant visibility.
    pub async fn agents_by_ids(&self, ids: &[Uuid]) -> AppResult<Vec<agent::Model>> {
        Ok(agent::Entity::find()
            .filter(agent::Column::Id.is_in(ids.iter().copied()))
            .all(&self.db)
            .await?)
    }

    pub async fn register_agent(
        &self,
        meta: &RequestMeta,
        input: NewAgent,
    ) -> AppResult<agent::Model> {
        let name = text("name", &input.name, limits::AGENT_NAME_MAX)?;
        let role = agent_role(input.role.trim()).map_err(|m| AppError::bad_field("role", m))?;
        let now = clock::now();
        let tenant = meta.caller.tenant().map(str::to_owned);
        let model = agent::Model {
            id: Uuid::now_v7(),
            name,
            role,
            status: agent::AgentStatus::Idle,
            current_task_id: None,
            scope_key: tenant.clone().unwrap_or_default(),
            tenant_id: tenant,
            created_at: now,
            updated_at: now,
        };
        let txn = db::begin_write(&self.db).await?;
        let inserted = agent::Entity::insert(agent::ActiveModel::from(model.clone()))
            .exec_without_returning(&txn)
            .await;
        if let Err(e) = inserted {
            return Err(match AppError::from(e) {
                AppError::Conflict(_) => AppError::Conflict(format!(
                    "an agent named `{}` is already registered",
                    model.name
                )),
                other => other,
            });
        }
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: "agent.register",
                entity_type: "agent",
                entity_id: Some(model.id.to_string()),
                tenant_id: model.tenant_id.as_deref(),
                details: json!({ "name": model.name, "role": model.role }),
            },
        )
        .await?;
        txn.commit().await?;
        self.bus.wake();
        Ok(model)
    }
}
