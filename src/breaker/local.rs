//! Breakers kept in this process: the guards on Aurum's own dependencies (`redis`, `nats`,
//! `docker`), and the agents' breakers when there is no Redis to share them (the embedded
//! profile) or while Redis does not answer. Both run the machine of `rules.rs`.

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use metrics::Counter;
use tokio::sync::mpsc;

use super::rules::{Config, Decision, Machine, Metrics, Outcome, State, Transition};
use crate::infra::guard::{CallGuard, Refused};

/// Unix milliseconds: the clock persisted states are kept in, so a restart resumes them.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Locks `m`, taking it back from a panicked holder: every critical section here leaves the
/// machine whole (a machine is a few counters), so a poisoned lock holds nothing torn.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The counters of one breaker's calls.
#[derive(Clone)]
pub struct CallCounters {
    success: Counter,
    failure: Counter,
    ignored: Counter,
    not_permitted: Counter,
}

impl CallCounters {
    pub fn new(name: &str) -> Self {
        let calls = |outcome: &'static str| metrics::counter!("aurum_circuit_breaker_calls_total", "name" => name.to_owned(), "outcome" => outcome);
        Self {
            success: calls("success"),
            failure: calls("failure"),
            ignored: calls("ignored"),
            not_permitted: metrics::counter!("aurum_circuit_breaker_not_permitted_calls_total", "name" => name.to_owned()),
        }
    }

    pub fn outcome(&self, outcome: Outcome) {
        match outcome {
            Outcome::Success => self.success.increment(1),
            Outcome::Failure => self.failure.increment(1),
            Outcome::Ignored => self.ignored.increment(1),
        }
    }

    pub fn refused(&self) {
        self.not_permitted.increment(1);
    }
}

/// A transition made in this process, for the service to record and announce.
pub type Transitions = mpsc::UnboundedSender<(String, Transition)>;

/// The breaker on one of Aurum's own dependencies. While it is `CLOSED` (or `DISABLED`) a
/// call is admitted on one atomic load; outcomes take a short lock.
pub struct DependencyGuard {
    name: &'static str,
    inner: Mutex<(Config, Machine)>,
    /// The state lets every call through without asking the machine.
    passing: AtomicBool,
    /// ... and records nothing (`DISABLED`).
    disabled: AtomicBool,
    epoch: AtomicU64,
    counters: CallCounters,
    transitions: Transitions,
}

impl DependencyGuard {
    pub fn new(name: &'static str, config: Config, transitions: Transitions) -> Self {
        let guard = Self {
            name,
            inner: Mutex::new((config, Machine::new(State::Closed, 0, now_ms()))),
            passing: AtomicBool::new(true),
            disabled: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            counters: CallCounters::new(name),
            transitions,
        };
        guard.publish_state(State::Closed, 0);
        guard
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    fn publish_state(&self, state: State, epoch: u64) {
        self.epoch.store(epoch, Ordering::Release);
        self.disabled
            .store(state == State::Disabled, Ordering::Release);
        self.passing.store(
            matches!(state, State::Closed | State::Disabled),
            Ordering::Release,
        );
        super::gauge_state(self.name, state);
    }

    fn after(&self, machine: &Machine, transition: Option<Transition>) {
        if let Some(t) = transition {
            self.publish_state(machine.state, machine.epoch);
            // The receiver lives as long as the service; a closed channel only means the
            // process is stopping.
            let _ = self.transitions.send((self.name.to_owned(), t));
        }
    }

    /// Applies a new configuration (the window starts again).
    pub fn configure(&self, config: Config) {
        let mut inner = lock(&self.inner);
        inner.0 = config;
        inner.1.clear_window();
    }

    /// A person's change, or a persisted one applied at start: returns the transition.
    pub fn set(&self, state: State) -> Transition {
        let mut inner = lock(&self.inner);
        let t = inner.1.set(state, now_ms());
        self.publish_state(inner.1.state, inner.1.epoch);
        t
    }

    /// State, epoch, time entered, configuration and live figures.
    pub fn view(&self) -> (State, u64, u64, Config, Metrics) {
        let mut inner = lock(&self.inner);
        let (config, machine) = &mut *inner;
        let now = now_ms();
        let t = machine.tick(config, now);
        let metrics = machine.metrics(config, now);
        let view = (
            machine.state,
            machine.epoch,
            machine.since_ms,
            *config,
            metrics,
        );
        self.after(machine, t);
        view
    }

    /// Time's transitions (`HALF_OPEN` timeouts, automatic `OPEN` → `HALF_OPEN`).
    pub fn tick(&self) {
        if self.passing.load(Ordering::Acquire) {
            return;
        }
        let mut inner = lock(&self.inner);
        let (config, machine) = &mut *inner;
        let t = machine.tick(config, now_ms());
        self.after(machine, t);
    }
}

impl CallGuard for DependencyGuard {
    fn admit(&self) -> Result<u64, Refused> {
        if self.passing.load(Ordering::Acquire) {
            return Ok(self.epoch.load(Ordering::Acquire));
        }
        let mut inner = lock(&self.inner);
        let (config, machine) = &mut *inner;
        let (decision, t) = machine.acquire(config, now_ms());
        self.after(machine, t);
        match decision {
            Decision::Permitted { epoch } => Ok(epoch),
            Decision::Refused { retry_after_ms } => {
                self.counters.refused();
                Err(Refused {
                    breaker: self.name,
                    retry_after: Duration::from_millis(retry_after_ms),
                })
            }
        }
    }

