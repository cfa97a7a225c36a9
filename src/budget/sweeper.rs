//! The background sweeper every replica runs: expires reservations past their TTL and starts
//! new period windows (`BudgetService::sweep`).
//! It stops when the server's shutdown token is cancelled; a failed sweep is logged and the
//! next tick tries again.

use std::time::Duration;

use crate::infra::shutdown::Shutdown;
use entity::{budget, budget_reservation};
use sea_orm::{
    ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{LockBehavior, LockType},
};

use super::{
    events::{BudgetEvent, BudgetEventKind},
    service::BudgetService,
};
use crate::{clock, error::AppResult, infra::db};

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub expired: u64,
    pub reset: u64,
}

/// Reservations (and budgets) one sweep handles at most; the next tick takes the rest.
const BATCH: u64 = 200;

/// Starts the sweeper on the current runtime.
pub fn spawn(service: BudgetService, every: Duration, shutdown: Shutdown) {
    shutdown.clone().spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match service.sweep(BATCH).await {
                Ok(report) if report.expired + report.reset > 0 => {
                    tracing::info!(
                        budget.expired = report.expired,
                        budget.reset = report.reset,
                        "budget sweep"
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error.code = e.code(), error.cause = ?e, "budget sweep failed")
                }
            }
        }
    });
}

impl BudgetService {
    /// One sweep: expires up to `limit` reservations past their TTL, starts the new window
    /// of budgets whose period ended.
    /// Safe on every replica at once: rows another sweeper holds are skipped (PostgreSQL
    /// `FOR UPDATE SKIP LOCKED`; SQLite has one writer), and every change is conditional on
    /// the state it found, so nothing is released twice.
    pub async fn sweep(&self, limit: u64) -> AppResult<SweepReport> {
        let mut report = SweepReport::default();
        let now = clock::now();
        let mut events: Vec<BudgetEvent> = Vec::new();

        let txn = db::begin_write(&self.db).await?;
        let mut due = budget_reservation::Entity::find()
            .filter(budget_reservation::Column::Status.eq(budget_reservation::Status::Reserved))
            .filter(budget_reservation::Column::ExpiresAt.lte(now))
            // One lock order over budgets for every sweeper.
            .order_by_asc(budget_reservation::Column::BudgetId)
            .limit(limit);
        if self.postgres {
            due = due.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        for r in due.all(&txn).await? {
            if let Some(event) = self.expire(&txn, r.id, now).await? {
                report.expired += 1;
                events.push(event);
            }
        }
        // Announced with the expiries: the resets below are a transaction of their own.
        self.announce(&txn, std::mem::take(&mut events)).await?;
        txn.commit().await?;
        self.bus.wake();
        metrics::counter!("aurum_budget_reservations_expired_total").increment(report.expired);

        let txn = db::begin_write(&self.db).await?;
        let mut ended = budget::Entity::find()
            .filter(budget::Column::PeriodEnd.is_not_null())
            .filter(budget::Column::PeriodEnd.lte(now))
            .order_by_asc(budget::Column::Id)
            .limit(limit);
        if self.postgres {
            ended = ended.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        for b in ended.all(&txn).await? {
            let after = self.reset(&txn, &b, now).await?;
            report.reset += 1;
            events.push(Self::event(BudgetEventKind::Reset, &after, None));
        }
        self.announce(&txn, events).await?;
        txn.commit().await?;
        self.bus.wake();
        Ok(report)
    }
}
