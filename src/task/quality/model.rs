//! Quality gate, remediation and peer review types and their pure rules: the default gates
//! and remediation table, what a refusal plans, when a gate's refusals escalate.
//!
//! Stored enums live in `entity`; each GraphQL enum here names its stored twin with
//! `#[graphql(remote = …)]`, so conversions are generated and checked by the compiler.

use std::collections::HashMap;

use entity::{task_gate, task_gate_result};

use crate::task::model::TaskState;

/// What a remediation action asks an agent to do. One list for plans and for the LLM
/// `synthesis` schema's `action_plan[].type` (a test holds them equal).
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[graphql(remote = "entity::task_gate::ActionType")]
pub enum ActionType {
    Fix,
    Improve,
    Refactor,
    Test,
    Review,
    Document,
}

impl ActionType {
    pub const ALL: [ActionType; 6] = [
        Self::Fix,
        Self::Improve,
        Self::Refactor,
        Self::Test,
        Self::Review,
        Self::Document,
    ];
}

/// Whether a remediation plan is still being worked on.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "entity::remediation_plan::PlanStatus")]
pub enum PlanStatus {
    /// Some action is still open.
    Active,
    /// Every action's gate was reported passed.
    Resolved,
    /// Replaced by a newer plan (`replaceRemediationPlan`).
    Superseded,
}

/// Whether a planned action is done (its gate reported passed).
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "entity::remediation_action::ActionStatus")]
pub enum ActionStatus {
    Open,
    Done,
}

/// Where a peer review stands.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "entity::peer_review::ReviewStatus")]
pub enum ReviewStatus {
    /// Neither reached nor out of reach yet.
    Open,
    /// The weighted approvals reached the quorum.
    Passed,
    /// The quorum can no longer be reached.
    Rejected,
    /// The task left REVIEWING before the review decided (sent back to work, failed,
    /// cancelled, or moved on with its gates reported otherwise); its votes no longer count.
    Withdrawn,
}

/// A voter's verdict: the consensus schema's decisions (a test holds them equal).
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "entity::review_voter::ReviewDecision")]
pub enum ReviewDecision {
    /// Counts the voter's full weight times its confidence.
    Approve,
    /// Counts half of it.
    Conditional,
    /// Counts nothing.
    Reject,
}

/// Who sits on a review's panel.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "entity::review_voter::VoterKind")]
pub enum VoterKind {
    Agent,
    Person,
}

/// The deadlock pattern behind an escalation the service opened.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "entity::escalation::EscalationPattern")]
pub enum EscalationPattern {
    /// A gate keeps failing although results are reported: the agents doing the work lack
    /// what it takes.
    SkillGap,
    /// A peer review was rejected: the panel disagrees with the work.
    AgentConflict,
    /// A gate keeps refusing moves and nobody ever reported a result for it: the process
    /// does not produce the check.
    ProcessIssue,
}

/// The states gates may guard: those a task reaches after being worked on.
pub const GATEABLE: [TaskState; 3] = [
    TaskState::Reviewing,
    TaskState::Deploying,
    TaskState::Completed,
];

/// Refusals in a row by one gate on one task that open an escalation, by default.
pub const DEFAULT_ESCALATE_AFTER: i32 = 3;

/// Quorum of a peer review started without one.
pub const DEFAULT_QUORUM: f64 = 0.75;

/// The weight role of people on a review's panel.
pub const HUMAN_ROLE: &str = "human";

/// Weight of a role with no default and no configured weight.
pub const UNKNOWN_ROLE_WEIGHT: f64 = 1.0;

/// Default vote weight per agent role (plus `human` for people); any other role weighs
/// [`UNKNOWN_ROLE_WEIGHT`]. Binary fractions, so hand-computed scores are exact.
pub const DEFAULT_WEIGHTS: [(&str, f64); 6] = [
    ("security", 1.5),
    ("architect", 1.5),
    ("reviewer", 1.25),
    ("developer", 1.0),
    ("tester", 1.0),
    (HUMAN_ROLE, 2.0),
];

/// Input limits.
pub mod limits {
    pub const GATE_NAME_MAX: usize = 64;
    pub const DETAIL_MAX: usize = 10_000;
    pub const REASONING_MAX: usize = 2_000;
    pub const PRIORITY: std::ops::RangeInclusive<i32> = 1..=100;
    pub const ESCALATE_AFTER: std::ops::RangeInclusive<i32> = 0..=100;
    pub const WEIGHT_MAX: f64 = 100.0;
    pub const PANEL_MAX: usize = 100;
}