    fn report(&self, ticket: u64, ok: bool, elapsed: Duration) {
        let outcome = if ok {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        self.counters.outcome(outcome);
        if self.disabled.load(Ordering::Acquire) {
            return;
        }
        let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let mut inner = lock(&self.inner);
        let (config, machine) = &mut *inner;
        let (_, t) = machine.record(config, ticket, outcome, ms, now_ms());
        self.after(machine, t);
    }
}

/// A permit issued (or reported) here: whether its outcome is in, and until when it is kept.
struct LocalPermit {
    used: bool,
    expires_ms: u64,
}

/// The agents' breakers run in this process, and the permits they issued.
#[derive(Default)]
pub struct LocalBreakers {
    machines: Mutex<HashMap<String, Machine>>,
    permits: Mutex<HashMap<String, LocalPermit>>,
}

impl LocalBreakers {
    /// Runs `f` on breaker `name`'s machine, started from (or caught up with) `seed` when it
    /// is missing or older.
    pub fn with<R>(
        &self,
        name: &str,
        seed: (State, u64, u64),
        f: impl FnOnce(&mut Machine) -> R,
    ) -> R {
        let mut machines = lock(&self.machines);
        let machine = machines
            .entry(name.to_owned())
            .or_insert_with(|| Machine::new(seed.0, seed.1, seed.2));
        if machine.epoch < seed.1 {
            *machine = Machine::new(seed.0, seed.1, seed.2);
        }
        f(machine)
    }

    /// Forgets every machine: the shared state is the truth again.
    pub fn forget(&self) {
        lock(&self.machines).clear();
    }

    /// Remembers a permit issued here for `ttl_ms`.
    pub fn issue(&self, permit: &str, ttl_ms: u64) {
        let now = now_ms();
        let mut permits = lock(&self.permits);
        if permits.len() >= 4096 && permits.len().is_power_of_two() {
            permits.retain(|_, p| p.expires_ms > now);
        }
        permits.insert(
            permit.to_owned(),
            LocalPermit {
                used: false,
                expires_ms: now.saturating_add(ttl_ms),
            },
        );
    }

    /// Marks a permit used: `None` when this process does not hold it (never issued here,
    /// or expired), `Some(false)` when its outcome was already reported.
    pub fn report(&self, permit: &str) -> Option<bool> {
        let now = now_ms();
        let mut permits = lock(&self.permits);
        let p = permits.get_mut(permit).filter(|p| p.expires_ms > now)?;
        if p.used {
            return Some(false);
        }
        p.used = true;
        Some(true)
    }

    /// Marks a permit this process did not issue as reported (one from the shared store,
    /// reported while Redis is away), so it is accepted once here.
    pub fn mark_used(&self, permit: &str, ttl_ms: u64) {
        lock(&self.permits).insert(
            permit.to_owned(),
            LocalPermit {
                used: true,
                expires_ms: now_ms().saturating_add(ttl_ms),
            },
        );
    }
}
