//! `SandboxService`: sandbox runs in the database. Starting queues a run (idempotent by
//! `requestId`), cancelling dequeues it or asks its replica to kill it, and the runner's side
//! (claim, output, lease, finish) moves it on; every change writes its event into the outbox in
//! the same transaction. No Docker here: `runner` owns the containers.

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use entity::{
    sandbox_output::{self, OutputStream},
    sandbox_run::{self, SandboxStatus},
    task,
};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait,
    DatabaseConnection, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use serde_json::json;
use uuid::Uuid;

use super::{
    config::SandboxConfig,
    events::{Chunk, SandboxEvent, SandboxEventKind},
    model::{Limits, RequestedLimits, resolve_limits},
};
use crate::{
    audit::{self, AuditEntry},
    auth::RequestMeta,
    clock,
    error::{AppError, AppResult},
    events::{Bus, DomainEvent},
    idempotency,
    infra::db::{self, tenant_condition},
    pagination::{Page, PageRequest, keyset_page_newest_first},
};

/// Largest chunk stored (and carried by one event); replay looks this far back for the chunk
/// that holds an offset.
pub const MAX_CHUNK: usize = 16 * 1024;

/// A run to queue.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub language: String,
    pub code: String,
    pub stdin: Option<String>,
    pub limits: RequestedLimits,
    pub request_id: String,
    pub task_id: Option<Uuid>,
}

/// Filter of `sandboxRuns`.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub status: Option<SandboxStatus>,
    pub language: Option<String>,
    pub task_id: Option<Uuid>,
}

/// How a run ended, as the runner reports it.
#[derive(Debug, Clone)]
pub struct Finished {
    pub status: SandboxStatus,
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    pub error: Option<String>,
    pub peak_memory_bytes: Option<i64>,
}

/// Byte counts of a run's streams so far (past the cap too).
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub stdout: i64,
    pub stderr: i64,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
}

/// Whether runs can start here: Docker reachable, the runtime registered, every language's
/// image present. Checked at start-up and again by the runner.
#[derive(Debug, Clone)]
pub enum Availability {
    Ready,
    /// Nothing can run (no engine, unknown runtime): why.
    Unavailable(String),
    /// Some languages cannot run: (language, why).
    Partial(Vec<(String, String)>),
}

#[derive(Clone)]
pub struct SandboxService {
    db: DatabaseConnection,
    bus: Bus,
    config: Arc<SandboxConfig>,
    availability: Arc<RwLock<Availability>>,
    /// Woken when this replica queues a run (other replicas learn it from the `Queued` event).
    wake: Arc<tokio::sync::Notify>,
}

impl SandboxService {
    pub fn new(db: DatabaseConnection, bus: Bus, config: SandboxConfig) -> Self {
        Self {
            db,
            bus,
            config: Arc::new(config),
            availability: Arc::new(RwLock::new(Availability::Unavailable(
                "the sandbox has not checked Docker yet".into(),
            ))),
            wake: Arc::new(tokio::sync::Notify::new()),
        }
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    pub fn wake_handle(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.wake)
    }

