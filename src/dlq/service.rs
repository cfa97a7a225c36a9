//! `DlqService`: the dead letters as operators see them: list with filters, detail, resolve,
//! retry, purge, statistics, and redrive jobs (created here, run by `redrive`). Every change
//! is audited and announced in its own transaction.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use entity::{
    dlq_message::{self, DlqStatus},
    dlq_redrive::{self, RedriveStatus},
};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, LikeExpr},
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Notify;
use uuid::Uuid;

use super::{
    events::{DlqEvent, DlqEventKind, RedriveEvent},
    limits,
    work::QueueService,
};
use crate::{
    audit::{self, AuditEntry},
    auth::RequestMeta,
    clock,
    error::{AppError, AppResult},
    events::DomainEvent,
    idempotency,
    infra::db::{self, tenant_condition},
    pagination::{Page, PageRequest, keyset_page},
    task::{model::required_text, service::TaskService},
};

/// Which dead letters a list, a redrive or a purge is about. Every field narrows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DlqFilter {
    pub queue: Option<String>,
    pub subject: Option<String>,
    pub task_id: Option<Uuid>,
    /// `true`: resolved or retried; `false`: open.
    pub resolved: Option<bool>,
    /// Text some reported error contains (case-sensitive).
    pub error_contains: Option<String>,
    /// Dead at or after.
    pub from: Option<DateTime<Utc>>,
    /// Dead before.
    pub to: Option<DateTime<Utc>>,
}

impl DlqFilter {
    fn condition(&self, scope: Option<&str>) -> Condition {
        let mut cond = tenant_condition(dlq_message::Column::TenantId, scope);
        if let Some(q) = &self.queue {
            cond = cond.add(dlq_message::Column::Queue.eq(q.as_str()));
        }
        if let Some(s) = &self.subject {
            cond = cond.add(dlq_message::Column::Subject.eq(s.as_str()));
        }
        if let Some(t) = self.task_id {
            cond = cond.add(dlq_message::Column::TaskId.eq(t));
        }
        match self.resolved {
            Some(true) => cond = cond.add(dlq_message::Column::Status.ne(DlqStatus::Open)),
            Some(false) => cond = cond.add(dlq_message::Column::Status.eq(DlqStatus::Open)),
            None => {}
        }
        if let Some(text) = self.error_contains.as_deref().filter(|t| !t.is_empty()) {
            let escaped = text
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            use sea_orm::sea_query::ExprTrait;
            cond = cond.add(
                Expr::col(dlq_message::Column::Errors)
                    .like(LikeExpr::new(format!("%{escaped}%")).escape('\\')),
            );
        }
        if let Some(from) = self.from {
            cond = cond.add(dlq_message::Column::DeadAt.gte(from));
        }
        if let Some(to) = self.to {
            cond = cond.add(dlq_message::Column::DeadAt.lt(to));
        }
        cond
    }

    fn check(&self) -> AppResult<()> {
        if let (Some(from), Some(to)) = (self.from, self.to)
            && from >= to
        {
            return Err(AppError::bad_field(
                "filter",
                "filter.from must be before filter.to",
            ));
        }
        Ok(())
    }
}

/// Depth and age of one queue's DLQ, and the messages still in the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueStats {
    pub queue: String,
    /// Open dead letters.
    pub depth: u64,
    /// Age of the oldest open dead letter, in seconds.
    pub oldest_age_seconds: Option<f64>,
    /// Messages not yet settled in the queue.
    pub pending: u64,
}

/// Input of `redriveDlq`, before validation.
#[derive(Debug, Clone)]
pub struct NewRedrive {
    pub filter: DlqFilter,
    pub rate_per_second: i32,
    pub dry_run: bool,
    pub request_id: String,
}

/// The DLQ's operations.
#[derive(Clone)]
pub struct DlqService {
    queues: QueueService,
    tasks: TaskService,
    /// Woken when this replica creates a redrive, so its runner starts it at once.
    redrive_created: Arc<Notify>,
}

impl DlqService {
    pub fn new(queues: QueueService, tasks: TaskService) -> Self {
        Self {
            queues,
            tasks,
            redrive_created: Arc::new(Notify::new()),
        }
    }

