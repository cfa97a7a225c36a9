//! GraphQL surface of the circuit breakers: thin resolvers that convert input, call
//! `BreakerService` and wrap what it returns.

use async_graphql::{
    Context, Enum, InputObject, Object, Result, SimpleObject, Subscription,
    connection::{Connection, Edge},
};
use chrono::{DateTime, Utc};
use entity::circuit_breaker_transition;
use futures::Stream;

use super::{
    events::BreakerEventKind,
    model::{BreakerStateGql, BreakerView, CauseGql, OutcomeGql, PermitId, Scope, WindowTypeGql},
    rules::{Config, State},
};
use crate::{
    auth::{guard::Require, permission::Permission},
    error::AppError,
    events::DomainEvent,
    graphql::context::{ConnectionFields, meta, page_cost, page_size, services, wants_total},
};

fn at(ms: u64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX)).unwrap_or_default()
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A breaker's configuration (resilience4j's names; durations in milliseconds).
#[derive(SimpleObject)]
#[graphql(name = "CircuitBreakerConfig")]
pub struct ConfigGql {
    pub sliding_window_type: WindowTypeGql,
    /// Calls (count-based) or seconds (time-based).
    pub sliding_window_size: i64,
    pub minimum_number_of_calls: i64,
    /// Percent.
    pub failure_rate_threshold: f64,
    /// Percent.
    pub slow_call_rate_threshold: f64,
    pub slow_call_duration_threshold_ms: i64,
    pub wait_duration_in_open_state_ms: i64,
    /// Probes in `HALF_OPEN`, across every replica.
    pub permitted_number_of_calls_in_half_open_state: i64,
    /// `null`: wait for the probes however long they take.
    pub max_wait_duration_in_half_open_state_ms: Option<i64>,
    pub automatic_transition_from_open_to_half_open: bool,
}

impl From<&Config> for ConfigGql {
    fn from(c: &Config) -> Self {
        Self {
            sliding_window_type: c.window_type.into(),
            sliding_window_size: c.window_size.into(),
            minimum_number_of_calls: c.minimum_calls.into(),
            failure_rate_threshold: c.failure_rate_threshold,
            slow_call_rate_threshold: c.slow_call_rate_threshold,
            slow_call_duration_threshold_ms: int(c.slow_call_duration_ms),
            wait_duration_in_open_state_ms: int(c.wait_in_open_ms),
            permitted_number_of_calls_in_half_open_state: c.half_open_calls.into(),
            max_wait_duration_in_half_open_state_ms: (c.max_wait_in_half_open_ms > 0)
                .then(|| int(c.max_wait_in_half_open_ms)),
            automatic_transition_from_open_to_half_open: c.automatic_transition,
        }
    }
}

/// Live figures of the current state (resilience4j's metrics).
#[derive(SimpleObject)]
#[graphql(name = "CircuitBreakerMetrics")]
pub struct MetricsGql {
    /// Percent; `null` until the window holds the minimum number of calls.
    pub failure_rate: Option<f64>,
    /// Percent; `null` until the window holds the minimum number of calls.
    pub slow_call_rate: Option<f64>,
    /// Calls in the sliding window (in `HALF_OPEN`: probes come back).
    pub number_of_calls: i64,
    pub number_of_failed_calls: i64,
    pub number_of_slow_calls: i64,
    /// Calls refused since the state began.
    pub number_of_not_permitted_calls: i64,
    /// Probes handed out in `HALF_OPEN`.
    pub probes_issued: i64,
    /// Time left in `OPEN` (0 in any other state, or once the wait is over).
    pub remaining_open_ms: i64,
}

/// A named breaker, as the replica answering sees it now.
pub struct CircuitBreaker(pub BreakerView);

#[Object]
impl CircuitBreaker {
    async fn name(&self) -> &str {
        &self.0.row.name
    }

    async fn state(&self) -> BreakerStateGql {
        self.0.state.into()
    }

