//! The work queues on JetStream (production profile): messages live in the task stream
//! (`infra::work_queue`); a `queue_messages` row per message handed out through GraphQL
//! tracks its delivery (token, deadline, reply subject, the errors reported), so the same
//! delivery contract holds as on the database queue. Workers speaking NATS pull from the same
//! consumers; their exhausted and terminated messages reach the DLQ through the captured
//! advisories, which every replica reads from one durable consumer.
//!
//! Order of a dead-lettering, whoever triggers it: the dead letter and its consequences
//! commit first; only then is the message terminated and deleted from the task stream. If the
//! commit fails, the message stays (and the advisory is asked for again).

use std::{sync::Arc, time::Duration};

use crate::infra::shutdown::Shutdown;
use chrono::{DateTime, Utc};
use entity::queue_message::{self, MessageState};
use sea_orm::{
    ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    sea_query::{Expr, OnConflict},
};
use serde_json::json;
use tokio::sync::OnceCell;
use uuid::Uuid;

use super::{
    capture::DeadLetter,
    model::{DeadReason, DeliveryId, ReportedError, push_error},
    queues::QueueSpec,
    work::{Delivery, QueueService},
};
use crate::{
    clock,
    error::{AppError, AppResult},
    infra::{
        db,
        work_queue::{Advisory, AdvisoryKind, QueueSettings, Response, WorkQueues},
    },
};

/// Header naming a message's task.
pub const TASK_HEADER: &str = "Aurum-Task-Id";
/// Header naming a message's tenant (absent for untenanted tasks).
pub const TENANT_HEADER: &str = "Aurum-Tenant-Id";

/// The JetStream side of the queue service: the declared queues, declared once.
#[derive(Clone)]
pub struct JetQueues {
    pub(super) queues: WorkQueues,
    declared: Arc<OnceCell<()>>,
    settings: Arc<Vec<QueueSettings>>,
    retention: Duration,
}

fn unavailable(e: impl std::fmt::Display) -> AppError {
    tracing::warn!(error = %e, "JetStream work queue call failed");
    AppError::ServiceUnavailable { dependency: "nats" }
}

/// A publish or fetch that failed: `CIRCUIT_OPEN` when the `nats` breaker refused it.
fn nats_failed(e: anyhow::Error) -> AppError {
    match e.downcast_ref::<crate::infra::guard::Refused>() {
        Some(refused) => (*refused).into(),
        None => unavailable(e),
    }
}

impl JetQueues {
    pub fn new(queues: WorkQueues, specs: &[QueueSpec], retention: Duration) -> Self {
        let settings = specs
            .iter()
            .map(|q| QueueSettings {
                name: q.name.clone(),
                ack_wait: q.ack_wait(),
                max_deliver: i64::from(q.max_deliver),
            })
            .collect();
        Self {
            queues,
            declared: Arc::new(OnceCell::new()),
            settings: Arc::new(settings),
            retention,
        }
    }

    /// Declares the streams and consumers, once per process (again after a failure).
    pub async fn declare(&self) -> anyhow::Result<()> {
        self.declared
            .get_or_try_init(|| async { self.queues.declare(&self.settings, self.retention).await })
            .await
            .map(|_| ())
    }

    pub(super) async fn ready(&self) -> AppResult<&WorkQueues> {
        self.declare().await.map_err(unavailable)?;
        Ok(&self.queues)
    }
}

