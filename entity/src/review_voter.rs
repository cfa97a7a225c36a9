//! `review_voters`: a peer review's panel, one row per voter with its weight fixed when the
//! review started, and the voter's vote once cast (one per voter: the row is written once).
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "review_voters")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub review_id: Uuid,
    /// The agent's id, or the person's user id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub voter_id: Uuid,
    pub kind: VoterKind,
    /// The agent's name or the person's username.
    pub label: String,
    /// The agent role the weight was looked up by (`human` for people).
    pub role: String,
    pub weight: f64,
    pub decision: Option<ReviewDecision>,
    pub confidence: Option<f64>,
    #[sea_orm(column_type = "Text", nullable)]
    pub reasoning: Option<String>,
    /// Who cast the vote (a person, or `user:apikey:<name>`).
    pub voted_by: Option<String>,
    pub voted_at: Option<DateTimeUtc>,
}

/// `review_voters.kind`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VoterKind {
    #[sea_orm(string_value = "AGENT")]
    Agent,
    #[sea_orm(string_value = "PERSON")]
    Person,
}

/// `review_voters.decision`: the consensus schema's verdicts.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReviewDecision {
    #[sea_orm(string_value = "APPROVE")]
    Approve,
    #[sea_orm(string_value = "CONDITIONAL")]
    Conditional,
    #[sea_orm(string_value = "REJECT")]
    Reject,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
