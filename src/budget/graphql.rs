//! GraphQL surface of the budget domain: thin resolvers that convert input, call
//! `BudgetService` and wrap the rows. The spend mutations return the reservation exactly as
//! the first call produced it, so a replayed retry renders the same bytes.

use async_graphql::{
    Context, ErrorExtensions, ID, InputObject, Object, Result, SimpleObject, Subscription,
    connection::Connection,
};
use chrono::{DateTime, Utc};
use entity::{budget, budget_reservation, budget_transaction};
use futures::Stream;

use super::{
    events::BudgetEventKind,
    model::{self, BudgetPeriod, LedgerKind, ReservationStatus},
    reads::ReservationFilter,
    service::{BudgetChanges, NewBudget, ReserveRequest, ResolveRequest},
};
use crate::{
    auth::{guard::Require, permission::Permission},
    error::AppError,
    events::DomainEvent,
    graphql::context::{
        ConnectionFields, caller, connection, meta, page_cost, page_request, parse_id, services,
        wants_total,
    },
};

/// A token budget of one (tenant, project).
pub struct Budget(pub budget::Model);

#[Object]
impl Budget {
    pub async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn tenant_id(&self) -> &str {
        &self.0.tenant_id
    }
    async fn project_id(&self) -> &str {
        &self.0.project_id
    }
    /// The limit: `used + reserved` never exceeds it.
    async fn total(&self) -> i64 {
        self.0.total
    }
    /// Committed tokens in the current period.
    async fn used(&self) -> i64 {
        self.0.used
    }
    /// Tokens held by live reservations.
    async fn reserved(&self) -> i64 {
        self.0.reserved
    }
    /// `total - used - reserved`.
    async fn available(&self) -> i64 {
        model::available(self.0.total, self.0.used, self.0.reserved)
    }
    async fn period(&self) -> BudgetPeriod {
        self.0.period.into()
    }
    /// Start of the current period window.
    async fn period_start(&self) -> DateTime<Utc> {
        self.0.period_start
    }
    /// End of the current period window; null when the period is NONE.
    async fn period_end(&self) -> Option<DateTime<Utc>> {
        self.0.period_end
    }
    /// Percentages of the total whose crossing by `used` publishes a threshold event.
    async fn alert_thresholds(&self) -> Vec<i32> {
        model::parse_percentages(&self.0.alert_thresholds)
    }
    /// Thresholds already announced in the current window (a raised total arms again those
    /// `used` no longer reaches).
    async fn alerts_sent(&self) -> Vec<i32> {
        model::parse_percentages(&self.0.alerts_sent)
    }
    /// Bumped by every change; the ledger row of each change carries it.
    async fn version(&self) -> i64 {
        self.0.version
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// Where a budget stands.
#[derive(SimpleObject)]
pub struct BudgetState {
    pub budget_id: ID,
    pub tenant_id: String,
    pub project_id: String,
    pub total: i64,
    pub used: i64,
    pub reserved: i64,
    /// `total - used - reserved`.
    pub available: i64,
}

impl From<budget::Model> for BudgetState {
    fn from(b: budget::Model) -> Self {
        Self {
            budget_id: ID(b.id.to_string()),
            available: model::available(b.total, b.used, b.reserved),
            tenant_id: b.tenant_id,
            project_id: b.project_id,
            total: b.total,
            used: b.used,
            reserved: b.reserved,
        }
    }
}

/// Tokens held for one LLM call until committed, released or expired.
pub struct BudgetReservation(pub budget_reservation::Model);

#[Object]
impl BudgetReservation {
    pub async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn budget_id(&self) -> ID {
        ID(self.0.budget_id.to_string())
    }
    async fn tenant_id(&self) -> &str {
        &self.0.tenant_id
    }
    async fn project_id(&self) -> &str {
        &self.0.project_id
    }
    /// Tokens reserved.
    async fn amount(&self) -> i64 {
        self.0.amount
    }
    /// Tokens committed; null unless COMMITTED.
    async fn actual_amount(&self) -> Option<i64> {
        self.0.actual_amount
    }
    async fn status(&self) -> ReservationStatus {
        self.0.status.into()
    }
    /// When the sweeper releases it if still RESERVED.
    async fn expires_at(&self) -> DateTime<Utc> {
        self.0.expires_at
    }
    async fn task_id(&self) -> Option<ID> {
        self.0.task_id.map(|t| ID(t.to_string()))
    }
    /// The LLM model the tokens are for, as the caller named it.
    async fn model(&self) -> Option<&str> {
        self.0.model.as_deref()
    }
    /// The caller's idempotency key of the reservation.
    async fn request_id(&self) -> &str {
        &self.0.request_id
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it was committed, released or expired.
    async fn resolved_at(&self) -> Option<DateTime<Utc>> {
        self.0.resolved_at
    }
}

/// One row of a budget's append-only ledger.
pub struct BudgetTransaction(pub budget_transaction::Model);

#[Object]
impl BudgetTransaction {
    pub async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn budget_id(&self) -> ID {
        ID(self.0.budget_id.to_string())
    }
    async fn reservation_id(&self) -> Option<ID> {
        self.0.reservation_id.map(|r| ID(r.to_string()))
    }
    async fn kind(&self) -> LedgerKind {
        self.0.kind.into()
    }
    async fn delta_total(&self) -> i64 {
        self.0.delta_total
    }
    async fn delta_used(&self) -> i64 {
        self.0.delta_used
    }
    async fn delta_reserved(&self) -> i64 {
        self.0.delta_reserved
    }
    async fn total_after(&self) -> i64 {
        self.0.total_after
    }
    async fn used_after(&self) -> i64 {
        self.0.used_after
    }
    async fn reserved_after(&self) -> i64 {
        self.0.reserved_after
    }
    /// The budget's version after this change.
    async fn version(&self) -> i64 {
        self.0.version
    }
    /// Who caused it (`user:<name>`, `system`).
    async fn actor(&self) -> &str {
        &self.0.actor
    }
    /// The client's `requestId`, for reserve / commit / release.
    async fn request_id(&self) -> Option<&str> {
        self.0.request_id.as_deref()
    }
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
}

/// A change to a budget, as delivered to `budgetChanged` subscribers.
#[derive(SimpleObject)]
pub struct BudgetChangedEvent {
    /// Where this event sits in the feed: pass it as `after` to resume after it.
    pub cursor: String,
    pub kind: BudgetEventKind,
    /// The reservation the change was about, if any.
    pub reservation_id: Option<ID>,
    /// The budget right after the change.
    pub state: BudgetState,
}

/// `used` crossed an alert threshold (once per threshold and period).
#[derive(SimpleObject)]
pub struct BudgetThresholdEvent {
    /// Where this event sits in the feed: pass it as `after` to resume after it.
    pub cursor: String,
    /// The percentage of the total that was reached.
    pub threshold: i32,
    pub state: BudgetState,
}

type BudgetConnection = Connection<String, Budget, ConnectionFields>;
type ReservationConnection = Connection<String, BudgetReservation, ConnectionFields>;
type TransactionConnection = Connection<String, BudgetTransaction, ConnectionFields>;

#[derive(Default)]
pub struct BudgetQuery;

#[Object]
impl BudgetQuery {
    #[graphql(guard = "Require(Permission::BudgetView)")]
    /// One budget by id.
    async fn budget(&self, ctx: &Context<'_>, id: ID) -> Result<Budget> {
        let id = parse_id("id", &id)?;
        Ok(Budget(
            services(ctx)?
                .budgets
                .budget(caller(ctx).tenant(), id)
                .await?,
        ))
    }

    /// Budgets visible to the caller, oldest first, optionally of one tenant.
    #[graphql(
        guard = "Require(Permission::BudgetView)",
        complexity = "page_cost(first, child_complexity)"
    )]
    async fn budgets(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        tenant_id: Option<String>,
    ) -> Result<BudgetConnection> {
        let svc = services(ctx)?;
        let page = page_request(svc, first, after)?;
        let scope = caller(ctx).tenant();
        let rows = svc
            .budgets
            .list_budgets(scope, tenant_id.as_deref(), page)
            .await?;
        let total = if wants_total(ctx) {
            svc.budgets
                .count_budgets(scope, tenant_id.as_deref())
                .await?
        } else {
            0
        };
        Ok(connection(rows, page, total, |b| b.id, Budget))
    }

    #[graphql(guard = "Require(Permission::BudgetView)")]
    /// Total, used, reserved and available tokens of the budget of (tenant, project).
    async fn budget_state(
        &self,
        ctx: &Context<'_>,
        tenant_id: String,
        project_id: String,
    ) -> Result<BudgetState> {
        Ok(services(ctx)?
            .budgets
            .budget_by_key(caller(ctx).tenant(), &tenant_id, &project_id)
            .await?
            .into())
    }

    /// Reservations of a budget, oldest first, optionally by status.
    #[graphql(
        guard = "Require(Permission::BudgetView)",
        complexity = "page_cost(first, child_complexity)"
    )]
    async fn budget_reservations(
        &self,
        ctx: &Context<'_>,
        budget_id: ID,
        status: Option<ReservationStatus>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<ReservationConnection> {
        let svc = services(ctx)?;
        let budget_id = parse_id("budgetId", &budget_id)?;
        let page = page_request(svc, first, after)?;
        let filter = ReservationFilter { status };
        let rows = svc
            .budgets
            .list_reservations(caller(ctx).tenant(), budget_id, &filter, page)
            .await?;
        let total = if wants_total(ctx) {
            svc.budgets.count_reservations(budget_id, &filter).await?
        } else {
            0
        };
        Ok(connection(rows, page, total, |r| r.id, BudgetReservation))
    }

    /// The ledger of a budget, oldest first. `since` keeps the rows written at or after that
    /// time (a chart's range; `totalCount` counts the same rows).
    #[graphql(
        guard = "Require(Permission::BudgetView)",
        complexity = "page_cost(first, child_complexity)"
    )]
    async fn budget_transactions(
        &self,
        ctx: &Context<'_>,
        budget_id: ID,
        since: Option<DateTime<Utc>>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<TransactionConnection> {
        let svc = services(ctx)?;
        let budget_id = parse_id("budgetId", &budget_id)?;
        let page = page_request(svc, first, after)?;
        let rows = svc
            .budgets
            .list_transactions(caller(ctx).tenant(), budget_id, since, page)
            .await?;
        let total = if wants_total(ctx) {
            svc.budgets.count_transactions(budget_id, since).await?
        } else {
            0
        };
        Ok(connection(rows, page, total, |t| t.id, BudgetTransaction))
    }
}

