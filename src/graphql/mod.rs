//! Schema assembly: the per-domain roots merged into one schema, its limits and extensions.
//! Transport (HTTP, WebSocket, GraphiQL) lives on the server side (`crate::server`), which
//! runs this schema; nothing here knows it.

pub mod context;
pub mod events;
pub mod executor;
pub mod limits;
pub mod node;

use async_graphql::{
    MergedObject, MergedSubscription, Schema, ValidationMode, dataloader::DataLoader,
};

use crate::{
    audit::graphql::{AuditQuery, AuditSubscription},
    auth::graphql::{AuthMutation, AuthQuery},
    breaker::graphql::{BreakerMutation, BreakerQuery, BreakerSubscription},
    budget::graphql::{BudgetMutation, BudgetQuery, BudgetSubscription},
    dlq::graphql::{DlqMutation, DlqQuery, DlqSubscription},
    governance::graphql::{GovernanceMutation, GovernanceQuery, GovernanceSubscription},
    llm::graphql::{LlmMutation, LlmQuery},
    sandbox::graphql::{SandboxMutation, SandboxQuery, SandboxSubscription},
    services::Services,
    subscriptions::graphql::{SubscriptionAdminMutation, SubscriptionAdminQuery},
    task::{
        graphql::{TaskMutation, TaskQuery, TaskSubscription},
        loaders::{
            ActivePlanLoader, AgentLoader, EscalationsByTaskLoader, GateResultsByTaskLoader,
            TaskLoader,
        },
        output_graphql::{TaskOutputMutation, TaskOutputQuery},
        quality::{
            graphql::{QualityMutation, QualityQuery},
            review_graphql::{ReviewMutation, ReviewQuery, ReviewSubscription},
        },
    },
};

/// Every query root field.
#[derive(MergedObject, Default)]
pub struct Query(
    AuthQuery,
    TaskQuery,
    TaskOutputQuery,
    QualityQuery,
    ReviewQuery,
    BudgetQuery,
    DlqQuery,
    BreakerQuery,
    GovernanceQuery,
    LlmQuery,
    SandboxQuery,
    AuditQuery,
    SubscriptionAdminQuery,
    node::NodeQuery,
);

/// Every mutation.
#[derive(MergedObject, Default)]
pub struct Mutation(
    AuthMutation,
    TaskMutation,
    TaskOutputMutation,
    QualityMutation,
    ReviewMutation,
    BudgetMutation,
    DlqMutation,
    BreakerMutation,
    GovernanceMutation,
    LlmMutation,
    SandboxMutation,
    SubscriptionAdminMutation,
);

/// Every subscription.
#[derive(MergedSubscription, Default)]
pub struct Subscription(
    TaskSubscription,
    ReviewSubscription,
    BudgetSubscription,
    DlqSubscription,
    BreakerSubscription,
    GovernanceSubscription,
    SandboxSubscription,
    AuditSubscription,
);

/// The Aurum schema.
pub type AurumSchema = Schema<Query, Mutation, Subscription>;

/// Limits applied to every document.
#[derive(Debug, Clone, Copy)]
pub struct SchemaLimits {
    pub depth: usize,
    pub complexity: usize,
    pub introspection: bool,
    /// "Did you mean …" hints in validation errors (they reveal field names).
    pub suggestions: bool,
    /// Batch window of the DataLoaders.
    pub dataloader_delay: std::time::Duration,
}

/// Runs a DataLoader batch in the span of the request that started it, so its log lines
/// carry that request's id.
fn spawn(batch: futures::future::BoxFuture<'static, ()>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(tracing::Instrument::in_current_span(batch))
}

/// Builds the executable schema over `services`. `Fast` validation checks only the limits; the
/// executor uses such a schema only for documents a strict one has already accepted.
pub fn build_schema(
    services: Services,
    limits: SchemaLimits,
    validation: ValidationMode,
) -> AurumSchema {
    let tasks = services.tasks.clone();
    let mut builder = Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .validation_mode(validation)
    .limit_depth(limits.depth)
    .limit_complexity(limits.complexity)
    .limit_recursive_depth(32)
    .limit_directives(16)
    .data(DataLoader::new(TaskLoader(tasks.clone()), spawn).delay(limits.dataloader_delay))
    .data(DataLoader::new(AgentLoader(tasks.clone()), spawn).delay(limits.dataloader_delay))
    .data(
        DataLoader::new(EscalationsByTaskLoader(tasks.clone()), spawn)
            .delay(limits.dataloader_delay),
    )
    .data(
        DataLoader::new(GateResultsByTaskLoader(tasks.clone()), spawn)
            .delay(limits.dataloader_delay),
    )
    .data(DataLoader::new(ActivePlanLoader(tasks), spawn).delay(limits.dataloader_delay))
    .data(services);
    if !limits.introspection {
        builder = builder.disable_introspection();
    }
    if !limits.suggestions {
        builder = builder.disable_suggestions();
    }
    builder.finish()
}

/// The schema's SDL, as committed in `schema.graphql` and printed by `aurum schema`.
pub fn sdl() -> String {
    Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .finish()
    .sdl()
}
