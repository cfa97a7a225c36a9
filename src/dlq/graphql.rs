//! GraphQL surface of the work queues and the DLQ: thin resolvers that convert input, call
//! `QueueService` / `DlqService` and wrap the rows.

use async_graphql::{
    ComplexObject, Context, ID, InputObject, Object, Result, SimpleObject, Subscription,
    connection::Connection,
};
use chrono::{DateTime, Utc};
use entity::{dlq_message, dlq_redrive};
use futures::Stream;

use super::{
    events::DlqEventKind,
    model::{DeadReason, DlqStatus, RedriveStatus, read_errors},
    service::{DlqFilter, NewRedrive},
    work::{Delivery, Enqueued, NewMessage},
};
use crate::{
    auth::{guard::Require, permission::Permission},
    events::DomainEvent,
    graphql::context::{
        ConnectionFields, caller, connection, meta, page_cost, page_request, parse_id, services,
        wants_total,
    },
};

/// A message handed to a worker. Settle it with its `deliveryId` before `ackDeadline`
/// (`ackTaskMessage`, `nackTaskMessage`, `rejectTaskMessage`) or push the deadline out
/// (`extendTaskMessage`); after it the message is delivered again.
#[derive(SimpleObject)]
pub struct TaskDelivery {
    pub delivery_id: String,
    pub queue: String,
    /// The message's sequence in its queue.
    pub sequence: i64,
    pub task_id: ID,
    /// This delivery's number, from 1.
    pub attempt: i32,
    pub payload: Option<String>,
    pub ack_deadline: DateTime<Utc>,
}

impl From<Delivery> for TaskDelivery {
    fn from(d: Delivery) -> Self {
        Self {
            delivery_id: d.id.to_string(),
            queue: d.queue,
            sequence: d.sequence,
            task_id: ID(d.task_id.to_string()),
            attempt: d.id.attempt,
            payload: d.payload,
            ack_deadline: d.ack_deadline,
        }
    }
}

/// A message on a queue, as `enqueueTask` stored it.
#[derive(SimpleObject)]
pub struct EnqueuedTaskMessage {
    pub queue: String,
    pub sequence: i64,
    pub task_id: ID,
}

impl From<Enqueued> for EnqueuedTaskMessage {
    fn from(e: Enqueued) -> Self {
        Self {
            queue: e.queue,
            sequence: e.sequence,
            task_id: ID(e.task_id.to_string()),
        }
    }
}

/// One error a worker reported (or a delivery that timed out).
#[derive(SimpleObject)]
pub struct ReportedErrorItem {
    pub attempt: i32,
    pub at: DateTime<Utc>,
    pub error: String,
}

/// A task message that exhausted its deliveries or was rejected as poison.
pub struct DlqMessage(pub dlq_message::Model);

#[Object]
impl DlqMessage {
    pub async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn queue(&self) -> &str {
        &self.0.queue
    }
    /// The subject it was published on; a retry publishes there again.
    async fn subject(&self) -> &str {
        &self.0.subject
    }
    /// The JetStream stream it was in, or `database`.
    async fn stream(&self) -> &str {
        &self.0.stream
    }
    /// Its sequence in that stream.
    async fn stream_sequence(&self) -> i64 {
        self.0.stream_seq
    }
    async fn task_id(&self) -> ID {
        ID(self.0.task_id.to_string())
    }
    async fn tenant_id(&self) -> Option<&str> {
        self.0.tenant_id.as_deref()
    }
    /// The message's headers, as a JSON object.
    async fn headers(&self) -> &str {
        &self.0.headers
    }
    async fn payload(&self) -> Option<&str> {
        self.0.payload.as_deref()
    }
    async fn reason(&self) -> DeadReason {
        self.0.reason.into()
    }
    /// Deliveries it had.
    async fn attempts(&self) -> i32 {
        self.0.attempts
    }
    /// The errors workers reported, oldest first.
    async fn errors(&self) -> Vec<ReportedErrorItem> {
        read_errors(&self.0.errors)
            .into_iter()
            .map(|e| ReportedErrorItem {
                attempt: e.attempt,
                at: e.at,
                error: e.error,
            })
            .collect()
    }
    async fn last_error(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }
    async fn first_delivered_at(&self) -> Option<DateTime<Utc>> {
        self.0.first_delivered_at
    }
    async fn last_delivered_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_delivered_at
    }
    async fn dead_at(&self) -> DateTime<Utc> {
        self.0.dead_at
    }
    async fn status(&self) -> DlqStatus {
        self.0.status.into()
    }
    async fn note(&self) -> Option<&str> {
        self.0.note.as_deref()
    }
    async fn resolved_by(&self) -> Option<&str> {
        self.0.resolved_by.as_deref()
    }
    async fn resolved_at(&self) -> Option<DateTime<Utc>> {
        self.0.resolved_at
    }
    /// The redrive that moved it back, if one did.
    async fn redrive_id(&self) -> Option<ID> {
        self.0.redrive_id.map(|id| ID(id.to_string()))
    }
}

