//! Reads of budgets, reservations and ledger rows: tenant-scoped, keyset-paginated, and never
//! inside a write transaction. A budget read past its period end shows the next window
//! (`model::as_of`).

use chrono::{DateTime, Utc};
use entity::{budget, budget_reservation, budget_transaction};
use sea_orm::{ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter};
use uuid::Uuid;

use super::{
    model::{self, ReservationStatus},
    service::BudgetService,
};
use crate::{
    clock,
    error::{AppError, AppResult},
    infra::db::tenant_condition,
    pagination::{Page, PageRequest, keyset_page},
};

/// Filters of the reservation list.
#[derive(Debug, Clone, Default)]
pub struct ReservationFilter {
    pub status: Option<ReservationStatus>,
}

impl BudgetService {
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

    /// One reservation of a visible budget.
    pub async fn reservation(
        &self,
        scope: Option<&str>,
        id: Uuid,
    ) -> AppResult<budget_reservation::Model> {
        budget_reservation::Entity::find_by_id(id)
            .filter(tenant_condition(
                budget_reservation::Column::TenantId,
                scope,
            ))
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::not_found("BudgetReservation", id))
    }

    /// One ledger row of a visible budget.
    pub async fn transaction(
        &self,
        scope: Option<&str>,
        id: Uuid,
    ) -> AppResult<budget_transaction::Model> {
        let row = budget_transaction::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::not_found("BudgetTransaction", id))?;
        // Ledger rows carry no tenant: they are visible with their budget.
        self.budget(scope, row.budget_id)
            .await
            .map_err(|_| AppError::not_found("BudgetTransaction", id))?;
        Ok(row)
    }

    fn reservation_condition(budget_id: Uuid, filter: &ReservationFilter) -> Condition {
        let mut cond = Condition::all().add(budget_reservation::Column::BudgetId.eq(budget_id));
        if let Some(s) = filter.status {
            cond = cond
                .add(budget_reservation::Column::Status.eq(budget_reservation::Status::from(s)));
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
    /// The budget's ledger rows, oldest first; with `since`, only those written at or after it.
    pub async fn list_transactions(
        &self,
        scope: Option<&str>,
        budget_id: Uuid,
        since: Option<DateTime<Utc>>,
        page: PageRequest,
    ) -> AppResult<Page<budget_transaction::Model>> {
        self.budget(scope, budget_id).await?;
        let select = budget_transaction::Entity::find().filter(ledger_of(budget_id, since));
        Ok(keyset_page(select, budget_transaction::Column::Id, page, &self.db).await?)
    }

    pub async fn count_transactions(
        &self,
        budget_id: Uuid,
        since: Option<DateTime<Utc>>,
    ) -> AppResult<u64> {
        Ok(budget_transaction::Entity::find()
            .filter(ledger_of(budget_id, since))
            .count(&self.db)
            .await?)
    }
}

/// The rows of one budget's ledger, from `since` on when given.
fn ledger_of(budget_id: Uuid, since: Option<DateTime<Utc>>) -> Condition {
    let rows = Condition::all().add(budget_transaction::Column::BudgetId.eq(budget_id));
    match since {
        Some(at) => rows.add(budget_transaction::Column::At.gte(at)),
        None => rows,
    }
}
