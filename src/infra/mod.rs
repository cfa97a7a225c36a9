//! Adapters to the outside world: database, Redis, NATS, the event bus and Docker. Nothing here
//! knows a domain; domains call in, never the other way round.

pub mod db;
pub mod docker;
pub mod event_bus;
pub mod guard;
pub mod nats;
pub mod outbox;
pub mod redis;
pub mod shutdown;
pub mod work_queue;

/// What `/ready` reports for one dependency.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum DependencyStatus {
    Ok,
    Down {
        reason: String,
    },
    Disabled {
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

impl DependencyStatus {
    pub fn down(reason: impl std::fmt::Display) -> Self {
        Self::Down {
            reason: reason.to_string(),
        }
    }

    pub fn is_down(&self) -> bool {
        matches!(self, Self::Down { .. })
    }
}
