//! Governance types and their pure rules: a role's rule and its limits, the decision whether
//! one more update may apply now, and the status word. No I/O: the service feeds these the
//! rows it read under the role's lock.

use chrono::{DateTime, Duration, Utc};

/// A day, as the daily limit counts it (rolling, not calendar).
pub const WINDOW: Duration = Duration::hours(24);

/// Input limits, checked before anything is written.
pub mod limits {
    /// Longest prompt update (characters).
    pub const PROMPT_MAX: usize = 100_000;
    pub const RATIONALE_MAX: usize = 10_000;
    pub const NOTE_MAX: usize = 10_000;
    /// Largest `maxUpdatesPerDay`: beyond it the limit means nothing.
    pub const MAX_PER_DAY_MAX: i32 = 1_000;
    /// Longest cooldown: a year.
    pub const COOLDOWN_HOURS_MAX: f64 = 24.0 * 365.0;
    /// Longest wait for an approval: 30 days.
    pub const APPROVAL_HOURS_MAX: f64 = 24.0 * 30.0;
}

/// Status of a learning update (the GraphQL enum; stored as `entity::learning_update::LearningStatus`).
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(
    name = "LearningUpdateStatus",
    remote = "entity::learning_update::LearningStatus"
)]
pub enum LearningStatus {
    /// Waiting for a person other than the proposer to approve it.
    PendingApproval,
    /// Became the role's current prompt (a new version).
    Applied,
    Rejected,
    /// Nobody approved it in time.
    Expired,
}

impl LearningStatus {
    /// The status in words, for messages.
    pub fn word(self) -> &'static str {
        match self {
            Self::PendingApproval => "pending approval",
            Self::Applied => "applied",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
        }
    }
}

/// What a learning update does.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(
    name = "LearningUpdateKind",
    remote = "entity::learning_update::LearningKind"
)]
pub enum LearningKind {
    /// A new prompt text.
    Proposal,
    /// The text of an earlier version, again.
    Rollback,
}

/// The prototype's status words, one per role.
#[derive(
    async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize,
)]
pub enum GovernanceState {
    /// The role's updates already fill the last 24 hours.
    DailyLimitReached,
    /// The last update applied too recently.
    CooldownActive,
    /// An update may be proposed now, and waits for a person's approval.
    RequiresApproval,
    /// An update proposed now applies at once.
    CanAutoUpdate,
}

/// One role's rule, in the units the rules count in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub max_per_day: i32,
    pub cooldown_seconds: i64,
    pub require_approval: bool,
    pub approval_ttl_seconds: i64,
}

const HOUR: i64 = 3600;

impl Rule {
    /// The rule of a role nobody configured: the prototype's default.
    pub const DEFAULT: Rule = Rule::new(5, 2, false);

    /// A rule of `max` updates a day and `cooldown_hours`, pending approvals kept 72 h.
    pub const fn new(max: i32, cooldown_hours: i64, require_approval: bool) -> Self {
        Self {
            max_per_day: max,
            cooldown_seconds: cooldown_hours * HOUR,
            require_approval,
            approval_ttl_seconds: 72 * HOUR,
        }
    }

    /// The rule a role starts with: the prototype's seeded values, else [`Rule::DEFAULT`].
    pub fn seeded(role: &str) -> Rule {
        SEEDED
            .iter()
            .find(|(r, _)| *r == role)
            .map_or(Self::DEFAULT, |(_, rule)| *rule)
    }

    pub fn cooldown(&self) -> Duration {
        Duration::seconds(self.cooldown_seconds)
    }

    pub fn of(row: &entity::governance_rule::Model) -> Self {
        Self {
            max_per_day: row.max_updates_per_day,
            cooldown_seconds: row.cooldown_seconds,
            require_approval: row.require_approval,
            approval_ttl_seconds: row.approval_ttl_seconds,
        }
    }
}

