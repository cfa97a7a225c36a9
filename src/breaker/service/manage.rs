//! Writes: transitions recorded (row, history, event, and the audit entry of a person's
//! change), configuration, and a person's changes of state.

use entity::{circuit_breaker, circuit_breaker_transition};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QuerySelect,
    sea_query::Expr,
};
use serde_json::json;
use tokio::sync::mpsc;

use super::{BreakerService, at_millis, new_row, read};
use crate::{
    audit::{self, AuditEntry},
    auth::RequestMeta,
    breaker::{
        events::{BreakerEvent, BreakerEventKind},
        local::now_ms,
        model::BreakerView,
        rules::{Cause, Config, State, Transition},
        shared::{Answer, Op},
    },
    clock,
    error::{AppError, AppResult},
    events::DomainEvent,
    infra::{db, outbox},
};

impl BreakerService {
    /// Records a transition this replica decided: the record (shared breakers: state and
    /// epoch, when newer), the history row and the event, in one transaction. A failure is
    /// logged: the shared state in Redis stays the truth, and the next transition records
    /// again.
    pub(super) async fn persist(&self, name: &str, t: Transition) {
        if let Err(e) = self.write_transition(name, t, None).await {
            tracing::error!(error = ?e, breaker = name, "recording a breaker transition failed");
        }
    }

    pub(super) async fn write_transition(
        &self,
        name: &str,
        t: Transition,
        manual: Option<(&RequestMeta, &str)>,
    ) -> AppResult<circuit_breaker::Model> {
        let entry = self.entry(name).await?;
        let at = at_millis(t.at_ms);
        let epoch = i64::try_from(t.epoch).unwrap_or(i64::MAX);
        let txn = db::begin_write(&self.inner.db).await?;
        // A dependency breaker's own transitions are this replica's: the record keeps the
        // shared (manual) state. Everything else moves the record forward, never back.
        if !entry.row.dependency || manual.is_some() {
            circuit_breaker::Entity::update_many()
                .col_expr(circuit_breaker::Column::State, Expr::value(t.to))
                .col_expr(circuit_breaker::Column::Epoch, Expr::value(epoch))
                .col_expr(circuit_breaker::Column::StateSince, Expr::value(at))
                .col_expr(
                    circuit_breaker::Column::UpdatedAt,
                    Expr::value(clock::now()),
                )
                .filter(circuit_breaker::Column::Name.eq(name))
                .filter(circuit_breaker::Column::Epoch.lt(epoch))
                .exec(&txn)
                .await?;
        }
        let row = circuit_breaker::Entity::find_by_id(name.to_owned())
            .one(&txn)
            .await?
            .ok_or_else(|| AppError::not_found("CircuitBreaker", name))?;
        let history = circuit_breaker_transition::ActiveModel {
            id: sea_orm::NotSet,
            name: Set(name.to_owned()),
            epoch: Set(epoch),
            from_state: Set(t.from),
            to_state: Set(t.to),
            cause: Set(t.cause),
            failure_rate: Set(t.rates.map(|r| r.0)),
            slow_call_rate: Set(t.rates.map(|r| r.1)),
            actor: Set(manual.map(|(meta, _)| meta.caller.audit_label())),
            reason: Set(manual.map(|(_, reason)| reason.to_owned())),
            replica: Set(self.inner.replica.clone()),
            at: Set(at),
        };
        let history = circuit_breaker_transition::Entity::insert(history)
            .exec_with_returning(&txn)
            .await?;
        if let Some((meta, reason)) = manual {
            audit::record(
                &txn,
                meta,
                AuditEntry {
                    action: "breaker.transition",
                    entity_type: "circuit_breaker",
                    entity_id: Some(name.to_owned()),
                    tenant_id: None,
                    details: json!({ "from": t.from, "to": t.to, "epoch": epoch, "reason": reason }),
                },
            )
            .await?;
        }
        outbox::append(
            &txn,
            &DomainEvent::Breaker(BreakerEvent {
                kind: BreakerEventKind::Transitioned,
                breaker: row.clone(),
                transition: Some(history),
            }),
        )
        .await?;
        txn.commit().await?;
        self.inner.bus.wake();
        if t.to == State::Open {
            tracing::warn!(breaker = name, from = ?t.from, cause = ?t.cause, epoch, replica = %self.inner.replica, "circuit breaker opened");
        } else {
            tracing::info!(breaker = name, from = ?t.from, to = ?t.to, cause = ?t.cause, epoch, "circuit breaker transition");
        }
        self.adopt(row.clone(), false);
        Ok(row)
    }

