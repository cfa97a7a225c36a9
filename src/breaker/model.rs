//! The breakers' vocabulary: the API's enums (over the stored ones), permits, what a read
//! returns, and the rules for names and reasons.

use std::{fmt, str::FromStr};

use entity::circuit_breaker;
use serde_json::json;

use super::rules::{Config, Metrics, Outcome, State, WindowType};
use crate::error::{AppError, AppResult};

/// A breaker's state (resilience4j's names).
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(
    name = "CircuitBreakerState",
    remote = "entity::circuit_breaker::BreakerState"
)]
pub enum BreakerStateGql {
    /// Calls go through; outcomes fill the sliding window.
    Closed,
    /// Calls are refused until `waitDurationInOpenState` has passed.
    Open,
    /// A fixed number of probes go through, across every replica; they decide.
    HalfOpen,
    /// Refused until a person changes it.
    ForcedOpen,
    /// Everything goes through and nothing is recorded (`forceCloseCircuitBreaker`).
    Disabled,
    /// Everything goes through; outcomes are measured but never open it.
    MetricsOnly,
}

/// How the sliding window is measured.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(
    name = "SlidingWindowType",
    remote = "entity::circuit_breaker::WindowType"
)]
pub enum WindowTypeGql {
    /// The last `slidingWindowSize` calls.
    CountBased,
    /// The calls of the last `slidingWindowSize` seconds.
    TimeBased,
}

/// Why a breaker changed state.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(
    name = "CircuitBreakerTransitionCause",
    remote = "entity::circuit_breaker_transition::TransitionCause"
)]
pub enum CauseGql {
    ThresholdsExceeded,
    WaitElapsed,
    ProbesPassed,
    ProbesFailed,
    HalfOpenTimeout,
    Manual,
}

/// Where a breaker's window is kept, as seen from the replica answering.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "CircuitBreakerScope")]
pub enum Scope {
    /// In Redis: one window, state and probe budget for every replica.
    Shared,
    /// In this replica: the embedded profile, a dependency breaker (it guards this process'
    /// own calls), or a replica that cannot reach Redis right now.
    Replica,
}

/// What a permitted call came to.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "CallOutcome")]
pub enum OutcomeGql {
    Success,
    Failure,
    /// Neither (the caller gave up, the error was the caller's own): not counted; a
    /// `HALF_OPEN` probe returns its permit.
    Ignored,
}

impl From<OutcomeGql> for Outcome {
    fn from(o: OutcomeGql) -> Self {
        match o {
            OutcomeGql::Success => Self::Success,
            OutcomeGql::Failure => Self::Failure,
            OutcomeGql::Ignored => Self::Ignored,
        }
    }
}

/// The longest name; names are letters, digits, `_` and `-` (they become NATS subject
/// tokens and Redis key parts).
pub const NAME_MAX: usize = 64;
/// The longest reason a manual change may carry.
pub const REASON_MAX: usize = 500;

pub fn check_name(name: &str) -> AppResult<()> {
    let ok = !name.is_empty()
        && name.len() <= NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(AppError::bad_field(
            "name",
            format!("1 to {NAME_MAX} letters, digits, `_` or `-`"),
        ))
    }
}

/// A manual change's reason: required, trimmed, at most `REASON_MAX` characters.
pub fn check_reason(reason: &str) -> AppResult<String> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > REASON_MAX {
        return Err(AppError::bad_field(
            "reason",
            format!("say why, in 1 to {REASON_MAX} characters"),
        ));
    }
    Ok(reason.to_owned())
}

