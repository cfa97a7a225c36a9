//! API keys for agents: a role and tenant each, the secret stored only as its SHA-256.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .col(pk_uuid(ApiKeys::Id))
                    .col(string_len(ApiKeys::Name, 128))
                    .col(string_len_uniq(ApiKeys::SecretHash, 64))
                    .col(string_len(ApiKeys::Role, 32))
                    .col(string_len_null(ApiKeys::TenantId, 64))
                    .col(string_len(ApiKeys::CreatedBy, 128))
                    .col(timestamp_with_time_zone_null(ApiKeys::ExpiresAt))
                    .col(timestamp_with_time_zone_null(ApiKeys::RevokedAt))
                    .col(timestamp_with_time_zone(ApiKeys::CreatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ApiKeys::Table).if_exists().to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    Name,
    SecretHash,
    Role,
    TenantId,
    CreatedBy,
    ExpiresAt,
    RevokedAt,
    CreatedAt,
}
