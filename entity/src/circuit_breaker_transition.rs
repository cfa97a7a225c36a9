//! `circuit_breaker_transitions`: every state change of every breaker, as history.
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

pub use super::circuit_breaker::BreakerState;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "circuit_breaker_transitions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub name: String,
    pub epoch: i64,
    pub from_state: BreakerState,
    pub to_state: BreakerState,
    pub cause: TransitionCause,
    /// Failure and slow-call rates (percent) that decided it, when rates decided it.
    pub failure_rate: Option<f64>,
    pub slow_call_rate: Option<f64>,
    /// The person (or key) behind a manual change, and the reason they gave.
    pub actor: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub reason: Option<String>,
    /// The replica that decided it.
    pub replica: String,
    pub at: DateTimeUtc,
}

/// Why a breaker changed state. Stored as the upper-case name.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TransitionCause {
    /// The failure or slow-call rate reached its threshold.
    #[sea_orm(string_value = "THRESHOLDS_EXCEEDED")]
    ThresholdsExceeded,
    /// `waitDurationInOpenState` passed.
    #[sea_orm(string_value = "WAIT_ELAPSED")]
    WaitElapsed,
    /// The half-open probes came back under the thresholds.
    #[sea_orm(string_value = "PROBES_PASSED")]
    ProbesPassed,
    /// The half-open probes came back over a threshold.
    #[sea_orm(string_value = "PROBES_FAILED")]
    ProbesFailed,
    /// `maxWaitDurationInHalfOpenState` passed before the probes came back.
    #[sea_orm(string_value = "HALF_OPEN_TIMEOUT")]
    HalfOpenTimeout,
    /// A person forced, disabled or reset it.
    #[sea_orm(string_value = "MANUAL")]
    Manual,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