fn to_u32(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The rules' configuration of a record.
pub fn config_of(row: &circuit_breaker::Model) -> Config {
    Config {
        window_type: row.window_type,
        window_size: to_u32(row.window_size),
        minimum_calls: to_u32(row.minimum_calls),
        failure_rate_threshold: row.failure_rate_threshold,
        slow_call_rate_threshold: row.slow_call_rate_threshold,
        slow_call_duration_ms: to_u64(row.slow_call_duration_ms),
        wait_in_open_ms: to_u64(row.wait_in_open_ms),
        half_open_calls: to_u32(row.half_open_calls),
        max_wait_in_half_open_ms: to_u64(row.max_wait_in_half_open_ms),
        automatic_transition: row.automatic_transition,
    }
}

/// Writes a (validated) configuration into a record.
pub fn set_config(row: &mut circuit_breaker::Model, c: &Config) {
    let i32_of = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
    let i64_of = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    row.window_type = c.window_type;
    row.window_size = i32_of(c.window_size);
    row.minimum_calls = i32_of(c.minimum_calls);
    row.failure_rate_threshold = c.failure_rate_threshold;
    row.slow_call_rate_threshold = c.slow_call_rate_threshold;
    row.slow_call_duration_ms = i64_of(c.slow_call_duration_ms);
    row.wait_in_open_ms = i64_of(c.wait_in_open_ms);
    row.half_open_calls = i32_of(c.half_open_calls);
    row.max_wait_in_half_open_ms = i64_of(c.max_wait_in_half_open_ms);
    row.automatic_transition = c.automatic_transition;
}

/// A configuration as the audit log keeps it (the API's names).
pub fn config_json(c: &Config) -> serde_json::Value {
    json!({
        "slidingWindowType": match c.window_type {
            WindowType::CountBased => "COUNT_BASED",
            WindowType::TimeBased => "TIME_BASED",
        },
        "slidingWindowSize": c.window_size,
        "minimumNumberOfCalls": c.minimum_calls,
        "failureRateThreshold": c.failure_rate_threshold,
        "slowCallRateThreshold": c.slow_call_rate_threshold,
        "slowCallDurationThresholdMs": c.slow_call_duration_ms,
        "waitDurationInOpenStateMs": c.wait_in_open_ms,
        "permittedNumberOfCallsInHalfOpenState": c.half_open_calls,
        "maxWaitDurationInHalfOpenStateMs": (c.max_wait_in_half_open_ms > 0).then_some(c.max_wait_in_half_open_ms),
        "automaticTransitionFromOpenToHalfOpen": c.automatic_transition,
    })
}

/// A permit: the breaker, the state period (epoch) it was issued in, when, and a random
/// part (the key it is stored under). Written `<name>:<epoch>:<acquiredMs>:<random>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermitId {
    pub name: String,
    pub epoch: u64,
    pub acquired_ms: u64,
    pub random: String,
}

impl fmt::Display for PermitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.name, self.epoch, self.acquired_ms, self.random
        )
    }
}

impl FromStr for PermitId {
    type Err = AppError;

    fn from_str(s: &str) -> AppResult<Self> {
        let bad = || {
            AppError::bad_field(
                "permitId",
                "not a permit id from acquireCircuitBreakerPermit",
            )
        };
        let mut parts = s.splitn(4, ':');
        let (Some(name), Some(epoch), Some(acquired), Some(random)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        check_name(name).map_err(|_| bad())?;
        let random_ok = random.len() == 32 && random.bytes().all(|b| b.is_ascii_hexdigit());
        if !random_ok {
            return Err(bad());
        }
        Ok(Self {
            name: name.to_owned(),
            epoch: epoch.parse().map_err(|_| bad())?,
            acquired_ms: acquired.parse().map_err(|_| bad())?,
            random: random.to_owned(),
        })
    }
}

/// A breaker as a read returns it.
#[derive(Debug, Clone)]
pub struct BreakerView {
    pub row: circuit_breaker::Model,
    pub config: Config,
    pub state: State,
    pub epoch: u64,
    pub since_ms: u64,
    pub metrics: Metrics,
    pub scope: Scope,
}

/// The answer to an acquire.
#[derive(Debug, Clone)]
pub struct Grant {
    /// `None` when refused.
    pub permit: Option<PermitId>,
    pub state: State,
    pub retry_after_ms: u64,
}

/// The answer to an outcome report.
#[derive(Debug, Clone, Copy)]
pub struct Recorded {
    /// The outcome entered the window (false: the breaker moved on since the permit, or the
    /// outcome was `IGNORED`, or the state records nothing).
    pub counted: bool,
    pub state: State,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permit_ids_round_trip_and_bad_ones_are_refused() {
        let p = PermitId {
            name: "openai-gpt_4".into(),
            epoch: 7,
            acquired_ms: 1_700_000_000_000,
            random: "0123456789abcdef0123456789abcdef".into(),
        };
        assert_eq!(p.to_string().parse::<PermitId>().ok(), Some(p));
        for bad in [
            "",
            "x",
            "a:1:2",
            "a:1:2:short",
            "a b:1:2:0123456789abcdef0123456789abcdef",
            "a:x:2:0123456789abcdef0123456789abcdef",
            "a:1:2:0123456789abcdef0123456789abcdeg",
        ] {
            assert!(bad.parse::<PermitId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_reasons() {
        assert!(check_name("openai").is_ok());
        for bad in ["", "a.b", "a:b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_reason("  ").is_err());
        assert_eq!(
            check_reason(" provider outage ").ok().as_deref(),
            Some("provider outage")
        );
    }
}
