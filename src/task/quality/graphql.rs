//! GraphQL surface of quality gates and remediation plans: thin resolvers over the task
//! service's `gates` transactions. A task's results and active plan are nested on `Task`
//! (through DataLoaders, in `task::graphql`).

use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use entity::{remediation_action, task_gate_result};

use super::{
    gates::{GateSettings, Plan},
    model::{ActionStatus, ActionType, Gate, PlanStatus},
};
use crate::{
    auth::{guard::Require, permission::Permission},
    graphql::context::{caller, meta, parse_id, services},
    task::model::TaskState,
};

/// A quality gate as it applies now.
#[derive(SimpleObject)]
pub struct TaskGate {
    pub name: String,
    /// The states a task may only enter while the gate holds.
    pub target_states: Vec<TaskState>,
    /// What the remediation plan asks for when the gate fails.
    pub action_type: ActionType,
    /// 1 (first) to 100.
    pub priority: i32,
    /// The agent role that should do it.
    pub agent_role: String,
    /// Refusals in a row on one task that open an escalation (0: never).
    pub escalate_after: i32,
    /// Whether a completed peer review reports this gate (passed or failed).
    pub satisfied_by_review: bool,
    pub enabled: bool,
    /// `false`: the built-in default, never configured.
    pub configured: bool,
}

impl From<Gate> for TaskGate {
    fn from(g: Gate) -> Self {
        Self {
            name: g.name,
            target_states: g.targets,
            action_type: g.remedy.action,
            priority: g.remedy.priority,
            agent_role: g.remedy.agent_role,
            escalate_after: g.escalate_after,
            satisfied_by_review: g.satisfied_by_review,
            enabled: g.enabled,
            configured: g.configured,
        }
    }
}

/// The latest result of one gate on one task.
pub struct GateResult(pub task_gate_result::Model);

#[Object]
impl GateResult {
    async fn gate(&self) -> &str {
        &self.0.gate
    }
    async fn task_id(&self) -> ID {
        ID(self.0.task_id.to_string())
    }
    /// `null`: no result reported yet (the gate has refused moves all the same).
    async fn passed(&self) -> Option<bool> {
        self.0.passed
    }
    async fn detail(&self) -> Option<&str> {
        self.0.detail.as_deref()
    }
    async fn reported_by(&self) -> Option<&str> {
        self.0.reported_by.as_deref()
    }
    async fn reported_at(&self) -> Option<DateTime<Utc>> {
        self.0.reported_at
    }
    /// Moves this gate refused in a row since it last passed.
    async fn refusals_in_a_row(&self) -> i32 {
        self.0.consecutive_failures
    }
}

/// One gate guarding a state, for one task: whether it holds, and why not.
#[derive(SimpleObject)]
pub struct GateCheck {
    pub gate: String,
    pub holds: bool,
    pub why: Option<String>,
}

/// One action of a remediation plan.
pub struct RemediationAction(pub remediation_action::Model);

#[Object]
impl RemediationAction {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// The gate it makes hold; reporting that gate passed marks it DONE.
    async fn gate(&self) -> &str {
        &self.0.gate
    }
    async fn action_type(&self) -> ActionType {
        self.0.action_type.into()
    }
    async fn priority(&self) -> i32 {
        self.0.priority
    }
    async fn agent_role(&self) -> &str {
        &self.0.agent_role
    }
    /// Why the gate failed when the plan was written.
    async fn reason(&self) -> &str {
        &self.0.reason
    }
    async fn status(&self) -> ActionStatus {
        self.0.status.into()
    }
    async fn done_by(&self) -> Option<&str> {
        self.0.done_by.as_deref()
    }
    async fn done_at(&self) -> Option<DateTime<Utc>> {
        self.0.done_at
    }
}

/// What the fleet does after quality gates refused a task's move.
pub struct RemediationPlan(pub Plan);

#[Object]
impl RemediationPlan {
    async fn id(&self) -> ID {
        ID(self.0.plan.id.to_string())
    }
    async fn task_id(&self) -> ID {
        ID(self.0.plan.task_id.to_string())
    }
    /// The state the refused move was heading for.
    async fn target_state(&self) -> TaskState {
        self.0.plan.target_state.into()
    }
    async fn status(&self) -> PlanStatus {
        self.0.plan.status.into()
    }
    /// Highest priority (lowest number) first.
    async fn actions(&self) -> Vec<RemediationAction> {
        self.0
            .actions
            .iter()
            .cloned()
            .map(RemediationAction)
            .collect()
    }
    async fn created_by(&self) -> &str {
        &self.0.plan.created_by
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.plan.created_at
    }
    async fn closed_at(&self) -> Option<DateTime<Utc>> {
        self.0.plan.closed_at
    }
    async fn superseded_by(&self) -> Option<ID> {
        self.0.plan.superseded_by.map(|id| ID(id.to_string()))
    }
}

