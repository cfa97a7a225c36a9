//! Peer reviews: a panel fixed when the review starts, one vote per seat, and completion
//! decided under the task's and then the review's row lock (PostgreSQL `FOR UPDATE`;
//! SQLite's single writer), so votes arriving at once on several replicas count each voter
//! once and exactly one of them completes the review. A completed review reports the gates
//! it satisfies (passed or failed) and a rejected one opens an AGENT_CONFLICT escalation. A
//! task leaving REVIEWING withdraws its open review (under the task's lock, so a vote cannot
//! complete it at the same time).

use std::collections::HashMap;

use entity::{agent, peer_review, review_voter, review_weight, task, user};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, OnConflict},
};
use serde_json::json;
use uuid::Uuid;

use super::{
    consensus::{self, Outcome, Seat, Tally},
    events::{ReviewEvent, ReviewEventKind},
    model::{self, DEFAULT_QUORUM, HUMAN_ROLE, ReviewDecision, limits},
};
use crate::{
    audit::{self, AuditEntry},
    auth::{Caller, Principal, RequestMeta},
    clock,
    error::{AppError, AppResult},
    events::DomainEvent,
    idempotency,
    infra::db::{self, tenant_condition},
    pagination::{Page, PageRequest, keyset_page},
    task::{
        events::TaskEventKind,
        model::{TaskState, agent_role, required_text},
        service::{EscalationDraft, TaskService},
    },
};

/// Input of `startPeerReview`, before validation.
#[derive(Debug, Clone)]
pub struct NewReview {
    pub task_id: Uuid,
    pub quorum: Option<f64>,
    /// Agent or user ids; `None`: every agent of the task's tenant except its assignee.
    pub reviewers: Option<Vec<Uuid>>,
    pub request_id: String,
}

/// Input of `castReviewVote`, before validation.
#[derive(Debug, Clone)]
pub struct Ballot {
    pub review_id: Uuid,
    /// The agent seat voted for; `None`: the calling person's own seat.
    pub agent_id: Option<Uuid>,
    pub decision: ReviewDecision,
    pub reasoning: String,
    pub confidence: f64,
}

/// A review with its panel, in panel order (by name).
#[derive(Debug, Clone)]
pub struct Review {
    pub review: peer_review::Model,
    pub voters: Vec<review_voter::Model>,
}

impl Review {
    /// The consensus arithmetic over the panel.
    pub fn tally(&self) -> Tally {
        let seats: Vec<Seat> = self
            .voters
            .iter()
            .map(|v| Seat {
                weight: v.weight,
                vote: v.decision.map(|d| (d.into(), v.confidence.unwrap_or(0.0))),
            })
            .collect();
        consensus::tally(self.review.quorum, &seats)
    }
}

/// Counts a review event on `/metrics` (`aurum_peer_reviews_total{outcome}`: started,
/// passed, rejected, withdrawn).
fn count(outcome: &'static str) {
    metrics::counter!("aurum_peer_reviews_total", "outcome" => outcome).increment(1);
}

impl TaskService {
    async fn voters_of<C: ConnectionTrait>(
        conn: &C,
        review_ids: &[Uuid],
    ) -> AppResult<HashMap<Uuid, Vec<review_voter::Model>>> {
        let rows = review_voter::Entity::find()
            .filter(review_voter::Column::ReviewId.is_in(review_ids.iter().copied()))
            .order_by_asc(review_voter::Column::Label)
            .order_by_asc(review_voter::Column::VoterId)
            .all(conn)
            .await?;
        let mut by_review: HashMap<Uuid, Vec<review_voter::Model>> = HashMap::new();
        for v in rows {
            by_review.entry(v.review_id).or_default().push(v);
        }
        Ok(by_review)
    }

    async fn load_review<C: ConnectionTrait>(
        conn: &C,
        review: peer_review::Model,
    ) -> AppResult<Review> {
        let voters = Self::voters_of(conn, &[review.id])
            .await?
            .remove(&review.id)
            .unwrap_or_default();
        Ok(Review { review, voters })
    }

