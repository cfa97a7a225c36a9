//! Events the budget domain writes into the outbox with each change (relayed after commit);
//! subjects `budget.<budgetId>.<kind>`.
//! They travel over NATS between replicas, so they carry plain serialisable snapshots.

use serde::{Deserialize, Serialize};

/// What happened to a budget.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BudgetEventKind {
    Created,
    Updated,
    Reserved,
    Committed,
    Released,
    Expired,
    Reset,
    /// `used` crossed one of the alert thresholds (once per threshold and period).
    ThresholdReached,
}

impl BudgetEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Reserved => "reserved",
            Self::Committed => "committed",
            Self::Released => "released",
            Self::Expired => "expired",
            Self::Reset => "reset",
            Self::ThresholdReached => "threshold_reached",
        }
    }
}

/// A budget as it was right after the change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BudgetEvent {
    pub kind: BudgetEventKind,
    pub budget: entity::budget::Model,
    /// The reservation the change was about, if any.
    pub reservation_id: Option<uuid::Uuid>,
    /// The percentage reached, for `ThresholdReached`.
    pub threshold: Option<i32>,
}
