//! `BreakerService`: the breakers as the API and Aurum's own calls use them.
//!
//! - The database holds each breaker's configuration and persisted state (forced states, the
//!   time an `OPEN` breaker entered it) and every transition. Each replica keeps a copy of
//!   the records (`cache`), kept current by the bus.
//! - With Redis, the agents' breakers are shared: every acquire and outcome is one script
//!   call (`shared.rs`), so one window, one probe budget and one state serve every replica.
//!   The replica whose call made a transition records it (row, history, event) in one
//!   transaction; the others learn it from the bus.
//! - Without Redis, or while the `redis` breaker refuses or a call fails, a replica runs the
//!   same rules in process (`local.rs`) from the last state it knew, and says so
//!   (`scope: REPLICA`); it rejoins the shared state at its next successful call.
//! - The dependency breakers (`redis`, `nats`, `docker`) are always per replica: they guard
//!   this process' own calls. Their forced states and configuration are shared.
//!
//! Here: the records and this replica's view of them, and the reads; `calls`: acquiring and
//! recording (the hot path); `manage`: transitions recorded, configuration, manual states.

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, TimeZone, Utc};
use entity::{circuit_breaker, circuit_breaker_transition};
use redis::aio::ConnectionManager;
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde_json::json;
use tokio::sync::mpsc;

use super::{
    Dependency,
    events::BreakerEvent,
    local::{CallCounters, DependencyGuard, LocalBreakers, now_ms},
    model::{BreakerView, Scope},
    rules::{Config, Metrics, State, Transition},
    shared::{Answer, Op, Persisted, Reply, SharedScript},
};
use crate::{
    clock,
    error::{AppError, AppResult},
    events::Bus,
    infra::guard::Guard,
};

mod calls;
mod manage;

use calls::shared_transition;

/// How long a Redis script may take before the replica answers from its own window.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// How long a permit's outcome may come back (and a reported permit stays marked).
pub const PERMIT_TTL_MS: u64 = 3_600_000;

/// A breaker's record and its configuration as rules.
#[derive(Clone)]
struct Entry {
    row: circuit_breaker::Model,
    config: Config,
    counters: CallCounters,
    /// The newest state known here (the record's, or a newer one from Redis).
    live: (State, u64, u64),
}

impl Entry {
    fn new(row: circuit_breaker::Model) -> Self {
        let live = (
            row.state,
            u64::try_from(row.epoch).unwrap_or(0),
            millis(row.state_since),
        );
        Self {
            config: super::model::config_of(&row),
            counters: CallCounters::new(&row.name),
            row,
            live,
        }
    }

    fn persisted(&self) -> Persisted {
        Persisted {
            state: self.live.0,
            epoch: self.live.1,
            since_ms: self.live.2,
            config_version: self.row.config_version,
        }
    }
}

fn millis(at: DateTime<Utc>) -> u64 {
    u64::try_from(at.timestamp_millis()).unwrap_or(0)
}

fn at_millis(ms: u64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(i64::try_from(ms).unwrap_or(i64::MAX))
        .single()
        .unwrap_or_else(clock::now)
}

struct Inner {
    db: DatabaseConnection,
    bus: Bus,
    replica: String,
    redis: Option<(ConnectionManager, String)>,
    script: SharedScript,
    /// The last shared call answered (false: this replica runs its own windows).
    shared_ok: AtomicBool,
    cache: RwLock<HashMap<String, Entry>>,
    local: LocalBreakers,
    guards: [Arc<DependencyGuard>; 3],
}