/// What a failing gate plans: the prototype's remediation table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remedy {
    pub action: ActionType,
    pub priority: i32,
    pub agent_role: String,
}

impl Remedy {
    fn new(action: ActionType, priority: i32, agent_role: &str) -> Self {
        Self {
            action,
            priority,
            agent_role: agent_role.to_owned(),
        }
    }

    /// The remedy of a gate the table does not know: fix, priority 1, developer.
    pub fn fallback() -> Self {
        Self::new(ActionType::Fix, 1, "developer")
    }
}

/// One gate as it applies: a default, a default an operator changed, or a gate an operator
/// added.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    pub name: String,
    pub targets: Vec<TaskState>,
    pub remedy: Remedy,
    pub escalate_after: i32,
    pub satisfied_by_review: bool,
    pub enabled: bool,
    /// Stored in `task_gates` (configured), rather than a built-in default.
    pub configured: bool,
}

impl Gate {
    fn default_gate(
        name: &str,
        targets: &[TaskState],
        remedy: Remedy,
        satisfied_by_review: bool,
    ) -> Self {
        Self {
            name: name.to_owned(),
            targets: targets.to_vec(),
            remedy,
            escalate_after: DEFAULT_ESCALATE_AFTER,
            satisfied_by_review,
            enabled: true,
            configured: false,
        }
    }

    pub fn of(row: &task_gate::Model) -> Self {
        Self {
            name: row.name.clone(),
            targets: row.targets.0.iter().copied().map(TaskState::from).collect(),
            remedy: Remedy {
                action: row.action_type.into(),
                priority: row.priority,
                agent_role: row.agent_role.clone(),
            },
            escalate_after: row.escalate_after,
            satisfied_by_review: row.satisfied_by_review,
            enabled: row.enabled,
            configured: true,
        }
    }

    /// Whether the gate must hold for a task to enter `state`.
    pub fn guards(&self, state: TaskState) -> bool {
        self.enabled && self.targets.contains(&state)
    }
}

/// The prototype's gates: code quality before review; tests and security approval before
/// deploying; documentation and performance before either (the prototype's "any": every
/// state a gate guards by default). Security approval is what a passed peer review gives.
pub fn default_gates() -> Vec<Gate> {
    use TaskState::{Deploying, Reviewing};
    vec![
        Gate::default_gate(
            "code_quality",
            &[Reviewing],
            Remedy::new(ActionType::Refactor, 2, "developer"),
            false,
        ),
        Gate::default_gate(
            "has_tests",
            &[Deploying],
            Remedy::new(ActionType::Test, 1, "tester"),
            false,
        ),
        Gate::default_gate(
            "security_approved",
            &[Deploying],
            Remedy::new(ActionType::Review, 1, "reviewer"),
            true,
        ),
        Gate::default_gate(
            "has_documentation",
            &[Reviewing, Deploying],
            Remedy::new(ActionType::Document, 3, "developer"),
            false,
        ),
        Gate::default_gate(
            "performance_ok",
            &[Reviewing, Deploying],
            Remedy::new(ActionType::Improve, 2, "developer"),
            false,
        ),
    ]
}

/// The gates in force: the defaults, each replaced by its stored row when an operator
/// configured it, then the gates operators added; sorted by name.
pub fn effective_gates(rows: &[task_gate::Model]) -> Vec<Gate> {
    let mut gates: Vec<Gate> = default_gates()
        .into_iter()
        .filter(|g| !rows.iter().any(|r| r.name == g.name))
        .collect();
    gates.extend(rows.iter().map(Gate::of));
    gates.sort_by(|a, b| a.name.cmp(&b.name));
    gates
}

/// The remedy a gate without a stored or default mapping gets (the table's fallback), or the
/// default table's.
pub fn default_remedy(gate: &str) -> Remedy {
    default_gates()
        .into_iter()
        .find(|g| g.name == gate)
        .map_or_else(Remedy::fallback, |g| g.remedy)
}

/// Why a gate does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Nobody reported a result for it on this task.
    NotReported,
    /// The latest result reported failed, with its detail.
    Failed(Option<String>),
}

impl Failure {
    pub fn describe(&self) -> String {
        match self {
            Self::NotReported => "no result reported".to_owned(),
            Self::Failed(None) => "reported failed".to_owned(),
            Self::Failed(Some(detail)) => format!("reported failed: {detail}"),
        }
    }
}

