//! GraphQL surface of the task domain: thin resolvers that convert input, call `TaskService`
//! and wrap the rows. Nested edges go through the DataLoaders in `loaders`.

use std::sync::Arc;

use async_graphql::{
    ComplexObject, Context, ErrorExtensions, ID, InputObject, Object, Result, SimpleObject,
    Subscription, connection::Connection, dataloader::DataLoader,
};
use chrono::{DateTime, Utc};
use entity::{agent, escalation, task};
use futures::Stream;

use super::{
    events::TaskEventKind,
    loaders::{
        ActivePlanLoader, AgentLoader, EscalationsByTaskLoader, GateResultsByTaskLoader, TaskLoader,
    },
    model::{AgentStatus, EscalationStatus, Severity, TaskState},
    quality::{
        graphql::{GateResult, RemediationPlan},
        model::EscalationPattern,
    },
    service::{AgentFilter, EscalationFilter, NewAgent, NewEscalation, NewTask, TaskFilter},
};
use crate::{
    auth::{guard::Require, permission::Permission},
    error::AppError,
    events::DomainEvent,
    graphql::context::{
        ConnectionFields, caller, connection, meta, page_cost, page_request, parse_id, services,
        wants_total,
    },
};

/// Escalations assumed per task when costing a document.
const ESCALATIONS_PER_TASK: usize = 10;

fn loader_error(e: Arc<AppError>) -> async_graphql::Error {
    e.as_ref().extend()
}

/// True when a row of `tenant` may be shown to the current caller.
fn visible(ctx: &Context<'_>, tenant: Option<&str>) -> bool {
    match caller(ctx).tenant() {
        None => true,
        Some(scope) => tenant == Some(scope),
    }
}

/// A unit of work for an agent.
pub struct Task(pub task::Model);

#[Object]
impl Task {
    pub async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn title(&self) -> &str {
        &self.0.title
    }
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    async fn state(&self) -> TaskState {
        self.0.state.into()
    }
    /// Higher runs first; 0 by default.
    async fn priority(&self) -> i32 {
        self.0.priority
    }
    /// Tenant owning the task; null for untenanted tasks.
    async fn tenant_id(&self) -> Option<&str> {
        self.0.tenant_id.as_deref()
    }
    /// Who created the task (`user:<name>`, `anonymous`, `system`).
    async fn created_by(&self) -> &str {
        &self.0.created_by
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    #[graphql(guard = "Require(Permission::AgentView)")]
    /// The agent the task is assigned to.
    async fn assignee(&self, ctx: &Context<'_>) -> Result<Option<Agent>> {
        let Some(id) = self.0.assignee_id else {
            return Ok(None);
        };
        let agent = ctx
            .data_unchecked::<DataLoader<AgentLoader>>()
            .load_one(id)
            .await
            .map_err(loader_error)?;
        Ok(agent
            .filter(|a| visible(ctx, a.tenant_id.as_deref()))
            .map(Agent))
    }
    /// Escalations raised on this task, oldest first.
    #[graphql(
        guard = "Require(Permission::EscalationView)",
        complexity = "ESCALATIONS_PER_TASK * child_complexity"
    )]
    async fn escalations(&self, ctx: &Context<'_>) -> Result<Vec<Escalation>> {
        let rows = ctx
            .data_unchecked::<DataLoader<EscalationsByTaskLoader>>()
            .load_one(self.0.id)
            .await
            .map_err(loader_error)?
            .unwrap_or_default();
        Ok(rows
            .into_iter()
            .filter(|e| visible(ctx, e.tenant_id.as_deref()))
            .map(Escalation)
            .collect())
    }
    #[graphql(guard = "Require(Permission::TaskView)")]
    /// The latest result of each quality gate reported (or refusing moves) on this task,
    /// by gate.
    async fn gate_results(&self, ctx: &Context<'_>) -> Result<Vec<GateResult>> {
        let rows = ctx
            .data_unchecked::<DataLoader<GateResultsByTaskLoader>>()
            .load_one(self.0.id)
            .await
            .map_err(loader_error)?
            .unwrap_or_default();
        Ok(rows.into_iter().map(GateResult).collect())
    }
    #[graphql(guard = "Require(Permission::TaskView)")]
    /// The remediation plan being worked on, if a quality gate refused a move.
    async fn remediation_plan(&self, ctx: &Context<'_>) -> Result<Option<RemediationPlan>> {
        Ok(ctx
            .data_unchecked::<DataLoader<ActivePlanLoader>>()
            .load_one(self.0.id)
            .await
            .map_err(loader_error)?
            .map(RemediationPlan))
    }
}

