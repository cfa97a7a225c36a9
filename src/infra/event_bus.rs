//! The event bus: events leave through the transactional outbox and reach subscribers in one
//! order, with a cursor each.
//!
//! - A change writes its event into `event_outbox` in its own transaction ([`EventBus::append`])
//!   and, after commit, [`EventBus::wake`]s the relay. Nothing is sent before commit, and a
//!   committed event cannot be lost: it waits in the table until a relay has handed it on.
//! - Every replica runs a relay, woken by its own commits and polling for the rows of replicas
//!   that died before relaying theirs. On PostgreSQL an advisory lock lets one relay work at a
//!   time, so events leave in the order they entered.
//! - With NATS the relay publishes each row to a JetStream stream, with the row's event id as
//!   `Nats-Msg-Id` (JetStream drops a second publish of it within the duplicate window), waits
//!   for the acks and deletes the rows. Each replica reads the stream with an ordered consumer
//!   and fans events out to its local subscribers; the stream sequence is the cursor, and the
//!   stream keeps events for the retention period for resuming subscribers.
//! - Without NATS the table itself is the bus: rows are numbered (the number is the cursor;
//!   by the relay on PostgreSQL, as they are written on SQLite, whose writers commit one at a
//!   time), then every replica reads new numbers and fans them out; rows stay for the
//!   retention period.
//! - Local fan-out is a bounded broadcast channel: a subscriber that falls behind gets one
//!   `Lagged` with the cursor of the last event it received, and ends.
//!
//! The bus is generic over the event type: it knows subjects and JSON, not domains.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use async_nats::jetstream;
use futures::{Stream, StreamExt, stream::BoxStream};
use sea_orm::{DatabaseBackend, DatabaseConnection, DbErr, TransactionTrait};
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::{Notify, broadcast};
use tokio_stream::wrappers::{BroadcastStream, errors::BroadcastStreamRecvError};
use tokio_util::sync::CancellationToken;

use super::outbox;

/// What the bus needs to know of an event.
pub trait BusEvent: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Subject below the prefix, `<domain>.<id>.<event>`.
    fn subject(&self) -> String;
}

/// An event as subscribers receive it: its place in the feed (its cursor) and the event.
#[derive(Debug)]
pub struct Delivered<E> {
    pub position: u64,
    pub event: E,
}

/// Why a subscription could not resume from a cursor.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// The cursor is older than what the bus keeps, or unknown to it.
    #[error("cursor {cursor} is not held (held: {first}..={last})")]
    Expired { cursor: u64, first: u64, last: u64 },
    /// The bus cannot be read right now.
    #[error("reading the event stream: {0}")]
    Unavailable(String),
}

impl From<DbErr> for ResumeError {
    fn from(e: DbErr) -> Self {
        Self::Unavailable(e.to_string())
    }
}

/// How the bus behaves; see the `AURUM_EVENT_*` and `AURUM_OUTBOX_*` settings.
#[derive(Debug, Clone)]
pub struct BusOptions {
    /// Events buffered per replica for its local subscribers.
    pub capacity: usize,
    /// How long events are kept for resuming subscribers.
    pub retention: Duration,
    /// How often a relay looks for rows another replica committed but did not relay.
    pub poll: Duration,
    /// Age a row must reach before this replica relays it (a test hook; zero in production).
    pub relay_delay: Duration,
}

/// Longest a relay waits for JetStream to take a batch.
const ACK_WAIT: Duration = Duration::from_secs(3);
/// Longest pause between relay attempts while the bus is down.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How often the database bus drops events past retention.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Events one replay read takes from the database.
const REPLAY_PAGE: u64 = 500;

#[expect(
    clippy::large_enum_variant,
    reason = "one per bus, never moved after construction"
)]
enum Backend {
    Database,
    JetStream {
        client: async_nats::Client,
        js: jetstream::Context,
        stream: String,
        subjects: String,
        /// The stream was created or updated since the last failure.
        ready: AtomicBool,
    },
}

struct Shared<E> {
    tx: broadcast::Sender<Arc<Delivered<E>>>,
    db: DatabaseConnection,
    backend: Backend,
    wake: Notify,
    /// The last position fanned out on this replica.
    head: AtomicU64,
    options: BusOptions,
}

