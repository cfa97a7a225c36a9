//! Budget rules applied in transactions: every change is a conditional UPDATE on the budget
//! row (never read-then-write), appends its ledger row, writes its audit row and, for the
//! spend mutations, its idempotency key, all in one transaction; events are published after
//! commit. See the module documentation of `crate::budget` for the idempotency design.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use chrono::{DateTime, Utc};
use entity::{budget, budget_reservation, budget_transaction, idempotency_key};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend,
    EntityTrait, FromQueryResult, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Statement,
    Value,
    sea_query::{LockBehavior, LockType},
};
use serde_json::json;
use uuid::Uuid;

use super::{
    events::{BudgetEvent, BudgetEventKind},
    model::{
        self, BudgetPeriod, KEY_RETENTION_HOURS, LedgerKind, ReservationStatus, available,
        format_percentages, newly_crossed, parse_percentages,
    },
};
use crate::{
    audit::{self, AuditEntry},
    auth::{Caller, Principal, RequestMeta},
    clock,
    error::{AppError, AppResult},
    events::{Bus, DomainEvent},
    infra::db::{self, tenant_condition},
    pagination::{Page, PageRequest, keyset_page},
};

/// Every column of `budgets`, for `RETURNING`.
const BUDGET_COLUMNS: &str = "id, tenant_id, project_id, total, used, reserved, period, \
     period_start, period_end, alert_thresholds, alerts_sent, version, created_at, updated_at";
/// Every column of `budget_reservations`, for `RETURNING`.
const RESERVATION_COLUMNS: &str = "id, budget_id, tenant_id, project_id, amount, \
     actual_amount, status, expires_at, task_id, model, caller, request_id, created_at, resolved_at";

/// The reservation check and the reservation itself, in one statement: `$1` amount, `$2` now,
/// `$3` budget id. No row back = not found, over the limit, or the period ended.
pub const RESERVE_SQL: &str = "UPDATE budgets SET reserved = reserved + $1, version = version + 1, \
     updated_at = $2 WHERE id = $3 \
     AND used + reserved + $1 <= total AND (period_end IS NULL OR period_end > $2) RETURNING ";
/// Resolves a live reservation once: `$1` new status, `$2` actual amount (null for a
/// release), `$3` now, `$4` id. Past its TTL or already resolved = no row.
pub const RESOLVE_SQL: &str = "UPDATE budget_reservations SET status = $1, actual_amount = $2, \
     resolved_at = $3 WHERE id = $4 AND status = 'reserved' AND expires_at > $3 \
     AND ($2 IS NULL OR amount >= $2) RETURNING ";
/// Moves a resolved reservation's amounts on its budget: `$1` to add to `used`, `$2` to take
/// from `reserved`, `$3` now, `$4` budget id; only inside the current period.
pub const SETTLE_SQL: &str = "UPDATE budgets SET used = used + $1, reserved = reserved - $2, \
     version = version + 1, updated_at = $3 WHERE id = $4 \
     AND (period_end IS NULL OR period_end > $3) RETURNING ";

/// Input of `createBudget`, before validation.
#[derive(Debug, Clone)]
pub struct NewBudget {
    pub tenant_id: String,
    pub project_id: String,
    pub total: i64,
    pub period: Option<BudgetPeriod>,
    pub alert_thresholds: Option<Vec<i32>>,
}

/// Input of `updateBudget`: only the given fields change.
#[derive(Debug, Clone, Default)]
pub struct BudgetChanges {
    pub total: Option<i64>,
    pub period: Option<BudgetPeriod>,
    pub alert_thresholds: Option<Vec<i32>>,
}

/// Input of `reserveBudget`, before validation.
#[derive(Debug, Clone)]
pub struct ReserveRequest {
    pub tenant_id: String,
    pub project_id: String,
    pub amount: i64,
    pub request_id: String,
    pub ttl_seconds: Option<i64>,
    pub task_id: Option<Uuid>,
    pub model: Option<String>,
}

/// Input of `commitBudget` (with an actual amount) or `releaseBudget` (without).
#[derive(Debug, Clone)]
pub struct ResolveRequest {
    pub reservation_id: Uuid,
    pub actual_amount: Option<i64>,
    pub request_id: String,
}

/// Filters of the reservation list.
#[derive(Debug, Clone, Default)]
pub struct ReservationFilter {
    pub status: Option<ReservationStatus>,
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub expired: u64,
    pub reset: u64,
    pub keys_deleted: u64,
}

/// The idempotency scope of a caller: one user or one API key.
pub fn idempotency_scope(caller: &Caller) -> String {
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

/// What the idempotency key said.
enum Claim {
    /// First call with this key: go ahead (the key row is part of this transaction).
    New,
    /// Same key, same input, already done: the stored result.
    Replay(String),
    Reused,
    InProgress,
}

/// A resolution that found no live reservation.
struct Refusal {
    error: AppError,
    /// Events of an expiry done on the way; `Some` = commit the transaction.
    expired: Option<Vec<BudgetEvent>>,
}

/// The budget domain's operations.
#[derive(Clone)]
pub struct BudgetService {
    db: DatabaseConnection,
    bus: Bus,
    postgres: bool,
    /// Budget ids by (tenant, project): a budget's id and key never change and budgets are
    /// never deleted, so a reserve can name its budget row before it takes the row's lock.
    ids: Arc<RwLock<HashMap<(String, String), Uuid>>>,
}

/// Budget ids kept in [`BudgetService::ids`] before it starts over.
const MAX_CACHED_IDS: usize = 100_000;

fn bad(field: &'static str, r: Result<i64, String>) -> AppResult<i64> {
    r.map_err(|m| AppError::bad_field(field, format!("{field} {m}")))
}

fn ident(field: &'static str, value: &str, max: usize) -> AppResult<String> {
    model::identifier(value, max).map_err(|m| AppError::bad_field(field, format!("{field} {m}")))
}

fn stored_period(b: &budget::Model) -> AppResult<BudgetPeriod> {
    BudgetPeriod::parse(&b.period).ok_or_else(|| {
        AppError::Internal(anyhow::anyhow!("budget {}: bad period {}", b.id, b.period))
    })
}

fn decode<T: serde::de::DeserializeOwned>(stored: &str) -> AppResult<T> {
    serde_json::from_str(stored)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("stored idempotent result: {e}")))
}

