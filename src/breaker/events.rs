//! Events breakers write into the outbox (relayed after commit); subjects
//! `breaker.<name>.<kind>`. Every replica applies them to its view of the breakers, and
//! `circuitBreakerChanged` streams them.

use serde::{Deserialize, Serialize};

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BreakerEventKind {
    /// The state changed (by the rules or by a person).
    Transitioned,
    /// The configuration was created or changed.
    Configured,
}

impl BreakerEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transitioned => "transitioned",
            Self::Configured => "configured",
        }
    }
}

/// A breaker right after the change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BreakerEvent {
    pub kind: BreakerEventKind,
    /// The record after the change. For a dependency breaker's own transition the record's
    /// state is not the replica's: `transition` says what happened where.
    pub breaker: entity::circuit_breaker::Model,
    pub transition: Option<entity::circuit_breaker_transition::Model>,
}
