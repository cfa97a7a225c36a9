//! GraphQL surface of peer reviews: the explainer's view of a review (score, what is
//! missing, each voter's contribution, who could pass it alone), the mutations, and
//! `peerReviewChanged`.

use async_graphql::{
    ComplexObject, Context, ID, InputObject, Object, Result, SimpleObject, Subscription,
    connection::Connection,
};
use chrono::{DateTime, Utc};
use entity::review_voter;
use futures::Stream;

use super::{
    consensus::Tally,
    events::ReviewEventKind,
    model::{ReviewDecision, ReviewStatus, VoterKind},
    review::{Ballot, NewReview, Review},
};
use crate::{
    auth::{guard::Require, permission::Permission},
    events::DomainEvent,
    graphql::context::{
        ConnectionFields, caller, connection, meta, page_cost, page_request, parse_id, services,
        wants_total,
    },
};

/// Rounds for display in the explanation (the numeric fields keep full precision).
fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// One seat of a review's panel, with its vote and what it counts.
#[derive(SimpleObject)]
pub struct ReviewVoter {
    /// The agent's id, or the person's user id.
    pub voter_id: ID,
    pub kind: VoterKind,
    /// The agent's name or the person's username.
    pub label: String,
    /// The role its weight comes from (`human` for people).
    pub role: String,
    pub weight: f64,
    pub decision: Option<ReviewDecision>,
    pub confidence: Option<f64>,
    pub reasoning: Option<String>,
    pub voted_by: Option<String>,
    pub voted_at: Option<DateTime<Utc>>,
    /// weight × value (APPROVE 1, CONDITIONAL ½, REJECT 0) × confidence; 0 before voting.
    pub contribution: f64,
    /// Not voted yet, and an approval at full confidence alone would reach the quorum.
    pub could_pass_alone: bool,
}

fn voter(v: &review_voter::Model, contribution: f64, could_pass_alone: bool) -> ReviewVoter {
    ReviewVoter {
        voter_id: ID(v.voter_id.to_string()),
        kind: v.kind.into(),
        label: v.label.clone(),
        role: v.role.clone(),
        weight: v.weight,
        decision: v.decision.map(Into::into),
        confidence: v.confidence,
        reasoning: v.reasoning.clone(),
        voted_by: v.voted_by.clone(),
        voted_at: v.voted_at,
        contribution,
        could_pass_alone,
    }
}

/// A weighted peer review of a task, explained.
pub struct PeerReview {
    review: Review,
    tally: Tally,
}

impl From<Review> for PeerReview {
    fn from(review: Review) -> Self {
        let tally = review.tally();
        Self { review, tally }
    }
}

impl PeerReview {
    fn seats(&self) -> impl Iterator<Item = ReviewVoter> + '_ {
        self.review
            .voters
            .iter()
            .zip(&self.tally.contributions)
            .zip(&self.tally.could_pass_alone)
            .map(|((v, c), alone)| voter(v, *c, *alone))
    }
}

