//! The database queue (`queue_messages`): the work queue when there is no NATS. A claim is a
//! visibility timeout: the message is invisible until its delivery's deadline, then
//! claimable again; a nack makes it visible after its backoff. Every settlement is a
//! conditional UPDATE on the delivery's token, state and deadline, so of two racing calls on
//! one delivery exactly one takes effect, on both databases.

use chrono::{DateTime, Utc};
use entity::queue_message::{self, MessageState};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, LockBehavior, LockType},
};
use uuid::Uuid;

use super::{
    model::{DeliveryId, ReportedError, push_error},
    queues::QueueSpec,
};
use crate::{
    error::{AppError, AppResult},
    infra::db::tenant_condition,
};

/// Name of the database queue in `dlq_messages.stream`.
pub const STREAM: &str = "database";

/// Settled rows (acked, dead) are kept this long, so a late call on their deliveries gets
/// `DELIVERY_SETTLED` rather than `NOT_FOUND`; then the reaper deletes them.
pub const SETTLED_RETENTION_HOURS: i64 = 24;

fn chrono(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Claims up to `max` messages of `queue` in `txn`: ready ones whose backoff is over, and
/// claimed ones whose delivery lapsed with deliveries left (the lapse is recorded as an
/// error). Oldest first; on PostgreSQL rows another claimer holds are skipped.
pub async fn claim(
    txn: &DatabaseTransaction,
    postgres: bool,
    spec: &QueueSpec,
    scope: Option<&str>,
    max: u64,
    now: DateTime<Utc>,
) -> AppResult<Vec<(queue_message::Model, DeliveryId)>> {
    let max_deliver = i32::try_from(spec.max_deliver).unwrap_or(i32::MAX);
    let due = Condition::any()
        .add(
            Condition::all()
                .add(queue_message::Column::State.eq(MessageState::Ready))
                .add(queue_message::Column::VisibleAt.lte(now)),
        )
        .add(
            Condition::all()
                .add(queue_message::Column::State.eq(MessageState::Claimed))
                .add(queue_message::Column::Deadline.lte(now))
                .add(queue_message::Column::Attempts.lt(max_deliver)),
        );
    let mut select = queue_message::Entity::find()
        .filter(queue_message::Column::Queue.eq(spec.name.as_str()))
        .filter(queue_message::Column::StreamSeq.is_null())
        .filter(due)
        .filter(tenant_condition(queue_message::Column::TenantId, scope))
        .order_by_asc(queue_message::Column::Id)
        .limit(max);
    if postgres {
        select = select.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let deadline = now + chrono(spec.ack_wait());
    let mut claimed = Vec::new();
    for mut row in select.all(txn).await? {
        if row.state == MessageState::Claimed {
            row.errors = push_error(
                &row.errors,
                ReportedError {
                    attempt: row.attempts,
                    at: now,
                    error: format!(
                        "delivery {} timed out: no ack within {} s",
                        row.attempts, spec.ack_wait_seconds
                    ),
                },
            );
        }
        let token = Uuid::new_v4();
        row.attempts += 1;
        row.state = MessageState::Claimed;
        row.delivery_token = Some(token);
        row.deadline = Some(deadline);
        row.first_delivered_at = row.first_delivered_at.or(Some(now));
        row.last_delivered_at = Some(now);
        row.updated_at = now;
        queue_message::Entity::update_many()
            .col_expr(queue_message::Column::State, Expr::value(row.state))
            .col_expr(queue_message::Column::Attempts, Expr::value(row.attempts))
            .col_expr(
                queue_message::Column::DeliveryToken,
                Expr::value(Some(token)),
            )
            .col_expr(queue_message::Column::Deadline, Expr::value(row.deadline))
            .col_expr(
                queue_message::Column::Errors,
                Expr::value(row.errors.clone()),
            )
            .col_expr(
                queue_message::Column::FirstDeliveredAt,
                Expr::value(row.first_delivered_at),
            )
            .col_expr(
                queue_message::Column::LastDeliveredAt,
                Expr::value(row.last_delivered_at),
            )
            .col_expr(queue_message::Column::UpdatedAt, Expr::value(now))
            .filter(queue_message::Column::Id.eq(row.id))
            .exec(txn)
            .await?;
        let id = DeliveryId {
            message: row.id,
            attempt: row.attempts,
            token,
        };
        claimed.push((row, id));
    }
    Ok(claimed)
}

/// Why a settlement on `delivery` found no live delivery: unknown (or another tenant's),
/// lapsed, superseded by a later delivery, or settled already.
pub async fn refusal<C: ConnectionTrait>(
    conn: &C,
    delivery: &DeliveryId,
    scope: Option<&str>,
    now: DateTime<Utc>,
) -> AppResult<AppError> {
    let unknown = || AppError::not_found("Delivery", delivery);
    let Some(row) = queue_message::Entity::find_by_id(delivery.message)
        .filter(tenant_condition(queue_message::Column::TenantId, scope))
        .one(conn)
        .await?
    else {
        return Ok(unknown());
    };
    if delivery.attempt > row.attempts
        || (delivery.attempt == row.attempts && row.delivery_token != Some(delivery.token))
    {
        return Ok(unknown());
    }
    if delivery.attempt < row.attempts {
        return Ok(AppError::DeliveryExpired);
    }
    Ok(match row.state {
        MessageState::Claimed if row.deadline.is_none_or(|d| d <= now) => AppError::DeliveryExpired,
        MessageState::Claimed => AppError::Internal(anyhow::anyhow!(
            "delivery {delivery} is live but its settlement matched no row"
        )),
        MessageState::Ready | MessageState::Acked | MessageState::Dead => AppError::DeliverySettled,
    })
}

/// The live delivery `delivery`: its row, read through `txn` (conditional updates below
/// re-check it). `Err` with the reason when it is not live.
pub async fn live<C: ConnectionTrait>(
    txn: &C,
    delivery: &DeliveryId,
    scope: Option<&str>,
    now: DateTime<Utc>,
) -> AppResult<queue_message::Model> {
    let row = queue_message::Entity::find_by_id(delivery.message)
        .filter(tenant_condition(queue_message::Column::TenantId, scope))
        .one(txn)
        .await?;
    match row {
        Some(row)
            if row.state == MessageState::Claimed
                && row.attempts == delivery.attempt
                && row.delivery_token == Some(delivery.token)
                && row.deadline.is_some_and(|d| d > now) =>
        {
            Ok(row)
        }
        _ => Err(refusal(txn, delivery, scope, now).await?),
    }
}

/// Moves the live delivery `delivery` to `state`, with the other columns `set` names;
/// `false` when it was no longer live (a racing call settled it first).
pub async fn settle<C: ConnectionTrait>(
    txn: &C,
    delivery: &DeliveryId,
    now: DateTime<Utc>,
    set: Vec<(queue_message::Column, sea_orm::sea_query::SimpleExpr)>,
) -> AppResult<bool> {
    let mut update = queue_message::Entity::update_many()
        .col_expr(queue_message::Column::UpdatedAt, Expr::value(now));
    for (column, value) in set {
        update = update.col_expr(column, value);
    }
    let res = update
        .filter(queue_message::Column::Id.eq(delivery.message))
        .filter(queue_message::Column::State.eq(MessageState::Claimed))
        .filter(queue_message::Column::Attempts.eq(delivery.attempt))
        .filter(queue_message::Column::DeliveryToken.eq(delivery.token))
        .filter(queue_message::Column::Deadline.gt(now))
        .exec(txn)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Claimed messages of `spec` whose last allowed delivery lapsed, marked `DEAD` in `txn`
/// (the caller records their dead letters in it). At most `limit`; on PostgreSQL rows another
/// reaper holds are skipped.
pub async fn lapsed_last_deliveries(
    txn: &DatabaseTransaction,
    postgres: bool,
    spec: &QueueSpec,
    limit: u64,
    now: DateTime<Utc>,
) -> AppResult<Vec<queue_message::Model>> {
    let max_deliver = i32::try_from(spec.max_deliver).unwrap_or(i32::MAX);
    let mut select = queue_message::Entity::find()
        .filter(queue_message::Column::Queue.eq(spec.name.as_str()))
        .filter(queue_message::Column::State.eq(MessageState::Claimed))
        .filter(queue_message::Column::Deadline.lte(now))
        .filter(queue_message::Column::Attempts.gte(max_deliver))
        .order_by_asc(queue_message::Column::Id)
        .limit(limit);
    if postgres {
        select = select.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let mut dead = Vec::new();
    for mut row in select.all(txn).await? {
        row.errors = push_error(
            &row.errors,
            ReportedError {
                attempt: row.attempts,
                at: now,
                error: format!(
                    "delivery {} timed out: no ack within {} s",
                    row.attempts, spec.ack_wait_seconds
                ),
            },
        );
        let res = queue_message::Entity::update_many()
            .col_expr(
                queue_message::Column::State,
                Expr::value(MessageState::Dead),
            )
            .col_expr(
                queue_message::Column::Errors,
                Expr::value(row.errors.clone()),
            )
            .col_expr(queue_message::Column::UpdatedAt, Expr::value(now))
            .filter(queue_message::Column::Id.eq(row.id))
            .filter(queue_message::Column::State.eq(MessageState::Claimed))
            .filter(queue_message::Column::Deadline.lte(now))
            .exec(txn)
            .await?;
        if res.rows_affected == 1 {
            row.state = MessageState::Dead;
            dead.push(row);
        }
    }
    Ok(dead)
}

/// Messages of `queue` not yet settled (ready or out with a worker).
pub async fn pending<C: ConnectionTrait>(conn: &C, queue: &str) -> AppResult<u64> {
    Ok(queue_message::Entity::find()
        .filter(queue_message::Column::Queue.eq(queue))
        .filter(queue_message::Column::StreamSeq.is_null())
        .filter(queue_message::Column::State.is_in([MessageState::Ready, MessageState::Claimed]))
        .count(conn)
        .await?)
}

/// Deletes settled rows older than [`SETTLED_RETENTION_HOURS`], and JetStream delivery rows
/// untouched as long (their message went on with a worker speaking NATS); returns how many.
pub async fn sweep<C: ConnectionTrait>(conn: &C, now: DateTime<Utc>) -> AppResult<u64> {
    let res = queue_message::Entity::delete_many()
        .filter(
            Condition::any()
                .add(queue_message::Column::State.is_in([MessageState::Acked, MessageState::Dead]))
                .add(queue_message::Column::StreamSeq.is_not_null()),
        )
        .filter(
            queue_message::Column::UpdatedAt
                .lt(now - chrono::Duration::hours(SETTLED_RETENTION_HOURS)),
        )
        .exec(conn)
        .await?;
    Ok(res.rows_affected)
}
