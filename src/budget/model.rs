//! Budget types and their pure rules: period windows, alert thresholds, input limits. No I/O
//! here; `service` applies these inside transactions. The GraphQL enums mirror the stored
//! active enums of `entity` (`#[graphql(remote)]` derives the conversions both ways).

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};

/// Largest total, amount or actual amount accepted (keeps every sum far from `i64::MAX`).
pub const MAX_TOKENS: i64 = 1_000_000_000_000_000;
/// Reservation lifetime when the caller gives none.
pub const DEFAULT_TTL_SECONDS: i64 = 300;
/// Longest reservation lifetime a caller may ask for (one day).
pub const MAX_TTL_SECONDS: i64 = 86_400;
/// Longest accepted `tenantId`, `projectId`, `model`.
pub const TENANT_ID_MAX: usize = 64;
pub const PROJECT_ID_MAX: usize = 128;
pub const MODEL_MAX: usize = 128;
/// Alert thresholds when none are configured, in percent of the total.
pub const DEFAULT_THRESHOLDS: [i32; 3] = [50, 80, 100];

/// How often a budget's `used` goes back to zero.
#[derive(
    async_graphql::Enum,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[graphql(remote = "entity::budget::Period")]
pub enum BudgetPeriod {
    /// Never: the total is a lifetime limit.
    #[default]
    None,
    /// Every day at 00:00 UTC.
    Daily,
    /// Every Monday at 00:00 UTC.
    Weekly,
    /// On the first of every month at 00:00 UTC.
    Monthly,
}

impl BudgetPeriod {
    /// Start of the window containing `at`; for `None`, `at` itself.
    pub fn window_start(self, at: DateTime<Utc>) -> DateTime<Utc> {
        let date = at.date_naive();
        let day = |d: NaiveDate| Utc.from_utc_datetime(&d.and_time(chrono::NaiveTime::MIN));
        match self {
            Self::None => at,
            Self::Daily => day(date),
            Self::Weekly => {
                day(date - Duration::days(i64::from(date.weekday().num_days_from_monday())))
            }
            Self::Monthly => day(date.with_day(1).unwrap_or(date)),
        }
    }

    /// End of the window that starts at `start`; `None` never ends.
    pub fn window_end(self, start: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::None => None,
            Self::Daily => Some(start + Duration::days(1)),
            Self::Weekly => Some(start + Duration::weeks(1)),
            Self::Monthly => start.checked_add_months(chrono::Months::new(1)),
        }
    }

    /// The window (start, end) containing `at`.
    pub fn window(self, at: DateTime<Utc>) -> (DateTime<Utc>, Option<DateTime<Utc>>) {
        let start = self.window_start(at);
        (start, self.window_end(start))
    }
}

/// Where a reservation is in its one-way life: reserved → committed | released | expired.
#[derive(
    async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[graphql(remote = "entity::budget_reservation::Status")]
pub enum ReservationStatus {
    /// Holding tokens until committed, released or expired.
    Reserved,
    /// Resolved: the actual amount moved to `used`, the rest freed.
    Committed,
    /// Resolved: everything freed by the caller.
    Released,
    /// Resolved: everything freed after the TTL passed.
    Expired,
}

/// What a ledger row records.
#[derive(
    async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[graphql(remote = "entity::budget_transaction::Kind")]
pub enum LedgerKind {
    /// Tokens moved into `reserved`.
    Reserve,
    /// A reservation resolved: actual into `used`, the whole amount out of `reserved`.
    Commit,
    /// A reservation freed by its caller.
    Release,
    /// A reservation freed after its TTL.
    Expire,
    /// A period ended: `used` back to zero (live reservations stay).
    Reset,
    /// The budget was created or its total changed.
    Configure,
}

/// The budget as the reset at `now` will leave it: once its period has ended, `used` is 0 in
/// the window containing `now`, announced thresholds are cleared and live reservations stay.
/// Reads show this view, so nobody sees last period's spend between the window's end and the
/// reset itself (done by the sweeper or the next write, both with this same arithmetic).
pub fn as_of(mut b: entity::budget::Model, now: DateTime<Utc>) -> entity::budget::Model {
    if b.period_end.is_some_and(|end| end <= now) {
        let (start, end) = BudgetPeriod::from(b.period).window(now);
        b.used = 0;
        b.alerts_sent = String::new();
        b.period_start = start;
        b.period_end = end;
    }
    b
}

/// Tokens still free: `total - used - reserved`, never negative.
pub fn available(total: i64, used: i64, reserved: i64) -> i64 {
    total.saturating_sub(used).saturating_sub(reserved).max(0)
}

/// A positive token amount up to `MAX_TOKENS`.
pub fn positive_amount(value: i64) -> Result<i64, String> {
    if value <= 0 {
        Err("must be greater than 0".into())
    } else if value > MAX_TOKENS {
        Err(format!("must be at most {MAX_TOKENS}"))
    } else {
        Ok(value)
    }
}