    /// `SHARED`: one window and state for every replica (in Redis). `REPLICA`: this
    /// replica's own (the embedded profile, a dependency breaker, or Redis not answering).
    async fn scope(&self) -> Scope {
        self.0.scope
    }

    /// One of Aurum's own dependencies (`redis`, `nats`, `docker`), guarded per replica.
    async fn dependency(&self) -> bool {
        self.0.row.dependency
    }

    /// When the current state began.
    async fn state_since(&self) -> DateTime<Utc> {
        at(self.0.since_ms)
    }

    async fn configuration(&self) -> ConfigGql {
        (&self.0.config).into()
    }

    async fn metrics(&self) -> MetricsGql {
        let m = &self.0.metrics;
        MetricsGql {
            failure_rate: m.failure_rate,
            slow_call_rate: m.slow_call_rate,
            number_of_calls: m.counts.calls.into(),
            number_of_failed_calls: m.counts.failures.into(),
            number_of_slow_calls: m.counts.slow.into(),
            number_of_not_permitted_calls: int(m.not_permitted),
            probes_issued: m.probes_issued.into(),
            remaining_open_ms: int(m.remaining_open_ms),
        }
    }

    /// Who last changed the configuration.
    async fn updated_by(&self) -> &str {
        &self.0.row.updated_by
    }

    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.row.updated_at
    }
}

/// One state change, as history keeps it.
pub struct CircuitBreakerTransition(pub circuit_breaker_transition::Model);