/// A registered LLM agent.
pub struct Agent(pub agent::Model);

#[Object]
impl Agent {
    pub async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The agent's role (`developer`, `reviewer`, …); governance rules are per role.
    async fn role(&self) -> &str {
        &self.0.role
    }
    async fn status(&self) -> AgentStatus {
        self.0.status.into()
    }
    async fn tenant_id(&self) -> Option<&str> {
        self.0.tenant_id.as_deref()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    #[graphql(guard = "Require(Permission::TaskView)")]
    /// The task the agent is working on now.
    async fn current_task(&self, ctx: &Context<'_>) -> Result<Option<Task>> {
        let Some(id) = self.0.current_task_id else {
            return Ok(None);
        };
        let task = ctx
            .data_unchecked::<DataLoader<TaskLoader>>()
            .load_one(id)
            .await
            .map_err(loader_error)?;
        Ok(task
            .filter(|t| visible(ctx, t.tenant_id.as_deref()))
            .map(Task))
    }
}

/// A task handed to a human.
pub struct Escalation(pub escalation::Model);

#[Object]
impl Escalation {
    pub async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn reason(&self) -> &str {
        &self.0.reason
    }
    async fn severity(&self) -> Severity {
        self.0.severity.into()
    }
    async fn status(&self) -> EscalationStatus {
        self.0.status.into()
    }
    /// How it was resolved; null while open.
    async fn resolution(&self) -> Option<&str> {
        self.0.resolution.as_deref()
    }
    async fn resolved_by(&self) -> Option<&str> {
        self.0.resolved_by.as_deref()
    }
    /// The deadlock pattern, when the service opened it (quality gates, peer reviews).
    async fn pattern(&self) -> Option<EscalationPattern> {
        self.0.pattern.map(Into::into)
    }
    /// What the service suggests doing about it.
    async fn suggested_fix(&self) -> Option<&str> {
        self.0.suggested_fix.as_deref()
    }
    async fn created_by(&self) -> &str {
        &self.0.created_by
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn resolved_at(&self) -> Option<DateTime<Utc>> {
        self.0.resolved_at
    }
    #[graphql(guard = "Require(Permission::TaskView)")]
    /// The escalated task.
    async fn task(&self, ctx: &Context<'_>) -> Result<Option<Task>> {
        let task = ctx
            .data_unchecked::<DataLoader<TaskLoader>>()
            .load_one(self.0.task_id)
            .await
            .map_err(loader_error)?;
        Ok(task
            .filter(|t| visible(ctx, t.tenant_id.as_deref()))
            .map(Task))
    }
    #[graphql(guard = "Require(Permission::AgentView)")]
    /// The agent that raised it, if any.
    async fn agent(&self, ctx: &Context<'_>) -> Result<Option<Agent>> {
        let Some(id) = self.0.agent_id else {
            return Ok(None);
        };
        let agent = ctx
            .data_unchecked::<DataLoader<AgentLoader>>()
            .load_one(id)
            .await
            .map_err(loader_error)?;
        Ok(agent
            .filter(|a| visible(ctx, a.tenant_id.as_deref()))
            .map(Agent))
    }
}

/// A change to a task, as delivered to `taskChanged` subscribers.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct TaskChangedEvent {
    /// Where this event sits in the feed: pass it as `after` to resume after it.
    pub cursor: String,
    pub kind: TaskEventKind,
    #[graphql(skip)]
    pub task: task::Model,
}

#[ComplexObject]
impl TaskChangedEvent {
    /// The task right after the change.
    async fn task(&self) -> Task {
        Task(self.task.clone())
    }
}

type TaskConnection = Connection<String, Task, ConnectionFields>;
type AgentConnection = Connection<String, Agent, ConnectionFields>;
type EscalationConnection = Connection<String, Escalation, ConnectionFields>;

#[derive(Default)]
pub struct TaskQuery;

#[Object]
impl TaskQuery {
    /// Tasks, oldest first, optionally filtered.
    #[graphql(
        guard = "Require(Permission::TaskView)",
        complexity = "page_cost(first, child_complexity)"
    )]
    async fn tasks(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        state: Option<TaskState>,
        assignee_id: Option<ID>,
    ) -> Result<TaskConnection> {
        let svc = services(ctx)?;
        let page = page_request(svc, first, after)?;
        let filter = TaskFilter {
            state,
            assignee_id: assignee_id
                .map(|id| parse_id("assigneeId", &id))
                .transpose()?,
        };
        let scope = caller(ctx).tenant();
        let rows = svc.tasks.list_tasks(scope, &filter, page).await?;
        let total = if wants_total(ctx) {
            svc.tasks.count_tasks(scope, &filter).await?
        } else {
            0
        };
        Ok(connection(rows, page, total, |t| t.id, Task))
    }

    #[graphql(guard = "Require(Permission::TaskView)")]
    /// One task by id.
    async fn task(&self, ctx: &Context<'_>, id: ID) -> Result<Task> {
        let id = parse_id("id", &id)?;
        Ok(Task(
            services(ctx)?.tasks.task(caller(ctx).tenant(), id).await?,
        ))
    }

    /// Agents, oldest first, optionally filtered.
    #[graphql(
        guard = "Require(Permission::AgentView)",
        complexity = "page_cost(first, child_complexity)"
    )]
    async fn agents(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        role: Option<String>,
        status: Option<AgentStatus>,
    ) -> Result<AgentConnection> {
        let svc = services(ctx)?;
        let page = page_request(svc, first, after)?;
        let filter = AgentFilter { role, status };
        let scope = caller(ctx).tenant();
        let rows = svc.tasks.list_agents(scope, &filter, page).await?;
        let total = if wants_total(ctx) {
            svc.tasks.count_agents(scope, &filter).await?
        } else {
            0
        };
        Ok(connection(rows, page, total, |a| a.id, Agent))
    }

    #[graphql(guard = "Require(Permission::AgentView)")]
    /// One agent by id.
    async fn agent(&self, ctx: &Context<'_>, id: ID) -> Result<Agent> {
        let id = parse_id("id", &id)?;
        Ok(Agent(
            services(ctx)?.tasks.agent(caller(ctx).tenant(), id).await?,
        ))
    }

    /// Escalations, oldest first, optionally filtered.
    #[graphql(
        guard = "Require(Permission::EscalationView)",
        complexity = "page_cost(first, child_complexity)"
    )]
    async fn escalations(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        status: Option<EscalationStatus>,
        task_id: Option<ID>,
    ) -> Result<EscalationConnection> {
        let svc = services(ctx)?;
        let page = page_request(svc, first, after)?;
        let filter = EscalationFilter {
            status,
            task_id: task_id.map(|id| parse_id("taskId", &id)).transpose()?,
        };
        let scope = caller(ctx).tenant();
        let rows = svc.tasks.list_escalations(scope, &filter, page).await?;
        let total = if wants_total(ctx) {
            svc.tasks.count_escalations(scope, &filter).await?
        } else {
            0
        };
        Ok(connection(rows, page, total, |e| e.id, Escalation))
    }
}

