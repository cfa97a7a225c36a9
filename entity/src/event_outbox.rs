//! `event_outbox`: domain events written in the same transaction as the change they report,
//! until a relay has handed them to the bus. With NATS the relay publishes a row to JetStream
//! and deletes it; without NATS the table is the bus: the relay gives each row its `position`
//! (its cursor) and rows stay for the retention period, for replay.
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "event_outbox")]
pub struct Model {
    /// Insertion order, which is the relay's order.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Unique per event: the bus deduplicates a relay that publishes twice by it.
    pub event_id: Uuid,
    /// Subject below the bus prefix, `<domain>.<id>.<event>`.
    pub subject: String,
    /// The event, as JSON.
    pub payload: String,
    pub created_at: DateTimeUtc,
    /// The event's place in the feed, set by the relay when the database is the bus; null
    /// until relayed there, and always null with NATS (JetStream numbers the events).
    pub position: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