/// A total: 0 up to `MAX_TOKENS`.
pub fn total(value: i64) -> Result<i64, String> {
    if !(0..=MAX_TOKENS).contains(&value) {
        Err(format!("must be between 0 and {MAX_TOKENS}"))
    } else {
        Ok(value)
    }
}

/// The actual amount of a commit: 0 up to the reserved amount.
pub fn actual_amount(actual: i64, reserved: i64) -> Result<i64, String> {
    if actual < 0 {
        Err("must not be negative".into())
    } else if actual > reserved {
        Err(format!(
            "{actual} is more than the reserved amount {reserved}"
        ))
    } else {
        Ok(actual)
    }
}

/// A TTL in seconds, 1 up to `MAX_TTL_SECONDS`; the default when absent.
pub fn ttl_seconds(value: Option<i64>) -> Result<i64, String> {
    match value {
        None => Ok(DEFAULT_TTL_SECONDS),
        Some(v) if (1..=MAX_TTL_SECONDS).contains(&v) => Ok(v),
        Some(_) => Err(format!("must be between 1 and {MAX_TTL_SECONDS}")),
    }
}

/// A non-blank identifier of at most `max` characters, without surrounding spaces.
pub fn identifier(value: &str, max: usize) -> Result<String, String> {
    let v = value.trim();
    if v.is_empty() {
        Err("must not be empty".into())
    } else if v.chars().count() > max {
        Err(format!("must be at most {max} characters"))
    } else if v.chars().any(char::is_control) {
        Err("must not contain control characters".into())
    } else {
        Ok(v.to_owned())
    }
}

