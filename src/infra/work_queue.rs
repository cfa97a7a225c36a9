//! JetStream work queues: one stream of task messages (`<PREFIX>_TASKS`, subjects
//! `<prefix>.tasks.<queue>`, limits retention, file storage) with one durable pull consumer
//! per queue, and one stream capturing the server's MAX_DELIVERIES and MSG_TERMINATED
//! advisories about them (`<PREFIX>_QUEUE_ADVISORIES`, read by the durable consumer
//! `dlq-capture`), so advisories raised while no replica listens are still there when one
//! starts. Everything is declared here, in one place, idempotently. Knows no domain: queues
//! are names with delivery settings, messages are bytes with headers.

use super::guard::{Guard, guarded_poll};
use std::time::Duration;

use async_nats::{
    HeaderMap,
    jetstream::{self, consumer::pull, stream},
};
use futures::StreamExt;
use serde::Deserialize;
use tokio_util::bytes::Bytes;

/// The delivery settings of one queue's consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    pub name: String,
    pub ack_wait: Duration,
    pub max_deliver: i64,
}

/// Name of the durable consumer reading the advisory stream.
pub const CAPTURE_CONSUMER: &str = "dlq-capture";
/// How long JetStream remembers a `Nats-Msg-Id` to drop a second publish of it.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Deliveries in flight per queue consumer at most.
const MAX_ACK_PENDING: i64 = 10_000;
/// How long an ack, nak, progress or term waits for the server's confirmation.
const RESPOND_TIMEOUT: Duration = Duration::from_secs(3);

/// A message handed out by a queue consumer.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub stream_seq: u64,
    /// Its delivery count, this one included.
    pub delivered: i64,
    /// Where its ack, nak, progress or term goes.
    pub reply: String,
    pub headers: Vec<(String, String)>,
    pub payload: Bytes,
}

/// A message read back from the task stream.
#[derive(Debug, Clone)]
pub struct Stored {
    pub subject: String,
    pub headers: Vec<(String, String)>,
    pub payload: Bytes,
}

/// What an advisory says happened to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdvisoryKind {
    /// It was delivered `max_deliver` times without an ack.
    MaxDeliveries,
    /// A worker terminated it (`+TERM`).
    Terminated,
}

/// One captured advisory; [`WorkQueues::settle_advisory`] acknowledges it (or asks for it
/// again) once its message is handled.
#[derive(Debug)]
pub struct Advisory {
    pub kind: AdvisoryKind,
    /// The queue: the consumer the advisory is about.
    pub queue: String,
    pub stream_seq: u64,
    pub deliveries: i64,
    message: jetstream::Message,
}

#[derive(Deserialize)]
struct AdvisoryBody {
    stream: String,
    consumer: String,
    stream_seq: u64,
    #[serde(default)]
    deliveries: i64,
}

/// What a worker (or Aurum on its behalf) answers to a delivery.
#[derive(Debug, Clone, Copy)]
pub enum Response {
    Ack,
    /// Redeliver after the delay.
    Nak(Duration),
    /// Still working: restart the ack timer.
    Progress,
    /// Never deliver again.
    Term,
}

/// The declared work queues on one NATS connection.
#[derive(Clone)]
pub struct WorkQueues {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: String,
    advisories: String,
    subject_prefix: String,
    /// The `nats` breaker, on publishes and fetches (the calls agents wait on).
    guard: Option<Guard>,
}

