//! The operation × role matrix: every root field and domain edge with the permission it
//! needs and a document that reaches it, checked complete against the schema itself here;
//! `identity.rs` runs each document as every role.

use std::collections::BTreeSet;

use aurum::auth::permission::Permission;

/// Every root field and every object-valued field of a domain type, with the permission it
/// needs (`None` = any authenticated caller; `Some(None)` is not used) and a document that
/// reaches it.
pub const MATRIX: &[(&str, Option<Permission>, &str)] = &[
    ("Query.me", None, "{ me { id } }"),
    (
        "Query.node",
        None,
        "{ node(id: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\") { id } }",
    ),
    (
        "Query.tasks",
        Some(Permission::TaskView),
        "{ tasks { totalCount } }",
    ),
    (
        "Query.task",
        Some(Permission::TaskView),
        "{ task(id: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\") { id } }",
    ),
    (
        "Query.agents",
        Some(Permission::AgentView),
        "{ agents { totalCount } }",
    ),
    (
        "Query.agent",
        Some(Permission::AgentView),
        "{ agent(id: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\") { id } }",
    ),
    (
        "Query.escalations",
        Some(Permission::EscalationView),
        "{ escalations { totalCount } }",
    ),
    (
        "Mutation.createTask",
        Some(Permission::TaskCreate),
        "mutation { createTask(input: { title: \"matrix\" }) { id } }",
    ),
    (
        "Mutation.updateTaskState",
        Some(Permission::TaskUpdate),
        "mutation { updateTaskState(id: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\", state: CANCELLED) { id } }",
    ),
    (
        "Mutation.registerAgent",
        Some(Permission::AgentConfigure),
        "mutation { registerAgent(input: { name: \"matrix-ROLE\", role: \"tester\" }) { id } }",
    ),
    (
        "Mutation.assignTask",
        Some(Permission::TaskUpdate),
        "mutation { assignTask(taskId: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\", agentId: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\") { id } }",
    ),
    (
        "Mutation.createEscalation",
        Some(Permission::EscalationCreate),
        "mutation { createEscalation(input: { taskId: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\", reason: \"r\" }) { id } }",
    ),
    (
        "Mutation.resolveEscalation",
        Some(Permission::EscalationResolve),
        "mutation { resolveEscalation(id: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\", resolution: \"r\") { id } }",
    ),
    ("Mutation.logout", None, "mutation { logout }"),
    (
        "Query.users",
        Some(Permission::UserManage),
        "{ users { totalCount } }",
    ),
    (
        "Query.apiKeys",
        Some(Permission::UserManage),
        "{ apiKeys { totalCount } }",
    ),
    (
        "Mutation.createUser",
        Some(Permission::UserManage),
        "mutation { createUser(input: { username: \"made-by-ROLE\", password: \"long enough password\", role: OBSERVER }) { id } }",
    ),
    (
        "Mutation.setUserRole",
        Some(Permission::UserManage),
        "mutation { setUserRole(id: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\", role: OBSERVER) { id } }",
    ),
    (
        "Mutation.setUserDisabled",
        Some(Permission::UserManage),
        "mutation { setUserDisabled(id: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\", disabled: true) { id } }",
    ),
    (
        "Mutation.createApiKey",
        Some(Permission::UserManage),
        "mutation { createApiKey(input: { name: \"k-ROLE\", role: OBSERVER }) { secret } }",
    ),
    (
        "Mutation.revokeApiKey",
        Some(Permission::UserManage),
        "mutation { revokeApiKey(id: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\") { id } }",
    ),
    (
        "Subscription.taskChanged",
        Some(Permission::TaskView),
        "subscription { taskChanged { kind } }",
    ),
    (
        "Query.budget",
        Some(Permission::BudgetView),
        "{ budget(id: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\") { id } }",
    ),
    (
        "Query.budgets",
        Some(Permission::BudgetView),
        "{ budgets { totalCount } }",
    ),
    (
        "Query.budgetState",
        Some(Permission::BudgetView),
        "{ budgetState(tenantId: \"matrix\", projectId: \"p\") { total } }",
    ),
    (
        "Query.budgetReservations",
        Some(Permission::BudgetView),
        "{ budgetReservations(budgetId: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\") { totalCount } }",
    ),
    (
        "Query.budgetTransactions",
        Some(Permission::BudgetView),
        "{ budgetTransactions(budgetId: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\") { totalCount } }",
    ),
    (
        "Mutation.createBudget",
        Some(Permission::BudgetConfigure),
        "mutation { createBudget(input: { tenantId: \"matrix\", projectId: \"ROLE\", total: 10 }) { id } }",
    ),
    (
        "Mutation.updateBudget",
        Some(Permission::BudgetConfigure),
        "mutation { updateBudget(input: { id: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\", total: 5 }) { id } }",
    ),
    (
        "Mutation.reserveBudget",
        Some(Permission::BudgetSpend),
        "mutation { reserveBudget(input: { tenantId: \"matrix\", projectId: \"none\", amount: 1, requestId: \"m-ROLE\" }) { id } }",
    ),
    (
        "Mutation.commitBudget",
        Some(Permission::BudgetSpend),
        "mutation { commitBudget(input: { reservationId: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\", actualAmount: 1, requestId: \"mc-ROLE\" }) { id } }",
    ),
    (
        "Mutation.releaseBudget",
        Some(Permission::BudgetSpend),
        "mutation { releaseBudget(input: { reservationId: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\", requestId: \"mr-ROLE\" }) { id } }",
    ),
    (
        "Subscription.budgetChanged",
        Some(Permission::BudgetView),
        "subscription { budgetChanged(tenantId: \"matrix\") { kind } }",
    ),
    (
        "Subscription.budgetThresholdReached",
        Some(Permission::BudgetView),
        "subscription { budgetThresholdReached(tenantId: \"matrix\") { threshold } }",
    ),
    (
        "Query.auditLog",
        Some(Permission::AuditView),
        "{ auditLog(filter: { action: \"task.create\" }) { totalCount edges { node { id } } } }",
    ),
    (
        "Subscription.auditLogAdded",
        Some(Permission::AuditView),
        "subscription { auditLogAdded(filter: { resourceType: \"matrix\" }) { cursor } }",
    ),
    (
        "Query.activeSubscriptions",
        Some(Permission::SystemAdmin),
        "{ activeSubscriptions { id replica caller operationName eventsDelivered lag } }",
    ),
    (
        "Mutation.closeSubscription",
        Some(Permission::SystemAdmin),
        "mutation { closeSubscription(id: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\") }",
    ),
    (
        "Mutation.closeSubscriptionsOf",
        Some(Permission::SystemAdmin),
        "mutation { closeSubscriptionsOf(userId: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\") }",
    ),
    (
        "Query.dlqMessages",
        Some(Permission::DlqRead),
        "{ dlqMessages(filter: { queue: \"default\" }) { totalCount edges { node { id } } } }",
    ),
    (
        "Query.dlqMessage",
        Some(Permission::DlqRead),
        "{ dlqMessage(id: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\") { id } }",
    ),
    (
        "Query.dlqStats",
        Some(Permission::DlqRead),
        "{ dlqStats { queue depth pending } }",
    ),
    (
        "Query.dlqRedrive",
        Some(Permission::DlqRead),
        "{ dlqRedrive(id: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\") { id } }",
    ),
    (
        "Mutation.enqueueTask",
        Some(Permission::TaskCreate),
        "mutation { enqueueTask(input: { taskId: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\", queue: \"default\", requestId: \"eq-ROLE\" }) { sequence } }",
    ),
    (
        "Mutation.claimTaskMessages",
        Some(Permission::TaskUpdate),
        "mutation { claimTaskMessages(queue: \"default\", max: 1) { deliveryId } }",
    ),
    (
        "Mutation.ackTaskMessage",
        Some(Permission::TaskUpdate),
        "mutation { ackTaskMessage(deliveryId: \"1.1.00000000000000000000000000000000\") { deliveryId } }",
    ),
    (
        "Mutation.nackTaskMessage",
        Some(Permission::TaskUpdate),
        "mutation { nackTaskMessage(deliveryId: \"1.1.00000000000000000000000000000000\", error: \"e\") { deliveryId } }",
    ),
    (
        "Mutation.rejectTaskMessage",
        Some(Permission::TaskUpdate),
        "mutation { rejectTaskMessage(deliveryId: \"1.1.00000000000000000000000000000000\", reason: \"r\") { deliveryId } }",
    ),
    (
        "Mutation.extendTaskMessage",
        Some(Permission::TaskUpdate),
        "mutation { extendTaskMessage(deliveryId: \"1.1.00000000000000000000000000000000\") { deliveryId } }",
    ),
    (
        "Mutation.resolveDlqMessage",
        Some(Permission::DlqResolve),
        "mutation { resolveDlqMessage(id: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\", note: \"n\") { id } }",
    ),
    (
        "Mutation.retryDlqMessage",
        Some(Permission::DlqResolve),
        "mutation { retryDlqMessage(id: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\", requestId: \"rd-ROLE\") { id } }",
    ),
    (
        "Mutation.redriveDlq",
        Some(Permission::DlqResolve),
        "mutation { redriveDlq(input: { filter: { queue: \"default\" }, ratePerSecond: 1, dryRun: true, requestId: \"rv-ROLE\" }) { id } }",
    ),
    (
        "Mutation.cancelDlqRedrive",
        Some(Permission::DlqResolve),
        "mutation { cancelDlqRedrive(id: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\") { id } }",
    ),
    (
        "Mutation.purgeDlq",
        Some(Permission::DlqResolve),
        "mutation { purgeDlq(filter: { queue: \"none-ROLE\" }, olderThan: \"2000-01-01T00:00:00Z\") }",
    ),
    (
        "Subscription.dlqMessageAdded",
        Some(Permission::DlqRead),
        "subscription { dlqMessageAdded(queue: \"default\") { cursor } }",
    ),
    (
        "Subscription.dlqRedriveProgress",
        Some(Permission::DlqRead),
        "subscription { dlqRedriveProgress(jobId: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\") { cursor } }",
    ),
    (
        "Query.circuitBreakers",
        Some(Permission::BreakerView),
        "{ circuitBreakers { totalCount edges { node { name } } } }",
    ),
    (
        "Query.circuitBreaker",
        Some(Permission::BreakerView),
        "{ circuitBreaker(name: \"redis\") { name state } }",
    ),
    (
        "Query.circuitBreakerTransitions",
        Some(Permission::BreakerView),
        "{ circuitBreakerTransitions(name: \"redis\") { edges { node { id } } } }",
    ),
    (
        "Mutation.configureCircuitBreaker",
        Some(Permission::BreakerManage),
        "mutation { configureCircuitBreaker(input: { name: \"m-ROLE\", reason: \"matrix\" }) { name } }",
    ),
    (
        "Mutation.acquireCircuitBreakerPermit",
        Some(Permission::BreakerUse),
        "mutation { acquireCircuitBreakerPermit(name: \"nope\") { permitted } }",
    ),
    (
        "Mutation.recordCircuitBreakerOutcome",
        Some(Permission::BreakerUse),
        "mutation { recordCircuitBreakerOutcome(input: { permitId: \"x\", outcome: SUCCESS }) { counted } }",
    ),
    (
        "Mutation.forceOpenCircuitBreaker",
        Some(Permission::BreakerManage),
        "mutation { forceOpenCircuitBreaker(name: \"nope\", reason: \"r\") { state } }",
    ),
    (
        "Mutation.forceCloseCircuitBreaker",
        Some(Permission::BreakerManage),
        "mutation { forceCloseCircuitBreaker(name: \"nope\", reason: \"r\") { state } }",
    ),
    (
        "Mutation.metricsOnlyCircuitBreaker",
        Some(Permission::BreakerManage),
        "mutation { metricsOnlyCircuitBreaker(name: \"nope\", reason: \"r\") { state } }",
    ),
    (
        "Mutation.resetCircuitBreaker",
        Some(Permission::BreakerManage),
        "mutation { resetCircuitBreaker(name: \"nope\", reason: \"r\") { state } }",
    ),
    (
        "Mutation.resetAllCircuitBreakers",
        Some(Permission::BreakerManage),
        "mutation { resetAllCircuitBreakers(reason: \"matrix\") }",
    ),
    (
        "Subscription.circuitBreakerChanged",
        Some(Permission::BreakerView),
        "subscription { circuitBreakerChanged { cursor } }",
    ),
    (
        "Query.governanceRules",
        Some(Permission::LearningView),
        "{ governanceRules { agentRole maxUpdatesPerDay } }",
    ),
    (
        "Query.governanceStatus",
        Some(Permission::LearningView),
        "{ governanceStatus(agentRole: \"security\") { status pendingApprovals } }",
    ),
    (
        "Query.learningUpdates",
        Some(Permission::LearningView),
        "{ learningUpdates { totalCount edges { node { id } } } }",
    ),
    (
        "Query.learningUpdate",
        Some(Permission::LearningView),
        "{ learningUpdate(id: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\") { id } }",
    ),
    (
        "Query.promptVersions",
        Some(Permission::LearningView),
        "{ promptVersions(agentRole: \"security\") { edges { node { version } } } }",
    ),
    (
        "Query.currentPrompt",
        Some(Permission::LearningView),
        "{ currentPrompt(agentRole: \"security\") { version text } }",
    ),
    (
        "Mutation.configureGovernanceRule",
        Some(Permission::LearningConfigure),
        "mutation { configureGovernanceRule(input: { agentRole: \"m-ROLE\", maxUpdatesPerDay: 3 }) { version } }",
    ),
    (
        "Mutation.proposeLearningUpdate",
        Some(Permission::LearningPropose),
        "mutation { proposeLearningUpdate(input: { agentRole: \"m-ROLE\", promptUpdate: \"p\", rationale: \"r\", requestId: \"m-ROLE\" }) { id status } }",
    ),
    (
        "Mutation.approveLearningUpdate",
        Some(Permission::LearningApprove),
        "mutation { approveLearningUpdate(id: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\") { id } }",
    ),
    (
        "Mutation.rejectLearningUpdate",
        Some(Permission::LearningApprove),
        "mutation { rejectLearningUpdate(id: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\", reason: \"r\") { id } }",
    ),
    (
        "Mutation.rollbackPrompt",
        Some(Permission::LearningApprove),
        "mutation { rollbackPrompt(agentRole: \"nobody\", version: 1, reason: \"r\") { id } }",
    ),
    (
        "Subscription.learningUpdateChanged",
        Some(Permission::LearningView),
        "subscription { learningUpdateChanged { cursor } }",
    ),
    (
        "Subscription.governanceStatusChanged",
        Some(Permission::LearningView),
        "subscription { governanceStatusChanged { cursor } }",
    ),
    (
        "Query.validateLlmOutput",
        Some(Permission::LlmValidate),
        "{ validateLlmOutput(kind: \"CONSENSUS\", text: \"{}\") { valid } }",
    ),
    (
        "Query.llmOutputKinds",
        Some(Permission::LlmValidate),
        "{ llmOutputKinds { name builtin } }",
    ),
    (
        "Mutation.registerLlmOutputKind",
        Some(Permission::SystemAdmin),
        "mutation { registerLlmOutputKind(name: \"M_ROLE\", description: \"d\", schema: {type: \"object\"}) { name } }",
    ),
    (
        "Query.taskOutputs",
        Some(Permission::TaskView),
        "{ taskOutputs(taskId: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\") { id } }",
    ),
    (
        "Mutation.submitTaskOutput",
        Some(Permission::TaskUpdate),
        "mutation { submitTaskOutput(input: { taskId: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\", kind: \"CONSENSUS\", text: \"{}\", requestId: \"m\" }) { task { id } } }",
    ),
    (
        "Query.taskGates",
        Some(Permission::TaskView),
        "{ taskGates { name } }",
    ),
    (
        "Query.taskGateCheck",
        Some(Permission::TaskView),
        "{ taskGateCheck(taskId: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\", targetState: REVIEWING) { gate } }",
    ),
    (
        "Query.remediationPlans",
        Some(Permission::TaskView),
        "{ remediationPlans(taskId: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\") { id } }",
    ),
    (
        "Query.peerReview",
        Some(Permission::TaskView),
        "{ peerReview(id: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\") { id } }",
    ),
    (
        "Query.peerReviews",
        Some(Permission::TaskView),
        "{ peerReviews(taskId: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\") { totalCount } }",
    ),
    (
        "Query.reviewWeights",
        Some(Permission::TaskView),
        "{ reviewWeights { agentRole weight } }",
    ),
    (
        "Mutation.configureTaskGate",
        Some(Permission::QualityConfigure),
        "mutation { configureTaskGate(input: { gate: \"matrix_gate\", targetStates: [COMPLETED], enabled: false }) { name } }",
    ),
    (
        "Mutation.configureReviewWeight",
        Some(Permission::QualityConfigure),
        "mutation { configureReviewWeight(agentRole: \"matrix\", weight: 1) { weight } }",
    ),
    (
        "Mutation.reportGateResult",
        Some(Permission::QualityReport),
        "mutation { reportGateResult(input: { taskId: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\", gate: \"has_tests\", passed: true }) { gate } }",
    ),
    (
        "Mutation.replaceRemediationPlan",
        Some(Permission::TaskUpdate),
        "mutation { replaceRemediationPlan(taskId: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\", targetState: REVIEWING) { id } }",
    ),
    (
        "Mutation.startPeerReview",
        Some(Permission::ReviewStart),
        "mutation { startPeerReview(input: { taskId: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\", requestId: \"m-ROLE\" }) { id } }",
    ),
    (
        "Mutation.castReviewVote",
        Some(Permission::ReviewVote),
        "mutation { castReviewVote(input: { reviewId: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\", agentId: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\", decision: APPROVE, reasoning: \"r\", confidence: 1 }) { id } }",
    ),
    (
        "Subscription.peerReviewChanged",
        Some(Permission::TaskView),
        "subscription { peerReviewChanged { cursor } }",
    ),
    (
        "Query.sandboxRun",
        Some(Permission::SandboxView),
        "{ sandboxRun(id: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\") { id } }",
    ),
    (
        "Query.sandboxRuns",
        Some(Permission::SandboxView),
        "{ sandboxRuns { totalCount } }",
    ),
    (
        "Query.sandboxLimits",
        Some(Permission::SandboxView),
        "{ sandboxLimits { maxCodeBytes } }",
    ),
    (
        "Query.sandboxLanguages",
        Some(Permission::SandboxView),
        "{ sandboxLanguages { name } }",
    ),
    (
        "Mutation.startSandboxRun",
        Some(Permission::SandboxRun),
        "mutation { startSandboxRun(input: { language: \"matrix-none\", code: \"print(1)\", requestId: \"m-ROLE\" }) { id } }",
    ),
    (
        "Mutation.cancelSandboxRun",
        Some(Permission::SandboxRun),
        "mutation { cancelSandboxRun(id: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\") { id } }",
    ),
    (
        "Subscription.sandboxRunChanged",
        Some(Permission::SandboxView),
        "subscription { sandboxRunChanged { runId } }",
    ),
    (
        "Subscription.sandboxRunOutput",
        Some(Permission::SandboxView),
        "subscription { sandboxRunOutput(runId: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\") { offset } }",
    ),
    (
        "Task.gateResults",
        Some(Permission::TaskView),
        "{ tasks { edges { node { gateResults { gate } } } } }",
    ),
    (
        "Task.remediationPlan",
        Some(Permission::TaskView),
        "{ tasks { edges { node { remediationPlan { id } } } } }",
    ),
    (
        "Task.assignee",
        Some(Permission::AgentView),
        "{ tasks { edges { node { assignee { id } } } } }",
    ),
    (
        "Task.escalations",
        Some(Permission::EscalationView),
        "{ tasks { edges { node { escalations { id } } } } }",
    ),
    (
        "Agent.currentTask",
        Some(Permission::TaskView),
        "{ agents { edges { node { currentTask { id } } } } }",
    ),
    (
        "Escalation.task",
        Some(Permission::TaskView),
        "{ escalations { edges { node { task { id } } } } }",
    ),
    (
        "Escalation.agent",
        Some(Permission::AgentView),
        "{ escalations { edges { node { agent { id } } } } }",
    ),
];

