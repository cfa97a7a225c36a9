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
    /// `reserve`, `commit`, `release`, `expire`, `reset` or `configure`.
    pub kind: String,
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

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
