//! `peer_reviews`: a weighted vote of a panel on a task; the row is also the lock every vote
//! on the review takes (after its task's).
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "peer_reviews")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub task_id: Uuid,
    pub tenant_id: Option<String>,
    /// Share of the panel's weight the weighted approvals must reach, in (0, 1].
    pub quorum: f64,
    pub status: ReviewStatus,
    pub created_by: String,
    pub created_at: DateTimeUtc,
    pub completed_at: Option<DateTimeUtc>,
}

/// `peer_reviews.status`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReviewStatus {
    #[sea_orm(string_value = "OPEN")]
    Open,
    #[sea_orm(string_value = "PASSED")]
    Passed,
    #[sea_orm(string_value = "REJECTED")]
    Rejected,
    #[sea_orm(string_value = "WITHDRAWN")]
    Withdrawn,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
