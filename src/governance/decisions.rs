//! The decisions on learning updates already proposed: approval (four eyes, the limits
//! checked again), rejection, and expiry of those nobody decided on in time. Each runs under
//! the role's lock like a proposal (`service`).

use chrono::{DateTime, Utc};
use entity::learning_update;
use sea_orm::{ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect};
use serde_json::json;
use uuid::Uuid;

use super::{
    events::GovernanceEventKind,
    model::{self, Rule, limits},
    service::{GovernanceService, count, refused, text},
};
use crate::{
    audit::{self, AuditEntry},
    auth::{Caller, Principal, RequestMeta},
    clock,
    error::{AppError, AppResult},
    infra::db,
};

impl GovernanceService {
    /// Approves a pending update: a person other than its proposer, with the limits checked
    /// again under the role's lock (a second approval racing for the last slot gets the limit
    /// error and its update stays pending).
    pub async fn approve(
        &self,
        meta: &RequestMeta,
        id: Uuid,
        note: Option<&str>,
    ) -> AppResult<learning_update::Model> {
        let note = note
            .map(|n| text("note", n, limits::NOTE_MAX))
            .transpose()?;
        if !matches!(
            meta.caller,
            Caller::User {
                principal: Principal::Person,
                ..
            }
        ) {
            return Err(AppError::FourEyesRequired(
                "an approval must come from a person logged in, not an API key".into(),
            ));
        }
        let approver = meta.caller.audit_label();
        let role = self.update_role(id).await?;
        let now = clock::now();
        let txn = db::begin_write(&self.db).await?;
        let rule = self.lock_rule(&txn, &role, now).await?;
        // Decided at the time the lock was granted: writers queued behind another decide
        // after it, never on a `now` that precedes its commit.
        let now = clock::now();
        let mut update = self.pending(&txn, id, now).await?;
        if update.proposer_person == approver || update.proposed_by == approver {
            return Err(AppError::FourEyesRequired(
                "someone other than the proposer must approve this update".into(),
            ));
        }
        let history = Self::history(&txn, &rule, now).await?;
        model::decide(&Rule::of(&rule), &history, now).map_err(refused)?;
        update.decision_note = note;
        Self::apply(&txn, &mut update, Some(approver), now).await?;
        Self::save(&txn, &update).await?;
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: "learning.approve",
                entity_type: "learning_update",
                entity_id: Some(id.to_string()),
                tenant_id: None,
                details: json!({ "agentRole": role, "promptVersion": update.prompt_version }),
            },
        )
        .await?;
        self.announce(
            &txn,
            GovernanceEventKind::Applied,
            Some(update.clone()),
            &rule,
            &history.with(now),
            now,
        )
        .await?;
        txn.commit().await?;
        self.bus.wake();
        count("approved");
        Ok(update)
    }

    /// Rejects a pending update with `reason`.
    pub async fn reject(
        &self,
        meta: &RequestMeta,
        id: Uuid,
        reason: &str,
    ) -> AppResult<learning_update::Model> {
        let reason = text("reason", reason, limits::NOTE_MAX)?;
        let role = self.update_role(id).await?;
        let now = clock::now();
        let txn = db::begin_write(&self.db).await?;
        let rule = self.lock_rule(&txn, &role, now).await?;
        // Decided at the time the lock was granted: writers queued behind another decide
        // after it, never on a `now` that precedes its commit.
        let now = clock::now();
        let mut update = self.pending(&txn, id, now).await?;
        update.status = learning_update::LearningStatus::Rejected;
        update.decided_by = Some(meta.caller.audit_label());
        update.decision_note = Some(reason);
        update.decided_at = Some(now);
        Self::save(&txn, &update).await?;
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: "learning.reject",
                entity_type: "learning_update",
                entity_id: Some(id.to_string()),
                tenant_id: None,
                details: json!({ "agentRole": role }),
            },
        )
        .await?;
        let history = Self::history(&txn, &rule, now).await?;
        self.announce(
            &txn,
            GovernanceEventKind::Rejected,
            Some(update.clone()),
            &rule,
            &history,
            now,
        )
        .await?;
        txn.commit().await?;
        self.bus.wake();
        count("rejected");
        Ok(update)
    }

    /// The role an update is for (read before its rule is locked; it never changes).
    async fn update_role(&self, id: Uuid) -> AppResult<String> {
        learning_update::Entity::find_by_id(id)
            .select_only()
            .column(learning_update::Column::AgentRole)
            .into_tuple::<String>()
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::not_found("LearningUpdate", id))
    }

    /// The update `id`, which must still wait for a decision: one decided, or past its expiry
    /// (the expiry sweep marks it `EXPIRED`), is `CONFLICT`.
    async fn pending(
        &self,
        txn: &DatabaseTransaction,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> AppResult<learning_update::Model> {
        let update = learning_update::Entity::find_by_id(id)
            .one(txn)
            .await?
            .ok_or_else(|| AppError::not_found("LearningUpdate", id))?;
        if update.status != learning_update::LearningStatus::PendingApproval {
            return Err(AppError::Conflict(format!(
                "the update is already {}",
                model::LearningStatus::from(update.status).word()
            )));
        }
        if update.expires_at.is_some_and(|at| at <= now) {
            return Err(AppError::Conflict(
                "the update expired before anyone decided on it".into(),
            ));
        }
        Ok(update)
    }

    /// Expires the pending updates whose time ran out (at most `batch`); safe on every
    /// replica at once (each update changes under its role's lock, and only while pending).
    /// Returns how many it expired.
    pub async fn expire_pending(&self, batch: u64) -> AppResult<u64> {
        let now = clock::now();
        let due: Vec<(Uuid, String)> = learning_update::Entity::find()
            .select_only()
            .column(learning_update::Column::Id)
            .column(learning_update::Column::AgentRole)
            .filter(
                learning_update::Column::Status
                    .eq(learning_update::LearningStatus::PendingApproval),
            )
            .filter(learning_update::Column::ExpiresAt.lte(now))
            .limit(batch)
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut expired = 0;
        for (id, role) in due {
            let txn = db::begin_write(&self.db).await?;
            let rule = self.lock_rule(&txn, &role, now).await?;
            // Decided at the time the lock was granted: writers queued behind another decide
            // after it, never on a `now` that precedes its commit.
            let now = clock::now();
            let Some(mut update) = learning_update::Entity::find_by_id(id).one(&txn).await? else {
                continue;
            };
            if update.status != learning_update::LearningStatus::PendingApproval {
                continue;
            }
            update.status = learning_update::LearningStatus::Expired;
            update.decided_at = Some(now);
            Self::save(&txn, &update).await?;
            audit::record(
                &txn,
                &RequestMeta::system("learning-expiry"),
                AuditEntry {
                    action: "learning.expire",
                    entity_type: "learning_update",
                    entity_id: Some(id.to_string()),
                    tenant_id: None,
                    details: json!({ "agentRole": role }),
                },
            )
            .await?;
            let history = Self::history(&txn, &rule, now).await?;
            self.announce(
                &txn,
                GovernanceEventKind::Expired,
                Some(update),
                &rule,
                &history,
                now,
            )
            .await?;
            txn.commit().await?;
            count("expired");
            expired += 1;
        }
        if expired > 0 {
            self.bus.wake();
        }
        Ok(expired)
    }
}
