//! The budget operations clients call: configuration (create, update) and spending (reserve,
//! commit, release). Every change is a conditional UPDATE on the budget row (never
//! read-then-write, statements in `ledger`), appends its ledger row, writes its audit row and,
//! for the spend mutations, claims its idempotency key (`crate::idempotency`), all in one
//! transaction, with its events (into the outbox, relayed after commit). Reads are in `reads`, expiry in `sweeper`.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use chrono::{DateTime, Utc};
use entity::{budget, budget_reservation};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, EntityTrait,
    FromQueryResult, QueryFilter, QueryOrder, QuerySelect,
};
use serde_json::json;
use uuid::Uuid;

use super::{
    events::{BudgetEvent, BudgetEventKind},
    ledger::{Ledger, Move, Moved, RESERVATION_COLUMNS, RESERVE_SQL, RESOLVE_SQL, SETTLE_SQL},
    model::{self, BudgetPeriod, LedgerKind, ReservationStatus, available, format_percentages},
};
use crate::{
    audit::{self, AuditEntry},
    auth::RequestMeta,
    clock,
    error::{AppError, AppResult},
    events::{Bus, DomainEvent},
    idempotency,
    infra::db::{self, tenant_condition},
};

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

/// A resolution that found no live reservation.
struct Refusal {
    error: AppError,
    /// Events of an expiry done on the way; `Some` = commit the transaction.
    expired: Option<Vec<BudgetEvent>>,
}

/// The budget domain's operations.
#[derive(Clone)]
pub struct BudgetService {
    pub(super) db: DatabaseConnection,
    pub(super) bus: Bus,
    pub(super) postgres: bool,
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

    /// Writes a transaction's budget events into the outbox through `txn`, before it
    /// commits (its audit entries' events are there already, by `audit::record`).
    pub(super) async fn announce(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        events: Vec<BudgetEvent>,
    ) -> AppResult<()> {
        for event in events {
            self.bus.append(txn, &DomainEvent::Budget(event)).await?;
        }
        Ok(())
    }

    pub(super) fn event(
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
            period: period.into(),
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
        self.announce(
            &txn,
            vec![Self::event(BudgetEventKind::Created, &model, None)],
        )
        .await?;
        txn.commit().await?;
        self.bus.wake();
        Ok(model)
    }

