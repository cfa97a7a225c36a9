//! `DomainEvent`: everything published on the event bus, one variant per domain. Subscribers
//! filter by variant and apply authorization at delivery.

use serde::{Deserialize, Serialize};

use crate::{
    audit::events::AuditEvent,
    auth::service::IdentityEvent,
    breaker::events::BreakerEvent,
    budget::events::BudgetEvent,
    dlq::events::{DlqEvent, RedriveEvent},
    governance::events::GovernanceEvent,
    infra::event_bus::BusEvent,
    sandbox::events::SandboxEvent,
    task::{events::TaskEvent, quality::events::ReviewEvent},
};

/// One event on the bus.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "domain", content = "event", rename_all = "snake_case")]
pub enum DomainEvent {
    Task(TaskEvent),
    /// Credentials of a user or API key stopped being valid.
    Identity(IdentityEvent),
    /// A budget changed (spend, expiry, reset, configuration) or crossed a threshold.
    Budget(BudgetEvent),
    /// An audit entry was committed.
    Audit(AuditEvent),
    /// A dead letter arrived or changed.
    Dlq(DlqEvent),
    /// A DLQ redrive job moved on.
    Redrive(RedriveEvent),
    /// A circuit breaker changed state or configuration.
    Breaker(BreakerEvent),
    /// A learning update was proposed or decided, or a role's rule changed.
    Governance(GovernanceEvent),
    /// A peer review started, received a vote or completed.
    Review(ReviewEvent),
    /// A sandbox run was queued, started, wrote output, was asked to stop or ended.
    Sandbox(SandboxEvent),
}

impl BusEvent for DomainEvent {
    fn subject(&self) -> String {
        match self {
            Self::Task(e) => format!("task.{}.{}", e.task.id, e.kind.as_str()),
            Self::Identity(e) => format!("identity.{}.revoked", e.subject),
            Self::Budget(e) => format!("budget.{}.{}", e.budget.id, e.kind.as_str()),
            Self::Audit(e) => format!("audit.{}.added", e.entry.id),
            Self::Dlq(e) => format!("dlq.{}.{}", e.message.id, e.kind.as_str()),
            Self::Redrive(e) => format!("dlq_redrive.{}.progress", e.job.id),
            Self::Breaker(e) => format!("breaker.{}.{}", e.breaker.name, e.kind.as_str()),
            Self::Governance(e) => format!(
                "governance.{}.{}",
                e.status.rule.agent_role,
                e.kind.as_str()
            ),
            Self::Review(e) => format!("review.{}.{}", e.review.id, e.kind.as_str()),
            Self::Sandbox(e) => format!("sandbox.{}.{}", e.run_id, e.kind.as_str()),
        }
    }
}

/// The bus as the application uses it.
pub type Bus = crate::infra::event_bus::EventBus<DomainEvent>;