/// The gates guarding `target` that do not hold, given the task's latest results, in the
/// order of `gates`.
pub fn failing<'g>(
    gates: &'g [Gate],
    target: TaskState,
    results: &HashMap<String, task_gate_result::Model>,
) -> Vec<(&'g Gate, Failure)> {
    gates
        .iter()
        .filter(|g| g.guards(target))
        .filter_map(|g| match results.get(&g.name) {
            Some(r) if r.passed == Some(true) => None,
            Some(r) if r.passed == Some(false) => Some((g, Failure::Failed(r.detail.clone()))),
            _ => Some((g, Failure::NotReported)),
        })
        .collect()
}

/// The escalation a gate's refusal opens, if any: when its refusals in a row (counting this
/// one) reach the gate's threshold. `ever_reported`: whether any result was reported for the
/// gate on this task.
pub fn gate_deadlock(
    gate: &Gate,
    target: TaskState,
    refusals_in_a_row: i32,
    ever_reported: bool,
) -> Option<(EscalationPattern, String, String)> {
    if gate.escalate_after == 0 || refusals_in_a_row != gate.escalate_after {
        return None;
    }
    let reason = format!(
        "quality gate `{}` refused the move to {target} {refusals_in_a_row} times in a row",
        gate.name
    );
    Some(if ever_reported {
        (
            EscalationPattern::SkillGap,
            reason,
            format!(
                "results keep failing: give the `{}` action ({}) to a different {} agent or \
                 pair it with a more experienced one",
                gate.name,
                async_graphql::resolver_utils::enum_value(gate.remedy.action),
                gate.remedy.agent_role
            ),
        )
    } else {
        (
            EscalationPattern::ProcessIssue,
            reason,
            format!(
                "no result was ever reported for `{}`: make the pipeline report it \
                 (reportGateResult) or disable the gate (configureTaskGate)",
                gate.name
            ),
        )
    })
}

/// Gate names are identifiers: lowercase letters, digits and `_`.
pub fn gate_name(value: &str) -> Result<String, String> {
    let value = value.trim();
    let ok = !value.is_empty()
        && value.len() <= limits::GATE_NAME_MAX
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "gate must be 1-{} characters from [a-z0-9_]",
            limits::GATE_NAME_MAX
        ))
    }
}

