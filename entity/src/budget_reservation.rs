//! `budget_reservations`: tokens held for one LLM call until committed, released or expired.
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "budget_reservations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub budget_id: Uuid,
    pub tenant_id: String,
    pub project_id: String,
    pub amount: i64,
    pub actual_amount: Option<i64>,
    pub status: Status,
    pub expires_at: DateTimeUtc,
    pub task_id: Option<Uuid>,
    pub model: Option<String>,
    /// The idempotency scope of the caller that reserved (`user:<id>`).
    pub caller: String,
    pub request_id: String,
    pub created_at: DateTimeUtc,
    pub resolved_at: Option<DateTimeUtc>,
}

/// Where a reservation is in its one-way life: reserved → committed | released | expired.
/// Stored as its lowercase name; the serde names are the same, so stored idempotent answers
/// and published events keep their bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[sea_orm(string_value = "reserved")]
    Reserved,
    #[sea_orm(string_value = "committed")]
    Committed,
    #[sea_orm(string_value = "released")]
    Released,
    #[sea_orm(string_value = "expired")]
    Expired,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
