//! Task, agent and escalation types and their pure rules (state machine, input limits).
//!
//! The state and status enums are stored through SeaORM active enums in `entity` (which has
//! no GraphQL derives). Each enum here is the GraphQL enum and carries the rules; its
//! `#[graphql(remote = …)]` makes async-graphql generate the `From` conversions to and from
//! the stored enum, variant by variant and checked by the compiler, so no name is ever
//! parsed or spelled twice.

use std::fmt;

/// Lifecycle of a task.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[graphql(remote = "entity::task::TaskState")]
pub enum TaskState {
    /// Created, waiting for an agent.
    Pending,
    /// Handed to an agent that has not started.
    Assigned,
    /// Being worked on.
    InProgress,
    /// Waiting on something outside the agent (often an escalation).
    Blocked,
    /// Done by its agent, under review (quality gates guard the way in; peer reviews run
    /// here).
    Reviewing,
    /// Reviewed, being rolled out (quality gates guard the way in).
    Deploying,
    /// Finished successfully (terminal).
    Completed,
    /// Finished unsuccessfully; may be sent back to `PENDING` for another attempt.
    Failed,
    /// Abandoned (terminal).
    Cancelled,
}

impl TaskState {
    pub const ALL: [TaskState; 9] = [
        Self::Pending,
        Self::Assigned,
        Self::InProgress,
        Self::Blocked,
        Self::Reviewing,
        Self::Deploying,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    /// States `updateTaskState` may move to from `self`. `ASSIGNED` is reached only through
    /// `assignTask`, which also names the agent. Quality gates may refuse a move to
    /// `REVIEWING`, `DEPLOYING` or `COMPLETED` on top of this.
    pub fn allowed_next(self) -> &'static [TaskState] {
        use TaskState::*;
        match self {
            Pending => &[InProgress, Cancelled],
            Assigned => &[Pending, InProgress, Cancelled],
            InProgress => &[Blocked, Reviewing, Completed, Failed, Cancelled],
            Blocked => &[InProgress, Failed, Cancelled],
            Reviewing => &[InProgress, Deploying, Completed, Failed, Cancelled],
            Deploying => &[InProgress, Completed, Failed, Cancelled],
            Failed => &[Pending],
            Completed | Cancelled => &[],
        }
    }

    pub fn can_move_to(self, next: TaskState) -> bool {
        self.allowed_next().contains(&next)
    }

    /// A state the task can only leave by being re-queued (or never).
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// States from which `assignTask` may (re)assign the task.
    pub fn is_assignable(self) -> bool {
        matches!(self, Self::Pending | Self::Assigned)
    }
}

/// The GraphQL name (`IN_PROGRESS`), for messages and audit details.
impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", async_graphql::resolver_utils::enum_value(*self))
    }
}

/// Availability of an agent.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "entity::agent::AgentStatus")]
pub enum AgentStatus {
    /// Registered, no current task.
    Idle,
    /// Working on its current task.
    Busy,
}

/// How urgent an escalation is.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[graphql(remote = "entity::escalation::Severity")]
pub enum Severity {
    Low,
    #[default]
    Medium,
    High,
    Critical,
}

/// Whether an escalation still needs a human.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "entity::escalation::EscalationStatus")]
pub enum EscalationStatus {
    Open,
    Resolved,
}

/// Input limits, checked before anything is written.
pub mod limits {
    pub const TITLE_MAX: usize = 200;
    pub const DESCRIPTION_MAX: usize = 10_000;
    pub const AGENT_NAME_MAX: usize = 128;
    pub const AGENT_ROLE_MAX: usize = 64;
    pub const REASON_MAX: usize = 10_000;
    pub const RESOLUTION_MAX: usize = 10_000;
    pub const PRIORITY_RANGE: std::ops::RangeInclusive<i32> = -1000..=1000;
}

/// Trims `value` and checks it is non-empty and at most `max` characters.
pub fn required_text(field: &'static str, value: &str, max: usize) -> Result<String, String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    if trimmed.chars().count() > max {
        return Err(format!("{field} must be at most {max} characters"));
    }
    if trimmed
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(format!("{field} must not contain control characters"));
    }
    Ok(trimmed.to_owned())
}

/// Agent roles are identifiers: lowercase letters, digits, `_` and `-`.
pub fn agent_role(value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value.len() <= limits::AGENT_ROLE_MAX
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "role must be 1-{} characters from [a-z0-9_-]",
            limits::AGENT_ROLE_MAX
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_stored_under_their_graphql_names() {
        use sea_orm::{ActiveEnum, Iterable};
        for s in TaskState::ALL {
            let stored = entity::task::TaskState::from(s);
            assert_eq!(stored.to_value(), s.to_string());
            assert_eq!(TaskState::from(stored), s);
        }
        assert_eq!(
            entity::task::TaskState::iter().count(),
            TaskState::ALL.len()
        );
        assert!(entity::task::TaskState::try_from_value(&"DONE".to_owned()).is_err());
    }

    #[test]
    fn terminal_states_go_nowhere_and_assigned_is_only_reached_by_assignment() {
        assert!(TaskState::Completed.allowed_next().is_empty());
        assert!(TaskState::Cancelled.allowed_next().is_empty());
        for s in TaskState::ALL {
            assert!(!s.can_move_to(TaskState::Assigned), "{s} -> ASSIGNED");
            assert!(!s.can_move_to(s), "{s} -> itself");
        }
        assert!(TaskState::Pending.can_move_to(TaskState::InProgress));
        assert!(!TaskState::Pending.can_move_to(TaskState::Completed));
        assert!(TaskState::Failed.can_move_to(TaskState::Pending));
    }

    #[test]
    fn text_rules() {
        assert_eq!(required_text("title", "  x  ", 5), Ok("x".into()));
        assert!(required_text("title", "   ", 5).is_err());
        assert!(required_text("title", "123456", 5).is_err());
        assert!(required_text("title", "a\u{0}b", 5).is_err());
        assert!(agent_role("reviewer").is_ok());
        assert!(agent_role("Reviewer").is_err());
        assert!(agent_role("").is_err());
    }
}
