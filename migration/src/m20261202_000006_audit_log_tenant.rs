//! An index for reading the audit log per tenant, newest first: a tenant-scoped reader's
//! `auditLog` page is a range scan of `(tenant_id, id)` instead of a scan of every entry.
//! `tenant_id` itself exists since the platform migration and every writer fills it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEX: &str = "ix_audit_log_tenant_id";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(AuditLog::Table)
                    .col(AuditLog::TenantId)
                    .col(AuditLog::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(INDEX).table(AuditLog::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    TenantId,
    Id,
}
