//! `learning_updates`: every prompt update proposed for an agent role (and every rollback),
//! with its decision. Refused proposals change nothing and are not stored.
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "learning_updates")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub agent_role: String,
    pub kind: LearningKind,
    pub status: LearningStatus,
    pub agent_id: Option<Uuid>,
    pub task_id: Option<Uuid>,
    pub prompt_update: String,
    pub rationale: String,
    /// For a rollback: the version whose text it restores.
    pub rollback_to: Option<i32>,
    /// Who proposed it (audit label).
    pub proposed_by: String,
    /// The person accountable for the proposal: the user, or the creator of the API key that
    /// proposed it. Four eyes compares approvers with this.
    pub proposer_person: String,
    pub decided_by: Option<String>,
    pub decision_note: Option<String>,
    /// The prompt version it became, once applied.
    pub prompt_version: Option<i32>,
    pub created_at: DateTimeUtc,
    /// When a pending proposal expires.
    pub expires_at: Option<DateTimeUtc>,
    pub decided_at: Option<DateTimeUtc>,
    /// When it was applied; what the daily limit and the cooldown count.
    pub applied_at: Option<DateTimeUtc>,
}

/// A proposal or a rollback. Stored as the upper-case name.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LearningKind {
    #[sea_orm(string_value = "PROPOSAL")]
    Proposal,
    #[sea_orm(string_value = "ROLLBACK")]
    Rollback,
}

/// Where an update stands. Stored as the upper-case name.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LearningStatus {
    #[sea_orm(string_value = "PENDING_APPROVAL")]
    PendingApproval,
    #[sea_orm(string_value = "APPLIED")]
    Applied,
    #[sea_orm(string_value = "REJECTED")]
    Rejected,
    #[sea_orm(string_value = "EXPIRED")]
    Expired,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
