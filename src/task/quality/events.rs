//! Events of peer reviews, written into the outbox with each change (relayed after commit);
//! subjects `review.<reviewId>.<kind>`. Each carries the review and its whole panel, so a
//! subscriber renders the explainer without reading the database.

use serde::{Deserialize, Serialize};

/// What happened to a peer review.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReviewEventKind {
    Started,
    Voted,
    /// Passed or rejected: emitted exactly once per review.
    Completed,
    /// The task left REVIEWING while the review was open.
    Withdrawn,
}

impl ReviewEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Voted => "voted",
            Self::Completed => "completed",
            Self::Withdrawn => "withdrawn",
        }
    }
}

/// A review and its panel right after the change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReviewEvent {
    pub kind: ReviewEventKind,
    pub review: entity::peer_review::Model,
    pub voters: Vec<entity::review_voter::Model>,
}