/// A job moving dead letters back to their queues at a set rate.
pub struct DlqRedrive(pub dlq_redrive::Model);

#[Object]
impl DlqRedrive {
    pub async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn status(&self) -> RedriveStatus {
        self.0.status.into()
    }
    /// Dead letters the filter matched when the job started.
    async fn total(&self) -> i64 {
        self.0.total
    }
    /// Dead letters moved back so far.
    async fn moved(&self) -> i64 {
        self.0.moved
    }
    async fn rate_per_second(&self) -> i32 {
        self.0.rate_per_second
    }
    /// The replica running it now.
    async fn owner(&self) -> Option<&str> {
        self.0.owner.as_deref()
    }
    async fn created_by(&self) -> &str {
        &self.0.created_by
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }
}

/// Depth and age of one queue's DLQ, and the messages still in the queue.
#[derive(SimpleObject)]
pub struct DlqQueueStats {
    pub queue: String,
    /// Open dead letters.
    pub depth: u64,
    /// Age of the oldest open dead letter, in seconds.
    pub oldest_age_seconds: Option<f64>,
    /// Messages not yet settled in the queue (ready or out with a worker).
    pub pending: u64,
}

/// A new dead letter, as delivered to `dlqMessageAdded` subscribers.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct DlqMessageAddedEvent {
    /// Where this event sits in the feed: pass it as `after` to resume after it.
    pub cursor: String,
    #[graphql(skip)]
    pub message: dlq_message::Model,
}

#[ComplexObject]
impl DlqMessageAddedEvent {
    async fn message(&self) -> DlqMessage {
        DlqMessage(self.message.clone())
    }
}

/// A redrive's progress, as delivered to `dlqRedriveProgress` subscribers.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct DlqRedriveProgressEvent {
    pub cursor: String,
    #[graphql(skip)]
    pub job: dlq_redrive::Model,
}

#[ComplexObject]
impl DlqRedriveProgressEvent {
    async fn redrive(&self) -> DlqRedrive {
        DlqRedrive(self.job.clone())
    }
}

/// Which dead letters a list, a redrive or a purge is about; every field narrows it.
#[derive(InputObject, Default)]
pub struct DlqFilterInput {
    pub queue: Option<String>,
    pub subject: Option<String>,
    pub task_id: Option<ID>,
    /// `true`: resolved or retried ones; `false`: open ones.
    pub resolved: Option<bool>,
    /// Text one of the reported errors contains (case-sensitive).
    pub error_contains: Option<String>,
    /// Dead at or after.
    pub from: Option<DateTime<Utc>>,
    /// Dead before.
    pub to: Option<DateTime<Utc>>,
}

impl DlqFilterInput {
    fn into_filter(self) -> Result<DlqFilter> {
        Ok(DlqFilter {
            queue: self.queue.map(|q| q.trim().to_owned()),
            subject: self.subject,
            task_id: self.task_id.map(|id| parse_id("taskId", &id)).transpose()?,
            resolved: self.resolved,
            error_contains: self.error_contains,
            from: self.from,
            to: self.to,
        })
    }
}

/// Input of `enqueueTask`.
#[derive(InputObject)]
pub struct EnqueueTaskInput {
    pub task_id: ID,
    /// One of the configured queues (`AURUM_QUEUES`).
    pub queue: String,
    /// Up to 64 KiB, handed to the worker as is.
    pub payload: Option<String>,
    /// Idempotency key: a retry with the same one is stored once.
    pub request_id: String,
}

/// Input of `redriveDlq`.
#[derive(InputObject)]
pub struct RedriveDlqInput {
    #[graphql(default)]
    pub filter: DlqFilterInput,
    /// Dead letters moved back per second, 1-10,000.
    pub rate_per_second: i32,
    /// Only count what would move.
    #[graphql(default)]
    pub dry_run: bool,
    pub request_id: String,
}

type DlqConnection = Connection<String, DlqMessage, ConnectionFields>;

#[derive(Default)]
pub struct DlqQuery;

