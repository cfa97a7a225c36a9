//! The permission catalogue and the role → permission table: the only place either is
//! defined. Permissions are derived from the caller's role, read server-side on every request,
//! never from a token. The README's role table is generated from `role_table_markdown`.

use std::{fmt, str::FromStr};

macro_rules! permissions {
    ($($variant:ident => $name:literal: $doc:literal,)*) => {
        /// One thing a caller may be allowed to do.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Permission {
            $(#[doc = $doc] $variant,)*
        }

        impl Permission {
            /// Every permission, in catalogue order.
            pub const ALL: &'static [Permission] = &[$(Permission::$variant,)*];

            /// The dotted name (`task.view`).
            pub fn name(self) -> &'static str {
                match self { $(Permission::$variant => $name,)* }
            }

            /// What the permission allows.
            pub fn description(self) -> &'static str {
                match self { $(Permission::$variant => $doc,)* }
            }
        }
    };
}

permissions! {
    EscalationView => "escalation.view": "read escalations",
    EscalationResolve => "escalation.resolve": "resolve escalations",
    EscalationCreate => "escalation.create": "raise escalations",
    TaskCreate => "task.create": "create tasks",
    TaskUpdate => "task.update": "change task state and assignment",
    TaskDelete => "task.delete": "delete tasks",
    TaskView => "task.view": "read tasks and their events",
    AgentConfigure => "agent.configure": "register and configure agents",
    AgentView => "agent.view": "read agents",
    BudgetView => "budget.view": "read budgets and their state",
    BudgetConfigure => "budget.configure": "create and change budgets",
    BudgetSpend => "budget.spend": "reserve, commit and release budget",
    LearningApprove => "learning.approve": "approve prompt updates proposed by someone else",
    LearningView => "learning.view": "read governance rules and proposals",
    LearningPropose => "learning.propose": "propose prompt updates",
    LearningConfigure => "learning.configure": "change governance rules (limits, cooldown, approval)",
    LlmValidate => "llm.validate": "validate LLM output against the output kinds",
    QualityConfigure => "quality.configure": "change quality gates and peer review weights",
    QualityReport => "quality.report": "report quality gate results on tasks",
    ReviewStart => "review.start": "start peer reviews of tasks",
    ReviewVote => "review.vote": "vote in peer reviews",
    DlqRead => "dlq.read": "read the dead letter queue",
    DlqResolve => "dlq.resolve": "resolve, retry, redrive and purge DLQ messages",
    SandboxRun => "sandbox.run": "start and cancel sandbox runs",
    SandboxView => "sandbox.view": "read sandbox runs and their output",
    BreakerView => "breaker.view": "read circuit breakers",
    BreakerManage => "breaker.manage": "force, reset and configure circuit breakers",
    BreakerUse => "breaker.use": "consult circuit breakers and report call outcomes",
    AuditView => "audit.view": "read the audit log",
    UserManage => "user.manage": "create users, change roles, disable users, manage API keys",
    MetricsView => "metrics.view": "read operational metrics",
    SystemAdmin => "system.admin": "administer the system itself",
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A caller's role. Stored as its lowercase name.
// Stored through the active enum `entity::user::Role` (entity/ has no GraphQL derives);
// `remote` derives the `From` conversions both ways, so storage never parses a name. `name`
// and `FromStr` stay for the catalogue, the README table, visibility keys and `--role`.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[graphql(remote = "entity::user::Role")]
pub enum Role {
    /// Everything.
    Admin,
    /// Runs the fleet: everything but users and system administration.
    Operator,
    /// Builds and runs agents: tasks, spending, sandbox, proposals.
    Developer,
    /// Reads everything operational, changes nothing.
    Observer,
    /// No credentials: nothing but logging in.
    Anonymous,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Self::Admin,
        Self::Operator,
        Self::Developer,
        Self::Observer,
        Self::Anonymous,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Operator => "operator",
            Self::Developer => "developer",
            Self::Observer => "observer",
            Self::Anonymous => "anonymous",
        }
    }

    /// The permissions this role grants.
    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Self::Admin => Permission::ALL,
            Self::Operator => &[
                EscalationView,
                EscalationResolve,
                EscalationCreate,
                TaskCreate,
                TaskUpdate,
                TaskDelete,
                TaskView,
                AgentConfigure,
                AgentView,
                BudgetView,
                BudgetConfigure,
                BudgetSpend,
                LearningApprove,
                LearningView,
                LearningPropose,
                LearningConfigure,
                LlmValidate,
                QualityConfigure,
                QualityReport,
                ReviewStart,
                ReviewVote,
                DlqRead,
                DlqResolve,
                SandboxRun,
                SandboxView,
                BreakerView,
                BreakerManage,
                BreakerUse,
                AuditView,
                MetricsView,
            ],
            Self::Developer => &[
                EscalationView,
                EscalationCreate,
                TaskCreate,
                TaskUpdate,
                TaskView,
                AgentView,
                BudgetView,
                BudgetSpend,
                LearningView,
                LearningPropose,
                LlmValidate,
                QualityReport,
                ReviewStart,
                ReviewVote,
                DlqRead,
                SandboxRun,
                SandboxView,
                BreakerView,
                BreakerUse,
                MetricsView,
            ],
            Self::Observer => &[
                EscalationView,
                TaskView,
                AgentView,
                BudgetView,
                LearningView,
                DlqRead,
                SandboxView,
                BreakerView,
                MetricsView,
            ],
            Self::Anonymous => &[],
        }
    }

    pub fn grants(self, permission: Permission) -> bool {
        self.permissions().contains(&permission)
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| format!("unknown role `{s}`"))
    }
}

/// The role → permission table as Markdown, as it appears in the README.
pub fn role_table_markdown() -> String {
    let mut out = String::from("| permission | what it allows |");
    for role in Role::ALL {
        out.push_str(&format!(" {} |", role.name()));
    }
    out.push_str("\n|---|---|");
    for _ in Role::ALL {
        out.push_str(":-:|");
    }
    out.push('\n');
    for p in Permission::ALL {
        out.push_str(&format!("| `{}` | {} |", p.name(), p.description()));
        for role in Role::ALL {
            out.push_str(if role.grants(*p) { " ✓ |" } else { "  |" });
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_keeps_the_prototype_names() {
        let names: Vec<&str> = Permission::ALL.iter().map(|p| p.name()).collect();
        for legacy in [
            "escalation.view",
            "escalation.resolve",
            "escalation.create",
            "task.create",
            "task.update",
            "task.delete",
            "task.view",
            "agent.configure",
            "agent.view",
            "budget.view",
            "budget.configure",
            "learning.approve",
            "learning.view",
            "dlq.read",
            "dlq.resolve",
            "system.admin",
            "metrics.view",
        ] {
            assert!(names.contains(&legacy), "{legacy}");
        }
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
    }

    #[test]
    fn roles_nest_and_anonymous_has_nothing() {
        for p in Role::Observer.permissions() {
            assert!(
                Role::Developer.grants(*p) || *p == Permission::AuditView,
                "{p}"
            );
            assert!(Role::Operator.grants(*p), "{p}");
        }
        for p in Role::Operator.permissions() {
            assert!(Role::Admin.grants(*p));
        }
        assert!(Role::Anonymous.permissions().is_empty());
        assert_eq!("operator".parse::<Role>(), Ok(Role::Operator));
        assert!("root".parse::<Role>().is_err());
    }
}
