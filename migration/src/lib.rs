//! Schema migrations for Aurum, one file per change, runnable from `aurum migrate` or as the
//! standalone `migration` CLI. Migrations hold DDL only: no business rules, no seed users.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_platform;
mod m20261125_000002_sessions;
mod m20261125_000003_api_keys;
mod m20261125_000004_login_failures;
mod m20261126_000005_budgets;
mod m20261202_000006_audit_log_tenant;
mod m20261203_000007_event_outbox;
mod m20261204_000008_queues;
mod m20261205_000009_circuit_breakers;
mod m20261206_000010_governance;
mod m20261206_000011_llm_outputs;
mod m20261207_000012_quality;
mod m20261208_000013_sandbox;

/// Every migration, in the order it applies.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_platform::Migration),
            Box::new(m20261125_000002_sessions::Migration),
            Box::new(m20261125_000003_api_keys::Migration),
            Box::new(m20261125_000004_login_failures::Migration),
            Box::new(m20261126_000005_budgets::Migration),
            Box::new(m20261202_000006_audit_log_tenant::Migration),
            Box::new(m20261203_000007_event_outbox::Migration),
            Box::new(m20261204_000008_queues::Migration),
            Box::new(m20261205_000009_circuit_breakers::Migration),
            Box::new(m20261206_000010_governance::Migration),
            Box::new(m20261206_000011_llm_outputs::Migration),
            Box::new(m20261207_000012_quality::Migration),
            Box::new(m20261208_000013_sandbox::Migration),
        ]
    }
}
