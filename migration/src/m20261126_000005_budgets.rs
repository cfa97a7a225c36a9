//! The budget ledger: budgets per (tenant, project), their reservations, the append-only
//! `budget_transactions` ledger, and the idempotency keys of the spend mutations.
//!
//! The CHECK constraints restate the ledger invariant (`0 ≤ used`, `0 ≤ reserved`,
//! `used + reserved ≤ total`) so that no statement, however wrong, can commit a state that
//! breaks it; both SQLite and PostgreSQL enforce them.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Budgets::Table)
                    .col(pk_uuid(Budgets::Id))
                    .col(string_len(Budgets::TenantId, 64))
                    .col(string_len(Budgets::ProjectId, 128))
                    .col(big_integer(Budgets::Total))
                    .col(big_integer(Budgets::Used).default(0))
                    .col(big_integer(Budgets::Reserved).default(0))
                    .col(string_len(Budgets::Period, 16))
                    .col(timestamp_with_time_zone(Budgets::PeriodStart))
                    .col(timestamp_with_time_zone_null(Budgets::PeriodEnd))
                    .col(string_len(Budgets::AlertThresholds, 128))
                    .col(string_len(Budgets::AlertsSent, 128).default(""))
                    .col(big_integer(Budgets::Version))
                    .col(timestamp_with_time_zone(Budgets::CreatedAt))
                    .col(timestamp_with_time_zone(Budgets::UpdatedAt))
                    .check(Check::named(
                        "ck_budgets_used",
                        Expr::col(Budgets::Used).gte(0),
                    ))
                    .check(Check::named(
                        "ck_budgets_reserved",
                        Expr::col(Budgets::Reserved).gte(0),
                    ))
                    .check(Check::named(
                        "ck_budgets_within_total",
                        Expr::col(Budgets::Used)
                            .add(Expr::col(Budgets::Reserved))
                            .lte(Expr::col(Budgets::Total)),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_budgets_tenant_project")
                    .table(Budgets::Table)
                    .col(Budgets::TenantId)
                    .col(Budgets::ProjectId)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(BudgetReservations::Table)
                    .col(pk_uuid(BudgetReservations::Id))
                    .col(uuid(BudgetReservations::BudgetId))
                    .col(string_len(BudgetReservations::TenantId, 64))
                    .col(string_len(BudgetReservations::ProjectId, 128))
                    .col(big_integer(BudgetReservations::Amount))
                    .col(big_integer_null(BudgetReservations::ActualAmount))
                    .col(string_len(BudgetReservations::Status, 16))
                    .col(timestamp_with_time_zone(BudgetReservations::ExpiresAt))
                    .col(uuid_null(BudgetReservations::TaskId))
                    .col(string_len_null(BudgetReservations::Model, 128))
                    .col(string_len(BudgetReservations::Caller, 128))
                    .col(string_len(BudgetReservations::RequestId, 128))
                    .col(timestamp_with_time_zone(BudgetReservations::CreatedAt))
                    .col(timestamp_with_time_zone_null(
                        BudgetReservations::ResolvedAt,
                    ))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_budget_reservations_budget")
                            .from(BudgetReservations::Table, BudgetReservations::BudgetId)
                            .to(Budgets::Table, Budgets::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .check(Check::named(
                        "ck_budget_reservations_amount",
                        Expr::col(BudgetReservations::Amount).gt(0),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_budget_reservations_due")
                    .table(BudgetReservations::Table)
                    .col(BudgetReservations::Status)
                    .col(BudgetReservations::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_budget_reservations_budget")
                    .table(BudgetReservations::Table)
                    .col(BudgetReservations::BudgetId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(BudgetTransactions::Table)
                    .col(pk_uuid(BudgetTransactions::Id))
                    .col(uuid(BudgetTransactions::BudgetId))
                    .col(uuid_null(BudgetTransactions::ReservationId))
                    .col(string_len(BudgetTransactions::Kind, 16))
                    .col(big_integer(BudgetTransactions::DeltaTotal))
                    .col(big_integer(BudgetTransactions::DeltaUsed))
                    .col(big_integer(BudgetTransactions::DeltaReserved))
                    .col(big_integer(BudgetTransactions::TotalAfter))
                    .col(big_integer(BudgetTransactions::UsedAfter))
                    .col(big_integer(BudgetTransactions::ReservedAfter))
                    .col(big_integer(BudgetTransactions::Version))
                    .col(string_len(BudgetTransactions::Actor, 128))
                    .col(string_len_null(BudgetTransactions::Caller, 128))
                    .col(string_len_null(BudgetTransactions::RequestId, 128))
                    .col(timestamp_with_time_zone(BudgetTransactions::At))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_budget_transactions_budget")
                            .from(BudgetTransactions::Table, BudgetTransactions::BudgetId)
                            .to(Budgets::Table, Budgets::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // One ledger row per budget version: the ledger is a single chain, never a fork.
        manager
            .create_index(
                Index::create()
                    .name("ux_budget_transactions_version")
                    .table(BudgetTransactions::Table)
                    .col(BudgetTransactions::BudgetId)
                    .col(BudgetTransactions::Version)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKeys::Table)
                    .col(string_len(IdempotencyKeys::Caller, 128))
                    .col(string_len(IdempotencyKeys::RequestId, 128))
                    .col(string_len(IdempotencyKeys::Operation, 32))
                    .col(string_len(IdempotencyKeys::Fingerprint, 64))
                    .col(text(IdempotencyKeys::Response))
                    .col(timestamp_with_time_zone(IdempotencyKeys::CreatedAt))
                    .col(timestamp_with_time_zone(IdempotencyKeys::ExpiresAt))
                    .primary_key(
                        Index::create()
                            .col(IdempotencyKeys::Caller)
                            .col(IdempotencyKeys::RequestId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_idempotency_keys_expires")
                    .table(IdempotencyKeys::Table)
                    .col(IdempotencyKeys::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            IdempotencyKeys::Table.into_iden(),
            BudgetTransactions::Table.into_iden(),
            BudgetReservations::Table.into_iden(),
            Budgets::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Budgets {
    Table,
    Id,
    TenantId,
    ProjectId,
    Total,
    Used,
    Reserved,
    /// `none`, `daily`, `weekly` or `monthly`.
    Period,
    PeriodStart,
    /// End of the current window; null for `none`.
    PeriodEnd,
    /// Percentages, comma-separated (`50,80,100`).
    AlertThresholds,
    /// Percentages already announced in the current window.
    AlertsSent,
    /// Bumped by every change; the ledger row of a change carries it.
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum BudgetReservations {
    Table,
    Id,
    BudgetId,
    TenantId,
    ProjectId,
    Amount,
    ActualAmount,
    /// `reserved`, `committed`, `released` or `expired`.
    Status,
    ExpiresAt,
    TaskId,
    Model,
    Caller,
    RequestId,
    CreatedAt,
    ResolvedAt,
}

#[derive(DeriveIden)]
enum BudgetTransactions {
    Table,
    Id,
    BudgetId,
    ReservationId,
    /// `reserve`, `commit`, `release`, `expire`, `reset` or `configure`.
    Kind,
    DeltaTotal,
    DeltaUsed,
    DeltaReserved,
    TotalAfter,
    UsedAfter,
    ReservedAfter,
    Version,
    Actor,
    Caller,
    RequestId,
    At,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    Caller,
    RequestId,
    Operation,
    Fingerprint,
    Response,
    CreatedAt,
    ExpiresAt,
}
