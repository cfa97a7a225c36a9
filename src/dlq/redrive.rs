//! The redrive runner every replica runs: it takes a running job that no live replica owns
//! (none yet, or its owner's heartbeat stopped for [`TAKEOVER_AFTER`]) and moves its dead
//! letters back at the job's rate. Each batch is one transaction holding the dead letters'
//! `RETRIED` marks, their messages on the queue and the job's progress, guarded by the job
//! still running under this owner, so a crash, a takeover or a cancel never moves a letter
//! twice or loses the count.

use std::{collections::HashMap, time::Duration};

use crate::infra::shutdown::Shutdown;
use entity::dlq_redrive::{self, RedriveStatus};
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use uuid::Uuid;

use super::service::{DlqFilter, DlqService};
use crate::{auth::RequestMeta, clock, error::AppResult, infra::db};

/// How often the runner moves a batch of the jobs it owns.
pub const TICK: Duration = Duration::from_millis(200);
/// A job whose owner has not beaten for this long is taken over by another replica.
pub const TAKEOVER_AFTER: Duration = Duration::from_secs(5);

/// Starts the runner on the current runtime, as replica `me`. While it owns a running job it
/// moves a batch every [`TICK`]; otherwise it looks for one every `idle`, or at once when
/// this replica creates one.
pub fn spawn(service: DlqService, me: String, idle: Duration, shutdown: Shutdown) {
    shutdown.clone().spawn(async move {
        let wake = service.redrive_created();
        let mut runner = Runner {
            service,
            me,
            allowance: HashMap::new(),
        };
        let mut busy = false;
        loop {
            let pause = if busy { TICK } else { idle };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
                () = wake.notified() => {}
            }
            busy = match runner.step().await {
                Ok(owned) => owned,
                Err(e) => {
                    tracing::warn!(error.code = e.code(), error.cause = ?e, "DLQ redrive step failed");
                    false
                }
            };
        }
    });
}

struct Runner {
    service: DlqService,
    me: String,
    /// Per job: letters it may move now (its rate times the time since its last batch), and
    /// when that was reckoned.
    allowance: HashMap<Uuid, (f64, tokio::time::Instant)>,
}

impl Runner {
    /// Takes over what it may, then moves one batch of each job it owns; `true` when it owns
    /// one.
    async fn step(&mut self) -> AppResult<bool> {
        let db = self.service.queues().db().clone();
        let now = clock::now();
        let stale = now - chrono::Duration::from_std(TAKEOVER_AFTER).unwrap_or_default();
        let claimable = Condition::any()
            .add(dlq_redrive::Column::Owner.is_null())
            .add(dlq_redrive::Column::Owner.eq(self.me.as_str()))
            .add(dlq_redrive::Column::HeartbeatAt.lt(stale));
        dlq_redrive::Entity::update_many()
            .col_expr(
                dlq_redrive::Column::Owner,
                Expr::value(Some(self.me.clone())),
            )
            .col_expr(dlq_redrive::Column::HeartbeatAt, Expr::value(Some(now)))
            .filter(dlq_redrive::Column::Status.eq(RedriveStatus::Running))
            .filter(claimable)
            .exec(&db)
            .await?;
        let mine = dlq_redrive::Entity::find()
            .filter(dlq_redrive::Column::Status.eq(RedriveStatus::Running))
            .filter(dlq_redrive::Column::Owner.eq(self.me.as_str()))
            .order_by_asc(dlq_redrive::Column::Id)
            .all(&db)
            .await?;
        self.allowance
            .retain(|id, _| mine.iter().any(|job| job.id == *id));
        let owned = !mine.is_empty();
        for job in mine {
            self.batch(job).await?;
        }
        Ok(owned)
    }

    /// Moves as many of `job`'s letters as its rate allows since its last batch.
    async fn batch(&mut self, mut job: dlq_redrive::Model) -> AppResult<()> {
        let rate = f64::from(job.rate_per_second.max(1));
        let now_instant = tokio::time::Instant::now();
        let (mut allowed, since) = self
            .allowance
            .get(&job.id)
            .copied()
            .unwrap_or((rate * TICK.as_secs_f64(), now_instant));
        allowed = (allowed + rate * (now_instant - since).as_secs_f64()).min(rate.max(1.0));
        let take = allowed.floor() as u64;
        self.allowance.insert(job.id, (allowed, now_instant));
        if take == 0 {
            return Ok(());
        }
        let filter: DlqFilter = serde_json::from_str(&job.filter).unwrap_or_default();
        let db = self.service.queues().db().clone();
        let now = clock::now();
        let txn = db::begin_write(&db).await?;
        let letters = DlqService::redrive_select(&filter, job.tenant_id.as_deref(), job.created_at)
            .order_by_asc(entity::dlq_message::Column::Id)
            .limit(take)
            .all(&txn)
            .await?;
        let meta = RequestMeta::system(format!("dlq-redrive:{}", job.id));
        let mut moved = 0i64;
        for mut letter in letters.iter().cloned() {
            if self
                .service
                .requeue(&txn, &meta, &mut letter, Some(job.id), now)
                .await?
            {
                moved += 1;
            }
        }
        let done = (letters.len() as u64) < take;
        let mut update = dlq_redrive::Entity::update_many()
            .col_expr(dlq_redrive::Column::Moved, {
                use sea_orm::sea_query::ExprTrait;
                Expr::col(dlq_redrive::Column::Moved).add(moved)
            })
            .col_expr(dlq_redrive::Column::HeartbeatAt, Expr::value(Some(now)))
            .col_expr(dlq_redrive::Column::UpdatedAt, Expr::value(now));
        if done {
            update = update
                .col_expr(
                    dlq_redrive::Column::Status,
                    Expr::value(RedriveStatus::Completed),
                )
                .col_expr(dlq_redrive::Column::FinishedAt, Expr::value(Some(now)));
        }
        let res = update
            .filter(dlq_redrive::Column::Id.eq(job.id))
            .filter(dlq_redrive::Column::Status.eq(RedriveStatus::Running))
            .filter(dlq_redrive::Column::Owner.eq(self.me.as_str()))
            .exec(&txn)
            .await?;
        if res.rows_affected != 1 {
            // Cancelled or taken over since it was read: this batch never happened.
            return Ok(());
        }
        if moved == 0 && !done {
            txn.commit().await?;
            return Ok(());
        }
        job.moved += moved;
        job.heartbeat_at = Some(now);
        job.updated_at = now;
        if done {
            job.status = RedriveStatus::Completed;
            job.finished_at = Some(now);
        }
        self.service.announce_job(&txn, &job).await?;
        txn.commit().await?;
        self.allowance
            .insert(job.id, (allowed - letters.len() as f64, now_instant));
        self.service.queues().bus().wake();
        self.service.queues().notify_ready();
        if done {
            tracing::info!(redrive.id = %job.id, redrive.moved = job.moved, "DLQ redrive completed");
        }
        Ok(())
    }
}