/// The breakers.
#[derive(Clone)]
pub struct BreakerService {
    inner: Arc<Inner>,
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A new breaker's record.
fn new_row(name: &str, dependency: bool, config: &Config, actor: &str) -> circuit_breaker::Model {
    let now = clock::now();
    let mut row = circuit_breaker::Model {
        name: name.to_owned(),
        dependency,
        window_type: config.window_type,
        window_size: 0,
        minimum_calls: 0,
        failure_rate_threshold: 0.0,
        slow_call_rate_threshold: 0.0,
        slow_call_duration_ms: 0,
        wait_in_open_ms: 0,
        half_open_calls: 0,
        max_wait_in_half_open_ms: 0,
        automatic_transition: false,
        config_version: 1,
        state: State::Closed,
        epoch: 0,
        state_since: now,
        updated_by: actor.to_owned(),
        created_at: now,
        updated_at: now,
    };
    super::model::set_config(&mut row, config);
    row
}

impl BreakerService {
    /// The guards on Aurum's own dependencies (made before the adapters that use them, and
    /// so before this service), and the receiver of their transitions (for `spawn`).
    pub fn dependency_guards() -> (
        [Arc<DependencyGuard>; 3],
        mpsc::UnboundedReceiver<(String, Transition)>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let guards = Dependency::ALL.map(|d| {
            Arc::new(DependencyGuard::new(
                d.name(),
                Dependency::DEFAULT,
                tx.clone(),
            ))
        });
        (guards, rx)
    }