    pub fn availability(&self) -> Availability {
        self.availability
            .read()
            .map(|a| a.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    pub fn set_availability(&self, availability: Availability) {
        match self.availability.write() {
            Ok(mut a) => *a = availability,
            Err(p) => *p.into_inner() = availability,
        }
    }

    /// The configured languages that can run now.
    pub fn runnable(&self) -> Vec<String> {
        let availability = self.availability();
        self.config
            .languages
            .0
            .iter()
            .map(|l| l.name.clone())
            .filter(|name| match &availability {
                Availability::Ready => true,
                Availability::Unavailable(_) => false,
                Availability::Partial(missing) => missing.iter().all(|(l, _)| l != name),
            })
            .collect()
    }

    /// Why `language` cannot run now, if it cannot.
    fn unavailable(&self, language: &str) -> Option<String> {
        match self.availability() {
            Availability::Ready => None,
            Availability::Unavailable(why) => Some(why),
            Availability::Partial(missing) => missing
                .into_iter()
                .find(|(l, _)| l == language)
                .map(|(_, why)| why),
        }
    }

    /// Queues a run. Idempotent by `requestId`: a retry answers the same run as it stands.
    pub async fn start(&self, meta: &RequestMeta, input: NewRun) -> AppResult<sandbox_run::Model> {
        let config = &self.config;
        if config.languages.get(&input.language).is_none() {
            return Err(AppError::bad_field(
                "language",
                format!(
                    "unknown language `{}`; this server runs {}",
                    input.language,
                    config.languages.names().join(", ")
                ),
            ));
        }
        if input.code.is_empty() {
            return Err(AppError::bad_field("code", "code must not be empty"));
        }
        if input.code.len() as u64 > config.max_code_bytes {
            return Err(AppError::bad_field(
                "code",
                format!(
                    "code is {} bytes; this server accepts at most {}",
                    input.code.len(),
                    config.max_code_bytes
                ),
            ));
        }
        let stdin_len = input.stdin.as_ref().map_or(0, String::len) as u64;
        if stdin_len > config.max_stdin_bytes {
            return Err(AppError::bad_field(
                "stdin",
                format!(
                    "stdin is {stdin_len} bytes; this server accepts at most {}",
                    config.max_stdin_bytes
                ),
            ));
        }
        let limits = resolve_limits(input.limits, config)?;
        let key = idempotency::Key::new(
            &meta.caller,
            &input.request_id,
            "startSandboxRun",
            &json!([
                input.language,
                input.code,
                input.stdin,
                [
                    limits.memory_mb,
                    limits.timeout_ms,
                    limits.pids,
                    limits.output_bytes
                ],
                limits.cpus,
                input.task_id
            ]),
        )?;
        let now = clock::now();
        let txn = db::begin_write(&self.db).await?;
        if let Some(previous) = idempotency::claim::<Uuid>(&txn, &key, None, now).await? {
            drop(txn);
            return self.get(meta.caller.tenant(), previous).await;
        }
        // After the replay: a retry of a run already queued gets it even while the engine is
        // away; a new run is refused rather than queued for a language that cannot run.
        if let Some(why) = self.unavailable(&input.language) {
            return Err(AppError::SandboxUnavailable(why));
        }
        let tenant = meta.caller.tenant().map(str::to_owned);
        if let Some(task_id) = input.task_id {
            let visible = task::Entity::find_by_id(task_id)
                .filter(tenant_condition(task::Column::TenantId, tenant.as_deref()))
                .one(&txn)
                .await?;
            if visible.is_none() {
                return Err(AppError::not_found("task", task_id));
            }
        }
        let run = new_row(Uuid::now_v7(), tenant, &input, limits, meta, now);
        sandbox_run::Entity::insert(sandbox_run::ActiveModel::from(run.clone()))
            .exec_without_returning(&txn)
            .await?;
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: "sandbox.start",
                entity_type: "sandbox_run",
                entity_id: Some(run.id.to_string()),
                tenant_id: run.tenant_id.as_deref(),
                details: json!({
                    "language": run.language,
                    "codeBytes": run.code.len(),
                    "stdinBytes": stdin_len,
                    "limits": {
                        "memoryMb": limits.memory_mb, "cpus": limits.cpus, "timeoutMs": limits.timeout_ms,
                        "pids": limits.pids, "outputBytes": limits.output_bytes,
                    },
                    "taskId": run.task_id,
                }),
            },
        )
        .await?;
        self.announce(&txn, SandboxEventKind::Queued, &run, None)
            .await?;
        idempotency::store(&txn, &key, &run.id).await?;
        txn.commit().await?;
        self.bus.wake();
        self.wake.notify_one();
        metrics::counter!("aurum_sandbox_runs_queued_total").increment(1);
        Ok(run)
    }

    async fn announce(
        &self,
        txn: &DatabaseTransaction,
        kind: SandboxEventKind,
        run: &sandbox_run::Model,
        chunk: Option<Chunk>,
    ) -> AppResult<()> {
        self.bus
            .append(
                txn,
                &DomainEvent::Sandbox(SandboxEvent {
                    kind,
                    run_id: run.id,
                    tenant_id: run.tenant_id.clone(),
                    status: run.status,
                    stored_bytes: run.stored_bytes,
                    replica: run.replica.clone(),
                    chunk,
                }),
            )
            .await?;
        Ok(())
    }

