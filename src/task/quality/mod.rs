//! Quality gates, remediation plans and peer reviews: how a task earns its way to review,
//! deployment and completion, and what the fleet does when it does not.
//!
//! # The picture
//! ```text
//! PENDING → ASSIGNED → IN_PROGRESS ──gates──▶ REVIEWING ──gates──▶ DEPLOYING ──▶ COMPLETED
//!                          ▲   │                 │  (peer review)      │
//!                          │   └── BLOCKED       │                     │
//!                          └──── refused: remediation plan ◀───────────┘
//! ```
//! - Gates are named checks attached to target states (REVIEWING, DEPLOYING, COMPLETED):
//!   the defaults (`model::default_gates`) unless an operator configured a gate
//!   (`task_gates`). A gate holds when the latest result reported for it on the task passed.
//! - A move into a guarded state whose gates do not all hold is refused with `GATE_FAILED`
//!   and commits only its consequences: a remediation plan (one action per failing gate,
//!   from the gate's remedy; an active plan is kept and only replaced by
//!   `replaceRemediationPlan`), the refusal counted per gate, the task back in IN_PROGRESS,
//!   an audit entry, a `REMEDIATION_PLANNED` task event. A gate refusing `escalateAfter`
//!   times in a row opens an escalation (SKILL_GAP, or PROCESS_ISSUE when nobody ever
//!   reported it).
//! - Reporting a gate passed ticks off the plan's action for it; a plan with no open action
//!   is RESOLVED.
//! - A peer review (while REVIEWING) weighs its panel's votes by agent role
//!   (`consensus`); passing reports the gates marked `satisfiedByReview` passed
//!   (`security_approved` by default), rejection reports them failed and opens an
//!   AGENT_CONFLICT escalation. A task leaving REVIEWING withdraws its open review.
//!
//! `model` and `consensus` are pure; `gates` and `review` are the task service's
//! transactions; `graphql` and `review_graphql` the resolvers; `events` the review events.

pub mod consensus;
pub mod events;
pub mod gates;
pub mod graphql;
pub mod model;
pub mod review;
pub mod review_graphql;