/// Input of `createTask`.
#[derive(InputObject)]
pub struct CreateTaskInput {
    /// 1-200 characters.
    pub title: String,
    /// Up to 10,000 characters.
    pub description: Option<String>,
    /// -1000..1000, default 0.
    pub priority: Option<i32>,
}

/// Input of `registerAgent`.
#[derive(InputObject)]
pub struct RegisterAgentInput {
    /// Unique per tenant, 1-128 characters.
    pub name: String,
    /// 1-64 characters from [a-z0-9_-].
    pub role: String,
}

/// Input of `createEscalation`.
#[derive(InputObject)]
pub struct CreateEscalationInput {
    pub task_id: ID,
    pub agent_id: Option<ID>,
    /// Why a human is needed, 1-10,000 characters.
    pub reason: String,
    /// Default MEDIUM.
    pub severity: Option<Severity>,
}

#[derive(Default)]
pub struct TaskMutation;

#[Object]
impl TaskMutation {
    #[graphql(guard = "Require(Permission::TaskCreate)")]
    /// Creates a PENDING task.
    async fn create_task(&self, ctx: &Context<'_>, input: CreateTaskInput) -> Result<Task> {
        let new = NewTask {
            title: input.title,
            description: input.description,
            priority: input.priority,
        };
        Ok(Task(
            services(ctx)?.tasks.create_task(&meta(ctx), new).await?,
        ))
    }

