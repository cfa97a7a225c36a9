//! `budgets`: token budgets per (tenant, project); `used + reserved ≤ total` always holds.
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "budgets")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: String,
    pub project_id: String,
    pub total: i64,
    pub used: i64,
    pub reserved: i64,
    pub period: Period,
    pub period_start: DateTimeUtc,
    /// End of the current window; `None` for `none`.
    pub period_end: Option<DateTimeUtc>,
    /// Percentages, comma-separated (`50,80,100`).
    pub alert_thresholds: String,
    /// Percentages already announced in the current window, comma-separated.
    pub alerts_sent: String,
    pub version: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

/// How often a budget's `used` goes back to zero; stored as its lowercase name.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Default,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "lowercase")]
pub enum Period {
    #[default]
    #[sea_orm(string_value = "none")]
    None,
    #[sea_orm(string_value = "daily")]
    Daily,
    #[sea_orm(string_value = "weekly")]
    Weekly,
    #[sea_orm(string_value = "monthly")]
    Monthly,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