    /// One review, visible to `scope`.
    pub async fn review(&self, scope: Option<&str>, id: Uuid) -> AppResult<Review> {
        let review = peer_review::Entity::find_by_id(id)
            .filter(tenant_condition(peer_review::Column::TenantId, scope))
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::not_found("PeerReview", id))?;
        Self::load_review(&self.db, review).await
    }

    fn reviews_condition(scope: Option<&str>, task_id: Uuid) -> Condition {
        tenant_condition(peer_review::Column::TenantId, scope)
            .add(peer_review::Column::TaskId.eq(task_id))
    }

    /// A task's reviews, oldest first.
    pub async fn reviews(
        &self,
        scope: Option<&str>,
        task_id: Uuid,
        page: PageRequest,
    ) -> AppResult<Page<Review>> {
        let select = peer_review::Entity::find().filter(Self::reviews_condition(scope, task_id));
        let rows = keyset_page(select, peer_review::Column::Id, page, &self.db).await?;
        let ids: Vec<Uuid> = rows.items.iter().map(|r| r.id).collect();
        let mut voters = Self::voters_of(&self.db, &ids).await?;
        Ok(Page {
            items: rows
                .items
                .into_iter()
                .map(|review| Review {
                    voters: voters.remove(&review.id).unwrap_or_default(),
                    review,
                })
                .collect(),
            has_next: rows.has_next,
        })
    }

    pub async fn count_reviews(&self, scope: Option<&str>, task_id: Uuid) -> AppResult<u64> {
        Ok(peer_review::Entity::find()
            .filter(Self::reviews_condition(scope, task_id))
            .count(&self.db)
            .await?)
    }

    async fn configured_weights<C: ConnectionTrait>(conn: &C) -> AppResult<HashMap<String, f64>> {
        Ok(review_weight::Entity::find()
            .all(conn)
            .await?
            .into_iter()
            .map(|w| (w.agent_role, w.weight))
            .collect())
    }

    /// Every role with a default or configured weight, by role: (role, weight, configured).
    pub async fn review_weights(&self) -> AppResult<Vec<(String, f64, bool)>> {
        let configured = Self::configured_weights(&self.db).await?;
        let mut roles: Vec<String> = model::DEFAULT_WEIGHTS
            .iter()
            .map(|(r, _)| (*r).to_owned())
            .chain(configured.keys().cloned())
            .collect();
        roles.sort();
        roles.dedup();
        Ok(roles
            .into_iter()
            .map(|r| {
                let weight = model::weight_of(&r, &configured);
                let is_configured = configured.contains_key(&r);
                (r, weight, is_configured)
            })
            .collect())
    }

    /// Sets a role's vote weight for reviews started from now on (running reviews keep the
    /// weights they started with). Fleet-wide: tenant-scoped callers may not.
    pub async fn configure_review_weight(
        &self,
        meta: &RequestMeta,
        role: &str,
        weight: f64,
    ) -> AppResult<(String, f64)> {
        if meta.caller.tenant().is_some() {
            return Err(AppError::Forbidden);
        }
        let role = agent_role(role.trim()).map_err(|m| AppError::bad_field("agentRole", m))?;
        if !weight.is_finite() || weight <= 0.0 || weight > limits::WEIGHT_MAX {
            return Err(AppError::bad_field(
                "weight",
                format!("weight must be above 0 and at most {}", limits::WEIGHT_MAX),
            ));
        }
        let txn = db::begin_write(&self.db).await?;
        let before = model::weight_of(&role, &Self::configured_weights(&txn).await?);
        review_weight::Entity::insert(review_weight::ActiveModel {
            agent_role: Set(role.clone()),
            weight: Set(weight),
            updated_by: Set(meta.caller.audit_label()),
            updated_at: Set(clock::now()),
        })
        .on_conflict(
            OnConflict::column(review_weight::Column::AgentRole)
                .update_columns([
                    review_weight::Column::Weight,
                    review_weight::Column::UpdatedBy,
                    review_weight::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: "review_weight.configure",
                entity_type: "review_weight",
                entity_id: Some(role.clone()),
                tenant_id: None,
                details: json!({ "before": before, "after": weight }),
            },
        )
        .await?;
        txn.commit().await?;
        Ok((role, weight))
    }

    async fn announce_review(
        &self,
        txn: &DatabaseTransaction,
        kind: ReviewEventKind,
        review: &Review,
    ) -> AppResult<()> {
        self.bus
            .append(
                txn,
                &DomainEvent::Review(ReviewEvent {
                    kind,
                    review: review.review.clone(),
                    voters: review.voters.clone(),
                }),
            )
            .await?;
        Ok(())
    }

    /// The panel of a review on `task`: the named reviewers (agents or people of the task's
    /// tenant), or every agent of the tenant; never the task's assignee.
    async fn panel(
        txn: &DatabaseTransaction,
        task: &task::Model,
        reviewers: Option<&[Uuid]>,
        review_id: Uuid,
    ) -> AppResult<Vec<review_voter::Model>> {
        let weights = Self::configured_weights(txn).await?;
        let seat = |id: Uuid, kind, label: String, role: String| review_voter::Model {
            review_id,
            voter_id: id,
            kind,
            label,
            weight: model::weight_of(&role, &weights),
            role,
            decision: None,
            confidence: None,
            reasoning: None,
            voted_by: None,
            voted_at: None,
        };
        let mut seats = Vec::new();
        match reviewers {
            Some(ids) => {
                if ids.len() > limits::PANEL_MAX {
                    return Err(AppError::bad_field(
                        "reviewers",
                        format!("at most {} reviewers", limits::PANEL_MAX),
                    ));
                }
                for id in ids {
                    if seats
                        .iter()
                        .any(|s: &review_voter::Model| s.voter_id == *id)
                    {
                        continue;
                    }
                    if task.assignee_id == Some(*id) {
                        return Err(AppError::bad_field(
                            "reviewers",
                            "the task's assignee cannot review its own work",
                        ));
                    }
                    if let Some(a) = agent::Entity::find_by_id(*id).one(txn).await?
                        && a.tenant_id == task.tenant_id
                    {
                        seats.push(seat(a.id, review_voter::VoterKind::Agent, a.name, a.role));
                    } else if let Some(u) = user::Entity::find_by_id(*id).one(txn).await?
                        && !u.disabled
                        && (u.tenant_id.is_none() || u.tenant_id == task.tenant_id)
                    {
                        seats.push(seat(
                            u.id,
                            review_voter::VoterKind::Person,
                            u.username,
                            HUMAN_ROLE.to_owned(),
                        ));
                    } else {
                        return Err(AppError::not_found("Reviewer", id));
                    }
                }
            }
            None => {
                let tenant = match &task.tenant_id {
                    Some(t) => agent::Column::TenantId.eq(t.as_str()),
                    None => agent::Column::TenantId.is_null(),
                };
                let mut agents = agent::Entity::find()
                    .filter(tenant)
                    .order_by_asc(agent::Column::Name)
                    .limit(limits::PANEL_MAX as u64 + 2)
                    .all(txn)
                    .await?;
                agents.retain(|a| Some(a.id) != task.assignee_id);
                if agents.len() > limits::PANEL_MAX {
                    return Err(AppError::bad_field(
                        "reviewers",
                        format!(
                            "more than {} agents could review: name the panel with reviewers",
                            limits::PANEL_MAX
                        ),
                    ));
                }
                seats.extend(
                    agents
                        .into_iter()
                        .map(|a| seat(a.id, review_voter::VoterKind::Agent, a.name, a.role)),
                );
            }
        }
        if seats.is_empty() {
            return Err(AppError::bad_field(
                "reviewers",
                "nobody can review this task: register agents in its tenant or name reviewers",
            ));
        }
        seats.sort_by(|a, b| a.label.cmp(&b.label).then(a.voter_id.cmp(&b.voter_id)));
        Ok(seats)
    }

    /// Starts a peer review of a REVIEWING task (one open review per task). Idempotent by
    /// `requestId`: a retry answers the same review, as it stands now.
    pub async fn start_review(&self, meta: &RequestMeta, input: NewReview) -> AppResult<Review> {
        let quorum = input.quorum.unwrap_or(DEFAULT_QUORUM);
        if !quorum.is_finite() || quorum <= 0.0 || quorum > 1.0 {
            return Err(AppError::bad_field(
                "quorum",
                "quorum must be above 0 and at most 1",
            ));
        }
        let key = idempotency::Key::new(
            &meta.caller,
            &input.request_id,
            "startPeerReview",
            &json!([input.task_id, quorum, input.reviewers]),
        )?;
        let now = clock::now();
        let txn = db::begin_write(&self.db).await?;
        if let Some(previous) = idempotency::claim::<Uuid>(&txn, &key, None, now).await? {
            drop(txn);
            return self.review(meta.caller.tenant(), previous).await;
        }
        let task = Self::lock_task(&txn, meta.caller.tenant(), input.task_id).await?;
        let state = TaskState::from(task.state);
        if state != TaskState::Reviewing {
            return Err(AppError::bad_field(
                "taskId",
                format!("a peer review runs while the task is REVIEWING; this one is {state}"),
            ));
        }
        if let Some(open) = peer_review::Entity::find()
            .filter(peer_review::Column::TaskId.eq(task.id))
            .filter(peer_review::Column::Status.eq(peer_review::ReviewStatus::Open))
            .one(&txn)
            .await?
        {
            return Err(AppError::Conflict(format!(
                "the task already has an open peer review ({})",
                open.id
            )));
        }
        let id = Uuid::now_v7();
        let voters = Self::panel(&txn, &task, input.reviewers.as_deref(), id).await?;
        let review = peer_review::Model {
            id,
            task_id: task.id,
            tenant_id: task.tenant_id.clone(),
            quorum,
            status: peer_review::ReviewStatus::Open,
            created_by: meta.caller.audit_label(),
            created_at: now,
            completed_at: None,
        };
        peer_review::Entity::insert(peer_review::ActiveModel::from(review.clone()))
            .exec_without_returning(&txn)
            .await?;
        review_voter::Entity::insert_many(
            voters.iter().cloned().map(review_voter::ActiveModel::from),
        )
        .exec_without_returning(&txn)
        .await?;
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: "review.start",
                entity_type: "peer_review",
                entity_id: Some(id.to_string()),
                tenant_id: task.tenant_id.as_deref(),
                details: json!({
                    "taskId": task.id,
                    "quorum": quorum,
                    "panel": voters.iter().map(|v| json!({ "voter": v.label, "role": v.role, "weight": v.weight })).collect::<Vec<_>>(),
                }),
            },
        )
        .await?;
        let started = Review { review, voters };
        self.announce_review(&txn, ReviewEventKind::Started, &started)
            .await?;
        idempotency::store(&txn, &key, &id).await?;
        txn.commit().await?;
        self.bus.wake();
        count("started");
        Ok(started)
    }

    /// Whose seat a ballot fills: the named agent's, else the calling person's.
    fn voter_of(caller: &Caller, agent_id: Option<Uuid>) -> AppResult<Uuid> {
        match (agent_id, caller) {
            (Some(agent), _) => Ok(agent),
            (
                None,
                Caller::User {
                    id,
                    principal: Principal::Person,
                    ..
                },
            ) => Ok(*id),
            (None, Caller::User { .. }) => Err(AppError::bad_field(
                "agentId",
                "an API key votes for an agent: give agentId",
            )),
            (None, _) => Err(AppError::Forbidden),
        }
    }

    /// Casts one vote (one per seat, never changed). When it decides the review, the review
    /// completes in the same transaction: status, the gates it satisfies, an escalation when
    /// rejected, and exactly one `COMPLETED` event.
    pub async fn cast_vote(&self, meta: &RequestMeta, ballot: Ballot) -> AppResult<Review> {
        if !ballot.confidence.is_finite() || !(0.0..=1.0).contains(&ballot.confidence) {
            return Err(AppError::bad_field(
                "confidence",
                "confidence must be between 0 and 1",
            ));
        }
        let reasoning = required_text("reasoning", &ballot.reasoning, limits::REASONING_MAX)
            .map_err(|m| AppError::bad_field("reasoning", m))?;
        let voter = Self::voter_of(&meta.caller, ballot.agent_id)?;
        let scope = meta.caller.tenant();
        let txn = db::begin_write(&self.db).await?;
        let find = || {
            peer_review::Entity::find_by_id(ballot.review_id)
                .filter(tenant_condition(peer_review::Column::TenantId, scope))
        };
        let task_id = find()
            .one(&txn)
            .await?
            .ok_or_else(|| AppError::not_found("PeerReview", ballot.review_id))?
            .task_id;
        // Locks in the order every writer takes them: the task, then the review (a move out
        // of REVIEWING withdraws the review under the task's lock).
        let task = Self::lock_task(&txn, None, task_id).await?;
        let review = db::for_update(find(), &txn)
            .one(&txn)
            .await?
            .ok_or_else(|| AppError::not_found("PeerReview", ballot.review_id))?;
        if review.status != peer_review::ReviewStatus::Open {
            return Err(AppError::Conflict(format!(
                "the review is already {}",
                async_graphql::resolver_utils::enum_value(super::model::ReviewStatus::from(
                    review.status
                ))
            )));
        }
        // An agent's seat is voted with `agentId`, a person's seat only by that person.
        let kind = if ballot.agent_id.is_some() {
            review_voter::VoterKind::Agent
        } else {
            review_voter::VoterKind::Person
        };
        let now = clock::now();
        let cast = review_voter::Entity::update_many()
            .col_expr(
                review_voter::Column::Decision,
                Expr::value(Some(review_voter::ReviewDecision::from(ballot.decision))),
            )
            .col_expr(
                review_voter::Column::Confidence,
                Expr::value(Some(ballot.confidence)),
            )
            .col_expr(
                review_voter::Column::Reasoning,
                Expr::value(Some(reasoning.clone())),
            )
            .col_expr(
                review_voter::Column::VotedBy,
                Expr::value(Some(meta.caller.audit_label())),
            )
            .col_expr(review_voter::Column::VotedAt, Expr::value(Some(now)))
            .filter(review_voter::Column::ReviewId.eq(review.id))
            .filter(review_voter::Column::VoterId.eq(voter))
            .filter(review_voter::Column::Kind.eq(kind))
            .filter(review_voter::Column::Decision.is_null())
            .exec(&txn)
            .await?;
        if cast.rows_affected != 1 {
            let seated = review_voter::Entity::find_by_id((review.id, voter))
                .filter(review_voter::Column::Kind.eq(kind))
                .one(&txn)
                .await?
                .is_some();
            return Err(if seated {
                AppError::Conflict("this voter already voted on the review".into())
            } else if ballot.agent_id.is_some() {
                AppError::bad_field("agentId", "this agent is not on the review's panel")
            } else {
                AppError::bad_field("reviewId", "you are not on this review's panel")
            });
        }
        let mut current = Self::load_review(&txn, review).await?;
        let tally = current.tally();
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: "review.vote",
                entity_type: "peer_review",
                entity_id: Some(current.review.id.to_string()),
                tenant_id: current.review.tenant_id.as_deref(),
                details: json!({
                    "voter": voter,
                    "decision": review_voter::ReviewDecision::from(ballot.decision),
                    "confidence": ballot.confidence,
                    "score": tally.score,
                }),
            },
        )
        .await?;
        match tally.outcome {
            None => {
                self.announce_review(&txn, ReviewEventKind::Voted, &current)
                    .await?;
            }
            Some(outcome) => {
                self.complete(&txn, meta, &task, &mut current, &tally, outcome)
                    .await?;
            }
        }
        txn.commit().await?;
        self.bus.wake();
        if let Some(outcome) = tally.outcome {
            count(match outcome {
                Outcome::Passed => "passed",
                Outcome::Rejected => "rejected",
            });
        }
        Ok(current)
    }

    /// In the deciding vote's transaction (holding the task's and the review's locks):
    /// completes the review.
    async fn complete(
        &self,
        txn: &DatabaseTransaction,
        meta: &RequestMeta,
        task: &task::Model,
        current: &mut Review,
        tally: &Tally,
        outcome: Outcome,
    ) -> AppResult<()> {
        let now = clock::now();
        let status = match outcome {
            Outcome::Passed => peer_review::ReviewStatus::Passed,
            Outcome::Rejected => peer_review::ReviewStatus::Rejected,
        };
        let res = peer_review::Entity::update_many()
            .col_expr(peer_review::Column::Status, Expr::value(status))
            .col_expr(peer_review::Column::CompletedAt, Expr::value(Some(now)))
            .filter(peer_review::Column::Id.eq(current.review.id))
            .filter(peer_review::Column::Status.eq(peer_review::ReviewStatus::Open))
            .exec(txn)
            .await?;
        if res.rows_affected != 1 {
            return Err(AppError::Conflict(
                "the review completed concurrently; reload it".into(),
            ));
        }
        current.review.status = status;
        current.review.completed_at = Some(now);
        let passed = outcome == Outcome::Passed;
        let summary = format!(
            "peer review {} {}: score {:.3} (at best {:.3}) against quorum {}",
            current.review.id,
            if passed { "passed" } else { "was rejected" },
            tally.score,
            tally.max_score,
            current.review.quorum
        );
        let by = format!("review:{}", current.review.id);
        let gates = Self::gates_in(txn).await?;
        let satisfied: Vec<&str> = gates
            .iter()
            .filter(|g| g.satisfied_by_review)
            .map(|g| g.name.as_str())
            .collect();
        for gate in &satisfied {
            self.record_result(txn, task, gate, passed, Some(summary.clone()), &by)
                .await?;
        }
        if !satisfied.is_empty() {
            self.announce(txn, TaskEventKind::GateReported, task.clone())
                .await?;
        }
        if !passed {
            let rejecting: Vec<&str> = current
                .voters
                .iter()
                .filter(|v| v.decision == Some(review_voter::ReviewDecision::Reject))
                .map(|v| v.label.as_str())
                .collect();
            self.open_escalation(
                txn,
                meta,
                task,
                EscalationDraft {
                    agent_id: task.assignee_id,
                    reason: summary.clone(),
                    severity: entity::escalation::Severity::High,
                    pattern: Some(entity::escalation::EscalationPattern::AgentConflict),
                    suggested_fix: Some(format!(
                        "the panel disagrees with the work{}: a person reads the votes' \
                         reasoning and decides between rework (send the task back to \
                         IN_PROGRESS), a new review with another panel, or overriding the gate",
                        if rejecting.is_empty() {
                            String::new()
                        } else {
                            format!(" (rejected by {})", rejecting.join(", "))
                        }
                    )),
                    cause: "peer review rejected",
                },
            )
            .await?;
        }
        audit::record(
            txn,
            meta,
            AuditEntry {
                action: "review.complete",
                entity_type: "peer_review",
                entity_id: Some(current.review.id.to_string()),
                tenant_id: current.review.tenant_id.as_deref(),
                details: json!({
                    "status": status,
                    "score": tally.score,
                    "quorum": current.review.quorum,
                    "gates": satisfied,
                }),
            },
        )
        .await?;
        self.announce_review(txn, ReviewEventKind::Completed, current)
            .await
    }

    /// In `txn` (holding the task's lock), when the task leaves REVIEWING for `next`:
    /// withdraws its open review, if any (audited, announced, counted). Votes cast on it no
    /// longer count; a new review can start when the task is back in REVIEWING.
    pub(in crate::task) async fn withdraw_reviews(
        &self,
        txn: &DatabaseTransaction,
        meta: &RequestMeta,
        task: &task::Model,
        next: TaskState,
    ) -> AppResult<()> {
        let Some(open) = peer_review::Entity::find()
            .filter(peer_review::Column::TaskId.eq(task.id))
            .filter(peer_review::Column::Status.eq(peer_review::ReviewStatus::Open))
            .one(txn)
            .await?
        else {
            return Ok(());
        };
        let now = clock::now();
        let res = peer_review::Entity::update_many()
            .col_expr(
                peer_review::Column::Status,
                Expr::value(peer_review::ReviewStatus::Withdrawn),
            )
            .col_expr(peer_review::Column::CompletedAt, Expr::value(Some(now)))
            .filter(peer_review::Column::Id.eq(open.id))
            .filter(peer_review::Column::Status.eq(peer_review::ReviewStatus::Open))
            .exec(txn)
            .await?;
        if res.rows_affected != 1 {
            return Ok(());
        }
        let mut review = Self::load_review(txn, open).await?;
        review.review.status = peer_review::ReviewStatus::Withdrawn;
        review.review.completed_at = Some(now);
        audit::record(
            txn,
            meta,
            AuditEntry {
                action: "review.withdraw",
                entity_type: "peer_review",
                entity_id: Some(review.review.id.to_string()),
                tenant_id: review.review.tenant_id.as_deref(),
                details: json!({ "taskId": task.id, "taskMovedTo": next.to_string() }),
            },
        )
        .await?;
        self.announce_review(txn, ReviewEventKind::Withdrawn, &review)
            .await?;
        count("withdrawn");
        Ok(())
    }
}