    #[graphql(guard = "Require(Permission::TaskUpdate)")]
    /// Moves a task to another state; the allowed moves are listed in the error otherwise.
    async fn update_task_state(&self, ctx: &Context<'_>, id: ID, state: TaskState) -> Result<Task> {
        let id = parse_id("id", &id)?;
        Ok(Task(
            services(ctx)?
                .tasks
                .update_task_state(&meta(ctx), id, state)
                .await?,
        ))
    }

    #[graphql(guard = "Require(Permission::AgentConfigure)")]
    /// Registers an agent (IDLE, no task).
    async fn register_agent(&self, ctx: &Context<'_>, input: RegisterAgentInput) -> Result<Agent> {
        let new = NewAgent {
            name: input.name,
            role: input.role,
        };
        Ok(Agent(
            services(ctx)?.tasks.register_agent(&meta(ctx), new).await?,
        ))
    }

    #[graphql(guard = "Require(Permission::TaskUpdate)")]
    /// Assigns a PENDING (or reassigns an ASSIGNED) task to an idle agent.
    async fn assign_task(&self, ctx: &Context<'_>, task_id: ID, agent_id: ID) -> Result<Task> {
        let task_id = parse_id("taskId", &task_id)?;
        let agent_id = parse_id("agentId", &agent_id)?;
        Ok(Task(
            services(ctx)?
                .tasks
                .assign_task(&meta(ctx), task_id, agent_id)
                .await?,
        ))
    }

    #[graphql(guard = "Require(Permission::EscalationCreate)")]
    /// Raises an escalation on a task.
    async fn create_escalation(
        &self,
        ctx: &Context<'_>,
        input: CreateEscalationInput,
    ) -> Result<Escalation> {
        let new = NewEscalation {
            task_id: parse_id("taskId", &input.task_id)?,
            agent_id: input
                .agent_id
                .map(|id| parse_id("agentId", &id))
                .transpose()?,
            reason: input.reason,
            severity: input.severity.unwrap_or_default(),
        };
        Ok(Escalation(
            services(ctx)?
                .tasks
                .create_escalation(&meta(ctx), new)
                .await?,
        ))
    }

    #[graphql(guard = "Require(Permission::EscalationResolve)")]
    /// Resolves an open escalation with a note.
    async fn resolve_escalation(
        &self,
        ctx: &Context<'_>,
        id: ID,
        resolution: String,
    ) -> Result<Escalation> {
        let id = parse_id("id", &id)?;
        Ok(Escalation(
            services(ctx)?
                .tasks
                .resolve_escalation(&meta(ctx), id, &resolution)
                .await?,
        ))
    }
}

#[derive(Default)]
pub struct TaskSubscription;

#[Subscription]
impl TaskSubscription {
    #[graphql(guard = "Require(Permission::TaskView)")]
    /// Every change to tasks visible to the caller, or to one task when `id` is given. With
    /// `after` (the `cursor` of the last event received), first the changes since then that
    /// are still held (`CURSOR_EXPIRED` when they are not), then live ones. A subscriber that
    /// falls behind receives a `SUBSCRIPTION_LAGGED` error carrying `lastCursor` and is
    /// closed.
    async fn task_changed(
        &self,
        ctx: &Context<'_>,
        id: Option<ID>,
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<TaskChangedEvent>> + use<>> {
        let only = id.map(|id| parse_id("id", &id)).transpose()?;
        let scope = caller(ctx).tenant().map(str::to_owned);
        crate::graphql::events::subscribe(ctx, after, move |cursor, event| match event {
            DomainEvent::Task(e)
                if only.is_none_or(|id| id == e.task.id)
                    && (scope.is_none() || scope == e.task.tenant_id) =>
            {
                Some(TaskChangedEvent {
                    cursor,
                    kind: e.kind,
                    task: e.task.clone(),
                })
            }
            _ => None,
        })
        .await
    }
}