/// Input of `createBudget`.
#[derive(InputObject)]
pub struct CreateBudgetInput {
    /// 1-64 characters; a tenant-scoped caller can only name its own tenant.
    pub tenant_id: String,
    /// 1-128 characters; one budget per (tenant, project).
    pub project_id: String,
    /// Token limit, 0 up to 10^15.
    pub total: i64,
    /// Default NONE (a lifetime limit).
    pub period: Option<BudgetPeriod>,
    /// Percentages 1-100; default [50, 80, 100].
    pub alert_thresholds: Option<Vec<i32>>,
}

/// Input of `updateBudget`: only the given fields change.
#[derive(InputObject)]
pub struct UpdateBudgetInput {
    pub id: ID,
    /// New limit; refused below the budget's current `used + reserved`.
    pub total: Option<i64>,
    /// A new period starts its current window now and keeps `used`.
    pub period: Option<BudgetPeriod>,
    pub alert_thresholds: Option<Vec<i32>>,
}

/// Input of `reserveBudget`.
#[derive(InputObject)]
pub struct ReserveBudgetInput {
    pub tenant_id: String,
    pub project_id: String,
    /// Tokens to hold, > 0.
    pub amount: i64,
    /// Idempotency key, unique per caller (1-128 characters).
    pub request_id: String,
    /// Lifetime of the reservation, 1-86,400 s; default 300.
    pub ttl_seconds: Option<i64>,
    pub task_id: Option<ID>,
    /// The LLM model the tokens are for.
    pub model: Option<String>,
}

