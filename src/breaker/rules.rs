//! The breaker's rules, pure: a state machine over a sliding window, driven by the caller's
//! clock (milliseconds). resilience4j's semantics and names, with one difference made for a
//! fleet: an outcome counts only in the state period (`epoch`) its permit was issued in, so a
//! slow call permitted while `CLOSED` cannot decide a `HALF_OPEN` evaluation.
//!
//! The in-process breakers (the embedded profile, a replica cut off from Redis, and Aurum's
//! own dependencies) run this machine; the shared breakers run the same rules as one Redis
//! script (`shared.rs`), and a service-backed test holds the two to the same answers.

use std::collections::VecDeque;

pub use entity::{
    circuit_breaker::{BreakerState as State, WindowType},
    circuit_breaker_transition::TransitionCause as Cause,
};

/// One breaker's configuration (resilience4j's names, durations in milliseconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    pub window_type: WindowType,
    /// Calls (count-based) or seconds (time-based).
    pub window_size: u32,
    /// Rates are computed from this many calls in the window on (count-based: at most
    /// `window_size`, as in resilience4j).
    pub minimum_calls: u32,
    /// Percent, 1–100: a failure rate at or above it opens the breaker.
    pub failure_rate_threshold: f64,
    /// Percent, 1–100: a slow-call rate at or above it opens the breaker.
    pub slow_call_rate_threshold: f64,
    /// A call that took longer than this is slow.
    pub slow_call_duration_ms: u64,
    pub wait_in_open_ms: u64,
    /// Probes permitted in `HALF_OPEN`, across every replica.
    pub half_open_calls: u32,
    /// 0: wait for the probes however long they take (resilience4j's default).
    pub max_wait_in_half_open_ms: u64,
    /// `OPEN` → `HALF_OPEN` when the wait ends even if no call asks.
    pub automatic_transition: bool,
}

impl Config {
    /// resilience4j's defaults.
    pub const DEFAULT: Self = Self {
        window_type: WindowType::CountBased,
        window_size: 100,
        minimum_calls: 100,
        failure_rate_threshold: 50.0,
        slow_call_rate_threshold: 100.0,
        slow_call_duration_ms: 60_000,
        wait_in_open_ms: 60_000,
        half_open_calls: 10,
        max_wait_in_half_open_ms: 0,
        automatic_transition: false,
    };

    /// The prototype's rule: 5 consecutive failures open it for 30 s, then 3 probes decide.
    pub const PROTOTYPE: Self = Self {
        window_type: WindowType::CountBased,
        window_size: 5,
        minimum_calls: 5,
        failure_rate_threshold: 100.0,
        slow_call_rate_threshold: 100.0,
        slow_call_duration_ms: 60_000,
        wait_in_open_ms: 30_000,
        half_open_calls: 3,
        max_wait_in_half_open_ms: 0,
        automatic_transition: false,
    };

    /// Largest window: a day of seconds, or 10,000 calls.
    pub const MAX_WINDOW_CALLS: u32 = 10_000;
    pub const MAX_WINDOW_SECONDS: u32 = 86_400;
    /// Longest duration any setting may hold (a week).
    pub const MAX_DURATION_MS: u64 = 7 * 24 * 3_600_000;
    pub const MAX_HALF_OPEN_CALLS: u32 = 10_000;