/// Handle to the bus; cheap to clone.
pub struct EventBus<E> {
    shared: Arc<Shared<E>>,
}

impl<E> Clone for EventBus<E> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<E: BusEvent> EventBus<E> {
    fn new(db: DatabaseConnection, backend: Backend, options: BusOptions, head: u64) -> Self {
        let (tx, _) = broadcast::channel(options.capacity.max(1));
        Self {
            shared: Arc::new(Shared {
                tx,
                db,
                backend,
                wake: Notify::new(),
                head: AtomicU64::new(head),
                options,
            }),
        }
    }

    /// The database as the bus (one replica, or replicas sharing a PostgreSQL without NATS):
    /// relays and fans out until `shutdown`.
    pub async fn database(
        db: DatabaseConnection,
        options: BusOptions,
        shutdown: CancellationToken,
    ) -> Result<Self, DbErr> {
        let head = u64::try_from(outbox::last_position(&db).await?).unwrap_or(0);
        let bus = Self::new(db, Backend::Database, options, head);
        tokio::spawn(Arc::clone(&bus.shared).relay_loop(shutdown));
        Ok(bus)
    }

    /// JetStream as the bus: stream `<PREFIX>_EVENTS` on subjects `<prefix>.events.>`. Needs no
    /// answer from NATS to start: the relay and the consumer create the stream when it answers.
    pub fn jetstream(
        db: DatabaseConnection,
        client: async_nats::Client,
        prefix: &str,
        options: BusOptions,
        shutdown: CancellationToken,
    ) -> Self {
        let stream = format!(
            "{}_EVENTS",
            prefix
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '-' {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                })
                .collect::<String>()
        );
        let backend = Backend::JetStream {
            js: jetstream::new(client.clone()),
            client,
            stream,
            subjects: format!("{prefix}.events"),
            ready: AtomicBool::new(false),
        };
        let bus = Self::new(db, backend, options, 0);
        tokio::spawn(Arc::clone(&bus.shared).relay_loop(shutdown.clone()));
        tokio::spawn(Arc::clone(&bus.shared).consume_loop(shutdown));
        bus
    }

    /// A bus that only writes the outbox (command-line tools): a running server's relay
    /// delivers what it appends.
    pub fn writer(db: DatabaseConnection) -> Self {
        let options = BusOptions {
            capacity: 1,
            retention: Duration::ZERO,
            poll: Duration::ZERO,
            relay_delay: Duration::ZERO,
        };
        Self::new(db, Backend::Database, options, 0)
    }

    /// Writes `event` into the outbox through `conn`, the transaction making the change.
    pub async fn append<C: sea_orm::ConnectionTrait>(
        &self,
        conn: &C,
        event: &E,
    ) -> Result<(), DbErr> {
        outbox::append(conn, event).await
    }

    /// Tells this replica's relay that a transaction with events committed.
    pub fn wake(&self) {
        self.shared.wake.notify_one();
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> Subscription<E> {
        // The starting point before the receiver: every event after it is either received or
        // was sent before the receiver existed, and then a resume from the starting point
        // (a lag's `last`) replays it.
        let start = self.head();
        Subscription::new(
            None,
            BroadcastStream::new(self.shared.tx.subscribe()),
            start,
        )
    }

    /// Every event after `cursor` (the ones held, then live ones: no gap, no duplicate); from
    /// now on when `cursor` is `None`.
    pub async fn subscribe_after(
        &self,
        cursor: Option<u64>,
    ) -> Result<Subscription<E>, ResumeError> {
        let Some(cursor) = cursor else {
            return Ok(self.subscribe());
        };
        // Live first: whatever arrives while the replay reads is in one or the other.
        let live = BroadcastStream::new(self.shared.tx.subscribe());
        let replay = match &self.shared.backend {
            Backend::Database => self.shared.replay_database(cursor).await?,
            Backend::JetStream { .. } => self.shared.replay_jetstream(cursor).await?,
        };
        Ok(Subscription::new(Some(replay), live, cursor))
    }

    /// The last position fanned out on this replica.
    pub fn head(&self) -> u64 {
        self.shared.head.load(Ordering::Acquire)
    }

    /// Local subscribers currently attached on this replica.
    pub fn receiver_count(&self) -> usize {
        self.shared.tx.receiver_count()
    }

    /// Rows waiting for a relay, and the age of the oldest.
    pub async fn backlog(&self) -> Result<(i64, Duration), DbErr> {
        let delivered = match self.shared.backend {
            Backend::Database => Some(i64::try_from(self.head()).unwrap_or(i64::MAX)),
            Backend::JetStream { .. } => None,
        };
        let (rows, oldest) = outbox::depth(&self.shared.db, delivered).await?;
        let age = oldest
            .and_then(|t| (crate::clock::now() - t).to_std().ok())
            .unwrap_or_default();
        Ok((rows, age))
    }
}

