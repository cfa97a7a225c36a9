//! Quality gates in the task lifecycle: their configuration, the results agents report, the
//! check every gated move goes through, and the remediation plan a refusal writes.
//!
//! A gated move and everything it writes happen under the task's row lock (PostgreSQL
//! `FOR UPDATE`; SQLite's single writer), so two refusals racing on one task cannot both
//! create a plan or lose a refusal count.

use std::collections::HashMap;

use entity::{remediation_action, remediation_plan, task, task_gate, task_gate_result};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
    sea_query::{Expr, ExprTrait, OnConflict},
};
use serde_json::json;
use uuid::Uuid;

use super::model::{self, ActionType, Failure, GATEABLE, Gate, gate_name, limits};
use crate::{
    audit::{self, AuditEntry},
    auth::RequestMeta,
    clock,
    error::{AppError, AppResult},
    infra::db::{self, tenant_condition},
    task::{
        events::TaskEventKind,
        model::{TaskState, agent_role},
        service::{EscalationDraft, TaskService},
    },
};

/// Input of `configureTaskGate`: what to change (absent fields keep their value; a new gate
/// needs `targets`).
#[derive(Debug, Clone, Default)]
pub struct GateSettings {
    pub gate: String,
    pub targets: Option<Vec<TaskState>>,
    pub action: Option<ActionType>,
    pub priority: Option<i32>,
    pub agent_role: Option<String>,
    pub escalate_after: Option<i32>,
    pub satisfied_by_review: Option<bool>,
    pub enabled: Option<bool>,
}

/// A remediation plan and its actions, highest priority (lowest number) first.
#[derive(Debug, Clone)]
pub struct Plan {
    pub plan: remediation_plan::Model,
    pub actions: Vec<remediation_action::Model>,
}

/// Gates refusing a move, with why.
pub(in crate::task) struct Refusal {
    pub failing: Vec<(Gate, Failure)>,
}

fn gate_field(value: &str) -> AppResult<String> {
    gate_name(value).map_err(|m| AppError::bad_field("gate", m))
}

fn gate_json(g: &Gate) -> serde_json::Value {
    json!({
        "targets": g.targets.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "actionType": async_graphql::resolver_utils::enum_value(g.remedy.action),
        "priority": g.remedy.priority,
        "agentRole": g.remedy.agent_role,
        "escalateAfter": g.escalate_after,
        "satisfiedByReview": g.satisfied_by_review,
        "enabled": g.enabled,
    })
}

/// Counts a gate's refusal on `/metrics` (`aurum_gate_failures_total{gate}`).
fn count_failure(gate: &str) {
    metrics::counter!("aurum_gate_failures_total", "gate" => gate.to_owned()).increment(1);
}

impl TaskService {
    /// The task, visible to `scope`, locked for the rest of `txn`.
    pub(in crate::task) async fn lock_task(
        txn: &DatabaseTransaction,
        scope: Option<&str>,
        id: Uuid,
    ) -> AppResult<task::Model> {
        db::for_update(
            task::Entity::find_by_id(id).filter(tenant_condition(task::Column::TenantId, scope)),
            txn,
        )
        .one(txn)
        .await?
        .ok_or_else(|| AppError::not_found("Task", id))
    }

    pub(in crate::task) async fn gates_in<C: ConnectionTrait>(conn: &C) -> AppResult<Vec<Gate>> {
        let rows = task_gate::Entity::find().all(conn).await?;
        Ok(model::effective_gates(&rows))
    }

    /// The gates in force (defaults and configured), by name.
    pub async fn gates(&self) -> AppResult<Vec<Gate>> {
        Self::gates_in(&self.db).await
    }

