//! `dlq_messages`: task messages that exhausted their deliveries or were rejected as poison,
//! copied here (in the transaction that also fails their task) before they leave the queue.
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "dlq_messages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub queue: String,
    /// The subject the message was published on (retries go back there).
    pub subject: String,
    /// Where the message was: the JetStream stream, or `database`.
    pub stream: String,
    /// Its sequence there; (stream, stream_seq) is unique, so a message is captured once.
    pub stream_seq: i64,
    pub task_id: Uuid,
    pub tenant_id: Option<String>,
    /// The message's headers, as a JSON object.
    #[sea_orm(column_type = "Text")]
    pub headers: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub payload: Option<String>,
    pub reason: DeadReason,
    pub attempts: i32,
    /// The errors workers reported, as a JSON array of `{attempt, at, error}`.
    #[sea_orm(column_type = "Text")]
    pub errors: String,
    /// The last error reported (searchable), if any.
    #[sea_orm(column_type = "Text", nullable)]
    pub last_error: Option<String>,
    pub first_delivered_at: Option<DateTimeUtc>,
    pub last_delivered_at: Option<DateTimeUtc>,
    pub dead_at: DateTimeUtc,
    pub status: DlqStatus,
    #[sea_orm(column_type = "Text", nullable)]
    pub note: Option<String>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<DateTimeUtc>,
    /// The redrive job that moved it back, if one did.
    pub redrive_id: Option<Uuid>,
}

/// Why a message died. Stored as its upper-case name.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeadReason {
    /// Every allowed delivery failed or timed out.
    #[sea_orm(string_value = "MAX_DELIVERIES")]
    MaxDeliveries,
    /// A worker rejected it as poison.
    #[sea_orm(string_value = "REJECTED")]
    Rejected,
}

/// What became of a dead letter. Stored as its upper-case name.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DlqStatus {
    /// Waiting for someone.
    #[sea_orm(string_value = "OPEN")]
    Open,
    /// Closed with a note, not retried.
    #[sea_orm(string_value = "RESOLVED")]
    Resolved,
    /// Published back to its queue (a retry or a redrive).
    #[sea_orm(string_value = "RETRIED")]
    Retried,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