/// The prototype's seeded rules (security 1 / 24 h / approval, architect 2 / 12 h /
/// approval, reviewer 3 / 4 h, developer 5 / 2 h, tester 5 / 2 h).
pub const SEEDED: [(&str, Rule); 5] = [
    ("security", Rule::new(1, 24, true)),
    ("architect", Rule::new(2, 12, true)),
    ("reviewer", Rule::new(3, 4, false)),
    ("developer", Rule::new(5, 2, false)),
    ("tester", Rule::new(5, 2, false)),
];

/// Hours (as clients give them) to whole seconds, checked against `0 ≤ hours ≤ max` (or
/// `> 0` when `positive`). `Err` is the message for the field.
pub fn hours_to_seconds(hours: f64, max: f64, positive: bool) -> Result<i64, String> {
    if !hours.is_finite() || hours < 0.0 || (positive && hours <= 0.0) {
        return Err(format!(
            "must be a number {} 0",
            if positive { "above" } else { "of at least" }
        ));
    }
    if hours > max {
        return Err(format!("must be at most {max} hours"));
    }
    #[expect(
        clippy::cast_possible_truncation,
        reason = "bounded above by a year of seconds"
    )]
    let seconds = (hours * 3600.0).round() as i64;
    if positive && seconds == 0 {
        return Err("must be at least one second".into());
    }
    Ok(seconds)
}

/// A role's applied updates as the limits see them: the times of those in the last 24 h,
/// oldest first, and the last one ever applied (which the cooldown counts from).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    pub in_window: Vec<DateTime<Utc>>,
    pub last_applied: Option<DateTime<Utc>>,
}

impl History {
    /// From applied times read since at least `now - max(24 h, cooldown)`, in any order.
    pub fn new(mut applied: Vec<DateTime<Utc>>, now: DateTime<Utc>) -> Self {
        applied.sort_unstable();
        let last_applied = applied.last().copied();
        applied.retain(|t| *t > now - WINDOW && *t <= now);
        Self {
            in_window: applied,
            last_applied,
        }
    }

    /// The same history after one more update applied at `at`.
    pub fn with(mut self, at: DateTime<Utc>) -> Self {
        self.in_window.push(at);
        self.last_applied = Some(self.last_applied.map_or(at, |l| l.max(at)));
        self
    }

    pub fn count(&self) -> usize {
        self.in_window.len()
    }
}

/// Why one more update may not apply now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The role's updates fill the window; `None`: the rule allows none at all.
    DailyLimit(Option<DateTime<Utc>>),
    /// The cooldown after the last update runs until then.
    Cooldown(DateTime<Utc>),
}

impl Refusal {
    pub fn next_allowed_at(self) -> Option<DateTime<Utc>> {
        match self {
            Self::DailyLimit(at) => at,
            Self::Cooldown(at) => Some(at),
        }
    }
}

/// Whether one more update of a role with `rule` and `history` may apply at `now`. When both
/// limits refuse, the one that ends later is reported (the one that really binds).
pub fn decide(rule: &Rule, history: &History, now: DateTime<Utc>) -> Result<(), Refusal> {
    let max = usize::try_from(rule.max_per_day).unwrap_or(0);
    let daily = if max == 0 {
        Some(Refusal::DailyLimit(None))
    } else if history.count() >= max {
        // The oldest updates must leave the window until fewer than `max` remain.
        let leaving = history.in_window[history.count() - max];
        Some(Refusal::DailyLimit(Some(leaving + WINDOW)))
    } else {
        None
    };
    let cooldown = history
        .last_applied
        .map(|last| last + rule.cooldown())
        .filter(|end| *end > now)
        .map(Refusal::Cooldown);
    match (daily, cooldown) {
        (None, None) => Ok(()),
        (Some(d), None) => Err(d),
        (None, Some(c)) => Err(c),
        (Some(d), Some(c)) => match (d.next_allowed_at(), c.next_allowed_at()) {
            (Some(dn), Some(cn)) if cn > dn => Err(c),
            _ => Err(d),
        },
    }
}

