//! `Services`: the domain services as resolvers reach them (schema data). A leaf over the
//! domains: it knows no transport, so the schema (`graphql`) depends on it and not on the
//! server that assembles everything (`app`, `server`).

use std::sync::Arc;

use crate::{
    audit::AuditService, auth::service::UserService, breaker::service::BreakerService,
    budget::service::BudgetService, dlq::service::DlqService, events::Bus,
    governance::service::GovernanceService, llm::service::LlmService, rate_limit::ActionLimiter,
    sandbox::service::SandboxService, subscriptions::SubscriptionAdmin, task::service::TaskService,
};

/// The domain services, as resolvers reach them (schema data).
#[derive(Clone)]
pub struct Services {
    pub tasks: TaskService,
    pub users: UserService,
    pub budgets: BudgetService,
    pub audit: AuditService,
    /// The work queues and the dead letter queue.
    pub dlq: DlqService,
    /// Circuit breakers (the agents' and Aurum's own).
    pub breakers: BreakerService,
    /// Prompt-update rules, proposals and prompt versions.
    pub governance: GovernanceService,
    /// LLM output validation and the output kinds.
    pub llm: LlmService,
    /// Sandbox runs (the queue and the output; this replica's runner is started by `app`).
    pub sandbox: SandboxService,
    /// Live subscriptions on every replica (admin).
    pub subscriptions: SubscriptionAdmin,
    pub bus: Bus,
    /// Per-caller limits on named actions.
    pub limits: Arc<ActionLimiter>,
    /// Largest page a connection returns.
    pub max_page_size: u64,
}