#[Object]
impl DlqQuery {
    /// Dead letters, oldest first, optionally filtered.
    #[graphql(
        guard = "Require(Permission::DlqRead)",
        complexity = "page_cost(first, child_complexity)"
    )]
    async fn dlq_messages(
        &self,
        ctx: &Context<'_>,
        filter: Option<DlqFilterInput>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<DlqConnection> {
        let svc = services(ctx)?;
        let page = page_request(svc, first, after)?;
        let filter = filter.unwrap_or_default().into_filter()?;
        let scope = caller(ctx).tenant();
        let rows = svc.dlq.list(scope, &filter, page).await?;
        let total = if wants_total(ctx) {
            svc.dlq.count(scope, &filter).await?
        } else {
            0
        };
        Ok(connection(rows, page, total, |m| m.id, DlqMessage))
    }

    #[graphql(guard = "Require(Permission::DlqRead)")]
    /// One dead letter by id.
    async fn dlq_message(&self, ctx: &Context<'_>, id: ID) -> Result<DlqMessage> {
        let id = parse_id("id", &id)?;
        Ok(DlqMessage(
            services(ctx)?.dlq.get(caller(ctx).tenant(), id).await?,
        ))
    }

    #[graphql(guard = "Require(Permission::DlqRead)")]
    /// Per configured queue: DLQ depth, age of its oldest open dead letter, pending messages.
    async fn dlq_stats(&self, ctx: &Context<'_>) -> Result<Vec<DlqQueueStats>> {
        let stats = services(ctx)?.dlq.stats(caller(ctx).tenant()).await?;
        Ok(stats
            .into_iter()
            .map(|s| DlqQueueStats {
                queue: s.queue,
                depth: s.depth,
                oldest_age_seconds: s.oldest_age_seconds,
                pending: s.pending,
            })
            .collect())
    }

    #[graphql(guard = "Require(Permission::DlqRead)")]
    /// One redrive job by id.
    async fn dlq_redrive(&self, ctx: &Context<'_>, id: ID) -> Result<DlqRedrive> {
        let id = parse_id("id", &id)?;
        Ok(DlqRedrive(
            services(ctx)?
                .dlq
                .redrive_job(caller(ctx).tenant(), id)
                .await?,
        ))
    }
}

#[derive(Default)]
pub struct DlqMutation;

#[Object]
impl DlqMutation {
    #[graphql(guard = "Require(Permission::TaskCreate)")]
    /// Puts a message for a task on a queue. Idempotent per `requestId`.
    async fn enqueue_task(
        &self,
        ctx: &Context<'_>,
        input: EnqueueTaskInput,
    ) -> Result<EnqueuedTaskMessage> {
        let new = NewMessage {
            task_id: parse_id("taskId", &input.task_id)?,
            queue: input.queue,
            payload: input.payload,
            request_id: input.request_id,
        };
        Ok(services(ctx)?
            .dlq
            .queues()
            .enqueue(&meta(ctx), new)
            .await?
            .into())
    }

    #[graphql(guard = "Require(Permission::TaskUpdate)")]
    /// Claims up to `max` (1-100) messages of `queue`, waiting up to `waitMs` (0-30,000) for
    /// the first. An empty list when none came.
    async fn claim_task_messages(
        &self,
        ctx: &Context<'_>,
        queue: String,
        #[graphql(default = 1)] max: i32,
        #[graphql(default = 0)] wait_ms: i32,
    ) -> Result<Vec<TaskDelivery>> {
        let deliveries = services(ctx)?
            .dlq
            .queues()
            .claim(&meta(ctx), &queue, max, wait_ms)
            .await?;
        Ok(deliveries.into_iter().map(Into::into).collect())
    }

    #[graphql(guard = "Require(Permission::TaskUpdate)")]
    /// The message is done. `DELIVERY_EXPIRED` / `DELIVERY_SETTLED` / `NOT_FOUND` when the
    /// delivery is no longer live.
    async fn ack_task_message(
        &self,
        ctx: &Context<'_>,
        delivery_id: String,
    ) -> Result<TaskDelivery> {
        Ok(services(ctx)?
            .dlq
            .queues()
            .ack(&meta(ctx), &delivery_id)
            .await?
            .into())
    }

    #[graphql(guard = "Require(Permission::TaskUpdate)")]
    /// The attempt failed with `error`: the message comes back after `delaySeconds` (else the
    /// queue's backoff), or goes to the DLQ when this was its last delivery.
    async fn nack_task_message(
        &self,
        ctx: &Context<'_>,
        delivery_id: String,
        error: String,
        delay_seconds: Option<i32>,
    ) -> Result<TaskDelivery> {
        Ok(services(ctx)?
            .dlq
            .queues()
            .nack(&meta(ctx), &delivery_id, &error, delay_seconds)
            .await?
            .into())
    }

    #[graphql(guard = "Require(Permission::TaskUpdate)")]
    /// The message is poison: straight to the DLQ, no more attempts.
    async fn reject_task_message(
        &self,
        ctx: &Context<'_>,
        delivery_id: String,
        reason: String,
    ) -> Result<TaskDelivery> {
        Ok(services(ctx)?
            .dlq
            .queues()
            .reject(&meta(ctx), &delivery_id, &reason)
            .await?
            .into())
    }