/// The deadline Aurum gives a delivery: JetStream's ack wait from now, less a margin (a
/// quarter of it, at most 5 s) so that what Aurum accepts before it (an ack, a nak, a
/// termination) reaches the server before the server redelivers.
pub(super) fn deadline(spec: &QueueSpec, now: DateTime<Utc>) -> DateTime<Utc> {
    let wait = spec.ack_wait();
    let margin = (wait / 4).min(Duration::from_secs(5));
    now + chrono::Duration::from_std(wait - margin).unwrap_or_default()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .rev()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn headers_json(headers: &[(String, String)]) -> serde_json::Value {
    serde_json::Value::Object(
        headers
            .iter()
            .map(|(n, v)| (n.clone(), serde_json::Value::String(v.clone())))
            .collect(),
    )
}

impl QueueService {
    /// Publishes a message for `task` (id, tenant) to `spec`'s queue under the dedup id
    /// `msg_id`, waiting for the stream's ack; answers its stream sequence.
    pub(super) async fn js_publish(
        &self,
        js: &JetQueues,
        spec: &QueueSpec,
        task: (Uuid, Option<String>),
        msg_id: &str,
        payload: Option<String>,
    ) -> AppResult<i64> {
        let queues = js.ready().await?;
        let mut headers = vec![(TASK_HEADER, task.0.to_string())];
        if let Some(tenant) = task.1 {
            headers.push((TENANT_HEADER, tenant));
        }
        let (seq, _duplicate) = queues
            .publish(
                &spec.name,
                msg_id,
                &headers,
                payload.unwrap_or_default().into_bytes().into(),
            )
            .await
            .map_err(nats_failed)?;
        Ok(i64::try_from(seq).unwrap_or(i64::MAX))
    }

    /// Claims on JetStream: pulls up to `max` messages (waiting up to `wait` for the first)
    /// and records each delivery. A message already dead-lettered (its termination got
    /// lost) is terminated again and skipped.
    pub(super) async fn js_claim(
        &self,
        js: &JetQueues,
        spec: &QueueSpec,
        max: usize,
        wait: Duration,
    ) -> AppResult<Vec<Delivery>> {
        let queues = js.ready().await?;
        let fetched = queues
            .fetch(&spec.name, max, wait)
            .await
            .map_err(nats_failed)?;
        if fetched.is_empty() {
            return Ok(Vec::new());
        }
        let now = clock::now();
        let seqs: Vec<i64> = fetched
            .iter()
            .map(|f| i64::try_from(f.stream_seq).unwrap_or(i64::MAX))
            .collect();
        // Rows of earlier deliveries of these messages: dead ones are not handed out again; a
        // delivery that was out and is now followed by another timed out (an error to keep).
        let earlier: std::collections::HashMap<i64, queue_message::Model> =
            queue_message::Entity::find()
                .filter(queue_message::Column::Queue.eq(spec.name.as_str()))
                .filter(queue_message::Column::StreamSeq.is_in(seqs.clone()))
                .all(self.db())
                .await?
                .into_iter()
                .filter_map(|m| Some((m.stream_seq?, m)))
                .collect();
        let txn = db::begin_write(self.db()).await?;
        let mut handed = Vec::new();
        for (f, seq) in fetched.into_iter().zip(seqs) {
            let before = earlier.get(&seq);
            if before.is_some_and(|m| m.state == MessageState::Dead) {
                let _ = queues.respond(&f.reply, Response::Term).await;
                let _ = queues.delete(f.stream_seq).await;
                continue;
            }
            let task_id = header(&f.headers, TASK_HEADER)
                .and_then(|t| Uuid::parse_str(t).ok())
                .unwrap_or_default();
            let token = Uuid::new_v4();
            let attempt = i32::try_from(f.delivered).unwrap_or(i32::MAX);
            let mut errors = before.map_or_else(|| "[]".to_owned(), |m| m.errors.clone());
            if let Some(m) =
                before.filter(|m| m.state == MessageState::Claimed && m.attempts < attempt)
            {
                errors = push_error(
                    &errors,
                    ReportedError {
                        attempt: m.attempts,
                        at: now,
                        error: format!(
                            "delivery {} timed out: no ack within {} s",
                            m.attempts, spec.ack_wait_seconds
                        ),
                    },
                );
            }
            let row = queue_message::ActiveModel {
                queue: sea_orm::Set(spec.name.clone()),
                stream_seq: sea_orm::Set(Some(seq)),
                task_id: sea_orm::Set(task_id),
                tenant_id: sea_orm::Set(header(&f.headers, TENANT_HEADER).map(str::to_owned)),
                msg_id: sea_orm::Set(format!("js:{seq}")),
                payload: sea_orm::Set(None),
                state: sea_orm::Set(MessageState::Claimed),
                attempts: sea_orm::Set(attempt),
                visible_at: sea_orm::Set(now),
                delivery_token: sea_orm::Set(Some(token)),
                deadline: sea_orm::Set(Some(deadline(spec, now))),
                reply: sea_orm::Set(Some(f.reply.clone())),
                errors: sea_orm::Set(errors),
                enqueued_by: sea_orm::Set("nats".into()),
                enqueued_at: sea_orm::Set(now),
                first_delivered_at: sea_orm::Set(Some(now)),
                last_delivered_at: sea_orm::Set(Some(now)),
                updated_at: sea_orm::Set(now),
                ..Default::default()
            };
            queue_message::Entity::insert(row)
                .on_conflict(
                    OnConflict::columns([
                        queue_message::Column::Queue,
                        queue_message::Column::StreamSeq,
                    ])
                    .update_columns([
                        queue_message::Column::State,
                        queue_message::Column::Attempts,
                        queue_message::Column::DeliveryToken,
                        queue_message::Column::Deadline,
                        queue_message::Column::Reply,
                        queue_message::Column::Errors,
                        queue_message::Column::LastDeliveredAt,
                        queue_message::Column::UpdatedAt,
                    ])
                    .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
            handed.push((f, seq, task_id, token, attempt));
        }
        // The rows' ids (the delivery ids name them), in one lookup.
        let ids: std::collections::HashMap<i64, i64> = queue_message::Entity::find()
            .filter(queue_message::Column::Queue.eq(spec.name.as_str()))
            .filter(queue_message::Column::StreamSeq.is_in(handed.iter().map(|h| h.1)))
            .all(&txn)
            .await?
            .into_iter()
            .filter_map(|m| Some((m.stream_seq?, m.id)))
            .collect();
        let mut out = Vec::new();
        for (f, seq, task_id, token, attempt) in handed {
            let id = ids.get(&seq).copied().ok_or_else(|| {
                AppError::Internal(anyhow::anyhow!("delivery row {seq} vanished"))
            })?;
            out.push(Delivery {
                id: DeliveryId {
                    message: id,
                    attempt,
                    token,
                },
                queue: spec.name.clone(),
                sequence: seq,
                task_id,
                payload: Some(String::from_utf8_lossy(&f.payload).into_owned()),
                ack_deadline: deadline(spec, now),
            });
        }
        txn.commit().await?;
        Ok(out)
    }

    /// The dead letter of JetStream message `seq` of `spec`'s queue, read back from the
    /// stream (headers, payload) and from its delivery row when GraphQL handed it out.
    pub(super) async fn js_letter(
        &self,
        js: &JetQueues,
        spec: &QueueSpec,
        seq: u64,
        reason: DeadReason,
        attempts: i32,
        row: Option<&queue_message::Model>,
    ) -> AppResult<Option<DeadLetter>> {
        let queues = js.ready().await?;
        let Some(stored) = queues.get(seq).await.map_err(unavailable)? else {
            return Ok(None);
        };
        let task_id = header(&stored.headers, TASK_HEADER)
            .and_then(|t| Uuid::parse_str(t).ok())
            .or(row.map(|r| r.task_id))
            .unwrap_or_default();
        Ok(Some(DeadLetter {
            queue: spec.name.clone(),
            subject: stored.subject.clone(),
            stream: queues.stream_name().to_owned(),
            stream_seq: i64::try_from(seq).unwrap_or(i64::MAX),
            task_id,
            tenant_id: header(&stored.headers, TENANT_HEADER).map(str::to_owned),
            headers: headers_json(&stored.headers),
            payload: Some(String::from_utf8_lossy(&stored.payload).into_owned()),
            reason,
            attempts: attempts.max(row.map_or(0, |r| r.attempts)),
            errors: row.map_or_else(|| "[]".to_owned(), |r| r.errors.clone()),
            first_delivered_at: row.and_then(|r| r.first_delivered_at),
            last_delivered_at: row.and_then(|r| r.last_delivered_at),
        }))
    }

    /// After a dead letter of `seq` committed: the message is terminated (when `reply`
    /// names a delivery still out) and removed from the stream. A failure leaves it for the
    /// advisory or the next claim to finish.
    pub(super) async fn js_remove(&self, js: &JetQueues, reply: Option<&str>, seq: u64) {
        let queues = &js.queues;
        if let Some(reply) = reply
            && let Err(e) = queues.respond(reply, Response::Term).await
        {
            tracing::warn!(error = %e, stream.seq = seq, "terminating a dead-lettered message failed");
        }
        if let Err(e) = queues.delete(seq).await {
            tracing::warn!(error = %e, stream.seq = seq, "deleting a dead-lettered message failed");
        }
    }

    /// Handles one captured advisory: records the dead letter of its message (unless done
    /// before), then removes the message. `Ok(Some(delay))` asks for the advisory again
    /// after `delay`: a GraphQL delivery of the message is still out (its own reject or nack
    /// is writing the dead letter, with the worker's error; if that fails, the advisory
    /// captures it once the delivery lapsed). `Err` leaves the advisory to be delivered again.
    async fn capture_advisory(
        &self,
        js: &JetQueues,
        advisory: &Advisory,
    ) -> AppResult<Option<Duration>> {
        let Some(spec) = self.queues().get(&advisory.queue).cloned() else {
            return Ok(None);
        };
        let seq = advisory.stream_seq;
        let seq_i = i64::try_from(seq).unwrap_or(i64::MAX);
        let row = queue_message::Entity::find()
            .filter(queue_message::Column::Queue.eq(spec.name.as_str()))
            .filter(queue_message::Column::StreamSeq.eq(seq_i))
            .one(self.db())
            .await?;
        let now = clock::now();
        if let Some(r) = &row
            && r.state == MessageState::Claimed
            && let Some(left) = r.deadline.and_then(|d| (d - now).to_std().ok())
        {
            return Ok(Some(left.max(Duration::from_millis(200))));
        }
        let reason = match advisory.kind {
            AdvisoryKind::MaxDeliveries => DeadReason::MaxDeliveries,
            AdvisoryKind::Terminated => DeadReason::Rejected,
        };
        let attempts = i32::try_from(advisory.deliveries).unwrap_or(i32::MAX);
        let Some(letter) = self
            .js_letter(js, &spec, seq, reason, attempts, row.as_ref())
            .await?
        else {
            return Ok(None); // no longer in the stream: captured and removed before
        };
        let txn = db::begin_write(self.db()).await?;
        self.record_js_letter(&txn, letter, now).await?;
        txn.commit().await?;
        self.bus().wake();
        self.js_remove(js, None, seq).await;
        Ok(None)
    }

    /// Records a JetStream dead letter in `txn` and marks its delivery row dead. The row is
    /// marked first: every path that dead-letters a message locks its delivery row before
    /// writing anything else, so two of them racing on one message wait for each other
    /// instead of deadlocking.
    pub(super) async fn record_js_letter(
        &self,
        txn: &DatabaseTransaction,
        letter: DeadLetter,
        now: DateTime<Utc>,
    ) -> AppResult<()> {
        queue_message::Entity::update_many()
            .col_expr(
                queue_message::Column::State,
                Expr::value(MessageState::Dead),
            )
            .col_expr(queue_message::Column::UpdatedAt, Expr::value(now))
            .filter(queue_message::Column::Queue.eq(letter.queue.as_str()))
            .filter(queue_message::Column::StreamSeq.eq(letter.stream_seq))
            .exec(txn)
            .await?;
        self.consequences().record(txn, letter, now).await?;
        Ok(())
    }

    /// Reads captured advisories until `shutdown`, on every replica; each advisory reaches
    /// one of them (one durable consumer), and a dead letter is recorded once whatever
    /// happens (unique per stream and sequence).
    pub fn spawn_capture(&self, shutdown: Shutdown) {
        let Some(js) = self.jetstream().cloned() else {
            return;
        };
        let service = self.clone();
        shutdown.clone().spawn(async move {
            let mut failures = 0u32;
            loop {
                if shutdown.is_cancelled() {
                    return;
                }
                if failures > 0 {
                    let pause = Duration::from_millis(200) * failures.min(10);
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
                let batch = match js.ready().await {
                    Ok(queues) => queues.advisories(32, Duration::from_secs(1)).await,
                    Err(_) => Err(anyhow::anyhow!("JetStream queues not declared")),
                };
                let advisories = match batch {
                    Ok(a) => {
                        failures = 0;
                        a
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        if failures == 1 || failures.is_multiple_of(50) {
                            tracing::warn!(error = %e, "reading queue advisories failed; retrying");
                        }
                        continue;
                    }
                };
                for advisory in advisories {
                    let retry = match service.capture_advisory(&js, &advisory).await {
                        Ok(later) => later,
                        Err(e) => {
                            tracing::warn!(
                                error.code = e.code(), error.cause = ?e, stream.seq = advisory.stream_seq,
                                "capturing a dead letter failed; the advisory comes back"
                            );
                            Some(Duration::from_secs(1))
                        }
                    };
                    if let Err(e) = js.queues.settle_advisory(advisory, retry).await {
                        tracing::warn!(error = %e, "settling an advisory failed; it comes back");
                    }
                }
            }
        });
    }
}

/// A JSON object of headers, for the database queue's dead letters.
pub fn database_headers(task_id: Uuid, msg_id: &str) -> serde_json::Value {
    json!({ TASK_HEADER: task_id, "Aurum-Msg-Id": msg_id })
}
