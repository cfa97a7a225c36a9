//! Work queues and the dead letter queue: `queue_messages` (the queue itself without NATS,
//! delivery tracking with it), `dlq_messages` (dead letters, captured once per stream
//! sequence) and `dlq_redrives` (redrive jobs).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(QueueMessages::Table)
                    .col(big_pk_auto(QueueMessages::Id))
                    .col(string_len(QueueMessages::Queue, 64))
                    .col(big_integer_null(QueueMessages::StreamSeq))
                    .col(uuid(QueueMessages::TaskId))
                    .col(string_len_null(QueueMessages::TenantId, 64))
                    .col(string_len(QueueMessages::MsgId, 300))
                    .col(text_null(QueueMessages::Payload))
                    .col(string_len(QueueMessages::State, 16))
                    .col(integer(QueueMessages::Attempts).default(0))
                    .col(timestamp_with_time_zone(QueueMessages::VisibleAt))
                    .col(uuid_null(QueueMessages::DeliveryToken))
                    .col(timestamp_with_time_zone_null(QueueMessages::Deadline))
                    .col(string_len_null(QueueMessages::Reply, 255))
                    .col(text(QueueMessages::Errors))
                    .col(string_len(QueueMessages::EnqueuedBy, 200))
                    .col(timestamp_with_time_zone(QueueMessages::EnqueuedAt))
                    .col(timestamp_with_time_zone_null(
                        QueueMessages::FirstDeliveredAt,
                    ))
                    .col(timestamp_with_time_zone_null(
                        QueueMessages::LastDeliveredAt,
                    ))
                    .col(timestamp_with_time_zone(QueueMessages::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        for (name, cols, unique) in [
            (
                "ux_queue_messages_msg_id",
                vec![QueueMessages::Queue, QueueMessages::MsgId],
                true,
            ),
            (
                "ux_queue_messages_stream_seq",
                vec![QueueMessages::Queue, QueueMessages::StreamSeq],
                true,
            ),
            // The claim's scan: ready messages of a queue in order.
            (
                "ix_queue_messages_claim",
                vec![
                    QueueMessages::Queue,
                    QueueMessages::State,
                    QueueMessages::Id,
                ],
                false,
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(QueueMessages::Table);
            for col in cols {
                index.col(col);
            }
            if unique {
                index.unique();
            }
            manager.create_index(index.to_owned()).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(DlqMessages::Table)
                    .col(pk_uuid(DlqMessages::Id))
                    .col(string_len(DlqMessages::Queue, 64))
                    .col(string_len(DlqMessages::Subject, 255))
                    .col(string_len(DlqMessages::Stream, 64))
                    .col(big_integer(DlqMessages::StreamSeq))
                    .col(uuid(DlqMessages::TaskId))
                    .col(string_len_null(DlqMessages::TenantId, 64))
                    .col(text(DlqMessages::Headers))
                    .col(text_null(DlqMessages::Payload))
                    .col(string_len(DlqMessages::Reason, 32))
                    .col(integer(DlqMessages::Attempts))
                    .col(text(DlqMessages::Errors))
                    .col(text_null(DlqMessages::LastError))
                    .col(timestamp_with_time_zone_null(DlqMessages::FirstDeliveredAt))
                    .col(timestamp_with_time_zone_null(DlqMessages::LastDeliveredAt))
                    .col(timestamp_with_time_zone(DlqMessages::DeadAt))
                    .col(string_len(DlqMessages::Status, 16))
                    .col(text_null(DlqMessages::Note))
                    .col(string_len_null(DlqMessages::ResolvedBy, 200))
                    .col(timestamp_with_time_zone_null(DlqMessages::ResolvedAt))
                    .col(uuid_null(DlqMessages::RedriveId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_dlq_messages_stream_seq")
                    .table(DlqMessages::Table)
                    .col(DlqMessages::Stream)
                    .col(DlqMessages::StreamSeq)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_dlq_messages_queue_status")
                    .table(DlqMessages::Table)
                    .col(DlqMessages::Queue)
                    .col(DlqMessages::Status)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_dlq_messages_task")
                    .table(DlqMessages::Table)
                    .col(DlqMessages::TaskId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(DlqRedrives::Table)
                    .col(pk_uuid(DlqRedrives::Id))
                    .col(text(DlqRedrives::Filter))
                    .col(integer(DlqRedrives::RatePerSecond))
                    .col(string_len(DlqRedrives::Status, 16))
                    .col(big_integer(DlqRedrives::Total))
                    .col(big_integer(DlqRedrives::Moved))
                    .col(string_len_null(DlqRedrives::TenantId, 64))
                    .col(string_len_null(DlqRedrives::Owner, 200))
                    .col(timestamp_with_time_zone_null(DlqRedrives::HeartbeatAt))
                    .col(string_len(DlqRedrives::CreatedBy, 200))
                    .col(timestamp_with_time_zone(DlqRedrives::CreatedAt))
                    .col(timestamp_with_time_zone(DlqRedrives::UpdatedAt))
                    .col(timestamp_with_time_zone_null(DlqRedrives::FinishedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            DlqRedrives::Table.into_iden(),
            DlqMessages::Table.into_iden(),
            QueueMessages::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum QueueMessages {
    Table,
    Id,
    Queue,
    StreamSeq,
    TaskId,
    TenantId,
    MsgId,
    Payload,
    State,
    Attempts,
    VisibleAt,
    DeliveryToken,
    Deadline,
    Reply,
    Errors,
    EnqueuedBy,
    EnqueuedAt,
    FirstDeliveredAt,
    LastDeliveredAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum DlqMessages {
    Table,
    Id,
    Queue,
    Subject,
    Stream,
    StreamSeq,
    TaskId,
    TenantId,
    Headers,
    Payload,
    Reason,
    Attempts,
    Errors,
    LastError,
    FirstDeliveredAt,
    LastDeliveredAt,
    DeadAt,
    Status,
    Note,
    ResolvedBy,
    ResolvedAt,
    RedriveId,
}

#[derive(DeriveIden)]
enum DlqRedrives {
    Table,
    Id,
    Filter,
    RatePerSecond,
    Status,
    Total,
    Moved,
    TenantId,
    Owner,
    HeartbeatAt,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
    FinishedAt,
}
