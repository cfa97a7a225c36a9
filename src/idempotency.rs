//! Idempotency of mutations: every mutation that takes a `requestId` claims the key
//! (caller scope, requestId) inside its own write transaction, through this module, on both
//! databases. Domains only say what their operation is called and what its canonical input
//! is; everything about keys lives here.
//!
//! # Contract
//! - Same key, same input (SHA-256 fingerprint of the operation name and its canonical
//!   input): the first call's answer, replayed byte for byte from what it stored.
//! - Same key, different input: `IDEMPOTENCY_KEY_REUSED`.
//! - Same key while the first call is still running: on PostgreSQL the key insert also takes
//!   a transaction-scoped advisory lock on a hash of the key (`pg_try_advisory_xact_lock`); a
//!   second call that cannot take it within 250 ms answers `IDEMPOTENCY_IN_PROGRESS` (retry
//!   shortly; the lock dies with the first transaction, also when its process is killed; the
//!   short wait covers a failed call whose rollback the pool has not flushed yet). On
//!   SQLite every write transaction takes the write lock first (`BEGIN IMMEDIATE`,
//!   `infra::db::begin_write`), so the second call waits for the first and then replays.
//! - Keys are scoped per caller (one user or one API key): two callers never see each
//!   other's answers.
//! - Keys are kept [`RETENTION_HOURS`], then [`sweep`] deletes them.
//!
//! # Why the key lives in the effect's transaction
//! The key row is inserted first in the transaction that makes the change, and the answer is
//! stored in it before commit ([`claim`] with a known answer, or [`store`] once it is known).
//! Key and effect commit together or not at all: a crash at any point leaves both or
//! neither, never a key without its effect, and a retry after a lost answer replays it.
//! Calls that change nothing (validation errors, `NOT_FOUND`, refusals) roll back and store
//! nothing, so a later retry with the same key may still succeed; a call that commits an
//! effect other than its own answer (an expiry found on the way) gives its key back with
//! [`release`]. The database is the only store: there is no Redis fast path to disagree with.
//!
//! This module knows no domain and no transport: it takes a `Caller` and a transaction.

use chrono::{DateTime, Utc};
use entity::idempotency_key;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter,
    Statement, Value,
};
use serde::{Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};

use crate::{
    auth::{Caller, Principal},
    error::{AppError, AppResult},
};

/// How long a key (and its stored answer) is kept; at least 24 h by contract.
pub const RETENTION_HOURS: i64 = 25;
/// Longest accepted `requestId`.
pub const REQUEST_ID_MAX: usize = 128;

/// The idempotency scope of a caller: one user or one API key.
pub fn scope(caller: &Caller) -> String {
    match caller {
        Caller::User {
            id,
            principal: Principal::Person,
            ..
        } => format!("user:{id}"),
        Caller::User {
            id,
            principal: Principal::ApiKey,
            ..
        } => format!("key:{id}"),
        Caller::System => "system".into(),
        Caller::Anonymous => "anonymous".into(),
    }
}

/// SHA-256 (hex) of an operation and its canonical input (a JSON value built by the caller
/// in a fixed field order). Equal inputs give equal fingerprints; any change gives another.
pub fn fingerprint(operation: &str, canonical: &serde_json::Value) -> String {
    let mut h = Sha256::new();
    h.update(operation.as_bytes());
    h.update([0]);
    h.update(canonical.to_string().as_bytes());
    hex::encode(h.finalize())
}

