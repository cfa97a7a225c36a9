//! The background sweeper every replica runs: expires reservations past their TTL, starts
//! new period windows and drops idempotency keys past retention (`BudgetService::sweep`).
//! It stops when the server's shutdown token is cancelled; a failed sweep is logged and the
//! next tick tries again.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::service::BudgetService;

/// Reservations (and budgets) one sweep handles at most; the next tick takes the rest.
const BATCH: u64 = 200;

/// Starts the sweeper on the current runtime.
pub fn spawn(service: BudgetService, every: Duration, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match service.sweep(BATCH).await {
                Ok(report) if report.expired + report.reset + report.keys_deleted > 0 => {
                    tracing::info!(
                        budget.expired = report.expired,
                        budget.reset = report.reset,
                        budget.keys_deleted = report.keys_deleted,
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