    /// One run the caller may see.
    pub async fn get(&self, tenant: Option<&str>, id: Uuid) -> AppResult<sandbox_run::Model> {
        sandbox_run::Entity::find_by_id(id)
            .filter(tenant_condition(sandbox_run::Column::TenantId, tenant))
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::not_found("sandbox run", id))
    }

    fn condition(tenant: Option<&str>, filter: &RunFilter) -> Condition {
        let mut c = tenant_condition(sandbox_run::Column::TenantId, tenant);
        if let Some(s) = filter.status {
            c = c.add(sandbox_run::Column::Status.eq(s));
        }
        if let Some(l) = &filter.language {
            c = c.add(sandbox_run::Column::Language.eq(l.clone()));
        }
        if let Some(t) = filter.task_id {
            c = c.add(sandbox_run::Column::TaskId.eq(t));
        }
        c
    }

    /// Runs, newest first.
    pub async fn list(
        &self,
        tenant: Option<&str>,
        filter: &RunFilter,
        page: PageRequest,
    ) -> AppResult<Page<sandbox_run::Model>> {
        let select = sandbox_run::Entity::find().filter(Self::condition(tenant, filter));
        Ok(keyset_page_newest_first(select, sandbox_run::Column::Id, page, &self.db).await?)
    }

    pub async fn count(&self, tenant: Option<&str>, filter: &RunFilter) -> AppResult<u64> {
        Ok(sandbox_run::Entity::find()
            .filter(Self::condition(tenant, filter))
            .count(&self.db)
            .await?)
    }

    /// Cancels a run, once: a queued run is `CANCELLED` at once; a running one is marked and
    /// its replica kills the container (the run then ends `CANCELLED`). A second cancel, or a
    /// cancel of an ended run, is `CONFLICT`.
    pub async fn cancel(&self, meta: &RequestMeta, id: Uuid) -> AppResult<sandbox_run::Model> {
        let now = clock::now();
        let txn = db::begin_write(&self.db).await?;
        let run = db::for_update(
            sandbox_run::Entity::find_by_id(id).filter(tenant_condition(
                sandbox_run::Column::TenantId,
                meta.caller.tenant(),
            )),
            &txn,
        )
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("sandbox run", id))?;
        let (updated, kind) = match run.status {
            SandboxStatus::Queued => {
                let mut r = run.clone();
                r.status = SandboxStatus::Cancelled;
                r.cancel_requested = true;
                r.finished_at = Some(now);
                (r, SandboxEventKind::Finished)
            }
            SandboxStatus::Running if !run.cancel_requested => {
                let mut r = run.clone();
                r.cancel_requested = true;
                (r, SandboxEventKind::CancelRequested)
            }
            SandboxStatus::Running => {
                return Err(AppError::Conflict(
                    "the run is already being cancelled".into(),
                ));
            }
            ended => {
                return Err(AppError::Conflict(format!(
                    "the run already ended ({})",
                    status_name(ended)
                )));
            }
        };
        save(&txn, &updated).await?;
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: "sandbox.cancel",
                entity_type: "sandbox_run",
                entity_id: Some(id.to_string()),
                tenant_id: run.tenant_id.as_deref(),
                details: json!({ "status": status_name(run.status) }),
            },
        )
        .await?;
        self.announce(&txn, kind, &updated, None).await?;
        txn.commit().await?;
        self.bus.wake();
        if kind == SandboxEventKind::Finished {
            super::runner::count_outcome(SandboxStatus::Cancelled);
        }
        Ok(updated)
    }

    /// Stored chunks of `run` that hold bytes at or after `from`, in order, at most `limit`.
    pub async fn chunks(
        &self,
        run: Uuid,
        from: i64,
        limit: u64,
    ) -> AppResult<Vec<sandbox_output::Model>> {
        let back = i64::try_from(MAX_CHUNK).unwrap_or(i64::MAX);
        let rows = sandbox_output::Entity::find()
            .filter(sandbox_output::Column::RunId.eq(run))
            .filter(sandbox_output::Column::Offset.gt(from - back))
            .order_by_asc(sandbox_output::Column::Offset)
            .limit(limit)
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .filter(|c| c.offset + i64::try_from(c.data.len()).unwrap_or(0) > from)
            .collect())
    }

    // ---- the runner's side -------------------------------------------------------------

    /// Takes the oldest queued run for `replica` (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so
    /// replicas claiming at once take different runs; SQLite: its single write lock).
    /// Only runs in `languages` (those this replica can run now) are taken.
    pub async fn claim(
        &self,
        replica: &str,
        languages: &[String],
    ) -> AppResult<Option<sandbox_run::Model>> {
        if languages.is_empty() {
            return Ok(None);
        }
        let now = clock::now();
        let txn = db::begin_write(&self.db).await?;
        let mut select = sandbox_run::Entity::find()
            .filter(sandbox_run::Column::Status.eq(SandboxStatus::Queued))
            .filter(sandbox_run::Column::Language.is_in(languages.to_vec()))
            .order_by_asc(sandbox_run::Column::Id)
            .limit(1);
        if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
            select = select.lock_with_behavior(
                sea_orm::sea_query::LockType::Update,
                sea_orm::sea_query::LockBehavior::SkipLocked,
            );
        }
        let Some(run) = select.one(&txn).await? else {
            return Ok(None);
        };
        let mut claimed = run;
        claimed.status = SandboxStatus::Running;
        claimed.replica = Some(replica.to_owned());
        claimed.started_at = Some(now);
        claimed.lease_expires_at = Some(now + self.lease());
        sandbox_run::ActiveModel {
            id: sea_orm::ActiveValue::Unchanged(claimed.id),
            status: Set(claimed.status),
            replica: Set(claimed.replica.clone()),
            started_at: Set(claimed.started_at),
            lease_expires_at: Set(claimed.lease_expires_at),
            ..Default::default()
        }
        .update(&txn)
        .await?;
        self.announce(&txn, SandboxEventKind::Started, &claimed, None)
            .await?;
        txn.commit().await?;
        self.bus.wake();
        Ok(Some(claimed))
    }

    fn lease(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.config.lease()).unwrap_or(chrono::Duration::seconds(15))
    }

    /// Records the container of a claimed run.
    pub async fn set_container(&self, run: Uuid, container: &str) -> AppResult<()> {
        sandbox_run::Entity::update_many()
            .col_expr(sandbox_run::Column::ContainerId, container.into())
            .filter(sandbox_run::Column::Id.eq(run))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Stores one chunk and the stream counts, and publishes it.
    pub async fn append_output(
        &self,
        run: &sandbox_run::Model,
        chunk: Chunk,
        counts: Counts,
    ) -> AppResult<()> {
        let now = clock::now();
        let txn = self.db.begin().await?;
        let end = chunk.end();
        sandbox_output::Entity::insert(sandbox_output::ActiveModel {
            run_id: Set(run.id),
            offset: Set(chunk.offset),
            stream: Set(chunk.stream),
            data: Set(chunk.data.clone()),
            created_at: Set(now),
        })
        .exec_without_returning(&txn)
        .await?;
        Self::counts_update(run.id, counts, Some(end))
            .exec(&txn)
            .await?;
        let mut snapshot = run.clone();
        snapshot.stored_bytes = end;
        self.announce(&txn, SandboxEventKind::Output, &snapshot, Some(chunk))
            .await?;
        txn.commit().await?;
        self.bus.wake();
        Ok(())
    }

    fn counts_update(
        run: Uuid,
        counts: Counts,
        stored: Option<i64>,
    ) -> sea_orm::UpdateMany<sandbox_run::Entity> {
        let mut update = sandbox_run::Entity::update_many()
            .col_expr(sandbox_run::Column::StdoutBytes, counts.stdout.into())
            .col_expr(sandbox_run::Column::StderrBytes, counts.stderr.into())
            .col_expr(
                sandbox_run::Column::StdoutTruncated,
                counts.stdout_truncated.into(),
            )
            .col_expr(
                sandbox_run::Column::StderrTruncated,
                counts.stderr_truncated.into(),
            );
        if let Some(stored) = stored {
            update = update.col_expr(sandbox_run::Column::StoredBytes, stored.into());
        }
        update.filter(sandbox_run::Column::Id.eq(run))
    }

    /// Puts a run this replica claimed but could not start (the engine refused or did not
    /// answer before any container existed) back in the queue, for any replica.
    pub async fn requeue(&self, run: &sandbox_run::Model, replica: &str) -> AppResult<bool> {
        let txn = db::begin_write(&self.db).await?;
        let updated = sandbox_run::Entity::update_many()
            .col_expr(
                sandbox_run::Column::Status,
                sea_orm::sea_query::Expr::value(SandboxStatus::Queued),
            )
            .col_expr(sandbox_run::Column::Replica, Option::<String>::None.into())
            .col_expr(
                sandbox_run::Column::StartedAt,
                Option::<DateTime<Utc>>::None.into(),
            )
            .col_expr(
                sandbox_run::Column::LeaseExpiresAt,
                Option::<DateTime<Utc>>::None.into(),
            )
            .col_expr(
                sandbox_run::Column::ContainerId,
                Option::<String>::None.into(),
            )
            .filter(sandbox_run::Column::Id.eq(run.id))
            .filter(sandbox_run::Column::Status.eq(SandboxStatus::Running))
            .filter(sandbox_run::Column::Replica.eq(replica))
            .exec(&txn)
            .await?;
        if updated.rows_affected == 0 {
            return Ok(false);
        }
        let mut queued = run.clone();
        queued.status = SandboxStatus::Queued;
        queued.replica = None;
        self.announce(&txn, SandboxEventKind::Queued, &queued, None)
            .await?;
        txn.commit().await?;
        self.bus.wake();
        Ok(true)
    }

    /// Renews this replica's leases on `runs`; answers the runs whose cancellation was asked.
    pub async fn renew(&self, replica: &str, runs: &[Uuid]) -> AppResult<Vec<Uuid>> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let until = clock::now() + self.lease();
        sandbox_run::Entity::update_many()
            .col_expr(sandbox_run::Column::LeaseExpiresAt, until.into())
            .filter(sandbox_run::Column::Id.is_in(runs.to_vec()))
            .filter(sandbox_run::Column::Replica.eq(replica))
            .filter(sandbox_run::Column::Status.eq(SandboxStatus::Running))
            .exec(&self.db)
            .await?;
        Ok(sandbox_run::Entity::find()
            .select_only()
            .column(sandbox_run::Column::Id)
            .filter(sandbox_run::Column::Id.is_in(runs.to_vec()))
            .filter(sandbox_run::Column::CancelRequested.eq(true))
            .into_tuple::<Uuid>()
            .all(&self.db)
            .await?)
    }

    /// Ends a running run of `replica`. `false` when it was no longer this replica's to end
    /// (marked `LOST` meanwhile).
    pub async fn finish(
        &self,
        run: &sandbox_run::Model,
        replica: &str,
        counts: Counts,
        end: Finished,
    ) -> AppResult<bool> {
        let now = clock::now();
        let txn = db::begin_write(&self.db).await?;
        let Some(current) = db::for_update(sandbox_run::Entity::find_by_id(run.id), &txn)
            .one(&txn)
            .await?
        else {
            return Ok(false);
        };
        if current.status != SandboxStatus::Running || current.replica.as_deref() != Some(replica) {
            return Ok(false);
        }
        let mut done = current;
        done.status = end.status;
        done.exit_code = end.exit_code;
        done.signal = end.signal;
        done.error = end.error;
        done.peak_memory_bytes = end.peak_memory_bytes;
        done.stdout_bytes = counts.stdout;
        done.stderr_bytes = counts.stderr;
        done.stdout_truncated = counts.stdout_truncated;
        done.stderr_truncated = counts.stderr_truncated;
        done.finished_at = Some(now);
        done.lease_expires_at = None;
        save(&txn, &done).await?;
        self.announce(&txn, SandboxEventKind::Finished, &done, None)
            .await?;
        txn.commit().await?;
        self.bus.wake();
        Ok(true)
    }

    /// Marks `LOST` every running run whose lease passed (its replica stopped renewing);
    /// answers them, with their containers, for removal.
    pub async fn expire_leases(&self) -> AppResult<Vec<sandbox_run::Model>> {
        let now = clock::now();
        let expired = sandbox_run::Entity::find()
            .filter(sandbox_run::Column::Status.eq(SandboxStatus::Running))
            .filter(sandbox_run::Column::LeaseExpiresAt.lt(now))
            .limit(100)
            .all(&self.db)
            .await?;
        let mut lost = Vec::new();
        for run in expired {
            let txn = db::begin_write(&self.db).await?;
            let Some(current) = db::for_update(sandbox_run::Entity::find_by_id(run.id), &txn)
                .one(&txn)
                .await?
            else {
                continue;
            };
            let still = current.status == SandboxStatus::Running
                && current.lease_expires_at.is_some_and(|l| l < now);
            if !still {
                continue;
            }
            let mut done = current;
            done.status = SandboxStatus::Lost;
            done.error = Some(format!(
                "replica {} stopped renewing its lease; the run was not retried",
                done.replica.as_deref().unwrap_or("?")
            ));
            done.finished_at = Some(now);
            done.lease_expires_at = None;
            save(&txn, &done).await?;
            self.announce(&txn, SandboxEventKind::Finished, &done, None)
                .await?;
            txn.commit().await?;
            self.bus.wake();
            super::runner::count_outcome(SandboxStatus::Lost);
            lost.push(done);
        }
        Ok(lost)
    }

    /// Of `runs`, those still owned: running with a lease not yet past.
    pub async fn owned(&self, runs: &[Uuid]) -> AppResult<Vec<Uuid>> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sandbox_run::Entity::find()
            .select_only()
            .column(sandbox_run::Column::Id)
            .filter(sandbox_run::Column::Id.is_in(runs.to_vec()))
            .filter(sandbox_run::Column::Status.eq(SandboxStatus::Running))
            .filter(sandbox_run::Column::LeaseExpiresAt.gte(clock::now()))
            .into_tuple::<Uuid>()
            .all(&self.db)
            .await?)
    }
}