impl<E: BusEvent> Shared<E> {
    fn deliver(&self, position: u64, event: E) {
        // No receivers is normal (nobody subscribed on this replica). Sent before `head`
        // moves: a subscriber that read `head` as its starting point either receives the
        // event or started after it (see `subscribe`).
        let _ = self.tx.send(Arc::new(Delivered { position, event }));
        self.head.store(position, Ordering::Release);
    }

    async fn relay_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut failures: u32 = 0;
        let mut swept = tokio::time::Instant::now();
        loop {
            let pause = if failures == 0 {
                self.options.poll
            } else {
                (Duration::from_millis(100) * failures.min(10)).min(MAX_BACKOFF)
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.wake.notified(), if failures == 0 => {}
                () = tokio::time::sleep(pause) => {}
            }
            match self.relay_all().await {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(attempts = failures, "event relay recovered");
                    }
                    failures = 0;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    // Every attempt fails alike during an outage: the first and then one line
                    // in fifty.
                    if failures == 1 || failures.is_multiple_of(50) {
                        tracing::warn!(error = %e, attempts = failures, "event relay failed; events wait in the outbox");
                    }
                }
            }
            if matches!(self.backend, Backend::Database) {
                if let Err(e) = self.fan_out_numbered().await {
                    tracing::warn!(error = %e, "reading numbered events failed");
                }
                if swept.elapsed() >= SWEEP_EVERY {
                    swept = tokio::time::Instant::now();
                    let cutoff = crate::clock::now()
                        - chrono::Duration::from_std(self.options.retention)
                            .unwrap_or(chrono::Duration::zero());
                    if let Err(e) = outbox::sweep(&self.db, cutoff).await {
                        tracing::warn!(error = %e, "dropping events past retention failed");
                    }
                }
            }
        }
    }

    /// Relays until the outbox holds nothing old enough.
    async fn relay_all(&self) -> anyhow::Result<()> {
        loop {
            let relayed = match &self.backend {
                Backend::Database => self.number_batch().await?,
                Backend::JetStream { .. } => self.publish_batch().await?,
            };
            if relayed > 0 {
                metrics::counter!("aurum_events_relayed_total").increment(relayed as u64);
            }
            if (relayed as u64) < outbox::BATCH {
                return Ok(());
            }
        }
    }

    /// Database bus: numbers the oldest unnumbered rows (PostgreSQL; SQLite numbers them as
    /// they are written, see `outbox::append`).
    async fn number_batch(&self) -> Result<usize, DbErr> {
        if self.db.get_database_backend() == DatabaseBackend::Sqlite {
            return Ok(0);
        }
        let txn = super::db::begin_write(&self.db).await?;
        outbox::lock_relay(&txn).await?;
        let rows = outbox::pending(&txn, false, self.options.relay_delay).await?;
        if !rows.is_empty() {
            let last = outbox::last_position(&txn).await?;
            outbox::number(&txn, &rows, last).await?;
        }
        txn.commit().await?;
        Ok(rows.len())
    }

    /// Database bus: fans out what was numbered since the last look, in order, up to the
    /// first row younger than the relay delay (on SQLite rows are numbered as they are
    /// written, so the delay holds them here).
    async fn fan_out_numbered(&self) -> Result<(), DbErr> {
        let cutoff = (!self.options.relay_delay.is_zero()).then(|| {
            crate::clock::now()
                - chrono::Duration::from_std(self.options.relay_delay)
                    .unwrap_or(chrono::Duration::zero())
        });
        loop {
            let head = i64::try_from(self.head.load(Ordering::Acquire)).unwrap_or(i64::MAX);
            let rows = outbox::after(&self.db, head, REPLAY_PAGE).await?;
            let full = rows.len() as u64 == REPLAY_PAGE;
            for row in rows {
                if cutoff.is_some_and(|cutoff| row.created_at > cutoff) {
                    return Ok(());
                }
                if self.db.get_database_backend() == DatabaseBackend::Sqlite {
                    // Numbered as written: reaching subscribers is its relay.
                    metrics::counter!("aurum_events_relayed_total").increment(1);
                }
                let position = u64::try_from(row.position.unwrap_or(0)).unwrap_or(0);
                match serde_json::from_str::<E>(&row.payload) {
                    Ok(event) => self.deliver(position, event),
                    Err(e) => {
                        self.head.store(position, Ordering::Release);
                        tracing::warn!(outbox.id = row.id, error = %e, "dropping undecodable event");
                    }
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// JetStream bus: publishes the oldest rows, waits for the acks, deletes them. On
    /// PostgreSQL the rows stay locked (and the other relays wait) until then; on SQLite the
    /// write lock is not held while NATS is slow (one relay per process there).
    async fn publish_batch(&self) -> anyhow::Result<usize> {
        if self.db.get_database_backend() == DatabaseBackend::Postgres {
            let txn = self.db.begin().await?;
            outbox::lock_relay(&txn).await?;
            let n = self.publish_pending(&txn).await?;
            txn.commit().await?;
            Ok(n)
        } else {
            self.publish_pending(&self.db).await
        }
    }

    async fn publish_pending<C: sea_orm::ConnectionTrait>(
        &self,
        conn: &C,
    ) -> anyhow::Result<usize> {
        let Backend::JetStream {
            js,
            subjects,
            ready,
            ..
        } = &self.backend
        else {
            return Ok(0);
        };
        let rows = outbox::pending(conn, true, self.options.relay_delay).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        if !ready.load(Ordering::Acquire) {
            self.ensure_stream().await?;
        }
        let result = async {
            let mut acks = Vec::with_capacity(rows.len());
            for row in &rows {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(
                    async_nats::header::NATS_MESSAGE_ID,
                    row.event_id.to_string().as_str(),
                );
                let ack = js
                    .publish_with_headers(
                        format!("{subjects}.{}", row.subject),
                        headers,
                        row.payload.clone().into(),
                    )
                    .await?;
                acks.push(ack);
            }
            for ack in acks {
                tokio::time::timeout(ACK_WAIT, ack)
                    .await
                    .map_err(|_| anyhow::anyhow!("no JetStream ack within {ACK_WAIT:?}"))??;
            }
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = result {
            // The stream may be gone (a NATS without its store): declare it again next time.
            ready.store(false, Ordering::Release);
            return Err(e);
        }
        let n = rows.len();
        outbox::remove(conn, rows.into_iter().map(|r| r.id).collect()).await?;
        Ok(n)
    }

    /// Creates the stream, or brings its settings up to date.
    async fn ensure_stream(&self) -> anyhow::Result<()> {
        let Backend::JetStream {
            js,
            stream,
            subjects,
            ready,
            ..
        } = &self.backend
        else {
            return Ok(());
        };
        let retention = self.options.retention.max(Duration::from_secs(1));
        js.create_or_update_stream(jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![format!("{subjects}.>")],
            max_age: retention,
            duplicate_window: retention.min(Duration::from_secs(120)),
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("declaring stream {stream}: {e}"))?;
        ready.store(true, Ordering::Release);
        Ok(())
    }

    /// JetStream bus: reads the stream from where this replica left off and fans out, for as
    /// long as the replica runs; recreates its consumer whenever NATS comes back.
    async fn consume_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut next: Option<u64> = None;
        let mut failures: u32 = 0;
        loop {
            if failures > 0 {
                let pause = (Duration::from_millis(100) * failures.min(10)).min(MAX_BACKOFF);
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(pause) => {}
                }
            }
            match self.consume(&mut next, &shutdown).await {
                Ok(()) => return,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    if failures == 1 || failures.is_multiple_of(50) {
                        tracing::warn!(error = %e, attempts = failures, "reading the event stream failed; retrying");
                    }
                }
            }
        }
    }

    /// Reads until shutdown (`Ok`) or a failure (`Err`, to be retried from `next`).
    async fn consume(
        &self,
        next: &mut Option<u64>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let Backend::JetStream {
            client, js, stream, ..
        } = &self.backend
        else {
            return Ok(());
        };
        self.ensure_stream().await?;
        let mut handle = js.get_stream(stream).await?;
        let start = match *next {
            Some(start) => start,
            None => {
                // A new replica starts at the end: its subscribers want what happens from now.
                let last = handle.info().await?.state.last_sequence;
                self.head.store(last, Ordering::Release);
                *next = Some(last + 1);
                last + 1
            }
        };
        let consumer = handle
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                },
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        // The ordered consumer finds out late (missed heartbeats) that a restarted NATS lost
        // it; watching the connection recreates it as soon as NATS is back.
        let mut watch = tokio::time::interval(Duration::from_millis(250));
        let mut disconnected = false;
        loop {
            let message = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                _ = watch.tick() => {
                    let connected = client.connection_state() == async_nats::connection::State::Connected;
                    if !connected {
                        disconnected = true;
                    } else if disconnected {
                        anyhow::bail!("NATS reconnected; reading the stream again from {}", next.unwrap_or(start));
                    }
                    continue;
                }
                message = messages.next() => message,
            };
            let message = match message {
                Some(Ok(message)) => message,
                Some(Err(e)) => return Err(e.into()),
                None => anyhow::bail!("the stream consumer ended"),
            };
            let position = message
                .info()
                .map_err(|e| anyhow::anyhow!("message without stream info: {e}"))?
                .stream_sequence;
            *next = Some(position + 1);
            match serde_json::from_slice::<E>(&message.payload) {
                Ok(event) => self.deliver(position, event),
                Err(e) => {
                    self.head.store(position, Ordering::Release);
                    tracing::warn!(nats.subject = %message.subject, error = %e, "dropping undecodable event");
                }
            }
        }
    }

    /// Database bus: the held events after `cursor`, page by page.
    async fn replay_database(
        self: &Arc<Self>,
        cursor: u64,
    ) -> Result<BoxStream<'static, Result<Arc<Delivered<E>>, ResumeError>>, ResumeError> {
        let last = u64::try_from(outbox::last_position(&self.db).await?).unwrap_or(0);
        let first = outbox::first_position(&self.db)
            .await?
            .and_then(|f| u64::try_from(f).ok())
            .unwrap_or(last + 1);
        check_cursor(cursor, first, last)?;
        let shared = Arc::clone(self);
        let pages = futures::stream::unfold(Some(cursor), move |from| {
            let shared = Arc::clone(&shared);
            async move {
                let from = from?;
                if from >= last {
                    return None;
                }
                let at = i64::try_from(from).unwrap_or(i64::MAX);
                match outbox::after(&shared.db, at, REPLAY_PAGE).await {
                    Ok(rows) if rows.is_empty() => None,
                    Ok(rows) => {
                        let mut end = from;
                        let items: Vec<_> = rows
                            .into_iter()
                            .filter_map(|row| {
                                let position = u64::try_from(row.position?).ok()?;
                                end = position;
                                let event = serde_json::from_str::<E>(&row.payload).ok()?;
                                Some(Ok(Arc::new(Delivered { position, event })))
                            })
                            .collect();
                        Some((futures::stream::iter(items), Some(end)))
                    }
                    Err(e) => Some((futures::stream::iter(vec![Err(e.into())]), None)),
                }
            }
        });
        Ok(pages.flatten().boxed())
    }

    /// JetStream bus: the held events after `cursor`, from a consumer of their own.
    async fn replay_jetstream(
        &self,
        cursor: u64,
    ) -> Result<BoxStream<'static, Result<Arc<Delivered<E>>, ResumeError>>, ResumeError> {
        let Backend::JetStream { js, stream, .. } = &self.backend else {
            return Err(ResumeError::Unavailable("not a JetStream bus".into()));
        };
        let unavailable = |e: &dyn std::fmt::Display| ResumeError::Unavailable(e.to_string());
        let mut handle = js.get_stream(stream).await.map_err(|e| unavailable(&e))?;
        let state = handle
            .info()
            .await
            .map_err(|e| unavailable(&e))?
            .state
            .clone();
        check_cursor(cursor, state.first_sequence, state.last_sequence)?;
        if cursor >= state.last_sequence {
            return Ok(futures::stream::empty().boxed());
        }
        let consumer = handle
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: cursor + 1,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(&e))?;
        let messages = consumer.messages().await.map_err(|e| unavailable(&e))?;
        let last = state.last_sequence;
        // Up to the end as it was when the replay started (live events take over there); the
        // stream is not read past it, so the replay ends without waiting for a new event.
        let replay = futures::stream::unfold(Some(messages), move |messages| async move {
            let mut messages = messages?;
            let item = match messages.next().await? {
                Ok(message) => message
                    .info()
                    .map(|info| info.stream_sequence)
                    .map_err(|e| ResumeError::Unavailable(e.to_string()))
                    .map(|position| (position, serde_json::from_slice::<E>(&message.payload).ok())),
                Err(e) => Err(ResumeError::Unavailable(e.to_string())),
            };
            let more = matches!(item, Ok((position, _)) if position < last);
            Some((item, more.then_some(messages)))
        })
        .filter_map(|item| {
            futures::future::ready(match item {
                Ok((position, Some(event))) => Some(Ok(Arc::new(Delivered { position, event }))),
                // Undecodable: skipped, as live delivery skips it.
                Ok((_, None)) => None,
                Err(e) => Some(Err(e)),
            })
        });
        Ok(replay.boxed())
    }
}