    pub(super) fn redrive_created(&self) -> Arc<Notify> {
        Arc::clone(&self.redrive_created)
    }

    pub fn queues(&self) -> &QueueService {
        &self.queues
    }

    pub async fn list(
        &self,
        scope: Option<&str>,
        filter: &DlqFilter,
        page: PageRequest,
    ) -> AppResult<Page<dlq_message::Model>> {
        filter.check()?;
        let select = dlq_message::Entity::find().filter(filter.condition(scope));
        Ok(keyset_page(select, dlq_message::Column::Id, page, self.queues.db()).await?)
    }

    pub async fn count(&self, scope: Option<&str>, filter: &DlqFilter) -> AppResult<u64> {
        Ok(dlq_message::Entity::find()
            .filter(filter.condition(scope))
            .count(self.queues.db())
            .await?)
    }

    pub async fn get(&self, scope: Option<&str>, id: Uuid) -> AppResult<dlq_message::Model> {
        dlq_message::Entity::find_by_id(id)
            .filter(tenant_condition(dlq_message::Column::TenantId, scope))
            .one(self.queues.db())
            .await?
            .ok_or_else(|| AppError::not_found("DlqMessage", id))
    }

    async fn announce(
        &self,
        txn: &DatabaseTransaction,
        kind: DlqEventKind,
        message: dlq_message::Model,
    ) -> AppResult<()> {
        self.queues
            .bus()
            .append(txn, &DomainEvent::Dlq(DlqEvent { kind, message }))
            .await?;
        Ok(())
    }

