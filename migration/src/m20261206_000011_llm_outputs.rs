//! LLM output validation: `llm_output_kinds` (kinds administrators registered, with their
//! JSON Schema) and `task_outputs` (what agents submitted for tasks, as validated).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(LlmOutputKinds::Table)
                    .col(string_len(LlmOutputKinds::Name, 64).primary_key())
                    .col(text(LlmOutputKinds::Description))
                    .col(text(LlmOutputKinds::Schema))
                    .col(string_len(LlmOutputKinds::CreatedBy, 200))
                    .col(timestamp_with_time_zone(LlmOutputKinds::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TaskOutputs::Table)
                    .col(uuid(TaskOutputs::Id).primary_key())
                    .col(uuid(TaskOutputs::TaskId))
                    .col(string_len(TaskOutputs::Kind, 64))
                    .col(boolean(TaskOutputs::Valid))
                    .col(text_null(TaskOutputs::Value))
                    .col(text(TaskOutputs::Errors))
                    .col(text(TaskOutputs::Fixes))
                    .col(uuid_null(TaskOutputs::EscalationId))
                    .col(string_len(TaskOutputs::SubmittedBy, 200))
                    .col(timestamp_with_time_zone(TaskOutputs::CreatedAt))
                    .to_owned(),
            )
            .await?;
        // A task's outputs, newest first.
        manager
            .create_index(
                Index::create()
                    .name("ix_task_outputs_task")
                    .table(TaskOutputs::Table)
                    .col(TaskOutputs::TaskId)
                    .col(TaskOutputs::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TaskOutputs::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(LlmOutputKinds::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum LlmOutputKinds {
    Table,
    Name,
    Description,
    Schema,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum TaskOutputs {
    Table,
    Id,
    TaskId,
    Kind,
    Valid,
    Value,
    Errors,
    Fixes,
    EscalationId,
    SubmittedBy,
    CreatedAt,
}