/// Writes every column of `run` (its row is locked by the transaction).
async fn save(txn: &DatabaseTransaction, run: &sandbox_run::Model) -> AppResult<()> {
    let mut active = sandbox_run::ActiveModel::from(run.clone()).reset_all();
    active.id = sea_orm::ActiveValue::Unchanged(run.id);
    active.update(txn).await?;
    Ok(())
}

fn new_row(
    id: Uuid,
    tenant: Option<String>,
    input: &NewRun,
    limits: Limits,
    meta: &RequestMeta,
    now: DateTime<Utc>,
) -> sandbox_run::Model {
    sandbox_run::Model {
        id,
        tenant_id: tenant,
        task_id: input.task_id,
        language: input.language.clone(),
        code: input.code.clone(),
        stdin: input.stdin.clone(),
        memory_mb: limits.memory_mb,
        cpus: limits.cpus,
        timeout_ms: limits.timeout_ms,
        pids: limits.pids,
        output_bytes: limits.output_bytes,
        status: SandboxStatus::Queued,
        exit_code: None,
        signal: None,
        error: None,
        replica: None,
        lease_expires_at: None,
        cancel_requested: false,
        container_id: None,
        peak_memory_bytes: None,
        stdout_bytes: 0,
        stderr_bytes: 0,
        stdout_truncated: false,
        stderr_truncated: false,
        stored_bytes: 0,
        created_by: meta.caller.audit_label(),
        created_at: now,
        started_at: None,
        finished_at: None,
    }
}

/// A status as the API spells it.
pub fn status_name(status: SandboxStatus) -> &'static str {
    match status {
        SandboxStatus::Queued => "QUEUED",
        SandboxStatus::Running => "RUNNING",
        SandboxStatus::Succeeded => "SUCCEEDED",
        SandboxStatus::Failed => "FAILED",
        SandboxStatus::TimedOut => "TIMED_OUT",
        SandboxStatus::OomKilled => "OOM_KILLED",
        SandboxStatus::Cancelled => "CANCELLED",
        SandboxStatus::Lost => "LOST",
    }
}

/// The stream of a chunk as stored.
pub fn stream_of(stderr: bool) -> OutputStream {
    if stderr {
        OutputStream::Stderr
    } else {
        OutputStream::Stdout
    }
}
