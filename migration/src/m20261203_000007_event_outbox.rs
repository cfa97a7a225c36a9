//! The transactional outbox (`event_outbox`): every domain event is inserted by the
//! transaction that makes the change it reports, and relayed to the bus after commit.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(EventOutbox::Table)
                    .col(big_pk_auto(EventOutbox::Id))
                    .col(uuid_uniq(EventOutbox::EventId))
                    .col(string_len(EventOutbox::Subject, 255))
                    .col(text(EventOutbox::Payload))
                    .col(timestamp_with_time_zone(EventOutbox::CreatedAt))
                    .col(big_integer_null(EventOutbox::Position).unique_key())
                    .to_owned(),
            )
            .await?;
        // The relay's scan (rows without a position, oldest first) and the retention sweep.
        manager
            .create_index(
                Index::create()
                    .name("ix_event_outbox_created_at")
                    .table(EventOutbox::Table)
                    .col(EventOutbox::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(EventOutbox::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum EventOutbox {
    Table,
    Id,
    EventId,
    Subject,
    Payload,
    CreatedAt,
    Position,
}
