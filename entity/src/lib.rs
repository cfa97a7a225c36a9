//! SeaORM entities, one module per table. Plain data: no business rules, no GraphQL derives.

pub mod agent;
pub mod api_key;
pub mod audit_log;
pub mod budget;
pub mod budget_reservation;
pub mod budget_transaction;
pub mod circuit_breaker;
pub mod circuit_breaker_transition;
pub mod dlq_message;
pub mod dlq_redrive;
pub mod escalation;
pub mod event_outbox;
pub mod governance_rule;
pub mod idempotency_key;
pub mod learning_update;
pub mod llm_output_kind;
pub mod login_failure;
pub mod prompt_version;
pub mod queue_message;
pub mod refresh_token;
pub mod revoked_token;
pub mod task;
pub mod task_output;
pub mod user;