fn headers_of(map: Option<&HeaderMap>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = map
        .map(|h| {
            h.iter()
                .flat_map(|(name, values)| {
                    values
                        .iter()
                        .map(move |v| (name.to_string(), v.as_str().to_owned()))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

impl WorkQueues {
    /// Names only; nothing is declared until [`WorkQueues::declare`].
    pub fn new(client: async_nats::Client, prefix: &str) -> Self {
        let js = jetstream::new(client.clone());
        Self {
            client,
            js,
            stream: format!("{}_TASKS", prefix.to_uppercase()),
            advisories: format!("{}_QUEUE_ADVISORIES", prefix.to_uppercase()),
            subject_prefix: format!("{prefix}.tasks"),
            guard: None,
        }
    }

    /// Publishes and fetches go through `guard`: refused at once (`Refused` in the error)
    /// while it is open.
    #[must_use]
    pub fn with_guard(mut self, guard: Guard) -> Self {
        self.guard = Some(guard);
        self
    }

    /// The task stream's name (`dlq_messages.stream`).
    pub fn stream_name(&self) -> &str {
        &self.stream
    }

    /// The subject of `queue`'s messages.
    pub fn subject(&self, queue: &str) -> String {
        format!("{}.{queue}", self.subject_prefix)
    }

    /// Declares the streams and one consumer per queue. Idempotent: what exists with the same
    /// settings is left alone; a consumer whose ack wait or delivery count changed is updated
    /// (and the change logged); a setting JetStream cannot change in place (the stream's
    /// retention or storage, a consumer's subject) is refused with what differs.
    pub async fn declare(
        &self,
        queues: &[QueueSettings],
        retention: Duration,
    ) -> anyhow::Result<()> {
        let tasks = stream::Config {
            name: self.stream.clone(),
            subjects: vec![format!("{}.*", self.subject_prefix)],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_age: retention,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        };
        self.declare_stream(tasks).await?;
        let advisory_subjects = ["MAX_DELIVERIES", "MSG_TERMINATED"]
            .map(|kind| format!("$JS.EVENT.ADVISORY.CONSUMER.{kind}.{}.*", self.stream))
            .to_vec();
        self.declare_stream(stream::Config {
            name: self.advisories.clone(),
            subjects: advisory_subjects,
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_age: retention,
            ..Default::default()
        })
        .await?;
        let stream = self.js.get_stream(&self.stream).await?;
        for q in queues {
            let wanted = pull::Config {
                durable_name: Some(q.name.clone()),
                filter_subject: self.subject(&q.name),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: q.ack_wait,
                max_deliver: q.max_deliver,
                max_ack_pending: MAX_ACK_PENDING,
                ..Default::default()
            };
            match stream.get_consumer::<pull::Config>(&q.name).await {
                Ok(mut existing) => {
                    let have = existing.info().await?.config.clone();
                    if have.filter_subject != wanted.filter_subject {
                        anyhow::bail!(
                            "consumer {} on {} reads {:?}, not {:?}; delete it to redeclare",
                            q.name,
                            self.stream,
                            have.filter_subject,
                            wanted.filter_subject
                        );
                    }
                    if have.ack_wait != wanted.ack_wait || have.max_deliver != wanted.max_deliver {
                        tracing::info!(
                            queue = %q.name,
                            ack_wait.was = ?have.ack_wait, ack_wait.now = ?wanted.ack_wait,
                            max_deliver.was = have.max_deliver, max_deliver.now = wanted.max_deliver,
                            "updating the queue's consumer"
                        );
                        stream.create_consumer(wanted).await?;
                    }
                }
                Err(_) => {
                    stream.create_consumer(wanted).await?;
                }
            }
        }
        let advisories = self.js.get_stream(&self.advisories).await?;
        advisories
            .get_or_create_consumer(
                CAPTURE_CONSUMER,
                pull::Config {
                    durable_name: Some(CAPTURE_CONSUMER.into()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(30),
                    ..Default::default()
                },
            )
            .await?;
        Ok(())
    }

    async fn declare_stream(&self, wanted: stream::Config) -> anyhow::Result<()> {
        match self.js.get_stream(&wanted.name).await {
            Ok(mut existing) => {
                let have = existing.info().await?.config.clone();
                if have.retention != wanted.retention || have.storage != wanted.storage {
                    anyhow::bail!(
                        "stream {} has retention {:?} and storage {:?}, Aurum declares {:?} and {:?}; JetStream cannot change them in place",
                        wanted.name,
                        have.retention,
                        have.storage,
                        wanted.retention,
                        wanted.storage
                    );
                }
                if have.subjects != wanted.subjects
                    || have.max_age != wanted.max_age
                    || have.duplicate_window != wanted.duplicate_window
                {
                    tracing::info!(stream = %wanted.name, "updating the stream's subjects or limits");
                    self.js.update_stream(wanted).await?;
                }
                Ok(())
            }
            Err(_) => {
                self.js.create_stream(wanted).await?;
                Ok(())
            }
        }
    }

    /// Publishes to `queue` under the deduplication id `msg_id` and waits for the stream's
    /// ack: `(sequence, duplicate)`. A second publish of `msg_id` within
    /// [`DUPLICATE_WINDOW`] stores nothing and answers the first sequence.
    pub async fn publish(
        &self,
        queue: &str,
        msg_id: &str,
        headers: &[(&str, String)],
        payload: Bytes,
    ) -> anyhow::Result<(u64, bool)> {
        let mut map = HeaderMap::new();
        map.insert("Nats-Msg-Id", msg_id);
        for (name, value) in headers {
            map.insert(*name, value.as_str());
        }
        guarded_poll(self.guard.as_ref(), Duration::ZERO, async {
            let ack = self
                .js
                .publish_with_headers(self.subject(queue), map, payload)
                .await?
                .await?;
            Ok((ack.sequence, ack.duplicate))
        })
        .await
    }

    /// Up to `max` messages of `queue`, waiting up to `wait` for the first one.
    pub async fn fetch(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
    ) -> anyhow::Result<Vec<Fetched>> {
        guarded_poll(
            self.guard.as_ref(),
            wait,
            self.fetch_unguarded(queue, max, wait),
        )
        .await
    }

    async fn fetch_unguarded(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
    ) -> anyhow::Result<Vec<Fetched>> {
        let consumer: jetstream::consumer::PullConsumer = self
            .js
            .get_consumer_from_stream(queue, &self.stream)
            .await?;
        let mut out = Self::drain(consumer.fetch().max_messages(max).messages().await?).await?;
        if out.is_empty() && !wait.is_zero() {
            // One message, waited for; then whatever else is ready, without waiting.
            let first = consumer
                .batch()
                .max_messages(1)
                .expires(wait.max(Duration::from_millis(100)))
                .messages()
                .await?;
            out = Self::drain(first).await?;
            if !out.is_empty() && max > 1 {
                out.extend(
                    Self::drain(consumer.fetch().max_messages(max - 1).messages().await?).await?,
                );
            }
        }
        Ok(out)
    }

    async fn drain(mut batch: pull::Batch) -> anyhow::Result<Vec<Fetched>> {
        let mut out = Vec::new();
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| anyhow::anyhow!("fetching: {e}"))?;
            let info = message
                .info()
                .map_err(|e| anyhow::anyhow!("message info: {e}"))?;
            let (stream_seq, delivered) = (info.stream_sequence, info.delivered);
            out.push(Fetched {
                stream_seq,
                delivered,
                reply: message
                    .reply
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                headers: headers_of(message.headers.as_ref()),
                payload: message.payload.clone(),
            });
        }
        Ok(out)
    }

    /// Answers a delivery through its reply subject and waits for the server's confirmation.
    pub async fn respond(&self, reply: &str, response: Response) -> anyhow::Result<()> {
        let body: Bytes = match response {
            Response::Ack => Bytes::from_static(b"+ACK"),
            Response::Nak(delay) => {
                Bytes::from(format!("-NAK {{\"delay\": {}}}", delay.as_nanos()))
            }
            Response::Progress => Bytes::from_static(b"+WPI"),
            Response::Term => Bytes::from_static(b"+TERM"),
        };
        tokio::time::timeout(RESPOND_TIMEOUT, self.client.request(reply.to_owned(), body))
            .await
            .map_err(|_| {
                anyhow::anyhow!("no confirmation of {response:?} within {RESPOND_TIMEOUT:?}")
            })??;
        Ok(())
    }

    /// The stored message at `seq`; `None` when the stream no longer holds it.
    pub async fn get(&self, seq: u64) -> anyhow::Result<Option<Stored>> {
        let stream = self.js.get_stream_no_info(&self.stream).await?;
        match stream.get_raw_message(seq).await {
            Ok(m) => Ok(Some(Stored {
                subject: m.subject.to_string(),
                headers: headers_of(Some(&m.headers)),
                payload: m.payload,
            })),
            Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(anyhow::anyhow!("reading message {seq}: {e}")),
        }
    }

    /// Removes the message at `seq` from the task stream; already gone is fine.
    pub async fn delete(&self, seq: u64) -> anyhow::Result<()> {
        let stream = self.js.get_stream_no_info(&self.stream).await?;
        match stream.delete_message(seq).await {
            Ok(_) => Ok(()),
            Err(e) => match e.kind() {
                stream::DeleteMessageErrorKind::JetStream(js)
                    if js.error_code() == jetstream::ErrorCode::NO_MESSAGE_FOUND =>
                {
                    Ok(())
                }
                _ => Err(anyhow::anyhow!("deleting message {seq}: {e}")),
            },
        }
    }

    /// Messages of `queue` not yet settled: waiting for a delivery or out with a worker.
    pub async fn pending(&self, queue: &str) -> anyhow::Result<u64> {
        let mut consumer: jetstream::consumer::PullConsumer = self
            .js
            .get_consumer_from_stream(queue, &self.stream)
            .await?;
        let info = consumer.info().await?;
        Ok(info.num_pending + u64::try_from(info.num_ack_pending).unwrap_or(0))
    }

    /// Up to `max` captured advisories about the task stream, waiting up to `wait`.
    /// Advisories about other streams are acknowledged and skipped.
    pub async fn advisories(&self, max: usize, wait: Duration) -> anyhow::Result<Vec<Advisory>> {
        let consumer: jetstream::consumer::PullConsumer = self
            .js
            .get_consumer_from_stream(CAPTURE_CONSUMER, &self.advisories)
            .await?;
        // The first one waited for, then whatever else is there without waiting (a batch of
        // `max` would wait out `wait` whenever fewer than `max` are there).
        let first = consumer
            .batch()
            .max_messages(1)
            .expires(wait)
            .messages()
            .await?;
        let mut messages: Vec<jetstream::Message> = Vec::new();
        Self::collect(first, &mut messages).await?;
        if !messages.is_empty() && max > 1 {
            let rest = consumer.fetch().max_messages(max - 1).messages().await?;
            Self::collect(rest, &mut messages).await?;
        }
        let mut out = Vec::new();
        for message in messages {
            let kind = if message.subject.contains(".MAX_DELIVERIES.") {
                AdvisoryKind::MaxDeliveries
            } else {
                AdvisoryKind::Terminated
            };
            match serde_json::from_slice::<AdvisoryBody>(&message.payload) {
                Ok(body) if body.stream == self.stream => out.push(Advisory {
                    kind,
                    queue: body.consumer,
                    stream_seq: body.stream_seq,
                    deliveries: body.deliveries,
                    message,
                }),
                _ => {
                    let _ = message.ack().await;
                }
            }
        }
        Ok(out)
    }

    async fn collect(
        mut batch: pull::Batch,
        into: &mut Vec<jetstream::Message>,
    ) -> anyhow::Result<()> {
        while let Some(message) = batch.next().await {
            into.push(message.map_err(|e| anyhow::anyhow!("fetching advisories: {e}"))?);
        }
        Ok(())
    }

    /// Acknowledges a handled advisory, or (`retry_after`) asks for it again after a delay.
    pub async fn settle_advisory(
        &self,
        advisory: Advisory,
        retry_after: Option<Duration>,
    ) -> anyhow::Result<()> {
        let kind = match retry_after {
            None => jetstream::AckKind::Ack,
            Some(d) => jetstream::AckKind::Nak(Some(d)),
        };
        advisory
            .message
            .ack_with(kind)
            .await
            .map_err(|e| anyhow::anyhow!("settling an advisory: {e}"))
    }
}
