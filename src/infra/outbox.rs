//! The transactional outbox table (`event_outbox`) as the event bus uses it: appending an event
//! inside a caller's transaction, the relay's batches, replay reads and the retention sweep.
//! Generic over the event type: it knows JSON and subjects, not domains.

use chrono::{DateTime, Utc};
use entity::event_outbox::{self, Column, Entity};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, sea_query::Expr,
};

use super::event_bus::BusEvent;

/// Rows one relay pass takes.
pub const BATCH: u64 = 256;

/// Any key will do as long as every replica uses the same one: it serialises the relays of
/// all replicas (PostgreSQL), so events leave the outbox in the order they entered it.
const RELAY_LOCK: i64 = 0x4155_5255_4d5f_4f42;

/// Writes `event` through `conn`, which must be the transaction making the change the event
/// reports: the event exists exactly when the change does.
///
/// On SQLite the row is numbered here: one transaction writes at a time, so the next number
/// inside a writing transaction is the order of commit, and the database bus needs no
/// numbering pass (nor its write transaction) after commit. PostgreSQL commits concurrent
/// transactions in any order, so there the relay numbers rows after commit.
pub async fn append<C: ConnectionTrait, E: BusEvent>(conn: &C, event: &E) -> Result<(), DbErr> {
    let payload = serde_json::to_string(event).map_err(|e| DbErr::Custom(e.to_string()))?;
    let (event_id, subject, now) = (uuid::Uuid::now_v7(), event.subject(), crate::clock::now());
    if conn.get_database_backend() == DatabaseBackend::Sqlite {
        conn.execute_raw(sea_orm::Statement::from_sql_and_values(
            DatabaseBackend::Sqlite,
            "INSERT INTO event_outbox (event_id, subject, payload, created_at, position) \
             VALUES (?, ?, ?, ?, (SELECT COALESCE(MAX(position), 0) + 1 FROM event_outbox))",
            [event_id.into(), subject.into(), payload.into(), now.into()],
        ))
        .await?;
        return Ok(());
    }
    let row = event_outbox::ActiveModel {
        id: sea_orm::NotSet,
        event_id: sea_orm::Set(event_id),
        subject: sea_orm::Set(subject),
        payload: sea_orm::Set(payload),
        created_at: sea_orm::Set(now),
        position: sea_orm::Set(None),
    };
    Entity::insert(row).exec_without_returning(conn).await?;
    Ok(())
}

/// Inside a relay transaction on PostgreSQL: waits for the other replicas' relays to finish
/// their pass. SQLite has one writer at a time already.
pub async fn lock_relay<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    if conn.get_database_backend() == DatabaseBackend::Postgres {
        conn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({RELAY_LOCK})"))
            .await?;
    }
    Ok(())
}

/// The oldest rows waiting for a relay, committed at least `min_age` ago (the relay-delay
/// setting; zero in production): every row when JetStream is the bus (relayed rows are
/// deleted), the unnumbered ones when the database is.
pub async fn pending<C: ConnectionTrait>(
    conn: &C,
    jetstream: bool,
    min_age: std::time::Duration,
) -> Result<Vec<event_outbox::Model>, DbErr> {
    let mut query = Entity::find();
    if !jetstream {
        query = query.filter(Column::Position.is_null());
    }
    if !min_age.is_zero() {
        let cutoff = crate::clock::now()
            - chrono::Duration::from_std(min_age).unwrap_or(chrono::Duration::zero());
        query = query.filter(Column::CreatedAt.lte(cutoff));
    }
    query.order_by_asc(Column::Id).limit(BATCH).all(conn).await
}

/// Deletes relayed rows (the bus holds them now).
pub async fn remove<C: ConnectionTrait>(conn: &C, ids: Vec<i64>) -> Result<(), DbErr> {
    Entity::delete_many()
        .filter(Column::Id.is_in(ids))
        .exec(conn)
        .await?;
    Ok(())
}

/// The highest position given so far, 0 when none.
pub async fn last_position<C: ConnectionTrait>(conn: &C) -> Result<i64, DbErr> {
    let max: Option<Option<i64>> = Entity::find()
        .select_only()
        .column_as(Column::Position.max(), "max")
        .into_tuple()
        .one(conn)
        .await?;
    Ok(max.flatten().unwrap_or(0))
}

/// The lowest position still held, if any.
pub async fn first_position<C: ConnectionTrait>(conn: &C) -> Result<Option<i64>, DbErr> {
    let min: Option<Option<i64>> = Entity::find()
        .select_only()
        .column_as(Column::Position.min(), "min")
        .into_tuple()
        .one(conn)
        .await?;
    Ok(min.flatten())
}

/// Gives `rows` the positions after `last`, in their order (the database is the bus).
pub async fn number<C: ConnectionTrait>(
    conn: &C,
    rows: &[event_outbox::Model],
    last: i64,
) -> Result<(), DbErr> {
    for (i, row) in rows.iter().enumerate() {
        let position = last + i64::try_from(i).unwrap_or(i64::MAX - last) + 1;
        Entity::update_many()
            .col_expr(Column::Position, Expr::value(position))
            .filter(Column::Id.eq(row.id))
            .exec(conn)
            .await?;
    }
    Ok(())
}

/// Up to `limit` numbered rows after position `after`, in order.
pub async fn after<C: ConnectionTrait>(
    conn: &C,
    after: i64,
    limit: u64,
) -> Result<Vec<event_outbox::Model>, DbErr> {
    Entity::find()
        .filter(Column::Position.gt(after))
        .order_by_asc(Column::Position)
        .limit(limit)
        .all(conn)
        .await
}

/// Drops numbered rows older than `cutoff`, always keeping the newest one: it tells a
/// resuming client whether its cursor is known.
pub async fn sweep<C: ConnectionTrait>(conn: &C, cutoff: DateTime<Utc>) -> Result<u64, DbErr> {
    let last = last_position(conn).await?;
    let done = Entity::delete_many()
        .filter(Column::Position.is_not_null())
        .filter(Column::Position.lt(last))
        .filter(Column::CreatedAt.lt(cutoff))
        .exec(conn)
        .await?;
    Ok(done.rows_affected)
}

/// Rows not on the bus yet and when the oldest was written: every row when JetStream is the
/// bus (`delivered` is `None`); when the database is, those not numbered yet or numbered past
/// `delivered`, the last position this replica fanned out.
pub async fn depth<C: ConnectionTrait>(
    conn: &C,
    delivered: Option<i64>,
) -> Result<(i64, Option<DateTime<Utc>>), DbErr> {
    let mut query = Entity::find()
        .select_only()
        .column_as(Column::Id.count(), "n")
        .column_as(Column::CreatedAt.min(), "oldest");
    if let Some(delivered) = delivered {
        query = query.filter(
            sea_orm::Condition::any()
                .add(Column::Position.is_null())
                .add(Column::Position.gt(delivered)),
        );
    }
    let row: Option<(i64, Option<DateTime<Utc>>)> = query.into_tuple().one(conn).await?;
    Ok(row.unwrap_or((0, None)))
}
