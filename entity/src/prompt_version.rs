//! `prompt_versions`: every prompt an agent role has had, numbered 1, 2, 3 … without gaps.
//! The highest number is the current prompt.
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "prompt_versions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub agent_role: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub version: i32,
    pub text: String,
    /// The learning update that made it.
    pub update_id: Uuid,
    pub proposed_by: String,
    /// `None` when the role's rule needed no approval.
    pub approved_by: Option<String>,
    /// For a rollback: the version whose text it restored.
    pub rollback_of: Option<i32>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
