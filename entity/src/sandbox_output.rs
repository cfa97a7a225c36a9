//! `sandbox_output`: a run's output as it was read, in chunks keyed by their byte offset in the
//! run's one output sequence (stdout and stderr interleaved as they arrived).
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "sandbox_output")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub run_id: Uuid,
    /// Offset of the chunk's first byte.
    #[sea_orm(primary_key, auto_increment = false)]
    pub offset: i64,
    pub stream: OutputStream,
    pub data: Vec<u8>,
    pub created_at: DateTimeUtc,
}

/// `sandbox_output.stream`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutputStream {
    #[sea_orm(string_value = "STDOUT")]
    Stdout,
    #[sea_orm(string_value = "STDERR")]
    Stderr,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
