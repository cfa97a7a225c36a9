//! Events the governance domain writes into the outbox with each change (relayed after
//! commit); subjects `governance.<agentRole>.<kind>`. They carry the update as stored and the
//! role's status right after the change, so every replica's subscribers see the same thing
//! without reading the database again.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::model::GovernanceState;

/// What happened.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[graphql(name = "LearningUpdateChangeKind")]
pub enum GovernanceEventKind {
    /// A proposal (or rollback) now waits for approval.
    Proposed,
    /// An update applied: a new prompt version.
    Applied,
    Rejected,
    Expired,
    /// The role's rule changed.
    RuleChanged,
}

impl GovernanceEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Proposed => "proposed",
            Self::Applied => "applied",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
            Self::RuleChanged => "rule_changed",
        }
    }
}

/// A role's governance status at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusSnapshot {
    pub rule: entity::governance_rule::Model,
    /// Updates applied in the last 24 hours.
    pub updates_in_window: i64,
    /// When the oldest of them leaves the window (`None` when there are none).
    pub window_frees_at: Option<DateTime<Utc>>,
    pub cooldown_ends_at: Option<DateTime<Utc>>,
    pub pending_approvals: i64,
    pub state: GovernanceState,
    /// When an update could next apply (`None`: now, or never when the rule allows none).
    pub next_allowed_at: Option<DateTime<Utc>>,
    /// The role's current prompt version (`None`: none yet).
    pub current_version: Option<i32>,
    pub at: DateTime<Utc>,
}

/// One change in the governance of a role.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GovernanceEvent {
    pub kind: GovernanceEventKind,
    pub update: Option<entity::learning_update::Model>,
    pub status: StatusSnapshot,
}
