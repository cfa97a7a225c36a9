//! Events the task domain writes into the outbox with each change (relayed after commit);
//! subjects `task.<taskId>.<kind>`.

use serde::{Deserialize, Serialize};

/// What happened to a task.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskEventKind {
    Created,
    StateChanged,
    Assigned,
    Escalated,
    EscalationResolved,
    /// A quality gate's result was reported (by an agent, a person or a completed review).
    GateReported,
    /// A quality gate refused a move and a remediation plan was written (or replaced).
    RemediationPlanned,
}

impl TaskEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::StateChanged => "state_changed",
            Self::Assigned => "assigned",
            Self::Escalated => "escalated",
            Self::EscalationResolved => "escalation_resolved",
            Self::GateReported => "gate_reported",
            Self::RemediationPlanned => "remediation_planned",
        }
    }
}

/// A task as it was right after the change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskEvent {
    pub kind: TaskEventKind,
    pub task: entity::task::Model,
}
