//! `escalations`: a task (and optionally an agent) handed to a human, with a reason.
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "escalations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub task_id: Uuid,
    pub agent_id: Option<Uuid>,
    #[sea_orm(column_type = "Text")]
    pub reason: String,
    pub severity: String,
    pub status: String,
    pub resolution: Option<String>,
    pub resolved_by: Option<String>,
    pub tenant_id: Option<String>,
    pub created_by: String,
    pub created_at: DateTimeUtc,
    pub resolved_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