/// A cursor is held when the events after it still are: from the one before the first held
/// event up to the last event given out.
fn check_cursor(cursor: u64, first: u64, last: u64) -> Result<(), ResumeError> {
    if cursor.saturating_add(1) < first || cursor > last {
        return Err(ResumeError::Expired {
            cursor,
            first,
            last,
        });
    }
    Ok(())
}

/// Why a subscription ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupted {
    /// It fell `skipped` events behind the live feed.
    Lagged { skipped: u64, last: u64 },
    /// Its replay could not be read to the end.
    ReplayFailed { last: u64 },
}

/// One subscriber's view of the bus: a replay (when resuming), then live events past it.
pub struct Subscription<E> {
    replay: Option<BoxStream<'static, Result<Arc<Delivered<E>>, ResumeError>>>,
    live: BroadcastStream<Arc<Delivered<E>>>,
    /// The position of the last event yielded (or the starting point).
    last: u64,
    done: bool,
}

impl<E: Send + Sync + 'static> Subscription<E> {
    fn new(
        replay: Option<BoxStream<'static, Result<Arc<Delivered<E>>, ResumeError>>>,
        live: BroadcastStream<Arc<Delivered<E>>>,
        last: u64,
    ) -> Self {
        Self {
            replay,
            live,
            last,
            done: false,
        }
    }

    /// The position of the last event yielded, or where the subscription started.
    pub fn last(&self) -> u64 {
        self.last
    }
}

