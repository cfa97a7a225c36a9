//! `task_gates`: quality gates configured by operators, each guarding task states and naming
//! the remediation a failure plans. Gates not stored here use the task domain's defaults.
use sea_orm::{FromJsonQueryResult, entity::prelude::*};
use serde::{Deserialize, Serialize};

use crate::task::TaskState;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "task_gates")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    /// The states a task may only enter while the gate holds.
    pub targets: TargetStates,
    pub action_type: ActionType,
    pub priority: i32,
    pub agent_role: String,
    /// Consecutive refusals by this gate on one task that open an escalation (0: never).
    pub escalate_after: i32,
    /// Whether a passed peer review reports this gate passed (and a rejected one, failed).
    pub satisfied_by_review: bool,
    pub enabled: bool,
    pub updated_by: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

/// `task_gates.targets`: a JSON array of state names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, FromJsonQueryResult)]
pub struct TargetStates(pub Vec<TaskState>);

/// What a remediation action asks for; the same list the LLM synthesis schema allows.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "lowercase")]
pub enum ActionType {
    #[sea_orm(string_value = "fix")]
    Fix,
    #[sea_orm(string_value = "improve")]
    Improve,
    #[sea_orm(string_value = "refactor")]
    Refactor,
    #[sea_orm(string_value = "test")]
    Test,
    #[sea_orm(string_value = "review")]
    Review,
    #[sea_orm(string_value = "document")]
    Document,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