/// An idempotency key to claim: (caller scope, requestId), the operation and the fingerprint
/// of its input.
struct KeyClaim<'a> {
    scope: &'a str,
    request_id: &'a str,
    operation: &'a str,
    fingerprint: &'a str,
}

/// One ledger row, before it is written.
struct Ledger<'a> {
    kind: LedgerKind,
    after: &'a budget::Model,
    reservation_id: Option<Uuid>,
    delta_total: i64,
    delta_used: i64,
    delta_reserved: i64,
    actor: String,
    /// (idempotency scope, requestId) of the client call that caused it.
    key: Option<(&'a str, &'a str)>,
}

/// The ledger row of a balance change whose deltas are known before the budget row is
/// updated: [`BudgetService::budget_move`] takes the balances after the change from the row.
struct Move<'a> {
    kind: LedgerKind,
    reservation_id: Uuid,
    delta_used: i64,
    delta_reserved: i64,
    actor: String,
    key: Option<(&'a str, &'a str)>,
}

impl BudgetService {
    pub fn new(db: DatabaseConnection, bus: Bus) -> Self {
        let postgres = db.get_database_backend() == DbBackend::Postgres;
        Self {
            db,
            bus,
            postgres,
            ids: Arc::default(),
        }
    }

    /// The id of the budget of (tenant, project): cached, else read without a lock.
    async fn budget_id(&self, tenant_id: &str, project_id: &str) -> AppResult<Uuid> {
        let key = (tenant_id.to_owned(), project_id.to_owned());
        if let Some(id) = self.ids.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(*id);
        }
        let id = budget::Entity::find()
            .select_only()
            .column(budget::Column::Id)
            .filter(budget::Column::TenantId.eq(tenant_id))
            .filter(budget::Column::ProjectId.eq(project_id))
            .into_tuple::<Uuid>()
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::not_found("Budget", format!("{tenant_id}/{project_id}")))?;
        let mut ids = self.ids.write().unwrap_or_else(|e| e.into_inner());
        if ids.len() >= MAX_CACHED_IDS {
            ids.clear();
        }
        ids.insert(key, id);
        Ok(id)
    }

    /// Forgets a cached id that named no budget row (a row removed by hand).
    fn forget_id(&self, tenant_id: &str, project_id: &str) {
        self.ids
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(tenant_id.to_owned(), project_id.to_owned()));
    }

    /// A statement written with `$n` placeholders, in the backend's dialect (SQLite reads
    /// `?n`, the same numbered parameters).
    fn stmt(&self, sql: &str, values: Vec<Value>) -> Statement {
        if self.postgres {
            Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
        } else {
            Statement::from_sql_and_values(DbBackend::Sqlite, sql.replace('$', "?"), values)
        }
    }

    async fn budget_returning(
        &self,
        txn: &DatabaseTransaction,
        sql: &str,
        values: Vec<Value>,
    ) -> AppResult<Option<budget::Model>> {
        let row = txn
            .query_one_raw(self.stmt(&format!("{sql}{BUDGET_COLUMNS}"), values))
            .await?;
        Ok(row
            .map(|r| budget::Model::from_query_result(&r, ""))
            .transpose()?)
    }

    /// Runs `sql`, an UPDATE of one budget row ending in `RETURNING `, and when it changed the
    /// row, appends the ledger row `ledger` with the balances after it, and inserts
    /// `reservation` when given. On PostgreSQL all of it is one statement (a data-modifying
    /// CTE): the row lock the UPDATE takes is held until COMMIT, and every other writer of a
    /// hot budget waits out each client round trip inside that window; now only the COMMIT's
    /// is left.
    /// The rows that reference the budget are written after the UPDATE (here, in the same
    /// statement), never before it: a foreign-key check locks the budget row (KEY SHARE), and
    /// on a row another transaction is updating that makes PostgreSQL share its lock through
    /// a multixact, measured at twice the database CPU per reserve+commit on a hot budget.
    /// SQLite has no data-modifying CTEs; its one writer holds the whole database anyway.
    async fn budget_move(
        &self,
        txn: &DatabaseTransaction,
        sql: &str,
        values: Vec<Value>,
        ledger: &Move<'_>,
        reservation: Option<&budget_reservation::Model>,
    ) -> AppResult<Option<budget::Model>> {
        let Move {
            kind,
            reservation_id,
            delta_used,
            delta_reserved,
            ref actor,
            key,
        } = *ledger;
        if !self.postgres {
            let Some(after) = self.budget_returning(txn, sql, values).await? else {
                return Ok(None);
            };
            Self::append(
                txn,
                Ledger {
                    kind,
                    after: &after,
                    reservation_id: Some(reservation_id),
                    delta_total: 0,
                    delta_used,
                    delta_reserved,
                    actor: actor.clone(),
                    key,
                },
            )
            .await?;
            if let Some(r) = reservation {
                budget_reservation::Entity::insert(budget_reservation::ActiveModel::from(
                    r.clone(),
                ))
                .exec_without_returning(txn)
                .await?;
            }
            return Ok(Some(after));
        }
        let mut values = values;
        // Appends `added` to the statement's values and returns their `$n` placeholders.
        let mut params = |added: Vec<Value>| {
            let first = values.len() + 1;
            let list: Vec<String> = (first..first + added.len())
                .map(|n| format!("${n}"))
                .collect();
            values.extend(added);
            list
        };
        let l = params(vec![
            Uuid::now_v7().into(),
            reservation_id.into(),
            kind.as_str().into(),
            delta_used.into(),
            delta_reserved.into(),
            actor.clone().into(),
            key.map(|k| k.0.to_owned()).into(),
            key.map(|k| k.1.to_owned()).into(),
        ]);
        let mut sql = format!(
            "WITH after AS ({sql}{BUDGET_COLUMNS}), ledger AS (INSERT INTO budget_transactions \
             (id, budget_id, reservation_id, kind, delta_total, delta_used, delta_reserved, \
             total_after, used_after, reserved_after, version, actor, caller, request_id, at) \
             SELECT {}, id, {}, {}, 0, {}, {}, total, used, reserved, version, {}, {}, {}, \
             updated_at FROM after)",
            l[0], l[1], l[2], l[3], l[4], l[5], l[6], l[7],
        );
        if let Some(r) = reservation {
            let p = params(vec![
                r.id.into(),
                r.budget_id.into(),
                r.tenant_id.clone().into(),
                r.project_id.clone().into(),
                r.amount.into(),
                r.actual_amount.into(),
                r.status.clone().into(),
                r.expires_at.into(),
                r.task_id.into(),
                r.model.clone().into(),
                r.caller.clone().into(),
                r.request_id.clone().into(),
                r.created_at.into(),
                r.resolved_at.into(),
            ]);
            sql.push_str(&format!(
                ", placed AS (INSERT INTO budget_reservations ({RESERVATION_COLUMNS}) \
                 SELECT {} FROM after)",
                p.join(", ")
            ));
        }
        sql.push_str(&format!(" SELECT {BUDGET_COLUMNS} FROM after"));
        let row = txn.query_one_raw(self.stmt(&sql, values)).await?;
        Ok(row
            .map(|r| budget::Model::from_query_result(&r, ""))
            .transpose()?)
    }

    async fn publish(&self, events: Vec<BudgetEvent>) {
        for event in events {
            let id = event.budget.id;
            if let Err(e) = self.bus.publish(DomainEvent::Budget(event)).await {
                // The change is committed; subscribers miss this one event and can re-read.
                tracing::error!(budget.id = %id, error = %e, "publishing budget event failed");
            }
        }
    }

    fn event(
        kind: BudgetEventKind,
        budget: &budget::Model,
        reservation: Option<Uuid>,
    ) -> BudgetEvent {
        BudgetEvent {
            kind,
            budget: budget.clone(),
            reservation_id: reservation,
            threshold: None,
        }
    }

    /// Row lock on PostgreSQL; SQLite's write transaction already excludes other writers.
    fn locked<E: EntityTrait>(&self, select: sea_orm::Select<E>) -> sea_orm::Select<E> {
        if self.postgres {
            // FOR NO KEY UPDATE, the lock an UPDATE of non-key columns takes: unlike FOR
            // UPDATE it does not wait for the KEY SHARE locks that inserts of rows referencing
            // the budget (reservations, ledger rows) hold in other transactions.
            select.lock(sea_orm::sea_query::LockType::NoKeyUpdate)
        } else {
            select
        }
    }

    // ---- idempotency -------------------------------------------------------------------

    /// Claims (caller, requestId) inside `txn`, with the call's answer when it is already
    /// known (else empty, and [`Self::finish`] stores it). The key row commits or rolls back
    /// with the effect, so a crash can never leave a key without its effect or the reverse. On
    /// PostgreSQL a transaction-scoped advisory lock marks the key as in flight: a concurrent
    /// call with the same key gets `IDEMPOTENCY_IN_PROGRESS` at once instead of waiting.
    async fn claim(
        &self,
        txn: &DatabaseTransaction,
        key: KeyClaim<'_>,
        response: &str,
        now: DateTime<Utc>,
    ) -> AppResult<Claim> {
        let KeyClaim {
            scope,
            request_id,
            operation,
            fingerprint,
        } = key;
        let expires = now + chrono::Duration::hours(KEY_RETENTION_HOURS);
        let values = vec![
            scope.into(),
            request_id.into(),
            operation.into(),
            fingerprint.into(),
            now.into(),
            expires.into(),
            response.into(),
        ];
        let inserted = if self.postgres {
            let mut values = values;
            values.push(model::lock_key(scope, request_id).into());
            txn.execute_raw(self.stmt(
                "INSERT INTO idempotency_keys (caller, request_id, operation, fingerprint, response, \
                 created_at, expires_at) SELECT $1, $2, $3, $4, $7, $5, $6 \
                 WHERE pg_try_advisory_xact_lock($8) ON CONFLICT (caller, request_id) DO NOTHING",
                values,
            ))
            .await?
        } else {
            txn.execute_raw(self.stmt(
                "INSERT INTO idempotency_keys (caller, request_id, operation, fingerprint, response, \
                 created_at, expires_at) VALUES ($1, $2, $3, $4, $7, $5, $6) \
                 ON CONFLICT (caller, request_id) DO NOTHING",
                values,
            ))
            .await?
        };
        if inserted.rows_affected() == 1 {
            return Ok(Claim::New);
        }
        let existing =
            idempotency_key::Entity::find_by_id((scope.to_owned(), request_id.to_owned()))
                .one(txn)
                .await?;
        Ok(match existing {
            Some(k) if k.fingerprint == fingerprint && !k.response.is_empty() => {
                Claim::Replay(k.response)
            }
            Some(k) if k.fingerprint != fingerprint => Claim::Reused,
            _ => Claim::InProgress,
        })
    }

    /// Stores the first result with the key, in the effect's transaction.
    async fn finish(
        &self,
        txn: &DatabaseTransaction,
        scope: &str,
        request_id: &str,
        response: &str,
    ) -> AppResult<()> {
        txn.execute_raw(self.stmt(
            "UPDATE idempotency_keys SET response = $1 WHERE caller = $2 AND request_id = $3",
            vec![response.into(), scope.into(), request_id.into()],
        ))
        .await?;
        Ok(())
    }

    /// Gives the key back when the transaction commits without a stored result (an expiry
    /// found on the way), so a corrected retry with the same key can still act.
    async fn unclaim(
        &self,
        txn: &DatabaseTransaction,
        scope: &str,
        request_id: &str,
    ) -> AppResult<()> {
        txn.execute_raw(self.stmt(
            "DELETE FROM idempotency_keys WHERE caller = $1 AND request_id = $2",
            vec![scope.into(), request_id.into()],
        ))
        .await?;
        Ok(())
    }

    // ---- ledger ------------------------------------------------------------------------

    async fn append<C: ConnectionTrait>(conn: &C, l: Ledger<'_>) -> AppResult<()> {
        let row = budget_transaction::Model {
            id: Uuid::now_v7(),
            budget_id: l.after.id,
            reservation_id: l.reservation_id,
            kind: l.kind.as_str().into(),
            delta_total: l.delta_total,
            delta_used: l.delta_used,
            delta_reserved: l.delta_reserved,
            total_after: l.after.total,
            used_after: l.after.used,
            reserved_after: l.after.reserved,
            version: l.after.version,
            actor: l.actor,
            caller: l.key.map(|k| k.0.to_owned()),
            request_id: l.key.map(|k| k.1.to_owned()),
            at: l.after.updated_at,
        };
        budget_transaction::Entity::insert(budget_transaction::ActiveModel::from(row))
            .exec_without_returning(conn)
            .await?;
        Ok(())
    }

    /// Records newly crossed thresholds of `after` (once per period) and returns their events.
    async fn thresholds(
        &self,
        txn: &DatabaseTransaction,
        after: &mut budget::Model,
    ) -> AppResult<Vec<BudgetEvent>> {
        let configured = parse_percentages(&after.alert_thresholds);
        let mut sent = parse_percentages(&after.alerts_sent);
        let crossed = newly_crossed(&configured, &sent, after.used, after.total);
        if crossed.is_empty() {
            return Ok(Vec::new());
        }
        sent.extend(&crossed);
        sent.sort_unstable();
        after.alerts_sent = format_percentages(&sent);
        txn.execute_raw(self.stmt(
            "UPDATE budgets SET alerts_sent = $1 WHERE id = $2",
            vec![after.alerts_sent.clone().into(), after.id.into()],
        ))
        .await?;
        Ok(crossed
            .into_iter()
            .map(|t| BudgetEvent {
                kind: BudgetEventKind::ThresholdReached,
                budget: after.clone(),
                reservation_id: None,
                threshold: Some(t),
            })
            .collect())
    }

    /// Starts the period window containing `now` on `current` (a row this transaction holds
    /// locked): `used` back to 0, announced thresholds cleared, `reserved` untouched.
    async fn reset<C: ConnectionTrait>(
        &self,
        conn: &C,
        current: &budget::Model,
        now: DateTime<Utc>,
    ) -> AppResult<budget::Model> {
        let period = stored_period(current)?;
        let (start, end) = period.window(now);
        let row = conn
            .query_one_raw(self.stmt(
                &format!(
                    "UPDATE budgets SET used = 0, alerts_sent = '', period_start = $1, \
                     period_end = $2, version = version + 1, updated_at = $3 WHERE id = $4 \
                     AND period_end IS NOT NULL AND period_end <= $3 RETURNING {BUDGET_COLUMNS}"
                ),
                vec![start.into(), end.into(), now.into(), current.id.into()],
            ))
            .await?
            .ok_or_else(|| {
                AppError::Internal(anyhow::anyhow!("budget {}: reset lost its row", current.id))
            })?;
        let after = budget::Model::from_query_result(&row, "")?;
        Self::append(
            conn,
            Ledger {
                kind: LedgerKind::Reset,
                after: &after,
                reservation_id: None,
                delta_total: 0,
                delta_used: after.used - current.used,
                delta_reserved: 0,
                actor: Caller::System.audit_label(),
                key: None,
            },
        )
        .await?;
        audit::record(
            conn,
            &RequestMeta::system("budget-period"),
            AuditEntry {
                action: "budget.reset",
                entity_type: "budget",
                entity_id: Some(after.id.to_string()),
                tenant_id: Some(&after.tenant_id),
                details: json!({ "usedBefore": current.used, "periodStart": start }),
            },
        )
        .await?;
        Ok(after)
    }

    /// Expires a live reservation past its TTL: status `expired`, its amount out of
    /// `reserved`. `None` when someone else resolved it first.
    async fn expire(
        &self,
        txn: &DatabaseTransaction,
        reservation: Uuid,
        now: DateTime<Utc>,
    ) -> AppResult<Option<BudgetEvent>> {
        let row = txn
            .query_one_raw(self.stmt(
                &format!(
                    "UPDATE budget_reservations SET status = 'expired', resolved_at = $1 \
                     WHERE id = $2 AND status = 'reserved' AND expires_at <= $1 \
                     RETURNING {RESERVATION_COLUMNS}"
                ),
                vec![now.into(), reservation.into()],
            ))
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let r = budget_reservation::Model::from_query_result(&row, "")?;
        let after = self
            .budget_move(
                txn,
                "UPDATE budgets SET reserved = reserved - $1, version = version + 1, \
                 updated_at = $2 WHERE id = $3 RETURNING ",
                vec![r.amount.into(), now.into(), r.budget_id.into()],
                &Move {
                    kind: LedgerKind::Expire,
                    reservation_id: r.id,
                    delta_used: 0,
                    delta_reserved: -r.amount,
                    actor: Caller::System.audit_label(),
                    key: None,
                },
                None,
            )
            .await?
            .ok_or_else(|| {
                AppError::Internal(anyhow::anyhow!("reservation {} lost its budget", r.id))
            })?;
        audit::record(
            txn,
            &RequestMeta::system("budget-expiry"),
            AuditEntry {
                action: "budget.expire",
                entity_type: "budget_reservation",
                entity_id: Some(r.id.to_string()),
                tenant_id: Some(&r.tenant_id),
                details: json!({ "budgetId": r.budget_id, "amount": r.amount }),
            },
        )
        .await?;
        Ok(Some(Self::event(
            BudgetEventKind::Expired,
            &after,
            Some(r.id),
        )))
    }

    // ---- configuration -----------------------------------------------------------------

    pub async fn create_budget(
        &self,
        meta: &RequestMeta,
        input: NewBudget,
    ) -> AppResult<budget::Model> {
        let tenant_id = ident("tenantId", &input.tenant_id, model::TENANT_ID_MAX)?;
        let project_id = ident("projectId", &input.project_id, model::PROJECT_ID_MAX)?;
        let total = bad("total", model::total(input.total))?;
        let thresholds = model::thresholds(input.alert_thresholds.as_deref())
            .map_err(|m| AppError::bad_field("alertThresholds", m))?;
        if meta.caller.tenant().is_some_and(|t| t != tenant_id) {
            return Err(AppError::Forbidden);
        }
        let period = input.period.unwrap_or_default();
        let now = clock::now();
        let (start, end) = period.window(now);
        let model = budget::Model {
            id: Uuid::now_v7(),
            tenant_id,
            project_id,
            total,
            used: 0,
            reserved: 0,
            period: period.as_str().into(),
            period_start: start,
            period_end: end,
            alert_thresholds: format_percentages(&thresholds),
            alerts_sent: String::new(),
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let txn = db::begin_write(&self.db).await?;
        let inserted = budget::Entity::insert(budget::ActiveModel::from(model.clone()))
            .exec_without_returning(&txn)
            .await;
        if let Err(e) = inserted {
            return Err(match AppError::from(e) {
                AppError::Conflict(_) => AppError::Conflict(format!(
                    "a budget for tenant `{}` and project `{}` already exists",
                    model.tenant_id, model.project_id
                )),
                other => other,
            });
        }
        Self::append(
            &txn,
            Ledger {
                kind: LedgerKind::Configure,
                after: &model,
                reservation_id: None,
                delta_total: model.total,
                delta_used: 0,
                delta_reserved: 0,
                actor: meta.caller.audit_label(),
                key: None,
            },
        )
        .await?;
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: "budget.create",
                entity_type: "budget",
                entity_id: Some(model.id.to_string()),
                tenant_id: Some(&model.tenant_id),
                details: json!({ "projectId": model.project_id, "total": model.total, "period": model.period }),
            },
        )
        .await?;
        txn.commit().await?;
        self.publish(vec![Self::event(BudgetEventKind::Created, &model, None)])
            .await;
        Ok(model)
    }

    /// Changes the total, period or thresholds. A total below `used + reserved` is refused
    /// (`BAD_USER_INPUT`): the limit never drops under what is already spent or held. A new
    /// period starts its current window now and keeps `used`.
    pub async fn update_budget(
        &self,
        meta: &RequestMeta,
        id: Uuid,
        changes: BudgetChanges,
    ) -> AppResult<budget::Model> {
        let new_total = changes
            .total
            .map(|t| bad("total", model::total(t)))
            .transpose()?;
        let thresholds = changes
            .alert_thresholds
            .as_deref()
            .map(|t| {
                model::thresholds(Some(t)).map_err(|m| AppError::bad_field("alertThresholds", m))
            })
            .transpose()?;
        let txn = db::begin_write(&self.db).await?;
        let current = self
            .locked(budget::Entity::find_by_id(id).filter(tenant_condition(
                budget::Column::TenantId,
                meta.caller.tenant(),
            )))
            .one(&txn)
            .await?
            .ok_or_else(|| AppError::not_found("Budget", id))?;
        let total = new_total.unwrap_or(current.total);
        let held = current.used + current.reserved;
        if total < held {
            return Err(AppError::bad_field(
                "total",
                format!(
                    "total {total} is below what is used and reserved ({held}); release reservations or wait for the next period first"
                ),
            ));
        }
        let now = clock::now();
        let old_period = stored_period(&current)?;
        let period = changes.period.unwrap_or(old_period);
        let (start, end) = if period == old_period {
            (current.period_start, current.period_end)
        } else {
            period.window(now)
        };
        let thresholds = thresholds
            .map(|t| format_percentages(&t))
            .unwrap_or_else(|| current.alert_thresholds.clone());
        let mut after = self
            .budget_returning(
                &txn,
                "UPDATE budgets SET total = $1, period = $2, period_start = $3, period_end = $4, \
                 alert_thresholds = $5, version = version + 1, updated_at = $6 WHERE id = $7 RETURNING ",
                vec![
                    total.into(),
                    period.as_str().into(),
                    start.into(),
                    end.into(),
                    thresholds.into(),
                    now.into(),
                    id.into(),
                ],
            )
            .await?
            .ok_or_else(|| AppError::not_found("Budget", id))?;
        Self::append(
            &txn,
            Ledger {
                kind: LedgerKind::Configure,
                after: &after,
                reservation_id: None,
                delta_total: after.total - current.total,
                delta_used: 0,
                delta_reserved: 0,
                actor: meta.caller.audit_label(),
                key: None,
            },
        )
        .await?;
        let mut events = vec![Self::event(BudgetEventKind::Updated, &after, None)];
        events.extend(self.thresholds(&txn, &mut after).await?);
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: "budget.update",
                entity_type: "budget",
                entity_id: Some(id.to_string()),
                tenant_id: Some(&after.tenant_id),
                details: json!({ "total": after.total, "period": after.period, "alertThresholds": after.alert_thresholds }),
            },
        )
        .await?;
        txn.commit().await?;
        self.publish(events).await;
        Ok(after)
    }

    // ---- reads -------------------------------------------------------------------------

    fn budget_condition(scope: Option<&str>, tenant: Option<&str>) -> Condition {
        let mut cond = tenant_condition(budget::Column::TenantId, scope);
        if let Some(t) = tenant {
            cond = cond.add(budget::Column::TenantId.eq(t));
        }
        cond
    }

    pub async fn list_budgets(
        &self,
        scope: Option<&str>,
        tenant: Option<&str>,
        page: PageRequest,
    ) -> AppResult<Page<budget::Model>> {
        let select = budget::Entity::find().filter(Self::budget_condition(scope, tenant));
        let mut rows = keyset_page(select, budget::Column::Id, page, &self.db).await?;
        let now = clock::now();
        rows.items = rows
            .items
            .into_iter()
            .map(|b| model::as_of(b, now))
            .collect();
        Ok(rows)
    }

    pub async fn count_budgets(&self, scope: Option<&str>, tenant: Option<&str>) -> AppResult<u64> {
        Ok(budget::Entity::find()
            .filter(Self::budget_condition(scope, tenant))
            .count(&self.db)
            .await?)
    }

    pub async fn budget(&self, scope: Option<&str>, id: Uuid) -> AppResult<budget::Model> {
        budget::Entity::find_by_id(id)
            .filter(tenant_condition(budget::Column::TenantId, scope))
            .one(&self.db)
            .await?
            .map(|b| model::as_of(b, clock::now()))
            .ok_or_else(|| AppError::not_found("Budget", id))
    }

    pub async fn budget_by_key(
        &self,
        scope: Option<&str>,
        tenant: &str,
        project: &str,
    ) -> AppResult<budget::Model> {
        if scope.is_some_and(|s| s != tenant) {
            return Err(AppError::not_found("Budget", format!("{tenant}/{project}")));
        }
        budget::Entity::find()
            .filter(budget::Column::TenantId.eq(tenant))
            .filter(budget::Column::ProjectId.eq(project))
            .one(&self.db)
            .await?
            .map(|b| model::as_of(b, clock::now()))
            .ok_or_else(|| AppError::not_found("Budget", format!("{tenant}/{project}")))
    }

    fn reservation_condition(budget_id: Uuid, filter: &ReservationFilter) -> Condition {
        let mut cond = Condition::all().add(budget_reservation::Column::BudgetId.eq(budget_id));
        if let Some(s) = filter.status {
            cond = cond.add(budget_reservation::Column::Status.eq(s.as_str()));
        }
        cond
    }

    /// Reservations of a visible budget, oldest first.
    pub async fn list_reservations(
        &self,
        scope: Option<&str>,
        budget_id: Uuid,
        filter: &ReservationFilter,
        page: PageRequest,
    ) -> AppResult<Page<budget_reservation::Model>> {
        self.budget(scope, budget_id).await?;
        let select = budget_reservation::Entity::find()
            .filter(Self::reservation_condition(budget_id, filter));
        Ok(keyset_page(select, budget_reservation::Column::Id, page, &self.db).await?)
    }

    pub async fn count_reservations(
        &self,
        budget_id: Uuid,
        filter: &ReservationFilter,
    ) -> AppResult<u64> {
        Ok(budget_reservation::Entity::find()
            .filter(Self::reservation_condition(budget_id, filter))
            .count(&self.db)
            .await?)
    }

    /// Ledger rows of a visible budget, oldest first.
    pub async fn list_transactions(
        &self,
        scope: Option<&str>,
        budget_id: Uuid,
        page: PageRequest,
    ) -> AppResult<Page<budget_transaction::Model>> {
        self.budget(scope, budget_id).await?;
        let select = budget_transaction::Entity::find()
            .filter(budget_transaction::Column::BudgetId.eq(budget_id));
        Ok(keyset_page(select, budget_transaction::Column::Id, page, &self.db).await?)
    }

    pub async fn count_transactions(&self, budget_id: Uuid) -> AppResult<u64> {
        Ok(budget_transaction::Entity::find()
            .filter(budget_transaction::Column::BudgetId.eq(budget_id))
            .count(&self.db)
            .await?)
    }

    // ---- spending ----------------------------------------------------------------------

    /// Reserves `amount` on the budget of (tenant, project) if `used + reserved + amount ≤
    /// total`, in one conditional UPDATE. Idempotent per (caller, requestId).
    pub async fn reserve(
        &self,
        meta: &RequestMeta,
        input: ReserveRequest,
    ) -> AppResult<budget_reservation::Model> {
        let tenant_id = ident("tenantId", &input.tenant_id, model::TENANT_ID_MAX)?;
        let project_id = ident("projectId", &input.project_id, model::PROJECT_ID_MAX)?;
        let request_id = ident("requestId", &input.request_id, model::REQUEST_ID_MAX)?;
        let amount = bad("amount", model::positive_amount(input.amount))?;
        let ttl = bad("ttlSeconds", model::ttl_seconds(input.ttl_seconds))?;
        let llm = input
            .model
            .as_deref()
            .map(|m| ident("model", m, model::MODEL_MAX))
            .transpose()?;
        if meta.caller.tenant().is_some_and(|t| t != tenant_id) {
            return Err(AppError::not_found(
                "Budget",
                format!("{tenant_id}/{project_id}"),
            ));
        }
        let scope = idempotency_scope(&meta.caller);
        let fingerprint = model::fingerprint(
            "reserveBudget",
            &json!({
                "tenantId": tenant_id, "projectId": project_id, "amount": amount,
                "ttlSeconds": ttl, "taskId": input.task_id, "model": llm,
            }),
        );
        // Everything but the budget row's balances is known before the transaction: the key
        // is claimed with its answer, and the audit row written, before the conditional
        // UPDATE takes the row's lock, which is then held only for that UPDATE with its
        // ledger and reservation rows (one statement on PostgreSQL) and the COMMIT.
        let budget_id = self.budget_id(&tenant_id, &project_id).await?;
        let now = clock::now();
        let reservation = budget_reservation::Model {
            id: Uuid::now_v7(),
            budget_id,
            tenant_id: tenant_id.clone(),
            project_id: project_id.clone(),
            amount,
            actual_amount: None,
            status: ReservationStatus::Reserved.as_str().into(),
            expires_at: now + chrono::Duration::seconds(ttl),
            task_id: input.task_id,
            model: llm,
            caller: scope.clone(),
            request_id: request_id.clone(),
            created_at: now,
            resolved_at: None,
        };
        let response = serde_json::to_string(&reservation)
            .map_err(|e| AppError::Internal(anyhow::anyhow!("encoding reservation: {e}")))?;
        let txn = db::begin_write(&self.db).await?;
        match self
            .claim(
                &txn,
                KeyClaim {
                    scope: &scope,
                    request_id: &request_id,
                    operation: "reserveBudget",
                    fingerprint: &fingerprint,
                },
                &response,
                now,
            )
            .await?
        {
            Claim::New => {}
            Claim::Replay(stored) => {
                metrics::counter!("aurum_budget_operations_total", "operation" => "reserve", "outcome" => "replayed").increment(1);
                return decode(&stored);
            }
            Claim::Reused => return Err(AppError::IdempotencyKeyReused),
            Claim::InProgress => return Err(AppError::IdempotencyInProgress),
        }
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: "budget.reserve",
                entity_type: "budget_reservation",
                entity_id: Some(reservation.id.to_string()),
                tenant_id: Some(&tenant_id),
                details: json!({ "budgetId": budget_id, "amount": amount, "requestId": request_id }),
            },
        )
        .await?;
        let ledger = Move {
            kind: LedgerKind::Reserve,
            reservation_id: reservation.id,
            delta_used: 0,
            delta_reserved: amount,
            actor: meta.caller.audit_label(),
            key: Some((&scope, &request_id)),
        };
        let reserve = || {
            self.budget_move(
                &txn,
                RESERVE_SQL,
                vec![amount.into(), now.into(), budget_id.into()],
                &ledger,
                Some(&reservation),
            )
        };
        let mut events = Vec::new();
        let after = match reserve().await? {
            Some(after) => after,
            None => {
                let Some(current) = self
                    .locked(budget::Entity::find_by_id(budget_id))
                    .one(&txn)
                    .await?
                else {
                    self.forget_id(&tenant_id, &project_id);
                    return Err(AppError::not_found(
                        "Budget",
                        format!("{tenant_id}/{project_id}"),
                    ));
                };
                let current = if current.period_end.is_some_and(|end| end <= now) {
                    let reset = self.reset(&txn, &current, now).await?;
                    events.push(Self::event(BudgetEventKind::Reset, &reset, None));
                    reset
                } else {
                    current
                };
                match reserve().await? {
                    Some(after) => after,
                    None => {
                        metrics::counter!("aurum_budget_operations_total", "operation" => "reserve", "outcome" => "exceeded").increment(1);
                        return Err(AppError::BudgetExceeded {
                            requested: amount,
                            available: available(current.total, current.used, current.reserved),
                        });
                    }
                }
            }
        };
        txn.commit().await?;
        metrics::counter!("aurum_budget_operations_total", "operation" => "reserve", "outcome" => "ok").increment(1);
        events.push(Self::event(
            BudgetEventKind::Reserved,
            &after,
            Some(reservation.id),
        ));
        self.publish(events).await;
        Ok(reservation)
    }

    /// Commits (`actual_amount` given) or releases a live reservation, once. Idempotent per
    /// (caller, requestId). A reservation past its TTL is expired here (never committed) and
    /// answers `RESERVATION_EXPIRED`.
    pub async fn resolve(
        &self,
        meta: &RequestMeta,
        input: ResolveRequest,
    ) -> AppResult<budget_reservation::Model> {
        let request_id = ident("requestId", &input.request_id, model::REQUEST_ID_MAX)?;
        let (operation, label, status, kind, event_kind) = match input.actual_amount {
            Some(_) => (
                "commitBudget",
                "commit",
                ReservationStatus::Committed,
                LedgerKind::Commit,
                BudgetEventKind::Committed,
            ),
            None => (
                "releaseBudget",
                "release",
                ReservationStatus::Released,
                LedgerKind::Release,
                BudgetEventKind::Released,
            ),
        };
        if let Some(actual) = input.actual_amount {
            bad(
                "actualAmount",
                model::actual_amount(actual, model::MAX_TOKENS),
            )?;
        }
        let scope = idempotency_scope(&meta.caller);
        let fingerprint = model::fingerprint(
            operation,
            &json!({ "reservationId": input.reservation_id, "actualAmount": input.actual_amount }),
        );
        let now = clock::now();
        let txn = db::begin_write(&self.db).await?;
        match self
            .claim(
                &txn,
                KeyClaim {
                    scope: &scope,
                    request_id: &request_id,
                    operation,
                    fingerprint: &fingerprint,
                },
                "",
                now,
            )
            .await?
        {
            Claim::New => {}
            Claim::Replay(stored) => {
                metrics::counter!("aurum_budget_operations_total", "operation" => label, "outcome" => "replayed").increment(1);
                return decode(&stored);
            }
            Claim::Reused => return Err(AppError::IdempotencyKeyReused),
            Claim::InProgress => return Err(AppError::IdempotencyInProgress),
        }
        let row = txn
            .query_one_raw(self.stmt(
                &format!("{RESOLVE_SQL}{RESERVATION_COLUMNS}"),
                vec![
                    status.as_str().into(),
                    input.actual_amount.into(),
                    now.into(),
                    input.reservation_id.into(),
                ],
            ))
            .await?;
        let resolved = match row {
            Some(row) => budget_reservation::Model::from_query_result(&row, "")?,
            None => {
                let refusal = self
                    .refuse(&txn, meta, &scope, &request_id, &input, now)
                    .await?;
                if let Some(expired) = refusal.expired {
                    // The expiry found on the way is an effect of its own: keep it.
                    txn.commit().await?;
                    self.publish(expired).await;
                }
                return Err(refusal.error);
            }
        };
        if meta
            .caller
            .tenant()
            .is_some_and(|t| t != resolved.tenant_id)
        {
            // Another tenant's reservation: as if it did not exist (the update rolls back).
            return Err(AppError::not_found(
                "BudgetReservation",
                input.reservation_id,
            ));
        }
        // The audit row and the stored answer need only the reservation: written before
        // SETTLE takes the budget row's lock, which is then held for SETTLE with its ledger
        // row (one statement on PostgreSQL), a threshold mark when one is crossed, and the
        // COMMIT.
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: if input.actual_amount.is_some() {
                    "budget.commit"
                } else {
                    "budget.release"
                },
                entity_type: "budget_reservation",
                entity_id: Some(resolved.id.to_string()),
                tenant_id: Some(&resolved.tenant_id),
                details: json!({ "budgetId": resolved.budget_id, "amount": resolved.amount, "actualAmount": resolved.actual_amount, "requestId": request_id }),
            },
        )
        .await?;
        let response = serde_json::to_string(&resolved)
            .map_err(|e| AppError::Internal(anyhow::anyhow!("encoding reservation: {e}")))?;
        self.finish(&txn, &scope, &request_id, &response).await?;
        let actual = resolved.actual_amount.unwrap_or(0);
        let ledger = Move {
            kind,
            reservation_id: resolved.id,
            delta_used: actual,
            delta_reserved: -resolved.amount,
            actor: meta.caller.audit_label(),
            key: Some((&scope, &request_id)),
        };
        let settle = || {
            self.budget_move(
                &txn,
                SETTLE_SQL,
                vec![
                    actual.into(),
                    resolved.amount.into(),
                    now.into(),
                    resolved.budget_id.into(),
                ],
                &ledger,
                None,
            )
        };
        let mut events = Vec::new();
        let mut after = match settle().await? {
            Some(after) => after,
            None => {
                // The period ended since the last touch: start the new window first, then
                // count the actual amount in it.
                let current = self
                    .locked(budget::Entity::find_by_id(resolved.budget_id))
                    .one(&txn)
                    .await?
                    .ok_or_else(|| {
                        AppError::Internal(anyhow::anyhow!(
                            "reservation {} lost its budget",
                            resolved.id
                        ))
                    })?;
                let reset = self.reset(&txn, &current, now).await?;
                events.push(Self::event(BudgetEventKind::Reset, &reset, None));
                settle().await?.ok_or_else(|| {
                    AppError::Internal(anyhow::anyhow!(
                        "budget {}: settle after reset failed",
                        reset.id
                    ))
                })?
            }
        };
        events.push(Self::event(event_kind, &after, Some(resolved.id)));
        events.extend(self.thresholds(&txn, &mut after).await?);
        txn.commit().await?;
        metrics::counter!("aurum_budget_operations_total", "operation" => label, "outcome" => "ok")
            .increment(1);
        self.publish(events).await;
        Ok(resolved)
    }

    /// Why a resolution found no live reservation. A reservation past its TTL that no
    /// sweeper reached yet is expired in `txn` (never committed), with the caller's key given
    /// back: the caller must then commit `txn`.
    async fn refuse(
        &self,
        txn: &DatabaseTransaction,
        meta: &RequestMeta,
        scope: &str,
        request_id: &str,
        input: &ResolveRequest,
        now: DateTime<Utc>,
    ) -> AppResult<Refusal> {
        let current = budget_reservation::Entity::find_by_id(input.reservation_id)
            .filter(tenant_condition(
                budget_reservation::Column::TenantId,
                meta.caller.tenant(),
            ))
            .one(txn)
            .await?
            .ok_or_else(|| AppError::not_found("BudgetReservation", input.reservation_id))?;
        let error = match ReservationStatus::parse(&current.status) {
            Some(ReservationStatus::Committed) => AppError::AlreadyCommitted,
            Some(ReservationStatus::Released) => AppError::AlreadyReleased,
            Some(ReservationStatus::Expired) => AppError::ReservationExpired,
            Some(ReservationStatus::Reserved) if current.expires_at <= now => {
                let event = self.expire(txn, current.id, now).await?;
                self.unclaim(txn, scope, request_id).await?;
                return Ok(Refusal {
                    error: AppError::ReservationExpired,
                    expired: Some(event.into_iter().collect()),
                });
            }
            Some(ReservationStatus::Reserved) => {
                let actual = input.actual_amount.unwrap_or(0);
                AppError::bad_field(
                    "actualAmount",
                    format!(
                        "actualAmount {actual} is more than the reserved amount {}",
                        current.amount
                    ),
                )
            }
            None => AppError::Internal(anyhow::anyhow!(
                "reservation {}: bad status {}",
                current.id,
                current.status
            )),
        };
        Ok(Refusal {
            error,
            expired: None,
        })
    }

    // ---- sweeping ----------------------------------------------------------------------

    /// One sweep: expires up to `limit` reservations past their TTL, starts the new window
    /// of budgets whose period ended, and deletes idempotency keys past their retention.
    /// Safe on every replica at once: rows another sweeper holds are skipped (PostgreSQL
    /// `FOR UPDATE SKIP LOCKED`; SQLite has one writer), and every change is conditional on
    /// the state it found, so nothing is released twice.
    pub async fn sweep(&self, limit: u64) -> AppResult<SweepReport> {
        let mut report = SweepReport::default();
        let now = clock::now();
        let mut events = Vec::new();

        let txn = db::begin_write(&self.db).await?;
        let mut due = budget_reservation::Entity::find()
            .filter(budget_reservation::Column::Status.eq(ReservationStatus::Reserved.as_str()))
            .filter(budget_reservation::Column::ExpiresAt.lte(now))
            // One lock order over budgets for every sweeper.
            .order_by_asc(budget_reservation::Column::BudgetId)
            .limit(limit);
        if self.postgres {
            due = due.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        for r in due.all(&txn).await? {
            if let Some(event) = self.expire(&txn, r.id, now).await? {
                report.expired += 1;
                events.push(event);
            }
        }
        txn.commit().await?;

        let txn = db::begin_write(&self.db).await?;
        let mut ended = budget::Entity::find()
            .filter(budget::Column::PeriodEnd.is_not_null())
            .filter(budget::Column::PeriodEnd.lte(now))
            .order_by_asc(budget::Column::Id)
            .limit(limit);
        if self.postgres {
            ended = ended.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        for b in ended.all(&txn).await? {
            let after = self.reset(&txn, &b, now).await?;
            report.reset += 1;
            events.push(Self::event(BudgetEventKind::Reset, &after, None));
        }
        txn.commit().await?;

        let deleted = idempotency_key::Entity::delete_many()
            .filter(idempotency_key::Column::ExpiresAt.lt(now))
            .exec(&self.db)
            .await?;
        report.keys_deleted = deleted.rows_affected;
        metrics::counter!("aurum_budget_reservations_expired_total").increment(report.expired);
        self.publish(events).await;
        Ok(report)
    }
}
