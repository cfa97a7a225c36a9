//! GraphQL surface of governance: thin resolvers that convert input, call
//! `GovernanceService` and wrap what it returns.

use async_graphql::{
    Context, ID, InputObject, Object, Result, SimpleObject, Subscription,
    connection::{Connection, Edge},
};
use chrono::{DateTime, Utc};
use entity::{governance_rule, learning_update, prompt_version};
use futures::Stream;

use super::{
    events::{GovernanceEventKind, StatusSnapshot},
    model::{GovernanceState, LearningKind, LearningStatus},
    reads::UpdateFilter,
    service::{Proposal, RuleChanges},
};
use crate::{
    auth::{guard::Require, permission::Permission},
    error::AppError,
    events::DomainEvent,
    graphql::context::{
        ConnectionFields, connection, meta, page_cost, page_request, page_size, parse_id, services,
        wants_total,
    },
};

#[expect(
    clippy::cast_precision_loss,
    reason = "durations of at most a year in seconds are exact in f64"
)]
fn hours(seconds: i64) -> f64 {
    seconds as f64 / 3600.0
}

/// How often an agent role's prompt may change, and who must agree.
pub struct GovernanceRule(pub governance_rule::Model);

#[Object]
impl GovernanceRule {
    async fn agent_role(&self) -> &str {
        &self.0.agent_role
    }
    /// Applied updates allowed in any rolling 24 hours (0: none).
    async fn max_updates_per_day(&self) -> i32 {
        self.0.max_updates_per_day
    }
    /// Hours after an applied update before the next may apply.
    async fn cooldown_hours(&self) -> f64 {
        hours(self.0.cooldown_seconds)
    }
    /// Every update waits for a person other than its proposer.
    async fn require_approval(&self) -> bool {
        self.0.require_approval
    }
    /// Hours a proposal waits for approval before it expires.
    async fn approval_expiry_hours(&self) -> f64 {
        hours(self.0.approval_ttl_seconds)
    }
    /// Bumped by every change (0: the role's starting rule, not stored yet).
    async fn version(&self) -> i64 {
        self.0.version
    }
    async fn updated_by(&self) -> &str {
        &self.0.updated_by
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// A role's governance now: its limits, how much of them is used, and the status word.
pub struct GovernanceStatus(pub StatusSnapshot);

#[Object]
impl GovernanceStatus {
    async fn agent_role(&self) -> &str {
        &self.0.rule.agent_role
    }
    async fn rule(&self) -> GovernanceRule {
        GovernanceRule(self.0.rule.clone())
    }
    /// The prototype's status word: what would happen to an update proposed now.
    async fn status(&self) -> GovernanceState {
        self.0.state
    }
    /// Updates applied in the last 24 hours.
    async fn updates_in_window(&self) -> i64 {
        self.0.updates_in_window
    }
    /// Updates that may still apply in the current window.
    async fn remaining_updates(&self) -> i64 {
        (i64::from(self.0.rule.max_updates_per_day) - self.0.updates_in_window).max(0)
    }
    /// When the oldest update in the window leaves it.
    async fn window_frees_at(&self) -> Option<DateTime<Utc>> {
        self.0.window_frees_at
    }
    /// When the cooldown after the last update ends (null: none runs).
    async fn cooldown_ends_at(&self) -> Option<DateTime<Utc>> {
        self.0.cooldown_ends_at
    }
    /// Proposals waiting for approval (they do not count against the limits until applied).
    async fn pending_approvals(&self) -> i64 {
        self.0.pending_approvals
    }
    /// When an update could apply next (null: now, or never when the rule allows none).
    async fn next_allowed_at(&self) -> Option<DateTime<Utc>> {
        self.0.next_allowed_at
    }
    /// The role's current prompt version (null: none yet).
    async fn current_version(&self) -> Option<i32> {
        self.0.current_version
    }
    /// When this status was read.
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
}

/// A proposed change of a role's prompt (or a rollback), with its decision.
pub struct LearningUpdate(pub learning_update::Model);

#[Object]
impl LearningUpdate {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn agent_role(&self) -> &str {
        &self.0.agent_role
    }
    async fn kind(&self) -> LearningKind {
        self.0.kind.into()
    }
    async fn status(&self) -> LearningStatus {
        self.0.status.into()
    }
    /// The agent that learned it, when named.
    async fn agent_id(&self) -> Option<ID> {
        self.0.agent_id.map(|id| ID(id.to_string()))
    }
    /// The task whose output motivated it, when named.
    async fn task_id(&self) -> Option<ID> {
        self.0.task_id.map(|id| ID(id.to_string()))
    }
    /// The prompt text it makes current.
    async fn prompt_update(&self) -> &str {
        &self.0.prompt_update
    }
    /// Why (for a rollback: the reason given).
    async fn rationale(&self) -> &str {
        &self.0.rationale
    }
    /// For a rollback: the version whose text it restores.
    async fn rollback_to(&self) -> Option<i32> {
        self.0.rollback_to
    }
    async fn proposed_by(&self) -> &str {
        &self.0.proposed_by
    }
    /// Who approved or rejected it.
    async fn decided_by(&self) -> Option<&str> {
        self.0.decided_by.as_deref()
    }
    /// The approval's note or the rejection's reason.
    async fn decision_note(&self) -> Option<&str> {
        self.0.decision_note.as_deref()
    }
    /// The prompt version it became, once applied.
    async fn prompt_version(&self) -> Option<i32> {
        self.0.prompt_version
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it expires if nobody decides (pending ones).
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }
    async fn decided_at(&self) -> Option<DateTime<Utc>> {
        self.0.decided_at
    }
    async fn applied_at(&self) -> Option<DateTime<Utc>> {
        self.0.applied_at
    }
}

/// One prompt a role has had; the highest version is current.
pub struct PromptVersion(pub prompt_version::Model);

#[Object]
impl PromptVersion {
    async fn agent_role(&self) -> &str {
        &self.0.agent_role
    }
    /// 1, 2, 3 … without gaps.
    async fn version(&self) -> i32 {
        self.0.version
    }
    async fn text(&self) -> &str {
        &self.0.text
    }
    /// The learning update that made it.
    async fn update_id(&self) -> ID {
        ID(self.0.update_id.to_string())
    }
    async fn proposed_by(&self) -> &str {
        &self.0.proposed_by
    }
    /// Null when the role's rule needed no approval.
    async fn approved_by(&self) -> Option<&str> {
        self.0.approved_by.as_deref()
    }
    /// For a rollback: the version whose text it restored.
    async fn rollback_of(&self) -> Option<i32> {
        self.0.rollback_of
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// Changes a role's rule; omitted fields keep their value (a new rule starts from the role's
/// seeded values).
#[derive(InputObject)]
pub struct ConfigureGovernanceRuleInput {
    /// `[a-z0-9_-]`, at most 64.
    pub agent_role: String,
    /// 0–1000.
    pub max_updates_per_day: Option<i32>,
    /// 0 to a year.
    pub cooldown_hours: Option<f64>,
    pub require_approval: Option<bool>,
    /// Above 0, at most 30 days.
    pub approval_expiry_hours: Option<f64>,
}

#[derive(InputObject)]
pub struct ProposeLearningUpdateInput {
    pub agent_role: String,
    /// The agent that learned it (must have `agentRole`).
    pub agent_id: Option<ID>,
    /// The task whose output motivated it.
    pub task_id: Option<ID>,
    /// The new prompt text (at most 100 000 characters).
    pub prompt_update: String,
    pub rationale: String,
    /// Idempotency key: a retry with the same id answers the first result.
    pub request_id: String,
}

#[derive(InputObject, Default)]
pub struct LearningUpdateFilter {
    pub agent_role: Option<String>,
    pub status: Option<LearningStatus>,
    pub kind: Option<LearningKind>,
    pub task_id: Option<ID>,
}

type UpdateConnection = Connection<String, LearningUpdate, ConnectionFields>;
type VersionConnection = Connection<String, PromptVersion, ConnectionFields>;

#[derive(Default)]
pub struct GovernanceQuery;

#[Object]
impl GovernanceQuery {
    #[graphql(guard = "Require(Permission::LearningView)")]
    /// Every stored rule, by role (the seeded roles and every role used or configured).
    async fn governance_rules(&self, ctx: &Context<'_>) -> Result<Vec<GovernanceRule>> {
        let rules = services(ctx)?.governance.rules().await?;
        Ok(rules.into_iter().map(GovernanceRule).collect())
    }

    #[graphql(guard = "Require(Permission::LearningView)")]
    /// The status of one role (`agentRole`), or of every role with a stored rule.
    async fn governance_status(
        &self,
        ctx: &Context<'_>,
        agent_role: Option<String>,
    ) -> Result<Vec<GovernanceStatus>> {
        let statuses = services(ctx)?
            .governance
            .statuses(agent_role.as_deref())
            .await?;
        Ok(statuses.into_iter().map(GovernanceStatus).collect())
    }

    #[graphql(
        guard = "Require(Permission::LearningView)",
        complexity = "page_cost(first, child_complexity)"
    )]
    /// Learning updates, newest first.
    async fn learning_updates(
        &self,
        ctx: &Context<'_>,
        filter: Option<LearningUpdateFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<UpdateConnection> {
        let svc = services(ctx)?;
        let page = page_request(svc, first, after)?;
        let f = filter.unwrap_or_default();
        let filter = UpdateFilter {
            agent_role: f.agent_role,
            status: f.status,
            kind: f.kind,
            task_id: f.task_id.map(|id| parse_id("taskId", &id)).transpose()?,
        };
        let rows = svc.governance.updates(&filter, page).await?;
        let total = if wants_total(ctx) {
            svc.governance.count_updates(&filter).await?
        } else {
            0
        };
        Ok(connection(rows, page, total, |u| u.id, LearningUpdate))
    }

    #[graphql(guard = "Require(Permission::LearningView)")]
    /// One learning update by id.
    async fn learning_update(&self, ctx: &Context<'_>, id: ID) -> Result<LearningUpdate> {
        let id = parse_id("id", &id)?;
        Ok(LearningUpdate(services(ctx)?.governance.update(id).await?))
    }

    #[graphql(
        guard = "Require(Permission::LearningView)",
        complexity = "page_cost(first, child_complexity)"
    )]
    /// A role's prompt versions, newest first (`after`: the last version seen).
    async fn prompt_versions(
        &self,
        ctx: &Context<'_>,
        agent_role: String,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<VersionConnection> {
        let svc = services(ctx)?;
        let first = page_size(svc, first)?;
        let before = after
            .as_deref()
            .map(|a| {
                a.parse::<i32>().map_err(|_| {
                    AppError::bad_field("after", "after is not a cursor from this list")
                })
            })
            .transpose()?;
        let (rows, more) = svc
            .governance
            .prompt_versions(&agent_role, first, before)
            .await?;
        let total_count = if wants_total(ctx) {
            svc.governance.count_prompt_versions(&agent_role).await?
        } else {
            0
        };
        let mut conn = Connection::with_additional_fields(
            after.is_some(),
            more,
            ConnectionFields { total_count },
        );
        conn.edges.extend(
            rows.into_iter()
                .map(|v| Edge::new(v.version.to_string(), PromptVersion(v))),
        );
        Ok(conn)
    }

    #[graphql(guard = "Require(Permission::LearningView)")]
    /// The role's current prompt, as agents fetch it (null before the first update).
    async fn current_prompt(
        &self,
        ctx: &Context<'_>,
        agent_role: String,
    ) -> Result<Option<PromptVersion>> {
        Ok(services(ctx)?
            .governance
            .current_prompt(&agent_role)
            .await?
            .map(PromptVersion))
    }
}

#[derive(Default)]
pub struct GovernanceMutation;

#[Object]
impl GovernanceMutation {
    #[graphql(guard = "Require(Permission::LearningConfigure)")]
    /// Creates or changes a role's rule (audited). A negative or absurd value is
    /// `BAD_USER_INPUT` naming the field, and changes nothing.
    async fn configure_governance_rule(
        &self,
        ctx: &Context<'_>,
        input: ConfigureGovernanceRuleInput,
    ) -> Result<GovernanceRule> {
        let changes = RuleChanges {
            max_updates_per_day: input.max_updates_per_day,
            cooldown_hours: input.cooldown_hours,
            require_approval: input.require_approval,
            approval_expiry_hours: input.approval_expiry_hours,
        };
        Ok(GovernanceRule(
            services(ctx)?
                .governance
                .configure_rule(&meta(ctx), &input.agent_role, changes)
                .await?,
        ))
    }

    #[graphql(guard = "Require(Permission::LearningPropose)")]
    /// Proposes a prompt update: `APPLIED` at once, `PENDING_APPROVAL` when the role needs
    /// approval, or refused with `LEARNING_DAILY_LIMIT` / `LEARNING_COOLDOWN` and
    /// `extensions.nextAllowedAt`. Idempotent by `requestId`.
    async fn propose_learning_update(
        &self,
        ctx: &Context<'_>,
        input: ProposeLearningUpdateInput,
    ) -> Result<LearningUpdate> {
        let proposal = Proposal {
            agent_role: input.agent_role,
            agent_id: input
                .agent_id
                .map(|id| parse_id("agentId", &id))
                .transpose()?,
            task_id: input
                .task_id
                .map(|id| parse_id("taskId", &id))
                .transpose()?,
            prompt_update: input.prompt_update,
            rationale: input.rationale,
            request_id: input.request_id,
        };
        Ok(LearningUpdate(
            services(ctx)?
                .governance
                .propose(&meta(ctx), proposal)
                .await?,
        ))
    }

    #[graphql(guard = "Require(Permission::LearningApprove)")]
    /// Approves a pending update: a person other than its proposer (`FOUR_EYES_REQUIRED`),
    /// with the limits checked again now.
    async fn approve_learning_update(
        &self,
        ctx: &Context<'_>,
        id: ID,
        note: Option<String>,
    ) -> Result<LearningUpdate> {
        let id = parse_id("id", &id)?;
        Ok(LearningUpdate(
            services(ctx)?
                .governance
                .approve(&meta(ctx), id, note.as_deref())
                .await?,
        ))
    }

    #[graphql(guard = "Require(Permission::LearningApprove)")]
    /// Rejects a pending update.
    async fn reject_learning_update(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reason: String,
    ) -> Result<LearningUpdate> {
        let id = parse_id("id", &id)?;
        Ok(LearningUpdate(
            services(ctx)?
                .governance
                .reject(&meta(ctx), id, &reason)
                .await?,
        ))
    }

    #[graphql(guard = "Require(Permission::LearningApprove)")]
    /// Makes the text of `version` the role's prompt again, as a new version. Governed like
    /// a proposal (limits, approval) and audited with `reason`; idempotent when given a
    /// `requestId`.
    async fn rollback_prompt(
        &self,
        ctx: &Context<'_>,
        agent_role: String,
        version: i32,
        reason: String,
        request_id: Option<String>,
    ) -> Result<LearningUpdate> {
        Ok(LearningUpdate(
            services(ctx)?
                .governance
                .rollback(
                    &meta(ctx),
                    &agent_role,
                    version,
                    &reason,
                    request_id.as_deref(),
                )
                .await?,
        ))
    }
}

/// One learning update changing, as `learningUpdateChanged` delivers it.
#[derive(SimpleObject)]
pub struct LearningUpdateChange {
    /// Resume after this event with `after`.
    pub cursor: String,
    pub kind: GovernanceEventKind,
    pub update: LearningUpdate,
}

/// A role's status after a change, as `governanceStatusChanged` delivers it.
#[derive(SimpleObject)]
pub struct GovernanceStatusChange {
    pub cursor: String,
    /// What changed it.
    pub kind: GovernanceEventKind,
    pub status: GovernanceStatus,
}

#[derive(Default)]
pub struct GovernanceSubscription;

#[Subscription]
impl GovernanceSubscription {
    #[graphql(guard = "Require(Permission::LearningView)")]
    /// Every proposal, approval, rejection and expiry (of one role, or of all). `after`
    /// resumes as for the other subscriptions.
    async fn learning_update_changed(
        &self,
        ctx: &Context<'_>,
        agent_role: Option<String>,
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<LearningUpdateChange>> + use<>> {
        crate::graphql::events::subscribe(ctx, after, move |cursor, event| match event {
            DomainEvent::Governance(e)
                if agent_role
                    .as_ref()
                    .is_none_or(|r| *r == e.status.rule.agent_role) =>
            {
                e.update.as_ref().map(|u| LearningUpdateChange {
                    cursor,
                    kind: e.kind,
                    update: LearningUpdate(u.clone()),
                })
            }
            _ => None,
        })
        .await
    }

    #[graphql(guard = "Require(Permission::LearningView)")]
    /// A role's status after every change of its updates or rule (of one role, or of all).
    async fn governance_status_changed(
        &self,
        ctx: &Context<'_>,
        agent_role: Option<String>,
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<GovernanceStatusChange>> + use<>> {
        crate::graphql::events::subscribe(ctx, after, move |cursor, event| match event {
            DomainEvent::Governance(e)
                if agent_role
                    .as_ref()
                    .is_none_or(|r| *r == e.status.rule.agent_role) =>
            {
                Some(GovernanceStatusChange {
                    cursor,
                    kind: e.kind,
                    status: GovernanceStatus(e.status.clone()),
                })
            }
            _ => None,
        })
        .await
    }
}