/// Input of `commitBudget`.
#[derive(InputObject)]
pub struct CommitBudgetInput {
    pub reservation_id: ID,
    /// Tokens actually spent, 0 up to the reserved amount; the rest is freed.
    pub actual_amount: i64,
    /// Idempotency key, unique per caller.
    pub request_id: String,
}

/// Input of `releaseBudget`.
#[derive(InputObject)]
pub struct ReleaseBudgetInput {
    pub reservation_id: ID,
    /// Idempotency key, unique per caller.
    pub request_id: String,
}

#[derive(Default)]
pub struct BudgetMutation;

#[Object]
impl BudgetMutation {
    #[graphql(guard = "Require(Permission::BudgetConfigure)")]
    /// Creates the budget of a (tenant, project).
    async fn create_budget(&self, ctx: &Context<'_>, input: CreateBudgetInput) -> Result<Budget> {
        let new = NewBudget {
            tenant_id: input.tenant_id,
            project_id: input.project_id,
            total: input.total,
            period: input.period,
            alert_thresholds: input.alert_thresholds,
        };
        Ok(Budget(
            services(ctx)?
                .budgets
                .create_budget(&meta(ctx), new)
                .await?,
        ))
    }

    #[graphql(guard = "Require(Permission::BudgetConfigure)")]
    /// Changes a budget's total, period or alert thresholds.
    async fn update_budget(&self, ctx: &Context<'_>, input: UpdateBudgetInput) -> Result<Budget> {
        let id = parse_id("id", &input.id)?;
        let changes = BudgetChanges {
            total: input.total,
            period: input.period,
            alert_thresholds: input.alert_thresholds,
        };
        Ok(Budget(
            services(ctx)?
                .budgets
                .update_budget(&meta(ctx), id, changes)
                .await?,
        ))
    }

