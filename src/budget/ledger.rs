//! Statements on the budget rows, shared by every budget operation: the conditional UPDATEs
//! (one statement with their ledger and reservation rows on PostgreSQL), ledger rows, period
//! resets, threshold marks and expiry. Each runs inside the caller's write transaction and
//! publishes nothing; the operations in `service` and `sweeper` commit and publish.

use chrono::{DateTime, Utc};
use entity::{budget, budget_reservation, budget_transaction};
use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, FromQueryResult, QuerySelect,
    Statement, Value,
};
use serde_json::json;
use uuid::Uuid;

use super::{
    events::{BudgetEvent, BudgetEventKind},
    model::{BudgetPeriod, LedgerKind, format_percentages, newly_crossed, parse_percentages},
    service::BudgetService,
};
use crate::{
    audit::{self, AuditEntry},
    auth::{Caller, RequestMeta},
    error::{AppError, AppResult},
};

/// Every column of `budgets`, for `RETURNING`.
pub(super) const BUDGET_COLUMNS: &str = "id, tenant_id, project_id, total, used, reserved, period, \
     period_start, period_end, alert_thresholds, alerts_sent, version, created_at, updated_at";
/// Every column of `budget_reservations`, for `RETURNING`.
pub(super) const RESERVATION_COLUMNS: &str = "id, budget_id, tenant_id, project_id, amount, \
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

/// One ledger row, before it is written.
pub(super) struct Ledger<'a> {
    pub(super) kind: LedgerKind,
    pub(super) after: &'a budget::Model,
    pub(super) reservation_id: Option<Uuid>,
    pub(super) delta_total: i64,
    pub(super) delta_used: i64,
    pub(super) delta_reserved: i64,
    pub(super) actor: String,
    /// (idempotency scope, requestId) of the client call that caused it.
    pub(super) key: Option<(&'a str, &'a str)>,
}

/// The ledger row of a balance change whose deltas are known before the budget row is
/// updated: [`BudgetService::budget_move`] takes the balances after the change from the row.
pub(super) struct Move<'a> {
    pub(super) kind: LedgerKind,
    pub(super) reservation_id: Uuid,
    pub(super) delta_used: i64,
    pub(super) delta_reserved: i64,
    pub(super) actor: String,
    pub(super) key: Option<(&'a str, &'a str)>,
}

/// What a balance move conditional on the current period did.
pub(super) enum Moved {
    /// The UPDATE applied; `reset` is the new period window that had to start first.
    Done {
        after: budget::Model,
        /// Boxed: rare, and large next to the other variants.
        reset: Option<Box<budget::Model>>,
    },
    /// The row's condition refused it: the row as it stands (after a reset, if one was due).
    Refused(budget::Model),
    /// No budget row with that id.
    Missing,
}

impl BudgetService {
    /// A statement written with `$n` placeholders, in the backend's dialect (SQLite reads
    /// `?n`, the same numbered parameters).
    pub(super) fn stmt(&self, sql: &str, values: Vec<Value>) -> Statement {
        if self.postgres {
            Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
        } else {
            Statement::from_sql_and_values(DbBackend::Sqlite, sql.replace('$', "?"), values)
        }
    }

    pub(super) async fn budget_returning(
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
    pub(super) async fn budget_move(
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
            entity::budget_transaction::Kind::from(kind).into(),
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
                r.status.into(),
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

    /// Row lock on PostgreSQL; SQLite's write transaction already excludes other writers.
    pub(super) fn locked<E: EntityTrait>(&self, select: sea_orm::Select<E>) -> sea_orm::Select<E> {
        if self.postgres {
            // FOR NO KEY UPDATE, the lock an UPDATE of non-key columns takes: unlike FOR
            // UPDATE it does not wait for the KEY SHARE locks that inserts of rows referencing
            // the budget (reservations, ledger rows) hold in other transactions.
            select.lock(sea_orm::sea_query::LockType::NoKeyUpdate)
        } else {
            select
        }
    }

    /// Runs the balance move `sql` (see [`Self::budget_move`]) on the budget `budget_id`. The
    /// move statements refuse to act on a budget whose period window has ended; when that is
    /// why nothing changed, the new window starts here (`reset`, with its ledger and audit
    /// rows) and the move runs once more, counting in the new window.
    #[expect(
        clippy::too_many_arguments,
        reason = "one move's statement, ledger row and row"
    )]
    pub(super) async fn move_in_period(
        &self,
        txn: &DatabaseTransaction,
        budget_id: Uuid,
        sql: &str,
        values: Vec<Value>,
        ledger: &Move<'_>,
        reservation: Option<&budget_reservation::Model>,
        now: DateTime<Utc>,
    ) -> AppResult<Moved> {
        if let Some(after) = self
            .budget_move(txn, sql, values.clone(), ledger, reservation)
            .await?
        {
            return Ok(Moved::Done { after, reset: None });
        }
        let Some(current) = self
            .locked(budget::Entity::find_by_id(budget_id))
            .one(txn)
            .await?
        else {
            return Ok(Moved::Missing);
        };
        if current.period_end.is_none_or(|end| end > now) {
            return Ok(Moved::Refused(current));
        }
        let reset = self.reset(txn, &current, now).await?;
        Ok(
            match self
                .budget_move(txn, sql, values, ledger, reservation)
                .await?
            {
                Some(after) => Moved::Done {
                    after,
                    reset: Some(Box::new(reset)),
                },
                None => Moved::Refused(reset),
            },
        )
    }