    pub fn new(
        db: DatabaseConnection,
        bus: Bus,
        replica: String,
        redis: Option<(ConnectionManager, String)>,
        guards: [Arc<DependencyGuard>; 3],
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                bus,
                replica,
                shared_ok: AtomicBool::new(redis.is_some()),
                redis,
                script: SharedScript::default(),
                cache: RwLock::new(HashMap::new()),
                local: LocalBreakers::default(),
                guards,
            }),
        }
    }

    /// The guard on one of Aurum's own dependencies.
    pub fn guard(&self, dependency: Dependency) -> Guard {
        guard_of(&self.inner.guards, dependency)
    }

    fn dependency_guard(&self, name: &str) -> Option<&Arc<DependencyGuard>> {
        self.inner.guards.iter().find(|g| g.name() == name)
    }

    /// Creates the dependency breakers' records when missing, reads every record, and applies
    /// the persisted configuration and forced states to the dependency guards.
    pub async fn load(&self) -> AppResult<()> {
        for d in Dependency::ALL {
            let row = new_row(d.name(), true, &Dependency::DEFAULT, "system");
            circuit_breaker::Entity::insert(circuit_breaker::ActiveModel::from(row))
                .on_conflict(
                    sea_orm::sea_query::OnConflict::column(circuit_breaker::Column::Name)
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(&self.inner.db)
                .await?;
        }
        let rows = circuit_breaker::Entity::find().all(&self.inner.db).await?;
        for row in rows {
            self.adopt(row, true);
        }
        Ok(())
    }

    /// Reads every record again (after falling behind the bus).
    pub async fn reload(&self) -> AppResult<()> {
        let rows = circuit_breaker::Entity::find().all(&self.inner.db).await?;
        for row in rows {
            self.adopt(row, false);
        }
        Ok(())
    }

    pub fn bus(&self) -> &Bus {
        &self.inner.bus
    }

    /// Takes `row` as the newest record of its breaker (when it is), and applies it to the
    /// dependency guard of that name. `start`: the process is starting (apply even an
    /// unchanged forced state).
    fn adopt(&self, row: circuit_breaker::Model, start: bool) {
        let mut cache = write(&self.inner.cache);
        let previous = cache
            .get(&row.name)
            .map(|e| (e.row.config_version, e.row.epoch));
        if let Some((version, epoch)) = previous
            && version >= row.config_version
            && epoch >= row.epoch
        {
            return;
        }
        let entry = Entry::new(row);
        if !entry.row.dependency && previous.is_none_or(|(_, e)| e < entry.row.epoch) {
            // Every replica's gauge follows the shared state, not only the deciding one's.
            super::gauge_state(&entry.row.name, entry.row.state);
        }
        if let Some(guard) = self.dependency_guard(&entry.row.name) {
            if start || previous.is_none_or(|(v, _)| v < entry.row.config_version) {
                guard.configure(entry.config);
            }
            let manual = matches!(
                entry.row.state,
                State::ForcedOpen | State::Disabled | State::MetricsOnly
            );
            let changed = previous.is_none_or(|(_, e)| e < entry.row.epoch);
            if (start && manual) || (!start && changed) {
                guard.set(entry.row.state);
            }
        }
        if let Some(old) = cache.get(&entry.row.name)
            && old.live.1 > entry.live.1
        {
            let live = old.live;
            cache.insert(entry.row.name.clone(), Entry { live, ..entry });
            return;
        }
        cache.insert(entry.row.name.clone(), entry);
    }

    /// Breaker `name`'s record as this replica knows it. A name the copy lacks is read from
    /// the database before it is called unknown: a breaker configured on another replica a
    /// moment ago may not have reached this one over the bus yet, and an agent that was
    /// told "configured" must not hear "not found" from the next replica it reaches.
    async fn entry(&self, name: &str) -> AppResult<Entry> {
        if let Some(e) = read(&self.inner.cache).get(name) {
            return Ok(e.clone());
        }
        let row = circuit_breaker::Entity::find_by_id(name.to_owned())
            .one(&self.inner.db)
            .await?
            .ok_or_else(|| AppError::not_found("CircuitBreaker", name))?;
        self.adopt(row, false);
        read(&self.inner.cache)
            .get(name)
            .cloned()
            .ok_or_else(|| AppError::not_found("CircuitBreaker", name))
    }

    /// Whether this replica's agent breakers are shared right now.
    pub fn scope(&self) -> Scope {
        if self.inner.redis.is_some() && self.inner.shared_ok.load(Ordering::Acquire) {
            Scope::Shared
        } else {
            Scope::Replica
        }
    }

    /// For `/ready`: where the breakers' windows are kept, and why.
    pub fn readiness(&self) -> serde_json::Value {
        match (&self.inner.redis, self.scope()) {
            (None, _) => {
                json!({ "status": "ok", "scope": "replica", "reason": "no Redis configured: this replica's own windows" })
            }
            (Some(_), Scope::Shared) => json!({ "status": "ok", "scope": "shared" }),
            (Some(_), Scope::Replica) => {
                json!({ "status": "degraded", "scope": "replica", "reason": "Redis does not answer: each replica decides on its own window until it does" })
            }
        }
    }

    /// Breaker `name` as it is now.
    pub async fn view(&self, name: &str) -> AppResult<BreakerView> {
        let entry = self.entry(name).await?;
        if let Some(guard) = self.dependency_guard(name) {
            let (state, epoch, since_ms, config, metrics) = guard.view();
            return Ok(BreakerView {
                row: entry.row,
                config,
                state,
                epoch,
                since_ms,
                metrics,
                scope: Scope::Replica,
            });
        }
        let (state, epoch, since_ms, metrics, transition, scope) =
            match self.shared(&entry, Op::Snapshot).await {
                Some(Answer::Done(reply)) => {
                    self.note_live(name, &reply);
                    let t = reply.transition.map(|(from, cause, counts)| {
                        shared_transition(&entry.config, &reply, from, cause, counts)
                    });
                    (
                        reply.state,
                        reply.epoch,
                        reply.since_ms,
                        shared_metrics(&entry.config, &reply),
                        t,
                        Scope::Shared,
                    )
                }
                _ => self.inner.local.with(name, entry.live, |m| {
                    let now = now_ms();
                    let t = m.tick(&entry.config, now);
                    let metrics = m.metrics(&entry.config, now);
                    (m.state, m.epoch, m.since_ms, metrics, t, Scope::Replica)
                }),
            };
        if let Some(t) = transition {
            self.persist(name, t).await;
        }
        Ok(BreakerView {
            row: entry.row,
            config: entry.config,
            state,
            epoch,
            since_ms,
            metrics,
            scope,
        })
    }

    /// Every breaker's name, in order (`after`: the last name seen).
    pub fn names(&self, after: Option<&str>, first: usize) -> (Vec<String>, bool) {
        let cache = read(&self.inner.cache);
        let mut names: Vec<&String> = cache
            .keys()
            .filter(|n| after.is_none_or(|a| n.as_str() > a))
            .collect();
        names.sort();
        let more = names.len() > first;
        (names.into_iter().take(first).cloned().collect(), more)
    }

    /// Breaker `name`'s configuration as recorded (`None`: no such breaker).
    pub fn configuration(&self, name: &str) -> Option<Config> {
        read(&self.inner.cache).get(name).map(|e| e.config)
    }

    pub fn count(&self) -> usize {
        read(&self.inner.cache).len()
    }

    /// Breaker `name`'s transitions, newest first (`after`: the last id seen).
    pub async fn transitions(
        &self,
        name: &str,
        after: Option<i64>,
        first: u64,
    ) -> AppResult<(Vec<circuit_breaker_transition::Model>, bool)> {
        self.entry(name).await?;
        let mut select = circuit_breaker_transition::Entity::find()
            .filter(circuit_breaker_transition::Column::Name.eq(name))
            .order_by_desc(circuit_breaker_transition::Column::Id)
            .limit(first + 1);
        if let Some(after) = after {
            select = select.filter(circuit_breaker_transition::Column::Id.lt(after));
        }
        let mut rows = select.all(&self.inner.db).await?;
        let more = rows.len() as u64 > first;
        rows.truncate(usize::try_from(first).unwrap_or(usize::MAX));
        Ok((rows, more))
    }

    /// How many transitions the breaker `name` has recorded.
    pub async fn count_transitions(&self, name: &str) -> AppResult<u64> {
        self.entry(name).await?;
        Ok(circuit_breaker_transition::Entity::find()
            .filter(circuit_breaker_transition::Column::Name.eq(name))
            .count(&self.inner.db)
            .await?)
    }

    /// Applies a breaker event from the bus (any replica's, this one's included).
    pub fn apply(&self, event: &BreakerEvent) {
        self.adopt(event.breaker.clone(), false);
    }

    /// Time's transitions for the breakers that have them (automatic `OPEN` → `HALF_OPEN`,
    /// `HALF_OPEN` timeouts), so they happen when due even with no call.
    pub async fn tick(&self) {
        for guard in &self.inner.guards {
            guard.tick();
        }
        let due: Vec<Entry> = read(&self.inner.cache)
            .values()
            .filter(|e| !e.row.dependency)
            .filter(|e| {
                let (state, _, since) = e.live;
                let now = now_ms();
                (state == State::Open
                    && e.config.automatic_transition
                    && now >= since.saturating_add(e.config.wait_in_open_ms))
                    || (state == State::HalfOpen
                        && e.config.max_wait_in_half_open_ms > 0
                        && now >= since.saturating_add(e.config.max_wait_in_half_open_ms))
            })
            .cloned()
            .collect();
        for e in due {
            if let Err(err) = self.view(&e.row.name).await {
                tracing::warn!(error = ?err, breaker = %e.row.name, "breaker tick failed");
            }
        }
    }
}

/// `dependency`'s guard out of the array `dependency_guards` made.
pub fn guard_of(guards: &[Arc<DependencyGuard>; 3], dependency: Dependency) -> Guard {
    Arc::clone(&guards[dependency as usize]) as Guard
}

fn shared_metrics(config: &Config, reply: &Reply) -> Metrics {
    let (counts, min) = if reply.state == State::HalfOpen {
        (reply.probes, config.half_open_calls)
    } else {
        (reply.window, config.min_calls())
    };
    let rates = counts.rates(min);
    Metrics {
        counts,
        failure_rate: rates.map(|r| r.0),
        slow_call_rate: rates.map(|r| r.1),
        not_permitted: reply.not_permitted,
        probes_issued: reply.probes_issued,
        remaining_open_ms: if reply.state == State::Open {
            (reply.since_ms + config.wait_in_open_ms).saturating_sub(reply.now_ms)
        } else {
            0
        },
    }
}