/// The 64-bit key of the PostgreSQL advisory lock held while a call with this (caller scope,
/// request id) runs. A collision of two keys only makes one of them answer
/// `IDEMPOTENCY_IN_PROGRESS` while the other runs.
pub fn lock_key(scope: &str, request_id: &str) -> i64 {
    let mut h = Sha256::new();
    h.update(scope.as_bytes());
    h.update([0]);
    h.update(request_id.as_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// One call's key: who calls, its `requestId`, the operation and the fingerprint of its input.
#[derive(Debug, Clone)]
pub struct Key {
    scope: String,
    request_id: String,
    operation: &'static str,
    fingerprint: String,
}

impl Key {
    /// The key of `operation` called by `caller` with `request_id` and the canonical input
    /// `input`. A request id that is empty, longer than [`REQUEST_ID_MAX`] characters or holds
    /// control characters is `BAD_USER_INPUT` (field `requestId`); surrounding blanks are
    /// trimmed.
    pub fn new(
        caller: &Caller,
        request_id: &str,
        operation: &'static str,
        input: &serde_json::Value,
    ) -> AppResult<Self> {
        let id = request_id.trim();
        let problem = if id.is_empty() {
            Some("requestId must not be empty".to_owned())
        } else if id.chars().count() > REQUEST_ID_MAX {
            Some(format!(
                "requestId must be at most {REQUEST_ID_MAX} characters"
            ))
        } else if id.chars().any(char::is_control) {
            Some("requestId must not contain control characters".to_owned())
        } else {
            None
        };
        if let Some(message) = problem {
            return Err(AppError::bad_field("requestId", message));
        }
        Ok(Self {
            scope: scope(caller),
            request_id: id.to_owned(),
            operation,
            fingerprint: fingerprint(operation, input),
        })
    }

    /// The caller's scope (`user:<id>`, `key:<id>`), as recorded next to the effect.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// The client's `requestId`, trimmed.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }
}

/// A statement written with `$n` placeholders, in the transaction's dialect (SQLite reads
/// `?n`: the same numbered parameters).
fn stmt(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    match backend {
        DbBackend::Sqlite => Statement::from_sql_and_values(backend, sql.replace('$', "?"), values),
        _ => Statement::from_sql_and_values(backend, sql, values),
    }
}

fn encode(answer: &impl Serialize) -> AppResult<String> {
    serde_json::to_string(answer)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("encoding an idempotent answer: {e}")))
}

fn decode<T: DeserializeOwned>(stored: &str) -> AppResult<T> {
    serde_json::from_str(stored)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("decoding a stored answer: {e}")))
}

/// Claims `key` inside `txn`, the transaction that will make the call's change.
///
/// - `Ok(None)`: the first call with this key; go ahead. `answer`, when the call's answer is
///   already known, is stored with the key now; otherwise [`store`] must store it before
///   commit.
/// - `Ok(Some(previous))`: the same call was done before; answer `previous` and change
///   nothing (drop the transaction).
/// - `IDEMPOTENCY_KEY_REUSED` / `IDEMPOTENCY_IN_PROGRESS` as the module documentation says.
pub async fn claim<T: Serialize + DeserializeOwned>(
    txn: &DatabaseTransaction,
    key: &Key,
    answer: Option<&T>,
    now: DateTime<Utc>,
) -> AppResult<Option<T>> {
    let answer = answer.map(encode).transpose()?.unwrap_or_default();
    let backend = txn.get_database_backend();
    let expires = now + chrono::Duration::hours(RETENTION_HOURS);
    let mut values: Vec<Value> = vec![
        key.scope.clone().into(),
        key.request_id.clone().into(),
        key.operation.into(),
        key.fingerprint.clone().into(),
        now.into(),
        expires.into(),
        answer.into(),
    ];
    let sql = if backend == DbBackend::Postgres {
        values.push(lock_key(&key.scope, &key.request_id).into());
        "INSERT INTO idempotency_keys (caller, request_id, operation, fingerprint, response, \
         created_at, expires_at) SELECT $1, $2, $3, $4, $7, $5, $6 \
         WHERE pg_try_advisory_xact_lock($8) ON CONFLICT (caller, request_id) DO NOTHING"
    } else {
        "INSERT INTO idempotency_keys (caller, request_id, operation, fingerprint, response, \
         created_at, expires_at) VALUES ($1, $2, $3, $4, $7, $5, $6) \
         ON CONFLICT (caller, request_id) DO NOTHING"
    };
    let mut waited = 0;
    loop {
        let inserted = txn.execute_raw(stmt(backend, sql, values.clone())).await?;
        if inserted.rows_affected() == 1 {
            return Ok(None);
        }
        let existing =
            idempotency_key::Entity::find_by_id((key.scope.clone(), key.request_id.clone()))
                .one(txn)
                .await?;
        match existing {
            Some(k) if k.fingerprint != key.fingerprint => {
                return Err(AppError::IdempotencyKeyReused);
            }
            Some(k) if !k.response.is_empty() => return decode(&k.response).map(Some),
            // No row: another transaction holds the key's advisory lock. That is a call still
            // running, or one that just failed whose connection has not sent its rollback yet
            // (the pool flushes it moments after the answer left): look again briefly before
            // calling it in progress.
            None if backend == DbBackend::Postgres && waited < LOCK_RETRIES => {
                waited += 1;
                tokio::time::sleep(LOCK_RETRY_PAUSE).await;
            }
            // Still no row, or an empty answer (the first call's transaction has not stored
            // it yet).
            _ => return Err(AppError::IdempotencyInProgress),
        }
    }
}