    #[graphql(guard = "Require(Permission::TaskUpdate)")]
    /// Still working: the deadline moves to now plus the queue's ack wait.
    async fn extend_task_message(
        &self,
        ctx: &Context<'_>,
        delivery_id: String,
    ) -> Result<TaskDelivery> {
        Ok(services(ctx)?
            .dlq
            .queues()
            .extend(&meta(ctx), &delivery_id)
            .await?
            .into())
    }

    #[graphql(guard = "Require(Permission::DlqResolve)")]
    /// Closes an open dead letter with a note, without retrying it.
    async fn resolve_dlq_message(
        &self,
        ctx: &Context<'_>,
        id: ID,
        note: String,
    ) -> Result<DlqMessage> {
        let id = parse_id("id", &id)?;
        Ok(DlqMessage(
            services(ctx)?.dlq.resolve(&meta(ctx), id, &note).await?,
        ))
    }

    #[graphql(guard = "Require(Permission::DlqResolve)")]
    /// Publishes an open dead letter back to its queue (once, whatever the retries) and
    /// sends its FAILED task back to PENDING. Idempotent per `requestId`.
    async fn retry_dlq_message(
        &self,
        ctx: &Context<'_>,
        id: ID,
        request_id: String,
    ) -> Result<DlqMessage> {
        let id = parse_id("id", &id)?;
        Ok(DlqMessage(
            services(ctx)?
                .dlq
                .retry(&meta(ctx), id, &request_id)
                .await?,
        ))
    }

    #[graphql(guard = "Require(Permission::DlqResolve)")]
    /// Starts moving every open dead letter the filter matches back to its queue at the given
    /// rate (a dry run only counts them). Follow it with `dlqRedriveProgress`.
    async fn redrive_dlq(&self, ctx: &Context<'_>, input: RedriveDlqInput) -> Result<DlqRedrive> {
        let new = NewRedrive {
            filter: input.filter.into_filter()?,
            rate_per_second: input.rate_per_second,
            dry_run: input.dry_run,
            request_id: input.request_id,
        };
        Ok(DlqRedrive(
            services(ctx)?.dlq.redrive(&meta(ctx), new).await?,
        ))
    }

    #[graphql(guard = "Require(Permission::DlqResolve)")]
    /// Stops a running redrive; what it moved stays moved.
    async fn cancel_dlq_redrive(&self, ctx: &Context<'_>, id: ID) -> Result<DlqRedrive> {
        let id = parse_id("id", &id)?;
        Ok(DlqRedrive(
            services(ctx)?.dlq.cancel_redrive(&meta(ctx), id).await?,
        ))
    }

    #[graphql(guard = "Require(Permission::DlqResolve)")]
    /// Deletes the dead letters the filter matches that died before `olderThan`; answers
    /// how many.
    async fn purge_dlq(
        &self,
        ctx: &Context<'_>,
        #[graphql(default)] filter: DlqFilterInput,
        older_than: DateTime<Utc>,
    ) -> Result<u64> {
        let filter = filter.into_filter()?;
        Ok(services(ctx)?
            .dlq
            .purge(&meta(ctx), &filter, older_than)
            .await?)
    }
}

#[derive(Default)]
pub struct DlqSubscription;

#[Subscription]
impl DlqSubscription {
    #[graphql(guard = "Require(Permission::DlqRead)")]
    /// Every new dead letter visible to the caller, or those of one queue. Resumable with
    /// `after` like every subscription.
    async fn dlq_message_added(
        &self,
        ctx: &Context<'_>,
        queue: Option<String>,
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<DlqMessageAddedEvent>> + use<>> {
        let scope = caller(ctx).tenant().map(str::to_owned);
        crate::graphql::events::subscribe(ctx, after, move |cursor, event| match event {
            DomainEvent::Dlq(e)
                if e.kind == DlqEventKind::Added
                    && queue.as_deref().is_none_or(|q| q == e.message.queue)
                    && (scope.is_none() || scope == e.message.tenant_id) =>
            {
                Some(DlqMessageAddedEvent {
                    cursor,
                    message: e.message.clone(),
                })
            }
            _ => None,
        })
        .await
    }

    #[graphql(guard = "Require(Permission::DlqRead)")]
    /// Progress of one redrive job: an event per batch it moves, and one when it ends.
    async fn dlq_redrive_progress(
        &self,
        ctx: &Context<'_>,
        job_id: ID,
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<DlqRedriveProgressEvent>> + use<>> {
        let job = parse_id("jobId", &job_id)?;
        let scope = caller(ctx).tenant().map(str::to_owned);
        crate::graphql::events::subscribe(ctx, after, move |cursor, event| match event {
            DomainEvent::Redrive(e)
                if e.job.id == job && (scope.is_none() || scope == e.job.tenant_id) =>
            {
                Some(DlqRedriveProgressEvent {
                    cursor,
                    job: e.job.clone(),
                })
            }
            _ => None,
        })
        .await
    }
}
