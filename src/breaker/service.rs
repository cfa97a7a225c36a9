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
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, sea_query::Expr,
};
use serde_json::json;
use tokio::sync::mpsc;

use super::{
    Dependency,
    events::{BreakerEvent, BreakerEventKind},
    local::{CallCounters, DependencyGuard, LocalBreakers, now_ms},
    model::{BreakerView, Grant, PermitId, Recorded, Scope},
    rules::{Cause, Config, Counts, Decision, Metrics, Outcome, State, Transition},
    shared::{Answer, Op, Persisted, Reply, SharedScript},
};
use crate::{
    audit::{self, AuditEntry},
    auth::RequestMeta,
    clock,
    error::{AppError, AppResult},
    events::{Bus, DomainEvent},
    infra::{
        db,
        guard::{CallGuard, Guard},
        outbox,
    },
};

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

    fn entry(&self, name: &str) -> AppResult<Entry> {
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

    /// Runs `op` on the shared state of `entry`; `None` when it cannot (no Redis, the
    /// `redis` breaker refuses, the call fails): the caller falls back to its own window.
    async fn shared(&self, entry: &Entry, op: Op<'_>) -> Option<Answer> {
        let (conn, prefix) = self.inner.redis.as_ref()?;
        let guard = &self.inner.guards[Dependency::Redis as usize];
        let Ok(ticket) = guard.admit() else {
            self.set_shared(false);
            return None;
        };
        let started = std::time::Instant::now();
        let mut conn = conn.clone();
        let call = self.inner.script.call(
            &mut conn,
            prefix,
            &entry.row.name,
            &entry.config,
            entry.persisted(),
            op,
            0,
        );
        let result = tokio::time::timeout(REDIS_TIMEOUT, call).await;
        let answered = matches!(result, Ok(Ok(_)));
        guard.report(ticket, answered, started.elapsed());
        self.set_shared(answered);
        match result {
            Ok(Ok(answer)) => Some(answer),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, breaker = %entry.row.name, "shared breaker call failed; deciding locally");
                None
            }
            Err(_) => None,
        }
    }

    fn set_shared(&self, ok: bool) {
        let was = self.inner.shared_ok.swap(ok, Ordering::AcqRel);
        if was != ok {
            if ok {
                tracing::info!("Redis answers again: circuit breakers are shared");
                self.inner.local.forget();
            } else {
                tracing::warn!(
                    "Redis does not answer: circuit breakers decide on this replica's own windows"
                );
            }
            metrics::gauge!("aurum_circuit_breaker_shared").set(if ok { 1.0 } else { 0.0 });
        }
    }

    /// Notes a newer live state learned from Redis.
    fn note_live(&self, name: &str, reply: &Reply) {
        let mut cache = write(&self.inner.cache);
        if let Some(e) = cache.get_mut(name)
            && reply.epoch > e.live.1
        {
            e.live = (reply.state, reply.epoch, reply.since_ms);
        }
    }

    /// Asks to make a call through breaker `name`.
    pub async fn acquire(&self, name: &str) -> AppResult<Grant> {
        let entry = self.entry(name)?;
        if entry.row.dependency {
            return Err(AppError::bad_field(
                "name",
                format!("`{name}` guards Aurum's own calls; agents use breakers of their own"),
            ));
        }
        let random = uuid::Uuid::new_v4().simple().to_string();
        let acquired_ms = now_ms();
        let permit_for = |epoch: u64| PermitId {
            name: name.to_owned(),
            epoch,
            acquired_ms,
            random: random.clone(),
        };
        // The epoch is not known before the script runs, so the shared permit's key is its
        // random part alone; the id handed out names breaker and epoch as well.
        let shared = self
            .shared(
                &entry,
                Op::Acquire {
                    permit: &random,
                    ttl_ms: PERMIT_TTL_MS,
                },
            )
            .await;
        let (decision, state, transition) = match shared {
            Some(Answer::Done(reply)) => {
                self.note_live(name, &reply);
                let decision = if reply.permitted {
                    Decision::Permitted { epoch: reply.epoch }
                } else {
                    Decision::Refused {
                        retry_after_ms: reply.retry_after_ms,
                    }
                };
                let t = reply.transition.map(|(from, cause, counts)| {
                    shared_transition(&entry.config, &reply, from, cause, counts)
                });
                (decision, reply.state, t)
            }
            _ => {
                let (decision, t, state) = self.inner.local.with(name, entry.live, |m| {
                    let (d, t) = m.acquire(&entry.config, now_ms());
                    (d, t, m.state)
                });
                if let Decision::Permitted { .. } = decision {
                    self.inner.local.issue(&random, PERMIT_TTL_MS);
                }
                (decision, state, t)
            }
        };
        if let Some(t) = transition {
            self.persist(name, t).await;
        }
        Ok(match decision {
            Decision::Permitted { epoch } => Grant {
                permit: Some(permit_for(epoch)),
                state,
                retry_after_ms: 0,
            },
            Decision::Refused { retry_after_ms } => {
                entry.counters.refused();
                Grant {
                    permit: None,
                    state,
                    retry_after_ms,
                }
            }
        })
    }

    /// Reports the outcome of a permitted call, once.
    pub async fn record(
        &self,
        permit: &PermitId,
        outcome: Outcome,
        duration_ms: Option<u64>,
    ) -> AppResult<Recorded> {
        let entry = self.entry(&permit.name).map_err(|_| unknown_permit())?;
        let duration_ms =
            duration_ms.unwrap_or_else(|| now_ms().saturating_sub(permit.acquired_ms));
        let code = match outcome {
            Outcome::Success => 'S',
            Outcome::Failure => 'F',
            Outcome::Ignored => 'I',
        };
        // A permit issued here (while Redis was away) is decided here; any other is the
        // shared store's, unless Redis does not answer: then it is accepted once here, as
        // far as its id shows it could be real.
        match self.inner.local.report(&permit.random) {
            Some(false) => return Err(AppError::PermitAlreadyRecorded),
            Some(true) => {}
            None => match self
                .shared(
                    &entry,
                    Op::Record {
                        permit: &permit.random,
                        outcome: code,
                        duration_ms,
                    },
                )
                .await
            {
                Some(Answer::UnknownPermit) => return Err(unknown_permit()),
                Some(Answer::PermitUsed) => return Err(AppError::PermitAlreadyRecorded),
                Some(Answer::Done(reply)) => {
                    self.note_live(&permit.name, &reply);
                    let t = reply.transition.map(|(from, cause, counts)| {
                        shared_transition(&entry.config, &reply, from, cause, counts)
                    });
                    entry.counters.outcome(outcome);
                    if let Some(t) = t {
                        self.persist(&permit.name, t).await;
                    }
                    return Ok(Recorded {
                        counted: reply.counted,
                        state: reply.state,
                    });
                }
                None => {
                    let now = now_ms();
                    if permit.acquired_ms.saturating_add(PERMIT_TTL_MS) <= now {
                        return Err(unknown_permit());
                    }
                    self.inner.local.mark_used(&permit.random, PERMIT_TTL_MS);
                }
            },
        }
        let (counted, state, transition) = self.inner.local.with(&permit.name, entry.live, |m| {
            let (counted, t) =
                m.record(&entry.config, permit.epoch, outcome, duration_ms, now_ms());
            (counted, m.state, t)
        });
        entry.counters.outcome(outcome);
        if let Some(t) = transition {
            self.persist(&permit.name, t).await;
        }
        Ok(Recorded { counted, state })
    }

    /// Records a transition this replica decided: the record (shared breakers: state and
    /// epoch, when newer), the history row and the event, in one transaction. A failure is
    /// logged: the shared state in Redis stays the truth, and the next transition records
    /// again.
    async fn persist(&self, name: &str, t: Transition) {
        if let Err(e) = self.write_transition(name, t, None).await {
            tracing::error!(error = ?e, breaker = name, "recording a breaker transition failed");
        }
    }

    async fn write_transition(
        &self,
        name: &str,
        t: Transition,
        manual: Option<(&RequestMeta, &str)>,
    ) -> AppResult<circuit_breaker::Model> {
        let entry = self.entry(name)?;
        let at = at_millis(t.at_ms);
        let epoch = i64::try_from(t.epoch).unwrap_or(i64::MAX);
        let txn = db::begin_write(&self.inner.db).await?;
        // A dependency breaker's own transitions are this replica's: the record keeps the
        // shared (manual) state. Everything else moves the record forward, never back.
        if !entry.row.dependency || manual.is_some() {
            circuit_breaker::Entity::update_many()
                .col_expr(circuit_breaker::Column::State, Expr::value(t.to))
                .col_expr(circuit_breaker::Column::Epoch, Expr::value(epoch))
                .col_expr(circuit_breaker::Column::StateSince, Expr::value(at))
                .col_expr(
                    circuit_breaker::Column::UpdatedAt,
                    Expr::value(clock::now()),
                )
                .filter(circuit_breaker::Column::Name.eq(name))
                .filter(circuit_breaker::Column::Epoch.lt(epoch))
                .exec(&txn)
                .await?;
        }
        let row = circuit_breaker::Entity::find_by_id(name.to_owned())
            .one(&txn)
            .await?
            .ok_or_else(|| AppError::not_found("CircuitBreaker", name))?;
        let history = circuit_breaker_transition::ActiveModel {
            id: sea_orm::NotSet,
            name: Set(name.to_owned()),
            epoch: Set(epoch),
            from_state: Set(t.from),
            to_state: Set(t.to),
            cause: Set(t.cause),
            failure_rate: Set(t.rates.map(|r| r.0)),
            slow_call_rate: Set(t.rates.map(|r| r.1)),
            actor: Set(manual.map(|(meta, _)| meta.caller.audit_label())),
            reason: Set(manual.map(|(_, reason)| reason.to_owned())),
            replica: Set(self.inner.replica.clone()),
            at: Set(at),
        };
        let history = circuit_breaker_transition::Entity::insert(history)
            .exec_with_returning(&txn)
            .await?;
        if let Some((meta, reason)) = manual {
            audit::record(
                &txn,
                meta,
                AuditEntry {
                    action: "breaker.transition",
                    entity_type: "circuit_breaker",
                    entity_id: Some(name.to_owned()),
                    tenant_id: None,
                    details: json!({ "from": t.from, "to": t.to, "epoch": epoch, "reason": reason }),
                },
            )
            .await?;
        }
        outbox::append(
            &txn,
            &DomainEvent::Breaker(BreakerEvent {
                kind: BreakerEventKind::Transitioned,
                breaker: row.clone(),
                transition: Some(history),
            }),
        )
        .await?;
        txn.commit().await?;
        self.inner.bus.wake();
        if !entry.row.dependency {
            super::gauge_state(name, t.to);
        }
        tracing::info!(breaker = name, from = ?t.from, to = ?t.to, cause = ?t.cause, epoch, "circuit breaker transition");
        self.adopt(row.clone(), false);
        Ok(row)
    }

    /// Records the dependency guards' transitions as they come (until `shutdown`).
    pub async fn record_dependency_transitions(
        &self,
        mut rx: mpsc::UnboundedReceiver<(String, Transition)>,
    ) {
        while let Some((name, t)) = rx.recv().await {
            self.persist(&name, t).await;
        }
    }

    /// Breaker `name` as it is now.
    pub async fn view(&self, name: &str) -> AppResult<BreakerView> {
        let entry = self.entry(name)?;
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

    pub fn count(&self) -> usize {
        read(&self.inner.cache).len()
    }

    /// Creates breaker `name` or changes its configuration; the window starts again, the
    /// state stays. Audited with the reason.
    pub async fn configure(
        &self,
        meta: &RequestMeta,
        name: &str,
        config: Config,
        reason: &str,
    ) -> AppResult<BreakerView> {
        super::model::check_name(name)?;
        let reason = super::model::check_reason(reason)?;
        manageable(meta)?;
        if let Some((field, message)) = config.problem() {
            return Err(AppError::bad_field(field, message));
        }
        let actor = meta.caller.audit_label();
        let txn = db::begin_write(&self.inner.db).await?;
        let existing = circuit_breaker::Entity::find_by_id(name.to_owned())
            .lock_exclusive()
            .one(&txn)
            .await?;
        let created = existing.is_none();
        let row = match existing {
            None => {
                let row = new_row(name, false, &config, &actor);
                circuit_breaker::Entity::insert(circuit_breaker::ActiveModel::from(row.clone()))
                    .exec_without_returning(&txn)
                    .await?;
                row
            }
            Some(mut row) => {
                super::model::set_config(&mut row, &config);
                row.config_version += 1;
                row.updated_by = actor;
                row.updated_at = clock::now();
                circuit_breaker::Entity::update(
                    circuit_breaker::ActiveModel::from(row.clone()).reset_all(),
                )
                .exec(&txn)
                .await?;
                row
            }
        };
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: if created { "breaker.create" } else { "breaker.configure" },
                entity_type: "circuit_breaker",
                entity_id: Some(name.to_owned()),
                tenant_id: None,
                details: json!({ "configuration": super::model::config_json(&config), "reason": reason }),
            },
        )
        .await?;
        outbox::append(
            &txn,
            &DomainEvent::Breaker(BreakerEvent {
                kind: BreakerEventKind::Configured,
                breaker: row.clone(),
                transition: None,
            }),
        )
        .await?;
        txn.commit().await?;
        self.inner.bus.wake();
        if created && !row.dependency {
            super::gauge_state(name, State::Closed);
        }
        self.adopt(row, false);
        self.view(name).await
    }

    /// A person's change of state: `FORCED_OPEN`, `DISABLED`, `METRICS_ONLY` or `CLOSED`
    /// (reset: the window starts again). Audited with the reason.
    pub async fn set_state(
        &self,
        meta: &RequestMeta,
        name: &str,
        to: State,
        reason: &str,
    ) -> AppResult<BreakerView> {
        let reason = super::model::check_reason(reason)?;
        manageable(meta)?;
        let entry = self.entry(name)?;
        let transition = if let Some(guard) = self.dependency_guard(name) {
            let mut t = guard.set(to);
            // The record's epoch moves on from the record's own, not the guard's.
            t.epoch = t.epoch.max(entry.live.1 + 1);
            t
        } else {
            match self.shared(&entry, Op::Set(to)).await {
                Some(Answer::Done(reply)) => {
                    self.note_live(name, &reply);
                    Transition {
                        from: reply.transition.map_or(entry.live.0, |t| t.0),
                        to,
                        epoch: reply.epoch,
                        at_ms: reply.now_ms,
                        cause: Cause::Manual,
                        rates: None,
                    }
                }
                _ => self
                    .inner
                    .local
                    .with(name, entry.live, |m| m.set(to, now_ms())),
            }
        };
        self.write_transition(name, transition, Some((meta, &reason)))
            .await?;
        self.view(name).await
    }

    /// Resets every agent breaker (the prototype's endpoint); returns how many.
    pub async fn reset_all(&self, meta: &RequestMeta, reason: &str) -> AppResult<u64> {
        super::model::check_reason(reason)?;
        manageable(meta)?;
        let names: Vec<String> = read(&self.inner.cache).keys().cloned().collect();
        let mut n = 0;
        for name in names {
            self.set_state(meta, &name, State::Closed, reason).await?;
            n += 1;
        }
        Ok(n)
    }

    /// Breaker `name`'s transitions, newest first (`after`: the last id seen).
    pub async fn transitions(
        &self,
        name: &str,
        after: Option<i64>,
        first: u64,
    ) -> AppResult<(Vec<circuit_breaker_transition::Model>, bool)> {
        self.entry(name)?;
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

fn unknown_permit() -> AppError {
    AppError::not_found("CircuitBreakerPermit", "(the permit given)")
}

/// Breakers are the fleet's, not a tenant's: a tenant-scoped caller may not change them.
fn manageable(meta: &RequestMeta) -> AppResult<()> {
    if meta.caller.tenant().is_some() {
        return Err(AppError::Forbidden);
    }
    Ok(())
}

fn shared_transition(
    config: &Config,
    reply: &Reply,
    from: State,
    cause: Cause,
    counts: Counts,
) -> Transition {
    let min = if from == State::HalfOpen {
        config.half_open_calls
    } else {
        config.min_calls()
    };
    Transition {
        from,
        to: reply.state,
        epoch: reply.epoch,
        at_ms: reply.now_ms,
        cause,
        rates: counts.rates(min),
    }
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