/// How often, and how far apart, a claim that found the key's advisory lock taken looks again
/// (250 ms in all: well within "at once" for a caller, long enough for a rollback in flight).
const LOCK_RETRIES: u32 = 5;
const LOCK_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// Stores the first call's answer with its key, in the effect's transaction (for calls whose
/// answer is known only after the change).
pub async fn store(txn: &DatabaseTransaction, key: &Key, answer: &impl Serialize) -> AppResult<()> {
    let answer = encode(answer)?;
    txn.execute_raw(stmt(
        txn.get_database_backend(),
        "UPDATE idempotency_keys SET response = $1 WHERE caller = $2 AND request_id = $3",
        vec![
            answer.into(),
            key.scope.clone().into(),
            key.request_id.clone().into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Gives the key back inside `txn`: for a transaction that commits an effect which is not
/// this call's answer (an expiry found on the way), so a corrected retry with the same key
/// can still act.
pub async fn release(txn: &DatabaseTransaction, key: &Key) -> AppResult<()> {
    txn.execute_raw(stmt(
        txn.get_database_backend(),
        "DELETE FROM idempotency_keys WHERE caller = $1 AND request_id = $2",
        vec![key.scope.clone().into(), key.request_id.clone().into()],
    ))
    .await?;
    Ok(())
}

/// Deletes keys past their retention; safe on every replica at once. Returns how many.
pub async fn sweep(db: &impl ConnectionTrait, now: DateTime<Utc>) -> AppResult<u64> {
    let deleted = idempotency_key::Entity::delete_many()
        .filter(idempotency_key::Column::ExpiresAt.lt(now))
        .exec(db)
        .await?;
    Ok(deleted.rows_affected)
}

/// How often every replica deletes keys past retention.
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Starts the key sweeper on the current runtime: [`sweep`] every `every` until `shutdown`.
/// A failed sweep is logged and the next tick tries again.
pub fn spawn_sweeper(
    db: sea_orm::DatabaseConnection,
    every: std::time::Duration,
    shutdown: crate::infra::shutdown::Shutdown,
) {
    shutdown.clone().spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match sweep(&db, crate::clock::now()).await {
                Ok(0) => {}
                Ok(deleted) => {
                    tracing::info!(idempotency.keys_deleted = deleted, "idempotency sweep")
                }
                Err(e) => tracing::warn!(
                    error.code = e.code(),
                    error.cause = ?e,
                    "idempotency sweep failed"
                ),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> Caller {
        Caller::System
    }

    #[test]
    fn fingerprints_follow_the_input() {
        let a = fingerprint("reserve", &serde_json::json!({ "amount": 1 }));
        assert_eq!(
            a,
            fingerprint("reserve", &serde_json::json!({ "amount": 1 }))
        );
        assert_ne!(
            a,
            fingerprint("reserve", &serde_json::json!({ "amount": 2 }))
        );
        assert_ne!(
            a,
            fingerprint("commit", &serde_json::json!({ "amount": 1 }))
        );
    }

    #[test]
    fn lock_keys_separate_callers() {
        assert_eq!(lock_key("user:a", "r1"), lock_key("user:a", "r1"));
        assert_ne!(lock_key("user:a", "r1"), lock_key("user:b", "r1"));
        assert_ne!(lock_key("user:a", "r1"), lock_key("user:a", "r2"));
    }

    #[test]
    fn request_ids_are_validated_and_trimmed() {
        let input = serde_json::json!({});
        let key = Key::new(&user(), "  r-1 ", "op", &input);
        assert_eq!(key.as_ref().map(Key::request_id).ok(), Some("r-1"));
        for bad in ["", "   ", "a\nb", &"x".repeat(REQUEST_ID_MAX + 1)] {
            let err = Key::new(&user(), bad, "op", &input).err();
            assert_eq!(
                err.as_ref().map(AppError::code),
                Some("BAD_USER_INPUT"),
                "{bad:?}"
            );
        }
        assert!(Key::new(&user(), &"é".repeat(REQUEST_ID_MAX), "op", &input).is_ok());
    }
}
