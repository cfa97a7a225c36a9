//! Circuit breakers: one shared, persisted view per dependency, on every replica at once.
//!
//! - `rules`: the state machine (resilience4j's states, windows and thresholds), pure.
//! - `shared`: the same rules as one Redis script, for breakers shared by every replica.
//! - `local`: breakers kept in this process: the guards on Aurum's own dependencies, and the
//!   agents' breakers without (or cut off from) Redis.
//! - `service`: the breakers as the API uses them; records, transitions, events, audit.
//! - `model`: the API's enums, permits, names; `graphql`: the resolvers; `events`: what
//!   each change writes into the outbox.

pub mod events;
pub mod graphql;
pub mod local;
pub mod model;
pub mod rules;
pub mod service;
pub mod shared;

use std::time::Duration;

use crate::infra::shutdown::Shutdown;
use futures::StreamExt;

use crate::events::DomainEvent;
use rules::{Config, State, WindowType};

/// Aurum's own dependencies, each guarded by a breaker of that name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    Redis = 0,
    Nats = 1,
    Docker = 2,
}

impl Dependency {
    pub const ALL: [Self; 3] = [Self::Redis, Self::Nats, Self::Docker];

    pub fn name(self) -> &'static str {
        match self {
            Self::Redis => "redis",
            Self::Nats => "nats",
            Self::Docker => "docker",
        }
    }

    /// The dependency breakers' configuration until an operator changes it: open after half
    /// of the last 20 calls failed (from 5 calls on), probe once after 5 s, and give up on a
    /// probe that has not come back in 10 s. resilience4j's defaults (100 calls, 60 s) would
    /// let an outage cost a minute of timeouts first.
    pub const DEFAULT: Config = Config {
        window_type: WindowType::CountBased,
        window_size: 20,
        minimum_calls: 5,
        failure_rate_threshold: 50.0,
        slow_call_rate_threshold: 100.0,
        slow_call_duration_ms: 1_000,
        wait_in_open_ms: 5_000,
        half_open_calls: 1,
        max_wait_in_half_open_ms: 10_000,
        automatic_transition: false,
    };
}

/// Sets the state gauge of breaker `name`: 1 for its state, 0 for the others.
pub fn gauge_state(name: &str, state: State) {
    for s in [
        State::Closed,
        State::Open,
        State::HalfOpen,
        State::ForcedOpen,
        State::Disabled,
        State::MetricsOnly,
    ] {
        let label = match s {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
            State::Disabled => "disabled",
            State::MetricsOnly => "metrics_only",
        };
        metrics::gauge!("aurum_circuit_breaker_state", "name" => name.to_owned(), "state" => label)
            .set(if s == state { 1.0 } else { 0.0 });
    }
}

/// How often time's transitions are looked for.
const TICK: Duration = Duration::from_millis(250);

/// Starts the breakers' background work until `shutdown`: applying breaker events from the
/// bus, time's transitions, and recording the dependency guards' transitions.
pub fn spawn(
    service: service::BreakerService,
    transitions: tokio::sync::mpsc::UnboundedReceiver<(String, rules::Transition)>,
    shutdown: Shutdown,
) {
    {
        let service = service.clone();
        let stop = shutdown.clone();
        shutdown.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = service.record_dependency_transitions(transitions) => {}
            }
        });
    }
    {
        let service = service.clone();
        let stop = shutdown.clone();
        shutdown.spawn(async move {
            loop {
                // Subscribe, then read the records: a change is either in what was read or
                // arrives on the subscription.
                let mut events = service.bus().subscribe();
                if let Err(e) = service.reload().await {
                    tracing::warn!(error = ?e, "reading the circuit breakers failed; the bus keeps them current");
                }
                loop {
                    let item = tokio::select! {
                        () = stop.cancelled() => return,
                        item = events.next() => item,
                    };
                    match item {
                        Some(Ok(delivered)) => {
                            if let DomainEvent::Breaker(e) = &delivered.event {
                                service.apply(e);
                            }
                        }
                        // Fell behind: start again from the records.
                        Some(Err(_)) => break,
                        None => return,
                    }
                }
            }
        });
    }
    shutdown.clone().spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => service.tick().await,
            }
        }
    });
}