    pub(super) async fn append<C: ConnectionTrait>(conn: &C, l: Ledger<'_>) -> AppResult<()> {
        let row = budget_transaction::Model {
            id: Uuid::now_v7(),
            budget_id: l.after.id,
            reservation_id: l.reservation_id,
            kind: l.kind.into(),
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
    pub(super) async fn thresholds(
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
    pub(super) async fn reset<C: ConnectionTrait>(
        &self,
        conn: &C,
        current: &budget::Model,
        now: DateTime<Utc>,
    ) -> AppResult<budget::Model> {
        let period = BudgetPeriod::from(current.period);
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
    /// `reserved`. `None` when someone else resolved it first; else its event, to announce before
    /// commit.
    pub(super) async fn expire(
        &self,
        txn: &DatabaseTransaction,
        reservation: Uuid,
        now: DateTime<Utc>,
    ) -> AppResult<Option<BudgetEvent>> {
        self.end_reservation(txn, reservation, Ending::Expiry, now)
            .await
    }

    /// Releases a live reservation on the system's behalf (its task was dead-lettered),
    /// whatever its TTL. `None` when it was no longer live.
    pub(super) async fn release_by_system(
        &self,
        txn: &DatabaseTransaction,
        reservation: Uuid,
        now: DateTime<Utc>,
    ) -> AppResult<Option<BudgetEvent>> {
        self.end_reservation(txn, reservation, Ending::SystemRelease, now)
            .await
    }

    /// Ends a live reservation without spending: status `expired` (past its TTL) or
    /// `released`, its amount out of `reserved`, a ledger row and an audit entry.
    async fn end_reservation(
        &self,
        txn: &DatabaseTransaction,
        reservation: Uuid,
        ending: Ending,
        now: DateTime<Utc>,
    ) -> AppResult<Option<BudgetEvent>> {
        let (status, ttl, kind, action, label, event_kind) = match ending {
            Ending::Expiry => (
                "expired",
                " AND expires_at <= $1",
                LedgerKind::Expire,
                "budget.expire",
                "budget-expiry",
                BudgetEventKind::Expired,
            ),
            Ending::SystemRelease => (
                "released",
                "",
                LedgerKind::Release,
                "budget.release",
                "dead-letter",
                BudgetEventKind::Released,
            ),
        };
        let row = txn
            .query_one_raw(self.stmt(
                &format!(
                    "UPDATE budget_reservations SET status = '{status}', resolved_at = $1 \
                     WHERE id = $2 AND status = 'reserved'{ttl} \
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
                    kind,
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
            &RequestMeta::system(label),
            AuditEntry {
                action,
                entity_type: "budget_reservation",
                entity_id: Some(r.id.to_string()),
                tenant_id: Some(&r.tenant_id),
                details: json!({ "budgetId": r.budget_id, "amount": r.amount, "taskId": r.task_id }),
            },
        )
        .await?;
        Ok(Some(Self::event(event_kind, &after, Some(r.id))))
    }
}

/// How [`BudgetService::end_reservation`] ends a reservation.
#[derive(Debug, Clone, Copy)]
enum Ending {
    /// Its TTL passed.
    Expiry,
    /// The system released it (its task was dead-lettered).
    SystemRelease,
}
