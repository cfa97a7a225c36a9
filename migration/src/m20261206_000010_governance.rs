//! Governance of self-learning agents: `governance_rules` (one row per agent role, also the
//! lock its proposals take), `learning_updates` (proposals, rollbacks and their decisions)
//! and `prompt_versions` (every prompt a role has had).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(GovernanceRules::Table)
                    .col(string_len(GovernanceRules::AgentRole, 64).primary_key())
                    .col(integer(GovernanceRules::MaxUpdatesPerDay))
                    .col(big_integer(GovernanceRules::CooldownSeconds))
                    .col(boolean(GovernanceRules::RequireApproval))
                    .col(big_integer(GovernanceRules::ApprovalTtlSeconds))
                    .col(big_integer(GovernanceRules::Version))
                    .col(string_len(GovernanceRules::UpdatedBy, 200))
                    .col(timestamp_with_time_zone(GovernanceRules::CreatedAt))
                    .col(timestamp_with_time_zone(GovernanceRules::UpdatedAt))
                    .check(Check::named(
                        "ck_governance_rules_max",
                        Expr::col(GovernanceRules::MaxUpdatesPerDay).gte(0),
                    ))
                    .check(Check::named(
                        "ck_governance_rules_cooldown",
                        Expr::col(GovernanceRules::CooldownSeconds).gte(0),
                    ))
                    .check(Check::named(
                        "ck_governance_rules_ttl",
                        Expr::col(GovernanceRules::ApprovalTtlSeconds).gt(0),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(LearningUpdates::Table)
                    .col(uuid(LearningUpdates::Id).primary_key())
                    .col(string_len(LearningUpdates::AgentRole, 64))
                    .col(string_len(LearningUpdates::Kind, 16))
                    .col(string_len(LearningUpdates::Status, 20))
                    .col(uuid_null(LearningUpdates::AgentId))
                    .col(uuid_null(LearningUpdates::TaskId))
                    .col(text(LearningUpdates::PromptUpdate))
                    .col(text(LearningUpdates::Rationale))
                    .col(integer_null(LearningUpdates::RollbackTo))
                    .col(string_len(LearningUpdates::ProposedBy, 200))
                    .col(string_len(LearningUpdates::ProposerPerson, 200))
                    .col(string_len_null(LearningUpdates::DecidedBy, 200))
                    .col(text_null(LearningUpdates::DecisionNote))
                    .col(integer_null(LearningUpdates::PromptVersion))
                    .col(timestamp_with_time_zone(LearningUpdates::CreatedAt))
                    .col(timestamp_with_time_zone_null(LearningUpdates::ExpiresAt))
                    .col(timestamp_with_time_zone_null(LearningUpdates::DecidedAt))
                    .col(timestamp_with_time_zone_null(LearningUpdates::AppliedAt))
                    .to_owned(),
            )
            .await?;
        // The daily limit and the cooldown read a role's applied updates by time.
        manager
            .create_index(
                Index::create()
                    .name("ix_learning_updates_role_applied")
                    .table(LearningUpdates::Table)
                    .col(LearningUpdates::AgentRole)
                    .col(LearningUpdates::AppliedAt)
                    .to_owned(),
            )
            .await?;
        // The expiry sweep.
        manager
            .create_index(
                Index::create()
                    .name("ix_learning_updates_status_expires")
                    .table(LearningUpdates::Table)
                    .col(LearningUpdates::Status)
                    .col(LearningUpdates::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        // A role's pending proposals (its status counts them with every change).
        manager
            .create_index(
                Index::create()
                    .name("ix_learning_updates_role_status")
                    .table(LearningUpdates::Table)
                    .col(LearningUpdates::AgentRole)
                    .col(LearningUpdates::Status)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PromptVersions::Table)
                    .col(string_len(PromptVersions::AgentRole, 64))
                    .col(integer(PromptVersions::Version))
                    .col(text(PromptVersions::Text))
                    .col(uuid(PromptVersions::UpdateId).unique_key())
                    .col(string_len(PromptVersions::ProposedBy, 200))
                    .col(string_len_null(PromptVersions::ApprovedBy, 200))
                    .col(integer_null(PromptVersions::RollbackOf))
                    .col(timestamp_with_time_zone(PromptVersions::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(PromptVersions::AgentRole)
                            .col(PromptVersions::Version),
                    )
                    .check(Check::named(
                        "ck_prompt_versions_version",
                        Expr::col(PromptVersions::Version).gte(1),
                    ))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(PromptVersions::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(LearningUpdates::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(GovernanceRules::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum GovernanceRules {
    Table,
    AgentRole,
    MaxUpdatesPerDay,
    CooldownSeconds,
    RequireApproval,
    ApprovalTtlSeconds,
    Version,
    UpdatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum LearningUpdates {
    Table,
    Id,
    AgentRole,
    Kind,
    Status,
    AgentId,
    TaskId,
    PromptUpdate,
    Rationale,
    RollbackTo,
    ProposedBy,
    ProposerPerson,
    DecidedBy,
    DecisionNote,
    PromptVersion,
    CreatedAt,
    ExpiresAt,
    DecidedAt,
    AppliedAt,
}

#[derive(DeriveIden)]
enum PromptVersions {
    Table,
    AgentRole,
    Version,
    Text,
    UpdateId,
    ProposedBy,
    ApprovedBy,
    RollbackOf,
    CreatedAt,
}