    /// Closes an open dead letter with a note (it is not retried).
    pub async fn resolve(
        &self,
        meta: &RequestMeta,
        id: Uuid,
        note: &str,
    ) -> AppResult<dlq_message::Model> {
        let note = required_text("note", note, limits::NOTE_MAX)
            .map_err(|m| AppError::bad_field("note", m))?;
        let now = clock::now();
        let txn = db::begin_write(self.queues.db()).await?;
        let mut row = dlq_message::Entity::find_by_id(id)
            .filter(tenant_condition(
                dlq_message::Column::TenantId,
                meta.caller.tenant(),
            ))
            .one(&txn)
            .await?
            .ok_or_else(|| AppError::not_found("DlqMessage", id))?;
        let res = dlq_message::Entity::update_many()
            .col_expr(
                dlq_message::Column::Status,
                Expr::value(DlqStatus::Resolved),
            )
            .col_expr(dlq_message::Column::Note, Expr::value(Some(note.clone())))
            .col_expr(
                dlq_message::Column::ResolvedBy,
                Expr::value(Some(meta.caller.audit_label())),
            )
            .col_expr(dlq_message::Column::ResolvedAt, Expr::value(Some(now)))
            .filter(dlq_message::Column::Id.eq(id))
            .filter(dlq_message::Column::Status.eq(DlqStatus::Open))
            .exec(&txn)
            .await?;
        if res.rows_affected != 1 {
            return Err(AppError::Conflict(format!(
                "the dead letter is already {}",
                if row.status == DlqStatus::Retried {
                    "retried"
                } else {
                    "resolved"
                }
            )));
        }
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: "dlq.resolve",
                entity_type: "dlq_message",
                entity_id: Some(id.to_string()),
                tenant_id: row.tenant_id.as_deref(),
                details: json!({ "queue": row.queue, "taskId": row.task_id }),
            },
        )
        .await?;
        row.status = DlqStatus::Resolved;
        row.note = Some(note);
        row.resolved_by = Some(meta.caller.audit_label());
        row.resolved_at = Some(now);
        self.announce(&txn, DlqEventKind::Resolved, row.clone())
            .await?;
        txn.commit().await?;
        self.queues.bus().wake();
        Ok(row)
    }

    /// Puts open dead letter `row` back on its queue in `txn`: the row becomes `RETRIED`
    /// (by `redrive` when a job does it), a message with the dedup id `dlq:<id>` goes on the
    /// queue, a `FAILED` task goes back to `PENDING`. `false` when the row was no longer
    /// open (someone else retried or resolved it).
    pub(super) async fn requeue(
        &self,
        txn: &DatabaseTransaction,
        meta: &RequestMeta,
        row: &mut dlq_message::Model,
        redrive: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> AppResult<bool> {
        let spec = self.queues.spec("id", &row.queue)?.clone();
        let res = dlq_message::Entity::update_many()
            .col_expr(dlq_message::Column::Status, Expr::value(DlqStatus::Retried))
            .col_expr(
                dlq_message::Column::ResolvedBy,
                Expr::value(Some(meta.caller.audit_label())),
            )
            .col_expr(dlq_message::Column::ResolvedAt, Expr::value(Some(now)))
            .col_expr(dlq_message::Column::RedriveId, Expr::value(redrive))
            .filter(dlq_message::Column::Id.eq(row.id))
            .filter(dlq_message::Column::Status.eq(DlqStatus::Open))
            .exec(txn)
            .await?;
        if res.rows_affected != 1 {
            return Ok(false);
        }
        let sequence = self
            .queues
            .put(
                txn,
                &spec,
                (row.task_id, row.tenant_id.clone()),
                &format!("dlq:{}", row.id),
                row.payload.clone(),
                &meta.caller.audit_label(),
                now,
            )
            .await?;
        self.tasks.requeued(txn, meta, row.task_id).await?;
        audit::record(
            txn,
            meta,
            AuditEntry {
                action: "dlq.retry",
                entity_type: "dlq_message",
                entity_id: Some(row.id.to_string()),
                tenant_id: row.tenant_id.as_deref(),
                details: json!({ "queue": row.queue, "taskId": row.task_id, "sequence": sequence, "redriveId": redrive }),
            },
        )
        .await?;
        row.status = DlqStatus::Retried;
        row.resolved_by = Some(meta.caller.audit_label());
        row.resolved_at = Some(now);
        row.redrive_id = redrive;
        self.announce(txn, DlqEventKind::Retried, row.clone())
            .await?;
        Ok(true)
    }

    /// Publishes an open dead letter back to its queue (deduplicated by its id), and sends a
    /// `FAILED` task back to `PENDING`. Idempotent per (caller, requestId).
    pub async fn retry(
        &self,
        meta: &RequestMeta,
        id: Uuid,
        request_id: &str,
    ) -> AppResult<dlq_message::Model> {
        let key = idempotency::Key::new(
            &meta.caller,
            request_id,
            "retryDlqMessage",
            &json!({ "id": id }),
        )?;
        let now = clock::now();
        let txn = db::begin_write(self.queues.db()).await?;
        if let Some(previous) =
            idempotency::claim::<dlq_message::Model>(&txn, &key, None, now).await?
        {
            return Ok(previous);
        }
        let mut row = dlq_message::Entity::find_by_id(id)
            .filter(tenant_condition(
                dlq_message::Column::TenantId,
                meta.caller.tenant(),
            ))
            .one(&txn)
            .await?
            .ok_or_else(|| AppError::not_found("DlqMessage", id))?;
        if !self.requeue(&txn, meta, &mut row, None, now).await? {
            return Err(AppError::Conflict(format!(
                "the dead letter is already {}",
                if row.status == DlqStatus::Retried {
                    "retried"
                } else {
                    "resolved"
                }
            )));
        }
        idempotency::store(&txn, &key, &row).await?;
        txn.commit().await?;
        self.queues.bus().wake();
        self.queues.notify_ready();
        Ok(row)
    }

    /// Deletes the dead letters matching `filter` that died before `older_than`; audited
    /// with the count. Returns how many.
    pub async fn purge(
        &self,
        meta: &RequestMeta,
        filter: &DlqFilter,
        older_than: DateTime<Utc>,
    ) -> AppResult<u64> {
        filter.check()?;
        let txn = db::begin_write(self.queues.db()).await?;
        let res = dlq_message::Entity::delete_many()
            .filter(filter.condition(meta.caller.tenant()))
            .filter(dlq_message::Column::DeadAt.lt(older_than))
            .exec(&txn)
            .await?;
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: "dlq.purge",
                entity_type: "dlq_message",
                entity_id: None,
                tenant_id: meta.caller.tenant(),
                details: json!({ "filter": filter, "olderThan": older_than, "deleted": res.rows_affected }),
            },
        )
        .await?;
        txn.commit().await?;
        self.queues.bus().wake();
        Ok(res.rows_affected)
    }

    /// Depth, oldest age and pending messages of every configured queue.
    pub async fn stats(&self, scope: Option<&str>) -> AppResult<Vec<QueueStats>> {
        let db = self.queues.db();
        let now = clock::now();
        let mut out = Vec::new();
        for spec in self.queues.queues().iter() {
            let open = dlq_message::Entity::find()
                .filter(tenant_condition(dlq_message::Column::TenantId, scope))
                .filter(dlq_message::Column::Queue.eq(spec.name.as_str()))
                .filter(dlq_message::Column::Status.eq(DlqStatus::Open));
            let depth = open.clone().count(db).await?;
            let oldest: Option<DateTime<Utc>> = open
                .select_only()
                .column(dlq_message::Column::DeadAt)
                .order_by_asc(dlq_message::Column::DeadAt)
                .into_tuple()
                .one(db)
                .await?;
            out.push(QueueStats {
                queue: spec.name.clone(),
                depth,
                oldest_age_seconds: oldest
                    .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0),
                pending: self.queues.pending(&spec.name).await?,
            });
        }
        Ok(out)
    }

    /// Publishes the DLQ gauges (`aurum_dlq_depth`, `aurum_dlq_oldest_age_seconds`,
    /// `aurum_queue_pending`, per queue).
    pub async fn publish_gauges(&self) -> AppResult<()> {
        for s in self.stats(None).await? {
            metrics::gauge!("aurum_dlq_depth", "queue" => s.queue.clone()).set(s.depth as f64);
            metrics::gauge!("aurum_dlq_oldest_age_seconds", "queue" => s.queue.clone())
                .set(s.oldest_age_seconds.unwrap_or(0.0));
            metrics::gauge!("aurum_queue_pending", "queue" => s.queue).set(s.pending as f64);
        }
        Ok(())
    }

    // ---- redrive jobs -----------------------------------------------------------------

    /// Open dead letters `filter` selects for a redrive created at `at`.
    pub(super) fn redrive_select(
        filter: &DlqFilter,
        scope: Option<&str>,
        at: DateTime<Utc>,
    ) -> sea_orm::Select<dlq_message::Entity> {
        let open = DlqFilter {
            resolved: Some(false),
            ..filter.clone()
        };
        dlq_message::Entity::find()
            .filter(open.condition(scope))
            .filter(dlq_message::Column::DeadAt.lte(at))
    }

    pub async fn redrive_job(
        &self,
        scope: Option<&str>,
        id: Uuid,
    ) -> AppResult<dlq_redrive::Model> {
        dlq_redrive::Entity::find_by_id(id)
            .filter(tenant_condition(dlq_redrive::Column::TenantId, scope))
            .one(self.queues.db())
            .await?
            .ok_or_else(|| AppError::not_found("DlqRedrive", id))
    }

    pub(super) async fn announce_job<C: ConnectionTrait>(
        &self,
        conn: &C,
        job: &dlq_redrive::Model,
    ) -> AppResult<()> {
        self.queues
            .bus()
            .append(
                conn,
                &DomainEvent::Redrive(RedriveEvent { job: job.clone() }),
            )
            .await?;
        Ok(())
    }

    /// Starts a redrive of the open dead letters `filter` selects (those dead by now), at
    /// `rate_per_second`; a dry run only counts them and starts nothing. Idempotent per
    /// (caller, requestId).
    pub async fn redrive(
        &self,
        meta: &RequestMeta,
        input: NewRedrive,
    ) -> AppResult<dlq_redrive::Model> {
        input.filter.check()?;
        if !(1..=limits::RATE_MAX).contains(&input.rate_per_second) {
            return Err(AppError::bad_field(
                "ratePerSecond",
                format!("ratePerSecond must be 1-{}", limits::RATE_MAX),
            ));
        }
        if let Some(q) = &input.filter.queue {
            self.queues.spec("filter", q)?;
        }
        let key = idempotency::Key::new(
            &meta.caller,
            &input.request_id,
            "redriveDlq",
            &json!({ "filter": input.filter, "rate": input.rate_per_second, "dryRun": input.dry_run }),
        )?;
        let now = clock::now();
        let scope = meta.caller.tenant();
        let txn = db::begin_write(self.queues.db()).await?;
        if !input.dry_run
            && let Some(previous) =
                idempotency::claim::<dlq_redrive::Model>(&txn, &key, None, now).await?
        {
            return Ok(previous);
        }
        let total = Self::redrive_select(&input.filter, scope, now)
            .count(&txn)
            .await?;
        if total == 0 {
            return Err(AppError::bad_field(
                "filter",
                "the filter matches no open dead letter",
            ));
        }
        let filter = serde_json::to_string(&input.filter)
            .map_err(|e| AppError::Internal(anyhow::anyhow!("encoding a filter: {e}")))?;
        let job = dlq_redrive::Model {
            id: Uuid::now_v7(),
            filter,
            rate_per_second: input.rate_per_second,
            status: if input.dry_run {
                RedriveStatus::Completed
            } else {
                RedriveStatus::Running
            },
            total: i64::try_from(total).unwrap_or(i64::MAX),
            moved: 0,
            tenant_id: scope.map(str::to_owned),
            owner: None,
            heartbeat_at: None,
            created_by: meta.caller.audit_label(),
            created_at: now,
            updated_at: now,
            finished_at: input.dry_run.then_some(now),
        };
        if input.dry_run {
            return Ok(job);
        }
        dlq_redrive::Entity::insert(dlq_redrive::ActiveModel::from(job.clone()))
            .exec_without_returning(&txn)
            .await?;
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: "dlq.redrive",
                entity_type: "dlq_redrive",
                entity_id: Some(job.id.to_string()),
                tenant_id: scope,
                details: json!({ "filter": input.filter, "ratePerSecond": job.rate_per_second, "total": job.total }),
            },
        )
        .await?;
        self.announce_job(&txn, &job).await?;
        idempotency::store(&txn, &key, &job).await?;
        txn.commit().await?;
        self.queues.bus().wake();
        self.redrive_created.notify_one();
        Ok(job)
    }

    /// Stops a running redrive; what it moved stays moved.
    pub async fn cancel_redrive(
        &self,
        meta: &RequestMeta,
        id: Uuid,
    ) -> AppResult<dlq_redrive::Model> {
        let now = clock::now();
        let txn = db::begin_write(self.queues.db()).await?;
        let mut job = dlq_redrive::Entity::find_by_id(id)
            .filter(tenant_condition(
                dlq_redrive::Column::TenantId,
                meta.caller.tenant(),
            ))
            .one(&txn)
            .await?
            .ok_or_else(|| AppError::not_found("DlqRedrive", id))?;
        let res = dlq_redrive::Entity::update_many()
            .col_expr(
                dlq_redrive::Column::Status,
                Expr::value(RedriveStatus::Cancelled),
            )
            .col_expr(dlq_redrive::Column::FinishedAt, Expr::value(Some(now)))
            .col_expr(dlq_redrive::Column::UpdatedAt, Expr::value(now))
            .filter(dlq_redrive::Column::Id.eq(id))
            .filter(dlq_redrive::Column::Status.eq(RedriveStatus::Running))
            .exec(&txn)
            .await?;
        if res.rows_affected != 1 {
            return Err(AppError::Conflict(
                "the redrive is no longer running".into(),
            ));
        }
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: "dlq.redrive_cancel",
                entity_type: "dlq_redrive",
                entity_id: Some(id.to_string()),
                tenant_id: job.tenant_id.as_deref(),
                details: json!({ "moved": job.moved, "total": job.total }),
            },
        )
        .await?;
        job.status = RedriveStatus::Cancelled;
        job.finished_at = Some(now);
        job.updated_at = now;
        self.announce_job(&txn, &job).await?;
        txn.commit().await?;
        self.queues.bus().wake();
        Ok(job)
    }
}