/// The status word of a role: what would happen to an update proposed now.
pub fn status(rule: &Rule, history: &History, now: DateTime<Utc>) -> GovernanceState {
    match decide(rule, history, now) {
        Err(Refusal::DailyLimit(_)) => GovernanceState::DailyLimitReached,
        Err(Refusal::Cooldown(_)) => GovernanceState::CooldownActive,
        Ok(()) if rule.require_approval => GovernanceState::RequiresApproval,
        Ok(()) => GovernanceState::CanAutoUpdate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(minutes: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default() + Duration::minutes(minutes)
    }

    #[test]
    fn seeds_are_the_prototype_values() {
        assert_eq!(Rule::seeded("security"), Rule::new(1, 24, true));
        assert_eq!(Rule::seeded("architect"), Rule::new(2, 12, true));
        assert_eq!(Rule::seeded("reviewer"), Rule::new(3, 4, false));
        assert_eq!(Rule::seeded("developer"), Rule::new(5, 2, false));
        assert_eq!(Rule::seeded("tester"), Rule::new(5, 2, false));
        assert_eq!(Rule::seeded("poet"), Rule::new(5, 2, false));
    }

    #[test]
    fn the_daily_limit_rolls_and_names_when_a_slot_frees() {
        let rule = Rule::new(2, 0, false);
        let now = t(24 * 60 + 15);
        // Updates at minutes 10, 20 and 30 of the day before: 10 has left the window.
        let h = History::new(vec![t(30), t(10), t(20)], now);
        assert_eq!(h.in_window, vec![t(20), t(30)]);
        assert_eq!(
            decide(&rule, &h, now),
            Err(Refusal::DailyLimit(Some(t(20) + WINDOW)))
        );
        assert_eq!(
            decide(&rule, &h, t(20) + WINDOW),
            Err(Refusal::DailyLimit(Some(t(20) + WINDOW)))
        );
        let later = t(20) + WINDOW + Duration::seconds(1);
        assert_eq!(
            decide(&rule, &History::new(vec![t(20), t(30)], later), later),
            Ok(())
        );
        assert_eq!(
            decide(&Rule::new(0, 0, false), &History::default(), now),
            Err(Refusal::DailyLimit(None))
        );
    }

    #[test]
    fn the_cooldown_counts_from_the_last_update_and_the_later_limit_is_reported() {
        let rule = Rule::new(5, 2, false);
        let h = History::new(vec![t(0)], t(60));
        assert_eq!(decide(&rule, &h, t(60)), Err(Refusal::Cooldown(t(120))));
        assert_eq!(decide(&rule, &h, t(120)), Ok(()));
        assert_eq!(status(&rule, &h, t(60)), GovernanceState::CooldownActive);
        // One a day with a 48 h cooldown: both refuse, the cooldown ends later.
        let strict = Rule::new(1, 48, true);
        assert_eq!(
            decide(&strict, &h, t(60)),
            Err(Refusal::Cooldown(t(48 * 60)))
        );
        assert_eq!(
            status(&strict, &History::default(), t(0)),
            GovernanceState::RequiresApproval
        );
        assert_eq!(
            status(&rule, &History::default(), t(0)),
            GovernanceState::CanAutoUpdate
        );
        let full = History::new((0..5).map(t).collect(), t(200));
        assert_eq!(
            status(&rule, &full, t(200)),
            GovernanceState::DailyLimitReached
        );
    }

    #[test]
    fn hours_are_checked() {
        assert_eq!(hours_to_seconds(2.0, 10.0, false), Ok(7200));
        assert_eq!(hours_to_seconds(0.0, 10.0, false), Ok(0));
        assert!(hours_to_seconds(0.0, 10.0, true).is_err());
        assert!(hours_to_seconds(-1.0, 10.0, false).is_err());
        assert!(hours_to_seconds(f64::NAN, 10.0, false).is_err());
        assert!(hours_to_seconds(11.0, 10.0, false).is_err());
    }

    #[test]
    fn statuses_are_stored_under_their_graphql_names() {
        use sea_orm::{ActiveEnum, Iterable};
        for s in entity::learning_update::LearningStatus::iter() {
            let gql = LearningStatus::from(s);
            assert_eq!(
                s.to_value(),
                async_graphql::resolver_utils::enum_value(gql)
                    .to_string()
                    .trim_matches('"')
            );
        }
    }
}
