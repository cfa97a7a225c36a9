//! `governance_rules`: per agent role, how often its prompt may change and whether a person
//! must approve each change. The row is also the lock every proposal for the role takes.
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "governance_rules")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub agent_role: String,
    /// Applied updates allowed in any rolling 24 hours.
    pub max_updates_per_day: i32,
    /// Time after an applied update before the next may apply.
    pub cooldown_seconds: i64,
    pub require_approval: bool,
    /// How long a proposal waits for approval before it expires.
    pub approval_ttl_seconds: i64,
    /// Bumped by every configuration change.
    pub version: i64,
    pub updated_by: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
