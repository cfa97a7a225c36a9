//! `remediation_actions`: one planned action per failing gate of a remediation plan.
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::task_gate::ActionType;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "remediation_actions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub plan_id: Uuid,
    pub task_id: Uuid,
    pub gate: String,
    pub action_type: ActionType,
    pub priority: i32,
    pub agent_role: String,
    /// Why the gate failed: no result reported, or the reported failure's detail.
    #[sea_orm(column_type = "Text")]
    pub reason: String,
    pub status: ActionStatus,
    pub done_by: Option<String>,
    pub done_at: Option<DateTimeUtc>,
}

/// `remediation_actions.status`: DONE once the gate is reported passed.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActionStatus {
    #[sea_orm(string_value = "OPEN")]
    Open,
    #[sea_orm(string_value = "DONE")]
    Done,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