    #[graphql(guard = "Require(Permission::BudgetSpend)")]
    /// Holds `amount` tokens if `used + reserved + amount ≤ total`, else `BUDGET_EXCEEDED`
    /// (with `available` in the error's extensions). Idempotent per (caller, requestId).
    async fn reserve_budget(
        &self,
        ctx: &Context<'_>,
        input: ReserveBudgetInput,
    ) -> Result<BudgetReservation> {
        let request = ReserveRequest {
            tenant_id: input.tenant_id,
            project_id: input.project_id,
            amount: input.amount,
            request_id: input.request_id,
            ttl_seconds: input.ttl_seconds,
            task_id: input
                .task_id
                .map(|id| parse_id("taskId", &id))
                .transpose()?,
            model: input.model,
        };
        Ok(BudgetReservation(
            services(ctx)?.budgets.reserve(&meta(ctx), request).await?,
        ))
    }

    #[graphql(guard = "Require(Permission::BudgetSpend)")]
    /// Moves `actualAmount` of a live reservation to `used` and frees the rest, once.
    /// Idempotent per (caller, requestId).
    async fn commit_budget(
        &self,
        ctx: &Context<'_>,
        input: CommitBudgetInput,
    ) -> Result<BudgetReservation> {
        let request = ResolveRequest {
            reservation_id: parse_id("reservationId", &input.reservation_id)?,
            actual_amount: Some(input.actual_amount),
            request_id: input.request_id,
        };
        Ok(BudgetReservation(
            services(ctx)?.budgets.resolve(&meta(ctx), request).await?,
        ))
    }