impl<E: Send + Sync + 'static> Stream for Subscription<E> {
    type Item = Result<Arc<Delivered<E>>, Interrupted>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(replay) = this.replay.as_mut() {
            match futures::ready!(replay.poll_next_unpin(cx)) {
                Some(Ok(event)) => {
                    this.last = event.position;
                    metrics::counter!("aurum_events_replayed_total").increment(1);
                    return Poll::Ready(Some(Ok(event)));
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "replaying events failed");
                    this.done = true;
                    return Poll::Ready(Some(Err(Interrupted::ReplayFailed { last: this.last })));
                }
                None => this.replay = None,
            }
        }
        loop {
            match futures::ready!(this.live.poll_next_unpin(cx)) {
                // Already replayed (or from before the start).
                Some(Ok(event)) if event.position <= this.last => continue,
                Some(Ok(event)) => {
                    this.last = event.position;
                    return Poll::Ready(Some(Ok(event)));
                }
                Some(Err(BroadcastStreamRecvError::Lagged(skipped))) => {
                    this.done = true;
                    metrics::counter!("aurum_subscribers_lagged_total").increment(1);
                    return Poll::Ready(Some(Err(Interrupted::Lagged {
                        skipped,
                        last: this.last,
                    })));
                }
                None => return Poll::Ready(None),
            }
        }
    }
}