#[Object]
impl CircuitBreakerTransition {
    async fn id(&self) -> String {
        self.0.id.to_string()
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn from_state(&self) -> BreakerStateGql {
        self.0.from_state.into()
    }

    async fn to_state(&self) -> BreakerStateGql {
        self.0.to_state.into()
    }

    async fn cause(&self) -> CauseGql {
        self.0.cause.into()
    }

    /// The failure rate (percent) that decided it, when a rate did.
    async fn failure_rate(&self) -> Option<f64> {
        self.0.failure_rate
    }

    async fn slow_call_rate(&self) -> Option<f64> {
        self.0.slow_call_rate
    }

    /// The person (or key) behind a manual change.
    async fn actor(&self) -> Option<&str> {
        self.0.actor.as_deref()
    }

    async fn reason(&self) -> Option<&str> {
        self.0.reason.as_deref()
    }

    /// The replica that decided it.
    async fn replica(&self) -> &str {
        &self.0.replica
    }

    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
}

/// The answer to `acquireCircuitBreakerPermit`.
#[derive(SimpleObject)]
pub struct CircuitBreakerPermit {
    pub permitted: bool,
    /// Report the call's outcome with it (`recordCircuitBreakerOutcome`), once.
    pub permit_id: Option<String>,
    pub state: BreakerStateGql,
    /// When refused: ask again after this long.
    pub retry_after_ms: Option<i64>,
}

/// The answer to `recordCircuitBreakerOutcome`.
#[derive(SimpleObject)]
pub struct CircuitBreakerOutcome {
    /// The outcome entered the window (`false`: the breaker moved on since the permit, the
    /// outcome was `IGNORED`, or the state records nothing).
    pub counted: bool,
    pub state: BreakerStateGql,
}

/// Creates a breaker or changes it. Omitted settings keep their value (a new breaker:
/// resilience4j's defaults). A change starts the window again and keeps the state.
#[derive(InputObject)]
pub struct ConfigureCircuitBreakerInput {
    /// Letters, digits, `_` and `-`, at most 64.
    pub name: String,
    pub sliding_window_type: Option<WindowTypeGql>,
    pub sliding_window_size: Option<i32>,
    pub minimum_number_of_calls: Option<i32>,
    pub failure_rate_threshold: Option<f64>,
    pub slow_call_rate_threshold: Option<f64>,
    pub slow_call_duration_threshold_ms: Option<i32>,
    pub wait_duration_in_open_state_ms: Option<i32>,
    pub permitted_number_of_calls_in_half_open_state: Option<i32>,
    /// 0 or omitted on a new breaker: wait for the probes however long they take.
    pub max_wait_duration_in_half_open_state_ms: Option<i32>,
    pub automatic_transition_from_open_to_half_open: Option<bool>,
    /// Why (kept in the audit log).
    pub reason: String,
}

fn non_negative<T: TryFrom<i32>>(field: &'static str, v: i32) -> Result<T, AppError> {
    T::try_from(v).map_err(|_| AppError::bad_field(field, "must not be negative"))
}

impl ConfigureCircuitBreakerInput {
    fn apply(&self, mut c: Config) -> Result<Config, AppError> {
        if let Some(v) = self.sliding_window_type {
            c.window_type = v.into();
        }
        if let Some(v) = self.sliding_window_size {
            c.window_size = non_negative("slidingWindowSize", v)?;
        }
        if let Some(v) = self.minimum_number_of_calls {
            c.minimum_calls = non_negative("minimumNumberOfCalls", v)?;
        }
        if let Some(v) = self.failure_rate_threshold {
            c.failure_rate_threshold = v;
        }
        if let Some(v) = self.slow_call_rate_threshold {
            c.slow_call_rate_threshold = v;
        }
        if let Some(v) = self.slow_call_duration_threshold_ms {
            c.slow_call_duration_ms = non_negative("slowCallDurationThresholdMs", v)?;
        }
        if let Some(v) = self.wait_duration_in_open_state_ms {
            c.wait_in_open_ms = non_negative("waitDurationInOpenStateMs", v)?;
        }
        if let Some(v) = self.permitted_number_of_calls_in_half_open_state {
            c.half_open_calls = non_negative("permittedNumberOfCallsInHalfOpenState", v)?;
        }
        if let Some(v) = self.max_wait_duration_in_half_open_state_ms {
            c.max_wait_in_half_open_ms = non_negative("maxWaitDurationInHalfOpenStateMs", v)?;
        }
        if let Some(v) = self.automatic_transition_from_open_to_half_open {
            c.automatic_transition = v;
        }
        Ok(c)
    }
}

#[derive(InputObject)]
pub struct RecordCircuitBreakerOutcomeInput {
    /// From `acquireCircuitBreakerPermit`.
    pub permit_id: String,
    pub outcome: OutcomeGql,
    /// How long the call took; omitted: the time since the permit was issued.
    pub duration_ms: Option<i32>,
}

type BreakerConnection = Connection<String, CircuitBreaker, ConnectionFields>;
type TransitionConnection = Connection<String, CircuitBreakerTransition, ConnectionFields>;

#[derive(Default)]
pub struct BreakerQuery;

#[Object]
impl BreakerQuery {
    #[graphql(
        guard = "Require(Permission::BreakerView)",
        complexity = "page_cost(first, child_complexity)"
    )]
    /// Every breaker, by name (`after`: the last name seen).
    async fn circuit_breakers(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<BreakerConnection> {
        let svc = &services(ctx)?.breakers;
        let first = page_size(services(ctx)?, first)?;
        let (names, more) = svc.names(
            after.as_deref(),
            usize::try_from(first).unwrap_or(usize::MAX),
        );
        let mut conn = Connection::with_additional_fields(
            after.is_some(),
            more,
            ConnectionFields {
                total_count: svc.count() as u64,
            },
        );
        for name in names {
            // Gone between the listing and the read: skipped.
            if let Ok(view) = svc.view(&name).await {
                conn.edges.push(Edge::new(name, CircuitBreaker(view)));
            }
        }
        Ok(conn)
    }

    #[graphql(guard = "Require(Permission::BreakerView)")]
    /// One breaker by name; `null` when there is none.
    async fn circuit_breaker(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> Result<Option<CircuitBreaker>> {
        match services(ctx)?.breakers.view(&name).await {
            Ok(view) => Ok(Some(CircuitBreaker(view))),
            Err(AppError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    #[graphql(
        guard = "Require(Permission::BreakerView)",
        complexity = "page_cost(first, child_complexity)"
    )]
    /// A breaker's transitions, newest first (`after`: the last `id` seen).
    async fn circuit_breaker_transitions(
        &self,
        ctx: &Context<'_>,
        name: String,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<TransitionConnection> {
        let first = page_size(services(ctx)?, first)?;
        let after_id = after
            .as_deref()
            .map(|a| {
                a.parse::<i64>().map_err(|_| {
                    AppError::bad_field("after", "after is not a cursor from this list")
                })
            })
            .transpose()?;
        let (rows, more) = services(ctx)?
            .breakers
            .transitions(&name, after_id, first)
            .await?;
        let total_count = if wants_total(ctx) {
            services(ctx)?.breakers.count_transitions(&name).await?
        } else {
            0
        };
        let mut conn = Connection::with_additional_fields(
            after.is_some(),
            more,
            ConnectionFields { total_count },
        );
        conn.edges.extend(
            rows.into_iter()
                .map(|r| Edge::new(r.id.to_string(), CircuitBreakerTransition(r))),
        );
        Ok(conn)
    }
}

#[derive(Default)]
pub struct BreakerMutation;

#[Object]
impl BreakerMutation {
    #[graphql(guard = "Require(Permission::BreakerManage)")]
    /// Creates a breaker or changes its configuration (validated: thresholds 1–100, sizes
    /// ≥ 1, durations > 0; a bad value is `BAD_USER_INPUT` and changes nothing).
    async fn configure_circuit_breaker(
        &self,
        ctx: &Context<'_>,
        input: ConfigureCircuitBreakerInput,
    ) -> Result<CircuitBreaker> {
        let svc = &services(ctx)?.breakers;
        let current = svc.configuration(&input.name).unwrap_or(Config::DEFAULT);
        let config = input.apply(current)?;
        Ok(CircuitBreaker(
            svc.configure(&meta(ctx), &input.name, config, &input.reason)
                .await?,
        ))
    }

    #[graphql(guard = "Require(Permission::BreakerUse)")]
    /// Asks to make a call through breaker `name`. Permitted: call, then report the outcome
    /// with `permitId`. Refused: don't call; ask again after `retryAfterMs`.
    async fn acquire_circuit_breaker_permit(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> Result<CircuitBreakerPermit> {
        let grant = services(ctx)?.breakers.acquire(&name).await?;
        Ok(CircuitBreakerPermit {
            permitted: grant.permit.is_some(),
            permit_id: grant.permit.as_ref().map(PermitId::to_string),
            state: grant.state.into(),
            retry_after_ms: grant.permit.is_none().then(|| int(grant.retry_after_ms)),
        })
    }

    #[graphql(guard = "Require(Permission::BreakerUse)")]
    /// Reports how a permitted call went, once per permit (an unknown permit is
    /// `NOT_FOUND`, a second report `PERMIT_ALREADY_RECORDED`).
    async fn record_circuit_breaker_outcome(
        &self,
        ctx: &Context<'_>,
        input: RecordCircuitBreakerOutcomeInput,
    ) -> Result<CircuitBreakerOutcome> {
        let permit: PermitId = input.permit_id.parse()?;
        let duration = input
            .duration_ms
            .map(|d| non_negative::<u64>("durationMs", d))
            .transpose()?;
        let recorded = services(ctx)?
            .breakers
            .record(&permit, input.outcome.into(), duration)
            .await?;
        Ok(CircuitBreakerOutcome {
            counted: recorded.counted,
            state: recorded.state.into(),
        })
    }

    #[graphql(guard = "Require(Permission::BreakerManage)")]
    /// `FORCED_OPEN`: every call refused until a person changes it.
    async fn force_open_circuit_breaker(
        &self,
        ctx: &Context<'_>,
        name: String,
        reason: String,
    ) -> Result<CircuitBreaker> {
        set(ctx, &name, State::ForcedOpen, &reason).await
    }

    #[graphql(guard = "Require(Permission::BreakerManage)")]
    /// `DISABLED`: every call goes through and nothing is recorded, until a reset.
    async fn force_close_circuit_breaker(
        &self,
        ctx: &Context<'_>,
        name: String,
        reason: String,
    ) -> Result<CircuitBreaker> {
        set(ctx, &name, State::Disabled, &reason).await
    }

    #[graphql(guard = "Require(Permission::BreakerManage)")]
    /// `METRICS_ONLY`: every call goes through; outcomes are measured but never open it.
    async fn metrics_only_circuit_breaker(
        &self,
        ctx: &Context<'_>,
        name: String,
        reason: String,
    ) -> Result<CircuitBreaker> {
        set(ctx, &name, State::MetricsOnly, &reason).await
    }

    #[graphql(guard = "Require(Permission::BreakerManage)")]
    /// Back to `CLOSED` with an empty window.
    async fn reset_circuit_breaker(
        &self,
        ctx: &Context<'_>,
        name: String,
        reason: String,
    ) -> Result<CircuitBreaker> {
        set(ctx, &name, State::Closed, &reason).await
    }

    #[graphql(guard = "Require(Permission::BreakerManage)")]
    /// Resets every breaker (the dependency breakers too); returns how many.
    async fn reset_all_circuit_breakers(&self, ctx: &Context<'_>, reason: String) -> Result<u64> {
        Ok(services(ctx)?
            .breakers
            .reset_all(&meta(ctx), &reason)
            .await?)
    }
}

async fn set(ctx: &Context<'_>, name: &str, to: State, reason: &str) -> Result<CircuitBreaker> {
    Ok(CircuitBreaker(
        services(ctx)?
            .breakers
            .set_state(&meta(ctx), name, to, reason)
            .await?,
    ))
}

/// What changed about a breaker.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "CircuitBreakerChangeKind")]
pub enum ChangeKind {
    Transitioned,
    Configured,
}

/// One change of a breaker, as `circuitBreakerChanged` delivers it.
#[derive(SimpleObject)]
pub struct CircuitBreakerChange {
    /// Resume after this event with `after`.
    pub cursor: String,
    pub kind: ChangeKind,
    pub name: String,
    /// The state after the change (a dependency breaker's: on `replica`).
    pub state: BreakerStateGql,
    pub previous_state: Option<BreakerStateGql>,
    pub cause: Option<CauseGql>,
    /// The replica that decided it.
    pub replica: Option<String>,
    pub dependency: bool,
    pub configuration: ConfigGql,
}

#[derive(Default)]
pub struct BreakerSubscription;

#[Subscription]
impl BreakerSubscription {
    #[graphql(guard = "Require(Permission::BreakerView)")]
    /// Every transition and configuration change of one breaker (`name`) or of all. `after`
    /// resumes as for the other subscriptions.
    async fn circuit_breaker_changed(
        &self,
        ctx: &Context<'_>,
        name: Option<String>,
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<CircuitBreakerChange>> + use<>> {
        crate::graphql::events::subscribe(ctx, after, move |cursor, event| match event {
            DomainEvent::Breaker(e) if name.as_ref().is_none_or(|n| *n == e.breaker.name) => {
                let t = e.transition.as_ref();
                Some(CircuitBreakerChange {
                    cursor,
                    kind: match e.kind {
                        BreakerEventKind::Transitioned => ChangeKind::Transitioned,
                        BreakerEventKind::Configured => ChangeKind::Configured,
                    },
                    name: e.breaker.name.clone(),
                    state: t.map_or(e.breaker.state, |t| t.to_state).into(),
                    previous_state: t.map(|t| t.from_state.into()),
                    cause: t.map(|t| t.cause.into()),
                    replica: t.map(|t| t.replica.clone()),
                    dependency: e.breaker.dependency,
                    configuration: (&super::model::config_of(&e.breaker)).into(),
                })
            }
            _ => None,
        })
        .await
    }
}