    /// The first rule `self` breaks, as (field, message); `None` when it is valid.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        let window_max = match self.window_type {
            WindowType::CountBased => Self::MAX_WINDOW_CALLS,
            WindowType::TimeBased => Self::MAX_WINDOW_SECONDS,
        };
        let percent = |v: f64| v.is_finite() && (1.0..=100.0).contains(&v);
        let duration = |v: u64| (1..=Self::MAX_DURATION_MS).contains(&v);
        if !(1..=window_max).contains(&self.window_size) {
            return Some(("slidingWindowSize", format!("must be 1 to {window_max}")));
        }
        if !(1..=Self::MAX_WINDOW_CALLS).contains(&self.minimum_calls) {
            return Some((
                "minimumNumberOfCalls",
                format!("must be 1 to {}", Self::MAX_WINDOW_CALLS),
            ));
        }
        if !percent(self.failure_rate_threshold) {
            return Some(("failureRateThreshold", "must be 1 to 100 (percent)".into()));
        }
        if !percent(self.slow_call_rate_threshold) {
            return Some(("slowCallRateThreshold", "must be 1 to 100 (percent)".into()));
        }
        let max = Self::MAX_DURATION_MS;
        if !duration(self.slow_call_duration_ms) {
            return Some((
                "slowCallDurationThresholdMs",
                format!("must be 1 to {max} ms"),
            ));
        }
        if !duration(self.wait_in_open_ms) {
            return Some((
                "waitDurationInOpenStateMs",
                format!("must be 1 to {max} ms"),
            ));
        }
        if !(1..=Self::MAX_HALF_OPEN_CALLS).contains(&self.half_open_calls) {
            return Some((
                "permittedNumberOfCallsInHalfOpenState",
                format!("must be 1 to {}", Self::MAX_HALF_OPEN_CALLS),
            ));
        }
        if self.max_wait_in_half_open_ms > max {
            return Some((
                "maxWaitDurationInHalfOpenStateMs",
                format!("must be 1 to {max} ms, or null to wait for the probes"),
            ));
        }
        None
    }

    /// Calls the window must hold before rates count (resilience4j caps the minimum at the
    /// size of a count-based window).
    pub fn min_calls(&self) -> u32 {
        match self.window_type {
            WindowType::CountBased => self.minimum_calls.min(self.window_size),
            WindowType::TimeBased => self.minimum_calls,
        }
    }

    /// `counts` reach a threshold (`None` below the minimum number of calls `min`).
    fn exceeded(&self, counts: Counts, min: u32) -> Option<bool> {
        let (failure, slow) = counts.rates(min)?;
        Some(failure >= self.failure_rate_threshold || slow >= self.slow_call_rate_threshold)
    }
}

/// What a call came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    /// Neither: not counted; a `HALF_OPEN` probe returns its permit.
    Ignored,
}

/// Calls, failures and slow calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub calls: u32,
    pub failures: u32,
    pub slow: u32,
}

impl Counts {
    /// (failure rate, slow-call rate) in percent, from `min` calls on.
    pub fn rates(self, min: u32) -> Option<(f64, f64)> {
        if self.calls == 0 || self.calls < min {
            return None;
        }
        let calls = f64::from(self.calls);
        Some((
            f64::from(self.failures) * 100.0 / calls,
            f64::from(self.slow) * 100.0 / calls,
        ))
    }

    fn add(&mut self, call: Call) {
        self.calls += 1;
        self.failures += u32::from(call.failed);
        self.slow += u32::from(call.slow);
    }

    fn remove(&mut self, other: Counts) {
        self.calls = self.calls.saturating_sub(other.calls);
        self.failures = self.failures.saturating_sub(other.failures);
        self.slow = self.slow.saturating_sub(other.slow);
    }
}

#[derive(Debug, Clone, Copy)]
struct Call {
    failed: bool,
    slow: bool,
}

impl Call {
    fn counts(self) -> Counts {
        let mut c = Counts::default();
        c.add(self);
        c
    }
}

/// The closed-state window: the last N calls, or per-second buckets of the last N seconds.
#[derive(Debug, Clone, Default)]
struct Window {
    calls: VecDeque<Call>,
    seconds: VecDeque<(u64, Counts)>,
    totals: Counts,
}

impl Window {
    fn record(&mut self, config: &Config, call: Call, now_ms: u64) {
        match config.window_type {
            WindowType::CountBased => {
                self.calls.push_back(call);
                self.totals.add(call);
                while self.calls.len() > config.window_size as usize {
                    if let Some(old) = self.calls.pop_front() {
                        self.totals.remove(old.counts());
                    }
                }
            }
            WindowType::TimeBased => {
                self.evict(config, now_ms);
                let second = now_ms / 1000;
                match self.seconds.back_mut() {
                    Some((s, counts)) if *s >= second => counts.add(call),
                    _ => self.seconds.push_back((second, call.counts())),
                }
                self.totals.add(call);
            }
        }
    }

