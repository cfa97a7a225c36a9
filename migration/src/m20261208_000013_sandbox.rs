//! Sandbox runs (the queue, the running replica's lease, the outcome) and their output chunks.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SandboxRuns::Table)
                    .col(uuid(SandboxRuns::Id).primary_key())
                    .col(string_len_null(SandboxRuns::TenantId, 64))
                    .col(uuid_null(SandboxRuns::TaskId))
                    .col(string_len(SandboxRuns::Language, 64))
                    .col(text(SandboxRuns::Code))
                    .col(text_null(SandboxRuns::Stdin))
                    .col(integer(SandboxRuns::MemoryMb))
                    .col(double(SandboxRuns::Cpus))
                    .col(big_integer(SandboxRuns::TimeoutMs))
                    .col(integer(SandboxRuns::Pids))
                    .col(big_integer(SandboxRuns::OutputBytes))
                    .col(string_len(SandboxRuns::Status, 16))
                    .col(integer_null(SandboxRuns::ExitCode))
                    .col(string_len_null(SandboxRuns::Signal, 16))
                    .col(text_null(SandboxRuns::Error))
                    .col(string_len_null(SandboxRuns::Replica, 200))
                    .col(timestamp_with_time_zone_null(SandboxRuns::LeaseExpiresAt))
                    .col(boolean(SandboxRuns::CancelRequested))
                    .col(string_len_null(SandboxRuns::ContainerId, 128))
                    .col(big_integer_null(SandboxRuns::PeakMemoryBytes))
                    .col(big_integer(SandboxRuns::StdoutBytes))
                    .col(big_integer(SandboxRuns::StderrBytes))
                    .col(boolean(SandboxRuns::StdoutTruncated))
                    .col(boolean(SandboxRuns::StderrTruncated))
                    .col(big_integer(SandboxRuns::StoredBytes))
                    .col(string_len(SandboxRuns::CreatedBy, 200))
                    .col(timestamp_with_time_zone(SandboxRuns::CreatedAt))
                    .col(timestamp_with_time_zone_null(SandboxRuns::StartedAt))
                    .col(timestamp_with_time_zone_null(SandboxRuns::FinishedAt))
                    .to_owned(),
            )
            .await?;
        // Claiming takes the oldest queued run; the lease sweep reads running ones.
        manager
            .create_index(
                Index::create()
                    .name("ix_sandbox_runs_status")
                    .table(SandboxRuns::Table)
                    .col(SandboxRuns::Status)
                    .col(SandboxRuns::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_sandbox_runs_tenant")
                    .table(SandboxRuns::Table)
                    .col(SandboxRuns::TenantId)
                    .col(SandboxRuns::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SandboxOutput::Table)
                    .col(uuid(SandboxOutput::RunId))
                    .col(big_integer(SandboxOutput::Offset))
                    .col(string_len(SandboxOutput::Stream, 8))
                    .col(blob(SandboxOutput::Data))
                    .col(timestamp_with_time_zone(SandboxOutput::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(SandboxOutput::RunId)
                            .col(SandboxOutput::Offset),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_sandbox_output_run")
                            .from(SandboxOutput::Table, SandboxOutput::RunId)
                            .to(SandboxRuns::Table, SandboxRuns::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            SandboxOutput::Table.into_iden(),
            SandboxRuns::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum SandboxRuns {
    Table,
    Id,
    TenantId,
    TaskId,
    Language,
    Code,
    Stdin,
    MemoryMb,
    Cpus,
    TimeoutMs,
    Pids,
    OutputBytes,
    Status,
    ExitCode,
    Signal,
    Error,
    Replica,
    LeaseExpiresAt,
    CancelRequested,
    ContainerId,
    PeakMemoryBytes,
    StdoutBytes,
    StderrBytes,
    StdoutTruncated,
    StderrTruncated,
    StoredBytes,
    CreatedBy,
    CreatedAt,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum SandboxOutput {
    Table,
    RunId,
    Offset,
    Stream,
    Data,
    CreatedAt,
}
