//! Database connection: one pool for PostgreSQL or SQLite, chosen by the URL, with a counter of
//! executed statements (exported as a metric; tests use it to bound N+1 queries).

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};

use super::DependencyStatus;
use crate::config::Config;

/// Counts SQL statements executed through the pool.
#[derive(Debug, Default, Clone)]
pub struct StatementCounter(Arc<AtomicU64>);

impl StatementCounter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Opens the pool. SQLite gets WAL and a busy timeout so concurrent writers wait, not fail.
pub async fn connect(config: &Config) -> anyhow::Result<(DatabaseConnection, StatementCounter)> {
    let url = config.database_url.expose();
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(config.database_max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(3))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false);
    if config.is_sqlite() {
        // One writer at a time in SQLite; a small pool avoids lock thrash.
        options.max_connections(config.database_max_connections.min(4));
        options.map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
        });
    }
    let mut db = Database::connect(options)
        .await
        .map_err(|e| anyhow::anyhow!("AURUM_DATABASE_URL ({}): {e}", config.database_url))?;
    let counter = StatementCounter::default();
    let inner = counter.0.clone();
    // Registered on the first statement (the server installs its recorder before connecting)
    // and then reused: looking a labelled key up in the recorder on every statement costs
    // more than counting it.
    let handles = OnceLock::new();
    db.set_metric_callback(move |info| {
        inner.fetch_add(1, Ordering::Relaxed);
        tracing::trace!(target: "aurum::sql", sql = %info.statement.sql, elapsed_us = info.elapsed.as_micros());
        let (ok, failed, duration) = handles.get_or_init(|| {
            (
                metrics::counter!("aurum_db_statements_total", "failed" => "false"),
                metrics::counter!("aurum_db_statements_total", "failed" => "true"),
                metrics::histogram!("aurum_db_statement_duration_seconds"),
            )
        });
        if info.failed { failed } else { ok }.increment(1);
        duration.record(info.elapsed.as_secs_f64());
    });
    Ok((db, counter))
}

/// Restricts a query to `scope` (a tenant) when the caller has one; no condition otherwise.
pub fn tenant_condition<C: sea_orm::ColumnTrait>(
    column: C,
    scope: Option<&str>,
) -> sea_orm::Condition {
    match scope {
        Some(t) => sea_orm::Condition::all().add(column.eq(t)),
        None => sea_orm::Condition::all(),
    }
}

/// Readiness probe: a trivial statement within a second.
pub async fn check(db: &DatabaseConnection) -> DependencyStatus {
    match tokio::time::timeout(Duration::from_secs(1), db.execute_unprepared("SELECT 1")).await {
        Ok(Ok(_)) => DependencyStatus::Ok,
        Ok(Err(e)) => DependencyStatus::down(e),
        Err(_) => DependencyStatus::down("timed out after 1 s"),
    }
}

/// Starts a transaction that will write. On SQLite it takes the write lock up front
/// (`BEGIN IMMEDIATE`), so a read-then-write transaction waits for the lock instead of failing
/// with "database is locked" when it upgrades; PostgreSQL ignores the option.
pub async fn begin_write(
    db: &DatabaseConnection,
) -> Result<sea_orm::DatabaseTransaction, sea_orm::DbErr> {
    use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
}

/// `select` as a row lock for the rest of `txn`: `FOR UPDATE` on PostgreSQL; unchanged on
/// SQLite, whose write transaction (`begin_write`) already holds the only write lock.
pub fn for_update<E: sea_orm::EntityTrait>(
    select: sea_orm::Select<E>,
    txn: &sea_orm::DatabaseTransaction,
) -> sea_orm::Select<E> {
    use sea_orm::QuerySelect;
    if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
        select.lock_exclusive()
    } else {
        select
    }
}