    /// Drops the seconds that left a time-based window: it holds the seconds after
    /// `now - size` (in whole seconds).
    fn evict(&mut self, config: &Config, now_ms: u64) {
        if config.window_type != WindowType::TimeBased {
            return;
        }
        let now = now_ms / 1000;
        while let Some(&(second, counts)) = self.seconds.front() {
            if second + u64::from(config.window_size) > now {
                break;
            }
            self.seconds.pop_front();
            self.totals.remove(counts);
        }
    }

    fn totals(&mut self, config: &Config, now_ms: u64) -> Counts {
        self.evict(config, now_ms);
        self.totals
    }
}

/// Whether a call may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead; report the outcome with this epoch.
    Permitted { epoch: u64 },
    /// Not now; ask again after this long.
    Refused { retry_after_ms: u64 },
}

/// One change of state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transition {
    pub from: State,
    pub to: State,
    /// The epoch entered.
    pub epoch: u64,
    pub at_ms: u64,
    pub cause: Cause,
    /// The rates that decided it (percent), when rates did.
    pub rates: Option<(f64, f64)>,
}

/// Live figures of the current state period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics {
    /// The closed window's counts, or the probes' in `HALF_OPEN`.
    pub counts: Counts,
    /// `None` below the minimum number of calls.
    pub failure_rate: Option<f64>,
    pub slow_call_rate: Option<f64>,
    pub not_permitted: u64,
    /// Probes handed out in `HALF_OPEN`.
    pub probes_issued: u32,
    /// Time left in `OPEN` (0 once the wait is over).
    pub remaining_open_ms: u64,
}

/// One breaker's state, window and counters.
#[derive(Debug, Clone)]
pub struct Machine {
    pub state: State,
    pub epoch: u64,
    pub since_ms: u64,
    window: Window,
    probes_issued: u32,
    probes: Counts,
    not_permitted: u64,
}

impl Machine {
    /// A machine in `state` since `since_ms` (a persisted state, or `CLOSED` at epoch 0).
    pub fn new(state: State, epoch: u64, since_ms: u64) -> Self {
        Self {
            state,
            epoch,
            since_ms,
            window: Window::default(),
            probes_issued: 0,
            probes: Counts::default(),
            not_permitted: 0,
        }
    }

    fn enter(
        &mut self,
        to: State,
        now_ms: u64,
        cause: Cause,
        rates: Option<(f64, f64)>,
    ) -> Transition {
        let from = self.state;
        *self = Self::new(to, self.epoch + 1, now_ms);
        Transition {
            from,
            to,
            epoch: self.epoch,
            at_ms: now_ms,
            cause,
            rates,
        }
    }

    fn open_until(&self, config: &Config) -> u64 {
        self.since_ms.saturating_add(config.wait_in_open_ms)
    }

    /// Transitions that time alone makes: `HALF_OPEN` past its maximum wait → `OPEN`, and
    /// (when automatic) `OPEN` past its wait → `HALF_OPEN`. At most one per call.
    pub fn tick(&mut self, config: &Config, now_ms: u64) -> Option<Transition> {
        match self.state {
            State::HalfOpen
                if config.max_wait_in_half_open_ms > 0
                    && now_ms
                        >= self
                            .since_ms
                            .saturating_add(config.max_wait_in_half_open_ms) =>
            {
                Some(self.enter(State::Open, now_ms, Cause::HalfOpenTimeout, None))
            }
            State::Open if config.automatic_transition && now_ms >= self.open_until(config) => {
                Some(self.enter(State::HalfOpen, now_ms, Cause::WaitElapsed, None))
            }
            _ => None,
        }
    }

