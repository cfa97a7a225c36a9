//! Governance reads: rules, statuses, learning updates and prompt versions. Nothing here
//! locks or writes.

use entity::{governance_rule, learning_update, prompt_version};
use sea_orm::{ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::{
    events::StatusSnapshot,
    model::{LearningKind, LearningStatus, Rule},
    service::{GovernanceService, role},
};
use crate::{
    clock,
    error::{AppError, AppResult},
    pagination::{Page, PageRequest, keyset_page_newest_first},
};

/// Filters of the `learningUpdates` list.
#[derive(Debug, Clone, Default)]
pub struct UpdateFilter {
    pub agent_role: Option<String>,
    pub status: Option<LearningStatus>,
    pub kind: Option<LearningKind>,
    pub task_id: Option<Uuid>,
}

impl UpdateFilter {
    fn condition(&self) -> AppResult<Condition> {
        let mut cond = Condition::all();
        if let Some(r) = &self.agent_role {
            cond = cond.add(learning_update::Column::AgentRole.eq(role(r)?));
        }
        if let Some(s) = self.status {
            cond = cond
                .add(learning_update::Column::Status.eq(learning_update::LearningStatus::from(s)));
        }
        if let Some(k) = self.kind {
            cond =
                cond.add(learning_update::Column::Kind.eq(learning_update::LearningKind::from(k)));
        }
        if let Some(t) = self.task_id {
            cond = cond.add(learning_update::Column::TaskId.eq(t));
        }
        Ok(cond)
    }
}

impl GovernanceService {
    /// Every stored rule (the seeded roles, and every role configured or proposed for), by
    /// role.
    pub async fn rules(&self) -> AppResult<Vec<governance_rule::Model>> {
        Ok(governance_rule::Entity::find()
            .order_by_asc(governance_rule::Column::AgentRole)
            .all(&self.db)
            .await?)
    }

    /// The rule of `agent_role`: stored, else the one it would start with (not stored).
    pub async fn rule(&self, agent_role: &str) -> AppResult<governance_rule::Model> {
        let role = role(agent_role)?;
        if let Some(rule) = governance_rule::Entity::find_by_id(role.clone())
            .one(&self.db)
            .await?
        {
            return Ok(rule);
        }
        let now = clock::now();
        let r = Rule::seeded(&role);
        Ok(governance_rule::Model {
            agent_role: role,
            max_updates_per_day: r.max_per_day,
            cooldown_seconds: r.cooldown_seconds,
            require_approval: r.require_approval,
            approval_ttl_seconds: r.approval_ttl_seconds,
            version: 0,
            updated_by: "system".into(),
            created_at: now,
            updated_at: now,
        })
    }

    /// The status of one role, or of every role with a stored rule.
    pub async fn statuses(&self, agent_role: Option<&str>) -> AppResult<Vec<StatusSnapshot>> {
        let rules = match agent_role {
            Some(r) => vec![self.rule(r).await?],
            None => self.rules().await?,
        };
        let now = clock::now();
        let mut out = Vec::with_capacity(rules.len());
        for rule in rules {
            let history = Self::history(&self.db, &rule, now).await?;
            out.push(Self::snapshot(&self.db, &rule, &history, now).await?);
        }
        Ok(out)
    }

    pub async fn update(&self, id: Uuid) -> AppResult<learning_update::Model> {
        learning_update::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::not_found("LearningUpdate", id))
    }

    /// Learning updates matching `filter`, newest first.
    pub async fn updates(
        &self,
        filter: &UpdateFilter,
        page: PageRequest,
    ) -> AppResult<Page<learning_update::Model>> {
        let select = learning_update::Entity::find().filter(filter.condition()?);
        Ok(keyset_page_newest_first(select, learning_update::Column::Id, page, &self.db).await?)
    }

    pub async fn count_updates(&self, filter: &UpdateFilter) -> AppResult<u64> {
        Ok(learning_update::Entity::find()
            .filter(filter.condition()?)
            .count(&self.db)
            .await?)
    }

    /// A role's prompt versions, newest first: at most `first`, older than `before` when
    /// given. The flag says whether older ones remain.
    pub async fn prompt_versions(
        &self,
        agent_role: &str,
        first: u64,
        before: Option<i32>,
    ) -> AppResult<(Vec<prompt_version::Model>, bool)> {
        let role = role(agent_role)?;
        let mut select = prompt_version::Entity::find()
            .filter(prompt_version::Column::AgentRole.eq(role))
            .order_by_desc(prompt_version::Column::Version);
        if let Some(before) = before {
            select = select.filter(prompt_version::Column::Version.lt(before));
        }
        let mut rows = sea_orm::QuerySelect::limit(select, first.saturating_add(1))
            .all(&self.db)
            .await?;
        let more = rows.len() as u64 > first;
        rows.truncate(usize::try_from(first).unwrap_or(usize::MAX));
        Ok((rows, more))
    }

    /// How many prompt versions the role has.
    pub async fn count_prompt_versions(&self, agent_role: &str) -> AppResult<u64> {
        let role = role(agent_role)?;
        Ok(prompt_version::Entity::find()
            .filter(prompt_version::Column::AgentRole.eq(role))
            .count(&self.db)
            .await?)
    }

    /// The role's current prompt (its highest version); `None` before the first update.
    pub async fn current_prompt(
        &self,
        agent_role: &str,
    ) -> AppResult<Option<prompt_version::Model>> {
        let role = role(agent_role)?;
        Ok(prompt_version::Entity::find()
            .filter(prompt_version::Column::AgentRole.eq(role))
            .order_by_desc(prompt_version::Column::Version)
            .one(&self.db)
            .await?)
    }
}