#[Object]
impl PeerReview {
    async fn id(&self) -> ID {
        ID(self.review.review.id.to_string())
    }
    async fn task_id(&self) -> ID {
        ID(self.review.review.task_id.to_string())
    }
    /// Share of the panel's weight the weighted approvals must reach.
    async fn quorum(&self) -> f64 {
        self.review.review.quorum
    }
    async fn status(&self) -> ReviewStatus {
        self.review.review.status.into()
    }
    /// Σ contributions / the panel's whole weight.
    async fn score(&self) -> f64 {
        self.tally.score
    }
    /// Whether the score reaches the quorum.
    async fn passed(&self) -> bool {
        self.review.review.status == entity::peer_review::ReviewStatus::Passed
    }
    async fn total_weight(&self) -> f64 {
        self.tally.total_weight
    }
    /// Σ contributions of the votes cast.
    async fn counted_weight(&self) -> f64 {
        self.tally.counted_weight
    }
    /// Weight still missing to reach the quorum (0 once reached).
    async fn missing_weight(&self) -> f64 {
        self.tally.missing_weight
    }
    /// Score still missing to reach the quorum (0 once reached).
    async fn missing(&self) -> f64 {
        (self.review.review.quorum - self.tally.score).max(0.0)
    }
    /// The best score still possible (every remaining voter approving fully).
    async fn max_score(&self) -> f64 {
        self.tally.max_score
    }
    /// The panel, by name, with votes and contributions.
    async fn voters(&self) -> Vec<ReviewVoter> {
        self.seats().collect()
    }
    /// The voters who have not voted and could pass the review alone.
    async fn could_pass_alone(&self) -> Vec<ReviewVoter> {
        self.seats().filter(|v| v.could_pass_alone).collect()
    }
    /// The explainer's sentence: where the review stands and what it needs.
    async fn explanation(&self) -> String {
        let t = &self.tally;
        let q = self.review.review.quorum;
        let voted = self
            .review
            .voters
            .iter()
            .filter(|v| v.decision.is_some())
            .count();
        let head = format!(
            "score {} of quorum {} ({voted} of {} voted)",
            pct(t.score),
            pct(q),
            self.review.voters.len()
        );
        match self.review.review.status {
            entity::peer_review::ReviewStatus::Passed => format!("passed: {head}"),
            entity::peer_review::ReviewStatus::Rejected => {
                format!(
                    "rejected: {head}; at best {} was still possible",
                    pct(t.max_score)
                )
            }
            entity::peer_review::ReviewStatus::Withdrawn => {
                format!("withdrawn (the task left REVIEWING): {head}")
            }
            entity::peer_review::ReviewStatus::Open => {
                let alone: Vec<String> = self
                    .seats()
                    .filter(|v| v.could_pass_alone)
                    .map(|v| format!("{} ({}, weight {})", v.label, v.role, v.weight))
                    .collect();
                format!(
                    "open: {head}; missing {} of weight ({}); {}",
                    format_args!("{:.3}", t.missing_weight),
                    pct((q - t.score).max(0.0)),
                    if alone.is_empty() {
                        "no single remaining voter can pass it alone".to_owned()
                    } else {
                        format!("could pass it alone: {}", alone.join(", "))
                    }
                )
            }
        }
    }
    async fn created_by(&self) -> &str {
        &self.review.review.created_by
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.review.review.created_at
    }
    async fn completed_at(&self) -> Option<DateTime<Utc>> {
        self.review.review.completed_at
    }
}

/// A role's vote weight in peer reviews.
#[derive(SimpleObject)]
pub struct ReviewWeight {
    pub agent_role: String,
    pub weight: f64,
    /// `false`: the built-in default.
    pub configured: bool,
}

type PeerReviewConnection = Connection<String, PeerReview, ConnectionFields>;

#[derive(Default)]
pub struct ReviewQuery;

#[Object]
impl ReviewQuery {
    #[graphql(guard = "Require(Permission::TaskView)")]
    /// One peer review, explained.
    async fn peer_review(&self, ctx: &Context<'_>, id: ID) -> Result<PeerReview> {
        let id = parse_id("id", &id)?;
        Ok(services(ctx)?
            .tasks
            .review(caller(ctx).tenant(), id)
            .await?
            .into())
    }

    /// A task's peer reviews, oldest first.
    #[graphql(
        guard = "Require(Permission::TaskView)",
        complexity = "page_cost(first, child_complexity)"
    )]
    async fn peer_reviews(
        &self,
        ctx: &Context<'_>,
        task_id: ID,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<PeerReviewConnection> {
        let svc = services(ctx)?;
        let page = page_request(svc, first, after)?;
        let id = parse_id("taskId", &task_id)?;
        let scope = caller(ctx).tenant();
        let rows = svc.tasks.reviews(scope, id, page).await?;
        let total = if wants_total(ctx) {
            svc.tasks.count_reviews(scope, id).await?
        } else {
            0
        };
        Ok(connection(
            rows,
            page,
            total,
            |r| r.review.id,
            PeerReview::from,
        ))
    }

    #[graphql(guard = "Require(Permission::TaskView)")]
    /// Vote weight per agent role (defaults and configured ones); any other role weighs 1.
    async fn review_weights(&self, ctx: &Context<'_>) -> Result<Vec<ReviewWeight>> {
        Ok(services(ctx)?
            .tasks
            .review_weights()
            .await?
            .into_iter()
            .map(|(agent_role, weight, configured)| ReviewWeight {
                agent_role,
                weight,
                configured,
            })
            .collect())
    }
}

/// Input of `startPeerReview`.
#[derive(InputObject)]
pub struct StartPeerReviewInput {
    pub task_id: ID,
    /// In (0, 1]; default 0.75.
    pub quorum: Option<f64>,
    /// Agent or user ids of the panel; default: every agent of the task's tenant except its
    /// assignee.
    pub reviewers: Option<Vec<ID>>,
    /// Idempotency key: a retry answers the same review.
    pub request_id: String,
}

