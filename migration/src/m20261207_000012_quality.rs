//! Quality gates, remediation plans and peer reviews on tasks; escalations learn the
//! deadlock pattern that opened them and a suggested fix.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite alters one column per statement.
        manager
            .alter_table(
                Table::alter()
                    .table(Escalations::Table)
                    .add_column(string_len_null(Escalations::Pattern, 32))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Escalations::Table)
                    .add_column(text_null(Escalations::SuggestedFix))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TaskGates::Table)
                    .col(string_len(TaskGates::Name, 64).primary_key())
                    .col(json(TaskGates::Targets))
                    .col(string_len(TaskGates::ActionType, 16))
                    .col(integer(TaskGates::Priority))
                    .col(string_len(TaskGates::AgentRole, 64))
                    .col(integer(TaskGates::EscalateAfter))
                    .col(boolean(TaskGates::SatisfiedByReview))
                    .col(boolean(TaskGates::Enabled))
                    .col(string_len(TaskGates::UpdatedBy, 200))
                    .col(timestamp_with_time_zone(TaskGates::CreatedAt))
                    .col(timestamp_with_time_zone(TaskGates::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TaskGateResults::Table)
                    .col(uuid(TaskGateResults::TaskId))
                    .col(string_len(TaskGateResults::Gate, 64))
                    .col(string_len_null(TaskGateResults::TenantId, 64))
                    .col(boolean_null(TaskGateResults::Passed))
                    .col(text_null(TaskGateResults::Detail))
                    .col(string_len_null(TaskGateResults::ReportedBy, 200))
                    .col(timestamp_with_time_zone_null(TaskGateResults::ReportedAt))
                    .col(integer(TaskGateResults::ConsecutiveFailures))
                    .col(timestamp_with_time_zone(TaskGateResults::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(TaskGateResults::TaskId)
                            .col(TaskGateResults::Gate),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_task_gate_results_task")
                            .from(TaskGateResults::Table, TaskGateResults::TaskId)
                            .to(Tasks::Table, Tasks::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RemediationPlans::Table)
                    .col(uuid(RemediationPlans::Id).primary_key())
                    .col(uuid(RemediationPlans::TaskId))
                    .col(string_len_null(RemediationPlans::TenantId, 64))
                    .col(string_len(RemediationPlans::TargetState, 32))
                    .col(string_len(RemediationPlans::Status, 16))
                    .col(string_len(RemediationPlans::CreatedBy, 200))
                    .col(timestamp_with_time_zone(RemediationPlans::CreatedAt))
                    .col(timestamp_with_time_zone_null(RemediationPlans::ClosedAt))
                    .col(uuid_null(RemediationPlans::SupersededBy))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_remediation_plans_task")
                            .from(RemediationPlans::Table, RemediationPlans::TaskId)
                            .to(Tasks::Table, Tasks::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // A task's plans (the active one is looked up by task and status).
        manager
            .create_index(
                Index::create()
                    .name("ix_remediation_plans_task")
                    .table(RemediationPlans::Table)
                    .col(RemediationPlans::TaskId)
                    .col(RemediationPlans::Status)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RemediationActions::Table)
                    .col(uuid(RemediationActions::Id).primary_key())
                    .col(uuid(RemediationActions::PlanId))
                    .col(uuid(RemediationActions::TaskId))
                    .col(string_len(RemediationActions::Gate, 64))
                    .col(string_len(RemediationActions::ActionType, 16))
                    .col(integer(RemediationActions::Priority))
                    .col(string_len(RemediationActions::AgentRole, 64))
                    .col(text(RemediationActions::Reason))
                    .col(string_len(RemediationActions::Status, 16))
                    .col(string_len_null(RemediationActions::DoneBy, 200))
                    .col(timestamp_with_time_zone_null(RemediationActions::DoneAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_remediation_actions_plan")
                            .from(RemediationActions::Table, RemediationActions::PlanId)
                            .to(RemediationPlans::Table, RemediationPlans::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_remediation_actions_plan")
                    .table(RemediationActions::Table)
                    .col(RemediationActions::PlanId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PeerReviews::Table)
                    .col(uuid(PeerReviews::Id).primary_key())
                    .col(uuid(PeerReviews::TaskId))
                    .col(string_len_null(PeerReviews::TenantId, 64))
                    .col(double(PeerReviews::Quorum))
                    .col(string_len(PeerReviews::Status, 16))
                    .col(string_len(PeerReviews::CreatedBy, 200))
                    .col(timestamp_with_time_zone(PeerReviews::CreatedAt))
                    .col(timestamp_with_time_zone_null(PeerReviews::CompletedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_peer_reviews_task")
                            .from(PeerReviews::Table, PeerReviews::TaskId)
                            .to(Tasks::Table, Tasks::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_peer_reviews_task")
                    .table(PeerReviews::Table)
                    .col(PeerReviews::TaskId)
                    .col(PeerReviews::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ReviewVoters::Table)
                    .col(uuid(ReviewVoters::ReviewId))
                    .col(uuid(ReviewVoters::VoterId))
                    .col(string_len(ReviewVoters::Kind, 16))
                    .col(string_len(ReviewVoters::Label, 200))
                    .col(string_len(ReviewVoters::Role, 64))
                    .col(double(ReviewVoters::Weight))
                    .col(string_len_null(ReviewVoters::Decision, 16))
                    .col(double_null(ReviewVoters::Confidence))
                    .col(text_null(ReviewVoters::Reasoning))
                    .col(string_len_null(ReviewVoters::VotedBy, 200))
                    .col(timestamp_with_time_zone_null(ReviewVoters::VotedAt))
                    .primary_key(
                        Index::create()
                            .col(ReviewVoters::ReviewId)
                            .col(ReviewVoters::VoterId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_review_voters_review")
                            .from(ReviewVoters::Table, ReviewVoters::ReviewId)
                            .to(PeerReviews::Table, PeerReviews::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ReviewWeights::Table)
                    .col(string_len(ReviewWeights::AgentRole, 64).primary_key())
                    .col(double(ReviewWeights::Weight))
                    .col(string_len(ReviewWeights::UpdatedBy, 200))
                    .col(timestamp_with_time_zone(ReviewWeights::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ReviewWeights::Table.into_iden(),
            ReviewVoters::Table.into_iden(),
            PeerReviews::Table.into_iden(),
            RemediationActions::Table.into_iden(),
            RemediationPlans::Table.into_iden(),
            TaskGateResults::Table.into_iden(),
            TaskGates::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Escalations::Table)
                    .drop_column(Escalations::SuggestedFix)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Escalations::Table)
                    .drop_column(Escalations::Pattern)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Tasks {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Escalations {
    Table,
    Pattern,
    SuggestedFix,
}

#[derive(DeriveIden)]
enum TaskGates {
    Table,
    Name,
    Targets,
    ActionType,
    Priority,
    AgentRole,
    EscalateAfter,
    SatisfiedByReview,
    Enabled,
    UpdatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum TaskGateResults {
    Table,
    TaskId,
    Gate,
    TenantId,
    Passed,
    Detail,
    ReportedBy,
    ReportedAt,
    ConsecutiveFailures,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum RemediationPlans {
    Table,
    Id,
    TaskId,
    TenantId,
    TargetState,
    Status,
    CreatedBy,
    CreatedAt,
    ClosedAt,
    SupersededBy,
}

#[derive(DeriveIden)]
enum RemediationActions {
    Table,
    Id,
    PlanId,
    TaskId,
    Gate,
    ActionType,
    Priority,
    AgentRole,
    Reason,
    Status,
    DoneBy,
    DoneAt,
}

#[derive(DeriveIden)]
enum PeerReviews {
    Table,
    Id,
    TaskId,
    TenantId,
    Quorum,
    Status,
    CreatedBy,
    CreatedAt,
    CompletedAt,
}

#[derive(DeriveIden)]
enum ReviewVoters {
    Table,
    ReviewId,
    VoterId,
    Kind,
    Label,
    Role,
    Weight,
    Decision,
    Confidence,
    Reasoning,
    VotedBy,
    VotedAt,
}

#[derive(DeriveIden)]
enum ReviewWeights {
    Table,
    AgentRole,
    Weight,
    UpdatedBy,
    UpdatedAt,
}
