//! `llm_output_kinds`: output kinds administrators registered, each with its JSON Schema.
//! The built-in kinds (`SYNTHESIS`, `PATTERN`, `CONSENSUS`) are schema files in the
//! repository, not rows. A kind never changes once registered.
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "llm_output_kinds")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    pub description: String,
    /// The JSON Schema, as JSON text.
    pub schema: String,
    pub created_by: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
