//! The governance operations that change rules or propose updates (proposals and
//! rollbacks), and what every change shares: the role's lock, its history, its status and
//! its announcement. Decisions on proposals are in `decisions`, reads in `reads`.
//! Every change runs in one write transaction that first locks the role's rule row
//! (PostgreSQL `FOR UPDATE`; SQLite's single writer lock taken by `BEGIN IMMEDIATE`), so the
//! limits are decided on a history no other writer can change before commit; it writes its
//! audit row and its events (into the outbox) in the same transaction.

use chrono::{DateTime, Duration, Utc};
use entity::{agent, api_key, governance_rule, learning_update, prompt_version, task};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    DbBackend, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect, sea_query::OnConflict,
};
use serde_json::json;
use uuid::Uuid;

use super::{
    events::{GovernanceEvent, GovernanceEventKind, StatusSnapshot},
    model::{self, History, LearningKind, Refusal, Rule, WINDOW, limits},
};
use crate::{
    audit::{self, AuditEntry},
    auth::{Caller, Principal, RequestMeta},
    clock,
    error::{AppError, AppResult},
    events::{Bus, DomainEvent},
    idempotency,
    infra::db::{self, tenant_condition},
    task::model::{agent_role, required_text},
};

/// Input of `proposeLearningUpdate`, before validation.
#[derive(Debug, Clone)]
pub struct Proposal {
    pub agent_role: String,
    pub agent_id: Option<Uuid>,
    pub task_id: Option<Uuid>,
    pub prompt_update: String,
    pub rationale: String,
    pub request_id: String,
}

/// Input of `configureGovernanceRule`: omitted fields keep their value (a new rule: the
/// role's seeded values).
#[derive(Debug, Clone, Default)]
pub struct RuleChanges {
    pub max_updates_per_day: Option<i32>,
    pub cooldown_hours: Option<f64>,
    pub require_approval: Option<bool>,
    pub approval_expiry_hours: Option<f64>,
}

/// The governance domain's operations.
#[derive(Clone)]
pub struct GovernanceService {
    pub(super) db: DatabaseConnection,
    pub(super) bus: Bus,
}

pub(super) fn text(field: &'static str, value: &str, max: usize) -> AppResult<String> {
    required_text(field, value, max).map_err(|m| AppError::bad_field(field, m))
}

pub(super) fn role(value: &str) -> AppResult<String> {
    agent_role(value.trim()).map_err(|m| AppError::bad_field("agentRole", m))
}

/// The stored form of a rule for `role`.
fn rule_row(role: &str, rule: Rule, by: String, now: DateTime<Utc>) -> governance_rule::Model {
    governance_rule::Model {
        agent_role: role.to_owned(),
        max_updates_per_day: rule.max_per_day,
        cooldown_seconds: rule.cooldown_seconds,
        require_approval: rule.require_approval,
        approval_ttl_seconds: rule.approval_ttl_seconds,
        version: 1,
        updated_by: by,
        created_at: now,
        updated_at: now,
    }
}

/// A learning update about to be written: a proposal or a rollback, validated.
struct Submission {
    kind: LearningKind,
    agent_role: String,
    agent_id: Option<Uuid>,
    task_id: Option<Uuid>,
    text: String,
    rationale: String,
    rollback_to: Option<i32>,
}

impl GovernanceService {
    pub fn new(db: DatabaseConnection, bus: Bus) -> Self {
        Self { db, bus }
    }

    fn postgres(&self) -> bool {
        self.db.get_database_backend() == DbBackend::Postgres
    }

    /// Inserts the prototype's seeded rules that are missing; safe on every replica at once.
    pub async fn seed(&self) -> AppResult<()> {
        let now = clock::now();
        for (role, rule) in model::SEEDED {
            Self::ensure_rule(&self.db, role, rule, now).await?;
        }
        Ok(())
    }

