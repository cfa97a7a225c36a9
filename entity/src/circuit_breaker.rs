//! `circuit_breakers`: one row per named breaker, the record of its configuration and of the
//! state it was last persisted in (forced states, and the `OPEN` time a restart keeps). The
//! hot sliding window lives in Redis (or in process), not here.
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "circuit_breakers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    /// One of Aurum's own dependencies (`redis`, `nats`, `docker`): each replica keeps its own
    /// window, since the breaker guards the very service that would share it.
    pub dependency: bool,
    pub window_type: WindowType,
    pub window_size: i32,
    pub minimum_calls: i32,
    pub failure_rate_threshold: f64,
    pub slow_call_rate_threshold: f64,
    pub slow_call_duration_ms: i64,
    pub wait_in_open_ms: i64,
    pub half_open_calls: i32,
    /// 0: a `HALF_OPEN` breaker waits for its probes however long they take.
    pub max_wait_in_half_open_ms: i64,
    pub automatic_transition: bool,
    /// Bumped by every configuration change: a window kept under an older one is cleared.
    pub config_version: i64,
    pub state: BreakerState,
    /// Bumped by every transition; a newer epoch always wins.
    pub epoch: i64,
    pub state_since: DateTimeUtc,
    pub updated_by: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

/// resilience4j's states. Stored as the upper-case name.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BreakerState {
    #[sea_orm(string_value = "CLOSED")]
    Closed,
    #[sea_orm(string_value = "OPEN")]
    Open,
    #[sea_orm(string_value = "HALF_OPEN")]
    HalfOpen,
    #[sea_orm(string_value = "FORCED_OPEN")]
    ForcedOpen,
    #[sea_orm(string_value = "DISABLED")]
    Disabled,
    #[sea_orm(string_value = "METRICS_ONLY")]
    MetricsOnly,
}

/// How the sliding window is measured.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WindowType {
    /// The last `window_size` calls.
    #[sea_orm(string_value = "COUNT_BASED")]
    CountBased,
    /// The calls of the last `window_size` seconds.
    #[sea_orm(string_value = "TIME_BASED")]
    TimeBased,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