/// Alert thresholds: 1-10 distinct percentages in 1..=100, sorted; the defaults when absent.
pub fn thresholds(value: Option<&[i32]>) -> Result<Vec<i32>, String> {
    let Some(values) = value else {
        return Ok(DEFAULT_THRESHOLDS.to_vec());
    };
    if values.len() > 10 {
        return Err("at most 10 thresholds".into());
    }
    if let Some(bad) = values.iter().find(|v| !(1..=100).contains(*v)) {
        return Err(format!("{bad} is not a percentage between 1 and 100"));
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    Ok(sorted)
}

/// The stored form of a list of percentages (`50,80,100`).
pub fn format_percentages(values: &[i32]) -> String {
    values
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses the stored form; unparsable parts are skipped.
pub fn parse_percentages(stored: &str) -> Vec<i32> {
    stored
        .split(',')
        .filter_map(|p| p.trim().parse().ok())
        .collect()
}

/// The announced thresholds `used` of `total` still reaches, among those `configured`: when
/// a change of the total or of the thresholds leaves one behind, it is armed again and fires
/// once more when spending reaches it (an operator who raised the limit hears about the new
/// 80 % as about the old).
pub fn still_reached(configured: &[i32], sent: &[i32], used: i64, total: i64) -> Vec<i32> {
    sent.iter()
        .copied()
        .filter(|t| configured.contains(t))
        .filter(|t| total > 0 && i128::from(used) * 100 >= i128::from(*t) * i128::from(total))
        .collect()
}

/// Thresholds reached by `used` of `total` that were not announced yet in this window, in
/// ascending order. A budget with total 0 announces nothing.
pub fn newly_crossed(thresholds: &[i32], sent: &[i32], used: i64, total: i64) -> Vec<i32> {
    if total <= 0 {
        return Vec::new();
    }
    thresholds
        .iter()
        .copied()
        .filter(|t| !sent.contains(t))
        .filter(|t| i128::from(used) * 100 >= i128::from(*t) * i128::from(total))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn a_change_rearms_the_thresholds_left_behind() {
        // 61 of 100 announced 50; raised to 200 it is 30.5 %: 50 is armed again.
        assert_eq!(still_reached(&[50, 80], &[50], 61, 200), Vec::<i32>::new());
        assert_eq!(still_reached(&[50, 80], &[50], 61, 100), [50]);
        // A threshold no longer configured is forgotten.
        assert_eq!(still_reached(&[80], &[50, 80], 90, 100), [80]);
        assert_eq!(still_reached(&[50], &[50], 0, 0), Vec::<i32>::new());
    }

    #[test]
    fn reads_past_the_period_end_show_the_next_window() {
        let row = entity::budget::Model {
            id: uuid::Uuid::nil(),
            tenant_id: "t".into(),
            project_id: "p".into(),
            total: 100,
            used: 70,
            reserved: 20,
            period: entity::budget::Period::Daily,
            period_start: at("2026-11-24T00:00:00Z"),
            period_end: Some(at("2026-11-25T00:00:00Z")),
            alert_thresholds: "50,80,100".into(),
            alerts_sent: "50".into(),
            version: 7,
            created_at: at("2026-11-24T00:00:00Z"),
            updated_at: at("2026-11-24T12:00:00Z"),
        };
        // Inside the window: unchanged.
        let inside = as_of(row.clone(), at("2026-11-24T23:59:59Z"));
        assert_eq!((inside.used, inside.alerts_sent.as_str()), (70, "50"));
        // Past it: the window containing `now`, used 0, reservations kept.
        let after = as_of(row.clone(), at("2026-11-26T03:00:00Z"));
        assert_eq!((after.used, after.reserved, after.total), (0, 20, 100));
        assert_eq!(after.alerts_sent, "");
        assert_eq!(after.period_start, at("2026-11-26T00:00:00Z"));
        assert_eq!(after.period_end, Some(at("2026-11-27T00:00:00Z")));
        // A lifetime budget never rolls over.
        let lifetime = entity::budget::Model {
            period: entity::budget::Period::None,
            period_end: None,
            ..row
        };
        assert_eq!(as_of(lifetime, at("2030-01-01T00:00:00Z")).used, 70);
    }

    #[test]
    fn windows_start_at_utc_boundaries() {
        let t = at("2026-11-26T15:30:00Z"); // a Thursday
        assert_eq!(
            BudgetPeriod::Daily.window_start(t),
            at("2026-11-26T00:00:00Z")
        );
        assert_eq!(
            BudgetPeriod::Weekly.window_start(t),
            at("2026-11-23T00:00:00Z")
        );
        assert_eq!(
            BudgetPeriod::Monthly.window_start(t),
            at("2026-11-01T00:00:00Z")
        );
        assert_eq!(BudgetPeriod::None.window_start(t), t);
        assert_eq!(
            BudgetPeriod::Monthly.window_end(at("2026-12-01T00:00:00Z")),
            Some(at("2027-01-01T00:00:00Z"))
        );
        assert_eq!(
            BudgetPeriod::Weekly.window(t).1,
            Some(at("2026-11-30T00:00:00Z"))
        );
        assert_eq!(BudgetPeriod::None.window(t).1, None);
        for p in [
            BudgetPeriod::None,
            BudgetPeriod::Daily,
            BudgetPeriod::Weekly,
            BudgetPeriod::Monthly,
        ] {
            assert_eq!(BudgetPeriod::from(entity::budget::Period::from(p)), p);
            let (start, end) = p.window(t);
            assert!(start <= t);
            assert!(end.is_none_or(|e| e > t));
        }
    }

    #[test]
    fn thresholds_fire_once_each_and_in_order() {
        let th = thresholds(None).unwrap_or_default();
        assert_eq!(th, vec![50, 80, 100]);
        assert_eq!(newly_crossed(&th, &[], 49, 100), Vec::<i32>::new());
        assert_eq!(newly_crossed(&th, &[], 85, 100), vec![50, 80]);
        assert_eq!(newly_crossed(&th, &[50, 80], 85, 100), Vec::<i32>::new());
        assert_eq!(newly_crossed(&th, &[50, 80], 100, 100), vec![100]);
        assert_eq!(newly_crossed(&th, &[], 10, 0), Vec::<i32>::new());
        // No overflow near the limits.
        assert_eq!(
            newly_crossed(&[100], &[], MAX_TOKENS, MAX_TOKENS),
            vec![100]
        );
        assert_eq!(
            thresholds(Some(&[80, 50, 80])).unwrap_or_default(),
            vec![50, 80]
        );
        assert!(thresholds(Some(&[0])).is_err());
        assert!(thresholds(Some(&[101])).is_err());
        assert_eq!(
            parse_percentages(&format_percentages(&[50, 80])),
            vec![50, 80]
        );
        assert_eq!(parse_percentages(""), Vec::<i32>::new());
    }

    #[test]
    fn amounts_and_ttls_are_bounded() {
        assert!(positive_amount(0).is_err());
        assert!(positive_amount(-1).is_err());
        assert!(positive_amount(MAX_TOKENS + 1).is_err());
        assert_eq!(positive_amount(5), Ok(5));
        assert!(total(-1).is_err());
        assert_eq!(total(0), Ok(0));
        assert_eq!(actual_amount(3, 3), Ok(3));
        assert_eq!(actual_amount(0, 3), Ok(0));
        assert!(actual_amount(4, 3).is_err());
        assert!(actual_amount(-1, 3).is_err());
        assert_eq!(ttl_seconds(None), Ok(DEFAULT_TTL_SECONDS));
        assert!(ttl_seconds(Some(0)).is_err());
        assert!(ttl_seconds(Some(MAX_TTL_SECONDS + 1)).is_err());
        assert_eq!(available(10, 3, 4), 3);
        assert_eq!(available(10, 8, 4), 0);
        assert!(identifier("  ", 8).is_err());
        assert_eq!(identifier(" a ", 8), Ok("a".into()));
        assert!(identifier("123456789", 8).is_err());
    }
}