    /// Asks to make a call.
    pub fn acquire(&mut self, config: &Config, now_ms: u64) -> (Decision, Option<Transition>) {
        let mut transition = self.tick(config, now_ms);
        if self.state == State::Open && now_ms >= self.open_until(config) {
            transition = Some(self.enter(State::HalfOpen, now_ms, Cause::WaitElapsed, None));
        }
        let decision = match self.state {
            State::Closed | State::Disabled | State::MetricsOnly => {
                Decision::Permitted { epoch: self.epoch }
            }
            State::HalfOpen if self.probes_issued < config.half_open_calls => {
                self.probes_issued += 1;
                Decision::Permitted { epoch: self.epoch }
            }
            State::HalfOpen => {
                self.not_permitted += 1;
                let retry_after_ms = if config.max_wait_in_half_open_ms > 0 {
                    (self.since_ms + config.max_wait_in_half_open_ms).saturating_sub(now_ms)
                } else {
                    1000
                };
                Decision::Refused {
                    retry_after_ms: retry_after_ms.max(1),
                }
            }
            State::Open => {
                self.not_permitted += 1;
                Decision::Refused {
                    retry_after_ms: self.open_until(config).saturating_sub(now_ms).max(1),
                }
            }
            State::ForcedOpen => {
                self.not_permitted += 1;
                Decision::Refused {
                    retry_after_ms: config.wait_in_open_ms,
                }
            }
        };
        (decision, transition)
    }

    /// Reports a permitted call's outcome. Returns whether it counted (its epoch is the
    /// current one and the state records outcomes) and the transition it caused, if any.
    pub fn record(
        &mut self,
        config: &Config,
        epoch: u64,
        outcome: Outcome,
        duration_ms: u64,
        now_ms: u64,
    ) -> (bool, Option<Transition>) {
        let timed = self.tick(config, now_ms);
        if epoch != self.epoch {
            return (false, timed);
        }
        let failed = match outcome {
            Outcome::Success => false,
            Outcome::Failure => true,
            Outcome::Ignored => {
                if self.state == State::HalfOpen {
                    self.probes_issued = self.probes_issued.saturating_sub(1);
                }
                return (false, timed);
            }
        };
        let call = Call {
            failed,
            slow: duration_ms > config.slow_call_duration_ms,
        };
        match self.state {
            State::Closed | State::MetricsOnly => {
                self.window.record(config, call, now_ms);
                let totals = self.window.totals(config, now_ms);
                if self.state == State::Closed
                    && config.exceeded(totals, config.min_calls()) == Some(true)
                {
                    let rates = totals.rates(config.min_calls());
                    return (
                        true,
                        Some(self.enter(State::Open, now_ms, Cause::ThresholdsExceeded, rates)),
                    );
                }
                (true, None)
            }
            State::HalfOpen => {
                self.probes.add(call);
                let min = config.half_open_calls;
                match config.exceeded(self.probes, min) {
                    None => (true, None),
                    Some(exceeded) => {
                        let rates = self.probes.rates(min);
                        let (to, cause) = if exceeded {
                            (State::Open, Cause::ProbesFailed)
                        } else {
                            (State::Closed, Cause::ProbesPassed)
                        };
                        (true, Some(self.enter(to, now_ms, cause, rates)))
                    }
                }
            }
            State::Open | State::ForcedOpen | State::Disabled => (false, None),
        }
    }

    /// A person's change: `FORCED_OPEN`, `DISABLED`, `METRICS_ONLY`, or `CLOSED` (reset).
    /// Always a transition (a reset of a closed breaker clears its window).
    pub fn set(&mut self, to: State, now_ms: u64) -> Transition {
        self.enter(to, now_ms, Cause::Manual, None)
    }

    /// Clears the window and the probes' counts, keeping the state (a new configuration).
    pub fn clear_window(&mut self) {
        self.window = Window::default();
        self.probes = Counts::default();
    }

    pub fn metrics(&mut self, config: &Config, now_ms: u64) -> Metrics {
        let (counts, min) = if self.state == State::HalfOpen {
            (self.probes, config.half_open_calls)
        } else {
            (self.window.totals(config, now_ms), config.min_calls())
        };
        let rates = counts.rates(min);
        Metrics {
            counts,
            failure_rate: rates.map(|r| r.0),
            slow_call_rate: rates.map(|r| r.1),
            not_permitted: self.not_permitted,
            probes_issued: self.probes_issued,
            remaining_open_ms: if self.state == State::Open {
                self.open_until(config).saturating_sub(now_ms)
            } else {
                0
            },
        }
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
