//! `agents`: registered LLM agents, with their role and the task they work on now.
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "agents")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    pub role: String,
    pub status: AgentStatus,
    pub current_task_id: Option<Uuid>,
    pub tenant_id: Option<String>,
    /// `tenant_id` or `""`: the unique (scope_key, name) index treats "no tenant" as one scope.
    pub scope_key: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

/// `agents.status`, stored as its upper-case name.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AgentStatus {
    #[sea_orm(string_value = "IDLE")]
    Idle,
    #[sea_orm(string_value = "BUSY")]
    Busy,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
