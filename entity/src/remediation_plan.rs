//! `remediation_plans`: what the fleet should do after a quality gate refused a task's move;
//! at most one ACTIVE plan per task.
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::task::TaskState;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "remediation_plans")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub task_id: Uuid,
    pub tenant_id: Option<String>,
    /// The state the refused move was heading for.
    pub target_state: TaskState,
    pub status: PlanStatus,
    pub created_by: String,
    pub created_at: DateTimeUtc,
    pub closed_at: Option<DateTimeUtc>,
    /// The plan that replaced this one (status SUPERSEDED).
    pub superseded_by: Option<Uuid>,
}

/// `remediation_plans.status`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PlanStatus {
    #[sea_orm(string_value = "ACTIVE")]
    Active,
    #[sea_orm(string_value = "RESOLVED")]
    Resolved,
    #[sea_orm(string_value = "SUPERSEDED")]
    Superseded,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
