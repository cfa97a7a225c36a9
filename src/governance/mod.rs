//! Governance of self-learning agents: per agent role, how often its prompt may change and
//! whether a person must approve each change, enforced in the write path; every applied
//! change is a numbered prompt version. `model` holds the pure rules, `service` the rule
//! changes and proposals, `decisions` approval, rejection and expiry, `reads` the queries,
//! `graphql` the thin resolvers, `events` what each change announces.
//!
//! # The rules
//! Per role: `maxUpdatesPerDay` applied updates in any rolling 24 hours, `cooldownHours`
//! after the last applied update, `requireApproval`, and how long a proposal waits for its
//! approval (`approvalExpiryHours`, 72 h unless configured). Roles start with the
//! prototype's seeded rules (security, architect, reviewer, developer, tester; every other
//! role 5 / 2 h / no approval), stored on first use.
//!
//! # How pending proposals count
//! The limits count **applied** updates: they bound how fast agents' prompts change, and a
//! pending proposal has not changed anything yet. A proposal is refused at once
//! (`LEARNING_DAILY_LIMIT` / `LEARNING_COOLDOWN` with `nextAllowedAt`) when an update could
//! not apply now; otherwise it applies at once, or (when the role requires approval) waits.
//! Approving checks both limits again at that moment: when several pending proposals race
//! for the last slot, the first approval wins, the others get the limit error and stay
//! pending (approvable later, until they expire). Pending proposals are shown as
//! `pendingApprovals` in the role's status.
//!
//! # Serialisation
//! Every change (propose, approve, reject, rollback, expiry, rule change) runs in one write
//! transaction that first locks the role's rule row (PostgreSQL `SELECT … FOR UPDATE`; on
//! SQLite the write transaction holds the only write lock), then reads the role's applied
//! history, decides, writes. So two replicas deciding for the same role take turns, and
//! prompt version numbers are `max + 1` under that lock: gap-free per role.
//!
//! # Four eyes
//! An approval needs `learning.approve`, a person logged in (not an API key), and someone
//! other than the proposer: the proposer's user, or for an API key its creator.
//!
//! # Idempotency
//! `proposeLearningUpdate` (and `rollbackPrompt` when given a `requestId`) claim their key
//! through `crate::idempotency` in their transaction: a replay answers the first result;
//! refusals store nothing, so a retry after `nextAllowedAt` may succeed with the same key.

mod decisions;
pub mod events;
pub mod graphql;
pub mod model;
pub mod reads;
pub mod service;

use std::time::Duration;

use crate::infra::shutdown::Shutdown;

/// Starts the expiry sweep of pending proposals on the current runtime, every `every` until
/// `shutdown`. A failed sweep is logged and the next tick tries again.
pub fn spawn_expiry(governance: service::GovernanceService, every: Duration, shutdown: Shutdown) {
    shutdown.clone().spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match governance.expire_pending(100).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(learning.expired = n, "pending learning updates expired"),
                Err(e) => tracing::warn!(
                    error.code = e.code(),
                    error.cause = ?e,
                    "expiring learning updates failed"
                ),
            }
        }
    });
}
