//! `task_outputs`: every output an agent submitted for a task, as extracted, validated and
//! (where it could be) repaired. The newest valid one is the task's result.
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "task_outputs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub task_id: Uuid,
    /// The output kind it was validated as.
    pub kind: String,
    pub valid: bool,
    /// The value (JSON text) after normalisation and repair; `None` when no JSON was found.
    pub value: Option<String>,
    /// Validation errors left, as JSON (`[{pointer, message}]`).
    pub errors: String,
    /// Fixes applied, as JSON (`[{pointer, kind, message}]`).
    pub fixes: String,
    /// The escalation an invalid output opened.
    pub escalation_id: Option<Uuid>,
    pub submitted_by: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
