//! `dlq_redrives`: jobs that move matching dead letters back to their queues at a set rate.
//! A job is owned by one replica at a time (heartbeat); another takes it over when the
//! heartbeat stops.
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "dlq_redrives")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The filter, as JSON (the dead letters it selects are those dead before `created_at`).
    #[sea_orm(column_type = "Text")]
    pub filter: String,
    pub rate_per_second: i32,
    pub status: RedriveStatus,
    /// Matching dead letters when the job started.
    pub total: i64,
    pub moved: i64,
    pub tenant_id: Option<String>,
    /// The replica running it, and when it last said so.
    pub owner: Option<String>,
    pub heartbeat_at: Option<DateTimeUtc>,
    pub created_by: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
}

/// A redrive's life: running → completed | cancelled. Stored as its upper-case name.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RedriveStatus {
    #[sea_orm(string_value = "RUNNING")]
    Running,
    #[sea_orm(string_value = "COMPLETED")]
    Completed,
    #[sea_orm(string_value = "CANCELLED")]
    Cancelled,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
