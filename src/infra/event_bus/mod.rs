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
//! The bus is generic over the event type: it knows subjects and JSON, not domains. Here: the
//! handle and its settings; `relay` moves rows onto the bus and fans out what arrives,
//! `replay` reads held events for a resuming subscriber, `subscription` is one subscriber's
//! stream.

use super::guard::Guard;
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use super::shutdown::Shutdown;
use async_nats::jetstream;
use sea_orm::{DatabaseConnection, DbErr};
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::{Notify, broadcast};
use tokio_stream::wrappers::BroadcastStream;

use super::outbox;

mod relay;
mod replay;
mod subscription;

pub use subscription::{Interrupted, Subscription};

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
        /// The `nats` breaker, on the relay's publishes.
        guard: Option<Guard>,
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
        shutdown: Shutdown,
    ) -> Result<Self, DbErr> {
        let head = u64::try_from(outbox::last_position(&db).await?).unwrap_or(0);
        let bus = Self::new(db, Backend::Database, options, head);
        shutdown.spawn(Arc::clone(&bus.shared).relay_loop(shutdown.token()));
        Ok(bus)
    }

    /// JetStream as the bus: stream `<PREFIX>_EVENTS` on subjects `<prefix>.events.>`. Needs no
    /// answer from NATS to start: the relay and the consumer create the stream when it answers.
    pub fn jetstream(
        db: DatabaseConnection,
        client: async_nats::Client,
        prefix: &str,
        options: BusOptions,
        guard: Option<Guard>,
        shutdown: Shutdown,
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
            guard,
        };
        let bus = Self::new(db, backend, options, 0);
        shutdown.spawn(Arc::clone(&bus.shared).relay_loop(shutdown.token()));
        shutdown.spawn(Arc::clone(&bus.shared).consume_loop(shutdown.token()));
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
