//! `task_gate_results`: the latest result reported for one gate on one task, and how many
//! transitions in a row the gate has refused since it last passed.
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "task_gate_results")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub task_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub gate: String,
    pub tenant_id: Option<String>,
    /// `None`: no result reported yet (the row exists because the gate refused a move).
    pub passed: Option<bool>,
    #[sea_orm(column_type = "Text", nullable)]
    pub detail: Option<String>,
    pub reported_by: Option<String>,
    pub reported_at: Option<DateTimeUtc>,
    pub consecutive_failures: i32,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
