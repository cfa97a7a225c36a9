//! Queue and dead-letter types and their pure rules: the GraphQL enums over the stored ones,
//! delivery ids, the error list a message carries, and input limits.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a message was dead-lettered.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "entity::dlq_message::DeadReason")]
pub enum DeadReason {
    /// Every allowed delivery failed or timed out.
    MaxDeliveries,
    /// A worker rejected it as poison.
    Rejected,
}

/// What became of a dead letter.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "entity::dlq_message::DlqStatus")]
pub enum DlqStatus {
    /// Waiting for someone.
    Open,
    /// Closed with a note.
    Resolved,
    /// Published back to its queue.
    Retried,
}

/// Where a redrive job is.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "entity::dlq_redrive::RedriveStatus")]
pub enum RedriveStatus {
    Running,
    Completed,
    Cancelled,
}

/// Input limits, checked before anything is written.
pub mod limits {
    /// Largest payload `enqueueTask` takes, in bytes (UTF-8).
    pub const PAYLOAD_MAX: usize = 64 * 1024;
    /// Longest error a worker reports with a nack or reject (longer ones are refused).
    pub const ERROR_MAX: usize = 4_000;
    /// Longest resolution note.
    pub const NOTE_MAX: usize = 10_000;
    /// Most deliveries one claim returns.
    pub const CLAIM_MAX: i32 = 100;
    /// Longest a claim waits for messages, in milliseconds.
    pub const WAIT_MAX_MS: i32 = 30_000;
    /// Longest delay a nack may ask for, in seconds (one day).
    pub const DELAY_MAX_SECONDS: i32 = 86_400;
    /// Fastest redrive rate, messages per second.
    pub const RATE_MAX: i32 = 10_000;
}

/// One error a worker reported, as kept on the message and its dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedError {
    pub attempt: i32,
    pub at: DateTime<Utc>,
    pub error: String,
}

/// The error list stored as JSON text; unreadable text (hand-edited rows) reads as empty.
pub fn read_errors(stored: &str) -> Vec<ReportedError> {
    serde_json::from_str(stored).unwrap_or_default()
}

/// `stored` with `error` appended, as JSON text.
pub fn push_error(stored: &str, error: ReportedError) -> String {
    let mut errors = read_errors(stored);
    errors.push(error);
    serde_json::to_string(&errors).unwrap_or_else(|_| "[]".into())
}

/// A delivery handed to a worker: the message's row, the attempt, and the secret token that
/// only this delivery's id carries. Written `<message>.<attempt>.<token>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryId {
    pub message: i64,
    pub attempt: i32,
    pub token: Uuid,
}

impl DeliveryId {
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('.');
        let message = parts.next()?.parse().ok()?;
        let attempt = parts.next()?.parse().ok()?;
        let token = Uuid::try_parse(parts.next()?).ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Self {
            message,
            attempt,
            token,
        })
    }
}

impl std::fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{}.{}",
            self.message,
            self.attempt,
            self.token.as_simple()
        )
    }
}

/// Trims an error or reason text and checks it: 1 to [`limits::ERROR_MAX`] characters.
pub fn error_text(field: &'static str, value: &str) -> Result<String, String> {
    crate::task::model::required_text(field, value, limits::ERROR_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_ids_round_trip_and_refuse_garbage() {
        let id = DeliveryId {
            message: 42,
            attempt: 3,
            token: Uuid::now_v7(),
        };
        assert_eq!(DeliveryId::parse(&id.to_string()), Some(id));
        for bad in [
            "",
            "42",
            "42.3",
            "x.3.abc",
            &format!("{id}.1"),
            "42.3.nottoken",
        ] {
            assert_eq!(DeliveryId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn errors_accumulate_and_bad_text_reads_empty() {
        let at = Utc::now();
        let one = push_error(
            "[]",
            ReportedError {
                attempt: 1,
                at,
                error: "timeout".into(),
            },
        );
        let two = push_error(
            &one,
            ReportedError {
                attempt: 2,
                at,
                error: "again".into(),
            },
        );
        let read = read_errors(&two);
        assert_eq!(read.len(), 2);
        assert_eq!(read[1].error, "again");
        assert!(read_errors("not json").is_empty());
    }
}
