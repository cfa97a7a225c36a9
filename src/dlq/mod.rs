//! Work queues and the dead letter queue.
//!
//! - `queues`: the configured queues and their delivery rules (`AURUM_QUEUES`).
//! - `work`: the work API agents call: enqueue, claim, ack, nack, reject, extend.
//! - `store`: the database queue (visibility timeout, attempts, backoff); `jetstream`: the
//!   queues on JetStream (production profile), with the advisory capture.
//! - `capture`: a dead letter and its consequences (task `FAILED`, reservations released,
//!   an escalation), written in one transaction before the message leaves its queue.
//! - `service`: the DLQ as operators see it: list, detail, resolve, retry, purge, stats,
//!   redrive jobs; `redrive` runs those jobs on whichever replica is up.
//! - `graphql`: the resolvers; `events`: what each change writes into the outbox.
//!
//! Every replica runs the reaper (`spawn_reaper`): deliveries whose last attempt lapsed go to
//! the DLQ, settled rows past retention go, and the queue gauges are published.

pub mod capture;
pub mod events;
pub mod graphql;
pub mod jetstream;
pub mod model;
pub mod queues;
pub mod redrive;
pub mod service;
pub mod store;
pub mod work;

pub use model::limits;

use std::time::Duration;

use crate::infra::shutdown::Shutdown;

/// Reaper passes between two publications of the queue gauges.
const GAUGES_EVERY: u32 = 5;
/// Lapsed messages one reaper pass dead-letters per queue at most.
const REAP_BATCH: u64 = 200;

/// Starts the reaper on the current runtime, a pass `every` (`AURUM_QUEUE_REAP_INTERVAL_MS`)
/// until `shutdown`. A failed pass is logged and the next tick tries again (the messages stay
/// where they were).
pub fn spawn_reaper(service: service::DlqService, every: Duration, shutdown: Shutdown) {
    shutdown.clone().spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut passes = 0u32;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match service.queues().reap(REAP_BATCH).await {
                Ok(0) => {}
                Ok(dead) => tracing::info!(
                    dlq.captured = dead,
                    "queue reaper dead-lettered lapsed messages"
                ),
                Err(e) => {
                    tracing::warn!(error.code = e.code(), error.cause = ?e, "queue reaper failed")
                }
            }
            if passes.is_multiple_of(GAUGES_EVERY)
                && let Err(e) = service.publish_gauges().await
            {
                tracing::warn!(error.code = e.code(), error.cause = ?e, "queue gauges failed");
            }
            passes = passes.wrapping_add(1);
        }
    });
}
