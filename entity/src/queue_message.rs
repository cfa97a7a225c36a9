//! `queue_messages`: task messages of the work queues. Without NATS this table is the queue
//! (visibility timeout, attempts, backoff); with NATS the message lives in JetStream and a row
//! here tracks the deliveries handed out through GraphQL (delivery token, deadline, the errors
//! workers reported), keyed by the message's stream sequence.
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "queue_messages")]
pub struct Model {
    /// Insertion order: the message's sequence on the database queue.
    #[sea_orm(primary_key)]
    pub id: i64,
    pub queue: String,
    /// JetStream's sequence of the message; null on the database queue.
    pub stream_seq: Option<i64>,
    pub task_id: Uuid,
    pub tenant_id: Option<String>,
    /// The deduplication id (`<caller scope>:<requestId>`), unique per queue.
    pub msg_id: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub payload: Option<String>,
    pub state: MessageState,
    /// Deliveries so far.
    pub attempts: i32,
    /// When a `READY` message may be claimed next (backoff).
    pub visible_at: DateTimeUtc,
    /// The current delivery's secret; a delivery id names it.
    pub delivery_token: Option<Uuid>,
    /// When the current delivery ends unless acknowledged or extended.
    pub deadline: Option<DateTimeUtc>,
    /// JetStream's reply subject of the current delivery (acks go there).
    pub reply: Option<String>,
    /// The errors workers reported, as a JSON array of `{attempt, at, error}`.
    #[sea_orm(column_type = "Text")]
    pub errors: String,
    pub enqueued_by: String,
    pub enqueued_at: DateTimeUtc,
    pub first_delivered_at: Option<DateTimeUtc>,
    pub last_delivered_at: Option<DateTimeUtc>,
    pub updated_at: DateTimeUtc,
}

/// Where a message is: ready → claimed → (ready again after a nack or a lapsed delivery) →
/// acked | dead. Stored as its upper-case name.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MessageState {
    #[sea_orm(string_value = "READY")]
    Ready,
    #[sea_orm(string_value = "CLAIMED")]
    Claimed,
    #[sea_orm(string_value = "ACKED")]
    Acked,
    #[sea_orm(string_value = "DEAD")]
    Dead,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
