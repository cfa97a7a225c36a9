//! `QueueService`: the work API agents call (enqueue, claim, ack, nack, reject, extend) over
//! the configured queues, and dead-lettering when a message's deliveries run out. Without
//! NATS the queue is the database (`store`).
//!
//! Every call that settles a delivery is a conditional update on that delivery, so an id
//! that is unknown, lapsed or already settled gets its coded error and never a second effect.
//! A message is dead-lettered in the transaction that records its dead letter and its
//! consequences (`capture`): if that fails, the message stays where it was and the next
//! attempt (a later reaper tick) captures it.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use entity::{
    dlq_message,
    queue_message::{self, MessageState},
    task,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, EntityTrait,
    QueryFilter,
    sea_query::{Expr, OnConflict},
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Notify;
use uuid::Uuid;

use super::{
    capture::{Consequences, DeadLetter},
    jetstream::{JetQueues, database_headers},
    model::{DeadReason, DeliveryId, ReportedError, error_text, limits, push_error},
    queues::{QueueSet, QueueSpec},
    store,
};
use crate::{
    audit::{self, AuditEntry},
    auth::RequestMeta,
    clock,
    error::{AppError, AppResult},
    events::Bus,
    idempotency,
    infra::{
        db::{self, tenant_condition},
        work_queue::Response,
    },
};

/// Input of `enqueueTask`, before validation.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub task_id: Uuid,
    pub queue: String,
    pub payload: Option<String>,
    pub request_id: String,
}

/// What `enqueueTask` answers (stored with its idempotency key, replayed on a retry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enqueued {
    pub queue: String,
    /// The message's sequence in its queue.
    pub sequence: i64,
    pub task_id: Uuid,
}

/// One message handed to a worker.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: DeliveryId,
    pub queue: String,
    pub sequence: i64,
    pub task_id: Uuid,
    pub payload: Option<String>,
    pub ack_deadline: DateTime<Utc>,
}

impl Delivery {
    fn from_row(row: &queue_message::Model, id: DeliveryId) -> Self {
        Self {
            id,
            queue: row.queue.clone(),
            sequence: row.stream_seq.unwrap_or(row.id),
            task_id: row.task_id,
            payload: row.payload.clone(),
            ack_deadline: row.deadline.unwrap_or_else(clock::now),
        }
    }
}

/// The work queues.
#[derive(Clone)]
pub struct QueueService {
    db: DatabaseConnection,
    bus: Bus,
    queues: Arc<QueueSet>,
    consequences: Consequences,
    /// The JetStream queues (production profile); `None` = the database queue.
    jetstream: Option<JetQueues>,
    postgres: bool,
    /// Woken when this replica makes a message claimable, so waiting claims look at once
    /// (claims on other replicas find it on their next poll).
    ready: Arc<Notify>,
}

/// How often a waiting claim looks again for messages another replica made claimable.
const CLAIM_POLL: Duration = Duration::from_millis(100);

impl QueueService {
    pub fn new(
        db: DatabaseConnection,
        bus: Bus,
        queues: QueueSet,
        consequences: Consequences,
        jetstream: Option<JetQueues>,
    ) -> Self {
        let postgres = db.get_database_backend() == DbBackend::Postgres;
        Self {
            db,
            bus,
            queues: Arc::new(queues),
            consequences,
            jetstream,
            postgres,
            ready: Arc::new(Notify::new()),
        }
    }

    pub fn queues(&self) -> &QueueSet {
        &self.queues
    }

    pub(super) fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub(super) fn bus(&self) -> &Bus {
        &self.bus
    }

    pub(super) fn consequences(&self) -> &Consequences {
        &self.consequences
    }

    /// The JetStream queues, when the queues are on JetStream.
    pub fn jetstream(&self) -> Option<&JetQueues> {
        self.jetstream.as_ref()
    }

    /// The queue named `name`, or `BAD_USER_INPUT` listing the configured ones.
    pub fn spec(&self, field: &'static str, name: &str) -> AppResult<&QueueSpec> {
        self.queues.get(name.trim()).ok_or_else(|| {
            AppError::bad_field(
                field,
                format!(
                    "unknown queue {:?}; configured: {}",
                    name.trim(),
                    self.queues.names()
                ),
            )
        })
    }