/// The weight of `role`'s votes: the configured one, else the default table's, else
/// [`UNKNOWN_ROLE_WEIGHT`].
pub fn weight_of(role: &str, configured: &HashMap<String, f64>) -> f64 {
    configured.get(role).copied().unwrap_or_else(|| {
        DEFAULT_WEIGHTS
            .iter()
            .find(|(r, _)| *r == role)
            .map_or(UNKNOWN_ROLE_WEIGHT, |(_, w)| *w)
    })
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    fn schema_enum(file: &str, pointer: &str) -> Vec<String> {
        let path = format!("{}/schemas/llm/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(path).expect("schema file");
        let schema: serde_json::Value = serde_json::from_str(&text).expect("schema JSON");
        let mut values: Vec<String> = schema
            .pointer(pointer)
            .and_then(|v| v.as_array())
            .expect("enum")
            .iter()
            .map(|v| v.as_str().expect("string").to_owned())
            .collect();
        values.sort();
        values
    }

    #[test]
    fn action_types_are_the_synthesis_schemas_list() {
        let mut ours: Vec<String> = ActionType::ALL
            .iter()
            .map(|a| {
                async_graphql::resolver_utils::enum_value(*a)
                    .to_string()
                    .to_lowercase()
            })
            .collect();
        ours.sort();
        assert_eq!(
            ours,
            schema_enum(
                "synthesis.json",
                "/properties/action_plan/items/properties/type/enum"
            )
        );
        // Stored under the same lowercase names.
        use sea_orm::ActiveEnum;
        for a in ActionType::ALL {
            let stored = task_gate::ActionType::from(a);
            assert_eq!(
                stored.to_value(),
                async_graphql::resolver_utils::enum_value(a)
                    .to_string()
                    .to_lowercase()
            );
        }
    }

    #[test]
    fn review_decisions_are_the_consensus_schemas_list() {
        let mut ours: Vec<String> = [
            ReviewDecision::Approve,
            ReviewDecision::Conditional,
            ReviewDecision::Reject,
        ]
        .iter()
        .map(|d| {
            async_graphql::resolver_utils::enum_value(*d)
                .to_string()
                .to_lowercase()
        })
        .collect();
        ours.sort();
        assert_eq!(
            ours,
            schema_enum("consensus.json", "/properties/decision/enum")
        );
    }

    #[test]
    fn the_prototypes_remediation_table_and_its_fallback() {
        let table = [
            ("has_tests", ActionType::Test, 1, "tester"),
            ("security_approved", ActionType::Review, 1, "reviewer"),
            ("code_quality", ActionType::Refactor, 2, "developer"),
            ("has_documentation", ActionType::Document, 3, "developer"),
            ("performance_ok", ActionType::Improve, 2, "developer"),
            ("lint_clean", ActionType::Fix, 1, "developer"),
        ];
        for (gate, action, priority, role) in table {
            assert_eq!(
                default_remedy(gate),
                Remedy::new(action, priority, role),
                "{gate}"
            );
        }
    }

    #[test]
    fn default_gates_guard_review_and_deploy() {
        let gates = effective_gates(&[]);
        let guarding = |s: TaskState| -> Vec<&str> {
            gates
                .iter()
                .filter(|g| g.guards(s))
                .map(|g| g.name.as_str())
                .collect()
        };
        assert_eq!(
            guarding(TaskState::Reviewing),
            ["code_quality", "has_documentation", "performance_ok"]
        );
        assert_eq!(
            guarding(TaskState::Deploying),
            [
                "has_documentation",
                "has_tests",
                "performance_ok",
                "security_approved"
            ]
        );
        assert!(guarding(TaskState::Completed).is_empty());
    }

    #[test]
    fn failing_gates_and_why() {
        let gates = effective_gates(&[]);
        let now = chrono::Utc::now();
        let result = |gate: &str, passed: Option<bool>, detail: Option<&str>| {
            (
                gate.to_owned(),
                task_gate_result::Model {
                    task_id: uuid::Uuid::nil(),
                    gate: gate.to_owned(),
                    tenant_id: None,
                    passed,
                    detail: detail.map(str::to_owned),
                    reported_by: None,
                    reported_at: None,
                    consecutive_failures: 0,
                    updated_at: now,
                },
            )
        };
        let results: HashMap<_, _> = [
            result("code_quality", Some(true), None),
            result("has_documentation", Some(false), Some("no README")),
            result("performance_ok", None, None),
        ]
        .into_iter()
        .collect();
        let failing: Vec<(String, Failure)> = failing(&gates, TaskState::Reviewing, &results)
            .into_iter()
            .map(|(g, f)| (g.name.clone(), f))
            .collect();
        assert_eq!(
            failing,
            [
                (
                    "has_documentation".to_owned(),
                    Failure::Failed(Some("no README".into()))
                ),
                ("performance_ok".to_owned(), Failure::NotReported),
            ]
        );
    }

    #[test]
    fn refusals_escalate_once_at_the_threshold() {
        let gates = default_gates();
        let gate = &gates[0];
        assert!(gate_deadlock(gate, TaskState::Reviewing, 2, true).is_none());
        let (pattern, _, _) = gate_deadlock(gate, TaskState::Reviewing, 3, true).expect("3");
        assert_eq!(pattern, EscalationPattern::SkillGap);
        let (pattern, _, fix) = gate_deadlock(gate, TaskState::Reviewing, 3, false).expect("3");
        assert_eq!(pattern, EscalationPattern::ProcessIssue);
        assert!(fix.contains("reportGateResult"));
        assert!(gate_deadlock(gate, TaskState::Reviewing, 4, true).is_none());
        let never = Gate {
            escalate_after: 0,
            ..gate.clone()
        };
        assert!(gate_deadlock(&never, TaskState::Reviewing, 0, true).is_none());
    }

    #[test]
    fn weights() {
        let configured: HashMap<String, f64> = [("tester".to_owned(), 3.0)].into();
        assert_eq!(weight_of("security", &configured), 1.5);
        assert_eq!(weight_of("tester", &configured), 3.0);
        assert_eq!(weight_of("poet", &configured), UNKNOWN_ROLE_WEIGHT);
        assert_eq!(weight_of(HUMAN_ROLE, &configured), 2.0);
        assert!(gate_name("has_tests").is_ok());
        assert!(gate_name("Has-Tests").is_err());
    }
}
