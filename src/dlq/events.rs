//! Events the DLQ writes into the outbox with each change (relayed after commit); subjects
//! `dlq.<id>.<kind>` and `dlq_redrive.<jobId>.progress`.

use serde::{Deserialize, Serialize};

/// What happened to a dead letter. (A purge announces nothing per row: it is one audited
/// deletion of many.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DlqEventKind {
    /// A message was dead-lettered.
    Added,
    Resolved,
    /// Published back to its queue (a retry or a redrive).
    Retried,
}

impl DlqEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Resolved => "resolved",
            Self::Retried => "retried",
        }
    }
}

/// A dead letter right after the change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DlqEvent {
    pub kind: DlqEventKind,
    pub message: entity::dlq_message::Model,
}

/// A redrive job's progress (every batch it moves, and its end).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RedriveEvent {
    pub job: entity::dlq_redrive::Model,
}