    /// Changes the total, period or thresholds. A total below `used + reserved` is refused
    /// (`BAD_USER_INPUT`): the limit never drops under what is already spent or held. A new
    /// period starts its current window now and keeps `used`. Announced thresholds that
    /// `used` no longer reaches under the new total are armed again; ones it newly reaches
    /// fire in this change.
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
        let old_period = BudgetPeriod::from(current.period);
        let period = changes.period.unwrap_or(old_period);
        let (start, end) = if period == old_period {
            (current.period_start, current.period_end)
        } else {
            period.window(now)
        };
        let thresholds =
            thresholds.unwrap_or_else(|| model::parse_percentages(&current.alert_thresholds));
        // `used` is the locked row's: the thresholds the change leaves behind are armed again.
        let sent = model::still_reached(
            &thresholds,
            &model::parse_percentages(&current.alerts_sent),
            current.used,
            total,
        );
        let mut after = self
            .budget_returning(
                &txn,
                "UPDATE budgets SET total = $1, period = $2, period_start = $3, period_end = $4, \
                 alert_thresholds = $5, alerts_sent = $6, version = version + 1, updated_at = $7 \
                 WHERE id = $8 RETURNING ",
                vec![
                    total.into(),
                    entity::budget::Period::from(period).into(),
                    start.into(),
                    end.into(),
                    format_percentages(&thresholds).into(),
                    format_percentages(&sent).into(),
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
        self.announce(&txn, events).await?;
        txn.commit().await?;
        self.bus.wake();
        Ok(after)
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
        let amount = bad("amount", model::positive_amount(input.amount))?;
        let ttl = bad("ttlSeconds", model::ttl_seconds(input.ttl_seconds))?;
        let llm = input
            .model
            .as_deref()
            .map(|m| ident("model", m, model::MODEL_MAX))
            .transpose()?;
        let key = idempotency::Key::new(
            &meta.caller,
            &input.request_id,
            "reserveBudget",
            &json!({
                "tenantId": tenant_id, "projectId": project_id, "amount": amount,
                "ttlSeconds": ttl, "taskId": input.task_id, "model": llm,
            }),
        )?;
        if meta.caller.tenant().is_some_and(|t| t != tenant_id) {
            return Err(AppError::not_found(
                "Budget",
                format!("{tenant_id}/{project_id}"),
            ));
        }
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
            status: ReservationStatus::Reserved.into(),
            expires_at: now + chrono::Duration::seconds(ttl),
            task_id: input.task_id,
            model: llm,
            caller: key.scope().to_owned(),
            request_id: key.request_id().to_owned(),
            created_at: now,
            resolved_at: None,
        };
        let txn = db::begin_write(&self.db).await?;
        if let Some(previous) = idempotency::claim(&txn, &key, Some(&reservation), now).await? {
            count("reserve", "replayed");
            return Ok(previous);
        }
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: "budget.reserve",
                entity_type: "budget_reservation",
                entity_id: Some(reservation.id.to_string()),
                tenant_id: Some(&tenant_id),
                details: json!({ "budgetId": budget_id, "amount": amount, "requestId": key.request_id() }),
            },
        )
        .await?;
        let ledger = Move {
            kind: LedgerKind::Reserve,
            reservation_id: reservation.id,
            delta_used: 0,
            delta_reserved: amount,
            actor: meta.caller.audit_label(),
            key: Some((key.scope(), key.request_id())),
        };
        let moved = self
            .move_in_period(
                &txn,
                budget_id,
                RESERVE_SQL,
                vec![amount.into(), now.into(), budget_id.into()],
                &ledger,
                Some(&reservation),
                now,
            )
            .await?;
        let mut events = Vec::new();
        match moved {
            Moved::Done { after, reset } => {
                if let Some(reset) = reset {
                    events.push(Self::event(BudgetEventKind::Reset, &reset, None));
                }
                events.push(Self::event(
                    BudgetEventKind::Reserved,
                    &after,
                    Some(reservation.id),
                ));
            }
            Moved::Refused(current) => {
                count("reserve", "exceeded");
                return Err(AppError::BudgetExceeded {
                    requested: amount,
                    available: available(current.total, current.used, current.reserved),
                });
            }
            Moved::Missing => {
                self.forget_id(&tenant_id, &project_id);
                return Err(AppError::not_found(
                    "Budget",
                    format!("{tenant_id}/{project_id}"),
                ));
            }
        }
        self.announce(&txn, events).await?;
        txn.commit().await?;
        self.bus.wake();
        count("reserve", "ok");
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
        let key = idempotency::Key::new(
            &meta.caller,
            &input.request_id,
            operation,
            &json!({ "reservationId": input.reservation_id, "actualAmount": input.actual_amount }),
        )?;
        let now = clock::now();
        let txn = db::begin_write(&self.db).await?;
        if let Some(previous) =
            idempotency::claim::<budget_reservation::Model>(&txn, &key, None, now).await?
        {
            count(label, "replayed");
            return Ok(previous);
        }
        let row = txn
            .query_one_raw(self.stmt(
                &format!("{RESOLVE_SQL}{RESERVATION_COLUMNS}"),
                vec![
                    entity::budget_reservation::Status::from(status).into(),
                    input.actual_amount.into(),
                    now.into(),
                    input.reservation_id.into(),
                ],
            ))
            .await?;
        let resolved = match row {
            Some(row) => budget_reservation::Model::from_query_result(&row, "")?,
            None => {
                let refusal = self.refuse(&txn, meta, &key, &input, now).await?;
                if let Some(expired) = refusal.expired {
                    // The expiry found on the way is an effect of its own: keep it.
                    self.announce(&txn, expired).await?;
                    txn.commit().await?;
                    self.bus.wake();
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
                details: json!({ "budgetId": resolved.budget_id, "amount": resolved.amount, "actualAmount": resolved.actual_amount, "requestId": key.request_id() }),
            },
        )
        .await?;
        idempotency::store(&txn, &key, &resolved).await?;
        let actual = resolved.actual_amount.unwrap_or(0);
        let ledger = Move {
            kind,
            reservation_id: resolved.id,
            delta_used: actual,
            delta_reserved: -resolved.amount,
            actor: meta.caller.audit_label(),
            key: Some((key.scope(), key.request_id())),
        };
        // SETTLE refuses only a budget whose period ended since the last touch: the new
        // window starts first, and the actual amount counts in it.
        let moved = self
            .move_in_period(
                &txn,
                resolved.budget_id,
                SETTLE_SQL,
                vec![
                    actual.into(),
                    resolved.amount.into(),
                    now.into(),
                    resolved.budget_id.into(),
                ],
                &ledger,
                None,
                now,
            )
            .await?;
        let Moved::Done { mut after, reset } = moved else {
            return Err(AppError::Internal(anyhow::anyhow!(
                "reservation {}: settling on budget {} failed",
                resolved.id,
                resolved.budget_id
            )));
        };
        let mut events = Vec::new();
        if let Some(reset) = reset {
            events.push(Self::event(BudgetEventKind::Reset, &reset, None));
        }
        events.push(Self::event(event_kind, &after, Some(resolved.id)));
        events.extend(self.thresholds(&txn, &mut after).await?);
        self.announce(&txn, events).await?;
        txn.commit().await?;
        self.bus.wake();
        count(label, "ok");
        Ok(resolved)
    }

    /// Releases, in `txn`, every live reservation carrying `task_id` (its task was
    /// dead-lettered: nothing will commit them), with the ledger rows, audit entries and
    /// `RELEASED` events of any release. Returns how many it released.
    pub async fn release_for_task(
        &self,
        txn: &DatabaseTransaction,
        task_id: Uuid,
        now: DateTime<Utc>,
    ) -> AppResult<u64> {
        let live = budget_reservation::Entity::find()
            .filter(budget_reservation::Column::TaskId.eq(task_id))
            .filter(budget_reservation::Column::Status.eq(budget_reservation::Status::Reserved))
            .order_by_asc(budget_reservation::Column::BudgetId)
            .all(txn)
            .await?;
        let mut events = Vec::new();
        for r in live {
            events.extend(self.release_by_system(txn, r.id, now).await?);
        }
        let released = events.len() as u64;
        self.announce(txn, events).await?;
        Ok(released)
    }

    /// Why a resolution found no live reservation. A reservation past its TTL that no
    /// sweeper reached yet is expired in `txn` (never committed), with the caller's key given
    /// back: the caller must then commit `txn`.
    async fn refuse(
        &self,
        txn: &DatabaseTransaction,
        meta: &RequestMeta,
        key: &idempotency::Key,
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
        let error = match ReservationStatus::from(current.status) {
            ReservationStatus::Committed => AppError::AlreadyCommitted,
            ReservationStatus::Released => AppError::AlreadyReleased,
            ReservationStatus::Expired => AppError::ReservationExpired,
            ReservationStatus::Reserved if current.expires_at <= now => {
                let expired = self.expire(txn, current.id, now).await?;
                idempotency::release(txn, key).await?;
                return Ok(Refusal {
                    error: AppError::ReservationExpired,
                    expired: Some(expired.into_iter().collect()),
                });
            }
            ReservationStatus::Reserved => {
                let actual = input.actual_amount.unwrap_or(0);
                AppError::bad_field(
                    "actualAmount",
                    format!(
                        "actualAmount {actual} is more than the reserved amount {}",
                        current.amount
                    ),
                )
            }
        };
        Ok(Refusal {
            error,
            expired: None,
        })
    }
}

/// Counts one spend operation by outcome (`ok`, `replayed`, `exceeded`).
fn count(operation: &'static str, outcome: &'static str) {
    metrics::counter!("aurum_budget_operations_total", "operation" => operation, "outcome" => outcome)
        .increment(1);
}