    async fn ensure_rule<C: ConnectionTrait>(
        conn: &C,
        role: &str,
        rule: Rule,
        now: DateTime<Utc>,
    ) -> AppResult<()> {
        governance_rule::Entity::insert(governance_rule::ActiveModel::from(rule_row(
            role,
            rule,
            "system".into(),
            now,
        )))
        .on_conflict(
            OnConflict::column(governance_rule::Column::AgentRole)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
        Ok(())
    }

    /// The role's rule row, created with its seeded values when missing, and locked for the
    /// rest of `txn` (on SQLite the write transaction holds the database's only write lock).
    pub(super) async fn lock_rule(
        &self,
        txn: &DatabaseTransaction,
        role: &str,
        now: DateTime<Utc>,
    ) -> AppResult<governance_rule::Model> {
        let locked = || {
            let select = governance_rule::Entity::find_by_id(role.to_owned());
            if self.postgres() {
                select.lock_exclusive()
            } else {
                select
            }
        };
        if let Some(rule) = locked().one(txn).await? {
            return Ok(rule);
        }
        Self::ensure_rule(txn, role, Rule::seeded(role), now).await?;
        locked()
            .one(txn)
            .await?
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("rule of `{role}` vanished")))
    }

    /// The role's applied updates, as far back as its limits look.
    pub(super) async fn history<C: ConnectionTrait>(
        conn: &C,
        rule: &governance_rule::Model,
        now: DateTime<Utc>,
    ) -> AppResult<History> {
        let since = now - WINDOW.max(Duration::seconds(rule.cooldown_seconds));
        let applied: Vec<DateTime<Utc>> = learning_update::Entity::find()
            .select_only()
            .column(learning_update::Column::AppliedAt)
            .filter(learning_update::Column::AgentRole.eq(rule.agent_role.as_str()))
            .filter(learning_update::Column::AppliedAt.gt(since))
            .into_tuple::<Option<DateTime<Utc>>>()
            .all(conn)
            .await?
            .into_iter()
            .flatten()
            .collect();
        Ok(History::new(applied, now))
    }

    /// The role's status, read through `conn` (inside a change: the state it is committing).
    pub(super) async fn snapshot<C: ConnectionTrait>(
        conn: &C,
        rule: &governance_rule::Model,
        history: &History,
        now: DateTime<Utc>,
    ) -> AppResult<StatusSnapshot> {
        let r = Rule::of(rule);
        let pending = learning_update::Entity::find()
            .filter(learning_update::Column::AgentRole.eq(rule.agent_role.as_str()))
            .filter(
                learning_update::Column::Status
                    .eq(learning_update::LearningStatus::PendingApproval),
            )
            .filter(learning_update::Column::ExpiresAt.gt(now))
            .count(conn)
            .await?;
        let current = Self::current_version(conn, &rule.agent_role).await?;
        let decision = model::decide(&r, history, now);
        Ok(StatusSnapshot {
            rule: rule.clone(),
            updates_in_window: i64::try_from(history.count()).unwrap_or(i64::MAX),
            window_frees_at: history.in_window.first().map(|t| *t + WINDOW),
            cooldown_ends_at: history
                .last_applied
                .map(|l| l + r.cooldown())
                .filter(|end| *end > now),
            pending_approvals: i64::try_from(pending).unwrap_or(i64::MAX),
            state: model::status(&r, history, now),
            next_allowed_at: decision.err().and_then(Refusal::next_allowed_at),
            current_version: current,
            at: now,
        })
    }

    pub(super) async fn current_version<C: ConnectionTrait>(
        conn: &C,
        role: &str,
    ) -> AppResult<Option<i32>> {
        Ok(prompt_version::Entity::find()
            .select_only()
            .column_as(prompt_version::Column::Version.max(), "v")
            .filter(prompt_version::Column::AgentRole.eq(role))
            .into_tuple::<Option<i32>>()
            .one(conn)
            .await?
            .flatten())
    }

    /// Writes the change's event (with the role's status after it) into the outbox.
    pub(super) async fn announce(
        &self,
        txn: &DatabaseTransaction,
        kind: GovernanceEventKind,
        update: Option<learning_update::Model>,
        rule: &governance_rule::Model,
        history: &History,
        now: DateTime<Utc>,
    ) -> AppResult<()> {
        let status = Self::snapshot(txn, rule, history, now).await?;
        self.bus
            .append(
                txn,
                &DomainEvent::Governance(GovernanceEvent {
                    kind,
                    update,
                    status,
                }),
            )
            .await?;
        Ok(())
    }

    // ---- rules -------------------------------------------------------------------------

    /// Creates or changes the rule of `agent_role`. Values are checked (a negative or absurd
    /// one is `BAD_USER_INPUT` naming the field) before anything is written; a tenant-scoped
    /// caller may not change the fleet's rules (`FORBIDDEN`).
    pub async fn configure_rule(
        &self,
        meta: &RequestMeta,
        agent_role: &str,
        changes: RuleChanges,
    ) -> AppResult<governance_rule::Model> {
        let role = role(agent_role)?;
        // Rules govern the whole fleet's agents, not one tenant's.
        if meta.caller.tenant().is_some() {
            return Err(AppError::Forbidden);
        }
        if let Some(max) = changes.max_updates_per_day
            && !(0..=limits::MAX_PER_DAY_MAX).contains(&max)
        {
            return Err(AppError::bad_field(
                "maxUpdatesPerDay",
                format!(
                    "maxUpdatesPerDay must be between 0 and {}",
                    limits::MAX_PER_DAY_MAX
                ),
            ));
        }
        let cooldown = changes
            .cooldown_hours
            .map(|h| {
                model::hours_to_seconds(h, limits::COOLDOWN_HOURS_MAX, false)
                    .map_err(|m| AppError::bad_field("cooldownHours", format!("cooldownHours {m}")))
            })
            .transpose()?;
        let ttl = changes
            .approval_expiry_hours
            .map(|h| {
                model::hours_to_seconds(h, limits::APPROVAL_HOURS_MAX, true).map_err(|m| {
                    AppError::bad_field("approvalExpiryHours", format!("approvalExpiryHours {m}"))
                })
            })
            .transpose()?;
        let now = clock::now();
        let txn = db::begin_write(&self.db).await?;
        let before = self.lock_rule(&txn, &role, now).await?;
        // Decided at the time the lock was granted: writers queued behind another decide
        // after it, never on a `now` that precedes its commit.
        let now = clock::now();
        let mut after = before.clone();
        if let Some(max) = changes.max_updates_per_day {
            after.max_updates_per_day = max;
        }
        if let Some(secs) = cooldown {
            after.cooldown_seconds = secs;
        }
        if let Some(require) = changes.require_approval {
            after.require_approval = require;
        }
        if let Some(secs) = ttl {
            after.approval_ttl_seconds = secs;
        }
        after.version = before.version + 1;
        after.updated_by = meta.caller.audit_label();
        after.updated_at = now;
        governance_rule::Entity::update(
            governance_rule::ActiveModel::from(after.clone()).reset_all(),
        )
        .exec(&txn)
        .await?;
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: "governance.configure",
                entity_type: "governance_rule",
                entity_id: Some(role.clone()),
                tenant_id: None,
                details: json!({
                    "before": { "maxUpdatesPerDay": before.max_updates_per_day, "cooldownSeconds": before.cooldown_seconds, "requireApproval": before.require_approval, "approvalTtlSeconds": before.approval_ttl_seconds },
                    "after": { "maxUpdatesPerDay": after.max_updates_per_day, "cooldownSeconds": after.cooldown_seconds, "requireApproval": after.require_approval, "approvalTtlSeconds": after.approval_ttl_seconds },
                }),
            },
        )
        .await?;
        let history = Self::history(&txn, &after, now).await?;
        self.announce(
            &txn,
            GovernanceEventKind::RuleChanged,
            None,
            &after,
            &history,
            now,
        )
        .await?;
        txn.commit().await?;
        self.bus.wake();
        Ok(after)
    }

    // ---- proposals ---------------------------------------------------------------------

    /// The person accountable for what `caller` does: a user, or the creator of an API key.
    async fn person(&self, caller: &Caller) -> AppResult<String> {
        match caller {
            Caller::User {
                id,
                principal: Principal::ApiKey,
                ..
            } => Ok(api_key::Entity::find_by_id(*id)
                .select_only()
                .column(api_key::Column::CreatedBy)
                .into_tuple::<String>()
                .one(&self.db)
                .await?
                .unwrap_or_else(|| caller.audit_label())),
            _ => Ok(caller.audit_label()),
        }
    }

    /// Proposes a prompt update for a role: applied at once, left waiting for approval, or
    /// refused (`LEARNING_DAILY_LIMIT`, `LEARNING_COOLDOWN`, with `nextAllowedAt`), decided
    /// under the role's lock. Idempotent by `requestId`.
    pub async fn propose(
        &self,
        meta: &RequestMeta,
        input: Proposal,
    ) -> AppResult<learning_update::Model> {
        let submission = Submission {
            kind: LearningKind::Proposal,
            agent_role: role(&input.agent_role)?,
            agent_id: input.agent_id,
            task_id: input.task_id,
            text: text("promptUpdate", &input.prompt_update, limits::PROMPT_MAX)?,
            rationale: text("rationale", &input.rationale, limits::RATIONALE_MAX)?,
            rollback_to: None,
        };
        let key = idempotency::Key::new(
            &meta.caller,
            &input.request_id,
            "proposeLearningUpdate",
            &json!([
                submission.agent_role,
                submission.agent_id,
                submission.task_id,
                submission.text,
                submission.rationale
            ]),
        )?;
        self.submit(meta, submission, Some(key)).await
    }

    /// Proposes the text of `version` again as the role's prompt: governed like any
    /// proposal (limits, approval) and audited with `reason`.
    pub async fn rollback(
        &self,
        meta: &RequestMeta,
        agent_role: &str,
        version: i32,
        reason: &str,
        request_id: Option<&str>,
    ) -> AppResult<learning_update::Model> {
        let role = role(agent_role)?;
        let reason = text("reason", reason, limits::RATIONALE_MAX)?;
        let target = prompt_version::Entity::find_by_id((role.clone(), version))
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::not_found("PromptVersion", format!("{role}/{version}")))?;
        let key = request_id
            .map(|id| {
                idempotency::Key::new(
                    &meta.caller,
                    id,
                    "rollbackPrompt",
                    &json!([role, version, reason]),
                )
            })
            .transpose()?;
        let submission = Submission {
            kind: LearningKind::Rollback,
            agent_role: role,
            agent_id: None,
            task_id: None,
            text: target.text,
            rationale: reason,
            rollback_to: Some(version),
        };
        self.submit(meta, submission, key).await
    }

    async fn submit(
        &self,
        meta: &RequestMeta,
        s: Submission,
        key: Option<idempotency::Key>,
    ) -> AppResult<learning_update::Model> {
        let person = self.person(&meta.caller).await?;
        let now = clock::now();
        let txn = db::begin_write(&self.db).await?;
        if let Some(key) = &key
            && let Some(previous) =
                idempotency::claim::<learning_update::Model>(&txn, key, None, now).await?
        {
            return Ok(previous);
        }
        self.check_references(&txn, meta, &s).await?;
        let rule = self.lock_rule(&txn, &s.agent_role, now).await?;
        // Decided at the time the lock was granted: writers queued behind another decide
        // after it, never on a `now` that precedes its commit.
        let now = clock::now();
        let history = Self::history(&txn, &rule, now).await?;
        model::decide(&Rule::of(&rule), &history, now).map_err(refused)?;
        let mut update = learning_update::Model {
            id: Uuid::now_v7(),
            agent_role: s.agent_role.clone(),
            kind: s.kind.into(),
            status: learning_update::LearningStatus::PendingApproval,
            agent_id: s.agent_id,
            task_id: s.task_id,
            prompt_update: s.text,
            rationale: s.rationale,
            rollback_to: s.rollback_to,
            proposed_by: meta.caller.audit_label(),
            proposer_person: person,
            decided_by: None,
            decision_note: None,
            prompt_version: None,
            created_at: now,
            expires_at: None,
            decided_at: None,
            applied_at: None,
        };
        let (kind, history) = if rule.require_approval {
            update.expires_at = Some(now + Duration::seconds(rule.approval_ttl_seconds));
            (GovernanceEventKind::Proposed, history)
        } else {
            Self::apply(&txn, &mut update, None, now).await?;
            (GovernanceEventKind::Applied, history.with(now))
        };
        learning_update::Entity::insert(learning_update::ActiveModel::from(update.clone()))
            .exec_without_returning(&txn)
            .await?;
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: match s.kind {
                    LearningKind::Proposal => "learning.propose",
                    LearningKind::Rollback => "learning.rollback",
                },
                entity_type: "learning_update",
                entity_id: Some(update.id.to_string()),
                tenant_id: None,
                details: json!({
                    "agentRole": update.agent_role,
                    "status": update.status,
                    "promptVersion": update.prompt_version,
                    "rollbackTo": update.rollback_to,
                    "taskId": update.task_id,
                }),
            },
        )
        .await?;
        if let Some(key) = &key {
            idempotency::store(&txn, key, &update).await?;
        }
        self.announce(&txn, kind, Some(update.clone()), &rule, &history, now)
            .await?;
        txn.commit().await?;
        self.bus.wake();
        count(match kind {
            GovernanceEventKind::Applied => "applied",
            _ => "proposed",
        });
        Ok(update)
    }

    /// The task and agent a proposal cites must exist (and be visible to the caller); the
    /// agent must have the role the proposal is for.
    async fn check_references(
        &self,
        txn: &DatabaseTransaction,
        meta: &RequestMeta,
        s: &Submission,
    ) -> AppResult<()> {
        let scope = meta.caller.tenant();
        if let Some(task_id) = s.task_id {
            task::Entity::find_by_id(task_id)
                .filter(tenant_condition(task::Column::TenantId, scope))
                .one(txn)
                .await?
                .ok_or_else(|| AppError::not_found("Task", task_id))?;
        }
        if let Some(agent_id) = s.agent_id {
            let agent = agent::Entity::find_by_id(agent_id)
                .filter(tenant_condition(agent::Column::TenantId, scope))
                .one(txn)
                .await?
                .ok_or_else(|| AppError::not_found("Agent", agent_id))?;
            if agent.role != s.agent_role {
                return Err(AppError::bad_field(
                    "agentId",
                    format!(
                        "agent {agent_id} has role `{}`, not `{}`",
                        agent.role, s.agent_role
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Makes `update` the role's next prompt version, numbered right after the current one
    /// (the caller holds the role's lock, so numbers never skip), and marks it applied; the
    /// caller then writes the update row itself.
    pub(super) async fn apply(
        txn: &DatabaseTransaction,
        update: &mut learning_update::Model,
        approved_by: Option<String>,
        now: DateTime<Utc>,
    ) -> AppResult<()> {
        let version = Self::current_version(txn, &update.agent_role)
            .await?
            .unwrap_or(0)
            + 1;
        prompt_version::Entity::insert(prompt_version::ActiveModel::from(prompt_version::Model {
            agent_role: update.agent_role.clone(),
            version,
            text: update.prompt_update.clone(),
            update_id: update.id,
            proposed_by: update.proposed_by.clone(),
            approved_by: approved_by.clone(),
            rollback_of: update.rollback_to,
            created_at: now,
        }))
        .exec_without_returning(txn)
        .await?;
        update.status = learning_update::LearningStatus::Applied;
        update.prompt_version = Some(version);
        update.applied_at = Some(now);
        if approved_by.is_some() {
            update.decided_by = approved_by;
            update.decided_at = Some(now);
        }
        Ok(())
    }

    /// Writes every column of `update` over its stored row.
    pub(super) async fn save(
        txn: &DatabaseTransaction,
        update: &learning_update::Model,
    ) -> AppResult<()> {
        learning_update::Entity::update(
            learning_update::ActiveModel::from(update.clone()).reset_all(),
        )
        .exec(txn)
        .await?;
        Ok(())
    }
}

/// Counts a learning update event on `/metrics` (`aurum_learning_updates_total{event}`).
pub(super) fn count(event: &'static str) {
    metrics::counter!("aurum_learning_updates_total", "event" => event).increment(1);
}

/// A limit's refusal as the client sees it (and counted).
pub(super) fn refused(r: Refusal) -> AppError {
    count(match r {
        Refusal::DailyLimit(_) => "refused_daily_limit",
        Refusal::Cooldown(_) => "refused_cooldown",
    });
    match r {
        Refusal::DailyLimit(next_allowed_at) => AppError::LearningDailyLimit { next_allowed_at },
        Refusal::Cooldown(next_allowed_at) => AppError::LearningCooldown { next_allowed_at },
    }
}
