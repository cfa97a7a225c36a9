//! `review_weights`: how much an agent role's vote weighs in peer reviews, where an operator
//! changed it from the task domain's defaults.
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "review_weights")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub agent_role: String,
    pub weight: f64,
    pub updated_by: String,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
