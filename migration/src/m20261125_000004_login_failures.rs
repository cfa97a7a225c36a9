//! Failed logins per (username, client address), for the lockout. Kept in the database so the
//! lockout holds on every replica and whether or not Redis is up.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(LoginFailures::Table)
                    .col(string_len(LoginFailures::Username, 128))
                    .col(string_len(LoginFailures::Client, 64))
                    .col(integer(LoginFailures::Failures))
                    .col(timestamp_with_time_zone_null(LoginFailures::LockedUntil))
                    .col(timestamp_with_time_zone(LoginFailures::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(LoginFailures::Username)
                            .col(LoginFailures::Client),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(LoginFailures::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum LoginFailures {
    Table,
    Username,
    Client,
    Failures,
    LockedUntil,
    UpdatedAt,
}
