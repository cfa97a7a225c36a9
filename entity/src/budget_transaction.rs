//! `budget_transactions`: the append-only ledger; one row per change of a budget, written in
//! the change's transaction. Summing the deltas reproduces the budget row.
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "budget_transactions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub budget_id: Uuid,
    pub reservation_id: Option<Uuid>,
    pub kind: Kind,
    pub delta_total: i64,
    pub delta_used: i64,
    pub delta_reserved: i64,
    pub total_after: i64,
    pub used_after: i64,
    pub reserved_after: i64,
    /// The budget's version after this change (unique per budget).
    pub version: i64,
    pub actor: String,
    /// Idempotency scope of the caller, for changes a client asked for.
    pub caller: Option<String>,
    /// The client's `requestId`, for changes a client asked for.
    pub request_id: Option<String>,
    pub at: DateTimeUtc,
}

/// What a ledger row records; stored as its lowercase name.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    #[sea_orm(string_value = "reserve")]
    Reserve,
    #[sea_orm(string_value = "commit")]
    Commit,
    #[sea_orm(string_value = "release")]
    Release,
    #[sea_orm(string_value = "expire")]
    Expire,
    #[sea_orm(string_value = "reset")]
    Reset,
    #[sea_orm(string_value = "configure")]
    Configure,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