#[derive(Default)]
pub struct QualityQuery;

#[Object]
impl QualityQuery {
    #[graphql(guard = "Require(Permission::TaskView)")]
    /// The quality gates in force (built-in defaults and configured ones), by name.
    async fn task_gates(&self, ctx: &Context<'_>) -> Result<Vec<TaskGate>> {
        Ok(services(ctx)?
            .tasks
            .gates()
            .await?
            .into_iter()
            .map(TaskGate::from)
            .collect())
    }

    #[graphql(guard = "Require(Permission::TaskView)")]
    /// Each gate guarding `targetState` for the task, and whether it holds now.
    async fn task_gate_check(
        &self,
        ctx: &Context<'_>,
        task_id: ID,
        target_state: TaskState,
    ) -> Result<Vec<GateCheck>> {
        let id = parse_id("taskId", &task_id)?;
        Ok(services(ctx)?
            .tasks
            .gate_check(caller(ctx).tenant(), id, target_state)
            .await?
            .into_iter()
            .map(|(g, why)| GateCheck {
                gate: g.name,
                holds: why.is_none(),
                why: why.map(|w| w.describe()),
            })
            .collect())
    }

    #[graphql(guard = "Require(Permission::TaskView)")]
    /// A task's remediation plans, newest first (at most 100).
    async fn remediation_plans(
        &self,
        ctx: &Context<'_>,
        task_id: ID,
    ) -> Result<Vec<RemediationPlan>> {
        let id = parse_id("taskId", &task_id)?;
        Ok(services(ctx)?
            .tasks
            .plans(caller(ctx).tenant(), id)
            .await?
            .into_iter()
            .map(RemediationPlan)
            .collect())
    }
}

/// Input of `configureTaskGate`: absent fields keep their value (a new gate takes the
/// remediation table's fallback: fix, priority 1, developer).
#[derive(InputObject)]
pub struct ConfigureTaskGateInput {
    /// `[a-z0-9_]`, at most 64 characters.
    pub gate: String,
    /// REVIEWING, DEPLOYING and/or COMPLETED; required for a new gate.
    pub target_states: Option<Vec<TaskState>>,
    pub action_type: Option<ActionType>,
    /// 1-100.
    pub priority: Option<i32>,
    pub agent_role: Option<String>,
    /// 0 (never) to 100.
    pub escalate_after: Option<i32>,
    pub satisfied_by_review: Option<bool>,
    pub enabled: Option<bool>,
}

/// Input of `reportGateResult`.
#[derive(InputObject)]
pub struct ReportGateResultInput {
    pub task_id: ID,
    pub gate: String,
    pub passed: bool,
    /// At most 10 000 characters.
    pub detail: Option<String>,
}

#[derive(Default)]
pub struct QualityMutation;

#[Object]
impl QualityMutation {
    #[graphql(guard = "Require(Permission::QualityConfigure)")]
    /// Changes or adds a quality gate (fleet-wide: not for tenant-scoped callers). Audited.
    async fn configure_task_gate(
        &self,
        ctx: &Context<'_>,
        input: ConfigureTaskGateInput,
    ) -> Result<TaskGate> {
        let settings = GateSettings {
            gate: input.gate,
            targets: input.target_states,
            action: input.action_type,
            priority: input.priority,
            agent_role: input.agent_role,
            escalate_after: input.escalate_after,
            satisfied_by_review: input.satisfied_by_review,
            enabled: input.enabled,
        };
        Ok(services(ctx)?
            .tasks
            .configure_gate(&meta(ctx), settings)
            .await?
            .into())
    }

    #[graphql(guard = "Require(Permission::QualityReport)")]
    /// Reports a gate's result on a task; the latest counts. A pass completes the active
    /// remediation plan's action for the gate. Audited.
    async fn report_gate_result(
        &self,
        ctx: &Context<'_>,
        input: ReportGateResultInput,
    ) -> Result<GateResult> {
        let id = parse_id("taskId", &input.task_id)?;
        Ok(GateResult(
            services(ctx)?
                .tasks
                .report_gate_result(
                    &meta(ctx),
                    id,
                    &input.gate,
                    input.passed,
                    input.detail.as_deref(),
                )
                .await?,
        ))
    }

    #[graphql(guard = "Require(Permission::TaskUpdate)")]
    /// Replaces the task's active remediation plan with one for the gates refusing
    /// `targetState` now (the old plan becomes SUPERSEDED). Audited.
    async fn replace_remediation_plan(
        &self,
        ctx: &Context<'_>,
        task_id: ID,
        target_state: TaskState,
    ) -> Result<RemediationPlan> {
        let id = parse_id("taskId", &task_id)?;
        Ok(RemediationPlan(
            services(ctx)?
                .tasks
                .replace_plan(&meta(ctx), id, target_state)
                .await?,
        ))
    }
}
