//! Circuit breakers: `circuit_breakers` (configuration and persisted state, one row per
//! name) and `circuit_breaker_transitions` (history).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CircuitBreakers::Table)
                    .col(string_len(CircuitBreakers::Name, 64).primary_key())
                    .col(boolean(CircuitBreakers::Dependency))
                    .col(string_len(CircuitBreakers::WindowType, 16))
                    .col(integer(CircuitBreakers::WindowSize))
                    .col(integer(CircuitBreakers::MinimumCalls))
                    .col(double(CircuitBreakers::FailureRateThreshold))
                    .col(double(CircuitBreakers::SlowCallRateThreshold))
                    .col(big_integer(CircuitBreakers::SlowCallDurationMs))
                    .col(big_integer(CircuitBreakers::WaitInOpenMs))
                    .col(integer(CircuitBreakers::HalfOpenCalls))
                    .col(big_integer(CircuitBreakers::MaxWaitInHalfOpenMs))
                    .col(boolean(CircuitBreakers::AutomaticTransition))
                    .col(big_integer(CircuitBreakers::ConfigVersion))
                    .col(string_len(CircuitBreakers::State, 16))
                    .col(big_integer(CircuitBreakers::Epoch))
                    .col(timestamp_with_time_zone(CircuitBreakers::StateSince))
                    .col(string_len(CircuitBreakers::UpdatedBy, 200))
                    .col(timestamp_with_time_zone(CircuitBreakers::CreatedAt))
                    .col(timestamp_with_time_zone(CircuitBreakers::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CircuitBreakerTransitions::Table)
                    .col(big_pk_auto(CircuitBreakerTransitions::Id))
                    .col(string_len(CircuitBreakerTransitions::Name, 64))
                    .col(big_integer(CircuitBreakerTransitions::Epoch))
                    .col(string_len(CircuitBreakerTransitions::FromState, 16))
                    .col(string_len(CircuitBreakerTransitions::ToState, 16))
                    .col(string_len(CircuitBreakerTransitions::Cause, 32))
                    .col(double_null(CircuitBreakerTransitions::FailureRate))
                    .col(double_null(CircuitBreakerTransitions::SlowCallRate))
                    .col(string_len_null(CircuitBreakerTransitions::Actor, 200))
                    .col(text_null(CircuitBreakerTransitions::Reason))
                    .col(string_len(CircuitBreakerTransitions::Replica, 200))
                    .col(timestamp_with_time_zone(CircuitBreakerTransitions::At))
                    .to_owned(),
            )
            .await?;
        // A breaker's history, newest first.
        manager
            .create_index(
                Index::create()
                    .name("ix_circuit_breaker_transitions_name")
                    .table(CircuitBreakerTransitions::Table)
                    .col(CircuitBreakerTransitions::Name)
                    .col(CircuitBreakerTransitions::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(CircuitBreakerTransitions::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(CircuitBreakers::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum CircuitBreakers {
    Table,
    Name,
    Dependency,
    WindowType,
    WindowSize,
    MinimumCalls,
    FailureRateThreshold,
    SlowCallRateThreshold,
    SlowCallDurationMs,
    WaitInOpenMs,
    HalfOpenCalls,
    MaxWaitInHalfOpenMs,
    AutomaticTransition,
    ConfigVersion,
    State,
    Epoch,
    StateSince,
    UpdatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum CircuitBreakerTransitions {
    Table,
    Id,
    Name,
    Epoch,
    FromState,
    ToState,
    Cause,
    FailureRate,
    SlowCallRate,
    Actor,
    Reason,
    Replica,
    At,
}