/// Input of `castReviewVote`.
#[derive(InputObject)]
pub struct CastReviewVoteInput {
    pub review_id: ID,
    /// The agent seat voted for (required for API keys); absent: the calling person's seat.
    pub agent_id: Option<ID>,
    pub decision: ReviewDecision,
    /// At most 2000 characters.
    pub reasoning: String,
    /// 0 to 1: the vote counts in proportion.
    pub confidence: f64,
}

#[derive(Default)]
pub struct ReviewMutation;

#[Object]
impl ReviewMutation {
    #[graphql(guard = "Require(Permission::ReviewStart)")]
    /// Starts a peer review of a REVIEWING task. Idempotent by `requestId`. Audited.
    async fn start_peer_review(
        &self,
        ctx: &Context<'_>,
        input: StartPeerReviewInput,
    ) -> Result<PeerReview> {
        let reviewers = input
            .reviewers
            .map(|ids| {
                ids.iter()
                    .map(|id| parse_id("reviewers", id))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let new = NewReview {
            task_id: parse_id("taskId", &input.task_id)?,
            quorum: input.quorum,
            reviewers,
            request_id: input.request_id,
        };
        Ok(services(ctx)?
            .tasks
            .start_review(&meta(ctx), new)
            .await?
            .into())
    }

    #[graphql(guard = "Require(Permission::ReviewVote)")]
    /// Casts one vote on an open review (one per voter, final). The vote that decides the
    /// review completes it. Audited.
    async fn cast_review_vote(
        &self,
        ctx: &Context<'_>,
        input: CastReviewVoteInput,
    ) -> Result<PeerReview> {
        let ballot = Ballot {
            review_id: parse_id("reviewId", &input.review_id)?,
            agent_id: input
                .agent_id
                .map(|id| parse_id("agentId", &id))
                .transpose()?,
            decision: input.decision,
            reasoning: input.reasoning,
            confidence: input.confidence,
        };
        Ok(services(ctx)?
            .tasks
            .cast_vote(&meta(ctx), ballot)
            .await?
            .into())
    }

    #[graphql(guard = "Require(Permission::QualityConfigure)")]
    /// Sets a role's vote weight for reviews started from now on (fleet-wide). Audited.
    async fn configure_review_weight(
        &self,
        ctx: &Context<'_>,
        agent_role: String,
        weight: f64,
    ) -> Result<ReviewWeight> {
        let (agent_role, weight) = services(ctx)?
            .tasks
            .configure_review_weight(&meta(ctx), &agent_role, weight)
            .await?;
        Ok(ReviewWeight {
            agent_role,
            weight,
            configured: true,
        })
    }
}

/// A change to a peer review, as delivered to `peerReviewChanged` subscribers.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct PeerReviewChangedEvent {
    /// Where this event sits in the feed: pass it as `after` to resume after it.
    pub cursor: String,
    pub kind: ReviewEventKind,
    #[graphql(skip)]
    pub review: Review,
}

#[ComplexObject]
impl PeerReviewChangedEvent {
    /// The review right after the change, explained.
    async fn review(&self) -> PeerReview {
        self.review.clone().into()
    }
}

#[derive(Default)]
pub struct ReviewSubscription;

#[Subscription]
impl ReviewSubscription {
    #[graphql(guard = "Require(Permission::TaskView)")]
    /// Every change to the peer reviews visible to the caller, narrowed to one review
    /// (`reviewId`) or one task's reviews (`taskId`). `after` resumes as for `taskChanged`.
    async fn peer_review_changed(
        &self,
        ctx: &Context<'_>,
        review_id: Option<ID>,
        task_id: Option<ID>,
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<PeerReviewChangedEvent>> + use<>> {
        let review_id = review_id.map(|id| parse_id("reviewId", &id)).transpose()?;
        let task_id = task_id.map(|id| parse_id("taskId", &id)).transpose()?;
        let scope = caller(ctx).tenant().map(str::to_owned);
        crate::graphql::events::subscribe(ctx, after, move |cursor, event| match event {
            DomainEvent::Review(e)
                if review_id.is_none_or(|id| id == e.review.id)
                    && task_id.is_none_or(|id| id == e.review.task_id)
                    && (scope.is_none() || scope == e.review.tenant_id) =>
            {
                Some(PeerReviewChangedEvent {
                    cursor,
                    kind: e.kind,
                    review: Review {
                        review: e.review.clone(),
                        voters: e.voters.clone(),
                    },
                })
            }
            _ => None,
        })
        .await
    }
}