    /// Changes (or adds) a gate; fleet-wide, so tenant-scoped callers may not. Audited with
    /// the values before and after.
    pub async fn configure_gate(&self, meta: &RequestMeta, input: GateSettings) -> AppResult<Gate> {
        if meta.caller.tenant().is_some() {
            return Err(AppError::Forbidden);
        }
        let name = gate_field(&input.gate)?;
        let targets = input
            .targets
            .map(|t| {
                let mut states: Vec<TaskState> = Vec::new();
                for s in t {
                    if !GATEABLE.contains(&s) {
                        return Err(AppError::bad_field(
                            "targetStates",
                            format!("gates guard REVIEWING, DEPLOYING or COMPLETED, not {s}"),
                        ));
                    }
                    if !states.contains(&s) {
                        states.push(s);
                    }
                }
                if states.is_empty() {
                    return Err(AppError::bad_field(
                        "targetStates",
                        "name at least one state (or set enabled: false)",
                    ));
                }
                Ok(states)
            })
            .transpose()?;
        if let Some(p) = input.priority
            && !limits::PRIORITY.contains(&p)
        {
            return Err(AppError::bad_field("priority", "priority must be 1-100"));
        }
        if let Some(n) = input.escalate_after
            && !limits::ESCALATE_AFTER.contains(&n)
        {
            return Err(AppError::bad_field(
                "escalateAfter",
                "escalateAfter must be 0 (never) to 100",
            ));
        }
        let role = input
            .agent_role
            .as_deref()
            .map(|r| agent_role(r.trim()).map_err(|m| AppError::bad_field("agentRole", m)))
            .transpose()?;
        let now = clock::now();
        let txn = db::begin_write(&self.db).await?;
        let current = Self::gates_in(&txn)
            .await?
            .into_iter()
            .find(|g| g.name == name);
        let before = current.as_ref().map(gate_json);
        let mut gate = match current {
            Some(g) => g,
            None => Gate {
                name: name.clone(),
                targets: targets.clone().ok_or_else(|| {
                    AppError::bad_field("targetStates", "a new gate needs targetStates")
                })?,
                remedy: model::default_remedy(&name),
                escalate_after: model::DEFAULT_ESCALATE_AFTER,
                satisfied_by_review: false,
                enabled: true,
                configured: true,
            },
        };
        if let Some(t) = targets {
            gate.targets = t;
        }
        if let Some(a) = input.action {
            gate.remedy.action = a;
        }
        if let Some(p) = input.priority {
            gate.remedy.priority = p;
        }
        if let Some(r) = role {
            gate.remedy.agent_role = r;
        }
        if let Some(n) = input.escalate_after {
            gate.escalate_after = n;
        }
        if let Some(b) = input.satisfied_by_review {
            gate.satisfied_by_review = b;
        }
        if let Some(b) = input.enabled {
            gate.enabled = b;
        }
        gate.configured = true;
        let row = task_gate::ActiveModel {
            name: Set(gate.name.clone()),
            targets: Set(task_gate::TargetStates(
                gate.targets.iter().copied().map(Into::into).collect(),
            )),
            action_type: Set(gate.remedy.action.into()),
            priority: Set(gate.remedy.priority),
            agent_role: Set(gate.remedy.agent_role.clone()),
            escalate_after: Set(gate.escalate_after),
            satisfied_by_review: Set(gate.satisfied_by_review),
            enabled: Set(gate.enabled),
            updated_by: Set(meta.caller.audit_label()),
            created_at: Set(now),
            updated_at: Set(now),
        };
        task_gate::Entity::insert(row)
            .on_conflict(
                OnConflict::column(task_gate::Column::Name)
                    .update_columns([
                        task_gate::Column::Targets,
                        task_gate::Column::ActionType,
                        task_gate::Column::Priority,
                        task_gate::Column::AgentRole,
                        task_gate::Column::EscalateAfter,
                        task_gate::Column::SatisfiedByReview,
                        task_gate::Column::Enabled,
                        task_gate::Column::UpdatedBy,
                        task_gate::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: "task_gate.configure",
                entity_type: "task_gate",
                entity_id: Some(gate.name.clone()),
                tenant_id: None,
                details: json!({ "before": before, "after": gate_json(&gate) }),
            },
        )
        .await?;
        txn.commit().await?;
        Ok(gate)
    }

    /// Records a gate's result on a task (the latest result is the one that counts). A pass
    /// resets the gate's refusal count and completes the active plan's action for the gate
    /// (the plan is RESOLVED once none is open).
    pub async fn report_gate_result(
        &self,
        meta: &RequestMeta,
        task_id: Uuid,
        gate: &str,
        passed: bool,
        detail: Option<&str>,
    ) -> AppResult<task_gate_result::Model> {
        let gate = gate_field(gate)?;
        let detail = match detail.map(str::trim) {
            None | Some("") => None,
            Some(d) => Some(
                crate::task::model::required_text("detail", d, limits::DETAIL_MAX)
                    .map_err(|m| AppError::bad_field("detail", m))?,
            ),
        };
        let txn = db::begin_write(&self.db).await?;
        let task = Self::lock_task(&txn, meta.caller.tenant(), task_id).await?;
        if !Self::gates_in(&txn).await?.iter().any(|g| g.name == gate) {
            return Err(AppError::bad_field(
                "gate",
                format!("no gate is named `{gate}`; taskGates lists them"),
            ));
        }
        let by = meta.caller.audit_label();
        let result = self
            .record_result(&txn, &task, &gate, passed, detail.clone(), &by)
            .await?;
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: "task.gate_report",
                entity_type: "task",
                entity_id: Some(task.id.to_string()),
                tenant_id: task.tenant_id.as_deref(),
                details: json!({ "gate": gate, "passed": passed, "detail": detail }),
            },
        )
        .await?;
        self.announce(&txn, TaskEventKind::GateReported, task)
            .await?;
        txn.commit().await?;
        self.bus.wake();
        Ok(result)
    }

    /// In `txn` (holding the task's lock): stores a result for `gate` and, for a pass, ticks
    /// off the active plan's action for it. Shared by reports and by completed reviews.
    pub(in crate::task) async fn record_result(
        &self,
        txn: &DatabaseTransaction,
        task: &task::Model,
        gate: &str,
        passed: bool,
        detail: Option<String>,
        by: &str,
    ) -> AppResult<task_gate_result::Model> {
        let now = clock::now();
        let mut update = vec![
            task_gate_result::Column::Passed,
            task_gate_result::Column::Detail,
            task_gate_result::Column::ReportedBy,
            task_gate_result::Column::ReportedAt,
            task_gate_result::Column::UpdatedAt,
        ];
        if passed {
            update.push(task_gate_result::Column::ConsecutiveFailures);
        }
        task_gate_result::Entity::insert(task_gate_result::ActiveModel {
            task_id: Set(task.id),
            gate: Set(gate.to_owned()),
            tenant_id: Set(task.tenant_id.clone()),
            passed: Set(Some(passed)),
            detail: Set(detail),
            reported_by: Set(Some(by.to_owned())),
            reported_at: Set(Some(now)),
            consecutive_failures: Set(0),
            updated_at: Set(now),
        })
        .on_conflict(
            OnConflict::columns([
                task_gate_result::Column::TaskId,
                task_gate_result::Column::Gate,
            ])
            .update_columns(update)
            .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
        if passed && let Some(plan) = Self::active_plan(txn, task.id).await? {
            remediation_action::Entity::update_many()
                .col_expr(
                    remediation_action::Column::Status,
                    Expr::value(remediation_action::ActionStatus::Done),
                )
                .col_expr(remediation_action::Column::DoneBy, Expr::value(by))
                .col_expr(remediation_action::Column::DoneAt, Expr::value(now))
                .filter(remediation_action::Column::PlanId.eq(plan.id))
                .filter(remediation_action::Column::Gate.eq(gate))
                .filter(
                    remediation_action::Column::Status.eq(remediation_action::ActionStatus::Open),
                )
                .exec(txn)
                .await?;
            let open = remediation_action::Entity::find()
                .filter(remediation_action::Column::PlanId.eq(plan.id))
                .filter(
                    remediation_action::Column::Status.eq(remediation_action::ActionStatus::Open),
                )
                .one(txn)
                .await?;
            if open.is_none() {
                remediation_plan::Entity::update_many()
                    .col_expr(
                        remediation_plan::Column::Status,
                        Expr::value(remediation_plan::PlanStatus::Resolved),
                    )
                    .col_expr(remediation_plan::Column::ClosedAt, Expr::value(now))
                    .filter(remediation_plan::Column::Id.eq(plan.id))
                    .exec(txn)
                    .await?;
            }
        }
        Self::result_row(txn, task.id, gate).await
    }

    /// The gate's result row, just written in `txn`.
    async fn result_row(
        txn: &DatabaseTransaction,
        task_id: Uuid,
        gate: &str,
    ) -> AppResult<task_gate_result::Model> {
        task_gate_result::Entity::find_by_id((task_id, gate.to_owned()))
            .one(txn)
            .await?
            .ok_or_else(|| {
                AppError::Internal(anyhow::anyhow!("gate result vanished in its transaction"))
            })
    }

    async fn active_plan<C: ConnectionTrait>(
        conn: &C,
        task_id: Uuid,
    ) -> AppResult<Option<remediation_plan::Model>> {
        Ok(remediation_plan::Entity::find()
            .filter(remediation_plan::Column::TaskId.eq(task_id))
            .filter(remediation_plan::Column::Status.eq(remediation_plan::PlanStatus::Active))
            .one(conn)
            .await?)
    }

    async fn results_in<C: ConnectionTrait>(
        conn: &C,
        task_id: Uuid,
    ) -> AppResult<HashMap<String, task_gate_result::Model>> {
        Ok(task_gate_result::Entity::find()
            .filter(task_gate_result::Column::TaskId.eq(task_id))
            .all(conn)
            .await?
            .into_iter()
            .map(|r| (r.gate.clone(), r))
            .collect())
    }

    /// In `txn`: the gates refusing `task`'s move to `next`, if any do.
    pub(in crate::task) async fn gate_refusal(
        txn: &DatabaseTransaction,
        task: &task::Model,
        next: TaskState,
    ) -> AppResult<Option<Refusal>> {
        let gates = Self::gates_in(txn).await?;
        if !gates.iter().any(|g| g.guards(next)) {
            return Ok(None);
        }
        let results = Self::results_in(txn, task.id).await?;
        let failing: Vec<(Gate, Failure)> = model::failing(&gates, next, &results)
            .into_iter()
            .map(|(g, f)| (g.clone(), f))
            .collect();
        Ok((!failing.is_empty()).then_some(Refusal { failing }))
    }

    /// Each gate guarding `target` for the task, and why it does not hold (`None`: it holds).
    pub async fn gate_check(
        &self,
        scope: Option<&str>,
        task_id: Uuid,
        target: TaskState,
    ) -> AppResult<Vec<(Gate, Option<Failure>)>> {
        let task = self.task(scope, task_id).await?;
        let gates = self.gates().await?;
        let results = Self::results_in(&self.db, task.id).await?;
        let failing = model::failing(&gates, target, &results);
        Ok(gates
            .iter()
            .filter(|g| g.guards(target))
            .map(|g| {
                let why = failing
                    .iter()
                    .find(|(f, _)| f.name == g.name)
                    .map(|(_, why)| why.clone());
                (g.clone(), why)
            })
            .collect())
    }

    /// Finishes a move the gates refused, in its transaction, and says what to answer:
    /// writes the remediation plan (unless one is active: that one is only replaced
    /// explicitly), counts the refusal per gate (escalating a gate that reached its
    /// threshold), sends the task back to IN_PROGRESS, audits, announces, commits.
    pub(in crate::task) async fn refuse(
        &self,
        txn: DatabaseTransaction,
        meta: &RequestMeta,
        mut task: task::Model,
        next: TaskState,
        refusal: Refusal,
    ) -> AppResult<AppError> {
        let from = TaskState::from(task.state);
        let now = clock::now();
        let (plan_id, plan_created) = match Self::active_plan(&txn, task.id).await? {
            Some(plan) => (plan.id, false),
            None => {
                let plan = Self::write_plan(&txn, meta, &task, next, &refusal.failing).await?;
                (plan.plan.id, true)
            }
        };
        for (gate, failure) in &refusal.failing {
            let counted = self.count_refusal(&txn, &task, &gate.name).await?;
            let ever_reported = counted.passed.is_some();
            if let Some((pattern, reason, fix)) =
                model::gate_deadlock(gate, next, counted.consecutive_failures, ever_reported)
            {
                self.open_escalation(
                    &txn,
                    meta,
                    &task,
                    EscalationDraft {
                        agent_id: task.assignee_id,
                        reason: format!("{reason} (last: {})", failure.describe()),
                        severity: entity::escalation::Severity::High,
                        pattern: Some(pattern.into()),
                        suggested_fix: Some(fix),
                        cause: "quality gate",
                    },
                )
                .await?;
            }
        }
        let moved = from != TaskState::InProgress;
        if moved {
            task::Entity::update_many()
                .col_expr(
                    task::Column::State,
                    Expr::value(task::TaskState::InProgress),
                )
                .col_expr(task::Column::UpdatedAt, Expr::value(now))
                .filter(task::Column::Id.eq(task.id))
                .exec(&txn)
                .await?;
            task.state = task::TaskState::InProgress;
            task.updated_at = now;
            if from == TaskState::Reviewing {
                self.withdraw_reviews(&txn, meta, &task, TaskState::InProgress)
                    .await?;
            }
        }
        let gates: Vec<String> = refusal
            .failing
            .iter()
            .map(|(g, _)| g.name.clone())
            .collect();
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: "task.gate_refused",
                entity_type: "task",
                entity_id: Some(task.id.to_string()),
                tenant_id: task.tenant_id.as_deref(),
                details: json!({
                    "from": from.to_string(),
                    "to": next.to_string(),
                    "now": TaskState::from(task.state).to_string(),
                    "failingGates": refusal.failing.iter().map(|(g, f)| json!({ "gate": g.name, "why": f.describe() })).collect::<Vec<_>>(),
                    "planId": plan_id,
                    "planCreated": plan_created,
                }),
            },
        )
        .await?;
        if plan_created {
            self.announce(&txn, TaskEventKind::RemediationPlanned, task.clone())
                .await?;
        } else if moved {
            self.announce(&txn, TaskEventKind::StateChanged, task.clone())
                .await?;
        }
        txn.commit().await?;
        self.bus.wake();
        for g in &gates {
            count_failure(g);
        }
        Ok(AppError::GateFailed {
            target: next.to_string(),
            gates: refusal
                .failing
                .iter()
                .map(|(g, f)| (g.name.clone(), f.describe()))
                .collect(),
            plan_id,
            plan_created,
        })
    }

    /// Adds one refusal to the gate's count on the task (creating its row, unreported, when
    /// missing) and returns the row.
    async fn count_refusal(
        &self,
        txn: &DatabaseTransaction,
        task: &task::Model,
        gate: &str,
    ) -> AppResult<task_gate_result::Model> {
        let now = clock::now();
        task_gate_result::Entity::insert(task_gate_result::ActiveModel {
            task_id: Set(task.id),
            gate: Set(gate.to_owned()),
            tenant_id: Set(task.tenant_id.clone()),
            passed: Set(None),
            detail: Set(None),
            reported_by: Set(None),
            reported_at: Set(None),
            consecutive_failures: Set(1),
            updated_at: Set(now),
        })
        .on_conflict(
            OnConflict::columns([
                task_gate_result::Column::TaskId,
                task_gate_result::Column::Gate,
            ])
            .value(
                task_gate_result::Column::ConsecutiveFailures,
                Expr::col((
                    task_gate_result::Entity,
                    task_gate_result::Column::ConsecutiveFailures,
                ))
                .add(Expr::value(1)),
            )
            .value(task_gate_result::Column::UpdatedAt, Expr::value(now))
            .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
        Self::result_row(txn, task.id, gate).await
    }

    /// Writes an ACTIVE plan for `task` with one action per failing gate, from each gate's
    /// remedy.
    async fn write_plan(
        txn: &DatabaseTransaction,
        meta: &RequestMeta,
        task: &task::Model,
        target: TaskState,
        failing: &[(Gate, Failure)],
    ) -> AppResult<Plan> {
        let plan = remediation_plan::Model {
            id: Uuid::now_v7(),
            task_id: task.id,
            tenant_id: task.tenant_id.clone(),
            target_state: target.into(),
            status: remediation_plan::PlanStatus::Active,
            created_by: meta.caller.audit_label(),
            created_at: clock::now(),
            closed_at: None,
            superseded_by: None,
        };
        remediation_plan::Entity::insert(remediation_plan::ActiveModel::from(plan.clone()))
            .exec_without_returning(txn)
            .await?;
        let mut actions: Vec<remediation_action::Model> = failing
            .iter()
            .map(|(g, f)| remediation_action::Model {
                id: Uuid::now_v7(),
                plan_id: plan.id,
                task_id: task.id,
                gate: g.name.clone(),
                action_type: g.remedy.action.into(),
                priority: g.remedy.priority,
                agent_role: g.remedy.agent_role.clone(),
                reason: f.describe(),
                status: remediation_action::ActionStatus::Open,
                done_by: None,
                done_at: None,
            })
            .collect();
        actions.sort_by(|a, b| a.priority.cmp(&b.priority).then(a.gate.cmp(&b.gate)));
        remediation_action::Entity::insert_many(
            actions
                .iter()
                .cloned()
                .map(remediation_action::ActiveModel::from),
        )
        .exec_without_returning(txn)
        .await?;
        Ok(Plan { plan, actions })
    }

    /// Replaces the task's active plan (if any) with a new one for the gates refusing
    /// `target` now; the old plan becomes SUPERSEDED. `BAD_USER_INPUT` when every gate holds.
    pub async fn replace_plan(
        &self,
        meta: &RequestMeta,
        task_id: Uuid,
        target: TaskState,
    ) -> AppResult<Plan> {
        if !GATEABLE.contains(&target) {
            return Err(AppError::bad_field(
                "targetState",
                format!("gates guard REVIEWING, DEPLOYING or COMPLETED, not {target}"),
            ));
        }
        let txn = db::begin_write(&self.db).await?;
        let task = Self::lock_task(&txn, meta.caller.tenant(), task_id).await?;
        let Some(refusal) = Self::gate_refusal(&txn, &task, target).await? else {
            return Err(AppError::bad_field(
                "targetState",
                format!("every gate guarding {target} holds: there is nothing to plan"),
            ));
        };
        let old = Self::active_plan(&txn, task.id).await?;
        let plan = Self::write_plan(&txn, meta, &task, target, &refusal.failing).await?;
        if let Some(old) = &old {
            remediation_plan::Entity::update_many()
                .col_expr(
                    remediation_plan::Column::Status,
                    Expr::value(remediation_plan::PlanStatus::Superseded),
                )
                .col_expr(
                    remediation_plan::Column::ClosedAt,
                    Expr::value(clock::now()),
                )
                .col_expr(
                    remediation_plan::Column::SupersededBy,
                    Expr::value(Some(plan.plan.id)),
                )
                .filter(remediation_plan::Column::Id.eq(old.id))
                .exec(&txn)
                .await?;
        }
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: "remediation.replace",
                entity_type: "task",
                entity_id: Some(task.id.to_string()),
                tenant_id: task.tenant_id.as_deref(),
                details: json!({
                    "target": target.to_string(),
                    "planId": plan.plan.id,
                    "replaced": old.map(|o| o.id),
                }),
            },
        )
        .await?;
        self.announce(&txn, TaskEventKind::RemediationPlanned, task)
            .await?;
        txn.commit().await?;
        self.bus.wake();
        Ok(plan)
    }

    /// Batch lookup for DataLoaders: the active plan of each task that has one.
    pub async fn active_plans_by_task_ids(&self, ids: &[Uuid]) -> AppResult<Vec<Plan>> {
        let plans = remediation_plan::Entity::find()
            .filter(remediation_plan::Column::TaskId.is_in(ids.iter().copied()))
            .filter(remediation_plan::Column::Status.eq(remediation_plan::PlanStatus::Active))
            .all(&self.db)
            .await?;
        self.with_actions(plans).await
    }

    /// A task's plans, newest first (the active one, resolved and superseded ones).
    pub async fn plans(&self, scope: Option<&str>, task_id: Uuid) -> AppResult<Vec<Plan>> {
        let task = self.task(scope, task_id).await?;
        let plans = remediation_plan::Entity::find()
            .filter(remediation_plan::Column::TaskId.eq(task.id))
            .order_by_desc(remediation_plan::Column::Id)
            .limit(100)
            .all(&self.db)
            .await?;
        self.with_actions(plans).await
    }

    async fn with_actions(&self, plans: Vec<remediation_plan::Model>) -> AppResult<Vec<Plan>> {
        let mut actions = remediation_action::Entity::find()
            .filter(remediation_action::Column::PlanId.is_in(plans.iter().map(|p| p.id)))
            .order_by_asc(remediation_action::Column::Priority)
            .order_by_asc(remediation_action::Column::Gate)
            .all(&self.db)
            .await?;
        Ok(plans
            .into_iter()
            .map(|plan| {
                let (mine, rest): (Vec<_>, Vec<_>) =
                    actions.drain(..).partition(|a| a.plan_id == plan.id);
                actions = rest;
                Plan {
                    plan,
                    actions: mine,
                }
            })
            .collect())
    }

    /// Batch lookup for DataLoaders: every gate result of the given tasks.
    pub async fn gate_results_by_task_ids(
        &self,
        ids: &[Uuid],
    ) -> AppResult<Vec<task_gate_result::Model>> {
        Ok(task_gate_result::Entity::find()
            .filter(task_gate_result::Column::TaskId.is_in(ids.iter().copied()))
            .order_by_asc(task_gate_result::Column::Gate)
            .all(&self.db)
            .await?)
    }
}