    #[graphql(guard = "Require(Permission::BudgetSpend)")]
    /// Frees a live reservation entirely, once. Idempotent per (caller, requestId).
    async fn release_budget(
        &self,
        ctx: &Context<'_>,
        input: ReleaseBudgetInput,
    ) -> Result<BudgetReservation> {
        let request = ResolveRequest {
            reservation_id: parse_id("reservationId", &input.reservation_id)?,
            actual_amount: None,
            request_id: input.request_id,
        };
        Ok(BudgetReservation(
            services(ctx)?.budgets.resolve(&meta(ctx), request).await?,
        ))
    }
}

/// A tenant-scoped caller may only watch its own tenant.
fn watchable(ctx: &Context<'_>, tenant_id: &str) -> Result<()> {
    match caller(ctx).tenant() {
        Some(scope) if scope != tenant_id => Err(AppError::Forbidden.extend()),
        _ => Ok(()),
    }
}

/// The budget events of one tenant (and project, when given) or, without a tenant, of every
/// budget the caller may read (a tenant-scoped caller's own tenant), after `after` when given,
/// as `select` maps them.
async fn budget_events<T, F>(
    ctx: &Context<'_>,
    tenant_id: Option<String>,
    project_id: Option<String>,
    after: Option<String>,
    mut select: F,
) -> Result<impl Stream<Item = Result<T>> + use<T, F>>
where
    T: Send + 'static,
    F: FnMut(String, &super::events::BudgetEvent) -> Option<T> + Send + 'static,
{
    let tenant_id = match tenant_id {
        Some(tenant) => {
            watchable(ctx, &tenant)?;
            Some(tenant)
        }
        None if project_id.is_some() => {
            return Err(AppError::bad_field("projectId", "projectId needs its tenantId").extend());
        }
        None => caller(ctx).tenant().map(str::to_owned),
    };
    crate::graphql::events::subscribe(ctx, after, move |cursor, event| match event {
        DomainEvent::Budget(e)
            if tenant_id.as_ref().is_none_or(|t| *t == e.budget.tenant_id)
                && project_id
                    .as_ref()
                    .is_none_or(|p| *p == e.budget.project_id) =>
        {
            select(cursor, e)
        }
        _ => None,
    })
    .await
}

#[derive(Default)]
pub struct BudgetSubscription;

#[Subscription]
impl BudgetSubscription {
    #[graphql(guard = "Require(Permission::BudgetView)")]
    /// Every change to the budgets of a tenant, or of one (tenant, project), or without
    /// `tenantId` of every budget the caller may read (a dashboard's view; `projectId` then
    /// is refused). With `after` (the `cursor` of the last event received), first the changes
    /// since then that are still held (`CURSOR_EXPIRED` when they are not), then live ones. A
    /// subscriber that falls behind receives a `SUBSCRIPTION_LAGGED` error carrying
    /// `lastCursor` and is closed.
    async fn budget_changed(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<String>,
        project_id: Option<String>,
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<BudgetChangedEvent>> + use<>> {
        budget_events(ctx, tenant_id, project_id, after, |cursor, e| {
            (e.kind != BudgetEventKind::ThresholdReached).then(|| BudgetChangedEvent {
                cursor,
                kind: e.kind,
                reservation_id: e.reservation_id.map(|r| ID(r.to_string())),
                state: e.budget.clone().into(),
            })
        })
        .await
    }

    #[graphql(guard = "Require(Permission::BudgetView)")]
    /// Alert thresholds crossed by the budgets of a tenant (or one project; without
    /// `tenantId`, of every budget the caller may read): each threshold once per period.
    /// `after` resumes as for `budgetChanged`.
    async fn budget_threshold_reached(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<String>,
        project_id: Option<String>,
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<BudgetThresholdEvent>> + use<>> {
        budget_events(ctx, tenant_id, project_id, after, |cursor, e| {
            e.threshold.map(|threshold| BudgetThresholdEvent {
                cursor,
                threshold,
                state: e.budget.clone().into(),
            })
        })
        .await
    }
}