    /// Enqueues a message for task `task_id`. Idempotent per (caller, requestId): a retry
    /// answers the first call's sequence and stores nothing twice.
    pub async fn enqueue(&self, meta: &RequestMeta, input: NewMessage) -> AppResult<Enqueued> {
        let spec = self.spec("queue", &input.queue)?.clone();
        if let Some(p) = &input.payload
            && p.len() > limits::PAYLOAD_MAX
        {
            return Err(AppError::bad_field(
                "payload",
                format!("payload must be at most {} bytes", limits::PAYLOAD_MAX),
            ));
        }
        let key = idempotency::Key::new(
            &meta.caller,
            &input.request_id,
            "enqueueTask",
            &json!({ "taskId": input.task_id, "queue": spec.name, "payload": input.payload }),
        )?;
        let now = clock::now();
        let txn = db::begin_write(&self.db).await?;
        if let Some(previous) = idempotency::claim::<Enqueued>(&txn, &key, None, now).await? {
            return Ok(previous);
        }
        let task = task::Entity::find_by_id(input.task_id)
            .filter(tenant_condition(
                task::Column::TenantId,
                meta.caller.tenant(),
            ))
            .one(&txn)
            .await?
            .ok_or_else(|| AppError::not_found("Task", input.task_id))?;
        let msg_id = format!("{}:{}", key.scope(), key.request_id());
        let sequence = self
            .put(
                &txn,
                &spec,
                (task.id, task.tenant_id.clone()),
                &msg_id,
                input.payload,
                &meta.caller.audit_label(),
                now,
            )
            .await?;
        let answer = Enqueued {
            queue: spec.name.clone(),
            sequence,
            task_id: task.id,
        };
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: "queue.enqueue",
                entity_type: "task",
                entity_id: Some(task.id.to_string()),
                tenant_id: task.tenant_id.as_deref(),
                details: json!({ "queue": spec.name, "sequence": sequence, "requestId": key.request_id() }),
            },
        )
        .await?;
        idempotency::store(&txn, &key, &answer).await?;
        txn.commit().await?;
        self.bus.wake();
        self.ready.notify_waiters();
        Ok(answer)
    }

    /// Puts a message for `task` (id, tenant) on `spec`'s queue under the dedup id `msg_id`,
    /// as part of `txn`: on the database queue a row in it (a message already stored under
    /// the id is kept); on JetStream a publish acknowledged by the stream before `txn`
    /// commits (a publish repeated within the duplicate window is stored once). Answers the
    /// message's sequence.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn put(
        &self,
        txn: &DatabaseTransaction,
        spec: &QueueSpec,
        task: (Uuid, Option<String>),
        msg_id: &str,
        payload: Option<String>,
        by: &str,
        now: DateTime<Utc>,
    ) -> AppResult<i64> {
        match &self.jetstream {
            Some(js) => self.js_publish(js, spec, task, msg_id, payload).await,
            None => {
                self.insert_message(txn, spec, task, msg_id, payload, by, now)
                    .await
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn insert_message(
        &self,
        txn: &DatabaseTransaction,
        spec: &QueueSpec,
        task: (Uuid, Option<String>),
        msg_id: &str,
        payload: Option<String>,
        by: &str,
        now: DateTime<Utc>,
    ) -> AppResult<i64> {
        let row = queue_message::ActiveModel {
            queue: sea_orm::Set(spec.name.clone()),
            stream_seq: sea_orm::Set(None),
            task_id: sea_orm::Set(task.0),
            tenant_id: sea_orm::Set(task.1),
            msg_id: sea_orm::Set(msg_id.to_owned()),
            payload: sea_orm::Set(payload),
            state: sea_orm::Set(MessageState::Ready),
            attempts: sea_orm::Set(0),
            visible_at: sea_orm::Set(now),
            delivery_token: sea_orm::Set(None),
            deadline: sea_orm::Set(None),
            reply: sea_orm::Set(None),
            errors: sea_orm::Set("[]".into()),
            enqueued_by: sea_orm::Set(by.to_owned()),
            enqueued_at: sea_orm::Set(now),
            first_delivered_at: sea_orm::Set(None),
            last_delivered_at: sea_orm::Set(None),
            updated_at: sea_orm::Set(now),
            ..Default::default()
        };
        queue_message::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([queue_message::Column::Queue, queue_message::Column::MsgId])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
        queue_message::Entity::find()
            .filter(queue_message::Column::Queue.eq(spec.name.as_str()))
            .filter(queue_message::Column::MsgId.eq(msg_id))
            .one(txn)
            .await?
            .map(|m| m.id)
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("queued message {msg_id} vanished")))
    }

    /// Tells waiting claims on this replica that messages may be claimable.
    pub(super) fn notify_ready(&self) {
        self.ready.notify_waiters();
    }

    /// Claims up to `max` deliveries of `queue`, waiting up to `wait_ms` for the first.
    pub async fn claim(
        &self,
        meta: &RequestMeta,
        queue: &str,
        max: i32,
        wait_ms: i32,
    ) -> AppResult<Vec<Delivery>> {
        let spec = self.spec("queue", queue)?.clone();
        if !(1..=limits::CLAIM_MAX).contains(&max) {
            return Err(AppError::bad_field(
                "max",
                format!("max must be 1-{}", limits::CLAIM_MAX),
            ));
        }
        if !(0..=limits::WAIT_MAX_MS).contains(&wait_ms) {
            return Err(AppError::bad_field(
                "waitMs",
                format!("waitMs must be 0-{}", limits::WAIT_MAX_MS),
            ));
        }
        let wait = Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0));
        if let Some(js) = &self.jetstream {
            if meta.caller.tenant().is_some() {
                return Err(AppError::bad_field(
                    "queue",
                    "JetStream queues are shared by every tenant: claim with a caller without tenant scope",
                ));
            }
            return self
                .js_claim(js, &spec, usize::try_from(max).unwrap_or(1), wait)
                .await;
        }
        let until = tokio::time::Instant::now() + wait;
        let max = u64::try_from(max).unwrap_or(1);
        loop {
            // Registered before looking, so an enqueue between the look and the wait wakes it.
            let woken = self.ready.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let txn = db::begin_write(&self.db).await?;
            let claimed = store::claim(
                &txn,
                self.postgres,
                &spec,
                meta.caller.tenant(),
                max,
                clock::now(),
            )
            .await?;
            if !claimed.is_empty() {
                txn.commit().await?;
                return Ok(claimed
                    .iter()
                    .map(|(row, id)| Delivery::from_row(row, *id))
                    .collect());
            }
            drop(txn);
            let now = tokio::time::Instant::now();
            if now >= until {
                return Ok(Vec::new());
            }
            let nap = CLAIM_POLL.min(until - now);
            let _ = tokio::time::timeout(nap, woken).await;
        }
    }

    fn delivery(text: &str) -> AppResult<DeliveryId> {
        DeliveryId::parse(text).ok_or_else(|| AppError::not_found("Delivery", text.trim()))
    }

    /// Acknowledges a delivery: the message is done. No transaction: one read, the answer to
    /// JetStream, one conditional update (the hot path of every worker).
    pub async fn ack(&self, meta: &RequestMeta, delivery: &str) -> AppResult<Delivery> {
        let id = Self::delivery(delivery)?;
        let now = clock::now();
        let row = store::live(&self.db, &id, meta.caller.tenant(), now).await?;
        self.respond(&row, Response::Ack).await?;
        self.settle(
            &self.db,
            &id,
            now,
            vec![(
                queue_message::Column::State,
                Expr::value(MessageState::Acked),
            )],
        )
        .await?;
        Ok(Delivery::from_row(&row, id))
    }

    /// Extends a live delivery by the queue's ack wait from now; answers the new deadline.
    pub async fn extend(&self, meta: &RequestMeta, delivery: &str) -> AppResult<Delivery> {
        let id = Self::delivery(delivery)?;
        let now = clock::now();
        let txn = db::begin_write(&self.db).await?;
        let mut row = store::live(&txn, &id, meta.caller.tenant(), now).await?;
        let spec = self.spec("deliveryId", &row.queue)?;
        let deadline = match row.stream_seq {
            Some(_) => super::jetstream::deadline(spec, now),
            None => now + chrono::Duration::from_std(spec.ack_wait()).unwrap_or_default(),
        };
        self.respond(&row, Response::Progress).await?;
        // The new deadline is set without moving the state, but only on a live delivery.
        self.settle(
            &txn,
            &id,
            now,
            vec![(queue_message::Column::Deadline, Expr::value(Some(deadline)))],
        )
        .await?;
        txn.commit().await?;
        row.deadline = Some(deadline);
        Ok(Delivery::from_row(&row, id))
    }

    /// Gives a delivery back with the worker's error: the message comes back after
    /// `delay_seconds` (else the queue's backoff for this attempt), or, when this was its last
    /// allowed delivery, goes to the DLQ.
    pub async fn nack(
        &self,
        meta: &RequestMeta,
        delivery: &str,
        error: &str,
        delay_seconds: Option<i32>,
    ) -> AppResult<Delivery> {
        let id = Self::delivery(delivery)?;
        let error = error_text("error", error).map_err(|m| AppError::bad_field("error", m))?;
        let delay = match delay_seconds {
            None => None,
            Some(d) if (0..=limits::DELAY_MAX_SECONDS).contains(&d) => {
                Some(chrono::Duration::seconds(i64::from(d)))
            }
            Some(_) => {
                return Err(AppError::bad_field(
                    "delaySeconds",
                    format!("delaySeconds must be 0-{}", limits::DELAY_MAX_SECONDS),
                ));
            }
        };
        let now = clock::now();
        let txn = db::begin_write(&self.db).await?;
        let mut row = store::live(&txn, &id, meta.caller.tenant(), now).await?;
        let spec = self.spec("deliveryId", &row.queue)?.clone();
        row.errors = push_error(
            &row.errors,
            ReportedError {
                attempt: row.attempts,
                at: now,
                error,
            },
        );
        let attempt = u32::try_from(row.attempts).unwrap_or(u32::MAX);
        if spec.exhausted(attempt) {
            self.bury(txn, &id, &row, DeadReason::MaxDeliveries, now)
                .await?;
            return Ok(Delivery::from_row(&row, id));
        }
        let wait = delay.unwrap_or_else(|| {
            chrono::Duration::from_std(spec.backoff(attempt)).unwrap_or_default()
        });
        self.respond(&row, Response::Nak(wait.to_std().unwrap_or_default()))
            .await?;
        self.settle(
            &txn,
            &id,
            now,
            vec![
                (
                    queue_message::Column::State,
                    Expr::value(MessageState::Ready),
                ),
                (
                    queue_message::Column::Errors,
                    Expr::value(row.errors.clone()),
                ),
                (queue_message::Column::VisibleAt, Expr::value(now + wait)),
            ],
        )
        .await?;
        txn.commit().await?;
        self.bus.wake();
        self.ready.notify_waiters();
        Ok(Delivery::from_row(&row, id))
    }

    /// Rejects a delivery as poison: straight to the DLQ, no more attempts.
    pub async fn reject(
        &self,
        meta: &RequestMeta,
        delivery: &str,
        reason: &str,
    ) -> AppResult<Delivery> {
        let id = Self::delivery(delivery)?;
        let reason = error_text("reason", reason).map_err(|m| AppError::bad_field("reason", m))?;
        let now = clock::now();
        let txn = db::begin_write(&self.db).await?;
        let mut row = store::live(&txn, &id, meta.caller.tenant(), now).await?;
        row.errors = push_error(
            &row.errors,
            ReportedError {
                attempt: row.attempts,
                at: now,
                error: reason,
            },
        );
        self.bury(txn, &id, &row, DeadReason::Rejected, now).await?;
        Ok(Delivery::from_row(&row, id))
    }

    /// Dead-letters the live delivery `id` of `row` (its errors already updated) and commits
    /// `txn`: on JetStream the message is terminated first (while the delivery is live), then
    /// the row is settled `DEAD` and its dead letter written with its consequences; after the
    /// commit the message leaves its stream.
    async fn bury(
        &self,
        txn: DatabaseTransaction,
        id: &DeliveryId,
        row: &queue_message::Model,
        reason: DeadReason,
        now: DateTime<Utc>,
    ) -> AppResult<()> {
        self.terminate(row).await?;
        self.settle(
            &txn,
            id,
            now,
            vec![
                (
                    queue_message::Column::State,
                    Expr::value(MessageState::Dead),
                ),
                (
                    queue_message::Column::Errors,
                    Expr::value(row.errors.clone()),
                ),
            ],
        )
        .await?;
        self.dead_letter(&txn, row, reason, now).await?;
        txn.commit().await?;
        self.bus.wake();
        self.removed(row).await;
        Ok(())
    }

    /// Settles the live delivery `id` in `txn`, or answers why it is not live (a racing
    /// call settled it between the read and the update).
    async fn settle<C: ConnectionTrait>(
        &self,
        txn: &C,
        id: &DeliveryId,
        now: DateTime<Utc>,
        set: Vec<(queue_message::Column, sea_orm::sea_query::SimpleExpr)>,
    ) -> AppResult<()> {
        if store::settle(txn, id, now, set).await? {
            Ok(())
        } else {
            Err(store::refusal(txn, id, None, now).await?)
        }
    }

    /// Answers a JetStream delivery through its reply subject (nothing to do on the
    /// database queue, where the row is the delivery).
    async fn respond(&self, row: &queue_message::Model, response: Response) -> AppResult<()> {
        let (Some(js), Some(reply)) = (&self.jetstream, row.reply.as_deref()) else {
            return Ok(());
        };
        js.ready()
            .await?
            .respond(reply, response)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "answering a JetStream delivery failed");
                AppError::ServiceUnavailable { dependency: "nats" }
            })
    }

    /// Before a JetStream delivery's dead letter is written: the server is told never to
    /// deliver the message again, while the delivery is still live (a later word could come
    /// after the server redelivered it). The message stays in the stream, so if the write
    /// then fails, the MSG_TERMINATED advisory still brings it to the DLQ.
    async fn terminate(&self, row: &queue_message::Model) -> AppResult<()> {
        self.respond(row, Response::Term).await
    }

    /// After the dead letter of `row` committed: a JetStream message is removed from its
    /// stream.
    async fn removed(&self, row: &queue_message::Model) {
        if let (Some(js), Some(seq)) = (&self.jetstream, row.stream_seq) {
            self.js_remove(js, None, u64::try_from(seq).unwrap_or(0))
                .await;
        }
    }

    /// Records the dead letter of message `row` in `txn`: on JetStream read back from the
    /// stream (its row when the stream no longer holds it), on the database queue from the
    /// row.
    async fn dead_letter(
        &self,
        txn: &DatabaseTransaction,
        row: &queue_message::Model,
        reason: DeadReason,
        now: DateTime<Utc>,
    ) -> AppResult<Option<dlq_message::Model>> {
        if let (Some(js), Some(seq)) = (&self.jetstream, row.stream_seq) {
            let spec = self.spec("deliveryId", &row.queue)?.clone();
            let stored = self
                .js_letter(
                    js,
                    &spec,
                    u64::try_from(seq).unwrap_or(0),
                    reason,
                    row.attempts,
                    Some(row),
                )
                .await?;
            let letter = stored.unwrap_or_else(|| DeadLetter {
                queue: row.queue.clone(),
                subject: js.queues.subject(&row.queue),
                stream: js.queues.stream_name().to_owned(),
                stream_seq: seq,
                task_id: row.task_id,
                tenant_id: row.tenant_id.clone(),
                headers: json!({}),
                payload: None,
                reason,
                attempts: row.attempts,
                errors: row.errors.clone(),
                first_delivered_at: row.first_delivered_at,
                last_delivered_at: row.last_delivered_at,
            });
            return self.consequences.record(txn, letter, now).await;
        }
        self.consequences
            .record(
                txn,
                DeadLetter {
                    queue: row.queue.clone(),
                    subject: row.queue.clone(),
                    stream: store::STREAM.into(),
                    stream_seq: row.id,
                    task_id: row.task_id,
                    tenant_id: row.tenant_id.clone(),
                    headers: database_headers(row.task_id, &row.msg_id),
                    payload: row.payload.clone(),
                    reason,
                    attempts: row.attempts,
                    errors: row.errors.clone(),
                    first_delivered_at: row.first_delivered_at,
                    last_delivered_at: row.last_delivered_at,
                },
                now,
            )
            .await
    }

    /// One reaper pass over every queue: messages whose last delivery lapsed go to the DLQ
    /// (the database queue's MAX_DELIVERIES), settled rows past retention go. Safe on every
    /// replica at once. Returns how many it dead-lettered.
    pub async fn reap(&self, limit: u64) -> AppResult<u64> {
        let mut dead = 0;
        for spec in self.queues.iter() {
            let now = clock::now();
            let txn = db::begin_write(&self.db).await?;
            let lapsed =
                store::lapsed_last_deliveries(&txn, self.postgres, spec, limit, now).await?;
            if lapsed.is_empty() {
                continue;
            }
            for row in &lapsed {
                self.dead_letter(&txn, row, DeadReason::MaxDeliveries, now)
                    .await?;
            }
            txn.commit().await?;
            self.bus.wake();
            for row in &lapsed {
                // The server delivers an exhausted message no more: it is only removed.
                self.removed(row).await;
            }
            dead += lapsed.len() as u64;
        }
        store::sweep(&self.db, clock::now()).await?;
        Ok(dead)
    }

    /// Messages of `queue` not yet settled.
    pub async fn pending(&self, queue: &str) -> AppResult<u64> {
        match &self.jetstream {
            Some(js) => js.ready().await?.pending(queue).await.map_err(|e| {
                tracing::warn!(error = %e, "reading a queue consumer failed");
                AppError::ServiceUnavailable { dependency: "nats" }
            }),
            None => store::pending(&self.db, queue).await,
        }
    }
}