    /// Records the dependency guards' transitions as they come (until `shutdown`).
    pub async fn record_dependency_transitions(
        &self,
        mut rx: mpsc::UnboundedReceiver<(String, Transition)>,
    ) {
        while let Some((name, t)) = rx.recv().await {
            self.persist(&name, t).await;
        }
    }

    /// Creates breaker `name` or changes its configuration; the window starts again, the
    /// state stays. Audited with the reason.
    pub async fn configure(
        &self,
        meta: &RequestMeta,
        name: &str,
        config: Config,
        reason: &str,
    ) -> AppResult<BreakerView> {
        crate::breaker::model::check_name(name)?;
        let reason = crate::breaker::model::check_reason(reason)?;
        manageable(meta)?;
        if let Some((field, message)) = config.problem() {
            return Err(AppError::bad_field(field, message));
        }
        let actor = meta.caller.audit_label();
        let txn = db::begin_write(&self.inner.db).await?;
        let existing = circuit_breaker::Entity::find_by_id(name.to_owned())
            .lock_exclusive()
            .one(&txn)
            .await?;
        let created = existing.is_none();
        let row = match existing {
            None => {
                let row = new_row(name, false, &config, &actor);
                circuit_breaker::Entity::insert(circuit_breaker::ActiveModel::from(row.clone()))
                    .exec_without_returning(&txn)
                    .await?;
                row
            }
            Some(mut row) => {
                crate::breaker::model::set_config(&mut row, &config);
                row.config_version += 1;
                row.updated_by = actor;
                row.updated_at = clock::now();
                circuit_breaker::Entity::update(
                    circuit_breaker::ActiveModel::from(row.clone()).reset_all(),
                )
                .exec(&txn)
                .await?;
                row
            }
        };
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: if created { "breaker.create" } else { "breaker.configure" },
                entity_type: "circuit_breaker",
                entity_id: Some(name.to_owned()),
                tenant_id: None,
                details: json!({ "configuration": crate::breaker::model::config_json(&config), "reason": reason }),
            },
        )
        .await?;
        outbox::append(
            &txn,
            &DomainEvent::Breaker(BreakerEvent {
                kind: BreakerEventKind::Configured,
                breaker: row.clone(),
                transition: None,
            }),
        )
        .await?;
        txn.commit().await?;
        self.inner.bus.wake();
        self.adopt(row, false);
        self.view(name).await
    }

    /// A person's change of state: `FORCED_OPEN`, `DISABLED`, `METRICS_ONLY` or `CLOSED`
    /// (reset: the window starts again). Audited with the reason.
    pub async fn set_state(
        &self,
        meta: &RequestMeta,
        name: &str,
        to: State,
        reason: &str,
    ) -> AppResult<BreakerView> {
        let reason = crate::breaker::model::check_reason(reason)?;
        manageable(meta)?;
        let entry = self.entry(name).await?;
        let transition = if let Some(guard) = self.dependency_guard(name) {
            let mut t = guard.set(to);
            // The record's epoch moves on from the record's own, not the guard's.
            t.epoch = t.epoch.max(entry.live.1 + 1);
            t
        } else {
            match self.shared(&entry, Op::Set(to)).await {
                Some(Answer::Done(reply)) => {
                    self.note_live(name, &reply);
                    Transition {
                        from: reply.transition.map_or(entry.live.0, |t| t.0),
                        to,
                        epoch: reply.epoch,
                        at_ms: reply.now_ms,
                        cause: Cause::Manual,
                        rates: None,
                    }
                }
                _ => self
                    .inner
                    .local
                    .with(name, entry.live, |m| m.set(to, now_ms())),
            }
        };
        self.write_transition(name, transition, Some((meta, &reason)))
            .await?;
        self.view(name).await
    }

    /// Resets every agent breaker (the prototype's endpoint); returns how many.
    pub async fn reset_all(&self, meta: &RequestMeta, reason: &str) -> AppResult<u64> {
        crate::breaker::model::check_reason(reason)?;
        manageable(meta)?;
        let names: Vec<String> = read(&self.inner.cache).keys().cloned().collect();
        let mut n = 0;
        for name in names {
            self.set_state(meta, &name, State::Closed, reason).await?;
            n += 1;
        }
        Ok(n)
    }
}

/// Breakers are the fleet's, not a tenant's: a tenant-scoped caller may not change them.
fn manageable(meta: &RequestMeta) -> AppResult<()> {
    if meta.caller.tenant().is_some() {
        return Err(AppError::Forbidden);
    }
    Ok(())
}
