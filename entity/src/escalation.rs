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
    pub severity: Severity,
    pub status: EscalationStatus,
    pub resolution: Option<String>,
    pub resolved_by: Option<String>,
    pub tenant_id: Option<String>,
    /// What kind of deadlock opened it, when the service did (quality gates, peer reviews).
    pub pattern: Option<EscalationPattern>,
    /// What the service suggests doing about it.
    #[sea_orm(column_type = "Text", nullable)]
    pub suggested_fix: Option<String>,
    pub created_by: String,
    pub created_at: DateTimeUtc,
    pub resolved_at: Option<DateTimeUtc>,
}

/// `escalations.severity`, stored as its upper-case name.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    #[sea_orm(string_value = "LOW")]
    Low,
    #[sea_orm(string_value = "MEDIUM")]
    Medium,
    #[sea_orm(string_value = "HIGH")]
    High,
    #[sea_orm(string_value = "CRITICAL")]
    Critical,
}

/// `escalations.status`, stored as its upper-case name.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EscalationStatus {
    #[sea_orm(string_value = "OPEN")]
    Open,
    #[sea_orm(string_value = "RESOLVED")]
    Resolved,
}

/// `escalations.pattern`: the deadlock patterns the prototype classified.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EscalationPattern {
    #[sea_orm(string_value = "SKILL_GAP")]
    SkillGap,
    #[sea_orm(string_value = "AGENT_CONFLICT")]
    AgentConflict,
    #[sea_orm(string_value = "PROCESS_ISSUE")]
    ProcessIssue,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
