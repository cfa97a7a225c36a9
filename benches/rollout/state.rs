//! What the load's clients and the subscribers record as they run, shared with the phase
//! orchestration: samples, failures and effects of the HTTP clients, reconnects and events of
//! the subscribers, the current phase and the tokens that stop them.

use std::{
    collections::BTreeMap,
    sync::{
        Mutex,
        atomic::{AtomicU8, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;

pub(crate) struct Sample {
    pub(crate) phase: u8,
    pub(crate) latency: Duration,
}

/// A client-visible failure: a transport error or a 5xx from the balancer.
pub(crate) struct Failure {
    pub(crate) phase: u8,
    pub(crate) at: Instant,
    pub(crate) what: String,
}

#[derive(Default)]
pub(crate) struct HttpLog {
    pub(crate) samples: Vec<Sample>,
    pub(crate) failures: Vec<Failure>,
    /// `IDEMPOTENCY_IN_PROGRESS` answers (a retry overtaking its first attempt): sent again.
    pub(crate) in_progress: u64,
    /// Answers with an unexpected error, and requests abandoned.
    pub(crate) errors: Vec<String>,
    /// Request ids answered without error, with the ledger kind of their effect.
    pub(crate) done: Vec<(String, &'static str)>,
    /// Request ids answered after at least one client-visible failure, by phase.
    pub(crate) retried: Vec<(u8, String)>,
    /// Tokens committed per project.
    pub(crate) committed: BTreeMap<String, i64>,
}

pub(crate) struct Reconnect {
    pub(crate) phase: u8,
    /// From the disconnect to `connection_ack` and the subscription sent again.
    pub(crate) resubscribed: Duration,
}

#[derive(Default)]
pub(crate) struct SubLog {
    pub(crate) reconnects: Vec<Reconnect>,
    /// From subscribing again to the first event of the new subscription (with `after`: a
    /// replay from the event stream first).
    pub(crate) first_events: Vec<(u8, Duration)>,
    /// (phase, how the socket ended) → count.
    pub(crate) closes: BTreeMap<(u8, String), u64>,
    pub(crate) connect_failures: BTreeMap<String, u64>,
    pub(crate) lagged: u64,
    pub(crate) errors: Vec<String>,
    pub(crate) events: u64,
    /// Events whose cursor was not after the previous one (a replay overlapping).
    pub(crate) repeated: u64,
    /// Subscribers whose last subscription had delivered no event when they stopped.
    pub(crate) deaf_at_end: u64,
    /// Subscribers that never connected.
    pub(crate) never_connected: u64,
}

pub(crate) struct Shared {
    /// The phase now (an index of `PHASES`).
    phase: AtomicU8,
    pub(crate) http: Mutex<HttpLog>,
    pub(crate) subs: Mutex<SubLog>,
    pub(crate) live_subs: AtomicUsize,
    pub(crate) stop_http: CancellationToken,
    pub(crate) stop_subs: CancellationToken,
}

impl Shared {
    /// Empty logs, starting in `phase`.
    pub(crate) fn new(phase: u8) -> Self {
        Self {
            phase: AtomicU8::new(phase),
            http: Mutex::new(HttpLog::default()),
            subs: Mutex::new(SubLog::default()),
            live_subs: AtomicUsize::new(0),
            stop_http: CancellationToken::new(),
            stop_subs: CancellationToken::new(),
        }
    }

    pub(crate) fn phase(&self) -> u8 {
        self.phase.load(Ordering::Relaxed)
    }

    pub(crate) fn set_phase(&self, phase: u8) {
        self.phase.store(phase, Ordering::Relaxed);
    }
}