/// Fields open to anonymous callers on purpose.
pub const OPEN: &[&str] = &["Mutation.login", "Mutation.refreshToken"];

/// Object types whose object-valued fields are edges that need their own guard.
pub const DOMAIN_TYPES: &[&str] = &[
    "Task",
    "Agent",
    "Escalation",
    "User",
    "TaskChangedEvent",
    "AuthPayload",
];

/// Root fields and domain edges, read from the exported schema.
fn guarded_fields() -> BTreeSet<String> {
    use async_graphql::parser::types::{BaseType, Type, TypeKind, TypeSystemDefinition};
    fn named(ty: &Type) -> String {
        match &ty.base {
            BaseType::Named(n) => n.to_string(),
            BaseType::List(inner) => named(inner),
        }
    }
    let doc = async_graphql::parser::parse_schema(aurum::graphql::sdl()).expect("SDL parses");
    let mut fields = BTreeSet::new();
    for def in doc.definitions {
        let TypeSystemDefinition::Type(t) = def else {
            continue;
        };
        let TypeKind::Object(object) = &t.node.kind else {
            continue;
        };
        let ty = t.node.name.node.to_string();
        let root = ["Query", "Mutation", "Subscription"]
            .into_iter()
            .find(|r| *r == ty);
        for f in &object.fields {
            let name = f.node.name.node.to_string();
            if let Some(root) = root {
                fields.insert(format!("{root}.{name}"));
            } else if DOMAIN_TYPES.contains(&ty.as_str())
                && DOMAIN_TYPES.contains(&named(&f.node.ty.node).as_str())
            {
                fields.insert(format!("{ty}.{name}"));
            }
        }
    }
    // The payload types are reached only through their guarded roots.
    fields.retain(|f| {
        !["TaskChangedEvent.", "AuthPayload.", "CreatedApiKey."]
            .iter()
            .any(|p| f.starts_with(p))
    });
    fields
}

#[test]
fn every_exposed_field_is_in_the_matrix() {
    let listed: BTreeSet<String> = MATRIX
        .iter()
        .map(|(f, _, _)| (*f).to_owned())
        .chain(OPEN.iter().map(|f| (*f).to_owned()))
        .collect();
    let missing: Vec<_> = guarded_fields().difference(&listed).cloned().collect();
    assert!(
        missing.is_empty(),
        "fields without an entry in the permission matrix: {missing:?}"
    );
}
