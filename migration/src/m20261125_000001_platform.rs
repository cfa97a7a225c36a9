//! The platform tables: users, agents, tasks, escalations and the audit log.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(pk_uuid(Users::Id))
                    .col(string_len_uniq(Users::Username, 64))
                    .col(text(Users::PasswordHash))
                    .col(string_len(Users::Role, 32))
                    .col(string_len_null(Users::TenantId, 64))
                    .col(boolean(Users::Disabled).default(false))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .col(timestamp_with_time_zone(Users::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Agents::Table)
                    .col(pk_uuid(Agents::Id))
                    .col(string_len(Agents::Name, 128))
                    .col(string_len(Agents::Role, 64))
                    .col(string_len(Agents::Status, 32))
                    .col(uuid_null(Agents::CurrentTaskId))
                    .col(string_len_null(Agents::TenantId, 64))
                    .col(string_len(Agents::ScopeKey, 64))
                    .col(timestamp_with_time_zone(Agents::CreatedAt))
                    .col(timestamp_with_time_zone(Agents::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_agents_scope_name")
                    .table(Agents::Table)
                    .col(Agents::ScopeKey)
                    .col(Agents::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Tasks::Table)
                    .col(pk_uuid(Tasks::Id))
                    .col(string_len(Tasks::Title, 200))
                    .col(text_null(Tasks::Description))
                    .col(string_len(Tasks::State, 32))
                    .col(integer(Tasks::Priority).default(0))
                    .col(uuid_null(Tasks::AssigneeId))
                    .col(string_len_null(Tasks::TenantId, 64))
                    .col(string_len(Tasks::CreatedBy, 128))
                    .col(timestamp_with_time_zone(Tasks::CreatedAt))
                    .col(timestamp_with_time_zone(Tasks::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_tasks_assignee")
                            .from(Tasks::Table, Tasks::AssigneeId)
                            .to(Agents::Table, Agents::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_tasks_state")
                    .table(Tasks::Table)
                    .col(Tasks::State)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_tasks_assignee")
                    .table(Tasks::Table)
                    .col(Tasks::AssigneeId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Escalations::Table)
                    .col(pk_uuid(Escalations::Id))
                    .col(uuid(Escalations::TaskId))
                    .col(uuid_null(Escalations::AgentId))
                    .col(text(Escalations::Reason))
                    .col(string_len(Escalations::Severity, 16))
                    .col(string_len(Escalations::Status, 16))
                    .col(text_null(Escalations::Resolution))
                    .col(string_len_null(Escalations::ResolvedBy, 128))
                    .col(string_len_null(Escalations::TenantId, 64))
                    .col(string_len(Escalations::CreatedBy, 128))
                    .col(timestamp_with_time_zone(Escalations::CreatedAt))
                    .col(timestamp_with_time_zone_null(Escalations::ResolvedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_escalations_task")
                            .from(Escalations::Table, Escalations::TaskId)
                            .to(Tasks::Table, Tasks::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_escalations_agent")
                            .from(Escalations::Table, Escalations::AgentId)
                            .to(Agents::Table, Agents::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_escalations_task")
                    .table(Escalations::Table)
                    .col(Escalations::TaskId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .col(pk_uuid(AuditLog::Id))
                    .col(string_len(AuditLog::Actor, 128))
                    .col(string_len(AuditLog::Action, 64))
                    .col(string_len(AuditLog::EntityType, 64))
                    .col(string_len_null(AuditLog::EntityId, 64))
                    .col(string_len_null(AuditLog::TenantId, 64))
                    .col(string_len_null(AuditLog::RequestId, 128))
                    .col(json(AuditLog::Details))
                    .col(timestamp_with_time_zone(AuditLog::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_audit_log_entity")
                    .table(AuditLog::Table)
                    .col(AuditLog::EntityType)
                    .col(AuditLog::EntityId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AuditLog::Table.into_iden(),
            Escalations::Table.into_iden(),
            Tasks::Table.into_iden(),
            Agents::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Username,
    PasswordHash,
    Role,
    TenantId,
    Disabled,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Agents {
    Table,
    Id,
    Name,
    Role,
    Status,
    CurrentTaskId,
    TenantId,
    /// The tenant, or `""` for none: NULLs never collide in a unique index, this does.
    ScopeKey,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Tasks {
    Table,
    Id,
    Title,
    Description,
    State,
    Priority,
    AssigneeId,
    TenantId,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Escalations {
    Table,
    Id,
    TaskId,
    AgentId,
    Reason,
    Severity,
    Status,
    Resolution,
    ResolvedBy,
    TenantId,
    CreatedBy,
    CreatedAt,
    ResolvedAt,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    Actor,
    Action,
    EntityType,
    EntityId,
    TenantId,
    RequestId,
    Details,
    CreatedAt,
}
